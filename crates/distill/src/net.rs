//! The trainable network: a Llama-, Qwen2-, Qwen3-, Phi-3-, Gemma 2- or
//! Gemma 3-shaped decoder whose every weight is either a trainable parameter or a frozen tensor
//! (possibly quantized, borrowed from a memory-mapped GGUF file), plus
//! optional LoRA adapters.
//!
//! The forward and backward passes live in [`crate::exec`]; this module only
//! says what the weights are and where they live. Parameters are one flat
//! buffer described by a [`ParamSet`] (name, shape, offset), so the optimizer,
//! gradient clipping and checkpoints treat them uniformly.
//!
//! Parameter names follow GGUF (`token_embd.weight`, `blk.0.attn_q.weight`,
//! ...), so a from-scratch model is written out without renaming; LoRA
//! factors are `blk.{i}.{tensor}.lora_a` / `.lora_b` and are renamed to PEFT
//! names only when saved ([`crate::lora`]).
//!
//! Architectures: Q/K/V biases (Qwen2), per-head q/k RMSNorm (Qwen3), head
//! sizes other than `n_embd / n_head`, partial RoPE, RoPE frequency factors,
//! and fused `attn_qkv` / `ffn_up` (gate + up) matrices (Phi-3), which are
//! used in place as row slices; a LoRA adapter goes on each slice (q, k, v,
//! gate, up), as the engine's PEFT loader maps `q_proj`, ..., `up_proj` onto
//! the fused rows. Phi-3 LongRoPE: training uses the short factors (the
//! layer's `rope_factors`); the engine switches to the long ones when a
//! session's context exceeds the original training context, as llama.cpp does.
//!
//! Gemma 2/3 (models/src/arch/gemma2.rs, gemma3.rs, decoder.rs): embeddings
//! times `embed_scale`, GeGLU with the tanh GELU (`cfg.geglu`), attention
//! scores soft-capped after the query scale (`attn_softcap`), logits
//! soft-capped (`final_softcap`), frozen RMSNorms of the attention and
//! feed-forward outputs before the residual adds (`post_attn_norm`,
//! `post_ffn_norm`), a sliding window per layer (`NetLayer::window`) and a
//! RoPE configuration per layer (`NetLayer::rope`: Gemma 3's local layers
//! with their own base and no scaling).
//!
//! Deliberately absent (refused with [`DistillError::Unsupported`] when a base
//! model has them): head counts, head sizes or feed-forward sizes that differ
//! between layers, differing key/value head sizes, and LoRA
//! on a fused matrix as a whole (PEFT's `qkv_proj` / `gate_up_proj`).

use crate::error::{DistillError, Result};
use crate::rng::Rng;
use hearth_models::config::{Activation, RopeConfig, RopeLayout, RopeScaling};
use hearth_models::decoder::{GateUp, Qkv};
use hearth_models::weights::Weight;
use hearth_models::Decoder;

/// Hyper-parameters of the trainable decoder.
#[derive(Clone, Debug, PartialEq)]
pub struct NetConfig {
    pub n_vocab: usize,
    pub n_embd: usize,
    pub n_layer: usize,
    pub n_head: usize,
    pub n_head_kv: usize,
    /// Size of each query, key and value head.
    pub head_dim: usize,
    pub n_ff: usize,
    /// Longest sequence the model is meant for (written as `context_length`).
    pub n_ctx: usize,
    pub norm_eps: f32,
    pub rope: RopeConfig,
    /// Softmax scale of attention logits (`1/sqrt(head_dim)` for Llama).
    pub attn_scale: f32,
    /// Output projection shares the token embedding.
    pub tied: bool,
    pub qkv_bias: bool,
    pub o_bias: bool,
    /// Per-head RMSNorm of q and k after projection, before RoPE (Qwen3;
    /// weights `attn_q_norm` / `attn_k_norm` of length `head_dim`).
    pub qk_norm: bool,
    /// GeGLU feed-forward (`gelu(gate) · up`, tanh-approximation GELU)
    /// instead of SwiGLU (Gemma 2/3).
    pub geglu: bool,
    /// Token embeddings multiplied by this (Gemma: `sqrt(n_embd)`).
    pub embed_scale: Option<f32>,
    /// Attention scores `c · tanh(s / c)` after the query scale (Gemma 2).
    pub attn_softcap: Option<f32>,
    /// Logits `c · tanh(z / c)` (Gemma 2, some Gemma 3 files).
    pub final_softcap: Option<f32>,
}

impl NetConfig {
    /// A Llama-architecture configuration (interleaved RoPE, no biases).
    #[allow(clippy::too_many_arguments)]
    pub fn llama(
        n_vocab: usize,
        n_embd: usize,
        n_layer: usize,
        n_head: usize,
        n_head_kv: usize,
        n_ff: usize,
        n_ctx: usize,
        tied: bool,
    ) -> NetConfig {
        let head_dim = n_embd / n_head.max(1);
        NetConfig {
            n_vocab,
            n_embd,
            n_layer,
            n_head,
            n_head_kv,
            head_dim,
            n_ff,
            n_ctx,
            norm_eps: 1e-5,
            rope: RopeConfig { layout: RopeLayout::Interleaved, n_rot: head_dim, freq_base: 10000.0, scaling: RopeScaling::None, attn_factor: 1.0 },
            attn_scale: 1.0 / (head_dim as f32).sqrt(),
            tied,
            qkv_bias: false,
            o_bias: false,
            qk_norm: false,
            geglu: false,
            embed_scale: None,
            attn_softcap: None,
            final_softcap: None,
        }
    }

    pub fn q_dim(&self) -> usize {
        self.n_head * self.head_dim
    }

    pub fn kv_dim(&self) -> usize {
        self.n_head_kv * self.head_dim
    }

    /// Checks the shape constraints the forward pass relies on.
    pub fn validate(&self) -> Result<()> {
        let bad = |why: String| Err(DistillError::Config(why));
        if self.n_vocab == 0 || self.n_embd == 0 || self.n_layer == 0 || self.n_ff == 0 || self.n_ctx == 0 {
            return bad("every size must be positive".into());
        }
        if self.n_head == 0 || self.n_head_kv == 0 || !self.n_head.is_multiple_of(self.n_head_kv) {
            return bad(format!("n_head_kv ({}) must divide n_head ({})", self.n_head_kv, self.n_head));
        }
        if self.head_dim == 0 || !self.rope.n_rot.is_multiple_of(2) || self.rope.n_rot > self.head_dim {
            return bad(format!("rope dims {} must be even and at most the head size {}", self.rope.n_rot, self.head_dim));
        }
        if !(self.norm_eps.is_finite() && self.norm_eps >= 0.0) || !(self.attn_scale.is_finite() && self.attn_scale > 0.0) {
            return bad("norm_eps and attn_scale must be finite".into());
        }
        let positive = |v: Option<f32>| v.is_none_or(|c| c.is_finite() && c > 0.0);
        if !positive(self.embed_scale) || !positive(self.attn_softcap) || !positive(self.final_softcap) {
            return bad("embedding scale and soft-caps must be positive".into());
        }
        Ok(())
    }
}

/// Index of a tensor in a [`ParamSet`].
pub type ParamId = usize;

/// One trainable tensor: `shape` is row-major (`[rows, cols]` for a matrix
/// computing `y = W x` with `x` of length `cols`).
#[derive(Clone, Debug, PartialEq)]
pub struct ParamInfo {
    pub name: String,
    pub shape: Vec<usize>,
    pub offset: usize,
    /// Whether AdamW applies weight decay (matrices yes; norms, biases no).
    pub decay: bool,
}

impl ParamInfo {
    pub fn len(&self) -> usize {
        self.shape.iter().product()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    pub fn range(&self) -> std::ops::Range<usize> {
        self.offset..self.offset + self.len()
    }
}

/// The layout of the flat parameter buffer.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct ParamSet {
    pub tensors: Vec<ParamInfo>,
    pub len: usize,
}

impl ParamSet {
    pub fn add(&mut self, name: impl Into<String>, shape: &[usize], decay: bool) -> ParamId {
        let info = ParamInfo { name: name.into(), shape: shape.to_vec(), offset: self.len, decay };
        self.len += info.len();
        self.tensors.push(info);
        self.tensors.len() - 1
    }

    pub fn get(&self, id: ParamId) -> &ParamInfo {
        &self.tensors[id]
    }

    pub fn find(&self, name: &str) -> Option<ParamId> {
        self.tensors.iter().position(|t| t.name == name)
    }

    pub fn slice<'a, T>(&self, id: ParamId, data: &'a [T]) -> &'a [T] {
        &data[self.tensors[id].range()]
    }

    pub fn slice_mut<'a, T>(&self, id: ParamId, data: &'a mut [T]) -> &'a mut [T] {
        &mut data[self.tensors[id].range()]
    }
}

/// A frozen matrix: rows `row0..row0+rows` of a (possibly quantized) weight,
/// so fused QKV or gate/up tensors are used in place.
#[derive(Clone, Debug)]
pub struct FrozenMat {
    pub weight: Weight,
    pub row0: usize,
    pub rows: usize,
}

/// Where a matrix's values come from.
#[derive(Clone, Debug)]
pub enum MatSrc {
    Param(ParamId),
    Frozen(FrozenMat),
}

/// Where a vector's values (norm weights, biases) come from.
#[derive(Clone, Debug)]
pub enum VecSrc {
    Param(ParamId),
    Frozen(Vec<f32>),
}

/// A LoRA adapter on one linear layer: `y += (alpha/r) · B (A x)`, with `A`
/// of shape `[r, in]` and `B` of shape `[out, r]`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct LoraPair {
    pub a: ParamId,
    pub b: ParamId,
    pub rank: usize,
}

/// `y = W x (+ bias) (+ LoRA)` with `W` of shape `[rows, cols]`.
#[derive(Clone, Debug)]
pub struct Linear {
    pub w: MatSrc,
    pub bias: Option<VecSrc>,
    pub lora: Option<LoraPair>,
    pub rows: usize,
    pub cols: usize,
}

/// The linear layers LoRA can target, with their PEFT module names.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Target {
    Q,
    K,
    V,
    O,
    Gate,
    Up,
    Down,
}

impl Target {
    pub const ALL: [Target; 7] = [Target::Q, Target::K, Target::V, Target::O, Target::Gate, Target::Up, Target::Down];

    /// The short name used on the command line.
    pub fn short(self) -> &'static str {
        match self {
            Target::Q => "q",
            Target::K => "k",
            Target::V => "v",
            Target::O => "o",
            Target::Gate => "gate",
            Target::Up => "up",
            Target::Down => "down",
        }
    }

    /// PEFT / Hugging Face module name (`q_proj`, ..., `down_proj`).
    pub fn peft_module(self) -> &'static str {
        match self {
            Target::Q => "q_proj",
            Target::K => "k_proj",
            Target::V => "v_proj",
            Target::O => "o_proj",
            Target::Gate => "gate_proj",
            Target::Up => "up_proj",
            Target::Down => "down_proj",
        }
    }

    /// The PEFT parent module (`self_attn` or `mlp`).
    pub fn peft_parent(self) -> &'static str {
        match self {
            Target::Q | Target::K | Target::V | Target::O => "self_attn",
            _ => "mlp",
        }
    }

    /// GGUF tensor stem (`attn_q`, ..., `ffn_down`).
    pub fn gguf(self) -> &'static str {
        match self {
            Target::Q => "attn_q",
            Target::K => "attn_k",
            Target::V => "attn_v",
            Target::O => "attn_output",
            Target::Gate => "ffn_gate",
            Target::Up => "ffn_up",
            Target::Down => "ffn_down",
        }
    }

    /// Parses `q`, `q_proj`, `attn_q`, ... .
    pub fn parse(s: &str) -> Option<Target> {
        Target::ALL.into_iter().find(|t| s == t.short() || s == t.peft_module() || s == t.gguf())
    }
}

#[derive(Clone, Debug)]
pub struct NetLayer {
    pub attn_norm: VecSrc,
    pub q: Linear,
    pub k: Linear,
    pub v: Linear,
    /// Per-head q/k RMSNorm weights (`head_dim` each), when `cfg.qk_norm`.
    pub q_norm: Option<VecSrc>,
    pub k_norm: Option<VecSrc>,
    pub o: Linear,
    pub ffn_norm: VecSrc,
    pub gate: Linear,
    pub up: Linear,
    pub down: Linear,
    /// RoPE frequency factors (Llama 3.1 `rope_freqs`).
    pub rope_factors: Option<Vec<f32>>,
    /// RMSNorm of the attention output and of the feed-forward output
    /// before each is added to the residual stream (Gemma 2/3).
    pub post_attn_norm: Option<VecSrc>,
    pub post_ffn_norm: Option<VecSrc>,
    /// This layer's RoPE settings when they differ from `cfg.rope` (Gemma 3
    /// local layers: their own base, no scaling).
    pub rope: Option<RopeConfig>,
    /// Sliding-window attention: each query sees itself and the
    /// `window - 1` keys before it (Gemma local layers).
    pub window: Option<usize>,
}

impl NetLayer {
    pub fn linear(&self, t: Target) -> &Linear {
        match t {
            Target::Q => &self.q,
            Target::K => &self.k,
            Target::V => &self.v,
            Target::O => &self.o,
            Target::Gate => &self.gate,
            Target::Up => &self.up,
            Target::Down => &self.down,
        }
    }

    fn linear_mut(&mut self, t: Target) -> &mut Linear {
        match t {
            Target::Q => &mut self.q,
            Target::K => &mut self.k,
            Target::V => &mut self.v,
            Target::O => &mut self.o,
            Target::Gate => &mut self.gate,
            Target::Up => &mut self.up,
            Target::Down => &mut self.down,
        }
    }
}

/// LoRA settings.
#[derive(Clone, Debug, PartialEq)]
pub struct LoraConfig {
    pub rank: usize,
    pub alpha: f32,
    pub targets: Vec<Target>,
}

impl LoraConfig {
    pub fn scale(&self) -> f32 {
        self.alpha / self.rank as f32
    }
}

/// The network: configuration, parameter layout and weight sources.
#[derive(Clone, Debug)]
pub struct Net {
    pub cfg: NetConfig,
    pub params: ParamSet,
    pub tok_embd: MatSrc,
    pub output_norm: VecSrc,
    /// `None`: tied to `tok_embd`.
    pub output: Option<MatSrc>,
    pub layers: Vec<NetLayer>,
    /// `alpha / r` when adapters are present.
    pub lora_scale: f32,
    pub lora: Option<LoraConfig>,
}

impl Net {
    /// A network whose every weight is a trainable parameter.
    pub fn new_scratch(cfg: NetConfig) -> Result<Net> {
        cfg.validate()?;
        let mut ps = ParamSet::default();
        let (d, f, qd, kvd) = (cfg.n_embd, cfg.n_ff, cfg.q_dim(), cfg.kv_dim());
        let tok_embd = MatSrc::Param(ps.add("token_embd.weight", &[cfg.n_vocab, d], true));
        let mut layers = Vec::with_capacity(cfg.n_layer);
        for i in 0..cfg.n_layer {
            let n = |s: &str| format!("blk.{i}.{s}");
            let lin = |ps: &mut ParamSet, stem: &str, rows: usize, cols: usize, bias: bool| Linear {
                w: MatSrc::Param(ps.add(n(&format!("{stem}.weight")), &[rows, cols], true)),
                bias: bias.then(|| VecSrc::Param(ps.add(n(&format!("{stem}.bias")), &[rows], false))),
                lora: None,
                rows,
                cols,
            };
            let attn_norm = VecSrc::Param(ps.add(n("attn_norm.weight"), &[d], false));
            let q = lin(&mut ps, "attn_q", qd, d, cfg.qkv_bias);
            let k = lin(&mut ps, "attn_k", kvd, d, cfg.qkv_bias);
            let v = lin(&mut ps, "attn_v", kvd, d, cfg.qkv_bias);
            let q_norm = cfg.qk_norm.then(|| VecSrc::Param(ps.add(n("attn_q_norm.weight"), &[cfg.head_dim], false)));
            let k_norm = cfg.qk_norm.then(|| VecSrc::Param(ps.add(n("attn_k_norm.weight"), &[cfg.head_dim], false)));
            let o = lin(&mut ps, "attn_output", d, qd, cfg.o_bias);
            let ffn_norm = VecSrc::Param(ps.add(n("ffn_norm.weight"), &[d], false));
            let gate = lin(&mut ps, "ffn_gate", f, d, false);
            let up = lin(&mut ps, "ffn_up", f, d, false);
            let down = lin(&mut ps, "ffn_down", d, f, false);
            layers.push(NetLayer { attn_norm, q, k, v, q_norm, k_norm, o, ffn_norm, gate, up, down, rope_factors: None, post_attn_norm: None, post_ffn_norm: None, rope: None, window: None });
        }
        let output_norm = VecSrc::Param(ps.add("output_norm.weight", &[d], false));
        let output = (!cfg.tied).then(|| MatSrc::Param(ps.add("output.weight", &[cfg.n_vocab, d], true)));
        Ok(Net { cfg, params: ps, tok_embd, output_norm, output, layers, lora_scale: 0.0, lora: None })
    }

    /// Initial values for a from-scratch network (GPT-2's scheme: N(0, 0.02)
    /// for matrices, with the two projections that write into the residual
    /// stream scaled by `1/sqrt(2·n_layer)`; norms 1; biases 0).
    pub fn init_scratch(&self, rng: &mut Rng) -> Vec<f32> {
        let mut p = vec![0f32; self.params.len];
        let resid_scale = 1.0 / (2.0 * self.cfg.n_layer as f64).sqrt();
        for t in &self.params.tensors {
            let dst = &mut p[t.range()];
            if t.name.ends_with("norm.weight") {
                dst.iter_mut().for_each(|v| *v = 1.0);
            } else if t.name.ends_with(".bias") {
                // zeros
            } else {
                let std = if t.name.ends_with("attn_output.weight") || t.name.ends_with("ffn_down.weight") {
                    0.02 * resid_scale
                } else {
                    0.02
                };
                dst.iter_mut().for_each(|v| *v = (rng.normal() * std) as f32);
            }
        }
        p
    }

    /// A frozen copy of `dec` with LoRA adapters on `lora.targets` of every
    /// layer. Only the adapters are parameters.
    pub fn from_decoder(dec: &Decoder, lora: &LoraConfig) -> Result<Net> {
        let cfg = net_config_of(dec)?;
        if lora.rank == 0 {
            return Err(DistillError::Config("LoRA rank must be positive".into()));
        }
        if !(lora.alpha.is_finite() && lora.alpha > 0.0) {
            return Err(DistillError::Config("LoRA alpha must be positive".into()));
        }
        if lora.targets.is_empty() {
            return Err(DistillError::Config("no LoRA target modules".into()));
        }
        let (d, f, qd, kvd) = (cfg.n_embd, cfg.n_ff, cfg.q_dim(), cfg.kv_dim());
        let fm = |w: &Weight, row0: usize, rows: usize| MatSrc::Frozen(FrozenMat { weight: w.clone(), row0, rows });
        let fv = |v: &Option<Vec<f32>>| v.clone().map(VecSrc::Frozen);
        let lin = |w: MatSrc, bias: Option<VecSrc>, rows: usize, cols: usize| Linear { w, bias, lora: None, rows, cols };
        let mut layers = Vec::with_capacity(cfg.n_layer);
        for (lc, lw) in dec.cfg.layers.iter().zip(&dec.w.layers) {
            let (q, k, v) = match &lw.qkv {
                Qkv::Separate { q, k, v } => (fm(q, 0, qd), fm(k, 0, kvd), fm(v, 0, kvd)),
                Qkv::Fused(w) => (fm(w, 0, qd), fm(w, qd, kvd), fm(w, qd + kvd, kvd)),
            };
            let (gate, up) = match &lw.gate_up {
                GateUp::Separate { gate, up } => (fm(gate, 0, f), fm(up, 0, f)),
                GateUp::Fused(w) => (fm(w, 0, f), fm(w, f, f)),
            };
            layers.push(NetLayer {
                attn_norm: VecSrc::Frozen(lw.attn_norm.clone()),
                q: lin(q, fv(&lw.q_bias), qd, d),
                k: lin(k, fv(&lw.k_bias), kvd, d),
                v: lin(v, fv(&lw.v_bias), kvd, d),
                q_norm: fv(&lw.q_norm),
                k_norm: fv(&lw.k_norm),
                o: lin(fm(&lw.wo, 0, d), fv(&lw.wo_bias), d, qd),
                ffn_norm: VecSrc::Frozen(lw.ffn_norm.clone()),
                gate: lin(gate, None, f, d),
                up: lin(up, None, f, d),
                down: lin(fm(&lw.down, 0, d), None, d, f),
                rope_factors: lw.rope_factors.clone(),
                post_attn_norm: fv(&lw.post_attn_norm),
                post_ffn_norm: fv(&lw.post_ffn_norm),
                rope: (lc.rope != cfg.rope).then(|| lc.rope.clone()),
                window: lc.sliding_window,
            });
        }
        let tok_embd = fm(&dec.w.tok_embd, 0, cfg.n_vocab);
        let output = dec.w.output.as_ref().map(|w| fm(w, 0, cfg.n_vocab));
        let mut net = Net {
            cfg,
            params: ParamSet::default(),
            tok_embd,
            output_norm: VecSrc::Frozen(dec.w.output_norm.clone()),
            output,
            layers,
            lora_scale: lora.scale(),
            lora: Some(lora.clone()),
        };
        let mut targets = lora.targets.clone();
        targets.sort();
        targets.dedup();
        for i in 0..net.cfg.n_layer {
            for &t in &targets {
                let (rows, cols) = {
                    let l = net.layers[i].linear(t);
                    (l.rows, l.cols)
                };
                let a = net.params.add(format!("blk.{i}.{}.lora_a", t.gguf()), &[lora.rank, cols], true);
                let b = net.params.add(format!("blk.{i}.{}.lora_b", t.gguf()), &[rows, lora.rank], true);
                net.layers[i].linear_mut(t).lora = Some(LoraPair { a, b, rank: lora.rank });
            }
        }
        Ok(net)
    }

    /// Initial adapter values as PEFT makes them: `A` uniform in
    /// `±1/sqrt(in)` (kaiming-uniform with a = sqrt(5)), `B` zero, so the
    /// adapted model starts exactly at the base model.
    pub fn init_lora(&self, rng: &mut Rng) -> Vec<f32> {
        let mut p = vec![0f32; self.params.len];
        for t in &self.params.tensors {
            if t.name.ends_with(".lora_a") {
                let bound = 1.0 / (t.shape[1] as f64).sqrt();
                p[t.range()].iter_mut().for_each(|v| *v = ((rng.uniform() * 2.0 - 1.0) * bound) as f32);
            }
        }
        p
    }

    /// Total number of model weights (parameters and frozen).
    pub fn n_weights(&self) -> usize {
        let c = &self.cfg;
        let per_layer = 2 * c.n_embd
            + c.q_dim() * c.n_embd * 2
            + c.kv_dim() * c.n_embd * 2
            + 3 * c.n_ff * c.n_embd
            + if c.qkv_bias { c.q_dim() + 2 * c.kv_dim() } else { 0 }
            + if c.o_bias { c.n_embd } else { 0 }
            + if c.qk_norm { 2 * c.head_dim } else { 0 };
        c.n_vocab * c.n_embd * if c.tied { 1 } else { 2 } + c.n_embd + c.n_layer * per_layer
    }
}

/// The training configuration equivalent to a loaded decoder, or why it
/// cannot be trained.
pub fn net_config_of(dec: &Decoder) -> Result<NetConfig> {
    let c = &dec.cfg;
    let unsupported = |why: &str| Err(DistillError::Unsupported { what: format!("architecture {}", c.arch), why: why.into() });
    let l0 = c.layers.first().ok_or_else(|| DistillError::Config("model has no layers".into()))?;
    let lw0 = dec.w.layers.first().ok_or_else(|| DistillError::Config("model has no layers".into()))?;
    for (i, (lc, lw)) in c.layers.iter().zip(&dec.w.layers).enumerate() {
        // RoPE may differ per layer (Gemma 3 local/global bases: each
        // layer keeps its own, `NetLayer::rope`); the shapes may not.
        if lc.n_head != l0.n_head || lc.n_head_kv != l0.n_head_kv || lc.n_ff != l0.n_ff || lc.head_dim_k != l0.head_dim_k {
            return unsupported(&format!("layer {i} differs in shape from layer 0"));
        }
        if !lc.rope.n_rot.is_multiple_of(2) || lc.rope.n_rot > lc.head_dim_k {
            return unsupported(&format!("layer {i}: rope dims {} not even or above the head size", lc.rope.n_rot));
        }
        if lc.head_dim_k != lc.head_dim_v {
            return unsupported("different key and value head sizes");
        }
        if lc.sliding_window == Some(0) {
            return unsupported("a sliding window of 0 keys");
        }
        // Both norms or neither, the same in every layer (the forward pass
        // applies them per network, not per layer).
        if lw.q_norm.is_some() != lw0.q_norm.is_some() || lw.k_norm.is_some() != lw0.q_norm.is_some() {
            return unsupported(&format!("layer {i} differs from layer 0 in its q/k norms"));
        }
        if lw.q_norm.as_ref().is_some_and(|w| w.len() != lc.head_dim_k) || lw.k_norm.as_ref().is_some_and(|w| w.len() != lc.head_dim_k) {
            return unsupported("q/k norm weights not of the head size");
        }
        if lw.post_attn_norm.as_ref().is_some_and(|w| w.len() != c.n_embd) || lw.post_ffn_norm.as_ref().is_some_and(|w| w.len() != c.n_embd) {
            return unsupported("post-norm weights not of the embedding size");
        }
    }
    let cfg = NetConfig {
        n_vocab: c.n_vocab,
        n_embd: c.n_embd,
        n_layer: c.layers.len(),
        n_head: l0.n_head,
        n_head_kv: l0.n_head_kv,
        head_dim: l0.head_dim_k,
        n_ff: l0.n_ff,
        n_ctx: c.n_ctx_train,
        norm_eps: c.norm_eps,
        rope: l0.rope.clone(),
        attn_scale: c.attn_scale,
        tied: dec.w.output.is_none(),
        qkv_bias: lw0.q_bias.is_some(),
        o_bias: lw0.wo_bias.is_some(),
        qk_norm: lw0.q_norm.is_some(),
        geglu: match c.activation {
            Activation::SwiGlu => false,
            Activation::GeGlu => true,
        },
        embed_scale: c.embed_scale,
        attn_softcap: c.attn_softcap,
        final_softcap: c.final_softcap,
    };
    cfg.validate()?;
    Ok(cfg)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scratch_layout_counts_every_weight() {
        let cfg = NetConfig::llama(100, 32, 2, 4, 2, 48, 16, false);
        let net = Net::new_scratch(cfg).unwrap();
        assert_eq!(net.params.len, net.n_weights());
        assert_eq!(net.params.find("blk.1.attn_k.weight").map(|i| net.params.get(i).shape.clone()), Some(vec![16, 32]));
        assert!(net.params.find("output.weight").is_some());
        let tied = Net::new_scratch(NetConfig::llama(100, 32, 2, 4, 2, 48, 16, true)).unwrap();
        assert!(tied.params.find("output.weight").is_none());
        assert_eq!(tied.params.len, tied.n_weights());
    }

    #[test]
    fn invalid_configs_are_refused() {
        let mut c = NetConfig::llama(100, 32, 2, 4, 3, 48, 16, false);
        assert!(Net::new_scratch(c.clone()).is_err());
        c.n_head_kv = 2;
        c.rope.n_rot = 9;
        assert!(Net::new_scratch(c).is_err());
    }

    #[test]
    fn targets_parse_every_spelling() {
        for t in Target::ALL {
            assert_eq!(Target::parse(t.short()), Some(t));
            assert_eq!(Target::parse(t.peft_module()), Some(t));
            assert_eq!(Target::parse(t.gguf()), Some(t));
        }
        assert_eq!(Target::parse("lm_head"), None);
    }
}
