//! The local model behind the API: prompt construction (chat template or
//! raw text), sampler settings, submission to the scheduler, and the
//! conversion of scheduler events into OpenAI JSON and SSE chunks.

use crate::error::{from_submit, ApiError};
use crate::metrics::Metrics;
use crate::wire::{LocalOptions, Prompt};
use bytes::Bytes;
use hearth_api::{ChatRequest, GenerationParams, Role};
use hearth_chat::RenderRequest;
use hearth_engine::chat::ChatFormat;
use hearth_engine::scheduler::{Event, EventSink, Finish, Job, Scheduler, SchedulerConfig, SchedulerStats, TokenLogprob};
use hearth_engine::{Engine, EngineError, SamplerConfig};
use serde_json::{json, Value};
use std::collections::VecDeque;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::{Instant, SystemTime, UNIX_EPOCH};
use tokio::sync::mpsc::{unbounded_channel, UnboundedReceiver, UnboundedSender};

/// llama-server's defaults for the samplers OpenAI's API does not expose.
pub const DEFAULT_TOP_K: usize = 40;
pub const DEFAULT_MIN_P: f32 = 0.05;

/// `system_fingerprint` of every response.
pub const FINGERPRINT: &str = concat!("hearth-", env!("CARGO_PKG_VERSION"));

/// A loaded model with its scheduler.
pub struct Local {
    engine: Arc<Engine>,
    format: ChatFormat,
    scheduler: Scheduler,
    pub model_id: String,
    /// Unix time the model was loaded (`created` of `/v1/models`).
    pub created: u64,
    seeds: AtomicU64,
}

/// Delivers scheduler events to a request's task.
struct ChannelSink(UnboundedSender<Event>);

impl EventSink for ChannelSink {
    fn send(&self, event: Event) -> bool {
        self.0.send(event).is_ok()
    }

    fn is_closed(&self) -> bool {
        self.0.is_closed()
    }
}

/// A submitted generation.
pub struct Started {
    pub rx: UnboundedReceiver<Event>,
    pub prompt_tokens: usize,
    pub n: usize,
}

pub fn unix_now() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_secs()).unwrap_or(0)
}

impl Local {
    pub fn new(engine: Arc<Engine>, cfg: SchedulerConfig, model_id: String) -> Result<Local, EngineError> {
        let format = ChatFormat::from_model(engine.model())?;
        let scheduler = Scheduler::start(Arc::clone(&engine), cfg);
        let nanos = SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_nanos() as u64).unwrap_or(0);
        Ok(Local { engine, format, scheduler, model_id, created: unix_now(), seeds: AtomicU64::new(nanos) })
    }

    pub fn n_vocab(&self) -> usize {
        self.engine.model().config().n_vocab
    }

    pub fn n_ctx(&self) -> usize {
        self.scheduler.n_ctx()
    }

    pub fn stats(&self) -> SchedulerStats {
        self.scheduler.stats()
    }

    /// Renders the conversation with the model's template and tokenizes it
    /// like llama-server.
    pub fn chat_prompt(&self, req: &ChatRequest) -> Result<Vec<u32>, ApiError> {
        let messages: Vec<Value> = req
            .messages
            .iter()
            .map(|m| {
                // Most templates know no "developer" role; OpenAI treats it as
                // the system prompt.
                let role = if m.role == Role::Developer { Role::System } else { m.role };
                let mut v = json!({"role": role.as_str(), "content": m.content});
                if let Some(n) = &m.name {
                    v["name"] = json!(n);
                }
                if !m.tool_calls.is_empty() {
                    // Templates index arguments as a mapping (`tool_call.arguments | tojson`),
                    // so JSON arguments are passed parsed, as llama-server does.
                    let calls: Vec<Value> = m
                        .tool_calls
                        .iter()
                        .map(|c| {
                            let args = serde_json::from_str::<Value>(&c.arguments).unwrap_or_else(|_| json!(c.arguments));
                            json!({"id": c.id, "type": "function", "function": {"name": c.name, "arguments": args}})
                        })
                        .collect();
                    v["tool_calls"] = json!(calls);
                }
                if let Some(id) = &m.tool_call_id {
                    v["tool_call_id"] = json!(id);
                }
                v
            })
            .collect();
        let mut r = RenderRequest::new(messages);
        r.add_generation_prompt = true;
        self.format
            .prompt_tokens(self.engine.model(), r)
            .map_err(|e| ApiError::invalid_value("messages", format!("the chat template cannot render these messages: {e}")))
    }

    /// Raw-text prompts are tokenized as llama-server does (BOS as the
    /// vocabulary asks, special tokens parsed).
    pub fn completion_prompt(&self, p: &Prompt) -> Vec<u32> {
        match p {
            Prompt::Text(t) => self.engine.tokenize(t, true, true),
            Prompt::Tokens(t) => t.clone(),
        }
    }

    pub fn detokenize(&self, tokens: &[u32]) -> String {
        let mut d = self.engine.tokenizer().stream_decoder(false);
        let mut s = String::new();
        for &t in tokens {
            s.push_str(&d.push(t).text);
        }
        s.push_str(&d.finish().text);
        s
    }

    fn sampler(&self, p: &GenerationParams, local: &LocalOptions) -> SamplerConfig {
        // Without a seed every request draws a fresh one; with one, the
        // same request gives the same output.
        let seed = p.seed.unwrap_or_else(|| self.seeds.fetch_add(0x9E37_79B9_7F4A_7C15, Ordering::Relaxed));
        let mut top_k = local.top_k.unwrap_or(DEFAULT_TOP_K);
        let mut top_p = p.top_p;
        if top_p <= 0.0 {
            // OpenAI accepts top_p = 0: only the most likely token.
            top_k = 1;
            top_p = 1.0;
        }
        SamplerConfig {
            temperature: p.temperature,
            top_k,
            top_p,
            min_p: local.min_p.unwrap_or(DEFAULT_MIN_P),
            repeat_penalty: local.repeat_penalty.unwrap_or(1.0),
            repeat_last_n: 64,
            presence_penalty: p.presence_penalty,
            frequency_penalty: p.frequency_penalty,
            seed,
        }
    }

    /// Submits a generation. `max_param` names the length parameter for
    /// errors; `prompt_param` the prompt.
    pub fn start(
        &self,
        prompt: Vec<u32>,
        p: &GenerationParams,
        local: &LocalOptions,
        max_param: &str,
        prompt_param: &str,
    ) -> Result<Started, ApiError> {
        let n_ctx = self.n_ctx();
        if prompt.is_empty() {
            return Err(ApiError::invalid_value(prompt_param, "the prompt is empty"));
        }
        let max_tokens = match p.max_tokens {
            Some(m) => m as usize,
            None if prompt.len() < n_ctx => n_ctx - prompt.len(),
            // No room for even one token: the prompt alone is too long.
            None => return Err(ApiError::context_overflow(prompt.len(), 1, n_ctx, prompt_param)),
        };
        if prompt.len().saturating_add(max_tokens) > n_ctx {
            return Err(ApiError::context_overflow(prompt.len(), max_tokens, n_ctx, max_param));
        }
        let slots = self.scheduler.config().n_slots;
        if p.n as usize > slots {
            return Err(ApiError::invalid_value("n", format!("'n' is {} but this server runs {slots} parallel slots (--parallel)", p.n)));
        }
        let (tx, rx) = unbounded_channel();
        let prompt_tokens = prompt.len();
        let job = Job {
            prompt,
            n: p.n as usize,
            max_tokens,
            sampler: self.sampler(p, local),
            stop: p.stop.clone(),
            logprobs: p.logprobs.then_some(p.top_logprobs as usize),
            logit_bias: local.logit_bias.clone(),
            ignore_eos: local.ignore_eos,
            processors: Vec::new(),
            sink: Arc::new(ChannelSink(tx)),
        };
        self.scheduler.submit(job).map_err(|e| from_submit(e, max_param))?;
        Ok(Started { rx, prompt_tokens, n: p.n as usize })
    }
}

/// Which API a response is for.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Api {
    Chat,
    Completion,
}

/// Response identity and bookkeeping.
pub struct Meta {
    pub api: Api,
    pub id: String,
    pub created: u64,
    pub model: String,
    pub route: &'static str,
    pub t0: Instant,
    pub metrics: Arc<Metrics>,
    pub prompt_tokens: usize,
    pub n: usize,
    pub logprobs: bool,
    /// Legacy `echo`: the prompt text, prefixed to each choice.
    pub echo: Option<String>,
}

/// One finished choice.
#[derive(Default)]
pub struct ChoiceOut {
    pub text: String,
    pub logprobs: Vec<TokenLogprob>,
    pub finish: Option<Finish>,
    pub completion_tokens: usize,
    pub cached_tokens: usize,
}

fn finish_reason(f: Option<Finish>) -> Value {
    match f {
        Some(Finish::Length) => json!("length"),
        Some(Finish::Eos | Finish::Stop { .. } | Finish::Constraint) => json!("stop"),
        None => Value::Null,
    }
}

/// OpenAI reports impossible tokens as -9999 rather than -inf (JSON has no
/// infinities).
fn lp(v: f32) -> f32 {
    if v.is_finite() {
        v
    } else {
        -9999.0
    }
}

fn lossy(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

fn chat_logprobs(list: &[TokenLogprob]) -> Value {
    let content: Vec<Value> = list
        .iter()
        .map(|t| {
            json!({
                "token": lossy(&t.bytes),
                "logprob": lp(t.logprob),
                "bytes": t.bytes,
                "top_logprobs": t.top.iter().map(|(_, b, l)| json!({"token": lossy(b), "logprob": lp(*l), "bytes": b})).collect::<Vec<_>>(),
            })
        })
        .collect();
    json!({"content": content, "refusal": null})
}

/// Legacy completions logprobs; `offset` is the running text offset (bytes)
/// of the choice and is advanced.
fn completion_logprobs(list: &[TokenLogprob], offset: &mut usize) -> Value {
    let mut tokens = Vec::with_capacity(list.len());
    let mut token_logprobs = Vec::with_capacity(list.len());
    let mut top = Vec::with_capacity(list.len());
    let mut offsets = Vec::with_capacity(list.len());
    for t in list {
        let s = lossy(&t.bytes);
        offsets.push(*offset);
        *offset += s.len();
        tokens.push(s);
        token_logprobs.push(lp(t.logprob));
        let m: serde_json::Map<String, Value> = t.top.iter().map(|(_, b, l)| (lossy(b), json!(lp(*l)))).collect();
        top.push(Value::Object(m));
    }
    json!({"tokens": tokens, "token_logprobs": token_logprobs, "top_logprobs": top, "text_offset": offsets})
}

fn usage(prompt: usize, completion: usize, cached: usize) -> Value {
    json!({
        "prompt_tokens": prompt,
        "completion_tokens": completion,
        "total_tokens": prompt + completion,
        "prompt_tokens_details": {"cached_tokens": cached},
    })
}

/// Waits for every choice (non-streaming).
pub async fn collect(mut rx: UnboundedReceiver<Event>, meta: &Meta) -> Result<Vec<ChoiceOut>, ApiError> {
    let mut out: Vec<ChoiceOut> = (0..meta.n).map(|_| ChoiceOut::default()).collect();
    let mut remaining = meta.n;
    let mut first = true;
    while remaining > 0 {
        match rx.recv().await {
            Some(Event::Delta { choice, text, logprobs }) => {
                if first && !text.is_empty() {
                    first = false;
                    meta.metrics.ttft(meta.route, meta.t0.elapsed());
                }
                if let Some(c) = out.get_mut(choice) {
                    c.text.push_str(&text);
                    c.logprobs.extend(logprobs);
                }
            }
            Some(Event::Done { choice, finish, stats }) => {
                if let Some(c) = out.get_mut(choice) {
                    if c.finish.is_none() {
                        remaining -= 1;
                    }
                    c.finish = Some(finish);
                    c.completion_tokens = stats.completion_tokens;
                    c.cached_tokens = stats.cached_tokens;
                }
            }
            Some(Event::Error { message }) => return Err(ApiError::internal(message)),
            None => return Err(ApiError::internal("generation ended unexpectedly")),
        }
    }
    let completion: usize = out.iter().map(|c| c.completion_tokens).sum();
    meta.metrics.tokens(meta.prompt_tokens, completion, out.first().map_or(0, |c| c.cached_tokens));
    meta.metrics.latency(meta.route, meta.t0.elapsed());
    Ok(out)
}

/// The non-streaming response body.
pub fn response_json(meta: &Meta, choices: &[ChoiceOut]) -> Value {
    let completion: usize = choices.iter().map(|c| c.completion_tokens).sum();
    let cached = choices.first().map_or(0, |c| c.cached_tokens);
    let list: Vec<Value> = choices
        .iter()
        .enumerate()
        .map(|(i, c)| match meta.api {
            Api::Chat => json!({
                "index": i,
                "message": {"role": "assistant", "content": c.text, "refusal": null},
                "logprobs": if meta.logprobs { chat_logprobs(&c.logprobs) } else { Value::Null },
                "finish_reason": finish_reason(c.finish),
            }),
            Api::Completion => {
                let echo = meta.echo.as_deref().unwrap_or("");
                let mut offset = echo.len();
                json!({
                    "index": i,
                    "text": format!("{echo}{}", c.text),
                    "logprobs": if meta.logprobs { completion_logprobs(&c.logprobs, &mut offset) } else { Value::Null },
                    "finish_reason": finish_reason(c.finish),
                })
            }
        })
        .collect();
    json!({
        "id": meta.id,
        "object": if meta.api == Api::Chat { "chat.completion" } else { "text_completion" },
        "created": meta.created,
        "model": meta.model,
        "system_fingerprint": FINGERPRINT,
        "choices": list,
        "usage": usage(meta.prompt_tokens, completion, cached),
    })
}

/// A server-sent-events body: `data: {chunk}\n\n` per event, a usage chunk
/// when asked for, then `data: [DONE]`. Dropping it (client gone) drops the
/// receiver, which frees the request's slots at the next engine step.
pub struct SseBody {
    rx: UnboundedReceiver<Event>,
    out: VecDeque<Bytes>,
    meta: Meta,
    include_usage: bool,
    remaining: usize,
    finished: Vec<bool>,
    completion_tokens: usize,
    cached_tokens: usize,
    offsets: Vec<usize>,
    first: bool,
    ended: bool,
}

fn sse(v: &Value) -> Bytes {
    let mut b = Vec::with_capacity(256);
    b.extend_from_slice(b"data: ");
    // Serializing a Value cannot fail.
    let _ = serde_json::to_writer(&mut b, v);
    b.extend_from_slice(b"\n\n");
    Bytes::from(b)
}

impl SseBody {
    pub fn new(rx: UnboundedReceiver<Event>, meta: Meta, include_usage: bool) -> SseBody {
        let n = meta.n;
        let echo_len = meta.echo.as_ref().map_or(0, |e| e.len());
        let mut s = SseBody {
            rx,
            out: VecDeque::new(),
            include_usage,
            remaining: n,
            finished: vec![false; n],
            completion_tokens: 0,
            cached_tokens: 0,
            offsets: vec![echo_len; n],
            first: true,
            ended: false,
            meta,
        };
        for i in 0..n {
            match s.meta.api {
                // OpenAI opens each choice with the role.
                Api::Chat => {
                    let c = json!({"index": i, "delta": {"role": "assistant", "content": ""}, "logprobs": null, "finish_reason": null});
                    s.push_chunk(c);
                }
                Api::Completion => {
                    if let Some(e) = s.meta.echo.clone() {
                        s.push_chunk(json!({"index": i, "text": e, "logprobs": null, "finish_reason": null}));
                    }
                }
            }
        }
        s
    }

    fn push_chunk(&mut self, choice: Value) {
        let mut v = json!({
            "id": self.meta.id,
            "object": if self.meta.api == Api::Chat { "chat.completion.chunk" } else { "text_completion" },
            "created": self.meta.created,
            "model": self.meta.model,
            "system_fingerprint": FINGERPRINT,
            "choices": [choice],
        });
        if self.include_usage {
            v["usage"] = Value::Null;
        }
        self.out.push_back(sse(&v));
    }

    fn on_event(&mut self, ev: Event) {
        match ev {
            Event::Delta { choice, text, logprobs } => {
                if self.first && !text.is_empty() {
                    self.first = false;
                    self.meta.metrics.ttft(self.meta.route, self.meta.t0.elapsed());
                }
                let c = match self.meta.api {
                    Api::Chat => json!({
                        "index": choice,
                        "delta": {"content": text},
                        "logprobs": if self.meta.logprobs { chat_logprobs(&logprobs) } else { Value::Null },
                        "finish_reason": null,
                    }),
                    Api::Completion => {
                        let lps = match self.offsets.get_mut(choice) {
                            Some(off) if self.meta.logprobs => completion_logprobs(&logprobs, off),
                            _ => Value::Null,
                        };
                        json!({"index": choice, "text": text, "logprobs": lps, "finish_reason": null})
                    }
                };
                self.push_chunk(c);
            }
            Event::Done { choice, finish, stats } => {
                if self.finished.get(choice).copied().unwrap_or(true) {
                    return;
                }
                self.finished[choice] = true;
                self.remaining -= 1;
                self.completion_tokens += stats.completion_tokens;
                if choice == 0 {
                    self.cached_tokens = stats.cached_tokens;
                }
                let c = match self.meta.api {
                    Api::Chat => json!({"index": choice, "delta": {}, "logprobs": null, "finish_reason": finish_reason(Some(finish))}),
                    Api::Completion => json!({"index": choice, "text": "", "logprobs": null, "finish_reason": finish_reason(Some(finish))}),
                };
                self.push_chunk(c);
                if self.remaining == 0 {
                    self.end_ok();
                }
            }
            Event::Error { message } => self.end_err(message),
        }
    }

    fn end_ok(&mut self) {
        let m = &self.meta;
        m.metrics.tokens(m.prompt_tokens, self.completion_tokens, self.cached_tokens);
        m.metrics.latency(m.route, m.t0.elapsed());
        if self.include_usage {
            let v = json!({
                "id": m.id,
                "object": if m.api == Api::Chat { "chat.completion.chunk" } else { "text_completion" },
                "created": m.created,
                "model": m.model,
                "system_fingerprint": FINGERPRINT,
                "choices": [],
                "usage": usage(m.prompt_tokens, self.completion_tokens, self.cached_tokens),
            });
            self.out.push_back(sse(&v));
        }
        self.out.push_back(Bytes::from_static(b"data: [DONE]\n\n"));
        self.ended = true;
    }

    /// A failure after the stream started: an error event (OpenAI's SDKs
    /// raise it), and the stream ends without `[DONE]`.
    fn end_err(&mut self, message: String) {
        self.out.push_back(sse(&ApiError::internal(message).to_json()));
        self.ended = true;
    }
}

impl Drop for SseBody {
    fn drop(&mut self) {
        if !self.ended {
            self.meta.metrics.disconnect();
        }
    }
}

impl http_body::Body for SseBody {
    type Data = Bytes;
    type Error = std::convert::Infallible;

    fn poll_frame(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Result<http_body::Frame<Bytes>, Self::Error>>> {
        let this = self.get_mut();
        loop {
            if let Some(b) = this.out.pop_front() {
                return Poll::Ready(Some(Ok(http_body::Frame::data(b))));
            }
            if this.ended {
                return Poll::Ready(None);
            }
            match this.rx.poll_recv(cx) {
                Poll::Ready(Some(ev)) => this.on_event(ev),
                Poll::Ready(None) => this.end_err("generation ended unexpectedly".into()),
                Poll::Pending => return Poll::Pending,
            }
        }
    }
}
