//! Tool calls: per-family output formats, parsing a finished output, a
//! streaming detector, and constraints that force a call.
//!
//! # Formats
//!
//! | [`ToolFormat`] | model output | families |
//! |---|---|---|
//! | `Hermes` | `<tool_call>\n{"name": …, "arguments": {…}}\n</tool_call>`, repeated; a JSON list inside the tags is accepted too | Qwen 2.5 / 3, Hermes 2 Pro / 3, SmolLM2 / 3, Granite 4, other ChatML models |
//! | `Llama3` | `{"name": …, "parameters": {…}}`, optionally after `<\|python_tag\|>`; `<\|python_tag\|>name.call(k="v")` for built-ins | Llama 3.1 / 3.2 / 3.3 |
//! | `MistralJson` | `[TOOL_CALLS][{"name": …, "arguments": {…}}, …]` | Mistral 7B v0.3, Nemo (tokenizer v3) |
//! | `MistralArgs` | `[TOOL_CALLS]name[ARGS]{…}`, repeated | Mistral Small 3.2, Devstral, Ministral 3 (tokenizer v11+) |
//! | `Functools` | `functools[{"name": …, "arguments": {…}}, …]` | Phi-4-mini (as vLLM's `phi4_mini_json` parser), FireFunction v2 |
//! | `ToolCallTag` | `<\|tool_call\|>[{"name": …, "arguments": {…}}]`, optionally closed by `<\|/tool_call\|>` | Granite 3.x |
//! | `Generic` | a bare JSON object `{"name": …, "arguments": {…}}` (also a list, `{"tool_calls": […]}`, or inside a json code fence) | Gemma 2/3, Phi-3, anything without a native format (the server describes the tools in the prompt) |
//!
//! [`ToolFormat::detect`] reads the chat template text first, then the
//! vocabulary's special tokens:
//! 1. `[TOOL_CALLS]` → `MistralArgs` if `[ARGS]` appears, else `MistralJson`;
//! 2. `functools` or `<|tool|>` (Phi-4-mini) → `Functools`;
//! 3. `<|tool_call|>` → `ToolCallTag`;
//! 4. `<tool_call>` → `Hermes`;
//! 5. `<|python_tag|>`, or `"parameters"` with `<|start_header_id|>` → `Llama3`;
//! 6. a ChatML template (`<|im_start|>`) → `Hermes`;
//! 7. no template match: a vocabulary token `[TOOL_CALLS]`, `<|tool_call|>`,
//!    `<tool_call>` or `<|python_tag|>` picks the same formats;
//! 8. otherwise `Generic`.
//!
//! Markers such as `[TOOL_CALLS]` and `<|python_tag|>` are control tokens in
//! their vocabularies: text handed to [`parse_tool_calls`] and
//! [`ToolCallDetector`] must render them (decode with `special = true`, at
//! least for [`ToolFormat::markers`]). The constraints force the token itself.
//!
//! Deliberately absent: XML-style calls (`<function=name><parameter=…>`,
//! Qwen3-Coder, Nemotron), DeepSeek, Command-R, GPT-OSS harmony and
//! Functionary formats (they detect as `Hermes`/`Generic` or not at all);
//! streaming of partial arguments (a call is emitted once complete); checking
//! parsed names against the declared tools (the caller's choice).

use hearth_api::{Tool, ToolCall, ToolChoice};
use hearth_tokenizer::Tokenizer;
use rand::RngCore;
use serde_json::{Map, Value};

use crate::error::{SchemaError, ToolError};
use crate::grammar::{
    ArrayNode, Grammar, JsonOptions, Node, NodeId, ObjectNode, Prop, FREE_STR, NONE,
};
use crate::schema::Compiler;

/// A model family's tool-call syntax (see the module docs).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum ToolFormat {
    Hermes,
    Llama3,
    MistralJson,
    MistralArgs,
    Functools,
    /// `<|tool_call|>[…]`; `close` adds `<|/tool_call|>`.
    ToolCallTag {
        close: bool,
    },
    Generic,
}

const HERMES_OPEN: &str = "<tool_call>";
const HERMES_CLOSE: &str = "</tool_call>";
const PYTHON_TAG: &str = "<|python_tag|>";
const TOOL_CALLS: &str = "[TOOL_CALLS]";
const ARGS: &str = "[ARGS]";
const CALL_ID: &str = "[CALL_ID]";
const FUNCTOOLS: &str = "functools";
const TAG_OPEN: &str = "<|tool_call|>";
const TAG_CLOSE: &str = "<|/tool_call|>";

impl ToolFormat {
    /// Picks the format from a chat template and, failing that, from the
    /// vocabulary (order in the module docs).
    pub fn detect(chat_template: &str, tok: Option<&Tokenizer>) -> ToolFormat {
        let t = chat_template;
        if t.contains(TOOL_CALLS) {
            return if t.contains(ARGS) {
                ToolFormat::MistralArgs
            } else {
                ToolFormat::MistralJson
            };
        }
        if t.contains(FUNCTOOLS) || t.contains("<|tool|>") {
            return ToolFormat::Functools;
        }
        if t.contains(TAG_OPEN) {
            return ToolFormat::ToolCallTag {
                close: t.contains(TAG_CLOSE),
            };
        }
        if t.contains(HERMES_OPEN) {
            return ToolFormat::Hermes;
        }
        if t.contains(PYTHON_TAG)
            || (t.contains("\"parameters\"") && t.contains("<|start_header_id|>"))
        {
            return ToolFormat::Llama3;
        }
        if t.contains("<|im_start|>") {
            return ToolFormat::Hermes;
        }
        if let Some(tok) = tok {
            if tok.token_id(TOOL_CALLS).is_some() {
                return if tok.token_id(ARGS).is_some() {
                    ToolFormat::MistralArgs
                } else {
                    ToolFormat::MistralJson
                };
            }
            if tok.token_id(TAG_OPEN).is_some() {
                return ToolFormat::ToolCallTag {
                    close: tok.token_id(TAG_CLOSE).is_some(),
                };
            }
            if tok.token_id(HERMES_OPEN).is_some() {
                return ToolFormat::Hermes;
            }
            if tok.token_id(PYTHON_TAG).is_some() {
                return ToolFormat::Llama3;
            }
        }
        ToolFormat::Generic
    }

    /// Marker strings of this format that may be special tokens (render
    /// them when decoding text for the parser).
    pub fn markers(&self) -> &'static [&'static str] {
        match self {
            ToolFormat::Hermes => &[HERMES_OPEN, HERMES_CLOSE],
            ToolFormat::Llama3 => &[PYTHON_TAG],
            ToolFormat::MistralJson => &[TOOL_CALLS],
            ToolFormat::MistralArgs => &[TOOL_CALLS, ARGS, CALL_ID],
            ToolFormat::Functools => &[],
            ToolFormat::ToolCallTag { .. } => &[TAG_OPEN, TAG_CLOSE],
            ToolFormat::Generic => &[],
        }
    }

    /// A fresh call id: Mistral templates insist on 9 alphanumerics, others
    /// get `call_` and 24 alphanumerics.
    pub fn call_id<R: RngCore + ?Sized>(&self, rng: &mut R) -> String {
        const ALNUM: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789";
        let mut pick = |n: usize| -> String {
            (0..n)
                .map(|_| ALNUM[(rng.next_u32() % ALNUM.len() as u32) as usize] as char)
                .collect()
        };
        match self {
            ToolFormat::MistralJson | ToolFormat::MistralArgs => pick(9),
            _ => format!("call_{}", pick(24)),
        }
    }

    /// The key this format writes the arguments under.
    fn args_key(&self) -> &'static str {
        match self {
            ToolFormat::Llama3 => "parameters",
            _ => "arguments",
        }
    }
}

/// A finished output split into text and tool calls.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct ParsedOutput {
    pub content: String,
    pub calls: Vec<ToolCall>,
}

// ---- parsing ---------------------------------------------------------------

/// One call from a JSON object (`name` + `arguments`/`parameters`, or the
/// OpenAI shape `{"function": {…}}`). Arguments must be an object (or a
/// string holding one); absent arguments are `{}`.
fn call_from_value(v: &Value) -> Option<(String, String, Option<String>)> {
    let o = v.as_object()?;
    if let Some(Value::Object(f)) = o.get("function") {
        let (n, a, _) = call_from_value(&Value::Object(f.clone()))?;
        return Some((
            n,
            a,
            o.get("id").and_then(|x| x.as_str()).map(str::to_string),
        ));
    }
    let name = o.get("name")?.as_str()?;
    if name.is_empty() {
        return None;
    }
    let args = match o.get("arguments").or_else(|| o.get("parameters")) {
        None | Some(Value::Null) => "{}".to_string(),
        Some(a @ Value::Object(_)) => serde_json::to_string(a).ok()?,
        Some(Value::String(s)) => match serde_json::from_str::<Value>(s) {
            Ok(Value::Object(_)) => s.clone(),
            _ => return None,
        },
        Some(_) => return None,
    };
    Some((
        name.to_string(),
        args,
        o.get("id").and_then(|x| x.as_str()).map(str::to_string),
    ))
}

/// Calls from an object or a non-empty list of objects; all-or-nothing.
fn calls_from_value(v: &Value) -> Option<Vec<(String, String, Option<String>)>> {
    match v {
        Value::Array(a) if !a.is_empty() => a.iter().map(call_from_value).collect(),
        Value::Object(o) if o.contains_key("tool_calls") => match o.get("tool_calls") {
            Some(v @ Value::Array(_)) => calls_from_value(v),
            _ => None,
        },
        Value::Object(_) => call_from_value(v).map(|c| vec![c]),
        _ => None,
    }
}

/// Parses one JSON value at the start of `s`; returns it and the rest.
fn json_prefix(s: &str) -> Option<(Value, &str)> {
    let mut it = serde_json::Deserializer::from_str(s).into_iter::<Value>();
    match it.next() {
        Some(Ok(v)) => {
            let off = it.byte_offset();
            Some((v, &s[off..]))
        }
        _ => None,
    }
}

struct Collector<'r, R: RngCore + ?Sized> {
    format: ToolFormat,
    rng: &'r mut R,
    calls: Vec<ToolCall>,
}

impl<R: RngCore + ?Sized> Collector<'_, R> {
    fn push(&mut self, found: Vec<(String, String, Option<String>)>) {
        for (name, arguments, id) in found {
            let id = match (self.format, id) {
                // A model-written Mistral id is kept when the template would accept it.
                (ToolFormat::MistralJson | ToolFormat::MistralArgs, Some(i))
                    if i.len() == 9 && i.bytes().all(|b| b.is_ascii_alphanumeric()) =>
                {
                    i
                }
                _ => self.format.call_id(self.rng),
            };
            self.calls.push(ToolCall {
                id,
                name,
                arguments,
            });
        }
    }
}

fn finish_content(content: String, have_calls: bool) -> String {
    if have_calls {
        content.trim().to_string()
    } else {
        content
    }
}

/// Splits a finished output into content and tool calls. Malformed calls
/// stay in the content, verbatim; nothing here panics.
pub fn parse_tool_calls<R: RngCore + ?Sized>(
    format: ToolFormat,
    text: &str,
    rng: &mut R,
) -> ParsedOutput {
    let mut col = Collector {
        format,
        rng,
        calls: Vec::new(),
    };
    let content = match format {
        ToolFormat::Hermes => parse_hermes(text, &mut col),
        ToolFormat::Llama3 => parse_llama3(text, &mut col),
        ToolFormat::MistralJson => parse_after_marker(text, TOOL_CALLS, None, &mut col, true),
        ToolFormat::MistralArgs => parse_mistral_args(text, &mut col),
        ToolFormat::Functools => parse_after_marker(text, FUNCTOOLS, None, &mut col, false),
        ToolFormat::ToolCallTag { .. } => {
            parse_after_marker(text, TAG_OPEN, Some(TAG_CLOSE), &mut col, false)
        }
        ToolFormat::Generic => parse_generic(text, &mut col),
    };
    let have = !col.calls.is_empty();
    ParsedOutput {
        content: finish_content(content, have),
        calls: col.calls,
    }
}

fn parse_hermes<R: RngCore + ?Sized>(text: &str, col: &mut Collector<R>) -> String {
    let mut content = String::new();
    let mut rest = text;
    while let Some(i) = rest.find(HERMES_OPEN) {
        content.push_str(&rest[..i]);
        let after = &rest[i + HERMES_OPEN.len()..];
        let (inner, next, raw_len) = match after.find(HERMES_CLOSE) {
            Some(j) => (
                &after[..j],
                &after[j + HERMES_CLOSE.len()..],
                HERMES_OPEN.len() + j + HERMES_CLOSE.len(),
            ),
            None => (after, "", HERMES_OPEN.len() + after.len()),
        };
        match serde_json::from_str::<Value>(inner.trim())
            .ok()
            .as_ref()
            .and_then(calls_from_value)
        {
            Some(found) => col.push(found),
            None => content.push_str(&rest[i..i + raw_len]),
        }
        rest = next;
    }
    content.push_str(rest);
    content
}

fn parse_llama3<R: RngCore + ?Sized>(text: &str, col: &mut Collector<R>) -> String {
    let t = text.trim_start();
    let (t, tagged) = match t.strip_prefix(PYTHON_TAG) {
        Some(r) => (r.trim_start(), true),
        None => (t, false),
    };
    if t.starts_with('{') {
        // One or more call objects, separated by whitespace or `;`.
        let mut found = Vec::new();
        let mut rest = t;
        loop {
            let Some((v, r)) = json_prefix(rest) else {
                return text.to_string();
            };
            match calls_from_value(&v) {
                Some(c) => found.extend(c),
                None => return text.to_string(),
            }
            rest = r.trim_start().trim_start_matches(';').trim_start();
            if rest.is_empty() {
                break;
            }
            if !rest.starts_with('{') {
                return text.to_string();
            }
        }
        col.push(found);
        return String::new();
    }
    if tagged {
        if let Some(c) = parse_builtin_call(t.trim()) {
            col.push(vec![c]);
            return String::new();
        }
    }
    text.to_string()
}

/// Llama 3.1 built-in tools: `name.call(key="value", n=3)`.
fn parse_builtin_call(s: &str) -> Option<(String, String, Option<String>)> {
    let open = s.find(".call(")?;
    let name = &s[..open];
    if name.is_empty() || !name.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_') {
        return None;
    }
    let body = s[open + 6..].strip_suffix(')')?;
    let mut args = Map::new();
    let mut rest = body.trim();
    while !rest.is_empty() {
        let eq = rest.find('=')?;
        let key = rest[..eq].trim();
        if key.is_empty() || !key.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_') {
            return None;
        }
        let (v, r) = json_prefix(rest[eq + 1..].trim_start())?;
        args.insert(key.to_string(), v);
        rest = r.trim_start();
        if let Some(r) = rest.strip_prefix(',') {
            rest = r.trim_start();
        } else if !rest.is_empty() {
            return None;
        }
    }
    Some((
        name.to_string(),
        serde_json::to_string(&Value::Object(args)).ok()?,
        None,
    ))
}

/// `content MARKER json [CLOSE] trailing`; with `bare_list`, a text that
/// is itself a list of calls counts too (the marker token was not rendered).
fn parse_after_marker<R: RngCore + ?Sized>(
    text: &str,
    marker: &str,
    close: Option<&str>,
    col: &mut Collector<R>,
    bare_list: bool,
) -> String {
    let Some(i) = text.find(marker) else {
        if bare_list && text.trim_start().starts_with('[') {
            if let Some((v, rest)) = json_prefix(text.trim_start()) {
                if rest.trim().is_empty() {
                    if let Some(found) = calls_from_value(&v) {
                        col.push(found);
                        return String::new();
                    }
                }
            }
        }
        return text.to_string();
    };
    let after = text[i + marker.len()..].trim_start();
    let Some((v, rest)) = json_prefix(after) else {
        return text.to_string();
    };
    let Some(found) = calls_from_value(&v) else {
        return text.to_string();
    };
    let mut rest = rest.trim_start();
    if let Some(c) = close {
        rest = rest.strip_prefix(c).unwrap_or(rest);
    }
    col.push(found);
    let mut content = text[..i].to_string();
    content.push_str(rest);
    content
}

fn parse_mistral_args<R: RngCore + ?Sized>(text: &str, col: &mut Collector<R>) -> String {
    let Some(i) = text.find(TOOL_CALLS) else {
        return text.to_string();
    };
    let mut found = Vec::new();
    let mut trailing = "";
    let segs: Vec<&str> = text[i..].split(TOOL_CALLS).skip(1).collect();
    for (k, seg) in segs.iter().enumerate() {
        let Some(a) = seg.find(ARGS) else {
            return text.to_string();
        };
        let head = &seg[..a];
        let (name, id) = match head.find(CALL_ID) {
            Some(c) => (
                &head[..c],
                Some(head[c + CALL_ID.len()..].trim().to_string()),
            ),
            None => (head, None),
        };
        let name = name.trim();
        if name.is_empty() {
            return text.to_string();
        }
        let Some((v, rest)) = json_prefix(seg[a + ARGS.len()..].trim_start()) else {
            return text.to_string();
        };
        if !v.is_object() {
            return text.to_string();
        }
        if !rest.trim().is_empty() {
            if k + 1 == segs.len() {
                trailing = rest;
            } else {
                return text.to_string();
            }
        }
        found.push((
            name.to_string(),
            serde_json::to_string(&v).unwrap_or_else(|_| "{}".into()),
            id,
        ));
    }
    if found.is_empty() {
        return text.to_string();
    }
    col.push(found);
    let mut content = text[..i].to_string();
    content.push_str(trailing);
    content
}

fn parse_generic<R: RngCore + ?Sized>(text: &str, col: &mut Collector<R>) -> String {
    let mut t = text.trim();
    if let Some(r) = t.strip_prefix("```json").or_else(|| t.strip_prefix("```")) {
        match r.trim_end().strip_suffix("```") {
            Some(inner) => t = inner.trim(),
            None => return text.to_string(),
        }
    }
    if !(t.starts_with('{') || t.starts_with('[')) {
        return text.to_string();
    }
    match serde_json::from_str::<Value>(t)
        .ok()
        .as_ref()
        .and_then(calls_from_value)
    {
        Some(found) => {
            col.push(found);
            String::new()
        }
        None => text.to_string(),
    }
}

// ---- streaming ---------------------------------------------------------------

/// What the detector releases.
#[derive(Clone, Debug, PartialEq)]
pub enum DetectorEvent {
    /// Text that is certainly not part of a tool call.
    Content(String),
    ToolCall(ToolCall),
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Mode {
    /// Looking for a marker anywhere in the text.
    Scan,
    /// Formats whose calls begin the output: undecided yet.
    StartCheck,
    /// Decided: no tool call; everything is content.
    Passthrough,
    /// Inside tool-call text: buffering.
    InTool,
}

/// Streaming tool-call detection over text deltas: text that could still be
/// the start of a tool-call marker is held back, and released as content as
/// soon as it cannot be. Hermes calls are emitted as each
/// `</tool_call>` arrives; other formats' calls at [`ToolCallDetector::finish`].
#[derive(Clone, Debug)]
pub struct ToolCallDetector {
    format: ToolFormat,
    mode: Mode,
    held: String,
    saw_call: bool,
}

/// Start-of-output patterns (whitespace outside strings ignored).
fn start_patterns(f: ToolFormat) -> &'static [&'static str] {
    match f {
        ToolFormat::Llama3 => &[PYTHON_TAG, "{\"name\"", "{\"type\""],
        ToolFormat::Generic => &[
            "{\"name\"",
            "{\"tool_calls\"",
            "{\"function\"",
            "[{\"name\"",
            "```json",
            "```{",
        ],
        _ => &[],
    }
}

fn anywhere_marker(f: ToolFormat) -> Option<&'static str> {
    match f {
        ToolFormat::Hermes => Some(HERMES_OPEN),
        ToolFormat::MistralJson | ToolFormat::MistralArgs => Some(TOOL_CALLS),
        ToolFormat::Functools => Some(FUNCTOOLS),
        ToolFormat::ToolCallTag { .. } => Some(TAG_OPEN),
        ToolFormat::Llama3 | ToolFormat::Generic => None,
    }
}

enum Viability {
    Viable,
    Matched,
    Dead,
}

/// Whitespace outside double quotes removed (enough for the short
/// start patterns).
fn squeeze(s: &str, limit: usize) -> String {
    let mut out = String::new();
    let mut in_str = false;
    for c in s.chars() {
        if c == '"' {
            in_str = !in_str;
        }
        if !in_str && c.is_whitespace() {
            continue;
        }
        out.push(c);
        if out.len() >= limit {
            break;
        }
    }
    out
}

fn start_viability(held: &str, pats: &[&str]) -> Viability {
    let h = squeeze(held, 32);
    if pats.iter().any(|p| h.starts_with(p)) {
        return Viability::Matched;
    }
    if pats.iter().any(|p| p.starts_with(h.as_str())) {
        return Viability::Viable;
    }
    Viability::Dead
}

/// Length of the longest suffix of `s` that is a proper prefix of `m`,
/// measured so that the split falls on a char boundary.
fn held_suffix(s: &str, m: &str) -> usize {
    let max = (m.len() - 1).min(s.len());
    for k in (1..=max).rev() {
        let start = s.len() - k;
        if s.is_char_boundary(start) && m.as_bytes().starts_with(&s.as_bytes()[start..]) {
            return k;
        }
    }
    0
}

impl ToolCallDetector {
    pub fn new(format: ToolFormat) -> ToolCallDetector {
        let mode = if anywhere_marker(format).is_some() {
            Mode::Scan
        } else {
            Mode::StartCheck
        };
        ToolCallDetector {
            format,
            mode,
            held: String::new(),
            saw_call: false,
        }
    }

    /// `Some(true)` once a call has begun, `Some(false)` once none can
    /// (start-of-output formats), `None` while undecided.
    pub fn is_tool_call(&self) -> Option<bool> {
        match self.mode {
            Mode::InTool => Some(true),
            Mode::Passthrough => Some(false),
            _ if self.saw_call => Some(true),
            _ => None,
        }
    }

    /// Text currently held back.
    pub fn held(&self) -> &str {
        &self.held
    }

    /// Feeds a text delta; returns what can be released now.
    pub fn push<R: RngCore + ?Sized>(&mut self, delta: &str, rng: &mut R) -> Vec<DetectorEvent> {
        self.held.push_str(delta);
        let mut out = Vec::new();
        loop {
            match self.mode {
                Mode::Passthrough => {
                    if !self.held.is_empty() {
                        out.push(DetectorEvent::Content(std::mem::take(&mut self.held)));
                    }
                    return out;
                }
                Mode::StartCheck => {
                    match start_viability(&self.held, start_patterns(self.format)) {
                        Viability::Viable => return out,
                        Viability::Matched => self.mode = Mode::InTool,
                        Viability::Dead => self.mode = Mode::Passthrough,
                    }
                }
                Mode::Scan => {
                    let Some(m) = anywhere_marker(self.format) else {
                        self.mode = Mode::Passthrough;
                        continue;
                    };
                    if let Some(i) = self.held.find(m) {
                        if i > 0 {
                            out.push(DetectorEvent::Content(self.held[..i].to_string()));
                        }
                        self.held.drain(..i);
                        self.mode = Mode::InTool;
                        continue;
                    }
                    let keep = held_suffix(&self.held, m);
                    let cut = self.held.len() - keep;
                    if cut > 0 {
                        out.push(DetectorEvent::Content(self.held[..cut].to_string()));
                        self.held.drain(..cut);
                    }
                    return out;
                }
                Mode::InTool => {
                    if self.format != ToolFormat::Hermes {
                        return out;
                    }
                    // Hermes: each closed block is final.
                    let Some(j) = self.held.find(HERMES_CLOSE) else {
                        return out;
                    };
                    let block: String = self.held.drain(..j + HERMES_CLOSE.len()).collect();
                    let parsed = parse_tool_calls(self.format, &block, rng);
                    self.emit(parsed, &mut out);
                    self.mode = Mode::Scan;
                }
            }
        }
    }

    fn emit(&mut self, parsed: ParsedOutput, out: &mut Vec<DetectorEvent>) {
        if !parsed.content.is_empty() {
            out.push(DetectorEvent::Content(parsed.content));
        }
        if !parsed.calls.is_empty() {
            self.saw_call = true;
        }
        out.extend(parsed.calls.into_iter().map(DetectorEvent::ToolCall));
    }

    /// End of output: releases everything held, as calls where it parses.
    pub fn finish<R: RngCore + ?Sized>(&mut self, rng: &mut R) -> Vec<DetectorEvent> {
        let mut out = Vec::new();
        let held = std::mem::take(&mut self.held);
        match self.mode {
            Mode::InTool => {
                let parsed = parse_tool_calls(self.format, &held, rng);
                self.emit(parsed, &mut out);
            }
            _ => {
                if !held.is_empty() {
                    out.push(DetectorEvent::Content(held));
                }
            }
        }
        self.mode = Mode::Passthrough;
        out
    }
}

// ---- constraints ---------------------------------------------------------------

/// Builds constraints that force a tool call in a format.
pub struct ToolCallConstraint;

/// How many calls a `required` constraint allows (parallel calls).
pub const MAX_PARALLEL_CALLS: u32 = 8;

impl ToolCallConstraint {
    /// A constraint for `tool_choice` `required` (one or more calls of any
    /// listed tool, up to [`MAX_PARALLEL_CALLS`] when `parallel`) or a named
    /// function (exactly one call of it). Arguments follow each tool's
    /// parameters schema ([`crate::schema`] subset; a missing or `null`
    /// schema means any object). `auto` and `none` need no constraint
    /// ([`ToolError::NotConstrained`]): generate freely, then parse (`auto`)
    /// or don't (`none`).
    ///
    /// Markers that are control tokens in `tok` (e.g. `[TOOL_CALLS]`) are
    /// forced as those tokens; others as text.
    pub fn build(
        format: ToolFormat,
        tools: &[Tool],
        choice: &ToolChoice,
        tok: &Tokenizer,
        parallel: bool,
        opts: JsonOptions,
    ) -> Result<Grammar, ToolError> {
        let (selected, max_calls): (Vec<&Tool>, u32) = match choice {
            ToolChoice::Auto | ToolChoice::None => return Err(ToolError::NotConstrained),
            ToolChoice::Required => {
                if tools.is_empty() {
                    return Err(ToolError::NoTools);
                }
                (
                    tools.iter().collect(),
                    if parallel { MAX_PARALLEL_CALLS } else { 1 },
                )
            }
            ToolChoice::Function(name) => match tools.iter().find(|t| &t.name == name) {
                Some(t) => (vec![t], 1),
                None => return Err(ToolError::UnknownFunction(name.clone())),
            },
        };
        let base = Grammar::base(opts).map_err(|e| ToolError::Schema {
            name: String::new(),
            source: SchemaError::TooComplex {
                path: "#".into(),
                reason: e.0,
            },
        })?;
        let any_object = Value::Object(Map::from_iter([(
            "type".to_string(),
            Value::String("object".into()),
        )]));
        let mut comp = Compiler::new(&any_object, base);
        // Compile each tool's arguments schema.
        let mut args_nodes = Vec::with_capacity(selected.len());
        for t in &selected {
            if t.name.is_empty() {
                return Err(ToolError::BadName(t.name.clone()));
            }
            let schema = match &t.parameters {
                Value::Null => &any_object,
                Value::Object(m) if m.is_empty() => &any_object,
                other => other,
            };
            comp.set_doc(schema);
            let n = comp
                .compile_node(schema, "#")
                .map_err(|e| ToolError::Schema {
                    name: t.name.clone(),
                    source: e,
                })?;
            args_nodes.push(n);
        }
        let g = comp.grammar_mut();
        let marker = |g: &mut Grammar, text: &str| -> NodeId {
            match tok.token_id(text) {
                Some(id) if tok.is_control(id) => g.add_node(Node::Special(id)),
                _ => g.add_node(Node::Bytes(text.as_bytes().to_vec())),
            }
        };
        // `{"name": "<name>", "<args_key>": <args>}` for each selected tool.
        let call_objects: Vec<NodeId> = selected
            .iter()
            .zip(&args_nodes)
            .map(|(t, &args)| call_object(g, &t.name, format.args_key(), args))
            .collect::<Result<_, _>>()?;
        let any_call = if call_objects.len() == 1 {
            call_objects[0]
        } else {
            g.add_node(Node::Union(call_objects.clone()))
        };
        let root = match format {
            ToolFormat::Hermes => {
                let open = g.add_node(Node::Bytes(format!("{HERMES_OPEN}\n").into_bytes()));
                let open = match tok.token_id(HERMES_OPEN) {
                    Some(id) if tok.is_control(id) => {
                        let sp = g.add_node(Node::Special(id));
                        let nl = g.add_node(Node::Bytes(b"\n".to_vec()));
                        g.add_node(Node::Seq(vec![sp, nl]))
                    }
                    _ => open,
                };
                let nl = g.add_node(Node::Bytes(b"\n".to_vec()));
                let close = marker(g, HERMES_CLOSE);
                let one = g.add_node(Node::Seq(vec![open, any_call, nl, close]));
                let sep = g.add_node(Node::Bytes(b"\n".to_vec()));
                g.add_node(Node::Repeat {
                    item: one,
                    sep: Some(sep),
                    min: 1,
                    max: max_calls,
                })
            }
            ToolFormat::Llama3 | ToolFormat::Generic => any_call,
            ToolFormat::MistralJson => {
                let m = marker(g, TOOL_CALLS);
                let arr = g.add_node(Node::Array(ArrayNode {
                    prefix: Vec::new(),
                    items: Some(any_call),
                    min: 1,
                    max: max_calls,
                }));
                g.add_node(Node::Seq(vec![m, arr]))
            }
            ToolFormat::Functools => {
                let m = g.add_node(Node::Bytes(FUNCTOOLS.as_bytes().to_vec()));
                let arr = g.add_node(Node::Array(ArrayNode {
                    prefix: Vec::new(),
                    items: Some(any_call),
                    min: 1,
                    max: max_calls,
                }));
                g.add_node(Node::Seq(vec![m, arr]))
            }
            ToolFormat::ToolCallTag { close } => {
                let m = marker(g, TAG_OPEN);
                let arr = g.add_node(Node::Array(ArrayNode {
                    prefix: Vec::new(),
                    items: Some(any_call),
                    min: 1,
                    max: max_calls,
                }));
                let mut items = vec![m, arr];
                if close {
                    items.push(marker(g, TAG_CLOSE));
                }
                g.add_node(Node::Seq(items))
            }
            ToolFormat::MistralArgs => {
                let mut alts = Vec::new();
                for (t, &args) in selected.iter().zip(&args_nodes) {
                    if t.name.contains('[') || t.name.chars().any(char::is_whitespace) {
                        return Err(ToolError::BadName(t.name.clone()));
                    }
                    let m = marker(g, TOOL_CALLS);
                    let name = g.add_node(Node::Bytes(t.name.as_bytes().to_vec()));
                    let a = marker(g, ARGS);
                    alts.push(g.add_node(Node::Seq(vec![m, name, a, args])));
                }
                let one = if alts.len() == 1 {
                    alts[0]
                } else {
                    g.add_node(Node::Union(alts))
                };
                g.add_node(Node::Repeat {
                    item: one,
                    sep: None,
                    min: 1,
                    max: max_calls,
                })
            }
        };
        g.root = root;
        comp.finish().map_err(|e| ToolError::Schema {
            name: selected
                .iter()
                .map(|t| t.name.as_str())
                .collect::<Vec<_>>()
                .join(","),
            source: e,
        })
    }
}

fn call_object(
    g: &mut Grammar,
    name: &str,
    args_key: &str,
    args: NodeId,
) -> Result<NodeId, ToolError> {
    let enc = serde_json::to_string(name).map_err(|_| ToolError::BadName(name.to_string()))?;
    let lit = g.add_lits(&[(enc.into_bytes(), NONE)]);
    let name_node = g.add_node(Node::Lit(lit));
    Ok(g.add_node(Node::Object(ObjectNode {
        props: vec![
            Prop {
                name: "name".into(),
                node: name_node,
                required: true,
            },
            Prop {
                name: args_key.into(),
                node: args,
                required: true,
            },
        ],
        additional: None,
        add_key_kind: FREE_STR,
        key_tries: Vec::new(),
        req_from: Vec::new(),
    })))
}
