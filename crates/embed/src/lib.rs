//! Sentence embeddings for Hearth's router: a small BERT encoder
//! (all-MiniLM-L6-v2 by default) run by `hearth-models`' own forward pass,
//! tokenized and pooled exactly as `sentence-transformers` does.
//!
//! ```no_run
//! let e = hearth_embed::Embedder::load(hearth_embed::find_model_dir(None)?)?;
//! let v = e.embed(&["How do I reset my password?"])?;
//! assert_eq!(v[0].len(), e.dim());
//! # Ok::<(), hearth_embed::EmbedError>(())
//! ```
//!
//! # What a model folder holds
//!
//! A Hugging Face / sentence-transformers folder: `config.json` (a `bert`
//! model), `model.safetensors` (or a sharded index; a llama.cpp `bert` GGUF
//! is accepted instead), `tokenizer.json`, and optionally `modules.json` with
//! its modules: `sentence_bert_config.json` (`max_seq_length`,
//! `do_lower_case`), `1_Pooling/config.json` (CLS / mean / max /
//! mean-sqrt-len / weighted-mean / last-token pooling, concatenated in
//! sentence-transformers' order) and `Normalize` (L2 normalisation; it needs
//! no folder). Without `modules.json` the embedding is the unnormalised mean,
//! sentence-transformers' default for a bare transformer. Pickle checkpoints
//! (`pytorch_model.bin`) are refused, never opened.
//!
//! # Where the model is looked for
//!
//! [`find_model_dir`]: an explicit directory (`--model DIR`) if given; else
//! `$HEARTH_MINILM` if set (and only it); else `models/all-MiniLM-L6-v2`
//! under the current directory, then `$XDG_DATA_HOME/hearth/models/
//! all-MiniLM-L6-v2` (`~/.local/share/...` when XDG_DATA_HOME is unset).
//! `scripts/fetch-minilm.sh` installs the model in the first of those.
//!
//! # Why the `tokenizers` crate
//!
//! Token ids must equal those of `transformers`, or the embeddings are of a
//! different input. A `tokenizer.json` is a pipeline of normalizers,
//! pre-tokenizers, a model (WordPiece, BPE, Unigram, WordLevel), a
//! post-processor and added tokens, each with options (Unicode category
//! tables for BERT's punctuation and CJK splitting, NFD accent stripping,
//! Oniguruma regexes for byte-level BPE). Reimplementing it would mean
//! chasing parity for every variant a model may ship; Hugging Face's Rust
//! crate *is* the implementation `transformers`' fast tokenizers call, so it
//! gives exact ids for any `tokenizer.json` by construction. It is used
//! without its hub client, progress bars or trainers, with the Oniguruma
//! regex backend the Python package uses. The one setting Hearth overrides
//! is the file's own truncation/padding (all-MiniLM's says 128, fixed
//! padding): sentence-transformers replaces them with truncation to
//! `max_seq_length` and no padding for a single text, and so does this
//! crate.
//!
//! # Batches
//!
//! [`Embedder::embed`] runs many texts through one forward pass as a ragged
//! batch (no padding work), in chunks of at most [`MAX_BATCH_TOKENS`]
//! tokens. An [`Embedder`] is `Send + Sync`; calls are serialised on its
//! thread pool.
//!
//! # Speed
//!
//! About 17–20 ms of one core's time for a 64-token query with f32 weights
//! (~16 ms with f16 panels, `EncoderOptions { quantize: Some(F16) }`, which
//! moves embeddings by < 5e-7 in cosine), ~8 ms for 16 tokens; two threads
//! split the work about 1.8x. On a machine whose cores are busy with other
//! work, two threads can be *slower* than one: every parallel section waits
//! for the second thread to be scheduled. `cargo bench -p hearth-embed`
//! measures both wall and CPU time.
//!
//! Deliberately absent: sentence-transformers `Dense`/`LayerNorm`/`Router`
//! modules, prompts, pair inputs (cross-encoders), any model download.

use hearth_formats::{check_weight_file, GgufFile, SafetensorsModel, ShardedError, WeightFileError};
use hearth_models::bert::{Bert, BertActivation, BertConfig, BertError, BertInput, BertOptions, BertScratch};
use hearth_models::ThreadPool;
use serde_json::Value;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

pub use hearth_models::bert::BertOptions as EncoderOptions;

/// Environment variable naming the model directory.
pub const ENV_MODEL_DIR: &str = "HEARTH_MINILM";
/// The default folder, relative to the working directory (or data dir).
pub const DEFAULT_MODEL_SUBDIR: &str = "models/all-MiniLM-L6-v2";
/// Upper bound on the tokens of one forward pass; larger inputs are chunked.
pub const MAX_BATCH_TOKENS: usize = 8192;

#[derive(Debug, thiserror::Error)]
pub enum EmbedError {
    #[error(
        "no embedding model found (looked in {tried}); run scripts/fetch-minilm.sh, set {ENV_MODEL_DIR} or pass --model DIR"
    )]
    ModelNotFound { tried: String },
    #[error("cannot read {path}: {source}")]
    Io { path: PathBuf, source: std::io::Error },
    #[error("{path}: invalid JSON: {source}")]
    Json { path: PathBuf, source: serde_json::Error },
    #[error("{path}: {key}: {why}")]
    Config { path: PathBuf, key: String, why: String },
    #[error("{path}: sentence-transformers module {module:?} is not supported (supported: Transformer, Pooling, Normalize)")]
    UnsupportedModule { path: PathBuf, module: String },
    #[error("{path}: no weights (model.safetensors, an index or a .gguf file)")]
    NoWeights { path: PathBuf },
    #[error("cannot load the tokenizer {path}: {message}")]
    Tokenizer { path: PathBuf, message: String },
    #[error("tokenization failed: {0}")]
    Tokenize(String),
    #[error(transparent)]
    Safetensors(#[from] ShardedError),
    #[error(transparent)]
    WeightFile(#[from] WeightFileError),
    #[error(transparent)]
    Gguf(#[from] hearth_formats::GgufError),
    #[error(transparent)]
    Model(#[from] BertError),
}

pub type Result<T> = std::result::Result<T, EmbedError>;

/// The candidate model directories, in search order (see the crate docs).
pub fn model_search_paths(explicit: Option<&Path>) -> Vec<PathBuf> {
    if let Some(p) = explicit {
        return vec![p.to_path_buf()];
    }
    if let Some(p) = std::env::var_os(ENV_MODEL_DIR).filter(|v| !v.is_empty()) {
        return vec![PathBuf::from(p)];
    }
    let mut v = vec![PathBuf::from(DEFAULT_MODEL_SUBDIR)];
    let data = std::env::var_os("XDG_DATA_HOME")
        .filter(|v| !v.is_empty())
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").filter(|v| !v.is_empty()).map(|h| PathBuf::from(h).join(".local/share")));
    if let Some(d) = data {
        v.push(d.join("hearth").join(DEFAULT_MODEL_SUBDIR));
    }
    v
}

/// The first search path holding a `config.json`.
pub fn find_model_dir(explicit: Option<&Path>) -> Result<PathBuf> {
    let paths = model_search_paths(explicit);
    for p in &paths {
        if p.join("config.json").is_file() {
            return Ok(p.clone());
        }
    }
    Err(EmbedError::ModelNotFound { tried: paths.iter().map(|p| p.display().to_string()).collect::<Vec<_>>().join(", ") })
}

/// One sentence-transformers pooling mode.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PoolMode {
    Cls,
    Max,
    Mean,
    MeanSqrtLen,
    WeightedMean,
    LastToken,
}

impl PoolMode {
    fn from_name(s: &str) -> Option<PoolMode> {
        Some(match s {
            "cls" => PoolMode::Cls,
            "max" => PoolMode::Max,
            "mean" => PoolMode::Mean,
            "mean_sqrt_len_tokens" => PoolMode::MeanSqrtLen,
            "weightedmean" => PoolMode::WeightedMean,
            "lasttoken" => PoolMode::LastToken,
            _ => return None,
        })
    }
}

/// Legacy boolean keys of `1_Pooling/config.json`, in the order
/// sentence-transformers concatenates the modes (`pooling.py`).
const LEGACY_POOL_KEYS: [(&str, PoolMode); 6] = [
    ("pooling_mode_cls_token", PoolMode::Cls),
    ("pooling_mode_max_tokens", PoolMode::Max),
    ("pooling_mode_mean_tokens", PoolMode::Mean),
    ("pooling_mode_mean_sqrt_len_tokens", PoolMode::MeanSqrtLen),
    ("pooling_mode_weightedmean_tokens", PoolMode::WeightedMean),
    ("pooling_mode_lasttoken", PoolMode::LastToken),
];

/// How token states become one vector.
#[derive(Clone, Debug, PartialEq)]
pub struct Pooling {
    pub modes: Vec<PoolMode>,
    pub normalize: bool,
}

/// Load-time settings.
#[derive(Clone, Debug, Default)]
pub struct EmbedderOptions {
    /// Threads of the embedder's pool; 0 = the number of cores.
    pub threads: usize,
    pub encoder: BertOptions,
    /// Overrides the folder's `max_seq_length` (capped at the model's positions).
    pub max_tokens: Option<usize>,
}

struct State {
    pool: ThreadPool,
    scratch: BertScratch,
    hidden: Vec<f32>,
}

/// A loaded sentence encoder.
pub struct Embedder {
    model: Bert,
    tokenizer: tokenizers::Tokenizer,
    untruncated: tokenizers::Tokenizer,
    lowercase: bool,
    pooling: Pooling,
    max_tokens: usize,
    state: Mutex<State>,
    dir: PathBuf,
}

impl std::fmt::Debug for Embedder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Embedder")
            .field("dir", &self.dir)
            .field("model", &self.model)
            .field("pooling", &self.pooling)
            .field("max_tokens", &self.max_tokens)
            .finish()
    }
}

fn read_json(path: &Path) -> Result<Value> {
    let bytes = std::fs::read(path).map_err(|source| EmbedError::Io { path: path.to_path_buf(), source })?;
    serde_json::from_slice(&bytes).map_err(|source| EmbedError::Json { path: path.to_path_buf(), source })
}

fn read_opt_json(path: &Path) -> Result<Option<Value>> {
    if path.is_file() {
        read_json(path).map(Some)
    } else {
        Ok(None)
    }
}

fn cfg_err(path: &Path, key: &str, why: impl Into<String>) -> EmbedError {
    EmbedError::Config { path: path.to_path_buf(), key: key.into(), why: why.into() }
}

fn get_usize(v: &Value, path: &Path, key: &str) -> Result<Option<usize>> {
    match v.get(key) {
        None | Some(Value::Null) => Ok(None),
        Some(x) => x
            .as_u64()
            .and_then(|n| usize::try_from(n).ok())
            .map(Some)
            .ok_or_else(|| cfg_err(path, key, format!("expected a non-negative integer, found {x}"))),
    }
}

fn req_usize(v: &Value, path: &Path, key: &str) -> Result<usize> {
    get_usize(v, path, key)?.ok_or_else(|| cfg_err(path, key, "missing"))
}

/// `config.json` of a Hugging Face `BertModel`.
pub fn bert_config_from_json(path: &Path) -> Result<BertConfig> {
    let v = read_json(path)?;
    if !v.is_object() {
        return Err(cfg_err(path, "(root)", "expected a JSON object"));
    }
    match v.get("model_type").and_then(Value::as_str) {
        Some("bert") => {}
        Some(other) => return Err(cfg_err(path, "model_type", format!("{other:?} is not supported (only \"bert\")"))),
        None => return Err(cfg_err(path, "model_type", "missing")),
    }
    if let Some(pe) = v.get("position_embedding_type").and_then(Value::as_str) {
        if pe != "absolute" {
            return Err(cfg_err(path, "position_embedding_type", format!("{pe:?} is not supported (only \"absolute\")")));
        }
    }
    let act_name = v.get("hidden_act").and_then(Value::as_str).unwrap_or("gelu");
    let activation = BertActivation::from_hf(act_name)
        .ok_or_else(|| cfg_err(path, "hidden_act", format!("{act_name:?} is not supported (gelu, gelu_new, relu)")))?;
    let norm_eps = match v.get("layer_norm_eps") {
        None => 1e-12,
        Some(x) => x.as_f64().ok_or_else(|| cfg_err(path, "layer_norm_eps", "expected a number"))? as f32,
    };
    Ok(BertConfig {
        n_vocab: req_usize(&v, path, "vocab_size")?,
        n_embd: req_usize(&v, path, "hidden_size")?,
        n_layer: req_usize(&v, path, "num_hidden_layers")?,
        n_head: req_usize(&v, path, "num_attention_heads")?,
        n_ff: req_usize(&v, path, "intermediate_size")?,
        n_pos: req_usize(&v, path, "max_position_embeddings")?,
        n_type: get_usize(&v, path, "type_vocab_size")?.unwrap_or(2),
        norm_eps,
        activation,
        gguf_pooling: None,
    })
}

/// Pooling from `1_Pooling/config.json`: either the legacy
/// `pooling_mode_*` booleans or the newer `pooling_mode` string/list.
pub fn pooling_from_json(path: &Path) -> Result<Vec<PoolMode>> {
    let v = read_json(path)?;
    let mut modes = Vec::new();
    match v.get("pooling_mode") {
        Some(Value::String(s)) => modes.push(PoolMode::from_name(s).ok_or_else(|| cfg_err(path, "pooling_mode", format!("unknown mode {s:?}")))?),
        Some(Value::Array(a)) => {
            for m in a {
                let s = m.as_str().ok_or_else(|| cfg_err(path, "pooling_mode", "expected strings"))?;
                modes.push(PoolMode::from_name(s).ok_or_else(|| cfg_err(path, "pooling_mode", format!("unknown mode {s:?}")))?);
            }
        }
        Some(other) => return Err(cfg_err(path, "pooling_mode", format!("expected a string or list, found {other}"))),
        None => {
            for (key, mode) in LEGACY_POOL_KEYS {
                match v.get(key) {
                    None | Some(Value::Bool(false)) => {}
                    Some(Value::Bool(true)) => modes.push(mode),
                    Some(other) => return Err(cfg_err(path, key, format!("expected true/false, found {other}"))),
                }
            }
        }
    }
    if modes.is_empty() {
        return Err(cfg_err(path, "pooling_mode", "no pooling mode is enabled"));
    }
    Ok(modes)
}

/// What `modules.json` and its module folders say.
struct StConfig {
    modes: Option<Vec<PoolMode>>,
    normalize: bool,
    max_seq_length: Option<usize>,
    lowercase: bool,
}

fn read_st_config(dir: &Path) -> Result<StConfig> {
    let mut c = StConfig { modes: None, normalize: false, max_seq_length: None, lowercase: false };
    let mpath = dir.join("modules.json");
    let Some(modules) = read_opt_json(&mpath)? else {
        // A bare transformer folder may still carry sentence_bert_config.json.
        read_sbert(&dir.join("sentence_bert_config.json"), &mut c)?;
        return Ok(c);
    };
    let list = modules.as_array().ok_or_else(|| cfg_err(&mpath, "(root)", "expected a list of modules"))?;
    for m in list {
        let ty = m.get("type").and_then(Value::as_str).ok_or_else(|| cfg_err(&mpath, "type", "missing"))?;
        let sub = m.get("path").and_then(Value::as_str).unwrap_or("");
        // Module folders are named by the file; keep them inside `dir`.
        if Path::new(sub).components().any(|c| !matches!(c, std::path::Component::Normal(_))) {
            return Err(cfg_err(&mpath, "path", format!("{sub:?} leaves the model folder")));
        }
        let mdir = dir.join(sub);
        match ty.rsplit('.').next().unwrap_or(ty) {
            "Transformer" => read_sbert(&mdir.join("sentence_bert_config.json"), &mut c)?,
            "Pooling" => c.modes = Some(pooling_from_json(&mdir.join("config.json"))?),
            "Normalize" => c.normalize = true,
            _ => return Err(EmbedError::UnsupportedModule { path: mpath.clone(), module: ty.to_string() }),
        }
    }
    Ok(c)
}

fn read_sbert(path: &Path, c: &mut StConfig) -> Result<()> {
    if let Some(v) = read_opt_json(path)? {
        c.max_seq_length = get_usize(&v, path, "max_seq_length")?;
        c.lowercase = match v.get("do_lower_case") {
            None | Some(Value::Null) => false,
            Some(Value::Bool(b)) => *b,
            Some(other) => return Err(cfg_err(path, "do_lower_case", format!("expected true/false, found {other}"))),
        };
    }
    Ok(())
}

fn tokenizer_with(path: &Path, max_len: Option<usize>) -> Result<tokenizers::Tokenizer> {
    let err = |e: &dyn std::fmt::Display| EmbedError::Tokenizer { path: path.to_path_buf(), message: e.to_string() };
    let mut t = tokenizers::Tokenizer::from_file(path).map_err(|e| err(&e))?;
    t.with_padding(None);
    let trunc = max_len.map(|max_length| tokenizers::TruncationParams {
        max_length,
        strategy: tokenizers::TruncationStrategy::LongestFirst,
        stride: 0,
        direction: tokenizers::TruncationDirection::Right,
    });
    t.with_truncation(trunc).map_err(|e| err(&e))?;
    Ok(t)
}

impl Embedder {
    /// Loads a model folder with default options (all cores).
    pub fn load(dir: impl AsRef<Path>) -> Result<Embedder> {
        Embedder::load_with(dir, &EmbedderOptions::default())
    }

    pub fn load_with(dir: impl AsRef<Path>, opts: &EmbedderOptions) -> Result<Embedder> {
        let dir = dir.as_ref();
        let cfg_path = dir.join("config.json");
        if !cfg_path.is_file() {
            return Err(EmbedError::ModelNotFound { tried: dir.display().to_string() });
        }
        let st = read_st_config(dir)?;
        let model = load_weights(dir, &cfg_path, &opts.encoder)?;
        let n_pos = model.cfg.n_pos;
        let mut max_tokens = match (opts.max_tokens, st.max_seq_length) {
            (Some(m), _) | (None, Some(m)) => m,
            (None, None) => {
                // transformers' model_max_length, when the folder states a sane one.
                let tc = read_opt_json(&dir.join("tokenizer_config.json"))?;
                tc.and_then(|v| v.get("model_max_length").and_then(Value::as_u64)).map_or(n_pos, |m| (m as usize).min(n_pos))
            }
        };
        max_tokens = max_tokens.min(n_pos);
        if max_tokens < 2 {
            return Err(cfg_err(dir, "max_seq_length", format!("{max_tokens} leaves no room for text")));
        }
        let tpath = dir.join("tokenizer.json");
        if !tpath.is_file() {
            return Err(EmbedError::Tokenizer { path: tpath, message: "file not found".into() });
        }
        let tokenizer = tokenizer_with(&tpath, Some(max_tokens))?;
        let untruncated = tokenizer_with(&tpath, None)?;
        let modes = match st.modes {
            Some(m) => m,
            None => match model.cfg.gguf_pooling {
                Some(2) => vec![PoolMode::Cls],
                Some(3) => vec![PoolMode::LastToken],
                _ => vec![PoolMode::Mean],
            },
        };
        let pool = ThreadPool::new(opts.threads);
        Ok(Embedder {
            model,
            tokenizer,
            untruncated,
            lowercase: st.lowercase,
            pooling: Pooling { modes, normalize: st.normalize },
            max_tokens,
            state: Mutex::new(State { pool, scratch: BertScratch::default(), hidden: Vec::new() }),
            dir: dir.to_path_buf(),
        })
    }

    /// Length of the embeddings.
    pub fn dim(&self) -> usize {
        self.model.n_embd() * self.pooling.modes.len()
    }

    /// Tokens the model sees at most per text, special tokens included.
    pub fn max_tokens(&self) -> usize {
        self.max_tokens
    }

    pub fn pooling(&self) -> &Pooling {
        &self.pooling
    }

    pub fn model_dir(&self) -> &Path {
        &self.dir
    }

    pub fn threads(&self) -> usize {
        self.state.lock().map(|s| s.pool.n_threads()).unwrap_or(1)
    }

    fn prepare<'t>(&self, text: &'t str) -> std::borrow::Cow<'t, str> {
        if self.lowercase {
            std::borrow::Cow::Owned(text.to_lowercase())
        } else {
            std::borrow::Cow::Borrowed(text)
        }
    }

    /// The token ids the model sees for `text` (special tokens added,
    /// truncated to [`Embedder::max_tokens`]).
    pub fn tokenize(&self, text: &str) -> Result<Vec<u32>> {
        let enc = self.tokenizer.encode(self.prepare(text).as_ref(), true).map_err(|e| EmbedError::Tokenize(e.to_string()))?;
        Ok(enc.get_ids().to_vec())
    }

    /// How many tokens `text` has, special tokens included, before
    /// truncation (more than [`Embedder::max_tokens`] means the tail is cut).
    pub fn count_tokens(&self, text: &str) -> Result<usize> {
        let enc = self.untruncated.encode(self.prepare(text).as_ref(), true).map_err(|e| EmbedError::Tokenize(e.to_string()))?;
        Ok(enc.len())
    }

    /// Embeds each text.
    pub fn embed(&self, texts: &[&str]) -> Result<Vec<Vec<f32>>> {
        let mut encs = Vec::with_capacity(texts.len());
        for t in texts {
            let enc = self.tokenizer.encode(self.prepare(t).as_ref(), true).map_err(|e| EmbedError::Tokenize(e.to_string()))?;
            encs.push((enc.get_ids().to_vec(), enc.get_type_ids().to_vec()));
        }
        let refs: Vec<(&[u32], Option<&[u32]>)> = encs.iter().map(|(i, t)| (i.as_slice(), Some(t.as_slice()))).collect();
        self.embed_encoded(&refs)
    }

    /// Embeds one text.
    pub fn embed_one(&self, text: &str) -> Result<Vec<f32>> {
        Ok(self.embed(&[text])?.pop().unwrap_or_default())
    }

    /// Embeds already-tokenized inputs (ids as [`Embedder::tokenize`] gives
    /// them; at most the model's positions each).
    pub fn embed_ids(&self, ids: &[&[u32]]) -> Result<Vec<Vec<f32>>> {
        let refs: Vec<(&[u32], Option<&[u32]>)> = ids.iter().map(|i| (*i, None)).collect();
        self.embed_encoded(&refs)
    }

    fn embed_encoded(&self, seqs: &[(&[u32], Option<&[u32]>)]) -> Result<Vec<Vec<f32>>> {
        let mut out = Vec::with_capacity(seqs.len());
        let mut guard = self.state.lock().unwrap_or_else(|e| e.into_inner());
        let st = &mut *guard;
        let e = self.model.n_embd();
        let mut start = 0;
        while start < seqs.len() {
            // Take texts until the token budget is reached (at least one).
            let mut end = start;
            let mut tokens = 0;
            while end < seqs.len() && (end == start || tokens + seqs[end].0.len() <= MAX_BATCH_TOKENS) {
                tokens += seqs[end].0.len();
                end += 1;
            }
            let inputs: Vec<BertInput> =
                seqs[start..end].iter().map(|(ids, tt)| BertInput { ids, type_ids: *tt, mask: None }).collect();
            self.model.forward(&inputs, &st.pool, &mut st.scratch, &mut st.hidden)?;
            let mut row = 0;
            for inp in &inputs {
                let n = inp.ids.len();
                out.push(pool_tokens(&st.hidden[row * e..(row + n) * e], e, &self.pooling));
                row += n;
            }
            start = end;
        }
        Ok(out)
    }
}

/// Pools `n` token states (rows of `e`), then L2-normalises if asked
/// (`torch.nn.functional.normalize`, eps 1e-12). An empty sequence pools to
/// zeros.
pub fn pool_tokens(h: &[f32], e: usize, p: &Pooling) -> Vec<f32> {
    let n = h.len() / e.max(1);
    let mut v = Vec::with_capacity(e * p.modes.len());
    for &mode in &p.modes {
        let start = v.len();
        v.resize(start + e, 0.0);
        let dst = &mut v[start..];
        if n == 0 {
            continue;
        }
        match mode {
            PoolMode::Cls => dst.copy_from_slice(&h[..e]),
            PoolMode::LastToken => dst.copy_from_slice(&h[(n - 1) * e..n * e]),
            PoolMode::Max => {
                dst.copy_from_slice(&h[..e]);
                for r in h.chunks_exact(e).skip(1) {
                    for (d, &x) in dst.iter_mut().zip(r) {
                        *d = d.max(x);
                    }
                }
            }
            PoolMode::Mean | PoolMode::MeanSqrtLen | PoolMode::WeightedMean => {
                let mut wsum = 0f32;
                for (i, r) in h.chunks_exact(e).enumerate() {
                    let w = if mode == PoolMode::WeightedMean { (i + 1) as f32 } else { 1.0 };
                    wsum += w;
                    for (d, &x) in dst.iter_mut().zip(r) {
                        *d += w * x;
                    }
                }
                let denom = if mode == PoolMode::MeanSqrtLen { wsum.sqrt() } else { wsum };
                dst.iter_mut().for_each(|d| *d /= denom);
            }
        }
    }
    if p.normalize {
        let norm = v.iter().map(|x| x * x).sum::<f32>().sqrt().max(1e-12);
        v.iter_mut().for_each(|x| *x /= norm);
    }
    v
}

/// Weights: safetensors (single or sharded) if present, else one `.gguf`.
/// A folder holding only pickle checkpoints gets the pickle refusal.
fn load_weights(dir: &Path, cfg_path: &Path, opts: &BertOptions) -> Result<Bert> {
    if dir.join("model.safetensors").is_file() || dir.join("model.safetensors.index.json").is_file() {
        let cfg = bert_config_from_json(cfg_path)?;
        let st = SafetensorsModel::open(dir)?;
        return Ok(Bert::from_safetensors(cfg, &st, opts)?);
    }
    let mut ggufs = Vec::new();
    let mut pickles = Vec::new();
    let rd = std::fs::read_dir(dir).map_err(|source| EmbedError::Io { path: dir.to_path_buf(), source })?;
    for ent in rd.flatten() {
        let p = ent.path();
        match p.extension().and_then(|e| e.to_str()).map(str::to_ascii_lowercase).as_deref() {
            Some("gguf") => ggufs.push(p),
            Some("bin" | "pt" | "pth" | "ckpt" | "pkl" | "pickle") => pickles.push(p),
            _ => {}
        }
    }
    ggufs.sort();
    if let Some(g) = ggufs.first() {
        if ggufs.len() > 1 {
            return Err(cfg_err(dir, "weights", format!("{} .gguf files; keep one", ggufs.len())));
        }
        check_weight_file(g)?;
        let file = Arc::new(GgufFile::open(g)?);
        return Ok(Bert::from_gguf(file, opts)?);
    }
    if let Some(p) = pickles.first() {
        check_weight_file(p)?;
    }
    Err(EmbedError::NoWeights { path: dir.to_path_buf() })
}

/// Cosine similarity (0 when either vector is zero).
pub fn cosine(a: &[f32], b: &[f32]) -> f32 {
    let (mut ab, mut aa, mut bb) = (0f64, 0f64, 0f64);
    for (&x, &y) in a.iter().zip(b) {
        ab += x as f64 * y as f64;
        aa += x as f64 * x as f64;
        bb += y as f64 * y as f64;
    }
    if aa == 0.0 || bb == 0.0 {
        0.0
    } else {
        (ab / (aa.sqrt() * bb.sqrt())) as f32
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tmpdir(name: &str) -> PathBuf {
        let d = std::env::temp_dir().join(format!("hearth-embed-{}-{name}", std::process::id()));
        let _ = std::fs::remove_dir_all(&d);
        std::fs::create_dir_all(&d).unwrap();
        d
    }

    #[test]
    fn pooling_modes_follow_sentence_transformers() {
        let h = [1.0, 2.0, 3.0, -4.0, 5.0, 0.0];
        let p = |modes: Vec<PoolMode>| pool_tokens(&h, 2, &Pooling { modes, normalize: false });
        assert_eq!(p(vec![PoolMode::Cls]), vec![1.0, 2.0]);
        assert_eq!(p(vec![PoolMode::LastToken]), vec![5.0, 0.0]);
        assert_eq!(p(vec![PoolMode::Max]), vec![5.0, 2.0]);
        assert_eq!(p(vec![PoolMode::Mean]), vec![3.0, -2.0 / 3.0]);
        let s = p(vec![PoolMode::MeanSqrtLen]);
        assert!((s[0] - 9.0 / 3f32.sqrt()).abs() < 1e-6);
        // Weights 1, 2, 3: (1 + 6 + 15) / 6.
        assert!((p(vec![PoolMode::WeightedMean])[0] - 22.0 / 6.0).abs() < 1e-6);
        assert_eq!(p(vec![PoolMode::Cls, PoolMode::Max]), vec![1.0, 2.0, 5.0, 2.0]);
        let n = pool_tokens(&h, 2, &Pooling { modes: vec![PoolMode::Cls], normalize: true });
        assert!((n[0] - 1.0 / 5f32.sqrt()).abs() < 1e-6 && (n[1] - 2.0 / 5f32.sqrt()).abs() < 1e-6);
        assert_eq!(pool_tokens(&[], 2, &Pooling { modes: vec![PoolMode::Mean], normalize: true }), vec![0.0, 0.0]);
    }

    #[test]
    fn pooling_configs_in_both_formats() {
        let d = tmpdir("pool");
        let f = d.join("config.json");
        std::fs::write(&f, r#"{"word_embedding_dimension": 4, "pooling_mode_cls_token": false, "pooling_mode_mean_tokens": true, "pooling_mode_max_tokens": true}"#).unwrap();
        assert_eq!(pooling_from_json(&f).unwrap(), vec![PoolMode::Max, PoolMode::Mean]);
        std::fs::write(&f, r#"{"pooling_mode": "cls"}"#).unwrap();
        assert_eq!(pooling_from_json(&f).unwrap(), vec![PoolMode::Cls]);
        std::fs::write(&f, r#"{"pooling_mode": ["lasttoken", "mean"]}"#).unwrap();
        assert_eq!(pooling_from_json(&f).unwrap(), vec![PoolMode::LastToken, PoolMode::Mean]);
        std::fs::write(&f, r#"{"pooling_mode": "median"}"#).unwrap();
        assert!(matches!(pooling_from_json(&f), Err(EmbedError::Config { .. })));
        std::fs::write(&f, r#"{"pooling_mode_mean_tokens": false}"#).unwrap();
        assert!(matches!(pooling_from_json(&f), Err(EmbedError::Config { .. })));
        std::fs::write(&f, "{not json").unwrap();
        assert!(matches!(pooling_from_json(&f), Err(EmbedError::Json { .. })));
        let _ = std::fs::remove_dir_all(&d);
    }

    #[test]
    fn bert_config_is_validated() {
        let d = tmpdir("cfg");
        let f = d.join("config.json");
        let good = r#"{"model_type": "bert", "vocab_size": 10, "hidden_size": 8, "num_hidden_layers": 1,
            "num_attention_heads": 2, "intermediate_size": 16, "max_position_embeddings": 12, "hidden_act": "gelu"}"#;
        std::fs::write(&f, good).unwrap();
        let c = bert_config_from_json(&f).unwrap();
        assert_eq!((c.n_embd, c.n_type, c.activation), (8, 2, BertActivation::Gelu));
        for (bad, key) in [
            (good.replace("\"bert\"", "\"roberta\""), "model_type"),
            (good.replace("\"gelu\"", "\"swish\""), "hidden_act"),
            (good.replace("\"hidden_size\": 8", "\"hidden_size\": -8"), "hidden_size"),
            (good.replace(", \"vocab_size\": 10", ""), "vocab_size"),
        ] {
            std::fs::write(&f, bad).unwrap();
            match bert_config_from_json(&f) {
                Err(EmbedError::Config { key: k, .. }) => assert_eq!(k, key),
                other => panic!("{key}: {other:?}"),
            }
        }
        let _ = std::fs::remove_dir_all(&d);
    }

    #[test]
    fn modules_are_read_and_unknown_ones_refused() {
        let d = tmpdir("modules");
        std::fs::create_dir_all(d.join("1_Pooling")).unwrap();
        std::fs::write(d.join("1_Pooling/config.json"), r#"{"pooling_mode_cls_token": true}"#).unwrap();
        std::fs::write(d.join("sentence_bert_config.json"), r#"{"max_seq_length": 128, "do_lower_case": true}"#).unwrap();
        std::fs::write(
            d.join("modules.json"),
            r#"[{"idx":0,"name":"0","path":"","type":"sentence_transformers.models.Transformer"},
                {"idx":1,"name":"1","path":"1_Pooling","type":"sentence_transformers.models.Pooling"},
                {"idx":2,"name":"2","path":"2_Normalize","type":"sentence_transformers.models.Normalize"}]"#,
        )
        .unwrap();
        let c = read_st_config(&d).unwrap();
        assert_eq!(c.modes, Some(vec![PoolMode::Cls]));
        assert!(c.normalize && c.lowercase);
        assert_eq!(c.max_seq_length, Some(128));
        std::fs::write(d.join("modules.json"), r#"[{"path":"2_Dense","type":"sentence_transformers.models.Dense"}]"#).unwrap();
        assert!(matches!(read_st_config(&d), Err(EmbedError::UnsupportedModule { .. })));
        std::fs::write(d.join("modules.json"), r#"[{"path":"../x","type":"sentence_transformers.models.Pooling"}]"#).unwrap();
        assert!(matches!(read_st_config(&d), Err(EmbedError::Config { .. })));
        let _ = std::fs::remove_dir_all(&d);
    }

    #[test]
    fn missing_model_and_pickle_only_folders_are_clear_errors() {
        let d = tmpdir("pickle");
        assert!(matches!(find_model_dir(Some(&d)), Err(EmbedError::ModelNotFound { .. })));
        std::fs::write(
            d.join("config.json"),
            r#"{"model_type": "bert", "vocab_size": 10, "hidden_size": 8, "num_hidden_layers": 1,
            "num_attention_heads": 2, "intermediate_size": 16, "max_position_embeddings": 12}"#,
        )
        .unwrap();
        assert_eq!(find_model_dir(Some(&d)).unwrap(), d);
        std::fs::write(d.join("pytorch_model.bin"), b"\x80\x02whatever").unwrap();
        let err = Embedder::load(&d).unwrap_err();
        assert!(matches!(err, EmbedError::WeightFile(WeightFileError::PickleRefused { .. })), "{err}");
        std::fs::remove_file(d.join("pytorch_model.bin")).unwrap();
        assert!(matches!(Embedder::load(&d).unwrap_err(), EmbedError::NoWeights { .. }));
        let _ = std::fs::remove_dir_all(&d);
    }

    #[test]
    fn explicit_path_wins_the_search() {
        let p = Path::new("/some/where");
        assert_eq!(model_search_paths(Some(p)), vec![p.to_path_buf()]);
    }
}
