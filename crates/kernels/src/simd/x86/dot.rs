//! AVX2 dot products of quantized weight rows with quantized activation rows.
//!
//! The integer core is `_mm256_maddubs_epi16(u8, i8)`: it multiplies unsigned
//! by signed bytes and adds adjacent pairs into i16 (saturating, which the
//! value ranges below never reach). Weights are kept UNSIGNED (the stored
//! nibble / 6-bit value) and the zero-point is removed afterwards with the
//! activation block's sum: `sum((q - z) * a) = sum(q * a) - z * sum(a)`. For
//! Q8_K activations `sum(a)` per 16 is stored (`bsums`); for Q8_0 it is
//! computed once per activation block and shared by every weight row of a
//! tile. This avoids the sign-flip trick per weight row.
//!
//! `tile_*::<R, T>` computes an R x T block of results (R weight rows against
//! T activation rows): decoding of each weight block is shared by the T
//! activation rows (prefill) and each activation block's loads and sums by
//! the R weight rows (decode).
//!
//! Saturation bounds (i16 lanes after maddubs: pairs of products):
//! Q4_0 15*127*2 = 3810, minus 8*127*2: |.| <= 5842; Q5_0 31*127*2 = 7874,
//! minus 16*127*2: <= 11938; Q4_K 3810; Q5_K 7874; Q6_K 63*127*2 = 16002;
//! Q3_K 7*127*2; Q2_K 3*127*2; Q8_0 (via sign flip) 128*127*2 = 32512. All
//! below 32767, assuming activations in [-127, 127], which every activation
//! quantizer here produces for finite input. Weights can be any bytes.

use super::*;

#[inline]
#[target_feature(enable = "avx2,fma,f16c")]
unsafe fn ones16() -> __m256i {
    _mm256_set1_epi16(1)
}

/// 16 bytes of nibbles → 32 bytes: low nibbles (elements 0..16) in the low
/// 128-bit lane, high nibbles (16..32) in the high lane.
#[inline]
#[target_feature(enable = "avx2,fma,f16c")]
unsafe fn nibbles32(p: *const u8) -> __m256i {
    // Broadcast-load the 16 bytes to both lanes (a load-port operation),
    // shift only the high lane right by 4, mask.
    let q = _mm256_broadcastsi128_si256(loadu128(p));
    let v = _mm256_srlv_epi32(q, _mm256_setr_epi32(0, 0, 0, 0, 4, 4, 4, 4));
    _mm256_and_si256(v, _mm256_set1_epi8(0x0F))
}

/// Spreads the 32 bits of `qh` to 32 bytes: byte j = 0xFF if bit j is set.
#[inline]
#[target_feature(enable = "avx2,fma,f16c")]
unsafe fn bits32(qh: u32) -> __m256i {
    let v = _mm256_set1_epi32(qh as i32);
    // Byte j takes byte j/8 of qh (shuffle works within 128-bit lanes; each
    // lane holds all four bytes of the broadcast).
    let idx = _mm256_setr_epi8(
        0, 0, 0, 0, 0, 0, 0, 0, 1, 1, 1, 1, 1, 1, 1, 1, 2, 2, 2, 2, 2, 2, 2, 2, 3, 3, 3, 3, 3, 3, 3, 3,
    );
    let bit = _mm256_set1_epi64x(0x8040_2010_0804_0201u64 as i64);
    let v = _mm256_and_si256(_mm256_shuffle_epi8(v, idx), bit);
    _mm256_cmpeq_epi8(v, bit)
}

#[inline]
#[target_feature(enable = "avx2,fma,f16c")]
unsafe fn to_f32(v: __m256i) -> __m256 {
    _mm256_cvtepi32_ps(v)
}

/// Results of an R x T tile: `out[r][t]`.
type Tile<const R: usize, const T: usize> = [[f32; T]; R];

#[inline]
#[target_feature(enable = "avx2,fma,f16c")]
unsafe fn finish<const R: usize, const T: usize>(acc: &[[__m256; T]; R]) -> Tile<R, T> {
    let mut out = [[0f32; T]; R];
    for r in 0..R {
        for t in 0..T {
            out[r][t] = hsum_ps(acc[r][t]);
        }
    }
    out
}






// ------------------------------------------------------------- K-quant helpers

/// Q8_K activation block pointers.
#[inline(always)]
unsafe fn q8k(a: *const u8, b: usize) -> *const u8 {
    a.add(292 * b)
}

/// An i16 vector whose low 128-bit lane is `s[2g]` and high lane `s[2g+1]`
/// (sign-extended bytes of `s8`): the scales for 32 consecutive elements
/// spanning two 16-element sub-blocks.
#[inline]
#[target_feature(enable = "avx2,fma,f16c")]
unsafe fn pair_scales(s8: __m128i, g: usize) -> __m256i {
    let lo = 0x0101_0101_0101_0101u64.wrapping_mul(2 * g as u64);
    let hi = 0x0101_0101_0101_0101u64.wrapping_mul(2 * g as u64 + 1);
    _mm256_cvtepi8_epi16(_mm_shuffle_epi8(s8, _mm_set_epi64x(hi as i64, lo as i64)))
}

/// The sixteen i8 scales `s8` widened to i16 and arranged for
/// [`pair_scales_of`]: (scales 0..8 in both lanes, scales 8..16 in both).
#[inline]
#[target_feature(enable = "avx2,fma,f16c")]
unsafe fn scales16x2(s8: __m128i) -> [__m256i; 2] {
    let s16 = _mm256_cvtepi8_epi16(s8);
    [_mm256_permute2x128_si256::<0x00>(s16, s16), _mm256_permute2x128_si256::<0x11>(s16, s16)]
}

/// `vpshufb` masks for [`pair_scales_of`]: for g % 4, the low lane takes i16
/// lane 2·(g%4) and the high lane i16 lane 2·(g%4) + 1.
static PAIR_MASKS: [[u8; 32]; 4] = {
    let mut m = [[0u8; 32]; 4];
    let mut g = 0;
    while g < 4 {
        let mut i = 0;
        while i < 32 {
            let lane = 2 * g + i / 16;
            m[g][i] = (2 * lane + i % 2) as u8;
            i += 1;
        }
        g += 1;
    }
    m
};

/// Opaque to the optimiser for the same reason as [`splat_masks`].
#[inline(always)]
fn pair_masks() -> &'static [[u8; 32]; 4] {
    std::hint::black_box(&PAIR_MASKS)
}

/// As [`pair_scales`] from the prepared [`scales16x2`]: one byte shuffle.
#[inline]
#[target_feature(enable = "avx2,fma,f16c")]
unsafe fn pair_scales_of(s: &[__m256i; 2], masks: &[[u8; 32]; 4], g: usize) -> __m256i {
    // Scales 2g and 2g+1 sit at i16 positions (2g % 8) and (2g % 8) + 1 of
    // s[g / 4]; broadcast the first in the low lane, the second in the high.
    _mm256_shuffle_epi8(s[g / 4], _mm256_loadu_si256(masks[g % 4].as_ptr() as *const __m256i))
}

/// `vpshufb` masks broadcasting i16 lane j (0..8) of each 128-bit lane.
static SPLAT_MASKS: [[u8; 32]; 8] = {
    let mut m = [[0u8; 32]; 8];
    let mut j = 0;
    while j < 8 {
        let mut i = 0;
        while i < 32 {
            m[j][i] = (2 * j + i % 2) as u8;
            i += 1;
        }
        j += 1;
    }
    m
};

/// The splat masks, hidden from the optimiser. Given constant masks LLVM
/// rewrites each `vpshufb` splat as an extract plus `vpbroadcastw` (two
/// shuffle-port operations instead of one), and the shuffle ports are what
/// bounds the K-quant kernels; through `black_box` the masks stay opaque
/// memory operands.
#[inline(always)]
fn splat_masks() -> &'static [[u8; 32]; 8] {
    std::hint::black_box(&SPLAT_MASKS)
}

/// An i16 vector with all 16 lanes equal to lane `j` of `s16` (8 i16 lanes
/// broadcast to both halves).
#[inline]
#[target_feature(enable = "avx2,fma,f16c")]
unsafe fn splat_scale(s16x2: __m256i, masks: &[[u8; 32]; 8], j: usize) -> __m256i {
    _mm256_shuffle_epi8(s16x2, _mm256_loadu_si256(masks[j].as_ptr() as *const __m256i))
}

/// Q4_K/Q5_K 6-bit scales and mins: (8 scales as i16 in both 128-bit lanes,
/// 8 mins as i16). The same unpacking as blocks::scale_min_k4, done on all
/// twelve bytes at once with shuffles: output bytes 0..4 are scales 0..4
/// (low 6 bits of bytes 0..4), 4..8 scales 4..8 (low nibble of bytes 8..12
/// plus the top 2 bits of bytes 0..4), 8..12 mins 0..4 (low 6 bits of bytes
/// 4..8), 12..16 mins 4..8 (high nibble of bytes 8..12 plus the top 2 bits
/// of bytes 4..8). Reads 16 bytes at `p` (12 scale bytes and the first 4
/// bytes of `qs`, which are masked away).
#[inline]
#[target_feature(enable = "avx2,fma,f16c")]
unsafe fn k4_scales(p: *const u8) -> (__m256i, __m128i) {
    let v = loadu128(p);
    // a: the byte holding each output's low bits; b: the byte holding its top 2.
    let a = _mm_shuffle_epi8(v, _mm_setr_epi8(0, 1, 2, 3, 8, 9, 10, 11, 4, 5, 6, 7, 8, 9, 10, 11));
    let b = _mm_shuffle_epi8(v, _mm_setr_epi8(-1, -1, -1, -1, 0, 1, 2, 3, -1, -1, -1, -1, 4, 5, 6, 7));
    let low = _mm_or_si128(
        _mm_and_si128(a, _mm_setr_epi8(63, 63, 63, 63, 15, 15, 15, 15, 63, 63, 63, 63, 0, 0, 0, 0)),
        _mm_and_si128(_mm_srli_epi16::<4>(a), _mm_setr_epi8(0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 15, 15, 15, 15)),
    );
    // (top >> 6) << 4 == (top >> 2) & 0x30.
    let top = _mm_and_si128(_mm_srli_epi16::<2>(b), _mm_setr_epi8(0, 0, 0, 0, 48, 48, 48, 48, 0, 0, 0, 0, 48, 48, 48, 48));
    let v = _mm256_cvtepu8_epi16(_mm_or_si128(low, top));
    let sc = _mm256_permute2x128_si256::<0x00>(v, v);
    (sc, _mm256_extracti128_si256::<1>(v))
}

/// Sum of pairs of Q8_K bsums: 8 i16, the activation sums of the eight
/// 32-element sub-blocks.
#[inline]
#[target_feature(enable = "avx2,fma,f16c")]
unsafe fn bsums_pairs(y: *const u8) -> __m128i {
    let bs = loadu(y.add(260));
    _mm_hadd_epi16(_mm256_castsi256_si128(bs), _mm256_extracti128_si256::<1>(bs))
}


// ---------------------------------------------------------------- Q6_K x Q8_K

/// The four 32-byte vectors of six-bit values (0..64) of half `h` of a Q6_K
/// block: elements `128h + 32k .. 128h + 32k + 32` for k = 0..4.
#[inline]
#[target_feature(enable = "avx2,fma,f16c")]
pub(crate) unsafe fn q6k_half(x: *const u8, h: usize) -> [__m256i; 4] {
    let m4 = _mm256_set1_epi8(0x0F);
    let ql0 = loadu(x.add(64 * h));
    let ql1 = loadu(x.add(64 * h + 32));
    let qh = loadu(x.add(128 + 32 * h));
    let h0 = _mm256_slli_epi16::<4>(_mm256_and_si256(qh, _mm256_set1_epi8(0x03)));
    let h1 = _mm256_slli_epi16::<2>(_mm256_and_si256(qh, _mm256_set1_epi8(0x0C)));
    let h2 = _mm256_and_si256(qh, _mm256_set1_epi8(0x30));
    let h3 = _mm256_srli_epi16::<2>(_mm256_and_si256(qh, _mm256_set1_epi8(0xC0u8 as i8)));
    [
        _mm256_or_si256(_mm256_and_si256(ql0, m4), h0),
        _mm256_or_si256(_mm256_and_si256(ql1, m4), h1),
        _mm256_or_si256(_mm256_and_si256(_mm256_srli_epi16::<4>(ql0), m4), h2),
        _mm256_or_si256(_mm256_and_si256(_mm256_srli_epi16::<4>(ql1), m4), h3),
    ]
}



/// The sixteen Q3_K scales minus 32, as i8.
#[inline]
#[target_feature(enable = "avx2,fma,f16c")]
unsafe fn q3k_scales(p: *const u8) -> __m128i {
    let (a0, a1, tmp) = (rd32(p), rd32(p.add(4)), rd32(p.add(8)));
    // blocks::q3k_scales four bytes at a time: low nibbles of bytes 0..8 are
    // scales 0..8, high nibbles scales 8..16; byte 8 + j%4 bit pair j/4 is
    // the top of scale j.
    let v0 = (a0 & 0x0f0f_0f0f) | ((tmp & 0x0303_0303) << 4);
    let v1 = (a1 & 0x0f0f_0f0f) | (((tmp >> 2) & 0x0303_0303) << 4);
    let v2 = ((a0 >> 4) & 0x0f0f_0f0f) | (((tmp >> 4) & 0x0303_0303) << 4);
    let v3 = ((a1 >> 4) & 0x0f0f_0f0f) | (((tmp >> 6) & 0x0303_0303) << 4);
    _mm_sub_epi8(_mm_set_epi32(v3 as i32, v2 as i32, v1 as i32, v0 as i32), _mm_set1_epi8(32))
}

/// Software prefetch for a tile's weight rows. A tile reads R consecutive
/// rows as R parallel streams that each end after one row, which the
/// hardware stream prefetchers (trained per stream) follow badly: from DRAM
/// a 4-row Q4_0 tile ran at half the bandwidth of reading the rows one after
/// another. Each stream therefore prefetches the same position of the row R
/// rows further on (the next tile's row), one prefetch per 64-byte line.
/// `row_bytes` is the stride between consecutive rows.
#[inline(always)]
unsafe fn prefetch_rows<const R: usize>(w: &[*const u8; R], offset: usize, bytes: usize, row_bytes: usize) {
    // Only when this block crosses into a new cache line.
    if offset / 64 != (offset + bytes) / 64 || offset & 63 == 0 {
        for row in w {
            // Past the end of the matrix for the last tile: a prefetch never
            // faults, and wrapping_add keeps the pointer arithmetic defined.
            _mm_prefetch::<_MM_HINT_T0>(row.wrapping_add(R * row_bytes + offset) as *const i8);
        }
    }
}

// ------------------------------------------------------------- primitives
//
// The kernels below are written once against two integer primitives and
// instantiated twice: with AVX2 instructions, and with the AVX-512 VNNI
// instructions (`vpdpbusd`, `vpdpwssd`, 256-bit EVEX forms, needing
// AVX512VNNI + AVX512VL) that fuse the multiply, the pairwise add and the
// accumulation. The VNNI forms are emitted with `asm!` because their
// intrinsics need Rust 1.89 and the workspace targets 1.85; the x86
// assembler accepts them regardless of the enabled target features, and
// `super::super::isa()` only selects this variant after detecting both
// features at run time. Both variants compute identical integers (maddubs
// never saturates for the value ranges above), so their results are
// bit-identical.

/// acc + sum of four u8 x i8 products per i32 lane.
#[inline]
#[target_feature(enable = "avx2,fma,f16c")]
pub(crate) unsafe fn dpbusd_avx2(acc: __m256i, u: __m256i, s: __m256i) -> __m256i {
    _mm256_add_epi32(acc, _mm256_madd_epi16(_mm256_maddubs_epi16(u, s), ones16()))
}

/// acc + sum of two i16 x i16 products per i32 lane.
#[inline]
#[target_feature(enable = "avx2,fma,f16c")]
pub(crate) unsafe fn dpwssd_avx2(acc: __m256i, a: __m256i, b: __m256i) -> __m256i {
    _mm256_add_epi32(acc, _mm256_madd_epi16(a, b))
}

/// `vpdpbusd` (AVX512VNNI + AVX512VL); only called after run-time detection.
#[inline]
#[target_feature(enable = "avx2,fma,f16c")]
pub(crate) unsafe fn dpbusd_vnni(mut acc: __m256i, u: __m256i, s: __m256i) -> __m256i {
    std::arch::asm!("vpdpbusd {0}, {1}, {2}", inout(ymm_reg) acc, in(ymm_reg) u, in(ymm_reg) s,
        options(pure, nomem, nostack, preserves_flags));
    acc
}

/// `vpdpwssd` (AVX512VNNI + AVX512VL); only called after run-time detection.
#[inline]
#[target_feature(enable = "avx2,fma,f16c")]
unsafe fn dpwssd_vnni(mut acc: __m256i, a: __m256i, b: __m256i) -> __m256i {
    std::arch::asm!("vpdpwssd {0}, {1}, {2}", inout(ymm_reg) acc, in(ymm_reg) a, in(ymm_reg) b,
        options(pure, nomem, nostack, preserves_flags));
    acc
}

macro_rules! kernels {
    ($dpbusd:ident, $dpwssd:ident) => {
        #[target_feature(enable = "avx2,fma,f16c")]
        pub(crate) unsafe fn tile_q4_0<const R: usize, const T: usize>(
            nb: usize,
            w: [*const u8; R],
            a: [*const u8; T],
        ) -> Tile<R, T> {
            let eight = _mm256_set1_epi8(8);
            let mut acc = [[_mm256_setzero_ps(); T]; R];
            for b in 0..nb {
                let mut av = [_mm256_setzero_si256(); T];
                let mut ncorr = [_mm256_setzero_si256(); T];
                let mut da = [_mm256_setzero_ps(); T];
                for t in 0..T {
                    let p = a[t].add(34 * b);
                    da[t] = f16_splat(p);
                    av[t] = loadu(p.add(2));
                    // -8 * (sum of the four activations) per i32 lane: the zero point.
                    ncorr[t] = _mm256_sub_epi32(_mm256_setzero_si256(), $dpbusd(_mm256_setzero_si256(), eight, av[t]));
                }
                prefetch_rows(&w, 18 * b, 18, 18 * nb);
                for r in 0..R {
                    let p = w[r].add(18 * b);
                    let dw = f16_splat(p);
                    let q = nibbles32(p.add(2));
                    for t in 0..T {
                        let p32 = $dpbusd(ncorr[t], q, av[t]);
                        acc[r][t] = _mm256_fmadd_ps(_mm256_mul_ps(dw, da[t]), to_f32(p32), acc[r][t]);
                    }
                }
            }
            finish(&acc)
        }

        #[target_feature(enable = "avx2,fma,f16c")]
        pub(crate) unsafe fn tile_q8_0<const R: usize, const T: usize>(
            nb: usize,
            w: [*const u8; R],
            a: [*const u8; T],
        ) -> Tile<R, T> {
            let mut acc = [[_mm256_setzero_ps(); T]; R];
            for b in 0..nb {
                let mut av = [_mm256_setzero_si256(); T];
                let mut da = [_mm256_setzero_ps(); T];
                for t in 0..T {
                    let p = a[t].add(34 * b);
                    da[t] = f16_splat(p);
                    av[t] = loadu(p.add(2));
                }
                prefetch_rows(&w, 34 * b, 34, 34 * nb);
                for r in 0..R {
                    let p = w[r].add(34 * b);
                    let dw = f16_splat(p);
                    let q = loadu(p.add(2));
                    // |q| as unsigned (|-128| = 128 read as u8), sign moved to a.
                    let aq = _mm256_sign_epi8(q, q);
                    for t in 0..T {
                        let p32 = $dpbusd(_mm256_setzero_si256(), aq, _mm256_sign_epi8(av[t], q));
                        acc[r][t] = _mm256_fmadd_ps(_mm256_mul_ps(dw, da[t]), to_f32(p32), acc[r][t]);
                    }
                }
            }
            finish(&acc)
        }

        #[target_feature(enable = "avx2,fma,f16c")]
        pub(crate) unsafe fn q4_1(nb: usize, w: *const u8, a: *const u8) -> f32 {
            let mut acc = _mm256_setzero_ps();
            // m*s per block, in every lane (only lane 0 is used at the end).
            let mut summ = _mm256_setzero_ps();
            for b in 0..nb {
                let (x, y) = (w.add(20 * b), a.add(36 * b));
                let q = nibbles32(x.add(4));
                let p32 = $dpbusd(_mm256_setzero_si256(), q, loadu(y.add(4)));
                acc = _mm256_fmadd_ps(_mm256_mul_ps(f16_splat(x), f16_splat(y)), to_f32(p32), acc);
                summ = _mm256_fmadd_ps(f16_splat(x.add(2)), f16_splat(y.add(2)), summ);
            }
            hsum_ps(acc) + _mm256_cvtss_f32(summ)
        }

        /// Q5_0 x Q8_0 as an R x T tile, the layout of most matrices in a
        /// Qwen2.5-0.5B "Q4_K_M" file (896-wide rows are not a whole number
        /// of 256-element K-quant blocks, so llama-quantize falls back to
        /// Q5_0). Per result the same operations as the 1 x 1 instance.
        #[target_feature(enable = "avx2,fma,f16c")]
        pub(crate) unsafe fn tile_q5_0<const R: usize, const T: usize>(
            nb: usize,
            w: [*const u8; R],
            a: [*const u8; T],
        ) -> Tile<R, T> {
            let sixteen = _mm256_set1_epi8(16);
            let mut acc = [[_mm256_setzero_ps(); T]; R];
            for b in 0..nb {
                let mut av = [_mm256_setzero_si256(); T];
                let mut ncorr = [_mm256_setzero_si256(); T];
                let mut da = [_mm256_setzero_ps(); T];
                for t in 0..T {
                    let p = a[t].add(34 * b);
                    da[t] = f16_splat(p);
                    av[t] = loadu(p.add(2));
                    // -16 * (sum of the four activations) per i32 lane: the zero point.
                    ncorr[t] = _mm256_sub_epi32(_mm256_setzero_si256(), $dpbusd(_mm256_setzero_si256(), sixteen, av[t]));
                }
                prefetch_rows(&w, 22 * b, 22, 22 * nb);
                for r in 0..R {
                    let x = w[r].add(22 * b);
                    let dw = f16_splat(x);
                    let hb = _mm256_and_si256(bits32(rd32(x.add(2))), sixteen);
                    let q = _mm256_or_si256(nibbles32(x.add(6)), hb); // 0..32
                    for t in 0..T {
                        let p32 = $dpbusd(ncorr[t], q, av[t]);
                        acc[r][t] = _mm256_fmadd_ps(_mm256_mul_ps(dw, da[t]), to_f32(p32), acc[r][t]);
                    }
                }
            }
            finish(&acc)
        }

        #[target_feature(enable = "avx2,fma,f16c")]
        pub(crate) unsafe fn q5_1(nb: usize, w: *const u8, a: *const u8) -> f32 {
            let sixteen = _mm256_set1_epi8(16);
            let mut acc = _mm256_setzero_ps();
            // m*s per block, in every lane (only lane 0 is used at the end).
            let mut summ = _mm256_setzero_ps();
            for b in 0..nb {
                let (x, y) = (w.add(24 * b), a.add(36 * b));
                let hb = _mm256_and_si256(bits32(rd32(x.add(4))), sixteen);
                let q = _mm256_or_si256(nibbles32(x.add(8)), hb);
                let p32 = $dpbusd(_mm256_setzero_si256(), q, loadu(y.add(4)));
                acc = _mm256_fmadd_ps(_mm256_mul_ps(f16_splat(x), f16_splat(y)), to_f32(p32), acc);
                summ = _mm256_fmadd_ps(f16_splat(x.add(2)), f16_splat(y.add(2)), summ);
            }
            hsum_ps(acc) + _mm256_cvtss_f32(summ)
        }

        #[target_feature(enable = "avx2,fma,f16c")]
        pub(crate) unsafe fn tile_q4_k<const R: usize, const T: usize>(
            nb: usize,
            w: [*const u8; R],
            a: [*const u8; T],
        ) -> Tile<R, T> {
            let m4 = _mm256_set1_epi8(0x0F);
            let masks = splat_masks();
            let mut acc = [[_mm256_setzero_ps(); T]; R];
            for b in 0..nb {
                let mut da = [_mm256_setzero_ps(); T];
                let mut bs = [_mm_setzero_si128(); T];
                for t in 0..T {
                    let y = q8k(a[t], b);
                    da[t] = _mm256_set1_ps(rdf32(y));
                    bs[t] = bsums_pairs(y);
                }
                prefetch_rows(&w, 144 * b, 144, 144 * nb);
                for r in 0..R {
                    let x = w[r].add(144 * b);
                    let (d, dmin) = (f16_splat(x), f16_splat(x.add(2)));
                    let (sc, mn) = k4_scales(x.add(4));
                    // Two accumulators per result (low / high nibbles) so the
                    // multiply-accumulate chain is not one long dependency.
                    let mut sumi = [_mm256_setzero_si256(); T];
                    let mut sumj = [_mm256_setzero_si256(); T];
                    for c in 0..4 {
                        let qv = loadu(x.add(16 + 32 * c));
                        let lo = _mm256_and_si256(qv, m4);
                        let hi = _mm256_and_si256(_mm256_srli_epi16::<4>(qv), m4);
                        let (s_lo, s_hi) = (splat_scale(sc, masks, 2 * c), splat_scale(sc, masks, 2 * c + 1));
                        for t in 0..T {
                            let y = q8k(a[t], b).add(4 + 64 * c);
                            sumi[t] = $dpwssd(sumi[t], _mm256_maddubs_epi16(lo, loadu(y)), s_lo);
                            sumj[t] = $dpwssd(sumj[t], _mm256_maddubs_epi16(hi, loadu(y.add(32))), s_hi);
                        }
                    }
                    for t in 0..T {
                        // Min term: dmin * da * sum_j m_j * bsum32_j, 4 partial i32 lanes.
                        let pm = _mm256_zextsi128_si256(_mm_madd_epi16(mn, bs[t]));
                        let sumi = _mm256_add_epi32(sumi[t], sumj[t]);
                        acc[r][t] = _mm256_fmadd_ps(_mm256_mul_ps(d, da[t]), to_f32(sumi), acc[r][t]);
                        acc[r][t] = _mm256_fnmadd_ps(_mm256_mul_ps(dmin, da[t]), to_f32(pm), acc[r][t]);
                    }
                }
            }
            finish(&acc)
        }

        #[target_feature(enable = "avx2,fma,f16c")]
        pub(crate) unsafe fn tile_q6_k<const R: usize, const T: usize>(
            nb: usize,
            w: [*const u8; R],
            a: [*const u8; T],
        ) -> Tile<R, T> {
            let pmasks = pair_masks();
            let mut acc = [[_mm256_setzero_ps(); T]; R];
            for b in 0..nb {
                let mut da = [_mm256_setzero_ps(); T];
                let mut bs = [_mm256_setzero_si256(); T];
                for t in 0..T {
                    let y = q8k(a[t], b);
                    da[t] = _mm256_set1_ps(rdf32(y));
                    bs[t] = loadu(y.add(260));
                }
                prefetch_rows(&w, 210 * b, 210, 210 * nb);
                for r in 0..R {
                    let x = w[r].add(210 * b);
                    let d = f16_splat(x.add(208));
                    let s8 = loadu128(x.add(192));
                    let s16 = _mm256_cvtepi8_epi16(s8);
                    let s2 = scales16x2(s8);
                    // Two accumulators per result (even / odd k) to shorten
                    // the multiply-accumulate dependency chain.
                    let mut sumi = [_mm256_setzero_si256(); T];
                    let mut sumj = [_mm256_setzero_si256(); T];
                    for t in 0..T {
                        // Zero point: the stored value is q + 32, so subtract
                        // 32 * sum_j sc_j * bsum_j.
                        sumi[t] = _mm256_sub_epi32(sumi[t], _mm256_slli_epi32::<5>(_mm256_madd_epi16(bs[t], s16)));
                    }
                    for h in 0..2 {
                        let q = q6k_half(x, h);
                        for (k, q) in q.into_iter().enumerate() {
                            let sc = pair_scales_of(&s2, pmasks, 4 * h + k);
                            for t in 0..T {
                                let y = q8k(a[t], b).add(4 + 128 * h + 32 * k);
                                let p = _mm256_maddubs_epi16(q, loadu(y));
                                if k % 2 == 0 {
                                    sumi[t] = $dpwssd(sumi[t], p, sc);
                                } else {
                                    sumj[t] = $dpwssd(sumj[t], p, sc);
                                }
                            }
                        }
                    }
                    for t in 0..T {
                        let sumi = _mm256_add_epi32(sumi[t], sumj[t]);
                        acc[r][t] = _mm256_fmadd_ps(_mm256_mul_ps(d, da[t]), to_f32(sumi), acc[r][t]);
                    }
                }
            }
            finish(&acc)
        }

        #[target_feature(enable = "avx2,fma,f16c")]
        pub(crate) unsafe fn q2_k(nb: usize, w: *const u8, a: *const u8) -> f32 {
            let m3 = _mm256_set1_epi8(3);
            let mut acc = _mm256_setzero_ps();
            for b in 0..nb {
                let (x, y) = (w.add(84 * b), q8k(a, b));
                let da = rdf32(y);
                let raw = loadu128(x);
                let s8 = _mm_and_si128(raw, _mm_set1_epi8(0x0F));
                let m16 = _mm256_cvtepu8_epi16(_mm_and_si128(_mm_srli_epi16::<4>(raw), _mm_set1_epi8(0x0F)));
                let pm = _mm256_madd_epi16(m16, loadu(y.add(260)));
                let mut sumi = [_mm256_setzero_si256(); 2];
                for h in 0..2 {
                    let qv = loadu(x.add(16 + 32 * h));
                    let qs = [
                        qv,
                        _mm256_srli_epi16::<2>(qv),
                        _mm256_srli_epi16::<4>(qv),
                        _mm256_srli_epi16::<6>(qv),
                    ];
                    for (k, q) in qs.into_iter().enumerate() {
                        let q = _mm256_and_si256(q, m3);
                        let av = loadu(y.add(4 + 128 * h + 32 * k));
                        sumi[k % 2] = $dpwssd(sumi[k % 2], _mm256_maddubs_epi16(q, av), pair_scales(s8, 4 * h + k));
                    }
                }
                let sumi = _mm256_add_epi32(sumi[0], sumi[1]);
                let da = _mm256_set1_ps(da);
                acc = _mm256_fmadd_ps(_mm256_mul_ps(da, f16_splat(x.add(80))), to_f32(sumi), acc);
                acc = _mm256_fnmadd_ps(_mm256_mul_ps(da, f16_splat(x.add(82))), to_f32(pm), acc);
            }
            hsum_ps(acc)
        }

        #[target_feature(enable = "avx2,fma,f16c")]
        pub(crate) unsafe fn q3_k(nb: usize, w: *const u8, a: *const u8) -> f32 {
            let m3 = _mm256_set1_epi8(3);
            let four = _mm256_set1_epi8(4);
            let mut acc = _mm256_setzero_ps();
            for b in 0..nb {
                let (x, y) = (w.add(110 * b), q8k(a, b));
                let s8 = q3k_scales(x.add(96));
                // Stored value u = low2 + 4*hbit is q + 4: subtract 4 * sum sc_j * bsum_j.
                let corr = _mm256_slli_epi32::<2>(_mm256_madd_epi16(loadu(y.add(260)), _mm256_cvtepi8_epi16(s8)));
                let mut sumi = [_mm256_sub_epi32(_mm256_setzero_si256(), corr), _mm256_setzero_si256()];
                let hm = loadu(x);
                for h in 0..2 {
                    let qv = loadu(x.add(32 + 32 * h));
                    let lows = [
                        qv,
                        _mm256_srli_epi16::<2>(qv),
                        _mm256_srli_epi16::<4>(qv),
                        _mm256_srli_epi16::<6>(qv),
                    ];
                    for (k, low) in lows.into_iter().enumerate() {
                        let bit = _mm256_set1_epi8((1u8 << (4 * h + k)) as i8);
                        let hb = _mm256_and_si256(_mm256_cmpeq_epi8(_mm256_and_si256(hm, bit), bit), four);
                        let q = _mm256_or_si256(_mm256_and_si256(low, m3), hb);
                        let av = loadu(y.add(4 + 128 * h + 32 * k));
                        sumi[k % 2] = $dpwssd(sumi[k % 2], _mm256_maddubs_epi16(q, av), pair_scales(s8, 4 * h + k));
                    }
                }
                let sumi = _mm256_add_epi32(sumi[0], sumi[1]);
                acc = _mm256_fmadd_ps(_mm256_mul_ps(_mm256_set1_ps(rdf32(y)), f16_splat(x.add(108))), to_f32(sumi), acc);
            }
            hsum_ps(acc)
        }

        #[target_feature(enable = "avx2,fma,f16c")]
        pub(crate) unsafe fn q5_k(nb: usize, w: *const u8, a: *const u8) -> f32 {
            let m4 = _mm256_set1_epi8(0x0F);
            let masks = splat_masks();
            let sixteen = _mm256_set1_epi8(16);
            let mut acc = _mm256_setzero_ps();
            for b in 0..nb {
                let (x, y) = (w.add(176 * b), q8k(a, b));
                let da = rdf32(y);
                let (sc, mn) = k4_scales(x.add(4));
                let pm = _mm256_zextsi128_si256(_mm_madd_epi16(mn, bsums_pairs(y)));
                let qh = loadu(x.add(16));
                let mut sumi = _mm256_setzero_si256();
                let mut sumj = _mm256_setzero_si256();
                for c in 0..4 {
                    let qv = loadu(x.add(48 + 32 * c));
                    let (b_lo, b_hi) = (_mm256_set1_epi8((1u8 << (2 * c)) as i8), _mm256_set1_epi8((2u8 << (2 * c)) as i8));
                    let h_lo = _mm256_and_si256(_mm256_cmpeq_epi8(_mm256_and_si256(qh, b_lo), b_lo), sixteen);
                    let h_hi = _mm256_and_si256(_mm256_cmpeq_epi8(_mm256_and_si256(qh, b_hi), b_hi), sixteen);
                    let lo = _mm256_or_si256(_mm256_and_si256(qv, m4), h_lo);
                    let hi = _mm256_or_si256(_mm256_and_si256(_mm256_srli_epi16::<4>(qv), m4), h_hi);
                    let yy = y.add(4 + 64 * c);
                    sumi = $dpwssd(sumi, _mm256_maddubs_epi16(lo, loadu(yy)), splat_scale(sc, masks, 2 * c));
                    sumj = $dpwssd(sumj, _mm256_maddubs_epi16(hi, loadu(yy.add(32))), splat_scale(sc, masks, 2 * c + 1));
                }
                let da = _mm256_set1_ps(da);
                let sumi = _mm256_add_epi32(sumi, sumj);
                acc = _mm256_fmadd_ps(_mm256_mul_ps(da, f16_splat(x)), to_f32(sumi), acc);
                acc = _mm256_fnmadd_ps(_mm256_mul_ps(da, f16_splat(x.add(2))), to_f32(pm), acc);
            }
            hsum_ps(acc)
        }

    };
}

/// Kernels built from AVX2 instructions only.
pub(crate) mod avx2 {
    use super::*;
    kernels!(dpbusd_avx2, dpwssd_avx2);
}

/// The same kernels with AVX-512 VNNI dot-product instructions.
pub(crate) mod vnni {
    use super::*;
    kernels!(dpbusd_vnni, dpwssd_vnni);
}
