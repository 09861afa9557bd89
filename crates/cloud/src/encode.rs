//! Internal `ChatRequest` → OpenAI chat-completions request JSON.
//!
//! Field shapes follow the OpenAI API reference for `POST /chat/completions`
//! (messages, tools, tool_choice, response_format, stream_options).
//! Deliberately not sent: `logprobs`/`top_logprobs` (no `ChatEvent` carries
//! them, so asking would spend the user's money on data that is dropped),
//! `user`, `metadata`, `store` and any provider-specific extension.

use hearth_api::{ChatRequest, Message, ResponseFormat, Role, ToolChoice};
use serde_json::{json, Map, Value};

pub(crate) struct EncodeOptions<'a> {
    pub model: &'a str,
    pub send_stream_options: bool,
}

pub(crate) fn encode_request(req: &ChatRequest, opts: &EncodeOptions<'_>) -> Value {
    let mut o = Map::new();
    o.insert("model".into(), json!(opts.model));
    o.insert("messages".into(), Value::Array(req.messages.iter().map(encode_message).collect()));
    o.insert("stream".into(), json!(true));
    if opts.send_stream_options {
        o.insert("stream_options".into(), json!({ "include_usage": true }));
    }

    let p = &req.params;
    if let Some(m) = p.max_tokens {
        // `max_tokens` rather than `max_completion_tokens`: every
        // OpenAI-compatible server (vLLM, TGI, llama-server) accepts it.
        o.insert("max_tokens".into(), json!(m));
    }
    o.insert("temperature".into(), num(p.temperature));
    o.insert("top_p".into(), num(p.top_p));
    if let Some(s) = p.seed {
        o.insert("seed".into(), json!(s));
    }
    if !p.stop.is_empty() {
        o.insert("stop".into(), json!(p.stop));
    }
    if p.presence_penalty != 0.0 {
        o.insert("presence_penalty".into(), num(p.presence_penalty));
    }
    if p.frequency_penalty != 0.0 {
        o.insert("frequency_penalty".into(), num(p.frequency_penalty));
    }
    if p.n != 1 {
        o.insert("n".into(), json!(p.n));
    }

    if !req.tools.is_empty() {
        let tools: Vec<Value> = req
            .tools
            .iter()
            .map(|t| {
                let mut f = Map::new();
                f.insert("name".into(), json!(t.name));
                if let Some(d) = &t.description {
                    f.insert("description".into(), json!(d));
                }
                let params = if t.parameters.is_null() { json!({"type": "object", "properties": {}}) } else { t.parameters.clone() };
                f.insert("parameters".into(), params);
                json!({ "type": "function", "function": Value::Object(f) })
            })
            .collect();
        o.insert("tools".into(), Value::Array(tools));
        // OpenAI rejects `tool_choice` without `tools`, so it is only sent
        // alongside them.
        let choice = match &req.tool_choice {
            ToolChoice::Auto => json!("auto"),
            ToolChoice::None => json!("none"),
            ToolChoice::Required => json!("required"),
            ToolChoice::Function(name) => json!({ "type": "function", "function": { "name": name } }),
        };
        o.insert("tool_choice".into(), choice);
    }

    match &req.response_format {
        ResponseFormat::Text => {}
        ResponseFormat::JsonObject => {
            o.insert("response_format".into(), json!({ "type": "json_object" }));
        }
        ResponseFormat::JsonSchema { name, schema, strict } => {
            o.insert(
                "response_format".into(),
                json!({ "type": "json_schema", "json_schema": { "name": name, "schema": schema, "strict": strict } }),
            );
        }
    }
    Value::Object(o)
}

/// An `f32` as the shortest decimal that reads back to it, so 0.7 is sent as
/// `0.7` and not as the f64 widening `0.699999988079071`.
fn num(x: f32) -> Value {
    format!("{x}").parse::<f64>().ok().and_then(serde_json::Number::from_f64).map_or(Value::Null, Value::Number)
}

fn encode_message(m: &Message) -> Value {
    let mut o = Map::new();
    o.insert("role".into(), json!(m.role.as_str()));
    // An assistant turn that only calls tools has `content: null`.
    if m.role == Role::Assistant && m.content.is_empty() && !m.tool_calls.is_empty() {
        o.insert("content".into(), Value::Null);
    } else {
        o.insert("content".into(), json!(m.content));
    }
    if let Some(n) = &m.name {
        o.insert("name".into(), json!(n));
    }
    if !m.tool_calls.is_empty() {
        let calls: Vec<Value> = m
            .tool_calls
            .iter()
            .map(|c| json!({ "id": c.id, "type": "function", "function": { "name": c.name, "arguments": c.arguments } }))
            .collect();
        o.insert("tool_calls".into(), Value::Array(calls));
    }
    if let Some(id) = &m.tool_call_id {
        o.insert("tool_call_id".into(), json!(id));
    }
    Value::Object(o)
}

#[cfg(test)]
mod tests {
    use super::*;
    use hearth_api::{Tool, ToolCall};

    fn opts() -> EncodeOptions<'static> {
        EncodeOptions { model: "gpt-up", send_stream_options: true }
    }

    #[test]
    fn minimal_request() {
        let req = ChatRequest::new("hearth/auto", vec![Message::new(Role::User, "hi")]);
        let v = encode_request(&req, &opts());
        assert_eq!(
            v,
            json!({
                "model": "gpt-up",
                "messages": [{"role": "user", "content": "hi"}],
                "stream": true,
                "stream_options": {"include_usage": true},
                "temperature": 1.0,
                "top_p": 1.0,
            })
        );
        let v = encode_request(&req, &EncodeOptions { model: "m", send_stream_options: false });
        assert!(v.get("stream_options").is_none());
    }

    #[test]
    fn full_request() {
        let mut req = ChatRequest::new(
            "cloud/x",
            vec![
                Message::new(Role::Developer, "be brief"),
                Message::new(Role::User, "weather?"),
                Message {
                    role: Role::Assistant,
                    content: String::new(),
                    name: None,
                    tool_calls: vec![ToolCall { id: "c1".into(), name: "wx".into(), arguments: "{\"q\":1}".into() }],
                    tool_call_id: None,
                },
                Message { tool_call_id: Some("c1".into()), ..Message::new(Role::Tool, "sunny") },
            ],
        );
        req.params.max_tokens = Some(64);
        req.params.temperature = 0.25;
        req.params.seed = Some(9);
        req.params.stop = vec!["END".into()];
        req.params.presence_penalty = 0.5;
        req.params.n = 2;
        req.params.logprobs = true;
        req.tools = vec![Tool { name: "wx".into(), description: Some("weather".into()), parameters: json!({"type": "object"}) }];
        req.tool_choice = ToolChoice::Function("wx".into());
        req.response_format = ResponseFormat::JsonSchema { name: "s".into(), schema: json!({"type": "object"}), strict: true };
        let v = encode_request(&req, &opts());
        assert_eq!(v["model"], "gpt-up");
        assert_eq!(v["messages"][0], json!({"role": "developer", "content": "be brief"}));
        assert_eq!(
            v["messages"][2],
            json!({"role": "assistant", "content": null,
                   "tool_calls": [{"id": "c1", "type": "function", "function": {"name": "wx", "arguments": "{\"q\":1}"}}]})
        );
        assert_eq!(v["messages"][3], json!({"role": "tool", "content": "sunny", "tool_call_id": "c1"}));
        assert_eq!(v["max_tokens"], 64);
        assert_eq!(v["temperature"], 0.25);
        assert_eq!(v["seed"], 9);
        assert_eq!(v["stop"], json!(["END"]));
        assert_eq!(v["presence_penalty"], 0.5);
        assert!(v.get("frequency_penalty").is_none());
        assert_eq!(v["n"], 2);
        assert!(v.get("logprobs").is_none());
        assert_eq!(
            v["tools"],
            json!([{"type": "function", "function": {"name": "wx", "description": "weather", "parameters": {"type": "object"}}}])
        );
        assert_eq!(v["tool_choice"], json!({"type": "function", "function": {"name": "wx"}}));
        assert_eq!(
            v["response_format"],
            json!({"type": "json_schema", "json_schema": {"name": "s", "schema": {"type": "object"}, "strict": true}})
        );
    }

    #[test]
    fn tool_choice_needs_tools() {
        let mut req = ChatRequest::new("m", vec![Message::new(Role::User, "x")]);
        req.tool_choice = ToolChoice::Required;
        let v = encode_request(&req, &opts());
        assert!(v.get("tool_choice").is_none());
        req.params.temperature = 0.7;
        assert_eq!(encode_request(&req, &opts())["temperature"].to_string(), "0.7");
        req.tools = vec![Tool { name: "f".into(), description: None, parameters: Value::Null }];
        let v = encode_request(&req, &opts());
        assert_eq!(v["tool_choice"], "required");
        assert_eq!(v["tools"][0]["function"]["parameters"], json!({"type": "object", "properties": {}}));
        req.response_format = ResponseFormat::JsonObject;
        assert_eq!(encode_request(&req, &opts())["response_format"], json!({"type": "json_object"}));
    }
}
