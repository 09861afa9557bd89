//! Shared helpers: real vocabularies from testdata/vocab.
#![allow(dead_code)]

use std::path::PathBuf;
use std::sync::{Arc, OnceLock};

use hearth_formats::GgufFile;
use hearth_grammar::TokenMask;
use hearth_tokenizer::Tokenizer;

pub fn vocab_path(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../../testdata/vocab")
        .join(name)
}

pub fn load(name: &str) -> Tokenizer {
    let f = GgufFile::open(vocab_path(name)).expect("vocab file");
    Tokenizer::from_gguf(&f).expect("tokenizer")
}

pub struct Vocab {
    pub tok: Tokenizer,
    pub mask: Arc<TokenMask>,
    /// A token whose text is exactly this one byte.
    pub byte_token: std::collections::HashMap<u8, u32>,
}

fn make(name: &str) -> Vocab {
    from_tokenizer(load(name))
}

pub fn from_tokenizer(tok: Tokenizer) -> Vocab {
    let mask = Arc::new(TokenMask::new(&tok));
    let mut byte_token = std::collections::HashMap::new();
    for id in 0..mask.n_vocab() as u32 {
        if let [b] = mask.piece(id) {
            byte_token.entry(*b).or_insert(id);
        }
    }
    Vocab {
        tok,
        mask,
        byte_token,
    }
}

pub fn qwen2() -> &'static Vocab {
    static V: OnceLock<Vocab> = OnceLock::new();
    V.get_or_init(|| make("ggml-vocab-qwen2.gguf"))
}

pub fn llama_bpe() -> &'static Vocab {
    static V: OnceLock<Vocab> = OnceLock::new();
    V.get_or_init(|| make("ggml-vocab-llama-bpe.gguf"))
}

pub fn phi3() -> &'static Vocab {
    static V: OnceLock<Vocab> = OnceLock::new();
    V.get_or_init(|| make("ggml-vocab-phi-3.gguf"))
}

use hearth_grammar::{Grammar, Input, Matcher};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

/// Result of one random-logit decode.
pub struct Run {
    pub bytes: Vec<u8>,
    /// The output with special tokens rendered as their text (what a
    /// tool-call parser sees).
    pub rendered: Vec<u8>,
    pub tokens: Vec<u32>,
    /// Finished (EOG sampled) within the random phase.
    pub finished_unbiased: bool,
    pub finished: bool,
}

fn argmax(l: &[f32]) -> u32 {
    let mut best = 0;
    for (i, &x) in l.iter().enumerate() {
        if x > l[best] {
            best = i;
        }
    }
    best as u32
}

/// Decodes under `g` with seeded random logits for up to `free` steps,
/// then, if unfinished, follows [`Grammar::shortest_completion`] with
/// single-byte tokens (a constructive proof that completion is reachable)
/// and ends with EOG. Every step asserts that something is allowed, that the
/// sampled token is in the mask, and that the fast-path check agrees with the
/// mask on random tokens (and on every token when `full_check` divides the
/// step).
pub fn random_decode(
    v: &Vocab,
    g: Arc<Grammar>,
    seed: u64,
    free: usize,
    full_check: Option<usize>,
) -> Run {
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let mut m = Matcher::new(v.mask.clone(), g.clone());
    let n = v.mask.n_vocab();
    let mut logits = vec![0f32; n];
    let mut run = Run {
        bytes: Vec::new(),
        rendered: Vec::new(),
        tokens: Vec::new(),
        finished_unbiased: false,
        finished: false,
    };
    for step in 0..free {
        for l in logits.iter_mut() {
            *l = rng.random::<f32>();
        }
        let t = match m.sample(&mut logits, argmax) {
            Some(t) => t,
            None => panic!(
                "seed {seed}: nothing allowed after {:?}",
                String::from_utf8_lossy(&run.bytes)
            ),
        };
        let mask = m.compute_mask().clone();
        assert!(mask.get(t), "seed {seed}: sampled token {t} not in mask");
        for _ in 0..32 {
            let r = rng.random_range(0..n as u32);
            assert_eq!(
                m.is_allowed(r),
                mask.get(r),
                "seed {seed}: fast path and mask disagree on token {r} ({:?}) after {:?}",
                String::from_utf8_lossy(v.mask.piece(r)),
                String::from_utf8_lossy(&run.bytes)
            );
        }
        if full_check.is_some_and(|k| step % k == 0) {
            for r in 0..n as u32 {
                assert_eq!(
                    m.is_allowed(r),
                    mask.get(r),
                    "seed {seed}: full check, token {r} ({:?}) after {:?}",
                    String::from_utf8_lossy(v.mask.piece(r)),
                    String::from_utf8_lossy(&run.bytes)
                );
            }
        }
        m.accept_token(t).expect("sampled token accepted");
        run.tokens.push(t);
        if v.mask.is_eog(t) {
            run.finished = true;
            run.finished_unbiased = true;
            return run;
        }
        run.bytes.extend_from_slice(v.mask.piece(t));
        run.rendered
            .extend_from_slice(&v.tok.token_to_piece(t, true));
    }
    let path = g
        .shortest_completion(m.state(), 2_000_000)
        .unwrap_or_else(|| {
            panic!(
                "seed {seed}: no completion found from {:?}",
                String::from_utf8_lossy(&run.bytes)
            )
        });
    for inp in path {
        let t = match inp {
            Input::Byte(b) => *v
                .byte_token
                .get(&b)
                .expect("vocabulary has single-byte tokens"),
            Input::Special(id) => id,
        };
        m.accept_token(t)
            .unwrap_or_else(|_| panic!("seed {seed}: completion token {t} rejected"));
        run.tokens.push(t);
        run.bytes.extend_from_slice(v.mask.piece(t));
        run.rendered
            .extend_from_slice(&v.tok.token_to_piece(t, true));
    }
    assert!(
        m.is_complete(),
        "seed {seed}: completion path did not complete"
    );
    let eog = (0..n as u32)
        .find(|&t| v.mask.is_eog(t))
        .expect("an EOG token");
    assert!(m.compute_mask().get(eog), "EOG allowed once complete");
    m.accept_token(eog).expect("EOG accepted");
    run.finished = true;
    run
}

/// The llama-bpe vocabulary with some reserved control tokens renamed to
/// tool-call markers (as Llama 3.1 / Mistral / Granite vocabularies have
/// them): 128010 `<|python_tag|>`, 128011 `[TOOL_CALLS]`, 128012 `[ARGS]`,
/// 128013 `<|tool_call|>`, 128014 `<|/tool_call|>`.
pub fn llama_with_markers() -> &'static Vocab {
    static V: OnceLock<Vocab> = OnceLock::new();
    V.get_or_init(|| {
        use hearth_formats::{GgufWriter, MetaArray, MetaValue};
        let f = GgufFile::open(vocab_path("ggml-vocab-llama-bpe.gguf")).expect("vocab");
        let mut tokens = f
            .get_str_array("tokenizer.ggml.tokens")
            .expect("tokens")
            .expect("tokens")
            .to_vec();
        for (id, name) in [
            (128010, "<|python_tag|>"),
            (128011, "[TOOL_CALLS]"),
            (128012, "[ARGS]"),
            (128013, "<|tool_call|>"),
            (128014, "<|/tool_call|>"),
        ] {
            tokens[id] = name.to_string();
        }
        let mut w = GgufWriter::from_gguf(&f).expect("writer");
        w.set_meta(
            "tokenizer.ggml.tokens",
            MetaValue::Array(MetaArray::String(tokens)),
        )
        .expect("set");
        let bytes = w.write_to_vec::<&[u8]>(&[]).expect("write");
        let f2 = GgufFile::from_bytes(bytes).expect("reparse");
        from_tokenizer(Tokenizer::from_gguf(&f2).expect("tokenizer"))
    })
}
