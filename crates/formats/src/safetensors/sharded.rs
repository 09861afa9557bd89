//! Sharded Hugging Face checkpoints: `model.safetensors.index.json` with a
//! `weight_map` of tensor name → shard file, and the shards beside it.
//!
//! Every shard named in the map is opened (each once) and fully validated;
//! the result is one lookup over all of them. Checks, each a
//! [`ShardedError`] naming the entry:
//! - the index is at most [`MAX_HEADER_LEN`] bytes of JSON, with no
//!   duplicate keys, and has a `weight_map` object of strings;
//! - a shard name is a plain relative path inside the folder: no `..`
//!   component, no absolute path or drive prefix, no empty name (checked
//!   lexically for both `/` and `\` separators, before anything is opened);
//! - a shard is not a pickle checkpoint ([`check_weight_file`]), exists,
//!   and parses;
//! - each mapped tensor is in the shard the map names, and no tensor appears
//!   in two shards.
//!
//! Deliberately absent: resolving symlinks to confine shards to the folder
//! (the Hugging Face cache stores every shard as a symlink into a `blobs`
//! folder outside the snapshot folder, so a lexical check is the useful
//! one); checking `metadata.total_size` (informational, and computed
//! inconsistently by different tools); tensors present in a shard but absent
//! from the map are still served.

use super::{SafetensorInfo, SafetensorsError, SafetensorsFile, MAX_HEADER_LEN};
use crate::json::{self, Json};
use crate::weights::{check_weight_file, WeightFileError};
use std::collections::HashMap;
use std::path::{Component, Path, PathBuf};

/// The index file name the Hugging Face libraries write.
pub const INDEX_FILE: &str = "model.safetensors.index.json";
/// The single-file checkpoint name.
pub const SINGLE_FILE: &str = "model.safetensors";

#[derive(Debug, thiserror::Error)]
pub enum ShardedError {
    #[error("cannot read {path}: {source}")]
    Io { path: PathBuf, source: std::io::Error },
    #[error("{path} is {len} bytes; an index larger than {MAX_HEADER_LEN} bytes is refused")]
    IndexTooLarge { path: PathBuf, len: u64 },
    #[error("{path} is not valid UTF-8 (byte {offset})")]
    IndexNotUtf8 { path: PathBuf, offset: usize },
    #[error("{path} is not valid JSON at line {line}, column {column}: {message}")]
    IndexJson { path: PathBuf, line: usize, column: usize, message: String },
    #[error("{path}: {what}")]
    IndexShape { path: PathBuf, what: String },
    #[error("{path}: key {key:?} appears twice in {within}")]
    DuplicateIndexKey { path: PathBuf, within: &'static str, key: String },
    #[error("weight_map entry {tensor:?} names shard {shard:?}, which is not a plain relative path inside the model folder")]
    UnsafeShardPath { tensor: String, shard: String },
    #[error("weight_map entry {tensor:?} names shard {shard:?}, but {path} does not exist")]
    MissingShard { tensor: String, shard: String, path: PathBuf },
    #[error(transparent)]
    Refused(#[from] WeightFileError),
    #[error("shard {shard:?}: {source}")]
    Shard { shard: String, source: SafetensorsError },
    #[error("weight_map puts {tensor:?} in shard {shard:?}, which does not contain it")]
    TensorNotInShard { tensor: String, shard: String },
    #[error("tensor {tensor:?} appears in both {first:?} and {second:?}")]
    TensorInTwoShards { tensor: String, first: String, second: String },
    #[error("{dir} holds neither {INDEX_FILE} nor {SINGLE_FILE}")]
    NoWeights { dir: PathBuf },
}

/// A (possibly sharded) safetensors checkpoint with one tensor lookup.
#[derive(Debug)]
pub struct SafetensorsModel {
    /// (shard name as written in the index, parsed file), in first-mention order.
    shards: Vec<(String, SafetensorsFile)>,
    /// Tensor name → (shard index, tensor index within the shard).
    index: HashMap<String, (usize, usize)>,
}

/// One tensor and the file holding it.
#[derive(Clone, Copy, Debug)]
pub struct TensorRef<'a> {
    pub shard: &'a str,
    pub file: &'a SafetensorsFile,
    pub info: &'a SafetensorInfo,
}

impl<'a> TensorRef<'a> {
    pub fn data(&self) -> &'a [u8] {
        self.file.tensor_data(self.info)
    }
}

impl SafetensorsModel {
    /// Opens a checkpoint: a folder (with an index, else `model.safetensors`),
    /// an index `.json` file, or a single `.safetensors` file.
    pub fn open(path: impl AsRef<Path>) -> Result<SafetensorsModel, ShardedError> {
        let path = path.as_ref();
        if path.is_dir() {
            let index = path.join(INDEX_FILE);
            if index.is_file() {
                return SafetensorsModel::open_index(&index);
            }
            let single = path.join(SINGLE_FILE);
            if single.is_file() {
                return SafetensorsModel::open_single(&single);
            }
            return Err(ShardedError::NoWeights { dir: path.to_path_buf() });
        }
        if path.extension().is_some_and(|e| e.eq_ignore_ascii_case("json")) {
            return SafetensorsModel::open_index(path);
        }
        SafetensorsModel::open_single(path)
    }

    /// Opens one `.safetensors` file as a one-shard model.
    pub fn open_single(path: &Path) -> Result<SafetensorsModel, ShardedError> {
        check_weight_file(path)?;
        let name = path.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
        let file = SafetensorsFile::open(path).map_err(|source| ShardedError::Shard { shard: name.clone(), source })?;
        let index = file.tensors().iter().enumerate().map(|(i, t)| (t.name.clone(), (0, i))).collect();
        Ok(SafetensorsModel { shards: vec![(name, file)], index })
    }

    /// Opens `model.safetensors.index.json` (or any index of that shape) and
    /// every shard it names.
    pub fn open_index(index_path: &Path) -> Result<SafetensorsModel, ShardedError> {
        let io = |source| ShardedError::Io { path: index_path.to_path_buf(), source };
        let len = std::fs::metadata(index_path).map_err(io)?.len();
        if len > MAX_HEADER_LEN {
            return Err(ShardedError::IndexTooLarge { path: index_path.to_path_buf(), len });
        }
        let bytes = std::fs::read(index_path).map_err(io)?;
        let dir = match index_path.parent() {
            Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
            _ => PathBuf::from("."),
        };
        let weight_map = parse_index(index_path, &bytes)?;

        // Validate every name before opening anything.
        for (tensor, shard) in &weight_map {
            if !is_plain_relative(shard) {
                return Err(ShardedError::UnsafeShardPath { tensor: tensor.clone(), shard: shard.clone() });
            }
        }
        let mut shards: Vec<(String, SafetensorsFile)> = Vec::new();
        let mut shard_ids: HashMap<&str, usize> = HashMap::new();
        for (tensor, shard) in &weight_map {
            if shard_ids.contains_key(shard.as_str()) {
                continue;
            }
            let path = dir.join(shard);
            // Refuse pickles by name before checking existence, so a
            // `pytorch_model-00001-of-00002.bin` map gets the clear message.
            if let Some(ext) = crate::weights::pickle_extension(&path) {
                return Err(WeightFileError::PickleRefused {
                    path,
                    evidence: crate::weights::PickleEvidence::Extension(ext),
                }
                .into());
            }
            if !path.is_file() {
                return Err(ShardedError::MissingShard { tensor: tensor.clone(), shard: shard.clone(), path });
            }
            check_weight_file(&path)?;
            let file =
                SafetensorsFile::open(&path).map_err(|source| ShardedError::Shard { shard: shard.clone(), source })?;
            shard_ids.insert(shard.as_str(), shards.len());
            shards.push((shard.clone(), file));
        }

        let mut index: HashMap<String, (usize, usize)> = HashMap::new();
        for (s, (shard_name, file)) in shards.iter().enumerate() {
            for (i, t) in file.tensors().iter().enumerate() {
                if let Some(&(other, _)) = index.get(&t.name) {
                    return Err(ShardedError::TensorInTwoShards {
                        tensor: t.name.clone(),
                        first: shards[other].0.clone(),
                        second: shard_name.clone(),
                    });
                }
                index.insert(t.name.clone(), (s, i));
            }
        }
        for (tensor, shard) in &weight_map {
            let want = shard_ids.get(shard.as_str()).copied();
            match index.get(tensor) {
                Some(&(s, _)) if Some(s) == want => {}
                _ => return Err(ShardedError::TensorNotInShard { tensor: tensor.clone(), shard: shard.clone() }),
            }
        }
        Ok(SafetensorsModel { shards, index })
    }

    /// Looks a tensor up across all shards.
    pub fn tensor(&self, name: &str) -> Option<TensorRef<'_>> {
        let &(s, i) = self.index.get(name)?;
        let (shard, file) = &self.shards[s];
        Some(TensorRef { shard, file, info: &file.tensors()[i] })
    }

    /// The bytes of a tensor.
    pub fn tensor_bytes(&self, name: &str) -> Option<&[u8]> {
        self.tensor(name).map(|t| t.data())
    }

    /// Every tensor, shard by shard, in header order.
    pub fn tensors(&self) -> impl Iterator<Item = TensorRef<'_>> {
        self.shards
            .iter()
            .flat_map(|(shard, file)| file.tensors().iter().map(move |info| TensorRef { shard, file, info }))
    }

    pub fn n_tensors(&self) -> usize {
        self.index.len()
    }

    /// The opened shards: (name from the index, file).
    pub fn shards(&self) -> &[(String, SafetensorsFile)] {
        &self.shards
    }
}

/// Parses the index, returning the weight map in document order.
fn parse_index(path: &Path, bytes: &[u8]) -> Result<Vec<(String, String)>, ShardedError> {
    let shape = |what: &str| ShardedError::IndexShape { path: path.to_path_buf(), what: what.to_string() };
    let text = std::str::from_utf8(bytes)
        .map_err(|e| ShardedError::IndexNotUtf8 { path: path.to_path_buf(), offset: e.valid_up_to() })?;
    let root = json::parse(text).map_err(|e| ShardedError::IndexJson {
        path: path.to_path_buf(),
        line: e.line,
        column: e.column,
        message: e.message,
    })?;
    let Json::Obj(top) = root else {
        return Err(shape(&format!("the index is {}, expected an object", root.kind())));
    };
    if let Some(key) = json::first_duplicate(&top) {
        return Err(ShardedError::DuplicateIndexKey { path: path.to_path_buf(), within: "the index", key: key.into() });
    }
    let Some((_, map)) = top.into_iter().find(|(k, _)| k == "weight_map") else {
        return Err(shape("there is no \"weight_map\""));
    };
    let Json::Obj(entries) = map else {
        return Err(shape(&format!("\"weight_map\" is {}, expected an object", map.kind())));
    };
    if let Some(key) = json::first_duplicate(&entries) {
        return Err(ShardedError::DuplicateIndexKey { path: path.to_path_buf(), within: "weight_map", key: key.into() });
    }
    entries
        .into_iter()
        .map(|(tensor, v)| match v {
            Json::Str(shard) => Ok((tensor, shard)),
            other => Err(shape(&format!("weight_map entry {tensor:?} is {}, expected a file name", other.kind()))),
        })
        .collect()
}

/// A non-empty relative path made only of ordinary components, judged for
/// both separator conventions so a Windows-style `..\x` is caught on Unix.
fn is_plain_relative(name: &str) -> bool {
    if name.is_empty() || name.contains('\0') {
        return false;
    }
    let segments_ok = name.split(['/', '\\']).all(|seg| seg != ".." && !seg.contains(':'));
    let starts_rooted = name.starts_with('/') || name.starts_with('\\');
    let components_ok = Path::new(name).components().all(|c| matches!(c, Component::Normal(_) | Component::CurDir));
    segments_ok && !starts_rooted && components_ok && Path::new(name).file_name().is_some()
}

#[cfg(test)]
mod tests {
    use super::is_plain_relative;

    #[test]
    fn shard_paths_must_stay_inside_the_folder() {
        for ok in ["model-00001-of-00002.safetensors", "./a.safetensors", "sub/b.safetensors", "..a.safetensors"] {
            assert!(is_plain_relative(ok), "{ok}");
        }
        for bad in [
            "",
            "../x.safetensors",
            "sub/../../x.safetensors",
            "/etc/passwd",
            "\\\\server\\share\\x.safetensors",
            "..\\x.safetensors",
            "C:\\x.safetensors",
            "c:x.safetensors",
            "a\0.safetensors",
            "sub/..",
            ".",
        ] {
            assert!(!is_plain_relative(bad), "{bad:?}");
        }
    }
}
