//! Measures encode speed on ~10 KB prompts, ordinary and adversarial, and
//! shows how the time per byte changes as the input grows to 160 KB.
//!
//! Usage: cargo run --release -p hearth-tokenizer --example bench_encode -- [FILE.gguf ...]
//! (default: every vocabulary in testdata/vocab)

use hearth_formats::GgufFile;
use hearth_tokenizer::{EncodeOptions, Tokenizer};
use std::time::{Duration, Instant};

fn prose(n: usize) -> String {
    let base = "The quick brown fox jumps over the lazy dog. It's 3.14159 o'clock; we've \
                got 12,345 reasons — naïve café, Straße, 東京タワー, 🦙 llamas!\n\
                fn main() { let x: Vec<u32> = (0..10).map(|i| i * 2).collect(); println!(\"{x:?}\"); }\n\
                Привет, мир! مرحبا بالعالم. नमस्ते दुनिया.    Indented    text\twith\ttabs.\n";
    base.repeat(n / base.len() + 1).chars().take(n).collect()
}

fn time(tok: &Tokenizer, text: &str) -> (Duration, usize) {
    let opts = EncodeOptions { add_special: true, parse_special: true };
    let mut best = Duration::MAX;
    let mut n = 0;
    for _ in 0..5 {
        let t = Instant::now();
        n = tok.encode(text, opts).len();
        best = best.min(t.elapsed());
    }
    (best, n)
}

fn main() {
    let mut files: Vec<String> = std::env::args().skip(1).collect();
    if files.is_empty() {
        let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/../../testdata/vocab");
        let mut v: Vec<String> = std::fs::read_dir(dir)
            .map(|d| d.filter_map(|e| e.ok()).map(|e| e.path().display().to_string()).filter(|p| p.ends_with(".gguf")).collect())
            .unwrap_or_default();
        v.sort();
        files = v;
    }
    let inputs: Vec<(&str, String)> = vec![
        ("prose", prose(10_000)),
        ("spaces", " ".repeat(10_000)),
        ("no-spaces", "abcdefghij".repeat(1_000)),
        ("digits", "1234567890".repeat(1_000)),
        ("cjk", "東京タワー我想在工作".repeat(333)),
        ("newlines", "\n".repeat(10_000)),
        ("specials", "<|im_start|><s></s><|endoftext|>x".repeat(300)),
    ];
    for f in &files {
        let t0 = Instant::now();
        let tok = match GgufFile::open(f).map_err(|e| e.to_string()).and_then(|g| Tokenizer::from_gguf(&g).map_err(|e| e.to_string())) {
            Ok(t) => t,
            Err(e) => {
                eprintln!("{f}: {e}");
                continue;
            }
        };
        let name = f.rsplit('/').next().unwrap_or(f);
        println!("{name}: load {:.0} ms, {} tokens", t0.elapsed().as_secs_f64() * 1e3, tok.n_vocab());
        for (label, text) in &inputs {
            let (d10, n) = time(&tok, text);
            // Time per byte at 2x, 4x, ... 16x the input, relative to 1x:
            // flat for linear work, doubling each step for quadratic work.
            let growth: Vec<String> = [2, 4, 8, 16]
                .iter()
                .map(|&k| {
                    let (d, _) = time(&tok, &text.repeat(k));
                    format!("{:.1}", d.as_secs_f64() / k as f64 / d10.as_secs_f64())
                })
                .collect();
            println!(
                "  {label:>10}: {:>5} B -> {n:>5} ids in {:>7.3} ms ({:>6.1} MB/s); per-byte time at 2/4/8/16x: {}",
                text.len(),
                d10.as_secs_f64() * 1e3,
                text.len() as f64 / d10.as_secs_f64() / 1e6,
                growth.join(" ")
            );
        }
    }
}
