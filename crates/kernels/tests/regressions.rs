//! Regression tests, one per bug found while building the kernels. Each
//! states what ggml does and checks both the reference and the dispatched
//! (SIMD) path.

use hearth_kernels::{self as k, reference, GgmlType};

fn subnormal_block(n: usize) -> Vec<f32> {
    // Magnitudes ~1e-40: amax/127 is subnormal and 127/amax overflows to inf.
    (0..n).map(|i| if i % 3 == 0 { -2.5e-40 } else { 1.0e-40 * (i % 5) as f32 }).collect()
}

/// Bug 1 (found by the golden bytes): ggml-cpu's x86 `quantize_row_q8_1`
/// computes `s` from the 32-bit conversions before the saturating pack. When
/// `127/amax` overflows, every lane converts to i32::MIN and their wrapping
/// sum is 0, so `s` is +0.0 — not f16(d * sum of the saturated -128s) = -0.0.
#[test]
fn regression_q8_1_activation_s_of_subnormal_block_is_positive_zero() {
    let x = subnormal_block(32);
    for v in k::variants() {
        let which = v.name();
        let mut q = vec![0u8; 36];
        v.quantize_activation(GgmlType::Q8_1, &x, &mut q);
        assert_eq!(&q[2..4], &[0, 0], "{which}: s must be +0.0");
        assert!(q[4..].iter().all(|&b| b as i8 == -128), "{which}: inf*x converts to INT_MIN, saturated to -128");
    }
}

/// Bug 2 (found by the golden bytes): quantize_row_q8_K_ref rounds with the
/// `nearest_int` magic-number trick, which for an infinite `iscale * x`
/// yields -2^22 (or 0 for NaN), stored into int8_t by truncation as 0. A
/// rounding instruction plus a saturating pack gives -128 instead.
#[test]
fn regression_q8_k_activation_of_subnormal_block_truncates_like_ggml() {
    let x = subnormal_block(256);
    let mut want = vec![0u8; 292];
    reference::quantize_activation(GgmlType::Q8_K, &x, &mut want);
    assert!(want[4..260].iter().all(|&b| b == 0), "ggml stores (int8_t)(-4194304) = 0");
    assert!(want[260..].iter().all(|&b| b == 0), "bsums of zero quants");
    for v in k::variants() {
        let mut got = vec![0u8; 292];
        v.quantize_activation(GgmlType::Q8_K, &x, &mut got);
        assert_eq!(got, want, "{}", v.name());
    }
}

/// Not a bug found here but a documented ggml quirk the golden files pin:
/// quantize_row_q8_K_ref leaves `bsums` untouched for an all-zero block;
/// Hearth writes zeros so stale scratch contents cannot leak into a dot.
#[test]
fn q8_k_all_zero_block_clears_stale_bsums() {
    for v in k::variants() {
        let mut q = vec![0xAAu8; 292];
        v.quantize_activation(GgmlType::Q8_K, &[0.0; 256], &mut q);
        assert!(q.iter().all(|&b| b == 0), "{}", v.name());
    }
}
