//! The cloud client against every misbehaviour of the fault server: 200
//! requests each, checking the outcome class, retry counts (from the
//! server's connection count), and that nothing panics or outlives its
//! deadline.

mod common;

use std::time::Duration;

use common::*;
use hearth_api::{ChatRequest, FinishReason, Message, Role, Tool, Usage};
use hearth_cloud::testing::{echo_reply, Fault, FaultServer};
use hearth_cloud::{BreakerConfig, BreakerState, CloudClient, CloudError, CloudSafeRequest, Phase};
use serde_json::json;

const N: usize = 200;

fn hang_limit(deadline: Duration) -> Duration {
    // Generous slack over the deadline for a loaded 2-core machine; a
    // request still running then is a hang, not slowness.
    deadline + Duration::from_secs(3)
}

async fn setup(deadline: Duration) -> (FaultServer, CloudClient) {
    let server = FaultServer::start().await.expect("start fault server");
    let client = CloudClient::new(config(&server, deadline)).expect("client");
    (server, client)
}

fn is_echo(i: usize, o: &Outcome) -> bool {
    match o {
        Outcome::Complete { text, calls, finish, usage } => {
            text.len() == 1
                && text[0] == echo_reply(&user_text(i))
                && calls.is_empty()
                && finish == &[(0, FinishReason::Stop)]
                // "sys" + "question number i" = 4 words; "echo: question number i" = 4 chunks.
                && *usage == Some(Usage { prompt_tokens: 4, completion_tokens: 4 })
        }
        _ => false,
    }
}

fn refused_with(o: &Outcome, f: impl Fn(&CloudError) -> bool) -> bool {
    matches!(o, Outcome::Refused(e) if f(e))
}

/// A mid-stream failure whose partial text is a true prefix of the echo.
fn broken_with(i: usize, o: &Outcome, f: impl Fn(&CloudError) -> bool) -> bool {
    match o {
        Outcome::Broken { events, text, error, message } => {
            *events >= 1
                && !text.is_empty()
                && echo_reply(&user_text(i)).starts_with(text.as_str())
                && *text != echo_reply(&user_text(i))
                && *message == error.to_string()
                && f(error)
        }
        _ => false,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn normal_answers_are_echoed_with_usage() {
    let (server, client) = setup(Duration::from_secs(10)).await;
    let t = hammer(&client, N, 20, hang_limit(Duration::from_secs(10))).await;
    t.expect_all(N, "normal", is_echo);
    assert_eq!(server.connections(), N as u64, "one attempt per request");
    // What went upstream: the configured model, streaming with usage, the
    // key in the Authorization header and nowhere else.
    let reqs = server.requests();
    assert_eq!(reqs.len(), N);
    let r = &reqs[0];
    assert_eq!(r.method, "POST");
    assert_eq!(r.path, "/v1/chat/completions");
    assert_eq!(r.header("authorization"), Some(format!("Bearer {KEY}").as_str()));
    assert_eq!(r.header("content-type"), Some("application/json"));
    let body = r.json().expect("JSON body");
    assert_eq!(body["model"], "upstream-model");
    assert_eq!(body["stream"], true);
    assert_eq!(body["stream_options"], json!({"include_usage": true}));
    assert_eq!(body["messages"][0], json!({"role": "system", "content": "sys"}));
    assert!(!String::from_utf8_lossy(&r.body).contains(KEY));
    assert_eq!(client.breaker_state(), BreakerState::Closed);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn refused_port_is_a_connect_error_after_all_attempts() {
    let (server, client) = setup(Duration::from_secs(5)).await;
    server.set_refusing(true).await.unwrap();
    let t = hammer(&client, N, 25, hang_limit(Duration::from_secs(5))).await;
    t.expect_all(N, "refused", |_, o| refused_with(o, |e| matches!(e, CloudError::Connect { attempts: 3, .. })));
    assert_eq!(server.connections(), 0);
    // The port comes back: requests succeed again.
    server.set_refusing(false).await.unwrap();
    let t = hammer(&client, 20, 10, hang_limit(Duration::from_secs(5))).await;
    t.expect_all(20, "reopened", is_echo);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reset_before_headers() {
    let (server, client) = setup(Duration::from_secs(5)).await;
    // Always: three attempts each, then a before-first-byte error.
    server.set_mode(Fault::ResetBeforeHeaders);
    let t = hammer(&client, N, 25, hang_limit(Duration::from_secs(5))).await;
    t.expect_all(N, "reset always", |_, o| {
        refused_with(o, |e| matches!(e, CloudError::Connection { phase: Phase::BeforeFirstByte, attempts: 3, .. }))
    });
    assert_eq!(server.connections(), 3 * N as u64);
    // Once per request: success on the second attempt.
    server.reset_records();
    server.set_mode(Fault::None);
    server.set_flaky(Fault::ResetBeforeHeaders, 1);
    let t = hammer(&client, N, 25, hang_limit(Duration::from_secs(5))).await;
    t.expect_all(N, "reset once", is_echo);
    assert_eq!(server.connections(), 2 * N as u64);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn close_before_headers_twice_then_success() {
    let (server, client) = setup(Duration::from_secs(5)).await;
    server.set_flaky(Fault::CloseBeforeHeaders, 2);
    let t = hammer(&client, N, 25, hang_limit(Duration::from_secs(5))).await;
    t.expect_all(N, "close twice", is_echo);
    assert_eq!(server.connections(), 3 * N as u64);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reset_mid_stream() {
    let (server, client) = setup(Duration::from_secs(5)).await;
    // After the role chunk and two words: the caller has text, so the
    // stream ends with an Error event and is never retried.
    server.set_mode(Fault::ResetMidStream { after_events: 3 });
    let t = hammer(&client, N, 25, hang_limit(Duration::from_secs(5))).await;
    t.expect_all(N, "reset mid-stream", |i, o| {
        broken_with(i, o, |e| matches!(e, CloudError::Connection { phase: Phase::MidStream, attempts: 1, .. }))
    });
    assert_eq!(server.connections(), N as u64, "no retry after the first byte");

    // After the role chunk only (no event reached the caller): retried.
    server.reset_records();
    server.set_mode(Fault::ResetMidStream { after_events: 1 });
    let t = hammer(&client, N, 25, hang_limit(Duration::from_secs(5))).await;
    t.expect_all(N, "reset after role chunk", |_, o| {
        refused_with(o, |e| matches!(e, CloudError::Connection { phase: Phase::BeforeFirstByte, attempts: 3, .. }))
    });
    assert_eq!(server.connections(), 3 * N as u64);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn black_hole_times_out_at_the_deadline() {
    let deadline = Duration::from_millis(300);
    let (server, client) = setup(deadline).await;
    server.set_mode(Fault::BlackHole);
    let t = hammer(&client, N, 50, hang_limit(deadline)).await;
    t.expect_all(N, "black hole", |_, o| {
        refused_with(o, |e| matches!(e, CloudError::Timeout { phase: Phase::BeforeFirstByte, attempts: 1, first_byte: false, .. }))
    });
    assert_eq!(server.connections(), N as u64);

    // A first-byte timeout turns each black-holed attempt into a retryable
    // failure: three attempts, then the first-byte timeout is reported.
    let mut cfg = config(&server, Duration::from_secs(2));
    cfg.first_byte_timeout = Some(Duration::from_millis(100));
    let client = CloudClient::new(cfg).unwrap();
    server.reset_records();
    let t = hammer(&client, N, 50, hang_limit(Duration::from_secs(2))).await;
    t.expect_all(N, "black hole, first-byte timeout", |_, o| {
        refused_with(o, |e| {
            matches!(e, CloudError::Timeout { phase: Phase::BeforeFirstByte, attempts: 3, first_byte: true, limit, .. }
                if *limit == Duration::from_millis(100))
        })
    });
    assert_eq!(server.connections(), 3 * N as u64);

    // With a first-byte timeout, a black-holed attempt is abandoned and
    // retried within the deadline.
    let mut cfg = config(&server, Duration::from_secs(5));
    cfg.first_byte_timeout = Some(Duration::from_millis(100));
    let client = CloudClient::new(cfg).unwrap();
    server.reset_records();
    server.set_mode(Fault::None);
    server.set_flaky(Fault::BlackHole, 1);
    let t = hammer(&client, N, 50, hang_limit(Duration::from_secs(5))).await;
    t.expect_all(N, "black hole once", is_echo);
    assert_eq!(server.connections(), 2 * N as u64);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn slow_and_stalled_streams() {
    // 2 ms per byte: the first content event needs several hundred bytes,
    // far beyond a 300 ms deadline, so nothing reaches the caller.
    let deadline = Duration::from_millis(300);
    let (server, client) = setup(deadline).await;
    server.set_mode(Fault::Slow { byte_delay: Duration::from_millis(2) });
    let t = hammer(&client, N, 50, hang_limit(deadline)).await;
    t.expect_all(N, "slow", |_, o| refused_with(o, |e| matches!(e, CloudError::Timeout { phase: Phase::BeforeFirstByte, .. })));

    // Bytes one at a time but without delay: every SSE/HTTP boundary is
    // split, and the answers are intact.
    let client = CloudClient::new(config(&server, Duration::from_secs(10))).unwrap();
    server.set_mode(Fault::Slow { byte_delay: Duration::ZERO });
    let t = hammer(&client, N, 20, hang_limit(Duration::from_secs(10))).await;
    t.expect_all(N, "fragmented", is_echo);

    // Two words, then silence: the deadline ends the stream with an Error.
    let deadline = Duration::from_secs(1);
    let client = CloudClient::new(config(&server, deadline)).unwrap();
    server.set_mode(Fault::Stall { after_events: 3 });
    let t = hammer(&client, N, 50, hang_limit(deadline)).await;
    t.expect_all(N, "stall", |i, o| broken_with(i, o, |e| matches!(e, CloudError::Timeout { phase: Phase::MidStream, .. })));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rate_limited_with_retry_after() {
    let (server, client) = setup(Duration::from_secs(5)).await;
    // Retry-After: 0, twice per request: the third attempt succeeds.
    server.set_flaky(Fault::too_many_requests("0"), 2);
    let t = hammer(&client, N, 25, hang_limit(Duration::from_secs(5))).await;
    t.expect_all(N, "429 ra=0 twice", is_echo);
    assert_eq!(server.connections(), 3 * N as u64);

    // Retry-After as an HTTP date in the past: retry at once.
    server.reset_records();
    server.set_flaky(Fault::too_many_requests("Sun, 06 Nov 1994 08:49:37 GMT"), 1);
    let t = hammer(&client, N, 25, hang_limit(Duration::from_secs(5))).await;
    t.expect_all(N, "429 ra=past date", is_echo);
    assert_eq!(server.connections(), 2 * N as u64);

    // Retry-After: 1 is honoured: no retry comes sooner than a second.
    server.reset_records();
    server.set_flaky(Fault::too_many_requests("1"), 1);
    let t = hammer(&client, N, 100, hang_limit(Duration::from_secs(5))).await;
    t.expect_all(N, "429 ra=1", is_echo);
    assert!(t.outcomes.iter().all(|(_, _, d)| *d >= Duration::from_secs(1)), "retried before Retry-After");
    assert_eq!(server.connections(), 2 * N as u64);

    // Retry-After beyond the deadline: fail at once (no sleeping into a
    // timeout), with the status, so the router can fall back.
    server.reset_records();
    server.clear_flaky();
    server.set_mode(Fault::too_many_requests("30"));
    let t = hammer(&client, N, 25, hang_limit(Duration::from_secs(5))).await;
    t.expect_all(N, "429 ra=30", |_, o| {
        refused_with(o, |e| matches!(e, CloudError::Http { status: 429, attempts: 1, retry_after: Some(d), .. } if *d == Duration::from_secs(30)))
    });
    assert!(t.max_elapsed() < Duration::from_secs(5), "waited for the deadline");
    assert_eq!(server.connections(), N as u64);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn server_errors_are_retried_client_errors_are_not() {
    let (server, client) = setup(Duration::from_secs(5)).await;
    server.set_mode(Fault::status(503));
    let t = hammer(&client, N, 25, hang_limit(Duration::from_secs(5))).await;
    t.expect_all(N, "503 always", |_, o| {
        refused_with(o, |e| matches!(e, CloudError::Http { status: 503, attempts: 3, summary, .. } if summary.contains("injected status 503")))
    });
    assert_eq!(server.connections(), 3 * N as u64);

    server.reset_records();
    server.set_mode(Fault::None);
    server.set_flaky(Fault::status(503), 2);
    let t = hammer(&client, N, 25, hang_limit(Duration::from_secs(5))).await;
    t.expect_all(N, "503 twice", is_echo);
    assert_eq!(server.connections(), 3 * N as u64);

    server.clear_flaky();
    for code in [400u16, 401, 403, 404, 413, 422] {
        server.reset_records();
        server.set_mode(Fault::status(code));
        let t = hammer(&client, N, 50, hang_limit(Duration::from_secs(5))).await;
        t.expect_all(N, &format!("{code}"), |_, o| refused_with(o, |e| e.status() == Some(code)));
        assert_eq!(server.connections(), N as u64, "HTTP {code} must not be retried");
    }
    for code in [408u16, 500, 502, 504] {
        server.reset_records();
        server.set_mode(Fault::status(code));
        let t = hammer(&client, 50, 25, hang_limit(Duration::from_secs(5))).await;
        t.expect_all(50, &format!("{code}"), |_, o| refused_with(o, |e| e.status() == Some(code)));
        assert_eq!(server.connections(), 150, "HTTP {code} is retried");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn malformed_json_and_sse() {
    let (server, client) = setup(Duration::from_secs(5)).await;
    for (name, early, late) in [
        ("json", Fault::MalformedJson { after_events: 1 }, Fault::MalformedJson { after_events: 3 }),
        ("sse", Fault::MalformedSse { after_events: 1 }, Fault::MalformedSse { after_events: 3 }),
    ] {
        // Before any event reached the caller: a protocol error, not retried
        // (the same server would send the same garbage).
        server.reset_records();
        server.set_mode(early);
        let t = hammer(&client, N, 25, hang_limit(Duration::from_secs(5))).await;
        t.expect_all(N, name, |_, o| refused_with(o, |e| matches!(e, CloudError::Protocol { phase: Phase::BeforeFirstByte, .. })));
        assert_eq!(server.connections(), N as u64);
        // After text was handed over: an explicit Error event.
        server.set_mode(late);
        let t = hammer(&client, N, 25, hang_limit(Duration::from_secs(5))).await;
        t.expect_all(N, name, |i, o| broken_with(i, o, |e| matches!(e, CloudError::Protocol { phase: Phase::MidStream, .. })));
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn truncated_streams_are_errors() {
    let (server, client) = setup(Duration::from_secs(5)).await;
    server.set_mode(Fault::Truncated { after_events: 3 });
    let t = hammer(&client, N, 25, hang_limit(Duration::from_secs(5))).await;
    t.expect_all(N, "truncated mid", |i, o| {
        broken_with(i, o, |e| matches!(e, CloudError::Protocol { phase: Phase::MidStream, detail } if detail.contains("without [DONE]")))
    });
    assert_eq!(server.connections(), N as u64);

    // Headers, then a clean end: nothing was handed over, so it is retried
    // like a reset, and reported before the first byte.
    server.reset_records();
    server.set_mode(Fault::Truncated { after_events: 0 });
    let t = hammer(&client, N, 25, hang_limit(Duration::from_secs(5))).await;
    t.expect_all(N, "truncated empty", |_, o| refused_with(o, |e| matches!(e, CloudError::Protocol { phase: Phase::BeforeFirstByte, .. })));
    assert_eq!(server.connections(), 3 * N as u64);

    // The whole answer but no [DONE] (some servers omit it): complete,
    // because every choice finished.
    server.set_mode(Fault::Truncated { after_events: 7 });
    let t = hammer(&client, N, 25, hang_limit(Duration::from_secs(5))).await;
    t.expect_all(N, "no [DONE] after usage", is_echo);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn in_stream_error_objects() {
    let (server, client) = setup(Duration::from_secs(5)).await;
    server.set_mode(Fault::InStreamError { after_events: 3 });
    let t = hammer(&client, N, 25, hang_limit(Duration::from_secs(5))).await;
    t.expect_all(N, "in-stream error mid", |i, o| {
        broken_with(i, o, |e| matches!(e, CloudError::Upstream { phase: Phase::MidStream, summary } if summary.contains("injected overload")))
    });
    server.reset_records();
    server.set_mode(Fault::None);
    server.set_flaky(Fault::InStreamError { after_events: 1 }, 1);
    let t = hammer(&client, N, 25, hang_limit(Duration::from_secs(5))).await;
    t.expect_all(N, "in-stream error before first event, once", is_echo);
    assert_eq!(server.connections(), 2 * N as u64);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wrong_content_type_and_non_streaming_answers() {
    let (server, client) = setup(Duration::from_secs(5)).await;
    server.set_mode(Fault::Html);
    let t = hammer(&client, N, 25, hang_limit(Duration::from_secs(5))).await;
    t.expect_all(N, "html", |_, o| {
        refused_with(o, |e| matches!(e, CloudError::Protocol { phase: Phase::BeforeFirstByte, detail } if detail.contains("text/html")))
    });
    assert_eq!(server.connections(), N as u64);

    server.set_mode(Fault::NonStreaming);
    let t = hammer(&client, N, 25, hang_limit(Duration::from_secs(5))).await;
    t.expect_all(N, "non-streaming", |i, o| match o {
        Outcome::Complete { text, finish, usage, .. } => {
            text.len() == 1
                && text[0] == echo_reply(&user_text(i))
                && finish == &[(0, FinishReason::Stop)]
                && *usage == Some(Usage { prompt_tokens: 4, completion_tokens: 4 })
        }
        _ => false,
    });
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tool_calls_and_several_choices() {
    let (server, client) = setup(Duration::from_secs(5)).await;
    let mut req = ChatRequest::new("hearth/auto", vec![Message::new(Role::User, "weather in Paris?")]);
    req.tools = vec![Tool {
        name: "get_weather".into(),
        description: Some("current weather".into()),
        parameters: json!({"type": "object", "properties": {"echo": {"type": "string"}}}),
    }];
    match run_one(&client, CloudSafeRequest::assume_safe_for_tests(req)).await {
        Outcome::Complete { text, calls, finish, .. } => {
            assert!(text.iter().all(String::is_empty));
            assert_eq!(calls.len(), 1);
            assert_eq!(calls[0].id, "call_fault_0");
            assert_eq!(calls[0].name, "get_weather");
            let args: serde_json::Value = serde_json::from_str(&calls[0].arguments).unwrap();
            assert_eq!(args, json!({"echo": "weather in Paris?"}));
            assert_eq!(finish, vec![(0, FinishReason::ToolCalls)]);
        }
        o => panic!("tool call: {o:?}"),
    }
    let sent = server.requests().pop().unwrap().json().unwrap();
    assert_eq!(sent["tools"][0]["function"]["name"], "get_weather");
    assert_eq!(sent["tool_choice"], "auto");

    let mut req = ChatRequest::new("hearth/auto", vec![Message::new(Role::User, "two please")]);
    req.params.n = 2;
    match run_one(&client, CloudSafeRequest::assume_safe_for_tests(req)).await {
        Outcome::Complete { text, finish, usage, .. } => {
            assert_eq!(text, vec![echo_reply("two please"), echo_reply("two please")]);
            assert_eq!(finish, vec![(0, FinishReason::Stop), (1, FinishReason::Stop)]);
            assert_eq!(usage, Some(Usage { prompt_tokens: 2, completion_tokens: 6 }));
        }
        o => panic!("n=2: {o:?}"),
    }
}

fn breaker(consecutive: u32, cool_down: Duration) -> BreakerConfig {
    BreakerConfig { enabled: true, consecutive_failures: consecutive, failure_rate: 1.0, window: 50, min_samples: 50, cool_down }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn breaker_opens_fails_fast_and_recovers() {
    let server = FaultServer::start().await.unwrap();
    let mut cfg = config(&server, Duration::from_secs(5));
    cfg.retry.max_attempts = 1;
    cfg.breaker = breaker(3, Duration::from_millis(400));
    let client = CloudClient::new(cfg).unwrap();

    server.set_mode(Fault::status(503));
    let mut outcomes = Vec::new();
    for i in 0..N {
        outcomes.push(run_one(&client, request(i)).await);
    }
    for (i, o) in outcomes.iter().enumerate() {
        let ok = if i < 3 {
            refused_with(o, |e| e.status() == Some(503))
        } else {
            refused_with(o, |e| matches!(e, CloudError::CircuitOpen { retry_in } if *retry_in <= Duration::from_millis(400)))
        };
        assert!(ok, "request {i}: {o:?}");
    }
    assert_eq!(server.connections(), 3, "an open breaker sends nothing");
    assert_eq!(client.breaker_state(), BreakerState::Open);

    // Upstream healthy again; after the cool-down the probe closes it.
    server.set_mode(Fault::None);
    tokio::time::sleep(Duration::from_millis(450)).await;
    assert_eq!(client.breaker_state(), BreakerState::HalfOpen);
    assert!(is_echo(0, &run_one(&client, request(0)).await));
    assert_eq!(client.breaker_state(), BreakerState::Closed);
    let t = hammer(&client, N, 25, hang_limit(Duration::from_secs(5))).await;
    t.expect_all(N, "after recovery", is_echo);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn breaker_half_open_lets_one_probe_through() {
    let server = FaultServer::start().await.unwrap();
    let deadline = Duration::from_millis(400);
    let mut cfg = config(&server, deadline);
    cfg.retry.max_attempts = 1;
    cfg.breaker = breaker(2, Duration::from_millis(200));
    let client = CloudClient::new(cfg).unwrap();

    // Open it with black-holed requests (timeouts count as failures).
    server.set_mode(Fault::BlackHole);
    for i in 0..2 {
        assert!(refused_with(&run_one(&client, request(i)).await, |e| matches!(e, CloudError::Timeout { .. })));
    }
    assert_eq!(client.breaker_state(), BreakerState::Open);
    tokio::time::sleep(Duration::from_millis(250)).await;

    // 200 concurrent requests while half-open: exactly one (the probe)
    // reaches the black hole, all others fail fast; the probe's timeout
    // opens the breaker again.
    server.reset_records();
    let t = hammer(&client, N, N, hang_limit(deadline)).await;
    assert_eq!((t.hangs, t.panics), (0, 0));
    let timeouts = t.outcomes.iter().filter(|(_, o, _)| refused_with(o, |e| matches!(e, CloudError::Timeout { .. }))).count();
    let open = t.outcomes.iter().filter(|(_, o, _)| refused_with(o, |e| matches!(e, CloudError::CircuitOpen { .. }))).count();
    assert_eq!((timeouts, open), (1, N - 1));
    assert_eq!(server.connections(), 1);
    assert_eq!(client.breaker_state(), BreakerState::Open);

    // A probe whose caller gives up releases the slot: the next request
    // becomes the probe instead of failing fast forever.
    tokio::time::sleep(Duration::from_millis(250)).await;
    let abandoned = tokio::time::timeout(Duration::from_millis(50), client.chat(request(0))).await;
    assert!(abandoned.is_err(), "the black-holed probe should still be waiting");
    server.set_mode(Fault::None);
    assert!(is_echo(1, &run_one(&client, request(1)).await));
    assert_eq!(client.breaker_state(), BreakerState::Closed);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn breaker_counts_refused_ports_and_mid_stream_failures() {
    let server = FaultServer::start().await.unwrap();
    let mut cfg = config(&server, Duration::from_secs(5));
    cfg.breaker = breaker(3, Duration::from_millis(300));
    let client = CloudClient::new(cfg).unwrap();

    // Refused: the first request's three attempts open the breaker; all
    // later ones fail fast without touching the network.
    server.set_refusing(true).await.unwrap();
    let mut classes = Vec::new();
    for i in 0..N {
        classes.push(match run_one(&client, request(i)).await {
            Outcome::Refused(e) => e.kind(),
            o => panic!("refused port: {o:?}"),
        });
    }
    assert_eq!(classes[0], "connect");
    assert!(classes[1..].iter().all(|k| *k == "circuit_open"), "{classes:?}");
    server.set_refusing(false).await.unwrap();
    tokio::time::sleep(Duration::from_millis(350)).await;
    assert!(is_echo(0, &run_one(&client, request(0)).await));
    assert_eq!(client.breaker_state(), BreakerState::Closed);

    // Mid-stream failures count too (the probe succeeded at its first
    // event; the broken streams afterwards re-open the breaker).
    server.set_mode(Fault::ResetMidStream { after_events: 3 });
    for i in 0..3 {
        assert!(matches!(run_one(&client, request(i)).await, Outcome::Broken { .. }));
    }
    assert_eq!(client.breaker_state(), BreakerState::Open);
    assert!(refused_with(&run_one(&client, request(9)).await, |e| e.kind() == "circuit_open"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn breaker_trips_on_failure_rate() {
    let server = FaultServer::start().await.unwrap();
    let mut cfg = config(&server, Duration::from_secs(5));
    cfg.retry.max_attempts = 1;
    cfg.breaker = BreakerConfig {
        enabled: true,
        consecutive_failures: 100,
        failure_rate: 0.5,
        window: 10,
        min_samples: 10,
        cool_down: Duration::from_secs(60),
    };
    let client = CloudClient::new(cfg).unwrap();
    // fail, ok, fail, ok, ...: never two failures in a row, but half fail.
    server.push_faults((0..40).map(|i| if i % 2 == 0 { Fault::status(500) } else { Fault::None }));
    let mut first_open = None;
    for i in 0..40 {
        if let Outcome::Refused(CloudError::CircuitOpen { .. }) = run_one(&client, request(i)).await {
            first_open.get_or_insert(i);
        }
    }
    // The 10th attempt (index 9, a success) fills the window at 5/10; the
    // next failure (index 10) trips it, so index 11 is the first refused.
    assert_eq!(first_open, Some(11));
    assert_eq!(server.connections(), 11);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dropping_a_stream_closes_it() {
    let (server, client) = setup(Duration::from_secs(5)).await;
    server.set_mode(Fault::Stall { after_events: 3 });
    let mut s = client.chat(request(0)).await.unwrap();
    assert!(matches!(s.next().await, Some(hearth_api::ChatEvent::Delta { .. })));
    assert_eq!(server.open_connections(), 1);
    drop(s);
    // The stalled server sees the client close the connection.
    let t0 = tokio::time::Instant::now();
    while server.open_connections() != 0 && t0.elapsed() < Duration::from_secs(3) {
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    assert_eq!(server.open_connections(), 0, "dropping the stream did not close the connection");
    server.set_mode(Fault::None);
    assert!(is_echo(1, &run_one(&client, request(1)).await));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn https_urls_speak_tls() {
    // The fault server speaks plain HTTP, so the handshake cannot complete;
    // what it received must be a TLS ClientHello (record type 0x16,
    // version 3.x), proving https goes through rustls, and the failure must
    // be a before-first-byte error within the deadline.
    let server = FaultServer::start().await.unwrap();
    let mut cfg = config(&server, Duration::from_secs(3));
    cfg.base_url = format!("https://{}/v1", server.addr());
    cfg.connect_timeout = Duration::from_millis(300);
    cfg.retry.max_attempts = 1;
    let client = CloudClient::new(cfg).unwrap();
    match run_one(&client, request(0)).await {
        Outcome::Refused(e) => assert!(matches!(e, CloudError::Connect { .. } | CloudError::Timeout { .. }), "{e:?}"),
        o => panic!("https to a plain-HTTP port: {o:?}"),
    }
    let got = server.received_bytes();
    assert!(got.len() > 5 && got[0] == 0x16 && got[1] == 0x03, "not a TLS record: {:02x?}", &got[..got.len().min(8)]);
    assert!(!got.windows(KEY.len()).any(|w| w == KEY.as_bytes()), "key sent in clear");
}

#[test]
fn offline_deployments_cannot_build_a_client() {
    let mut cfg = hearth_cloud::CloudConfig::new("https://api.example.com/v1", "m");
    cfg.offline = true;
    assert_eq!(CloudClient::new(cfg).err(), Some(CloudError::Offline));
}
