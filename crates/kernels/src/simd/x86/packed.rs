//! Kernels for the x8 interleaved weight layout (`crate::repack`): eight
//! weight rows per 32-byte vector, one activation group of four bytes
//! broadcast against them, so one `vpdpbusd` (or its AVX2 emulation with
//! `vpmaddubsw` + `vpmaddwd`, exact for these value ranges, see `dot.rs`)
//! advances eight rows and the i32 lanes end as the eight rows' exact block
//! sums. The float work (convert, scale, FMA) is then once per eight rows
//! and block, not once per row and block.
//!
//! Each result is `acc = fma(d_w * d_a, (float) sum, acc)` over the blocks in
//! order, whatever the tile shape (`G` groups of eight rows x `T` activation
//! rows), so results are bit-identical to `crate::repack::dot_ref` and do not
//! depend on batching. Integer sums are split over two accumulators per
//! result (shorter dependency chains) and added exactly.

use super::dot::{dpbusd_avx2, dpbusd_vnni};
use super::*;

/// Sum of the 32 quants of Q8_0 activation block `b` of each row, as
/// `out[t * nb + b]` (the zero-point terms of Q4_0/Q5_0).
#[target_feature(enable = "avx2,fma,f16c")]
pub(crate) unsafe fn block_sums(nb: usize, a: *const u8, n_a: usize, out: *mut i32) {
    let ones8 = _mm256_set1_epi8(1);
    let ones16 = _mm256_set1_epi16(1);
    for i in 0..n_a * nb {
        let v = loadu(a.add(34 * i + 2));
        let s = _mm256_madd_epi16(_mm256_maddubs_epi16(ones8, v), ones16);
        *out.add(i) = hsum_epi32(s);
    }
}

#[inline]
#[target_feature(enable = "avx2,fma,f16c")]
unsafe fn bcast(p: *const u8) -> __m256i {
    _mm256_set1_epi32(rd32(p) as i32)
}

/// Bit `v` of every byte of `hp` moved to bit 4 and masked: the Q5_0 high
/// bits (value 16) of vector `v`. A 16-bit shift cannot carry the wanted
/// bit across a byte boundary here (it moves by at most 4 toward bit 4).
#[inline]
#[target_feature(enable = "avx2,fma,f16c")]
unsafe fn hbits(hp: __m256i, v: usize) -> __m256i {
    let s = match v {
        0 => _mm256_slli_epi16::<4>(hp),
        1 => _mm256_slli_epi16::<3>(hp),
        2 => _mm256_slli_epi16::<2>(hp),
        3 => _mm256_slli_epi16::<1>(hp),
        4 => hp,
        5 => _mm256_srli_epi16::<1>(hp),
        6 => _mm256_srli_epi16::<2>(hp),
        _ => _mm256_srli_epi16::<3>(hp),
    };
    _mm256_and_si256(s, _mm256_set1_epi8(16))
}

/// Bytes ahead of the current block that multi-token tiles prefetch
/// (`cargo bench -p hearth-kernels -- --big`, p8 column: Q4_0 n=4864 67 vs
/// 110 ns without). Single-token passes (decode) do not prefetch: one
/// sequential stream is handled best by the hardware prefetcher alone
/// (p1: 169 ns with none, 178-225 with 1-4 KiB distances; noisy machine).
const PF_DIST: usize = 4096;

/// Prefetches the cache lines of one group-block `PF_DIST` bytes ahead.
#[inline]
#[target_feature(enable = "avx2,fma,f16c")]
unsafe fn prefetch<const T: usize>(x: *const u8, bytes: usize) {
    if T == 1 {
        return;
    }
    let mut o = 0;
    while o < bytes {
        // wrapping_add: past the end of the matrix is fine for a prefetch.
        if PF_DIST > 0 {
            _mm_prefetch::<_MM_HINT_T0>(x.wrapping_add(PF_DIST + o) as *const i8);
        }
        o += 64;
    }
}

/// Results of a G x T tile: `out[g][t][i]` is row `8g + i` against
/// activation row `t`.
pub(crate) type PTile<const G: usize, const T: usize> = [[[f32; 8]; T]; G];

macro_rules! packed_kernels {
    ($dpbusd:ident) => {
        /// Q4_0 x8 against Q8_0 activations; `s[t]` are activation row t's block sums.
        #[target_feature(enable = "avx2,fma,f16c")]
        pub(crate) unsafe fn q4_0<const G: usize, const T: usize>(
            nb: usize,
            w: [*const u8; G],
            a: [*const u8; T],
            s: [*const i32; T],
        ) -> PTile<G, T> {
            let m4 = _mm256_set1_epi8(0x0F);
            let mut acc = [[_mm256_setzero_ps(); T]; G];
            for b in 0..nb {
                let mut lo = [[_mm256_setzero_si256(); T]; G];
                let mut hi = [[_mm256_setzero_si256(); T]; G];
                for t in 0..T {
                    let c = _mm256_set1_epi32(-8 * *s[t].add(b));
                    for g in 0..G {
                        lo[g][t] = c;
                    }
                }
                for g in 0..G {
                    prefetch::<T>(w[g].add(144 * b), 144);
                    let x = w[g].add(144 * b + 16);
                    for c in 0..4 {
                        let v = loadu(x.add(32 * c));
                        let vl = _mm256_and_si256(v, m4);
                        let vh = _mm256_and_si256(_mm256_srli_epi16::<4>(v), m4);
                        for t in 0..T {
                            let y = a[t].add(34 * b + 2 + 4 * c);
                            lo[g][t] = $dpbusd(lo[g][t], vl, bcast(y));
                            hi[g][t] = $dpbusd(hi[g][t], vh, bcast(y.add(16)));
                        }
                    }
                }
                for g in 0..G {
                    let dw = _mm256_cvtph_ps(loadu128(w[g].add(144 * b)));
                    for t in 0..T {
                        let d = _mm256_mul_ps(dw, f16_splat(a[t].add(34 * b)));
                        let sum = _mm256_add_epi32(lo[g][t], hi[g][t]);
                        acc[g][t] = _mm256_fmadd_ps(d, _mm256_cvtepi32_ps(sum), acc[g][t]);
                    }
                }
            }
            store(&acc)
        }

        /// Q5_0 x8 against Q8_0 activations.
        #[target_feature(enable = "avx2,fma,f16c")]
        pub(crate) unsafe fn q5_0<const G: usize, const T: usize>(
            nb: usize,
            w: [*const u8; G],
            a: [*const u8; T],
            s: [*const i32; T],
        ) -> PTile<G, T> {
            let m4 = _mm256_set1_epi8(0x0F);
            let mut acc = [[_mm256_setzero_ps(); T]; G];
            for b in 0..nb {
                let mut lo = [[_mm256_setzero_si256(); T]; G];
                let mut hi = [[_mm256_setzero_si256(); T]; G];
                for t in 0..T {
                    let c = _mm256_set1_epi32(-16 * *s[t].add(b));
                    for g in 0..G {
                        lo[g][t] = c;
                    }
                }
                for g in 0..G {
                    let x = w[g].add(176 * b);
                    prefetch::<T>(x, 176);
                    let hp = loadu(x.add(16));
                    for c in 0..4 {
                        let v = loadu(x.add(48 + 32 * c));
                        let vl = _mm256_or_si256(_mm256_and_si256(v, m4), hbits(hp, c));
                        let vh = _mm256_or_si256(_mm256_and_si256(_mm256_srli_epi16::<4>(v), m4), hbits(hp, 4 + c));
                        for t in 0..T {
                            let y = a[t].add(34 * b + 2 + 4 * c);
                            lo[g][t] = $dpbusd(lo[g][t], vl, bcast(y));
                            hi[g][t] = $dpbusd(hi[g][t], vh, bcast(y.add(16)));
                        }
                    }
                }
                for g in 0..G {
                    let dw = _mm256_cvtph_ps(loadu128(w[g].add(176 * b)));
                    for t in 0..T {
                        let d = _mm256_mul_ps(dw, f16_splat(a[t].add(34 * b)));
                        let sum = _mm256_add_epi32(lo[g][t], hi[g][t]);
                        acc[g][t] = _mm256_fmadd_ps(d, _mm256_cvtepi32_ps(sum), acc[g][t]);
                    }
                }
            }
            store(&acc)
        }

        /// Q8_0 x8 against Q8_0 activations (sign trick: |w| unsigned,
        /// the activation takes w's sign; |products| <= 128*127).
        #[target_feature(enable = "avx2,fma,f16c")]
        pub(crate) unsafe fn q8_0<const G: usize, const T: usize>(
            nb: usize,
            w: [*const u8; G],
            a: [*const u8; T],
            _s: [*const i32; T],
        ) -> PTile<G, T> {
            let mut acc = [[_mm256_setzero_ps(); T]; G];
            for b in 0..nb {
                let mut lo = [[_mm256_setzero_si256(); T]; G];
                let mut hi = [[_mm256_setzero_si256(); T]; G];
                for g in 0..G {
                    prefetch::<T>(w[g].add(272 * b), 272);
                    let x = w[g].add(272 * b + 16);
                    for c in 0..8 {
                        let v = loadu(x.add(32 * c));
                        let av = _mm256_sign_epi8(v, v);
                        for t in 0..T {
                            let y = _mm256_sign_epi8(bcast(a[t].add(34 * b + 2 + 4 * c)), v);
                            if c % 2 == 0 {
                                lo[g][t] = $dpbusd(lo[g][t], av, y);
                            } else {
                                hi[g][t] = $dpbusd(hi[g][t], av, y);
                            }
                        }
                    }
                }
                for g in 0..G {
                    let dw = _mm256_cvtph_ps(loadu128(w[g].add(272 * b)));
                    for t in 0..T {
                        let d = _mm256_mul_ps(dw, f16_splat(a[t].add(34 * b)));
                        let sum = _mm256_add_epi32(lo[g][t], hi[g][t]);
                        acc[g][t] = _mm256_fmadd_ps(d, _mm256_cvtepi32_ps(sum), acc[g][t]);
                    }
                }
            }
            store(&acc)
        }
    };
}

#[inline]
#[target_feature(enable = "avx2,fma,f16c")]
unsafe fn store<const G: usize, const T: usize>(acc: &[[__m256; T]; G]) -> PTile<G, T> {
    let mut out = [[[0f32; 8]; T]; G];
    for g in 0..G {
        for t in 0..T {
            _mm256_storeu_ps(out[g][t].as_mut_ptr(), acc[g][t]);
        }
    }
    out
}

/// AVX2-only instances.
pub(crate) mod avx2 {
    use super::*;
    packed_kernels!(dpbusd_avx2);
}

/// AVX-512 VNNI instances.
pub(crate) mod vnni {
    use super::*;
    packed_kernels!(dpbusd_vnni);
}
