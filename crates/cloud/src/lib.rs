//! The cloud client: the only code in Hearth that opens outbound
//! connections. It sends a guard-approved [`CloudSafeRequest`] to any
//! OpenAI-compatible `POST {base}/chat/completions` endpoint (OpenAI, vLLM,
//! TGI, llama-server, another Hearth) and turns the streamed answer into
//! [`hearth_api::ChatEvent`]s.
//!
//! # Guarantees
//!
//! * **One deadline per request** ([`CloudConfig::deadline`]) covers
//!   connecting, every attempt, backoff sleeps and the whole streamed
//!   answer. Nothing waits past it.
//! * **Before the first byte / after it.** [`CloudClient::chat`] returns
//!   only once the first event of the answer is in hand. An `Err` therefore
//!   always means the caller has seen nothing, and answering locally instead
//!   is safe ([`CloudError::is_before_first_byte`]). After `Ok`, a failure
//!   (reset, deadline, malformed chunk, upstream error object, a stream that
//!   ends without `[DONE]` while a choice is unfinished) ends the
//!   [`CloudStream`] with exactly one [`hearth_api::ChatEvent::Error`]; it is
//!   never retried and never silently truncated. The typed cause is
//!   [`CloudStream::failure`].
//! * **The API key** is held as a [`hearth_guard::Secret`], sent only in the
//!   `Authorization` header (marked sensitive), and scrubbed from every
//!   upstream text that ends up in an error; no error, log line or `Debug`
//!   output contains it.
//! * **Egress is explicit.** No proxy from the environment, no redirects
//!   (a 3xx is an error), rustls with the Mozilla and system roots (plus
//!   [`CloudConfig::extra_root_certs_pem`]); no OpenSSL. An offline
//!   deployment cannot construct a client at all ([`CloudError::Offline`]).
//!
//! # Retry state machine (per request)
//!
//! ```text
//! attempt k ──▶ breaker admits? ── no ──▶ Err(CircuitOpen), or the previous
//!    ▲               │ yes                 attempt's error when k > 1
//!    │               ▼
//!    │          send, read status, read up to the first event
//!    │               │
//!    │     ┌─────────┼─────────────────────────────┬──────────────────────┐
//!    │     ▼         ▼                             ▼                      ▼
//!    │  first event  retryable failure:            fatal failure:         deadline
//!    │  ──▶ Ok(stream) connect error, reset/close  4xx (not 408/429),     ──▶ Err(Timeout)
//!    │              before the first event,        malformed answer,
//!    │              408/429/5xx, in-stream error   wrong content type
//!    │              object, first-byte timeout     ──▶ Err(..)
//!    │                   │
//!    │                   ▼
//!    │      k < max_attempts and wait < time left?  ── no ──▶ Err(that failure)
//!    │                   │ yes; wait = Retry-After if the answer had one,
//!    └── sleep(wait) ◀───┘       else jittered backoff in [d/2, d],
//!                                d = min(max_delay, base_delay·2^(k-1))
//! ```
//!
//! `Retry-After` (delay-seconds or HTTP-date) is honoured exactly; when it
//! points past the deadline, the request fails at once instead of sleeping
//! into a timeout. Jitter comes from a SplitMix64 generator seeded by
//! [`RetryPolicy::jitter_seed`]: no global randomness.
//!
//! # Circuit breaker
//!
//! Shared by all requests of one client; see [`BreakerState`]. Each attempt
//! is recorded: connect/reset/timeout/408/429/5xx/401/403/404/protocol
//! failures count against it, a request-specific 4xx (400, 413, 422, ...)
//! counts for it. An attempt that reached its first event is judged when
//! its stream ends: a clean end counts for the breaker, an `Error` event
//! against it, a stream dropped by the caller not at all.
//!
//! * `Closed` → `Open` after [`BreakerConfig::consecutive_failures`] failed
//!   attempts in a row, or when the failure share over the last
//!   `window` attempts (at least `min_samples`) reaches `failure_rate`.
//! * `Open`: `chat` fails immediately with [`CloudError::CircuitOpen`] (no
//!   connection), so the router can answer locally without delay.
//! * After `cool_down`, the next request is the single half-open probe
//!   (others still fail fast); it closes the breaker when it reaches its
//!   first event (or a request-specific 4xx), and re-opens it for a fresh
//!   cool-down when it fails.
//!
//! # Deliberately absent
//!
//! * Provider-specific APIs (Anthropic Messages, Gemini, Bedrock, Azure
//!   deployment URLs and `api-key` headers, OpenAI Responses API): only the
//!   OpenAI-compatible `chat/completions` shape.
//! * Logprobs, `refusal`, `reasoning_content` and other vendor extensions in
//!   the answer: no `ChatEvent` carries them, so they are neither requested
//!   nor surfaced.
//! * Resuming or re-issuing a stream after its first event (it would splice
//!   two different answers), and hedged/parallel requests.
//! * HTTP/2 (SSE over HTTP/1.1 works with every listed server), proxies,
//!   and redirects.
//! * Multi-endpoint load balancing or fail-over between providers: the
//!   router decides between local and one cloud endpoint.
//! * Returning a connection to the pool after `[DONE]`: the body is dropped
//!   at `[DONE]`, so the next request may open a new connection.
//!
//! # Testing
//!
//! With the `testing` feature, `testing::FaultServer` is a real HTTP/1.1
//! server on 127.0.0.1 that speaks the streaming protocol and misbehaves on
//! command; other crates' tests use it too.

mod backoff;
mod breaker;
mod client;
mod config;
mod decode;
mod encode;
mod error;
mod redact;
mod sse;
#[cfg(feature = "testing")]
pub mod testing;

pub use breaker::BreakerState;
pub use client::{CloudClient, CloudStream};
pub use config::{BreakerConfig, CloudConfig, RetryPolicy};
pub use error::{CloudError, Phase};
pub use hearth_guard::{CloudSafeRequest, Secret};
