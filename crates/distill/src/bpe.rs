//! Training a byte-level BPE tokenizer (GPT-2 style) and writing it as GGUF
//! `tokenizer.ggml.*` metadata that `hearth_tokenizer::Tokenizer::from_gguf`
//! (and llama.cpp) load unchanged.
//!
//! * Pre-tokenizer: `tokenizer.ggml.pre = "smollm"` (SmolLM's): every digit
//!   is split off on its own (`\p{N}`), then GPT-2's regex
//!   `'s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+`
//!   splits the rest. Chosen over `gpt-2` because llama.cpp gives `gpt-2`
//!   `clean_spaces` (detokenizing drops the space in `a !`), so text would
//!   not round-trip; `smollm` has it off. Single digits also spare a small
//!   model from learning thousands of number tokens. The split is
//!   implemented here as a scanner following llama.cpp's
//!   `unicode_regex_split_custom_gpt2`; letters and numbers are Rust's
//!   `char::is_alphabetic` / `is_numeric`,
//!   which differ from `\p{L}` / `\p{N}` only on rare code points (combining
//!   marks, letter-like numerals). A mismatch there only changes which merges
//!   are learned, never the correctness of encoding, which Hearth's own
//!   tokenizer does.
//! * Bytes map to printable characters as GPT-2's `bytes_to_unicode` does,
//!   so every token is a string and no byte sequence is unencodable.
//! * Merges are learned by frequency over distinct pre-tokens (Sennrich et
//!   al., 2016), counting pairs incrementally; ties go to the pair with the
//!   smaller symbol ids, so training is deterministic.
//! * Vocabulary order: the 256 byte tokens, the merged tokens in merge
//!   order, then the special tokens (`CONTROL` type).
//!
//! Deliberately absent: Unicode normalisation, dropout, and the
//! SentencePiece model family.

use crate::error::{DistillError, Result};
use hearth_formats::{GgufFile, GgufWriter, MetaValue};
use std::cmp::Reverse;
use std::collections::{BinaryHeap, HashMap};

/// The ChatML template (the common Hugging Face `chat_template`).
pub const CHATML_TEMPLATE: &str = "{% for message in messages %}{{'<|im_start|>' + message['role'] + '\\n' + message['content'] + '<|im_end|>' + '\\n'}}{% endfor %}{% if add_generation_prompt %}{{ '<|im_start|>assistant\\n' }}{% endif %}";

/// The `tokenizer.ggml.pre` this trainer's splitting reproduces.
pub const PRE: &str = "smollm";

/// GGUF `tokenizer.ggml.token_type` values (llama.cpp `llama_token_type`).
const TYPE_NORMAL: i32 = 1;
const TYPE_CONTROL: i32 = 3;

/// GPT-2's byte-to-character table: printable Latin-1 bytes stand for
/// themselves, the other 68 bytes for U+0100 onwards in byte order.
pub fn byte_to_char() -> [char; 256] {
    let mut table = ['\0'; 256];
    let mut next = 256u32;
    for b in 0..256u32 {
        let printable = (33..=126).contains(&b) || (161..=172).contains(&b) || (174..=255).contains(&b);
        let c = if printable {
            b
        } else {
            next += 1;
            next - 1
        };
        table[b as usize] = char::from_u32(c).unwrap_or('\u{FFFD}');
    }
    table
}

/// Splits text as the [`PRE`] pre-tokenizer does: each digit alone, then
/// GPT-2's regex over the text between digits.
pub fn pretokenize(text: &str) -> Vec<&str> {
    let mut out = Vec::new();
    let mut start = 0;
    for (i, c) in text.char_indices() {
        if c.is_numeric() {
            if start < i {
                out.extend(pretokenize_gpt2(&text[start..i]));
            }
            out.push(&text[i..i + c.len_utf8()]);
            start = i + c.len_utf8();
        }
    }
    if start < text.len() {
        out.extend(pretokenize_gpt2(&text[start..]));
    }
    out
}

/// Splits text like GPT-2's pre-tokenizer regex (see the module docs).
pub fn pretokenize_gpt2(text: &str) -> Vec<&str> {
    let chars: Vec<(usize, char)> = text.char_indices().collect();
    let n = chars.len();
    let at = |i: usize| if i < n { Some(chars[i].1) } else { None };
    let byte = |i: usize| if i < n { chars[i].0 } else { text.len() };
    let letter = |c: Option<char>| c.is_some_and(char::is_alphabetic);
    let number = |c: Option<char>| c.is_some_and(|c| c.is_numeric() && !c.is_alphabetic());
    let space = |c: Option<char>| c.is_some_and(char::is_whitespace);
    let other = |c: Option<char>| c.is_some() && !letter(c) && !number(c) && !space(c);
    let mut out = Vec::new();
    let mut i = 0;
    while i < n {
        let start = i;
        let c = chars[i].1;
        // Contractions: 's 't 'm 'd 're 've 'll (case-sensitive in GPT-2).
        if c == '\'' {
            let (c1, c2) = (at(i + 1), at(i + 2));
            let len = match (c1, c2) {
                (Some('s' | 't' | 'm' | 'd'), _) => 2,
                (Some('r'), Some('e')) | (Some('v'), Some('e')) | (Some('l'), Some('l')) => 3,
                _ => 0,
            };
            if len > 0 {
                i += len;
                out.push(&text[byte(start)..byte(i)]);
                continue;
            }
        }
        let sp = c == ' ';
        let first = if sp { at(i + 1) } else { Some(c) };
        let class: Option<&dyn Fn(Option<char>) -> bool> = if letter(first) {
            Some(&letter)
        } else if number(first) {
            Some(&number)
        } else if other(first) {
            Some(&other)
        } else {
            None
        };
        if let Some(class) = class {
            i += usize::from(sp);
            while class(at(i)) {
                i += 1;
            }
            out.push(&text[byte(start)..byte(i)]);
            continue;
        }
        // Whitespace: a run followed by more text leaves its last character
        // to start the next piece (`\s+(?!\S)`), a lone one stands alone.
        let mut run = 0;
        while space(at(i + run)) {
            run += 1;
        }
        i += if run > 1 && i + run < n { run - 1 } else { run.max(1) };
        out.push(&text[byte(start)..byte(i)]);
    }
    out
}

/// Settings of [`train`].
#[derive(Clone, Debug)]
pub struct BpeConfig {
    /// Total vocabulary, special tokens included.
    pub vocab_size: usize,
    /// Stop merging when the best pair occurs fewer times than this.
    pub min_frequency: u64,
    /// Appended after the learned tokens, in this order.
    pub special_tokens: Vec<String>,
}

/// A trained vocabulary.
#[derive(Clone, Debug, PartialEq)]
pub struct Bpe {
    /// Token texts in the byte-level alphabet (GGUF `tokenizer.ggml.tokens`).
    pub tokens: Vec<String>,
    pub token_types: Vec<i32>,
    /// `"left right"` pairs in rank order (GGUF `tokenizer.ggml.merges`).
    pub merges: Vec<String>,
}

impl Bpe {
    pub fn token_id(&self, text: &str) -> Option<u32> {
        self.tokens.iter().position(|t| t == text).map(|i| i as u32)
    }

    /// GGUF tokenizer metadata: `gpt2` model, [`PRE`] pre-tokenizer, BOS,
    /// EOS and padding ids (by token text), no automatic BOS/EOS, and a chat
    /// template.
    pub fn gguf_metadata(&self, bos: &str, eos: &str, pad: &str, chat_template: &str) -> Result<Vec<(String, MetaValue)>> {
        let id = |t: &str| self.token_id(t).ok_or_else(|| DistillError::Config(format!("special token {t} is not in the vocabulary")));
        Ok(vec![
            ("tokenizer.ggml.model".into(), "gpt2".into()),
            ("tokenizer.ggml.pre".into(), PRE.into()),
            ("tokenizer.ggml.tokens".into(), MetaValue::from(self.tokens.clone())),
            ("tokenizer.ggml.token_type".into(), MetaValue::from(self.token_types.clone())),
            ("tokenizer.ggml.merges".into(), MetaValue::from(self.merges.clone())),
            ("tokenizer.ggml.bos_token_id".into(), id(bos)?.into()),
            ("tokenizer.ggml.eos_token_id".into(), id(eos)?.into()),
            ("tokenizer.ggml.padding_token_id".into(), id(pad)?.into()),
            ("tokenizer.ggml.add_bos_token".into(), false.into()),
            ("tokenizer.ggml.add_eos_token".into(), false.into()),
            ("tokenizer.chat_template".into(), chat_template.into()),
        ])
    }

    /// A vocabulary-only GGUF image of `metadata` (for loading the tokenizer
    /// without a model).
    pub fn vocab_gguf(metadata: &[(String, MetaValue)]) -> Result<GgufFile> {
        let mut w = GgufWriter::new();
        for (k, v) in metadata {
            w.add_meta(k.clone(), v.clone())?;
        }
        let bytes = w.write_to_vec::<Vec<u8>>(&[])?;
        Ok(GgufFile::from_bytes(bytes)?)
    }

    /// Encodes one pre-token by applying merges lowest rank first (what
    /// llama.cpp's BPE does); for tests of agreement with Hearth's tokenizer.
    pub fn encode_piece(&self, piece: &str) -> Vec<u32> {
        let table = byte_to_char();
        let ids: HashMap<&str, u32> = self.tokens.iter().enumerate().map(|(i, t)| (t.as_str(), i as u32)).collect();
        let ranks: HashMap<(&str, &str), usize> =
            self.merges.iter().enumerate().filter_map(|(r, m)| m.split_once(' ').map(|(a, b)| ((a, b), r))).collect();
        let mut syms: Vec<String> = piece.bytes().map(|b| table[b as usize].to_string()).collect();
        loop {
            let best = (0..syms.len().saturating_sub(1))
                .filter_map(|i| ranks.get(&(syms[i].as_str(), syms[i + 1].as_str())).map(|&r| (r, i)))
                .min();
            let Some((_, i)) = best else { break };
            let merged = format!("{}{}", syms[i], syms[i + 1]);
            syms.splice(i..i + 2, [merged]);
        }
        syms.iter().map(|s| ids.get(s.as_str()).copied().unwrap_or(u32::MAX)).collect()
    }
}

/// Learns a byte-level BPE vocabulary from `texts`.
pub fn train<'a>(texts: impl IntoIterator<Item = &'a str>, cfg: &BpeConfig) -> Result<Bpe> {
    let n_special = cfg.special_tokens.len();
    if cfg.vocab_size < 256 + n_special {
        return Err(DistillError::Config(format!("vocab_size {} is below 256 byte tokens + {n_special} special tokens", cfg.vocab_size)));
    }
    // Distinct pre-tokens with their counts, in a deterministic order.
    let mut counts: HashMap<&str, u64> = HashMap::new();
    for t in texts {
        for p in pretokenize(t) {
            *counts.entry(p).or_insert(0) += 1;
        }
    }
    let mut words: Vec<(&str, u64)> = counts.into_iter().collect();
    words.sort_unstable_by(|a, b| a.0.cmp(b.0));
    let freq: Vec<i64> = words.iter().map(|w| w.1 as i64).collect();
    let mut syms: Vec<Vec<u32>> = words.iter().map(|w| w.0.bytes().map(u32::from).collect()).collect();

    let table = byte_to_char();
    let mut tokens: Vec<String> = table.iter().map(|c| c.to_string()).collect();
    let mut by_text: HashMap<String, u32> = tokens.iter().enumerate().map(|(i, t)| (t.clone(), i as u32)).collect();
    let mut merges = Vec::new();

    let mut pair_count: HashMap<(u32, u32), i64> = HashMap::new();
    let mut pair_words: HashMap<(u32, u32), Vec<u32>> = HashMap::new();
    for (wi, s) in syms.iter().enumerate() {
        for p in s.windows(2) {
            *pair_count.entry((p[0], p[1])).or_insert(0) += freq[wi];
            pair_words.entry((p[0], p[1])).or_default().push(wi as u32);
        }
    }
    let mut heap: BinaryHeap<(i64, Reverse<(u32, u32)>)> = pair_count.iter().map(|(&p, &c)| (c, Reverse(p))).collect();
    let target_tokens = cfg.vocab_size - n_special;
    let mut last_touched = vec![u32::MAX; syms.len()];

    while tokens.len() < target_tokens {
        let Some((c, Reverse(pair))) = heap.pop() else { break };
        let current = pair_count.get(&pair).copied().unwrap_or(0);
        if c != current {
            // Stale entry: the count changed since it was pushed.
            if current > 0 {
                heap.push((current, Reverse(pair)));
            }
            continue;
        }
        if (c as u64) < cfg.min_frequency.max(1) {
            break;
        }
        let text = format!("{}{}", tokens[pair.0 as usize], tokens[pair.1 as usize]);
        let new_id = match by_text.get(&text) {
            Some(&id) => id,
            None => {
                tokens.push(text.clone());
                by_text.insert(text, tokens.len() as u32 - 1);
                tokens.len() as u32 - 1
            }
        };
        merges.push(format!("{} {}", tokens[pair.0 as usize], tokens[pair.1 as usize]));
        let merge_no = merges.len() as u32;
        let mut changed: HashMap<(u32, u32), ()> = HashMap::new();
        for wi in pair_words.remove(&pair).unwrap_or_default() {
            let wi = wi as usize;
            if last_touched[wi] == merge_no {
                continue;
            }
            last_touched[wi] = merge_no;
            let old = &syms[wi];
            let mut new = Vec::with_capacity(old.len());
            let mut i = 0;
            while i < old.len() {
                if i + 1 < old.len() && old[i] == pair.0 && old[i + 1] == pair.1 {
                    new.push(new_id);
                    i += 2;
                } else {
                    new.push(old[i]);
                    i += 1;
                }
            }
            if new.len() == old.len() {
                continue;
            }
            let f = freq[wi];
            for p in old.windows(2) {
                *pair_count.entry((p[0], p[1])).or_insert(0) -= f;
                changed.insert((p[0], p[1]), ());
            }
            for p in new.windows(2) {
                *pair_count.entry((p[0], p[1])).or_insert(0) += f;
                changed.insert((p[0], p[1]), ());
                if p[0] == new_id || p[1] == new_id {
                    pair_words.entry((p[0], p[1])).or_default().push(wi as u32);
                }
            }
            syms[wi] = new;
        }
        pair_count.remove(&pair);
        let mut ch: Vec<(u32, u32)> = changed.into_keys().filter(|p| *p != pair).collect();
        ch.sort_unstable();
        for p in ch {
            let c = pair_count.get(&p).copied().unwrap_or(0);
            if c > 0 {
                heap.push((c, Reverse(p)));
            } else {
                pair_count.remove(&p);
            }
        }
    }
    let mut token_types = vec![TYPE_NORMAL; tokens.len()];
    for s in &cfg.special_tokens {
        if by_text.contains_key(s) {
            return Err(DistillError::Config(format!("special token {s} collides with a learned token")));
        }
        by_text.insert(s.clone(), tokens.len() as u32);
        tokens.push(s.clone());
        token_types.push(TYPE_CONTROL);
    }
    Ok(Bpe { tokens, token_types, merges })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn byte_table_is_a_bijection_onto_printable_chars() {
        let t = byte_to_char();
        let mut seen: Vec<char> = t.to_vec();
        seen.sort();
        seen.dedup();
        assert_eq!(seen.len(), 256);
        assert_eq!(t[b'A' as usize], 'A');
        assert_eq!(t[b' ' as usize], 'Ġ');
        assert_eq!(t[b'\n' as usize], 'Ċ');
    }

    #[test]
    fn digits_are_split_first() {
        assert_eq!(pretokenize("in 1984, x2"), vec!["in", " ", "1", "9", "8", "4", ",", " x", "2"]);
    }

    #[test]
    fn pretokenizer_follows_the_gpt2_regex() {
        let cases: &[(&str, &[&str])] = &[
            ("Hello world", &["Hello", " world"]),
            ("it's 42 km/h!", &["it", "'s", " 42", " km", "/", "h", "!"]),
            ("a  b", &["a", " ", " b"]),
            ("x\n\ny", &["x", "\n", "\n", "y"]),
            ("end   ", &["end", "   "]),
            ("tab\tx", &["tab", "\t", "x"]),
            ("'quote' don't", &["'", "quote", "'", " don", "'t"]),
        ];
        for (text, want) in cases {
            assert_eq!(pretokenize_gpt2(text), *want, "{text:?}");
        }
    }

    #[test]
    fn merges_follow_frequency_and_respect_the_size() {
        let text = "low lower lowest low low newer newest";
        let bpe = train([text], &BpeConfig { vocab_size: 256 + 5 + 1, min_frequency: 1, special_tokens: vec!["<|x|>".into()] }).unwrap();
        assert_eq!(bpe.tokens.len(), 262);
        // "l o" and "lo w" come first: "low" is the most frequent stem.
        assert_eq!(bpe.merges[0], "l o");
        assert_eq!(bpe.merges[1], "lo w");
        assert_eq!(bpe.tokens.last().map(String::as_str), Some("<|x|>"));
        assert_eq!(*bpe.token_types.last().unwrap(), TYPE_CONTROL);
        assert_eq!(bpe.encode_piece("low"), vec![bpe.token_id("low").unwrap()]);
    }
}
