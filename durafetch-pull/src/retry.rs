//! Retries with exponential backoff and jitter, for downloads, index reads and watch
//! subscriptions alike. With a limit, the waits add up to about 13 s, longer than a worker takes
//! to restart.

use std::time::Duration;

/// Whether another attempt may succeed: each error type answers for its own cases, where it is
/// defined.
pub trait Retryable: std::fmt::Display {
    fn is_retryable(&self) -> bool;
}

const ATTEMPTS: u32 = 6;
const FIRST_WAIT: Duration = Duration::from_millis(200);
const MAX_WAIT: Duration = Duration::from_secs(5);

pub struct Backoff {
    attempt: u32,
    wait: Duration,
    /// Attempts in all; `None` for a subscription that reconnects for as long as it runs.
    limit: Option<u32>,
}

impl Backoff {
    pub fn new() -> Self {
        Backoff { attempt: 1, wait: FIRST_WAIT, limit: Some(ATTEMPTS) }
    }

    pub fn endless() -> Self {
        Backoff { limit: None, ..Self::new() }
    }

    /// Starts the waits over, after an attempt that worked for a while.
    pub fn reset(&mut self) {
        let limit = self.limit;
        *self = Backoff { limit, ..Self::new() };
    }

    /// After a failed attempt: waits and answers true if another attempt may succeed.
    pub async fn retry_after(&mut self, error: &impl Retryable, what: &str) -> bool {
        if self.limit.is_some_and(|limit| self.attempt >= limit) || !error.is_retryable() {
            return false;
        }
        tracing::warn!(what, attempt = self.attempt, error = %error, "failed; retrying");
        let jitter = Duration::from_millis(fastrand::u64(0..=self.wait.as_millis() as u64 / 2));
        tokio::time::sleep(self.wait + jitter).await;
        self.wait = (self.wait * 2).min(MAX_WAIT);
        self.attempt += 1;
        true
    }
}
