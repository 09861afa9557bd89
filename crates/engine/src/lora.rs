//! LoRA adapters applied to a loaded model by merging `W + scale · B · A`
//! into an owned copy of each adapted matrix. Every other weight stays
//! shared with the base (the memory map), so several adapters over one base
//! cost one copy of their target matrices each.
//!
//! Two file formats, told apart by content ([`LoraAdapter::open`]): a PEFT
//! directory (`adapter_config.json` + `adapter_model.safetensors`) and a GGUF
//! LoRA file as llama.cpp's `convert_lora_to_gguf.py` writes and `--lora`
//! loads (read and written by the [`gguf`](self::gguf) half of this module).
//!
//! Facts used (huggingface/peft `tuners/lora`): `lora_A.weight` is
//! `[r, in_features]`, `lora_B.weight` is `[out_features, r]`, the delta is
//! `B · A · lora_alpha / r` (`lora_alpha / sqrt(r)` with `use_rslora`).
//! Tensor names end in `layers.{i}.{self_attn|mlp}.{module}.lora_{A|B}.weight`
//! under any prefix (`base_model.model.model.` in saved adapters).
//!
//! Q/K row order: llama.cpp's converter permutes the rows of `q_proj` and
//! `k_proj` of Llama-family models so that RoPE rotates adjacent pairs
//! (`convert_hf_to_gguf.py`, `LlamaModel.permute`). A PEFT adapter is in
//! Hugging Face order, so the rows of its `lora_B` for `q_proj`/`k_proj` are
//! permuted the same way when the model's RoPE is the interleaved (Llama)
//! layout; NeoX-layout models (Qwen2, ...) were not permuted and neither is
//! the adapter. A GGUF LoRA is already in the GGUF's row order (the
//! converter permutes `lora_B` with the base) and is never permuted.
//! [`permute_rows_hf_to_gguf`] and its inverse are public so that the
//! trainer writes adapters in Hugging Face order.
//!
//! Merged matrices keep the base type when it is F32, F16 or BF16, and are
//! stored as Q8_0 (F16 if the row is not a whole number of 32-blocks) when
//! the base is quantized, so the small delta is not lost in a 4-bit
//! re-quantization.
//!
//! Deliberately absent: DoRA, `rank_pattern` / `alpha_pattern`,
//! `modules_to_save`, trained biases, `fan_in_fan_out` (GPT-2 Conv1D),
//! adapters on embeddings or the output head, GGUF LoRA norm tensors and
//! activated LoRA (aLoRA), and applying the delta at matmul time without a
//! merged copy.

use hearth_formats::{Dtype, GgmlType, SafetensorsFile};
use hearth_models::config::{LayerConfig, RopeLayout};
use hearth_models::decoder::{GateUp, Layer, Qkv};
use hearth_models::weights::Weight;
use hearth_models::Decoder;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

#[path = "lora_gguf.rs"]
pub mod gguf;

/// The projections an adapter may target, by PEFT module name.
pub const MODULES: [&str; 7] = ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"];

/// Module name of a GGUF LoRA on a fused `attn_qkv` matrix (Phi-3); PEFT
/// adapters never use it here.
pub const FUSED_QKV: &str = "qkv_proj";

/// What is wrong with an adapter, for callers and tests that must tell
/// hostile or mismatched files apart without parsing messages.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum AdapterErrorKind {
    /// The file or directory cannot be read.
    Io,
    /// Not parseable as an adapter of a known format (bad JSON, safetensors
    /// or GGUF, neither a PEFT directory nor a GGUF file, no LoRA tensors).
    Format,
    /// A readable file that is not a LoRA adapter: PEFT `peft_type` other
    /// than LORA, GGUF `general.type` not `adapter` or `adapter.type` not `lora`.
    NotLora,
    /// A required key is missing or has the wrong type (`r`, `lora_alpha`,
    /// `general.architecture`, `adapter.lora.alpha`).
    MissingKey,
    /// The adapter was made for another architecture than the model's.
    ArchMismatch,
    /// A tensor that is not a LoRA factor of a projection this module knows.
    UnknownTensor,
    /// A `lora_A`/`lora_a` without its `lora_B`/`lora_b`, or the reverse.
    MissingPair,
    /// The two factors of a pair (or a factor and the config) disagree on the rank.
    RankMismatch,
    /// Factors that do not fit the model's matrix, or a layer it lacks.
    ShapeMismatch,
    /// Well-formed but not supported here (DoRA, aLoRA, norm tensors, ...).
    Unsupported,
}

/// Why an adapter could not be read or applied.
#[derive(Debug, thiserror::Error)]
#[error("adapter {path}: {why}")]
pub struct AdapterError {
    pub path: PathBuf,
    pub kind: AdapterErrorKind,
    pub why: String,
}

/// Which file an adapter came from; decides the Q/K row order of its
/// `lora_B` factors and how the scale is computed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum AdapterFormat {
    /// PEFT directory: Hugging Face row order.
    Peft,
    /// GGUF LoRA file: the base GGUF's row order.
    Gguf,
}

/// One adapted projection: `a` is `[rank, cols]`, `b` is `[rows, rank]`,
/// row-major, in the row order of the adapter's [`AdapterFormat`].
#[derive(Clone, Debug, PartialEq)]
pub struct LoraPair {
    pub rank: usize,
    pub a: Vec<f32>,
    pub b: Vec<f32>,
}

/// A LoRA adapter read from disk (PEFT directory or GGUF LoRA file).
#[derive(Clone, Debug)]
pub struct LoraAdapter {
    pub path: PathBuf,
    pub format: AdapterFormat,
    /// The configured rank (PEFT `r`); for a GGUF LoRA, whose pairs may each
    /// have their own rank, the largest.
    pub rank: usize,
    pub alpha: f32,
    pub use_rslora: bool,
    /// Module names (`q_proj`, ...): from the PEFT config, or the modules a
    /// GGUF LoRA adapts.
    pub target_modules: Vec<String>,
    pub base_model: Option<String>,
    /// `general.architecture` of a GGUF LoRA (checked against the model's);
    /// PEFT adapters do not record one.
    pub arch: Option<String>,
    /// `(layer, module)` → factors.
    pub pairs: BTreeMap<(usize, String), LoraPair>,
}

/// The name this type had when only PEFT adapters were read.
pub type PeftAdapter = LoraAdapter;

impl LoraAdapter {
    /// Reads an adapter, telling the format by content: a directory is a
    /// PEFT adapter, a file must start with the GGUF magic.
    pub fn open(path: &Path) -> Result<LoraAdapter, AdapterError> {
        let err = |kind, why: String| AdapterError { path: path.to_path_buf(), kind, why };
        let meta = std::fs::metadata(path).map_err(|e| err(AdapterErrorKind::Io, e.to_string()))?;
        if meta.is_dir() {
            return LoraAdapter::open_peft(path);
        }
        let mut magic = [0u8; 4];
        let n = std::fs::File::open(path)
            .and_then(|mut f| std::io::Read::read(&mut f, &mut magic))
            .map_err(|e| err(AdapterErrorKind::Io, e.to_string()))?;
        if n == 4 && &magic == b"GGUF" {
            return gguf::open(path);
        }
        Err(err(
            AdapterErrorKind::Format,
            "neither a PEFT adapter directory (adapter_config.json + adapter_model.safetensors) nor a GGUF LoRA file".into(),
        ))
    }

    /// Reads `dir/adapter_config.json` and `dir/adapter_model.safetensors`.
    pub fn open_peft(dir: &Path) -> Result<LoraAdapter, AdapterError> {
        use AdapterErrorKind as K;
        let err = |kind, why: String| AdapterError { path: dir.to_path_buf(), kind, why };
        let cfg_path = dir.join("adapter_config.json");
        let text = std::fs::read_to_string(&cfg_path).map_err(|e| err(K::Io, format!("adapter_config.json: {e}")))?;
        let cfg: serde_json::Value = serde_json::from_str(&text).map_err(|e| err(K::Format, format!("adapter_config.json: {e}")))?;
        let peft_type = cfg.get("peft_type").and_then(|v| v.as_str()).unwrap_or("LORA");
        if peft_type != "LORA" {
            return Err(err(K::NotLora, format!("peft_type {peft_type} is not LORA")));
        }
        let rank = cfg.get("r").and_then(|v| v.as_u64()).filter(|&r| r > 0).ok_or_else(|| err(K::MissingKey, "\"r\" must be a positive integer".into()))?;
        let alpha = cfg.get("lora_alpha").and_then(|v| v.as_f64()).filter(|a| a.is_finite()).ok_or_else(|| err(K::MissingKey, "\"lora_alpha\" must be a number".into()))?;
        let flag = |k: &str| cfg.get(k).and_then(|v| v.as_bool()).unwrap_or(false);
        for k in ["use_dora", "fan_in_fan_out"] {
            if flag(k) {
                return Err(err(K::Unsupported, format!("\"{k}\": true is not supported")));
            }
        }
        if let Some(b) = cfg.get("bias").and_then(|v| v.as_str()) {
            if b != "none" {
                return Err(err(K::Unsupported, format!("\"bias\": \"{b}\" is not supported (only \"none\")")));
            }
        }
        let non_empty = |k: &str| match cfg.get(k) {
            None | Some(serde_json::Value::Null) => false,
            Some(serde_json::Value::Object(m)) => !m.is_empty(),
            Some(serde_json::Value::Array(a)) => !a.is_empty(),
            Some(_) => true,
        };
        for k in ["rank_pattern", "alpha_pattern", "modules_to_save"] {
            if non_empty(k) {
                return Err(err(K::Unsupported, format!("\"{k}\" is not supported")));
            }
        }
        let target_modules: Vec<String> = match cfg.get("target_modules") {
            Some(serde_json::Value::Array(a)) => a.iter().filter_map(|v| v.as_str().map(str::to_string)).collect(),
            Some(serde_json::Value::String(s)) => vec![s.clone()],
            _ => Vec::new(),
        };
        let base_model = cfg.get("base_model_name_or_path").and_then(|v| v.as_str()).map(str::to_string);

        let st_path = dir.join("adapter_model.safetensors");
        let st = SafetensorsFile::open(&st_path).map_err(|e| err(K::Format, format!("adapter_model.safetensors: {e}")))?;
        let mut a_map: BTreeMap<(usize, String), (Vec<usize>, Vec<f32>)> = BTreeMap::new();
        let mut b_map: BTreeMap<(usize, String), (Vec<usize>, Vec<f32>)> = BTreeMap::new();
        for info in st.tensors() {
            let name = info.name.as_str();
            let (key, is_a) = parse_name(name).ok_or_else(|| err(K::UnknownTensor, format!("tensor {name}: not a LoRA factor of a supported projection")))?;
            let shape: Vec<usize> = info.shape.iter().map(|&d| d as usize).collect();
            let bytes = st.tensor_data(info);
            let vals: Vec<f32> = match info.dtype {
                Dtype::F32 => bytes.chunks_exact(4).map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]])).collect(),
                Dtype::F16 => bytes.chunks_exact(2).map(|c| f16_to_f32(u16::from_le_bytes([c[0], c[1]]))).collect(),
                Dtype::BF16 => bytes.chunks_exact(2).map(|c| f32::from_bits((u16::from_le_bytes([c[0], c[1]]) as u32) << 16)).collect(),
                other => return Err(err(K::Unsupported, format!("tensor {name}: dtype {other:?} (expected F32, F16 or BF16)"))),
            };
            if shape.len() != 2 || shape[0] * shape[1] != vals.len() {
                return Err(err(K::ShapeMismatch, format!("tensor {name}: shape {shape:?} is not a matrix")));
            }
            let map = if is_a { &mut a_map } else { &mut b_map };
            if map.insert(key, (shape, vals)).is_some() {
                return Err(err(K::Format, format!("tensor {name} appears twice")));
            }
        }
        let mut pairs = BTreeMap::new();
        for (key, (sa, a)) in a_map {
            let (sb, b) = b_map.remove(&key).ok_or_else(|| err(K::MissingPair, format!("layer {} {}: lora_A without lora_B", key.0, key.1)))?;
            if sa[0] as u64 != rank || sb[1] as u64 != rank {
                return Err(err(K::RankMismatch, format!("layer {} {}: factor shapes {sa:?} / {sb:?} do not have rank {rank}", key.0, key.1)));
            }
            pairs.insert(key, LoraPair { rank: rank as usize, a, b });
        }
        if let Some(key) = b_map.keys().next() {
            return Err(err(K::MissingPair, format!("layer {} {}: lora_B without lora_A", key.0, key.1)));
        }
        if pairs.is_empty() {
            return Err(err(K::Format, "no LoRA tensors".into()));
        }
        Ok(LoraAdapter {
            path: dir.to_path_buf(),
            format: AdapterFormat::Peft,
            rank: rank as usize,
            alpha: alpha as f32,
            use_rslora: flag("use_rslora"),
            target_modules,
            base_model,
            arch: None,
            pairs,
        })
    }

    /// The factor the delta `B · A` of a pair of rank [`LoraAdapter::rank`]
    /// is multiplied by.
    pub fn scale(&self) -> f32 {
        self.scale_for_rank(self.rank)
    }

    /// The factor for a pair of rank `r`. PEFT: `alpha / r` (`alpha / √r`
    /// with rsLoRA). GGUF: `alpha / r`, where llama.cpp takes `r` from each
    /// `lora_b` and an alpha of 0 means a scale of 1
    /// (llama-adapter.h `llama_adapter_lora_weight::get_scale`).
    pub fn scale_for_rank(&self, r: usize) -> f32 {
        let r = r.max(1) as f32;
        match self.format {
            AdapterFormat::Peft if self.use_rslora => self.alpha / r.sqrt(),
            AdapterFormat::Peft => self.alpha / r,
            AdapterFormat::Gguf if self.alpha == 0.0 => 1.0,
            AdapterFormat::Gguf => self.alpha / r,
        }
    }

    /// The factors of one pair in the row order of `dec`'s GGUF matrices
    /// (Q/K `lora_B` of PEFT adapters permuted for interleaved RoPE).
    fn b_in_gguf_order(&self, lc: &LayerConfig, module: &str, pair: &LoraPair) -> Vec<f32> {
        if self.format == AdapterFormat::Gguf {
            return pair.b.clone();
        }
        match (module, lc.rope.layout) {
            ("q_proj", RopeLayout::Interleaved) => permute_rows_hf_to_gguf(&pair.b, pair.rank, lc.n_head, lc.head_dim_k),
            ("k_proj", RopeLayout::Interleaved) => permute_rows_hf_to_gguf(&pair.b, pair.rank, lc.n_head_kv, lc.head_dim_k),
            _ => pair.b.clone(),
        }
    }

    /// Fails with [`AdapterErrorKind::ArchMismatch`] when the adapter names
    /// an architecture other than `dec`'s (llama.cpp refuses the same way).
    fn check_arch(&self, dec: &Decoder) -> Result<(), AdapterError> {
        match &self.arch {
            Some(a) if *a != dec.cfg.arch => Err(AdapterError {
                path: self.path.clone(),
                kind: AdapterErrorKind::ArchMismatch,
                why: format!("adapter is for architecture {a:?}, the model is {:?}", dec.cfg.arch),
            }),
            _ => Ok(()),
        }
    }

    /// `dec` with every adapted projection replaced by its merged copy.
    pub fn merge_into(&self, dec: &Decoder) -> Result<Decoder, AdapterError> {
        let err = |kind, why: String| AdapterError { path: self.path.clone(), kind, why };
        self.check_arch(dec)?;
        let mut w = dec.w.clone();
        for ((layer, module), pair) in &self.pairs {
            let t = resolve(dec, *layer, module, self.format).map_err(|(k, why)| err(k, format!("layer {layer} {module}: {why}")))?;
            let lc = &dec.cfg.layers[*layer];
            let full = t.weight(&dec.w.layers[*layer]);
            if t.row0 + t.rows > full.rows {
                return Err(err(AdapterErrorKind::ShapeMismatch, format!("layer {layer} {module}: rows {}..{} of a {}-row matrix", t.row0, t.row0 + t.rows, full.rows)));
            }
            check_fit(pair, t.rows, full.cols).map_err(|why| err(AdapterErrorKind::ShapeMismatch, format!("layer {layer} {module}: {why}")))?;
            let b = self.b_in_gguf_order(lc, module, pair);
            let weight = t.weight_mut(&mut w.layers[*layer]);
            *weight = merged(weight, t.row0, t.rows, &pair.a, &b, pair.rank, self.scale_for_rank(pair.rank))
                .map_err(|why| err(AdapterErrorKind::ShapeMismatch, format!("layer {layer} {module}: {why}")))?;
        }
        Decoder::new(dec.cfg.clone(), w).map_err(|e| err(AdapterErrorKind::ShapeMismatch, e.to_string()))
    }
}

/// Which stored matrix of a layer a module adapts.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Slot {
    Q,
    K,
    V,
    Qkv,
    O,
    Gate,
    Up,
    GateUp,
    Down,
}

/// A module resolved against a model: the matrix, the rows of it the
/// adapter's `B` covers, and the matrix's GGUF tensor name suffix.
#[derive(Clone, Copy, Debug)]
struct Resolved {
    slot: Slot,
    row0: usize,
    rows: usize,
    gguf: &'static str,
}

impl Resolved {
    fn weight<'a>(&self, l: &'a Layer) -> &'a Weight {
        match (self.slot, &l.qkv, &l.gate_up) {
            (Slot::Q, Qkv::Separate { q, .. }, _) => q,
            (Slot::K, Qkv::Separate { k, .. }, _) => k,
            (Slot::V, Qkv::Separate { v, .. }, _) => v,
            (Slot::Q | Slot::K | Slot::V | Slot::Qkv, Qkv::Fused(m), _) => m,
            (Slot::Gate, _, GateUp::Separate { gate, .. }) => gate,
            (Slot::Up, _, GateUp::Separate { up, .. }) => up,
            (Slot::Gate | Slot::Up | Slot::GateUp, _, GateUp::Fused(m)) => m,
            (Slot::Down, _, _) => &l.down,
            // O, and (never built by `resolve`) a slot the layer lacks.
            _ => &l.wo,
        }
    }

    fn weight_mut<'a>(&self, l: &'a mut Layer) -> &'a mut Weight {
        match (self.slot, &mut l.qkv, &mut l.gate_up) {
            (Slot::Q, Qkv::Separate { q, .. }, _) => q,
            (Slot::K, Qkv::Separate { k, .. }, _) => k,
            (Slot::V, Qkv::Separate { v, .. }, _) => v,
            (Slot::Q | Slot::K | Slot::V | Slot::Qkv, Qkv::Fused(m), _) => m,
            (Slot::Gate, _, GateUp::Separate { gate, .. }) => gate,
            (Slot::Up, _, GateUp::Separate { up, .. }) => up,
            (Slot::Gate | Slot::Up | Slot::GateUp, _, GateUp::Fused(m)) => m,
            (Slot::Down, _, _) => &mut l.down,
            _ => &mut l.wo,
        }
    }
}

/// Resolves `module` of `layer` against `dec`. PEFT names of fused models
/// address row ranges of the fused matrix; in a GGUF LoRA `up_proj` (the
/// tensor `ffn_up`) and `qkv_proj` (`attn_qkv`) are whole tensors, since
/// that is what the name means in the base GGUF (Phi-3's `ffn_up` holds gate and up).
fn resolve(dec: &Decoder, layer: usize, module: &str, format: AdapterFormat) -> Result<Resolved, (AdapterErrorKind, String)> {
    use AdapterErrorKind as K;
    let lc = dec.cfg.layers.get(layer).ok_or_else(|| (K::ShapeMismatch, format!("layer {layer} does not exist (the model has {})", dec.cfg.layers.len())))?;
    let lw = &dec.w.layers[layer];
    let qd = lc.n_head * lc.head_dim_k;
    let kvd = lc.n_head_kv * lc.head_dim_k;
    let f = lc.n_ff;
    let r = |slot, row0, rows, gguf| Ok(Resolved { slot, row0, rows, gguf });
    match (module, &lw.qkv, &lw.gate_up, format) {
        ("q_proj", Qkv::Separate { q, .. }, _, _) => r(Slot::Q, 0, q.rows, "attn_q"),
        ("k_proj", Qkv::Separate { k, .. }, _, _) => r(Slot::K, 0, k.rows, "attn_k"),
        ("v_proj", Qkv::Separate { v, .. }, _, _) => r(Slot::V, 0, v.rows, "attn_v"),
        ("q_proj", Qkv::Fused(_), _, AdapterFormat::Peft) => r(Slot::Q, 0, qd, "attn_qkv"),
        ("k_proj", Qkv::Fused(_), _, AdapterFormat::Peft) => r(Slot::K, qd, kvd, "attn_qkv"),
        ("v_proj", Qkv::Fused(_), _, AdapterFormat::Peft) => r(Slot::V, qd + kvd, kvd, "attn_qkv"),
        (FUSED_QKV, Qkv::Fused(m), _, AdapterFormat::Gguf) => r(Slot::Qkv, 0, m.rows, "attn_qkv"),
        ("o_proj", _, _, _) => r(Slot::O, 0, lw.wo.rows, "attn_output"),
        ("gate_proj", _, GateUp::Separate { gate, .. }, _) => r(Slot::Gate, 0, gate.rows, "ffn_gate"),
        ("up_proj", _, GateUp::Separate { up, .. }, _) => r(Slot::Up, 0, up.rows, "ffn_up"),
        ("gate_proj", _, GateUp::Fused(_), AdapterFormat::Peft) => r(Slot::Gate, 0, f, "ffn_up"),
        ("up_proj", _, GateUp::Fused(_), AdapterFormat::Peft) => r(Slot::Up, f, f, "ffn_up"),
        ("up_proj", _, GateUp::Fused(m), AdapterFormat::Gguf) => r(Slot::GateUp, 0, m.rows, "ffn_up"),
        ("down_proj", _, _, _) => r(Slot::Down, 0, lw.down.rows, "ffn_down"),
        (other, qkv, gate_up, _) if MODULES.contains(&other) || other == FUSED_QKV => Err((
            K::ShapeMismatch,
            format!(
                "{other} does not fit the model's layout (fused attn_qkv: {}, fused ffn_up: {})",
                matches!(qkv, Qkv::Fused(_)),
                matches!(gate_up, GateUp::Fused(_))
            ),
        )),
        (other, _, _, _) => Err((K::UnknownTensor, format!("module {other} is not supported"))),
    }
}

/// Checks that a pair's factors are `[r, cols]` and `[rows, r]`.
fn check_fit(pair: &LoraPair, rows: usize, cols: usize) -> Result<(), String> {
    let r = pair.rank;
    if r == 0 || pair.a.len() != r * cols || pair.b.len() != rows * r {
        return Err(format!(
            "factors [{r}, {}] / [{}, {r}] do not fit the model's [{rows}, {cols}] projection",
            pair.a.len() / r.max(1),
            pair.b.len() / r.max(1)
        ));
    }
    Ok(())
}

/// `(layer, module)` and whether it is `lora_A`, from a PEFT tensor name.
fn parse_name(name: &str) -> Option<((usize, String), bool)> {
    let rest = &name[name.find("layers.")? + "layers.".len()..];
    let (layer, rest) = rest.split_once('.')?;
    let layer: usize = layer.parse().ok()?;
    let rest = rest.strip_prefix("self_attn.").or_else(|| rest.strip_prefix("mlp."))?;
    let (module, tail) = rest.split_once('.')?;
    if !MODULES.contains(&module) {
        return None;
    }
    let is_a = match tail {
        "lora_A.weight" | "lora_A.default.weight" => true,
        "lora_B.weight" | "lora_B.default.weight" => false,
        _ => return None,
    };
    Some(((layer, module.to_string()), is_a))
}

/// Storage type of a merged matrix (see the module docs).
fn merged_type(ty: GgmlType, cols: usize) -> GgmlType {
    match ty {
        GgmlType::F32 | GgmlType::F16 | GgmlType::BF16 => ty,
        _ if cols.is_multiple_of(32) => GgmlType::Q8_0,
        _ => GgmlType::F16,
    }
}

/// A copy of `w` whose rows `row0..row0 + rows` are `W + scale · B · A`.
fn merged(w: &Weight, row0: usize, rows: usize, a: &[f32], b: &[f32], r: usize, scale: f32) -> Result<Weight, String> {
    let cols = w.cols;
    let ty = merged_type(w.ty, cols);
    let rb = ty.row_bytes(cols as u64).ok_or_else(|| format!("{cols} columns do not fit {ty} blocks"))? as usize;
    let mut data = vec![0u8; rb * w.rows];
    let mut row = vec![0f32; cols];
    for (i, dst) in data.chunks_exact_mut(rb).enumerate() {
        w.dequantize_row(i, &mut row);
        if (row0..row0 + rows).contains(&i) {
            let brow = &b[(i - row0) * r..(i - row0 + 1) * r];
            for (k, &bk) in brow.iter().enumerate() {
                let s = scale * bk;
                for (x, &ak) in row.iter_mut().zip(&a[k * cols..(k + 1) * cols]) {
                    *x += s * ak;
                }
            }
        }
        hearth_kernels::quantize_row_ref(ty, &row, dst);
    }
    Weight::from_owned(ty, w.rows, cols, data).map_err(|e| e.to_string())
}

/// Rows of a `[n_head · head_dim, r]` matrix from Hugging Face order to the
/// order llama.cpp's converter gives Llama Q/K weights: within each head,
/// HF row `s · head_dim/2 + j` becomes row `2j + s`.
pub fn permute_rows_hf_to_gguf(m: &[f32], r: usize, n_head: usize, head_dim: usize) -> Vec<f32> {
    permute(m, r, n_head, head_dim, true)
}

/// The inverse of [`permute_rows_hf_to_gguf`].
pub fn permute_rows_gguf_to_hf(m: &[f32], r: usize, n_head: usize, head_dim: usize) -> Vec<f32> {
    permute(m, r, n_head, head_dim, false)
}

fn permute(m: &[f32], r: usize, n_head: usize, head_dim: usize, to_gguf: bool) -> Vec<f32> {
    let half = head_dim / 2;
    let mut out = m.to_vec();
    if !head_dim.is_multiple_of(2) || m.len() != n_head * head_dim * r {
        return out;
    }
    for h in 0..n_head {
        for s in 0..2 {
            for j in 0..half {
                let hf = h * head_dim + s * half + j;
                let gg = h * head_dim + 2 * j + s;
                let (src, dst) = if to_gguf { (hf, gg) } else { (gg, hf) };
                out[dst * r..(dst + 1) * r].copy_from_slice(&m[src * r..(src + 1) * r]);
            }
        }
    }
    out
}

/// IEEE half to f32 (exact).
fn f16_to_f32(h: u16) -> f32 {
    let mut out = [0f32; 1];
    hearth_kernels::dequantize_row(GgmlType::F16, &h.to_le_bytes(), &mut out);
    out[0]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_parse() {
        assert_eq!(parse_name("base_model.model.model.layers.3.self_attn.q_proj.lora_A.weight"), Some(((3, "q_proj".into()), true)));
        assert_eq!(parse_name("base_model.model.model.layers.10.mlp.down_proj.lora_B.weight"), Some(((10, "down_proj".into()), false)));
        assert_eq!(parse_name("base_model.model.lm_head.lora_A.weight"), None);
        assert_eq!(parse_name("base_model.model.model.layers.1.mlp.down_proj.weight"), None);
        assert_eq!(parse_name("layers.x.mlp.up_proj.lora_A.weight"), None);
    }

    #[test]
    fn permutation_matches_llama_cpp_and_inverts() {
        // One head of size 4, rank 1: HF rows [a0 a1 | b0 b1] (first half,
        // second half) become interleaved pairs [a0 b0 a1 b1].
        let m = [10.0, 11.0, 20.0, 21.0];
        assert_eq!(permute_rows_hf_to_gguf(&m, 1, 1, 4), vec![10.0, 20.0, 11.0, 21.0]);
        let big: Vec<f32> = (0..2 * 8 * 3).map(|v| v as f32).collect();
        let there = permute_rows_hf_to_gguf(&big, 3, 2, 8);
        assert_ne!(there, big);
        assert_eq!(permute_rows_gguf_to_hf(&there, 3, 2, 8), big);
    }

    #[test]
    fn merged_rows_add_the_scaled_product() {
        // 3x2 F32 weight of zeros; rows 1..3 get scale · B · A.
        let w = Weight::from_owned(GgmlType::F32, 3, 2, vec![0u8; 24]).unwrap();
        let a = [1.0, 2.0]; // rank 1, cols 2
        let b = [3.0, -1.0]; // rows 2, rank 1
        let m = merged(&w, 1, 2, &a, &b, 1, 0.5).unwrap();
        let mut row = [0f32; 2];
        let mut got = Vec::new();
        for i in 0..3 {
            m.dequantize_row(i, &mut row);
            got.extend_from_slice(&row);
        }
        assert_eq!(got, vec![0.0, 0.0, 1.5, 3.0, -0.5, -1.0]);
    }
}
