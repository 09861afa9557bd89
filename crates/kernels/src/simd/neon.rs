//! aarch64 NEON kernels (baseline NEON only: the `sdot` dot-product
//! extension's intrinsics are not stable in Rust yet, see "Absent" in the
//! crate docs).
//!
//! # Safety conventions
//!
//! As for the x86 module: every `unsafe fn` requires NEON (mandatory on
//! aarch64, confirmed by `super::isa()`) and pointer arguments covering the
//! bytes implied by the block count, which the safe wrappers in `super`
//! derive from slices validated by `crate::check_row`. All loads are
//! unaligned-safe (`vld1q_*` has no alignment requirement).
//!
//! Integer products use `vmull_s8` (i8 x i8 → i16, exact) and pairwise
//! accumulation into i32 (`vpadalq_s16`), so unlike the x86 path there is no
//! saturation anywhere. Float conversions that NEON performs differently from
//! x86 on non-finite or overflowing values (`vcvtnq_s32_f32` saturates where
//! `cvtps2dq` returns INT_MIN) are routed to the scalar reference per block,
//! keeping activations byte-identical to `reference::quantize_activation`
//! for every input.

#![allow(unsafe_op_in_unsafe_fn)]
#![allow(clippy::missing_safety_doc)]
// Index loops mirror the block layouts' offsets (16*part, 32*h, ...).
#![allow(clippy::needless_range_loop)]

use std::arch::aarch64::*;
use std::arch::asm;

use crate::blocks::{BlockQ8_0, BlockQ8_1, BlockQ8_K};
use crate::reference::{kquants, legacy};

#[inline(always)]
unsafe fn rd16(p: *const u8) -> u16 {
    (p as *const u16).read_unaligned()
}
#[inline(always)]
unsafe fn rd32(p: *const u8) -> u32 {
    (p as *const u32).read_unaligned()
}
#[inline(always)]
unsafe fn rdf32(p: *const u8) -> f32 {
    (p as *const f32).read_unaligned()
}

/// binary16 bits → f32 with the FCVT instruction (exact).
#[inline(always)]
unsafe fn f16s(p: *const u8) -> f32 {
    let r: f32;
    // The h register is the low 16 bits of the s register holding `bits`.
    asm!("fcvt {0:s}, {1:h}", out(vreg) r, in(vreg) f32::from_bits(rd16(p) as u32), options(pure, nomem, nostack));
    r
}

/// Four binary16 → four f32 (FCVTL, exact).
#[inline(always)]
unsafe fn f16x4(p: *const u8) -> float32x4_t {
    let h = vld1_u16(p as *const u16);
    let r: float32x4_t;
    asm!("fcvtl {0:v}.4s, {1:v}.4h", out(vreg) r, in(vreg) h, options(pure, nomem, nostack));
    r
}

/// Four f32 → four binary16 bits (FCVTN: round to nearest even under the
/// default FPCR, NaN payload kept and quietened — the F16C semantics).
#[inline(always)]
unsafe fn to_f16x4(v: float32x4_t) -> uint16x4_t {
    let r: uint16x4_t;
    asm!("fcvtn {0:v}.4h, {1:v}.4s", out(vreg) r, in(vreg) v, options(pure, nomem, nostack));
    r
}

#[inline(always)]
unsafe fn bf16x4(p: *const u8) -> float32x4_t {
    vreinterpretq_f32_u32(vshll_n_u16::<16>(vld1_u16(p as *const u16)))
}

/// acc += sum of products of 16 signed bytes, pairwise into 4 i32 lanes.
#[inline(always)]
unsafe fn dot16(acc: int32x4_t, a: int8x16_t, b: int8x16_t) -> int32x4_t {
    let lo = vmull_s8(vget_low_s8(a), vget_low_s8(b));
    let hi = vmull_high_s8(a, b);
    vpadalq_s16(vpadalq_s16(acc, lo), hi)
}

/// 16 nibble bytes → (low nibbles, high nibbles) as signed bytes 0..16.
#[inline(always)]
unsafe fn nibbles(p: *const u8) -> (int8x16_t, int8x16_t) {
    let q = vld1q_u8(p);
    (vreinterpretq_s8_u8(vandq_u8(q, vdupq_n_u8(0x0F))), vreinterpretq_s8_u8(vshrq_n_u8::<4>(q)))
}

type Tile<const R: usize, const T: usize> = [[f32; T]; R];

#[inline(always)]
unsafe fn finish<const R: usize, const T: usize>(acc: &[[float32x4_t; T]; R]) -> Tile<R, T> {
    let mut out = [[0f32; T]; R];
    for r in 0..R {
        for t in 0..T {
            out[r][t] = vaddvq_f32(acc[r][t]);
        }
    }
    out
}

// ------------------------------------------------------------------ Q4_0, Q8_0

#[target_feature(enable = "neon")]
pub(crate) unsafe fn tile_q4_0<const R: usize, const T: usize>(nb: usize, w: [*const u8; R], a: [*const u8; T]) -> Tile<R, T> {
    let eight = vdupq_n_s8(8);
    let mut acc = [[vdupq_n_f32(0.0); T]; R];
    for b in 0..nb {
        let mut a0 = [vdupq_n_s8(0); T];
        let mut a1 = [vdupq_n_s8(0); T];
        let mut da = [0f32; T];
        for t in 0..T {
            let p = a[t].add(34 * b);
            da[t] = f16s(p);
            a0[t] = vld1q_s8(p.add(2) as *const i8);
            a1[t] = vld1q_s8(p.add(18) as *const i8);
        }
        for r in 0..R {
            let p = w[r].add(18 * b);
            let dw = f16s(p);
            let (lo, hi) = nibbles(p.add(2));
            let (lo, hi) = (vsubq_s8(lo, eight), vsubq_s8(hi, eight));
            for t in 0..T {
                let s = dot16(dot16(vdupq_n_s32(0), lo, a0[t]), hi, a1[t]);
                acc[r][t] = vfmaq_n_f32(acc[r][t], vcvtq_f32_s32(s), dw * da[t]);
            }
        }
    }
    finish(&acc)
}

#[target_feature(enable = "neon")]
pub(crate) unsafe fn tile_q8_0<const R: usize, const T: usize>(nb: usize, w: [*const u8; R], a: [*const u8; T]) -> Tile<R, T> {
    let mut acc = [[vdupq_n_f32(0.0); T]; R];
    for b in 0..nb {
        let mut a0 = [vdupq_n_s8(0); T];
        let mut a1 = [vdupq_n_s8(0); T];
        let mut da = [0f32; T];
        for t in 0..T {
            let p = a[t].add(34 * b);
            da[t] = f16s(p);
            a0[t] = vld1q_s8(p.add(2) as *const i8);
            a1[t] = vld1q_s8(p.add(18) as *const i8);
        }
        for r in 0..R {
            let p = w[r].add(34 * b);
            let dw = f16s(p);
            let (w0, w1) = (vld1q_s8(p.add(2) as *const i8), vld1q_s8(p.add(18) as *const i8));
            for t in 0..T {
                let s = dot16(dot16(vdupq_n_s32(0), w0, a0[t]), w1, a1[t]);
                acc[r][t] = vfmaq_n_f32(acc[r][t], vcvtq_f32_s32(s), dw * da[t]);
            }
        }
    }
    finish(&acc)
}

// ---------------------------------------------------------- Q4_1, Q5_0, Q5_1

#[target_feature(enable = "neon")]
pub(crate) unsafe fn q4_1(nb: usize, w: *const u8, a: *const u8) -> f32 {
    let mut acc = vdupq_n_f32(0.0);
    let mut summ = 0f32;
    for b in 0..nb {
        let (x, y) = (w.add(20 * b), a.add(36 * b));
        let (lo, hi) = nibbles(x.add(4));
        let s = dot16(dot16(vdupq_n_s32(0), lo, vld1q_s8(y.add(4) as *const i8)), hi, vld1q_s8(y.add(20) as *const i8));
        acc = vfmaq_n_f32(acc, vcvtq_f32_s32(s), f16s(x) * f16s(y));
        summ += f16s(x.add(2)) * f16s(y.add(2));
    }
    vaddvq_f32(acc) + summ
}

/// Bit j of the little-endian u32 at `p` (j = 0..32) as 0x10 in byte j:
/// (bytes for elements 0..16, bytes for 16..32).
#[inline(always)]
unsafe fn q5_high(p: *const u8) -> (uint8x16_t, uint8x16_t) {
    let qh = rd32(p);
    let bits = vreinterpretq_u8_u64(vdupq_n_u64(0x8040_2010_0804_0201));
    let spread = |b0: u32, b1: u32| {
        let v = vcombine_u8(vdup_n_u8(b0 as u8), vdup_n_u8(b1 as u8));
        vandq_u8(vtstq_u8(v, bits), vdupq_n_u8(0x10))
    };
    (spread(qh, qh >> 8), spread(qh >> 16, qh >> 24))
}

#[target_feature(enable = "neon")]
pub(crate) unsafe fn q5_0(nb: usize, w: *const u8, a: *const u8) -> f32 {
    let mut acc = vdupq_n_f32(0.0);
    let sixteen = vdupq_n_s8(16);
    for b in 0..nb {
        let (x, y) = (w.add(22 * b), a.add(34 * b));
        let (h0, h1) = q5_high(x.add(2));
        let (lo, hi) = nibbles(x.add(6));
        let lo = vsubq_s8(vorrq_s8(lo, vreinterpretq_s8_u8(h0)), sixteen);
        let hi = vsubq_s8(vorrq_s8(hi, vreinterpretq_s8_u8(h1)), sixteen);
        let s = dot16(dot16(vdupq_n_s32(0), lo, vld1q_s8(y.add(2) as *const i8)), hi, vld1q_s8(y.add(18) as *const i8));
        acc = vfmaq_n_f32(acc, vcvtq_f32_s32(s), f16s(x) * f16s(y));
    }
    vaddvq_f32(acc)
}

#[target_feature(enable = "neon")]
pub(crate) unsafe fn q5_1(nb: usize, w: *const u8, a: *const u8) -> f32 {
    let mut acc = vdupq_n_f32(0.0);
    let mut summ = 0f32;
    for b in 0..nb {
        let (x, y) = (w.add(24 * b), a.add(36 * b));
        let (h0, h1) = q5_high(x.add(4));
        let (lo, hi) = nibbles(x.add(8));
        let lo = vorrq_s8(lo, vreinterpretq_s8_u8(h0));
        let hi = vorrq_s8(hi, vreinterpretq_s8_u8(h1));
        let s = dot16(dot16(vdupq_n_s32(0), lo, vld1q_s8(y.add(4) as *const i8)), hi, vld1q_s8(y.add(20) as *const i8));
        acc = vfmaq_n_f32(acc, vcvtq_f32_s32(s), f16s(x) * f16s(y));
        summ += f16s(x.add(2)) * f16s(y.add(2));
    }
    vaddvq_f32(acc) + summ
}

// --------------------------------------------------------------------- K-quants

#[inline(always)]
unsafe fn q8k(a: *const u8, b: usize) -> *const u8 {
    a.add(292 * b)
}

/// Q4_K/Q5_K scales and mins (see blocks::scale_min_k4), four bytes at a time.
#[inline(always)]
unsafe fn k4_scales(p: *const u8) -> ([u8; 8], [u8; 8]) {
    let (w0, w1, w2) = (rd32(p), rd32(p.add(4)), rd32(p.add(8)));
    let sc_lo = w0 & 0x3f3f_3f3f;
    let mn_lo = w1 & 0x3f3f_3f3f;
    let sc_hi = (w2 & 0x0f0f_0f0f) | (((w0 >> 6) & 0x0303_0303) << 4);
    let mn_hi = ((w2 >> 4) & 0x0f0f_0f0f) | (((w1 >> 6) & 0x0303_0303) << 4);
    let sc = ((sc_hi as u64) << 32 | sc_lo as u64).to_le_bytes();
    let mn = ((mn_hi as u64) << 32 | mn_lo as u64).to_le_bytes();
    (sc, mn)
}

/// sum_j m_j * (bsums[2j] + bsums[2j+1]).
#[inline(always)]
unsafe fn mins_dot(mn: [u8; 8], y: *const u8) -> i32 {
    let bs = vld1q_s16_x2(y.add(260) as *const i16);
    let pairs = vpaddq_s16(bs.0, bs.1); // 8 sums of 32 quants
    let m = vreinterpretq_s16_u16(vmovl_u8(vld1_u8(mn.as_ptr())));
    let p = vmull_s16(vget_low_s16(pairs), vget_low_s16(m));
    let p = vmlal_high_s16(p, pairs, m);
    vaddvq_s32(p)
}

#[target_feature(enable = "neon")]
pub(crate) unsafe fn tile_q4_k<const R: usize, const T: usize>(nb: usize, w: [*const u8; R], a: [*const u8; T]) -> Tile<R, T> {
    let mut acc = [[0f32; T]; R];
    for b in 0..nb {
        for r in 0..R {
            let x = w[r].add(144 * b);
            let (d, dmin) = (f16s(x), f16s(x.add(2)));
            let (sc, mn) = k4_scales(x.add(4));
            let mut sumi = [vdupq_n_s32(0); T];
            for c in 0..4 {
                let (l0, h0) = nibbles(x.add(16 + 32 * c));
                let (l1, h1) = nibbles(x.add(32 + 32 * c));
                for t in 0..T {
                    let y = q8k(a[t], b).add(4 + 64 * c) as *const i8;
                    let pl = dot16(dot16(vdupq_n_s32(0), l0, vld1q_s8(y)), l1, vld1q_s8(y.add(16)));
                    let ph = dot16(dot16(vdupq_n_s32(0), h0, vld1q_s8(y.add(32))), h1, vld1q_s8(y.add(48)));
                    sumi[t] = vmlaq_n_s32(vmlaq_n_s32(sumi[t], pl, sc[2 * c] as i32), ph, sc[2 * c + 1] as i32);
                }
            }
            for t in 0..T {
                let y = q8k(a[t], b);
                let da = rdf32(y);
                acc[r][t] += d * da * vaddvq_s32(sumi[t]) as f32 - dmin * da * mins_dot(mn, y) as f32;
            }
        }
    }
    acc
}

#[target_feature(enable = "neon")]
pub(crate) unsafe fn q5_k(nb: usize, w: *const u8, a: *const u8) -> f32 {
    let mut acc = 0f32;
    for b in 0..nb {
        let (x, y) = (w.add(176 * b), q8k(a, b));
        let (sc, mn) = k4_scales(x.add(4));
        let qh = [vld1q_u8(x.add(16)), vld1q_u8(x.add(32))];
        let mut sumi = vdupq_n_s32(0);
        for c in 0..4 {
            let mut p = [vdupq_n_s32(0); 2];
            for half in 0..2 {
                // Element 64c + 32*half + 16k + l uses qs[32c + 16k + l] and
                // bit (2c + half) of qh[16k + l].
                let bit = vdupq_n_u8(1 << (2 * c + half));
                for k in 0..2 {
                    let q = vld1q_u8(x.add(48 + 32 * c + 16 * k));
                    let v = if half == 0 { vandq_u8(q, vdupq_n_u8(0x0F)) } else { vshrq_n_u8::<4>(q) };
                    let hb = vandq_u8(vtstq_u8(qh[k], bit), vdupq_n_u8(0x10));
                    let v = vreinterpretq_s8_u8(vorrq_u8(v, hb));
                    let yy = vld1q_s8(y.add(4 + 64 * c + 32 * half + 16 * k) as *const i8);
                    p[half] = dot16(p[half], v, yy);
                }
            }
            sumi = vmlaq_n_s32(vmlaq_n_s32(sumi, p[0], sc[2 * c] as i32), p[1], sc[2 * c + 1] as i32);
        }
        let da = rdf32(y);
        acc += f16s(x) * da * vaddvq_s32(sumi) as f32 - f16s(x.add(2)) * da * mins_dot(mn, y) as f32;
    }
    acc
}

/// The 64 signed six-bit values (q − 32) of half `h` of a Q6_K block as four
/// 16-byte vectors per 32 elements: [k][part] = elements 128h + 32k + 16part.
#[inline(always)]
unsafe fn q6k_half(x: *const u8, h: usize) -> [[int8x16_t; 2]; 4] {
    let m4 = vdupq_n_u8(0x0F);
    let m3 = vdupq_n_u8(0x03);
    let mut out = [[vdupq_n_s8(0); 2]; 4];
    for part in 0..2 {
        let ql0 = vld1q_u8(x.add(64 * h + 16 * part));
        let ql1 = vld1q_u8(x.add(64 * h + 32 + 16 * part));
        let qh = vld1q_u8(x.add(128 + 32 * h + 16 * part));
        let v = [
            vorrq_u8(vandq_u8(ql0, m4), vshlq_n_u8::<4>(vandq_u8(qh, m3))),
            vorrq_u8(vandq_u8(ql1, m4), vshlq_n_u8::<2>(vandq_u8(qh, vdupq_n_u8(0x0C)))),
            vorrq_u8(vshrq_n_u8::<4>(ql0), vandq_u8(qh, vdupq_n_u8(0x30))),
            vorrq_u8(vshrq_n_u8::<4>(ql1), vshrq_n_u8::<2>(vandq_u8(qh, vdupq_n_u8(0xC0)))),
        ];
        for k in 0..4 {
            out[k][part] = vsubq_s8(vreinterpretq_s8_u8(v[k]), vdupq_n_s8(32));
        }
    }
    out
}

#[target_feature(enable = "neon")]
pub(crate) unsafe fn tile_q6_k<const R: usize, const T: usize>(nb: usize, w: [*const u8; R], a: [*const u8; T]) -> Tile<R, T> {
    let mut acc = [[0f32; T]; R];
    for b in 0..nb {
        for r in 0..R {
            let x = w[r].add(210 * b);
            let d = f16s(x.add(208));
            let sc = x.add(192) as *const i8;
            let mut sumi = [vdupq_n_s32(0); T];
            for h in 0..2 {
                let q = q6k_half(x, h);
                for (k, q) in q.iter().enumerate() {
                    for (part, q) in q.iter().enumerate() {
                        let s = *sc.add(8 * h + 2 * k + part) as i32;
                        for t in 0..T {
                            let y = q8k(a[t], b).add(4 + 128 * h + 32 * k + 16 * part) as *const i8;
                            sumi[t] = vmlaq_n_s32(sumi[t], dot16(vdupq_n_s32(0), *q, vld1q_s8(y)), s);
                        }
                    }
                }
            }
            for t in 0..T {
                acc[r][t] += d * rdf32(q8k(a[t], b)) * vaddvq_s32(sumi[t]) as f32;
            }
        }
    }
    acc
}

#[target_feature(enable = "neon")]
pub(crate) unsafe fn q2_k(nb: usize, w: *const u8, a: *const u8) -> f32 {
    let mut acc = 0f32;
    for b in 0..nb {
        let (x, y) = (w.add(84 * b), q8k(a, b));
        let mut sumi = vdupq_n_s32(0);
        let mut summs = 0i32;
        for j in 0..16 {
            summs += (*x.add(j) >> 4) as i32 * (y.add(260 + 2 * j) as *const i16).read_unaligned() as i32;
        }
        for h in 0..2 {
            for part in 0..2 {
                let qv = vld1q_u8(x.add(16 + 32 * h + 16 * part));
                for k in 0..4 {
                    let q = match k {
                        0 => qv,
                        1 => vshrq_n_u8::<2>(qv),
                        2 => vshrq_n_u8::<4>(qv),
                        _ => vshrq_n_u8::<6>(qv),
                    };
                    let q = vreinterpretq_s8_u8(vandq_u8(q, vdupq_n_u8(3)));
                    let j = 8 * h + 2 * k + part; // sub-block of 16
                    let yy = vld1q_s8(y.add(4 + 128 * h + 32 * k + 16 * part) as *const i8);
                    sumi = vmlaq_n_s32(sumi, dot16(vdupq_n_s32(0), q, yy), (*x.add(j) & 0xF) as i32);
                }
            }
        }
        let da = rdf32(y);
        acc += da * f16s(x.add(80)) * vaddvq_s32(sumi) as f32 - da * f16s(x.add(82)) * summs as f32;
    }
    acc
}

#[target_feature(enable = "neon")]
pub(crate) unsafe fn q3_k(nb: usize, w: *const u8, a: *const u8) -> f32 {
    let mut acc = 0f32;
    for b in 0..nb {
        let (x, y) = (w.add(110 * b), q8k(a, b));
        let mut s12 = [0u8; 12];
        std::ptr::copy_nonoverlapping(x.add(96), s12.as_mut_ptr(), 12);
        let sc = crate::blocks::q3k_scales(&s12);
        let hm = [vld1q_u8(x), vld1q_u8(x.add(16))];
        let mut sumi = vdupq_n_s32(0);
        for h in 0..2 {
            for part in 0..2 {
                let qv = vld1q_u8(x.add(32 + 32 * h + 16 * part));
                for k in 0..4 {
                    let low = match k {
                        0 => qv,
                        1 => vshrq_n_u8::<2>(qv),
                        2 => vshrq_n_u8::<4>(qv),
                        _ => vshrq_n_u8::<6>(qv),
                    };
                    let low = vandq_u8(low, vdupq_n_u8(3));
                    // hmask bit clear → subtract 4.
                    let set = vtstq_u8(hm[part], vdupq_n_u8(1 << (4 * h + k)));
                    let sub = vbicq_u8(vdupq_n_u8(4), set);
                    let q = vsubq_s8(vreinterpretq_s8_u8(low), vreinterpretq_s8_u8(sub));
                    let j = 8 * h + 2 * k + part;
                    let yy = vld1q_s8(y.add(4 + 128 * h + 32 * k + 16 * part) as *const i8);
                    sumi = vmlaq_n_s32(sumi, dot16(vdupq_n_s32(0), q, yy), sc[j] as i32 - 32);
                }
            }
        }
        acc += f16s(x.add(108)) * rdf32(y) * vaddvq_s32(sumi) as f32;
    }
    acc
}

// ------------------------------------------------------------------ float dots

#[target_feature(enable = "neon")]
pub(crate) unsafe fn dot_f32(n: usize, w: *const u8, a: *const u8) -> f32 {
    let (w, a) = (w as *const f32, a as *const f32);
    let mut acc = [vdupq_n_f32(0.0); 4];
    let mut i = 0;
    while i + 16 <= n {
        for (k, acc) in acc.iter_mut().enumerate() {
            *acc = vfmaq_f32(*acc, vld1q_f32(w.add(i + 4 * k)), vld1q_f32(a.add(i + 4 * k)));
        }
        i += 16;
    }
    let mut s = vaddvq_f32(vaddq_f32(vaddq_f32(acc[0], acc[1]), vaddq_f32(acc[2], acc[3])));
    while i < n {
        s += w.add(i).read_unaligned() * a.add(i).read_unaligned();
        i += 1;
    }
    s
}

macro_rules! half_dot {
    ($name:ident, $ld:ident, $scalar:path) => {
        #[target_feature(enable = "neon")]
        pub(crate) unsafe fn $name(n: usize, w: *const u8, a: *const u8) -> f32 {
            let mut acc = [vdupq_n_f32(0.0); 4];
            let mut i = 0;
            while i + 16 <= n {
                for (k, acc) in acc.iter_mut().enumerate() {
                    let o = 2 * (i + 4 * k);
                    *acc = vfmaq_f32(*acc, $ld(w.add(o)), $ld(a.add(o)));
                }
                i += 16;
            }
            let mut s = vaddvq_f32(vaddq_f32(vaddq_f32(acc[0], acc[1]), vaddq_f32(acc[2], acc[3])));
            while i < n {
                s += $scalar(rd16(w.add(2 * i))) * $scalar(rd16(a.add(2 * i)));
                i += 1;
            }
            s
        }
    };
}

half_dot!(dot_f16, f16x4, crate::fp::f16_to_f32);
half_dot!(dot_bf16, bf16x4, crate::fp::bf16_to_f32);

// ----------------------------------------------------------------- dequantize

#[target_feature(enable = "neon")]
pub(crate) unsafe fn dequant_f16(n: usize, src: *const u8, dst: *mut f32) {
    let mut i = 0;
    while i + 4 <= n {
        vst1q_f32(dst.add(i), f16x4(src.add(2 * i)));
        i += 4;
    }
    while i < n {
        *dst.add(i) = crate::fp::f16_to_f32(rd16(src.add(2 * i)));
        i += 1;
    }
}

#[target_feature(enable = "neon")]
pub(crate) unsafe fn dequant_bf16(n: usize, src: *const u8, dst: *mut f32) {
    let mut i = 0;
    while i + 4 <= n {
        vst1q_f32(dst.add(i), bf16x4(src.add(2 * i)));
        i += 4;
    }
    while i < n {
        *dst.add(i) = crate::fp::bf16_to_f32(rd16(src.add(2 * i)));
        i += 1;
    }
}

/// 16 signed bytes → f32 times `d`, stored at `o` (one rounding: exact
/// conversion then one multiply, as the reference).
#[inline(always)]
unsafe fn store16_mul(o: *mut f32, v: int8x16_t, d: f32) {
    let lo = vmovl_s8(vget_low_s8(v));
    let hi = vmovl_high_s8(v);
    for (k, h) in [lo, hi].into_iter().enumerate() {
        vst1q_f32(o.add(8 * k), vmulq_n_f32(vcvtq_f32_s32(vmovl_s16(vget_low_s16(h))), d));
        vst1q_f32(o.add(8 * k + 4), vmulq_n_f32(vcvtq_f32_s32(vmovl_high_s16(h)), d));
    }
}

#[target_feature(enable = "neon")]
pub(crate) unsafe fn dequant_q4_0(nb: usize, src: *const u8, dst: *mut f32) {
    for b in 0..nb {
        let p = src.add(18 * b);
        let d = f16s(p);
        let (lo, hi) = nibbles(p.add(2));
        store16_mul(dst.add(32 * b), vsubq_s8(lo, vdupq_n_s8(8)), d);
        store16_mul(dst.add(32 * b + 16), vsubq_s8(hi, vdupq_n_s8(8)), d);
    }
}

#[target_feature(enable = "neon")]
pub(crate) unsafe fn dequant_q8_0(nb: usize, src: *const u8, dst: *mut f32) {
    for b in 0..nb {
        let p = src.add(34 * b);
        let d = f16s(p);
        store16_mul(dst.add(32 * b), vld1q_s8(p.add(2) as *const i8), d);
        store16_mul(dst.add(32 * b + 16), vld1q_s8(p.add(18) as *const i8), d);
    }
}

/// `d1 * q - m1` as a multiply then a subtract, like the reference.
#[target_feature(enable = "neon")]
pub(crate) unsafe fn dequant_q4_k(nb: usize, src: *const u8, dst: *mut f32) {
    for b in 0..nb {
        let p = src.add(144 * b);
        let (d, dmin) = (f16s(p), f16s(p.add(2)));
        let (sc, mn) = k4_scales(p.add(4));
        for c in 0..4 {
            for k in 0..2 {
                let (lo, hi) = nibbles(p.add(16 + 32 * c + 16 * k));
                for (half, v) in [lo, hi].into_iter().enumerate() {
                    let j = 2 * c + half;
                    let (d1, m1) = (d * sc[j] as f32, dmin * mn[j] as f32);
                    let o = dst.add(256 * b + 64 * c + 32 * half + 16 * k);
                    let w = vmovl_u8(vget_low_u8(vreinterpretq_u8_s8(v)));
                    let w2 = vmovl_high_u8(vreinterpretq_u8_s8(v));
                    for (i, h) in [w, w2].into_iter().enumerate() {
                        for (j2, q) in [vmovl_u16(vget_low_u16(h)), vmovl_high_u16(h)].into_iter().enumerate() {
                            let f = vcvtq_f32_u32(q);
                            vst1q_f32(o.add(8 * i + 4 * j2), vsubq_f32(vmulq_n_f32(f, d1), vdupq_n_f32(m1)));
                        }
                    }
                }
            }
        }
    }
}

#[target_feature(enable = "neon")]
pub(crate) unsafe fn dequant_q6_k(nb: usize, src: *const u8, dst: *mut f32) {
    for b in 0..nb {
        let p = src.add(210 * b);
        let d = f16s(p.add(208));
        for h in 0..2 {
            let q = q6k_half(p, h);
            for (k, q) in q.iter().enumerate() {
                for (part, q) in q.iter().enumerate() {
                    let j = 8 * h + 2 * k + part;
                    let s = d * (*p.add(192 + j) as i8) as f32;
                    store16_mul(dst.add(256 * b + 128 * h + 32 * k + 16 * part), *q, s);
                }
            }
        }
    }
}

// ---------------------------------------------------------------- activations

/// Q8_0/Q8_1 block with the x86 ggml-cpu semantics (`id = 127/amax`, ties
/// to even). Returns None when the block needs the scalar path (non-finite
/// amax or multiplier, where NEON's saturating conversion differs).
#[inline(always)]
unsafe fn q8_block(x: *const f32) -> Option<(f32, int8x16_t, int8x16_t, i32)> {
    let v = [vld1q_f32(x), vld1q_f32(x.add(4)), vld1q_f32(x.add(8)), vld1q_f32(x.add(12)), vld1q_f32(x.add(16)), vld1q_f32(x.add(20)), vld1q_f32(x.add(24)), vld1q_f32(x.add(28))];
    let mut m = vabsq_f32(v[0]);
    for vi in &v[1..] {
        m = vmaxq_f32(m, vabsq_f32(*vi));
    }
    let amax = vmaxvq_f32(m); // NaN-propagating: NaN input → scalar path
    let id = if amax != 0.0 { 127.0 / amax } else { 0.0 };
    if !amax.is_finite() || !id.is_finite() {
        return None;
    }
    let d = amax / 127.0;
    let q: [int32x4_t; 8] = v.map(|vi| vcvtnq_s32_f32(vmulq_n_f32(vi, id)));
    let mut s = q[0];
    for qi in &q[1..] {
        s = vaddq_s32(s, *qi);
    }
    let n16 = |a: int32x4_t, b: int32x4_t| vcombine_s16(vmovn_s32(a), vmovn_s32(b));
    let lo = vcombine_s8(vmovn_s16(n16(q[0], q[1])), vmovn_s16(n16(q[2], q[3])));
    let hi = vcombine_s8(vmovn_s16(n16(q[4], q[5])), vmovn_s16(n16(q[6], q[7])));
    Some((d, lo, hi, vaddvq_s32(s)))
}

#[inline(always)]
unsafe fn f16_bits(x: f32) -> u16 {
    vget_lane_u16::<0>(to_f16x4(vdupq_n_f32(x)))
}

#[target_feature(enable = "neon")]
pub(crate) unsafe fn act_q8_0(nb: usize, x: *const f32, y: *mut u8) {
    for b in 0..nb {
        let o = y.add(34 * b);
        match q8_block(x.add(32 * b)) {
            Some((d, lo, hi, _)) => {
                (o as *mut u16).write_unaligned(f16_bits(d));
                vst1q_s8(o.add(2) as *mut i8, lo);
                vst1q_s8(o.add(18) as *mut i8, hi);
            }
            None => {
                let src = std::slice::from_raw_parts(x.add(32 * b), 32);
                let dst = &mut *(o as *mut [BlockQ8_0; 1]);
                legacy::quantize_act_q8_0(src, dst);
            }
        }
    }
}

#[target_feature(enable = "neon")]
pub(crate) unsafe fn act_q8_1(nb: usize, x: *const f32, y: *mut u8) {
    for b in 0..nb {
        let o = y.add(36 * b);
        match q8_block(x.add(32 * b)) {
            Some((d, lo, hi, sum)) => {
                (o as *mut u16).write_unaligned(f16_bits(d));
                (o.add(2) as *mut u16).write_unaligned(f16_bits(d * sum as f32));
                vst1q_s8(o.add(4) as *mut i8, lo);
                vst1q_s8(o.add(20) as *mut i8, hi);
            }
            None => {
                let src = std::slice::from_raw_parts(x.add(32 * b), 32);
                let dst = &mut *(o as *mut [BlockQ8_1; 1]);
                legacy::quantize_act_q8_1(src, dst);
            }
        }
    }
}

/// quantize_row_q8_K_ref: vcvtnq (ties to even) equals `nearest_int` for
/// the finite, in-range products this path handles; anything else goes to
/// the scalar reference.
#[target_feature(enable = "neon")]
pub(crate) unsafe fn act_q8_k(nb: usize, x: *const f32, y: *mut u8) {
    for b in 0..nb {
        let xb = x.add(256 * b);
        let o = y.add(292 * b);
        let mut m = vdupq_n_f32(0.0);
        for k in 0..64 {
            m = vmaxq_f32(m, vabsq_f32(vld1q_f32(xb.add(4 * k))));
        }
        let amax = vmaxvq_f32(m);
        let mut max = 0.0f32;
        if amax.is_finite() && amax != 0.0 {
            for i in 0..256 {
                let v = *xb.add(i);
                if v.abs() == amax {
                    max = v;
                    break;
                }
            }
        }
        let iscale = -127.0 / max;
        if max == 0.0 || !iscale.is_finite() {
            // All-zero, non-finite or overflowing block: scalar reference.
            let src = std::slice::from_raw_parts(xb, 256);
            let dst = &mut *(o as *mut [BlockQ8_K; 1]);
            kquants::quantize_q8_k(src, dst);
            continue;
        }
        for g in 0..16 {
            let mut q = [vdupq_n_s32(0); 4];
            for (k, q) in q.iter_mut().enumerate() {
                let v = vmulq_n_f32(vld1q_f32(xb.add(16 * g + 4 * k)), iscale);
                *q = vminq_s32(vcvtnq_s32_f32(v), vdupq_n_s32(127));
            }
            let s = vaddq_s32(vaddq_s32(q[0], q[1]), vaddq_s32(q[2], q[3]));
            (o.add(260 + 2 * g) as *mut i16).write_unaligned(vaddvq_s32(s) as i16);
            let n16 = |a: int32x4_t, b: int32x4_t| vcombine_s16(vmovn_s32(a), vmovn_s32(b));
            vst1q_s8(o.add(4 + 16 * g) as *mut i8, vcombine_s8(vmovn_s16(n16(q[0], q[1])), vmovn_s16(n16(q[2], q[3]))));
        }
        (o as *mut f32).write_unaligned(1.0 / iscale);
    }
}

#[target_feature(enable = "neon")]
pub(crate) unsafe fn act_f16(n: usize, x: *const f32, y: *mut u8) {
    let mut i = 0;
    while i + 4 <= n {
        vst1_u16(y.add(2 * i) as *mut u16, to_f16x4(vld1q_f32(x.add(i))));
        i += 4;
    }
    while i < n {
        (y.add(2 * i) as *mut u16).write_unaligned(crate::fp::f32_to_f16_keep_nan(*x.add(i)));
        i += 1;
    }
}

#[target_feature(enable = "neon")]
pub(crate) unsafe fn act_bf16(n: usize, x: *const f32, y: *mut u8) {
    let mut i = 0;
    while i + 4 <= n {
        let u = vreinterpretq_u32_f32(vld1q_f32(x.add(i)));
        let is_nan = vcgtq_u32(vandq_u32(u, vdupq_n_u32(0x7fff_ffff)), vdupq_n_u32(0x7f80_0000));
        let nan = vorrq_u32(vshrq_n_u32::<16>(u), vdupq_n_u32(64));
        let lsb = vandq_u32(vshrq_n_u32::<16>(u), vdupq_n_u32(1));
        let r = vshrq_n_u32::<16>(vaddq_u32(vaddq_u32(u, vdupq_n_u32(0x7fff)), lsb));
        vst1_u16(y.add(2 * i) as *mut u16, vmovn_u32(vbslq_u32(is_nan, nan, r)));
        i += 4;
    }
    while i < n {
        (y.add(2 * i) as *mut u16).write_unaligned(crate::fp::f32_to_bf16(*x.add(i)));
        i += 1;
    }
}
