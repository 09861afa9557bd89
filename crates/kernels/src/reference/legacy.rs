//! Q4_0, Q4_1, Q5_0, Q5_1, Q8_0, Q8_1: quantize (ggml `_ref`) and dequantize.
//!
//! Every arithmetic step is written in the order ggml-quants.c evaluates it,
//! because the quantized bytes must match `llama-quantize` exactly. In
//! particular nothing here may be fused into an FMA (Rust never contracts
//! `a*b + c` on its own; ggml-base is compiled without FMA either).

use crate::blocks::*;

/// C's float → small-int conversion as it happens on x86-64 (`cvttss2si`):
/// truncation toward zero, and the "integer indefinite" value `i32::MIN` for
/// NaN and out-of-range inputs. The caller then truncates to 8 bits like the
/// C assignment does. Rust's `as i32` saturates instead, which differs for
/// large positive values, so it is not used directly.
#[inline(always)]
pub(crate) fn c_trunc(v: f32) -> i32 {
    if v.is_nan() || !(-2147483648.0..2147483648.0).contains(&v) {
        i32::MIN
    } else {
        v as i32
    }
}

/// Largest |x| and the signed value it came from, first occurrence winning
/// (`if (amax < fabsf(v))`), as in quantize_row_q4_0_ref.
#[inline(always)]
fn signed_absmax(x: &[f32]) -> f32 {
    let mut amax = 0.0f32;
    let mut max = 0.0f32;
    for &v in x {
        if amax < v.abs() {
            amax = v.abs();
            max = v;
        }
    }
    max
}

#[inline(always)]
fn min_max(x: &[f32]) -> (f32, f32) {
    let mut min = f32::MAX;
    let mut max = -f32::MAX;
    for &v in x {
        if v < min {
            min = v;
        }
        if v > max {
            max = v;
        }
    }
    (min, max)
}

#[inline(always)]
fn inv(d: f32) -> f32 {
    // `d ? 1.0f/d : 0.0f` — NaN counts as true in C, and `!= 0.0` is true
    // for NaN in Rust too.
    if d != 0.0 {
        1.0 / d
    } else {
        0.0
    }
}

pub fn quantize_q4_0(x: &[f32], y: &mut [BlockQ4_0]) {
    for (xb, yb) in x.chunks_exact(QK).zip(y.iter_mut()) {
        let max = signed_absmax(xb);
        let d = max / -8.0;
        let id = inv(d);
        yb.d = F16::from_f32(d);
        for j in 0..16 {
            let x0 = xb[j] * id;
            let x1 = xb[j + 16] * id;
            let xi0 = (c_trunc(x0 + 8.5) as i8 as i32).min(15) as u8;
            let xi1 = (c_trunc(x1 + 8.5) as i8 as i32).min(15) as u8;
            yb.qs[j] = xi0 | (((xi1 as u32) << 4) as u8);
        }
    }
}

pub fn quantize_q4_1(x: &[f32], y: &mut [BlockQ4_1]) {
    for (xb, yb) in x.chunks_exact(QK).zip(y.iter_mut()) {
        let (min, max) = min_max(xb);
        let d = (max - min) / 15.0;
        let id = inv(d);
        yb.d = F16::from_f32(d);
        yb.m = F16::from_f32(min);
        for j in 0..16 {
            let x0 = (xb[j] - min) * id;
            let x1 = (xb[j + 16] - min) * id;
            let xi0 = (c_trunc(x0 + 0.5) as i8 as i32).min(15) as u8;
            let xi1 = (c_trunc(x1 + 0.5) as i8 as i32).min(15) as u8;
            yb.qs[j] = xi0 | (((xi1 as u32) << 4) as u8);
        }
    }
}

pub fn quantize_q5_0(x: &[f32], y: &mut [BlockQ5_0]) {
    for (xb, yb) in x.chunks_exact(QK).zip(y.iter_mut()) {
        let max = signed_absmax(xb);
        let d = max / -16.0;
        let id = inv(d);
        yb.d = F16::from_f32(d);
        let mut qh = 0u32;
        for j in 0..16 {
            let x0 = xb[j] * id;
            let x1 = xb[j + 16] * id;
            let xi0 = (c_trunc(x0 + 16.5) as i8 as i32).min(31) as u8;
            let xi1 = (c_trunc(x1 + 16.5) as i8 as i32).min(31) as u8;
            yb.qs[j] = (xi0 & 0x0F) | ((xi1 & 0x0F) << 4);
            qh |= (((xi0 & 0x10) >> 4) as u32) << j;
            qh |= (((xi1 & 0x10) >> 4) as u32) << (j + 16);
        }
        yb.qh = qh.to_le_bytes();
    }
}

pub fn quantize_q5_1(x: &[f32], y: &mut [BlockQ5_1]) {
    for (xb, yb) in x.chunks_exact(QK).zip(y.iter_mut()) {
        let (min, max) = min_max(xb);
        let d = (max - min) / 31.0;
        let id = inv(d);
        yb.d = F16::from_f32(d);
        yb.m = F16::from_f32(min);
        let mut qh = 0u32;
        for j in 0..16 {
            let x0 = (xb[j] - min) * id;
            let x1 = (xb[j + 16] - min) * id;
            // `(uint8_t)(x0 + 0.5f)`: no clamp in ggml here.
            let xi0 = c_trunc(x0 + 0.5) as u8;
            let xi1 = c_trunc(x1 + 0.5) as u8;
            yb.qs[j] = (xi0 & 0x0F) | ((xi1 & 0x0F) << 4);
            qh |= (((xi0 & 0x10) >> 4) as u32) << j;
            qh |= (((xi1 & 0x10) >> 4) as u32) << (j + 16);
        }
        yb.qh = qh.to_le_bytes();
    }
}

/// `amax = MAX(amax, fabsf(v))` with C's MAX macro (`a > b ? a : b`).
#[inline(always)]
fn c_absmax(x: &[f32]) -> f32 {
    let mut amax = 0.0f32;
    for &v in x {
        let a = v.abs();
        amax = if amax > a { amax } else { a };
    }
    amax
}

pub fn quantize_q8_0(x: &[f32], y: &mut [BlockQ8_0]) {
    for (xb, yb) in x.chunks_exact(QK).zip(y.iter_mut()) {
        let amax = c_absmax(xb);
        let d = amax / 127.0;
        let id = inv(d);
        yb.d = F16::from_f32(d);
        for j in 0..QK {
            // roundf: half away from zero, like f32::round.
            yb.qs[j] = c_trunc((xb[j] * id).round()) as i8;
        }
    }
}

pub fn quantize_q8_1(x: &[f32], y: &mut [BlockQ8_1]) {
    for (xb, yb) in x.chunks_exact(QK).zip(y.iter_mut()) {
        let amax = c_absmax(xb);
        let d = amax / 127.0;
        let id = inv(d);
        yb.d = F16::from_f32(d);
        let mut sum = 0i32;
        for j in 0..16 {
            let v0 = xb[j] * id;
            let v1 = xb[j + 16] * id;
            yb.qs[j] = c_trunc(v0.round()) as i8;
            yb.qs[j + 16] = c_trunc(v1.round()) as i8;
            sum += yb.qs[j] as i32 + yb.qs[j + 16] as i32;
        }
        yb.s = F16::from_f32(sum as f32 * d);
    }
}

pub fn dequantize_q4_0(x: &[BlockQ4_0], y: &mut [f32]) {
    for (b, yb) in x.iter().zip(y.chunks_exact_mut(QK)) {
        let d = b.d.to_f32();
        for j in 0..16 {
            yb[j] = ((b.qs[j] & 0x0F) as i32 - 8) as f32 * d;
            yb[j + 16] = ((b.qs[j] >> 4) as i32 - 8) as f32 * d;
        }
    }
}

pub fn dequantize_q4_1(x: &[BlockQ4_1], y: &mut [f32]) {
    for (b, yb) in x.iter().zip(y.chunks_exact_mut(QK)) {
        let d = b.d.to_f32();
        let m = b.m.to_f32();
        for j in 0..16 {
            yb[j] = (b.qs[j] & 0x0F) as f32 * d + m;
            yb[j + 16] = (b.qs[j] >> 4) as f32 * d + m;
        }
    }
}

/// The 5-bit values of a Q5_0/Q5_1 block, in element order (0..32).
#[inline(always)]
pub(crate) fn q5_values(qs: &[u8; 16], qh: [u8; 4]) -> [u8; 32] {
    let qh = u32::from_le_bytes(qh);
    let mut v = [0u8; 32];
    for j in 0..16 {
        v[j] = (qs[j] & 0x0F) | ((((qh >> j) & 1) as u8) << 4);
        v[j + 16] = (qs[j] >> 4) | ((((qh >> (j + 16)) & 1) as u8) << 4);
    }
    v
}

pub fn dequantize_q5_0(x: &[BlockQ5_0], y: &mut [f32]) {
    for (b, yb) in x.iter().zip(y.chunks_exact_mut(QK)) {
        let d = b.d.to_f32();
        for (o, q) in yb.iter_mut().zip(q5_values(&b.qs, b.qh)) {
            *o = (q as i32 - 16) as f32 * d;
        }
    }
}

pub fn dequantize_q5_1(x: &[BlockQ5_1], y: &mut [f32]) {
    for (b, yb) in x.iter().zip(y.chunks_exact_mut(QK)) {
        let d = b.d.to_f32();
        let m = b.m.to_f32();
        for (o, q) in yb.iter_mut().zip(q5_values(&b.qs, b.qh)) {
            *o = q as f32 * d + m;
        }
    }
}

pub fn dequantize_q8_0(x: &[BlockQ8_0], y: &mut [f32]) {
    for (b, yb) in x.iter().zip(y.chunks_exact_mut(QK)) {
        let d = b.d.to_f32();
        for (o, &q) in yb.iter_mut().zip(b.qs.iter()) {
            *o = q as f32 * d;
        }
    }
}

/// ggml has no `to_float` for Q8_1 (it only ever holds activations); this is
/// the obvious `d * q`, provided for tests and debugging.
pub fn dequantize_q8_1(x: &[BlockQ8_1], y: &mut [f32]) {
    for (b, yb) in x.iter().zip(y.chunks_exact_mut(QK)) {
        let d = b.d.to_f32();
        for (o, &q) in yb.iter_mut().zip(b.qs.iter()) {
            *o = q as f32 * d;
        }
    }
}

/// Activation quantizer for Q8_0 with ggml-cpu's x86 semantics
/// (ggml-cpu/arch/x86/quants.c `quantize_row_q8_0`), which differ from
/// `quantize_row_q8_0_ref` in two ways: the multiplier is `127/amax` rather
/// than `1/(amax/127)`, and rounding is to nearest EVEN (`_mm256_round_ps`)
/// rather than half away from zero. llama.cpp on x86 quantizes activations
/// this way, so Hearth does too, on every architecture (on aarch64 ggml uses
/// `1/d` with ties-to-even instead, which can differ by one step in rare
/// cases; Hearth keeps one definition so results do not depend on the host).
pub fn quantize_act_q8_0(x: &[f32], y: &mut [BlockQ8_0]) {
    for (xb, yb) in x.chunks_exact(QK).zip(y.iter_mut()) {
        let (d, id) = act_scale(xb);
        yb.d = F16::from_bits(crate::fp::f32_to_f16_keep_nan(d));
        for j in 0..QK {
            yb.qs[j] = sat_i8((xb[j] * id).round_ties_even());
        }
    }
}

/// Activation quantizer for Q8_1, x86 ggml-cpu semantics as
/// [`quantize_act_q8_0`]; `s = f16(d * sum(q))`.
pub fn quantize_act_q8_1(x: &[f32], y: &mut [BlockQ8_1]) {
    for (xb, yb) in x.chunks_exact(QK).zip(y.iter_mut()) {
        let (d, id) = act_scale(xb);
        yb.d = F16::from_bits(crate::fp::f32_to_f16_keep_nan(d));
        let mut sum = 0i32;
        for j in 0..QK {
            // ggml sums the 32-bit conversions (before the saturating packs)
            // with wrapping adds. They differ from the stored i8 only when
            // `127/amax` overflows (an all-subnormal block): every lane is
            // then i32::MIN and the sum wraps to 0, so `s` is +0.
            let i = c_trunc((xb[j] * id).round_ties_even());
            yb.qs[j] = i.clamp(-128, 127) as i8;
            sum = sum.wrapping_add(i);
        }
        yb.s = F16::from_bits(crate::fp::f32_to_f16_keep_nan(d * sum as f32));
    }
}

#[inline(always)]
fn act_scale(xb: &[f32]) -> (f32, f32) {
    // max of |x| (order does not matter for finite inputs).
    let mut amax = 0.0f32;
    for &v in xb {
        amax = amax.max(v.abs());
    }
    let d = amax / 127.0;
    let id = if amax != 0.0 { 127.0 / amax } else { 0.0 };
    (d, id)
}

/// `_mm256_cvtps_epi32` + saturating packs: in-range values convert exactly;
/// NaN becomes i32::MIN and saturates to -128.
#[inline(always)]
fn sat_i8(v: f32) -> i8 {
    let i = c_trunc(v); // v is already integral
    i.clamp(-128, 127) as i8
}
