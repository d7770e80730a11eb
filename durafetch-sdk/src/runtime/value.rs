//! Turns a stored JS value into its export form without changing it: JSON values as JSON, bytes
//! as bytes, other structured-clone values (Map, Set, Date, BigInt, undefined, ...) as JSON with
//! explicit type tags, and anything else as a per-key error rather than a silently altered value.
//! `docs/protocol.md` lists the tags.

use crate::core::protocol::{ChangeValue, TYPE_TAG};
use base64::Engine as _;
use js_sys::{Array, ArrayBuffer, Object, Uint8Array};
use serde_json::{json, Value};
use wasm_bindgen::prelude::wasm_bindgen;
use wasm_bindgen::{JsCast, JsValue};

#[wasm_bindgen]
extern "C" {
    type TextEncoder;
    #[wasm_bindgen(constructor)]
    fn new() -> TextEncoder;
    /// Takes the JS string itself: nothing is copied on the way in.
    #[wasm_bindgen(method)]
    fn encode(this: &TextEncoder, text: &JsValue) -> Uint8Array;
}

thread_local! {
    static ENCODER: TextEncoder = TextEncoder::new();
}

/// Strings longer than this are copied out of JS by the runtime's native UTF-8 encoder and one
/// memory copy; shorter ones by wasm-bindgen's own conversion, which costs less to set up.
const NATIVE_ENCODE_FROM: u32 = 256;

/// A JS string as a Rust string.
fn string(value: &JsValue) -> Option<String> {
    let text = value.dyn_ref::<js_sys::JsString>()?;
    if text.length() < NATIVE_ENCODE_FROM {
        return value.as_string();
    }
    let bytes = ENCODER.with(|encoder| encoder.encode(value)).to_vec();
    // TextEncoder writes UTF-8 (lone surrogates become U+FFFD, as in `as_string`).
    String::from_utf8(bytes).ok()
}

/// Whether `converted`, the Rust form of the JS string `original`, says the same thing. A JS
/// string may hold a lone surrogate, which no Rust string can: converting replaces it with
/// U+FFFD. So only text holding U+FFFD is worth asking the runtime about.
pub(crate) fn converted_faithfully(original: &JsValue, converted: &str) -> bool {
    !converted.contains('\u{FFFD}') || original.unchecked_ref::<js_sys::JsString>().is_well_formed()
}

/// A stored key as text, or why it has none.
pub(crate) fn key_text(key: &JsValue) -> Result<String, String> {
    match key.as_string() {
        Some(text) if converted_faithfully(key, &text) => Ok(text),
        _ => Err("the key is not valid Unicode text (it holds a lone surrogate)".into()),
    }
}

const MAX_DEPTH: usize = 256;
/// Integers up to this magnitude are exact in a JS number and written without a fraction.
const MAX_SAFE_INTEGER: f64 = 9_007_199_254_740_991.0;

pub(crate) fn encode(value: &JsValue) -> ChangeValue {
    if let Some(bytes) = value.dyn_ref::<Uint8Array>() {
        return ChangeValue::Bytes(bytes.to_vec());
    }
    if value.is_instance_of::<ArrayBuffer>() {
        return ChangeValue::Bytes(Uint8Array::new(value).to_vec());
    }
    // Most values are plain JSON: that walk allocates no tags and needs no escaping.
    if let Ok(json) = walk(value, 0, Mode::Json) {
        return ChangeValue::Json(json);
    }
    match walk(value, 0, Mode::Tagged) {
        Ok(tagged) => ChangeValue::Tagged(tagged),
        Err(what) => ChangeValue::Unsupported(format!("the value holds {what}, which has no export form")),
    }
}

#[derive(Clone, Copy, PartialEq)]
enum Mode {
    /// Plain JSON only; the first other value is an error.
    Json,
    /// Other values become `{"$type": tag, "value": ...}`.
    Tagged,
}

fn tag(name: &str, value: Value) -> Value {
    json!({ TYPE_TAG: name, "value": value })
}

fn walk(value: &JsValue, depth: usize, mode: Mode) -> Result<Value, String> {
    if depth > MAX_DEPTH {
        return Err(format!("nesting deeper than {MAX_DEPTH}"));
    }
    // Most common first: each probe is a call across the JS boundary.
    if let Some(s) = string(value) {
        if !converted_faithfully(value, &s) {
            return Err("a string that is not valid Unicode text (a lone surrogate)".into());
        }
        return Ok(Value::String(s));
    }
    if let Some(n) = value.as_f64() {
        return number(n, mode);
    }
    if let Some(b) = value.as_bool() {
        return Ok(Value::Bool(b));
    }
    if value.is_null() {
        return Ok(Value::Null);
    }
    if Array::is_array(value) {
        let array: &Array = value.unchecked_ref();
        let mut items = Vec::with_capacity(array.length() as usize);
        let mut holes = 0;
        for (index, item) in array.iter().enumerate() {
            // A hole reads as `undefined`, but storage keeps it apart from a stored `undefined`.
            if mode == Mode::Tagged && item.is_undefined() && !js_sys::Reflect::has(array, &(index as u32).into()).unwrap_or(true) {
                items.push(json!({ TYPE_TAG: "hole" }));
                holes += 1;
                continue;
            }
            items.push(walk(&item, depth + 1, mode)?);
        }
        // Storage keeps an array's named properties (`a.label = ..`) beside its elements; no
        // export form holds them, and leaving them out would lose them without a word.
        if Object::keys(array).length() as usize != items.len() - holes {
            return Err("an array with named properties".into());
        }
        return Ok(Value::Array(items));
    }
    if value.is_object() && is_plain_object(value) {
        let mut map = serde_json::Map::new();
        for entry in Object::entries(value.unchecked_ref()).iter() {
            let entry: Array = entry.unchecked_into();
            // A key no Rust string can hold would be exported changed (its lone surrogate made
            // U+FFFD): the value has no faithful export form, as the JS encoder agrees.
            let key = key_text(&entry.get(0)).map_err(|_| "an object key that is not valid Unicode text (a lone surrogate)".to_string())?;
            map.insert(key, walk(&entry.get(1), depth + 1, mode)?);
        }
        // A user object that itself has the tag key is wrapped, so no reader mistakes it for a tag.
        if mode == Mode::Tagged && map.contains_key(TYPE_TAG) {
            return Ok(tag("object", Value::Object(map)));
        }
        return Ok(Value::Object(map));
    }
    if mode == Mode::Json {
        return Err(type_name(value));
    }
    tagged(value, depth)
}

fn number(n: f64, mode: Mode) -> Result<Value, String> {
    if !n.is_finite() {
        return match mode {
            Mode::Json => Err("a non-finite number".into()),
            Mode::Tagged => Ok(tag("number", Value::String(format_non_finite(n)))),
        };
    }
    if n.fract() == 0.0 && n.abs() <= MAX_SAFE_INTEGER && !(n == 0.0 && n.is_sign_negative()) {
        return Ok(Value::from(n as i64));
    }
    // Finite, so always representable; -0 keeps its sign as `-0.0`.
    serde_json::Number::from_f64(n).map(Value::Number).ok_or_else(|| "a number".into())
}

fn format_non_finite(n: f64) -> String {
    if n.is_nan() {
        "NaN".into()
    } else if n > 0.0 {
        "Infinity".into()
    } else {
        "-Infinity".into()
    }
}

/// The tagged form of a value JSON has no form for.
fn tagged(value: &JsValue, depth: usize) -> Result<Value, String> {
    if value.is_undefined() {
        return Ok(json!({ TYPE_TAG: "undefined" }));
    }
    if value.is_bigint() {
        let digits = js_sys::BigInt::unchecked_from_js_ref(value).to_string(10).map_err(|_| "a BigInt".to_string())?;
        return Ok(tag("bigint", Value::String(digits.into())));
    }
    let base64 = |bytes: Vec<u8>| Value::String(base64::engine::general_purpose::STANDARD.encode(bytes));
    if let Some(bytes) = value.dyn_ref::<Uint8Array>() {
        return Ok(tag("bytes", base64(bytes.to_vec())));
    }
    if value.is_instance_of::<ArrayBuffer>() {
        return Ok(tag("bytes", base64(Uint8Array::new(value).to_vec())));
    }
    if ArrayBuffer::is_view(value) {
        // Other typed arrays and DataViews: the bytes they view, under their constructor's name.
        let buffer = js_sys::Reflect::get(value, &"buffer".into()).map_err(|_| type_name(value))?;
        let offset = js_sys::Reflect::get(value, &"byteOffset".into()).ok().and_then(|v| v.as_f64()).unwrap_or(0.0);
        let length = js_sys::Reflect::get(value, &"byteLength".into()).ok().and_then(|v| v.as_f64()).unwrap_or(0.0);
        let bytes = Uint8Array::new_with_byte_offset_and_length(&buffer, offset as u32, length as u32).to_vec();
        return Ok(tag(&constructor_name(value).unwrap_or_else(|| "ArrayBufferView".into()), base64(bytes)));
    }
    if let Some(date) = value.dyn_ref::<js_sys::Date>() {
        let ms = date.get_time();
        return Ok(tag("date", if ms.is_finite() { number(ms, Mode::Json)? } else { Value::Null }));
    }
    if let Some(map) = value.dyn_ref::<js_sys::Map>() {
        let mut entries = Vec::with_capacity(map.size() as usize);
        for entry in map.entries().into_iter() {
            let entry: Array = entry.map_err(|_| "an unreadable Map".to_string())?.unchecked_into();
            let key = walk(&entry.get(0), depth + 1, Mode::Tagged)?;
            entries.push(Value::Array(vec![key, walk(&entry.get(1), depth + 1, Mode::Tagged)?]));
        }
        return Ok(tag("map", Value::Array(entries)));
    }
    if let Some(set) = value.dyn_ref::<js_sys::Set>() {
        let mut items = Vec::with_capacity(set.size() as usize);
        for item in set.values().into_iter() {
            items.push(walk(&item.map_err(|_| "an unreadable Set".to_string())?, depth + 1, Mode::Tagged)?);
        }
        return Ok(tag("set", Value::Array(items)));
    }
    if let Some(regexp) = value.dyn_ref::<js_sys::RegExp>() {
        return Ok(tag("regexp", json!({ "source": String::from(regexp.source()), "flags": String::from(regexp.flags()) })));
    }
    Err(type_name(value))
}

fn is_plain_object(value: &JsValue) -> bool {
    let proto = Object::get_prototype_of(value);
    proto.is_null() || Object::get_prototype_of(proto.as_ref()).is_null()
}

fn constructor_name(value: &JsValue) -> Option<String> {
    js_sys::Reflect::get(value, &"constructor".into())
        .and_then(|c| js_sys::Reflect::get(&c, &"name".into()))
        .ok()
        .and_then(|n| n.as_string())
}

fn type_name(value: &JsValue) -> String {
    if value.is_undefined() {
        return "undefined".into();
    }
    if value.is_bigint() {
        return "a BigInt".into();
    }
    if value.is_object() {
        if let Some(name) = constructor_name(value) {
            return format!("a {name}");
        }
    }
    value.js_typeof().as_string().map_or_else(|| "an unknown value".into(), |t| format!("a {t}"))
}
