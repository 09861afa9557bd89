//! AVX2 activation quantizers, byte-identical to
//! `reference::quantize_activation` for finite inputs (NaN inputs give
//! unspecified but memory-safe bytes: `_mm256_max_ps` and `f32::max` treat
//! NaN differently).

use super::*;

const ROUND: i32 = _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC;
/// vcvtps2ph takes only the 3-bit rounding field (no "no exceptions" bit).
const ROUND_PH: i32 = _MM_FROUND_TO_NEAREST_INT;

/// Eight f32 lanes → max over lanes.
#[inline]
#[target_feature(enable = "avx2,fma,f16c")]
unsafe fn hmax_ps(v: __m256) -> f32 {
    let m = _mm_max_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps::<1>(v));
    let m = _mm_max_ps(m, _mm_movehl_ps(m, m));
    let m = _mm_max_ss(m, _mm_movehdup_ps(m));
    _mm_cvtss_f32(m)
}

#[inline]
#[target_feature(enable = "avx2,fma,f16c")]
unsafe fn abs_ps(v: __m256) -> __m256 {
    _mm256_andnot_ps(_mm256_set1_ps(-0.0), v)
}

/// f32 → f16 bits with F16C (RNE, NaN payload kept).
#[inline]
#[target_feature(enable = "avx2,fma,f16c")]
unsafe fn to_f16(x: f32) -> u16 {
    _mm_extract_epi16::<0>(_mm_cvtps_ph::<ROUND_PH>(_mm_set_ss(x))) as u16
}

/// Four vectors of eight i32 → 32 saturated i8 in element order.
#[inline]
#[target_feature(enable = "avx2,fma,f16c")]
unsafe fn pack32(i: [__m256i; 4]) -> __m256i {
    // packs work per 128-bit lane, giving dword order 0 4 1 5 2 6 3 7.
    let a = _mm256_packs_epi32(i[0], i[1]);
    let b = _mm256_packs_epi32(i[2], i[3]);
    let c = _mm256_packs_epi16(a, b);
    _mm256_permutevar8x32_epi32(c, _mm256_setr_epi32(0, 4, 1, 5, 2, 6, 3, 7))
}

/// One 32-element block, x86 ggml-cpu semantics: `id = 127/amax`, ties to
/// even. Returns (d, the 32 i8 as a vector, the wrapping i32 sum of quants).
#[inline]
#[target_feature(enable = "avx2,fma,f16c")]
unsafe fn q8_block(x: *const f32) -> (f32, __m256i, i32) {
    let v = [
        _mm256_loadu_ps(x),
        _mm256_loadu_ps(x.add(8)),
        _mm256_loadu_ps(x.add(16)),
        _mm256_loadu_ps(x.add(24)),
    ];
    let m = _mm256_max_ps(_mm256_max_ps(abs_ps(v[0]), abs_ps(v[1])), _mm256_max_ps(abs_ps(v[2]), abs_ps(v[3])));
    let amax = hmax_ps(m);
    let d = amax / 127.0;
    let id = _mm256_set1_ps(if amax != 0.0 { 127.0 / amax } else { 0.0 });
    let i = v.map(|v| _mm256_cvtps_epi32(_mm256_round_ps::<ROUND>(_mm256_mul_ps(v, id))));
    let sum = hsum_epi32(_mm256_add_epi32(_mm256_add_epi32(i[0], i[1]), _mm256_add_epi32(i[2], i[3])));
    (d, pack32(i), sum)
}

#[target_feature(enable = "avx2,fma,f16c")]
pub(crate) unsafe fn q8_0(nb: usize, x: *const f32, y: *mut u8) {
    for b in 0..nb {
        let (d, q, _) = q8_block(x.add(32 * b));
        let o = y.add(34 * b);
        (o as *mut u16).write_unaligned(to_f16(d));
        _mm256_storeu_si256(o.add(2) as *mut __m256i, q);
    }
}

#[target_feature(enable = "avx2,fma,f16c")]
pub(crate) unsafe fn q8_1(nb: usize, x: *const f32, y: *mut u8) {
    for b in 0..nb {
        let (d, q, sum) = q8_block(x.add(32 * b));
        let o = y.add(36 * b);
        (o as *mut u16).write_unaligned(to_f16(d));
        (o.add(2) as *mut u16).write_unaligned(to_f16(d * sum as f32));
        _mm256_storeu_si256(o.add(4) as *mut __m256i, q);
    }
}

/// quantize_row_q8_K_ref, vectorised: same max element (first of largest
/// magnitude, so its sign is ggml's), same `iscale * x` products, and
/// ggml's `nearest_int` bit trick itself rather than a rounding instruction,
/// because the two differ when `iscale` overflows (a block of subnormals):
/// the trick then yields -2^22 or 0, which the C code truncates to an i8 0.
/// Truncation, not saturation, is reproduced too.
#[target_feature(enable = "avx2,fma,f16c")]
pub(crate) unsafe fn q8_k(nb: usize, x: *const f32, y: *mut u8) {
    for b in 0..nb {
        let xb = x.add(256 * b);
        let o = y.add(292 * b);
        let mut m = _mm256_setzero_ps();
        for k in 0..32 {
            m = _mm256_max_ps(m, abs_ps(_mm256_loadu_ps(xb.add(8 * k))));
        }
        let amax = hmax_ps(m);
        if amax == 0.0 {
            std::ptr::write_bytes(o, 0, 292);
            continue;
        }
        // First element whose magnitude is amax.
        let av = _mm256_set1_ps(amax);
        let mut max = 0.0f32;
        for k in 0..32 {
            let hit = _mm256_movemask_ps(_mm256_cmp_ps::<_CMP_EQ_OQ>(abs_ps(_mm256_loadu_ps(xb.add(8 * k))), av));
            if hit != 0 {
                max = xb.add(8 * k + hit.trailing_zeros() as usize).read();
                break;
            }
        }
        let iscale = -127.0 / max;
        let is = _mm256_set1_ps(iscale);
        let lim = _mm256_set1_epi32(127);
        let magic = _mm256_set1_ps(12582912.0);
        let mant = _mm256_set1_epi32(0x007f_ffff);
        let bias = _mm256_set1_epi32(0x0040_0000);
        let mut sums = [_mm256_setzero_si256(); 16];
        for g in 0..8 {
            let mut i = [_mm256_setzero_si256(); 4];
            for (k, i) in i.iter_mut().enumerate() {
                let v = _mm256_add_ps(_mm256_mul_ps(_mm256_loadu_ps(xb.add(32 * g + 8 * k)), is), magic);
                let n = _mm256_sub_epi32(_mm256_and_si256(_mm256_castps_si256(v), mant), bias);
                let n = _mm256_min_epi32(n, lim);
                // `(int8_t)` truncation: sign-extend the low byte.
                *i = _mm256_srai_epi32::<24>(_mm256_slli_epi32::<24>(n));
            }
            sums[2 * g] = _mm256_add_epi32(i[0], i[1]);
            sums[2 * g + 1] = _mm256_add_epi32(i[2], i[3]);
            _mm256_storeu_si256(o.add(4 + 32 * g) as *mut __m256i, pack32(i));
        }
        // bsums: horizontal sums of the 16 vectors, four at a time.
        let mut bs = [_mm_setzero_si128(); 4];
        for (q, bs) in bs.iter_mut().enumerate() {
            let s = &sums[4 * q..4 * q + 4];
            let h = _mm256_hadd_epi32(_mm256_hadd_epi32(s[0], s[1]), _mm256_hadd_epi32(s[2], s[3]));
            *bs = _mm_add_epi32(_mm256_castsi256_si128(h), _mm256_extracti128_si256::<1>(h));
        }
        let lo = _mm_packs_epi32(bs[0], bs[1]);
        let hi = _mm_packs_epi32(bs[2], bs[3]);
        _mm_storeu_si128(o.add(260) as *mut __m128i, lo);
        _mm_storeu_si128(o.add(276) as *mut __m128i, hi);
        (o as *mut f32).write_unaligned(1.0 / iscale);
    }
}

#[target_feature(enable = "avx2,fma,f16c")]
pub(crate) unsafe fn f16(n: usize, x: *const f32, y: *mut u8) {
    let mut i = 0;
    while i + 8 <= n {
        let h = _mm256_cvtps_ph::<ROUND_PH>(_mm256_loadu_ps(x.add(i)));
        _mm_storeu_si128(y.add(2 * i) as *mut __m128i, h);
        i += 8;
    }
    while i < n {
        (y.add(2 * i) as *mut u16).write_unaligned(to_f16(x.add(i).read()));
        i += 1;
    }
}

/// ggml_compute_fp32_to_bf16 eight lanes at a time.
#[target_feature(enable = "avx2,fma,f16c")]
pub(crate) unsafe fn bf16(n: usize, x: *const f32, y: *mut u8) {
    let mut i = 0;
    while i + 16 <= n {
        let mut h = [_mm256_setzero_si256(); 2];
        for (k, h) in h.iter_mut().enumerate() {
            let u = _mm256_castps_si256(_mm256_loadu_ps(x.add(i + 8 * k)));
            let is_nan = _mm256_cmpgt_epi32(_mm256_and_si256(u, _mm256_set1_epi32(0x7fff_ffff)), _mm256_set1_epi32(0x7f80_0000));
            let nan = _mm256_or_si256(_mm256_srli_epi32::<16>(u), _mm256_set1_epi32(64));
            let lsb = _mm256_and_si256(_mm256_srli_epi32::<16>(u), _mm256_set1_epi32(1));
            let r = _mm256_add_epi32(_mm256_add_epi32(u, _mm256_set1_epi32(0x7fff)), lsb);
            *h = _mm256_blendv_epi8(_mm256_srli_epi32::<16>(r), nan, is_nan);
        }
        // u32 lanes (all <= 0xFFFF) → u16, fixing the per-lane pack order.
        let p = _mm256_permute4x64_epi64::<0b11_01_10_00>(_mm256_packus_epi32(h[0], h[1]));
        _mm256_storeu_si256(y.add(2 * i) as *mut __m256i, p);
        i += 16;
    }
    while i < n {
        (y.add(2 * i) as *mut u16).write_unaligned(crate::fp::f32_to_bf16(x.add(i).read()));
        i += 1;
    }
}
