//! Run-time dispatch to the SIMD kernels.
//!
//! Each function returns `None`/`false` when no optimised kernel applies and
//! the caller (the crate root) falls back to `crate::reference`. The crate
//! root has already validated every length with `crate::check_row`; the
//! wrappers here turn the validated slices into the pointers and block counts
//! the `unsafe` kernels take.

use crate::GgmlType;
use std::sync::atomic::{AtomicU8, Ordering};

#[cfg(target_arch = "x86_64")]
pub(crate) mod x86;

#[cfg(target_arch = "aarch64")]
pub(crate) mod neon;

/// Instruction-set tiers.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
#[allow(dead_code)] // each target constructs only its own variants
pub(crate) enum Isa {
    Scalar = 1,
    Avx2 = 2,
    /// AVX2 kernels with the AVX-512 VNNI dot-product instructions.
    Avx2Vnni = 3,
    Neon = 4,
}

impl Isa {
    pub(crate) fn name(self) -> &'static str {
        match self {
            Isa::Avx2 => "avx2+fma+f16c",
            Isa::Avx2Vnni => "avx2+fma+f16c+avx512vnni",
            Isa::Neon => "neon",
            Isa::Scalar => "scalar",
        }
    }
}

/// Every tier this CPU can run, best first; always ends with `Scalar`.
pub(crate) fn available() -> Vec<Isa> {
    let mut v = Vec::new();
    #[cfg(target_arch = "x86_64")]
    {
        if is_x86_feature_detected!("avx2") && is_x86_feature_detected!("fma") && is_x86_feature_detected!("f16c") {
            if is_x86_feature_detected!("avx512vnni") && is_x86_feature_detected!("avx512vl") && is_x86_feature_detected!("avx512f") {
                v.push(Isa::Avx2Vnni);
            }
            v.push(Isa::Avx2);
        }
    }
    #[cfg(target_arch = "aarch64")]
    {
        if std::arch::is_aarch64_feature_detected!("neon") {
            v.push(Isa::Neon);
        }
    }
    v.push(Isa::Scalar);
    v
}

static ISA: AtomicU8 = AtomicU8::new(0);

/// The best available tier, detected once.
#[inline]
pub(crate) fn isa() -> Isa {
    match ISA.load(Ordering::Relaxed) {
        1 => Isa::Scalar,
        2 => Isa::Avx2,
        3 => Isa::Avx2Vnni,
        4 => Isa::Neon,
        _ => {
            let i = available()[0];
            ISA.store(i as u8, Ordering::Relaxed);
            i
        }
    }
}

/// Weight types with R x T tile kernels (the types of Q4_0 and Q4_K_M files).
#[cfg(target_arch = "aarch64")]
fn has_tile(ty: GgmlType) -> bool {
    matches!(ty, GgmlType::Q4_0 | GgmlType::Q8_0 | GgmlType::Q4_K | GgmlType::Q6_K)
}

/// As on aarch64, plus Q5_0 (most of a Qwen2.5-0.5B Q4_K_M file).
#[cfg(target_arch = "x86_64")]
fn has_tile(ty: GgmlType) -> bool {
    matches!(ty, GgmlType::Q4_0 | GgmlType::Q5_0 | GgmlType::Q8_0 | GgmlType::Q4_K | GgmlType::Q6_K)
}

/// Whether `isa` has SIMD kernels for the x8 repacked layout.
pub(crate) fn has_packed(isa: Isa) -> bool {
    matches!(isa, Isa::Avx2 | Isa::Avx2Vnni)
}

/// `crate::repack::matmul_strided` on a SIMD tier; `false` when `isa` has
/// no packed kernels. Lengths were checked by the caller.
///
/// # Safety
/// `out + t * stride + r` is valid for writes for every `t < n_a`, `r <
/// n_w`, and nothing else accesses those floats during the call.
#[allow(clippy::too_many_arguments, unused_variables)]
pub(crate) unsafe fn matmul_packed(
    isa: Isa,
    ty: GgmlType,
    n: usize,
    w: &[u8],
    n_w: usize,
    a: &[u8],
    n_a: usize,
    out: *mut f32,
    stride: usize,
) -> bool {
    match isa {
        #[cfg(target_arch = "x86_64")]
        Isa::Avx2 | Isa::Avx2Vnni => {
            avx2::matmul_packed(isa == Isa::Avx2Vnni, ty, n, w, n_w, a, n_a, out, stride);
            true
        }
        _ => false,
    }
}

// Every function below requires `isa` to be one of `available()` (the
// public `Variant` type only hands out such values).

pub(crate) fn vec_dot(isa: Isa, ty: GgmlType, n: usize, w: &[u8], a: &[u8]) -> Option<f32> {
    match isa {
        #[cfg(target_arch = "x86_64")]
        Isa::Avx2 => avx2::vec_dot(false, ty, n, w, a),
        #[cfg(target_arch = "x86_64")]
        Isa::Avx2Vnni => avx2::vec_dot(true, ty, n, w, a),
        #[cfg(target_arch = "aarch64")]
        Isa::Neon => neon_dispatch::vec_dot(ty, n, w, a),
        _ => None,
    }
}

pub(crate) fn vec_dot_rows(isa: Isa, ty: GgmlType, n: usize, w: &[u8], a: &[u8], out: &mut [f32]) -> bool {
    let rb = crate::row_bytes(ty, n);
    match isa {
        #[cfg(target_arch = "x86_64")]
        Isa::Avx2 | Isa::Avx2Vnni if has_tile(ty) => {
            avx2::matmul(isa == Isa::Avx2Vnni, ty, n, w, out.len(), rb, a, 1, 0, out, 0);
            true
        }
        #[cfg(target_arch = "aarch64")]
        Isa::Neon if has_tile(ty) => {
            neon_dispatch::matmul(ty, n, w, out.len(), rb, a, 1, 0, out, 0);
            true
        }
        Isa::Scalar => false,
        _ => {
            for (o, row) in out.iter_mut().zip(w.chunks_exact(rb)) {
                match vec_dot(isa, ty, n, row, a) {
                    Some(v) => *o = v,
                    None => return false,
                }
            }
            true
        }
    }
}

#[allow(clippy::too_many_arguments)]
pub(crate) fn matmul_rows(
    isa: Isa,
    ty: GgmlType,
    n: usize,
    w: &[u8],
    n_w_rows: usize,
    a: &[u8],
    n_a_rows: usize,
    out: &mut [f32],
    out_stride: usize,
) -> bool {
    let rb = crate::row_bytes(ty, n);
    let ab = crate::row_bytes(crate::vec_dot_type(ty), n);
    match isa {
        #[cfg(target_arch = "x86_64")]
        Isa::Avx2 | Isa::Avx2Vnni if has_tile(ty) => {
            avx2::matmul(isa == Isa::Avx2Vnni, ty, n, w, n_w_rows, rb, a, n_a_rows, ab, out, out_stride);
            true
        }
        #[cfg(target_arch = "aarch64")]
        Isa::Neon if has_tile(ty) => {
            neon_dispatch::matmul(ty, n, w, n_w_rows, rb, a, n_a_rows, ab, out, out_stride);
            true
        }
        Isa::Scalar => false,
        _ => {
            for t in 0..n_a_rows {
                let arow = &a[t * ab..(t + 1) * ab];
                let o = &mut out[t * out_stride..t * out_stride + n_w_rows];
                if !vec_dot_rows(isa, ty, n, w, arow, o) {
                    return false;
                }
            }
            true
        }
    }
}

pub(crate) fn quantize_activation(isa: Isa, ty: GgmlType, src: &[f32], dst: &mut [u8]) -> bool {
    match isa {
        #[cfg(target_arch = "x86_64")]
        Isa::Avx2 | Isa::Avx2Vnni => avx2::quantize_activation(ty, src, dst),
        #[cfg(target_arch = "aarch64")]
        Isa::Neon => neon_dispatch::quantize_activation(ty, src, dst),
        _ => false,
    }
}

pub(crate) fn dequantize_row(isa: Isa, ty: GgmlType, src: &[u8], dst: &mut [f32]) -> bool {
    match isa {
        #[cfg(target_arch = "x86_64")]
        Isa::Avx2 | Isa::Avx2Vnni => avx2::dequantize_row(ty, src, dst),
        #[cfg(target_arch = "aarch64")]
        Isa::Neon => neon_dispatch::dequantize_row(ty, src, dst),
        _ => false,
    }
}

/// Tile shapes: `MR` weight rows x `MT` activation rows per pass in
/// `matmul_rows`; for a single activation row, `DR` weight rows per pass for
/// the legacy types and `DR_K` for the K-quants. Measured on Zen 4: with
/// the weights in cache, four Q4_0/Q8_0 rows per pass are ~25% faster than
/// one (shared activation work, four independent chains), but decode reads
/// its weights from DRAM, and there one row per pass, a single sequential
/// stream, is as fast or faster (`cargo bench -p hearth-kernels -- --big`,
/// ns per row, 4 rows vs 1: Q8_0 n=896 132 vs 72, Q5_0 n=896 95 vs 59,
/// n=4864 414 vs 368 and 312 vs 280; at n=8192 within 2%). K-quant rows
/// gain nothing from sharing either (their per-row decoding dominates; two
/// or four per pass spill registers and run 3-15% slower than one).
/// (NEON keeps four rows: not measured from DRAM there.) `MT` = 4
/// activation rows per tile: 8-35% less time per result than 2 in the
/// 8-row product of the kernel bench for Q8_0/Q5_0/Q4_K/Q6_K on Zen 4
/// (more weight decoding shared); 8 spilled and slowed the K-quants.
#[cfg(target_arch = "aarch64")]
const DR: usize = 4;
#[cfg(not(target_arch = "aarch64"))]
const DR: usize = 1;
const DR_K: usize = 1;
const MR: usize = 4;
const MT: usize = 4;

/// Drives an R x T tile kernel over all rows. `kernel!(R, T)` must evaluate
/// to a function `(nb, [*const u8; R], [*const u8; T]) -> [[f32; T]; R]`.
macro_rules! drive_tiles {
    ($nb:expr, $w:expr, $n_w:expr, $rb:expr, $a:expr, $n_a:expr, $ab:expr, $out:expr, $stride:expr, $kernel:ident) => {
        drive_tiles!($nb, $w, $n_w, $rb, $a, $n_a, $ab, $out, $stride, $kernel, DR)
    };
    ($nb:expr, $w:expr, $n_w:expr, $rb:expr, $a:expr, $n_a:expr, $ab:expr, $out:expr, $stride:expr, $kernel:ident, $dr:ident) => {{
        let (nb, w, n_w, rb, a, n_a, ab, out, stride): (usize, &[u8], usize, usize, &[u8], usize, usize, &mut [f32], usize) =
            ($nb, $w, $n_w, $rb, $a, $n_a, $ab, $out, $stride);
        // SAFETY (for every kernel call below): the ISA was detected by
        // `isa()`; row r of `w` is `w[r*rb..(r+1)*rb]` and row t of `a` is
        // `a[t*ab..(t+1)*ab]`, in bounds because the caller checked
        // `w.len() == n_w*rb` and `a.len() == n_a*ab`; each row holds `nb`
        // blocks because `rb`/`ab` are `row_bytes(.., n)` with n = nb * block.
        let wp = |r: usize| w[r * rb..].as_ptr();
        let ap = |t: usize| a[t * ab..].as_ptr();
        let mut t0 = 0;
        if n_a == 1 {
            let mut r0 = 0;
            while r0 + $dr <= n_w {
                let res = unsafe { $kernel!($dr, 1)(nb, std::array::from_fn(|i| wp(r0 + i)), [ap(0)]) };
                for i in 0..$dr {
                    out[r0 + i] = res[i][0];
                }
                r0 += $dr;
            }
            while r0 < n_w {
                let res = unsafe { $kernel!(1, 1)(nb, [wp(r0)], [ap(0)]) };
                out[r0] = res[0][0];
                r0 += 1;
            }
            t0 = 1;
        }
        while t0 < n_a {
            let tn = if t0 + MT <= n_a { MT } else { 1 };
            let mut r0 = 0;
            while r0 < n_w {
                let rn = if r0 + MR <= n_w { MR } else { 1 };
                match (rn, tn) {
                    (MR, MT) => {
                        let res = unsafe {
                            $kernel!(MR, MT)(nb, std::array::from_fn(|i| wp(r0 + i)), std::array::from_fn(|j| ap(t0 + j)))
                        };
                        for (i, row) in res.iter().enumerate() {
                            for (j, v) in row.iter().enumerate() {
                                out[(t0 + j) * stride + r0 + i] = *v;
                            }
                        }
                    }
                    (MR, _) => {
                        let res = unsafe { $kernel!(MR, 1)(nb, std::array::from_fn(|i| wp(r0 + i)), [ap(t0)]) };
                        for (i, row) in res.iter().enumerate() {
                            out[t0 * stride + r0 + i] = row[0];
                        }
                    }
                    (_, MT) => {
                        let res = unsafe { $kernel!(1, MT)(nb, [wp(r0)], std::array::from_fn(|j| ap(t0 + j))) };
                        for (j, v) in res[0].iter().enumerate() {
                            out[(t0 + j) * stride + r0] = *v;
                        }
                    }
                    _ => {
                        let res = unsafe { $kernel!(1, 1)(nb, [wp(r0)], [ap(t0)]) };
                        out[t0 * stride + r0] = res[0][0];
                    }
                }
                r0 += rn;
            }
            t0 += tn;
        }
    }};
}

#[cfg(target_arch = "x86_64")]
mod avx2 {
    use super::x86::{self, act, dot};
    use super::{DR, DR_K, MR, MT};
    use crate::GgmlType;

    macro_rules! q4_0 { ($r:expr, $t:expr) => { dot::avx2::tile_q4_0::<{ $r }, { $t }> }; }
    macro_rules! q5_0 { ($r:expr, $t:expr) => { dot::avx2::tile_q5_0::<{ $r }, { $t }> }; }
    macro_rules! q5_0v { ($r:expr, $t:expr) => { dot::vnni::tile_q5_0::<{ $r }, { $t }> }; }
    macro_rules! q8_0 { ($r:expr, $t:expr) => { dot::avx2::tile_q8_0::<{ $r }, { $t }> }; }
    macro_rules! q4_k { ($r:expr, $t:expr) => { dot::avx2::tile_q4_k::<{ $r }, { $t }> }; }
    macro_rules! q6_k { ($r:expr, $t:expr) => { dot::avx2::tile_q6_k::<{ $r }, { $t }> }; }
    macro_rules! q4_0v { ($r:expr, $t:expr) => { dot::vnni::tile_q4_0::<{ $r }, { $t }> }; }
    macro_rules! q8_0v { ($r:expr, $t:expr) => { dot::vnni::tile_q8_0::<{ $r }, { $t }> }; }
    macro_rules! q4_kv { ($r:expr, $t:expr) => { dot::vnni::tile_q4_k::<{ $r }, { $t }> }; }
    macro_rules! q6_kv { ($r:expr, $t:expr) => { dot::vnni::tile_q6_k::<{ $r }, { $t }> }; }

    macro_rules! single {
        ($m:ident, $ty:expr, $n:expr, $nb:expr, $w:expr, $a:expr) => {
            Some(match $ty {
                GgmlType::F32 => x86::dot_f32($n, $w, $a),
                GgmlType::F16 => x86::dot_f16($n, $w, $a),
                GgmlType::BF16 => x86::dot_bf16($n, $w, $a),
                GgmlType::Q4_0 => dot::$m::tile_q4_0::<1, 1>($nb, [$w], [$a])[0][0],
                GgmlType::Q8_0 => dot::$m::tile_q8_0::<1, 1>($nb, [$w], [$a])[0][0],
                GgmlType::Q4_1 => dot::$m::q4_1($nb, $w, $a),
                GgmlType::Q5_0 => dot::$m::tile_q5_0::<1, 1>($nb, [$w], [$a])[0][0],
                GgmlType::Q5_1 => dot::$m::q5_1($nb, $w, $a),
                GgmlType::Q2_K => dot::$m::q2_k($nb, $w, $a),
                GgmlType::Q3_K => dot::$m::q3_k($nb, $w, $a),
                GgmlType::Q4_K => dot::$m::tile_q4_k::<1, 1>($nb, [$w], [$a])[0][0],
                GgmlType::Q5_K => dot::$m::q5_k($nb, $w, $a),
                GgmlType::Q6_K => dot::$m::tile_q6_k::<1, 1>($nb, [$w], [$a])[0][0],
                _ => return None,
            })
        };
    }

    pub(super) fn vec_dot(vnni: bool, ty: GgmlType, n: usize, w: &[u8], a: &[u8]) -> Option<f32> {
        let nb = n / ty.block_size();
        let (w, a) = (w.as_ptr(), a.as_ptr());
        // SAFETY: the tier was detected by `available()` (AVX2/FMA/F16C,
        // plus AVX512VNNI/VL when `vnni`); `w`/`a` are one validated row each
        // of `nb` blocks (`n` elements for the float types).
        unsafe {
            if vnni {
                single!(vnni, ty, n, nb, w, a)
            } else {
                single!(avx2, ty, n, nb, w, a)
            }
        }
    }

    #[allow(clippy::too_many_arguments)]
    pub(super) fn matmul(
        vnni: bool,
        ty: GgmlType,
        n: usize,
        w: &[u8],
        n_w: usize,
        rb: usize,
        a: &[u8],
        n_a: usize,
        ab: usize,
        out: &mut [f32],
        stride: usize,
    ) {
        let nb = n / ty.block_size();
        match (ty, vnni) {
            (GgmlType::Q4_0, false) => drive_tiles!(nb, w, n_w, rb, a, n_a, ab, out, stride, q4_0),
            (GgmlType::Q5_0, false) => drive_tiles!(nb, w, n_w, rb, a, n_a, ab, out, stride, q5_0),
            (GgmlType::Q5_0, true) => drive_tiles!(nb, w, n_w, rb, a, n_a, ab, out, stride, q5_0v),
            (GgmlType::Q8_0, false) => drive_tiles!(nb, w, n_w, rb, a, n_a, ab, out, stride, q8_0),
            (GgmlType::Q4_K, false) => drive_tiles!(nb, w, n_w, rb, a, n_a, ab, out, stride, q4_k, DR_K),
            (GgmlType::Q6_K, false) => drive_tiles!(nb, w, n_w, rb, a, n_a, ab, out, stride, q6_k, DR_K),
            (GgmlType::Q4_0, true) => drive_tiles!(nb, w, n_w, rb, a, n_a, ab, out, stride, q4_0v),
            (GgmlType::Q8_0, true) => drive_tiles!(nb, w, n_w, rb, a, n_a, ab, out, stride, q8_0v),
            (GgmlType::Q4_K, true) => drive_tiles!(nb, w, n_w, rb, a, n_a, ab, out, stride, q4_kv, DR_K),
            (GgmlType::Q6_K, true) => drive_tiles!(nb, w, n_w, rb, a, n_a, ab, out, stride, q6_kv, DR_K),
            _ => unreachable!("matmul called for a type without tiles"),
        }
    }

    thread_local! {
        static SUMS: std::cell::RefCell<Vec<i32>> = const { std::cell::RefCell::new(Vec::new()) };
        static SCALES: std::cell::RefCell<Vec<f32>> = const { std::cell::RefCell::new(Vec::new()) };
    }

    /// Drives the x8 kernels: activation rows in blocks of 32 against
    /// cache-sized blocks of row groups, in tiles of eight (every type but
    /// Q6_K on the VNNI tier) or four rows; the rest two at a time (two row
    /// groups per pass) or one (one group, decode).
    ///
    /// # Safety
    /// As [`super::matmul_packed`].
    #[allow(clippy::too_many_arguments)]
    pub(super) unsafe fn matmul_packed(
        vnni: bool,
        ty: GgmlType,
        n: usize,
        w: &[u8],
        n_w: usize,
        a: &[u8],
        n_a: usize,
        out: *mut f32,
        stride: usize,
    ) {
        let nb = n / ty.block_size();
        let gbytes = nb * 8 * ty.type_size();
        let groups = n_w.div_ceil(8);
        // Activation row bytes: Q8_0 blocks of 34, or Q8_K blocks of 292 for the K-quants.
        let abytes = crate::row_bytes(crate::vec_dot_type(ty), n);
        let q8_act = matches!(ty, GgmlType::Q4_0 | GgmlType::Q5_0 | GgmlType::Q8_0);
        SUMS.with(|sums| SCALES.with(|scales| {
            let (mut sums, mut scales) = (sums.borrow_mut(), scales.borrow_mut());
            if q8_act {
                sums.clear();
                sums.resize(n_a * nb, 0);
                scales.clear();
                scales.resize(n_a * nb, 0.0);
                // SAFETY: ISA detected; `a` is n_a rows of nb Q8_0 blocks (checked
                // by the caller), `sums` and `scales` hold n_a * nb values each.
                unsafe { x86::packed::block_prep(nb, a.as_ptr(), n_a, sums.as_mut_ptr(), scales.as_mut_ptr()) };
            }
            // Plain pointer arithmetic (no slice bounds checks in the tile
            // loops); every index below is in range by the loop bounds, and
            // `sp`/`dp` are only read by the Q8_0-activation kernels, for
            // which they hold n_a * nb values.
            let (s0, d0, w0, a0) = (sums.as_ptr(), scales.as_ptr(), w.as_ptr(), a.as_ptr());
            let sp = |t: usize| s0.wrapping_add(t * nb);
            let dp = |t: usize| d0.wrapping_add(t * nb);
            let wp = |g: usize| w0.wrapping_add(g * gbytes);
            let ap = |t: usize| a0.wrapping_add(t * abytes);
            macro_rules! run {
                ($m:ident, $g:expr, $t:expr, $g0:expr, $t0:expr) => {{
                    let (g0, t0): (usize, usize) = ($g0, $t0);
                    // SAFETY: ISA detected; group g0+i lies within `w` (g0 + G <=
                    // groups, `w` holds `groups` whole groups), activation rows
                    // t0 + j < n_a, and their block sums were written above.
                    let res = unsafe {
                        match (ty, vnni) {
                            (GgmlType::Q4_0, false) => x86::packed::avx2::q4_0::<{ $g }, { $t }>(
                                nb, std::array::from_fn(|i| wp(g0 + i)), std::array::from_fn(|j| ap(t0 + j)), std::array::from_fn(|j| sp(t0 + j)), std::array::from_fn(|j| dp(t0 + j))),
                            (GgmlType::Q4_0, true) => x86::packed::vnni::q4_0::<{ $g }, { $t }>(
                                nb, std::array::from_fn(|i| wp(g0 + i)), std::array::from_fn(|j| ap(t0 + j)), std::array::from_fn(|j| sp(t0 + j)), std::array::from_fn(|j| dp(t0 + j))),
                            (GgmlType::Q5_0, false) => x86::packed::avx2::q5_0::<{ $g }, { $t }>(
                                nb, std::array::from_fn(|i| wp(g0 + i)), std::array::from_fn(|j| ap(t0 + j)), std::array::from_fn(|j| sp(t0 + j)), std::array::from_fn(|j| dp(t0 + j))),
                            (GgmlType::Q5_0, true) => x86::packed::vnni::q5_0::<{ $g }, { $t }>(
                                nb, std::array::from_fn(|i| wp(g0 + i)), std::array::from_fn(|j| ap(t0 + j)), std::array::from_fn(|j| sp(t0 + j)), std::array::from_fn(|j| dp(t0 + j))),
                            (GgmlType::Q4_K, false) => x86::packed::avx2::q4_k::<{ $g }, { $t }>(
                                nb, std::array::from_fn(|i| wp(g0 + i)), std::array::from_fn(|j| ap(t0 + j))),
                            (GgmlType::Q4_K, true) => x86::packed::vnni::q4_k::<{ $g }, { $t }>(
                                nb, std::array::from_fn(|i| wp(g0 + i)), std::array::from_fn(|j| ap(t0 + j))),
                            (GgmlType::Q6_K, false) => x86::packed::avx2::q6_k::<{ $g }, { $t }>(
                                nb, std::array::from_fn(|i| wp(g0 + i)), std::array::from_fn(|j| ap(t0 + j))),
                            (GgmlType::Q6_K, true) => x86::packed::vnni::q6_k::<{ $g }, { $t }>(
                                nb, std::array::from_fn(|i| wp(g0 + i)), std::array::from_fn(|j| ap(t0 + j))),
                            (_, false) => x86::packed::avx2::q8_0::<{ $g }, { $t }>(
                                nb, std::array::from_fn(|i| wp(g0 + i)), std::array::from_fn(|j| ap(t0 + j)), std::array::from_fn(|j| sp(t0 + j)), std::array::from_fn(|j| dp(t0 + j))),
                            (_, true) => x86::packed::vnni::q8_0::<{ $g }, { $t }>(
                                nb, std::array::from_fn(|i| wp(g0 + i)), std::array::from_fn(|j| ap(t0 + j)), std::array::from_fn(|j| sp(t0 + j)), std::array::from_fn(|j| dp(t0 + j))),
                        }
                    };
                    for (gi, per_t) in res.iter().enumerate() {
                        for (ti, lanes) in per_t.iter().enumerate() {
                            let r0 = 8 * (g0 + gi);
                            let k = (n_w - r0.min(n_w)).min(8);
                            let o = (t0 + ti) * stride + r0;
                            // SAFETY: row t0 + ti < n_a, columns r0..r0 + k < n_w
                            // (the caller's contract); k == 8 is one vector store.
                            unsafe {
                                if k == 8 {
                                    std::ptr::copy_nonoverlapping(lanes.as_ptr(), out.add(o), 8);
                                } else {
                                    std::ptr::copy_nonoverlapping(lanes.as_ptr(), out.add(o), k);
                                }
                            }
                        }
                    }
                }};
            }
            // Prefill: blocks of TB activation rows x enough row groups to
            // fill ~CACHE_BLOCK bytes of weights, so each weight block is
            // read from memory once per TB rows and reused from L2 by the
            // TB/4 tiles (one pass over the whole matrix per 4 rows went to
            // L3 or DRAM every time: a 2048 x 8192 Q4_K matrix is 9.4 MB).
            // Every output is still one kernel call's result, so the order
            // of the calls changes nothing numerically.
            const TB: usize = 32;
            const CACHE_BLOCK: usize = 256 * 1024;
            let gblk = (CACHE_BLOCK / gbytes.max(1)).clamp(1, groups.max(1));
            // Tiles take 8 activation rows with the AVX-512 register file:
            // the unpacking and scale decoding are per weight group, shared
            // by more rows (kernel bench p8 column, 8192-wide rows: Q4_K 79
            // -> 62 ns; Q5_0 4864-wide 42 -> 40, Q8_0 56 -> 39 with the
            // offset layout, `cargo bench -p hearth-kernels --bench kernels`).
            // Q6_K's tile keeps 4 sub-block sums per row live and would
            // spill at 8.
            let wide = vnni && ty != GgmlType::Q6_K;
            let step = if wide { 8 } else { 4 };
            let whole = n_a - n_a % step;
            let mut tb0 = 0;
            while tb0 < whole {
                let tb1 = (tb0 + TB).min(whole);
                let mut gb0 = 0;
                while gb0 < groups {
                    let gb1 = (gb0 + gblk).min(groups);
                    let mut t0 = tb0;
                    while t0 < tb1 {
                        for g in gb0..gb1 {
                            if wide {
                                run!(x, 1, 8, g, t0);
                            } else {
                                run!(x, 1, 4, g, t0);
                            }
                        }
                        t0 += step;
                    }
                    gb0 = gb1;
                }
                tb0 = tb1;
            }
            let mut t0 = whole;
            while n_a - t0 >= 4 {
                for g in 0..groups {
                    run!(x, 1, 4, g, t0);
                }
                t0 += 4;
            }
            while t0 < n_a {
                let left = n_a - t0;
                if left >= 2 {
                    let mut g = 0;
                    while g + 2 <= groups {
                        run!(x, 2, 2, g, t0);
                        g += 2;
                    }
                    if g < groups {
                        run!(x, 1, 2, g, t0);
                    }
                    t0 += 2;
                } else {
                    // One group per pass: a single sequential stream reads
                    // from DRAM faster than two interleaved ones (decode;
                    // `cargo bench -p hearth-kernels -- --big`, p1 column:
                    // Q5_0 n=896 33 vs 69 ns/row, Q8_0 56 vs 104).
                    for g in 0..groups {
                        run!(x, 1, 1, g, t0);
                    }
                    t0 += 1;
                }
            }
        }));
    }

    pub(super) fn quantize_activation(ty: GgmlType, src: &[f32], dst: &mut [u8]) -> bool {
        let n = src.len();
        let (x, y) = (src.as_ptr(), dst.as_mut_ptr());
        // SAFETY: ISA detected; `dst` is exactly row_bytes(ty, n) bytes and
        // `src` n floats (check_row).
        unsafe {
            match ty {
                GgmlType::Q8_0 => act::q8_0(n / 32, x, y),
                GgmlType::Q8_1 => act::q8_1(n / 32, x, y),
                GgmlType::Q8_K => act::q8_k(n / 256, x, y),
                GgmlType::F16 => act::f16(n, x, y),
                GgmlType::BF16 => act::bf16(n, x, y),
                _ => return false,
            }
        }
        true
    }

    pub(super) fn dequantize_row(ty: GgmlType, src: &[u8], dst: &mut [f32]) -> bool {
        let n = dst.len();
        let (x, y) = (src.as_ptr(), dst.as_mut_ptr());
        // SAFETY: ISA detected; `src` is exactly one row of n elements.
        unsafe {
            match ty {
                GgmlType::F16 => x86::dequant_f16(n, x, y),
                GgmlType::BF16 => x86::dequant_bf16(n, x, y),
                GgmlType::Q4_0 => x86::dequant_q4_0(n / 32, x, y),
                GgmlType::Q8_0 => x86::dequant_q8_0(n / 32, x, y),
                GgmlType::Q4_K => x86::dequant_q4_k(n / 256, x, y),
                GgmlType::Q6_K => x86::dequant_q6_k(n / 256, x, y),
                _ => return false,
            }
        }
        true
    }
}

#[cfg(target_arch = "aarch64")]
mod neon_dispatch {
    use super::neon;
    use super::{DR, DR_K, MR, MT};
    use crate::GgmlType;

    macro_rules! q4_0 { ($r:expr, $t:expr) => { neon::tile_q4_0::<{ $r }, { $t }> }; }
    macro_rules! q8_0 { ($r:expr, $t:expr) => { neon::tile_q8_0::<{ $r }, { $t }> }; }
    macro_rules! q4_k { ($r:expr, $t:expr) => { neon::tile_q4_k::<{ $r }, { $t }> }; }
    macro_rules! q6_k { ($r:expr, $t:expr) => { neon::tile_q6_k::<{ $r }, { $t }> }; }

    pub(super) fn vec_dot(ty: GgmlType, n: usize, w: &[u8], a: &[u8]) -> Option<f32> {
        let nb = n / ty.block_size();
        let (w, a) = (w.as_ptr(), a.as_ptr());
        // SAFETY: NEON confirmed by isa(); `w`/`a` are one validated row each
        // of `nb` blocks (`n` elements for the float types).
        unsafe {
            Some(match ty {
                GgmlType::F32 => neon::dot_f32(n, w, a),
                GgmlType::F16 => neon::dot_f16(n, w, a),
                GgmlType::BF16 => neon::dot_bf16(n, w, a),
                GgmlType::Q4_0 => neon::tile_q4_0::<1, 1>(nb, [w], [a])[0][0],
                GgmlType::Q8_0 => neon::tile_q8_0::<1, 1>(nb, [w], [a])[0][0],
                GgmlType::Q4_1 => neon::q4_1(nb, w, a),
                GgmlType::Q5_0 => neon::q5_0(nb, w, a),
                GgmlType::Q5_1 => neon::q5_1(nb, w, a),
                GgmlType::Q2_K => neon::q2_k(nb, w, a),
                GgmlType::Q3_K => neon::q3_k(nb, w, a),
                GgmlType::Q4_K => neon::tile_q4_k::<1, 1>(nb, [w], [a])[0][0],
                GgmlType::Q5_K => neon::q5_k(nb, w, a),
                GgmlType::Q6_K => neon::tile_q6_k::<1, 1>(nb, [w], [a])[0][0],
                _ => return None,
            })
        }
    }

    #[allow(clippy::too_many_arguments)]
    pub(super) fn matmul(
        ty: GgmlType,
        n: usize,
        w: &[u8],
        n_w: usize,
        rb: usize,
        a: &[u8],
        n_a: usize,
        ab: usize,
        out: &mut [f32],
        stride: usize,
    ) {
        let nb = n / ty.block_size();
        match ty {
            GgmlType::Q4_0 => drive_tiles!(nb, w, n_w, rb, a, n_a, ab, out, stride, q4_0),
            GgmlType::Q8_0 => drive_tiles!(nb, w, n_w, rb, a, n_a, ab, out, stride, q8_0),
            GgmlType::Q4_K => drive_tiles!(nb, w, n_w, rb, a, n_a, ab, out, stride, q4_k, DR_K),
            GgmlType::Q6_K => drive_tiles!(nb, w, n_w, rb, a, n_a, ab, out, stride, q6_k, DR_K),
            _ => unreachable!("matmul called for a type without tiles"),
        }
    }

    pub(super) fn quantize_activation(ty: GgmlType, src: &[f32], dst: &mut [u8]) -> bool {
        let n = src.len();
        let (x, y) = (src.as_ptr(), dst.as_mut_ptr());
        // SAFETY: NEON confirmed; `dst` is exactly row_bytes(ty, n) bytes and
        // `src` n floats (check_row).
        unsafe {
            match ty {
                GgmlType::Q8_0 => neon::act_q8_0(n / 32, x, y),
                GgmlType::Q8_1 => neon::act_q8_1(n / 32, x, y),
                GgmlType::Q8_K => neon::act_q8_k(n / 256, x, y),
                GgmlType::F16 => neon::act_f16(n, x, y),
                GgmlType::BF16 => neon::act_bf16(n, x, y),
                _ => return false,
            }
        }
        true
    }

    pub(super) fn dequantize_row(ty: GgmlType, src: &[u8], dst: &mut [f32]) -> bool {
        let n = dst.len();
        let (x, y) = (src.as_ptr(), dst.as_mut_ptr());
        // SAFETY: NEON confirmed; `src` is exactly one row of n elements.
        unsafe {
            match ty {
                GgmlType::F16 => neon::dequant_f16(n, x, y),
                GgmlType::BF16 => neon::dequant_bf16(n, x, y),
                GgmlType::Q4_0 => neon::dequant_q4_0(n / 32, x, y),
                GgmlType::Q8_0 => neon::dequant_q8_0(n / 32, x, y),
                GgmlType::Q4_K => neon::dequant_q4_k(n / 256, x, y),
                GgmlType::Q6_K => neon::dequant_q6_k(n / 256, x, y),
                _ => return false,
            }
        }
        true
    }
}
