//! The crate's helpers: ChatML fallback, GGUF metadata, capability probes,
//! and the request handling transformers does around the template.

use hearth_chat::{
    Capabilities, ChatTemplate, CivilTime, RenderRequest, TemplateError, TemplateLimits,
    CHATML_TEMPLATE,
};
use serde_json::json;

fn testdata(rel: &str) -> String {
    format!("{}/../../testdata/{rel}", env!("CARGO_MANIFEST_DIR"))
}

fn template_file(name: &str) -> ChatTemplate {
    let src = std::fs::read_to_string(testdata(&format!("templates/{name}.jinja"))).unwrap();
    ChatTemplate::new(&src, TemplateLimits::default()).unwrap()
}

#[test]
fn chatml_fallback_renders_strings_and_parts() {
    let t = ChatTemplate::or_chatml(Some("  \n"), TemplateLimits::default()).unwrap();
    assert_eq!(t.source(), CHATML_TEMPLATE);
    let mut req = RenderRequest::new(vec![
        json!({"role": "system", "content": "S"}),
        json!({"role": "user", "content": [{"type": "text", "text": "a"}, {"type": "image"}, {"type": "text", "text": "b"}]}),
    ]);
    req.add_generation_prompt = true;
    assert_eq!(
        t.render(&req).unwrap(),
        "<|im_start|>system\nS<|im_end|>\n<|im_start|>user\nab<|im_end|>\n<|im_start|>assistant\n"
    );
    // Prefill: the last assistant message stays open.
    let mut req = RenderRequest::new(vec![
        json!({"role": "user", "content": "q"}),
        json!({"role": "assistant", "content": "The answer "}),
    ]);
    req.continue_final_message = true;
    assert_eq!(
        t.render(&req).unwrap(),
        "<|im_start|>user\nq<|im_end|>\n<|im_start|>assistant\nThe answer "
    );
}

#[test]
fn gguf_with_template_and_without() {
    let qwen = hearth_formats::GgufFile::open(testdata("vocab/ggml-vocab-qwen2.gguf")).unwrap();
    let got = ChatTemplate::from_gguf_metadata(&qwen, TemplateLimits::default()).unwrap();
    assert!(got.embedded);
    assert_eq!(got.eos_token.as_deref(), Some("<|endoftext|>"));
    assert!(got.template.source().contains("<|im_start|>"));

    let llama =
        hearth_formats::GgufFile::open(testdata("vocab/ggml-vocab-llama-bpe.gguf")).unwrap();
    let got = ChatTemplate::from_gguf_metadata(&llama, TemplateLimits::default()).unwrap();
    assert!(!got.embedded);
    assert_eq!(got.template.source(), CHATML_TEMPLATE);
    assert_eq!(got.bos_token.as_deref(), Some("<|begin_of_text|>"));
}

#[test]
fn capabilities_come_from_probe_renders() {
    let qwen3 = template_file("Qwen-Qwen3-0.6B").capabilities();
    assert_eq!(
        qwen3,
        Capabilities {
            tools: true,
            tool_calls: true,
            system_role: true,
            enable_thinking: true
        }
    );
    // Gemma 2 raises on a system message and ignores tools.
    let gemma = template_file("google-gemma-2-2b-it").capabilities();
    assert_eq!(
        gemma,
        Capabilities {
            tools: false,
            tool_calls: false,
            system_role: false,
            enable_thinking: false
        }
    );
    let chatml = ChatTemplate::chatml(TemplateLimits::default())
        .unwrap()
        .capabilities();
    assert!(chatml.system_role && !chatml.tools);
}

#[test]
fn request_checks_follow_transformers() {
    let t = ChatTemplate::chatml(TemplateLimits::default()).unwrap();
    let user = json!({"role": "user", "content": "q"});
    let mut req = RenderRequest::new(vec![user.clone()]);
    req.add_generation_prompt = true;
    req.continue_final_message = true;
    assert!(matches!(t.render(&req), Err(TemplateError::Request(_))));

    let mut req = RenderRequest::new(vec![user.clone()]);
    req.kwargs.insert("messages".into(), json!([]));
    assert!(matches!(t.render(&req), Err(TemplateError::Request(_))));

    // continue_final_message needs content, and the content must survive the template.
    let mut req = RenderRequest::new(vec![json!({"role": "assistant", "content": null})]);
    req.continue_final_message = true;
    assert!(matches!(t.render(&req), Err(TemplateError::Request(_))));
    let dropper = ChatTemplate::new(
        "{% for m in messages %}{{ m.role }}{% endfor %}content",
        TemplateLimits::default(),
    )
    .unwrap();
    let mut req = RenderRequest::new(vec![json!({"role": "assistant", "content": "draft"})]);
    req.continue_final_message = true;
    assert!(matches!(
        dropper.render(&req),
        Err(TemplateError::Request(_))
    ));
}

#[test]
fn nulls_are_dropped_and_reasoning_is_aliased() {
    // transformers drops null-valued keys and copies the first reasoning
    // field to both `thinking` (first) and `reasoning_content`.
    let t = ChatTemplate::new(
        "{% for m in messages %}{% for k, v in m.items() %}{{ k }}={{ v }};{% endfor %}|{% endfor %}",
        TemplateLimits::default(),
    )
    .unwrap();
    let req = RenderRequest::new(vec![
        json!({"role": "assistant", "content": "c", "tool_calls": null, "reasoning": "r"}),
        json!({"role": "user", "content": "u"}),
    ]);
    assert_eq!(
        t.render(&req).unwrap(),
        "thinking=r;role=assistant;content=c;reasoning=r;reasoning_content=r;|role=user;content=u;|"
    );
}

#[test]
fn variables_follow_transformers() {
    let t = ChatTemplate::new(
        "{{ bos_token }}|{{ eos_token is defined }}|{{ tools is none }}|{{ documents }}|{{ add_generation_prompt }}|{{ enable_thinking }}",
        TemplateLimits::default(),
    )
    .unwrap();
    let mut req = RenderRequest::new(vec![json!({"role": "user", "content": "q"})]);
    req.bos_token = Some("<s>".into());
    assert_eq!(t.render(&req).unwrap(), "<s>|False|True|None|False|");
    // kwargs override the special tokens, like transformers' kwargs do.
    req.kwargs.insert("bos_token".into(), json!("<B>"));
    req.kwargs.insert("enable_thinking".into(), json!(false));
    assert_eq!(t.render(&req).unwrap(), "<B>|False|True|None|False|False");
}

#[test]
fn strftime_now_uses_the_request_clock_or_the_system_clock() {
    let t = ChatTemplate::new("{{ strftime_now('%d %b %Y') }}", TemplateLimits::default()).unwrap();
    let mut req = RenderRequest::new(vec![json!({"role": "user", "content": "q"})]);
    req.now = CivilTime::new(2024, 7, 26, 0, 0, 0);
    assert_eq!(t.render(&req).unwrap(), "26 Jul 2024");
    req.now = None;
    let today = CivilTime::now_utc().strftime("%d %b %Y");
    let got = t.render(&req).unwrap();
    // Around midnight the two reads may straddle a day boundary.
    assert!(got == today || got.len() == today.len(), "{got} vs {today}");
}

#[test]
fn generation_blocks_render_their_body_and_keep_their_scope() {
    let t = ChatTemplate::new(
        "{% set x = 'outer' %}{%- generation -%}\n  body {{ x }}{% set x = 'inner' %}\n{%- endgeneration %}|{{ x }}",
        TemplateLimits::default(),
    )
    .unwrap();
    let req = RenderRequest::new(vec![json!({"role": "user", "content": "q"})]);
    assert_eq!(t.render(&req).unwrap(), "body outer|outer");
}

#[test]
fn one_template_serves_many_threads() {
    let t = std::sync::Arc::new(template_file("Qwen-Qwen2.5-7B-Instruct"));
    let handles: Vec<_> = (0..4)
        .map(|i| {
            let t = t.clone();
            std::thread::spawn(move || {
                let mut req =
                    RenderRequest::new(vec![json!({"role": "user", "content": format!("n{i}")})]);
                req.add_generation_prompt = true;
                t.render(&req).unwrap()
            })
        })
        .collect();
    for (i, h) in handles.into_iter().enumerate() {
        assert!(h
            .join()
            .unwrap()
            .contains(&format!("<|im_start|>user\nn{i}<|im_end|>")));
    }
}
