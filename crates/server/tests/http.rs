//! The HTTP server end to end, in process, on an ephemeral port, with the
//! random-weight test model.

mod common;

use common::{chat, metric, request, wait_metric, Stream, TestServer};
use hearth_engine::scheduler::SchedulerConfig;
use hearth_server::{Embedder, ModelSource, Secret, Server, ServerConfig, ServerError};
use serde_json::{json, Value};
use std::io::{Read, Write};
use std::net::TcpStream;
use std::sync::Arc;
use std::time::Duration;

fn cfg(parallel: usize, queue: usize) -> ServerConfig {
    ServerConfig {
        scheduler: SchedulerConfig {
            n_slots: parallel,
            n_ctx: 4096,
            queue_capacity: queue,
            ..SchedulerConfig::default()
        },
        ..ServerConfig::default()
    }
}

fn greedy(max: u32) -> Value {
    json!({"temperature": 0, "max_tokens": max, "ignore_eos": true})
}

fn assert_error(r: &common::Resp, status: u16, param: Option<&str>) -> Value {
    assert_eq!(r.status, status, "{}", r.text());
    assert_eq!(r.header("content-type"), Some("application/json"));
    let v = r.json();
    let e = &v["error"];
    assert!(e["message"].as_str().is_some_and(|m| !m.is_empty()), "{v}");
    assert!(e["type"].is_string(), "{v}");
    assert!(e.get("code").is_some() && e.get("param").is_some(), "{v}");
    assert_eq!(e["param"].as_str(), param, "{v}");
    v
}

#[test]
fn routes_with_and_without_v1() {
    let srv = TestServer::default();
    let h = srv.get("/health");
    assert_eq!((h.status, h.json()), (200, json!({"status": "ok"})));
    for path in ["/v1/models", "/models"] {
        let m = srv.get(path).json();
        assert_eq!(m["object"], "list");
        assert_eq!(m["data"][0]["id"], "hearth-tiny-qwen2");
        assert_eq!(m["data"][0]["object"], "model");
    }
    assert_eq!(
        srv.get("/v1/models/hearth-tiny-qwen2").json()["id"],
        "hearth-tiny-qwen2"
    );
    let r = srv.get("/v1/models/gpt-9");
    assert_eq!(
        assert_error(&r, 404, Some("model"))["error"]["code"],
        "model_not_found"
    );
    for path in ["/v1/chat/completions", "/chat/completions"] {
        let r = srv.post(path, &chat("hi", greedy(2)));
        assert_eq!(r.status, 200, "{path}");
        assert_eq!(r.json()["object"], "chat.completion");
    }
    let r = srv.post("/completions", &json!({"prompt": "hi", "max_tokens": 2}));
    assert_eq!(r.json()["object"], "text_completion");
    assert_eq!(
        assert_error(&srv.get("/v1/nothing"), 404, None)["error"]["code"],
        "unknown_url"
    );
    let r = srv.get("/v1/chat/completions");
    assert_error(&r, 405, None);
    assert_eq!(r.header("allow"), Some("POST"));
    let r = srv.post("/metrics", &json!({}));
    assert_eq!((r.status, r.header("allow")), (405, Some("GET")));
}

#[test]
fn health_is_503_until_the_model_is_loaded() {
    let (go_tx, go_rx) = std::sync::mpsc::channel::<()>();
    let loader = ModelSource::Loader(Box::new(move || {
        let _ = go_rx.recv();
        Ok(common::engine())
    }));
    let srv = TestServer::start_with(ServerConfig::default(), loader);
    let r = srv.get("/health");
    assert_eq!(
        assert_error(&r, 503, None)["error"]["code"],
        "model_loading"
    );
    assert_eq!(r.header("retry-after"), Some("1"));
    assert_eq!(
        srv.post("/v1/chat/completions", &chat("hi", greedy(2)))
            .status,
        503
    );
    assert_eq!(
        metric(&srv.get("/metrics").text(), "hearth_model_loaded"),
        0.0
    );
    go_tx.send(()).unwrap();
    wait_metric(&srv, "hearth_model_loaded", |v| v == 1.0);
    assert_eq!(srv.get("/health").status, 200);
}

#[test]
fn chat_response_shape_and_usage() {
    let srv = TestServer::default();
    let v = srv
        .post("/v1/chat/completions", &chat("Tell me a story", greedy(7)))
        .json();
    assert!(v["id"].as_str().unwrap().starts_with("chatcmpl-"));
    assert_eq!(v["object"], "chat.completion");
    assert_eq!(v["model"], "hearth-tiny-qwen2");
    assert!(v["created"].as_u64().unwrap() > 1_600_000_000);
    assert!(v["system_fingerprint"]
        .as_str()
        .unwrap()
        .starts_with("hearth-"));
    let c = &v["choices"][0];
    assert_eq!(c["index"], 0);
    assert_eq!(c["message"]["role"], "assistant");
    assert!(c["message"]["content"].is_string());
    assert_eq!(c["logprobs"], Value::Null);
    assert_eq!(c["finish_reason"], "length");
    let u = &v["usage"];
    assert_eq!(u["completion_tokens"], 7);
    // The ChatML template around "Tell me a story".
    let p = u["prompt_tokens"].as_u64().unwrap();
    assert!(p > 10, "{p}");
    assert_eq!(u["total_tokens"].as_u64().unwrap(), p + 7);
}

#[test]
fn streaming_matches_the_openai_chunk_format() {
    let srv = TestServer::default();
    let whole = srv
        .post("/v1/chat/completions", &chat("Stream this", greedy(6)))
        .json();
    let mut body = chat("Stream this", greedy(6));
    body["stream"] = json!(true);
    body["stream_options"] = json!({"include_usage": true});
    let r = srv.post("/v1/chat/completions", &body);
    assert_eq!(r.status, 200);
    assert_eq!(r.header("content-type"), Some("text/event-stream"));
    let events = r.events();
    assert_eq!(events.last().map(String::as_str), Some("[DONE]"));
    let chunks: Vec<Value> = events[..events.len() - 1]
        .iter()
        .map(|e| serde_json::from_str(e).unwrap())
        .collect();
    let id = chunks[0]["id"].clone();
    for c in &chunks {
        assert_eq!(c["object"], "chat.completion.chunk");
        assert_eq!(c["id"], id, "one id for the whole stream");
        assert!(c.as_object().unwrap().contains_key("usage"));
    }
    assert_eq!(chunks[0]["choices"][0]["delta"]["role"], "assistant");
    let usage_chunk = chunks.last().unwrap();
    assert_eq!(usage_chunk["choices"], json!([]));
    assert_eq!(usage_chunk["usage"]["completion_tokens"], 6);
    let finish = &chunks[chunks.len() - 2]["choices"][0];
    assert_eq!(finish["finish_reason"], "length");
    assert_eq!(finish["delta"], json!({}));
    let text: String = chunks
        .iter()
        .filter_map(|c| c["choices"][0]["delta"]["content"].as_str())
        .collect();
    assert_eq!(
        text,
        whole["choices"][0]["message"]["content"].as_str().unwrap()
    );
    for c in &chunks[1..chunks.len() - 2] {
        assert_eq!(c["choices"][0]["finish_reason"], Value::Null);
        assert_eq!(c["usage"], Value::Null);
    }
    // Without include_usage: no usage key at all.
    body.as_object_mut().unwrap().remove("stream_options");
    let events = srv.post("/v1/chat/completions", &body).events();
    let first: Value = serde_json::from_str(&events[0]).unwrap();
    assert!(!first.as_object().unwrap().contains_key("usage"));
}

#[test]
fn same_seed_same_output() {
    let srv = TestServer::default();
    let req = |seed: u64| {
        let b = chat(
            "Random please",
            json!({"temperature": 1.0, "seed": seed, "max_tokens": 12, "ignore_eos": true, "top_k": 0}),
        );
        srv.post("/v1/chat/completions", &b).json()["choices"][0]["message"]["content"]
            .as_str()
            .unwrap()
            .to_string()
    };
    let a = req(1234);
    assert_eq!(a, req(1234));
    assert_ne!(a, req(1235));
}

#[test]
fn stop_sequences_never_appear() {
    let srv = TestServer::default();
    let full = srv
        .post("/v1/chat/completions", &chat("Say things", greedy(16)))
        .json();
    let text = full["choices"][0]["message"]["content"]
        .as_str()
        .unwrap()
        .to_string();
    let chars: Vec<char> = text.chars().collect();
    let stop: String = chars[chars.len() / 2..chars.len() / 2 + 2].iter().collect();
    let cut = text.find(&stop).unwrap();
    for stream in [false, true] {
        let mut b = chat("Say things", greedy(16));
        b["stop"] = json!([stop]);
        b["stream"] = json!(stream);
        let r = srv.post("/v1/chat/completions", &b);
        let (got, finish) = if stream {
            let chunks: Vec<Value> = r
                .events()
                .iter()
                .filter(|e| *e != "[DONE]")
                .map(|e| serde_json::from_str(e).unwrap())
                .collect();
            let t: String = chunks
                .iter()
                .filter_map(|c| c["choices"][0]["delta"]["content"].as_str())
                .collect();
            (
                t,
                chunks.last().unwrap()["choices"][0]["finish_reason"].clone(),
            )
        } else {
            let v = r.json();
            (
                v["choices"][0]["message"]["content"]
                    .as_str()
                    .unwrap()
                    .to_string(),
                v["choices"][0]["finish_reason"].clone(),
            )
        };
        assert_eq!(got, text[..cut], "stream={stream}");
        assert!(!got.contains(&stop));
        assert_eq!(finish, "stop");
    }
}

#[test]
fn n_choices_and_logprobs() {
    let srv = TestServer::start(cfg(3, 8));
    let mut b = chat(
        "Choose",
        json!({"n": 3, "max_tokens": 5, "seed": 7, "logprobs": true, "top_logprobs": 2, "ignore_eos": true}),
    );
    let v = srv.post("/v1/chat/completions", &b).json();
    let choices = v["choices"].as_array().unwrap();
    assert_eq!(choices.len(), 3);
    for (i, c) in choices.iter().enumerate() {
        assert_eq!(c["index"], i);
        let content = c["logprobs"]["content"].as_array().unwrap();
        assert_eq!(content.len(), 5);
        for t in content {
            assert!(t["logprob"].as_f64().unwrap() <= 0.0);
            assert_eq!(t["top_logprobs"].as_array().unwrap().len(), 2);
            let bytes: Vec<u8> = t["bytes"]
                .as_array()
                .unwrap()
                .iter()
                .map(|b| b.as_u64().unwrap() as u8)
                .collect();
            assert_eq!(
                String::from_utf8_lossy(&bytes),
                t["token"].as_str().unwrap()
            );
        }
    }
    assert_eq!(v["usage"]["completion_tokens"], 15);
    // The prompt is counted once.
    let single = srv
        .post("/v1/chat/completions", &chat("Choose", greedy(1)))
        .json();
    assert_eq!(
        v["usage"]["prompt_tokens"],
        single["usage"]["prompt_tokens"]
    );
    // n beyond the slots is a 400 naming n.
    b["n"] = json!(4);
    assert_error(&srv.post("/v1/chat/completions", &b), 400, Some("n"));
    // Streaming with n: every choice opens with the role and ends with a finish.
    let mut s = chat("Choose", json!({"n": 2, "max_tokens": 3, "stream": true}));
    s["temperature"] = json!(0);
    let events = srv.post("/v1/chat/completions", &s).events();
    let chunks: Vec<Value> = events
        .iter()
        .filter(|e| *e != "[DONE]")
        .map(|e| serde_json::from_str(e).unwrap())
        .collect();
    for i in 0..2 {
        let mine: Vec<&Value> = chunks
            .iter()
            .map(|c| &c["choices"][0])
            .filter(|c| c["index"] == i)
            .collect();
        assert_eq!(mine[0]["delta"]["role"], "assistant");
        assert!(mine.last().unwrap()["finish_reason"].is_string());
    }
}

#[test]
fn invalid_requests_are_400_naming_the_parameter() {
    let srv = TestServer::default();
    let cases: Vec<(Value, Option<&str>)> = vec![
        (chat("x", json!({"temperature": 5})), Some("temperature")),
        (chat("x", json!({"top_p": "high"})), Some("top_p")),
        (chat("x", json!({"max_tokens": 0})), Some("max_tokens")),
        (chat("x", json!({"n": 0})), Some("n")),
        (
            chat("x", json!({"top_logprobs": 25, "logprobs": true})),
            Some("top_logprobs"),
        ),
        (
            chat("x", json!({"presence_penalty": 9})),
            Some("presence_penalty"),
        ),
        (chat("x", json!({"stop": [1]})), Some("stop[0]")),
        (
            chat("x", json!({"logit_bias": {"999999999": 1}})),
            Some("logit_bias"),
        ),
        (
            json!({"messages": [{"role": "user", "content": [{"type": "image_url", "image_url": {"url": "http://169.254.169.254/"}}]}]}),
            Some("messages[0].content[0].type"),
        ),
        (json!({"messages": "hello"}), Some("messages")),
        (json!({"model": "x"}), Some("messages")),
        (
            chat(
                "x",
                json!({"response_format": {"type": "json_schema", "json_schema": {"name": "bad name!"}}}),
            ),
            Some("response_format.json_schema.name"),
        ),
        (
            chat(
                "x",
                json!({"tools": [{"type": "function", "function": {}}]}),
            ),
            Some("tools[0].function.name"),
        ),
    ];
    for (body, param) in cases {
        let r = srv.post("/v1/chat/completions", &body);
        assert_error(&r, 400, param);
    }
    let r = request(
        srv.addr,
        "POST",
        "/v1/chat/completions",
        &[],
        Some(b"{not json"),
    );
    assert_eq!(assert_error(&r, 400, None)["error"]["code"], "invalid_json");
    let r = request(
        srv.addr,
        "POST",
        "/v1/chat/completions",
        &[],
        Some(b"[1,2]"),
    );
    assert_error(&r, 400, None);
    let r = srv.post("/v1/completions", &json!({"prompt": "x", "suffix": "y"}));
    assert_error(&r, 400, Some("suffix"));
}

fn weather_tool() -> Value {
    json!({"type": "function", "function": {
        "name": "get_weather",
        "description": "Current weather in a city",
        "parameters": {"type": "object", "properties": {"city": {"type": "string", "maxLength": 10}, "celsius": {"type": "boolean"}}, "required": ["city", "celsius"]}
    }})
}

fn time_tool() -> Value {
    json!({"type": "function", "function": {"name": "get_time", "parameters": {"type": "object", "properties": {"zone": {"type": "string", "enum": ["UTC", "CET"]}}, "required": ["zone"]}}})
}

#[test]
fn json_object_output_parses() {
    let srv = TestServer::default();
    for seed in 1..=3 {
        let b = chat(
            "Give me JSON",
            json!({"seed": seed, "max_tokens": 400, "response_format": {"type": "json_object"}}),
        );
        let v = srv.post("/v1/chat/completions", &b).json();
        let c = &v["choices"][0];
        assert_eq!(c["finish_reason"], "stop", "{v}");
        let text = c["message"]["content"].as_str().unwrap();
        let parsed: Value = serde_json::from_str(text).unwrap_or_else(|e| panic!("{e}: {text:?}"));
        assert!(parsed.is_object(), "{text}");
    }
}

#[test]
fn json_schema_output_validates() {
    let srv = TestServer::start(cfg(2, 8));
    let schema = json!({"type": "object", "properties": {
        "ok": {"type": "boolean"},
        "n": {"type": "integer", "minimum": 0, "maximum": 100},
        "tag": {"type": "string", "enum": ["red", "green", "blue"]},
        "note": {"type": "string", "maxLength": 12}
    }, "required": ["ok", "n", "tag", "note"]});
    let rf = json!({"type": "json_schema", "json_schema": {"name": "answer", "schema": schema, "strict": true}});
    let mut b = chat(
        "Fill the form",
        json!({"seed": 5, "n": 2, "max_tokens": 500, "response_format": rf}),
    );
    let v = srv.post("/v1/chat/completions", &b).json();
    for c in v["choices"].as_array().unwrap() {
        assert_eq!(c["finish_reason"], "stop", "{v}");
        let x: Value = serde_json::from_str(c["message"]["content"].as_str().unwrap()).unwrap();
        assert!(x["ok"].is_boolean(), "{x}");
        assert!((0..=100).contains(&x["n"].as_i64().unwrap()), "{x}");
        assert!(
            ["red", "green", "blue"].contains(&x["tag"].as_str().unwrap()),
            "{x}"
        );
        assert!(x["note"].as_str().unwrap().chars().count() <= 12, "{x}");
        assert_eq!(x.as_object().unwrap().len(), 4, "{x}");
    }
    // Streamed, the concatenated deltas are the same document.
    b["n"] = json!(1);
    let whole = srv.post("/v1/chat/completions", &b).json()["choices"][0]["message"]["content"]
        .as_str()
        .unwrap()
        .to_string();
    b["stream"] = json!(true);
    let streamed: String = srv
        .post("/v1/chat/completions", &b)
        .events()
        .iter()
        .filter(|e| *e != "[DONE]")
        .filter_map(|e| {
            serde_json::from_str::<Value>(e).ok()?["choices"][0]["delta"]["content"]
                .as_str()
                .map(str::to_string)
        })
        .collect();
    assert_eq!(streamed, whole);
}

#[test]
fn unenforceable_schemas_are_400() {
    let srv = TestServer::default();
    let rf = json!({"type": "json_schema", "json_schema": {"name": "x", "schema": {"type": "object", "not": {"required": ["a"]}}}});
    let r = srv.post(
        "/v1/chat/completions",
        &chat("x", json!({"response_format": rf})),
    );
    assert!(
        assert_error(&r, 400, Some("response_format.json_schema.schema"))["error"]["message"]
            .as_str()
            .unwrap()
            .contains("not")
    );
    let bad_tool = json!({"type": "function", "function": {"name": "f", "parameters": {"type": "object", "properties": {"a": {"type": "integer", "multipleOf": 3}}}}});
    let r = srv.post(
        "/v1/chat/completions",
        &chat(
            "x",
            json!({"tools": [weather_tool(), bad_tool], "tool_choice": "required"}),
        ),
    );
    assert_error(&r, 400, Some("tools[1].function.parameters"));
}

#[test]
fn forced_tool_calls() {
    let srv = TestServer::default();
    let named = json!({"type": "function", "function": {"name": "get_weather"}});
    let b = chat(
        "Weather in Oslo?",
        json!({"seed": 3, "max_tokens": 400, "tools": [weather_tool(), time_tool()], "tool_choice": named}),
    );
    let v = srv.post("/v1/chat/completions", &b).json();
    let c = &v["choices"][0];
    assert_eq!(c["finish_reason"], "tool_calls", "{v}");
    let calls = c["message"]["tool_calls"].as_array().unwrap();
    assert_eq!(calls.len(), 1, "{v}");
    let call = &calls[0];
    assert!(call["id"].as_str().unwrap().starts_with("call_"));
    assert_eq!(call["type"], "function");
    assert_eq!(call["function"]["name"], "get_weather");
    let args: Value =
        serde_json::from_str(call["function"]["arguments"].as_str().unwrap()).unwrap();
    assert!(
        args["city"].as_str().unwrap().chars().count() <= 10,
        "{args}"
    );
    assert!(args["celsius"].is_boolean(), "{args}");
    // `required` with parallel calls off: one call of either tool.
    let b = chat(
        "Anything",
        json!({"seed": 4, "max_tokens": 400, "tools": [weather_tool(), time_tool()], "tool_choice": "required", "parallel_tool_calls": false}),
    );
    let v = srv.post("/v1/chat/completions", &b).json();
    let calls = v["choices"][0]["message"]["tool_calls"]
        .as_array()
        .unwrap_or_else(|| panic!("{v}"));
    assert_eq!(calls.len(), 1);
    assert!(["get_weather", "get_time"].contains(&calls[0]["function"]["name"].as_str().unwrap()));
    // The same request with the same seed gives the same call id and arguments.
    let again = srv.post("/v1/chat/completions", &b).json();
    assert_eq!(
        again["choices"][0]["message"]["tool_calls"],
        v["choices"][0]["message"]["tool_calls"]
    );
}

#[test]
fn streamed_tool_calls_arrive_whole_with_an_index() {
    let srv = TestServer::default();
    let named = json!({"type": "function", "function": {"name": "get_time"}});
    let b = chat(
        "What time is it?",
        json!({"seed": 2, "max_tokens": 400, "stream": true, "tools": [time_tool()], "tool_choice": named}),
    );
    let chunks: Vec<Value> = srv
        .post("/v1/chat/completions", &b)
        .events()
        .iter()
        .filter(|e| *e != "[DONE]")
        .map(|e| serde_json::from_str(e).unwrap())
        .collect();
    let calls: Vec<&Value> = chunks
        .iter()
        .filter_map(|c| c["choices"][0]["delta"]["tool_calls"].as_array())
        .flatten()
        .collect();
    assert_eq!(calls.len(), 1, "{chunks:?}");
    assert_eq!(calls[0]["index"], 0);
    assert_eq!(calls[0]["function"]["name"], "get_time");
    let args: Value =
        serde_json::from_str(calls[0]["function"]["arguments"].as_str().unwrap()).unwrap();
    assert!(["UTC", "CET"].contains(&args["zone"].as_str().unwrap()));
    assert_eq!(
        chunks.last().unwrap()["choices"][0]["finish_reason"],
        "tool_calls"
    );
    // No tool-call markup leaks into content.
    let content: String = chunks
        .iter()
        .filter_map(|c| c["choices"][0]["delta"]["content"].as_str())
        .collect();
    assert!(!content.contains("<tool_call>"), "{content:?}");
}

#[test]
fn tool_choice_auto_and_none_generate_freely() {
    let srv = TestServer::default();
    for choice in ["auto", "none"] {
        let b = chat(
            "Hello",
            json!({"temperature": 0, "max_tokens": 8, "ignore_eos": true, "tools": [weather_tool()], "tool_choice": choice}),
        );
        let v = srv.post("/v1/chat/completions", &b).json();
        let c = &v["choices"][0];
        // The random model writes no call: plain content.
        assert_eq!(c["finish_reason"], "length", "{choice}: {v}");
        assert!(c["message"]["content"].is_string());
        assert!(c["message"].get("tool_calls").is_none());
    }
    // `auto` describes the tools to the model (this template renders none
    // itself), `none` does not.
    let auto = srv
        .post(
            "/v1/chat/completions",
            &chat("Hello", json!({"max_tokens": 1, "tools": [weather_tool()]})),
        )
        .json();
    let none = srv
        .post(
            "/v1/chat/completions",
            &chat(
                "Hello",
                json!({"max_tokens": 1, "tools": [weather_tool()], "tool_choice": "none"}),
            ),
        )
        .json();
    let plain = srv
        .post(
            "/v1/chat/completions",
            &chat("Hello", json!({"max_tokens": 1})),
        )
        .json();
    assert!(auto["usage"]["prompt_tokens"].as_u64() > plain["usage"]["prompt_tokens"].as_u64());
    assert_eq!(
        none["usage"]["prompt_tokens"],
        plain["usage"]["prompt_tokens"]
    );
}

#[test]
fn tool_history_renders() {
    let srv = TestServer::default();
    let r = srv.post(
        "/v1/chat/completions",
        &chat(
            "x",
            json!({"response_format": {"type": "text"}, "max_tokens": 1}),
        ),
    );
    assert_eq!(r.status, 200);
    let history = json!({"max_tokens": 2, "messages": [
        {"role": "user", "content": "weather?"},
        {"role": "assistant", "content": null, "tool_calls": [{"id": "c1", "type": "function", "function": {"name": "w", "arguments": "{\"city\":\"Oslo\"}"}}]},
        {"role": "tool", "tool_call_id": "c1", "content": "sunny"}
    ]});
    assert_eq!(srv.post("/v1/chat/completions", &history).status, 200);
}

#[test]
fn context_overflow_is_an_explicit_400() {
    let srv = TestServer::start(ServerConfig {
        scheduler: SchedulerConfig {
            n_ctx: 64,
            ..SchedulerConfig::default()
        },
        ..ServerConfig::default()
    });
    let r = srv.post(
        "/v1/chat/completions",
        &chat("short", json!({"max_tokens": 60})),
    );
    assert_eq!(
        assert_error(&r, 400, Some("max_tokens"))["error"]["code"],
        "context_length_exceeded"
    );
    let r = srv.post(
        "/v1/chat/completions",
        &chat("short", json!({"max_completion_tokens": 60})),
    );
    assert_error(&r, 400, Some("max_completion_tokens"));
    let long = "many words ".repeat(80);
    let r = srv.post("/v1/chat/completions", &chat(&long, json!({})));
    assert_eq!(
        assert_error(&r, 400, Some("messages"))["error"]["code"],
        "context_length_exceeded"
    );
    let r = srv.post("/v1/completions", &json!({"prompt": long}));
    assert_error(&r, 400, Some("max_tokens"));
    // Without max_tokens the answer may use the rest of the context.
    let v = srv
        .post(
            "/v1/chat/completions",
            &chat("short", json!({"temperature": 0, "ignore_eos": true})),
        )
        .json();
    let u = &v["usage"];
    assert_eq!(u["total_tokens"], 64, "{v}");
    assert_eq!(v["choices"][0]["finish_reason"], "length");
}

#[test]
fn api_key_is_required_everywhere_but_health() {
    let srv = TestServer::start(ServerConfig {
        api_key: Some(Secret::new("sk-test-123")),
        ..ServerConfig::default()
    });
    assert_eq!(srv.get("/health").status, 200);
    for path in ["/v1/models", "/metrics"] {
        let r = srv.get(path);
        assert_eq!(
            assert_error(&r, 401, None)["error"]["code"],
            "invalid_api_key"
        );
        assert_eq!(r.header("www-authenticate"), Some("Bearer"));
    }
    let r = srv.post("/v1/chat/completions", &chat("x", greedy(1)));
    assert_error(&r, 401, None);
    let with =
        |v: &str| request(srv.addr, "GET", "/v1/models", &[("Authorization", v)], None).status;
    assert_eq!(with("Bearer sk-test-123"), 200);
    assert_eq!(with("bearer sk-test-123"), 200);
    assert_eq!(with("Bearer sk-test-12"), 401);
    assert_eq!(with("Bearer sk-test-1234"), 401);
    assert_eq!(with("sk-test-123"), 401);
    assert_eq!(with("Basic c2stdGVzdC0xMjM="), 401);
    let body = chat("x", greedy(1)).to_string();
    let r = request(
        srv.addr,
        "POST",
        "/v1/chat/completions",
        &[("Authorization", "Bearer sk-test-123")],
        Some(body.as_bytes()),
    );
    assert_eq!(r.status, 200);
}

#[test]
fn host_header_allow_list() {
    let srv = TestServer::start(ServerConfig {
        allow_hosts: vec!["hearth.lan".into()],
        ..ServerConfig::default()
    });
    let host = |h: &str| request(srv.addr, "GET", "/health", &[("Host", h)], None);
    for ok in [
        "localhost",
        "localhost:8080",
        "LOCALHOST",
        "127.0.0.1:9",
        "[::1]:80",
        "hearth.lan",
        "hearth.lan:8080",
        "192.168.1.20",
        "app.localhost",
    ] {
        assert_eq!(host(ok).status, 200, "{ok}");
    }
    for bad in [
        "evil.example",
        "evil.example:8080",
        "127.0.0.1.nip.io",
        "hearth.lan.evil.example",
    ] {
        let r = host(bad);
        assert_eq!(
            assert_error(&r, 403, None)["error"]["code"],
            "host_not_allowed",
            "{bad}"
        );
    }
    // The check runs before authentication and routing.
    let r = request(
        srv.addr,
        "GET",
        "/v1/nothing",
        &[("Host", "evil.example")],
        None,
    );
    assert_eq!(r.status, 403);
    let any = TestServer::start(ServerConfig {
        allow_hosts: vec!["*".into()],
        ..ServerConfig::default()
    });
    assert_eq!(
        request(
            any.addr,
            "GET",
            "/health",
            &[("Host", "evil.example")],
            None
        )
        .status,
        200
    );
}

#[test]
fn bodies_over_the_limit_are_413() {
    let srv = TestServer::start(ServerConfig {
        body_limit: 1024,
        ..ServerConfig::default()
    });
    let big = chat(&"x".repeat(2000), json!({}));
    assert_eq!(
        assert_error(&srv.post("/v1/chat/completions", &big), 413, None)["error"]["code"],
        "request_too_large"
    );
    // Chunked, without Content-Length: cut off while reading.
    let mut s = TcpStream::connect(srv.addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(60))).unwrap();
    let head = format!("POST /v1/chat/completions HTTP/1.1\r\nHost: {}\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n\r\n", srv.addr);
    s.write_all(head.as_bytes()).unwrap();
    for _ in 0..4 {
        let chunk = "y".repeat(500);
        if s.write_all(format!("{:x}\r\n{chunk}\r\n", chunk.len()).as_bytes())
            .is_err()
        {
            break;
        }
    }
    let _ = s.write_all(b"0\r\n\r\n");
    let mut out = String::new();
    let _ = s.read_to_string(&mut out);
    assert!(out.starts_with("HTTP/1.1 413"), "{out}");
    // Under the limit is fine.
    assert_eq!(
        srv.post("/v1/chat/completions", &chat("small", greedy(1)))
            .status,
        200
    );
}

#[test]
fn non_loopback_bind_needs_an_api_key() {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        let r = Server::bind(ServerConfig {
            host: "0.0.0.0".into(),
            port: 0,
            ..ServerConfig::default()
        })
        .await;
        assert!(
            matches!(r, Err(ServerError::InsecureBind { .. })),
            "{:?}",
            r.err()
        );
        let msg = Server::bind(ServerConfig {
            host: "0.0.0.0".into(),
            port: 0,
            ..ServerConfig::default()
        })
        .await
        .err()
        .unwrap()
        .to_string();
        assert!(msg.contains("--api-key"), "{msg}");
        let ok = Server::bind(ServerConfig {
            host: "0.0.0.0".into(),
            port: 0,
            api_key: Some(Secret::new("k")),
            ..ServerConfig::default()
        })
        .await;
        assert!(ok.is_ok());
        let empty = Server::bind(ServerConfig {
            host: "127.0.0.1".into(),
            port: 0,
            api_key: Some(Secret::new("")),
            ..ServerConfig::default()
        })
        .await;
        assert!(matches!(empty, Err(ServerError::EmptyKey)));
        assert!(Server::bind(ServerConfig {
            host: "localhost".into(),
            port: 0,
            ..ServerConfig::default()
        })
        .await
        .is_ok());
    });
}

#[test]
fn slow_clients_are_cut_off() {
    let srv = TestServer::start(ServerConfig {
        header_timeout: Duration::from_millis(300),
        body_timeout: Duration::from_millis(300),
        ..ServerConfig::default()
    });
    // Headers that never end (slowloris): the server closes the connection.
    let mut s = TcpStream::connect(srv.addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
    s.write_all(b"GET /health HTTP/1.1\r\nHost: localhost\r\nX-Slow: 1\r\n")
        .unwrap();
    let mut buf = Vec::new();
    let r = s.read_to_end(&mut buf);
    assert!(r.is_ok(), "the server kept the connection open: {r:?}");
    // A body that never completes: 408.
    let mut s = TcpStream::connect(srv.addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
    s.write_all(b"POST /v1/chat/completions HTTP/1.1\r\nHost: localhost\r\nContent-Length: 100\r\n\r\n{\"mess").unwrap();
    let mut out = String::new();
    let _ = s.read_to_string(&mut out);
    assert!(out.starts_with("HTTP/1.1 408"), "{out}");
    // An idle keep-alive connection is closed too.
    let mut s = TcpStream::connect(srv.addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
    s.write_all(b"GET /health HTTP/1.1\r\nHost: localhost\r\n\r\n")
        .unwrap();
    let mut buf = Vec::new();
    assert!(s.read_to_end(&mut buf).is_ok());
    assert!(String::from_utf8_lossy(&buf).starts_with("HTTP/1.1 200"));
}

#[test]
fn a_client_that_hangs_up_mid_stream_frees_its_slot() {
    let srv = TestServer::start(cfg(1, 8));
    let mut body = chat(
        "Go on forever",
        json!({"max_tokens": 4000, "ignore_eos": true, "stream": true}),
    );
    body["temperature"] = json!(0);
    let mut s = Stream::open(srv.addr, "/v1/chat/completions", &body);
    assert_eq!(s.status, 200);
    for _ in 0..3 {
        assert!(s.next_event().is_some());
    }
    assert_eq!(
        metric(&srv.get("/metrics").text(), "hearth_active_slots"),
        1.0
    );
    s.close();
    wait_metric(&srv, "hearth_active_slots", |v| v == 0.0);
    wait_metric(&srv, "hearth_client_disconnects_total", |v| v == 1.0);
    // The only slot is free again.
    assert_eq!(
        srv.post("/v1/chat/completions", &chat("next", greedy(2)))
            .status,
        200
    );
    // The engine stopped stepping the abandoned stream long before 4000 tokens.
    let steps = metric(&srv.get("/metrics").text(), "hearth_engine_steps_total");
    assert!(steps < 1000.0, "{steps}");
}

#[test]
fn a_client_that_hangs_up_before_a_non_streamed_answer_frees_its_slot() {
    let srv = TestServer::start(cfg(1, 8));
    let body = chat(
        "Go on forever",
        json!({"max_tokens": 4000, "ignore_eos": true}),
    )
    .to_string();
    let mut s = TcpStream::connect(srv.addr).unwrap();
    let head = format!(
        "POST /v1/chat/completions HTTP/1.1\r\nHost: localhost\r\nContent-Length: {}\r\n\r\n",
        body.len()
    );
    s.write_all(head.as_bytes()).unwrap();
    s.write_all(body.as_bytes()).unwrap();
    wait_metric(&srv, "hearth_active_slots", |v| v == 1.0);
    drop(s);
    wait_metric(&srv, "hearth_active_slots", |v| v == 0.0);
    let steps = metric(&srv.get("/metrics").text(), "hearth_engine_steps_total");
    assert!(steps < 4000.0, "{steps}");
}

#[test]
fn a_full_queue_answers_503_with_retry_after() {
    let srv = TestServer::start(cfg(1, 1));
    let long = json!({"max_tokens": 4000, "ignore_eos": true, "stream": true, "temperature": 0});
    let mut running = Stream::open(srv.addr, "/v1/chat/completions", &chat("one", long.clone()));
    assert!(running.next_event().is_some());
    // The role chunk comes before admission: wait until the job holds the slot.
    wait_metric(&srv, "hearth_active_slots", |v| v == 1.0);
    let waiting = Stream::open(srv.addr, "/v1/chat/completions", &chat("two", long));
    // Headers of a streamed answer come at once, before a slot is free.
    assert_eq!(waiting.status, 200);
    wait_metric(&srv, "hearth_queue_depth", |v| v == 1.0);
    let r = srv.post("/v1/chat/completions", &chat("three", greedy(1)));
    assert_eq!(
        assert_error(&r, 503, None)["error"]["code"],
        "server_overloaded"
    );
    assert_eq!(r.header("retry-after"), Some("1"));
    running.close();
    waiting.close();
    wait_metric(&srv, "hearth_active_slots", |v| v == 0.0);
    wait_metric(&srv, "hearth_queue_depth", |v| v == 0.0);
    assert_eq!(
        srv.post("/v1/chat/completions", &chat("four", greedy(1)))
            .status,
        200
    );
}

#[test]
fn a_continued_conversation_reuses_the_cached_prefix() {
    let srv = TestServer::start(cfg(2, 8));
    let first = srv
        .post("/v1/chat/completions", &chat("What is a river?", greedy(6)))
        .json();
    let answer = first["choices"][0]["message"]["content"].as_str().unwrap();
    let second = json!({"temperature": 0, "max_tokens": 4, "messages": [
        {"role": "user", "content": "What is a river?"},
        {"role": "assistant", "content": answer},
        {"role": "user", "content": "And a lake?"}
    ]});
    let v = srv.post("/v1/chat/completions", &second).json();
    let cached = v["usage"]["prompt_tokens_details"]["cached_tokens"]
        .as_u64()
        .unwrap();
    let first_prompt = first["usage"]["prompt_tokens"].as_u64().unwrap();
    assert!(
        cached >= first_prompt,
        "cached {cached} < first prompt {first_prompt}"
    );
    assert!(
        metric(
            &srv.get("/metrics").text(),
            "hearth_prompt_cached_tokens_total"
        ) >= cached as f64
    );
}

#[test]
fn thirty_two_concurrent_clients() {
    let srv = Arc::new(TestServer::start(cfg(4, 64)));
    let handles: Vec<_> = (0..32)
        .map(|i| {
            let srv = Arc::clone(&srv);
            std::thread::spawn(move || {
                let mut b = chat(
                    &format!("client {i}"),
                    json!({"max_tokens": 6, "seed": i, "ignore_eos": true}),
                );
                if i % 2 == 0 {
                    b["stream"] = json!(true);
                    b["stream_options"] = json!({"include_usage": true});
                    let r = srv.post("/v1/chat/completions", &b);
                    assert_eq!(r.status, 200);
                    let ev = r.events();
                    assert_eq!(ev.last().unwrap(), "[DONE]");
                    let usage: Value = serde_json::from_str(&ev[ev.len() - 2]).unwrap();
                    usage["usage"]["completion_tokens"].as_u64().unwrap()
                } else {
                    let r = srv.post("/v1/chat/completions", &b);
                    assert_eq!(r.status, 200, "{}", r.text());
                    r.json()["usage"]["completion_tokens"].as_u64().unwrap()
                }
            })
        })
        .collect();
    for h in handles {
        assert_eq!(h.join().unwrap(), 6);
    }
    let m = srv.get("/metrics").text();
    assert_eq!(metric(&m, "hearth_completion_tokens_total"), 32.0 * 6.0);
    assert_eq!(
        metric(
            &m,
            "hearth_requests_total{route=\"/v1/chat/completions\",status=\"200\"}"
        ),
        32.0
    );
    // 32 requests in 4 slots: steps were shared.
    assert!(metric(&m, "hearth_engine_steps_total") < 32.0 * 6.0);
}

#[test]
fn legacy_completions() {
    let srv = TestServer::default();
    let v = srv.post("/v1/completions", &json!({"prompt": "Once upon a time", "max_tokens": 4, "temperature": 0, "logprobs": 2, "ignore_eos": true})).json();
    assert!(v["id"].as_str().unwrap().starts_with("cmpl-"));
    assert_eq!(v["object"], "text_completion");
    let c = &v["choices"][0];
    let lp = &c["logprobs"];
    assert_eq!(lp["tokens"].as_array().unwrap().len(), 4);
    assert_eq!(lp["token_logprobs"].as_array().unwrap().len(), 4);
    assert_eq!(lp["top_logprobs"][0].as_object().unwrap().len(), 2);
    let offsets: Vec<u64> = lp["text_offset"]
        .as_array()
        .unwrap()
        .iter()
        .map(|o| o.as_u64().unwrap())
        .collect();
    assert_eq!(offsets[0], 0);
    assert!(offsets.windows(2).all(|w| w[0] <= w[1]));
    let text = c["text"].as_str().unwrap();
    assert_eq!(
        lp["tokens"]
            .as_array()
            .unwrap()
            .iter()
            .map(|t| t.as_str().unwrap())
            .collect::<String>(),
        text
    );
    // Echo, and token-id prompts give the same continuation as the text.
    let e = srv.post("/v1/completions", &json!({"prompt": "Once upon a time", "max_tokens": 4, "temperature": 0, "echo": true, "ignore_eos": true})).json();
    assert_eq!(
        e["choices"][0]["text"].as_str().unwrap(),
        format!("Once upon a time{text}")
    );
    let ids = common::engine().tokenize("Once upon a time", true, true);
    let t = srv
        .post(
            "/v1/completions",
            &json!({"prompt": ids, "max_tokens": 4, "temperature": 0, "ignore_eos": true}),
        )
        .json();
    assert_eq!(t["choices"][0]["text"], text);
    // Streaming.
    let r = srv.post("/v1/completions", &json!({"prompt": "Once upon a time", "max_tokens": 4, "temperature": 0, "stream": true, "ignore_eos": true}));
    let chunks: Vec<Value> = r
        .events()
        .iter()
        .filter(|e| *e != "[DONE]")
        .map(|e| serde_json::from_str(e).unwrap())
        .collect();
    assert!(chunks.iter().all(|c| c["object"] == "text_completion"));
    let streamed: String = chunks
        .iter()
        .filter_map(|c| c["choices"][0]["text"].as_str())
        .collect();
    assert_eq!(streamed, text);
    assert_eq!(
        chunks.last().unwrap()["choices"][0]["finish_reason"],
        "length"
    );
    // Default max_tokens is 16.
    let d = srv
        .post(
            "/v1/completions",
            &json!({"prompt": "x", "ignore_eos": true}),
        )
        .json();
    assert_eq!(d["usage"]["completion_tokens"], 16);
}

#[test]
fn metrics_exposition() {
    let srv = TestServer::default();
    srv.post("/v1/chat/completions", &chat("hi", greedy(3)));
    srv.post(
        "/v1/chat/completions",
        &chat("x", json!({"temperature": 9})),
    );
    let r = srv.get("/metrics");
    assert_eq!(r.status, 200);
    assert!(r
        .header("content-type")
        .unwrap()
        .starts_with("text/plain; version=0.0.4"));
    let m = r.text();
    assert_eq!(
        metric(
            &m,
            "hearth_requests_total{route=\"/v1/chat/completions\",status=\"200\"}"
        ),
        1.0
    );
    assert_eq!(
        metric(
            &m,
            "hearth_requests_total{route=\"/v1/chat/completions\",status=\"400\"}"
        ),
        1.0
    );
    assert_eq!(metric(&m, "hearth_completion_tokens_total"), 3.0);
    assert!(metric(&m, "hearth_prompt_tokens_total") > 0.0);
    assert_eq!(
        metric(
            &m,
            "hearth_time_to_first_token_seconds_count{route=\"/v1/chat/completions\"}"
        ),
        1.0
    );
    assert_eq!(
        metric(
            &m,
            "hearth_request_duration_seconds_count{route=\"/v1/chat/completions\"}"
        ),
        1.0
    );
    assert_eq!(metric(&m, "hearth_slots"), 4.0);
    assert_eq!(metric(&m, "hearth_queue_depth"), 0.0);
    for line in m.lines().filter(|l| !l.starts_with('#')) {
        assert!(
            line.rsplit(' ').next().unwrap().parse::<f64>().is_ok(),
            "{line}"
        );
    }
}

/// A deterministic toy embedder for the route's plumbing (not a model).
struct LetterCounts;

impl Embedder for LetterCounts {
    fn model_id(&self) -> &str {
        "letter-counts"
    }
    fn dimensions(&self) -> usize {
        3
    }
    fn embed(&self, inputs: &[String]) -> Result<(Vec<Vec<f32>>, usize), String> {
        let v = inputs
            .iter()
            .map(|s| vec![s.len() as f32, s.matches('a').count() as f32, 0.5])
            .collect();
        Ok((v, inputs.iter().map(|s| s.split_whitespace().count()).sum()))
    }
}

#[test]
fn embeddings_hook() {
    let srv = TestServer::default();
    let r = srv.post("/v1/embeddings", &json!({"input": "hello", "model": "x"}));
    assert_eq!(
        assert_error(&r, 501, None)["error"]["code"],
        "not_configured"
    );
    let srv = TestServer::start(ServerConfig {
        embedder: Some(Arc::new(LetterCounts)),
        ..ServerConfig::default()
    });
    let v = srv
        .post(
            "/v1/embeddings",
            &json!({"input": ["banana", "a b"], "model": "letter-counts"}),
        )
        .json();
    assert_eq!(v["object"], "list");
    assert_eq!(v["model"], "letter-counts");
    assert_eq!(
        v["data"][0],
        json!({"object": "embedding", "index": 0, "embedding": [6.0, 3.0, 0.5]})
    );
    assert_eq!(v["data"][1]["embedding"], json!([3.0, 1.0, 0.5]));
    assert_eq!(v["usage"], json!({"prompt_tokens": 3, "total_tokens": 3}));
    let b = srv
        .post(
            "/v1/embeddings",
            &json!({"input": "banana", "encoding_format": "base64"}),
        )
        .json();
    let want: Vec<u8> = [6.0f32, 3.0, 0.5]
        .iter()
        .flat_map(|x| x.to_le_bytes())
        .collect();
    assert_eq!(
        b["data"][0]["embedding"],
        hearth_server::embed::base64(&want)
    );
    assert_error(
        &srv.post("/v1/embeddings", &json!({"input": "a", "dimensions": 2})),
        400,
        Some("dimensions"),
    );
    let models = srv.get("/v1/models").json();
    assert_eq!(models["data"][1]["id"], "letter-counts");
}

/// Writes a rank-2 PEFT adapter on `o_proj` and `down_proj` of both layers
/// of the tiny test model (64 wide, FFN 128), by hand: safetensors is an
/// 8-byte header length, a JSON header, then the f32 data.
fn write_test_adapter(dir: &std::path::Path) {
    let r = 2usize;
    let mut tensors: Vec<(String, Vec<usize>)> = Vec::new();
    for layer in 0..2 {
        for (parent, module, rows, cols) in [("self_attn", "o_proj", 64, 64), ("mlp", "down_proj", 64, 128)] {
            let stem = format!("base_model.model.model.layers.{layer}.{parent}.{module}");
            tensors.push((format!("{stem}.lora_A.weight"), vec![r, cols]));
            tensors.push((format!("{stem}.lora_B.weight"), vec![rows, r]));
        }
    }
    let mut header = serde_json::Map::new();
    let mut data: Vec<u8> = Vec::new();
    for (i, (name, shape)) in tensors.iter().enumerate() {
        let n: usize = shape.iter().product();
        let start = data.len();
        for k in 0..n {
            data.extend_from_slice(&((((k * 7 + i * 13) % 17) as f32 - 8.0) / 8.0).to_le_bytes());
        }
        header.insert(name.clone(), json!({"dtype": "F32", "shape": shape, "data_offsets": [start, data.len()]}));
    }
    let mut h = Value::Object(header).to_string().into_bytes();
    while h.len() % 8 != 0 {
        h.push(b' ');
    }
    let mut file = (h.len() as u64).to_le_bytes().to_vec();
    file.extend_from_slice(&h);
    file.extend_from_slice(&data);
    std::fs::write(dir.join("adapter_model.safetensors"), file).unwrap();
    let cfg = json!({"peft_type": "LORA", "r": r, "lora_alpha": 16, "target_modules": ["o_proj", "down_proj"], "bias": "none"});
    std::fs::write(dir.join("adapter_config.json"), cfg.to_string()).unwrap();
}

#[test]
fn lora_adapter_is_selected_by_model_name() {
    let dir = std::env::temp_dir().join(format!("hearth-server-lora-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    write_test_adapter(&dir);
    let srv = TestServer::start(ServerConfig {
        adapters: vec![("demo".into(), dir.clone())],
        ..cfg(2, 8)
    });
    let models = srv.get("/v1/models").json();
    let ids: Vec<&str> = models["data"].as_array().unwrap().iter().filter_map(|m| m["id"].as_str()).collect();
    assert!(ids.contains(&"hearth-tiny-qwen2+demo"), "{ids:?}");
    assert_eq!(srv.get("/v1/models/hearth-tiny-qwen2+demo").status, 200);

    let content = |model: &str| {
        let mut body = chat("Say something.", greedy(12));
        body["model"] = json!(model);
        let r = srv.post("/v1/chat/completions", &body);
        assert_eq!(r.status, 200, "{}", r.text());
        r.json()["choices"][0]["message"]["content"].as_str().unwrap().to_string()
    };
    let base = content("hearth-tiny-qwen2");
    let tuned = content("hearth-tiny-qwen2+demo");
    assert_eq!(base, content("anything-else"), "other names keep selecting the base");
    assert_ne!(base, tuned, "the adapter must change greedy output");
    assert_eq!(tuned, content("hearth-tiny-qwen2+demo"), "greedy output is deterministic");

    let mut body = chat("x", greedy(2));
    body["model"] = json!("hearth-tiny-qwen2+nope");
    assert_error(&srv.post("/v1/chat/completions", &body), 404, Some("model"));
    std::fs::remove_dir_all(&dir).unwrap();
}
