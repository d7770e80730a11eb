//! Reporting an object's head to its registry shard, both halves: the object's coalescing of
//! reports (at most one in flight, one more after it) with the marker of what the registry
//! acknowledged, and the call that sends one once the writes it covers are durable.

use std::rc::Rc;

use js_sys::{Array, Object, Reflect};
use wasm_bindgen::JsCast;
use worker::{Env, Method};

use super::internal::{self, REPORT_PATH};
use super::object_log::{ObjectLog, ReportState};
use super::{config, registry};
use crate::core::cursor::Cursor;
use crate::core::keys::REPORTED_KEY;
use crate::core::protocol::ObjectReport;
use crate::core::shard::shard_of;

impl ObjectLog {
    /// Notes a write for the registry. Reports are coalesced: one in flight, one trailing.
    pub fn schedule_report(self: &Rc<Self>) {
        match self.report.get() {
            ReportState::Idle => {
                self.report.set(ReportState::InFlight);
                wasm_bindgen_futures::spawn_local(report_until_idle(self.clone()));
            }
            ReportState::InFlight => self.report.set(ReportState::InFlightDirty),
            ReportState::InFlightDirty => {}
        }
    }

    /// Remembers durably what the registry acknowledged (a write per report, not per write).
    fn mark_reported(&self, head: Cursor) {
        let entry = Object::new();
        let value = Array::of2(&(head.epoch as f64).into(), &(head.seq as f64).into());
        let marked = Reflect::set(&entry, &REPORTED_KEY.into(), &value).and_then(|_| self.rewrite(Some(entry), &[]).map(drop));
        if let Err(e) = marked {
            worker::console_error!("durafetch: cannot store the reported head of {} {}: {e:?}", self.class, self.id);
        }
    }

    fn report_body(&self) -> Option<ObjectReport> {
        Some(ObjectReport { class: self.class.to_owned(), id: self.id.clone(), name: self.name.clone(), head: self.reported_head()? })
    }
}

async fn report_until_idle(log: Rc<ObjectLog>) {
    loop {
        log.report.set(ReportState::InFlight);
        let Some(report) = log.report_body() else {
            log.report.set(ReportState::Idle);
            return;
        };
        let sent = match log.storage() {
            Ok(storage) => send(&log.env, &storage, &report, log.registry_shards).await,
            Err(_) => Err(worker::Error::RustError("the object's storage is gone".into())),
        };
        if let Err(e) = sent {
            // Reported again at the next write, or when the object next starts: the stored
            // marker still names an older head.
            worker::console_error!("durafetch: reporting {} {} to the registry failed: {e}", log.class, log.id);
            log.report.set(ReportState::Idle);
            return;
        }
        log.mark_reported(report.head);
        if log.report.get() == ReportState::InFlight {
            log.report.set(ReportState::Idle);
            return;
        }
    }
}

/// Tells the object's registry shard its head, once the writes it covers are durable.
async fn send(env: &Env, storage: &Object, report: &ObjectReport, shards: u32) -> worker::Result<()> {
    let sync: js_sys::Function = Reflect::get(storage, &"sync".into())?.dyn_into()?;
    let promise: js_sys::Promise = sync.call0(storage)?.dyn_into()?;
    wasm_bindgen_futures::JsFuture::from(promise).await?;

    let secret = config::secret(env).map_err(|e| worker::Error::RustError(e.to_string()))?;
    let headers = worker::Headers::new();
    headers.set("content-type", "application/json")?;
    let req = internal::request(&secret, REPORT_PATH, Method::Post, headers, Some(serde_json::to_string(report)?))?;
    let resp = registry::stub(env, shard_of(&report.id, shards))?.fetch_with_request(req).await?;
    match resp.status_code() {
        204 => Ok(()),
        status => Err(worker::Error::RustError(format!("registry answered {status}"))),
    }
}
