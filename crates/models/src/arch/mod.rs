//! Architectures: one file each, one line each in [`REGISTRY`].
//!
//! Each entry turns a parsed GGUF file into a [`Decoder`]. Adding a family
//! means writing its file (hyper-parameter keys, tensor names, switches) and
//! adding its line here; `tests/registry.rs` loops over this table.

mod common;
pub mod gemma2;
pub mod gemma3;
pub mod llama;
pub mod phi3;
pub mod qwen2;
pub mod qwen3;

use crate::decoder::Decoder;
use crate::error::Result;
use hearth_formats::GgufFile;
use std::sync::Arc;

/// A loader for one `general.architecture` value.
pub struct ArchEntry {
    /// The `general.architecture` string in GGUF files.
    pub name: &'static str,
    /// Families that ship under this architecture name.
    pub families: &'static str,
    pub load: fn(Arc<GgufFile>) -> Result<Decoder>,
}

pub const REGISTRY: &[ArchEntry] = &[
    ArchEntry { name: "llama", families: "Llama 3.x, Llama 2, SmolLM2, Mistral, TinyLlama", load: llama::load },
    ArchEntry { name: "qwen2", families: "Qwen 2 / 2.5", load: qwen2::load },
    ArchEntry { name: "qwen3", families: "Qwen 3 (dense)", load: qwen3::load },
    ArchEntry { name: "phi3", families: "Phi-3, Phi-3.5, Phi-4, Phi-4-mini", load: phi3::load },
    ArchEntry { name: "gemma2", families: "Gemma 2", load: gemma2::load },
    ArchEntry { name: "gemma3", families: "Gemma 3 (text)", load: gemma3::load },
];

pub fn find(name: &str) -> Option<&'static ArchEntry> {
    REGISTRY.iter().find(|e| e.name == name)
}

pub fn supported() -> String {
    REGISTRY.iter().map(|e| e.name).collect::<Vec<_>>().join(", ")
}
