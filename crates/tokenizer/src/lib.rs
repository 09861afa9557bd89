//! Tokenizers for Hearth, built from a GGUF file's `tokenizer.ggml.*`
//! metadata, producing the same token ids as llama.cpp (`llama_tokenize`,
//! `llama_token_to_piece`, `llama_detokenize` in src/llama-vocab.cpp).
//!
//! Supported `tokenizer.ggml.model` values:
//! * `llama`: SentencePiece BPE driven by token scores, with `<0xXX>` byte
//!   fallback;
//! * `gpt2` (and `whitespace`, `hybriddna`): byte-level BPE driven by
//!   `tokenizer.ggml.merges`, after a regex pre-tokenizer chosen by
//!   `tokenizer.ggml.pre` (every name llama.cpp knows, see [`PreType`]);
//! * `gemma4`: BPE on raw UTF-8 with `▁` for spaces and `<0xXX>` fallback;
//! * `bert`: WordPiece (greedy longest match, BERT normalisation);
//! * `t5`: SentencePiece unigram (Viterbi) with the precompiled character map;
//! * `rwkv`: greedy longest match over escaped byte strings.
//!
//! Special tokens are split out of the text first (llama.cpp's
//! `tokenizer_st_partition`): user-defined tokens always, control and unknown
//! tokens only when [`EncodeOptions::parse_special`] is set, longest token
//! first, honouring the per-token lstrip/rstrip attributes llama.cpp assigns.
//!
//! Pre-tokenizer regexes: llama.cpp's hand-written scanners for the common
//! ones are reproduced exactly; the rest are rewritten the way llama.cpp
//! rewrites them for `std::regex` and run with `fancy-regex` (lookahead
//! support, and linear-time delegation to the `regex` crate for the parts
//! without lookaround). See `pretok.rs`.
//!
//! Conformance: besides the llama.cpp `.inp`/`.out` files in
//! testdata/vocab, `tests/data/llama_cpp_reference.txt` holds ids and
//! detokenized bytes recorded from llama.cpp for special-token parsing,
//! BOS/EOS handling and detokenizer flags (regenerated with
//! `tools/gen_reference.py`).
//!
//! Deliberately absent: `plamo2` vocabularies and llama.cpp's `test`/`none`
//! models (rejected with [`TokenizerError::UnsupportedModel`]), chat templates
//! (a separate crate), and `tokenizer.json` loading. Where llama.cpp would
//! abort (a byte with no byte token, BOS requested but undefined), this crate
//! substitutes the unknown token or skips the token instead; see the method
//! docs.

mod bpe;
mod decode;
mod error;
mod load;
mod pretok;
mod rwkv;
mod special;
mod spm;
mod stream;
mod ugm;
mod unicode;
mod unicode_tables;
mod wpm;

use std::borrow::Cow;
use std::collections::{BTreeSet, HashMap};

pub use error::TokenizerError;
pub use pretok::PreType;
pub use stream::{StopMatch, StreamChunk, StreamDecoder};

/// Which algorithm a vocabulary uses (llama.cpp `llama_vocab_type`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum VocabKind {
    /// SentencePiece BPE with scores (`llama`).
    Spm,
    /// Byte-level / merges BPE (`gpt2`, `gemma4`, `whitespace`, `hybriddna`).
    Bpe,
    /// WordPiece (`bert`).
    Wpm,
    /// SentencePiece unigram (`t5`).
    Ugm,
    /// RWKV world tokenizer (`rwkv`).
    Rwkv,
}

/// Token attributes (llama.cpp `llama_token_attr` bit values).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct TokenAttr(pub u32);

impl TokenAttr {
    pub const UNDEFINED: TokenAttr = TokenAttr(0);
    pub const UNKNOWN: TokenAttr = TokenAttr(1 << 0);
    pub const UNUSED: TokenAttr = TokenAttr(1 << 1);
    pub const NORMAL: TokenAttr = TokenAttr(1 << 2);
    pub const CONTROL: TokenAttr = TokenAttr(1 << 3);
    pub const USER_DEFINED: TokenAttr = TokenAttr(1 << 4);
    pub const BYTE: TokenAttr = TokenAttr(1 << 5);
    pub const NORMALIZED: TokenAttr = TokenAttr(1 << 6);
    pub const LSTRIP: TokenAttr = TokenAttr(1 << 7);
    pub const RSTRIP: TokenAttr = TokenAttr(1 << 8);
    pub const SINGLE_WORD: TokenAttr = TokenAttr(1 << 9);

    /// True if any bit of `other` is set.
    pub fn has(self, other: TokenAttr) -> bool {
        self.0 & other.0 != 0
    }
}

/// Options for [`Tokenizer::encode`] (the two flags of `llama_tokenize`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct EncodeOptions {
    /// Add BOS/EOS (or CLS/SEP for WordPiece) as the vocabulary asks.
    pub add_special: bool,
    /// Recognise control and unknown tokens written as text (e.g.
    /// `<|im_start|>`). User-defined tokens are recognised either way.
    pub parse_special: bool,
}

/// Options for [`Tokenizer::decode`] (the two flags of `llama_detokenize`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct DecodeOptions {
    /// Drop a leading BOS and a trailing EOS when the vocabulary adds them.
    pub remove_special: bool,
    /// Render control and unknown tokens as their text instead of nothing.
    pub special: bool,
}

/// One vocabulary entry.
#[derive(Clone, Debug)]
pub(crate) struct TokenData {
    pub text: String,
    pub score: f32,
    pub attr: TokenAttr,
}

/// Special token ids; `None` where the vocabulary has none.
#[derive(Clone, Copy, Debug, Default)]
pub(crate) struct SpecialIds {
    pub bos: Option<u32>,
    pub eos: Option<u32>,
    pub eot: Option<u32>,
    pub eom: Option<u32>,
    pub unk: Option<u32>,
    pub sep: Option<u32>,
    pub pad: Option<u32>,
    pub mask: Option<u32>,
    pub nl: Option<u32>,
    pub fim_pre: Option<u32>,
    pub fim_suf: Option<u32>,
    pub fim_mid: Option<u32>,
    pub fim_pad: Option<u32>,
    pub fim_rep: Option<u32>,
    pub fim_sep: Option<u32>,
}

/// Behaviour switches of a vocabulary (llama.cpp `llama_vocab::impl` flags).
#[derive(Clone, Copy, Debug)]
pub(crate) struct VocabFlags {
    pub add_space_prefix: bool,
    pub add_bos: bool,
    pub add_eos: bool,
    pub add_sep: bool,
    pub ignore_merges: bool,
    pub clean_spaces: bool,
    pub remove_extra_whitespaces: bool,
    pub escape_whitespaces: bool,
    pub treat_whitespace_as_suffix: bool,
    pub lowercase: bool,
    pub strip_accents: bool,
}

/// A vocabulary and the algorithm to apply it. Immutable after loading and
/// `Sync`: share one across threads.
pub struct Tokenizer {
    pub(crate) kind: VocabKind,
    pub(crate) model: String,
    pub(crate) pre: String,
    pub(crate) pre_type: PreType,
    pub(crate) tokens: Vec<TokenData>,
    pub(crate) token_to_id: HashMap<String, u32>,
    pub(crate) special: SpecialIds,
    pub(crate) flags: VocabFlags,
    pub(crate) eog: BTreeSet<u32>,
    /// Control, user-defined and unknown tokens, longest text first.
    pub(crate) special_cache: Vec<u32>,
    pub(crate) special_matcher: Option<aho_corasick::AhoCorasick>,
    /// `token_to_piece(id, special = true)` for every id.
    pub(crate) pieces: Vec<Box<[u8]>>,
    pub(crate) max_token_len: usize,
    pub(crate) bpe: Option<bpe::Bpe>,
    pub(crate) ugm: Option<ugm::Ugm>,
    pub(crate) rwkv: Option<rwkv::Rwkv>,
}

impl std::fmt::Debug for Tokenizer {
    /// A summary; the vocabulary itself is far too large to print.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Tokenizer")
            .field("kind", &self.kind)
            .field("model", &self.model)
            .field("pre", &self.pre)
            .field("n_vocab", &self.tokens.len())
            .field("bos", &self.special.bos)
            .field("eos", &self.special.eos)
            .field("eog", &self.eog)
            .field("add_bos", &self.flags.add_bos)
            .field("add_eos", &self.flags.add_eos)
            .finish_non_exhaustive()
    }
}

impl Tokenizer {
    /// Builds the tokenizer described by a GGUF file's metadata.
    pub fn from_gguf(gguf: &hearth_formats::GgufFile) -> Result<Tokenizer, TokenizerError> {
        load::from_gguf(gguf)
    }

    /// Text to token ids, exactly as `llama_tokenize(text, add_special,
    /// parse_special)`.
    ///
    /// Where llama.cpp would abort (BOS/EOS/SEP requested but undefined) the
    /// token is left out. Never panics; a single pre-tokenized word longer
    /// than 2 GiB is skipped.
    pub fn encode(&self, text: &str, opts: EncodeOptions) -> Vec<u32> {
        let mut out = Vec::with_capacity(text.len() / 3 + 2);
        let fragments = special::partition(self, text, opts.parse_special);
        let push_opt = |out: &mut Vec<u32>, id: Option<u32>| {
            if let Some(id) = id {
                out.push(id);
            }
        };
        match self.kind {
            VocabKind::Spm => {
                if opts.add_special && self.flags.add_bos {
                    push_opt(&mut out, self.special.bos);
                }
                // A space is prefixed to the first text fragment and to every
                // text fragment that follows a special token.
                let mut prev_special = true;
                for f in &fragments {
                    match *f {
                        special::Fragment::Text(a, b) => {
                            let mut s = String::with_capacity(b - a + 3);
                            if self.flags.add_space_prefix && prev_special {
                                s.push(' ');
                            }
                            s.push_str(&text[a..b]);
                            let escaped = s.replace(' ', "\u{2581}");
                            spm::tokenize(self, &escaped, &mut out);
                            prev_special = false;
                        }
                        special::Fragment::Token(id) => {
                            out.push(id);
                            prev_special = true;
                        }
                    }
                }
                if opts.add_special && self.flags.add_eos {
                    push_opt(&mut out, self.special.eos);
                }
            }
            VocabKind::Bpe => {
                if opts.add_special && self.flags.add_bos {
                    push_opt(&mut out, self.special.bos);
                }
                for f in &fragments {
                    match *f {
                        special::Fragment::Text(a, b) => {
                            let t = &text[a..b];
                            if self.flags.escape_whitespaces {
                                bpe::tokenize_text(self, &t.replace(' ', "\u{2581}"), &mut out);
                            } else {
                                bpe::tokenize_text(self, t, &mut out);
                            }
                        }
                        special::Fragment::Token(id) => out.push(id),
                    }
                }
                if opts.add_special && self.flags.add_eos {
                    push_opt(&mut out, self.special.eos);
                }
            }
            VocabKind::Wpm => {
                if opts.add_special {
                    push_opt(&mut out, self.special.bos);
                }
                for f in &fragments {
                    match *f {
                        special::Fragment::Text(a, b) => wpm::tokenize(self, &text[a..b], &mut out),
                        special::Fragment::Token(id) => out.push(id),
                    }
                }
                if opts.add_special {
                    push_opt(&mut out, self.special.sep);
                }
            }
            VocabKind::Ugm => {
                if opts.add_special && self.flags.add_bos {
                    push_opt(&mut out, self.special.bos);
                }
                for f in &fragments {
                    match *f {
                        special::Fragment::Text(a, b) => ugm::tokenize(self, &text[a..b], &mut out),
                        special::Fragment::Token(id) => out.push(id),
                    }
                }
                if opts.add_special && self.flags.add_eos {
                    push_opt(&mut out, self.special.eos);
                }
            }
            VocabKind::Rwkv => {
                for f in &fragments {
                    match *f {
                        special::Fragment::Text(a, b) => rwkv::tokenize(self, &text[a..b], &mut out),
                        special::Fragment::Token(id) => out.push(id),
                    }
                }
            }
        }
        out
    }

    /// The bytes a token stands for, exactly as `llama_token_to_piece(id,
    /// lstrip = 0, special)`: control and unknown tokens are empty unless
    /// `special`; SentencePiece `▁` becomes a space; `<0xXX>` tokens are one
    /// raw byte; byte-level BPE text goes back through GPT-2's byte table.
    /// Ids outside the vocabulary give an empty piece.
    pub fn token_to_piece(&self, id: u32, special: bool) -> Cow<'_, [u8]> {
        let Some(t) = self.tokens.get(id as usize) else { return Cow::Borrowed(&[]) };
        if !special && t.attr.has(TokenAttr(TokenAttr::UNKNOWN.0 | TokenAttr::CONTROL.0)) {
            return Cow::Borrowed(&[]);
        }
        Cow::Borrowed(&self.pieces[id as usize])
    }

    /// Token ids to bytes, exactly as `llama_detokenize` (including the
    /// removal of the SentencePiece leading space and, for vocabularies that
    /// ask for it, the clean-up of spaces before punctuation).
    pub fn decode_bytes(&self, ids: &[u32], opts: DecodeOptions) -> Vec<u8> {
        decode::detokenize(self, ids, opts)
    }

    /// [`Tokenizer::decode_bytes`] as a string; invalid UTF-8 (a sequence cut
    /// between byte tokens) becomes U+FFFD.
    pub fn decode(&self, ids: &[u32], opts: DecodeOptions) -> String {
        String::from_utf8_lossy(&self.decode_bytes(ids, opts)).into_owned()
    }

    /// A streaming decoder over this vocabulary (see [`StreamDecoder`]).
    pub fn stream_decoder(&self, special: bool) -> StreamDecoder<'_> {
        StreamDecoder::new(self, special)
    }

    // ---- metadata -------------------------------------------------------

    pub fn kind(&self) -> VocabKind {
        self.kind
    }
    /// `tokenizer.ggml.model`.
    pub fn model(&self) -> &str {
        &self.model
    }
    /// `tokenizer.ggml.pre` as llama.cpp resolved it (`gemma4` for Gemma 4).
    pub fn pre(&self) -> &str {
        &self.pre
    }
    /// The pre-tokenizer family (meaningful for BPE vocabularies).
    pub fn pre_type(&self) -> PreType {
        self.pre_type
    }
    pub fn n_vocab(&self) -> usize {
        self.tokens.len()
    }
    pub fn bos(&self) -> Option<u32> {
        self.special.bos
    }
    pub fn eos(&self) -> Option<u32> {
        self.special.eos
    }
    /// End of turn: from metadata, else detected from the token text
    /// (`<|eot_id|>`, `<|im_end|>`, `<|end|>`, `<end_of_turn>`, ...). Where
    /// several candidates exist, llama.cpp's choice depends on hash-map
    /// order; this picks the highest id, which agrees with llama.cpp on the
    /// Llama 3, Qwen2 and Phi-3 vocabularies.
    pub fn eot(&self) -> Option<u32> {
        self.special.eot
    }
    pub fn eom(&self) -> Option<u32> {
        self.special.eom
    }
    pub fn unk(&self) -> Option<u32> {
        self.special.unk
    }
    pub fn sep(&self) -> Option<u32> {
        self.special.sep
    }
    pub fn pad(&self) -> Option<u32> {
        self.special.pad
    }
    pub fn mask(&self) -> Option<u32> {
        self.special.mask
    }
    /// CLS is the BOS token in llama.cpp (`llama_vocab_cls`).
    pub fn cls(&self) -> Option<u32> {
        self.special.bos
    }
    /// The newline token (llama.cpp `llama_vocab_nl`).
    pub fn nl(&self) -> Option<u32> {
        self.special.nl
    }
    /// Fill-in-the-middle tokens: prefix, suffix, middle, pad, repo, file separator.
    pub fn fim_pre(&self) -> Option<u32> {
        self.special.fim_pre
    }
    pub fn fim_suf(&self) -> Option<u32> {
        self.special.fim_suf
    }
    pub fn fim_mid(&self) -> Option<u32> {
        self.special.fim_mid
    }
    pub fn fim_pad(&self) -> Option<u32> {
        self.special.fim_pad
    }
    pub fn fim_rep(&self) -> Option<u32> {
        self.special.fim_rep
    }
    pub fn fim_sep(&self) -> Option<u32> {
        self.special.fim_sep
    }
    pub fn add_bos(&self) -> bool {
        self.flags.add_bos
    }
    pub fn add_eos(&self) -> bool {
        self.flags.add_eos
    }
    pub fn add_sep(&self) -> bool {
        self.flags.add_sep
    }
    pub fn add_space_prefix(&self) -> bool {
        self.flags.add_space_prefix
    }
    /// True for every token that ends generation (llama.cpp
    /// `llama_vocab_is_eog`).
    pub fn is_eog(&self, id: u32) -> bool {
        self.eog.contains(&id)
    }
    /// The end-of-generation set, ascending.
    pub fn eog_ids(&self) -> impl Iterator<Item = u32> + '_ {
        self.eog.iter().copied()
    }
    pub fn is_control(&self, id: u32) -> bool {
        self.token_attr(id).has(TokenAttr::CONTROL)
    }
    /// Attributes after llama.cpp's adjustments; `UNDEFINED` for ids outside
    /// the vocabulary.
    pub fn token_attr(&self, id: u32) -> TokenAttr {
        self.tokens.get(id as usize).map_or(TokenAttr::UNDEFINED, |t| t.attr)
    }
    /// The token's text as stored in the vocabulary.
    pub fn token_text(&self, id: u32) -> Option<&str> {
        self.tokens.get(id as usize).map(|t| t.text.as_str())
    }
    pub fn token_score(&self, id: u32) -> Option<f32> {
        self.tokens.get(id as usize).map(|t| t.score)
    }
    /// The id of the token whose text is exactly `text`.
    pub fn token_id(&self, text: &str) -> Option<u32> {
        self.token_to_id.get(text).copied()
    }

    /// llama.cpp `byte_to_token` for SentencePiece-style vocabularies:
    /// `<0xXX>`, else the one-byte string.
    pub(crate) fn byte_token(&self, b: u8) -> Option<u32> {
        let hex = format!("<0x{b:02X}>");
        if let Some(&id) = self.token_to_id.get(hex.as_str()) {
            return Some(id);
        }
        std::str::from_utf8(&[b]).ok().and_then(|s| self.token_to_id.get(s).copied())
    }
}
