//! What a restore reports: each object's outcome and counts, the summary over them, and the
//! command that undoes the restore.

use crate::restore::dry_run::WouldChange;
use crate::restore::source::BackupObject;
use crate::settings::restore::RestoreSettings;

/// How one object's restore ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Outcome {
    Restored,
    /// A dry run: what a restore would have written.
    WouldRestore,
    /// `--mode empty`, and the object holds data: nothing was written.
    Refused,
    /// Not restored, by rule: an unnamed object bound for another worker, or an object the file
    /// has no record of at the moment asked for.
    Skipped,
    /// The target refused the token, or allows no restore: nothing was written.
    Unauthorized,
    Failed,
}

/// One object's restore, as reported.
#[derive(Debug, Clone, serde::Serialize)]
pub struct ObjectReport {
    pub class: String,
    pub name: Option<String>,
    pub id: String,
    pub outcome: Outcome,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
    pub keys_written: u64,
    pub keys_deleted: u64,
    pub rows_written: u64,
    pub rows_deleted: u64,
    /// Keys the file holds as errors (no value to restore), and tables it cannot make.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub not_restored: Vec<String>,
    /// A dry run: what the restore would add, change and delete, against the object as it is.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub would: Option<WouldChange>,
}

impl ObjectReport {
    pub(crate) fn new(object: &BackupObject) -> Self {
        ObjectReport {
            class: object.class.clone(),
            name: object.name.clone(),
            id: object.id.clone(),
            outcome: Outcome::Restored,
            message: None,
            keys_written: 0,
            keys_deleted: 0,
            rows_written: 0,
            rows_deleted: 0,
            not_restored: Vec::new(),
            would: None,
        }
    }

    pub(crate) fn ended(mut self, outcome: Outcome, message: impl Into<String>) -> Self {
        self.outcome = outcome;
        self.message = Some(message.into());
        self
    }

    /// One line for a person.
    pub fn line(&self) -> String {
        let who = match &self.name {
            Some(name) => format!("{} {name:?}", self.class),
            None => format!("{} {}", self.class, self.id),
        };
        let counts = format!(
            "keys {} written, {} deleted; rows {} written, {} deleted",
            self.keys_written, self.keys_deleted, self.rows_written, self.rows_deleted
        );
        let outcome = serde_json::to_value(self.outcome).ok().and_then(|v| v.as_str().map(str::to_owned)).unwrap_or_default();
        let mut line = format!("{who}: {} ({counts})", outcome.replace('_', " "));
        if let Some(would) = &self.would {
            line.push_str(&format!("\n  against the object as it is: {}", would.line()));
        }
        if let Some(message) = &self.message {
            line.push_str(&format!(": {message}"));
        }
        for what in &self.not_restored {
            line.push_str(&format!("\n  not restored: {what}"));
        }
        line
    }
}

/// The outcome of a restore over every object.
#[derive(Debug, Default, Clone, serde::Serialize)]
pub struct Summary {
    pub dry_run: bool,
    /// The file that holds the objects as they were before, and the command that puts them back.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub undo_file: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub undo: Option<String>,
    pub restored: u64,
    pub refused: u64,
    pub skipped: u64,
    pub unauthorized: u64,
    pub failed: u64,
    pub keys_written: u64,
    pub keys_deleted: u64,
    pub rows_written: u64,
    pub rows_deleted: u64,
    /// A dry run: what the restore would add, change and delete over every object.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub would: Option<WouldChange>,
}

impl Summary {
    pub fn of(reports: &[ObjectReport], settings: &RestoreSettings) -> Self {
        let mut summary = Summary { dry_run: settings.dry_run, ..Summary::default() };
        if let Some(undo) = &settings.undo {
            summary.undo = Some(undo_command(settings));
            summary.undo_file = Some(undo.file.display().to_string());
        }
        for report in reports {
            match report.outcome {
                Outcome::Restored | Outcome::WouldRestore => summary.restored += 1,
                Outcome::Refused => summary.refused += 1,
                Outcome::Skipped => summary.skipped += 1,
                Outcome::Unauthorized => summary.unauthorized += 1,
                Outcome::Failed => summary.failed += 1,
            }
            summary.keys_written += report.keys_written;
            summary.keys_deleted += report.keys_deleted;
            summary.rows_written += report.rows_written;
            summary.rows_deleted += report.rows_deleted;
            if let Some(would) = report.would {
                summary.would = Some(summary.would.unwrap_or_default().plus(would));
            }
        }
        summary
    }

    pub fn line(&self) -> String {
        let undo = self.undo.as_ref().map_or(String::new(), |command| format!("\nto undo it: {command}"));
        format!(
            "durafetch-pull restore{}: {} objects {}, {} refused (not empty), {} skipped, {} unauthorized, {} failed; keys {} written, {} deleted; rows {} written, {} deleted",
            if self.dry_run { " (dry run: nothing written)" } else { "" },
            self.restored,
            if self.dry_run { "would be restored" } else { "restored" },
            self.refused,
            self.skipped,
            self.unauthorized,
            self.failed,
            self.keys_written,
            self.keys_deleted,
            self.rows_written,
            self.rows_deleted
        ) + &self.would.map_or(String::new(), |would| format!("\nagainst the objects as they are: {}", would.line()))
            + &undo
    }

    pub fn json(&self) -> String {
        let mut value = serde_json::to_value(self).unwrap_or_default();
        value["event"] = "summary".into();
        value.to_string()
    }
}

/// The command that puts back what the restore writes over: a restore from the undo file.
pub fn undo_command(settings: &RestoreSettings) -> String {
    let file = settings.undo.as_ref().map(|u| u.file.display().to_string()).unwrap_or_default();
    let mut command = vec!["durafetch-pull".to_owned(), "restore".to_owned(), format!("--db={file}")];
    command.extend(settings.undo_args.iter().cloned());
    command.iter().map(|a| shell_word(a)).collect::<Vec<_>>().join(" ")
}

/// A word of a printed command, quoted for a POSIX shell when it needs to be.
fn shell_word(word: &str) -> String {
    let plain = word.chars().all(|c| c.is_ascii_alphanumeric() || "-_./:=@%+,".contains(c));
    if !word.is_empty() && plain && !word.starts_with('=') {
        word.to_owned()
    } else {
        format!("'{}'", word.replace('\'', "'\\''"))
    }
}
