//! What the user sees while a pull runs: a progress bar on a terminal, log lines elsewhere, and
//! one summary line at the end.

use std::io::IsTerminal;

use indicatif::{ProgressBar, ProgressStyle};

use crate::sink::database::Database;

/// The outcome of one pull over every server.
#[derive(Debug, Default, Clone)]
pub struct Summary {
    pub index_changed: u64,
    pub objects_pulled: u64,
    pub snapshots: u64,
    pub keys_written: u64,
    pub keys_deleted: u64,
    /// Rows of SQL tables.
    pub rows_written: u64,
    pub rows_deleted: u64,
    /// Bytes of export messages received.
    pub bytes: u64,
    /// Objects behind the registry that the filters left out.
    pub filtered_out: u64,
    /// With `--verify=full`: rows that disagreed with their object (missing, different or extra), now repaired.
    pub rows_repaired: u64,
    pub failed: Vec<String>,
    /// SQL tables that durafetch cannot record, as `<class> <object>: <table>`: their rows are
    /// not in the database (the object's log, `wrangler tail`, says why).
    pub tables_not_recorded: Vec<String>,
    /// The process's peak resident memory so far (Linux only).
    pub peak_rss_kib: Option<u64>,
}

impl Summary {
    pub fn line(&self, db: &Database) -> String {
        format!(
            "durafetch-pull: {} changed objects in the index; pulled {} objects ({} full snapshots, {:.1} MB): {} keys written, {} deleted; {} SQL rows written, {} deleted; {} rows repaired; {} left out by filters; {} failed; database {}{}",
            self.index_changed,
            self.objects_pulled,
            self.snapshots,
            self.bytes as f64 / 1e6,
            self.keys_written,
            self.keys_deleted,
            self.rows_written,
            self.rows_deleted,
            self.rows_repaired,
            self.filtered_out,
            self.failed.len(),
            db,
            if self.tables_not_recorded.is_empty() {
                String::new()
            } else {
                format!("; SQL tables not recorded (see the object's log): {}", self.tables_not_recorded.join(", "))
            }
        )
    }

    pub fn json(&self, db: &Database) -> String {
        serde_json::json!({
            "event": "summary",
            "index_changed": self.index_changed,
            "objects_pulled": self.objects_pulled,
            "snapshots": self.snapshots,
            "keys_written": self.keys_written,
            "keys_deleted": self.keys_deleted,
            "rows_written": self.rows_written,
            "rows_deleted": self.rows_deleted,
            "bytes": self.bytes,
            "filtered_out": self.filtered_out,
            "rows_repaired": self.rows_repaired,
            "peak_rss_kib": self.peak_rss_kib,
            "failed": self.failed,
            "tables_not_recorded": self.tables_not_recorded,
            "db": db.to_string(),
        })
        .to_string()
    }
}

/// Peak resident memory of this process, from `/proc/self/status` (`None` elsewhere).
pub fn peak_rss_kib() -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with("VmHWM:"))?;
    line.split_whitespace().nth(1)?.parse().ok()
}

/// A bar over the objects to download, shown only on a terminal and when not quiet.
pub fn object_bar(total: u64, quiet: bool) -> ProgressBar {
    if quiet || !std::io::stderr().is_terminal() {
        return ProgressBar::hidden();
    }
    let bar = ProgressBar::new(total);
    bar.set_style(
        ProgressStyle::with_template("{spinner} objects {pos}/{len} {wide_bar} {per_sec} {elapsed} {msg}")
            .unwrap_or_else(|_| ProgressStyle::default_bar()),
    );
    bar
}
