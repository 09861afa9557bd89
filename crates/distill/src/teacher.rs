//! Teachers for `hearth distill generate` / `eval`: anything that answers a
//! chat conversation and says how many tokens it read and wrote.
//!
//! * [`HttpTeacher`]: an OpenAI-compatible endpoint through `hearth-cloud`
//!   (the only code in Hearth that opens outbound connections). Every prompt
//!   first passes the privacy guard (`Guard::decide` with the cloud route):
//!   what the policy says to redact is replaced by placeholders before it
//!   leaves and restored in the answer; a prompt the policy keeps local or
//!   blocks is not sent ([`TeacherError::Privacy`]). The API key comes from
//!   an environment variable named in the spec, never from the spec itself.
//! * [`LocalTeacher`]: a GGUF model through `hearth-engine`, with its own
//!   chat template; exact token counts; optionally the top-k log-probability
//!   rows that `hearth distill train --kl` reads.
//!
//! Deliberately absent: batching several prompts into one call, the OpenAI
//! batch API, logprobs from URL teachers (`hearth-cloud` neither requests nor
//! surfaces them), and constrained (schema) decoding for the local teacher
//! (its answers are validated afterwards like any other).

use crate::data::Message;
use crate::spec::TeacherParams;
use hearth_api::{ChatEvent, ChatRequest, ResponseFormat, Role, Route};
use hearth_cloud::{BreakerConfig, CloudClient, CloudConfig, CloudError};
use hearth_engine::{Engine, Flow, GenerateRequest, SamplerConfig};
use hearth_guard::{Decision, Guard, Policy, Secret};
use serde_json::Value as Json;
use std::time::{Duration, Instant};

/// One request to a teacher.
#[derive(Clone, Debug, PartialEq)]
pub struct TeacherCall {
    pub messages: Vec<Message>,
    pub max_tokens: u32,
    pub temperature: f32,
    pub seed: u64,
    /// Structured tasks: sent as `response_format` (URL teachers).
    pub schema: Option<Json>,
    /// Local teachers: top-k log-probabilities per answer token (0 = none).
    pub top_k: usize,
}

/// A teacher's answer.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct TeacherReply {
    pub text: String,
    pub prompt_tokens: u64,
    pub completion_tokens: u64,
    /// The server sent no usage; counts are estimated from the text (bytes/4,
    /// rounded up, plus 4 per message).
    pub usage_estimated: bool,
    pub topk: Option<Vec<Vec<(u32, f32)>>>,
    pub seconds: f64,
}

/// Why a teacher call produced no answer.
#[derive(Debug, thiserror::Error)]
pub enum TeacherError {
    #[error("teacher timed out: {0}")]
    Timeout(CloudError),
    #[error("teacher request failed: {0}")]
    Cloud(CloudError),
    /// The answer stream broke after it started.
    #[error("teacher answer broke off: {0}")]
    Stream(String),
    /// The teacher answered with nothing usable.
    #[error("teacher returned an unusable answer: {0}")]
    Garbage(String),
    /// The privacy guard did not let the prompt leave the machine.
    #[error("the privacy policy kept this prompt local: {0}")]
    Privacy(String),
    #[error("local teacher: {0}")]
    Local(String),
    #[error("teacher setup: {0}")]
    Setup(String),
}

impl TeacherError {
    /// Short machine-readable kind, for reports.
    pub fn kind(&self) -> &'static str {
        match self {
            TeacherError::Timeout(_) => "timeout",
            TeacherError::Cloud(e) => e.kind(),
            TeacherError::Stream(_) => "stream",
            TeacherError::Garbage(_) => "garbage",
            TeacherError::Privacy(_) => "privacy",
            TeacherError::Local(_) => "local",
            TeacherError::Setup(_) => "setup",
        }
    }
}

/// Anything that answers conversations.
pub trait Teacher {
    /// Recorded in every record's metadata.
    fn name(&self) -> String;
    /// The local engine, when the teacher is a local model (for top-k rows
    /// and teacher-forced comparisons).
    fn engine(&self) -> Option<&Engine> {
        None
    }
    fn complete(&mut self, call: &TeacherCall) -> Result<TeacherReply, TeacherError>;
}

/// Rough token count for servers that report no usage.
pub fn estimate_tokens(text: &str) -> u64 {
    (text.len() as u64).div_ceil(4)
}

/// A conservative upper bound on the input tokens of `messages` for any
/// byte-level tokenizer (at most one token per byte) plus template overhead:
/// what the budget check charges before a call.
pub fn input_token_bound(messages: &[Message]) -> u64 {
    messages.iter().map(|m| m.content.len() as u64 + 16).sum::<u64>() + 16
}

/// An OpenAI-compatible endpoint behind the privacy guard.
pub struct HttpTeacher {
    client: CloudClient,
    guard: Guard,
    rt: tokio::runtime::Runtime,
    model: String,
}

impl HttpTeacher {
    /// `base_url` as for `hearth-cloud` (`http://127.0.0.1:8080/v1`); the
    /// API key is read from `params.api_key_env` when set.
    pub fn new(base_url: &str, params: &TeacherParams, policy: Policy) -> Result<HttpTeacher, TeacherError> {
        let mut cfg = CloudConfig::new(base_url, params.model.clone());
        if let Some(var) = &params.api_key_env {
            let key = std::env::var(var).map_err(|_| TeacherError::Setup(format!("environment variable {var} (teacher.api_key_env) is not set")))?;
            cfg.api_key = Some(Secret::new(key));
        }
        cfg.deadline = Duration::from_secs_f64(params.timeout_s);
        cfg.connect_timeout = cfg.deadline.min(Duration::from_secs(10));
        // The generator decides itself when to stop after failures
        // (`max_consecutive_errors`); a breaker would turn one slow answer
        // into a run of fail-fast errors.
        cfg.breaker = BreakerConfig::disabled();
        let client = CloudClient::new(cfg).map_err(|e| TeacherError::Setup(e.to_string()))?;
        let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().map_err(|e| TeacherError::Setup(format!("async runtime: {e}")))?;
        Ok(HttpTeacher { client, guard: Guard::new(policy), rt, model: params.model.clone() })
    }
}

fn role(r: &str) -> Role {
    match r {
        "system" => Role::System,
        "assistant" => Role::Assistant,
        _ => Role::User,
    }
}

impl Teacher for HttpTeacher {
    fn name(&self) -> String {
        self.model.clone()
    }

    fn complete(&mut self, call: &TeacherCall) -> Result<TeacherReply, TeacherError> {
        let msgs: Vec<hearth_api::Message> = call
            .messages
            .iter()
            .map(|m| hearth_api::Message { role: role(&m.role), content: m.content.clone(), name: None, tool_calls: Vec::new(), tool_call_id: None })
            .collect();
        let mut req = ChatRequest::new("hearth/distill", msgs);
        req.params.max_tokens = Some(call.max_tokens);
        req.params.temperature = call.temperature;
        req.params.seed = Some(call.seed);
        req.stream = true;
        req.include_usage = true;
        if let Some(s) = &call.schema {
            req.response_format = ResponseFormat::JsonSchema { name: "answer".into(), schema: s.clone(), strict: false };
        }
        let (safe, restorer) = match self.guard.decide(&req, Route::Cloud) {
            Decision::Cloud(safe, restorer) => (safe, restorer),
            Decision::Local { reasons } => return Err(TeacherError::Privacy(reasons.join(","))),
            Decision::Block { types } => return Err(TeacherError::Privacy(types.iter().map(|t| t.as_str()).collect::<Vec<_>>().join(","))),
        };
        let t0 = Instant::now();
        let client = self.client.clone();
        let (text, usage) = self.rt.block_on(async move {
            let mut stream = client.chat(safe).await.map_err(|e| match e {
                e @ CloudError::Timeout { .. } => TeacherError::Timeout(e),
                e => TeacherError::Cloud(e),
            })?;
            let mut text = String::new();
            let mut usage = None;
            while let Some(ev) = stream.next().await {
                match ev {
                    ChatEvent::Delta { index: 0, text: t } => text.push_str(&t),
                    ChatEvent::Usage(u) => usage = Some(u),
                    ChatEvent::Error { message } => {
                        return Err(match stream.failure() {
                            Some(e @ CloudError::Timeout { .. }) => TeacherError::Stream(format!("timeout: {e}")),
                            _ => TeacherError::Stream(message),
                        })
                    }
                    _ => {}
                }
            }
            Ok::<_, TeacherError>((text, usage))
        })?;
        let text = restorer.restore(&text).trim().to_string();
        if text.is_empty() {
            return Err(TeacherError::Garbage("empty answer".into()));
        }
        let (prompt_tokens, completion_tokens, usage_estimated) = match usage {
            Some(u) => (u.prompt_tokens as u64, u.completion_tokens as u64, false),
            None => (call.messages.iter().map(|m| estimate_tokens(&m.content) + 4).sum(), estimate_tokens(&text), true),
        };
        Ok(TeacherReply { text, prompt_tokens, completion_tokens, usage_estimated, topk: None, seconds: t0.elapsed().as_secs_f64() })
    }
}

/// A local GGUF model as the teacher.
pub struct LocalTeacher {
    engine: Engine,
    name: String,
}

impl LocalTeacher {
    pub fn new(engine: Engine, name: impl Into<String>) -> LocalTeacher {
        LocalTeacher { engine, name: name.into() }
    }
}

/// Generates an answer to `messages` with `engine` (its own chat template).
/// Returns the text, prompt and completion token counts.
pub fn local_answer(engine: &Engine, messages: &[Message], max_tokens: usize, sampler: SamplerConfig) -> crate::Result<(String, usize, usize)> {
    let fmt = hearth_engine::chat::ChatFormat::from_model(engine.model())?;
    let msgs: Vec<Json> = messages.iter().map(|m| serde_json::json!({"role": m.role, "content": m.content})).collect();
    let mut rr = hearth_chat::RenderRequest::new(msgs);
    rr.add_generation_prompt = true;
    let prompt = fmt.prompt_tokens(engine.model(), rr)?;
    let n_ctx = engine.model().config().n_ctx_train;
    let max_tokens = max_tokens.min(n_ctx.saturating_sub(prompt.len()));
    let n_prompt = prompt.len();
    let mut session = engine.new_session(n_ctx);
    let req = GenerateRequest { prompt, max_tokens, sampler, ignore_eos: false };
    let mut bytes = Vec::new();
    let stats = engine.generate(&mut session, &req, &mut |ev| {
        bytes.extend_from_slice(ev.piece);
        Flow::Continue
    })?;
    Ok((String::from_utf8_lossy(&bytes).trim().to_string(), n_prompt, stats.generated_tokens))
}

impl Teacher for LocalTeacher {
    fn name(&self) -> String {
        self.name.clone()
    }

    fn engine(&self) -> Option<&Engine> {
        Some(&self.engine)
    }

    fn complete(&mut self, call: &TeacherCall) -> Result<TeacherReply, TeacherError> {
        let t0 = Instant::now();
        let sampler = SamplerConfig { temperature: call.temperature, seed: call.seed, ..SamplerConfig::default() };
        let (text, np, nc) = local_answer(&self.engine, &call.messages, call.max_tokens as usize, sampler).map_err(|e| TeacherError::Local(e.to_string()))?;
        if text.is_empty() {
            return Err(TeacherError::Garbage("empty answer".into()));
        }
        let topk = if call.top_k > 0 {
            let mut conv = call.messages.clone();
            conv.push(Message { role: "assistant".into(), content: text.clone() });
            crate::kd::answer_topk(&self.engine, &conv, call.top_k).map_err(|e| TeacherError::Local(e.to_string()))?
        } else {
            None
        };
        Ok(TeacherReply { text, prompt_tokens: np as u64, completion_tokens: nc as u64, usage_estimated: false, topk, seconds: t0.elapsed().as_secs_f64() })
    }
}
