//! Forward+backward throughput of a from-scratch model:
//! `cargo run --release -p hearth-distill --example bench_step -- [embd layers heads kv_heads ff vocab ctx batch threads]`.

use hearth_distill::exec::{forward_backward, Batch, LossWeights, Workspace};
use hearth_distill::gemm::{gemm, MatRef};
use hearth_distill::net::{Net, NetConfig};
use hearth_distill::rng::Rng;
use hearth_models::pool::ThreadPool;
use std::time::Instant;

fn main() {
    let a: Vec<usize> = std::env::args().skip(1).map(|s| s.parse().expect("numbers")).collect();
    let g = |i: usize, d: usize| a.get(i).copied().unwrap_or(d);
    let (d, l, h, kv, f, v, t, b, th) = (g(0, 256), g(1, 6), g(2, 8), g(3, 4), g(4, 704), g(5, 4096), g(6, 256), g(7, 8), g(8, 2));
    let pool = ThreadPool::new(th);

    // Raw GEMM rate for a typical shape.
    let (m, n, k) = (b * t, f, d);
    let mut rng = Rng::new(1);
    let x: Vec<f32> = (0..m * k).map(|_| rng.normal() as f32).collect();
    let w: Vec<f32> = (0..n * k).map(|_| rng.normal() as f32).collect();
    let mut y = vec![0f32; m * n];
    let t0 = Instant::now();
    let reps = 20;
    for _ in 0..reps {
        gemm(&pool, m, n, k, MatRef::rows(&x, k), MatRef::rows_t(&w, k), &mut y, n, false);
    }
    let s = t0.elapsed().as_secs_f64();
    println!("gemm {m}x{n}x{k}: {:.1} GFLOP/s ({:?})", 2.0 * (m * n * k * reps) as f64 / s / 1e9, hearth_distill::gemm::selected_kernel());

    let cfg = NetConfig::llama(v, d, l, h, kv, f, t, true);
    let net = Net::new_scratch(cfg).unwrap();
    let params = net.init_scratch(&mut Rng::new(0));
    let mut grads = vec![0f32; params.len()];
    let inputs: Vec<u32> = (0..b * t).map(|_| rng.below(v) as u32).collect();
    let targets: Vec<u32> = (0..b * t).map(|_| rng.below(v) as u32).collect();
    let batch = Batch { b, t, inputs: &inputs, targets: &targets, teacher: None };
    let mut ws = Workspace::new();
    let steps = 3;
    forward_backward(&pool, &net, &params, Some(&mut grads), &batch, LossWeights { scale: 1.0 / (b * t) as f64, kl: 0.0, kl_rest: false }, &mut ws).unwrap();
    let t0 = Instant::now();
    for _ in 0..steps {
        forward_backward(&pool, &net, &params, Some(&mut grads), &batch, LossWeights { scale: 1.0 / (b * t) as f64, kl: 0.0, kl_rest: false }, &mut ws).unwrap();
    }
    let s = t0.elapsed().as_secs_f64() / steps as f64;
    let flops = 6.0 * net.params.len as f64 * (b * t) as f64;
    println!(
        "{} params: {:.0} tokens/s ({:.2} s per {}x{} batch, ~{:.1} GFLOP/s on 6N)",
        net.params.len,
        (b * t) as f64 / s,
        s,
        b,
        t,
        flops / s / 1e9
    );
}
