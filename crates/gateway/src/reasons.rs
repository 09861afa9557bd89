//! Reason codes: why a request went where it went.
//!
//! One vocabulary for the `x-hearth-reason` response header, the ledger's
//! `reasons` column and the audit log. Codes are short machine strings over
//! the ledger's alphabet (`[A-Za-z0-9._:<>=!+-/%@#]`, at most 64 bytes);
//! they name entity *types* and error *kinds*, never a value from a request.
//!
//! | code | meaning |
//! |---|---|
//! | `route.auto` | the client asked for the routing alias (`hearth/auto`) |
//! | `route.forced:local`, `route.forced:cloud` | `local/<name>` (or the local model id), `cloud/<name>` |
//! | `router.local`, `router.cloud` | the quality router's verdict |
//! | `router.score=0.731` | its score (three decimals) |
//! | `router.error` | the router failed; answered locally |
//! | `pii.none` | the guard found nothing to redact; sent unchanged |
//! | `pii.redact:EMAIL` | values of this type were replaced by placeholders before egress |
//! | `pii.keep_local:PERSON` | the policy keeps this type on the machine (veto) |
//! | `pii.uncertain:PERSON` | an uncertain span kept it local (fail-closed) |
//! | `pii.block:US_SSN` | refused |
//! | `cloud.offline` | the router wanted the cloud; the deployment is offline |
//! | `cloud.unconfigured` | the router wanted the cloud; there is no `[cloud]` section |
//! | `cloud.fallback:<kind>` | the cloud failed before the first byte; answered locally |
//! | `cloud.stream_error:<kind>` | the cloud failed after the first byte (stream ended with an error event) |
//! | `audit.unavailable` | the audit log could not record the egress, so nothing was sent |
//! | `cascade.accepted`, `cascade.escalated` | the cascade kept / replaced the local answer |
//! | `cascade.confidence=-1.234` | the local answer's confidence |
//! | `cascade.veto` | the cascade wanted to escalate; the guard kept it local |
//!
//! `<kind>`: `timeout`, `connect`, `connection`, `circuit_open`,
//! `http_<status>`, `upstream_error`, `protocol`, `config`, `offline`.

use hearth_cloud::CloudError;

/// The kind of a cloud failure as it appears in reason codes and error kinds.
pub fn cloud_kind(e: &CloudError) -> String {
    match e {
        CloudError::Http { status, .. } => format!("http_{status}"),
        CloudError::Upstream { .. } => "upstream_error".into(),
        other => other.kind().to_string(),
    }
}

pub fn score(s: f32) -> String {
    format!("router.score={s:.3}")
}

pub fn confidence(c: f32) -> String {
    if c.is_finite() {
        format!("cascade.confidence={c:.3}")
    } else {
        "cascade.confidence=-inf".into()
    }
}

/// Reasons as a header value: comma-separated.
pub fn header(reasons: &[String]) -> String {
    reasons.join(",")
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn codes_fit_the_ledger_alphabet() {
        for c in [
            score(0.7312),
            confidence(-1.23456),
            confidence(f32::NEG_INFINITY),
            format!("cloud.fallback:{}", cloud_kind(&CloudError::Http { status: 429, attempts: 3, summary: "x".into(), retry_after: None })),
            format!("cloud.fallback:{}", cloud_kind(&CloudError::CircuitOpen { retry_in: Duration::from_secs(1) })),
        ] {
            hearth_ledger::ReasonCode::new(c.clone()).unwrap_or_else(|e| panic!("{c}: {e}"));
        }
        assert_eq!(score(0.7312), "router.score=0.731");
        assert_eq!(
            cloud_kind(&CloudError::Http { status: 503, attempts: 1, summary: String::new(), retry_after: None }),
            "http_503"
        );
    }
}
