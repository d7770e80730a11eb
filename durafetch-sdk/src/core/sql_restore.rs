//! The SQL text a restore runs inside a SQLite-backed object, and the schema an export sends so
//! that a restore can make a table again: pure text, tested natively against SQLite.
//!
//! Rows cross into SQL as one bound JSON text per page, unpacked by `json_each`: a JS number
//! cannot hold every 64-bit integer, and one statement per page costs one call, not one per row.

use crate::core::protocol::{SqlRow, SqlValue};
use crate::core::sql_capture::{ident, json_cell};

/// The statements that make the user's tables and their indexes, by table (`tbl_name`), each
/// table's `CREATE TABLE` first. Automatic indexes (of UNIQUE and PRIMARY KEY) have no text and
/// come with their table.
pub const SCHEMA_STATEMENTS: &str = "SELECT tbl_name, sql FROM sqlite_master
    WHERE type IN ('table', 'index') AND sql IS NOT NULL ORDER BY tbl_name, type <> 'table', rowid";

/// Each AUTOINCREMENT table's counter, as text so that all 64 bits cross into JS.
pub const AUTOINCREMENT_COUNTERS: &str = "SELECT name, CAST(seq AS TEXT) FROM sqlite_sequence";

/// A row if the object has `sqlite_sequence`.
pub const HAS_AUTOINCREMENT_TABLE: &str = "SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = 'sqlite_sequence'";

/// Puts table `?1`'s AUTOINCREMENT counter up to `?2` (given as text, all 64 bits), never down:
/// a counter the object has already moved past stays, so that no key is handed out twice. Only
/// once SQLite has made `sqlite_sequence` (see [`HAS_AUTOINCREMENT_TABLE`]), which it does with
/// the first AUTOINCREMENT table.
pub const RAISE_AUTOINCREMENT: &str = "UPDATE sqlite_sequence SET seq = CAST(?2 AS INTEGER) WHERE name = ?1 AND seq < CAST(?2 AS INTEGER)";

/// Gives table `?1` the counter `?2` if it has none: for an AUTOINCREMENT table the restore made
/// (from a backup that had a counter, so AUTOINCREMENT), whose restored rows did not make one.
pub const START_AUTOINCREMENT: &str = "INSERT INTO sqlite_sequence (name, seq) SELECT ?1, CAST(?2 AS INTEGER) \
     WHERE NOT EXISTS (SELECT 1 FROM sqlite_sequence WHERE name = ?1)";

/// Rows of a user table, counted.
pub fn count_rows(table: &str) -> String {
    format!("SELECT count(*) FROM {}", ident(table))
}

/// Whether `statement` is one a restore may run to make a table: `CREATE TABLE` or
/// `CREATE [UNIQUE] INDEX`, and nothing after it. A restore runs the schema its backup captured;
/// anything else (a DROP, a trigger, a second statement) is refused.
pub fn is_schema_statement(statement: &str) -> bool {
    let words: Vec<String> = statement.split_whitespace().take(3).map(str::to_ascii_uppercase).collect();
    let starts = matches!(words.as_slice(), [create, table, ..] if create == "CREATE" && (table == "TABLE" || table == "INDEX"))
        || matches!(words.as_slice(), [create, unique, index] if create == "CREATE" && unique == "UNIQUE" && index == "INDEX");
    // One statement: SQLite stores each without a trailing `;`, and a `;` inside a literal or
    // a quoted name is refused with the rest, which the capture never produces.
    starts && !statement.contains(';')
}

/// The statement that writes a page of rows into `table`, for the page's `columns` (those the
/// table has); `with_rowid`, the name that reaches the rowid, for a table that declares no key,
/// whose rows are told apart by their rowid alone (a declared key's rows are written by their
/// columns, and take new rowids: a backup made before rowid tables were keyed by their rowid holds
/// the declared key's literals there).
///
/// A row that meets one the table holds under its declared `key` (its columns as the table
/// names them) is written over it (an upsert: the key's own columns are left alone), never
/// deleted and inserted again as `REPLACE` would: a delete would cascade through the user's
/// foreign keys into rows the restore has already written. A row that meets another row on a
/// UNIQUE column instead fails the statement: writing over that row would change its key. A
/// table without a declared key meets rows on its rowid.
/// Its one binding is [`rows_json`]'s text.
pub fn insert_rows(table: &str, columns: &[String], with_rowid: Option<&str>, key: &[String]) -> String {
    let mut names: Vec<String> = Vec::new();
    let mut exprs: Vec<String> = Vec::new();
    if let Some(rowid) = with_rowid {
        names.push(rowid.into());
        exprs.push("json_extract(value, '$[0]')".into());
    }
    let first = usize::from(with_rowid.is_some());
    for (i, column) in columns.iter().enumerate() {
        names.push(ident(column));
        exprs.push(json_cell("value", first + i));
    }
    if names.is_empty() {
        // A table of no columns the page names cannot be: every table has one. Write nothing.
        return "SELECT 0 WHERE 0".into();
    }
    let set: Vec<String> = columns
        .iter()
        .filter(|c| !key.iter().any(|k| k.eq_ignore_ascii_case(c)))
        .map(|c| format!("{0} = excluded.{0}", ident(c)))
        .collect();
    let target = if key.is_empty() { String::new() } else { format!("({}) ", key.iter().map(|k| ident(k)).collect::<Vec<_>>().join(", ")) };
    let action = if set.is_empty() { "DO NOTHING".to_owned() } else { format!("DO UPDATE SET {}", set.join(", ")) };
    // `WHERE true`: without it, SQLite would read `ON CONFLICT` as a join's `ON`.
    format!(
        "INSERT INTO {} ({}) SELECT {} FROM json_each(?1) WHERE true ON CONFLICT {target}{action}",
        ident(table),
        names.join(", "),
        exprs.join(", ")
    )
}

/// The tables a table's foreign keys name: `?1` is the table. Bound, as a name is stored data.
pub const FOREIGN_KEY_PARENTS: &str = r#"SELECT DISTINCT "table" FROM pragma_foreign_key_list(?1)"#;

/// The rows of table `?1` that break a foreign key: table, rowid, parent table.
pub const FOREIGN_KEY_CHECK: &str = r#"SELECT "table", rowid, parent FROM pragma_foreign_key_check(?1)"#;

/// `tables` (each with the tables its foreign keys name) ordered so that every table comes after
/// the tables it names: rows are written into parents before children, and children are dropped
/// before parents (the reverse), so that no cascade reaches rows the restore means to keep. Among
/// tables free to go, name order; the tables of a cycle, which no order satisfies, go last in name
/// order (the restore defers foreign key checks to its end, so they are still written whole). A
/// name is matched as SQLite matches names, without regard to ASCII case; a parent outside
/// `tables` constrains nothing.
pub fn parents_first(tables: &[(String, Vec<String>)]) -> Vec<String> {
    let key = |name: &str| name.to_ascii_lowercase();
    let mut left: Vec<&(String, Vec<String>)> = tables.iter().collect();
    left.sort_by(|a, b| a.0.cmp(&b.0));
    let mut order: Vec<String> = Vec::with_capacity(left.len());
    while !left.is_empty() {
        let waiting = |parent: &String, left: &[&(String, Vec<String>)], me: &str| {
            key(parent) != key(me) && left.iter().any(|(name, _)| key(name) == key(parent))
        };
        let ready = left.iter().position(|(name, parents)| !parents.iter().any(|p| waiting(p, &left, name)));
        let next = left.remove(ready.unwrap_or(0));
        order.push(next.0.clone());
    }
    order
}

/// The rows of a page as the JSON text [`insert_rows`] reads: an array per row, the rowid first
/// when `with_rowid`, then the values at `picked` (the page's columns the table has). An INTEGER
/// is a JSON integer, a REAL a number with a fraction or exponent (∞ as `9e999`, which SQLite
/// reads as infinity), TEXT a string and a BLOB `{"b": hex}`. Deleted rows (no values) are
/// skipped. Fails on a row key that is not a rowid where one is needed.
pub fn rows_json(rows: &[SqlRow], picked: &[usize], with_rowid: bool) -> Result<String, String> {
    let mut text = String::from("[");
    for row in rows {
        let Some(values) = &row.v else { continue };
        if text.len() > 1 {
            text.push(',');
        }
        text.push('[');
        let mut cells: Vec<String> = Vec::with_capacity(picked.len() + 1);
        if with_rowid {
            let rowid: i64 = row.k.parse().map_err(|_| format!("row key {:?} is not a rowid", row.k))?;
            cells.push(rowid.to_string());
        }
        for &i in picked {
            cells.push(cell(values.get(i).unwrap_or(&SqlValue::Null)));
        }
        text.push_str(&cells.join(","));
        text.push(']');
    }
    text.push(']');
    Ok(text)
}

fn cell(value: &SqlValue) -> String {
    match value {
        SqlValue::Null => "null".into(),
        SqlValue::Integer(i) => i.to_string(),
        SqlValue::Real(r) if r.is_infinite() => if *r > 0.0 { "9e999" } else { "-9e999" }.into(),
        // serde_json writes a finite double exactly, with a fraction or an exponent (3.0, 1e300).
        SqlValue::Real(r) => serde_json::Value::from(*r).to_string(),
        SqlValue::Text(t) => serde_json::Value::from(t.as_str()).to_string(),
        SqlValue::Blob(b) => format!(r#"{{"b":"{}"}}"#, b.iter().map(|x| format!("{x:02x}")).collect::<String>()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rusqlite::types::Value;

    #[test]
    fn only_single_create_table_and_index_statements_are_schema() {
        for ok in
            ["CREATE TABLE t (a)", "create table \"x\"(a INTEGER PRIMARY KEY)", "CREATE UNIQUE INDEX i ON t (a)", "CREATE INDEX i ON t(a)"]
        {
            assert!(is_schema_statement(ok), "{ok}");
        }
        for bad in [
            "DROP TABLE t",
            "CREATE TRIGGER x AFTER INSERT ON t BEGIN SELECT 1; END",
            "CREATE TABLE t (a); DROP TABLE u",
            "CREATE VIEW v AS SELECT 1",
            "",
        ] {
            assert!(!is_schema_statement(bad), "{bad}");
        }
    }

    #[test]
    fn parents_come_before_their_children_and_cycles_last() {
        let t = |name: &str, parents: &[&str]| (name.to_owned(), parents.iter().map(|p| p.to_string()).collect::<Vec<_>>());
        // The names of a user's reproduction: the child sorts first.
        assert_eq!(parents_first(&[t("comments", &["posts"]), t("posts", &[])]), ["posts", "comments"]);
        assert_eq!(
            parents_first(&[t("c", &["B", "a"]), t("b", &["a"]), t("a", &[]), t("self", &["self"]), t("x", &["gone"])]),
            ["a", "b", "c", "self", "x"]
        );
        // A cycle waits for nothing outside it, and never blocks the rest.
        assert_eq!(parents_first(&[t("p", &["q"]), t("q", &["p"]), t("r", &[]), t("s", &["r"])]), ["r", "s", "p", "q"]);
    }

    /// A page written over a parent's rows leaves the rows of its children alone, where
    /// `INSERT OR REPLACE` would delete them through `ON DELETE CASCADE`; a page of a table whose
    /// only column is its key writes nothing twice.
    #[test]
    fn rows_written_over_others_cascade_nowhere() {
        let db = rusqlite::Connection::open_in_memory().unwrap();
        db.execute_batch(
            "PRAGMA foreign_keys = ON;
             CREATE TABLE parent (id INTEGER PRIMARY KEY, name TEXT UNIQUE);
             CREATE TABLE kid (id INTEGER PRIMARY KEY, parent INTEGER REFERENCES parent (id) ON DELETE CASCADE);
             CREATE TABLE only_key (k TEXT PRIMARY KEY);
             INSERT INTO parent VALUES (1, 'one'); INSERT INTO kid VALUES (10, 1); INSERT INTO only_key VALUES ('a');",
        )
        .unwrap();
        let columns = ["id".to_string(), "name".to_string()];
        let page = [SqlRow { k: "1".into(), v: Some(vec![SqlValue::Integer(1), SqlValue::Text("uno".into())]) }];
        db.execute(&insert_rows("parent", &columns, None, &columns[..1]), [rows_json(&page, &[0, 1], false).unwrap()]).unwrap();
        let kids: i64 = db.query_row("SELECT count(*) FROM kid", [], |r| r.get(0)).unwrap();
        let name: String = db.query_row("SELECT name FROM parent WHERE id = 1", [], |r| r.get(0)).unwrap();
        assert_eq!((kids, name.as_str()), (1, "uno"));
        let page = [SqlRow { k: "'a'".into(), v: Some(vec![SqlValue::Text("a".into())]) }];
        db.execute(&insert_rows("only_key", &["k".to_string()], None, &["k".to_string()]), [rows_json(&page, &[0], false).unwrap()])
            .unwrap();
        let keys: i64 = db.query_row("SELECT count(*) FROM only_key", [], |r| r.get(0)).unwrap();
        assert_eq!(keys, 1);
        // Another row under the same UNIQUE name: refused, not written over the row that has it.
        db.execute("INSERT INTO parent VALUES (2, 'two')", []).unwrap();
        let clash = [SqlRow { k: "3".into(), v: Some(vec![SqlValue::Integer(3), SqlValue::Text("two".into())]) }];
        assert!(db.execute(&insert_rows("parent", &columns, None, &columns[..1]), [rows_json(&clash, &[0, 1], false).unwrap()]).is_err());
        let two: i64 = db.query_row("SELECT id FROM parent WHERE name = 'two'", [], |r| r.get(0)).unwrap();
        assert_eq!(two, 2);
        let parents: Vec<String> =
            db.prepare(FOREIGN_KEY_PARENTS).unwrap().query_map(["kid"], |r| r.get(0)).unwrap().map(Result::unwrap).collect();
        assert_eq!(parents, ["parent"]);
        let broken = |db: &rusqlite::Connection| -> Vec<(String, i64, String)> {
            let mut stmt = db.prepare(FOREIGN_KEY_CHECK).unwrap();
            stmt.query_map(["kid"], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?))).unwrap().map(Result::unwrap).collect()
        };
        assert!(broken(&db).is_empty());
        db.execute_batch("PRAGMA foreign_keys = OFF; INSERT INTO kid VALUES (11, 99);").unwrap();
        assert_eq!(broken(&db), [("kid".to_string(), 11, "parent".to_string())]);
    }

    /// An AUTOINCREMENT counter goes up to the backup's, never down; a table without one gets one
    /// only when started; the counters read back as the export reads them.
    #[test]
    fn autoincrement_counters_are_raised_never_lowered() {
        let db = rusqlite::Connection::open_in_memory().unwrap();
        db.execute_batch(
            "CREATE TABLE plain (id INTEGER PRIMARY KEY, v);
             CREATE TABLE fresh (id INTEGER PRIMARY KEY AUTOINCREMENT, v);
             CREATE TABLE used (id INTEGER PRIMARY KEY AUTOINCREMENT, v); INSERT INTO used (v) VALUES (1), (2), (3);",
        )
        .unwrap();
        assert_eq!(db.query_row(HAS_AUTOINCREMENT_TABLE, [], |r| r.get::<_, i64>(0)).unwrap(), 1);
        let raise = |table: &str, counter: i64, start: bool| {
            db.execute(RAISE_AUTOINCREMENT, [table, &counter.to_string()]).unwrap();
            if start {
                db.execute(START_AUTOINCREMENT, [table, &counter.to_string()]).unwrap();
            }
        };
        raise("fresh", 9_007_199_254_740_993, true);
        raise("used", 2, true);
        raise("plain", 5, false);
        let mut stmt = db.prepare(AUTOINCREMENT_COUNTERS).unwrap();
        let counters: Vec<(String, String)> = stmt.query_map([], |r| Ok((r.get(0)?, r.get(1)?))).unwrap().map(Result::unwrap).collect();
        assert_eq!(counters, [("used".into(), "3".into()), ("fresh".into(), "9007199254740993".into())]);
        raise("used", 7, false);
        db.execute("INSERT INTO used (v) VALUES (8)", []).unwrap();
        assert_eq!(db.query_row("SELECT max(id) FROM used", [], |r| r.get::<_, i64>(0)).unwrap(), 8);
    }

    /// Every SQLite type goes in exactly as the export read it, the rowid of a keyless table
    /// included, and a second page replaces rows by key.
    #[test]
    fn rows_are_written_with_their_exact_types() {
        let db = rusqlite::Connection::open_in_memory().unwrap();
        db.execute_batch("CREATE TABLE keyed (id INTEGER PRIMARY KEY, v); CREATE TABLE keyless (v, w)").unwrap();
        let values = [
            SqlValue::Integer(i64::MIN),
            SqlValue::Integer(i64::MAX),
            SqlValue::Integer((1 << 53) + 1),
            SqlValue::Real(3.0),
            SqlValue::Real(-0.5e-300),
            SqlValue::Real(f64::INFINITY),
            SqlValue::Real(f64::NEG_INFINITY),
            SqlValue::Text("a\"b\\c\u{0}é😀{\"b\":\"00\"}".into()),
            SqlValue::Text("[1,2]".into()),
            SqlValue::Blob(vec![0, 1, 255]),
            SqlValue::Blob(vec![]),
            SqlValue::Null,
        ];
        let keyed: Vec<SqlRow> = values
            .iter()
            .enumerate()
            .map(|(i, v)| SqlRow { k: i.to_string(), v: Some(vec![SqlValue::Integer(i as i64), v.clone()]) })
            .collect();
        let columns = ["id".to_string(), "v".to_string()];
        db.execute(&insert_rows("keyed", &columns, None, &columns[..1]), [rows_json(&keyed, &[0, 1], false).unwrap()]).unwrap();
        let keyless: Vec<SqlRow> =
            values.iter().enumerate().map(|(i, v)| SqlRow { k: (100 + i).to_string(), v: Some(vec![v.clone(), SqlValue::Null]) }).collect();
        db.execute(&insert_rows("keyless", &columns[1..], Some("rowid"), &[]), [rows_json(&keyless, &[0], true).unwrap()]).unwrap();

        let read = |query: &str| -> Vec<(i64, Value)> {
            let mut stmt = db.prepare(query).unwrap();
            stmt.query_map([], |r| Ok((r.get(0)?, r.get(1)?))).unwrap().map(Result::unwrap).collect()
        };
        let expected: Vec<Value> = values
            .iter()
            .map(|v| match v {
                SqlValue::Null => Value::Null,
                SqlValue::Integer(i) => Value::Integer(*i),
                SqlValue::Real(r) => Value::Real(*r),
                SqlValue::Text(t) => Value::Text(t.clone()),
                SqlValue::Blob(b) => Value::Blob(b.clone()),
            })
            .collect();
        let got = read("SELECT id, v FROM keyed ORDER BY id");
        assert_eq!(got.iter().map(|(_, v)| v.clone()).collect::<Vec<_>>(), expected);
        let got = read("SELECT rowid, v FROM keyless ORDER BY rowid");
        assert_eq!(got.iter().map(|(id, _)| *id).collect::<Vec<_>>(), (100..100 + values.len() as i64).collect::<Vec<_>>());
        assert_eq!(got.iter().map(|(_, v)| v.clone()).collect::<Vec<_>>(), expected);

        let again = [
            SqlRow { k: "1".into(), v: Some(vec![SqlValue::Integer(1), SqlValue::Text("new".into())]) },
            SqlRow { k: "2".into(), v: None },
        ];
        db.execute(&insert_rows("keyed", &columns, None, &columns[..1]), [rows_json(&again, &[0, 1], false).unwrap()]).unwrap();
        assert_eq!(read("SELECT id, v FROM keyed WHERE id = 1"), [(1, Value::Text("new".into()))]);
        assert_eq!(read("SELECT count(*), 0 FROM keyed")[0].0, values.len() as i64, "a deleted row is not written");
        assert!(rows_json(&[SqlRow { k: "'x'".into(), v: Some(vec![]) }], &[], true).is_err());
        // An INTEGER PRIMARY KEY is the rowid: naming both writes the one value.
        let both = [SqlRow { k: "7".into(), v: Some(vec![SqlValue::Integer(7), SqlValue::Text("seven".into())]) }];
        db.execute(&insert_rows("keyed", &columns, Some("rowid"), &columns[..1]), [rows_json(&both, &[0, 1], true).unwrap()]).unwrap();
        assert_eq!(read("SELECT rowid, v FROM keyed WHERE id = 7"), [(7, Value::Text("seven".into()))]);
    }

    #[test]
    fn the_schema_lists_each_table_then_its_indexes() {
        let db = rusqlite::Connection::open_in_memory().unwrap();
        db.execute_batch("CREATE TABLE b (x UNIQUE); CREATE INDEX b_x ON b (x); CREATE TABLE a (y PRIMARY KEY)").unwrap();
        let mut stmt = db.prepare(SCHEMA_STATEMENTS).unwrap();
        let rows: Vec<(String, String)> = stmt.query_map([], |r| Ok((r.get(0)?, r.get(1)?))).unwrap().map(Result::unwrap).collect();
        assert_eq!(
            rows,
            [
                ("a".into(), "CREATE TABLE a (y PRIMARY KEY)".into()),
                ("b".into(), "CREATE TABLE b (x UNIQUE)".into()),
                ("b".into(), "CREATE INDEX b_x ON b (x)".into())
            ]
        );
        assert!(rows.iter().all(|(_, sql)| is_schema_statement(sql)));
    }
}
