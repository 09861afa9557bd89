//! `gemma2`: Gemma 2 (2B, 9B, 27B).
//!
//! Against llama: token embeddings times `sqrt(n_embd)`; GeGLU (tanh GELU)
//! feed-forward; RMS norms both before and after the attention and the
//! feed-forward blocks (`post_attention_norm`, `post_ffw_norm`); attention
//! scores soft-capped at `attn_logit_softcapping` (default 50) and the final
//! logits at `final_logit_softcapping` (default 30); even layers attend
//! within a sliding window (`attention.sliding_window`, default 4096), odd
//! layers globally; the halves RoPE layout; the output always reuses the
//! token embedding (src/models/gemma2.cpp).
//!
//! The query scale is `1/sqrt(head_dim)` (transformers' `query_pre_attn_scalar`
//! is 256 = head_dim for 2B/9B) except for the 46-layer 27B, where it is
//! `1/sqrt(n_embd / n_head)` (= 1/sqrt(144)); GGUF files do not store the
//! scalar, so llama.cpp infers it from the layer count and so do we.

use super::common::{self, GemmaOpts};
use crate::decoder::Decoder;
use crate::error::Result;
use hearth_formats::GgufFile;
use std::sync::Arc;

pub fn load(file: Arc<GgufFile>) -> Result<Decoder> {
    common::gemma(
        file,
        GemmaOpts {
            arch: "gemma2",
            qk_norm: false,
            default_swa_period: 2,
            default_window: Some(4096),
            default_freq_base_swa: None,
            attn_softcap: Some(50.0),
            final_softcap: Some(30.0),
            n_layer_27b: 46,
            output_tensor: false,
        },
    )
}
