//! Typed errors for vocabulary loading.

use hearth_formats::GgufError;

/// Why a vocabulary could not be built from GGUF metadata.
///
/// Encoding and decoding never fail: every error is found while loading.
#[derive(Debug, thiserror::Error)]
pub enum TokenizerError {
    #[error("GGUF metadata: {0}")]
    Gguf(#[from] GgufError),
    #[error("metadata key {key:?} is missing")]
    MissingKey { key: &'static str },
    #[error("metadata key {key:?} has the wrong type: expected {expected}")]
    WrongType { key: &'static str, expected: &'static str },
    #[error("tokenizer model {model:?} is not supported")]
    UnsupportedModel { model: String },
    #[error("pre-tokenizer {pre:?} is not known")]
    UnknownPreTokenizer { pre: String },
    #[error("the vocabulary is empty")]
    EmptyVocab,
    #[error("the vocabulary has {n} tokens; token ids must fit in u32")]
    VocabTooLarge { n: usize },
    #[error("{key} has {found} entries but the vocabulary has {n_vocab} tokens")]
    LengthMismatch { key: &'static str, found: usize, n_vocab: usize },
    #[error("token {second} has the same text {text:?} as token {first}")]
    DuplicateToken { text: String, first: u32, second: u32 },
    #[error("merge {index} ({merge:?}) is not two space-separated tokens")]
    MalformedMerge { index: usize, merge: String },
    #[error("merge {index} ({merge:?}) names {part:?}, which is not a token")]
    UnknownMergeToken { index: usize, merge: String, part: String },
    #[error("{key} = {id} is outside the vocabulary of {n_vocab} tokens")]
    TokenIdOutOfRange { key: &'static str, id: u64, n_vocab: usize },
    #[error("precompiled character map is malformed: {reason}")]
    BadCharsMap { reason: &'static str },
    #[error("pre-tokenizer regex {regex:?} cannot be compiled: {reason}")]
    BadRegex { regex: String, reason: String },
}
