//! Merge-driven BPE (llama.cpp `llm_tokenizer_bpe_session`).
//!
//! Each pre-tokenized word starts as one symbol per character; the adjacent
//! pair with the lowest merge rank (ties: leftmost) is merged until no pair
//! has a rank. Symbols are tracked by token id: a merge's two parts must be
//! tokens (checked at load), so a symbol that is not a token can never take
//! part in another merge. A finished symbol that is not a token falls back to
//! byte tokens, and bytes without a token are dropped, as in llama.cpp.
//!
//! The cost is O(n log n) in the length of a word.

use crate::error::TokenizerError;
use crate::pretok::{PreTokenizer, PreType};
use crate::unicode;
use crate::Tokenizer;
use std::collections::{BinaryHeap, HashMap};
use std::hash::{BuildHasher, Hasher};

/// Marks a merge result that is not in the vocabulary.
const NOT_TOKEN: u32 = u32::MAX;

/// A fast hasher for the integer keys of the merge table and the tries.
/// Keys come from the (hostile) vocabulary file, so the state starts from a
/// per-process random seed: a file cannot be crafted to make all keys
/// collide. Each word is mixed with the splitmix64 finalizer, so every key
/// bit reaches the low bits the table indexes with.
#[derive(Clone, Copy)]
pub(crate) struct PairHasher(u64);

impl Hasher for PairHasher {
    fn finish(&self) -> u64 {
        self.0
    }
    fn write(&mut self, bytes: &[u8]) {
        for &b in bytes {
            self.write_u64(b as u64);
        }
    }
    fn write_u64(&mut self, x: u64) {
        let mut z = (self.0 ^ x).wrapping_add(0x9E37_79B9_7F4A_7C15);
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        self.0 = z ^ (z >> 31);
    }
}

/// Builds [`PairHasher`]s from the process seed.
#[derive(Clone, Copy, Debug)]
pub(crate) struct PairBuild(u64);

impl Default for PairBuild {
    fn default() -> PairBuild {
        static SEED: std::sync::OnceLock<u64> = std::sync::OnceLock::new();
        PairBuild(*SEED.get_or_init(|| std::collections::hash_map::RandomState::new().hash_one(0x5EED_u64)))
    }
}

impl BuildHasher for PairBuild {
    type Hasher = PairHasher;
    fn build_hasher(&self) -> PairHasher {
        PairHasher(self.0)
    }
}

/// Which llama.cpp session drives the BPE merges.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum BpeSession {
    Plain,
    /// `whitespace`: split on whitespace (dropped), optionally lowercase.
    Whitespace,
    /// `hybriddna`: text inside `<dna>...</dna>` becomes 6-mer tokens.
    HybridDna,
}

#[derive(Debug)]
pub(crate) struct Bpe {
    /// `(left id, right id)` -> `(rank, merged id or NOT_TOKEN)`.
    ranks: HashMap<u64, (u32, u32), PairBuild>,
    pretok: PreTokenizer,
    byte_encode: bool,
    gemma4: bool,
    session: BpeSession,
}

fn pair_key(a: u32, b: u32) -> u64 {
    ((a as u64) << 32) | b as u64
}

impl Bpe {
    pub fn new(
        merges: &[String],
        token_to_id: &HashMap<String, u32>,
        pretok: PreTokenizer,
        pre_type: PreType,
        session: BpeSession,
    ) -> Result<Bpe, TokenizerError> {
        let mut ranks = HashMap::with_capacity_and_hasher(merges.len(), PairBuild::default());
        let mut joined = String::new();
        for (i, m) in merges.iter().enumerate() {
            // llama.cpp splits at the first space after the first byte, so a
            // token may itself be a single space.
            let Some(p) = m.as_bytes().iter().skip(1).position(|&b| b == b' ').map(|p| p + 1) else {
                return Err(TokenizerError::MalformedMerge { index: i, merge: m.clone() });
            };
            let (first, second) = (&m[..p], &m[p + 1..]);
            let id = |part: &str| {
                token_to_id.get(part).copied().ok_or_else(|| TokenizerError::UnknownMergeToken {
                    index: i,
                    merge: m.clone(),
                    part: part.to_string(),
                })
            };
            let (a, b) = (id(first)?, id(second)?);
            joined.clear();
            joined.push_str(first);
            joined.push_str(second);
            let merged = token_to_id.get(joined.as_str()).copied();
            // Duplicate pairs keep their first (lowest) rank, like
            // `unordered_map::emplace`.
            ranks.entry(pair_key(a, b)).or_insert((i as u32, merged.unwrap_or(NOT_TOKEN)));
        }
        Ok(Bpe { ranks, pretok, byte_encode: pre_type.byte_encode(), gemma4: pre_type == PreType::Gemma4, session })
    }
}

/// Tokenizes one text fragment (no special tokens in it).
pub(crate) fn tokenize_text(tok: &Tokenizer, text: &str, out: &mut Vec<u32>) {
    let Some(bpe) = &tok.bpe else { return };
    match bpe.session {
        BpeSession::Plain => tokenize_plain(tok, bpe, text, out),
        BpeSession::Whitespace => {
            // llama.cpp `llm_tokenizer_whitespace_session`.
            let mut segment = String::new();
            for ch in text.chars() {
                if unicode::flags(ch as u32).is_whitespace() {
                    if !segment.is_empty() {
                        tokenize_plain(tok, bpe, &segment, out);
                        segment.clear();
                    }
                } else if tok.flags.lowercase {
                    segment.push(char::from_u32(unicode::to_lower(ch as u32)).unwrap_or(ch));
                } else {
                    segment.push(ch);
                }
            }
            if !segment.is_empty() {
                tokenize_plain(tok, bpe, &segment, out);
            }
        }
        BpeSession::HybridDna => tokenize_dna(tok, bpe, text, out),
    }
}

/// llama.cpp `llm_tokenizer_hybriddna_session`: plain BPE outside
/// `<dna>...</dna>`; inside, upper-cased 6-byte k-mers (the last one padded
/// with `A`), looked up with the reserved suffix U+E000, else `<oov>`.
fn tokenize_dna(tok: &Tokenizer, bpe: &Bpe, text: &str, out: &mut Vec<u32>) {
    const OPEN: &str = "<dna>";
    const CLOSE: &str = "</dna>";
    let (Some(begin), Some(end_id), Some(oov)) = (tok.token_id(OPEN), tok.token_id(CLOSE), tok.token_id("<oov>")) else {
        tokenize_plain(tok, bpe, text, out);
        return;
    };
    let mut pos = 0;
    while pos < text.len() {
        let Some(start) = text[pos..].find(OPEN).map(|s| s + pos) else {
            tokenize_plain(tok, bpe, &text[pos..], out);
            break;
        };
        if start > pos {
            tokenize_plain(tok, bpe, &text[pos..start], out);
        }
        out.push(begin);
        let content = start + OPEN.len();
        let close = text[content..].find(CLOSE).map(|e| e + content);
        let seq: Vec<u8> = text.as_bytes()[content..close.unwrap_or(text.len())].to_ascii_uppercase();
        for chunk in seq.chunks(6) {
            let mut kmer = chunk.to_vec();
            kmer.resize(6, b'A');
            let id = std::str::from_utf8(&kmer).ok().and_then(|k| tok.token_id(&format!("{k}\u{E000}")));
            out.push(id.unwrap_or(oov));
        }
        let Some(close) = close else { break };
        out.push(end_id);
        pos = close + CLOSE.len();
    }
}

#[derive(Clone, Copy)]
struct Symbol {
    start: u32,
    len: u32,
    prev: u32,
    next: u32,
    id: u32,
}
const NONE: u32 = u32::MAX;

/// A queued merge. Kept small (20 bytes) because on long words the heap
/// outgrows the CPU caches and its size decides the speed.
#[derive(Clone, Copy, PartialEq, Eq)]
struct Pair {
    rank: u32,
    left: u32,
    right: u32,
    size: u32,
    merged: u32,
}
impl Ord for Pair {
    /// Reversed, so that `BinaryHeap` pops the lowest rank, then the
    /// leftmost pair (llama.cpp `llm_bigram_bpe::comparator`).
    fn cmp(&self, o: &Self) -> std::cmp::Ordering {
        (o.rank, o.left).cmp(&(self.rank, self.left))
    }
}
impl PartialOrd for Pair {
    fn partial_cmp(&self, o: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(o))
    }
}

fn tokenize_plain(tok: &Tokenizer, bpe: &Bpe, text: &str, out: &mut Vec<u32>) {
    let mut symbols: Vec<Symbol> = Vec::new();
    let mut heap: BinaryHeap<Pair> = BinaryHeap::new();
    for word in bpe.pretok.split(text) {
        if word.is_empty() || word.len() > u32::MAX as usize / 2 {
            continue;
        }
        let whole = tok.token_to_id.get(word.as_str()).copied();
        if let Some(id) = whole {
            // `ignore_merges` takes a word that is a token as it is; Gemma 4
            // does the same for runs of newlines (llama.cpp #21343).
            if tok.flags.ignore_merges || (bpe.gemma4 && word.bytes().all(|b| b == b'\n')) {
                out.push(id);
                continue;
            }
        }
        symbols.clear();
        heap.clear();
        let mut buf = [0u8; 4];
        for (i, (start, ch)) in word.char_indices().enumerate() {
            let s = ch.encode_utf8(&mut buf);
            let id = tok.token_to_id.get(&*s).copied().unwrap_or(NOT_TOKEN);
            let i = i as u32;
            symbols.push(Symbol { start: start as u32, len: s.len() as u32, prev: if i == 0 { NONE } else { i - 1 }, next: i + 1, id });
        }
        if let Some(last) = symbols.last_mut() {
            last.next = NONE;
        }
        let add_pair = |symbols: &[Symbol], heap: &mut BinaryHeap<Pair>, l: u32, r: u32| {
            if l == NONE || r == NONE {
                return;
            }
            let (a, b) = (symbols[l as usize], symbols[r as usize]);
            if a.id == NOT_TOKEN || b.id == NOT_TOKEN {
                return;
            }
            if let Some(&(rank, merged)) = bpe.ranks.get(&pair_key(a.id, b.id)) {
                heap.push(Pair { rank, left: l, right: r, size: a.len + b.len, merged });
            }
        };
        for i in 1..symbols.len() as u32 {
            add_pair(&symbols, &mut heap, i - 1, i);
        }
        while let Some(p) = heap.pop() {
            let (l, r) = (p.left as usize, p.right as usize);
            let (ll, rl) = (symbols[l].len, symbols[r].len);
            // Outdated pair: one side merged away or grown since it was
            // queued (equivalent to llama.cpp's comparison of the texts,
            // because symbols only grow and a left symbol keeps its start).
            if ll == 0 || rl == 0 || ll + rl != p.size {
                continue;
            }
            symbols[l].len += rl;
            symbols[l].id = p.merged;
            symbols[r].len = 0;
            let next = symbols[r].next;
            symbols[l].next = next;
            if next != NONE {
                symbols[next as usize].prev = p.left;
            }
            add_pair(&symbols, &mut heap, symbols[l].prev, p.left);
            add_pair(&symbols, &mut heap, p.left, next);
        }
        for s in symbols.iter().filter(|s| s.len > 0) {
            if s.id != NOT_TOKEN {
                out.push(s.id);
                continue;
            }
            for &b in &word.as_bytes()[s.start as usize..(s.start + s.len) as usize] {
                let id = if bpe.byte_encode {
                    // llama.cpp looks the raw byte up as a one-byte token.
                    std::str::from_utf8(std::slice::from_ref(&b)).ok().and_then(|k| tok.token_id(k))
                } else {
                    tok.token_id(&format!("<0x{b:02X}>"))
                };
                if let Some(id) = id {
                    out.push(id);
                }
            }
        }
    }
}
