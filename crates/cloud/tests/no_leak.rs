//! The API key never appears in errors, stream error events, `Debug`
//! output or logs — even when the upstream echoes it back. (Own test binary:
//! it installs a global trace-level subscriber that captures every log
//! line, including the `log` records of the HTTP stack.)

mod common;

use std::io::Write;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use common::*;
use hearth_cloud::testing::{Fault, FaultServer};
use hearth_cloud::{BreakerConfig, CloudClient};
use serde_json::json;

#[derive(Clone, Default)]
struct Captured(Arc<Mutex<Vec<u8>>>);

impl Write for Captured {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap_or_else(|p| p.into_inner()).extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_api_key_never_appears_in_errors_logs_or_debug_output() {
    let logs = Captured::default();
    let sink = logs.clone();
    tracing_subscriber::fmt()
        .with_max_level(tracing::Level::TRACE)
        .with_ansi(false)
        .with_writer(move || sink.clone())
        .try_init()
        .expect("install subscriber");

    let server = FaultServer::start().await.unwrap();
    let mut cfg = config(&server, Duration::from_millis(800));
    cfg.breaker = BreakerConfig::disabled();
    let client = CloudClient::new(cfg.clone()).unwrap();
    let mut texts = vec![format!("{cfg:?}"), format!("{client:?}")];

    let echoing_401 = Fault::Status {
        code: 401,
        retry_after: None,
        body: json!({"error": {"message": format!("Incorrect API key provided: {KEY}."), "code": "invalid_api_key"}}).to_string(),
    };
    let echoing_400 = Fault::Status { code: 400, retry_after: None, body: format!("bad request; your key {KEY} was rejected") };
    let echoing_503 = Fault::Status {
        code: 503,
        retry_after: Some("0".into()),
        body: format!("<html><body>upstream says {KEY}</body></html>"),
    };
    let faults = [
        Fault::None,
        echoing_401,
        echoing_400,
        echoing_503,
        Fault::ResetBeforeHeaders,
        Fault::CloseBeforeHeaders,
        Fault::ResetMidStream { after_events: 3 },
        Fault::BlackHole,
        Fault::Stall { after_events: 3 },
        Fault::MalformedJson { after_events: 1 },
        Fault::MalformedJson { after_events: 3 },
        Fault::MalformedSse { after_events: 3 },
        Fault::Truncated { after_events: 3 },
        Fault::InStreamError { after_events: 3 },
        Fault::Html,
        Fault::NonStreaming,
    ];
    let mut kinds = Vec::new();
    for (i, f) in faults.iter().enumerate() {
        server.set_mode(f.clone());
        let o = run_one(&client, request(i)).await;
        kinds.push(match &o {
            Outcome::Refused(e) => format!("refused:{}", e.kind()),
            Outcome::Broken { error, .. } => format!("broken:{}", error.kind()),
            Outcome::Complete { .. } => "complete".to_string(),
        });
        texts.push(format!("{o:?}"));
        match &o {
            Outcome::Refused(e) => texts.push(e.to_string()),
            Outcome::Broken { error, message, .. } => {
                texts.push(error.to_string());
                texts.push(message.clone());
            }
            Outcome::Complete { .. } => {}
        }
    }
    // Every failure path ran (not, say, a breaker failing them all fast).
    assert_eq!(
        kinds,
        [
            "complete",
            "refused:http_status",
            "refused:http_status",
            "refused:http_status",
            "refused:connection",
            "refused:connection",
            "broken:connection",
            "refused:timeout",
            "broken:timeout",
            "refused:protocol",
            "broken:protocol",
            "broken:protocol",
            "broken:protocol",
            "broken:upstream",
            "refused:protocol",
            "complete",
        ]
    );
    server.set_refusing(true).await.unwrap();
    let o = run_one(&client, request(99)).await;
    assert!(matches!(&o, Outcome::Refused(e) if e.kind() == "connect"));
    texts.push(format!("{o:?}"));
    // An open breaker's error, too.
    let mut cfg2 = cfg.clone();
    cfg2.breaker = BreakerConfig { consecutive_failures: 1, ..BreakerConfig::default() };
    let client2 = CloudClient::new(cfg2).unwrap();
    let _ = run_one(&client2, request(100)).await;
    let o = run_one(&client2, request(101)).await;
    assert!(matches!(&o, Outcome::Refused(e) if e.kind() == "circuit_open"));
    texts.push(format!("{o:?} {client2:?}"));

    // The key did go out, in the Authorization header, so the scrubbing
    // above was actually exercised.
    let sent = String::from_utf8_lossy(&server.received_bytes()).to_string();
    assert!(sent.contains(&format!("Bearer {KEY}")));
    assert!(texts.iter().any(|t| t.contains("401")), "the 401 case ran");

    let logged = String::from_utf8_lossy(&logs.0.lock().unwrap()).to_string();
    assert!(logged.contains("cloud request failed"), "nothing was logged; the log check would be vacuous");
    let prefix = &KEY[..10];
    for t in texts.iter().chain(std::iter::once(&logged)) {
        assert!(!t.contains(KEY) && !t.contains(prefix), "key leaked into: {t}");
    }
}
