//! Continuous batching without HTTP: B concurrent requests through the
//! engine's scheduler, aggregate generated tokens per second for several B.
//! Usage: batch_scaling MODEL.gguf [THREADS] [TOKENS]
use hearth_engine::scheduler::{Event, EventSink, Job, Scheduler, SchedulerConfig};
use hearth_engine::{Engine, EngineConfig, SamplerConfig};
use std::sync::mpsc::{channel, Sender};
use std::sync::{Arc, Mutex};
use std::time::Instant;

struct Sink(Mutex<Sender<Event>>);

impl EventSink for Sink {
    fn send(&self, e: Event) -> bool {
        self.0.lock().map(|t| t.send(e).is_ok()).unwrap_or(false)
    }
    fn is_closed(&self) -> bool {
        false
    }
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let Some(path) = args.get(1) else {
        eprintln!("usage: batch_scaling MODEL.gguf [THREADS] [TOKENS]");
        std::process::exit(2);
    };
    let threads = args.get(2).and_then(|t| t.parse().ok()).unwrap_or(0);
    let tokens: usize = args.get(3).and_then(|t| t.parse().ok()).unwrap_or(48);
    let engine = match Engine::load(
        path.as_ref(),
        EngineConfig {
            threads,
            ..Default::default()
        },
    ) {
        Ok(e) => Arc::new(e),
        Err(e) => {
            eprintln!("{e}");
            std::process::exit(1);
        }
    };
    let sched = Scheduler::start(
        Arc::clone(&engine),
        SchedulerConfig {
            n_slots: 8,
            n_ctx: 1024,
            ..SchedulerConfig::default()
        },
    );
    println!(
        "{:>6} {:>8} {:>12} {:>8} {:>8}",
        "batch", "tokens", "tok/s", "x vs 1", "steps"
    );
    let mut base = 0.0;
    for b in [1usize, 2, 4, 8] {
        let (tx, rx) = channel();
        let steps0 = sched.stats().steps;
        let t0 = Instant::now();
        for i in 0..b {
            let prompt = engine.tokenize(
                &format!("Request {i}: a prompt of a few words."),
                true,
                true,
            );
            let job = Job {
                prompt,
                n: 1,
                max_tokens: tokens,
                sampler: SamplerConfig {
                    seed: i as u64,
                    ..SamplerConfig::default()
                },
                stop: Vec::new(),
                logprobs: None,
                logit_bias: Vec::new(),
                ignore_eos: true,
                render_special: false,
                processors: Vec::new(),
                sink: Arc::new(Sink(Mutex::new(tx.clone()))),
            };
            if let Err(e) = sched.submit(job) {
                eprintln!("{e}");
                std::process::exit(1);
            }
        }
        let mut done = 0;
        let mut generated = 0;
        while done < b {
            match rx.recv() {
                Ok(Event::Done { stats, .. }) => {
                    done += 1;
                    generated += stats.completion_tokens;
                }
                Ok(Event::Error { message }) => {
                    eprintln!("{message}");
                    std::process::exit(1);
                }
                Ok(_) => {}
                Err(_) => break,
            }
        }
        let tps = generated as f64 / t0.elapsed().as_secs_f64();
        if b == 1 {
            base = tps;
        }
        println!(
            "{b:>6} {generated:>8} {tps:>12.1} {:>8.2} {:>8}",
            tps / base,
            sched.stats().steps - steps0
        );
    }
}
