//! The client end of a restore's import session: requests sent ahead of their replies up to a
//! window, so the object always has the next page to stage, and each reply taken in order. The
//! object never holds more than a window of requests; it applies what it staged at `end`.

use std::collections::VecDeque;
use std::time::Duration;

use durafetch_sdk::core::protocol::SqlPage;
use durafetch_sdk::core::restore_protocol::{Applied, ImportMode, ImportReply, ImportRequest, KeyScope, TableRows, IMPORT_VERSION};
use futures_util::{SinkExt, StreamExt};
use tokio_tungstenite::tungstenite::Message;

use crate::transport::session::{frame_text, protocol_error, SessionError};
use crate::transport::Link;

/// Requests sent ahead of their replies.
const WINDOW: usize = 4;
/// How long a reply may take: a page is staged in well under a second, and `end` applies a
/// large object in seconds; an object silent this long is taken as gone.
const REPLY_LIMIT: Duration = Duration::from_secs(120);

/// What a request sent is waiting for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Awaiting {
    Staged,
    KeyList,
}

/// How the object answered `end`.
pub enum Ended {
    Applied(Applied),
    /// `--mode empty`, and the object held data by then: nothing was written.
    Refused(String),
}

/// How the object answered the hello.
pub enum Opened {
    /// The object's SQL tables, with their rows.
    Ready { session: ImportSession, tables: Vec<TableRows> },
    /// The mode forbids writing into this object; nothing was written.
    Refused(String),
}

pub struct ImportSession {
    socket: Link,
    awaiting: VecDeque<Awaiting>,
}

impl ImportSession {
    /// Opens a session; `keys` are the keys a replace may delete.
    pub async fn open(mut socket: Link, mode: ImportMode, keys: &KeyScope) -> Result<Opened, SessionError> {
        let hello = ImportRequest::Hello { version: IMPORT_VERSION, mode, window: WINDOW as u32, keys: keys.clone() };
        send(&mut socket, serde_json::to_string(&hello).map_err(|e| SessionError::Protocol(e.to_string()))?).await?;
        let mut session = ImportSession { socket, awaiting: VecDeque::new() };
        match session.reply().await? {
            ImportReply::Ready { tables, .. } => Ok(Opened::Ready { session, tables }),
            ImportReply::Refused { message } => {
                let _ = session.socket.close().await;
                Ok(Opened::Refused(message))
            }
            other => Err(SessionError::Protocol(format!("expected ready, got {other:?}"))),
        }
    }

    /// Sends a `put` request already written as text (see `PageWriter::import`).
    pub async fn put_text(&mut self, text: String) -> Result<(), SessionError> {
        self.send(text, Awaiting::Staged).await
    }

    pub async fn create_table(&mut self, table: &str, statements: &[String], autoincrement: Option<i64>) -> Result<(), SessionError> {
        let request = ImportRequest::CreateTable { table: table.into(), statements: statements.to_vec(), autoincrement };
        self.request(&request, Awaiting::Staged).await
    }

    pub async fn drop_table(&mut self, table: &str) -> Result<(), SessionError> {
        self.request(&ImportRequest::DropTable { table: table.into() }, Awaiting::Staged).await
    }

    pub async fn rows(&mut self, page: SqlPage) -> Result<(), SessionError> {
        self.request(&ImportRequest::Rows(page), Awaiting::Staged).await
    }

    /// The object's keys after `after`, and whether they are the last.
    pub async fn list_keys(&mut self, after: Option<String>) -> Result<(Vec<String>, bool), SessionError> {
        self.request(&ImportRequest::ListKeys { after }, Awaiting::KeyList).await?;
        loop {
            if let Some(listed) = self.take_reply().await? {
                return Ok(listed);
            }
        }
    }

    /// Asks the object to apply everything sent, once every request is answered.
    pub async fn end(mut self) -> Result<Ended, SessionError> {
        while !self.awaiting.is_empty() {
            self.take_reply().await?;
        }
        send(&mut self.socket, serde_json::to_string(&ImportRequest::End {}).map_err(|e| SessionError::Protocol(e.to_string()))?).await?;
        let ended = match self.reply().await? {
            ImportReply::Applied(applied) => Ended::Applied(applied),
            ImportReply::Refused { message } => Ended::Refused(message),
            other => return Err(SessionError::Protocol(format!("{other:?} in answer to end"))),
        };
        let _ = self.socket.close().await;
        Ok(ended)
    }

    /// Leaves without `end`: the object applies nothing (a dry run).
    pub async fn leave(mut self) {
        let _ = self.socket.close().await;
    }

    async fn request(&mut self, request: &ImportRequest, awaiting: Awaiting) -> Result<(), SessionError> {
        let text = serde_json::to_string(request).map_err(|e| SessionError::Protocol(e.to_string()))?;
        self.send(text, awaiting).await
    }

    async fn send(&mut self, text: String, awaiting: Awaiting) -> Result<(), SessionError> {
        while self.awaiting.len() >= WINDOW {
            self.take_reply().await?;
        }
        send(&mut self.socket, text).await?;
        self.awaiting.push_back(awaiting);
        Ok(())
    }

    /// Takes the oldest request's reply; a key list is handed back.
    async fn take_reply(&mut self) -> Result<Option<(Vec<String>, bool)>, SessionError> {
        let reply = self.reply().await?;
        let awaiting = self.awaiting.pop_front().ok_or_else(|| SessionError::Protocol(format!("{reply:?} answers no request")))?;
        match (awaiting, reply) {
            (Awaiting::Staged, ImportReply::Staged {}) => Ok(None),
            (Awaiting::KeyList, ImportReply::Keys { keys, done }) => Ok(Some((keys, done))),
            (awaiting, other) => Err(SessionError::Protocol(format!("{other:?} in answer to {awaiting:?}"))),
        }
    }

    async fn reply(&mut self) -> Result<ImportReply, SessionError> {
        loop {
            let frame = tokio::time::timeout(REPLY_LIMIT, self.socket.next()).await.map_err(|_| SessionError::Silent)?;
            let Some(text) = frame_text(frame.ok_or(SessionError::Closed)?)? else { continue };
            return match serde_json::from_str::<ImportReply>(&text) {
                Ok(ImportReply::Error { message }) => Err(SessionError::Server(message)),
                Ok(reply) => Ok(reply),
                Err(e) => Err(SessionError::Protocol(e.to_string())),
            };
        }
    }
}

async fn send(socket: &mut Link, text: String) -> Result<(), SessionError> {
    socket.send(Message::text(text)).await.map_err(protocol_error)
}
