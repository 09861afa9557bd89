//! Quantizing models, and measuring what quantization costs.
//!
//! * [`quantize`] turns an F32/F16/BF16 model (any [`TensorSource`]; a GGUF
//!   file via [`GgufSource`]) into a GGUF file of one of llama.cpp's file
//!   types ([`FileType`]: Q8_0, Q4_0, Q4_1, Q5_0, Q5_1, Q2_K, Q3_K_S/M/L,
//!   Q4_K_S/M, Q5_K_S/M, Q6_K, or F16/BF16/F32). Per-tensor types follow
//!   llama-quantize exactly ([`plan`]), the quantizers are
//!   `hearth-kernels`' ports of ggml's `quantize_row_*_ref`, and the file is
//!   laid out as llama-quantize lays it out, so the output is byte-identical
//!   to `llama-quantize IN OUT TYPE` (tested on synthetic models for every
//!   type, see `tests/compat.rs`).
//! * [`eval`] computes perplexity and compares a quantized model with its
//!   base (KL divergence, top-1 agreement) with llama-perplexity's method.
//!
//! # Safety of files
//!
//! The output is written to a hidden temporary file next to it and renamed
//! into place only when complete ([`hearth_formats::atomic`]): a failed,
//! cancelled or killed run never leaves a partial file under the output
//! name, and never touches the input (writing over an input file is
//! refused). Free space is checked up front (`statvfs`) and "no space left"
//! during the write is reported as [`QuantizeError::DiskFull`].
//!
//! # Deliberately absent
//!
//! Importance matrices (`--imatrix`) and so the i-quants and Q2_K_S;
//! per-tensor overrides (`--tensor-type`, `--output-tensor-type`,
//! `--token-embedding-type`); `--keep-split` and split inputs; layer
//! pruning; metadata overrides. Hugging Face folders are read through
//! [`GgufSource::open_model`].

pub mod disk;
pub mod eval;
pub mod ftype;
pub mod pipeline;
pub mod plan;
pub mod source;

pub use ftype::FileType;
pub use pipeline::{
    output_writer, plan_for, quantize, Event, QuantizeOptions, Report, TensorReport,
    QUANTIZATION_VERSION,
};
pub use plan::{Fallback, ModelFacts, Plan, PlanOptions, TensorPlan};
pub use source::{GgufSource, SourceError, SourceTensor, TensorSource};

use hearth_formats::{GgmlType, GgufWriteError};
use std::path::PathBuf;

/// Why a quantization run failed. Every variant leaves no output file.
#[derive(Debug, thiserror::Error)]
pub enum QuantizeError {
    #[error("cannot read the input: {0}")]
    Open(#[from] hearth_formats::GgufError),
    #[error("model metadata: {0}")]
    Metadata(String),
    #[error("tensor {0:?} appears twice")]
    DuplicateTensor(String),
    #[error("tensor {tensor:?}: cannot tell its layer (expected blk.N. with N below {n_layer})")]
    BadLayer { tensor: String, n_layer: i64 },
    #[error(
        "tensor {tensor:?} is already quantized ({from}); converting it to {to} would compound the error. \
         Start from the F16/BF16/F32 model, or pass --allow-requantize"
    )]
    Requantize {
        tensor: String,
        from: GgmlType,
        to: GgmlType,
    },
    #[error("tensor {tensor:?} has type {ty}, which cannot be converted")]
    UnconvertibleType { tensor: String, ty: GgmlType },
    #[error("tensor {tensor:?}: {message}")]
    Shape { tensor: String, message: String },
    #[error("tensor {tensor:?} holds infinite or NaN values (or values too large for the output type); refusing to write it")]
    NonFinite { tensor: String },
    #[error("tensor {tensor:?}: {source}")]
    Source { tensor: String, source: SourceError },
    #[error("{path} is the input file; write the output to a new path")]
    OutputIsInput { path: PathBuf },
    #[error(
        "not enough free space in {dir}: the output needs {needed} bytes ({:.1} MiB), {available} bytes ({:.1} MiB) are available",
        *needed as f64 / 1048576.0, *available as f64 / 1048576.0
    )]
    NotEnoughSpace {
        dir: PathBuf,
        needed: u64,
        available: u64,
    },
    #[error("no space left on the device while writing {path} (the output needs {needed} bytes); nothing was written")]
    DiskFull { path: PathBuf, needed: u64 },
    #[error("cancelled; nothing was written")]
    Cancelled,
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("building the output: {0}")]
    Write(GgufWriteError),
    #[error("internal error: {0}")]
    Internal(String),
}
