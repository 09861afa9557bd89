//! A minimal safetensors writer (checkpoints, LoRA adapters), and typed
//! readers of f32 tensors from files parsed by `hearth-formats`.
//!
//! Layout (huggingface/safetensors `docs`): an 8-byte little-endian header
//! length, a JSON object mapping each tensor name to `dtype`, `shape` and
//! `data_offsets` (plus optional `__metadata__` of string values), padded
//! with spaces to a multiple of 8 bytes, then the tensor bytes back to back.
//! Files are written atomically.
//!
//! Deliberately absent: dtypes other than F32 and F16 on write.

use crate::error::{io_at, DistillError, Result};
use hearth_formats::atomic::AtomicFile;
use hearth_formats::{Dtype, SafetensorsFile};
use serde_json::{json, Map, Value};
use std::io::Write;
use std::path::Path;

/// One tensor to write: f32 values stored as `dtype` (F32 or F16).
pub struct StTensor<'a> {
    pub name: String,
    pub shape: Vec<usize>,
    pub data: &'a [f32],
    pub dtype: Dtype,
}

/// Writes `tensors` (in the given order) and `metadata` to `path`.
pub fn write(path: &Path, tensors: &[StTensor<'_>], metadata: &[(String, String)]) -> Result<()> {
    let mut header = Map::new();
    if !metadata.is_empty() {
        let m: Map<String, Value> = metadata.iter().map(|(k, v)| (k.clone(), Value::String(v.clone()))).collect();
        header.insert("__metadata__".into(), Value::Object(m));
    }
    let mut offset = 0u64;
    for t in tensors {
        if t.shape.iter().product::<usize>() != t.data.len() {
            return Err(DistillError::Config(format!("tensor {}: shape {:?} does not match {} values", t.name, t.shape, t.data.len())));
        }
        let (name, width) = match t.dtype {
            Dtype::F32 => ("F32", 4),
            Dtype::F16 => ("F16", 2),
            other => return Err(DistillError::Config(format!("cannot write safetensors dtype {other:?}"))),
        };
        let len = (t.data.len() * width) as u64;
        if header.insert(t.name.clone(), json!({"dtype": name, "shape": t.shape, "data_offsets": [offset, offset + len]})).is_some() {
            return Err(DistillError::Config(format!("duplicate tensor name {}", t.name)));
        }
        offset += len;
    }
    let mut hb = serde_json::to_vec(&Value::Object(header)).map_err(|e| DistillError::Config(e.to_string()))?;
    while hb.len() % 8 != 0 {
        hb.push(b' ');
    }
    let mut f = AtomicFile::create(path).map_err(io_at(path))?;
    let mut w = || -> std::io::Result<()> {
        f.write_all(&(hb.len() as u64).to_le_bytes())?;
        f.write_all(&hb)?;
        let mut buf = Vec::new();
        for t in tensors {
            buf.clear();
            match t.dtype {
                Dtype::F16 => t.data.iter().for_each(|&v| buf.extend_from_slice(&half::f16::from_f32(v).to_le_bytes())),
                _ => t.data.iter().for_each(|&v| buf.extend_from_slice(&v.to_le_bytes())),
            }
            f.write_all(&buf)?;
        }
        Ok(())
    };
    w().map_err(io_at(path))?;
    f.commit().map_err(io_at(path))
}

/// A tensor of a parsed safetensors file as f32 (from F32, F16 or BF16),
/// with its row-major shape.
pub fn read_f32(file: &SafetensorsFile, name: &str) -> Option<(Vec<usize>, Vec<f32>)> {
    let info = file.tensor(name)?;
    let bytes = file.tensor_data(info);
    let shape: Vec<usize> = info.shape.iter().map(|&d| d as usize).collect();
    let vals: Vec<f32> = match info.dtype {
        Dtype::F32 => bytes.chunks_exact(4).map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]])).collect(),
        Dtype::F16 => bytes.chunks_exact(2).map(|c| half::f16::from_le_bytes([c[0], c[1]]).to_f32()).collect(),
        Dtype::BF16 => bytes.chunks_exact(2).map(|c| half::bf16::from_le_bytes([c[0], c[1]]).to_f32()).collect(),
        _ => return None,
    };
    Some((shape, vals))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips_through_the_formats_reader() {
        let dir = std::env::temp_dir().join(format!("hearth-distill-st-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("t.safetensors");
        let a = [1.0f32, -2.5, 3.25, 0.0, 5.0, 6.0];
        let b = [0.5f32, 1.5];
        write(
            &path,
            &[
                StTensor { name: "a".into(), shape: vec![2, 3], data: &a, dtype: Dtype::F32 },
                StTensor { name: "b".into(), shape: vec![2], data: &b, dtype: Dtype::F16 },
            ],
            &[("step".into(), "12".into())],
        )
        .unwrap();
        let f = SafetensorsFile::open(&path).unwrap();
        assert_eq!(f.get_metadata("step"), Some("12"));
        assert_eq!(read_f32(&f, "a"), Some((vec![2, 3], a.to_vec())));
        assert_eq!(read_f32(&f, "b"), Some((vec![2], b.to_vec())));
        assert!(read_f32(&f, "c").is_none());
        assert!(write(&path, &[StTensor { name: "x".into(), shape: vec![4], data: &b, dtype: Dtype::F32 }], &[]).is_err());
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
