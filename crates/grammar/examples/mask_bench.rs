//! Token-mask timing on a real vocabulary (run in release):
//!
//! ```text
//! cargo run --release -p hearth-grammar --example mask_bench [vocab.gguf]
//! ```
//!
//! Decodes with seeded random logits under several constraints and times
//! the full mask computation at every step (the fast path is not used, so
//! every step pays for a mask). Prints mean / median / p99 / max per
//! constraint, split by whether the state was inside a string.

use std::sync::Arc;
use std::time::Instant;

use hearth_formats::GgufFile;
use hearth_grammar::{Grammar, JsonOptions, JsonSchemaConstraint, Matcher, TokenMask};
use hearth_tokenizer::Tokenizer;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use serde_json::json;

fn stats(label: &str, v: &mut [f64]) {
    if v.is_empty() {
        println!("  {label:<28} (none)");
        return;
    }
    v.sort_by(f64::total_cmp);
    let mean = v.iter().sum::<f64>() / v.len() as f64;
    let p = |q: f64| v[((v.len() - 1) as f64 * q).round() as usize];
    println!(
        "  {label:<28} n={:<5} mean {:>7.3} ms  p50 {:>7.3}  p99 {:>7.3}  max {:>7.3}",
        v.len(),
        mean,
        p(0.5),
        p(0.99),
        p(1.0)
    );
}

fn main() {
    let path = std::env::args().nth(1).unwrap_or_else(|| {
        concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/../../testdata/vocab/ggml-vocab-qwen2.gguf"
        )
        .to_string()
    });
    let f = GgufFile::open(&path).expect("vocab");
    let tok = Tokenizer::from_gguf(&f).expect("tokenizer");
    let t0 = Instant::now();
    let mask = Arc::new(TokenMask::new(&tok));
    println!(
        "{path}\n  vocab {} tokens, trie {} nodes, longest token {} bytes, TokenMask::new {:.1} ms",
        mask.n_vocab(),
        mask.n_nodes(),
        mask.max_token_len(),
        t0.elapsed().as_secs_f64() * 1e3
    );
    let constraints: Vec<(&str, Grammar)> = vec![
        ("json_object", Grammar::json_object(JsonOptions::default())),
        (
            "schema: person",
            JsonSchemaConstraint::compile(&json!({
                "type": "object",
                "properties": {
                    "name": {"type": "string"},
                    "age": {"type": "integer", "minimum": 0, "maximum": 130},
                    "email": {"type": "string", "format": "email"},
                    "bio": {"type": "string", "maxLength": 400},
                    "tags": {"type": "array", "items": {"type": "string"}}
                },
                "required": ["name", "age", "bio", "tags"]
            }))
            .expect("schema"),
        ),
        (
            "schema: pattern string",
            JsonSchemaConstraint::compile(&json!({"type": "object", "properties": {"s": {"type": "string", "pattern": "^[A-Za-z ]+[0-9]*$"}}, "required": ["s"]}))
                .expect("schema"),
        ),
    ];
    let t0 = Instant::now();
    mask.prewarm_strings();
    println!(
        "  prewarm_strings {:.1} ms",
        t0.elapsed().as_secs_f64() * 1e3
    );
    for (name, g) in constraints {
        let g = Arc::new(g);
        let mut in_str = Vec::new();
        let mut other = Vec::new();
        let mut first = Vec::new();
        for seed in 0..8u64 {
            let mut rng = ChaCha8Rng::seed_from_u64(seed);
            let mut m = Matcher::new(mask.clone(), g.clone());
            let mut logits = vec![0f32; mask.n_vocab()];
            let mut text = Vec::new();
            for step in 0..200 {
                // Inside a string when an odd number of unescaped quotes so far
                // (good enough for labelling the timing).
                let quotes = text.iter().filter(|&&b| b == b'"').count();
                let t = Instant::now();
                let allowed = m.compute_mask().clone();
                let ms = t.elapsed().as_secs_f64() * 1e3;
                if step == 0 && seed == 0 {
                    first.push(ms);
                } else if quotes % 2 == 1 {
                    in_str.push(ms);
                } else {
                    other.push(ms);
                }
                for l in logits.iter_mut() {
                    *l = rng.random::<f32>();
                }
                allowed.apply_to_logits(&mut logits);
                let mut best = 0;
                for (i, &x) in logits.iter().enumerate() {
                    if x > logits[best] {
                        best = i;
                    }
                }
                if m.accept_token(best as u32).is_err() || mask.is_eog(best as u32) {
                    break;
                }
                text.extend_from_slice(mask.piece(best as u32));
            }
        }
        println!("{name}");
        stats("first step (cold)", &mut first);
        stats("inside strings", &mut in_str);
        stats("structural / numbers", &mut other);
        let mut all: Vec<f64> = in_str.iter().chain(other.iter()).copied().collect();
        stats("all steps", &mut all);
    }
}
