//! Reads of the raw storage object with the runtime's own methods. Range reads page with
//! `startAfter`: `worker::ListOptions` has no `startAfter`; the runtime
//! accepts it, and it lets a scan resume after the last key without reading it twice.

use js_sys::{Array, Map, Object, Reflect};
use wasm_bindgen::{JsCast, JsValue};
use wasm_bindgen_futures::JsFuture;
use worker::Result;

use crate::core::keys::{RESERVED_END, RESERVED_PREFIX};
use crate::core::storage_api::MAX_KEYS_PER_CALL;

/// A key range `[start, end)`, read in pages that each resume after the previous page's last key.
pub(crate) struct RangeScan {
    start: Option<String>,
    end: Option<String>,
    after: Option<String>,
    done: bool,
}

impl RangeScan {
    pub fn new(start: Option<&str>, end: Option<&str>) -> Self {
        Self { start: start.map(Into::into), end: end.map(Into::into), after: None, done: false }
    }

    /// Starts the scan after `key` rather than at the range's start.
    pub fn resume_after(&mut self, key: &str) {
        self.after = Some(key.to_owned());
    }

    /// Whether the last page read was the range's last.
    pub fn is_done(&self) -> bool {
        self.done
    }

    /// The next page of at most `limit` entries, or `None` when the range is exhausted.
    pub async fn next_page(&mut self, storage: &Object, limit: usize) -> Result<Option<Map>> {
        if self.done {
            return Ok(None);
        }
        let options = Object::new();
        if let Some(after) = &self.after {
            Reflect::set(&options, &"startAfter".into(), &after.into())?;
        } else if let Some(start) = &self.start {
            Reflect::set(&options, &"start".into(), &start.into())?;
        }
        if let Some(end) = &self.end {
            Reflect::set(&options, &"end".into(), &end.into())?;
        }
        Reflect::set(&options, &"limit".into(), &(limit as f64).into())?;
        let promise: js_sys::Promise = runtime_method(storage, "list")?.call1(storage, &options)?.dyn_into()?;
        let page: Map = JsFuture::from(promise).await?.dyn_into()?;
        if (page.size() as usize) < limit {
            self.done = true;
        }
        let last = page.keys().into_iter().last().transpose()?;
        match last.and_then(|k| k.as_string()) {
            Some(last) => self.after = Some(last),
            None => return Ok(None),
        }
        Ok(Some(page))
    }
}

/// Whether `storage` (the object's storage, or a transaction of it) holds a key of the user's:
/// one either side of the reserved range.
pub(crate) async fn holds_user_keys(storage: &Object) -> Result<bool> {
    for (start, end) in [(None, Some(RESERVED_PREFIX)), (Some(RESERVED_END), None)] {
        if RangeScan::new(start, end).next_page(storage, 1).await?.is_some() {
            return Ok(true);
        }
    }
    Ok(false)
}

/// Reads at most [`MAX_KEYS_PER_CALL`] keys in one call; absent keys are absent from the map.
pub(crate) async fn get_many(storage: &Object, keys: &[String]) -> Result<Map> {
    debug_assert!(keys.len() <= MAX_KEYS_PER_CALL);
    let array: Array = keys.iter().map(|k| JsValue::from_str(k)).collect();
    let promise: js_sys::Promise = runtime_method(storage, "get")?.call1(storage, &array)?.dyn_into()?;
    Ok(JsFuture::from(promise).await?.dyn_into()?)
}

/// The runtime's own method, from the prototype: durafetch's hooks (own properties) hide the
/// reserved range from users, and durafetch itself must see it.
pub(crate) fn runtime_method(storage: &Object, name: &str) -> Result<js_sys::Function> {
    Ok(Reflect::get(&Object::get_prototype_of(storage), &name.into())?.dyn_into()?)
}
