//! Hearth's query router: decides whether a request is answered by the local
//! model or escalated to the cloud one.
//!
//! A query is embedded with the sentence encoder of `hearth-embed`
//! (all-MiniLM-L6-v2) and scored by a small trained head: L2-regularised
//! logistic regression (see [`train`] for why not an MLP) over
//!
//! * one or more **views** of the text, each a 384-d embedding: the whole
//!   query ([`View::Full`]) and its **instruction head** ([`View::Head`],
//!   the text before the first line break or opening quotation mark). A
//!   request like "Summarise this thread: <two pages of e-mail>" embeds
//!   mostly as the e-mail; the head keeps the instruction visible. On the
//!   enterprise set the head view cut false escalations at 90% cloud recall
//!   from ~12% to ~6–7% (docs/router.md);
//! * a few cheap **features** of the text ([`features::Feature`]): size,
//!   numbers, structure.
//!
//! The head may also be an average of logistic heads fitted with different
//! penalties ([`train::fit_ensemble`], [`Ensemble`]); being linear, it is
//! stored and scored exactly like a single one.
//!
//! The score is the head's probability in (0, 1); higher means "needs the
//! cloud model"; the router escalates when `score >= threshold`. The
//! threshold is calibrated on labelled data to a target local share (or a
//! target cloud recall).
//!
//! # Router files
//!
//! A router is one JSON file ([`RouterFile`]): format version, name, the
//! embedder it was trained with (id, dimension, maximum tokens and a SHA-256
//! fingerprint of its files, see [`embedder_fingerprint`]), views, features,
//! head weights, threshold, calibration and training provenance. Loading a
//! router against a different embedder is a typed error
//! ([`RouterError::EmbedderMismatch`]): the head's weights mean nothing for
//! another encoder's vectors. Named routers live in `routers/<name>.json`;
//! [`Router::load`] takes a name or a path, and the routers shipped in the
//! repository (`default`, `routellm`) are also compiled into the crate so a
//! binary works away from the repository.
//!
//! # Chat requests
//!
//! [`Router::score_user_turns`] scores a conversation from its user turns:
//! the maximum of the score of the last turn and the score of all user turns
//! joined by blank lines. The last turn is what must be answered now; the
//! joined text catches a short follow-up ("and now do it for all regions")
//! to a hard earlier request. Taking the maximum errs towards the cloud,
//! the safe side for quality (the privacy guard, not the router, keeps
//! sensitive requests local). A single turn is scored once.
//!
//! Deliberately absent: online learning, per-tenant routers, kNN heads (they
//! would ship the training embeddings in the router file), cascade scoring
//! (answer-confidence escalation belongs to the gateway).

pub mod cache;
pub mod data;
pub mod features;
pub mod metrics;
pub mod train;

use features::{Feature, TextStats};
use hearth_embed::{Embedder, EmbedderOptions};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use train::LinearHead;

pub use data::{Example, LabelMode};

/// The `format` field of every router file.
pub const FORMAT: &str = "hearth-router";
/// The file format version this crate reads and writes.
pub const FORMAT_VERSION: u32 = 1;
/// Identifier recorded for the default encoder.
pub const DEFAULT_EMBEDDER_ID: &str = "sentence-transformers/all-MiniLM-L6-v2";
/// Environment variable naming an extra folder of named routers.
pub const ENV_ROUTERS_DIR: &str = "HEARTH_ROUTERS";
/// Refuse router files larger than this (a linear head is a few hundred KiB).
pub const MAX_ROUTER_FILE_BYTES: u64 = 64 << 20;

/// Routers compiled into the crate (name, JSON).
const BUILTIN: [(&str, &str); 2] =
    [("default", include_str!("../../../routers/default.json")), ("routellm", include_str!("../../../routers/routellm.json"))];

#[derive(Debug, thiserror::Error)]
pub enum RouterError {
    #[error("cannot read {path}: {source}")]
    Io { path: PathBuf, source: std::io::Error },
    #[error("{path}:{line}: {why}")]
    Data { path: PathBuf, line: usize, why: String },
    #[error("router {name:?} not found (looked in {tried})")]
    NotFound { name: String, tried: String },
    #[error("{source_name}: not a router file: {why}")]
    Format { source_name: String, why: String },
    #[error("{source_name}: router file version {found} is not supported (this build reads version {FORMAT_VERSION})")]
    Version { source_name: String, found: u32 },
    #[error("{source_name}: trained with embedder {expected_id} ({expected}), but the loaded embedder {found_dir} is {found}; retrain the router or use the embedder it names")]
    EmbedderMismatch { source_name: String, expected_id: String, expected: String, found: String, found_dir: PathBuf },
    #[error("embedding cache {path}: {why}")]
    Cache { path: PathBuf, why: String },
    #[error("training: {0}")]
    Train(String),
    #[error(transparent)]
    Embed(#[from] hearth_embed::EmbedError),
}

pub type Result<T> = std::result::Result<T, RouterError>;

/// A way of looking at the query text; each view is embedded separately.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum View {
    /// The whole text (the encoder reads at most its maximum tokens).
    Full,
    /// The instruction head: the text before the first `\n`, `"` or `“`
    /// (possibly empty, when the text opens with a quotation).
    Head,
}

impl View {
    /// The text this view embeds.
    pub fn apply(self, text: &str) -> &str {
        match self {
            View::Full => text,
            View::Head => &text[..text.find(['\n', '"', '\u{201c}']).unwrap_or(text.len())],
        }
    }
}

/// The encoder a router was trained with.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct EmbedderSpec {
    pub id: String,
    pub dim: usize,
    pub max_tokens: usize,
    /// [`embedder_fingerprint`] of the model folder, lowercase hex.
    pub sha256: String,
}

/// How the threshold was chosen.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Calibration {
    /// Data files the scores came from.
    pub data: Vec<String>,
    pub n: usize,
    /// Exactly one of the targets is set.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub target_local: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub target_recall: Option<f64>,
    /// Local share on the calibration data at the chosen threshold.
    pub local_share: f64,
}

/// Where the head came from.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Training {
    pub data: Vec<String>,
    /// SHA-256 of the training files' bytes, concatenated in order.
    pub data_sha256: String,
    pub n: usize,
    pub n_cloud: usize,
    pub label_mode: LabelMode,
    pub l2: f64,
    /// L2 penalty of the gate-off block of a gated head, when it differs
    /// from `l2` (which then applies to the gate-on block); see
    /// [`fit_head`]. Absent in files written before it existed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub l2_gate_off: Option<f64>,
    /// Multiplier of the cheap features after standardisation (their L2
    /// penalty is divided by its square; see [`train::FitOptions::boost`]).
    /// Absent = 1, as in files written before it existed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub feature_boost: Option<f64>,
    /// The averaged head's grid and length weight (see [`Ensemble`]);
    /// absent for a single head and in files written before it existed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ensemble: Option<Ensemble>,
    pub solver: String,
    pub iterations: usize,
    pub converged: bool,
    pub hearth_version: String,
}

/// An averaged head ([`train::fit_ensemble`]): one logistic head per
/// (L2, boost) pair, logits standardised and averaged, plus
/// `length_weight` × the standardised `length_feature`, then Platt-scaled.
/// With a gate it replaces the gate-off block's single head (the
/// free-form questions of strong/weak data); without one, the whole head.
/// The result is stored as an ordinary linear head; this record is
/// provenance.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Ensemble {
    pub l2: Vec<f64>,
    pub boost: Vec<f64>,
    pub length_weight: f64,
    pub length_feature: Feature,
}

/// The head of a router file.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Head {
    Logistic(LinearHead),
}

/// A router file (JSON).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RouterFile {
    pub format: String,
    pub version: u32,
    pub name: String,
    #[serde(default)]
    pub description: String,
    pub embedder: EmbedderSpec,
    pub views: Vec<View>,
    pub features: Vec<Feature>,
    /// A 0/1 feature that splits the queries into two kinds with separate
    /// weights (see [`gate_expand`]); `None` = one set of weights.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub gate: Option<Feature>,
    pub head: Head,
    pub threshold: f32,
    #[serde(default)]
    pub calibration: Option<Calibration>,
    pub training: Training,
}

impl RouterFile {
    /// Inputs the head expects: one embedding per view, then the features.
    pub fn input_dim(&self) -> usize {
        let base = self.views.len() * self.embedder.dim + self.features.len();
        if self.gate.is_some() {
            2 * base + 1
        } else {
            base
        }
    }

    /// Parses and checks a router file; `source_name` names it in errors.
    pub fn from_json(text: &str, source_name: &str) -> Result<RouterFile> {
        let fmt_err = |why: String| RouterError::Format { source_name: source_name.to_string(), why };
        let v: serde_json::Value = serde_json::from_str(text).map_err(|e| fmt_err(format!("invalid JSON: {e}")))?;
        if v.get("format").and_then(|f| f.as_str()) != Some(FORMAT) {
            return Err(fmt_err(format!("\"format\" is not {FORMAT:?}")));
        }
        match v.get("version").and_then(|x| x.as_u64()) {
            Some(x) if x == u64::from(FORMAT_VERSION) => {}
            Some(x) => return Err(RouterError::Version { source_name: source_name.into(), found: x.min(u64::from(u32::MAX)) as u32 }),
            None => return Err(fmt_err("missing \"version\"".into())),
        }
        let f: RouterFile = serde_json::from_value(v).map_err(|e| fmt_err(e.to_string()))?;
        f.validate().map_err(fmt_err)?;
        Ok(f)
    }

    /// Internal consistency: sizes agree and every number is finite.
    pub fn validate(&self) -> std::result::Result<(), String> {
        if self.views.is_empty() {
            return Err("\"views\" is empty".into());
        }
        if self.embedder.dim == 0 || self.embedder.dim > 1 << 16 {
            return Err(format!("embedder.dim {} is out of range", self.embedder.dim));
        }
        let Head::Logistic(h) = &self.head;
        let d = self.input_dim();
        for (name, len) in [("weights", h.weights.len()), ("mean", h.mean.len()), ("scale", h.scale.len())] {
            if len != d {
                return Err(format!("head.{name} has {len} values, views and features need {d}"));
            }
        }
        let finite = |xs: &[f32]| xs.iter().all(|x| x.is_finite());
        if !finite(&h.weights) || !finite(&h.mean) || !h.bias.is_finite() || !self.threshold.is_finite() {
            return Err("a head value or the threshold is not a finite number".into());
        }
        if h.scale.iter().any(|s| !(s.is_finite() && *s > 0.0)) {
            return Err("head.scale must be positive".into());
        }
        Ok(())
    }

    pub fn to_json(&self) -> String {
        // Serialising plain structs of numbers and strings cannot fail.
        serde_json::to_string_pretty(self).unwrap_or_default()
    }

    pub fn save(&self, path: &Path) -> Result<()> {
        let mut text = self.to_json();
        text.push('\n');
        std::fs::write(path, text).map_err(|source| RouterError::Io { path: path.to_path_buf(), source })
    }
}

/// SHA-256 fingerprint of a model folder: over `config.json`,
/// `tokenizer.json` and every `*.safetensors` / `*.gguf` file (sorted by
/// name), each fed as its name, a NUL, its length (u64 LE) and its bytes.
/// Two folders agree exactly when the encoder would produce the same vectors
/// (up to what the pooling configs could change, which all-MiniLM fixes).
pub fn embedder_fingerprint(dir: &Path) -> Result<String> {
    let io = |path: &Path, source| RouterError::Io { path: path.to_path_buf(), source };
    let mut names = vec!["config.json".to_string(), "tokenizer.json".to_string()];
    let mut weights = Vec::new();
    for ent in std::fs::read_dir(dir).map_err(|e| io(dir, e))?.flatten() {
        let name = ent.file_name().to_string_lossy().into_owned();
        if name.ends_with(".safetensors") || name.ends_with(".gguf") {
            weights.push(name);
        }
    }
    weights.sort();
    names.extend(weights);
    let mut h = Sha256::new();
    for name in names {
        let path = dir.join(&name);
        let mut f = std::fs::File::open(&path).map_err(|e| io(&path, e))?;
        let len = f.metadata().map_err(|e| io(&path, e))?.len();
        h.update(name.as_bytes());
        h.update([0u8]);
        h.update(len.to_le_bytes());
        std::io::copy(&mut f, &mut h).map_err(|e| io(&path, e))?;
    }
    Ok(hex(&h.finalize()))
}

pub(crate) fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// Computes the head's inputs for texts: embeddings of each view (through an
/// optional cache) and the cheap features.
pub struct Featurizer<'a> {
    pub embedder: &'a Embedder,
    pub views: &'a [View],
    pub features: &'a [Feature],
    pub gate: Option<Feature>,
    pub cache: Option<&'a mut cache::EmbedCache>,
}

/// A gated input row: `[r · g, r · (1 − g), g]` for the gate value `g` ∈
/// {0, 1}. A linear head over it is exactly two linear heads, one per kind
/// of query, each with its own bias: strong/weak data mixes kinds whose
/// difficulty cues differ (MMLU's multiple-choice subjects against GSM8K's
/// free-form word problems), and one shared set of weights lets the larger
/// set decide the ranking inside the smaller one.
pub fn gate_expand(row: Vec<f32>, g: f32) -> Vec<f32> {
    let mut out = Vec::with_capacity(2 * row.len() + 1);
    out.extend(row.iter().map(|x| x * g));
    out.extend(row.iter().map(|x| x * (1.0 - g)));
    out.push(g);
    out
}

impl Featurizer<'_> {
    /// One input row per text, all views of all texts embedded as one batch.
    /// Each text is trimmed of leading and trailing whitespace first.
    pub fn rows(&mut self, texts: &[&str]) -> Result<Vec<Vec<f32>>> {
        let dim = self.embedder.dim();
        // Each distinct view text is embedded once (a one-line query's head
        // is the query itself).
        let mut unique: Vec<&str> = Vec::new();
        let mut index: std::collections::HashMap<&str, usize> = std::collections::HashMap::new();
        let mut slot = Vec::with_capacity(texts.len() * self.views.len());
        for t in texts {
            for v in self.views {
                let vt = v.apply(t.trim());
                let next = unique.len();
                let k = *index.entry(vt).or_insert(next);
                if k == next {
                    unique.push(vt);
                }
                slot.push(k);
            }
        }
        let embs = match self.cache.as_deref_mut() {
            Some(c) => c.embed(self.embedder, &unique)?,
            None => self.embedder.embed(&unique)?,
        };
        let mut out = Vec::with_capacity(texts.len());
        for (i, t) in texts.iter().enumerate() {
            // Leading and trailing whitespace says nothing about the query,
            // but a leading line break would empty the instruction head and
            // add lines; every view and feature sees the trimmed text.
            let t = t.trim();
            let mut row = Vec::with_capacity(self.views.len() * dim + self.features.len());
            for &k in &slot[i * self.views.len()..(i + 1) * self.views.len()] {
                row.extend_from_slice(&embs[k]);
            }
            if !self.features.is_empty() || self.gate.is_some() {
                let stats = TextStats::of(t);
                let math = features::needs_math(self.features).then(|| features::MathStats::of(t));
                let tokens = self.embedder.count_tokens(t)?;
                let value = |f| features::value_with(f, &stats, math.as_ref(), tokens, self.embedder.max_tokens());
                row.extend(self.features.iter().map(|&f| value(f)));
                if let Some(g) = self.gate {
                    row = gate_expand(row, if value(g) > 0.5 { 1.0 } else { 0.0 });
                }
            }
            out.push(row);
        }
        Ok(out)
    }
}

/// Load-time settings of [`Router::load_with`].
#[derive(Clone, Debug, Default)]
pub struct RouterOptions {
    /// The encoder's folder; default: [`hearth_embed::find_model_dir`].
    pub model_dir: Option<PathBuf>,
    /// Threads of the encoder (0 = all cores).
    pub threads: usize,
}

/// A loaded router: a checked router file and the encoder it needs.
pub struct Router {
    file: RouterFile,
    embedder: Arc<Embedder>,
    source: String,
}

impl std::fmt::Debug for Router {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Router").field("name", &self.file.name).field("source", &self.source).field("threshold", &self.file.threshold).finish()
    }
}

/// Where a router name or path points: its JSON text and a display name.
pub fn resolve(spec: &str) -> Result<(String, String)> {
    let as_path = Path::new(spec);
    let looks_like_path = spec.contains('/') || spec.contains(std::path::MAIN_SEPARATOR) || spec.ends_with(".json");
    let read = |p: &Path| -> Result<String> {
        let io = |source| RouterError::Io { path: p.to_path_buf(), source };
        let len = std::fs::metadata(p).map_err(io)?.len();
        if len > MAX_ROUTER_FILE_BYTES {
            return Err(RouterError::Format { source_name: p.display().to_string(), why: format!("{len} bytes is too large for a router file") });
        }
        std::fs::read_to_string(p).map_err(|source| RouterError::Io { path: p.to_path_buf(), source })
    };
    if looks_like_path {
        return Ok((read(as_path)?, as_path.display().to_string()));
    }
    let valid_name = !spec.is_empty() && spec.chars().all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_' || c == '.');
    let mut tried = Vec::new();
    if valid_name {
        let mut dirs = Vec::new();
        if let Some(d) = std::env::var_os(ENV_ROUTERS_DIR).filter(|d| !d.is_empty()) {
            dirs.push(PathBuf::from(d));
        }
        dirs.push(PathBuf::from("routers"));
        for d in dirs {
            let p = d.join(format!("{spec}.json"));
            if p.is_file() {
                return Ok((read(&p)?, p.display().to_string()));
            }
            tried.push(p.display().to_string());
        }
        if let Some((_, text)) = BUILTIN.iter().find(|(n, _)| *n == spec) {
            return Ok((text.to_string(), format!("builtin:{spec}")));
        }
        tried.push(format!("builtin routers ({})", BUILTIN.iter().map(|b| b.0).collect::<Vec<_>>().join(", ")));
    }
    Err(RouterError::NotFound { name: spec.to_string(), tried: tried.join(", ") })
}

impl Router {
    /// Loads a router by name (`routers/<name>.json`, `$HEARTH_ROUTERS`, the
    /// built-in ones) or path, with the default encoder location.
    pub fn load(spec: &str) -> Result<Router> {
        Router::load_with(spec, &RouterOptions::default())
    }

    pub fn load_with(spec: &str, opts: &RouterOptions) -> Result<Router> {
        let (text, source) = resolve(spec)?;
        let file = RouterFile::from_json(&text, &source)?;
        let dir = hearth_embed::find_model_dir(opts.model_dir.as_deref())?;
        let embedder = Embedder::load_with(&dir, &EmbedderOptions { threads: opts.threads, ..Default::default() })?;
        Router::new(file, Arc::new(embedder), source)
    }

    /// Pairs a router file with an already loaded encoder (shared with, for
    /// example, the server's embeddings endpoint), checking that it is the
    /// encoder the router was trained with. The check hashes the encoder's
    /// files (~90 MB for all-MiniLM-L6-v2, a fraction of a second), once per
    /// load.
    pub fn new(file: RouterFile, embedder: Arc<Embedder>, source: String) -> Result<Router> {
        let found = embedder_fingerprint(embedder.model_dir())?;
        if found != file.embedder.sha256 || embedder.dim() != file.embedder.dim || embedder.max_tokens() != file.embedder.max_tokens {
            return Err(RouterError::EmbedderMismatch {
                source_name: source,
                expected_id: file.embedder.id.clone(),
                expected: format!("sha256 {}, dim {}, max_tokens {}", file.embedder.sha256, file.embedder.dim, file.embedder.max_tokens),
                found: format!("sha256 {found}, dim {}, max_tokens {}", embedder.dim(), embedder.max_tokens()),
                found_dir: embedder.model_dir().to_path_buf(),
            });
        }
        Ok(Router { file, embedder, source })
    }

    pub fn name(&self) -> &str {
        &self.file.name
    }

    /// Escalate when `score >= threshold`.
    pub fn threshold(&self) -> f32 {
        self.file.threshold
    }

    /// Where the router came from (a path or `builtin:<name>`).
    pub fn source(&self) -> &str {
        &self.source
    }

    pub fn file(&self) -> &RouterFile {
        &self.file
    }

    pub fn embedder(&self) -> &Arc<Embedder> {
        &self.embedder
    }

    fn head(&self) -> &LinearHead {
        let Head::Logistic(h) = &self.file.head;
        h
    }

    /// Scores of many texts (batched through the encoder), in (0, 1).
    pub fn score_texts(&self, texts: &[&str]) -> Result<Vec<f32>> {
        self.score_texts_cached(texts, None)
    }

    /// As [`Router::score_texts`], looking embeddings up in `cache` first.
    pub fn score_texts_cached(&self, texts: &[&str], cache: Option<&mut cache::EmbedCache>) -> Result<Vec<f32>> {
        let mut fz =
            Featurizer { embedder: &self.embedder, views: &self.file.views, features: &self.file.features, gate: self.file.gate, cache };
        let rows = fz.rows(texts)?;
        Ok(rows.iter().map(|r| self.head().probability(r)).collect())
    }

    /// Score of one text, in (0, 1); higher means "needs the cloud model".
    pub fn score_text(&self, text: &str) -> Result<f32> {
        Ok(self.score_texts(&[text])?.first().copied().unwrap_or(0.0))
    }

    /// Score of a conversation from its user turns (see the crate docs):
    /// `max(score(last), score(all joined))`. No turns scores 0.
    pub fn score_user_turns(&self, turns: &[&str]) -> Result<f32> {
        match turns {
            [] => Ok(0.0),
            [one] => self.score_text(one),
            [.., last] => {
                let joined = turns.join("\n\n");
                let s = self.score_texts(&[last, &joined])?;
                Ok(s.iter().copied().fold(0.0, f32::max))
            }
        }
    }

    /// Score and decision for one text.
    pub fn decide(&self, text: &str) -> Result<Decision> {
        let score = self.score_text(text)?;
        Ok(Decision { score, cloud: score >= self.file.threshold })
    }
}

/// A routing decision.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Decision {
    pub score: f32,
    /// `score >= threshold`.
    pub cloud: bool,
}

/// What [`train_router`] is asked to build.
#[derive(Clone, Debug)]
pub struct TrainSpec {
    pub name: String,
    pub description: String,
    pub views: Vec<View>,
    pub features: Vec<Feature>,
    pub gate: Option<Feature>,
    pub label_mode: LabelMode,
    pub fit: train::FitOptions,
    /// With a gate: the L2 penalty of the gate-off block (`fit.l2` applies
    /// to the gate-on block); `None` = `fit.l2` for both.
    pub l2_gate_off: Option<f64>,
    /// Average a grid of heads instead of fitting one (the gate-off block
    /// with a gate, the whole head without); see [`Ensemble`].
    pub ensemble: Option<Ensemble>,
    /// Training files, for provenance.
    pub data: Vec<PathBuf>,
}

/// SHA-256 over the bytes of `files` in order.
pub fn files_sha256(files: &[PathBuf]) -> Result<String> {
    let mut h = Sha256::new();
    for p in files {
        let mut f = std::fs::File::open(p).map_err(|source| RouterError::Io { path: p.clone(), source })?;
        std::io::copy(&mut f, &mut h).map_err(|source| RouterError::Io { path: p.clone(), source })?;
    }
    Ok(hex(&h.finalize()))
}

/// Fits a router head on precomputed input rows (from a [`Featurizer`] with
/// the spec's views and features). The threshold starts at 0.5 (probability
/// ½); calibrate it afterwards.
pub fn train_on_rows(spec: &TrainSpec, examples: &[Example], rows: &[Vec<f32>], embedder: EmbedderSpec) -> Result<RouterFile> {
    let y: Vec<f32> = examples.iter().map(|e| e.target(spec.label_mode)).collect();
    let (head, rep) = fit_head(spec, rows, &y)?;
    let file = RouterFile {
        format: FORMAT.into(),
        version: FORMAT_VERSION,
        name: spec.name.clone(),
        description: spec.description.clone(),
        embedder,
        views: spec.views.clone(),
        features: spec.features.clone(),
        gate: spec.gate,
        head: Head::Logistic(head),
        threshold: 0.5,
        calibration: None,
        training: Training {
            data: spec.data.iter().map(|p| p.display().to_string()).collect(),
            data_sha256: files_sha256(&spec.data)?,
            n: examples.len(),
            n_cloud: examples.iter().filter(|e| e.cloud).count(),
            label_mode: spec.label_mode,
            l2: spec.fit.l2,
            l2_gate_off: spec.gate.and(spec.l2_gate_off),
            feature_boost: (spec.fit.boost != 1.0 && spec.fit.boost_tail > 0).then_some(spec.fit.boost),
            ensemble: spec.ensemble.clone(),
            solver: "newton-cholesky".into(),
            iterations: rep.iterations,
            converged: rep.converged,
            hearth_version: env!("CARGO_PKG_VERSION").into(),
        },
    };
    file.validate().map_err(RouterError::Train)?;
    Ok(file)
}

/// Fits the head of `spec` to input rows (from a [`Featurizer`] with the
/// spec's views, features and gate) and targets.
///
/// Without a gate: one logistic head. With a gate, the rows are
/// `[r · g, r · (1 − g), g]` ([`gate_expand`]) and the two kinds of query
/// share no weight, so the head is fitted as two independent logistic
/// regressions, one per kind, each standardised on its own rows and with its
/// own L2 (`fit.l2` for gate-on rows, `l2_gate_off` for the others): the
/// kinds differ in size (RouteLLM's 7,000 multiple-choice MMLU questions
/// against 700 free-form ones), and the penalty that suits one
/// over-regularises the other. The two heads are then written as one
/// [`LinearHead`] over the gated row (same file format): each block keeps
/// its own mean, scale and weights, and the bias and the gate column's
/// weight absorb the constant a zeroed block contributes, so the combined
/// logit equals the block head's logit for every row. The solver report is
/// the gate-on block's, with the iterations of both added.
pub fn fit_head(spec: &TrainSpec, rows: &[Vec<f32>], y: &[f32]) -> Result<(LinearHead, train::FitReport)> {
    if spec.gate.is_none() {
        return fit_block(spec, rows, y, spec.fit.l2, true);
    }
    let p = rows.first().map_or(0, Vec::len);
    if p % 2 != 1 || rows.iter().any(|r| r.len() != p) {
        return Err(RouterError::Train(format!("gated rows must have 2·d + 1 values and equal lengths, row 0 has {p}")));
    }
    let d = p / 2;
    let mut blocks: [(Vec<Vec<f32>>, Vec<f32>); 2] = Default::default();
    for (r, &t) in rows.iter().zip(y) {
        // Gate-on rows carry x in the first block; gate-off rows in the second.
        let on = r[p - 1] > 0.5;
        let (rs, ys) = &mut blocks[usize::from(!on)];
        rs.push(if on { r[..d].to_vec() } else { r[d..2 * d].to_vec() });
        ys.push(t);
    }
    let l2 = [spec.fit.l2, spec.l2_gate_off.unwrap_or(spec.fit.l2)];
    let mut heads = Vec::with_capacity(2);
    let mut report = train::FitReport { iterations: 0, converged: true, objective: 0.0 };
    for (b, (rs, ys)) in blocks.iter().enumerate() {
        if rs.is_empty() {
            // No query of this kind: a flat head at the other kind's base rate
            // would be a guess too; probability ½ (logit 0) is the neutral one.
            heads.push(LinearHead { mean: vec![0.0; d], scale: vec![1.0; d], weights: vec![0.0; d], bias: 0.0 });
            continue;
        }
        let (h, rep) = fit_block(spec, rs, ys, l2[b], b == 1)?;
        if b == 0 {
            report.objective = rep.objective;
            report.converged = rep.converged;
        }
        report.iterations += rep.iterations;
        heads.push(h);
    }
    // What a block adds to the logit when its inputs are all zero, computed
    // exactly as `LinearHead::logit` does.
    let zero_part = |h: &LinearHead| -> f64 {
        h.mean.iter().zip(&h.scale).zip(&h.weights).map(|((&m, &s), &w)| f64::from(w) * f64::from((0.0f32 - m) / s)).sum()
    };
    let (on, off) = (&heads[0], &heads[1]);
    let bias = f64::from(off.bias) - zero_part(on);
    let gate_w = f64::from(on.bias) - zero_part(off) - bias;
    let cat = |a: &[f32], b: &[f32], last: f32| a.iter().chain(b).copied().chain(std::iter::once(last)).collect::<Vec<f32>>();
    let head = LinearHead {
        mean: cat(&on.mean, &off.mean, 0.0),
        scale: cat(&on.scale, &off.scale, 1.0),
        weights: cat(&on.weights, &off.weights, gate_w as f32),
        bias: bias as f32,
    };
    if !head.weights.iter().all(|w| w.is_finite()) || !head.bias.is_finite() {
        return Err(RouterError::Train("the combined gated head is not finite".into()));
    }
    Ok((head, report))
}

/// One block of a head: the spec's ensemble where `ensemble_block` and
/// the spec has one, else a single logistic head with penalty `l2`. The
/// length column is the spec's length feature among the block's trailing
/// features.
fn fit_block(spec: &TrainSpec, rows: &[Vec<f32>], y: &[f32], l2: f64, ensemble_block: bool) -> Result<(LinearHead, train::FitReport)> {
    let Some(e) = spec.ensemble.as_ref().filter(|_| ensemble_block) else {
        return train::fit_logistic(rows, y, &train::FitOptions { l2, ..spec.fit });
    };
    let d = rows.first().map_or(0, Vec::len);
    let length_col = spec.features.iter().position(|&f| f == e.length_feature).and_then(|i| (d + i).checked_sub(spec.features.len()));
    let opts = train::EnsembleOptions { l2s: e.l2.clone(), boosts: e.boost.clone(), length_weight: e.length_weight, length_col };
    train::fit_ensemble(rows, y, &spec.fit, &opts)
}

/// Held-out recall and false escalation of a threshold *rule*: "choose the
/// threshold that reaches `target_recall` on out-of-fold scores of the
/// training data". For each of `k` outer folds (shuffled with `seed`), the
/// threshold is chosen from `inner_k`-fold out-of-fold scores of the other
/// folds, a head is fitted on those folds, and the held-out fold is scored
/// and classified at that threshold. Nothing of the held-out fold is used
/// for either the head or the threshold, so the figures estimate what the
/// shipped router (same rule on all the data) does on unseen queries.
pub fn nested_threshold_eval(
    spec: &TrainSpec,
    examples: &[Example],
    rows: &[Vec<f32>],
    k: usize,
    inner_k: usize,
    seed: u64,
    target_recall: f64,
) -> Result<Vec<metrics::ClassMetrics>> {
    if k < 2 || k > examples.len() {
        return Err(RouterError::Train(format!("{k} folds for {} examples", examples.len())));
    }
    let fold = example_folds(examples, k, seed);
    let mut out = Vec::with_capacity(k);
    for f in 0..k {
        let (tr, te): (Vec<usize>, Vec<usize>) = (0..examples.len()).partition(|&i| fold[i] != f);
        if tr.is_empty() || te.is_empty() {
            continue;
        }
        let tr_ex: Vec<Example> = tr.iter().map(|&i| examples[i].clone()).collect();
        let tr_rows: Vec<Vec<f32>> = tr.iter().map(|&i| rows[i].clone()).collect();
        // Inner folds use their own seed so they do not mirror the outer split.
        let inner = cross_val_scores(spec, &tr_ex, &tr_rows, inner_k, seed.wrapping_mul(31).wrapping_add(f as u64 + 1))?;
        let tr_cloud: Vec<bool> = tr_ex.iter().map(|e| e.cloud).collect();
        let t = metrics::threshold_for_recall(&inner, &tr_cloud, target_recall)
            .ok_or_else(|| RouterError::Train(format!("fold {f}: no cloud-labelled training queries for a recall target")))?;
        let y: Vec<f32> = tr_ex.iter().map(|e| e.target(spec.label_mode)).collect();
        let (head, _) = fit_head(spec, &tr_rows, &y)?;
        let scores: Vec<f32> = te.iter().map(|&i| head.probability(&rows[i])).collect();
        let cloud: Vec<bool> = te.iter().map(|&i| examples[i].cloud).collect();
        out.push(metrics::classify(&scores, &cloud, t));
    }
    Ok(out)
}

/// Out-of-fold scores with the fitting hyper-parameters chosen *inside*
/// each training part (nested cross-validation): for each of `k` outer folds,
/// every candidate spec in `candidates` (same views, features and gate; they
/// differ in fit settings) is scored by `inner_k`-fold cross-validation of
/// the other folds, the one with the highest `criterion(inner scores,
/// training examples, training rows)` is fitted on those folds and scores the held-out
/// fold. Returns the scores and the candidate chosen for each outer fold.
/// The held-out fold takes no part in the choice, so a metric of these
/// scores is an honest estimate of "tune on this grid, then train".
#[allow(clippy::type_complexity)]
pub fn nested_select_scores(
    candidates: &[TrainSpec],
    examples: &[Example],
    rows: &[Vec<f32>],
    k: usize,
    inner_k: usize,
    seed: u64,
    criterion: &dyn Fn(&[f32], &[Example], &[Vec<f32>]) -> f64,
) -> Result<(Vec<f32>, Vec<usize>)> {
    if candidates.is_empty() || k < 2 || k > examples.len() {
        return Err(RouterError::Train(format!("{} candidates, {k} folds for {} examples", candidates.len(), examples.len())));
    }
    let fold = example_folds(examples, k, seed);
    let mut out = vec![0f32; examples.len()];
    let mut chosen = Vec::with_capacity(k);
    for f in 0..k {
        let (tr, te): (Vec<usize>, Vec<usize>) = (0..examples.len()).partition(|&i| fold[i] != f);
        if tr.is_empty() || te.is_empty() {
            continue;
        }
        let tr_ex: Vec<Example> = tr.iter().map(|&i| examples[i].clone()).collect();
        let tr_rows: Vec<Vec<f32>> = tr.iter().map(|&i| rows[i].clone()).collect();
        let inner_seed = seed.wrapping_mul(31).wrapping_add(f as u64 + 1);
        let mut best = (f64::NEG_INFINITY, 0);
        for (c, spec) in candidates.iter().enumerate() {
            let inner = cross_val_scores(spec, &tr_ex, &tr_rows, inner_k, inner_seed)?;
            let v = criterion(&inner, &tr_ex, &tr_rows);
            // Ties keep the earlier candidate (list the simplest first).
            if v > best.0 {
                best = (v, c);
            }
        }
        chosen.push(best.1);
        let spec = &candidates[best.1];
        let y: Vec<f32> = tr_ex.iter().map(|e| e.target(spec.label_mode)).collect();
        let (head, _) = fit_head(spec, &tr_rows, &y)?;
        for &i in &te {
            out[i] = head.probability(&rows[i]);
        }
    }
    Ok((out, chosen))
}

/// The spec of a loaded encoder (fingerprint included).
pub fn embedder_spec(embedder: &Embedder) -> Result<EmbedderSpec> {
    Ok(EmbedderSpec {
        id: DEFAULT_EMBEDDER_ID.into(),
        dim: embedder.dim(),
        max_tokens: embedder.max_tokens(),
        sha256: embedder_fingerprint(embedder.model_dir())?,
    })
}

/// The fold (0..k) of each example: identical query texts form one group
/// (numbered in order of first appearance) and groups are shuffled into folds
/// with `seed`, so duplicates never straddle folds.
fn example_folds(examples: &[Example], k: usize, seed: u64) -> Vec<usize> {
    let mut groups: std::collections::HashMap<&str, usize> = std::collections::HashMap::new();
    let group_of: Vec<usize> = examples
        .iter()
        .map(|e| {
            let next = groups.len();
            *groups.entry(e.query.as_str()).or_insert(next)
        })
        .collect();
    let fold_of_group = train::fold_assignment(groups.len(), k, seed);
    group_of.iter().map(|&g| fold_of_group[g]).collect()
}

/// Out-of-fold scores: each example scored by a head trained on the other
/// `k − 1` folds (folds shuffled with `seed`). Examples sharing a `group`
/// key stay in one fold (e.g. the same question text), so a question is never
/// scored by a head that saw it.
pub fn cross_val_scores(spec: &TrainSpec, examples: &[Example], rows: &[Vec<f32>], k: usize, seed: u64) -> Result<Vec<f32>> {
    if k < 2 || k > examples.len() {
        return Err(RouterError::Train(format!("{k} folds for {} examples", examples.len())));
    }
    let fold = example_folds(examples, k, seed);
    let mut out = vec![0f32; examples.len()];
    for f in 0..k {
        let (mut tr_rows, mut tr_y) = (Vec::new(), Vec::new());
        let mut test = Vec::new();
        for (i, e) in examples.iter().enumerate() {
            if fold[i] == f {
                test.push(i);
            } else {
                tr_rows.push(rows[i].clone());
                tr_y.push(e.target(spec.label_mode));
            }
        }
        if test.is_empty() || tr_rows.is_empty() {
            continue;
        }
        let (head, _) = fit_head(spec, &tr_rows, &tr_y)?;
        for i in test {
            out[i] = head.probability(&rows[i]);
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    pub(crate) fn tiny_file() -> RouterFile {
        RouterFile {
            format: FORMAT.into(),
            version: FORMAT_VERSION,
            name: "tiny".into(),
            description: "test".into(),
            embedder: EmbedderSpec { id: "x".into(), dim: 2, max_tokens: 8, sha256: "ab".repeat(32) },
            views: vec![View::Full],
            features: vec![Feature::LogTokens],
            gate: None,
            head: Head::Logistic(LinearHead { mean: vec![0.0, 0.5, 1.0], scale: vec![1.0, 2.0, 0.5], weights: vec![0.25, -1.5, 3.0], bias: -0.125 }),
            threshold: 0.625,
            calibration: Some(Calibration { data: vec!["dev.jsonl".into()], n: 3, target_local: Some(0.8), target_recall: None, local_share: 0.75 }),
            training: Training {
                data: vec!["train.jsonl".into()],
                data_sha256: "00".repeat(32),
                n: 10,
                n_cloud: 3,
                label_mode: LabelMode::Soft,
                l2: 10.0,
                l2_gate_off: None,
                feature_boost: None,
                ensemble: None,
                solver: "newton-cholesky".into(),
                iterations: 7,
                converged: true,
                hearth_version: "0".into(),
            },
        }
    }

    #[test]
    fn router_is_shareable_across_threads() {
        fn check<T: Send + Sync>() {}
        check::<Router>();
    }

    #[test]
    fn router_file_round_trips() {
        let f = tiny_file();
        let back = RouterFile::from_json(&f.to_json(), "t").unwrap();
        assert_eq!(back, f);
        let d = std::env::temp_dir().join(format!("hearth-router-rt-{}.json", std::process::id()));
        f.save(&d).unwrap();
        let (text, src) = resolve(d.to_str().unwrap()).unwrap();
        assert_eq!(RouterFile::from_json(&text, &src).unwrap(), f);
        let _ = std::fs::remove_file(&d);
    }

    #[test]
    fn corrupted_files_are_typed_errors() {
        let good = tiny_file().to_json();
        let cases: Vec<(String, &str)> = vec![
            (good[..good.len() / 2].to_string(), "truncated"),
            (good.replace("\"hearth-router\"", "\"other\""), "format"),
            (good.replace("\"kind\": \"logistic\"", "\"kind\": \"forest\""), "head kind"),
            (good.replace("\"full\"", "\"tail\""), "view"),
            (good.replace("\"log_tokens\"", "\"vibes\""), "feature"),
            (good.replace("-1.5", "\"x\""), "weight type"),
            (good.replace("\"dim\": 2", "\"dim\": 3"), "size mismatch"),
            (good.replace("0.5,\n", "-0.5,\n").replace("\"scale\": [\n      1.0", "\"scale\": [\n      0.0"), "zero scale"),
            (good.replace("\"name\": \"tiny\"", "\"name\": \"tiny\", \"extra\": 1"), "unknown field"),
            ("[]".to_string(), "not an object"),
        ];
        for (text, what) in cases {
            assert_ne!(text, good, "{what}: the corruption did not apply");
            match RouterFile::from_json(&text, "bad.json") {
                Err(RouterError::Format { source_name, .. }) => assert_eq!(source_name, "bad.json"),
                other => panic!("{what}: {other:?}"),
            }
        }
        let v2 = good.replace("\"version\": 1", "\"version\": 2");
        assert!(matches!(RouterFile::from_json(&v2, "v2"), Err(RouterError::Version { found: 2, .. })));
    }

    #[test]
    fn names_and_paths_resolve() {
        assert!(matches!(resolve("no-such-router"), Err(RouterError::NotFound { .. })));
        assert!(matches!(resolve("../etc/passwd"), Err(RouterError::Io { .. })));
        assert!(matches!(resolve(""), Err(RouterError::NotFound { .. })));
        for name in ["default", "routellm"] {
            let (text, src) = resolve(name).unwrap();
            let f = RouterFile::from_json(&text, &src).unwrap();
            assert_eq!(f.name, name);
        }
    }

    #[test]
    fn gated_rows_split_the_weights() {
        assert_eq!(gate_expand(vec![2.0, -1.0], 1.0), vec![2.0, -1.0, 0.0, -0.0, 1.0]);
        assert_eq!(gate_expand(vec![2.0, -1.0], 0.0), vec![0.0, -0.0, 2.0, -1.0, 0.0]);
        let mut f = tiny_file();
        f.gate = Some(Feature::MultipleChoice);
        // 2 dims + 1 feature, gated: 2 * 3 + 1 inputs; the 3-weight head no longer fits.
        assert_eq!(f.input_dim(), 7);
        assert!(RouterFile::from_json(&f.to_json(), "g").is_err());
        let Head::Logistic(h) = &mut f.head;
        for v in [&mut h.mean, &mut h.scale, &mut h.weights] {
            v.resize(7, 1.0);
        }
        assert_eq!(RouterFile::from_json(&f.to_json(), "g").unwrap(), f);
    }

    fn gated_spec(l2_off: Option<f64>) -> TrainSpec {
        TrainSpec {
            name: "g".into(),
            description: String::new(),
            views: vec![View::Full],
            features: vec![],
            gate: Some(Feature::MultipleChoice),
            label_mode: LabelMode::Hard,
            fit: train::FitOptions { l2: 1.0, ..Default::default() },
            l2_gate_off: l2_off,
            ensemble: None,
            data: vec![],
        }
    }

    /// Rows of two kinds whose signal sits in different columns.
    fn gated_rows(n: usize) -> (Vec<Vec<f32>>, Vec<f32>) {
        let mut rows = Vec::new();
        let mut y = Vec::new();
        for i in 0..n {
            let g = (i % 3 == 0) as u8 as f32;
            let c = ((i / 3) % 2) as f32;
            let noise = ((i * 7919) % 13) as f32 / 13.0 - 0.5;
            let r = if g > 0.5 { vec![c + noise, 5.0 + noise] } else { vec![3.0 + noise, 2.0 * c - noise] };
            rows.push(gate_expand(r, g));
            y.push(c);
        }
        (rows, y)
    }

    #[test]
    fn a_gated_head_is_two_independent_heads() {
        let (rows, y) = gated_rows(120);
        for l2_off in [None, Some(30.0)] {
            let spec = gated_spec(l2_off);
            let (h, rep) = fit_head(&spec, &rows, &y).unwrap();
            assert!(rep.converged);
            assert_eq!(h, fit_head(&spec, &rows, &y).unwrap().0, "deterministic");
            // Each block fitted alone gives the same logits as the combined head.
            for (on, l2) in [(true, 1.0), (false, l2_off.unwrap_or(1.0))] {
                let idx: Vec<usize> = (0..rows.len()).filter(|&i| (rows[i][4] > 0.5) == on).collect();
                let sub: Vec<Vec<f32>> = idx.iter().map(|&i| if on { rows[i][..2].to_vec() } else { rows[i][2..4].to_vec() }).collect();
                let ys: Vec<f32> = idx.iter().map(|&i| y[i]).collect();
                let (b, _) = train::fit_logistic(&sub, &ys, &train::FitOptions { l2, ..Default::default() }).unwrap();
                for (k, &i) in idx.iter().enumerate() {
                    assert!((h.logit(&rows[i]) - b.logit(&sub[k])).abs() < 1e-3, "row {i}: {} vs {}", h.logit(&rows[i]), b.logit(&sub[k]));
                }
            }
        }
        // A heavier penalty on the gate-off block shrinks only its weights.
        let (a, _) = fit_head(&gated_spec(None), &rows, &y).unwrap();
        let (b, _) = fit_head(&gated_spec(Some(1e4)), &rows, &y).unwrap();
        assert_eq!(a.weights[..2], b.weights[..2]);
        assert!(b.weights[3].abs() < 0.1 * a.weights[3].abs(), "{:?} vs {:?}", a.weights, b.weights);
        // Ungated rows of the wrong shape are refused, not mis-split.
        assert!(matches!(fit_head(&gated_spec(None), &[vec![1.0, 2.0]], &[1.0]), Err(RouterError::Train(_))));
    }

    #[test]
    fn an_ensemble_replaces_only_the_gate_off_block() {
        let (rows, y) = gated_rows(150);
        let mut spec = gated_spec(None);
        spec.features = vec![Feature::LogTokens];
        let e = Ensemble { l2: vec![0.3, 3.0], boost: vec![1.0, 2.0], length_weight: 0.5, length_feature: Feature::LogTokens };
        spec.ensemble = Some(e.clone());
        spec.fit.boost_tail = 1;
        let (h, _) = fit_head(&spec, &rows, &y).unwrap();
        let (plain, _) = fit_head(&TrainSpec { ensemble: None, ..spec.clone() }, &rows, &y).unwrap();
        assert_eq!(h.weights[..2], plain.weights[..2], "the gate-on block is the single head");
        // The gate-off block is fit_ensemble on its rows, the length column
        // being the last (the one feature) of the block.
        let idx: Vec<usize> = (0..rows.len()).filter(|&i| rows[i][4] < 0.5).collect();
        let sub: Vec<Vec<f32>> = idx.iter().map(|&i| rows[i][2..4].to_vec()).collect();
        let ys: Vec<f32> = idx.iter().map(|&i| y[i]).collect();
        let opts = train::EnsembleOptions { l2s: e.l2.clone(), boosts: e.boost.clone(), length_weight: 0.5, length_col: Some(1) };
        let (b, _) = train::fit_ensemble(&sub, &ys, &spec.fit, &opts).unwrap();
        for (k, &i) in idx.iter().enumerate() {
            assert!((h.logit(&rows[i]) - b.logit(&sub[k])).abs() < 1e-3, "row {i}");
        }
        // Without the length feature among the spec's features a length weight is refused.
        spec.features = vec![Feature::LogWords];
        assert!(matches!(fit_head(&spec, &rows, &y), Err(RouterError::Train(_))));
    }

    #[test]
    fn the_ensemble_record_round_trips_and_is_checked() {
        let mut f = tiny_file();
        f.training.ensemble =
            Some(Ensemble { l2: vec![300.0, 1000.0], boost: vec![1.0, 3.0], length_weight: 0.5, length_feature: Feature::LogTokens });
        let text = f.to_json();
        assert!(text.contains("\"length_weight\": 0.5"), "{text}");
        assert_eq!(RouterFile::from_json(&text, "new").unwrap(), f);
        let bad = text.replace("\"length_feature\": \"log_tokens\"", "\"length_feature\": \"no_such_feature\"");
        assert!(matches!(RouterFile::from_json(&bad, "bad"), Err(RouterError::Format { .. })));
        let bad = text.replace("\"length_weight\": 0.5", "\"length_weight\": \"half\"");
        assert!(matches!(RouterFile::from_json(&bad, "bad"), Err(RouterError::Format { .. })));
    }

    #[test]
    fn nested_threshold_evaluation_is_held_out_and_deterministic() {
        let ex: Vec<Example> = (0..200)
            .map(|i| Example { id: i.into(), query: format!("q{i}"), cloud: i % 4 == 0, qualities: None, contaminated: false })
            .collect();
        // Column 0 carries the label with overlap; column 1 is noise.
        let rows: Vec<Vec<f32>> =
            (0..200).map(|i| vec![if i % 4 == 0 { 1.0 } else { 0.0 } + ((i * 37) % 11) as f32 / 8.0, ((i * 53) % 17) as f32]).collect();
        let spec = TrainSpec { gate: None, ..gated_spec(None) };
        let a = nested_threshold_eval(&spec, &ex, &rows, 5, 4, 3, 0.9).unwrap();
        assert_eq!(a.len(), 5);
        assert_eq!(a, nested_threshold_eval(&spec, &ex, &rows, 5, 4, 3, 0.9).unwrap());
        // 200 examples in 5 folds: each held-out fold is a fifth.
        assert!(a.iter().all(|m| m.n == 40));
        let recall: f64 = a.iter().filter_map(|m| m.cloud_recall).sum::<f64>() / a.len() as f64;
        assert!(recall > 0.6, "{recall}");
        assert!(nested_threshold_eval(&spec, &ex, &rows, 1, 4, 3, 0.9).is_err());
    }

    #[test]
    fn nested_selection_picks_inside_the_training_folds() {
        let ex: Vec<Example> = (0..120)
            .map(|i| Example { id: i.into(), query: format!("q{i}"), cloud: i % 3 == 0, qualities: None, contaminated: false })
            .collect();
        let rows: Vec<Vec<f32>> =
            (0..120).map(|i| vec![if i % 3 == 0 { 1.0 } else { 0.0 } + ((i * 37) % 11) as f32 / 10.0, ((i * 53) % 17) as f32]).collect();
        let good = TrainSpec { gate: None, ..gated_spec(None) };
        let mut bad = good.clone();
        // A penalty so heavy the head is flat: every score ties.
        bad.fit.l2 = 1e12;
        let auc = |s: &[f32], e: &[Example], _: &[Vec<f32>]| metrics::auc(s, &e.iter().map(|x| x.cloud).collect::<Vec<_>>()).unwrap_or(0.0);
        let (scores, chosen) = nested_select_scores(&[bad.clone(), good.clone()], &ex, &rows, 4, 3, 9, &auc).unwrap();
        assert_eq!(chosen, vec![1; 4], "the informative candidate wins in every outer fold");
        // With one candidate, nested selection is plain cross-validation.
        let (one, _) = nested_select_scores(std::slice::from_ref(&good), &ex, &rows, 4, 3, 9, &auc).unwrap();
        assert_eq!(one, cross_val_scores(&good, &ex, &rows, 4, 9).unwrap());
        assert_eq!(scores, one);
        assert!(nested_select_scores(&[], &ex, &rows, 4, 3, 9, &auc).is_err());
    }

    #[test]
    fn files_without_the_newer_optional_fields_load() {
        let f = tiny_file();
        let text = f.to_json();
        assert!(!text.contains("l2_gate_off"), "an unset field is not written, so older readers see the old layout");
        assert!(!text.contains("ensemble"));
        assert_eq!(RouterFile::from_json(&text, "old").unwrap(), f);
        let mut g = tiny_file();
        g.training.l2_gate_off = Some(300.0);
        g.features = vec![Feature::LogUnitWords];
        assert_eq!(RouterFile::from_json(&g.to_json(), "new").unwrap(), g);
    }

    #[test]
    fn views_cut_the_instruction_head() {
        assert_eq!(View::Head.apply("Summarize this:\n\nlong text"), "Summarize this:");
        assert_eq!(View::Head.apply("What does \"x\" mean?"), "What does ");
        assert_eq!(View::Head.apply("Translate “hola”"), "Translate ");
        assert_eq!(View::Head.apply("\"quoted\" first"), "");
        assert_eq!(View::Head.apply("plain"), "plain");
        assert_eq!(View::Full.apply("a\nb"), "a\nb");
    }

    #[test]
    fn cross_validation_never_scores_a_seen_query() {
        // Two copies of each query (same text, same row). Copies in
        // different folds would be scored by different heads and differ.
        let ex: Vec<Example> = (0..20)
            .map(|i| Example { id: i.into(), query: format!("q{}", i / 2), cloud: i % 4 < 2, qualities: None, contaminated: false })
            .collect();
        let rows: Vec<Vec<f32>> = (0..20).map(|i| vec![if i % 4 < 2 { 1.0 } else { -1.0 }, (i / 2) as f32]).collect();
        let spec = TrainSpec {
            name: "t".into(),
            description: String::new(),
            views: vec![View::Full],
            features: vec![],
            gate: None,
            label_mode: LabelMode::Hard,
            fit: train::FitOptions { l2: 1.0, ..Default::default() },
            l2_gate_off: None,
            ensemble: None,
            data: vec![],
        };
        let a = cross_val_scores(&spec, &ex, &rows, 5, 1).unwrap();
        assert_eq!(a, cross_val_scores(&spec, &ex, &rows, 5, 1).unwrap());
        // Copies of a query are in the same fold, so they get the same score.
        for i in (0..20).step_by(2) {
            assert_eq!(a[i], a[i + 1]);
        }
        // The signal is in column 0; held-out scores follow it.
        assert!(metrics::auc(&a, &ex.iter().map(|e| e.cloud).collect::<Vec<_>>()).unwrap() > 0.9);
        assert!(cross_val_scores(&spec, &ex, &rows, 1, 1).is_err());
    }
}
