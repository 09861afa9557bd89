//! Every kernel tier this CPU offers (`hearth_kernels::variants()`: e.g.
//! AVX2+VNNI, AVX2, scalar on a recent x86; NEON, scalar on aarch64)
//! against the scalar reference, on seeded random data of several lengths.
//! The tiers tested are printed, so a log shows which paths ran.

mod common;

use common::*;
use hearth_kernels::{self as k, reference, GgmlType};

fn banner() {
    let names: Vec<_> = k::variants().iter().map(|v| v.name()).collect();
    eprintln!("hearth-kernels dispatch: {}; testing {:?}", k::cpu_features(), names);
}

/// Float bound for two summation orders of the same terms: each partial sum
/// is rounded at most once per addition, so the difference is at most about
/// `n_terms * eps * sum|terms|`; with at most a few hundred blocks and eps =
/// 2^-24 that is below 1e-5 * sum|terms| (plus a floor for exact zeros).
fn order_tol(ty: GgmlType, w: &[u8], a: &[u8], n: usize) -> f64 {
    let wd = dequant(ty, w, n);
    let ad = dequant(k::vec_dot_type(ty), a, n);
    let mag: f64 = wd.iter().zip(&ad).map(|(x, y)| (*x as f64 * *y as f64).abs()).sum();
    // Q4_1/Q5_1 add m*s per block with s rounded to f16 in the activation;
    // both kernels use the same s, so no extra term is needed here.
    1e-5 * mag + 1e-30
}

#[test]
fn simd_vec_dot_matches_reference_on_quantized_and_random_weights() {
    banner();
    let mut rng = Rng::new(1);
    let mut failures = Vec::new();
    for ty in WEIGHT_TYPES {
        for n in lengths(ty) {
            for case in 0..4 {
                let x = rng.normals(n, 0.05);
                let w = if case % 2 == 0 {
                    let mut w = vec![0u8; k::row_bytes(ty, n)];
                    k::quantize_row_ref(ty, &x, &mut w);
                    w
                } else {
                    random_blocks(&mut rng, ty, n, &mut |r| r.range(-0.1, 0.1))
                };
                let act = rng.normals(n, if case < 2 { 1.0 } else { 30.0 });
                let a = quantize_act(ty, &act);
                let want = reference::vec_dot(ty, n, &w, &a);
                let tol = order_tol(ty, &w, &a, n);
                for v in k::variants() {
                    let got = v.vec_dot(ty, n, &w, &a);
                    if ((got - want) as f64).abs() > tol {
                        failures.push(format!("{} {ty} n={n} case {case}: simd {got} ref {want} tol {tol:e}", v.name()));
                    }
                }
            }
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

/// With every scale set to 1.0 all products and partial sums are integers
/// below 2^24, which f32 represents exactly in any order: the SIMD and
/// reference dots must then agree exactly, which pins down the integer core
/// (nibble order, bit unpacking, scale packing, zero points) without any
/// tolerance.
#[test]
fn integer_core_is_exact_with_unit_scales() {
    let mut rng = Rng::new(2);
    let mut failures = Vec::new();
    for ty in WEIGHT_TYPES.into_iter().filter(|t| t.block_size() > 1) {
        let at = k::vec_dot_type(ty);
        for n in lengths(ty).into_iter().take(3) {
            for _ in 0..8 {
                let w = random_blocks(&mut rng, ty, n, &mut |_| 1.0);
                // Activation quants in [-60, 60] so Q8_1's s = sum(q) stays
                // an exact f16 integer (|s| <= 1920 < 2048).
                let mut a = random_blocks(&mut rng, at, n, &mut |_| 1.0);
                let qs = match at {
                    GgmlType::Q8_0 => 2..34,
                    GgmlType::Q8_1 => 4..36,
                    _ => 4..260,
                };
                for blk in a.chunks_exact_mut(at.type_size()) {
                    for q in &mut blk[qs.clone()] {
                        *q = ((*q as i8) % 61) as u8;
                    }
                    if at == GgmlType::Q8_1 {
                        let s: i32 = blk[4..36].iter().map(|&q| q as i8 as i32).sum();
                        blk[2..4].copy_from_slice(&half::f16::from_f32(s as f32).to_le_bytes());
                    }
                    if at == GgmlType::Q8_K {
                        for j in 0..16 {
                            let s: i32 = blk[4 + 16 * j..20 + 16 * j].iter().map(|&q| q as i8 as i32).sum();
                            blk[260 + 2 * j..262 + 2 * j].copy_from_slice(&(s as i16).to_le_bytes());
                        }
                    }
                }
                let want = reference::vec_dot(ty, n, &w, &a);
                assert!(want.abs() < (1 << 24) as f32, "{ty}: test data too large for exactness");
                for v in k::variants() {
                    let got = v.vec_dot(ty, n, &w, &a);
                    if got != want {
                        failures.push(format!("{} {ty} n={n}: simd {got} ref {want}", v.name()));
                    }
                }
            }
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

/// `vec_dot_rows` and `matmul_rows` use R x T tiles whose per-result
/// arithmetic is the same sequence of operations as the single-row kernel,
/// so results must be bit-identical to `vec_dot`, for every tile shape and
/// remainder. Gaps between output rows (stride > rows) must stay untouched.
#[test]
fn vec_dot_rows_and_matmul_rows_equal_vec_dot_bitwise() {
    let mut rng = Rng::new(3);
    for ty in WEIGHT_TYPES {
        let n = lengths(ty)[1];
        let rb = k::row_bytes(ty, n);
        let at = k::vec_dot_type(ty);
        let ab = k::row_bytes(at, n);
        for n_w in [1usize, 2, 3, 4, 5, 8, 9] {
            let mut w = Vec::new();
            for _ in 0..n_w {
                let x = rng.normals(n, 0.05);
                let mut row = vec![0u8; rb];
                k::quantize_row_ref(ty, &x, &mut row);
                w.extend_from_slice(&row);
            }
            for n_a in [1usize, 2, 3, 5] {
                let mut a = Vec::new();
                for _ in 0..n_a {
                    a.extend(quantize_act(ty, &rng.normals(n, 1.0)));
                }
                for v in k::variants() {
                    let single = |r: usize, t: usize| v.vec_dot(ty, n, &w[r * rb..(r + 1) * rb], &a[t * ab..(t + 1) * ab]);
                    let name = v.name();
                    // vec_dot_rows, per activation row.
                    for t in 0..n_a {
                        let mut out = vec![f32::NAN; n_w];
                        v.vec_dot_rows(ty, n, &w, &a[t * ab..(t + 1) * ab], &mut out);
                        for (r, x) in out.iter().enumerate() {
                            assert_eq!(x.to_bits(), single(r, t).to_bits(), "{name} {ty} vec_dot_rows n_w={n_w} r={r}");
                        }
                    }
                    let stride = n_w + 3;
                    let sentinel = -12345.0f32;
                    let mut out = vec![sentinel; (n_a - 1) * stride + n_w];
                    v.matmul_rows(ty, n, &w, n_w, &a, n_a, &mut out, stride);
                    for t in 0..n_a {
                        for r in 0..stride {
                            let i = t * stride + r;
                            if i >= out.len() {
                                continue;
                            }
                            if r < n_w {
                                assert_eq!(
                                    out[i].to_bits(),
                                    single(r, t).to_bits(),
                                    "{name} {ty} matmul n_w={n_w} n_a={n_a} r={r} t={t}"
                                );
                            } else {
                                assert_eq!(out[i], sentinel, "{name} {ty} matmul wrote into the stride gap");
                            }
                        }
                    }
                }
            }
        }
    }
}

/// The SIMD tiers of one architecture compute identical integers and the
/// same float operations (AVX2 vs AVX2+VNNI), so they must agree bitwise.
#[test]
fn simd_tiers_agree_bitwise() {
    let tiers: Vec<_> = k::variants().into_iter().filter(|v| v.name() != "scalar").collect();
    let mut rng = Rng::new(9);
    for ty in WEIGHT_TYPES {
        for n in lengths(ty) {
            let w = random_blocks(&mut rng, ty, n, &mut |r| r.range(-1.0, 1.0));
            let a = quantize_act(ty, &rng.normals(n, 1.0));
            let results: Vec<u32> = tiers.iter().map(|v| v.vec_dot(ty, n, &w, &a).to_bits()).collect();
            assert!(results.windows(2).all(|p| p[0] == p[1]), "{ty} n={n}: tiers {tiers:?} give {results:?}");
        }
    }
}

fn act_rows(rng: &mut Rng, n: usize) -> Vec<Vec<f32>> {
    let mut rows = vec![
        rng.normals(n, 1.0),
        rng.normals(n, 1e-3),
        rng.normals(n, 300.0),
        vec![0.0; n],
        (0..n).map(|i| if i % 7 == 0 { 1e-40 } else { 0.0 }).collect(),
        (0..n).map(|i| ((i % 17) as f32 - 8.0) * 0.5).collect(), // rounding ties
    ];
    let mut spike = vec![0.0; n];
    spike[n / 2] = -5.0;
    rows.push(spike);
    // A whole block of subnormals: the case that exposed two edge behaviours.
    rows.push(rng.normals(n, 1e-40));
    rows
}

#[test]
fn simd_activation_quantizers_are_byte_identical_to_reference() {
    let mut rng = Rng::new(4);
    for at in ACT_TYPES {
        for n in lengths(at) {
            for (i, x) in act_rows(&mut rng, n).into_iter().enumerate() {
                let rb = k::row_bytes(at, n);
                let mut want = vec![0u8; rb];
                reference::quantize_activation(at, &x, &mut want);
                for v in k::variants() {
                    let mut got = vec![0u8; rb];
                    v.quantize_activation(at, &x, &mut got);
                    assert!(
                        got == want,
                        "{} {at} n={n} row kind {i}: first difference at byte {:?}",
                        v.name(),
                        got.iter().zip(&want).position(|(a, b)| a != b)
                    );
                }
            }
        }
    }
}

#[test]
fn simd_dequantize_is_bit_identical_to_reference() {
    let mut rng = Rng::new(5);
    for ty in ALL_TYPES {
        for n in lengths(ty) {
            let b = random_blocks(&mut rng, ty, n, &mut |r| r.range(-4.0, 4.0));
            let mut want = vec![0f32; n];
            reference::dequantize_row(ty, &b, &mut want);
            for v in k::variants() {
                let mut got = vec![0f32; n];
                v.dequantize_row(ty, &b, &mut got);
                for i in 0..n {
                    assert_eq!(got[i].to_bits(), want[i].to_bits(), "{} {ty} n={n} element {i}", v.name());
                }
            }
        }
    }
}

#[test]
fn kernels_accept_unaligned_slices() {
    let mut rng = Rng::new(6);
    for ty in WEIGHT_TYPES {
        let n = lengths(ty)[2];
        let w = random_blocks(&mut rng, ty, n, &mut |r| r.range(-1.0, 1.0));
        let a = quantize_act(ty, &rng.normals(n, 1.0));
        for v in k::variants() {
            let want = v.vec_dot(ty, n, &w, &a);
            for off in 1..4 {
                let mut wb = vec![0u8; off];
                wb.extend_from_slice(&w);
                let mut abuf = vec![0u8; off + 1];
                abuf.extend_from_slice(&a);
                let got = v.vec_dot(ty, n, &wb[off..], &abuf[off + 1..]);
                assert_eq!(got.to_bits(), want.to_bits(), "{} {ty} offset {off}", v.name());
            }
        }
    }
}

#[test]
#[should_panic(expected = "vec_dot")]
fn vec_dot_panics_on_short_weights() {
    let a = vec![0u8; k::row_bytes(GgmlType::Q8_0, 64)];
    k::vec_dot(GgmlType::Q4_0, 64, &[0u8; 35], &a);
}

#[test]
#[should_panic(expected = "does not support type")]
fn vec_dot_panics_on_activation_only_type() {
    k::vec_dot(GgmlType::Q8_K, 256, &[0u8; 292], &[0u8; 292]);
}

#[test]
#[should_panic(expected = "matmul_rows")]
fn matmul_rows_panics_on_short_output() {
    let w = vec![0u8; 2 * 18];
    let a = vec![0u8; 3 * 34];
    let mut out = vec![0f32; 5];
    k::matmul_rows(GgmlType::Q4_0, 32, &w, 2, &a, 3, &mut out, 2);
}

#[test]
fn type_queries() {
    assert!(k::is_weight_type(GgmlType::Q4_K));
    assert!(!k::is_weight_type(GgmlType::Q8_K));
    assert!(!k::is_weight_type(GgmlType::I32));
    assert_eq!(k::try_vec_dot_type(GgmlType::Q5_1), Some(GgmlType::Q8_1));
    assert_eq!(k::try_vec_dot_type(GgmlType::Q5_0), Some(GgmlType::Q8_0));
    assert_eq!(k::try_vec_dot_type(GgmlType::Q3_K), Some(GgmlType::Q8_K));
    assert_eq!(k::try_vec_dot_type(GgmlType::Q8_1), None);
    assert!(["avx2+fma+f16c", "avx2+fma+f16c+avx512vnni", "neon", "scalar"].contains(&k::cpu_features()));
    let v = k::variants();
    assert_eq!(v[0], k::selected_variant());
    assert_eq!(v.last().map(|v| v.name()), Some("scalar"));
}
