//! The backup read back: keys and rows as the file holds them, and as its history had them at a moment.

use durafetch_sdk::core::cursor::Cursor;
use durafetch_sdk::core::protocol::{Change, ChangeValue, ExportMode, IndexEntry, SqlPage, SqlRow, SqlValue};

use super::*;
use crate::fake_server::temp_db;
use crate::settings::filter::Filter;
use crate::settings::filter::FilterSpec;
use crate::sink::sqlite::SqliteSink;

fn json(key: &str, value: serde_json::Value) -> Change {
    Change { key: key.into(), value: ChangeValue::Json(value) }
}

/// A file pulled with --history: the object `room` pulled three times, its history rows
/// stamped at 1,000, 2,000 and 3,000 ms.
fn pulled_three_times(name: &str) -> (std::path::PathBuf, std::path::PathBuf) {
    let (db, dir) = temp_db(name);
    let mut sink = SqliteSink::open(&db, true).unwrap();
    let entry =
        IndexEntry { class: "Room".into(), id: "aa".into(), name: Some("room".into()), head: Cursor::new(1, 9), rev: 1, changed_at: 0 };
    sink.record_index_page("ws://s", "w", &[entry]).unwrap();
    let do_id = sink.targets("ws://s", "", false).unwrap()[0].do_id;
    /// One pull: its key changes and its rows of table `t`.
    type Pull<'a> = (Vec<Change>, Vec<(&'a str, Option<Vec<SqlValue>>)>);
    let pulls: [Pull<'_>; 3] = [
        (
            vec![json("", serde_json::json!("empty key")), json("a", serde_json::json!(1)), json("b", serde_json::json!(1))],
            vec![
                ("1", Some(vec![SqlValue::Integer(1), SqlValue::Text("t1".into())])),
                ("2", Some(vec![SqlValue::Integer(2), SqlValue::Real(1.5)])),
            ],
        ),
        (vec![json("a", serde_json::json!(2))], vec![("1", Some(vec![SqlValue::Integer(1), SqlValue::Text("t2".into())]))]),
        (vec![Change { key: "b".into(), value: ChangeValue::Deleted }, json("c", serde_json::json!(3))], vec![("2", None)]),
    ];
    for (at, (changes, rows)) in pulls.into_iter().enumerate() {
        let mode = if at == 0 { ExportMode::Snapshot } else { ExportMode::Changes };
        let write = sink.begin(do_id, mode, Cursor::new(1, at as u64), "", false).unwrap();
        sink.apply(write, &changes).unwrap();
        let page = SqlPage {
            table: "t".into(),
            columns: vec!["id".into(), "v".into()],
            rows: rows.into_iter().map(|(k, v)| SqlRow { k: k.into(), v }).collect(),
        };
        sink.save_sql_schema(write, "t", &["CREATE TABLE t (id INTEGER PRIMARY KEY AUTOINCREMENT, v)".into()], Some(at as i64 + 5))
            .unwrap();
        sink.apply_sql(write, &page).unwrap();
        sink.finish(write, Cursor::new(1, at as u64 + 1), at as u64 + 1).unwrap();
        for table in ["kv_history", "sql_history"] {
            sink.conn.execute(&format!("UPDATE {table} SET pulled_at = ?1 WHERE pulled_at > 100000"), [(at as i64 + 1) * 1000]).unwrap();
        }
    }
    (db, dir)
}

fn all_keys(backup: &SqliteBackup, object: &BackupObject) -> Vec<(String, serde_json::Value)> {
    let filter = Filter::new(FilterSpec::default()).unwrap();
    let (mut keys, mut after, mut errors) = (Vec::new(), None, Vec::new());
    loop {
        let (page, last) = backup.keys(object, after.as_deref(), &filter, &mut errors).unwrap();
        keys.extend(page.into_iter().map(|c| match c.value {
            ChangeValue::Json(v) => (c.key, v),
            other => panic!("{other:?}"),
        }));
        match last {
            Some(last) => after = Some(last),
            None => return keys,
        }
    }
}

fn all_rows(backup: &SqliteBackup, object: &BackupObject) -> Vec<(String, Vec<SqlValue>)> {
    let schema =
        TableSchema { table: "t".into(), statements: vec!["CREATE TABLE t (id INTEGER PRIMARY KEY, v)".into()], autoincrement: None };
    let (page, _) = backup.rows(object, &backup.table_source(object, &schema).unwrap(), None).unwrap();
    page.rows.into_iter().map(|r| (r.k, r.v.unwrap())).collect()
}

/// The latest state, and the state at a moment: each key and row as the last pull before it
/// saw it, a key or row deleted later included, one added later left out.
#[test]
fn keys_and_rows_are_read_as_they_were_at_each_moment() {
    let (db, dir) = pulled_three_times("moments");
    let filter = Filter::new(FilterSpec::default()).unwrap();
    let latest = SqliteBackup::open(&db, Moment::Latest).unwrap();
    let object = latest.objects(&filter).unwrap().remove(0);
    let j = |v: i64| serde_json::json!(v);
    assert_eq!(all_keys(&latest, &object), [("".into(), serde_json::json!("empty key")), ("a".into(), j(2)), ("c".into(), j(3))]);
    assert_eq!(all_rows(&latest, &object), [("1".into(), vec![SqlValue::Integer(1), SqlValue::Text("t2".into())])]);

    let between = SqliteBackup::open(&db, Moment::At(2500)).unwrap();
    assert!(between.knows(&object).unwrap());
    assert_eq!(all_keys(&between, &object), [("".into(), serde_json::json!("empty key")), ("a".into(), j(2)), ("b".into(), j(1))]);
    assert!(between.has_key(&object, "b").unwrap() && !between.has_key(&object, "c").unwrap());
    assert_eq!(
        all_rows(&between, &object),
        [
            ("1".into(), vec![SqlValue::Integer(1), SqlValue::Text("t2".into())]),
            ("2".into(), vec![SqlValue::Integer(2), SqlValue::Real(1.5)])
        ]
    );
    let first = SqliteBackup::open(&db, Moment::At(1000)).unwrap();
    assert_eq!(all_keys(&first, &object)[1], ("a".into(), j(1)));
    assert!(!SqliteBackup::open(&db, Moment::At(999)).unwrap().knows(&object).unwrap(), "not pulled yet by then");
    let mut errors = Vec::new();
    assert_eq!(
        latest.tables(&object, &filter, &mut errors).unwrap(),
        [TableSchema {
            table: "t".into(),
            statements: vec!["CREATE TABLE t (id INTEGER PRIMARY KEY AUTOINCREMENT, v)".to_string()],
            autoincrement: Some(7)
        }]
    );
    assert!(errors.is_empty(), "{errors:?}");
    // A column the backup's table generates is not sent: the target computes it, or lacks it.
    let generated = TableSchema {
        table: "t".into(),
        statements: vec!["CREATE TABLE t (id INTEGER PRIMARY KEY, v AS (id * 2))".into()],
        autoincrement: None,
    };
    let source = latest.table_source(&object, &generated).unwrap();
    assert_eq!(latest.rows(&object, &source, None).unwrap().0.columns, ["id"]);
    // A file pulled before counters were recorded: the restore says what it cannot put back.
    rusqlite::Connection::open(&db).unwrap().execute("UPDATE sql_schemas SET autoincrement_counter = NULL", []).unwrap();
    let older = SqliteBackup::open(&db, Moment::Latest).unwrap();
    assert_eq!(older.tables(&object, &filter, &mut errors).unwrap()[0].autoincrement, None);
    assert!(errors.len() == 1 && errors[0].contains("AUTOINCREMENT counter is not in the file"), "{errors:?}");
    // ... and one from before the column was added is read all the same.
    rusqlite::Connection::open(&db).unwrap().execute_batch("ALTER TABLE sql_schemas DROP COLUMN autoincrement_counter").unwrap();
    let oldest = SqliteBackup::open(&db, Moment::Latest).unwrap();
    assert_eq!(oldest.tables(&object, &filter, &mut errors).unwrap()[0].autoincrement, None);
    std::fs::remove_dir_all(dir).unwrap();
}

/// What a table's `CREATE TABLE` makes, as SQLite reads it: its generated columns, which a
/// restore leaves to the object to compute, and whether it is AUTOINCREMENT (a word in a
/// comment or a default is not); and which source column each local column holds, a name
/// PostgreSQL's 63 bytes shortened included.
#[test]
fn a_schema_is_read_as_sqlite_reads_it() {
    use crate::sink::naming::{local_column_name, postgres_column};
    let schema = |create: &str| TableSchema { table: "g".into(), statements: vec![create.into()], autoincrement: None };
    let generated = schema("CREATE TABLE g (a, b AS (a * 2), c INTEGER GENERATED ALWAYS AS (a + 1) STORED, d DEFAULT 'AUTOINCREMENT')");
    let locals = |names: &[&str]| names.iter().map(|n| n.to_string()).collect::<Vec<_>>();
    let pairs = |pairs: &[(&str, &str)]| pairs.iter().map(|(l, s)| (Some(l.to_string()), s.to_string())).collect::<Vec<_>>();
    assert_eq!(
        TableSource::new(&generated, None, locals(&["a", "b", "c", "d", "e"]), local_column_name).columns,
        pairs(&[("a", "a"), ("d", "d"), ("e", "e")])
    );
    // A column the local table lacks (PostgreSQL adds one with its first value) is sent as NULL.
    let mut lacking = pairs(&[("a", "a")]);
    lacking.push((None, "d".into()));
    assert_eq!(TableSource::new(&generated, Some("t".into()), locals(&["a"]), local_column_name).columns, lacking);
    assert!(!generated.is_autoincrement());
    assert!(schema("CREATE TABLE g (id INTEGER PRIMARY KEY AUTOINCREMENT)").is_autoincrement());
    assert_eq!(
        TableSource::new(&schema("not sql"), None, locals(&["do_id_sql", "x"]), local_column_name).columns,
        pairs(&[("do_id_sql", "do_id"), ("x", "x")])
    );
    let long = "l".repeat(200);
    let own = schema(&format!("CREATE TABLE g (do_id, {long}, v)"));
    let shortened = postgres_column(&long);
    assert_eq!(
        TableSource::new(&own, None, locals(&["do_id_sql", &shortened, "v"]), postgres_column).columns,
        pairs(&[("do_id_sql", "do_id"), (&shortened, &long), ("v", "v")])
    );
}

/// Pages of keys follow one another without a gap or a repeat, past the page size.
#[test]
fn keys_are_read_in_pages_without_gaps() {
    let (db, dir) = temp_db("pages");
    let mut sink = SqliteSink::open(&db, false).unwrap();
    let entry = IndexEntry { class: "Room".into(), id: "aa".into(), name: None, head: Cursor::new(1, 9), rev: 1, changed_at: 0 };
    sink.record_index_page("ws://s", "w", &[entry]).unwrap();
    let do_id = sink.targets("ws://s", "", false).unwrap()[0].do_id;
    let write = sink.begin(do_id, ExportMode::Snapshot, Cursor::new(1, 0), "", false).unwrap();
    let changes: Vec<Change> = (0..2500).map(|i| json(&format!("k{i:05}"), serde_json::json!(i))).collect();
    sink.apply(write, &changes).unwrap();
    sink.finish(write, Cursor::new(1, 1), 0).unwrap();
    drop(sink);
    let backup = SqliteBackup::open(&db, Moment::Latest).unwrap();
    let object = backup.objects(&Filter::new(FilterSpec::default()).unwrap()).unwrap().remove(0);
    let keys: Vec<String> = all_keys(&backup, &object).into_iter().map(|(k, _)| k).collect();
    assert_eq!(keys, changes.iter().map(|c| c.key.clone()).collect::<Vec<_>>());
    assert!(matches!(SqliteBackup::open(&db, Moment::At(0)), Err(SourceError::NoHistory)), "a file without history");
    std::fs::remove_dir_all(dir).unwrap();
}

/// Objects of one name from several workers would be restored into one object: refused unless
/// `--worker` chooses; unnamed ones (told apart by id) and other names pass.
#[test]
fn one_name_from_two_workers_is_refused_until_a_worker_is_chosen() {
    let object = |worker: &str, name: Option<&str>, id: &str| BackupObject {
        do_id: 0,
        worker: worker.into(),
        class: "Room".into(),
        name: name.map(Into::into),
        id: id.into(),
    };
    let objects =
        vec![object("a", Some("lobby"), "1"), object("b", Some("lobby"), "2"), object("b", Some("hall"), "3"), object("a", None, "4")];
    let refused = interface::of_one_worker(objects.clone(), None).unwrap_err();
    assert!(refused.to_string().contains(r#"Room "lobby": workers a and b"#) && refused.to_string().contains("--worker"), "{refused}");
    let chosen = interface::of_one_worker(objects.clone(), Some("b")).unwrap();
    assert_eq!(chosen.iter().map(|o| o.id.as_str()).collect::<Vec<_>>(), ["2", "3"]);
    let apart = vec![object("a", Some("lobby"), "1"), object("a", None, "4"), object("b", None, "5"), object("b", Some("hall"), "3")];
    assert_eq!(interface::of_one_worker(apart, None).unwrap().len(), 4);
}
