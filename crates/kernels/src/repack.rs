//! Weights repacked at load time into an 8-row interleaved layout, and the
//! matrix products that read it.
//!
//! The GGUF layouts store each row's blocks one after another, so a SIMD
//! kernel that computes one row's dot product needs one horizontal sum and
//! one int→float conversion + scale multiply + FMA *per row and block*.
//! Interleaving eight rows (the idea of llama.cpp's `ggml-cpu/repack.cpp`,
//! `block_q4_0x8`) puts element groups `4k..4k+4` of the same block of eight
//! rows in one 32-byte vector, so one `vpdpbusd` against four broadcast
//! activation bytes advances eight rows at once, the i32 lanes *are* the
//! eight rows' block sums, and the float work (convert, scale, FMA) is
//! done once per eight rows; no horizontal sums are needed at all.
//!
//! # Layout ("x8"), per group of 8 rows, per block `b` (blocks of a group
//! are consecutive, groups are consecutive; the size equals the original
//! eight rows', so repacking replaces the bytes rather than adding to them)
//!
//! | type | bytes | layout |
//! |------|-------|--------|
//! | Q4_0 | 144 | `d[8]: f16` (row i's scale), then 4 chunks of 32 bytes: byte `32c + 4i + k` = `qs[4c + k]` of row i (low nibble element `4c+k`, high nibble element `16+4c+k`) |
//! | Q5_0 | 176 | `d[8]`, then a 32-byte high-bit plane: bit `v` of byte `4i + k` is bit 4 of row i's element `4v + k` (`v < 4`) or `16 + 4(v-4) + k` (`v >= 4`), then the 128 nibble bytes as for Q4_0 |
//! | Q8_0 | 272 | `d[8]`, then 8 chunks of 32 bytes: byte `32c + 4i + k` = `qs[4c + k] ^ 0x80` of row i (the quant plus 128 as an unsigned byte, [`Q8_OFFSET`]) |
//! | Q6_K | 1680 | `d[8]` (f16), 128 scale bytes: byte `8j + i` = `scales[j]` of row i, then 48 chunks of 32 bytes: byte `4i + k` of chunk `3s` = `ql[4c + k]` of row i with `c = 16(s/8) + s%8`, chunk `3s+1` the same for `c + 8`, chunk `3s+2` = `qh[4s + k]` (`q6_slot`) |
//! | Q4_K | 1152 | `d[8]`, `dmin[8]` (f16), 96 scale bytes: byte `8k + i` = `scales[k]` of row i (still 6-bit packed; the kernel unpacks all eight rows at once with u64 shifts and masks), then 32 chunks of 32 bytes: byte `32c + 4i + k` = `qs[4c + k]` of row i (low nibbles: sub-block `2(c/8)`, high nibbles: sub-block `2(c/8)+1`, element `4(c%8)+k`) |
//!
//! A matrix whose row count is not a multiple of 8 is padded with zero rows
//! (scale 0) to whole groups; results are written for real rows only.
//!
//! # Numerics
//!
//! Each result is `acc = fma(d_w · d_a, (float) Σ_block q·a, acc)` over the
//! blocks in order, with the block's integer sum exact (i32). That order does
//! not depend on how many rows or activation rows a kernel call covers, so
//! a sequence's logits are the same whether it is decoded alone or batched
//! with others. It differs from [`crate::vec_dot`] (which keeps eight float
//! partial sums per row, as ggml's AVX2 `vec_dot` does) by float rounding
//! only; [`dot_ref`] is the plain reference of this order, and the SIMD
//! kernels are tested bit-identical to it.
//!
//! Q4_K (against Q8_K activations) sums per super-block: `isum = Σ_j sc_j ·
//! Σ q·a` and `msum = Σ_j m_j · (bsums[2j] + bsums[2j+1])`, both exact i32,
//! then `acc = fma(-(dmin · d_a), msum, acc)` and `acc = fma(d · d_a, isum,
//! acc)` (see [`dot_ref`]). Q6_K: `isum = Σ_j sc_j · Σ (q - 32)·a` over
//! its sixteen sub-blocks, then `acc = fma(d · d_a, isum, acc)`.
//!
//! Absent: the other K-quants (Q5_K, Q3_K, Q2_K) are not repacked; NEON has no
//! repacked kernels ([`has_fast_path`] is false there, so callers keep
//! the GGUF layout).

use crate::{row_bytes, simd, GgmlType, Variant};

/// Rows per interleaved group.
pub const ROWS: usize = 8;

/// What the x8 Q8_0 layout XORs into every quant byte: `q ^ 0x80` is the
/// unsigned `q + 128`, so `vpdpbusd` (unsigned x signed bytes) takes the
/// weights as they are and the activations as they are, and the `+ 128`
/// comes back out as `-128 · Σ a` per block, like Q4_0's `-8 · Σ a`.
/// (Signed weights needed two `vpsignb` per vector and activation row to
/// move the sign onto the activation; that was a third of the kernel's
/// vector instructions.)
pub const Q8_OFFSET: u8 = 0x80;

/// Whether `ty` has an x8 layout.
pub const fn is_repackable(ty: GgmlType) -> bool {
    matches!(ty, GgmlType::Q4_0 | GgmlType::Q5_0 | GgmlType::Q8_0 | GgmlType::Q4_K | GgmlType::Q6_K)
}

/// Whether the selected tier has SIMD kernels for the x8 layout (on other
/// tiers [`matmul`] works, through the scalar reference, but slowly, so a
/// loader should keep the GGUF layout there).
pub fn has_fast_path() -> bool {
    simd::has_packed(crate::selected_variant().0)
}

/// Whether a loader should repack matrices of `ty` on this CPU: the type has
/// an x8 layout, the selected tier has kernels for it, and they beat the
/// GGUF-layout kernels there. Q6_K is the exception on the AVX2-only tier:
/// without `vpdpbusd` its packed one-row pass measured slower than the row
/// kernel (118 vs 76 ns per 2048-wide row, `cargo bench -p hearth-kernels`),
/// and decode is mostly one-row passes.
pub fn worth_packing(ty: GgmlType) -> bool {
    let isa = crate::selected_variant().0;
    is_repackable(ty) && simd::has_packed(isa) && !(ty == GgmlType::Q6_K && isa == simd::Isa::Avx2)
}

/// Bytes of `rows` rows of `n` elements of `ty` in the x8 layout (rows
/// rounded up to a whole group).
///
/// # Panics
/// If `ty` is not repackable or `n` not a whole number of blocks.
#[track_caller]
pub fn packed_bytes(ty: GgmlType, n: usize, rows: usize) -> usize {
    check_ty("packed_bytes", ty);
    rows.div_ceil(ROWS) * ROWS * row_bytes(ty, n)
}

#[track_caller]
fn check_ty(what: &str, ty: GgmlType) {
    if !is_repackable(ty) {
        crate::unsupported(what, ty);
    }
}

/// Size of the header (scales, and Q5_0's high-bit plane) of one group-block.
fn head_bytes(ty: GgmlType) -> usize {
    match ty {
        GgmlType::Q5_0 => 48,
        GgmlType::Q4_K => 128,
        GgmlType::Q6_K => 144,
        _ => 16,
    }
}

/// Where 4-byte group `c` of a Q6_K block (`c < 32`: `ql[4c..]`, else
/// `qh[4(c-32)..]`) goes among the 48 interleaved 32-byte chunks: in the
/// order the kernel reads them, so a block is read front to back (an
/// order that jumped between the `ql` and `qh` areas streamed from DRAM at
/// a third of the speed, `cargo bench -p hearth-kernels -- Q6_K --big`).
/// Step `8h + l/4` (h: 128-element half, l: element within its 32-runs)
/// holds the `ql` chunk of the low 32-run, that of the high one, then the
/// `qh` chunk.
const fn q6_slot(c: usize) -> usize {
    if c < 32 {
        3 * (8 * (c / 16) + c % 8) + (c % 16) / 8
    } else {
        3 * (c - 32) + 2
    }
}

/// Repacks `src` (whole rows of `n` elements of `ty`, `rows` of them) into
/// `dst` (exactly [`packed_bytes`]`(ty, n, rows)` bytes). The padding rows
/// of the last group become zeros. A matrix may be packed in pieces: rows
/// `8j..` of the matrix go to `dst[packed_bytes(ty, n, 8j)..]`.
///
/// # Panics
/// If the lengths do not match (caller bugs).
pub fn pack(ty: GgmlType, n: usize, src: &[u8], rows: usize, dst: &mut [u8]) {
    check_ty("repack::pack", ty);
    let rb = row_bytes(ty, n);
    let bs = ty.type_size();
    let nb = n / ty.block_size();
    assert!(src.len() == rows * rb, "hearth-kernels: repack::pack: {} bytes is not {rows} rows of {rb}", src.len());
    assert!(
        dst.len() == packed_bytes(ty, n, rows),
        "hearth-kernels: repack::pack: destination has {} bytes, need {}",
        dst.len(),
        packed_bytes(ty, n, rows)
    );
    let gb = ROWS * bs; // bytes of one group-block
    let hb = head_bytes(ty);
    dst.fill(0);
    // Padding rows are packed as all-zero GGUF rows (scale 0), so that they
    // unpack to zeros whatever the layout's byte transform.
    let zero_row = vec![0u8; rb];
    for (g, dg) in dst.chunks_exact_mut(nb * gb).enumerate() {
        for i in 0..ROWS {
            let r = g * ROWS + i;
            let row = if r < rows { &src[r * rb..(r + 1) * rb] } else { &zero_row[..] };
            for b in 0..nb {
                let blk = &row[b * bs..(b + 1) * bs];
                let o = &mut dg[b * gb..(b + 1) * gb];
                if ty == GgmlType::Q6_K {
                    // ql[128], qh[64], scales[16], d.
                    o[2 * i..2 * i + 2].copy_from_slice(&blk[208..210]);
                    for j in 0..16 {
                        o[16 + 8 * j + i] = blk[192 + j];
                    }
                    for c in 0..48 {
                        let at = hb + 32 * q6_slot(c) + 4 * i;
                        o[at..at + 4].copy_from_slice(&blk[4 * c..4 * c + 4]);
                    }
                    continue;
                }
                o[2 * i..2 * i + 2].copy_from_slice(&blk[..2]);
                match ty {
                    GgmlType::Q4_K => {
                        // d, dmin, scales[12], qs[128].
                        o[16 + 2 * i..18 + 2 * i].copy_from_slice(&blk[2..4]);
                        for k in 0..12 {
                            o[32 + 8 * k + i] = blk[4 + k];
                        }
                        for c in 0..32 {
                            o[hb + 32 * c + 4 * i..hb + 32 * c + 4 * i + 4].copy_from_slice(&blk[16 + 4 * c..20 + 4 * c]);
                        }
                    }
                    GgmlType::Q4_0 => {
                        for c in 0..4 {
                            o[hb + 32 * c + 4 * i..hb + 32 * c + 4 * i + 4].copy_from_slice(&blk[2 + 4 * c..6 + 4 * c]);
                        }
                    }
                    GgmlType::Q8_0 => {
                        for c in 0..8 {
                            for k in 0..4 {
                                o[hb + 32 * c + 4 * i + k] = blk[2 + 4 * c + k] ^ Q8_OFFSET;
                            }
                        }
                    }
                    _ => {
                        // Q5_0: d, qh (u32 LE), qs[16].
                        let qh = u32::from_le_bytes([blk[2], blk[3], blk[4], blk[5]]);
                        for k in 0..4 {
                            let mut plane = 0u8;
                            for v in 0..8 {
                                let e = if v < 4 { 4 * v + k } else { 16 + 4 * (v - 4) + k };
                                plane |= (((qh >> e) & 1) as u8) << v;
                            }
                            o[16 + 4 * i + k] = plane;
                        }
                        for c in 0..4 {
                            o[hb + 32 * c + 4 * i..hb + 32 * c + 4 * i + 4].copy_from_slice(&blk[6 + 4 * c..10 + 4 * c]);
                        }
                    }
                }
            }
        }
    }
}

/// Row `r` of a packed matrix back in the GGUF layout (`dst` is one row,
/// `row_bytes(ty, n)` bytes), exactly the bytes [`pack`] was given.
///
/// # Panics
/// If `packed` is shorter than row `r`'s group, or `dst` is not one row.
pub fn unpack_row(ty: GgmlType, n: usize, packed: &[u8], r: usize, dst: &mut [u8]) {
    check_ty("repack::unpack_row", ty);
    let rb = row_bytes(ty, n);
    let bs = ty.type_size();
    let nb = n / ty.block_size();
    assert!(dst.len() == rb, "hearth-kernels: repack::unpack_row: destination is not one row");
    let gb = ROWS * bs;
    let (g, i) = (r / ROWS, r % ROWS);
    let dg = &packed[g * nb * gb..(g + 1) * nb * gb];
    let hb = head_bytes(ty);
    for b in 0..nb {
        let o = &dg[b * gb..(b + 1) * gb];
        let blk = &mut dst[b * bs..(b + 1) * bs];
        if ty == GgmlType::Q6_K {
            blk[208..210].copy_from_slice(&o[2 * i..2 * i + 2]);
            for j in 0..16 {
                blk[192 + j] = o[16 + 8 * j + i];
            }
            for c in 0..48 {
                let at = hb + 32 * q6_slot(c) + 4 * i;
                blk[4 * c..4 * c + 4].copy_from_slice(&o[at..at + 4]);
            }
            continue;
        }
        blk[..2].copy_from_slice(&o[2 * i..2 * i + 2]);
        match ty {
            GgmlType::Q4_K => {
                blk[2..4].copy_from_slice(&o[16 + 2 * i..18 + 2 * i]);
                for k in 0..12 {
                    blk[4 + k] = o[32 + 8 * k + i];
                }
                for c in 0..32 {
                    blk[16 + 4 * c..20 + 4 * c].copy_from_slice(&o[hb + 32 * c + 4 * i..hb + 32 * c + 4 * i + 4]);
                }
            }
            GgmlType::Q4_0 => {
                for c in 0..4 {
                    blk[2 + 4 * c..6 + 4 * c].copy_from_slice(&o[hb + 32 * c + 4 * i..hb + 32 * c + 4 * i + 4]);
                }
            }
            GgmlType::Q8_0 => {
                for c in 0..8 {
                    for k in 0..4 {
                        blk[2 + 4 * c + k] = o[hb + 32 * c + 4 * i + k] ^ Q8_OFFSET;
                    }
                }
            }
            _ => {
                let mut qh = 0u32;
                for k in 0..4 {
                    let plane = o[16 + 4 * i + k];
                    for v in 0..8 {
                        let e = if v < 4 { 4 * v + k } else { 16 + 4 * (v - 4) + k };
                        qh |= u32::from((plane >> v) & 1) << e;
                    }
                }
                blk[2..6].copy_from_slice(&qh.to_le_bytes());
                for c in 0..4 {
                    blk[6 + 4 * c..10 + 4 * c].copy_from_slice(&o[hb + 32 * c + 4 * i..hb + 32 * c + 4 * i + 4]);
                }
            }
        }
    }
}

/// Dequantizes row `r` of a packed matrix into `out` (`n` floats),
/// bit-identically to [`crate::dequantize_row`] of the original row.
pub fn dequantize_row(ty: GgmlType, packed: &[u8], r: usize, out: &mut [f32]) {
    let n = out.len();
    let mut tmp = [0u8; 34 * 256]; // a row of up to 8192 Q8_0 (15104 Q4_K) elements on the stack
    let rb = row_bytes(ty, n);
    if rb <= tmp.len() {
        unpack_row(ty, n, packed, r, &mut tmp[..rb]);
        crate::dequantize_row(ty, &tmp[..rb], out);
    } else {
        let mut v = vec![0u8; rb];
        unpack_row(ty, n, packed, r, &mut v);
        crate::dequantize_row(ty, &v, out);
    }
}

/// The plain reference of the x8 kernels' arithmetic on one row in the GGUF
/// layout against one activation row of `vec_dot_type(ty)`: per block the
/// exact integer sum `Σ (q - zero) · a`, then `acc = fma(d_w · d_a, sum,
/// acc)` in block order (Q4_K: see the module docs).
pub fn dot_ref(ty: GgmlType, n: usize, w: &[u8], a: &[u8]) -> f32 {
    check_ty("repack::dot_ref", ty);
    crate::check_row("repack::dot_ref (weights)", ty, n, w.len());
    crate::check_row("repack::dot_ref (activations)", crate::vec_dot_type(ty), n, a.len());
    if ty == GgmlType::Q4_K {
        return dot_ref_q4_k(n, w, a);
    }
    if ty == GgmlType::Q6_K {
        return dot_ref_q6_k(n, w, a);
    }
    let bs = ty.type_size();
    let f16 = |p: &[u8]| crate::fp::f16_to_f32(u16::from_le_bytes([p[0], p[1]]));
    let mut acc = 0f32;
    for b in 0..n / 32 {
        let x = &w[b * bs..(b + 1) * bs];
        let y = &a[b * 34..(b + 1) * 34];
        let q: [i32; 32] = match ty {
            GgmlType::Q4_0 => std::array::from_fn(|j| i32::from(if j < 16 { x[2 + j] & 15 } else { x[2 + j - 16] >> 4 }) - 8),
            GgmlType::Q8_0 => std::array::from_fn(|j| i32::from(x[2 + j] as i8)),
            _ => {
                let qh = u32::from_le_bytes([x[2], x[3], x[4], x[5]]);
                std::array::from_fn(|j| {
                    let lo = if j < 16 { x[6 + j] & 15 } else { x[6 + j - 16] >> 4 };
                    i32::from(lo | ((((qh >> j) & 1) as u8) << 4)) - 16
                })
            }
        };
        let sum: i32 = (0..32).map(|j| q[j] * i32::from(y[2 + j] as i8)).sum();
        acc = (f16(x) * f16(y)).mul_add(sum as f32, acc);
    }
    acc
}

/// [`dot_ref`] for Q4_K against Q8_K: per super-block the exact integer
/// sums `isum = Σ_j sc_j · Σ q·a` and `msum = Σ_j m_j · (bsums[2j] +
/// bsums[2j+1])` over its eight sub-blocks of 32, then
/// `acc = fma(-(dmin · d_a), msum, acc)`, `acc = fma(d · d_a, isum, acc)`.
/// (ggml's `ggml_vec_dot_q4_K_q8_K` keeps the two terms in separate float
/// sums; this order differs from it by float rounding only.)
fn dot_ref_q4_k(n: usize, w: &[u8], a: &[u8]) -> f32 {
    let f16 = |p: &[u8]| crate::fp::f16_to_f32(u16::from_le_bytes([p[0], p[1]]));
    let mut acc = 0f32;
    for b in 0..n / 256 {
        let x = &w[b * 144..(b + 1) * 144];
        let y = &a[b * 292..(b + 1) * 292];
        let da = f32::from_le_bytes([y[0], y[1], y[2], y[3]]);
        let sc: &[u8; 12] = x[4..16].try_into().expect("12 bytes");
        let bsum = |k: usize| i32::from(i16::from_le_bytes([y[260 + 2 * k], y[261 + 2 * k]]));
        let (mut isum, mut msum) = (0i32, 0i32);
        for j in 0..8 {
            let (s, m) = crate::blocks::scale_min_k4(j, sc);
            let (p, hi) = (j / 2, j % 2 == 1);
            let dot: i32 = (0..32)
                .map(|l| {
                    let byte = x[16 + 32 * p + l];
                    let q = if hi { byte >> 4 } else { byte & 15 };
                    i32::from(q) * i32::from(y[4 + 32 * j + l] as i8)
                })
                .sum();
            isum += i32::from(s) * dot;
            msum += i32::from(m) * (bsum(2 * j) + bsum(2 * j + 1));
        }
        acc = (-(f16(&x[2..4]) * da)).mul_add(msum as f32, acc);
        acc = (f16(x) * da).mul_add(isum as f32, acc);
    }
    acc
}

/// [`dot_ref`] for Q6_K against Q8_K: per super-block the exact integer sum
/// `isum = Σ_j sc_j · Σ (q - 32) · a` over its sixteen sub-blocks of 16,
/// then `acc = fma(d · d_a, isum, acc)`. (ggml's `ggml_vec_dot_q6_K_q8_K`
/// sums the same integers per block; only the float accumulation differs.)
fn dot_ref_q6_k(n: usize, w: &[u8], a: &[u8]) -> f32 {
    let mut acc = 0f32;
    for b in 0..n / 256 {
        let x = &w[b * 210..(b + 1) * 210];
        let y = &a[b * 292..(b + 1) * 292];
        let da = f32::from_le_bytes([y[0], y[1], y[2], y[3]]);
        let d = crate::fp::f16_to_f32(u16::from_le_bytes([x[208], x[209]]));
        // blocks::BlockQ6_K: element 128h + 32s + l (s in 0..4, l in 0..32).
        let q = |e: usize| -> i32 {
            let (h, s, l) = (e / 128, (e % 128) / 32, e % 32);
            let ql = x[64 * h + 32 * (s % 2) + l];
            let lo = if s < 2 { ql & 15 } else { ql >> 4 };
            let hi = (x[128 + 32 * h + l] >> (2 * s)) & 3;
            i32::from(lo | (hi << 4)) - 32
        };
        let mut isum = 0i32;
        for j in 0..16 {
            let dot: i32 = (16 * j..16 * j + 16).map(|e| q(e) * i32::from(y[4 + e] as i8)).sum();
            isum += i32::from(x[192 + j] as i8) * dot;
        }
        acc = (d * da).mul_add(isum as f32, acc);
    }
    acc
}

/// Matrix product on a packed matrix: for each of `n_a_rows` activation
/// rows (`vec_dot_type(ty)`: Q8_0, or Q8_K for Q4_K; packed rows of
/// `row_bytes(vec_dot_type(ty), n)` bytes) and each of the
/// first `n_w_rows` rows of `w` (whole x8 groups, `packed_bytes(ty, n,
/// n_w_rows)` bytes), `out[t * out_stride + r] = dot_ref(row r, a row t)`.
/// `w` may be a group-aligned slice of a larger packed matrix.
///
/// # Panics
/// On mismatched lengths (caller bugs).
#[allow(clippy::too_many_arguments)]
pub fn matmul(ty: GgmlType, n: usize, w: &[u8], n_w_rows: usize, a: &[u8], n_a_rows: usize, out: &mut [f32], out_stride: usize) {
    matmul_with(crate::selected_variant(), ty, n, w, n_w_rows, a, n_a_rows, out, out_stride)
}

/// [`matmul`] with a given tier's kernels (tests and benchmarks).
#[allow(clippy::too_many_arguments)]
pub fn matmul_with(
    v: Variant,
    ty: GgmlType,
    n: usize,
    w: &[u8],
    n_w_rows: usize,
    a: &[u8],
    n_a_rows: usize,
    out: &mut [f32],
    out_stride: usize,
) {
    check_operands(ty, n, w, n_w_rows, a, n_a_rows);
    if n_w_rows == 0 || n_a_rows == 0 {
        return;
    }
    assert!(
        out_stride >= n_w_rows && out.len() >= (n_a_rows - 1) * out_stride + n_w_rows,
        "hearth-kernels: repack::matmul: out has {} floats, stride {out_stride}; need {n_a_rows} rows of {n_w_rows}",
        out.len()
    );
    // SAFETY: `out` covers every row t < n_a_rows at t * out_stride (checked
    // above) and is borrowed exclusively.
    unsafe { strided(v, ty, n, w, n_w_rows, a, n_a_rows, out.as_mut_ptr(), out_stride) }
}

/// [`matmul`] into rows that need not form one slice: only
/// `out[t * out_stride + r]` for `t < n_a_rows`, `r < n_w_rows` is touched,
/// nothing in between. Callers that split one output matrix by columns between
/// threads write their columns in place (instead of through a scratch
/// tile and a copy, which was 2% of a batched decode step).
///
/// # Safety
/// `out.add(t * out_stride + r)` must be valid for writes for every such
/// `t` and `r`, and no other thread may access those floats during the call.
///
/// # Panics
/// As [`matmul`], on mismatched weight or activation lengths.
#[allow(clippy::too_many_arguments)]
pub unsafe fn matmul_strided(
    ty: GgmlType,
    n: usize,
    w: &[u8],
    n_w_rows: usize,
    a: &[u8],
    n_a_rows: usize,
    out: *mut f32,
    out_stride: usize,
) {
    check_operands(ty, n, w, n_w_rows, a, n_a_rows);
    assert!(n_a_rows <= 1 || out_stride >= n_w_rows, "hearth-kernels: repack::matmul: stride {out_stride} < {n_w_rows} rows");
    if n_w_rows == 0 || n_a_rows == 0 {
        return;
    }
    strided(crate::selected_variant(), ty, n, w, n_w_rows, a, n_a_rows, out, out_stride)
}

/// The weight and activation checks of [`matmul_with`] and
/// [`matmul_strided`].
#[track_caller]
fn check_operands(ty: GgmlType, n: usize, w: &[u8], n_w_rows: usize, a: &[u8], n_a_rows: usize) {
    check_ty("repack::matmul", ty);
    let ab = row_bytes(crate::vec_dot_type(ty), n);
    assert!(
        w.len() == packed_bytes(ty, n, n_w_rows),
        "hearth-kernels: repack::matmul: {} bytes of weights is not {n_w_rows} packed rows",
        w.len()
    );
    assert!(n_a_rows * ab == a.len(), "hearth-kernels: repack::matmul: {} bytes of activations is not {n_a_rows} rows", a.len());
}

/// The shared body of [`matmul_with`] and [`matmul_strided`] (lengths
/// checked, same safety contract as the latter).
#[allow(clippy::too_many_arguments)]
unsafe fn strided(v: Variant, ty: GgmlType, n: usize, w: &[u8], n_w_rows: usize, a: &[u8], n_a_rows: usize, out: *mut f32, out_stride: usize) {
    if simd::matmul_packed(v.0, ty, n, w, n_w_rows, a, n_a_rows, out, out_stride) {
        return;
    }
    let ab = row_bytes(crate::vec_dot_type(ty), n);
    let rb = row_bytes(ty, n);
    let mut row = vec![0u8; rb];
    for r in 0..n_w_rows {
        unpack_row(ty, n, w, r, &mut row);
        for t in 0..n_a_rows {
            *out.add(t * out_stride + r) = dot_ref(ty, n, &row, &a[t * ab..(t + 1) * ab]);
        }
    }
}
