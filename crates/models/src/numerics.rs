//! Transcendental functions exactly as ggml's CPU backend computes them.
//!
//! ggml does not call libm's `expf` in its hot loops: SiLU, SwiGLU and
//! softmax use a vectorised polynomial (`ggml_v_expf` in
//! `ggml-cpu/vec.h`, adapted from Arm's optimized-routines) that differs from
//! libm by up to ~1.5 ulp, and the AVX-512 and AVX2 builds round differently
//! from each other. Those ulps matter: they decide which way an activation
//! rounds when it is quantized to 8 bits for the next matrix product, and a
//! flipped rounding can change a greedy token many steps later. So Hearth
//! evaluates the same formulas in the same order (fused multiply-adds where
//! ggml uses them, via `f32::mul_add`), choosing the flavour a native
//! llama.cpp build would use on this CPU. Remainder elements that ggml
//! handles with scalar code (`n % lanes`) use libm, as ggml does.
//!
//! Sums follow ggml's structure as well: softmax adds each vector's lanes in
//! float with the compiler's reduction tree, then accumulates in double.

use std::sync::OnceLock;

/// Which of ggml's code paths to reproduce.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Flavor {
    /// `__AVX512F__ && __AVX512DQ__` builds: 16 lanes, `scalef` exponent.
    Avx512,
    /// `__AVX2__ && __FMA__` builds: 8 lanes, integer-add exponent.
    Avx2,
    /// Everything else: libm, one element at a time.
    Scalar,
}

impl Flavor {
    pub fn lanes(self) -> usize {
        match self {
            Flavor::Avx512 => 16,
            Flavor::Avx2 => 8,
            Flavor::Scalar => 1,
        }
    }
}

/// The flavour for this CPU (what `GGML_NATIVE` would compile).
pub fn flavor() -> Flavor {
    static F: OnceLock<Flavor> = OnceLock::new();
    *F.get_or_init(|| {
        if let Ok(v) = std::env::var("HEARTH_GGML_FLAVOR") {
            match v.as_str() {
                "avx512" => return Flavor::Avx512,
                "avx2" => return Flavor::Avx2,
                "scalar" => return Flavor::Scalar,
                _ => {}
            }
        }
        #[cfg(target_arch = "x86_64")]
        {
            if is_x86_feature_detected!("avx512f") && is_x86_feature_detected!("avx512dq") {
                return Flavor::Avx512;
            }
            if is_x86_feature_detected!("avx2") && is_x86_feature_detected!("fma") {
                return Flavor::Avx2;
            }
        }
        Flavor::Scalar
    })
}

const R: u32 = 0x4b40_0000; // 0x1.8p23
const LOG2E: u32 = 0x3fb8_aa3b; // 0x1.715476p+0
const LN2_LO: u32 = 0x35bf_be8e; // 0x1.7f7d1cp-20
const LN2_HI: u32 = 0x3f31_7200; // 0x1.62e4p-1
const P0: u32 = 0x3c07_2010; // 0x1.0e4020p-7
const P1: u32 = 0x3d2b_9f17; // 0x1.573e2ep-5
const P2: u32 = 0x3e2a_af33; // 0x1.555e66p-3
const P3: u32 = 0x3eff_fedb; // 0x1.fffdb6p-2
const P4: u32 = 0x3f7f_fff6; // 0x1.ffffecp-1

#[inline(always)]
fn c(b: u32) -> f32 {
    f32::from_bits(b)
}

/// Shared first steps: `z`, `n = round(x / ln 2)`, reduced argument `b`.
#[inline(always)]
fn reduce(x: f32) -> (f32, f32, f32) {
    let r = c(R);
    let z = x.mul_add(c(LOG2E), r);
    let n = z - r;
    let b = (-n).mul_add(c(LN2_LO), (-n).mul_add(c(LN2_HI), x));
    (z, n, b)
}

/// ggml_v_expf, AVX2 build.
#[inline]
pub fn expf_avx2(x: f32) -> f32 {
    let (z, n, b) = reduce(x);
    let e = z.to_bits().wrapping_shl(23);
    let k = f32::from_bits(e.wrapping_add(1.0f32.to_bits()));
    let big = n.abs() > 126.0;
    let u = b * b;
    let j = c(P0).mul_add(b, c(P1)).mul_add(u, c(P2).mul_add(b, c(P3))).mul_add(u, c(P4) * b);
    if !big {
        return j.mul_add(k, k);
    }
    let g: u32 = if n <= 0.0 { 0x8200_0000 } else { 0 };
    let s1 = f32::from_bits(g.wrapping_add(0x7f00_0000));
    let s2 = f32::from_bits(e.wrapping_sub(g));
    if n.abs() > 192.0 {
        s1 * s1
    } else {
        s2.mul_add(j, s2) * s1
    }
}

/// ggml_v_expf, AVX-512 build.
#[inline]
pub fn expf_avx512(x: f32) -> f32 {
    let (_z, n, b) = reduce(x);
    let u = b * b;
    let j = c(P0).mul_add(b, c(P1)).mul_add(u, c(P2).mul_add(b, c(P3))).mul_add(u, c(P4).mul_add(b, 1.0));
    if n.abs() > 192.0 {
        return if n <= 0.0 { 0.0 } else { f32::INFINITY };
    }
    if n.is_nan() {
        return f32::NAN;
    }
    // _mm512_scalef_ps: j * 2^floor(n), rounded once (exact in f64). 2^n
    // is built from its bits (|n| <= 192 is a normal f64), which is the
    // value `powi` returns without its call (it was 4% of a profile).
    let pow2 = f64::from_bits(((n as i64 + 1023) as u64) << 52);
    ((j as f64) * pow2) as f32
}

/// Element `i` of an `n`-long vector op: the vector formula for elements in
/// whole vectors, libm for the tail, as ggml's loops do.
#[inline(always)]
fn exp_at(f: Flavor, i: usize, n: usize, x: f32) -> f32 {
    let lanes = f.lanes();
    if lanes > 1 && i < n - n % lanes {
        match f {
            Flavor::Avx512 => expf_avx512(x),
            _ => expf_avx2(x),
        }
    } else {
        x.exp()
    }
}

/// Whether the CPU has FMA, so `f32::mul_add` can be an instruction
/// instead of a call to the soft `fmaf` (same result, correctly rounded
/// either way; the calls were ~4% of a decode profile).
#[cfg(target_arch = "x86_64")]
fn has_fma() -> bool {
    static F: OnceLock<bool> = OnceLock::new();
    *F.get_or_init(|| is_x86_feature_detected!("fma"))
}

/// `gate[i] = silu(gate[i]) * up[i]` (ggml_vec_swiglu_f32) for one row.
pub fn swiglu_row(gate: &mut [f32], up: &[f32]) {
    #[cfg(target_arch = "x86_64")]
    if has_fma() {
        // SAFETY: FMA detected.
        unsafe { swiglu_row_fma(gate, up) };
        return;
    }
    swiglu_row_impl(gate, up)
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "fma")]
unsafe fn swiglu_row_fma(gate: &mut [f32], up: &[f32]) {
    swiglu_row_impl(gate, up)
}

#[inline(always)]
fn swiglu_row_impl(gate: &mut [f32], up: &[f32]) {
    let f = flavor();
    let n = gate.len();
    for (i, (g, &u)) in gate.iter_mut().zip(up).enumerate() {
        let x = *g;
        *g = x / (1.0 + exp_at(f, i, n, -x)) * u;
    }
}

/// Softmax of one row in place (ggml_soft_max_f32 after masking/scaling):
/// max, exponentials with per-vector float lane sums accumulated in double,
/// then one float multiply by `1/sum`.
pub fn softmax_row(x: &mut [f32]) {
    #[cfg(target_arch = "x86_64")]
    if has_fma() {
        // SAFETY: FMA detected.
        unsafe { softmax_row_fma(x) };
        return;
    }
    softmax_row_impl(x)
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "fma")]
unsafe fn softmax_row_fma(x: &mut [f32]) {
    softmax_row_impl(x)
}

#[inline(always)]
fn softmax_row_impl(x: &mut [f32]) {
    let f = flavor();
    let max = x.iter().copied().fold(f32::NEG_INFINITY, f32::max);
    if max == f32::NEG_INFINITY {
        x.iter_mut().for_each(|v| *v = 0.0);
        return;
    }
    let n = x.len();
    let lanes = f.lanes();
    let mut sum = 0f64;
    let mut i = 0;
    if lanes > 1 {
        // The row is conceptually padded with masked (exp = 0) entries up to
        // a whole vector, like llama.cpp's 256-padded KV views, so every
        // element goes through the vector path.
        let mut buf = [0f32; 16];
        while i < n {
            let m = (n - i).min(lanes);
            for l in 0..lanes {
                buf[l] = if l < m {
                    let v = match f {
                        Flavor::Avx512 => expf_avx512(x[i + l] - max),
                        _ => expf_avx2(x[i + l] - max),
                    };
                    x[i + l] = v;
                    v
                } else {
                    0.0
                };
            }
            sum += lane_sum(&buf[..lanes]) as f64;
            i += lanes;
        }
    } else {
        for v in x.iter_mut() {
            *v = (*v - max).exp();
            sum += *v as f64;
        }
    }
    let inv = (1.0 / sum) as f32;
    for v in x.iter_mut() {
        *v *= inv;
    }
}

/// Horizontal sum in the order GCC's `_mm512_reduce_add_ps` and ggml's
/// AVX2 hadd sequence use: fold the upper half onto the lower half until one
/// lane is left, the last step adding lanes 0 and 1.
fn lane_sum(v: &[f32]) -> f32 {
    let mut t = [0f32; 16];
    t[..v.len()].copy_from_slice(v);
    let mut w = v.len();
    while w > 2 {
        let h = w / 2;
        for i in 0..h {
            t[i] += t[i + h];
        }
        w = h;
    }
    if w == 2 {
        t[0] + t[1]
    } else {
        t[0]
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn both_expf_flavours_are_close_to_libm() {
        let mut worst = 0f32;
        let mut x = -80.0f32;
        while x < 80.0 {
            for f in [expf_avx2, expf_avx512] {
                let r = x.exp();
                let e = ((f(x) - r) / r).abs();
                worst = worst.max(e);
            }
            x += 0.0371;
        }
        // Arm's routine: at most ~1.5 ulp (~1.8e-7 relative).
        assert!(worst < 4e-7, "{worst}");
    }

    #[test]
    fn expf_avx512_scaling_equals_powi() {
        // The bit-built 2^n must equal the powi form it replaced, over the
        // whole range the scalef step sees.
        let mut x = -130.0f32;
        while x < 130.0 {
            let (_z, n, b) = reduce(x);
            let u = b * b;
            let j = c(P0).mul_add(b, c(P1)).mul_add(u, c(P2).mul_add(b, c(P3))).mul_add(u, c(P4).mul_add(b, 1.0));
            let old = ((j as f64) * 2f64.powi(n as i32)) as f32;
            assert_eq!(expf_avx512(x).to_bits(), old.to_bits(), "x={x}");
            x += 0.173;
        }
    }

    #[test]
    fn expf_edges() {
        for f in [expf_avx2, expf_avx512] {
            assert_eq!(f(0.0), 1.0);
            assert_eq!(f(f32::NEG_INFINITY), 0.0);
            assert_eq!(f(-200.0), 0.0);
            assert!(f(200.0).is_infinite());
            assert!(f(-100.0) > 0.0 && f(-100.0) < 1e-40);
        }
    }

    #[test]
    fn softmax_row_normalises() {
        let mut x = vec![0.5, 2.0, -1.0, f32::NEG_INFINITY, 3.0];
        softmax_row(&mut x);
        assert!((x.iter().sum::<f32>() - 1.0).abs() < 1e-6);
        assert_eq!(x[3], 0.0);
    }

    #[test]
    fn lane_sum_pairs_halves() {
        let v: Vec<f32> = (0..16).map(|i| i as f32).collect();
        assert_eq!(lane_sum(&v), 120.0);
        assert_eq!(lane_sum(&v[..8]), 28.0);
    }
}
