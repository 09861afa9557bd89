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
//! - with `--batch B` (B > 1): B sequences, each after its own prompt,
//!   decoded in lockstep, one forward pass per step over all B (what the
//!   server's continuous batching does) → aggregate `B * tokens / seconds`,
//!   to compare with the single-sequence decode rate.
//!
//! Also reported: the rates over *process CPU time* (`prefill_cpu_tok_s`,
//! `decode_cpu_tok_s`): with `-t 1` on a machine shared with other jobs they
//! measure the code rather than the scheduler.
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
    /// Also decode this many sequences in lockstep (batched decode steps)
    /// and report their aggregate tokens per second (1 = skip).
    #[arg(long, default_value_t = 1)]
    pub batch: usize,
}

struct Row {
    n_prompt: usize,
    n_cached: usize,
    prefill: Vec<f64>,
    decode: Vec<f64>,
    ttft: Vec<f64>,
    prefill_cpu: Vec<f64>,
    decode_cpu: Vec<f64>,
    /// Aggregate tok/s of `--batch` sequences decoded in lockstep.
    batch_decode: Vec<f64>,
}

/// CPU seconds used by this process so far (all threads).
fn cpu_s() -> f64 {
    #[cfg(target_os = "linux")]
    {
        #[repr(C)]
        struct Timespec {
            tv_sec: i64,
            tv_nsec: i64,
        }
        extern "C" {
            fn clock_gettime(clk: i32, ts: *mut Timespec) -> i32;
        }
        const CLOCK_PROCESS_CPUTIME_ID: i32 = 2;
        let mut ts = Timespec { tv_sec: 0, tv_nsec: 0 };
        // SAFETY: clock_gettime writes one timespec to a valid pointer.
        unsafe { clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &mut ts) };
        ts.tv_sec as f64 + ts.tv_nsec as f64 * 1e-9
    }
    #[cfg(not(target_os = "linux"))]
    {
        0.0
    }
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
        let mut row = Row::new(n_prompt, 0);
        for _ in 0..a.repetitions {
            let prompt: Vec<u32> = (0..n_prompt).map(|_| next_token()).collect();
            let mut s = engine.new_session(n_ctx);
            let (t0, c0) = (Instant::now(), cpu_s());
            engine.eval(&mut s, &prompt, &mut logits)?;
            let t_prefill = t0.elapsed().as_secs_f64();
            let c_prefill = cpu_s() - c0;
            let mut tok = argmax(&logits);
            let ttft = t0.elapsed().as_secs_f64();
            row.prefill.push(n_prompt as f64 / t_prefill);
            row.prefill_cpu.push(n_prompt as f64 / c_prefill.max(1e-9));
            row.ttft.push(ttft * 1e3);
            if a.gen_tokens > 0 {
                let (t1, c1) = (Instant::now(), cpu_s());
                for _ in 0..a.gen_tokens {
                    engine.eval(&mut s, &[tok], &mut logits)?;
                    tok = argmax(&logits);
                }
                row.decode.push(a.gen_tokens as f64 / t1.elapsed().as_secs_f64());
                row.decode_cpu.push(a.gen_tokens as f64 / (cpu_s() - c1).max(1e-9));
            }
            if a.batch > 1 && a.gen_tokens > 0 {
                row.batch_decode.push(batch_decode(&engine, a.batch, n_prompt, a.gen_tokens, &mut next_token)?);
            }
        }
        rows.push(row);
    }
    if a.cached_prefix > 0 {
        for &n_new in &a.prompt_tokens {
            let n_ctx = a.cached_prefix + n_new + 1;
            let mut row = Row::new(n_new, a.cached_prefix);
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
                "prefill_cpu_tok_s": if r.prefill_cpu.is_empty() { serde_json::Value::Null } else { median(&r.prefill_cpu).into() },
                "decode_cpu_tok_s": if r.decode_cpu.is_empty() { serde_json::Value::Null } else { median(&r.decode_cpu).into() },
                "batch": a.batch,
                "batch_decode_tok_s": if r.batch_decode.is_empty() { serde_json::Value::Null } else { median(&r.batch_decode).into() },
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
        for r in rows.iter().filter(|r| !r.batch_decode.is_empty()) {
            println!(
                "{} sequences decoded in lockstep after {}-token prompts: {:.1} tok/s aggregate ({:.2}x one sequence)",
                a.batch,
                r.n_prompt,
                median(&r.batch_decode),
                median(&r.batch_decode) / median(&r.decode).max(1e-9)
            );
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

impl Row {
    fn new(n_prompt: usize, n_cached: usize) -> Row {
        Row {
            n_prompt,
            n_cached,
            prefill: vec![],
            decode: vec![],
            ttft: vec![],
            prefill_cpu: vec![],
            decode_cpu: vec![],
            batch_decode: vec![],
        }
    }
}

/// `batch` sequences, each prefilled with its own random `n_prompt`-token
/// prompt (not timed), then `gen` decode steps in lockstep, each one
/// forward pass over all sequences (greedy). Returns aggregate tok/s.
fn batch_decode(engine: &Engine, batch: usize, n_prompt: usize, gen: usize, next_token: &mut dyn FnMut() -> u32) -> Result<f64> {
    use hearth_models::{KvCache, Logits, SeqInput};
    let cfg = engine.model().config().clone();
    let ec = EngineConfig::default();
    let n_ctx = n_prompt + gen + 1;
    let mut caches: Vec<KvCache> = (0..batch).map(|_| KvCache::new(&cfg, n_ctx, ec.cache_type_k, ec.cache_type_v)).collect();
    let mut outs: Vec<Vec<f32>> = vec![Vec::new(); batch];
    let mut toks = vec![0u32; batch];
    for (i, cache) in caches.iter_mut().enumerate() {
        let prompt: Vec<u32> = (0..n_prompt).map(|_| next_token()).collect();
        let mut seq = [SeqInput { tokens: &prompt, cache, logits: Logits::Last, out: &mut outs[i] }];
        engine.forward_batch(&mut seq)?;
        toks[i] = argmax(&outs[i]);
    }
    let t0 = Instant::now();
    for _ in 0..gen {
        let step: Vec<[u32; 1]> = toks.iter().map(|&t| [t]).collect();
        let mut seqs: Vec<SeqInput<'_>> = caches
            .iter_mut()
            .zip(outs.iter_mut())
            .zip(&step)
            .map(|((cache, out), tok)| SeqInput { tokens: &tok[..], cache, logits: Logits::Last, out })
            .collect();
        engine.forward_batch(&mut seqs)?;
        drop(seqs);
        for (t, out) in toks.iter_mut().zip(&outs) {
            *t = argmax(out);
        }
    }
    Ok((batch * gen) as f64 / t0.elapsed().as_secs_f64())
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
