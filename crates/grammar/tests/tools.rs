//! Tool calls: format detection on real chat templates, parsing (valid,
//! surrounded, malformed), streaming detection at every split point, and
//! constrained generation round trips over real vocabularies.

mod common;

use std::path::PathBuf;
use std::sync::Arc;

use hearth_api::{Tool, ToolCall, ToolChoice};
use hearth_grammar::{
    parse_tool_calls, DetectorEvent, JsonOptions, ToolCallConstraint, ToolCallDetector, ToolError,
    ToolFormat,
};
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;
use serde_json::{json, Value};

fn rng() -> ChaCha8Rng {
    ChaCha8Rng::seed_from_u64(7)
}

fn template(name: &str) -> String {
    let p = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../../testdata/templates")
        .join(name);
    std::fs::read_to_string(p).expect("template")
}

#[test]
fn detect_from_real_templates() {
    let cases = [
        ("Qwen-Qwen2.5-7B-Instruct.jinja", ToolFormat::Hermes),
        ("Qwen-Qwen3-0.6B.jinja", ToolFormat::Hermes),
        (
            "NousResearch-Hermes-3-Llama-3.1-8B-tool_use.jinja",
            ToolFormat::Hermes,
        ),
        (
            "NousResearch-Hermes-2-Pro-Llama-3-8B-tool_use.jinja",
            ToolFormat::Hermes,
        ),
        ("HuggingFaceTB-SmolLM3-3B.jinja", ToolFormat::Hermes),
        ("meta-llama-Llama-3.1-8B-Instruct.jinja", ToolFormat::Llama3),
        ("meta-llama-Llama-3.2-3B-Instruct.jinja", ToolFormat::Llama3),
        (
            "meta-llama-Llama-3.3-70B-Instruct.jinja",
            ToolFormat::Llama3,
        ),
        (
            "mistralai-Mistral-Nemo-Instruct-2407.jinja",
            ToolFormat::MistralJson,
        ),
        (
            "Mistral-Small-3.2-24B-Instruct-2506.jinja",
            ToolFormat::MistralArgs,
        ),
        (
            "unsloth-mistral-Devstral-Small-2507.jinja",
            ToolFormat::MistralArgs,
        ),
        (
            "mistralai-Ministral-3-14B-Reasoning-2512.jinja",
            ToolFormat::MistralArgs,
        ),
        (
            "ibm-granite-granite-3.3-2B-Instruct.jinja",
            ToolFormat::ToolCallTag { close: false },
        ),
        (
            "fireworks-ai-llama-3-firefunction-v2.jinja",
            ToolFormat::Functools,
        ),
        ("google-gemma-2-2b-it.jinja", ToolFormat::Generic),
        ("microsoft-Phi-3.5-mini-instruct.jinja", ToolFormat::Generic),
    ];
    for (file, want) in cases {
        assert_eq!(ToolFormat::detect(&template(file), None), want, "{file}");
    }
    // Every template in the corpus detects to something without panicking.
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../testdata/templates");
    for e in std::fs::read_dir(dir).expect("dir") {
        let p = e.expect("entry").path();
        if p.extension().is_some_and(|x| x == "jinja") {
            let _ = ToolFormat::detect(&std::fs::read_to_string(&p).expect("read"), None);
        }
    }
    // Vocabulary fallback when the template says nothing.
    let v = common::llama_with_markers();
    assert_eq!(
        ToolFormat::detect("", Some(&v.tok)),
        ToolFormat::MistralArgs,
        "[TOOL_CALLS] and [ARGS] tokens"
    );
    assert_eq!(
        ToolFormat::detect("", Some(&common::qwen2().tok)),
        ToolFormat::Generic
    );
}

fn names_args(calls: &[ToolCall]) -> Vec<(String, Value)> {
    calls
        .iter()
        .map(|c| {
            (
                c.name.clone(),
                serde_json::from_str(&c.arguments).expect("arguments are JSON"),
            )
        })
        .collect()
}

#[test]
fn parse_each_format() {
    let mut r = rng();
    let w = |n: &str, a: Value| (n.to_string(), a);
    // (format, text, expected content, expected calls)
    type Case<'a> = (ToolFormat, &'a str, &'a str, Vec<(String, Value)>);
    let cases: Vec<Case> = vec![
        (
            ToolFormat::Hermes,
            "Let me look.\n<tool_call>\n{\"name\": \"get_weather\", \"arguments\": {\"city\": \"Paris\"}}\n</tool_call>\n<tool_call>\n{\"name\": \"time\", \"arguments\": {}}\n</tool_call>",
            "Let me look.",
            vec![w("get_weather", json!({"city": "Paris"})), w("time", json!({}))],
        ),
        // A JSON list inside the tags (SmolLM2 style), and a missing close tag at the end.
        (
            ToolFormat::Hermes,
            "<tool_call>[{\"name\": \"a\", \"arguments\": {\"x\": 1}}, {\"name\": \"b\", \"arguments\": \"{\\\"y\\\": 2}\"}]",
            "",
            vec![w("a", json!({"x": 1})), w("b", json!({"y": 2}))],
        ),
        (
            ToolFormat::Llama3,
            "<|python_tag|>{\"name\": \"search\", \"parameters\": {\"q\": \"rust\"}}",
            "",
            vec![w("search", json!({"q": "rust"}))],
        ),
        (
            ToolFormat::Llama3,
            "{\"name\": \"a\", \"parameters\": {}}; {\"name\": \"b\", \"parameters\": {\"k\": [1]}}",
            "",
            vec![w("a", json!({})), w("b", json!({"k": [1]}))],
        ),
        (
            ToolFormat::Llama3,
            "<|python_tag|>brave_search.call(query=\"weather in Paris\", count=3)",
            "",
            vec![w("brave_search", json!({"query": "weather in Paris", "count": 3}))],
        ),
        (
            ToolFormat::MistralJson,
            "[TOOL_CALLS][{\"name\": \"f\", \"arguments\": {\"a\": true}, \"id\": \"abcDEF123\"}]",
            "",
            vec![w("f", json!({"a": true}))],
        ),
        (
            ToolFormat::MistralArgs,
            "[TOOL_CALLS]get_weather[ARGS]{\"city\": \"Oslo\"}[TOOL_CALLS]time[CALL_ID]x1y2z3w4v[ARGS]{}",
            "",
            vec![w("get_weather", json!({"city": "Oslo"})), w("time", json!({}))],
        ),
        (
            ToolFormat::Functools,
            "functools[{\"name\": \"f\", \"arguments\": {\"n\": 1}}]",
            "",
            vec![w("f", json!({"n": 1}))],
        ),
        (
            ToolFormat::ToolCallTag { close: true },
            "Sure. <|tool_call|>[{\"name\": \"f\", \"arguments\": {}}]<|/tool_call|>",
            "Sure.",
            vec![w("f", json!({}))],
        ),
        (
            ToolFormat::Generic,
            "```json\n{\"name\": \"f\", \"arguments\": {\"z\": null}}\n```",
            "",
            vec![w("f", json!({"z": null}))],
        ),
        (
            ToolFormat::Generic,
            "{\"tool_calls\": [{\"function\": {\"name\": \"g\", \"arguments\": \"{}\"}}]}",
            "",
            vec![w("g", json!({}))],
        ),
    ];
    for (f, text, content, calls) in cases {
        let p = parse_tool_calls(f, text, &mut r);
        assert_eq!(p.content, content, "{f:?}: {text}");
        assert_eq!(names_args(&p.calls), calls, "{f:?}: {text}");
        for c in &p.calls {
            match f {
                ToolFormat::MistralJson | ToolFormat::MistralArgs => {
                    assert_eq!(c.id.len(), 9);
                    assert!(c.id.bytes().all(|b| b.is_ascii_alphanumeric()));
                }
                _ => assert!(c.id.starts_with("call_") && c.id.len() == 29, "{}", c.id),
            }
        }
    }
    // A valid Mistral id written by the model is kept.
    let p = parse_tool_calls(
        ToolFormat::MistralJson,
        "[TOOL_CALLS][{\"name\": \"f\", \"arguments\": {}, \"id\": \"abcDEF123\"}]",
        &mut r,
    );
    assert_eq!(p.calls[0].id, "abcDEF123");
    // Ids come from the passed-in randomness: same seed, same ids.
    let t = "<tool_call>{\"name\": \"f\", \"arguments\": {}}</tool_call>";
    assert_eq!(
        parse_tool_calls(ToolFormat::Hermes, t, &mut ChaCha8Rng::seed_from_u64(1)).calls[0].id,
        parse_tool_calls(ToolFormat::Hermes, t, &mut ChaCha8Rng::seed_from_u64(1)).calls[0].id
    );
}

#[test]
fn malformed_calls_stay_content() {
    let mut r = rng();
    let cases = [
        (
            ToolFormat::Hermes,
            "<tool_call>\n{\"name\": \"f\", \"arguments\": {\"a\": }\n</tool_call> tail",
        ),
        (
            ToolFormat::Hermes,
            "<tool_call>{\"arguments\": {}}</tool_call>",
        ),
        (ToolFormat::Hermes, "<tool_call>{\"name\": 3}</tool_call>"),
        (
            ToolFormat::Hermes,
            "<tool_call>{\"name\": \"f\", \"arguments\": \"not json\"}</tool_call>",
        ),
        (ToolFormat::Llama3, "{\"name\": \"f\", \"parameters\": {"),
        (ToolFormat::Llama3, "{\"answer\": 42}"),
        (ToolFormat::Llama3, "{\"name\": \"f\"} and more"),
        (
            ToolFormat::MistralJson,
            "[TOOL_CALLS][{\"name\": \"f\", \"arguments\": [1]}]",
        ),
        (ToolFormat::MistralArgs, "[TOOL_CALLS]f[ARGS]{broken"),
        (ToolFormat::MistralArgs, "[TOOL_CALLS][ARGS]{}"),
        (ToolFormat::Functools, "functools[{\"name\": \"\"}]"),
        (
            ToolFormat::Generic,
            "{\"name\": \"f\", \"arguments\": {}} trailing",
        ),
        (ToolFormat::Generic, "```json\n{\"name\": \"f\"}"),
    ];
    for (f, text) in cases {
        let p = parse_tool_calls(f, text, &mut r);
        assert!(p.calls.is_empty(), "{f:?}: {text} gave {:?}", p.calls);
        assert_eq!(
            p.content, text,
            "{f:?}: malformed text must come back verbatim"
        );
    }
    // A good block beside a bad one: the good one parses, the bad one is content.
    let p = parse_tool_calls(
        ToolFormat::Hermes,
        "<tool_call>{\"name\": \"ok\", \"arguments\": {}}</tool_call><tool_call>{oops}</tool_call>",
        &mut r,
    );
    assert_eq!(p.calls.len(), 1);
    assert_eq!(p.content, "<tool_call>{oops}</tool_call>");
    // No text without markers becomes a call.
    let p = parse_tool_calls(ToolFormat::Hermes, "The <tool> tag is not a call.", &mut r);
    assert!(p.calls.is_empty() && p.content == "The <tool> tag is not a call.");
}

#[test]
fn parsing_never_panics_on_truncations() {
    let mut r = rng();
    let samples = [
        (ToolFormat::Hermes, "Hi <tool_call>\n{\"name\": \"f\", \"arguments\": {\"s\": \"é😀\\\"\"}}\n</tool_call>"),
        (ToolFormat::Llama3, "<|python_tag|>{\"name\": \"f\", \"parameters\": {\"a\": [1, {\"b\": null}]}}"),
        (ToolFormat::Llama3, "<|python_tag|>web.call(q=\"x\", n=2)"),
        (ToolFormat::MistralJson, "x[TOOL_CALLS][{\"name\": \"f\", \"arguments\": {}}, {\"name\": \"g\", \"arguments\": {}}]"),
        (ToolFormat::MistralArgs, "[TOOL_CALLS]f[CALL_ID]abc[ARGS]{\"a\": 1}[TOOL_CALLS]g[ARGS]{}"),
        (ToolFormat::Functools, "functools[{\"name\": \"f\", \"arguments\": {}}]"),
        (ToolFormat::ToolCallTag { close: true }, "<|tool_call|>[{\"name\": \"f\", \"arguments\": {}}]<|/tool_call|>"),
        (ToolFormat::Generic, "```json\n[{\"name\": \"f\", \"arguments\": {}}]\n```"),
    ];
    for (f, text) in samples {
        for (i, _) in text.char_indices().chain([(text.len(), ' ')]) {
            let t = &text[..i];
            let p = parse_tool_calls(f, t, &mut r);
            // Whatever was not parsed is still there.
            if p.calls.is_empty() {
                assert_eq!(p.content, t);
            }
        }
        assert!(
            !parse_tool_calls(f, text, &mut r).calls.is_empty(),
            "{f:?}: full sample parses"
        );
    }
}

fn run_stream(f: ToolFormat, parts: &[&str]) -> (String, Vec<ToolCall>, Vec<DetectorEvent>) {
    let mut r = rng();
    let mut d = ToolCallDetector::new(f);
    let mut evs = Vec::new();
    for p in parts {
        evs.extend(d.push(p, &mut r));
    }
    evs.extend(d.finish(&mut r));
    let mut content = String::new();
    let mut calls = Vec::new();
    for e in &evs {
        match e {
            DetectorEvent::Content(c) => content.push_str(c),
            DetectorEvent::ToolCall(c) => calls.push(c.clone()),
        }
    }
    (content, calls, evs)
}

#[test]
fn streaming_split_at_every_offset() {
    // (format, full output, content the client must see, number of calls,
    //  the marker that must never leak into released content)
    let samples = [
        (ToolFormat::Hermes, "Checking.\n<tool_call>\n{\"name\": \"w\", \"arguments\": {\"c\": \"<tool\"}}\n</tool_call>", "Checking.\n", 1, "<tool_call>"),
        (ToolFormat::MistralJson, "[TOOL_CALLS][{\"name\": \"w\", \"arguments\": {}}]", "", 1, "[TOOL_CALLS]"),
        (ToolFormat::MistralArgs, "ok [TOOL_CALLS]w[ARGS]{\"a\": 1}", "ok ", 1, "[TOOL_CALLS]"),
        (ToolFormat::Llama3, "<|python_tag|>{\"name\": \"w\", \"parameters\": {}}", "", 1, "<|python_tag|>"),
        (ToolFormat::Llama3, "  {\"name\": \"w\", \"parameters\": {\"x\": 1}}", "", 1, "{\"name\""),
        (ToolFormat::ToolCallTag { close: true }, "A<|tool_call|>[{\"name\": \"w\", \"arguments\": {}}]<|/tool_call|>", "A", 1, "<|tool_call|>"),
        (ToolFormat::Functools, "functools[{\"name\": \"w\", \"arguments\": {}}]", "", 1, "functools"),
        (ToolFormat::Generic, "{\"name\": \"w\", \"arguments\": {}}", "", 1, "{\"name\""),
    ];
    for (f, text, want_content, n_calls, marker) in samples {
        let bounds: Vec<usize> = text
            .char_indices()
            .map(|(i, _)| i)
            .chain([text.len()])
            .collect();
        for &i in &bounds {
            let (content, calls, evs) = run_stream(f, &[&text[..i], &text[i..]]);
            assert_eq!(content, want_content, "{f:?} split at {i}: events {evs:?}");
            assert_eq!(calls.len(), n_calls, "{f:?} split at {i}");
            for e in &evs {
                if let DetectorEvent::Content(c) = e {
                    assert!(
                        !c.contains(marker),
                        "{f:?} split at {i}: marker leaked in {c:?}"
                    );
                }
            }
        }
        // Three-way splits around the marker and char-by-char.
        for &i in &bounds {
            for &j in bounds.iter().filter(|&&j| j >= i).take(14) {
                let (content, calls, _) = run_stream(f, &[&text[..i], &text[i..j], &text[j..]]);
                assert_eq!(
                    (content.as_str(), calls.len()),
                    (want_content, n_calls),
                    "{f:?} splits {i},{j}"
                );
            }
        }
        let chars: Vec<String> = text.chars().map(String::from).collect();
        let parts: Vec<&str> = chars.iter().map(String::as_str).collect();
        let (content, calls, _) = run_stream(f, &parts);
        assert_eq!(
            (content.as_str(), calls.len()),
            (want_content, n_calls),
            "{f:?} char by char"
        );
    }
}

#[test]
fn streaming_releases_as_early_as_possible() {
    let mut r = rng();
    let mut d = ToolCallDetector::new(ToolFormat::Hermes);
    assert_eq!(
        d.push("Hello <to", &mut r),
        vec![DetectorEvent::Content("Hello ".into())]
    );
    assert_eq!(d.held(), "<to");
    assert_eq!(d.is_tool_call(), None);
    // "<toast" can no longer become "<tool_call>": released at once.
    assert_eq!(
        d.push("ast> ok", &mut r),
        vec![DetectorEvent::Content("<toast> ok".into())]
    );
    assert_eq!(d.held(), "");
    d.push("<tool_call>{\"name\": \"f\", \"arguments\": {}}", &mut r);
    assert_eq!(d.is_tool_call(), Some(true));
    // The call is emitted as soon as its block closes, before finish.
    let evs = d.push("</tool_call>", &mut r);
    assert!(
        matches!(&evs[..], [DetectorEvent::ToolCall(c)] if c.name == "f"),
        "{evs:?}"
    );
    // Text that merely looks like a start is released when the output ends.
    let mut d = ToolCallDetector::new(ToolFormat::Hermes);
    assert!(d
        .push("a <tool_ca", &mut r)
        .iter()
        .all(|e| !matches!(e, DetectorEvent::Content(c) if c.contains('<'))));
    assert_eq!(
        d.finish(&mut r),
        vec![DetectorEvent::Content("<tool_ca".into())]
    );
    // Start-of-output formats decide on the first non-matching character.
    let mut d = ToolCallDetector::new(ToolFormat::Llama3);
    assert_eq!(d.push(" {", &mut r), vec![]);
    assert_eq!(d.push("\"na", &mut r), vec![]);
    assert_eq!(d.is_tool_call(), None);
    let mut d = ToolCallDetector::new(ToolFormat::Llama3);
    assert_eq!(
        d.push("The answer", &mut r),
        vec![DetectorEvent::Content("The answer".into())]
    );
    assert_eq!(d.is_tool_call(), Some(false));
    assert_eq!(
        d.push(" {\"name\": 1}", &mut r),
        vec![DetectorEvent::Content(" {\"name\": 1}".into())]
    );
    // A malformed call comes back verbatim as content at the end.
    let (content, calls, _) = run_stream(
        ToolFormat::MistralJson,
        &["[TOOL_CALLS][{\"name\": ", "\"f\", \"arg"],
    );
    assert!(calls.is_empty());
    assert_eq!(content, "[TOOL_CALLS][{\"name\": \"f\", \"arg");
}

fn tools() -> Vec<Tool> {
    vec![
        Tool {
            name: "get_weather".into(),
            description: Some("Weather for a city".into()),
            parameters: json!({
                "type": "object",
                "properties": {
                    "city": {"type": "string", "maxLength": 20},
                    "unit": {"enum": ["celsius", "fahrenheit"]},
                    "days": {"type": "integer", "minimum": 1, "maximum": 7}
                },
                "required": ["city", "unit"],
                "additionalProperties": false
            }),
        },
        Tool {
            name: "get_time".into(),
            description: None,
            parameters: json!({"type": "object", "properties": {"tz": {"type": "string", "pattern": "^[A-Z][a-z]+/[A-Z][a-z]+$"}}, "required": ["tz"]}),
        },
        Tool {
            name: "ping".into(),
            description: None,
            parameters: Value::Null,
        },
    ]
}

fn validate_calls(calls: &[ToolCall], ts: &[Tool], allowed: &[&str]) {
    assert!(!calls.is_empty());
    for c in calls {
        assert!(
            allowed.contains(&c.name.as_str()),
            "unexpected tool {}",
            c.name
        );
        let t = ts.iter().find(|t| t.name == c.name).expect("known tool");
        let args: Value = serde_json::from_str(&c.arguments).expect("arguments JSON");
        let schema = if t.parameters.is_null() {
            json!({"type": "object"})
        } else {
            t.parameters.clone()
        };
        let v = jsonschema::options()
            .should_validate_formats(true)
            .build(&schema)
            .expect("schema");
        assert!(v.is_valid(&args), "{}: {} invalid", c.name, c.arguments);
    }
}

#[test]
fn forced_calls_round_trip() {
    let ts = tools();
    let cases: Vec<(&str, &common::Vocab, ToolFormat)> = vec![
        ("qwen2", common::qwen2(), ToolFormat::Hermes),
        ("llama", common::llama_bpe(), ToolFormat::Llama3),
        (
            "llama+markers",
            common::llama_with_markers(),
            ToolFormat::MistralJson,
        ),
        (
            "llama+markers",
            common::llama_with_markers(),
            ToolFormat::MistralArgs,
        ),
        (
            "llama+markers",
            common::llama_with_markers(),
            ToolFormat::ToolCallTag { close: true },
        ),
        ("phi3", common::phi3(), ToolFormat::Functools),
        ("phi3", common::phi3(), ToolFormat::Generic),
    ];
    let mut total = 0;
    for (label, v, f) in cases {
        for (choice, allowed) in [
            (
                ToolChoice::Required,
                vec!["get_weather", "get_time", "ping"],
            ),
            (
                ToolChoice::Function("get_weather".into()),
                vec!["get_weather"],
            ),
        ] {
            let g =
                ToolCallConstraint::build(f, &ts, &choice, &v.tok, true, JsonOptions::default())
                    .unwrap_or_else(|e| panic!("{label} {f:?}: {e}"));
            let g = Arc::new(g);
            for seed in 0..6 {
                let run = common::random_decode(
                    v,
                    g.clone(),
                    seed,
                    120,
                    if seed == 0 { Some(29) } else { None },
                );
                assert!(run.finished);
                let text = String::from_utf8(run.rendered.clone()).expect("UTF-8");
                if seed == 1 && std::env::var_os("SHOW_TOOL_OUTPUT").is_some() {
                    eprintln!("{label} {f:?} {choice:?}: {text:?}");
                }
                let p = parse_tool_calls(f, &text, &mut rng());
                assert_eq!(
                    p.content, "",
                    "{label} {f:?} {choice:?} seed {seed}: leftover content from {text:?}"
                );
                validate_calls(&p.calls, &ts, &allowed);
                if matches!(choice, ToolChoice::Function(_)) {
                    assert_eq!(p.calls.len(), 1);
                }
                // The streaming detector agrees with the one-shot parser.
                let (content, calls, _) = run_stream(f, &[&text]);
                assert_eq!(
                    (content.trim(), calls.len()),
                    ("", p.calls.len()),
                    "{label} {f:?}: {text:?}"
                );
                total += 1;
            }
        }
    }
    eprintln!("{total} forced tool-call generations parsed and validated");
}

#[test]
fn control_token_markers_are_forced_as_tokens() {
    let v = common::llama_with_markers();
    let g = ToolCallConstraint::build(
        ToolFormat::MistralJson,
        &tools(),
        &ToolChoice::Required,
        &v.tok,
        false,
        JsonOptions::default(),
    )
    .expect("build");
    let tool_calls = v.tok.token_id("[TOOL_CALLS]").expect("marker token");
    let g = Arc::new(g);
    let mut m = hearth_grammar::Matcher::new(v.mask.clone(), g.clone());
    let mask = m.compute_mask().clone();
    assert_eq!(
        mask.iter().collect::<Vec<_>>(),
        vec![tool_calls],
        "only the [TOOL_CALLS] token may start the output"
    );
    // Its text spelled with ordinary tokens is not the marker.
    let bracket = v.tok.token_id("[").expect("[");
    assert!(!m.is_allowed(bracket));
    m.accept_token(tool_calls).expect("accepted");
    assert!(m.is_allowed(bracket), "the JSON list follows the marker");
}

#[test]
fn constraint_errors() {
    let ts = tools();
    let tok = &common::qwen2().tok;
    let o = JsonOptions::default();
    assert!(matches!(
        ToolCallConstraint::build(
            ToolFormat::Hermes,
            &ts,
            &ToolChoice::Function("nope".into()),
            tok,
            true,
            o
        ),
        Err(ToolError::UnknownFunction(_))
    ));
    assert!(matches!(
        ToolCallConstraint::build(ToolFormat::Hermes, &[], &ToolChoice::Required, tok, true, o),
        Err(ToolError::NoTools)
    ));
    assert!(matches!(
        ToolCallConstraint::build(ToolFormat::Hermes, &ts, &ToolChoice::Auto, tok, true, o),
        Err(ToolError::NotConstrained)
    ));
    assert!(matches!(
        ToolCallConstraint::build(ToolFormat::Hermes, &ts, &ToolChoice::None, tok, true, o),
        Err(ToolError::NotConstrained)
    ));
    let bad = vec![Tool {
        name: "f".into(),
        description: None,
        parameters: json!({"type": "object", "not": {}}),
    }];
    match ToolCallConstraint::build(
        ToolFormat::Hermes,
        &bad,
        &ToolChoice::Required,
        tok,
        true,
        o,
    ) {
        Err(ToolError::Schema { name, source }) => {
            assert_eq!(name, "f");
            assert_eq!(source.keyword(), "not");
        }
        other => panic!("{other:?}"),
    }
    // `$ref`s resolve inside each tool's own schema.
    let with_refs = vec![
        Tool {
            name: "a".into(),
            description: None,
            parameters: json!({"$defs": {"x": {"type": "integer"}}, "type": "object", "properties": {"v": {"$ref": "#/$defs/x"}}, "required": ["v"]}),
        },
        Tool {
            name: "b".into(),
            description: None,
            parameters: json!({"$defs": {"x": {"type": "string"}}, "type": "object", "properties": {"v": {"$ref": "#/$defs/x"}}, "required": ["v"]}),
        },
    ];
    let g = ToolCallConstraint::build(
        ToolFormat::Generic,
        &with_refs,
        &ToolChoice::Required,
        tok,
        true,
        o,
    )
    .expect("build");
    let st = g.start_state();
    let ok = |s: &str| {
        g.advance_bytes(&st, s.as_bytes())
            .is_some_and(|x| g.state_is_complete(&x))
    };
    assert!(ok(r#"{"name":"a","arguments":{"v":1}}"#));
    assert!(ok(r#"{"name":"b","arguments":{"v":"s"}}"#));
    assert!(!ok(r#"{"name":"a","arguments":{"v":"s"}}"#));
    assert!(!ok(r#"{"name":"b","arguments":{"v":1}}"#));
}
