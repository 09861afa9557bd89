//! The hybrid path of `POST /v1/chat/completions`: taken when the server
//! was given a [`Gateway`] (`hearth serve --config`).
//!
//! 1. The request's `model` picks the target: the routing alias
//!    (`hearth/auto`), `cloud/<model>` (forced cloud) or anything else
//!    (local). An unusable target (offline, no cloud configured) is a 400
//!    naming `model`.
//! 2. [`Gateway::plan`] (guard → quality router → privacy veto) decides:
//!    local, cloud (with the guard-approved, possibly redacted request and
//!    its restorer) or blocked (a 400 naming the entity types).
//! 3. An audit entry is appended *before* anything leaves the machine; if
//!    it cannot be written, the request is answered locally.
//! 4. Cloud: [`hearth_cloud::CloudClient::chat`] returns only once the first
//!    event is in hand, so any error there means the client has seen
//!    nothing and the local model answers instead (`cloud.fallback:<kind>`).
//!    After the first event, a failure ends the stream with an explicit
//!    error event (never a silent retry). Answers are restored
//!    (placeholders → values, never inside URLs) by the guard's
//!    `EventRestorer` as they stream.
//! 5. Cascade (`[router] cascade = true`, router said local, guard allowed
//!    the cloud): the local answer is generated in full with token
//!    log-probabilities; under the threshold it is replaced by the cloud's.
//! 6. Every request ends in one ledger row (all attempts), and the response
//!    carries `x-hearth-route` and `x-hearth-reason`.
//!
//! Events of both sources are fed to the server's own JSON/SSE writers as
//! scheduler events, so local and cloud answers have one wire format.
//!
//! Deliberately absent: relaying tool calls from the cloud (requests with
//! `tools` are answered locally; a forced cloud request with tools is
//! refused), cloud logprobs (the cloud answer carries none).

use crate::backend::{collect, response_json, Api, ChoiceOut, Local, Meta};
use crate::error::ApiError;
use crate::http::{blocking, finish, new_id, start_chat, Body};
use crate::wire::ChatCall;
use crate::State;
use hearth_api::{ChatEvent, FinishReason, Route, Usage};
use hearth_engine::scheduler::{ChoiceStats, Event, Finish};
use hearth_gateway::cascade;
use hearth_gateway::reasons::{self, cloud_kind};
use hearth_gateway::{egress_bytes, Attempt, Gateway, Outcome, Target};
use hearth_guard::Restorer;
use hyper::header::HeaderValue;
use hyper::Response;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::sync::mpsc::{unbounded_channel, UnboundedReceiver};

/// What one answer stream amounted to (for the ledger).
#[derive(Clone, Debug, Default)]
struct Tally {
    prompt: usize,
    completion: usize,
    ttft: Option<Duration>,
    error: Option<String>,
}

impl Tally {
    fn attempt(&self, route: Route, model: &str, t0: Instant) -> Attempt {
        Attempt {
            route,
            model: model.to_string(),
            usage: Usage {
                prompt_tokens: u32::try_from(self.prompt).unwrap_or(u32::MAX),
                completion_tokens: u32::try_from(self.completion).unwrap_or(u32::MAX),
            },
            ttft: self.ttft,
            total: t0.elapsed(),
            error: self.error.clone(),
        }
    }
}

/// Sets `x-hearth-route` and `x-hearth-reason`. Reason codes are ASCII by
/// construction; a value that still is not a valid header is left out.
fn tag(mut r: Response<Body>, route: &str, reasons: &[String]) -> Response<Body> {
    let h = r.headers_mut();
    if let Ok(v) = HeaderValue::from_str(route) {
        h.insert("x-hearth-route", v);
    }
    if let Ok(v) = HeaderValue::from_str(&reasons::header(reasons)) {
        h.insert("x-hearth-reason", v);
    }
    r
}

fn finish_of(reason: FinishReason) -> Finish {
    match reason {
        FinishReason::Length => Finish::Length,
        _ => Finish::Eos,
    }
}

/// Forwards local scheduler events, counting them; `done` runs once the
/// answer ended (every choice done, an error, or the client gone).
fn tap_local(
    mut rx: UnboundedReceiver<Event>,
    n: usize,
    prompt: usize,
    t0: Instant,
    done: impl FnOnce(Tally) + Send + 'static,
) -> UnboundedReceiver<Event> {
    let (tx, out) = unbounded_channel();
    tokio::spawn(async move {
        let mut t = Tally { prompt, ..Tally::default() };
        let mut remaining = n;
        while remaining > 0 {
            let Some(ev) = rx.recv().await else {
                t.error = Some("local_ended".into());
                break;
            };
            let mut last = false;
            match &ev {
                Event::Delta { text, .. } if !text.is_empty() => {
                    t.ttft.get_or_insert_with(|| t0.elapsed());
                }
                Event::Delta { .. } => {}
                Event::Done { stats, .. } => {
                    remaining -= 1;
                    t.completion += stats.completion_tokens;
                }
                Event::Error { .. } => {
                    t.error = Some("local_error".into());
                    last = true;
                }
            }
            if tx.send(ev).is_err() {
                t.error.get_or_insert_with(|| "client_gone".into());
                break;
            }
            if last {
                break;
            }
        }
        done(t);
    });
    out
}

/// Reads a cloud answer, restores placeholders, and forwards it as
/// scheduler events. `Finish` events are held until the stream's end so
/// that the usage (sent last) can go with them.
fn pump_cloud(
    mut stream: hearth_cloud::CloudStream,
    restorer: Restorer,
    t0: Instant,
    done: impl FnOnce(Tally) + Send + 'static,
) -> UnboundedReceiver<Event> {
    let (tx, out) = unbounded_channel();
    tokio::spawn(async move {
        let mut t = Tally::default();
        let mut er = restorer.events();
        let mut finishes: Vec<(u32, FinishReason)> = Vec::new();
        let mut usage: Option<Usage> = None;
        let mut deltas = 0usize;
        let mut gone = false;
        'read: loop {
            let (evs, end) = match stream.next().await {
                Some(ev) => (er.push(ev), false),
                None => (er.finish(), true),
            };
            for ev in evs {
                let send = match ev {
                    ChatEvent::Delta { index, text } => {
                        if !text.is_empty() {
                            t.ttft.get_or_insert_with(|| t0.elapsed());
                            deltas += 1;
                        }
                        Some(Event::Delta { choice: index as usize, text, logprobs: Vec::new() })
                    }
                    ChatEvent::Finish { index, reason } => {
                        finishes.push((index, reason));
                        None
                    }
                    ChatEvent::Usage(u) => {
                        usage = Some(u);
                        None
                    }
                    // Not relayed (module docs); requests with tools stay local.
                    ChatEvent::ToolCall { .. } => None,
                    ChatEvent::Error { .. } => {
                        let kind = stream.failure().map_or_else(|| "stream".to_string(), cloud_kind);
                        let message = format!(
                            "the cloud model failed after its answer had started ({kind}); the answer is incomplete"
                        );
                        t.error = Some(format!("cloud.stream_error:{kind}"));
                        let _ = tx.send(Event::Error { message });
                        break 'read;
                    }
                };
                if let Some(ev) = send {
                    if tx.send(ev).is_err() {
                        gone = true;
                        break 'read;
                    }
                }
            }
            if end {
                break;
            }
        }
        // Without upstream usage, count content chunks (about one token each).
        let u = usage.unwrap_or(Usage { prompt_tokens: 0, completion_tokens: deltas as u32 });
        t.prompt = u.prompt_tokens as usize;
        t.completion = u.completion_tokens as usize;
        if gone {
            t.error = Some("client_gone".into());
        } else if t.error.is_none() {
            finishes.sort_by_key(|f| f.0);
            for (k, (index, reason)) in finishes.into_iter().enumerate() {
                let stats = ChoiceStats {
                    prompt_tokens: t.prompt,
                    cached_tokens: 0,
                    completion_tokens: if k == 0 { t.completion } else { 0 },
                };
                let _ = tx.send(Event::Done { choice: index as usize, finish: finish_of(reason), stats });
            }
        }
        done(t);
    });
    out
}

/// A collected local answer replayed as events (the cascade's accepted
/// answer, or its fallback when the cloud fails).
fn replay(choices: &[ChoiceOut], prompt: usize, with_logprobs: bool) -> UnboundedReceiver<Event> {
    let (tx, rx) = unbounded_channel();
    for (i, c) in choices.iter().enumerate() {
        let logprobs = if with_logprobs { c.logprobs.clone() } else { Vec::new() };
        let _ = tx.send(Event::Delta { choice: i, text: c.text.clone(), logprobs });
        let stats = ChoiceStats { prompt_tokens: prompt, cached_tokens: c.cached_tokens, completion_tokens: c.completion_tokens };
        let _ = tx.send(Event::Done { choice: i, finish: c.finish.unwrap_or(Finish::Eos), stats });
    }
    rx
}

/// Everything one request carries through the path.
struct Ctx {
    state: Arc<State>,
    gw: Arc<Gateway>,
    id: String,
    ts: chrono::DateTime<chrono::Utc>,
    t0: Instant,
    stream: bool,
    include_usage: bool,
    local_model: String,
}

impl Ctx {
    fn record(&self, reasons: &[String], answer: Attempt, earlier: Vec<Attempt>) {
        self.gw.record(&self.id, self.ts, reasons, answer, earlier);
    }

    fn cloud_meta(&self, model: &str, n: usize) -> Meta {
        Meta {
            api: Api::Chat,
            id: self.id.clone(),
            created: crate::backend::unix_now(),
            model: format!("cloud/{model}"),
            route: "/v1/chat/completions",
            t0: self.t0,
            metrics: Arc::clone(&self.state.metrics),
            prompt_tokens: 0,
            n,
            logprobs: false,
            echo: None,
            tools: None,
            seed: 0,
        }
    }

    /// Answers locally; the ledger row is written when the answer ends.
    async fn local(
        &self,
        b: &Local,
        call: ChatCall,
        reasons: Vec<String>,
        earlier: Vec<Attempt>,
    ) -> Result<Response<Body>, ApiError> {
        let (rx, mut meta) = match start_chat(&self.state, b, call, self.t0).await {
            Ok(x) => x,
            Err(e) => {
                let t = Tally { error: Some(format!("rejected:{}", e.status.as_u16())), ..Tally::default() };
                self.record(&reasons, t.attempt(Route::Local, &self.local_model, self.t0), earlier);
                return Err(e);
            }
        };
        meta.id = self.id.clone();
        let gw = Arc::clone(&self.gw);
        let (id, ts, t0, model, rs) = (self.id.clone(), self.ts, self.t0, self.local_model.clone(), reasons.clone());
        let rx = tap_local(rx, meta.n, meta.prompt_tokens, self.t0, move |t| {
            gw.record(&id, ts, &rs, t.attempt(Route::Local, &model, t0), earlier);
        });
        let r = finish(rx, meta, self.stream, self.include_usage).await?;
        Ok(tag(r, "local", &reasons))
    }

    /// Streams (or collects) a cloud answer that has started. A streaming
    /// client sees a later failure as an error event; a non-streaming
    /// client has seen nothing yet, so a failed collection is handed back
    /// ([`CloudEnd::Failed`]) for a local answer instead.
    async fn cloud(
        &self,
        stream: hearth_cloud::CloudStream,
        restorer: Restorer,
        n: usize,
        reasons: &[String],
        earlier: Vec<Attempt>,
    ) -> Result<CloudEnd, ApiError> {
        let model = self.gw.cloud_model().unwrap_or("cloud").to_string();
        let mut meta = self.cloud_meta(&model, n);
        if self.stream {
            let gw = Arc::clone(&self.gw);
            let (id, ts, t0, m, rs) = (self.id.clone(), self.ts, self.t0, model.clone(), reasons.to_vec());
            let rx = pump_cloud(stream, restorer, self.t0, move |t| {
                let mut rs = rs;
                if let Some(e) = t.error.as_ref().filter(|e| e.starts_with("cloud.")) {
                    rs.push(e.clone());
                }
                gw.record(&id, ts, &rs, t.attempt(Route::Cloud, &m, t0), earlier);
            });
            let r = finish(rx, meta, true, self.include_usage).await?;
            return Ok(CloudEnd::Done(tag(r, "cloud", reasons)));
        }
        let (ttx, trx) = tokio::sync::oneshot::channel();
        let rx = pump_cloud(stream, restorer, self.t0, move |t| {
            let _ = ttx.send(t);
        });
        let collected = collect(rx, &meta).await;
        let t = trx.await.unwrap_or_default();
        match collected {
            Ok(choices) => {
                if let Some(p) = choices.first().map(|c| c.prompt_tokens).filter(|&p| p > 0) {
                    meta.prompt_tokens = p;
                }
                self.record(reasons, t.attempt(Route::Cloud, &model, self.t0), earlier);
                let r = crate::http::json_ok(&response_json(&meta, &choices));
                Ok(CloudEnd::Done(tag(r, "cloud", reasons)))
            }
            Err(_) => {
                let kind = t
                    .error
                    .as_deref()
                    .and_then(|e| e.strip_prefix("cloud.stream_error:"))
                    .unwrap_or("stream")
                    .to_string();
                let mut t = t;
                t.error = Some(format!("cloud.fallback:{kind}"));
                let failed = t.attempt(Route::Cloud, &model, self.t0);
                let mut earlier = earlier;
                earlier.push(failed);
                Ok(CloudEnd::Failed { code: format!("cloud.fallback:{kind}"), earlier })
            }
        }
    }
}

/// How a started cloud answer ended for the handler.
enum CloudEnd {
    Done(Response<Body>),
    /// A non-streamed answer failed before anything reached the client.
    Failed { code: String, earlier: Vec<Attempt> },
}

/// See the module docs.
pub(crate) async fn chat(
    state: &Arc<State>,
    b: &Local,
    gw: Arc<Gateway>,
    mut call: ChatCall,
    t0: Instant,
) -> Result<Response<Body>, ApiError> {
    let ts = chrono::Utc::now();
    let model = if call.model_given { call.request.model.clone() } else { b.model_id.clone() };
    let target = gw.target(&model).map_err(|e| ApiError::invalid_value("model", e.to_string()))?;
    let has_tools = !call.request.tools.is_empty();
    if has_tools && target == Target::Cloud {
        return Err(ApiError::unsupported(
            "tools",
            "tool calls are not relayed from the cloud model yet; use the routing alias or a local model",
        ));
    }
    let cx = Ctx {
        state: Arc::clone(state),
        gw: Arc::clone(&gw),
        id: new_id(state, "chatcmpl"),
        ts,
        t0,
        stream: call.request.stream,
        include_usage: call.request.include_usage,
        local_model: b.model_id.clone(),
    };
    // Detection and the router's model are CPU work.
    let (g, req, tgt) = (Arc::clone(&gw), call.request.clone(), if has_tools { Target::Local } else { target });
    let plan = blocking(move || g.plan(&req, tgt)).await?;
    let mut reasons = plan.reasons;
    if has_tools && target == Target::Auto {
        reasons[0] = "route.auto".into();
        reasons.push("route.tools_local".into());
    }
    let n = call.request.params.n.max(1) as usize;
    match plan.outcome {
        Outcome::Blocked(blocked) => {
            if let Err(e) = gw.audit(&cx.id, "blocked", &reasons, &plan.summary, 0) {
                tracing::warn!("audit log: {e}");
            }
            let t = Tally { error: Some("blocked".into()), ..Tally::default() };
            cx.record(&reasons, t.attempt(Route::Local, &cx.local_model, t0), Vec::new());
            Ok(tag(ApiError::blocked(blocked.to_string()).into_response(), "blocked", &reasons))
        }
        Outcome::Local => {
            if let Err(e) = gw.audit(&cx.id, "local", &reasons, &plan.summary, 0) {
                tracing::warn!("audit log: {e}");
            }
            match (plan.escalation, gw.cascade().copied()) {
                (Some(esc), Some(cfg)) if n == 1 => {
                    // The cascade: a complete local answer, judged by its confidence.
                    let wants_logprobs = call.request.params.logprobs;
                    call.request.params.logprobs = true;
                    let (rx, meta) = match start_chat(&cx.state, b, call, t0).await {
                        Ok(x) => x,
                        Err(e) => {
                            let t = Tally { error: Some(format!("rejected:{}", e.status.as_u16())), ..Tally::default() };
                            cx.record(&reasons, t.attempt(Route::Local, &cx.local_model, t0), Vec::new());
                            return Err(e);
                        }
                    };
                    let prompt = meta.prompt_tokens;
                    let choices = collect(rx, &meta).await?;
                    let ttft = t0.elapsed();
                    let lps: Vec<f32> = choices.iter().flat_map(|c| c.logprobs.iter().map(|t| t.logprob)).collect();
                    let conf = cascade::confidence(&lps, cfg.metric);
                    reasons.push(reasons::confidence(conf.unwrap_or(f32::NEG_INFINITY)));
                    let local_try = Tally {
                        prompt,
                        completion: choices.iter().map(|c| c.completion_tokens).sum(),
                        ttft: Some(ttft),
                        error: None,
                    }
                    .attempt(Route::Local, &cx.local_model, t0);
                    let replay_local = |reasons: Vec<String>, earlier: Vec<Attempt>, answer: Attempt| {
                        let mut meta = meta;
                        meta.id = cx.id.clone();
                        meta.logprobs = wants_logprobs;
                        cx.record(&reasons, answer, earlier);
                        let rx = replay(&choices, prompt, wants_logprobs);
                        (rx, meta, reasons)
                    };
                    if !cascade::escalate(conf, &cfg) {
                        reasons.push("cascade.accepted".into());
                        let (rx, meta, reasons) = replay_local(reasons, Vec::new(), local_try);
                        let r = finish(rx, meta, cx.stream, cx.include_usage).await?;
                        return Ok(tag(r, "local", &reasons));
                    }
                    reasons.push("cascade.escalated".into());
                    reasons.extend(esc.reasons);
                    let bytes = egress_bytes(&esc.request);
                    let sent = match gw.audit(&cx.id, "cloud", &reasons, &plan.summary, bytes) {
                        Err(e) => Err(("audit.unavailable".to_string(), e.to_string())),
                        Ok(()) => match gw.cloud() {
                            None => Err(("cloud.unconfigured".to_string(), String::new())),
                            Some(c) => c.chat(esc.request).await.map_err(|e| (format!("cloud.fallback:{}", cloud_kind(&e)), e.to_string())),
                        },
                    };
                    let (code, earlier) = match sent {
                        Ok(stream) => match cx.cloud(stream, esc.restorer, 1, &reasons, vec![local_try.clone()]).await? {
                            CloudEnd::Done(r) => return Ok(r),
                            CloudEnd::Failed { code, earlier } => (code, earlier),
                        },
                        Err((code, msg)) => {
                            tracing::warn!(reason = %code, "cascade escalation failed, keeping the local answer: {msg}");
                            let failed = Tally { error: Some(code.clone()), ..Tally::default() }.attempt(
                                Route::Cloud,
                                gw.cloud_model().unwrap_or("cloud"),
                                t0,
                            );
                            (code, vec![failed])
                        }
                    };
                    reasons.push(code);
                    let (rx, meta, reasons) = replay_local(reasons, earlier, local_try);
                    let r = finish(rx, meta, cx.stream, cx.include_usage).await?;
                    Ok(tag(r, "local", &reasons))
                }
                _ => cx.local(b, call, reasons, Vec::new()).await,
            }
        }
        Outcome::Cloud { request, restorer } => {
            let bytes = egress_bytes(&request);
            if let Err(e) = gw.audit(&cx.id, "cloud", &reasons, &plan.summary, bytes) {
                // Nothing leaves without its audit entry.
                tracing::warn!("audit log unavailable, answering locally: {e}");
                reasons.push("audit.unavailable".into());
                return cx.local(b, call, reasons, Vec::new()).await;
            }
            let Some(client) = gw.cloud() else {
                reasons.push("cloud.unconfigured".into());
                return cx.local(b, call, reasons, Vec::new()).await;
            };
            match client.chat(request).await {
                Ok(stream) => {
                    // `call` is kept for a local answer if a collected
                    // (non-streamed) cloud answer fails.
                    match cx.cloud(stream, restorer, n, &reasons, Vec::new()).await? {
                        CloudEnd::Done(r) => Ok(r),
                        CloudEnd::Failed { code, earlier } => {
                            tracing::warn!(reason = %code, "cloud answer failed before reaching the client, answering locally");
                            reasons.push(code);
                            cx.local(b, call, reasons, earlier).await
                        }
                    }
                }
                Err(e) => {
                    // Before the first byte: the client has seen nothing.
                    let kind = cloud_kind(&e);
                    tracing::warn!(kind = %kind, "cloud unavailable, answering locally: {e}");
                    let code = format!("cloud.fallback:{kind}");
                    reasons.push(code.clone());
                    let failed = Tally { error: Some(code), ..Tally::default() }.attempt(
                        Route::Cloud,
                        gw.cloud_model().unwrap_or("cloud"),
                        t0,
                    );
                    cx.local(b, call, reasons, vec![failed]).await
                }
            }
        }
    }
}
