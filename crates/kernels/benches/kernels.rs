//! `cargo bench -p hearth-kernels [-- TYPE...] [--big]`
//!
//! Measures (no assertions) per weight type and row length n:
//! * `ref`    — reference::vec_dot, ns per row;
//! * `dot`    — dispatched vec_dot, one row at a time;
//! * `rows`   — vec_dot_rows over the whole matrix (multi-row tiles);
//! * `mm8`    — matmul_rows with 8 activation rows, ns per (row, act row);
//! * GB/s of weight bytes for `dot`/`rows`, and the speed-up over `ref`;
//! * `p1`/`p8` — for Q4_0/Q5_0/Q8_0, the x8 repacked layout
//!   (`repack::matmul_with`): one activation row (ns per row) and 8 (ns per
//!   (row, act row)), to compare with `rows` and `mm8`.
//!
//! Weights: a matrix of ~1 MiB (hot in L2/L3) by default, or ~64 MiB with
//! `--big` (streams from DRAM, closer to decode of a real model).
//! Single-threaded. Also times quantize_activation per row, and (on CPUs
//! with AVX512-VNNI) the bare `vpdpbusd` throughput: the ceiling the x8
//! kernels' multiply-adds per second can be compared with.

use hearth_kernels::{self as k, reference, GgmlType};
use std::hint::black_box;
use std::time::Duration;
#[cfg(not(target_os = "linux"))]
use std::time::Instant;

struct Rng(u64);
impl Rng {
    fn next(&mut self) -> f32 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^= z >> 31;
        ((z >> 40) as f32 / (1u64 << 24) as f32) * 2.0 - 1.0
    }
}

/// This thread's CPU time. On a loaded machine (the development box has 2
/// cores shared by many jobs) wall time mostly measures the scheduler;
/// thread CPU time excludes the time the thread was not running.
#[cfg(target_os = "linux")]
fn cpu_now() -> Duration {
    #[repr(C)]
    struct Timespec {
        tv_sec: i64,
        tv_nsec: i64,
    }
    extern "C" {
        fn clock_gettime(clk: i32, ts: *mut Timespec) -> i32;
    }
    const CLOCK_THREAD_CPUTIME_ID: i32 = 3;
    let mut ts = Timespec { tv_sec: 0, tv_nsec: 0 };
    // SAFETY: clock_gettime writes one timespec to a valid pointer.
    unsafe { clock_gettime(CLOCK_THREAD_CPUTIME_ID, &mut ts) };
    Duration::new(ts.tv_sec as u64, ts.tv_nsec as u32)
}

#[cfg(not(target_os = "linux"))]
fn cpu_now() -> Duration {
    use std::sync::OnceLock;
    static T0: OnceLock<Instant> = OnceLock::new();
    T0.get_or_init(Instant::now).elapsed()
}

/// Best-of-7 mean CPU time per call of `f`, each sample running >= 30 ms.
fn time<F: FnMut()>(mut f: F) -> Duration {
    f();
    let mut best = Duration::MAX;
    for _ in 0..7 {
        let mut iters = 0u32;
        let start = cpu_now();
        while cpu_now() - start < Duration::from_millis(30) {
            f();
            iters += 1;
        }
        best = best.min((cpu_now() - start) / iters);
    }
    best
}

fn main() {
    let args: Vec<String> = std::env::args().skip(1).filter(|a| !a.starts_with("--") || a == "--big").collect();
    let big = args.iter().any(|a| a == "--big");
    let wanted: Vec<GgmlType> = args.iter().filter_map(|a| GgmlType::from_name(a)).collect();
    let types = [
        GgmlType::Q4_0,
        GgmlType::Q8_0,
        GgmlType::Q4_K,
        GgmlType::Q6_K,
        GgmlType::Q4_1,
        GgmlType::Q5_0,
        GgmlType::Q5_1,
        GgmlType::Q2_K,
        GgmlType::Q3_K,
        GgmlType::Q5_K,
        GgmlType::F16,
        GgmlType::BF16,
        GgmlType::F32,
    ];
    println!("hearth-kernels bench: dispatch = {}, weights ~{} per matrix", k::cpu_features(), if big { "64 MiB" } else { "1 MiB" });
    let tiers: Vec<k::Variant> = k::variants().into_iter().filter(|v| v.name() != "scalar").collect();
    let mut rng = Rng(42);
    for tier in &tiers {
        println!("\ntier {}", tier.name());
        println!(
            "{:<5} {:>5} | {:>9} | {:>9} {:>6} {:>5} | {:>9} {:>6} {:>5} | {:>9} | {:>8} {:>8}",
            "type", "n", "ref ns", "dot ns", "GB/s", "x", "rows ns", "GB/s", "x", "mm8 ns", "p1 ns", "p8 ns"
        );
        for ty in types.into_iter().filter(|t| wanted.is_empty() || wanted.contains(t)) {
            for n in [896usize, 2048, 4864, 8192] {
                if n % ty.block_size() != 0 {
                    continue;
                }
                bench_one(*tier, ty, n, big, &mut rng);
            }
        }
    }
    vnni_peak();
    println!("\nquantize_activation, ns per row:");
    for at in [GgmlType::Q8_0, GgmlType::Q8_1, GgmlType::Q8_K, GgmlType::F16, GgmlType::BF16] {
        for n in [896usize, 4864] {
            if n % at.block_size() != 0 {
                continue;
            }
            let x: Vec<f32> = (0..n).map(|_| rng.next()).collect();
            let mut q = vec![0u8; k::row_bytes(at, n)];
            let t_ref = time(|| {
                reference::quantize_activation(at, &x, &mut q);
                black_box(&q);
            });
            let t = time(|| {
                k::quantize_activation(at, &x, &mut q);
                black_box(&q);
            });
            println!("  {:<5} n={:<5} ref {:>8.0}  dispatched {:>8.0}", at.name(), n, t_ref.as_nanos() as f64, t.as_nanos() as f64);
        }
    }
}

/// One table row: reference, dispatched single-row, multi-row and matmul
/// timings for `tier`.
fn bench_one(tier: k::Variant, ty: GgmlType, n: usize, big: bool, rng: &mut Rng) {
    let rb = k::row_bytes(ty, n);
    let target = if big { 64 << 20 } else { 1 << 20 };
    let rows = (target / rb).max(8);
    let mut w = vec![0u8; rows * rb];
    let mut x = vec![0f32; n];
    // Quantize a few distinct rows and tile them (quantizing 64 MiB
    // with the reference K-quant search would take long).
    let distinct = rows.min(16);
    for r in 0..distinct {
        x.iter_mut().for_each(|v| *v = rng.next() * 0.05);
        k::quantize_row_ref(ty, &x, &mut w[r * rb..(r + 1) * rb]);
    }
    for r in distinct..rows {
        w.copy_within((r % distinct) * rb..(r % distinct + 1) * rb, r * rb);
    }
    let at = k::vec_dot_type(ty);
    let ab = k::row_bytes(at, n);
    let mut a = vec![0u8; 8 * ab];
    for t in 0..8 {
        x.iter_mut().for_each(|v| *v = rng.next());
        k::quantize_activation(at, &x, &mut a[t * ab..(t + 1) * ab]);
    }
    let a0 = &a[..ab];

    let ref_rows = rows.min(64);
    let t_ref = time(|| {
        for r in 0..ref_rows {
            black_box(reference::vec_dot(ty, n, &w[r * rb..(r + 1) * rb], a0));
        }
    }) / ref_rows as u32;
    let t_dot = time(|| {
        for r in 0..rows {
            black_box(tier.vec_dot(ty, n, &w[r * rb..(r + 1) * rb], a0));
        }
    }) / rows as u32;
    let mut out = vec![0f32; rows * 8];
    let t_rows = time(|| {
        tier.vec_dot_rows(ty, n, &w, a0, &mut out[..rows]);
        black_box(&out);
    }) / rows as u32;
    let t_mm = time(|| {
        tier.matmul_rows(ty, n, &w, rows, &a, 8, &mut out, rows);
        black_box(&out);
    }) / (rows as u32 * 8);
    let (mut p1, mut p8) = (f64::NAN, f64::NAN);
    if k::repack::is_repackable(ty) {
        let mut p = vec![0u8; k::repack::packed_bytes(ty, n, rows)];
        k::repack::pack(ty, n, &w, rows, &mut p);
        p1 = time(|| {
            k::repack::matmul_with(tier, ty, n, &p, rows, a0, 1, &mut out[..rows], rows);
            black_box(&out);
        })
        .as_nanos() as f64
            / rows as f64;
        p8 = time(|| {
            k::repack::matmul_with(tier, ty, n, &p, rows, &a, 8, &mut out, rows);
            black_box(&out);
        })
        .as_nanos() as f64
            / (rows * 8) as f64;
    }
    let gbs = |t: Duration| rb as f64 / t.as_nanos().max(1) as f64;
    let ns = |t: Duration| t.as_nanos() as f64;
    println!(
        "{:<5} {:>5} | {:>9.0} | {:>9.1} {:>6.1} {:>5.1} | {:>9.1} {:>6.1} {:>5.1} | {:>9.1} | {:>8.1} {:>8.1}",
        ty.name(),
        n,
        ns(t_ref),
        ns(t_dot),
        gbs(t_dot),
        ns(t_ref) / ns(t_dot),
        ns(t_rows),
        gbs(t_rows),
        ns(t_ref) / ns(t_rows),
        ns(t_mm),
        p1,
        p8
    );

}

/// Multiply-adds per second of nothing but `vpdpbusd` on 256-bit registers:
/// twelve independent accumulators (more than latency x throughput), no
/// loads. The int8 arithmetic ceiling of one core.
#[cfg(target_arch = "x86_64")]
fn vnni_peak() {
    use std::arch::x86_64::*;
    if !(is_x86_feature_detected!("avx512vnni") && is_x86_feature_detected!("avx512vl")) {
        return;
    }
    #[target_feature(enable = "avx2,avx512f,avx512vl,avx512vnni")]
    unsafe fn run(iters: usize) -> i32 {
        let mut acc = [_mm256_set1_epi32(1); 12];
        let (u, s) = black_box((_mm256_set1_epi8(3), _mm256_set1_epi8(-2)));
        for _ in 0..iters {
            for a in acc.iter_mut() {
                *a = _mm256_dpbusd_epi32(*a, u, s);
            }
            // Keeps the compiler from reasoning about the loop as a whole.
            std::arch::asm!("", options(nomem, nostack, preserves_flags));
        }
        let mut r = acc[0];
        for a in &acc[1..] {
            r = _mm256_add_epi32(r, *a);
        }
        _mm256_extract_epi32::<0>(r)
    }
    let iters = 1_000_000;
    // SAFETY: the features were detected above.
    let t = time(|| {
        black_box(unsafe { run(iters) });
    });
    let macs = (iters * 12 * 32) as f64;
    println!("\nvpdpbusd (ymm) peak, 1 thread: {:.0} GMAC/s ({:.3} ns per instruction)", macs / t.as_nanos() as f64, t.as_nanos() as f64 / (iters * 12) as f64);
}

#[cfg(not(target_arch = "x86_64"))]
fn vnni_peak() {}
