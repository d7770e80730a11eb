//! The inverse of `value`: a key's export form turned back into the JS value it was, for a
//! restore. JSON values through the runtime's own `JSON.parse`; bytes as a `Uint8Array`; the
//! tagged form (`docs/protocol.md`) node by node, so that a Map, Set, Date, BigInt, `undefined`,
//! an array's holes or a typed array come back as themselves and the object stores what it
//! stored before.

use base64::Engine as _;
use js_sys::{Array, Object, Reflect, Uint8Array};
use serde_json::Value;
use wasm_bindgen::{JsCast, JsValue};

use crate::core::protocol::{ChangeValue, TYPE_TAG};

/// Views the tagged form names by their constructor, which a restore makes again: the runtime's
/// typed arrays and `DataView`, and nothing else a client could name.
const VIEWS: &[&str] = &[
    "Int8Array",
    "Uint8ClampedArray",
    "Int16Array",
    "Uint16Array",
    "Int32Array",
    "Uint32Array",
    "Float16Array",
    "Float32Array",
    "Float64Array",
    "BigInt64Array",
    "BigUint64Array",
    "DataView",
];

const MAX_DEPTH: usize = 256;

/// The JS value of a stored key's export form; a deletion or an error has none.
pub(crate) fn decode(value: &ChangeValue) -> Result<JsValue, String> {
    match value {
        ChangeValue::Json(json) => js_sys::JSON::parse(&json.to_string()).map_err(|_| "a JSON value the runtime cannot parse".to_string()),
        ChangeValue::Bytes(bytes) => Ok(Uint8Array::from(bytes.as_slice()).into()),
        ChangeValue::Tagged(tagged) => walk(tagged, 0),
        ChangeValue::Deleted => Err("a deletion has no value".into()),
        ChangeValue::Unsupported(why) => Err(format!("the backup holds no value for this key ({why})")),
    }
}

fn walk(value: &Value, depth: usize) -> Result<JsValue, String> {
    if depth > MAX_DEPTH {
        return Err(format!("nesting deeper than {MAX_DEPTH}"));
    }
    Ok(match value {
        Value::Null => JsValue::NULL,
        Value::Bool(b) => JsValue::from_bool(*b),
        Value::Number(n) => JsValue::from_f64(n.as_f64().ok_or("a number out of range")?),
        Value::String(s) => JsValue::from_str(s),
        Value::Array(items) => {
            let array = Array::new_with_length(items.len() as u32);
            for (index, item) in items.iter().enumerate() {
                // A hole stays a hole: the index is never set.
                if tag_of(item) == Some("hole") {
                    continue;
                }
                array.set(index as u32, walk(item, depth + 1)?);
            }
            array.into()
        }
        Value::Object(map) => match map.get(TYPE_TAG).and_then(Value::as_str) {
            Some(tag) => tagged(tag, map.get("value").unwrap_or(&Value::Null), depth)?,
            None => object(map, depth)?,
        },
    })
}

fn tag_of(value: &Value) -> Option<&str> {
    value.as_object()?.get(TYPE_TAG)?.as_str()
}

/// A plain object. Built from entries (`Object.fromEntries` defines each property), so that a
/// key such as `__proto__` is a property, as it was, not the prototype.
fn object(map: &serde_json::Map<String, Value>, depth: usize) -> Result<JsValue, String> {
    let entries = Array::new();
    for (key, item) in map {
        entries.push(&Array::of2(&JsValue::from_str(key), &walk(item, depth + 1)?));
    }
    Object::from_entries(&entries).map(Into::into).map_err(|_| "an object the runtime cannot build".to_string())
}

fn tagged(tag: &str, value: &Value, depth: usize) -> Result<JsValue, String> {
    let bytes = |value: &Value| -> Result<Uint8Array, String> {
        let text = value.as_str().ok_or("bytes that are not base64 text")?;
        let raw = base64::engine::general_purpose::STANDARD.decode(text).map_err(|e| format!("bad base64: {e}"))?;
        Ok(Uint8Array::from(raw.as_slice()))
    };
    let items = |value: &Value| -> Result<Vec<JsValue>, String> {
        value.as_array().ok_or(format!("a {tag} without its items"))?.iter().map(|item| walk(item, depth + 1)).collect()
    };
    Ok(match tag {
        "undefined" => JsValue::UNDEFINED,
        "bigint" => {
            let digits = value.as_str().ok_or("a BigInt without its digits")?;
            js_sys::BigInt::new(&JsValue::from_str(digits)).map_err(|_| format!("{digits:?} is not a BigInt"))?.into()
        }
        "number" => match value.as_str() {
            Some("NaN") => JsValue::from_f64(f64::NAN),
            Some("Infinity") => JsValue::from_f64(f64::INFINITY),
            Some("-Infinity") => JsValue::from_f64(f64::NEG_INFINITY),
            _ => return Err(format!("{value} is not a number's tagged form")),
        },
        "bytes" => bytes(value)?.into(),
        "date" => js_sys::Date::new(&JsValue::from_f64(value.as_f64().unwrap_or(f64::NAN))).into(),
        "map" => {
            let map = js_sys::Map::new();
            for pair in items(value)? {
                let pair: Array = pair.dyn_into().map_err(|_| "a Map entry that is not a pair".to_string())?;
                map.set(&pair.get(0), &pair.get(1));
            }
            map.into()
        }
        "set" => {
            let set = js_sys::Set::new(&JsValue::UNDEFINED);
            for item in items(value)? {
                set.add(&item);
            }
            set.into()
        }
        "regexp" => {
            let field = |name: &str| value.get(name).and_then(Value::as_str).unwrap_or_default();
            js_sys::RegExp::new(field("source"), field("flags")).into()
        }
        "object" => object(value.as_object().ok_or("a wrapped object that is not an object")?, depth)?,
        view if VIEWS.contains(&view) => {
            let buffer = bytes(value)?.buffer();
            let constructor: js_sys::Function = Reflect::get(&js_sys::global(), &JsValue::from_str(view))
                .ok()
                .and_then(|c| c.dyn_into().ok())
                .ok_or(format!("this runtime has no {view}"))?;
            Reflect::construct(&constructor, &Array::of1(&buffer)).map_err(|_| format!("bytes that do not make a {view}"))?
        }
        other => return Err(format!("unknown type tag {other:?}")),
    })
}
