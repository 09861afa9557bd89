//! Shared helpers of the fault-injection tests.
#![allow(dead_code)]

use std::sync::Arc;
use std::time::Duration;

use hearth_api::{ChatEvent, ChatRequest, FinishReason, Message, Role, ToolCall, Usage};
use hearth_cloud::testing::FaultServer;
use hearth_cloud::{BreakerConfig, CloudClient, CloudConfig, CloudError, CloudSafeRequest, RetryPolicy, Secret};
use tokio::task::JoinSet;
use tokio::time::Instant;

pub const KEY: &str = "sk-canary-7f3a9c1e5b2d4680";

/// A config for the fault server: short backoff, no breaker (each test
/// that wants one turns it on).
pub fn config(server: &FaultServer, deadline: Duration) -> CloudConfig {
    let mut c = CloudConfig::new(server.base_url(), "upstream-model");
    c.api_key = Some(Secret::new(KEY));
    c.deadline = deadline;
    c.connect_timeout = Duration::from_secs(1);
    c.retry = RetryPolicy {
        max_attempts: 3,
        base_delay: Duration::from_millis(2),
        max_delay: Duration::from_millis(20),
        jitter_seed: 42,
    };
    c.breaker = BreakerConfig::disabled();
    c
}

pub fn user_text(i: usize) -> String {
    format!("question number {i}")
}

pub fn chat_request(i: usize) -> ChatRequest {
    ChatRequest::new("hearth/auto", vec![Message::new(Role::System, "sys"), Message::new(Role::User, user_text(i))])
}

pub fn request(i: usize) -> CloudSafeRequest {
    CloudSafeRequest::assume_safe_for_tests(chat_request(i))
}

/// How one request ended, from the caller's side.
#[derive(Debug)]
pub enum Outcome {
    /// The stream ran to its end without an error event.
    Complete { text: Vec<String>, calls: Vec<ToolCall>, finish: Vec<(u32, FinishReason)>, usage: Option<Usage> },
    /// `chat` returned an error: nothing was handed over.
    Refused(CloudError),
    /// The stream ended with `ChatEvent::Error` after `events` other events.
    Broken { events: usize, text: String, error: CloudError, message: String },
}

impl Outcome {
    pub fn class(&self) -> &'static str {
        match self {
            Outcome::Complete { .. } => "complete",
            Outcome::Refused(_) => "before-first-byte error",
            Outcome::Broken { .. } => "mid-stream error",
        }
    }
}

/// Sends one request and drains the stream, checking the stream contract:
/// nothing after `Error`, `Usage` only at the end, every choice finishes.
pub async fn run_one(client: &CloudClient, req: CloudSafeRequest) -> Outcome {
    let mut stream = match client.chat(req).await {
        Err(e) => {
            assert!(e.is_before_first_byte(), "chat() returned a mid-stream error: {e:?}");
            return Outcome::Refused(e);
        }
        Ok(s) => s,
    };
    let mut text: Vec<String> = Vec::new();
    let mut calls = Vec::new();
    let mut finish = Vec::new();
    let mut usage = None;
    let mut events = 0;
    while let Some(ev) = stream.next().await {
        assert!(usage.is_none(), "event after Usage: {ev:?}");
        match ev {
            ChatEvent::Delta { index, text: t } => {
                let i = index as usize;
                if text.len() <= i {
                    text.resize(i + 1, String::new());
                }
                text[i].push_str(&t);
            }
            ChatEvent::ToolCall { call, .. } => calls.push(call),
            ChatEvent::Finish { index, reason } => finish.push((index, reason)),
            ChatEvent::Usage(u) => usage = Some(u),
            ChatEvent::Error { message } => {
                assert!(stream.next().await.is_none(), "event after Error");
                let error = stream.failure().cloned().expect("Error event without a typed failure");
                assert!(!error.is_before_first_byte(), "mid-stream failure marked before-first-byte: {error:?}");
                return Outcome::Broken { events, text: text.concat(), error, message };
            }
        }
        events += 1;
    }
    assert!(events > 0, "a stream handed over with no event");
    assert!(!finish.is_empty(), "complete stream without Finish");
    Outcome::Complete { text, calls, finish, usage }
}

pub struct Tally {
    pub outcomes: Vec<(usize, Outcome, Duration)>,
    pub hangs: usize,
    pub panics: usize,
}

/// `n` requests, at most `concurrency` in flight. A request that takes more
/// than `hang_after` is counted as a hang (and abandoned).
pub async fn hammer(client: &CloudClient, n: usize, concurrency: usize, hang_after: Duration) -> Tally {
    let sem = Arc::new(tokio::sync::Semaphore::new(concurrency));
    let mut set = JoinSet::new();
    for i in 0..n {
        let permit = sem.clone().acquire_owned().await.expect("semaphore closed");
        let client = client.clone();
        set.spawn(async move {
            let _permit = permit;
            let t0 = Instant::now();
            let r = tokio::time::timeout(hang_after, run_one(&client, request(i))).await;
            (i, r.ok(), t0.elapsed())
        });
    }
    let mut tally = Tally { outcomes: Vec::new(), hangs: 0, panics: 0 };
    while let Some(r) = set.join_next().await {
        match r {
            Ok((i, Some(o), d)) => tally.outcomes.push((i, o, d)),
            Ok((_, None, _)) => tally.hangs += 1,
            Err(e) if e.is_panic() => {
                eprintln!("request task panicked: {e}");
                tally.panics += 1
            }
            Err(e) => panic!("request task failed: {e}"),
        }
    }
    tally.outcomes.sort_by_key(|(i, _, _)| *i);
    tally
}

impl Tally {
    /// Asserts 0 hangs, 0 panics, and every outcome passes `check`.
    pub fn expect_all(&self, n: usize, what: &str, check: impl Fn(usize, &Outcome) -> bool) {
        assert_eq!(self.panics, 0, "{what}: panics");
        assert_eq!(self.hangs, 0, "{what}: hangs");
        assert_eq!(self.outcomes.len(), n, "{what}: outcomes");
        for (i, o, _) in &self.outcomes {
            assert!(check(*i, o), "{what}: request {i} had unexpected outcome {} {o:?}", o.class());
        }
    }

    pub fn max_elapsed(&self) -> Duration {
        self.outcomes.iter().map(|(_, _, d)| *d).max().unwrap_or_default()
    }
}
