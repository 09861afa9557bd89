//! The training forward pass against Hearth's inference engine on the same
//! saved GGUF file, for Llama- and Qwen3-shaped networks.
//!
//! Tolerances:
//! * F32 weights with an F32 KV cache: the two implementations differ only in
//!   summation order and in the engine's ggml-style `exp` polynomial (≤ ~2
//!   ulp), so logits agree to ~1e-6 of their scale (measured 8e-7); 1e-5
//!   is allowed.
//! * F16 weights with the engine's default F16 KV cache: the engine rounds
//!   every activation to f16 before each product (ggml's `vec_dot_type`),
//!   and q, K, V and the attention weights as well, each a relative error up
//!   to 2^-11 ≈ 4.9e-4. Through a few layers and a matrix product of width
//!   `n_embd` these add up to ~2e-3 of the logit scale (measured: 8e-3 on
//!   a scale of 4.3), so 5e-3 of the largest |logit| is allowed, and the
//!   probabilities must agree to 2e-3 (measured 4e-4).

use hearth_distill::exec::{logits, Workspace};
use hearth_distill::export::{write_gguf, ExportOptions};
use hearth_distill::net::{Net, NetConfig};
use hearth_distill::rng::Rng;
use hearth_formats::{GgmlType, GgufFile};
use hearth_models::config::RopeLayout;
use hearth_models::pool::ThreadPool;
use hearth_models::{KvCache, KvType, Logits, Scratch, SeqInput};
use std::sync::Arc;

fn softmax(z: &[f32]) -> Vec<f64> {
    let m = z.iter().fold(f32::NEG_INFINITY, |a, &b| a.max(b)) as f64;
    let e: Vec<f64> = z.iter().map(|&v| (v as f64 - m).exp()).collect();
    let s: f64 = e.iter().sum();
    e.iter().map(|v| v / s).collect()
}

fn compare(ty: GgmlType, kv: KvType, tol_logit: f32, tol_prob: f64) {
    compare_cfg(NetConfig::llama(96, 64, 2, 4, 2, 96, 48, ty == GgmlType::F32), ty, kv, tol_logit, tol_prob);
}

/// A Qwen3-shaped network: halves RoPE, per-head q/k norms, head size 24
/// (not n_embd / n_head = 16).
fn qwen3_cfg(tied: bool) -> NetConfig {
    let mut c = NetConfig::llama(96, 64, 2, 4, 2, 96, 48, tied);
    c.head_dim = 24;
    c.rope.layout = RopeLayout::Halves;
    c.rope.n_rot = 24;
    c.rope.freq_base = 1_000_000.0;
    c.attn_scale = 1.0 / 24f32.sqrt();
    c.norm_eps = 1e-6;
    c.qk_norm = true;
    c
}

fn compare_cfg(cfg: NetConfig, ty: GgmlType, kv: KvType, tol_logit: f32, tol_prob: f64) {
    let net = Net::new_scratch(cfg).unwrap();
    // Larger than the 0.02 training init so attention is far from uniform.
    let mut rng = Rng::new(11);
    let mut params = net.init_scratch(&mut rng);
    for info in &net.params.tensors {
        if info.shape.len() == 2 {
            params[info.range()].iter_mut().for_each(|v| *v = (rng.normal() * 0.15) as f32);
        } else if info.name.contains("attn_q_norm") || info.name.contains("attn_k_norm") {
            params[info.range()].iter_mut().for_each(|v| *v = (1.0 + 0.5 * rng.normal()) as f32);
        }
    }
    let arch = hearth_distill::export::arch_of(&net).unwrap();
    let dir = std::env::temp_dir().join(format!("hearth-distill-parity-{}-{arch}-{ty}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("m.gguf");
    write_gguf(&path, &net, &params, &ExportOptions { matrix_type: ty, name: "parity".into(), metadata: vec![] }).unwrap();

    let tokens: Vec<u32> = (0..40).map(|_| rng.below(96) as u32).collect();
    let pool = ThreadPool::new(2);
    // Training side: the weights exactly as stored (F16 values for F16).
    let file = Arc::new(GgufFile::open(&path).unwrap());
    let dec = hearth_models::load_gguf(Arc::clone(&file)).unwrap();
    assert_eq!(dec.cfg.arch, arch);
    let stored: Vec<f32> = {
        let mut p = params.clone();
        if ty == GgmlType::F16 {
            for info in &net.params.tensors {
                if info.shape.len() == 2 {
                    p[info.range()].iter_mut().for_each(|v| *v = half::f16::from_f32(*v).to_f32());
                }
            }
        }
        p
    };
    let mut ws = Workspace::new();
    let train = logits(&pool, &net, &stored, 1, tokens.len(), &tokens, &mut ws).unwrap();

    let mut cache = KvCache::new(&dec.cfg, 48, kv, kv);
    let mut out = Vec::new();
    let mut seq = [SeqInput { tokens: &tokens, cache: &mut cache, logits: Logits::All, out: &mut out }];
    dec.forward(&mut seq, &pool, &mut Scratch::default()).unwrap();
    assert_eq!(out.len(), train.len());

    let scale = train.iter().fold(0f32, |m, v| m.max(v.abs()));
    let mut worst = 0f32;
    let mut worst_p = 0f64;
    let nv = 96;
    for t in 0..tokens.len() {
        let (a, b) = (&train[t * nv..(t + 1) * nv], &out[t * nv..(t + 1) * nv]);
        for (x, y) in a.iter().zip(b) {
            worst = worst.max((x - y).abs());
        }
        for (x, y) in softmax(a).iter().zip(softmax(b)) {
            worst_p = worst_p.max((x - y).abs());
        }
    }
    eprintln!("{arch}, {ty} weights, {kv:?} cache: max |Δlogit| {worst:e} (scale {scale}), max |Δp| {worst_p:e}");
    assert!(worst <= tol_logit * scale, "max logit difference {worst} exceeds {} x {scale}", tol_logit);
    assert!(worst_p <= tol_prob, "max probability difference {worst_p}");
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn f32_weights_f32_cache_agree_closely() {
    compare(GgmlType::F32, KvType::F32, 1e-5, 1e-6);
}

#[test]
fn f16_weights_f16_cache_agree_within_f16_rounding() {
    compare(GgmlType::F16, KvType::F16, 5e-3, 2e-3);
}

#[test]
fn qwen3_f32_weights_f32_cache_agree_closely() {
    compare_cfg(qwen3_cfg(true), GgmlType::F32, KvType::F32, 1e-5, 1e-6);
}

#[test]
fn qwen3_f16_weights_f16_cache_agree_within_f16_rounding() {
    compare_cfg(qwen3_cfg(false), GgmlType::F16, KvType::F16, 5e-3, 2e-3);
}
