//! SentencePiece unigram (llama.cpp `llm_tokenizer_ugm`), used by T5.
//!
//! The text is first normalised with the model's precompiled character map
//! (a XOR-compressed double array of byte prefixes and a table of
//! NUL-terminated replacements), spaces become `▁` and are optionally
//! prefixed or merged; then a Viterbi pass over the bytes picks the
//! tokenization with the highest total score. A code point no token covers
//! scores the minimum token score minus 10 and becomes the unknown token;
//! runs of unknowns collapse into one.
//!
//! The character map is hostile input: every array access is bounds-checked,
//! and where llama.cpp would throw (an index outside the map, an
//! unterminated replacement) the prefix is treated as unmapped.

use crate::bpe::PairBuild;
use crate::error::TokenizerError;
use crate::{TokenAttr, TokenData, Tokenizer};
use std::collections::HashMap;

/// A byte trie: edges in one hash map keyed by `(node, byte)`.
#[derive(Debug, Default)]
pub(crate) struct Trie {
    edges: HashMap<u64, u32, PairBuild>,
    values: Vec<Option<u32>>,
}

impl Trie {
    pub fn new() -> Trie {
        Trie { edges: HashMap::default(), values: vec![None] }
    }
    pub fn insert(&mut self, key: &[u8], value: u32) {
        let mut node = 0u32;
        for &b in key {
            let k = ((node as u64) << 8) | b as u64;
            node = match self.edges.get(&k) {
                Some(&n) => n,
                None => {
                    let n = self.values.len() as u32;
                    self.values.push(None);
                    self.edges.insert(k, n);
                    n
                }
            };
        }
        self.values[node as usize] = Some(value);
    }
    pub const ROOT: u32 = 0;
    pub fn child(&self, node: u32, b: u8) -> Option<u32> {
        self.edges.get(&(((node as u64) << 8) | b as u64)).copied()
    }
    pub fn value(&self, node: u32) -> Option<u32> {
        self.values.get(node as usize).copied().flatten()
    }
    /// Length of the longest key that is a prefix of `s` (0 if none).
    pub fn longest_prefix(&self, s: &[u8]) -> usize {
        // llama.cpp `naive_trie::get_longest_prefix` returns the depth of the
        // deepest node on the path, valued or not.
        let mut node = Self::ROOT;
        let mut depth = 0;
        for &b in s {
            match self.child(node, b) {
                Some(n) => {
                    node = n;
                    depth += 1;
                }
                None => break,
            }
        }
        depth
    }
}

#[derive(Debug)]
pub(crate) struct Ugm {
    token_matcher: Trie,
    user_defined: Trie,
    unknown_score: f64,
    xcda: Vec<u32>,
    replacements: Vec<u8>,
}

impl Ugm {
    pub fn new(tokens: &[TokenData], charsmap: Vec<u8>) -> Result<Ugm, TokenizerError> {
        let (mut xcda, mut replacements) = (Vec::new(), Vec::new());
        if !charsmap.is_empty() {
            if charsmap.len() < 4 {
                return Err(TokenizerError::BadCharsMap { reason: "too short for its size header" });
            }
            let blob = u32::from_le_bytes([charsmap[0], charsmap[1], charsmap[2], charsmap[3]]) as usize;
            if blob.checked_add(4).is_none_or(|end| end >= charsmap.len()) {
                return Err(TokenizerError::BadCharsMap { reason: "double array extends past the map" });
            }
            xcda = charsmap[4..4 + blob].chunks_exact(4).map(|c| u32::from_le_bytes([c[0], c[1], c[2], c[3]])).collect();
            replacements = charsmap[4 + blob..].to_vec();
        }
        let mut token_matcher = Trie::new();
        let mut user_defined = Trie::new();
        let mut min_score = f32::MAX;
        for (id, t) in tokens.iter().enumerate() {
            if t.attr.has(TokenAttr::NORMAL) {
                min_score = min_score.min(t.score);
            }
            if t.attr.has(TokenAttr(TokenAttr::NORMAL.0 | TokenAttr::USER_DEFINED.0 | TokenAttr::UNUSED.0)) {
                token_matcher.insert(t.text.as_bytes(), id as u32);
            }
            if t.attr.has(TokenAttr::USER_DEFINED) {
                user_defined.insert(t.text.as_bytes(), 0);
            }
        }
        Ok(Ugm { token_matcher, user_defined, unknown_score: (min_score - 10.0) as f64, xcda, replacements })
    }

    fn node(&self, i: usize) -> Option<u32> {
        self.xcda.get(i).copied()
    }

    /// The replacement for the longest prefix of `input[off..]` the
    /// character map knows, and the bytes it consumes.
    fn charsmap_prefix(&self, input: &[u8], off: usize) -> Option<(&[u8], usize)> {
        let base = |n: u32| ((n >> 10) << ((n & (1 << 9)) >> 6)) as usize;
        let mut index = base(self.node(0)?);
        let mut best: Option<(usize, usize)> = None;
        for (k, &c) in input[off..].iter().enumerate() {
            if c == 0 {
                break;
            }
            index ^= c as usize;
            let Some(n) = self.node(index) else { break };
            if n & ((1 << 31) | 0xFF) != c as u32 {
                break;
            }
            let leaf = (n >> 8) & 1 == 1;
            index ^= base(n);
            if leaf {
                let Some(v) = self.node(index) else { break };
                best = Some((k + 1, (v & ((1 << 31) - 1)) as usize));
            }
        }
        let (len, at) = best?;
        let rest = self.replacements.get(at..)?;
        let end = rest.iter().position(|&b| b == 0)?;
        Some((&rest[..end], len))
    }

    fn normalize(&self, tok: &Tokenizer, input: &[u8]) -> Vec<u8> {
        let space: &[u8] = if tok.flags.escape_whitespaces { "\u{2581}".as_bytes() } else { b" " };
        let prepend = !tok.flags.treat_whitespace_as_suffix && tok.flags.add_space_prefix;
        let append = tok.flags.treat_whitespace_as_suffix && tok.flags.add_space_prefix;
        let merge = tok.flags.remove_extra_whitespaces;
        let mut out = Vec::with_capacity(input.len() * 3);
        let mut space_prepended = false;
        let mut in_word = false;
        let mut off = 0;
        while off < input.len() {
            let (piece, consumed): (&[u8], usize) = {
                let ud = self.user_defined.longest_prefix(&input[off..]);
                if ud > 0 {
                    (&input[off..off + ud], ud)
                } else if let Some(r) = self.charsmap_prefix(input, off) {
                    r
                } else {
                    match utf8_char_len(&input[off..]) {
                        Some(n) => (&input[off..off + n], n),
                        None => ("\u{FFFD}".as_bytes(), 1),
                    }
                }
            };
            for &c in piece {
                if c != b' ' {
                    if !in_word {
                        in_word = true;
                        if (prepend && !space_prepended) || merge {
                            out.extend_from_slice(space);
                            space_prepended = true;
                        }
                    }
                    out.push(c);
                } else {
                    in_word = false;
                    if !merge {
                        out.extend_from_slice(space);
                    }
                }
            }
            off += consumed.max(1);
        }
        if append {
            out.extend_from_slice(space);
        }
        out
    }
}

/// The length of the UTF-8 sequence at the start of `s`, with llama.cpp's
/// `unicode_cpt_from_utf8` validation (lead byte and continuation bytes only).
fn utf8_char_len(s: &[u8]) -> Option<usize> {
    let b0 = *s.first()?;
    let n = match b0 {
        0x00..=0x7F => return Some(1),
        0x80..=0xBF => return None,
        0xC0..=0xDF => 2,
        0xE0..=0xEF => 3,
        0xF0..=0xF7 => 4,
        _ => return None,
    };
    (s.len() >= n && s[1..n].iter().all(|&b| b & 0xC0 == 0x80)).then_some(n)
}

/// llama.cpp `unicode_len_utf8`: the length a lead byte announces.
fn len_utf8(b: u8) -> usize {
    match b >> 4 {
        0xC | 0xD => 2,
        0xE => 3,
        0xF => 4,
        _ => 1,
    }
}

pub(crate) fn tokenize(tok: &Tokenizer, text: &str, out: &mut Vec<u32>) {
    let Some(ugm) = &tok.ugm else { return };
    let norm = ugm.normalize(tok, text.as_bytes());
    let len = norm.len();
    if len == 0 {
        return;
    }
    let unk = tok.special.unk;
    #[derive(Clone, Copy)]
    struct Best {
        id: Option<u32>,
        from: usize,
        score: f64,
    }
    let mut best = vec![Best { id: unk, from: 0, score: -f64::MAX }; len + 1];
    best[0].score = 0.0;
    let mut off = 0;
    while off < len {
        let n_units = len_utf8(norm[off]).min(len - off);
        let cur = best[off];
        let mut single = false;
        let mut node = ugm.token_matcher.child(Trie::ROOT, norm[off]);
        let mut p = off + 1;
        while let Some(nd) = node {
            if p > len {
                break;
            }
            if let Some(id) = ugm.token_matcher.value(nd) {
                if p - off == n_units {
                    single = true;
                }
                let t = &tok.tokens[id as usize];
                // User-defined tokens score 0 so they win (llama.cpp).
                let s = if t.attr.has(TokenAttr::USER_DEFINED) { 0.0 } else { t.score as f64 };
                let challenger = cur.score + s;
                if challenger > best[p].score {
                    best[p] = Best { id: Some(id), from: off, score: challenger };
                }
            }
            node = if p < len { ugm.token_matcher.child(nd, norm[p]) } else { None };
            p += 1;
        }
        if !single {
            let challenger = cur.score + ugm.unknown_score;
            let p = off + n_units;
            if challenger > best[p].score {
                best[p] = Best { id: unk, from: off, score: challenger };
            }
        }
        off += n_units;
    }
    let start = out.len();
    let mut prev_unknown = false;
    let mut at = len;
    loop {
        let b = best[at];
        let is_unknown = b.id == unk;
        if !(prev_unknown && is_unknown) {
            if let Some(id) = b.id {
                out.push(id);
            }
        }
        if b.from == 0 {
            break;
        }
        prev_unknown = is_unknown;
        at = b.from;
    }
    out[start..].reverse();
}
