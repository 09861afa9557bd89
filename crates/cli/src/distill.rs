//! `hearth distill`: training on the CPU (see the `hearth-distill` crate).
//!
//! * `train-demo` — the demo model recipe end to end (FOLDOC → tokenizer →
//!   from-scratch training → GGUF → evaluation through the engine).

use anyhow::{Context, Result};
use hearth_distill::demo::{train_demo, DemoConfig};
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
