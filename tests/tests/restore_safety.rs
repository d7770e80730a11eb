//! Restores that never half-apply: SQL tables linked by foreign keys (cascade, restrict, a
//! self-reference) restored in every mode, into empty and populated objects; a restore that fails
//! part way, or that the app's requests run beside, leaves each object as it was or restored,
//! never in between; a restore secret that shares a token with the reading secret is refused.

use std::path::Path;
use std::time::Duration;

use durafetch_e2e::{named_contents, restorer, LocalWorker, RestoreRun, RESTORE_TOKEN, TOKEN};
use serde_json::{json, Value};

fn sql(worker: &LocalWorker, object: &str, statements: &str) {
    worker.post(&format!("sql/{object}/ops"), &json!([{"op": "sql", "sql": statements}]).to_string());
}

fn query(worker: &LocalWorker, object: &str, query: &str) -> Value {
    serde_json::from_str(&worker.post_text(&format!("sql/{object}/sql_query"), query)).unwrap()
}

/// Pulls `worker` into `db` until a pull finds nothing more to do.
fn pull(worker: &LocalWorker, db: &Path) {
    for _ in 0..20 {
        let run = worker.pull(db, TOKEN);
        assert_eq!(run.code, Some(0), "pull failed: {}", run.stderr);
        if run.objects_pulled() == 0 {
            return;
        }
        std::thread::sleep(Duration::from_millis(200));
    }
    panic!("the pulls never settled");
}

fn restore(target: &LocalWorker, db: &Path, flags: &[&str]) -> RestoreRun {
    RestoreRun::run(restorer(&target.api_url(), db, RESTORE_TOKEN, flags))
}

/// A child table whose name sorts before its parent's (a user's reproduction), a restricting
/// grandchild, and a self-reference whose first row names a later one.
const BLOG: &str = "CREATE TABLE posts (id INTEGER PRIMARY KEY, title TEXT NOT NULL);
    CREATE TABLE comments (id INTEGER PRIMARY KEY, post_id INTEGER NOT NULL REFERENCES posts (id) ON DELETE CASCADE, body TEXT);
    CREATE TABLE likes (id INTEGER PRIMARY KEY, comment_id INTEGER NOT NULL REFERENCES comments (id) ON DELETE RESTRICT);
    CREATE TABLE categories (id INTEGER PRIMARY KEY, parent INTEGER REFERENCES categories (id), name TEXT);
    INSERT INTO posts VALUES (1, 'first'), (2, 'second');
    INSERT INTO comments VALUES (10, 1, 'a'), (11, 1, 'b'), (12, 2, 'c');
    INSERT INTO likes VALUES (100, 10), (101, 12);
    INSERT INTO categories VALUES (5, NULL, 'root'), (1, 5, 'child'), (3, 1, 'grandchild');";

/// The same objects restored into a second worker in each mode: into an empty object, over one
/// the app changed (replace), and merged into one the app added to. Every restore ends with the
/// object equal to the backup (merge: the backup's rows, and the app's own rows kept, none lost
/// to a cascade).
#[test]
fn tables_linked_by_foreign_keys_restore_in_every_mode() {
    let source = LocalWorker::start(Some(TOKEN));
    let target = source.start_beside_restorable("durafetch-restored");
    let dir = tempfile::tempdir().unwrap();
    let (backup, copy) = (dir.path().join("backup.sqlite"), dir.path().join("copy.sqlite"));
    sql(&source, "blog", BLOG);
    source.post("sql/blog/put?key=settings", r#"{"theme":"dark"}"#);
    pull(&source, &backup);
    let want = named_contents(&backup);

    let empty = restore(&target, &backup, &["--mode", "empty"]);
    assert_eq!(empty.code, Some(0), "{:?}", empty.objects);
    assert_eq!((empty.count("rows_written"), empty.count("keys_written")), (10, 1));
    pull(&target, &copy);
    assert_eq!(named_contents(&copy), want, "restored into an empty object");

    // The app changes every table; replace drops them children first and fills them parents first.
    sql(
        &target,
        "blog",
        "DELETE FROM likes; DELETE FROM comments WHERE id = 10; UPDATE posts SET title = 'changed' WHERE id = 1;
         INSERT INTO posts VALUES (9, 'new'); INSERT INTO comments VALUES (90, 9, 'on new'); DELETE FROM categories WHERE id = 3;",
    );
    target.post("sql/blog/put?key=extra", "1");
    let replaced = restore(&target, &backup, &["--mode", "replace"]);
    assert_eq!(replaced.code, Some(0), "{:?}", replaced.objects);
    assert_eq!((replaced.count("keys_deleted"), replaced.count("rows_written")), (1, 10));
    pull(&target, &copy);
    assert_eq!(named_contents(&copy), want, "replaced over the app's changes");

    // A merge writes the parent's row over the app's: its children, old and new, stay.
    sql(&target, "blog", "UPDATE posts SET title = 'changed' WHERE id = 1; INSERT INTO comments VALUES (91, 1, 'new on 1');");
    let merged = restore(&target, &backup, &["--mode", "merge"]);
    assert_eq!(merged.code, Some(0), "{:?}", merged.objects);
    assert_eq!(query(&target, "blog", "SELECT id FROM comments ORDER BY id"), json!([[10], [11], [12], [91]]));
    assert_eq!(query(&target, "blog", "SELECT title FROM posts WHERE id = 1"), json!([["first"]]));
    assert_eq!(query(&target, "blog", "SELECT count(*) FROM likes"), json!([[2]]));
    assert_eq!(query(&target, "blog", "PRAGMA defer_foreign_keys"), json!([[0]]), "the app's setting is as it was");
}

/// A merge that meets a table it cannot write into, after keys it could, writes none of them;
/// one whose rows break a foreign key writes none of its rows. The puller says why, and the
/// object holds exactly what it held.
#[test]
fn a_restore_that_fails_part_way_changes_nothing() {
    let source = LocalWorker::start(Some(TOKEN));
    let target = source.start_beside_restorable("durafetch-restored");
    let dir = tempfile::tempdir().unwrap();
    let backup = dir.path().join("backup.sqlite");
    source.post("sql/narrow/put_multiple_raw", r#"{"a": 2, "b": 2}"#);
    sql(&source, "narrow", "CREATE TABLE posts (id INTEGER PRIMARY KEY, title TEXT); INSERT INTO posts VALUES (1, 'one');");
    sql(&source, "orphans", BLOG);
    source.post("sql/orphans/put?key=k", "2");
    pull(&source, &backup);

    target.post("sql/narrow/put_multiple_raw", r#"{"a": 1, "z": 1}"#);
    sql(&target, "narrow", "CREATE TABLE posts (id INTEGER PRIMARY KEY); INSERT INTO posts VALUES (7);");
    let narrow_before = (target.object_state("sql", "narrow"), query(&target, "narrow", "SELECT * FROM posts"));
    // The target has the tables, without the posts the backup's comments name.
    sql(&target, "orphans", &BLOG[..BLOG.find("INSERT").unwrap()]);
    target.post("sql/orphans/put?key=k", "1");
    let orphans_before = (target.object_state("sql", "orphans"), query(&target, "orphans", "SELECT count(*) FROM comments"));

    let failed = restore(&target, &backup, &["--mode", "merge", "--table", "comments", "--table", "posts", "--name", "narrow"]);
    assert_eq!(failed.code, Some(1), "{:?}", failed.objects);
    let message = failed.objects[0]["message"].as_str().unwrap();
    assert!(message.contains("no column title"), "{message}");
    assert_eq!((target.object_state("sql", "narrow"), query(&target, "narrow", "SELECT * FROM posts")), narrow_before);

    let broken = restore(&target, &backup, &["--mode", "merge", "--table", "comments", "--name", "orphans"]);
    assert_eq!(broken.code, Some(1), "{:?}", broken.objects);
    let message = broken.objects[0]["message"].as_str().unwrap();
    assert!(message.contains("foreign key") && message.contains("comments"), "{message}");
    assert_eq!((target.object_state("sql", "orphans"), query(&target, "orphans", "SELECT count(*) FROM comments")), orphans_before);
    // The object still works, its foreign keys enforced at once as before.
    let refused =
        target.try_post("sql/orphans/ops", &json!([{"op": "sql", "sql": "INSERT INTO comments VALUES (1, 99, 'x')"}]).to_string());
    assert!(refused.is_err_and(|(_, body)| body.contains("FOREIGN KEY")), "foreign keys are still checked at once");
}

/// While a replace of a few MB runs, the app reads its object in one request after another and
/// writes a key of its own every few milliseconds: every read sees the object wholly as it was or
/// wholly restored, and of the app's keys (which the backup lacks, so replace deletes them) the
/// object keeps exactly those written after the moment the restore applied.
#[test]
fn the_app_never_sees_a_half_restored_object() {
    let source = LocalWorker::start(Some(TOKEN));
    let target = source.start_beside_restorable("durafetch-restored");
    let dir = tempfile::tempdir().unwrap();
    let backup = dir.path().join("backup.sqlite");
    let (keys, rows) = (4000, 4000);
    let fill = |worker: &LocalWorker, letter: &str| {
        let value = letter.repeat(500);
        for chunk in 0..keys / 1000 {
            let entries: serde_json::Map<String, Value> =
                (chunk * 1000..(chunk + 1) * 1000).map(|i| (format!("k{i:05}"), json!(value.clone()))).collect();
            worker.post("sql/doc/put_multiple_raw", &Value::Object(entries).to_string());
        }
        sql(
            worker,
            "doc",
            &format!(
                "CREATE TABLE IF NOT EXISTS t (id INTEGER PRIMARY KEY, v TEXT);
                 WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < {rows})
                 INSERT OR REPLACE INTO t SELECT i, '{value}' FROM n;"
            ),
        );
    };
    fill(&source, "B");
    pull(&source, &backup);
    fill(&target, "A");

    let restoring = std::thread::spawn({
        let cmd = restorer(&target.api_url(), &backup, RESTORE_TOKEN, &["--mode", "replace"]);
        move || RestoreRun::run(cmd)
    });
    let mut seen: Vec<char> = Vec::new();
    let mut written = 0;
    while !restoring.is_finished() {
        target.post(&format!("sql/doc/put?key=app-{written:05}"), "1");
        written += 1;
        let state: Value = serde_json::from_str(&target.post_text("sql/doc/state", "SELECT min(v), max(v), count(*) FROM t")).unwrap();
        let letters: std::collections::BTreeSet<char> = state["keys"]
            .as_object()
            .unwrap()
            .iter()
            .filter(|(k, _)| k.starts_with('k'))
            .map(|(_, v)| v.as_str().unwrap().chars().next().unwrap())
            .collect();
        let row = &state["rows"][0];
        let (min, max) = (row[0].as_str().unwrap().chars().next().unwrap(), row[1].as_str().unwrap().chars().next().unwrap());
        assert_eq!(letters.len(), 1, "a read saw keys of both states: {letters:?}");
        assert_eq!((min, max, row[2].as_u64()), (letters.first().copied().unwrap(), min, Some(rows)), "a read saw a table between states");
        seen.push(min);
    }
    let run = restoring.join().unwrap();
    assert_eq!(run.code, Some(0), "{:?}", run.objects);
    seen.dedup();
    assert!(seen.first() == Some(&'A'), "the app read the object before it was restored: {seen:?}");
    assert!(seen.len() <= 2, "the object went back: {seen:?}");

    let state = target.object_state("sql", "doc");
    let app: Vec<usize> = state.keys().filter_map(|k| k.strip_prefix("app-")).map(|n| n.parse().unwrap()).collect();
    assert!(written > 1, "the app wrote during the restore");
    // Those the replace found were deleted at once; every later one is kept.
    let kept_from = app.first().copied().unwrap_or(written);
    assert_eq!(app, (kept_from..written).collect::<Vec<_>>(), "the app's keys kept are not those written after one moment");
    assert!(state.iter().filter(|(k, _)| k.starts_with('k')).all(|(_, v)| v.contains('B')), "every key restored");
}

/// A restore secret that holds a token of the reading secret turns restore off with a 500 that
/// names the fix and never the token; nothing is written, and the read token still only reads.
#[test]
fn a_restore_secret_sharing_the_read_token_turns_restore_off() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("backup.sqlite");
    let shared = format!("{RESTORE_TOKEN},{TOKEN}");
    let worker = LocalWorker::start_with(Some(TOKEN), Some(&shared));
    worker.post("kv/guarded/put?key=a", "1");
    pull(&worker, &db);
    worker.post("kv/guarded/put?key=a", "2");
    for token in [RESTORE_TOKEN, TOKEN] {
        let run = RestoreRun::run(restorer(&worker.api_url(), &db, token, &["--mode", "replace"]));
        assert_ne!(run.code, Some(0), "{:?}", run.objects);
        let message = run.objects[0]["message"].as_str().unwrap();
        assert!(message.contains("500") && message.contains("is also in DURAFETCH_AUTH"), "{message}");
        assert!(!message.contains(TOKEN) && !message.contains(RESTORE_TOKEN), "a token is shown: {message}");
    }
    assert_eq!(worker.object_state("kv", "guarded").get("a").map(String::as_str), Some("2"));
}
