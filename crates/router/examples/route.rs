//! `hearth route` without the rest of the `hearth` binary: the same module
//! (crates/cli/src/route.rs), so it builds in a fraction of the time.
//! `cargo run --release -p hearth-router --example route -- train --data ...`

#[path = "../../cli/src/route.rs"]
mod route;

use clap::Parser;

#[derive(Parser)]
#[command(name = "route", about = "Train, calibrate, evaluate and run Hearth's query router")]
struct Cli {
    #[command(flatten)]
    args: route::RouteArgs,
}

fn main() -> std::process::ExitCode {
    match route::main(Cli::parse().args) {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            let chain: Vec<String> = e.chain().map(|c| c.to_string()).collect();
            eprintln!("route: error: {}", chain.join(": "));
            std::process::ExitCode::FAILURE
        }
    }
}
