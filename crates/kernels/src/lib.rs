//! Quantized tensor kernels for Hearth.
//!
//! This crate owns the arithmetic on ggml's tensor types: the on-disk block
//! layouts ([`blocks`]), a plain scalar reference for every operation
//! ([`reference`](mod@reference)), and optimised SIMD kernels chosen at run time. The public
//! functions at the crate root dispatch to the best tier the CPU supports;
//! [`cpu_features`] names it and [`variants`] lists every usable tier (tests
//! and benchmarks run each one). Nothing here needs `-C target-cpu=native`:
//! a binary built for baseline x86_64 runs everywhere (tested under
//! `qemu-x86_64 -cpu qemu64`, where it falls back to the scalar tier).
//!
//! | tier | selected when | what it is |
//! |------|---------------|------------|
//! | `avx2+fma+f16c+avx512vnni` | x86_64 with AVX2, FMA, F16C, AVX512VNNI, AVX512VL | the AVX2 kernels with `vpdpbusd`/`vpdpwssd` (256-bit) fusing multiply-add-accumulate |
//! | `avx2+fma+f16c` | x86_64 with AVX2, FMA, F16C | 256-bit integer kernels |
//! | `neon` | aarch64 | baseline NEON |
//! | `scalar` | anything else | the [`reference`](mod@reference) functions |
//!
//! # API shape
//!
//! * [`vec_dot`]: one weight row · one quantized activation row.
//! * [`vec_dot_rows`]: many consecutive weight rows against one activation
//!   row (decode), one row per pass with a software prefetch of the next
//!   row. Multi-row tiles sharing the activation loads are ~25% faster when
//!   the weights are in cache, but decode streams them from DRAM, where a
//!   single sequential stream measured as fast or faster (up to 1.8x for
//!   896-wide rows); NEON keeps 4-row tiles for Q4_0/Q8_0.
//! * [`matmul_rows`]: many weight rows × many activation rows (prefill);
//!   Q4_0, Q8_0, Q4_K and Q6_K (and Q5_0 on x86) use 4×4 tiles, decoding
//!   each weight block once for four activation rows (Q4_K: ~1.4x the
//!   throughput of row by row). Other types loop over [`vec_dot`]. Q5_0
//!   matters because a Qwen2.5-0.5B "Q4_K_M" file is mostly Q5_0: its
//!   896-wide rows are not whole 256-element K-quant blocks.
//! * [`repack`]: Q4_0, Q5_0, Q8_0 and Q4_K matrices repacked at load time into
//!   an 8-row interleaved layout, and their matrix product (one kernel for
//!   one or many activation rows; one `vpdpbusd` advances eight rows and
//!   the float work is once per eight rows): 1.7-2.6x the prefill tile
//!   throughput above. Its results differ from [`vec_dot`]'s by float
//!   rounding (a different, batch-independent summation order), see the
//!   module docs.
//! * [`attn`]: the attention loops over an F16 KV cache (scores of a group
//!   of query heads, weighted sum of values), bit-identical to their scalar
//!   references.
//! * [`quantize_activation`] / [`dequantize_row`] / [`quantize_row_ref`].
//!
//! All are single-threaded: callers split row ranges over their own threads.
//! Tiled results are bit-identical to [`vec_dot`] (same operations per
//! result, in the same order), and the AVX2 and VNNI tiers agree bitwise.
//!
//! The VNNI instructions are emitted with `asm!` because their intrinsics
//! need Rust 1.89 while the workspace declares 1.85; the x86 assembler takes
//! them without the target feature enabled, and they only run after
//! `is_x86_feature_detected!` confirmed AVX512VNNI and AVX512VL.
//!
//! # Types
//!
//! F32, F16, BF16, Q4_0, Q4_1, Q5_0, Q5_1, Q8_0, Q8_1, Q2_K, Q3_K, Q4_K,
//! Q5_K, Q6_K, Q8_K, with exactly ggml's layouts (ggml/src/ggml-common.h):
//!
//! | type | elems/block | bytes | layout (little-endian)                                      |
//! |------|-------------|-------|-------------------------------------------------------------|
//! | Q4_0 | 32  | 18  | `d: f16, qs[16]` — x = d·(q−8)                                       |
//! | Q4_1 | 32  | 20  | `d, m: f16, qs[16]` — x = d·q + m                                    |
//! | Q5_0 | 32  | 22  | `d: f16, qh: u32, qs[16]` — x = d·(q−16)                             |
//! | Q5_1 | 32  | 24  | `d, m: f16, qh: u32, qs[16]` — x = d·q + m                           |
//! | Q8_0 | 32  | 34  | `d: f16, qs: i8[32]`                                                 |
//! | Q8_1 | 32  | 36  | `d, s: f16, qs: i8[32]`, s = d·Σq (activations only)                 |
//! | Q2_K | 256 | 84  | `scales[16], qs[64], d, dmin: f16` — x = d·sc·q − dmin·m             |
//! | Q3_K | 256 | 110 | `hmask[32], qs[64], scales[12], d: f16` — x = d·(sc−32)·(q−4)        |
//! | Q4_K | 256 | 144 | `d, dmin: f16, scales[12], qs[128]` — x = d·sc·q − dmin·m            |
//! | Q5_K | 256 | 176 | `d, dmin: f16, scales[12], qh[32], qs[128]`                          |
//! | Q6_K | 256 | 210 | `ql[128], qh[64], scales: i8[16], d: f16` — x = d·sc·(q−32)          |
//! | Q8_K | 256 | 292 | `d: f32, qs: i8[256], bsums: i16[16]` (activations only)             |
//!
//! # Conventions that corrupt output silently if wrong
//!
//! * **Nibble order.** Q4_0/Q4_1/Q5_x put element `j` (0..16) in the LOW
//!   nibble of `qs[j]` and element `j + 16` in the HIGH nibble of the same
//!   byte — not elements `2j`, `2j+1`. Q4_K/Q5_K do the same per 64-element
//!   chunk: low nibbles are elements `0..32` of the chunk, high nibbles
//!   `32..64`. Q6_K splits each 128-element half over `ql[0..64]` low/high
//!   nibbles and four 2-bit fields of `qh` (see [`blocks::BlockQ6_K`]).
//! * **Q5 high bits.** Bit `j` of Q5_0/Q5_1's little-endian `qh` is bit 4 of
//!   element `j`, for all 32 elements.
//! * **K-quant 6-bit scale packing.** Q4_K/Q5_K's 8 scales and 8 mins share
//!   12 bytes; sub-blocks 4..8 are split into nibbles plus two-bit tops stored
//!   in bits 6–7 of the first 8 bytes ([`blocks::scale_min_k4`]). Q3_K packs
//!   sixteen 6-bit scales into 12 bytes differently ([`blocks::q3k_scales`]),
//!   and its `hmask` bit being SET means the value is NOT shifted down by 4.
//! * **Q8_1's `s`** is `f16(d · Σq)` computed from the already-rounded
//!   quants; Q8_K's `bsums[j]` is the sum of quants `16j..16j+16`. Kernels use
//!   these for the min/offset terms, so a stale `s`/`bsums` gives wrong dots
//!   with correct-looking `qs`.
//! * **Activation rounding.** Activations are quantized as ggml-cpu does on
//!   x86 (Q8_0/Q8_1: multiplier `127/amax`, ties to even), which is not the
//!   same as `quantize_row_q8_0_ref` (`1/d`, ties away from zero). Weights
//!   use the latter ([`quantize_row_ref`]); activations the former
//!   ([`quantize_activation`]). On aarch64 ggml itself rounds activations
//!   with `1/d` (ties to even); Hearth keeps the x86 definition on every
//!   host, so results do not depend on the machine (and can differ from
//!   llama.cpp-on-ARM by one quantization step in rare elements).
//!   Non-finite activations (NaN) give unspecified, memory-safe bytes on
//!   x86 (`max` instructions and `f32::max` disagree on NaN); NEON routes
//!   such blocks to the scalar reference.
//!
//! # Panics
//!
//! The public functions take lengths from the caller, not from files: a
//! model loader validates tensor extents (`hearth-formats`) before any kernel
//! sees them. A length that does not match (`n` not a whole number of
//! blocks, a slice that is not exactly the rows it should be) or a type with
//! no such operation is a caller bug and panics with a message naming the
//! function and the numbers; the SIMD code relies on these checks for memory
//! safety. File *contents* never cause a panic: any bytes are valid blocks
//! (a NaN or huge scale produces NaN/inf results, not UB). Use
//! [`is_weight_type`] / [`reference::try_vec_dot_type`] to reject
//! unsupported tensor types gracefully.
//!
//! # Absent
//!
//! * i-quants (IQ*), TQ1_0/TQ2_0, MXFP4/NVFP4, Q1_0/Q2_0.
//! * The importance-matrix quantizers (`quantize_row_*_impl`); only the
//!   `_ref` ones llama-quantize uses without `--imatrix` are reproduced.
//! * Repacked layouts for the K-quants other than Q4_K and the other legacy types (they
//!   are read in the GGUF layout), and NEON kernels for the repacked ones.
//! * AVX-VNNI (the VEX form on client CPUs without AVX-512), full 512-bit
//!   AVX-512 kernels, and the NEON `sdot`/`i8mm` extensions (their Rust
//!   intrinsics are unstable; `asm!` would work as for VNNI).
//! * Threading (callers split row ranges across their own pool).
//! * Big-endian hosts are untested (blocks decode little-endian explicitly,
//!   the SIMD paths are x86_64/aarch64 only, which are little-endian).

pub mod attn;
pub mod blocks;
pub mod fp;
pub mod reference;
pub mod repack;
mod simd;

pub use hearth_formats::GgmlType;
pub use reference::{try_vec_dot_type, vec_dot_type};

/// Whether `ty` can be a matmul weight here (has a [`vec_dot`]).
pub const fn is_weight_type(ty: GgmlType) -> bool {
    try_vec_dot_type(ty).is_some()
}

/// Whether [`dequantize_row`] / [`quantize_row_ref`] support `ty`.
pub const fn is_supported_type(ty: GgmlType) -> bool {
    !matches!(ty, GgmlType::I8 | GgmlType::I16 | GgmlType::I32 | GgmlType::I64 | GgmlType::F64)
}

#[cold]
#[track_caller]
pub(crate) fn unsupported(what: &str, ty: GgmlType) -> ! {
    panic!("hearth-kernels: {what} does not support type {ty}")
}

/// Panics unless `n` elements is a whole number of `ty` blocks occupying
/// exactly `bytes` bytes.
#[inline]
#[track_caller]
pub(crate) fn check_row(what: &str, ty: GgmlType, n: usize, bytes: usize) {
    if !is_supported_type(ty) {
        unsupported(what, ty);
    }
    let bs = ty.block_size();
    // `%` rather than `is_multiple_of` (Rust 1.87) for the workspace MSRV.
    #[allow(clippy::manual_is_multiple_of)]
    let partial = n % bs != 0;
    if partial || (n / bs).checked_mul(ty.type_size()) != Some(bytes) {
        bad_len(what, ty, n, bytes);
    }
}

#[cold]
#[track_caller]
fn bad_len(what: &str, ty: GgmlType, n: usize, bytes: usize) -> ! {
    panic!(
        "hearth-kernels: {what}: {n} elements of {ty} (block {}, {} bytes/block) do not make {bytes} bytes",
        ty.block_size(),
        ty.type_size()
    )
}

/// Bytes of one row of `n` elements of `ty`.
///
/// # Panics
/// If `n` is not a whole number of blocks or the size overflows.
#[track_caller]
pub fn row_bytes(ty: GgmlType, n: usize) -> usize {
    match ty.row_bytes(n as u64).and_then(|b| usize::try_from(b).ok()) {
        Some(b) => b,
        None => bad_len("row_bytes", ty, n, 0),
    }
}

/// Dot product of a weight row of type `ty` (`n` elements, `w` exactly one
/// row) with an activation row `a` already quantized to
/// [`vec_dot_type`]`(ty)`.
///
/// # Panics
/// If `ty` is not a weight type or a length does not match (caller bugs).
pub fn vec_dot(ty: GgmlType, n: usize, w: &[u8], a: &[u8]) -> f32 {
    selected_variant().vec_dot(ty, n, w, a)
}

/// `out[i] = vec_dot(row i of w)` for `out.len()` consecutive weight rows of
/// `row_bytes(ty, n)` bytes each, all against the same activation row `a`.
/// The fast path processes several weight rows per pass, sharing the
/// activation loads. Results are bit-identical to calling [`vec_dot`] per row.
///
/// # Panics
/// If `w.len() != out.len() * row_bytes(ty, n)`, or as [`vec_dot`].
pub fn vec_dot_rows(ty: GgmlType, n: usize, w: &[u8], a: &[u8], out: &mut [f32]) {
    selected_variant().vec_dot_rows(ty, n, w, a, out)
}

/// Matrix product: for each of `n_a_rows` activation rows (packed, each
/// `row_bytes(vec_dot_type(ty), n)` bytes, already quantized) and each of
/// `n_w_rows` weight rows, `out[t * out_stride + r] = vec_dot(w row r, a row t)`.
/// The fast path decodes each weight block once for several activation rows
/// (prefill). Results are bit-identical to [`vec_dot`]; entries of `out`
/// between `n_w_rows` and `out_stride` are not touched.
///
/// # Panics
/// If `w` or `a` is not exactly that many rows, `out_stride < n_w_rows`, or
/// `out` is too short for the last activation row; or as [`vec_dot`].
#[allow(clippy::too_many_arguments)]
pub fn matmul_rows(
    ty: GgmlType,
    n: usize,
    w: &[u8],
    n_w_rows: usize,
    a: &[u8],
    n_a_rows: usize,
    out: &mut [f32],
    out_stride: usize,
) {
    selected_variant().matmul_rows(ty, n, w, n_w_rows, a, n_a_rows, out, out_stride)
}

/// Quantizes an activation row to `ty`, which must be a `vec_dot_type`
/// (F32, F16, BF16, Q8_0, Q8_1, Q8_K), byte-identically to
/// [`reference::quantize_activation`] (ggml-cpu's x86 `from_float`) for
/// finite input.
///
/// # Panics
/// If `ty` is not a `vec_dot_type` or `dst` is not exactly one row.
pub fn quantize_activation(ty: GgmlType, src: &[f32], dst: &mut [u8]) {
    selected_variant().quantize_activation(ty, src, dst)
}

/// Dequantizes one row (`dst.len()` elements), bit-identically to ggml's
/// `to_float`.
///
/// # Panics
/// If `src` is not exactly one row of `dst.len()` elements of `ty`, or `ty`
/// is an integer type.
pub fn dequantize_row(ty: GgmlType, src: &[u8], dst: &mut [f32]) {
    selected_variant().dequantize_row(ty, src, dst)
}

/// One instruction-set tier of the kernels ("avx2+fma+f16c", "neon",
/// "scalar", ...). The crate-root functions use [`selected_variant`]; tests
/// and benchmarks use [`variants`] to check or time every tier the CPU
/// offers. A `Variant` can only be obtained for a tier this CPU supports.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Variant(simd::Isa);

/// Every tier this CPU can run, best first; the last is always the scalar
/// reference.
pub fn variants() -> Vec<Variant> {
    simd::available().into_iter().map(Variant).collect()
}

/// The tier the crate-root functions dispatch to (the first of [`variants`]).
pub fn selected_variant() -> Variant {
    Variant(simd::isa())
}

impl Variant {
    /// E.g. `"avx2+fma+f16c"`.
    pub fn name(self) -> &'static str {
        self.0.name()
    }

    /// [`crate::vec_dot`] with this tier's kernels.
    pub fn vec_dot(self, ty: GgmlType, n: usize, w: &[u8], a: &[u8]) -> f32 {
        let at = vec_dot_type(ty);
        check_row("vec_dot (weights)", ty, n, w.len());
        check_row("vec_dot (activations)", at, n, a.len());
        if let Some(v) = simd::vec_dot(self.0, ty, n, w, a) {
            return v;
        }
        reference::vec_dot(ty, n, w, a)
    }

    /// [`crate::vec_dot_rows`] with this tier's kernels.
    pub fn vec_dot_rows(self, ty: GgmlType, n: usize, w: &[u8], a: &[u8], out: &mut [f32]) {
        let at = vec_dot_type(ty);
        let rb = row_bytes(ty, n);
        check_row("vec_dot_rows (activations)", at, n, a.len());
        if out.len().checked_mul(rb) != Some(w.len()) {
            panic!("hearth-kernels: vec_dot_rows: {} bytes of weights is not {} rows of {rb} bytes", w.len(), out.len());
        }
        if simd::vec_dot_rows(self.0, ty, n, w, a, out) {
            return;
        }
        for (o, row) in out.iter_mut().zip(w.chunks_exact(rb.max(1))) {
            *o = reference::vec_dot(ty, n, row, a);
        }
    }

    /// [`crate::matmul_rows`] with this tier's kernels.
    #[allow(clippy::too_many_arguments)]
    pub fn matmul_rows(
        self,
        ty: GgmlType,
        n: usize,
        w: &[u8],
        n_w_rows: usize,
        a: &[u8],
        n_a_rows: usize,
        out: &mut [f32],
        out_stride: usize,
    ) {
        let at = vec_dot_type(ty);
        let rb = row_bytes(ty, n);
        let ab = row_bytes(at, n);
        if n_w_rows.checked_mul(rb) != Some(w.len()) {
            panic!("hearth-kernels: matmul_rows: {} bytes of weights is not {n_w_rows} rows of {rb} bytes", w.len());
        }
        if n_a_rows.checked_mul(ab) != Some(a.len()) {
            panic!("hearth-kernels: matmul_rows: {} bytes of activations is not {n_a_rows} rows of {ab} bytes", a.len());
        }
        if n_w_rows == 0 || n_a_rows == 0 {
            return;
        }
        let need = (n_a_rows - 1).checked_mul(out_stride).and_then(|v| v.checked_add(n_w_rows));
        if out_stride < n_w_rows || need.is_none_or(|need| out.len() < need) {
            panic!(
                "hearth-kernels: matmul_rows: out has {} floats, stride {out_stride}; need {n_a_rows} rows of {n_w_rows}",
                out.len()
            );
        }
        if simd::matmul_rows(self.0, ty, n, w, n_w_rows, a, n_a_rows, out, out_stride) {
            return;
        }
        for t in 0..n_a_rows {
            let arow = &a[t * ab..(t + 1) * ab];
            for r in 0..n_w_rows {
                out[t * out_stride + r] = reference::vec_dot(ty, n, &w[r * rb..(r + 1) * rb], arow);
            }
        }
    }

    /// [`crate::quantize_activation`] with this tier's kernels.
    pub fn quantize_activation(self, ty: GgmlType, src: &[f32], dst: &mut [u8]) {
        check_row("quantize_activation", ty, src.len(), dst.len());
        if simd::quantize_activation(self.0, ty, src, dst) {
            return;
        }
        reference::quantize_activation(ty, src, dst)
    }

    /// [`crate::dequantize_row`] with this tier's kernels.
    pub fn dequantize_row(self, ty: GgmlType, src: &[u8], dst: &mut [f32]) {
        check_row("dequantize_row", ty, dst.len(), src.len());
        if simd::dequantize_row(self.0, ty, src, dst) {
            return;
        }
        reference::dequantize_row(ty, src, dst)
    }
}

/// llama.cpp-identical weight quantizer (`quantize_row_*_ref`, which
/// `llama-quantize` uses when no importance matrix is given). Scalar: this
/// runs at model-conversion time, not per token.
///
/// # Panics
/// As [`dequantize_row`].
pub fn quantize_row_ref(ty: GgmlType, src: &[f32], dst: &mut [u8]) {
    reference::quantize_row(ty, src, dst)
}

/// The instruction set the dispatcher chose, e.g. `"avx2+fma+f16c"`,
/// `"avx2+fma+f16c+avx512vnni"`, `"neon"` or `"scalar"`.
pub fn cpu_features() -> &'static str {
    selected_variant().name()
}
