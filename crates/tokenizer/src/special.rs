//! Splitting special tokens out of the text before tokenization (llama.cpp
//! `tokenizer_st_partition`).
//!
//! Special tokens are taken one at a time, longest text first; each one
//! splits every remaining text fragment at all its (non-overlapping,
//! left-to-right) occurrences. A token with the LSTRIP attribute eats the
//! ASCII whitespace before it, RSTRIP the whitespace after it. Control and
//! unknown tokens only take part when `parse_special` is set.
//!
//! llama.cpp scans the text once per special token. An Aho-Corasick pass
//! first finds which special tokens occur at all, and only those are
//! processed, in the same order: fragments are substrings of the text, so a
//! token absent from the text cannot occur in any fragment and skipping it
//! changes nothing.

use crate::{TokenAttr, Tokenizer};

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Fragment {
    /// Byte range of the original text.
    Text(usize, usize),
    Token(u32),
}

/// C `isspace` in the C locale.
fn is_space(b: u8) -> bool {
    b == b' ' || (0x09..=0x0D).contains(&b)
}

pub(crate) fn partition(tok: &Tokenizer, text: &str, parse_special: bool) -> Vec<Fragment> {
    if text.is_empty() {
        return Vec::new();
    }
    let mut frags = vec![Fragment::Text(0, text.len())];
    let Some(matcher) = &tok.special_matcher else { return frags };
    let mut present = vec![false; tok.special_cache.len()];
    let mut any = false;
    for m in matcher.find_overlapping_iter(text) {
        present[m.pattern().as_usize()] = true;
        any = true;
    }
    if !any {
        return frags;
    }
    let skip = TokenAttr(TokenAttr::CONTROL.0 | TokenAttr::UNKNOWN.0);
    let bytes = text.as_bytes();
    for (k, &id) in tok.special_cache.iter().enumerate() {
        if !present[k] {
            continue;
        }
        let data = &tok.tokens[id as usize];
        if !parse_special && data.attr.has(skip) {
            continue;
        }
        let needle = data.text.as_str();
        let lstrip = data.attr.has(TokenAttr::LSTRIP);
        let rstrip = data.attr.has(TokenAttr::RSTRIP);
        let mut next = Vec::with_capacity(frags.len() + 2);
        for f in frags {
            let Fragment::Text(mut off, end) = f else {
                next.push(f);
                continue;
            };
            loop {
                let Some(rel) = text[off..end].find(needle) else {
                    if end > off {
                        next.push(Fragment::Text(off, end));
                    }
                    break;
                };
                let m = off + rel;
                if m > off {
                    let mut left_end = m;
                    if lstrip {
                        while left_end > off && is_space(bytes[left_end - 1]) {
                            left_end -= 1;
                        }
                    }
                    if left_end > off {
                        next.push(Fragment::Text(off, left_end));
                    }
                }
                next.push(Fragment::Token(id));
                let mut right = m + needle.len();
                if right >= end {
                    break;
                }
                if rstrip {
                    while right < end && is_space(bytes[right]) {
                        right += 1;
                    }
                }
                off = right;
            }
        }
        frags = next;
    }
    frags
}
