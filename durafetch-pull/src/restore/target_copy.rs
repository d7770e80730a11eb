//! Copies of the target a restore writes into, pulled just before it writes: the undo copy
//! (with history, naming the objects the restore writes into, so that a restore from it puts
//! back those only) and a dry run's copy to compare the backup with.

use crate::restore::source::BackupObject;
use crate::settings::restore::RestoreSettings;
use crate::transport::Transport;

/// Pulls the objects the restore writes into, as they are now, into `file` with `reader`'s
/// token: the target's objects the filters keep, with `history` for the undo copy, so that a
/// restore from the file puts them back, or without, for a dry run to compare the backup with.
pub(super) async fn copy_target(
    settings: &RestoreSettings,
    reader: &crate::settings::file::Server,
    file: &std::path::Path,
    history: bool,
    transport: &dyn Transport,
    quiet: bool,
) -> Result<(), String> {
    let pull = crate::settings::pull::Settings {
        db: crate::sink::database::Database::File(file.to_path_buf()),
        part: crate::sink::database::Part::WHOLE,
        servers: vec![reader.clone()],
        concurrency: settings.concurrency,
        poll_every: std::time::Duration::from_secs(1),
        filter: settings.filter.clone(),
        history,
        verify: crate::settings::pull::Verify::Off,
        ndjson: settings.ndjson,
    };
    let summary = crate::pull::once_with(&pull, transport, quiet).await.map_err(|e| e.to_string())?;
    match summary.failed.first() {
        Some(failed) => Err(format!("{} objects failed, the first: {failed}", summary.failed.len())),
        None => Ok(()),
    }
}

/// A dry run's copy of the target: a file in a new folder of the temporary folder that only
/// this user can read (it holds the objects' data), removed with the folder once the dry run
/// ends.
pub(super) struct TargetCopy {
    pub(super) file: std::path::PathBuf,
    _folder: tempfile::TempDir,
}

impl TargetCopy {
    pub(super) fn new() -> std::io::Result<Self> {
        let folder = tempfile::Builder::new().prefix("durafetch-dry-run-").tempdir()?;
        Ok(TargetCopy { file: folder.path().join("target.sqlite"), _folder: folder })
    }
}

/// Writes into the undo file which objects this restore writes into (by name, or an unnamed one
/// by id): a restore from the file puts back those only, not the other objects the pull copied,
/// which this restore never touched.
pub(super) fn name_undo_scope(file: &std::path::Path, objects: &[BackupObject]) -> rusqlite::Result<()> {
    let mut conn = rusqlite::Connection::open(file)?;
    let tx = conn.transaction()?;
    tx.execute_batch("CREATE TABLE undo_scope (class_name TEXT NOT NULL, name TEXT, id TEXT NOT NULL)")?;
    {
        let mut insert = tx.prepare("INSERT INTO undo_scope (class_name, name, id) VALUES (?1, ?2, ?3)")?;
        for object in objects {
            insert.execute(rusqlite::params![object.class, object.name, object.id])?;
        }
    }
    tx.commit()
}
