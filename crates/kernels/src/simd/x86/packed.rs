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

/// Per Q8_0 activation block `b` of each row `t`, at `[t * nb + b]`: the
/// sum of its 32 quants in `sums` (the zero-point terms of Q4_0/Q5_0 and
/// of the offset Q8_0 layout) and its scale as f32 in `scales` (exact; read
/// once per block here instead of converted from f16 once per row group in
/// the kernels).
#[target_feature(enable = "avx2,fma,f16c")]
pub(crate) unsafe fn block_prep(nb: usize, a: *const u8, n_a: usize, sums: *mut i32, scales: *mut f32) {
    let ones8 = _mm256_set1_epi8(1);
    let ones16 = _mm256_set1_epi16(1);
    for i in 0..n_a * nb {
        let v = loadu(a.add(34 * i + 2));
        let s = _mm256_madd_epi16(_mm256_maddubs_epi16(ones8, v), ones16);
        *sums.add(i) = hsum_epi32(s);
        *scales.add(i) = _mm_cvtss_f32(_mm_cvtph_ps(_mm_cvtsi32_si128(i32::from(rd16(a.add(34 * i))))));
    }
}

/// Tiles of this many activation rows or more keep one integer accumulator
/// per (row group, activation row) instead of two: eight independent
/// `vpdpbusd` chains already cover its latency, and the registers go to the
/// extra rows.
const ONE_CHAIN: usize = 8;

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
/// `t`'s block `b` scale at `da[t] + b` (`block_prep`). With `T >=
/// ONE_CHAIN` the whole sum is in `lo`.
#[inline]
#[target_feature(enable = "avx2,fma,f16c")]
#[allow(clippy::too_many_arguments)]
unsafe fn q8_block_step<const G: usize, const T: usize>(
    acc: &mut [[__m256; T]; G],
    lo: &[[__m256i; T]; G],
    hi: &[[__m256i; T]; G],
    w: [*const u8; G],
    at: usize,
    da: [*const f32; T],
    b: usize,
) {
    for g in 0..G {
        let dw = _mm256_cvtph_ps(loadu128(w[g].add(at)));
        for t in 0..T {
            let d = _mm256_mul_ps(dw, _mm256_set1_ps(*da[t].add(b)));
            let sum = if T >= ONE_CHAIN { lo[g][t] } else { _mm256_add_epi32(lo[g][t], hi[g][t]) };
            acc[g][t] = _mm256_fmadd_ps(d, _mm256_cvtepi32_ps(sum), acc[g][t]);
        }
    }
}

/// Results of a G x T tile: `out[g][t][i]` is row `8g + i` against
/// activation row `t`.
pub(crate) type PTile<const G: usize, const T: usize> = [[[f32; 8]; T]; G];

macro_rules! packed_kernels {
    ($dpbusd:ident, $dpwssd:ident, $q8_prep:ident, $q8_dot:ident, $q8_zero:expr, $feat:literal) => {
        /// Q4_0 x8 against Q8_0 activations; `s[t]` and `da[t]` are
        /// activation row t's block sums and scales (`block_prep`).
        #[target_feature(enable = $feat)]
        pub(crate) unsafe fn q4_0<const G: usize, const T: usize>(
            nb: usize,
            w: [*const u8; G],
            a: [*const u8; T],
            s: [*const i32; T],
            da: [*const f32; T],
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
                            if T >= ONE_CHAIN {
                                lo[g][t] = $dpbusd(lo[g][t], vh, bcast(y.add(16)));
                            } else {
                                hi[g][t] = $dpbusd(hi[g][t], vh, bcast(y.add(16)));
                            }
                        }
                    }
                }
                q8_block_step(&mut acc, &lo, &hi, w, 144 * b, da, b);
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
            da: [*const f32; T],
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
                            if T >= ONE_CHAIN {
                                lo[g][t] = $dpbusd(lo[g][t], vh, bcast(y.add(16)));
                            } else {
                                hi[g][t] = $dpbusd(hi[g][t], vh, bcast(y.add(16)));
                            }
                        }
                    }
                }
                q8_block_step(&mut acc, &lo, &hi, w, 176 * b, da, b);
            }
            store(&acc)
        }

        /// Q8_0 x8 (offset layout, `crate::repack::Q8_OFFSET`) against
        /// Q8_0 activations; `$q8_prep`/`$q8_dot` are the tier's way of
        /// multiplying the stored bytes by the activation bytes, `$q8_zero`
        /// times the block sum the matching correction.
        #[target_feature(enable = $feat)]
        pub(crate) unsafe fn q8_0<const G: usize, const T: usize>(
            nb: usize,
            w: [*const u8; G],
            a: [*const u8; T],
            s: [*const i32; T],
            da: [*const f32; T],
        ) -> PTile<G, T> {
            let mut acc = [[_mm256_setzero_ps(); T]; G];
            for b in 0..nb {
                let mut lo = [[_mm256_setzero_si256(); T]; G];
                let mut hi = [[_mm256_setzero_si256(); T]; G];
                for t in 0..T {
                    let c = _mm256_set1_epi32($q8_zero * *s[t].add(b));
                    for g in 0..G {
                        lo[g][t] = c;
                    }
                }
                for g in 0..G {
                    prefetch::<T>(w[g].add(272 * b), 272);
                    let x = w[g].add(272 * b + 16);
                    for c in 0..8 {
                        let p = $q8_prep(loadu(x.add(32 * c)));
                        for t in 0..T {
                            let y = bcast(a[t].add(34 * b + 2 + 4 * c));
                            if c % 2 == 0 || T >= ONE_CHAIN {
                                lo[g][t] = $q8_dot(lo[g][t], p, y);
                            } else {
                                hi[g][t] = $q8_dot(hi[g][t], p, y);
                            }
                        }
                    }
                }
                q8_block_step(&mut acc, &lo, &hi, w, 272 * b, da, b);
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
        /// `q * a` (q in 0..64) times its scale, less `32 · Σ_j sc_j ·
        /// bsum_j` for the `-32` offset, taken with `vpdpwssd` over pairs
        /// of sub-blocks (eight instructions per activation row and
        /// super-block instead of sixteen scalar products broadcast).
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
                    // Offset term: lane i of `off[t]` = Σ_j sc_j(row i) · bsum_j(row t).
                    // The scale bytes of sub-blocks 2k and 2k+1 (eight rows each)
                    // are interleaved into i16 pairs, one pair per row lane.
                    let mut off = [_mm256_setzero_si256(); T];
                    for k in 0..8 {
                        let sb = _mm_loadu_si128(x.add(16 + 16 * k) as *const __m128i);
                        let pairs = _mm256_cvtepi8_epi16(_mm_unpacklo_epi8(sb, _mm_srli_si128::<8>(sb)));
                        for t in 0..T {
                            off[t] = $dpwssd(off[t], pairs, bcast(a[t].add(292 * b + 260 + 4 * k)));
                        }
                    }
                    let mut is: [__m256i; T] = std::array::from_fn(|t| _mm256_slli_epi32::<5>(_mm256_sub_epi32(_mm256_setzero_si256(), off[t])));
                    for h in 0..2 {
                        for u in 0..2 {
                            // The four sub-blocks 8h + 2s + u (s = 0..3) share the
                            // ql chunks (low nibbles: s = 0, 1; high: s = 2, 3) and
                            // the qh chunk (bits 2s..2s+2) of elements 16u..16u+16
                            // of each 32-element run.
                            let mut lo = [[_mm256_setzero_si256(); T]; 4];
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
    packed_kernels!(dpbusd_avx2, dpwssd_avx2, q8_prep, q8_dot, 0, "avx2,fma,f16c");

    /// The stored Q8_0 byte back to the signed quant `w`, and `|w|`.
    /// Without `vpdpbusd`, `vpmaddubsw` saturates its i16 pair sums, so the
    /// unsigned operand must stay within 128: the sign trick (`|w|` times
    /// the activation with `w`'s sign, |pair sum| <= 2 · 128 · 127) instead
    /// of the offset, whose correction is then zero.
    #[inline]
    #[target_feature(enable = "avx2,fma,f16c")]
    unsafe fn q8_prep(v: __m256i) -> (__m256i, __m256i) {
        let w = _mm256_xor_si256(v, _mm256_set1_epi8(crate::repack::Q8_OFFSET as i8));
        (_mm256_sign_epi8(w, w), w)
    }

    #[inline]
    #[target_feature(enable = "avx2,fma,f16c")]
    unsafe fn q8_dot(acc: __m256i, (aw, w): (__m256i, __m256i), y: __m256i) -> __m256i {
        dpbusd_avx2(acc, aw, _mm256_sign_epi8(y, w))
    }
}

/// AVX-512 VNNI instances.
pub(crate) mod vnni {
    use super::*;
    // The AVX-512 features let the compiler use all 32 vector registers
    // (the 4-row Q4_K/Q6_K tiles spilled with 16) and see `vpdpbusd` as an
    // intrinsic instead of an opaque asm block.
    packed_kernels!(dpbusd_vnni_native, dpwssd_vnni_native, q8_prep, q8_dot, -128, "avx2,fma,f16c,avx512f,avx512vl,avx512vnni");

    /// The stored Q8_0 bytes are `w + 128` as unsigned bytes, exactly what
    /// `vpdpbusd` multiplies (no saturation: it sums four products into
    /// i32); the `+ 128` is taken out by starting at `-128 · Σ a`.
    #[inline]
    #[target_feature(enable = "avx2,fma,f16c,avx512f,avx512vl,avx512vnni")]
    unsafe fn q8_prep(v: __m256i) -> __m256i {
        v
    }

    #[inline]
    #[target_feature(enable = "avx2,fma,f16c,avx512f,avx512vl,avx512vnni")]
    unsafe fn q8_dot(acc: __m256i, u: __m256i, y: __m256i) -> __m256i {
        _mm256_dpbusd_epi32(acc, u, y)
    }

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
