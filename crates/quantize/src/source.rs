//! Where the weights come from: any set of named tensors plus GGUF-style
//! metadata ([`TensorSource`]). [`GgufSource`] reads a GGUF file, or a
//! Hugging Face safetensors folder converted in memory by the models crate
//! (`hearth_models::hf::load_folder`: GGUF tensor names, ggml dimension
//! order, synthesized metadata and tokenizer) — the pipeline needs nothing
//! else.

use hearth_formats::{GgmlType, GgufFile, MetaValue};
use std::borrow::Cow;
use std::ops::Range;
use std::path::{Path, PathBuf};
use std::sync::Arc;

/// A tensor as the source stores it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SourceTensor {
    /// GGUF name (`blk.0.attn_q.weight`).
    pub name: String,
    /// ggml order: `dims[0]` is the row length.
    pub dims: Vec<u64>,
    /// Stored element type (F32, F16 or BF16 for unquantized sources).
    pub ty: GgmlType,
}

impl SourceTensor {
    pub fn row_len(&self) -> u64 {
        self.dims.first().copied().unwrap_or(1)
    }

    pub fn n_rows(&self) -> u64 {
        self.dims.iter().skip(1).product()
    }
}

/// Why a source could not supply data.
#[derive(Debug, thiserror::Error)]
#[error("{message}")]
pub struct SourceError {
    pub message: String,
}

/// Named tensors plus metadata; see the module docs.
///
/// `Sync` because rows are read from the quantizing threads' parent only,
/// but a source may be shared with an evaluator running alongside.
pub trait TensorSource: Sync {
    /// Metadata in GGUF terms, in the order it should be written.
    fn metadata(&self) -> &[(String, MetaValue)];

    /// Every tensor, in the source's order (the output is re-ordered the
    /// way llama-quantize orders it).
    fn tensors(&self) -> &[SourceTensor];

    /// The stored bytes of rows `rows` of tensor `index` (of
    /// `tensors()[index].ty`). Borrowed when the source is memory-mapped
    /// and needs no conversion.
    fn read_rows(&self, index: usize, rows: Range<u64>) -> Result<Cow<'_, [u8]>, SourceError>;

    /// Files the source reads, so the pipeline can refuse to write over
    /// one of them.
    fn files(&self) -> Vec<PathBuf> {
        Vec::new()
    }
}

/// A GGUF file as a [`TensorSource`] (memory-mapped, zero-copy).
pub struct GgufSource {
    file: Arc<GgufFile>,
    path: Option<PathBuf>,
    tensors: Vec<SourceTensor>,
}

impl GgufSource {
    /// Opens and parses `path`.
    pub fn open(path: impl AsRef<Path>) -> Result<GgufSource, hearth_formats::GgufError> {
        let path = path.as_ref();
        let file = GgufFile::open(path)?;
        let mut s = GgufSource::new(Arc::new(file));
        s.path = Some(path.to_path_buf());
        Ok(s)
    }

    /// A GGUF file, or a Hugging Face folder (`config.json` + safetensors)
    /// converted as llama.cpp's `convert_hf_to_gguf.py` would convert it.
    pub fn open_model(path: impl AsRef<Path>) -> Result<GgufSource, hearth_models::hf::HfError> {
        let path = path.as_ref();
        let file = hearth_models::hf::open(path)?;
        let mut s = GgufSource::new(Arc::new(file));
        s.path = Some(path.to_path_buf());
        Ok(s)
    }

    /// Wraps an already parsed file.
    pub fn new(file: Arc<GgufFile>) -> GgufSource {
        let tensors = file
            .tensors()
            .iter()
            .map(|t| SourceTensor {
                name: t.name.clone(),
                dims: t.dims.clone(),
                ty: t.ty,
            })
            .collect();
        GgufSource {
            file,
            path: None,
            tensors,
        }
    }

    pub fn file(&self) -> &GgufFile {
        &self.file
    }
}

impl TensorSource for GgufSource {
    fn metadata(&self) -> &[(String, MetaValue)] {
        self.file.metadata()
    }

    fn tensors(&self) -> &[SourceTensor] {
        &self.tensors
    }

    fn read_rows(&self, index: usize, rows: Range<u64>) -> Result<Cow<'_, [u8]>, SourceError> {
        let err = |m: String| SourceError { message: m };
        let info = self
            .file
            .tensors()
            .get(index)
            .ok_or_else(|| err(format!("no tensor #{index}")))?;
        let row_bytes = info
            .ty
            .row_bytes(info.row_len())
            .ok_or_else(|| err(format!("{}: rows are not whole blocks", info.name)))?;
        if rows.start > rows.end || rows.end > info.n_rows() {
            return Err(err(format!(
                "{}: rows {rows:?} out of 0..{}",
                info.name,
                info.n_rows()
            )));
        }
        // The reader checked the tensor's extent against the file, so these
        // products are within the tensor's byte count.
        let data = self.file.tensor_data(info);
        let start = (rows.start * row_bytes) as usize;
        let end = (rows.end * row_bytes) as usize;
        data.get(start..end)
            .map(Cow::Borrowed)
            .ok_or_else(|| err(format!("{}: rows beyond the data", info.name)))
    }

    fn files(&self) -> Vec<PathBuf> {
        self.path.iter().cloned().collect()
    }
}
