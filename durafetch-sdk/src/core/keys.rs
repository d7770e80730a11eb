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
    if digits.len() != EPOCH_DIGITS + SEQ_DIGITS || !digits.bytes().all(|b| b.is_ascii_hexdigit()) {
        return None;
    }
    let epoch = u32::from_str_radix(&digits[..EPOCH_DIGITS], 16).ok()?;
    let seq = u64::from_str_radix(&digits[EPOCH_DIGITS..], 16).ok()?;
    Some(Cursor::new(epoch, seq))
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
            let inside = user >= RESERVED_PREFIX && user < RESERVED_END;
            assert!(!inside, "{user:?} sorts inside the reserved range");
        }
        for internal in [RESERVED_PREFIX, LOG_PREFIX, FLOOR_KEY, &log_key(Cursor::new(3, 9))] {
            assert!(check_user_key(internal).is_err());
            assert!(internal >= RESERVED_PREFIX && internal < RESERVED_END);
        }
        assert!(LOG_PREFIX < LOG_END && LOG_END <= RESERVED_END);
        assert!(!(FLOOR_KEY >= LOG_PREFIX && FLOOR_KEY < LOG_END), "the floor row is not a log row");
    }

    #[test]
    fn malformed_log_keys_are_rejected() {
        assert_eq!(parse_log_key("key-a"), None);
        assert_eq!(parse_log_key(LOG_PREFIX), None);
        assert_eq!(parse_log_key(&format!("{LOG_PREFIX}zz")), None);
        assert_eq!(parse_log_key(&format!("{LOG_PREFIX}{}", "g".repeat(24))), None);
    }

    #[test]
    fn reserved_key_error_names_the_key_and_the_fix() {
        let err = check_user_key(&format!("{RESERVED_PREFIX}x")).unwrap_err().to_string();
        assert!(err.contains("reserved"), "{err}");
        assert!(err.contains("choose another key"), "{err}");
    }
}
