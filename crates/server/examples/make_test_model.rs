//! Writes a random-weight qwen2 model with the real Qwen2 vocabulary.
//!
//! Usage: make_test_model OUT.gguf [tiny|qwen2.5-0.5b] [VOCAB.gguf]
use hearth_server::testing::{qwen2_vocab_path, write_test_model, TestModelSpec};
use std::path::PathBuf;
use std::process::ExitCode;

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let Some(out) = args.first() else {
        eprintln!("usage: make_test_model OUT.gguf [tiny|qwen2.5-0.5b] [VOCAB.gguf]");
        return ExitCode::FAILURE;
    };
    let spec = match args.get(1).map(String::as_str) {
        None | Some("tiny") => TestModelSpec::tiny(),
        Some("qwen2.5-0.5b") => TestModelSpec::qwen25_05b_q4_0(),
        Some(other) => {
            eprintln!("unknown shape {other}; expected tiny or qwen2.5-0.5b");
            return ExitCode::FAILURE;
        }
    };
    let vocab = args
        .get(2)
        .map(PathBuf::from)
        .unwrap_or_else(qwen2_vocab_path);
    match write_test_model(&vocab, out.as_ref(), &spec) {
        Ok(n) => {
            eprintln!("wrote {out} ({} MB, {})", n >> 20, spec.name);
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("make_test_model: {e}");
            ExitCode::FAILURE
        }
    }
}
