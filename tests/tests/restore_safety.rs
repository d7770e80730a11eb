//! Restores that never half-apply: SQL tables linked by foreign keys (cascade, restrict, a
//! self-reference) restored in every mode, into empty and populated objects; a restore that fails
//! part way, or that the app's requests run beside, leaves each object as it was or restored,
//! never in between; a restore secret that shares a token with the reading secret is refused.

use std::path::Path;

use durafetch_e2e::{named_contents, restore_into, restorer, LocalWorker, RestoreRun, RESTORE_TOKEN, TOKEN};
use serde_json::{json, Value};

fn query(worker: &LocalWorker, object: &str, query: &str) -> Value {
    serde_json::from_str(&worker.post_text(&format!("sql/{object}/sql_query"), query)).unwrap()
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
    source.sql("blog", BLOG);
    source.post("sql/blog/put?key=settings", r#"{"theme":"dark"}"#);
    // A value no export form holds: the file keeps the key as an error, and a restore leaves the
    // object's own value of it alone.
    source.post("sql/blog/put_typed?key=broken", "error");
    source.pull_settled(&backup);
    let want: std::collections::BTreeSet<String> = named_contents(&backup).into_iter().filter(|l| !l.contains("| broken |")).collect();
    let restored = |db: &Path| -> std::collections::BTreeSet<String> {
        named_contents(db).into_iter().filter(|l| !l.contains("| broken |")).collect()
    };

    let empty = restore_into(&target, &backup, &["--mode", "empty"]);
    assert_eq!(empty.code, Some(0), "{:?}", empty.objects);
    assert_eq!((empty.count("rows_written"), empty.count("keys_written")), (10, 1));
    target.pull_settled(&copy);
    assert_eq!(restored(&copy), want, "restored into an empty object");

    // The app changes every table; replace drops them children first and fills them parents first.
    target.sql(
        "blog",
        "DELETE FROM likes; DELETE FROM comments WHERE id = 10; UPDATE posts SET title = 'changed' WHERE id = 1;
         INSERT INTO posts VALUES (9, 'new'); INSERT INTO comments VALUES (90, 9, 'on new'); DELETE FROM categories WHERE id = 3;",
    );
    target.post("sql/blog/put?key=extra", "1");
    target.post("sql/blog/put?key=broken", r#""live""#);
    let replaced = restore_into(&target, &backup, &["--mode", "replace"]);
    assert_eq!(replaced.code, Some(0), "{:?}", replaced.objects);
    assert_eq!((replaced.count("keys_deleted"), replaced.count("rows_written")), (1, 10));
    target.pull_settled(&copy);
    assert_eq!(restored(&copy), want, "replaced over the app's changes");
    assert_eq!(target.object_state("sql", "blog").get("broken").map(String::as_str), Some(r#""live""#), "a key the file cannot restore");

    // A merge writes the parent's row over the app's: its children, old and new, stay.
    target.sql("blog", "UPDATE posts SET title = 'changed' WHERE id = 1; INSERT INTO comments VALUES (91, 1, 'new on 1');");
    let merged = restore_into(&target, &backup, &["--mode", "merge"]);
    assert_eq!(merged.code, Some(0), "{:?}", merged.objects);
    assert_eq!(query(&target, "blog", "SELECT id FROM comments ORDER BY id"), json!([[10], [11], [12], [91]]));
    assert_eq!(query(&target, "blog", "SELECT title FROM posts WHERE id = 1"), json!([["first"]]));
    assert_eq!(query(&target, "blog", "SELECT count(*) FROM likes"), json!([[2]]));
    assert_eq!(query(&target, "blog", "PRAGMA defer_foreign_keys"), json!([[0]]), "the app's setting is as it was");

    // A replace of the parent alone would let its drop cascade into the child it leaves out.
    let cascading = restore_into(&target, &backup, &["--mode", "replace", "--table", "posts"]);
    assert_eq!(cascading.code, Some(1), "{:?}", cascading.objects);
    let message = cascading.objects[0]["message"].as_str().unwrap();
    assert!(message.contains("table comments") && message.contains("--table comments"), "{message}");
    assert_eq!(query(&target, "blog", "SELECT id FROM comments ORDER BY id"), json!([[10], [11], [12], [91]]));
}

/// A restore whose session the object has not yet seen end (the client lost its connection and
/// tries again) takes its place: the new one restores, and the old one fails at its next
/// request without writing.
#[test]
fn a_new_restore_of_an_object_replaces_a_session_left_open() {
    use tungstenite::Message;
    let source = LocalWorker::start(Some(TOKEN));
    let target = source.start_beside_restorable("durafetch-restored");
    let dir = tempfile::tempdir().unwrap();
    let backup = dir.path().join("backup.sqlite");
    source.post("sql/room/put?key=a", "1");
    source.pull_settled(&backup);
    let route = durafetch_sdk::core::route::ImportTarget::Name("room".into());
    let path = durafetch_sdk::core::route::ApiRoute::Import { class: "CounterSql".into(), target: route }.to_string();
    let mut left_open = durafetch_e2e::api_socket(&target, &path, RESTORE_TOKEN);
    left_open.send(Message::text(r#"{"type":"hello","version":5,"mode":"replace","window":4}"#)).unwrap();
    assert!(left_open.read().unwrap().to_text().unwrap().contains("ready"));
    left_open.send(Message::text(r#"{"type":"put","changes":[{"k":"stale","v":1}]}"#)).unwrap();
    assert!(left_open.read().unwrap().to_text().unwrap().contains("staged"));

    let run = restore_into(&target, &backup, &["--mode", "replace"]);
    assert_eq!(run.code, Some(0), "{:?}", run.objects);
    left_open.send(Message::text(r#"{"type":"end"}"#)).unwrap();
    let (error, _) = durafetch_e2e::session_outcome(&mut left_open);
    assert!(error.contains("a newer restore of this object has started"), "{error}");
    let state = target.object_state("sql", "room");
    assert_eq!(state.into_iter().collect::<Vec<_>>(), [("a".to_string(), "1".to_string())]);
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
    source.sql("narrow", "CREATE TABLE posts (id INTEGER PRIMARY KEY, title TEXT); INSERT INTO posts VALUES (1, 'one');");
    source.sql("orphans", BLOG);
    source.post("sql/orphans/put?key=k", "2");
    source.pull_settled(&backup);

    target.post("sql/narrow/put_multiple_raw", r#"{"a": 1, "z": 1}"#);
    target.sql("narrow", "CREATE TABLE posts (id INTEGER PRIMARY KEY); INSERT INTO posts VALUES (7);");
    let narrow_before = (target.object_state("sql", "narrow"), query(&target, "narrow", "SELECT * FROM posts"));
    // The target has the tables, without the posts the backup's comments name.
    target.sql("orphans", &BLOG[..BLOG.find("INSERT").unwrap()]);
    target.post("sql/orphans/put?key=k", "1");
    let orphans_before = (target.object_state("sql", "orphans"), query(&target, "orphans", "SELECT count(*) FROM comments"));

    let failed = restore_into(&target, &backup, &["--mode", "merge", "--table", "comments", "--table", "posts", "--name", "narrow"]);
    assert_eq!(failed.code, Some(1), "{:?}", failed.objects);
    let message = failed.objects[0]["message"].as_str().unwrap();
    assert!(message.contains("no column title"), "{message}");
    assert_eq!((target.object_state("sql", "narrow"), query(&target, "narrow", "SELECT * FROM posts")), narrow_before);

    let broken = restore_into(&target, &backup, &["--mode", "merge", "--table", "comments", "--name", "orphans"]);
    assert_eq!(broken.code, Some(1), "{:?}", broken.objects);
    let message = broken.objects[0]["message"].as_str().unwrap();
    assert!(message.contains("foreign key") && message.contains("comments"), "{message}");
    assert_eq!((target.object_state("sql", "orphans"), query(&target, "orphans", "SELECT count(*) FROM comments")), orphans_before);
    // The object still works, its foreign keys enforced at once as before.
    let refused =
        target.try_post("sql/orphans/ops", &json!([{"op": "sql", "sql": "INSERT INTO comments VALUES (1, 99, 'x')"}]).to_string());
    assert!(refused.is_err_and(|(_, body)| body.contains("FOREIGN KEY")), "foreign keys are still checked at once");
}

/// While a replace of 8 MB (50 MB with `DURAFETCH_SOAK` set) runs, the app reads its object in
/// one request after another and writes a key of its own after every fourth read: every read sees the
/// object wholly as it was or wholly restored (its first, middle and last keys and its table
/// alike), and of the app's keys (which the backup lacks, so replace deletes them) the object
/// keeps exactly those written after the moment the restore applied.
#[test]
fn the_app_never_sees_a_half_restored_object() {
    let source = LocalWorker::start(Some(TOKEN));
    let target = source.start_beside_restorable("durafetch-restored");
    let dir = tempfile::tempdir().unwrap();
    let backup = dir.path().join("backup.sqlite");
    // As many keys as rows, and their values' length: several pages of each.
    let (count, bytes): (u64, usize) = if std::env::var_os("DURAFETCH_SOAK").is_some() { (25_000, 1000) } else { (40_000, 100) };
    let fill = |worker: &LocalWorker, letter: &str| {
        let value = letter.repeat(bytes);
        for chunk in 0..count / 1000 {
            let entries: serde_json::Map<String, Value> =
                (chunk * 1000..(chunk + 1) * 1000).map(|i| (format!("k{i:05}"), json!(value.clone()))).collect();
            worker.post("sql/doc/put_multiple_raw", &Value::Object(entries).to_string());
        }
        worker.sql(
            "doc",
            &format!(
                "CREATE TABLE IF NOT EXISTS t (id INTEGER PRIMARY KEY, v TEXT);
                 WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < {count})
                 INSERT OR REPLACE INTO t SELECT i, '{value}' FROM n;"
            ),
        );
    };
    fill(&source, "B");
    source.pull_settled(&backup);
    fill(&target, "A");

    let restoring = std::thread::spawn({
        let cmd = restorer(&target.api_url(), &backup, RESTORE_TOKEN, &["--mode", "replace"]);
        move || RestoreRun::run(cmd)
    });
    let probe = json!({
        "keys": ["k00000", format!("k{:05}", count / 2), format!("k{:05}", count - 1)],
        "query": "SELECT substr(min(v), 1, 1), substr(max(v), 1, 1), count(*) FROM t",
    })
    .to_string();
    let mut seen: Vec<String> = Vec::new();
    let mut written = 0;
    while !restoring.is_finished() {
        if seen.len().is_multiple_of(4) {
            target.post(&format!("sql/doc/put?key=app-{written:05}"), "1");
            written += 1;
        }
        let state: Value = serde_json::from_str(&target.post_text("sql/doc/state", &probe)).unwrap();
        let mut letters: Vec<String> = state["keys"].as_object().unwrap().values().map(|v| v.as_str().unwrap()[..1].to_owned()).collect();
        let row = state["rows"][0].as_array().unwrap();
        letters.extend([row[0].as_str().unwrap().to_owned(), row[1].as_str().unwrap().to_owned()]);
        assert_eq!(letters.len(), 5, "a read missed a key: {state}");
        assert!(letters.iter().all(|l| *l == letters[0]), "a read saw the object between states: {letters:?}");
        assert_eq!(row[2].as_u64(), Some(count), "a read saw the table between states");
        seen.push(letters[0].clone());
    }
    let run = restoring.join().unwrap();
    assert_eq!(run.code, Some(0), "{:?}", run.objects);
    let reads = seen.len();
    seen.dedup();
    assert_eq!(seen.first().map(String::as_str), Some("A"), "the app read the object before it was restored");
    assert!(seen.len() <= 2, "the object went back: {seen:?}");
    assert!(reads > 20, "the app read the object only {reads} times while the restore ran");

    let state = target.object_state("sql", "doc");
    let app: Vec<usize> = state.keys().filter_map(|k| k.strip_prefix("app-")).map(|n| n.parse().unwrap()).collect();
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
    worker.pull_settled(&db);
    worker.post("kv/guarded/put?key=a", "2");
    for token in [RESTORE_TOKEN, TOKEN] {
        let run = RestoreRun::run(restorer(&worker.api_url(), &db, token, &["--mode", "replace"]));
        assert_eq!(run.code, Some(2), "a configuration error: {:?}", run.objects);
        let message = run.objects[0]["message"].as_str().unwrap();
        assert!(message.contains("500") && message.contains("is also in DURAFETCH_AUTH"), "{message}");
        assert!(!message.contains(TOKEN) && !message.contains(RESTORE_TOKEN), "a token is shown: {message}");
    }
    assert_eq!(worker.object_state("kv", "guarded").get("a").map(String::as_str), Some("2"));
}

/// A replace keeps a copy of what it writes over, and prints the command that puts it back: run,
/// it leaves the object as it was before the restore, every key, row, type and schema.
#[test]
fn a_restore_is_undone_by_the_command_it_prints() {
    let source = LocalWorker::start(Some(TOKEN));
    let target = source.start_beside_restorable("durafetch-restored");
    let dir = tempfile::tempdir().unwrap();
    let (backup, before, after) = (dir.path().join("backup.sqlite"), dir.path().join("before.sqlite"), dir.path().join("after.sqlite"));
    source.sql("blog", BLOG);
    source.post("sql/blog/put_multiple_raw", r#"{"a": 1, "b": [1, 2]}"#);
    source.pull_settled(&backup);
    // The target's own state: another schema for posts, other rows, keys the backup lacks.
    target.sql(
        "blog",
        "CREATE TABLE posts (id INTEGER PRIMARY KEY, title TEXT, extra REAL); INSERT INTO posts VALUES (1, 'mine', 1.5), (7, NULL, -0.0);
         CREATE TABLE mine (k TEXT PRIMARY KEY, v BLOB) WITHOUT ROWID; INSERT INTO mine VALUES ('x', x'00ff');",
    );
    target.post("sql/blog/put_multiple_raw", r#"{"a": "theirs", "z": {"deep": true}}"#);
    // An object the restore does not write into, which the copy holds all the same.
    target.post("sql/other/put?key=n", "1");
    target.pull_settled(&before);

    let run = restore_into(&target, &backup, &["--mode", "replace", "--class", "CounterSql"]);
    assert_eq!(run.code, Some(0), "{:?}", run.objects);
    let undo_file = run.summary["undo_file"].as_str().unwrap().to_owned();
    let command = run.summary["undo"].as_str().unwrap();
    assert!(Path::new(&undo_file).starts_with(dir.path()), "the undo file is beside the backup: {undo_file}");
    assert_eq!(command, format!("durafetch-pull restore --db={undo_file} --to={} --mode=replace --class=CounterSql", target.api_url()));
    assert!(run.stderr.contains(command), "the command is printed before the restore: {}", run.stderr);
    // The app writes on after the restore: the object the restore never touched keeps it.
    target.post("sql/other/put?key=n", "2");
    target.pull_settled(&after);
    assert_ne!(named_contents(&after), named_contents(&before), "the restore changed nothing");

    // The printed command, as a user would run it.
    let words: Vec<&str> = command.split(' ').skip(2).collect();
    let mut undo = std::process::Command::new(durafetch_e2e::puller_binary());
    undo.arg("restore").arg("--json").args(&words).arg("--no-undo").env("DURAFETCH_RESTORE_AUTH", RESTORE_TOKEN);
    let undone = RestoreRun::run(undo);
    assert_eq!(undone.code, Some(0), "{:?} {}", undone.objects, undone.stderr);
    target.pull_settled(&after);
    let blog = |db: &Path| named_contents(db).into_iter().filter(|l| !l.contains("| other |")).collect::<std::collections::BTreeSet<_>>();
    assert_eq!(blog(&after), blog(&before), "undone: the object as it was");
    assert_eq!(target.object_state("sql", "other").get("n").map(String::as_str), Some("2"), "the undo put back an object it never wrote");

    // Without a reading token there is no undo copy, and no restore.
    let mut blind = restorer(&target.api_url(), &backup, RESTORE_TOKEN, &["--mode", "replace"]);
    blind.env_remove("DURAFETCH_AUTH");
    let refused = RestoreRun::run(blind);
    assert_eq!(refused.code, Some(2), "{}", refused.stderr);
    assert!(refused.stderr.contains("--no-undo") && refused.stderr.contains("DURAFETCH_AUTH"), "{}", refused.stderr);
}
