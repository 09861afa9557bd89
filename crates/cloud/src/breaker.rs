//! The circuit breaker as a pure state machine: every method takes `now`, so
//! tests drive it through its states without sleeping.
//!
//! ```text
//!            failure: consecutive >= N, or rate over window >= R
//!   Closed ─────────────────────────────────────────────────────▶ Open
//!     ▲                                                           │
//!     │ probe succeeds                         cool-down elapsed  │
//!     │                                     (next acquire)        ▼
//!     └──────────────────────────── HalfOpen (one probe in flight)
//!                                       │ probe fails
//!                                       └──────────────▶ Open (cool-down restarts)
//! ```
//!
//! An attempt is recorded as a failure when the upstream was unreachable or
//! broken (connect, reset, timeout, 408/429/5xx, 401/403/404, protocol error,
//! mid-stream failure); a 4xx about the request itself (400, 413, 422, ...)
//! shows the endpoint is alive and counts as a success. The client records a
//! probe's success at its first event, and a normal request's streamed
//! answer when the stream ends. A probe whose caller gave up (future
//! dropped) releases the half-open slot without a verdict.

use std::collections::VecDeque;
use std::time::{Duration, Instant};

use crate::config::BreakerConfig;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum BreakerState {
    Closed,
    Open,
    HalfOpen,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Admission {
    /// Normal request while closed.
    Normal,
    /// The single half-open probe.
    Probe,
}

#[derive(Debug)]
pub(crate) struct Breaker {
    cfg: BreakerConfig,
    state: BreakerState,
    consecutive: u32,
    /// Last `cfg.window` outcomes, `true` = failure.
    window: VecDeque<bool>,
    opened_at: Option<Instant>,
    probe_in_flight: bool,
}

impl Breaker {
    pub(crate) fn new(cfg: BreakerConfig) -> Breaker {
        Breaker {
            cfg,
            state: BreakerState::Closed,
            consecutive: 0,
            window: VecDeque::new(),
            opened_at: None,
            probe_in_flight: false,
        }
    }

    /// The state as an observer sees it at `now` (an open breaker whose
    /// cool-down has elapsed reports half-open).
    pub(crate) fn state(&self, now: Instant) -> BreakerState {
        match self.state {
            BreakerState::Open if self.cool_down_over(now) => BreakerState::HalfOpen,
            s => s,
        }
    }

    fn cool_down_over(&self, now: Instant) -> bool {
        self.opened_at.is_none_or(|t| now.saturating_duration_since(t) >= self.cfg.cool_down)
    }

    /// May a request be sent now? `Err(retry_in)` when not.
    pub(crate) fn acquire(&mut self, now: Instant) -> Result<Admission, Duration> {
        if !self.cfg.enabled {
            return Ok(Admission::Normal);
        }
        match self.state {
            BreakerState::Closed => Ok(Admission::Normal),
            BreakerState::Open => {
                if self.cool_down_over(now) {
                    self.state = BreakerState::HalfOpen;
                    self.probe_in_flight = true;
                    Ok(Admission::Probe)
                } else {
                    let since = self.opened_at.map_or(Duration::ZERO, |t| now.saturating_duration_since(t));
                    Err(self.cfg.cool_down.saturating_sub(since))
                }
            }
            BreakerState::HalfOpen => {
                if self.probe_in_flight {
                    // Another probe is out; the earliest useful retry is
                    // "soon", and the caller falls back locally anyway.
                    Err(Duration::ZERO)
                } else {
                    self.probe_in_flight = true;
                    Ok(Admission::Probe)
                }
            }
        }
    }

    pub(crate) fn record(&mut self, admission: Admission, failed: bool, now: Instant) {
        if !self.cfg.enabled {
            return;
        }
        if admission == Admission::Probe && self.state == BreakerState::HalfOpen {
            self.probe_in_flight = false;
            if failed {
                self.trip(now);
            } else {
                self.close();
            }
            return;
        }
        // A normal attempt that finishes while the breaker is not closed
        // (others tripped it meanwhile) carries no information about the
        // probe, and a late success must not close an open breaker.
        if self.state != BreakerState::Closed {
            return;
        }
        self.window.push_back(failed);
        while self.window.len() > self.cfg.window as usize {
            self.window.pop_front();
        }
        if failed {
            self.consecutive = self.consecutive.saturating_add(1);
        } else {
            self.consecutive = 0;
        }
        let samples = self.window.len() as u32;
        let failures = self.window.iter().filter(|f| **f).count() as f64;
        let rate_trip = samples >= self.cfg.min_samples && failures / f64::from(samples) >= self.cfg.failure_rate;
        if failed && (self.consecutive >= self.cfg.consecutive_failures || rate_trip) {
            self.trip(now);
        }
    }

    /// A probe's caller went away before any verdict.
    pub(crate) fn abandon(&mut self, admission: Admission) {
        if admission == Admission::Probe && self.state == BreakerState::HalfOpen {
            self.probe_in_flight = false;
        }
    }

    fn trip(&mut self, now: Instant) {
        self.state = BreakerState::Open;
        self.opened_at = Some(now);
        self.probe_in_flight = false;
    }

    fn close(&mut self) {
        self.state = BreakerState::Closed;
        self.consecutive = 0;
        self.window.clear();
        self.opened_at = None;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cfg() -> BreakerConfig {
        BreakerConfig {
            enabled: true,
            consecutive_failures: 3,
            failure_rate: 0.5,
            window: 10,
            min_samples: 6,
            cool_down: Duration::from_secs(10),
        }
    }

    #[test]
    fn opens_after_consecutive_failures_and_fails_fast() {
        let t0 = Instant::now();
        let mut b = Breaker::new(cfg());
        for _ in 0..2 {
            assert_eq!(b.acquire(t0), Ok(Admission::Normal));
            b.record(Admission::Normal, true, t0);
        }
        assert_eq!(b.state(t0), BreakerState::Closed);
        b.record(Admission::Normal, true, t0);
        assert_eq!(b.state(t0), BreakerState::Open);
        let retry_in = b.acquire(t0 + Duration::from_secs(4)).unwrap_err();
        assert_eq!(retry_in, Duration::from_secs(6));
    }

    #[test]
    fn a_success_resets_the_consecutive_count() {
        let t0 = Instant::now();
        let mut b = Breaker::new(cfg());
        for i in 0..20 {
            // fail, fail, success, ...: never 3 in a row, rate 2/3 but ...
            let failed = i % 3 != 2;
            b.record(Admission::Normal, failed, t0);
            if b.state(t0) == BreakerState::Open {
                // ... the rate rule (>= 0.5 over >= 6 samples) trips it.
                assert!(i >= 5, "tripped too early at {i}");
                return;
            }
        }
        panic!("failure rate 2/3 never opened the breaker");
    }

    #[test]
    fn low_failure_rate_keeps_it_closed() {
        let t0 = Instant::now();
        let mut b = Breaker::new(cfg());
        for i in 0..100 {
            b.record(Admission::Normal, i % 4 == 0, t0);
        }
        assert_eq!(b.state(t0), BreakerState::Closed);
    }

    #[test]
    fn half_open_admits_one_probe_and_closes_on_success() {
        let t0 = Instant::now();
        let mut b = Breaker::new(cfg());
        for _ in 0..3 {
            b.record(Admission::Normal, true, t0);
        }
        let later = t0 + Duration::from_secs(10);
        assert_eq!(b.state(later), BreakerState::HalfOpen);
        assert_eq!(b.acquire(later), Ok(Admission::Probe));
        assert_eq!(b.acquire(later), Err(Duration::ZERO), "second probe refused");
        b.record(Admission::Probe, false, later);
        assert_eq!(b.state(later), BreakerState::Closed);
        assert_eq!(b.acquire(later), Ok(Admission::Normal));
    }

    #[test]
    fn failed_probe_reopens_with_a_fresh_cool_down() {
        let t0 = Instant::now();
        let mut b = Breaker::new(cfg());
        for _ in 0..3 {
            b.record(Admission::Normal, true, t0);
        }
        let t1 = t0 + Duration::from_secs(11);
        assert_eq!(b.acquire(t1), Ok(Admission::Probe));
        b.record(Admission::Probe, true, t1);
        assert_eq!(b.state(t1), BreakerState::Open);
        assert_eq!(b.acquire(t1 + Duration::from_secs(9)), Err(Duration::from_secs(1)));
        assert_eq!(b.acquire(t1 + Duration::from_secs(10)), Ok(Admission::Probe));
    }

    #[test]
    fn abandoned_probe_frees_the_slot() {
        let t0 = Instant::now();
        let mut b = Breaker::new(cfg());
        for _ in 0..3 {
            b.record(Admission::Normal, true, t0);
        }
        let t1 = t0 + Duration::from_secs(10);
        assert_eq!(b.acquire(t1), Ok(Admission::Probe));
        b.abandon(Admission::Probe);
        assert_eq!(b.acquire(t1), Ok(Admission::Probe));
    }

    #[test]
    fn late_normal_success_does_not_close_an_open_breaker() {
        let t0 = Instant::now();
        let mut b = Breaker::new(cfg());
        for _ in 0..3 {
            b.record(Admission::Normal, true, t0);
        }
        b.record(Admission::Normal, false, t0);
        assert_eq!(b.state(t0), BreakerState::Open);
    }

    #[test]
    fn disabled_breaker_admits_everything() {
        let t0 = Instant::now();
        let mut b = Breaker::new(BreakerConfig::disabled());
        for _ in 0..100 {
            b.record(Admission::Normal, true, t0);
            assert_eq!(b.acquire(t0), Ok(Admission::Normal));
        }
    }
}
