//! The server end of a flow-controlled session: pages go out only against credits the client
//! granted, so an object never queues more than the client's window in memory. An export writes
//! to an [`Outbox`]: such a session, or a whole export answered at once (`one_shot`).

use crate::core::cursor::Cursor;
use crate::core::protocol::{ClientMessage, ProtocolError, ServerMessage, CLIENT_SILENCE_LIMIT_SECS};
use futures_util::StreamExt;
use worker::{EventStream, WebSocket, WebsocketEvent};

/// Close codes: 1000 normal, 1008 policy violation (bad client message), 1011 server error.
const CLOSE_NORMAL: u16 = 1000;
const CLOSE_PROTOCOL: u16 = 1008;
const CLOSE_SERVER_ERROR: u16 = 1011;

/// The next text frame of the client. A binary frame is a protocol error; a close, the client gone.
pub(crate) async fn next_text(events: &mut EventStream<'_>) -> Result<String, SessionError> {
    match events.next().await {
        Some(Ok(WebsocketEvent::Message(msg))) => {
            msg.text().ok_or_else(|| SessionError::Protocol(ProtocolError::Malformed("expected a text frame".into())))
        }
        Some(Ok(WebsocketEvent::Close(_))) | None => Err(SessionError::Closed),
        Some(Err(e)) => Err(SessionError::Server(e.to_string())),
    }
}

/// `message`, a message the client owes: a client silent past the limit has vanished.
pub(crate) async fn owed<T>(message: impl std::future::Future<Output = Result<T, SessionError>>) -> Result<T, SessionError> {
    let limit = std::time::Duration::from_secs(CLIENT_SILENCE_LIMIT_SECS);
    let message = std::pin::pin!(message);
    match futures_util::future::select(message, worker::Delay::from(limit)).await {
        futures_util::future::Either::Left((message, _)) => message,
        futures_util::future::Either::Right(_) => Err(SessionError::Protocol(ProtocolError::Silent)),
    }
}

/// Ends a session: normally, or after `error_message` (the session's own error message, made
/// from the text) with a close code that says whose fault.
pub(crate) fn close(ws: &WebSocket, outcome: Result<(), SessionError>, error_message: impl FnOnce(String) -> String) {
    let (code, message) = match outcome {
        Ok(()) => (CLOSE_NORMAL, None),
        Err(SessionError::Closed) => return,
        Err(SessionError::Protocol(e)) => (CLOSE_PROTOCOL, Some(e.to_string())),
        Err(SessionError::BadRequest(e)) => (CLOSE_PROTOCOL, Some(e)),
        Err(SessionError::Server(e)) => {
            worker::console_error!("durafetch: session failed: {e}");
            (CLOSE_SERVER_ERROR, Some(e))
        }
        // A session has no limit of one response; this is only the one-shot's.
        Err(SessionError::BeyondOneResponse) => (CLOSE_SERVER_ERROR, Some("an export beyond one response".into())),
    };
    if let Some(message) = message {
        let _ = ws.send_with_str(error_message(message));
    }
    let _ = ws.close(Some(code), None::<&str>);
}

/// What the client asked for in its hello.
pub(crate) struct Hello {
    pub since: Option<Cursor>,
    pub since_sql: u64,
    pub since_rev: u64,
    pub watch: bool,
    /// Pages the client accepts before its first credit.
    pub window: u32,
}

impl Hello {
    /// The hello of a client's first message; any other first message breaks the protocol.
    pub fn from_first(message: ClientMessage) -> Result<Hello, ProtocolError> {
        match message {
            ClientMessage::Hello { since, since_sql, since_rev, window, watch, .. } => {
                Ok(Hello { since, since_sql, since_rev, watch, window })
            }
            ClientMessage::Credit { .. } => Err(ProtocolError::NoHello),
        }
    }
}

/// Where an export's messages go.
pub(crate) trait Outbox {
    /// A control message (begin, end, a table's schema or its end): no credit needed.
    fn send(&mut self, msg: &ServerMessage) -> Result<(), SessionError>;
    /// A page, within the client's window.
    async fn send_page(&mut self, page: &str) -> Result<(), SessionError>;
    /// [`Outbox::send_page`] for a page already written as a JS string.
    async fn send_page_text(&mut self, page: &js_sys::JsString) -> Result<(), SessionError>;
}

pub(crate) enum SessionError {
    /// The client broke the protocol; it is told why.
    Protocol(ProtocolError),
    /// A restore client's request cannot be carried out as sent; it is told why.
    BadRequest(String),
    /// The client went away; nothing more to say.
    Closed,
    /// Storage or runtime failure; the client is told, without internals it need not see.
    Server(String),
    /// An export asked for in one response holds more than one response carries: the client
    /// opens a session instead.
    BeyondOneResponse,
}

impl From<worker::Error> for SessionError {
    fn from(e: worker::Error) -> Self {
        SessionError::Server(e.to_string())
    }
}

impl From<wasm_bindgen::JsValue> for SessionError {
    fn from(e: wasm_bindgen::JsValue) -> Self {
        SessionError::Server(worker::Error::from(e).to_string())
    }
}

pub(crate) struct FlowSession<'a> {
    ws: &'a WebSocket,
    events: EventStream<'a>,
    credits: u32,
    /// The hello's window: the most pages the client may have granted and not yet received.
    window: u32,
}

impl<'a> FlowSession<'a> {
    /// Accepts the server end of a WebSocket pair.
    pub fn accept(ws: &'a WebSocket) -> worker::Result<FlowSession<'a>> {
        ws.accept()?;
        Ok(FlowSession { ws, events: ws.events()?, credits: 0, window: 0 })
    }

    /// Waits for the client's hello, which must be its first message.
    pub async fn hello(&mut self) -> Result<Hello, SessionError> {
        let hello = Hello::from_first(self.owed_message().await?).map_err(SessionError::Protocol)?;
        self.credits = hello.window;
        self.window = hello.window;
        Ok(hello)
    }

    /// The next message, when the client owes one.
    async fn owed_message(&mut self) -> Result<ClientMessage, SessionError> {
        owed(self.next_message()).await
    }

    async fn next_message(&mut self) -> Result<ClientMessage, SessionError> {
        ClientMessage::parse(&next_text(&mut self.events).await?).map_err(SessionError::Protocol)
    }

    async fn spend_credit(&mut self) -> Result<(), SessionError> {
        while self.credits == 0 {
            let message = self.owed_message().await?;
            self.take_credit(message)?;
        }
        self.credits -= 1;
        Ok(())
    }

    fn take_credit(&mut self, message: ClientMessage) -> Result<(), SessionError> {
        match message {
            // A client granting more than its window would have the object queue pages in its
            // socket buffer without bound: the window is what bounds the object's memory.
            ClientMessage::Credit { pages } => match self.credits.checked_add(pages).filter(|&credits| credits <= self.window) {
                Some(credits) => {
                    self.credits = credits;
                    Ok(())
                }
                None => Err(SessionError::Protocol(ProtocolError::CreditBeyondWindow)),
            },
            ClientMessage::Hello { .. } => Err(SessionError::Protocol(ProtocolError::Malformed("hello sent twice".into()))),
        }
    }

    /// Waits for `wake` while taking the client's credits, and notices the client leaving.
    pub async fn idle_until(&mut self, wake: impl std::future::Future<Output = ()>) -> Result<(), SessionError> {
        let mut wake = std::pin::pin!(wake);
        loop {
            let message = {
                let next = std::pin::pin!(self.next_message());
                match futures_util::future::select(next, wake.as_mut()).await {
                    futures_util::future::Either::Left((message, _)) => message?,
                    futures_util::future::Either::Right(((), _)) => return Ok(()),
                }
            };
            self.take_credit(message)?;
        }
    }

    /// Sends a control message (the index's end); these do not use credits.
    pub fn send(&self, msg: &ServerMessage) -> Result<(), SessionError> {
        let text = serde_json::to_string(msg).map_err(|e| SessionError::Server(e.to_string()))?;
        self.ws.send_with_str(text)?;
        Ok(())
    }

    /// Ends the session: normally, or with an error message and a close code that says whose fault.
    pub fn finish(self, outcome: Result<(), SessionError>) {
        close(self.ws, outcome, |message| serde_json::to_string(&ServerMessage::Error { message }).unwrap_or_default());
    }
}

impl Outbox for FlowSession<'_> {
    fn send(&mut self, msg: &ServerMessage) -> Result<(), SessionError> {
        FlowSession::send(self, msg)
    }

    /// Sends one page, first waiting for a credit if the client's window is used up.
    async fn send_page(&mut self, page: &str) -> Result<(), SessionError> {
        self.spend_credit().await?;
        self.ws.send_with_str(page)?;
        Ok(())
    }

    async fn send_page_text(&mut self, page: &js_sys::JsString) -> Result<(), SessionError> {
        self.spend_credit().await?;
        super::json_page::send(self.ws, page)?;
        Ok(())
    }
}
