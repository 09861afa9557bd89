//! The embedded SQLite store (the default).
//!
//! One file, WAL journal, `synchronous = NORMAL`, a 10 s busy timeout. Writes
//! go through one connection behind a mutex (in-process writers queue on it;
//! each batch is one `BEGIN IMMEDIATE` transaction, so writers in *other*
//! processes wait on SQLite's lock instead of failing halfway). Reads open
//! their own read-only connection per call so a long report never holds the
//! writers' mutex, and each read runs in one transaction, which in WAL mode
//! is one consistent snapshot.
//!
//! The file is stamped with `PRAGMA application_id = 0x48525448` ("HRTH")
//! when the schema is created; a file stamped by another application, or an
//! unstamped one that already has other tables, is refused rather than
//! having ledger tables added to it.

use std::path::{Path, PathBuf};
use std::sync::{Mutex, MutexGuard};
use std::time::Duration;

use chrono::{DateTime, Utc};
use rusqlite::{params, Connection, ErrorCode, OpenFlags, Row, TransactionBehavior};

use crate::error::LedgerError;
use crate::record::LedgerRecord;
use crate::report::{Report, ReportBuilder};
use crate::rows::{self, assemble, RawAttempt, RawRequest, ATTEMPT_COLUMNS, REQUEST_COLUMNS};
use crate::schema::{MIGRATIONS, SCHEMA_VERSION, VERSION_TABLE};
use crate::{bounds, LedgerStore};

/// "HRTH": marks a SQLite file as a Hearth ledger (`PRAGMA application_id`).
pub const APPLICATION_ID: i32 = 0x4852_5448;

/// How long a statement waits for another connection's lock before failing.
const BUSY_TIMEOUT: Duration = Duration::from_secs(10);

const INSERT_REQUEST: &str = "INSERT INTO ledger_request (request_id, ts_us, route, reasons, model, tokens_in, \
     tokens_out, ttft_ms, total_ms, error_kind, cost_pusd, all_cloud_cost_pusd, n_attempts) \
     VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13)";
const INSERT_ATTEMPT: &str = "INSERT INTO ledger_attempt (request_id, seq, route, model, tokens_in, tokens_out, \
     ttft_ms, total_ms, error_kind, cost_pusd) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10)";

/// A ledger in one SQLite file.
pub struct SqliteStore {
    path: PathBuf,
    writer: Mutex<Connection>,
}

impl std::fmt::Debug for SqliteStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SqliteStore").field("path", &self.path).finish()
    }
}

/// Turns "this is not a database" into the typed error; everything else
/// stays an SQLite error.
fn classify(path: &Path, e: rusqlite::Error) -> LedgerError {
    match e.sqlite_error_code() {
        Some(ErrorCode::NotADatabase) | Some(ErrorCode::DatabaseCorrupt) => {
            LedgerError::NotALedger { path: path.to_owned(), reason: e.to_string() }
        }
        _ => LedgerError::Sqlite(e),
    }
}

fn is_primary_key_violation(e: &rusqlite::Error) -> bool {
    matches!(e, rusqlite::Error::SqliteFailure(f, _)
        if f.code == ErrorCode::ConstraintViolation
            && f.extended_code == rusqlite::ffi::SQLITE_CONSTRAINT_PRIMARYKEY)
}

impl SqliteStore {
    /// Opens (creating if needed, with its parent directories) the ledger at
    /// `path` and migrates it to the current schema.
    pub fn open(path: impl AsRef<Path>) -> Result<SqliteStore, LedgerError> {
        let path = path.as_ref().to_path_buf();
        if let Some(parent) = path.parent().filter(|p| !p.as_os_str().is_empty()) {
            std::fs::create_dir_all(parent).map_err(|source| LedgerError::Io { path: parent.to_owned(), source })?;
        }
        // No SQLITE_OPEN_URI: a path is a path. NO_MUTEX: our own Mutex
        // serialises use of the connection.
        let flags = OpenFlags::SQLITE_OPEN_READ_WRITE | OpenFlags::SQLITE_OPEN_CREATE | OpenFlags::SQLITE_OPEN_NO_MUTEX;
        let mut conn = Connection::open_with_flags(&path, flags).map_err(|e| classify(&path, e))?;
        conn.busy_timeout(BUSY_TIMEOUT)?;
        let not_ledger = |reason: String| LedgerError::NotALedger { path: path.clone(), reason };

        // The first read of the header is where a non-SQLite file shows up.
        let app_id: i32 = conn.pragma_query_value(None, "application_id", |r| r.get(0)).map_err(|e| classify(&path, e))?;
        if app_id != 0 && app_id != APPLICATION_ID {
            return Err(not_ledger(format!("SQLite application_id is {app_id:#010x}, not Hearth's {APPLICATION_ID:#010x}")));
        }
        if app_id == 0 {
            let foreign: i64 = conn
                .query_row(
                    "SELECT COUNT(*) FROM sqlite_master WHERE type = 'table' \
                     AND name NOT LIKE 'ledger\\_%' ESCAPE '\\' AND name NOT LIKE 'sqlite\\_%' ESCAPE '\\'",
                    [],
                    |r| r.get(0),
                )
                .map_err(|e| classify(&path, e))?;
            if foreign > 0 {
                return Err(not_ledger(format!("an SQLite database of another application ({foreign} other tables)")));
            }
        }

        let mode: String = conn
            .pragma_update_and_check(None, "journal_mode", "WAL", |r| r.get(0))
            .map_err(|e| classify(&path, e))?;
        if !mode.eq_ignore_ascii_case("wal") {
            // Some file systems (network mounts) cannot share WAL memory; the
            // ledger still works, with readers and writers blocking each other.
            tracing::warn!(path = %path.display(), journal_mode = %mode, "ledger: SQLite WAL mode unavailable");
        }
        // NORMAL in WAL mode: a commit is atomic and survives an application
        // crash; an OS crash or power cut may lose the last commits (never
        // corrupts). See the crate docs on durability.
        conn.pragma_update(None, "synchronous", "NORMAL")?;
        conn.pragma_update(None, "foreign_keys", "ON")?;
        migrate(&mut conn).map_err(|e| match e {
            LedgerError::Sqlite(e) => classify(&path, e),
            other => other,
        })?;
        Ok(SqliteStore { path, writer: Mutex::new(conn) })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    fn writer(&self) -> MutexGuard<'_, Connection> {
        // A panic while holding the lock drops its transaction, which rolls
        // back; the connection itself is still sound.
        self.writer.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn reader(&self) -> Result<Connection, LedgerError> {
        let flags = OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_NO_MUTEX;
        let c = Connection::open_with_flags(&self.path, flags).map_err(|e| classify(&self.path, e))?;
        c.busy_timeout(BUSY_TIMEOUT)?;
        Ok(c)
    }

    /// The schema version recorded in the file.
    pub fn schema_version(&self) -> Result<i64, LedgerError> {
        let c = self.reader()?;
        Ok(c.query_row("SELECT COALESCE(MAX(version), 0) FROM ledger_schema_version", [], |r| r.get(0))?)
    }
}

fn migrate(conn: &mut Connection) -> Result<(), LedgerError> {
    let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
    tx.execute_batch(VERSION_TABLE)?;
    let current: i64 = tx.query_row("SELECT COALESCE(MAX(version), 0) FROM ledger_schema_version", [], |r| r.get(0))?;
    if current > SCHEMA_VERSION {
        return Err(LedgerError::SchemaTooNew { found: current, supported: SCHEMA_VERSION });
    }
    for (version, ddl) in MIGRATIONS.iter().filter(|(v, _)| *v > current) {
        tx.execute_batch(ddl)?;
        tx.execute("INSERT INTO ledger_schema_version (version) VALUES (?1)", [version])?;
        tracing::info!(version, "ledger: migrated SQLite schema");
    }
    tx.pragma_update(None, "application_id", APPLICATION_ID)?;
    tx.commit()?;
    Ok(())
}

fn raw_request(r: &Row<'_>) -> rusqlite::Result<RawRequest> {
    Ok(RawRequest {
        request_id: r.get(0)?,
        ts_us: r.get(1)?,
        route: r.get(2)?,
        reasons: r.get(3)?,
        model: r.get(4)?,
        tokens_in: r.get(5)?,
        tokens_out: r.get(6)?,
        ttft_ms: r.get(7)?,
        total_ms: r.get(8)?,
        error_kind: r.get(9)?,
        cost_pusd: r.get(10)?,
        all_cloud_cost_pusd: r.get(11)?,
        n_attempts: r.get(12)?,
    })
}

fn raw_attempt(r: &Row<'_>) -> rusqlite::Result<RawAttempt> {
    Ok(RawAttempt {
        request_id: r.get(0)?,
        seq: r.get(1)?,
        route: r.get(2)?,
        model: r.get(3)?,
        tokens_in: r.get(4)?,
        tokens_out: r.get(5)?,
        ttft_ms: r.get(6)?,
        total_ms: r.get(7)?,
        error_kind: r.get(8)?,
        cost_pusd: r.get(9)?,
    })
}

impl LedgerStore for SqliteStore {
    fn record_batch(&self, records: &[LedgerRecord]) -> Result<(), LedgerError> {
        // Validate everything before touching the database.
        let values = records.iter().map(rows::values).collect::<Result<Vec<_>, _>>()?;
        let mut conn = self.writer();
        let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
        {
            let mut ins_req = tx.prepare_cached(INSERT_REQUEST)?;
            let mut ins_att = tx.prepare_cached(INSERT_ATTEMPT)?;
            for (r, atts) in &values {
                ins_req
                    .execute(params![
                        r.request_id,
                        r.ts_us,
                        r.route,
                        r.reasons,
                        r.model,
                        r.tokens_in,
                        r.tokens_out,
                        r.ttft_ms,
                        r.total_ms,
                        r.error_kind,
                        r.cost_pusd,
                        r.all_cloud_cost_pusd,
                        r.n_attempts
                    ])
                    .map_err(|e| {
                        if is_primary_key_violation(&e) {
                            LedgerError::Duplicate(r.request_id.to_owned())
                        } else {
                            LedgerError::Sqlite(e)
                        }
                    })?;
                for a in atts {
                    ins_att.execute(params![
                        r.request_id,
                        a.seq,
                        a.route,
                        a.model,
                        a.tokens_in,
                        a.tokens_out,
                        a.ttft_ms,
                        a.total_ms,
                        a.error_kind,
                        a.cost_pusd
                    ])?;
                }
            }
        }
        tx.commit()?;
        Ok(())
    }

    fn query(&self, since: Option<DateTime<Utc>>, until: Option<DateTime<Utc>>) -> Result<Vec<LedgerRecord>, LedgerError> {
        let (lo, hi) = bounds(since, until);
        let mut conn = self.reader()?;
        // One read transaction: both SELECTs see the same snapshot, so a
        // request and its attempts are never seen half-written.
        let tx = conn.transaction()?;
        let requests = {
            let mut st = tx.prepare(&format!(
                "SELECT {REQUEST_COLUMNS} FROM ledger_request WHERE ts_us >= ?1 AND ts_us < ?2 ORDER BY ts_us, request_id"
            ))?;
            let v = st.query_map(params![lo, hi], raw_request)?.collect::<Result<Vec<_>, _>>()?;
            v
        };
        let attempts = {
            let mut st = tx.prepare(&format!(
                "SELECT {} FROM ledger_attempt a JOIN ledger_request r ON r.request_id = a.request_id \
                 WHERE r.ts_us >= ?1 AND r.ts_us < ?2 ORDER BY a.request_id, a.seq",
                ATTEMPT_COLUMNS.split(", ").map(|c| format!("a.{c}")).collect::<Vec<_>>().join(", ")
            ))?;
            let v = st.query_map(params![lo, hi], raw_attempt)?.collect::<Result<Vec<_>, _>>()?;
            v
        };
        tx.commit()?;
        assemble(requests, attempts)
    }

    fn summary_between(&self, since: Option<DateTime<Utc>>, until: Option<DateTime<Utc>>) -> Result<Report, LedgerError> {
        let (lo, hi) = bounds(since, until);
        let conn = self.reader()?;
        let mut st =
            conn.prepare(&format!("SELECT {REQUEST_COLUMNS} FROM ledger_request WHERE ts_us >= ?1 AND ts_us < ?2"))?;
        let mut rows = st.query(params![lo, hi])?;
        let mut b = ReportBuilder::new(since, until);
        // Streamed: one row in memory at a time (plus the percentile arrays).
        while let Some(row) = rows.next()? {
            b.add(&raw_request(row)?)?;
        }
        Ok(b.finish())
    }
}
