//! Scalar dot products of a weight row with an activation row quantized to
//! the weight type's `vec_dot_type`.
//!
//! These are the specification the SIMD kernels are tested against: integer
//! work per block (exact), then one f32 multiply-add per block in block
//! order. The float formulas per block are ggml's (ggml-cpu/quants.c
//! `ggml_vec_dot_*_generic`); the order of the final float sum is not, and
//! cannot matter beyond rounding.

use super::kquants::{q2k_values, q3k_values, q4k_values, q5k_values, q6k_values};
use super::legacy::q5_values;
use crate::blocks::*;

#[inline(always)]
fn dot_i8(a: impl Iterator<Item = i32>, b: &[i8]) -> i32 {
    a.zip(b.iter()).map(|(x, &y)| x * y as i32).sum()
}

/// Element `j` of a Q4_0/Q4_1 block as an unsigned nibble (0..16).
#[inline(always)]
fn nibble(qs: &[u8; 16], j: usize) -> i32 {
    if j < 16 {
        (qs[j] & 0xF) as i32
    } else {
        (qs[j - 16] >> 4) as i32
    }
}

pub fn q4_0_q8_0(w: &[BlockQ4_0], a: &[BlockQ8_0]) -> f32 {
    let mut sum = 0.0f32;
    for (x, y) in w.iter().zip(a) {
        let isum = dot_i8((0..QK).map(|j| nibble(&x.qs, j) - 8), &y.qs);
        sum += x.d.to_f32() * y.d.to_f32() * isum as f32;
    }
    sum
}

pub fn q4_1_q8_1(w: &[BlockQ4_1], a: &[BlockQ8_1]) -> f32 {
    let mut sum = 0.0f32;
    for (x, y) in w.iter().zip(a) {
        let isum = dot_i8((0..QK).map(|j| nibble(&x.qs, j)), &y.qs);
        // x = d*q + m, so sum(x*a) = d*da*sum(q*qa) + m*(da*sum(qa)) = ... + m*s.
        sum += x.d.to_f32() * y.d.to_f32() * isum as f32 + x.m.to_f32() * y.s.to_f32();
    }
    sum
}

pub fn q5_0_q8_0(w: &[BlockQ5_0], a: &[BlockQ8_0]) -> f32 {
    let mut sum = 0.0f32;
    for (x, y) in w.iter().zip(a) {
        let v = q5_values(&x.qs, x.qh);
        let isum = dot_i8(v.iter().map(|&q| q as i32 - 16), &y.qs);
        sum += x.d.to_f32() * y.d.to_f32() * isum as f32;
    }
    sum
}

pub fn q5_1_q8_1(w: &[BlockQ5_1], a: &[BlockQ8_1]) -> f32 {
    let mut sum = 0.0f32;
    for (x, y) in w.iter().zip(a) {
        let v = q5_values(&x.qs, x.qh);
        let isum = dot_i8(v.iter().map(|&q| q as i32), &y.qs);
        sum += x.d.to_f32() * y.d.to_f32() * isum as f32 + x.m.to_f32() * y.s.to_f32();
    }
    sum
}

pub fn q8_0_q8_0(w: &[BlockQ8_0], a: &[BlockQ8_0]) -> f32 {
    let mut sum = 0.0f32;
    for (x, y) in w.iter().zip(a) {
        let isum = dot_i8(x.qs.iter().map(|&q| q as i32), &y.qs);
        sum += x.d.to_f32() * y.d.to_f32() * isum as f32;
    }
    sum
}

/// Sum of bsums over sub-block `j` of `len` elements (16 or 32).
#[inline(always)]
fn bsum(y: &BlockQ8_K, j: usize, len: usize) -> i32 {
    let per = len / 16;
    (0..per).map(|k| y.bsums[j * per + k].get() as i32).sum()
}

pub fn q2_k_q8_k(w: &[BlockQ2_K], a: &[BlockQ8_K]) -> f32 {
    let mut sum = 0.0f32;
    for (x, y) in w.iter().zip(a) {
        let q = q2k_values(x);
        let mut isum = 0i32;
        let mut summs = 0i32;
        for j in 0..16 {
            let sc = x.scales[j];
            let s = dot_i8(q[16 * j..16 * j + 16].iter().map(|&v| v as i32), &y.qs[16 * j..16 * j + 16]);
            isum += (sc & 0xF) as i32 * s;
            summs += (sc >> 4) as i32 * bsum(y, j, 16);
        }
        let da = y.d.get();
        // x = d*sc*q - dmin*m  =>  sum = da*d*isum - da*dmin*summs.
        sum += da * x.d.to_f32() * isum as f32 - da * x.dmin.to_f32() * summs as f32;
    }
    sum
}

pub fn q3_k_q8_k(w: &[BlockQ3_K], a: &[BlockQ8_K]) -> f32 {
    let mut sum = 0.0f32;
    for (x, y) in w.iter().zip(a) {
        let q = q3k_values(x);
        let sc = q3k_scales(&x.scales);
        let mut isum = 0i32;
        for j in 0..16 {
            let s = dot_i8(q[16 * j..16 * j + 16].iter().map(|&v| v as i32), &y.qs[16 * j..16 * j + 16]);
            isum += (sc[j] as i32 - 32) * s;
        }
        sum += x.d.to_f32() * y.d.get() * isum as f32;
    }
    sum
}

pub fn q4_k_q8_k(w: &[BlockQ4_K], a: &[BlockQ8_K]) -> f32 {
    let mut sum = 0.0f32;
    for (x, y) in w.iter().zip(a) {
        let q = q4k_values(x);
        let (sc, m) = scales_mins_k4(&x.scales);
        let mut isum = 0i32;
        let mut summs = 0i32;
        for j in 0..8 {
            let s = dot_i8(q[32 * j..32 * j + 32].iter().map(|&v| v as i32), &y.qs[32 * j..32 * j + 32]);
            isum += sc[j] as i32 * s;
            summs += m[j] as i32 * bsum(y, j, 32);
        }
        let da = y.d.get();
        sum += x.d.to_f32() * da * isum as f32 - x.dmin.to_f32() * da * summs as f32;
    }
    sum
}

pub fn q5_k_q8_k(w: &[BlockQ5_K], a: &[BlockQ8_K]) -> f32 {
    let mut sum = 0.0f32;
    for (x, y) in w.iter().zip(a) {
        let q = q5k_values(x);
        let (sc, m) = scales_mins_k4(&x.scales);
        let mut isum = 0i32;
        let mut summs = 0i32;
        for j in 0..8 {
            let s = dot_i8(q[32 * j..32 * j + 32].iter().map(|&v| v as i32), &y.qs[32 * j..32 * j + 32]);
            isum += sc[j] as i32 * s;
            summs += m[j] as i32 * bsum(y, j, 32);
        }
        let da = y.d.get();
        sum += x.d.to_f32() * da * isum as f32 - x.dmin.to_f32() * da * summs as f32;
    }
    sum
}

pub fn q6_k_q8_k(w: &[BlockQ6_K], a: &[BlockQ8_K]) -> f32 {
    let mut sum = 0.0f32;
    for (x, y) in w.iter().zip(a) {
        let q = q6k_values(x);
        let mut isum = 0i32;
        for j in 0..16 {
            let s = dot_i8(q[16 * j..16 * j + 16].iter().map(|&v| v as i32 - 32), &y.qs[16 * j..16 * j + 16]);
            isum += x.scales[j] as i32 * s;
        }
        sum += x.d.to_f32() * y.d.get() * isum as f32;
    }
    sum
}

/// f32/f16/bf16 dots: products in f32 (exact for f16/bf16 inputs, since a
/// product of two 11- or 8-bit significands fits f32), sum in f64 like
/// ggml's scalar `ggml_vec_dot_f16` (`ggml_float`).
pub fn float_dot(w: impl Iterator<Item = f32>, a: impl Iterator<Item = f32>) -> f32 {
    let mut sum = 0.0f64;
    for (x, y) in w.zip(a) {
        sum += (x * y) as f64;
    }
    sum as f32
}
