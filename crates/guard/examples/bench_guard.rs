//! Benchmark (not a test): time to detect / decide on a ~2 KB prompt.
//! `cargo run --release -p hearth-guard --example bench_guard`
use std::time::Instant;

/// CPU time of this thread in ns (Linux schedstat), so that a busy shared
/// machine does not inflate the numbers; `None` elsewhere.
fn cpu_ns() -> Option<u64> {
    std::fs::read_to_string("/proc/thread-self/schedstat").ok()?.split_whitespace().next()?.parse().ok()
}

use hearth_api::{ChatRequest, Message, Role, Route};
use hearth_guard::{Action, Guard, Policy};

fn main() {
    let para = "Hi team, please welcome Olivia Fairweather, who joins on 2024-03-05. Her phone is +44 20 7946 0123 \
and e-mail olivia.f@example.org; SSN 123-45-6789, card 4111 1111 1111 1111, IBAN GB82 WEST 1234 5698 7654 32. \
She lives at 42 Kestrel Court, York YO10 4MM. Release v2.14.3 fixed the crash on port 8443; order ORD-404581 \
shipped. The Finance team meeting moves to Tuesday at 10:00. ";
    let mut text = String::new();
    while text.len() < 2048 {
        text.push_str(para);
    }
    text.truncate(2048);
    while !text.is_char_boundary(text.len()) {
        text.pop();
    }
    let req = ChatRequest::new("hearth/auto", vec![Message::new(Role::User, text.clone())]);
    for (label, policy) in [("keep-local", Policy::default()), ("redact", Policy::all(Action::Redact))] {
        let g = Guard::new(policy);
        for _ in 0..50 {
            let _ = g.decide(&req, Route::Cloud);
        }
        let n = 2000;
        let t = Instant::now();
        let c0 = cpu_ns();
        for _ in 0..n {
            std::hint::black_box(g.decide(std::hint::black_box(&req), Route::Cloud));
        }
        let per = t.elapsed().as_secs_f64() / n as f64;
        let cpu = c0.zip(cpu_ns()).map(|(a, b)| (b - a) as f64 / n as f64 / 1e3);
        println!("{label}: {:.1} us wall, {:.1} us CPU per 2 KB request ({} bytes)", per * 1e6, cpu.unwrap_or(f64::NAN), text.len());
    }
    // clean text (no entities): the common case
    let clean = "Explain how a B-tree differs from an LSM tree, with examples of databases using each. ".repeat(24);
    let req = ChatRequest::new("hearth/auto", vec![Message::new(Role::User, clean[..2048].to_string())]);
    let g = Guard::new(Policy::default());
    let t = Instant::now();
    let c0 = cpu_ns();
    for _ in 0..2000 {
        std::hint::black_box(g.decide(&req, Route::Cloud));
    }
    let cpu = c0.zip(cpu_ns()).map(|(a, b)| (b - a) as f64 / 2000.0 / 1e3);
    println!("clean: {:.1} us wall, {:.1} us CPU per 2 KB request", t.elapsed().as_secs_f64() / 2000.0 * 1e6, cpu.unwrap_or(f64::NAN));
    let t = Instant::now();
    let _ = hearth_guard::Detector::new();
    println!("first use (tables already built): {:?}", t.elapsed());
}
