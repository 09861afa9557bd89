//! Model file formats for Hearth: GGUF (read and write) and safetensors
//! (read, single-file and sharded), plus the refusal of pickle checkpoints.
//!
//! Every byte of a model file is hostile input. Parsers bound each count by
//! the bytes that remain before allocating, use checked arithmetic for every
//! size, and report failures as typed errors naming the field (and, for
//! GGUF, the byte offset). No parser here panics on any input; the tests
//! hold that line with malformed corpora, 10,000 random mutations per
//! format, and an allocator wrapper that fails any test whose largest single
//! allocation exceeds 64 MiB.
//!
//! # What is checked
//!
//! - **GGUF** ([`gguf`]): magic, version (2 or 3; big-endian files and
//!   versions 0/1/4+ named as such), counts against the remaining bytes, every
//!   string/array length, UTF-8 of keys and strings, value types, bool bytes,
//!   array nesting (at most [`gguf::MAX_ARRAY_DEPTH`]), empty and duplicate
//!   keys, `general.alignment` (a power-of-two u32, as gguf.cpp requires),
//!   tensor dimensions (at most 4, each and their product within i64, rows of
//!   whole blocks), tensor types (unsupported i-quants named), duplicate
//!   names, offset alignment, bounds, overlap, and that the data section
//!   starts inside the file.
//! - **safetensors** ([`safetensors`]): header length (cap 100,000,000 bytes,
//!   within the file), UTF-8 JSON object, duplicate names at every level,
//!   `__metadata__` strings, field types, negative or fractional numbers,
//!   dtypes (unsupported ones named), shape × dtype overflow and agreement
//!   with the offsets, offsets in range, and exact coverage of the data
//!   region (no overlap, gap or trailing bytes — the reference rule).
//! - **Sharded checkpoints** ([`safetensors::SafetensorsModel`]): index size
//!   and shape, duplicate keys, shard names confined to the folder
//!   (lexically), missing shards, tensors in the wrong or in two shards.
//! - **Pickles** ([`weights::check_weight_file`]): `.bin/.pt/.pth/.ckpt/.pkl`
//!   refused by name, pickle-protocol and zip headers refused by content.
//!
//! # Deliberately absent
//!
//! GGUF version 1 and big-endian GGUF; writing GGUF v2, big-endian or split
//! files; writing safetensors; safetensors dtypes U16/U32/U64/F8_E8M0/F4/F6/
//! C64; any pickle parsing, however "restricted"; symlink resolution when
//! confining shards (the Hugging Face cache is made of symlinks); dequantizing
//! or converting tensor data (that is `hearth-kernels`' job — this crate only
//! hands out validated byte slices).

pub mod atomic;
pub mod gguf;
mod json;
pub mod safetensors;
mod source;
pub mod types;
pub mod weights;

pub use gguf::{GgufError, GgufFile, GgufWriteError, GgufWriter, MetaArray, MetaValue, TensorInfo};
pub use safetensors::{Dtype, SafetensorInfo, SafetensorsError, SafetensorsFile, SafetensorsModel, ShardedError};
pub use types::GgmlType;
pub use weights::{check_weight_file, WeightFileError, WeightFormat};
