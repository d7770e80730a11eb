//! What a dry run compares: each object's keys and rows in the backup against the target's, as
//! a pull copied them just before, so that it says what a restore would add, change and delete.
//! Both sides are read from files the same sink wrote, so a value compares by what it is, not by
//! how two writers spelled it.

use std::collections::{BTreeMap, HashMap};

use durafetch_sdk::core::protocol::{Change, ChangeValue, SqlPage, SqlValue};
use durafetch_sdk::core::restore_protocol::ImportMode;

use crate::restore::source::{BackupObject, BackupSource, SourceError, TableSchema};
use crate::settings::filter::Filter;

/// What a restore would do to one object, counted against the object as it is.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq, serde::Serialize)]
pub struct WouldChange {
    /// Keys the object lacks.
    pub keys_added: u64,
    /// Keys the object holds with another value.
    pub keys_changed: u64,
    /// Keys the object holds that the backup lacks (a replace only).
    pub keys_deleted: u64,
    pub rows_added: u64,
    pub rows_changed: u64,
    pub rows_deleted: u64,
}

impl WouldChange {
    pub(crate) fn plus(self, other: WouldChange) -> WouldChange {
        WouldChange {
            keys_added: self.keys_added + other.keys_added,
            keys_changed: self.keys_changed + other.keys_changed,
            keys_deleted: self.keys_deleted + other.keys_deleted,
            rows_added: self.rows_added + other.rows_added,
            rows_changed: self.rows_changed + other.rows_changed,
            rows_deleted: self.rows_deleted + other.rows_deleted,
        }
    }

    /// One line for a person.
    pub(crate) fn line(&self) -> String {
        format!(
            "keys {} added, {} changed, {} deleted; rows {} added, {} changed, {} deleted",
            self.keys_added, self.keys_changed, self.keys_deleted, self.rows_added, self.rows_changed, self.rows_deleted
        )
    }
}

/// How one item of the backup stands against the object's.
enum Side<T> {
    Backup(T),
    Target(T),
    Both(T, T),
}

/// Walks two sequences of items in key order, read a page at a time, side by side.
fn merge_pages<T>(
    mut backup: impl FnMut(Option<&str>) -> Result<(Vec<T>, Option<String>), SourceError>,
    mut target: impl FnMut(Option<&str>) -> Result<(Vec<T>, Option<String>), SourceError>,
    key: impl Fn(&T) -> &str,
    mut each: impl FnMut(Side<T>),
) -> Result<(), SourceError> {
    let mut ours = Pages::new();
    let mut theirs = Pages::new();
    loop {
        let (a, b) = (ours.peek(&mut backup)?, theirs.peek(&mut target)?);
        let side = match (a, b) {
            (None, None) => return Ok(()),
            (Some(a), Some(b)) => key(a).cmp(key(b)),
            (Some(_), None) => std::cmp::Ordering::Less,
            (None, Some(_)) => std::cmp::Ordering::Greater,
        };
        each(match side {
            std::cmp::Ordering::Less => Side::Backup(ours.take()),
            std::cmp::Ordering::Greater => Side::Target(theirs.take()),
            std::cmp::Ordering::Equal => Side::Both(ours.take(), theirs.take()),
        });
    }
}

/// Items read a page at a time: the page in hand, and where the next one starts.
struct Pages<T> {
    page: std::collections::VecDeque<T>,
    next: Option<String>,
    started: bool,
}

impl<T> Pages<T> {
    fn new() -> Self {
        Pages { page: Default::default(), next: None, started: false }
    }

    fn peek(
        &mut self,
        read: &mut impl FnMut(Option<&str>) -> Result<(Vec<T>, Option<String>), SourceError>,
    ) -> Result<Option<&T>, SourceError> {
        while self.page.is_empty() && (!self.started || self.next.is_some()) {
            let (items, next) = read(self.next.as_deref())?;
            (self.page, self.next, self.started) = (items.into(), next, true);
        }
        Ok(self.page.front())
    }

    fn take(&mut self) -> T {
        self.page.pop_front().expect("peeked")
    }
}

/// A row as a map of its columns.
type Row = BTreeMap<String, SqlValue>;

/// A page of rows, each with the file's row key, and where the next page starts.
type RowPage = Result<(Vec<(String, Row)>, Option<String>), SourceError>;

/// Whether a restore leaves the object's row `theirs` as the backup's `ours`: a replace makes
/// the table again from the backup (a column only one side has is NULL on the other), a merge
/// writes the backup's columns only and leaves the object's others as they are.
fn same_row(ours: &Row, theirs: &Row, mode: ImportMode) -> bool {
    let null = SqlValue::Null;
    let same = |column: &String| ours.get(column).unwrap_or(&null) == theirs.get(column).unwrap_or(&null);
    match mode {
        ImportMode::Merge => ours.keys().all(same),
        _ => ours.keys().chain(theirs.keys()).all(same),
    }
}

/// The declared key's columns when a restore finds a table's rows again by them rather than by
/// the rowid the file keys them by: a rowid table whose declared key is not an INTEGER PRIMARY
/// KEY (which is the rowid), and gets new rowids when it is made again. `None`: the file's row
/// key finds the row (the rowid kept, or a WITHOUT ROWID table's key).
fn declared_key(schema: &TableSchema) -> Option<Vec<String>> {
    let scratch = schema.made_alone()?;
    let without_rowid: bool = scratch.query_row("SELECT wr FROM pragma_table_list WHERE name = ?1", [&schema.table], |r| r.get(0)).ok()?;
    let key: Vec<(String, String)> = scratch
        .prepare("SELECT name, type FROM pragma_table_info(?1) WHERE pk > 0 ORDER BY pk")
        .and_then(|mut stmt| stmt.query_map([&schema.table], |r| Ok((r.get(0)?, r.get(1)?)))?.collect())
        .ok()?;
    let is_rowid = matches!(key.as_slice(), [(_, kind)] if kind.eq_ignore_ascii_case("INTEGER"));
    (!without_rowid && !key.is_empty() && !is_rowid).then(|| key.into_iter().map(|(name, _)| name).collect())
}

/// Every row `read` reads, a page at a time.
fn each_row(mut read: impl FnMut(Option<&str>) -> RowPage, mut each: impl FnMut(Row)) -> Result<(), SourceError> {
    let mut after: Option<String> = None;
    loop {
        let (rows, next) = read(after.as_deref())?;
        rows.into_iter().for_each(|(_, row)| each(row));
        match next {
            Some(next) => after = Some(next),
            None => return Ok(()),
        }
    }
}

/// Counts a table whose rows are found again by their declared key's values: the object's rows
/// held by key (a dry run's memory grows with the table), the backup's read past them. A row
/// with a NULL in its key matches none: a restore adds it anew.
fn count_by_key(
    would: &mut WouldChange,
    ours: impl FnMut(Option<&str>) -> RowPage,
    theirs: impl FnMut(Option<&str>) -> RowPage,
    key: &[String],
    mode: ImportMode,
) -> Result<(), SourceError> {
    let key_of = |row: &Row| -> Option<String> {
        let values: Option<Vec<&SqlValue>> = key.iter().map(|c| row.get(c).filter(|v| **v != SqlValue::Null)).collect();
        serde_json::to_string(&values?).ok()
    };
    let (mut held, mut unmatched) = (HashMap::new(), 0u64);
    each_row(theirs, |row| match key_of(&row) {
        Some(key) => {
            held.insert(key, row);
        }
        None => unmatched += 1,
    })?;
    each_row(ours, |row| match key_of(&row).and_then(|key| held.remove(&key)) {
        Some(theirs) => would.rows_changed += u64::from(!same_row(&row, &theirs, mode)),
        None => would.rows_added += 1,
    })?;
    if mode == ImportMode::Replace {
        would.rows_deleted += held.len() as u64 + unmatched;
    }
    Ok(())
}

/// The rows of `schema`'s table, each with its key and its columns, for [`merge_pages`].
fn table_rows<'a>(
    backup: &'a dyn BackupSource,
    object: &'a BackupObject,
    schema: &TableSchema,
) -> Result<impl FnMut(Option<&str>) -> RowPage + 'a, SourceError> {
    let source = backup.table_source(object, schema)?;
    Ok(move |after: Option<&str>| {
        let (SqlPage { columns, rows, .. }, last) = backup.rows(object, &source, after)?;
        let rows = rows.into_iter().filter_map(|row| Some((row.k, columns.iter().cloned().zip(row.v?).collect()))).collect();
        Ok((rows, last))
    })
}

/// No items: the side of a comparison that holds none.
fn no_items<T>(_: Option<&str>) -> Result<(Vec<T>, Option<String>), SourceError> {
    Ok((Vec::new(), None))
}

/// Counts what restoring `object` from `backup` in `mode` would do to the target's object as
/// `target` copied it (`None`: the target has no such object).
pub(crate) fn compare(
    backup: &dyn BackupSource,
    object: &BackupObject,
    target: Option<(&dyn BackupSource, &BackupObject)>,
    filter: &Filter,
    mode: ImportMode,
) -> Result<WouldChange, SourceError> {
    let mut would = WouldChange::default();
    let replace = mode == ImportMode::Replace;
    let mut errors = Vec::new();
    let backup_keys = |after: Option<&str>| backup.keys(object, after, filter, &mut Vec::new());
    let count_key = |would: &mut WouldChange, side: Side<Change>| match side {
        // A key the backup holds without a value is not restored: the object keeps its own.
        Side::Backup(c) | Side::Both(c, _) if matches!(c.value, ChangeValue::Unsupported(_)) => {}
        Side::Backup(_) => would.keys_added += 1,
        Side::Both(ours, theirs) => would.keys_changed += u64::from(ours.value != theirs.value),
        Side::Target(_) => would.keys_deleted += u64::from(replace),
    };
    let count_row = |would: &mut WouldChange, side: Side<(String, Row)>| match side {
        Side::Backup(_) => would.rows_added += 1,
        Side::Both((_, ours), (_, theirs)) => would.rows_changed += u64::from(!same_row(&ours, &theirs, mode)),
        Side::Target(_) => would.rows_deleted += u64::from(replace),
    };
    let tables = backup.tables(object, filter, &mut errors)?;
    // No object in the target: it holds no key and no table.
    let target_keys = |after: Option<&str>| match target {
        Some((copy, held)) => copy.keys(held, after, filter, &mut Vec::new()),
        None => no_items(after),
    };
    merge_pages(backup_keys, target_keys, |c| c.key.as_str(), |side| count_key(&mut would, side))?;
    let held_tables = match target {
        Some((copy, held)) => copy.tables(held, filter, &mut errors)?.into_iter().map(|t| (copy, held, t)).collect(),
        None => Vec::new(),
    };
    // The object's table names match whatever their case, as SQLite's do.
    for schema in &tables {
        let ours = table_rows(backup, object, schema)?;
        match (held_tables.iter().find(|(_, _, t)| t.table.eq_ignore_ascii_case(&schema.table)), declared_key(schema)) {
            (Some((copy, held, theirs)), Some(key)) => count_by_key(&mut would, ours, table_rows(*copy, held, theirs)?, &key, mode)?,
            (Some((copy, held, theirs)), None) => {
                merge_pages(ours, table_rows(*copy, held, theirs)?, |r| r.0.as_str(), |side| count_row(&mut would, side))?
            }
            (None, _) => merge_pages(ours, no_items, |r| r.0.as_str(), |side| count_row(&mut would, side))?,
        }
    }
    // A replace drops the tables the backup lacks.
    for (copy, held, theirs) in
        held_tables.iter().filter(|(_, _, t)| replace && !tables.iter().any(|s| s.table.eq_ignore_ascii_case(&t.table)))
    {
        merge_pages(no_items, table_rows(*copy, held, theirs)?, |r| r.0.as_str(), |side| count_row(&mut would, side))?;
    }
    Ok(would)
}

/// The target's object in the copy that a restore of `object` writes into: the one of that
/// name in the class, or an unnamed one by its id.
pub(crate) fn counterpart<'a>(object: &BackupObject, held: &'a [BackupObject]) -> Option<&'a BackupObject> {
    held.iter().find(|h| {
        h.class == object.class
            && match &object.name {
                Some(name) => h.name.as_deref() == Some(name),
                None => h.id == object.id,
            }
    })
}
