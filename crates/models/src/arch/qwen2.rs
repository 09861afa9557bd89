//! `qwen2`: Qwen 2 and 2.5. Differs from llama by Q/K/V biases (picked up by
//! the common loader when present) and the halves RoPE layout
//! (`LLAMA_ROPE_TYPE_NEOX`). Small Qwen2.5 models tie their output matrix.

use super::common::{self, LayerOpts, Standard};
use crate::config::RopeLayout;
use crate::decoder::Decoder;
use crate::error::{ModelError, Result};
use hearth_formats::GgufFile;
use std::sync::Arc;

pub fn load(file: Arc<GgufFile>) -> Result<Decoder> {
    let d = common::standard(file, Standard { arch: "qwen2", layout: RopeLayout::Halves, layer: LayerOpts::default() })?;
    if d.w.layers.iter().any(|l| l.q_bias.is_none() || l.k_bias.is_none() || l.v_bias.is_none()) {
        return Err(ModelError::MissingTensor { name: "blk.N.attn_{q,k,v}.bias (qwen2 requires QKV biases)".into() });
    }
    Ok(d)
}
