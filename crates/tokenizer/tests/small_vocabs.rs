//! Hand-built vocabularies: behaviour worked out by hand, and malformed
//! metadata that must be refused with a typed error (never a panic).

mod common;

use common::{gguf_bytes, strs, Val};
use hearth_formats::GgufFile;
use hearth_tokenizer::{DecodeOptions, EncodeOptions, Tokenizer, TokenizerError};

fn build(kvs: &[(&str, Val)]) -> Result<Tokenizer, TokenizerError> {
    let g = GgufFile::from_bytes(gguf_bytes(kvs)).expect("test GGUF parses");
    Tokenizer::from_gguf(&g)
}

const SPM_TOKENS: [&str; 13] = ["<unk>", "<s>", "</s>", "<0x41>", "<0x0A>", "▁", "a", "b", "▁a", "ab", "▁ab", "<0xC3>", "<0xA9>"];
const SPM_TYPES: [i32; 13] = [2, 3, 3, 6, 6, 1, 1, 1, 1, 1, 1, 6, 6];
const SPM_SCORES: [f32; 13] = [0.0, 0.0, 0.0, 0.0, 0.0, -3.0, -4.0, -4.0, -1.0, -2.0, -0.5, 0.0, 0.0];

fn spm() -> Vec<(&'static str, Val)> {
    vec![
        ("tokenizer.ggml.model", Val::Str("llama")),
        ("tokenizer.ggml.tokens", Val::Strs(strs(&SPM_TOKENS))),
        ("tokenizer.ggml.scores", Val::F32s(SPM_SCORES.to_vec())),
        ("tokenizer.ggml.token_type", Val::I32s(SPM_TYPES.to_vec())),
    ]
}

#[test]
fn sentencepiece_merges_by_score_and_falls_back_to_bytes() {
    let tok = build(&spm()).unwrap();
    let plain = EncodeOptions::default();
    // "▁ab▁ab": ▁a (-1) first, leftmost of the tie, then ▁ab (-0.5).
    assert_eq!(tok.encode("ab ab", plain), [10, 10]);
    assert_eq!(tok.encode("ab ab", EncodeOptions { add_special: true, parse_special: false }), [1, 10, 10]);
    // é is not a token: its UTF-8 bytes are.
    assert_eq!(tok.encode("é", plain), [5, 11, 12]);
    assert_eq!(tok.encode("A", plain), [5, 3]);
    // No token and no byte token: the unknown token.
    assert_eq!(tok.encode("Z", plain), [5, 0]);
    assert_eq!(tok.encode("", plain), Vec::<u32>::new());
    // Control tokens are text unless parse_special.
    assert_eq!(tok.encode("<s>ab", EncodeOptions { add_special: false, parse_special: true }), [1, 10]);
    assert_ne!(tok.encode("<s>ab", plain)[..2], [1, 10]);
    // The added space prefix is removed on decode, but (as in llama.cpp) only
    // when the first token is not BOS, which takes that chance away.
    assert_eq!(tok.decode(&[10, 10], DecodeOptions::default()), "ab ab");
    assert_eq!(tok.decode(&[1, 10, 10], DecodeOptions::default()), " ab ab");
    assert_eq!(tok.decode(&[1, 10, 10], DecodeOptions { remove_special: true, special: false }), " ab ab");
    assert_eq!(tok.decode(&[1, 10, 10], DecodeOptions { remove_special: false, special: true }), "<s> ab ab");
    assert_eq!(tok.decode(&[5, 11, 12], DecodeOptions::default()), "é");
    assert_eq!(&*tok.token_to_piece(4, false), b"\n");
    assert_eq!(&*tok.token_to_piece(2, false), b"");
    assert_eq!(&*tok.token_to_piece(2, true), b"</s>");
    assert_eq!(&*tok.token_to_piece(999, true), b"");
    assert_eq!((tok.bos(), tok.eos(), tok.unk(), tok.nl()), (Some(1), Some(2), Some(0), Some(4)));
    assert!(tok.is_eog(2) && !tok.is_eog(1) && tok.is_control(1));
}

fn bpe(merges: &[&str]) -> Vec<(&'static str, Val)> {
    let tokens = ["h", "e", "l", "o", "Ġ", "w", "r", "d", "he", "ll", "llo", "hello", "Ġw", "<|endoftext|>"];
    vec![
        ("tokenizer.ggml.model", Val::Str("gpt2")),
        ("tokenizer.ggml.pre", Val::Str("gpt-2")),
        ("tokenizer.ggml.tokens", Val::Strs(strs(&tokens))),
        ("tokenizer.ggml.token_type", Val::I32s(vec![1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 3])),
        ("tokenizer.ggml.merges", Val::Strs(strs(merges))),
        ("tokenizer.ggml.bos_token_id", Val::U32(13)),
        ("tokenizer.ggml.eos_token_id", Val::U32(13)),
    ]
}

#[test]
fn byte_level_bpe_applies_merges_by_rank() {
    let tok = build(&bpe(&["h e", "l l", "ll o", "he llo", "Ġ w"])).unwrap();
    let plain = EncodeOptions::default();
    assert_eq!(tok.encode("hello", plain), [11]);
    assert_eq!(tok.encode("hello world", plain), [11, 12, 3, 6, 2, 7]);
    // Without "he llo" the word stays in two pieces.
    let tok2 = build(&bpe(&["h e", "l l", "ll o", "Ġ w"])).unwrap();
    assert_eq!(tok2.encode("hello", plain), [8, 10]);
    assert_eq!(tok.decode(&[11, 12, 3, 6, 2, 7], DecodeOptions::default()), "hello world");
    assert_eq!(tok.encode("hello<|endoftext|>", EncodeOptions { add_special: false, parse_special: true }), [11, 13]);
    assert!(tok.is_eog(13));
    assert_eq!(tok.eot(), Some(13));
}

fn err_of(kvs: &[(&str, Val)]) -> TokenizerError {
    match build(kvs) {
        Ok(_) => panic!("malformed vocabulary accepted"),
        Err(e) => e,
    }
}

#[test]
fn malformed_vocabularies_are_refused_with_typed_errors() {
    // No model key.
    let mut kv = spm();
    kv.remove(0);
    assert!(matches!(err_of(&kv), TokenizerError::MissingKey { key: "tokenizer.ggml.model" }));

    // Unsupported model and unknown pre-tokenizer.
    let mut kv = spm();
    kv[0] = ("tokenizer.ggml.model", Val::Str("plamo2"));
    assert!(matches!(err_of(&kv), TokenizerError::UnsupportedModel { .. }));
    let mut kv = bpe(&["h e"]);
    kv[1] = ("tokenizer.ggml.pre", Val::Str("no-such-pre"));
    assert!(matches!(err_of(&kv), TokenizerError::UnknownPreTokenizer { .. }));

    // Empty vocabulary.
    let mut kv = spm();
    kv[1] = ("tokenizer.ggml.tokens", Val::Strs(Vec::new()));
    assert!(matches!(err_of(&kv), TokenizerError::EmptyVocab));

    // Scores and types shorter than the token list.
    let mut kv = spm();
    kv[2] = ("tokenizer.ggml.scores", Val::F32s(vec![0.0; 5]));
    assert!(matches!(err_of(&kv), TokenizerError::LengthMismatch { key: "tokenizer.ggml.scores", found: 5, n_vocab: 13 }));
    let mut kv = spm();
    kv[3] = ("tokenizer.ggml.token_type", Val::I32s(vec![1; 12]));
    assert!(matches!(err_of(&kv), TokenizerError::LengthMismatch { key: "tokenizer.ggml.token_type", .. }));

    // Scores of the wrong type; tokens not strings.
    let mut kv = spm();
    kv[2] = ("tokenizer.ggml.scores", Val::Strs(strs(&SPM_TOKENS)));
    assert!(matches!(err_of(&kv), TokenizerError::WrongType { key: "tokenizer.ggml.scores", .. }));
    let mut kv = spm();
    kv[1] = ("tokenizer.ggml.tokens", Val::I32s(vec![1, 2, 3]));
    assert!(matches!(err_of(&kv), TokenizerError::Gguf(_)));

    // Two tokens with the same text.
    let mut kv = spm();
    let mut dup = strs(&SPM_TOKENS);
    dup[7] = "a".into();
    kv[1] = ("tokenizer.ggml.tokens", Val::Strs(dup));
    assert!(matches!(err_of(&kv), TokenizerError::DuplicateToken { first: 6, second: 7, .. }));

    // Merges: unknown part, no separator, missing list.
    assert!(matches!(err_of(&bpe(&["h e", "x y"])), TokenizerError::UnknownMergeToken { index: 1, .. }));
    assert!(matches!(err_of(&bpe(&["he"])), TokenizerError::MalformedMerge { index: 0, .. }));
    let mut kv = bpe(&[]);
    kv.remove(4);
    assert!(matches!(err_of(&kv), TokenizerError::MissingKey { key: "tokenizer.ggml.merges" }));

    // Special token ids outside the vocabulary.
    let mut kv = spm();
    kv.push(("tokenizer.ggml.eos_token_id", Val::U32(13)));
    assert!(matches!(err_of(&kv), TokenizerError::TokenIdOutOfRange { id: 13, n_vocab: 13, .. }));
    let mut kv = spm();
    kv.push(("tokenizer.ggml.bos_token_id", Val::I32(-1)));
    assert!(matches!(err_of(&kv), TokenizerError::Gguf(_)));

    // A flag of the wrong type.
    let mut kv = spm();
    kv.push(("tokenizer.ggml.add_bos_token", Val::U32(1)));
    assert!(matches!(err_of(&kv), TokenizerError::Gguf(_)));

    // T5 with a character map too short for its header, or whose double
    // array runs past its end.
    let mut kv = spm();
    kv[0] = ("tokenizer.ggml.model", Val::Str("t5"));
    kv.push(("tokenizer.ggml.precompiled_charsmap", Val::U8s(vec![1, 0])));
    assert!(matches!(err_of(&kv), TokenizerError::BadCharsMap { .. }));
    let mut kv = spm();
    kv[0] = ("tokenizer.ggml.model", Val::Str("t5"));
    kv.push(("tokenizer.ggml.precompiled_charsmap", Val::U8s(vec![255, 0, 0, 0, 1, 2, 3, 4])));
    assert!(matches!(err_of(&kv), TokenizerError::BadCharsMap { .. }));
}

/// A tiny deterministic generator, so the corrupted inputs are reproducible.
struct Lcg(u64);
impl Lcg {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
        self.0 >> 33
    }
}

#[test]
fn corrupted_vocabulary_files_never_panic() {
    let good = gguf_bytes(&bpe(&["h e", "l l", "ll o", "he llo", "Ġ w"]));
    let mut rng = Lcg(0x5eed);
    let mut loaded = 0;
    for _ in 0..3000 {
        let mut b = good.clone();
        for _ in 0..1 + rng.next() % 4 {
            let i = (rng.next() as usize) % b.len();
            b[i] = rng.next() as u8;
        }
        if rng.next().is_multiple_of(8) {
            b.truncate((rng.next() as usize) % b.len());
        }
        let Ok(g) = GgufFile::from_bytes(b) else { continue };
        if let Ok(tok) = Tokenizer::from_gguf(&g) {
            loaded += 1;
            let ids = tok.encode("hello world <|endoftext|> é", EncodeOptions { add_special: true, parse_special: true });
            let _ = tok.decode(&ids, DecodeOptions { remove_special: true, special: true });
        }
    }
    assert!(loaded > 0, "no corrupted file survived parsing; the test exercises nothing");
}

#[test]
fn arbitrary_text_never_panics() {
    let tok = build(&spm()).unwrap();
    let tok2 = build(&bpe(&["h e", "l l"])).unwrap();
    let mut rng = Lcg(42);
    for _ in 0..2000 {
        let len = rng.next() % 20;
        let s: String = (0..len)
            .map(|_| match rng.next() % 4 {
                0 => char::from_u32((rng.next() % 0x80) as u32).unwrap_or('x'),
                1 => ['▁', ' ', '\n', 'é', '<', '>', 's'][(rng.next() % 7) as usize],
                _ => char::from_u32((rng.next() % 0x11_0000) as u32).unwrap_or('\u{FFFD}'),
            })
            .collect();
        for t in [&tok, &tok2] {
            for mode in 0..4 {
                let ids = t.encode(&s, EncodeOptions { add_special: mode & 1 == 1, parse_special: mode & 2 == 2 });
                assert!(ids.iter().all(|&id| (id as usize) < t.n_vocab()));
            }
        }
    }
}

#[test]
fn tokenizer_is_shareable_across_threads() {
    fn assert_send_sync<T: Send + Sync>() {}
    assert_send_sync::<Tokenizer>();
    let tok = std::sync::Arc::new(build(&spm()).unwrap());
    let handles: Vec<_> = (0..4)
        .map(|_| {
            let t = tok.clone();
            std::thread::spawn(move || t.encode("ab ab", EncodeOptions::default()))
        })
        .collect();
    for h in handles {
        assert_eq!(h.join().unwrap(), [10, 10]);
    }
    // Debug prints a summary, not the vocabulary.
    assert!(format!("{tok:?}").len() < 400);
}

#[test]
fn unigram_picks_the_best_total_score() {
    let tokens = ["<pad>", "</s>", "<unk>", "▁", "a", "b", "▁a", "ab", "▁ab", "<extra>"];
    let scores = vec![0.0, 0.0, 0.0, -2.0, -3.0, -3.0, -1.5, -1.0, -4.0, 0.0];
    let types = vec![3, 3, 2, 1, 1, 1, 1, 1, 1, 4];
    let kv = |merge_spaces: bool| {
        vec![
            ("tokenizer.ggml.model", Val::Str("t5")),
            ("tokenizer.ggml.tokens", Val::Strs(strs(&tokens))),
            ("tokenizer.ggml.scores", Val::F32s(scores.clone())),
            ("tokenizer.ggml.token_type", Val::I32s(types.clone())),
            ("tokenizer.ggml.add_space_prefix", Val::Bool(true)),
            ("tokenizer.ggml.remove_extra_whitespaces", Val::Bool(merge_spaces)),
        ]
    };
    let tok = build(&kv(false)).unwrap();
    let plain = EncodeOptions::default();
    // "▁ab": ▁ + ab (-3) beats ▁a + b (-4.5) and ▁ab (-4).
    assert_eq!(tok.encode("ab", plain), [3, 7]);
    // T5 adds EOS, not BOS.
    assert_eq!(tok.encode("ab", EncodeOptions { add_special: true, parse_special: false }), [3, 7, 1]);
    // Unknown code points cost min score - 10 and a run of them is one <unk>.
    assert_eq!(tok.encode("c", plain), [3, 2]);
    assert_eq!(tok.encode("ccc", plain), [3, 2]);
    // User-defined tokens are split out before the unigram pass.
    assert_eq!(tok.encode("c<extra>", plain), [3, 2, 9]);
    // Spaces are kept as ▁ ...
    assert_eq!(tok.encode("a  b", plain), [6, 3, 3, 5]);
    // ... or merged with remove_extra_whitespaces.
    let merged = build(&kv(true)).unwrap();
    assert_eq!(merged.encode("a  b", plain), [6, 3, 5]);
    // The prefixed space is removed again on decode.
    assert_eq!(merged.decode(&[6, 3, 5], DecodeOptions::default()), "a b");
}

#[test]
fn rwkv_takes_the_longest_escaped_token() {
    let tokens = ["<s>", "a", "b", "ab", "\\n", "\\x41", "abc", "\\\\"];
    let kv = vec![
        ("tokenizer.ggml.model", Val::Str("rwkv")),
        ("tokenizer.ggml.tokens", Val::Strs(strs(&tokens))),
        ("tokenizer.ggml.token_type", Val::I32s(vec![3, 1, 1, 1, 1, 1, 1, 1])),
    ];
    let tok = build(&kv).unwrap();
    let plain = EncodeOptions::default();
    assert_eq!(tok.encode("abab\nA\\", plain), [3, 3, 4, 5, 7]);
    // 'd' has no token and RWKV has no unknown token: it is dropped.
    assert_eq!(tok.encode("abcd", plain), [6]);
    assert_eq!(tok.decode(&[3, 4, 5, 7], DecodeOptions::default()), "ab\nA\\");
    assert_eq!(tok.nl(), Some(4));
}
