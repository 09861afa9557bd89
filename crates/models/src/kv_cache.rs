//! Per-sequence key/value cache, stored in F16 as llama.cpp does by default
//! (`type_k = type_v = F16`). Keeping the same precision is part of matching
//! llama.cpp's logits, and it halves the memory traffic of attention.
//!
//! Layout per layer: `k[kv_head][pos][head_dim_k]`, `v[kv_head][pos][head_dim_v]`
//! so that one head's history is contiguous for the attention scan. Capacity
//! grows geometrically up to `n_ctx` instead of reserving the whole context up
//! front (a 32k-context model would otherwise pin hundreds of MB per session).

use crate::config::ModelConfig;
use crate::error::{ModelError, Result};
use half::f16;

#[derive(Clone, Debug)]
pub(crate) struct LayerKv {
    pub n_kv_head: usize,
    pub head_dim_k: usize,
    pub head_dim_v: usize,
    pub cap: usize,
    pub k: Vec<f16>,
    pub v: Vec<f16>,
}

impl LayerKv {
    fn grow(&mut self, new_cap: usize, len: usize) {
        if new_cap <= self.cap {
            return;
        }
        let mut k = vec![f16::ZERO; self.n_kv_head * new_cap * self.head_dim_k];
        let mut v = vec![f16::ZERO; self.n_kv_head * new_cap * self.head_dim_v];
        for h in 0..self.n_kv_head {
            let (dk, dv) = (self.head_dim_k, self.head_dim_v);
            k[h * new_cap * dk..h * new_cap * dk + len * dk].copy_from_slice(&self.k[h * self.cap * dk..h * self.cap * dk + len * dk]);
            v[h * new_cap * dv..h * new_cap * dv + len * dv].copy_from_slice(&self.v[h * self.cap * dv..h * self.cap * dv + len * dv]);
        }
        self.k = k;
        self.v = v;
        self.cap = new_cap;
    }

    /// Keys of one head, positions `0..len`.
    pub fn k_head(&self, h: usize, len: usize) -> &[f16] {
        let d = self.head_dim_k;
        &self.k[h * self.cap * d..(h * self.cap + len) * d]
    }

    pub fn v_head(&self, h: usize, len: usize) -> &[f16] {
        let d = self.head_dim_v;
        &self.v[h * self.cap * d..(h * self.cap + len) * d]
    }
}

/// The cache of one sequence.
#[derive(Clone, Debug)]
pub struct KvCache {
    n_ctx: usize,
    len: usize,
    pub(crate) layers: Vec<LayerKv>,
}

impl KvCache {
    /// An empty cache able to hold `n_ctx` positions.
    pub fn new(cfg: &ModelConfig, n_ctx: usize) -> KvCache {
        let layers = cfg
            .layers
            .iter()
            .map(|l| LayerKv {
                n_kv_head: l.n_head_kv,
                head_dim_k: l.head_dim_k,
                head_dim_v: l.head_dim_v,
                cap: 0,
                k: Vec::new(),
                v: Vec::new(),
            })
            .collect();
        KvCache { n_ctx, len: 0, layers }
    }

    /// Positions filled so far (the next token's position).
    pub fn len(&self) -> usize {
        self.len
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Maximum positions.
    pub fn n_ctx(&self) -> usize {
        self.n_ctx
    }

    /// Forgets every position from `len` on (prefix reuse, rewinding).
    pub fn truncate(&mut self, len: usize) {
        self.len = self.len.min(len);
    }

    /// Bytes held by the cache buffers.
    pub fn bytes(&self) -> usize {
        self.layers.iter().map(|l| (l.k.len() + l.v.len()) * 2).sum()
    }

    /// Makes room for `n` more positions or fails with an explicit overflow.
    pub(crate) fn reserve(&mut self, n: usize) -> Result<()> {
        let needed = self.len + n;
        if needed > self.n_ctx {
            return Err(ModelError::ContextOverflow { needed, limit: self.n_ctx });
        }
        for l in &mut self.layers {
            if needed > l.cap {
                let new_cap = needed.max(l.cap * 2).max(64).min(self.n_ctx);
                l.grow(new_cap, self.len);
            }
        }
        Ok(())
    }

    /// Marks `n` reserved positions as filled.
    pub(crate) fn advance(&mut self, n: usize) {
        self.len += n;
    }
}
