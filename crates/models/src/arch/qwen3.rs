//! `qwen3`: Qwen 3 dense models. No QKV biases; instead each head's q and k
//! are RMS-normalised (`attn_q_norm`, `attn_k_norm`, length head_dim) before
//! RoPE. The head size comes from `attention.key_length` and is NOT
//! `n_embd / n_head` (Qwen3-0.6B: 1024 hidden, 16 heads of 128).

use super::common::{self, LayerOpts, Standard};
use crate::config::RopeLayout;
use crate::decoder::Decoder;
use crate::error::Result;
use hearth_formats::GgufFile;
use std::sync::Arc;

pub fn load(file: Arc<GgufFile>) -> Result<Decoder> {
    common::standard(
        file,
        Standard { arch: "qwen3", layout: RopeLayout::Halves, layer: LayerOpts { qk_norm: true, post_norms: false } },
    )
}
