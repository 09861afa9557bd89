//! Rows as the databases return them, and their checked conversion into
//! records. Both backends map their rows into these plain structs so that
//! validation (a stored row is as untrusted as any file) is written once.

use std::collections::HashMap;

use chrono::{DateTime, Utc};
use hearth_api::{Route, Usage};

use crate::error::LedgerError;
use crate::prices::PicoUsd;
use crate::record::{Attempt, ErrorKind, LedgerRecord, ModelName, ReasonCode, RequestId};

/// The columns of `ledger_request`, in the order every SELECT lists them.
pub(crate) const REQUEST_COLUMNS: &str = "request_id, ts_us, route, reasons, model, tokens_in, tokens_out, \
     ttft_ms, total_ms, error_kind, cost_pusd, all_cloud_cost_pusd, n_attempts";

/// The columns of `ledger_attempt`, in the order every SELECT lists them.
pub(crate) const ATTEMPT_COLUMNS: &str =
    "request_id, seq, route, model, tokens_in, tokens_out, ttft_ms, total_ms, error_kind, cost_pusd";

#[derive(Clone, Debug)]
pub(crate) struct RawRequest {
    pub request_id: String,
    pub ts_us: i64,
    pub route: String,
    pub reasons: String,
    pub model: String,
    pub tokens_in: i64,
    pub tokens_out: i64,
    pub ttft_ms: Option<i64>,
    pub total_ms: i64,
    pub error_kind: Option<String>,
    pub cost_pusd: Option<i64>,
    pub all_cloud_cost_pusd: Option<i64>,
    pub n_attempts: i64,
}

#[derive(Clone, Debug)]
pub(crate) struct RawAttempt {
    pub request_id: String,
    pub seq: i64,
    pub route: String,
    pub model: String,
    pub tokens_in: i64,
    pub tokens_out: i64,
    pub ttft_ms: Option<i64>,
    pub total_ms: i64,
    pub error_kind: Option<String>,
    pub cost_pusd: Option<i64>,
}

pub(crate) fn route_from_db(id: &str, s: &str) -> Result<Route, LedgerError> {
    match s {
        "local" => Ok(Route::Local),
        "cloud" => Ok(Route::Cloud),
        _ => Err(LedgerError::corrupt(id, "route is neither 'local' nor 'cloud'")),
    }
}

pub(crate) fn u32_from_db(id: &str, what: &str, v: i64) -> Result<u32, LedgerError> {
    u32::try_from(v).map_err(|_| LedgerError::corrupt(id, format!("{what} = {v} is out of range")))
}

fn cost_from_db(id: &str, v: Option<i64>) -> Result<Option<PicoUsd>, LedgerError> {
    match v {
        Some(c) if c < 0 => Err(LedgerError::corrupt(id, "negative cost")),
        Some(c) => Ok(Some(PicoUsd(i128::from(c)))),
        None => Ok(None),
    }
}

fn field<T>(id: &str, r: Result<T, LedgerError>) -> Result<T, LedgerError> {
    r.map_err(|e| LedgerError::corrupt(id, e.to_string()))
}

pub(crate) fn ts_from_db(id: &str, ts_us: i64) -> Result<DateTime<Utc>, LedgerError> {
    DateTime::from_timestamp_micros(ts_us).ok_or_else(|| LedgerError::corrupt(id, "timestamp out of range"))
}

pub(crate) fn ts_to_db(t: DateTime<Utc>) -> i64 {
    t.timestamp_micros()
}

/// Reason codes are stored space-separated: the code alphabet has no space.
pub(crate) fn reasons_to_db(r: &[ReasonCode]) -> String {
    let v: Vec<&str> = r.iter().map(ReasonCode::as_str).collect();
    v.join(" ")
}

pub(crate) fn reasons_from_db(id: &str, s: &str) -> Result<Vec<ReasonCode>, LedgerError> {
    s.split(' ').filter(|c| !c.is_empty()).map(|c| field(id, ReasonCode::new(c))).collect()
}

impl RawAttempt {
    fn into_attempt(self) -> Result<Attempt, LedgerError> {
        let id = self.request_id.as_str();
        Ok(Attempt {
            route: route_from_db(id, &self.route)?,
            model: field(id, ModelName::new(self.model.clone()))?,
            usage: Usage {
                prompt_tokens: u32_from_db(id, "attempt tokens_in", self.tokens_in)?,
                completion_tokens: u32_from_db(id, "attempt tokens_out", self.tokens_out)?,
            },
            ttft_ms: self.ttft_ms.map(|v| u32_from_db(id, "attempt ttft_ms", v)).transpose()?,
            total_ms: u32_from_db(id, "attempt total_ms", self.total_ms)?,
            error: self.error_kind.map(|k| field(id, ErrorKind::new(k))).transpose()?,
            cost: cost_from_db(id, self.cost_pusd)?,
        })
    }
}

impl RawRequest {
    pub(crate) fn into_record(self, attempts: Vec<RawAttempt>) -> Result<LedgerRecord, LedgerError> {
        let id = self.request_id.clone();
        let id = id.as_str();
        if usize::try_from(self.n_attempts).ok() != Some(attempts.len()) {
            return Err(LedgerError::corrupt(
                id,
                format!("n_attempts = {} but {} attempt rows", self.n_attempts, attempts.len()),
            ));
        }
        let attempts = attempts.into_iter().map(RawAttempt::into_attempt).collect::<Result<Vec<_>, _>>()?;
        let rec = LedgerRecord {
            request_id: field(id, RequestId::new(self.request_id.clone()))?,
            timestamp: ts_from_db(id, self.ts_us)?,
            route: route_from_db(id, &self.route)?,
            reasons: reasons_from_db(id, &self.reasons)?,
            model: field(id, ModelName::new(self.model))?,
            usage: Usage {
                prompt_tokens: u32_from_db(id, "tokens_in", self.tokens_in)?,
                completion_tokens: u32_from_db(id, "tokens_out", self.tokens_out)?,
            },
            ttft_ms: self.ttft_ms.map(|v| u32_from_db(id, "ttft_ms", v)).transpose()?,
            total_ms: u32_from_db(id, "total_ms", self.total_ms)?,
            error: self.error_kind.map(|k| field(id, ErrorKind::new(k))).transpose()?,
            cost: cost_from_db(id, self.cost_pusd)?,
            all_cloud_cost: cost_from_db(id, self.all_cloud_cost_pusd)?,
            attempts,
        };
        field(id, rec.validate())?;
        Ok(rec)
    }
}

/// Joins request rows with their attempt rows (attempts ordered by seq).
pub(crate) fn assemble(requests: Vec<RawRequest>, attempts: Vec<RawAttempt>) -> Result<Vec<LedgerRecord>, LedgerError> {
    let mut by_id: HashMap<String, Vec<RawAttempt>> = HashMap::new();
    for a in attempts {
        by_id.entry(a.request_id.clone()).or_default().push(a);
    }
    requests
        .into_iter()
        .map(|r| {
            let mut atts = by_id.remove(&r.request_id).unwrap_or_default();
            atts.sort_by_key(|a| a.seq);
            if atts.iter().enumerate().any(|(i, a)| a.seq != i as i64) {
                return Err(LedgerError::corrupt(&r.request_id, "attempt seq numbers are not 0, 1, 2, ..."));
            }
            r.into_record(atts)
        })
        .collect()
}

/// The values one record writes, ready to bind.
pub(crate) struct RequestValues<'a> {
    pub request_id: &'a str,
    pub ts_us: i64,
    pub route: &'static str,
    pub reasons: String,
    pub model: &'a str,
    pub tokens_in: i64,
    pub tokens_out: i64,
    pub ttft_ms: Option<i64>,
    pub total_ms: i64,
    pub error_kind: Option<&'a str>,
    pub cost_pusd: Option<i64>,
    pub all_cloud_cost_pusd: Option<i64>,
    pub n_attempts: i64,
}

pub(crate) struct AttemptValues<'a> {
    pub seq: i64,
    pub route: &'static str,
    pub model: &'a str,
    pub tokens_in: i64,
    pub tokens_out: i64,
    pub ttft_ms: Option<i64>,
    pub total_ms: i64,
    pub error_kind: Option<&'a str>,
    pub cost_pusd: Option<i64>,
}

pub(crate) fn values(rec: &LedgerRecord) -> Result<(RequestValues<'_>, Vec<AttemptValues<'_>>), LedgerError> {
    rec.validate()?;
    let cost = |c: Option<PicoUsd>| c.map(PicoUsd::to_i64).transpose();
    let req = RequestValues {
        request_id: rec.request_id.as_str(),
        ts_us: ts_to_db(rec.timestamp),
        route: rec.route.as_str(),
        reasons: reasons_to_db(&rec.reasons),
        model: rec.model.as_str(),
        tokens_in: i64::from(rec.usage.prompt_tokens),
        tokens_out: i64::from(rec.usage.completion_tokens),
        ttft_ms: rec.ttft_ms.map(i64::from),
        total_ms: i64::from(rec.total_ms),
        error_kind: rec.error.as_ref().map(ErrorKind::as_str),
        cost_pusd: cost(rec.cost)?,
        all_cloud_cost_pusd: cost(rec.all_cloud_cost)?,
        n_attempts: rec.attempts.len() as i64,
    };
    let atts = rec
        .attempts
        .iter()
        .enumerate()
        .map(|(i, a)| {
            Ok(AttemptValues {
                seq: i as i64,
                route: a.route.as_str(),
                model: a.model.as_str(),
                tokens_in: i64::from(a.usage.prompt_tokens),
                tokens_out: i64::from(a.usage.completion_tokens),
                ttft_ms: a.ttft_ms.map(i64::from),
                total_ms: i64::from(a.total_ms),
                error_kind: a.error.as_ref().map(ErrorKind::as_str),
                cost_pusd: cost(a.cost)?,
            })
        })
        .collect::<Result<Vec<_>, LedgerError>>()?;
    Ok((req, atts))
}
