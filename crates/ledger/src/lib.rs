//! Hearth's usage and cost ledger.
//!
//! Local-first routing is adopted when its savings are shown, not claimed.
//! Every request Hearth answers (or fails) becomes one [`LedgerRecord`]:
//! where it went and why, which model answered, tokens, time to first token,
//! total latency, status, what it cost at the configured [`Prices`], and what
//! the same tokens would have cost had everything gone to the cloud.
//! [`LedgerStore::summary`] folds a time window into a [`Report`] (what
//! `hearth report` prints, as a table or JSON).
//!
//! ```no_run
//! # use std::sync::Arc;
//! # fn main() -> Result<(), hearth_ledger::LedgerError> {
//! let store = hearth_ledger::open("/var/lib/hearth/ledger.db")?; // or postgres://...
//! let writer = hearth_ledger::LedgerWriter::spawn(Arc::clone(&store), 4096)?;
//! // per request, on the request path (never blocks):
//! // writer.submit(LedgerRecord::new(id, Utc::now(), reasons, measured, &prices)?);
//! // `hearth report --since 7d`:
//! let report = store.summary(None)?;
//! print!("{}", report.render_table());
//! # Ok(()) }
//! ```
//!
//! # What is never stored
//! No prompt text, no answer text, no tool arguments, no entity values: the
//! record type has no field that could hold them, and every string it does
//! hold is a validated identifier (see [`record`]). Reason codes name
//! entity *kinds* (`pii.keep_local:PERSON`) and their alphabet has no space.
//! Rejected values are not echoed in error messages.
//!
//! # Schema (version 1, identical on SQLite and PostgreSQL)
//! ```text
//! ledger_schema_version(version BIGINT PK)        -- one row per applied migration
//! ledger_request(
//!   request_id TEXT PK, ts_us BIGINT,             -- UTC µs since the epoch, indexed
//!   route TEXT ('local'|'cloud'), reasons TEXT,   -- space-separated reason codes
//!   model TEXT, tokens_in BIGINT, tokens_out BIGINT,
//!   ttft_ms BIGINT NULL, total_ms BIGINT,
//!   error_kind TEXT NULL,                         -- NULL = ok
//!   cost_pusd BIGINT NULL,                        -- pico-USD; NULL = model unpriced
//!   all_cloud_cost_pusd BIGINT NULL,
//!   n_attempts BIGINT)                            -- 0, or 2.. for a cascade
//! ledger_attempt(
//!   request_id TEXT FK -> ledger_request ON DELETE CASCADE, seq BIGINT,  -- PK (request_id, seq)
//!   route, model, tokens_in, tokens_out, ttft_ms, total_ms, error_kind, cost_pusd)
//! ```
//! A cascade is one `ledger_request` row (what the client saw, cost = sum of
//! attempts) plus one `ledger_attempt` row per try. Migrations are versioned,
//! transactional, and serialised between concurrent openers ([`schema`]). A
//! database from a newer Hearth is refused ([`LedgerError::SchemaTooNew`]).
//!
//! # Durability
//! - A record is stored when [`LedgerStore::record`] / `record_batch`
//!   returns `Ok`: the batch is one transaction, all or nothing.
//! - SQLite: WAL, `synchronous=NORMAL`. Committed records survive a crash of
//!   Hearth; an OS crash or power loss can lose the most recent commits (the
//!   file stays consistent). PostgreSQL: as durable as the server's own
//!   settings (`synchronous_commit`, default on: committed = on disk).
//! - Through [`LedgerWriter`] a record is *not yet* stored when `submit`
//!   returns: it sits in a bounded in-memory queue, written within one batch
//!   of the writer thread. A process kill loses the queue; a graceful
//!   shutdown (`shutdown`, or dropping the writer) writes it. A full queue
//!   drops records (counted and logged, never blocking); a persistently
//!   failing database loses the records submitted meanwhile (counted). See
//!   [`writer`].
//!
//! # Blocking
//! Store methods block (file I/O, network round trips). From async code, go
//! through [`LedgerWriter`] or `spawn_blocking`; the PostgreSQL client even
//! panics if called on a Tokio worker thread.
//!
//! # Deliberately absent
//! TLS to PostgreSQL; retention/deletion of old rows; an on-disk retry queue;
//! per-tenant accounting; currency other than USD.

use std::path::PathBuf;
use std::sync::Arc;

use chrono::{DateTime, Utc};

pub mod error;
pub mod pg;
pub mod prices;
pub mod record;
pub mod report;
mod rows;
pub mod schema;
pub mod sqlite;
pub mod writer;

pub use error::LedgerError;
pub use pg::PgStore;
pub use prices::{CloudPrice, PicoUsd, Prices, UsdPerMTok};
pub use record::{Attempt, ErrorKind, LedgerRecord, Measured, ModelName, ReasonCode, RequestId};
pub use report::{parse_since, Percentiles, Report, RouteStats};
pub use schema::SCHEMA_VERSION;
pub use sqlite::SqliteStore;
pub use writer::{LedgerWriter, WriterStats};

/// Where ledger records are kept. Implementations are safe to share between
/// threads; every method blocks (see the crate docs).
///
/// Time windows are half-open, `[since, until)`, on the record timestamp;
/// `None` means unbounded.
pub trait LedgerStore: Send + Sync {
    /// Stores a batch of records in one transaction: all or none. A record
    /// whose request id is already stored fails the batch with
    /// [`LedgerError::Duplicate`].
    fn record_batch(&self, records: &[LedgerRecord]) -> Result<(), LedgerError>;

    /// Stores one record.
    fn record(&self, record: &LedgerRecord) -> Result<(), LedgerError> {
        self.record_batch(std::slice::from_ref(record))
    }

    /// The records in `[since, until)`, ordered by timestamp then request id,
    /// with their attempts.
    fn query(&self, since: Option<DateTime<Utc>>, until: Option<DateTime<Utc>>) -> Result<Vec<LedgerRecord>, LedgerError>;

    /// The report over `[since, until)`, computed from rows streamed out of
    /// the database (never materialising the records).
    fn summary_between(&self, since: Option<DateTime<Utc>>, until: Option<DateTime<Utc>>) -> Result<Report, LedgerError>;

    /// The report over everything since `since` (`hearth report --since`).
    fn summary(&self, since: Option<DateTime<Utc>>) -> Result<Report, LedgerError> {
        self.summary_between(since, None)
    }
}

/// A parsed ledger location.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Location {
    /// A SQLite file.
    Sqlite(PathBuf),
    /// A PostgreSQL URL, passed to the driver unchanged.
    Postgres(String),
}

impl Location {
    /// `postgres://...` and `postgresql://...` are PostgreSQL; `sqlite://P`
    /// is the file `P` (`sqlite:///abs/path`, `sqlite://rel/path`); anything
    /// without a `scheme://` prefix is a file path; other schemes are an
    /// error rather than a file with a strange name.
    pub fn parse(s: &str) -> Result<Location, LedgerError> {
        let s = s.trim();
        if s.is_empty() {
            return Err(LedgerError::invalid("ledger location", "empty"));
        }
        if let Some((scheme, rest)) = s.split_once("://") {
            let is_scheme = !scheme.is_empty()
                && scheme.chars().all(|c| c.is_ascii_alphanumeric() || "+-.".contains(c))
                && scheme.starts_with(|c: char| c.is_ascii_alphabetic());
            if is_scheme {
                return match scheme.to_ascii_lowercase().as_str() {
                    "postgres" | "postgresql" => Ok(Location::Postgres(s.to_owned())),
                    "sqlite" if rest.is_empty() => Err(LedgerError::invalid("ledger location", "sqlite:// without a path")),
                    "sqlite" => Ok(Location::Sqlite(PathBuf::from(rest))),
                    _ => Err(LedgerError::UnsupportedScheme(scheme.to_owned())),
                };
            }
        }
        Ok(Location::Sqlite(PathBuf::from(s)))
    }

    /// Opens the store this location names (creating/migrating the schema).
    pub fn open(&self) -> Result<Arc<dyn LedgerStore>, LedgerError> {
        Ok(match self {
            Location::Sqlite(p) => Arc::new(SqliteStore::open(p)?),
            Location::Postgres(url) => Arc::new(PgStore::connect(url)?),
        })
    }
}

/// Opens a ledger by URL or path: PostgreSQL for `postgres://` /
/// `postgresql://`, SQLite for `sqlite://path` or a plain path.
pub fn open(url_or_path: &str) -> Result<Arc<dyn LedgerStore>, LedgerError> {
    Location::parse(url_or_path)?.open()
}

/// A window as inclusive/exclusive integer bounds on `ts_us`.
pub(crate) fn bounds(since: Option<DateTime<Utc>>, until: Option<DateTime<Utc>>) -> (i64, i64) {
    (since.map_or(i64::MIN, rows::ts_to_db), until.map_or(i64::MAX, rows::ts_to_db))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn locations() {
        let sq = |p: &str| Location::Sqlite(PathBuf::from(p));
        assert_eq!(Location::parse("postgres://u@h/db").unwrap(), Location::Postgres("postgres://u@h/db".into()));
        assert_eq!(Location::parse("postgresql://u@h:5/db?x=1").unwrap(), Location::Postgres("postgresql://u@h:5/db?x=1".into()));
        assert_eq!(Location::parse("PostgreSQL://h/db").unwrap(), Location::Postgres("PostgreSQL://h/db".into()));
        assert_eq!(Location::parse("sqlite:///var/lib/h.db").unwrap(), sq("/var/lib/h.db"));
        assert_eq!(Location::parse("sqlite://rel/h.db").unwrap(), sq("rel/h.db"));
        assert_eq!(Location::parse("/tmp/ledger.db").unwrap(), sq("/tmp/ledger.db"));
        assert_eq!(Location::parse("ledger.db").unwrap(), sq("ledger.db"));
        assert_eq!(Location::parse(r"C:\hearth\ledger.db").unwrap(), sq(r"C:\hearth\ledger.db"));
        assert!(matches!(Location::parse("mysql://h/db"), Err(LedgerError::UnsupportedScheme(s)) if s == "mysql"));
        assert!(Location::parse("sqlite://").is_err());
        assert!(Location::parse("  ").is_err());
    }

    #[test]
    fn unbounded_window_covers_every_timestamp() {
        assert_eq!(bounds(None, None), (i64::MIN, i64::MAX));
        let t = DateTime::from_timestamp(1_767_225_600, 0).unwrap();
        assert_eq!(bounds(Some(t), Some(t)), (1_767_225_600_000_000, 1_767_225_600_000_000));
    }
}
