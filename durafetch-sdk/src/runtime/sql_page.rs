//! `sql_page` messages written in JS from the rows of a SQL read, as key pages are
//! (`json_page`): the values never enter wasm memory. Parsing each read's JSON into Rust values
//! and writing the page back out cost the export twice the object's own `SELECT *`.
//!
//! The reads of `core::sql_capture` select each column as its type and a form JSON carries
//! exactly; this writes the wire form `core::protocol::SqlValue` defines: an INTEGER as its
//! decimal digits (all 64 bits), a REAL with a fraction or exponent (so it never reads back as an
//! INTEGER) or `{"real": "inf"}`, TEXT as a JSON string, a BLOB as `{"blob": base64}`, NULL as
//! `null`. The unit tests of the protocol decode what this writes; the end-to-end value tests
//! compare every kind with the object's own rows.

use js_sys::{Array, JsString};
use wasm_bindgen::prelude::wasm_bindgen;
use wasm_bindgen::{JsCast, JsValue};

#[wasm_bindgen(inline_js = r#"
const DIGITS = /^-?[0-9]+$/;

function real(v) {
  if (v === "inf" || v === "-inf") return `{"real":"${v}"}`;
  if (typeof v !== "number" || !Number.isFinite(v)) throw new Error(`durafetch: a REAL read as ${v}`);
  if (Object.is(v, -0)) return "-0.0";
  const text = String(v);
  return /[.e]/.test(text) ? text : text + ".0";
}

// In chunks: a 2 MB blob built up a character at a time took tens of MB of memory.
function base64OfHex(hex) {
  const bytes = new Uint8Array(hex.length / 2);
  for (let i = 0; i < bytes.length; i++) bytes[i] = parseInt(hex.substr(2 * i, 2), 16);
  let binary = "";
  for (let i = 0; i < bytes.length; i += 0x8000) binary += String.fromCharCode.apply(null, bytes.subarray(i, i + 0x8000));
  return btoa(binary);
}

function cell(kind, v) {
  switch (kind) {
    case "null": return "null";
    case "integer":
      if (typeof v !== "string" || !DIGITS.test(v)) throw new Error(`durafetch: an INTEGER read as ${v}`);
      return v;
    case "real": return real(v);
    case "text": return JSON.stringify(String(v));
    case "blob": return `{"blob":"${base64OfHex(String(v))}"}`;
    default: throw new Error(`durafetch: a value of type ${kind}`);
  }
}

export class SqlPages {
  // `head`: the page's JSON up to its rows' opening bracket. A read's row: `lead` values, then
  // `keys` key literals, then a present flag if `flagged`, then a type and a value per column.
  constructor(head, lead, keys, flagged, columns, maxRows, maxChars) {
    Object.assign(this, { head, lead, keys, flagged, columns, maxRows, maxChars });
    this.rows = [];
    this.chars = 0;
  }

  // Takes the rows of a read; answers [full pages, the last row read (or undefined), how many
  // rows were read, their characters].
  add(cursor) {
    // All or nothing: a read that fails part way leaves the rows held before it as they were.
    const held = this.rows.slice(), heldChars = this.chars;
    try {
      return this.addAll(cursor);
    } catch (e) {
      this.rows = held;
      this.chars = heldChars;
      throw e;
    }
  }

  addAll(cursor) {
    const pages = [];
    let last, count = 0, chars = 0;
    for (const row of cursor.raw()) {
      last = row;
      count++;
      let at = this.lead;
      const k = JSON.stringify(row.slice(at, at + this.keys).join(","));
      at += this.keys;
      let text;
      if (this.flagged && !row[at++]) {
        text = `{"k":${k}}`;
      } else {
        const v = new Array(this.columns);
        for (let c = 0; c < this.columns; c++, at += 2) v[c] = cell(row[at], row[at + 1]);
        text = `{"k":${k},"v":[${v.join(",")}]}`;
      }
      this.rows.push(text);
      this.chars += text.length;
      chars += text.length;
      if (this.rows.length >= this.maxRows || this.chars >= this.maxChars) pages.push(this.take());
    }
    return [pages, last, count, chars];
  }

  // The page of the rows not yet sent, if any.
  take() {
    if (this.rows.length === 0) return undefined;
    const page = this.head + this.rows.join(",") + "]}";
    this.rows = [];
    this.chars = 0;
    return page;
  }
}
"#)]
extern "C" {
    pub(crate) type SqlPages;

    #[wasm_bindgen(constructor)]
    fn new(head: &str, lead: u32, keys: u32, flagged: bool, columns: u32, max_rows: u32, max_chars: u32) -> SqlPages;

    #[wasm_bindgen(method, catch)]
    fn add(this: &SqlPages, cursor: &JsValue) -> Result<Array, JsValue>;

    #[wasm_bindgen(method)]
    fn take(this: &SqlPages) -> JsValue;
}

/// What a read added: the pages it filled, its last row, how many rows and characters it read.
pub(crate) struct Added {
    pub pages: Vec<JsString>,
    pub last: Option<Array>,
    pub rows: usize,
    pub chars: usize,
}

impl SqlPages {
    /// Pages of `head` (a page's JSON up to its rows' opening bracket) from reads whose rows
    /// hold `lead` values, `keys` key literals, a present flag if `flagged`, then `columns`
    /// typed values.
    pub(crate) fn build(head: &str, lead: usize, keys: usize, flagged: bool, columns: usize, max_rows: usize, max_chars: usize) -> Self {
        SqlPages::new(head, lead as u32, keys as u32, flagged, columns as u32, max_rows as u32, max_chars as u32)
    }

    /// Adds the rows of the cursor an `exec` answered.
    pub(crate) fn read(&self, cursor: &JsValue) -> Result<Added, JsValue> {
        let out = self.add(cursor)?;
        let pages = Array::from(&out.get(0)).iter().map(JsValue::unchecked_into).collect();
        let last = out.get(1);
        Ok(Added {
            pages,
            last: (!last.is_undefined()).then(|| Array::from(&last)),
            rows: out.get(2).as_f64().unwrap_or(0.0) as usize,
            chars: out.get(3).as_f64().unwrap_or(0.0) as usize,
        })
    }

    /// The last page, of the rows not yet sent, if any.
    pub(crate) fn rest(&self) -> Option<JsString> {
        let page = self.take();
        (!page.is_undefined()).then(|| page.unchecked_into())
    }
}
