//! The gateway: one place that decides where a request is answered and
//! keeps the records of it.
//!
//! # Order of the decision ([`Gateway::plan`])
//! 1. **Detection and policy.** The guard inspects the whole request
//!    (messages, tool calls, tools, stop strings, response schema) as if it
//!    were bound for the cloud. A `block` entity refuses the request here;
//!    a `keep-local` entity (or, fail-closed, an uncertain span) vetoes the
//!    cloud here — the router is not consulted, since its answer could not
//!    change the route.
//! 2. **Quality router** (`hearth/auto` only): scores the query; at or above
//!    its threshold it wants the cloud.
//! 3. **Privacy veto**, deterministic: the route is the guard's decision for
//!    the route the router wanted — `Guard::decide(req, wanted)`. Because the
//!    guard's decision is a pure function of the text, the policy and the
//!    wanted route, and a wanted `Local` always yields `Local`, step 1's
//!    inspection already *is* that decision for a wanted `Cloud`; the
//!    redacted request it built is the one sent. A test checks the
//!    equivalence over the PII corpus.
//!
//! Forced routes skip step 2: `local/<name>` (or the local model's id, or
//! any other name) is answered locally; `cloud/<model>` goes to the cloud
//! unless the guard vetoes it (then locally, with the veto's reasons).
//!
//! # Egress
//! The only [`CloudClient`] lives in [`Egress::Cloud`]. An offline
//! deployment is built with [`Egress::Offline`]: no client is ever
//! constructed, so no code path can open an outbound connection, and a
//! forced `cloud/...` request is refused with [`TargetError::Offline`].
//!
//! # Records
//! * Audit ([`Gateway::audit`]): one entry per request at the moment its
//!   data's destination is decided — before any byte leaves for the cloud —
//!   with route, reason codes, entity types and counts, destination host
//!   and byte counts. If the entry cannot be written, the request is not
//!   sent (the server answers it locally, `audit.unavailable`).
//! * Ledger ([`Gateway::record`]): one row per request when it ends, with
//!   every attempt (cascade, fallback) listed.

use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, Utc};
use hearth_api::{ChatRequest, Route, Usage};
use hearth_cloud::{CloudClient, CloudConfig, CloudSafeRequest, Secret};
use hearth_guard::audit::{self, AuditEntry, AuditError, AuditLog};
use hearth_guard::{Blocked, Decision, Guard, Policy, Restorer, Summary};
use hearth_ledger::{ErrorKind, LedgerRecord, LedgerWriter, Measured, ModelName, Prices, ReasonCode, RequestId};

use crate::cascade::CascadeConfig;
use crate::config::{Config, ConfigError, ConfigErrors, RouterKind, DEFAULT_ALIAS};
use crate::router::{FixedRouter, HeuristicRouter, QueryRouter, WithThreshold};

/// Where the client asked for its request to go (from the `model` field).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Target {
    /// The routing alias (`hearth/auto`).
    Auto,
    Local,
    Cloud,
}

/// The deployment's way out, if any.
pub enum Egress {
    /// `offline = true`: no client exists.
    Offline,
    /// No `[cloud]` section.
    Unconfigured,
    Cloud {
        client: CloudClient,
        /// The upstream model name (`cloud/<model>`).
        model: String,
    },
}

/// A `model` the gateway cannot serve.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum TargetError {
    #[error("this gateway is offline: cloud routes are disabled; use '{alias}' or a local model")]
    Offline { alias: String },
    #[error("this gateway has no cloud model configured; use '{alias}' or a local model")]
    NoCloud { alias: String },
    #[error("the cloud model '{model}' is not configured; the cloud model is 'cloud/{configured}'")]
    UnknownCloudModel { model: String, configured: String },
}

/// What the plan decided.
#[allow(clippy::large_enum_variant)] // one per request, moved once
pub enum Outcome {
    Local,
    /// Send this guard-approved request; restore the answer with the restorer.
    Cloud { request: CloudSafeRequest, restorer: Restorer },
    Blocked(Blocked),
}

impl Outcome {
    /// `local`, `cloud` or `blocked` (audit log, metrics).
    pub fn label(&self) -> &'static str {
        match self {
            Outcome::Local => "local",
            Outcome::Cloud { .. } => "cloud",
            Outcome::Blocked(_) => "blocked",
        }
    }
}

/// A guard-approved request the cascade may escalate with.
pub struct Escalation {
    pub request: CloudSafeRequest,
    pub restorer: Restorer,
    /// The guard's reasons for the cloud form (`pii.none`, `pii.redact:...`).
    pub reasons: Vec<String>,
}

/// The decision for one request.
pub struct Plan {
    pub target: Target,
    pub outcome: Outcome,
    /// Set when the answer is local and the cascade may replace it.
    pub escalation: Option<Escalation>,
    pub reasons: Vec<String>,
    /// What the guard saw (types and counts, for the audit log).
    pub summary: Summary,
    /// The router's score, when it was consulted.
    pub score: Option<f32>,
}

/// One try at answering, as the server measured it.
#[derive(Clone, Debug, PartialEq)]
pub struct Attempt {
    pub route: Route,
    /// The local model id or the upstream model name.
    pub model: String,
    pub usage: Usage,
    pub ttft: Option<Duration>,
    pub total: Duration,
    /// `None`: it succeeded. Otherwise an error kind (ledger alphabet).
    pub error: Option<String>,
}

/// Builds a [`Gateway`].
pub struct GatewayBuilder {
    policy: Policy,
    router: Arc<dyn QueryRouter>,
    egress: Egress,
    alias: String,
    cascade: Option<CascadeConfig>,
    audit: Option<AuditLog>,
    ledger: Option<LedgerWriter>,
    prices: Prices,
}

impl GatewayBuilder {
    pub fn router(mut self, r: Arc<dyn QueryRouter>) -> Self {
        self.router = r;
        self
    }
    pub fn egress(mut self, e: Egress) -> Self {
        self.egress = e;
        self
    }
    pub fn alias(mut self, a: impl Into<String>) -> Self {
        self.alias = a.into();
        self
    }
    pub fn cascade(mut self, c: Option<CascadeConfig>) -> Self {
        self.cascade = c;
        self
    }
    pub fn audit(mut self, a: AuditLog) -> Self {
        self.audit = Some(a);
        self
    }
    pub fn ledger(mut self, w: LedgerWriter, prices: Prices) -> Self {
        self.ledger = Some(w);
        self.prices = prices;
        self
    }
    pub fn build(self) -> Gateway {
        Gateway {
            guard: Guard::new(self.policy),
            router: self.router,
            egress: self.egress,
            alias: self.alias,
            cascade: self.cascade,
            audit: self.audit,
            ledger: self.ledger,
            prices: self.prices,
        }
    }
}

/// See the module docs.
pub struct Gateway {
    guard: Guard,
    router: Arc<dyn QueryRouter>,
    egress: Egress,
    alias: String,
    cascade: Option<CascadeConfig>,
    audit: Option<AuditLog>,
    ledger: Option<LedgerWriter>,
    prices: Prices,
}

impl std::fmt::Debug for Gateway {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Gateway")
            .field("router", &self.router.name())
            .field("alias", &self.alias)
            .field("offline", &self.is_offline())
            .field("cloud_model", &self.cloud_model())
            .finish_non_exhaustive()
    }
}

fn err(path: &str, message: impl Into<String>) -> ConfigErrors {
    ConfigErrors(vec![ConfigError { path: path.into(), message: message.into() }])
}

impl Gateway {
    /// A gateway with this policy, the heuristic router, no egress, no records.
    pub fn builder(policy: Policy) -> GatewayBuilder {
        GatewayBuilder {
            policy,
            router: Arc::new(HeuristicRouter::default()),
            egress: Egress::Unconfigured,
            alias: DEFAULT_ALIAS.into(),
            cascade: None,
            audit: None,
            ledger: None,
            prices: Prices::default(),
        }
    }

    /// Builds everything a parsed configuration asks for: router, cloud
    /// client (never when offline), audit log, ledger writer. `env` looks up
    /// the environment variables the file names.
    pub fn from_config(cfg: &Config, env: &dyn Fn(&str) -> Option<String>) -> Result<Gateway, ConfigErrors> {
        let router: Arc<dyn QueryRouter> = match (&cfg.router.kind, cfg.router.threshold) {
            (RouterKind::Heuristic, t) => Arc::new(HeuristicRouter { threshold: t.unwrap_or(0.5) }),
            (RouterKind::AlwaysLocal, _) => Arc::new(FixedRouter::always_local()),
            (RouterKind::AlwaysCloud, _) => Arc::new(FixedRouter::always_cloud()),
            (RouterKind::File(p), _) => {
                let spec = p.to_string_lossy();
                match crate::router::TrainedRouter::load(&spec) {
                    Ok(r) => Arc::new(r),
                    Err(e) => return Err(err("router.path", format!("cannot load the router '{spec}': {e}"))),
                }
            }
        };
        let router: Arc<dyn QueryRouter> = match cfg.router.threshold {
            Some(t) if !matches!(cfg.router.kind, RouterKind::Heuristic) => {
                Arc::new(WithThreshold { inner: ArcRouter(router), threshold: t })
            }
            _ => router,
        };
        let egress = match (&cfg.cloud, cfg.offline) {
            // Offline: the client is never constructed.
            (_, true) => Egress::Offline,
            (None, false) => Egress::Unconfigured,
            (Some(c), false) => {
                let mut cc = CloudConfig::new(c.base_url.clone(), c.model.clone());
                if let Some(name) = &c.api_key_env {
                    match env(name) {
                        Some(v) if !v.is_empty() => cc.api_key = Some(Secret::new(v)),
                        _ => return Err(err("cloud.api_key_env", format!("environment variable {name} is not set"))),
                    }
                }
                cc.deadline = c.deadline;
                cc.connect_timeout = c.connect_timeout;
                cc.first_byte_timeout = c.first_byte_timeout;
                cc.retry = c.retry.clone();
                cc.breaker = c.breaker.clone();
                cc.send_stream_options = c.send_stream_options;
                cc.max_response_bytes = c.max_response_bytes;
                for (i, p) in c.ca_certs.iter().enumerate() {
                    let pem = std::fs::read(p)
                        .map_err(|e| err(&format!("cloud.ca_certs[{i}]"), format!("cannot read {}: {e}", p.display())))?;
                    cc.extra_root_certs_pem.push(pem);
                }
                let client = CloudClient::new(cc).map_err(|e| err("cloud", e.to_string()))?;
                Egress::Cloud { client, model: c.model.clone() }
            }
        };
        let mut b = Gateway::builder(cfg.guard.policy.clone())
            .router(router)
            .egress(egress)
            .alias(cfg.router.alias.clone())
            .cascade(cfg.router.cascade);
        if let (Some(log), Some(key)) = (&cfg.guard.audit_log, &cfg.guard.audit_key) {
            let key = audit::read_key_file(key).map_err(|e| err("guard.audit_key", e.to_string()))?;
            let log = AuditLog::open(log, key, cfg.guard.checkpoint_every)
                .map_err(|e| err("guard.audit_log", format!("{}: {e}", log.display())))?;
            b = b.audit(log);
        }
        if let Some(l) = &cfg.ledger {
            let store = hearth_ledger::open(&l.url).map_err(|e| err("ledger.url", e.to_string()))?;
            let writer = LedgerWriter::spawn(store, l.queue).map_err(|e| err("ledger", e.to_string()))?;
            b = b.ledger(writer, prices_from(cfg));
        }
        Ok(b.build())
    }

    pub fn alias(&self) -> &str {
        &self.alias
    }

    pub fn is_offline(&self) -> bool {
        matches!(self.egress, Egress::Offline)
    }

    /// The cloud client, when the deployment has one.
    pub fn cloud(&self) -> Option<&CloudClient> {
        match &self.egress {
            Egress::Cloud { client, .. } => Some(client),
            _ => None,
        }
    }

    /// The upstream model name, when there is a cloud client.
    pub fn cloud_model(&self) -> Option<&str> {
        match &self.egress {
            Egress::Cloud { model, .. } => Some(model),
            _ => None,
        }
    }

    /// The host requests go to (the audit log's destination).
    pub fn destination(&self) -> Option<String> {
        self.cloud().map(|c| audit::host_only(c.endpoint()))
    }

    pub fn cascade(&self) -> Option<&CascadeConfig> {
        self.cascade.as_ref()
    }

    pub fn router_name(&self) -> &str {
        self.router.name()
    }

    pub fn guard(&self) -> &Guard {
        &self.guard
    }

    /// Resolves the request's `model`: the alias routes, `cloud/<model>`
    /// forces the cloud, anything else (`local/<name>`, the local model's
    /// id, no model) is answered locally.
    pub fn target(&self, model: &str) -> Result<Target, TargetError> {
        if model == self.alias {
            return Ok(Target::Auto);
        }
        let Some(name) = model.strip_prefix("cloud/") else {
            return Ok(Target::Local);
        };
        match &self.egress {
            Egress::Offline => Err(TargetError::Offline { alias: self.alias.clone() }),
            Egress::Unconfigured => Err(TargetError::NoCloud { alias: self.alias.clone() }),
            Egress::Cloud { model: m, .. } if m == name => Ok(Target::Cloud),
            Egress::Cloud { model: m, .. } => {
                Err(TargetError::UnknownCloudModel { model: model.to_string(), configured: m.clone() })
            }
        }
    }

    /// Decides where `req` is answered. See the module docs for the order.
    /// CPU work (detection, the router's model): call it off async threads.
    pub fn plan(&self, req: &ChatRequest, target: Target) -> Plan {
        let first = match target {
            Target::Auto => "route.auto",
            Target::Local => "route.forced:local",
            Target::Cloud => "route.forced:cloud",
        };
        let mut reasons = vec![first.to_string()];
        // 1. Detection and policy, for the route that needs them all.
        let insp = self.guard.inspect(req, Route::Cloud);
        let summary = insp.summary;
        let local = |reasons: Vec<String>, summary: Summary, score: Option<f32>, escalation: Option<Escalation>| Plan {
            target,
            outcome: Outcome::Local,
            escalation,
            reasons,
            summary,
            score,
        };
        let (request, restorer, guard_reasons) = match insp.decision {
            Decision::Block { types } => {
                reasons.extend(summary.reasons.iter().cloned());
                return Plan { target, outcome: Outcome::Blocked(Blocked { types }), escalation: None, reasons, summary, score: None };
            }
            Decision::Local { reasons: veto } => {
                if target != Target::Local {
                    reasons.extend(veto);
                }
                return local(reasons, summary, None, None);
            }
            Decision::Cloud(request, restorer) => {
                let r = summary.reasons.clone();
                (request, restorer, r)
            }
        };
        match target {
            Target::Local => local(reasons, summary, None, None),
            Target::Cloud => {
                reasons.extend(guard_reasons);
                Plan { target, outcome: Outcome::Cloud { request, restorer }, escalation: None, reasons, summary, score: None }
            }
            Target::Auto => {
                match &self.egress {
                    Egress::Offline => {
                        reasons.push("cloud.offline".into());
                        return local(reasons, summary, None, None);
                    }
                    Egress::Unconfigured => {
                        reasons.push("cloud.unconfigured".into());
                        return local(reasons, summary, None, None);
                    }
                    Egress::Cloud { .. } => {}
                }
                // 2. The quality router.
                let (wants_cloud, score) = match self.router.score(req) {
                    Ok(s) => {
                        reasons.push(crate::reasons::score(s));
                        (s >= self.router.threshold(), Some(s))
                    }
                    Err(e) => {
                        tracing::warn!(router = self.router.name(), "router failed, answering locally: {e}");
                        reasons.push("router.error".into());
                        (false, None)
                    }
                };
                // 3. The veto: step 1's decision is Guard::decide(req, Cloud).
                if wants_cloud {
                    reasons.insert(1, "router.cloud".into());
                    reasons.extend(guard_reasons);
                    Plan { target, outcome: Outcome::Cloud { request, restorer }, escalation: None, reasons, summary, score }
                } else {
                    if score.is_some() {
                        reasons.insert(1, "router.local".into());
                    }
                    let escalation =
                        self.cascade.is_some().then_some(Escalation { request, restorer, reasons: guard_reasons });
                    local(reasons, summary, score, escalation)
                }
            }
        }
    }

    /// Appends the audit entry for a request whose data goes to `route`
    /// (`local`, `cloud`, `blocked`). `bytes_out`: bytes handed to the
    /// cloud client. No audit log configured: `Ok`.
    pub fn audit(
        &self,
        request_id: &str,
        route: &str,
        reasons: &[String],
        summary: &Summary,
        bytes_out: u64,
    ) -> Result<(), AuditError> {
        let Some(log) = &self.audit else { return Ok(()) };
        let dest = if route == "cloud" { self.destination() } else { None };
        let mut e = AuditEntry::from_summary(request_id, route, summary, dest.as_deref(), bytes_out);
        e.reasons = reasons.to_vec();
        log.append(&e).map(|_| ())
    }

    /// Writes one ledger row (without blocking: the writer thread stores
    /// it). `earlier`: attempts before the one whose answer the client saw.
    /// Invalid fields are logged by kind and the row is dropped.
    pub fn record(&self, request_id: &str, ts: DateTime<Utc>, reasons: &[String], answer: Attempt, earlier: Vec<Attempt>) {
        let Some(w) = &self.ledger else { return };
        match self.ledger_record(request_id, ts, reasons, answer, earlier) {
            Ok(r) => {
                w.submit(r);
            }
            Err(e) => tracing::warn!("ledger: request not recorded: {e}"),
        }
    }

    /// The row [`Gateway::record`] writes.
    pub fn ledger_record(
        &self,
        request_id: &str,
        ts: DateTime<Utc>,
        reasons: &[String],
        answer: Attempt,
        earlier: Vec<Attempt>,
    ) -> Result<LedgerRecord, hearth_ledger::LedgerError> {
        let id = RequestId::new(request_id)?;
        // Measured values (`router.score=0.731`, `cascade.confidence=...`)
        // stay in the response header: as ledger codes every value would be
        // its own line in the report's reason counts.
        let codes: Vec<ReasonCode> = reasons
            .iter()
            .filter(|r| !r.contains('='))
            .take(hearth_ledger::record::MAX_REASONS)
            .filter_map(|r| ReasonCode::new(r.clone()).ok())
            .collect();
        let measured = |a: Attempt| -> Result<Measured, hearth_ledger::LedgerError> {
            Ok(Measured {
                route: a.route,
                model: ModelName::new(a.model)?,
                usage: a.usage,
                ttft_ms: a.ttft.map(ms),
                total_ms: ms(a.total),
                error: a.error.map(ErrorKind::new).transpose()?,
            })
        };
        let answer = measured(answer)?;
        if earlier.is_empty() {
            LedgerRecord::new(id, ts, codes, answer, &self.prices)
        } else {
            let mut attempts = earlier.into_iter().map(measured).collect::<Result<Vec<_>, _>>()?;
            attempts.push(answer.clone());
            LedgerRecord::with_attempts(id, ts, codes, answer, attempts, &self.prices)
        }
    }

    /// Blocks until queued ledger rows are stored and writes an audit
    /// checkpoint (shutdown, tests).
    pub fn flush(&self) {
        if let Some(w) = &self.ledger {
            if let Err(e) = w.flush() {
                tracing::warn!("ledger flush: {e}");
            }
        }
        if let Some(a) = &self.audit {
            if let Err(e) = a.checkpoint() {
                tracing::warn!("audit checkpoint: {e}");
            }
        }
    }

    /// Ledger writer counters (none without a ledger).
    pub fn ledger_stats(&self) -> Option<hearth_ledger::WriterStats> {
        self.ledger.as_ref().map(LedgerWriter::stats)
    }
}

fn ms(d: Duration) -> u32 {
    u32::try_from(d.as_millis()).unwrap_or(u32::MAX)
}

/// The ledger's prices from `[cloud.prices]` and `[ledger]`.
pub fn prices_from(cfg: &Config) -> Prices {
    let mut p = Prices::default();
    if let Some(l) = &cfg.ledger {
        p.local_per_mtok = l.local_per_mtok;
        p.cloud.extend(l.extra_prices.clone());
        p.all_cloud_model = l.all_cloud_model.clone();
    }
    if let Some(c) = &cfg.cloud {
        if let Some(price) = c.prices {
            p.cloud.insert(c.model.clone(), price);
        }
        if p.all_cloud_model.is_none() {
            p.all_cloud_model = Some(c.model.clone());
        }
    }
    p
}

/// Bytes of a guard-approved request as handed to the cloud client (its
/// JSON form; the wire encoding differs by a few framing bytes).
pub fn egress_bytes(req: &CloudSafeRequest) -> u64 {
    serde_json::to_vec(req.request()).map_or(0, |v| v.len() as u64)
}

/// Lets an `Arc<dyn QueryRouter>` be wrapped by [`WithThreshold`].
struct ArcRouter(Arc<dyn QueryRouter>);

impl QueryRouter for ArcRouter {
    fn score(&self, req: &ChatRequest) -> Result<f32, crate::router::RouterError> {
        self.0.score(req)
    }
    fn threshold(&self) -> f32 {
        self.0.threshold()
    }
    fn name(&self) -> &str {
        self.0.name()
    }
}
