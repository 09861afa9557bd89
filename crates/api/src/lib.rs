//! The request and response model every layer of Hearth shares: the server
//! parses OpenAI JSON into these types, the guard inspects and redacts them,
//! the router scores them, and the engine or the cloud client answers them.
//!
//! These are *not* wire types: field names follow OpenAI's where that helps,
//! but parsing/validation of client JSON lives in `hearth-server`, and the
//! upstream encoding in `hearth-cloud`. Everything here is plain data.

use serde::{Deserialize, Serialize};

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, Hash)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    System,
    Developer,
    User,
    Assistant,
    Tool,
}

impl Role {
    pub fn as_str(self) -> &'static str {
        match self {
            Role::System => "system",
            Role::Developer => "developer",
            Role::User => "user",
            Role::Assistant => "assistant",
            Role::Tool => "tool",
        }
    }
}

/// A function call the assistant made.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ToolCall {
    pub id: String,
    pub name: String,
    /// JSON text of the arguments, as the model produced it.
    pub arguments: String,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Message {
    pub role: Role,
    /// Text content (multi-part text content is joined by the server).
    pub content: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub tool_calls: Vec<ToolCall>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tool_call_id: Option<String>,
}

impl Message {
    pub fn new(role: Role, content: impl Into<String>) -> Message {
        Message { role, content: content.into(), name: None, tool_calls: Vec::new(), tool_call_id: None }
    }
}

/// A tool (function) the model may call.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Tool {
    pub name: String,
    #[serde(default)]
    pub description: Option<String>,
    /// JSON Schema of the arguments.
    #[serde(default)]
    pub parameters: serde_json::Value,
}

#[derive(Clone, Debug, PartialEq, Default, Serialize, Deserialize)]
pub enum ToolChoice {
    #[default]
    Auto,
    None,
    Required,
    Function(String),
}

#[derive(Clone, Debug, PartialEq, Default, Serialize, Deserialize)]
pub enum ResponseFormat {
    #[default]
    Text,
    JsonObject,
    JsonSchema { name: String, schema: serde_json::Value, strict: bool },
}

/// Sampling and length controls, already range-checked by whoever built them.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct GenerationParams {
    pub max_tokens: Option<u32>,
    pub temperature: f32,
    pub top_p: f32,
    pub seed: Option<u64>,
    pub stop: Vec<String>,
    pub presence_penalty: f32,
    pub frequency_penalty: f32,
    /// Number of choices.
    pub n: u32,
    pub logprobs: bool,
    pub top_logprobs: u32,
}

impl Default for GenerationParams {
    fn default() -> Self {
        GenerationParams {
            max_tokens: None,
            temperature: 1.0,
            top_p: 1.0,
            seed: None,
            stop: Vec::new(),
            presence_penalty: 0.0,
            frequency_penalty: 0.0,
            n: 1,
            logprobs: false,
            top_logprobs: 0,
        }
    }
}

/// A chat completion request after validation.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ChatRequest {
    /// The model name the client asked for (`hearth/auto`, `local/x`, `cloud/y`, ...).
    pub model: String,
    pub messages: Vec<Message>,
    pub params: GenerationParams,
    pub tools: Vec<Tool>,
    pub tool_choice: ToolChoice,
    pub response_format: ResponseFormat,
    pub stream: bool,
    pub include_usage: bool,
}

impl ChatRequest {
    pub fn new(model: impl Into<String>, messages: Vec<Message>) -> ChatRequest {
        ChatRequest {
            model: model.into(),
            messages,
            params: GenerationParams::default(),
            tools: Vec::new(),
            tool_choice: ToolChoice::Auto,
            response_format: ResponseFormat::Text,
            stream: false,
            include_usage: false,
        }
    }

    /// The last user message's text (what routers score).
    pub fn last_user_text(&self) -> &str {
        self.messages.iter().rev().find(|m| m.role == Role::User).map(|m| m.content.as_str()).unwrap_or("")
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum FinishReason {
    Stop,
    Length,
    ToolCalls,
    ContentFilter,
}

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Usage {
    pub prompt_tokens: u32,
    pub completion_tokens: u32,
}

impl Usage {
    pub fn total(&self) -> u32 {
        self.prompt_tokens + self.completion_tokens
    }
}

/// Where a request was answered.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, Hash)]
#[serde(rename_all = "lowercase")]
pub enum Route {
    Local,
    Cloud,
}

impl Route {
    pub fn as_str(self) -> &'static str {
        match self {
            Route::Local => "local",
            Route::Cloud => "cloud",
        }
    }
}

/// One event of a streamed answer, local or cloud.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub enum ChatEvent {
    /// New text for choice `index`.
    Delta { index: u32, text: String },
    /// A complete tool call for choice `index`.
    ToolCall { index: u32, call: ToolCall },
    /// Choice `index` finished.
    Finish { index: u32, reason: FinishReason },
    /// Token counts, once at the end.
    Usage(Usage),
    /// The stream failed after it started; the client must see this, never a
    /// silent retry.
    Error { message: String },
}
