//! One Jinja2 behaviour per case, against transformers' own environment.
//!
//! `tools/chat/gen_reference.py` rendered each snippet in
//! `tests/reference/snippets.json` with the environment transformers
//! compiles chat templates in, and stored the output or the error. The
//! chat-template parity test only sees what real templates happen to use;
//! these pin the Python semantics (value spelling, string methods, filters,
//! tests, loops, whitespace control) one by one.

use std::path::Path;

use hearth_chat::{ChatTemplate, CivilTime, TemplateError, TemplateLimits};
use serde_json::Value as Json;

/// Snippets where MiniJinja cannot follow Jinja2, with the reason. The test
/// requires these to still differ, so a fix shows up as a failure here.
const KNOWN_DIFFERENCES: &[(&str, &str)] = &[
    (
        "markup_plus_escapes",
        "Python's Markup.__add__ HTML-escapes the other operand of `+` even with autoescape off; \
         MiniJinja only escapes when auto-escaping is on, which would also change `~` and macro results",
    ),
    (
        "string_repeat_and_length",
        "Jinja2's `wordcount` filter is not in MiniJinja without its `wordcount` feature (it pulls a Unicode table)",
    ),
    (
        "generator_single_pass",
        "Jinja2's map/select/... return one-shot Python generators; here they are re-iterable \
         (they keep generator truthiness, tojson and len() failures)",
    ),
    (
        "dict_attribute_prefers_method",
        "Jinja2's `d.items` (no call) finds the dict method before the key; MiniJinja cannot tell \
         `d.items` from `d['items']` and returns the key",
    ),
    (
        "namespace_underscore_set_error",
        "transformers' TemplateNamespace refuses `{% set ns._y = ... %}`; MiniJinja's namespace \
         assignment cannot be intercepted (underscore names are refused at namespace() creation)",
    ),
    (
        "percent_operator_formatting",
        "Python's `str % args` formatting is an operator MiniJinja does not overload",
    ),
];

#[test]
fn snippets_match_jinja2() {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/reference/snippets.json");
    let cases: Vec<Json> = serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap();
    let now = CivilTime::new(2025, 3, 14, 9, 26, 53).unwrap();
    let mut failures = Vec::new();
    let mut known_seen = Vec::new();
    for case in &cases {
        let name = case["name"].as_str().unwrap();
        let src = case["template"].as_str().unwrap();
        let vars = case["vars"].as_object().unwrap();
        let got = ChatTemplate::new(src, TemplateLimits::default())
            .and_then(|t| t.render_vars(vars, Some(now)));
        let why = if let Some(out) = case.get("output").and_then(Json::as_str) {
            match &got {
                Ok(s) if s == out => None,
                other => Some(format!("want {out:?}, got {other:?}")),
            }
        } else {
            let ty = case["error"]["type"].as_str().unwrap();
            let msg = case["error"]["message"].as_str().unwrap();
            match (&got, ty) {
                (Err(TemplateError::Raised(m)), "TemplateError") if m == msg => None,
                (Err(TemplateError::Raised(_)), _) | (_, "TemplateError") | (Ok(_), _) => {
                    Some(format!("want {ty}({msg:?}), got {got:?}"))
                }
                (Err(TemplateError::Render { .. } | TemplateError::Syntax { .. }), _) => None,
                (Err(e), _) => Some(format!("want {ty}({msg:?}), got {e:?}")),
            }
        };
        match (why, KNOWN_DIFFERENCES.iter().any(|(n, _)| *n == name)) {
            (None, true) => failures.push(format!(
                "{name}: listed as a known difference but now matches"
            )),
            (None, false) => {}
            (Some(_), true) => known_seen.push(name),
            (Some(why), false) => failures.push(format!("{name}: {why}")),
        }
    }
    eprintln!(
        "snippets: {} cases, {} match, {} known differences",
        cases.len(),
        cases.len() - failures.len() - known_seen.len(),
        known_seen.len()
    );
    for f in &failures {
        eprintln!("MISMATCH {f}");
    }
    assert!(
        failures.is_empty(),
        "{} snippet(s) differ from Jinja2",
        failures.len()
    );
    assert_eq!(
        known_seen.len(),
        KNOWN_DIFFERENCES.len(),
        "a known difference was not exercised"
    );
}
