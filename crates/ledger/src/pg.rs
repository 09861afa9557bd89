//! The PostgreSQL store, for several gateway replicas sharing one ledger.
//!
//! Same schema as SQLite (see `schema`). Each store holds one connection
//! behind a mutex; replicas are separate stores (separate connections) and
//! write concurrently, PostgreSQL's row locks and the request-id primary key
//! keep them from stepping on each other. Each batch is one transaction. If
//! the server drops the connection, the next call reconnects once.
//!
//! The client is `postgres`' blocking API: it runs its own small runtime, so
//! calling it from inside a Tokio task panics. The gateway writes through
//! [`crate::LedgerWriter`] (its own thread); a CLI calls it directly.
//!
//! Deliberately absent: TLS. Connections are plaintext (`NoTls`); a URL
//! asking for `sslmode=require` fails to connect instead of silently
//! downgrading. Use a loopback/Unix-socket server or a trusted network.

use std::sync::{Mutex, MutexGuard};
use std::time::Duration;

use chrono::{DateTime, Utc};
use fallible_iterator::FallibleIterator;
use postgres::error::SqlState;
use postgres::types::ToSql;
use postgres::{Client, Config, IsolationLevel, NoTls, Row};

use crate::error::LedgerError;
use crate::record::LedgerRecord;
use crate::report::{Report, ReportBuilder};
use crate::rows::{self, assemble, RawAttempt, RawRequest, ATTEMPT_COLUMNS, REQUEST_COLUMNS};
use crate::schema::{MIGRATIONS, SCHEMA_VERSION, VERSION_TABLE};
use crate::{bounds, LedgerStore};

/// Key of the advisory lock that serialises migrations across replicas
/// ("HEARTH_L" as bytes).
const MIGRATION_LOCK: i64 = 0x4845_4152_5448_5f4c;

/// Used when the URL names no `connect_timeout`: an unreachable host must
/// not hang startup forever.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

const INSERT_REQUEST: &str = "INSERT INTO ledger_request (request_id, ts_us, route, reasons, model, tokens_in, \
     tokens_out, ttft_ms, total_ms, error_kind, cost_pusd, all_cloud_cost_pusd, n_attempts) \
     VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13)";
const INSERT_ATTEMPT: &str = "INSERT INTO ledger_attempt (request_id, seq, route, model, tokens_in, tokens_out, \
     ttft_ms, total_ms, error_kind, cost_pusd) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)";

/// A ledger in a PostgreSQL database.
pub struct PgStore {
    config: Config,
    client: Mutex<Client>,
}

impl std::fmt::Debug for PgStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Config's Debug redacts the password.
        f.debug_struct("PgStore").field("config", &self.config).finish()
    }
}

impl PgStore {
    /// Connects to `url` (`postgres://user@host:port/db?...`, libpq style)
    /// and migrates the schema.
    pub fn connect(url: &str) -> Result<PgStore, LedgerError> {
        let mut config: Config = url.parse()?;
        if config.get_connect_timeout().is_none() {
            config.connect_timeout(CONNECT_TIMEOUT);
        }
        if config.get_application_name().is_none() {
            config.application_name("hearth-ledger");
        }
        let mut client = config.connect(NoTls)?;
        migrate(&mut client)?;
        Ok(PgStore { config, client: Mutex::new(client) })
    }

    fn client(&self) -> Result<MutexGuard<'_, Client>, LedgerError> {
        let mut guard = self.client.lock().unwrap_or_else(|p| p.into_inner());
        if guard.is_closed() {
            tracing::warn!("ledger: PostgreSQL connection closed; reconnecting");
            *guard = self.config.connect(NoTls)?;
        }
        Ok(guard)
    }

    /// The schema version recorded in the database.
    pub fn schema_version(&self) -> Result<i64, LedgerError> {
        let mut c = self.client()?;
        Ok(c.query_one("SELECT COALESCE(MAX(version), 0)::BIGINT FROM ledger_schema_version", &[])?.try_get(0)?)
    }
}

fn migrate(client: &mut Client) -> Result<(), LedgerError> {
    let mut tx = client.transaction()?;
    // Held until commit: a second replica starting now waits here, then
    // sees the new version and does nothing.
    tx.execute("SELECT pg_advisory_xact_lock($1)", &[&MIGRATION_LOCK])?;
    tx.batch_execute(VERSION_TABLE)?;
    let current: i64 = tx.query_one("SELECT COALESCE(MAX(version), 0)::BIGINT FROM ledger_schema_version", &[])?.try_get(0)?;
    if current > SCHEMA_VERSION {
        return Err(LedgerError::SchemaTooNew { found: current, supported: SCHEMA_VERSION });
    }
    for (version, ddl) in MIGRATIONS.iter().filter(|(v, _)| *v > current) {
        tx.batch_execute(ddl)?;
        tx.execute("INSERT INTO ledger_schema_version (version) VALUES ($1)", &[version])?;
        tracing::info!(version, "ledger: migrated PostgreSQL schema");
    }
    tx.commit()?;
    Ok(())
}

fn raw_request(r: &Row) -> Result<RawRequest, postgres::Error> {
    Ok(RawRequest {
        request_id: r.try_get(0)?,
        ts_us: r.try_get(1)?,
        route: r.try_get(2)?,
        reasons: r.try_get(3)?,
        model: r.try_get(4)?,
        tokens_in: r.try_get(5)?,
        tokens_out: r.try_get(6)?,
        ttft_ms: r.try_get(7)?,
        total_ms: r.try_get(8)?,
        error_kind: r.try_get(9)?,
        cost_pusd: r.try_get(10)?,
        all_cloud_cost_pusd: r.try_get(11)?,
        n_attempts: r.try_get(12)?,
    })
}

fn raw_attempt(r: &Row) -> Result<RawAttempt, postgres::Error> {
    Ok(RawAttempt {
        request_id: r.try_get(0)?,
        seq: r.try_get(1)?,
        route: r.try_get(2)?,
        model: r.try_get(3)?,
        tokens_in: r.try_get(4)?,
        tokens_out: r.try_get(5)?,
        ttft_ms: r.try_get(6)?,
        total_ms: r.try_get(7)?,
        error_kind: r.try_get(8)?,
        cost_pusd: r.try_get(9)?,
    })
}

impl LedgerStore for PgStore {
    fn record_batch(&self, records: &[LedgerRecord]) -> Result<(), LedgerError> {
        let values = records.iter().map(rows::values).collect::<Result<Vec<_>, _>>()?;
        let mut client = self.client()?;
        let mut tx = client.transaction()?;
        let ins_req = tx.prepare(INSERT_REQUEST)?;
        let ins_att = tx.prepare(INSERT_ATTEMPT)?;
        for (r, atts) in &values {
            tx.execute(
                &ins_req,
                &[
                    &r.request_id,
                    &r.ts_us,
                    &r.route,
                    &r.reasons,
                    &r.model,
                    &r.tokens_in,
                    &r.tokens_out,
                    &r.ttft_ms,
                    &r.total_ms,
                    &r.error_kind,
                    &r.cost_pusd,
                    &r.all_cloud_cost_pusd,
                    &r.n_attempts,
                ],
            )
            .map_err(|e| {
                if e.code() == Some(&SqlState::UNIQUE_VIOLATION) {
                    LedgerError::Duplicate(r.request_id.to_owned())
                } else {
                    LedgerError::Postgres(e)
                }
            })?;
            for a in atts {
                tx.execute(
                    &ins_att,
                    &[
                        &r.request_id,
                        &a.seq,
                        &a.route,
                        &a.model,
                        &a.tokens_in,
                        &a.tokens_out,
                        &a.ttft_ms,
                        &a.total_ms,
                        &a.error_kind,
                        &a.cost_pusd,
                    ],
                )?;
            }
        }
        tx.commit()?;
        Ok(())
    }

    fn query(&self, since: Option<DateTime<Utc>>, until: Option<DateTime<Utc>>) -> Result<Vec<LedgerRecord>, LedgerError> {
        let (lo, hi) = bounds(since, until);
        let mut client = self.client()?;
        // REPEATABLE READ: both SELECTs read one snapshot, so a request and
        // its attempts written by another replica meanwhile stay consistent.
        let mut tx = client.build_transaction().isolation_level(IsolationLevel::RepeatableRead).read_only(true).start()?;
        let requests = tx
            .query(
                &format!(
                    "SELECT {REQUEST_COLUMNS} FROM ledger_request WHERE ts_us >= $1 AND ts_us < $2 \
                     ORDER BY ts_us, request_id COLLATE \"C\""
                ),
                &[&lo, &hi],
            )?
            .iter()
            .map(raw_request)
            .collect::<Result<Vec<_>, _>>()?;
        let cols = ATTEMPT_COLUMNS.split(", ").map(|c| format!("a.{c}")).collect::<Vec<_>>().join(", ");
        let attempts = tx
            .query(
                &format!(
                    "SELECT {cols} FROM ledger_attempt a JOIN ledger_request r ON r.request_id = a.request_id \
                     WHERE r.ts_us >= $1 AND r.ts_us < $2 ORDER BY a.request_id, a.seq"
                ),
                &[&lo, &hi],
            )?
            .iter()
            .map(raw_attempt)
            .collect::<Result<Vec<_>, _>>()?;
        tx.commit()?;
        assemble(requests, attempts)
    }

    fn summary_between(&self, since: Option<DateTime<Utc>>, until: Option<DateTime<Utc>>) -> Result<Report, LedgerError> {
        let (lo, hi) = bounds(since, until);
        let mut client = self.client()?;
        let params: [&(dyn ToSql + Sync); 2] = [&lo, &hi];
        let mut it = client.query_raw(
            &format!("SELECT {REQUEST_COLUMNS} FROM ledger_request WHERE ts_us >= $1 AND ts_us < $2"),
            params,
        )?;
        let mut b = ReportBuilder::new(since, until);
        // Streamed row by row, like the SQLite store.
        while let Some(row) = it.next()? {
            b.add(&raw_request(&row)?)?;
        }
        Ok(b.finish())
    }
}
