//! Matrix multiplication for training: `C = A·B` or `C += A·B` with
//! arbitrary strides, so that one routine serves the three products of a
//! linear layer (`Y = X·Wᵀ`, `dX = dY·W`, `dW += dYᵀ·X`).
//!
//! The f32 path is the classic packed GEMM (Goto & van de Geijn, "Anatomy of
//! High-Performance Matrix Multiplication", as in BLIS): C is cut into
//! blocks, one per task on the thread pool; inside a block, K is walked in
//! `KC` slices, the slice of B is packed once into `NR`-column panels and
//! each `MC`-row slice of A into `MR`-row panels (zero-padded, so transposed
//! or strided operands cost nothing extra in the inner loop), and a register
//! micro-kernel computes each `MR × NR` tile. The AVX2 micro-kernel keeps the
//! 6×16 tile in 12 ymm accumulators and issues two FMAs per broadcast
//! element of A; a plain-Rust micro-kernel with the same structure serves
//! other CPUs, and [`reference`] (a triple loop) is what both are tested
//! against.
//!
//! Determinism: every element of C is computed by exactly one task, summing
//! over K in a fixed order, so results do not depend on the thread count or
//! scheduling. Checkpoint resume relies on this.
//!
//! Deliberately absent: AVX-512 and NEON micro-kernels, and parallelism
//! inside a block (a block is the unit of work).

use crate::real::Real;
use hearth_models::pool::{SyncPtr, ThreadPool};
use std::cell::RefCell;
use std::sync::OnceLock;

/// Rows of the register tile.
pub const MR: usize = 6;
/// Columns of the register tile (two 8-lane vectors).
pub const NR: usize = 16;
/// Rows of A packed at a time (8 register tiles; `MC × KC` f32 = 48 KiB).
pub const MC: usize = 8 * MR;
/// Widest column block of one task (`KC × NB` f32 of packed B = 256 KiB,
/// which stays in a 1 MiB L2 while every row block of the task reuses it).
pub const NB: usize = 16 * NR;
/// Depth of one packed slice.
pub const KC: usize = 256;

/// A read-only matrix view: element `(i, j)` is `data[i * rs + j * cs]`.
#[derive(Clone, Copy, Debug)]
pub struct MatRef<'a, T> {
    pub data: &'a [T],
    pub rs: usize,
    pub cs: usize,
}

impl<'a, T> MatRef<'a, T> {
    /// A row-major matrix with leading dimension `ld`.
    pub fn rows(data: &'a [T], ld: usize) -> MatRef<'a, T> {
        MatRef { data, rs: ld, cs: 1 }
    }

    /// The transpose of a row-major matrix with leading dimension `ld`.
    pub fn rows_t(data: &'a [T], ld: usize) -> MatRef<'a, T> {
        MatRef { data, rs: 1, cs: ld }
    }

    #[inline(always)]
    fn at(&self, i: usize, j: usize) -> T
    where
        T: Copy,
    {
        self.data[i * self.rs + j * self.cs]
    }

    /// True if a `rows × cols` matrix fits in `data`.
    fn covers(&self, rows: usize, cols: usize) -> bool {
        rows == 0 || cols == 0 || (rows - 1) * self.rs + (cols - 1) * self.cs < self.data.len()
    }
}

/// Which f32 micro-kernel runs.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kernel {
    /// AVX2 + FMA intrinsics (x86-64, detected at run time).
    Avx2Fma,
    /// Portable Rust with the same blocking.
    Plain,
}

/// The kernels this CPU can run, fastest first.
pub fn available_kernels() -> Vec<Kernel> {
    let mut v = Vec::new();
    #[cfg(target_arch = "x86_64")]
    {
        if is_x86_feature_detected!("avx2") && is_x86_feature_detected!("fma") {
            v.push(Kernel::Avx2Fma);
        }
    }
    v.push(Kernel::Plain);
    v
}

/// The kernel [`gemm`] uses for f32: the fastest available one, unless
/// `HEARTH_GEMM=plain` asks for the portable one.
pub fn selected_kernel() -> Kernel {
    static K: OnceLock<Kernel> = OnceLock::new();
    *K.get_or_init(|| {
        if std::env::var("HEARTH_GEMM").as_deref() == Ok("plain") {
            return Kernel::Plain;
        }
        available_kernels()[0]
    })
}

/// `C = A·B` (or `C += A·B` with `accumulate`), where A is `m × k`, B is
/// `k × n` and C is row-major `m × n` with leading dimension `ldc`, spread
/// over the pool in blocks (see `Plan`).
///
/// Panics if a view is too short for its shape: shapes here come from the
/// model configuration, never from a file, so a mismatch is a bug.
#[allow(clippy::too_many_arguments)]
pub fn gemm<T: Real>(
    pool: &ThreadPool,
    m: usize,
    n: usize,
    k: usize,
    a: MatRef<'_, T>,
    b: MatRef<'_, T>,
    c: &mut [T],
    ldc: usize,
    accumulate: bool,
) {
    check_shapes(m, n, k, &a, &b, c.len(), ldc);
    if m == 0 || n == 0 {
        return;
    }
    let plan = Plan::new(m, n, pool.n_threads());
    let cp = SyncPtr::new(c);
    pool.parallel_for(plan.tasks(), 1, &|t0, t1| {
        for t in t0..t1 {
            let (rows, cols) = plan.block(t);
            // SAFETY: shapes were checked above; blocks are disjoint.
            unsafe { T::gemm_block(rows, cols, k, a, b, raw(&cp), ldc, accumulate) };
        }
    });
}

/// [`gemm`] on the calling thread only.
#[allow(clippy::too_many_arguments)]
pub fn gemm_serial<T: Real>(
    m: usize,
    n: usize,
    k: usize,
    a: MatRef<'_, T>,
    b: MatRef<'_, T>,
    c: &mut [T],
    ldc: usize,
    accumulate: bool,
) {
    check_shapes(m, n, k, &a, &b, c.len(), ldc);
    if m == 0 || n == 0 {
        return;
    }
    // SAFETY: shapes checked; one block covers C.
    unsafe { T::gemm_block((0, m), (0, n), k, a, b, c.as_mut_ptr(), ldc, accumulate) };
}

/// [`gemm`] for f32 with an explicit micro-kernel (tests, benchmarks).
#[allow(clippy::too_many_arguments)]
pub fn sgemm_with(
    kernel: Kernel,
    pool: &ThreadPool,
    m: usize,
    n: usize,
    k: usize,
    a: MatRef<'_, f32>,
    b: MatRef<'_, f32>,
    c: &mut [f32],
    ldc: usize,
    accumulate: bool,
) {
    check_shapes(m, n, k, &a, &b, c.len(), ldc);
    if m == 0 || n == 0 {
        return;
    }
    if kernel == Kernel::Avx2Fma && !available_kernels().contains(&Kernel::Avx2Fma) {
        panic!("the AVX2+FMA kernel is not available on this CPU");
    }
    let plan = Plan::new(m, n, pool.n_threads());
    let cp = SyncPtr::new(c);
    pool.parallel_for(plan.tasks(), 1, &|t0, t1| {
        for t in t0..t1 {
            let (rows, cols) = plan.block(t);
            // SAFETY: as in `gemm`.
            unsafe { sgemm_block(kernel, rows, cols, k, a, b, raw(&cp), ldc, accumulate) };
        }
    });
}

/// How C is cut into tasks: column blocks at most [`NB`] wide, and as many
/// row blocks as it takes to give every thread about four tasks (dynamic
/// scheduling then evens out a core slowed by a neighbour). Each task packs
/// each slice of B once and reuses it for all its rows, so the bigger the
/// blocks the less time goes into packing. The cut does not change any
/// element's arithmetic, so results are identical for any thread count.
struct Plan {
    m: usize,
    n: usize,
    mb: usize,
    nb: usize,
    nt: usize,
}

impl Plan {
    fn new(m: usize, n: usize, threads: usize) -> Plan {
        let nb = n.min(NB);
        let nt = n.div_ceil(nb);
        let want = 4 * threads.max(1);
        let mt = want.div_ceil(nt).clamp(1, m.div_ceil(MR));
        let mb = m.div_ceil(mt).div_ceil(MR) * MR;
        Plan { m, n, mb, nb, nt }
    }

    fn tasks(&self) -> usize {
        self.m.div_ceil(self.mb) * self.nt
    }

    fn block(&self, t: usize) -> ((usize, usize), (usize, usize)) {
        let (bi, bj) = (t / self.nt, t % self.nt);
        ((bi * self.mb, ((bi + 1) * self.mb).min(self.m)), (bj * self.nb, ((bj + 1) * self.nb).min(self.n)))
    }
}

/// The pointer inside a [`SyncPtr`]; going through a function makes
/// closures capture the whole (Sync) wrapper rather than its raw field.
#[inline(always)]
fn raw<T>(p: &SyncPtr<T>) -> *mut T {
    p.0
}

fn check_shapes<T>(m: usize, n: usize, k: usize, a: &MatRef<'_, T>, b: &MatRef<'_, T>, c_len: usize, ldc: usize) {
    assert!(a.covers(m, k), "gemm: A view too short for {m}x{k}");
    assert!(b.covers(k, n), "gemm: B view too short for {k}x{n}");
    assert!(m == 0 || n == 0 || (ldc >= n && (m - 1) * ldc + n <= c_len), "gemm: C too short for {m}x{n} at ldc {ldc}");
}

/// The plain triple loop every kernel is tested against (and the f64 path).
#[allow(clippy::too_many_arguments)]
pub fn reference<T: Real>(
    m: usize,
    n: usize,
    k: usize,
    a: MatRef<'_, T>,
    b: MatRef<'_, T>,
    c: &mut [T],
    ldc: usize,
    accumulate: bool,
) {
    check_shapes(m, n, k, &a, &b, c.len(), ldc);
    if m == 0 || n == 0 {
        return;
    }
    // SAFETY: shapes checked.
    unsafe { reference_block((0, m), (0, n), k, a, b, c.as_mut_ptr(), ldc, accumulate) }
}

/// One block of [`reference`].
///
/// # Safety
/// As [`Real::gemm_block`].
#[allow(clippy::too_many_arguments)]
pub unsafe fn reference_block<T: Real>(
    rows: (usize, usize),
    cols: (usize, usize),
    k: usize,
    a: MatRef<'_, T>,
    b: MatRef<'_, T>,
    c: *mut T,
    ldc: usize,
    accumulate: bool,
) {
    for i in rows.0..rows.1 {
        for j in cols.0..cols.1 {
            let mut s = T::ZERO;
            for p in 0..k {
                s += a.at(i, p) * b.at(p, j);
            }
            let dst = c.add(i * ldc + j);
            *dst = if accumulate { *dst + s } else { s };
        }
    }
}

thread_local! {
    static PACK: RefCell<(Vec<f32>, Vec<f32>)> = const { RefCell::new((Vec::new(), Vec::new())) };
}

/// One block of f32 GEMM with the chosen kernel: each `KC` slice of B is
/// packed once for the whole block, then each `MC`-row slice of A is packed
/// and multiplied against it tile by tile.
///
/// # Safety
/// As [`Real::gemm_block`]; `kernel` must be available on this CPU.
#[allow(clippy::too_many_arguments)]
pub unsafe fn sgemm_block(
    kernel: Kernel,
    rows: (usize, usize),
    cols: (usize, usize),
    k: usize,
    a: MatRef<'_, f32>,
    b: MatRef<'_, f32>,
    c: *mut f32,
    ldc: usize,
    accumulate: bool,
) {
    let (m0, m1) = rows;
    let (n0, n1) = cols;
    let nb = n1 - n0;
    if k == 0 {
        if !accumulate {
            for i in m0..m1 {
                std::ptr::write_bytes(c.add(i * ldc + n0), 0, nb);
            }
        }
        return;
    }
    let np = nb.div_ceil(NR);
    PACK.with(|p| {
        let mut p = p.borrow_mut();
        let (pa, pb) = &mut *p;
        pa.resize(MC * KC, 0.0);
        pb.resize(np * NR * KC, 0.0);
        let mut tile = [0f32; MR * NR];
        let mut p0 = 0;
        while p0 < k {
            let kc = KC.min(k - p0);
            pack_b(b, n0, nb, p0, kc, pb);
            let add = accumulate || p0 > 0;
            let mut i0 = m0;
            while i0 < m1 {
                let mb = MC.min(m1 - i0);
                let mp = mb.div_ceil(MR);
                pack_a(a, i0, mb, p0, kc, pa);
                for jp in 0..np {
                    let bp = &pb[jp * NR * kc..(jp + 1) * NR * kc];
                    let ncols = NR.min(nb - jp * NR);
                    for ip in 0..mp {
                        let ap = &pa[ip * MR * kc..(ip + 1) * MR * kc];
                        let nrows = MR.min(mb - ip * MR);
                        let cij = c.add((i0 + ip * MR) * ldc + n0 + jp * NR);
                        if nrows == MR && ncols == NR {
                            micro(kernel, kc, ap, bp, cij, ldc, add);
                        } else {
                            micro(kernel, kc, ap, bp, tile.as_mut_ptr(), NR, false);
                            for r in 0..nrows {
                                for q in 0..ncols {
                                    let d = cij.add(r * ldc + q);
                                    *d = if add { *d + tile[r * NR + q] } else { tile[r * NR + q] };
                                }
                            }
                        }
                    }
                }
                i0 += mb;
            }
            p0 += kc;
        }
    })
}

/// Packs rows `m0..m0+mb`, depth `p0..p0+kc` of A as `MR`-row panels:
/// panel `i` holds `kc` groups of `MR` values (rows past `mb` are zero).
fn pack_a(a: MatRef<'_, f32>, m0: usize, mb: usize, p0: usize, kc: usize, out: &mut [f32]) {
    if a.rs == 1 {
        // Column-contiguous A (a transposed row-major matrix): read each
        // column's MR values together.
        for ip in 0..mb.div_ceil(MR) {
            let panel = &mut out[ip * MR * kc..(ip + 1) * MR * kc];
            let nrows = MR.min(mb - ip * MR);
            for p in 0..kc {
                let base = m0 + ip * MR + (p0 + p) * a.cs;
                let dst = &mut panel[p * MR..(p + 1) * MR];
                if nrows == MR {
                    let src: &[f32; MR] = a.data[base..base + MR].try_into().expect("MR values");
                    dst.copy_from_slice(src);
                } else {
                    for (r, d) in dst.iter_mut().enumerate() {
                        *d = if r < nrows { a.data[base + r] } else { 0.0 };
                    }
                }
            }
        }
        return;
    }
    for ip in 0..mb.div_ceil(MR) {
        let panel = &mut out[ip * MR * kc..(ip + 1) * MR * kc];
        for r in 0..MR {
            let i = ip * MR + r;
            if i < mb {
                let base = (m0 + i) * a.rs + p0 * a.cs;
                if a.cs == 1 {
                    let src = &a.data[base..base + kc];
                    for (p, &v) in src.iter().enumerate() {
                        panel[p * MR + r] = v;
                    }
                } else {
                    for p in 0..kc {
                        panel[p * MR + r] = a.data[base + p * a.cs];
                    }
                }
            } else {
                for p in 0..kc {
                    panel[p * MR + r] = 0.0;
                }
            }
        }
    }
}

/// Packs columns `n0..n0+nb`, depth `p0..p0+kc` of B as `NR`-column panels.
fn pack_b(b: MatRef<'_, f32>, n0: usize, nb: usize, p0: usize, kc: usize, out: &mut [f32]) {
    for jp in 0..nb.div_ceil(NR) {
        let panel = &mut out[jp * NR * kc..(jp + 1) * NR * kc];
        let ncols = NR.min(nb - jp * NR);
        if b.cs == 1 {
            for p in 0..kc {
                let base = (p0 + p) * b.rs + n0 + jp * NR;
                let dst = &mut panel[p * NR..(p + 1) * NR];
                if ncols == NR {
                    // Fixed length: inlined vector moves, not a memmove call.
                    let src: &[f32; NR] = b.data[base..base + NR].try_into().expect("NR values");
                    dst.copy_from_slice(src);
                } else {
                    for (q, d) in dst.iter_mut().enumerate() {
                        *d = if q < ncols { b.data[base + q] } else { 0.0 };
                    }
                }
            }
        } else {
            // Column-strided B (a transposed row-major matrix): walk each
            // column contiguously instead.
            for q in 0..NR {
                if q < ncols {
                    let base = p0 * b.rs + (n0 + jp * NR + q) * b.cs;
                    for p in 0..kc {
                        panel[p * NR + q] = b.data[base + p * b.rs];
                    }
                } else {
                    for p in 0..kc {
                        panel[p * NR + q] = 0.0;
                    }
                }
            }
        }
    }
}

/// `C[0..MR, 0..NR] (+)= Apanel · Bpanel`.
#[inline(always)]
unsafe fn micro(kernel: Kernel, kc: usize, a: &[f32], b: &[f32], c: *mut f32, ldc: usize, add: bool) {
    match kernel {
        #[cfg(target_arch = "x86_64")]
        Kernel::Avx2Fma => micro_avx2(kc, a.as_ptr(), b.as_ptr(), c, ldc, add),
        _ => micro_plain(kc, a, b, c, ldc, add),
    }
}

/// The portable micro-kernel: same tile, LLVM vectorises the `NR` loop.
unsafe fn micro_plain(kc: usize, a: &[f32], b: &[f32], c: *mut f32, ldc: usize, add: bool) {
    let mut acc = [[0f32; NR]; MR];
    for p in 0..kc {
        let bp: &[f32; NR] = b[p * NR..(p + 1) * NR].try_into().expect("panel row");
        let ap = &a[p * MR..(p + 1) * MR];
        for r in 0..MR {
            let av = ap[r];
            for q in 0..NR {
                acc[r][q] += av * bp[q];
            }
        }
    }
    for (r, row) in acc.iter().enumerate() {
        let dst = std::slice::from_raw_parts_mut(c.add(r * ldc), NR);
        if add {
            for (d, v) in dst.iter_mut().zip(row) {
                *d += v;
            }
        } else {
            dst.copy_from_slice(row);
        }
    }
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma")]
unsafe fn micro_avx2(kc: usize, a: *const f32, b: *const f32, c: *mut f32, ldc: usize, add: bool) {
    use std::arch::x86_64::*;
    let mut c00 = _mm256_setzero_ps();
    let mut c01 = _mm256_setzero_ps();
    let mut c10 = _mm256_setzero_ps();
    let mut c11 = _mm256_setzero_ps();
    let mut c20 = _mm256_setzero_ps();
    let mut c21 = _mm256_setzero_ps();
    let mut c30 = _mm256_setzero_ps();
    let mut c31 = _mm256_setzero_ps();
    let mut c40 = _mm256_setzero_ps();
    let mut c41 = _mm256_setzero_ps();
    let mut c50 = _mm256_setzero_ps();
    let mut c51 = _mm256_setzero_ps();
    let mut ap = a;
    let mut bp = b;
    for _ in 0..kc {
        let b0 = _mm256_loadu_ps(bp);
        let b1 = _mm256_loadu_ps(bp.add(8));
        let a0 = _mm256_broadcast_ss(&*ap);
        c00 = _mm256_fmadd_ps(a0, b0, c00);
        c01 = _mm256_fmadd_ps(a0, b1, c01);
        let a1 = _mm256_broadcast_ss(&*ap.add(1));
        c10 = _mm256_fmadd_ps(a1, b0, c10);
        c11 = _mm256_fmadd_ps(a1, b1, c11);
        let a2 = _mm256_broadcast_ss(&*ap.add(2));
        c20 = _mm256_fmadd_ps(a2, b0, c20);
        c21 = _mm256_fmadd_ps(a2, b1, c21);
        let a3 = _mm256_broadcast_ss(&*ap.add(3));
        c30 = _mm256_fmadd_ps(a3, b0, c30);
        c31 = _mm256_fmadd_ps(a3, b1, c31);
        let a4 = _mm256_broadcast_ss(&*ap.add(4));
        c40 = _mm256_fmadd_ps(a4, b0, c40);
        c41 = _mm256_fmadd_ps(a4, b1, c41);
        let a5 = _mm256_broadcast_ss(&*ap.add(5));
        c50 = _mm256_fmadd_ps(a5, b0, c50);
        c51 = _mm256_fmadd_ps(a5, b1, c51);
        ap = ap.add(MR);
        bp = bp.add(NR);
    }
    let rows = [(c00, c01), (c10, c11), (c20, c21), (c30, c31), (c40, c41), (c50, c51)];
    for (r, (lo, hi)) in rows.into_iter().enumerate() {
        let d = c.add(r * ldc);
        if add {
            _mm256_storeu_ps(d, _mm256_add_ps(_mm256_loadu_ps(d), lo));
            _mm256_storeu_ps(d.add(8), _mm256_add_ps(_mm256_loadu_ps(d.add(8)), hi));
        } else {
            _mm256_storeu_ps(d, lo);
            _mm256_storeu_ps(d.add(8), hi);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::rng::Rng;

    fn rand_vec(rng: &mut Rng, n: usize) -> Vec<f32> {
        (0..n).map(|_| rng.uniform() as f32 * 2.0 - 1.0).collect()
    }

    /// Every kernel against the triple loop, over all transposition
    /// combinations and shapes that straddle the block edges.
    #[test]
    fn kernels_match_the_reference() {
        let pool = ThreadPool::new(2);
        let mut rng = Rng::new(7);
        let shapes = [(1, 1, 1), (5, 17, 3), (6, 16, 256), (49, 129, 257), (13, 200, 600), (100, 7, 31)];
        for &(m, n, k) in &shapes {
            for (ta, tb) in [(false, false), (true, false), (false, true), (true, true)] {
                let a_data = rand_vec(&mut rng, m * k);
                let b_data = rand_vec(&mut rng, k * n);
                let a = if ta { MatRef::rows_t(&a_data, m) } else { MatRef::rows(&a_data, k) };
                let b = if tb { MatRef::rows_t(&b_data, k) } else { MatRef::rows(&b_data, n) };
                let ldc = n + 3;
                let init = rand_vec(&mut rng, m * ldc);
                for acc in [false, true] {
                    let mut want = init.clone();
                    reference(m, n, k, a, b, &mut want, ldc, acc);
                    for kern in available_kernels() {
                        let mut got = init.clone();
                        sgemm_with(kern, &pool, m, n, k, a, b, &mut got, ldc, acc);
                        for i in 0..m {
                            for j in 0..ldc {
                                let (g, w) = (got[i * ldc + j], want[i * ldc + j]);
                                if j >= n {
                                    // Padding columns must be untouched.
                                    assert_eq!(g, init[i * ldc + j]);
                                    continue;
                                }
                                // Each product is |a·b| <= 1; reordering k
                                // terms in f32 moves the sum by at most
                                // ~k·2^-24 per unit of magnitude; allow 4x.
                                let tol = 4.0 * k as f32 * f32::EPSILON + 1e-6;
                                assert!((g - w).abs() <= tol, "{kern:?} {m}x{n}x{k} ta={ta} tb={tb} acc={acc}: {g} vs {w}");
                            }
                        }
                    }
                }
            }
        }
    }

    #[test]
    fn results_do_not_depend_on_the_thread_count() {
        let (m, n, k) = (97, 300, 513);
        let mut rng = Rng::new(3);
        let a = rand_vec(&mut rng, m * k);
        let b = rand_vec(&mut rng, k * n);
        let mut c1 = vec![0f32; m * n];
        let mut c2 = vec![0f32; m * n];
        gemm(&ThreadPool::new(1), m, n, k, MatRef::rows(&a, k), MatRef::rows(&b, n), &mut c1, n, false);
        gemm(&ThreadPool::new(3), m, n, k, MatRef::rows(&a, k), MatRef::rows(&b, n), &mut c2, n, false);
        assert_eq!(c1, c2);
    }

    #[test]
    fn zero_depth_clears_or_keeps() {
        let pool = ThreadPool::new(1);
        let mut c = vec![1f32; 6];
        gemm::<f32>(&pool, 2, 3, 0, MatRef::rows(&[], 0), MatRef::rows(&[], 3), &mut c, 3, true);
        assert_eq!(c, vec![1.0; 6]);
        gemm::<f32>(&pool, 2, 3, 0, MatRef::rows(&[], 0), MatRef::rows(&[], 3), &mut c, 3, false);
        assert_eq!(c, vec![0.0; 6]);
    }

    #[test]
    fn f64_path_is_the_reference() {
        let pool = ThreadPool::new(2);
        let a: Vec<f64> = (0..12).map(|i| i as f64 * 0.5).collect();
        let b: Vec<f64> = (0..20).map(|i| 1.0 - i as f64 * 0.25).collect();
        let mut c = vec![0f64; 15];
        let mut want = vec![0f64; 15];
        gemm(&pool, 3, 5, 4, MatRef::rows(&a, 4), MatRef::rows(&b, 5), &mut c, 5, false);
        reference(3, 5, 4, MatRef::rows(&a, 4), MatRef::rows(&b, 5), &mut want, 5, false);
        assert_eq!(c, want);
    }
}
