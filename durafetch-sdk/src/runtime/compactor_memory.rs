//! The compactors' memory, bounded per isolate. An isolate hosts many objects over its life, and
//! each object's compactor remembers up to 65,536 keys (8 bytes each); past
//! [`ISOLATE_COMPACTOR_KEYS`] in all, the compactors of the objects written least recently
//! forget their keys, as a restart of the object would make them do. Compaction then stays
//! correct, and is less thorough for the keys written before.

use std::cell::{Cell, RefCell, RefMut};
use std::collections::VecDeque;
use std::rc::{Rc, Weak};

use crate::core::compaction::Compactor;
use crate::core::cursor::Cursor;

/// Keys the compactors of one isolate remember together: 1 MiB of entries, twice what one
/// object's compactor can hold.
pub(crate) const ISOLATE_COMPACTOR_KEYS: usize = 131_072;

/// One object's compactor and its share of the isolate's bound.
#[derive(Default)]
pub(crate) struct CompactorSlot {
    compactor: RefCell<Compactor>,
    /// The isolate's tick at this compactor's last use.
    used: Cell<u64>,
    /// The keys counted for it in the isolate's total.
    counted: Cell<usize>,
    /// Whether it has an entry in the isolate's queue.
    queued: Cell<bool>,
}

/// The compactors holding keys, least recently used first: a clock, where an entry used since
/// it was queued goes to the back once before its compactor is made to forget.
#[derive(Default)]
struct Held {
    keys: usize,
    tick: u64,
    queue: VecDeque<(Weak<CompactorSlot>, u64)>,
}

thread_local! {
    static HELD: RefCell<Held> = RefCell::new(Held::default());
}

/// The keys the compactors of this isolate remember together: a debug view for tests.
pub(crate) fn keys_held() -> usize {
    HELD.with(|held| held.borrow().keys)
}

impl CompactorSlot {
    pub fn borrow_mut(&self) -> RefMut<'_, Compactor> {
        self.compactor.borrow_mut()
    }

    pub fn is_due(&self) -> bool {
        self.compactor.borrow().is_due()
    }

    /// Notes that the log row at `at` names `keys`, and keeps the isolate's
    /// compactors within their bound.
    pub fn record(self: &Rc<Self>, at: Cursor, keys: &[String]) {
        let remembered = {
            let mut compactor = self.compactor.borrow_mut();
            compactor.record(at, keys.iter().map(String::as_str));
            compactor.remembered_keys()
        };
        HELD.with(|held| {
            let mut held = held.borrow_mut();
            held.tick += 1;
            self.used.set(held.tick);
            held.keys = held.keys + remembered - self.counted.replace(remembered);
            if !self.queued.replace(true) {
                let tick = held.tick;
                held.queue.push_back((Rc::downgrade(self), tick));
            }
            held.forget_past_bound();
        });
    }
}

impl Held {
    fn forget_past_bound(&mut self) {
        while self.keys > ISOLATE_COMPACTOR_KEYS {
            let Some((slot, queued_at)) = self.queue.pop_front() else { return };
            // A compactor that is gone took its count with it.
            let Some(slot) = slot.upgrade() else { continue };
            if slot.used.get() > queued_at {
                self.queue.push_back((Rc::downgrade(&slot), slot.used.get()));
                continue;
            }
            slot.compactor.borrow_mut().forget_keys();
            self.keys -= slot.counted.replace(0);
            slot.queued.set(false);
        }
    }
}

impl Drop for CompactorSlot {
    fn drop(&mut self) {
        let counted = self.counted.get();
        let _ = HELD.try_with(|held| held.borrow_mut().keys -= counted);
    }
}
