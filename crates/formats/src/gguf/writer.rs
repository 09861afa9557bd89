//! GGUF (version 3, little-endian) writer.
//!
//! The layout is the one gguf.cpp (`gguf_write_out`) and gguf-py write, so a
//! file read by [`GgufFile`] and written back is byte-identical to what those
//! writers produce: header, key/values, tensor infos, zero padding to the
//! alignment, then each tensor's bytes followed by zero padding to the
//! alignment. Tensor offsets are assigned here, in the order tensors were
//! added; they are contiguous, which gguf.cpp requires ("tensor '%s' has
//! offset %d, expected %d").
//!
//! Metadata and tensor infos are held in memory; tensor *data* is streamed:
//! [`GgufWriter::write`] calls back once per tensor with a [`TensorSink`]
//! that accepts exactly the tensor's byte count, so a 10 GB model never sits
//! in memory. [`GgufWriter::write_to_path`] writes through [`AtomicFile`]: a
//! failed or interrupted write never leaves a partial file under the final
//! name.
//!
//! Everything the reader would reject is refused when it is added (empty or
//! duplicate keys, arrays nested deeper than [`MAX_ARRAY_DEPTH`], a
//! `general.alignment` that is not a power-of-two u32, more than
//! [`MAX_DIMS`] dimensions, element counts that overflow or do not fill
//! whole blocks, duplicate tensor names), so the writer cannot produce a file
//! that [`GgufFile`] refuses.
//!
//! Deliberately absent: writing version 2 or big-endian files, and split
//! (`-00001-of-00003.gguf`) output.

use super::{
    align_up, GgufFile, MetaArray, MetaValue, TensorInfo, ALIGNMENT_KEY, DEFAULT_ALIGNMENT, MAGIC, MAX_ARRAY_DEPTH,
    MAX_DIMS,
};
use crate::atomic::AtomicFile;
use crate::types::GgmlType;
use std::collections::HashMap;
use std::io::{self, Write};
use std::path::{Path, PathBuf};

/// The version this writer emits.
pub const WRITE_VERSION: u32 = 3;

/// Why a GGUF file could not be written.
#[derive(Debug, thiserror::Error)]
pub enum GgufWriteError {
    #[error("writing GGUF: {0}")]
    Io(#[from] io::Error),
    #[error("cannot write {path}: {source}")]
    IoAt { path: PathBuf, source: io::Error },
    #[error("metadata keys must not be empty")]
    EmptyKey,
    #[error("duplicate metadata key {key:?}")]
    DuplicateKey { key: String },
    #[error("metadata {key:?}: arrays nested deeper than {MAX_ARRAY_DEPTH}")]
    NestingTooDeep { key: String },
    #[error("general.alignment must be a u32, not {found}")]
    AlignmentType { found: &'static str },
    #[error("general.alignment is {alignment}; it must be a non-zero power of two")]
    BadAlignment { alignment: u64 },
    #[error("duplicate tensor name {tensor:?}")]
    DuplicateTensor { tensor: String },
    #[error("tensor {tensor:?}: {n_dims} dimensions (at most {MAX_DIMS} allowed)")]
    TooManyDims { tensor: String, n_dims: usize },
    #[error("tensor {tensor:?}: dimensions {dims:?} overflow when multiplied (ggml's limit is i64::MAX elements)")]
    DimOverflow { tensor: String, dims: Vec<u64> },
    #[error("tensor {tensor:?}: first dimension {ne0} is not a multiple of the {ty} block size {block}")]
    PartialBlock { tensor: String, ne0: u64, ty: GgmlType, block: u64 },
    #[error("the file would be larger than 2^64 bytes")]
    TooLarge,
    #[error("tensor {tensor:?}: {written} bytes of data were supplied, but it occupies {expected}")]
    WrongDataLength { tensor: String, expected: u64, written: u64 },
    #[error("{found} data buffers were supplied for {expected} tensors")]
    DataCount { expected: usize, found: usize },
}

/// Where the sections of the file will lie.
#[derive(Clone, Debug, PartialEq)]
pub struct GgufLayout {
    pub alignment: u64,
    /// Bytes of header, metadata and tensor infos (before the padding).
    pub header_len: u64,
    /// Absolute offset of the data section.
    pub data_offset: u64,
    /// Tensor infos with their offsets (relative to the data section).
    pub tensors: Vec<TensorInfo>,
    /// Total length of the file.
    pub file_len: u64,
}

/// Builds a GGUF file; see the module docs.
#[derive(Clone, Debug, Default)]
pub struct GgufWriter {
    metadata: Vec<(String, MetaValue)>,
    meta_index: HashMap<String, usize>,
    tensors: Vec<TensorInfo>,
    tensor_index: HashMap<String, usize>,
}

impl GgufWriter {
    pub fn new() -> GgufWriter {
        GgufWriter::default()
    }

    /// A writer holding `file`'s metadata and tensor infos, in file order,
    /// ready to be written back (with data from `file.tensor_bytes`) or
    /// edited first.
    pub fn from_gguf(file: &GgufFile) -> Result<GgufWriter, GgufWriteError> {
        let mut w = GgufWriter::new();
        for (k, v) in file.metadata() {
            w.add_meta(k.clone(), v.clone())?;
        }
        for t in file.tensors() {
            w.add_tensor(t.name.clone(), &t.dims, t.ty)?;
        }
        Ok(w)
    }

    /// Adds a key; an existing key is an error (see [`GgufWriter::set_meta`]).
    pub fn add_meta(&mut self, key: impl Into<String>, value: impl Into<MetaValue>) -> Result<&mut Self, GgufWriteError> {
        let key = key.into();
        if self.meta_index.contains_key(&key) {
            return Err(GgufWriteError::DuplicateKey { key });
        }
        self.set_meta(key, value)
    }

    /// Adds a key, or replaces its value in place (keeping its position).
    pub fn set_meta(&mut self, key: impl Into<String>, value: impl Into<MetaValue>) -> Result<&mut Self, GgufWriteError> {
        let key = key.into();
        let value = value.into();
        check_meta(&key, &value)?;
        match self.meta_index.get(&key) {
            Some(&i) => self.metadata[i].1 = value,
            None => {
                self.meta_index.insert(key.clone(), self.metadata.len());
                self.metadata.push((key, value));
            }
        }
        Ok(self)
    }

    /// Removes a key, returning its value.
    pub fn remove_meta(&mut self, key: &str) -> Option<MetaValue> {
        let i = self.meta_index.remove(key)?;
        let (_, v) = self.metadata.remove(i);
        for idx in self.meta_index.values_mut() {
            if *idx > i {
                *idx -= 1;
            }
        }
        Some(v)
    }

    /// Metadata in the order it will be written.
    pub fn metadata(&self) -> &[(String, MetaValue)] {
        &self.metadata
    }

    /// Sets `general.alignment`.
    pub fn set_alignment(&mut self, alignment: u32) -> Result<&mut Self, GgufWriteError> {
        self.set_meta(ALIGNMENT_KEY, MetaValue::U32(alignment))
    }

    /// The alignment in force (`general.alignment`, else 32).
    pub fn alignment(&self) -> u64 {
        match self.meta_index.get(ALIGNMENT_KEY).map(|&i| &self.metadata[i].1) {
            // Validated by `check_meta` when it was set.
            Some(MetaValue::U32(a)) => *a as u64,
            _ => DEFAULT_ALIGNMENT,
        }
    }

    /// Declares a tensor (ggml dimension order: `dims[0]` is the row
    /// length). Data is supplied when writing, in declaration order.
    /// Returns the tensor's index.
    pub fn add_tensor(&mut self, name: impl Into<String>, dims: &[u64], ty: GgmlType) -> Result<usize, GgufWriteError> {
        let name = name.into();
        if self.tensor_index.contains_key(&name) {
            return Err(GgufWriteError::DuplicateTensor { tensor: name });
        }
        if dims.len() > MAX_DIMS {
            return Err(GgufWriteError::TooManyDims { tensor: name, n_dims: dims.len() });
        }
        // Same limits as the reader (and gguf.cpp): each dim and the product
        // within i64, the row a whole number of blocks.
        let n_elements = dims
            .iter()
            .try_fold(1u64, |acc, &d| if d > i64::MAX as u64 { None } else { acc.checked_mul(d) })
            .filter(|&n| n <= i64::MAX as u64)
            .ok_or_else(|| GgufWriteError::DimOverflow { tensor: name.clone(), dims: dims.to_vec() })?;
        let ne0 = dims.first().copied().unwrap_or(1);
        let block = ty.block_size() as u64;
        if ne0 % block != 0 {
            return Err(GgufWriteError::PartialBlock { tensor: name, ne0, ty, block });
        }
        let n_bytes = (n_elements / block)
            .checked_mul(ty.type_size() as u64)
            .ok_or_else(|| GgufWriteError::DimOverflow { tensor: name.clone(), dims: dims.to_vec() })?;
        let index = self.tensors.len();
        self.tensor_index.insert(name.clone(), index);
        self.tensors.push(TensorInfo { name, dims: dims.to_vec(), ty, offset: 0, n_bytes });
        Ok(index)
    }

    /// Number of tensors declared.
    pub fn n_tensors(&self) -> usize {
        self.tensors.len()
    }

    /// Computes offsets and sizes without writing anything.
    pub fn layout(&self) -> Result<GgufLayout, GgufWriteError> {
        let alignment = self.alignment();
        let header_len = self.header_len()?;
        let data_offset = align_up(header_len, alignment).ok_or(GgufWriteError::TooLarge)?;
        let mut cursor = 0u64;
        let mut tensors = Vec::with_capacity(self.tensors.len());
        for t in &self.tensors {
            let mut t = t.clone();
            t.offset = cursor;
            cursor = cursor
                .checked_add(t.n_bytes)
                .and_then(|end| align_up(end, alignment))
                .ok_or(GgufWriteError::TooLarge)?;
            tensors.push(t);
        }
        let file_len = data_offset.checked_add(cursor).ok_or(GgufWriteError::TooLarge)?;
        Ok(GgufLayout { alignment, header_len, data_offset, tensors, file_len })
    }

    fn header_len(&self) -> Result<u64, GgufWriteError> {
        // Computed, not serialized, so `layout` stays cheap for big vocabularies.
        let mut n: u64 = 4 + 4 + 8 + 8;
        let add = |n: u64, x: u64| n.checked_add(x).ok_or(GgufWriteError::TooLarge);
        for (k, v) in &self.metadata {
            n = add(n, 8 + k.len() as u64 + 4)?;
            n = add(n, value_len(v))?;
        }
        for t in &self.tensors {
            n = add(n, 8 + t.name.len() as u64 + 4 + 8 * t.dims.len() as u64 + 4 + 8)?;
        }
        Ok(n)
    }

    /// Writes the file to `out`, calling `fill(info, sink)` once per tensor
    /// in declaration order to stream its bytes; the sink must receive
    /// exactly `info.n_bytes` bytes. Returns the number of bytes written.
    /// `out` is not flushed and should be buffered for files.
    pub fn write<W, F>(&self, out: &mut W, mut fill: F) -> Result<u64, GgufWriteError>
    where
        W: Write + ?Sized,
        F: FnMut(&TensorInfo, &mut TensorSink<'_>) -> io::Result<()>,
    {
        let layout = self.layout()?;
        let mut header = Vec::with_capacity(usize::try_from(layout.header_len).unwrap_or(0).min(1 << 30));
        self.serialize_header(&layout, &mut header);
        debug_assert_eq!(header.len() as u64, layout.header_len);
        out.write_all(&header)?;
        write_zeros(out, layout.data_offset - layout.header_len)?;
        let mut pos = layout.data_offset;
        for t in &layout.tensors {
            // `&mut &mut W` is sized, so it coerces to `&mut dyn Write` even
            // when `W` itself is unsized.
            let mut o = &mut *out;
            let mut sink = TensorSink { out: &mut o, remaining: t.n_bytes, written: 0, overflow: false };
            let r = fill(t, &mut sink);
            let (written, overflow) = (sink.written, sink.overflow);
            if overflow || (r.is_ok() && written != t.n_bytes) {
                return Err(GgufWriteError::WrongDataLength { tensor: t.name.clone(), expected: t.n_bytes, written });
            }
            r?;
            let padded = align_up(t.n_bytes, layout.alignment).ok_or(GgufWriteError::TooLarge)?;
            write_zeros(out, padded - t.n_bytes)?;
            pos += padded;
        }
        debug_assert_eq!(pos, layout.file_len);
        Ok(pos)
    }

    /// Writes the file to a `Vec`, with each tensor's bytes given in
    /// declaration order.
    pub fn write_to_vec<D: AsRef<[u8]>>(&self, data: &[D]) -> Result<Vec<u8>, GgufWriteError> {
        self.check_data_count(data.len())?;
        let mut out = Vec::new();
        self.write(&mut out, data_filler(&self.tensors, data))?;
        Ok(out)
    }

    /// Writes the file at `path` atomically (temporary file in the same
    /// directory, fsync, rename); on any error nothing appears at `path` and
    /// a file already there is left as it was.
    pub fn write_to_path<F>(&self, path: impl AsRef<Path>, fill: F) -> Result<u64, GgufWriteError>
    where
        F: FnMut(&TensorInfo, &mut TensorSink<'_>) -> io::Result<()>,
    {
        let path = path.as_ref();
        let at = |source| GgufWriteError::IoAt { path: path.to_path_buf(), source };
        let mut file = AtomicFile::create(path).map_err(at)?;
        let n = self.write(&mut file, fill).map_err(|e| match e {
            GgufWriteError::Io(source) => at(source),
            e => e,
        })?;
        file.commit().map_err(at)?;
        Ok(n)
    }

    /// [`GgufWriter::write_to_path`] with each tensor's bytes in memory.
    pub fn write_to_path_with_data<D: AsRef<[u8]>>(&self, path: impl AsRef<Path>, data: &[D]) -> Result<u64, GgufWriteError> {
        self.check_data_count(data.len())?;
        self.write_to_path(path, data_filler(&self.tensors, data))
    }

    fn check_data_count(&self, found: usize) -> Result<(), GgufWriteError> {
        if found != self.tensors.len() {
            return Err(GgufWriteError::DataCount { expected: self.tensors.len(), found });
        }
        Ok(())
    }

    fn serialize_header(&self, layout: &GgufLayout, b: &mut Vec<u8>) {
        b.extend_from_slice(&MAGIC);
        b.extend_from_slice(&WRITE_VERSION.to_le_bytes());
        b.extend_from_slice(&(layout.tensors.len() as u64).to_le_bytes());
        b.extend_from_slice(&(self.metadata.len() as u64).to_le_bytes());
        for (k, v) in &self.metadata {
            put_str(b, k);
            b.extend_from_slice(&v.type_id().to_le_bytes());
            put_value(b, v);
        }
        for t in &layout.tensors {
            put_str(b, &t.name);
            b.extend_from_slice(&(t.dims.len() as u32).to_le_bytes());
            for d in &t.dims {
                b.extend_from_slice(&d.to_le_bytes());
            }
            b.extend_from_slice(&t.ty.id().to_le_bytes());
            b.extend_from_slice(&t.offset.to_le_bytes());
        }
    }
}

/// A callback feeding in-memory buffers, by tensor index.
fn data_filler<'a, D: AsRef<[u8]>>(
    tensors: &'a [TensorInfo],
    data: &'a [D],
) -> impl FnMut(&TensorInfo, &mut TensorSink<'_>) -> io::Result<()> + 'a {
    let mut i = 0;
    move |info, sink| {
        debug_assert_eq!(tensors.get(i).map(|t| &t.name), Some(&info.name));
        let d = data.get(i).ok_or_else(|| io::Error::other(format!("no data for tensor {:?}", info.name)))?;
        i += 1;
        sink.write_all(d.as_ref())
    }
}

/// Receives one tensor's bytes; refuses more than the tensor occupies.
pub struct TensorSink<'w> {
    out: &'w mut dyn Write,
    remaining: u64,
    written: u64,
    overflow: bool,
}

impl std::fmt::Debug for TensorSink<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TensorSink").field("remaining", &self.remaining).field("written", &self.written).finish()
    }
}

impl TensorSink<'_> {
    /// Bytes still expected.
    pub fn remaining(&self) -> u64 {
        self.remaining
    }
}

impl Write for TensorSink<'_> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        if buf.len() as u64 > self.remaining {
            self.overflow = true;
            self.written += buf.len() as u64;
            return Err(io::Error::new(io::ErrorKind::InvalidInput, "more bytes than the tensor occupies"));
        }
        let n = self.out.write(buf)?;
        self.remaining -= n as u64;
        self.written += n as u64;
        Ok(n)
    }

    fn flush(&mut self) -> io::Result<()> {
        self.out.flush()
    }
}

fn write_zeros<W: Write + ?Sized>(out: &mut W, n: u64) -> io::Result<()> {
    const ZEROS: [u8; 256] = [0; 256];
    let mut n = n;
    while n > 0 {
        let k = n.min(ZEROS.len() as u64) as usize;
        out.write_all(&ZEROS[..k])?;
        n -= k as u64;
    }
    Ok(())
}

fn check_meta(key: &str, value: &MetaValue) -> Result<(), GgufWriteError> {
    if key.is_empty() {
        return Err(GgufWriteError::EmptyKey);
    }
    if key == ALIGNMENT_KEY {
        match *value {
            MetaValue::U32(a) if a.is_power_of_two() => {}
            MetaValue::U32(a) => return Err(GgufWriteError::BadAlignment { alignment: a as u64 }),
            ref v => return Err(GgufWriteError::AlignmentType { found: v.type_name() }),
        }
    }
    if let MetaValue::Array(a) = value {
        if !depth_ok(a, 1) {
            return Err(GgufWriteError::NestingTooDeep { key: key.to_string() });
        }
    }
    Ok(())
}

/// Whether `a`, at nesting level `level` (1 = outermost), stays within the
/// reader's limit. Recursion is bounded by the limit, not by the input.
fn depth_ok(a: &MetaArray, level: usize) -> bool {
    if level > MAX_ARRAY_DEPTH {
        return false;
    }
    match a {
        MetaArray::Array(inner) => inner.iter().all(|x| depth_ok(x, level + 1)),
        _ => true,
    }
}

fn value_len(v: &MetaValue) -> u64 {
    match v {
        MetaValue::U8(_) | MetaValue::I8(_) | MetaValue::Bool(_) => 1,
        MetaValue::U16(_) | MetaValue::I16(_) => 2,
        MetaValue::U32(_) | MetaValue::I32(_) | MetaValue::F32(_) => 4,
        MetaValue::U64(_) | MetaValue::I64(_) | MetaValue::F64(_) => 8,
        MetaValue::String(s) => 8 + s.len() as u64,
        MetaValue::Array(a) => array_len(a),
    }
}

fn array_len(a: &MetaArray) -> u64 {
    let n = a.len() as u64;
    12 + match a {
        MetaArray::U8(_) | MetaArray::I8(_) | MetaArray::Bool(_) => n,
        MetaArray::U16(_) | MetaArray::I16(_) => 2 * n,
        MetaArray::U32(_) | MetaArray::I32(_) | MetaArray::F32(_) => 4 * n,
        MetaArray::U64(_) | MetaArray::I64(_) | MetaArray::F64(_) => 8 * n,
        MetaArray::String(v) => v.iter().map(|s| 8 + s.len() as u64).sum(),
        MetaArray::Array(v) => v.iter().map(array_len).sum(),
    }
}

fn put_str(b: &mut Vec<u8>, s: &str) {
    b.extend_from_slice(&(s.len() as u64).to_le_bytes());
    b.extend_from_slice(s.as_bytes());
}

fn put_value(b: &mut Vec<u8>, v: &MetaValue) {
    match v {
        MetaValue::U8(x) => b.push(*x),
        MetaValue::I8(x) => b.extend_from_slice(&x.to_le_bytes()),
        MetaValue::U16(x) => b.extend_from_slice(&x.to_le_bytes()),
        MetaValue::I16(x) => b.extend_from_slice(&x.to_le_bytes()),
        MetaValue::U32(x) => b.extend_from_slice(&x.to_le_bytes()),
        MetaValue::I32(x) => b.extend_from_slice(&x.to_le_bytes()),
        MetaValue::F32(x) => b.extend_from_slice(&x.to_le_bytes()),
        MetaValue::Bool(x) => b.push(*x as u8),
        MetaValue::String(s) => put_str(b, s),
        MetaValue::U64(x) => b.extend_from_slice(&x.to_le_bytes()),
        MetaValue::I64(x) => b.extend_from_slice(&x.to_le_bytes()),
        MetaValue::F64(x) => b.extend_from_slice(&x.to_le_bytes()),
        MetaValue::Array(a) => put_array(b, a),
    }
}

fn put_array(b: &mut Vec<u8>, a: &MetaArray) {
    b.extend_from_slice(&a.elem_type_id().to_le_bytes());
    b.extend_from_slice(&(a.len() as u64).to_le_bytes());
    macro_rules! each {
        ($v:expr) => {
            for x in $v {
                b.extend_from_slice(&x.to_le_bytes());
            }
        };
    }
    match a {
        MetaArray::U8(v) => b.extend_from_slice(v),
        MetaArray::I8(v) => each!(v),
        MetaArray::U16(v) => each!(v),
        MetaArray::I16(v) => each!(v),
        MetaArray::U32(v) => each!(v),
        MetaArray::I32(v) => each!(v),
        MetaArray::F32(v) => each!(v),
        MetaArray::Bool(v) => b.extend(v.iter().map(|&x| x as u8)),
        MetaArray::String(v) => v.iter().for_each(|s| put_str(b, s)),
        MetaArray::U64(v) => each!(v),
        MetaArray::I64(v) => each!(v),
        MetaArray::F64(v) => each!(v),
        MetaArray::Array(v) => v.iter().for_each(|x| put_array(b, x)),
    }
}

macro_rules! from_scalar {
    ($($t:ty => $variant:ident),* $(,)?) => {$(
        impl From<$t> for MetaValue {
            fn from(x: $t) -> MetaValue { MetaValue::$variant(x) }
        }
        impl From<Vec<$t>> for MetaArray {
            fn from(v: Vec<$t>) -> MetaArray { MetaArray::$variant(v) }
        }
        impl From<Vec<$t>> for MetaValue {
            fn from(v: Vec<$t>) -> MetaValue { MetaValue::Array(MetaArray::$variant(v)) }
        }
    )*};
}

from_scalar! {
    u8 => U8, i8 => I8, u16 => U16, i16 => I16, u32 => U32, i32 => I32, f32 => F32,
    bool => Bool, String => String, u64 => U64, i64 => I64, f64 => F64,
}

impl From<&str> for MetaValue {
    fn from(s: &str) -> MetaValue {
        MetaValue::String(s.to_string())
    }
}

impl From<Vec<&str>> for MetaValue {
    fn from(v: Vec<&str>) -> MetaValue {
        MetaValue::Array(MetaArray::String(v.into_iter().map(str::to_string).collect()))
    }
}

impl From<MetaArray> for MetaValue {
    fn from(a: MetaArray) -> MetaValue {
        MetaValue::Array(a)
    }
}

impl From<Vec<MetaArray>> for MetaArray {
    fn from(v: Vec<MetaArray>) -> MetaArray {
        MetaArray::Array(v)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn small() -> GgufWriter {
        let mut w = GgufWriter::new();
        w.add_meta("general.architecture", "llama").unwrap();
        w.add_meta("llama.block_count", 2u32).unwrap();
        w.add_tensor("a", &[3], GgmlType::F32).unwrap();
        w.add_tensor("b", &[32, 2], GgmlType::Q8_0).unwrap();
        w
    }

    #[test]
    fn layout_pads_each_tensor_and_the_header() {
        let w = small();
        let l = w.layout().unwrap();
        assert_eq!(l.data_offset % 32, 0);
        assert!(l.data_offset >= l.header_len && l.data_offset - l.header_len < 32);
        assert_eq!(l.tensors[0].offset, 0);
        assert_eq!(l.tensors[0].n_bytes, 12);
        assert_eq!(l.tensors[1].offset, 32);
        assert_eq!(l.tensors[1].n_bytes, 68);
        assert_eq!(l.file_len, l.data_offset + 32 + 96);
        let bytes = w.write_to_vec(&[vec![1u8; 12], vec![2u8; 68]]).unwrap();
        assert_eq!(bytes.len() as u64, l.file_len);
        let f = GgufFile::from_bytes(bytes).unwrap();
        assert_eq!(f.tensor_bytes("a").unwrap(), &[1u8; 12]);
        assert_eq!(f.tensor_bytes("b").unwrap(), &[2u8; 68]);
        assert_eq!(f.get_str("general.architecture").unwrap(), Some("llama"));
    }

    #[test]
    fn wrong_data_lengths_are_refused() {
        let w = small();
        let e = w.write_to_vec(&[vec![0u8; 11], vec![0u8; 68]]).unwrap_err();
        assert!(matches!(e, GgufWriteError::WrongDataLength { ref tensor, expected: 12, written: 11 } if tensor == "a"));
        let e = w.write_to_vec(&[vec![0u8; 12], vec![0u8; 69]]).unwrap_err();
        assert!(matches!(e, GgufWriteError::WrongDataLength { ref tensor, expected: 68, written: 69 } if tensor == "b"));
        let e = w.write_to_vec(&[vec![0u8; 12]]).unwrap_err();
        assert!(matches!(e, GgufWriteError::DataCount { expected: 2, found: 1 }), "{e}");
        // A callback that writes nothing for a tensor is caught too.
        let e = w.write(&mut Vec::new(), |_, _| Ok(())).unwrap_err();
        assert!(matches!(e, GgufWriteError::WrongDataLength { ref tensor, written: 0, .. } if tensor == "a"), "{e}");
    }

    #[test]
    fn invalid_declarations_are_refused_up_front() {
        let mut w = small();
        assert!(matches!(w.add_meta("llama.block_count", 3u32), Err(GgufWriteError::DuplicateKey { .. })));
        assert!(matches!(w.add_meta("", 3u32), Err(GgufWriteError::EmptyKey)));
        assert!(matches!(w.set_alignment(0), Err(GgufWriteError::BadAlignment { alignment: 0 })));
        assert!(matches!(w.set_alignment(48), Err(GgufWriteError::BadAlignment { alignment: 48 })));
        assert!(matches!(w.set_meta(ALIGNMENT_KEY, 64u64), Err(GgufWriteError::AlignmentType { found: "u64" })));
        assert!(matches!(w.add_tensor("a", &[1], GgmlType::F32), Err(GgufWriteError::DuplicateTensor { .. })));
        assert!(matches!(w.add_tensor("c", &[1; 5], GgmlType::F32), Err(GgufWriteError::TooManyDims { n_dims: 5, .. })));
        assert!(matches!(w.add_tensor("c", &[33], GgmlType::Q4_0), Err(GgufWriteError::PartialBlock { ne0: 33, .. })));
        assert!(matches!(w.add_tensor("c", &[1 << 32, 1 << 32], GgmlType::F32), Err(GgufWriteError::DimOverflow { .. })));
        assert!(matches!(w.add_tensor("c", &[0, u64::MAX], GgmlType::F32), Err(GgufWriteError::DimOverflow { .. })));
        let mut deep = MetaArray::U8(vec![1]);
        for _ in 0..MAX_ARRAY_DEPTH {
            deep = MetaArray::Array(vec![deep]);
        }
        assert!(matches!(w.add_meta("deep", deep), Err(GgufWriteError::NestingTooDeep { .. })));
        // Failed additions changed nothing.
        assert_eq!(w.metadata().len(), 2);
        assert_eq!(w.n_tensors(), 2);
        assert_eq!(w.alignment(), 32);
    }

    #[test]
    fn alignment_is_honoured_and_set_meta_replaces_in_place() {
        let mut w = small();
        w.set_alignment(64).unwrap();
        w.set_meta("general.architecture", "qwen2").unwrap();
        assert_eq!(w.metadata()[0].0, "general.architecture");
        let l = w.layout().unwrap();
        assert_eq!(l.data_offset % 64, 0);
        assert_eq!(l.tensors[1].offset, 64);
        let f = GgufFile::from_bytes(w.write_to_vec(&[vec![0u8; 12], vec![0u8; 68]]).unwrap()).unwrap();
        assert_eq!(f.alignment(), 64);
        assert_eq!(f.data_offset(), l.data_offset);
        assert_eq!(f.get_str("general.architecture").unwrap(), Some("qwen2"));
        assert_eq!(w.remove_meta(ALIGNMENT_KEY), Some(MetaValue::U32(64)));
        assert_eq!(w.alignment(), 32);
        assert_eq!(w.remove_meta("general.architecture"), Some(MetaValue::String("qwen2".into())));
        assert_eq!(w.metadata().len(), 1);
        w.add_meta("general.architecture", "x").unwrap();
        assert_eq!(w.metadata()[1].0, "general.architecture");
    }

    #[test]
    fn write_to_path_is_atomic() {
        let dir = std::env::temp_dir().join(format!("hearth-gguf-writer-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("out.gguf");
        let w = small();
        // Interrupted mid-stream: the final name never appears.
        let e = w
            .write_to_path(&path, |info, sink| {
                assert!(!path.exists(), "final file visible while writing");
                if info.name == "b" {
                    sink.write_all(&[0u8; 10])?;
                    return Err(io::Error::other("disk on fire"));
                }
                sink.write_all(&vec![0u8; info.n_bytes as usize])
            })
            .unwrap_err();
        assert!(matches!(e, GgufWriteError::IoAt { .. }), "{e}");
        assert!(!path.exists());
        assert_eq!(std::fs::read_dir(&dir).unwrap().count(), 0, "temporary file left behind");

        let n = w.write_to_path_with_data(&path, &[vec![7u8; 12], vec![9u8; 68]]).unwrap();
        assert_eq!(std::fs::metadata(&path).unwrap().len(), n);
        let f = GgufFile::open(&path).unwrap();
        assert_eq!(f.tensor_bytes("b").unwrap(), &[9u8; 68]);
        assert_eq!(std::fs::read_dir(&dir).unwrap().count(), 1);
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
