//! Restores end to end: a file pulled from one worker written back into objects (of another
//! worker, or of the same one) by `durafetch-pull restore`, then pulled again and compared with
//! the first file, value type for value type and row for row.

use std::time::Duration;

use durafetch_e2e::{
    api_socket, named_contents, puller_at, restore_into, restorer, session_outcome, LocalWorker, RestoreRun, RESTORE_TOKEN, TOKEN,
};
use serde_json::json;

/// Values of every kind, in objects of both storage backends.
/// A dry run's counts against the objects as they are: keys added, changed, deleted, then rows.
fn would(run: &RestoreRun) -> [u64; 6] {
    let would = &run.summary["would"];
    ["keys_added", "keys_changed", "keys_deleted", "rows_added", "rows_changed", "rows_deleted"]
        .map(|field| would[field].as_u64().unwrap_or_else(|| panic!("no would.{field}: {} {}", run.summary, run.stderr)))
}

fn fill(worker: &LocalWorker) {
    for i in 0..10 {
        worker.post(
            &format!("kv/kv-{i}/put_multiple_raw"),
            &json!({"a": i, "b": format!("text {i}"), "c": [1.5, null, {"x": true}]}).to_string(),
        );
        worker.post(&format!("kv/kv-{i}/put_raw?key=bytes"), "\u{0}\u{1}binary");
    }
    for kind in ["struct", "map", "mix", "sparse", "undefined_item", "null_proto", "error"] {
        worker.post(&format!("kv/kv-0/put_typed?key=typed-{kind}"), kind);
    }
    worker.post("kv/kv-0/put?key=__proto__", r#"{"not":"the prototype"}"#);
    for i in 0..14 {
        worker.post(&format!("sql/sql-{i}/put_multiple_raw"), &json!({"n": i, "big": 9007199254740993u64, "neg0": -0.0}).to_string());
    }
    for i in 0..5 {
        worker.sql(&format!("sql-{i}"),
            &format!(
                "CREATE TABLE items (id INTEGER PRIMARY KEY, name TEXT NOT NULL, qty REAL, data BLOB, big INTEGER);
                 CREATE INDEX items_by_name ON items (name);
                 CREATE TABLE notes (body);
                 CREATE TABLE pairs (a TEXT, b INTEGER, v, PRIMARY KEY (a, b)) WITHOUT ROWID;
                 INSERT INTO items VALUES (1, 'apple', 3.0, x'00ff', 9223372036854775807), (2, 'pear', 1e308 * 10, NULL, -9223372036854775808),
                     ({i} + 10, 'quote''s', -0.5, x'', 9007199254740993);
                 INSERT INTO notes VALUES ('first'), (NULL), (x'0102');
                 DELETE FROM notes WHERE body IS NULL;
                 INSERT INTO pairs VALUES ('x', 1, 'one'), ('x', 2, 2.5), ('😀', -1, NULL);"
            ),
        );
    }
    for route in ["kv", "sql"] {
        for i in 0..3 {
            worker.post(&format!("{route}/@unique/put?key=unnamed"), &i.to_string());
        }
    }
}

/// A file of 30 objects (both backends, named and unnamed, every value kind, SQL tables of
/// three key kinds) restored into another worker, which is then pulled: its file holds what the
/// first one did. Unnamed objects cannot move to another worker: they are reported skipped. A
/// dry run first says what the restore writes, and writes nothing; `empty` then refuses to
/// write over what the restore wrote.
#[test]
fn a_backup_restored_into_another_worker_pulls_back_identical() {
    let source = LocalWorker::start(Some(TOKEN));
    let target = source.start_beside_restorable("durafetch-restored");
    let dir = tempfile::tempdir().unwrap();
    let (backup, copy) = (dir.path().join("backup.sqlite"), dir.path().join("copy.sqlite"));
    fill(&source);
    source.pull_settled(&backup);
    let objects: i64 =
        rusqlite::Connection::open(&backup).unwrap().query_row("SELECT count(*) FROM durable_objects", [], |r| r.get(0)).unwrap();
    assert_eq!(objects, 30);

    let dry = restore_into(&target, &backup, &["--dry-run"]);
    assert_eq!(dry.code, Some(0), "{}", dry.stderr);
    target.pull_settled(&copy);
    assert!(named_contents(&copy).is_empty(), "a dry run wrote: {:?}", named_contents(&copy));

    let run = restore_into(&target, &backup, &[]);
    assert_eq!(run.code, Some(0), "{:?} {}", run.objects, run.stderr);
    assert_eq!((run.count("restored"), run.count("skipped"), run.count("failed")), (24, 6, 0), "{:?}", run.objects);
    for skipped in run.with_outcome("skipped") {
        assert!(
            skipped["name"].is_null() && skipped["message"].as_str().unwrap().contains("only be restored into the worker it came from"),
            "{skipped}"
        );
    }
    for field in ["keys_written", "keys_deleted", "rows_written", "rows_deleted"] {
        assert_eq!(dry.count(field), run.count(field), "{field}: the dry run's count");
    }
    assert_eq!(run.count("rows_written"), 5 * (3 + 2 + 3));
    // Into objects that hold nothing, everything the restore writes is added.
    assert_eq!(would(&dry), [run.count("keys_written"), 0, 0, run.count("rows_written"), 0, 0]);
    let kv0 = run.objects.iter().find(|o| o["name"] == "kv-0").unwrap();
    assert!(kv0["not_restored"][0].as_str().unwrap().starts_with("typed-error"), "{kv0}");

    target.pull_settled(&copy);
    let (want, got) = (named_contents(&backup), named_contents(&copy));
    let error_row = |line: &String| line.contains("| typed-error |");
    let want: std::collections::BTreeSet<String> = want.into_iter().filter(|l| !error_row(l)).collect();
    assert_eq!(
        got,
        want,
        "\nmissing: {:?}\nextra: {:?}",
        want.difference(&got).collect::<Vec<_>>(),
        got.difference(&want).collect::<Vec<_>>()
    );
    assert!(
        want.iter().any(|l| l.starts_with("schema CounterSql | sql-0 | items |") && l.contains("items_by_name")),
        "the schema holds the index"
    );

    // Everything is there now: `empty` refuses every named object and writes nothing.
    let again = restore_into(&target, &backup, &["--mode", "empty"]);
    assert_eq!(again.code, Some(3), "{:?}", again.objects);
    assert_eq!(again.count("refused"), 24);
    assert!(again.with_outcome("refused")[0]["message"].as_str().unwrap().contains("--mode replace"));
}

/// The three modes on one object that changed since its backup, restored into itself: `empty`
/// refuses it, `merge` writes the backup over it and keeps what the backup lacks, `replace`
/// makes it equal to the backup, keys and tables; a dry run counts what replace then does.
#[test]
fn modes_replace_merge_and_empty() {
    let worker = LocalWorker::start_restorable();
    let dir = tempfile::tempdir().unwrap();
    let (backup, after) = (dir.path().join("backup.sqlite"), dir.path().join("after.sqlite"));
    worker.post("sql/shop/put_multiple_raw", r#"{"a": 1, "b": 2}"#);
    worker.sql("shop", "CREATE TABLE items (id INTEGER PRIMARY KEY, name TEXT); INSERT INTO items VALUES (1, 'one'), (2, 'two');");
    // An object without a name goes back into its own worker, by its id.
    worker.post("kv/@unique/put?key=u", "1");
    worker.pull_settled(&backup);
    let at_backup = named_contents(&backup);
    let unnamed: String = rusqlite::Connection::open(&backup)
        .unwrap()
        .query_row("SELECT id FROM durable_objects WHERE name IS NULL", [], |r| r.get(0))
        .unwrap();
    worker.post(&format!("kv/@{unnamed}/put?key=u"), "2");
    worker.post(&format!("kv/@{unnamed}/put?key=v"), "3");

    // Since the backup: a changed, c new, a row changed and one added, a table added.
    worker.post("sql/shop/put_multiple_raw", r#"{"a": 10, "c": 3}"#);
    worker.sql("shop", "UPDATE items SET name = 'uno' WHERE id = 1; INSERT INTO items VALUES (3, 'three'); CREATE TABLE extra (x); INSERT INTO extra VALUES (1);");
    worker.pull_settled(&after);
    let changed = named_contents(&after);

    let refused = restore_into(&worker, &backup, &["--mode", "empty"]);
    assert_eq!((refused.code, refused.count("refused")), (Some(3), 2), "{:?}", refused.objects);
    worker.pull_settled(&after);
    assert_eq!(named_contents(&after), changed, "a refused restore wrote");

    // Dry runs against the objects as they are: a and u changed, c and v would go; row 1
    // changed, row 3 and extra's row would go. A merge changes the same and deletes nothing.
    let dry_replace = restore_into(&worker, &backup, &["--mode", "replace", "--dry-run"]);
    assert_eq!(dry_replace.code, Some(0), "{:?} {}", dry_replace.objects, dry_replace.stderr);
    assert_eq!(would(&dry_replace), [0, 2, 2, 0, 1, 2], "{:?}", dry_replace.objects);
    let dry_merge = restore_into(&worker, &backup, &["--mode", "merge", "--dry-run"]);
    assert_eq!(would(&dry_merge), [0, 2, 0, 0, 1, 0], "{:?}", dry_merge.objects);
    worker.pull_settled(&after);
    assert_eq!(named_contents(&after), changed, "a dry run wrote");

    let merged = restore_into(&worker, &backup, &["--mode", "merge"]);
    assert_eq!(merged.code, Some(0), "{:?}", merged.objects);
    assert_eq!((merged.count("keys_written"), merged.count("keys_deleted"), merged.count("rows_written")), (3, 0, 2));
    worker.pull_settled(&after);
    let merged_contents = named_contents(&after);
    assert!(merged_contents.iter().any(|l| l.contains("| c |")), "merge keeps what the backup lacks");
    assert!(merged_contents.iter().any(|l| l.starts_with("sql CounterSql.items shop") && l.contains("'three'")));
    assert!(merged_contents.iter().any(|l| l.starts_with("schema CounterSql | shop | extra")));
    assert!(merged_contents.iter().any(|l| l.contains("| a | json | '1'")), "merge writes the backup's value");
    assert!(merged_contents.iter().any(|l| l.starts_with("sql CounterSql.items shop") && l.contains("'one'")));

    let dry = restore_into(&worker, &backup, &["--mode", "replace", "--dry-run"]);
    assert_eq!(dry.code, Some(0), "{:?}", dry.objects);
    assert_eq!(would(&dry), [0, 0, 2, 0, 0, 2], "after the merge, only what replace deletes differs");
    worker.pull_settled(&after);
    assert_eq!(named_contents(&after), merged_contents, "a dry run wrote");
    let replaced = restore_into(&worker, &backup, &["--mode", "replace"]);
    assert_eq!(replaced.code, Some(0), "{:?}", replaced.objects);
    for field in ["keys_written", "keys_deleted", "rows_written", "rows_deleted"] {
        assert_eq!(dry.count(field), replaced.count(field), "{field}: the dry run's count");
    }
    // c and v deleted; items (3 rows) and extra (1 row) dropped, items made again with 2.
    assert_eq!((replaced.count("keys_written"), replaced.count("keys_deleted")), (3, 2));
    assert_eq!((replaced.count("rows_written"), replaced.count("rows_deleted")), (2, 4));
    worker.pull_settled(&after);
    assert_eq!(named_contents(&after), at_backup, "replace leaves exactly the backup");
    let state = worker.object_state("kv", &format!("@{unnamed}"));
    assert_eq!(state.into_iter().collect::<Vec<_>>(), [("u".to_string(), "1".to_string())], "the unnamed object, by its id");
}

/// A dry run finds the rows of a table keyed by a declared key (not its rowid) by that key:
/// the new rowids a restore or the app hands out are no change, and a merge compares only the
/// backup's columns.
#[test]
fn a_dry_run_finds_rows_by_their_declared_key() {
    let worker = LocalWorker::start_restorable();
    let dir = tempfile::tempdir().unwrap();
    let backup = dir.path().join("backup.sqlite");
    let people: Vec<String> = (1..=12).map(|i| format!("('p{i}@x', {i})")).collect();
    worker.sql(
        "people",
        &format!("CREATE TABLE people (email TEXT PRIMARY KEY, age INTEGER); INSERT INTO people VALUES {};", people.join(", ")),
    );
    worker.pull_settled(&backup);
    // The same rows under new rowids.
    worker.sql("people", "DELETE FROM people WHERE email IN ('p1@x', 'p12@x'); INSERT INTO people VALUES ('p12@x', 12), ('p1@x', 1);");
    let dry = restore_into(&worker, &backup, &["--mode", "replace", "--dry-run"]);
    assert_eq!(would(&dry), [0; 6], "{:?} {}", dry.objects, dry.stderr);
    // One row changed, one gone, one new; a column the backup lacks, which a merge leaves.
    worker.sql(
        "people",
        "UPDATE people SET age = 40 WHERE email = 'p4@x'; DELETE FROM people WHERE email = 'p5@x'; \
         INSERT INTO people VALUES ('new@x', 0); ALTER TABLE people ADD COLUMN note TEXT; UPDATE people SET note = 'n' WHERE email = 'p6@x';",
    );
    let dry = restore_into(&worker, &backup, &["--mode", "replace", "--dry-run"]);
    assert_eq!(would(&dry), [0, 0, 0, 1, 2, 1], "{:?}", dry.objects);
    let dry = restore_into(&worker, &backup, &["--mode", "merge", "--dry-run"]);
    assert_eq!(would(&dry), [0, 0, 0, 1, 1, 0], "{:?}", dry.objects);
}

/// What SQLite keeps beside a table's rows comes back too: an AUTOINCREMENT table hands out no
/// key its source handed out (a deleted one included), and a merge never lowers a counter the
/// object has moved past; generated columns are computed again; rows whose declared key is NULL
/// are each restored.
#[test]
fn autoincrement_counters_generated_columns_and_null_keys_are_restored() {
    let source = LocalWorker::start(Some(TOKEN));
    let target = source.start_beside_restorable("durafetch-restored");
    let dir = tempfile::tempdir().unwrap();
    let backup = dir.path().join("backup.sqlite");
    source.sql(
        "ids",
        "CREATE TABLE t (id INTEGER PRIMARY KEY AUTOINCREMENT, v TEXT, twice AS (v || v));
         INSERT INTO t (v) VALUES ('t1'), ('t2'), ('t3'); DELETE FROM t WHERE id = 3;
         CREATE TABLE np (a TEXT PRIMARY KEY, v); INSERT INTO np VALUES (NULL, 1), (NULL, 2), ('x', 3);",
    );
    source.pull_settled(&backup);
    let query =
        |worker: &LocalWorker, q: &str| -> serde_json::Value { serde_json::from_str(&worker.post_text("sql/ids/sql_query", q)).unwrap() };
    let run = restore_into(&target, &backup, &["--mode", "empty"]);
    assert_eq!(run.code, Some(0), "{:?} {}", run.objects, run.stderr);
    target.sql("ids", "INSERT INTO t (v) VALUES ('t4')");
    assert_eq!(query(&target, "SELECT id, v, twice FROM t ORDER BY id"), json!([[1, "t1", "t1t1"], [2, "t2", "t2t2"], [4, "t4", "t4t4"]]));
    assert_eq!(query(&target, "SELECT v FROM np WHERE a IS NULL ORDER BY v"), json!([[1], [2]]), "each NULL-keyed row restored");
    // The target has handed out 4 and deleted it; the backup's counter, 3, must not lower its own.
    target.sql("ids", "DELETE FROM t WHERE id = 4");
    let run = restore_into(&target, &backup, &["--mode", "merge", "--no-undo"]);
    assert_eq!(run.code, Some(0), "{:?} {}", run.objects, run.stderr);
    target.sql("ids", "INSERT INTO t (v) VALUES ('t5')");
    assert_eq!(query(&target, "SELECT max(id) FROM t"), json!([[5]]));
    // Nor may a replace, which drops the table, and its counter with it, to make it again.
    let run = restore_into(&target, &backup, &["--mode", "replace", "--no-undo"]);
    assert_eq!(run.code, Some(0), "{:?} {}", run.objects, run.stderr);
    target.sql("ids", "INSERT INTO t (v) VALUES ('t6')");
    assert_eq!(query(&target, "SELECT id, v FROM t ORDER BY id"), json!([[1, "t1"], [2, "t2"], [6, "t6"]]));
}

/// Writes at t1 and t2, a delete at t3, each followed by a pull with --history: --at a moment
/// between the second and third pulls restores the t2 values, the deleted key and row included.
/// A file without history is refused with the flag named.
#[test]
fn a_moment_of_the_history_is_restored() {
    let worker = LocalWorker::start_restorable();
    let dir = tempfile::tempdir().unwrap();
    let (db, check) = (dir.path().join("history.sqlite"), dir.path().join("check.sqlite"));
    let pull_history = || {
        let run = worker.pull_with(&db, TOKEN, &["--history"]);
        assert_eq!(run.code, Some(0), "{}", run.stderr);
    };
    worker.post("sql/log/put_multiple_raw", r#"{"a": "t1", "b": "t1"}"#);
    worker.sql("log", "CREATE TABLE t (id INTEGER PRIMARY KEY, v TEXT); INSERT INTO t VALUES (1, 't1'), (2, 't1');");
    pull_history();
    worker.post("sql/log/put?key=a", r#""t2""#);
    worker.sql("log", "UPDATE t SET v = 't2' WHERE id = 1;");
    pull_history();
    std::thread::sleep(Duration::from_millis(20));
    let moment = time::OffsetDateTime::now_utc();
    std::thread::sleep(Duration::from_millis(20));
    worker.post("sql/log/delete?key=b", "");
    worker.post("sql/log/put?key=a", r#""t3""#);
    worker.sql("log", "DELETE FROM t WHERE id = 2;");
    pull_history();

    let at = moment.format(&time::format_description::well_known::Rfc3339).unwrap();
    let run = restore_into(&worker, &db, &["--mode", "replace", "--at", &at]);
    assert_eq!(run.code, Some(0), "{:?} {}", run.objects, run.stderr);
    worker.pull_settled(&check);
    let contents = named_contents(&check);
    assert!(contents.contains("kv CounterSql | log | a | json | '\"t2\"' |  | NULL"), "{contents:?}");
    assert!(contents.contains("kv CounterSql | log | b | json | '\"t1\"' |  | NULL"), "{contents:?}");
    let rows: Vec<&String> = contents.iter().filter(|l| l.starts_with("sql CounterSql.t")).collect();
    assert_eq!(rows.len(), 2, "{rows:?}");
    assert!(rows.iter().any(|r| r.contains("_row_key=text:'1'") && r.contains("v=text:'t2'")), "{rows:?}");
    assert!(rows.iter().any(|r| r.contains("_row_key=text:'2'") && r.contains("v=text:'t1'")), "{rows:?}");

    let plain = RestoreRun::run(restorer(&worker.api_url(), &check, RESTORE_TOKEN, &["--at", &at]));
    assert_eq!(plain.code, Some(2));
    assert!(plain.stderr.contains("--history"), "{}", plain.stderr);
}

/// A restore killed midway (after some objects, then at random moments of reruns, mid-object
/// included) leaves each object restored whole or untouched, never partly written; a rerun with
/// `empty` writes those it never reached and refuses those it did, and one with replace leaves
/// every object equal to the backup.
#[test]
fn an_interrupted_restore_finishes_on_a_rerun() {
    let source = LocalWorker::start(Some(TOKEN));
    let target = source.start_beside_restorable("durafetch-restored");
    let dir = tempfile::tempdir().unwrap();
    let (backup, copy) = (dir.path().join("backup.sqlite"), dir.path().join("copy.sqlite"));
    for object in 0..40 {
        let entries: serde_json::Map<String, serde_json::Value> = (0..500).map(|i| (format!("k{i:04}"), json!("v".repeat(100)))).collect();
        source.post(&format!("sql/big-{object:02}/put_multiple_raw"), &serde_json::Value::Object(entries).to_string());
    }
    source.pull_settled(&backup);

    let mut cmd = restorer(&target.api_url(), &backup, RESTORE_TOKEN, &["--mode", "replace", "--concurrency", "1"]);
    let mut child = cmd.stdout(std::process::Stdio::piped()).stderr(std::process::Stdio::null()).spawn().unwrap();
    let lines = std::io::BufRead::lines(std::io::BufReader::new(child.stdout.take().unwrap()));
    let mut restored = 0;
    for line in lines {
        if line.unwrap().contains(r#""event":"object""#) {
            restored += 1;
        }
        if restored == 5 {
            let _ = std::process::Command::new("kill").args(["-KILL", &child.id().to_string()]).status();
            break;
        }
    }
    let status = child.wait().unwrap();
    assert!(!status.success() && restored == 5, "the restore ended before it was killed");
    let whole_objects = || {
        target.pull_settled(&copy);
        let mut keys_by_object: std::collections::BTreeMap<String, usize> = std::collections::BTreeMap::new();
        for line in named_contents(&copy) {
            *keys_by_object.entry(line.split(" | ").nth(1).unwrap().to_owned()).or_default() += 1;
        }
        assert!(keys_by_object.values().all(|&keys| keys == 500), "an object was left partly restored: {keys_by_object:?}");
        keys_by_object.len()
    };
    let whole = whole_objects();
    assert!((5..40).contains(&whole), "killed midway: {whole} of 40 objects restored");
    // Reruns killed at random moments, which land between requests, mid-object and mid-apply
    // alike.
    for _ in 0..3 {
        let moment = Duration::from_millis(fastrand::u64(0..3000));
        let mut rerun = restorer(&target.api_url(), &backup, RESTORE_TOKEN, &["--mode", "replace", "--concurrency", "2", "--no-undo"]);
        let mut child = rerun.stdout(std::process::Stdio::null()).stderr(std::process::Stdio::null()).spawn().unwrap();
        std::thread::sleep(moment);
        let _ = std::process::Command::new("kill").args(["-KILL", &child.id().to_string()]).status();
        child.wait().unwrap();
        whole_objects();
    }
    let whole = whole_objects();
    let want = named_contents(&backup);

    let refused = restore_into(&target, &backup, &["--mode", "empty"]);
    assert_eq!((refused.code, refused.count("refused")), (Some(3), whole as u64), "{:?}", refused.objects);
    let rerun = restore_into(&target, &backup, &["--mode", "replace"]);
    assert_eq!(rerun.code, Some(0), "{:?}", rerun.objects);
    target.pull_settled(&copy);
    assert_eq!(named_contents(&copy), want);
}

/// A worker without a restore secret refuses every restore, and names the secret; a reading
/// token cannot restore, nor a restore token read. Nothing is written.
#[test]
fn restores_need_the_restore_secret_and_its_token() {
    let worker = LocalWorker::start(Some(TOKEN));
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("backup.sqlite");
    worker.post("kv/guarded/put?key=a", "1");
    worker.pull_settled(&db);
    worker.post("kv/guarded/put?key=a", "2");

    let off = RestoreRun::run(restorer(&worker.api_url(), &db, RESTORE_TOKEN, &["--mode", "replace"]));
    assert_eq!(off.code, Some(2), "{:?}", off.objects);
    let message = off.objects[0]["message"].as_str().unwrap();
    assert!(message.contains("403") && message.contains("DURAFETCH_RESTORE_AUTH"), "{message}");

    let restorable = worker.start_beside_restorable("durafetch-guarded");
    restorable.post("kv/guarded/put?key=a", "2");
    for token in [TOKEN, "wrong-token-0123456789abcdefghijklmnopqrstuvwxyz"] {
        let run = RestoreRun::run(restorer(&restorable.api_url(), &db, token, &["--mode", "replace"]));
        assert_eq!(run.code, Some(2), "{:?}", run.objects);
        assert!(run.objects[0]["message"].as_str().unwrap().contains("refused the restore token"), "{:?}", run.objects);
        assert!(!run.objects[0]["message"].as_str().unwrap().contains(token), "the token is not echoed");
    }
    assert_eq!(worker.object_state("kv", "guarded").get("a").map(String::as_str), Some("2"));
    assert_eq!(restorable.object_state("kv", "guarded").get("a").map(String::as_str), Some("2"));
    // The restore token reads nothing.
    let read = puller_at(&restorable.api_url(), &dir.path().join("read.sqlite"), RESTORE_TOKEN, &[]).output().unwrap();
    assert_eq!(read.status.code(), Some(2), "{}", String::from_utf8_lossy(&read.stderr));
}

/// Import requests that cannot be carried out each get an `error` naming the problem and close
/// code 1008, and change nothing, the pages staged before them included: the object holds what
/// it held.
#[test]
fn malformed_import_requests_are_refused_precisely_and_change_nothing() {
    use tungstenite::protocol::frame::coding::CloseCode;
    use tungstenite::Message;

    let worker = LocalWorker::start_restorable();
    worker.post("sql/target/put?key=a", "1");
    let target = durafetch_sdk::core::route::ImportTarget::Name("target".into());
    let path = durafetch_sdk::core::route::ApiRoute::Import { class: "CounterSql".into(), target }.to_string();
    let hello = r#"{"type":"hello","version":5,"mode":"merge","window":4}"#;
    let replace = r#"{"type":"hello","version":5,"mode":"replace","window":4}"#;
    let cases: Vec<(&str, Vec<Message>, &str)> = vec![
        ("no hello", vec![Message::text(r#"{"type":"end"}"#)], "expected a hello message first"),
        (
            "old client",
            vec![Message::text(r#"{"type":"hello","version":4,"mode":"merge","window":4}"#)],
            "unsupported restore protocol version 4; this object speaks version 5",
        ),
        (
            "wide window",
            vec![Message::text(r#"{"type":"hello","version":5,"mode":"merge","window":17}"#)],
            "window must be between 1 and 16",
        ),
        ("binary", vec![Message::binary(vec![1u8, 2])], "expected a text frame"),
        ("oversized", vec![Message::text(hello), Message::text(" ".repeat(9 << 20))], "message too large"),
        (
            "not a schema",
            vec![Message::text(hello), Message::text(r#"{"type":"create_table","table":"t","statements":["DROP TABLE t"]}"#)],
            "must be its CREATE TABLE statement",
        ),
        (
            "reserved key",
            vec![Message::text(hello), Message::text(r#"{"type":"put","changes":[{"k":"\u0001durafetch\u0001x","v":2}]}"#)],
            "reserved",
        ),
        (
            "no table",
            vec![Message::text(hello), Message::text(r#"{"type":"rows","table":"nope","columns":["x"],"rows":[{"k":"1","v":[1]}]}"#)],
            "send its schema first",
        ),
        (
            "keys out of order",
            vec![
                Message::text(replace),
                Message::text(r#"{"type":"put","changes":[{"k":"b","v":2}]}"#),
                Message::text(r#"{"type":"put","changes":[{"k":"a","v":2}]}"#),
            ],
            "out of order",
        ),
        (
            "a merge drops nothing",
            vec![Message::text(hello), Message::text(r#"{"type":"drop_table","table":"t"}"#)],
            "only --mode replace drops tables",
        ),
        (
            // Pages staged, then a refusal: a replace that would have deleted `a` and written
            // `b` does neither.
            "staged, then refused",
            vec![
                Message::text(replace),
                Message::text(r#"{"type":"put","changes":[{"k":"b","v":2}]}"#),
                Message::text(r#"{"type":"create_table","table":"t","statements":["CREATE TABLE t (x)"]}"#),
                Message::text(r#"{"type":"create_table","table":"t","statements":["CREATE TABLE t (x)"]}"#),
            ],
            "table t was sent twice",
        ),
    ];
    for (case, messages, expected) in cases {
        let mut socket = api_socket(&worker, &path, RESTORE_TOKEN);
        for message in messages {
            socket.send(message).unwrap();
        }
        let (error, code) = session_outcome(&mut socket);
        assert_eq!(code, Some(CloseCode::Policy), "{case}: {error:?}");
        assert!(error.contains(expected), "{case}: {error:?}");
    }
    let state = worker.object_state("sql", "target");
    assert_eq!(state.into_iter().collect::<Vec<_>>(), [("a".to_string(), "1".to_string())]);
    let tables = worker
        .post_text("sql/target/sql_query", "SELECT name FROM sqlite_master WHERE type = 'table' AND name NOT LIKE '\\_%' ESCAPE '\\'");
    assert_eq!(tables, "[]", "a refused schema made a table");
}
