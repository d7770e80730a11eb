//! The JS plumbing under the hooks: the runtime's own storage methods, found on the prototype
//! (durafetch's hooks are own properties, so these stay reachable for durafetch's own reads and
//! writes), binding a hook to its target, and errors thrown back into the user's code.

use js_sys::{Function, Object, Reflect};
use wasm_bindgen::{JsCast, JsValue};

/// The runtime's own write methods of one kind of target (the storage, or a transaction).
pub(crate) struct Methods {
    pub put: Function,
    pub delete: Function,
    pub delete_all: Function,
    pub list: Function,
}

impl Methods {
    pub fn of_prototype(target: &JsValue) -> Result<Self, JsValue> {
        let proto = Object::get_prototype_of(target);
        let method = |name: &str| -> Result<Function, JsValue> { Reflect::get(&proto, &name.into())?.dyn_into::<Function>() };
        Ok(Self { put: method("put")?, delete: method("delete")?, delete_all: method("deleteAll")?, list: method("list")? })
    }
}

/// Where a target's writes are logged. Writes to storage join the pending row and feed the
/// compactor. Writes inside a transaction carry their own rows, which must roll back with them,
/// and do not feed the compactor: they may still roll back, and compaction only needs most dead
/// entries, not all of them.
#[derive(Clone, Copy, PartialEq, Eq)]
pub(crate) enum Target {
    Storage,
    Transaction,
}

/// Sets `name` on `target` to `hook` bound to it: each hook takes its target as its first
/// argument, so one function serves every transaction object.
pub(crate) fn bind_hook(target: &JsValue, name: &str, hook: &JsValue) -> Result<(), JsValue> {
    let bound = hook.unchecked_ref::<Function>().bind1(&JsValue::NULL, target);
    Reflect::set(target, &name.into(), &bound)?;
    Ok(())
}

pub(crate) fn js_error(message: &str) -> JsValue {
    js_sys::Error::new(message).into()
}

pub(crate) const NOT_INSTRUMENTED: &str = "durafetch: storage not instrumented";
