//! OpenAI `chat.completion.chunk` objects → [`ChatEvent`]s.
//!
//! Shapes follow the OpenAI API reference for streamed chat completions:
//! `choices[].delta.{content, tool_calls[].{index, id, function.{name,
//! arguments}}}`, `choices[].finish_reason`, and a final chunk with empty
//! `choices` and `usage` when `stream_options.include_usage` was set.
//!
//! Tool calls arrive as fragments keyed by `(choice, tool index)`; they are
//! assembled and emitted, in tool-index order, when their choice finishes.
//! Usage is emitted once, after the last choice finished and the stream
//! ended (servers with continuous usage stats send it on every chunk; the
//! last value wins).
//!
//! Ignored on purpose: `role` (always assistant), `logprobs`, `refusal`,
//! `reasoning_content` and other vendor extensions — no `ChatEvent` carries
//! them.

use std::collections::{BTreeMap, VecDeque};

use hearth_api::{ChatEvent, FinishReason, ToolCall, Usage};
use serde_json::Value;

use crate::redact::error_message;

/// Generous bounds that no honest server reaches; hostile streams hit them.
const MAX_CHOICES: u32 = 128;
const MAX_TOOL_CALLS: u32 = 128;
const MAX_NAME: usize = 256;

#[derive(Debug, PartialEq, Eq, thiserror::Error)]
pub(crate) enum DecodeError {
    /// The upstream sent an error object.
    #[error("{0}")]
    Upstream(String),
    /// The chunk does not have the chat-completions shape.
    #[error("{0}")]
    Protocol(String),
    /// The stream ended before every choice finished.
    #[error("{0}")]
    Truncated(String),
}

#[derive(Debug, Default)]
struct PartialCall {
    id: String,
    name: String,
    arguments: String,
}

#[derive(Debug, Default)]
struct ChoiceState {
    calls: BTreeMap<u32, PartialCall>,
    finished: bool,
}

#[derive(Debug, Default)]
pub(crate) struct Assembler {
    choices: BTreeMap<u32, ChoiceState>,
    usage: Option<Usage>,
    ended: bool,
}

fn proto<T>(m: impl Into<String>) -> Result<T, DecodeError> {
    Err(DecodeError::Protocol(m.into()))
}

fn parse_finish(s: &str) -> FinishReason {
    match s {
        "length" => FinishReason::Length,
        "tool_calls" | "function_call" => FinishReason::ToolCalls,
        "content_filter" => FinishReason::ContentFilter,
        // "stop", and the synonyms some servers use ("eos", "eos_token",
        // "stop_sequence" in TGI/llama.cpp variants). Any other non-null
        // reason still means the choice ended normally.
        _ => FinishReason::Stop,
    }
}

fn parse_usage(v: &Value) -> Result<Option<Usage>, DecodeError> {
    if v.is_null() {
        return Ok(None);
    }
    let field = |name: &str| -> Result<u32, DecodeError> {
        match v.get(name) {
            None | Some(Value::Null) => Ok(0),
            Some(n) => match n.as_u64().and_then(|n| u32::try_from(n).ok()) {
                Some(n) => Ok(n),
                None => proto(format!("usage.{name} is not a token count")),
            },
        }
    };
    if !v.is_object() {
        return proto("usage is not an object");
    }
    Ok(Some(Usage { prompt_tokens: field("prompt_tokens")?, completion_tokens: field("completion_tokens")? }))
}

fn index_of(v: &Value, what: &str, default: u32, max: u32) -> Result<u32, DecodeError> {
    match v.get("index") {
        None | Some(Value::Null) => Ok(default),
        Some(i) => match i.as_u64() {
            Some(i) if i < u64::from(max) => Ok(i as u32),
            _ => proto(format!("{what} index is not an integer below {max}")),
        },
    }
}

fn opt_str<'a>(v: &'a Value, key: &str, what: &str) -> Result<Option<&'a str>, DecodeError> {
    match v.get(key) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s)) => Ok(Some(s)),
        Some(_) => proto(format!("{what} is not a string")),
    }
}

impl Assembler {
    /// One `data:` payload that is not `[DONE]`.
    pub(crate) fn chunk(&mut self, v: &Value, out: &mut VecDeque<ChatEvent>) -> Result<(), DecodeError> {
        if self.ended {
            return proto("data after the end of the stream");
        }
        if let Some(e) = v.get("error").filter(|e| !e.is_null()) {
            let msg = error_message(&serde_json::json!({ "error": e })).unwrap_or_else(|| "unspecified error".into());
            return Err(DecodeError::Upstream(msg));
        }
        if !v.is_object() {
            return proto("chunk is not a JSON object");
        }
        if let Some(u) = v.get("usage") {
            if let Some(u) = parse_usage(u)? {
                self.usage = Some(u);
            }
        }
        let choices = match v.get("choices") {
            None | Some(Value::Null) => return Ok(()),
            Some(Value::Array(a)) => a,
            Some(_) => return proto("choices is not an array"),
        };
        for (pos, c) in choices.iter().enumerate() {
            let default = u32::try_from(pos).unwrap_or(u32::MAX);
            let index = index_of(c, "choice", default, MAX_CHOICES)?;
            let state = self.choices.entry(index).or_default();
            let delta = c.get("delta").or_else(|| c.get("message")).filter(|d| !d.is_null());
            if let Some(d) = delta {
                if !d.is_object() {
                    return proto("delta is not an object");
                }
                let text = opt_str(d, "content", "delta.content")?.unwrap_or("");
                let has_calls = d.get("tool_calls").is_some_and(|t| !t.is_null());
                if state.finished && (!text.is_empty() || has_calls) {
                    return proto(format!("choice {index} produced output after its finish_reason"));
                }
                if !text.is_empty() {
                    out.push_back(ChatEvent::Delta { index, text: text.to_string() });
                }
                if has_calls {
                    merge_tool_calls(state, d.get("tool_calls").unwrap_or(&Value::Null))?;
                }
            }
            if let Some(reason) = opt_str(c, "finish_reason", "finish_reason")? {
                if state.finished {
                    // Some servers repeat the finish chunk; once is enough.
                    continue;
                }
                state.finished = true;
                for (i, call) in std::mem::take(&mut state.calls) {
                    if call.name.is_empty() {
                        return proto(format!("tool call {i} of choice {index} has no function name"));
                    }
                    // Servers that omit ids (some llama.cpp builds) get a
                    // stable one, so tool results can still refer to it.
                    let id = if call.id.is_empty() { format!("call_{index}_{i}") } else { call.id };
                    out.push_back(ChatEvent::ToolCall {
                        index,
                        call: ToolCall { id, name: call.name, arguments: call.arguments },
                    });
                }
                out.push_back(ChatEvent::Finish { index, reason: parse_finish(reason) });
            }
        }
        Ok(())
    }

    /// The stream is over: `[DONE]` was seen (`saw_done`) or the body ended.
    /// Complete only if at least one choice ran and every choice finished.
    pub(crate) fn end(&mut self, saw_done: bool, out: &mut VecDeque<ChatEvent>) -> Result<(), DecodeError> {
        if self.ended {
            return Ok(());
        }
        self.ended = true;
        let how = if saw_done { "[DONE]" } else { "end of body without [DONE]" };
        if self.choices.is_empty() {
            return Err(DecodeError::Truncated(format!("stream reached {how} without any choice")));
        }
        if let Some((i, _)) = self.choices.iter().find(|(_, c)| !c.finished) {
            return Err(DecodeError::Truncated(format!("stream reached {how} before choice {i} had a finish_reason")));
        }
        if let Some(u) = self.usage.take() {
            out.push_back(ChatEvent::Usage(u));
        }
        Ok(())
    }

    /// A whole non-streamed `chat.completion` object (for endpoints that
    /// ignore `stream: true` and answer `application/json`).
    pub(crate) fn completion(&mut self, v: &Value, out: &mut VecDeque<ChatEvent>) -> Result<(), DecodeError> {
        if v.get("choices").and_then(Value::as_array).is_some_and(|c| c.iter().any(|c| c.get("finish_reason").is_none_or(Value::is_null))) {
            // A complete answer must say why each choice ended; treat a
            // missing reason as "stop" rather than failing a whole answer.
            let mut v = v.clone();
            if let Some(cs) = v.get_mut("choices").and_then(Value::as_array_mut) {
                for c in cs {
                    if c.get("finish_reason").is_none_or(Value::is_null) {
                        c["finish_reason"] = Value::String("stop".into());
                    }
                }
            }
            self.chunk(&v, out)?;
        } else {
            self.chunk(v, out)?;
        }
        self.end(true, out)
    }
}

fn merge_tool_calls(state: &mut ChoiceState, calls: &Value) -> Result<(), DecodeError> {
    let Some(calls) = calls.as_array() else {
        return proto("delta.tool_calls is not an array");
    };
    for (pos, tc) in calls.iter().enumerate() {
        let default = u32::try_from(pos).unwrap_or(u32::MAX);
        let i = index_of(tc, "tool call", default, MAX_TOOL_CALLS)?;
        let entry = state.calls.entry(i).or_default();
        if let Some(id) = opt_str(tc, "id", "tool call id")? {
            if entry.id.is_empty() && id.len() <= MAX_NAME {
                entry.id = id.to_string();
            }
        }
        let f = match tc.get("function") {
            None | Some(Value::Null) => continue,
            Some(f) if f.is_object() => f,
            Some(_) => return proto("tool call function is not an object"),
        };
        if let Some(name) = opt_str(f, "name", "function name")? {
            // The name normally arrives whole in the first fragment; servers
            // that repeat it on every fragment must not double it.
            if entry.name != name {
                if entry.name.len() + name.len() > MAX_NAME {
                    return proto("tool call name too long");
                }
                entry.name.push_str(name);
            }
        }
        match f.get("arguments") {
            None | Some(Value::Null) => {}
            Some(Value::String(a)) => entry.arguments.push_str(a),
            // Some servers send arguments as a JSON object, not a string.
            Some(other @ Value::Object(_)) => entry.arguments.push_str(&other.to_string()),
            Some(_) => return proto("tool call arguments are not a string"),
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn run(chunks: &[Value], done: bool) -> (Vec<ChatEvent>, Result<(), DecodeError>) {
        let mut a = Assembler::default();
        let mut out = VecDeque::new();
        for c in chunks {
            if let Err(e) = a.chunk(c, &mut out) {
                return (out.into(), Err(e));
            }
        }
        let r = a.end(done, &mut out);
        (out.into(), r)
    }

    #[test]
    fn text_stream_with_usage() {
        let chunks = [
            json!({"choices":[{"index":0,"delta":{"role":"assistant","content":""},"finish_reason":null}]}),
            json!({"choices":[{"index":0,"delta":{"content":"Hel"},"finish_reason":null}],"usage":null}),
            json!({"choices":[{"index":0,"delta":{"content":"lo"},"finish_reason":null}]}),
            json!({"choices":[{"index":0,"delta":{},"finish_reason":"stop"}]}),
            json!({"choices":[],"usage":{"prompt_tokens":5,"completion_tokens":2,"total_tokens":7}}),
        ];
        let (ev, r) = run(&chunks, true);
        assert_eq!(r, Ok(()));
        assert_eq!(
            ev,
            vec![
                ChatEvent::Delta { index: 0, text: "Hel".into() },
                ChatEvent::Delta { index: 0, text: "lo".into() },
                ChatEvent::Finish { index: 0, reason: FinishReason::Stop },
                ChatEvent::Usage(Usage { prompt_tokens: 5, completion_tokens: 2 }),
            ]
        );
    }

    #[test]
    fn tool_call_fragments_are_assembled_per_choice() {
        let chunks = [
            json!({"choices":[{"index":0,"delta":{"role":"assistant","content":null,"tool_calls":[
                {"index":0,"id":"call_a","type":"function","function":{"name":"get_weather","arguments":""}}]}}]}),
            json!({"choices":[{"index":0,"delta":{"tool_calls":[{"index":0,"function":{"arguments":"{\"loc"}}]}}]}),
            json!({"choices":[{"index":0,"delta":{"tool_calls":[{"index":1,"id":"call_b","function":{"name":"now","arguments":"{}"}}]}}]}),
            json!({"choices":[{"index":0,"delta":{"tool_calls":[{"index":0,"function":{"arguments":"\":\"Paris\"}"}}]}}]}),
            json!({"choices":[{"index":0,"delta":{},"finish_reason":"tool_calls"}]}),
        ];
        let (ev, r) = run(&chunks, true);
        assert_eq!(r, Ok(()));
        assert_eq!(
            ev,
            vec![
                ChatEvent::ToolCall {
                    index: 0,
                    call: ToolCall { id: "call_a".into(), name: "get_weather".into(), arguments: "{\"loc\":\"Paris\"}".into() }
                },
                ChatEvent::ToolCall { index: 0, call: ToolCall { id: "call_b".into(), name: "now".into(), arguments: "{}".into() } },
                ChatEvent::Finish { index: 0, reason: FinishReason::ToolCalls },
            ]
        );
    }

    #[test]
    fn repeated_names_and_missing_ids() {
        let chunks = [
            json!({"choices":[{"delta":{"tool_calls":[{"function":{"name":"f","arguments":"{\"a\":"}}]}}]}),
            json!({"choices":[{"delta":{"tool_calls":[{"function":{"name":"f","arguments":"1}"}}]}}]}),
            json!({"choices":[{"delta":{},"finish_reason":"function_call"}]}),
        ];
        let (ev, r) = run(&chunks, false);
        assert_eq!(r, Ok(()), "finished choices without [DONE] are complete");
        assert_eq!(
            ev[0],
            ChatEvent::ToolCall { index: 0, call: ToolCall { id: "call_0_0".into(), name: "f".into(), arguments: "{\"a\":1}".into() } }
        );
    }

    #[test]
    fn several_choices_interleaved() {
        let chunks = [
            json!({"choices":[{"index":1,"delta":{"content":"B"}},{"index":0,"delta":{"content":"A"}}]}),
            json!({"choices":[{"index":0,"delta":{},"finish_reason":"length"}]}),
            json!({"choices":[{"index":1,"delta":{},"finish_reason":"content_filter"}]}),
        ];
        let (ev, r) = run(&chunks, true);
        assert_eq!(r, Ok(()));
        assert_eq!(ev[0], ChatEvent::Delta { index: 1, text: "B".into() });
        assert_eq!(ev[2], ChatEvent::Finish { index: 0, reason: FinishReason::Length });
        assert_eq!(ev[3], ChatEvent::Finish { index: 1, reason: FinishReason::ContentFilter });
    }

    #[test]
    fn truncation_is_an_error() {
        let chunks = [json!({"choices":[{"index":0,"delta":{"content":"partial"}}]})];
        let (ev, r) = run(&chunks, false);
        assert_eq!(ev.len(), 1);
        assert!(matches!(r, Err(DecodeError::Truncated(m)) if m.contains("without [DONE]")));
        let (_, r) = run(&chunks, true);
        assert!(matches!(r, Err(DecodeError::Truncated(m)) if m.contains("[DONE] before choice 0")));
        let (_, r) = run(&[], true);
        assert!(matches!(r, Err(DecodeError::Truncated(_))));
        // A usage-only stream has no choice at all.
        let (_, r) = run(&[json!({"choices":[],"usage":{"prompt_tokens":1,"completion_tokens":0}})], true);
        assert!(matches!(r, Err(DecodeError::Truncated(_))));
    }

    #[test]
    fn malformed_chunks_are_protocol_errors() {
        let bad = [
            json!([1, 2]),
            json!({"choices": {"index": 0}}),
            json!({"choices":[{"index":-1,"delta":{"content":"x"}}]}),
            json!({"choices":[{"index":100000,"delta":{"content":"x"}}]}),
            json!({"choices":[{"delta":{"content":5}}]}),
            json!({"choices":[{"delta":"text"}]}),
            json!({"choices":[{"delta":{"tool_calls":{"index":0}}}]}),
            json!({"choices":[{"delta":{"tool_calls":[{"function":{"name":7}}]}}]}),
            json!({"choices":[{"delta":{"tool_calls":[{"function":{"arguments":[1]}}]}}]}),
            json!({"choices":[{"delta":{},"finish_reason":3}]}),
            json!({"usage":{"prompt_tokens":-3}}),
            json!({"usage":{"prompt_tokens":99999999999u64}}),
        ];
        for b in bad {
            let (_, r) = run(std::slice::from_ref(&b), true);
            assert!(matches!(r, Err(DecodeError::Protocol(_))), "{b} gave {r:?}");
        }
        // A tool call without a name.
        let (_, r) = run(
            &[json!({"choices":[{"delta":{"tool_calls":[{"id":"x","function":{"arguments":"{}"}}]},"finish_reason":"tool_calls"}]})],
            true,
        );
        assert!(matches!(r, Err(DecodeError::Protocol(m)) if m.contains("no function name")));
        // Output after finish.
        let (_, r) = run(
            &[
                json!({"choices":[{"delta":{"content":"a"},"finish_reason":"stop"}]}),
                json!({"choices":[{"delta":{"content":"b"}}]}),
            ],
            true,
        );
        assert!(matches!(r, Err(DecodeError::Protocol(m)) if m.contains("after its finish_reason")));
    }

    #[test]
    fn in_stream_error_objects() {
        let (ev, r) = run(
            &[
                json!({"choices":[{"delta":{"content":"a"}}]}),
                json!({"error":{"message":"server overloaded","type":"server_error","code":503}}),
            ],
            true,
        );
        assert_eq!(ev.len(), 1);
        assert_eq!(r, Err(DecodeError::Upstream("server overloaded (server_error, 503)".into())));
    }

    #[test]
    fn non_streamed_completion() {
        let v = json!({"object":"chat.completion","choices":[{"index":0,"message":{"role":"assistant","content":"Hi!",
            "tool_calls":[{"id":"c","type":"function","function":{"name":"f","arguments":"{}"}}]},"finish_reason":null}],
            "usage":{"prompt_tokens":3,"completion_tokens":1}});
        let mut a = Assembler::default();
        let mut out = VecDeque::new();
        a.completion(&v, &mut out).unwrap();
        let ev: Vec<_> = out.into();
        assert_eq!(
            ev,
            vec![
                ChatEvent::Delta { index: 0, text: "Hi!".into() },
                ChatEvent::ToolCall { index: 0, call: ToolCall { id: "c".into(), name: "f".into(), arguments: "{}".into() } },
                ChatEvent::Finish { index: 0, reason: FinishReason::Stop },
                ChatEvent::Usage(Usage { prompt_tokens: 3, completion_tokens: 1 }),
            ]
        );
    }
}
