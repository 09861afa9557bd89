//! [`ChatTemplate`]: compile once, render many requests.

use std::collections::BTreeMap;
use std::io;
use std::sync::OnceLock;

use minijinja::{Environment, ErrorKind, Value};
use serde_json::{Map, Value as Json};

use crate::clock::CivilTime;
use crate::error::{RenderFailure, TemplateError};
use crate::sandbox::{self, Raised, CLOCK_KEY, TEMPLATE_NAME};

/// Resource bounds of one template. Every render of the template runs under
/// all of them; exceeding any fails the render with a typed error.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TemplateLimits {
    /// Largest accepted template source.
    pub max_source_bytes: usize,
    /// MiniJinja fuel per render: about one unit per instruction and per 64
    /// bytes of data created (`Environment::set_fuel`). Bounds both time
    /// and memory (about `64 * fuel` bytes).
    pub fuel: u64,
    /// MiniJinja recursion limit (each macro call costs several levels).
    /// MiniJinja caps it at 500 without its `stacker` feature.
    pub max_recursion: usize,
    /// Largest rendered prompt.
    pub max_output_bytes: usize,
}

impl Default for TemplateLimits {
    /// Sized from measurements: the most expensive reference render uses
    /// about 4,500 fuel, a 200-turn, 400 KB conversation with tools through
    /// the Qwen3.5 template about 63,000; 1,000,000 fuel bounds a render's
    /// data to roughly 64 MB. The largest real template in testdata is
    /// about 30 KB.
    fn default() -> Self {
        TemplateLimits {
            max_source_bytes: 256 * 1024,
            fuel: 1_000_000,
            max_recursion: 200,
            max_output_bytes: 8 * 1024 * 1024,
        }
    }
}

/// What to render: the arguments of transformers' `apply_chat_template`.
///
/// `messages`, `tools`, `documents` and `kwargs` are JSON, exactly as the
/// OpenAI-style wire format carries them. Keys whose value is `null` are
/// dropped from each message before rendering, as transformers does
/// (`_normalize_chat_messages`).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct RenderRequest {
    /// The conversation: objects with `role`, `content` (a string or a list
    /// of parts), and optionally `tool_calls`, `tool_call_id`, `name`,
    /// `reasoning_content`, ...
    pub messages: Vec<Json>,
    /// JSON-schema function definitions; `None` renders `tools` as `None`.
    pub tools: Option<Vec<Json>>,
    /// RAG documents; `None` renders `documents` as `None`.
    pub documents: Option<Vec<Json>>,
    /// Append the header that opens the assistant's turn.
    pub add_generation_prompt: bool,
    /// Leave the final message open so the model continues it (the
    /// "prefill" form; transformers' `continue_final_message=True`).
    /// Incompatible with `add_generation_prompt`.
    pub continue_final_message: bool,
    /// `bos_token` as the template sees it; `None` leaves it undefined.
    pub bos_token: Option<String>,
    /// `eos_token` as the template sees it; `None` leaves it undefined.
    pub eos_token: Option<String>,
    /// Extra template variables (`enable_thinking`, `date_string`, ...).
    /// They override `bos_token` / `eos_token` like transformers' kwargs
    /// override the special-token map.
    pub kwargs: Map<String, Json>,
    /// The time `strftime_now` reports; `None` reads the system clock (UTC).
    pub now: Option<CivilTime>,
}

impl RenderRequest {
    /// A request for `messages` with everything else at its default.
    pub fn new(messages: Vec<Json>) -> RenderRequest {
        RenderRequest {
            messages,
            ..RenderRequest::default()
        }
    }
}

/// What a template makes use of, found by rendering probe conversations
/// (the approach llama.cpp's `minja` takes for its capability checks).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Capabilities {
    /// A tool definition's name appears in the prompt.
    pub tools: bool,
    /// An assistant tool call's function name appears in the prompt.
    pub tool_calls: bool,
    /// A leading system message renders (and its text appears).
    pub system_role: bool,
    /// The source reads `enable_thinking`.
    pub enable_thinking: bool,
}

/// What a render cost.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct RenderStats {
    /// Fuel consumed (compare with [`TemplateLimits::fuel`]).
    pub fuel_used: u64,
    /// Bytes of the rendered prompt.
    pub output_bytes: usize,
}

/// transformers' `continue_final_message` marker (`render_jinja_template`).
const CONTINUE_TAG: &str = "CONTINUE_FINAL_MESSAGE_TAG ";

/// Names transformers passes itself; a kwarg with one of them is a
/// Python `TypeError` (multiple values for a keyword argument).
const RESERVED: [&str; 4] = ["messages", "tools", "documents", "add_generation_prompt"];

/// Message fields transformers treats as the same reasoning text
/// (`_REASONING_FIELDS`, transformers 5.x).
const REASONING_FIELDS: [&str; 3] = ["reasoning_content", "thinking", "reasoning"];

/// A compiled, sandboxed chat template.
pub struct ChatTemplate {
    env: Environment<'static>,
    source: String,
    limits: TemplateLimits,
    caps: OnceLock<Capabilities>,
}

impl std::fmt::Debug for ChatTemplate {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ChatTemplate")
            .field("source_bytes", &self.source.len())
            .field("limits", &self.limits)
            .finish()
    }
}

/// Error raised by the output writer once the limit is crossed.
#[derive(Debug)]
struct OutputLimit;
impl std::fmt::Display for OutputLimit {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("output limit reached")
    }
}
impl std::error::Error for OutputLimit {}

struct LimitedWriter {
    buf: Vec<u8>,
    limit: usize,
}

impl io::Write for LimitedWriter {
    fn write(&mut self, data: &[u8]) -> io::Result<usize> {
        if self.buf.len().saturating_add(data.len()) > self.limit {
            return Err(io::Error::other(OutputLimit));
        }
        self.buf.extend_from_slice(data);
        Ok(data.len())
    }
    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

fn chain_has<'a, T: std::error::Error + 'static>(
    e: &'a (dyn std::error::Error + 'static),
) -> Option<&'a T> {
    let mut cur: Option<&(dyn std::error::Error + 'static)> = Some(e);
    while let Some(err) = cur {
        if let Some(t) = err.downcast_ref::<T>() {
            return Some(t);
        }
        if let Some(ioe) = err.downcast_ref::<io::Error>() {
            if let Some(inner) = ioe.get_ref() {
                if let Some(t) = inner.downcast_ref::<T>() {
                    return Some(t);
                }
            }
        }
        cur = err.source();
    }
    None
}

impl ChatTemplate {
    /// Compiles `source` in the sandbox.
    pub fn new(source: &str, limits: TemplateLimits) -> Result<ChatTemplate, TemplateError> {
        if source.len() > limits.max_source_bytes {
            return Err(TemplateError::SourceTooLarge {
                len: source.len(),
                limit: limits.max_source_bytes,
            });
        }
        let env = sandbox::build(source.to_string(), &limits).map_err(|e| map_error(e, &limits))?;
        Ok(ChatTemplate {
            env,
            source: source.to_string(),
            limits,
            caps: OnceLock::new(),
        })
    }

    /// The template text.
    pub fn source(&self) -> &str {
        &self.source
    }

    /// The bounds every render runs under.
    pub fn limits(&self) -> &TemplateLimits {
        &self.limits
    }

    /// Renders a conversation to the prompt text, following transformers'
    /// `apply_chat_template(..., tokenize=False)`.
    pub fn render(&self, req: &RenderRequest) -> Result<String, TemplateError> {
        self.render_with_stats(req).map(|(s, _)| s)
    }

    /// [`render`](Self::render), also reporting the fuel the render used.
    pub fn render_with_stats(
        &self,
        req: &RenderRequest,
    ) -> Result<(String, RenderStats), TemplateError> {
        if req.messages.is_empty() {
            return Err(TemplateError::Request(
                "Cannot apply chat template to an empty conversation. Provide at least one message.".into(),
            ));
        }
        if req.continue_final_message && req.add_generation_prompt {
            return Err(TemplateError::Request(
                "continue_final_message and add_generation_prompt are not compatible.".into(),
            ));
        }
        if let Some(name) = RESERVED.iter().find(|n| req.kwargs.contains_key(**n)) {
            return Err(TemplateError::Request(format!(
                "keyword argument '{name}' is set by the renderer"
            )));
        }
        let mut messages = Vec::with_capacity(req.messages.len());
        for (i, m) in req.messages.iter().enumerate() {
            let Json::Object(obj) = m else {
                return Err(TemplateError::Request(format!(
                    "message {i} is not a JSON object"
                )));
            };
            messages.push(alias_reasoning(drop_nulls(obj)));
        }
        let final_text = if req.continue_final_message {
            Some(tag_final_message(&self.source, &mut messages)?)
        } else {
            None
        };

        let mut ctx: BTreeMap<String, Value> = BTreeMap::new();
        if let Some(b) = &req.bos_token {
            ctx.insert("bos_token".into(), Value::from(b.as_str()));
        }
        if let Some(e) = &req.eos_token {
            ctx.insert("eos_token".into(), Value::from(e.as_str()));
        }
        for (k, v) in &req.kwargs {
            ctx.insert(k.clone(), json_to_value(v, 0)?);
        }
        let messages: Vec<Json> = messages.into_iter().map(Json::Object).collect();
        ctx.insert("messages".into(), json_to_value(&Json::Array(messages), 0)?);
        ctx.insert("tools".into(), opt_list(&req.tools)?);
        ctx.insert("documents".into(), opt_list(&req.documents)?);
        ctx.insert(
            "add_generation_prompt".into(),
            Value::from(req.add_generation_prompt),
        );
        if let Some(t) = req.now {
            ctx.insert(CLOCK_KEY.into(), clock_value(t));
        }

        let (rendered, mut stats) = self.render_context(Value::from(ctx))?;
        let rendered = match final_text {
            Some(text) => cut_at_continue_tag(rendered, &text)?,
            None => rendered,
        };
        stats.output_bytes = rendered.len();
        Ok((rendered, stats))
    }

    /// Renders with exactly `vars` as the template variables (no message
    /// normalisation, no `messages`/`tools` defaults), under the same
    /// sandbox and limits. For templates that are not chat templates, and
    /// for testing the sandbox.
    pub fn render_vars(
        &self,
        vars: &Map<String, Json>,
        now: Option<CivilTime>,
    ) -> Result<String, TemplateError> {
        let mut ctx: BTreeMap<String, Value> = BTreeMap::new();
        for (k, v) in vars {
            ctx.insert(k.clone(), json_to_value(v, 0)?);
        }
        if let Some(t) = now {
            ctx.insert(CLOCK_KEY.into(), clock_value(t));
        }
        self.render_context(Value::from(ctx)).map(|(s, _)| s)
    }

    fn render_context(&self, ctx: Value) -> Result<(String, RenderStats), TemplateError> {
        let tmpl = self
            .env
            .get_template(TEMPLATE_NAME)
            .map_err(|e| map_error(e, &self.limits))?;
        let mut w = LimitedWriter {
            buf: Vec::new(),
            limit: self.limits.max_output_bytes,
        };
        let captured = tmpl
            .render_captured_to(ctx, &mut w)
            .map_err(|e| map_error(e, &self.limits))?;
        let fuel_used = captured.state().fuel_levels().map_or(0, |(used, _)| used);
        drop(captured);
        let out = String::from_utf8(w.buf).map_err(|_| TemplateError::Render {
            kind: RenderFailure::Other,
            message: "rendered output is not UTF-8".into(),
            line: None,
        })?;
        let stats = RenderStats {
            fuel_used,
            output_bytes: out.len(),
        };
        Ok((out, stats))
    }

    /// What the template makes use of (computed on first call by rendering
    /// a few probe conversations, then cached).
    pub fn capabilities(&self) -> Capabilities {
        *self.caps.get_or_init(|| self.probe())
    }

    fn probe(&self) -> Capabilities {
        let user = |t: &str| serde_json::json!({"role": "user", "content": t});
        let tool = serde_json::json!({"type": "function", "function": {
            "name": "hearth_probe_tool", "description": "probe",
            "parameters": {"type": "object", "properties": {"x": {"type": "string"}}, "required": ["x"]}}});
        let renders_with = |req: RenderRequest, needle: &str| {
            self.render(&req)
                .map(|s| s.contains(needle))
                .unwrap_or(false)
        };
        let mut with_tools = RenderRequest::new(vec![user("hi")]);
        with_tools.tools = Some(vec![tool.clone()]);
        with_tools.add_generation_prompt = true;
        let mut with_call = RenderRequest::new(vec![
            user("hi"),
            serde_json::json!({"role": "assistant", "content": "", "tool_calls": [{
                "id": "call_probe1", "type": "function",
                "function": {"name": "hearth_probe_call", "arguments": {"x": "y"}}}]}),
            serde_json::json!({"role": "tool", "tool_call_id": "call_probe1", "content": "ok"}),
        ]);
        with_call.tools = Some(vec![tool]);
        let sys = RenderRequest::new(vec![
            serde_json::json!({"role": "system", "content": "hearth_probe_system"}),
            user("hi"),
        ]);
        Capabilities {
            tools: renders_with(with_tools, "hearth_probe_tool"),
            tool_calls: renders_with(with_call, "hearth_probe_call"),
            system_role: renders_with(sys, "hearth_probe_system"),
            enable_thinking: self.source.contains("enable_thinking"),
        }
    }
}

fn clock_value(t: CivilTime) -> Value {
    Value::from_pairs([
        ("year", Value::from(t.year)),
        ("month", Value::from(t.month)),
        ("day", Value::from(t.day)),
        ("hour", Value::from(t.hour)),
        ("minute", Value::from(t.minute)),
        ("second", Value::from(t.second)),
    ])
}

fn opt_list(v: &Option<Vec<Json>>) -> Result<Value, TemplateError> {
    match v {
        Some(items) => Ok(Value::from(
            items
                .iter()
                .map(|x| json_to_value(x, 1))
                .collect::<Result<Vec<_>, _>>()?,
        )),
        None => Ok(Value::from_object(sandbox::PyNone)),
    }
}

/// Deepest JSON nesting accepted in a request (serde_json's own parser
/// stops at 128).
const MAX_JSON_DEPTH: usize = 128;

/// JSON to template values, keeping object key order (Python dicts do).
pub(crate) fn json_to_value(v: &Json, depth: usize) -> Result<Value, TemplateError> {
    if depth > MAX_JSON_DEPTH {
        return Err(TemplateError::Request(format!(
            "request JSON nests deeper than {MAX_JSON_DEPTH}"
        )));
    }
    Ok(match v {
        Json::Null => Value::from(()),
        Json::Bool(b) => Value::from(*b),
        Json::Number(n) => {
            if let Some(i) = n.as_i64() {
                Value::from(i)
            } else if let Some(u) = n.as_u64() {
                Value::from(u)
            } else {
                Value::from(n.as_f64().unwrap_or(f64::NAN))
            }
        }
        Json::String(s) => Value::from(s.as_str()),
        Json::Array(items) => Value::from(
            items
                .iter()
                .map(|x| json_to_value(x, depth + 1))
                .collect::<Result<Vec<_>, _>>()?,
        ),
        Json::Object(map) => Value::from_pairs(
            map.iter()
                .map(|(k, x)| Ok((Value::from(k.as_str()), json_to_value(x, depth + 1)?)))
                .collect::<Result<Vec<_>, TemplateError>>()?,
        ),
    })
}

/// transformers `_normalize_chat_messages`: drop keys whose value is None.
fn drop_nulls(obj: &Map<String, Json>) -> Map<String, Json> {
    obj.iter()
        .filter(|(_, v)| !v.is_null())
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect()
}

/// transformers `_alias_reasoning_fields`: the first present reasoning field
/// is copied to `thinking` (in front) and `reasoning_content` (in place, or
/// at the end), i.e. `{"thinking": r, **message, "reasoning_content": r}`.
fn alias_reasoning(msg: Map<String, Json>) -> Map<String, Json> {
    let Some(reasoning) = REASONING_FIELDS
        .iter()
        .find_map(|f| msg.get(*f).filter(|v| !v.is_null()).cloned())
    else {
        return msg;
    };
    let mut out = Map::new();
    out.insert("thinking".into(), reasoning.clone());
    for (k, v) in msg {
        out.insert(k, v);
    }
    out.insert("reasoning_content".into(), reasoning);
    out
}

/// The `continue_final_message` preparation of transformers'
/// `render_jinja_template`: appends the marker to the final message's
/// content (or its last text part) and returns the original text.
fn tag_final_message(
    source: &str,
    messages: &mut [Map<String, Json>],
) -> Result<String, TemplateError> {
    let Some(last) = messages.last_mut() else {
        return Err(TemplateError::Request(
            "continue_final_message is set but the conversation is empty!".into(),
        ));
    };
    let content = match last.get_mut("content") {
        Some(c) => c,
        None => return Err(TemplateError::Request(
            "continue_final_message is set but the final message has no \"content\" to continue!"
                .into(),
        )),
    };
    if !source.contains("content") {
        return Err(TemplateError::Request(
            "continue_final_message is set to \"content\" but this is not an accepted field in the chat_template"
                .into(),
        ));
    }
    match content {
        Json::String(s) => {
            let orig = s.clone();
            s.push_str(CONTINUE_TAG);
            Ok(orig)
        }
        Json::Array(parts) => {
            for part in parts.iter_mut().rev() {
                if let Some(Json::String(t)) = part.as_object_mut().and_then(|p| p.get_mut("text"))
                {
                    let orig = t.clone();
                    t.push_str(CONTINUE_TAG);
                    return Ok(orig);
                }
            }
            Err(TemplateError::Request(
                "continue_final_message is set but we could not find any text to continue in the final message!"
                    .into(),
            ))
        }
        _ => Err(TemplateError::Request(
            "continue_final_message needs a string final content".into(),
        )),
    }
}

/// transformers' post-render cut: everything from the marker on goes; if
/// the template trimmed the marker's trailing space, trailing whitespace
/// before it goes too.
fn cut_at_continue_tag(rendered: String, final_text: &str) -> Result<String, TemplateError> {
    let tag = CONTINUE_TAG.trim_end();
    let stripped = crate::pymethods::py_strip(final_text, None, true, true);
    let (Some(loc), true) = (rendered.rfind(tag), rendered.contains(stripped)) else {
        return Err(TemplateError::Request(
            "continue_final_message is set but the final message does not appear in the chat after applying the \
             chat template"
                .into(),
        ));
    };
    if rendered[loc..].starts_with(CONTINUE_TAG) {
        Ok(rendered[..loc].to_string())
    } else {
        Ok(crate::pymethods::py_strip(&rendered[..loc], None, false, true).to_string())
    }
}

fn map_error(e: minijinja::Error, limits: &TemplateLimits) -> TemplateError {
    if let Some(r) = chain_has::<Raised>(&e) {
        return TemplateError::Raised(r.0.clone());
    }
    let detail = e.detail().unwrap_or_default().to_string();
    match e.kind() {
        ErrorKind::OutOfFuel => TemplateError::OutOfFuel { limit: limits.fuel },
        ErrorKind::WriteFailure if chain_has::<OutputLimit>(&e).is_some() => {
            TemplateError::OutputTooLarge {
                limit: limits.max_output_bytes,
            }
        }
        ErrorKind::InvalidOperation if detail.contains("recursion limit exceeded") => {
            TemplateError::RecursionLimit
        }
        ErrorKind::SyntaxError if detail.contains("maximum recursion") => {
            TemplateError::RecursionLimit
        }
        ErrorKind::SyntaxError | ErrorKind::InvalidDelimiter | ErrorKind::BadEscape => {
            TemplateError::Syntax {
                message: e.to_string(),
                line: e.line(),
            }
        }
        kind => TemplateError::Render {
            kind: match kind {
                ErrorKind::UndefinedError => RenderFailure::Undefined,
                ErrorKind::UnknownFilter
                | ErrorKind::UnknownTest
                | ErrorKind::UnknownFunction
                | ErrorKind::UnknownMethod => RenderFailure::UnknownName,
                ErrorKind::TemplateNotFound | ErrorKind::BadInclude => RenderFailure::Loading,
                ErrorKind::InvalidOperation
                | ErrorKind::NonPrimitive
                | ErrorKind::NonKey
                | ErrorKind::TooManyArguments
                | ErrorKind::MissingArgument
                | ErrorKind::CannotUnpack
                | ErrorKind::BadSerialization => RenderFailure::InvalidOperation,
                _ => RenderFailure::Other,
            },
            message: e.to_string(),
            line: e.line(),
        },
    }
}
