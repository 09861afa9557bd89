//! The local model behind the API: prompt construction (chat template or
//! raw text), constrained decoding (hearth-grammar: `response_format` JSON
//! modes and forced tool calls as per-choice logits processors), sampler
//! settings, submission to the scheduler, tool-call detection on the output,
//! and the conversion of scheduler events into OpenAI JSON and SSE chunks.
//!
//! Tools: `tool_choice` `none` renders no tools and parses nothing; `auto`
//! renders the tools (or describes them in a system message when the
//! template cannot) and streams the output through hearth-grammar's
//! `ToolCallDetector`; `required` and a named function also constrain the
//! output to a call in the model family's format. Deliberately absent:
//! streaming partial tool-call arguments (a call is sent once complete), the
//! grammar's check-the-sampled-token-first fast path (the mask is computed
//! every step, because the sampler records what it draws).

use crate::error::{from_submit, ApiError};
use crate::metrics::Metrics;
use crate::wire::{ChatCall, LocalOptions, Prompt};
use bytes::Bytes;
use hearth_api::{ChatRequest, GenerationParams, ResponseFormat, Role, Tool, ToolCall, ToolChoice};
use hearth_chat::RenderRequest;
use hearth_engine::chat::ChatFormat;
use hearth_engine::scheduler::{
    Event, EventSink, Finish, Job, LogitsProcessor, Scheduler, SchedulerConfig, SchedulerStats,
    TokenLogprob,
};
use hearth_engine::{Engine, EngineError, SamplerConfig};
use hearth_grammar::{
    DetectorEvent, Grammar, JsonOptions, Matcher, SchemaError, TokenMask, ToolCallConstraint,
    ToolCallDetector, ToolError, ToolFormat,
};
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;
use serde_json::{json, Value};
use std::collections::VecDeque;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, OnceLock};
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
    /// The model family's tool-call syntax.
    pub tool_format: ToolFormat,
    /// Whether the chat template renders tool definitions itself.
    template_tools: bool,
    /// Vocabulary tables for constrained decoding, built on first use.
    mask: OnceLock<Arc<TokenMask>>,
}

/// Grammar-constrained decoding as a scheduler logits processor.
struct GrammarProcessor(Matcher<Grammar>);

impl LogitsProcessor for GrammarProcessor {
    fn process(&mut self, logits: &mut [f32]) {
        self.0.mask_logits(logits);
    }

    fn accept(&mut self, token: u32) -> Result<(), String> {
        self.0.accept_token(token).map_err(|e| e.to_string())
    }

    fn is_finished(&self) -> bool {
        self.0.is_finished()
    }
}

/// A chat request made ready for the scheduler.
pub struct PreparedChat {
    pub prompt: Vec<u32>,
    /// One per choice, or none.
    pub processors: Vec<Box<dyn LogitsProcessor>>,
    /// Parse tool calls out of the output in this format.
    pub tools: Option<ToolFormat>,
}

fn schema_error(e: SchemaError) -> ApiError {
    ApiError::invalid_value(
        "response_format.json_schema.schema",
        format!("this JSON Schema cannot be enforced: {e}"),
    )
}

fn tool_error(e: ToolError, tools: &[Tool]) -> ApiError {
    match e {
        ToolError::Schema { name, source } => {
            let i = tools.iter().position(|t| t.name == name).unwrap_or(0);
            ApiError::invalid_value(
                &format!("tools[{i}].function.parameters"),
                format!("tool '{name}': this JSON Schema cannot be enforced: {source}"),
            )
        }
        ToolError::UnknownFunction(_) => {
            ApiError::invalid_value("tool_choice.function.name", e.to_string())
        }
        ToolError::BadName(_) => ApiError::invalid_value("tools", e.to_string()),
        ToolError::NoTools | ToolError::NotConstrained => {
            ApiError::invalid_value("tool_choice", e.to_string())
        }
    }
}

/// Tool definitions as chat templates and OpenAI write them.
fn tools_json(tools: &[Tool]) -> Vec<Value> {
    tools
        .iter()
        .map(|t| {
            let mut f = json!({"name": t.name, "parameters": t.parameters});
            if let Some(d) = &t.description {
                f["description"] = json!(d);
            }
            json!({"type": "function", "function": f})
        })
        .collect()
}

/// A system-prompt description of the tools for templates that do not
/// render tools themselves (the approach of llama.cpp's generic tool
/// handler), with the call syntax of `format`.
fn describe_tools(tools: &[Tool], format: ToolFormat) -> String {
    let list = serde_json::to_string_pretty(&tools_json(tools)).unwrap_or_default();
    let example = match format {
        ToolFormat::Hermes => "<tool_call>\n{\"name\": \"<function name>\", \"arguments\": {<arguments as a JSON object>}}\n</tool_call>",
        _ => "{\"name\": \"<function name>\", \"arguments\": {<arguments as a JSON object>}}",
    };
    format!("You can call the following tools:\n{list}\n\nTo call a tool, answer with exactly:\n{example}")
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
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

impl Local {
    pub fn new(
        engine: Arc<Engine>,
        cfg: SchedulerConfig,
        model_id: String,
    ) -> Result<Local, EngineError> {
        let format = ChatFormat::from_model(engine.model())?;
        let scheduler = Scheduler::start(Arc::clone(&engine), cfg);
        let nanos = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_nanos() as u64)
            .unwrap_or(0);
        let tool_format = ToolFormat::detect(
            engine.model().chat_template().unwrap_or(""),
            Some(engine.tokenizer()),
        );
        let template_tools = format.template.template.capabilities().tools;
        Ok(Local {
            engine,
            format,
            scheduler,
            model_id,
            created: unix_now(),
            seeds: AtomicU64::new(nanos),
            tool_format,
            template_tools,
            mask: OnceLock::new(),
        })
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

    /// A fresh seed (requests without one).
    pub fn next_seed(&self) -> u64 {
        self.seeds
            .fetch_add(0x9E37_79B9_7F4A_7C15, Ordering::Relaxed)
    }

    /// Renders the prompt and builds the constraints of a chat request (CPU
    /// work: call it off the connection threads).
    pub fn prepare_chat(&self, call: &ChatCall) -> Result<PreparedChat, ApiError> {
        let req = &call.request;
        let use_tools = !req.tools.is_empty() && req.tool_choice != ToolChoice::None;
        let opts = JsonOptions::default();
        let grammar = match (&req.tool_choice, &req.response_format) {
            (ToolChoice::Required | ToolChoice::Function(_), _) if use_tools => Some(
                ToolCallConstraint::build(
                    self.tool_format,
                    &req.tools,
                    &req.tool_choice,
                    self.engine.tokenizer(),
                    call.parallel_tool_calls,
                    opts,
                )
                .map_err(|e| tool_error(e, &req.tools))?,
            ),
            (_, ResponseFormat::JsonObject) => Some(Grammar::json_object(opts)),
            (_, ResponseFormat::JsonSchema { schema, .. }) => {
                Some(Grammar::json_schema(schema, opts).map_err(schema_error)?)
            }
            _ => None,
        };
        let prompt = self.chat_prompt(req, use_tools)?;
        let processors: Vec<Box<dyn LogitsProcessor>> = match grammar {
            Some(g) => {
                let g = Arc::new(g);
                let mask = self
                    .mask
                    .get_or_init(|| Arc::new(TokenMask::new(self.engine.tokenizer())));
                (0..req.params.n)
                    .map(|_| {
                        Box::new(GrammarProcessor(Matcher::new(
                            Arc::clone(mask),
                            Arc::clone(&g),
                        ))) as Box<dyn LogitsProcessor>
                    })
                    .collect()
            }
            None => Vec::new(),
        };
        Ok(PreparedChat {
            prompt,
            processors,
            tools: use_tools.then_some(self.tool_format),
        })
    }

    /// Renders the conversation with the model's template and tokenizes it
    /// like llama-server.
    pub fn chat_prompt(&self, req: &ChatRequest, with_tools: bool) -> Result<Vec<u32>, ApiError> {
        let mut messages: Vec<Value> = req
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
        let mut tools = None;
        if with_tools {
            if self.template_tools {
                tools = Some(tools_json(&req.tools));
            } else {
                let text = describe_tools(&req.tools, self.tool_format);
                match messages.first_mut() {
                    Some(first) if first["role"] == "system" => {
                        let old = first["content"].as_str().unwrap_or("").to_string();
                        first["content"] = json!(format!("{old}\n\n{text}"));
                    }
                    _ => messages.insert(0, json!({"role": "system", "content": text})),
                }
            }
        }
        let mut r = RenderRequest::new(messages);
        r.tools = tools;
        r.add_generation_prompt = true;
        self.format
            .prompt_tokens(self.engine.model(), r)
            .map_err(|e| {
                ApiError::invalid_value(
                    "messages",
                    format!("the chat template cannot render these messages: {e}"),
                )
            })
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

    fn sampler(&self, p: &GenerationParams, local: &LocalOptions, seed: u64) -> SamplerConfig {
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
    /// errors; `prompt_param` the prompt. Without a seed in `p`, `seed` is
    /// used (the caller draws it, so the same one can seed tool-call ids).
    #[allow(clippy::too_many_arguments)]
    pub fn start(
        &self,
        prompt: Vec<u32>,
        p: &GenerationParams,
        local: &LocalOptions,
        max_param: &str,
        prompt_param: &str,
        processors: Vec<Box<dyn LogitsProcessor>>,
        render_special: bool,
        seed: u64,
    ) -> Result<Started, ApiError> {
        let n_ctx = self.n_ctx();
        if prompt.is_empty() {
            return Err(ApiError::invalid_value(prompt_param, "the prompt is empty"));
        }
        let max_tokens = match p.max_tokens {
            Some(m) => m as usize,
            None if prompt.len() < n_ctx => n_ctx - prompt.len(),
            // No room for even one token: the prompt alone is too long.
            None => {
                return Err(ApiError::context_overflow(
                    prompt.len(),
                    1,
                    n_ctx,
                    prompt_param,
                ))
            }
        };
        if prompt.len().saturating_add(max_tokens) > n_ctx {
            return Err(ApiError::context_overflow(
                prompt.len(),
                max_tokens,
                n_ctx,
                max_param,
            ));
        }
        let slots = self.scheduler.config().n_slots;
        if p.n as usize > slots {
            return Err(ApiError::invalid_value(
                "n",
                format!(
                    "'n' is {} but this server runs {slots} parallel slots (--parallel)",
                    p.n
                ),
            ));
        }
        let (tx, rx) = unbounded_channel();
        let prompt_tokens = prompt.len();
        let job = Job {
            prompt,
            n: p.n as usize,
            max_tokens,
            sampler: self.sampler(p, local, seed),
            stop: p.stop.clone(),
            logprobs: p.logprobs.then_some(p.top_logprobs as usize),
            logit_bias: local.logit_bias.clone(),
            ignore_eos: local.ignore_eos,
            render_special,
            processors,
            sink: Arc::new(ChannelSink(tx)),
        };
        self.scheduler
            .submit(job)
            .map_err(|e| from_submit(e, max_param))?;
        Ok(Started {
            rx,
            prompt_tokens,
            n: p.n as usize,
        })
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
    /// Detect tool calls in the output, in this format.
    pub tools: Option<ToolFormat>,
    /// Seeds the tool-call ids (choice `i` uses `seed + i`).
    pub seed: u64,
}

/// Splits a choice's text into content and tool calls.
struct ChoiceOutput {
    detector: Option<ToolCallDetector>,
    rng: ChaCha8Rng,
}

impl ChoiceOutput {
    fn new(meta: &Meta, choice: usize) -> ChoiceOutput {
        ChoiceOutput {
            detector: meta.tools.map(ToolCallDetector::new),
            rng: ChaCha8Rng::seed_from_u64(meta.seed.wrapping_add(choice as u64)),
        }
    }

    fn push(&mut self, text: String) -> Vec<DetectorEvent> {
        match &mut self.detector {
            Some(d) => d.push(&text, &mut self.rng),
            None if text.is_empty() => Vec::new(),
            None => vec![DetectorEvent::Content(text)],
        }
    }

    fn finish(&mut self) -> Vec<DetectorEvent> {
        match &mut self.detector {
            Some(d) => d.finish(&mut self.rng),
            None => Vec::new(),
        }
    }
}

/// One finished choice.
#[derive(Default)]
pub struct ChoiceOut {
    /// Prompt tokens as the source reported them at the end (0: unknown).
    pub prompt_tokens: usize,
    pub text: String,
    pub calls: Vec<ToolCall>,
    pub logprobs: Vec<TokenLogprob>,
    pub finish: Option<Finish>,
    pub completion_tokens: usize,
    pub cached_tokens: usize,
}

/// `tool_calls` when the output held calls and ended naturally; a cut-off
/// output is `length` even if complete calls came before the cut.
fn finish_reason(f: Option<Finish>, called: bool) -> Value {
    match f {
        Some(Finish::Length) => json!("length"),
        _ if called => json!("tool_calls"),
        Some(Finish::Eos | Finish::Stop { .. } | Finish::Constraint) => json!("stop"),
        None => Value::Null,
    }
}

fn tool_call_json(c: &ToolCall) -> Value {
    json!({"id": c.id, "type": "function", "function": {"name": c.name, "arguments": c.arguments}})
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
        let m: serde_json::Map<String, Value> = t
            .top
            .iter()
            .map(|(_, b, l)| (lossy(b), json!(lp(*l))))
            .collect();
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
pub async fn collect(
    mut rx: UnboundedReceiver<Event>,
    meta: &Meta,
) -> Result<Vec<ChoiceOut>, ApiError> {
    let mut out: Vec<ChoiceOut> = (0..meta.n).map(|_| ChoiceOut::default()).collect();
    let mut outputs: Vec<ChoiceOutput> = (0..meta.n).map(|i| ChoiceOutput::new(meta, i)).collect();
    let mut remaining = meta.n;
    let mut first = true;
    let absorb = |c: &mut ChoiceOut, events: Vec<DetectorEvent>| {
        for e in events {
            match e {
                DetectorEvent::Content(t) => c.text.push_str(&t),
                DetectorEvent::ToolCall(call) => c.calls.push(call),
            }
        }
    };
    while remaining > 0 {
        match rx.recv().await {
            Some(Event::Delta {
                choice,
                text,
                logprobs,
            }) => {
                if first && !text.is_empty() {
                    first = false;
                    meta.metrics.ttft(meta.route, meta.t0.elapsed());
                }
                if let (Some(c), Some(o)) = (out.get_mut(choice), outputs.get_mut(choice)) {
                    absorb(c, o.push(text));
                    c.logprobs.extend(logprobs);
                }
            }
            Some(Event::Done {
                choice,
                finish,
                stats,
            }) => {
                if let (Some(c), Some(o)) = (out.get_mut(choice), outputs.get_mut(choice)) {
                    if c.finish.is_none() {
                        remaining -= 1;
                        absorb(c, o.finish());
                    }
                    c.finish = Some(finish);
                    c.completion_tokens = stats.completion_tokens;
                    c.cached_tokens = stats.cached_tokens;
                    c.prompt_tokens = stats.prompt_tokens;
                }
            }
            Some(Event::Error { message }) => return Err(ApiError::internal(message)),
            None => return Err(ApiError::internal("generation ended unexpectedly")),
        }
    }
    let completion: usize = out.iter().map(|c| c.completion_tokens).sum();
    meta.metrics.tokens(
        meta.prompt_tokens,
        completion,
        out.first().map_or(0, |c| c.cached_tokens),
    );
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
            Api::Chat => {
                let mut message = json!({"role": "assistant", "content": c.text, "refusal": null});
                if !c.calls.is_empty() {
                    // OpenAI sends null content beside tool calls when there is no text.
                    if c.text.trim().is_empty() {
                        message["content"] = Value::Null;
                    }
                    message["tool_calls"] = Value::Array(c.calls.iter().map(tool_call_json).collect());
                }
                json!({
                    "index": i,
                    "message": message,
                    "logprobs": if meta.logprobs { chat_logprobs(&c.logprobs) } else { Value::Null },
                    "finish_reason": finish_reason(c.finish, !c.calls.is_empty()),
                })
            }
            Api::Completion => {
                let echo = meta.echo.as_deref().unwrap_or("");
                let mut offset = echo.len();
                json!({
                    "index": i,
                    "text": format!("{echo}{}", c.text),
                    "logprobs": if meta.logprobs { completion_logprobs(&c.logprobs, &mut offset) } else { Value::Null },
                    "finish_reason": finish_reason(c.finish, false),
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
    outputs: Vec<ChoiceOutput>,
    /// Tool calls sent so far, per choice.
    calls: Vec<usize>,
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
            outputs: (0..n).map(|i| ChoiceOutput::new(&meta, i)).collect(),
            calls: vec![0; n],
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
                        s.push_chunk(
                            json!({"index": i, "text": e, "logprobs": null, "finish_reason": null}),
                        );
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

    /// Chunks for what a choice's output processor released; logprobs go
    /// with the first content chunk (or alone, with empty content).
    fn push_chat(&mut self, choice: usize, events: Vec<DetectorEvent>, logprobs: &[TokenLogprob]) {
        let mut lp = if self.meta.logprobs && !logprobs.is_empty() {
            Some(chat_logprobs(logprobs))
        } else {
            None
        };
        for e in events {
            match e {
                DetectorEvent::Content(t) => {
                    let c = json!({"index": choice, "delta": {"content": t}, "logprobs": lp.take().unwrap_or(Value::Null), "finish_reason": null});
                    self.push_chunk(c);
                }
                DetectorEvent::ToolCall(call) => {
                    let k = self.calls.get(choice).copied().unwrap_or(0);
                    if let Some(n) = self.calls.get_mut(choice) {
                        *n += 1;
                    }
                    let mut tc = tool_call_json(&call);
                    tc["index"] = json!(k);
                    let c = json!({"index": choice, "delta": {"tool_calls": [tc]}, "logprobs": null, "finish_reason": null});
                    self.push_chunk(c);
                }
            }
        }
        if let Some(lp) = lp {
            self.push_chunk(json!({"index": choice, "delta": {"content": ""}, "logprobs": lp, "finish_reason": null}));
        }
    }

    fn on_event(&mut self, ev: Event) {
        match ev {
            Event::Delta {
                choice,
                text,
                logprobs,
            } => {
                if self.first && !text.is_empty() {
                    self.first = false;
                    self.meta
                        .metrics
                        .ttft(self.meta.route, self.meta.t0.elapsed());
                }
                let c = match self.meta.api {
                    Api::Chat => {
                        let events = match self.outputs.get_mut(choice) {
                            Some(o) => o.push(text),
                            None => return,
                        };
                        self.push_chat(choice, events, &logprobs);
                        return;
                    }
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
            Event::Done {
                choice,
                finish,
                stats,
            } => {
                if self.finished.get(choice).copied().unwrap_or(true) {
                    return;
                }
                self.finished[choice] = true;
                self.remaining -= 1;
                self.completion_tokens += stats.completion_tokens;
                if choice == 0 {
                    self.cached_tokens = stats.cached_tokens;
                    // A cloud answer's prompt count arrives only at its end.
                    if stats.prompt_tokens > 0 {
                        self.meta.prompt_tokens = stats.prompt_tokens;
                    }
                }
                let c = match self.meta.api {
                    Api::Chat => {
                        let events = self
                            .outputs
                            .get_mut(choice)
                            .map(|o| o.finish())
                            .unwrap_or_default();
                        self.push_chat(choice, events, &[]);
                        let called = self.calls.get(choice).is_some_and(|&n| n > 0);
                        json!({"index": choice, "delta": {}, "logprobs": null, "finish_reason": finish_reason(Some(finish), called)})
                    }
                    Api::Completion => {
                        json!({"index": choice, "text": "", "logprobs": null, "finish_reason": finish_reason(Some(finish), false)})
                    }
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
        m.metrics
            .tokens(m.prompt_tokens, self.completion_tokens, self.cached_tokens);
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
        self.out
            .push_back(sse(&ApiError::internal(message).to_json()));
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

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<http_body::Frame<Bytes>, Self::Error>>> {
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
