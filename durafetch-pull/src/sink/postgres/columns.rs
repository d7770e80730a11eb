//! How the sink types a local table's columns in PostgreSQL: each by the values it has held
//! (`bigint`, `double precision`, `text`, `bytea`, or `jsonb` once they differ), widened as
//! pages bring values that do not fit, and a value bound as its column's type holds it.

use std::collections::HashMap;

use bytes::BytesMut;
use durafetch_sdk::core::protocol::{SqlPage, SqlValue};
use postgres::types::{to_sql_checked, IsNull, ToSql, Type};
use postgres::{GenericClient, Transaction};

use crate::sink::naming::{ident, postgres_column};
use crate::sink::plan::value_json;
use crate::sink::postgres::copy::JsonbText;

/// A local column's type.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum ColumnType {
    Integer,
    Real,
    Text,
    Blob,
    /// Values of several types, each in the wire's form.
    Mixed,
}

impl ColumnType {
    pub(crate) fn of(value: &SqlValue) -> Option<Self> {
        match value {
            SqlValue::Null => None,
            SqlValue::Integer(_) => Some(ColumnType::Integer),
            SqlValue::Real(_) => Some(ColumnType::Real),
            SqlValue::Text(_) => Some(ColumnType::Text),
            SqlValue::Blob(_) => Some(ColumnType::Blob),
        }
    }

    /// The type of a binary COPY's values for the column.
    pub(crate) fn wire_type(self) -> Type {
        match self {
            ColumnType::Integer => Type::INT8,
            ColumnType::Real => Type::FLOAT8,
            ColumnType::Text => Type::TEXT,
            ColumnType::Blob => Type::BYTEA,
            ColumnType::Mixed => Type::JSONB,
        }
    }

    pub(crate) fn sql(self) -> &'static str {
        match self {
            ColumnType::Integer => "bigint",
            ColumnType::Real => "double precision",
            ColumnType::Text => "text",
            ColumnType::Blob => "bytea",
            ColumnType::Mixed => "jsonb",
        }
    }

    pub(crate) fn from_catalog(name: &str) -> Option<Self> {
        Some(match name {
            "bigint" => ColumnType::Integer,
            "double precision" => ColumnType::Real,
            "text" => ColumnType::Text,
            "bytea" => ColumnType::Blob,
            "jsonb" => ColumnType::Mixed,
            _ => return None,
        })
    }

    /// How a column of this type becomes `jsonb`: each value in the wire's exact form, as a
    /// page's mixed values are written, so that a restore reads back what the object held. A
    /// REAL keeps a fraction (`to_jsonb` would turn `2.0` into the INTEGER `2`, and infinity
    /// into a string): its shortest exact digits (`extra_float_digits`, set by the caller) as a
    /// numeric, which spells an exponent out, with `.0` where it has no point.
    pub(crate) fn to_json(self, column: &str) -> String {
        match self {
            ColumnType::Blob => {
                format!("CASE WHEN {column} IS NULL THEN NULL ELSE jsonb_build_object('blob', translate(encode({column}, 'base64'), E'\\n', '')) END")
            }
            ColumnType::Real => format!(
                "CASE WHEN {column} IS NULL THEN NULL
                      WHEN {column} = 'Infinity' THEN '{{\"real\": \"inf\"}}'::jsonb
                      WHEN {column} = '-Infinity' THEN '{{\"real\": \"-inf\"}}'::jsonb
                      WHEN {column}::text::numeric::text LIKE '%.%' THEN {column}::text::numeric::text::jsonb
                      ELSE ({column}::text::numeric::text || '.0')::jsonb END"
            ),
            _ => format!("to_jsonb({column})"),
        }
    }
}

/// The source columns of the local table, by local name, with their types.
pub(crate) fn columns(client: &mut impl GenericClient, local: &str) -> Result<HashMap<String, ColumnType>, postgres::Error> {
    Ok(ordered_columns(client, local)?.into_iter().filter_map(|(name, kind)| Some((name, kind?))).collect())
}

/// The source columns of the local table in their order, each with its type (`None`: a type
/// the sink does not make).
pub(crate) fn ordered_columns(client: &mut impl GenericClient, local: &str) -> Result<Vec<(String, Option<ColumnType>)>, postgres::Error> {
    let rows = client.query(
        "SELECT column_name::text, data_type::text FROM information_schema.columns
         WHERE table_schema = current_schema() AND table_name = $1 AND column_name NOT IN ('do_id', '_row_key', '_pull_gen')
         ORDER BY ordinal_position",
        &[&local],
    )?;
    Ok(rows.iter().map(|r| (r.get(0), ColumnType::from_catalog(r.get(1)))).collect())
}

/// How long a change of a local table's columns waits for the table's readers, while every
/// later reader and writer of the table waits behind it: short, and shorter than a restore
/// waits for its locks (`restore::source::postgres`).
const COLUMN_CHANGE_WAIT: &str = "2s";

/// The page's columns' types (`None`: not in the table, and every value NULL), and every
/// column of the table.
pub(crate) struct FittedColumns {
    pub(crate) page: Vec<Option<ColumnType>>,
    pub(crate) table: HashMap<String, ColumnType>,
}

/// Adds the columns the page's values need and turns to `jsonb` those a value does not fit;
/// answers the columns as they then are.
pub(crate) fn fit_columns(tx: &mut Transaction<'_>, local: &str, page: &SqlPage) -> Result<FittedColumns, postgres::Error> {
    let mut wanted: Vec<Option<ColumnType>> = vec![None; page.columns.len()];
    for row in &page.rows {
        for (i, value) in row.v.iter().flatten().enumerate().take(wanted.len()) {
            wanted[i] = match (wanted[i], ColumnType::of(value)) {
                (w, None) => w,
                (None, t) => t,
                (Some(w), Some(t)) if w == t => Some(w),
                _ => Some(ColumnType::Mixed),
            };
        }
    }
    let names: Vec<String> = page.columns.iter().map(|c| postgres_column(c)).collect();
    let fits = |have: &HashMap<String, ColumnType>| {
        names.iter().zip(&wanted).all(|(name, want)| match (have.get(name), want) {
            (_, None) => true,
            (Some(have), Some(want)) => have == want || *have == ColumnType::Mixed,
            (None, Some(_)) => false,
        })
    };
    let mut have = columns(tx, local)?;
    if !fits(&have) {
        lock_table(tx, local)?;
        // A REAL's text its shortest exact digits on every server version (10 and 11 give 15).
        // A change of columns waits for every reader of the table (a restore reads an object's
        // tables in one transaction), and every reader after it waits for it: give up after a
        // while, failing the object's download for this run, rather than stall the table.
        tx.batch_execute(&format!("SET LOCAL extra_float_digits = 3; SET LOCAL lock_timeout = '{COLUMN_CHANGE_WAIT}'"))?;
        have = columns(tx, local)?;
        for (name, want) in names.iter().zip(&wanted) {
            let column = ident(name);
            match (have.get(name), want) {
                (None, Some(want)) => tx.batch_execute(&format!("ALTER TABLE {} ADD COLUMN {column} {}", ident(local), want.sql()))?,
                (Some(have), Some(want)) if have != want && *have != ColumnType::Mixed => tx.batch_execute(&format!(
                    "ALTER TABLE {} ALTER COLUMN {column} TYPE jsonb USING {}",
                    ident(local),
                    have.to_json(&column)
                ))?,
                _ => {}
            }
        }
        tx.batch_execute("SET LOCAL lock_timeout TO DEFAULT")?;
        have = columns(tx, local)?;
    }
    Ok(FittedColumns { page: names.iter().map(|name| have.get(name).copied()).collect(), table: have })
}

/// A value of a page's row as its column's type holds it; the column was fitted to the page's
/// values before, so any other pairing is a bug, refused rather than written as NULL.
#[derive(Debug)]
pub(crate) struct Cell<'a>(pub(crate) &'a SqlValue, pub(crate) ColumnType);

impl ToSql for Cell<'_> {
    fn to_sql(&self, ty: &Type, out: &mut BytesMut) -> Result<IsNull, Box<dyn std::error::Error + Sync + Send>> {
        match (self.1, self.0) {
            (_, SqlValue::Null) => Ok(IsNull::Yes),
            (ColumnType::Integer, SqlValue::Integer(i)) => i.to_sql(ty, out),
            (ColumnType::Real, SqlValue::Real(r)) => r.to_sql(ty, out),
            (ColumnType::Text, SqlValue::Text(t)) => t.to_sql(ty, out),
            (ColumnType::Blob, SqlValue::Blob(b)) => b.to_sql(ty, out),
            (ColumnType::Mixed, value) => JsonbText(&value_json(value)).to_sql(ty, out),
            (kind, _) => Err(format!("a value that does not fit its {} column", kind.sql()).into()),
        }
    }

    fn accepts(ty: &Type) -> bool {
        [Type::INT8, Type::FLOAT8, Type::TEXT, Type::BYTEA, Type::JSONB].contains(ty)
    }

    to_sql_checked!();
}

/// One column of a page's rows, as an array of the column's type.
pub(crate) fn column_array(rows: &[(&str, &[SqlValue])], index: usize, kind: ColumnType) -> Box<dyn ToSql + Sync> {
    let values = rows.iter().map(|(_, values)| values.get(index).unwrap_or(&SqlValue::Null));
    match kind {
        ColumnType::Integer => {
            Box::new(values.map(|v| if let SqlValue::Integer(i) = v { Some(*i) } else { None }).collect::<Vec<Option<i64>>>())
        }
        ColumnType::Real => Box::new(values.map(|v| if let SqlValue::Real(r) = v { Some(*r) } else { None }).collect::<Vec<Option<f64>>>()),
        ColumnType::Text => {
            Box::new(values.map(|v| if let SqlValue::Text(t) = v { Some(t.clone()) } else { None }).collect::<Vec<Option<String>>>())
        }
        ColumnType::Blob => {
            Box::new(values.map(|v| if let SqlValue::Blob(b) = v { Some(b.clone()) } else { None }).collect::<Vec<Option<Vec<u8>>>>())
        }
        ColumnType::Mixed => {
            Box::new(values.map(|v| (!matches!(v, SqlValue::Null)).then(|| value_json(v))).collect::<Vec<Option<String>>>())
        }
    }
}

/// Holds a lock on the local table `local`'s shape until the transaction ends.
pub(crate) fn lock_table(client: &mut impl GenericClient, local: &str) -> Result<(), postgres::Error> {
    client.execute("SELECT pg_advisory_xact_lock(hashtext($1))", &[&local])?;
    Ok(())
}
