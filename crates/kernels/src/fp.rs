//! Scalar f16 / bf16 conversions with ggml's exact semantics.
//!
//! * f16 → f32 and bf16 → f32 are exact widenings.
//! * f32 → f16 ([`f32_to_f16`]) is IEEE round-to-nearest-even, with every NaN
//!   turned into the canonical quiet NaN `sign | 0x7E00`, which is what
//!   ggml's portable `ggml_compute_fp32_to_fp16` (ggml-impl.h) returns and
//!   therefore what `llama-quantize` writes. The F16C instruction instead
//!   keeps the NaN payload; [`f32_to_f16_keep_nan`] does that, and is what
//!   the activation conversion uses (ggml-cpu converts activations with F16C
//!   on x86). The two differ only for NaN inputs.
//! * f32 → bf16 ([`f32_to_bf16`]) follows `ggml_compute_fp32_to_bf16`:
//!   round-to-nearest-even by integer addition, NaN truncated and forced
//!   quiet (`| 0x40`), subnormals kept.

/// Exact binary16 → f32.
#[inline(always)]
pub fn f16_to_f32(bits: u16) -> f32 {
    half::f16::from_bits(bits).to_f32()
}

/// f32 → binary16 as ggml's reference quantizers do it (RNE, canonical NaN).
#[inline(always)]
pub fn f32_to_f16(x: f32) -> u16 {
    if x.is_nan() {
        // ggml-impl.h ggml_compute_fp32_to_fp16: `shl1_w > 0xFF000000 ? 0x7E00`.
        ((x.to_bits() >> 16) as u16 & 0x8000) | 0x7E00
    } else {
        half::f16::from_f32(x).to_bits()
    }
}

/// f32 → binary16, RNE, NaN payload kept (F16C `vcvtps2ph` semantics).
#[inline(always)]
pub fn f32_to_f16_keep_nan(x: f32) -> u16 {
    half::f16::from_f32(x).to_bits()
}

/// Exact bf16 → f32.
#[inline(always)]
pub fn bf16_to_f32(bits: u16) -> f32 {
    f32::from_bits((bits as u32) << 16)
}

/// f32 → bf16 exactly as ggml-impl.h `ggml_compute_fp32_to_bf16`.
#[inline(always)]
pub fn f32_to_bf16(x: f32) -> u16 {
    let u = x.to_bits();
    if (u & 0x7fff_ffff) > 0x7f80_0000 {
        // NaN: keep the top bits and force the quiet bit.
        return ((u >> 16) | 64) as u16;
    }
    // Round to nearest, ties to even, by adding 0x7fff plus the lsb of the
    // kept half; carries into the exponent give the correctly rounded result
    // (including overflow to infinity).
    (u.wrapping_add(0x7fff + ((u >> 16) & 1)) >> 16) as u16
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn f16_nan_is_canonical_but_payload_variant_keeps_it() {
        let nan = f32::from_bits(0x7f80_0001); // signalling NaN, tiny payload
        assert_eq!(f32_to_f16(nan), 0x7E00);
        assert_eq!(f32_to_f16(-f32::NAN), 0xFE00);
        assert_eq!(f32_to_f16_keep_nan(f32::from_bits(0x7fc0_2000)) & 0x7E00, 0x7E00);
    }

    #[test]
    fn f16_rounds_to_nearest_even() {
        // 1 + 2^-11 is exactly halfway between 1 and the next f16 (1 + 2^-10):
        // ties go to the even mantissa, i.e. 1.0.
        assert_eq!(f32_to_f16(1.0 + f32::powi(2.0, -11)), 0x3C00);
        // 1 + 3*2^-11 is halfway between 1+2^-10 (odd) and 1+2^-9 (even).
        assert_eq!(f32_to_f16(1.0 + 3.0 * f32::powi(2.0, -11)), 0x3C02);
        assert_eq!(f32_to_f16(65520.0), 0x7C00); // rounds up to +inf
        assert_eq!(f32_to_f16(65519.0), 0x7BFF);
        assert_eq!(f32_to_f16(f32::powi(2.0, -24)), 0x0001); // smallest subnormal
        assert_eq!(f32_to_f16(f32::powi(2.0, -25)), 0x0000); // half of it: tie to even 0
    }

    #[test]
    fn bf16_matches_ggml_rules() {
        assert_eq!(f32_to_bf16(1.0), 0x3F80);
        // 1 + 2^-8 is halfway between bf16 1.0 and 1.0078125: tie to even.
        assert_eq!(f32_to_bf16(1.0 + f32::powi(2.0, -8)), 0x3F80);
        assert_eq!(f32_to_bf16(1.0 + 3.0 * f32::powi(2.0, -8)), 0x3F82);
        assert_eq!(f32_to_bf16(f32::from_bits(0x7f80_0001)), 0x7FC0);
        assert_eq!(f32_to_bf16(f32::MAX), 0x7F80); // overflows to inf
        assert_eq!(f32_to_bf16(f32::from_bits(1)), 0x0000); // subnormal rounds to 0
        assert_eq!(f32_to_bf16(f32::from_bits(0x8000)), 0x0000); // tie, even
        assert_eq!(f32_to_bf16(f32::from_bits(0x18000)), 0x0002); // tie, up to even
        assert_eq!(bf16_to_f32(0x3F80), 1.0);
    }
}
