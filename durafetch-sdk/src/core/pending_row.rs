//! The keys written since the last log row, gathered into one row per burst of writes.
//!
//! Both storage backends commit an event's writes together, once the event's JavaScript and every
//! microtask it queued have run: an awaited `put` resolves as a microtask, so a loop of them is one
//! commit. A row written from a microtask that runs after the burst therefore commits atomically
//! with every write it names, and costs one storage row per burst instead of one per write call.
//!
//! The row is written once the writes have paused for a few microtask turns (the object requeues
//! a check each turn), or at once when it reaches its size bound.

use rustc_hash::{FxBuildHasher, FxHashSet};

/// Keys one row may name; with [`MAX_ROW_KEY_BYTES`] this bounds what readers of the log hold.
pub const MAX_ROW_KEYS: usize = 1024;
/// Bytes of key text (UTF-8) one row may name. Storage holds a string with any character past
/// U+00FF at two bytes a character, so this is at most 96 KiB stored: under the smallest value
/// limit (128 KiB, the key-value backend's) with room for each name's few bytes of framing.
pub const MAX_ROW_KEY_BYTES: usize = 48 * 1024;
/// Microtask turns without a write before the row is written. An awaited write in Rust takes two
/// turns to resume its caller (the promise's reaction, then the executor's poll), so a loop of
/// awaited writes never leaves the check idle for this long.
pub const IDLE_TURNS: u32 = 4;

/// What the object does at a microtask turn.
#[derive(Debug, PartialEq, Eq)]
pub enum Turn {
    /// Check again at the next turn.
    Wait,
    /// Write the row now.
    Write,
    /// Nothing is pending: stop checking.
    Stop,
}

#[derive(Debug, Default)]
pub struct PendingRow {
    keys: Vec<String>,
    bytes: usize,
    /// Whether a write call was noted since the last turn.
    written: bool,
    idle: u32,
    checking: bool,
    /// Whether some write of the row waits for storage to confirm it (the default): the row's
    /// own `put` then does too. Only a row of `allowUnconfirmed` writes is written without.
    confirmed: bool,
}

/// A pending row taken to be written.
#[derive(Debug, PartialEq, Eq)]
pub struct TakenRow {
    pub keys: Vec<String>,
    /// Whether the row may skip confirmation: every write it names did.
    pub allow_unconfirmed: bool,
    /// Whether keys written more than once were dropped after their first place, so that `keys`
    /// no longer pair one for one with the write calls' keys in the order noted.
    pub dropped_repeats: bool,
}

/// Keeps the first place of each key; answers whether any repeat was dropped.
fn drop_repeats(keys: &mut Vec<String>) -> bool {
    let keep: Vec<bool> = {
        let mut seen = FxHashSet::with_capacity_and_hasher(keys.len(), FxBuildHasher);
        keys.iter().map(|key| seen.insert(key.as_str())).collect()
    };
    if keep.iter().all(|&kept| kept) {
        return false;
    }
    let mut kept = keep.into_iter();
    keys.retain(|_| kept.next().unwrap_or(true));
    true
}

/// What noting a write asks of the object.
#[derive(Debug, PartialEq, Eq)]
pub enum Noted {
    /// Start the per-turn check: none is queued.
    StartChecking,
    /// A check is already queued.
    Checking,
    /// The row is at its bound: write it now.
    Full,
}

impl PendingRow {
    /// Notes one write call's keys, and whether the call asked not to wait for confirmation.
    pub fn note(&mut self, keys: impl IntoIterator<Item = String>, allow_unconfirmed: bool) -> Noted {
        self.confirmed |= !allow_unconfirmed;
        for key in keys {
            self.bytes += key.len();
            self.keys.push(key);
        }
        self.written = true;
        if self.keys.len() >= MAX_ROW_KEYS || self.bytes >= MAX_ROW_KEY_BYTES {
            Noted::Full
        } else if self.checking {
            Noted::Checking
        } else {
            self.checking = true;
            Noted::StartChecking
        }
    }

    /// One microtask turn of the check.
    pub fn turn(&mut self) -> Turn {
        if self.keys.is_empty() {
            self.checking = false;
            return Turn::Stop;
        }
        if std::mem::take(&mut self.written) {
            self.idle = 0;
            return Turn::Wait;
        }
        self.idle += 1;
        if self.idle < IDLE_TURNS {
            return Turn::Wait;
        }
        self.checking = false;
        Turn::Write
    }

    /// The row's keys, each once, in the order first written; the row starts empty again, sized
    /// for a burst like this one.
    pub fn take(&mut self) -> TakenRow {
        let allow_unconfirmed = !std::mem::take(&mut self.confirmed);
        let capacity = self.keys.len();
        let mut keys = std::mem::replace(&mut self.keys, Vec::with_capacity(capacity));
        self.bytes = 0;
        let dropped_repeats = drop_repeats(&mut keys);
        TakenRow { keys, allow_unconfirmed, dropped_repeats }
    }

    /// Puts back the keys of a row that could not be written, for the next row to name.
    pub fn restore(&mut self, keys: Vec<String>, allow_unconfirmed: bool) {
        self.confirmed |= !allow_unconfirmed;
        self.bytes += keys.iter().map(String::len).sum::<usize>();
        self.keys.extend(keys);
    }

    /// Forgets every pending key: `delete_all` removed them with everything else.
    pub fn clear(&mut self) {
        self.keys.clear();
        self.confirmed = false;
        self.bytes = 0;
    }

    pub fn is_empty(&self) -> bool {
        self.keys.is_empty()
    }
}

/// Splits `keys` into consecutive runs that each fit one row: at most [`MAX_ROW_KEYS`] keys and
/// [`MAX_ROW_KEY_BYTES`] of key text. A row is written once a burst reaches a bound, but the write
/// that reaches it may carry up to 128 keys of 2 KiB, and a row past the value limit would fail
/// every time it was tried; so such a burst, or such a write in a transaction, takes several rows.
pub fn row_runs(keys: &[String]) -> impl Iterator<Item = &[String]> {
    let mut rest = keys;
    std::iter::from_fn(move || {
        if rest.is_empty() {
            return None;
        }
        let mut bytes = 0;
        let over = rest.iter().take(MAX_ROW_KEYS).position(|key| {
            bytes += key.len();
            bytes > MAX_ROW_KEY_BYTES
        });
        // A single key is always within the bound (keys are at most 2 KiB), but a run is never empty.
        let (run, tail) = rest.split_at(over.unwrap_or(rest.len().min(MAX_ROW_KEYS)).max(1));
        rest = tail;
        Some(run)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn keys(names: &[&str]) -> Vec<String> {
        names.iter().map(|k| k.to_string()).collect()
    }

    #[test]
    fn a_burst_of_writes_becomes_one_row_once_the_writes_pause() {
        let mut row = PendingRow::default();
        assert_eq!(row.note(keys(&["b"]), false), Noted::StartChecking);
        // Writes two turns apart, as an awaited loop makes them, keep the check waiting.
        for name in ["a", "b", "c"] {
            assert_eq!(row.turn(), Turn::Wait);
            assert_eq!(row.turn(), Turn::Wait);
            assert_eq!(row.note(keys(&[name]), false), Noted::Checking);
        }
        let turns: Vec<Turn> = std::iter::from_fn(|| Some(row.turn())).take_while(|t| *t == Turn::Wait).collect();
        assert_eq!(turns.len(), IDLE_TURNS as usize, "one turn sees the last write, then the idle ones");
        let taken = row.take();
        assert_eq!(taken.keys, ["b", "a", "c"], "each key once, where first written");
        assert!(taken.dropped_repeats);
        assert!(row.is_empty());
        assert_eq!(row.note(keys(&["d"]), false), Noted::StartChecking, "the next burst starts a new check");
    }

    #[test]
    fn a_check_with_nothing_pending_stops() {
        let mut row = PendingRow::default();
        assert_eq!(row.note(keys(&["a"]), false), Noted::StartChecking);
        row.clear();
        assert_eq!(row.turn(), Turn::Stop);
        assert_eq!(row.note(keys(&["b"]), false), Noted::StartChecking);
    }

    #[test]
    fn a_row_is_full_at_its_key_or_byte_bound() {
        let mut row = PendingRow::default();
        for i in 0..MAX_ROW_KEYS - 1 {
            assert_ne!(row.note([format!("k{i}")], false), Noted::Full);
        }
        assert_eq!(row.note(keys(&["last"]), false), Noted::Full);
        let taken = row.take();
        assert_eq!(taken.keys.len(), MAX_ROW_KEYS);
        assert!(!taken.dropped_repeats, "distinct keys are kept as noted");

        let long = "x".repeat(MAX_ROW_KEY_BYTES / 2);
        assert_ne!(row.note([format!("1{long}")], false), Noted::Full);
        assert_eq!(row.note([format!("2{long}")], false), Noted::Full);
    }

    #[test]
    fn a_burst_past_a_bound_is_split_into_rows_within_both_bounds() {
        // A row nearly full of long keys, then one write of 128 keys of 2 KiB: far past the bound.
        let mut row = PendingRow::default();
        let long = |prefix: &str, i: usize| format!("{prefix}{i:04}{}", "x".repeat(2044));
        for i in 0..20 {
            row.note([long("a", i)], false);
        }
        assert_eq!(row.note((0..128).map(|i| long("b", i)), false), Noted::Full);
        let keys = row.take().keys;
        let runs: Vec<&[String]> = row_runs(&keys).collect();
        assert!(runs.iter().all(|run| run.iter().map(String::len).sum::<usize>() <= MAX_ROW_KEY_BYTES));
        assert_eq!(runs.len(), (148 * 2048usize).div_ceil(MAX_ROW_KEY_BYTES), "as few rows as the bound allows");
        assert_eq!(runs.concat(), keys, "every key once, in order");

        let many: Vec<String> = (0..2500).map(|i| format!("k{i:05}")).collect();
        let sizes: Vec<usize> = row_runs(&many).map(<[String]>::len).collect();
        assert_eq!(sizes, [MAX_ROW_KEYS, MAX_ROW_KEYS, 2500 - 2 * MAX_ROW_KEYS]);
        assert_eq!(row_runs(&[]).count(), 0);
    }

    #[test]
    fn only_repeats_are_dropped_and_each_key_keeps_its_first_place() {
        let mut row = PendingRow::default();
        let written: Vec<String> = (0..1000u32).map(|i| format!("k{}", (i * 7919) % 613)).collect();
        for key in &written {
            row.note([key.clone()], false);
            if row.keys.len() >= MAX_ROW_KEYS {
                break;
            }
        }
        let mut expected = Vec::new();
        for key in &written {
            if !expected.contains(key) {
                expected.push(key.clone());
            }
        }
        let taken = row.take();
        assert_eq!(taken.keys, expected);
        assert!(taken.dropped_repeats);
    }

    #[test]
    fn keys_of_a_row_that_failed_are_named_by_the_next() {
        let mut row = PendingRow::default();
        row.note(keys(&["a", "b"]), false);
        let taken = row.take();
        row.note(keys(&["c"]), true);
        row.restore(taken.keys, taken.allow_unconfirmed);
        assert_eq!(row.take(), TakenRow { keys: keys(&["c", "a", "b"]), allow_unconfirmed: false, dropped_repeats: false });
    }

    #[test]
    fn a_row_skips_confirmation_only_when_every_write_of_it_did() {
        let mut row = PendingRow::default();
        row.note(keys(&["a"]), true);
        row.note(keys(&["b"]), true);
        assert!(row.take().allow_unconfirmed);
        row.note(keys(&["a"]), true);
        row.note(keys(&["b"]), false);
        assert!(!row.take().allow_unconfirmed);
        row.note(keys(&["c"]), true);
        assert!(row.take().allow_unconfirmed, "each row starts afresh");
    }
}
