//! A restore session inside the object: the client's requests checked and staged one at a time
//! (`import_stage`), each answered before the next is read, and applied all at once at `end`
//! (`import_apply`), in one transaction. Until then the object is as it was, whatever the
//! application does meanwhile; a session that ends without `end` changes nothing. A new session
//! of an object replaces one still open (a client's retry after a connection it lost, which the
//! object may not have noticed yet): the older one fails at its next request.

use std::cell::{Cell, RefCell};
use std::collections::HashMap;
use std::rc::Rc;

use js_sys::Object;
use worker::{EventStream, WebSocket};

use super::flow::{self, SessionError};
use super::import_apply::{self, Ending, Plan, StagedTable};
use super::import_stage::Stage;
use super::object_log::ObjectLog;
use super::sql_storage::SqlStorage;
use super::storage::{holds_user_keys, RangeScan};
use super::value_decode::decode;
use crate::core::keys::{check_user_key, RESERVED_END, RESERVED_PREFIX};
use crate::core::protocol::ChangeValue;
use crate::core::restore_protocol::{ImportMode, ImportReply, ImportRequest, TableRows, LIST_KEYS_LIMIT};
use crate::core::sql_restore::is_schema_statement;
use crate::core::storage_api::MAX_KEYS_PER_CALL;

thread_local! {
    /// The objects of this isolate with a restore session open, each with its newest session's
    /// number: only that session may stage, apply, or clear what is staged.
    static RESTORING: RefCell<HashMap<String, u64>> = RefCell::default();
    static LAST_SESSION: Cell<u64> = const { Cell::new(0) };
}

/// Whether `session` is still the newest of object `id`.
fn is_newest(id: &str, session: u64) -> bool {
    RESTORING.with(|open| open.borrow().get(id) == Some(&session))
}

/// Serves a restore session on the server end of the socket the object answered with.
pub(crate) async fn run(log: Rc<ObjectLog>, ws: WebSocket) {
    let events = match ws.accept().and_then(|()| ws.events()) {
        Ok(events) => events,
        Err(e) => {
            worker::console_error!("durafetch: cannot accept restore socket: {e}");
            return;
        }
    };
    // The time in microseconds, and above the last: later than any session of an isolate before
    // this one, whose staged keys it can then delete.
    let session = LAST_SESSION.with(|last| {
        let now = worker::Date::now().as_millis().saturating_mul(1000);
        last.set(now.max(last.get() + 1));
        last.get()
    });
    RESTORING.with(|open| open.borrow_mut().insert(log.id.clone(), session));
    let outcome = match log.storage() {
        Ok(storage) => {
            let import = Import { log: log.clone(), ws: &ws, events, storage: storage.clone(), session, last_key: None, plan: None };
            let outcome = import.serve().await;
            // Whatever was staged and not applied, if no newer session has taken over.
            if is_newest(&log.id, session) {
                RESTORING.with(|open| open.borrow_mut().remove(&log.id));
                if let Err(e) = Stage::clear_before(&storage, session + 1).await {
                    worker::console_error!("durafetch: cannot clear a restore's staged requests: {e}");
                }
            }
            outcome
        }
        Err(_) => {
            RESTORING.with(|open| open.borrow_mut().remove(&log.id));
            Err(SessionError::Server("the object's storage is gone".into()))
        }
    };
    flow::close(&ws, outcome, |message| serde_json::to_string(&ImportReply::Error { message }).unwrap_or_default());
}

struct Import<'a> {
    log: Rc<ObjectLog>,
    ws: &'a WebSocket,
    events: EventStream<'a>,
    storage: Object,
    /// This session's number (see `RESTORING`).
    session: u64,
    /// The last key staged: pages come in key order, which a replace's deletions rely on.
    last_key: Option<String>,
    plan: Option<Plan>,
}

impl Import<'_> {
    async fn serve(mut self) -> Result<(), SessionError> {
        let (ImportRequest::Hello { mode, keys, .. }, _) = self.next().await? else {
            return Err(SessionError::BadRequest("expected a hello message first".into()));
        };
        if !is_newest(&self.log.id, self.session) {
            return Err(SessionError::BadRequest("a newer restore of this object has started; this one stops".into()));
        }
        // What an earlier session staged and never applied.
        Stage::clear_before(&self.storage, self.session).await?;
        let holds_keys = holds_user_keys(&self.storage).await?;
        let shapes = match self.log.sql.get() {
            Some(sql) => sql.tables()?,
            None => Vec::new(),
        };
        let holds_tables = !shapes.is_empty();
        // Listed for the client to drop what the backup lacks: not virtual tables, which no
        // backup holds.
        let tables: Vec<TableRows> = match self.log.sql.get() {
            Some(sql) => shapes
                .into_iter()
                .filter(|t| !t.virtual_table)
                .map(|t| Ok(TableRows { rows: import_apply::count(sql, &t.name)?, table: t.name }))
                .collect::<Result<_, SessionError>>()?,
            None => Vec::new(),
        };
        if mode == ImportMode::Empty && (holds_keys || holds_tables) {
            let message = format!(
                "{} {} holds data ({}); --mode empty writes only into objects that hold none: use --mode replace or --mode merge",
                self.log.class,
                self.log.id,
                if holds_keys { "keys" } else { "SQL tables" }
            );
            return self.reply(&ImportReply::Refused { message });
        }
        let worker = super::config::Config::cached(&self.log.env).map(|c| c.worker.clone()).unwrap_or_default();
        self.reply(&ImportReply::Ready { worker, holds_keys, tables })?;
        self.plan =
            Some(Plan { mode, keys, stage: Stage::new(self.session), key_pages: Vec::new(), tables: Vec::new(), drops: Vec::new() });
        loop {
            let (request, text) = self.next().await?;
            if !is_newest(&self.log.id, self.session) {
                return Err(SessionError::BadRequest("a newer restore of this object has started; this one stops".into()));
            }
            let reply = match request {
                ImportRequest::ListKeys { after } => {
                    let (keys, done) = self.list_keys(after).await?;
                    ImportReply::Keys { keys, done }
                }
                ImportRequest::Put { changes } => {
                    self.check_keys(&changes)?;
                    let index = self.stage(&text).await?;
                    self.plan_mut()?.key_pages.push(index);
                    ImportReply::Staged {}
                }
                ImportRequest::CreateTable { table, statements, autoincrement } => self.create_table(table, statements, autoincrement)?,
                ImportRequest::DropTable { table } => {
                    let plan = self.plan_mut()?;
                    if plan.mode != ImportMode::Replace {
                        return Err(SessionError::BadRequest("only --mode replace drops tables".into()));
                    }
                    plan.drops.push(table);
                    ImportReply::Staged {}
                }
                ImportRequest::Rows(page) => {
                    let known = self.plan_mut()?.tables.iter().any(|t| t.name == page.table);
                    if !known {
                        return Err(SessionError::BadRequest(format!("table {} does not exist; send its schema first", page.table)));
                    }
                    let index = self.stage(&text).await?;
                    if let Some(table) = self.plan_mut()?.tables.iter_mut().find(|t| t.name == page.table) {
                        table.pages.push(index);
                    }
                    ImportReply::Staged {}
                }
                ImportRequest::End {} => {
                    let plan = self.plan.take().ok_or_else(|| SessionError::BadRequest("end sent twice".into()))?;
                    return match import_apply::apply(self.log.clone(), &self.storage, plan).await? {
                        Ending::Applied(applied) => self.reply(&ImportReply::Applied(applied)),
                        Ending::Refused(message) => self.reply(&ImportReply::Refused { message }),
                    };
                }
                ImportRequest::Hello { .. } => return Err(SessionError::BadRequest("hello sent twice".into())),
            };
            self.reply(&reply)?;
        }
    }

    fn plan_mut(&mut self) -> Result<&mut Plan, SessionError> {
        self.plan.as_mut().ok_or_else(|| SessionError::BadRequest("the session has ended".into()))
    }

    /// Keeps a request's text until `end`; answers its position.
    async fn stage(&mut self, text: &str) -> Result<u32, SessionError> {
        let storage = self.storage.clone();
        Ok(self.plan_mut()?.stage.append(&storage, text).await?)
    }

    /// A page's keys: in order after every key staged before, none reserved, every value one
    /// the object can store (a key the backup holds without a value, `e`, is kept as the object
    /// has it). Checked before the page is kept, so a bad page is refused whole.
    fn check_keys(&mut self, changes: &[crate::core::protocol::Change]) -> Result<(), SessionError> {
        for change in changes {
            check_user_key(&change.key).map_err(|e| SessionError::BadRequest(e.to_string()))?;
            if self.last_key.as_deref().is_some_and(|last| change.key.as_str() <= last) {
                return Err(SessionError::BadRequest(format!("key {:?} comes out of order: put pages must be in key order", change.key)));
            }
            if !matches!(change.value, ChangeValue::Deleted | ChangeValue::Unsupported(_)) {
                decode(&change.value).map_err(|why| SessionError::BadRequest(format!("key {:?}: {why}", change.key)))?;
            }
            self.last_key = Some(change.key.clone());
        }
        Ok(())
    }

    /// A table to make at `end` from the backup's statements, checked now.
    fn create_table(&mut self, table: String, statements: Vec<String>, autoincrement: Option<i64>) -> Result<ImportReply, SessionError> {
        self.sql()?;
        let creates_table =
            statements.first().is_some_and(|s| s.split_whitespace().nth(1).is_some_and(|w| w.eq_ignore_ascii_case("table")));
        if !creates_table || !statements.iter().all(|s| is_schema_statement(s)) {
            return Err(SessionError::BadRequest(format!(
                "the schema of table {table} must be its CREATE TABLE statement, then CREATE INDEX statements, one statement each"
            )));
        }
        let plan = self.plan_mut()?;
        if plan.tables.iter().any(|t| t.name.eq_ignore_ascii_case(&table)) {
            return Err(SessionError::BadRequest(format!("table {table} was sent twice")));
        }
        plan.tables.push(StagedTable { name: table, statements, autoincrement, pages: Vec::new() });
        Ok(ImportReply::Staged {})
    }

    async fn next(&mut self) -> Result<(ImportRequest, String), SessionError> {
        let text = flow::owed(flow::next_text(&mut self.events)).await?;
        let request = ImportRequest::parse(&text).map_err(|e| SessionError::BadRequest(e.to_string()))?;
        Ok((request, text))
    }

    fn reply(&self, reply: &ImportReply) -> Result<(), SessionError> {
        let text = serde_json::to_string(reply).map_err(|e| SessionError::Server(e.to_string()))?;
        self.ws.send_with_str(text)?;
        Ok(())
    }

    /// Up to [`LIST_KEYS_LIMIT`] user keys after `after`, read [`MAX_KEYS_PER_CALL`] at a time
    /// (a read brings the values too, which are dropped at once), and whether none follows.
    async fn list_keys(&self, after: Option<String>) -> Result<(Vec<String>, bool), SessionError> {
        let mut keys = Vec::new();
        let below_reserved = after.as_deref().is_none_or(|a| a < RESERVED_PREFIX);
        let ranges =
            if below_reserved { vec![(None, Some(RESERVED_PREFIX)), (Some(RESERVED_END), None)] } else { vec![(Some(RESERVED_END), None)] };
        for (start, end) in ranges {
            let mut scan = RangeScan::new(start, end);
            if let Some(after) = after.as_deref().filter(|a| start.is_none_or(|s| *a >= s)) {
                scan.resume_after(after);
            }
            while keys.len() < LIST_KEYS_LIMIT {
                let Some(page) = scan.next_page(&self.storage, MAX_KEYS_PER_CALL.min(LIST_KEYS_LIMIT - keys.len())).await? else { break };
                keys.extend(page.keys().into_iter().filter_map(|k| k.ok().and_then(|k| k.as_string())));
            }
            if keys.len() >= LIST_KEYS_LIMIT {
                return Ok((keys, false));
            }
        }
        Ok((keys, true))
    }

    fn sql(&self) -> Result<&SqlStorage, SessionError> {
        self.log.sql.get().ok_or_else(|| {
            SessionError::BadRequest(format!(
                "{} is a key-value-backed class: it has no SQL tables to restore into; restore the tables into a class whose migration \
                 is new_sqlite_classes",
                self.log.class
            ))
        })
    }
}
