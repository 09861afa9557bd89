//! The PostgreSQL store against a real server.
//!
//! Set `HEARTH_TEST_PG_URL` (e.g. `eval "$(scripts/ci/start-postgres.sh)"`).
//! Unset, these tests fail when `CI` is set and otherwise print a notice and
//! pass without running. Each test works in its own fresh PostgreSQL schema
//! (selected through the URL's `options=-csearch_path=...`), dropped at the
//! end, so tests run in parallel and leave the database as they found it.

mod common;

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use hearth_ledger::*;

/// A throwaway schema on the test server.
struct Scratch {
    admin_url: String,
    schema: String,
    url: String,
}

impl Scratch {
    fn new(test: &str) -> Option<Scratch> {
        let admin_url = match std::env::var("HEARTH_TEST_PG_URL") {
            Ok(u) if !u.trim().is_empty() => u,
            _ => {
                if std::env::var_os("CI").is_some() {
                    panic!("HEARTH_TEST_PG_URL is not set but CI is: start the server with scripts/ci/start-postgres.sh");
                }
                eprintln!("SKIPPED {test}: HEARTH_TEST_PG_URL is not set (eval \"$(scripts/ci/start-postgres.sh)\")");
                return None;
            }
        };
        static N: AtomicUsize = AtomicUsize::new(0);
        let schema = format!("hearth_t_{}_{}_{}", test, std::process::id(), N.fetch_add(1, Ordering::SeqCst));
        let mut c = postgres::Client::connect(&admin_url, postgres::NoTls).expect("connect to HEARTH_TEST_PG_URL");
        c.batch_execute(&format!("DROP SCHEMA IF EXISTS {schema} CASCADE; CREATE SCHEMA {schema}")).unwrap();
        let sep = if admin_url.contains('?') { '&' } else { '?' };
        // application_name too, so a test can find its own connections.
        let url = format!("{admin_url}{sep}options=-csearch_path%3D{schema}&application_name={schema}");
        Some(Scratch { admin_url, schema, url })
    }

    fn store(&self) -> PgStore {
        PgStore::connect(&self.url).unwrap()
    }

    fn admin(&self) -> postgres::Client {
        let mut c = postgres::Client::connect(&self.admin_url, postgres::NoTls).unwrap();
        c.batch_execute(&format!("SET search_path = {}", self.schema)).unwrap();
        c
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        if let Ok(mut c) = postgres::Client::connect(&self.admin_url, postgres::NoTls) {
            let _ = c.batch_execute(&format!("DROP SCHEMA IF EXISTS {} CASCADE", self.schema));
        }
    }
}

macro_rules! scratch {
    ($name:literal) => {
        match Scratch::new($name) {
            Some(s) => s,
            None => return,
        }
    };
}

#[test]
fn pg_roundtrip() {
    let s = scratch!("roundtrip");
    common::check_roundtrip(&s.store());
}

#[test]
fn pg_summary_exact() {
    let s = scratch!("summary");
    common::check_summary_exact(&s.store());
}

#[test]
fn pg_window() {
    let s = scratch!("window");
    common::check_window(&s.store());
}

#[test]
fn pg_duplicates() {
    let s = scratch!("dup");
    common::check_duplicates(&s.store());
}

#[test]
fn pg_two_replicas_write_concurrently_and_one_summary_sees_both() {
    let s = scratch!("replicas");
    // Two independent stores (two connections), as two gateway replicas
    // would have, each written by 4 threads; a third instance reads.
    let a: Arc<dyn LedgerStore> = Arc::new(s.store());
    let b: Arc<dyn LedgerStore> = Arc::new(s.store());
    let reader = s.store();
    common::check_concurrent_writers(&[a, b], 4, 250, &reader);
    let r = reader.summary(None).unwrap();
    let from_a = reader.query(None, None).unwrap().iter().filter(|r| r.request_id.as_str().starts_with("w0-")).count();
    assert_eq!((r.requests, from_a), (2000, 1000), "both replicas' rows are in the one summary");
}

#[test]
fn pg_background_writer() {
    let s = scratch!("writer");
    common::check_writer(Arc::new(s.store()));
}

#[test]
fn pg_open_by_url_and_schema_is_the_same() {
    let s = scratch!("open");
    let store = open(&s.url).unwrap();
    store.record_batch(&common::fixture()).unwrap();
    assert_eq!(store.query(None, None).unwrap(), common::fixture());
    let mut c = s.admin();
    let version: i64 = c.query_one("SELECT MAX(version) FROM ledger_schema_version", &[]).unwrap().get(0);
    assert_eq!(version, SCHEMA_VERSION);
    let cols: Vec<String> = c
        .query(
            "SELECT column_name::TEXT FROM information_schema.columns WHERE table_schema = $1 AND table_name = 'ledger_request' ORDER BY ordinal_position",
            &[&s.schema],
        )
        .unwrap()
        .iter()
        .map(|r| r.get(0))
        .collect();
    assert_eq!(
        cols,
        [
            "request_id", "ts_us", "route", "reasons", "model", "tokens_in", "tokens_out", "ttft_ms", "total_ms",
            "error_kind", "cost_pusd", "all_cloud_cost_pusd", "n_attempts"
        ]
    );
}

#[test]
fn pg_concurrent_first_connections_migrate_once() {
    let s = scratch!("migrate");
    std::thread::scope(|sc| {
        for _ in 0..4 {
            sc.spawn(|| s.store());
        }
    });
    let n: i64 = s.admin().query_one("SELECT COUNT(*) FROM ledger_schema_version", &[]).unwrap().get(0);
    assert_eq!(n, 1);
    // And reconnecting later does nothing either.
    assert_eq!(s.store().schema_version().unwrap(), SCHEMA_VERSION);
}

#[test]
fn pg_a_newer_schema_is_refused() {
    let s = scratch!("newer");
    drop(s.store());
    s.admin().execute("INSERT INTO ledger_schema_version (version) VALUES (99)", &[]).unwrap();
    match PgStore::connect(&s.url) {
        Err(LedgerError::SchemaTooNew { found: 99, supported }) => assert_eq!(supported, SCHEMA_VERSION),
        other => panic!("{other:?}"),
    }
}

#[test]
fn pg_reconnects_after_the_server_drops_the_connection() {
    let s = scratch!("reconnect");
    let store = s.store();
    store.record(&common::fixture()[0]).unwrap();
    // Kill this store's backend from another session.
    let mut admin = s.admin();
    let killed: i64 = admin
        .query_one(
            "SELECT COUNT(*) FROM (SELECT pg_terminate_backend(pid) FROM pg_stat_activity \
             WHERE application_name = $1 AND pid <> pg_backend_pid()) t",
            &[&s.schema],
        )
        .unwrap()
        .get(0);
    assert!(killed >= 1);
    // The first call after the kill may fail (the client learns of it);
    // a later one reconnects.
    let first = store.record(&common::fixture()[1]);
    if first.is_err() {
        store.record(&common::fixture()[1]).unwrap();
    }
    assert_eq!(store.query(None, None).unwrap().len(), 2);
}
