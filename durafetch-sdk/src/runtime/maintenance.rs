//! Keeping the change log small, off the write path: compaction of rows whose keys were written
//! again, and the sweep of tombstones behind the horizon.

use std::rc::Rc;

use js_sys::{Array, Object, Reflect};
use wasm_bindgen::{JsCast, JsValue};

use super::object_log::ObjectLog;
use super::storage::{get_many, RangeScan};
use crate::core::compaction::sweep_tombstones;
use crate::core::cursor::Cursor;
use crate::core::keys::{log_key, parse_log_key, FLOOR_KEY};
use crate::core::pending_row::MAX_ROW_KEYS;
use crate::core::storage_api::MAX_KEYS_PER_CALL;

impl ObjectLog {
    /// After a write outside a transaction: feeds the compactor, and starts a compaction or a
    /// sweep if one is due.
    pub fn feed_compactor(self: &Rc<Self>, at: Cursor, keys: &[String]) {
        self.compactor.record(at, keys);
        if (self.compactor.is_due() || self.sweep_is_due()) && !self.compacting.replace(true) {
            wasm_bindgen_futures::spawn_local(compact_while_due(self.clone()));
        }
    }

    /// The position before which tombstones may be dropped.
    fn horizon(&self) -> Option<Cursor> {
        let head = self.head.get()?;
        Some(Cursor::new(head.epoch, head.seq.saturating_sub(self.tombstone_horizon)))
    }

    /// A sweep is worth a step once a page of rows has fallen behind the horizon.
    fn sweep_is_due(&self) -> bool {
        let swept = self.swept_to.get();
        self.horizon().is_some_and(|h| h.epoch == swept.epoch && h.seq > swept.seq + MAX_KEYS_PER_CALL as u64)
    }
}

/// Compaction steps run off the write path, one batch at a time, until no batch is due.
async fn compact_while_due(log: Rc<ObjectLog>) {
    loop {
        let step = if log.compactor.is_due() {
            compact_step(&log).await
        } else if log.sweep_is_due() {
            sweep_step(&log).await
        } else {
            break;
        };
        if let Err(e) = step {
            worker::console_error!("durafetch: compacting the change log of {} {} failed: {e:?}", log.class, log.id);
            break;
        }
    }
    log.compacting.set(false);
}

/// Log rows one sweep step reads: the step holds and `get`s every key they name, so this bounds
/// it at 16,384 names.
const SWEEP_ROWS: usize = MAX_KEYS_PER_CALL * MAX_KEYS_PER_CALL / MAX_ROW_KEYS;

/// Drops tombstones from one page of rows behind the horizon. The raised floor is written in
/// the same call as the rewritten rows and before any row is deleted, so no reader is ever
/// served incrementally across a forgotten deletion.
async fn sweep_step(log: &ObjectLog) -> Result<(), JsValue> {
    let (Some(horizon), from) = (log.horizon(), log.swept_to.get()) else { return Ok(()) };
    let storage = log.storage()?;
    let mut scan = RangeScan::new(Some(&log_key(from.next_seq())), Some(&log_key(horizon)));
    let Some(page) = scan.next_page(&storage, SWEEP_ROWS).await.map_err(JsValue::from)? else {
        log.swept_to.set(horizon);
        return Ok(());
    };
    let mut rows = Vec::new();
    let mut named = std::collections::BTreeSet::new();
    for entry in page.entries() {
        let entry: Array = entry?.unchecked_into();
        let Some(at) = entry.get(0).as_string().and_then(|k| parse_log_key(&k)) else { continue };
        let keys: Vec<String> =
            entry.get(1).dyn_ref::<Array>().map(|a| a.iter().filter_map(|k| k.as_string()).collect()).unwrap_or_default();
        named.extend(keys.iter().cloned());
        rows.push((at, keys));
    }
    let named: Vec<String> = named.into_iter().collect();
    let mut existing = std::collections::HashSet::new();
    for chunk in named.chunks(MAX_KEYS_PER_CALL) {
        let values = get_many(&storage, chunk).await.map_err(JsValue::from)?;
        existing.extend(chunk.iter().filter(|k| values.has(&JsValue::from_str(k))).cloned());
    }
    if log.head.get().map(|h| h.epoch) != Some(horizon.epoch) {
        return Ok(());
    }
    let sweep = sweep_tombstones(&rows, |k| existing.contains(k));
    let last = rows.last().map_or(horizon, |(at, _)| *at);
    if let Some(floor) = sweep.floor {
        let floor = floor.max(log.floor.get());
        let entries = Object::new();
        Reflect::set(&entries, &FLOOR_KEY.into(), &Array::of2(&(floor.epoch as f64).into(), &(floor.seq as f64).into()))?;
        set_rows(&entries, &sweep.rewrite.put)?;
        let writes = log.rewrite(Some(entries), &sweep.rewrite.delete)?;
        log.floor.set(floor);
        for promise in writes {
            wasm_bindgen_futures::JsFuture::from(promise).await?;
        }
    }
    log.swept_to.set(last);
    Ok(())
}

async fn compact_step(log: &ObjectLog) -> Result<(), JsValue> {
    let Some(head) = log.head.get() else { return Ok(()) };
    let batch = log.compactor.borrow_mut().take_batch(head.epoch);
    let row_keys: Vec<String> = batch.rows.iter().map(|r| log_key(*r)).collect();
    let rows = get_many(&log.storage()?, &row_keys).await.map_err(JsValue::from)?;
    let mut stored = std::collections::BTreeMap::new();
    for (cursor, key) in batch.rows.iter().zip(&row_keys) {
        if let Some(keys) = rows.get(&key.into()).dyn_ref::<Array>() {
            stored.insert(*cursor, keys.iter().filter_map(|k| k.as_string()).collect::<Vec<_>>());
        }
    }
    // A delete_all while the rows were read makes them history: writing them back would
    // resurrect rows of a finished epoch.
    if log.head.get().map(|h| h.epoch) != Some(batch.epoch) {
        return Ok(());
    }
    let rewrite = batch.plan(&stored);
    let entries = (!rewrite.put.is_empty()).then(Object::new);
    if let Some(entries) = &entries {
        set_rows(entries, &rewrite.put)?;
    }
    for promise in log.rewrite(entries, &rewrite.delete)? {
        wasm_bindgen_futures::JsFuture::from(promise).await?;
    }
    Ok(())
}

/// Adds rewritten log rows to the entries of one `put`.
fn set_rows(entries: &Object, rows: &[(Cursor, Vec<String>)]) -> Result<(), JsValue> {
    for (row, keys) in rows {
        let keys: Array = keys.iter().map(|k| JsValue::from_str(k)).collect();
        Reflect::set(entries, &log_key(*row).into(), &keys)?;
    }
    Ok(())
}
