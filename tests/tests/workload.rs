//! A seeded random workload over 20 objects of both classes: every write path, delete-all,
//! transactions with rollbacks, alarms and hibernatable WebSocket writes, and in the SQLite-backed
//! objects SQL statements too (upserts, deletes, updates of every row, inside transactions as
//! well; REPLACE through a UNIQUE column in another case, NULL in a declared key, a user trigger
//! that updates its own table, a table dropped and made again in another shape while pullers
//! run), interleaved with pulls, a watcher, puller SIGKILLs and workerd crashes. At the end, with
//! writes stopped, the SQLite file must equal the objects' state key by key and every table row
//! by row, type for type, and keys and table `t` must equal the generator's model.
//!
//! The seed is printed; `DURAFETCH_WORKLOAD_SEED=<seed>` replays a failure,
//! `DURAFETCH_WORKLOAD_SEEDS=<n>` runs n seeds, `DURAFETCH_WORKLOAD_OPS=<n>` sets the length.

use std::collections::BTreeMap;
use std::path::Path;
use std::process::Child;
use std::time::Duration;

use serde_json::{json, Value};

use durafetch_e2e::sql_tables::pull_until_tables_match;
use durafetch_e2e::{finish_within, read_db, spawn_piped, LocalWorker, Pulled, PULL_LIMIT, TOKEN};

const NAMES: usize = 10;
const KEYS: usize = 24;

/// The generator's model: (class, name) → key → rendered value, as `read_db` renders it.
type Model = BTreeMap<(String, String), BTreeMap<String, String>>;
/// The SQL table `t (id INTEGER PRIMARY KEY, v INTEGER)` of each `CounterSql` object: id → v.
type SqlModel = BTreeMap<String, BTreeMap<i64, i64>>;

/// Every SQL op starts here: `delete_all` drops the tables with everything else. `u` has a
/// declared key that may be NULL, a UNIQUE name compared without case, and the app's own
/// trigger that updates the row it fires for.
const SQL_TABLE: &str = "CREATE TABLE IF NOT EXISTS t (id INTEGER PRIMARY KEY, v INTEGER);
    CREATE TABLE IF NOT EXISTS u (k TEXT PRIMARY KEY, name TEXT UNIQUE COLLATE NOCASE, v INTEGER, touched INTEGER DEFAULT 0);
    CREATE TRIGGER IF NOT EXISTS u_touch AFTER UPDATE OF v ON u BEGIN UPDATE u SET touched = touched + 1 WHERE rowid = NEW.rowid; END;";

struct Workload {
    rng: fastrand::Rng,
    model: Model,
    sql: SqlModel,
}

fn class_of(route: &str) -> &'static str {
    if route == "kv" {
        "CounterKv"
    } else {
        "CounterSql"
    }
}

impl Workload {
    fn key(&mut self) -> String {
        format!("k{:02}", self.rng.usize(..KEYS))
    }

    fn value(&mut self) -> Value {
        match self.rng.u8(..4) {
            0 => json!(self.rng.i64(-1_000_000..1_000_000)),
            1 => json!(format!("s{}-é", self.rng.u32(..1000))),
            2 => json!([self.rng.u8(..), "x", true]),
            // Exact in a JS number, as every value the example receives passes through JSON.parse.
            _ => json!(self.rng.i64(-(1 << 53)..(1 << 53))),
        }
    }

    /// One SQL statement on `t`, applied to `rows`, or on the tables no model follows (`u`, `d`),
    /// which the end compares with the object's own.
    fn sql_statement(&mut self, rows: &mut BTreeMap<i64, i64>) -> String {
        let id = self.rng.i64(0..16);
        let name = |rng: &mut fastrand::Rng| {
            let n = rng.u8(..6);
            if rng.bool() {
                format!("n{n}")
            } else {
                format!("N{n}")
            }
        };
        match self.rng.u8(..8) {
            4 => {
                let k = ["NULL", "'a'", "'b'", "'c'"][self.rng.usize(..4)];
                format!("INSERT OR REPLACE INTO u (k, name, v) VALUES ({k}, '{}', {});", name(&mut self.rng), self.rng.i64(..1000))
            }
            5 => format!("UPDATE u SET v = v + 1 WHERE name = '{}';", name(&mut self.rng)),
            6 if self.rng.bool() => "DELETE FROM u WHERE k IS NULL AND v % 3 = 0;".to_owned(),
            6 => {
                // Made again in another shape: readers resend it whole.
                let columns: Vec<String> = (0..self.rng.usize(1..4)).map(|i| format!("c{i}")).collect();
                format!(
                    "DROP TABLE IF EXISTS d; CREATE TABLE d (a INTEGER PRIMARY KEY, {}); INSERT INTO d VALUES (1, {}), (2, {});",
                    columns.join(", "),
                    vec!["'x'"; columns.len()].join(", "),
                    vec!["NULL"; columns.len()].join(", ")
                )
            }
            7 => format!(
                "CREATE TABLE IF NOT EXISTS d (a INTEGER PRIMARY KEY); INSERT INTO d (a) VALUES ({}) ON CONFLICT DO NOTHING;",
                self.rng.i64(3..9)
            ),
            0 | 1 => {
                // Beyond 2^53 too: the value must arrive exactly.
                let v = self.rng.i64(-(1 << 62)..(1 << 62));
                rows.insert(id, v);
                format!("INSERT INTO t VALUES ({id}, {v}) ON CONFLICT (id) DO UPDATE SET v = excluded.v;")
            }
            2 => {
                rows.remove(&id);
                format!("DELETE FROM t WHERE id = {id};")
            }
            _ => {
                for v in rows.values_mut() {
                    *v = v.wrapping_add(1);
                }
                "UPDATE t SET v = v + 1;".to_owned()
            }
        }
    }

    /// One write call, as the example's `Op` JSON, applied to `state` (the object's model) and,
    /// for a SQLite-backed object, to `rows` (its table's).
    fn op(&mut self, state: &mut BTreeMap<String, String>, mut rows: Option<&mut BTreeMap<i64, i64>>) -> Value {
        if let Some(rows) = rows.as_deref_mut() {
            if self.rng.u8(..4) == 0 {
                let statements: String = (0..self.rng.usize(1..4)).map(|_| self.sql_statement(rows)).collect();
                return json!({"op": "sql", "sql": format!("{SQL_TABLE}{statements}")});
            }
        }
        match self.rng.u8(..20) {
            0..=5 => {
                let (key, value) = (self.key(), self.value());
                state.insert(key.clone(), value.to_string());
                json!({"op": "put", "key": key, "value": value})
            }
            6..=7 => {
                let key = self.key();
                let bytes: Vec<u8> = (0..self.rng.usize(0..8)).map(|_| self.rng.u8(..)).collect();
                state.insert(key.clone(), format!("<bytes:{}>", bytes.iter().map(|b| format!("{b:02X}")).collect::<String>()));
                json!({"op": "put_raw", "key": key, "bytes": bytes})
            }
            8..=9 => {
                let mut entries = serde_json::Map::new();
                for _ in 0..self.rng.usize(1..6) {
                    let (key, n) = (self.key(), self.rng.i64(-1000..1000));
                    entries.insert(key.clone(), json!(n));
                }
                for (key, value) in &entries {
                    state.insert(key.clone(), value.to_string());
                }
                json!({"op": "put_multiple", "entries": entries})
            }
            10..=11 => {
                let mut entries = serde_json::Map::new();
                for _ in 0..self.rng.usize(1..6) {
                    let key = self.key();
                    entries.insert(key, json!({"a": self.rng.u16(..), "b": ["n", null]}));
                }
                for (key, value) in &entries {
                    state.insert(key.clone(), value.to_string());
                }
                json!({"op": "put_multiple_raw", "entries": entries})
            }
            12..=14 => {
                let key = self.key();
                state.remove(&key);
                json!({"op": "delete", "key": key})
            }
            15 => {
                let keys: Vec<String> = (0..self.rng.usize(1..5)).map(|_| self.key()).collect();
                for key in &keys {
                    state.remove(key);
                }
                json!({"op": "delete_multiple", "keys": keys})
            }
            16 if self.rng.u8(..4) == 0 => {
                state.clear();
                if let Some(rows) = rows {
                    rows.clear();
                }
                json!({"op": "delete_all"})
            }
            _ => {
                let put: Vec<(String, i64)> = (0..self.rng.usize(0..4)).map(|_| (self.key(), self.rng.i64(-100..100))).collect();
                let delete: Vec<String> = (0..self.rng.usize(0..3)).map(|_| self.key()).collect();
                let rollback = self.rng.u8(..3) == 0;
                let mut sql = Vec::new();
                if let Some(rows) = rows {
                    let mut changed = rows.clone();
                    for _ in 0..self.rng.usize(0..3) {
                        sql.push(format!("{SQL_TABLE}{}", self.sql_statement(&mut changed)));
                    }
                    if !rollback {
                        *rows = changed;
                    }
                }
                if !rollback {
                    for (key, value) in &put {
                        state.insert(key.clone(), value.to_string());
                    }
                    for key in &delete {
                        state.remove(key);
                    }
                }
                json!({"op": "transaction", "put": put, "delete": delete, "sql": sql, "rollback": rollback})
            }
        }
    }
}

/// Runs one step: a few write calls on one object, through fetch, an alarm or a WebSocket.
/// Answers how many write calls it made.
fn step(worker: &LocalWorker, w: &mut Workload) -> usize {
    let route = if w.rng.bool() { "kv" } else { "sql" };
    let name = format!("w{}", w.rng.usize(..NAMES));
    let object = (class_of(route).to_string(), name.clone());
    let mut state = w.model.get(&object).cloned().unwrap_or_default();
    let mut rows = w.sql.get(&name).cloned().unwrap_or_default();
    let ops: Vec<Value> = (0..w.rng.usize(1..4)).map(|_| w.op(&mut state, (route == "sql").then_some(&mut rows))).collect();
    if route == "sql" {
        w.sql.insert(name.clone(), rows);
    }
    let calls = ops.len();
    let ops = Value::Array(ops).to_string();
    match w.rng.u8(..10) {
        0 => {
            worker.post(&format!("{route}/{name}/ops_in_alarm"), &ops);
            // The alarm runs the writes later; wait until it has (the plan's key is gone).
            wait_until(worker, route, &name, |s| !s.contains_key("pending-ops"));
        }
        1 => {
            let url = format!("ws://127.0.0.1:{}/{route}/{name}/socket", worker.port);
            let (mut socket, _) = tungstenite::connect(url).expect("socket");
            if let tungstenite::stream::MaybeTlsStream::Plain(stream) = socket.get_ref() {
                stream.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
            }
            socket.send(tungstenite::Message::text(format!("ops:{ops}"))).unwrap();
            let reply = socket.read().expect("the socket's answer");
            assert_eq!(reply.to_text().unwrap(), "ok", "socket writes {ops}");
            // The close frame is what the object's close handler sees; workerd does not answer
            // it, so the socket is dropped rather than read until the server closes.
            socket.close(None).unwrap();
            socket.flush().unwrap();
            // The close is a write too: it counts, after the message's writes (a delete_all among
            // them restarts the count).
            let counted = (state.get("sockets-closed").map_or(0, |v| v.parse::<u64>().unwrap()) + 1).to_string();
            state.insert("sockets-closed".into(), counted.clone());
            wait_until(worker, route, &name, |s| s.get("sockets-closed") == Some(&counted));
        }
        _ => worker.post(&format!("{route}/{name}/ops"), &ops),
    }
    w.model.insert(object, state);
    calls
}

fn wait_until(worker: &LocalWorker, route: &str, name: &str, done: impl Fn(&BTreeMap<String, String>) -> bool) {
    for _ in 0..400 {
        if done(&worker.object_state(route, name)) {
            return;
        }
        std::thread::sleep(Duration::from_millis(25));
    }
    panic!("{route}/{name} never reached the expected state: {:?}", worker.object_state(route, name));
}

fn sigkill(child: &mut Child) {
    let _ = child.kill();
    let _ = child.wait();
}

fn run(seed: u64, ops: usize) {
    println!("workload seed {seed} ({ops} write calls); replay with DURAFETCH_WORKLOAD_SEED={seed}");
    let mut worker = LocalWorker::start(Some(TOKEN));
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("workload.sqlite");
    let mut w = Workload { rng: fastrand::Rng::with_seed(seed), model: Model::new(), sql: SqlModel::new() };
    let mut watcher: Option<Child> = None;
    let mut events = BTreeMap::<&str, u32>::new();
    let (mut calls, mut i) = (0, 0);
    while calls < ops {
        calls += step(&worker, &mut w);
        i += 1;
        if i % 97 != 0 {
            continue;
        }
        let event = match w.rng.u8(..10) {
            0..=3 => "pull",
            4..=5 => "puller SIGKILL",
            6 => "watcher toggle",
            7 => "workerd crash",
            8 => "workerd crash mid-pull",
            _ => "none",
        };
        *events.entry(event).or_default() += 1;
        match event {
            "pull" => {
                // One puller writes a file at a time: beside a running watcher, a pull is refused
                // at once (exit 2) and the watcher goes on keeping the file up to date.
                let run = worker.pull(&db, TOKEN);
                let expected = if watcher.is_some() { Some(2) } else { Some(0) };
                assert_eq!(run.code, expected, "seed {seed} step {i}: {}", run.stderr);
            }
            "puller SIGKILL" => {
                let mut child = spawn_puller(&worker, &db, &[]);
                std::thread::sleep(Duration::from_millis(w.rng.u64(0..150)));
                sigkill(&mut child);
            }
            "watcher toggle" => match watcher.take() {
                Some(mut child) => sigkill(&mut child),
                None => watcher = Some(spawn_puller(&worker, &db, &["--watch"])),
            },
            "workerd crash" => worker.crash_and_restart(),
            "workerd crash mid-pull" => {
                let child = spawn_puller(&worker, &db, &[]);
                std::thread::sleep(Duration::from_millis(w.rng.u64(0..100)));
                worker.crash_and_restart();
                let out = finish_within(child, PULL_LIMIT, "a pull across a workerd crash");
                if watcher.is_none() {
                    assert_ne!(out.status.code(), Some(2), "seed {seed} step {i}: {}", String::from_utf8_lossy(&out.stderr));
                }
            }
            _ => {}
        }
    }
    if let Some(mut child) = watcher.take() {
        sigkill(&mut child);
    }
    println!("seed {seed}: events {events:?}");

    // Writes have stopped. The objects, read back through the example's routes, hold the model;
    // reading them also wakes any object whose last report died with workerd.
    let model: Pulled = w.model.into_iter().filter(|(_, keys)| !keys.is_empty()).collect();
    for ((class, name), keys) in &model {
        let route = if class == "CounterKv" { "kv" } else { "sql" };
        assert_eq!(&worker.object_state(route, name), keys, "seed {seed}: {class} {name} differs from the model");
    }
    let runs = worker.pull_until_file_equals(&db, &model, &format!("seed {seed}: final pull"));
    println!("seed {seed}: the file matched the model after {} final pull(s)", runs.len());
    assert_eq!(read_db(&db), model);
    let sql_model: SqlModel = w.sql.into_iter().filter(|(_, rows)| !rows.is_empty()).collect();
    for _ in 0..50 {
        if sql_rows(&db) == sql_model {
            break;
        }
        assert_eq!(worker.pull(&db, TOKEN).code, Some(0));
        std::thread::sleep(Duration::from_millis(100));
    }
    assert_eq!(sql_rows(&db), sql_model, "seed {seed}: the SQL table in the file differs from the model");
    assert_eq!(read_db(&db), model);
    // Every table of every SQLite-backed object, as the object's own SELECT gives it.
    let names: Vec<String> = (0..NAMES).map(|n| format!("w{n}")).collect();
    let names: Vec<&str> = names.iter().map(String::as_str).collect();
    pull_until_tables_match(&worker, &db, &names, &format!("seed {seed}: every table"));
}

/// The file's copy of each object's table `t`.
fn sql_rows(db: &Path) -> SqlModel {
    let conn = rusqlite::Connection::open(db).unwrap();
    let mut out = SqlModel::new();
    let Ok(mut stmt) = conn.prepare(r#"SELECT o.name, t.id, t.v FROM "CounterSql.t" t JOIN durable_objects o USING (do_id)"#) else {
        return out;
    };
    let rows = stmt.query_map([], |r| Ok((r.get::<_, String>(0)?, r.get::<_, i64>(1)?, r.get::<_, i64>(2)?))).unwrap();
    for row in rows {
        let (name, id, v) = row.unwrap();
        out.entry(name).or_default().insert(id, v);
    }
    out
}

fn spawn_puller(worker: &LocalWorker, db: &Path, flags: &[&str]) -> Child {
    spawn_piped(worker.puller(db, TOKEN, flags))
}

#[test]
fn random_workload_with_crashes_ends_with_an_exact_copy() {
    let env = |name: &str| std::env::var(name).ok().and_then(|v| v.parse::<u64>().ok());
    let ops = env("DURAFETCH_WORKLOAD_OPS").unwrap_or(10_000) as usize;
    match env("DURAFETCH_WORKLOAD_SEED") {
        Some(seed) => run(seed, ops),
        None => {
            for _ in 0..env("DURAFETCH_WORKLOAD_SEEDS").unwrap_or(1) {
                run(fastrand::u64(..), ops);
            }
        }
    }
}
