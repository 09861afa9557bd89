//! LoRA fine-tuning of a frozen GGUF base model, PEFT adapter files, and
//! merging an adapter into a new GGUF.
//!
//! Training: the base is loaded through `hearth-engine` (weights stay
//! memory-mapped and quantized; each frozen matrix is dequantized row by row
//! as the forward and backward passes need it), adapters are added to the
//! chosen projections of every layer ([`Net::from_decoder`]), and only the
//! adapters are trained: cross-entropy on the assistant tokens of chat
//! examples (rendered with the base's own chat template), plus optionally a
//! KL term to stored teacher top-k log-probabilities ([`crate::data`]).
//!
//! Adapter files are PEFT's: `adapter_config.json` and
//! `adapter_model.safetensors` with `base_model.model.model.layers.{i}.
//! {self_attn|mlp}.{module}.lora_{A|B}.weight`, `A` `[r, in]` and `B`
//! `[out, r]`, in Hugging Face row order (Q/K rows of Llama-layout models are
//! permuted back from llama.cpp's order; see `hearth_engine::lora`). The
//! engine reads them with [`hearth_engine::lora::PeftAdapter`].
//!
//! Deliberately absent: LoRA dropout, DoRA / rsLoRA training, adapters on
//! embeddings or the output head, QLoRA-style re-quantization of the base,
//! and GGUF LoRA output.

use crate::data::{read_jsonl, tokenize_chat, Example, Message, Sample};
use crate::error::{io_at, DistillError, Result};
use crate::net::{LoraConfig, Net, Target};
use crate::optim::AdamWConfig;
use crate::rng::Rng;
use crate::st::{self, StTensor};
use crate::trainer::{RunOptions, StepReport, TrainConfig, Trainer};
use hearth_chat::RenderRequest;
use hearth_engine::chat::{tokenize_rendered, ChatFormat};
use hearth_engine::lora::{permute_rows_gguf_to_hf, permute_rows_hf_to_gguf, PeftAdapter};
use hearth_engine::Model;
use hearth_formats::{Dtype, GgufFile, GgufWriter};
use hearth_models::config::RopeLayout;
use hearth_models::decoder::{GateUp, Layer, Qkv};
use hearth_models::weights::Weight;
use serde::Serialize;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Instant;

/// PEFT name of a factor.
fn peft_name(layer: usize, t: Target, a: bool) -> String {
    format!("base_model.model.model.layers.{layer}.{}.{}.lora_{}.weight", t.peft_parent(), t.peft_module(), if a { "A" } else { "B" })
}

/// Head count and size whose rows a Q/K `lora_B` is permuted over, or `None`
/// when the net's rows are in Hugging Face order already.
fn permuted_heads(net: &Net, t: Target) -> Option<(usize, usize)> {
    if net.cfg.rope.layout != RopeLayout::Interleaved {
        return None;
    }
    match t {
        Target::Q => Some((net.cfg.n_head, net.cfg.head_dim)),
        Target::K => Some((net.cfg.n_head_kv, net.cfg.head_dim)),
        _ => None,
    }
}

/// `(layer, target, is_a)` of a LoRA parameter name `blk.{i}.{gguf}.lora_{a|b}`.
fn parse_param(name: &str) -> Option<(usize, Target, bool)> {
    let rest = name.strip_prefix("blk.")?;
    let (layer, rest) = rest.split_once('.')?;
    let (tensor, which) = rest.rsplit_once('.')?;
    let t = Target::parse(tensor)?;
    let a = match which {
        "lora_a" => true,
        "lora_b" => false,
        _ => return None,
    };
    Some((layer.parse().ok()?, t, a))
}

/// Writes the adapters of `net` (values `params`) as a PEFT adapter in `dir`.
pub fn save_peft(dir: &Path, net: &Net, params: &[f32], base_model: &str) -> Result<()> {
    let lora = net.lora.as_ref().ok_or_else(|| DistillError::Config("the network has no LoRA adapters".into()))?;
    if params.len() != net.params.len {
        return Err(DistillError::Config(format!("{} values for {} parameters", params.len(), net.params.len)));
    }
    std::fs::create_dir_all(dir).map_err(io_at(dir))?;
    let mut owned: Vec<(String, Vec<usize>, Vec<f32>)> = Vec::new();
    for info in &net.params.tensors {
        let (layer, t, is_a) =
            parse_param(&info.name).ok_or_else(|| DistillError::Config(format!("parameter {} is not a LoRA factor", info.name)))?;
        let vals = &params[info.range()];
        let vals = match (is_a, permuted_heads(net, t)) {
            (false, Some((h, hd))) => permute_rows_gguf_to_hf(vals, lora.rank, h, hd),
            _ => vals.to_vec(),
        };
        owned.push((peft_name(layer, t, is_a), info.shape.clone(), vals));
    }
    let tensors: Vec<StTensor> = owned.iter().map(|(n, s, v)| StTensor { name: n.clone(), shape: s.clone(), data: v, dtype: Dtype::F32 }).collect();
    let st_path = dir.join("adapter_model.safetensors");
    st::write(&st_path, &tensors, &[("format".to_string(), "pt".to_string())])?;
    let mut modules: Vec<&str> = lora.targets.iter().map(|t| t.peft_module()).collect();
    modules.sort();
    modules.dedup();
    let cfg = serde_json::json!({
        "peft_type": "LORA",
        "task_type": "CAUSAL_LM",
        "base_model_name_or_path": base_model,
        "r": lora.rank,
        "lora_alpha": lora.alpha,
        "lora_dropout": 0.0,
        "target_modules": modules,
        "bias": "none",
        "fan_in_fan_out": false,
        "use_rslora": false,
        "use_dora": false,
        "inference_mode": true,
        "modules_to_save": null,
    });
    let cfg_path = dir.join("adapter_config.json");
    let text = serde_json::to_string_pretty(&cfg).map_err(|e| DistillError::Config(e.to_string()))?;
    std::fs::write(&cfg_path, text + "\n").map_err(io_at(&cfg_path))
}

/// The LoRA configuration of an adapter read from disk.
pub fn lora_config_of(adapter: &PeftAdapter) -> Result<LoraConfig> {
    let bad = |why: String| DistillError::Adapter { path: adapter.path.clone(), why };
    if adapter.use_rslora {
        return Err(bad("use_rslora adapters cannot be trained further".into()));
    }
    let mut targets = Vec::new();
    for (_, m) in adapter.pairs.keys() {
        let t = Target::parse(m).ok_or_else(|| bad(format!("module {m}")))?;
        if !targets.contains(&t) {
            targets.push(t);
        }
    }
    Ok(LoraConfig { rank: adapter.rank, alpha: adapter.alpha, targets })
}

/// Parameter values of `net` (built with [`lora_config_of`] the adapter's
/// configuration) taken from `adapter`.
pub fn params_from_adapter(net: &Net, adapter: &PeftAdapter) -> Result<Vec<f32>> {
    let bad = |why: String| DistillError::Adapter { path: adapter.path.clone(), why };
    let mut p = vec![0f32; net.params.len];
    for info in &net.params.tensors {
        let (layer, t, is_a) = parse_param(&info.name).ok_or_else(|| bad(format!("parameter {}", info.name)))?;
        let pair = adapter.pairs.get(&(layer, t.peft_module().to_string())).ok_or_else(|| bad(format!("no factors for layer {layer} {}", t.peft_module())))?;
        let src = if is_a { &pair.a } else { &pair.b };
        if src.len() != info.len() {
            return Err(bad(format!("{}: {} values, expected {}", info.name, src.len(), info.len())));
        }
        let vals = match (is_a, permuted_heads(net, t)) {
            (false, Some((h, hd))) => permute_rows_hf_to_gguf(src, pair.rank, h, hd),
            _ => src.clone(),
        };
        p[info.range()].copy_from_slice(&vals);
    }
    Ok(p)
}

/// GGUF suffixes (`attn_q`, ...) and matrices of one layer.
fn layer_matrices(l: &Layer) -> Vec<(&'static str, &Weight)> {
    let mut v = Vec::new();
    match &l.qkv {
        Qkv::Separate { q, k, v: vv } => v.extend([("attn_q", q), ("attn_k", k), ("attn_v", vv)]),
        Qkv::Fused(m) => v.push(("attn_qkv", m)),
    }
    v.push(("attn_output", &l.wo));
    match &l.gate_up {
        GateUp::Separate { gate, up } => v.extend([("ffn_gate", gate), ("ffn_up", up)]),
        GateUp::Fused(m) => v.push(("ffn_up", m)),
    }
    v.push(("ffn_down", &l.down));
    v
}

/// Bakes the adapter in `adapter_dir` into `base` and writes `out`: the
/// same metadata and tensors, with each adapted matrix replaced by its merged
/// copy (type as described in `hearth_engine::lora`). Returns the file size.
pub fn merge_gguf(base: &Path, adapter_dir: &Path, out: &Path) -> Result<u64> {
    let file = Arc::new(GgufFile::open(base)?);
    let dec = hearth_models::load_gguf(Arc::clone(&file))?;
    let adapter = PeftAdapter::open(adapter_dir).map_err(|e| DistillError::Adapter { path: e.path, why: e.why })?;
    let merged = adapter.merge_into(&dec).map_err(|e| DistillError::Adapter { path: e.path, why: e.why })?;
    // Tensors whose storage changed (owned now, not the file's bytes).
    let mut replaced: std::collections::HashMap<String, &Weight> = std::collections::HashMap::new();
    for (i, (new, old)) in merged.w.layers.iter().zip(&dec.w.layers).enumerate() {
        for ((suffix, nw), (_, ow)) in layer_matrices(new).into_iter().zip(layer_matrices(old)) {
            if !std::ptr::eq(nw.bytes().as_ptr(), ow.bytes().as_ptr()) {
                replaced.insert(format!("blk.{i}.{suffix}.weight"), nw);
            }
        }
    }
    let mut w = GgufWriter::new();
    for (k, v) in file.metadata() {
        w.add_meta(k.clone(), v.clone())?;
    }
    let note = format!("merged LoRA adapter {}", adapter_dir.file_name().map_or_else(|| adapter_dir.display().to_string(), |n| n.to_string_lossy().into_owned()));
    w.set_meta("hearth.merged_adapter", note.as_str())?;
    for t in file.tensors() {
        match replaced.get(&t.name) {
            Some(nw) => w.add_tensor(t.name.clone(), &t.dims, nw.ty)?,
            None => w.add_tensor(t.name.clone(), &t.dims, t.ty)?,
        };
    }
    let n = w.write_to_path(out, |info, sink| {
        let bytes = match replaced.get(&info.name) {
            Some(nw) => nw.bytes(),
            None => file.tensor_bytes(&info.name).unwrap_or(&[]),
        };
        std::io::Write::write_all(sink, bytes)
    })?;
    Ok(n)
}

/// Settings of [`train_lora`].
#[derive(Clone, Debug, Serialize)]
pub struct LoraTrainOptions {
    pub base: PathBuf,
    /// A `.jsonl` file or a directory of them ([`crate::data`]).
    pub data: PathBuf,
    /// Held-out examples, evaluated before and after training.
    pub valid: Option<PathBuf>,
    /// Adapter directory (also holds `checkpoint.safetensors`).
    pub out: PathBuf,
    pub rank: usize,
    pub alpha: f32,
    #[serde(skip)]
    pub targets: Vec<Target>,
    pub steps: u64,
    pub batch: usize,
    pub grad_accum: usize,
    pub lr: f32,
    pub warmup: u64,
    pub weight_decay: f32,
    /// Weight of the KL term to stored teacher log-probabilities.
    pub kl_weight: f64,
    /// KL with the teacher's remaining mass as one extra bucket.
    pub kl_rest: bool,
    /// Examples longer than this many tokens are cut.
    pub max_len: usize,
    pub seed: u64,
    pub threads: usize,
    pub progress: bool,
    pub resume: bool,
    pub checkpoint_every: u64,
}

impl Default for LoraTrainOptions {
    fn default() -> Self {
        LoraTrainOptions {
            base: PathBuf::new(),
            data: PathBuf::new(),
            valid: None,
            out: PathBuf::new(),
            rank: 8,
            alpha: 16.0,
            targets: vec![Target::Q, Target::K, Target::V, Target::O],
            steps: 200,
            batch: 4,
            grad_accum: 1,
            lr: 1e-3,
            warmup: 10,
            weight_decay: 0.0,
            kl_weight: 0.0,
            kl_rest: false,
            max_len: 512,
            seed: 0,
            threads: 0,
            progress: true,
            resume: true,
            checkpoint_every: 50,
        }
    }
}

/// What [`train_lora`] measured.
#[derive(Clone, Debug, Serialize)]
pub struct LoraTrainReport {
    pub options: LoraTrainOptions,
    pub targets: Vec<String>,
    pub n_examples: usize,
    pub n_adapter_params: usize,
    pub n_base_weights: usize,
    pub steps_run: u64,
    /// Mean training cross-entropy of the first and last 10 updates.
    pub train_loss_start: f64,
    pub train_loss_end: f64,
    pub valid_loss_before: Option<f64>,
    pub valid_loss_after: Option<f64>,
    pub seconds: f64,
    pub tokens_per_second: f64,
}

/// Tokenizes examples with `model`'s chat template (assistant turns are the
/// targets); plain-text examples train on every token.
pub fn tokenize_examples(model: &Model, examples: &[Example], max_len: usize) -> Result<Vec<Sample>> {
    let fmt = ChatFormat::from_model(model)?;
    let bos = fmt.template.bos_token.clone();
    let render = |msgs: &[Message], gen: bool| -> Result<String> {
        let v: Vec<serde_json::Value> = msgs.iter().map(|m| serde_json::json!({"role": m.role, "content": m.content})).collect();
        let mut req = RenderRequest::new(v);
        req.add_generation_prompt = gen;
        Ok(fmt.render(req)?)
    };
    let tokenize = |s: &str| tokenize_rendered(model, s, bos.as_deref());
    let mut out = Vec::with_capacity(examples.len());
    for ex in examples {
        let mut s = match (&ex.messages, &ex.text) {
            (Some(m), _) => tokenize_chat(m, ex.teacher_topk.as_deref(), &render, &tokenize)?,
            (None, Some(t)) => {
                let tokens = model.tokenizer.encode(t, hearth_tokenizer::EncodeOptions { add_special: true, parse_special: false });
                Sample { mask: vec![true; tokens.len()], tokens, teacher: None }
            }
            (None, None) => continue,
        };
        if s.tokens.len() > max_len {
            s.tokens.truncate(max_len);
            s.mask.truncate(max_len);
            if let Some(t) = s.teacher.as_mut() {
                t.truncate(max_len);
            }
        }
        if s.n_targets() > 0 {
            out.push(s);
        }
    }
    Ok(out)
}

/// Fine-tunes LoRA adapters on `opts.base` and writes them to `opts.out`.
pub fn train_lora(opts: &LoraTrainOptions, log: &mut dyn FnMut(&str)) -> Result<LoraTrainReport> {
    let model = Model::load(&opts.base)?;
    let lora = LoraConfig { rank: opts.rank, alpha: opts.alpha, targets: opts.targets.clone() };
    let net = Net::from_decoder(&model.decoder, &lora)?;
    let max_len = opts.max_len.min(model.config().n_ctx_train).max(2);
    let train = tokenize_examples(&model, &read_jsonl(&opts.data)?, max_len)?;
    let valid = match &opts.valid {
        Some(p) => tokenize_examples(&model, &read_jsonl(p)?, max_len)?,
        None => Vec::new(),
    };
    log(&format!(
        "{} training examples ({} target tokens), {} held out; {} adapter parameters on a frozen base of {} weights",
        train.len(),
        train.iter().map(Sample::n_targets).sum::<usize>(),
        valid.len(),
        net.params.len,
        net.n_weights()
    ));
    let n_examples = train.len();
    let params = net.init_lora(&mut Rng::derive(opts.seed, 0x10A4));
    let n_adapter_params = net.params.len;
    let n_base_weights = net.n_weights();
    let pad = model.tokenizer.eos().or_else(|| model.tokenizer.bos()).unwrap_or(0);
    let tcfg = TrainConfig {
        lr: opts.lr,
        min_lr_ratio: 0.1,
        warmup: opts.warmup,
        steps: opts.steps,
        batch: opts.batch,
        grad_accum: opts.grad_accum,
        clip: 1.0,
        adamw: AdamWConfig { beta1: 0.9, beta2: 0.999, eps: 1e-8, weight_decay: opts.weight_decay },
        kl_weight: opts.kl_weight,
        kl_rest: opts.kl_rest,
        seed: opts.seed,
        threads: opts.threads,
        pad,
    };
    let mut trainer = Trainer::new(net, params, train, tcfg)?;
    std::fs::create_dir_all(&opts.out).map_err(io_at(&opts.out))?;
    let ckpt = opts.out.join("checkpoint.safetensors");
    if opts.resume && ckpt.exists() {
        trainer.resume(&ckpt)?;
        log(&format!("resumed from {} at step {}", ckpt.display(), trainer.step));
    }
    let eval_batch = opts.batch.max(1);
    let valid_loss_before = if valid.is_empty() { None } else { Some(trainer.evaluate(&valid, eval_batch)?.loss) };
    let start = trainer.step;
    let t0 = Instant::now();
    let mut losses: Vec<f64> = Vec::new();
    let mut tokens = 0usize;
    trainer.run(&RunOptions { progress: opts.progress, checkpoint: Some(ckpt), checkpoint_every: opts.checkpoint_every }, &mut |r: &StepReport| {
        losses.push(r.ce);
        tokens += r.tokens;
    })?;
    let seconds = t0.elapsed().as_secs_f64();
    let valid_loss_after = if valid.is_empty() { None } else { Some(trainer.evaluate(&valid, eval_batch)?.loss) };
    let base_name = opts.base.file_name().map_or_else(|| opts.base.display().to_string(), |n| n.to_string_lossy().into_owned());
    save_peft(&opts.out, &trainer.net, &trainer.params, &base_name)?;
    let mean = |s: &[f64]| if s.is_empty() { f64::NAN } else { s.iter().sum::<f64>() / s.len() as f64 };
    let k = losses.len().min(10);
    let report = LoraTrainReport {
        options: opts.clone(),
        targets: opts.targets.iter().map(|t| t.peft_module().to_string()).collect(),
        n_examples,
        n_adapter_params,
        n_base_weights,
        steps_run: trainer.step - start,
        train_loss_start: mean(&losses[..k]),
        train_loss_end: mean(&losses[losses.len() - k..]),
        valid_loss_before,
        valid_loss_after,
        seconds,
        tokens_per_second: tokens as f64 / seconds.max(1e-9),
    };
    let path = opts.out.join("train_report.json");
    let json = serde_json::to_string_pretty(&report).map_err(|e| DistillError::Config(e.to_string()))?;
    std::fs::write(&path, json + "\n").map_err(io_at(&path))?;
    Ok(report)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parameter_names_parse() {
        assert_eq!(parse_param("blk.3.attn_q.lora_a"), Some((3, Target::Q, true)));
        assert_eq!(parse_param("blk.0.ffn_down.lora_b"), Some((0, Target::Down, false)));
        assert_eq!(parse_param("blk.0.ffn_down.weight"), None);
        assert_eq!(peft_name(2, Target::Gate, false), "base_model.model.model.layers.2.mlp.gate_proj.lora_B.weight");
    }
}
