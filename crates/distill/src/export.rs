//! Writing a trained from-scratch network as a GGUF model that Hearth's
//! engine (and llama.cpp) loads.
//!
//! Hyper-parameter keys and tensor names are llama.cpp's (`llama-arch.cpp`).
//! Matrices are stored in the requested type (F32, F16 or Q8_0, quantized
//! with `hearth-kernels`' reference quantizer); norm weights and biases stay
//! F32, as llama.cpp's converter keeps 1-D tensors.
//!
//! Deliberately absent: k-quants on export (use a quantizer afterwards), and
//! architectures other than `llama` (interleaved RoPE), `qwen2` (halves
//! RoPE with Q/K/V biases) and `qwen3` (halves RoPE with per-head q/k norms).

use crate::error::{DistillError, Result};
use crate::net::Net;
use hearth_formats::{GgmlType, GgufWriter, MetaValue};
use hearth_models::config::{RopeLayout, RopeScaling};
use std::path::Path;

/// What to write besides the weights.
#[derive(Clone, Debug)]
pub struct ExportOptions {
    /// Storage type of the matrices.
    pub matrix_type: GgmlType,
    /// `general.name`.
    pub name: String,
    /// Further metadata (tokenizer keys, licence, ...), written in order.
    pub metadata: Vec<(String, MetaValue)>,
}

/// llama.cpp `llama_ftype` numbers for `general.file_type`.
fn file_type(ty: GgmlType) -> Option<u32> {
    match ty {
        GgmlType::F32 => Some(0),
        GgmlType::F16 => Some(1),
        GgmlType::Q8_0 => Some(7),
        _ => None,
    }
}

/// The `general.architecture` a network is written as.
pub fn arch_of(net: &Net) -> Result<&'static str> {
    let c = &net.cfg;
    let gemma = c.geglu || c.embed_scale.is_some() || c.attn_softcap.is_some() || c.final_softcap.is_some();
    let per_layer = net.layers.iter().any(|l| l.post_attn_norm.is_some() || l.post_ffn_norm.is_some() || l.rope.is_some() || l.window.is_some());
    if gemma || per_layer {
        return Err(DistillError::Unsupported {
            what: "GGUF export".into(),
            why: "Gemma features (GeGLU, embedding scale, soft-caps, post-norms, per-layer RoPE, sliding windows) are trained as LoRA on a base, not exported as a model".into(),
        });
    }
    match c.rope.layout {
        RopeLayout::Interleaved if c.rope.n_rot == c.head_dim && !c.qkv_bias && !c.o_bias && !c.qk_norm => Ok("llama"),
        RopeLayout::Halves if c.qkv_bias && !c.o_bias && !c.qk_norm => Ok("qwen2"),
        RopeLayout::Halves if !c.qkv_bias && !c.o_bias && c.qk_norm => Ok("qwen3"),
        _ => Err(DistillError::Unsupported {
            what: "GGUF export".into(),
            why: "only llama (interleaved RoPE over the whole head, no biases), qwen2 (halves RoPE, Q/K/V biases) and qwen3 (halves RoPE, per-head q/k norms)".into(),
        }),
    }
}

/// Writes `net` with parameter values `params` to `path` (atomically);
/// returns the file size.
pub fn write_gguf(path: &Path, net: &Net, params: &[f32], opts: &ExportOptions) -> Result<u64> {
    let arch = arch_of(net)?;
    let c = &net.cfg;
    if params.len() != net.params.len {
        return Err(DistillError::Config(format!("{} parameter values for {} parameters", params.len(), net.params.len)));
    }
    if net.lora.is_some() || net.params.tensors.len() != expected_tensors(net) {
        return Err(DistillError::Config("only a network whose every weight is a parameter can be exported".into()));
    }
    let ftype = file_type(opts.matrix_type)
        .ok_or_else(|| DistillError::Config(format!("matrix type {} is not one of F32, F16, Q8_0", opts.matrix_type)))?;
    if c.rope.scaling != RopeScaling::None {
        return Err(DistillError::Unsupported { what: "GGUF export".into(), why: "rope scaling".into() });
    }
    let mut w = GgufWriter::new();
    let k = |s: &str| format!("{arch}.{s}");
    w.add_meta("general.architecture", arch)?;
    w.add_meta("general.name", opts.name.as_str())?;
    w.add_meta("general.file_type", ftype)?;
    w.add_meta(k("context_length"), c.n_ctx as u32)?;
    w.add_meta(k("embedding_length"), c.n_embd as u32)?;
    w.add_meta(k("block_count"), c.n_layer as u32)?;
    w.add_meta(k("feed_forward_length"), c.n_ff as u32)?;
    w.add_meta(k("attention.head_count"), c.n_head as u32)?;
    w.add_meta(k("attention.head_count_kv"), c.n_head_kv as u32)?;
    w.add_meta(k("attention.key_length"), c.head_dim as u32)?;
    w.add_meta(k("attention.value_length"), c.head_dim as u32)?;
    w.add_meta(k("attention.layer_norm_rms_epsilon"), c.norm_eps)?;
    w.add_meta(k("rope.dimension_count"), c.rope.n_rot as u32)?;
    w.add_meta(k("rope.freq_base"), c.rope.freq_base)?;
    w.add_meta(k("vocab_size"), c.n_vocab as u32)?;
    for (key, v) in &opts.metadata {
        w.add_meta(key.clone(), v.clone())?;
    }
    let mut types = Vec::with_capacity(net.params.tensors.len());
    for info in &net.params.tensors {
        let ty = if info.shape.len() == 2 { opts.matrix_type } else { GgmlType::F32 };
        let dims: Vec<u64> = info.shape.iter().rev().map(|&d| d as u64).collect();
        w.add_tensor(info.name.clone(), &dims, ty)?;
        types.push(ty);
    }
    let mut i = 0;
    let n = w.write_to_path(path, |_, sink| {
        let info = &net.params.tensors[i];
        let ty = types[i];
        i += 1;
        let vals = &params[info.range()];
        let row = *info.shape.last().unwrap_or(&1);
        let rb = ty.row_bytes(row as u64).unwrap_or(0) as usize;
        let mut buf = vec![0u8; rb];
        for r in vals.chunks(row) {
            hearth_kernels::quantize_row_ref(ty, r, &mut buf);
            std::io::Write::write_all(sink, &buf)?;
        }
        Ok(())
    })?;
    Ok(n)
}

fn expected_tensors(net: &Net) -> usize {
    let c = &net.cfg;
    let per_layer = 9 + if c.qkv_bias { 3 } else { 0 } + if c.o_bias { 1 } else { 0 } + if c.qk_norm { 2 } else { 0 };
    2 + usize::from(!c.tied) + c.n_layer * per_layer
}
