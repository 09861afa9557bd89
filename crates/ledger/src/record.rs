//! What one row of the ledger says about one request.
//!
//! # What is never stored
//! A record has no field that can hold prompt text, answer text, tool
//! arguments or the value of a detected entity. Every string it does hold is
//! a validated identifier: request ids are printable ASCII without spaces,
//! reason codes and error kinds are short machine strings over a restricted
//! alphabet (no spaces, so not even a two-word name fits), and model names
//! come from configuration. A privacy reason carries the entity *kind*
//! (`pii.keep_local:PERSON`), never what was found.
//!
//! # Cascades: one row per request, with an attempts list
//! A request that was tried locally and then escalated (or sent to the cloud
//! and then answered locally after a failure) is **one** row. The row
//! describes what the client saw: the route and model that produced the
//! answer, its tokens, the client's time to first token and total latency,
//! and its final status. Its `attempts` list holds each try in order with its
//! own tokens, timings, status and cost, and the row's cost is the sum of the
//! attempts' costs (the abandoned local attempt is real spend). A request
//! answered on the first try has an empty attempts list. We chose one row so
//! that "requests", "local share" and latency percentiles count requests, not
//! tries, without any de-duplication in queries.

use chrono::{DateTime, Utc};
use hearth_api::{Route, Usage};
use serde::{Deserialize, Serialize};

use crate::error::LedgerError;
use crate::prices::{PicoUsd, Prices};

/// Most attempts one request may list (a cascade is 2; fallback chains a few).
pub const MAX_ATTEMPTS: usize = 16;
/// Most reason codes one request may carry.
pub const MAX_REASONS: usize = 32;

fn is_code_char(c: char) -> bool {
    c.is_ascii_alphanumeric() || "._:<>=!+-/%@#".contains(c)
}

macro_rules! validated_string {
    ($(#[$doc:meta])* $name:ident, $field:literal, $max:expr, $check:expr, $what:literal) => {
        $(#[$doc])*
        #[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
        #[serde(try_from = "String", into = "String")]
        pub struct $name(String);

        impl $name {
            pub const MAX_LEN: usize = $max;

            pub fn new(s: impl Into<String>) -> Result<$name, LedgerError> {
                let s = s.into();
                if s.is_empty() {
                    return Err(LedgerError::invalid($field, "empty"));
                }
                if s.len() > Self::MAX_LEN {
                    return Err(LedgerError::invalid($field, format!("{} bytes, more than {}", s.len(), Self::MAX_LEN)));
                }
                let check: fn(char) -> bool = $check;
                if !s.chars().all(check) {
                    // The value itself is not echoed: if a caller mistakenly
                    // passed user text here, the error must not leak it into logs.
                    return Err(LedgerError::invalid($field, concat!("may only contain ", $what)));
                }
                Ok($name(s))
            }

            pub fn as_str(&self) -> &str {
                &self.0
            }
        }

        impl TryFrom<String> for $name {
            type Error = LedgerError;
            fn try_from(s: String) -> Result<Self, LedgerError> {
                $name::new(s)
            }
        }

        impl From<$name> for String {
            fn from(v: $name) -> String {
                v.0
            }
        }

        impl std::fmt::Display for $name {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str(&self.0)
            }
        }
    };
}

validated_string!(
    /// The server's id for a request (unique per ledger): 1–128 printable
    /// ASCII characters, no spaces.
    RequestId, "request id", 128, |c| c.is_ascii_graphic(), "printable ASCII without spaces"
);
validated_string!(
    /// Why a request went where it went: a short machine string such as
    /// `router.score<0.42`, `pii.keep_local:PERSON`, `cloud.fallback:timeout`,
    /// `cascade.escalated`. 1–64 characters of `[A-Za-z0-9._:<>=!+-/%@#]`.
    ReasonCode, "reason code", 64, is_code_char, "letters, digits and ._:<>=!+-/%@#"
);
validated_string!(
    /// What kind of failure ended a request or an attempt (`timeout`,
    /// `upstream_5xx`, `cancelled`, ...): same alphabet and length as
    /// [`ReasonCode`].
    ErrorKind, "error kind", 64, is_code_char, "letters, digits and ._:<>=!+-/%@#"
);
validated_string!(
    /// A local model id or an upstream model name: 1–256 characters, no
    /// control characters.
    ModelName, "model name", 256, |c| !c.is_control(), "characters that are not control characters"
);

/// One try at answering, as measured, before pricing.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Measured {
    pub route: Route,
    pub model: ModelName,
    pub usage: Usage,
    /// Milliseconds to the first token; `None` when no token came.
    pub ttft_ms: Option<u32>,
    pub total_ms: u32,
    /// `None` when it succeeded.
    pub error: Option<ErrorKind>,
}

/// One try, priced. See the module docs for when a record lists attempts.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Attempt {
    pub route: Route,
    pub model: ModelName,
    pub usage: Usage,
    pub ttft_ms: Option<u32>,
    pub total_ms: u32,
    pub error: Option<ErrorKind>,
    /// `None` when the model has no configured price.
    pub cost: Option<PicoUsd>,
}

/// One row of the ledger: one request Hearth answered (or failed to).
///
/// Build it with [`LedgerRecord::new`] or [`LedgerRecord::with_attempts`],
/// which validate it and compute the costs from [`Prices`]; the fields are
/// public so that a stored record can be read back as plain data.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct LedgerRecord {
    pub request_id: RequestId,
    /// When the request arrived, UTC, microsecond precision (what the
    /// database stores; constructors truncate finer digits).
    pub timestamp: DateTime<Utc>,
    /// The route that produced the answer the client saw.
    pub route: Route,
    pub reasons: Vec<ReasonCode>,
    /// The model that produced the answer.
    pub model: ModelName,
    /// Tokens of the answer the client saw.
    pub usage: Usage,
    /// Client-observed time to first token, if a token was sent.
    pub ttft_ms: Option<u32>,
    /// Client-observed total latency.
    pub total_ms: u32,
    /// `None`: ok. Otherwise the kind of failure the client saw.
    pub error: Option<ErrorKind>,
    /// What the request cost: its own price, or the sum over its attempts.
    /// `None` when some model involved has no configured price.
    pub cost: Option<PicoUsd>,
    /// What the answer's tokens would have cost on the counterfactual cloud
    /// model ([`Prices::all_cloud_cost`]); `None` when that has no price.
    pub all_cloud_cost: Option<PicoUsd>,
    /// Every try, in order, when there was more than one; else empty.
    pub attempts: Vec<Attempt>,
}

pub(crate) fn truncate_to_micros(t: DateTime<Utc>) -> DateTime<Utc> {
    // Every DateTime<Utc> chrono can hold fits i64 microseconds (±292,000
    // years is beyond chrono's ±262,000), so this never falls back.
    DateTime::from_timestamp_micros(t.timestamp_micros()).unwrap_or(t)
}

impl LedgerRecord {
    /// A request answered on the first try.
    pub fn new(
        request_id: RequestId,
        timestamp: DateTime<Utc>,
        reasons: Vec<ReasonCode>,
        answer: Measured,
        prices: &Prices,
    ) -> Result<LedgerRecord, LedgerError> {
        let cost = prices.attempt_cost(answer.route, &answer.model, answer.usage);
        Self::build(request_id, timestamp, reasons, answer, cost, Vec::new(), prices)
    }

    /// A request that took several tries (cascade, fallback). `answer` is what
    /// the client saw (its route and model must be those of the last
    /// attempt); `attempts` lists every try, 2 to [`MAX_ATTEMPTS`] of them.
    pub fn with_attempts(
        request_id: RequestId,
        timestamp: DateTime<Utc>,
        reasons: Vec<ReasonCode>,
        answer: Measured,
        attempts: Vec<Measured>,
        prices: &Prices,
    ) -> Result<LedgerRecord, LedgerError> {
        if attempts.len() < 2 {
            return Err(LedgerError::AttemptMismatch(
                "an attempts list needs at least two tries; use LedgerRecord::new for one".into(),
            ));
        }
        if attempts.len() > MAX_ATTEMPTS {
            return Err(LedgerError::AttemptMismatch(format!("{} attempts, more than {MAX_ATTEMPTS}", attempts.len())));
        }
        if let Some(last) = attempts.last() {
            if last.route != answer.route || last.model != answer.model {
                return Err(LedgerError::AttemptMismatch(
                    "the last attempt's route and model must be the answer's".into(),
                ));
            }
        }
        let mut total = Some(PicoUsd::ZERO);
        let priced: Vec<Attempt> = attempts
            .into_iter()
            .map(|m| {
                let cost = prices.attempt_cost(m.route, &m.model, m.usage);
                total = match (total, cost) {
                    (Some(t), Some(c)) => t.checked_add(c),
                    _ => None,
                };
                Attempt {
                    route: m.route,
                    model: m.model,
                    usage: m.usage,
                    ttft_ms: m.ttft_ms,
                    total_ms: m.total_ms,
                    error: m.error,
                    cost,
                }
            })
            .collect();
        Self::build(request_id, timestamp, reasons, answer, total, priced, prices)
    }

    fn build(
        request_id: RequestId,
        timestamp: DateTime<Utc>,
        reasons: Vec<ReasonCode>,
        answer: Measured,
        cost: Option<PicoUsd>,
        attempts: Vec<Attempt>,
        prices: &Prices,
    ) -> Result<LedgerRecord, LedgerError> {
        let rec = LedgerRecord {
            request_id,
            timestamp: truncate_to_micros(timestamp),
            route: answer.route,
            reasons,
            all_cloud_cost: prices.all_cloud_cost(answer.usage),
            model: answer.model,
            usage: answer.usage,
            ttft_ms: answer.ttft_ms,
            total_ms: answer.total_ms,
            error: answer.error,
            cost,
            attempts,
        };
        rec.validate()?;
        Ok(rec)
    }

    /// Checks what the field types cannot: list lengths, costs that fit a
    /// row, non-negative costs. Stores call it before writing, so a record
    /// assembled by hand is held to the same rules.
    pub fn validate(&self) -> Result<(), LedgerError> {
        if self.reasons.len() > MAX_REASONS {
            return Err(LedgerError::invalid("reasons", format!("{} codes, more than {MAX_REASONS}", self.reasons.len())));
        }
        if self.attempts.len() == 1 || self.attempts.len() > MAX_ATTEMPTS {
            return Err(LedgerError::AttemptMismatch(format!(
                "{} attempts: a record lists none or 2 to {MAX_ATTEMPTS}",
                self.attempts.len()
            )));
        }
        let costs = [self.cost, self.all_cloud_cost].into_iter().chain(self.attempts.iter().map(|a| a.cost));
        for c in costs.flatten() {
            if c.0 < 0 {
                return Err(LedgerError::invalid("cost", "negative"));
            }
            c.to_i64()?;
        }
        Ok(())
    }

    pub fn is_ok(&self) -> bool {
        self.error.is_none()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::prices::{CloudPrice, UsdPerMTok};

    fn prices() -> Prices {
        let mut p = Prices { local_per_mtok: UsdPerMTok::parse("0.02").unwrap(), ..Prices::default() };
        p.cloud.insert(
            "gpt-x".into(),
            CloudPrice { input_per_mtok: UsdPerMTok::parse("2.5").unwrap(), output_per_mtok: UsdPerMTok::parse("10").unwrap() },
        );
        p
    }

    fn m(route: Route, model: &str, i: u32, o: u32) -> Measured {
        Measured {
            route,
            model: ModelName::new(model).unwrap(),
            usage: Usage { prompt_tokens: i, completion_tokens: o },
            ttft_ms: Some(10),
            total_ms: 100,
            error: None,
        }
    }

    fn t0() -> DateTime<Utc> {
        DateTime::from_timestamp(1_767_225_600, 123_456_789).unwrap()
    }

    #[test]
    fn validated_strings() {
        assert!(ReasonCode::new("router.score<0.42").is_ok());
        assert!(ReasonCode::new("pii.keep_local:PERSON").is_ok());
        assert!(ReasonCode::new("cloud.fallback:timeout").is_ok());
        assert!(ReasonCode::new("John Smith").is_err(), "spaces are not code characters");
        assert!(ReasonCode::new("").is_err());
        assert!(ReasonCode::new("a".repeat(65)).is_err());
        assert!(ReasonCode::new("naïve").is_err());
        assert!(ErrorKind::new("upstream_5xx").is_ok());
        assert!(RequestId::new("chatcmpl-9f8e").is_ok());
        assert!(RequestId::new("a b").is_err());
        assert!(ModelName::new("local/Qwen2.5 0.5B Instruct").is_ok());
        assert!(ModelName::new("bad\nname").is_err());
        // The error never echoes the rejected value.
        let e = ReasonCode::new("secret value").unwrap_err().to_string();
        assert!(!e.contains("secret"), "{e}");
        // serde goes through validation too.
        assert!(serde_json::from_str::<ReasonCode>("\"two words\"").is_err());
        assert_eq!(serde_json::from_str::<ReasonCode>("\"cascade.escalated\"").unwrap().as_str(), "cascade.escalated");
    }

    #[test]
    fn single_attempt_record_is_priced() {
        let r = LedgerRecord::new(
            RequestId::new("r1").unwrap(),
            t0(),
            vec![ReasonCode::new("router.score<0.42").unwrap()],
            m(Route::Local, "qwen", 1000, 200),
            &prices(),
        )
        .unwrap();
        assert_eq!(r.cost, Some(PicoUsd(24_000_000)));
        assert_eq!(r.all_cloud_cost, Some(PicoUsd(4_500_000_000)));
        assert_eq!(r.timestamp.timestamp_subsec_nanos(), 123_456_000, "truncated to microseconds");
        assert!(r.attempts.is_empty());
    }

    #[test]
    fn cascade_cost_is_the_sum_of_attempts() {
        let answer = m(Route::Cloud, "gpt-x", 800, 400);
        let r = LedgerRecord::with_attempts(
            RequestId::new("r2").unwrap(),
            t0(),
            vec![ReasonCode::new("cascade.escalated").unwrap()],
            answer.clone(),
            vec![m(Route::Local, "qwen", 800, 50), answer.clone()],
            &prices(),
        )
        .unwrap();
        // local 850 * 20_000 = 17e6; cloud 800*2.5e6 + 400*1e7 = 6e9
        assert_eq!(r.attempts[0].cost, Some(PicoUsd(17_000_000)));
        assert_eq!(r.attempts[1].cost, Some(PicoUsd(6_000_000_000)));
        assert_eq!(r.cost, Some(PicoUsd(6_017_000_000)));
        assert_eq!(r.all_cloud_cost, Some(PicoUsd(6_000_000_000)));

        // An unpriced attempt makes the whole request unpriced.
        let r = LedgerRecord::with_attempts(
            RequestId::new("r3").unwrap(),
            t0(),
            vec![],
            m(Route::Local, "qwen", 1, 1),
            vec![m(Route::Cloud, "mystery", 1, 1), m(Route::Local, "qwen", 1, 1)],
            &prices(),
        )
        .unwrap();
        assert_eq!(r.cost, None);
        assert_eq!(r.attempts[1].cost, Some(PicoUsd(40_000)));
    }

    #[test]
    fn attempts_must_agree_with_the_answer() {
        let id = || RequestId::new("r").unwrap();
        let one = LedgerRecord::with_attempts(id(), t0(), vec![], m(Route::Local, "q", 1, 1), vec![m(Route::Local, "q", 1, 1)], &prices());
        assert!(matches!(one, Err(LedgerError::AttemptMismatch(_))));
        let wrong_last = LedgerRecord::with_attempts(
            id(),
            t0(),
            vec![],
            m(Route::Cloud, "gpt-x", 1, 1),
            vec![m(Route::Cloud, "gpt-x", 1, 1), m(Route::Local, "q", 1, 1)],
            &prices(),
        );
        assert!(matches!(wrong_last, Err(LedgerError::AttemptMismatch(_))));
        let many = vec![m(Route::Local, "q", 1, 1); MAX_ATTEMPTS + 1];
        assert!(LedgerRecord::with_attempts(id(), t0(), vec![], m(Route::Local, "q", 1, 1), many, &prices()).is_err());
        let reasons = vec![ReasonCode::new("x").unwrap(); MAX_REASONS + 1];
        assert!(LedgerRecord::new(id(), t0(), reasons, m(Route::Local, "q", 1, 1), &prices()).is_err());
    }

    #[test]
    fn a_cost_beyond_a_row_is_refused() {
        let mut p = prices();
        p.cloud.insert(
            "huge".into(),
            CloudPrice {
                input_per_mtok: UsdPerMTok::from_micro_usd(UsdPerMTok::MAX_MICRO_USD).unwrap(),
                output_per_mtok: UsdPerMTok::ZERO,
            },
        );
        let r = LedgerRecord::new(RequestId::new("r").unwrap(), t0(), vec![], m(Route::Cloud, "huge", u32::MAX, 0), &p);
        assert!(matches!(r, Err(LedgerError::CostOverflow)));
    }
}
