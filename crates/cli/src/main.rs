//! `hearth`: run small language models locally, serve them, route between
//! them and a cloud model.

mod bench;
mod cascade_cmd;
mod chat;
mod default_model;
mod distill;
mod embed;
mod lora_cmd;
mod quantize;
mod gateway_cmd;
mod route;
mod run;
mod serve;
mod serve_embed;
mod tokenize;

use clap::{Parser, Subcommand};
use std::process::ExitCode;

#[derive(Parser)]
#[command(name = "hearth", version, about = "Small language models on your own hardware, with a router to the cloud")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Generate text from a prompt, streaming it to stdout.
    Run(run::RunArgs),
    /// Measure prompt processing, generation speed, time to first token and memory.
    Bench(bench::BenchArgs),
    /// Chat with a model using its own chat template.
    Chat(chat::ChatArgs),
    /// Serve the model over an OpenAI-compatible HTTP API.
    Serve(serve::ServeArgs),
    /// Print the token ids of text read from stdin.
    Tokenize(tokenize::TokenizeArgs),
    /// Train models on the CPU: LoRA adapters, merging, the demo model.
    Distill(distill::DistillArgs),
    /// Print sentence embeddings (JSON) of texts given or read from stdin.
    Embed(embed::EmbedArgs),
    /// Quantize an F32/F16/BF16 GGUF model to Q8_0, Q4_K_M, ... (llama-quantize compatible).
    Quantize(quantize::QuantizeArgs),
    /// Perplexity of a model on a text (llama-perplexity's method).
    Perplexity(quantize::PerplexityArgs),
    /// A quantized model against its base: perplexities, KL divergence, top-1 agreement.
    Compare(quantize::CompareArgs),
    /// Check a hearth.toml (`hearth config check FILE`).
    Config(gateway_cmd::ConfigArgs),
    /// Summarise the ledger: local share, latency per route, cost, savings.
    Report(gateway_cmd::ReportArgs),
    /// Audit log keys and verification.
    Audit(gateway_cmd::AuditArgs),
    /// Privacy guard tools (`hearth guard eval --data FILE`).
    Guard(gateway_cmd::GuardArgs),
    /// Cascade threshold calibration (`hearth cascade calibrate`).
    Cascade(cascade_cmd::CascadeArgs),
    /// Train, calibrate, evaluate and run the local/cloud query router.
    Route(route::RouteArgs),
}

fn main() -> ExitCode {
    tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::try_from_env("HEARTH_LOG").unwrap_or_else(|_| "warn".into()))
        .with_writer(std::io::stderr)
        .init();
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Run(a) => run::main(a),
        Command::Chat(a) => chat::main(a),
        Command::Bench(a) => bench::main(a),
        Command::Serve(a) => serve::main(a),
        Command::Tokenize(a) => tokenize::main(a),
        Command::Distill(a) => distill::main(a),
        Command::Embed(a) => embed::main(a),
        Command::Quantize(a) => quantize::quantize_main(a),
        Command::Perplexity(a) => quantize::perplexity_main(a),
        Command::Compare(a) => quantize::compare_main(a),
        Command::Config(a) => gateway_cmd::config(a),
        Command::Report(a) => gateway_cmd::report(a),
        Command::Audit(a) => gateway_cmd::audit(a),
        Command::Guard(a) => gateway_cmd::guard(a),
        Command::Cascade(a) => cascade_cmd::main(a),
        Command::Route(a) => route::main(a),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            // One line: the error and its causes.
            let chain: Vec<String> = e.chain().map(|c| c.to_string()).collect();
            eprintln!("hearth: error: {}", chain.join(": "));
            ExitCode::FAILURE
        }
    }
}
