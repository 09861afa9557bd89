//! Embedding latency and throughput (a plain harness: `cargo bench -p
//! hearth-embed`). Needs the model (see the crate docs); prints SKIPPED
//! without it.
//!
//! Single query: inputs of exactly 16, 64 and 256 tokens (special tokens
//! included) on 1 and 2 threads, p50/p95 over `HEARTH_BENCH_RUNS` runs
//! (default 60) after 5 warm-up runs. Batch: 32 texts of 64 tokens in one
//! call. `HEARTH_BENCH_WEIGHTS` picks the weight variants (comma-separated
//! `f32`, `f16`, `q8_0`; default `f32,f16`).
//!
//! Beside wall time it reports the calling thread's CPU time per call
//! (`CLOCK_THREAD_CPUTIME_ID`): on a machine shared with other jobs, wall
//! time includes waiting for a core, CPU time does not. With 2 threads the
//! caller's CPU time is its share of the work plus its waits for the worker
//! (the pool spins), so it approaches wall time on an idle machine.

use hearth_embed::{find_model_dir, Embedder, EmbedderOptions, EncoderOptions};
use hearth_formats::GgmlType;
use std::time::Instant;

fn thread_cpu_ms() -> f64 {
    let mut ts = libc::timespec { tv_sec: 0, tv_nsec: 0 };
    // SAFETY: clock_gettime writes the timespec it is given.
    unsafe { libc::clock_gettime(libc::CLOCK_THREAD_CPUTIME_ID, &mut ts) };
    ts.tv_sec as f64 * 1e3 + ts.tv_nsec as f64 / 1e6
}

fn percentile(sorted: &[f64], p: f64) -> f64 {
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[i.min(sorted.len() - 1)]
}

/// Token ids of exactly `n` tokens: [CLS] text pieces [SEP].
fn ids_of_len(e: &Embedder, n: usize) -> Vec<u32> {
    let text = "The router embeds every incoming query with a small encoder and scores it with a trained head \
                before deciding whether the local model can answer or the cloud is needed. "
        .repeat(20);
    let ids = e.tokenize(&text).expect("tokenize");
    let mut v = ids[..n - 1].to_vec();
    v.push(*ids.last().expect("non-empty"));
    v
}

fn main() {
    let dir = match find_model_dir(None).or_else(|_| find_model_dir(Some(&std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../models/all-MiniLM-L6-v2")))) {
        Ok(d) => d,
        Err(e) => {
            println!("SKIPPED: {e}");
            return;
        }
    };
    let runs: usize = std::env::var("HEARTH_BENCH_RUNS").ok().and_then(|v| v.parse().ok()).unwrap_or(60);
    let wanted = std::env::var("HEARTH_BENCH_WEIGHTS").unwrap_or_else(|_| "f32,f16".into());
    let variants: Vec<(&str, EncoderOptions)> = wanted
        .split(',')
        .filter_map(|w| match w.trim() {
            "f32" => Some(("f32", EncoderOptions::default())),
            "f16" => Some(("f16", EncoderOptions { quantize: Some(GgmlType::F16) })),
            "q8_0" => Some(("q8_0", EncoderOptions { quantize: Some(GgmlType::Q8_0) })),
            other => {
                eprintln!("ignoring unknown weight variant {other:?}");
                None
            }
        })
        .collect();
    println!("cpu: {} | runs: {runs}", hearth_kernels::cpu_features());
    println!(
        "{:<7} {:>7} {:>6} {:>8} {:>8} {:>8} {:>12}",
        "weights", "threads", "tokens", "p50 ms", "p95 ms", "min ms", "cpu p50 ms"
    );
    for (name, enc) in &variants {
        for threads in [1, 2] {
            let e = Embedder::load_with(&dir, &EmbedderOptions { threads, encoder: *enc, max_tokens: None }).expect("load");
            for n in [16usize, 64, 256] {
                let ids = ids_of_len(&e, n);
                for _ in 0..5 {
                    e.embed_ids(&[&ids]).expect("embed");
                }
                let (mut t, mut c): (Vec<f64>, Vec<f64>) = (0..runs)
                    .map(|_| {
                        let (s, c0) = (Instant::now(), thread_cpu_ms());
                        std::hint::black_box(e.embed_ids(&[&ids]).expect("embed"));
                        (s.elapsed().as_secs_f64() * 1e3, thread_cpu_ms() - c0)
                    })
                    .unzip();
                t.sort_by(|a, b| a.total_cmp(b));
                c.sort_by(|a, b| a.total_cmp(b));
                println!(
                    "{name:<7} {threads:>7} {n:>6} {:>8.2} {:>8.2} {:>8.2} {:>12.2}",
                    percentile(&t, 0.5),
                    percentile(&t, 0.95),
                    t[0],
                    percentile(&c, 0.5)
                );
            }
            let ids = ids_of_len(&e, 64);
            let batch: Vec<&[u32]> = (0..32).map(|_| ids.as_slice()).collect();
            e.embed_ids(&batch).expect("embed");
            let reps = (runs / 10).max(3);
            let (s, c0) = (Instant::now(), thread_cpu_ms());
            for _ in 0..reps {
                std::hint::black_box(e.embed_ids(&batch).expect("embed"));
            }
            let dt = s.elapsed().as_secs_f64() / reps as f64;
            let cpu = (thread_cpu_ms() - c0) / reps as f64;
            println!(
                "{name:<7} {threads:>7} {:>6} batch of 32: {:.1} ms/batch ({:.0} texts/s), caller cpu {:.1} ms/batch",
                64,
                dt * 1e3,
                32.0 / dt,
                cpu
            );
        }
    }
}
