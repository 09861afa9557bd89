//! Plain scalar Rust: the readable specification of every kernel.
//!
//! * [`quantize_row`] is byte-identical to ggml's `quantize_row_*_ref`
//!   (what `llama-quantize` runs when no importance matrix is given).
//! * [`dequantize_row`] is bit-identical to ggml's `to_float` functions.
//! * [`quantize_activation`] is what ggml-cpu's `from_float` does to
//!   activations on x86 (see [`legacy::quantize_act_q8_0`] for how that
//!   differs from the `_ref` quantizer for Q8_0/Q8_1).
//! * [`vec_dot`] computes the same mathematical value as ggml's
//!   `ggml_vec_dot_*` (identical integer parts, float sum order may differ).
//!
//! The optimised kernels in `crate::simd` are tested against these.
//!
//! Loops index arrays the way ggml-quants.c does (`x[16*j + ii]`) rather than
//! with iterators, so the code can be checked line by line against the C.

#![allow(clippy::needless_range_loop)]

pub mod dot;
pub mod kquants;
pub mod legacy;

use crate::blocks::*;
use crate::fp;
use crate::{check_row, unsupported, GgmlType};

/// The type activations must be quantized to before a dot product with
/// weights of type `ty`, as ggml-cpu's type traits define it (`vec_dot_type`
/// in ggml-cpu.c), or `None` when ggml has no dot product for `ty` (Q8_1 and
/// Q8_K are activation-only types; integer types are not matmul weights).
pub const fn try_vec_dot_type(ty: GgmlType) -> Option<GgmlType> {
    Some(match ty {
        GgmlType::F32 => GgmlType::F32,
        GgmlType::F16 => GgmlType::F16,
        GgmlType::BF16 => GgmlType::BF16,
        GgmlType::Q4_0 | GgmlType::Q5_0 | GgmlType::Q8_0 => GgmlType::Q8_0,
        GgmlType::Q4_1 | GgmlType::Q5_1 => GgmlType::Q8_1,
        GgmlType::Q2_K | GgmlType::Q3_K | GgmlType::Q4_K | GgmlType::Q5_K | GgmlType::Q6_K => GgmlType::Q8_K,
        _ => return None,
    })
}

/// [`try_vec_dot_type`] for a type known to be a weight type.
///
/// # Panics
/// If `ty` has no dot product (see [`crate::is_weight_type`]); a loader must
/// reject such tensors before asking.
pub fn vec_dot_type(ty: GgmlType) -> GgmlType {
    match try_vec_dot_type(ty) {
        Some(t) => t,
        None => unsupported("vec_dot_type", ty),
    }
}

macro_rules! view {
    ($t:ty, $b:expr) => {
        // check_row already validated the length; alignment is 1.
        as_blocks::<$t>($b).expect("length validated by check_row")
    };
}
macro_rules! view_mut {
    ($t:ty, $b:expr) => {
        as_blocks_mut::<$t>($b).expect("length validated by check_row")
    };
}

/// Dequantizes one row of `dst.len()` elements.
///
/// # Panics
/// If `dst.len()` is not a whole number of blocks, `src.len()` is not
/// exactly the row's byte size, or `ty` is an integer type (I8..F64).
pub fn dequantize_row(ty: GgmlType, src: &[u8], dst: &mut [f32]) {
    check_row("dequantize_row", ty, dst.len(), src.len());
    match ty {
        GgmlType::F32 => {
            for (o, c) in dst.iter_mut().zip(src.chunks_exact(4)) {
                *o = f32::from_le_bytes([c[0], c[1], c[2], c[3]]);
            }
        }
        GgmlType::F16 => {
            for (o, c) in dst.iter_mut().zip(src.chunks_exact(2)) {
                *o = fp::f16_to_f32(u16::from_le_bytes([c[0], c[1]]));
            }
        }
        GgmlType::BF16 => {
            for (o, c) in dst.iter_mut().zip(src.chunks_exact(2)) {
                *o = fp::bf16_to_f32(u16::from_le_bytes([c[0], c[1]]));
            }
        }
        GgmlType::Q4_0 => legacy::dequantize_q4_0(view!(BlockQ4_0, src), dst),
        GgmlType::Q4_1 => legacy::dequantize_q4_1(view!(BlockQ4_1, src), dst),
        GgmlType::Q5_0 => legacy::dequantize_q5_0(view!(BlockQ5_0, src), dst),
        GgmlType::Q5_1 => legacy::dequantize_q5_1(view!(BlockQ5_1, src), dst),
        GgmlType::Q8_0 => legacy::dequantize_q8_0(view!(BlockQ8_0, src), dst),
        GgmlType::Q8_1 => legacy::dequantize_q8_1(view!(BlockQ8_1, src), dst),
        GgmlType::Q2_K => kquants::dequantize_q2_k(view!(BlockQ2_K, src), dst),
        GgmlType::Q3_K => kquants::dequantize_q3_k(view!(BlockQ3_K, src), dst),
        GgmlType::Q4_K => kquants::dequantize_q4_k(view!(BlockQ4_K, src), dst),
        GgmlType::Q5_K => kquants::dequantize_q5_k(view!(BlockQ5_K, src), dst),
        GgmlType::Q6_K => kquants::dequantize_q6_k(view!(BlockQ6_K, src), dst),
        GgmlType::Q8_K => kquants::dequantize_q8_k(view!(BlockQ8_K, src), dst),
        _ => unsupported("dequantize_row", ty),
    }
}

/// Quantizes one row exactly as ggml's `quantize_row_*_ref` (and, for F16
/// and BF16, `ggml_fp32_to_fp16_row` / `ggml_fp32_to_bf16_row_ref`).
///
/// # Panics
/// As [`dequantize_row`].
pub fn quantize_row(ty: GgmlType, src: &[f32], dst: &mut [u8]) {
    check_row("quantize_row", ty, src.len(), dst.len());
    match ty {
        GgmlType::F32 => {
            for (c, x) in dst.chunks_exact_mut(4).zip(src) {
                c.copy_from_slice(&x.to_le_bytes());
            }
        }
        GgmlType::F16 => {
            for (c, &x) in dst.chunks_exact_mut(2).zip(src) {
                c.copy_from_slice(&fp::f32_to_f16(x).to_le_bytes());
            }
        }
        GgmlType::BF16 => {
            for (c, &x) in dst.chunks_exact_mut(2).zip(src) {
                c.copy_from_slice(&fp::f32_to_bf16(x).to_le_bytes());
            }
        }
        GgmlType::Q4_0 => legacy::quantize_q4_0(src, view_mut!(BlockQ4_0, dst)),
        GgmlType::Q4_1 => legacy::quantize_q4_1(src, view_mut!(BlockQ4_1, dst)),
        GgmlType::Q5_0 => legacy::quantize_q5_0(src, view_mut!(BlockQ5_0, dst)),
        GgmlType::Q5_1 => legacy::quantize_q5_1(src, view_mut!(BlockQ5_1, dst)),
        GgmlType::Q8_0 => legacy::quantize_q8_0(src, view_mut!(BlockQ8_0, dst)),
        GgmlType::Q8_1 => legacy::quantize_q8_1(src, view_mut!(BlockQ8_1, dst)),
        GgmlType::Q2_K => kquants::quantize_q2_k(src, view_mut!(BlockQ2_K, dst)),
        GgmlType::Q3_K => kquants::quantize_q3_k(src, view_mut!(BlockQ3_K, dst)),
        GgmlType::Q4_K => kquants::quantize_q4_k(src, view_mut!(BlockQ4_K, dst)),
        GgmlType::Q5_K => kquants::quantize_q5_k(src, view_mut!(BlockQ5_K, dst)),
        GgmlType::Q6_K => kquants::quantize_q6_k(src, view_mut!(BlockQ6_K, dst)),
        GgmlType::Q8_K => kquants::quantize_q8_k(src, view_mut!(BlockQ8_K, dst)),
        _ => unsupported("quantize_row", ty),
    }
}

/// Quantizes an activation row to a `vec_dot_type` (F32, F16, BF16, Q8_0,
/// Q8_1, Q8_K) the way ggml-cpu does on x86 (`type_traits_cpu[..].from_float`).
///
/// # Panics
/// As [`dequantize_row`], and for any `ty` that is not a `vec_dot_type`.
pub fn quantize_activation(ty: GgmlType, src: &[f32], dst: &mut [u8]) {
    check_row("quantize_activation", ty, src.len(), dst.len());
    match ty {
        GgmlType::F32 | GgmlType::BF16 | GgmlType::Q8_K => quantize_row(ty, src, dst),
        GgmlType::F16 => {
            for (c, &x) in dst.chunks_exact_mut(2).zip(src) {
                c.copy_from_slice(&fp::f32_to_f16_keep_nan(x).to_le_bytes());
            }
        }
        GgmlType::Q8_0 => legacy::quantize_act_q8_0(src, view_mut!(BlockQ8_0, dst)),
        GgmlType::Q8_1 => legacy::quantize_act_q8_1(src, view_mut!(BlockQ8_1, dst)),
        _ => unsupported("quantize_activation", ty),
    }
}

/// Dot product of a weight row of type `ty` (`n` elements) with an
/// activation row already quantized to [`vec_dot_type`]`(ty)`.
///
/// # Panics
/// If `n` is not a whole number of blocks, either slice is not exactly one
/// row of its type, or `ty` is not a weight type.
pub fn vec_dot(ty: GgmlType, n: usize, w: &[u8], a: &[u8]) -> f32 {
    let at = vec_dot_type(ty);
    check_row("vec_dot (weights)", ty, n, w.len());
    check_row("vec_dot (activations)", at, n, a.len());
    match ty {
        GgmlType::F32 => dot::float_dot(f32s(w), f32s(a)),
        GgmlType::F16 => dot::float_dot(u16s(w).map(fp::f16_to_f32), u16s(a).map(fp::f16_to_f32)),
        GgmlType::BF16 => dot::float_dot(u16s(w).map(fp::bf16_to_f32), u16s(a).map(fp::bf16_to_f32)),
        GgmlType::Q4_0 => dot::q4_0_q8_0(view!(BlockQ4_0, w), view!(BlockQ8_0, a)),
        GgmlType::Q4_1 => dot::q4_1_q8_1(view!(BlockQ4_1, w), view!(BlockQ8_1, a)),
        GgmlType::Q5_0 => dot::q5_0_q8_0(view!(BlockQ5_0, w), view!(BlockQ8_0, a)),
        GgmlType::Q5_1 => dot::q5_1_q8_1(view!(BlockQ5_1, w), view!(BlockQ8_1, a)),
        GgmlType::Q8_0 => dot::q8_0_q8_0(view!(BlockQ8_0, w), view!(BlockQ8_0, a)),
        GgmlType::Q2_K => dot::q2_k_q8_k(view!(BlockQ2_K, w), view!(BlockQ8_K, a)),
        GgmlType::Q3_K => dot::q3_k_q8_k(view!(BlockQ3_K, w), view!(BlockQ8_K, a)),
        GgmlType::Q4_K => dot::q4_k_q8_k(view!(BlockQ4_K, w), view!(BlockQ8_K, a)),
        GgmlType::Q5_K => dot::q5_k_q8_k(view!(BlockQ5_K, w), view!(BlockQ8_K, a)),
        GgmlType::Q6_K => dot::q6_k_q8_k(view!(BlockQ6_K, w), view!(BlockQ8_K, a)),
        _ => unsupported("vec_dot", ty),
    }
}

fn f32s(b: &[u8]) -> impl Iterator<Item = f32> + '_ {
    b.chunks_exact(4).map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
}

fn u16s(b: &[u8]) -> impl Iterator<Item = u16> + '_ {
    b.chunks_exact(2).map(|c| u16::from_le_bytes([c[0], c[1]]))
}
