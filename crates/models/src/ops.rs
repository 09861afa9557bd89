//! Element-wise pieces of the forward pass, written to follow ggml's order of
//! operations where it changes the result (f64 sums in RMSNorm and softmax,
//! RoPE angles built by repeated multiplication), so logits agree with
//! llama.cpp to ~1e-5 rather than ~1e-3.

use crate::config::{RopeConfig, RopeLayout, RopeScaling};

/// `out = x / sqrt(mean(x²) + eps) * w` (ggml `rms_norm` then `mul`).
/// ggml sums the squares in double and scales in float, in two steps.
pub fn rms_norm(x: &[f32], w: &[f32], eps: f32, out: &mut [f32]) {
    let sum: f64 = x.iter().map(|&v| (v * v) as f64).sum();
    let mean = (sum / x.len() as f64) as f32;
    let scale = 1.0f32 / (mean + eps).sqrt();
    for ((o, &v), &g) in out.iter_mut().zip(x).zip(w) {
        *o = (v * scale) * g;
    }
}

/// RMS-normalises `x` in place with weights `w`.
pub fn rms_norm_inplace(x: &mut [f32], w: &[f32], eps: f32) {
    let sum: f64 = x.iter().map(|&v| (v * v) as f64).sum();
    let mean = (sum / x.len() as f64) as f32;
    let scale = 1.0f32 / (mean + eps).sqrt();
    for (v, &g) in x.iter_mut().zip(w) {
        *v = (*v * scale) * g;
    }
}

/// SiLU-gated linear unit: `gate = silu(gate) * up` in place, row by row
/// (`row` elements each) with ggml's exponential (see [`crate::numerics`]).
pub fn swiglu(gate: &mut [f32], up: &[f32], row: usize) {
    for (g, u) in gate.chunks_mut(row).zip(up.chunks(row)) {
        crate::numerics::swiglu_row(g, u);
    }
}

/// GELU (tanh approximation) gated: `gate = gelu(gate) * up` in place.
///
/// ggml evaluates GELU through a table indexed by the f16 value of x
/// (`GGML_GELU_FP16`), so the input is rounded to f16 and the result too.
pub fn geglu(gate: &mut [f32], up: &[f32]) {
    for (g, &u) in gate.iter_mut().zip(up) {
        *g = gelu_ggml(*g) * u;
    }
}

fn gelu_f32(x: f32) -> f32 {
    const SQRT_2_OVER_PI: f32 = 0.797_884_6;
    const COEF_A: f32 = 0.044715;
    0.5 * x * (1.0 + (SQRT_2_OVER_PI * x * (1.0 + COEF_A * x * x)).tanh())
}

fn gelu_ggml(x: f32) -> f32 {
    if x <= -10.0 {
        0.0
    } else if x >= 10.0 {
        x
    } else {
        let xh = half::f16::from_f32(x).to_f32();
        half::f16::from_f32(gelu_f32(xh)).to_f32()
    }
}

/// `x = cap * tanh(x * (1 / cap))` (Gemma 2 soft-capping). ggml does it as
/// `ggml_scale(1/cap)`, `ggml_tanh` (libm `tanhf`), `ggml_scale(cap)`, so
/// the reciprocal is taken once and multiplied, not divided by.
pub fn softcap(x: &mut [f32], cap: f32) {
    let inv = 1.0 / cap;
    for v in x.iter_mut() {
        *v = (*v * inv).tanh() * cap;
    }
}

/// Numerically stable softmax in place, as ggml's `soft_max` computes it
/// (see [`crate::numerics::softmax_row`]).
pub fn softmax_inplace(x: &mut [f32]) {
    crate::numerics::softmax_row(x)
}

/// Softmax with libm's `exp` and an f64 sum (reference for tests).
pub fn softmax_reference(x: &mut [f32]) {
    let max = x.iter().copied().fold(f32::NEG_INFINITY, f32::max);
    if max == f32::NEG_INFINITY {
        x.iter_mut().for_each(|v| *v = 0.0);
        return;
    }
    let mut sum = 0f64;
    for v in x.iter_mut() {
        let e = (*v - max).exp();
        *v = e;
        sum += e as f64;
    }
    let inv = (1.0 / sum) as f32;
    for v in x.iter_mut() {
        *v *= inv;
    }
}

/// Precomputed RoPE cos/sin for one position and one rope configuration.
pub struct RopeTables {
    /// `[pos][n_rot/2]` pairs of (cos, sin).
    cs: Vec<(f32, f32)>,
    half: usize,
    layout: RopeLayout,
    n_rot: usize,
}

impl RopeTables {
    /// Tables for positions `pos0..pos0+n`.
    /// `freq_factors` (Llama 3.1 `rope_freqs`, Phi-3 LongRoPE) divide each
    /// pair's angle, as in ggml's `ggml_rope_cache_init`.
    pub fn new(cfg: &RopeConfig, freq_factors: Option<&[f32]>, pos0: usize, n: usize) -> RopeTables {
        let half = cfg.n_rot / 2;
        let mut cs = Vec::with_capacity(n * half);
        let theta_scale = cfg.freq_base.powf(-2.0 / cfg.n_rot as f32);
        let (freq_scale, ext_factor, corr) = match cfg.scaling {
            RopeScaling::None => (1.0f32, 0.0f32, [0.0f32, 0.0]),
            RopeScaling::Linear { factor } => (1.0 / factor, 0.0, [0.0, 0.0]),
            RopeScaling::Yarn { factor, orig_ctx } => {
                (1.0 / factor, 1.0, yarn_corr_dims(cfg.n_rot, orig_ctx, cfg.freq_base, 32.0, 1.0))
            }
        };
        // llama-context.cpp: for YaRN the context's attention factor is
        // get_mscale(factor) / (1 + 0.1 ln factor) (≈ 1, kept for its
        // rounding), and every scaling type multiplies in rope_attn_factor;
        // ggml's rope_yarn then multiplies by 1 + 0.1 ln(1/freq_scale) again.
        let mut mscale = cfg.attn_factor;
        if ext_factor != 0.0 {
            let factor = 1.0f32 / freq_scale;
            let get_mscale = if factor <= 1.0 { 1.0f32 } else { 0.1 * factor.ln() + 1.0 };
            mscale = get_mscale * (1.0 / (1.0 + 0.1 * factor.ln())) * cfg.attn_factor;
            mscale *= 1.0 + 0.1 * (1.0 / freq_scale).ln();
        }
        for p in pos0..pos0 + n {
            let mut theta = p as f32;
            for i in 0..half {
                let ff = freq_factors.map_or(1.0, |f| f[i]);
                let theta_extrap = theta / ff;
                let theta_interp = freq_scale * theta_extrap;
                let t = if ext_factor != 0.0 {
                    let ramp = yarn_ramp(corr[0], corr[1], 2 * i) * ext_factor;
                    theta_interp * (1.0 - ramp) + theta_extrap * ramp
                } else {
                    theta_interp
                };
                cs.push((t.cos() * mscale, t.sin() * mscale));
                theta *= theta_scale;
            }
        }
        RopeTables { cs, half, layout: cfg.layout, n_rot: cfg.n_rot }
    }

    /// Rotates the first `n_rot` dims of every head in `x` (`n_head` heads of
    /// `head_dim`) for relative position `i` (0-based within the table).
    pub fn apply(&self, i: usize, x: &mut [f32], n_head: usize, head_dim: usize) {
        let cs = &self.cs[i * self.half..(i + 1) * self.half];
        for h in 0..n_head {
            let head = &mut x[h * head_dim..(h + 1) * head_dim];
            match self.layout {
                RopeLayout::Interleaved => {
                    for (j, &(c, s)) in cs.iter().enumerate() {
                        let (x0, x1) = (head[2 * j], head[2 * j + 1]);
                        head[2 * j] = x0 * c - x1 * s;
                        head[2 * j + 1] = x0 * s + x1 * c;
                    }
                }
                RopeLayout::Halves => {
                    let off = self.n_rot / 2;
                    for (j, &(c, s)) in cs.iter().enumerate() {
                        let (x0, x1) = (head[j], head[j + off]);
                        head[j] = x0 * c - x1 * s;
                        head[j + off] = x0 * s + x1 * c;
                    }
                }
            }
        }
    }
}

fn yarn_ramp(low: f32, high: f32, i0: usize) -> f32 {
    let y = ((i0 / 2) as f32 - low) / (high - low).max(0.001);
    1.0 - y.clamp(0.0, 1.0)
}

/// ggml `ggml_rope_yarn_corr_dims`.
fn yarn_corr_dims(n_dims: usize, n_ctx_orig: usize, freq_base: f32, beta_fast: f32, beta_slow: f32) -> [f32; 2] {
    let corr_dim = |n_rot: f32| {
        n_dims as f32 * (n_ctx_orig as f32 / (n_rot * 2.0 * std::f32::consts::PI)).ln() / (2.0 * freq_base.ln())
    };
    let start = corr_dim(beta_fast).floor().max(0.0);
    let end = corr_dim(beta_slow).ceil().min(n_dims as f32 - 1.0);
    [start, end]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rms_norm_unit_weights_gives_unit_rms() {
        let x: Vec<f32> = (0..64).map(|i| (i as f32 - 30.0) * 0.37).collect();
        let mut y = vec![0.0; 64];
        rms_norm(&x, &vec![1.0; 64], 1e-6, &mut y);
        let rms = (y.iter().map(|v| v * v).sum::<f32>() / 64.0).sqrt();
        assert!((rms - 1.0).abs() < 1e-4, "{rms}");
    }

    #[test]
    fn softmax_sums_to_one_and_handles_masked_rows() {
        let mut x = vec![1.0, 2.0, f32::NEG_INFINITY, 0.5];
        softmax_inplace(&mut x);
        assert!((x.iter().sum::<f32>() - 1.0).abs() < 1e-6);
        assert_eq!(x[2], 0.0);
        let mut all_masked = vec![f32::NEG_INFINITY; 3];
        softmax_inplace(&mut all_masked);
        let mut r = vec![1.0, 2.0, f32::NEG_INFINITY, 0.5];
        softmax_reference(&mut r);
        let mut y = vec![1.0, 2.0, f32::NEG_INFINITY, 0.5];
        softmax_inplace(&mut y);
        for (a, b) in r.iter().zip(&y) {
            assert!((a - b).abs() < 1e-6);
        }
        assert_eq!(all_masked, vec![0.0; 3]);
    }

    #[test]
    fn rope_is_a_rotation_and_position_zero_is_identity() {
        for layout in [RopeLayout::Interleaved, RopeLayout::Halves] {
            let cfg = RopeConfig { layout, n_rot: 8, freq_base: 10000.0, scaling: RopeScaling::None, attn_factor: 1.0 };
            let t = RopeTables::new(&cfg, None, 0, 5);
            let x: Vec<f32> = (0..16).map(|i| i as f32 * 0.1 - 0.7).collect();
            let mut y0 = x.clone();
            t.apply(0, &mut y0, 2, 8);
            assert_eq!(y0, x);
            let mut y = x.clone();
            t.apply(4, &mut y, 2, 8);
            let n = |v: &[f32]| v.iter().map(|a| a * a).sum::<f32>();
            assert!((n(&y) - n(&x)).abs() < 1e-4);
            assert_ne!(y, x);
        }
    }

    #[test]
    fn rope_layouts_pair_different_dimensions() {
        // With only the first pair rotating fast, the interleaved layout
        // moves dims 0 and 1 while the halves layout moves dims 0 and 4.
        let x = vec![1.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0];
        for (layout, moved) in [(RopeLayout::Interleaved, 1), (RopeLayout::Halves, 4)] {
            let cfg = RopeConfig { layout, n_rot: 8, freq_base: 10000.0, scaling: RopeScaling::None, attn_factor: 1.0 };
            let t = RopeTables::new(&cfg, None, 1, 1);
            let mut y = x.clone();
            t.apply(0, &mut y, 1, 8);
            assert!((y[moved] - 1f32.sin()).abs() < 1e-6, "{layout:?}: {y:?}");
        }
    }

    #[test]
    fn gelu_matches_the_closed_form_within_f16_rounding() {
        for i in -50..50 {
            let x = i as f32 * 0.13;
            assert!((gelu_ggml(x) - gelu_f32(x)).abs() < 5e-3 * (1.0 + x.abs()));
        }
    }
}
