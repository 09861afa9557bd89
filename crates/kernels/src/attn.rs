//! Attention inner loops over an F16 key/value cache.
//!
//! Two operations, each with a plain reference ([`kq_f16_ref`],
//! [`pv_f16_ref`]) and an AVX2+F16C version that is **bit-identical** to it:
//!
//! * [`kq_f16`]: raw scores `s[h][j] = Σ_d q[h][d] · k[j][d]` of several
//!   query heads (those sharing one KV head under grouped-query attention)
//!   against `n` cached keys. The sum over `d` runs in order, one rounding
//!   per multiply and per add, exactly as the scalar loop. The SIMD version
//!   gets its parallelism across *keys* instead: eight keys are converted
//!   from f16 and transposed once, then every head runs eight independent
//!   in-order sums in the lanes of one register. Reordering the sum (the
//!   usual horizontal SIMD dot) would change the scores in the last bit and
//!   could flip a greedy token against the F32/F16 fidelity fixtures.
//! * [`pv_f16`]: `out[d] += Σ_j p[j] · v[j][d]` in order of `j`, skipping
//!   zero weights, vectorised across `d` (again no reordering).
//!
//! Rounding of the query and of the softmax weights to f16 (as ggml does for
//! an F16 cache) is the caller's job: both functions take those values as
//! f32 holding f16-representable numbers.
//!
//! Absent: F32 caches (the caller's scalar loop handles them), NEON versions
//! (aarch64 runs the reference), quantized caches.

use half::f16;

/// Reference for [`kq_f16`]: `scores[h * n + j] = Σ_d q[h * dk + d] · k[j * dk + d]`
/// for `h < q.len() / dk`, `j < n = k.len() / dk`, summed in order of `d`.
///
/// # Panics
/// If `dk == 0`, `q.len()` or `k.len()` is not a multiple of `dk`, or
/// `scores.len() != heads * n`.
pub fn kq_f16_ref(q: &[f32], k: &[f16], dk: usize, scores: &mut [f32]) {
    let (heads, n) = kq_dims(q, k, dk, scores);
    for h in 0..heads {
        let qh = &q[h * dk..(h + 1) * dk];
        for j in 0..n {
            let kj = &k[j * dk..(j + 1) * dk];
            let mut dot = 0f32;
            for (a, b) in qh.iter().zip(kj) {
                dot += a * b.to_f32();
            }
            scores[h * n + j] = dot;
        }
    }
}

/// Reference for [`pv_f16`]: for `j` in order, unless `p[j] == 0`,
/// `out[d] += p[j] · v[j * dv + d]` with `dv = out.len()`.
///
/// # Panics
/// If `v.len() != p.len() * out.len()`.
pub fn pv_f16_ref(p: &[f32], v: &[f16], out: &mut [f32]) {
    let dv = out.len();
    assert_eq!(v.len(), p.len() * dv, "hearth-kernels: pv_f16: {} values is not {} rows of {dv}", v.len(), p.len());
    for (j, &pj) in p.iter().enumerate() {
        if pj == 0.0 {
            continue;
        }
        for (acc, vv) in out.iter_mut().zip(&v[j * dv..(j + 1) * dv]) {
            *acc += pj * vv.to_f32();
        }
    }
}

fn kq_dims(q: &[f32], k: &[f16], dk: usize, scores: &[f32]) -> (usize, usize) {
    #[allow(clippy::manual_is_multiple_of)]
    let ok = dk > 0 && q.len() % dk == 0 && k.len() % dk == 0;
    assert!(ok, "hearth-kernels: kq_f16: dk={dk} does not divide q ({}) and k ({})", q.len(), k.len());
    let (heads, n) = (q.len() / dk, k.len() / dk);
    assert_eq!(scores.len(), heads * n, "hearth-kernels: kq_f16: scores must hold {heads} x {n}");
    (heads, n)
}

/// Scores of `q.len() / dk` query heads against the `k.len() / dk` keys in
/// `k` (one row of `dk` values per key), bit-identical to [`kq_f16_ref`].
///
/// # Panics
/// As [`kq_f16_ref`].
pub fn kq_f16(q: &[f32], k: &[f16], dk: usize, scores: &mut [f32]) {
    let (heads, n) = kq_dims(q, k, dk, scores);
    #[cfg(target_arch = "x86_64")]
    {
        #[allow(clippy::manual_is_multiple_of)]
        if dk % 8 == 0 && dk <= MAX_DK && x86_ok() {
            // SAFETY: features detected; lengths checked by kq_dims.
            unsafe { x86::kq(q, k, dk, heads, n, scores) };
            return;
        }
    }
    let _ = (heads, n);
    kq_f16_ref(q, k, dk, scores)
}

/// `out += Σ_j p[j] · v[j]` in order of `j`, bit-identical to [`pv_f16_ref`].
///
/// # Panics
/// As [`pv_f16_ref`].
pub fn pv_f16(p: &[f32], v: &[f16], out: &mut [f32]) {
    let dv = out.len();
    assert_eq!(v.len(), p.len() * dv, "hearth-kernels: pv_f16: {} values is not {} rows of {dv}", v.len(), p.len());
    #[cfg(target_arch = "x86_64")]
    {
        #[allow(clippy::manual_is_multiple_of)]
        if dv % 8 == 0 && x86_ok() {
            // SAFETY: features detected; lengths checked above.
            unsafe { x86::pv(p, v, out) };
            return;
        }
    }
    pv_f16_ref(p, v, out)
}

/// Reference for [`pv_f16_rows`]: for each row `r < lens.len()`,
/// [`pv_f16_ref`] of the weights `p[r * stride..r * stride + lens[r]]`
/// against the first `lens[r]` value rows, into `out[r * dv..(r + 1) * dv]`.
///
/// # Panics
/// If `dv == 0`, a length exceeds `stride`, `v` holds fewer than
/// `max(lens)` rows of `dv`, or `p`/`out` are too short.
pub fn pv_f16_rows_ref(p: &[f32], stride: usize, lens: &[usize], v: &[f16], dv: usize, out: &mut [f32]) {
    rows_dims(p, stride, lens, v, dv, out);
    for (r, &len) in lens.iter().enumerate() {
        pv_f16_ref(&p[r * stride..r * stride + len], &v[..len * dv], &mut out[r * dv..(r + 1) * dv]);
    }
}

/// Several weight rows against one value block (the query heads of a
/// grouped-query KV head times a tile of query tokens), bit-identical to
/// [`pv_f16_rows_ref`]: each output still sums its weights in order of the
/// key, skipping zero weights; the SIMD version converts each block of
/// value rows from f16 once for all rows instead of once per row.
///
/// # Panics
/// As [`pv_f16_rows_ref`].
pub fn pv_f16_rows(p: &[f32], stride: usize, lens: &[usize], v: &[f16], dv: usize, out: &mut [f32]) {
    rows_dims(p, stride, lens, v, dv, out);
    #[cfg(target_arch = "x86_64")]
    {
        #[allow(clippy::manual_is_multiple_of)]
        if dv % 8 == 0 && dv <= PV_BLOCK && x86_ok() {
            // SAFETY: features detected; lengths checked by rows_dims.
            unsafe { x86::pv_rows(p, stride, lens, v, dv, out) };
            return;
        }
    }
    pv_f16_rows_ref(p, stride, lens, v, dv, out)
}

fn rows_dims(p: &[f32], stride: usize, lens: &[usize], v: &[f16], dv: usize, out: &[f32]) {
    let rows = lens.len();
    let max = lens.iter().copied().max().unwrap_or(0);
    assert!(dv > 0 && max <= stride, "hearth-kernels: pv_f16_rows: dv={dv}, longest row {max} > stride {stride}");
    assert!(v.len() >= max * dv, "hearth-kernels: pv_f16_rows: {} values hold fewer than {max} rows of {dv}", v.len());
    if let Some(last) = lens.last() {
        assert!(p.len() >= (rows - 1) * stride + last, "hearth-kernels: pv_f16_rows: weights too short");
    }
    assert!(out.len() >= rows * dv, "hearth-kernels: pv_f16_rows: output holds fewer than {rows} rows of {dv}");
}

/// Rounds every value to the nearest f16 (ties to even) and back, in place:
/// what `f16::from_f32(x).to_f32()` does, eight at a time with F16C.
pub fn round_to_f16(x: &mut [f32]) {
    #[cfg(target_arch = "x86_64")]
    {
        if x86_ok() {
            // SAFETY: features detected.
            unsafe { x86::round_f16(x) };
            return;
        }
    }
    for v in x.iter_mut() {
        *v = f16::from_f32(*v).to_f32();
    }
}

/// f32 values of converted value rows [`pv_f16_rows`] keeps on its stack.
const PV_BLOCK: usize = 4096;

/// Largest head size the SIMD [`kq_f16`] handles (its transposed key block
/// lives on the stack); larger heads use the reference.
const MAX_DK: usize = 512;

#[cfg(target_arch = "x86_64")]
fn x86_ok() -> bool {
    use std::sync::atomic::{AtomicU8, Ordering};
    static OK: AtomicU8 = AtomicU8::new(0);
    match OK.load(Ordering::Relaxed) {
        1 => false,
        2 => true,
        _ => {
            // Follow the crate-wide dispatcher, so that a forced scalar tier
            // (none today) would also cover these loops.
            let ok = crate::simd::isa() != crate::simd::Isa::Scalar
                && is_x86_feature_detected!("avx2")
                && is_x86_feature_detected!("f16c");
            OK.store(if ok { 2 } else { 1 }, Ordering::Relaxed);
            ok
        }
    }
}

#[cfg(target_arch = "x86_64")]
mod x86 {
    #![allow(unsafe_op_in_unsafe_fn)]
    use super::MAX_DK;
    use half::f16;
    use std::arch::x86_64::*;

    /// Eight f16 at `p` → eight f32 (exact).
    #[inline]
    #[target_feature(enable = "avx2,fma,f16c")]
    unsafe fn cvt8(p: *const f16) -> __m256 {
        _mm256_cvtph_ps(_mm_loadu_si128(p as *const __m128i))
    }

    /// 8x8 transpose of `r` (row i = key i) into columns (column d = dim d
    /// of the eight keys).
    #[inline]
    #[target_feature(enable = "avx2,fma,f16c")]
    unsafe fn transpose8(r: [__m256; 8]) -> [__m256; 8] {
        let t0 = _mm256_unpacklo_ps(r[0], r[1]);
        let t1 = _mm256_unpackhi_ps(r[0], r[1]);
        let t2 = _mm256_unpacklo_ps(r[2], r[3]);
        let t3 = _mm256_unpackhi_ps(r[2], r[3]);
        let t4 = _mm256_unpacklo_ps(r[4], r[5]);
        let t5 = _mm256_unpackhi_ps(r[4], r[5]);
        let t6 = _mm256_unpacklo_ps(r[6], r[7]);
        let t7 = _mm256_unpackhi_ps(r[6], r[7]);
        let s0 = _mm256_shuffle_ps::<0x44>(t0, t2);
        let s1 = _mm256_shuffle_ps::<0xEE>(t0, t2);
        let s2 = _mm256_shuffle_ps::<0x44>(t1, t3);
        let s3 = _mm256_shuffle_ps::<0xEE>(t1, t3);
        let s4 = _mm256_shuffle_ps::<0x44>(t4, t6);
        let s5 = _mm256_shuffle_ps::<0xEE>(t4, t6);
        let s6 = _mm256_shuffle_ps::<0x44>(t5, t7);
        let s7 = _mm256_shuffle_ps::<0xEE>(t5, t7);
        [
            _mm256_permute2f128_ps::<0x20>(s0, s4),
            _mm256_permute2f128_ps::<0x20>(s1, s5),
            _mm256_permute2f128_ps::<0x20>(s2, s6),
            _mm256_permute2f128_ps::<0x20>(s3, s7),
            _mm256_permute2f128_ps::<0x31>(s0, s4),
            _mm256_permute2f128_ps::<0x31>(s1, s5),
            _mm256_permute2f128_ps::<0x31>(s2, s6),
            _mm256_permute2f128_ps::<0x31>(s3, s7),
        ]
    }

    /// `H` heads against the transposed block `kt` (dk columns of 8 keys):
    /// lane i of the result is head h's in-order dot with key i.
    #[inline]
    #[target_feature(enable = "avx2,fma,f16c")]
    unsafe fn heads_block<const H: usize>(q: *const f32, dk: usize, kt: *const __m256) -> [__m256; H] {
        let mut acc = [_mm256_setzero_ps(); H];
        for d in 0..dk {
            let col = *kt.add(d);
            for (h, a) in acc.iter_mut().enumerate() {
                // mul then add, two roundings: the reference's `dot += a * b`.
                *a = _mm256_add_ps(*a, _mm256_mul_ps(_mm256_broadcast_ss(&*q.add(h * dk + d)), col));
            }
        }
        acc
    }

    #[target_feature(enable = "avx2,fma,f16c")]
    pub(super) unsafe fn kq(q: &[f32], k: &[f16], dk: usize, heads: usize, n: usize, scores: &mut [f32]) {
        let mut kt = [_mm256_setzero_ps(); MAX_DK];
        let mut j0 = 0;
        while j0 + 8 <= n {
            // Convert and transpose keys j0..j0+8, eight dims at a time.
            for c in 0..dk / 8 {
                let rows: [__m256; 8] = std::array::from_fn(|i| cvt8(k.as_ptr().add((j0 + i) * dk + 8 * c)));
                let cols = transpose8(rows);
                kt[8 * c..8 * c + 8].copy_from_slice(&cols);
            }
            let mut h = 0;
            while h < heads {
                let qp = q.as_ptr().add(h * dk);
                let left = heads - h;
                let take = left.min(4);
                let mut res = [_mm256_setzero_ps(); 4];
                match take {
                    4 => res = heads_block::<4>(qp, dk, kt.as_ptr()),
                    3 => res[..3].copy_from_slice(&heads_block::<3>(qp, dk, kt.as_ptr())),
                    2 => res[..2].copy_from_slice(&heads_block::<2>(qp, dk, kt.as_ptr())),
                    _ => res[..1].copy_from_slice(&heads_block::<1>(qp, dk, kt.as_ptr())),
                }
                for (i, r) in res[..take].iter().enumerate() {
                    _mm256_storeu_ps(scores.as_mut_ptr().add((h + i) * n + j0), *r);
                }
                h += take;
            }
            j0 += 8;
        }
        // Remaining keys one at a time, as the reference.
        for j in j0..n {
            let kj = &k[j * dk..(j + 1) * dk];
            for h in 0..heads {
                let mut dot = 0f32;
                for (a, b) in q[h * dk..(h + 1) * dk].iter().zip(kj) {
                    dot += a * b.to_f32();
                }
                scores[h * n + j] = dot;
            }
        }
    }

    #[target_feature(enable = "avx2,fma,f16c")]
    pub(super) unsafe fn pv(p: &[f32], v: &[f16], out: &mut [f32]) {
        let dv = out.len();
        let vp = v.as_ptr();
        let mut c = 0;
        // Four output vectors per pass over the keys: four independent add
        // chains, and each weight broadcast once per four vectors.
        while c + 32 <= dv {
            let o = out.as_mut_ptr().add(c);
            let mut acc = [_mm256_loadu_ps(o), _mm256_loadu_ps(o.add(8)), _mm256_loadu_ps(o.add(16)), _mm256_loadu_ps(o.add(24))];
            for (j, &pj) in p.iter().enumerate() {
                if pj == 0.0 {
                    continue;
                }
                let pv = _mm256_set1_ps(pj);
                let row = vp.add(j * dv + c);
                for (i, a) in acc.iter_mut().enumerate() {
                    *a = _mm256_add_ps(*a, _mm256_mul_ps(pv, cvt8(row.add(8 * i))));
                }
            }
            for (i, a) in acc.iter().enumerate() {
                _mm256_storeu_ps(o.add(8 * i), *a);
            }
            c += 32;
        }
        while c < dv {
            let o = out.as_mut_ptr().add(c);
            let mut acc = _mm256_loadu_ps(o);
            for (j, &pj) in p.iter().enumerate() {
                if pj == 0.0 {
                    continue;
                }
                acc = _mm256_add_ps(acc, _mm256_mul_ps(_mm256_set1_ps(pj), cvt8(vp.add(j * dv + c))));
            }
            _mm256_storeu_ps(o, acc);
            c += 8;
        }
    }
    #[target_feature(enable = "avx2,fma,f16c")]
    pub(super) unsafe fn round_f16(x: &mut [f32]) {
        let n = x.len();
        let p = x.as_mut_ptr();
        let mut i = 0;
        while i + 8 <= n {
            let h = _mm256_cvtps_ph::<{ _MM_FROUND_TO_NEAREST_INT }>(_mm256_loadu_ps(p.add(i)));
            _mm256_storeu_ps(p.add(i), _mm256_cvtph_ps(h));
            i += 8;
        }
        for v in &mut x[i..] {
            *v = f16::from_f32(*v).to_f32();
        }
    }

    /// See [`super::pv_f16_rows`]: blocks of value rows are converted into
    /// a stack buffer once, then every weight row that reaches the block
    /// accumulates from it exactly as [`pv`] does (mul, then add, in order
    /// of the key; four output vectors per pass, then single vectors).
    #[target_feature(enable = "avx2,fma,f16c")]
    pub(super) unsafe fn pv_rows(p: &[f32], stride: usize, lens: &[usize], v: &[f16], dv: usize, out: &mut [f32]) {
        let mut vb = [0f32; super::PV_BLOCK];
        let jb = (super::PV_BLOCK / dv).clamp(1, 32);
        let nmax = lens.iter().copied().max().unwrap_or(0);
        let (vp, bp) = (v.as_ptr(), vb.as_mut_ptr());
        let mut j0 = 0;
        while j0 < nmax {
            let j1 = (j0 + jb).min(nmax);
            for j in j0..j1 {
                for c in (0..dv).step_by(8) {
                    _mm256_storeu_ps(bp.add((j - j0) * dv + c), cvt8(vp.add(j * dv + c)));
                }
            }
            for (r, &len) in lens.iter().enumerate() {
                let e = len.min(j1);
                if e <= j0 {
                    continue;
                }
                let w = &p[r * stride + j0..r * stride + e];
                let o0 = out.as_mut_ptr().add(r * dv);
                let mut c = 0;
                while c + 32 <= dv {
                    let o = o0.add(c);
                    let mut acc = [_mm256_loadu_ps(o), _mm256_loadu_ps(o.add(8)), _mm256_loadu_ps(o.add(16)), _mm256_loadu_ps(o.add(24))];
                    for (jj, &pj) in w.iter().enumerate() {
                        if pj == 0.0 {
                            continue;
                        }
                        let pv = _mm256_set1_ps(pj);
                        let row = bp.add(jj * dv + c);
                        for (i, a) in acc.iter_mut().enumerate() {
                            *a = _mm256_add_ps(*a, _mm256_mul_ps(pv, _mm256_loadu_ps(row.add(8 * i))));
                        }
                    }
                    for (i, a) in acc.iter().enumerate() {
                        _mm256_storeu_ps(o.add(8 * i), *a);
                    }
                    c += 32;
                }
                while c < dv {
                    let o = o0.add(c);
                    let mut acc = _mm256_loadu_ps(o);
                    for (jj, &pj) in w.iter().enumerate() {
                        if pj == 0.0 {
                            continue;
                        }
                        acc = _mm256_add_ps(acc, _mm256_mul_ps(_mm256_set1_ps(pj), _mm256_loadu_ps(bp.add(jj * dv + c))));
                    }
                    _mm256_storeu_ps(o, acc);
                    c += 8;
                }
            }
            j0 = j1;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rand_vals(seed: u64, n: usize, scale: f32) -> Vec<f32> {
        let mut s = seed;
        (0..n)
            .map(|_| {
                s = s.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
                ((s >> 40) as f32 / (1u64 << 24) as f32 * 2.0 - 1.0) * scale
            })
            .collect()
    }

    fn f16s(x: &[f32]) -> Vec<f16> {
        x.iter().map(|&v| f16::from_f32(v)).collect()
    }

    #[test]
    fn kq_matches_the_reference_bitwise_and_f32_closely() {
        for (heads, dk, n) in [(1, 64, 1), (7, 64, 37), (4, 128, 64), (5, 8, 9), (2, 96, 17), (3, 12, 11)] {
            let q: Vec<f32> = rand_vals(1, heads * dk, 1.0).iter().map(|&v| f16::from_f32(v).to_f32()).collect();
            let k = f16s(&rand_vals(2, n * dk, 2.0));
            let mut want = vec![0f32; heads * n];
            kq_f16_ref(&q, &k, dk, &mut want);
            let mut got = vec![f32::NAN; heads * n];
            kq_f16(&q, &k, dk, &mut got);
            for (i, (a, b)) in got.iter().zip(&want).enumerate() {
                assert_eq!(a.to_bits(), b.to_bits(), "heads={heads} dk={dk} n={n} i={i}");
            }
            // And against an f64 dot of the same values.
            for h in 0..heads {
                for j in 0..n {
                    let exact: f64 = (0..dk).map(|d| q[h * dk + d] as f64 * k[j * dk + d].to_f64()).sum();
                    assert!((want[h * n + j] as f64 - exact).abs() < 1e-4 * (1.0 + exact.abs()), "{exact}");
                }
            }
        }
    }

    #[test]
    fn pv_matches_the_reference_bitwise_and_skips_zero_weights() {
        for (n, dv) in [(1, 64), (33, 64), (20, 128), (7, 8), (9, 40), (5, 12)] {
            let mut p: Vec<f32> = rand_vals(3, n, 1.0).iter().map(|v| f16::from_f32(v.abs()).to_f32()).collect();
            p[0] = 0.0;
            let mut v = f16s(&rand_vals(4, n * dv, 3.0));
            // A non-finite value under a zero weight must not leak in.
            v[0] = f16::INFINITY;
            let init = rand_vals(5, dv, 0.5);
            let mut want = init.clone();
            pv_f16_ref(&p, &v, &mut want);
            let mut got = init.clone();
            pv_f16(&p, &v, &mut got);
            assert!(got.iter().all(|x| x.is_finite()));
            for (a, b) in got.iter().zip(&want) {
                assert_eq!(a.to_bits(), b.to_bits(), "n={n} dv={dv}");
            }
        }
    }

    #[test]
    fn pv_rows_matches_the_reference_bitwise() {
        for (lens, dv) in [(vec![1usize], 64usize), (vec![33, 0, 12, 40], 64), (vec![5, 70, 70, 3], 128), (vec![7, 2], 8), (vec![9, 9, 1], 40), (vec![6], 12), (vec![40, 39], 256)] {
            let stride = lens.iter().copied().max().unwrap_or(0) + 3;
            let rows = lens.len();
            let mut p: Vec<f32> = rand_vals(6, rows * stride, 1.0).iter().map(|v| f16::from_f32(v.abs()).to_f32()).collect();
            // Zero weights (masked keys) at the start of some rows.
            p[0] = 0.0;
            if rows > 1 {
                p[stride..stride + 2].iter_mut().for_each(|x| *x = 0.0);
            }
            let n = stride;
            let mut v = f16s(&rand_vals(7, n * dv, 3.0));
            v[0] = f16::INFINITY;
            let init = rand_vals(8, rows * dv, 0.5);
            let mut want = init.clone();
            pv_f16_rows_ref(&p, stride, &lens, &v, dv, &mut want);
            let mut got = init.clone();
            pv_f16_rows(&p, stride, &lens, &v, dv, &mut got);
            for (a, b) in got.iter().zip(&want) {
                assert_eq!(a.to_bits(), b.to_bits(), "lens={lens:?} dv={dv}");
            }
            // The multi-row reference is the one-row kernel per row.
            let mut one = init.clone();
            for (r, &len) in lens.iter().enumerate() {
                pv_f16(&p[r * stride..r * stride + len], &v[..len * dv], &mut one[r * dv..(r + 1) * dv]);
            }
            assert_eq!(one, want);
        }
    }

    #[test]
    fn round_to_f16_matches_half() {
        let mut x = rand_vals(9, 1003, 70000.0);
        x.extend([0.0, -0.0, 1e-8, -6.1e-5, 65504.0, 65520.0, f32::INFINITY, f32::NEG_INFINITY, 2.0f32.powi(-24) * 1.5]);
        let want: Vec<f32> = x.iter().map(|&v| f16::from_f32(v).to_f32()).collect();
        round_to_f16(&mut x);
        for (a, b) in x.iter().zip(&want) {
            assert_eq!(a.to_bits(), b.to_bits());
        }
    }
}
