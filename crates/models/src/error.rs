use hearth_formats::{GgmlType, GgufError};

/// Why a model could not be loaded or run.
#[derive(Debug, thiserror::Error)]
pub enum ModelError {
    #[error(transparent)]
    Gguf(#[from] GgufError),
    #[error("architecture {arch:?} is not supported (supported: {supported})")]
    UnknownArchitecture { arch: String, supported: String },
    #[error("the file has no general.architecture key; is it a model (not a vocab-only file)?")]
    NoArchitecture,
    #[error("hyper-parameter {key:?} is missing")]
    MissingHparam { key: String },
    #[error("hyper-parameter {key:?} = {value} is invalid: {why}")]
    InvalidHparam { key: String, value: String, why: String },
    #[error("tensor {name:?} is missing")]
    MissingTensor { name: String },
    #[error("tensor {name:?} has shape {found:?}, expected {expected:?}")]
    TensorShape { name: String, expected: Vec<u64>, found: Vec<u64> },
    #[error("tensor {name:?} has type {ty}, which cannot be used here ({why})")]
    TensorType { name: String, ty: GgmlType, why: &'static str },
    #[error("context overflow: {needed} positions needed, but the context holds {limit}")]
    ContextOverflow { needed: usize, limit: usize },
    #[error("token id {id} is outside the vocabulary (size {n_vocab})")]
    TokenOutOfRange { id: u32, n_vocab: usize },
    #[error("{0}")]
    Invalid(String),
}

pub type Result<T> = std::result::Result<T, ModelError>;
