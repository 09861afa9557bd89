//! `hearth distill`: training on the CPU (see the `hearth-distill` crate).
//!
//! * `train-demo` — the demo model recipe end to end (FOLDOC → tokenizer →
//!   from-scratch training → GGUF → evaluation through the engine).
//! * `train` — LoRA fine-tuning of a frozen GGUF base on chat JSONL, written
//!   as a PEFT adapter.
//! * `merge` — bake a LoRA adapter (PEFT or GGUF LoRA) into a new GGUF.
//! * `export-lora` — write an adapter as a GGUF LoRA (`lora_cmd`).
//! * `generate` — a teacher (OpenAI-compatible URL or local GGUF) writes a
//!   training set from a spec (docs/distill-example/spec.toml).
//! * `eval` — student vs teacher: EM/F1, schema validity, agreement, KL,
//!   judged win rate, latency, RAM, cost per 1,000 queries.

use anyhow::{Context, Result};
use hearth_distill::demo::{train_demo, DemoConfig};
use hearth_distill::lora::{merge_gguf, train_lora, LoraTrainOptions};
use hearth_distill::net::Target;
use hearth_formats::GgmlType;
use hearth_distill::eval::{evaluate, load_items, EvalOptions};
use hearth_distill::generate::{generate, GenerateOptions};
use hearth_distill::spec::{Prices, Spec, TeacherParams};
use hearth_distill::teacher::{HttpTeacher, LocalTeacher, Teacher};
use hearth_engine::{Engine, EngineConfig};
use hearth_guard::{Action, Policy};
use std::path::{Path, PathBuf};

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
    /// Generate a training set with a teacher (URL or local GGUF) from a spec.
    Generate(GenerateArgs),
    /// Evaluate a student against its teacher on a test set.
    Eval(EvalArgs),
}

#[derive(clap::Args)]
pub struct GenerateArgs {
    /// Teacher: an OpenAI-compatible base URL (http://127.0.0.1:8080/v1) or a local GGUF file.
    #[arg(long)]
    pub teacher: String,
    /// The spec (TOML); see docs/distill-example/spec.toml.
    #[arg(long)]
    pub spec: PathBuf,
    /// Output directory: calls.jsonl (ledger), {train,valid,test}.jsonl, *.meta.jsonl, report.json.
    #[arg(long)]
    pub out: PathBuf,
    /// Spending cap in USD (overrides the spec's budget_usd).
    #[arg(long)]
    pub budget_usd: Option<f64>,
    /// Reuse the finished calls in OUT/calls.jsonl (the default whenever the ledger exists).
    #[arg(long, conflicts_with = "fresh")]
    pub resume: bool,
    /// Delete OUT/calls.jsonl first and call the teacher for everything again.
    #[arg(long)]
    pub fresh: bool,
    /// Redact detected PII from prompts sent to a URL teacher instead of keeping those prompts local (skipped).
    #[arg(long)]
    pub redact_pii: bool,
    /// Threads of a local teacher (0 = all cores).
    #[arg(short = 't', long, default_value_t = 0)]
    pub threads: usize,
}

#[derive(clap::Args)]
pub struct EvalArgs {
    /// Student: MODEL.gguf or MODEL.gguf+ADAPTER_DIR.
    #[arg(long)]
    pub student: String,
    /// Teacher: URL or GGUF; asked for its own answers (without it the references are the teacher's answers).
    #[arg(long)]
    pub teacher: Option<String>,
    /// Test records (JSONL); a sibling NAME.meta.jsonl is read when present.
    #[arg(long)]
    pub data: PathBuf,
    /// Pairwise judge (URL or GGUF); each pair is judged in both orders.
    #[arg(long)]
    pub judge: Option<String>,
    /// Spec whose [teacher] (model name, api_key_env, timeout) and [prices] apply to URL teachers/judges.
    #[arg(long)]
    pub spec: Option<PathBuf>,
    /// Cloud input price, USD per 1M tokens (overrides the spec).
    #[arg(long)]
    pub price_in: Option<f64>,
    /// Cloud output price, USD per 1M tokens (overrides the spec).
    #[arg(long)]
    pub price_out: Option<f64>,
    /// Price of running the student, USD per hour of this machine (0 = free).
    #[arg(long, default_value_t = 0.0)]
    pub machine_usd_per_hour: f64,
    /// Longest answer, tokens (student and teacher).
    #[arg(long, default_value_t = 128)]
    pub max_tokens: usize,
    /// Evaluate at most this many items.
    #[arg(long)]
    pub limit: Option<usize>,
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
    /// Print the full report as JSON on stdout.
    #[arg(long)]
    pub json: bool,
    #[arg(short = 't', long, default_value_t = 0)]
    pub threads: usize,
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
    /// KL over the teacher's top-k plus one "rest" bucket for its remaining probability mass
    /// (keeps the student from becoming over-confident outside the top-k).
    #[arg(long)]
    pub kl_rest: bool,
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
    /// Instead of LoRA: train a new, smaller student from scratch (WIDTHxLAYERS, e.g. 128x4) with
    /// --base's tokenizer; writes OUT/student-init.gguf, OUT/student.gguf, OUT/train_report.json.
    #[arg(long, value_name = "WIDTHxLAYERS")]
    pub init_student: Option<String>,
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
        DistillCommand::Generate(a) => generate_cmd(a),
        DistillCommand::Eval(a) => eval_cmd(a),
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
    if let Some(shape) = &a.init_student {
        let shape = hearth_distill::kd::StudentShape::parse(shape)
            .with_context(|| format!("--init-student {shape:?}: expected WIDTHxLAYERS with WIDTH a multiple of 32, e.g. 128x4"))?;
        let opts = hearth_distill::kd::ScratchOptions {
            base: a.base,
            data: a.data,
            out: a.out.clone(),
            shape,
            n_ctx: a.max_len,
            steps: a.steps,
            batch: a.batch,
            lr: a.lr,
            warmup: a.warmup,
            kl_weight: a.kl,
            kl_rest: a.kl_rest,
            seed: a.seed,
            threads: a.threads,
        };
        let r = hearth_distill::kd::train_scratch_student(&opts, &mut |line| eprintln!("hearth: {line}")).context("student training failed")?;
        eprintln!(
            "hearth: {} parameters, {} examples, {} steps in {:.0} s; cross-entropy {:.3} -> {:.3}, KL {:.3}",
            r.params, r.examples, r.steps, r.seconds, r.ce_start, r.ce_end, r.kl_end
        );
        eprintln!("hearth: wrote {} and {}", a.out.join("student-init.gguf").display(), a.out.join("student.gguf").display());
        return Ok(());
    }
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
        kl_rest: a.kl_rest,
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

fn is_url(s: &str) -> bool {
    s.starts_with("http://") || s.starts_with("https://")
}

/// A URL teacher behind the privacy guard, or a local GGUF.
fn make_teacher(spec: &str, params: &TeacherParams, policy: Policy, threads: usize) -> Result<Box<dyn Teacher>> {
    if is_url(spec) {
        return Ok(Box::new(HttpTeacher::new(spec, params, policy)?));
    }
    let path = Path::new(spec);
    let engine = Engine::load(path, EngineConfig { threads, ..EngineConfig::default() }).with_context(|| format!("cannot load teacher {}", path.display()))?;
    let name = path.file_stem().map(|s| s.to_string_lossy().to_string()).unwrap_or_else(|| spec.to_string());
    Ok(Box::new(LocalTeacher::new(engine, name)))
}

fn generate_cmd(a: GenerateArgs) -> Result<()> {
    let spec = Spec::load(&a.spec).with_context(|| format!("spec {}", a.spec.display()))?;
    let policy = if a.redact_pii { Policy::all(Action::Redact) } else { Policy::default() };
    let mut teacher = make_teacher(&a.teacher, &spec.teacher, policy, a.threads)?;
    if is_url(&a.teacher) && spec.teacher.top_k_logprobs > 0 {
        eprintln!("hearth: teacher.top_k_logprobs is ignored for URL teachers (no logprobs over the cloud client)");
    }
    let opts = GenerateOptions { out: a.out.clone(), budget_usd: a.budget_usd, fresh: a.fresh };
    let r = generate(&spec, teacher.as_mut(), &opts, &mut |line| eprintln!("hearth: {line}")).context("generation failed")?;
    eprintln!(
        "hearth: {} cells; calls made {}, reused {}, failed {:?}; ${:.6} this run, ${:.6} total{}; stopped: {:?}",
        r.cells,
        r.calls_made,
        r.calls_reused,
        r.calls_failed,
        r.cost_usd_this_run,
        r.cost_usd_total,
        r.budget_usd.map(|b| format!(" (cap ${b:.6})")).unwrap_or_default(),
        r.stopped.unwrap_or(hearth_distill::generate::Stopped::Complete)
    );
    eprintln!(
        "hearth: answers {}, schema invalid {}, exact dupes {}, near dupes {}, judged {} (below threshold {}), records {:?}",
        r.answers, r.schema_invalid, r.dedup.exact_removed, r.dedup.near_removed, r.judged, r.judge_below_threshold, r.records
    );
    eprintln!("hearth: wrote {}", a.out.join("report.json").display());
    Ok(())
}

fn eval_cmd(a: EvalArgs) -> Result<()> {
    let spec = a.spec.as_ref().map(|p| Spec::load(p).with_context(|| format!("spec {}", p.display()))).transpose()?;
    let params = spec.as_ref().map(|s| s.teacher.clone()).unwrap_or(TeacherParams {
        model: "teacher".into(),
        api_key_env: None,
        temperature: 0.0,
        max_tokens: a.max_tokens as u32,
        seed: a.seed,
        top_k_logprobs: 0,
        timeout_s: 120.0,
        max_consecutive_errors: 5,
    });
    let base_prices = spec.as_ref().map(|s| s.prices).unwrap_or_default();
    let prices = Prices { input_per_mtok: a.price_in.unwrap_or(base_prices.input_per_mtok), output_per_mtok: a.price_out.unwrap_or(base_prices.output_per_mtok) };
    let (model_path, adapter) = match a.student.rsplit_once('+') {
        Some((m, ad)) if Path::new(m).is_file() => (PathBuf::from(m), Some(PathBuf::from(ad))),
        _ => (PathBuf::from(&a.student), None),
    };
    let ecfg = EngineConfig { threads: a.threads, ..EngineConfig::default() };
    let mut student = Engine::load(&model_path, ecfg).with_context(|| format!("cannot load student {}", model_path.display()))?;
    if let Some(ad) = &adapter {
        student = student.with_adapter(ad).with_context(|| format!("cannot apply adapter {}", ad.display()))?;
    }
    let mut teacher = a.teacher.as_deref().map(|t| make_teacher(t, &params, Policy::default(), a.threads)).transpose()?;
    let mut judge = a.judge.as_deref().map(|t| make_teacher(t, &params, Policy::default(), a.threads)).transpose()?;
    let mut items = load_items(&a.data).with_context(|| format!("test data {}", a.data.display()))?;
    if let Some(n) = a.limit {
        items.truncate(n);
    }
    anyhow::ensure!(!items.is_empty(), "{}: no chat records with an assistant answer", a.data.display());
    let opts = EvalOptions { max_tokens: a.max_tokens, prices, machine_usd_per_hour: a.machine_usd_per_hour, seed: a.seed, ..EvalOptions::default() };
    let r = evaluate(
        &student,
        &a.student,
        teacher.as_deref_mut().map(|t| t as &mut dyn Teacher),
        judge.as_deref_mut().map(|t| t as &mut dyn Teacher),
        &items,
        &opts,
        &mut |line| eprintln!("hearth: {line}"),
    )
    .context("evaluation failed")?;
    if a.json {
        println!("{}", serde_json::to_string_pretty(&r)?);
        return Ok(());
    }
    let pct = |x: f64| format!("{:.1} %", 100.0 * x);
    println!("student {} on {} items ({})", r.student, r.items, a.data.display());
    if let (Some(em), Some(f1)) = (r.exact_match, r.token_f1) {
        println!("  exact match {} · token F1 {:.3} ({} closed-form items)", pct(em), f1, r.closed_form_items);
    }
    if let Some(v) = r.schema_valid {
        println!("  schema-valid answers {} ({} structured items)", pct(v), r.structured_items);
    }
    println!("  answer agreement with the teacher {}{}", pct(r.teacher_agreement), r.teacher.as_deref().map(|t| format!(" ({t})")).unwrap_or_default());
    if let Some(c) = &r.teacher_forced {
        println!("  teacher-forced: next-token agreement {} · KL(teacher||student) {:.3} nats/token over {} tokens", pct(c.agreement), c.kl, c.positions);
    }
    if let Some(w) = &r.judge {
        println!(
            "  judged win rate {} (95 % Wilson {:.1}–{:.1} %, bootstrap {:.1}–{:.1} %); {} judgments, position consistency {}",
            pct(w.win_rate),
            100.0 * w.wilson_95.0,
            100.0 * w.wilson_95.1,
            100.0 * w.bootstrap_95.0,
            100.0 * w.bootstrap_95.1,
            w.judgments,
            pct(w.position_consistency)
        );
    }
    println!("  latency p50 {:.3} s · p95 {:.3} s · {:.1} tokens/s", r.latency_p50_s, r.latency_p95_s, r.student_tokens_per_s);
    if let Some(b) = r.peak_rss_bytes {
        println!("  peak RSS {:.1} MiB", b as f64 / 1048576.0);
    }
    println!(
        "  cost per 1,000 queries: ${:.4} all-cloud ({:.0} in / {:.0} out tokens per query{}) vs ${:.4} on the student",
        r.cost_per_1k_without_student_usd,
        r.mean_teacher_prompt_tokens,
        r.mean_teacher_completion_tokens,
        if r.teacher_tokens_measured { ", measured" } else { ", estimated" },
        r.cost_per_1k_with_student_usd
    );
    Ok(())
}
