//! The SQLite store, in temporary directories.

mod common;

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{mpsc, Arc, Mutex};

use chrono::{DateTime, Utc};
use hearth_ledger::*;

fn tmp() -> tempfile::TempDir {
    tempfile::tempdir().unwrap()
}

fn store(dir: &tempfile::TempDir) -> SqliteStore {
    SqliteStore::open(dir.path().join("ledger.db")).unwrap()
}

#[test]
fn roundtrip() {
    let d = tmp();
    common::check_roundtrip(&store(&d));
}

#[test]
fn summary_exact() {
    let d = tmp();
    common::check_summary_exact(&store(&d));
}

#[test]
fn window() {
    let d = tmp();
    common::check_window(&store(&d));
}

#[test]
fn duplicates() {
    let d = tmp();
    common::check_duplicates(&store(&d));
}

#[test]
fn eight_threads_times_500_records_lose_nothing() {
    let d = tmp();
    let s: Arc<dyn LedgerStore> = Arc::new(store(&d));
    common::check_concurrent_writers(&[Arc::clone(&s)], 8, 500, s.as_ref());
}

#[test]
fn two_connections_to_one_file_write_concurrently() {
    // Two stores on one file stand in for two processes: they share nothing
    // but SQLite's file locks (BEGIN IMMEDIATE + busy timeout).
    let d = tmp();
    let a: Arc<dyn LedgerStore> = Arc::new(store(&d));
    let b: Arc<dyn LedgerStore> = Arc::new(store(&d));
    common::check_concurrent_writers(&[a, b], 3, 200, &store(&d));
}

#[test]
fn background_writer() {
    let d = tmp();
    common::check_writer(Arc::new(store(&d)));
}

#[test]
fn open_by_location() {
    let d = tmp();
    let p = d.path().join("nested/dir/ledger.db");
    let s = open(&format!("sqlite://{}", p.display())).unwrap();
    s.record_batch(&common::fixture()).unwrap();
    assert!(p.exists(), "parent directories are created");
    // The same file through a plain path sees the same rows.
    assert_eq!(open(p.to_str().unwrap()).unwrap().summary(None).unwrap().requests, 5);
    assert!(matches!(open("mysql://localhost/x"), Err(LedgerError::UnsupportedScheme(_))));
}

#[test]
fn migration_from_an_empty_file_and_reopen() {
    let d = tmp();
    let p = d.path().join("empty.db");
    std::fs::write(&p, b"").unwrap();
    let s = SqliteStore::open(&p).unwrap();
    assert_eq!(s.schema_version().unwrap(), SCHEMA_VERSION);
    s.record_batch(&common::fixture()).unwrap();
    drop(s);
    // Reopening neither re-migrates nor loses rows.
    let s = SqliteStore::open(&p).unwrap();
    assert_eq!(s.schema_version().unwrap(), SCHEMA_VERSION);
    assert_eq!(s.query(None, None).unwrap(), common::fixture());
    let c = rusqlite::Connection::open(&p).unwrap();
    let versions: i64 = c.query_row("SELECT COUNT(*) FROM ledger_schema_version", [], |r| r.get(0)).unwrap();
    assert_eq!(versions, SCHEMA_VERSION);
    let journal: String = c.query_row("PRAGMA journal_mode", [], |r| r.get(0)).unwrap();
    assert_eq!(journal, "wal");
    let app: i32 = c.query_row("PRAGMA application_id", [], |r| r.get(0)).unwrap();
    assert_eq!(app, sqlite::APPLICATION_ID);
}

#[test]
fn concurrent_first_opens_migrate_once() {
    let d = tmp();
    let p = d.path().join("race.db");
    std::thread::scope(|s| {
        for _ in 0..4 {
            s.spawn(|| SqliteStore::open(&p).unwrap());
        }
    });
    let c = rusqlite::Connection::open(&p).unwrap();
    let versions: i64 = c.query_row("SELECT COUNT(*) FROM ledger_schema_version", [], |r| r.get(0)).unwrap();
    assert_eq!(versions, 1);
}

fn assert_not_a_ledger(r: Result<SqliteStore, LedgerError>) {
    match r {
        Err(LedgerError::NotALedger { .. }) => {}
        Err(e) => panic!("expected NotALedger, got {e:?}"),
        Ok(_) => panic!("expected NotALedger, got a store"),
    }
}

#[test]
fn non_sqlite_files_are_a_typed_error() {
    let d = tmp();
    let p = d.path().join("notes.txt");
    std::fs::write(&p, "these are somebody's notes, not a database\n".repeat(40)).unwrap();
    assert_not_a_ledger(SqliteStore::open(&p));
    let short = d.path().join("short");
    std::fs::write(&short, b"0123456789").unwrap();
    assert_not_a_ledger(SqliteStore::open(&short));
    // The file is left as it was.
    assert_eq!(std::fs::read(&short).unwrap(), b"0123456789");
}

#[test]
fn a_ledger_with_a_corrupt_header_is_a_typed_error() {
    let d = tmp();
    let p = d.path().join("ledger.db");
    let s = SqliteStore::open(&p).unwrap();
    s.record_batch(&common::fixture()).unwrap();
    drop(s);
    let mut bytes = std::fs::read(&p).unwrap();
    bytes[..16].copy_from_slice(b"garbage garbage!");
    std::fs::write(&p, &bytes).unwrap();
    assert_not_a_ledger(SqliteStore::open(&p));
}

#[test]
fn another_applications_database_is_refused() {
    let d = tmp();
    let p = d.path().join("app.db");
    let c = rusqlite::Connection::open(&p).unwrap();
    c.execute_batch("CREATE TABLE contacts (name TEXT)").unwrap();
    drop(c);
    assert_not_a_ledger(SqliteStore::open(&p));
    let c = rusqlite::Connection::open(&p).unwrap();
    let tables: i64 = c.query_row("SELECT COUNT(*) FROM sqlite_master WHERE name LIKE 'ledger%'", [], |r| r.get(0)).unwrap();
    assert_eq!(tables, 0, "nothing was added to the foreign database");

    let q = d.path().join("stamped.db");
    let c = rusqlite::Connection::open(&q).unwrap();
    c.pragma_update(None, "application_id", 0x1234_5678).unwrap();
    drop(c);
    assert_not_a_ledger(SqliteStore::open(&q));
}

#[test]
fn a_newer_schema_is_refused() {
    let d = tmp();
    let p = d.path().join("ledger.db");
    drop(SqliteStore::open(&p).unwrap());
    let c = rusqlite::Connection::open(&p).unwrap();
    c.execute("INSERT INTO ledger_schema_version (version) VALUES (99)", []).unwrap();
    drop(c);
    match SqliteStore::open(&p) {
        Err(LedgerError::SchemaTooNew { found: 99, supported }) => assert_eq!(supported, SCHEMA_VERSION),
        other => panic!("{other:?}"),
    }
}

#[test]
fn hand_edited_rows_are_reported_not_trusted() {
    let d = tmp();
    let p = d.path().join("ledger.db");
    let s = SqliteStore::open(&p).unwrap();
    s.record_batch(&common::fixture()).unwrap();
    let c = rusqlite::Connection::open(&p).unwrap();
    c.execute("UPDATE ledger_request SET reasons = 'Smith, John' WHERE request_id = 'req-2'", []).unwrap();
    assert!(matches!(s.query(None, None), Err(LedgerError::CorruptRow { request_id, .. }) if request_id == "req-2"));
    assert!(matches!(s.summary(None), Err(LedgerError::CorruptRow { .. })));
    c.execute("UPDATE ledger_request SET reasons = '' WHERE request_id = 'req-2'", []).unwrap();
    c.execute("DELETE FROM ledger_attempt WHERE request_id = 'req-4' AND seq = 1", []).unwrap();
    assert!(matches!(s.query(None, None), Err(LedgerError::CorruptRow { request_id, .. }) if request_id == "req-4"));
}

#[test]
fn nothing_but_identifiers_reaches_the_file() {
    // The record has no text field; check the bytes on disk as well: only
    // the fixture's identifiers and numbers, no stray strings.
    let d = tmp();
    let p = d.path().join("ledger.db");
    let s = SqliteStore::open(&p).unwrap();
    s.record_batch(&common::fixture()).unwrap();
    let c = rusqlite::Connection::open(&p).unwrap();
    let mut st = c
        .prepare(
            "SELECT group_concat(request_id || ' ' || route || ' ' || reasons || ' ' || model || ' ' || coalesce(error_kind, ''), ' ') \
             FROM ledger_request",
        )
        .unwrap();
    let text: String = st.query_row([], |r| r.get(0)).unwrap();
    let words: std::collections::BTreeSet<&str> = text.split_whitespace().collect();
    let allowed = [
        "req-1", "req-2", "req-3", "req-4", "req-5", "local", "cloud", "router.score<0.42", "router.score>=0.42",
        "pii.keep_local:PERSON", "cascade.escalated", "cloud.fallback:timeout", "qwen2.5-0.5b", "gpt-x", "mystery", "timeout",
    ];
    for w in &words {
        assert!(allowed.contains(w), "unexpected stored string {w:?}");
    }
}

/// A store that can be held shut, to fill the writer's queue on purpose.
struct GatedStore {
    entered: Mutex<Option<mpsc::Sender<()>>>,
    gate: Mutex<mpsc::Receiver<()>>,
    written: AtomicUsize,
}

impl LedgerStore for GatedStore {
    fn record_batch(&self, records: &[LedgerRecord]) -> Result<(), LedgerError> {
        if let Some(tx) = self.entered.lock().unwrap().take() {
            tx.send(()).unwrap();
            // Hold the writer thread here until the test opens the gate.
            self.gate.lock().unwrap().recv().unwrap();
        }
        self.written.fetch_add(records.len(), Ordering::SeqCst);
        Ok(())
    }
    fn query(&self, _: Option<DateTime<Utc>>, _: Option<DateTime<Utc>>) -> Result<Vec<LedgerRecord>, LedgerError> {
        Ok(Vec::new())
    }
    fn summary_between(&self, _: Option<DateTime<Utc>>, _: Option<DateTime<Utc>>) -> Result<Report, LedgerError> {
        unreachable!("not used")
    }
}

#[test]
fn a_full_queue_drops_and_counts_instead_of_blocking() {
    let (entered_tx, entered_rx) = mpsc::channel();
    let (gate_tx, gate_rx) = mpsc::channel();
    let store = Arc::new(GatedStore { entered: Mutex::new(Some(entered_tx)), gate: Mutex::new(gate_rx), written: AtomicUsize::new(0) });
    let w = LedgerWriter::spawn(Arc::clone(&store) as Arc<dyn LedgerStore>, 2).unwrap();
    assert!(w.submit(common::numbered(0, 0, 0)));
    entered_rx.recv().unwrap(); // the writer thread holds record 0 and is stuck in the store
    let accepted: Vec<bool> = (1..10).map(|i| w.submit(common::numbered(0, 0, i))).collect();
    assert_eq!(accepted, [true, true, false, false, false, false, false, false, false], "capacity 2, then drops");
    assert_eq!(w.stats().dropped, 7);
    gate_tx.send(()).unwrap();
    let stats = w.shutdown();
    assert_eq!(stats, WriterStats { submitted: 3, written: 3, dropped: 7, failed: 0 });
    assert_eq!(store.written.load(Ordering::SeqCst), 3);
}

#[test]
fn a_bad_record_in_a_batch_does_not_sink_the_others() {
    let d = tmp();
    let s: Arc<dyn LedgerStore> = Arc::new(store(&d));
    let recs = common::fixture();
    s.record(&recs[2]).unwrap();
    let w = LedgerWriter::spawn(Arc::clone(&s), 100).unwrap();
    for r in &recs {
        assert!(w.submit(r.clone()));
    }
    let stats = w.shutdown();
    assert_eq!(stats, WriterStats { submitted: 5, written: 4, dropped: 0, failed: 1 });
    assert_eq!(s.query(None, None).unwrap(), recs);
}

#[test]
fn a_panicking_store_does_not_stop_the_writer() {
    struct Panicky(AtomicUsize);
    impl LedgerStore for Panicky {
        fn record_batch(&self, records: &[LedgerRecord]) -> Result<(), LedgerError> {
            if records.iter().any(|r| r.request_id.as_str().ends_with("-0")) {
                panic!("simulated store bug");
            }
            self.0.fetch_add(records.len(), Ordering::SeqCst);
            Ok(())
        }
        fn query(&self, _: Option<DateTime<Utc>>, _: Option<DateTime<Utc>>) -> Result<Vec<LedgerRecord>, LedgerError> {
            Ok(Vec::new())
        }
        fn summary_between(&self, _: Option<DateTime<Utc>>, _: Option<DateTime<Utc>>) -> Result<Report, LedgerError> {
            unreachable!()
        }
    }
    let store = Arc::new(Panicky(AtomicUsize::new(0)));
    let w = LedgerWriter::spawn(Arc::clone(&store) as Arc<dyn LedgerStore>, 16).unwrap();
    for i in 0..3 {
        assert!(w.submit(common::numbered(0, 0, i)));
    }
    w.flush().unwrap();
    // Whether the three arrive as one batch or several, the panicking record
    // fails alone and the writer stays up for the next one.
    assert!(w.submit(common::numbered(0, 0, 3)));
    let stats = w.shutdown();
    assert_eq!(stats, WriterStats { submitted: 4, written: 3, dropped: 0, failed: 1 });
    assert_eq!(store.0.load(Ordering::SeqCst), 3);
}
