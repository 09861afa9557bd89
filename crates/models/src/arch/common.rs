//! Tensor naming shared by the llama-like families (llama.cpp `llama-arch.cpp`:
//! `blk.{i}.attn_q.weight`, ...).

use crate::config::{CommonHparams, LayerConfig, RopeConfig, RopeLayout};
use crate::decoder::{GateUp, Layer, Qkv};
use crate::error::{ModelError, Result};
use crate::weights::TensorSource;

/// Per-layer configs from the common hyper-parameters.
pub fn layer_configs(hp: &CommonHparams, layout: RopeLayout) -> Vec<LayerConfig> {
    (0..hp.n_layer)
        .map(|i| LayerConfig {
            n_head: hp.n_head[i],
            n_head_kv: hp.n_head_kv[i],
            head_dim_k: hp.head_dim_k,
            head_dim_v: hp.head_dim_v,
            n_ff: hp.n_ff[i],
            sliding_window: None,
            rope: RopeConfig {
                layout,
                n_rot: hp.n_rot,
                freq_base: hp.freq_base,
                scaling: hp.scaling.clone(),
                attn_factor: hp.rope_attn_factor,
            },
        })
        .collect()
}

/// Options for [`load_layer`].
#[derive(Default, Clone, Copy)]
pub struct LayerOpts {
    pub qk_norm: bool,
    pub post_norms: bool,
}

/// Loads layer `i` with the standard names: separate or fused QKV, optional
/// biases, separate or fused gate/up.
pub fn load_layer(src: &TensorSource, i: usize, n_embd: usize, lc: &LayerConfig, opts: LayerOpts) -> Result<Layer> {
    let n = |s: &str| format!("blk.{i}.{s}");
    let (q_dim, k_dim, v_dim) = (lc.n_head * lc.head_dim_k, lc.n_head_kv * lc.head_dim_k, lc.n_head_kv * lc.head_dim_v);
    let qkv = if src.has(&n("attn_qkv.weight")) {
        Qkv::Fused(src.matrix(&n("attn_qkv.weight"), q_dim + k_dim + v_dim, n_embd)?)
    } else {
        Qkv::Separate {
            q: src.matrix(&n("attn_q.weight"), q_dim, n_embd)?,
            k: src.matrix(&n("attn_k.weight"), k_dim, n_embd)?,
            v: src.matrix(&n("attn_v.weight"), v_dim, n_embd)?,
        }
    };
    let (mut q_bias, mut k_bias, mut v_bias) = (
        src.opt_vector(&n("attn_q.bias"), q_dim)?,
        src.opt_vector(&n("attn_k.bias"), k_dim)?,
        src.opt_vector(&n("attn_v.bias"), v_dim)?,
    );
    if let Some(b) = src.opt_vector(&n("attn_qkv.bias"), q_dim + k_dim + v_dim)? {
        q_bias = Some(b[..q_dim].to_vec());
        k_bias = Some(b[q_dim..q_dim + k_dim].to_vec());
        v_bias = Some(b[q_dim + k_dim..].to_vec());
    }
    let gate_up = if src.has(&n("ffn_gate.weight")) {
        GateUp::Separate { gate: src.matrix(&n("ffn_gate.weight"), lc.n_ff, n_embd)?, up: src.matrix(&n("ffn_up.weight"), lc.n_ff, n_embd)? }
    } else {
        GateUp::Fused(src.matrix(&n("ffn_up.weight"), 2 * lc.n_ff, n_embd)?)
    };
    let (q_norm, k_norm) = if opts.qk_norm {
        (Some(src.vector(&n("attn_q_norm.weight"), lc.head_dim_k)?), Some(src.vector(&n("attn_k_norm.weight"), lc.head_dim_k)?))
    } else {
        (None, None)
    };
    let (post_attn_norm, post_ffn_norm) = if opts.post_norms {
        (Some(src.vector(&n("post_attention_norm.weight"), n_embd)?), Some(src.vector(&n("post_ffw_norm.weight"), n_embd)?))
    } else {
        (None, None)
    };
    // Llama 3.1+ stores its rope scaling as per-pair frequency factors; older
    // converters wrote one copy per layer, newer ones a single global tensor.
    // Phi-3 LongRoPE stores two global sets instead, chosen by context size
    // (llama-model.cpp get_rope_factors: rope_freqs wins when present).
    let half = lc.rope.n_rot / 2;
    let (rope_factors, rope_factors_long) = match src.opt_vector(&n("rope_freqs.weight"), half)? {
        Some(f) => (Some(f), None),
        None => match src.opt_vector("rope_freqs.weight", half)? {
            Some(f) => (Some(f), None),
            None => (src.opt_vector("rope_factors_short.weight", half)?, src.opt_vector("rope_factors_long.weight", half)?),
        },
    };
    for f in rope_factors.iter().chain(&rope_factors_long) {
        if f.iter().any(|x| !(x.is_finite() && *x > 0.0)) {
            return Err(ModelError::Invalid("a RoPE factor tensor has a non-positive or non-finite factor".into()));
        }
    }
    Ok(Layer {
        attn_norm: src.vector(&n("attn_norm.weight"), n_embd)?,
        qkv,
        q_bias,
        k_bias,
        v_bias,
        q_norm,
        k_norm,
        wo: src.matrix(&n("attn_output.weight"), n_embd, q_dim_v(lc))?,
        wo_bias: src.opt_vector(&n("attn_output.bias"), n_embd)?,
        post_attn_norm,
        ffn_norm: src.vector(&n("ffn_norm.weight"), n_embd)?,
        gate_up,
        down: src.matrix(&n("ffn_down.weight"), n_embd, lc.n_ff)?,
        post_ffn_norm,
        rope_factors,
        rope_factors_long,
    })
}

fn q_dim_v(lc: &LayerConfig) -> usize {
    lc.n_head * lc.head_dim_v
}

/// Vocabulary size: `{arch}.vocab_size`, else the tokenizer's token count,
/// else the embedding matrix's row count.
pub fn n_vocab(src: &TensorSource, arch: &str) -> Result<usize> {
    let f = src.file();
    if let Some(v) = f.get_u64(&format!("{arch}.vocab_size"))? {
        return Ok(v as usize);
    }
    if let Some(toks) = f.get_array("tokenizer.ggml.tokens")? {
        return Ok(toks.len());
    }
    let t = f.tensor("token_embd.weight").ok_or(ModelError::MissingTensor { name: "token_embd.weight".into() })?;
    Ok(t.dims.get(1).copied().unwrap_or(0) as usize)
}

/// Switches for [`standard`].
#[derive(Clone, Copy)]
pub struct Standard {
    pub arch: &'static str,
    pub layout: RopeLayout,
    pub layer: LayerOpts,
}

/// Builds the common pre-norm decoder (Llama/Qwen shape) from a GGUF file.
pub fn standard(file: std::sync::Arc<hearth_formats::GgufFile>, opts: Standard) -> Result<crate::decoder::Decoder> {
    use crate::config::{Activation, HParams, ModelConfig};
    use crate::decoder::{Decoder, DecoderWeights};
    let h = HParams::new(&file, opts.arch);
    let hp = CommonHparams::read(&h, "attention.layer_norm_rms_epsilon")?;
    let src = TensorSource::new(std::sync::Arc::clone(&file));
    let n_vocab = n_vocab(&src, opts.arch)?;
    h.check(n_vocab > 0, "vocab_size", n_vocab, "must be positive")?;
    let layer_cfgs = layer_configs(&hp, opts.layout);
    let layers = layer_cfgs
        .iter()
        .enumerate()
        .map(|(i, lc)| load_layer(&src, i, hp.n_embd, lc, opts.layer))
        .collect::<Result<Vec<_>>>()?;
    let weights = DecoderWeights {
        tok_embd: src.matrix("token_embd.weight", n_vocab, hp.n_embd)?,
        output_norm: src.vector("output_norm.weight", hp.n_embd)?,
        output: src.opt_matrix("output.weight", n_vocab, hp.n_embd)?,
        layers,
    };
    let cfg = ModelConfig {
        arch: opts.arch.to_string(),
        name: file.get_str("general.name")?.map(str::to_string),
        n_vocab,
        n_embd: hp.n_embd,
        n_ctx_train: hp.n_ctx_train,
        norm_eps: hp.norm_eps,
        tied_embeddings: weights.output.is_none(),
        layers: layer_cfgs,
        activation: Activation::SwiGlu,
        attn_scale: 1.0 / (hp.head_dim_k as f32).sqrt(),
        attn_scale_on_q: false,
        n_ctx_orig: hp.n_ctx_orig,
        embed_scale: None,
        attn_softcap: None,
        final_softcap: None,
    };
    Decoder::new(cfg, weights)
}

/// Which layers use sliding-window attention (llama-hparams.cpp
/// `set_swa_pattern`): `{arch}.attention.sliding_window_pattern` is either an
/// array of per-layer flags or a period `n`, in which layer `il` is local
/// when `il % n < n - 1` (the last layer of each period is global). A period
/// of 0 makes every layer local.
pub fn swa_layers(h: &crate::config::HParams<'_>, n_layer: usize, default_period: usize) -> Result<Vec<bool>> {
    use hearth_formats::MetaValue;
    let key = "attention.sliding_window_pattern";
    let period = match h.file.get(&h.key(key)) {
        Some(MetaValue::Array(a)) => {
            let flags = a.to_i64_vec().filter(|v| v.len() == n_layer);
            return flags.map(|v| v.into_iter().map(|x| x != 0).collect()).ok_or(ModelError::InvalidHparam {
                key: h.key(key),
                value: format!("array of {}", a.len()),
                why: format!("expected {n_layer} per-layer flags"),
            });
        }
        Some(_) => h.usize(key)?,
        None => default_period,
    };
    Ok((0..n_layer).map(|il| period == 0 || il % period < period - 1).collect())
}

/// Switches that tell Gemma 2 and Gemma 3 apart (see their files).
#[derive(Clone, Copy)]
pub struct GemmaOpts {
    pub arch: &'static str,
    /// Gemma 3: per-head RMS norms on q and k.
    pub qk_norm: bool,
    /// Period of the local/global layer pattern when the file gives none.
    pub default_swa_period: usize,
    /// Window when `attention.sliding_window` is absent; `None` = no sliding
    /// window at all unless the key is present and positive (Gemma 3).
    pub default_window: Option<usize>,
    /// RoPE base of local layers without `rope.freq_base_swa`; `None` = the
    /// global base (Gemma 2).
    pub default_freq_base_swa: Option<f32>,
    /// Default `attn_logit_softcapping` (`None` = no attention soft-cap).
    pub attn_softcap: Option<f32>,
    /// Default `final_logit_softcapping` (`None` = only when the key is set).
    pub final_softcap: Option<f32>,
    /// Layer count of the 27B model, whose query scale is
    /// `1/sqrt(n_embd / n_head)` instead of `1/sqrt(head_dim)`.
    pub n_layer_27b: usize,
    /// Gemma 2 always projects with the token embedding, even when a file
    /// carries an `output.weight`; Gemma 3 uses it when present.
    pub output_tensor: bool,
}

/// Builds a Gemma 2/3 decoder: embeddings scaled by `sqrt(n_embd)`, GeGLU
/// feed-forward, norms before and after both blocks, the query scaled before
/// attention, local (sliding-window) and global layers with their own RoPE
/// settings, soft-capped logits (llama.cpp src/models/gemma2.cpp, gemma3.cpp).
///
/// Norm weights are used as stored: llama.cpp's converter already added the
/// `1 +` of Gemma's RMSNorm (`x * (1 + w)` in transformers) to every
/// `*norm.weight` tensor (conversion/gemma.py).
pub fn gemma(file: std::sync::Arc<hearth_formats::GgufFile>, o: GemmaOpts) -> Result<crate::decoder::Decoder> {
    use crate::config::{Activation, HParams, ModelConfig, RopeScaling};
    use crate::decoder::{Decoder, DecoderWeights};
    let h = HParams::new(&file, o.arch);
    let hp = CommonHparams::read(&h, "attention.layer_norm_rms_epsilon")?;
    let src = TensorSource::new(std::sync::Arc::clone(&file));
    let n_vocab = n_vocab(&src, o.arch)?;
    h.check(n_vocab > 0, "vocab_size", n_vocab, "must be positive")?;
    let window = match (h.opt_usize("attention.sliding_window")?, o.default_window) {
        (Some(0), _) | (None, None) => None,
        (Some(w), _) => Some(w),
        (None, Some(w)) => Some(w),
    };
    let swa = match window {
        Some(_) => swa_layers(&h, hp.n_layer, o.default_swa_period)?,
        None => vec![false; hp.n_layer],
    };
    let freq_base_swa = match h.opt_f32("rope.freq_base_swa")? {
        Some(b) => b,
        None => o.default_freq_base_swa.unwrap_or(hp.freq_base),
    };
    h.check(freq_base_swa.is_finite() && freq_base_swa > 0.0, "rope.freq_base_swa", freq_base_swa, "must be positive")?;
    let mut layer_cfgs = layer_configs(&hp, RopeLayout::Halves);
    for (lc, &local) in layer_cfgs.iter_mut().zip(&swa) {
        if local {
            lc.sliding_window = window;
            lc.rope.freq_base = freq_base_swa;
            // llama-model.cpp get_rope_freq_scale: local layers use
            // rope_freq_scale_train_swa, which Gemma 2 copies from the
            // global scale and Gemma 3 leaves at 1.
            if o.default_freq_base_swa.is_some() {
                lc.rope.scaling = RopeScaling::None;
            }
        }
    }
    let opts = LayerOpts { qk_norm: o.qk_norm, post_norms: true };
    let layers = layer_cfgs
        .iter()
        .enumerate()
        .map(|(i, lc)| load_layer(&src, i, hp.n_embd, lc, opts))
        .collect::<Result<Vec<_>>>()?;
    let output = if o.output_tensor { src.opt_matrix("output.weight", n_vocab, hp.n_embd)? } else { None };
    let weights = DecoderWeights {
        tok_embd: src.matrix("token_embd.weight", n_vocab, hp.n_embd)?,
        output_norm: src.vector("output_norm.weight", hp.n_embd)?,
        output,
        layers,
    };
    let softcap = |key: &str, default: Option<f32>| -> Result<Option<f32>> {
        let v = h.opt_f32(key)?.or(default).filter(|&c| c != 0.0);
        if let Some(c) = v {
            h.check(c.is_finite() && c > 0.0, key, c, "must be positive")?;
        }
        Ok(v)
    };
    // gemma_pytorch config.py (cited by llama.cpp): the 27B models scale
    // queries by 1/sqrt(n_embd / n_head); the others by 1/sqrt(head_dim).
    // `attention.scale` (written for Hugging Face folders from
    // query_pre_attn_scalar) wins over the inference from the layer count.
    let attn_scale = if let Some(s) = h.opt_f32("attention.scale")? {
        h.check(s.is_finite() && s > 0.0, "attention.scale", s, "must be positive")?;
        s
    } else if hp.n_layer == o.n_layer_27b {
        1.0 / ((hp.n_embd / hp.n_head[0]) as f32).sqrt()
    } else {
        1.0 / (hp.head_dim_k as f32).sqrt()
    };
    let cfg = ModelConfig {
        arch: o.arch.to_string(),
        name: file.get_str("general.name")?.map(str::to_string),
        n_vocab,
        n_embd: hp.n_embd,
        n_ctx_train: hp.n_ctx_train,
        norm_eps: hp.norm_eps,
        tied_embeddings: weights.output.is_none(),
        layers: layer_cfgs,
        activation: Activation::GeGlu,
        attn_scale,
        attn_scale_on_q: true,
        n_ctx_orig: hp.n_ctx_orig,
        // ggml_scale(inpL, sqrtf(n_embd)).
        embed_scale: Some((hp.n_embd as f32).sqrt()),
        attn_softcap: match o.attn_softcap {
            Some(d) => softcap("attn_logit_softcapping", Some(d))?,
            None => None,
        },
        final_softcap: softcap("final_logit_softcapping", o.final_softcap)?,
    };
    Decoder::new(cfg, weights)
}
