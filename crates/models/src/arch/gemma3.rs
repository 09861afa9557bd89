//! `gemma3`: Gemma 3 text decoders (270M, 1B, 4B, 12B, 27B; the vision tower
//! of the larger ones is not loaded).
//!
//! Like Gemma 2 (see `gemma2.rs`) without the attention soft-cap, plus
//! per-head RMS norms on q and k before RoPE. Five local layers
//! (sliding window, RoPE base `rope.freq_base_swa`, default 10000, no
//! scaling) alternate with one global layer (RoPE base `rope.freq_base`,
//! 1e6, with the file's rope scaling: linear ×8 on 4B and larger).
//! The final soft-cap applies only when the file sets it; the output matrix
//! is used when present (src/models/gemma3.cpp). Without
//! `attention.sliding_window` every layer is global.

use super::common::{self, GemmaOpts};
use crate::decoder::Decoder;
use crate::error::Result;
use hearth_formats::GgufFile;
use std::sync::Arc;

pub fn load(file: Arc<GgufFile>) -> Result<Decoder> {
    common::gemma(
        file,
        GemmaOpts {
            arch: "gemma3",
            qk_norm: true,
            default_swa_period: 6,
            default_window: None,
            default_freq_base_swa: Some(10000.0),
            attn_softcap: None,
            final_softcap: None,
            n_layer_27b: 62,
            output_tensor: true,
        },
    )
}
