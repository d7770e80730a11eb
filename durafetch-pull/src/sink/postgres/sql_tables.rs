//! The SQL tables of SQLite-backed objects in PostgreSQL: as in the file, one table per
//! (class, table), `<class>.<table>`, holding every object's rows with `do_id`, `_row_key` and
//! `_pull_gen`, then the source's columns (named as in the file), mapped in `sql_tables`.
//!
//! SQLite lets each value of a column have its own type; PostgreSQL gives a column one. A
//! column takes the type of the first value it holds (INTEGER `bigint`, REAL `double
//! precision`, TEXT `text`, BLOB `bytea`), and is added only then: until a value arrives, its
//! rows hold NULL there by its absence. A value of another type turns the column into `jsonb`
//! holding each value in the wire's exact form (`docs/protocol.md`), so nothing is lost or
//! silently converted, the values already there included (`columns::ColumnType::to_json`).
//!
//! Schema changes take an advisory lock on the table first, and every page reads the columns
//! afresh, so pullers of other parts that write the same table never trip over each other.

use std::collections::HashMap;

use durafetch_sdk::core::protocol::{SqlPage, SqlValue};
use postgres::types::{ToSql, Type};
use postgres::{GenericClient, Transaction};

use crate::sink::interface::ApplyStats;
use crate::sink::naming::{ident, local_table_name, postgres_column, postgres_name};
use crate::sink::plan::last_per_key;
use crate::sink::plan::row_json;
use crate::sink::plan::ObjectWrite;
use crate::sink::postgres::columns::{column_array, columns, fit_columns, lock_table, Cell, ColumnType, FittedColumns};
use crate::sink::postgres::copy::copy_rows;

pub(crate) const SQL_SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS sql_tables (
    worker_name text NOT NULL,
    class_name text NOT NULL,
    table_name text NOT NULL,
    local_table text NOT NULL,
    PRIMARY KEY (worker_name, class_name, table_name)
);
";

/// The local table of `table` for the download's class, made if `create`; `None` if it does
/// not exist and was not to be made.
fn local_table(client: &mut impl GenericClient, write: &ObjectWrite, table: &str, create: bool) -> Result<Option<String>, postgres::Error> {
    let known = client.query_opt(
        "SELECT local_table FROM sql_tables WHERE worker_name = $1 AND class_name = $2 AND table_name = $3",
        &[&write.worker, &write.class, &table],
    )?;
    if let Some(row) = known {
        return Ok(Some(row.get(0)));
    }
    if !create {
        return Ok(None);
    }
    let local = postgres_name(&local_table_name(&write.class, table));
    lock_table(client, &local)?;
    client.batch_execute(&format!(
        "CREATE TABLE IF NOT EXISTS {} (do_id bigint NOT NULL, _row_key text NOT NULL,
            _pull_gen bigint, PRIMARY KEY (do_id, _row_key))",
        ident(&local)
    ))?;
    client.execute(
        "INSERT INTO sql_tables (worker_name, class_name, table_name, local_table) VALUES ($1, $2, $3, $4) ON CONFLICT DO NOTHING",
        &[&write.worker, &write.class, &table, &local],
    )?;
    Ok(Some(local))
}

/// A fresh snapshot's page by binary COPY (see `copy`): the page's columns that the
/// table has, each value as its column's type holds it.
fn copy_page(
    tx: &mut Transaction<'_>,
    write: &ObjectWrite,
    stamp: i64,
    local: &str,
    page: &SqlPage,
    (types, fitted): (&[Option<ColumnType>], &HashMap<String, ColumnType>),
    rows: &[(&str, &[SqlValue])],
) -> Result<Option<u64>, postgres::Error> {
    // Binary values must match their columns' types exactly: with the table locked against
    // another part's `ALTER` until this page commits, its columns are read once more, and a
    // change since they were fitted sends the page the upsert's way, which fails aloud.
    tx.batch_execute(&format!("LOCK TABLE {} IN ROW EXCLUSIVE MODE", ident(local)))?;
    if columns(tx, local)? != *fitted {
        return Ok(None);
    }
    let copied: Vec<(usize, ColumnType)> = types.iter().enumerate().filter_map(|(i, t)| Some((i, (*t)?))).collect();
    let mut names = vec!["do_id".to_owned(), "_row_key".to_owned(), "_pull_gen".to_owned()];
    names.extend(copied.iter().map(|(i, _)| ident(&postgres_column(&page.columns[*i]))));
    let mut wire_types = vec![Type::INT8, Type::TEXT, Type::INT8];
    wire_types.extend(copied.iter().map(|(_, kind)| kind.wire_type()));
    let target = format!("{} ({})", ident(local), names.join(", "));
    copy_rows(tx, &target, &wire_types, |writer| {
        for (key, values) in rows {
            let cells: Vec<Cell<'_>> = copied.iter().map(|(i, kind)| Cell(values.get(*i).unwrap_or(&SqlValue::Null), *kind)).collect();
            let mut row: Vec<&(dyn ToSql + Sync)> = vec![&write.do_id, key, &stamp];
            row.extend(cells.iter().map(|cell| cell as &(dyn ToSql + Sync)));
            writer.write(&row)?;
        }
        Ok(())
    })
}
/// The rows `keys` as the table holds them now, as wire values in the page's column order.
fn held_rows(
    tx: &mut Transaction<'_>,
    write: &ObjectWrite,
    local: &str,
    page: &SqlPage,
    types: &[Option<ColumnType>],
    keys: &[&str],
) -> Result<HashMap<String, Vec<SqlValue>>, postgres::Error> {
    let selected: Vec<String> = page
        .columns
        .iter()
        .zip(types)
        .map(|(c, t)| match t {
            Some(ColumnType::Mixed) => format!("{}::text", ident(&postgres_column(c))),
            Some(_) => ident(&postgres_column(c)),
            None => "NULL::text".to_owned(),
        })
        .collect();
    let query = format!(
        "SELECT _row_key{}{} FROM {} WHERE do_id = $1 AND _row_key = ANY($2)",
        if selected.is_empty() { "" } else { ", " },
        selected.join(", "),
        ident(local)
    );
    let mut held = HashMap::new();
    for row in tx.query(&query, &[&write.do_id, &keys])? {
        let values = types
            .iter()
            .enumerate()
            .map(|(i, t)| {
                let at = i + 1;
                match t {
                    None => SqlValue::Null,
                    Some(ColumnType::Integer) => row.get::<_, Option<i64>>(at).map_or(SqlValue::Null, SqlValue::Integer),
                    Some(ColumnType::Real) => row.get::<_, Option<f64>>(at).map_or(SqlValue::Null, SqlValue::Real),
                    Some(ColumnType::Text) => row.get::<_, Option<String>>(at).map_or(SqlValue::Null, SqlValue::Text),
                    Some(ColumnType::Blob) => row.get::<_, Option<Vec<u8>>>(at).map_or(SqlValue::Null, SqlValue::Blob),
                    Some(ColumnType::Mixed) => {
                        row.get::<_, Option<String>>(at).and_then(|t| serde_json::from_str(&t).ok()).unwrap_or(SqlValue::Null)
                    }
                }
            })
            .collect();
        held.insert(row.get(0), values);
    }
    Ok(held)
}

/// Writes a page of one table's rows: each present row replaces the table's (columns the page
/// does not name become NULL), each absent one is deleted.
pub(crate) fn apply_sql_page(
    tx: &mut Transaction<'_>,
    write: &ObjectWrite,
    stamp: i64,
    page: &SqlPage,
) -> Result<ApplyStats, postgres::Error> {
    let local = local_table(tx, write, &page.table, true)?.unwrap_or_default();
    let FittedColumns { page: types, table: all } = fit_columns(tx, &local, page)?;
    let mut stats = ApplyStats::default();
    let (present, absent): (Vec<_>, Vec<_>) = last_per_key(&page.rows, |r| r.k.as_str()).into_iter().partition(|r| r.v.is_some());
    let now = crate::sink::plan::now_ms();
    if !absent.is_empty() {
        let keys: Vec<&str> = absent.iter().map(|r| r.k.as_str()).collect();
        stats.deleted = if write.history {
            tx.execute(
                &format!(
                    "WITH gone AS (DELETE FROM {} WHERE do_id = $1 AND _row_key = ANY($2) RETURNING _row_key)
                     INSERT INTO sql_history (do_id, table_name, row_key, deleted, pulled_at) SELECT $1, $3, _row_key, true, $4 FROM gone",
                    ident(&local)
                ),
                &[&write.do_id, &keys, &page.table, &now],
            )?
        } else {
            tx.execute(&format!("DELETE FROM {} WHERE do_id = $1 AND _row_key = ANY($2)", ident(&local)), &[&write.do_id, &keys])?
        };
    }
    if present.is_empty() {
        return Ok(stats);
    }
    let rows: Vec<(&str, &[SqlValue])> = present.iter().map(|r| (r.k.as_str(), r.v.as_deref().unwrap_or_default())).collect();
    if write.history || write.compare {
        let keys: Vec<&str> = rows.iter().map(|(k, _)| *k).collect();
        let held = held_rows(tx, write, &local, page, &types, &keys)?;
        let changed: Vec<&(&str, &[SqlValue])> = rows
            .iter()
            .filter(|(key, values)| {
                let mut wanted: Vec<SqlValue> = values.to_vec();
                wanted.resize(types.len(), SqlValue::Null);
                held.get(*key) != Some(&wanted)
            })
            .collect();
        if write.compare {
            stats.differed = changed.len() as u64;
        }
        if write.history && !changed.is_empty() {
            let keys: Vec<&str> = changed.iter().map(|(k, _)| *k).collect();
            let json: Vec<String> = changed.iter().map(|(_, values)| row_json(&page.columns, values)).collect();
            tx.execute(
                "INSERT INTO sql_history (do_id, table_name, row_key, deleted, row, pulled_at)
                 SELECT $1, $2, u.key, false, u.row::jsonb, $5 FROM unnest($3::text[], $4::text[]) AS u(key, row)",
                &[&write.do_id, &page.table, &keys, &json, &now],
            )?;
        }
    }
    if write.fresh && !write.history && !write.compare {
        if let Some(copied) = copy_page(tx, write, stamp, &local, page, (&types, &all), &rows)? {
            stats.written = copied;
            return Ok(stats);
        }
    }
    // Every column of the table: the page's get its values, the rest NULL (the object's table
    // lacks them).
    let keys: Vec<&str> = rows.iter().map(|(k, _)| *k).collect();
    let mut params: Vec<Box<dyn ToSql + Sync>> = vec![Box::new(write.do_id), Box::new(stamp), Box::new(keys)];
    let (mut names, mut selected, mut arrays) = (Vec::new(), Vec::new(), Vec::new());
    for (i, (column, kind)) in page.columns.iter().zip(&types).enumerate() {
        let Some(kind) = kind else { continue };
        let slot = params.len() + 1;
        names.push(ident(&postgres_column(column)));
        let cast = if *kind == ColumnType::Mixed { "text" } else { kind.sql() };
        arrays.push(format!("${slot}::{cast}[]"));
        selected.push(if *kind == ColumnType::Mixed { format!("u.c{i}::jsonb") } else { format!("u.c{i}") });
        params.push(column_array(&rows, i, *kind));
    }
    let aliases: Vec<String> = std::iter::once("k".to_owned())
        .chain(page.columns.iter().zip(&types).enumerate().filter(|(_, (_, t))| t.is_some()).map(|(i, _)| format!("c{i}")))
        .collect();
    let mut updates: Vec<String> = names.iter().map(|n| format!("{n} = excluded.{n}")).collect();
    updates.extend(all.keys().map(|n| ident(n)).filter(|n| !names.contains(n)).map(|n| format!("{n} = NULL")));
    updates.push("_pull_gen = excluded._pull_gen".to_owned());
    let sql = format!(
        "INSERT INTO {table} (do_id, _row_key, _pull_gen{sep}{names}) SELECT $1, u.k, $2{sep}{selected}
         FROM unnest($3::text[]{sep}{arrays}) AS u({aliases})
         ON CONFLICT (do_id, _row_key) DO UPDATE SET {updates}",
        table = ident(&local),
        sep = if names.is_empty() { "" } else { ", " },
        names = names.join(", "),
        selected = selected.join(", "),
        arrays = arrays.join(", "),
        aliases = aliases.join(", "),
        updates = updates.join(", "),
    );
    let bound: Vec<&(dyn ToSql + Sync)> = params.iter().map(|p| p.as_ref()).collect();
    stats.written = tx.execute(&sql, &bound)?;
    Ok(stats)
}

/// The local tables of the download's class, with their source table names.
fn class_tables(client: &mut impl GenericClient, worker: &str, class: &str) -> Result<Vec<(String, String)>, postgres::Error> {
    let rows =
        client.query("SELECT table_name, local_table FROM sql_tables WHERE worker_name = $1 AND class_name = $2", &[&worker, &class])?;
    Ok(rows.iter().map(|r| (r.get(0), r.get(1))).collect())
}

/// Whether the database holds SQL rows of the object.
pub(crate) fn holds_sql_rows(client: &mut impl GenericClient, worker: &str, class: &str, do_id: i64) -> Result<bool, postgres::Error> {
    for (_, local) in class_tables(client, worker, class)? {
        let held: bool = client.query_one(&format!("SELECT EXISTS (SELECT 1 FROM {} WHERE do_id = $1)", ident(&local)), &[&do_id])?.get(0);
        if held {
            return Ok(true);
        }
    }
    Ok(false)
}

/// Deletes the object's rows of `local` that `condition` selects (`$1` the object, then
/// `extra`), noting each in `sql_history` with `--history`; answers how many.
fn delete_rows(
    tx: &mut Transaction<'_>,
    write: &ObjectWrite,
    table: &str,
    local: &str,
    condition: &str,
    extra: Option<i64>,
) -> Result<u64, postgres::Error> {
    let now = crate::sink::plan::now_ms();
    let mut params: Vec<&(dyn ToSql + Sync)> = vec![&write.do_id];
    if let Some(extra) = &extra {
        params.push(extra);
    }
    if write.history {
        let (table_slot, now_slot) = (params.len() + 1, params.len() + 2);
        params.push(&table);
        params.push(&now);
        tx.execute(
            &format!(
                "WITH gone AS (DELETE FROM {} WHERE {condition} RETURNING _row_key)
                 INSERT INTO sql_history (do_id, table_name, row_key, deleted, pulled_at) SELECT $1, ${table_slot}, _row_key, true, ${now_slot} FROM gone",
                ident(local)
            ),
            &params,
        )
    } else {
        tx.execute(&format!("DELETE FROM {} WHERE {condition}", ident(local)), &params)
    }
}

/// Drops the object's rows of a table it no longer has.
pub(crate) fn drop_sql_table(tx: &mut Transaction<'_>, write: &ObjectWrite, table: &str) -> Result<u64, postgres::Error> {
    match local_table(tx, write, table, false)? {
        Some(local) => delete_rows(tx, write, table, &local, "do_id = $1", None),
        None => Ok(0),
    }
}

/// Drops the object's SQL rows stamped below `below`: what a snapshot did not send.
pub(crate) fn sweep_sql_rows(tx: &mut Transaction<'_>, write: &ObjectWrite, below: i64) -> Result<u64, postgres::Error> {
    let mut swept = 0;
    for (table, local) in class_tables(tx, &write.worker, &write.class)? {
        swept += delete_rows(tx, write, &table, &local, "do_id = $1 AND (_pull_gen IS NULL OR _pull_gen < $2)", Some(below))?;
    }
    Ok(swept)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn long_local_names_are_cut_to_what_postgresql_keeps_and_stay_apart() {
        let long_a = format!("{}.a", "C".repeat(70));
        let long_b = format!("{}.b", "C".repeat(70));
        assert_eq!(postgres_name("Shop.items"), "Shop.items");
        let (a, b) = (postgres_name(&long_a), postgres_name(&long_b));
        assert!(a.len() <= 63 && b.len() <= 63, "{a} {b}");
        assert_ne!(a, b);
        assert!(postgres_name(&"é".repeat(40)).len() <= 63);
        // Columns by the same rule, after durafetch's own names are moved aside.
        let (long, a, b) = ("c".repeat(200), format!("{}_a", "s".repeat(63)), format!("{}_b", "s".repeat(63)));
        let columns = [postgres_column(&long), postgres_column(&a), postgres_column(&b), postgres_column("do_id")];
        assert!(columns.iter().all(|c| c.len() <= 63), "{columns:?}");
        assert_ne!(columns[1], columns[2]);
        assert_eq!(columns[3], "do_id_sql");
        assert_eq!(postgres_column(&long), columns[0], "found again by the same rule");
    }
}
