//! The x8 repacked layout (`hearth_kernels::repack`): packing is lossless,
//! dequantizing a packed row equals dequantizing the original, and every
//! tier's packed matrix product is bit-identical to the plain reference
//! `repack::dot_ref` (and within float rounding of `vec_dot` and of the f32
//! product), on row counts that are not multiples of the interleave and on
//! activation counts that exercise every tile shape.

mod common;

use common::*;
use hearth_kernels::{self as k, repack, GgmlType};

const TYPES: [GgmlType; 5] = [GgmlType::Q4_0, GgmlType::Q5_0, GgmlType::Q8_0, GgmlType::Q4_K, GgmlType::Q6_K];

fn weights(rng: &mut Rng, ty: GgmlType, n: usize, rows: usize, quantized: bool) -> Vec<u8> {
    let mut w = Vec::new();
    for _ in 0..rows {
        if quantized {
            let x = rng.normals(n, 0.05);
            let mut row = vec![0u8; k::row_bytes(ty, n)];
            k::quantize_row_ref(ty, &x, &mut row);
            w.extend_from_slice(&row);
        } else {
            w.extend(random_blocks(rng, ty, n, &mut |r| r.range(-0.1, 0.1)));
        }
    }
    w
}

/// A row length scaled to `ty`'s block: `n` for 32-element blocks, `8n`
/// for the 256-element K-quant super-blocks.
fn len(ty: GgmlType, n: usize) -> usize {
    n * ty.block_size() / 32
}

fn packed(ty: GgmlType, n: usize, w: &[u8], rows: usize) -> Vec<u8> {
    let mut p = vec![0xAAu8; repack::packed_bytes(ty, n, rows)];
    repack::pack(ty, n, w, rows, &mut p);
    p
}

#[test]
fn pack_is_lossless_and_same_size_per_group() {
    let mut rng = Rng::new(11);
    for ty in TYPES {
        for (n, rows) in [(32, 1), (64, 7), (96, 8), (224, 13), (896, 17)] {
            let n = len(ty, n);
            let w = weights(&mut rng, ty, n, rows, false);
            let p = packed(ty, n, &w, rows);
            assert_eq!(p.len(), rows.div_ceil(8) * 8 * k::row_bytes(ty, n));
            let rb = k::row_bytes(ty, n);
            let mut row = vec![0u8; rb];
            let mut f = vec![0f32; n];
            let mut g = vec![0f32; n];
            for r in 0..rows {
                repack::unpack_row(ty, n, &p, r, &mut row);
                assert_eq!(&row[..], &w[r * rb..(r + 1) * rb], "{ty} n={n} row {r}");
                repack::dequantize_row(ty, &p, r, &mut f);
                k::dequantize_row(ty, &w[r * rb..(r + 1) * rb], &mut g);
                assert!(f.iter().zip(&g).all(|(a, b)| a.to_bits() == b.to_bits()), "{ty} dequantize row {r}");
            }
            // Padding rows are zero blocks.
            if rows % 8 != 0 {
                repack::unpack_row(ty, n, &p, rows, &mut row);
                assert!(row.iter().all(|&b| b == 0));
            }
        }
    }
}

#[test]
fn packing_in_group_aligned_pieces_equals_packing_at_once() {
    let mut rng = Rng::new(12);
    for ty in TYPES {
        let (n, rows) = (len(ty, 96), 21);
        let w = weights(&mut rng, ty, n, rows, true);
        let whole = packed(ty, n, &w, rows);
        let rb = k::row_bytes(ty, n);
        let mut pieces = vec![0u8; whole.len()];
        let split = 16;
        let at = repack::packed_bytes(ty, n, split);
        repack::pack(ty, n, &w[..split * rb], split, &mut pieces[..at]);
        repack::pack(ty, n, &w[split * rb..], rows - split, &mut pieces[at..]);
        assert_eq!(whole, pieces);
    }
}

/// With every scale 1.0 all partial sums are integers below 2^24: the packed
/// product must equal the reference `vec_dot` exactly (pins down the
/// interleave, nibble order, Q5_0 high-bit plane and zero points). The
/// K-quants' integer sums (scales times sub-block sums) exceed 2^24, so there
/// the next test's f64 comparison pins the layout down instead.
#[test]
fn integer_core_is_exact_with_unit_scales() {
    let mut rng = Rng::new(13);
    for ty in [GgmlType::Q4_0, GgmlType::Q5_0, GgmlType::Q8_0] {
        let (n, rows, t) = (224, 11, 5);
        let w = random_blocks(&mut rng, ty, n * rows, &mut |_| 1.0);
        let a = random_blocks(&mut rng, GgmlType::Q8_0, n * t, &mut |_| 1.0);
        let a: Vec<u8> = a.chunks(34).flat_map(|b| {
            let mut b = b.to_vec();
            b[2..].iter_mut().for_each(|q| if *q == 0x80 { *q = 0x81 });
            b
        }).collect();
        let p = packed(ty, n, &w, rows);
        let (rb, ab) = (k::row_bytes(ty, n), k::row_bytes(k::vec_dot_type(ty), n));
        for v in k::variants() {
            let mut out = vec![f32::NAN; t * rows];
            repack::matmul_with(v, ty, n, &p, rows, &a, t, &mut out, rows);
            for ti in 0..t {
                for r in 0..rows {
                    let want = k::reference::vec_dot(ty, n, &w[r * rb..(r + 1) * rb], &a[ti * ab..(ti + 1) * ab]);
                    assert_eq!(out[ti * rows + r], want, "{} {ty} row {r} act {ti}", v.name());
                }
            }
        }
    }
}

#[test]
fn every_tier_is_bit_identical_to_dot_ref_for_every_tile_shape() {
    banner();
    let mut rng = Rng::new(14);
    let mut failures = Vec::new();
    for ty in TYPES {
        // (4864, 104) x 37 activation rows: several 32-row activation
        // blocks, weight blocks smaller than the matrix, and remainders.
        for (n, rows) in [(32, 3), (64, 8), (96, 17), (896, 24), (4864, 9), (4864, 104)] {
            let n = len(ty, n);
            for quantized in [true, false] {
                let w = weights(&mut rng, ty, n, rows, quantized);
                let p = packed(ty, n, &w, rows);
                let (rb, ab) = (k::row_bytes(ty, n), k::row_bytes(k::vec_dot_type(ty), n));
                let ts: &[usize] = if rows > 100 { &[37] } else { &[1, 2, 3, 4, 5, 7, 9] };
                for &t in ts {
                    let acts: Vec<u8> = (0..t).flat_map(|i| quantize_act(ty, &rng.normals(n, if i % 2 == 0 { 1.0 } else { 30.0 }))).collect();
                    let stride = rows + 3;
                    for v in k::variants() {
                        let mut out = vec![f32::NAN; t * stride];
                        repack::matmul_with(v, ty, n, &p, rows, &acts, t, &mut out, stride);
                        for ti in 0..t {
                            let arow = &acts[ti * ab..(ti + 1) * ab];
                            for r in 0..rows {
                                let wrow = &w[r * rb..(r + 1) * rb];
                                let want = repack::dot_ref(ty, n, wrow, arow);
                                let got = out[ti * stride + r];
                                if got.to_bits() != want.to_bits() {
                                    failures.push(format!("{} {ty} n={n} rows={rows} t={t}: row {r} act {ti}: {got} vs {want}", v.name()));
                                }
                                // Against ggml's order (vec_dot) and against f32: float rounding only.
                                let vd = k::reference::vec_dot(ty, n, wrow, arow);
                                let wd = dequant(ty, wrow, n);
                                let ad = dequant(k::vec_dot_type(ty), arow, n);
                                let exact: f64 = wd.iter().zip(&ad).map(|(x, y)| *x as f64 * *y as f64).sum();
                                let mag: f64 = wd.iter().zip(&ad).map(|(x, y)| (*x as f64 * *y as f64).abs()).sum();
                                let tol = 1e-5 * mag + 1e-30;
                                if (got as f64 - vd as f64).abs() > tol || (got as f64 - exact).abs() > tol {
                                    failures.push(format!("{ty} n={n} row {r}: {got} vec_dot {vd} f64 {exact} tol {tol:e}"));
                                }
                            }
                            // Padding between rows and stride untouched.
                            assert!(out[ti * stride + rows..ti * stride + stride].iter().all(|x| x.is_nan()));
                        }
                    }
                }
            }
        }
    }
    assert!(failures.is_empty(), "{} failures:\n{}", failures.len(), failures[..failures.len().min(20)].join("\n"));
}

#[test]
fn group_aligned_slices_of_a_packed_matrix_give_the_same_rows() {
    let mut rng = Rng::new(15);
    let (ty, n, rows, t) = (GgmlType::Q5_0, 96, 30, 3);
    let w = weights(&mut rng, ty, n, rows, true);
    let p = packed(ty, n, &w, rows);
    let acts: Vec<u8> = (0..t).flat_map(|_| quantize_act(ty, &rng.normals(n, 1.0))).collect();
    let mut whole = vec![0f32; t * rows];
    repack::matmul(ty, n, &p, rows, &acts, t, &mut whole, rows);
    let at = repack::packed_bytes(ty, n, 16);
    let mut part = vec![0f32; t * (rows - 16)];
    repack::matmul(ty, n, &p[at..], rows - 16, &acts, t, &mut part, rows - 16);
    for ti in 0..t {
        assert_eq!(&whole[ti * rows + 16..(ti + 1) * rows], &part[ti * (rows - 16)..(ti + 1) * (rows - 16)]);
    }
}

#[test]
#[should_panic(expected = "repack")]
fn pack_rejects_unsupported_types() {
    let mut d = [0u8; 8 * 176];
    repack::pack(GgmlType::Q5_K, 256, &[0u8; 176], 1, &mut d);
}

fn banner() {
    let names: Vec<_> = k::variants().iter().map(|v| v.name()).collect();
    eprintln!("repack: fast path {}; testing {:?}", repack::has_fast_path(), names);
}
