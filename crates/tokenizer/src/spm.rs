//! SentencePiece BPE (llama.cpp `llm_tokenizer_spm_session`).
//!
//! The text (spaces already replaced by `▁`) starts as one symbol per
//! character. Every adjacent pair whose concatenation is a token is queued by
//! that token's score; the best (ties: leftmost) is merged, and its new
//! neighbours are queued, until nothing is left. Merged symbols are always
//! tokens; a single character without a token becomes its UTF-8 bytes as
//! `<0xXX>` tokens. (llama.cpp's `rev_merge` re-segmentation can therefore
//! never trigger and is not reproduced.) Where a byte has no token at all,
//! llama.cpp throws; the unknown token is used here instead.

use crate::Tokenizer;
use std::cmp::Ordering;
use std::collections::BinaryHeap;

#[derive(Clone, Copy)]
struct Symbol {
    start: usize,
    len: usize,
    prev: usize,
    next: usize,
}
const NONE: usize = usize::MAX;

/// A queued merge; 16 bytes, since on long inputs the heap's size decides
/// the speed.
struct Bigram {
    score: f32,
    left: u32,
    right: u32,
    size: u32,
}

impl PartialEq for Bigram {
    fn eq(&self, other: &Self) -> bool {
        self.cmp(other) == Ordering::Equal
    }
}
impl Eq for Bigram {}
impl PartialOrd for Bigram {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}
impl Ord for Bigram {
    /// Higher score first, then the leftmost (llama.cpp
    /// `llm_bigram_spm::comparator`). NaN scores compare equal, so a hostile
    /// vocabulary can reorder merges but not break the heap.
    fn cmp(&self, other: &Self) -> Ordering {
        self.score.partial_cmp(&other.score).unwrap_or(Ordering::Equal).then(other.left.cmp(&self.left))
    }
}

pub(crate) fn tokenize(tok: &Tokenizer, text: &str, out: &mut Vec<u32>) {
    if text.len() > u32::MAX as usize / 2 {
        return;
    }
    let mut symbols: Vec<Symbol> = Vec::with_capacity(text.len());
    for (i, (start, ch)) in text.char_indices().enumerate() {
        symbols.push(Symbol { start, len: ch.len_utf8(), prev: if i == 0 { NONE } else { i - 1 }, next: i + 1 });
    }
    if let Some(last) = symbols.last_mut() {
        last.next = NONE;
    }
    let mut heap = BinaryHeap::new();
    let try_add = |symbols: &[Symbol], heap: &mut BinaryHeap<Bigram>, l: usize, r: usize| {
        if l == NONE || r == NONE {
            return;
        }
        let (a, b) = (symbols[l], symbols[r]);
        let piece = &text[a.start..a.start + a.len + b.len];
        if let Some(&id) = tok.token_to_id.get(piece) {
            heap.push(Bigram { score: tok.tokens[id as usize].score, left: l as u32, right: r as u32, size: piece.len() as u32 });
        }
    };
    for i in 1..symbols.len() {
        try_add(&symbols, &mut heap, i - 1, i);
    }
    while let Some(bg) = heap.pop() {
        let (l, r) = (bg.left as usize, bg.right as usize);
        if symbols[l].len == 0 || symbols[r].len == 0 || symbols[l].len + symbols[r].len != bg.size as usize {
            continue;
        }
        symbols[l].len += symbols[r].len;
        symbols[r].len = 0;
        let next = symbols[r].next;
        symbols[l].next = next;
        if next != NONE {
            symbols[next].prev = l;
        }
        try_add(&symbols, &mut heap, symbols[l].prev, l);
        try_add(&symbols, &mut heap, l, next);
    }
    let mut i = if symbols.is_empty() { NONE } else { 0 };
    while i != NONE {
        let s = symbols[i];
        let piece = &text[s.start..s.start + s.len];
        match tok.token_to_id.get(piece) {
            Some(&id) => out.push(id),
            None => {
                for &b in piece.as_bytes() {
                    if let Some(id) = tok.byte_token(b).or(tok.special.unk) {
                        out.push(id);
                    }
                }
            }
        }
        i = s.next;
    }
}
