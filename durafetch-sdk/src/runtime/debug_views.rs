//! Debug views for the tests and benchmarks: how many rows the change log and the SQL change
//! sets hold, and an export's first step (closing the SQL generation) on its own.

use js_sys::Array;
use wasm_bindgen::JsCast;
use wasm_bindgen::JsValue;

use super::object_log;
use super::storage::RangeScan;
use crate::core::sql_capture;

/// How many rows the change log holds: a debug view for tests and benchmarks.
pub async fn log_rows(state: &worker::State) -> worker::Result<u32> {
    let storage = state.storage();
    let raw: &JsValue = storage.as_raw().unchecked_ref();
    let mut scan = RangeScan::new(Some(crate::core::keys::LOG_PREFIX), Some(crate::core::keys::LOG_END));
    let mut rows = 0;
    while let Some(page) = scan.next_page(raw.unchecked_ref(), crate::core::protocol::MAX_PAGE_CHANGES).await? {
        rows += page.size();
    }
    Ok(rows)
}

/// How many rows the change sets of the SQL half of the object's log hold: a debug view for tests.
pub fn sql_log_rows(state: &worker::State) -> worker::Result<u32> {
    let log = object_log::find(&state.id().to_string()).ok_or_else(|| worker::Error::RustError("not instrumented".into()))?;
    let Some(sql) = log.sql.get() else { return Ok(0) };
    let mut rows = 0;
    for set in sql.rows(sql_capture::CHANGE_SETS, &[])?.iter() {
        let set = Array::from(&set).get(0).as_string().unwrap_or_default();
        rows += sql.number(&format!("SELECT count(*) FROM {}", sql_capture::ident(&set)), &[])?;
    }
    Ok(rows as u32)
}

/// Closes the object's SQL generation as an export does first, so that the next changes are
/// marked anew: a debug view for benchmarks that measure what a change costs after an export.
pub fn sql_close_generation(state: &worker::State) -> worker::Result<u64> {
    let log = object_log::find(&state.id().to_string()).ok_or_else(|| worker::Error::RustError("not instrumented".into()))?;
    let Some(sql) = log.sql.get() else { return Ok(0) };
    let head = sql.close_generation()?;
    log.sql_head.set(head);
    Ok(head)
}
