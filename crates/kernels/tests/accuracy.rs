//! Numerical accuracy against plain f32, independent of the reference
//! implementation: quantize → dequantize reconstruction error per type, and
//! dot products against the f32 dot of dequantized weights with the original
//! activations. Bounds are derived in the comments; each would be violated
//! by a wrong scale, sign, nibble order or zero point.

mod common;

use common::*;
use hearth_kernels::{self as k, GgmlType};

const N: usize = 4096;
/// f16 relative rounding bound (half an ulp of an 11-bit significand).
const F16_REL: f32 = 1.0 / 2048.0;

/// Normalised RMS error bounds for Gaussian rows (rms(x - x') / rms(x)).
///
/// For a uniform quantizer with step Δ the error is roughly uniform on
/// [-Δ/2, Δ/2], RMS Δ/√12. With σ = 1:
/// * Q4_0: Δ = amax/8 with amax of 32 normals ≈ 2.1 → 0.075; the side
///   opposite the max clamps at +7, so measured ≈ 0.086. Bound 0.10.
/// * Q4_1: Δ = range/15, range of 32 normals ≈ 4.1 → 0.079. Bound 0.09.
/// * Q5_0: Δ = amax/16 → 0.038 (+ clamp) ≈ 0.043 measured. Bound 0.05.
/// * Q5_1: Δ = range/31 → 0.038. Bound 0.045.
/// * Q8_0/Q8_1: Δ = amax/127 ≈ 0.0165 → 0.0048 (+ f16 scale) ≈ 0.0054. Bound 0.0065.
/// * Q8_K: amax of 256 normals ≈ 2.8 → Δ = 0.022 → 0.0064. Bound 0.0085.
/// * Q2_K: 4 levels over a 16-element range ≈ 3.5 → Δ ≈ 1.17 → 0.34; the
///   MAD-optimised search gets ≈ 0.30. Bound 0.34.
/// * Q3_K: 8 levels, Δ ≈ amax(16)/4 ≈ 0.44 → 0.128; clamping at +3 and
///   6-bit scales give ≈ 0.15. Bound 0.17.
/// * Q4_K: 16 levels over range(32)/15 → 0.079; the search gets ≈ 0.071. Bound 0.085.
/// * Q5_K: range(32)/31 → 0.038, ≈ 0.036 measured. Bound 0.043.
/// * Q6_K: Δ ≈ amax(16)/32 ≈ 0.055 → 0.016, ≈ 0.018 with 8-bit scales. Bound 0.021.
/// * F16: relative error ≤ 2^-11, RMS ≈ 2^-11/√3·(spread) ≈ 2.1e-4. Bound 3e-4.
/// * BF16: 2^-8 instead of 2^-11: ≈ 1.7e-3. Bound 2.3e-3.
///
/// Bounds sit ~15% above the worst of 20 measured rows: a real regression
/// (a wrong scale bit, a swapped nibble) moves the error by far more.
fn nrmse_bound(ty: GgmlType) -> f64 {
    match ty {
        GgmlType::F32 => 0.0,
        GgmlType::F16 => 3e-4,
        GgmlType::BF16 => 2.3e-3,
        GgmlType::Q4_0 => 0.10,
        GgmlType::Q4_1 => 0.09,
        GgmlType::Q5_0 => 0.05,
        GgmlType::Q5_1 => 0.045,
        GgmlType::Q8_0 | GgmlType::Q8_1 => 0.0065,
        GgmlType::Q8_K => 0.0085,
        GgmlType::Q2_K => 0.34,
        GgmlType::Q3_K => 0.17,
        GgmlType::Q4_K => 0.085,
        GgmlType::Q5_K => 0.043,
        GgmlType::Q6_K => 0.021,
        _ => unreachable!(),
    }
}

fn roundtrip(ty: GgmlType, x: &[f32]) -> Vec<f32> {
    let mut q = vec![0u8; k::row_bytes(ty, x.len())];
    k::quantize_row_ref(ty, x, &mut q);
    let mut y = vec![0f32; x.len()];
    k::dequantize_row(ty, &q, &mut y);
    y
}

#[test]
fn reconstruction_rms_error_within_derived_bounds() {
    let mut rng = Rng::new(11);
    let mut failures = Vec::new();
    for ty in ALL_TYPES {
        // The bound is relative, so it must hold at any overall scale that
        // keeps f16 scales in their normal range.
        for scale in [1.0f32, 0.01, 50.0] {
            for _ in 0..6 {
                let x = rng.normals(N, scale);
                let y = roundtrip(ty, &x);
                let e: f64 = x.iter().zip(&y).map(|(a, b)| ((a - b) as f64).powi(2)).sum();
                let s: f64 = x.iter().map(|a| (*a as f64).powi(2)).sum();
                let r = (e / s).sqrt();
                if r > nrmse_bound(ty) {
                    failures.push(format!("{ty} scale {scale}: nrmse {r:.5} > {}", nrmse_bound(ty)));
                }
            }
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

/// Per-element worst-case bounds for the simple block types (per block of 32):
/// * Q8_0: q = round(x/d), d = amax/127; storing d as f16 moves each level
///   q·d by at most |q|·d·2^-11 ≤ 127·d·2^-11, so |e| ≤ d·(0.5 + 0.062).
/// * Q4_0: levels d·(q−8) with d = max/−8: the max maps exactly to −8, the
///   opposite extreme (+8) clamps to +7, so |e| ≤ |d|, plus 8·|d|·2^-11.
/// * Q5_0: the same with 16: |e| ≤ |d|·(1 + 16·2^-11), d = amax/16.
/// * Q4_1 / Q5_1: round-half-up on [0, 15] / [0, 31] steps of d = range/15
///   (/31): |e| ≤ d/2 + 15d·2^-11 (31d·2^-11) + |min|·2^-11 (m in f16).
/// * F16/BF16: relative 2^-11 / 2^-8 (normal range).
#[test]
fn reconstruction_per_element_bounds() {
    let mut rng = Rng::new(12);
    for ty in [
        GgmlType::Q8_0,
        GgmlType::Q8_1,
        GgmlType::Q4_0,
        GgmlType::Q5_0,
        GgmlType::Q4_1,
        GgmlType::Q5_1,
        GgmlType::F16,
        GgmlType::BF16,
    ] {
        for _ in 0..10 {
            let x = rng.normals(N, 1.0);
            let y = roundtrip(ty, &x);
            for (b, (xb, yb)) in x.chunks(32).zip(y.chunks(32)).enumerate() {
                let amax = xb.iter().fold(0f32, |m, v| m.max(v.abs()));
                let min = xb.iter().fold(f32::MAX, |m, &v| m.min(v));
                let max = xb.iter().fold(-f32::MAX, |m, &v| m.max(v));
                for (i, (&a, &c)) in xb.iter().zip(yb).enumerate() {
                    let bound = match ty {
                        GgmlType::Q8_0 | GgmlType::Q8_1 => amax / 127.0 * (0.5 + 127.0 * F16_REL),
                        GgmlType::Q4_0 => amax / 8.0 * (1.0 + 8.0 * F16_REL),
                        GgmlType::Q5_0 => amax / 16.0 * (1.0 + 16.0 * F16_REL),
                        GgmlType::Q4_1 => (max - min) / 15.0 * (0.5 + 15.0 * F16_REL) + min.abs() * F16_REL,
                        GgmlType::Q5_1 => (max - min) / 31.0 * (0.5 + 31.0 * F16_REL) + min.abs() * F16_REL,
                        GgmlType::F16 => a.abs() * F16_REL,
                        _ => a.abs() / 256.0,
                    } * 1.0001
                        + 1e-7;
                    assert!((a - c).abs() <= bound, "{ty} block {b} elem {i}: x {a} x' {c} bound {bound}");
                }
            }
        }
    }
}

/// Upper bound on |a_i − a'_i| for an activation quantized to `at`,
/// derived like the weight bounds above (Q8_K keeps d in f32: no f16 term).
fn act_err_bounds(at: GgmlType, a: &[f32]) -> Vec<f32> {
    let bs = at.block_size().max(1);
    let mut e = vec![0f32; a.len()];
    for (ab, eb) in a.chunks(bs).zip(e.chunks_mut(bs)) {
        let amax = ab.iter().fold(0f32, |m, v| m.max(v.abs()));
        for (v, o) in ab.iter().zip(eb.iter_mut()) {
            *o = match at {
                GgmlType::F32 => 0.0,
                GgmlType::F16 => v.abs() * F16_REL,
                GgmlType::BF16 => v.abs() / 256.0,
                GgmlType::Q8_0 | GgmlType::Q8_1 => amax / 127.0 * (0.5 + 127.0 * F16_REL),
                GgmlType::Q8_K => amax / 127.0 * 0.5,
                _ => unreachable!(),
            } * 1.0001
                + 1e-7 * amax;
        }
    }
    e
}

/// The quantized dot product against plain f32 arithmetic:
/// (a) against the dequantized operands, only float rounding separates them
///     (plus, for Q4_1/Q5_1, the f16 rounding of Q8_1's `s`, ≤ |m|·|s|·2^-11
///     per block);
/// (b) against the ORIGINAL activations, additionally Σ|w'_i|·bound_i with
///     the a-priori activation error bound of `act_err_bounds`.
#[test]
fn vec_dot_agrees_with_f32_dot_within_derived_bounds() {
    let mut rng = Rng::new(13);
    let mut failures = Vec::new();
    for ty in WEIGHT_TYPES {
        let at = k::vec_dot_type(ty);
        for n in lengths(ty) {
            for scale in [1.0f32, 1e-2, 1e2] {
                let x = rng.normals(n, 0.05);
                let mut w = vec![0u8; k::row_bytes(ty, n)];
                k::quantize_row_ref(ty, &x, &mut w);
                let wd = dequant(ty, &w, n);
                let act = rng.normals(n, scale);
                let a = quantize_act(ty, &act);
                let ad = dequant(at, &a, n);
                let got = k::vec_dot(ty, n, &w, &a) as f64;

                let exact: f64 = wd.iter().zip(&ad).map(|(p, q)| *p as f64 * *q as f64).sum();
                let mag: f64 = wd.iter().zip(&ad).map(|(p, q)| (*p as f64 * *q as f64).abs()).sum();
                let mut tol_a = 2e-5 * mag + 1e-30;
                if at == GgmlType::Q8_1 {
                    // m is at bytes 2..4 of Q4_1/Q5_1 blocks, s at 2..4 of Q8_1.
                    let ts = ty.type_size();
                    for (wb, ab) in w.chunks(ts).zip(a.chunks(36)) {
                        let m = half::f16::from_le_bytes([wb[2], wb[3]]).to_f32() as f64;
                        let s = half::f16::from_le_bytes([ab[2], ab[3]]).to_f32() as f64;
                        tol_a += m.abs() * (s.abs() * F16_REL as f64 + 6e-8);
                    }
                }
                if (got - exact).abs() > tol_a {
                    failures.push(format!("{ty} n={n} scale {scale}: dot {got} vs dequantized {exact} (tol {tol_a:e})"));
                }

                let orig: f64 = wd.iter().zip(&act).map(|(p, q)| *p as f64 * *q as f64).sum();
                let eb = act_err_bounds(at, &act);
                let tol_b = tol_a + wd.iter().zip(&eb).map(|(p, e)| (p.abs() * e) as f64).sum::<f64>();
                if (got - orig).abs() > tol_b {
                    failures.push(format!("{ty} n={n} scale {scale}: dot {got} vs f32 {orig} (tol {tol_b:e})"));
                }
            }
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}
