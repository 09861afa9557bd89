//! BERT encoder: the bidirectional, post-norm transformer of Devlin et al.
//! (2019) as Hugging Face `BertModel` runs it, for sentence embeddings.
//!
//! ```text
//! x = LN(word[id] + pos[i] + type[tt])                       (embeddings)
//! per layer:  h = LN(x + (softmax(QKᵀ/√d + mask) V) Wo + bo)  (post-norm)
//!             x = LN(h + gelu(h Wup + bup) Wdown + bdown)
//! ```
//! (`modeling_bert.py`: `BertEmbeddings`, `BertSelfAttention`,
//! `BertSelfOutput`, `BertIntermediate`, `BertOutput`.) The result is the
//! last hidden state of every token; pooling belongs to the caller
//! (`hearth-embed` reads the sentence-transformers configuration).
//!
//! # Weights
//!
//! * A Hugging Face checkpoint ([`Bert::from_safetensors`]): tensors named
//!   `embeddings.word_embeddings.weight`,
//!   `encoder.layer.N.attention.self.query.weight`, ... with or without a
//!   `bert.` prefix, LayerNorm parameters as `weight`/`bias` or the older
//!   `gamma`/`beta`; F32, F16 or BF16. The hyper-parameters come in as a
//!   [`BertConfig`] (this crate has no JSON parser; `hearth-embed` reads
//!   `config.json`).
//! * A llama.cpp `bert` GGUF ([`Bert::from_gguf`]): `token_embd`,
//!   `position_embd`, `token_types`, `token_embd_norm`, `blk.N.attn_q|k|v`
//!   (or fused `attn_qkv`), `attn_output`, `attn_output_norm`, `ffn_up`,
//!   `ffn_down`, `layer_output_norm` (llama.cpp `llama-arch.cpp`,
//!   `src/models/bert.cpp`), any weight type hearth-kernels supports. Biases
//!   are optional there, as in `bert.cpp`.
//!
//! # Numerics and speed
//!
//! Float weights (F32/F16/BF16) are repacked into 16-column panels and
//! multiplied by a register-blocked 6 x 16 AVX2/FMA kernel (`gemm` below) with a
//! plain reference beside it. Panels hold f32 (default; F32/BF16 files) or
//! f16 (F16 files, where that is exact, or on request with
//! [`BertOptions::quantize`] = `F16`, which halves the weight bytes streamed
//! per call); the kernel widens f16 on load and all arithmetic and
//! accumulation is f32, as PyTorch's CPU matmul does, so f32 panels match
//! `transformers` to about 1e-6 relative. hearth-kernels' F32 path is a dot
//! product per (row, token) pair with no register blocking: measured 32 vs
//! 109 GFLOPS here for a 64-token 1536x384 product (one Zen 4 core), so the
//! panel kernel lives here until hearth-kernels grows an F32 tile. Attention
//! runs on the same micro-kernel (query rows against 16-key panels of Kᵀ,
//! probabilities against 16-column panels of V). Quantized weights (GGUF
//! Q8_0/Q4_K/..., or float weights quantized to Q8_0 at load) go through
//! `hearth_kernels::matmul_rows` with activations quantized to the weight's
//! `vec_dot_type`, exactly as the decoder does. GELU is the erf form BERT was
//! trained with (`hidden_act: "gelu"`), evaluated with a vectorisable
//! approximation of erfc (error below 2e-7·(1+|x|), see `simd::gelu_erf`);
//! llama.cpp's `bert.cpp` uses the tanh approximation instead, so its
//! embeddings differ slightly from Hugging Face's; ours follow Hugging Face.
//!
//! Sequences are *ragged*: a batch is a list of sequences of different
//! lengths whose tokens are concatenated for every matrix product and kept
//! apart only in attention, which is what a padded batch with an attention
//! mask computes, without spending work on padding. An optional per-sequence
//! key mask reproduces Hugging Face's `attention_mask` for inputs that do
//! carry padding (positions then count padding, as in `BertEmbeddings`).
//!
//! Deliberately absent: relative position embeddings
//! (`position_embedding_type` other than `absolute`), the pooler and
//! masked-LM/classifier heads, cross-attention/decoder use, RoPE BERT
//! variants (nomic, jina), and a KV cache (encoders see the whole input).

// `usize::is_multiple_of` needs Rust 1.87; the workspace supports 1.85.
#![allow(clippy::manual_is_multiple_of)]

use crate::error::ModelError;
use crate::pool::{SyncPtr, ThreadPool};
use crate::weights::{TensorSource, Weight};
use hearth_formats::{Dtype, GgmlType, GgufError, GgufFile, SafetensorsModel};
use std::cell::RefCell;
use std::sync::Arc;

/// Why a BERT model could not be loaded or run.
#[derive(Debug, thiserror::Error)]
pub enum BertError {
    #[error(transparent)]
    Gguf(#[from] GgufError),
    #[error(transparent)]
    Model(#[from] ModelError),
    #[error("tensor {name:?} is missing")]
    MissingTensor { name: String },
    #[error("tensor {name:?} has shape {found:?}, expected {expected:?}")]
    TensorShape { name: String, expected: Vec<u64>, found: Vec<u64> },
    #[error("tensor {name:?} has type {ty}, which cannot be used here ({why})")]
    TensorType { name: String, ty: String, why: &'static str },
    #[error("configuration value {key} = {value} is invalid: {why}")]
    Config { key: String, value: String, why: String },
    #[error("invalid input: {0}")]
    Input(String),
}

pub type Result<T> = std::result::Result<T, BertError>;

/// The FFN activation (`hidden_act` in `config.json`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum BertActivation {
    /// `gelu`: `x·Φ(x)` with the exact erf (BERT, MiniLM, BGE, E5, ...).
    Gelu,
    /// `gelu_new` / `gelu_pytorch_tanh`: the tanh approximation.
    GeluTanh,
    /// `relu`.
    Relu,
}

impl BertActivation {
    /// Maps a Hugging Face `hidden_act` name.
    pub fn from_hf(name: &str) -> Option<BertActivation> {
        match name {
            "gelu" => Some(BertActivation::Gelu),
            "gelu_new" | "gelu_pytorch_tanh" | "gelu_fast" => Some(BertActivation::GeluTanh),
            "relu" => Some(BertActivation::Relu),
            _ => None,
        }
    }
}

/// Hyper-parameters of a BERT encoder.
#[derive(Clone, Debug, PartialEq)]
pub struct BertConfig {
    pub n_vocab: usize,
    /// Hidden size.
    pub n_embd: usize,
    pub n_layer: usize,
    pub n_head: usize,
    /// Intermediate (FFN) size.
    pub n_ff: usize,
    /// Number of learned positions (`max_position_embeddings`).
    pub n_pos: usize,
    /// Token types (`type_vocab_size`); 0 when the model has none.
    pub n_type: usize,
    pub norm_eps: f32,
    pub activation: BertActivation,
    /// llama.cpp's `{arch}.pooling_type` when loaded from GGUF (0 none,
    /// 1 mean, 2 cls, 3 last, 4 rank); `None` for Hugging Face folders.
    pub gguf_pooling: Option<u32>,
}

/// Bounds that keep a hostile header from asking for absurd buffers before
/// any tensor is checked; far above any BERT ever published.
const MAX_EMBD: usize = 1 << 14;
const MAX_LAYERS: usize = 256;
const MAX_FF: usize = 1 << 17;
const MAX_POS: usize = 1 << 16;
const MAX_VOCAB: usize = 1 << 22;
const MAX_TYPES: usize = 1 << 10;
const MAX_HEAD_DIM: usize = 512;

impl BertConfig {
    pub fn head_dim(&self) -> usize {
        self.n_embd / self.n_head.max(1)
    }

    /// Checks ranges and divisibility; every loader calls this first.
    pub fn validate(&self) -> Result<()> {
        let bad = |key: &str, value: usize, why: &str| {
            Err(BertError::Config { key: key.into(), value: value.to_string(), why: why.into() })
        };
        if self.n_embd == 0 || self.n_embd > MAX_EMBD {
            return bad("hidden_size", self.n_embd, "out of range");
        }
        if self.n_layer == 0 || self.n_layer > MAX_LAYERS {
            return bad("num_hidden_layers", self.n_layer, "out of range");
        }
        if self.n_head == 0 || self.n_embd % self.n_head != 0 {
            return bad("num_attention_heads", self.n_head, "must divide hidden_size");
        }
        if self.head_dim() > MAX_HEAD_DIM {
            return bad("num_attention_heads", self.n_head, "head size above 512");
        }
        if self.n_ff == 0 || self.n_ff > MAX_FF {
            return bad("intermediate_size", self.n_ff, "out of range");
        }
        if self.n_pos == 0 || self.n_pos > MAX_POS {
            return bad("max_position_embeddings", self.n_pos, "out of range");
        }
        if self.n_vocab == 0 || self.n_vocab > MAX_VOCAB {
            return bad("vocab_size", self.n_vocab, "out of range");
        }
        if self.n_type > MAX_TYPES {
            return bad("type_vocab_size", self.n_type, "out of range");
        }
        if !(self.norm_eps.is_finite() && self.norm_eps >= 0.0) {
            return Err(BertError::Config {
                key: "layer_norm_eps".into(),
                value: self.norm_eps.to_string(),
                why: "must be finite and >= 0".into(),
            });
        }
        Ok(())
    }
}

/// Load-time choices.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct BertOptions {
    /// Store float matrix weights in this type at load: `F16` (f16 panels,
    /// f32 arithmetic: half the memory traffic, embeddings move by ~1e-6 in
    /// cosine) or `Q8_0` (hearth-kernels' quantized path: ~2e-3). `None`
    /// keeps f32 (f16 files stay f16, which is exact).
    pub quantize: Option<GgmlType>,
}

/// Float weights repacked for the panel kernel: panel `p` holds output rows
/// `16p..16p+16` (zero-padded past `n_out`), stored k-major so one k step is
/// one line of 16 weights: `line[p*k + kk][j] = W[16p + j][kk]`. Lines are
/// f32 (64 bytes) or f16 (32 bytes, widened in the kernel; the arithmetic
/// stays f32).
#[derive(Clone)]
pub struct Packed {
    n_out: usize,
    k: usize,
    data: PanelData,
}

#[derive(Clone)]
pub(crate) enum PanelData {
    F32(Vec<Line>),
    F16(Vec<LineH>),
}

/// One k step of an f32 panel, cache-line aligned.
#[derive(Clone, Copy)]
#[repr(C, align(64))]
pub(crate) struct Line([f32; NR]);

/// One k step of an f16 panel (IEEE half bits), half a cache line.
#[derive(Clone, Copy)]
#[repr(C, align(32))]
pub(crate) struct LineH([u16; NR]);

/// A panel line the micro-kernel can read.
pub(crate) trait PanelLine: Copy + Send + Sync {
    /// Whether the AVX2 kernel must widen f16 (else it loads f32).
    const HALF: bool;
    fn get(&self) -> [f32; NR];
}

impl PanelLine for Line {
    const HALF: bool = false;
    fn get(&self) -> [f32; NR] {
        self.0
    }
}

impl PanelLine for LineH {
    const HALF: bool = true;
    fn get(&self) -> [f32; NR] {
        self.0.map(|h| half::f16::from_bits(h).to_f32())
    }
}

/// Panel width (output columns per micro-tile) and micro-tile height
/// (tokens): 6 x 16 uses 12 of the 16 ymm registers as accumulators.
const NR: usize = 16;
const MR: usize = 6;

impl Packed {
    /// Packs `n_out` rows of `k` values given row by row; `half` stores the
    /// lines as f16 (round to nearest even).
    fn pack(n_out: usize, k: usize, half: bool, mut row: impl FnMut(usize, &mut [f32])) -> Packed {
        let n_panels = n_out.div_ceil(NR);
        let mut data = vec![Line([0.0; NR]); n_panels * k];
        let mut buf = vec![0f32; k];
        for r in 0..n_out {
            row(r, &mut buf);
            let (p, j) = (r / NR, r % NR);
            for (kk, &v) in buf.iter().enumerate() {
                data[p * k + kk].0[j] = v;
            }
        }
        let data = if half {
            PanelData::F16(data.iter().map(|l| LineH(l.0.map(|v| half::f16::from_f32(v).to_bits()))).collect())
        } else {
            PanelData::F32(data)
        };
        Packed { n_out, k, data }
    }

    fn n_panels(&self) -> usize {
        self.n_out.div_ceil(NR)
    }

    /// Whether the weights are held as f16.
    pub fn is_f16(&self) -> bool {
        matches!(self.data, PanelData::F16(_))
    }
}

/// A linear layer `y = W x + b` with `W` of `n_out` rows of `k`.
#[derive(Clone)]
pub enum LinearWeight {
    Packed(Packed),
    /// Quantized weights, run by hearth-kernels.
    Quant(Weight),
}

#[derive(Clone)]
pub struct Linear {
    pub w: LinearWeight,
    pub b: Vec<f32>,
}

impl std::fmt::Debug for Linear {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match &self.w {
            LinearWeight::Packed(p) => write!(f, "Linear({} {}x{})", if p.is_f16() { "f16" } else { "f32" }, p.n_out, p.k),
            LinearWeight::Quant(w) => write!(f, "Linear({:?})", w),
        }
    }
}

impl Linear {
    pub fn n_out(&self) -> usize {
        match &self.w {
            LinearWeight::Packed(p) => p.n_out,
            LinearWeight::Quant(w) => w.rows,
        }
    }

    pub fn k(&self) -> usize {
        match &self.w {
            LinearWeight::Packed(p) => p.k,
            LinearWeight::Quant(w) => w.cols,
        }
    }
}

#[derive(Clone, Debug)]
pub struct BertLayer {
    /// Q, K and V in one matrix of `3·n_embd` rows, or one per segment when
    /// GGUF gives them in different quantized types.
    pub qkv: Vec<Linear>,
    pub o: Linear,
    pub attn_norm: (Vec<f32>, Vec<f32>),
    pub up: Linear,
    pub down: Linear,
    pub out_norm: (Vec<f32>, Vec<f32>),
}

pub struct Bert {
    pub cfg: BertConfig,
    word: Weight,
    pos: Vec<f32>,
    types: Vec<f32>,
    emb_norm: (Vec<f32>, Vec<f32>),
    layers: Vec<BertLayer>,
}

impl std::fmt::Debug for Bert {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Bert").field("cfg", &self.cfg).field("word", &self.word).finish()
    }
}

/// One sequence of a batch.
#[derive(Clone, Copy, Debug)]
pub struct BertInput<'a> {
    pub ids: &'a [u32],
    /// Token-type ids (segment A/B); all zeros when `None`.
    pub type_ids: Option<&'a [u32]>,
    /// Hugging Face's `attention_mask` for this row: `false` keys are not
    /// attended to. `None` means every token is real.
    pub mask: Option<&'a [bool]>,
}

impl<'a> BertInput<'a> {
    pub fn new(ids: &'a [u32]) -> BertInput<'a> {
        BertInput { ids, type_ids: None, mask: None }
    }
}

/// Reusable buffers so repeated calls allocate nothing once warm.
#[derive(Default)]
pub struct BertScratch {
    x: Vec<f32>,
    h: Vec<f32>,
    qkv: Vec<f32>,
    attn: Vec<f32>,
    ffn: Vec<f32>,
    acts: Vec<u8>,
}

fn grow(v: &mut Vec<f32>, n: usize) {
    if v.len() < n {
        v.resize(n, 0.0);
    }
}

// ---------------------------------------------------------------------------
// Loading

/// A raw tensor from either container: PyTorch-order shape, ggml type.
struct Raw<'a> {
    ty: GgmlType,
    /// Slowest-varying first (PyTorch order).
    shape: Vec<u64>,
    bytes: &'a [u8],
}

enum Src<'a> {
    St { st: &'a SafetensorsModel, prefix: &'static str },
    Gguf { file: &'a Arc<GgufFile> },
}

impl<'a> Src<'a> {
    fn get(&self, name: &str) -> Result<Option<Raw<'a>>> {
        match self {
            Src::St { st, prefix } => {
                let full = format!("{prefix}{name}");
                let Some(t) = st.tensor(&full) else { return Ok(None) };
                let ty = match t.info.dtype {
                    Dtype::F32 => GgmlType::F32,
                    Dtype::F16 => GgmlType::F16,
                    Dtype::BF16 => GgmlType::BF16,
                    other => {
                        return Err(BertError::TensorType { name: full, ty: other.to_string(), why: "expected F32, F16 or BF16" })
                    }
                };
                Ok(Some(Raw { ty, shape: t.info.shape.clone(), bytes: t.data() }))
            }
            Src::Gguf { file } => {
                let Some(info) = file.tensor(name) else { return Ok(None) };
                let mut dims = info.dims.clone();
                while dims.len() > 1 && dims.last() == Some(&1) {
                    dims.pop();
                }
                dims.reverse();
                Ok(Some(Raw { ty: info.ty, shape: dims, bytes: file.tensor_data(info) }))
            }
        }
    }

    fn req(&self, name: &str) -> Result<Raw<'a>> {
        self.get(name)?.ok_or_else(|| BertError::MissingTensor { name: self.full(name) })
    }

    fn full(&self, name: &str) -> String {
        match self {
            Src::St { prefix, .. } => format!("{prefix}{name}"),
            Src::Gguf { .. } => name.to_string(),
        }
    }

    /// The first of `names` that exists.
    fn req_any(&self, names: &[&str]) -> Result<(String, Raw<'a>)> {
        for n in names {
            if let Some(r) = self.get(n)? {
                return Ok((n.to_string(), r));
            }
        }
        Err(BertError::MissingTensor { name: self.full(names[0]) })
    }
}

fn check_shape(src: &Src<'_>, name: &str, raw: &Raw<'_>, expected: &[u64]) -> Result<()> {
    if raw.shape != expected {
        return Err(BertError::TensorShape { name: src.full(name), expected: expected.to_vec(), found: raw.shape.clone() });
    }
    if !hearth_kernels::is_supported_type(raw.ty) || matches!(raw.ty, GgmlType::Q8_1 | GgmlType::Q8_K) {
        return Err(BertError::TensorType { name: src.full(name), ty: raw.ty.to_string(), why: "not a weight storage type" });
    }
    Ok(())
}

fn is_float(ty: GgmlType) -> bool {
    matches!(ty, GgmlType::F32 | GgmlType::F16 | GgmlType::BF16)
}

/// A vector of `len` values converted to f32.
fn vector(src: &Src<'_>, name: &str, len: usize) -> Result<Vec<f32>> {
    let raw = src.req(name)?;
    vector_from(src, name, &raw, len)
}

fn vector_from(src: &Src<'_>, name: &str, raw: &Raw<'_>, len: usize) -> Result<Vec<f32>> {
    check_shape(src, name, raw, &[len as u64])?;
    if !is_float(raw.ty) {
        return Err(BertError::TensorType { name: src.full(name), ty: raw.ty.to_string(), why: "vectors must be F32, F16 or BF16" });
    }
    let mut out = vec![0f32; len];
    hearth_kernels::dequantize_row(raw.ty, raw.bytes, &mut out);
    Ok(out)
}

fn opt_vector(src: &Src<'_>, name: &str, len: usize) -> Result<Option<Vec<f32>>> {
    match src.get(name)? {
        Some(raw) => vector_from(src, name, &raw, len).map(Some),
        None => Ok(None),
    }
}

/// A whole table (rows x cols) dequantized to f32, row-major.
fn table(src: &Src<'_>, name: &str, rows: usize, cols: usize) -> Result<Vec<f32>> {
    let raw = src.req(name)?;
    check_shape(src, name, &raw, &[rows as u64, cols as u64])?;
    let rb = hearth_kernels::row_bytes(raw.ty, cols);
    let mut out = vec![0f32; rows * cols];
    for (r, dst) in out.chunks_exact_mut(cols.max(1)).enumerate() {
        hearth_kernels::dequantize_row(raw.ty, &raw.bytes[r * rb..(r + 1) * rb], dst);
    }
    Ok(out)
}

/// Row-major matrices `(name, raw)` stacked into one linear layer.
fn linear(parts: &[(String, Raw<'_>)], k: usize, bias: Vec<f32>, opts: &BertOptions) -> Result<Vec<Linear>> {
    if let Some(t) = opts.quantize {
        if !matches!(t, GgmlType::F16 | GgmlType::Q8_0) {
            return Err(BertError::Config { key: "quantize".into(), value: t.to_string(), why: "supported: F16, Q8_0".into() });
        }
    }
    let all_float = parts.iter().all(|(_, r)| is_float(r.ty));
    if all_float && matches!(opts.quantize, None | Some(GgmlType::F16)) {
        // f16 panels when asked, or when the file holds f16 already (then
        // they are exact and half the memory traffic).
        let half = opts.quantize == Some(GgmlType::F16) || parts.iter().all(|(_, r)| r.ty == GgmlType::F16);
        let n_out: usize = parts.iter().map(|(_, r)| r.shape[0] as usize).sum();
        let mut seg = Vec::with_capacity(parts.len());
        let mut acc = 0usize;
        for (_, r) in parts {
            seg.push((acc, r));
            acc += r.shape[0] as usize;
        }
        let packed = Packed::pack(n_out, k, half, |row, buf| {
            let (start, r) = seg.iter().rev().find(|(s, _)| *s <= row).copied().unwrap_or((0, seg[0].1));
            let rb = hearth_kernels::row_bytes(r.ty, k);
            let i = row - start;
            hearth_kernels::dequantize_row(r.ty, &r.bytes[i * rb..(i + 1) * rb], buf);
        });
        return Ok(vec![Linear { w: LinearWeight::Packed(packed), b: bias }]);
    }
    // Quantized: keep each part in its own type (GGUF Q4_K_M files mix
    // types within a layer); float parts are quantized to Q8_0 on request,
    // else run by hearth-kernels in their own type.
    let target = opts.quantize.filter(|&t| t == GgmlType::Q8_0);
    if let Some(t) = target {
        if k % t.block_size() != 0 {
            return Err(BertError::Config {
                key: "quantize".into(),
                value: t.to_string(),
                why: format!("width {k} is not a whole number of {t} blocks"),
            });
        }
    }
    let mut out = Vec::with_capacity(parts.len());
    let mut off = 0usize;
    for (name, r) in parts {
        let rows = r.shape[0] as usize;
        let w = match target {
            Some(t) if is_float(r.ty) => {
                let rb = hearth_kernels::row_bytes(r.ty, k);
                let qb = hearth_kernels::row_bytes(t, k);
                let mut data = vec![0u8; rows * qb];
                let mut buf = vec![0f32; k];
                for i in 0..rows {
                    hearth_kernels::dequantize_row(r.ty, &r.bytes[i * rb..(i + 1) * rb], &mut buf);
                    hearth_kernels::quantize_row_ref(t, &buf, &mut data[i * qb..(i + 1) * qb]);
                }
                Weight::from_owned(t, rows, k, data)?
            }
            _ => {
                if !hearth_kernels::is_weight_type(r.ty) {
                    return Err(BertError::TensorType { name: name.clone(), ty: r.ty.to_string(), why: "no dot product for this type" });
                }
                Weight::from_owned(r.ty, rows, k, r.bytes.to_vec())?
            }
        };
        out.push(Linear { w: LinearWeight::Quant(w), b: bias[off..off + rows].to_vec() });
        off += rows;
    }
    Ok(out)
}

/// Reads a `rows x cols` matrix, checking its shape.
fn matrix<'a>(src: &Src<'a>, name: &str, rows: usize, cols: usize) -> Result<(String, Raw<'a>)> {
    let raw = src.req(name)?;
    check_shape(src, name, &raw, &[rows as u64, cols as u64])?;
    Ok((src.full(name), raw))
}

impl Bert {
    /// Loads a Hugging Face `BertModel` checkpoint. `cfg` comes from its
    /// `config.json`.
    pub fn from_safetensors(cfg: BertConfig, st: &SafetensorsModel, opts: &BertOptions) -> Result<Bert> {
        cfg.validate()?;
        let prefix = if st.tensor("embeddings.word_embeddings.weight").is_some() {
            ""
        } else if st.tensor("bert.embeddings.word_embeddings.weight").is_some() {
            "bert."
        } else {
            return Err(BertError::MissingTensor { name: "embeddings.word_embeddings.weight".into() });
        };
        let src = Src::St { st, prefix };
        let e = cfg.n_embd;
        let ln = |base: &str| -> Result<(Vec<f32>, Vec<f32>)> {
            let (wn, w) = src.req_any(&[&format!("{base}.weight"), &format!("{base}.gamma")])?;
            let (bn, b) = src.req_any(&[&format!("{base}.bias"), &format!("{base}.beta")])?;
            Ok((vector_from(&src, &wn, &w, e)?, vector_from(&src, &bn, &b, e)?))
        };
        let (word_name, word_raw) = matrix(&src, "embeddings.word_embeddings.weight", cfg.n_vocab, e)?;
        let word = Weight::from_owned(word_raw.ty, cfg.n_vocab, e, word_raw.bytes.to_vec())
            .map_err(|_| BertError::TensorType { name: word_name, ty: word_raw.ty.to_string(), why: "bad size" })?;
        let pos = table(&src, "embeddings.position_embeddings.weight", cfg.n_pos, e)?;
        let types = if cfg.n_type > 0 { table(&src, "embeddings.token_type_embeddings.weight", cfg.n_type, e)? } else { Vec::new() };
        let emb_norm = ln("embeddings.LayerNorm")?;
        let mut layers = Vec::with_capacity(cfg.n_layer);
        for i in 0..cfg.n_layer {
            let p = format!("encoder.layer.{i}");
            let q = matrix(&src, &format!("{p}.attention.self.query.weight"), e, e)?;
            let k = matrix(&src, &format!("{p}.attention.self.key.weight"), e, e)?;
            let v = matrix(&src, &format!("{p}.attention.self.value.weight"), e, e)?;
            let mut qkv_b = vector(&src, &format!("{p}.attention.self.query.bias"), e)?;
            qkv_b.extend(vector(&src, &format!("{p}.attention.self.key.bias"), e)?);
            qkv_b.extend(vector(&src, &format!("{p}.attention.self.value.bias"), e)?);
            let qkv = linear(&[q, k, v], e, qkv_b, opts)?;
            let o = linear(
                &[matrix(&src, &format!("{p}.attention.output.dense.weight"), e, e)?],
                e,
                vector(&src, &format!("{p}.attention.output.dense.bias"), e)?,
                opts,
            )?;
            let attn_norm = ln(&format!("{p}.attention.output.LayerNorm"))?;
            let up = linear(
                &[matrix(&src, &format!("{p}.intermediate.dense.weight"), cfg.n_ff, e)?],
                e,
                vector(&src, &format!("{p}.intermediate.dense.bias"), cfg.n_ff)?,
                opts,
            )?;
            let down = linear(
                &[matrix(&src, &format!("{p}.output.dense.weight"), e, cfg.n_ff)?],
                cfg.n_ff,
                vector(&src, &format!("{p}.output.dense.bias"), e)?,
                opts,
            )?;
            let out_norm = ln(&format!("{p}.output.LayerNorm"))?;
            layers.push(BertLayer { qkv, o: one(o), attn_norm, up: one(up), down: one(down), out_norm });
        }
        Ok(Bert { cfg, word, pos, types, emb_norm, layers })
    }

    /// Loads a llama.cpp `bert` GGUF (hyper-parameters from its metadata).
    pub fn from_gguf(file: Arc<GgufFile>, opts: &BertOptions) -> Result<Bert> {
        let arch = file.get_str("general.architecture")?.ok_or(ModelError::NoArchitecture)?.to_string();
        if arch != "bert" {
            return Err(BertError::Config { key: "general.architecture".into(), value: arch, why: "expected \"bert\"".into() });
        }
        let u = |key: &str| -> Result<usize> {
            Ok(file.get_u64(key)?.ok_or_else(|| ModelError::MissingHparam { key: key.into() })? as usize)
        };
        if file.get_bool("bert.attention.causal")? == Some(true) {
            return Err(BertError::Config { key: "bert.attention.causal".into(), value: "true".into(), why: "BERT is bidirectional".into() });
        }
        let word_info = file.tensor("token_embd.weight").ok_or_else(|| BertError::MissingTensor { name: "token_embd.weight".into() })?;
        let n_vocab = word_info.dims.get(1).copied().unwrap_or(0) as usize;
        let n_type = match file.tensor("token_types.weight") {
            Some(t) => t.dims.get(1).copied().unwrap_or(1) as usize,
            None => 0,
        };
        let cfg = BertConfig {
            n_vocab,
            n_embd: u("bert.embedding_length")?,
            n_layer: u("bert.block_count")?,
            n_head: u("bert.attention.head_count")?,
            n_ff: u("bert.feed_forward_length")?,
            n_pos: u("bert.context_length")?,
            n_type,
            norm_eps: file
                .get_f32("bert.attention.layer_norm_epsilon")?
                .ok_or_else(|| ModelError::MissingHparam { key: "bert.attention.layer_norm_epsilon".into() })?,
            activation: BertActivation::Gelu,
            gguf_pooling: file.get_u32("bert.pooling_type")?,
        };
        cfg.validate()?;
        let src = Src::Gguf { file: &file };
        let e = cfg.n_embd;
        let word = TensorSource::new(Arc::clone(&file)).matrix("token_embd.weight", n_vocab, e)?;
        if !hearth_kernels::is_supported_type(word.ty) {
            return Err(BertError::TensorType { name: "token_embd.weight".into(), ty: word.ty.to_string(), why: "cannot be dequantized" });
        }
        let pos = table(&src, "position_embd.weight", cfg.n_pos, e)?;
        let types = if n_type > 0 { table(&src, "token_types.weight", n_type, e)? } else { Vec::new() };
        let ln = |base: &str| -> Result<(Vec<f32>, Vec<f32>)> {
            Ok((vector(&src, &format!("{base}.weight"), e)?, vector(&src, &format!("{base}.bias"), e)?))
        };
        let bias = |name: &str, len: usize| -> Result<Vec<f32>> { Ok(opt_vector(&src, name, len)?.unwrap_or_else(|| vec![0.0; len])) };
        let emb_norm = ln("token_embd_norm")?;
        let mut layers = Vec::with_capacity(cfg.n_layer);
        for i in 0..cfg.n_layer {
            let p = format!("blk.{i}");
            let qkv = if src.get(&format!("{p}.attn_qkv.weight"))?.is_some() {
                let m = matrix(&src, &format!("{p}.attn_qkv.weight"), 3 * e, e)?;
                linear(&[m], e, bias(&format!("{p}.attn_qkv.bias"), 3 * e)?, opts)?
            } else {
                let q = matrix(&src, &format!("{p}.attn_q.weight"), e, e)?;
                let k = matrix(&src, &format!("{p}.attn_k.weight"), e, e)?;
                let v = matrix(&src, &format!("{p}.attn_v.weight"), e, e)?;
                let mut b = bias(&format!("{p}.attn_q.bias"), e)?;
                b.extend(bias(&format!("{p}.attn_k.bias"), e)?);
                b.extend(bias(&format!("{p}.attn_v.bias"), e)?);
                linear(&[q, k, v], e, b, opts)?
            };
            let o = linear(&[matrix(&src, &format!("{p}.attn_output.weight"), e, e)?], e, bias(&format!("{p}.attn_output.bias"), e)?, opts)?;
            let attn_norm = ln(&format!("{p}.attn_output_norm"))?;
            let up = linear(
                &[matrix(&src, &format!("{p}.ffn_up.weight"), cfg.n_ff, e)?],
                e,
                bias(&format!("{p}.ffn_up.bias"), cfg.n_ff)?,
                opts,
            )?;
            let down = linear(
                &[matrix(&src, &format!("{p}.ffn_down.weight"), e, cfg.n_ff)?],
                cfg.n_ff,
                bias(&format!("{p}.ffn_down.bias"), e)?,
                opts,
            )?;
            let out_norm = ln(&format!("{p}.layer_output_norm"))?;
            layers.push(BertLayer { qkv, o: one(o), attn_norm, up: one(up), down: one(down), out_norm });
        }
        Ok(Bert { cfg, word, pos, types, emb_norm, layers })
    }

    pub fn n_embd(&self) -> usize {
        self.cfg.n_embd
    }

    /// Runs the encoder over `seqs` and writes the last hidden state of every
    /// token, sequences one after another (`Σ len × n_embd` values), into
    /// `out`.
    pub fn forward(&self, seqs: &[BertInput<'_>], pool: &ThreadPool, s: &mut BertScratch, out: &mut Vec<f32>) -> Result<()> {
        let cfg = &self.cfg;
        let e = cfg.n_embd;
        let mut total = 0usize;
        for (si, q) in seqs.iter().enumerate() {
            let n = q.ids.len();
            if n > cfg.n_pos {
                return Err(BertError::Input(format!("sequence {si} has {n} tokens; the model has {} positions", cfg.n_pos)));
            }
            if let Some(&bad) = q.ids.iter().find(|&&t| t as usize >= cfg.n_vocab) {
                return Err(BertError::Input(format!("token id {bad} is outside the vocabulary (size {})", cfg.n_vocab)));
            }
            if let Some(tt) = q.type_ids {
                if tt.len() != n {
                    return Err(BertError::Input(format!("sequence {si}: {} type ids for {n} tokens", tt.len())));
                }
                if let Some(&bad) = tt.iter().find(|&&t| t as usize >= cfg.n_type.max(1)) {
                    return Err(BertError::Input(format!("token type {bad} is out of range (the model has {})", cfg.n_type)));
                }
            }
            if let Some(m) = q.mask {
                if m.len() != n {
                    return Err(BertError::Input(format!("sequence {si}: mask of {} for {n} tokens", m.len())));
                }
                if n > 0 && !m.iter().any(|&b| b) {
                    return Err(BertError::Input(format!("sequence {si}: the attention mask hides every token")));
                }
            }
            total += n;
        }
        out.clear();
        if total == 0 {
            return Ok(());
        }

        // Embeddings.
        grow(&mut s.x, total * e);
        let mut row = 0;
        for q in seqs {
            for (i, &id) in q.ids.iter().enumerate() {
                let dst = &mut s.x[row * e..(row + 1) * e];
                self.word.dequantize_row(id as usize, dst);
                let p = &self.pos[i * e..(i + 1) * e];
                let tt = q.type_ids.map_or(0, |t| t[i] as usize);
                if !self.types.is_empty() {
                    let ty = &self.types[tt * e..(tt + 1) * e];
                    // BertEmbeddings: (word + type) + pos, in that order.
                    for ((d, &a), &b) in dst.iter_mut().zip(ty).zip(p) {
                        *d = (*d + a) + b;
                    }
                } else {
                    for (d, &b) in dst.iter_mut().zip(p) {
                        *d += b;
                    }
                }
                row += 1;
            }
        }
        layer_norm_rows(pool, &mut s.x[..total * e], e, &self.emb_norm.0, &self.emb_norm.1, cfg.norm_eps);

        let spans: Vec<(usize, usize, Option<&[bool]>)> = {
            let mut r = 0;
            seqs.iter()
                .map(|q| {
                    let sp = (r, q.ids.len(), q.mask);
                    r += q.ids.len();
                    sp
                })
                .collect()
        };
        let nqkv = 3 * e;
        grow(&mut s.qkv, total * nqkv);
        grow(&mut s.attn, total * e);
        grow(&mut s.h, total * e);
        grow(&mut s.ffn, total * cfg.n_ff);
        for l in &self.layers {
            let mut col = 0;
            for part in &l.qkv {
                linear_forward(pool, part, &s.x[..total * e], total, &mut s.qkv[..total * nqkv], nqkv, col, Epilogue::None, &mut s.acts);
                col += part.n_out();
            }
            attention(pool, &s.qkv[..total * nqkv], &spans, cfg.n_head, e, &mut s.attn[..total * e]);
            linear_forward(pool, &l.o, &s.attn[..total * e], total, &mut s.h[..total * e], e, 0, Epilogue::Residual(&s.x[..total * e]), &mut s.acts);
            layer_norm_rows(pool, &mut s.h[..total * e], e, &l.attn_norm.0, &l.attn_norm.1, cfg.norm_eps);
            linear_forward(pool, &l.up, &s.h[..total * e], total, &mut s.ffn[..total * cfg.n_ff], cfg.n_ff, 0, Epilogue::Act(cfg.activation), &mut s.acts);
            linear_forward(pool, &l.down, &s.ffn[..total * cfg.n_ff], total, &mut s.x[..total * e], e, 0, Epilogue::Residual(&s.h[..total * e]), &mut s.acts);
            layer_norm_rows(pool, &mut s.x[..total * e], e, &l.out_norm.0, &l.out_norm.1, cfg.norm_eps);
        }
        out.extend_from_slice(&s.x[..total * e]);
        Ok(())
    }
}

fn one(mut v: Vec<Linear>) -> Linear {
    // `linear` returns one part per input matrix; single-matrix callers get one.
    v.swap_remove(0)
}

// ---------------------------------------------------------------------------
// Forward pieces

/// What happens to each output value after `W x + b`.
#[derive(Clone, Copy)]
pub(crate) enum Epilogue<'a> {
    None,
    Act(BertActivation),
    /// Adds `r[t * ldo + col]` (same layout as the output): the residual.
    Residual(&'a [f32]),
}

/// `out[t*ldo + col0 + n] = epi(W[n]·x[t] + b[n])` for all `t` rows of `x`
/// (each `k` long).
#[allow(clippy::too_many_arguments)]
fn linear_forward(
    pool: &ThreadPool,
    lin: &Linear,
    x: &[f32],
    t: usize,
    out: &mut [f32],
    ldo: usize,
    col0: usize,
    epi: Epilogue<'_>,
    acts: &mut Vec<u8>,
) {
    match &lin.w {
        LinearWeight::Packed(p) => gemm::gemm(pool, p, &lin.b, x, t, out, ldo, col0, epi),
        LinearWeight::Quant(w) => quant_matmul(pool, w, &lin.b, x, t, out, ldo, col0, epi, acts),
    }
}

#[allow(clippy::too_many_arguments)]
fn quant_matmul(
    pool: &ThreadPool,
    w: &Weight,
    bias: &[f32],
    x: &[f32],
    t: usize,
    out: &mut [f32],
    ldo: usize,
    col0: usize,
    epi: Epilogue<'_>,
    acts: &mut Vec<u8>,
) {
    let k = w.cols;
    let at = hearth_kernels::vec_dot_type(w.ty);
    let ab = hearth_kernels::row_bytes(at, k);
    acts.clear();
    acts.resize(t * ab, 0);
    for r in 0..t {
        hearth_kernels::quantize_activation(at, &x[r * k..(r + 1) * k], &mut acts[r * ab..(r + 1) * ab]);
    }
    let rows = w.rows;
    let rb = w.row_bytes();
    let wb = w.bytes();
    let a = &acts[..];
    let optr = SyncPtr::new(out);
    let chunk = pool.chunk_for(rows, 4, 16);
    pool.parallel_for(rows, chunk, &|r0, r1| {
        let n = r1 - r0;
        TILE.with(|tile| {
            let mut tile = tile.borrow_mut();
            tile.clear();
            tile.resize(t * n, 0.0);
            hearth_kernels::matmul_rows(w.ty, k, &wb[r0 * rb..r1 * rb], n, a, t, &mut tile, n);
            for ti in 0..t {
                // SAFETY: this task owns columns col0+r0..col0+r1 of every row.
                let o = unsafe { optr.slice(ti * ldo + col0 + r0, n) };
                for (j, (dst, &v)) in o.iter_mut().zip(&tile[ti * n..(ti + 1) * n]).enumerate() {
                    *dst = v + bias[r0 + j];
                }
                match epi {
                    Epilogue::None => {}
                    Epilogue::Act(act) => simd::activate(act, o),
                    Epilogue::Residual(res) => {
                        let rr = &res[ti * ldo + col0 + r0..ti * ldo + col0 + r1];
                        for (d, &v) in o.iter_mut().zip(rr) {
                            *d += v;
                        }
                    }
                }
            }
        })
    });
}

thread_local! {
    static TILE: RefCell<Vec<f32>> = const { RefCell::new(Vec::new()) };
    static ATTN: RefCell<AttnBuf> = RefCell::new(AttnBuf::default());
}

/// LayerNorm of every `e`-wide row of `x`, in place, over the pool.
fn layer_norm_rows(pool: &ThreadPool, x: &mut [f32], e: usize, w: &[f32], b: &[f32], eps: f32) {
    let rows = x.len() / e;
    // A query's worth of rows takes microseconds: cheaper inline than a
    // round trip through the pool.
    if x.len() <= 1 << 16 {
        for row in x.chunks_exact_mut(e) {
            simd::layer_norm(row, w, b, eps);
        }
        return;
    }
    let ptr = SyncPtr::new(x);
    // Rows are cheap (a few hundred values): hand them out in large chunks.
    let chunk = pool.chunk_for(rows, 1, 8);
    pool.parallel_for(rows, chunk, &|r0, r1| {
        // SAFETY: disjoint row ranges.
        let rows = unsafe { ptr.slice(r0 * e, (r1 - r0) * e) };
        for row in rows.chunks_exact_mut(e) {
            simd::layer_norm(row, w, b, eps);
        }
    });
}

/// Multi-head self-attention of every sequence: `qkv` rows hold `[q|k|v]`
/// (each `e` wide, heads contiguous), `out` rows get the concatenated heads.
/// One task per (sequence, head); both products run on the panel
/// micro-kernel (scores: query rows against 16-key panels of Kᵀ; context:
/// probability rows against 16-column panels of V).
fn attention(pool: &ThreadPool, qkv: &[f32], spans: &[(usize, usize, Option<&[bool]>)], n_head: usize, e: usize, out: &mut [f32]) {
    let d = e / n_head;
    let ld = 3 * e;
    let scale = 1.0 / (d as f32).sqrt();
    let optr = SyncPtr::new(out);
    let n_tasks = spans.len() * n_head;
    pool.parallel_for(n_tasks, 1, &|t0, t1| {
        ATTN.with(|buf| {
            let mut buf = buf.borrow_mut();
            for task in t0..t1 {
                let (r0, n, mask) = spans[task / n_head];
                if n > 0 {
                    attend_head(qkv, ld, e, r0, n, task % n_head, d, scale, mask, &mut buf, optr);
                }
            }
        })
    });
}

/// Per-thread attention buffers: packed K and V panels and the score rows.
#[derive(Default)]
struct AttnBuf {
    kp: Vec<Line>,
    vp: Vec<Line>,
    s: Vec<f32>,
}

#[allow(clippy::too_many_arguments)]
fn attend_head(
    qkv: &[f32],
    ld: usize,
    e: usize,
    r0: usize,
    n: usize,
    h: usize,
    d: usize,
    scale: f32,
    mask: Option<&[bool]>,
    buf: &mut AttnBuf,
    out: SyncPtr<f32>,
) {
    let zero = [0f32; NR];
    // Kᵀ panels: kp[p*d + c][j] = K[16p + j][c] (keys past n are zero and ignored).
    let np = n.div_ceil(NR);
    buf.kp.clear();
    buf.kp.resize(np * d, Line([0.0; NR]));
    for j in 0..n {
        let krow = &qkv[(r0 + j) * ld + e + h * d..][..d];
        let (p, jj) = (j / NR, j % NR);
        for (c, &v) in krow.iter().enumerate() {
            buf.kp[p * d + c].0[jj] = v;
        }
    }
    // V panels: vp[q*n + j][c] = V[j][16q + c] (columns past d are zero).
    let nq = d.div_ceil(NR);
    buf.vp.clear();
    buf.vp.resize(nq * n, Line([0.0; NR]));
    for j in 0..n {
        let vrow = &qkv[(r0 + j) * ld + 2 * e + h * d..][..d];
        for (q, chunk) in vrow.chunks(NR).enumerate() {
            buf.vp[q * n + j].0[..chunk.len()].copy_from_slice(chunk);
        }
    }
    // Scores, n rows of ls (a whole number of panels).
    let ls = np * NR;
    buf.s.clear();
    buf.s.resize(n * ls, 0.0);
    let mut tile = [[0f32; NR]; MR];
    let mut i0 = 0;
    while i0 < n {
        let m = MR.min(n - i0);
        let q = &qkv[(r0 + i0) * ld + h * d..];
        for p in 0..np {
            gemm::micro(m, d, q, ld, &buf.kp[p * d..(p + 1) * d], &zero, &mut tile);
            for (i, row) in tile.iter().enumerate().take(m) {
                buf.s[(i0 + i) * ls + p * NR..][..NR].copy_from_slice(row);
            }
        }
        i0 += m;
    }
    for i in 0..n {
        simd::softmax_row(&mut buf.s[i * ls..i * ls + n], scale, mask);
    }
    // Context = P V, written to this head's columns.
    let mut i0 = 0;
    while i0 < n {
        let m = MR.min(n - i0);
        for q in 0..nq {
            gemm::micro(m, n, &buf.s[i0 * ls..], ls, &buf.vp[q * n..(q + 1) * n], &zero, &mut tile);
            let cols = NR.min(d - q * NR);
            for (i, row) in tile.iter().enumerate().take(m) {
                // SAFETY: task (sequence, head) owns these columns of its rows.
                unsafe { out.slice((r0 + i0 + i) * e + h * d + q * NR, cols) }.copy_from_slice(&row[..cols]);
            }
        }
        i0 += m;
    }
}

// ---------------------------------------------------------------------------
// Element-wise kernels: one plain body, compiled twice (baseline and
// AVX2+FMA, picked at run time) so the same source is the reference.

pub(crate) mod simd {
    use super::BertActivation;

    #[cfg(target_arch = "x86_64")]
    pub(crate) fn has_avx2() -> bool {
        use std::sync::OnceLock;
        static HAS: OnceLock<bool> = OnceLock::new();
        *HAS.get_or_init(|| is_x86_feature_detected!("avx2") && is_x86_feature_detected!("fma") && is_x86_feature_detected!("f16c"))
    }

    macro_rules! multiversion {
        ($(#[$m:meta])* $vis:vis fn $name:ident($($arg:ident : $ty:ty),* $(,)?) $body:block) => {
            $(#[$m])*
            $vis fn $name($($arg: $ty),*) {
                #[inline(always)]
                fn imp($($arg: $ty),*) $body
                #[cfg(target_arch = "x86_64")]
                {
                    #[target_feature(enable = "avx2,fma,f16c")]
                    unsafe fn fast($($arg: $ty),*) {
                        imp($($arg),*)
                    }
                    if has_avx2() {
                        // SAFETY: the CPU supports AVX2, FMA and F16C (checked above).
                        return unsafe { fast($($arg),*) };
                    }
                }
                imp($($arg),*)
            }
        };
    }

    /// e^x for x in [-87, 88] (clamped outside), relative error ~2e-7:
    /// x = n·ln2 + r with |r| ≤ ln2/2, e^r by its degree-7 Taylor
    /// polynomial (remainder < r⁸/8! ≈ 6e-9), 2^n built in the exponent
    /// bits. Branch-free so loops over it vectorise.
    #[inline(always)]
    pub(crate) fn exp(x: f32) -> f32 {
        // 1.5·2^23: adding it rounds to an integer held in the low mantissa bits.
        const MAGIC: f32 = 12_582_912.0;
        const LN2_HI: f32 = 0.693_145_75;
        const LN2_LO: f32 = 1.428_606_8e-6;
        // Selects rather than `clamp`, whose NaN rule blocks vectorisation.
        let x = if x < -87.0 { -87.0 } else { x };
        let x = if x > 88.0 { 88.0 } else { x };
        let t = x * std::f32::consts::LOG2_E + MAGIC;
        let n = t - MAGIC;
        let r = (x - n * LN2_HI) - n * LN2_LO;
        let p = 1.0
            + r * (1.0
                + r * (0.5
                    + r * (1.0 / 6.0 + r * (1.0 / 24.0 + r * (1.0 / 120.0 + r * (1.0 / 720.0 + r * (1.0 / 5040.0)))))));
        let ni = t.to_bits().wrapping_sub(MAGIC.to_bits()) as i32;
        p * f32::from_bits(((ni + 127) as u32) << 23)
    }

    /// `x·Φ(x)`, Φ(x) = ½·erfc(|x|/√2) for x < 0 and 1 − ½·erfc(x/√2)
    /// otherwise, erfc(z) ≈ (a1 t + ... + a5 t⁵) e^(−z²) with t = 1/(1 + p z)
    /// (Abramowitz & Stegun 7.1.26, |error| ≤ 1.5e-7). Computing erfc, not
    /// erf, avoids cancellation for negative x; near 0 Φ's absolute error is
    /// multiplied by x, so GELU keeps ~1e-7 relative accuracy throughout.
    #[inline(always)]
    pub(crate) fn gelu_erf(x: f32) -> f32 {
        const P: f32 = 0.327_591_1;
        const A: [f32; 5] = [0.254_829_6, -0.284_496_74, 1.421_413_8, -1.453_152, 1.061_405_4];
        let az = x.abs() * std::f32::consts::FRAC_1_SQRT_2;
        let t = 1.0 / (1.0 + P * az);
        let poly = t * (A[0] + t * (A[1] + t * (A[2] + t * (A[3] + t * A[4]))));
        let half_erfc = 0.5 * poly * exp(-az * az);
        let cdf = if x < 0.0 { half_erfc } else { 1.0 - half_erfc };
        x * cdf
    }

    #[inline(always)]
    fn gelu_tanh(x: f32) -> f32 {
        // tanh(u) = 1 - 2/(e^{2u}+1), branch-free through `exp`.
        const SQRT_2_OVER_PI: f32 = 0.797_884_6;
        let u = SQRT_2_OVER_PI * (x + 0.044_715 * x * x * x);
        let th = 1.0 - 2.0 / (exp(2.0 * u) + 1.0);
        0.5 * x * (1.0 + th)
    }

    multiversion! {
        /// Applies the activation in place.
        pub(crate) fn activate(act: BertActivation, x: &mut [f32]) {
            match act {
                BertActivation::Gelu => x.iter_mut().for_each(|v| *v = gelu_erf(*v)),
                BertActivation::GeluTanh => x.iter_mut().for_each(|v| *v = gelu_tanh(*v)),
                BertActivation::Relu => x.iter_mut().for_each(|v| *v = v.max(0.0)),
            }
        }
    }

    /// Sum in 8 independent lanes (vectorises without reassociation flags).
    #[inline(always)]
    fn sum8(x: &[f32], f: impl Fn(f32) -> f32) -> f32 {
        let mut acc = [0f32; 8];
        let mut ch = x.chunks_exact(8);
        for c in &mut ch {
            for (a, &v) in acc.iter_mut().zip(c) {
                *a += f(v);
            }
        }
        let mut s = 0.0;
        for &v in ch.remainder() {
            s += f(v);
        }
        ((acc[0] + acc[4]) + (acc[1] + acc[5])) + ((acc[2] + acc[6]) + (acc[3] + acc[7])) + s
    }

    /// Maximum in 8 independent lanes (a plain `fold(max)` does not
    /// vectorise: `f32::max`'s NaN rule makes it order-dependent).
    #[inline(always)]
    fn max8(x: &[f32]) -> f32 {
        let mut acc = [f32::NEG_INFINITY; 8];
        let mut ch = x.chunks_exact(8);
        for c in &mut ch {
            for (a, &v) in acc.iter_mut().zip(c) {
                *a = if v > *a { v } else { *a };
            }
        }
        let mut m = f32::NEG_INFINITY;
        for &v in acc.iter().chain(ch.remainder()) {
            m = if v > m { v } else { m };
        }
        m
    }

    multiversion! {
        /// `x = (x − mean) / sqrt(var + eps) · w + b` (biased variance, as
        /// `torch.nn.LayerNorm`), two passes in f32.
        pub(crate) fn layer_norm(x: &mut [f32], w: &[f32], b: &[f32], eps: f32) {
            let n = x.len() as f32;
            let mean = sum8(x, |v| v) / n;
            let var = sum8(x, |v| (v - mean) * (v - mean)) / n;
            let rstd = 1.0 / (var + eps).sqrt();
            for ((v, &g), &bb) in x.iter_mut().zip(w).zip(b) {
                *v = (*v - mean) * rstd * g + bb;
            }
        }
    }

    multiversion! {
        /// `x = softmax(x · scale)` over the keys `mask` keeps (all when
        /// `None`); masked keys get exactly 0, as Hugging Face's additive
        /// `finfo.min` mask gives after `exp` underflows.
        pub(crate) fn softmax_row(x: &mut [f32], scale: f32, mask: Option<&[bool]>) {
            let max = match mask {
                None => max8(x),
                Some(m) => x.iter().zip(m).filter(|(_, &keep)| keep).fold(f32::NEG_INFINITY, |a, (&s, _)| a.max(s)),
            };
            let max = max * scale;
            for s in x.iter_mut() {
                *s = exp(*s * scale - max);
            }
            if let Some(m) = mask {
                for (s, &keep) in x.iter_mut().zip(m) {
                    if !keep {
                        *s = 0.0;
                    }
                }
            }
            let inv = 1.0 / sum8(x, |v| v);
            x.iter_mut().for_each(|s| *s *= inv);
        }
    }
}

// ---------------------------------------------------------------------------
// Packed F32 matrix product.

pub(crate) mod gemm {
    use super::{simd, Epilogue, Packed, PanelData, PanelLine, MR, NR};
    use crate::pool::{SyncPtr, ThreadPool};

    /// Bytes of activations one task walks per weight panel. They stay in
    /// the core's L2 (1–2 MiB on current x86) while the panel streams in
    /// once; 512 KiB covers a whole 64-token query at every BERT-base-or-
    /// smaller width, so each weight byte leaves memory once per call.
    const X_BYTES_PER_TASK: usize = 512 * 1024;

    /// `out[t*ldo + col0 + n] = epi(Σ_k x[t*k..][kk] · W[n][kk] + b[n])`.
    #[allow(clippy::too_many_arguments)]
    pub(crate) fn gemm(
        pool: &ThreadPool,
        w: &Packed,
        bias: &[f32],
        x: &[f32],
        t: usize,
        out: &mut [f32],
        ldo: usize,
        col0: usize,
        epi: Epilogue<'_>,
    ) {
        match &w.data {
            PanelData::F32(d) => gemm_lines(pool, w, d, bias, x, t, out, ldo, col0, epi),
            PanelData::F16(d) => gemm_lines(pool, w, d, bias, x, t, out, ldo, col0, epi),
        }
    }

    #[allow(clippy::too_many_arguments)]
    fn gemm_lines<L: PanelLine>(
        pool: &ThreadPool,
        w: &Packed,
        lines: &[L],
        bias: &[f32],
        x: &[f32],
        t: usize,
        out: &mut [f32],
        ldo: usize,
        col0: usize,
        epi: Epilogue<'_>,
    ) {
        let k = w.k;
        let n_panels = w.n_panels();
        let tokens_per_task = (X_BYTES_PER_TASK / (4 * k.max(1)) / MR).max(1) * MR;
        let n_tc = t.div_ceil(tokens_per_task);
        let optr = SyncPtr::new(out);
        let n_tasks = n_panels * n_tc;
        let chunk = pool.chunk_for(n_tasks, 4, 1);
        pool.parallel_for(n_tasks, chunk, &|a, b| {
            for task in a..b {
                let (tc, p) = (task / n_panels, task % n_panels);
                let panel = &lines[p * k..(p + 1) * k];
                let cols = NR.min(w.n_out - p * NR);
                let mut bvec = [0f32; NR];
                bvec[..cols].copy_from_slice(&bias[p * NR..p * NR + cols]);
                let t_end = ((tc + 1) * tokens_per_task).min(t);
                let mut t0 = tc * tokens_per_task;
                // While this task walks its panel, prefetch the next task's
                // panel, a share per micro-tile: the first pass over a panel
                // otherwise waits on memory at every line.
                let next = (task + 1 < b).then(|| {
                    let np = (task + 1) % n_panels;
                    lines[np * k..(np + 1) * k].as_ptr().cast::<u8>()
                });
                let pf_total = (k * std::mem::size_of::<L>()).div_ceil(64);
                let pf_share = pf_total.div_ceil((t_end - t0).div_ceil(MR));
                let mut pf_done = 0;
                while t0 < t_end {
                    let m = MR.min(t_end - t0);
                    let mut tile = [[0f32; NR]; MR];
                    let pf = next.map(|p| {
                        let n = pf_share.min(pf_total - pf_done);
                        let start = p.wrapping_add(pf_done * 64);
                        pf_done += n;
                        (start, n)
                    });
                    micro_pf(m, k, &x[t0 * k..], k, panel, &bvec, &mut tile, pf);
                    for (i, row) in tile.iter_mut().enumerate().take(m) {
                        let base = (t0 + i) * ldo + col0 + p * NR;
                        let row = &mut row[..cols];
                        match epi {
                            Epilogue::None => {}
                            Epilogue::Act(act) => simd::activate(act, row),
                            Epilogue::Residual(r) => {
                                for (v, &rv) in row.iter_mut().zip(&r[base..base + cols]) {
                                    *v += rv;
                                }
                            }
                        }
                        // SAFETY: task (token chunk, panel) owns these columns of these rows.
                        unsafe { optr.slice(base, cols) }.copy_from_slice(row);
                    }
                    t0 += m;
                }
            }
        });
    }

    /// `tile[i][j] = b[j] + Σ_kk x[i*ldx + kk] · panel[kk][j]` for `m ≤ 6`
    /// rows of `k` values.
    pub(crate) fn micro<L: PanelLine>(m: usize, k: usize, x: &[f32], ldx: usize, panel: &[L], b: &[f32; NR], tile: &mut [[f32; NR]; MR]) {
        micro_pf(m, k, x, ldx, panel, b, tile, None)
    }

    /// [`micro`], also prefetching (into L2) `pf.1` cache lines from `pf.0`:
    /// a hint only, so any address is harmless.
    #[allow(clippy::too_many_arguments)]
    fn micro_pf<L: PanelLine>(
        m: usize,
        k: usize,
        x: &[f32],
        ldx: usize,
        panel: &[L],
        b: &[f32; NR],
        tile: &mut [[f32; NR]; MR],
        pf: Option<(*const u8, usize)>,
    ) {
        assert!((1..=MR).contains(&m) && ldx >= k && x.len() >= (m - 1) * ldx + k && panel.len() == k);
        #[cfg(target_arch = "x86_64")]
        if simd::has_avx2() {
            if let Some((p, n)) = pf {
                // SAFETY: prefetches never fault.
                unsafe { avx2::prefetch_lines(p.cast(), n) };
            }
            // SAFETY: AVX2/FMA present; `x` holds m rows of k, `panel` k lines (asserted).
            unsafe {
                let (xp, wp) = (x.as_ptr(), panel.as_ptr().cast::<u8>());
                macro_rules! go {
                    ($h:literal) => {
                        match m {
                            1 => avx2::micro::<1, $h>(k, xp, ldx, wp, b, tile),
                            2 => avx2::micro::<2, $h>(k, xp, ldx, wp, b, tile),
                            3 => avx2::micro::<3, $h>(k, xp, ldx, wp, b, tile),
                            4 => avx2::micro::<4, $h>(k, xp, ldx, wp, b, tile),
                            5 => avx2::micro::<5, $h>(k, xp, ldx, wp, b, tile),
                            _ => avx2::micro::<6, $h>(k, xp, ldx, wp, b, tile),
                        }
                    };
                }
                if L::HALF {
                    go!(true)
                } else {
                    go!(false)
                }
            }
            return;
        }
        let _ = pf;
        micro_ref(m, k, x, ldx, panel, b, tile);
    }

    /// The plain reference of the micro-kernel (same summation order per
    /// output, without fused multiply-adds).
    pub(crate) fn micro_ref<L: PanelLine>(m: usize, k: usize, x: &[f32], ldx: usize, panel: &[L], b: &[f32; NR], tile: &mut [[f32; NR]; MR]) {
        for (i, row) in tile.iter_mut().enumerate().take(m) {
            *row = *b;
            let xr = &x[i * ldx..i * ldx + k];
            for (line, &a) in panel.iter().zip(xr) {
                for (acc, &wv) in row.iter_mut().zip(&line.get()) {
                    *acc += a * wv;
                }
            }
        }
    }

    #[cfg(target_arch = "x86_64")]
    mod avx2 {
        use super::{MR, NR};
        use std::arch::x86_64::*;

        /// Prefetches `n` 64-byte lines from `p` into L2.
        ///
        /// # Safety
        /// Needs SSE only; prefetch instructions never fault, whatever `p` is.
        #[target_feature(enable = "avx2")]
        pub(super) unsafe fn prefetch_lines(p: *const i8, n: usize) {
            for i in 0..n {
                _mm_prefetch::<_MM_HINT_T1>(p.wrapping_add(i * 64));
            }
        }

        /// # Safety
        /// AVX2+FMA+F16C must be available; `x` must point at `M` rows of
        /// `k` floats `ldx` apart, `w` at `k` aligned lines of 16 f32
        /// (`H = false`, 64 bytes each) or 16 f16 (`H = true`, 32 bytes).
        #[target_feature(enable = "avx2,fma,f16c")]
        pub(super) unsafe fn micro<const M: usize, const H: bool>(
            k: usize,
            x: *const f32,
            ldx: usize,
            w: *const u8,
            b: &[f32; NR],
            tile: &mut [[f32; NR]; MR],
        ) {
            let b0 = _mm256_loadu_ps(b.as_ptr());
            let b1 = _mm256_loadu_ps(b.as_ptr().add(8));
            let mut c0 = [b0; M];
            let mut c1 = [b1; M];
            for kk in 0..k {
                let (w0, w1) = if H {
                    let p = w.add(kk * 32);
                    (_mm256_cvtph_ps(_mm_load_si128(p.cast())), _mm256_cvtph_ps(_mm_load_si128(p.add(16).cast())))
                } else {
                    let p = w.add(kk * 64).cast::<f32>();
                    (_mm256_load_ps(p), _mm256_load_ps(p.add(8)))
                };
                for i in 0..M {
                    let a = _mm256_broadcast_ss(&*x.add(i * ldx + kk));
                    c0[i] = _mm256_fmadd_ps(a, w0, c0[i]);
                    c1[i] = _mm256_fmadd_ps(a, w1, c1[i]);
                }
            }
            for i in 0..M {
                _mm256_storeu_ps(tile[i].as_mut_ptr(), c0[i]);
                _mm256_storeu_ps(tile[i].as_mut_ptr().add(8), c1[i]);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn lcg(seed: &mut u64) -> f32 {
        *seed = seed.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
        ((*seed >> 40) as f32 / (1u64 << 24) as f32) * 2.0 - 1.0
    }

    #[test]
    fn exp_and_gelu_are_accurate() {
        for i in -8000..8000 {
            let x = i as f32 * 0.01;
            let e = simd::exp(x);
            let want = (x as f64).exp();
            assert!(((e as f64 - want) / want).abs() < 4e-7, "exp({x}) = {e}, want {want}");
        }
        // erf reference: its Maclaurin series in f64 (exact enough for |x| ≤ 5).
        let erf64 = |x: f64| -> f64 {
            let mut sum = 0.0;
            let mut term = x;
            let mut n = 0.0;
            while n < 200.0 && (term.abs() > 1e-17 || n < 5.0) {
                sum += term / (2.0 * n + 1.0);
                n += 1.0;
                term *= -x * x / n;
            }
            sum * 2.0 / std::f64::consts::PI.sqrt()
        };
        // GELU through the slice kernel (AVX2 where present) against f64.
        let xs: Vec<f32> = (-1200..=1200).map(|i| i as f32 * 0.005).collect();
        let mut g = xs.clone();
        simd::activate(BertActivation::Gelu, &mut g);
        for (&x, &got) in xs.iter().zip(&g) {
            let want = 0.5 * x as f64 * (1.0 + erf64(x as f64 / std::f64::consts::SQRT_2));
            assert!((got as f64 - want).abs() < 2e-7 * (1.0 + x.abs() as f64), "gelu({x}) = {got}, want {want}");
        }
    }

    #[test]
    fn packed_gemm_matches_naive_dot_products() {
        let mut seed = 7u64;
        for (n_out, k, t) in [(16, 8, 1), (37, 33, 7), (64, 96, 13), (5, 4, 50), (48, 384, 64)] {
            let w: Vec<f32> = (0..n_out * k).map(|_| lcg(&mut seed)).collect();
            let b: Vec<f32> = (0..n_out).map(|_| lcg(&mut seed)).collect();
            let x: Vec<f32> = (0..t * k).map(|_| lcg(&mut seed)).collect();
            let p = Packed::pack(n_out, k, false, |r, buf| buf.copy_from_slice(&w[r * k..(r + 1) * k]));
            for threads in [1, 2, 3] {
                let pool = ThreadPool::new(threads);
                let ldo = n_out + 3;
                let mut out = vec![f32::NAN; t * ldo];
                gemm::gemm(&pool, &p, &b, &x, t, &mut out, ldo, 2, Epilogue::None);
                for ti in 0..t {
                    for n in 0..n_out {
                        let want: f64 = b[n] as f64 + (0..k).map(|i| w[n * k + i] as f64 * x[ti * k + i] as f64).sum::<f64>();
                        let got = out[ti * ldo + 2 + n];
                        assert!((got as f64 - want).abs() < 1e-4 * (1.0 + k as f64).sqrt(), "{n_out}x{k} t={t}: {got} vs {want}");
                    }
                    assert!(out[ti * ldo].is_nan() && out[ti * ldo + 1].is_nan(), "wrote outside its columns");
                }
            }
        }
    }

    #[test]
    fn micro_kernel_agrees_with_its_reference() {
        fn check<L: PanelLine>(lines: &[L], x: &[f32], k: usize, ldx: usize) {
            let b = [0.25f32; NR];
            for m in 1..=MR {
                let mut fast = [[0f32; NR]; MR];
                let mut r = [[0f32; NR]; MR];
                gemm::micro_ref(m, k, x, ldx, lines, &b, &mut r);
                // Through the dispatcher (AVX2 where present).
                gemm::micro(m, k, x, ldx, lines, &b, &mut fast);
                for i in 0..m {
                    for j in 0..NR {
                        assert!((fast[i][j] - r[i][j]).abs() < 1e-5, "m={m} ({i},{j}): {} vs {}", fast[i][j], r[i][j]);
                    }
                }
            }
        }
        let mut seed = 3u64;
        let k = 77;
        for ldx in [k, k + 5] {
            let x: Vec<f32> = (0..MR * ldx).map(|_| lcg(&mut seed)).collect();
            let w: Vec<f32> = (0..NR * k).map(|_| lcg(&mut seed)).collect();
            for half in [false, true] {
                let p = Packed::pack(NR, k, half, |r, buf| buf.copy_from_slice(&w[r * k..(r + 1) * k]));
                match &p.data {
                    PanelData::F32(l) => check(l, &x, k, ldx),
                    PanelData::F16(l) => {
                        // The f16 lines hold the rounded weights.
                        assert_eq!(l[3].get()[5], half::f16::from_f32(w[5 * k + 3]).to_f32());
                        check(l, &x, k, ldx)
                    }
                }
            }
        }
    }

    /// A small random BERT in plain f64 loops, the definition the fast path
    /// must reproduce.
    struct Naive {
        cfg: BertConfig,
        t: std::collections::HashMap<String, Vec<f32>>,
    }

    impl Naive {
        fn get(&self, n: &str) -> &[f32] {
            &self.t[n]
        }
        fn ln(&self, x: &mut [f64], base: &str) {
            let e = x.len();
            let mean = x.iter().sum::<f64>() / e as f64;
            let var = x.iter().map(|v| (v - mean) * (v - mean)).sum::<f64>() / e as f64;
            let (w, b) = (self.get(&format!("{base}.weight")), self.get(&format!("{base}.bias")));
            for i in 0..e {
                x[i] = (x[i] - mean) / (var + self.cfg.norm_eps as f64).sqrt() * w[i] as f64 + b[i] as f64;
            }
        }
        fn lin(&self, x: &[f64], base: &str, n_out: usize) -> Vec<f64> {
            let (w, b) = (self.get(&format!("{base}.weight")), self.get(&format!("{base}.bias")));
            let k = x.len();
            (0..n_out).map(|o| b[o] as f64 + (0..k).map(|i| w[o * k + i] as f64 * x[i]).sum::<f64>()).collect()
        }
        fn forward(&self, ids: &[u32], mask: Option<&[bool]>) -> Vec<Vec<f64>> {
            let c = &self.cfg;
            let e = c.n_embd;
            let d = c.head_dim();
            let mut xs: Vec<Vec<f64>> = ids
                .iter()
                .enumerate()
                .map(|(i, &id)| {
                    let mut v: Vec<f64> = (0..e)
                        .map(|j| {
                            self.get("embeddings.word_embeddings.weight")[id as usize * e + j] as f64
                                + self.get("embeddings.token_type_embeddings.weight")[j] as f64
                                + self.get("embeddings.position_embeddings.weight")[i * e + j] as f64
                        })
                        .collect();
                    self.ln(&mut v, "embeddings.LayerNorm");
                    v
                })
                .collect();
            for l in 0..c.n_layer {
                let p = format!("encoder.layer.{l}");
                let q: Vec<_> = xs.iter().map(|x| self.lin(x, &format!("{p}.attention.self.query"), e)).collect();
                let k: Vec<_> = xs.iter().map(|x| self.lin(x, &format!("{p}.attention.self.key"), e)).collect();
                let v: Vec<_> = xs.iter().map(|x| self.lin(x, &format!("{p}.attention.self.value"), e)).collect();
                let n = xs.len();
                let mut new = Vec::new();
                for i in 0..n {
                    let mut ctx = vec![0f64; e];
                    for h in 0..c.n_head {
                        let s: Vec<f64> = (0..n)
                            .map(|j| {
                                let dot: f64 = (0..d).map(|z| q[i][h * d + z] * k[j][h * d + z]).sum();
                                if mask.is_some_and(|m| !m[j]) {
                                    f64::NEG_INFINITY
                                } else {
                                    dot / (d as f64).sqrt()
                                }
                            })
                            .collect();
                        let mx = s.iter().cloned().fold(f64::NEG_INFINITY, f64::max);
                        let ex: Vec<f64> = s.iter().map(|v| (v - mx).exp()).collect();
                        let sum: f64 = ex.iter().sum();
                        for j in 0..n {
                            for z in 0..d {
                                ctx[h * d + z] += ex[j] / sum * v[j][h * d + z];
                            }
                        }
                    }
                    let mut hh = self.lin(&ctx, &format!("{p}.attention.output.dense"), e);
                    for z in 0..e {
                        hh[z] += xs[i][z];
                    }
                    self.ln(&mut hh, &format!("{p}.attention.output.LayerNorm"));
                    let mut f = self.lin(&hh, &format!("{p}.intermediate.dense"), c.n_ff);
                    for v in f.iter_mut() {
                        *v = 0.5 * *v * (1.0 + erf64(*v / std::f64::consts::SQRT_2));
                    }
                    let mut o = self.lin(&f, &format!("{p}.output.dense"), e);
                    for z in 0..e {
                        o[z] += hh[z];
                    }
                    self.ln(&mut o, &format!("{p}.output.LayerNorm"));
                    new.push(o);
                }
                xs = new;
            }
            xs
        }
    }

    fn erf64(x: f64) -> f64 {
        // Numerical integration of 2/√π e^{-t²} (Simpson, 2000 steps): plenty for tests.
        let n = 2000;
        let h = x / n as f64;
        let f = |t: f64| (-t * t).exp();
        let mut s = f(0.0) + f(x);
        for i in 1..n {
            s += f(i as f64 * h) * if i % 2 == 1 { 4.0 } else { 2.0 };
        }
        s * h / 3.0 * 2.0 / std::f64::consts::PI.sqrt()
    }

    fn tiny_cfg() -> BertConfig {
        BertConfig {
            n_vocab: 50,
            n_embd: 32,
            n_layer: 2,
            n_head: 4,
            n_ff: 64,
            n_pos: 40,
            n_type: 2,
            norm_eps: 1e-12,
            activation: BertActivation::Gelu,
            gguf_pooling: None,
        }
    }

    /// Random HF-named tensors for `cfg` (row-major PyTorch shapes).
    fn random_tensors(cfg: &BertConfig, seed: u64) -> Vec<(String, Vec<u64>, Vec<f32>)> {
        let mut s = seed;
        let e = cfg.n_embd as u64;
        let mut t = Vec::new();
        let mut add = |name: String, shape: Vec<u64>, scale: f32, offset: f32, s: &mut u64| {
            let n: u64 = shape.iter().product();
            let v: Vec<f32> = (0..n).map(|_| offset + scale * lcg(s)).collect();
            t.push((name, shape, v));
        };
        add("embeddings.word_embeddings.weight".into(), vec![cfg.n_vocab as u64, e], 1.0, 0.0, &mut s);
        add("embeddings.position_embeddings.weight".into(), vec![cfg.n_pos as u64, e], 0.5, 0.0, &mut s);
        add("embeddings.token_type_embeddings.weight".into(), vec![cfg.n_type as u64, e], 0.5, 0.0, &mut s);
        add("embeddings.LayerNorm.weight".into(), vec![e], 0.2, 1.0, &mut s);
        add("embeddings.LayerNorm.bias".into(), vec![e], 0.1, 0.0, &mut s);
        let f = cfg.n_ff as u64;
        for l in 0..cfg.n_layer {
            let p = format!("encoder.layer.{l}");
            for (n, rows, cols) in [
                ("attention.self.query", e, e),
                ("attention.self.key", e, e),
                ("attention.self.value", e, e),
                ("attention.output.dense", e, e),
                ("intermediate.dense", f, e),
                ("output.dense", e, f),
            ] {
                add(format!("{p}.{n}.weight"), vec![rows, cols], 0.3, 0.0, &mut s);
                add(format!("{p}.{n}.bias"), vec![rows], 0.1, 0.0, &mut s);
            }
            for n in ["attention.output.LayerNorm", "output.LayerNorm"] {
                add(format!("{p}.{n}.weight"), vec![e], 0.2, 1.0, &mut s);
                add(format!("{p}.{n}.bias"), vec![e], 0.1, 0.0, &mut s);
            }
        }
        t
    }

    /// Serialises tensors as a safetensors file (header JSON + data).
    fn safetensors_bytes(tensors: &[(String, Vec<u64>, Vec<f32>)], dtype: Dtype, prefix: &str) -> Vec<u8> {
        let mut header = String::from("{");
        let mut data = Vec::new();
        for (i, (name, shape, v)) in tensors.iter().enumerate() {
            let start = data.len();
            for &x in v {
                match dtype {
                    Dtype::F32 => data.extend_from_slice(&x.to_le_bytes()),
                    Dtype::F16 => data.extend_from_slice(&half::f16::from_f32(x).to_bits().to_le_bytes()),
                    _ => unreachable!(),
                }
            }
            if i > 0 {
                header.push(',');
            }
            header.push_str(&format!(
                "\"{prefix}{name}\":{{\"dtype\":\"{}\",\"shape\":{:?},\"data_offsets\":[{start},{}]}}",
                dtype.name(),
                shape,
                data.len()
            ));
        }
        header.push('}');
        let mut out = (header.len() as u64).to_le_bytes().to_vec();
        out.extend_from_slice(header.as_bytes());
        out.extend_from_slice(&data);
        out
    }

    fn load_st(bytes: Vec<u8>, cfg: &BertConfig, opts: &BertOptions) -> Result<Bert> {
        let dir = std::env::temp_dir().join(format!("hearth-bert-{}-{}", std::process::id(), rand_name()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("model.safetensors");
        std::fs::write(&path, bytes).unwrap();
        let st = SafetensorsModel::open(&path).unwrap();
        let r = Bert::from_safetensors(cfg.clone(), &st, opts);
        let _ = std::fs::remove_dir_all(&dir);
        r
    }

    fn rand_name() -> u64 {
        use std::sync::atomic::{AtomicU64, Ordering};
        static N: AtomicU64 = AtomicU64::new(0);
        N.fetch_add(1, Ordering::Relaxed)
    }

    fn rel_err(a: &[f32], b: &[f64]) -> f64 {
        let num: f64 = a.iter().zip(b).map(|(&x, &y)| (x as f64 - y).powi(2)).sum();
        let den: f64 = b.iter().map(|y| y * y).sum();
        (num / den).sqrt()
    }

    #[test]
    fn forward_matches_the_naive_definition_for_ragged_batches() {
        let cfg = tiny_cfg();
        let tensors = random_tensors(&cfg, 11);
        let naive = Naive { cfg: cfg.clone(), t: tensors.iter().map(|(n, _, v)| (n.clone(), v.clone())).collect() };
        let bert = load_st(safetensors_bytes(&tensors, Dtype::F32, ""), &cfg, &BertOptions::default()).unwrap();
        let seqs: Vec<Vec<u32>> = vec![vec![1, 5, 9, 2], vec![3], (0..37).map(|i| (i * 7 % 50) as u32).collect(), vec![]];
        let inputs: Vec<BertInput> = seqs.iter().map(|s| BertInput::new(s)).collect();
        let mut by_threads: Vec<Vec<f32>> = Vec::new();
        for threads in [1, 2, 3] {
            let pool = ThreadPool::new(threads);
            let mut scratch = BertScratch::default();
            let mut out = Vec::new();
            bert.forward(&inputs, &pool, &mut scratch, &mut out).unwrap();
            // Every output is computed by one task in a fixed order, so the
            // thread count cannot change a bit.
            if let Some(first) = by_threads.first() {
                assert_eq!(first, &out, "{threads} threads");
            }
            by_threads.push(out.clone());
            let total: usize = seqs.iter().map(|s| s.len()).sum();
            assert_eq!(out.len(), total * cfg.n_embd);
            let mut row = 0;
            for s in &seqs {
                let want = naive.forward(s, None);
                for (i, w) in want.iter().enumerate() {
                    let got = &out[(row + i) * cfg.n_embd..(row + i + 1) * cfg.n_embd];
                    assert!(rel_err(got, w) < 1e-5, "seq len {} token {i}: rel err {}", s.len(), rel_err(got, w));
                }
                row += s.len();
            }
            // The same sequence alone gives the same states as inside the batch.
            let mut alone = Vec::new();
            bert.forward(&[inputs[2]], &pool, &mut scratch, &mut alone).unwrap();
            let off = 5 * cfg.n_embd;
            assert_eq!(&alone[..], &out[off..off + 37 * cfg.n_embd]);
        }
    }

    #[test]
    fn attention_mask_hides_padding_like_hugging_face() {
        let cfg = tiny_cfg();
        let tensors = random_tensors(&cfg, 5);
        let naive = Naive { cfg: cfg.clone(), t: tensors.iter().map(|(n, _, v)| (n.clone(), v.clone())).collect() };
        let bert = load_st(safetensors_bytes(&tensors, Dtype::F32, "bert."), &cfg, &BertOptions::default()).unwrap();
        let ids = [4u32, 8, 15, 16, 0, 0];
        let mask = [true, true, true, true, false, false];
        let pool = ThreadPool::new(2);
        let mut out = Vec::new();
        bert.forward(&[BertInput { ids: &ids, type_ids: None, mask: Some(&mask) }], &pool, &mut BertScratch::default(), &mut out)
            .unwrap();
        let want = naive.forward(&ids, Some(&mask));
        for (i, w) in want.iter().enumerate() {
            assert!(rel_err(&out[i * 32..(i + 1) * 32], w) < 1e-5);
        }
        // Real tokens equal the unpadded run.
        let mut short = Vec::new();
        bert.forward(&[BertInput::new(&ids[..4])], &pool, &mut BertScratch::default(), &mut short).unwrap();
        assert!(rel_err(&out[..4 * 32], &short.iter().map(|&v| v as f64).collect::<Vec<_>>()) < 1e-6);
        // A mask that hides everything is an error, not NaNs.
        let none = [false; 6];
        let err = bert.forward(&[BertInput { ids: &ids, type_ids: None, mask: Some(&none) }], &pool, &mut BertScratch::default(), &mut out);
        assert!(matches!(err, Err(BertError::Input(_))));
    }

    #[test]
    fn f16_checkpoints_and_q8_0_quantization_stay_close() {
        let cfg = tiny_cfg();
        let tensors = random_tensors(&cfg, 21);
        let f32m = load_st(safetensors_bytes(&tensors, Dtype::F32, ""), &cfg, &BertOptions::default()).unwrap();
        let f16m = load_st(safetensors_bytes(&tensors, Dtype::F16, ""), &cfg, &BertOptions::default()).unwrap();
        let q8m = load_st(safetensors_bytes(&tensors, Dtype::F32, ""), &cfg, &BertOptions { quantize: Some(GgmlType::Q8_0) }).unwrap();
        let h16 = load_st(safetensors_bytes(&tensors, Dtype::F32, ""), &cfg, &BertOptions { quantize: Some(GgmlType::F16) }).unwrap();
        assert!(matches!(f16m.layers[0].up.w, LinearWeight::Packed(ref p) if p.is_f16()), "f16 files stay f16");
        assert!(matches!(f32m.layers[0].up.w, LinearWeight::Packed(ref p) if !p.is_f16()));
        assert!(matches!(q8m.layers[0].up.w, LinearWeight::Quant(ref w) if w.ty == GgmlType::Q8_0));
        let ids: Vec<u32> = (0..20).map(|i| (i * 3 % 50) as u32).collect();
        let pool = ThreadPool::new(2);
        let run = |m: &Bert| {
            let mut o = Vec::new();
            m.forward(&[BertInput::new(&ids)], &pool, &mut BertScratch::default(), &mut o).unwrap();
            o
        };
        let (a, b, c) = (run(&f32m), run(&f16m), run(&q8m));
        let a64: Vec<f64> = a.iter().map(|&v| v as f64).collect();
        // f16 panels from f32 weights round exactly as an f16 file does
        // (embeddings aside, which the f16 file also rounds).
        let d = run(&h16);
        assert!(rel_err(&d, &a64) < 5e-3 && rel_err(&d, &a64) > 0.0);
        let (eb, ec) = (rel_err(&b, &a64), rel_err(&c, &a64));
        assert!(eb < 5e-3, "f16 rel err {eb}");
        assert!(ec < 5e-2, "q8_0 rel err {ec}");
        assert!(ec > 0.0 && eb > 0.0);
        let bad = load_st(safetensors_bytes(&tensors, Dtype::F32, ""), &cfg, &BertOptions { quantize: Some(GgmlType::Q4_K) });
        assert!(matches!(bad, Err(BertError::Config { .. })));
    }

    #[test]
    fn gguf_and_safetensors_load_the_same_model() {
        use hearth_formats::GgufWriter;
        let cfg = tiny_cfg();
        let tensors = random_tensors(&cfg, 9);
        let st = load_st(safetensors_bytes(&tensors, Dtype::F32, ""), &cfg, &BertOptions::default()).unwrap();
        // HF name -> llama.cpp name (conversion/bert.py + llama-arch.cpp).
        let map = |n: &str| -> String {
            n.replace("embeddings.word_embeddings", "token_embd")
                .replace("embeddings.position_embeddings", "position_embd")
                .replace("embeddings.token_type_embeddings", "token_types")
                .replace("embeddings.LayerNorm", "token_embd_norm")
                .replace("encoder.layer.", "blk.")
                .replace("attention.self.query", "attn_q")
                .replace("attention.self.key", "attn_k")
                .replace("attention.self.value", "attn_v")
                .replace("attention.output.dense", "attn_output")
                .replace("attention.output.LayerNorm", "attn_output_norm")
                .replace("intermediate.dense", "ffn_up")
                .replace("output.dense", "ffn_down")
                .replace("output.LayerNorm", "layer_output_norm")
        };
        // `quant`: 2-D weights as Q8_0, except attn_v as F16 (mixed types, as
        // llama-quantize's mixes produce).
        let write = |quant: bool| {
            let mut w = GgufWriter::new();
            w.add_meta("general.architecture", "bert").unwrap();
            w.add_meta("bert.context_length", cfg.n_pos as u32).unwrap();
            w.add_meta("bert.embedding_length", cfg.n_embd as u32).unwrap();
            w.add_meta("bert.feed_forward_length", cfg.n_ff as u32).unwrap();
            w.add_meta("bert.block_count", cfg.n_layer as u32).unwrap();
            w.add_meta("bert.attention.head_count", cfg.n_head as u32).unwrap();
            w.add_meta("bert.attention.layer_norm_epsilon", cfg.norm_eps).unwrap();
            w.add_meta("bert.attention.causal", false).unwrap();
            w.add_meta("bert.pooling_type", 1u32).unwrap();
            let mut data = Vec::new();
            for (name, shape, v) in &tensors {
                let dims: Vec<u64> = shape.iter().rev().copied().collect();
                let name = map(name);
                let ty = if !quant || dims.len() < 2 || !name.starts_with("blk.") {
                    GgmlType::F32
                } else if name.contains("attn_v") {
                    GgmlType::F16
                } else {
                    GgmlType::Q8_0
                };
                let cols = dims[0] as usize;
                let rb = hearth_kernels::row_bytes(ty, cols);
                let mut bytes = vec![0u8; v.len() / cols * rb];
                for (r, row) in v.chunks_exact(cols).enumerate() {
                    hearth_kernels::quantize_row_ref(ty, row, &mut bytes[r * rb..(r + 1) * rb]);
                }
                w.add_tensor(name, &dims, ty).unwrap();
                data.push(bytes);
            }
            Arc::new(GgufFile::from_bytes(w.write_to_vec(&data).unwrap()).unwrap())
        };
        let file = write(false);
        let g = Bert::from_gguf(Arc::clone(&file), &BertOptions::default()).unwrap();
        assert_eq!(g.cfg.gguf_pooling, Some(1));
        assert_eq!(g.cfg.n_vocab, cfg.n_vocab);
        let ids: Vec<u32> = (0..12).map(|i| (i * 5 % 50) as u32).collect();
        let pool = ThreadPool::new(1);
        let (mut a, mut b, mut c) = (Vec::new(), Vec::new(), Vec::new());
        st.forward(&[BertInput::new(&ids)], &pool, &mut BertScratch::default(), &mut a).unwrap();
        g.forward(&[BertInput::new(&ids)], &pool, &mut BertScratch::default(), &mut b).unwrap();
        let q = Bert::from_gguf(write(true), &BertOptions::default()).unwrap();
        assert!(matches!(&q.layers[0].qkv[..], [Linear { w: LinearWeight::Quant(wq), .. }, _, Linear { w: LinearWeight::Quant(wv), .. }]
            if wq.ty == GgmlType::Q8_0 && wv.ty == GgmlType::F16));
        q.forward(&[BertInput::new(&ids)], &pool, &mut BertScratch::default(), &mut c).unwrap();
        let a64: Vec<f64> = a.iter().map(|&v| v as f64).collect();
        let err = rel_err(&c, &a64);
        assert!(err > 0.0 && err < 5e-2, "quantized GGUF rel err {err}");
        assert_eq!(a, b);
    }

    #[test]
    fn loaders_report_missing_and_misshapen_tensors() {
        let cfg = tiny_cfg();
        let mut tensors = random_tensors(&cfg, 1);
        tensors.retain(|(n, _, _)| n != "encoder.layer.1.attention.self.key.bias");
        let err = load_st(safetensors_bytes(&tensors, Dtype::F32, ""), &cfg, &BertOptions::default()).unwrap_err();
        assert!(matches!(&err, BertError::MissingTensor { name } if name == "encoder.layer.1.attention.self.key.bias"), "{err}");

        let mut tensors = random_tensors(&cfg, 1);
        for t in tensors.iter_mut() {
            if t.0 == "encoder.layer.0.intermediate.dense.weight" {
                t.1 = vec![32, 64];
            }
        }
        let err = load_st(safetensors_bytes(&tensors, Dtype::F32, ""), &cfg, &BertOptions::default()).unwrap_err();
        assert!(matches!(&err, BertError::TensorShape { expected, .. } if expected == &vec![64, 32]), "{err}");

        let mut bad = cfg.clone();
        bad.n_head = 5;
        let err = load_st(safetensors_bytes(&random_tensors(&cfg, 1), Dtype::F32, ""), &bad, &BertOptions::default()).unwrap_err();
        assert!(matches!(err, BertError::Config { .. }));
    }

    #[test]
    fn bad_inputs_are_errors() {
        let cfg = tiny_cfg();
        let bert = load_st(safetensors_bytes(&random_tensors(&cfg, 2), Dtype::F32, ""), &cfg, &BertOptions::default()).unwrap();
        let pool = ThreadPool::new(1);
        let mut out = Vec::new();
        let mut s = BertScratch::default();
        assert!(matches!(bert.forward(&[BertInput::new(&[1, 50])], &pool, &mut s, &mut out), Err(BertError::Input(_))));
        let long: Vec<u32> = vec![1; 41];
        assert!(matches!(bert.forward(&[BertInput::new(&long)], &pool, &mut s, &mut out), Err(BertError::Input(_))));
        let tt = [0u32, 2];
        let inp = BertInput { ids: &[1, 2], type_ids: Some(&tt), mask: None };
        assert!(matches!(bert.forward(&[inp], &pool, &mut s, &mut out), Err(BertError::Input(_))));
        // Segment B tokens use the second type row.
        let tt = [0u32, 1];
        let inp = BertInput { ids: &[1, 2], type_ids: Some(&tt), mask: None };
        let mut b = Vec::new();
        bert.forward(&[inp], &pool, &mut s, &mut b).unwrap();
        bert.forward(&[BertInput::new(&[1, 2])], &pool, &mut s, &mut out).unwrap();
        assert_ne!(b, out);
    }
}
