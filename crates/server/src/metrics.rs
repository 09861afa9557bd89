//! Prometheus text exposition (format 0.0.4) of the server's counters.
//!
//! Requests by route and status, prompt/completion/cached token totals,
//! time-to-first-token and request-latency histograms, and the scheduler's
//! gauges (queue depth, active slots). Hand-written: a few counters do not
//! justify a metrics framework.

use std::collections::BTreeMap;
use std::fmt::Write;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;
use std::time::Duration;

/// Histogram bucket bounds in seconds.
const BUCKETS: [f64; 12] = [
    0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 120.0,
];

#[derive(Default)]
struct Histogram {
    counts: [u64; BUCKETS.len()],
    count: u64,
    sum: f64,
}

impl Histogram {
    fn observe(&mut self, secs: f64) {
        for (c, &b) in self.counts.iter_mut().zip(&BUCKETS) {
            if secs <= b {
                *c += 1;
            }
        }
        self.count += 1;
        self.sum += secs;
    }

    fn render(&self, out: &mut String, name: &str, labels: &str) {
        let sep = if labels.is_empty() { "" } else { "," };
        for (c, b) in self.counts.iter().zip(&BUCKETS) {
            let _ = writeln!(out, "{name}_bucket{{{labels}{sep}le=\"{b}\"}} {c}");
        }
        let _ = writeln!(
            out,
            "{name}_bucket{{{labels}{sep}le=\"+Inf\"}} {}",
            self.count
        );
        let braces = if labels.is_empty() {
            String::new()
        } else {
            format!("{{{labels}}}")
        };
        let _ = writeln!(out, "{name}_sum{braces} {}", self.sum);
        let _ = writeln!(out, "{name}_count{braces} {}", self.count);
    }
}

/// The server's counters.
#[derive(Default)]
pub struct Metrics {
    requests: Mutex<BTreeMap<(&'static str, u16), u64>>,
    prompt_tokens: AtomicU64,
    completion_tokens: AtomicU64,
    cached_tokens: AtomicU64,
    disconnects: AtomicU64,
    ttft: Mutex<BTreeMap<&'static str, Histogram>>,
    latency: Mutex<BTreeMap<&'static str, Histogram>>,
}

/// Gauges read at scrape time.
#[derive(Clone, Copy, Debug, Default)]
pub struct Gauges {
    pub loaded: bool,
    pub queue_depth: usize,
    pub active_slots: usize,
    pub slots: usize,
    pub steps: u64,
}

impl Metrics {
    pub fn request(&self, route: &'static str, status: u16) {
        let mut m = self.requests.lock().unwrap_or_else(|e| e.into_inner());
        *m.entry((route, status)).or_insert(0) += 1;
    }

    pub fn tokens(&self, prompt: usize, completion: usize, cached: usize) {
        self.prompt_tokens
            .fetch_add(prompt as u64, Ordering::Relaxed);
        self.completion_tokens
            .fetch_add(completion as u64, Ordering::Relaxed);
        self.cached_tokens
            .fetch_add(cached as u64, Ordering::Relaxed);
    }

    pub fn disconnect(&self) {
        self.disconnects.fetch_add(1, Ordering::Relaxed);
    }

    pub fn ttft(&self, route: &'static str, d: Duration) {
        self.ttft
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .entry(route)
            .or_default()
            .observe(d.as_secs_f64());
    }

    pub fn latency(&self, route: &'static str, d: Duration) {
        self.latency
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .entry(route)
            .or_default()
            .observe(d.as_secs_f64());
    }

    pub fn render(&self, g: Gauges) -> String {
        let mut out = String::new();
        out.push_str("# HELP hearth_requests_total HTTP requests by route and status.\n# TYPE hearth_requests_total counter\n");
        for ((route, status), n) in self
            .requests
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .iter()
        {
            let _ = writeln!(
                out,
                "hearth_requests_total{{route=\"{route}\",status=\"{status}\"}} {n}"
            );
        }
        for (name, help, v) in [
            (
                "hearth_prompt_tokens_total",
                "Prompt tokens of finished requests.",
                &self.prompt_tokens,
            ),
            (
                "hearth_completion_tokens_total",
                "Completion tokens of finished requests.",
                &self.completion_tokens,
            ),
            (
                "hearth_prompt_cached_tokens_total",
                "Prompt tokens served from a slot's KV cache.",
                &self.cached_tokens,
            ),
            (
                "hearth_client_disconnects_total",
                "Streams whose client went away before the end.",
                &self.disconnects,
            ),
        ] {
            let _ = writeln!(
                out,
                "# HELP {name} {help}\n# TYPE {name} counter\n{name} {}",
                v.load(Ordering::Relaxed)
            );
        }
        out.push_str("# HELP hearth_time_to_first_token_seconds Time from request to first generated text.\n# TYPE hearth_time_to_first_token_seconds histogram\n");
        for (route, h) in self.ttft.lock().unwrap_or_else(|e| e.into_inner()).iter() {
            h.render(
                &mut out,
                "hearth_time_to_first_token_seconds",
                &format!("route=\"{route}\""),
            );
        }
        out.push_str("# HELP hearth_request_duration_seconds Time from request to the end of the answer.\n# TYPE hearth_request_duration_seconds histogram\n");
        for (route, h) in self
            .latency
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .iter()
        {
            h.render(
                &mut out,
                "hearth_request_duration_seconds",
                &format!("route=\"{route}\""),
            );
        }
        for (name, help, v) in [
            (
                "hearth_model_loaded",
                "1 once the model is loaded.",
                g.loaded as u64,
            ),
            (
                "hearth_queue_depth",
                "Requests waiting for a slot.",
                g.queue_depth as u64,
            ),
            (
                "hearth_active_slots",
                "Slots generating or reading a prompt.",
                g.active_slots as u64,
            ),
            (
                "hearth_slots",
                "Configured slots (--parallel).",
                g.slots as u64,
            ),
        ] {
            let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} gauge\n{name} {v}");
        }
        let _ = writeln!(out, "# HELP hearth_engine_steps_total Batched forward passes.\n# TYPE hearth_engine_steps_total counter\nhearth_engine_steps_total {}", g.steps);
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn histogram_buckets_are_cumulative() {
        let m = Metrics::default();
        m.ttft("/v1/chat/completions", Duration::from_millis(30));
        m.ttft("/v1/chat/completions", Duration::from_secs(3));
        let text = m.render(Gauges::default());
        assert!(text.contains("hearth_time_to_first_token_seconds_bucket{route=\"/v1/chat/completions\",le=\"0.025\"} 0"));
        assert!(text.contains("hearth_time_to_first_token_seconds_bucket{route=\"/v1/chat/completions\",le=\"0.05\"} 1"));
        assert!(text.contains(
            "hearth_time_to_first_token_seconds_bucket{route=\"/v1/chat/completions\",le=\"5\"} 2"
        ));
        assert!(text.contains(
            "hearth_time_to_first_token_seconds_count{route=\"/v1/chat/completions\"} 2"
        ));
    }

    #[test]
    fn requests_by_route_and_status() {
        let m = Metrics::default();
        m.request("/v1/models", 200);
        m.request("/v1/models", 200);
        m.request("/v1/chat/completions", 400);
        m.tokens(10, 5, 3);
        let text = m.render(Gauges {
            queue_depth: 2,
            ..Default::default()
        });
        assert!(text.contains("hearth_requests_total{route=\"/v1/models\",status=\"200\"} 2"));
        assert!(
            text.contains("hearth_requests_total{route=\"/v1/chat/completions\",status=\"400\"} 1")
        );
        assert!(text.contains("hearth_prompt_tokens_total 10"));
        assert!(text.contains("hearth_prompt_cached_tokens_total 3"));
        assert!(text.contains("hearth_queue_depth 2"));
    }
}
