//! Tokenizes stdin with a GGUF file's vocabulary and prints the ids,
//! separated by spaces.
//!
//! Usage: cargo run -p hearth-tokenizer --example tokenize -- FILE.gguf
//!        [--add-special] [--parse-special] [--pieces] < text
//!
//! `--add-special` adds BOS/EOS as the vocabulary asks, `--parse-special`
//! recognises control tokens written as text (both off by default, as in
//! llama.cpp's test-tokenizer-0), `--pieces` prints `id:piece` pairs.

use hearth_formats::GgufFile;
use hearth_tokenizer::{EncodeOptions, Tokenizer};
use std::io::Read;
use std::process::ExitCode;

fn main() -> ExitCode {
    let mut path = None;
    let mut opts = EncodeOptions::default();
    let mut pieces = false;
    for a in std::env::args().skip(1) {
        match a.as_str() {
            "--add-special" => opts.add_special = true,
            "--parse-special" => opts.parse_special = true,
            "--pieces" => pieces = true,
            _ if path.is_none() && !a.starts_with("--") => path = Some(a),
            _ => {
                eprintln!("usage: tokenize FILE.gguf [--add-special] [--parse-special] [--pieces] < text");
                return ExitCode::from(2);
            }
        }
    }
    let Some(path) = path else {
        eprintln!("usage: tokenize FILE.gguf [--add-special] [--parse-special] [--pieces] < text");
        return ExitCode::from(2);
    };
    let tok = match GgufFile::open(&path).map_err(|e| e.to_string()).and_then(|g| Tokenizer::from_gguf(&g).map_err(|e| e.to_string())) {
        Ok(t) => t,
        Err(e) => {
            eprintln!("error: {path}: {e}");
            return ExitCode::FAILURE;
        }
    };
    let mut text = String::new();
    if let Err(e) = std::io::stdin().read_to_string(&mut text) {
        eprintln!("error: reading stdin: {e}");
        return ExitCode::FAILURE;
    }
    let ids = tok.encode(&text, opts);
    let out: Vec<String> = ids
        .iter()
        .map(|&id| {
            if pieces {
                format!("{id}:{:?}", String::from_utf8_lossy(&tok.token_to_piece(id, true)))
            } else {
                id.to_string()
            }
        })
        .collect();
    println!("{}", out.join(" "));
    ExitCode::SUCCESS
}
