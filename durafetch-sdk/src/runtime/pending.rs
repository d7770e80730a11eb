//! The bridge between the pending row of the pure core ([`PendingRow`]) and JS: the keys of a
//! burst of writes gather here with the JS strings the writes named them by, until `rows`
//! writes them as log rows.

use js_sys::Array;
use wasm_bindgen::{JsCast, JsValue};

use crate::core::pending_row::{Noted, PendingRow, TakenRow};

/// The pending row and the same keys as the JS strings the write calls named, in the same
/// order: a row of a burst with no key written twice is that array, and its names need not
/// cross back from wasm.
pub(crate) struct Pending {
    pub row: PendingRow,
    names: Array,
}

impl Pending {
    pub fn new() -> Self {
        Self { row: PendingRow::default(), names: Array::new() }
    }

    /// Notes a write call's keys; `names` is the key string of a one-key call, or the array of
    /// the keys as the call named them.
    pub fn note(&mut self, (keys, names): (Vec<String>, &JsValue), allow_unconfirmed: bool) -> Noted {
        match names.dyn_ref::<Array>() {
            Some(many) => self.names = self.names.concat(many),
            None => {
                self.names.push(names);
            }
        }
        self.row.note(keys, allow_unconfirmed)
    }

    /// The row's keys and their JS names, one for one: the writes' own names, or, where repeats
    /// were dropped, names made from the keys.
    pub fn take(&mut self) -> (TakenRow, Array) {
        let taken = self.row.take();
        let names = std::mem::replace(&mut self.names, Array::new());
        let names = if taken.dropped_repeats { js_names(&taken.keys) } else { names };
        (taken, names)
    }

    /// Puts back a taken row's keys and names, after the new ones, as the row failed.
    pub fn restore(&mut self, keys: Vec<String>, names: &Array, allow_unconfirmed: bool) {
        self.names = self.names.concat(names);
        self.row.restore(keys, allow_unconfirmed);
    }

    pub fn clear(&mut self) {
        self.row.clear();
        self.names = Array::new();
    }
}

/// `keys` as a JS array: one JSON text crosses to JS for all of them, where key by key would
/// cost a call and a copy per key. (serde_json writes any `String`, and `JSON.parse` reads
/// what it writes; key by key is there only so that no path can fail.)
fn js_names(keys: &[String]) -> Array {
    serde_json::to_string(keys)
        .ok()
        .and_then(|text| js_sys::JSON::parse(&text).ok())
        .map_or_else(|| keys.iter().map(|k| JsValue::from_str(k)).collect(), JsCast::unchecked_into)
}
