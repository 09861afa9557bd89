//! The one error type of the ledger.

use std::path::PathBuf;

/// Everything that can go wrong in the ledger, typed so that callers can tell
/// "your input is wrong" from "that file is not a ledger" from "the database
/// said no".
#[derive(Debug, thiserror::Error)]
pub enum LedgerError {
    /// A field of a record or a price failed validation (length, characters,
    /// range). `field` names it; nothing of a rejected value that could be
    /// user text is echoed beyond its length.
    #[error("invalid {field}: {reason}")]
    InvalidField { field: &'static str, reason: String },

    /// A cascade's attempts list contradicts the answer it produced.
    #[error("attempts do not match the answer: {0}")]
    AttemptMismatch(String),

    /// A cost does not fit the 64-bit pico-dollar column (more than about
    /// 9.2 million USD in one request: a price or token count is wrong).
    #[error("cost overflows the ledger's 64-bit pico-dollar column")]
    CostOverflow,

    /// `open` was given a URL whose scheme no backend handles.
    #[error("unsupported ledger location scheme {0:?}: expected postgres://, postgresql://, sqlite:// or a file path")]
    UnsupportedScheme(String),

    /// The file exists but is not a Hearth ledger: not SQLite at all, a
    /// corrupt SQLite file, or another program's SQLite database.
    #[error("{path}: not a Hearth ledger database: {reason}")]
    NotALedger { path: PathBuf, reason: String },

    /// The database was migrated by a newer Hearth; this one will not guess at
    /// a schema it does not know.
    #[error("ledger schema version {found} is newer than the newest this build knows ({supported})")]
    SchemaTooNew { found: i64, supported: i64 },

    /// A record with this request id is already stored.
    #[error("a ledger record with request id {0:?} already exists")]
    Duplicate(String),

    /// A stored row violates the schema's invariants (edited by hand, or
    /// written by something else).
    #[error("corrupt ledger row (request {request_id:?}): {reason}")]
    CorruptRow { request_id: String, reason: String },

    /// A time bound (`--since`) could not be understood.
    #[error("invalid time {input:?}: {reason}")]
    InvalidTime { input: String, reason: String },

    /// The background writer has stopped; nothing more can be queued.
    #[error("the ledger writer has stopped")]
    WriterClosed,

    /// A store implementation panicked inside the background writer; the
    /// writer caught it, counted the records as failed and carried on.
    #[error("the ledger store panicked: {0}")]
    StorePanicked(String),

    #[error("{path}: {source}")]
    Io { path: PathBuf, source: std::io::Error },

    #[error("sqlite: {0}")]
    Sqlite(#[from] rusqlite::Error),

    #[error("postgres: {0}")]
    Postgres(#[from] postgres::Error),
}

impl LedgerError {
    pub(crate) fn invalid(field: &'static str, reason: impl Into<String>) -> LedgerError {
        LedgerError::InvalidField { field, reason: reason.into() }
    }

    pub(crate) fn corrupt(request_id: &str, reason: impl Into<String>) -> LedgerError {
        LedgerError::CorruptRow { request_id: request_id.to_owned(), reason: reason.into() }
    }
}
