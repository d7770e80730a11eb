//! `list` as the user sees it: durafetch's reserved key range left out, whatever the options.

use js_sys::{Function, Map, Object, Reflect};
use wasm_bindgen::{JsCast, JsValue};

use crate::core::keys::{outside_reserved, KeyRange, Start, RESERVED_PREFIX};

/// `list(options)` as the user sees it: the reserved range left out, with `limit`, `reverse`,
/// `prefix`, `start`, `startAfter` and `end` keeping their meaning. A range that cannot touch
/// the reserved one goes straight to the runtime.
pub(crate) fn list_outside_reserved(list: &Function, target: &JsValue, options: JsValue) -> Result<JsValue, JsValue> {
    let option = |name: &str| -> Option<JsValue> {
        options.is_object().then(|| Reflect::get(&options, &name.into()).ok()).flatten().filter(|v| !v.is_undefined())
    };
    if let Some(prefix) = option("prefix").and_then(|p| p.as_string()) {
        if prefix.starts_with(RESERVED_PREFIX) {
            return Ok(js_sys::Promise::resolve(&Map::new()).into());
        }
        if !RESERVED_PREFIX.starts_with(&prefix) {
            return list.call1(target, &options);
        }
    }
    let start = match (option("startAfter").and_then(|s| s.as_string()), option("start").and_then(|s| s.as_string())) {
        (Some(after), _) => Start::After(after),
        (None, Some(from)) => Start::From(from),
        (None, None) => Start::Beginning,
    };
    let range = KeyRange { start, end: option("end").and_then(|e| e.as_string()) };
    let mut parts = outside_reserved(&range);
    if parts == [range] {
        return list.call1(target, &options);
    }
    if option("reverse").and_then(|r| r.as_bool()).unwrap_or(false) {
        parts.reverse();
    }
    let limit = option("limit").and_then(|l| l.as_f64());
    let (list, target) = (list.clone(), target.clone());
    let base = if options.is_object() { Object::assign(&Object::new(), options.unchecked_ref()) } else { Object::new() };
    let listing = async move {
        let result = Map::new();
        for part in parts {
            let remaining = limit.map(|l| l - f64::from(result.size()));
            if remaining.is_some_and(|r| r <= 0.0) {
                break;
            }
            let options = Object::assign(&Object::new(), &base);
            for name in ["start", "startAfter", "end", "limit"] {
                Reflect::delete_property(&options, &name.into())?;
            }
            match &part.start {
                Start::Beginning => {}
                Start::From(s) => drop(Reflect::set(&options, &"start".into(), &s.into())?),
                Start::After(s) => drop(Reflect::set(&options, &"startAfter".into(), &s.into())?),
            }
            if let Some(end) = &part.end {
                Reflect::set(&options, &"end".into(), &end.into())?;
            }
            if let Some(remaining) = remaining {
                Reflect::set(&options, &"limit".into(), &remaining.into())?;
            }
            let promise: js_sys::Promise = list.call1(&target, &options)?.dyn_into()?;
            let page: Map = wasm_bindgen_futures::JsFuture::from(promise).await?.dyn_into()?;
            page.for_each(&mut |value, key| {
                result.set(&key, &value);
            });
        }
        Ok(result.into())
    };
    Ok(wasm_bindgen_futures::future_to_promise(listing).into())
}
