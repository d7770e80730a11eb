//! The capture against a real SQLite: the triggers, the sync, the reads and what they cost.

use std::collections::BTreeMap;

use super::*;
use crate::core::protocol::SqlValue;

fn shape(name: &str, without_rowid: bool, columns: &[(&str, u32)]) -> TableShape {
    let columns: Vec<ColumnInfo> = columns.iter().map(|(c, pk)| (c.to_string(), *pk, String::new(), 0)).collect();
    TableShape::from_columns(name.into(), without_rowid, &columns)
}

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
fn values_decode_exactly_from_their_json_form() {
    use serde_json::json;
    assert_eq!(decode_value("integer", &json!("-9223372036854775808")), Ok(SqlValue::Integer(i64::MIN)));
    assert_eq!(decode_value("integer", &json!("9007199254740993")), Ok(SqlValue::Integer(9_007_199_254_740_993)));
    assert_eq!(decode_value("real", &json!(3)), Ok(SqlValue::Real(3.0)), "JS writes 3.0 as 3; typeof keeps it REAL");
    assert_eq!(decode_value("real", &json!(0.1)), Ok(SqlValue::Real(0.1)));
    assert_eq!(decode_value("real", &json!("-inf")), Ok(SqlValue::Real(f64::NEG_INFINITY)));
    assert_eq!(decode_value("text", &json!("a\u{0}é")), Ok(SqlValue::Text("a\u{0}é".into())));
    assert_eq!(decode_value("blob", &json!("00FF10")), Ok(SqlValue::Blob(vec![0, 255, 16])));
    assert_eq!(decode_value("blob", &json!("")), Ok(SqlValue::Blob(vec![])));
    assert_eq!(decode_value("null", &json!(null)), Ok(SqlValue::Null));
    for (kind, bad) in [
        ("integer", json!(1.5)),
        ("integer", json!("x")),
        ("blob", json!("0")),
        ("blob", json!("zz")),
        ("real", json!("nan")),
        ("date", json!(1)),
    ] {
        assert!(decode_value(kind, &bad).is_err(), "{kind} {bad}");
    }
}

/// Whether `plan` writes a marker of `kind` for `table`.
fn marks(plan: &SyncPlan, table: &str, kind: i64) -> bool {
    plan.statements.iter().any(|s| {
        s.starts_with(&format!("INSERT INTO {MARK_VIEW}")) && s.contains(&format!(", '{table}', ")) && s.ends_with(&format!(", {kind})"))
    })
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

/// A snapshot's position is bound, never spliced: a column named `rowid` whose text is a
/// statement pages like any other, and a table without rowid pages by its key's exact values.
#[test]
fn snapshots_page_by_bound_positions() {
    let db = rusqlite::Connection::open_in_memory().unwrap();
    db.execute_batch(
        "CREATE TABLE victims (v); INSERT INTO victims VALUES (1);
         CREATE TABLE rt (rowid TEXT, v);
         INSERT INTO rt VALUES ('0 LIMIT 0; DELETE FROM victims; SELECT 1 FROM rt AS t WHERE 0', 1), ('1; DROP TABLE victims', 2), ('x', 3);
         CREATE TABLE hidden (rowid, _rowid_, oid);
         CREATE TABLE k (a TEXT, b BLOB, c INTEGER, PRIMARY KEY (a, b, c)) WITHOUT ROWID;
         INSERT INTO k VALUES ('it''s', X'00', 9007199254740993), ('it''s', X'00', 9007199254740994), ('it''s', X'01', 1), ('z', X'', -1);",
    )
    .unwrap();
    let columns = |table: &str| -> Vec<ColumnInfo> {
        let mut stmt = db.prepare(TABLE_COLUMNS).unwrap();
        stmt.query_map([table], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?))).unwrap().map(Result::unwrap).collect()
    };
    let rt = TableShape::from_columns("rt".into(), false, &columns("rt"));
    assert_eq!(rt.rowid.as_deref(), Some("_rowid_"));
    assert!(rt.recordable().is_ok());
    let hidden = TableShape::from_columns("hidden".into(), false, &columns("hidden"));
    assert!(hidden.recordable().unwrap_err().contains("rowid, _rowid_ and oid"));
    db.execute_batch("CREATE TABLE hidden_but_keyed (rowid, _rowid_, oid, id INTEGER PRIMARY KEY)").unwrap();
    let keyed = TableShape::from_columns("hidden_but_keyed".into(), false, &columns("hidden_but_keyed"));
    assert_eq!(keyed.rowid.as_deref(), Some(r#""id""#), "an INTEGER PRIMARY KEY is the rowid");

    let bind = |after: &Option<Vec<SqlValue>>| -> Vec<rusqlite::types::Value> {
        let mut params = vec![rusqlite::types::Value::Integer(1)];
        for value in after.iter().flatten() {
            params.push(match scan_binding(value) {
                ScanBinding::Text(t) => rusqlite::types::Value::Text(t),
                ScanBinding::Real(r) => rusqlite::types::Value::Real(r),
                ScanBinding::Blob(b) => rusqlite::types::Value::Blob(b.to_vec()),
                ScanBinding::Null => rusqlite::types::Value::Null,
            });
        }
        params
    };
    // Pages of one row: the position of each is the rowid, bound.
    let mut seen = Vec::new();
    let mut after: Option<Vec<SqlValue>> = None;
    loop {
        let query = rt.scan_page(after.as_deref());
        let mut stmt = db.prepare(&query).unwrap();
        let rows: Vec<(String, String)> =
            stmt.query_map(rusqlite::params_from_iter(bind(&after)), |r| Ok((r.get(0)?, r.get(5)?))).unwrap().map(Result::unwrap).collect();
        let Some((position, v)) = rows.into_iter().next() else { break };
        seen.push(v);
        after = rt.page_end(Some(&position), &[]);
    }
    assert_eq!(seen, ["1", "2", "3"]);
    let victims: i64 = db.query_row("SELECT count(*) FROM victims", [], |r| r.get(0)).unwrap();
    assert_eq!(victims, 1);

    // Without rowid: the last row's key values, bound exactly (a 54-bit integer, a blob).
    let k = TableShape::from_columns("k".into(), true, &columns("k"));
    let mut keys = Vec::new();
    let mut after: Option<Vec<SqlValue>> = None;
    loop {
        let mut stmt = db.prepare(&k.scan_page(after.as_deref())).unwrap();
        let rows: Vec<Vec<rusqlite::types::Value>> = stmt
            .query_map(rusqlite::params_from_iter(bind(&after)), |r| (0..9).map(|i| r.get(i)).collect())
            .unwrap()
            .map(Result::unwrap)
            .collect();
        let Some(row) = rows.into_iter().next() else { break };
        let as_text = |v: &rusqlite::types::Value| match v {
            rusqlite::types::Value::Text(t) => t.clone(),
            other => panic!("{other:?}"),
        };
        keys.push(row[..3].iter().map(as_text).collect::<Vec<_>>().join(","));
        let values: Vec<SqlValue> = (0..3)
            .map(|c| decode_value(&as_text(&row[3 + 2 * c]), &serde_json::Value::String(as_text(&row[4 + 2 * c]))).unwrap())
            .collect();
        after = k.page_end(None, &values);
    }
    assert_eq!(keys, ["'it''s',X'00',9007199254740993", "'it''s',X'00',9007199254740994", "'it''s',X'01',1", "'z',X'',-1"]);
}

/// The tables of `db` as the runtime reads them, and a sync applied.
fn sync_native(db: &rusqlite::Connection) -> SyncPlan {
    db.execute_batch(&schema(0)).unwrap();
    let names: Vec<(String, bool)> = {
        let mut stmt = db.prepare(LIST_TABLES).unwrap();
        stmt.query_map([], |r| Ok((r.get(0)?, r.get::<_, i64>(1)? != 0))).unwrap().map(Result::unwrap).collect()
    };
    let tables: Vec<TableShape> = names
        .into_iter()
        .map(|(name, wr)| {
            let mut stmt = db.prepare(TABLE_COLUMNS).unwrap();
            let columns: Vec<ColumnInfo> =
                stmt.query_map([&name], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?))).unwrap().map(Result::unwrap).collect();
            let mut stmt = db.prepare(UNIQUE_INDEX_COLUMNS).unwrap();
            let unique: Vec<IndexColumn> = stmt
                .query_map([&name], |r| {
                    Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get::<_, Option<String>>(3)?.unwrap_or_default(), r.get(4)?, r.get(5)?))
                })
                .unwrap()
                .map(Result::unwrap)
                .collect();
            TableShape::from_columns(name, wr, &columns).with_unique_indexes(&unique)
        })
        .collect();
    let pairs = |query: &str| -> BTreeMap<String, String> {
        let mut stmt = db.prepare(query).unwrap();
        stmt.query_map([], |r| Ok((r.get(0)?, r.get(1)?))).unwrap().map(Result::unwrap).collect()
    };
    let known: Vec<KnownTable> = {
        let mut stmt = db.prepare(KNOWN_TABLES).unwrap();
        stmt.query_map([], |r| Ok(KnownTable { id: r.get(0)?, name: r.get(1)?, shape: r.get(2)?, mark: r.get(3)?, gen: r.get(4)? }))
            .unwrap()
            .map(Result::unwrap)
            .collect()
    };
    let plan = plan_sync(&tables, &known, &pairs(OUR_TRIGGERS));
    for statement in &plan.statements {
        db.execute_batch(statement).unwrap();
    }
    plan
}

/// The change set of `table`.
fn set_of(db: &rusqlite::Connection, table: &str) -> String {
    change_set(db.query_row("SELECT id FROM _durafetch_known WHERE name = ?1", [table], |r| r.get(0)).unwrap())
}

/// The keys of `table`'s rows marked in a generation above `after`, as SQL literals in order.
fn recorded_literals(db: &rusqlite::Connection, table: &str, after: i64) -> Vec<String> {
    let set = ident(&set_of(db, table));
    let key = if db.prepare(&format!("SELECT k FROM {set}")).is_ok() { "quote(k)" } else { "quote(k1)" };
    let mut stmt = db.prepare(&format!("SELECT {key} FROM {set} WHERE gen > ?1 ORDER BY 1")).unwrap();
    stmt.query_map([after], |r| r.get(0)).unwrap().map(Result::unwrap).collect()
}

/// The rowids of `table`'s rows marked in a generation above `after`, in order.
fn recorded(db: &rusqlite::Connection, table: &str, after: i64) -> Vec<i64> {
    let mut rowids: Vec<i64> = recorded_literals(db, table, after).iter().map(|k| k.parse().unwrap()).collect();
    rowids.sort();
    rowids
}

/// What an export does first: closes the generation; answers the head a reader's cursor becomes.
fn close(db: &rusqlite::Connection) -> i64 {
    let (update, select) = CLOSE_GENERATION.split_once(';').unwrap();
    db.execute(update, []).unwrap();
    db.query_row(select, [], |r| r.get(0)).unwrap()
}

fn head(db: &rusqlite::Connection) -> i64 {
    db.query_row(HEAD, [], |r| r.get(0)).unwrap()
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

/// Rows written by `statements`, triggers included, as SQLite counts them.
fn written(db: &rusqlite::Connection, statements: &str) -> u64 {
    let before = db.total_changes();
    db.execute_batch(statements).unwrap();
    db.total_changes() - before
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

/// An export reads a change set in pages by its exact key values: an untyped key's 1 and 1.0,
/// text that looks like a number, a blob, each page's last position bound, never spliced; a
/// mark whose row is gone reads as a tombstone.
#[test]
fn changed_rows_page_through_exact_positions_and_find_tombstones() {
    let db = rusqlite::Connection::open_in_memory().unwrap();
    db.execute_batch("CREATE TABLE u (k PRIMARY KEY, v) WITHOUT ROWID; CREATE TABLE r (v)").unwrap();
    sync_native(&db);
    let from = close(&db);
    db.execute_batch(
        "INSERT INTO u VALUES (1, 'int'), ('1', 'text'), (X'01', 'blob'), (2.5, 'real'), ('x''); DROP TABLE r; --', 'hostile');
         UPDATE u SET k = 1.0 WHERE k = 1;
         DELETE FROM u WHERE k = X'01';
         INSERT INTO r VALUES ('a'), ('b'), ('c'); DELETE FROM r WHERE v = 'b';",
    )
    .unwrap();
    let read_all = |table: &str| -> Vec<(String, Option<String>)> {
        let mut columns = db.prepare(TABLE_COLUMNS).unwrap();
        let columns: Vec<ColumnInfo> =
            columns.query_map([table], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?))).unwrap().map(Result::unwrap).collect();
        let wr: bool = db.query_row("SELECT wr FROM pragma_table_list WHERE name = ?1", [table], |r| r.get(0)).unwrap();
        let shape = TableShape::from_columns(table.into(), wr, &columns);
        let set = set_of(&db, table);
        let positions = shape.change_set_key_len();
        let mut after: Option<Vec<SqlValue>> = None;
        let mut seen = Vec::new();
        loop {
            let mut params = vec![rusqlite::types::Value::Integer(from), rusqlite::types::Value::Integer(1)];
            params.extend(after.iter().flatten().map(|v| match scan_binding(v) {
                ScanBinding::Text(t) => rusqlite::types::Value::Text(t),
                ScanBinding::Real(r) => rusqlite::types::Value::Real(r),
                ScanBinding::Blob(b) => rusqlite::types::Value::Blob(b.to_vec()),
                ScanBinding::Null => rusqlite::types::Value::Null,
            }));
            let mut stmt = db.prepare(&shape.changed_rows(&set, after.as_deref())).unwrap();
            let width = stmt.column_count();
            let rows: Vec<Vec<rusqlite::types::Value>> = stmt
                .query_map(rusqlite::params_from_iter(params), |r| (0..width).map(|i| r.get(i)).collect())
                .unwrap()
                .map(Result::unwrap)
                .collect();
            let Some(row) = rows.into_iter().next() else { break };
            let text = |v: &rusqlite::types::Value| match v {
                rusqlite::types::Value::Text(t) => t.clone(),
                rusqlite::types::Value::Integer(i) => i.to_string(),
                other => panic!("{other:?}"),
            };
            let json = |v: &rusqlite::types::Value| match v {
                rusqlite::types::Value::Real(r) => serde_json::json!(r),
                other => serde_json::Value::String(text(other)),
            };
            after = Some((0..positions).map(|i| decode_value(&text(&row[2 * i]), &json(&row[2 * i + 1])).unwrap()).collect());
            let key = text(&row[2 * positions]);
            let present = text(&row[2 * positions + 1]) == "1";
            let value = present.then(|| text(row.last().unwrap()));
            seen.push((key, value));
        }
        seen
    };
    let mut u = read_all("u");
    u.sort();
    let expect: Vec<(String, Option<String>)> = [
        ("'1'", Some("text")),
        ("'x''); DROP TABLE r; --'", Some("hostile")),
        ("1", None),
        ("1.0", Some("int")),
        ("2.5", Some("real")),
        ("X'01'", None),
    ]
    .iter()
    .map(|(k, v)| (k.to_string(), v.map(str::to_owned)))
    .collect();
    assert_eq!(u, expect);
    let r = read_all("r");
    assert_eq!(r, [("1".to_owned(), Some("a".to_owned())), ("2".to_owned(), None), ("3".to_owned(), Some("c".to_owned()))]);
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
