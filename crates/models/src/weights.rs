//! Weight tensors: borrowed from the memory-mapped file when the kernels can
//! use the bytes as they are, owned when they had to be converted.
//!
//! A mapped Q4_0/Q5_0/Q8_0/Q4_K matrix can also be repacked ([`Weight::repack`])
//! into the kernels' 8-row interleaved layout (`hearth_kernels::repack`),
//! which the matrix products then read instead of the file bytes. The
//! repacked copy *replaces* the mapped pages in memory: they are released
//! with `madvise(MADV_DONTNEED)` as they are consumed, so the process holds
//! one copy of the weights, not two. [`Weight::bytes`] still returns the
//! original GGUF bytes (the OS re-reads them from the file if something,
//! e.g. a LoRA merge, asks for them). Owned weights and tensors of in-memory
//! images (Hugging Face folders converted on the fly) are not repacked:
//! there the packed copy would be a second copy.
//!
//! Shape convention (silently corrupts output if wrong): a matrix is `rows`
//! rows of `cols` elements; GGUF writes its dims as `[cols, rows]` (ggml
//! order), and `y = W x` takes `x` of length `cols` to `y` of length `rows`.

use crate::error::{ModelError, Result};
use hearth_formats::{GgmlType, GgufFile, TensorInfo};
use std::sync::Arc;

#[derive(Clone)]
enum Storage {
    Mapped { file: Arc<GgufFile>, start: usize, len: usize },
    Owned(Arc<Vec<u8>>),
}

/// A 2-D weight matrix in any ggml type.
#[derive(Clone)]
pub struct Weight {
    pub ty: GgmlType,
    pub rows: usize,
    pub cols: usize,
    storage: Storage,
    /// The x8 interleaved copy the matrix products use, when repacked.
    packed: Option<Arc<Vec<u8>>>,
}

impl std::fmt::Debug for Weight {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Weight({} {}x{})", self.ty, self.rows, self.cols)
    }
}

impl Weight {
    pub fn bytes(&self) -> &[u8] {
        match &self.storage {
            Storage::Mapped { file, start, len } => &file.bytes()[*start..*start + *len],
            Storage::Owned(v) => v,
        }
    }

    /// Bytes per row.
    pub fn row_bytes(&self) -> usize {
        // Validated at load: cols is a whole number of blocks.
        self.ty.row_bytes(self.cols as u64).unwrap_or(0) as usize
    }

    pub fn row(&self, r: usize) -> &[u8] {
        let rb = self.row_bytes();
        &self.bytes()[r * rb..(r + 1) * rb]
    }

    /// Builds an owned weight (conversions, tests).
    pub fn from_owned(ty: GgmlType, rows: usize, cols: usize, data: Vec<u8>) -> Result<Weight> {
        let rb = ty
            .row_bytes(cols as u64)
            .ok_or_else(|| ModelError::Invalid(format!("{cols} columns is not a whole number of {ty} blocks")))?;
        if rb as usize * rows != data.len() {
            return Err(ModelError::Invalid(format!(
                "weight data is {} bytes, expected {} for {rows}x{cols} {ty}",
                data.len(),
                rb as usize * rows
            )));
        }
        Ok(Weight { ty, rows, cols, storage: Storage::Owned(Arc::new(data)), packed: None })
    }

    /// Dequantizes row `r` into `out` (length `cols`).
    pub fn dequantize_row(&self, r: usize, out: &mut [f32]) {
        match &self.packed {
            // Bit-identical to the original row's dequantization, without
            // faulting the released file pages back in.
            Some(p) => hearth_kernels::repack::dequantize_row(self.ty, p, r, out),
            None => hearth_kernels::dequantize_row(self.ty, self.row(r), out),
        }
    }

    /// The x8 interleaved copy (`hearth_kernels::repack` layout), if repacked.
    pub fn packed(&self) -> Option<&[u8]> {
        self.packed.as_deref().map(|v| &v[..])
    }

    /// Repacks a file-mapped matrix into the kernels' x8 layout when its
    /// type has one and this CPU has kernels for it (else, and for owned
    /// weights or in-memory images, does nothing). `HEARTH_NO_REPACK=1` in the environment turns
    /// this off (A/B measurements). The mapped pages are released piece by
    /// piece while packing, so peak memory grows by one piece (~4 MiB), not
    /// by the matrix.
    pub fn repack(&mut self) {
        use hearth_kernels::repack;
        if self.packed.is_some() || !repack::worth_packing(self.ty) || repack_disabled() {
            return;
        }
        let Storage::Mapped { file, .. } = &self.storage else { return };
        // An in-memory image is the only copy of its bytes: packing it would
        // double the memory, so it keeps the GGUF layout.
        if !file.is_mapped() {
            return;
        }
        let file = Arc::clone(file);
        let (ty, cols, rows, rb) = (self.ty, self.cols, self.rows, self.row_bytes());
        let src = self.bytes();
        let mut dst = vec![0u8; repack::packed_bytes(ty, cols, rows)];
        prefer_huge_pages(&mut dst);
        // Pieces of whole 8-row groups, about 4 MiB each.
        let piece_rows = ((4 << 20) / (8 * rb).max(1)).max(1) * 8;
        let mut r0 = 0;
        while r0 < rows {
            let r1 = (r0 + piece_rows).min(rows);
            let d0 = repack::packed_bytes(ty, cols, r0);
            let d1 = d0 + repack::packed_bytes(ty, cols, r1 - r0);
            let piece = &src[r0 * rb..r1 * rb];
            repack::pack(ty, cols, piece, r1 - r0, &mut dst[d0..d1]);
            release_pages(piece);
            r0 = r1;
        }
        drop(file);
        self.packed = Some(Arc::new(dst));
    }
}

fn repack_disabled() -> bool {
    std::env::var_os("HEARTH_NO_REPACK").is_some_and(|v| !v.is_empty() && v != "0")
}

#[cfg(target_os = "linux")]
extern "C" {
    fn madvise(addr: *mut std::ffi::c_void, len: usize, advice: i32) -> i32;
}

/// Tells the OS it may drop the pages under `bytes` (part of a read-only
/// file mapping): they are re-read from the file if touched again, so this
/// only lowers the resident set. Pages are rounded outward: a neighbour's
/// page dropped too is equally re-readable.
#[cfg(target_os = "linux")]
fn release_pages(bytes: &[u8]) {
    const MADV_DONTNEED: i32 = 4;
    const PAGE: usize = 4096;
    let start = bytes.as_ptr() as usize & !(PAGE - 1);
    let end = (bytes.as_ptr() as usize + bytes.len()).next_multiple_of(PAGE);
    // SAFETY: the range covers pages of a read-only, file-backed private
    // mapping (the caller checked `is_mapped`), which no one has written;
    // MADV_DONTNEED on such pages discards nothing that cannot be re-read
    // from the file, so every live reference into the map stays valid. A
    // failure (e.g. a larger page size making `start` unaligned) is
    // harmless: the pages simply stay resident.
    unsafe {
        madvise(start as *mut std::ffi::c_void, end - start, MADV_DONTNEED);
    }
}

#[cfg(not(target_os = "linux"))]
fn release_pages(_bytes: &[u8]) {}

/// Asks for transparent huge pages under a freshly allocated (untouched)
/// buffer, before it is written. Decode streams every weight once per token:
/// with 4 KiB pages a 1B model spans ~190k pages, far beyond the TLB, and
/// the hardware prefetchers stop at each 4 KiB boundary. Distributions
/// commonly set THP to `madvise`, so anonymous memory gets 2 MiB pages only
/// when asked. Only whole 2 MiB extents inside the buffer are advised, so
/// the resident set does not grow; a refusal (THP off) changes nothing.
/// `HEARTH_NO_HUGEPAGES=1` turns it off (A/B measurements).
#[cfg(target_os = "linux")]
fn prefer_huge_pages(buf: &mut [u8]) {
    const MADV_HUGEPAGE: i32 = 14;
    const HUGE: usize = 2 << 20;
    if std::env::var_os("HEARTH_NO_HUGEPAGES").is_some_and(|v| !v.is_empty() && v != "0") {
        return;
    }
    let start = (buf.as_ptr() as usize).next_multiple_of(HUGE);
    let end = (buf.as_ptr() as usize + buf.len()) & !(HUGE - 1);
    if end > start {
        // SAFETY: the range lies inside `buf`, which this function borrows
        // mutably; MADV_HUGEPAGE changes how pages are backed, not their
        // contents (the zeroed buffer stays zero).
        unsafe {
            madvise(start as *mut std::ffi::c_void, end - start, MADV_HUGEPAGE);
        }
    }
}

#[cfg(not(target_os = "linux"))]
fn prefer_huge_pages(_buf: &mut [u8]) {}

/// Reads tensors of one GGUF file by name, checking shapes.
pub struct TensorSource {
    file: Arc<GgufFile>,
}

impl TensorSource {
    pub fn new(file: Arc<GgufFile>) -> TensorSource {
        TensorSource { file }
    }

    pub fn file(&self) -> &GgufFile {
        &self.file
    }

    pub fn has(&self, name: &str) -> bool {
        self.file.tensor(name).is_some()
    }

    fn info(&self, name: &str) -> Result<&TensorInfo> {
        self.file.tensor(name).ok_or_else(|| ModelError::MissingTensor { name: name.to_string() })
    }

    /// A matrix of `rows` rows of `cols` elements (GGUF dims `[cols, rows]`).
    pub fn matrix(&self, name: &str, rows: usize, cols: usize) -> Result<Weight> {
        let info = self.info(name)?;
        let expected = vec![cols as u64, rows as u64];
        let mut dims = info.dims.clone();
        while dims.len() > 2 && dims.last() == Some(&1) {
            dims.pop();
        }
        if dims != expected {
            return Err(ModelError::TensorShape { name: name.into(), expected, found: info.dims.clone() });
        }
        if matches!(info.ty, GgmlType::Q8_1 | GgmlType::Q8_K | GgmlType::I8 | GgmlType::I16 | GgmlType::I32 | GgmlType::I64 | GgmlType::F64) {
            return Err(ModelError::TensorType { name: name.into(), ty: info.ty, why: "not a weight storage type" });
        }
        let start = (self.file.data_offset() + info.offset) as usize;
        Ok(Weight {
            ty: info.ty,
            rows,
            cols,
            storage: Storage::Mapped { file: Arc::clone(&self.file), start, len: info.n_bytes as usize },
            packed: None,
        })
    }

    pub fn opt_matrix(&self, name: &str, rows: usize, cols: usize) -> Result<Option<Weight>> {
        if self.has(name) {
            self.matrix(name, rows, cols).map(Some)
        } else {
            Ok(None)
        }
    }

    /// A 1-D tensor of `len` values (norm weights, biases), converted to f32.
    pub fn vector(&self, name: &str, len: usize) -> Result<Vec<f32>> {
        let info = self.info(name)?;
        if info.n_elements() != len as u64 || info.dims.first() != Some(&(len as u64)) {
            return Err(ModelError::TensorShape { name: name.into(), expected: vec![len as u64], found: info.dims.clone() });
        }
        if info.ty.block_size() != 1 && len % info.ty.block_size() != 0 {
            return Err(ModelError::TensorType { name: name.into(), ty: info.ty, why: "partial block" });
        }
        if matches!(info.ty, GgmlType::I8 | GgmlType::I16 | GgmlType::I32 | GgmlType::I64 | GgmlType::F64 | GgmlType::Q8_1 | GgmlType::Q8_K) {
            return Err(ModelError::TensorType { name: name.into(), ty: info.ty, why: "not a float vector type" });
        }
        let mut out = vec![0f32; len];
        hearth_kernels::dequantize_row(info.ty, self.file.tensor_data(info), &mut out);
        Ok(out)
    }

    pub fn opt_vector(&self, name: &str, len: usize) -> Result<Option<Vec<f32>>> {
        if self.has(name) {
            self.vector(name, len).map(Some)
        } else {
            Ok(None)
        }
    }
}
