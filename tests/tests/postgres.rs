//! The PostgreSQL sink against a real PostgreSQL server: the same pulls written into the SQLite
//! file and into PostgreSQL hold the same rows at every step; a puller killed mid-pull leaves a
//! database the next run completes; four pullers with `--shard i/4` cover every object once.

use std::path::Path;
use std::process::Child;
use std::time::{Duration, Instant};

use durafetch_e2e::postgres::{read_pg, same_values, PostgresServer, TestCa};
use durafetch_e2e::{finish_within, read_db, spawn_piped, LocalWorker, PullRun, PULL_LIMIT, TOKEN};
use serde_json::json;

/// Pulls into the file and into PostgreSQL (with `flags`) until the two hold the same rows, and
/// the file's copy of each of `objects` is what the object holds (read through the example's
/// routes, which render plain JSON and bytes only).
/// `keys_of_others`: how many keys the file must hold in all of the objects not listed.
fn pull_both_until_equal(
    worker: &LocalWorker,
    file: &Path,
    url: &str,
    flags: &[&str],
    objects: &[(&str, &str)],
    keys_of_others: usize,
    step: &str,
) {
    for _ in 0..50 {
        for db in [file, Path::new(url)] {
            let run = worker.pull_with(db, TOKEN, flags);
            assert_eq!(run.code, Some(0), "{step}: {}", run.stderr);
        }
        let (in_file, in_pg) = (read_db(file), read_pg(url));
        let live: durafetch_e2e::Pulled = objects
            .iter()
            .map(|(route, name)| {
                let class = if *route == "kv" { "CounterKv" } else { "CounterSql" };
                ((class.to_string(), name.to_string()), worker.object_state(route, name))
            })
            .filter(|(_, keys)| !keys.is_empty())
            .collect();
        let (listed, others): (durafetch_e2e::Pulled, durafetch_e2e::Pulled) =
            in_file.clone().into_iter().partition(|((_, name), _)| objects.iter().any(|(_, n)| n == name));
        let others_keys: usize = others.values().map(|keys| keys.len()).sum();
        if same_values(&listed, &live) && others_keys == keys_of_others && same_values(&in_pg, &in_file) {
            return;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    let (in_file, in_pg) = (read_db(file), read_pg(url));
    let differing: Vec<_> = in_file.keys().chain(in_pg.keys()).filter(|o| in_file.get(*o) != in_pg.get(*o)).collect();
    panic!("{step}: PostgreSQL never matched the file; objects whose rows differ (JSON compared as text): {differing:?}");
}

/// A row of the example's `items` table as PostgreSQL holds it: id, name, price, photo.
type Item = (i64, Option<String>, Option<f64>, Option<Vec<u8>>);

/// A count from PostgreSQL and the same count from the file.
fn counts(url: &str, file: &Path, query: &str) -> (i64, i64) {
    let mut client = postgres::Client::connect(url, postgres::NoTls).unwrap();
    let pg: i64 = client.query_one(query, &[]).unwrap().get(0);
    let conn = rusqlite::Connection::open(file).unwrap();
    (pg, conn.query_row(query, [], |r| r.get(0)).unwrap())
}

#[test]
fn postgres_holds_what_the_file_holds_at_every_step_with_history() {
    let worker = LocalWorker::start(Some(TOKEN));
    let server = PostgresServer::start();
    let url = server.create_database("scenario");
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("scenario.sqlite");
    let history = ["--history"];
    let objects: Vec<(&str, String)> =
        ["kv", "sql"].iter().flat_map(|route| (0..15).map(move |i| (*route, format!("obj-{i:02}")))).collect();
    let named: Vec<(&str, &str)> = objects.iter().map(|(r, n)| (*r, n.as_str())).collect();

    // The skeleton's 30 objects through put, overwrite, delete and delete_all.
    for (route, name) in &objects {
        worker.post(&format!("{route}/{name}/put?key=key-a"), "1");
        worker.post(&format!("{route}/{name}/put_multiple"), r#"{"key-b":1,"key-c":1,"key-d":1}"#);
    }
    pull_both_until_equal(&worker, &file, &url, &history, &named, 0, "puts");
    for (route, name) in &objects {
        worker.post(&format!("{route}/{name}/put_multiple_raw"), r#"{"key-a":2,"key-b":2}"#);
        worker.post(&format!("{route}/{name}/delete_multiple"), r#"["key-c"]"#);
    }
    pull_both_until_equal(&worker, &file, &url, &history, &named, 0, "overwrites and deletes");
    for (route, name) in objects.iter().step_by(3) {
        worker.post(&format!("{route}/{name}/delete_all"), "");
    }
    pull_both_until_equal(&worker, &file, &url, &history, &named, 0, "delete_all");

    // Every value kind: bytes, nested JSON, unicode, long strings, tagged values, an error.
    worker.post("sql/values/put_raw?key=bin", "\u{0}\u{1}binary\u{7f}");
    worker.post("sql/values/put_multiple_raw", r#"{"nested":{"z":[1,2.5,null,true,"s"],"a":{}},"unicode":"h\u00e9llo \ud83d\ude00"}"#);
    worker.post("sql/values/put_multiple_raw", &json!({ "long": "é😀\\\"\n".repeat(500) }).to_string());
    for kind in ["struct", "map", "mix", "error"] {
        worker.post(&format!("kv/values/put_typed?key={kind}"), kind);
    }
    worker.post("kv/values/put?key=neg", "-17.25");
    pull_both_until_equal(&worker, &file, &url, &history, &named, 9, "value kinds");
    let (pg, sqlite) = counts(&url, &file, "SELECT count(*) FROM kv WHERE val_type = 'error' AND val_error LIKE '%Error%'");
    assert_eq!((pg, sqlite), (1, 1), "the unsupported value's error text");

    // SQL tables: rows of every type, an update and a deletion, as the file's mirror holds them.
    let sql = |statements: &str| worker.post("sql/shop/ops", &json!([{"op": "sql", "sql": statements}]).to_string());
    sql("CREATE TABLE items (id INTEGER PRIMARY KEY, name TEXT, price REAL, photo BLOB);
         INSERT INTO items VALUES (1, 'pen', 1.5, x'00ff'), (2, 'ink', 3.0, NULL), (3, 'pad', NULL, x'');
         UPDATE items SET price = 2.0 WHERE id = 1; DELETE FROM items WHERE id = 3");
    pull_both_until_equal(&worker, &file, &url, &history, &named, 9, "SQL tables");
    let mut client = server.client("scenario");
    let items = |client: &mut postgres::Client| -> Vec<Item> {
        let rows = client.query(r#"SELECT id, name, price, photo FROM "CounterSql.items" ORDER BY id"#, &[]).unwrap_or_default();
        rows.iter().map(|r| (r.get(0), r.get(1), r.get(2), r.get(3))).collect()
    };
    // The shop holds no keys: pull until its rows are in (its registry report trails the write).
    for _ in 0..50 {
        if items(&mut client).len() == 2 {
            break;
        }
        pull_both_until_equal(&worker, &file, &url, &history, &named, 9, "SQL tables");
    }
    // The file's table, with PostgreSQL's types: a column per source column, typed by its values.
    assert_eq!(
        items(&mut client),
        [(1, Some("pen".to_string()), Some(2.0), Some(vec![0, 255])), (2, Some("ink".to_string()), Some(3.0), None)]
    );
    let types: Vec<(String, String)> = client
        .query(
            "SELECT column_name::text, data_type::text FROM information_schema.columns WHERE table_name = 'CounterSql.items' ORDER BY ordinal_position",
            &[],
        )
        .unwrap()
        .iter()
        .map(|r| (r.get(0), r.get(1)))
        .collect();
    let types: Vec<(&str, &str)> = types.iter().map(|(c, t)| (c.as_str(), t.as_str())).collect();
    assert_eq!(
        types,
        [
            ("do_id", "bigint"),
            ("_row_key", "text"),
            ("_pull_gen", "bigint"),
            ("id", "bigint"),
            ("name", "text"),
            ("price", "double precision"),
            ("photo", "bytea")
        ]
    );
    let schema: i64 =
        client.query_one("SELECT jsonb_array_length(statements)::bigint FROM sql_schemas WHERE table_name = 'items'", &[]).unwrap().get(0);
    assert!(schema >= 1);

    // A value of another type than its column's (SQLite allows it) turns the column into jsonb,
    // each value in the wire's form; a deleted row leaves.
    sql("INSERT INTO items VALUES (4, 'gift', 'free', x'01'); DELETE FROM items WHERE id = 2");
    let prices = |client: &mut postgres::Client| -> Vec<(i64, Option<String>)> {
        let rows = client.query(r#"SELECT id, price::text FROM "CounterSql.items" ORDER BY id"#, &[]).unwrap_or_default();
        rows.iter().map(|r| (r.get(0), r.get(1))).collect()
    };
    for _ in 0..50 {
        pull_both_until_equal(&worker, &file, &url, &history, &named, 9, "a value of another type");
        if prices(&mut client).len() == 2 && prices(&mut client)[1].0 == 4 {
            break;
        }
    }
    // The REAL already there keeps its fraction (`to_jsonb` would have made it the INTEGER 2).
    assert_eq!(prices(&mut client), [(1, Some("2.0".to_string())), (4, Some(r#""free""#.to_string()))]);

    // A new database pulled without --history takes PostgreSQL's bulk path (COPY) for every
    // object's first download: the same keys, and the same SQL rows and column types, for a
    // table whose columns each hold one type as for one whose column holds several.
    sql("CREATE TABLE kinds (id INTEGER PRIMARY KEY, r REAL, t TEXT, b BLOB, i INTEGER);
         INSERT INTO kinds VALUES (1, -0.5, 'é\t\\', x'00', NULL), (2, NULL, '', NULL, -9007199254740993), (3, 1e300, NULL, x'ff00', 0)");
    for _ in 0..50 {
        pull_both_until_equal(&worker, &file, &url, &history, &named, 9, "a table of every type");
        if client.query_one(r#"SELECT to_regclass('"CounterSql.kinds"') IS NOT NULL"#, &[]).unwrap().get::<_, bool>(0) {
            break;
        }
    }
    let copied_url = server.create_database("scenario_copied");
    let run = worker.pull_with(Path::new(&copied_url), TOKEN, &[]);
    assert_eq!(run.code, Some(0), "{}", run.stderr);
    assert!(same_values(&read_pg(&copied_url), &read_pg(&url)), "the keys by COPY");
    let mut copied = server.client("scenario_copied");
    // Numbers compared exactly: a REAL already in a column that later became jsonb keeps its
    // point, as in a column made jsonb at once.
    let table = |client: &mut postgres::Client, name: &str| -> (Vec<serde_json::Value>, Vec<String>) {
        let rows = client
            .query(
                &format!(
                    r#"SELECT (to_jsonb(whole_row) - 'do_id' - '_pull_gen')::text FROM "CounterSql.{name}" whole_row ORDER BY _row_key"#
                ),
                &[],
            )
            .unwrap();
        let types = client
            .query(
                "SELECT column_name || ' ' || data_type FROM information_schema.columns WHERE table_name = $1 ORDER BY column_name",
                &[&format!("CounterSql.{name}")],
            )
            .unwrap();
        let rows = rows.iter().map(|r| serde_json::from_str(r.get::<_, &str>(0)).unwrap()).collect();
        (rows, types.iter().map(|r| r.get(0)).collect())
    };
    for name in ["items", "kinds"] {
        assert_eq!(table(&mut copied, name), table(&mut client, name), "the SQL rows of {name} by COPY");
    }
    assert_eq!(table(&mut copied, "kinds").0.len(), 3);

    // --history kept the same events in both.
    for query in [
        "SELECT count(*) FROM kv_history",
        "SELECT count(*) FROM kv_history WHERE deleted",
        "SELECT count(*) FROM sql_history",
        "SELECT count(*) FROM sql_history WHERE deleted",
    ] {
        let (pg, sqlite) = counts(&url, &file, query);
        assert_eq!(pg, sqlite, "{query}");
        assert!(pg > 0, "{query}");
    }
    // An idle pull downloads nothing.
    let idle = worker.pull_with(Path::new(&url), TOKEN, &history);
    assert_eq!((idle.code, idle.objects_pulled()), (Some(0), 0), "{}", idle.stderr);
    // The summary and the logs name the database without its password.
    let secret_url = url.replace("durafetch@", "durafetch:not-the-password@");
    let run = worker.pull_with(Path::new(&secret_url), TOKEN, &[]);
    assert_eq!(run.code, Some(0), "{}", run.stderr);
    let printed = format!("{}{:?}", run.stderr, run.summary);
    assert!(!printed.contains("not-the-password") && printed.contains("***"), "{printed}");
}

/// The bulk path of a first download (COPY) meets a key it wrote already, as a snapshot that
/// sends a key twice would: the page goes the upsert's way, and the key holds its last value.
#[test]
fn a_first_download_that_repeats_a_key_keeps_its_last_value() {
    use durafetch_pull::sink::database::{Database, Part};
    use durafetch_pull::sink::open;
    use durafetch_sdk::core::cursor::Cursor;
    use durafetch_sdk::core::protocol::{Change, ChangeValue, ExportMode, IndexEntry, SqlPage, SqlRow, SqlValue};
    let server = PostgresServer::start();
    let url = server.create_database("repeated");
    let mut sink = open(&Database::Postgres(url.clone()), false, Part::WHOLE).unwrap();
    let head = Cursor::new(1, 1);
    let entry = IndexEntry { class: "CounterSql".into(), id: "ab".repeat(32), name: Some("twice".into()), head, rev: 1, changed_at: 0 };
    sink.record_index_page("ws://test", "durafetch-example", &[entry]).unwrap();
    let do_id = sink.targets("ws://test", "", false).unwrap()[0].do_id;
    let id = sink.begin(do_id, ExportMode::Snapshot, Cursor::new(1, 0), "", false).unwrap();
    let change = |key: &str, value: serde_json::Value| Change { key: key.into(), value: ChangeValue::Json(value) };
    sink.apply(id, &[change("a", json!(1)), change("b", json!(1))]).unwrap();
    sink.apply(id, &[change("b", json!(2)), change("c", json!(2))]).unwrap();
    let row = |k: &str, v: i64| SqlRow { k: k.into(), v: Some(vec![SqlValue::Integer(v)]) };
    let page = |rows: Vec<SqlRow>| SqlPage { table: "t".into(), columns: vec!["v".into()], rows };
    sink.apply_sql(id, &page(vec![row("1", 1), row("2", 1)])).unwrap();
    sink.apply_sql(id, &page(vec![row("2", 2), row("3", 2)])).unwrap();
    sink.finish(id, head, 0).unwrap();
    drop(sink);
    let keys = read_pg(&url).remove(&("CounterSql".to_string(), "twice".to_string())).unwrap();
    assert_eq!(keys, [("a", "1"), ("b", "2"), ("c", "2")].map(|(k, v)| (k.to_string(), v.to_string())).into());
    let rows: Vec<(String, i64)> = server
        .client("repeated")
        .query(r#"SELECT _row_key, v FROM "CounterSql.t" ORDER BY _row_key"#, &[])
        .unwrap()
        .iter()
        .map(|r| (r.get(0), r.get(1)))
        .collect();
    assert_eq!(rows, [("1".to_string(), 1), ("2".to_string(), 2), ("3".to_string(), 2)]);
}

/// Waits until the puller has written some of `name`'s rows but not its cursor. Answers false if
/// the pull finished first.
fn wait_mid_pull(url: &str, name: &str, child: &mut Child) -> bool {
    let mut client = postgres::Client::connect(url, postgres::NoTls).unwrap();
    let deadline = Instant::now() + Duration::from_secs(60);
    while Instant::now() < deadline {
        if child.try_wait().unwrap().is_some() {
            return false;
        }
        let rows = client.query_opt(
            "SELECT count(*), bool_or(o.local_max_log_id IS NOT NULL) FROM kv JOIN durable_objects o USING (do_id) WHERE o.name = $1",
            &[&name],
        );
        if let Ok(Some(row)) = rows {
            if row.get::<_, i64>(0) > 0 {
                return true;
            }
        }
        std::thread::sleep(Duration::from_millis(5));
    }
    panic!("the pull never started");
}

#[test]
fn a_puller_killed_mid_pull_leaves_a_database_the_next_run_completes() {
    let worker = LocalWorker::start(Some(TOKEN));
    worker.post("sql/big/bench", r#"{"kind": "batched", "keys": 60000, "value_bytes": 100}"#);
    let expected: durafetch_e2e::Pulled = [(("CounterSql".to_string(), "big".to_string()), worker.object_state("sql", "big"))].into();
    let server = PostgresServer::start();
    let mut killed_mid_pull = false;
    let mut url = String::new();
    for attempt in 0..5 {
        url = server.create_database(&format!("killed_{attempt}"));
        let mut child = worker.puller(Path::new(&url), TOKEN, &["--quiet"]).spawn().unwrap();
        if wait_mid_pull(&url, "big", &mut child) {
            child.kill().unwrap(); // SIGKILL
            child.wait().unwrap();
            let mut client = server.client(&format!("killed_{attempt}"));
            let saved: bool =
                client.query_one("SELECT local_max_log_id IS NOT NULL FROM durable_objects WHERE name = 'big'", &[]).unwrap().get(0);
            if !saved {
                killed_mid_pull = true;
                break;
            }
        }
        let _ = child.wait();
    }
    assert!(killed_mid_pull, "every pull finished before it could be killed");
    let partial = read_pg(&url).values().next().map_or(0, |keys| keys.len());
    println!("killed with {partial} of 60,000 keys in the database");
    assert!(partial < 60_000);

    let run = worker.pull_with(Path::new(&url), TOKEN, &[]);
    assert_eq!(run.code, Some(0), "{}", run.stderr);
    assert!(same_values(&read_pg(&url), &expected), "the rerun completes the database");
    let idle = worker.pull_with(Path::new(&url), TOKEN, &[]);
    assert_eq!(idle.objects_pulled(), 0, "the cursor was saved with the last rows");
}

/// Runs four pullers at once, `--shard i/4`, into `url`; answers their runs.
fn four_pullers(worker: &LocalWorker, url: &str) -> Vec<PullRun> {
    let children: Vec<Child> =
        (1..=4).map(|i| spawn_piped(worker.puller(Path::new(url), TOKEN, &["--shard", &format!("{i}/4"), "--concurrency", "4"]))).collect();
    children
        .into_iter()
        .map(|child| {
            let out = finish_within(child, PULL_LIMIT, "a sharded durafetch-pull");
            let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
            PullRun {
                code: out.status.code(),
                summary: stdout.lines().rev().find_map(|l| serde_json::from_str(l).ok()),
                stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
            }
        })
        .collect()
}

#[test]
fn four_sharded_pullers_cover_every_object_exactly_once() {
    let worker = LocalWorker::start(Some(TOKEN));
    let names: Vec<String> = (0..200).map(|i| format!("part-{i:03}")).collect();
    let write_all = |round: u32| {
        std::thread::scope(|scope| {
            for client in 0..8 {
                let (names, worker) = (&names, &worker);
                scope.spawn(move || {
                    for name in names.iter().skip(client).step_by(8) {
                        worker.post(&format!("kv/{name}/put_multiple_raw"), &format!(r#"{{"round":{round},"name":"{name}"}}"#));
                    }
                });
            }
        });
    };
    write_all(1);
    std::thread::sleep(Duration::from_secs(2));
    let server = PostgresServer::start();
    let url = server.create_database("sharded");
    let expected = |round: u32| -> durafetch_e2e::Pulled {
        names
            .iter()
            .map(|name| {
                let keys = [("name".to_string(), format!("\"{name}\"")), ("round".to_string(), round.to_string())].into();
                (("CounterKv".to_string(), name.clone()), keys)
            })
            .collect()
    };

    // The first round of four pullers: each took a quarter or so, and together every object once.
    let mut pulled = 0;
    for _ in 0..10 {
        let runs = four_pullers(&worker, &url);
        for run in &runs {
            assert_eq!(run.code, Some(0), "{}", run.stderr);
        }
        let counts: Vec<u64> = runs.iter().map(PullRun::objects_pulled).collect();
        pulled += counts.iter().sum::<u64>();
        if pulled == 200 {
            assert!(counts.iter().all(|&c| (20..=80).contains(&c)), "uneven parts: {counts:?}");
        }
        if same_values(&read_pg(&url), &expected(1)) {
            break;
        }
        std::thread::sleep(Duration::from_millis(200));
    }
    assert!(same_values(&read_pg(&url), &expected(1)), "the parts' union is every object: {:?}", read_pg(&url).len());
    assert_eq!(pulled, 200, "each object was downloaded by exactly one puller");
    let mut client = server.client("sharded");
    let objects: i64 = client.query_one("SELECT count(*) FROM durable_objects", &[]).unwrap().get(0);
    assert_eq!(objects, 200);
    let parts: Vec<String> =
        client.query("SELECT DISTINCT part FROM durafetch_servers ORDER BY part", &[]).unwrap().iter().map(|r| r.get(0)).collect();
    assert_eq!(parts, ["1/4", "2/4", "3/4", "4/4"], "each part keeps its own place in the index");

    // A second round of writes to every object, pulled by four pullers again: changes only.
    write_all(2);
    let mut snapshots = 0;
    for _ in 0..20 {
        std::thread::sleep(Duration::from_millis(200));
        let runs = four_pullers(&worker, &url);
        snapshots += runs.iter().map(PullRun::snapshots).sum::<u64>();
        if same_values(&read_pg(&url), &expected(2)) {
            break;
        }
    }
    assert!(same_values(&read_pg(&url), &expected(2)), "the second round");
    assert_eq!(snapshots, 0, "changes after a pull are read incrementally");

    // A shard of a file is refused: one file has one writer.
    let dir = tempfile::tempdir().unwrap();
    let refused = worker.pull_with(&dir.path().join("x.sqlite"), TOKEN, &["--shard", "1/2"]);
    assert_eq!(refused.code, Some(2), "{}", refused.stderr);
    assert!(refused.stderr.contains("PostgreSQL"), "{}", refused.stderr);
}

/// PostgreSQL's text cannot hold U+0000: an object with such a key fails, named as the user
/// named it, and the other objects are pulled all the same.
#[test]
fn an_object_postgresql_cannot_hold_fails_by_its_name() {
    let worker = LocalWorker::start(Some(TOKEN));
    worker.post("kv/with-a-nul/put_multiple_raw", r#"{"a\u0000b": 1}"#);
    worker.post("kv/plain/put?key=k", "1");
    let server = PostgresServer::start();
    let url = server.create_database("nul");
    let run = worker.pull_with(Path::new(&url), TOKEN, &[]);
    assert_eq!(run.code, Some(1), "{}", run.stderr);
    let summary = run.summary.as_ref().unwrap();
    let failed = summary["failed"].as_array().unwrap();
    assert_eq!(failed.len(), 1, "{summary}");
    assert!(failed[0].as_str().unwrap().starts_with("CounterKv name \"with-a-nul\" (id "), "{summary}");
    assert_eq!(read_pg(&url).get(&("CounterKv".to_string(), "plain".to_string())).map(|keys| keys.len()), Some(1));
}

/// The rows of the object `name`'s table `table` in the database at `url`, each a JSON object of
/// its local columns (durafetch's own left out), in key order.
fn pg_sql_rows(url: &str, name: &str, table: &str) -> Vec<serde_json::Value> {
    let mut client = postgres::Client::connect(url, postgres::NoTls).unwrap();
    let local: String = client.query_one("SELECT local_table FROM sql_tables WHERE table_name = $1", &[&table]).unwrap().get(0);
    let query = format!(
        "SELECT (to_jsonb(t) - 'do_id' - '_row_key' - '_pull_gen')::text FROM \"{}\" t JOIN durable_objects o USING (do_id)
         WHERE o.name = $1 ORDER BY t._row_key",
        local.replace('"', "\"\"")
    );
    client.query(&query, &[&name]).unwrap().iter().map(|r| serde_json::from_str(r.get::<_, &str>(0)).unwrap()).collect()
}

/// PostgreSQL keeps 63 bytes of a name: a column of 200 bytes, and two that share their first 63,
/// each land in a column of its own that the next pulls find again, and every name the sink made
/// fits.
#[test]
fn column_names_longer_than_postgresql_keeps_are_pulled_again_and_again() {
    let worker = LocalWorker::start(Some(TOKEN));
    let long = "c".repeat(200);
    let (a, b) = (format!("{}_a", "s".repeat(63)), format!("{}_b", "s".repeat(63)));
    worker.sql(
        "long-names",
        &format!(
            r#"CREATE TABLE t (id INTEGER PRIMARY KEY, "{long}" TEXT, "{a}" INTEGER, "{b}" INTEGER); INSERT INTO t VALUES (1, 'x', 10, 20)"#
        ),
    );
    let server = PostgresServer::start();
    let url = server.create_database("long_names");
    let values = |url: &str| -> Vec<Vec<serde_json::Value>> {
        pg_sql_rows(url, "long-names", "t")
            .into_iter()
            .map(|row| {
                let mut values: Vec<serde_json::Value> = row.as_object().unwrap().values().cloned().collect();
                // Each row's values in one order, whatever the columns' names became.
                values.sort_by_key(|v| v.to_string());
                values
            })
            .collect()
    };
    let run = worker.pull_with(Path::new(&url), TOKEN, &[]);
    assert_eq!(run.code, Some(0), "{}", run.stderr);
    assert_eq!(values(&url), vec![vec![json!("x"), json!(1), json!(10), json!(20)]]);
    // The object writes again: the next pulls find the same columns.
    for round in 0..2 {
        worker.sql("long-names", &format!(r#"UPDATE t SET "{b}" = "{b}" + 1; INSERT INTO t VALUES ({}, 'y', 30, 40)"#, round + 2));
        let run = worker.pull_with(Path::new(&url), TOKEN, &[]);
        assert_eq!(run.code, Some(0), "round {round}: {}", run.stderr);
    }
    assert_eq!(
        values(&url),
        vec![
            vec![json!("x"), json!(1), json!(10), json!(22)],
            vec![json!("y"), json!(2), json!(30), json!(41)],
            vec![json!("y"), json!(3), json!(30), json!(40)],
        ]
    );
    let mut client = postgres::Client::connect(&url, postgres::NoTls).unwrap();
    let names: Vec<String> = client
        .query(
            "SELECT table_name::text FROM information_schema.tables WHERE table_schema = current_schema()
             UNION SELECT column_name::text FROM information_schema.columns WHERE table_schema = current_schema()
             UNION SELECT indexname::text FROM pg_indexes WHERE schemaname = current_schema()",
            &[],
        )
        .unwrap()
        .iter()
        .map(|r| r.get(0))
        .collect();
    let source_columns = names.iter().filter(|n| n.starts_with("ccc") || n.starts_with("sss")).count();
    assert_eq!(source_columns, 3, "{names:?}");
    assert!(names.iter().all(|n| n.len() <= 63), "{names:?}");
}

/// TLS as libpq's users set it, against a server that takes TCP connections over TLS only:
/// `verify-full` with the server's CA pulls, as do `require`, `verify-ca` by an address the
/// certificate does not name, the default and `PGSSLMODE`; an untrusted certificate, a wrong host
/// name, plain text and settings libpq refuses too are refused, each saying what to change, and
/// nothing is written. Against a server whose rules refuse TLS, the default pulls in plain text.
#[test]
fn postgresql_over_tls_as_sslmode_says() {
    let worker = LocalWorker::start(Some(TOKEN));
    worker.post("kv/over-tls/put?key=k", "1");
    let ca = TestCa::new();
    let server = PostgresServer::start_tls_only(&ca);
    let dir = tempfile::tempdir().unwrap();
    let ca_file = dir.path().join("ca.pem");
    std::fs::write(&ca_file, &ca.ca_pem).unwrap();
    let ca_file = ca_file.to_str().unwrap();
    let pull = |db: &str, host: &str, query: &str, env: &[(&str, &str)]| {
        server.create_database(db);
        let url = format!("postgres://durafetch@{host}:{}/{db}{query}", server.port);
        let mut cmd = worker.puller(Path::new(&url), TOKEN, &[]);
        cmd.env_remove("PGSSLMODE").env_remove("PGSSLROOTCERT");
        for (name, value) in env {
            cmd.env(name, value);
        }
        let out = finish_within(spawn_piped(cmd), PULL_LIMIT, "durafetch-pull");
        let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
        let mut client = server.client(db);
        let made: bool = client.query_one("SELECT to_regclass('kv') IS NOT NULL", &[]).unwrap().get(0);
        let keys: i64 = if made { client.query_one("SELECT count(*) FROM kv", &[]).unwrap().get(0) } else { -1 };
        (out.status.code(), keys, stderr)
    };
    let pulled = |(code, keys, stderr): (Option<i32>, i64, String), what: &str| {
        assert_eq!((code, keys), (Some(0), 1), "{what}: {stderr}");
    };
    pulled(pull("verified", "localhost", &format!("?sslmode=verify-full&sslrootcert={ca_file}"), &[]), "verify-full");
    pulled(pull("required", "127.0.0.1", "?sslmode=require", &[]), "require");
    pulled(pull("chain", "127.0.0.1", &format!("?sslmode=verify-ca&sslrootcert={ca_file}"), &[]), "verify-ca by address");
    pulled(pull("by_default", "127.0.0.1", "", &[]), "no sslmode (prefer)");
    pulled(pull("by_env", "localhost", "", &[("PGSSLMODE", "verify-full"), ("PGSSLROOTCERT", ca_file)]), "PGSSLMODE");

    let refused = |(code, keys, stderr): (Option<i32>, i64, String), says: &[&str], what: &str| {
        assert_eq!(code, Some(1), "{what}: {stderr}");
        assert_eq!(keys, -1, "{what}: nothing is written, not even the tables");
        for text in says {
            assert!(stderr.contains(text), "{what}: {text:?} missing from {stderr}");
        }
    };
    refused(
        pull("untrusted", "localhost", "?sslmode=verify-full", &[]),
        &["the certificate of the PostgreSQL server localhost is refused", "signed by an authority", "sslrootcert="],
        "an untrusted certificate",
    );
    refused(
        pull("wrong_name", "127.0.0.1", &format!("?sslmode=verify-full&sslrootcert={ca_file}"), &[]),
        &["not valid for the name 127.0.0.1", "sslmode=verify-ca"],
        "a name the certificate does not hold",
    );
    refused(pull("plain", "127.0.0.1", "?sslmode=disable", &[]), &["no encryption", "leave out sslmode=disable"], "plain text");
    for (db, query, says) in [
        ("bad_mode", "?sslmode=verify", "sslmode=verify is not one of"),
        ("ca_without_root", "?sslmode=verify-ca", "needs the server's own CA"),
        ("system_not_full", "?sslmode=require&sslrootcert=system", "takes sslmode=verify-full"),
    ] {
        let (code, keys, stderr) = pull(db, "localhost", query, &[]);
        assert_eq!((code, keys), (Some(2), -1), "{query}: {stderr}");
        assert!(stderr.contains(says), "{query}: {stderr}");
    }

    // A server whose rules refuse TLS: libpq's default falls back to plain text, `require` not.
    let refusing = PostgresServer::start_tls_refused(&ca);
    for (query, code) in [("", Some(0)), ("?sslmode=require", Some(1))] {
        refusing.client("postgres").batch_execute("DROP DATABASE IF EXISTS fallback").unwrap();
        refusing.client("postgres").batch_execute("CREATE DATABASE fallback").unwrap();
        let url = format!("postgres://durafetch@127.0.0.1:{}/fallback{query}", refusing.port);
        let run = worker.pull_with(Path::new(&url), TOKEN, &[]);
        assert_eq!(run.code, code, "{query}: {}", run.stderr);
    }
}

/// Watchers, which never end by themselves: killed when dropped, so a failing test leaves none.
struct Watchers(Vec<Child>);

impl Drop for Watchers {
    fn drop(&mut self) {
        for watcher in &mut self.0 {
            if let Ok(None) = watcher.try_wait() {
                let _ = watcher.kill();
                let _ = watcher.wait();
            }
        }
    }
}

/// Runs `durafetch-pull reshard` on `url`; answers its exit code and its output.
fn reshard(url: &str, parts: u32) -> (Option<i32>, String) {
    let mut cmd = std::process::Command::new(durafetch_e2e::puller_binary());
    cmd.args(["reshard", "--db", url, "--parts", &parts.to_string()]);
    let out = finish_within(spawn_piped(cmd), PULL_LIMIT, "durafetch-pull reshard");
    (out.status.code(), format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr)))
}

/// Two watchers `--shard 1/2` keep the database current; a puller of another split (`1/4`)
/// started beside them is refused, as is a reshard while they run; once they stop, one command
/// reshards to 4 and four pullers hold every object exactly once, at its last value.
#[test]
fn two_sharded_watchers_keep_the_database_current() {
    let worker = LocalWorker::start(Some(TOKEN));
    let server = PostgresServer::start();
    let url = server.create_database("watched");
    let names: Vec<String> = (0..20).map(|i| format!("watched-{i:02}")).collect();
    let write_all = |value: &str| {
        for name in &names {
            worker.post(&format!("kv/{name}/put?key=k"), value);
        }
    };
    let all_hold = |value: &str| {
        // The watchers make the tables when they start.
        let mut client = postgres::Client::connect(&url, postgres::NoTls).unwrap();
        let made: bool = client.query_one("SELECT to_regclass('kv') IS NOT NULL", &[]).unwrap().get(0);
        if !made {
            return false;
        }
        let copy = read_pg(&url);
        copy.len() == names.len() && copy.values().all(|keys| keys.get("k").map(String::as_str) == Some(value))
    };
    let wait_for = |value: &str, what: &str| {
        let deadline = Instant::now() + Duration::from_secs(60);
        while !all_hold(value) {
            assert!(Instant::now() < deadline, "{what}: the watchers never caught up: {:?}", read_pg(&url));
            std::thread::sleep(Duration::from_millis(50));
        }
    };
    write_all("1");
    let mut watchers = Watchers(
        (1..=2)
            .map(|i| {
                worker
                    .puller(Path::new(&url), TOKEN, &["--shard", &format!("{i}/2"), "--watch", "--quiet"])
                    .stdout(std::process::Stdio::null())
                    .stderr(std::process::Stdio::null())
                    .spawn()
                    .unwrap()
            })
            .collect(),
    );
    wait_for("1", "the initial sync");
    // Writes after the initial sync reach the database through whichever watcher owns the object.
    write_all("2");
    wait_for("2", "the writes after the initial sync");
    // While they write, a puller of the same part, or of the whole database, is refused, where
    // the two would deadlock on the same rows; at once, although a reader holds a transaction
    // open on the pullers' tables.
    let mut reader = server.client("watched");
    let mut reading = reader.transaction().unwrap();
    reading.query("SELECT count(*) FROM sql_schemas", &[]).unwrap();
    for flags in [&["--shard", "1/2"][..], &[]] {
        let refused = worker.pull_with(Path::new(&url), TOKEN, flags);
        assert_eq!(refused.code, Some(2), "{flags:?}: {}", refused.stderr);
        assert!(refused.stderr.contains("another durafetch-pull is writing into this PostgreSQL database"), "{}", refused.stderr);
    }
    // A part of another split would own objects a running part owns too: refused, saying how
    // to change the split; and the split cannot change under the running parts.
    let other_split = worker.pull_with(Path::new(&url), TOKEN, &["--shard", "1/4"]);
    assert_eq!(other_split.code, Some(2), "{}", other_split.stderr);
    assert!(
        other_split.stderr.contains("split into 2 parts, and this puller is part 1/4")
            && other_split.stderr.contains("durafetch-pull reshard --db <the same URL> --parts 4"),
        "{}",
        other_split.stderr
    );
    let (code, said) = reshard(&url, 4);
    assert_eq!(code, Some(2), "{said}");
    assert!(said.contains("another durafetch-pull is writing into this PostgreSQL database"), "{said}");
    write_all("3");
    wait_for("3", "the writes while another split was refused");
    for watcher in &mut watchers.0 {
        assert!(watcher.try_wait().unwrap().is_none(), "a watcher exited early");
        let _ = std::process::Command::new("kill").args(["-INT", &watcher.id().to_string()]).status();
        let status = watcher.wait().unwrap();
        assert!(status.success(), "a watcher ended with {status}");
    }
    let mut client = server.client("watched");
    let parts: Vec<String> =
        client.query("SELECT DISTINCT part FROM durafetch_servers ORDER BY part", &[]).unwrap().iter().map(|r| r.get(0)).collect();
    assert_eq!(parts, ["1/2", "2/2"]);
    // Their locks went with them, and the reader's transaction holds up no puller.
    let after = worker.pull_with(Path::new(&url), TOKEN, &[]);
    assert_eq!(after.code, Some(0), "{}", after.stderr);
    reading.rollback().unwrap();
    // A database made by a release before a column was added gets the column.
    client.batch_execute("ALTER TABLE sql_schemas DROP COLUMN autoincrement_counter").unwrap();
    let upgraded = worker.pull_with(Path::new(&url), TOKEN, &[]);
    assert_eq!(upgraded.code, Some(0), "{}", upgraded.stderr);
    let added: i64 = client
        .query_one(
            "SELECT count(*) FROM information_schema.columns WHERE table_name = 'sql_schemas' AND column_name = 'autoincrement_counter'",
            &[],
        )
        .unwrap()
        .get(0);
    assert_eq!(added, 1);

    // The reshard, once nothing runs: four parts from then on, two refused.
    let (code, said) = reshard(&url, 4);
    assert_eq!(code, Some(0), "{said}");
    assert!(said.contains("is split into 4 parts (was 2)"), "{said}");
    write_all("4");
    std::thread::sleep(Duration::from_secs(1));
    let mut pulled = 0;
    for _ in 0..10 {
        let runs = four_pullers(&worker, &url);
        for run in &runs {
            assert_eq!(run.code, Some(0), "{}", run.stderr);
        }
        pulled += runs.iter().map(PullRun::objects_pulled).sum::<u64>();
        if all_hold("4") {
            break;
        }
        std::thread::sleep(Duration::from_millis(200));
    }
    assert!(all_hold("4"), "every object at its last value: {:?}", read_pg(&url));
    assert_eq!(pulled, names.len() as u64, "each object downloaded by exactly one of the four");
    let objects: i64 = client.query_one("SELECT count(*) FROM durable_objects", &[]).unwrap().get(0);
    assert_eq!(objects, names.len() as i64);
    let old_split = worker.pull_with(Path::new(&url), TOKEN, &["--shard", "2/2"]);
    assert_eq!(old_split.code, Some(2), "{}", old_split.stderr);
    assert!(old_split.stderr.contains("split into 4 parts, and this puller is part 2/2"), "{}", old_split.stderr);
}

/// A backup in PostgreSQL restores as the file pulled beside it does: every key kind and SQL
/// table (mixed-type columns, a 200-byte column name, a generated column, a WITHOUT ROWID key,
/// an infinite REAL) restored from PostgreSQL into another worker pulls back as the file holds
/// it, but for a JSON object's key order, which `jsonb` does not keep (README); a dry run then
/// finds nothing to change; and `--at` from PostgreSQL gives what `--at` from the file gives.
#[test]
fn a_postgresql_backup_restores_as_the_file_pulled_beside_it() {
    use durafetch_e2e::{named_contents, restore_into};
    let source = LocalWorker::start(Some(TOKEN));
    let target = source.start_beside_restorable("durafetch-restored");
    let server = PostgresServer::start();
    // A collation that orders text otherwise than by bytes ('a' before 'B'), as most servers'
    // do: the restore still reads keys in the bytes' order that an object takes them in.
    server
        .client("postgres")
        .batch_execute("CREATE DATABASE restore_source TEMPLATE template0 LOCALE_PROVIDER icu ICU_LOCALE 'en-US' LOCALE 'C'")
        .unwrap();
    let url = server.url("restore_source");
    let dir = tempfile::tempdir().unwrap();
    let (file, copy) = (dir.path().join("backup.sqlite"), dir.path().join("copy.sqlite"));
    let long = "c".repeat(200);
    for i in 0..3 {
        source.post(
            &format!("kv/kv-{i}/put_multiple_raw"),
            &json!({"a": i, "b": format!("text {i}"), "c": [1.5, null, {"x": true}]}).to_string(),
        );
        source.post(&format!("kv/kv-{i}/put_raw?key=bytes"), "\u{0}\u{1}binary");
        source.post(&format!("kv/kv-{i}/put_multiple_raw"), r#"{"unordered": {"zz": 1, "a": 2}}"#);
        source.sql(
            &format!("sql-{i}"),
            &format!(
                "CREATE TABLE items (id INTEGER PRIMARY KEY, name TEXT NOT NULL, qty REAL, data BLOB, twice INTEGER AS (id * 2));
                 CREATE INDEX items_by_name ON items (name);
                 CREATE TABLE notes (body, {long} TEXT);
                 CREATE TABLE pairs (a TEXT, b INTEGER, v, PRIMARY KEY (a, b)) WITHOUT ROWID;
                 INSERT INTO items (id, name, qty, data) VALUES (1, 'apple', 3.0, x'00ff'), (2, 'pear', 1e308 * 10, NULL),
                     ({i} + 10, 'quote''s', -0.5, x'');
                 INSERT INTO notes VALUES ('first', 'long'), (x'0102', NULL), (7, 'seven'), (2.5, NULL);
                 INSERT INTO pairs VALUES ('x', 1, 'one'), ('x', 2, 2.5), ('😀', -1, NULL), ('y', 0, x'ff');"
            ),
        );
    }
    for kind in ["struct", "map", "mix", "sparse"] {
        source.post(&format!("kv/kv-0/put_typed?key=typed-{kind}"), kind);
    }
    source.post("kv/kv-0/put_multiple_raw", r#"{"B": 1, "a": 2, "Z": 3, "_x": 4, "é": 5}"#);
    // REALs in a column PostgreSQL types `double precision`, until a later pull brings a TEXT
    // into it and the column becomes `jsonb`: each REAL must still restore as the REAL it was.
    // And a column whose values are all NULL, which PostgreSQL's table never gets: restored NULL,
    // not its default.
    source.sql(
        "sql-2",
        "CREATE TABLE widened (id INTEGER PRIMARY KEY, r);
         INSERT INTO widened VALUES (1, 2.0), (2, 1e308 * 10), (3, -1e308 * 10), (4, 0.1), (5, 1e21), (6, 123456789.125), (7, 5e-324), (9, 1e16), (10, 1e19);
         CREATE TABLE sparse (id INTEGER PRIMARY KEY, never TEXT DEFAULT 'a default');
         INSERT INTO sparse VALUES (1, NULL), (2, NULL);",
    );
    // Several pages of keys and of rows, read from PostgreSQL a page at a time.
    for chunk in 0..3 {
        let entries: serde_json::Map<String, serde_json::Value> =
            (chunk * 1000..(chunk + 1) * 1000).map(|i| (format!("k{i:04}"), json!(i))).collect();
        source.post("kv/kv-big/put_multiple_raw", &serde_json::Value::Object(entries).to_string());
    }
    source.sql(
        "sql-0",
        "CREATE TABLE many (id INTEGER PRIMARY KEY, v);
         WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < 2500) INSERT INTO many SELECT i, i * 1.5 FROM n;",
    );
    let pull_both = || {
        for db in [file.as_path(), Path::new(&url)] {
            let run = source.pull_with(db, TOKEN, &["--history"]);
            assert_eq!(run.code, Some(0), "{}", run.stderr);
        }
    };
    pull_both();
    std::thread::sleep(Duration::from_millis(20));
    let moment = time::OffsetDateTime::now_utc().format(&time::format_description::well_known::Rfc3339).unwrap();
    std::thread::sleep(Duration::from_millis(20));
    source.post("kv/kv-1/put?key=a", r#""later""#);
    source.sql("sql-1", "DELETE FROM items WHERE id = 1; UPDATE pairs SET v = 'later' WHERE a = 'x' AND b = 1;");
    source.sql("sql-2", "INSERT INTO widened VALUES (8, 'text')");
    pull_both();

    let run = restore_into(&target, Path::new(&url), &[]);
    assert_eq!((run.code, run.count("restored"), run.count("failed")), (Some(0), 7, 0), "{:?} {}", run.objects, run.stderr);
    target.pull_settled(&copy);
    let got = named_contents(&copy);
    assert_same_but_key_order(&got, &named_contents(&file));
    assert!(got.iter().any(|l| l.contains(r#"| unordered | json | '{"a":2,"zz":1}'"#)), "jsonb's order");

    let dry = restore_into(&target, Path::new(&url), &["--dry-run", "--mode", "replace"]);
    assert_eq!(dry.code, Some(0), "{}", dry.stderr);
    let would: Vec<u64> = ["keys_added", "keys_changed", "keys_deleted", "rows_added", "rows_changed", "rows_deleted"]
        .iter()
        .map(|field| dry.summary["would"][field].as_u64().unwrap_or_else(|| panic!("{}", dry.summary)))
        .collect();
    assert_eq!(would, [0; 6], "a dry run against what the same backup restored: {:?}", dry.objects);

    let at_moment = |db: &Path| {
        let run = restore_into(&target, db, &["--mode", "replace", "--no-undo", "--at", &moment]);
        assert_eq!(run.code, Some(0), "{:?} {}", run.objects, run.stderr);
        target.pull_settled(&copy);
        named_contents(&copy)
    };
    let (from_file, from_postgres) = (at_moment(&file), at_moment(Path::new(&url)));
    assert!(from_file.iter().any(|l| l.starts_with("kv CounterKv | kv-1 | a | json | '1'")), "{from_file:?}");
    assert_same_but_key_order(&from_postgres, &from_file);

    // A pull rewriting a table (a column widened to jsonb) as the restore starts: the restore
    // waits for it, then reads the rewritten table whole, not as the empty table an earlier
    // snapshot would see.
    let mut rewriting = server.client("restore_source");
    let mut widening = rewriting.transaction().unwrap();
    widening.batch_execute(r#"ALTER TABLE "CounterSql.items" ALTER COLUMN "name" TYPE jsonb USING to_jsonb("name")"#).unwrap();
    std::thread::scope(|scope| {
        let restoring = scope.spawn(|| restore_into(&target, Path::new(&url), &["--mode", "replace", "--no-undo"]));
        std::thread::sleep(Duration::from_secs(2));
        widening.commit().unwrap();
        let run = restoring.join().unwrap();
        assert_eq!((run.code, run.count("failed")), (Some(0), 0), "{:?} {}", run.objects, run.stderr);
    });
    target.pull_settled(&copy);
    assert_same_but_key_order(&named_contents(&copy), &named_contents(&file));
}

fn keys_sorted(value: serde_json::Value) -> serde_json::Value {
    match value {
        serde_json::Value::Object(map) => {
            let mut entries: Vec<(String, serde_json::Value)> = map.into_iter().map(|(k, v)| (k, keys_sorted(v))).collect();
            entries.sort_by(|a, b| a.0.cmp(&b.0));
            serde_json::Value::Object(entries.into_iter().collect())
        }
        serde_json::Value::Array(items) => serde_json::Value::Array(items.into_iter().map(keys_sorted).collect()),
        other => other,
    }
}

/// `got` holds the lines of `want`, but for the order of the keys of each JS object in a key's
/// value (`jsonb` keeps its own order); only the differences are shown.
fn assert_same_but_key_order(got: &std::collections::BTreeSet<String>, want: &std::collections::BTreeSet<String>) {
    // `kv <class> | <name> | <key> | <kind> | <SQL-quoted JSON> | ...`: the JSON parsed, its
    // objects' keys sorted.
    let sorted = |line: &String| -> String {
        let mut fields: Vec<String> = line.split(" | ").map(str::to_owned).collect();
        if line.starts_with("kv ") && fields.len() == 7 && fields[4].starts_with('\'') {
            let text = fields[4].trim_matches('\'').replace("''", "'");
            if let Ok(value) = serde_json::from_str::<serde_json::Value>(&text) {
                fields[4] = keys_sorted(value).to_string();
            }
        }
        fields.join(" | ")
    };
    let (got, want): (std::collections::BTreeSet<String>, std::collections::BTreeSet<String>) =
        (got.iter().map(sorted).collect(), want.iter().map(sorted).collect());
    let (missing, extra): (Vec<_>, Vec<_>) = (want.difference(&got).collect(), got.difference(&want).collect());
    assert!(missing.is_empty() && extra.is_empty(), "\nmissing: {missing:?}\nextra: {extra:?}");
}

/// A pull that must change a table's columns while another session reads the table (a restore
/// reads an object's tables in one transaction) gives up waiting after a while rather than
/// stall the table for every reader: that object fails for the run, the others are pulled, and
/// the next run, the reader gone, changes the column.
#[test]
fn a_column_change_behind_a_reader_gives_up_rather_than_stall_the_table() {
    let worker = LocalWorker::start(Some(TOKEN));
    let server = PostgresServer::start();
    let url = server.create_database("held");
    worker.sql("held", "CREATE TABLE t (id INTEGER PRIMARY KEY, v); INSERT INTO t VALUES (1, 1);");
    let first = worker.pull_with(Path::new(&url), TOKEN, &[]);
    assert_eq!(first.code, Some(0), "{}", first.stderr);

    let mut reader = server.client("held");
    let mut reading = reader.transaction().unwrap();
    reading.batch_execute(r#"LOCK TABLE "CounterSql.t" IN ACCESS SHARE MODE"#).unwrap();
    worker.sql("held", "INSERT INTO t VALUES (2, 'text');");
    worker.post("kv/beside/put?key=k", "1");
    let started = Instant::now();
    let held = worker.pull_with(Path::new(&url), TOKEN, &[]);
    let waited = started.elapsed();
    let failed = &held.summary.as_ref().unwrap()["failed"];
    assert_eq!(held.code, Some(1), "{}", held.stderr);
    let failed: Vec<&str> = failed.as_array().unwrap().iter().filter_map(|f| f.as_str()).collect();
    assert!(matches!(failed.as_slice(), [one] if one.contains("name \"held\"") && one.contains("lock timeout")), "{failed:?}");
    println!("a pull behind a reader gave up after {waited:?}");
    assert_eq!(read_pg(&url).get(&("CounterKv".to_string(), "beside".to_string())).map(|keys| keys.len()), Some(1));
    // Meanwhile the table was never held from its readers for longer than one wait.
    reading.rollback().unwrap();

    let after = worker.pull_with(Path::new(&url), TOKEN, &[]);
    assert_eq!(after.code, Some(0), "{}", after.stderr);
    assert_eq!(pg_sql_rows(&url, "held", "t"), [json!({"id": 1, "v": 1}), json!({"id": 2, "v": "text"})]);
}
