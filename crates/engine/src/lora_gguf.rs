//! GGUF LoRA files, as llama.cpp's `convert_lora_to_gguf.py` writes them and
//! `llama_adapter_lora_init` (src/llama-adapter.cpp) loads them.
//!
//! Conventions (all from those two files):
//! * metadata `general.type = "adapter"`, `adapter.type = "lora"`,
//!   `general.architecture` equal to the base model's, `adapter.lora.alpha`
//!   an f32;
//! * tensors `blk.{i}.{attn_q|attn_k|attn_v|attn_qkv|attn_output|ffn_gate|ffn_up|ffn_down}.weight.lora_{a|b}`,
//!   named after the base tensor they adapt;
//! * `lora_a` has ggml dims `[in, r]` and `lora_b` `[r, out]`: row-major
//!   they are PEFT's `lora_A` `[r, in]` and `lora_B` `[out, r]` unchanged,
//!   nothing is transposed (only `token_embd`'s `lora_a` is, which is not
//!   supported here); llama.cpp checks `a.ne[0] == W.ne[0]`,
//!   `b.ne[1] == W.ne[1]` and `a.ne[1] == b.ne[0]`;
//! * the graph adds `scale · B (A x)` with `scale = alpha / r`, `r` being
//!   `lora_b.ne[0]` of each pair, and `scale = 1` when alpha is 0
//!   (`llama_adapter_lora_weight::get_scale`);
//! * the converter permutes Q/K `lora_B` rows exactly as it permutes the
//!   base weights, so the file is already in the base GGUF's row order;
//! * `--outtype` is f32 (default), f16, bf16 or q8_0; a tensor whose rows are
//!   not whole Q8_0 blocks falls back to F16 (gguf-py `quants.quantize`
//!   raises, `convert_hf_to_gguf.py` then writes F16).
//!
//! Unlike llama.cpp, which skips `*_norm.weight` tensors (mergekit's
//! extracted adapters) and treats a missing alpha as 0, this reader refuses
//! both: a file is hostile input, and an adapter that would silently act
//! differently from how it was trained is an error, not a warning.
//! Deliberately absent: adapters on `token_embd`/`output`, norm tensors,
//! activated LoRA (`adapter.alora_invocation_tokens`).

use super::{check_fit, resolve, AdapterError, AdapterErrorKind as K, AdapterFormat, LoraAdapter, LoraPair, FUSED_QKV};
use hearth_formats::{GgmlType, GgufFile, GgufWriter, MetaValue, TensorInfo};
use hearth_models::Decoder;
use std::collections::BTreeMap;
use std::path::Path;

/// GGUF base-tensor suffix ↔ module name, in llama.cpp's tensor naming
/// (llama-arch.cpp `LLM_TENSOR_NAMES`).
const SUFFIXES: [(&str, &str); 8] = [
    ("attn_q", "q_proj"),
    ("attn_k", "k_proj"),
    ("attn_v", "v_proj"),
    ("attn_qkv", FUSED_QKV),
    ("attn_output", "o_proj"),
    ("ffn_gate", "gate_proj"),
    ("ffn_up", "up_proj"),
    ("ffn_down", "down_proj"),
];

/// Tensor types `convert_lora_to_gguf.py --outtype` can produce.
pub const TYPES: [GgmlType; 4] = [GgmlType::F32, GgmlType::F16, GgmlType::BF16, GgmlType::Q8_0];

/// Reads a GGUF LoRA file.
pub fn open(path: &Path) -> Result<LoraAdapter, AdapterError> {
    let file = GgufFile::open(path).map_err(|e| AdapterError { path: path.to_path_buf(), kind: K::Format, why: e.to_string() })?;
    from_file(&file, path)
}

/// Reads a parsed GGUF LoRA file; `path` is only used in errors and kept as
/// [`LoraAdapter::path`].
pub fn from_file(file: &GgufFile, path: &Path) -> Result<LoraAdapter, AdapterError> {
    let err = |kind, why: String| AdapterError { path: path.to_path_buf(), kind, why };
    let string = |key: &str, kind| match file.get_str(key) {
        Ok(Some(s)) => Ok(s),
        Ok(None) => Err(err(kind, format!("{key} is missing"))),
        Err(e) => Err(err(kind, e.to_string())),
    };
    let general_type = string("general.type", K::NotLora)?;
    if general_type != "adapter" {
        return Err(err(K::NotLora, format!("general.type is {general_type:?}, expected \"adapter\"")));
    }
    let adapter_type = string("adapter.type", K::NotLora)?;
    if adapter_type != "lora" {
        return Err(err(K::NotLora, format!("adapter.type is {adapter_type:?}, expected \"lora\"")));
    }
    let arch = string("general.architecture", K::MissingKey)?.to_string();
    // An f32 exactly: llama.cpp's `gguf_get_val_f32` asserts the type.
    let alpha = match file.get("adapter.lora.alpha") {
        Some(MetaValue::F32(a)) if a.is_finite() => *a,
        Some(MetaValue::F32(a)) => return Err(err(K::Format, format!("adapter.lora.alpha is {a}"))),
        Some(v) => return Err(err(K::MissingKey, format!("adapter.lora.alpha is a {}, expected f32", v.type_name()))),
        None => return Err(err(K::MissingKey, "adapter.lora.alpha is missing".into())),
    };
    if file.get("adapter.alora_invocation_tokens").is_some() {
        return Err(err(K::Unsupported, "activated LoRA (adapter.alora_invocation_tokens) is not supported".into()));
    }

    let mut a_map: BTreeMap<(usize, String), (&TensorInfo, Vec<f32>)> = BTreeMap::new();
    let mut b_map: BTreeMap<(usize, String), (&TensorInfo, Vec<f32>)> = BTreeMap::new();
    for info in file.tensors() {
        let name = info.name.as_str();
        let (key, is_a) = parse_name(name).map_err(|kind| {
            let why = match kind {
                K::Unsupported if name.contains("_norm.") => format!("tensor {name}: norm tensors are not supported (llama.cpp ignores them; Hearth refuses rather than act unlike the trained adapter)"),
                K::Unsupported => format!("tensor {name}: adapters on the embeddings or the output head are not supported"),
                _ => format!("tensor {name}: not a LoRA factor (blk.N.<attn_q|attn_k|attn_v|attn_qkv|attn_output|ffn_gate|ffn_up|ffn_down>.weight.lora_<a|b>)"),
            };
            err(kind, why)
        })?;
        if !TYPES.contains(&info.ty) {
            return Err(err(K::Unsupported, format!("tensor {name}: type {} (expected F32, F16, BF16 or Q8_0)", info.ty)));
        }
        if info.dims.len() < 2 || info.dims[2..].iter().any(|&d| d != 1) || info.dims[..2].contains(&0) {
            return Err(err(K::ShapeMismatch, format!("tensor {name}: dims {:?} are not a non-empty matrix", info.dims)));
        }
        let n = usize::try_from(info.n_elements()).map_err(|_| err(K::ShapeMismatch, format!("tensor {name}: too large")))?;
        let mut vals = vec![0f32; n];
        // The reader checked that the data lies in the file and is
        // `n_elements` values of `ty` in whole blocks.
        hearth_kernels::dequantize_row(info.ty, file.tensor_data(info), &mut vals);
        let map = if is_a { &mut a_map } else { &mut b_map };
        map.insert(key, (info, vals));
    }

    let mut pairs = BTreeMap::new();
    for (key, (ia, a)) in a_map {
        let name = |k: &(usize, String)| format!("blk.{}.{}.weight", k.0, suffix_of(&k.1));
        let (ib, b) = b_map.remove(&key).ok_or_else(|| err(K::MissingPair, format!("{}: lora_a without lora_b", name(&key))))?;
        // ggml dims: a = [in, r], b = [r, out].
        let (ra, rb) = (ia.dims[1], ib.dims[0]);
        if ra != rb {
            return Err(err(K::RankMismatch, format!("{}: lora_a has rank {ra} (dims {:?}) but lora_b has {rb} (dims {:?})", name(&key), ia.dims, ib.dims)));
        }
        pairs.insert(key, LoraPair { rank: ra as usize, a, b });
    }
    if let Some(key) = b_map.keys().next() {
        return Err(err(K::MissingPair, format!("blk.{}.{}.weight: lora_b without lora_a", key.0, suffix_of(&key.1))));
    }
    if pairs.is_empty() {
        return Err(err(K::Format, "no LoRA tensors".into()));
    }
    let rank = pairs.values().map(|p| p.rank).max().unwrap_or(0);
    let mut target_modules: Vec<String> = pairs.keys().map(|(_, m)| m.clone()).collect();
    target_modules.sort();
    target_modules.dedup();
    let base_model = file.get_str("general.base_model.0.name").ok().flatten().map(str::to_string);
    Ok(LoraAdapter { path: path.to_path_buf(), format: AdapterFormat::Gguf, rank, alpha, use_rslora: false, target_modules, base_model, arch: Some(arch), pairs })
}

/// `(layer, module)` and whether it is `lora_a`, or the kind of error.
fn parse_name(name: &str) -> Result<((usize, String), bool), K> {
    let (base, is_a) = match (name.strip_suffix(".lora_a"), name.strip_suffix(".lora_b")) {
        (Some(b), _) => (b, true),
        (_, Some(b)) => (b, false),
        _ if name.ends_with("_norm.weight") => return Err(K::Unsupported),
        _ => return Err(K::UnknownTensor),
    };
    if base == "token_embd.weight" || base == "output.weight" {
        return Err(K::Unsupported);
    }
    let rest = base.strip_prefix("blk.").ok_or(K::UnknownTensor)?;
    let (layer, rest) = rest.split_once('.').ok_or(K::UnknownTensor)?;
    // `usize::from_str` accepts a leading '+'; a tensor name must not.
    if layer.is_empty() || !layer.bytes().all(|c| c.is_ascii_digit()) {
        return Err(K::UnknownTensor);
    }
    let layer: usize = layer.parse().map_err(|_| K::UnknownTensor)?;
    let suffix = rest.strip_suffix(".weight").ok_or(K::UnknownTensor)?;
    let module = SUFFIXES.iter().find(|(s, _)| *s == suffix).map(|(_, m)| *m).ok_or(K::UnknownTensor)?;
    Ok(((layer, module.to_string()), is_a))
}

/// The GGUF suffix of a module name (for messages; the base decides the
/// real tensor, see `resolve`).
fn suffix_of(module: &str) -> &'static str {
    SUFFIXES.iter().find(|(_, m)| *m == module).map_or("?", |(s, _)| s)
}

/// The storage type of one factor whose rows have `row_len` values: `ty`,
/// or F16 where Q8_0 blocks do not fit (as the converter does).
fn factor_type(ty: GgmlType, row_len: usize) -> GgmlType {
    if row_len.is_multiple_of(ty.block_size()) {
        ty
    } else {
        GgmlType::F16
    }
}

/// The GGUF LoRA equivalent of `adapter` on `dec`: a writer with the
/// metadata and tensor infos, and each tensor's bytes in order. Q/K
/// `lora_B` of a PEFT adapter are permuted to the base's row order; an
/// rsLoRA adapter's alpha is rescaled to `alpha · √r` so that llama.cpp's
/// `alpha / r` gives the same scale.
pub fn to_writer(adapter: &LoraAdapter, dec: &Decoder, ty: GgmlType) -> Result<(GgufWriter, Vec<Vec<u8>>), AdapterError> {
    let err = |kind, why: String| AdapterError { path: adapter.path.clone(), kind, why };
    if !TYPES.contains(&ty) {
        return Err(err(K::Unsupported, format!("type {ty}: GGUF LoRA factors are F32, F16, BF16 or Q8_0")));
    }
    adapter.check_arch(dec)?;
    let alpha = match adapter.format {
        AdapterFormat::Gguf => adapter.alpha,
        AdapterFormat::Peft if adapter.alpha == 0.0 => {
            // llama.cpp reads alpha 0 as "scale 1", not "no effect".
            return Err(err(K::Unsupported, "lora_alpha 0 cannot be written as a GGUF LoRA (llama.cpp reads alpha 0 as scale 1)".into()));
        }
        AdapterFormat::Peft if adapter.use_rslora => adapter.alpha * (adapter.rank as f32).sqrt(),
        AdapterFormat::Peft => adapter.alpha,
    };
    let mut w = GgufWriter::new();
    let name = adapter.path.file_stem().map(|n| n.to_string_lossy().into_owned()).unwrap_or_else(|| "adapter".into());
    let meta = |w: &mut GgufWriter| -> Result<(), hearth_formats::GgufWriteError> {
        w.add_meta("general.architecture", dec.cfg.arch.as_str())?;
        w.add_meta("general.type", "adapter")?;
        w.add_meta("general.name", name.as_str())?;
        w.add_meta("adapter.type", "lora")?;
        w.add_meta("adapter.lora.alpha", alpha)?;
        Ok(())
    };
    meta(&mut w).map_err(|e| err(K::Format, e.to_string()))?;
    let mut data = Vec::with_capacity(2 * adapter.pairs.len());
    for ((layer, module), pair) in &adapter.pairs {
        let at = |why: String| format!("layer {layer} {module}: {why}");
        let t = resolve(dec, *layer, module, adapter.format).map_err(|(k, why)| err(k, at(why)))?;
        let full = t.weight(&dec.w.layers[*layer]);
        if t.rows != full.rows {
            return Err(err(K::Unsupported, at(format!("adapts rows {}..{} of the fused {}; a GGUF LoRA adapts whole tensors", t.row0, t.row0 + t.rows, t.gguf))));
        }
        check_fit(pair, t.rows, full.cols).map_err(|why| err(K::ShapeMismatch, at(why)))?;
        let b = adapter.b_in_gguf_order(&dec.cfg.layers[*layer], module, pair);
        let base = format!("blk.{layer}.{}.weight", t.gguf);
        for (suffix, vals, dims) in [(".lora_a", &pair.a, [full.cols as u64, pair.rank as u64]), (".lora_b", &b, [pair.rank as u64, t.rows as u64])] {
            let fty = factor_type(ty, dims[0] as usize);
            let rb = fty.row_bytes(dims[0]).ok_or_else(|| err(K::ShapeMismatch, at(format!("{} values per row do not fit {fty}", dims[0]))))? as usize;
            let mut bytes = vec![0u8; rb * dims[1] as usize];
            for (dst, src) in bytes.chunks_exact_mut(rb).zip(vals.chunks_exact(dims[0] as usize)) {
                hearth_kernels::quantize_row_ref(fty, src, dst);
            }
            w.add_tensor(format!("{base}{suffix}"), &dims, fty).map_err(|e| err(K::Format, e.to_string()))?;
            data.push(bytes);
        }
    }
    Ok((w, data))
}

/// Writes `adapter` as a GGUF LoRA for `dec` at `out` (atomically); returns
/// the file size. See [`to_writer`].
pub fn write(adapter: &LoraAdapter, dec: &Decoder, ty: GgmlType, out: &Path) -> Result<u64, AdapterError> {
    let (w, data) = to_writer(adapter, dec, ty)?;
    w.write_to_path_with_data(out, &data).map_err(|e| AdapterError { path: out.to_path_buf(), kind: K::Io, why: e.to_string() })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_parse() {
        assert_eq!(parse_name("blk.3.attn_q.weight.lora_a"), Ok(((3, "q_proj".into()), true)));
        assert_eq!(parse_name("blk.12.ffn_down.weight.lora_b"), Ok(((12, "down_proj".into()), false)));
        assert_eq!(parse_name("blk.0.attn_qkv.weight.lora_b"), Ok(((0, FUSED_QKV.into()), false)));
        assert_eq!(parse_name("blk.0.attn_norm.weight"), Err(K::Unsupported));
        assert_eq!(parse_name("token_embd.weight.lora_a"), Err(K::Unsupported));
        assert_eq!(parse_name("blk.+1.attn_q.weight.lora_a"), Err(K::UnknownTensor));
        assert_eq!(parse_name("blk.1.attn_z.weight.lora_a"), Err(K::UnknownTensor));
        assert_eq!(parse_name("blk.1.attn_q.bias.lora_a"), Err(K::UnknownTensor));
        assert_eq!(parse_name("blk.1.attn_q.weight"), Err(K::UnknownTensor));
        assert_eq!(parse_name("blk..attn_q.weight.lora_a"), Err(K::UnknownTensor));
    }

    #[test]
    fn q8_0_falls_back_to_f16_for_short_rows() {
        assert_eq!(factor_type(GgmlType::Q8_0, 64), GgmlType::Q8_0);
        assert_eq!(factor_type(GgmlType::Q8_0, 8), GgmlType::F16);
        assert_eq!(factor_type(GgmlType::F32, 8), GgmlType::F32);
    }
}
