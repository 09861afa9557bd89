//! OpenAI request bodies → Hearth's internal request model.
//!
//! Parsing walks the JSON by hand instead of deriving `Deserialize`, so that
//! every error names the exact parameter (`messages[2].content[0].type`) and
//! unknown fields are accepted: OpenAI clients send new fields all the time.
//! `null` counts as absent for every optional field, as in OpenAI's API.
//!
//! Ranges follow OpenAI's API reference (temperature 0–2, top_p 0–1,
//! penalties −2–2, top_logprobs 0–20, at most 4 stop sequences, logit_bias
//! −100–100, legacy completions logprobs 0–5). Fields that would change the
//! answer but are not implemented (`audio`, `suffix`, `functions`, ...) are
//! refused with a 400 naming them, never silently ignored. Deliberately absent: image/audio/file content parts
//! (refused: this server fetches no URLs), several prompts in one legacy
//! completions request.

use crate::error::ApiError;
use hearth_api::{
    ChatRequest, GenerationParams, Message, ResponseFormat, Role, Tool, ToolCall, ToolChoice,
};
use serde_json::{Map, Value};

/// Longest stop string accepted (bytes): the stream decoder holds back up
/// to this much text.
pub const MAX_STOP_BYTES: usize = 1024;
/// Most stop strings (OpenAI's limit).
pub const MAX_STOPS: usize = 4;
/// Most `logit_bias` entries.
pub const MAX_LOGIT_BIAS: usize = 1024;
/// Most tools (OpenAI's limit).
pub const MAX_TOOLS: usize = 128;

/// Settings outside `hearth_api::GenerationParams`: OpenAI's `logit_bias`
/// and llama-server's sampling extensions.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct LocalOptions {
    /// Token id → additive bias (OpenAI `logit_bias`).
    pub logit_bias: Vec<(u32, f32)>,
    /// llama-server extension; default 40.
    pub top_k: Option<usize>,
    /// llama-server extension; default 0.05.
    pub min_p: Option<f32>,
    /// llama-server extension; default 1.0 (off).
    pub repeat_penalty: Option<f32>,
    /// llama-server extension: generate exactly `max_tokens` tokens.
    pub ignore_eos: bool,
}

/// A validated chat completion request.
#[derive(Clone, Debug, PartialEq)]
pub struct ChatCall {
    pub request: ChatRequest,
    pub local: LocalOptions,
    /// Whether the client named the model (otherwise the served id is used).
    pub model_given: bool,
    /// `max_completion_tokens` or `max_tokens`, whichever the client used
    /// (error messages name it).
    pub max_param: &'static str,
    /// OpenAI `parallel_tool_calls` (default true).
    pub parallel_tool_calls: bool,
}

/// A legacy completions prompt.
#[derive(Clone, Debug, PartialEq)]
pub enum Prompt {
    Text(String),
    Tokens(Vec<u32>),
}

/// A validated legacy completions request.
#[derive(Clone, Debug, PartialEq)]
pub struct CompletionCall {
    pub model: Option<String>,
    pub prompt: Prompt,
    pub params: GenerationParams,
    pub echo: bool,
    pub stream: bool,
    pub include_usage: bool,
    pub local: LocalOptions,
}

/// A validated embeddings request.
#[derive(Clone, Debug, PartialEq)]
pub struct EmbeddingCall {
    pub model: Option<String>,
    pub input: Vec<String>,
    /// `float` (false) or `base64` (true).
    pub base64: bool,
    pub dimensions: Option<usize>,
}

/// A JSON object with the path used to name its fields in errors.
#[derive(Clone, Copy)]
struct Obj<'a> {
    map: &'a Map<String, Value>,
    path: &'a str,
}

fn json_type(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}

impl<'a> Obj<'a> {
    fn param(&self, key: &str) -> String {
        if self.path.is_empty() {
            key.to_string()
        } else {
            format!("{}.{key}", self.path)
        }
    }

    fn get(&self, key: &str) -> Option<&'a Value> {
        self.map.get(key).filter(|v| !v.is_null())
    }

    fn has(&self, key: &str) -> bool {
        self.get(key).is_some()
    }

    fn str(&self, key: &str) -> Result<Option<&'a str>, ApiError> {
        match self.get(key) {
            None => Ok(None),
            Some(Value::String(s)) => Ok(Some(s)),
            Some(_) => Err(ApiError::invalid_type(&self.param(key), "a string")),
        }
    }

    fn req_str(&self, key: &str) -> Result<&'a str, ApiError> {
        self.str(key)?
            .ok_or_else(|| ApiError::missing(&self.param(key)))
    }

    fn bool(&self, key: &str) -> Result<Option<bool>, ApiError> {
        match self.get(key) {
            None => Ok(None),
            Some(Value::Bool(b)) => Ok(Some(*b)),
            Some(_) => Err(ApiError::invalid_type(&self.param(key), "a boolean")),
        }
    }

    /// A finite number in `[lo, hi]`.
    fn num(&self, key: &str, lo: f64, hi: f64) -> Result<Option<f64>, ApiError> {
        match self.get(key) {
            None => Ok(None),
            Some(Value::Number(n)) => {
                let v = n
                    .as_f64()
                    .filter(|v| v.is_finite())
                    .ok_or_else(|| ApiError::invalid_type(&self.param(key), "a number"))?;
                if !(lo..=hi).contains(&v) {
                    return Err(ApiError::invalid_value(
                        &self.param(key),
                        format!(
                            "'{}' must be between {lo} and {hi}, got {v}",
                            self.param(key)
                        ),
                    ));
                }
                Ok(Some(v))
            }
            Some(_) => Err(ApiError::invalid_type(&self.param(key), "a number")),
        }
    }

    /// An integer in `[lo, hi]` (`3.0` counts as an integer, `3.5` does not).
    fn int(&self, key: &str, lo: i64, hi: i64) -> Result<Option<i64>, ApiError> {
        match self.get(key) {
            None => Ok(None),
            Some(v) => {
                let i = as_int(v)
                    .ok_or_else(|| ApiError::invalid_type(&self.param(key), "an integer"))?;
                if !(lo..=hi).contains(&i) {
                    return Err(ApiError::invalid_value(
                        &self.param(key),
                        format!(
                            "'{}' must be between {lo} and {hi}, got {i}",
                            self.param(key)
                        ),
                    ));
                }
                Ok(Some(i))
            }
        }
    }

    fn array(&self, key: &str) -> Result<Option<&'a Vec<Value>>, ApiError> {
        match self.get(key) {
            None => Ok(None),
            Some(Value::Array(a)) => Ok(Some(a)),
            Some(_) => Err(ApiError::invalid_type(&self.param(key), "an array")),
        }
    }

    fn object(&self, key: &str) -> Result<Option<&'a Map<String, Value>>, ApiError> {
        match self.get(key) {
            None => Ok(None),
            Some(Value::Object(m)) => Ok(Some(m)),
            Some(_) => Err(ApiError::invalid_type(&self.param(key), "an object")),
        }
    }

    /// Refuses a field that would change the answer but is not implemented.
    fn refuse(&self, key: &str, why: &str) -> Result<(), ApiError> {
        if self.has(key) {
            return Err(ApiError::unsupported(
                &self.param(key),
                format!("'{}' is not supported: {why}", self.param(key)),
            ));
        }
        Ok(())
    }
}

fn as_int(v: &Value) -> Option<i64> {
    let Value::Number(n) = v else { return None };
    if let Some(i) = n.as_i64() {
        return Some(i);
    }
    let f = n.as_f64()?;
    (f.is_finite() && f.fract() == 0.0 && f.abs() < 9.0e15).then_some(f as i64)
}

/// Parses the body as a JSON object.
pub fn parse_body(body: &[u8]) -> Result<Value, ApiError> {
    let v: Value = serde_json::from_slice(body)
        .map_err(|e| ApiError::bad_json(format!("the request body is not valid JSON: {e}")))?;
    if !v.is_object() {
        return Err(ApiError::bad_json(format!(
            "the request body must be a JSON object, not {}",
            json_type(&v)
        )));
    }
    Ok(v)
}

fn root(v: &Value) -> Result<Obj<'_>, ApiError> {
    match v {
        Value::Object(map) => Ok(Obj { map, path: "" }),
        other => Err(ApiError::bad_json(format!(
            "the request body must be a JSON object, not {}",
            json_type(other)
        ))),
    }
}

/// Fields shared by chat and legacy completions.
struct Common {
    model: Option<String>,
    params: GenerationParams,
    stream: bool,
    include_usage: bool,
    local: LocalOptions,
}

fn common(o: Obj<'_>, n_vocab: usize) -> Result<Common, ApiError> {
    let model = o.str("model")?.map(str::to_string);
    if model.as_deref() == Some("") {
        return Err(ApiError::invalid_value(
            "model",
            "'model' must not be empty",
        ));
    }
    let mut p = GenerationParams::default();
    if let Some(t) = o.num("temperature", 0.0, 2.0)? {
        p.temperature = t as f32;
    }
    if let Some(t) = o.num("top_p", 0.0, 1.0)? {
        p.top_p = t as f32;
    }
    if let Some(v) = o.num("presence_penalty", -2.0, 2.0)? {
        p.presence_penalty = v as f32;
    }
    if let Some(v) = o.num("frequency_penalty", -2.0, 2.0)? {
        p.frequency_penalty = v as f32;
    }
    if let Some(n) = o.int("n", 1, 128)? {
        p.n = n as u32;
    }
    if let Some(v) = o.get("seed") {
        // OpenAI documents a signed 64-bit seed; unsigned values are accepted too.
        let seed = match v {
            Value::Number(n) if n.is_i64() => n.as_i64().map(|i| i as u64),
            Value::Number(n) if n.is_u64() => n.as_u64(),
            _ => as_int(v).map(|i| i as u64),
        };
        p.seed = Some(seed.ok_or_else(|| ApiError::invalid_type("seed", "an integer"))?);
    }
    p.stop = stops(o)?;
    let stream = o.bool("stream")?.unwrap_or(false);
    let mut include_usage = false;
    if let Some(so) = o.object("stream_options")? {
        if !stream {
            return Err(ApiError::invalid_value(
                "stream_options",
                "'stream_options' is only allowed when 'stream' is true",
            ));
        }
        let so = Obj {
            map: so,
            path: "stream_options",
        };
        include_usage = so.bool("include_usage")?.unwrap_or(false);
    }
    o.str("user")?; // accepted and ignored
    let mut local = LocalOptions::default();
    if let Some(m) = o.object("logit_bias")? {
        if m.len() > MAX_LOGIT_BIAS {
            return Err(ApiError::invalid_value(
                "logit_bias",
                format!(
                    "'logit_bias' has {} entries; at most {MAX_LOGIT_BIAS} are allowed",
                    m.len()
                ),
            ));
        }
        let lb = Obj {
            map: m,
            path: "logit_bias",
        };
        for k in m.keys() {
            let id: u32 = k
                .parse()
                .ok()
                .filter(|&id: &u32| (id as usize) < n_vocab)
                .ok_or_else(|| {
                    ApiError::invalid_value(
                        "logit_bias",
                        format!("'logit_bias' key '{k}' is not a token id below {n_vocab}"),
                    )
                })?;
            let b = lb.num(k, -100.0, 100.0)?.unwrap_or(0.0);
            local.logit_bias.push((id, b as f32));
        }
        local.logit_bias.sort_by_key(|&(id, _)| id);
    }
    if let Some(k) = o.int("top_k", 0, 1 << 20)? {
        local.top_k = Some(k as usize);
    }
    if let Some(v) = o.num("min_p", 0.0, 1.0)? {
        local.min_p = Some(v as f32);
    }
    if let Some(v) = o.num("repeat_penalty", 0.0, 10.0)? {
        if v == 0.0 {
            return Err(ApiError::invalid_value(
                "repeat_penalty",
                "'repeat_penalty' must be greater than 0",
            ));
        }
        local.repeat_penalty = Some(v as f32);
    }
    local.ignore_eos = o.bool("ignore_eos")?.unwrap_or(false);
    Ok(Common {
        model,
        params: p,
        stream,
        include_usage,
        local,
    })
}

fn stops(o: Obj<'_>) -> Result<Vec<String>, ApiError> {
    let list: Vec<String> = match o.get("stop") {
        None => Vec::new(),
        Some(Value::String(s)) => vec![s.clone()],
        Some(Value::Array(a)) => {
            if a.len() > MAX_STOPS {
                return Err(ApiError::invalid_value(
                    "stop",
                    format!(
                        "'stop' has {} sequences; at most {MAX_STOPS} are allowed",
                        a.len()
                    ),
                ));
            }
            a.iter()
                .enumerate()
                .map(|(i, v)| {
                    v.as_str()
                        .map(str::to_string)
                        .ok_or_else(|| ApiError::invalid_type(&format!("stop[{i}]"), "a string"))
                })
                .collect::<Result<_, _>>()?
        }
        Some(_) => {
            return Err(ApiError::invalid_type(
                "stop",
                "a string or an array of strings",
            ))
        }
    };
    if let Some(s) = list.iter().find(|s| s.len() > MAX_STOP_BYTES) {
        return Err(ApiError::invalid_value(
            "stop",
            format!(
                "a stop sequence is {} bytes long; at most {MAX_STOP_BYTES} are allowed",
                s.len()
            ),
        ));
    }
    Ok(list.into_iter().filter(|s| !s.is_empty()).collect())
}

fn max_tokens(o: Obj<'_>, keys: &[&'static str]) -> Result<(Option<u32>, &'static str), ApiError> {
    // The first key listed wins when several are given (max_completion_tokens
    // supersedes the deprecated max_tokens).
    let mut found = (None, keys.last().copied().unwrap_or("max_tokens"));
    for &k in keys.iter().rev() {
        if let Some(v) = o.int(k, 1, u32::MAX as i64)? {
            found = (Some(v as u32), k);
        }
    }
    Ok(found)
}

/// `POST /v1/chat/completions`.
pub fn chat(body: &Value, n_vocab: usize) -> Result<ChatCall, ApiError> {
    let o = root(body)?;
    let c = common(o, n_vocab)?;
    let mut params = c.params;
    let (max, max_param) = max_tokens(o, &["max_completion_tokens", "max_tokens"])?;
    params.max_tokens = max;
    if let Some(lp) = o.bool("logprobs")? {
        params.logprobs = lp;
    }
    if let Some(k) = o.int("top_logprobs", 0, 20)? {
        if !params.logprobs {
            return Err(ApiError::invalid_value(
                "top_logprobs",
                "'top_logprobs' requires 'logprobs' to be true",
            ));
        }
        params.top_logprobs = k as u32;
    }
    let messages = messages(o)?;
    let tools = tools(o)?;
    let tool_choice = tool_choice(o, &tools)?;
    let parallel_tool_calls = o.bool("parallel_tool_calls")?.unwrap_or(true);
    let response_format = response_format(o)?;
    o.refuse("functions", "use 'tools'")?;
    o.refuse("function_call", "use 'tool_choice'")?;
    o.refuse("audio", "this server produces text only")?;
    o.refuse(
        "web_search_options",
        "this server makes no network requests",
    )?;
    if let Some(m) = o.array("modalities")? {
        for (i, v) in m.iter().enumerate() {
            match v.as_str() {
                Some("text") => {}
                Some(other) => {
                    return Err(ApiError::unsupported(
                        &format!("modalities[{i}]"),
                        format!("modality '{other}' is not supported; only 'text'"),
                    ))
                }
                None => {
                    return Err(ApiError::invalid_type(
                        &format!("modalities[{i}]"),
                        "a string",
                    ))
                }
            }
        }
    }
    // Accepted and ignored: they change bookkeeping, not the answer.
    o.object("metadata")?;
    o.bool("store")?;
    o.str("service_tier")?;
    o.str("reasoning_effort")?;
    o.object("prediction")?;
    let mut request = ChatRequest::new(c.model.clone().unwrap_or_default(), messages);
    request.params = params;
    request.tools = tools;
    request.tool_choice = tool_choice;
    request.response_format = response_format;
    request.stream = c.stream;
    request.include_usage = c.include_usage;
    Ok(ChatCall {
        request,
        local: c.local,
        model_given: c.model.is_some(),
        max_param,
        parallel_tool_calls,
    })
}

fn messages(o: Obj<'_>) -> Result<Vec<Message>, ApiError> {
    let list = o
        .array("messages")?
        .ok_or_else(|| ApiError::missing("messages"))?;
    if list.is_empty() {
        return Err(ApiError::invalid_value(
            "messages",
            "'messages' must contain at least one message",
        ));
    }
    let mut out = Vec::with_capacity(list.len());
    for (i, m) in list.iter().enumerate() {
        let path = format!("messages[{i}]");
        let Value::Object(map) = m else {
            return Err(ApiError::invalid_type(&path, "an object"));
        };
        let mo = Obj { map, path: &path };
        let role = match mo.req_str("role")? {
            "system" => Role::System,
            "developer" => Role::Developer,
            "user" => Role::User,
            "assistant" => Role::Assistant,
            "tool" => Role::Tool,
            "function" => {
                return Err(ApiError::unsupported(
                    &mo.param("role"),
                    "the 'function' role is not supported; use 'tool'",
                ))
            }
            other => return Err(ApiError::invalid_value(
                &mo.param("role"),
                format!(
                    "unknown role '{other}'; expected system, developer, user, assistant or tool"
                ),
            )),
        };
        let tool_calls = if role == Role::Assistant {
            tool_calls(mo)?
        } else {
            Vec::new()
        };
        let content = match mo.get("content") {
            None if role == Role::Assistant && !tool_calls.is_empty() => String::new(),
            None => return Err(ApiError::missing(&mo.param("content"))),
            Some(v) => content(v, &mo.param("content"), role)?,
        };
        let mut msg = Message::new(role, content);
        msg.name = mo.str("name")?.map(str::to_string);
        msg.tool_calls = tool_calls;
        if role == Role::Tool {
            msg.tool_call_id = Some(mo.req_str("tool_call_id")?.to_string());
        }
        out.push(msg);
    }
    Ok(out)
}

/// A string, or a list of text parts (joined with newlines, as llama.cpp's
/// server does: common/chat.cpp).
fn content(v: &Value, param: &str, role: Role) -> Result<String, ApiError> {
    match v {
        Value::String(s) => Ok(s.clone()),
        Value::Array(parts) => {
            let mut text = String::new();
            for (i, p) in parts.iter().enumerate() {
                let pp = format!("{param}[{i}]");
                let Value::Object(map) = p else {
                    return Err(ApiError::invalid_type(&pp, "an object"));
                };
                let po = Obj { map, path: &pp };
                match po.req_str("type")? {
                    "text" => {
                        if !text.is_empty() {
                            text.push('\n');
                        }
                        text.push_str(po.req_str("text")?);
                    }
                    "refusal" if role == Role::Assistant => {
                        po.req_str("refusal")?;
                    }
                    t @ ("image_url" | "input_audio" | "file" | "image" | "audio") => {
                        return Err(ApiError::unsupported(
                            &po.param("type"),
                            format!("content parts of type '{t}' are not supported: this server takes text only and fetches no URLs"),
                        ))
                    }
                    other => return Err(ApiError::invalid_value(&po.param("type"), format!("unknown content part type '{other}'"))),
                }
            }
            Ok(text)
        }
        _ => Err(ApiError::invalid_type(
            param,
            "a string or an array of content parts",
        )),
    }
}

fn tool_calls(mo: Obj<'_>) -> Result<Vec<ToolCall>, ApiError> {
    let Some(list) = mo.array("tool_calls")? else {
        return Ok(Vec::new());
    };
    let mut out = Vec::with_capacity(list.len());
    for (j, tc) in list.iter().enumerate() {
        let path = mo.param(&format!("tool_calls[{j}]"));
        let Value::Object(map) = tc else {
            return Err(ApiError::invalid_type(&path, "an object"));
        };
        let t = Obj { map, path: &path };
        let id = t.req_str("id")?.to_string();
        match t.str("type")? {
            None | Some("function") => {}
            Some(other) => {
                return Err(ApiError::invalid_value(
                    &t.param("type"),
                    format!("unknown tool call type '{other}'; expected 'function'"),
                ))
            }
        }
        let fpath = t.param("function");
        let f = t
            .object("function")?
            .ok_or_else(|| ApiError::missing(&fpath))?;
        let f = Obj {
            map: f,
            path: &fpath,
        };
        out.push(ToolCall {
            id,
            name: f.req_str("name")?.to_string(),
            arguments: f.req_str("arguments")?.to_string(),
        });
    }
    Ok(out)
}

/// OpenAI function names: `^[a-zA-Z0-9_-]{1,64}$`.
fn check_name(name: &str, param: &str) -> Result<(), ApiError> {
    if name.is_empty()
        || name.len() > 64
        || !name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
    {
        return Err(ApiError::invalid_value(
            param,
            format!("'{param}' must be 1 to 64 characters of a-z, A-Z, 0-9, '_' or '-'"),
        ));
    }
    Ok(())
}

fn tools(o: Obj<'_>) -> Result<Vec<Tool>, ApiError> {
    let Some(list) = o.array("tools")? else {
        return Ok(Vec::new());
    };
    if list.len() > MAX_TOOLS {
        return Err(ApiError::invalid_value(
            "tools",
            format!(
                "'tools' has {} entries; at most {MAX_TOOLS} are allowed",
                list.len()
            ),
        ));
    }
    let mut out = Vec::with_capacity(list.len());
    for (i, t) in list.iter().enumerate() {
        let path = format!("tools[{i}]");
        let Value::Object(map) = t else {
            return Err(ApiError::invalid_type(&path, "an object"));
        };
        let to = Obj { map, path: &path };
        match to.req_str("type")? {
            "function" => {}
            other => {
                return Err(ApiError::invalid_value(
                    &to.param("type"),
                    format!("unknown tool type '{other}'; expected 'function'"),
                ))
            }
        }
        let fpath = to.param("function");
        let f = to
            .object("function")?
            .ok_or_else(|| ApiError::missing(&fpath))?;
        let fo = Obj {
            map: f,
            path: &fpath,
        };
        let name = fo.req_str("name")?;
        check_name(name, &fo.param("name"))?;
        let parameters = match fo.get("parameters") {
            None => serde_json::json!({"type": "object", "properties": {}}),
            Some(p @ Value::Object(_)) => p.clone(),
            Some(_) => {
                return Err(ApiError::invalid_type(
                    &fo.param("parameters"),
                    "a JSON Schema object",
                ))
            }
        };
        fo.bool("strict")?;
        if out.iter().any(|t: &Tool| t.name == name) {
            return Err(ApiError::invalid_value(
                &fo.param("name"),
                format!("duplicate tool name '{name}'"),
            ));
        }
        out.push(Tool {
            name: name.to_string(),
            description: fo.str("description")?.map(str::to_string),
            parameters,
        });
    }
    Ok(out)
}

fn tool_choice(o: Obj<'_>, tools: &[Tool]) -> Result<ToolChoice, ApiError> {
    let choice =
        match o.get("tool_choice") {
            None => {
                return Ok(if tools.is_empty() {
                    ToolChoice::None
                } else {
                    ToolChoice::Auto
                })
            }
            Some(Value::String(s)) => match s.as_str() {
                "none" => ToolChoice::None,
                "auto" => ToolChoice::Auto,
                "required" => ToolChoice::Required,
                other => return Err(ApiError::invalid_value(
                    "tool_choice",
                    format!(
                        "unknown tool_choice '{other}'; expected none, auto, required or an object"
                    ),
                )),
            },
            Some(Value::Object(map)) => {
                let c = Obj {
                    map,
                    path: "tool_choice",
                };
                match c.req_str("type")? {
                    "function" => {}
                    other => {
                        return Err(ApiError::invalid_value(
                            "tool_choice.type",
                            format!("unknown tool_choice type '{other}'"),
                        ))
                    }
                }
                let f = c
                    .object("function")?
                    .ok_or_else(|| ApiError::missing("tool_choice.function"))?;
                let name = Obj {
                    map: f,
                    path: "tool_choice.function",
                }
                .req_str("name")?;
                if !tools.iter().any(|t| t.name == name) {
                    return Err(ApiError::invalid_value(
                        "tool_choice.function.name",
                        format!("tool_choice names '{name}', which is not among 'tools'"),
                    ));
                }
                ToolChoice::Function(name.to_string())
            }
            Some(_) => {
                return Err(ApiError::invalid_type(
                    "tool_choice",
                    "a string or an object",
                ))
            }
        };
    if tools.is_empty() && choice != ToolChoice::None {
        return Err(ApiError::invalid_value(
            "tool_choice",
            "'tool_choice' is only allowed when 'tools' are specified",
        ));
    }
    Ok(choice)
}

fn response_format(o: Obj<'_>) -> Result<ResponseFormat, ApiError> {
    let Some(rf) = o.object("response_format")? else {
        return Ok(ResponseFormat::Text);
    };
    let r = Obj {
        map: rf,
        path: "response_format",
    };
    match r.req_str("type")? {
        "text" => Ok(ResponseFormat::Text),
        "json_object" => Ok(ResponseFormat::JsonObject),
        "json_schema" => {
            let js = r
                .object("json_schema")?
                .ok_or_else(|| ApiError::missing("response_format.json_schema"))?;
            let j = Obj {
                map: js,
                path: "response_format.json_schema",
            };
            let name = j.req_str("name")?;
            check_name(name, "response_format.json_schema.name")?;
            j.str("description")?;
            let schema = match j.get("schema") {
                None => serde_json::json!({}),
                Some(s @ Value::Object(_)) => s.clone(),
                Some(_) => {
                    return Err(ApiError::invalid_type(
                        "response_format.json_schema.schema",
                        "a JSON Schema object",
                    ))
                }
            };
            let strict = j.bool("strict")?.unwrap_or(false);
            Ok(ResponseFormat::JsonSchema {
                name: name.to_string(),
                schema,
                strict,
            })
        }
        other => Err(ApiError::invalid_value(
            "response_format.type",
            format!(
                "unknown response_format type '{other}'; expected text, json_object or json_schema"
            ),
        )),
    }
}

/// `POST /v1/completions` (legacy).
pub fn completion(body: &Value, n_vocab: usize) -> Result<CompletionCall, ApiError> {
    let o = root(body)?;
    let c = common(o, n_vocab)?;
    let mut params = c.params;
    // The legacy API's default is 16 tokens.
    params.max_tokens = Some(
        o.int("max_tokens", 1, u32::MAX as i64)?
            .map_or(16, |v| v as u32),
    );
    if let Some(k) = o.int("logprobs", 0, 5)? {
        params.logprobs = true;
        params.top_logprobs = k as u32;
    }
    let echo = o.bool("echo")?.unwrap_or(false);
    if echo && params.logprobs {
        return Err(ApiError::unsupported(
            "echo",
            "'echo' together with 'logprobs' (prompt logprobs) is not supported",
        ));
    }
    o.refuse("suffix", "insertion (fill-in-the-middle) is not supported")?;
    if let Some(b) = o.int("best_of", 1, 128)? {
        if b != params.n as i64 {
            return Err(ApiError::unsupported(
                "best_of",
                "'best_of' must equal 'n' (server-side ranking is not supported)",
            ));
        }
    }
    let prompt = match o.get("prompt") {
        None => return Err(ApiError::missing("prompt")),
        Some(v) => prompt(v, n_vocab)?,
    };
    Ok(CompletionCall {
        model: c.model,
        prompt,
        params,
        echo,
        stream: c.stream,
        include_usage: c.include_usage,
        local: c.local,
    })
}

fn token_list(a: &[Value], param: &str, n_vocab: usize) -> Result<Vec<u32>, ApiError> {
    a.iter()
        .enumerate()
        .map(|(i, v)| {
            as_int(v)
                .filter(|&t| t >= 0 && (t as u64) < n_vocab as u64)
                .map(|t| t as u32)
                .ok_or_else(|| {
                    ApiError::invalid_value(
                        &format!("{param}[{i}]"),
                        format!("token ids must be integers below {n_vocab}"),
                    )
                })
        })
        .collect()
}

fn prompt(v: &Value, n_vocab: usize) -> Result<Prompt, ApiError> {
    let one = || ApiError::unsupported("prompt", "only one prompt per request is supported");
    match v {
        Value::String(s) => Ok(Prompt::Text(s.clone())),
        Value::Array(a) if a.is_empty() => Err(ApiError::invalid_value(
            "prompt",
            "'prompt' must not be empty",
        )),
        Value::Array(a) => match &a[0] {
            Value::String(s) if a.len() == 1 => Ok(Prompt::Text(s.clone())),
            Value::String(_) => Err(one()),
            Value::Number(_) => Ok(Prompt::Tokens(token_list(a, "prompt", n_vocab)?)),
            Value::Array(inner) if a.len() == 1 => {
                Ok(Prompt::Tokens(token_list(inner, "prompt[0]", n_vocab)?))
            }
            Value::Array(_) => Err(one()),
            _ => Err(ApiError::invalid_type(
                "prompt",
                "a string, an array of strings or an array of token ids",
            )),
        },
        _ => Err(ApiError::invalid_type(
            "prompt",
            "a string, an array of strings or an array of token ids",
        )),
    }
}

/// `POST /v1/embeddings`.
pub fn embedding(body: &Value) -> Result<EmbeddingCall, ApiError> {
    let o = root(body)?;
    let model = o.str("model")?.map(str::to_string);
    let input = match o.get("input") {
        None => return Err(ApiError::missing("input")),
        Some(Value::String(s)) => vec![s.clone()],
        Some(Value::Array(a)) if !a.is_empty() => a
            .iter()
            .enumerate()
            .map(|(i, v)| match v {
                Value::String(s) => Ok(s.clone()),
                Value::Number(_) | Value::Array(_) => Err(ApiError::unsupported(
                    &format!("input[{i}]"),
                    "token-id inputs are not supported for embeddings; send text",
                )),
                _ => Err(ApiError::invalid_type(&format!("input[{i}]"), "a string")),
            })
            .collect::<Result<_, _>>()?,
        Some(Value::Array(_)) => {
            return Err(ApiError::invalid_value(
                "input",
                "'input' must not be empty",
            ))
        }
        Some(_) => {
            return Err(ApiError::invalid_type(
                "input",
                "a string or an array of strings",
            ))
        }
    };
    if input.len() > 2048 {
        return Err(ApiError::invalid_value(
            "input",
            "'input' has more than 2048 entries",
        ));
    }
    let base64 = match o.str("encoding_format")? {
        None | Some("float") => false,
        Some("base64") => true,
        Some(other) => {
            return Err(ApiError::invalid_value(
                "encoding_format",
                format!("unknown encoding_format '{other}'; expected float or base64"),
            ))
        }
    };
    let dimensions = o.int("dimensions", 1, 1 << 16)?.map(|d| d as usize);
    o.str("user")?;
    Ok(EmbeddingCall {
        model,
        input,
        base64,
        dimensions,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn chat_err(v: Value) -> ApiError {
        chat(&v, 1000).unwrap_err()
    }

    fn base() -> Value {
        json!({"model": "m", "messages": [{"role": "user", "content": "hi"}]})
    }

    fn with(k: &str, v: Value) -> Value {
        let mut b = base();
        b[k] = v;
        b
    }

    #[test]
    fn minimal_request_and_defaults() {
        let c = chat(&base(), 1000).unwrap();
        assert_eq!(c.request.messages, vec![Message::new(Role::User, "hi")]);
        assert_eq!(c.request.params.n, 1);
        assert_eq!(c.request.params.temperature, 1.0);
        assert_eq!(c.request.params.max_tokens, None);
        assert!(!c.request.stream);
        assert_eq!(c.request.tool_choice, ToolChoice::None);
    }

    #[test]
    fn unknown_fields_and_nulls_are_accepted() {
        let mut b = base();
        b["some_future_field"] = json!({"x": 1});
        b["temperature"] = Value::Null;
        b["stop"] = Value::Null;
        b["user"] = json!("u-1");
        assert!(chat(&b, 1000).is_ok());
    }

    #[test]
    fn wrong_types_name_the_parameter() {
        for (k, v, param) in [
            ("temperature", json!("hot"), "temperature"),
            ("n", json!(1.5), "n"),
            ("stream", json!(1), "stream"),
            ("stop", json!(3), "stop"),
            ("stop", json!(["a", 3]), "stop[1]"),
            ("messages", json!({}), "messages"),
            (
                "messages",
                json!([{"role": "user", "content": 5}]),
                "messages[0].content",
            ),
            ("messages", json!([{"role": "user"}]), "messages[0].content"),
            ("messages", json!([{"content": "x"}]), "messages[0].role"),
            ("user", json!(7), "user"),
            ("seed", json!("7"), "seed"),
        ] {
            let e = chat_err(with(k, v));
            assert_eq!(e.status, 400, "{k}");
            assert_eq!(e.param.as_deref(), Some(param), "{k}: {}", e.message);
            assert_eq!(e.kind, "invalid_request_error");
        }
    }

    #[test]
    fn ranges_are_checked() {
        for (k, v) in [
            ("temperature", json!(2.5)),
            ("temperature", json!(-0.1)),
            ("top_p", json!(1.01)),
            ("presence_penalty", json!(-3)),
            ("frequency_penalty", json!(2.01)),
            ("n", json!(0)),
            ("max_tokens", json!(0)),
            ("max_completion_tokens", json!(-5)),
            ("top_k", json!(-1)),
            ("min_p", json!(1.5)),
        ] {
            let e = chat_err(with(k, v.clone()));
            assert_eq!(e.param.as_deref(), Some(k), "{k}={v}");
            assert_eq!(e.code, Some("invalid_value"));
        }
        assert!(chat(&with("temperature", json!(2)), 1000).is_ok());
        assert!(chat(&with("top_p", json!(0)), 1000).is_ok());
    }

    #[test]
    fn logprobs_rules() {
        let e = chat_err(with("top_logprobs", json!(3)));
        assert_eq!(e.param.as_deref(), Some("top_logprobs"));
        let mut b = with("logprobs", json!(true));
        b["top_logprobs"] = json!(21);
        assert_eq!(chat_err(b.clone()).param.as_deref(), Some("top_logprobs"));
        b["top_logprobs"] = json!(20);
        let c = chat(&b, 1000).unwrap();
        assert!(c.request.params.logprobs);
        assert_eq!(c.request.params.top_logprobs, 20);
    }

    #[test]
    fn stop_forms() {
        let c = chat(&with("stop", json!("END")), 1000).unwrap();
        assert_eq!(c.request.params.stop, vec!["END"]);
        let c = chat(&with("stop", json!(["a", "", "b"])), 1000).unwrap();
        assert_eq!(c.request.params.stop, vec!["a", "b"]);
        assert_eq!(
            chat_err(with("stop", json!(["a", "b", "c", "d", "e"])))
                .param
                .as_deref(),
            Some("stop")
        );
        assert_eq!(
            chat_err(with("stop", json!("x".repeat(MAX_STOP_BYTES + 1))))
                .param
                .as_deref(),
            Some("stop")
        );
    }

    #[test]
    fn max_completion_tokens_wins() {
        let mut b = with("max_tokens", json!(10));
        b["max_completion_tokens"] = json!(5);
        let c = chat(&b, 1000).unwrap();
        assert_eq!(c.request.params.max_tokens, Some(5));
        assert_eq!(c.max_param, "max_completion_tokens");
        let c = chat(&with("max_tokens", json!(7)), 1000).unwrap();
        assert_eq!(
            (c.request.params.max_tokens, c.max_param),
            (Some(7), "max_tokens")
        );
    }

    #[test]
    fn stream_options_need_stream() {
        let e = chat_err(with("stream_options", json!({"include_usage": true})));
        assert_eq!(e.param.as_deref(), Some("stream_options"));
        let mut b = with("stream", json!(true));
        b["stream_options"] = json!({"include_usage": true});
        let c = chat(&b, 1000).unwrap();
        assert!(c.request.stream && c.request.include_usage);
        b["stream_options"] = json!({"include_usage": "yes"});
        assert_eq!(
            chat_err(b).param.as_deref(),
            Some("stream_options.include_usage")
        );
    }

    #[test]
    fn content_parts() {
        let c = chat(&with("messages", json!([{"role": "user", "content": [{"type": "text", "text": "a"}, {"type": "text", "text": "b"}]}])), 1000).unwrap();
        assert_eq!(c.request.messages[0].content, "a\nb");
        let e = chat_err(with(
            "messages",
            json!([{"role": "user", "content": [{"type": "image_url", "image_url": {"url": "http://x"}}]}]),
        ));
        assert_eq!(e.param.as_deref(), Some("messages[0].content[0].type"));
        assert_eq!(e.code, Some("unsupported_parameter"));
        let e = chat_err(with(
            "messages",
            json!([{"role": "user", "content": [{"type": "text"}]}]),
        ));
        assert_eq!(e.param.as_deref(), Some("messages[0].content[0].text"));
    }

    #[test]
    fn roles_and_tool_messages() {
        let c = chat(
            &with(
                "messages",
                json!([
                    {"role": "developer", "content": "be brief"},
                    {"role": "user", "content": "weather?"},
                    {"role": "assistant", "content": null, "tool_calls": [{"id": "c1", "type": "function", "function": {"name": "w", "arguments": "{}"}}]},
                    {"role": "tool", "tool_call_id": "c1", "content": "sunny"}
                ]),
            ),
            1000,
        )
        .unwrap();
        let m = &c.request.messages;
        assert_eq!(m[0].role, Role::Developer);
        assert_eq!(
            m[2].tool_calls,
            vec![ToolCall {
                id: "c1".into(),
                name: "w".into(),
                arguments: "{}".into()
            }]
        );
        assert_eq!(m[3].tool_call_id.as_deref(), Some("c1"));
        let e = chat_err(with("messages", json!([{"role": "tool", "content": "x"}])));
        assert_eq!(e.param.as_deref(), Some("messages[0].tool_call_id"));
        let e = chat_err(with(
            "messages",
            json!([{"role": "wizard", "content": "x"}]),
        ));
        assert_eq!(e.param.as_deref(), Some("messages[0].role"));
        assert_eq!(
            chat_err(with("messages", json!([]))).param.as_deref(),
            Some("messages")
        );
    }

    #[test]
    fn tools_and_formats_are_validated() {
        let tool = json!({"type": "function", "function": {"name": "get_weather", "parameters": {"type": "object"}}});
        let c = chat(&with("tools", json!([tool.clone()])), 1000).unwrap();
        assert_eq!(c.request.tools[0].name, "get_weather");
        assert_eq!(c.request.tool_choice, ToolChoice::Auto);
        let mut b = with("tools", json!([tool.clone()]));
        b["tool_choice"] = json!({"type": "function", "function": {"name": "nope"}});
        assert_eq!(
            chat_err(b).param.as_deref(),
            Some("tool_choice.function.name")
        );
        assert_eq!(
            chat_err(with("tool_choice", json!("required")))
                .param
                .as_deref(),
            Some("tool_choice")
        );
        let bad = json!([{"type": "function", "function": {"name": "has space"}}]);
        assert_eq!(
            chat_err(with("tools", bad)).param.as_deref(),
            Some("tools[0].function.name")
        );
        let rf = json!({"type": "json_schema", "json_schema": {"name": "r", "schema": {"type": "object"}, "strict": true}});
        let c = chat(&with("response_format", rf), 1000).unwrap();
        assert!(matches!(
            c.request.response_format,
            ResponseFormat::JsonSchema { strict: true, .. }
        ));
        let e = chat_err(with("response_format", json!({"type": "json_schema"})));
        assert_eq!(e.param.as_deref(), Some("response_format.json_schema"));
        let e = chat_err(with("response_format", json!({"type": "yaml"})));
        assert_eq!(e.param.as_deref(), Some("response_format.type"));
    }

    #[test]
    fn unimplemented_fields_are_refused() {
        for k in ["functions", "function_call", "audio", "web_search_options"] {
            let e = chat_err(with(k, json!({"x": 1})));
            assert_eq!(e.param.as_deref(), Some(k));
            assert_eq!(e.code, Some("unsupported_parameter"));
        }
        assert_eq!(
            chat_err(with("modalities", json!(["text", "audio"])))
                .param
                .as_deref(),
            Some("modalities[1]")
        );
        assert!(chat(&with("modalities", json!(["text"])), 1000).is_ok());
    }

    #[test]
    fn logit_bias() {
        let c = chat(&with("logit_bias", json!({"5": -100, "2": 3.5})), 1000).unwrap();
        assert_eq!(c.local.logit_bias, vec![(2, 3.5), (5, -100.0)]);
        assert_eq!(
            chat_err(with("logit_bias", json!({"5000": 1})))
                .param
                .as_deref(),
            Some("logit_bias")
        );
        assert_eq!(
            chat_err(with("logit_bias", json!({"x": 1})))
                .param
                .as_deref(),
            Some("logit_bias")
        );
        assert_eq!(
            chat_err(with("logit_bias", json!({"5": 101})))
                .param
                .as_deref(),
            Some("logit_bias.5")
        );
    }

    #[test]
    fn seeds_signed_and_unsigned() {
        assert_eq!(
            chat(&with("seed", json!(-1)), 1000)
                .unwrap()
                .request
                .params
                .seed,
            Some(u64::MAX)
        );
        assert_eq!(
            chat(&with("seed", json!(u64::MAX)), 1000)
                .unwrap()
                .request
                .params
                .seed,
            Some(u64::MAX)
        );
        assert_eq!(
            chat(&with("seed", json!(42)), 1000)
                .unwrap()
                .request
                .params
                .seed,
            Some(42)
        );
    }

    #[test]
    fn completion_prompts() {
        let c = completion(&json!({"model": "m", "prompt": "hi"}), 1000).unwrap();
        assert_eq!(c.prompt, Prompt::Text("hi".into()));
        assert_eq!(c.params.max_tokens, Some(16));
        let c = completion(&json!({"prompt": [1, 2, 3]}), 1000).unwrap();
        assert_eq!(c.prompt, Prompt::Tokens(vec![1, 2, 3]));
        let c = completion(&json!({"prompt": [[4, 5]]}), 1000).unwrap();
        assert_eq!(c.prompt, Prompt::Tokens(vec![4, 5]));
        let c = completion(&json!({"prompt": ["x"], "logprobs": 2}), 1000).unwrap();
        assert_eq!((c.params.logprobs, c.params.top_logprobs), (true, 2));
        for (body, param) in [
            (json!({"model": "m"}), "prompt"),
            (json!({"prompt": ["a", "b"]}), "prompt"),
            (json!({"prompt": [1, 5000]}), "prompt[1]"),
            (json!({"prompt": "x", "logprobs": 6}), "logprobs"),
            (json!({"prompt": "x", "suffix": "y"}), "suffix"),
            (json!({"prompt": "x", "best_of": 3}), "best_of"),
            (json!({"prompt": "x", "echo": true, "logprobs": 1}), "echo"),
            (json!({"prompt": 5}), "prompt"),
        ] {
            assert_eq!(
                completion(&body, 1000).unwrap_err().param.as_deref(),
                Some(param),
                "{body}"
            );
        }
    }

    #[test]
    fn embedding_inputs() {
        let e = embedding(&json!({"input": ["a", "b"], "model": "x"})).unwrap();
        assert_eq!(e.input, vec!["a", "b"]);
        assert_eq!(
            embedding(&json!({"input": [[1, 2]]}))
                .unwrap_err()
                .param
                .as_deref(),
            Some("input[0]")
        );
        assert_eq!(
            embedding(&json!({"input": "a", "encoding_format": "hex"}))
                .unwrap_err()
                .param
                .as_deref(),
            Some("encoding_format")
        );
        assert_eq!(
            embedding(&json!({})).unwrap_err().param.as_deref(),
            Some("input")
        );
    }

    #[test]
    fn body_must_be_an_object() {
        assert_eq!(parse_body(b"[1]").unwrap_err().code, Some("invalid_json"));
        assert_eq!(parse_body(b"{").unwrap_err().status, 400);
        assert!(parse_body(b"{}").is_ok());
    }
}
