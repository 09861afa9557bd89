//! `phi3`: Phi-3-mini, Phi-3.5-mini, Phi-4 (14B) and Phi-4-mini.
//!
//! Against llama: Q, K and V come from one fused `attn_qkv` matrix and the
//! FFN's gate and up from one `ffn_up` matrix of `2 * n_ff` rows (gate
//! first); RoPE uses the halves layout and may rotate only part of each
//! head (`rope.dimension_count`, Phi-4-mini rotates 3/4); the query is
//! scaled by `1/sqrt(head_dim)` before attention (src/models/phi3.cpp).
//!
//! LongRoPE ("su") models (Phi-3-mini-128k, Phi-3.5) carry two global
//! per-pair frequency factor sets, `rope_factors_short` and
//! `rope_factors_long`; a session whose context exceeds
//! `rope.scaling.original_context_length` uses the long ones
//! (llama-model.cpp `get_rope_factors`), and `rope.scaling.attn_factor`
//! scales every cos/sin. Phi-3's sliding window is ignored, as llama.cpp
//! ignores it (it disabled Phi SWA, llama.cpp PR 13676). Absent: PhiMoE.

use super::common::{self, LayerOpts, Standard};
use crate::config::{HParams, RopeLayout};
use crate::decoder::Decoder;
use crate::error::{ModelError, Result};
use hearth_formats::GgufFile;
use std::sync::Arc;

pub fn load(file: Arc<GgufFile>) -> Result<Decoder> {
    let h = HParams::new(&file, "phi3");
    if h.opt_usize("expert_count")?.unwrap_or(0) > 0 {
        return Err(ModelError::Invalid("mixture-of-experts Phi models are not supported".into()));
    }
    let mut d = common::standard(
        Arc::clone(&file),
        Standard { arch: "phi3", layout: RopeLayout::Halves, layer: LayerOpts::default() },
    )?;
    let lc = &d.cfg.layers[0];
    h.check(lc.head_dim_k == lc.head_dim_v, "attention.key_length", lc.head_dim_k, "phi3 needs equal key and value head sizes")?;
    // phi3.cpp: Qcur = ggml_scale(Qcur, 1/sqrt(n_embd_head)), kq_scale 1.
    d.cfg.attn_scale = 1.0 / (lc.head_dim_v as f32).sqrt();
    d.cfg.attn_scale_on_q = true;
    Ok(d)
}
