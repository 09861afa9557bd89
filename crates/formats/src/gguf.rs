//! GGUF (versions 2 and 3) reader, and a writer ([`GgufWriter`]).
//!
//! Layout (little-endian), per ggml's `docs/gguf.md`:
//! `magic "GGUF" | version u32 | n_tensors u64 | n_kv u64 | kv* | tensor_info* | pad | data`.
//! A key/value is `string key | u32 type | value`; a string is `u64 len | bytes`;
//! an array is `u32 elem_type | u64 count | elems`. A tensor info is
//! `string name | u32 n_dims | u64 dims[n_dims] | u32 type | u64 offset`, the
//! offset relative to the data section, which starts at the first multiple of
//! `general.alignment` (default 32) after the infos.
//!
//! The file is hostile input. Every count and length is checked against the
//! bytes that remain *before* anything is allocated or read, all size
//! arithmetic is checked, and every failure is a [`GgufError`] that names the
//! field and its byte offset. Nothing here panics on any input; the corpus
//! in `tests/malformed_gguf.rs` (68 cases, 10,000 random mutations, an
//! allocation-tracking allocator) holds that line.
//!
//! Where this reader is stricter than llama.cpp's gguf.cpp: strings must be
//! UTF-8, bool bytes 0 or 1, and tensor data must lie inside the file at
//! open time (gguf.cpp only finds out when it reads the data). Where it is
//! laxer: tensors may sit anywhere in the data section as long as they are
//! aligned and do not overlap (gguf.cpp wants them contiguous, in info
//! order), and arrays of arrays are read (gguf.cpp rejects them; gguf-py
//! writes them). Where they agree: empty or duplicate keys, `general.alignment`
//! a power-of-two u32, at most 4 dims each within i64 and their product too,
//! rows of whole blocks, known types, unique tensor names, and a data section
//! that starts inside the file.
//!
//! Deliberately absent: big-endian files (rejected with a clear error),
//! version 1 (32-bit counts, unused since 2023), tensor types this crate
//! has no kernels for (i-quants and the like, rejected by name), and
//! llama.cpp's 64-byte tensor-name limit (a ggml struct detail).

use crate::source::Source;
use crate::types::GgmlType;
use std::collections::HashMap;

mod writer;
pub use writer::{GgufLayout, GgufWriteError, GgufWriter, TensorSink, WRITE_VERSION};
use std::fmt;
use std::path::{Path, PathBuf};

/// The default alignment of the data section and of each tensor's offset.
pub const DEFAULT_ALIGNMENT: u64 = 32;
/// ggml's `GGML_MAX_DIMS`.
pub const MAX_DIMS: usize = 4;
/// Arrays of arrays are legal GGUF; nothing real nests deeper than this.
pub const MAX_ARRAY_DEPTH: usize = 4;
pub(crate) const MAGIC: [u8; 4] = *b"GGUF";
/// The metadata key that overrides [`DEFAULT_ALIGNMENT`]; it must be a u32.
pub const ALIGNMENT_KEY: &str = "general.alignment";

/// Why a GGUF file could not be read. Offsets are absolute byte positions.
#[derive(Debug, thiserror::Error)]
pub enum GgufError {
    #[error("cannot read {path}: {source}")]
    Io { path: PathBuf, source: std::io::Error },
    #[error("not a GGUF file: magic bytes are {found:02x?}, expected \"GGUF\"")]
    BadMagic { found: [u8; 4] },
    #[error("big-endian GGUF files are not supported")]
    BigEndian,
    #[error("unsupported GGUF version {version} (this reader supports 2 and 3)")]
    UnsupportedVersion { version: u32 },
    #[error("truncated file: {field} needs {needed} bytes at offset {offset}, but only {available} remain")]
    Truncated { field: String, offset: u64, needed: u64, available: u64 },
    #[error("{field} at offset {offset}: count {count} cannot fit in the {available} bytes that remain")]
    CountTooLarge { field: String, offset: u64, count: u64, available: u64 },
    #[error("{field} at offset {offset} is not valid UTF-8")]
    InvalidUtf8 { field: String, offset: u64 },
    #[error("{field} at offset {offset}: unknown metadata value type {ty}")]
    UnknownValueType { field: String, offset: u64, ty: u32 },
    #[error("{field} at offset {offset}: arrays nested deeper than {MAX_ARRAY_DEPTH}")]
    NestingTooDeep { field: String, offset: u64 },
    #[error("metadata key #{index} at offset {offset} is empty")]
    EmptyKey { index: u64, offset: u64 },
    #[error("{field} at offset {offset}: bool byte is {value}, expected 0 or 1")]
    InvalidBool { field: String, offset: u64, value: u8 },
    #[error("duplicate metadata key {key:?} at offset {offset}")]
    DuplicateKey { key: String, offset: u64 },
    #[error("general.alignment is {alignment}; it must be a non-zero power of two")]
    BadAlignment { alignment: u64 },
    #[error("tensor {tensor:?} at offset {offset}: {n_dims} dimensions (at most {MAX_DIMS} allowed)")]
    TooManyDims { tensor: String, offset: u64, n_dims: u32 },
    #[error("tensor {tensor:?} at offset {offset}: {source}")]
    UnsupportedType { tensor: String, offset: u64, source: UnknownTypeError },
    #[error("tensor {tensor:?}: dimensions {dims:?} overflow when multiplied")]
    DimOverflow { tensor: String, dims: Vec<u64> },
    #[error("tensor {tensor:?}: first dimension {ne0} is not a multiple of the {ty} block size {block}")]
    PartialBlock { tensor: String, ne0: u64, ty: GgmlType, block: u64 },
    #[error("duplicate tensor name {tensor:?} at offset {offset}")]
    DuplicateTensor { tensor: String, offset: u64 },
    #[error("tensor {tensor:?}: data offset {offset} is not a multiple of the alignment {alignment}")]
    MisalignedTensor { tensor: String, offset: u64, alignment: u64 },
    #[error("tensor {tensor:?}: data [{start}, {end}) lies past the end of the data section ({data_len} bytes)")]
    TensorOutOfBounds { tensor: String, start: u64, end: u64, data_len: u64 },
    #[error("tensors {first:?} and {second:?} overlap in the data section")]
    OverlappingTensors { first: String, second: String },
    #[error("metadata key {key:?} is missing")]
    MissingKey { key: String },
    #[error("metadata key {key:?} has type {found}, expected {expected}")]
    WrongType { key: String, expected: &'static str, found: &'static str },
    #[error("metadata key {key:?} has value {value}, outside {expected}")]
    OutOfRange { key: String, value: String, expected: &'static str },
}

/// Wrapper so the unknown-type details print inside [`GgufError`].
#[derive(Debug)]
pub struct UnknownTypeError(pub crate::types::UnknownType);
impl fmt::Display for UnknownTypeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.fmt(f)
    }
}
impl std::error::Error for UnknownTypeError {}

/// One metadata value.
#[derive(Clone, Debug, PartialEq)]
pub enum MetaValue {
    U8(u8),
    I8(i8),
    U16(u16),
    I16(i16),
    U32(u32),
    I32(i32),
    F32(f32),
    Bool(bool),
    String(String),
    U64(u64),
    I64(i64),
    F64(f64),
    Array(MetaArray),
}

/// A typed metadata array. Arrays of arrays are kept as `Array`.
#[derive(Clone, Debug, PartialEq)]
pub enum MetaArray {
    U8(Vec<u8>),
    I8(Vec<i8>),
    U16(Vec<u16>),
    I16(Vec<i16>),
    U32(Vec<u32>),
    I32(Vec<i32>),
    F32(Vec<f32>),
    Bool(Vec<bool>),
    String(Vec<String>),
    U64(Vec<u64>),
    I64(Vec<i64>),
    F64(Vec<f64>),
    Array(Vec<MetaArray>),
}

impl MetaArray {
    pub fn len(&self) -> usize {
        match self {
            MetaArray::U8(v) => v.len(),
            MetaArray::I8(v) => v.len(),
            MetaArray::U16(v) => v.len(),
            MetaArray::I16(v) => v.len(),
            MetaArray::U32(v) => v.len(),
            MetaArray::I32(v) => v.len(),
            MetaArray::F32(v) => v.len(),
            MetaArray::Bool(v) => v.len(),
            MetaArray::String(v) => v.len(),
            MetaArray::U64(v) => v.len(),
            MetaArray::I64(v) => v.len(),
            MetaArray::F64(v) => v.len(),
            MetaArray::Array(v) => v.len(),
        }
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The GGUF value-type id of the elements.
    pub fn elem_type_id(&self) -> u32 {
        match self {
            MetaArray::U8(_) => 0,
            MetaArray::I8(_) => 1,
            MetaArray::U16(_) => 2,
            MetaArray::I16(_) => 3,
            MetaArray::U32(_) => 4,
            MetaArray::I32(_) => 5,
            MetaArray::F32(_) => 6,
            MetaArray::Bool(_) => 7,
            MetaArray::String(_) => 8,
            MetaArray::Array(_) => 9,
            MetaArray::U64(_) => 10,
            MetaArray::I64(_) => 11,
            MetaArray::F64(_) => 12,
        }
    }

    /// Integer elements widened to i64 (`None` for non-integer arrays or
    /// u64 values beyond i64).
    pub fn to_i64_vec(&self) -> Option<Vec<i64>> {
        Some(match self {
            MetaArray::U8(v) => v.iter().map(|&x| x as i64).collect(),
            MetaArray::I8(v) => v.iter().map(|&x| x as i64).collect(),
            MetaArray::U16(v) => v.iter().map(|&x| x as i64).collect(),
            MetaArray::I16(v) => v.iter().map(|&x| x as i64).collect(),
            MetaArray::U32(v) => v.iter().map(|&x| x as i64).collect(),
            MetaArray::I32(v) => v.iter().map(|&x| x as i64).collect(),
            MetaArray::U64(v) => v.iter().map(|&x| i64::try_from(x).ok()).collect::<Option<_>>()?,
            MetaArray::I64(v) => v.clone(),
            MetaArray::Bool(v) => v.iter().map(|&x| x as i64).collect(),
            _ => return None,
        })
    }

    /// Float elements (integers converted) as f32.
    pub fn to_f32_vec(&self) -> Option<Vec<f32>> {
        match self {
            MetaArray::F32(v) => Some(v.clone()),
            MetaArray::F64(v) => Some(v.iter().map(|&x| x as f32).collect()),
            other => other.to_i64_vec().map(|v| v.into_iter().map(|x| x as f32).collect()),
        }
    }
}

impl MetaValue {
    /// The GGUF value-type id.
    pub fn type_id(&self) -> u32 {
        match self {
            MetaValue::U8(_) => 0,
            MetaValue::I8(_) => 1,
            MetaValue::U16(_) => 2,
            MetaValue::I16(_) => 3,
            MetaValue::U32(_) => 4,
            MetaValue::I32(_) => 5,
            MetaValue::F32(_) => 6,
            MetaValue::Bool(_) => 7,
            MetaValue::String(_) => 8,
            MetaValue::Array(_) => 9,
            MetaValue::U64(_) => 10,
            MetaValue::I64(_) => 11,
            MetaValue::F64(_) => 12,
        }
    }

    pub fn type_name(&self) -> &'static str {
        type_name(self.type_id())
    }

    /// Any integer value widened to i128 (so every u64 and i64 fits).
    pub fn as_integer(&self) -> Option<i128> {
        Some(match *self {
            MetaValue::U8(x) => x as i128,
            MetaValue::I8(x) => x as i128,
            MetaValue::U16(x) => x as i128,
            MetaValue::I16(x) => x as i128,
            MetaValue::U32(x) => x as i128,
            MetaValue::I32(x) => x as i128,
            MetaValue::U64(x) => x as i128,
            MetaValue::I64(x) => x as i128,
            _ => return None,
        })
    }

    pub fn as_f64(&self) -> Option<f64> {
        match *self {
            MetaValue::F32(x) => Some(x as f64),
            MetaValue::F64(x) => Some(x),
            _ => self.as_integer().map(|x| x as f64),
        }
    }

    pub fn as_str(&self) -> Option<&str> {
        match self {
            MetaValue::String(s) => Some(s),
            _ => None,
        }
    }

    pub fn as_bool(&self) -> Option<bool> {
        match *self {
            MetaValue::Bool(b) => Some(b),
            _ => None,
        }
    }

    pub fn as_array(&self) -> Option<&MetaArray> {
        match self {
            MetaValue::Array(a) => Some(a),
            _ => None,
        }
    }
}

fn type_name(id: u32) -> &'static str {
    match id {
        0 => "u8",
        1 => "i8",
        2 => "u16",
        3 => "i16",
        4 => "u32",
        5 => "i32",
        6 => "f32",
        7 => "bool",
        8 => "string",
        9 => "array",
        10 => "u64",
        11 => "i64",
        12 => "f64",
        _ => "unknown",
    }
}

/// Description of one tensor. `dims` are in ggml order: `dims[0]` is the
/// contiguous dimension (the length of a row), so a PyTorch weight of shape
/// `[out, in]` appears here as `[in, out]`.
#[derive(Clone, Debug, PartialEq)]
pub struct TensorInfo {
    pub name: String,
    pub dims: Vec<u64>,
    pub ty: GgmlType,
    /// Offset of the first byte, relative to the data section.
    pub offset: u64,
    /// Bytes the tensor occupies.
    pub n_bytes: u64,
}

impl TensorInfo {
    pub fn n_elements(&self) -> u64 {
        // Checked at parse time not to overflow.
        self.dims.iter().product()
    }

    /// Length of one row (`dims[0]`).
    pub fn row_len(&self) -> u64 {
        self.dims.first().copied().unwrap_or(1)
    }

    /// Number of rows (product of all dims but the first).
    pub fn n_rows(&self) -> u64 {
        self.dims.iter().skip(1).product()
    }
}

/// A parsed GGUF file; tensor data stays in the memory map (zero copies).
pub struct GgufFile {
    source: Source,
    version: u32,
    metadata: Vec<(String, MetaValue)>,
    meta_index: HashMap<String, usize>,
    tensors: Vec<TensorInfo>,
    tensor_index: HashMap<String, usize>,
    alignment: u64,
    data_offset: u64,
}

impl fmt::Debug for GgufFile {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("GgufFile")
            .field("version", &self.version)
            .field("n_kv", &self.metadata.len())
            .field("n_tensors", &self.tensors.len())
            .field("alignment", &self.alignment)
            .field("data_offset", &self.data_offset)
            .finish()
    }
}

impl GgufFile {
    /// Memory-maps and parses a file.
    pub fn open(path: impl AsRef<Path>) -> Result<GgufFile, GgufError> {
        let path = path.as_ref();
        let source = Source::map(path).map_err(|source| GgufError::Io { path: path.to_path_buf(), source })?;
        GgufFile::parse(source)
    }

    /// Parses an in-memory image (tests, files produced on the fly).
    pub fn from_bytes(bytes: Vec<u8>) -> Result<GgufFile, GgufError> {
        GgufFile::parse(Source::Owned(bytes))
    }

    fn parse(source: Source) -> Result<GgufFile, GgufError> {
        let bytes = source.bytes();
        let mut r = Reader { buf: bytes, pos: 0 };
        let magic = r.array4(|| "magic".into())?;
        if magic != MAGIC {
            return Err(GgufError::BadMagic { found: magic });
        }
        let version = r.u32(|| "version".into())?;
        // A big-endian writer stores the version byte-swapped (gguf-py's
        // `GGUFEndian.BIG`); say so rather than "unsupported version 50331648".
        if version.swap_bytes() == 2 || version.swap_bytes() == 3 {
            return Err(GgufError::BigEndian);
        }
        if version != 2 && version != 3 {
            return Err(GgufError::UnsupportedVersion { version });
        }
        let count_pos = r.pos as u64;
        let n_tensors = r.u64(|| "tensor count".into())?;
        let n_kv = r.u64(|| "metadata count".into())?;
        // Minimal sizes: a kv is key (8) + type (4) + at least one byte; a
        // tensor info is name (8) + n_dims (4) + type (4) + offset (8).
        r.check_count(|| "metadata count".into(), count_pos + 8, n_kv, 13)?;
        r.check_count(|| "tensor count".into(), count_pos, n_tensors, 24)?;

        let mut metadata = Vec::with_capacity(bounded_capacity(n_kv));
        let mut meta_index = HashMap::with_capacity(bounded_capacity(n_kv));
        for i in 0..n_kv {
            let key_pos = r.pos as u64;
            let key = r.string(|| format!("metadata key #{i}"))?;
            // gguf.cpp rejects empty keys ("key %d is empty"); so do we, so
            // that every file we accept llama.cpp accepts too.
            if key.is_empty() {
                return Err(GgufError::EmptyKey { index: i, offset: key_pos });
            }
            let ty = r.u32(|| format!("type of metadata {key:?}"))?;
            let value = r.value(ty, &key, 0)?;
            if meta_index.insert(key.clone(), metadata.len()).is_some() {
                return Err(GgufError::DuplicateKey { key, offset: key_pos });
            }
            metadata.push((key, value));
        }

        // The spec and gguf.cpp both require `general.alignment` to be a
        // u32 (gguf.cpp: "key '%s' must be of type %s but is %s").
        let alignment = match meta_index.get(ALIGNMENT_KEY).map(|&i| &metadata[i].1) {
            None => DEFAULT_ALIGNMENT,
            Some(&MetaValue::U32(a)) => {
                if !a.is_power_of_two() {
                    return Err(GgufError::BadAlignment { alignment: a as u64 });
                }
                a as u64
            }
            Some(v) => {
                return Err(GgufError::WrongType { key: ALIGNMENT_KEY.into(), expected: "u32", found: v.type_name() })
            }
        };

        let mut tensors: Vec<TensorInfo> = Vec::with_capacity(bounded_capacity(n_tensors));
        let mut tensor_index = HashMap::with_capacity(bounded_capacity(n_tensors));
        for i in 0..n_tensors {
            let info_pos = r.pos as u64;
            let name = r.string(|| format!("tensor #{i} name"))?;
            let dims_pos = r.pos as u64;
            let n_dims = r.u32(|| format!("tensor {name:?} n_dims"))?;
            if n_dims as usize > MAX_DIMS {
                return Err(GgufError::TooManyDims { tensor: name, offset: dims_pos, n_dims });
            }
            let mut dims = Vec::with_capacity(n_dims as usize);
            for d in 0..n_dims {
                dims.push(r.u64(|| format!("tensor {name:?} dim {d}"))?);
            }
            let ty_pos = r.pos as u64;
            let ty_id = r.u32(|| format!("tensor {name:?} type"))?;
            let ty = GgmlType::from_id(ty_id).map_err(|e| GgufError::UnsupportedType {
                tensor: name.clone(),
                offset: ty_pos,
                source: UnknownTypeError(e),
            })?;
            let offset = r.u64(|| format!("tensor {name:?} offset"))?;
            // ggml stores dims as int64: gguf.cpp rejects negative ones and any
            // product beyond INT64_MAX. A dimension above i64::MAX is rejected
            // even when another dimension is 0 and the product would not show it.
            let n_elements = dims
                .iter()
                .try_fold(1u64, |acc, &d| if d > i64::MAX as u64 { None } else { acc.checked_mul(d) })
                .filter(|&n| n <= i64::MAX as u64)
                .ok_or_else(|| GgufError::DimOverflow { tensor: name.clone(), dims: dims.clone() })?;
            let ne0 = dims.first().copied().unwrap_or(1);
            let block = ty.block_size() as u64;
            if ne0 % block != 0 {
                return Err(GgufError::PartialBlock { tensor: name, ne0, ty, block });
            }
            let n_bytes = (n_elements / block)
                .checked_mul(ty.type_size() as u64)
                .ok_or_else(|| GgufError::DimOverflow { tensor: name.clone(), dims: dims.clone() })?;
            if offset % alignment != 0 {
                return Err(GgufError::MisalignedTensor { tensor: name, offset, alignment });
            }
            if tensor_index.insert(name.clone(), tensors.len()).is_some() {
                return Err(GgufError::DuplicateTensor { tensor: name, offset: info_pos });
            }
            tensors.push(TensorInfo { name, dims, ty, offset, n_bytes });
        }

        let file_len = bytes.len() as u64;
        let infos_end = r.pos as u64;
        let data_offset = align_up(infos_end, alignment).unwrap_or(u64::MAX);
        // Like gguf.cpp ("failed to seek to beginning of data section"): with
        // tensors present, the padded data section must start inside the
        // file. Without this a zero-byte tensor would point past the end.
        // Files without tensors (vocab-only) are often written unpadded.
        if !tensors.is_empty() && data_offset > file_len {
            return Err(GgufError::Truncated {
                field: "padding before the tensor data section".into(),
                offset: infos_end,
                needed: data_offset - infos_end,
                available: file_len - infos_end,
            });
        }
        let data_len = file_len.saturating_sub(data_offset);
        for t in &tensors {
            let end = t.offset.checked_add(t.n_bytes);
            match end {
                Some(end) if end <= data_len => {}
                _ => {
                    return Err(GgufError::TensorOutOfBounds {
                        tensor: t.name.clone(),
                        start: t.offset,
                        end: end.unwrap_or(u64::MAX),
                        data_len,
                    })
                }
            }
        }
        // Unlike gguf.cpp, which insists on exactly contiguous, padded
        // tensors in info order, any non-overlapping layout is accepted: the
        // bytes are only ever borrowed, so gaps cannot hurt.
        let mut by_offset: Vec<&TensorInfo> = tensors.iter().filter(|t| t.n_bytes > 0).collect();
        by_offset.sort_by_key(|t| t.offset);
        for pair in by_offset.windows(2) {
            if pair[0].offset + pair[0].n_bytes > pair[1].offset {
                return Err(GgufError::OverlappingTensors { first: pair[0].name.clone(), second: pair[1].name.clone() });
            }
        }

        Ok(GgufFile { source, version, metadata, meta_index, tensors, tensor_index, alignment, data_offset })
    }

    pub fn version(&self) -> u32 {
        self.version
    }

    pub fn alignment(&self) -> u64 {
        self.alignment
    }

    /// Absolute offset of the data section.
    pub fn data_offset(&self) -> u64 {
        self.data_offset
    }

    /// Metadata in file order.
    pub fn metadata(&self) -> &[(String, MetaValue)] {
        &self.metadata
    }

    pub fn get(&self, key: &str) -> Option<&MetaValue> {
        self.meta_index.get(key).map(|&i| &self.metadata[i].1)
    }

    /// Tensor infos in file order.
    pub fn tensors(&self) -> &[TensorInfo] {
        &self.tensors
    }

    pub fn tensor(&self, name: &str) -> Option<&TensorInfo> {
        self.tensor_index.get(name).map(|&i| &self.tensors[i])
    }

    /// The bytes of a tensor, borrowed from the map. The info must come from
    /// this file (bounds were checked when it was parsed); an info from
    /// elsewhere whose extent lies outside this file panics, so prefer
    /// [`GgufFile::tensor_bytes`] when the info's origin is not certain.
    pub fn tensor_data(&self, info: &TensorInfo) -> &[u8] {
        let start = (self.data_offset + info.offset) as usize;
        &self.source.bytes()[start..start + info.n_bytes as usize]
    }

    /// The bytes of the tensor called `name`, or `None` when there is none.
    pub fn tensor_bytes(&self, name: &str) -> Option<&[u8]> {
        self.tensor(name).map(|t| self.tensor_data(t))
    }

    /// The whole file image.
    pub fn bytes(&self) -> &[u8] {
        self.source.bytes()
    }

    /// Whether the image is a read-only file mapping (from [`GgufFile::open`]),
    /// whose pages the OS can drop and re-read from the file at any time
    /// (`madvise(MADV_DONTNEED)` is then safe); `false` for owned images.
    pub fn is_mapped(&self) -> bool {
        self.source.is_mapped()
    }

    // ---- typed accessors -------------------------------------------------

    /// A string value; `Ok(None)` when absent, an error when of another type.
    pub fn get_str(&self, key: &str) -> Result<Option<&str>, GgufError> {
        match self.get(key) {
            None => Ok(None),
            Some(v) => v.as_str().map(Some).ok_or_else(|| wrong(key, "string", v)),
        }
    }

    /// Any non-negative integer value that fits in `u64`.
    pub fn get_u64(&self, key: &str) -> Result<Option<u64>, GgufError> {
        match self.get(key) {
            None => Ok(None),
            Some(v) => {
                let x = v.as_integer().ok_or_else(|| wrong(key, "integer", v))?;
                u64::try_from(x)
                    .map(Some)
                    .map_err(|_| GgufError::OutOfRange { key: key.into(), value: x.to_string(), expected: "0..=u64::MAX" })
            }
        }
    }

    /// Any non-negative integer value that fits in `u32`.
    pub fn get_u32(&self, key: &str) -> Result<Option<u32>, GgufError> {
        match self.get_u64(key)? {
            None => Ok(None),
            Some(x) => u32::try_from(x)
                .map(Some)
                .map_err(|_| GgufError::OutOfRange { key: key.into(), value: x.to_string(), expected: "0..=u32::MAX" }),
        }
    }

    /// Any numeric value as f32.
    pub fn get_f32(&self, key: &str) -> Result<Option<f32>, GgufError> {
        match self.get(key) {
            None => Ok(None),
            Some(v) => v.as_f64().map(|x| Some(x as f32)).ok_or_else(|| wrong(key, "number", v)),
        }
    }

    pub fn get_bool(&self, key: &str) -> Result<Option<bool>, GgufError> {
        match self.get(key) {
            None => Ok(None),
            Some(v) => v.as_bool().map(Some).ok_or_else(|| wrong(key, "bool", v)),
        }
    }

    pub fn get_array(&self, key: &str) -> Result<Option<&MetaArray>, GgufError> {
        match self.get(key) {
            None => Ok(None),
            Some(v) => v.as_array().map(Some).ok_or_else(|| wrong(key, "array", v)),
        }
    }

    /// An array of strings.
    pub fn get_str_array(&self, key: &str) -> Result<Option<&[String]>, GgufError> {
        match self.get_array(key)? {
            None => Ok(None),
            Some(MetaArray::String(v)) => Ok(Some(v)),
            Some(_) => Err(GgufError::WrongType { key: key.into(), expected: "array of string", found: "array" }),
        }
    }

    /// Requires a key to be present.
    pub fn require<T>(&self, key: &str, v: Result<Option<T>, GgufError>) -> Result<T, GgufError> {
        v?.ok_or_else(|| GgufError::MissingKey { key: key.into() })
    }
}

fn wrong(key: &str, expected: &'static str, v: &MetaValue) -> GgufError {
    GgufError::WrongType { key: key.into(), expected, found: v.type_name() }
}

/// Capacity to reserve for a count read from a file: enough to avoid
/// reallocations for ordinary files, never a large up-front allocation.
fn bounded_capacity(count: u64) -> usize {
    count.min(4096) as usize
}

fn align_up(x: u64, a: u64) -> Option<u64> {
    x.checked_add(a - 1).map(|v| v / a * a)
}

/// A bounds-checked cursor. Field names are built lazily (closures) so the
/// hot path of reading a 256k-entry vocabulary allocates no error text.
struct Reader<'a> {
    buf: &'a [u8],
    pos: usize,
}

impl<'a> Reader<'a> {
    fn remaining(&self) -> u64 {
        (self.buf.len() - self.pos) as u64
    }

    fn take(&mut self, n: u64, field: impl FnOnce() -> String) -> Result<&'a [u8], GgufError> {
        if n > self.remaining() {
            return Err(GgufError::Truncated {
                field: field(),
                offset: self.pos as u64,
                needed: n,
                available: self.remaining(),
            });
        }
        let s = &self.buf[self.pos..self.pos + n as usize];
        self.pos += n as usize;
        Ok(s)
    }

    fn take_array<const N: usize>(&mut self, field: impl FnOnce() -> String) -> Result<[u8; N], GgufError> {
        let b = self.take(N as u64, field)?;
        let mut out = [0u8; N];
        out.copy_from_slice(b);
        Ok(out)
    }

    /// Fails unless `count` items of at least `min_size` bytes each could fit.
    fn check_count(
        &self,
        field: impl FnOnce() -> String,
        offset: u64,
        count: u64,
        min_size: u64,
    ) -> Result<(), GgufError> {
        match count.checked_mul(min_size) {
            Some(n) if n <= self.remaining() => Ok(()),
            _ => Err(GgufError::CountTooLarge { field: field(), offset, count, available: self.remaining() }),
        }
    }

    fn array4(&mut self, field: impl FnOnce() -> String) -> Result<[u8; 4], GgufError> {
        self.take_array::<4>(field)
    }

    fn u32(&mut self, field: impl FnOnce() -> String) -> Result<u32, GgufError> {
        Ok(u32::from_le_bytes(self.take_array::<4>(field)?))
    }

    fn u64(&mut self, field: impl FnOnce() -> String) -> Result<u64, GgufError> {
        Ok(u64::from_le_bytes(self.take_array::<8>(field)?))
    }

    fn string(&mut self, field: impl Fn() -> String) -> Result<String, GgufError> {
        let len_pos = self.pos as u64;
        let len = self.u64(&field)?;
        if len > self.remaining() {
            return Err(GgufError::CountTooLarge {
                field: format!("{} (string length)", field()),
                offset: len_pos,
                count: len,
                available: self.remaining(),
            });
        }
        let start = self.pos as u64;
        let b = self.take(len, &field)?;
        // The allocation is bounded by `len <= remaining`, checked above.
        match std::str::from_utf8(b) {
            Ok(s) => Ok(s.to_owned()),
            Err(_) => Err(GgufError::InvalidUtf8 { field: field(), offset: start }),
        }
    }

    fn bool(&mut self, field: impl Fn() -> String) -> Result<bool, GgufError> {
        let pos = self.pos as u64;
        match self.take_array::<1>(&field)?[0] {
            0 => Ok(false),
            1 => Ok(true),
            value => Err(GgufError::InvalidBool { field: field(), offset: pos, value }),
        }
    }

    fn value(&mut self, ty: u32, key: &str, depth: usize) -> Result<MetaValue, GgufError> {
        let f = || format!("value of {key:?}");
        Ok(match ty {
            0 => MetaValue::U8(u8::from_le_bytes(self.take_array(f)?)),
            1 => MetaValue::I8(i8::from_le_bytes(self.take_array(f)?)),
            2 => MetaValue::U16(u16::from_le_bytes(self.take_array(f)?)),
            3 => MetaValue::I16(i16::from_le_bytes(self.take_array(f)?)),
            4 => MetaValue::U32(u32::from_le_bytes(self.take_array(f)?)),
            5 => MetaValue::I32(i32::from_le_bytes(self.take_array(f)?)),
            6 => MetaValue::F32(f32::from_le_bytes(self.take_array(f)?)),
            7 => MetaValue::Bool(self.bool(f)?),
            8 => MetaValue::String(self.string(f)?),
            9 => MetaValue::Array(self.array(key, depth)?),
            10 => MetaValue::U64(u64::from_le_bytes(self.take_array(f)?)),
            11 => MetaValue::I64(i64::from_le_bytes(self.take_array(f)?)),
            12 => MetaValue::F64(f64::from_le_bytes(self.take_array(f)?)),
            _ => return Err(GgufError::UnknownValueType { field: f(), offset: self.pos as u64 - 4, ty }),
        })
    }

    /// Reads `count` fixed-width little-endian elements. The count was
    /// checked against the remaining bytes, so the allocation is bounded.
    fn fixed<T, const W: usize>(
        &mut self,
        n: usize,
        field: impl FnOnce() -> String,
        conv: fn([u8; W]) -> T,
    ) -> Result<Vec<T>, GgufError> {
        let raw = self.take((n * W) as u64, field)?;
        Ok(raw
            .chunks_exact(W)
            .map(|c| {
                let mut b = [0u8; W];
                b.copy_from_slice(c);
                conv(b)
            })
            .collect())
    }

    fn array(&mut self, key: &str, depth: usize) -> Result<MetaArray, GgufError> {
        let start = self.pos as u64;
        if depth >= MAX_ARRAY_DEPTH {
            return Err(GgufError::NestingTooDeep { field: format!("array {key:?}"), offset: start });
        }
        let field = || format!("array {key:?}");
        let elem_ty = self.u32(|| format!("array {key:?} element type"))?;
        let count_pos = self.pos as u64;
        let n = self.u64(|| format!("array {key:?} length"))?;
        let unknown = || GgufError::UnknownValueType { field: format!("array {key:?} element"), offset: start, ty: elem_ty };
        let min_size: u64 = match elem_ty {
            0 | 1 | 7 => 1,
            2 | 3 => 2,
            4..=6 => 4,
            8 | 10..=12 => 8,
            // An inner array is at least its type (4) and count (8).
            9 => 12,
            _ => return Err(unknown()),
        };
        self.check_count(|| format!("array {key:?} length"), count_pos, n, min_size)?;
        let n = n as usize;
        Ok(match elem_ty {
            0 => MetaArray::U8(self.take(n as u64, field)?.to_vec()),
            1 => MetaArray::I8(self.fixed(n, field, i8::from_le_bytes)?),
            2 => MetaArray::U16(self.fixed(n, field, u16::from_le_bytes)?),
            3 => MetaArray::I16(self.fixed(n, field, i16::from_le_bytes)?),
            4 => MetaArray::U32(self.fixed(n, field, u32::from_le_bytes)?),
            5 => MetaArray::I32(self.fixed(n, field, i32::from_le_bytes)?),
            6 => MetaArray::F32(self.fixed(n, field, f32::from_le_bytes)?),
            7 => {
                let pos = self.pos as u64;
                let raw = self.take(n as u64, field)?;
                if let Some(i) = raw.iter().position(|&b| b > 1) {
                    return Err(GgufError::InvalidBool {
                        field: format!("array {key:?} element {i}"),
                        offset: pos + i as u64,
                        value: raw[i],
                    });
                }
                MetaArray::Bool(raw.iter().map(|&b| b == 1).collect())
            }
            8 => {
                let mut v = Vec::with_capacity(bounded_capacity(n as u64));
                for i in 0..n {
                    v.push(self.string(|| format!("array {key:?} element {i}"))?);
                }
                MetaArray::String(v)
            }
            9 => {
                let mut v = Vec::with_capacity(bounded_capacity(n as u64));
                for _ in 0..n {
                    v.push(self.array(key, depth + 1)?);
                }
                MetaArray::Array(v)
            }
            10 => MetaArray::U64(self.fixed(n, field, u64::from_le_bytes)?),
            11 => MetaArray::I64(self.fixed(n, field, i64::from_le_bytes)?),
            12 => MetaArray::F64(self.fixed(n, field, f64::from_le_bytes)?),
            _ => return Err(unknown()),
        })
    }
}
