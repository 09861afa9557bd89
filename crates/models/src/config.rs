//! Hyper-parameters of a decoder-only transformer, read from GGUF metadata.
//!
//! Keys follow llama.cpp's `llama-arch.cpp` (`{arch}.embedding_length`, ...)
//! and its defaults (`llama-model.cpp: load_hparams`): `rope.freq_base`
//! defaults to 10000, head sizes to `n_embd / n_head`, `rope.dimension_count`
//! to the key head size, rope scaling to none.

use crate::error::{ModelError, Result};
use hearth_formats::{GgufFile, MetaValue};

/// How RoPE pairs up the dimensions of a head. Getting this wrong silently
/// garbles every output token.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RopeLayout {
    /// Adjacent pairs `(x[2i], x[2i+1])`: ggml's `LLAMA_ROPE_TYPE_NORM`, used by
    /// `llama` files (convert_hf_to_gguf permutes Q/K weights into this form).
    Interleaved,
    /// Halves `(x[i], x[i + n_rot/2])`: `LLAMA_ROPE_TYPE_NEOX`, used by Qwen,
    /// Phi-3, Gemma — the Hugging Face layout, unpermuted.
    Halves,
}

/// RoPE frequency scaling.
#[derive(Clone, Debug, PartialEq)]
pub enum RopeScaling {
    None,
    /// Positions divided by `factor` (freq_scale = 1/factor).
    Linear { factor: f32 },
    /// YaRN (ggml `rope_yarn`), with llama.cpp's default beta_fast 32 / beta_slow 1.
    Yarn { factor: f32, orig_ctx: usize },
}

#[derive(Clone, Debug, PartialEq)]
pub struct RopeConfig {
    pub layout: RopeLayout,
    /// Number of rotated dimensions per head (the first `n_rot`).
    pub n_rot: usize,
    pub freq_base: f32,
    pub scaling: RopeScaling,
    /// `rope.scaling.attn_factor` (llama.cpp `rope_attn_factor`, default 1):
    /// multiplies every cos and sin, whatever the scaling type
    /// (llama-context.cpp: `yarn_attn_factor *= hparams.rope_attn_factor`).
    /// Phi-3's LongRoPE writes `sqrt(1 + ln(s) / ln(n_ctx_orig))` here.
    pub attn_factor: f32,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Activation {
    /// `silu(gate) * up` (Llama, Qwen, Phi-3).
    SwiGlu,
    /// `gelu_tanh(gate) * up` (Gemma).
    GeGlu,
}

/// Everything the generic decoder needs to know about one layer.
#[derive(Clone, Debug, PartialEq)]
pub struct LayerConfig {
    pub n_head: usize,
    pub n_head_kv: usize,
    pub head_dim_k: usize,
    pub head_dim_v: usize,
    pub n_ff: usize,
    /// Sliding-window attention span (Gemma local layers), `None` = global.
    pub sliding_window: Option<usize>,
    pub rope: RopeConfig,
}

#[derive(Clone, Debug, PartialEq)]
pub struct ModelConfig {
    pub arch: String,
    pub name: Option<String>,
    pub n_vocab: usize,
    pub n_embd: usize,
    /// Context length the model was trained for (`{arch}.context_length`).
    pub n_ctx_train: usize,
    pub norm_eps: f32,
    pub layers: Vec<LayerConfig>,
    pub activation: Activation,
    /// Softmax scale for attention logits (default `1/sqrt(head_dim_k)`).
    pub attn_scale: f32,
    /// Apply `attn_scale` to q after RoPE instead of to the scores. llama.cpp's
    /// Phi-3 and Gemma graphs do `ggml_scale(Qcur, ...)` and then attend with
    /// `kq_scale = 1`; with an F16 cache q is rounded to f16 *after* the
    /// scaling, so the two orders differ in the last bits, and Gemma 2's
    /// soft-cap sees the scaled scores.
    pub attn_scale_on_q: bool,
    /// llama.cpp `n_ctx_orig_yarn`: `rope.scaling.original_context_length`,
    /// else the training context. A layer with long RoPE factors (Phi-3
    /// LongRoPE) uses them for sessions whose context exceeds this, its short
    /// factors otherwise (llama-model.cpp `get_rope_factors`, which compares
    /// the context size `n_ctx_seq` the same way).
    pub n_ctx_orig: usize,
    /// Multiply token embeddings by this (Gemma: `sqrt(n_embd)`).
    pub embed_scale: Option<f32>,
    pub attn_softcap: Option<f32>,
    pub final_softcap: Option<f32>,
    /// Output projection shares the token-embedding matrix.
    pub tied_embeddings: bool,
}

impl ModelConfig {
    pub fn n_layer(&self) -> usize {
        self.layers.len()
    }
}

/// Reads `{arch}.*` keys with llama.cpp's conventions.
pub struct HParams<'a> {
    pub file: &'a GgufFile,
    pub arch: &'a str,
}

impl<'a> HParams<'a> {
    pub fn new(file: &'a GgufFile, arch: &'a str) -> HParams<'a> {
        HParams { file, arch }
    }

    pub fn key(&self, suffix: &str) -> String {
        format!("{}.{}", self.arch, suffix)
    }

    pub fn opt_usize(&self, suffix: &str) -> Result<Option<usize>> {
        let key = self.key(suffix);
        Ok(self.file.get_u64(&key)?.map(|v| v as usize))
    }

    pub fn usize(&self, suffix: &str) -> Result<usize> {
        self.opt_usize(suffix)?.ok_or(ModelError::MissingHparam { key: self.key(suffix) })
    }

    pub fn opt_f32(&self, suffix: &str) -> Result<Option<f32>> {
        Ok(self.file.get_f32(&self.key(suffix))?)
    }

    pub fn opt_str(&self, suffix: &str) -> Result<Option<&'a str>> {
        Ok(self.file.get_str(&self.key(suffix))?)
    }

    /// A per-layer value given either as a scalar or as an array with one
    /// entry per layer (`get_key_or_arr` in llama.cpp).
    pub fn per_layer(&self, suffix: &str, n_layer: usize) -> Result<Option<Vec<usize>>> {
        let key = self.key(suffix);
        match self.file.get(&key) {
            None => Ok(None),
            Some(MetaValue::Array(a)) => {
                let v = a.to_i64_vec().ok_or_else(|| ModelError::InvalidHparam {
                    key: key.clone(),
                    value: "array".into(),
                    why: "expected integers".into(),
                })?;
                if v.len() != n_layer || v.iter().any(|&x| x < 0) {
                    return Err(ModelError::InvalidHparam {
                        key,
                        value: format!("{v:?}"),
                        why: format!("expected {n_layer} non-negative entries"),
                    });
                }
                Ok(Some(v.into_iter().map(|x| x as usize).collect()))
            }
            Some(_) => Ok(Some(vec![self.usize(suffix)?; n_layer])),
        }
    }

    /// Fails with a typed error unless `cond` holds.
    pub fn check(&self, cond: bool, suffix: &str, value: impl std::fmt::Display, why: &str) -> Result<()> {
        if cond {
            Ok(())
        } else {
            Err(ModelError::InvalidHparam { key: self.key(suffix), value: value.to_string(), why: why.into() })
        }
    }
}

/// The fields every decoder architecture reads the same way.
pub struct CommonHparams {
    pub n_embd: usize,
    pub n_layer: usize,
    pub n_ctx_train: usize,
    pub n_head: Vec<usize>,
    pub n_head_kv: Vec<usize>,
    pub n_ff: Vec<usize>,
    pub head_dim_k: usize,
    pub head_dim_v: usize,
    pub n_rot: usize,
    pub freq_base: f32,
    pub scaling: RopeScaling,
    /// `rope.scaling.attn_factor`, default 1.
    pub rope_attn_factor: f32,
    /// `rope.scaling.original_context_length`, default `n_ctx_train`.
    pub n_ctx_orig: usize,
    pub norm_eps: f32,
}

/// Upper bounds that keep a hostile header from asking for absurd buffers
/// before any tensor is checked. Generous: far above any 14B model.
const MAX_EMBD: usize = 1 << 16;
const MAX_LAYERS: usize = 1024;
const MAX_HEADS: usize = 1024;
const MAX_FF: usize = 1 << 20;

impl CommonHparams {
    pub fn read(h: &HParams<'_>, norm_eps_key: &str) -> Result<CommonHparams> {
        let n_embd = h.usize("embedding_length")?;
        h.check(n_embd > 0 && n_embd <= MAX_EMBD, "embedding_length", n_embd, "out of range")?;
        let n_layer = h.usize("block_count")?;
        h.check(n_layer > 0 && n_layer <= MAX_LAYERS, "block_count", n_layer, "out of range")?;
        let n_ctx_train = h.usize("context_length")?;
        h.check(n_ctx_train > 0, "context_length", n_ctx_train, "must be positive")?;
        let n_head = h
            .per_layer("attention.head_count", n_layer)?
            .ok_or(ModelError::MissingHparam { key: h.key("attention.head_count") })?;
        let n_head_kv = h.per_layer("attention.head_count_kv", n_layer)?.unwrap_or_else(|| n_head.clone());
        let n_ff = h
            .per_layer("feed_forward_length", n_layer)?
            .ok_or(ModelError::MissingHparam { key: h.key("feed_forward_length") })?;
        for i in 0..n_layer {
            h.check(n_head[i] > 0 && n_head[i] <= MAX_HEADS, "attention.head_count", n_head[i], "out of range")?;
            h.check(
                n_head_kv[i] > 0 && n_head[i] % n_head_kv[i] == 0,
                "attention.head_count_kv",
                n_head_kv[i],
                "must divide attention.head_count",
            )?;
            h.check(n_ff[i] > 0 && n_ff[i] <= MAX_FF, "feed_forward_length", n_ff[i], "out of range")?;
        }
        let head_dim_k = h.opt_usize("attention.key_length")?.unwrap_or(n_embd / n_head[0]);
        let head_dim_v = h.opt_usize("attention.value_length")?.unwrap_or(n_embd / n_head[0]);
        h.check(head_dim_k > 0 && head_dim_k <= 512, "attention.key_length", head_dim_k, "out of range")?;
        h.check(head_dim_v > 0 && head_dim_v <= 512, "attention.value_length", head_dim_v, "out of range")?;
        let n_rot = h.opt_usize("rope.dimension_count")?.unwrap_or(head_dim_k);
        h.check(n_rot % 2 == 0 && n_rot <= head_dim_k, "rope.dimension_count", n_rot, "must be even and <= head size")?;
        let freq_base = h.opt_f32("rope.freq_base")?.unwrap_or(10000.0);
        h.check(freq_base.is_finite() && freq_base > 0.0, "rope.freq_base", freq_base, "must be positive")?;
        let norm_eps = h.opt_f32(norm_eps_key)?.ok_or(ModelError::MissingHparam { key: h.key(norm_eps_key) })?;
        h.check(norm_eps.is_finite() && norm_eps >= 0.0, norm_eps_key, norm_eps, "must be finite and >= 0")?;
        let scaling = read_rope_scaling(h, n_ctx_train)?;
        let rope_attn_factor = h.opt_f32("rope.scaling.attn_factor")?.unwrap_or(1.0);
        h.check(
            rope_attn_factor.is_finite() && rope_attn_factor > 0.0,
            "rope.scaling.attn_factor",
            rope_attn_factor,
            "must be positive",
        )?;
        let n_ctx_orig = h.opt_usize("rope.scaling.original_context_length")?.filter(|&n| n > 0).unwrap_or(n_ctx_train);
        Ok(CommonHparams {
            n_embd,
            n_layer,
            n_ctx_train,
            n_head,
            n_head_kv,
            n_ff,
            head_dim_k,
            head_dim_v,
            n_rot,
            freq_base,
            scaling,
            rope_attn_factor,
            n_ctx_orig,
            norm_eps,
        })
    }
}

fn read_rope_scaling(h: &HParams<'_>, n_ctx_train: usize) -> Result<RopeScaling> {
    let kind = h.opt_str("rope.scaling.type")?.unwrap_or("linear");
    let factor = match h.opt_f32("rope.scaling.factor")? {
        Some(f) => Some(f),
        None => h.opt_f32("rope.scale_linear")?,
    }
    .filter(|&f| f != 0.0);
    match (kind, factor) {
        (_, None) | ("none", _) => Ok(RopeScaling::None),
        (_, Some(f)) if !(f.is_finite() && f > 0.0) => {
            Err(ModelError::InvalidHparam { key: h.key("rope.scaling.factor"), value: f.to_string(), why: "must be positive".into() })
        }
        (_, Some(f)) if f == 1.0 => Ok(RopeScaling::None),
        // LLAMA_ROPE_SCALING_TYPE_LONGROPE is not YaRN, so llama.cpp treats
        // its factor (if any) as a plain frequency scale; the per-dimension
        // factors come from the rope_factors_{long,short} tensors.
        ("linear" | "longrope", Some(f)) => Ok(RopeScaling::Linear { factor: f }),
        ("yarn", Some(f)) => Ok(RopeScaling::Yarn {
            factor: f,
            orig_ctx: h.opt_usize("rope.scaling.original_context_length")?.unwrap_or(n_ctx_train),
        }),
        (other, _) => Err(ModelError::InvalidHparam {
            key: h.key("rope.scaling.type"),
            value: other.to_string(),
            why: "supported: none, linear, yarn, longrope".into(),
        }),
    }
}
