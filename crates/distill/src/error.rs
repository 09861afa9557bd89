use std::path::PathBuf;

/// Everything that can go wrong while training, saving or merging.
#[derive(Debug, thiserror::Error)]
pub enum DistillError {
    #[error("{path}: {source}")]
    Io { path: PathBuf, source: std::io::Error },
    #[error(transparent)]
    Gguf(#[from] hearth_formats::GgufError),
    #[error(transparent)]
    GgufWrite(#[from] hearth_formats::GgufWriteError),
    #[error(transparent)]
    Safetensors(#[from] hearth_formats::SafetensorsError),
    #[error(transparent)]
    Model(#[from] hearth_models::ModelError),
    #[error(transparent)]
    Tokenizer(#[from] hearth_tokenizer::TokenizerError),
    #[error(transparent)]
    Engine(#[from] hearth_engine::EngineError),
    #[error("{what} is not supported for training: {why}")]
    Unsupported { what: String, why: String },
    #[error("invalid configuration: {0}")]
    Config(String),
    #[error("token id {id} is outside the vocabulary of {n_vocab}")]
    TokenOutOfRange { id: u32, n_vocab: usize },
    #[error("batch: {0}")]
    Batch(String),
    #[error("{path}: line {line}: {why}")]
    Data { path: PathBuf, line: usize, why: String },
    #[error("checkpoint {path}: {why}")]
    Checkpoint { path: PathBuf, why: String },
    #[error("adapter {path}: {why}")]
    Adapter { path: PathBuf, why: String },
    #[error("corpus: {0}")]
    Corpus(String),
    #[error(transparent)]
    Spec(#[from] crate::spec::SpecError),
    #[error("the loss became {0} (diverged); lower the learning rate")]
    Diverged(f64),
}

pub type Result<T> = std::result::Result<T, DistillError>;

/// Attaches a path to an I/O error.
pub(crate) fn io_at(path: impl Into<PathBuf>) -> impl FnOnce(std::io::Error) -> DistillError {
    let path = path.into();
    move |source| DistillError::Io { path, source }
}
