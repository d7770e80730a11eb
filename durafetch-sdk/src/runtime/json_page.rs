//! Export pages of plain-JSON values, written by the runtime's own `JSON.stringify` and sent as
//! JS strings: the values never enter wasm memory. Walking each value from Rust costs several
//! JS↔wasm calls and two copies per key, which made the export several times slower than the
//! object's own `list()`; this path leaves the runtime's native code to do the work.
//!
//! Only values whose JSON text means exactly what storage holds take this path: strings and keys
//! that are valid Unicode, finite numbers other than -0 that are not integers beyond 2^53 (whose
//! JSON text would name another integer than the double holds), booleans, null, and arrays
//! without holes or named properties and objects of the plain prototype made of those, at most as deep as
//! [`value::encode`](super::value::encode) allows. Anything else stops the page, and the caller
//! encodes that entry with the exact encoder, which tags or refuses it. Both encoders must
//! agree on what is plain; the end-to-end value tests cover each kind through both.

use js_sys::{Array, JsString};
use wasm_bindgen::prelude::wasm_bindgen;
use wasm_bindgen::{JsCast, JsValue};

#[wasm_bindgen(inline_js = r#"
const MAX_DEPTH = 256;

function plain(v, depth) {
  if (depth > MAX_DEPTH) return false;
  switch (typeof v) {
    case "string": return v.isWellFormed();
    case "number": return Number.isFinite(v) && !Object.is(v, -0) && (Number.isSafeInteger(v) || !Number.isInteger(v));
    case "boolean": return true;
    case "object": break;
    default: return false;
  }
  if (v === null) return true;
  if (Array.isArray(v)) {
    if (Object.getPrototypeOf(v) !== Array.prototype) return false;
    // Named properties beside the elements: JSON.stringify would drop them.
    if (Object.keys(v).length !== v.length) return false;
    for (let i = 0; i < v.length; i++) {
      if (!(i in v) || !plain(v[i], depth + 1)) return false;
    }
    return true;
  }
  const proto = Object.getPrototypeOf(v);
  if (proto !== null && Object.getPrototypeOf(proto) !== null) return false;
  for (const k of Object.keys(v)) {
    if (!k.isWellFormed() || !plain(v[k], depth + 1)) return false;
  }
  return true;
}

export function plainPage(entries, from, maxChanges, maxChars) {
  const changes = [];
  let chars = 0;
  let i = from;
  for (; i < entries.length && changes.length < maxChanges && chars < maxChars; i++) {
    const entry = entries[i];
    const k = entry[0], v = entry[1];
    if (typeof k !== "string" || !k.isWellFormed() || !plain(v, 0)) break;
    // Strings are sized by their length; other values are not stringified twice to be sized,
    // as the storage read they come from is already sized by the pages it made before.
    chars += k.length + (typeof v === "string" ? v.length : 16);
    changes.push({ k, v });
  }
  const page = changes.length === 0 ? undefined : JSON.stringify({ type: "page", changes });
  return [page, i];
}

export function sendText(ws, text) {
  ws.send(text);
}
"#)]
extern "C" {
    #[wasm_bindgen(js_name = plainPage)]
    fn plain_page(entries: &Array, from: u32, max_changes: u32, max_chars: u32) -> Array;

    #[wasm_bindgen(js_name = sendText, catch)]
    fn send_text(ws: &JsValue, text: &JsString) -> Result<(), JsValue>;
}

/// A page of the `[key, value]` entries from `from` on, as long as they are plain JSON, up to
/// `max_changes` entries and about `max_chars` characters; and the index of the first entry not
/// taken. `None` when the entry at `from` is not plain JSON.
pub(crate) fn page(entries: &Array, from: u32, max_changes: usize, max_chars: usize) -> (Option<JsString>, u32) {
    let result = plain_page(entries, from, max_changes as u32, max_chars as u32);
    let next = result.get(1).as_f64().map_or(from, |n| n as u32);
    (result.get(0).dyn_into::<JsString>().ok(), next)
}

/// Sends a page's text as it is, without copying it through wasm memory.
pub(crate) fn send(ws: &worker::WebSocket, text: &JsString) -> worker::Result<()> {
    let raw: &worker::web_sys::WebSocket = ws.as_ref();
    send_text(raw.as_ref(), text).map_err(worker::Error::from)
}
