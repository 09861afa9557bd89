//! `hearth distill`: training on the CPU (see the `hearth-distill` crate).
//!
//! * `train-demo` — the demo model recipe end to end (FOLDOC → tokenizer →
//!   from-scratch training → GGUF → evaluation through the engine).
//! * `train` — LoRA fine-tuning of a frozen GGUF base on chat JSONL, written
//!   as a PEFT adapter.
//! * `merge` — bake a LoRA adapter (PEFT or GGUF LoRA) into a new GGUF.
//! * `export-lora` — write an adapter as a GGUF LoRA (`lora_cmd`).

use anyhow::{Context, Result};
use hearth_distill::demo::{train_demo, DemoConfig};
use hearth_distill::lora::{merge_gguf, train_lora, LoraTrainOptions};
use hearth_distill::net::Target;
use hearth_formats::GgmlType;
use std::path::PathBuf;

#[derive(clap::Args)]
pub struct DistillArgs {
    #[command(subcommand)]
    pub command: DistillCommand,
}

#[derive(clap::Subcommand)]
pub enum DistillCommand {
    /// Train the FOLDOC demo model from scratch and evaluate it (the recipe of assets/demo).
    TrainDemo(TrainDemoArgs),
    /// Fine-tune LoRA adapters on a frozen GGUF model; writes a PEFT adapter directory.
    Train(TrainArgs),
    /// Merge a LoRA adapter (PEFT directory or GGUF LoRA file) into a new GGUF file.
    Merge(MergeArgs),
    /// Write a LoRA adapter as a GGUF LoRA file for llama.cpp's --lora.
    ExportLora(crate::lora_cmd::ExportLoraArgs),
}

#[derive(clap::Args)]
pub struct TrainArgs {
    /// Base model (GGUF).
    #[arg(long)]
    pub base: PathBuf,
    /// Training data: a .jsonl file or a directory of them ({"messages": [...]} or {"text": ...} per line).
    #[arg(long)]
    pub data: PathBuf,
    /// Held-out data, evaluated before and after training.
    #[arg(long)]
    pub valid: Option<PathBuf>,
    /// Adapter output directory (adapter_config.json, adapter_model.safetensors, checkpoint, report).
    #[arg(long)]
    pub out: PathBuf,
    #[arg(long, default_value_t = 8)]
    pub rank: usize,
    #[arg(long, default_value_t = 16.0)]
    pub alpha: f32,
    /// Comma-separated target modules: q,k,v,o,gate,up,down (or q_proj, ..., or "all").
    #[arg(long, default_value = "q,k,v,o")]
    pub targets: String,
    #[arg(long, default_value_t = 200)]
    pub steps: u64,
    #[arg(long, default_value_t = 4)]
    pub batch: usize,
    #[arg(long, default_value_t = 1)]
    pub grad_accum: usize,
    #[arg(long, default_value_t = 1e-3)]
    pub lr: f32,
    #[arg(long, default_value_t = 10)]
    pub warmup: u64,
    /// Weight of the KL term to stored teacher top-k log-probabilities (0 = cross-entropy only).
    #[arg(long, default_value_t = 0.0)]
    pub kl: f64,
    /// Examples are cut to this many tokens.
    #[arg(long, default_value_t = 512)]
    pub max_len: usize,
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
    #[arg(short = 't', long, default_value_t = 0)]
    pub threads: usize,
    /// Start over even if the output directory holds a checkpoint.
    #[arg(long)]
    pub fresh: bool,
}

#[derive(clap::Args)]
pub struct MergeArgs {
    /// Base model (GGUF).
    pub base: PathBuf,
    /// PEFT adapter directory or GGUF LoRA file.
    pub adapter: PathBuf,
    /// Output GGUF.
    pub out: PathBuf,
}

#[derive(clap::Args)]
pub struct TrainDemoArgs {
    /// FOLDOC dictionary (Debian package dict-foldoc).
    #[arg(long, default_value = "/usr/share/dictd/foldoc.dict.dz")]
    pub dict: PathBuf,
    #[arg(long, default_value = "/usr/share/dictd/foldoc.index")]
    pub index: PathBuf,
    /// Output directory for foldoc-demo.gguf and eval.json.
    #[arg(long, default_value = "assets/demo")]
    pub out: PathBuf,
    /// Checkpoints go here; an existing checkpoint is resumed.
    #[arg(long, default_value = "target/demo-work")]
    pub work: PathBuf,
    #[arg(long, default_value_t = DemoConfig::default().seed)]
    pub seed: u64,
    #[arg(long, default_value_t = DemoConfig::default().steps)]
    pub steps: u64,
    #[arg(long, default_value_t = DemoConfig::default().lr)]
    pub lr: f32,
    #[arg(long, default_value_t = DemoConfig::default().batch)]
    pub batch: usize,
    #[arg(long, default_value_t = DemoConfig::default().grad_accum)]
    pub grad_accum: usize,
    #[arg(long, default_value_t = DemoConfig::default().n_ctx)]
    pub ctx: usize,
    #[arg(long, default_value_t = DemoConfig::default().n_embd)]
    pub embd: usize,
    #[arg(long, default_value_t = DemoConfig::default().n_layer)]
    pub layers: usize,
    #[arg(long, default_value_t = DemoConfig::default().n_head)]
    pub heads: usize,
    #[arg(long, default_value_t = DemoConfig::default().n_head_kv)]
    pub kv_heads: usize,
    #[arg(long, default_value_t = DemoConfig::default().n_ff)]
    pub ff: usize,
    #[arg(long, default_value_t = DemoConfig::default().vocab_size)]
    pub vocab: usize,
    /// Storage type of the matrices: f32, f16 or q8_0.
    #[arg(long, default_value = "f16")]
    pub dtype: String,
    /// Worker threads (0 = all cores). Results are reproducible for a given count.
    #[arg(short = 't', long, default_value_t = 0)]
    pub threads: usize,
    /// Start over even if a checkpoint exists.
    #[arg(long)]
    pub fresh: bool,
}

pub fn main(a: DistillArgs) -> Result<()> {
    match a.command {
        DistillCommand::TrainDemo(a) => demo(a),
        DistillCommand::Train(a) => train(a),
        DistillCommand::Merge(a) => {
            let n = merge_gguf(&a.base, &a.adapter, &a.out).context("merge failed")?;
            eprintln!("hearth: wrote {} ({n} bytes)", a.out.display());
            Ok(())
        }
        DistillCommand::ExportLora(a) => crate::lora_cmd::export(a),
    }
}

fn parse_dtype(s: &str) -> Result<GgmlType> {
    match s.to_ascii_lowercase().as_str() {
        "f32" => Ok(GgmlType::F32),
        "f16" => Ok(GgmlType::F16),
        "q8_0" => Ok(GgmlType::Q8_0),
        other => anyhow::bail!("unknown --dtype {other} (f32, f16, q8_0)"),
    }
}

fn demo(a: TrainDemoArgs) -> Result<()> {
    let d = DemoConfig::default();
    let cfg = DemoConfig {
        dict: a.dict,
        index: a.index,
        out_dir: a.out,
        work_dir: a.work,
        seed: a.seed,
        steps: a.steps,
        lr: a.lr,
        batch: a.batch,
        grad_accum: a.grad_accum,
        n_ctx: a.ctx,
        n_embd: a.embd,
        n_layer: a.layers,
        n_head: a.heads,
        n_head_kv: a.kv_heads,
        n_ff: a.ff,
        vocab_size: a.vocab,
        matrix_type: parse_dtype(&a.dtype)?,
        threads: a.threads,
        resume: !a.fresh,
        ..d
    };
    let report = train_demo(&cfg, &mut |line| eprintln!("hearth: {line}")).context("demo training failed")?;
    eprintln!(
        "hearth: {} parameters, {:.0} s at {:.0} tokens/s; held-out loss {:.3} (engine {:.3}, perplexity {:.1}); {} bytes",
        report.n_params,
        report.train_seconds,
        report.tokens_per_second,
        report.val_loss_training_code,
        report.val_loss_engine,
        report.val_perplexity_engine,
        report.file_bytes
    );
    for s in &report.samples {
        println!("Q: {}{}\nA: {}\n", s.question, if s.held_out { " (held out)" } else { "" }, s.answer);
    }
    Ok(())
}

fn parse_targets(s: &str) -> Result<Vec<Target>> {
    if s.trim() == "all" {
        return Ok(Target::ALL.to_vec());
    }
    let mut v = Vec::new();
    for part in s.split(',').map(str::trim).filter(|p| !p.is_empty()) {
        let t = Target::parse(part).with_context(|| format!("unknown target module {part:?} (q,k,v,o,gate,up,down)"))?;
        if !v.contains(&t) {
            v.push(t);
        }
    }
    anyhow::ensure!(!v.is_empty(), "no target modules");
    Ok(v)
}

fn train(a: TrainArgs) -> Result<()> {
    let opts = LoraTrainOptions {
        base: a.base,
        data: a.data,
        valid: a.valid,
        out: a.out,
        rank: a.rank,
        alpha: a.alpha,
        targets: parse_targets(&a.targets)?,
        steps: a.steps,
        batch: a.batch,
        grad_accum: a.grad_accum,
        lr: a.lr,
        warmup: a.warmup,
        kl_weight: a.kl,
        max_len: a.max_len,
        seed: a.seed,
        threads: a.threads,
        resume: !a.fresh,
        ..LoraTrainOptions::default()
    };
    let r = train_lora(&opts, &mut |line| eprintln!("hearth: {line}")).context("LoRA training failed")?;
    eprintln!(
        "hearth: {} steps in {:.0} s ({:.0} tokens/s); train loss {:.3} -> {:.3}",
        r.steps_run, r.seconds, r.tokens_per_second, r.train_loss_start, r.train_loss_end
    );
    if let (Some(b), Some(af)) = (r.valid_loss_before, r.valid_loss_after) {
        eprintln!("hearth: held-out loss {b:.3} -> {af:.3}");
    }
    eprintln!("hearth: adapter written to {}", opts.out.display());
    Ok(())
}
