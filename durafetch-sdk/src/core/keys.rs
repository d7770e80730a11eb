//! The reserved key range inside an object's storage and the encoding of change-log keys.
//!
//! Every internal key starts with [`RESERVED_PREFIX`]. The prefix begins with U+0001, so the range
//! sorts before every printable key, and exports list user keys as the two ranges on either side
//! of it instead of filtering pages after reading them.

use crate::core::cursor::Cursor;
use std::fmt;

/// Start of the reserved range (inclusive).
pub const RESERVED_PREFIX: &str = "\u{1}durafetch\u{1}";
/// End of the reserved range (exclusive): the prefix with its last character incremented.
pub const RESERVED_END: &str = "\u{1}durafetch\u{2}";
/// Change-log rows: `LOG_PREFIX` + 8 hex digits of epoch + 16 hex digits of sequence, so that
/// lexical order is log order.
pub const LOG_PREFIX: &str = "\u{1}durafetch\u{1}log\u{1}";
/// End of the change-log range (exclusive).
pub const LOG_END: &str = "\u{1}durafetch\u{1}log\u{2}";

/// The log's floor: the lowest position the log can still serve incremental reads from, as
/// `[epoch, seq]`. Raised when tombstones are dropped; absent means the start of the epoch.
pub const FLOOR_KEY: &str = "\u{1}durafetch\u{1}floor";

/// The head the registry last acknowledged, as `[epoch, seq]`. An object whose head is ahead of
/// it when it starts (a report failed, or the object was evicted first) reports again at once.
pub const REPORTED_KEY: &str = "\u{1}durafetch\u{1}reported";

/// What a restore session has received and not yet applied: the requests' texts, in chunks
/// (`runtime::import_stage`).
pub const STAGE_PREFIX: &str = "\u{1}durafetch\u{1}import\u{1}";

const EPOCH_DIGITS: usize = 8;
const SEQ_DIGITS: usize = 16;

/// A user write named a key inside the reserved range.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("durafetch: the key {key:?} is inside the range reserved for durafetch's own rows (keys starting with \"\\u0001durafetch\\u0001\"); choose another key")]
pub struct ReservedKeyError {
    pub key: String,
}

pub fn is_reserved(key: &str) -> bool {
    key.starts_with(RESERVED_PREFIX)
}

/// Rejects keys that would land in the reserved range.
pub fn check_user_key(key: &str) -> Result<(), ReservedKeyError> {
    if is_reserved(key) {
        Err(ReservedKeyError { key: key.to_owned() })
    } else {
        Ok(())
    }
}

/// The storage key of the log row written at `at`.
pub fn log_key(at: Cursor) -> String {
    let mut key = String::with_capacity(LOG_PREFIX.len() + EPOCH_DIGITS + SEQ_DIGITS);
    key.push_str(LOG_PREFIX);
    // Writing into a String cannot fail.
    let _ = fmt::Write::write_fmt(&mut key, format_args!("{:08x}{:016x}", at.epoch, at.seq));
    key
}

/// The position a log key stands for, or `None` for anything that is not a well-formed log key.
pub fn parse_log_key(key: &str) -> Option<Cursor> {
    let digits = key.strip_prefix(LOG_PREFIX)?;
    // Lowercase only: log keys sort by position, which needs exactly one spelling per position.
    if digits.len() != EPOCH_DIGITS + SEQ_DIGITS || !digits.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f')) {
        return None;
    }
    let epoch = u32::from_str_radix(&digits[..EPOCH_DIGITS], 16).ok()?;
    let seq = u64::from_str_radix(&digits[EPOCH_DIGITS..], 16).ok()?;
    Some(Cursor::new(epoch, seq))
}

/// Where a key range starts.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Start {
    Beginning,
    /// Keys at or after this one.
    From(String),
    /// Keys strictly after this one.
    After(String),
}

/// A key range as the storage API's `list` takes it: a start and an exclusive end.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeyRange {
    pub start: Start,
    pub end: Option<String>,
}

impl KeyRange {
    fn starts_below(&self, bound: &str) -> bool {
        match &self.start {
            Start::Beginning => true,
            Start::From(s) | Start::After(s) => s.as_str() < bound,
        }
    }
}

/// The parts of `range` outside the reserved range, in ascending order: what a user's `list`
/// should see. A range that does not touch the reserved one comes back unchanged.
pub fn outside_reserved(range: &KeyRange) -> Vec<KeyRange> {
    let mut parts = Vec::new();
    let end_below = match &range.end {
        Some(end) if end.as_str() <= RESERVED_PREFIX => end.clone(),
        _ => RESERVED_PREFIX.to_owned(),
    };
    if range.starts_below(&end_below) {
        let end = if range.end.as_deref().is_some_and(|e| e <= RESERVED_PREFIX) { range.end.clone() } else { Some(end_below) };
        parts.push(KeyRange { start: range.start.clone(), end });
    }
    if range.end.as_deref().is_none_or(|e| e > RESERVED_END) {
        let start = match &range.start {
            Start::From(s) if s.as_str() >= RESERVED_END => Start::From(s.clone()),
            Start::After(s) if s.as_str() >= RESERVED_END => Start::After(s.clone()),
            _ => Start::From(RESERVED_END.to_owned()),
        };
        parts.push(KeyRange { start, end: range.end.clone() });
    }
    // Nothing was cut out: hand back the range exactly as asked.
    if parts.len() == 1 && !overlaps_reserved(range) {
        return vec![range.clone()];
    }
    parts
}

fn overlaps_reserved(range: &KeyRange) -> bool {
    range.starts_below(RESERVED_END) && range.end.as_deref().is_none_or(|e| e > RESERVED_PREFIX)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn log_keys_round_trip_and_sort_in_log_order() {
        let cursors = [
            Cursor::new(0, 1),
            Cursor::new(0, 2),
            Cursor::new(0, 255),
            Cursor::new(0, u64::MAX),
            Cursor::new(1, 0),
            Cursor::new(u32::MAX, 7),
        ];
        for c in cursors {
            assert_eq!(parse_log_key(&log_key(c)), Some(c));
        }
        let mut keys: Vec<String> = cursors.iter().map(|c| log_key(*c)).collect();
        let before = keys.clone();
        keys.sort();
        assert_eq!(keys, before);
    }

    #[test]
    fn reserved_range_is_apart_from_printable_keys() {
        for user in ["", " ", "a", "key-a", "\u{0}", "\u{1}", "\u{1}durafetch", "\u{1}durafetch\u{2}x", "~", "ÿ"] {
            assert!(check_user_key(user).is_ok(), "{user:?}");
            let inside = (RESERVED_PREFIX..RESERVED_END).contains(&user);
            assert!(!inside, "{user:?} sorts inside the reserved range");
        }
        for internal in [RESERVED_PREFIX, LOG_PREFIX, FLOOR_KEY, REPORTED_KEY, &log_key(Cursor::new(3, 9))] {
            assert!(check_user_key(internal).is_err());
            assert!((RESERVED_PREFIX..RESERVED_END).contains(&internal));
        }
        assert!(LOG_PREFIX < LOG_END && LOG_END <= RESERVED_END);
        for marker in [FLOOR_KEY, REPORTED_KEY] {
            assert!(!(LOG_PREFIX..LOG_END).contains(&marker), "{marker:?} is not a log row");
        }
    }

    #[test]
    fn ranges_around_the_reserved_one_see_every_user_key_and_no_internal_one() {
        let keys = [
            "",
            "\u{0}",
            "\u{1}",
            "\u{1}durafetch",
            RESERVED_PREFIX,
            LOG_PREFIX,
            FLOOR_KEY,
            "\u{1}durafetch\u{1}zz",
            RESERVED_END,
            "\u{1}durafetch\u{2}x",
            "a",
            "b",
            "m",
            "z",
        ];
        let bounds =
            [None, Some(""), Some("\u{1}"), Some(RESERVED_PREFIX), Some(LOG_PREFIX), Some(RESERVED_END), Some("a"), Some("m"), Some("zz")];
        let in_range = |r: &KeyRange, k: &str| {
            let after_start = match &r.start {
                Start::Beginning => true,
                Start::From(s) => k >= s.as_str(),
                Start::After(s) => k > s.as_str(),
            };
            after_start && r.end.as_deref().is_none_or(|e| k < e)
        };
        for start in bounds {
            for end in bounds {
                for exclusive in [false, true] {
                    let start = match (start, exclusive) {
                        (None, _) => Start::Beginning,
                        (Some(s), false) => Start::From(s.to_owned()),
                        (Some(s), true) => Start::After(s.to_owned()),
                    };
                    let range = KeyRange { start, end: end.map(str::to_owned) };
                    let parts = outside_reserved(&range);
                    for k in keys {
                        let wanted = in_range(&range, k) && !is_reserved(k) && !(RESERVED_PREFIX..RESERVED_END).contains(&k);
                        let seen = parts.iter().filter(|p| in_range(p, k)).count();
                        assert_eq!(seen, usize::from(wanted), "{range:?} {k:?} {parts:?}");
                    }
                }
            }
        }
        let plain = KeyRange { start: Start::From("a".into()), end: Some("b".into()) };
        assert_eq!(outside_reserved(&plain), vec![plain.clone()]);
    }

    #[test]
    fn malformed_log_keys_are_rejected() {
        assert_eq!(parse_log_key("key-a"), None);
        assert_eq!(parse_log_key(LOG_PREFIX), None);
        assert_eq!(parse_log_key(&format!("{LOG_PREFIX}zz")), None);
        assert_eq!(parse_log_key(&format!("{LOG_PREFIX}{}", "g".repeat(24))), None);
        assert_eq!(parse_log_key(&format!("{LOG_PREFIX}{}", "A".repeat(24))), None, "one spelling per position");
    }

    #[test]
    fn reserved_key_error_names_the_key_and_the_fix() {
        let err = check_user_key(&format!("{RESERVED_PREFIX}x")).unwrap_err().to_string();
        assert!(err.contains("reserved"), "{err}");
        assert!(err.contains("choose another key"), "{err}");
    }
}
