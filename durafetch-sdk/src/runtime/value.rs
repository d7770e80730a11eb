//! Turns a stored JS value into its export form without changing it: JSON values as JSON, bytes
//! as bytes, anything JSON cannot hold as a per-key error rather than a silently altered value.

use crate::core::protocol::ChangeValue;
use js_sys::{Array, ArrayBuffer, Object, Uint8Array};
use wasm_bindgen::{JsCast, JsValue};

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
    match to_json(value, 0) {
        Ok(json) => ChangeValue::Json(json),
        Err(what) => ChangeValue::Unsupported(format!("the value holds {what}, which JSON cannot represent")),
    }
}

fn to_json(value: &JsValue, depth: usize) -> Result<serde_json::Value, String> {
    use serde_json::Value;
    if depth > MAX_DEPTH {
        return Err(format!("nesting deeper than {MAX_DEPTH}"));
    }
    if value.is_null() {
        return Ok(Value::Null);
    }
    if let Some(b) = value.as_bool() {
        return Ok(Value::Bool(b));
    }
    if let Some(n) = value.as_f64() {
        if !n.is_finite() {
            return Err("a non-finite number".into());
        }
        if n.fract() == 0.0 && n.abs() <= MAX_SAFE_INTEGER && !(n == 0.0 && n.is_sign_negative()) {
            return Ok(Value::from(n as i64));
        }
        return serde_json::Number::from_f64(n).map(Value::Number).ok_or_else(|| "a number".into());
    }
    if let Some(s) = value.as_string() {
        return Ok(Value::String(s));
    }
    if Array::is_array(value) {
        let array: &Array = value.unchecked_ref();
        let mut items = Vec::with_capacity(array.length() as usize);
        for item in array.iter() {
            items.push(to_json(&item, depth + 1)?);
        }
        return Ok(Value::Array(items));
    }
    if value.is_object() && is_plain_object(value) {
        let mut map = serde_json::Map::new();
        for entry in Object::entries(value.unchecked_ref()).iter() {
            let entry: Array = entry.unchecked_into();
            let key = entry.get(0).as_string().unwrap_or_default();
            map.insert(key, to_json(&entry.get(1), depth + 1)?);
        }
        return Ok(Value::Object(map));
    }
    Err(type_name(value))
}

fn is_plain_object(value: &JsValue) -> bool {
    let proto = Object::get_prototype_of(value);
    proto.is_null() || Object::get_prototype_of(proto.as_ref()).is_null()
}

fn type_name(value: &JsValue) -> String {
    if value.is_undefined() {
        return "undefined".into();
    }
    if value.is_bigint() {
        return "a BigInt".into();
    }
    if value.is_object() {
        let name = js_sys::Reflect::get(value, &"constructor".into())
            .and_then(|c| js_sys::Reflect::get(&c, &"name".into()))
            .ok()
            .and_then(|n| n.as_string());
        if let Some(name) = name {
            return format!("a {name}");
        }
    }
    value.js_typeof().as_string().map_or_else(|| "an unknown value".into(), |t| format!("a {t}"))
}
