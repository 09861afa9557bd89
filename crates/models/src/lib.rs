//! Model architectures, weights, KV cache and the forward pass.
//!
//! [`load_gguf`] reads `general.architecture`, finds the architecture in the
//! registry ([`arch::REGISTRY`]) and returns a [`Decoder`] whose weights stay
//! in the memory-mapped file. [`Decoder::forward`] runs a batch of sequences,
//! each with its own [`KvCache`].
//!
//! Deliberately absent: mixture-of-experts, recurrent/hybrid architectures,
//! multimodal towers, GPU offload.

pub mod arch;
pub mod bert;
pub mod config;
pub mod decoder;
pub mod error;
pub mod hf;
pub mod kv_cache;
pub mod numerics;
pub mod ops;
pub mod pool;
pub mod weights;

pub use config::ModelConfig;
pub use decoder::{Decoder, Logits, Scratch, SeqInput};
pub use error::{ModelError, Result};
pub use kv_cache::{KvCache, KvType};
pub use pool::ThreadPool;

use hearth_formats::GgufFile;
use std::sync::Arc;

/// Loads a decoder model from a parsed GGUF file.
pub fn load_gguf(file: Arc<GgufFile>) -> Result<Decoder> {
    let arch = file.get_str("general.architecture")?.ok_or(ModelError::NoArchitecture)?.to_string();
    let entry = arch::find(&arch).ok_or_else(|| ModelError::UnknownArchitecture { arch: arch.clone(), supported: arch::supported() })?;
    (entry.load)(file)
}
