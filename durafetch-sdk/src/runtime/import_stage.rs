//! What a restore session has received and not yet applied, kept in the object's reserved key
//! range: each request's text as it came, in chunks that fit any storage value. The application
//! never sees it (its reads and lists skip the reserved range), the change log never records it
//! (it is written with the runtime's own methods, not the hooks), and an export never sends it.
//! A session that ends without applying it, or a later session, deletes it.

use js_sys::{Array, Object};
use wasm_bindgen::{JsCast, JsValue};
use wasm_bindgen_futures::JsFuture;

use super::storage::{get_many, runtime_method, RangeScan};
use crate::core::keys::STAGE_PREFIX;
use crate::core::storage_api::MAX_KEYS_PER_CALL;

/// Bytes of a request's text per stored value: a key-value-backed object stores values of up to
/// 128 KiB, and a string of at most 32 KiB of UTF-8 holds at most 32 Ki characters, which the
/// runtime stores in at most 64 KiB.
const CHUNK_BYTES: usize = 32 * 1024;

/// The requests a session staged so far, by their position in it: how many chunks each has.
/// Its keys carry the session's number, so that a session another has replaced can never read
/// or delete the newer one's.
pub(crate) struct Stage {
    session: u64,
    chunks: Vec<u32>,
}

impl Stage {
    pub fn new(session: u64) -> Self {
        Stage { session, chunks: Vec::new() }
    }

    /// Deletes what sessions numbered below `session` staged: what an older session, ended or
    /// replaced, left behind. A newer session's keys sort after, and are left alone.
    pub async fn clear_before(storage: &Object, session: u64) -> worker::Result<()> {
        let end = format!("{STAGE_PREFIX}{session:016x}");
        let mut scan = RangeScan::new(Some(STAGE_PREFIX), Some(&end));
        while let Some(page) = scan.next_page(storage, MAX_KEYS_PER_CALL).await? {
            let keys: Array = page.keys().into_iter().collect::<Result<_, _>>()?;
            delete(storage, &keys).await?;
        }
        Ok(())
    }

    /// Keeps `text`; answers the request's position, by which [`Self::read`] finds it.
    pub async fn append(&mut self, storage: &Object, text: &str) -> worker::Result<u32> {
        let index = self.chunks.len() as u32;
        let parts = split(text);
        let mut calls = Vec::new();
        for (n, group) in parts.chunks(MAX_KEYS_PER_CALL).enumerate() {
            let entries = Object::new();
            for (i, part) in group.iter().enumerate() {
                let chunk = (n * MAX_KEYS_PER_CALL + i) as u32;
                js_sys::Reflect::set(&entries, &self.chunk_key(index, chunk).into(), &JsValue::from_str(part))?;
            }
            let promise: js_sys::Promise = runtime_method(storage, "put")?.call1(storage, &entries)?.dyn_into()?;
            calls.push(promise);
        }
        JsFuture::from(js_sys::Promise::all(&calls.into_iter().collect::<Array>())).await?;
        self.chunks.push(parts.len() as u32);
        Ok(index)
    }

    /// The text of the request at `index`, read through `storage` (the object's storage, or a
    /// transaction of it).
    pub async fn read(&self, storage: &Object, index: u32) -> worker::Result<String> {
        let count = self.chunks.get(index as usize).copied().unwrap_or(0);
        let keys: Vec<String> = (0..count).map(|chunk| self.chunk_key(index, chunk)).collect();
        let mut text = String::new();
        for group in keys.chunks(MAX_KEYS_PER_CALL) {
            let values = get_many(storage, group).await?;
            for key in group {
                let part = values.get(&JsValue::from_str(key)).as_string();
                text.push_str(&part.ok_or_else(|| worker::Error::RustError(format!("a staged part of request {index} is missing")))?);
            }
        }
        Ok(text)
    }

    /// Deletes every staged request through `storage`, as the apply's last step.
    pub async fn remove(&self, storage: &Object) -> worker::Result<()> {
        let keys: Vec<String> = self
            .chunks
            .iter()
            .enumerate()
            .flat_map(|(index, &count)| (0..count).map(move |chunk| self.chunk_key(index as u32, chunk)))
            .collect();
        for group in keys.chunks(MAX_KEYS_PER_CALL) {
            delete(storage, &group.iter().map(|k| JsValue::from_str(k)).collect()).await?;
        }
        Ok(())
    }
}

impl Stage {
    fn chunk_key(&self, index: u32, chunk: u32) -> String {
        format!("{STAGE_PREFIX}{:016x}{index:08x}{chunk:06x}", self.session)
    }
}

/// `text` in parts of at most [`CHUNK_BYTES`], each cut at a character's start.
fn split(text: &str) -> Vec<&str> {
    let mut parts = Vec::new();
    let mut rest = text;
    while !rest.is_empty() {
        let mut end = rest.len().min(CHUNK_BYTES);
        while !rest.is_char_boundary(end) {
            end -= 1;
        }
        let (part, tail) = rest.split_at(end);
        parts.push(part);
        rest = tail;
    }
    parts
}

/// The runtime's own `delete` of `keys` (at most 128): staged keys are durafetch's, not the log's.
async fn delete(storage: &Object, keys: &Array) -> worker::Result<()> {
    let promise: js_sys::Promise = runtime_method(storage, "delete")?.call1(storage, keys)?.dyn_into()?;
    JsFuture::from(promise).await?;
    Ok(())
}
