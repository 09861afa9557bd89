//! Typed failures of the cloud path.
//!
//! Every message here is built from Hearth's own words plus, at most, a short
//! and scrubbed summary of what the upstream said. None of them can contain
//! the API key: strings that might echo it (upstream bodies, transport error
//! chains) pass through [`crate::redact`] before they are stored.

use std::time::Duration;

/// When a failure happened relative to the answer the caller sees.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Phase {
    /// Nothing of the answer has been handed to the caller: falling back to
    /// the local model (or retrying) cannot duplicate or truncate output.
    BeforeFirstByte,
    /// At least one event of the answer has been handed to the caller: the
    /// stream ends with [`hearth_api::ChatEvent::Error`] and must not be
    /// silently replaced by another answer.
    MidStream,
}

impl Phase {
    fn describe(self) -> &'static str {
        match self {
            Phase::BeforeFirstByte => "before the first byte of the answer",
            Phase::MidStream => "in the middle of the answer",
        }
    }
}

impl std::fmt::Display for Phase {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.describe())
    }
}

#[derive(Clone, Debug, PartialEq, thiserror::Error)]
pub enum CloudError {
    /// The deployment is offline: no cloud client may exist.
    #[error("the cloud is disabled in an offline deployment")]
    Offline,

    /// The configuration cannot produce a working client.
    #[error("invalid cloud configuration: {0}")]
    Config(String),

    /// The circuit breaker is open: the upstream failed recently, so the
    /// request was not sent at all.
    #[error("cloud circuit breaker is open (next probe in {retry_in:?})")]
    CircuitOpen { retry_in: Duration },

    /// No TCP/TLS connection could be established (refused, unreachable,
    /// DNS, TLS handshake, connect timeout).
    #[error("cannot connect to the cloud endpoint after {attempts} attempt(s): {detail}")]
    Connect { attempts: u32, detail: String },

    /// The connection broke (reset, closed early, body read error).
    #[error("cloud connection lost {phase} after {attempts} attempt(s): {detail}")]
    Connection { phase: Phase, attempts: u32, detail: String },

    /// A time limit elapsed: the request's deadline, or (`first_byte`) the
    /// per-attempt first-byte timeout on the last attempt. `limit` is the
    /// configured value of the limit that elapsed.
    #[error("cloud request timed out {phase} after {attempts} attempt(s) ({} of {limit:?})",
        if *first_byte { "first-byte timeout" } else { "deadline" })]
    Timeout { phase: Phase, attempts: u32, limit: Duration, first_byte: bool },

    /// The upstream answered with a non-success HTTP status.
    #[error("cloud endpoint answered HTTP {status} after {attempts} attempt(s): {summary}")]
    Http { status: u16, attempts: u32, summary: String, retry_after: Option<Duration> },

    /// The upstream reported an error inside an otherwise successful stream
    /// (`data: {"error": ...}`, as vLLM and OpenAI do on overload).
    #[error("cloud endpoint reported an error {phase}: {summary}")]
    Upstream { phase: Phase, summary: String },

    /// The response did not follow the chat-completions streaming protocol:
    /// malformed SSE or JSON, missing fields, unexpected content type, or a
    /// stream that ended without `[DONE]` and without a finish reason.
    #[error("cloud protocol error {phase}: {detail}")]
    Protocol { phase: Phase, detail: String },
}

impl CloudError {
    /// True when nothing of the answer reached the caller, so answering the
    /// request locally instead is safe (no duplicated or spliced output).
    /// Every error returned by [`crate::CloudClient::chat`] is of this kind;
    /// the error behind a stream's `ChatEvent::Error` is not.
    pub fn is_before_first_byte(&self) -> bool {
        match self {
            CloudError::Offline
            | CloudError::Config(_)
            | CloudError::CircuitOpen { .. }
            | CloudError::Connect { .. }
            | CloudError::Http { .. } => true,
            CloudError::Connection { phase, .. }
            | CloudError::Timeout { phase, .. }
            | CloudError::Upstream { phase, .. }
            | CloudError::Protocol { phase, .. } => *phase == Phase::BeforeFirstByte,
        }
    }

    /// The HTTP status, for `Http` errors.
    pub fn status(&self) -> Option<u16> {
        match self {
            CloudError::Http { status, .. } => Some(*status),
            _ => None,
        }
    }

    /// A short, stable name of the error class (for metrics and the ledger).
    pub fn kind(&self) -> &'static str {
        match self {
            CloudError::Offline => "offline",
            CloudError::Config(_) => "config",
            CloudError::CircuitOpen { .. } => "circuit_open",
            CloudError::Connect { .. } => "connect",
            CloudError::Connection { .. } => "connection",
            CloudError::Timeout { .. } => "timeout",
            CloudError::Http { .. } => "http_status",
            CloudError::Upstream { .. } => "upstream",
            CloudError::Protocol { .. } => "protocol",
        }
    }

    pub(crate) fn with_attempts(mut self, n: u32) -> CloudError {
        match &mut self {
            CloudError::Connect { attempts, .. }
            | CloudError::Connection { attempts, .. }
            | CloudError::Timeout { attempts, .. }
            | CloudError::Http { attempts, .. } => *attempts = n,
            _ => {}
        }
        self
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn phase_decides_fallback_safety() {
        let before = CloudError::Protocol { phase: Phase::BeforeFirstByte, detail: "x".into() };
        let mid = CloudError::Protocol { phase: Phase::MidStream, detail: "x".into() };
        assert!(before.is_before_first_byte());
        assert!(!mid.is_before_first_byte());
        assert!(CloudError::CircuitOpen { retry_in: Duration::from_secs(1) }.is_before_first_byte());
        assert!(!CloudError::Timeout {
            phase: Phase::MidStream,
            attempts: 1,
            limit: Duration::from_secs(1),
            first_byte: false
        }
            .is_before_first_byte());
    }

    #[test]
    fn attempts_are_rewritten() {
        let e = CloudError::Connect { attempts: 1, detail: "refused".into() }.with_attempts(3);
        assert_eq!(e, CloudError::Connect { attempts: 3, detail: "refused".into() });
        assert!(e.to_string().contains("3 attempt"));
    }
}
