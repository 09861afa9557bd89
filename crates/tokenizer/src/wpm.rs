//! WordPiece (llama.cpp `llm_tokenizer_wpm_session`).
//!
//! BERT normalisation: optionally reduce every code point to the first code
//! point of its NFD decomposition and drop combining marks (strip accents),
//! lowercase, drop control characters, split on whitespace, and make every
//! punctuation character, ASCII symbol and CJK ideograph a word of its own.
//! Each word gets a leading `▁` (llama.cpp's converter stores word-initial
//! pieces with `▁` and continuation pieces bare) and is covered greedily by
//! the longest matching tokens; a word that cannot be covered becomes the
//! unknown token.
//!
//! Decoding lowercased or accent-stripped text cannot give back the input:
//! `decode(encode(x))` is not `x` for such text, as in llama.cpp.

use crate::unicode;
use crate::Tokenizer;

/// The CJK ranges BERT isolates (llama.cpp `is_chinese_char`, which keeps
/// HuggingFace's 0x2B920 lower bound for Extension E).
fn is_chinese_char(cp: u32) -> bool {
    matches!(cp,
        0x4E00..=0x9FFF | 0x3400..=0x4DBF | 0x20000..=0x2A6DF | 0x2A700..=0x2B73F | 0x2B740..=0x2B81F
        | 0x2B920..=0x2CEAF | 0xF900..=0xFAFF | 0x2F800..=0x2FA1F)
}

fn preprocess(tok: &Tokenizer, text: &str) -> Vec<String> {
    let mut words: Vec<String> = vec![String::new()];
    for ch in text.chars() {
        let mut cp = ch as u32;
        if tok.flags.strip_accents {
            cp = unicode::nfd_first(cp);
        }
        let f = unicode::flags(cp);
        if f.is_whitespace() {
            if !words.last().is_some_and(|w| w.is_empty()) {
                words.push(String::new());
            }
            continue;
        }
        if cp == 0 || cp == 0xFFFD || f.is_control() {
            continue;
        }
        if tok.flags.strip_accents && f.is_mark() {
            continue;
        }
        let c = if tok.flags.lowercase { unicode::to_lower(cp) } else { cp };
        let c = char::from_u32(c).unwrap_or('\u{FFFD}');
        if f.is_punctuation() || (cp < 0x7F && f.is_symbol()) || is_chinese_char(cp) {
            if !words.last().is_some_and(|w| w.is_empty()) {
                words.push(String::new());
            }
            if let Some(w) = words.last_mut() {
                w.push(c);
            }
            words.push(String::new());
        } else if let Some(w) = words.last_mut() {
            w.push(c);
        }
    }
    if words.last().is_some_and(|w| w.is_empty()) {
        words.pop();
    }
    words
}

pub(crate) fn tokenize(tok: &Tokenizer, text: &str, out: &mut Vec<u32>) {
    for word in preprocess(tok, text) {
        if word.is_empty() {
            continue;
        }
        let w = format!("\u{2581}{word}");
        let bytes = w.as_bytes();
        let n = bytes.len();
        let before = out.len();
        let mut i = 0;
        while i < n {
            // Longest match first; byte offsets as in llama.cpp, where a cut
            // inside a character simply matches no token.
            let mut matched = false;
            let mut j = n.min(i + tok.max_token_len + 1);
            while j > i {
                if let Some(id) = w.get(i..j).and_then(|s| tok.token_id(s)) {
                    out.push(id);
                    matched = true;
                    i = j;
                    break;
                }
                j -= 1;
            }
            if !matched {
                out.truncate(before);
                break;
            }
        }
        if out.len() == before {
            if let Some(unk) = tok.special.unk {
                out.push(unk);
            }
        }
    }
}
