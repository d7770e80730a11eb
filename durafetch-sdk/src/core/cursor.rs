//! Positions in an object's change log.

use serde::{Deserialize, Serialize};
use std::fmt;

/// A position in an object's change log: everything up to and including `seq` within `epoch`.
///
/// An epoch starts empty (a new object, or right after `delete_all`) and its sequence numbers
/// only grow. Sequences may have gaps: a rolled-back transaction consumes a number without
/// leaving a log row, so readers never assume `seq + 1` exists.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct Cursor {
    pub epoch: u32,
    pub seq: u64,
}

impl Cursor {
    pub const fn new(epoch: u32, seq: u64) -> Self {
        Self { epoch, seq }
    }

    /// The position right after a `delete_all` at this cursor: a new, empty epoch.
    pub fn next_epoch(self) -> Self {
        Self::new(self.epoch + 1, 0)
    }

    /// The position of the next log row in the same epoch.
    pub fn next_seq(self) -> Self {
        Self::new(self.epoch, self.seq + 1)
    }
}

/// The furthest a reader may be told it has read, given the head each open transaction saw when
/// it started (`oldest_open`). A transaction logs its writes under positions after that head but
/// commits them later, so a cursor past it could skip rows that appear afterwards.
pub fn settled(read_up_to: Cursor, oldest_open: Option<Cursor>) -> Cursor {
    match oldest_open {
        None => read_up_to,
        Some(open) if open.epoch == read_up_to.epoch => read_up_to.min(open),
        // Opened in an earlier epoch: its writes land somewhere in this one.
        Some(open) if open.epoch < read_up_to.epoch => Cursor::new(read_up_to.epoch, 0),
        Some(_) => read_up_to,
    }
}

impl fmt::Display for Cursor {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}", self.epoch, self.seq)
    }
}

/// What a reader holding `since` must be sent to catch up with an object whose log starts at
/// `floor` and ends at `head`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ReadPlan {
    /// Every user key, then the log from the head seen when the scan started.
    Snapshot,
    /// Only the keys named by log rows after `since`.
    ChangesSince(Cursor),
}

impl ReadPlan {
    /// A reader can be served incrementally only inside the current epoch and only while the log
    /// still holds every row after its cursor (`floor` is the first position the log can serve
    /// from). Anything else, including a cursor from the future, gets a full snapshot.
    pub fn choose(since: Option<Cursor>, floor: Cursor, head: Cursor) -> Self {
        match since {
            Some(c) if c.epoch == head.epoch && c.seq <= head.seq && c >= floor => ReadPlan::ChangesSince(c),
            _ => ReadPlan::Snapshot,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reader_in_current_epoch_gets_changes() {
        let head = Cursor::new(2, 10);
        let floor = Cursor::new(2, 0);
        assert_eq!(ReadPlan::choose(Some(Cursor::new(2, 4)), floor, head), ReadPlan::ChangesSince(Cursor::new(2, 4)));
        assert_eq!(ReadPlan::choose(Some(head), floor, head), ReadPlan::ChangesSince(head));
    }

    #[test]
    fn reader_from_other_epoch_future_or_below_floor_gets_snapshot() {
        let head = Cursor::new(2, 10);
        let floor = Cursor::new(2, 5);
        assert_eq!(ReadPlan::choose(None, floor, head), ReadPlan::Snapshot);
        assert_eq!(ReadPlan::choose(Some(Cursor::new(1, 99)), floor, head), ReadPlan::Snapshot);
        assert_eq!(ReadPlan::choose(Some(Cursor::new(2, 11)), floor, head), ReadPlan::Snapshot);
        assert_eq!(ReadPlan::choose(Some(Cursor::new(2, 4)), floor, head), ReadPlan::Snapshot);
        assert_eq!(ReadPlan::choose(Some(Cursor::new(3, 0)), floor, head), ReadPlan::Snapshot);
    }

    #[test]
    fn open_transactions_hold_readers_back() {
        let read = Cursor::new(3, 50);
        assert_eq!(settled(read, None), read);
        assert_eq!(settled(read, Some(Cursor::new(3, 20))), Cursor::new(3, 20));
        assert_eq!(settled(read, Some(Cursor::new(3, 70))), read);
        assert_eq!(settled(read, Some(Cursor::new(2, 70))), Cursor::new(3, 0));
    }

    #[test]
    fn cursors_order_by_epoch_then_seq() {
        assert!(Cursor::new(1, 100) < Cursor::new(2, 0));
        assert_eq!(Cursor::new(1, 100).next_epoch(), Cursor::new(2, 0));
        assert_eq!(Cursor::new(1, 100).next_seq(), Cursor::new(1, 101));
    }
}
