//! Routes that write through every storage write path, from a helper that only receives the
//! `State`: the instrumentation must see these writes too.

use std::collections::HashMap;

use serde_json::Value;
use worker::wasm_bindgen::JsCast;
use worker::{js_sys, wasm_bindgen::JsValue, ListOptions, Method, Request, Response, Result, State};

pub async fn handle(state: &State, mut req: Request) -> Result<Response> {
    let url = req.url()?;
    let operation = url.path_segments().and_then(|mut s| s.nth(2)).unwrap_or_default().to_owned();
    let key = url.query_pairs().find(|(k, _)| k == "key").map(|(_, v)| v.into_owned());
    let storage = state.storage();
    let write = req.method() == Method::Post;
    match (operation.as_str(), key, write) {
        ("put", Some(key), true) => {
            let value: Value = req.json().await?;
            storage.put(&key, value).await?;
        }
        ("put_raw", Some(key), true) => {
            let bytes = req.bytes().await?;
            storage.put_raw(&key, js_sys::Uint8Array::from(bytes.as_slice())).await?;
        }
        ("put_multiple", None, true) => {
            // A HashMap becomes a JS Map, which storage alone would silently ignore.
            let values: HashMap<String, Value> = req.json().await?;
            storage.put_multiple(values).await?;
        }
        ("put_multiple_raw", None, true) => {
            let values: serde_json::Map<String, Value> = req.json().await?;
            let object = js_sys::Object::new();
            for (key, value) in values {
                let value = serde_wasm_bindgen_value(&value)?;
                js_sys::Reflect::set(&object, &JsValue::from_str(&key), &value)?;
            }
            storage.put_multiple_raw(object).await?;
        }
        ("delete", Some(key), true) => {
            storage.delete(&key).await?;
        }
        ("delete_multiple", None, true) => {
            let keys: Vec<String> = req.json().await?;
            storage.delete_multiple(keys).await?;
        }
        ("delete_all", None, true) => storage.delete_all().await?,
        ("get", None, false) => return Response::from_json(&read_all(state).await?),
        _ => return Response::error("unknown operation", 404),
    }
    Response::ok("ok")
}

/// A JSON value as the plain JS value `JSON.parse` would give (objects as objects, not Maps).
fn serde_wasm_bindgen_value(value: &Value) -> Result<JsValue> {
    Ok(js_sys::JSON::parse(&value.to_string())?)
}

/// Every user key and its value, for tests to compare with the pulled copy.
async fn read_all(state: &State) -> Result<serde_json::Map<String, Value>> {
    let mut out = serde_json::Map::new();
    let entries = state.storage().list_with_options(ListOptions::new()).await?;
    for entry in entries.entries() {
        let entry: js_sys::Array = entry?.into();
        let key = entry.get(0).as_string().unwrap_or_default();
        if durafetch_sdk::core::keys::is_reserved(&key) {
            continue;
        }
        let value = entry.get(1);
        let value = if let Some(bytes) = value.dyn_ref::<js_sys::Uint8Array>() {
            serde_json::json!({ "bytes": bytes.to_vec() })
        } else {
            js_sys::JSON::stringify(&value).ok().and_then(|s| s.as_string()).and_then(|s| serde_json::from_str(&s).ok()).unwrap_or(Value::Null)
        };
        out.insert(key, value);
    }
    Ok(out)
}
