//! Every parameter's analytic gradient against central finite differences,
//! both in f64, on tiny models that exercise every operation: embeddings,
//! RMSNorm, biased and unbiased Q/K/V/O, per-head q/k RMSNorm (Qwen3), head
//! sizes other than n_embd / n_head, both RoPE layouts (with partial
//! rotation), grouped-query attention, SwiGLU, tied and untied outputs,
//! ignored targets and the teacher KL term; and the Gemma operations (embedding
//! scale, GeGLU, attention and final soft-caps, post-norms, sliding windows,
//! per-layer RoPE).
//!
//! Tolerances. With step h = 1e-5 the central difference has truncation
//! error h²/6·|L'''| ≈ 1e-11 and rounding error ≈ ε·|L|/h ≈ 1e-16·3/1e-5 ≈
//! 3e-11, so agreement within 1e-8 absolute plus 1e-6 relative leaves two
//! orders of magnitude of margin while still catching any real bug (a wrong
//! sign or missing term is an O(1) relative error). The f32 path is then
//! checked against the f64 gradients: f32 round-off accumulated through a
//! two-layer network is ~1e-6 relative, so 2e-3 relative to the largest
//! gradient of the tensor is generous but far below a real error.

use hearth_distill::exec::{forward_backward, Batch, LossWeights, Workspace, IGNORE};
use hearth_distill::net::{Net, NetConfig, VecSrc};
use hearth_distill::rng::Rng;
use hearth_models::config::{RopeLayout, RopeScaling};
use hearth_models::pool::ThreadPool;

struct Case {
    net: Net,
    params: Vec<f64>,
    inputs: Vec<u32>,
    targets: Vec<u32>,
    teacher: Vec<Vec<(u32, f32)>>,
    b: usize,
    t: usize,
    /// KL with the teacher's rest mass as one bucket.
    rest: bool,
}

fn random_params(net: &Net, rng: &mut Rng) -> Vec<f64> {
    let mut p = vec![0f64; net.params.len];
    for info in &net.params.tensors {
        for v in &mut p[info.range()] {
            *v = if info.name.ends_with("norm.weight") { 1.0 + 0.2 * rng.normal() } else { 0.4 * rng.normal() };
        }
    }
    p
}

fn case(cfg: NetConfig, seed: u64, with_teacher: bool, b: usize, t: usize) -> Case {
    let net = Net::new_scratch(cfg).unwrap();
    let mut rng = Rng::new(seed);
    let params = random_params(&net, &mut rng);
    let nv = net.cfg.n_vocab;
    let inputs: Vec<u32> = (0..b * t).map(|_| rng.below(nv) as u32).collect();
    let mut targets: Vec<u32> = (0..b * t).map(|_| rng.below(nv) as u32).collect();
    targets[3] = IGNORE;
    targets[7] = IGNORE;
    let teacher = (0..b * t)
        .map(|r| {
            if !with_teacher || r % 3 == 1 {
                return Vec::new();
            }
            // Three distinct ids with log-probs summing to less than 1 in mass.
            let first = rng.below(nv);
            (0..3).map(|i| (((first + 2 * i) % nv) as u32, (-0.5 - i as f64 - rng.uniform()) as f32)).collect()
        })
        .collect();
    Case { net, params, inputs, targets, teacher, b, t, rest: false }
}

const KL: f64 = 0.7;

fn loss(c: &Case, pool: &ThreadPool, p: &[f64], ws: &mut Workspace<f64>) -> f64 {
    let batch = Batch { b: c.b, t: c.t, inputs: &c.inputs, targets: &c.targets, teacher: Some(&c.teacher) };
    let s = forward_backward(pool, &c.net, p, None, &batch, LossWeights { scale: 0.125, kl: KL, kl_rest: c.rest }, ws).unwrap();
    (s.ce + KL * s.kl) * 0.125
}

fn analytic<T: hearth_distill::real::Real>(c: &Case, pool: &ThreadPool, p: &[T]) -> Vec<T> {
    let mut g = vec![T::ZERO; p.len()];
    let mut ws = Workspace::new();
    let batch = Batch { b: c.b, t: c.t, inputs: &c.inputs, targets: &c.targets, teacher: Some(&c.teacher) };
    forward_backward(pool, &c.net, p, Some(&mut g), &batch, LossWeights { scale: 0.125, kl: KL, kl_rest: c.rest }, &mut ws).unwrap();
    g
}

fn check(c: &Case) {
    let pool = ThreadPool::new(2);
    let g = analytic(c, &pool, &c.params);
    let mut ws = Workspace::new();
    let mut p = c.params.clone();
    let h = 1e-5;
    let mut worst = (0f64, String::new());
    let mut nonzero = 0;
    for info in &c.net.params.tensors {
        for i in info.range() {
            let orig = p[i];
            p[i] = orig + h;
            let lp = loss(c, &pool, &p, &mut ws);
            p[i] = orig - h;
            let lm = loss(c, &pool, &p, &mut ws);
            p[i] = orig;
            let fd = (lp - lm) / (2.0 * h);
            let err = (g[i] - fd).abs();
            let tol = 1e-8 + 1e-6 * fd.abs();
            assert!(err <= tol, "{}[{}]: analytic {} vs finite difference {} (err {err:e})", info.name, i - info.offset, g[i], fd);
            if fd.abs() > 1e-6 {
                nonzero += 1;
                let rel = err / fd.abs();
                if rel > worst.0 {
                    worst = (rel, info.name.clone());
                }
            }
        }
    }
    eprintln!("{} parameters checked, {nonzero} with |grad| > 1e-6, worst relative error {:e} ({})", p.len(), worst.0, worst.1);
    // Every tensor must actually receive gradient (else the check is vacuous).
    for info in &c.net.params.tensors {
        assert!(g[info.range()].iter().any(|v| v.abs() > 1e-9), "{} got no gradient", info.name);
    }

    // The f32 path (SIMD GEMM, f32 accumulation) against the f64 gradients.
    let p32: Vec<f32> = c.params.iter().map(|&v| v as f32).collect();
    let g32 = analytic(c, &pool, &p32);
    for info in &c.net.params.tensors {
        let scale = g[info.range()].iter().fold(0f64, |m, v| m.max(v.abs()));
        for i in info.range() {
            let err = (g32[i] as f64 - g[i]).abs();
            assert!(err <= 2e-3 * scale + 1e-7, "f32 {}[{}]: {} vs f64 {}", info.name, i - info.offset, g32[i], g[i]);
        }
    }
}

#[test]
fn gradients_untied_biases_gqa_interleaved_rope() {
    let mut cfg = NetConfig::llama(11, 8, 2, 2, 1, 12, 8, false);
    cfg.qkv_bias = true;
    cfg.o_bias = true;
    check(&case(cfg, 1, true, 2, 5));
}

#[test]
fn gradients_tied_halves_rope_partial_rotation() {
    let mut cfg = NetConfig::llama(13, 12, 2, 3, 3, 10, 8, true);
    cfg.rope.layout = RopeLayout::Halves;
    cfg.rope.n_rot = 2;
    cfg.rope.freq_base = 100.0;
    cfg.rope.scaling = RopeScaling::Linear { factor: 2.0 };
    check(&case(cfg, 2, false, 2, 5));
}

/// The KL term with the teacher's remaining mass as a "rest" bucket.
#[test]
fn gradients_with_teacher_rest_bucket() {
    let cfg = NetConfig::llama(11, 8, 2, 2, 1, 12, 8, false);
    let mut c = case(cfg, 5, true, 2, 5);
    c.rest = true;
    check(&c);
}

#[test]
fn gradients_with_teacher_only_and_wide_gqa() {
    let mut cfg = NetConfig::llama(9, 16, 1, 4, 2, 20, 8, true);
    cfg.norm_eps = 1e-2;
    check(&case(cfg, 3, true, 2, 5));
}

/// Sequences longer than one attention block (64 queries), so the blocked
/// score/softmax/backward code is checked across block edges.
#[test]
fn gradients_across_attention_blocks() {
    let cfg = NetConfig::llama(7, 4, 1, 2, 1, 6, 80, false);
    check(&case(cfg, 4, false, 1, 70));
}

/// Qwen3's per-head q/k RMSNorm (after the biased projections, before a
/// partial halves RoPE), with grouped-query attention: the norm weights and
/// every projection feeding them must get exact gradients.
#[test]
fn gradients_per_head_qk_norms() {
    let mut cfg = NetConfig::llama(11, 8, 2, 4, 2, 12, 8, false);
    cfg.head_dim = 6;
    cfg.rope.layout = RopeLayout::Halves;
    cfg.rope.n_rot = 4;
    cfg.attn_scale = 1.0 / 6f32.sqrt();
    cfg.qkv_bias = true;
    cfg.qk_norm = true;
    check(&case(cfg, 6, true, 2, 5));
}

/// The Gemma operations on a from-scratch network: embeddings scaled by
/// sqrt(n_embd) (tied, so the scaled embedding gets gradient from both
/// ends), GeGLU with the tanh GELU, attention and final-logit soft-caps small
/// enough that tanh is far from linear, frozen post-attention / post-FFN
/// RMSNorms, a sliding window on layer 0 only and a different RoPE base on
/// layer 1 (Gemma 3's local/global layers).
fn gemma_case(seed: u64, b: usize, t: usize, window: usize) -> Case {
    let mut cfg = NetConfig::llama(11, 8, 2, 4, 2, 12, 80, true);
    cfg.head_dim = 6;
    cfg.rope.layout = RopeLayout::Halves;
    cfg.rope.n_rot = 6;
    cfg.attn_scale = 1.0 / 6f32.sqrt();
    cfg.norm_eps = 1e-6;
    cfg.geglu = true;
    cfg.embed_scale = Some(8f32.sqrt());
    cfg.attn_softcap = Some(1.5);
    cfg.final_softcap = Some(2.0);
    let mut c = case(cfg, seed, true, b, t);
    let mut rng = Rng::new(seed + 100);
    let mut norm = |n: usize| VecSrc::Frozen((0..n).map(|_| (1.0 + 0.3 * rng.normal()) as f32).collect());
    for l in c.net.layers.iter_mut() {
        l.post_attn_norm = Some(norm(8));
        l.post_ffn_norm = Some(norm(8));
    }
    c.net.layers[0].window = Some(window);
    let mut rope = c.net.cfg.rope.clone();
    rope.freq_base = 1000.0;
    c.net.layers[1].rope = Some(rope);
    c
}

#[test]
fn gradients_gemma_ops() {
    check(&gemma_case(8, 2, 6, 3));
}

/// A window of 5 over 70 positions: the mask crosses the 64-row attention
/// blocks.
#[test]
fn gradients_gemma_window_across_attention_blocks() {
    check(&gemma_case(9, 1, 70, 5));
}
