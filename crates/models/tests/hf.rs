//! Hugging Face folders (testdata/hf, made by tools/fixtures/gen_hf.py with
//! transformers) load through `hf::load_folder` and reproduce transformers'
//! float32 logits and greedy tokens.

use hearth_models::{hf, KvCache, KvType, Logits, Scratch, SeqInput, ThreadPool};
use serde_json::Value;
use std::path::PathBuf;
use std::sync::Arc;

fn dir(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../testdata/hf").join(name)
}

/// Largest first-step logit difference against transformers.
fn check(name: &str, arch: &str, tol: f32) -> f32 {
    let d = dir(name);
    assert!(hf::is_folder(&d));
    let file = Arc::new(hf::load_folder(&d).expect("folder converts"));
    let model = hearth_models::load_gguf(file).expect("converted folder loads");
    assert_eq!(model.cfg.arch, arch);
    let exp: Value = serde_json::from_str(&std::fs::read_to_string(d.join("expected.json")).unwrap()).unwrap();
    let pool = ThreadPool::new(2);
    let mut scratch = Scratch::default();
    let mut worst = 0f32;
    for p in exp["prompts"].as_array().unwrap() {
        let ids: Vec<u32> = p["prompt_ids"].as_array().unwrap().iter().map(|v| v.as_u64().unwrap() as u32).collect();
        let want: Vec<f32> = p["first_logits"].as_array().unwrap().iter().map(|v| v.as_f64().unwrap() as f32).collect();
        let gen: Vec<u32> = p["generated_ids"].as_array().unwrap().iter().map(|v| v.as_u64().unwrap() as u32).collect();
        let margins: Vec<f64> = p["margins"].as_array().unwrap().iter().map(|v| v.as_f64().unwrap()).collect();
        // 64 = the Phi-3 fixture's original context: short LongRoPE factors,
        // as transformers uses for sequences that fit in it.
        let mut cache = KvCache::new(&model.cfg, 64, KvType::F32, KvType::F32);
        let mut out = Vec::new();
        model.forward(&mut [SeqInput { tokens: &ids, cache: &mut cache, logits: Logits::Last, out: &mut out }], &pool, &mut scratch).unwrap();
        let diff = out.iter().zip(&want).map(|(a, b)| (a - b).abs()).fold(0f32, f32::max);
        worst = worst.max(diff);
        assert!(diff <= tol, "{name} prompt {ids:?}: first logits differ by {diff}");
        for (step, &tok) in gen.iter().enumerate() {
            let best = argmax(&out);
            assert!(
                best == tok || margins[step] < 2.0 * tol as f64,
                "{name} prompt {ids:?}: step {step} picked {best}, transformers {tok} (margin {})",
                margins[step]
            );
            model.forward(&mut [SeqInput { tokens: &[tok], cache: &mut cache, logits: Logits::Last, out: &mut out }], &pool, &mut scratch).unwrap();
        }
    }
    eprintln!("{name}: largest first-step logit difference {worst}");
    worst
}

fn argmax(x: &[f32]) -> u32 {
    let mut best = 0;
    for (i, &v) in x.iter().enumerate() {
        if v > x[best] {
            best = i;
        }
    }
    best as u32
}

#[test]
fn llama_folder_matches_transformers() {
    check("llama", "llama", 1e-3);
}

#[test]
fn qwen2_folder_matches_transformers() {
    check("qwen2", "qwen2", 1e-3);
}

#[test]
fn qwen3_folder_matches_transformers() {
    check("qwen3", "qwen3", 1e-3);
}

#[test]
fn phi3_folder_matches_transformers() {
    check("phi3", "phi3", 1e-3);
}

// Gemma's GELU goes through ggml's f16 lookup table (ops::geglu, for
// parity with llama.cpp); transformers evaluates tanh-GELU in f32. That
// alone moves these logits by ~1.5e-3.
#[test]
fn gemma2_folder_matches_transformers() {
    check("gemma2", "gemma2", 5e-3);
}

#[test]
fn gemma3_folder_matches_transformers() {
    check("gemma3", "gemma3", 5e-3);
}
