//! Which type each tensor becomes: a port of llama.cpp's per-tensor choice
//! (src/llama-quant.cpp: `tensor_allows_quantization`,
//! `llama_tensor_get_type_impl`, `tensor_type_fallback`, and the tensor
//! order of `llama_model_loader::weights_map`).
//!
//! The rules, for the file types Hearth writes:
//!
//! * Only tensors of two or more (non-unit) dimensions whose names end in
//!   `weight` are quantized, except norms, expert gates, position and
//!   token-type embeddings and a list of small special tensors; everything
//!   else keeps its stored type (so 1-D norms and biases stay F32).
//! * `output.weight` — and `token_embd.weight` when the model has no
//!   separate output tensor (tied embeddings) — becomes Q6_K, or Q8_0 for a
//!   Q8_0 file or when its row length is not a multiple of the base type's
//!   block.
//! * The `_M`/`_L`/`_S` mixes and Q2_K give `attn_v`, `ffn_down` and
//!   `attn_output` more bits, some only in the layers picked by
//!   `use_more_bits` (the first and last eighth, and every third layer in
//!   between).
//! * A row length that is not a multiple of the chosen type's block falls
//!   back: Q2_K/Q3_K → Q4_0, Q4_K → Q5_0, Q5_K → Q5_1, Q6_K → Q8_0, and to
//!   F16 if even that does not divide it. Each fallback is recorded as a
//!   [`Fallback`] so the caller can say so, as llama-quantize does.
//!
//! Deliberately absent: importance matrices (and so the i-quant and Q2_K_S
//! mixes that need them), `--tensor-type` regex overrides,
//! `--output-tensor-type`/`--token-embedding-type`, layer pruning and split
//! output files.

use crate::ftype::FileType;
use crate::source::SourceTensor;
use crate::QuantizeError;
use hearth_formats::{GgmlType, MetaValue};
use std::cmp::Ordering;
use std::fmt;

/// The hyper-parameters the type choice depends on, read from the
/// metadata the way llama.cpp's `load_hparams` does.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ModelFacts {
    /// `general.architecture`.
    pub arch: String,
    /// `{arch}.block_count` (llama.cpp's `n_layer_all`, which sizes the
    /// `ffn_*` layer counters).
    pub n_layer_all: u32,
    /// `n_layer_all` minus `{arch}.nextn_predict_layers`.
    pub n_layer: u32,
    /// Layer 0's `{arch}.attention.head_count` (scalar or per-layer array).
    pub n_head: u32,
    /// Layer 0's `{arch}.attention.head_count_kv`; `n_head` when absent.
    pub n_head_kv: u32,
    /// `{arch}.expert_count`, 0 when absent.
    pub n_expert: u32,
}

impl ModelFacts {
    /// Reads the facts from GGUF-style metadata.
    pub fn from_metadata(meta: &[(String, MetaValue)]) -> Result<ModelFacts, QuantizeError> {
        let get = |k: &str| meta.iter().find(|(key, _)| key == k).map(|(_, v)| v);
        let arch = get("general.architecture")
            .and_then(MetaValue::as_str)
            .ok_or_else(|| {
                QuantizeError::Metadata("general.architecture is missing or not a string".into())
            })?
            .to_string();
        let int = |k: String, required: bool| -> Result<Option<u32>, QuantizeError> {
            let v = match get(&k) {
                None if required => return Err(QuantizeError::Metadata(format!("{k} is missing"))),
                None => return Ok(None),
                Some(v) => v,
            };
            // Per-layer arrays: the type choice uses layer 0 (`n_gqa(il = 0)`).
            let x = match v {
                MetaValue::Array(a) => a
                    .to_i64_vec()
                    .and_then(|v| v.first().copied())
                    .map(i128::from),
                v => v.as_integer(),
            };
            x.and_then(|x| u32::try_from(x).ok())
                .map(Some)
                .ok_or_else(|| {
                    QuantizeError::Metadata(format!("{k} is not a non-negative 32-bit integer"))
                })
        };
        let n_layer_all = int(format!("{arch}.block_count"), true)?.unwrap_or(0);
        let nextn = int(format!("{arch}.nextn_predict_layers"), false)?.unwrap_or(0);
        let n_head = int(format!("{arch}.attention.head_count"), false)?.unwrap_or(0);
        let n_head_kv = int(format!("{arch}.attention.head_count_kv"), false)?.unwrap_or(n_head);
        let n_expert = int(format!("{arch}.expert_count"), false)?.unwrap_or(0);
        Ok(ModelFacts {
            n_layer: n_layer_all.saturating_sub(nextn),
            arch,
            n_layer_all,
            n_head,
            n_head_kv,
            n_expert,
        })
    }

    /// `n_head / n_head_kv` (0 when there are no KV heads), as
    /// `llama_hparams::n_gqa`.
    pub fn n_gqa(&self) -> u32 {
        self.n_head.checked_div(self.n_head_kv).unwrap_or(0)
    }

    /// Whether llama.cpp classifies the model as `LLM_TYPE_70B` (the
    /// architectures' `load_arch_hparams`), which gives `attn_v` more bits.
    pub fn is_70b(&self) -> bool {
        match self.arch.as_str() {
            "llama" => self.n_expert != 8 && self.n_layer == 80 && self.n_head != self.n_head_kv,
            "qwen2" | "olmo" | "deci" => self.n_layer == 80,
            "jais2" => self.n_layer == 68,
            _ => false,
        }
    }
}

/// Options beyond the file type (llama-quantize flags of the same names).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct PlanOptions {
    /// `--allow-requantize`: accept already-quantized input tensors.
    pub allow_requantize: bool,
    /// `--leave-output-tensor`: keep `output.weight` as it is.
    pub leave_output_tensor: bool,
    /// `--pure`: every quantizable tensor gets the base type (no mix rules,
    /// no Q6_K output); shape fallbacks still apply.
    pub pure: bool,
}

/// A tensor whose row length forced a different type than the rules chose.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Fallback {
    pub tensor: String,
    /// Row length (`ne0`).
    pub ncols: u64,
    /// The type the rules chose.
    pub wanted: GgmlType,
    /// What the tensor gets instead.
    pub chosen: GgmlType,
}

impl fmt::Display for Fallback {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{}: row length {} is not a multiple of {} (the {} block size); using {} instead",
            self.tensor,
            self.ncols,
            self.wanted.block_size(),
            self.wanted,
            self.chosen
        )?;
        if self.chosen == GgmlType::F16 && self.wanted != GgmlType::F16 {
            write!(f, " (no quantized type fits this shape)")?;
        }
        Ok(())
    }
}

/// One output tensor.
#[derive(Clone, Debug, PartialEq)]
pub struct TensorPlan {
    /// Index into the source's tensor list.
    pub source_index: usize,
    pub name: String,
    /// ggml order (`dims[0]` is the row length).
    pub dims: Vec<u64>,
    pub src_type: GgmlType,
    pub dst_type: GgmlType,
    /// Bytes in the output.
    pub dst_bytes: u64,
    pub fallback: Option<Fallback>,
}

impl TensorPlan {
    /// Whether the data is converted (otherwise copied byte for byte).
    pub fn converts(&self) -> bool {
        self.src_type != self.dst_type
    }

    pub fn n_elements(&self) -> u64 {
        self.dims.iter().product()
    }
}

/// The whole output: tensors in the order llama-quantize writes them.
#[derive(Clone, Debug, PartialEq)]
pub struct Plan {
    pub ftype: FileType,
    pub facts: ModelFacts,
    pub tensors: Vec<TensorPlan>,
}

impl Plan {
    pub fn fallbacks(&self) -> impl Iterator<Item = &Fallback> {
        self.tensors.iter().filter_map(|t| t.fallback.as_ref())
    }

    /// Input tensors that are already quantized and get converted.
    pub fn requantized(&self) -> impl Iterator<Item = &TensorPlan> {
        self.tensors
            .iter()
            .filter(|t| t.converts() && is_block_quantized(t.src_type))
    }

    /// Sum of the output tensors' bytes (without alignment padding).
    pub fn dst_bytes(&self) -> u64 {
        self.tensors.iter().map(|t| t.dst_bytes).sum()
    }
}

/// Whether `ty` is a block-quantized type (`ggml_is_quantized`).
pub fn is_block_quantized(ty: GgmlType) -> bool {
    ty.block_size() > 1
}

/// Broad tensor roles (llama-quant.cpp `tensor_category`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Category {
    Output,
    TokenEmbd,
    AttentionQkv,
    AttentionKvB,
    AttentionV,
    AttentionK,
    AttentionQ,
    AttentionOutput,
    FfnUp,
    FfnGate,
    FfnDown,
    Other,
}

/// llama-quant.cpp `tensor_get_category`: exact names first, then
/// substrings in this order.
pub fn category(name: &str) -> Category {
    if name == "output.weight" {
        return Category::Output;
    }
    if name == "token_embd.weight" || name == "per_layer_token_embd.weight" {
        return Category::TokenEmbd;
    }
    const BY_SUBSTRING: [(&str, Category); 9] = [
        ("attn_qkv.weight", Category::AttentionQkv),
        ("attn_kv_b.weight", Category::AttentionKvB),
        ("attn_v.weight", Category::AttentionV),
        ("attn_k.weight", Category::AttentionK),
        ("attn_q.weight", Category::AttentionQ),
        ("attn_output.weight", Category::AttentionOutput),
        ("ffn_up", Category::FfnUp),
        ("ffn_gate", Category::FfnGate),
        ("ffn_down", Category::FfnDown),
    ];
    BY_SUBSTRING
        .iter()
        .find(|(s, _)| name.contains(s))
        .map_or(Category::Other, |&(_, c)| c)
}

fn is_attn_v_like(c: Category) -> bool {
    matches!(
        c,
        Category::AttentionV | Category::AttentionQkv | Category::AttentionKvB
    )
}

/// llama-quant.cpp's `use_more_bits`: the first and last eighth of the
/// layers, and every third layer in between.
pub fn use_more_bits(i_layer: i64, n_layers: i64) -> bool {
    i_layer < n_layers / 8 || i_layer >= 7 * n_layers / 8 || (i_layer - n_layers / 8) % 3 == 2
}

/// `ggml_n_dims`: the number of dimensions up to the last one above 1.
pub fn n_dims(dims: &[u64]) -> usize {
    (1..dims.len())
        .rev()
        .find(|&i| dims[i] > 1)
        .map_or(1, |i| i + 1)
}

/// `sscanf(name, "blk.%d.", &layer)`: the layer number of a `blk.N.` name.
pub fn layer_of(name: &str) -> Option<i64> {
    let rest = name.strip_prefix("blk.")?.trim_start();
    let (sign, digits) = match rest.as_bytes().first()? {
        b'-' => (-1, &rest[1..]),
        b'+' => (1, &rest[1..]),
        _ => (1, rest),
    };
    let end = digits
        .bytes()
        .position(|b| !b.is_ascii_digit())
        .unwrap_or(digits.len());
    digits[..end]
        .parse::<i32>()
        .ok()
        .map(|n| sign * i64::from(n))
}

/// The order of llama.cpp's `weights_map` (`weight_name_comparer`): by
/// layer number (-1 for names outside `blk.N.`), then by name.
pub fn llama_order(a: &str, b: &str) -> Ordering {
    let la = layer_of(a).unwrap_or(-1);
    let lb = layer_of(b).unwrap_or(-1);
    la.cmp(&lb).then_with(|| a.cmp(b))
}

/// llama-quant.cpp `tensor_allows_quantization` (with
/// `quantize_output_tensor = !leave_output_tensor`, `only_copy = false`).
pub fn allows_quantization(
    arch: &str,
    name: &str,
    dims: &[u64],
    leave_output_tensor: bool,
) -> bool {
    if n_dims(dims) < 2 || !name.ends_with("weight") || name.contains("_norm.weight") {
        return false;
    }
    if leave_output_tensor && name == "output.weight" {
        return false;
    }
    // Small or special tensors llama.cpp leaves alone, by substring.
    const KEEP: [&str; 33] = [
        "ffn_gate_inp.weight",
        "ffn_gate_tid2eid.weight",
        "altup",
        "laurel",
        "per_layer_model_proj",
        "ssm_conv1d",
        "shortconv.conv.weight",
        "indexer.k_proj.weight",
        "indexer.q_proj.weight",
        "time_mix_first.weight",
        "time_mix_w0.weight",
        "time_mix_w1.weight",
        "time_mix_w2.weight",
        "time_mix_v0.weight",
        "time_mix_v1.weight",
        "time_mix_v2.weight",
        "time_mix_a0.weight",
        "time_mix_a1.weight",
        "time_mix_a2.weight",
        "time_mix_g1.weight",
        "time_mix_g2.weight",
        "time_mix_decay_w1.weight",
        "time_mix_decay_w2.weight",
        "time_mix_lerp_fused.weight",
        "attn_rel_b.weight",
        ".position_embd",
        "sam.pos_embd",
        "sam.neck.",
        "sam.net_",
        ".rel_pos",
        ".patch_embd",
        ".patch_merger",
        "a.rvq.codebook",
    ];
    if KEEP.iter().any(|s| name.contains(s)) || name.contains("mm.a.code_embd") {
        return false;
    }
    // LLM_TENSOR_POS_EMBD / LLM_TENSOR_TOKEN_TYPES (BERT-style models).
    if name == "position_embd.weight" || name == "token_types.weight" {
        return false;
    }
    if arch == "glm5-next" {
        const GLM5: [&str; 14] = [
            "hc_",
            "indexer.attn_q_b",
            "indexer.attn_k",
            "indexer.proj",
            "indexer_compressor_gate",
            "indexer_compressor_ape",
            "ssm_f_a.weight",
            "ssm_f_b.weight",
            "ssm_g_a.weight",
            "ssm_g_b.weight",
            "ssm_beta.weight",
            "attn_kv_a_mqa.weight",
            "attn_k_b.weight",
            "attn_v_b.weight",
        ];
        if GLM5.iter().any(|s| name.contains(s)) {
            return false;
        }
    }
    true
}

/// llama-quant.cpp `quantize_state_impl`: the counters the mix rules use.
struct State<'a> {
    facts: &'a ModelFacts,
    ftype: FileType,
    tied_embeddings: bool,
    n_attention_wv: i64,
    i_attention_wv: i64,
    n_ffn: i64,
    i_ffn_down: i64,
    i_ffn_gate: i64,
    i_ffn_up: i64,
}

impl State<'_> {
    /// `layer_info`: the layer a `ffn_*` tensor belongs to. For dense models
    /// it is the running count; with experts it is parsed from the name.
    fn layer_info(&self, counter: i64, name: &str) -> Result<(i64, i64), QuantizeError> {
        let n = self.n_ffn;
        if self.facts.n_expert.max(1) > 1 {
            let i = layer_of(name).ok_or_else(|| QuantizeError::BadLayer {
                tensor: name.into(),
                n_layer: n,
            })?;
            if i < 0 || i >= n {
                return Err(QuantizeError::BadLayer {
                    tensor: name.into(),
                    n_layer: n,
                });
            }
            return Ok((i, n));
        }
        Ok((counter, n))
    }

    /// `llama_tensor_get_type_impl` for the file types in [`FileType`].
    fn choose(
        &mut self,
        mut t: GgmlType,
        name: &str,
        ne0: u64,
        cat: Category,
    ) -> Result<GgmlType, QuantizeError> {
        use FileType as F;
        use GgmlType as G;
        let ft = self.ftype;
        let arch = self.facts.arch.as_str();
        let falcon = arch == "falcon";
        let n_expert = self.facts.n_expert;

        if arch == "glm5-next"
            && ["attn_q_a", "attn_q_b", "nextn.eh_proj"]
                .iter()
                .any(|s| name.contains(s))
        {
            match t {
                G::F32 | G::BF16 | G::F16 => {}
                _ => return Ok(G::Q8_0),
            }
        }

        if cat == Category::Output || (self.tied_embeddings && cat == Category::TokenEmbd) {
            // The output projection decides most of the loss: Q6_K unless
            // the file is Q8_0 (or the row does not fit the base type).
            if falcon || ne0 % t.block_size() as u64 != 0 {
                t = G::Q8_0;
            } else if t != G::Q8_0 {
                t = G::Q6_K;
            }
        } else if cat == Category::TokenEmbd {
            // Only i-quant and ternary mixes change the embedding.
        } else if is_attn_v_like(cat) {
            let gqa = self.facts.n_gqa();
            let i = self.i_attention_wv;
            if ft == F::Q2_K {
                t = if gqa >= 4 { G::Q4_K } else { G::Q3_K };
            } else if ft == F::Q3_K_M {
                t = if i < 2 { G::Q5_K } else { G::Q4_K };
            } else if ft == F::Q3_K_L {
                t = G::Q5_K;
            } else if (ft == F::Q4_K_M || ft == F::Q5_K_M) && use_more_bits(i, self.n_attention_wv)
            {
                t = G::Q6_K;
            } else if ft == F::Q4_K_S && i < 4 {
                t = G::Q5_K;
            }
            if self.facts.is_70b() && (t == G::Q3_K || t == G::Q4_K) {
                // 70B models share attn_v between 8 heads, so it is 8x
                // smaller than attn_q and cheap to keep at more bits.
                t = G::Q5_K;
            }
            if n_expert == 8 {
                t = G::Q8_0;
            }
            self.i_attention_wv += 1;
        } else if cat == Category::AttentionK {
            if n_expert == 8 {
                t = G::Q8_0;
            }
        } else if cat == Category::AttentionQ {
            // Only i-quant mixes change attn_q.
        } else if cat == Category::FfnDown {
            let (il, nl) = self.layer_info(self.i_ffn_down, name)?;
            if ft == F::Q2_K {
                t = G::Q3_K;
            } else if ft == F::Q3_K_M {
                t = if il < nl / 16 {
                    G::Q5_K
                } else if !falcon || use_more_bits(il, nl) {
                    G::Q4_K
                } else {
                    G::Q3_K
                };
            } else if ft == F::Q3_K_L {
                t = if falcon { G::Q4_K } else { G::Q5_K };
            } else if ft == F::Q4_K_M {
                if falcon {
                    t = if il < nl / 16 {
                        G::Q6_K
                    } else if use_more_bits(il, nl) {
                        G::Q5_K
                    } else {
                        G::Q4_K
                    };
                } else if use_more_bits(il, nl) {
                    t = G::Q6_K;
                }
            } else if ft == F::Q5_K_M && use_more_bits(il, nl) {
                t = G::Q6_K;
            } else if ft == F::Q4_K_S && !falcon && il < nl / 8 {
                t = G::Q5_K;
            }
            self.i_ffn_down += 1;
        } else if cat == Category::AttentionOutput {
            if !falcon {
                if n_expert == 8 {
                    if matches!(ft, F::Q2_K | F::Q3_K_S | F::Q3_K_M | F::Q4_K_S | F::Q4_K_M) {
                        t = G::Q5_K;
                    }
                } else if ft == F::Q2_K {
                    t = G::Q3_K;
                } else if ft == F::Q3_K_M {
                    t = G::Q4_K;
                } else if ft == F::Q3_K_L {
                    t = G::Q5_K;
                }
            } else if ft == F::Q3_K_L {
                t = G::Q4_K;
            }
        } else if cat == Category::AttentionQkv {
            if ft == F::Q3_K_M || ft == F::Q3_K_L {
                t = G::Q4_K;
            } else if ft == F::Q4_K_M {
                t = G::Q5_K;
            } else if ft == F::Q5_K_M {
                t = G::Q6_K;
            }
        } else if cat == Category::FfnGate {
            // Checked for its error only: the rules for gates are i-quant mixes.
            self.layer_info(self.i_ffn_gate, name)?;
            self.i_ffn_gate += 1;
        } else if cat == Category::FfnUp {
            self.layer_info(self.i_ffn_up, name)?;
            self.i_ffn_up += 1;
        }
        Ok(t)
    }
}

/// `tensor_type_fallback`: a type whose block fits a row of `ncols`.
fn fallback(name: &str, ncols: u64, wanted: GgmlType) -> (GgmlType, Option<Fallback>) {
    let block = wanted.block_size() as u64;
    if ncols % block == 0 {
        return (wanted, None);
    }
    let mut chosen = match wanted {
        GgmlType::Q2_K | GgmlType::Q3_K => GgmlType::Q4_0,
        GgmlType::Q4_K => GgmlType::Q5_0,
        GgmlType::Q5_K => GgmlType::Q5_1,
        GgmlType::Q6_K => GgmlType::Q8_0,
        // 32-element types have nothing smaller to fall to; the check
        // below turns them into F16. (llama.cpp throws for other 256-block
        // types, which no FileType here produces.)
        other => other,
    };
    if ncols % chosen.block_size() as u64 != 0 {
        chosen = GgmlType::F16;
    }
    (
        chosen,
        Some(Fallback {
            tensor: name.to_string(),
            ncols,
            wanted,
            chosen,
        }),
    )
}

/// Chooses every tensor's output type and the output order.
pub fn plan(
    ftype: FileType,
    facts: &ModelFacts,
    tensors: &[SourceTensor],
    opts: &PlanOptions,
) -> Result<Plan, QuantizeError> {
    let mut order: Vec<usize> = (0..tensors.len()).collect();
    order.sort_by(|&a, &b| llama_order(&tensors[a].name, &tensors[b].name));
    for w in order.windows(2) {
        if tensors[w[0]].name == tensors[w[1]].name {
            return Err(QuantizeError::DuplicateTensor(tensors[w[0]].name.clone()));
        }
    }

    // init_quantize_state_counters: attn_v-like tensors are counted over all
    // tensors (quantizable or not), and embeddings are tied unless an
    // output.weight exists.
    let n_attention_wv = tensors
        .iter()
        .filter(|t| is_attn_v_like(category(&t.name)))
        .count() as i64;
    let tied_embeddings = !tensors
        .iter()
        .any(|t| category(&t.name) == Category::Output);
    let mut st = State {
        facts,
        ftype,
        tied_embeddings,
        n_attention_wv,
        i_attention_wv: 0,
        n_ffn: i64::from(facts.n_layer_all),
        i_ffn_down: 0,
        i_ffn_gate: 0,
        i_ffn_up: 0,
    };
    let default_type = ftype.default_type();

    let mut out = Vec::with_capacity(tensors.len());
    for &i in &order {
        let t = &tensors[i];
        let ne0 = t.dims.first().copied().unwrap_or(1);
        let mut fb = None;
        let dst = if !allows_quantization(&facts.arch, &t.name, &t.dims, opts.leave_output_tensor) {
            t.ty
        } else if is_block_quantized(default_type) {
            let mut ty = default_type;
            if !opts.pure {
                ty = st.choose(ty, &t.name, ne0, category(&t.name))?;
            }
            let (ty, f) = fallback(&t.name, ne0, ty);
            fb = f;
            ty
        } else {
            default_type
        };
        if dst != t.ty {
            if is_block_quantized(t.ty) && !opts.allow_requantize {
                return Err(QuantizeError::Requantize {
                    tensor: t.name.clone(),
                    from: t.ty,
                    to: dst,
                });
            }
            if !hearth_kernels::is_supported_type(t.ty) {
                return Err(QuantizeError::UnconvertibleType {
                    tensor: t.name.clone(),
                    ty: t.ty,
                });
            }
        }
        let n: u64 = t.dims.iter().product();
        let dst_bytes = dst.row_bytes(n).ok_or_else(|| QuantizeError::Shape {
            tensor: t.name.clone(),
            message: format!("{n} elements do not make whole {dst} blocks"),
        })?;
        out.push(TensorPlan {
            source_index: i,
            name: t.name.clone(),
            dims: t.dims.clone(),
            src_type: t.ty,
            dst_type: dst,
            dst_bytes,
            fallback: fb,
        });
    }
    Ok(Plan {
        ftype,
        facts: facts.clone(),
        tensors: out,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn facts(arch: &str, n_layer: u32, n_head: u32, n_head_kv: u32) -> ModelFacts {
        ModelFacts {
            arch: arch.into(),
            n_layer_all: n_layer,
            n_layer,
            n_head,
            n_head_kv,
            n_expert: 0,
        }
    }

    fn t(name: &str, dims: &[u64]) -> SourceTensor {
        SourceTensor {
            name: name.into(),
            dims: dims.to_vec(),
            ty: GgmlType::F32,
        }
    }

    #[test]
    fn use_more_bits_matches_the_formula_on_32_layers() {
        // First and last 4 layers, and 4 + 2, 4 + 5, ... in between.
        let picked: Vec<i64> = (0..32).filter(|&i| use_more_bits(i, 32)).collect();
        assert_eq!(
            picked,
            vec![0, 1, 2, 3, 6, 9, 12, 15, 18, 21, 24, 27, 28, 29, 30, 31]
        );
    }

    #[test]
    fn layer_parsing_and_order_follow_sscanf_and_the_comparer() {
        assert_eq!(layer_of("blk.12.attn_q.weight"), Some(12));
        assert_eq!(layer_of("blk.x.attn_q.weight"), None);
        assert_eq!(layer_of("output.weight"), None);
        let mut names = vec![
            "blk.10.a",
            "blk.9.b",
            "token_embd.weight",
            "blk.9.a",
            "output.weight",
        ];
        names.sort_by(|a, b| llama_order(a, b));
        assert_eq!(
            names,
            vec![
                "output.weight",
                "token_embd.weight",
                "blk.9.a",
                "blk.9.b",
                "blk.10.a"
            ]
        );
    }

    #[test]
    fn one_dimensional_and_norm_tensors_are_never_quantized() {
        assert!(!allows_quantization(
            "llama",
            "blk.0.attn_norm.weight",
            &[256],
            false
        ));
        // Trailing unit dimensions do not count (ggml_n_dims).
        assert!(!allows_quantization(
            "llama",
            "blk.0.attn_q.weight",
            &[256, 1],
            false
        ));
        assert!(!allows_quantization(
            "llama",
            "blk.0.q_norm_weight_norm.weight",
            &[256, 2],
            false
        ));
        assert!(!allows_quantization(
            "llama",
            "blk.0.attn_q.bias",
            &[256, 2],
            false
        ));
        assert!(!allows_quantization(
            "llama",
            "blk.0.ffn_gate_inp.weight",
            &[256, 8],
            false
        ));
        assert!(allows_quantization(
            "llama",
            "blk.0.attn_q.weight",
            &[256, 256],
            false
        ));
        assert!(!allows_quantization(
            "llama",
            "output.weight",
            &[256, 256],
            true
        ));
    }

    #[test]
    fn output_goes_to_q6_k_and_odd_rows_fall_back() {
        let f = facts("llama", 1, 4, 4);
        let ts = [
            t("output.weight", &[256, 100]),
            t("token_embd.weight", &[256, 100]),
            t("blk.0.attn_q.weight", &[96, 96]),
        ];
        let p = plan(FileType::Q4_0, &f, &ts, &PlanOptions::default()).unwrap();
        let ty = |n: &str| p.tensors.iter().find(|t| t.name == n).unwrap().dst_type;
        assert_eq!(ty("output.weight"), GgmlType::Q6_K);
        // Untied: token_embd keeps the base type.
        assert_eq!(ty("token_embd.weight"), GgmlType::Q4_0);
        assert_eq!(ty("blk.0.attn_q.weight"), GgmlType::Q4_0);

        // Q4_K on a 96-wide row falls back to Q5_0; 200-wide to F16.
        let ts = [
            t("blk.0.attn_q.weight", &[96, 96]),
            t("blk.0.ffn_down.weight", &[200, 96]),
        ];
        let p = plan(FileType::Q4_K_S, &f, &ts, &PlanOptions::default()).unwrap();
        assert_eq!(p.tensors[0].dst_type, GgmlType::Q5_0);
        assert_eq!(p.tensors[1].dst_type, GgmlType::F16);
        let fb: Vec<_> = p.fallbacks().map(|f| (f.wanted, f.chosen)).collect();
        // ffn_down layer 0 of 1: Q4_K_S gives the first eighth Q5_K (0 < 1/8 is false: 1/8 = 0).
        assert_eq!(
            fb,
            vec![
                (GgmlType::Q4_K, GgmlType::Q5_0),
                (GgmlType::Q4_K, GgmlType::F16)
            ]
        );
        assert!(p.tensors[1]
            .fallback
            .as_ref()
            .unwrap()
            .to_string()
            .contains("no quantized type fits"));
    }

    #[test]
    fn tied_embeddings_get_the_output_treatment() {
        let f = facts("qwen2", 1, 4, 4);
        let ts = [t("token_embd.weight", &[256, 100])];
        let p = plan(FileType::Q5_1, &f, &ts, &PlanOptions::default()).unwrap();
        assert_eq!(p.tensors[0].dst_type, GgmlType::Q6_K);
        let p = plan(FileType::Q8_0, &f, &ts, &PlanOptions::default()).unwrap();
        assert_eq!(p.tensors[0].dst_type, GgmlType::Q8_0);
        let p = plan(
            FileType::Q5_1,
            &f,
            &ts,
            &PlanOptions {
                pure: true,
                ..Default::default()
            },
        )
        .unwrap();
        assert_eq!(p.tensors[0].dst_type, GgmlType::Q5_1);
    }

    #[test]
    fn requantizing_needs_permission() {
        let f = facts("llama", 1, 4, 4);
        let ts = [SourceTensor {
            name: "blk.0.attn_q.weight".into(),
            dims: vec![256, 256],
            ty: GgmlType::Q8_0,
        }];
        let e = plan(FileType::Q4_K_M, &f, &ts, &PlanOptions::default()).unwrap_err();
        assert!(
            matches!(
                e,
                QuantizeError::Requantize {
                    from: GgmlType::Q8_0,
                    to: GgmlType::Q4_K,
                    ..
                }
            ),
            "{e}"
        );
        let p = plan(
            FileType::Q4_K_M,
            &f,
            &ts,
            &PlanOptions {
                allow_requantize: true,
                ..Default::default()
            },
        )
        .unwrap();
        assert_eq!(p.requantized().count(), 1);
        // Same type: a copy, no permission needed.
        let p = plan(FileType::Q8_0, &f, &ts, &PlanOptions::default()).unwrap();
        assert!(!p.tensors[0].converts());
    }

    #[test]
    fn experts_need_layer_numbers_in_names() {
        let mut f = facts("llama", 2, 4, 4);
        f.n_expert = 4;
        let ts = [t("ffn_down_exps.weight", &[256, 256, 4])];
        assert!(matches!(
            plan(FileType::Q4_K_M, &f, &ts, &PlanOptions::default()),
            Err(QuantizeError::BadLayer { .. })
        ));
    }

    #[test]
    fn facts_read_scalars_and_per_layer_arrays() {
        use hearth_formats::MetaArray;
        let meta = vec![
            (
                "general.architecture".to_string(),
                MetaValue::String("llama".into()),
            ),
            ("llama.block_count".to_string(), MetaValue::U32(80)),
            (
                "llama.attention.head_count".to_string(),
                MetaValue::Array(MetaArray::U32(vec![64; 80])),
            ),
            (
                "llama.attention.head_count_kv".to_string(),
                MetaValue::U32(8),
            ),
        ];
        let f = ModelFacts::from_metadata(&meta).unwrap();
        assert_eq!(
            (f.n_layer, f.n_head, f.n_head_kv, f.n_gqa()),
            (80, 64, 8, 8)
        );
        assert!(f.is_70b());
        let e = ModelFacts::from_metadata(&meta[..1]).unwrap_err();
        assert!(e.to_string().contains("llama.block_count"), "{e}");
    }
}
