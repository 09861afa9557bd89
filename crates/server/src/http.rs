//! Request handling: security checks (Host allow-list, API key), routing,
//! bounded body reading, and the handlers.
//!
//! Order of checks for every request: Host header → API key (all routes but
//! `/health`) → route → body (size limit, read timeout) → JSON → handler.

use crate::backend::{collect, response_json, Api, Local, Meta, SseBody};
use crate::error::ApiError;
use crate::metrics::Gauges;
use crate::wire;
use crate::State;
use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::header::{
    HeaderValue, AUTHORIZATION, CACHE_CONTROL, CONTENT_LENGTH, CONTENT_TYPE, HOST,
};
use hyper::{Method, Request, Response, StatusCode};
use serde_json::{json, Value};
use std::convert::Infallible;
use std::net::IpAddr;
use std::pin::Pin;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Instant;

/// A response body: a whole buffer or an event stream.
pub enum Body {
    Full(Full<Bytes>),
    Sse(Box<SseBody>),
}

impl Body {
    pub fn full(f: Full<Bytes>) -> Body {
        Body::Full(f)
    }
}

impl http_body::Body for Body {
    type Data = Bytes;
    type Error = Infallible;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<http_body::Frame<Bytes>, Infallible>>> {
        match self.get_mut() {
            Body::Full(f) => Pin::new(f).poll_frame(cx),
            Body::Sse(s) => Pin::new(s.as_mut()).poll_frame(cx),
        }
    }

    fn is_end_stream(&self) -> bool {
        match self {
            Body::Full(f) => f.is_end_stream(),
            Body::Sse(_) => false,
        }
    }

    fn size_hint(&self) -> http_body::SizeHint {
        match self {
            Body::Full(f) => f.size_hint(),
            Body::Sse(_) => http_body::SizeHint::default(),
        }
    }
}

/// The routes, each also reachable without the `/v1` prefix.
#[derive(Clone, Debug, PartialEq, Eq)]
enum Route {
    Chat,
    Completions,
    Embeddings,
    Models,
    Model(String),
    Health,
    Metrics,
    Unknown,
}

impl Route {
    fn parse(path: &str) -> Route {
        let p = path
            .strip_prefix("/v1")
            .filter(|r| r.starts_with('/'))
            .unwrap_or(path);
        match p {
            "/chat/completions" => Route::Chat,
            "/completions" => Route::Completions,
            "/embeddings" => Route::Embeddings,
            "/models" => Route::Models,
            "/health" => Route::Health,
            "/metrics" => Route::Metrics,
            _ => match p.strip_prefix("/models/") {
                Some(id) if !id.is_empty() => Route::Model(id.to_string()),
                _ => Route::Unknown,
            },
        }
    }

    /// Metrics label.
    fn label(&self) -> &'static str {
        match self {
            Route::Chat => "/v1/chat/completions",
            Route::Completions => "/v1/completions",
            Route::Embeddings => "/v1/embeddings",
            Route::Models => "/v1/models",
            Route::Model(_) => "/v1/models/{id}",
            Route::Health => "/health",
            Route::Metrics => "/metrics",
            Route::Unknown => "other",
        }
    }

    fn method(&self) -> Option<Method> {
        match self {
            Route::Chat | Route::Completions | Route::Embeddings => Some(Method::POST),
            Route::Models | Route::Model(_) | Route::Health | Route::Metrics => Some(Method::GET),
            Route::Unknown => None,
        }
    }
}

/// The hyper service function.
pub async fn handle(
    state: Arc<State>,
    req: Request<Incoming>,
) -> Result<Response<Body>, Infallible> {
    let route = Route::parse(req.uri().path());
    let label = route.label();
    let resp = match respond(&state, route, req).await {
        Ok(r) => r,
        Err(e) => e.into_response(),
    };
    state.metrics.request(label, resp.status().as_u16());
    Ok(resp)
}

/// `Host` without its port, lower-cased; IPv6 literals without brackets.
pub fn host_name(host: &str) -> String {
    let h = host.trim();
    let name = if let Some(rest) = h.strip_prefix('[') {
        rest.split(']').next().unwrap_or("")
    } else {
        match h.rsplit_once(':') {
            Some((n, port)) if port.bytes().all(|b| b.is_ascii_digit()) => n,
            _ => h,
        }
    };
    name.trim_end_matches('.').to_ascii_lowercase()
}

/// DNS rebinding needs a name the attacker controls, so IP literals are
/// always safe; names must be loopback names, the bound host or listed.
fn host_allowed(state: &State, host: &str) -> bool {
    if state.allow_any_host {
        return true;
    }
    let name = host_name(host);
    if name.parse::<IpAddr>().is_ok() {
        return true;
    }
    name == "localhost" || name.ends_with(".localhost") || state.allowed_hosts.contains(&name)
}

fn check_access(state: &State, route: &Route, req: &Request<Incoming>) -> Result<(), ApiError> {
    let host = req
        .headers()
        .get(HOST)
        .and_then(|h| h.to_str().ok())
        .map(str::to_string)
        .or_else(|| req.uri().authority().map(|a| a.to_string()));
    match host {
        Some(h) if host_allowed(state, &h) => {}
        Some(h) => return Err(ApiError::host_not_allowed(&host_name(&h))),
        None => {
            return Err(ApiError::invalid_value(
                "Host",
                "the request has no Host header",
            ))
        }
    }
    if *route == Route::Health {
        return Ok(());
    }
    if let Some(key) = &state.api_key {
        let given = req
            .headers()
            .get(AUTHORIZATION)
            .map(|v| v.as_bytes())
            .and_then(|v| {
                if v.len() > 7 && v[..7].eq_ignore_ascii_case(b"bearer ") {
                    Some(&v[7..])
                } else {
                    None
                }
            })
            .unwrap_or(b"");
        if !key.ct_eq(given) {
            return Err(ApiError::unauthorized());
        }
    }
    Ok(())
}

/// Bodies up to this many times the limit are read and discarded before
/// the 413, so that a client still sending gets the answer instead of a
/// connection reset; larger ones are cut off at once.
const DRAIN_FACTOR: u64 = 8;

async fn read_body(state: &State, req: Request<Incoming>) -> Result<Bytes, ApiError> {
    let limit = state.body_limit;
    let declared = req
        .headers()
        .get(CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    let mut body = req.into_body();
    if declared.is_some_and(|len| len > limit as u64) {
        if declared.is_some_and(|len| len <= DRAIN_FACTOR * limit as u64) {
            drain(state, &mut body).await;
        }
        return Err(ApiError::too_large(limit));
    }
    let mut buf = Vec::with_capacity(declared.unwrap_or(0) as usize);
    let read = async {
        while let Some(frame) = body.frame().await {
            let frame =
                frame.map_err(|e| ApiError::bad_json(format!("reading the request body: {e}")))?;
            if let Ok(data) = frame.into_data() {
                if buf.len() + data.len() > limit {
                    return Err(ApiError::too_large(limit));
                }
                buf.extend_from_slice(&data);
            }
        }
        Ok(())
    };
    match tokio::time::timeout(state.body_timeout, read).await {
        Err(_) => Err(ApiError::body_timeout()),
        Ok(Err(e)) if e.status == StatusCode::PAYLOAD_TOO_LARGE => {
            drain(state, &mut body).await;
            Err(e)
        }
        Ok(Err(e)) => Err(e),
        Ok(Ok(())) => Ok(Bytes::from(buf)),
    }
}

/// Reads and discards the rest of a body, up to `DRAIN_FACTOR` × the limit
/// and within the body timeout.
async fn drain(state: &State, body: &mut Incoming) {
    let cap = DRAIN_FACTOR as usize * state.body_limit;
    let mut seen = 0usize;
    let _ = tokio::time::timeout(state.body_timeout, async {
        while let Some(Ok(frame)) = body.frame().await {
            if let Ok(d) = frame.into_data() {
                seen += d.len();
                if seen > cap {
                    break;
                }
            }
        }
    })
    .await;
}

pub(crate) fn json_ok(v: &Value) -> Response<Body> {
    json_response(StatusCode::OK, v)
}

fn json_response(status: StatusCode, v: &Value) -> Response<Body> {
    let body = serde_json::to_vec(v).unwrap_or_default();
    let mut r = Response::new(Body::Full(Full::new(Bytes::from(body))));
    *r.status_mut() = status;
    r.headers_mut()
        .insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
    r
}

fn backend(state: &State) -> Result<&Local, ApiError> {
    state
        .local
        .get()
        .map(|b| b.as_ref())
        .ok_or_else(ApiError::loading)
}

fn shared_backend(state: &State) -> Result<Arc<Local>, ApiError> {
    state.local.get().cloned().ok_or_else(ApiError::loading)
}

/// The backend a request names: `{base}+{adapter}` selects a LoRA adapter
/// served next to the base ([`crate::ServerConfig::adapters`]); any other
/// name (or none) is the base model, as before adapters existed.
fn pick_backend(state: &State, model: Option<&str>) -> Result<Arc<Local>, ApiError> {
    let base = shared_backend(state)?;
    match model {
        Some(m) if m.contains('+') && m != base.model_id => state
            .adapters
            .get()
            .into_iter()
            .flatten()
            .find(|a| a.model_id == m)
            .cloned()
            .ok_or_else(|| ApiError::model_not_found(m)),
        _ => Ok(base),
    }
}

pub(crate) async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> T + Send + 'static,
) -> Result<T, ApiError> {
    tokio::task::spawn_blocking(f)
        .await
        .map_err(|e| ApiError::internal(format!("prompt preparation failed: {e}")))
}

async fn respond(
    state: &Arc<State>,
    route: Route,
    req: Request<Incoming>,
) -> Result<Response<Body>, ApiError> {
    let t0 = Instant::now();
    check_access(state, &route, &req)?;
    let Some(method) = route.method() else {
        return Err(ApiError::not_found(req.uri().path()));
    };
    if req.method() != method {
        let mut r =
            ApiError::method_not_allowed(req.method().as_str(), req.uri().path()).into_response();
        r.headers_mut().insert(
            hyper::header::ALLOW,
            HeaderValue::from_static(if method == Method::POST {
                "POST"
            } else {
                "GET"
            }),
        );
        return Ok(r);
    }
    match route {
        Route::Health => match state.local.get() {
            Some(_) => Ok(json_response(StatusCode::OK, &json!({"status": "ok"}))),
            None => Err(ApiError::loading()),
        },
        Route::Metrics => {
            let g = match state.local.get() {
                Some(b) => {
                    let s = b.stats();
                    Gauges {
                        loaded: true,
                        queue_depth: s.queued,
                        active_slots: s.active_slots,
                        slots: s.n_slots,
                        steps: s.steps,
                    }
                }
                None => Gauges::default(),
            };
            let mut r = Response::new(Body::Full(Full::new(Bytes::from(state.metrics.render(g)))));
            r.headers_mut().insert(
                CONTENT_TYPE,
                HeaderValue::from_static("text/plain; version=0.0.4; charset=utf-8"),
            );
            Ok(r)
        }
        Route::Models => {
            let b = backend(state)?;
            let mut data = vec![model_json(&b.model_id, b.created)];
            for id in gateway_models(state) {
                data.push(model_json(&id, b.created));
            }
            for a in state.adapters.get().into_iter().flatten() {
                data.push(model_json(&a.model_id, b.created));
            }
            if let Some(e) = &state.embedder {
                data.push(model_json(e.model_id(), b.created));
            }
            Ok(json_response(
                StatusCode::OK,
                &json!({"object": "list", "data": data}),
            ))
        }
        Route::Model(id) => {
            let b = backend(state)?;
            let adapter = state.adapters.get().into_iter().flatten().any(|a| a.model_id == id);
            if id == b.model_id
                || adapter
                || state.embedder.as_ref().is_some_and(|e| e.model_id() == id)
                || gateway_models(state).contains(&id)
            {
                Ok(json_response(StatusCode::OK, &model_json(&id, b.created)))
            } else {
                Err(ApiError::model_not_found(&id))
            }
        }
        Route::Chat => {
            let b = backend(state)?;
            let body = read_body(state, req).await?;
            let v = wire::parse_body(&body)?;
            let call = wire::chat(&v, b.n_vocab())?;
            // A `{base}+{adapter}` name is answered by that adapter, locally;
            // everything else goes through the gateway when one is configured.
            let picked = pick_backend(state, call.model_given.then_some(call.request.model.as_str()))?;
            match &state.gateway {
                Some(gw) if std::ptr::eq(picked.as_ref(), b) => crate::hybrid::chat(state, b, Arc::clone(gw), call, t0).await,
                _ => chat(state, picked, call, t0).await,
            }
        }
        Route::Completions => {
            let b = backend(state)?;
            let body = read_body(state, req).await?;
            let v = wire::parse_body(&body)?;
            let call = wire::completion(&v, b.n_vocab())?;
            let b = pick_backend(state, call.model.as_deref())?;
            completion(state, b, call, t0).await
        }
        Route::Embeddings => {
            let Some(embedder) = state.embedder.clone() else {
                return Err(ApiError::not_configured(
                    "this server has no embedding model configured; /v1/embeddings is unavailable",
                ));
            };
            let body = read_body(state, req).await?;
            let v = wire::parse_body(&body)?;
            let call = wire::embedding(&v)?;
            crate::embed::respond(embedder, call)
                .await
                .map(|v| json_response(StatusCode::OK, &v))
        }
        Route::Unknown => Err(ApiError::not_found(req.uri().path())),
    }
}

/// The routing alias and the forced-cloud model, when there is a gateway.
fn gateway_models(state: &State) -> Vec<String> {
    let Some(gw) = &state.gateway else {
        return Vec::new();
    };
    let mut v = vec![gw.alias().to_string()];
    if let Some(m) = gw.cloud_model() {
        v.push(format!("cloud/{m}"));
    }
    v
}

fn model_json(id: &str, created: u64) -> Value {
    json!({"id": id, "object": "model", "created": created, "owned_by": "hearth"})
}

pub(crate) fn new_id(state: &State, prefix: &str) -> String {
    let n = state.ids.fetch_add(1, Ordering::Relaxed);
    format!("{prefix}-{:08x}{n:08x}", state.boot)
}

async fn chat(
    state: &Arc<State>,
    b: Arc<Local>,
    call: wire::ChatCall,
    t0: Instant,
) -> Result<Response<Body>, ApiError> {
    let (stream, include_usage) = (call.request.stream, call.request.include_usage);
    let (rx, meta) = start_chat(state, &b, call, t0).await?;
    finish(rx, meta, stream, include_usage).await
}

/// Prepares and submits a chat request to the local model: its event
/// receiver and the response's identity.
pub(crate) async fn start_chat(
    state: &Arc<State>,
    b: &Local,
    call: wire::ChatCall,
    t0: Instant,
) -> Result<
    (
        tokio::sync::mpsc::UnboundedReceiver<hearth_engine::scheduler::Event>,
        Meta,
    ),
    ApiError,
> {
    // Rendering and tokenizing up to a body-limit of text, and compiling a
    // schema, is CPU work: keep it off the connection threads.
    // An adapter shares its base's tokenizer and chat template, so the
    // base prepares the prompt for either.
    let (local, call) = (shared_backend(state)?, Arc::new(call));
    let c = Arc::clone(&call);
    let prepared = blocking(move || local.prepare_chat(&c)).await??;
    let req = &call.request;
    let seed = req.params.seed.unwrap_or_else(|| b.next_seed());
    let render_special = prepared.tools.is_some();
    let started = b.start(
        prepared.prompt,
        &req.params,
        &call.local,
        call.max_param,
        "messages",
        prepared.processors,
        render_special,
        seed,
    )?;
    let meta = Meta {
        api: Api::Chat,
        id: new_id(state, "chatcmpl"),
        created: crate::backend::unix_now(),
        model: b.model_id.clone(),
        route: "/v1/chat/completions",
        t0,
        metrics: Arc::clone(&state.metrics),
        prompt_tokens: started.prompt_tokens,
        n: started.n,
        logprobs: req.params.logprobs,
        echo: None,
        tools: prepared.tools,
        seed,
    };
    Ok((started.rx, meta))
}

async fn completion(
    state: &Arc<State>,
    b: Arc<Local>,
    call: wire::CompletionCall,
    t0: Instant,
) -> Result<Response<Body>, ApiError> {
    let (local, p, echo) = (Arc::clone(&b), call.prompt.clone(), call.echo);
    let (prompt, echo) = blocking(move || {
        let echo = echo.then(|| match &p {
            wire::Prompt::Text(t) => t.clone(),
            wire::Prompt::Tokens(t) => local.detokenize(t),
        });
        (local.completion_prompt(&p), echo)
    })
    .await?;
    let seed = call.params.seed.unwrap_or_else(|| b.next_seed());
    let started = b.start(
        prompt,
        &call.params,
        &call.local,
        "max_tokens",
        "prompt",
        Vec::new(),
        false,
        seed,
    )?;
    let meta = Meta {
        api: Api::Completion,
        id: new_id(state, "cmpl"),
        created: crate::backend::unix_now(),
        model: b.model_id.clone(),
        route: "/v1/completions",
        t0,
        metrics: Arc::clone(&state.metrics),
        prompt_tokens: started.prompt_tokens,
        n: started.n,
        logprobs: call.params.logprobs,
        echo,
        tools: None,
        seed,
    };
    finish(started.rx, meta, call.stream, call.include_usage).await
}

pub(crate) async fn finish(
    rx: tokio::sync::mpsc::UnboundedReceiver<hearth_engine::scheduler::Event>,
    meta: Meta,
    stream: bool,
    include_usage: bool,
) -> Result<Response<Body>, ApiError> {
    if stream {
        let mut r = Response::new(Body::Sse(Box::new(SseBody::new(rx, meta, include_usage))));
        let h = r.headers_mut();
        h.insert(CONTENT_TYPE, HeaderValue::from_static("text/event-stream"));
        h.insert(CACHE_CONTROL, HeaderValue::from_static("no-cache"));
        h.insert("x-accel-buffering", HeaderValue::from_static("no"));
        return Ok(r);
    }
    let choices = collect(rx, &meta).await?;
    Ok(json_response(
        StatusCode::OK,
        &response_json(&meta, &choices),
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn routes_with_and_without_prefix() {
        assert_eq!(Route::parse("/v1/chat/completions"), Route::Chat);
        assert_eq!(Route::parse("/chat/completions"), Route::Chat);
        assert_eq!(Route::parse("/v1/models/abc"), Route::Model("abc".into()));
        assert_eq!(Route::parse("/models"), Route::Models);
        assert_eq!(Route::parse("/v1health"), Route::Unknown);
        assert_eq!(Route::parse("/v1/models/"), Route::Unknown);
        assert_eq!(Route::parse("/health"), Route::Health);
        assert_eq!(Route::parse("/v1/embeddings"), Route::Embeddings);
    }

    #[test]
    fn host_names() {
        assert_eq!(host_name("localhost:8080"), "localhost");
        assert_eq!(host_name("[::1]:80"), "::1");
        assert_eq!(host_name("Example.COM."), "example.com");
        assert_eq!(host_name("127.0.0.1"), "127.0.0.1");
    }
}
