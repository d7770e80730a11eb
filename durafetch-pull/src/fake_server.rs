//! A scripted fake server for the pull path's unit tests: it answers index and export sessions
//! as a worker would, over in-memory links, from objects it holds; it records what each client
//! asked for and can be told to refuse or cut off connections.

use std::collections::{BTreeMap, VecDeque};
use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};

use durafetch_sdk::core::cursor::Cursor;
use durafetch_sdk::core::protocol::{Change, ChangeValue, ClientMessage, ExportMode, IndexEntry, ServerMessage};
use futures_util::{Sink, Stream};
use tokio::sync::mpsc::{unbounded_channel, UnboundedReceiver, UnboundedSender};
use tokio_tungstenite::tungstenite::{Error as WsError, Message};

use std::path::{Path, PathBuf};

use serde_json::json;

use crate::settings::file::{ConfigFile, Server};
use crate::settings::filter::FilterSpec;
use crate::settings::pull::{Overrides, Settings};
use crate::sink::memory::MemoryDatabase;
use crate::transport::error::ConnectError;
use crate::transport::{Answer, Link, Transport};

/// One object as the fake holds it: each key's value (`None` once deleted) and the position of
/// its last write.
#[derive(Clone, Default)]
pub struct FakeObject {
    pub class: String,
    pub name: Option<String>,
    pub keys: BTreeMap<String, (Option<serde_json::Value>, u64)>,
    pub seq: u64,
    pub rev: u64,
}

/// What the next connection to a path starting with its prefix meets.
#[derive(Clone)]
pub enum Fault {
    /// The upgrade is refused with 503 and a message.
    Unavailable,
    /// The upgrade is refused with 401.
    Unauthorized,
    /// The session ends without a word after this many pages.
    CutAfterPages(usize),
}

#[derive(Default)]
struct State {
    /// Objects by worker name, then by id.
    workers: BTreeMap<String, BTreeMap<String, FakeObject>>,
    rev: u64,
    faults: VecDeque<(String, Fault)>,
    /// Every connection opened: (worker, path, the client's hello).
    sessions: Vec<(String, String, Option<ClientMessage>)>,
    /// The paths of exports answered in one response.
    whole_answers: Vec<String>,
}

/// The fake server: a [`Transport`] for every worker it holds.
#[derive(Clone, Default)]
pub struct FakeServer(Arc<Mutex<State>>);

/// Changes per page the fake sends.
const PAGE: usize = 2;
/// The most pages of an export the fake answers in one response.
const WHOLE_PAGES: usize = 2;

impl FakeServer {
    /// A fake holding three objects of two classes for `worker` ([`fill`]).
    pub fn filled(worker: &str) -> Self {
        let server = Self::default();
        fill(&server, worker);
        server
    }

    /// Writes `value` (or deletes, for `None`) at `key` of the object `id`, as one write call.
    pub fn write(&self, worker: &str, class: &str, id: &str, key: &str, value: Option<serde_json::Value>) {
        let mut state = self.0.lock().unwrap();
        state.rev += 1;
        let rev = state.rev;
        let object = state.workers.entry(worker.into()).or_default().entry(id.into()).or_default();
        object.class = class.into();
        object.name = Some(format!("name-{id}"));
        object.seq += 1;
        object.rev = rev;
        let seq = object.seq;
        object.keys.insert(key.into(), (value, seq));
    }

    /// The next connection to a path starting with `path` meets `fault`.
    pub fn fail_next(&self, path: &str, fault: Fault) {
        self.0.lock().unwrap().faults.push_back((path.into(), fault));
    }

    /// The hellos of the sessions opened so far to paths starting with `path`, in order.
    pub fn hellos(&self, path: &str) -> Vec<ClientMessage> {
        let state = self.0.lock().unwrap();
        state.sessions.iter().filter(|(_, p, _)| p.starts_with(path)).filter_map(|(_, _, hello)| hello.clone()).collect()
    }

    /// How many connections were opened to paths starting with `path`.
    pub fn connections(&self, path: &str) -> usize {
        self.0.lock().unwrap().sessions.iter().filter(|(_, p, _)| p.starts_with(path)).count()
    }

    /// The live keys of every object of `worker`, rendered as the file's `val`: (name, key) → JSON.
    pub fn live(&self, worker: &str) -> BTreeMap<(String, String), String> {
        let state = self.0.lock().unwrap();
        let objects = state.workers.get(worker).into_iter().flatten();
        objects
            .flat_map(|(_, o)| {
                o.keys.iter().filter_map(|(k, (v, _))| Some(((o.name.clone().unwrap_or_default(), k.clone()), v.as_ref()?.to_string())))
            })
            .collect()
    }

    fn take_fault(&self, path: &str) -> Option<Fault> {
        let mut state = self.0.lock().unwrap();
        let at = state.faults.iter().position(|(prefix, _)| path.starts_with(prefix.as_str()))?;
        state.faults.remove(at).map(|(_, fault)| fault)
    }

    /// Records a connection to `path` with its hello, and answers the hello: an index's pages,
    /// or an object's export.
    fn answer(&self, worker: &str, path: &str, hello: &ClientMessage) -> Vec<ServerMessage> {
        let ClientMessage::Hello { since, since_rev, .. } = hello.clone() else { return Vec::new() };
        let mut state = self.0.lock().unwrap();
        state.sessions.push((worker.to_owned(), path.to_owned(), Some(hello.clone())));
        let mut messages = Vec::new();
        let objects = state.workers.get(worker).cloned().unwrap_or_default();
        if path.starts_with("/index") {
            let mut changed: Vec<IndexEntry> = objects
                .iter()
                .filter(|(_, o)| o.rev > since_rev)
                .map(|(id, o)| IndexEntry {
                    class: o.class.clone(),
                    id: id.clone(),
                    name: o.name.clone(),
                    head: Cursor::new(1, o.seq),
                    rev: o.rev,
                    changed_at: 0,
                })
                .collect();
            changed.sort_by_key(|e| e.rev);
            for page in changed.chunks(PAGE) {
                messages.push(ServerMessage::Objects { worker: worker.to_owned(), objects: page.to_vec() });
            }
            messages.push(ServerMessage::IndexEnd { rev: state.rev, shards: 1 });
        } else {
            let id = path.rsplit('/').next().unwrap_or_default();
            let object = objects.get(id).cloned().unwrap_or_default();
            let (mode, from) = match since {
                Some(cursor) if cursor.epoch == 1 && cursor.seq <= object.seq => (ExportMode::Changes, cursor.seq),
                _ => (ExportMode::Snapshot, 0),
            };
            messages.push(ServerMessage::Begin { mode, epoch: 1 });
            let changes: Vec<Change> = object
                .keys
                .iter()
                .filter(|(_, (value, seq))| *seq > from && (mode == ExportMode::Changes || value.is_some()))
                .map(|(key, (value, _))| Change { key: key.clone(), value: value.clone().map_or(ChangeValue::Deleted, ChangeValue::Json) })
                .collect();
            for page in changes.chunks(PAGE) {
                messages.push(ServerMessage::Page { changes: page.to_vec() });
            }
            messages.push(ServerMessage::End { cursor: Cursor::new(1, object.seq), sql: 0 });
        }
        messages
    }

    /// Serves one session: reads the hello, answers it, and ends.
    async fn serve(
        self,
        worker: String,
        path: String,
        mut from_client: UnboundedReceiver<Message>,
        to_client: UnboundedSender<Message>,
        cut: Option<usize>,
    ) {
        let Some(Message::Text(text)) = from_client.recv().await else { return };
        let Ok(hello) = ClientMessage::parse(&text) else { return };
        for message in cut_after_pages(self.answer(&worker, &path, &hello), cut) {
            if to_client.send(Message::text(serde_json::to_string(&message).unwrap())).is_err() {
                return;
            }
        }
        // Keep the link open until the client closes it, as a server would.
        while from_client.recv().await.is_some() {}
    }

    /// How many exports of paths starting with `path` were answered in one response.
    pub fn whole_answers(&self, path: &str) -> usize {
        self.0.lock().unwrap().whole_answers.iter().filter(|p| p.starts_with(path)).count()
    }
}

/// `messages` as a server cut off after `cut` pages sends them: without the end.
fn cut_after_pages(messages: Vec<ServerMessage>, cut: Option<usize>) -> Vec<ServerMessage> {
    let mut pages = 0;
    let mut sent = Vec::new();
    for message in messages {
        let is_page = matches!(message, ServerMessage::Page { .. } | ServerMessage::Objects { .. });
        if is_page && cut.is_some_and(|limit| pages >= limit) {
            break;
        }
        pages += usize::from(is_page);
        sent.push(message);
    }
    sent
}

/// The fake's servers are `ws://durafetch_<worker>.localhost`: the worker is the label's.
fn worker_of(server: &Server) -> String {
    let host = server.url.host_str().unwrap_or_default();
    host.split('.').next().unwrap_or_default().trim_start_matches("durafetch_").to_owned()
}

impl Transport for FakeServer {
    fn open<'a>(&'a self, server: &'a Server, path: &'a str) -> Pin<Box<dyn Future<Output = Result<Link, ConnectError>> + Send + 'a>> {
        Box::pin(async move {
            let cut = match self.take_fault(path) {
                Some(Fault::Unavailable) => {
                    return Err(ConnectError::Status { status: 503, body: "durafetch: the worker is restarting".into() });
                }
                Some(Fault::Unauthorized) => return Err(ConnectError::Unauthorized),
                Some(Fault::CutAfterPages(pages)) => Some(pages),
                None => None,
            };
            let (to_server, from_client) = unbounded_channel();
            let (to_client, from_server) = unbounded_channel();
            tokio::spawn(self.clone().serve(worker_of(server), path.to_owned(), from_client, to_client, cut));
            Ok(Box::pin(MemoryLink { incoming: from_server, outgoing: Some(to_server) }) as Link)
        })
    }

    /// Answers an export of at most [`WHOLE_PAGES`] pages whole, as a worker answers a small
    /// object's; a larger one needs a session. Faults apply as to a session.
    fn export_whole<'a>(&'a self, server: &'a Server, path: &'a str, hello: &'a str) -> Answer<'a, Option<String>> {
        Box::pin(async move {
            let hello = ClientMessage::parse(hello).map_err(|e| ConnectError::Status { status: 400, body: e.to_string() })?;
            let messages = self.answer(&worker_of(server), path, &hello);
            let pages = messages.iter().filter(|m| matches!(m, ServerMessage::Page { .. })).count();
            if pages > WHOLE_PAGES {
                // The server read the hello and said no: the client's session is another connection.
                self.0.lock().unwrap().sessions.pop();
                return Ok(None);
            }
            let cut = match self.take_fault(path) {
                Some(Fault::Unavailable) => {
                    return Err(ConnectError::Status { status: 503, body: "durafetch: the worker is restarting".into() })
                }
                Some(Fault::Unauthorized) => return Err(ConnectError::Unauthorized),
                Some(Fault::CutAfterPages(pages)) => Some(pages),
                None => None,
            };
            self.0.lock().unwrap().whole_answers.push(path.to_owned());
            let lines: Vec<String> = cut_after_pages(messages, cut).iter().map(|m| serde_json::to_string(m).unwrap()).collect();
            Ok(Some(lines.join("\n")))
        })
    }
}

/// The client's end of an in-memory link.
struct MemoryLink {
    incoming: UnboundedReceiver<Message>,
    outgoing: Option<UnboundedSender<Message>>,
}

impl Stream for MemoryLink {
    type Item = Result<Message, WsError>;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        self.incoming.poll_recv(cx).map(|message| message.map(Ok))
    }
}

impl Sink<Message> for MemoryLink {
    type Error = WsError;

    fn poll_ready(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<Result<(), WsError>> {
        Poll::Ready(Ok(()))
    }

    fn start_send(self: Pin<&mut Self>, message: Message) -> Result<(), WsError> {
        match &self.outgoing {
            Some(outgoing) => outgoing.send(message).map_err(|_| WsError::ConnectionClosed),
            None => Err(WsError::AlreadyClosed),
        }
    }

    fn poll_flush(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<Result<(), WsError>> {
        Poll::Ready(Ok(()))
    }

    fn poll_close(mut self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<Result<(), WsError>> {
        self.outgoing = None;
        Poll::Ready(Ok(()))
    }
}

// Helpers shared by the pull path's tests.

pub fn settings(db: &Path, workers: &[&str], filter: FilterSpec) -> Settings {
    let overrides = Overrides {
        db: Some(db.to_path_buf()),
        servers: workers.iter().map(|w| format!("ws://durafetch_{w}.localhost:1")).collect(),
        token_env: "DURAFETCH_AUTH".into(),
        filter,
        ..Overrides::default()
    };
    Settings::resolve(ConfigFile::default(), Path::new("/"), overrides, |_| Some("t".into())).unwrap()
}

pub fn temp_db(name: &str) -> (PathBuf, PathBuf) {
    let dir = std::env::temp_dir().join(format!("durafetch-pull-test-{}-{name}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    (dir.join("pulled.sqlite"), dir)
}

/// The file's rows of `worker`: (object name, key) → val.
pub fn file(db: &Path, worker: &str) -> BTreeMap<(String, String), String> {
    let conn = rusqlite::Connection::open(db).unwrap();
    let mut stmt = conn.prepare("SELECT name, key, val FROM kv WHERE worker_name = ?1").unwrap();
    stmt.query_map([worker], |r| Ok(((r.get(0)?, r.get(1)?), r.get(2)?))).unwrap().map(Result::unwrap).collect()
}

pub fn since(hello: &ClientMessage) -> (Option<Cursor>, u64) {
    match hello {
        ClientMessage::Hello { since, since_rev, .. } => (*since, *since_rev),
        other => panic!("{other:?}"),
    }
}

pub fn fill(server: &FakeServer, worker: &str) {
    for (id, class) in [("aa", "Room"), ("bb", "Room"), ("cc", "Cart")] {
        for key in ["k1", "k2", "k3"] {
            server.write(worker, class, id, key, Some(json!(format!("{id}-{key}"))));
        }
    }
}

/// One pull of `workers` from `server` into the database in memory `db`, without filters.
pub async fn pull_into(
    server: &FakeServer,
    db: &MemoryDatabase,
    workers: &[&str],
) -> Result<crate::pull::progress::Summary, crate::pull::PullError> {
    crate::pull::once_into(&settings(Path::new("memory"), workers, FilterSpec::default()), server, db.opener(), true).await
}

/// One pull of `workers` from `server` into the file `db`, without filters.
pub async fn pull(server: &FakeServer, db: &Path, workers: &[&str]) -> Result<crate::pull::progress::Summary, crate::pull::PullError> {
    crate::pull::once_with(&settings(db, workers, FilterSpec::default()), server, true).await
}
