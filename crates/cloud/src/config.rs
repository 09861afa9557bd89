//! Configuration of the cloud client. Plain data; the lead's config layer
//! fills it (including reading the API key from the environment variable the
//! user named) and [`crate::CloudClient::new`] validates it.

use std::time::Duration;

use hearth_guard::Secret;

use crate::error::CloudError;

/// Retry policy for failures before the first byte of the answer.
#[derive(Clone, Debug, PartialEq)]
pub struct RetryPolicy {
    /// Total attempts including the first (1 = never retry).
    pub max_attempts: u32,
    /// Backoff before retry `k` (k = 1, 2, ...) is drawn from
    /// `[d/2, d]` with `d = min(max_delay, base_delay * 2^(k-1))`.
    pub base_delay: Duration,
    pub max_delay: Duration,
    /// Seed of the jitter generator (randomness is passed in, never global).
    pub jitter_seed: u64,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        RetryPolicy {
            max_attempts: 3,
            base_delay: Duration::from_millis(250),
            max_delay: Duration::from_secs(4),
            jitter_seed: 0x4845_4152_5448,
        }
    }
}

/// Circuit-breaker thresholds. See the crate docs for the state machine.
#[derive(Clone, Debug, PartialEq)]
pub struct BreakerConfig {
    /// `false` turns the breaker off (every request is attempted).
    pub enabled: bool,
    /// Open after this many consecutive failed attempts.
    pub consecutive_failures: u32,
    /// Open when, over the last `window` attempts (and at least
    /// `min_samples` of them), the share of failures reaches this (0..=1).
    pub failure_rate: f64,
    pub window: u32,
    pub min_samples: u32,
    /// How long the breaker stays open before one probe request is let
    /// through (half-open).
    pub cool_down: Duration,
}

impl Default for BreakerConfig {
    fn default() -> Self {
        BreakerConfig {
            enabled: true,
            consecutive_failures: 5,
            failure_rate: 0.5,
            window: 20,
            min_samples: 10,
            cool_down: Duration::from_secs(30),
        }
    }
}

impl BreakerConfig {
    pub fn disabled() -> BreakerConfig {
        BreakerConfig { enabled: false, ..BreakerConfig::default() }
    }
}

#[derive(Clone, Debug)]
pub struct CloudConfig {
    /// Base URL of an OpenAI-compatible API, e.g. `https://api.openai.com/v1`
    /// or `http://127.0.0.1:8000/v1`; requests go to `{base}/chat/completions`.
    pub base_url: String,
    /// Upstream model name, sent as `model` (the client's `hearth/...` model
    /// name never leaves the machine).
    pub model: String,
    /// Sent as `Authorization: Bearer ...`; `None` for keyless local servers.
    pub api_key: Option<Secret>,
    /// An offline deployment: [`crate::CloudClient::new`] refuses to build.
    pub offline: bool,
    /// One deadline per request, covering connects, retries, backoff and the
    /// whole streamed answer.
    pub deadline: Duration,
    /// TCP + TLS connect timeout of one attempt.
    pub connect_timeout: Duration,
    /// Per-attempt limit from sending the request to the first answer event;
    /// when it elapses the attempt counts as failed and may be retried within
    /// the deadline. `None`: only the deadline applies.
    pub first_byte_timeout: Option<Duration>,
    pub retry: RetryPolicy,
    pub breaker: BreakerConfig,
    /// Send `stream_options: {include_usage: true}` (some older servers
    /// reject unknown fields).
    pub send_stream_options: bool,
    /// Extra trusted root certificates (PEM), e.g. a company CA in front of a
    /// self-hosted vLLM. The system store and the Mozilla roots are trusted
    /// in any case.
    pub extra_root_certs_pem: Vec<Vec<u8>>,
    /// Upper bound on the bytes of one response body (hostile or broken
    /// upstreams cannot exhaust memory).
    pub max_response_bytes: usize,
}

impl CloudConfig {
    pub fn new(base_url: impl Into<String>, model: impl Into<String>) -> CloudConfig {
        CloudConfig {
            base_url: base_url.into(),
            model: model.into(),
            api_key: None,
            offline: false,
            deadline: Duration::from_secs(120),
            connect_timeout: Duration::from_secs(10),
            first_byte_timeout: None,
            retry: RetryPolicy::default(),
            breaker: BreakerConfig::default(),
            send_stream_options: true,
            extra_root_certs_pem: Vec::new(),
            max_response_bytes: 32 << 20,
        }
    }

    /// Checks everything `CloudClient::new` relies on; returns the
    /// `{base}/chat/completions` URL.
    pub(crate) fn validate(&self) -> Result<reqwest::Url, CloudError> {
        if self.offline {
            return Err(CloudError::Offline);
        }
        let bad = |m: String| Err(CloudError::Config(m));
        if self.model.trim().is_empty() {
            return bad("model name is empty".into());
        }
        if self.deadline.is_zero() {
            return bad("deadline must be positive".into());
        }
        if self.connect_timeout.is_zero() {
            return bad("connect timeout must be positive".into());
        }
        if self.first_byte_timeout.is_some_and(|t| t.is_zero()) {
            return bad("first-byte timeout must be positive".into());
        }
        if self.retry.max_attempts == 0 {
            return bad("retry.max_attempts must be at least 1".into());
        }
        if self.retry.base_delay > self.retry.max_delay {
            return bad("retry.base_delay exceeds retry.max_delay".into());
        }
        let b = &self.breaker;
        if b.enabled {
            if b.consecutive_failures == 0 {
                return bad("breaker.consecutive_failures must be at least 1".into());
            }
            if !(b.failure_rate > 0.0 && b.failure_rate <= 1.0) {
                return bad("breaker.failure_rate must be in (0, 1]".into());
            }
            if b.window == 0 || b.min_samples == 0 || b.min_samples > b.window {
                return bad("breaker needs 0 < min_samples <= window".into());
            }
        }
        if self.max_response_bytes < 1024 {
            return bad("max_response_bytes below 1 KiB".into());
        }
        if let Some(k) = &self.api_key {
            // A header value must be visible ASCII; say so without echoing it.
            if k.expose().is_empty() || !k.expose().bytes().all(|c| (0x21..0x7f).contains(&c)) {
                return bad("API key is empty or contains characters not allowed in an HTTP header".into());
            }
        }
        // The base URL is configuration, not a secret, but it must not carry
        // credentials (they belong in `api_key`, which is never logged).
        let url = match reqwest::Url::parse(self.base_url.trim()) {
            Ok(u) => u,
            Err(e) => return bad(format!("base URL does not parse: {e}")),
        };
        if url.scheme() != "http" && url.scheme() != "https" {
            return bad(format!("base URL scheme must be http or https, not {:?}", url.scheme()));
        }
        if !url.username().is_empty() || url.password().is_some() {
            return bad("base URL must not contain credentials; use the API key setting".into());
        }
        if url.host_str().is_none_or(str::is_empty) {
            return bad("base URL has no host".into());
        }
        if url.query().is_some() || url.fragment().is_some() {
            return bad("base URL must not have a query or fragment".into());
        }
        let path = url.path().trim_end_matches('/');
        let mut endpoint = url.clone();
        endpoint.set_path(&format!("{path}/chat/completions"));
        Ok(endpoint)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn endpoint_is_base_plus_chat_completions() {
        let u = CloudConfig::new("https://api.example.com/v1/", "m").validate().unwrap();
        assert_eq!(u.as_str(), "https://api.example.com/v1/chat/completions");
        let u = CloudConfig::new("http://127.0.0.1:8080", "m").validate().unwrap();
        assert_eq!(u.as_str(), "http://127.0.0.1:8080/chat/completions");
    }

    #[test]
    fn offline_refuses() {
        let mut c = CloudConfig::new("https://api.example.com/v1", "m");
        c.offline = true;
        assert_eq!(c.validate(), Err(CloudError::Offline));
    }

    #[test]
    fn rejects_bad_settings_without_echoing_the_key() {
        let base = CloudConfig::new("https://api.example.com/v1", "m");
        type Edit = Box<dyn Fn(&mut CloudConfig)>;
        let cases: Vec<Edit> = vec![
            Box::new(|c| c.base_url = "ftp://x/v1".into()),
            Box::new(|c| c.base_url = "https://user:pw@x/v1".into()),
            Box::new(|c| c.base_url = "not a url".into()),
            Box::new(|c| c.base_url = "https://x/v1?key=1".into()),
            Box::new(|c| c.model = " ".into()),
            Box::new(|c| c.deadline = Duration::ZERO),
            Box::new(|c| c.retry.max_attempts = 0),
            Box::new(|c| c.breaker.failure_rate = 1.5),
            Box::new(|c| c.breaker.min_samples = 100),
            Box::new(|c| c.api_key = Some(Secret::new("sk-canary with space"))),
        ];
        for (i, f) in cases.iter().enumerate() {
            let mut c = base.clone();
            f(&mut c);
            match c.validate() {
                Err(CloudError::Config(m)) => assert!(!m.contains("canary"), "case {i}: {m}"),
                other => panic!("case {i}: expected Config error, got {other:?}"),
            }
        }
    }
}
