//! Hostile templates fail closed, inside the limits, with a typed error.
//!
//! Chat templates ship inside model files, so they are untrusted code. Each
//! case here is a known way to attack a template engine: unbounded work,
//! unbounded memory, unbounded recursion, reaching files or host objects.

use hearth_chat::{ChatTemplate, RenderFailure, RenderRequest, TemplateError, TemplateLimits};
use serde_json::json;

fn render(src: &str) -> Result<String, TemplateError> {
    render_with(src, TemplateLimits::default())
}

fn render_with(src: &str, limits: TemplateLimits) -> Result<String, TemplateError> {
    let t = ChatTemplate::new(src, limits)?;
    let mut req = RenderRequest::new(vec![json!({"role": "user", "content": "hi"})]);
    req.add_generation_prompt = true;
    t.render(&req)
}

#[test]
fn self_recursive_macro_hits_the_recursion_limit() {
    let r = render("{% macro f(n) %}{{ f(n + 1) }}{% endmacro %}{{ f(0) }}");
    assert_eq!(r, Err(TemplateError::RecursionLimit));
}

#[test]
fn macro_recursing_through_caller_hits_the_recursion_limit() {
    let r = render("{% macro m() %}{{ caller() }}{% endmacro %}{% macro r() %}{% call m() %}{{ r() }}{% endcall %}{% endmacro %}{{ r() }}");
    assert_eq!(r, Err(TemplateError::RecursionLimit));
}

#[test]
fn recursive_loop_hits_the_recursion_limit() {
    let r = render("{% for x in [1] recursive %}{{ loop([1]) }}{% endfor %}");
    assert_eq!(r, Err(TemplateError::RecursionLimit));
}

#[test]
fn giant_range_is_refused() {
    match render("{% for i in range(10**9) %}x{% endfor %}") {
        Err(TemplateError::Render {
            kind: RenderFailure::InvalidOperation,
            message,
            ..
        }) => {
            assert!(message.contains("range has too many elements"), "{message}")
        }
        other => panic!("{other:?}"),
    }
}

#[test]
fn nested_loop_bomb_runs_out_of_fuel() {
    let r = render("{% for a in range(1000) %}{% for b in range(1000) %}{% for c in range(1000) %}x{% endfor %}{% endfor %}{% endfor %}");
    assert_eq!(
        r,
        Err(TemplateError::OutOfFuel {
            limit: TemplateLimits::default().fuel
        })
    );
}

#[test]
fn string_multiply_bomb_is_refused_before_allocating() {
    for src in [
        "{{ 'a' * 10**9 }}",
        "{% set s = 'a' * 10**9 %}ok",
        "{{ raise_exception('x' * 10**9) }}",
    ] {
        assert_eq!(
            render(src),
            Err(TemplateError::OutOfFuel {
                limit: TemplateLimits::default().fuel
            }),
            "{src}"
        );
    }
}

#[test]
fn string_doubling_runs_out_of_fuel() {
    let r = render("{% set ns = namespace(s='x') %}{% for i in range(64) %}{% set ns.s = ns.s ~ ns.s %}{% endfor %}{{ ns.s|length }}");
    assert_eq!(
        r,
        Err(TemplateError::OutOfFuel {
            limit: TemplateLimits::default().fuel
        })
    );
}

#[test]
fn python_method_bombs_pay_fuel_up_front() {
    // str.replace / str.join / str.split are ours; each must pay for what it builds.
    for src in [
        "{{ ('a' * 1000).replace('a', 'b' * 100000) }}",
        "{{ ('x' * 100000).join(range(100000)|map('string')) }}",
        "{% set s = 'a,' * 1000000 %}{{ s.split(',')|length }}",
    ] {
        assert_eq!(
            render(src),
            Err(TemplateError::OutOfFuel {
                limit: TemplateLimits::default().fuel
            }),
            "{src}"
        );
    }
}

#[test]
fn huge_output_hits_the_output_limit() {
    let limits = TemplateLimits {
        max_output_bytes: 1 << 20,
        ..TemplateLimits::default()
    };
    let r = render_with(
        "{% for i in range(100000) %}{{ 'x' * 1000 }}{% endfor %}",
        limits,
    );
    assert_eq!(r, Err(TemplateError::OutputTooLarge { limit: 1 << 20 }));
    // The same bound holds for output made by a filter.
    let r = render_with("{{ ('a\n' * 100000)|indent(200) }}", limits);
    assert!(
        matches!(
            r,
            Err(TemplateError::OutputTooLarge { .. } | TemplateError::OutOfFuel { .. })
        ),
        "{r:?}"
    );
}

#[test]
fn no_template_can_be_loaded() {
    for src in [
        "{% include '/etc/passwd' %}",
        "{% import 'macros.j2' as m %}{{ m.x() }}",
        "{% from '/etc/passwd' import x %}",
        "{% extends '/etc/passwd' %}",
    ] {
        match ChatTemplate::new(src, TemplateLimits::default()) {
            Err(TemplateError::Syntax { message, .. }) => {
                assert!(message.contains("unknown statement"), "{message}")
            }
            other => panic!("{src}: {other:?}"),
        }
    }
}

#[test]
fn python_object_escapes_find_nothing() {
    // Jinja2 sandbox escapes go through dunder attributes of Python
    // objects. Here there are no Python objects: each lookup is undefined,
    // and using the undefined fails.
    for src in [
        "{{ ''.__class__.__mro__ }}",
        "{{ cycler.__init__.__globals__ }}",
        "{{ raise_exception.__globals__.os }}",
        "{{ namespace.__init__.__globals__ }}",
        "{{ messages.__class__.__base__.__subclasses__() }}",
    ] {
        match render(src) {
            Err(TemplateError::Render {
                kind: RenderFailure::Undefined,
                ..
            }) => {}
            other => panic!("{src}: {other:?}"),
        }
    }
    // Printed on their own they are empty, as Jinja2's Undefined is.
    assert_eq!(
        render("[{{ ''.__class__ }}][{{ range.__self__ }}][{{ self }}][{{ config }}]").unwrap(),
        "[][][][]"
    );
    // Jinja2 names that MiniJinja would otherwise provide are gone.
    assert!(matches!(
        render("{{ debug() }}"),
        Err(TemplateError::Render {
            kind: RenderFailure::UnknownName,
            ..
        })
    ));
}

#[test]
fn mutating_methods_do_not_exist() {
    for src in [
        "{% set l = [] %}{% for i in range(100000) %}{% set _ = l.append(i) %}{% endfor %}{{ l|length }}",
        "{% set d = {} %}{{ d.update({'a': 1}) }}",
        "{{ messages.pop() }}",
    ] {
        match render(src) {
            Err(TemplateError::Render { kind: RenderFailure::UnknownName, message, .. }) => {
                assert!(message.contains("unknown method"), "{message}")
            }
            other => panic!("{src}: {other:?}"),
        }
    }
}

#[test]
fn deep_nesting_in_the_source_is_refused_at_compile_time() {
    let ifs = format!(
        "{}x{}",
        "{% if true %}".repeat(1000),
        "{% endif %}".repeat(1000)
    );
    let parens = format!("{{{{ {}1{} }}}}", "(".repeat(10000), ")".repeat(10000));
    for src in [ifs, parens] {
        assert_eq!(
            ChatTemplate::new(&src, TemplateLimits::default()).unwrap_err(),
            TemplateError::RecursionLimit
        );
    }
}

#[test]
fn self_referencing_and_deep_values_fail_to_format() {
    for src in [
        "{% set ns = namespace() %}{% set ns.me = ns %}{{ ns }}",
        "{% set ns = namespace() %}{% set ns.me = ns %}{{ ns|tojson }}",
        "{% set ns = namespace(v=[]) %}{% for i in range(1000) %}{% set ns.v = [ns.v] %}{% endfor %}{{ ns.v|tojson }}",
        "{% set ns = namespace(v=[]) %}{% for i in range(1000) %}{% set ns.v = [ns.v] %}{% endfor %}{{ ns.v }}",
    ] {
        match render(src) {
            Err(TemplateError::Render { message, .. }) => assert!(message.contains("nested too deeply"), "{message}"),
            other => panic!("{src}: {other:?}"),
        }
    }
}

#[test]
fn lazily_doubled_lists_are_paid_for_when_formatted() {
    // `a + a` is lazy and free in MiniJinja, so 26 doublings make a
    // 67-million-item list for a few fuel. Printing or serialising it walks
    // every item, and our formatters charge per item.
    let doubled = "{% set a = a + a %}".repeat(26);
    for tail in ["{{ a }}", "{{ a|tojson }}", "{{ a|join }}"] {
        let src = format!("{{% set a = [1] %}}{doubled}{tail}");
        let limits = TemplateLimits {
            fuel: 100_000,
            ..TemplateLimits::default()
        };
        assert_eq!(
            render_with(&src, limits),
            Err(TemplateError::OutOfFuel { limit: 100_000 }),
            "{tail}"
        );
    }
}

#[test]
fn raise_exception_is_a_typed_error_and_stops_the_render() {
    let r =
        render("before{% for i in range(10) %}{{ raise_exception('stop ' ~ i) }}{% endfor %}after");
    assert_eq!(r, Err(TemplateError::Raised("stop 0".into())));
    // Non-string messages are converted like Python's str().
    assert_eq!(
        render("{{ raise_exception(['a', 1]) }}"),
        Err(TemplateError::Raised("['a', 1]".into()))
    );
}

#[test]
fn oversized_source_is_refused_before_parsing() {
    let src = "a".repeat(TemplateLimits::default().max_source_bytes + 1);
    assert_eq!(
        ChatTemplate::new(&src, TemplateLimits::default()).unwrap_err(),
        TemplateError::SourceTooLarge {
            len: src.len(),
            limit: TemplateLimits::default().max_source_bytes
        }
    );
}

#[test]
fn hostile_request_data_is_refused() {
    let t = ChatTemplate::chatml(TemplateLimits::default()).unwrap();
    // JSON nested beyond what serde_json would parse.
    let mut deep = json!("x");
    for _ in 0..200 {
        deep = json!([deep]);
    }
    let req = RenderRequest::new(vec![
        json!({"role": "user", "content": "hi", "extra": deep}),
    ]);
    assert!(matches!(t.render(&req), Err(TemplateError::Request(_))));
    let req = RenderRequest::new(vec![json!("not an object")]);
    assert!(matches!(t.render(&req), Err(TemplateError::Request(_))));
    assert!(matches!(
        t.render(&RenderRequest::new(vec![])),
        Err(TemplateError::Request(_))
    ));
}

#[test]
fn default_limits_fit_a_long_real_conversation() {
    // 200 turns of 2 KB through a real template with tools: far more than
    // any reference case, and it must still render.
    let src = std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../../testdata/templates/Qwen3.5-4B.jinja"
    ))
    .unwrap();
    let t = ChatTemplate::new(&src, TemplateLimits::default()).unwrap();
    let text = "word ".repeat(400);
    let mut messages = vec![json!({"role": "system", "content": "sys"})];
    for i in 0..200 {
        let role = if i % 2 == 0 { "user" } else { "assistant" };
        messages.push(json!({"role": role, "content": format!("{i} {text}")}));
    }
    messages.push(json!({"role": "user", "content": "last"}));
    let mut req = RenderRequest::new(messages);
    req.tools = Some(vec![
        json!({"type": "function", "function": {"name": "f", "description": "d",
        "parameters": {"type": "object", "properties": {"x": {"type": "string"}}}}}),
    ]);
    req.add_generation_prompt = true;
    let (out, stats) = t.render_with_stats(&req).unwrap();
    assert!(out.len() > 400_000);
    eprintln!(
        "200-turn conversation: {} bytes, {} fuel",
        out.len(),
        stats.fuel_used
    );
    assert!(
        stats.fuel_used * 4 < TemplateLimits::default().fuel,
        "{stats:?}"
    );
}
