//! Weight tensors: borrowed from the memory-mapped file when the kernels can
//! use the bytes as they are, owned when they had to be converted.
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
        Ok(Weight { ty, rows, cols, storage: Storage::Owned(Arc::new(data)) })
    }

    /// Dequantizes row `r` into `out` (length `cols`).
    pub fn dequantize_row(&self, r: usize, out: &mut [f32]) {
        hearth_kernels::dequantize_row(self.ty, self.row(r), out);
    }
}

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
