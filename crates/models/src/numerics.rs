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
    #[cfg(target_arch = "x86_64")]
    if vx::swiglu(f, gate, up) {
        return;
    }
    swiglu_emulated(f, gate, up)
}

/// SwiGLU of one row computing flavour `f`'s vector exponential one lane at
/// a time: the fallback, and the reference the vector code is tested
/// against.
#[inline(always)]
fn swiglu_emulated(f: Flavor, gate: &mut [f32], up: &[f32]) {
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
    #[cfg(target_arch = "x86_64")]
    if vx::softmax(f, x) {
        return;
    }
    softmax_emulated(f, x)
}

/// Softmax of one row computing flavour `f`'s vector exponential and lane
/// sums one lane at a time: the fallback, and the reference the vector code
/// is tested against.
#[inline(always)]
fn softmax_emulated(f: Flavor, x: &mut [f32]) {
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

/// The same loops one vector at a time: every lane computes exactly the
/// scalar emulation above ([`expf_avx512`] / [`expf_avx2`]), so results are
/// bit-identical to it (tested below over a sweep that includes the
/// overflow, underflow, infinity and NaN branches); the scalar forms stay as
/// the reference. Used only when the CPU has the instructions of the
/// flavour being reproduced (a flavour forced by `HEARTH_GGML_FLAVOR` on a
/// CPU without them keeps the scalar path).
#[cfg(target_arch = "x86_64")]
mod vx {
    #![allow(unsafe_op_in_unsafe_fn)]
    use super::*;
    use std::arch::x86_64::*;

    fn has_avx512() -> bool {
        static F: OnceLock<bool> = OnceLock::new();
        *F.get_or_init(|| is_x86_feature_detected!("avx512f") && is_x86_feature_detected!("avx512dq") && is_x86_feature_detected!("fma"))
    }

    fn has_avx2() -> bool {
        static F: OnceLock<bool> = OnceLock::new();
        *F.get_or_init(|| is_x86_feature_detected!("avx2") && is_x86_feature_detected!("fma"))
    }

    /// Softmax of `x` through the vector exponential of flavour `f`;
    /// false (nothing done) when this CPU cannot run that flavour.
    pub(super) fn softmax(f: Flavor, x: &mut [f32]) -> bool {
        match f {
            // SAFETY: features checked.
            Flavor::Avx512 if has_avx512() => unsafe { softmax512(x) },
            Flavor::Avx2 if has_avx2() => unsafe { softmax256(x) },
            _ => return false,
        }
        true
    }

    /// SwiGLU of one row through flavour `f`'s vector exponential; false
    /// when this CPU cannot run that flavour.
    pub(super) fn swiglu(f: Flavor, gate: &mut [f32], up: &[f32]) -> bool {
        match f {
            // SAFETY: features checked.
            Flavor::Avx512 if has_avx512() => unsafe { swiglu512(gate, up) },
            Flavor::Avx2 if has_avx2() => unsafe { swiglu256(gate, up) },
            _ => return false,
        }
        true
    }

    #[inline]
    #[target_feature(enable = "avx512f,avx512dq,fma")]
    pub(super) unsafe fn exp512(x: __m512) -> __m512 {
        let s = |b: u32| _mm512_set1_ps(c(b));
        let r = s(R);
        let z = _mm512_fmadd_ps(x, s(LOG2E), r);
        let n = _mm512_sub_ps(z, r);
        let nn = _mm512_xor_ps(n, _mm512_set1_ps(-0.0));
        let b = _mm512_fmadd_ps(nn, s(LN2_LO), _mm512_fmadd_ps(nn, s(LN2_HI), x));
        let u = _mm512_mul_ps(b, b);
        let j = _mm512_fmadd_ps(
            _mm512_fmadd_ps(_mm512_fmadd_ps(s(P0), b, s(P1)), u, _mm512_fmadd_ps(s(P2), b, s(P3))),
            u,
            _mm512_fmadd_ps(s(P4), b, _mm512_set1_ps(1.0)),
        );
        let big = _mm512_cmp_ps_mask::<_CMP_GT_OQ>(_mm512_abs_ps(n), _mm512_set1_ps(192.0));
        let neg = _mm512_cmp_ps_mask::<_CMP_LE_OQ>(n, _mm512_setzero_ps());
        let edge = _mm512_mask_blend_ps(neg, _mm512_set1_ps(f32::INFINITY), _mm512_setzero_ps());
        _mm512_mask_blend_ps(big, _mm512_scalef_ps(j, n), edge)
    }

    #[inline]
    #[target_feature(enable = "avx2,fma")]
    pub(super) unsafe fn exp256(x: __m256) -> __m256 {
        let s = |b: u32| _mm256_set1_ps(c(b));
        let r = s(R);
        let z = _mm256_fmadd_ps(x, s(LOG2E), r);
        let n = _mm256_sub_ps(z, r);
        let nn = _mm256_xor_ps(n, _mm256_set1_ps(-0.0));
        let b = _mm256_fmadd_ps(nn, s(LN2_LO), _mm256_fmadd_ps(nn, s(LN2_HI), x));
        let e = _mm256_slli_epi32::<23>(_mm256_castps_si256(z));
        let k = _mm256_castsi256_ps(_mm256_add_epi32(e, _mm256_set1_epi32(1.0f32.to_bits() as i32)));
        let abs_n = _mm256_andnot_ps(_mm256_set1_ps(-0.0), n);
        let big = _mm256_cmp_ps::<_CMP_GT_OQ>(abs_n, _mm256_set1_ps(126.0));
        let u = _mm256_mul_ps(b, b);
        let j = _mm256_fmadd_ps(
            _mm256_fmadd_ps(_mm256_fmadd_ps(s(P0), b, s(P1)), u, _mm256_fmadd_ps(s(P2), b, s(P3))),
            u,
            _mm256_mul_ps(s(P4), b),
        );
        let small = _mm256_fmadd_ps(j, k, k);
        if _mm256_movemask_ps(big) == 0 {
            return small;
        }
        let le0 = _mm256_castps_si256(_mm256_cmp_ps::<_CMP_LE_OQ>(n, _mm256_setzero_ps()));
        let g = _mm256_and_si256(le0, _mm256_set1_epi32(0x8200_0000u32 as i32));
        let s1 = _mm256_castsi256_ps(_mm256_add_epi32(g, _mm256_set1_epi32(0x7f00_0000)));
        let s2 = _mm256_castsi256_ps(_mm256_sub_epi32(e, g));
        let huge = _mm256_cmp_ps::<_CMP_GT_OQ>(abs_n, _mm256_set1_ps(192.0));
        let big_r = _mm256_blendv_ps(_mm256_mul_ps(_mm256_fmadd_ps(s2, j, s2), s1), _mm256_mul_ps(s1, s1), huge);
        _mm256_blendv_ps(small, big_r, big)
    }

    /// [`lane_sum`] of 16 lanes: upper half onto lower until two are left.
    #[inline]
    #[target_feature(enable = "avx512f,avx512dq,fma")]
    unsafe fn sum512(v: __m512) -> f32 {
        let h = _mm256_add_ps(_mm512_castps512_ps256(v), _mm512_extractf32x8_ps::<1>(v));
        sum256(h)
    }

    #[inline]
    #[target_feature(enable = "avx2,fma")]
    unsafe fn sum256(v: __m256) -> f32 {
        let q = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps::<1>(v));
        let d = _mm_add_ps(q, _mm_movehl_ps(q, q));
        _mm_cvtss_f32(d) + _mm_cvtss_f32(_mm_shuffle_ps::<1>(d, d))
    }

    #[target_feature(enable = "avx512f,avx512dq,fma")]
    unsafe fn softmax512(x: &mut [f32]) {
        let max = x.iter().copied().fold(f32::NEG_INFINITY, f32::max);
        if max == f32::NEG_INFINITY {
            x.iter_mut().for_each(|v| *v = 0.0);
            return;
        }
        let n = x.len();
        let m = _mm512_set1_ps(max);
        let mut sum = 0f64;
        let mut i = 0;
        let p = x.as_mut_ptr();
        while i + 16 <= n {
            let e = exp512(_mm512_sub_ps(_mm512_loadu_ps(p.add(i)), m));
            _mm512_storeu_ps(p.add(i), e);
            sum += sum512(e) as f64;
            i += 16;
        }
        if i < n {
            // The scalar path pads the last vector with zeros after exp.
            let mask: __mmask16 = (1u32 << (n - i)) as u16 - 1;
            let v = _mm512_maskz_loadu_ps(mask, p.add(i));
            let e = _mm512_maskz_mov_ps(mask, exp512(_mm512_sub_ps(v, m)));
            _mm512_mask_storeu_ps(p.add(i), mask, e);
            sum += sum512(e) as f64;
        }
        let inv = _mm512_set1_ps((1.0 / sum) as f32);
        let mut i = 0;
        while i + 16 <= n {
            _mm512_storeu_ps(p.add(i), _mm512_mul_ps(_mm512_loadu_ps(p.add(i)), inv));
            i += 16;
        }
        for v in &mut x[i..] {
            *v *= (1.0 / sum) as f32;
        }
    }

    #[target_feature(enable = "avx2,fma")]
    unsafe fn softmax256(x: &mut [f32]) {
        let max = x.iter().copied().fold(f32::NEG_INFINITY, f32::max);
        if max == f32::NEG_INFINITY {
            x.iter_mut().for_each(|v| *v = 0.0);
            return;
        }
        let n = x.len();
        let m = _mm256_set1_ps(max);
        let mut sum = 0f64;
        let mut i = 0;
        let p = x.as_mut_ptr();
        while i + 8 <= n {
            let e = exp256(_mm256_sub_ps(_mm256_loadu_ps(p.add(i)), m));
            _mm256_storeu_ps(p.add(i), e);
            sum += sum256(e) as f64;
            i += 8;
        }
        if i < n {
            let mut buf = [f32::NEG_INFINITY; 8];
            buf[..n - i].copy_from_slice(&x[i..]);
            let mut e = [0f32; 8];
            _mm256_storeu_ps(e.as_mut_ptr(), exp256(_mm256_sub_ps(_mm256_loadu_ps(buf.as_ptr()), m)));
            e[n - i..].iter_mut().for_each(|v| *v = 0.0);
            x[i..].copy_from_slice(&e[..n - i]);
            sum += sum256(_mm256_loadu_ps(e.as_ptr())) as f64;
        }
        let inv = (1.0 / sum) as f32;
        for v in x.iter_mut() {
            *v *= inv;
        }
    }

    #[target_feature(enable = "avx512f,avx512dq,fma")]
    unsafe fn swiglu512(gate: &mut [f32], up: &[f32]) {
        let n = gate.len().min(up.len());
        let (g, u) = (gate.as_mut_ptr(), up.as_ptr());
        let one = _mm512_set1_ps(1.0);
        let mut i = 0;
        while i + 16 <= n {
            let x = _mm512_loadu_ps(g.add(i));
            let e = exp512(_mm512_xor_ps(x, _mm512_set1_ps(-0.0)));
            _mm512_storeu_ps(g.add(i), _mm512_mul_ps(_mm512_div_ps(x, _mm512_add_ps(one, e)), _mm512_loadu_ps(u.add(i))));
            i += 16;
        }
        // ggml's scalar remainder: libm.
        for k in i..n {
            let x = gate[k];
            gate[k] = x / (1.0 + (-x).exp()) * up[k];
        }
    }

    #[target_feature(enable = "avx2,fma")]
    unsafe fn swiglu256(gate: &mut [f32], up: &[f32]) {
        let n = gate.len().min(up.len());
        let (g, u) = (gate.as_mut_ptr(), up.as_ptr());
        let one = _mm256_set1_ps(1.0);
        let mut i = 0;
        while i + 8 <= n {
            let x = _mm256_loadu_ps(g.add(i));
            let e = exp256(_mm256_xor_ps(x, _mm256_set1_ps(-0.0)));
            _mm256_storeu_ps(g.add(i), _mm256_mul_ps(_mm256_div_ps(x, _mm256_add_ps(one, e)), _mm256_loadu_ps(u.add(i))));
            i += 8;
        }
        for k in i..n {
            let x = gate[k];
            gate[k] = x / (1.0 + (-x).exp()) * up[k];
        }
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

    /// Inputs for the vector-vs-scalar checks: a dense sweep over the whole
    /// range each branch covers, plus the special values.
    fn exp_inputs() -> Vec<f32> {
        let mut v = vec![0.0, -0.0, f32::INFINITY, f32::NEG_INFINITY, f32::NAN, f32::MIN_POSITIVE, -f32::MIN_POSITIVE, 88.72, 88.73, -87.3, -103.9, -104.0, 126.5, -126.5, 192.0, -192.0, 193.0, -193.0, 1e30, -1e30];
        let mut x = -220.0f32;
        while x < 220.0 {
            v.push(x);
            x += 0.0137;
        }
        let mut s = 0x2545_f491_u32;
        for _ in 0..20_000 {
            s ^= s << 13;
            s ^= s >> 17;
            s ^= s << 5;
            v.push(f32::from_bits(s));
        }
        v
    }

    #[cfg(target_arch = "x86_64")]
    #[test]
    fn vector_exp_is_bit_identical_to_the_scalar_emulation() {
        use std::arch::x86_64::*;
        let xs = exp_inputs();
        let same = |a: f32, b: f32| a.to_bits() == b.to_bits() || (a.is_nan() && b.is_nan());
        if is_x86_feature_detected!("avx2") && is_x86_feature_detected!("fma") {
            for ch in xs.chunks_exact(8) {
                let mut out = [0f32; 8];
                // SAFETY: features detected.
                unsafe { _mm256_storeu_ps(out.as_mut_ptr(), vx::exp256(_mm256_loadu_ps(ch.as_ptr()))) };
                for (&x, &o) in ch.iter().zip(&out) {
                    assert!(same(o, expf_avx2(x)), "avx2 x={x:e}: {o:e} vs {:e}", expf_avx2(x));
                }
            }
        }
        if is_x86_feature_detected!("avx512f") && is_x86_feature_detected!("avx512dq") {
            for ch in xs.chunks_exact(16) {
                let mut out = [0f32; 16];
                // SAFETY: features detected.
                unsafe { _mm512_storeu_ps(out.as_mut_ptr(), vx::exp512(_mm512_loadu_ps(ch.as_ptr()))) };
                for (&x, &o) in ch.iter().zip(&out) {
                    assert!(same(o, expf_avx512(x)), "avx512 x={x:e}: {o:e} vs {:e}", expf_avx512(x));
                }
            }
        }
    }

    #[cfg(target_arch = "x86_64")]
    #[test]
    fn vector_softmax_and_swiglu_rows_are_bit_identical_to_the_scalar_loops() {
        let mut s = 0x9e37_79b9_u32;
        let mut rnd = move || {
            s ^= s << 13;
            s ^= s >> 17;
            s ^= s << 5;
            (s as f32 / u32::MAX as f32) * 2.0 - 1.0
        };
        for f in [Flavor::Avx512, Flavor::Avx2] {
            for n in [1usize, 5, 8, 15, 16, 17, 31, 33, 100, 511, 896, 4864] {
                for scale in [0.5f32, 8.0, 60.0] {
                    let row: Vec<f32> = (0..n).map(|i| if i % 7 == 3 { f32::NEG_INFINITY } else { rnd() * scale }).collect();
                    let (mut a, mut b) = (row.clone(), row.clone());
                    if !vx::softmax(f, &mut a) {
                        continue;
                    }
                    softmax_emulated(f, &mut b);
                    assert!(a.iter().zip(&b).all(|(x, y)| x.to_bits() == y.to_bits()), "{f:?} softmax n={n}");
                    let up: Vec<f32> = (0..n).map(|_| rnd() * 3.0).collect();
                    let gate: Vec<f32> = (0..n).map(|_| rnd() * scale).collect();
                    let (mut a, mut b) = (gate.clone(), gate.clone());
                    assert!(vx::swiglu(f, &mut a, &up));
                    swiglu_emulated(f, &mut b, &up);
                    assert!(a.iter().zip(&b).all(|(x, y)| x.to_bits() == y.to_bits()), "{f:?} swiglu n={n}");
                }
            }
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
