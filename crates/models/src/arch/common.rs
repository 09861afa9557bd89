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
            rope: RopeConfig { layout, n_rot: hp.n_rot, freq_base: hp.freq_base, scaling: hp.scaling.clone() },
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
    let rope_factors = match src.opt_vector(&n("rope_freqs.weight"), lc.rope.n_rot / 2)? {
        Some(f) => Some(f),
        None => src.opt_vector("rope_freqs.weight", lc.rope.n_rot / 2)?,
    };
    if let Some(f) = &rope_factors {
        if f.iter().any(|x| !(x.is_finite() && *x > 0.0)) {
            return Err(ModelError::Invalid("rope_freqs.weight has a non-positive or non-finite factor".into()));
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
        embed_scale: None,
        attn_softcap: None,
        final_softcap: None,
    };
    Decoder::new(cfg, weights)
}
