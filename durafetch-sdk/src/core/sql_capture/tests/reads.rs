//! What an export reads: values decoded exactly, snapshot pages and change-set pages by bound
//! positions.

use super::*;

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
            params.push(binding(value));
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
    while let Some(row) = first_row(&db, &k.scan_page(after.as_deref()), bind(&after)) {
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
            params.extend(after.iter().flatten().map(binding));
            let Some(row) = first_row(&db, &shape.changed_rows(&set, after.as_deref()), params) else { break };
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
