//! Test helpers: a tiny seeded PRNG (no global randomness) and data makers.
#![allow(dead_code)]

use hearth_kernels::{self as k, GgmlType};

/// SplitMix64: small, fast, good enough for test data; seeded explicitly.
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Rng {
        Rng(seed)
    }
    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }
    /// Uniform in [0, 1).
    pub fn f32(&mut self) -> f32 {
        (self.next_u64() >> 40) as f32 / (1u64 << 24) as f32
    }
    pub fn range(&mut self, lo: f32, hi: f32) -> f32 {
        lo + (hi - lo) * self.f32()
    }
    /// Standard normal (Box-Muller).
    pub fn normal(&mut self) -> f32 {
        let u1 = (self.f32() as f64).max(1e-12);
        let u2 = self.f32() as f64;
        ((-2.0 * u1.ln()).sqrt() * (2.0 * std::f64::consts::PI * u2).cos()) as f32
    }
    pub fn below(&mut self, n: usize) -> usize {
        (self.next_u64() % n as u64) as usize
    }
    pub fn bytes(&mut self, n: usize) -> Vec<u8> {
        (0..n).map(|_| self.next_u64() as u8).collect()
    }
    pub fn normals(&mut self, n: usize, scale: f32) -> Vec<f32> {
        (0..n).map(|_| self.normal() * scale).collect()
    }
}

pub const WEIGHT_TYPES: [GgmlType; 13] = [
    GgmlType::F32,
    GgmlType::F16,
    GgmlType::BF16,
    GgmlType::Q4_0,
    GgmlType::Q4_1,
    GgmlType::Q5_0,
    GgmlType::Q5_1,
    GgmlType::Q8_0,
    GgmlType::Q2_K,
    GgmlType::Q3_K,
    GgmlType::Q4_K,
    GgmlType::Q5_K,
    GgmlType::Q6_K,
];

pub const ACT_TYPES: [GgmlType; 6] =
    [GgmlType::F32, GgmlType::F16, GgmlType::BF16, GgmlType::Q8_0, GgmlType::Q8_1, GgmlType::Q8_K];

pub const ALL_TYPES: [GgmlType; 15] = [
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

/// Byte offsets of the f16 scale fields in each block type (ggml-common.h).
pub fn f16_fields(ty: GgmlType) -> &'static [usize] {
    match ty {
        GgmlType::Q4_0 | GgmlType::Q5_0 | GgmlType::Q8_0 => &[0],
        GgmlType::Q4_1 | GgmlType::Q5_1 | GgmlType::Q8_1 | GgmlType::Q4_K | GgmlType::Q5_K => &[0, 2],
        GgmlType::Q2_K => &[80, 82],
        GgmlType::Q3_K => &[108],
        GgmlType::Q6_K => &[208],
        _ => &[],
    }
}

/// Random block bytes for `n` elements of `ty`, with every f16/f32 scale set
/// by `scale(rng)` (so the values stay finite and controlled). For the float
/// types: random finite values. For Q8_1/Q8_K the derived fields (`s`,
/// `bsums`) are made consistent with the random quants.
pub fn random_blocks(rng: &mut Rng, ty: GgmlType, n: usize, scale: &mut dyn FnMut(&mut Rng) -> f32) -> Vec<u8> {
    let rb = k::row_bytes(ty, n);
    match ty {
        GgmlType::F32 => return (0..n).flat_map(|_| (rng.normal()).to_le_bytes()).collect(),
        GgmlType::F16 => return (0..n).flat_map(|_| half::f16::from_f32(rng.normal()).to_le_bytes()).collect(),
        GgmlType::BF16 => return (0..n).flat_map(|_| half::bf16::from_f32(rng.normal()).to_le_bytes()).collect(),
        _ => {}
    }
    let mut b = rng.bytes(rb);
    let ts = ty.type_size();
    for blk in b.chunks_exact_mut(ts) {
        for &o in f16_fields(ty) {
            blk[o..o + 2].copy_from_slice(&half::f16::from_f32(scale(rng)).to_le_bytes());
        }
        match ty {
            GgmlType::Q8_1 => {
                // Activations never hold -128; keep within [-127, 127].
                for q in &mut blk[4..36] {
                    if *q == 0x80 {
                        *q = 0x81;
                    }
                }
                let d = half::f16::from_le_bytes([blk[0], blk[1]]).to_f32();
                let sum: i32 = blk[4..36].iter().map(|&q| q as i8 as i32).sum();
                blk[2..4].copy_from_slice(&half::f16::from_f32(d * sum as f32).to_le_bytes());
            }
            GgmlType::Q8_K => {
                blk[0..4].copy_from_slice(&scale(rng).abs().to_le_bytes());
                for q in &mut blk[4..260] {
                    if *q == 0x80 {
                        *q = 0x81;
                    }
                }
                for j in 0..16 {
                    let s: i32 = blk[4 + 16 * j..4 + 16 * j + 16].iter().map(|&q| q as i8 as i32).sum();
                    blk[260 + 2 * j..262 + 2 * j].copy_from_slice(&(s as i16).to_le_bytes());
                }
            }
            GgmlType::Q8_0 => {}
            _ => {}
        }
    }
    b
}

/// Lengths to test for a type: a few block multiples including the model
/// sizes the benches use.
pub fn lengths(ty: GgmlType) -> Vec<usize> {
    match ty.block_size() {
        1 => vec![1, 7, 8, 31, 33, 256, 896, 1001],
        32 => vec![32, 64, 96, 224, 896, 4864],
        _ => vec![256, 512, 1792, 4864],
    }
}

pub fn quantize_act(ty: GgmlType, x: &[f32]) -> Vec<u8> {
    let at = k::vec_dot_type(ty);
    let mut a = vec![0u8; k::row_bytes(at, x.len())];
    k::quantize_activation(at, x, &mut a);
    a
}

pub fn dequant(ty: GgmlType, b: &[u8], n: usize) -> Vec<f32> {
    let mut y = vec![0f32; n];
    k::reference::dequantize_row(ty, b, &mut y);
    y
}
