//! Checks shared by the SQLite and PostgreSQL tests: both backends must give
//! the same answers to the same records.
#![allow(dead_code)]

use std::collections::BTreeSet;
use std::sync::Arc;

use chrono::{DateTime, Duration, Utc};
use hearth_api::{Route, Usage};
use hearth_ledger::*;

pub fn prices() -> Prices {
    let mut p = Prices { local_per_mtok: UsdPerMTok::parse("0.02").unwrap(), ..Prices::default() };
    p.cloud.insert(
        "gpt-x".into(),
        CloudPrice { input_per_mtok: UsdPerMTok::parse("2.5").unwrap(), output_per_mtok: UsdPerMTok::parse("10").unwrap() },
    );
    p
}

pub fn base() -> DateTime<Utc> {
    DateTime::parse_from_rfc3339("2026-01-01T00:00:00Z").unwrap().with_timezone(&Utc)
}

pub fn at(secs: i64) -> DateTime<Utc> {
    base() + Duration::seconds(secs)
}

pub fn measured(route: Route, model: &str, i: u32, o: u32, ttft: Option<u32>, total: u32, err: Option<&str>) -> Measured {
    Measured {
        route,
        model: ModelName::new(model).unwrap(),
        usage: Usage { prompt_tokens: i, completion_tokens: o },
        ttft_ms: ttft,
        total_ms: total,
        error: err.map(|e| ErrorKind::new(e).unwrap()),
    }
}

fn reasons(r: &[&str]) -> Vec<ReasonCode> {
    r.iter().map(|c| ReasonCode::new(*c).unwrap()).collect()
}

/// Five requests, one second apart from `base()`, covering: a local answer,
/// a cloud answer, a local failure, a cascade, and an unpriced cloud model.
pub fn fixture() -> Vec<LedgerRecord> {
    let p = prices();
    let id = |s: &str| RequestId::new(s).unwrap();
    vec![
        LedgerRecord::new(
            id("req-1"),
            at(0),
            reasons(&["router.score<0.42"]),
            measured(Route::Local, "qwen2.5-0.5b", 1000, 200, Some(50), 400, None),
            &p,
        )
        .unwrap(),
        LedgerRecord::new(
            id("req-2"),
            at(1),
            reasons(&["router.score>=0.42"]),
            measured(Route::Cloud, "gpt-x", 500, 100, Some(300), 1200, None),
            &p,
        )
        .unwrap(),
        LedgerRecord::new(
            id("req-3"),
            at(2),
            reasons(&["pii.keep_local:PERSON"]),
            measured(Route::Local, "qwen2.5-0.5b", 300, 0, None, 30_000, Some("timeout")),
            &p,
        )
        .unwrap(),
        LedgerRecord::with_attempts(
            id("req-4"),
            at(3),
            reasons(&["router.score<0.42", "cascade.escalated"]),
            measured(Route::Cloud, "gpt-x", 800, 400, Some(890), 2600, None),
            vec![
                measured(Route::Local, "qwen2.5-0.5b", 800, 50, Some(40), 600, None),
                measured(Route::Cloud, "gpt-x", 800, 400, Some(250), 2000, None),
            ],
            &p,
        )
        .unwrap(),
        LedgerRecord::new(
            id("req-5"),
            at(4),
            reasons(&["cloud.fallback:timeout"]),
            measured(Route::Cloud, "mystery", 100, 10, Some(100), 900, None),
            &p,
        )
        .unwrap(),
    ]
}

/// Every field survives the round trip, including attempts and NULLs.
pub fn check_roundtrip(store: &dyn LedgerStore) {
    let recs = fixture();
    store.record_batch(&recs[..2]).unwrap();
    for r in &recs[2..] {
        store.record(r).unwrap();
    }
    let back = store.query(None, None).unwrap();
    assert_eq!(back, recs);
    assert_eq!(back[3].attempts.len(), 2);
    assert_eq!(back[3].attempts[0].cost, Some(PicoUsd(17_000_000)));
    assert_eq!(back[2].ttft_ms, None);
    assert_eq!(back[4].cost, None);
}

/// The fixture's report, every number worked out by hand (see the comments).
pub fn check_summary_exact(store: &dyn LedgerStore) {
    store.record_batch(&fixture()).unwrap();
    let r = store.summary(None).unwrap();
    assert_eq!(r.requests, 5);
    assert_eq!(r.local_share, Some(0.4));
    assert_eq!((r.first, r.last), (Some(at(0)), Some(at(4))));

    // local: req-1 (ok) and req-3 (timeout).
    assert_eq!((r.local.requests, r.local.ok, r.local.errors), (2, 1, 1));
    assert_eq!((r.local.tokens_in, r.local.tokens_out), (1300, 200));
    assert_eq!(r.local.latency_ms, Some(Percentiles { samples: 1, p50: 400, p95: 400 }));
    assert_eq!(r.local.ttft_ms, Some(Percentiles { samples: 1, p50: 50, p95: 50 }));
    // 1200 tok * 20_000 + 300 tok * 20_000 pico
    assert_eq!(r.local.cost, PicoUsd(30_000_000));

    // cloud: req-2, req-4 (cascade, answered by the cloud), req-5 (unpriced).
    assert_eq!((r.cloud.requests, r.cloud.ok, r.cloud.errors), (3, 3, 0));
    assert_eq!((r.cloud.tokens_in, r.cloud.tokens_out), (1400, 510));
    // total_ms sorted [900, 1200, 2600]: rank ceil(1.5) = 2, rank ceil(2.85) = 3
    assert_eq!(r.cloud.latency_ms, Some(Percentiles { samples: 3, p50: 1200, p95: 2600 }));
    // ttft sorted [100, 300, 890]
    assert_eq!(r.cloud.ttft_ms, Some(Percentiles { samples: 3, p50: 300, p95: 890 }));
    // req-2: 500*2.5e6 + 100*1e7 = 2.25e9; req-4: 850*2e4 + 800*2.5e6 + 400*1e7 = 6.017e9
    assert_eq!(r.cloud.cost, PicoUsd(8_267_000_000));

    assert_eq!((r.priced_requests, r.unpriced_requests), (4, 1));
    assert_eq!(r.cost, PicoUsd(8_297_000_000));
    // 4.5e9 + 2.25e9 + 7.5e8 + 6e9
    assert_eq!(r.all_cloud_cost, PicoUsd(13_500_000_000));
    assert_eq!(r.savings, PicoUsd(5_203_000_000));
    assert_eq!(r.cost.to_string(), "$0.008297");
    assert_eq!(r.savings.to_string(), "$0.005203");
    assert_eq!(r.savings_pct, Some(5_203.0 / 13_500.0 * 100.0));
    assert_eq!(r.errors.into_iter().collect::<Vec<_>>(), vec![("timeout".to_string(), 1)]);
    assert_eq!(r.cascades, 1);
    assert_eq!(r.reasons.get("router.score<0.42"), Some(&2));
    assert_eq!(r.reasons.get("cascade.escalated"), Some(&1));
    assert_eq!(r.reasons.len(), 5);

    let table = store.summary(None).unwrap().render_table();
    for needle in ["local share 40.0%", "$0.005203", "(38.5%)", "timeout 1", "1 of 5 requests have no price", "cascades (more than one attempt): 1"] {
        assert!(table.contains(needle), "{needle:?} missing from\n{table}");
    }
    let json = store.summary(None).unwrap().to_json();
    assert_eq!(json["requests"], 5);
    assert_eq!(json["cloud"]["latency_ms"]["p95"], 2600);
    assert_eq!(json["errors"]["timeout"], 1);
    assert!((json["savings_usd"].as_f64().unwrap() - 0.005203).abs() < 1e-15);
    assert!(json.get("since").is_some());

    // A later window sees only req-4 and req-5.
    let r = store.summary(Some(at(3))).unwrap();
    assert_eq!(r.requests, 2);
    assert_eq!(r.cost, PicoUsd(6_017_000_000));
    assert_eq!(r.unpriced_requests, 1);
}

/// `[since, until)` on the timestamp, ordered.
pub fn check_window(store: &dyn LedgerStore) {
    store.record_batch(&fixture()).unwrap();
    let ids = |v: Vec<LedgerRecord>| v.into_iter().map(|r| r.request_id.to_string()).collect::<Vec<_>>();
    assert_eq!(ids(store.query(Some(at(1)), Some(at(4))).unwrap()), ["req-2", "req-3", "req-4"]);
    assert_eq!(ids(store.query(Some(at(4)), None).unwrap()), ["req-5"]);
    assert_eq!(ids(store.query(None, Some(at(1))).unwrap()), ["req-1"]);
    assert!(store.query(Some(at(5)), None).unwrap().is_empty());
    // One microsecond matters: the stored precision.
    assert!(store.query(Some(at(4) + Duration::microseconds(1)), None).unwrap().is_empty());
    assert_eq!(store.summary_between(Some(at(1)), Some(at(3))).unwrap().requests, 2);
}

/// A second record with the same request id is refused, and a batch that
/// contains one writes nothing.
pub fn check_duplicates(store: &dyn LedgerStore) {
    let recs = fixture();
    store.record(&recs[0]).unwrap();
    assert!(matches!(store.record(&recs[0]), Err(LedgerError::Duplicate(id)) if id == "req-1"));
    let batch = vec![recs[1].clone(), recs[0].clone()];
    assert!(matches!(store.record_batch(&batch), Err(LedgerError::Duplicate(_))));
    assert_eq!(store.query(None, None).unwrap().len(), 1, "the failed batch left nothing behind");
    // An invalid hand-built record is refused before the database sees it.
    let mut bad = recs[3].clone();
    bad.attempts.truncate(1);
    assert!(matches!(store.record(&bad), Err(LedgerError::AttemptMismatch(_))));
}

/// A record with a distinct id whose token counts encode who wrote it.
pub fn numbered(writer: usize, thread: usize, i: usize) -> LedgerRecord {
    let route = if i % 3 == 0 { Route::Cloud } else { Route::Local };
    let model = if route == Route::Cloud { "gpt-x" } else { "qwen" };
    let m = measured(route, model, (thread + 1) as u32, (i % 7) as u32, Some(5), 10 + (i % 50) as u32, None);
    LedgerRecord::new(
        RequestId::new(format!("w{writer}-t{thread}-{i}")).unwrap(),
        at((i % 600) as i64),
        vec![],
        m,
        &prices(),
    )
    .unwrap()
}

/// `threads` threads per store, each writing `per_thread` records one at a
/// time; then every record is there exactly once and the totals add up.
pub fn check_concurrent_writers(stores: &[Arc<dyn LedgerStore>], threads: usize, per_thread: usize, reader: &dyn LedgerStore) {
    std::thread::scope(|s| {
        for (w, store) in stores.iter().enumerate() {
            for t in 0..threads {
                let store = Arc::clone(store);
                s.spawn(move || {
                    for i in 0..per_thread {
                        store.record(&numbered(w, t, i)).unwrap();
                    }
                });
            }
        }
    });
    let n = stores.len() * threads * per_thread;
    let all = reader.query(None, None).unwrap();
    assert_eq!(all.len(), n);
    let ids: BTreeSet<String> = all.iter().map(|r| r.request_id.to_string()).collect();
    assert_eq!(ids.len(), n, "no duplicates");
    let expected: BTreeSet<String> = (0..stores.len())
        .flat_map(|w| (0..threads).flat_map(move |t| (0..per_thread).map(move |i| format!("w{w}-t{t}-{i}"))))
        .collect();
    assert_eq!(ids, expected);

    let r = reader.summary(None).unwrap();
    assert_eq!(r.requests as usize, n);
    let tokens_in: u64 = (0..threads).map(|t| (t as u64 + 1) * per_thread as u64).sum::<u64>() * stores.len() as u64;
    assert_eq!(r.local.tokens_in + r.cloud.tokens_in, tokens_in);
    let cloud = (0..per_thread).filter(|i| i % 3 == 0).count() * threads * stores.len();
    assert_eq!(r.cloud.requests as usize, cloud);
    // Every cost recomputed from the records equals the summary's sum.
    let cost: i128 = all.iter().map(|r| r.cost.unwrap().pico()).sum();
    assert_eq!(r.cost.pico(), cost);
}

/// The background writer over a real store: everything submitted from
/// several threads arrives.
pub fn check_writer(store: Arc<dyn LedgerStore>) {
    let writer = Arc::new(LedgerWriter::spawn(Arc::clone(&store), 10_000).unwrap());
    std::thread::scope(|s| {
        for t in 0..4 {
            let w = Arc::clone(&writer);
            s.spawn(move || {
                for i in 0..250 {
                    assert!(w.submit(numbered(9, t, i)));
                }
            });
        }
    });
    writer.flush().unwrap();
    assert_eq!(store.summary(None).unwrap().requests, 1000, "flush waits for the writes");
    let writer = Arc::into_inner(writer).unwrap();
    let stats = writer.shutdown();
    assert_eq!(stats, WriterStats { submitted: 1000, written: 1000, dropped: 0, failed: 0 });
}
