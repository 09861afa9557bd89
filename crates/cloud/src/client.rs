//! The client: attempts, retries, the breaker, and the streamed answer.

use std::collections::VecDeque;
use std::fmt;
use std::pin::Pin;
use std::sync::{Arc, Mutex, MutexGuard};
use std::task::{Context, Poll};
use std::time::{Duration, SystemTime};

use hearth_api::ChatEvent;
use hearth_guard::{CloudSafeRequest, Secret};
use reqwest::header::{HeaderValue, ACCEPT, AUTHORIZATION, CONTENT_TYPE, RETRY_AFTER};
use serde_json::Value;
use tokio::sync::mpsc;
use tokio::time::{timeout, timeout_at, Instant};

use crate::backoff::{backoff, parse_retry_after, Jitter};
use crate::breaker::{Admission, Breaker, BreakerState};
use crate::config::CloudConfig;
use crate::decode::{Assembler, DecodeError};
use crate::encode::{encode_request, EncodeOptions};
use crate::error::{CloudError, Phase};
use crate::redact::{redact, summarize_body};
use crate::sse::{SseError, SseEvent, SseParser};

/// Error bodies are read up to this many bytes (enough for any JSON error
/// object; a proxy's HTML page is cut short).
const MAX_ERROR_BODY: usize = 16 << 10;
/// One SSE line / event; a streamed chunk is a few hundred bytes.
const MAX_SSE_LINE: usize = 1 << 20;
/// Events buffered between the reader task and the consumer.
const CHANNEL_DEPTH: usize = 64;

/// Client for one OpenAI-compatible endpoint. Cheap to clone (shared state:
/// connection pool, breaker, jitter generator).
#[derive(Clone)]
pub struct CloudClient {
    inner: Arc<Inner>,
}

struct Inner {
    http: reqwest::Client,
    endpoint: reqwest::Url,
    cfg: CloudConfig,
    breaker: Mutex<Breaker>,
    jitter: Mutex<Jitter>,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    // The guarded state stays consistent even if a holder panicked (every
    // update is a few field writes), so a poisoned lock is still usable.
    m.lock().unwrap_or_else(|p| p.into_inner())
}

impl fmt::Debug for CloudClient {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // `cfg.api_key` is a `Secret`, whose Debug prints "[redacted]".
        f.debug_struct("CloudClient").field("endpoint", &self.inner.endpoint.as_str()).field("config", &self.inner.cfg).finish()
    }
}

impl CloudClient {
    /// Builds a client. Fails with [`CloudError::Offline`] for an offline
    /// deployment and [`CloudError::Config`] for unusable settings. Opens no
    /// connection.
    pub fn new(cfg: CloudConfig) -> Result<CloudClient, CloudError> {
        let endpoint = cfg.validate()?;
        let mut b = reqwest::Client::builder()
            .use_rustls_tls()
            .connect_timeout(cfg.connect_timeout)
            // Only explicit configuration decides where prompts go: no
            // proxy from the environment, and no redirects (a 3xx is an
            // error rather than a second destination for key and prompt).
            .no_proxy()
            .redirect(reqwest::redirect::Policy::none())
            .pool_idle_timeout(Duration::from_secs(60))
            .tcp_nodelay(true)
            .user_agent(concat!("hearth/", env!("CARGO_PKG_VERSION")));
        for (i, pem) in cfg.extra_root_certs_pem.iter().enumerate() {
            let cert = reqwest::Certificate::from_pem(pem)
                .map_err(|e| CloudError::Config(format!("extra root certificate {i}: {}", e.without_url())))?;
            b = b.add_root_certificate(cert);
        }
        let http = b.build().map_err(|e| CloudError::Config(format!("HTTP client: {}", e.without_url())))?;
        Ok(CloudClient {
            inner: Arc::new(Inner {
                http,
                endpoint,
                breaker: Mutex::new(Breaker::new(cfg.breaker.clone())),
                jitter: Mutex::new(Jitter::new(cfg.retry.jitter_seed)),
                cfg,
            }),
        })
    }

    /// The `{base}/chat/completions` URL requests go to.
    pub fn endpoint(&self) -> &str {
        self.inner.endpoint.as_str()
    }

    /// The breaker's state now (an open breaker whose cool-down is over
    /// reports `HalfOpen`: the next request will be the probe).
    pub fn breaker_state(&self) -> BreakerState {
        lock(&self.inner.breaker).state(std::time::Instant::now())
    }

    /// Sends the request and waits for the first event of the answer.
    ///
    /// `Err` means nothing of the answer exists ([`CloudError::is_before_first_byte`]
    /// is true): the caller may answer locally instead. `Ok` hands over a
    /// stream whose first event is already in hand; from then on a failure
    /// ends the stream with [`ChatEvent::Error`] and is never retried.
    pub async fn chat(&self, req: CloudSafeRequest) -> Result<CloudStream, CloudError> {
        let inner = &self.inner;
        let cfg = &inner.cfg;
        let deadline = Instant::now() + cfg.deadline;
        let body = serde_json::to_vec(&encode_request(
            req.request(),
            &EncodeOptions { model: &cfg.model, send_stream_options: cfg.send_stream_options },
        ))
        .map_err(|e| CloudError::Config(format!("cannot encode request: {e}")))?;

        let mut attempt = 0u32;
        let mut last: Option<CloudError> = None;
        loop {
            attempt += 1;
            let admission = match lock(&inner.breaker).acquire(std::time::Instant::now()) {
                Ok(a) => a,
                Err(retry_in) => {
                    tracing::debug!(attempt, "cloud circuit breaker open: failing fast");
                    // On a retry, the failure that tripped the breaker says
                    // more than "circuit open".
                    return Err(last.unwrap_or(CloudError::CircuitOpen { retry_in }));
                }
            };
            let mut permit = Permit { inner, admission, settled: false };
            let outcome = timeout_at(deadline, inner.attempt(&body, deadline)).await;
            let failure = match outcome {
                Ok(Ok((reader, first))) => {
                    // A probe closes the breaker as soon as the answer
                    // starts; a normal attempt's verdict waits for the end
                    // of its stream, so streams that break after their
                    // first event still add up to an open breaker.
                    let verdict_at_end = admission == Admission::Normal;
                    if verdict_at_end {
                        permit.settled = true;
                    } else {
                        permit.settle(false);
                    }
                    tracing::debug!(attempt, "cloud answer started");
                    return Ok(CloudStream::spawn(self.inner.clone(), reader, first, attempt, verdict_at_end));
                }
                Err(_) => {
                    permit.settle(true);
                    let e = CloudError::Timeout {
                        phase: Phase::BeforeFirstByte,
                        attempts: attempt,
                        limit: cfg.deadline,
                        first_byte: false,
                    };
                    tracing::warn!(attempt, kind = e.kind(), "cloud request failed: {e}");
                    return Err(e);
                }
                Ok(Err(f)) => f,
            };
            permit.settle(failure.breaker_failure);
            let err = failure.error.with_attempts(attempt);
            if !failure.retryable || attempt >= cfg.retry.max_attempts {
                tracing::warn!(attempt, kind = err.kind(), status = err.status(), "cloud request failed: {err}");
                return Err(err);
            }
            let wait = match failure.retry_after {
                Some(d) => d,
                None => backoff(&cfg.retry, attempt, &mut lock(&inner.jitter)),
            };
            let remaining = deadline.saturating_duration_since(Instant::now());
            if wait >= remaining {
                // Waiting would only end in a timeout; fail now so the
                // caller can fall back while the deadline still allows it.
                tracing::warn!(attempt, kind = err.kind(), ?wait, "cloud request failed; no time left to retry: {err}");
                return Err(err);
            }
            tracing::debug!(attempt, kind = err.kind(), ?wait, "cloud attempt failed, retrying: {err}");
            tokio::time::sleep(wait).await;
            last = Some(err);
        }
    }
}

/// Records an attempt's verdict in the breaker; a permit dropped without a
/// verdict (the caller's future was cancelled) releases a half-open probe.
struct Permit<'a> {
    inner: &'a Inner,
    admission: Admission,
    settled: bool,
}

impl Permit<'_> {
    fn settle(&mut self, failed: bool) {
        self.settled = true;
        lock(&self.inner.breaker).record(self.admission, failed, std::time::Instant::now());
    }
}

impl Drop for Permit<'_> {
    fn drop(&mut self) {
        if !self.settled {
            lock(&self.inner.breaker).abandon(self.admission);
        }
    }
}

/// Why one attempt failed, and what the retry loop may do about it.
struct AttemptFailure {
    error: CloudError,
    retryable: bool,
    /// Counts against the breaker (the endpoint looks unavailable).
    breaker_failure: bool,
    retry_after: Option<Duration>,
}

impl AttemptFailure {
    fn transient(error: CloudError) -> AttemptFailure {
        AttemptFailure { error, retryable: true, breaker_failure: true, retry_after: None }
    }
    fn fatal(error: CloudError) -> AttemptFailure {
        AttemptFailure { error, retryable: false, breaker_failure: true, retry_after: None }
    }
}

/// The cause chain of a transport error, without the URL, with the key
/// scrubbed (it is never in there, but the chain is third-party text).
fn describe(e: reqwest::Error, key: Option<&Secret>) -> String {
    use std::error::Error as _;
    let e = e.without_url();
    let mut s = e.to_string();
    let mut src = e.source();
    while let Some(c) = src {
        let m = c.to_string();
        if !s.contains(&m) {
            s.push_str(": ");
            s.push_str(&m);
        }
        src = c.source();
    }
    let mut s = redact(&s, key);
    if s.len() > 300 {
        let mut cut = 300;
        while !s.is_char_boundary(cut) {
            cut -= 1;
        }
        s.truncate(cut);
        s.push('…');
    }
    s
}

impl Inner {
    fn key(&self) -> Option<&Secret> {
        self.cfg.api_key.as_ref()
    }

    /// One attempt: send, check the status, read up to the first event.
    async fn attempt(&self, body: &[u8], deadline: Instant) -> Result<(BodyReader, ChatEvent), AttemptFailure> {
        match self.cfg.first_byte_timeout {
            None => self.attempt_inner(body, deadline).await,
            Some(t) => match timeout(t, self.attempt_inner(body, deadline)).await {
                Ok(r) => r,
                Err(_) => Err(AttemptFailure::transient(CloudError::Timeout {
                    phase: Phase::BeforeFirstByte,
                    attempts: 0,
                    limit: t,
                    first_byte: true,
                })),
            },
        }
    }

    async fn attempt_inner(&self, body: &[u8], deadline: Instant) -> Result<(BodyReader, ChatEvent), AttemptFailure> {
        let mut rb = self
            .http
            .post(self.endpoint.clone())
            .header(CONTENT_TYPE, "application/json")
            .header(ACCEPT, "text/event-stream, application/json")
            .body(body.to_vec());
        if let Some(k) = self.key() {
            // Validated as visible ASCII in `CloudConfig::validate`.
            let mut v = HeaderValue::from_str(&format!("Bearer {}", k.expose()))
                .map_err(|_| AttemptFailure::fatal(CloudError::Config("API key is not a valid header value".into())))?;
            // Keeps the value out of hyper's/reqwest's Debug output.
            v.set_sensitive(true);
            rb = rb.header(AUTHORIZATION, v);
        }
        let resp = rb.send().await.map_err(|e| {
            if e.is_builder() {
                let d = describe(e, self.key());
                AttemptFailure { error: CloudError::Config(d), retryable: false, breaker_failure: false, retry_after: None }
            } else if e.is_connect() {
                AttemptFailure::transient(CloudError::Connect { attempts: 0, detail: describe(e, self.key()) })
            } else {
                // Written, then reset/closed before a status line arrived.
                AttemptFailure::transient(CloudError::Connection {
                    phase: Phase::BeforeFirstByte,
                    attempts: 0,
                    detail: format!("before response headers: {}", describe(e, self.key())),
                })
            }
        })?;

        let status = resp.status();
        let content_type = resp
            .headers()
            .get(CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("")
            .chars()
            .take(80)
            .collect::<String>()
            .to_ascii_lowercase();
        if !status.is_success() {
            let retry_after =
                resp.headers().get(RETRY_AFTER).and_then(|v| v.to_str().ok()).and_then(|v| parse_retry_after(v, SystemTime::now()));
            let code = status.as_u16();
            let mut resp = resp;
            let mut buf = Vec::new();
            // Best effort: a body that breaks off still gives a summary.
            while buf.len() < MAX_ERROR_BODY {
                match timeout_at(deadline, resp.chunk()).await {
                    Ok(Ok(Some(c))) => buf.extend_from_slice(&c),
                    _ => break,
                }
            }
            buf.truncate(MAX_ERROR_BODY);
            let retryable = code == 408 || code == 429 || status.is_server_error();
            return Err(AttemptFailure {
                error: CloudError::Http { status: code, attempts: 0, summary: summarize_body(&buf, &content_type, self.key()), retry_after },
                retryable,
                // 401/403/404 mean the endpoint is misconfigured for every
                // request; other 4xx are about this request only.
                breaker_failure: retryable || matches!(code, 401 | 403 | 404) || status.is_redirection(),
                retry_after: if retryable { retry_after } else { None },
            });
        }

        let mut reader = if content_type.is_empty() || content_type.starts_with("text/event-stream") {
            BodyReader::sse(resp, deadline, self.cfg.max_response_bytes, self.key().cloned())
        } else if content_type.starts_with("application/json") {
            BodyReader::whole_json(resp, deadline, self.cfg.max_response_bytes, self.key().cloned()).await.map_err(|f| {
                let retryable = matches!(f, StreamFailure::Connection(_));
                AttemptFailure { retryable, ..AttemptFailure::fatal(f.into_error(Phase::BeforeFirstByte, self.cfg.deadline)) }
            })?
        } else {
            let ct: String = content_type.chars().filter(|c| c.is_ascii_graphic() || *c == ' ').collect();
            return Err(AttemptFailure::fatal(CloudError::Protocol {
                phase: Phase::BeforeFirstByte,
                detail: format!("unexpected content type {ct:?} on a 2xx answer"),
            }));
        };

        match reader.next_event().await {
            Ok(Some(first)) => Ok((reader, first)),
            Ok(None) => Err(AttemptFailure::fatal(CloudError::Protocol {
                phase: Phase::BeforeFirstByte,
                detail: "answer ended without any event".into(),
            })),
            Err(f) => {
                // Nothing has reached the caller yet, so transport-level
                // breakage may still be retried; a malformed answer would
                // likely be malformed again and is not.
                let retryable = match &f {
                    StreamFailure::Connection(_) | StreamFailure::Upstream(_) => true,
                    StreamFailure::Truncated(_) => !reader.saw_done,
                    StreamFailure::Timeout | StreamFailure::Protocol(_) => false,
                };
                let error = f.into_error(Phase::BeforeFirstByte, self.cfg.deadline);
                Err(AttemptFailure { retryable, ..AttemptFailure::fatal(error) })
            }
        }
    }
}

/// Why reading the body stopped.
#[derive(Debug)]
enum StreamFailure {
    Timeout,
    Connection(String),
    Protocol(String),
    Upstream(String),
    Truncated(String),
}

impl StreamFailure {
    fn into_error(self, phase: Phase, deadline: Duration) -> CloudError {
        match self {
            StreamFailure::Timeout => CloudError::Timeout { phase, attempts: 0, limit: deadline, first_byte: false },
            StreamFailure::Connection(detail) => CloudError::Connection { phase, attempts: 0, detail },
            StreamFailure::Protocol(detail) | StreamFailure::Truncated(detail) => CloudError::Protocol { phase, detail },
            StreamFailure::Upstream(summary) => CloudError::Upstream { phase, summary },
        }
    }
}

/// The response body, turned into events on demand.
struct BodyReader {
    resp: Option<reqwest::Response>,
    parser: SseParser,
    asm: Assembler,
    pending: VecDeque<ChatEvent>,
    finished: bool,
    saw_done: bool,
    received: usize,
    max_bytes: usize,
    deadline: Instant,
    key: Option<Secret>,
}

impl BodyReader {
    fn sse(resp: reqwest::Response, deadline: Instant, max_bytes: usize, key: Option<Secret>) -> BodyReader {
        BodyReader {
            resp: Some(resp),
            parser: SseParser::new(MAX_SSE_LINE.min(max_bytes), max_bytes),
            asm: Assembler::default(),
            pending: VecDeque::new(),
            finished: false,
            saw_done: false,
            received: 0,
            max_bytes,
            deadline,
            key,
        }
    }

    /// A non-streamed `chat.completion` (the endpoint ignored `stream`).
    async fn whole_json(
        mut resp: reqwest::Response,
        deadline: Instant,
        max_bytes: usize,
        key: Option<Secret>,
    ) -> Result<BodyReader, StreamFailure> {
        let mut buf = Vec::new();
        loop {
            match timeout_at(deadline, resp.chunk()).await {
                Err(_) => return Err(StreamFailure::Timeout),
                Ok(Err(e)) => return Err(StreamFailure::Connection(describe(e, key.as_ref()))),
                Ok(Ok(None)) => break,
                Ok(Ok(Some(c))) => {
                    if buf.len() + c.len() > max_bytes {
                        return Err(StreamFailure::Protocol(format!("response larger than {max_bytes} bytes")));
                    }
                    buf.extend_from_slice(&c);
                }
            }
        }
        let mut r = BodyReader::sse(resp, deadline, max_bytes, key);
        r.resp = None;
        r.finished = true;
        r.saw_done = true;
        let v: Value = serde_json::from_slice(&buf).map_err(|e| StreamFailure::Protocol(format!("malformed JSON answer: {e}")))?;
        r.asm.completion(&v, &mut r.pending).map_err(|e| r.decode_failure(e))?;
        Ok(r)
    }

    fn decode_failure(&self, e: DecodeError) -> StreamFailure {
        match e {
            DecodeError::Upstream(m) => StreamFailure::Upstream(crate::redact::tidy_summary(&redact(&m, self.key.as_ref()))),
            DecodeError::Protocol(m) => StreamFailure::Protocol(m),
            DecodeError::Truncated(m) => StreamFailure::Truncated(m),
        }
    }

    fn sse_failure(e: SseError) -> StreamFailure {
        StreamFailure::Protocol(format!("malformed event stream: {e}"))
    }

    fn handle(&mut self, events: Vec<SseEvent>) -> Result<(), StreamFailure> {
        for ev in events {
            if self.finished {
                // Anything after [DONE] is ignored, as OpenAI clients do.
                break;
            }
            if ev.data.trim() == "[DONE]" {
                self.saw_done = true;
                self.finished = true;
                // The answer is complete; the connection is not needed.
                self.resp = None;
                self.asm.end(true, &mut self.pending).map_err(|e| self.decode_failure(e))?;
                break;
            }
            if ev.event == "error" {
                let msg = serde_json::from_str::<Value>(&ev.data)
                    .ok()
                    .and_then(|v| crate::redact::error_message(&v))
                    .unwrap_or_else(|| ev.data.clone());
                return Err(self.decode_failure(DecodeError::Upstream(msg)));
            }
            let v: Value = serde_json::from_str(&ev.data)
                .map_err(|e| StreamFailure::Protocol(format!("malformed JSON in stream chunk: {e}")))?;
            self.asm.chunk(&v, &mut self.pending).map_err(|e| self.decode_failure(e))?;
        }
        Ok(())
    }

    async fn next_event(&mut self) -> Result<Option<ChatEvent>, StreamFailure> {
        loop {
            if let Some(ev) = self.pending.pop_front() {
                return Ok(Some(ev));
            }
            if self.finished {
                return Ok(None);
            }
            let Some(resp) = self.resp.as_mut() else {
                return Ok(None);
            };
            let chunk = match timeout_at(self.deadline, resp.chunk()).await {
                Err(_) => return Err(StreamFailure::Timeout),
                Ok(Err(e)) => return Err(StreamFailure::Connection(describe(e, self.key.as_ref()))),
                Ok(Ok(c)) => c,
            };
            let mut events = Vec::new();
            match chunk {
                Some(bytes) => {
                    self.received += bytes.len();
                    if self.received > self.max_bytes {
                        return Err(StreamFailure::Protocol(format!("response larger than {} bytes", self.max_bytes)));
                    }
                    self.parser.push(&bytes, &mut events).map_err(Self::sse_failure)?;
                    self.handle(events)?;
                }
                None => {
                    self.parser.finish(&mut events).map_err(Self::sse_failure)?;
                    self.handle(events)?;
                    self.resp = None;
                    if !self.finished {
                        self.finished = true;
                        self.asm.end(false, &mut self.pending).map_err(|e| self.decode_failure(e))?;
                    }
                }
            }
        }
    }
}

enum Msg {
    Event(ChatEvent),
    Failed(CloudError),
    End,
}

/// A streamed cloud answer: [`ChatEvent`]s, ending after the last choice's
/// `Finish` and the `Usage` event, or with exactly one [`ChatEvent::Error`].
/// Also a `futures_core::Stream<Item = ChatEvent>`. Dropping it closes the
/// upstream connection.
pub struct CloudStream {
    rx: mpsc::Receiver<Msg>,
    task: tokio::task::AbortHandle,
    failure: Option<CloudError>,
    ended: bool,
}

impl fmt::Debug for CloudStream {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("CloudStream").field("ended", &self.ended).field("failure", &self.failure).finish()
    }
}

impl CloudStream {
    fn spawn(inner: Arc<Inner>, mut reader: BodyReader, first: ChatEvent, attempts: u32, verdict_at_end: bool) -> CloudStream {
        let (tx, rx) = mpsc::channel(CHANNEL_DEPTH);
        let task = tokio::spawn(async move {
            if tx.send(Msg::Event(first)).await.is_err() {
                return;
            }
            loop {
                let msg = match reader.next_event().await {
                    Ok(Some(ev)) => Msg::Event(ev),
                    Ok(None) => {
                        if verdict_at_end {
                            lock(&inner.breaker).record(Admission::Normal, false, std::time::Instant::now());
                        }
                        Msg::End
                    }
                    Err(f) => {
                        let e = f.into_error(Phase::MidStream, inner.cfg.deadline).with_attempts(attempts);
                        lock(&inner.breaker).record(Admission::Normal, true, std::time::Instant::now());
                        tracing::warn!(kind = e.kind(), "cloud stream failed after the first event: {e}");
                        Msg::Failed(e)
                    }
                };
                let last = !matches!(msg, Msg::Event(_));
                if tx.send(msg).await.is_err() || last {
                    return;
                }
            }
        });
        CloudStream { rx, task: task.abort_handle(), failure: None, ended: false }
    }

    /// The next event; `None` after the end (or after the `Error` event).
    pub async fn next(&mut self) -> Option<ChatEvent> {
        std::future::poll_fn(|cx| self.poll_event(cx)).await
    }

    /// The typed cause behind a `ChatEvent::Error`, once it was yielded.
    /// Its [`CloudError::is_before_first_byte`] is false.
    pub fn failure(&self) -> Option<&CloudError> {
        self.failure.as_ref()
    }

    fn poll_event(&mut self, cx: &mut Context<'_>) -> Poll<Option<ChatEvent>> {
        if self.ended {
            return Poll::Ready(None);
        }
        let msg = match self.rx.poll_recv(cx) {
            Poll::Pending => return Poll::Pending,
            Poll::Ready(m) => m,
        };
        match msg {
            Some(Msg::Event(ev)) => Poll::Ready(Some(ev)),
            Some(Msg::End) => {
                self.ended = true;
                Poll::Ready(None)
            }
            Some(Msg::Failed(e)) => {
                self.ended = true;
                let message = e.to_string();
                self.failure = Some(e);
                Poll::Ready(Some(ChatEvent::Error { message }))
            }
            None => {
                // The reader task vanished without saying how the answer
                // ended (it panicked or the runtime is shutting down): an
                // explicit error, never a silently truncated answer.
                self.ended = true;
                let e = CloudError::Connection {
                    phase: Phase::MidStream,
                    attempts: 1,
                    detail: "the stream reader stopped unexpectedly".into(),
                };
                let message = e.to_string();
                self.failure = Some(e);
                Poll::Ready(Some(ChatEvent::Error { message }))
            }
        }
    }
}

impl futures_core::Stream for CloudStream {
    type Item = ChatEvent;

    fn poll_next(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<ChatEvent>> {
        self.get_mut().poll_event(cx)
    }
}

impl Drop for CloudStream {
    fn drop(&mut self) {
        self.task.abort();
    }
}
