//! Turning upstream text into short, non-sensitive summaries.
//!
//! Upstream error bodies are not under our control: OpenAI's 401 body quotes
//! a masked prefix of the key ("Incorrect API key provided: sk-proj-ab***"),
//! proxies return whole HTML pages, and 400 bodies may quote the prompt. A
//! summary keeps only the error message (when the body is JSON), strips
//! control characters, removes anything that looks like the configured key,
//! and is cut to [`MAX_SUMMARY`] characters.

use hearth_guard::Secret;
use serde_json::Value;

pub(crate) const MAX_SUMMARY: usize = 200;

const REDACTED: &str = "[redacted]";

/// Removes the key, and any whitespace-separated word that starts with the
/// key's first 8 characters (masked echoes of it), from `s`.
pub(crate) fn redact(s: &str, key: Option<&Secret>) -> String {
    let Some(key) = key.map(Secret::expose).filter(|k| !k.is_empty()) else {
        return s.to_string();
    };
    let s = s.replace(key, REDACTED);
    let prefix: String = key.chars().take(8).collect();
    if key.chars().count() < 12 || !s.contains(prefix.as_str()) {
        return s;
    }
    let mut out = String::with_capacity(s.len());
    let mut word = String::new();
    let flush = |w: &mut String, out: &mut String| {
        if w.contains(prefix.as_str()) {
            out.push_str(REDACTED);
        } else {
            out.push_str(w);
        }
        w.clear();
    };
    for c in s.chars() {
        if c.is_whitespace() || c == '"' || c == '\'' {
            flush(&mut word, &mut out);
            out.push(c);
        } else {
            word.push(c);
        }
    }
    flush(&mut word, &mut out);
    out
}

/// One line, no control characters, at most `MAX_SUMMARY` characters.
pub(crate) fn tidy_summary(s: &str) -> String {
    let mut out = String::new();
    let mut n = 0;
    let mut last_space = true;
    for c in s.chars() {
        let c = if c.is_control() || c.is_whitespace() { ' ' } else { c };
        if c == ' ' && last_space {
            continue;
        }
        last_space = c == ' ';
        if n == MAX_SUMMARY {
            out.push('…');
            return out.trim_end().to_string();
        }
        out.push(c);
        n += 1;
    }
    out.trim_end().to_string()
}

/// The message of an OpenAI-style error value: `{"error": {"message",
/// "type", "code"}}`, `{"error": "text"}`, `{"message": ...}` or
/// `{"detail": ...}` (FastAPI-based servers).
pub(crate) fn error_message(v: &Value) -> Option<String> {
    let e = v.get("error").unwrap_or(v);
    if let Some(s) = e.as_str() {
        return Some(s.to_string());
    }
    let msg = e.get("message").or_else(|| e.get("detail")).and_then(Value::as_str);
    let kind = e.get("type").and_then(Value::as_str);
    let code = e.get("code").and_then(|c| c.as_str().map(str::to_string).or_else(|| c.as_i64().map(|n| n.to_string())));
    let mut parts = Vec::new();
    if let Some(k) = kind {
        parts.push(k.to_string());
    }
    if let Some(c) = code {
        parts.push(c);
    }
    match (msg, parts.is_empty()) {
        (Some(m), true) => Some(m.to_string()),
        (Some(m), false) => Some(format!("{m} ({})", parts.join(", "))),
        (None, false) => Some(parts.join(", ")),
        (None, true) => None,
    }
}

/// A summary of an error response body.
pub(crate) fn summarize_body(body: &[u8], content_type: &str, key: Option<&Secret>) -> String {
    if body.is_empty() {
        return "(empty body)".into();
    }
    if let Ok(v) = serde_json::from_slice::<Value>(body) {
        if let Some(m) = error_message(&v) {
            return tidy_summary(&redact(&m, key));
        }
    }
    let text = String::from_utf8_lossy(body);
    let head = text.trim_start().get(..64).unwrap_or(text.trim_start()).to_ascii_lowercase();
    if content_type.contains("html") || head.starts_with("<!doctype html") || head.starts_with("<html") {
        // A proxy or captive-portal page: its text is noise and may contain
        // anything; say what it was, not what it said.
        return format!("HTML page ({} bytes)", body.len());
    }
    tidy_summary(&redact(&text, key))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn key_and_masked_echoes_are_removed() {
        let k = Secret::new("sk-proj-canary0123456789");
        let r = redact("bad key sk-proj-canary0123456789 or 'sk-proj-ca***789'.", Some(&k));
        assert!(!r.contains("canary") && !r.contains("sk-proj-ca"), "{r}");
        assert_eq!(r, "bad key [redacted] or '[redacted]'.");
        assert_eq!(redact("nothing here", Some(&k)), "nothing here");
        assert_eq!(redact("no key set", None), "no key set");
    }

    #[test]
    fn summaries_are_short_single_line_messages() {
        let k = Secret::new("sk-canary-0123456789");
        let body = br#"{"error":{"message":"Incorrect API key provided: sk-canary-0123456789.\nSee docs","type":"invalid_request_error","code":"invalid_api_key"}}"#;
        let s = summarize_body(body, "application/json", Some(&k));
        assert_eq!(s, "Incorrect API key provided: [redacted]. See docs (invalid_request_error, invalid_api_key)");

        let long = "x".repeat(5000);
        let s = summarize_body(long.as_bytes(), "text/plain", None);
        assert_eq!(s.chars().count(), MAX_SUMMARY + 1);

        let s = summarize_body(b"<!DOCTYPE html><html><body>secret prompt text</body></html>", "", None);
        assert_eq!(s, "HTML page (59 bytes)");
        assert_eq!(summarize_body(b"", "", None), "(empty body)");
        assert_eq!(summarize_body(br#"{"detail":"Not Found"}"#, "application/json", None), "Not Found");
        assert_eq!(summarize_body(br#"{"error":"overloaded"}"#, "application/json", None), "overloaded");
        assert_eq!(summarize_body(b"\x00\x01bad\tgateway\r\n", "", None), "bad gateway");
    }
}
