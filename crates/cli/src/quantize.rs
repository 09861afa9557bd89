//! `hearth quantize`, `hearth perplexity`, `hearth compare`: thin wrappers
//! over `hearth-quantize` (argument parsing, progress bars, printing).

use anyhow::{bail, Context, Result};
use hearth_engine::{Engine, EngineConfig};
use hearth_quantize::eval::{self, EvalOptions};
use hearth_quantize::{ftype, Event, FileType, GgufSource, PlanOptions, QuantizeOptions};
use indicatif::{ProgressBar, ProgressStyle};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

#[derive(clap::Args)]
pub struct QuantizeArgs {
    /// F32/F16/BF16 GGUF model.
    pub input: PathBuf,
    /// Output file (.gguf); written to a temporary file and renamed when complete.
    pub output: PathBuf,
    /// Target type: Q8_0, Q4_0, Q4_1, Q5_0, Q5_1, Q2_K, Q3_K_S/M/L, Q4_K_S/M, Q5_K_S/M, Q6_K, F16, BF16, F32.
    #[arg(long = "type", short = 't')]
    pub ty: String,
    /// Worker threads (0 = all cores).
    #[arg(long, default_value_t = 0)]
    pub threads: usize,
    /// Accept input tensors that are already quantized (compounds the error).
    #[arg(long)]
    pub allow_requantize: bool,
    /// Keep output.weight as it is in the input.
    #[arg(long)]
    pub leave_output_tensor: bool,
    /// Every quantizable tensor gets the base type (no _M mixes, no Q6_K output).
    #[arg(long)]
    pub pure: bool,
    /// Print the per-tensor types and stop without writing anything.
    #[arg(long)]
    pub dry_run: bool,
    /// Print one line per tensor (type, size, reconstruction RMSE).
    #[arg(long, short = 'v')]
    pub verbose: bool,
    /// Testing aid: pretend the disk fills up after this many bytes.
    #[arg(long, hide = true)]
    pub simulate_disk_full_after: Option<u64>,
}

pub fn quantize_main(a: QuantizeArgs) -> Result<()> {
    let Some(ft) = FileType::from_name(&a.ty) else {
        bail!(
            "unknown --type {:?}; supported: {}",
            a.ty,
            ftype::supported_names()
        );
    };
    // A .gguf file, or a Hugging Face folder converted in memory.
    let src = GgufSource::open_model(&a.input)
        .with_context(|| format!("cannot read {}", a.input.display()))?;
    let mut opts = QuantizeOptions::new(ft);
    opts.threads = a.threads;
    opts.plan = PlanOptions {
        allow_requantize: a.allow_requantize,
        leave_output_tensor: a.leave_output_tensor,
        pure: a.pure,
    };
    opts.simulate_disk_full_after = a.simulate_disk_full_after;
    opts.cancel = Some(cancel_on_ctrl_c());
    if a.dry_run {
        let plan = hearth_quantize::plan_for(&src, ft, &opts.plan)?;
        for f in plan.fallbacks() {
            eprintln!("warning: {f}");
        }
        for t in &plan.tensors {
            println!(
                "{:<40} {:>6} -> {:<6} {:?}",
                t.name,
                t.src_type.to_string(),
                t.dst_type.to_string(),
                t.dims
            );
        }
        println!(
            "{} tensors, {:.2} MiB of tensor data",
            plan.tensors.len(),
            plan.dst_bytes() as f64 / 1048576.0
        );
        return Ok(());
    }
    let bar = ProgressBar::new(0);
    bar.set_style(
        ProgressStyle::with_template(
            "{spinner} [{elapsed_precise}] {bar:40} {bytes}/{total_bytes} {msg}",
        )
        .unwrap_or_else(|_| ProgressStyle::default_bar()),
    );
    let verbose = a.verbose;
    let report = hearth_quantize::quantize(&src, &a.output, &opts, &mut |ev| match ev {
        Event::Planned {
            plan,
            file_len,
            src_bytes,
        } => {
            for f in plan.fallbacks() {
                bar.suspend(|| eprintln!("warning: {f}"));
            }
            for t in plan.requantized() {
                bar.suspend(|| {
                    eprintln!(
                        "warning: requantizing {} from {} to {}",
                        t.name, t.src_type, t.dst_type
                    )
                });
            }
            bar.suspend(|| {
                eprintln!(
                    "quantizing {} ({} tensors) to {ft}: {:.2} MiB -> {:.2} MiB",
                    a.input.display(),
                    plan.tensors.len(),
                    src_bytes as f64 / 1048576.0,
                    file_len as f64 / 1048576.0
                )
            });
            bar.set_length(src_bytes);
        }
        Event::Tensor { tensor, .. } => {
            bar.set_message(format!("{} -> {}", tensor.name, tensor.dst_type))
        }
        Event::Progress { src_bytes_done } => bar.set_position(src_bytes_done),
    });
    bar.finish_and_clear();
    let report = report?;
    if verbose {
        for t in &report.tensors {
            println!(
                "{:<40} {:>6} -> {:<6} {:>10} bytes  rmse {:.3e}",
                t.name,
                t.src_type.to_string(),
                t.dst_type.to_string(),
                t.dst_bytes,
                t.rmse
            );
        }
    }
    println!(
        "wrote {} ({ft}): {:.2} MiB, {:.2} bits per weight",
        report.path.display(),
        report.file_len as f64 / 1048576.0,
        report.bits_per_weight()
    );
    Ok(())
}

/// A flag set by Ctrl-C, so the run stops between slabs and removes its
/// temporary file (a plain SIGINT would kill the process before the
/// temporary file's destructor runs and leave it behind).
fn cancel_on_ctrl_c() -> Arc<AtomicBool> {
    let flag = Arc::new(AtomicBool::new(false));
    let f = Arc::clone(&flag);
    std::thread::spawn(move || {
        let Ok(rt) = tokio::runtime::Builder::new_current_thread()
            .enable_io()
            .build()
        else {
            return;
        };
        if rt.block_on(tokio::signal::ctrl_c()).is_ok() {
            eprintln!("\ninterrupted; stopping and removing the partial output");
            f.store(true, Ordering::Relaxed);
        }
    });
    flag
}

#[derive(clap::Args)]
pub struct PerplexityArgs {
    /// Model (.gguf).
    pub model: PathBuf,
    /// UTF-8 text to score.
    #[arg(long)]
    pub text: PathBuf,
    /// Tokens per chunk (llama-perplexity -c).
    #[arg(long, default_value_t = 512)]
    pub ctx: usize,
    /// Score at most this many chunks.
    #[arg(long)]
    pub chunks: Option<usize>,
    /// Worker threads (0 = all cores).
    #[arg(long, default_value_t = 0)]
    pub threads: usize,
}

fn load(path: &Path, threads: usize) -> Result<Engine> {
    Engine::load(
        path,
        EngineConfig {
            threads,
            ..Default::default()
        },
    )
    .with_context(|| format!("cannot load {}", path.display()))
}

fn read_text(path: &Path) -> Result<String> {
    std::fs::read_to_string(path)
        .with_context(|| format!("cannot read {} as UTF-8 text", path.display()))
}

fn chunk_bar() -> ProgressBar {
    let bar = ProgressBar::new(0);
    bar.set_style(
        ProgressStyle::with_template("{spinner} [{elapsed_precise}] chunk {pos}/{len} {bar:40}")
            .unwrap_or_else(|_| ProgressStyle::default_bar()),
    );
    bar
}

pub fn perplexity_main(a: PerplexityArgs) -> Result<()> {
    let engine = load(&a.model, a.threads)?;
    let text = read_text(&a.text)?;
    let opts = EvalOptions {
        n_ctx: a.ctx,
        max_chunks: a.chunks,
        ..Default::default()
    };
    let bar = chunk_bar();
    let p = eval::perplexity(&engine, &text, &opts, &mut |done, total| {
        bar.set_length(total as u64);
        bar.set_position(done as u64);
    });
    bar.finish_and_clear();
    let p = p?;
    println!(
        "perplexity {:.4} +/- {:.4} ({} chunks of {}, {} tokens scored, {} tokens in the text)",
        p.ppl, p.ppl_stderr, p.n_chunks, a.ctx, p.count, p.n_tokens
    );
    Ok(())
}

#[derive(clap::Args)]
pub struct CompareArgs {
    /// The 16-bit (or F32) base model.
    pub base: PathBuf,
    /// The quantized model.
    pub quant: PathBuf,
    /// UTF-8 text to score.
    #[arg(long)]
    pub text: PathBuf,
    #[arg(long, default_value_t = 512)]
    pub ctx: usize,
    #[arg(long)]
    pub chunks: Option<usize>,
    #[arg(long, default_value_t = 0)]
    pub threads: usize,
    /// Print one JSON object instead of text.
    #[arg(long)]
    pub json: bool,
}

pub fn compare_main(a: CompareArgs) -> Result<()> {
    let base = load(&a.base, a.threads)?;
    let quant = load(&a.quant, a.threads)?;
    let text = read_text(&a.text)?;
    let opts = EvalOptions {
        n_ctx: a.ctx,
        max_chunks: a.chunks,
        ..Default::default()
    };
    let bar = chunk_bar();
    let c = eval::compare(&base, &quant, &text, &opts, &mut |done, total| {
        bar.set_length(total as u64);
        bar.set_position(done as u64);
    });
    bar.finish_and_clear();
    let c = c?;
    if a.json {
        let v = serde_json::json!({
            "base_ppl": c.base.ppl, "base_ppl_stderr": c.base.ppl_stderr,
            "quant_ppl": c.quant.ppl, "quant_ppl_stderr": c.quant.ppl_stderr,
            "ln_ppl_ratio": c.ln_ppl_ratio, "ln_ppl_ratio_stderr": c.ln_ppl_ratio_stderr,
            "kl_mean": c.kl_mean, "kl_stderr": c.kl_stderr, "kl_p99": c.kl_p99, "kl_max": c.kl_max,
            "top1_agreement": c.top1_agreement, "top1_stderr": c.top1_stderr, "rms_delta_p": c.rms_delta_p,
            "tokens_scored": c.base.count, "chunks": c.base.n_chunks, "ctx": a.ctx,
        });
        println!("{v}");
        return Ok(());
    }
    println!(
        "base  perplexity {:.4} +/- {:.4}",
        c.base.ppl, c.base.ppl_stderr
    );
    println!(
        "quant perplexity {:.4} +/- {:.4}",
        c.quant.ppl, c.quant.ppl_stderr
    );
    println!(
        "ln(PPL(Q)/PPL(base)) {:.5} +/- {:.5}",
        c.ln_ppl_ratio, c.ln_ppl_ratio_stderr
    );
    println!(
        "mean KL(base||quant) {:.6} +/- {:.6} nats (99th percentile {:.6}, max {:.6})",
        c.kl_mean, c.kl_stderr, c.kl_p99, c.kl_max
    );
    println!(
        "top-1 agreement      {:.3}% +/- {:.3}%",
        100.0 * c.top1_agreement,
        100.0 * c.top1_stderr
    );
    println!("RMS delta p(correct) {:.4}", c.rms_delta_p);
    println!(
        "({} tokens scored over {} chunks of {})",
        c.base.count, c.base.n_chunks, a.ctx
    );
    Ok(())
}
