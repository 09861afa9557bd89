//! safetensors reader (own code; the `safetensors` crate is not used).
//!
//! Layout, per huggingface/safetensors `README.md`: an 8-byte little-endian
//! header length `N`, `N` bytes of UTF-8 JSON, then the data region. The JSON
//! is an object mapping each tensor name to
//! `{"dtype": "F16", "shape": [d0, d1, ...], "data_offsets": [begin, end]}`
//! (offsets relative to the data region, row-major shape, little-endian
//! data), plus an optional `"__metadata__"` object of string → string.
//!
//! Checks, each with its own [`SafetensorsError`] variant naming the tensor
//! and field:
//! - the file holds the 8-byte length; `N` is at most [`MAX_HEADER_LEN`]
//!   (100,000,000 bytes, the reference implementation's `MAX_HEADER_SIZE`)
//!   and fits in the file; the header is UTF-8 and valid JSON whose top level
//!   is an object;
//! - no name occurs twice, at any level (serde_json would silently keep the
//!   last one; a parser keeping the first would then read different tensors);
//! - `__metadata__` is an object of strings (or null);
//! - every tensor entry is an object with `dtype`, `shape`, `data_offsets`;
//!   numbers are non-negative integers; the dtype is one Hearth reads;
//!   `numel × size` does not overflow and equals `end − begin`;
//!   `begin <= end <= data length`;
//! - **coverage**: sorted by offset, the tensors tile the data region exactly,
//!   with no overlap, no gap and no trailing bytes. This is the reference
//!   implementation's rule (`MetadataIncompleteBuffer`, `InvalidOffset`);
//!   we follow it because every conforming writer produces such files, and
//!   bytes that no tensor claims could only be corruption or a place to hide
//!   data.
//!
//! Tensor data is borrowed from the memory map, zero-copy. The data region
//! starts at `8 + N`; writers pad the header with spaces so it is 8-aligned,
//! but a hostile or old file need not be, so callers must not cast the bytes
//! to wider types without checking alignment (use `from_le_bytes`).
//!
//! Deliberately absent: writing safetensors; the dtypes U16, U32, U64,
//! F8_E8M0, F4, F6_E2M3, F6_E3M2 and C64 (rejected by name as
//! [`SafetensorsError::UnsupportedDtype`]); big-endian data (the format has
//! none). Unknown fields inside a tensor entry are ignored, as the reference
//! implementation does.

mod sharded;
pub use sharded::{SafetensorsModel, ShardedError, TensorRef, INDEX_FILE, SINGLE_FILE};

use crate::json::{self, Json};
use crate::source::Source;
use std::collections::HashMap;
use std::fmt;
use std::path::{Path, PathBuf};

/// The largest header accepted (bytes), as in the reference implementation.
pub const MAX_HEADER_LEN: u64 = 100_000_000;
/// The key of the free-form string metadata in the header.
pub const METADATA_KEY: &str = "__metadata__";

/// An element type Hearth reads.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[allow(non_camel_case_types)]
pub enum Dtype {
    F64,
    F32,
    F16,
    BF16,
    I64,
    I32,
    I16,
    I8,
    U8,
    BOOL,
    F8_E4M3,
    F8_E5M2,
}

impl Dtype {
    pub const ALL: [Dtype; 12] = [
        Dtype::F64,
        Dtype::F32,
        Dtype::F16,
        Dtype::BF16,
        Dtype::I64,
        Dtype::I32,
        Dtype::I16,
        Dtype::I8,
        Dtype::U8,
        Dtype::BOOL,
        Dtype::F8_E4M3,
        Dtype::F8_E5M2,
    ];

    /// The name used in the header.
    pub const fn name(self) -> &'static str {
        match self {
            Dtype::F64 => "F64",
            Dtype::F32 => "F32",
            Dtype::F16 => "F16",
            Dtype::BF16 => "BF16",
            Dtype::I64 => "I64",
            Dtype::I32 => "I32",
            Dtype::I16 => "I16",
            Dtype::I8 => "I8",
            Dtype::U8 => "U8",
            Dtype::BOOL => "BOOL",
            Dtype::F8_E4M3 => "F8_E4M3",
            Dtype::F8_E5M2 => "F8_E5M2",
        }
    }

    /// Bytes per element.
    pub const fn size(self) -> usize {
        match self {
            Dtype::F64 | Dtype::I64 => 8,
            Dtype::F32 | Dtype::I32 => 4,
            Dtype::F16 | Dtype::BF16 | Dtype::I16 => 2,
            Dtype::I8 | Dtype::U8 | Dtype::BOOL | Dtype::F8_E4M3 | Dtype::F8_E5M2 => 1,
        }
    }

    /// Exact, case-sensitive lookup (the format's names are upper-case).
    pub fn from_name(s: &str) -> Option<Dtype> {
        Dtype::ALL.iter().copied().find(|d| d.name() == s)
    }
}

impl fmt::Display for Dtype {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// Dtypes the format defines (huggingface/safetensors `Dtype`) that Hearth
/// does not read; named in the error so the user knows what the file wanted.
const KNOWN_UNSUPPORTED: &[&str] = &["U16", "U32", "U64", "F8_E8M0", "F4", "F6_E2M3", "F6_E3M2", "C64"];

/// Why a safetensors file could not be read.
#[derive(Debug, thiserror::Error)]
pub enum SafetensorsError {
    #[error("cannot read {path}: {source}")]
    Io { path: PathBuf, source: std::io::Error },
    #[error("file is {len} bytes, too short for the 8-byte header length")]
    TooShort { len: u64 },
    #[error("header length {len} exceeds the {max}-byte limit")]
    HeaderTooLarge { len: u64, max: u64 },
    #[error("header length {len} runs past the end of the file ({available} bytes follow the length)")]
    HeaderPastEnd { len: u64, available: u64 },
    #[error("header is not valid UTF-8 (byte at file offset {offset})")]
    HeaderNotUtf8 { offset: u64 },
    #[error("header is not valid JSON at line {line}, column {column}: {message}")]
    InvalidJson { line: usize, column: usize, message: String },
    #[error("header must be a JSON object, found {found}")]
    HeaderNotObject { found: &'static str },
    #[error("duplicate header entry {name:?} (tensor names must be unique)")]
    DuplicateTensor { name: String },
    #[error("__metadata__ is {found}; it must be an object of strings")]
    MetadataNotObject { found: &'static str },
    #[error("__metadata__ key {key:?} is duplicated")]
    DuplicateMetadataKey { key: String },
    #[error("__metadata__ key {key:?} is {found}; values must be strings")]
    MetadataNotString { key: String, found: &'static str },
    #[error("tensor {tensor:?}: entry is {found}, expected an object")]
    TensorNotObject { tensor: String, found: &'static str },
    #[error("tensor {tensor:?}: field {field:?} appears twice")]
    DuplicateField { tensor: String, field: String },
    #[error("tensor {tensor:?}: field {field:?} is missing")]
    MissingField { tensor: String, field: &'static str },
    #[error("tensor {tensor:?}: {field} is {found}, expected {expected}")]
    WrongFieldType { tensor: String, field: String, expected: &'static str, found: &'static str },
    #[error("tensor {tensor:?}: {field} is negative ({value})")]
    NegativeNumber { tensor: String, field: String, value: i64 },
    #[error("tensor {tensor:?}: {field} is {value}, not an integer in 0..=2^64-1")]
    NotAnInteger { tensor: String, field: String, value: f64 },
    #[error("tensor {tensor:?}: dtype {dtype:?} is not a safetensors dtype")]
    UnknownDtype { tensor: String, dtype: String },
    #[error("tensor {tensor:?}: dtype {dtype} is not supported by Hearth")]
    UnsupportedDtype { tensor: String, dtype: String },
    #[error("tensor {tensor:?}: data_offsets has {count} entries, expected 2")]
    BadOffsetCount { tensor: String, count: usize },
    #[error("tensor {tensor:?}: shape {shape:?} of {dtype} overflows when multiplied")]
    ShapeOverflow { tensor: String, shape: Vec<u64>, dtype: Dtype },
    #[error("tensor {tensor:?}: data_offsets [{begin}, {end}] are reversed")]
    ReversedOffsets { tensor: String, begin: u64, end: u64 },
    #[error("tensor {tensor:?}: shape {shape:?} of {dtype} needs {expected} bytes, but data_offsets span {found}")]
    SizeMismatch { tensor: String, shape: Vec<u64>, dtype: Dtype, expected: u64, found: u64 },
    #[error("tensor {tensor:?}: data_offsets [{begin}, {end}] run past the {data_len}-byte data region")]
    OffsetsOutOfRange { tensor: String, begin: u64, end: u64, data_len: u64 },
    #[error("tensors {first:?} and {second:?} overlap in the data region")]
    OverlappingTensors { first: String, second: String },
    #[error("data bytes [{start}, {end}) before tensor {tensor:?} belong to no tensor")]
    Gap { tensor: String, start: u64, end: u64 },
    #[error("data bytes [{start}, {end}) after the last tensor belong to no tensor")]
    TrailingData { start: u64, end: u64 },
}

/// One tensor's description. `shape` is row-major as in PyTorch (the first
/// entry is the slowest-varying), unlike GGUF's ggml order.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SafetensorInfo {
    pub name: String,
    pub dtype: Dtype,
    pub shape: Vec<u64>,
    /// `[begin, end)` relative to the data region.
    pub data_offsets: (u64, u64),
}

impl SafetensorInfo {
    /// Checked at parse time not to overflow.
    pub fn n_elements(&self) -> u64 {
        self.shape.iter().product()
    }

    pub fn n_bytes(&self) -> u64 {
        self.data_offsets.1 - self.data_offsets.0
    }
}

/// A parsed safetensors file; tensor data stays in the memory map.
pub struct SafetensorsFile {
    source: Source,
    header_len: u64,
    metadata: Vec<(String, String)>,
    tensors: Vec<SafetensorInfo>,
    index: HashMap<String, usize>,
}

impl fmt::Debug for SafetensorsFile {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SafetensorsFile")
            .field("header_len", &self.header_len)
            .field("n_metadata", &self.metadata.len())
            .field("n_tensors", &self.tensors.len())
            .finish()
    }
}

impl SafetensorsFile {
    /// Memory-maps and parses a file.
    pub fn open(path: impl AsRef<Path>) -> Result<SafetensorsFile, SafetensorsError> {
        let path = path.as_ref();
        let source = Source::map(path).map_err(|source| SafetensorsError::Io { path: path.to_path_buf(), source })?;
        SafetensorsFile::parse(source)
    }

    /// Parses an in-memory image.
    pub fn from_bytes(bytes: Vec<u8>) -> Result<SafetensorsFile, SafetensorsError> {
        SafetensorsFile::parse(Source::Owned(bytes))
    }

    fn parse(source: Source) -> Result<SafetensorsFile, SafetensorsError> {
        let bytes = source.bytes();
        let file_len = bytes.len() as u64;
        let Some(len_bytes) = bytes.first_chunk::<8>() else {
            return Err(SafetensorsError::TooShort { len: file_len });
        };
        let header_len = u64::from_le_bytes(*len_bytes);
        if header_len > MAX_HEADER_LEN {
            return Err(SafetensorsError::HeaderTooLarge { len: header_len, max: MAX_HEADER_LEN });
        }
        if header_len > file_len - 8 {
            return Err(SafetensorsError::HeaderPastEnd { len: header_len, available: file_len - 8 });
        }
        let data_start = 8 + header_len;
        let header = &bytes[8..data_start as usize];
        let text = std::str::from_utf8(header)
            .map_err(|e| SafetensorsError::HeaderNotUtf8 { offset: 8 + e.valid_up_to() as u64 })?;
        let root = json::parse(text).map_err(|e| SafetensorsError::InvalidJson {
            line: e.line,
            column: e.column,
            message: e.message,
        })?;
        let Json::Obj(entries) = root else {
            return Err(SafetensorsError::HeaderNotObject { found: root.kind() });
        };
        if let Some(name) = json::first_duplicate(&entries) {
            return Err(SafetensorsError::DuplicateTensor { name: name.to_string() });
        }

        let data_len = file_len - data_start;
        let mut metadata = Vec::new();
        let mut tensors = Vec::with_capacity(entries.len());
        for (name, value) in entries {
            if name == METADATA_KEY {
                metadata = parse_metadata(value)?;
            } else {
                tensors.push(parse_tensor(name, value, data_len)?);
            }
        }
        check_coverage(&tensors, data_len)?;
        let index = tensors.iter().enumerate().map(|(i, t)| (t.name.clone(), i)).collect();
        Ok(SafetensorsFile { source, header_len, metadata, tensors, index })
    }

    /// The JSON header's length in bytes (the data region starts at `8 + this`).
    pub fn header_len(&self) -> u64 {
        self.header_len
    }

    /// Absolute offset of the data region.
    pub fn data_offset(&self) -> u64 {
        8 + self.header_len
    }

    /// `__metadata__` entries in header order.
    pub fn metadata(&self) -> &[(String, String)] {
        &self.metadata
    }

    pub fn get_metadata(&self, key: &str) -> Option<&str> {
        self.metadata.iter().find(|(k, _)| k == key).map(|(_, v)| v.as_str())
    }

    /// Tensors in header order.
    pub fn tensors(&self) -> &[SafetensorInfo] {
        &self.tensors
    }

    pub fn tensor(&self, name: &str) -> Option<&SafetensorInfo> {
        self.index.get(name).map(|&i| &self.tensors[i])
    }

    /// The bytes of a tensor, borrowed from the map. The info must come from
    /// this file; one whose extent lies outside it panics, so prefer
    /// [`SafetensorsFile::tensor_bytes`] when its origin is not certain.
    pub fn tensor_data(&self, info: &SafetensorInfo) -> &[u8] {
        let start = (self.data_offset() + info.data_offsets.0) as usize;
        let end = (self.data_offset() + info.data_offsets.1) as usize;
        &self.source.bytes()[start..end]
    }

    /// The bytes of the tensor called `name`.
    pub fn tensor_bytes(&self, name: &str) -> Option<&[u8]> {
        self.tensor(name).map(|t| self.tensor_data(t))
    }

    /// The whole file image.
    pub fn bytes(&self) -> &[u8] {
        self.source.bytes()
    }
}

fn parse_metadata(value: Json) -> Result<Vec<(String, String)>, SafetensorsError> {
    let entries = match value {
        // The reference implementation reads `__metadata__` as an Option.
        Json::Null => return Ok(Vec::new()),
        Json::Obj(e) => e,
        other => return Err(SafetensorsError::MetadataNotObject { found: other.kind() }),
    };
    if let Some(key) = json::first_duplicate(&entries) {
        return Err(SafetensorsError::DuplicateMetadataKey { key: key.to_string() });
    }
    entries
        .into_iter()
        .map(|(k, v)| match v {
            Json::Str(s) => Ok((k, s)),
            other => Err(SafetensorsError::MetadataNotString { key: k, found: other.kind() }),
        })
        .collect()
}

fn parse_tensor(name: String, value: Json, data_len: u64) -> Result<SafetensorInfo, SafetensorsError> {
    let fields = match value {
        Json::Obj(f) => f,
        other => return Err(SafetensorsError::TensorNotObject { tensor: name, found: other.kind() }),
    };
    if let Some(field) = json::first_duplicate(&fields) {
        return Err(SafetensorsError::DuplicateField { tensor: name, field: field.to_string() });
    }
    let get = |field: &'static str| {
        fields
            .iter()
            .find(|(k, _)| k == field)
            .map(|(_, v)| v)
            .ok_or_else(|| SafetensorsError::MissingField { tensor: name.clone(), field })
    };

    let dtype = match get("dtype")? {
        Json::Str(s) => match Dtype::from_name(s) {
            Some(d) => d,
            None if KNOWN_UNSUPPORTED.contains(&s.as_str()) => {
                return Err(SafetensorsError::UnsupportedDtype { tensor: name, dtype: s.clone() })
            }
            None => return Err(SafetensorsError::UnknownDtype { tensor: name, dtype: s.clone() }),
        },
        other => return Err(wrong_type(&name, "dtype", "a string", other)),
    };
    let shape = match get("shape")? {
        Json::Arr(dims) => dims
            .iter()
            .enumerate()
            .map(|(i, d)| integer(&name, || format!("shape[{i}]"), d))
            .collect::<Result<Vec<u64>, _>>()?,
        other => return Err(wrong_type(&name, "shape", "an array", other)),
    };
    let (begin, end) = match get("data_offsets")? {
        Json::Arr(o) if o.len() == 2 => {
            (integer(&name, || "data_offsets[0]".into(), &o[0])?, integer(&name, || "data_offsets[1]".into(), &o[1])?)
        }
        Json::Arr(o) => return Err(SafetensorsError::BadOffsetCount { tensor: name, count: o.len() }),
        other => return Err(wrong_type(&name, "data_offsets", "an array", other)),
    };

    let n_bytes = shape
        .iter()
        .try_fold(1u64, |acc, &d| acc.checked_mul(d))
        .and_then(|n| n.checked_mul(dtype.size() as u64))
        .ok_or_else(|| SafetensorsError::ShapeOverflow { tensor: name.clone(), shape: shape.clone(), dtype })?;
    if begin > end {
        return Err(SafetensorsError::ReversedOffsets { tensor: name, begin, end });
    }
    if end - begin != n_bytes {
        return Err(SafetensorsError::SizeMismatch { tensor: name, shape, dtype, expected: n_bytes, found: end - begin });
    }
    if end > data_len {
        return Err(SafetensorsError::OffsetsOutOfRange { tensor: name, begin, end, data_len });
    }
    Ok(SafetensorInfo { name, dtype, shape, data_offsets: (begin, end) })
}

fn wrong_type(tensor: &str, field: &str, expected: &'static str, found: &Json) -> SafetensorsError {
    SafetensorsError::WrongFieldType { tensor: tensor.to_string(), field: field.to_string(), expected, found: found.kind() }
}

fn integer(tensor: &str, field: impl Fn() -> String, v: &Json) -> Result<u64, SafetensorsError> {
    match *v {
        Json::U64(x) => Ok(x),
        Json::I64(x) => Err(SafetensorsError::NegativeNumber { tensor: tensor.to_string(), field: field(), value: x }),
        Json::F64(x) => Err(SafetensorsError::NotAnInteger { tensor: tensor.to_string(), field: field(), value: x }),
        ref other => Err(wrong_type(tensor, &field(), "an integer", other)),
    }
}

/// The tensors must tile `[0, data_len)` exactly (see the module docs).
fn check_coverage(tensors: &[SafetensorInfo], data_len: u64) -> Result<(), SafetensorsError> {
    let mut order: Vec<&SafetensorInfo> = tensors.iter().collect();
    order.sort_by_key(|t| t.data_offsets);
    let mut cursor = 0u64;
    let mut last: Option<&SafetensorInfo> = None;
    for t in order {
        let (begin, end) = t.data_offsets;
        if begin < cursor {
            // `last` is set: cursor > 0 only after a tensor with bytes.
            let first = last.map(|l| l.name.clone()).unwrap_or_default();
            return Err(SafetensorsError::OverlappingTensors { first, second: t.name.clone() });
        }
        if begin > cursor {
            return Err(SafetensorsError::Gap { tensor: t.name.clone(), start: cursor, end: begin });
        }
        if end > cursor {
            cursor = end;
            last = Some(t);
        }
    }
    if cursor != data_len {
        return Err(SafetensorsError::TrailingData { start: cursor, end: data_len });
    }
    Ok(())
}
