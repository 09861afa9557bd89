//! `hearth`: run small language models locally, serve them, route between
//! them and a cloud model.

mod bench;
mod chat;
mod embed;
mod route;
mod run;
mod serve;
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
    /// Print sentence embeddings (JSON) of texts given or read from stdin.
    Embed(embed::EmbedArgs),
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
        Command::Embed(a) => embed::main(a),
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
