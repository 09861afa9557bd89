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
//!
//! Q4_K and Q6_K (against Q8_K activations) follow the same scheme per
//! sub-block (32 resp. 16 elements), then multiply the eight rows' exact
//! sub-block sums by their integer scales (`vpmulld`) before the one float
//! step per super-block; Q4_K's mins term comes from the activation's
//! 16-element sums with `vpmaddwd`, Q6_K's `-32` offset likewise starts each
//! sub-block sum at `-32 * bsum`.

use super::dot::dpbusd_avx2;
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

/// The float step of one block against Q8_0 activations, the same for
/// Q4_0, Q5_0 and Q8_0: `acc[g][t] = fma(d_w · d_a, (float)(lo + hi),
/// acc[g][t])`, with group `g`'s eight f16 scales at `w[g] + at` and row
/// `t`'s block `b` scale at `a[t] + 34 b`.
#[inline]
#[target_feature(enable = "avx2,fma,f16c")]
#[allow(clippy::too_many_arguments)]
unsafe fn q8_block_step<const G: usize, const T: usize>(
    acc: &mut [[__m256; T]; G],
    lo: &[[__m256i; T]; G],
    hi: &[[__m256i; T]; G],
    w: [*const u8; G],
    at: usize,
    a: [*const u8; T],
    b: usize,
) {
    for g in 0..G {
        let dw = _mm256_cvtph_ps(loadu128(w[g].add(at)));
        for t in 0..T {
            let d = _mm256_mul_ps(dw, f16_splat(a[t].add(34 * b)));
            let sum = _mm256_add_epi32(lo[g][t], hi[g][t]);
            acc[g][t] = _mm256_fmadd_ps(d, _mm256_cvtepi32_ps(sum), acc[g][t]);
        }
    }
}

/// Results of a G x T tile: `out[g][t][i]` is row `8g + i` against
/// activation row `t`.
pub(crate) type PTile<const G: usize, const T: usize> = [[[f32; 8]; T]; G];

macro_rules! packed_kernels {
    ($dpbusd:ident, $dpwssd:ident, $feat:literal) => {
        /// Q4_0 x8 against Q8_0 activations; `s[t]` are activation row t's block sums.
        #[target_feature(enable = $feat)]
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
                q8_block_step(&mut acc, &lo, &hi, w, 144 * b, a, b);
            }
            store(&acc)
        }

        /// Q5_0 x8 against Q8_0 activations.
        #[target_feature(enable = $feat)]
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
                q8_block_step(&mut acc, &lo, &hi, w, 176 * b, a, b);
            }
            store(&acc)
        }

        /// Q8_0 x8 against Q8_0 activations (sign trick: |w| unsigned,
        /// the activation takes w's sign; |products| <= 128*127).
        #[target_feature(enable = $feat)]
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
                q8_block_step(&mut acc, &lo, &hi, w, 272 * b, a, b);
            }
            store(&acc)
        }

        /// Q4_K x8 (`crate::repack` layout, 1152 bytes per group-block)
        /// against Q8_K activations: per super-block the mins term from
        /// the activation's 16-element sums, then the scaled sub-block sums.
        #[target_feature(enable = $feat)]
        pub(crate) unsafe fn q4_k<const G: usize, const T: usize>(
            nb: usize,
            w: [*const u8; G],
            a: [*const u8; T],
        ) -> PTile<G, T> {
            let m4 = _mm256_set1_epi8(0x0F);
            let mut acc = [[_mm256_setzero_ps(); T]; G];
            for b in 0..nb {
                for g in 0..G {
                    let x = w[g].add(1152 * b);
                    prefetch::<T>(x, 1152);
                    let (sc, mn) = k4_scales(x.add(32));
                    let dmin = _mm256_cvtph_ps(loadu128(x.add(16)));
                    for t in 0..T {
                        let y = a[t].add(292 * b);
                        let mut ms = _mm256_setzero_si256();
                        for j in 0..8 {
                            // (m_j, m_j) x (bsums[2j], bsums[2j+1]) per row lane.
                            ms = $dpwssd(ms, mn[j], bcast(y.add(260 + 4 * j)));
                        }
                        let dm = _mm256_mul_ps(dmin, _mm256_set1_ps(rdf32(y)));
                        acc[g][t] = _mm256_fnmadd_ps(dm, _mm256_cvtepi32_ps(ms), acc[g][t]);
                    }
                    let mut is = [_mm256_setzero_si256(); T];
                    for p in 0..4 {
                        let mut lo = [_mm256_setzero_si256(); T];
                        let mut hi = [_mm256_setzero_si256(); T];
                        for c in 0..8 {
                            let v = loadu(x.add(128 + 32 * (8 * p + c)));
                            let vl = _mm256_and_si256(v, m4);
                            let vh = _mm256_and_si256(_mm256_srli_epi16::<4>(v), m4);
                            for t in 0..T {
                                let y = a[t].add(292 * b + 4 + 64 * p + 4 * c);
                                lo[t] = $dpbusd(lo[t], vl, bcast(y));
                                hi[t] = $dpbusd(hi[t], vh, bcast(y.add(32)));
                            }
                        }
                        for t in 0..T {
                            let s = _mm256_add_epi32(_mm256_mullo_epi32(lo[t], sc[2 * p]), _mm256_mullo_epi32(hi[t], sc[2 * p + 1]));
                            is[t] = _mm256_add_epi32(is[t], s);
                        }
                    }
                    let dw = _mm256_cvtph_ps(loadu128(x));
                    for t in 0..T {
                        let d = _mm256_mul_ps(dw, _mm256_set1_ps(rdf32(a[t].add(292 * b))));
                        acc[g][t] = _mm256_fmadd_ps(d, _mm256_cvtepi32_ps(is[t]), acc[g][t]);
                    }
                }
            }
            store(&acc)
        }

        /// Q6_K x8 (`crate::repack` layout, 1680 bytes per group-block)
        /// against Q8_K activations: per sub-block of 16 the sum of
        /// `q * a` (q in 0..64) started at `-32 * bsum`, times its scale.
        #[target_feature(enable = $feat)]
        pub(crate) unsafe fn q6_k<const G: usize, const T: usize>(
            nb: usize,
            w: [*const u8; G],
            a: [*const u8; T],
        ) -> PTile<G, T> {
            let m4 = _mm256_set1_epi8(0x0F);
            let m2 = _mm256_set1_epi8(0x30);
            let mut acc = [[_mm256_setzero_ps(); T]; G];
            for b in 0..nb {
                for g in 0..G {
                    let x = w[g].add(1680 * b);
                    prefetch::<T>(x, 1680);
                    let mut is = [_mm256_setzero_si256(); T];
                    for h in 0..2 {
                        for u in 0..2 {
                            // The four sub-blocks 8h + 2s + u (s = 0..3) share the
                            // ql chunks (low nibbles: s = 0, 1; high: s = 2, 3) and
                            // the qh chunk (bits 2s..2s+2) of elements 16u..16u+16
                            // of each 32-element run.
                            let mut lo = [[_mm256_setzero_si256(); T]; 4];
                            for (sidx, l) in lo.iter_mut().enumerate() {
                                let j = 8 * h + 2 * sidx + u;
                                for t in 0..T {
                                    let bs = (a[t].add(292 * b + 260 + 2 * j) as *const i16).read_unaligned();
                                    l[t] = _mm256_set1_epi32(-32 * i32::from(bs));
                                }
                            }
                            for c in 0..4 {
                                // Step 8h + 4u + c: ql (low run), ql (high run), qh.
                                let st = x.add(144 + 96 * (8 * h + 4 * u + c));
                                let (va, vb, vh) = (loadu(st), loadu(st.add(32)), loadu(st.add(64)));
                                let q = [
                                    _mm256_or_si256(_mm256_and_si256(va, m4), _mm256_and_si256(_mm256_slli_epi16::<4>(vh), m2)),
                                    _mm256_or_si256(_mm256_and_si256(vb, m4), _mm256_and_si256(_mm256_slli_epi16::<2>(vh), m2)),
                                    _mm256_or_si256(_mm256_and_si256(_mm256_srli_epi16::<4>(va), m4), _mm256_and_si256(vh, m2)),
                                    _mm256_or_si256(_mm256_and_si256(_mm256_srli_epi16::<4>(vb), m4), _mm256_and_si256(_mm256_srli_epi16::<2>(vh), m2)),
                                ];
                                for (sidx, l) in lo.iter_mut().enumerate() {
                                    let j = 8 * h + 2 * sidx + u;
                                    for t in 0..T {
                                        l[t] = $dpbusd(l[t], q[sidx], bcast(a[t].add(292 * b + 4 + 16 * j + 4 * c)));
                                    }
                                }
                            }
                            for (sidx, l) in lo.iter().enumerate() {
                                let j = 8 * h + 2 * sidx + u;
                                let sc = _mm256_cvtepi8_epi32(_mm_loadl_epi64(x.add(16 + 8 * j) as *const __m128i));
                                for t in 0..T {
                                    is[t] = _mm256_add_epi32(is[t], _mm256_mullo_epi32(l[t], sc));
                                }
                            }
                        }
                    }
                    let dw = _mm256_cvtph_ps(loadu128(x));
                    for t in 0..T {
                        let d = _mm256_mul_ps(dw, _mm256_set1_ps(rdf32(a[t].add(292 * b))));
                        acc[g][t] = _mm256_fmadd_ps(d, _mm256_cvtepi32_ps(is[t]), acc[g][t]);
                    }
                }
            }
            store(&acc)
        }
    };
}

/// The eight sub-block scales and mins of eight rows from the x8 Q4_K
/// scale bytes (byte `8k + i` = `scales[k]` of row i), unpacked for all
/// eight rows at once with byte-wise shifts and masks on u64s (the
/// 6-bit packing of `blocks::scale_min_k4`). Scales come as i32 lanes,
/// mins as i16 pairs `(m, m)` per lane, ready for `vpmaddwd` against a
/// pair of activation 16-element sums.
#[inline]
#[target_feature(enable = "avx2,fma,f16c")]
unsafe fn k4_scales(p: *const u8) -> ([__m256i; 8], [__m256i; 8]) {
    const LO6: u64 = 0x3F3F_3F3F_3F3F_3F3F;
    const LO4: u64 = 0x0F0F_0F0F_0F0F_0F0F;
    const LO2: u64 = 0x0303_0303_0303_0303;
    let q: [u64; 12] = std::array::from_fn(|k| (p.add(8 * k) as *const u64).read_unaligned());
    let mut sc = [_mm256_setzero_si256(); 8];
    let mut mn = [_mm256_setzero_si256(); 8];
    for j in 0..8 {
        let (s, m) = if j < 4 {
            (q[j] & LO6, q[j + 4] & LO6)
        } else {
            (
                (q[j + 4] & LO4) | (((q[j - 4] >> 6) & LO2) << 4),
                ((q[j + 4] >> 4) & LO4) | (((q[j] >> 6) & LO2) << 4),
            )
        };
        sc[j] = _mm256_cvtepu8_epi32(_mm_cvtsi64_si128(s as i64));
        let m32 = _mm256_cvtepu8_epi32(_mm_cvtsi64_si128(m as i64));
        mn[j] = _mm256_or_si256(m32, _mm256_slli_epi32::<16>(m32));
    }
    (sc, mn)
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
    use super::super::dot::dpwssd_avx2;
    use super::*;
    packed_kernels!(dpbusd_avx2, dpwssd_avx2, "avx2,fma,f16c");
}

/// AVX-512 VNNI instances.
pub(crate) mod vnni {
    use super::*;
    // The AVX-512 features let the compiler use all 32 vector registers
    // (the 4-row Q4_K/Q6_K tiles spilled with 16) and see `vpdpbusd` as an
    // intrinsic instead of an opaque asm block.
    packed_kernels!(dpbusd_vnni_native, dpwssd_vnni_native, "avx2,fma,f16c,avx512f,avx512vl,avx512vnni");

    /// `vpdpbusd` as an intrinsic, for code compiled with the AVX-512
    /// features.
    #[inline]
    #[target_feature(enable = "avx2,fma,f16c,avx512f,avx512vl,avx512vnni")]
    unsafe fn dpbusd_vnni_native(acc: __m256i, u: __m256i, s: __m256i) -> __m256i {
        _mm256_dpbusd_epi32(acc, u, s)
    }

    /// `vpdpwssd` (i16 pairs, exact: |m * bsum| < 2^6 * 2^15) likewise.
    #[inline]
    #[target_feature(enable = "avx2,fma,f16c,avx512f,avx512vl,avx512vnni")]
    unsafe fn dpwssd_vnni_native(acc: __m256i, a: __m256i, b: __m256i) -> __m256i {
        _mm256_dpwssd_epi32(acc, a, b)
    }
}
