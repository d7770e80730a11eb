//! The registry: a SQLite-backed Durable Object that lists every instrumented object with the
//! newest log position it reported, and serves that list as a "changed since" stream, once or
//! as a watch that pushes each change as it is recorded.

use std::cell::RefCell;
use std::rc::Rc;

use futures_channel::mpsc::{unbounded, UnboundedSender};
use futures_util::StreamExt;
use serde::Deserialize;
use worker::{durable_object, DurableObject, Env, Method, Request, Response, State, Stub, WebSocketPair};

use super::config::{self, REGISTRY_BINDING};
use super::flow::{FlowSession, Outbox, SessionError};
use super::http::json_error;
use super::internal::{self, Caller, INDEX_PATH, REPORT_PATH};
use crate::core::cursor::Cursor;
use crate::core::protocol::{IndexEntry, ObjectReport, ServerMessage};
use crate::core::shard::shard_name;

const SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS objects (
    id TEXT PRIMARY KEY,
    class TEXT NOT NULL,
    name TEXT,
    epoch INTEGER NOT NULL,
    seq INTEGER NOT NULL,
    rev INTEGER NOT NULL,
    first_seen INTEGER NOT NULL,
    changed_at INTEGER NOT NULL
);
CREATE INDEX IF NOT EXISTS objects_by_rev ON objects (rev);
";

/// Keeps the newest head per object: a report older than what is stored (reports can overtake
/// each other) changes nothing, and every change takes the next registry revision.
const RECORD: &str = "
INSERT INTO objects (id, class, name, epoch, seq, rev, first_seen, changed_at)
VALUES (?1, ?2, ?3, ?4, ?5, (SELECT coalesce(max(rev), 0) + 1 FROM objects), ?6, ?6)
ON CONFLICT (id) DO UPDATE SET
    class = excluded.class,
    name = coalesce(excluded.name, objects.name),
    epoch = excluded.epoch,
    seq = excluded.seq,
    rev = excluded.rev,
    changed_at = excluded.changed_at
WHERE excluded.epoch > objects.epoch OR (excluded.epoch = objects.epoch AND excluded.seq > objects.seq)
";

const CHANGED_SINCE: &str = "SELECT id, class, name, epoch, seq, rev, changed_at FROM objects WHERE rev > ?1 ORDER BY rev LIMIT 128";

#[durable_object]
pub struct DurafetchRegistry {
    state: State,
    env: Env,
    /// Open watch sessions, woken after each recorded report.
    watchers: Rc<RefCell<Vec<UnboundedSender<()>>>>,
}

impl DurableObject for DurafetchRegistry {
    fn new(state: State, env: Env) -> Self {
        if let Err(e) = state.storage().sql().exec(SCHEMA, None) {
            worker::console_error!("durafetch: registry schema: {e}; is DurafetchRegistry listed in new_sqlite_classes?");
        }
        Self { state, env, watchers: Rc::default() }
    }

    async fn fetch(&self, mut req: Request) -> worker::Result<Response> {
        let path = req.path();
        let caller = if path == INDEX_PATH { Caller::Client } else { Caller::Worker };
        if let Err(refused) = internal::authenticate(&self.env, &req, caller) {
            return refused;
        }
        match (req.method(), path.as_str()) {
            (Method::Post, REPORT_PATH) => match req.json::<ObjectReport>().await {
                Ok(report) => {
                    self.record(&report)?;
                    // A closed watch's sender fails and is dropped here.
                    self.watchers.borrow_mut().retain(|watcher| watcher.unbounded_send(()).is_ok());
                    Ok(Response::empty()?.with_status(204))
                }
                Err(e) => json_error(400, &format!("malformed report: {e}")),
            },
            (Method::Get, INDEX_PATH) => {
                let pair = WebSocketPair::new()?;
                let storage = self.state.storage();
                let watchers = self.watchers.clone();
                // The gateway checked the config before forwarding here.
                let (shards, worker) = config::Config::from_env(&self.env).map_or((1, String::new()), |c| (c.registry_shards, c.worker));
                wasm_bindgen_futures::spawn_local(async move {
                    let sql = storage.sql();
                    let ws = pair.server;
                    let Ok(mut session) = FlowSession::accept(&ws) else { return };
                    let index = Index { sql: &sql, shards, worker };
                    let outcome = index.serve(&mut session, &watchers).await;
                    session.finish(outcome);
                });
                Response::from_websocket(pair.client)
            }
            _ => json_error(404, "unknown registry route"),
        }
    }
}

impl DurafetchRegistry {
    fn record(&self, report: &ObjectReport) -> worker::Result<()> {
        let now = js_sys::Date::now();
        self.state.storage().sql().exec(
            RECORD,
            vec![
                report.id.clone().into(),
                report.class.clone().into(),
                report.name.clone().map_or(worker::SqlStorageValue::Null, Into::into),
                (report.head.epoch as f64).into(),
                (report.head.seq as f64).into(),
                now.into(),
            ],
        )?;
        Ok(())
    }
}

#[derive(Deserialize)]
struct Row {
    id: String,
    class: String,
    name: Option<String>,
    epoch: f64,
    seq: f64,
    rev: f64,
    changed_at: f64,
}

/// One shard's index, served to one session.
struct Index<'a> {
    sql: &'a worker::SqlStorage,
    shards: u32,
    worker: String,
}

impl Index<'_> {
    async fn serve(&self, session: &mut FlowSession<'_>, watchers: &RefCell<Vec<UnboundedSender<()>>>) -> Result<(), SessionError> {
        let hello = session.hello().await?;
        let mut rev = self.send_changed_since(session, hello.since_rev).await?;
        if !hello.watch {
            return Ok(());
        }
        let (sender, mut wakeups) = unbounded();
        watchers.borrow_mut().push(sender);
        loop {
            session.idle_until(async { wakeups.next().await.unwrap_or(()) }).await?;
            // Reports that arrived meanwhile are covered by one query.
            while wakeups.try_recv().is_ok() {}
            rev = self.send_changed_since(session, rev).await?;
        }
    }

    /// Sends the rows changed after `rev` in pages, then `index_end`; answers the new revision.
    async fn send_changed_since(&self, session: &mut FlowSession<'_>, mut rev: u64) -> Result<u64, SessionError> {
        loop {
            let rows: Vec<Row> = self.sql.exec(CHANGED_SINCE, vec![(rev as f64).into()])?.to_array()?;
            let full = rows.len() == 128;
            if rows.is_empty() {
                break;
            }
            let objects: Vec<IndexEntry> = rows
                .into_iter()
                .map(|r| IndexEntry {
                    class: r.class,
                    id: r.id,
                    name: r.name,
                    head: Cursor::new(r.epoch as u32, r.seq as u64),
                    rev: r.rev as u64,
                    changed_at: r.changed_at as i64,
                })
                .collect();
            rev = objects.last().map_or(rev, |o| o.rev);
            let page = serde_json::to_string(&ServerMessage::Objects { worker: self.worker.clone(), objects })
                .map_err(|e| SessionError::Server(e.to_string()))?;
            session.send_page(&page).await?;
            if !full {
                break;
            }
        }
        session.send(&ServerMessage::IndexEnd { rev, shards: self.shards })?;
        Ok(rev)
    }
}

/// The registry object of `shard`.
pub(crate) fn stub(env: &Env, shard: u32) -> worker::Result<Stub> {
    env.durable_object(REGISTRY_BINDING)
        .map_err(|_| {
            worker::Error::RustError(format!(
                "durafetch: the Durable Object binding {REGISTRY_BINDING} is missing; add to wrangler.toml: \
             [[durable_objects.bindings]] name = \"{REGISTRY_BINDING}\", class_name = \"DurafetchRegistry\" \
             and a migration with new_sqlite_classes = [\"DurafetchRegistry\"]"
            ))
        })?
        .id_from_name(&shard_name(shard))?
        .get_stub()
}
