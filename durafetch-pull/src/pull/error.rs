//! The error of a transfer (an index read or an object's download): the session's or the
//! file's, each kept whole, and classified for retries by the layer that defined it.

use crate::retry::Retryable;
use crate::sink::interface::SinkError;
use crate::transport::session::SessionError;

#[derive(Debug, thiserror::Error)]
pub enum TransferError {
    #[error(transparent)]
    Session(#[from] SessionError),
    #[error(transparent)]
    Sink(#[from] SinkError),
}

impl From<crate::transport::error::ConnectError> for TransferError {
    fn from(e: crate::transport::error::ConnectError) -> Self {
        TransferError::Session(e.into())
    }
}

impl Retryable for TransferError {
    fn is_retryable(&self) -> bool {
        match self {
            TransferError::Session(e) => e.is_retryable(),
            TransferError::Sink(e) => e.is_retryable(),
        }
    }
}
