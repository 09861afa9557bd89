//! Distillation end to end on the demo model: the FOLDOC demo model is the
//! teacher; it answers FOLDOC questions; a smaller student with the same
//! tokenizer is trained from scratch on those answers (cross-entropy plus KL
//! to the teacher's stored top-k log-probabilities); teacher-student
//! agreement and KL on held-out questions are measured before and after.
//!
//! `cargo run --release -p hearth-distill --example kd_demo -- [OUT_DIR] [N_TRAIN] [STEPS] [THREADS]`
//! Writes `train.jsonl`, `eval.jsonl`, `student-before.gguf`,
//! `student-after.gguf` and `kd_report.json` to OUT_DIR (default
//! `target/kd-demo`).

use hearth_distill::demo::{answer, build_documents, DemoConfig};
use hearth_distill::export::{write_gguf, ExportOptions};
use hearth_distill::kd::{compare, samples, teacher_examples};
use hearth_distill::net::{Net, NetConfig};
use hearth_distill::optim::AdamWConfig;
use hearth_distill::rng::Rng;
use hearth_distill::trainer::{RunOptions, TrainConfig, Trainer};
use hearth_engine::{Engine, EngineConfig};
use hearth_formats::{GgmlType, GgufFile};
use std::io::Write;
use std::path::PathBuf;
use std::time::Instant;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let out = PathBuf::from(args.first().map_or("target/kd-demo", |s| s.as_str()));
    let n_train: usize = args.get(1).map_or(Ok(1200), |s| s.parse())?;
    let steps: u64 = args.get(2).map_or(Ok(600), |s| s.parse())?;
    let threads: usize = args.get(3).map_or(Ok(2), |s| s.parse())?;
    std::fs::create_dir_all(&out)?;
    let teacher_path = PathBuf::from("assets/demo/foldoc-demo.gguf");
    let ecfg = EngineConfig { threads, ..EngineConfig::default() };
    let teacher = Engine::load(&teacher_path, ecfg.clone())?;
    let demo = DemoConfig::default();

    // Questions: training entries for the student's data, held-out entries
    // (never seen by teacher or student) for the comparison.
    let entries = hearth_distill::foldoc::load(&demo.dict, &demo.index)?;
    let docs = build_documents(&entries, demo.seed, demo.holdout);
    let mut train_q: Vec<String> = docs.train_chat.iter().map(|q| q.question.clone()).collect();
    Rng::new(77).shuffle(&mut train_q);
    train_q.truncate(n_train);
    let eval_q: Vec<String> = docs.val_chat.iter().take(100).map(|q| q.question.clone()).collect();

    let t0 = Instant::now();
    let mut dots = |i: usize| {
        if i.is_multiple_of(100) {
            eprint!(".");
        }
    };
    let train_ex = teacher_examples(&teacher, &train_q, 48, 8, &mut dots)?;
    let eval_ex = teacher_examples(&teacher, &eval_q, 48, 8, &mut dots)?;
    let gen_s = t0.elapsed().as_secs_f64();
    eprintln!("\nteacher wrote {} training and {} held-out answers in {gen_s:.0} s", train_ex.len(), eval_ex.len());
    for (name, ex) in [("train.jsonl", &train_ex), ("eval.jsonl", &eval_ex)] {
        let mut f = std::io::BufWriter::new(std::fs::File::create(out.join(name))?);
        for e in ex.iter() {
            writeln!(f, "{}", serde_json::to_string(e)?)?;
        }
    }

    // The student: same tokenizer (metadata copied), smaller network.
    let file = GgufFile::open(&teacher_path)?;
    let meta: Vec<_> = file.metadata().iter().filter(|(k, _)| k.starts_with("tokenizer.")).cloned().collect();
    let nv = teacher.model().config().n_vocab;
    let net = Net::new_scratch(NetConfig::llama(nv, 128, 4, 4, 2, 352, 256, true))?;
    let params = net.init_scratch(&mut Rng::new(5));
    let save = |net: &Net, p: &[f32], name: &str| -> Result<PathBuf, Box<dyn std::error::Error>> {
        let path = out.join(name);
        write_gguf(&path, net, p, &ExportOptions { matrix_type: GgmlType::F16, name: "foldoc-student".into(), metadata: meta.clone() })?;
        Ok(path)
    };
    let before_path = save(&net, &params, "student-before.gguf")?;
    let before = compare(&teacher, &Engine::load(&before_path, ecfg.clone())?, &eval_ex)?;
    eprintln!("before: {before:?}");

    let train_samples = samples(&teacher, &train_ex, 256)?;
    let pad = teacher.tokenizer().eos().unwrap_or(0);
    let n_student = net.params.len;
    let tcfg = TrainConfig {
        lr: 2e-3,
        min_lr_ratio: 0.1,
        warmup: 30,
        steps,
        batch: 8,
        grad_accum: 1,
        clip: 1.0,
        adamw: AdamWConfig { beta1: 0.9, beta2: 0.95, eps: 1e-8, weight_decay: 0.1 },
        kl_weight: 1.0,
        kl_rest: false,
        seed: 3,
        threads,
        pad,
    };
    let mut trainer = Trainer::new(net, params, train_samples, tcfg)?;
    let t1 = Instant::now();
    let mut last = Vec::new();
    trainer.run(&RunOptions { progress: true, checkpoint: None, checkpoint_every: 0 }, &mut |r| {
        last.push((r.ce, r.kl));
    })?;
    let train_s = t1.elapsed().as_secs_f64();
    let after_path = save(&trainer.net, &trainer.params, "student-after.gguf")?;
    let student = Engine::load(&after_path, ecfg)?;
    let after = compare(&teacher, &student, &eval_ex)?;
    eprintln!("after: {after:?}");

    let mut examples = Vec::new();
    for q in eval_q.iter().take(5) {
        examples.push(serde_json::json!({"question": q, "teacher": answer(&teacher, q, 40)?, "student": answer(&student, q, 40)?}));
    }
    let k = last.len().min(20);
    let tail = &last[last.len() - k..];
    let report = serde_json::json!({
        "teacher": {"file": teacher_path, "params": 3148224},
        "student": {"params": n_student, "n_embd": 128, "n_layer": 4, "n_head": 4, "n_head_kv": 2, "n_ff": 352, "tied": true},
        "train_examples": train_ex.len(),
        "eval_examples": eval_ex.len(),
        "teacher_top_k": 8,
        "steps": steps, "batch": 8, "lr": 2e-3, "kl_weight": 1.0, "threads": threads,
        "teacher_generation_seconds": gen_s,
        "train_seconds": train_s,
        "final_train_ce": tail.iter().map(|v| v.0).sum::<f64>() / k.max(1) as f64,
        "final_train_kl": tail.iter().map(|v| v.1).sum::<f64>() / k.max(1) as f64,
        "before": before,
        "after": after,
        "samples": examples,
    });
    std::fs::write(out.join("kd_report.json"), serde_json::to_string_pretty(&report)? + "\n")?;
    println!("{}", serde_json::to_string_pretty(&report)?);
    Ok(())
}
