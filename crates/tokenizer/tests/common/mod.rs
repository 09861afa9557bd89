//! Shared helpers: locating and loading the test vocabularies in the
//! repository's testdata/vocab (llama.cpp's vocab-only GGUFs, MIT).

#![allow(dead_code)]

use hearth_formats::GgufFile;
use hearth_tokenizer::Tokenizer;
use std::path::PathBuf;

pub fn vocab_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../testdata/vocab")
}

pub fn vocab_path(name: &str) -> PathBuf {
    vocab_dir().join(format!("ggml-vocab-{name}.gguf"))
}

pub fn load(name: &str) -> Tokenizer {
    let path = vocab_path(name);
    let g = GgufFile::open(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    Tokenizer::from_gguf(&g).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

/// The cases of a `.inp`/`.out` pair, split exactly as llama.cpp's
/// tests/test-tokenizer-0.cpp does: inputs separated by
/// "\n__ggml_vocab_test__\n", one line of space-separated ids per input.
pub fn cases(name: &str) -> Vec<(String, Vec<u32>)> {
    let base = vocab_path(name);
    let inp = std::fs::read_to_string(format!("{}.inp", base.display())).expect("read .inp");
    let out = std::fs::read_to_string(format!("{}.out", base.display())).expect("read .out");
    let sep = "\n__ggml_vocab_test__\n";
    let mut inputs = Vec::new();
    let mut pos = 0;
    while pos < inp.len() {
        match inp[pos..].find(sep) {
            Some(i) => {
                inputs.push(inp[pos..pos + i].to_string());
                pos += i + sep.len();
            }
            None => {
                inputs.push(inp[pos..].to_string());
                break;
            }
        }
    }
    let outputs: Vec<Vec<u32>> = out
        .lines()
        .map(|l| l.split_whitespace().map(|t| t.parse().expect("token id")).collect())
        .collect();
    assert_eq!(inputs.len(), outputs.len(), "{name}: .inp and .out disagree on the number of cases");
    inputs.into_iter().zip(outputs).collect()
}

pub const VOCABS: [&str; 8] = ["bert-bge", "gemma-4", "gpt-2", "llama-bpe", "llama-spm", "phi-3", "qwen2", "qwen35"];
