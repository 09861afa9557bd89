//! Runtime dispatch to the SIMD kernels. Each function returns `None`/`false`
//! when no optimised kernel applies, and the caller falls back to
//! `crate::reference`. Lengths were validated by the caller.

use crate::GgmlType;

pub(crate) fn name() -> &'static str {
    "scalar"
}

pub(crate) fn vec_dot(_ty: GgmlType, _n: usize, _w: &[u8], _a: &[u8]) -> Option<f32> {
    None
}

pub(crate) fn vec_dot_rows(_ty: GgmlType, _n: usize, _w: &[u8], _a: &[u8], _out: &mut [f32]) -> bool {
    false
}

#[allow(clippy::too_many_arguments)]
pub(crate) fn matmul_rows(
    _ty: GgmlType,
    _n: usize,
    _w: &[u8],
    _n_w_rows: usize,
    _a: &[u8],
    _n_a_rows: usize,
    _out: &mut [f32],
    _out_stride: usize,
) -> bool {
    false
}

pub(crate) fn quantize_activation(_ty: GgmlType, _src: &[f32], _dst: &mut [u8]) -> bool {
    false
}

pub(crate) fn dequantize_row(_ty: GgmlType, _src: &[u8], _dst: &mut [f32]) -> bool {
    false
}
