//! Forward and backward passes of [`Net`], written the way llm.c writes GPT-2:
//! an explicit forward that keeps every activation the backward needs, and a
//! hand-written backward for each operation, in reverse order.
//!
//! Buffers are token-major: row `r = b·T + t` is position `t` of sequence
//! `b`; each sequence starts at position 0. Per layer the forward keeps the
//! layer input, both normalised inputs and their reciprocal RMS, the
//! post-RoPE q and k (and, with per-head q/k norms, the pre-norm q and k
//! and their reciprocal RMS), v, the attention probabilities (`B·H·T·T`, only the
//! causal triangle used), the attention output, the mid-layer residual, gate,
//! up and the SwiGLU (or GeGLU) product, plus `x·Aᵀ` of every LoRA adapter;
//! for Gemma also the inputs of the post-norms and their reciprocal RMS, and
//! `tanh(s/c)` of every soft-capped attention score and logit (whose
//! derivative `1 − tanh²` the backward needs).
//!
//! Numerics: plain f32 (or f64 for gradient checks) with libm `exp`, sums of
//! squares in f64 as ggml does for RMSNorm. The engine differs by rounding
//! q, K, V and the attention weights to f16 and activations to the weights'
//! `vec_dot_type`; `tests/engine_parity.rs` measures the effect. The engine
//! also reads GELU from an f16 table (ops.rs `gelu_ggml`); training uses the
//! closed form (`tests/lora.rs` measures the difference on Gemma bases).
//!
//! Deliberately absent: activation checkpointing (recomputation), fused or
//! flash attention, dropout, and mixed precision.

use crate::error::{DistillError, Result};
use crate::gemm::{gemm, MatRef};

#[inline(always)]
fn raw<T>(p: &SyncPtr<T>) -> *mut T {
    p.0
}
use crate::net::{FrozenMat, Linear, MatSrc, Net, NetLayer, VecSrc};
use crate::real::Real;
use hearth_models::config::RopeLayout;
use hearth_models::ops::RopeTables;
use hearth_models::pool::{SyncPtr, ThreadPool};

/// Target id meaning "no loss at this position".
pub const IGNORE: u32 = u32::MAX;

/// Rows of a frozen matrix dequantized at a time: bounds the f32 copy of a
/// quantized weight to `FROZEN_BLOCK × cols` values.
const FROZEN_BLOCK: usize = 256;

/// One micro-batch: `b` sequences of `t` tokens.
#[derive(Clone, Copy, Debug)]
pub struct Batch<'a> {
    pub b: usize,
    pub t: usize,
    pub inputs: &'a [u32],
    /// Next-token targets, [`IGNORE`] where no loss is taken.
    pub targets: &'a [u32],
    /// Teacher top-k `(token, log-probability)` per position (empty = none).
    pub teacher: Option<&'a [Vec<(u32, f32)>]>,
}

/// How the loss is weighted.
#[derive(Clone, Copy, Debug)]
pub struct LossWeights {
    /// Multiplies every gradient: usually `1 / (target tokens in the step)`,
    /// so gradients of accumulated micro-batches add up to the mean.
    pub scale: f64,
    /// Weight of the KL term against the teacher's top-k.
    pub kl: f64,
    /// Add the teacher's mass outside its top-k as one "rest" bucket:
    /// KL over the k + 1 outcomes (top-k tokens, everything else), with the
    /// student's rest mass 1 − Σ_top-k q. Without it the term's optimum puts
    /// no mass outside the top-k, so the student becomes over-confident and
    /// the full-vocabulary KL to the teacher grows (docs/distill.md).
    pub kl_rest: bool,
}

/// Sums over the micro-batch (not means).
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct LossSums {
    /// Σ −log p(target).
    pub ce: f64,
    /// Σ over positions with a teacher of Σ_i p_i (log p_i − log q_i).
    pub kl: f64,
    /// Positions with a target.
    pub n_targets: usize,
}

impl LossSums {
    pub fn add(&mut self, o: &LossSums) {
        self.ce += o.ce;
        self.kl += o.kl;
        self.n_targets += o.n_targets;
    }
}

#[derive(Default)]
struct LayerActs<T> {
    xn1: Vec<T>,
    rstd1: Vec<T>,
    q: Vec<T>,
    k: Vec<T>,
    v: Vec<T>,
    /// q and k before their per-head norms, and the per-head reciprocal
    /// RMS (only with `qk_norm`).
    q_raw: Vec<T>,
    k_raw: Vec<T>,
    rstd_q: Vec<T>,
    rstd_k: Vec<T>,
    p: Vec<T>,
    o: Vec<T>,
    x_mid: Vec<T>,
    xn2: Vec<T>,
    rstd2: Vec<T>,
    g: Vec<T>,
    u: Vec<T>,
    h: Vec<T>,
    /// Inputs of the post-attention / post-FFN norms (the projections'
    /// outputs) and their reciprocal RMS (only with post-norms).
    pa_in: Vec<T>,
    rstd_pa: Vec<T>,
    pf_in: Vec<T>,
    rstd_pf: Vec<T>,
    /// `tanh(s / c)` of each attention score (only with soft-capping).
    th: Vec<T>,
    /// `scale · x Aᵀ` per LoRA target, in `Target::ALL` order.
    lora: [Vec<T>; 7],
}

/// Activations and gradient buffers, reused between steps.
#[derive(Default)]
pub struct Workspace<T> {
    resid: Vec<Vec<T>>,
    layers: Vec<LayerActs<T>>,
    xf: Vec<T>,
    rstdf: Vec<T>,
    logits: Vec<T>,
    /// `tanh(z / c)` of each logit (only with a final soft-cap).
    logit_th: Vec<T>,
    dproj: Vec<T>,
    rope: Vec<RopeCache>,
    row_ce: Vec<f64>,
    row_kl: Vec<f64>,
    tmp: Vec<T>,
    dx: Vec<T>,
    dxn: Vec<T>,
    dbig: Vec<T>,
    dg: Vec<T>,
    du: Vec<T>,
    dq: Vec<T>,
    dk: Vec<T>,
    dv: Vec<T>,
    dq_raw: Vec<T>,
    dk_raw: Vec<T>,
    dlora: Vec<T>,
    blk32: Vec<f32>,
    blk: Vec<T>,
}

impl<T: Real> Workspace<T> {
    pub fn new() -> Workspace<T> {
        Workspace {
            resid: Vec::new(),
            layers: Vec::new(),
            xf: Vec::new(),
            rstdf: Vec::new(),
            logits: Vec::new(),
            logit_th: Vec::new(),
            dproj: Vec::new(),
            rope: Vec::new(),
            row_ce: Vec::new(),
            row_kl: Vec::new(),
            tmp: Vec::new(),
            dx: Vec::new(),
            dxn: Vec::new(),
            dbig: Vec::new(),
            dg: Vec::new(),
            du: Vec::new(),
            dq: Vec::new(),
            dk: Vec::new(),
            dv: Vec::new(),
            dq_raw: Vec::new(),
            dk_raw: Vec::new(),
            dlora: Vec::new(),
            blk32: Vec::new(),
            blk: Vec::new(),
        }
    }

    /// Logits of the last forward (`n × n_vocab`); after a backward they
    /// hold the logit gradients instead.
    pub fn logits(&self) -> &[T] {
        &self.logits
    }
}

fn sized<T: Real>(v: &mut Vec<T>, n: usize) -> &mut [T] {
    if v.len() != n {
        v.clear();
        v.resize(n, T::ZERO);
    }
    &mut v[..n]
}

/// cos/sin of each position and rotated pair, taken from the engine's own
/// tables ([`RopeTables`]) so training and inference rotate identically.
struct RopeCache {
    cs: Vec<(f32, f32)>,
    half: usize,
    layout: RopeLayout,
}

impl RopeCache {
    fn new(net: &Net, layer: &NetLayer, t: usize) -> RopeCache {
        let rc = layer.rope.as_ref().unwrap_or(&net.cfg.rope);
        let half = rc.n_rot / 2;
        let tables = RopeTables::new(rc, layer.rope_factors.as_deref(), 0, t);
        // Rotating a unit vector reads the table back: (1, 0) -> (cos, sin).
        let mut unit = vec![0f32; rc.n_rot];
        let mut cs = Vec::with_capacity(t * half);
        for p in 0..t {
            unit.iter_mut().for_each(|v| *v = 0.0);
            for j in 0..half {
                match rc.layout {
                    RopeLayout::Interleaved => unit[2 * j] = 1.0,
                    RopeLayout::Halves => unit[j] = 1.0,
                }
            }
            tables.apply(p, &mut unit, 1, rc.n_rot);
            for j in 0..half {
                cs.push(match rc.layout {
                    RopeLayout::Interleaved => (unit[2 * j], unit[2 * j + 1]),
                    RopeLayout::Halves => (unit[j], unit[j + half]),
                });
            }
        }
        RopeCache { cs, half, layout: rc.layout }
    }

    /// Rotates (or, with `transpose`, rotates back: the gradient of a
    /// rotation is its transpose) every head of each row of `x`.
    fn apply<T: Real>(&self, x: &mut [T], t: usize, n_head: usize, head_dim: usize, transpose: bool) {
        let width = n_head * head_dim;
        for (r, row) in x.chunks_exact_mut(width).enumerate() {
            let cs = &self.cs[(r % t) * self.half..(r % t + 1) * self.half];
            for head in row.chunks_exact_mut(head_dim) {
                for (j, &(c, s)) in cs.iter().enumerate() {
                    let (c, s) = (T::from_f32(c), if transpose { -T::from_f32(s) } else { T::from_f32(s) });
                    let (i0, i1) = match self.layout {
                        RopeLayout::Interleaved => (2 * j, 2 * j + 1),
                        RopeLayout::Halves => (j, j + self.half),
                    };
                    let (x0, x1) = (head[i0], head[i1]);
                    head[i0] = x0 * c - x1 * s;
                    head[i1] = x0 * s + x1 * c;
                }
            }
        }
    }
}

/// GELU, tanh approximation, as the engine's GeGLU (ggml `gelu`:
/// `0.5·x·(1 + tanh(sqrt(2/π)·x·(1 + 0.044715·x²)))`), and its derivative.
/// The engine reads it from an f16 table (ops.rs `gelu_ggml`); training uses
/// the closed form.
#[inline]
fn gelu_and_grad<T: Real>(x: T) -> (T, T) {
    let a = T::from_f64((2.0 / std::f64::consts::PI).sqrt());
    let b = T::from_f64(0.044715);
    let half = T::from_f64(0.5);
    let th = (a * x * (T::ONE + b * x * x)).tanh();
    let y = half * x * (T::ONE + th);
    let dy = half * (T::ONE + th) + half * x * (T::ONE - th * th) * a * (T::ONE + T::from_f64(3.0) * b * x * x);
    (y, dy)
}

#[inline]
fn dot<T: Real>(a: &[T], b: &[T]) -> T {
    let mut acc = [T::ZERO; 8];
    let (ca, cb) = (a.chunks_exact(8), b.chunks_exact(8));
    let (ra, rb) = (ca.remainder(), cb.remainder());
    for (x, y) in ca.zip(cb) {
        for l in 0..8 {
            acc[l] += x[l] * y[l];
        }
    }
    let mut s = ((acc[0] + acc[4]) + (acc[1] + acc[5])) + ((acc[2] + acc[6]) + (acc[3] + acc[7]));
    for (x, y) in ra.iter().zip(rb) {
        s += *x * *y;
    }
    s
}

/// Values of a vector source as `T`.
fn vec_of<T: Real>(net: &Net, params: &[T], src: &VecSrc) -> Vec<T> {
    match src {
        VecSrc::Param(id) => net.params.slice(*id, params).to_vec(),
        VecSrc::Frozen(v) => v.iter().map(|&x| T::from_f32(x)).collect(),
    }
}

/// Rows `r0..r1` of a frozen matrix, dequantized into `out`.
fn frozen_rows<T: Real>(fm: &FrozenMat, r0: usize, r1: usize, tmp: &mut Vec<f32>, out: &mut Vec<T>) {
    let cols = fm.weight.cols;
    tmp.resize(cols, 0.0);
    out.clear();
    out.reserve((r1 - r0) * cols);
    for r in r0..r1 {
        fm.weight.dequantize_row(fm.row0 + r, tmp);
        out.extend(tmp.iter().map(|&v| T::from_f32(v)));
    }
}

/// The gradient slice of a vector when it is a parameter.
fn vec_grad<'a, T>(net: &Net, src: &VecSrc, grads: &'a mut [T]) -> Option<&'a mut [T]> {
    match src {
        VecSrc::Param(id) => Some(net.params.slice_mut(*id, grads)),
        VecSrc::Frozen(_) => None,
    }
}

fn rmsnorm_fwd<T: Real>(x: &[T], w: &[T], eps: f32, y: &mut [T], rstd: &mut [T]) {
    let d = w.len();
    for ((xr, yr), rs) in x.chunks_exact(d).zip(y.chunks_exact_mut(d)).zip(rstd.iter_mut()) {
        let ss: f64 = xr.iter().map(|v| v.to_f64() * v.to_f64()).sum();
        let ms = T::from_f64(ss / d as f64);
        let r = T::ONE / (ms + T::from_f32(eps)).sqrt();
        *rs = r;
        for ((yv, &xv), &wv) in yr.iter_mut().zip(xr).zip(w) {
            *yv = xv * r * wv;
        }
    }
}

/// `dx += ∂y/∂x · dy` and `dw += ∂y/∂w · dy` for `y = x · rstd · w`.
/// With `g = dy ⊙ w`: `dx = rstd·g − x · rstd³ · (g·x) / d`.
fn rmsnorm_bwd<T: Real>(dy: &[T], x: &[T], rstd: &[T], w: &[T], dx: &mut [T], mut dw: Option<&mut [T]>) {
    let d = w.len();
    let inv_d = T::from_f64(1.0 / d as f64);
    let mut g = vec![T::ZERO; d];
    for (((dyr, xr), &r), dxr) in dy.chunks_exact(d).zip(x.chunks_exact(d)).zip(rstd).zip(dx.chunks_exact_mut(d)) {
        for ((gv, &dyv), &wv) in g.iter_mut().zip(dyr).zip(w) {
            *gv = dyv * wv;
        }
        let gx = dot(&g, xr);
        let c = r * r * r * gx * inv_d;
        for ((dxv, &gv), &xv) in dxr.iter_mut().zip(&g).zip(xr) {
            *dxv += r * gv - xv * c;
        }
        if let Some(dw) = dw.as_deref_mut() {
            for ((dwv, &dyv), &xv) in dw.iter_mut().zip(dyr).zip(xr) {
                *dwv += dyv * xv * r;
            }
        }
    }
}

/// `y = x Wᵀ (+ b) (+ LoRA)` for `n` rows; LoRA's `scale · x Aᵀ` is kept in
/// `lora_save`.
#[allow(clippy::too_many_arguments)]
fn linear_fwd<T: Real>(
    pool: &ThreadPool,
    net: &Net,
    params: &[T],
    lin: &Linear,
    n: usize,
    x: &[T],
    y: &mut [T],
    lora_save: &mut Vec<T>,
    blk32: &mut Vec<f32>,
    blk: &mut Vec<T>,
) {
    let (rows, cols) = (lin.rows, lin.cols);
    match &lin.w {
        MatSrc::Param(id) => {
            let w = net.params.slice(*id, params);
            gemm(pool, n, rows, cols, MatRef::rows(x, cols), MatRef::rows_t(w, cols), y, rows, false);
        }
        MatSrc::Frozen(fm) => {
            let mut r0 = 0;
            while r0 < rows {
                let r1 = (r0 + FROZEN_BLOCK).min(rows);
                frozen_rows(fm, r0, r1, blk32, blk);
                gemm(pool, n, r1 - r0, cols, MatRef::rows(x, cols), MatRef::rows_t(blk, cols), &mut y[r0..], rows, false);
                r0 = r1;
            }
        }
    }
    if let Some(b) = &lin.bias {
        let b = vec_of(net, params, b);
        for yr in y.chunks_exact_mut(rows) {
            for (v, &bv) in yr.iter_mut().zip(&b) {
                *v += bv;
            }
        }
    }
    if let Some(l) = &lin.lora {
        let (a, bm) = (net.params.slice(l.a, params), net.params.slice(l.b, params));
        let xa = sized(lora_save, n * l.rank);
        gemm(pool, n, l.rank, cols, MatRef::rows(x, cols), MatRef::rows_t(a, cols), xa, l.rank, false);
        let s = T::from_f32(net.lora_scale);
        xa.iter_mut().for_each(|v| *v *= s);
        gemm(pool, n, rows, l.rank, MatRef::rows(xa, l.rank), MatRef::rows_t(bm, l.rank), y, rows, true);
    }
}

/// Backward of [`linear_fwd`]: parameter gradients into `grads`, and
/// `dx = dy W` (added to `dx` when `accumulate`).
#[allow(clippy::too_many_arguments)]
fn linear_bwd<T: Real>(
    pool: &ThreadPool,
    net: &Net,
    params: &[T],
    mut grads: Option<&mut [T]>,
    lin: &Linear,
    n: usize,
    x: &[T],
    dy: &[T],
    dx: &mut [T],
    accumulate: bool,
    lora_saved: &[T],
    dlora: &mut Vec<T>,
    blk32: &mut Vec<f32>,
    blk: &mut Vec<T>,
) {
    let (rows, cols) = (lin.rows, lin.cols);
    if let (Some(g), MatSrc::Param(id)) = (grads.as_deref_mut(), &lin.w) {
        // dW += dyᵀ x
        let gw = net.params.slice_mut(*id, g);
        gemm(pool, rows, cols, n, MatRef::rows_t(dy, rows), MatRef::rows(x, cols), gw, cols, true);
    }
    if let (Some(g), Some(VecSrc::Param(id))) = (grads.as_deref_mut(), &lin.bias) {
        let gb = net.params.slice_mut(*id, g);
        for dyr in dy.chunks_exact(rows) {
            for (v, &d) in gb.iter_mut().zip(dyr) {
                *v += d;
            }
        }
    }
    match &lin.w {
        MatSrc::Param(id) => {
            let w = net.params.slice(*id, params);
            gemm(pool, n, cols, rows, MatRef::rows(dy, rows), MatRef::rows(w, cols), dx, cols, accumulate);
        }
        MatSrc::Frozen(fm) => {
            let mut r0 = 0;
            while r0 < rows {
                let r1 = (r0 + FROZEN_BLOCK).min(rows);
                frozen_rows(fm, r0, r1, blk32, blk);
                let dy_blk = MatRef { data: &dy[r0..], rs: rows, cs: 1 };
                gemm(pool, n, cols, r1 - r0, dy_blk, MatRef::rows(blk, cols), dx, cols, accumulate || r0 > 0);
                r0 = r1;
            }
        }
    }
    if let Some(l) = &lin.lora {
        let r = l.rank;
        let (a, bm) = (net.params.slice(l.a, params), net.params.slice(l.b, params));
        if let Some(g) = grads.as_deref_mut() {
            // dB += dyᵀ (s·xAᵀ)
            gemm(pool, rows, r, n, MatRef::rows_t(dy, rows), MatRef::rows(lora_saved, r), net.params.slice_mut(l.b, g), r, true);
        }
        // d(xAᵀ) = s · dy B
        let dxa = sized(dlora, n * r);
        gemm(pool, n, r, rows, MatRef::rows(dy, rows), MatRef::rows(bm, r), dxa, r, false);
        let s = T::from_f32(net.lora_scale);
        dxa.iter_mut().for_each(|v| *v *= s);
        if let Some(g) = grads.as_deref_mut() {
            // dA += d(xAᵀ)ᵀ x
            gemm(pool, r, cols, n, MatRef::rows_t(dxa, r), MatRef::rows(x, cols), net.params.slice_mut(l.a, g), cols, true);
        }
        // dx += d(xAᵀ) A
        gemm(pool, n, cols, r, MatRef::rows(dxa, r), MatRef::rows(a, cols), dx, cols, true);
    }
}

/// Query rows per attention block: the score block of rows `i0..i1` only
/// spans keys `0..i1`, so about half of the causal triangle's upper part
/// is skipped instead of computed and masked.
const ATT_ROWS: usize = 64;

/// `C = A·B` on the calling thread through raw C (several tasks write
/// interleaved columns of one buffer, so no `&mut` slice may span them).
///
/// # Safety
/// `c` must be valid for the `m × n` block at stride `ldc`, owned by the
/// caller's task.
#[allow(clippy::too_many_arguments)]
unsafe fn gemm_raw<T: Real>(m: usize, n: usize, k: usize, a: MatRef<'_, T>, b: MatRef<'_, T>, c: *mut T, ldc: usize, acc: bool) {
    if m > 0 && n > 0 {
        T::gemm_block((0, m), (0, n), k, a, b, c, ldc, acc);
    }
}

/// Causal softmax attention with grouped K/V heads, one task per
/// (sequence, head); scores and `P·V` go through the GEMM kernel in blocks of
/// [`ATT_ROWS`] queries. `p` receives the probabilities (`b·H·T·T`, zero
/// above the diagonal).
#[allow(clippy::too_many_arguments)]
fn attention_fwd<T: Real>(
    pool: &ThreadPool,
    net: &Net,
    window: Option<usize>,
    b: usize,
    t: usize,
    q: &[T],
    k: &[T],
    v: &[T],
    p: &mut [T],
    th: &mut [T],
    o: &mut [T],
) {
    let c = &net.cfg;
    let (nh, hd, qd, kd) = (c.n_head, c.head_dim, c.q_dim(), c.kv_dim());
    let grp = nh / c.n_head_kv;
    let scale = T::from_f32(c.attn_scale);
    // decoder.rs attend: `tanh(s · (1/c)) · c` with the reciprocal in f32.
    let cap = c.attn_softcap.map(|cv| (T::from_f32(cv), T::from_f32(1.0 / cv)));
    let capped = cap.is_some();
    let (pp, op, thp) = (SyncPtr::new(p), SyncPtr::new(o), SyncPtr::new(th));
    pool.parallel_for(b * nh, 1, &|s, e| {
        for task in s..e {
            let (bi, h) = (task / nh, task % nh);
            let g = h / grp;
            let qh = &q[bi * t * qd + h * hd..];
            let kg = &k[bi * t * kd + g * hd..];
            let vg = &v[bi * t * kd + g * hd..];
            // SAFETY: (bi, h) owns its T×T probability block and head h of
            // the output rows of sequence bi.
            let ph = unsafe { pp.slice((bi * nh + h) * t * t, t * t) };
            let thh = if capped { unsafe { thp.slice((bi * nh + h) * t * t, t * t) } } else { &mut [][..] };
            let oh = unsafe { raw(&op).add(bi * t * qd + h * hd) };
            let mut i0 = 0;
            while i0 < t {
                let i1 = (i0 + ATT_ROWS).min(t);
                let rows = i1 - i0;
                let pblk = &mut ph[i0 * t..];
                // S = Q Kᵀ for queries i0..i1 and keys 0..i1.
                unsafe {
                    gemm_raw(rows, i1, hd, MatRef { data: &qh[i0 * qd..], rs: qd, cs: 1 }, MatRef { data: kg, rs: 1, cs: kd }, pblk.as_mut_ptr(), t, false)
                };
                for r in 0..rows {
                    let i = i0 + r;
                    // Keys lo..=i: a sliding window keeps the last `w`
                    // (decoder.rs: lo = pos + 1 − w).
                    let lo = window.map_or(0, |w| (i + 1).saturating_sub(w));
                    let pr = &mut pblk[r * t..(r + 1) * t];
                    let mut max = T::from_f64(f64::NEG_INFINITY);
                    for j in lo..=i {
                        let mut sv = pr[j] * scale;
                        if let Some((cv, inv_c)) = cap {
                            let tv = (sv * inv_c).tanh();
                            thh[i * t + j] = tv;
                            sv = tv * cv;
                        }
                        pr[j] = sv;
                        max = max.max(sv);
                    }
                    let mut sum = T::ZERO;
                    for pv in pr[lo..=i].iter_mut() {
                        *pv = (*pv - max).exp();
                        sum += *pv;
                    }
                    let inv = T::ONE / sum;
                    pr[lo..=i].iter_mut().for_each(|pv| *pv *= inv);
                    pr[..lo].iter_mut().for_each(|pv| *pv = T::ZERO);
                    pr[i + 1..].iter_mut().for_each(|pv| *pv = T::ZERO);
                }
                // O = P V.
                unsafe {
                    gemm_raw(rows, hd, i1, MatRef { data: &pblk[..], rs: t, cs: 1 }, MatRef { data: vg, rs: kd, cs: 1 }, oh.add(i0 * qd), qd, false)
                };
                i0 = i1;
            }
        }
    });
}

/// Backward of [`attention_fwd`], one task per (sequence, K/V head), so that
/// the query heads sharing a K/V head add into dK/dV in a fixed order:
/// `dP = dO Vᵀ`, `dS = P ⊙ (dP − rowsum(P ⊙ dP)) · scale`, `dQ = dS K`,
/// `dK += dSᵀ Q`, `dV += Pᵀ dO`.
#[allow(clippy::too_many_arguments)]
fn attention_bwd<T: Real>(
    pool: &ThreadPool,
    net: &Net,
    b: usize,
    t: usize,
    q: &[T],
    k: &[T],
    v: &[T],
    p: &[T],
    th: &[T],
    d_o: &[T],
    dq: &mut [T],
    dk: &mut [T],
    dv: &mut [T],
) {
    let c = &net.cfg;
    let (nh, nkv, hd, qd, kd) = (c.n_head, c.n_head_kv, c.head_dim, c.q_dim(), c.kv_dim());
    let grp = nh / nkv;
    let scale = T::from_f32(c.attn_scale);
    let capped = c.attn_softcap.is_some();
    let (dqp, dkp, dvp) = (SyncPtr::new(dq), SyncPtr::new(dk), SyncPtr::new(dv));
    pool.parallel_for(b * nkv, 1, &|s, e| {
        let mut ds = vec![T::ZERO; ATT_ROWS * t];
        for task in s..e {
            let (bi, g) = (task / nkv, task % nkv);
            let kg = &k[bi * t * kd + g * hd..];
            let vg = &v[bi * t * kd + g * hd..];
            // SAFETY: (bi, g) owns head g of dK/dV rows of sequence bi and
            // the query heads of group g in dQ.
            let (dkg, dvg) = unsafe { (raw(&dkp).add(bi * t * kd + g * hd), raw(&dvp).add(bi * t * kd + g * hd)) };
            for j in 0..t {
                unsafe {
                    std::slice::from_raw_parts_mut(dkg.add(j * kd), hd).iter_mut().for_each(|x| *x = T::ZERO);
                    std::slice::from_raw_parts_mut(dvg.add(j * kd), hd).iter_mut().for_each(|x| *x = T::ZERO);
                }
            }
            for h in g * grp..(g + 1) * grp {
                let qh = &q[bi * t * qd + h * hd..];
                let doh = &d_o[bi * t * qd + h * hd..];
                let ph = &p[(bi * nh + h) * t * t..(bi * nh + h + 1) * t * t];
                let thh = if capped { &th[(bi * nh + h) * t * t..(bi * nh + h + 1) * t * t] } else { &[][..] };
                let dqh = unsafe { raw(&dqp).add(bi * t * qd + h * hd) };
                let mut i0 = 0;
                while i0 < t {
                    let i1 = (i0 + ATT_ROWS).min(t);
                    let rows = i1 - i0;
                    let pblk = &ph[i0 * t..];
                    let do_blk = MatRef { data: &doh[i0 * qd..], rs: qd, cs: 1 };
                    // dP = dO Vᵀ (keys 0..i1), then dS in place.
                    unsafe { gemm_raw(rows, i1, hd, do_blk, MatRef { data: vg, rs: 1, cs: kd }, ds.as_mut_ptr(), t, false) };
                    for r in 0..rows {
                        let i = i0 + r;
                        let (pr, dr) = (&pblk[r * t..r * t + i1], &mut ds[r * t..r * t + i1]);
                        let pdp = dot(&pr[..=i], &dr[..=i]);
                        for (dv_, &pv) in dr[..=i].iter_mut().zip(&pr[..=i]) {
                            *dv_ = pv * (*dv_ - pdp) * scale;
                        }
                        if capped {
                            // d(c·tanh(s/c))/ds = 1 − tanh²; masked keys
                            // have P = 0 and so dS = 0 already.
                            for (dv_, &tv) in dr[..=i].iter_mut().zip(&thh[i * t..i * t + i + 1]) {
                                *dv_ *= T::ONE - tv * tv;
                            }
                        }
                        dr[i + 1..].iter_mut().for_each(|x| *x = T::ZERO);
                    }
                    let ds_blk = MatRef { data: &ds[..], rs: t, cs: 1 };
                    unsafe {
                        // dQ = dS K
                        gemm_raw(rows, hd, i1, ds_blk, MatRef { data: kg, rs: kd, cs: 1 }, dqh.add(i0 * qd), qd, false);
                        // dK += dSᵀ Q
                        gemm_raw(i1, hd, rows, MatRef { data: &ds[..], rs: 1, cs: t }, MatRef { data: &qh[i0 * qd..], rs: qd, cs: 1 }, dkg, kd, true);
                        // dV += Pᵀ dO
                        gemm_raw(i1, hd, rows, MatRef { data: pblk, rs: 1, cs: t }, do_blk, dvg, kd, true);
                    }
                    i0 = i1;
                }
            }
        }
    });
}

/// Cross-entropy (and the teacher KL term) per row; replaces the logits by
/// their gradient when `backward`.
fn loss_rows<T: Real>(
    pool: &ThreadPool,
    logits: &mut [T],
    n_vocab: usize,
    batch: &Batch<'_>,
    w: LossWeights,
    backward: bool,
    row_ce: &mut [f64],
    row_kl: &mut [f64],
) {
    let n = batch.inputs.len();
    let lp = SyncPtr::new(logits);
    let (cp, kp) = (SyncPtr::new(row_ce), SyncPtr::new(row_kl));
    pool.parallel_for(n, 16, &|s, e| {
        for r in s..e {
            // SAFETY: each row is owned by one task.
            let z = unsafe { lp.slice(r * n_vocab, n_vocab) };
            let (ce, kl) = unsafe { (&mut cp.slice(r, 1)[0], &mut kp.slice(r, 1)[0]) };
            *ce = 0.0;
            *kl = 0.0;
            let target = batch.targets[r];
            if target == IGNORE {
                if backward {
                    z.iter_mut().for_each(|v| *v = T::ZERO);
                }
                continue;
            }
            let max = z.iter().fold(T::from_f64(f64::NEG_INFINITY), |m, &v| m.max(v));
            let sum: T = z.iter().map(|&v| (v - max).exp()).sum();
            let lse = max + sum.ln();
            *ce = (lse - z[target as usize]).to_f64();
            let teacher = batch.teacher.map(|tt| tt[r].as_slice()).unwrap_or(&[]);
            let (mut mass, mut q_top) = (0f64, 0f64);
            for &(id, lpt) in teacher {
                let pt = (lpt as f64).exp();
                let lq = (z[id as usize] - lse).to_f64();
                mass += pt;
                q_top += lq.exp();
                *kl += pt * (lpt as f64 - lq);
            }
            // The rest bucket: teacher mass p_r = 1 − Σ p, student mass
            // q_r = 1 − Σ q (floored so a student with everything on the
            // top-k still has a finite loss).
            let rest = w.kl_rest && !teacher.is_empty();
            let (p_r, q_r) = ((1.0 - mass).max(0.0), (1.0 - q_top).max(1e-12));
            if rest && p_r > 0.0 {
                *kl += p_r * (p_r.ln() - q_r.ln());
            }
            if backward {
                let sc = T::from_f64(w.scale);
                if rest {
                    // d/dz_j of the bucketed KL: q_j − p_j on the top-k,
                    // q_j (1 − p_r/q_r) elsewhere; CE adds softmax − onehot.
                    let ratio = p_r / q_r;
                    let q_k: Vec<f64> = teacher.iter().map(|&(id, _)| (z[id as usize] - lse).to_f64().exp()).collect();
                    // mass + p_r is 1 unless rounding put the teacher's
                    // top-k mass above 1 (then p_r is 0).
                    let f = T::from_f64(w.scale * (1.0 + w.kl * (mass + p_r - ratio)));
                    for v in z.iter_mut() {
                        *v = (*v - lse).exp() * f;
                    }
                    z[target as usize] -= sc;
                    for (&(id, lpt), &q) in teacher.iter().zip(&q_k) {
                        z[id as usize] += T::from_f64(w.scale * w.kl * (ratio * q - (lpt as f64).exp()));
                    }
                } else {
                    // d/dz of CE: softmax − onehot; of KL: mass·softmax − p_teacher.
                    let f = T::from_f64(w.scale * (1.0 + w.kl * mass));
                    for v in z.iter_mut() {
                        *v = (*v - lse).exp() * f;
                    }
                    z[target as usize] -= sc;
                    for &(id, lpt) in teacher {
                        z[id as usize] -= T::from_f64(w.scale * w.kl * (lpt as f64).exp());
                    }
                }
            }
        }
    });
}

fn check_batch(net: &Net, batch: &Batch<'_>) -> Result<()> {
    let n = batch.b * batch.t;
    if n == 0 {
        return Err(DistillError::Batch("empty batch".into()));
    }
    if batch.inputs.len() != n || batch.targets.len() != n {
        return Err(DistillError::Batch(format!(
            "{} inputs and {} targets for {}x{} positions",
            batch.inputs.len(),
            batch.targets.len(),
            batch.b,
            batch.t
        )));
    }
    let nv = net.cfg.n_vocab;
    for &id in batch.inputs.iter().chain(batch.targets.iter().filter(|&&t| t != IGNORE)) {
        if id as usize >= nv {
            return Err(DistillError::TokenOutOfRange { id, n_vocab: nv });
        }
    }
    if let Some(tt) = batch.teacher {
        if tt.len() != n {
            return Err(DistillError::Batch(format!("{} teacher rows for {n} positions", tt.len())));
        }
        for row in tt {
            for &(id, lp) in row {
                if id as usize >= nv {
                    return Err(DistillError::TokenOutOfRange { id, n_vocab: nv });
                }
                if !(lp.is_finite() && lp <= 0.0) {
                    return Err(DistillError::Batch(format!("teacher log-probability {lp} is not a finite value <= 0")));
                }
            }
        }
    }
    Ok(())
}

/// Runs the forward pass, the loss and — with `grads` — the backward pass,
/// adding `w.scale`-weighted gradients into `grads`.
pub fn forward_backward<T: Real>(
    pool: &ThreadPool,
    net: &Net,
    params: &[T],
    grads: Option<&mut [T]>,
    batch: &Batch<'_>,
    w: LossWeights,
    ws: &mut Workspace<T>,
) -> Result<LossSums> {
    check_batch(net, batch)?;
    if params.len() != net.params.len || grads.as_ref().is_some_and(|g| g.len() != net.params.len) {
        return Err(DistillError::Batch(format!("parameter buffer has the wrong length (expected {})", net.params.len)));
    }
    forward(pool, net, params, batch.b, batch.t, batch.inputs, ws);
    let n = batch.inputs.len();
    let backward = grads.is_some();
    ws.row_ce.resize(n, 0.0);
    ws.row_kl.resize(n, 0.0);
    loss_rows(pool, &mut ws.logits, net.cfg.n_vocab, batch, w, backward, &mut ws.row_ce[..n], &mut ws.row_kl[..n]);
    let mut sums = LossSums::default();
    for r in 0..n {
        if batch.targets[r] != IGNORE {
            sums.ce += ws.row_ce[r];
            sums.kl += ws.row_kl[r];
            sums.n_targets += 1;
        }
    }
    if let Some(g) = grads {
        backward_pass(pool, net, params, g, batch, ws);
    }
    Ok(sums)
}

/// Logits (`b·t × n_vocab`) for a batch of token sequences.
pub fn logits<T: Real>(pool: &ThreadPool, net: &Net, params: &[T], b: usize, t: usize, tokens: &[u32], ws: &mut Workspace<T>) -> Result<Vec<T>> {
    let targets = vec![IGNORE; tokens.len()];
    check_batch(net, &Batch { b, t, inputs: tokens, targets: &targets, teacher: None })?;
    if params.len() != net.params.len {
        return Err(DistillError::Batch(format!("parameter buffer has the wrong length (expected {})", net.params.len)));
    }
    forward(pool, net, params, b, t, tokens, ws);
    Ok(ws.logits[..tokens.len() * net.cfg.n_vocab].to_vec())
}

fn forward<T: Real>(pool: &ThreadPool, net: &Net, params: &[T], b: usize, t: usize, tokens: &[u32], ws: &mut Workspace<T>) {
    let c = &net.cfg;
    let (n, d, qd, kd, f, nv) = (b * t, c.n_embd, c.q_dim(), c.kv_dim(), c.n_ff, c.n_vocab);
    ws.resid.resize_with(c.n_layer + 1, Vec::new);
    ws.layers.resize_with(c.n_layer, LayerActs::default);
    ws.rope = net.layers.iter().map(|l| RopeCache::new(net, l, t)).collect();

    // Embedding.
    {
        let x0 = sized(&mut ws.resid[0], n * d);
        match &net.tok_embd {
            MatSrc::Param(id) => {
                let e = net.params.slice(*id, params);
                for (row, &tok) in x0.chunks_exact_mut(d).zip(tokens) {
                    row.copy_from_slice(&e[tok as usize * d..(tok as usize + 1) * d]);
                }
            }
            MatSrc::Frozen(fm) => {
                let mut tmp = vec![0f32; d];
                for (row, &tok) in x0.chunks_exact_mut(d).zip(tokens) {
                    fm.weight.dequantize_row(fm.row0 + tok as usize, &mut tmp);
                    row.iter_mut().zip(&tmp).for_each(|(o, &v)| *o = T::from_f32(v));
                }
            }
        }
        // Gemma: embeddings times sqrt(n_embd) (decoder.rs, in f32 there).
        if let Some(sc) = c.embed_scale {
            let sc = T::from_f32(sc);
            x0.iter_mut().for_each(|v| *v *= sc);
        }
    }

    for (l, layer) in net.layers.iter().enumerate() {
        let (before, after) = ws.resid.split_at_mut(l + 1);
        let x_in = &before[l];
        let x_out = sized(&mut after[0], n * d);
        let la = &mut ws.layers[l];
        let (blk32, blk, tmp) = (&mut ws.blk32, &mut ws.blk, &mut ws.tmp);

        let wn = vec_of(net, params, &layer.attn_norm);
        sized(&mut la.xn1, n * d);
        sized(&mut la.rstd1, n);
        rmsnorm_fwd(x_in, &wn, c.norm_eps, &mut la.xn1, &mut la.rstd1);
        let [lq, lk, lv, lo, lg, lu, ld] = &mut la.lora;
        match (&layer.q_norm, &layer.k_norm) {
            (Some(qn), Some(kn)) => {
                // Qwen3: each head of q and k RMS-normalised after the
                // projection (and bias), before RoPE (decoder.rs, qwen3.rs).
                linear_fwd(pool, net, params, &layer.q, n, &la.xn1, sized(&mut la.q_raw, n * qd), lq, blk32, blk);
                linear_fwd(pool, net, params, &layer.k, n, &la.xn1, sized(&mut la.k_raw, n * kd), lk, blk32, blk);
                let (wq, wk) = (vec_of(net, params, qn), vec_of(net, params, kn));
                rmsnorm_fwd(&la.q_raw, &wq, c.norm_eps, sized(&mut la.q, n * qd), sized(&mut la.rstd_q, n * c.n_head));
                rmsnorm_fwd(&la.k_raw, &wk, c.norm_eps, sized(&mut la.k, n * kd), sized(&mut la.rstd_k, n * c.n_head_kv));
            }
            _ => {
                linear_fwd(pool, net, params, &layer.q, n, &la.xn1, sized(&mut la.q, n * qd), lq, blk32, blk);
                linear_fwd(pool, net, params, &layer.k, n, &la.xn1, sized(&mut la.k, n * kd), lk, blk32, blk);
            }
        }
        linear_fwd(pool, net, params, &layer.v, n, &la.xn1, sized(&mut la.v, n * kd), lv, blk32, blk);
        ws.rope[l].apply(&mut la.q, t, c.n_head, c.head_dim, false);
        ws.rope[l].apply(&mut la.k, t, c.n_head_kv, c.head_dim, false);
        sized(&mut la.p, b * c.n_head * t * t);
        sized(&mut la.o, n * qd);
        let th = sized(&mut la.th, if c.attn_softcap.is_some() { b * c.n_head * t * t } else { 0 });
        attention_fwd(pool, net, layer.window, b, t, &la.q, &la.k, &la.v, &mut la.p, th, &mut la.o);
        let proj = sized(tmp, n * d);
        match &layer.post_attn_norm {
            // Gemma: RMSNorm of the attention output before the residual
            // add (decoder.rs attention_block).
            Some(pn) => {
                linear_fwd(pool, net, params, &layer.o, n, &la.o, sized(&mut la.pa_in, n * d), lo, blk32, blk);
                let w = vec_of(net, params, pn);
                rmsnorm_fwd(&la.pa_in, &w, c.norm_eps, proj, sized(&mut la.rstd_pa, n));
            }
            None => linear_fwd(pool, net, params, &layer.o, n, &la.o, proj, lo, blk32, blk),
        }
        let x_mid = sized(&mut la.x_mid, n * d);
        for ((m, &xi), &pv) in x_mid.iter_mut().zip(x_in.iter()).zip(proj.iter()) {
            *m = xi + pv;
        }

        let wn2 = vec_of(net, params, &layer.ffn_norm);
        sized(&mut la.xn2, n * d);
        sized(&mut la.rstd2, n);
        rmsnorm_fwd(&la.x_mid, &wn2, c.norm_eps, &mut la.xn2, &mut la.rstd2);
        linear_fwd(pool, net, params, &layer.gate, n, &la.xn2, sized(&mut la.g, n * f), lg, blk32, blk);
        linear_fwd(pool, net, params, &layer.up, n, &la.xn2, sized(&mut la.u, n * f), lu, blk32, blk);
        let h = sized(&mut la.h, n * f);
        let geglu = c.geglu;
        {
            let (g, u) = (&la.g, &la.u);
            let hp = SyncPtr::new(h);
            pool.parallel_for(n, 64, &|s, e| {
                // SAFETY: rows s..e are owned by this task.
                let hr = unsafe { hp.slice(s * f, (e - s) * f) };
                for ((hv, &gv), &uv) in hr.iter_mut().zip(&g[s * f..e * f]).zip(&u[s * f..e * f]) {
                    *hv = if geglu { gelu_and_grad(gv).0 * uv } else { gv / (T::ONE + (-gv).exp()) * uv };
                }
            });
        }
        let proj = sized(tmp, n * d);
        match &layer.post_ffn_norm {
            Some(pn) => {
                linear_fwd(pool, net, params, &layer.down, n, &la.h, sized(&mut la.pf_in, n * d), ld, blk32, blk);
                let w = vec_of(net, params, pn);
                rmsnorm_fwd(&la.pf_in, &w, c.norm_eps, proj, sized(&mut la.rstd_pf, n));
            }
            None => linear_fwd(pool, net, params, &layer.down, n, &la.h, proj, ld, blk32, blk),
        }
        for ((o, &m), &pv) in x_out.iter_mut().zip(la.x_mid.iter()).zip(proj.iter()) {
            *o = m + pv;
        }
    }

    let wf = vec_of(net, params, &net.output_norm);
    sized(&mut ws.xf, n * d);
    sized(&mut ws.rstdf, n);
    rmsnorm_fwd(&ws.resid[c.n_layer], &wf, c.norm_eps, &mut ws.xf, &mut ws.rstdf);
    let out = net.output.as_ref().unwrap_or(&net.tok_embd);
    let lin = Linear { w: out.clone(), bias: None, lora: None, rows: nv, cols: d };
    let mut none = Vec::new();
    linear_fwd(pool, net, params, &lin, n, &ws.xf, sized(&mut ws.logits, n * nv), &mut none, &mut ws.blk32, &mut ws.blk);
    // Final soft-cap, as ops::softcap: tanh(z · (1/c)) · c.
    if let Some(cap) = c.final_softcap {
        let (cv, inv) = (T::from_f32(cap), T::from_f32(1.0 / cap));
        let th = sized(&mut ws.logit_th, n * nv);
        for (z, tv) in ws.logits[..n * nv].iter_mut().zip(th.iter_mut()) {
            *tv = (*z * inv).tanh();
            *z = *tv * cv;
        }
    }
}

fn backward_pass<T: Real>(pool: &ThreadPool, net: &Net, params: &[T], grads: &mut [T], batch: &Batch<'_>, ws: &mut Workspace<T>) {
    let c = &net.cfg;
    let (b, t) = (batch.b, batch.t);
    let (n, d, qd, kd, f, nv) = (b * t, c.n_embd, c.q_dim(), c.kv_dim(), c.n_ff, c.n_vocab);
    let (blk32, blk) = (&mut ws.blk32, &mut ws.blk);

    // Through the final soft-cap: dz/draw = 1 − tanh².
    if c.final_softcap.is_some() {
        for (g, &tv) in ws.logits[..n * nv].iter_mut().zip(&ws.logit_th[..n * nv]) {
            *g *= T::ONE - tv * tv;
        }
    }
    // Output projection and final norm.
    let out = net.output.as_ref().unwrap_or(&net.tok_embd);
    let lin = Linear { w: out.clone(), bias: None, lora: None, rows: nv, cols: d };
    let dxn = sized(&mut ws.dxn, n * d);
    linear_bwd(pool, net, params, Some(&mut *grads), &lin, n, &ws.xf, &ws.logits[..n * nv], dxn, false, &[], &mut ws.dlora, blk32, blk);
    let dx = sized(&mut ws.dx, n * d);
    dx.iter_mut().for_each(|v| *v = T::ZERO);
    let wf = vec_of(net, params, &net.output_norm);
    let gwf = match &net.output_norm {
        VecSrc::Param(id) => Some(net.params.slice_mut(*id, grads)),
        VecSrc::Frozen(_) => None,
    };
    rmsnorm_bwd(dxn, &ws.resid[c.n_layer], &ws.rstdf, &wf, dx, gwf);

    for (l, layer) in net.layers.iter().enumerate().rev() {
        let la = &ws.layers[l];
        let x_in = &ws.resid[l];
        let [lq, lk, lv, lo, lg, lu, ld] = &la.lora;

        // Feed-forward block: x_out = x_mid + down(silu(gate(xn2)) · up(xn2)).
        let dh = sized(&mut ws.dbig, n * f);
        let d_down: &[T] = match &layer.post_ffn_norm {
            Some(pn) => {
                let dp = sized(&mut ws.dproj, n * d);
                dp.iter_mut().for_each(|v| *v = T::ZERO);
                let w = vec_of(net, params, pn);
                rmsnorm_bwd(dx, &la.pf_in, &la.rstd_pf, &w, dp, vec_grad(net, pn, grads));
                dp
            }
            None => dx,
        };
        linear_bwd(pool, net, params, Some(&mut *grads), &layer.down, n, &la.h, d_down, dh, false, ld, &mut ws.dlora, blk32, blk);
        let (dg, du) = (sized(&mut ws.dg, n * f), sized(&mut ws.du, n * f));
        for i in 0..n * f {
            let (gv, uv) = (la.g[i], la.u[i]);
            if c.geglu {
                let (gelu, dgelu) = gelu_and_grad(gv);
                du[i] = dh[i] * gelu;
                dg[i] = dh[i] * uv * dgelu;
            } else {
                let sig = T::ONE / (T::ONE + (-gv).exp());
                let silu = gv * sig;
                du[i] = dh[i] * silu;
                dg[i] = dh[i] * uv * sig * (T::ONE + gv * (T::ONE - sig));
            }
        }
        let dxn = sized(&mut ws.dxn, n * d);
        linear_bwd(pool, net, params, Some(&mut *grads), &layer.gate, n, &la.xn2, dg, dxn, false, lg, &mut ws.dlora, blk32, blk);
        linear_bwd(pool, net, params, Some(&mut *grads), &layer.up, n, &la.xn2, du, dxn, true, lu, &mut ws.dlora, blk32, blk);
        let w2 = vec_of(net, params, &layer.ffn_norm);
        let gw2 = match &layer.ffn_norm {
            VecSrc::Param(id) => Some(net.params.slice_mut(*id, grads)),
            VecSrc::Frozen(_) => None,
        };
        rmsnorm_bwd(dxn, &la.x_mid, &la.rstd2, &w2, dx, gw2);

        // Attention block: x_mid = x_in + o(attn(rope(q(xn1)), rope(k(xn1)), v(xn1))).
        let d_o = sized(&mut ws.dbig, n * qd);
        let d_proj: &[T] = match &layer.post_attn_norm {
            Some(pn) => {
                let dp = sized(&mut ws.dproj, n * d);
                dp.iter_mut().for_each(|v| *v = T::ZERO);
                let w = vec_of(net, params, pn);
                rmsnorm_bwd(dx, &la.pa_in, &la.rstd_pa, &w, dp, vec_grad(net, pn, grads));
                dp
            }
            None => dx,
        };
        linear_bwd(pool, net, params, Some(&mut *grads), &layer.o, n, &la.o, d_proj, d_o, false, lo, &mut ws.dlora, blk32, blk);
        let (dq, dk, dv) = (sized(&mut ws.dq, n * qd), sized(&mut ws.dk, n * kd), sized(&mut ws.dv, n * kd));
        attention_bwd(pool, net, b, t, &la.q, &la.k, &la.v, &la.p, &la.th, d_o, dq, dk, dv);
        ws.rope[l].apply(dq, t, c.n_head, c.head_dim, true);
        ws.rope[l].apply(dk, t, c.n_head_kv, c.head_dim, true);
        // Through the per-head q/k norms (same RMSNorm backward, rows of
        // one head each), into the gradients of the projections' outputs.
        let (dq, dk): (&[T], &[T]) = match (&layer.q_norm, &layer.k_norm) {
            (Some(qn), Some(kn)) => {
                let (dqr, dkr) = (sized(&mut ws.dq_raw, n * qd), sized(&mut ws.dk_raw, n * kd));
                dqr.iter_mut().for_each(|v| *v = T::ZERO);
                dkr.iter_mut().for_each(|v| *v = T::ZERO);
                let (wq, wk) = (vec_of(net, params, qn), vec_of(net, params, kn));
                rmsnorm_bwd(dq, &la.q_raw, &la.rstd_q, &wq, dqr, vec_grad(net, qn, grads));
                rmsnorm_bwd(dk, &la.k_raw, &la.rstd_k, &wk, dkr, vec_grad(net, kn, grads));
                (dqr, dkr)
            }
            _ => (dq, dk),
        };
        let dxn = sized(&mut ws.dxn, n * d);
        linear_bwd(pool, net, params, Some(&mut *grads), &layer.q, n, &la.xn1, dq, dxn, false, lq, &mut ws.dlora, blk32, blk);
        linear_bwd(pool, net, params, Some(&mut *grads), &layer.k, n, &la.xn1, dk, dxn, true, lk, &mut ws.dlora, blk32, blk);
        linear_bwd(pool, net, params, Some(&mut *grads), &layer.v, n, &la.xn1, dv, dxn, true, lv, &mut ws.dlora, blk32, blk);
        let w1 = vec_of(net, params, &layer.attn_norm);
        let gw1 = match &layer.attn_norm {
            VecSrc::Param(id) => Some(net.params.slice_mut(*id, grads)),
            VecSrc::Frozen(_) => None,
        };
        rmsnorm_bwd(dxn, x_in, &la.rstd1, &w1, dx, gw1);
    }

    // Embedding rows, in token order (deterministic).
    if let MatSrc::Param(id) = &net.tok_embd {
        let ge = net.params.slice_mut(*id, grads);
        let sc = T::from_f32(c.embed_scale.unwrap_or(1.0));
        for (row, &tok) in dx.chunks_exact(d).zip(batch.inputs) {
            for (g, &v) in ge[tok as usize * d..(tok as usize + 1) * d].iter_mut().zip(row) {
                *g += v * sc;
            }
        }
    }
}
