//! The schema, as versioned migrations shared by SQLite and PostgreSQL.
//!
//! The DDL is written in the common subset of both dialects (TEXT, BIGINT,
//! CHECK, REFERENCES ... ON DELETE CASCADE), so there is one schema, not two
//! that might drift. Every migration runs inside one transaction together
//! with the row that records its version, so a crash leaves the database at
//! the old version or the new one, never between. Concurrent openers are
//! serialised (SQLite: `BEGIN IMMEDIATE`; PostgreSQL: a transaction-scoped
//! advisory lock) and re-read the version after taking the lock, so two
//! replicas starting at once migrate once.

/// Created first, outside the numbered migrations: it records them.
pub(crate) const VERSION_TABLE: &str =
    "CREATE TABLE IF NOT EXISTS ledger_schema_version (version BIGINT NOT NULL PRIMARY KEY)";

/// Version 1.
///
/// `ts_us` is microseconds since the Unix epoch, UTC, in a BIGINT on both
/// backends (one schema; integer comparisons for the time window; no time
/// zone conversions). Costs are integer pico-dollars (see `prices`).
/// `reasons` is the space-separated list of reason codes (their alphabet has
/// no space). `n_attempts` duplicates the number of `ledger_attempt` rows so
/// that the summary never needs a join.
const V1: &str = "
CREATE TABLE ledger_request (
    request_id          TEXT   NOT NULL PRIMARY KEY,
    ts_us               BIGINT NOT NULL,
    route               TEXT   NOT NULL CHECK (route IN ('local', 'cloud')),
    reasons             TEXT   NOT NULL,
    model               TEXT   NOT NULL,
    tokens_in           BIGINT NOT NULL CHECK (tokens_in >= 0),
    tokens_out          BIGINT NOT NULL CHECK (tokens_out >= 0),
    ttft_ms             BIGINT          CHECK (ttft_ms >= 0),
    total_ms            BIGINT NOT NULL CHECK (total_ms >= 0),
    error_kind          TEXT,
    cost_pusd           BIGINT          CHECK (cost_pusd >= 0),
    all_cloud_cost_pusd BIGINT          CHECK (all_cloud_cost_pusd >= 0),
    n_attempts          BIGINT NOT NULL DEFAULT 0 CHECK (n_attempts >= 0)
);
CREATE INDEX ledger_request_ts ON ledger_request (ts_us);
CREATE TABLE ledger_attempt (
    request_id TEXT   NOT NULL REFERENCES ledger_request (request_id) ON DELETE CASCADE,
    seq        BIGINT NOT NULL CHECK (seq >= 0),
    route      TEXT   NOT NULL CHECK (route IN ('local', 'cloud')),
    model      TEXT   NOT NULL,
    tokens_in  BIGINT NOT NULL CHECK (tokens_in >= 0),
    tokens_out BIGINT NOT NULL CHECK (tokens_out >= 0),
    ttft_ms    BIGINT          CHECK (ttft_ms >= 0),
    total_ms   BIGINT NOT NULL CHECK (total_ms >= 0),
    error_kind TEXT,
    cost_pusd  BIGINT          CHECK (cost_pusd >= 0),
    PRIMARY KEY (request_id, seq)
);
";

/// `(version, DDL)`, ascending. Append only: a released migration is never
/// edited, a change is a new version.
pub(crate) const MIGRATIONS: &[(i64, &str)] = &[(1, V1)];

/// The newest schema version this build knows.
pub const SCHEMA_VERSION: i64 = 1;

#[cfg(test)]
mod tests {
    #[test]
    fn migrations_ascend_and_end_at_schema_version() {
        let versions: Vec<i64> = super::MIGRATIONS.iter().map(|m| m.0).collect();
        assert_eq!(versions, (1..=super::SCHEMA_VERSION).collect::<Vec<_>>());
    }
}
