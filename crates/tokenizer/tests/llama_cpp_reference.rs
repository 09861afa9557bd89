//! Token ids and detokenized bytes recorded from llama.cpp itself
//! (tests/data/llama_cpp_reference.txt, written by tools/gen_reference.py
//! through tools/llama_oracle.c) for what the .inp/.out files leave out:
//! parse_special, add_special, the lstrip/rstrip of special tokens and the
//! flags of llama_detokenize.

mod common;

use hearth_tokenizer::{DecodeOptions, EncodeOptions, Tokenizer};
use std::collections::HashMap;

fn unhex(s: &str) -> Vec<u8> {
    (0..s.len() / 2).map(|i| u8::from_str_radix(&s[2 * i..2 * i + 2], 16).expect("hex")).collect()
}

fn ids(s: &str) -> Vec<u32> {
    s.split_whitespace().map(|t| t.parse().expect("id")).collect()
}

#[test]
fn matches_llama_cpp_recordings() {
    let data = include_str!("data/llama_cpp_reference.txt");
    let mut toks: HashMap<String, Tokenizer> = HashMap::new();
    let (mut checked, mut failures) = (0, Vec::new());
    for line in data.lines().filter(|l| !l.is_empty()) {
        let (head, want) = line.split_once(" : ").map_or((line.trim_end_matches(" :"), ""), |(h, w)| (h, w));
        let f: Vec<&str> = head.splitn(5, ' ').collect();
        let (kind, vocab, a, b) = (f[0], f[1], f[2] == "1", f[3] == "1");
        let rest = f.get(4).copied().unwrap_or("");
        let tok = toks.entry(vocab.to_string()).or_insert_with(|| common::load(vocab));
        checked += 1;
        match kind {
            "E" => {
                let text = String::from_utf8(unhex(rest)).expect("utf-8 text");
                let got = tok.encode(&text, EncodeOptions { add_special: a, parse_special: b });
                if got != ids(want) {
                    failures.push(format!("{vocab} add={a} parse={b} {text:?}\n  want {want}\n  got  {got:?}"));
                }
            }
            "D" => {
                let got = tok.decode_bytes(&ids(rest), DecodeOptions { remove_special: a, special: b });
                if got != unhex(want) {
                    failures.push(format!(
                        "{vocab} remove_special={a} special={b} {rest}\n  want {:?}\n  got  {:?}",
                        String::from_utf8_lossy(&unhex(want)),
                        String::from_utf8_lossy(&got)
                    ));
                }
            }
            other => panic!("unknown record kind {other}"),
        }
    }
    assert!(checked > 1500, "only {checked} records");
    assert!(failures.is_empty(), "{} of {checked} records differ:\n{}", failures.len(), failures.join("\n"));
}
