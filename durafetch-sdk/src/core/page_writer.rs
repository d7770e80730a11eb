//! The text of `page` messages and of a restore's `put` requests, written change by change, so
//! that each change is serialised once, and full by key count or by size.

use crate::core::protocol::{Change, MAX_PAGE_CHANGES, PAGE_HEAD, PAGE_TARGET_BYTES};
use crate::core::restore_protocol::{IMPORT_PAGE_TARGET_BYTES, MAX_IMPORT_PAGE_ITEMS};

/// Builds the text of [`ServerMessage::Page`](crate::core::protocol::ServerMessage::Page) frames (or, [`PageWriter::import`], of a restore's
/// `put` requests) incrementally, serialising each change once, and says when a page is full (by
/// key count or by size).
pub struct PageWriter {
    /// The page's JSON text so far: UTF-8, as serde_json writes it.
    text: Vec<u8>,
    count: usize,
    /// Bytes of change text pushed since the writer was made, for [`ReadSizer`](crate::core::storage_api::ReadSizer).
    pushed: usize,
    /// The message's text up to its first change.
    head: &'static str,
    max_changes: usize,
    max_bytes: usize,
}

impl Default for PageWriter {
    fn default() -> Self {
        PageWriter { text: Vec::new(), count: 0, pushed: 0, head: PAGE_HEAD, max_changes: MAX_PAGE_CHANGES, max_bytes: PAGE_TARGET_BYTES }
    }
}

const PUT_HEAD: &str = r#"{"type":"put","changes":["#;
const PAGE_TAIL: &str = "]}";

impl PageWriter {
    /// A writer of a restore's `put` requests ([`crate::core::restore_protocol::ImportRequest::Put`]).
    pub fn import() -> Self {
        PageWriter { head: PUT_HEAD, max_changes: MAX_IMPORT_PAGE_ITEMS, max_bytes: IMPORT_PAGE_TARGET_BYTES, ..Self::default() }
    }

    pub fn push(&mut self, change: Change) {
        self.text.extend_from_slice(if self.count == 0 { self.head } else { "," }.as_bytes());
        let before = self.text.len();
        // A Change always serialises: its fields are strings and JSON values. It is written
        // straight into the page, without a string of its own.
        serde_json::to_writer(&mut self.text, &change).expect("change serialises");
        self.pushed += self.text.len() - before;
        self.count += 1;
    }

    /// Bytes of change text pushed so far, in all pages.
    pub fn pushed_bytes(&self) -> usize {
        self.pushed
    }

    pub fn is_full(&self) -> bool {
        self.count >= self.max_changes || self.text.len() >= self.max_bytes
    }

    pub fn is_empty(&self) -> bool {
        self.count == 0
    }

    /// The finished page, leaving the writer empty; `None` if nothing was pushed.
    pub fn take(&mut self) -> Option<String> {
        if self.count == 0 {
            return None;
        }
        self.count = 0;
        let mut text = std::mem::take(&mut self.text);
        text.extend_from_slice(PAGE_TAIL.as_bytes());
        // serde_json writes only UTF-8, as do the constants around it.
        Some(String::from_utf8(text).expect("pages are UTF-8"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::core::protocol::{ChangeValue, ServerMessage};
    use serde_json::json;

    #[test]
    fn page_writer_builds_valid_pages_and_splits_by_count_and_size() {
        let mut writer = PageWriter::default();
        assert_eq!(writer.take(), None);
        let changes: Vec<Change> =
            (0..MAX_PAGE_CHANGES).map(|i| Change { key: format!("k{i}"), value: ChangeValue::Json(json!(i)) }).collect();
        for (i, c) in changes.iter().enumerate() {
            assert!(!writer.is_full(), "full after {i}");
            writer.push(c.clone());
        }
        assert!(writer.is_full());
        let page: ServerMessage = serde_json::from_str(&writer.take().unwrap()).unwrap();
        assert_eq!(page, ServerMessage::Page { changes });
        assert!(writer.is_empty());

        writer.push(Change { key: "big".into(), value: ChangeValue::Bytes(vec![7; PAGE_TARGET_BYTES]) });
        assert!(writer.is_full());
        let text = writer.take().unwrap();
        assert!(matches!(serde_json::from_str(&text).unwrap(), ServerMessage::Page { changes } if changes.len() == 1));
    }
}
