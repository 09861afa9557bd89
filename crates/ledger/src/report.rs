//! The summary `hearth report` prints: volumes, latency, cost and savings.
//!
//! # Definitions
//! - **requests**: ledger rows in the window (one per request; a cascade is
//!   one request).
//! - **local share**: rows whose answer came from the local route / all rows.
//! - **latency and TTFT percentiles**: per route, over the *successful* rows
//!   only (a 1 ms validation error or a 30 s timeout is not the latency of an
//!   answer; failures are counted separately, by kind). TTFT uses the
//!   successful rows that recorded one. Both are client-observed, so a
//!   cascade's latency includes its abandoned local attempt.
//! - **percentile method**: nearest rank, exactly, over all selected values:
//!   sort ascending, the p-th percentile is the value at 1-based rank
//!   `ceil(p/100 * n)` (so p50 of 1..=20 is 10, p95 is 19, and every
//!   reported value is one that was observed). No interpolation, no sketch.
//! - **cost, all-cloud cost, savings**: sums over the *priced* rows, those
//!   with both a cost and a counterfactual (`unpriced_requests` counts the
//!   rest; a missing price is a configuration gap and the report says so
//!   rather than counting it as free). Savings = all-cloud cost − cost; it
//!   is negative when cascades spend more than they save. Savings % is
//!   savings / all-cloud cost.
//! - The counterfactual prices the *answer's* token counts on the cloud
//!   model. For locally answered rows those counts come from the local
//!   tokenizer, so the all-cloud figure is an estimate (typically within a
//!   few percent for similar vocabularies); it is labelled as such.
//!
//! Deliberately absent: per-model or per-reason cost breakdowns beyond
//! reason counts, time series, and anything computed from text.

use std::collections::BTreeMap;
use std::fmt::Write as _;

use chrono::{DateTime, Duration, NaiveDate, SecondsFormat, Utc};
use hearth_api::Route;
use serde::{Serialize, Serializer};

use crate::error::LedgerError;
use crate::prices::PicoUsd;
use crate::rows::{reasons_from_db, route_from_db, ts_from_db, u32_from_db, RawRequest};

fn usd<S: Serializer>(v: &PicoUsd, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_f64(v.usd_f64())
}

/// Nearest-rank p50 and p95 of a set of millisecond values.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
pub struct Percentiles {
    pub samples: u64,
    pub p50: u32,
    pub p95: u32,
}

/// The nearest-rank percentile of sorted values: the value at 1-based rank
/// `ceil(p * n / 100)` (rank 1 for p = 0). `None` for no values or p > 100.
pub fn nearest_rank(sorted: &[u32], p: u32) -> Option<u32> {
    if sorted.is_empty() || p > 100 {
        return None;
    }
    let n = sorted.len() as u64;
    // Integer ceiling: exact, no float rounding at rank boundaries.
    let rank = (u64::from(p) * n).div_ceil(100).max(1);
    sorted.get(usize::try_from(rank - 1).ok()?).copied()
}

impl Percentiles {
    /// Sorts `values` in place.
    pub fn of(values: &mut [u32]) -> Option<Percentiles> {
        values.sort_unstable();
        Some(Percentiles { samples: values.len() as u64, p50: nearest_rank(values, 50)?, p95: nearest_rank(values, 95)? })
    }
}

/// What one route did in the window.
#[derive(Clone, Debug, Default, PartialEq, Serialize)]
pub struct RouteStats {
    pub requests: u64,
    pub ok: u64,
    pub errors: u64,
    pub tokens_in: u64,
    pub tokens_out: u64,
    /// Total latency of successful rows.
    pub latency_ms: Option<Percentiles>,
    /// Time to first token of successful rows that recorded one.
    pub ttft_ms: Option<Percentiles>,
    /// Cost of this route's priced rows.
    #[serde(rename = "cost_usd", serialize_with = "usd")]
    pub cost: PicoUsd,
}

/// The ledger summarised over a time window. Serialises to the JSON that
/// `hearth report --json` prints (money as USD floats; the exact pico-dollar
/// integers are the Rust fields).
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Report {
    /// Window start (inclusive), if bounded.
    pub since: Option<DateTime<Utc>>,
    /// Window end (exclusive), if bounded.
    pub until: Option<DateTime<Utc>>,
    /// Earliest and latest request timestamps seen.
    pub first: Option<DateTime<Utc>>,
    pub last: Option<DateTime<Utc>>,
    pub requests: u64,
    /// local requests / requests; `None` for an empty window.
    pub local_share: Option<f64>,
    pub local: RouteStats,
    pub cloud: RouteStats,
    /// Sum of costs over priced rows.
    #[serde(rename = "cost_usd", serialize_with = "usd")]
    pub cost: PicoUsd,
    /// What the priced rows would have cost all on the cloud model (an
    /// estimate for local rows; see the module docs).
    #[serde(rename = "all_cloud_cost_usd", serialize_with = "usd")]
    pub all_cloud_cost: PicoUsd,
    /// all_cloud_cost − cost.
    #[serde(rename = "savings_usd", serialize_with = "usd")]
    pub savings: PicoUsd,
    /// savings / all_cloud_cost × 100; `None` when all_cloud_cost is 0.
    pub savings_pct: Option<f64>,
    pub priced_requests: u64,
    pub unpriced_requests: u64,
    /// Failed requests by error kind.
    pub errors: BTreeMap<String, u64>,
    /// Requests that took more than one attempt.
    pub cascades: u64,
    /// How often each reason code occurred.
    pub reasons: BTreeMap<String, u64>,
}

#[derive(Default)]
struct RouteAcc {
    stats: RouteStats,
    latency: Vec<u32>,
    ttft: Vec<u32>,
}

/// Folds rows into a [`Report`] one at a time, so a backend can stream rows
/// instead of collecting records. Memory: two `u32` per row for the exact
/// percentiles.
pub(crate) struct ReportBuilder {
    since: Option<DateTime<Utc>>,
    until: Option<DateTime<Utc>>,
    first_us: Option<i64>,
    last_us: Option<i64>,
    requests: u64,
    local: RouteAcc,
    cloud: RouteAcc,
    cost: i128,
    all_cloud: i128,
    priced: u64,
    unpriced: u64,
    errors: BTreeMap<String, u64>,
    cascades: u64,
    reasons: BTreeMap<String, u64>,
}

impl ReportBuilder {
    pub(crate) fn new(since: Option<DateTime<Utc>>, until: Option<DateTime<Utc>>) -> ReportBuilder {
        ReportBuilder {
            since,
            until,
            first_us: None,
            last_us: None,
            requests: 0,
            local: RouteAcc::default(),
            cloud: RouteAcc::default(),
            cost: 0,
            all_cloud: 0,
            priced: 0,
            unpriced: 0,
            errors: BTreeMap::new(),
            cascades: 0,
            reasons: BTreeMap::new(),
        }
    }

    /// Adds one stored row, checking it as strictly as a read-back record.
    pub(crate) fn add(&mut self, r: &RawRequest) -> Result<(), LedgerError> {
        let id = r.request_id.as_str();
        ts_from_db(id, r.ts_us)?;
        let route = route_from_db(id, &r.route)?;
        let tokens_in = u32_from_db(id, "tokens_in", r.tokens_in)?;
        let tokens_out = u32_from_db(id, "tokens_out", r.tokens_out)?;
        let total_ms = u32_from_db(id, "total_ms", r.total_ms)?;
        let ttft_ms = r.ttft_ms.map(|v| u32_from_db(id, "ttft_ms", v)).transpose()?;
        let reasons = reasons_from_db(id, &r.reasons)?;
        for c in [r.cost_pusd, r.all_cloud_cost_pusd].into_iter().flatten() {
            if c < 0 {
                return Err(LedgerError::corrupt(id, "negative cost"));
            }
        }

        self.requests += 1;
        self.first_us = Some(self.first_us.map_or(r.ts_us, |f| f.min(r.ts_us)));
        self.last_us = Some(self.last_us.map_or(r.ts_us, |l| l.max(r.ts_us)));
        if r.n_attempts > 1 {
            self.cascades += 1;
        }
        for c in reasons {
            *self.reasons.entry(c.as_str().to_owned()).or_default() += 1;
        }
        let acc = match route {
            Route::Local => &mut self.local,
            Route::Cloud => &mut self.cloud,
        };
        acc.stats.requests += 1;
        acc.stats.tokens_in += u64::from(tokens_in);
        acc.stats.tokens_out += u64::from(tokens_out);
        match &r.error_kind {
            None => {
                acc.stats.ok += 1;
                acc.latency.push(total_ms);
                if let Some(t) = ttft_ms {
                    acc.ttft.push(t);
                }
            }
            Some(kind) => {
                acc.stats.errors += 1;
                *self.errors.entry(kind.clone()).or_default() += 1;
            }
        }
        match (r.cost_pusd, r.all_cloud_cost_pusd) {
            (Some(c), Some(cf)) => {
                self.priced += 1;
                self.cost += i128::from(c);
                self.all_cloud += i128::from(cf);
                acc.stats.cost.0 += i128::from(c);
            }
            _ => self.unpriced += 1,
        }
        Ok(())
    }

    pub(crate) fn finish(self) -> Report {
        let finish_route = |mut a: RouteAcc| {
            a.stats.latency_ms = Percentiles::of(&mut a.latency);
            a.stats.ttft_ms = Percentiles::of(&mut a.ttft);
            a.stats
        };
        let local = finish_route(self.local);
        let cloud = finish_route(self.cloud);
        let savings = self.all_cloud - self.cost;
        Report {
            since: self.since,
            until: self.until,
            first: self.first_us.and_then(DateTime::from_timestamp_micros),
            last: self.last_us.and_then(DateTime::from_timestamp_micros),
            requests: self.requests,
            local_share: (self.requests > 0).then(|| local.requests as f64 / self.requests as f64),
            local,
            cloud,
            cost: PicoUsd(self.cost),
            all_cloud_cost: PicoUsd(self.all_cloud),
            savings: PicoUsd(savings),
            savings_pct: (self.all_cloud != 0).then(|| savings as f64 / self.all_cloud as f64 * 100.0),
            priced_requests: self.priced,
            unpriced_requests: self.unpriced,
            errors: self.errors,
            cascades: self.cascades,
            reasons: self.reasons,
        }
    }
}

fn fmt_time(t: Option<DateTime<Utc>>, none: &str) -> String {
    t.map_or_else(|| none.to_owned(), |t| t.to_rfc3339_opts(SecondsFormat::Secs, true))
}

fn pct(v: Option<f64>) -> String {
    v.map_or_else(|| "-".to_owned(), |v| format!("{v:.1}%"))
}

impl Report {
    /// The JSON form (`hearth report --json`).
    pub fn to_json(&self) -> serde_json::Value {
        // Serialising plain numbers, strings and maps with string keys
        // cannot fail.
        serde_json::to_value(self).unwrap_or(serde_json::Value::Null)
    }

    /// The human table `hearth report` prints.
    pub fn render_table(&self) -> String {
        let mut o = String::new();
        let _ = writeln!(o, "Hearth ledger: {} .. {}", fmt_time(self.since, "beginning"), fmt_time(self.until, "now"));
        if self.requests == 0 {
            let _ = writeln!(o, "no requests recorded in this window");
            return o;
        }
        let _ = writeln!(
            o,
            "requests {}  (first {}, last {})",
            self.requests,
            fmt_time(self.first, "-"),
            fmt_time(self.last, "-")
        );
        let _ = writeln!(o, "local share {}", pct(self.local_share.map(|s| s * 100.0)));
        let _ = writeln!(o);
        let _ = writeln!(o, "{:<18}{:>14}{:>14}", "", "local", "cloud");
        let row = |o: &mut String, name: &str, f: &dyn Fn(&RouteStats) -> String| {
            let _ = writeln!(o, "{:<18}{:>14}{:>14}", name, f(&self.local), f(&self.cloud));
        };
        let p = |x: Option<Percentiles>, f: fn(Percentiles) -> u32| x.map_or_else(|| "-".to_owned(), |x| f(x).to_string());
        row(&mut o, "requests", &|s| s.requests.to_string());
        row(&mut o, "ok", &|s| s.ok.to_string());
        row(&mut o, "errors", &|s| s.errors.to_string());
        row(&mut o, "tokens in", &|s| s.tokens_in.to_string());
        row(&mut o, "tokens out", &|s| s.tokens_out.to_string());
        row(&mut o, "latency p50 ms", &|s| p(s.latency_ms, |x| x.p50));
        row(&mut o, "latency p95 ms", &|s| p(s.latency_ms, |x| x.p95));
        row(&mut o, "ttft p50 ms", &|s| p(s.ttft_ms, |x| x.p50));
        row(&mut o, "ttft p95 ms", &|s| p(s.ttft_ms, |x| x.p95));
        row(&mut o, "cost", &|s| s.cost.to_string());
        let _ = writeln!(o);
        let _ = writeln!(o, "{:<28}{:>14}", "cost", self.cost.to_string());
        let _ = writeln!(o, "{:<28}{:>14}", "all-cloud cost (estimate)", self.all_cloud_cost.to_string());
        let _ = writeln!(o, "{:<28}{:>14}  ({})", "savings", self.savings.to_string(), pct(self.savings_pct));
        if self.unpriced_requests > 0 {
            let _ = writeln!(
                o,
                "note: {} of {} requests have no price (cloud model or all_cloud_model missing from [ledger.prices]) and are left out of the money figures",
                self.unpriced_requests, self.requests
            );
        }
        if self.cascades > 0 {
            let _ = writeln!(o, "cascades (more than one attempt): {}", self.cascades);
        }
        if !self.errors.is_empty() {
            let list: Vec<String> = self.errors.iter().map(|(k, v)| format!("{k} {v}")).collect();
            let _ = writeln!(o, "errors: {}", list.join(", "));
        }
        if !self.reasons.is_empty() {
            let list: Vec<String> = self.reasons.iter().map(|(k, v)| format!("{k} {v}")).collect();
            let _ = writeln!(o, "reasons: {}", list.join(", "));
        }
        o
    }
}

/// Parses a `--since` value: a duration back from `now` (`90s`, `30m`,
/// `24h`, `7d`, `2w`), an RFC 3339 time (`2026-05-01T12:00:00Z`), or a date
/// (`2026-05-01`, meaning its UTC midnight).
pub fn parse_since(s: &str, now: DateTime<Utc>) -> Result<DateTime<Utc>, LedgerError> {
    let bad = |reason: &str| LedgerError::InvalidTime { input: s.to_owned(), reason: reason.to_owned() };
    let t = s.trim();
    if let Ok(dt) = DateTime::parse_from_rfc3339(t) {
        return Ok(dt.with_timezone(&Utc));
    }
    if let Ok(d) = NaiveDate::parse_from_str(t, "%Y-%m-%d") {
        return d.and_hms_opt(0, 0, 0).map(|n| n.and_utc()).ok_or_else(|| bad("invalid date"));
    }
    let split = t.find(|c: char| !c.is_ascii_digit()).ok_or_else(|| bad("a duration needs a unit: s, m, h, d or w"))?;
    let (num, unit) = t.split_at(split);
    let n: i64 = num.parse().map_err(|_| bad("expected a number before the unit, an RFC 3339 time, or YYYY-MM-DD"))?;
    let secs_per = match unit {
        "s" => 1,
        "m" => 60,
        "h" => 3600,
        "d" => 86_400,
        "w" => 7 * 86_400,
        _ => return Err(bad("unit must be s, m, h, d or w")),
    };
    let secs = n.checked_mul(secs_per).ok_or_else(|| bad("too long"))?;
    let d = Duration::try_seconds(secs).ok_or_else(|| bad("too long"))?;
    now.checked_sub_signed(d).ok_or_else(|| bad("too long"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn raw(id: &str, route: &str, total_ms: i64, err: Option<&str>) -> RawRequest {
        RawRequest {
            request_id: id.into(),
            ts_us: 1_767_225_600_000_000,
            route: route.into(),
            reasons: String::new(),
            model: "m".into(),
            tokens_in: 10,
            tokens_out: 5,
            ttft_ms: Some(total_ms / 10),
            total_ms,
            error_kind: err.map(str::to_owned),
            cost_pusd: Some(1),
            all_cloud_cost_pusd: Some(3),
            n_attempts: 0,
        }
    }

    #[test]
    fn nearest_rank_exact() {
        let v: Vec<u32> = (1..=20).collect();
        assert_eq!(nearest_rank(&v, 50), Some(10));
        assert_eq!(nearest_rank(&v, 95), Some(19));
        assert_eq!(nearest_rank(&v, 100), Some(20));
        assert_eq!(nearest_rank(&v, 0), Some(1));
        assert_eq!(nearest_rank(&[7], 95), Some(7));
        // n = 21: p95 rank = ceil(19.95) = 20; p50 rank = ceil(10.5) = 11.
        let v: Vec<u32> = (1..=21).collect();
        assert_eq!(nearest_rank(&v, 95), Some(20));
        assert_eq!(nearest_rank(&v, 50), Some(11));
        // n = 100: rank boundaries land exactly, no float fuzz.
        let v: Vec<u32> = (1..=100).collect();
        assert_eq!(nearest_rank(&v, 95), Some(95));
        assert_eq!(nearest_rank(&[], 50), None);
        assert_eq!(nearest_rank(&v, 101), None);
        let mut shuffled = vec![5, 1, 4, 2, 3];
        assert_eq!(Percentiles::of(&mut shuffled), Some(Percentiles { samples: 5, p50: 3, p95: 5 }));
    }

    #[test]
    fn builder_counts_and_sums() {
        let mut b = ReportBuilder::new(None, None);
        for i in 1..=20 {
            b.add(&raw(&format!("l{i}"), "local", i * 10, None)).unwrap();
        }
        b.add(&raw("e1", "local", 30_000, Some("timeout"))).unwrap();
        b.add(&raw("c1", "cloud", 1000, None)).unwrap();
        let mut unpriced = raw("c2", "cloud", 2000, Some("upstream_5xx"));
        unpriced.cost_pusd = None;
        b.add(&unpriced).unwrap();
        let r = b.finish();
        assert_eq!(r.requests, 23);
        assert_eq!(r.local.requests, 21);
        assert_eq!(r.local.ok, 20);
        assert_eq!(r.local.latency_ms, Some(Percentiles { samples: 20, p50: 100, p95: 190 }), "the timeout is excluded");
        assert_eq!(r.local.ttft_ms, Some(Percentiles { samples: 20, p50: 10, p95: 19 }));
        assert_eq!(r.cloud.latency_ms, Some(Percentiles { samples: 1, p50: 1000, p95: 1000 }));
        assert_eq!(r.local.tokens_in, 210);
        assert_eq!(r.priced_requests, 22);
        assert_eq!(r.unpriced_requests, 1);
        assert_eq!(r.cost, PicoUsd(22));
        assert_eq!(r.all_cloud_cost, PicoUsd(66));
        assert_eq!(r.savings, PicoUsd(44));
        assert_eq!(r.local.cost, PicoUsd(21));
        assert_eq!(r.cloud.cost, PicoUsd(1));
        assert_eq!(r.errors.get("timeout"), Some(&1));
        assert_eq!(r.errors.get("upstream_5xx"), Some(&1));
        assert_eq!(r.local_share, Some(21.0 / 23.0));
        let pct = r.savings_pct.unwrap();
        assert!((pct - 44.0 / 66.0 * 100.0).abs() < 1e-9);
    }

    #[test]
    fn builder_rejects_corrupt_rows() {
        let mut b = ReportBuilder::new(None, None);
        let mut r = raw("x", "satellite", 1, None);
        assert!(matches!(b.add(&r), Err(LedgerError::CorruptRow { .. })));
        r.route = "local".into();
        r.total_ms = -1;
        assert!(b.add(&r).is_err());
        r.total_ms = 1;
        r.cost_pusd = Some(-5);
        assert!(b.add(&r).is_err());
        r.cost_pusd = Some(5);
        r.reasons = "ok two\u{7}words".into();
        assert!(b.add(&r).is_err());
        assert_eq!(b.finish().requests, 0, "rejected rows are not half-counted");
    }

    #[test]
    fn empty_report() {
        let r = ReportBuilder::new(None, None).finish();
        assert_eq!(r.requests, 0);
        assert_eq!(r.local_share, None);
        assert_eq!(r.savings_pct, None);
        assert!(r.render_table().contains("no requests"));
        assert_eq!(r.to_json()["requests"], 0);
    }

    #[test]
    fn since_parsing() {
        let now = DateTime::parse_from_rfc3339("2026-05-10T12:00:00Z").unwrap().with_timezone(&Utc);
        let at = |s: &str| parse_since(s, now).unwrap().to_rfc3339_opts(SecondsFormat::Secs, true);
        assert_eq!(at("24h"), "2026-05-09T12:00:00Z");
        assert_eq!(at("7d"), "2026-05-03T12:00:00Z");
        assert_eq!(at("2w"), "2026-04-26T12:00:00Z");
        assert_eq!(at("90s"), "2026-05-10T11:58:30Z");
        assert_eq!(at("30m"), "2026-05-10T11:30:00Z");
        assert_eq!(at("2026-05-01"), "2026-05-01T00:00:00Z");
        assert_eq!(at("2026-05-01T08:00:00+02:00"), "2026-05-01T06:00:00Z");
        for bad in ["", "24", "h", "3y", "-1d", "99999999999999999999d", "2026-13-01", "yesterday"] {
            assert!(matches!(parse_since(bad, now), Err(LedgerError::InvalidTime { .. })), "{bad:?}");
        }
    }
}
