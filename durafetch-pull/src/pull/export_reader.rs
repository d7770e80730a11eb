//! An export's messages as a download reads them: asked for in one request first, and read from
//! a flow-controlled session when the server says the export needs one (it is larger than one
//! response, or the server predates such answers).

use std::collections::VecDeque;

use durafetch_sdk::core::cursor::Cursor;
use durafetch_sdk::core::protocol::ServerMessage;

use crate::settings::file::Server;
use crate::transport::session::{server_message, ClientSession, SessionError};
use crate::transport::Transport;

pub enum ExportReader {
    Session(ClientSession),
    /// The lines of one answer, with the bytes read so far.
    Whole {
        lines: VecDeque<String>,
        received: u64,
    },
}

impl ExportReader {
    /// The export at `path` from the cursor `since` and the SQL cursor `since_sql`.
    pub async fn open(
        transport: &dyn Transport,
        server: &Server,
        path: &str,
        since: Option<Cursor>,
        since_sql: u64,
    ) -> Result<Self, SessionError> {
        let hello = ClientSession::export_hello(since, since_sql);
        let text = serde_json::to_string(&hello).map_err(|e| SessionError::Protocol(e.to_string()))?;
        match transport.export_whole(server, path, &text).await? {
            Some(answer) => {
                Ok(ExportReader::Whole { lines: answer.lines().filter(|l| !l.is_empty()).map(str::to_owned).collect(), received: 0 })
            }
            None => Ok(ExportReader::Session(ClientSession::start(transport.open(server, path).await?, hello).await?)),
        }
    }

    /// The next message; an answer that stops before the export's end is a session closed early.
    pub async fn next(&mut self) -> Result<ServerMessage, SessionError> {
        match self {
            ExportReader::Session(session) => session.next().await,
            ExportReader::Whole { lines, received } => {
                let line = lines.pop_front().ok_or(SessionError::Closed)?;
                *received += line.len() as u64;
                server_message(&line)
            }
        }
    }

    /// Tells a session the page is consumed; a whole answer needs no credits.
    pub async fn consumed_page(&mut self) -> Result<(), SessionError> {
        match self {
            ExportReader::Session(session) => session.consumed_page().await,
            ExportReader::Whole { .. } => Ok(()),
        }
    }

    pub fn received_bytes(&self) -> u64 {
        match self {
            ExportReader::Session(session) => session.received_bytes(),
            ExportReader::Whole { received, .. } => *received,
        }
    }

    pub async fn close(self) {
        if let ExportReader::Session(session) = self {
            session.close().await;
        }
    }
}
