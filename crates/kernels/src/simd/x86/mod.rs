//! x86_64 kernels for AVX2 + FMA + F16C, entered only after run-time
//! detection (`is_x86_feature_detected!`), so the crate itself is built for
//! baseline x86_64.
//!
//! # Safety conventions
//!
//! Every `unsafe fn` here carries `#[target_feature(enable = "avx2,fma,f16c")]`
//! and has two preconditions, stated once here instead of on each function:
//!
//! 1. the CPU supports AVX2, FMA and F16C (checked by `super::isa()` before
//!    any call into this module), and
//! 2. every pointer argument points to at least as many readable (or, for
//!    outputs, writable) bytes as the block count argument implies, e.g.
//!    `nb * 18` for `nb` Q4_0 blocks. The safe wrappers in `super` derive
//!    pointers and counts from slices whose lengths `crate::check_row`
//!    validated.
//!
//! All loads and stores are unaligned (`loadu`/`storeu`/`read_unaligned`),
//! so no alignment is assumed anywhere.

#![allow(unsafe_op_in_unsafe_fn)]
#![allow(clippy::missing_safety_doc)]

pub(crate) mod act;
pub(crate) mod dot;
pub(crate) mod packed;

use std::arch::x86_64::*;

#[inline(always)]
pub(crate) unsafe fn rd16(p: *const u8) -> u16 {
    (p as *const u16).read_unaligned()
}

#[inline(always)]
pub(crate) unsafe fn rd32(p: *const u8) -> u32 {
    (p as *const u32).read_unaligned()
}

#[inline(always)]
pub(crate) unsafe fn rdf32(p: *const u8) -> f32 {
    (p as *const f32).read_unaligned()
}

#[inline]
#[target_feature(enable = "avx2,fma,f16c")]
pub(crate) unsafe fn loadu(p: *const u8) -> __m256i {
    _mm256_loadu_si256(p as *const __m256i)
}

#[inline]
#[target_feature(enable = "avx2,fma,f16c")]
pub(crate) unsafe fn loadu128(p: *const u8) -> __m128i {
    _mm_loadu_si128(p as *const __m128i)
}

/// binary16 at `p` → f32 in all eight lanes (broadcast load + F16C, exact).
/// Preferred over a scalar conversion: LLVM lowers `_mm_cvtsi32_si128` of a
/// loaded u16 to `vpinsrw` into whatever register is free, which can be an
/// accumulator, silently chaining every block onto the previous one (this
/// made the first Q4_0 kernel three times slower).
#[inline]
#[target_feature(enable = "avx2,fma,f16c")]
pub(crate) unsafe fn f16_splat(p: *const u8) -> __m256 {
    _mm256_cvtph_ps(_mm_set1_epi16(rd16(p) as i16))
}

/// binary16 at `p` → f32, with the F16C instruction (exact).
#[inline]
#[target_feature(enable = "avx2,fma,f16c")]
pub(crate) unsafe fn f16_at(p: *const u8) -> f32 {
    _mm_cvtss_f32(_mm_cvtph_ps(_mm_cvtsi32_si128(rd16(p) as i32)))
}

#[inline]
#[target_feature(enable = "avx2,fma,f16c")]
pub(crate) unsafe fn hsum_ps(v: __m256) -> f32 {
    let s = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps::<1>(v));
    let s = _mm_add_ps(s, _mm_movehl_ps(s, s));
    let s = _mm_add_ss(s, _mm_movehdup_ps(s));
    _mm_cvtss_f32(s)
}

/// Sum of the eight i32 lanes, wrapping.
#[inline]
#[target_feature(enable = "avx2,fma,f16c")]
pub(crate) unsafe fn hsum_epi32(v: __m256i) -> i32 {
    let s = _mm_add_epi32(_mm256_castsi256_si128(v), _mm256_extracti128_si256::<1>(v));
    let s = _mm_add_epi32(s, _mm_shuffle_epi32::<0b01_00_11_10>(s));
    let s = _mm_add_epi32(s, _mm_shuffle_epi32::<0b10_11_00_01>(s));
    _mm_cvtsi128_si32(s)
}

// ---------------------------------------------------------------------------
// Float dots (F32, F16, BF16) and dequantizers. Float dots may differ from
// the reference in summation order only.

#[target_feature(enable = "avx2,fma,f16c")]
pub(crate) unsafe fn dot_f32(n: usize, w: *const u8, a: *const u8) -> f32 {
    let (w, a) = (w as *const f32, a as *const f32);
    let mut acc = [_mm256_setzero_ps(); 4];
    let mut i = 0;
    while i + 32 <= n {
        for (k, acc) in acc.iter_mut().enumerate() {
            let x = _mm256_loadu_ps(w.add(i + 8 * k));
            let y = _mm256_loadu_ps(a.add(i + 8 * k));
            *acc = _mm256_fmadd_ps(x, y, *acc);
        }
        i += 32;
    }
    while i + 8 <= n {
        acc[0] = _mm256_fmadd_ps(_mm256_loadu_ps(w.add(i)), _mm256_loadu_ps(a.add(i)), acc[0]);
        i += 8;
    }
    let mut s = hsum_ps(_mm256_add_ps(_mm256_add_ps(acc[0], acc[1]), _mm256_add_ps(acc[2], acc[3])));
    while i < n {
        s += w.add(i).read_unaligned() * a.add(i).read_unaligned();
        i += 1;
    }
    s
}

#[inline]
#[target_feature(enable = "avx2,fma,f16c")]
unsafe fn ld_f16x8(p: *const u8) -> __m256 {
    _mm256_cvtph_ps(loadu128(p))
}

#[inline]
#[target_feature(enable = "avx2,fma,f16c")]
unsafe fn ld_bf16x8(p: *const u8) -> __m256 {
    _mm256_castsi256_ps(_mm256_slli_epi32::<16>(_mm256_cvtepu16_epi32(loadu128(p))))
}

macro_rules! half_dot {
    ($name:ident, $ld:ident, $scalar:path) => {
        #[target_feature(enable = "avx2,fma,f16c")]
        pub(crate) unsafe fn $name(n: usize, w: *const u8, a: *const u8) -> f32 {
            let mut acc = [_mm256_setzero_ps(); 4];
            let mut i = 0;
            while i + 32 <= n {
                for (k, acc) in acc.iter_mut().enumerate() {
                    let o = 2 * (i + 8 * k);
                    *acc = _mm256_fmadd_ps($ld(w.add(o)), $ld(a.add(o)), *acc);
                }
                i += 32;
            }
            while i + 8 <= n {
                acc[0] = _mm256_fmadd_ps($ld(w.add(2 * i)), $ld(a.add(2 * i)), acc[0]);
                i += 8;
            }
            let mut s = hsum_ps(_mm256_add_ps(_mm256_add_ps(acc[0], acc[1]), _mm256_add_ps(acc[2], acc[3])));
            while i < n {
                s += $scalar(rd16(w.add(2 * i))) * $scalar(rd16(a.add(2 * i)));
                i += 1;
            }
            s
        }
    };
}

half_dot!(dot_f16, ld_f16x8, crate::fp::f16_to_f32);
half_dot!(dot_bf16, ld_bf16x8, crate::fp::bf16_to_f32);

/// F16 → f32 (exact, so identical to the reference).
#[target_feature(enable = "avx2,fma,f16c")]
pub(crate) unsafe fn dequant_f16(n: usize, src: *const u8, dst: *mut f32) {
    let mut i = 0;
    while i + 8 <= n {
        _mm256_storeu_ps(dst.add(i), ld_f16x8(src.add(2 * i)));
        i += 8;
    }
    while i < n {
        *dst.add(i) = crate::fp::f16_to_f32(rd16(src.add(2 * i)));
        i += 1;
    }
}

#[target_feature(enable = "avx2,fma,f16c")]
pub(crate) unsafe fn dequant_bf16(n: usize, src: *const u8, dst: *mut f32) {
    let mut i = 0;
    while i + 8 <= n {
        _mm256_storeu_ps(dst.add(i), ld_bf16x8(src.add(2 * i)));
        i += 8;
    }
    while i < n {
        *dst.add(i) = crate::fp::bf16_to_f32(rd16(src.add(2 * i)));
        i += 1;
    }
}

/// Q4_0 → f32: `(q - 8) as f32 * d`, one rounding like the reference.
#[target_feature(enable = "avx2,fma,f16c")]
pub(crate) unsafe fn dequant_q4_0(nb: usize, src: *const u8, dst: *mut f32) {
    let m4 = _mm_set1_epi8(0x0F);
    let eight = _mm_set1_epi8(8);
    for b in 0..nb {
        let p = src.add(18 * b);
        let d = _mm256_set1_ps(f16_at(p));
        let q = loadu128(p.add(2));
        let lo = _mm_sub_epi8(_mm_and_si128(q, m4), eight); // elements 0..16
        let hi = _mm_sub_epi8(_mm_and_si128(_mm_srli_epi16::<4>(q), m4), eight); // 16..32
        let o = dst.add(32 * b);
        for (k, v) in [lo, _mm_srli_si128::<8>(lo), hi, _mm_srli_si128::<8>(hi)].into_iter().enumerate() {
            let f = _mm256_cvtepi32_ps(_mm256_cvtepi8_epi32(v));
            _mm256_storeu_ps(o.add(8 * k), _mm256_mul_ps(f, d));
        }
    }
}

#[target_feature(enable = "avx2,fma,f16c")]
pub(crate) unsafe fn dequant_q8_0(nb: usize, src: *const u8, dst: *mut f32) {
    for b in 0..nb {
        let p = src.add(34 * b);
        let d = _mm256_set1_ps(f16_at(p));
        let o = dst.add(32 * b);
        for k in 0..4 {
            let v = _mm_loadl_epi64(p.add(2 + 8 * k) as *const __m128i);
            let f = _mm256_cvtepi32_ps(_mm256_cvtepi8_epi32(v));
            _mm256_storeu_ps(o.add(8 * k), _mm256_mul_ps(f, d));
        }
    }
}

/// Q4_K → f32: `d1 * q - m1` as a multiply then a subtract (never an FMA,
/// which would round once instead of twice and break bit-identity).
#[target_feature(enable = "avx2,fma,f16c")]
pub(crate) unsafe fn dequant_q4_k(nb: usize, src: *const u8, dst: *mut f32) {
    let m4 = _mm_set1_epi8(0x0F);
    for b in 0..nb {
        let p = src.add(144 * b);
        let d = f16_at(p);
        let dmin = f16_at(p.add(2));
        let mut sc = [0u8; 12];
        std::ptr::copy_nonoverlapping(p.add(4), sc.as_mut_ptr(), 12);
        let o = dst.add(256 * b);
        for c in 0..4 {
            let q = p.add(16 + 32 * c);
            for half in 0..2 {
                let (s, m) = crate::blocks::scale_min_k4(2 * c + half, &sc);
                let dv = _mm256_set1_ps(d * s as f32);
                let mv = _mm256_set1_ps(dmin * m as f32);
                for k in 0..2 {
                    let raw = loadu128(q.add(16 * k));
                    let v = if half == 0 { _mm_and_si128(raw, m4) } else { _mm_and_si128(_mm_srli_epi16::<4>(raw), m4) };
                    for (j, v) in [v, _mm_srli_si128::<8>(v)].into_iter().enumerate() {
                        let f = _mm256_cvtepi32_ps(_mm256_cvtepu8_epi32(v));
                        let r = _mm256_sub_ps(_mm256_mul_ps(dv, f), mv);
                        _mm256_storeu_ps(o.add(64 * c + 32 * half + 16 * k + 8 * j), r);
                    }
                }
            }
        }
    }
}

/// Q6_K → f32: `(d * sc) * (q - 32)` in that order.
#[target_feature(enable = "avx2,fma,f16c")]
pub(crate) unsafe fn dequant_q6_k(nb: usize, src: *const u8, dst: *mut f32) {
    for b in 0..nb {
        let p = src.add(210 * b);
        let d = f16_at(p.add(208));
        let o = dst.add(256 * b);
        for h in 0..2 {
            let v = dot::q6k_half(p, h);
            for (k, v) in v.into_iter().enumerate() {
                // v: 32 six-bit values, elements 128h + 32k .. +32.
                let v = _mm256_sub_epi8(v, _mm256_set1_epi8(32));
                for s in 0..2 {
                    let j = 8 * h + 2 * k + s; // sub-block of 16
                    let dv = _mm256_set1_ps(d * (*p.add(192 + j) as i8) as f32);
                    let half = if s == 0 { _mm256_castsi256_si128(v) } else { _mm256_extracti128_si256::<1>(v) };
                    for (t, q) in [half, _mm_srli_si128::<8>(half)].into_iter().enumerate() {
                        let f = _mm256_cvtepi32_ps(_mm256_cvtepi8_epi32(q));
                        _mm256_storeu_ps(o.add(128 * h + 32 * k + 16 * s + 8 * t), _mm256_mul_ps(dv, f));
                    }
                }
            }
        }
    }
}
