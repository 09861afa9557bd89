//! `hearth bench`: prompt-processing and generation speed, time to first
//! token and peak memory, measured like llama.cpp's `llama-bench` (random
//! prompt tokens, a fresh context per repetition, medians reported).
//!
//! What it measures, per repetition:
//! - prefill: one forward pass over `n` random prompt tokens (in `n_batch`
//!   chunks) → `n / seconds`;
//! - time to first token: prefill plus sampling the first token;
//! - decode: `--gen-tokens` single-token steps after that prompt →
//!   `tokens / seconds` (greedy; the model's output feeds back in);
//! - with `--cached-prefix P`: the time to first token of a prompt whose
//!   first `P` tokens are already in the session's cache (a shared system
//!   prompt), the case the server's prefix reuse serves.
//!
//! Peak RSS is the process's high-water mark (`VmHWM`), so it includes the
//! mapped weights that were touched and every KV cache allocated so far.

use anyhow::{Context, Result};
use hearth_engine::sampler::argmax;
use hearth_engine::{Engine, EngineConfig};
use std::path::PathBuf;
use std::time::Instant;

#[derive(clap::Args)]
pub struct BenchArgs {
    /// Model file (.gguf) or Hugging Face model folder; not needed with --bandwidth.
    #[arg(required_unless_present = "bandwidth")]
    pub model: Option<PathBuf>,
    /// Prompt sizes to measure, comma separated.
    #[arg(short = 'p', long = "prompt-tokens", value_delimiter = ',', default_value = "64,512")]
    pub prompt_tokens: Vec<usize>,
    /// Tokens to generate after each prompt.
    #[arg(short = 'n', long = "gen-tokens", default_value_t = 128)]
    pub gen_tokens: usize,
    /// Worker threads (default: all cores).
    #[arg(short = 't', long, default_value_t = 0)]
    pub threads: usize,
    /// Repetitions per configuration (medians are reported).
    #[arg(short = 'r', long, default_value_t = 3)]
    pub repetitions: usize,
    /// Also measure time to first token of the prompt after this many tokens
    /// already cached (0 = skip).
    #[arg(long = "cached-prefix", default_value_t = 0)]
    pub cached_prefix: usize,
    /// One JSON object per line instead of a table.
    #[arg(long)]
    pub json: bool,
    /// Measure memory bandwidth (stream-like read and triad kernels on
    /// --threads threads) instead of a model; the roofline in BENCHMARKS.md.
    #[arg(long)]
    pub bandwidth: bool,
    /// Seed for the random prompt tokens.
    #[arg(long, default_value_t = 1234)]
    pub seed: u64,
}

struct Row {
    n_prompt: usize,
    n_cached: usize,
    prefill: Vec<f64>,
    decode: Vec<f64>,
    ttft: Vec<f64>,
}

pub fn main(a: BenchArgs) -> Result<()> {
    if a.bandwidth {
        return bandwidth(&a);
    }
    let Some(model) = a.model.clone() else { anyhow::bail!("hearth bench needs a model file") };
    anyhow::ensure!(a.repetitions > 0, "--repetitions must be at least 1");
    anyhow::ensure!(!a.prompt_tokens.is_empty() && a.prompt_tokens.iter().all(|&n| n > 0), "--prompt-tokens must be positive");
    let t_load = Instant::now();
    let engine = Engine::load(&model, EngineConfig { threads: a.threads, ..Default::default() })
        .with_context(|| format!("cannot load {}", model.display()))?;
    let load_s = t_load.elapsed().as_secs_f64();
    let cfg = engine.model().config().clone();
    let n_vocab = cfg.n_vocab as u64;
    let mut rng = a.seed | 1;
    let mut next_token = move || {
        // xorshift64*: reproducible random prompt tokens.
        rng ^= rng >> 12;
        rng ^= rng << 25;
        rng ^= rng >> 27;
        (rng.wrapping_mul(0x2545_F491_4F6C_DD1D) % n_vocab) as u32
    };
    let mut rows = Vec::new();
    let mut logits = Vec::new();
    // Warm-up: fault in the weights and spin up the threads.
    {
        let mut s = engine.new_session(64);
        let warm: Vec<u32> = (0..8).map(|_| next_token()).collect();
        engine.eval(&mut s, &warm, &mut logits)?;
    }
    for &n_prompt in &a.prompt_tokens {
        let n_ctx = n_prompt + a.gen_tokens + 1;
        anyhow::ensure!(n_ctx <= cfg.n_ctx_train, "{n_prompt} + {} tokens exceed the model's context of {}", a.gen_tokens, cfg.n_ctx_train);
        let mut row = Row { n_prompt, n_cached: 0, prefill: vec![], decode: vec![], ttft: vec![] };
        for _ in 0..a.repetitions {
            let prompt: Vec<u32> = (0..n_prompt).map(|_| next_token()).collect();
            let mut s = engine.new_session(n_ctx);
            let t0 = Instant::now();
            engine.eval(&mut s, &prompt, &mut logits)?;
            let t_prefill = t0.elapsed().as_secs_f64();
            let mut tok = argmax(&logits);
            let ttft = t0.elapsed().as_secs_f64();
            row.prefill.push(n_prompt as f64 / t_prefill);
            row.ttft.push(ttft * 1e3);
            if a.gen_tokens > 0 {
                let t1 = Instant::now();
                for _ in 0..a.gen_tokens {
                    engine.eval(&mut s, &[tok], &mut logits)?;
                    tok = argmax(&logits);
                }
                row.decode.push(a.gen_tokens as f64 / t1.elapsed().as_secs_f64());
            }
        }
        rows.push(row);
    }
    if a.cached_prefix > 0 {
        for &n_new in &a.prompt_tokens {
            let n_ctx = a.cached_prefix + n_new + 1;
            let mut row = Row { n_prompt: n_new, n_cached: a.cached_prefix, prefill: vec![], decode: vec![], ttft: vec![] };
            let prefix: Vec<u32> = (0..a.cached_prefix).map(|_| next_token()).collect();
            let mut s = engine.new_session(n_ctx);
            for _ in 0..a.repetitions {
                s.truncate(0);
                engine.eval(&mut s, &prefix, &mut logits)?;
                let tail: Vec<u32> = (0..n_new).map(|_| next_token()).collect();
                let t0 = Instant::now();
                engine.eval(&mut s, &tail, &mut logits)?;
                let _ = argmax(&logits);
                let dt = t0.elapsed().as_secs_f64();
                row.ttft.push(dt * 1e3);
                row.prefill.push(n_new as f64 / dt);
            }
            rows.push(row);
        }
    }
    let rss = peak_rss_mb();
    let file_mb = std::fs::metadata(&model).map(|m| m.len() as f64 / 1048576.0).unwrap_or(0.0);
    let name = model.file_name().map(|s| s.to_string_lossy().into_owned()).unwrap_or_default();
    if a.json {
        for r in &rows {
            let obj = serde_json::json!({
                "model": name,
                "arch": cfg.arch,
                "threads": engine.n_threads(),
                "n_prompt": r.n_prompt,
                "n_cached": r.n_cached,
                "n_gen": if r.n_cached > 0 { 0 } else { a.gen_tokens },
                "repetitions": a.repetitions,
                "prefill_tok_s": median(&r.prefill),
                "decode_tok_s": if r.decode.is_empty() { serde_json::Value::Null } else { median(&r.decode).into() },
                "ttft_ms": median(&r.ttft),
                "peak_rss_mb": rss,
                "file_mb": file_mb,
                "load_s": load_s,
                "kernels": hearth_kernels::cpu_features(),
            });
            println!("{obj}");
        }
    } else {
        println!("model: {name} ({}), {:.1} MiB, {} threads, kernels {}, load {:.2} s", cfg.arch, file_mb, engine.n_threads(), hearth_kernels::cpu_features(), load_s);
        println!("{:>8} {:>8} {:>14} {:>14} {:>10}", "prompt", "cached", "prefill tok/s", "decode tok/s", "TTFT ms");
        for r in &rows {
            let dec = if r.decode.is_empty() { "-".to_string() } else { format!("{:.1}", median(&r.decode)) };
            println!("{:>8} {:>8} {:>14.1} {:>14} {:>10.1}", r.n_prompt, r.n_cached, median(&r.prefill), dec, median(&r.ttft));
        }
        println!("peak RSS: {rss:.1} MiB (medians of {} repetitions)", a.repetitions);
    }
    Ok(())
}

/// Memory bandwidth on `--threads` threads, STREAM-style: each thread owns
/// (and first-touches) a slice of three 64 MiB f64 arrays, far larger than
/// any L3. Reported: `read` (a sum over one array: the access pattern of
/// decode, which only reads weights) and `triad` (`a = b + s*c`, counted as
/// STREAM counts it: 3 x 8 bytes per element, write-allocate traffic not
/// included). Best of 10 passes each, as STREAM reports.
fn bandwidth(a: &BenchArgs) -> Result<()> {
    use std::sync::Barrier;
    let threads = if a.threads == 0 { std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1) } else { a.threads };
    const N: usize = 8 << 20; // f64 elements per array (64 MiB)
    const PASSES: usize = 10;
    let per = N / threads;
    let barrier = Barrier::new(threads);
    let mut read_best = f64::INFINITY;
    let mut triad_best = f64::INFINITY;
    let timings: Vec<(Vec<f64>, Vec<f64>)> = std::thread::scope(|sc| {
        let hs: Vec<_> = (0..threads)
            .map(|_| {
                let barrier = &barrier;
                sc.spawn(move || {
                    let mut x = vec![1.0f64; per];
                    let y = vec![2.0f64; per];
                    let z = vec![0.5f64; per];
                    let (mut tr, mut tt) = (Vec::new(), Vec::new());
                    for _ in 0..PASSES {
                        barrier.wait();
                        let t0 = Instant::now();
                        let mut acc = [0f64; 8];
                        for c in x.chunks_exact(8) {
                            for i in 0..8 {
                                acc[i] += c[i];
                            }
                        }
                        std::hint::black_box(acc);
                        barrier.wait();
                        tr.push(t0.elapsed().as_secs_f64());
                        barrier.wait();
                        let t1 = Instant::now();
                        for ((o, &b), &c) in x.iter_mut().zip(&y).zip(&z) {
                            *o = b + 3.0 * c;
                        }
                        std::hint::black_box(&mut x);
                        barrier.wait();
                        tt.push(t1.elapsed().as_secs_f64());
                    }
                    (tr, tt)
                })
            })
            .collect();
        hs.into_iter().map(|h| h.join().expect("bandwidth thread")).collect()
    });
    // A pass ends when its slowest thread does (the barrier), so thread 0's
    // time per pass (start to barrier) is the wall time of the pass.
    for p in 0..PASSES {
        let r = timings.iter().map(|t| t.0[p]).fold(0.0, f64::max);
        let t = timings.iter().map(|t| t.1[p]).fold(0.0, f64::max);
        read_best = read_best.min(r);
        triad_best = triad_best.min(t);
    }
    let elems = (per * threads) as f64;
    let read = elems * 8.0 / read_best / 1e9;
    let triad = elems * 24.0 / triad_best / 1e9;
    if a.json {
        println!("{}", serde_json::json!({ "threads": threads, "bandwidth_gb_s": read, "read_gb_s": read, "triad_gb_s": triad }));
    } else {
        println!("memory bandwidth, {threads} threads: read {read:.1} GB/s, triad {triad:.1} GB/s (best of {PASSES})");
    }
    Ok(())
}

fn median(v: &[f64]) -> f64 {
    if v.is_empty() {
        return 0.0;
    }
    let mut s = v.to_vec();
    s.sort_by(|a, b| a.total_cmp(b));
    let n = s.len();
    if n % 2 == 1 {
        s[n / 2]
    } else {
        (s[n / 2 - 1] + s[n / 2]) / 2.0
    }
}

/// Peak resident set size in MiB (Linux `VmHWM`; 0 elsewhere).
pub fn peak_rss_mb() -> f64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmHWM:"))
                .and_then(|l| l.split_whitespace().nth(1))
                .and_then(|kb| kb.parse::<f64>().ok())
        })
        .map(|kb| kb / 1024.0)
        .unwrap_or(0.0)
}

#[cfg(test)]
mod tests {
    use super::median;

    #[test]
    fn median_of_odd_and_even() {
        assert_eq!(median(&[3.0, 1.0, 2.0]), 2.0);
        assert_eq!(median(&[4.0, 1.0, 2.0, 3.0]), 2.5);
        assert_eq!(median(&[]), 0.0);
    }
}
