//! Per-sequence key/value cache, stored in F16 as llama.cpp does by default
//! (`type_k = type_v = F16`), or in F32 on request (llama.cpp's
//! `--cache-type-k f32`). Keeping the same precision is part of matching
//! llama.cpp's logits; F16 also halves the memory traffic of attention.
//!
//! Layout per layer: `k[kv_head][pos][head_dim_k]`, `v[kv_head][pos][head_dim_v]`
//! so that one head's history is contiguous for the attention scan. Capacity
//! grows geometrically up to `n_ctx` instead of reserving the whole context up
//! front (a 32k-context model would otherwise pin hundreds of MB per session).

use crate::config::ModelConfig;
use crate::error::{ModelError, Result};
use half::f16;

/// Element type of cached keys or values.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum KvType {
    #[default]
    F16,
    F32,
}

/// Storage of one layer's keys or values.
#[derive(Clone, Debug)]
pub(crate) enum KvData {
    F16(Vec<f16>),
    F32(Vec<f32>),
}

impl KvData {
    fn new(ty: KvType) -> KvData {
        match ty {
            KvType::F16 => KvData::F16(Vec::new()),
            KvType::F32 => KvData::F32(Vec::new()),
        }
    }


    fn bytes(&self) -> usize {
        match self {
            KvData::F16(v) => v.len() * 2,
            KvData::F32(v) => v.len() * 4,
        }
    }

    /// Grows to `heads` blocks of `new_cap * d`, keeping `len * d` per head.
    fn grow(&mut self, heads: usize, old_cap: usize, new_cap: usize, len: usize, d: usize) {
        fn g<T: Copy + Default>(v: &mut Vec<T>, heads: usize, old_cap: usize, new_cap: usize, len: usize, d: usize) {
            let mut n = vec![T::default(); heads * new_cap * d];
            for h in 0..heads {
                n[h * new_cap * d..h * new_cap * d + len * d].copy_from_slice(&v[h * old_cap * d..h * old_cap * d + len * d]);
            }
            *v = n;
        }
        match self {
            KvData::F16(v) => g(v, heads, old_cap, new_cap, len, d),
            KvData::F32(v) => g(v, heads, old_cap, new_cap, len, d),
        }
    }

    /// Stores `x` at element offset `at`.
    pub(crate) fn store(&mut self, at: usize, x: &[f32]) {
        match self {
            KvData::F16(v) => v[at..at + x.len()].iter_mut().zip(x).for_each(|(d, &s)| *d = f16::from_f32(s)),
            KvData::F32(v) => v[at..at + x.len()].copy_from_slice(x),
        }
    }
}

#[derive(Clone, Debug)]
pub(crate) struct LayerKv {
    pub n_kv_head: usize,
    pub head_dim_k: usize,
    pub head_dim_v: usize,
    pub cap: usize,
    pub k: KvData,
    pub v: KvData,
}

impl LayerKv {
    fn grow(&mut self, new_cap: usize, len: usize) {
        if new_cap <= self.cap {
            return;
        }
        self.k.grow(self.n_kv_head, self.cap, new_cap, len, self.head_dim_k);
        self.v.grow(self.n_kv_head, self.cap, new_cap, len, self.head_dim_v);
        self.cap = new_cap;
    }

    /// Element offset of (head, position) in `k`.
    pub fn k_at(&self, h: usize, pos: usize) -> usize {
        (h * self.cap + pos) * self.head_dim_k
    }

    pub fn v_at(&self, h: usize, pos: usize) -> usize {
        (h * self.cap + pos) * self.head_dim_v
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
    pub fn new(cfg: &ModelConfig, n_ctx: usize, k_type: KvType, v_type: KvType) -> KvCache {
        let layers = cfg
            .layers
            .iter()
            .map(|l| LayerKv {
                n_kv_head: l.n_head_kv,
                head_dim_k: l.head_dim_k,
                head_dim_v: l.head_dim_v,
                cap: 0,
                k: KvData::new(k_type),
                v: KvData::new(v_type),
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
        self.layers.iter().map(|l| l.k.bytes() + l.v.bytes()).sum()
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
