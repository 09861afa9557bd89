//! The demo recipe without the CLI's dependencies (server, embeddings), for
//! machines where only this crate is built:
//! `cargo run --release -p hearth-distill --example train_demo -- KEY=VALUE...`
//! with keys `dict index out work steps embd layers heads kv_heads ff vocab
//! ctx batch lr threads fresh`; unset keys take [`DemoConfig::default`].
//! Same code path as `hearth distill train-demo`.

use hearth_distill::demo::{train_demo, DemoConfig};
use std::process::ExitCode;

fn main() -> ExitCode {
    let mut c = DemoConfig::default();
    for arg in std::env::args().skip(1) {
        let Some((k, v)) = arg.split_once('=') else {
            eprintln!("expected KEY=VALUE, got {arg}");
            return ExitCode::FAILURE;
        };
        let num = |v: &str| v.parse::<usize>().map_err(|e| format!("{k}: {e}"));
        let r: Result<(), String> = (|| {
            match k {
                "dict" => c.dict = v.into(),
                "index" => c.index = v.into(),
                "out" => c.out_dir = v.into(),
                "work" => c.work_dir = v.into(),
                "steps" => c.steps = num(v)? as u64,
                "embd" => c.n_embd = num(v)?,
                "layers" => c.n_layer = num(v)?,
                "heads" => c.n_head = num(v)?,
                "kv_heads" => c.n_head_kv = num(v)?,
                "ff" => c.n_ff = num(v)?,
                "vocab" => c.vocab_size = num(v)?,
                "ctx" => c.n_ctx = num(v)?,
                "batch" => c.batch = num(v)?,
                "lr" => c.lr = v.parse().map_err(|e| format!("lr: {e}"))?,
                "threads" => c.threads = num(v)?,
                "fresh" => c.resume = v != "1",
                _ => return Err(format!("unknown key {k}")),
            }
            Ok(())
        })();
        if let Err(e) = r {
            eprintln!("{e}");
            return ExitCode::FAILURE;
        }
    }
    c.progress = false;
    match train_demo(&c, &mut |l| eprintln!("hearth: {l}")) {
        Ok(r) => {
            eprintln!(
                "hearth: {} parameters, {:.0} s at {:.0} tokens/s; held-out loss {:.3} (engine {:.3}, perplexity {:.1}); {} bytes",
                r.n_params, r.train_seconds, r.tokens_per_second, r.val_loss_training_code, r.val_loss_engine, r.val_perplexity_engine, r.file_bytes
            );
            for s in &r.samples {
                println!("Q: {}{}\nA: {}\n", s.question, if s.held_out { " (held out)" } else { "" }, s.answer);
            }
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::FAILURE
        }
    }
}
