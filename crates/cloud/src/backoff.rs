//! Jittered exponential backoff and `Retry-After` parsing.

use std::time::{Duration, SystemTime};

use crate::config::RetryPolicy;

/// SplitMix64 (Steele, Lea & Flood, "Fast splittable pseudorandom number
/// generators", OOPSLA 2014): tiny, seedable, good enough for jitter.
#[derive(Clone, Debug)]
pub(crate) struct Jitter(u64);

impl Jitter {
    pub(crate) fn new(seed: u64) -> Jitter {
        Jitter(seed)
    }

    fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// Uniform in `[0, 1)` from the top 53 bits.
    fn unit(&mut self) -> f64 {
        (self.next_u64() >> 11) as f64 / (1u64 << 53) as f64
    }
}

/// Delay before retry number `retry` (1-based): "equal jitter" (AWS
/// Architecture Blog, "Exponential Backoff And Jitter", 2015) — uniform in
/// `[d/2, d]` with `d = min(max_delay, base_delay * 2^(retry-1))`, so
/// synchronized clients spread out but never retry instantly.
pub(crate) fn backoff(policy: &RetryPolicy, retry: u32, jitter: &mut Jitter) -> Duration {
    let exp = retry.saturating_sub(1).min(30);
    let d = policy.base_delay.saturating_mul(1u32 << exp).min(policy.max_delay);
    d.mul_f64(0.5 + 0.5 * jitter.unit())
}

/// `Retry-After` per RFC 9110 §10.2.3: either delay-seconds or an HTTP-date
/// (all three date formats of §5.6.7 via `httpdate`). A date in the past
/// means "now". Unparseable values are ignored (`None`).
pub(crate) fn parse_retry_after(value: &str, now: SystemTime) -> Option<Duration> {
    let v = value.trim();
    if !v.is_empty() && v.bytes().all(|b| b.is_ascii_digit()) {
        // Absurd values saturate; the deadline caps them anyway.
        return Some(Duration::from_secs(v.parse::<u64>().unwrap_or(u64::MAX / 2)));
    }
    let at = httpdate::parse_http_date(v).ok()?;
    Some(at.duration_since(now).unwrap_or(Duration::ZERO))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_grows_caps_and_stays_in_the_jitter_band() {
        let p = RetryPolicy {
            max_attempts: 10,
            base_delay: Duration::from_millis(100),
            max_delay: Duration::from_millis(1000),
            jitter_seed: 7,
        };
        let mut j = Jitter::new(p.jitter_seed);
        for retry in 1..=8u32 {
            let full = Duration::from_millis((100u64 << (retry - 1)).min(1000));
            for _ in 0..50 {
                let d = backoff(&p, retry, &mut j);
                assert!(d >= full / 2 && d <= full, "retry {retry}: {d:?} outside [{:?}, {full:?}]", full / 2);
            }
        }
    }

    #[test]
    fn jitter_is_seeded_and_actually_varies() {
        let p = RetryPolicy::default();
        let draw = |seed| {
            let mut j = Jitter::new(seed);
            (0..8).map(|_| backoff(&p, 2, &mut j)).collect::<Vec<_>>()
        };
        assert_eq!(draw(1), draw(1));
        assert_ne!(draw(1), draw(2));
        let v = draw(3);
        assert!(v.iter().any(|d| *d != v[0]));
    }

    #[test]
    fn retry_after_seconds_and_dates() {
        let now = httpdate::parse_http_date("Sun, 06 Nov 1994 08:49:37 GMT").unwrap();
        assert_eq!(parse_retry_after("120", now), Some(Duration::from_secs(120)));
        assert_eq!(parse_retry_after(" 0 ", now), Some(Duration::ZERO));
        assert_eq!(parse_retry_after("Sun, 06 Nov 1994 08:49:40 GMT", now), Some(Duration::from_secs(3)));
        // RFC 850 and asctime forms are accepted too.
        assert_eq!(parse_retry_after("Sunday, 06-Nov-94 08:49:47 GMT", now), Some(Duration::from_secs(10)));
        assert_eq!(parse_retry_after("Sun Nov  6 08:49:38 1994", now), Some(Duration::from_secs(1)));
        // Past dates mean "retry now".
        assert_eq!(parse_retry_after("Sun, 06 Nov 1994 08:00:00 GMT", now), Some(Duration::ZERO));
        assert_eq!(parse_retry_after("-5", now), None);
        assert_eq!(parse_retry_after("1.5", now), None);
        assert_eq!(parse_retry_after("soon", now), None);
        assert!(parse_retry_after("99999999999999999999999", now).is_some());
    }
}
