//! The database on a thread of its own, shared by the index reader and every download task,
//! and each download's handle to its object's write state, which stays on that thread.

use durafetch_sdk::core::cursor::Cursor;
use durafetch_sdk::core::protocol::{Change, ExportMode, SqlPage};

use crate::sink::interface::{ApplyStats, OpenError, Sink, SinkError, Swept, WriteId};

type Job = Box<dyn FnOnce(&mut dyn Sink) + Send>;

enum Request {
    Run(Job),
    Close(tokio::sync::oneshot::Sender<()>),
}

/// The database on a thread of its own. Calls run there one at a time, in the order they were
/// made: a download queues a page and goes on receiving and parsing the next while SQLite
/// writes it, and whatever a failed attempt queued is written before anything its retry
/// queues, so the two never interleave.
#[derive(Clone)]
pub struct SinkThread {
    requests: std::sync::mpsc::Sender<Request>,
}

/// A call queued on the [`SinkThread`]; [`Queued::wait`] gives its result.
pub struct Queued<T>(tokio::sync::oneshot::Receiver<Result<T, SinkError>>);

impl<T> Queued<T> {
    pub async fn wait(self) -> Result<T, SinkError> {
        self.0.await.unwrap_or(Err(SinkError::Stopped))
    }
}

impl SinkThread {
    /// Opens the database with `open` on a thread of its own, and keeps it there: PostgreSQL's
    /// blocking client runs a runtime of its own, which cannot be started inside the pull's.
    pub async fn start(open: impl FnOnce() -> Result<Box<dyn Sink>, OpenError> + Send + 'static) -> Result<Self, OpenError> {
        let (requests, incoming) = std::sync::mpsc::channel();
        let (opened, is_open) = tokio::sync::oneshot::channel();
        std::thread::spawn(move || {
            let mut sink = match open() {
                Ok(sink) => {
                    let _ = opened.send(Ok(()));
                    sink
                }
                Err(e) => {
                    let _ = opened.send(Err(e));
                    return;
                }
            };
            while let Ok(request) = incoming.recv() {
                match request {
                    Request::Run(job) => job(sink.as_mut()),
                    Request::Close(closed) => {
                        // Closing the connection checkpoints the WAL into the file.
                        drop(sink);
                        let _ = closed.send(());
                        return;
                    }
                }
            }
        });
        is_open.await.unwrap_or_else(|_| Err(OpenError::Io(std::io::Error::other("the database thread stopped"))))?;
        Ok(SinkThread { requests })
    }

    /// Queues `f` behind the calls made before it, without waiting for it.
    pub fn queue<T: Send + 'static>(&self, f: impl FnOnce(&mut dyn Sink) -> Result<T, SinkError> + Send + 'static) -> Queued<T> {
        let (done, result) = tokio::sync::oneshot::channel();
        let job: Job = Box::new(move |sink| {
            let _ = done.send(f(sink));
        });
        // A send fails only after `close`; the dropped job then reports the thread stopped.
        let _ = self.requests.send(Request::Run(job));
        Queued(result)
    }

    /// Runs `f` after the calls made before it and waits for its result.
    pub async fn run<T: Send + 'static>(
        &self,
        f: impl FnOnce(&mut dyn Sink) -> Result<T, SinkError> + Send + 'static,
    ) -> Result<T, SinkError> {
        self.queue(f).wait().await
    }

    /// Starts writing a download of the object `do_id`: its state stays on the database thread,
    /// and the handle names it.
    pub async fn begin(
        &self,
        do_id: i64,
        mode: ExportMode,
        read_at: Cursor,
        key_filter: String,
        compare: bool,
    ) -> Result<ObjectWriter, SinkError> {
        let id = self.run(move |s| s.begin(do_id, mode, read_at, &key_filter, compare)).await?;
        Ok(ObjectWriter { sink: self.clone(), id, finished: false })
    }

    /// Writes what is queued and closes the file.
    pub async fn close(self) {
        let (closed, done) = tokio::sync::oneshot::channel();
        if self.requests.send(Request::Close(closed)).is_ok() {
            let _ = done.await;
        }
    }
}

/// A download's handle to its object's write state on the database thread: pages are applied
/// through it, and finishing saves the cursor with the last of them. A handle dropped before it
/// finished (a failed or cut-off download) drops the state, and the cursor stays as it was.
pub struct ObjectWriter {
    sink: SinkThread,
    id: WriteId,
    finished: bool,
}

impl ObjectWriter {
    /// Queues a page, to be written in one transaction while the caller goes on.
    pub fn apply(&self, changes: Vec<Change>) -> Queued<ApplyStats> {
        let id = self.id;
        self.sink.queue(move |s| s.apply(id, &changes))
    }

    /// Queues a page of one SQL table's rows.
    pub fn apply_sql(&self, page: SqlPage) -> Queued<ApplyStats> {
        let id = self.id;
        self.sink.queue(move |s| s.apply_sql(id, &page))
    }

    /// Queues the save of an SQL table's schema.
    pub fn save_sql_schema(&self, table: String, statements: Vec<String>, autoincrement: Option<i64>) -> Queued<ApplyStats> {
        let id = self.id;
        self.sink.queue(move |s| s.save_sql_schema(id, &table, &statements, autoincrement))
    }

    /// Queues the drop of the object's rows of an SQL table it no longer has.
    pub fn drop_sql_table(&self, table: String) -> Queued<ApplyStats> {
        let id = self.id;
        self.sink.queue(move |s| s.drop_sql_table(id, &table))
    }

    /// Sweeps what a snapshot did not send and saves `cursor` and the SQL cursor `sql`,
    /// together; answers what it swept.
    pub async fn finish(mut self, cursor: Cursor, sql: u64) -> Result<Swept, SinkError> {
        self.finished = true;
        let id = self.id;
        self.sink.run(move |s| s.finish(id, cursor, sql)).await
    }
}

impl Drop for ObjectWriter {
    fn drop(&mut self) {
        if !self.finished {
            let id = self.id;
            drop(self.sink.queue(move |s| {
                s.abandon(id);
                Ok(())
            }));
        }
    }
}
