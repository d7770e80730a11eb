//! What the triggers and the sync record, what the app sees of them, and what they cost.

use std::collections::BTreeMap;

use super::*;

#[test]
fn keys_follow_the_declared_primary_key_or_the_rowid() {
    let composite = shape("t", true, &[("b", 2), ("x", 0), ("a", 1)]);
    assert_eq!(composite.key, ["a", "b"]);
    assert_eq!(composite.key_exprs("NEW"), [r#"NEW."a""#, r#"NEW."b""#]);
    let plain = shape("p", false, &[("x", 0)]);
    assert_eq!(plain.key_exprs("OLD"), ["OLD.rowid"]);
    let triggers = composite.triggers(&change_set(1));
    assert_eq!(triggers.len(), 3);
    assert!(
        triggers[1].1.contains(r#"NOT (OLD."a" IS NEW."a" COLLATE BINARY AND typeof(OLD."a") = typeof(NEW."a") AND OLD."b" IS NEW."b""#),
        "{}",
        triggers[1].1
    );
}

#[test]
fn a_sync_adds_triggers_marks_new_changed_and_gone_tables_and_is_then_idle() {
    let t = shape("t", false, &[("id", 1), ("v", 0)]);
    let plan = plan_sync(std::slice::from_ref(&t), &[], &BTreeMap::new());
    assert!(plan.statements.iter().filter(|s| s.starts_with("CREATE TRIGGER")).count() == 3);
    assert!(plan.statements.iter().any(|s| s.starts_with(r#"CREATE TABLE "_durafetch_rows_1" (k INTEGER PRIMARY KEY"#)), "{plan:?}");
    assert!(marks(&plan, "t", MARK_REPLACE));
    // Once applied, nothing to do.
    let known = [KnownTable { id: 1, name: "t".into(), shape: Some(t.fingerprint()), mark: MARK_REPLACE, gen: 1 }];
    let triggers: BTreeMap<String, String> = t.triggers(&change_set(1)).into_iter().collect();
    assert_eq!(plan_sync(std::slice::from_ref(&t), &known, &triggers), SyncPlan::default());
    // A column added: replaced, triggers kept.
    let wider = shape("t", false, &[("id", 1), ("v", 0), ("w", 0)]);
    let plan = plan_sync(std::slice::from_ref(&wider), &known, &triggers);
    assert!(!plan.statements.iter().any(|s| s.starts_with("CREATE TRIGGER")));
    assert!(marks(&plan, "t", MARK_REPLACE));
    // Gone: its triggers dropped with it, its change set dropped, its rows dropped by readers.
    let plan = plan_sync(&[], &known, &BTreeMap::new());
    assert!(marks(&plan, "t", MARK_GONE));
    assert!(plan.statements.iter().any(|s| s == r#"DROP TABLE IF EXISTS "_durafetch_rows_1""#));
    // Known as gone: nothing more to do. A new table takes the next id.
    let gone = [KnownTable { id: 1, name: "t".into(), shape: None, mark: MARK_GONE, gen: 3 }];
    assert_eq!(plan_sync(&[], &gone, &BTreeMap::new()), SyncPlan::default());
    let u = shape("u", false, &[("id", 1)]);
    assert!(plan_sync(std::slice::from_ref(&u), &gone, &BTreeMap::new()).statements.iter().any(|s| s.contains("_durafetch_rows_2")));
    // Too wide a key: refused, not recorded.
    let wide: Vec<ColumnInfo> = (1..=9).map(|i| (format!("c{i}"), i, String::new(), 0)).collect();
    let w = TableShape::from_columns("w".into(), true, &wide);
    let plan = plan_sync(std::slice::from_ref(&w), &[], &BTreeMap::new());
    assert!(marks(&plan, "w", MARK_GONE), "a marker, once");
    assert_eq!(plan.refused.len(), 1);
    let known = [KnownTable {
        id: 1,
        name: "w".into(),
        shape: Some(serde_json::json!({"refused": w.recordable().unwrap_err()}).to_string()),
        mark: MARK_GONE,
        gen: 1,
    }];
    let plan = plan_sync(std::slice::from_ref(&w), &known, &BTreeMap::new());
    assert!(plan.statements.is_empty() && plan.refused.len() == 1, "{plan:?}");
}

/// The capture changes nothing the user's statements do (a self-updating trigger, REPLACE
/// without delete triggers), yet records every row a REPLACE removes through any UNIQUE
/// index (a collation's, two columns', a rowid table's declared key), and keeps rows whose
/// declared key is NULL apart.
#[test]
fn replaced_rows_are_recorded_and_user_statements_behave_as_without_durafetch() {
    let db = rusqlite::Connection::open_in_memory().unwrap();
    db.execute_batch(
        "CREATE TABLE items (id INTEGER PRIMARY KEY, name TEXT UNIQUE COLLATE NOCASE, a, b, touched INTEGER DEFAULT 0, UNIQUE (a, b));
         CREATE TRIGGER touch AFTER UPDATE OF name ON items BEGIN UPDATE items SET touched = touched + 1 WHERE id = NEW.id; END;
         CREATE TABLE np (k TEXT PRIMARY KEY, v);
         CREATE TABLE removed (what);
         CREATE TRIGGER np_gone AFTER DELETE ON np BEGIN INSERT INTO removed VALUES (OLD.v); END;
         CREATE TABLE wr (k PRIMARY KEY, u UNIQUE, v) WITHOUT ROWID;
         CREATE UNIQUE INDEX by_lower ON np (lower(v));",
    )
    .unwrap();
    let plan = sync_native(&db);
    assert!(plan.refused.iter().any(|w| w.contains("by_lower")), "{:?}", plan.refused);
    let recursive: i64 = db.query_row("PRAGMA recursive_triggers", [], |r| r.get(0)).unwrap();
    assert_eq!(recursive, 0, "no setting of the user's changes");

    db.execute_batch("INSERT INTO items (id, name, a, b) VALUES (1, 'apple', 1, 1), (2, 'pear', 2, 2), (3, 'fig', 3, 3)").unwrap();
    db.execute_batch("UPDATE items SET name = 'Apple' WHERE id = 1").expect("the user's self-updating trigger runs as without durafetch");
    let touched: i64 = db.query_row("SELECT touched FROM items WHERE id = 1", [], |r| r.get(0)).unwrap();
    assert_eq!(touched, 1);

    let before = close(&db);
    db.execute_batch("INSERT OR REPLACE INTO items (id, name, a, b) VALUES (10, 'APPLE', 9, 9)").unwrap();
    assert_eq!(recorded(&db, "items", before), [1, 10], "the row the NOCASE name replaced, and the new one");
    let before = close(&db);
    db.execute_batch("INSERT OR REPLACE INTO items (id, name, a, b) VALUES (11, 'kiwi', 2, 2)").unwrap();
    assert_eq!(recorded(&db, "items", before), [2, 11], "a two-column UNIQUE");
    let before = close(&db);
    db.execute_batch("UPDATE OR REPLACE items SET name = 'fig' WHERE id = 11").unwrap();
    assert_eq!(recorded(&db, "items", before), [3, 11], "UPDATE OR REPLACE");
    let before = close(&db);
    db.execute_batch("INSERT INTO items (id, name, a, b) VALUES (20, 'new', 20, NULL), (21, 'other', 20, NULL)").unwrap();
    assert_eq!(recorded(&db, "items", before), [20, 21], "NULLs conflict with nothing");

    // NULL in a rowid table's declared key: each row is its own, by rowid.
    db.execute_batch("INSERT INTO np VALUES (NULL, 'one'), (NULL, 'two'), ('x', 'three')").unwrap();
    let before = close(&db);
    db.execute_batch("INSERT OR REPLACE INTO np VALUES ('x', 'four')").unwrap();
    assert_eq!(recorded(&db, "np", before), [3, 4], "the declared key's REPLACE removes rowid 3");
    let removed: i64 = db.query_row("SELECT count(*) FROM removed", [], |r| r.get(0)).unwrap();
    assert_eq!(removed, 0, "the user's delete trigger does not fire for REPLACE, as without durafetch");
    assert_eq!(recorded(&db, "np", 0), [1, 2, 3, 4]);
    let markers: i64 = db.query_row("SELECT count(*) FROM _durafetch_known WHERE mark = 2 AND gen > 0", [], |r| r.get(0)).unwrap();
    assert_eq!(markers, 4, "each recorded table keeps its marker");

    // Without rowid: a REPLACE through the primary key is the written row's own key.
    db.execute_batch("INSERT INTO wr VALUES ('a', 1, 0), ('b', 2, 0)").unwrap();
    let before = close(&db);
    db.execute_batch("INSERT OR REPLACE INTO wr VALUES ('c', 1, 0)").unwrap();
    assert_eq!(recorded_literals(&db, "wr", before), ["'a'", "'c'"]);

    // A rename that changes only case keeps its triggers.
    db.execute_batch("ALTER TABLE np RENAME TO tmp; ALTER TABLE tmp RENAME TO NP").unwrap();
    sync_native(&db);
    let before = close(&db);
    db.execute_batch("INSERT INTO NP VALUES ('y', 'five')").unwrap();
    assert_eq!(recorded(&db, "NP", before), [5]);
    assert_eq!(sync_native(&db).statements, Vec::<String>::new(), "a second sync finds nothing to do");

    // A sync after the app's schema statement writes markers, and leaves the app's
    // last_insert_rowid() as its own statements left it.
    db.execute_batch("INSERT INTO items (id, name, a, b) VALUES (99, 'last', 99, 99); CREATE TABLE later (x)").unwrap();
    assert!(sync_native(&db).statements.iter().any(|s| s.contains(", 'later', ") && s.ends_with(", 2)")));
    let last: i64 = db.query_row("SELECT last_insert_rowid()", [], |r| r.get(0)).unwrap();
    assert_eq!(last, 99);
}

/// What a hostile review found: a partial UNIQUE index matching several rows, a NOCASE key
/// without rowid, a generated column named `rowid`, a UNIQUE generated column, and an untyped
/// key whose text looks like a number.
#[test]
fn partial_indexes_collations_generated_columns_and_untyped_keys() {
    let db = rusqlite::Connection::open_in_memory().unwrap();
    db.execute_batch(
        "CREATE TABLE p (id INTEGER PRIMARY KEY, u, live, note);
         CREATE UNIQUE INDEX p_live ON p (u) WHERE live;
         CREATE TABLE w (k TEXT COLLATE NOCASE PRIMARY KEY, v) WITHOUT ROWID;
         CREATE TABLE g (a, rowid AS (a % 2));
         CREATE TABLE gu (id INTEGER PRIMARY KEY, a, b AS (a + 0) UNIQUE);
         CREATE TABLE untyped (k PRIMARY KEY, v) WITHOUT ROWID;",
    )
    .unwrap();
    sync_native(&db);
    // A partial index: a row's mark survives another row's conflict check.
    db.execute_batch("INSERT INTO p VALUES (1, 'x', 0, 'a'), (2, 'x', 0, 'b')").unwrap();
    let before = close(&db);
    db.execute_batch("UPDATE p SET note = 'changed' WHERE id = 1; INSERT INTO p VALUES (3, 'x', 0, 'c')").unwrap();
    assert!(recorded(&db, "p", before).contains(&1), "row 1's change survives the conflict check: {:?}", recorded(&db, "p", before));
    // NOCASE key without rowid: REPLACE of 'A' removes 'a', recorded; an update to another case moves the key.
    db.execute_batch("INSERT INTO w VALUES ('a', 1), ('b', 1)").unwrap();
    let before = close(&db);
    db.execute_batch("INSERT OR REPLACE INTO w VALUES ('A', 2); UPDATE w SET k = 'B' WHERE k = 'b'").unwrap();
    assert_eq!(recorded_literals(&db, "w", before), ["'A'", "'B'", "'a'", "'b'"]);
    // An untyped key: the REAL 1.0 replacing the INTEGER 1 leaves a record of each.
    db.execute_batch("CREATE TABLE nt (k PRIMARY KEY, v) WITHOUT ROWID; INSERT INTO nt VALUES (1, 'a')").unwrap();
    sync_native(&db);
    let before = close(&db);
    db.execute_batch("INSERT OR REPLACE INTO nt VALUES (1.0, 'b')").unwrap();
    assert_eq!(recorded_literals(&db, "nt", before), ["1", "1.0"]);
    // A generated column named rowid hides the rowid like any column.
    let mut stmt = db.prepare(TABLE_COLUMNS).unwrap();
    let columns: Vec<ColumnInfo> =
        stmt.query_map(["g"], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?))).unwrap().map(Result::unwrap).collect();
    let g = TableShape::from_columns("g".into(), false, &columns);
    assert_eq!((g.rowid.as_deref(), g.columns.as_slice()), (Some("_rowid_"), ["a".to_owned()].as_slice()));
    // ... and is exported as a value after the written columns.
    assert_eq!(g.exported_columns(), ["a", "rowid"]);
    // UPDATE OR REPLACE through a UNIQUE generated column.
    db.execute_batch("INSERT INTO gu (id, a) VALUES (1, 1), (2, 2)").unwrap();
    let before = close(&db);
    db.execute_batch("UPDATE OR REPLACE gu SET a = 1 WHERE id = 2").unwrap();
    assert_eq!(recorded(&db, "gu", before), [1, 2]);
    // An untyped key: '3' (text) sorts after 5 (integer), and a page ending at 5 must not
    // compare '3' as a number.
    db.execute_batch("INSERT INTO untyped VALUES (5, 'i'), ('3', 't')").unwrap();
    let mut stmt = db.prepare(TABLE_COLUMNS).unwrap();
    let columns: Vec<ColumnInfo> =
        stmt.query_map(["untyped"], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?))).unwrap().map(Result::unwrap).collect();
    let untyped = TableShape::from_columns("untyped".into(), true, &columns);
    let after = [SqlValue::Integer(5)];
    let mut stmt = db.prepare(&untyped.scan_page(Some(&after))).unwrap();
    let next: Vec<String> = stmt.query_map(rusqlite::params![10, "5"], |r| r.get(0)).unwrap().map(Result::unwrap).collect();
    assert_eq!(next, ["'3'"]);
}

/// What a change costs in rows written: one mark for a row not yet marked since the last export,
/// nothing for one already marked, and one opening of the generation per export interval. The
/// head is odd exactly while there are changes to send.
#[test]
fn a_row_is_marked_once_per_export_interval_and_the_head_says_when() {
    let db = rusqlite::Connection::open_in_memory().unwrap();
    db.execute_batch("CREATE TABLE t (id INTEGER PRIMARY KEY, v); CREATE TABLE w (a TEXT, b, v, PRIMARY KEY (a, b)) WITHOUT ROWID")
        .unwrap();
    sync_native(&db);
    let start = close(&db);
    assert_eq!(start % 2, 0);
    assert_eq!(written(&db, "INSERT INTO t VALUES (1, 'a')"), 3, "the row, its mark, the generation's opening");
    assert_eq!(head(&db), start + 1, "odd: something to send");
    assert_eq!(written(&db, "INSERT INTO t VALUES (2, 'b')"), 2, "the row and its mark");
    assert_eq!(written(&db, "UPDATE t SET v = 'c' WHERE id = 1"), 1, "already marked: the row alone");
    assert_eq!(written(&db, "DELETE FROM t WHERE id = 2"), 1, "already marked: the row alone");
    assert_eq!(written(&db, "INSERT INTO w VALUES ('x', 1, 0)"), 2);
    assert_eq!(written(&db, "UPDATE w SET v = v + 1 WHERE a = 'x'"), 1);
    assert_eq!(head(&db), start + 1, "later changes leave the head");
    let closed = close(&db);
    assert_eq!(closed, start + 2);
    assert_eq!(close(&db), closed, "nothing changed: the head stays, and nothing is written");
    assert_eq!(written(&db, "UPDATE t SET v = 'd' WHERE id = 1"), 3, "marked again in the new generation, which it opens");
    assert_eq!(written(&db, "UPDATE t SET v = 'e' WHERE id = 1"), 1);
    let hot: u64 = (0..1000).map(|i| written(&db, &format!("UPDATE w SET v = {i} WHERE a = 'x'"))).sum();
    assert_eq!(hot, 1001, "a hot row: its first update marks it, the 999 others cost nothing more");
    assert_eq!(recorded(&db, "t", closed), [1]);
    assert_eq!(recorded_literals(&db, "w", closed), ["'x'"]);
    assert_eq!(recorded(&db, "t", start), [1, 2], "the deleted row's mark stays: its tombstone");
    // A rolled-back statement takes its marks and the opening with it.
    let closed = close(&db);
    db.execute_batch("BEGIN; INSERT INTO t VALUES (5, 'x'); ROLLBACK").unwrap();
    assert_eq!((head(&db), recorded(&db, "t", closed)), (closed, vec![]));
}

/// A log of the old layout is carried over: its head below the new one, the tables it had
/// marked gone known as gone, its own tables dropped; the next sync records every table anew.
#[test]
fn an_old_log_is_carried_over() {
    let db = rusqlite::Connection::open_in_memory().unwrap();
    db.execute_batch(
        "CREATE TABLE _durafetch_changes (seq INTEGER PRIMARY KEY, tbl TEXT NOT NULL, mark INTEGER NOT NULL DEFAULT 0, k1);
         CREATE TABLE _durafetch_tables (name TEXT PRIMARY KEY, shape TEXT NOT NULL);
         CREATE VIEW _durafetch_sync (tbl, mark, shape) AS SELECT NULL, NULL, NULL WHERE 0;
         INSERT INTO _durafetch_changes (seq, tbl, mark, k1) VALUES (7, 'old''s', 1, NULL), (40, 'kept', 0, 1);
         CREATE TABLE kept (v);",
    )
    .unwrap();
    assert_eq!(db.query_row(LEGACY_PRESENT, [], |r| r.get::<_, i64>(0)).unwrap(), 1);
    let old_head: u64 = db.query_row(LEGACY_HEAD, [], |r| r.get(0)).unwrap();
    let gone: Vec<String> = db.prepare(LEGACY_GONE).unwrap().query_map([], |r| r.get(0)).unwrap().map(Result::unwrap).collect();
    db.execute_batch(LEGACY_DROP).unwrap();
    db.execute_batch(&schema(legacy_initial_head(old_head))).unwrap();
    for name in &gone {
        db.execute(LEGACY_MARK_GONE, [name]).unwrap();
        db.execute(LEGACY_MARK_GONE, [name]).unwrap();
    }
    assert_eq!(db.query_row(LEGACY_PRESENT, [], |r| r.get::<_, i64>(0)).unwrap(), 0);
    assert_eq!(head(&db), 83, "odd, above every old sequence number: readers visit");
    let known: Vec<(String, Option<String>, i64)> = db
        .prepare("SELECT name, shape, mark FROM _durafetch_known")
        .unwrap()
        .query_map([], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))
        .unwrap()
        .map(Result::unwrap)
        .collect();
    assert_eq!(known, [("old's".to_owned(), None, MARK_GONE)], "once");
    assert!(marks(&sync_native(&db), "kept", MARK_REPLACE));
}

/// What the second review found: a STRICT table's `ANY` key keeps 1 and 1.0 apart; a partial
/// UNIQUE index is looked up through, not scanned; an ignored conflict changes nothing, so it
/// leaves the head (no report, no visit).
#[test]
fn strict_any_keys_partial_index_lookups_and_ignored_conflicts() {
    let db = rusqlite::Connection::open_in_memory().unwrap();
    db.execute_batch(
        "CREATE TABLE sa (k ANY PRIMARY KEY, v ANY) STRICT, WITHOUT ROWID;
         CREATE TABLE people (id INTEGER PRIMARY KEY, email TEXT, deleted INTEGER);
         CREATE UNIQUE INDEX live_email ON people (email) WHERE deleted = 0;
         CREATE TABLE tags (id INTEGER PRIMARY KEY, name TEXT UNIQUE);",
    )
    .unwrap();
    sync_native(&db);
    db.execute_batch("INSERT INTO sa VALUES (1, 'a')").unwrap();
    let before = close(&db);
    db.execute_batch("INSERT OR REPLACE INTO sa VALUES (1.0, 'b')").unwrap();
    assert_eq!(recorded_literals(&db, "sa", before), ["1", "1.0"]);

    db.execute_batch(
        "WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < 2000)
         INSERT INTO people SELECT i, 'p' || i, i % 2 FROM n",
    )
    .unwrap();
    let mut insert = db.prepare("INSERT INTO people VALUES (5000, 'new', 0)").unwrap();
    insert.execute([]).unwrap();
    assert_eq!(insert.get_status(rusqlite::StatementStatus::FullscanStep), 0, "the conflict check reads through the partial index");

    db.execute_batch("INSERT INTO tags VALUES (1, 'a')").unwrap();
    let before = close(&db);
    assert_eq!(written(&db, "INSERT OR IGNORE INTO tags VALUES (2, 'a'); INSERT INTO tags VALUES (3, 'a') ON CONFLICT DO NOTHING"), 1);
    assert_eq!(head(&db), before, "nothing changed: the head stays closed");
    assert_eq!(recorded(&db, "tags", before), [1], "the row the conflict named, marked once, resent at worst");
    db.execute_batch("INSERT OR REPLACE INTO tags VALUES (4, 'a')").unwrap();
    assert_eq!((head(&db), recorded(&db, "tags", before)), (before + 1, vec![1, 4]), "a REPLACE opens it through the new row");
}
