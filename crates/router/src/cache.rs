//! An on-disk cache of embeddings keyed by the SHA-256 of the text, so that
//! training, cross-validation and scoring of the same data set embed each
//! text once (MMLU's 7,000 questions take tens of minutes on two busy cores).
//!
//! File layout (little-endian): magic `HRTEMB01`, `u32` dimension, the
//! 32-byte encoder fingerprint ([`crate::embedder_fingerprint`]), then
//! records of a 32-byte text hash and `dim` f32 values. A file made with
//! another encoder or dimension is refused, as is a truncated one: a cache
//! must never hand a router vectors of the wrong model.

use crate::{RouterError, Result};
use hearth_embed::Embedder;
use sha2::{Digest, Sha256};
use std::collections::HashMap;
use std::io::Write;
use std::path::{Path, PathBuf};

const MAGIC: &[u8; 8] = b"HRTEMB01";
const HEADER: usize = 8 + 4 + 32;

/// Embeddings by text hash, appended to its file as they are computed.
pub struct EmbedCache {
    path: PathBuf,
    dim: usize,
    fingerprint: [u8; 32],
    map: HashMap<[u8; 32], Vec<f32>>,
    pending: Vec<([u8; 32], Vec<f32>)>,
}

fn text_key(text: &str) -> [u8; 32] {
    Sha256::digest(text.as_bytes()).into()
}

fn unhex32(s: &str) -> Option<[u8; 32]> {
    if s.len() != 64 || !s.is_ascii() {
        return None;
    }
    let mut out = [0u8; 32];
    for (i, o) in out.iter_mut().enumerate() {
        *o = u8::from_str_radix(&s[2 * i..2 * i + 2], 16).ok()?;
    }
    Some(out)
}

impl EmbedCache {
    /// Opens `path` for an encoder of `dim` dimensions and fingerprint
    /// `fingerprint_hex`; a missing file starts an empty cache.
    pub fn open(path: &Path, dim: usize, fingerprint_hex: &str) -> Result<EmbedCache> {
        let err = |why: String| RouterError::Cache { path: path.to_path_buf(), why };
        let fingerprint = unhex32(fingerprint_hex).ok_or_else(|| err(format!("bad fingerprint {fingerprint_hex:?}")))?;
        let mut c = EmbedCache { path: path.to_path_buf(), dim, fingerprint, map: HashMap::new(), pending: Vec::new() };
        let bytes = match std::fs::read(path) {
            Ok(b) => b,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(c),
            Err(source) => return Err(RouterError::Io { path: path.to_path_buf(), source }),
        };
        if bytes.len() < HEADER || &bytes[..8] != MAGIC {
            return Err(err("not an embedding cache".into()));
        }
        let file_dim = u32::from_le_bytes([bytes[8], bytes[9], bytes[10], bytes[11]]) as usize;
        if file_dim != dim {
            return Err(err(format!("holds {file_dim}-d vectors, the encoder makes {dim}-d")));
        }
        if bytes[12..HEADER] != fingerprint {
            return Err(err("made with another encoder (fingerprint differs); delete it".into()));
        }
        let rec = 32 + 4 * dim;
        let body = &bytes[HEADER..];
        if body.len() % rec != 0 {
            return Err(err(format!("truncated: {} bytes after the header is not a whole number of {rec}-byte records", body.len())));
        }
        for r in body.chunks_exact(rec) {
            let mut key = [0u8; 32];
            key.copy_from_slice(&r[..32]);
            let v: Vec<f32> = r[32..].chunks_exact(4).map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]])).collect();
            if v.iter().any(|x| !x.is_finite()) {
                return Err(err("holds a non-finite value".into()));
            }
            c.map.insert(key, v);
        }
        Ok(c)
    }

    pub fn len(&self) -> usize {
        self.map.len()
    }

    pub fn is_empty(&self) -> bool {
        self.map.is_empty()
    }

    pub fn get(&self, text: &str) -> Option<&[f32]> {
        self.map.get(&text_key(text)).map(Vec::as_slice)
    }

    /// Adds a vector (kept in memory until [`EmbedCache::flush`]).
    pub fn insert(&mut self, text: &str, v: Vec<f32>) -> Result<()> {
        if v.len() != self.dim {
            return Err(RouterError::Cache { path: self.path.clone(), why: format!("a {}-d vector for a {}-d cache", v.len(), self.dim) });
        }
        let k = text_key(text);
        if !self.map.contains_key(&k) {
            self.pending.push((k, v.clone()));
            self.map.insert(k, v);
        }
        Ok(())
    }

    /// Embeddings of `texts`, computing (in batches of 64) and caching the
    /// missing ones, flushing after each batch.
    pub fn embed(&mut self, embedder: &Embedder, texts: &[&str]) -> Result<Vec<Vec<f32>>> {
        let mut missing: Vec<&str> = Vec::new();
        let mut seen = std::collections::HashSet::new();
        for t in texts {
            if self.get(t).is_none() && seen.insert(*t) {
                missing.push(t);
            }
        }
        for chunk in missing.chunks(64) {
            let vs = embedder.embed(chunk)?;
            for (t, v) in chunk.iter().zip(vs) {
                self.insert(t, v)?;
            }
            self.flush()?;
        }
        texts
            .iter()
            .map(|t| self.get(t).map(<[f32]>::to_vec).ok_or_else(|| RouterError::Cache { path: self.path.clone(), why: "lost a vector".into() }))
            .collect()
    }

    /// Appends pending records to the file (writing the header first when
    /// the file is new).
    pub fn flush(&mut self) -> Result<()> {
        if self.pending.is_empty() {
            return Ok(());
        }
        let io = |source| RouterError::Io { path: self.path.clone(), source };
        let exists = self.path.is_file();
        let mut f = std::fs::OpenOptions::new().create(true).append(true).open(&self.path).map_err(io)?;
        let mut buf = Vec::new();
        if !exists {
            buf.extend_from_slice(MAGIC);
            buf.extend_from_slice(&(self.dim as u32).to_le_bytes());
            buf.extend_from_slice(&self.fingerprint);
        }
        for (k, v) in self.pending.drain(..) {
            buf.extend_from_slice(&k);
            for x in v {
                buf.extend_from_slice(&x.to_le_bytes());
            }
        }
        f.write_all(&buf).map_err(io)?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_and_refusals() {
        let p = std::env::temp_dir().join(format!("hearth-router-cache-{}.bin", std::process::id()));
        let _ = std::fs::remove_file(&p);
        let fp = "cd".repeat(32);
        let mut c = EmbedCache::open(&p, 3, &fp).unwrap();
        assert!(c.is_empty());
        c.insert("hello", vec![1.0, 2.0, 3.0]).unwrap();
        c.insert("world", vec![-1.0, 0.5, 0.0]).unwrap();
        assert!(c.insert("bad", vec![1.0]).is_err());
        c.flush().unwrap();
        c.insert("again", vec![0.0, 0.0, 1.0]).unwrap();
        c.flush().unwrap();
        let c2 = EmbedCache::open(&p, 3, &fp).unwrap();
        assert_eq!(c2.len(), 3);
        assert_eq!(c2.get("world"), Some(&[-1.0f32, 0.5, 0.0][..]));
        assert_eq!(c2.get("nope"), None);
        assert!(matches!(EmbedCache::open(&p, 4, &fp), Err(RouterError::Cache { .. })));
        assert!(matches!(EmbedCache::open(&p, 3, &"ef".repeat(32)), Err(RouterError::Cache { .. })));
        let bytes = std::fs::read(&p).unwrap();
        std::fs::write(&p, &bytes[..bytes.len() - 3]).unwrap();
        assert!(matches!(EmbedCache::open(&p, 3, &fp), Err(RouterError::Cache { .. })));
        std::fs::write(&p, b"garbage").unwrap();
        assert!(matches!(EmbedCache::open(&p, 3, &fp), Err(RouterError::Cache { .. })));
        let _ = std::fs::remove_file(&p);
    }
}
