//! Routes that write through every storage write path, from a helper that only receives the
//! `State`: the instrumentation must see these writes too.

use std::collections::HashMap;

use serde_json::Value;
use worker::wasm_bindgen::JsCast;
use worker::{js_sys, wasm_bindgen::JsValue, ListOptions, Method, Request, Response, Result, State};

/// Answers a request; a failed write answers 500 with the error's message.
pub async fn handle(state: &State, req: Request) -> Result<Response> {
    match route(state, req).await {
        Ok(response) => Ok(response),
        Err(e) => Response::error(e.to_string(), 500),
    }
}

async fn route(state: &State, mut req: Request) -> Result<Response> {
    let url = req.url()?;
    let operation = url.path_segments().and_then(|mut s| s.nth(2)).unwrap_or_default().to_owned();
    let key = url.query_pairs().find(|(k, _)| k == "key").map(|(_, v)| v.into_owned());
    let storage = state.storage();
    let write = req.method() == Method::Post;
    let op = match (operation.as_str(), key, write) {
        ("put", Some(key), true) => Op::Put { key, value: req.json().await? },
        ("put_raw", Some(key), true) => Op::PutRaw { key, bytes: req.bytes().await? },
        ("put_multiple", None, true) => Op::PutMultiple { entries: req.json().await? },
        ("put_multiple_raw", None, true) => Op::PutMultipleRaw { entries: req.json().await? },
        ("delete", Some(key), true) => Op::Delete { key },
        ("delete_multiple", None, true) => Op::DeleteMultiple { keys: req.json().await? },
        ("delete_all", None, true) => Op::DeleteAll,
        ("transaction", None, true) => Op::Transaction(req.json().await?),
        ("put_symbol", Some(key), true) => {
            // Storage cannot clone a symbol: the write must fail, and so must its log row.
            storage.put_raw(&key, JsValue::symbol(None)).await?;
            return Response::ok("ok");
        }
        ("put_typed", Some(key), true) => {
            storage.put_raw(&key, typed_value(&req.text().await?)?).await?;
            return Response::ok("ok");
        }
        ("ops", None, true) => {
            apply(state, req.json().await?).await?;
            return Response::ok("ok");
        }
        ("ops_in_alarm", None, true) => {
            // The alarm runs the writes; the plan waits in storage until then.
            storage.put(PENDING_OPS, req.text().await?).await?;
            storage.set_alarm(std::time::Duration::from_millis(0)).await?;
            return Response::ok("ok");
        }
        ("alarm", None, true) => {
            let delay_ms: u64 = req.text().await?.trim().parse().unwrap_or(0);
            storage.set_alarm(std::time::Duration::from_millis(delay_ms)).await?;
            return Response::ok("ok");
        }
        ("socket", None, false) => {
            let pair = worker::WebSocketPair::new()?;
            state.accept_web_socket(&pair.server);
            return Response::from_websocket(pair.client);
        }
        ("get", None, false) => return Response::from_json(&read_all(state).await?),
        ("sql_query", None, true) => return Response::from_json(&query_rows(&storage.sql(), &req.text().await?)?),
        ("state", None, true) => {
            // Some keys and a query's rows, read in one event: what one request of the app sees.
            let ask: StateQuery = req.json().await?;
            let keys = storage.get_multiple(ask.keys).await?;
            let keys: serde_json::Map<String, Value> = keys
                .entries()
                .into_iter()
                .filter_map(|entry| {
                    let entry: js_sys::Array = entry.ok()?.into();
                    Some((entry.get(0).as_string()?, serde_wasm_bindgen::from_value(entry.get(1)).ok()?))
                })
                .collect();
            return Response::from_json(&serde_json::json!({ "keys": keys, "rows": query_rows(&storage.sql(), &ask.query)? }));
        }
        ("sql_rows_written", None, true) => {
            // Each statement of the JSON array run in its own `exec`, to its end: the rows the
            // runtime counts as written (what Cloudflare bills), summed.
            let statements: Vec<String> = req.json().await?;
            let sql = storage.sql();
            let mut written = 0;
            for statement in statements {
                let cursor = sql.exec(&statement, None)?;
                for row in cursor.raw() {
                    row?;
                }
                written += cursor.rows_written();
            }
            return Response::from_json(&written);
        }
        ("list", None, false) => {
            // The keys list() returns for the query's start, end, prefix, reverse and limit.
            let query: HashMap<String, String> = url.query_pairs().into_owned().collect();
            let mut options = ListOptions::new();
            if let Some(start) = query.get("start") {
                options = options.start(start);
            }
            if let Some(end) = query.get("end") {
                options = options.end(end);
            }
            if let Some(prefix) = query.get("prefix") {
                options = options.prefix(prefix);
            }
            if let Some(limit) = query.get("limit").and_then(|l| l.parse().ok()) {
                options = options.limit(limit);
            }
            options = options.reverse(query.contains_key("reverse"));
            let keys: Vec<String> =
                storage.list_with_options(options).await?.keys().into_iter().filter_map(|k| k.ok()?.as_string()).collect();
            return Response::from_json(&keys);
        }
        ("overwrite", None, true) => {
            // `{"writes": n, "keys": k}`: n awaited single-key puts cycling over k keys; with
            // `"turns": true`, each in an event-loop turn of its own, as writes from separate
            // events are (durafetch logs a turn's writes in one row).
            let plan: Overwrite = req.json().await?;
            for i in 0..plan.writes {
                storage.put(&format!("hot-{}", i % plan.keys.max(1)), i).await?;
                if plan.turns {
                    worker::Delay::from(std::time::Duration::ZERO).await;
                }
            }
            return Response::ok("ok");
        }
        ("bench", None, true) => {
            let plan: Bench = req.json().await?;
            return Response::from_json(&bench(state, plan).await?);
        }
        ("log_rows", None, false) => {
            // A debug view for tests: how many rows durafetch's change log holds.
            return Response::from_json(&durafetch_sdk::__private::log_rows(state).await?);
        }
        ("sql_log_rows", None, false) => {
            // A debug view for tests: how many change records the SQL half of the log holds.
            return Response::from_json(&durafetch_sdk::__private::sql_log_rows(state)?);
        }
        ("held_state", None, false) => {
            // A debug view for tests: what this isolate holds for instrumented objects.
            return Response::from_json(&durafetch_sdk::__private::held_state());
        }
        _ => return Response::error("unknown operation", 404),
    };
    apply(state, vec![op]).await?;
    Response::ok("ok")
}

/// One call of a storage write path.
#[derive(serde::Deserialize)]
#[serde(tag = "op", rename_all = "snake_case")]
pub enum Op {
    Put {
        key: String,
        value: Value,
    },
    PutRaw {
        key: String,
        bytes: Vec<u8>,
    },
    /// A HashMap becomes a JS Map, which storage alone would silently ignore.
    PutMultiple {
        entries: HashMap<String, Value>,
    },
    /// Plain JS objects built by hand.
    PutMultipleRaw {
        entries: serde_json::Map<String, Value>,
    },
    Delete {
        key: String,
    },
    DeleteMultiple {
        keys: Vec<String>,
    },
    DeleteAll,
    Transaction(TransactionPlan),
    /// SQL statements through `storage.sql().exec` (a SQLite-backed class only).
    Sql {
        sql: String,
    },
    /// SQL statements inside `storage.transactionSync`, as the README shows; `fail`: the callback
    /// ends with an error after them, so that none commits.
    SqlSync {
        sql: Vec<String>,
        fail: bool,
    },
}

/// Runs write calls in order, from whichever entry point received them.
pub async fn apply(state: &State, ops: Vec<Op>) -> Result<()> {
    let storage = state.storage();
    for op in ops {
        match op {
            Op::Put { key, value } => storage.put(&key, value).await?,
            Op::PutRaw { key, bytes } => storage.put_raw(&key, js_sys::Uint8Array::from(bytes.as_slice())).await?,
            Op::PutMultiple { entries } => storage.put_multiple(entries).await?,
            Op::PutMultipleRaw { entries } => {
                let object = js_sys::Object::new();
                for (key, value) in entries {
                    js_sys::Reflect::set(&object, &JsValue::from_str(&key), &plain_js(&value)?)?;
                }
                storage.put_multiple_raw(object).await?
            }
            Op::Delete { key } => {
                storage.delete(&key).await?;
            }
            Op::DeleteMultiple { keys } => {
                storage.delete_multiple(keys).await?;
            }
            Op::DeleteAll => storage.delete_all().await?,
            Op::Sql { sql } => run_sql(&storage.sql(), &sql)?,
            Op::SqlSync { sql, fail } => {
                let sql_storage = storage.sql();
                let result = transaction_sync(&storage, move || {
                    for statement in &sql {
                        run_sql(&sql_storage, statement)?;
                    }
                    if fail {
                        return Err(worker::Error::RustError("the callback failed, as asked".into()));
                    }
                    Ok(())
                });
                // A failure is what the op asked for.
                if !fail {
                    result?;
                }
            }
            Op::Transaction(TransactionPlan { put, put_many, delete, delete_many, sql, hold_ms, rollback }) => {
                let sql_storage = storage.sql();
                let result = storage
                    .transaction(move |txn| async move {
                        for statement in sql {
                            run_sql(&sql_storage, &statement)?;
                        }
                        for (key, value) in put {
                            txn.put(&key, value).await?;
                        }
                        if !put_many.is_empty() {
                            txn.put_multiple(put_many).await?;
                        }
                        for key in delete {
                            txn.delete(&key).await?;
                        }
                        if !delete_many.is_empty() {
                            txn.delete_multiple(delete_many).await?;
                        }
                        if hold_ms > 0 {
                            worker::Delay::from(std::time::Duration::from_millis(hold_ms)).await;
                        }
                        if rollback {
                            txn.rollback()?;
                        }
                        Ok(())
                    })
                    .await;
                // A rollback is what the plan asked for, not a failure.
                if !rollback {
                    result?;
                }
            }
        }
    }
    Ok(())
}

/// Log-shaped rows written by hand, as durafetch writes a burst's: one naming every 1,024 keys,
/// and one for the rest after the last write, each issued in the same step as a write it names.
/// A write call's names are its key, or its entries' `Object.keys`, as durafetch takes them.
#[derive(Default)]
struct HandLog {
    names: js_sys::Array,
    rows: u64,
}

impl HandLog {
    fn note(&mut self, storage: &worker::Storage, names: &JsValue, last: bool) -> Result<()> {
        match names.dyn_ref::<js_sys::Array>() {
            Some(many) => self.names = self.names.concat(many),
            None => {
                self.names.push(names);
            }
        }
        if self.names.length() >= 1024 || last {
            let row = js_sys::Object::new();
            let names = std::mem::take(&mut self.names);
            js_sys::Reflect::set(&row, &JsValue::from_str(&format!("\u{1}row\u{1}log\u{1}{:024x}", self.rows)), &names)?;
            self.rows += 1;
            // Issued without an await, as durafetch does. (`put_multiple_raw` is an async fn:
            // unawaited, it would never write.)
            let _ = storage.as_raw().put_multiple(row.into())?;
        }
        Ok(())
    }
}

/// What the `state` route reads.
#[derive(serde::Deserialize)]
struct StateQuery {
    keys: Vec<String>,
    query: String,
}

/// Timed work inside the object, for the benchmark: `single` awaited one-key puts, `batched`
/// puts of 128 keys, or a `scan` of every key; 100-byte values. Answers milliseconds.
#[derive(serde::Deserialize)]
struct Bench {
    kind: String,
    #[serde(default)]
    keys: u64,
    #[serde(default)]
    value_bytes: usize,
}

async fn bench(state: &State, plan: Bench) -> Result<Value> {
    let storage = state.storage();
    let value = "v".repeat(plan.value_bytes.max(1));
    // For the `_with_row` kinds (run on the plain class): the rows durafetch would write, by
    // hand, without any durafetch code: what the extra rows alone cost storage.
    let mut rows = (plan.kind.ends_with("_with_row")).then(HandLog::default);
    let sql = plan.kind.starts_with("sql_").then(|| storage.sql());
    if let Some(sql) = &sql {
        // Untimed: the table, and for updates and deletes the rows they change.
        run_sql(sql, "CREATE TABLE IF NOT EXISTS bench_rows (id INTEGER PRIMARY KEY, v TEXT)")?;
        if plan.kind == "sql_update" || plan.kind == "sql_delete" || plan.kind == "sql_update_hot" {
            sql.exec(
                &format!("{SERIES} INSERT INTO bench_rows SELECT i, ?2 FROM n"),
                vec![(plan.keys as i64).into(), value.clone().into()],
            )?;
        }
        if plan.kind == "sql_insert_one_statement_noop_trigger" {
            // What any capture by triggers costs at least: a trigger that does nothing.
            run_sql(sql, "CREATE TRIGGER IF NOT EXISTS bench_noop AFTER INSERT ON bench_rows WHEN 0 BEGIN SELECT 1; END")?;
        }
        // As after an export: the timed statements mark their rows anew, and pay for it. (The
        // plain class is not instrumented: nothing to close.)
        let _ = durafetch_sdk::__private::sql_close_generation(state);
    }
    // Rows the statements wrote, as the runtime counts them (what Cloudflare bills).
    let mut rows_written = 0;
    let started = worker::Date::now().as_millis();
    let mut count = 0u64;
    match plan.kind.as_str() {
        "sql_insert" | "sql_update" | "sql_update_hot" | "sql_delete" => {
            let sql = sql.as_ref().expect("an sql_ kind");
            let statement = match plan.kind.as_str() {
                "sql_insert" => "INSERT INTO bench_rows (id, v) VALUES (?1, ?2)",
                "sql_delete" => "DELETE FROM bench_rows WHERE id = ?1 AND ?2 IS NOT NULL",
                _ => "UPDATE bench_rows SET v = ?2 WHERE id = ?1",
            };
            // The hot kind updates the same 10 rows over and over.
            let rows = if plan.kind == "sql_update_hot" { 10 } else { plan.keys };
            for i in 0..plan.keys {
                rows_written += sql.exec(statement, vec![((i % rows) as i64 + 1).into(), value.clone().into()])?.rows_written();
            }
            count = plan.keys;
        }
        "sql_insert_batched" => {
            // The rows a restore of the P2 table writes, as an app would insert them: statements
            // of 50 rows, every value bound (the runtime binds at most 100 values a statement).
            let sql = sql.as_ref().expect("an sql_ kind");
            for first in (0..plan.keys).step_by(50) {
                let ids = first..plan.keys.min(first + 50);
                let slots = vec!["(?, ?)"; ids.clone().count()].join(", ");
                let values: Vec<worker::SqlStorageValue> = ids.flat_map(|i| [(i as i64 + 1).into(), value.clone().into()]).collect();
                rows_written += sql.exec(&format!("INSERT INTO bench_rows (id, v) VALUES {slots}"), values)?.rows_written();
            }
            count = plan.keys;
        }
        "sql_insert_one_statement" | "sql_insert_one_statement_noop_trigger" => {
            let sql = sql.as_ref().expect("an sql_ kind");
            let cursor = sql.exec(
                &format!("{SERIES} INSERT INTO bench_rows SELECT i, ?2 FROM n"),
                vec![(plan.keys as i64).into(), value.clone().into()],
            )?;
            rows_written += cursor.rows_written();
            count = plan.keys;
        }
        "sql_scan" => {
            let sql = storage.sql();
            for row in sql.exec("SELECT * FROM bench_rows", None)?.raw() {
                row?;
                count += 1;
            }
        }
        "single" | "single_with_row" => {
            for i in 0..plan.keys {
                let key = format!("s-{i:08}");
                if let Some(rows) = &mut rows {
                    rows.note(&storage, &JsValue::from_str(&key), i + 1 == plan.keys)?;
                }
                storage.put(&key, &value).await?;
            }
            count = plan.keys;
        }
        "batched" | "batched_with_row" => {
            let mut i = 0;
            while i < plan.keys {
                let batch = js_sys::Object::new();
                let end = (i + 128).min(plan.keys);
                for j in i..end {
                    let key = JsValue::from_str(&format!("b-{j:08}"));
                    js_sys::Reflect::set(&batch, &key, &JsValue::from_str(&value))?;
                }
                if let Some(rows) = &mut rows {
                    rows.note(&storage, &js_sys::Object::keys(&batch), end == plan.keys)?;
                }
                storage.put_multiple_raw(batch).await?;
                i = end;
            }
            count = plan.keys;
        }
        "scan" => {
            let mut after: Option<String> = None;
            loop {
                let options = ListOptions::new().limit(1000);
                let options = match &after {
                    Some(start) => options.start(start),
                    None => options,
                };
                let page = storage.list_with_options(options).await?;
                let keys: Vec<String> = page.keys().into_iter().filter_map(|k| k.ok()?.as_string()).collect();
                count += keys.iter().filter(|k| Some(*k) != after.as_ref()).count() as u64;
                if keys.len() < 1000 {
                    break;
                }
                after = keys.last().cloned();
            }
        }
        other => return Err(format!("unknown bench kind {other}").into()),
    }
    let elapsed = worker::Date::now().as_millis() - started;
    Ok(serde_json::json!({ "ms": elapsed, "count": count, "rows_written": rows_written }))
}

/// The numbers 1 to `?1`, as `n(i)`: a bulk insert in one statement (one transaction).
const SERIES: &str = "WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < ?1)";

#[derive(serde::Deserialize)]
struct Overwrite {
    writes: u64,
    keys: u64,
    #[serde(default)]
    turns: bool,
}

/// A transaction's writes, in this order: one-key puts, one put of many entries, one-key
/// deletes, one delete of many keys; then a rollback if asked.
#[derive(serde::Deserialize)]
pub struct TransactionPlan {
    #[serde(default)]
    put: Vec<(String, i64)>,
    #[serde(default)]
    put_many: HashMap<String, i64>,
    #[serde(default)]
    delete: Vec<String>,
    #[serde(default)]
    delete_many: Vec<String>,
    /// SQL statements, run first.
    #[serde(default)]
    sql: Vec<String>,
    /// Milliseconds the transaction stays open after its writes, before it commits or rolls
    /// back: other requests (a pull's) run meanwhile.
    #[serde(default)]
    hold_ms: u64,
    #[serde(default)]
    rollback: bool,
}

/// Runs SQL statements to their end.
/// Runs `body` inside `storage.transactionSync`: its SQL statements commit together, or none
/// does if it returns an error (which comes back as this function's error). The README's snippet.
fn transaction_sync(storage: &worker::Storage, body: impl FnOnce() -> Result<()> + 'static) -> Result<()> {
    let raw: &JsValue = storage.as_raw().unchecked_ref();
    let method: js_sys::Function = js_sys::Reflect::get(raw, &"transactionSync".into())?.dyn_into()?;
    let callback = worker::wasm_bindgen::closure::Closure::once_into_js(move || -> std::result::Result<JsValue, JsValue> {
        body().map(|()| JsValue::UNDEFINED).map_err(JsValue::from)
    });
    method.call1(raw, &callback)?;
    Ok(())
}

fn run_sql(sql: &worker::SqlStorage, statements: &str) -> Result<()> {
    for row in sql.exec(statements, None)?.raw() {
        row?;
    }
    Ok(())
}

/// The rows of a query, each value as JSON: TEXT and REAL as themselves, NULL as null (a query
/// that needs exact INTEGERs or BLOBs reads them as text, as `CAST(x AS TEXT)` or `hex(x)`).
fn query_rows(sql: &worker::SqlStorage, query: &str) -> Result<Vec<Vec<Value>>> {
    let mut rows = Vec::new();
    for row in sql.exec(query, None)?.raw() {
        let row = row?
            .into_iter()
            .map(|v| match v {
                worker::SqlStorageValue::Null => Value::Null,
                worker::SqlStorageValue::Boolean(b) => Value::Bool(b),
                worker::SqlStorageValue::Integer(i) => Value::from(i),
                worker::SqlStorageValue::Float(f) => Value::from(f),
                worker::SqlStorageValue::String(s) => Value::String(s),
                worker::SqlStorageValue::Blob(b) => Value::from(b),
            })
            .collect();
        rows.push(row);
    }
    Ok(rows)
}

/// Where `ops_in_alarm` leaves the writes for the alarm to run.
const PENDING_OPS: &str = "pending-ops";

/// The alarm runs pending writes if there are any, and otherwise counts how often it fired.
pub async fn on_alarm(state: &State) -> Result<Response> {
    let storage = state.storage();
    if let Some(ops) = storage.get::<String>(PENDING_OPS).await? {
        storage.delete(PENDING_OPS).await?;
        apply(state, serde_json::from_str(&ops)?).await?;
        return Response::ok("ok");
    }
    let fired: i64 = storage.get("alarm-fired").await?.unwrap_or(0);
    storage.put("alarm-fired", fired + 1).await?;
    Response::ok("ok")
}

/// A hibernatable socket: a message `key=value` puts the JSON value under the key, and
/// `ops:[..]` runs write calls; then the socket answers `ok`.
pub async fn on_socket_message(state: &State, ws: &worker::WebSocket, message: worker::WebSocketIncomingMessage) -> Result<()> {
    let worker::WebSocketIncomingMessage::String(text) = message else {
        return ws.send_with_str("expected text");
    };
    if let Some(ops) = text.strip_prefix("ops:") {
        // The sender waits for an answer: a failure is one too.
        return match apply(state, serde_json::from_str(ops)?).await {
            Ok(()) => ws.send_with_str("ok"),
            Err(e) => ws.send_with_str(format!("error: {e}")),
        };
    }
    let Some((key, value)) = text.split_once('=') else {
        return ws.send_with_str("expected key=value");
    };
    let value: Value = serde_json::from_str(value)?;
    state.storage().put(key, value).await?;
    ws.send_with_str("ok")
}

/// Closing a socket is recorded too.
pub async fn on_socket_close(state: &State) -> Result<()> {
    let storage = state.storage();
    let closed: i64 = storage.get("sockets-closed").await?.unwrap_or(0);
    storage.put("sockets-closed", closed + 1).await
}

/// A value JSON cannot hold, as a Rust Worker comes to store one: a serde `HashMap` or a struct
/// with a `None` field (through serde-wasm-bindgen), or JS values built with js-sys.
fn typed_value(kind: &str) -> Result<JsValue> {
    #[derive(serde::Serialize)]
    struct Profile {
        name: String,
        nickname: Option<String>,
        scores: HashMap<String, u32>,
    }
    let object = |pairs: &[(&str, JsValue)]| -> Result<JsValue> {
        let object = js_sys::Object::new();
        for (key, value) in pairs {
            js_sys::Reflect::set(&object, &JsValue::from_str(key), value)?;
        }
        Ok(object.into())
    };
    Ok(match kind {
        "struct" => serde_wasm_bindgen::to_value(&Profile {
            name: "ada".into(),
            nickname: None,
            scores: [("chess".to_string(), 7)].into_iter().collect(),
        })?,
        "map" => {
            let map = js_sys::Map::new();
            map.set(&JsValue::from_str("a"), &JsValue::from_f64(1.0));
            map.set(&JsValue::from_f64(2.0), &js_sys::Date::new(&JsValue::from_f64(86_400_000.0)));
            map.into()
        }
        "mix" => {
            let set = js_sys::Set::new(&JsValue::UNDEFINED);
            set.add(&JsValue::bigint_from_str("-12345678901234567890"));
            set.add(&JsValue::from_f64(f64::NAN));
            object(&[
                ("set", set.into()),
                ("bytes", js_sys::Uint8Array::from(&[0u8, 255][..]).into()),
                ("floats", js_sys::Float64Array::from(&[1.5f64][..]).into()),
                ("nothing", JsValue::UNDEFINED),
                ("pattern", js_sys::RegExp::new("^a+$", "gi").into()),
                ("$type", JsValue::from_str("user data")),
                ("list", js_sys::Array::of2(&JsValue::from_f64(f64::NEG_INFINITY), &JsValue::NULL).into()),
            ])?
        }
        // An array with a hole, a string no Rust string can hold, and an object without a
        // prototype: the edges of what JSON can say.
        "sparse" => {
            let array = js_sys::Array::new_with_length(3);
            array.set(0, JsValue::from_f64(1.0));
            array.set(2, JsValue::from_f64(3.0));
            array.into()
        }
        // An array with a named property beside its elements, which storage keeps.
        "named_array" => {
            let array = js_sys::Array::of2(&JsValue::from_f64(1.0), &JsValue::from_f64(2.0));
            js_sys::Reflect::set(&array, &JsValue::from_str("label"), &JsValue::from_str("x"))?;
            array.into()
        }
        // The same array with `undefined` stored where the hole is.
        "undefined_item" => js_sys::Array::of3(&JsValue::from_f64(1.0), &JsValue::UNDEFINED, &JsValue::from_f64(3.0)).into(),
        "lone_surrogate" => js_sys::JsString::from_char_code3(0x61, 0xD800, 0x62).into(),
        // The same string as an object's key.
        "lone_surrogate_key" => {
            let object = js_sys::Object::new();
            js_sys::Reflect::set(&object, &js_sys::JsString::from_char_code3(0x61, 0xD800, 0x62).into(), &JsValue::from_f64(1.0))?;
            object.into()
        }
        "null_proto" => {
            let object: js_sys::Object = js_sys::Object::create(JsValue::NULL.unchecked_ref());
            js_sys::Reflect::set(&object, &JsValue::from_str("a"), &JsValue::from_f64(1.0))?;
            object.into()
        }
        "undefined" => JsValue::UNDEFINED,
        "error" => js_sys::Error::new("boom").into(),
        other => return Err(format!("unknown typed value {other}").into()),
    })
}

/// A JSON value as the plain JS value `JSON.parse` would give (objects as objects, not Maps).
fn plain_js(value: &Value) -> Result<JsValue> {
    Ok(js_sys::JSON::parse(&value.to_string())?)
}

/// Every user key and its value, for tests to compare with the pulled copy.
async fn read_all(state: &State) -> Result<serde_json::Map<String, Value>> {
    let mut out = serde_json::Map::new();
    let entries = state.storage().list_with_options(ListOptions::new()).await?;
    for entry in entries.entries() {
        let entry: js_sys::Array = entry?.into();
        // durafetch hides its own rows from list(); no filtering is needed here.
        let key = entry.get(0).as_string().unwrap_or_default();
        let value = entry.get(1);
        let value = if let Some(bytes) = value.dyn_ref::<js_sys::Uint8Array>() {
            serde_json::json!({ "bytes": bytes.to_vec() })
        } else {
            js_sys::JSON::stringify(&value)
                .ok()
                .and_then(|s| s.as_string())
                .and_then(|s| serde_json::from_str(&s).ok())
                .unwrap_or(Value::Null)
        };
        out.insert(key, value);
    }
    Ok(out)
}
