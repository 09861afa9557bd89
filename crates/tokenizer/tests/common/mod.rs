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

/// A minimal GGUF v3 writer for building small (and deliberately broken)
/// vocabularies in tests.
pub enum Val {
    Str(&'static str),
    U32(u32),
    I32(i32),
    Bool(bool),
    Strs(Vec<String>),
    F32s(Vec<f32>),
    I32s(Vec<i32>),
    U8s(Vec<u8>),
}

pub fn gguf_bytes(kvs: &[(&str, Val)]) -> Vec<u8> {
    fn s(out: &mut Vec<u8>, x: &str) {
        out.extend_from_slice(&(x.len() as u64).to_le_bytes());
        out.extend_from_slice(x.as_bytes());
    }
    let mut out = Vec::new();
    out.extend_from_slice(b"GGUF");
    out.extend_from_slice(&3u32.to_le_bytes());
    out.extend_from_slice(&0u64.to_le_bytes());
    out.extend_from_slice(&(kvs.len() as u64).to_le_bytes());
    for (k, v) in kvs {
        s(&mut out, k);
        match v {
            Val::Str(x) => {
                out.extend_from_slice(&8u32.to_le_bytes());
                s(&mut out, x);
            }
            Val::U32(x) => {
                out.extend_from_slice(&4u32.to_le_bytes());
                out.extend_from_slice(&x.to_le_bytes());
            }
            Val::I32(x) => {
                out.extend_from_slice(&5u32.to_le_bytes());
                out.extend_from_slice(&x.to_le_bytes());
            }
            Val::Bool(x) => {
                out.extend_from_slice(&7u32.to_le_bytes());
                out.push(*x as u8);
            }
            Val::Strs(xs) => {
                out.extend_from_slice(&9u32.to_le_bytes());
                out.extend_from_slice(&8u32.to_le_bytes());
                out.extend_from_slice(&(xs.len() as u64).to_le_bytes());
                for x in xs {
                    s(&mut out, x);
                }
            }
            Val::F32s(xs) => {
                out.extend_from_slice(&9u32.to_le_bytes());
                out.extend_from_slice(&6u32.to_le_bytes());
                out.extend_from_slice(&(xs.len() as u64).to_le_bytes());
                for x in xs {
                    out.extend_from_slice(&x.to_le_bytes());
                }
            }
            Val::I32s(xs) => {
                out.extend_from_slice(&9u32.to_le_bytes());
                out.extend_from_slice(&5u32.to_le_bytes());
                out.extend_from_slice(&(xs.len() as u64).to_le_bytes());
                for x in xs {
                    out.extend_from_slice(&x.to_le_bytes());
                }
            }
            Val::U8s(xs) => {
                out.extend_from_slice(&9u32.to_le_bytes());
                out.extend_from_slice(&0u32.to_le_bytes());
                out.extend_from_slice(&(xs.len() as u64).to_le_bytes());
                out.extend_from_slice(xs);
            }
        }
    }
    out
}

pub fn strs(xs: &[&str]) -> Vec<String> {
    xs.iter().map(|x| x.to_string()).collect()
}
