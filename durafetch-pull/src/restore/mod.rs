//! `durafetch-pull restore`: the objects of the file (as they are now, or at a moment its
//! history recorded) written into the objects of a target worker, each over an import session,
//! several at once. An object with a name goes to the object of that name, in any worker; an
//! unnamed one only back into its own worker, which answers 409 elsewhere, and is skipped.
//!
//! Per object, the backup is sent whole (its keys in key order, then each table's schema and
//! rows, and with `replace` the tables to drop), and the object applies it at the session's end
//! in one transaction: the object ends restored or as it was, never in between, and a replace
//! deletes the keys the backup lacks inside that transaction. A dry run asks the object what
//! it holds, counts what a restore would change, and sends nothing to apply.

pub(crate) mod dry_run;
pub(crate) mod import_session;
pub mod report;
pub mod source;
mod target_copy;

use durafetch_sdk::core::page_writer::PageWriter;
use durafetch_sdk::core::protocol::{ChangeValue, SqlPage, SqlValue};
use durafetch_sdk::core::restore_protocol::{ImportMode, TableRows, IMPORT_PAGE_TARGET_BYTES, MAX_IMPORT_PAGE_ITEMS};
use durafetch_sdk::core::route::{ApiRoute, ImportTarget};
use futures_util::StreamExt;

use crate::restore::import_session::{Ended, ImportSession, Opened};
use crate::restore::report::{ObjectReport, Outcome};
use crate::restore::source::{BackupObject, BackupSource, Moment, SourceError, SqliteBackup, TableSchema};
use crate::restore::target_copy::{copy_target, name_undo_scope, TargetCopy};
use crate::retry::{Backoff, Retryable};
use crate::settings::restore::RestoreSettings;
use crate::transport::error::ConnectError;
use crate::transport::session::SessionError;
use crate::transport::Transport;

/// Why a restore could not start at all.
#[derive(Debug, thiserror::Error)]
pub enum RestoreError {
    #[error("{0}")]
    Source(#[from] SourceError),
    /// The copy to undo with could not be pulled: nothing was restored.
    #[error("cannot keep a copy of the target to undo the restore with ({0}); nothing was restored (--no-undo restores without one)")]
    Undo(String),
    /// The objects a dry run compares the backup with could not be read.
    #[error("cannot read the target's objects to compare the backup with ({0}); nothing was written")]
    DryRun(String),
}

impl RestoreError {
    /// Whether a run failed (status 1: the backup's database or the target could not be read),
    /// rather than being asked what cannot be done (status 2).
    pub fn is_failure(&self) -> bool {
        match self {
            RestoreError::Source(e) => e.is_unreachable(),
            RestoreError::Undo(_) | RestoreError::DryRun(_) => true,
        }
    }
}

/// Restores every object of the file the filter keeps over WebSockets; `each` hears of each
/// object as it ends, beside a progress bar over the objects (on a terminal, unless `quiet`).
pub async fn restore(settings: &RestoreSettings, quiet: bool, each: impl Fn(&ObjectReport)) -> Result<Vec<ObjectReport>, RestoreError> {
    restore_with(settings, &crate::transport::websocket::NetworkTransport::default(), quiet, each).await
}

/// [`restore`] over `transport`.
pub async fn restore_with(
    settings: &RestoreSettings,
    transport: &dyn Transport,
    quiet: bool,
    each: impl Fn(&ObjectReport),
) -> Result<Vec<ObjectReport>, RestoreError> {
    let objects = source::interface::of_one_worker(
        source::open(&settings.db, settings.moment, None)?.objects(&settings.filter)?,
        settings.worker.as_deref(),
    )?;
    if let Some(undo) = &settings.undo {
        copy_target(settings, &undo.reader, &undo.file, true, transport, quiet).await.map_err(RestoreError::Undo)?;
        name_undo_scope(&undo.file, &objects).map_err(|e| RestoreError::Undo(e.to_string()))?;
    }
    // A dry run compares the backup with the objects as they are, copied the same way.
    let copy = match &settings.dry_run_reader {
        Some(reader) => {
            let copy = TargetCopy::new().map_err(|e| RestoreError::DryRun(e.to_string()))?;
            copy_target(settings, reader, &copy.file, false, transport, quiet).await.map_err(RestoreError::DryRun)?;
            let held = SqliteBackup::open(&copy.file, Moment::Latest)?.objects(&settings.filter)?;
            Some((copy, held))
        }
        None => None,
    };
    let compared = copy.as_ref().map(|(copy, held)| (copy.file.as_path(), held.as_slice()));
    let bar = crate::pull::progress::object_bar(objects.len() as u64, quiet);
    let reports: Vec<ObjectReport> = futures_util::stream::iter(objects)
        .map(|object| async move { restore_object(settings, transport, &object, compared).await })
        .buffer_unordered(settings.concurrency.max(1))
        .inspect(|report| {
            bar.inc(1);
            bar.suspend(|| each(report));
        })
        .collect()
        .await;
    bar.finish_and_clear();
    Ok(reports)
}

/// A dry run's report with what the restore would add, change and delete, against the
/// target's object as the copy `compared` holds it, with the objects it holds (none: an empty
/// object).
fn would_change(
    settings: &RestoreSettings,
    backup: &dyn BackupSource,
    object: &BackupObject,
    compared: Option<(&std::path::Path, &[BackupObject])>,
    mut report: ObjectReport,
) -> ObjectReport {
    let counted = (|| {
        let target = match compared.and_then(|(file, held)| Some((file, dry_run::counterpart(object, held)?))) {
            Some((file, held)) => Some((SqliteBackup::open(file, Moment::Latest)?, held)),
            None => None,
        };
        dry_run::compare(
            backup,
            object,
            target.as_ref().map(|(copy, held)| (copy as &dyn BackupSource, *held)),
            &settings.filter,
            settings.mode,
        )
    })();
    match counted {
        Ok(would) => {
            report.would = Some(would);
            report
        }
        Err(e) => report.ended(Outcome::Failed, format!("the dry run could not compare the object as it is: {e}")),
    }
}

/// A failure of one object's restore.
#[derive(Debug, thiserror::Error)]
enum ObjectError {
    #[error("{0}")]
    Session(#[from] SessionError),
    #[error("{0}")]
    Source(#[from] SourceError),
}

impl Retryable for ObjectError {
    /// A dropped connection or a silent object; not what the object refused (a schema that
    /// does not fit), which another attempt would meet again.
    fn is_retryable(&self) -> bool {
        match self {
            ObjectError::Session(SessionError::Connect(e)) => !e.is_permanent(),
            ObjectError::Session(SessionError::Closed | SessionError::Silent) => true,
            // The backup's database unreachable, or a lock it waited for too long: read anew.
            ObjectError::Source(e) => e.is_unreachable(),
            _ => false,
        }
    }
}

async fn restore_object(
    settings: &RestoreSettings,
    transport: &dyn Transport,
    object: &BackupObject,
    compared: Option<(&std::path::Path, &[BackupObject])>,
) -> ObjectReport {
    let report = ObjectReport::new(object);
    let target = match &object.name {
        Some(name) => ImportTarget::Name(name.clone()),
        None => ImportTarget::Id { id: object.id.clone(), worker: object.worker.clone() },
    };
    let path = ApiRoute::Import { class: object.class.clone(), target }.to_string();
    // An attempt applies all or nothing, so another attempt after a failure starts from the
    // object as it was. With `empty`, only one that failed reading the backup, before it asked
    // the object to apply anything: if the reply, not the transaction, of an `end` was lost, a
    // second attempt would be refused by what the first one wrote. Each attempt reads the
    // backup anew, from a snapshot of its own.
    let mut backoff = Backoff::new();
    loop {
        let failed = match source::open(&settings.db, settings.moment, Some(object)) {
            Ok(backup) => match backup.knows(object) {
                Ok(false) => return report.ended(Outcome::Skipped, "the backup has no record of this object by that time"),
                Ok(true) => {
                    let attempt = ObjectRestore { settings, backup: backup.as_ref(), object, report: report.clone() };
                    match attempt.run(transport, &path).await {
                        Ok(report) if report.outcome == Outcome::WouldRestore => {
                            return would_change(settings, backup.as_ref(), object, compared, report)
                        }
                        Ok(report) => return report,
                        Err(AttemptError::Refused(outcome, message)) => return report.ended(outcome, message),
                        Err(AttemptError::Object(e)) => e,
                    }
                }
                Err(e) => ObjectError::Source(e),
            },
            Err(e) => ObjectError::Source(e),
        };
        let may_retry = settings.mode != ImportMode::Empty || matches!(failed, ObjectError::Source(_));
        if !(may_retry && backoff.retry_after(&failed, &object.id).await) {
            return report.ended(Outcome::Failed, failed.to_string());
        }
    }
}

enum AttemptError {
    /// The object, or the worker, answered that this object is not to be written.
    Refused(Outcome, String),
    Object(ObjectError),
}

impl<E: Into<ObjectError>> From<E> for AttemptError {
    fn from(e: E) -> Self {
        AttemptError::Object(e.into())
    }
}

struct ObjectRestore<'a> {
    settings: &'a RestoreSettings,
    backup: &'a dyn BackupSource,
    object: &'a BackupObject,
    report: ObjectReport,
}

impl ObjectRestore<'_> {
    async fn run(mut self, transport: &dyn Transport, path: &str) -> Result<ObjectReport, AttemptError> {
        let settings = self.settings;
        let socket = match transport.open(&settings.target, path).await {
            Ok(socket) => socket,
            Err(ConnectError::Status { status: 409, body }) => return Err(AttemptError::Refused(Outcome::Skipped, body)),
            Err(ConnectError::Unauthorized) => {
                return Err(AttemptError::Refused(
                    Outcome::Unauthorized,
                    "the target refused the restore token (401); check DURAFETCH_RESTORE_AUTH against the worker's secret of that name"
                        .into(),
                ))
            }
            Err(ConnectError::Status { status: 403, body }) => {
                return Err(AttemptError::Refused(Outcome::Unauthorized, format!("the target answered 403: {body}")))
            }
            // The worker's own answer to its configuration (a secret missing, short or shared):
            // another attempt meets it again; the body names the fix.
            Err(ConnectError::Status { status: 500, body }) if body.contains("durafetch:") => {
                return Err(AttemptError::Refused(Outcome::Unauthorized, format!("the target answered 500: {body}")))
            }
            Err(e) => return Err(SessionError::Connect(e).into()),
        };
        let (mut session, tables_held) = match ImportSession::open(socket, settings.mode, settings.filter.key_scope()).await? {
            Opened::Ready { session, tables, .. } => (session, tables),
            Opened::Refused(message) => return Err(AttemptError::Refused(Outcome::Refused, message)),
        };
        let tables = self.backup.tables(self.object, &settings.filter, &mut self.report.not_restored)?;
        if settings.mode == ImportMode::Replace {
            if settings.dry_run {
                self.count_keys_the_backup_lacks(&mut session).await?;
            }
            self.drop_tables_the_backup_lacks(&mut session, &tables, &tables_held).await?;
        }
        self.write_keys(&mut session).await?;
        for schema in &tables {
            self.write_table(&mut session, schema, &tables_held).await?;
        }
        if settings.dry_run {
            session.leave().await;
            self.report.outcome = Outcome::WouldRestore;
            return Ok(self.report);
        }
        match session.end().await? {
            Ended::Applied(applied) => {
                // What the object reported doing.
                (self.report.keys_written, self.report.keys_deleted) = (applied.keys_written, applied.keys_deleted);
                (self.report.rows_written, self.report.rows_deleted) = (applied.rows_written, applied.rows_deleted);
                Ok(self.report)
            }
            Ended::Refused(message) => Err(AttemptError::Refused(Outcome::Refused, message)),
        }
    }

    /// A dry run's count of the object's keys that the backup lacks and the filter keeps (keys
    /// outside the filter are not the restore's): what a replace would delete.
    async fn count_keys_the_backup_lacks(&mut self, session: &mut ImportSession) -> Result<(), AttemptError> {
        let filter = &self.settings.filter;
        let mut after = None;
        loop {
            let (keys, done) = session.list_keys(after.clone()).await?;
            for key in &keys {
                if filter.keeps_key(key) && !self.backup.has_key(self.object, key)? {
                    self.report.keys_deleted += 1;
                }
            }
            after = keys.last().cloned();
            if done || after.is_none() {
                return Ok(());
            }
        }
    }

    /// Drops the object's tables that the backup lacks and the filter keeps.
    async fn drop_tables_the_backup_lacks(
        &mut self,
        session: &mut ImportSession,
        tables: &[TableSchema],
        tables_held: &[TableRows],
    ) -> Result<(), AttemptError> {
        let filter = &self.settings.filter;
        for held in tables_held.iter().filter(|t| filter.keeps_table(&t.table) && !tables.iter().any(|schema| schema.table == t.table)) {
            self.report.rows_deleted += held.rows;
            if !self.settings.dry_run {
                session.drop_table(&held.table).await?;
            }
        }
        Ok(())
    }

    async fn write_keys(&mut self, session: &mut ImportSession) -> Result<(), AttemptError> {
        let mut pages = PageWriter::import();
        let mut after: Option<String> = None;
        loop {
            let (changes, last) = self.backup.keys(self.object, after.as_deref(), &self.settings.filter, &mut self.report.not_restored)?;
            for change in changes {
                // A key the backup holds without a value goes too: the object keeps its own.
                if !matches!(change.value, ChangeValue::Unsupported(_)) {
                    self.report.keys_written += 1;
                }
                pages.push(change);
                self.send_if_full(session, &mut pages).await?;
            }
            match last {
                Some(last) => after = Some(last),
                None => break,
            }
        }
        self.send_rest(session, &mut pages).await
    }

    async fn send_if_full(&self, session: &mut ImportSession, pages: &mut PageWriter) -> Result<(), AttemptError> {
        if pages.is_full() {
            self.send_rest(session, pages).await?;
        }
        Ok(())
    }

    async fn send_rest(&self, session: &mut ImportSession, pages: &mut PageWriter) -> Result<(), AttemptError> {
        if let Some(text) = pages.take() {
            if !self.settings.dry_run {
                session.put_text(text).await?;
            }
        }
        Ok(())
    }

    async fn write_table(
        &mut self,
        session: &mut ImportSession,
        schema: &TableSchema,
        tables_held: &[TableRows],
    ) -> Result<(), AttemptError> {
        let table = schema.table.as_str();
        if self.settings.mode == ImportMode::Replace {
            self.report.rows_deleted += tables_held.iter().find(|t| t.table == table).map_or(0, |t| t.rows);
        }
        if !self.settings.dry_run {
            session.create_table(table, &schema.statements, schema.autoincrement).await?;
        }
        let source = self.backup.table_source(self.object, schema)?;
        let mut after: Option<String> = None;
        loop {
            let (page, last) = self.backup.rows(self.object, &source, after.as_deref())?;
            for part in split(page) {
                self.report.rows_written += part.rows.len() as u64;
                if !self.settings.dry_run {
                    session.rows(part).await?;
                }
            }
            match last {
                Some(last) => after = Some(last),
                None => return Ok(()),
            }
        }
    }
}

/// A page of rows cut into requests of at most [`MAX_IMPORT_PAGE_ITEMS`] rows and about
/// [`IMPORT_PAGE_TARGET_BYTES`].
fn split(page: SqlPage) -> Vec<SqlPage> {
    let mut parts = Vec::new();
    let mut part = SqlPage { table: page.table.clone(), columns: page.columns.clone(), rows: Vec::new() };
    let mut bytes = 0;
    for row in page.rows {
        let size = row.k.len() + row.v.as_ref().map_or(0, |v| v.iter().map(SqlValue::wire_size).sum());
        if !part.rows.is_empty() && (part.rows.len() >= MAX_IMPORT_PAGE_ITEMS || bytes + size > IMPORT_PAGE_TARGET_BYTES) {
            let full = SqlPage { table: part.table.clone(), columns: part.columns.clone(), rows: std::mem::take(&mut part.rows) };
            parts.push(full);
            bytes = 0;
        }
        bytes += size;
        part.rows.push(row);
    }
    if !part.rows.is_empty() {
        parts.push(part);
    }
    parts
}
