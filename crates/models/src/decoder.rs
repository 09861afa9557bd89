//! The forward pass shared by every decoder-only architecture.
//!
//! An architecture file (see `arch/`) reads its hyper-parameters and tensors
//! into a [`ModelConfig`] and [`DecoderWeights`]; this file runs them. The
//! families differ only in switches carried by those two structs: biases,
//! per-head q/k norms, fused projections, post-norms, soft-capping, sliding
//! windows, the RoPE layout and the FFN activation.
//!
//! Buffers are token-major: `x[t * n_embd + i]` is dimension `i` of token `t`
//! of the batch. A batch may hold several sequences, each with its own KV
//! cache; their tokens are concatenated and share every matrix product, which
//! is what lets the server step many clients at the cost of one.
//!
//! Numerics follow ggml's CPU backend (see ARCHITECTURE.md invariant 3):
//! activations are quantized to the weight's `vec_dot_type` before each
//! product; Q is rounded to f16 before `K·q` and the attention weights are
//! rounded to f16 before `P·V`, because llama.cpp's (non-flash) attention
//! multiplies an f16 cache with f16-converted operands.
//!
//! Q4_0/Q5_0/Q8_0/Q4_K matrices are repacked at load (see [`Decoder::new`]) and
//! multiplied by `hearth_kernels::repack`: exact integer sums per block and
//! one float multiply-add per block, as in llama.cpp's repacked CPU kernels
//! rather than its plain `vec_dot` (a float-rounding difference, within the
//! fidelity tests' bounds, which were derived with llama.cpp's repacked
//! paths too). That order is the same for one token,
//! a prompt, or a batch of sequences: a sequence's logits do not depend on
//! what it is batched with.

use crate::config::{Activation, LayerConfig, ModelConfig, RopeConfig};
use crate::error::{ModelError, Result};
use crate::kv_cache::KvCache;
use crate::ops;
use crate::pool::{SyncPtr, ThreadPool};
use crate::weights::Weight;
use half::f16;
use hearth_formats::GgmlType;
use std::cell::RefCell;

/// Q/K/V projections: three matrices, or one fused `[q; k; v]` matrix (Phi-3).
#[derive(Debug, Clone)]
pub enum Qkv {
    Separate { q: Weight, k: Weight, v: Weight },
    Fused(Weight),
}

/// FFN input projections: separate gate and up, or one fused `[gate; up]`
/// matrix (Phi-3; the first half of its rows is the gate).
#[derive(Debug, Clone)]
pub enum GateUp {
    Separate { gate: Weight, up: Weight },
    Fused(Weight),
}

#[derive(Debug, Clone)]
pub struct Layer {
    pub attn_norm: Vec<f32>,
    pub qkv: Qkv,
    pub q_bias: Option<Vec<f32>>,
    pub k_bias: Option<Vec<f32>>,
    pub v_bias: Option<Vec<f32>>,
    /// Per-head RMS norms on q and k (Qwen3, Gemma 3), length head_dim.
    pub q_norm: Option<Vec<f32>>,
    pub k_norm: Option<Vec<f32>>,
    pub wo: Weight,
    pub wo_bias: Option<Vec<f32>>,
    /// Norm applied to the attention output before the residual add (Gemma 2/3).
    pub post_attn_norm: Option<Vec<f32>>,
    pub ffn_norm: Vec<f32>,
    pub gate_up: GateUp,
    pub down: Weight,
    pub post_ffn_norm: Option<Vec<f32>>,
    /// RoPE frequency factors for this layer (Llama 3.1 `rope_freqs`, Phi-3 LongRoPE short factors).
    pub rope_factors: Option<Vec<f32>>,
    /// Phi-3 LongRoPE long factors, used instead of `rope_factors` by
    /// sessions whose context exceeds [`ModelConfig::n_ctx_orig`].
    pub rope_factors_long: Option<Vec<f32>>,
}

#[derive(Debug, Clone)]
pub struct DecoderWeights {
    pub tok_embd: Weight,
    pub output_norm: Vec<f32>,
    /// `None` when the output projection is tied to `tok_embd`.
    pub output: Option<Weight>,
    pub layers: Vec<Layer>,
}

/// Which logits a sequence wants from a forward call.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Logits {
    None,
    Last,
    All,
}

/// One sequence's part of a batch.
pub struct SeqInput<'a> {
    pub tokens: &'a [u32],
    pub cache: &'a mut KvCache,
    pub logits: Logits,
    /// Filled with `n_vocab` (Last) or `tokens.len() * n_vocab` (All) values.
    pub out: &'a mut Vec<f32>,
}

/// Reusable buffers so the decode loop allocates nothing after warm-up.
#[derive(Default)]
pub struct Scratch {
    x: Vec<f32>,
    xn: Vec<f32>,
    q: Vec<f32>,
    k: Vec<f32>,
    v: Vec<f32>,
    qkv: Vec<f32>,
    attn: Vec<f32>,
    proj: Vec<f32>,
    gate: Vec<f32>,
    up: Vec<f32>,
    acts: Acts,
    out_x: Vec<f32>,
    logits: Vec<f32>,
}

fn resize(v: &mut Vec<f32>, n: usize) {
    if v.len() < n {
        v.resize(n, 0.0);
    }
}

pub struct Decoder {
    pub cfg: ModelConfig,
    pub w: DecoderWeights,
}

impl Decoder {
    /// Checks the layer count and repacks every file-mapped matrix the
    /// kernels have an interleaved layout for (see [`Weight::repack`]).
    pub fn new(cfg: ModelConfig, mut w: DecoderWeights) -> Result<Decoder> {
        if w.layers.len() != cfg.layers.len() {
            return Err(ModelError::Invalid(format!("{} layer configs for {} layers", cfg.layers.len(), w.layers.len())));
        }
        w.tok_embd.repack();
        if let Some(o) = &mut w.output {
            o.repack();
        }
        for l in &mut w.layers {
            match &mut l.qkv {
                Qkv::Separate { q, k, v } => {
                    q.repack();
                    k.repack();
                    v.repack();
                }
                Qkv::Fused(m) => m.repack(),
            }
            l.wo.repack();
            match &mut l.gate_up {
                GateUp::Separate { gate, up } => {
                    gate.repack();
                    up.repack();
                }
                GateUp::Fused(m) => m.repack(),
            }
            l.down.repack();
        }
        Ok(Decoder { cfg, w })
    }

    fn output(&self) -> &Weight {
        self.w.output.as_ref().unwrap_or(&self.w.tok_embd)
    }

    pub fn forward(&self, seqs: &mut [SeqInput<'_>], pool: &ThreadPool, s: &mut Scratch) -> Result<()> {
        let cfg = &self.cfg;
        let n_embd = cfg.n_embd;
        let n_vocab = cfg.n_vocab;
        // Validate everything before touching any cache.
        let mut total = 0usize;
        for seq in seqs.iter() {
            for &t in seq.tokens {
                if t as usize >= n_vocab {
                    return Err(ModelError::TokenOutOfRange { id: t, n_vocab });
                }
            }
            let needed = seq.cache.len() + seq.tokens.len();
            if needed > seq.cache.n_ctx() {
                return Err(ModelError::ContextOverflow { needed, limit: seq.cache.n_ctx() });
            }
            total += seq.tokens.len();
        }
        for seq in seqs.iter_mut() {
            seq.cache.reserve(seq.tokens.len())?;
            seq.out.clear();
        }
        if total == 0 {
            return Ok(());
        }

        // Token embeddings.
        resize(&mut s.x, total * n_embd);
        {
            let mut row = 0;
            for seq in seqs.iter() {
                for &t in seq.tokens {
                    let dst = &mut s.x[row * n_embd..(row + 1) * n_embd];
                    self.w.tok_embd.dequantize_row(t as usize, dst);
                    if let Some(sc) = cfg.embed_scale {
                        dst.iter_mut().for_each(|v| *v *= sc);
                    }
                    row += 1;
                }
            }
        }

        // RoPE tables per distinct rope configuration, per sequence.
        // (config, factors, long-context factors) of each distinct table.
        type RopeKey<'a> = (&'a RopeConfig, Option<&'a [f32]>, Option<&'a [f32]>);
        let mut rope_cfgs: Vec<RopeKey<'_>> = Vec::new();
        let mut layer_rope = Vec::with_capacity(cfg.layers.len());
        for (lc, lw) in cfg.layers.iter().zip(&self.w.layers) {
            let key = (&lc.rope, lw.rope_factors.as_deref(), lw.rope_factors_long.as_deref());
            let idx = match rope_cfgs.iter().position(|c| c.0 == key.0 && c.1 == key.1 && c.2 == key.2) {
                Some(i) => i,
                None => {
                    rope_cfgs.push(key);
                    rope_cfgs.len() - 1
                }
            };
            layer_rope.push(idx);
        }
        let tables: Vec<Vec<ops::RopeTables>> = rope_cfgs
            .iter()
            .map(|(rc, short, long)| {
                seqs.iter()
                    .map(|seq| {
                        let ff = match long {
                            Some(l) if seq.cache.n_ctx() > cfg.n_ctx_orig => Some(*l),
                            _ => *short,
                        };
                        ops::RopeTables::new(rc, ff, seq.cache.len(), seq.tokens.len())
                    })
                    .collect()
            })
            .collect();

        for (il, (lc, lw)) in cfg.layers.iter().zip(&self.w.layers).enumerate() {
            self.attention_block(il, lc, lw, &tables[layer_rope[il]], seqs, total, pool, s);
            self.ffn_block(lc, lw, total, pool, s);
        }
        for seq in seqs.iter_mut() {
            seq.cache.advance(seq.tokens.len());
        }

        // Output rows.
        let mut rows: Vec<usize> = Vec::new();
        let mut row = 0;
        for seq in seqs.iter() {
            match seq.logits {
                Logits::None => {}
                Logits::Last => rows.push(row + seq.tokens.len() - 1),
                Logits::All => rows.extend(row..row + seq.tokens.len()),
            }
            row += seq.tokens.len();
        }
        if rows.is_empty() {
            return Ok(());
        }
        let n_out = rows.len();
        resize(&mut s.out_x, n_out * n_embd);
        for (i, &r) in rows.iter().enumerate() {
            ops::rms_norm(&s.x[r * n_embd..(r + 1) * n_embd], &self.w.output_norm, cfg.norm_eps, &mut s.out_x[i * n_embd..(i + 1) * n_embd]);
        }
        resize(&mut s.logits, n_out * n_vocab);
        s.acts.clear();
        let out_w = self.output();
        let a = quantize_acts(pool, &mut s.acts, hearth_kernels::vec_dot_type(out_w.ty), &s.out_x[..n_out * n_embd], n_out, n_embd);
        matmul(pool, out_w, a, n_out, &mut s.logits[..n_out * n_vocab]);
        if let Some(cap) = cfg.final_softcap {
            ops::softcap(&mut s.logits[..n_out * n_vocab], cap);
        }
        let mut i = 0;
        for seq in seqs.iter_mut() {
            let n = match seq.logits {
                Logits::None => 0,
                Logits::Last => 1,
                Logits::All => seq.tokens.len(),
            };
            seq.out.extend_from_slice(&s.logits[i * n_vocab..(i + n) * n_vocab]);
            i += n;
        }
        Ok(())
    }

    #[allow(clippy::too_many_arguments)]
    fn attention_block(
        &self,
        il: usize,
        lc: &LayerConfig,
        lw: &Layer,
        rope: &[ops::RopeTables],
        seqs: &mut [SeqInput<'_>],
        total: usize,
        pool: &ThreadPool,
        s: &mut Scratch,
    ) {
        let cfg = &self.cfg;
        let n_embd = cfg.n_embd;
        let (nh, nkv, dk, dv) = (lc.n_head, lc.n_head_kv, lc.head_dim_k, lc.head_dim_v);
        let (q_dim, k_dim, v_dim) = (nh * dk, nkv * dk, nkv * dv);

        resize(&mut s.xn, total * n_embd);
        for t in 0..total {
            ops::rms_norm(&s.x[t * n_embd..(t + 1) * n_embd], &lw.attn_norm, cfg.norm_eps, &mut s.xn[t * n_embd..(t + 1) * n_embd]);
        }
        resize(&mut s.q, total * q_dim);
        resize(&mut s.k, total * k_dim);
        resize(&mut s.v, total * v_dim);
        s.acts.clear();
        match &lw.qkv {
            Qkv::Separate { q, k, v } => {
                for w in [q, k, v] {
                    quantize_acts(pool, &mut s.acts, hearth_kernels::vec_dot_type(w.ty), &s.xn[..total * n_embd], total, n_embd);
                }
                let (aq, ak, av) = (acts_of(&s.acts, q), acts_of(&s.acts, k), acts_of(&s.acts, v));
                matmul_multi(
                    pool,
                    &mut [(q, aq, &mut s.q[..total * q_dim]), (k, ak, &mut s.k[..total * k_dim]), (v, av, &mut s.v[..total * v_dim])],
                    total,
                );
            }
            Qkv::Fused(w) => {
                let all = q_dim + k_dim + v_dim;
                resize(&mut s.qkv, total * all);
                let a = quantize_acts(pool, &mut s.acts, hearth_kernels::vec_dot_type(w.ty), &s.xn[..total * n_embd], total, n_embd);
                matmul(pool, w, a, total, &mut s.qkv[..total * all]);
                for t in 0..total {
                    let src = &s.qkv[t * all..(t + 1) * all];
                    s.q[t * q_dim..(t + 1) * q_dim].copy_from_slice(&src[..q_dim]);
                    s.k[t * k_dim..(t + 1) * k_dim].copy_from_slice(&src[q_dim..q_dim + k_dim]);
                    s.v[t * v_dim..(t + 1) * v_dim].copy_from_slice(&src[q_dim + k_dim..]);
                }
            }
        }
        for t in 0..total {
            add_bias(&mut s.q[t * q_dim..(t + 1) * q_dim], lw.q_bias.as_deref());
            add_bias(&mut s.k[t * k_dim..(t + 1) * k_dim], lw.k_bias.as_deref());
            add_bias(&mut s.v[t * v_dim..(t + 1) * v_dim], lw.v_bias.as_deref());
            if let Some(qn) = &lw.q_norm {
                for h in 0..nh {
                    ops::rms_norm_inplace(&mut s.q[t * q_dim + h * dk..t * q_dim + (h + 1) * dk], qn, cfg.norm_eps);
                }
            }
            if let Some(kn) = &lw.k_norm {
                for h in 0..nkv {
                    ops::rms_norm_inplace(&mut s.k[t * k_dim + h * dk..t * k_dim + (h + 1) * dk], kn, cfg.norm_eps);
                }
            }
        }

        // RoPE, then append K/V to each sequence's cache.
        let mut row = 0;
        for (si, seq) in seqs.iter_mut().enumerate() {
            let p0 = seq.cache.len();
            let lkv = &mut seq.cache.layers[il];
            for i in 0..seq.tokens.len() {
                let t = row + i;
                rope[si].apply(i, &mut s.q[t * q_dim..(t + 1) * q_dim], nh, dk);
                rope[si].apply(i, &mut s.k[t * k_dim..(t + 1) * k_dim], nkv, dk);
                if cfg.attn_scale_on_q {
                    s.q[t * q_dim..(t + 1) * q_dim].iter_mut().for_each(|v| *v *= cfg.attn_scale);
                }
                let pos = p0 + i;
                for h in 0..nkv {
                    let (ka, va) = (lkv.k_at(h, pos), lkv.v_at(h, pos));
                    lkv.k.store(ka, &s.k[t * k_dim + h * dk..t * k_dim + (h + 1) * dk]);
                    lkv.v.store(va, &s.v[t * v_dim + h * dv..t * v_dim + (h + 1) * dv]);
                }
            }
            row += seq.tokens.len();
        }

        // Attention: one task per (tile of up to ATTN_TILE consecutive query
        // tokens of one sequence, KV head). A tile shares each key and value
        // block's f16 → f32 conversion among all its query rows; every score
        // and output is still computed in the same order as one token at a
        // time (see `attend_tile`).
        let attn_dim = nh * dv;
        resize(&mut s.attn, total * attn_dim);
        {
            // (sequence, first row in the batch, tokens, position of the first).
            let mut tiles = Vec::new();
            let mut row = 0;
            for (si, seq) in seqs.iter().enumerate() {
                let (n, p0) = (seq.tokens.len(), seq.cache.len());
                let mut i = 0;
                while i < n {
                    let tn = (n - i).min(ATTN_TILE);
                    tiles.push((si, row + i, tn, p0 + i));
                    i += tn;
                }
                row += n;
            }
            let caches: Vec<&crate::kv_cache::LayerKv> = seqs.iter().map(|q| &q.cache.layers[il]).collect();
            let q_buf = &s.q;
            let out = SyncPtr::new(&mut s.attn[..total * attn_dim]);
            let group = nh / nkv;
            let geo = TileGeometry {
                group,
                q_dim,
                attn_dim,
                scale: if cfg.attn_scale_on_q { 1.0 } else { cfg.attn_scale },
                softcap: cfg.attn_softcap,
                window: lc.sliding_window,
            };
            let n_tasks = tiles.len() * nkv;
            let chunk = (n_tasks / (pool.n_threads() * 8)).max(1);
            pool.parallel_for(n_tasks, chunk, &|start, end| {
                SCORES.with(|sc| {
                    let mut sc = sc.borrow_mut();
                    for task in start..end {
                        let ((si, t0, tn, pos0), g) = (tiles[task / nkv], task % nkv);
                        attend_tile(caches[si], g, &geo, q_buf, t0, tn, pos0, &mut sc, out);
                    }
                })
            });
        }

        // Output projection and residual.
        resize(&mut s.proj, total * n_embd);
        s.acts.clear();
        let a = quantize_acts(pool, &mut s.acts, hearth_kernels::vec_dot_type(lw.wo.ty), &s.attn[..total * attn_dim], total, attn_dim);
        matmul(pool, &lw.wo, a, total, &mut s.proj[..total * n_embd]);
        for t in 0..total {
            let p = &mut s.proj[t * n_embd..(t + 1) * n_embd];
            add_bias(p, lw.wo_bias.as_deref());
            if let Some(pn) = &lw.post_attn_norm {
                ops::rms_norm_inplace(p, pn, cfg.norm_eps);
            }
            for (x, &d) in s.x[t * n_embd..(t + 1) * n_embd].iter_mut().zip(p.iter()) {
                *x += d;
            }
        }
    }

    fn ffn_block(&self, lc: &LayerConfig, lw: &Layer, total: usize, pool: &ThreadPool, s: &mut Scratch) {
        let cfg = &self.cfg;
        let n_embd = cfg.n_embd;
        let n_ff = lc.n_ff;
        for t in 0..total {
            ops::rms_norm(&s.x[t * n_embd..(t + 1) * n_embd], &lw.ffn_norm, cfg.norm_eps, &mut s.xn[t * n_embd..(t + 1) * n_embd]);
        }
        resize(&mut s.gate, total * n_ff);
        resize(&mut s.up, total * n_ff);
        s.acts.clear();
        match &lw.gate_up {
            GateUp::Separate { gate, up } => {
                for w in [gate, up] {
                    quantize_acts(pool, &mut s.acts, hearth_kernels::vec_dot_type(w.ty), &s.xn[..total * n_embd], total, n_embd);
                }
                let (ag, au) = (acts_of(&s.acts, gate), acts_of(&s.acts, up));
                matmul_multi(pool, &mut [(gate, ag, &mut s.gate[..total * n_ff]), (up, au, &mut s.up[..total * n_ff])], total);
            }
            GateUp::Fused(w) => {
                resize(&mut s.qkv, total * 2 * n_ff);
                let a = quantize_acts(pool, &mut s.acts, hearth_kernels::vec_dot_type(w.ty), &s.xn[..total * n_embd], total, n_embd);
                matmul(pool, w, a, total, &mut s.qkv[..total * 2 * n_ff]);
                for t in 0..total {
                    let src = &s.qkv[t * 2 * n_ff..(t + 1) * 2 * n_ff];
                    s.gate[t * n_ff..(t + 1) * n_ff].copy_from_slice(&src[..n_ff]);
                    s.up[t * n_ff..(t + 1) * n_ff].copy_from_slice(&src[n_ff..]);
                }
            }
        }
        // The gate is element-wise per row: rows go to the pool (a 512-token
        // prefill spent 6% of its time here on one thread).
        {
            let gate = SyncPtr::new(&mut s.gate[..total * n_ff]);
            let up = &s.up[..total * n_ff];
            let act = cfg.activation;
            let run = |start: usize, end: usize| {
                // SAFETY: each task owns rows start..end of the gate buffer.
                let g = unsafe { gate.slice(start * n_ff, (end - start) * n_ff) };
                let u = &up[start * n_ff..end * n_ff];
                match act {
                    Activation::SwiGlu => ops::swiglu(g, u, n_ff),
                    Activation::GeGlu => ops::geglu(g, u),
                }
            };
            if total > 1 {
                pool.parallel_for(total, total.div_ceil(pool.n_threads() * 4).max(1), &run);
            } else {
                run(0, total);
            }
        }
        s.acts.clear();
        let a = quantize_acts(pool, &mut s.acts, hearth_kernels::vec_dot_type(lw.down.ty), &s.gate[..total * n_ff], total, n_ff);
        matmul(pool, &lw.down, a, total, &mut s.proj[..total * n_embd]);
        for t in 0..total {
            let p = &mut s.proj[t * n_embd..(t + 1) * n_embd];
            if let Some(pn) = &lw.post_ffn_norm {
                ops::rms_norm_inplace(p, pn, cfg.norm_eps);
            }
            for (x, &d) in s.x[t * n_embd..(t + 1) * n_embd].iter_mut().zip(p.iter()) {
                *x += d;
            }
        }
    }
}

thread_local! {
    static SCORES: RefCell<Vec<f32>> = const { RefCell::new(Vec::new()) };
    static TILE: RefCell<Vec<f32>> = const { RefCell::new(Vec::new()) };
}

/// Query tokens per attention task in prefill (see `attention_block`).
const ATTN_TILE: usize = 8;

/// What `attend_tile` needs to know about the layer's attention.
struct TileGeometry {
    /// Query heads per KV head.
    group: usize,
    /// Floats per token in the query buffer (`n_head * head_dim_k`).
    q_dim: usize,
    /// Floats per token in the output buffer (`n_head * head_dim_v`).
    attn_dim: usize,
    scale: f32,
    softcap: Option<f32>,
    window: Option<usize>,
}

/// Tokens `t0..t0 + tn` of the batch (one sequence, at positions
/// `pos0..pos0 + tn`), the `group` query heads sharing KV head `g`, written
/// to their slots of `out` (`[token][n_head * head_dim_v]`).
///
/// For an F16 cache the whole tile is scored against keys `lo..pos0 + tn`
/// in one `kq_f16` call and weighted in one `pv_f16_rows` call; each token's
/// row is then masked to its own causal (and sliding-window) range, laid
/// out from key 0 exactly as `attend` lays it out (the softmax's lane
/// sums depend on positions), so the result is bit-identical to calling
/// `attend` head by head and token by token (tested); the SIMD loops of
/// `hearth_kernels::attn` keep its order of operations. Other caches go
/// through `attend`.
#[allow(clippy::too_many_arguments)]
fn attend_tile(
    lkv: &crate::kv_cache::LayerKv,
    g: usize,
    geo: &TileGeometry,
    q_buf: &[f32],
    t0: usize,
    tn: usize,
    pos0: usize,
    sc: &mut Vec<f32>,
    out: SyncPtr<f32>,
) {
    use crate::kv_cache::KvData;
    let (dk, dv, group) = (lkv.head_dim_k, lkv.head_dim_v, geo.group);
    let lo_of = |pos: usize| geo.window.map_or(0, |w| (pos + 1).saturating_sub(w));
    let (KvData::F16(k), KvData::F16(v)) = (&lkv.k, &lkv.v) else {
        for i in 0..tn {
            let (t, pos) = (t0 + i, pos0 + i);
            let q = &q_buf[t * geo.q_dim + g * group * dk..t * geo.q_dim + (g + 1) * group * dk];
            // SAFETY: each (token, g) slot belongs to this task alone.
            let o = unsafe { out.slice(t * geo.attn_dim + g * group * dv, group * dv) };
            for h in 0..group {
                let (qh, oh) = (&q[h * dk..(h + 1) * dk], &mut o[h * dv..(h + 1) * dv]);
                attend(lkv, g, qh, lo_of(pos), pos + 1, geo.scale, geo.softcap, sc, oh);
            }
        }
        return;
    };
    let n_hi = pos0 + tn;
    let lo_min = lo_of(pos0);
    let n = n_hi - lo_min;
    let rows = tn * group;
    // Scratch: [queries rounded to f16 | raw scores rows x n | masked rows
    // rows x n_hi | outputs rows x dv].
    sc.clear();
    sc.resize(rows * dk + rows * n + rows * n_hi + rows * dv, 0.0);
    let (qh, rest) = sc.split_at_mut(rows * dk);
    let (raw, rest) = rest.split_at_mut(rows * n);
    let (prob, obuf) = rest.split_at_mut(rows * n_hi);
    for i in 0..tn {
        let t = t0 + i;
        let src = &q_buf[t * geo.q_dim + g * group * dk..t * geo.q_dim + (g + 1) * group * dk];
        qh[i * group * dk..(i + 1) * group * dk].copy_from_slice(src);
    }
    hearth_kernels::attn::round_to_f16(qh);
    hearth_kernels::attn::kq_f16(qh, &k[lkv.k_at(g, lo_min)..lkv.k_at(g, n_hi)], dk, raw);
    let mut lens = [0usize; 64];
    let mut lens_v = Vec::new();
    let lens: &mut [usize] = if rows <= lens.len() {
        &mut lens[..rows]
    } else {
        lens_v.resize(rows, 0);
        &mut lens_v
    };
    for i in 0..tn {
        let pos = pos0 + i;
        let (lo, nk) = (lo_of(pos), pos + 1);
        for h in 0..group {
            let r = i * group + h;
            let row = &mut prob[r * n_hi..r * n_hi + nk];
            row[..lo].iter_mut().for_each(|x| *x = f32::NEG_INFINITY);
            let scores = &raw[r * n + (lo - lo_min)..r * n + (nk - lo_min)];
            match geo.softcap {
                // As in `attend`: ggml scales by 1/c (a multiply), then tanh.
                Some(c) => {
                    for (s, &dot) in row[lo..].iter_mut().zip(scores) {
                        *s = (dot * (1.0 / c)).tanh() * c * geo.scale;
                    }
                }
                None => {
                    for (s, &dot) in row[lo..].iter_mut().zip(scores) {
                        *s = dot * geo.scale;
                    }
                }
            }
            ops::softmax_inplace(row);
            hearth_kernels::attn::round_to_f16(&mut row[lo..]);
            lens[r] = nk - lo_min;
        }
    }
    hearth_kernels::attn::pv_f16_rows(&prob[lo_min..], n_hi, lens, &v[lkv.v_at(g, lo_min)..lkv.v_at(g, n_hi)], dv, obuf);
    for i in 0..tn {
        let t = t0 + i;
        // SAFETY: each (token, g) slot belongs to this task alone.
        let o = unsafe { out.slice(t * geo.attn_dim + g * group * dv, group * dv) };
        o.copy_from_slice(&obuf[i * group * dv..(i + 1) * group * dv]);
    }
}

/// One query head against keys `lo..n_keys` of one cache head, written to
/// `out`. Mirrors ggml's non-flash attention: the query is converted to the
/// key cache's type before `K·q` and the softmax weights to the value
/// cache's type before `P·V` (F16 caches round them to f16), the softmax
/// itself runs in f32 with an f64 sum.
#[allow(clippy::too_many_arguments)]
fn attend(
    lkv: &crate::kv_cache::LayerKv,
    g: usize,
    q: &[f32],
    lo: usize,
    n_keys: usize,
    scale: f32,
    softcap: Option<f32>,
    sc: &mut Vec<f32>,
    out: &mut [f32],
) {
    use crate::kv_cache::KvData;
    let (dk, dv) = (lkv.head_dim_k, lkv.head_dim_v);
    sc.clear();
    sc.resize(n_keys, f32::NEG_INFINITY);
    let finish = |dot: f32| match softcap {
        // llama-graph.cpp build_attn_mha caps the K·q products (scale by
        // 1/c, tanh, scale by c) and applies kq_scale in the softmax after;
        // Gemma 2 folds its scale into q, so kq_scale is 1 there.
        Some(c) => (dot * (1.0 / c)).tanh() * c * scale,
        None => dot * scale,
    };
    match &lkv.k {
        KvData::F16(k) => {
            let mut qh = [0f32; 512];
            let qh = &mut qh[..dk];
            for (d, &x) in qh.iter_mut().zip(q) {
                *d = f16::from_f32(x).to_f32();
            }
            for (j, s) in sc.iter_mut().enumerate().take(n_keys).skip(lo) {
                let kj = &k[lkv.k_at(g, j)..lkv.k_at(g, j) + dk];
                let mut dot = 0f32;
                for (a, b) in qh.iter().zip(kj) {
                    dot += a * b.to_f32();
                }
                *s = finish(dot);
            }
        }
        KvData::F32(k) => {
            for (j, s) in sc.iter_mut().enumerate().take(n_keys).skip(lo) {
                let kj = &k[lkv.k_at(g, j)..lkv.k_at(g, j) + dk];
                let dot: f32 = q.iter().zip(kj).map(|(a, b)| a * b).sum();
                *s = finish(dot);
            }
        }
    }
    ops::softmax_inplace(&mut sc[..]);
    out.iter_mut().for_each(|x| *x = 0.0);
    match &lkv.v {
        KvData::F16(v) => {
            for j in lo..n_keys {
                let p = f16::from_f32(sc[j]).to_f32();
                if p == 0.0 {
                    continue;
                }
                for (acc, vv) in out.iter_mut().zip(&v[lkv.v_at(g, j)..lkv.v_at(g, j) + dv]) {
                    *acc += p * vv.to_f32();
                }
            }
        }
        KvData::F32(v) => {
            for j in lo..n_keys {
                let p = sc[j];
                if p == 0.0 {
                    continue;
                }
                for (acc, vv) in out.iter_mut().zip(&v[lkv.v_at(g, j)..lkv.v_at(g, j) + dv]) {
                    *acc += p * vv;
                }
            }
        }
    }
}

fn add_bias(x: &mut [f32], b: Option<&[f32]>) {
    if let Some(b) = b {
        for (v, &bb) in x.iter_mut().zip(b) {
            *v += bb;
        }
    }
}

/// Quantized activation rows, one buffer per `vec_dot_type` in use; the
/// buffers are recycled across matrix products so the decode loop does not
/// allocate.
#[derive(Default)]
struct Acts {
    live: Vec<(GgmlType, Vec<u8>)>,
    spare: Vec<Vec<u8>>,
}

impl Acts {
    fn clear(&mut self) {
        for (_, buf) in self.live.drain(..) {
            self.spare.push(buf);
        }
    }
}

/// The activations [`quantize_acts`] made for `w`'s `vec_dot_type`.
fn acts_of<'a>(cache: &'a Acts, w: &Weight) -> &'a [u8] {
    let ty = hearth_kernels::vec_dot_type(w.ty);
    match cache.live.iter().find(|(c, _)| *c == ty) {
        Some((_, a)) => a,
        None => unreachable!("activations for {ty} were quantized just before"),
    }
}

/// Quantizes `t` rows of `cols` activations to `ty` once per distinct type
/// (q, k and v usually share one), reusing the buffers in `cache`. Several
/// rows are split between the pool's threads: each row is quantized alone,
/// so the bytes do not depend on the split, and on one thread the down
/// projection's input (8 rows of 4,864 for Qwen2.5-0.5B, ~14 µs) kept the
/// other thread waiting once per layer and batched step.
fn quantize_acts<'a>(pool: &ThreadPool, cache: &'a mut Acts, ty: GgmlType, x: &[f32], t: usize, cols: usize) -> &'a [u8] {
    if let Some(i) = cache.live.iter().position(|(c, _)| *c == ty) {
        return &cache.live[i].1;
    }
    let rb = ty.row_bytes(cols as u64).expect("activation width is a whole number of blocks") as usize;
    let mut buf = cache.spare.pop().unwrap_or_default();
    buf.resize(rb * t, 0);
    let out = SyncPtr::new(&mut buf[..rb * t]);
    let rows = |r0: usize, r1: usize| {
        for r in r0..r1 {
            // SAFETY: each task owns rows r0..r1 of `buf`.
            let dst = unsafe { out.slice(r * rb, rb) };
            hearth_kernels::quantize_activation(ty, &x[r * cols..(r + 1) * cols], dst);
        }
    };
    if t > 1 {
        pool.parallel_for(t, t.div_ceil(pool.n_threads()), &rows);
    } else {
        rows(0, t);
    }
    cache.live.push((ty, buf));
    &cache.live.last().expect("just pushed").1
}

/// `out[t][r] = W[r] · a[t]` for all `t` activation rows, parallel over
/// weight rows.
pub(crate) fn matmul(pool: &ThreadPool, w: &Weight, a: &[u8], t: usize, out: &mut [f32]) {
    matmul_multi(pool, &mut [(w, a, out)], t)
}

/// Several independent products `out_i = W_i a_i` (q, k and v; gate and
/// up) as ONE pool job over their concatenated rows, so a decode step pays
/// one fork/join per group instead of one per matrix, and the rows of the
/// small k and v matrices balance against q's. Results are those of
/// [`matmul`] on each part (the same kernels on the same rows).
pub(crate) fn matmul_multi(pool: &ThreadPool, parts: &mut [(&Weight, &[u8], &mut [f32])], t: usize) {
    struct Part<'a> {
        w: &'a Weight,
        a: &'a [u8],
        out: SyncPtr<f32>,
        /// First work unit: a row, or a group of 8 rows for a repacked matrix.
        first: usize,
        units: usize,
    }
    let mut total = 0;
    let mut any_packed = false;
    let mut ps: Vec<Part<'_>> = Vec::with_capacity(parts.len());
    for (w, a, out) in parts.iter_mut() {
        debug_assert_eq!(out.len(), t * w.rows);
        let units = if w.packed().is_some() {
            any_packed = true;
            w.rows.div_ceil(hearth_kernels::repack::ROWS)
        } else {
            w.rows
        };
        ps.push(Part { w, a, out: SyncPtr::new(out), first: total, units });
        total += units;
    }
    // Pieces of whole 16-row multiples either way.
    let align = if any_packed { 2 } else { 16 };
    let chunk = pool.chunk_for(total, 4, align);
    let body = |g0: usize, g1: usize| {
        for p in &ps {
            let (lo, hi) = (g0.max(p.first), g1.min(p.first + p.units));
            if lo < hi {
                matmul_piece(p.w, p.a, t, p.out, lo - p.first, hi - p.first);
            }
        }
    };
    if t > 1 {
        // Batched rows are compute-bound: guided ranges so that both threads
        // finish together. One row (decode) streams the weights, where the
        // equal chunks measured best.
        pool.parallel_for_guided(total, chunk, align, &body);
    } else {
        pool.parallel_for(total, chunk, &body);
    }
}

/// Work units `u0..u1` (rows, or 8-row groups of a repacked matrix) of
/// `W a` for all `t` activation rows into `out` (`t` rows of `w.rows`),
/// which the caller lets this task alone write there.
fn matmul_piece(w: &Weight, a: &[u8], t: usize, out_ptr: SyncPtr<f32>, u0: usize, u1: usize) {
    let (rows, cols, rb, ty) = (w.rows, w.cols, w.row_bytes(), w.ty);
    let packed = w.packed();
    let (r0, r1) = match packed {
        Some(_) => {
            let g = hearth_kernels::repack::ROWS;
            (u0 * g, (u1 * g).min(rows))
        }
        None => (u0, u1),
    };
    let n = r1 - r0;
    // The matrix product on rows r0..r1 into `o` (t rows of stride `stride`).
    let run = |o: &mut [f32], stride: usize| match packed {
        Some(p) => {
            let gb = hearth_kernels::repack::ROWS * rb;
            hearth_kernels::repack::matmul(ty, cols, &p[u0 * gb..u1 * gb], n, a, t, o, stride)
        }
        None => {
            let wb = &w.bytes()[r0 * rb..r1 * rb];
            if t == 1 {
                hearth_kernels::vec_dot_rows(ty, cols, wb, a, &mut o[..n])
            } else {
                hearth_kernels::matmul_rows(ty, cols, wb, n, a, t, o, stride)
            }
        }
    };
    if t == 1 {
        // SAFETY: chunks are disjoint row ranges of the single output row.
        let o = unsafe { out_ptr.slice(r0, n) };
        run(o, n);
        return;
    }
    if let Some(p) = packed {
        let gb = hearth_kernels::repack::ROWS * rb;
        // SAFETY: this task alone owns columns r0..r1 of each of the t
        // output rows (stride `rows`), which is all the kernel writes.
        unsafe { hearth_kernels::repack::matmul_strided(ty, cols, &p[u0 * gb..u1 * gb], n, a, t, out_ptr.0.add(r0), rows) };
        return;
    }
    TILE.with(|tile| {
        let mut tile = tile.borrow_mut();
        // Grown, never cleared: the kernels write every one of the t * n
        // values (zero-filling it each call was 1% of a batched step).
        if tile.len() < t * n {
            tile.resize(t * n, 0.0);
        }
        let tile = &mut tile[..t * n];
        run(tile, n);
        for ti in 0..t {
            // SAFETY: this task owns columns r0..r1 of every output row.
            let o = unsafe { out_ptr.slice(ti * rows + r0, n) };
            o.copy_from_slice(&tile[ti * n..(ti + 1) * n]);
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::kv_cache::{KvData, LayerKv};

    fn vals(seed: u64, n: usize, scale: f32) -> Vec<f32> {
        let mut s = seed;
        (0..n)
            .map(|_| {
                s = s.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
                ((s >> 40) as f32 / (1u64 << 24) as f32 * 2.0 - 1.0) * scale
            })
            .collect()
    }

    /// A tile must give exactly what the scalar `attend` gives head by head
    /// and token by token:
    /// the fidelity fixtures depend on every bit of the attention output.
    #[test]
    fn tiled_attention_is_bit_identical_to_one_token_at_a_time() {
        let (nkv, dk, dv, cap) = (2usize, 64usize, 64usize, 80usize);
        for (group, window, softcap, pos0, tn) in [
            (7, None, None, 0, 8),
            (7, None, None, 37, 8),
            (4, Some(16), None, 30, 8),
            (2, Some(5), Some(50.0), 3, 6),
            (1, None, Some(30.0), 70, 3),
        ] {
            let n = pos0 + tn;
            let lkv = LayerKv {
                n_kv_head: nkv,
                head_dim_k: dk,
                head_dim_v: dv,
                cap,
                k: KvData::F16(vals(1, nkv * cap * dk, 2.0).into_iter().map(f16::from_f32).collect()),
                v: KvData::F16(vals(2, nkv * cap * dv, 3.0).into_iter().map(f16::from_f32).collect()),
            };
            let nh = nkv * group;
            let (q_dim, attn_dim) = (nh * dk, nh * dv);
            // Two unrelated rows before the tile, as in a batch.
            let t0 = 2;
            let q = vals(3, (t0 + tn) * q_dim, 1.5);
            let geo = TileGeometry { group, q_dim, attn_dim, scale: 0.125, softcap, window };
            let mut got = vec![f32::NAN; (t0 + tn) * attn_dim];
            let mut sc = Vec::new();
            for g in 0..nkv {
                attend_tile(&lkv, g, &geo, &q, t0, tn, pos0, &mut sc, SyncPtr::new(&mut got));
            }
            let mut want = vec![f32::NAN; (t0 + tn) * attn_dim];
            for i in 0..tn {
                let (t, pos) = (t0 + i, pos0 + i);
                let lo = window.map_or(0, |w| (pos + 1).saturating_sub(w));
                for g in 0..nkv {
                    let qs = &q[t * q_dim + g * group * dk..t * q_dim + (g + 1) * group * dk];
                    for h in 0..group {
                        let o = &mut want[t * attn_dim + (g * group + h) * dv..t * attn_dim + (g * group + h + 1) * dv];
                        attend(&lkv, g, &qs[h * dk..(h + 1) * dk], lo, pos + 1, 0.125, softcap, &mut sc, o);
                    }
                }
            }
            let (a, b) = (&got[t0 * attn_dim..], &want[t0 * attn_dim..]);
            assert!(a.iter().all(|x| x.is_finite()), "group={group} n={n}");
            for (i, (x, y)) in a.iter().zip(b).enumerate() {
                assert_eq!(x.to_bits(), y.to_bits(), "group={group} window={window:?} softcap={softcap:?} pos0={pos0} at {i}");
            }
        }
    }
}
