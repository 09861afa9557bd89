//! `llama`: Llama 2/3.x, SmolLM2, Mistral 7B, TinyLlama.
//!
//! RoPE uses adjacent pairs: llama.cpp's converter permutes the Q/K rows of
//! Hugging Face checkpoints so that the GGUF tensors expect
//! `LLAMA_ROPE_TYPE_NORM` (src/llama-model.cpp `llama_model_rope_type`).
//! Llama 3.1+ rope scaling arrives as the `rope_freqs.weight` factors.
//! The output matrix is optional: without it, `token_embd` is reused (tied,
//! Llama 3.2 1B/3B, SmolLM2). Absent here: mixture-of-experts (Mixtral).

use super::common::{self, LayerOpts, Standard};
use crate::config::{HParams, RopeLayout};
use crate::decoder::Decoder;
use crate::error::{ModelError, Result};
use hearth_formats::GgufFile;
use std::sync::Arc;

pub fn load(file: Arc<GgufFile>) -> Result<Decoder> {
    let h = HParams::new(&file, "llama");
    if h.opt_usize("expert_count")?.unwrap_or(0) > 0 {
        return Err(ModelError::Invalid("mixture-of-experts llama models (Mixtral) are not supported".into()));
    }
    let d = common::standard(
        Arc::clone(&file),
        Standard { arch: "llama", layout: RopeLayout::Interleaved, layer: LayerOpts::default() },
    )?;
    // llama.cpp rejects llama files whose rope dims differ from the head size.
    let lc = &d.cfg.layers[0];
    h.check(lc.rope.n_rot == lc.head_dim_k, "rope.dimension_count", lc.rope.n_rot, "must equal the head size for llama")?;
    Ok(d)
}
