//! Byte parity with Hugging Face transformers' `apply_chat_template`.
//!
//! `tools/chat/gen_reference.py` rendered every template in
//! `testdata/templates/*.jinja` and every `tokenizer.chat_template` in
//! `testdata/vocab/*.gguf` with transformers' own renderer for the
//! conversations in `tests/reference/conversations.json`, and stored each
//! outcome (the prompt, or the error it raised) in
//! `tests/reference/expected/<template>.json`. This test renders the same
//! inputs and requires the same outcome: the identical string, the same
//! `raise_exception` message, a request error where transformers raised a
//! `ValueError`, or a render error where Jinja2 failed.

use std::path::{Path, PathBuf};

use hearth_chat::{ChatTemplate, CivilTime, RenderRequest, TemplateError, TemplateLimits};
use serde_json::Value as Json;

/// Cases where MiniJinja cannot produce transformers' bytes. Each is
/// checked to still differ, and to differ only in the documented way.
///
/// meetkai-functionary-medium-v3.1 writes each tool as
/// `"...'\n"|safe + t["function"] | tojson()`. In Python, `|safe` makes a
/// `Markup`, and `Markup + str` HTML-escapes the `str` even though
/// auto-escaping is off, so transformers emits the tool JSON with `&#34;`
/// for every quote. MiniJinja escapes on `+` only when auto-escaping is
/// on, and turning it on would also escape `~` concatenations and macro
/// results, which Jinja2 leaves alone. Here the JSON comes out unescaped.
const KNOWN_DIFFERENCES: &[(&str, &str)] = &[
    ("meetkai-functionary-medium-v3.1", "tools_available"),
    ("meetkai-functionary-medium-v3.1", "tool_call_roundtrip"),
    (
        "meetkai-functionary-medium-v3.1",
        "tool_call_string_arguments",
    ),
    ("meetkai-functionary-medium-v3.1", "parallel_tool_calls"),
];

/// Undoes MarkupSafe's escaping (the only documented difference).
fn unescape_markup(s: &str) -> String {
    s.replace("&#34;", "\"")
        .replace("&#39;", "'")
        .replace("&lt;", "<")
        .replace("&gt;", ">")
        .replace("&amp;", "&")
}

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

fn read_json(path: &Path) -> Json {
    let text = std::fs::read_to_string(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

fn clock(iso: &str) -> CivilTime {
    // "2025-03-14T09:26:53"
    let n: Vec<i64> = iso
        .split(|c: char| !c.is_ascii_digit())
        .filter(|s| !s.is_empty())
        .map(|s| s.parse().unwrap())
        .collect();
    CivilTime::new(
        n[0] as i32,
        n[1] as u8,
        n[2] as u8,
        n[3] as u8,
        n[4] as u8,
        n[5] as u8,
    )
    .unwrap()
}

fn request(conv: &Json, bos: Option<&str>, eos: Option<&str>, now: CivilTime) -> RenderRequest {
    let mut req = RenderRequest::new(conv["messages"].as_array().unwrap().clone());
    req.tools = conv.get("tools").and_then(|t| t.as_array()).cloned();
    req.documents = conv.get("documents").and_then(|t| t.as_array()).cloned();
    req.add_generation_prompt = conv
        .get("add_generation_prompt")
        .and_then(Json::as_bool)
        .unwrap_or(false);
    req.continue_final_message = conv
        .get("continue_final_message")
        .and_then(Json::as_bool)
        .unwrap_or(false);
    req.bos_token = bos.map(str::to_string);
    req.eos_token = eos.map(str::to_string);
    if let Some(kw) = conv.get("kwargs").and_then(Json::as_object) {
        req.kwargs = kw.clone();
    }
    req.now = Some(now);
    req
}

/// Loads the template a reference file names: a `.jinja` file, or the
/// template embedded in a GGUF (through `from_gguf_metadata`, which must
/// also find the same bos/eos strings the Python side read).
fn load(doc: &Json) -> ChatTemplate {
    let rel = doc["template"].as_str().unwrap();
    let path = root().join(rel);
    if rel.ends_with(".gguf") {
        let gguf = hearth_formats::GgufFile::open(&path).unwrap();
        let got = ChatTemplate::from_gguf_metadata(&gguf, TemplateLimits::default()).unwrap();
        assert!(got.embedded, "{rel}: template not found");
        assert_eq!(
            got.bos_token.as_deref(),
            doc["bos_token"].as_str(),
            "{rel}: bos"
        );
        assert_eq!(
            got.eos_token.as_deref(),
            doc["eos_token"].as_str(),
            "{rel}: eos"
        );
        got.template
    } else {
        let src = std::fs::read_to_string(&path).unwrap();
        ChatTemplate::new(&src, TemplateLimits::default()).unwrap_or_else(|e| panic!("{rel}: {e}"))
    }
}

/// Why an outcome differs from the reference, or `None` if it matches.
fn compare(expected: &Json, got: &Result<String, TemplateError>) -> Option<String> {
    if let Some(out) = expected.get("output").and_then(Json::as_str) {
        return match got {
            Ok(s) if s == out => None,
            Ok(s) => {
                let at = s
                    .bytes()
                    .zip(out.bytes())
                    .position(|(a, b)| a != b)
                    .unwrap_or(s.len().min(out.len()));
                let lo = at.saturating_sub(60);
                let ctx = |x: &str| {
                    x.get(lo..(at + 60).min(x.len()))
                        .unwrap_or("<non-char boundary>")
                        .to_string()
                };
                Some(format!(
                    "output differs at byte {at}:\n   want {:?}\n   got  {:?}",
                    ctx(out),
                    ctx(s)
                ))
            }
            Err(e) => Some(format!("expected output, got error: {e}")),
        };
    }
    let err = &expected["error"];
    let ty = err["type"].as_str().unwrap_or_default();
    let msg = err["message"].as_str().unwrap_or_default();
    match (ty, got) {
        ("TemplateError", Err(TemplateError::Raised(m))) if m == msg => None,
        ("TemplateError", other) => {
            Some(format!("expected raise_exception({msg:?}), got {other:?}"))
        }
        ("ValueError", Err(TemplateError::Request(_))) => None,
        // Jinja2's own failures (TypeError, UndefinedError, SecurityError, ...)
        // must be engine failures here too, not a limit or a request error.
        (_, Err(TemplateError::Render { .. } | TemplateError::Syntax { .. })) => None,
        (_, Err(e)) => Some(format!("expected {ty}: {msg}, got {e:?}")),
        (_, Ok(s)) => Some(format!(
            "expected {ty}: {msg}, got output {:?}",
            &s[..s.len().min(200)]
        )),
    }
}

#[test]
fn renders_match_transformers() {
    let refdir = root().join("crates/chat/tests/reference");
    let convs = read_json(&refdir.join("conversations.json"));
    let now = clock(convs["clock"].as_str().unwrap());
    let convs = convs["conversations"].as_array().unwrap();

    let mut files: Vec<PathBuf> = std::fs::read_dir(refdir.join("expected"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|x| x == "json"))
        .collect();
    files.sort();
    assert!(
        files.len() >= 70,
        "reference set is incomplete: {} files",
        files.len()
    );

    let (mut outputs, mut errors, mut known, mut failures) = (0, 0, 0, Vec::new());
    let mut max_fuel = (0u64, String::new());
    for file in &files {
        let doc = read_json(file);
        let name = file.file_stem().unwrap().to_string_lossy().to_string();
        let tmpl = load(&doc);
        let (bos, eos) = (doc["bos_token"].as_str(), doc["eos_token"].as_str());
        let cases = doc["cases"].as_array().unwrap();
        assert_eq!(cases.len(), convs.len(), "{name}: stale reference");
        for (case, conv) in cases.iter().zip(convs) {
            assert_eq!(
                case["conversation"], conv["name"],
                "{name}: stale reference"
            );
            let got = tmpl
                .render_with_stats(&request(conv, bos, eos, now))
                .map(|(s, stats)| {
                    if stats.fuel_used > max_fuel.0 {
                        max_fuel = (
                            stats.fuel_used,
                            format!("{name} / {}", conv["name"].as_str().unwrap_or_default()),
                        );
                    }
                    s
                });
            let conv_name = conv["name"].as_str().unwrap();
            if KNOWN_DIFFERENCES.contains(&(name.as_str(), conv_name)) {
                let want = case["output"].as_str().map(unescape_markup);
                match (&got, compare(case, &got)) {
                    (_, None) => failures.push(format!(
                        "{name} / {conv_name}: known difference now matches"
                    )),
                    (Ok(s), Some(_)) if Some(s) == want.as_ref() => known += 1,
                    (_, Some(why)) => failures.push(format!(
                        "{name} / {conv_name}: beyond the known difference: {why}"
                    )),
                }
                continue;
            }
            match compare(case, &got) {
                None if case.get("output").is_some() => outputs += 1,
                None => errors += 1,
                Some(why) => failures.push(format!("{name} / {conv_name}: {why}")),
            }
        }
    }
    let total = files.len() * convs.len();
    eprintln!(
        "parity: {} templates x {} conversations = {total}; {outputs} identical renders, {errors} matching errors, \
         {known} known differences, {} mismatches",
        files.len(),
        convs.len(),
        failures.len()
    );
    eprintln!(
        "most fuel used by one render: {} ({})",
        max_fuel.0, max_fuel.1
    );
    for f in &failures {
        eprintln!("MISMATCH {f}");
    }
    assert!(
        failures.is_empty(),
        "{} of {total} cases differ from transformers",
        failures.len()
    );
    assert_eq!(
        known,
        KNOWN_DIFFERENCES.len(),
        "a known difference was not exercised"
    );
    // The default budget must leave real templates ample headroom.
    assert!(
        max_fuel.0 * 20 < TemplateLimits::default().fuel,
        "default fuel too tight: {max_fuel:?}"
    );
}
