//! Byte-for-byte agreement with llama.cpp's own ggml, using files written by
//! `tools/kernels/gen_golden.py` (see its docstring for what each file is).
//!
//! * `quantize_row_ref` must reproduce `ggml_quantize_chunk` exactly, for
//!   every type, on random rows and hard cases (zeros, a lone huge value,
//!   values whose f16 scale under- or overflows, rounding ties, ...).
//! * `dequantize_row` must reproduce ggml's `to_float` bit for bit, on the
//!   quantizer's output and on random block bytes.
//!
//! The last three are checked for every kernel tier the CPU offers
//! (`hearth_kernels::variants()`), the scalar reference included.
//! * `quantize_activation` must reproduce ggml-cpu's `from_float` (the x86
//!   build the files were generated with) byte for byte.
//! * `vec_dot` must agree with ggml-cpu's `ggml_vec_dot_*` up to float
//!   summation order.
//!
//! Each test collects every mismatch before failing, so one run reports the
//! state of all types.

use hearth_kernels::{self as k, GgmlType};
use std::path::PathBuf;

const N: usize = 256;

fn dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/golden")
}

fn read(name: &str) -> Option<Vec<u8>> {
    std::fs::read(dir().join(name)).ok()
}

fn f32s(b: &[u8]) -> Vec<f32> {
    b.chunks_exact(4).map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]])).collect()
}

fn src_rows() -> Vec<Vec<f32>> {
    let src = f32s(&read("src.f32").expect("tests/golden/src.f32 missing; run tools/kernels/gen_golden.py"));
    assert_eq!(src.len() % N, 0);
    src.chunks_exact(N).map(|r| r.to_vec()).collect()
}

const ALL: [GgmlType; 15] = [
    GgmlType::F32,
    GgmlType::F16,
    GgmlType::BF16,
    GgmlType::Q4_0,
    GgmlType::Q4_1,
    GgmlType::Q5_0,
    GgmlType::Q5_1,
    GgmlType::Q8_0,
    GgmlType::Q8_1,
    GgmlType::Q2_K,
    GgmlType::Q3_K,
    GgmlType::Q4_K,
    GgmlType::Q5_K,
    GgmlType::Q6_K,
    GgmlType::Q8_K,
];

/// Same bits, or both NaN (ggml and Rust may propagate different payloads
/// through float arithmetic on NaN operands).
fn same_f32(a: f32, b: f32) -> bool {
    a.to_bits() == b.to_bits() || (a.is_nan() && b.is_nan())
}

#[test]
fn quantize_row_ref_matches_llama_cpp_for_every_type() {
    let rows = src_rows();
    let mut failures = Vec::new();
    for ty in ALL {
        let want = read(&format!("{ty}.q")).unwrap_or_else(|| panic!("{ty}.q missing"));
        let rb = k::row_bytes(ty, N);
        assert_eq!(want.len(), rb * rows.len(), "{ty}.q size");
        let mut bad_rows = Vec::new();
        for (i, row) in rows.iter().enumerate() {
            let mut got = vec![0u8; rb];
            k::quantize_row_ref(ty, row, &mut got);
            if got != want[i * rb..(i + 1) * rb] {
                let first = got.iter().zip(&want[i * rb..]).position(|(a, b)| a != b).unwrap_or(0);
                bad_rows.push(format!("row {i} (first differing byte {first})"));
            }
        }
        if !bad_rows.is_empty() {
            failures.push(format!("{ty}: {}", bad_rows.join(", ")));
        }
    }
    assert!(failures.is_empty(), "quantize_row_ref differs from llama.cpp:\n{}", failures.join("\n"));
}

#[test]
fn quantize_row_ref_matches_llama_cpp_on_extra_random_rows() {
    let extra = f32s(&read("extra.f32").expect("extra.f32"));
    let rows: Vec<&[f32]> = extra.chunks_exact(N).collect();
    assert!(rows.len() >= 64);
    let mut failures = Vec::new();
    let mut checked = 0;
    for ty in ALL.into_iter().filter(|t| !matches!(t, GgmlType::F32 | GgmlType::F16 | GgmlType::BF16)) {
        let want = read(&format!("{ty}.extra.q")).unwrap_or_else(|| panic!("{ty}.extra.q missing"));
        let rb = k::row_bytes(ty, N);
        assert_eq!(want.len(), rb * rows.len());
        let bad: Vec<usize> = (0..rows.len())
            .filter(|&i| {
                let mut got = vec![0u8; rb];
                k::quantize_row_ref(ty, rows[i], &mut got);
                got != want[i * rb..(i + 1) * rb]
            })
            .collect();
        if !bad.is_empty() {
            failures.push(format!("{ty}: rows {bad:?}"));
        }
        checked += 1;
    }
    assert_eq!(checked, 12);
    assert!(failures.is_empty(), "quantize_row_ref differs from llama.cpp:\n{}", failures.join("\n"));
}

fn check_deq(ty: GgmlType, q: &[u8], want: &[f32], label: &str, failures: &mut Vec<String>) {
    let n_rows = want.len() / N;
    let rb = k::row_bytes(ty, N);
    for i in 0..n_rows {
        let row = &q[i * rb..(i + 1) * rb];
        for v in k::variants() {
            let which = v.name();
            let mut got = vec![0f32; N];
            v.dequantize_row(ty, row, &mut got);
            if let Some(j) = (0..N).find(|&j| !same_f32(got[j], want[i * N + j])) {
                failures.push(format!(
                    "{ty} {label} {which}: row {i} elem {j}: got {} want {}",
                    got[j],
                    want[i * N + j]
                ));
            }
        }
    }
}

#[test]
fn dequantize_row_matches_llama_cpp_to_float() {
    let mut failures = Vec::new();
    let mut checked = 0;
    for ty in ALL {
        if let (Some(q), Some(deq)) = (read(&format!("{ty}.q")), read(&format!("{ty}.deq"))) {
            check_deq(ty, &q, &f32s(&deq), "quantized", &mut failures);
            checked += 1;
        }
        if let (Some(q), Some(deq)) = (read(&format!("{ty}.rnd")), read(&format!("{ty}.rnd.deq"))) {
            check_deq(ty, &q, &f32s(&deq), "random-bytes", &mut failures);
            checked += 1;
        }
    }
    for ty in [GgmlType::F16, GgmlType::BF16] {
        let q = read(&format!("special.{ty}.q")).expect("special q");
        let deq = f32s(&read(&format!("special.{ty}.deq")).expect("special deq"));
        check_deq(ty, &q, &deq, "special", &mut failures);
    }
    // 13 types have a to_float (all but F32 and Q8_1); 11 have random-bytes
    // rows with a to_float (the quantized types but Q8_1).
    assert_eq!(checked, 13 + 11, "golden files missing");
    assert!(failures.is_empty(), "dequantize differs from llama.cpp:\n{}", failures.join("\n"));
}

#[test]
fn f16_bf16_conversion_of_special_values_matches_llama_cpp() {
    let special = f32s(&read("special.f32").unwrap());
    for ty in [GgmlType::F16, GgmlType::BF16] {
        let want = read(&format!("special.{ty}.q")).unwrap();
        let mut got = vec![0u8; want.len()];
        k::quantize_row_ref(ty, &special, &mut got);
        let bad: Vec<usize> = (0..special.len()).filter(|&i| got[2 * i..2 * i + 2] != want[2 * i..2 * i + 2]).collect();
        assert!(bad.is_empty(), "{ty}: elements {bad:?} differ (inputs {:?})", bad.iter().map(|&i| special[i]).collect::<Vec<_>>());
    }
}

#[test]
fn quantize_activation_matches_llama_cpp_cpu_backend() {
    let rows = src_rows();
    let mut failures = Vec::new();
    for ty in [GgmlType::F32, GgmlType::F16, GgmlType::BF16, GgmlType::Q8_0, GgmlType::Q8_1, GgmlType::Q8_K] {
        let want = read(&format!("act_{ty}.q")).unwrap();
        let rb = k::row_bytes(ty, N);
        for (i, row) in rows.iter().enumerate() {
            for v in k::variants() {
                let which = v.name();
                let mut got = vec![0u8; rb];
                v.quantize_activation(ty, row, &mut got);
                if got != want[i * rb..(i + 1) * rb] {
                    let first = got.iter().zip(&want[i * rb..]).position(|(a, b)| a != b).unwrap_or(0);
                    failures.push(format!("{ty} {which}: row {i}, first differing byte {first}"));
                }
            }
        }
    }
    assert!(failures.is_empty(), "activation quantization differs from ggml-cpu:\n{}", failures.join("\n"));
}

#[test]
fn vec_dot_agrees_with_llama_cpp_vec_dot() {
    let rows = src_rows();
    let r = rows.len();
    let mut failures = Vec::new();
    for ty in ALL.into_iter().filter(|&t| k::is_weight_type(t)) {
        let at = k::vec_dot_type(ty);
        let w = read(&format!("{ty}.q")).unwrap();
        let a = read(&format!("act_{at}.q")).unwrap();
        let want = f32s(&read(&format!("dot_{ty}.f32")).unwrap());
        let (wb, ab) = (k::row_bytes(ty, N), k::row_bytes(at, N));
        for i in 0..r {
            let j = (i + 1) % r;
            let wr = &w[i * wb..(i + 1) * wb];
            let ar = &a[j * ab..(j + 1) * ab];
            // Bound for reordering the float sum: |error| <= n_terms * eps *
            // sum|terms|; the dequantized magnitudes bound sum|terms|.
            let mut wd = vec![0f32; N];
            let mut ad = vec![0f32; N];
            k::dequantize_row(ty, wr, &mut wd);
            k::dequantize_row(at, ar, &mut ad);
            let mag: f64 = wd.iter().zip(&ad).map(|(x, y)| (*x as f64 * *y as f64).abs()).sum();
            let tol = 1e-5 * mag + 1e-30;
            for (which, got) in k::variants().into_iter().map(|v| (v.name(), v.vec_dot(ty, N, wr, ar))) {
                let ok = if want[i].is_finite() {
                    ((got - want[i]) as f64).abs() <= tol
                } else {
                    !got.is_finite()
                };
                if !ok {
                    failures.push(format!("{ty} {which}: row {i}: got {got} want {} (tol {tol:e})", want[i]));
                }
            }
        }
    }
    assert!(failures.is_empty(), "vec_dot differs from ggml-cpu:\n{}", failures.join("\n"));
}
