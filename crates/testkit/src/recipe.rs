//! `testdata/models/<fixture>/recipe.json`: everything needed to rebuild a fixture
//! model bit for bit, and to check a quantized rebuild against llama.cpp's files.
//!
//! The recipe holds the non-tokenizer metadata (hyper-parameters) with their GGUF
//! types, the tensor list in file order with each tensor's initialisation, and per
//! quantization variant the ggml type and SHA-256 of every tensor's data as
//! llama.cpp's quantizer wrote it. Tokenizer metadata is not duplicated: it is copied
//! unchanged from the vocabulary GGUF the recipe names (and whose SHA-256 it records).
//!
//! Deliberately absent: writing GGUF files and quantizing (those belong to
//! hearth-formats and hearth-kernels; this crate only supplies the inputs and the
//! hashes to compare against).

use crate::prng;
use crate::{sha256_hex, TestkitError};
use hearth_formats::{GgmlType, GgufFile, MetaValue};
use serde::Deserialize;
use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};

/// The only PRNG a recipe may name (see [`crate::prng`]).
pub const PRNG_NAME: &str = "splitmix64-counter-v1";

/// A parsed recipe plus the repository root it was found in.
#[derive(Debug, Clone)]
pub struct Recipe {
    raw: RawRecipe,
    /// `<root>/testdata/models/<fixture>/recipe.json` -> `<root>`.
    repo_root: PathBuf,
    /// The directory holding recipe.json and the expected-*.json files.
    dir: PathBuf,
}

#[derive(Debug, Clone, Deserialize)]
struct RawRecipe {
    format: u32,
    fixture: String,
    description: String,
    architecture: String,
    vocab: String,
    vocab_sha256: String,
    tokenizer_keys: Vec<String>,
    prng: String,
    model_seed: u64,
    n_vocab: u64,
    hparams: Hparams,
    metadata: Vec<MetaEntry>,
    tensors: Vec<TensorSpec>,
    variants: BTreeMap<String, RawVariant>,
}

/// The architecture's shape, for tests that want it without parsing metadata.
#[derive(Debug, Clone, Deserialize)]
pub struct Hparams {
    pub n_embd: u32,
    pub n_layer: u32,
    pub n_head: u32,
    pub n_head_kv: u32,
    pub head_dim: u32,
    pub n_ff: u32,
    pub n_ctx: u32,
    pub rope_base: f64,
    pub rms_eps: f64,
    pub tied_embeddings: bool,
    pub qkv_bias: bool,
    pub qk_norm: bool,
}

/// One metadata key as the recipe spells it: GGUF value type name and JSON value.
#[derive(Debug, Clone, Deserialize)]
pub struct MetaEntry {
    pub key: String,
    #[serde(rename = "type")]
    pub ty: String,
    pub value: serde_json::Value,
}

/// How a tensor's F32 values are produced.
#[derive(Debug, Clone, PartialEq)]
pub enum Init {
    /// `prng::uniform_value(tensor_seed, i, scale, offset)` for every element.
    Uniform { scale: f32, offset: f32 },
    /// Literal values (e.g. Llama-3 `rope_freqs.weight`, computed, not random).
    Values(Vec<f32>),
}

#[derive(Debug, Clone, Deserialize)]
#[serde(untagged)]
enum RawInit {
    Uniform { scale: f64, offset: f64 },
    Values { values: Vec<f64> },
}

/// One tensor of the F32 model, in file order.
#[derive(Debug, Clone, Deserialize)]
pub struct TensorSpec {
    pub name: String,
    /// ggml order: `dims[0]` is the row length.
    pub dims: Vec<u64>,
    #[serde(rename = "init")]
    raw_init: RawInit,
    /// The first eight values the Python generator produced.
    pub first8: Vec<f64>,
    /// SHA-256 of the little-endian F32 bytes of the whole tensor.
    pub sha256_f32: String,
}

impl TensorSpec {
    pub fn n_elements(&self) -> Result<u64, TestkitError> {
        self.dims
            .iter()
            .try_fold(1u64, |acc, &d| acc.checked_mul(d))
            .ok_or_else(|| TestkitError::Format(format!("tensor {}: dims {:?} overflow", self.name, self.dims)))
    }

    pub fn init(&self) -> Init {
        // The generator stores every scale/offset/value as an exact float32 value, so
        // the f64 -> f32 conversion here is exact.
        match &self.raw_init {
            RawInit::Uniform { scale, offset } => Init::Uniform { scale: *scale as f32, offset: *offset as f32 },
            RawInit::Values { values } => Init::Values(values.iter().map(|&v| v as f32).collect()),
        }
    }

    /// Regenerates the tensor's F32 values.
    pub fn generate(&self, model_seed: u64) -> Result<Vec<f32>, TestkitError> {
        let n = usize::try_from(self.n_elements()?)
            .map_err(|_| TestkitError::Format(format!("tensor {} too large", self.name)))?;
        match self.init() {
            Init::Uniform { scale, offset } => {
                let mut out = vec![0.0f32; n];
                prng::fill_uniform(&mut out, prng::tensor_seed(model_seed, &self.name), scale, offset);
                Ok(out)
            }
            Init::Values(v) => {
                if v.len() != n {
                    return Err(TestkitError::Format(format!(
                        "tensor {}: {} literal values for {} elements",
                        self.name,
                        v.len(),
                        n
                    )));
                }
                Ok(v)
            }
        }
    }
}

#[derive(Debug, Clone, Deserialize)]
struct RawVariant {
    ftype: u32,
    file_size: u64,
    metadata: Vec<MetaEntry>,
    key_order: Vec<String>,
    tensors: Vec<RawVariantTensor>,
}

#[derive(Debug, Clone, Deserialize)]
struct RawVariantTensor {
    name: String,
    #[serde(rename = "type")]
    ty: String,
    dims: Vec<u64>,
    n_bytes: u64,
    sha256: String,
}

/// One tensor of a llama.cpp-produced variant file.
#[derive(Debug, Clone, PartialEq)]
pub struct VariantTensor {
    pub name: String,
    pub ty: GgmlType,
    pub dims: Vec<u64>,
    pub n_bytes: u64,
    /// SHA-256 (lower-case hex) of the tensor's data bytes in llama.cpp's file.
    pub sha256: String,
}

/// A quantization variant (F32, F16, Q8_0, Q4_0, Q4_K_M) as llama.cpp wrote it.
#[derive(Debug, Clone)]
pub struct Variant {
    pub name: String,
    /// llama.cpp `enum llama_ftype` value (`general.file_type`).
    pub ftype: u32,
    /// Size of llama.cpp's file, for information.
    pub file_size: u64,
    metadata: Vec<MetaEntry>,
    key_order: Vec<String>,
    tensors: Vec<VariantTensor>,
    index: HashMap<String, usize>,
}

/// A tensor whose bytes are not what llama.cpp wrote.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("tensor {name}: sha256 {got} ({got_len} bytes), llama.cpp wrote {want} ({want_len} bytes)")]
pub struct HashMismatch {
    pub name: String,
    pub got: String,
    pub got_len: u64,
    pub want: String,
    pub want_len: u64,
}

impl Variant {
    /// Every tensor with the type llama.cpp chose for it, in file order.
    pub fn tensor_types(&self) -> Vec<(&str, GgmlType)> {
        self.tensors.iter().map(|t| (t.name.as_str(), t.ty)).collect()
    }

    /// Every tensor record, in file order.
    pub fn tensors(&self) -> &[VariantTensor] {
        &self.tensors
    }

    pub fn tensor(&self, name: &str) -> Option<&VariantTensor> {
        self.index.get(name).map(|&i| &self.tensors[i])
    }

    /// Checks `bytes` (a tensor's data as Hearth produced it) against llama.cpp's hash.
    pub fn check_tensor(&self, name: &str, bytes: &[u8]) -> Result<(), TestkitError> {
        let t = self
            .tensor(name)
            .ok_or_else(|| TestkitError::Format(format!("variant {} has no tensor {name}", self.name)))?;
        let got = sha256_hex(bytes);
        if got != t.sha256 {
            return Err(TestkitError::Hash(HashMismatch {
                name: name.to_string(),
                got,
                got_len: bytes.len() as u64,
                want: t.sha256.clone(),
                want_len: t.n_bytes,
            }));
        }
        Ok(())
    }

    /// The non-tokenizer scalar metadata of llama.cpp's file (quantization adds
    /// `general.quantization_version` and rewrites `general.file_type`).
    pub fn metadata_entries(&self) -> &[MetaEntry] {
        &self.metadata
    }

    /// Every key of llama.cpp's file, in its order (tokenizer keys included).
    pub fn key_order(&self) -> &[String] {
        &self.key_order
    }
}

impl Recipe {
    /// Loads `path`, which must lie at `<repo>/testdata/models/<fixture>/recipe.json`
    /// (the vocabulary path inside it is relative to `<repo>`).
    pub fn load(path: impl AsRef<Path>) -> Result<Recipe, TestkitError> {
        let path = path.as_ref();
        let text = std::fs::read_to_string(path).map_err(|source| TestkitError::Io { path: path.to_path_buf(), source })?;
        let raw: RawRecipe =
            serde_json::from_str(&text).map_err(|source| TestkitError::Json { path: path.to_path_buf(), source })?;
        if raw.format != 1 {
            return Err(TestkitError::Format(format!("{}: recipe format {} (expected 1)", path.display(), raw.format)));
        }
        if raw.prng != PRNG_NAME {
            return Err(TestkitError::Format(format!("{}: unknown prng {:?}", path.display(), raw.prng)));
        }
        let repo_root = path
            .ancestors()
            .nth(4)
            .ok_or_else(|| TestkitError::Format(format!("{}: not inside <repo>/testdata/models/<fixture>/", path.display())))?
            .to_path_buf();
        // Resolve every variant's type names now so later calls cannot fail on them.
        for (name, v) in &raw.variants {
            for t in &v.tensors {
                if GgmlType::from_name(&t.ty).is_none() {
                    return Err(TestkitError::Format(format!("variant {name}: tensor {} has unknown type {}", t.name, t.ty)));
                }
            }
        }
        let dir = path.parent().map(Path::to_path_buf).unwrap_or_default();
        Ok(Recipe { raw, repo_root, dir })
    }

    /// Loads `testdata/models/<fixture>/recipe.json` of this repository.
    pub fn load_fixture(fixture: &str) -> Result<Recipe, TestkitError> {
        Recipe::load(crate::models_dir().join(fixture).join("recipe.json"))
    }

    pub fn fixture(&self) -> &str {
        &self.raw.fixture
    }
    pub fn description(&self) -> &str {
        &self.raw.description
    }
    pub fn architecture(&self) -> &str {
        &self.raw.architecture
    }
    pub fn model_seed(&self) -> u64 {
        self.raw.model_seed
    }
    pub fn n_vocab(&self) -> u64 {
        self.raw.n_vocab
    }
    pub fn hparams(&self) -> &Hparams {
        &self.raw.hparams
    }
    /// The tensors of the F32 model, in file order.
    pub fn tensors(&self) -> &[TensorSpec] {
        &self.raw.tensors
    }
    /// The directory of this recipe (where `expected-*.json` live).
    pub fn dir(&self) -> &Path {
        &self.dir
    }
    /// Absolute path of the vocabulary GGUF.
    pub fn vocab_path(&self) -> PathBuf {
        self.repo_root.join(&self.raw.vocab)
    }
    pub fn vocab_sha256(&self) -> &str {
        &self.raw.vocab_sha256
    }

    /// Opens the vocabulary GGUF and checks it is the file the fixtures were made with.
    pub fn open_vocab(&self) -> Result<GgufFile, TestkitError> {
        let vocab = GgufFile::open(self.vocab_path())?;
        let got = sha256_hex(vocab.bytes());
        if got != self.raw.vocab_sha256 {
            return Err(TestkitError::Format(format!(
                "{}: sha256 {got}, but the fixtures were generated from {}",
                self.vocab_path().display(),
                self.raw.vocab_sha256
            )));
        }
        Ok(vocab)
    }

    /// Every F32 tensor, regenerated lazily, in file order: `(name, dims, values)`.
    pub fn f32_tensors(&self) -> impl Iterator<Item = Result<(String, Vec<u64>, Vec<f32>), TestkitError>> + '_ {
        self.raw
            .tensors
            .iter()
            .map(move |t| t.generate(self.raw.model_seed).map(|v| (t.name.clone(), t.dims.clone(), v)))
    }

    /// The F32 model's metadata in file order: the recipe's hyper-parameters, then
    /// every `tokenizer.*` key of `vocab` unchanged (in the vocabulary file's order).
    pub fn metadata(&self, vocab: &GgufFile) -> Result<Vec<(String, MetaValue)>, TestkitError> {
        let mut out = Vec::with_capacity(self.raw.metadata.len() + self.raw.tokenizer_keys.len());
        for e in &self.raw.metadata {
            out.push((e.key.clone(), meta_value(e)?));
        }
        out.extend(self.tokenizer_metadata(vocab)?);
        Ok(out)
    }

    /// The metadata of llama.cpp's file for `variant`, in that file's key order.
    pub fn variant_metadata(&self, variant: &str, vocab: &GgufFile) -> Result<Vec<(String, MetaValue)>, TestkitError> {
        let v = self.variant(variant)?;
        let mut by_key: HashMap<String, MetaValue> = HashMap::new();
        for e in &v.metadata {
            by_key.insert(e.key.clone(), meta_value(e)?);
        }
        for (k, val) in self.tokenizer_metadata(vocab)? {
            by_key.insert(k, val);
        }
        v.key_order
            .iter()
            .map(|k| {
                by_key
                    .remove(k)
                    .map(|val| (k.clone(), val))
                    .ok_or_else(|| TestkitError::Format(format!("variant {variant}: no value for key {k}")))
            })
            .collect()
    }

    fn tokenizer_metadata(&self, vocab: &GgufFile) -> Result<Vec<(String, MetaValue)>, TestkitError> {
        let toks: Vec<(String, MetaValue)> =
            vocab.metadata().iter().filter(|(k, _)| k.starts_with("tokenizer.")).cloned().collect();
        let keys: Vec<&str> = toks.iter().map(|(k, _)| k.as_str()).collect();
        let want: Vec<&str> = self.raw.tokenizer_keys.iter().map(String::as_str).collect();
        if keys != want {
            return Err(TestkitError::Format(format!(
                "vocabulary tokenizer keys {keys:?} differ from the recipe's {want:?}"
            )));
        }
        Ok(toks)
    }

    /// Names of the recorded variants.
    pub fn variant_names(&self) -> impl Iterator<Item = &str> {
        self.raw.variants.keys().map(String::as_str)
    }

    /// A recorded variant: `F32`, `F16`, `Q8_0`, `Q4_0` or `Q4_K_M`.
    pub fn variant(&self, name: &str) -> Result<Variant, TestkitError> {
        let v = self
            .raw
            .variants
            .get(name)
            .ok_or_else(|| TestkitError::Format(format!("fixture {} has no variant {name}", self.raw.fixture)))?;
        let mut tensors = Vec::with_capacity(v.tensors.len());
        let mut index = HashMap::new();
        for t in &v.tensors {
            let ty = GgmlType::from_name(&t.ty)
                .ok_or_else(|| TestkitError::Format(format!("tensor {} has unknown type {}", t.name, t.ty)))?;
            index.insert(t.name.clone(), tensors.len());
            tensors.push(VariantTensor {
                name: t.name.clone(),
                ty,
                dims: t.dims.clone(),
                n_bytes: t.n_bytes,
                sha256: t.sha256.clone(),
            });
        }
        Ok(Variant {
            name: name.to_string(),
            ftype: v.ftype,
            file_size: v.file_size,
            metadata: v.metadata.clone(),
            key_order: v.key_order.clone(),
            tensors,
            index,
        })
    }

    /// `expected-<variant>.json` next to this recipe; [`crate::F32_KV_F32`] names the
    /// F32-KV-cache reference of the F32 variant.
    pub fn expected(&self, variant: &str) -> Result<crate::Expected, TestkitError> {
        crate::Expected::load(self.dir().join(format!("expected-{variant}.json")))
    }
}

/// Converts a recipe metadata entry into a GGUF value of the stated type.
pub fn meta_value(e: &MetaEntry) -> Result<MetaValue, TestkitError> {
    let bad = || TestkitError::Format(format!("metadata {}: value {} is not a valid {}", e.key, e.value, e.ty));
    let int = || e.value.as_i64().map(i128::from).or_else(|| e.value.as_u64().map(i128::from)).ok_or_else(bad);
    Ok(match e.ty.as_str() {
        "u8" => MetaValue::U8(u8::try_from(int()?).map_err(|_| bad())?),
        "i8" => MetaValue::I8(i8::try_from(int()?).map_err(|_| bad())?),
        "u16" => MetaValue::U16(u16::try_from(int()?).map_err(|_| bad())?),
        "i16" => MetaValue::I16(i16::try_from(int()?).map_err(|_| bad())?),
        "u32" => MetaValue::U32(u32::try_from(int()?).map_err(|_| bad())?),
        "i32" => MetaValue::I32(i32::try_from(int()?).map_err(|_| bad())?),
        "u64" => MetaValue::U64(u64::try_from(int()?).map_err(|_| bad())?),
        "i64" => MetaValue::I64(i64::try_from(int()?).map_err(|_| bad())?),
        // Stored as the exact float32 value, so this conversion is exact.
        "f32" => MetaValue::F32(e.value.as_f64().ok_or_else(bad)? as f32),
        "f64" => MetaValue::F64(e.value.as_f64().ok_or_else(bad)?),
        "bool" => MetaValue::Bool(e.value.as_bool().ok_or_else(bad)?),
        "string" => MetaValue::String(e.value.as_str().ok_or_else(bad)?.to_string()),
        _ => return Err(bad()),
    })
}
