//! Model file formats for Hearth: GGUF (read and write) and safetensors.
//!
//! Every byte of a model file is hostile input. Parsers bound each count by
//! the bytes that remain before allocating, use checked arithmetic for every
//! size, and report failures as typed errors naming the field and offset.
//! No parser here panics on any input.

pub mod atomic;
pub mod gguf;
pub mod types;

pub use gguf::{GgufError, GgufFile, GgufWriteError, GgufWriter, MetaArray, MetaValue, TensorInfo};
pub use types::GgmlType;
