//! Every architecture in `hearth_models::arch::REGISTRY` loads a tiny random model
//! and runs it: finite logits, a KV cache that gives the same logits whether a
//! sequence is fed as one batch or one token at a time, and a typed error (never a
//! silent truncation) when the context is exceeded.
//!
//! The models are written with hearth-formats' `GgufWriter` (512-token synthetic
//! vocabulary, no tokenizer: the decoder only needs `{arch}.vocab_size`). Adding an
//! architecture to the registry means adding its tensor layout to [`spec`]; the
//! test refuses to skip an entry it does not know.

use hearth_formats::{GgmlType, GgufFile, GgufWriter, MetaValue};
use hearth_models::{KvCache, KvType, Logits, ModelError, Scratch, SeqInput, ThreadPool};
use std::sync::Arc;

const N_VOCAB: u64 = 512;
const N_EMBD: u64 = 64;
const N_HEAD: u64 = 4;
const N_HEAD_KV: u64 = 2;
const N_FF: u64 = 128;
const N_LAYER: u64 = 2;
const N_CTX: u64 = 24;

/// What distinguishes an architecture's tensors (llama.cpp src/llama-arch.cpp names).
struct Spec {
    qkv_bias: bool,
    qk_norm: bool,
    /// Head size written as `attention.key_length`, when it differs from n_embd / n_head.
    head_dim: Option<u64>,
}

fn spec(arch: &str) -> Spec {
    match arch {
        "llama" => Spec { qkv_bias: false, qk_norm: false, head_dim: None },
        "qwen2" => Spec { qkv_bias: true, qk_norm: false, head_dim: None },
        // Qwen3: head size independent of n_embd / n_head, like Qwen3-0.6B.
        "qwen3" => Spec { qkv_bias: false, qk_norm: true, head_dim: Some(32) },
        other => panic!(
            "architecture {other:?} is in the registry but has no tiny-model spec in crates/models/tests/registry.rs; add one"
        ),
    }
}

/// SplitMix64 (seeded: randomness is passed in).
struct Rng(u64);
impl Rng {
    fn uniform(&mut self) -> f32 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^= z >> 31;
        ((z >> 40) as f32 / (1u64 << 24) as f32) * 2.0 - 1.0
    }
}

/// A tiny model of `arch` with its matrices in `ty`, as GGUF bytes.
fn tiny_model(arch: &str, ty: GgmlType, seed: u64) -> Vec<u8> {
    let s = spec(arch);
    let hd = s.head_dim.unwrap_or(N_EMBD / N_HEAD);
    let (q, kv) = (N_HEAD * hd, N_HEAD_KV * hd);
    let mut w = GgufWriter::new();
    let u = |v: u64| MetaValue::U32(v as u32);
    let k = |key: &str| format!("{arch}.{key}");
    w.add_meta("general.architecture", MetaValue::String(arch.into())).unwrap();
    w.add_meta(k("block_count"), u(N_LAYER)).unwrap();
    w.add_meta(k("context_length"), u(N_CTX)).unwrap();
    w.add_meta(k("embedding_length"), u(N_EMBD)).unwrap();
    w.add_meta(k("feed_forward_length"), u(N_FF)).unwrap();
    w.add_meta(k("attention.head_count"), u(N_HEAD)).unwrap();
    w.add_meta(k("attention.head_count_kv"), u(N_HEAD_KV)).unwrap();
    w.add_meta(k("attention.layer_norm_rms_epsilon"), MetaValue::F32(1e-6)).unwrap();
    w.add_meta(k("rope.freq_base"), MetaValue::F32(10000.0)).unwrap();
    w.add_meta(k("vocab_size"), u(N_VOCAB)).unwrap();
    if let Some(hd) = s.head_dim {
        w.add_meta(k("attention.key_length"), u(hd)).unwrap();
        w.add_meta(k("attention.value_length"), u(hd)).unwrap();
    }
    // (name, dims, type, scale, offset): uniform(-scale, scale) + offset.
    let mut t: Vec<(String, Vec<u64>, GgmlType, f32, f32)> = Vec::new();
    let mat = |fan_in: u64| (3.0 / fan_in as f32).sqrt();
    t.push(("token_embd.weight".into(), vec![N_EMBD, N_VOCAB], ty, 1.0, 0.0));
    t.push(("output_norm.weight".into(), vec![N_EMBD], GgmlType::F32, 0.2, 2.0));
    t.push(("output.weight".into(), vec![N_EMBD, N_VOCAB], ty, mat(N_EMBD), 0.0));
    for i in 0..N_LAYER {
        let n = |x: &str| format!("blk.{i}.{x}");
        t.push((n("attn_norm.weight"), vec![N_EMBD], GgmlType::F32, 0.2, 1.0));
        t.push((n("attn_q.weight"), vec![N_EMBD, q], ty, mat(N_EMBD), 0.0));
        t.push((n("attn_k.weight"), vec![N_EMBD, kv], ty, mat(N_EMBD), 0.0));
        t.push((n("attn_v.weight"), vec![N_EMBD, kv], ty, mat(N_EMBD), 0.0));
        if s.qkv_bias {
            t.push((n("attn_q.bias"), vec![q], GgmlType::F32, 0.2, 0.0));
            t.push((n("attn_k.bias"), vec![kv], GgmlType::F32, 0.2, 0.0));
            t.push((n("attn_v.bias"), vec![kv], GgmlType::F32, 0.2, 0.0));
        }
        if s.qk_norm {
            t.push((n("attn_q_norm.weight"), vec![hd], GgmlType::F32, 0.2, 1.0));
            t.push((n("attn_k_norm.weight"), vec![hd], GgmlType::F32, 0.2, 1.0));
        }
        t.push((n("attn_output.weight"), vec![q, N_EMBD], ty, mat(q), 0.0));
        t.push((n("ffn_norm.weight"), vec![N_EMBD], GgmlType::F32, 0.2, 1.0));
        t.push((n("ffn_gate.weight"), vec![N_EMBD, N_FF], ty, mat(N_EMBD), 0.0));
        t.push((n("ffn_up.weight"), vec![N_EMBD, N_FF], ty, mat(N_EMBD), 0.0));
        t.push((n("ffn_down.weight"), vec![N_FF, N_EMBD], ty, mat(N_FF), 0.0));
    }
    let mut rng = Rng(seed);
    let mut data = Vec::new();
    for (name, dims, tty, scale, offset) in &t {
        w.add_tensor(name.clone(), dims, *tty).unwrap();
        let n: u64 = dims.iter().product();
        let vals: Vec<f32> = (0..n).map(|_| rng.uniform() * scale + offset).collect();
        let rb = tty.row_bytes(dims[0]).unwrap() as usize;
        let mut bytes = vec![0u8; rb * (n / dims[0]) as usize];
        for (src, dst) in vals.chunks_exact(dims[0] as usize).zip(bytes.chunks_exact_mut(rb)) {
            hearth_kernels::quantize_row_ref(*tty, src, dst);
        }
        data.push(bytes);
    }
    w.write_to_vec(&data).unwrap()
}

fn load(arch: &str, ty: GgmlType) -> hearth_models::Decoder {
    let bytes = tiny_model(arch, ty, 0x5EED ^ ty.id() as u64);
    let file = Arc::new(GgufFile::from_bytes(bytes).unwrap_or_else(|e| panic!("{arch}: {e}")));
    hearth_models::load_gguf(file).unwrap_or_else(|e| panic!("{arch}/{ty}: {e}"))
}

const TOKENS: [u32; 12] = [1, 7, 300, 42, 511, 0, 99, 256, 13, 13, 400, 5];

/// Logits of every position, the whole sequence in one forward call.
fn batch_logits(d: &hearth_models::Decoder, kv: KvType, pool: &ThreadPool) -> Vec<f32> {
    let mut cache = KvCache::new(&d.cfg, N_CTX as usize, kv, kv);
    let mut out = Vec::new();
    let mut s = Scratch::default();
    let mut seq = [SeqInput { tokens: &TOKENS, cache: &mut cache, logits: Logits::All, out: &mut out }];
    d.forward(&mut seq, pool, &mut s).unwrap();
    out
}

/// The same, one token per forward call.
fn stepwise_logits(d: &hearth_models::Decoder, kv: KvType, pool: &ThreadPool) -> Vec<f32> {
    let mut cache = KvCache::new(&d.cfg, N_CTX as usize, kv, kv);
    let mut s = Scratch::default();
    let mut all = Vec::new();
    for t in TOKENS {
        let mut out = Vec::new();
        let mut seq = [SeqInput { tokens: std::slice::from_ref(&t), cache: &mut cache, logits: Logits::Last, out: &mut out }];
        d.forward(&mut seq, pool, &mut s).unwrap();
        all.extend_from_slice(&out[..N_VOCAB as usize]);
    }
    all
}

#[test]
fn every_registered_architecture_runs_with_finite_logits() {
    let pool = ThreadPool::new(2);
    for entry in hearth_models::arch::REGISTRY {
        for ty in [GgmlType::F32, GgmlType::F16, GgmlType::Q8_0, GgmlType::Q4_0] {
            let d = load(entry.name, ty);
            assert_eq!(d.cfg.n_vocab, N_VOCAB as usize, "{}", entry.name);
            let out = batch_logits(&d, KvType::F16, &pool);
            assert_eq!(out.len(), TOKENS.len() * N_VOCAB as usize, "{}/{ty}", entry.name);
            assert!(out.iter().all(|x| x.is_finite()), "{}/{ty}: non-finite logits", entry.name);
            // Not degenerate: positions see different contexts.
            let v = N_VOCAB as usize;
            assert_ne!(out[..v], out[v..2 * v], "{}/{ty}", entry.name);
        }
    }
}

/// Prefilling n tokens and n single-token steps fill the same KV cache: with an
/// F32 cache and F32 weights the only difference is float summation order.
#[test]
fn kv_cache_prefill_equals_single_steps() {
    let pool = ThreadPool::new(2);
    for entry in hearth_models::arch::REGISTRY {
        for (ty, kv, tol) in [(GgmlType::F32, KvType::F32, 1e-4f32), (GgmlType::F16, KvType::F16, 2e-2)] {
            let d = load(entry.name, ty);
            let a = batch_logits(&d, kv, &pool);
            let b = stepwise_logits(&d, kv, &pool);
            assert_eq!(a.len(), b.len());
            let (mut worst, mut at) = (0f32, 0);
            for (i, (x, y)) in a.iter().zip(&b).enumerate() {
                let dd = (x - y).abs() / (1.0 + y.abs());
                if dd > worst {
                    (worst, at) = (dd, i);
                }
            }
            assert!(
                worst <= tol,
                "{}/{ty}: batch vs single-step logits differ by {worst:e} (relative) at position {}, id {}",
                entry.name,
                at / N_VOCAB as usize,
                at % N_VOCAB as usize
            );
        }
    }
}

#[test]
fn exceeding_the_context_is_a_typed_error() {
    let pool = ThreadPool::new(1);
    for entry in hearth_models::arch::REGISTRY {
        let d = load(entry.name, GgmlType::F32);
        assert_eq!(d.cfg.n_ctx_train, N_CTX as usize);
        let mut cache = KvCache::new(&d.cfg, N_CTX as usize, KvType::F16, KvType::F16);
        let mut s = Scratch::default();
        let mut out = Vec::new();
        let fill: Vec<u32> = (0..N_CTX as u32).collect();
        let mut seq = [SeqInput { tokens: &fill, cache: &mut cache, logits: Logits::Last, out: &mut out }];
        d.forward(&mut seq, &pool, &mut s).unwrap_or_else(|e| panic!("{}: a full context must fit: {e}", entry.name));
        let mut seq = [SeqInput { tokens: &[3], cache: &mut cache, logits: Logits::Last, out: &mut out }];
        match d.forward(&mut seq, &pool, &mut s) {
            Err(ModelError::ContextOverflow { needed, limit }) => {
                assert_eq!((needed, limit), (N_CTX as usize + 1, N_CTX as usize), "{}", entry.name)
            }
            other => panic!("{}: expected ContextOverflow, got {:?}", entry.name, other.map(|_| ())),
        }
        assert_eq!(cache.len(), N_CTX as usize, "{}: a refused step must not touch the cache", entry.name);
        // A batch that does not fit is refused whole, not truncated.
        let mut cache = KvCache::new(&d.cfg, 4, KvType::F16, KvType::F16);
        let mut seq = [SeqInput { tokens: &TOKENS, cache: &mut cache, logits: Logits::All, out: &mut out }];
        assert!(matches!(d.forward(&mut seq, &pool, &mut s), Err(ModelError::ContextOverflow { .. })), "{}", entry.name);
        assert_eq!(cache.len(), 0, "{}", entry.name);
    }
}
