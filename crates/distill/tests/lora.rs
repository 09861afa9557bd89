//! LoRA on a frozen GGUF base: adapter gradients against finite differences
//! (f64), PEFT files round-tripping through the engine's reader, the engine's
//! merged model against the training forward pass, `merge_gguf` against the
//! in-memory merge, and a short `train_lora` run that lowers the loss.
//!
//! Tolerances as in `gradcheck.rs` (central differences, h = 1e-5: 1e-8
//! absolute + 1e-6 relative) and `engine_parity.rs` (F32 weights and F32 KV
//! cache: 1e-5 of the logit scale).

use hearth_distill::bpe::{self, BpeConfig, CHATML_TEMPLATE};
use hearth_distill::exec::{forward_backward, logits, Batch, LossWeights, Workspace, IGNORE};
use hearth_distill::export::{write_gguf, ExportOptions};
use hearth_distill::lora::{merge_gguf, params_from_adapter, save_peft, train_lora, LoraTrainOptions};
use hearth_distill::net::{LoraConfig, Net, NetConfig, Target};
use hearth_distill::rng::Rng;
use hearth_engine::lora::PeftAdapter;
use hearth_engine::{Engine, EngineConfig};
use hearth_formats::{GgmlType, GgufFile};
use hearth_models::config::{RopeLayout, RopeScaling};
use hearth_models::pool::ThreadPool;
use hearth_models::{Decoder, KvCache, KvType, Logits, Scratch, SeqInput};
use std::path::{Path, PathBuf};
use std::sync::Arc;

fn tmp(name: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("hearth-lora-{name}-{}", std::process::id()));
    std::fs::create_dir_all(&d).unwrap();
    d
}

/// A small random Llama model with a real (tiny) tokenizer and ChatML template.
fn tiny_base(dir: &Path, n_embd: usize, n_layer: usize, seed: u64) -> PathBuf {
    tiny_base_with(dir, seed, |nv| NetConfig::llama(nv, n_embd, n_layer, 4, 2, 24, 64, false))
}

/// A small random Qwen3-shaped model: halves RoPE, per-head q/k norms, and a
/// head size (12) that is not `n_embd / n_head` (8).
fn tiny_qwen3(dir: &Path, seed: u64) -> PathBuf {
    tiny_base_with(dir, seed, |nv| {
        let mut c = NetConfig::llama(nv, 32, 2, 4, 2, 24, 64, false);
        c.head_dim = 12;
        c.rope.layout = RopeLayout::Halves;
        c.rope.n_rot = 12;
        c.rope.freq_base = 1_000_000.0;
        c.attn_scale = 1.0 / 12f32.sqrt();
        c.norm_eps = 1e-6;
        c.qk_norm = true;
        c
    })
}

fn tiny_base_with(dir: &Path, seed: u64, cfg: impl Fn(usize) -> NetConfig) -> PathBuf {
    let text = "What is a byte? A byte is eight bits. What is a bit? A bit is a binary digit. The user asks and the assistant answers.";
    let specials = ["<|endoftext|>", "<|im_start|>", "<|im_end|>"];
    let b = bpe::train([text], &BpeConfig { vocab_size: 300, min_frequency: 2, special_tokens: specials.iter().map(|s| s.to_string()).collect() }).unwrap();
    let meta = b.gguf_metadata("<|endoftext|>", "<|im_end|>", "<|endoftext|>", CHATML_TEMPLATE).unwrap();
    let nv = b.tokens.len();
    let net = Net::new_scratch(cfg(nv)).unwrap();
    let mut rng = Rng::new(seed);
    let mut params = net.init_scratch(&mut rng);
    for info in &net.params.tensors {
        if info.shape.len() == 2 {
            params[info.range()].iter_mut().for_each(|v| *v = (rng.normal() * 0.15) as f32);
        } else if info.name.contains("attn_q_norm") || info.name.contains("attn_k_norm") {
            // Not all ones, so a wrongly placed or missing norm shows.
            params[info.range()].iter_mut().for_each(|v| *v = (1.0 + 0.5 * rng.normal()) as f32);
        }
    }
    let path = dir.join("base.gguf");
    write_gguf(&path, &net, &params, &ExportOptions { matrix_type: GgmlType::F32, name: "tiny".into(), metadata: meta }).unwrap();
    path
}

fn load_decoder(path: &Path) -> Decoder {
    hearth_models::load_gguf(Arc::new(GgufFile::open(path).unwrap())).unwrap()
}

fn all_targets(rank: usize, alpha: f32) -> LoraConfig {
    LoraConfig { rank, alpha, targets: Target::ALL.to_vec() }
}

/// Random values for both factors (B is zero at PEFT's init, which would
/// leave A without gradient).
fn random_lora(net: &Net, rng: &mut Rng, std: f64) -> Vec<f64> {
    (0..net.params.len).map(|_| rng.normal() * std).collect()
}

#[test]
fn lora_gradients_match_finite_differences() {
    let dir = tmp("grad");
    lora_gradcheck(&load_decoder(&tiny_base(&dir, 16, 2, 1)));
    std::fs::remove_dir_all(&dir).unwrap();
}

/// Through the frozen per-head q/k norms of a Qwen3 base.
#[test]
fn qwen3_lora_gradients_match_finite_differences() {
    let dir = tmp("grad-qwen3");
    let dec = load_decoder(&tiny_qwen3(&dir, 4));
    assert_eq!(dec.cfg.arch, "qwen3");
    assert!(dec.w.layers[0].q_norm.is_some());
    lora_gradcheck(&dec);
    std::fs::remove_dir_all(&dir).unwrap();
}

fn lora_gradcheck(dec: &Decoder) {
    let net = Net::from_decoder(dec, &all_targets(2, 3.0)).unwrap();
    let mut rng = Rng::new(7);
    let p = random_lora(&net, &mut rng, 0.3);
    let (b, t) = (2, 6);
    let nv = net.cfg.n_vocab;
    let inputs: Vec<u32> = (0..b * t).map(|_| rng.below(nv) as u32).collect();
    let mut targets: Vec<u32> = (0..b * t).map(|_| rng.below(nv) as u32).collect();
    targets[2] = IGNORE;
    let teacher: Vec<Vec<(u32, f32)>> =
        (0..b * t).map(|r| if r % 2 == 0 { vec![(rng.below(nv) as u32, -0.7), ((r % nv) as u32, -1.9)] } else { Vec::new() }).collect();
    let kl = 0.5;
    let batch = Batch { b, t, inputs: &inputs, targets: &targets, teacher: Some(&teacher) };
    let pool = ThreadPool::new(2);
    let mut ws = Workspace::new();
    let w = LossWeights { scale: 0.1, kl, kl_rest: false };
    let loss = |p: &[f64], ws: &mut Workspace<f64>| {
        let s = forward_backward(&pool, &net, p, None, &batch, w, ws).unwrap();
        (s.ce + kl * s.kl) * 0.1
    };
    let mut g = vec![0f64; p.len()];
    forward_backward(&pool, &net, &p, Some(&mut g), &batch, w, &mut ws).unwrap();
    let mut q = p.clone();
    let h = 1e-5;
    for info in &net.params.tensors {
        assert!(g[info.range()].iter().any(|v| v.abs() > 1e-9), "{} got no gradient", info.name);
        for i in info.range() {
            q[i] = p[i] + h;
            let lp = loss(&q, &mut ws);
            q[i] = p[i] - h;
            let lm = loss(&q, &mut ws);
            q[i] = p[i];
            let fd = (lp - lm) / (2.0 * h);
            assert!((g[i] - fd).abs() <= 1e-8 + 1e-6 * fd.abs(), "{}[{}]: analytic {} vs finite difference {fd}", info.name, i - info.offset, g[i]);
        }
    }
}

fn engine_logits(dec: &Decoder, tokens: &[u32]) -> Vec<f32> {
    let mut cache = KvCache::new(&dec.cfg, tokens.len(), KvType::F32, KvType::F32);
    let mut out = Vec::new();
    let mut seq = [SeqInput { tokens, cache: &mut cache, logits: Logits::All, out: &mut out }];
    dec.forward(&mut seq, &ThreadPool::new(2), &mut Scratch::default()).unwrap();
    out
}

#[test]
fn peft_adapter_round_trips_and_merges_like_the_training_forward() {
    let dir = tmp("peft");
    peft_round_trip(&dir, &tiny_base(&dir, 32, 2, 2));
    std::fs::remove_dir_all(&dir).unwrap();
}

/// The same on a Qwen3 base: the training forward (frozen q/k norms, live
/// adapters) against the engine's merged model, and the unadapted Net
/// against the engine's own forward.
#[test]
fn qwen3_peft_adapter_merges_like_the_training_forward() {
    let dir = tmp("peft-qwen3");
    let base = tiny_qwen3(&dir, 5);
    let dec = load_decoder(&base);
    let net = Net::from_decoder(&dec, &all_targets(4, 8.0)).unwrap();
    assert!(net.cfg.qk_norm && net.cfg.head_dim == 12);
    // PEFT's initialisation (B = 0) is the base model exactly.
    let p0 = net.init_lora(&mut Rng::new(3));
    let tokens: Vec<u32> = (0..24).map(|i| (i * 7 % net.cfg.n_vocab) as u32).collect();
    let train = logits(&ThreadPool::new(2), &net, &p0, 1, tokens.len(), &tokens, &mut Workspace::new()).unwrap();
    let eng = engine_logits(&dec, &tokens);
    let scale = train.iter().fold(0f32, |m, v| m.max(v.abs()));
    let diff = train.iter().zip(&eng).fold(0f32, |m, (a, b)| m.max((a - b).abs()));
    eprintln!("qwen3 base: training forward vs engine max |Δ| {diff:e} (scale {scale})");
    assert!(diff <= 1e-5 * scale, "training forward differs from the engine by {diff}");
    peft_round_trip(&dir, &base);
    std::fs::remove_dir_all(&dir).unwrap();
}

fn peft_round_trip(dir: &Path, base: &Path) {
    peft_round_trip_tol(dir, base, 1e-5)
}

/// As [`peft_round_trip`], with the merged-vs-training tolerance relative to
/// the logit scale.
fn peft_round_trip_tol(dir: &Path, base: &Path, tol: f32) {
    let dec = load_decoder(base);
    let net = Net::from_decoder(&dec, &all_targets(4, 8.0)).unwrap();
    let mut rng = Rng::new(9);
    let p: Vec<f32> = random_lora(&net, &mut rng, 0.2).iter().map(|&v| v as f32).collect();
    let adir = dir.join("adapter");
    save_peft(&adir, &net, &p, "base.gguf").unwrap();
    let cfg: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(adir.join("adapter_config.json")).unwrap()).unwrap();
    assert_eq!(cfg["r"], 4);
    assert_eq!(cfg["peft_type"], "LORA");

    let adapter = PeftAdapter::open(&adir).unwrap();
    assert_eq!(adapter.pairs.len(), net.cfg.n_layer * 7);
    assert_eq!(adapter.scale(), 2.0);
    // The Q/K permutation and its inverse: the values come back exactly.
    assert_eq!(params_from_adapter(&net, &adapter).unwrap(), p);

    // Engine merge vs the training forward pass with live adapters.
    let tokens: Vec<u32> = (0..20).map(|_| rng.below(net.cfg.n_vocab) as u32).collect();
    let mut ws = Workspace::new();
    let train = logits(&ThreadPool::new(2), &net, &p, 1, tokens.len(), &tokens, &mut ws).unwrap();
    let merged = adapter.merge_into(&dec).unwrap();
    let eng = engine_logits(&merged, &tokens);
    let base_logits = engine_logits(&dec, &tokens);
    let scale = train.iter().fold(0f32, |m, v| m.max(v.abs()));
    let diff = train.iter().zip(&eng).fold(0f32, |m, (a, b)| m.max((a - b).abs()));
    let moved = base_logits.iter().zip(&eng).fold(0f32, |m, (a, b)| m.max((a - b).abs()));
    eprintln!("merged vs training forward: max |Δ| {diff:e} (scale {scale}); adapter moved logits by {moved}");
    assert!(diff <= tol * scale, "merged model differs from the training forward by {diff}");
    assert!(moved > 100.0 * diff, "the adapter must change the model measurably");

    // merge_gguf writes the same merged weights to disk.
    let out = dir.join("merged.gguf");
    merge_gguf(base, &adir, &out).unwrap();
    let from_file = engine_logits(&load_decoder(&out), &tokens);
    assert_eq!(from_file, eng);
    assert!(GgufFile::open(&out).unwrap().get_str("hearth.merged_adapter").unwrap().is_some());

    // A corrupted adapter is refused with a message, not a panic.
    std::fs::write(adir.join("adapter_config.json"), "{\"r\": 4, \"lora_alpha\": 8, \"use_dora\": true}").unwrap();
    let e = PeftAdapter::open(&adir).unwrap_err();
    assert!(e.to_string().contains("use_dora"), "{e}");
}

#[test]
fn train_lora_lowers_the_loss_and_the_engine_serves_the_adapter() {
    let dir = tmp("train");
    let base = tiny_base(&dir, 32, 1, 3);
    let data = dir.join("train.jsonl");
    let lines = [
        r#"{"messages": [{"role": "user", "content": "What is a byte?"}, {"role": "assistant", "content": "A byte is eight bits."}]}"#,
        r#"{"messages": [{"role": "user", "content": "What is a bit?"}, {"role": "assistant", "content": "A bit is a binary digit."}]}"#,
    ];
    std::fs::write(&data, lines.join("\n") + "\n").unwrap();
    let out = dir.join("adapter");
    let opts = LoraTrainOptions {
        base: base.clone(),
        data: data.clone(),
        valid: Some(data.clone()),
        out: out.clone(),
        rank: 4,
        alpha: 8.0,
        targets: Target::ALL.to_vec(),
        steps: 150,
        batch: 2,
        lr: 2e-2,
        warmup: 2,
        threads: 2,
        progress: false,
        resume: false,
        ..LoraTrainOptions::default()
    };
    let r = train_lora(&opts, &mut |_| {}).unwrap();
    let (before, after) = (r.valid_loss_before.unwrap(), r.valid_loss_after.unwrap());
    eprintln!("valid loss {before:.3} -> {after:.3}");
    assert!(after < 0.5 * before, "loss {before} -> {after}");
    assert!(out.join("adapter_model.safetensors").exists() && out.join("train_report.json").exists());

    // The engine serves base+adapter: greedy answer now follows the data.
    let engine = Engine::load(&base, EngineConfig { threads: 2, ..EngineConfig::default() }).unwrap();
    let tuned = engine.with_adapter(&out).unwrap();
    let a = hearth_distill::demo::answer(&tuned, "What is a byte?", 12).unwrap();
    assert!(a.starts_with("A byte is"), "adapter answer: {a:?}");
    std::fs::remove_dir_all(&dir).unwrap();
}

/// The tiny Phi-3 fixture (`testdata/archs/phi3`, made by llama.cpp's
/// converter conventions): fused `attn_qkv`, fused `ffn_up` (gate rows
/// first), partial halves RoPE with LongRoPE factors, q scaled before
/// attention.
fn phi3_fixture() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../testdata/archs/phi3/model-F32.gguf")
}

/// Adapters on row slices of Phi-3's fused matrices: exact gradients, the
/// unadapted Net equal to the engine, and the saved PEFT adapter (q_proj,
/// k_proj, v_proj, gate_proj, up_proj, as PEFT names them for Phi-3 after
/// unfusing) merged by the engine equal to the training forward.
#[test]
fn phi3_fused_tensors_train_and_serve() {
    let base = phi3_fixture();
    let dec = load_decoder(&base);
    assert_eq!(dec.cfg.arch, "phi3");
    assert!(matches!(dec.w.layers[0].qkv, hearth_models::decoder::Qkv::Fused(_)));
    assert!(matches!(dec.w.layers[0].gate_up, hearth_models::decoder::GateUp::Fused(_)));
    lora_gradcheck(&dec);

    let net = Net::from_decoder(&dec, &all_targets(4, 8.0)).unwrap();
    let p0 = net.init_lora(&mut Rng::new(3));
    let tokens: Vec<u32> = (0..24).map(|i| (i * 37 % net.cfg.n_vocab) as u32).collect();
    let train = logits(&ThreadPool::new(2), &net, &p0, 1, tokens.len(), &tokens, &mut Workspace::new()).unwrap();
    let eng = engine_logits(&dec, &tokens);
    let scale = train.iter().fold(0f32, |m, v| m.max(v.abs()));
    let diff = train.iter().zip(&eng).fold(0f32, |m, (a, b)| m.max((a - b).abs()));
    eprintln!("phi3 base: training forward vs engine max |Δ| {diff:e} (scale {scale})");
    assert!(diff <= 1e-5 * scale, "training forward differs from the engine by {diff}");

    let dir = tmp("peft-phi3");
    peft_round_trip(&dir, &base);
    std::fs::remove_dir_all(&dir).unwrap();
}

fn gemma_fixture(arch: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join(format!("../../testdata/archs/{arch}/model-F32.gguf"))
}

/// The unadapted Net against the engine on `tokens`; returns max |Δlogit|
/// and the logit scale.
fn base_parity(dec: &Decoder, tokens: &[u32]) -> (f32, f32) {
    let net = Net::from_decoder(dec, &all_targets(4, 8.0)).unwrap();
    let p0 = net.init_lora(&mut Rng::new(3));
    let train = logits(&ThreadPool::new(2), &net, &p0, 1, tokens.len(), tokens, &mut Workspace::new()).unwrap();
    let eng = engine_logits(dec, tokens);
    let scale = train.iter().fold(0f32, |m, v| m.max(v.abs()));
    let diff = train.iter().zip(&eng).fold(0f32, |m, (a, b)| m.max((a - b).abs()));
    (diff, scale)
}

/// Gradients through the Gemma operations with windows short enough (3
/// keys) that the 6-token gradient-check sequences are masked.
fn gemma_gradcheck(mut dec: Decoder) {
    for lc in dec.cfg.layers.iter_mut() {
        if lc.sliding_window.is_some() {
            lc.sliding_window = Some(3);
        }
    }
    lora_gradcheck(&dec);
}

/// Gemma 2 (`testdata/archs/gemma2`: sliding window 6 on even layers,
/// attention soft-cap 8, final soft-cap 15, GeGLU, post-norms, embeddings
/// times sqrt(64)): exact adapter gradients, the unadapted Net equal to the
/// engine over 24 tokens (windows active), and the PEFT adapter merged by
/// the engine equal to the training forward.
///
/// Tolerance: the engine evaluates GELU through ggml's f16 table (input and
/// output rounded to f16, ops.rs `gelu_ggml`), training in closed form, so
/// the logits differ by f16 rounding of the feed-forward activations, not by
/// 1e-5 as for the SwiGLU architectures (measured: 3.3e-4 of the logit
/// scale on gemma2, 5.8e-4 on gemma3; emulating the f16 table in the
/// training forward brought the f64 forward within 6e-6 of the logit scale
/// of the engine on gemma2). 2e-3 of the logit scale leaves 3–6× margin and
/// is well below a missing operation (each moves logits by 3% (attention
/// soft-cap) to 110% (embedding scale) of their scale;
/// `gemma_parity_detects_a_missing_operation`).
#[test]
fn gemma2_lora_trains_and_serves() {
    let base = gemma_fixture("gemma2");
    let dec = load_decoder(&base);
    assert_eq!(dec.cfg.arch, "gemma2");
    let net = Net::from_decoder(&dec, &all_targets(2, 4.0)).unwrap();
    assert!(net.cfg.geglu && net.cfg.embed_scale == Some(8.0));
    assert_eq!((net.cfg.attn_softcap, net.cfg.final_softcap), (Some(8.0), Some(15.0)));
    assert_eq!(net.layers.iter().map(|l| l.window).collect::<Vec<_>>(), [Some(6), None, Some(6), None]);
    assert!(net.layers.iter().all(|l| l.post_attn_norm.is_some() && l.post_ffn_norm.is_some()));
    gemma_gradcheck(load_decoder(&base));

    let tokens: Vec<u32> = (0..24).map(|i| (i * 37 % net.cfg.n_vocab) as u32).collect();
    let (diff, scale) = base_parity(&dec, &tokens);
    eprintln!("gemma2 base: training forward vs engine max |Δlogit| {diff:e} (scale {scale})");
    assert!(diff <= 2e-3 * scale, "training forward differs from the engine by {diff}");

    let dir = tmp("peft-gemma2");
    peft_round_trip_tol(&dir, &base, 2e-3);
    std::fs::remove_dir_all(&dir).unwrap();
}

/// Gemma 3 (`testdata/archs/gemma3`: five local layers with window 5 and
/// RoPE base 10000, one global layer with base 1e6 and linear scaling ×8,
/// per-head q/k norms, final soft-cap 20, no attention soft-cap): as for
/// Gemma 2.
#[test]
fn gemma3_lora_trains_and_serves() {
    let base = gemma_fixture("gemma3");
    let dec = load_decoder(&base);
    assert_eq!(dec.cfg.arch, "gemma3");
    let net = Net::from_decoder(&dec, &all_targets(2, 4.0)).unwrap();
    assert!(net.cfg.geglu && net.cfg.qk_norm && net.cfg.attn_softcap.is_none() && net.cfg.final_softcap == Some(20.0));
    let windows: Vec<_> = net.layers.iter().map(|l| l.window).collect();
    assert_eq!(windows, [Some(5), Some(5), Some(5), Some(5), Some(5), None]);
    // Local layers carry their own RoPE (base 10000, unscaled); the global
    // layer uses the network's (base 1e6, scaled).
    let rope = |i: usize| net.layers[i].rope.clone().unwrap_or_else(|| net.cfg.rope.clone());
    for i in 0..5 {
        assert_eq!((rope(i).freq_base, rope(i).scaling), (10000.0, RopeScaling::None), "layer {i}");
    }
    assert_eq!((rope(5).freq_base, rope(5).scaling), (1e6, RopeScaling::Linear { factor: 8.0 }));
    gemma_gradcheck(load_decoder(&base));

    let tokens: Vec<u32> = (0..24).map(|i| (i * 37 % net.cfg.n_vocab) as u32).collect();
    let (diff, scale) = base_parity(&dec, &tokens);
    eprintln!("gemma3 base: training forward vs engine max |Δlogit| {diff:e} (scale {scale})");
    assert!(diff <= 2e-3 * scale, "training forward differs from the engine by {diff}");

    let dir = tmp("peft-gemma3");
    peft_round_trip_tol(&dir, &base, 2e-3);
    std::fs::remove_dir_all(&dir).unwrap();
}

/// The parity tolerance above is meaningful: dropping any one Gemma
/// operation from the training network moves the logits by far more.
#[test]
fn gemma_parity_detects_a_missing_operation() {
    let dec = load_decoder(&gemma_fixture("gemma2"));
    let tokens: Vec<u32> = (0..24).map(|i| (i * 37 % dec.cfg.n_vocab) as u32).collect();
    let eng = engine_logits(&dec, &tokens);
    let net = Net::from_decoder(&dec, &all_targets(2, 4.0)).unwrap();
    let p0 = net.init_lora(&mut Rng::new(3));
    type Break = (&'static str, fn(&mut Net));
    let breaks: [Break; 6] = [
        ("embedding scale", |n| n.cfg.embed_scale = None),
        ("GeGLU", |n| n.cfg.geglu = false),
        ("attention soft-cap", |n| n.cfg.attn_softcap = None),
        ("final soft-cap", |n| n.cfg.final_softcap = None),
        ("post-norms", |n| n.layers.iter_mut().for_each(|l| (l.post_attn_norm, l.post_ffn_norm) = (None, None))),
        ("sliding window", |n| n.layers.iter_mut().for_each(|l| l.window = None)),
    ];
    for (what, f) in breaks {
        let mut broken = net.clone();
        f(&mut broken);
        let train = logits(&ThreadPool::new(2), &broken, &p0, 1, tokens.len(), &tokens, &mut Workspace::new()).unwrap();
        let scale = eng.iter().fold(0f32, |m, v| m.max(v.abs()));
        let diff = train.iter().zip(&eng).fold(0f32, |m, (a, b)| m.max((a - b).abs()));
        eprintln!("without {what}: max |Δlogit| {diff:e} (scale {scale})");
        assert!(diff > 1e-2 * scale, "dropping {what} changed the logits by only {diff}");
    }
}
