//! ggml's quantized block layouts as `#[repr(C)]` structs.
//!
//! Field order and sizes follow `ggml/src/ggml-common.h` exactly; a
//! compile-time assertion below checks every struct against
//! [`GgmlType::type_size`], so a layout that drifts from the file format does
//! not build.
//!
//! # Alignment: every block has alignment 1
//!
//! ggml declares `ggml_half d` (alignment 2) and, in `block_q8_K`, `float d`
//! and `int16_t bsums[16]` (alignment 4 and 2). A `&[u8]` from an mmap'd GGUF
//! file is only as aligned as the file says (`general.alignment`, which a
//! hostile file controls), and Hearth's own scratch buffers are plain byte
//! vectors. Rather than fail or copy on a misaligned slice, the scalar fields
//! here are little-endian byte arrays wrapped in [`F16`], [`F32Le`] and
//! [`I16Le`]: every struct has alignment 1, so [`as_blocks`] succeeds on any
//! byte slice whose length is a whole number of blocks, without copying. The
//! accessors decode little-endian explicitly, which is also what makes
//! big-endian hosts read files correctly (GGUF is little-endian).
//!
//! The SIMD kernels never form references to blocks at all; they read through
//! raw pointers with unaligned loads at the byte offsets documented on each
//! struct.
//!
//! Absent: the i-quants (IQ*), TQ*, MXFP4/NVFP4 and Q1_0/Q2_0 blocks, which
//! `hearth-formats` does not accept either.

#![allow(non_camel_case_types)]

use bytemuck::{Pod, Zeroable};
use hearth_formats::GgmlType;

/// Elements in a K-quant super-block (ggml `QK_K`).
pub const QK_K: usize = 256;
/// Elements in a legacy (Q4_0 ... Q8_1) block (ggml `QK4_0` etc.).
pub const QK: usize = 32;

/// An IEEE-754 binary16 value stored little-endian, alignment 1.
#[derive(Clone, Copy, Default, PartialEq, Eq, Pod, Zeroable)]
#[repr(transparent)]
pub struct F16(pub [u8; 2]);

impl F16 {
    pub const ZERO: F16 = F16([0, 0]);

    #[inline(always)]
    pub fn from_bits(bits: u16) -> F16 {
        F16(bits.to_le_bytes())
    }
    #[inline(always)]
    pub fn to_bits(self) -> u16 {
        u16::from_le_bytes(self.0)
    }
    /// Exact widening conversion (every binary16 value is an f32 value).
    #[inline(always)]
    pub fn to_f32(self) -> f32 {
        crate::fp::f16_to_f32(self.to_bits())
    }
    /// Round-to-nearest-even narrowing, NaN made canonical exactly as
    /// ggml's `GGML_FP32_TO_FP16` does (see [`crate::fp::f32_to_f16`]).
    #[inline(always)]
    pub fn from_f32(x: f32) -> F16 {
        F16::from_bits(crate::fp::f32_to_f16(x))
    }
}

impl std::fmt::Debug for F16 {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}", self.to_f32())
    }
}

/// An f32 stored little-endian, alignment 1.
#[derive(Clone, Copy, Default, PartialEq, Eq, Pod, Zeroable)]
#[repr(transparent)]
pub struct F32Le(pub [u8; 4]);

impl F32Le {
    #[inline(always)]
    pub fn get(self) -> f32 {
        f32::from_le_bytes(self.0)
    }
    #[inline(always)]
    pub fn new(x: f32) -> F32Le {
        F32Le(x.to_le_bytes())
    }
}

impl std::fmt::Debug for F32Le {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}", self.get())
    }
}

/// An i16 stored little-endian, alignment 1.
#[derive(Clone, Copy, Default, PartialEq, Eq, Pod, Zeroable)]
#[repr(transparent)]
pub struct I16Le(pub [u8; 2]);

impl I16Le {
    #[inline(always)]
    pub fn get(self) -> i16 {
        i16::from_le_bytes(self.0)
    }
    #[inline(always)]
    pub fn new(x: i16) -> I16Le {
        I16Le(x.to_le_bytes())
    }
}

impl std::fmt::Debug for I16Le {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}", self.get())
    }
}

/// A quantized block type: its ggml type and element count.
pub trait Block: Pod {
    const TYPE: GgmlType;
    /// Elements one block encodes.
    const ELEMS: usize;
}

/// `x = d * (q - 8)`, q a 4-bit unsigned nibble. Element `j` (0..16) sits in
/// the LOW nibble of `qs[j]`, element `j + 16` in the HIGH nibble of `qs[j]`
/// (not the interleaved order a reader might guess).
/// Byte offsets: d 0, qs 2. 18 bytes.
#[derive(Clone, Copy, Debug, Default, Pod, Zeroable)]
#[repr(C)]
pub struct BlockQ4_0 {
    pub d: F16,
    pub qs: [u8; 16],
}

/// `x = d * q + m`, q 4-bit unsigned, same nibble order as [`BlockQ4_0`].
/// Offsets: d 0, m 2, qs 4. 20 bytes.
#[derive(Clone, Copy, Debug, Default, Pod, Zeroable)]
#[repr(C)]
pub struct BlockQ4_1 {
    pub d: F16,
    pub m: F16,
    pub qs: [u8; 16],
}

/// `x = d * (q - 16)`, q 5-bit: low 4 bits as in [`BlockQ4_0`], bit 4 of
/// element `j` (0..32) is bit `j` of the little-endian u32 `qh`.
/// Offsets: d 0, qh 2, qs 6. 22 bytes.
#[derive(Clone, Copy, Debug, Default, Pod, Zeroable)]
#[repr(C)]
pub struct BlockQ5_0 {
    pub d: F16,
    pub qh: [u8; 4],
    pub qs: [u8; 16],
}

/// `x = d * q + m`, q 5-bit laid out as in [`BlockQ5_0`].
/// Offsets: d 0, m 2, qh 4, qs 8. 24 bytes.
#[derive(Clone, Copy, Debug, Default, Pod, Zeroable)]
#[repr(C)]
pub struct BlockQ5_1 {
    pub d: F16,
    pub m: F16,
    pub qh: [u8; 4],
    pub qs: [u8; 16],
}

/// `x = d * q`, q signed 8-bit in element order.
/// Offsets: d 0, qs 2. 34 bytes.
#[derive(Clone, Copy, Debug, Default, Pod, Zeroable)]
#[repr(C)]
pub struct BlockQ8_0 {
    pub d: F16,
    pub qs: [i8; 32],
}

/// Activation block for Q4_1/Q5_1 dot products: `x = d * q`, plus
/// `s = d * sum(q)` (rounded to f16) so the weight's `m` term costs one
/// multiply per block. Offsets: d 0, s 2, qs 4. 36 bytes.
#[derive(Clone, Copy, Debug, Default, Pod, Zeroable)]
#[repr(C)]
pub struct BlockQ8_1 {
    pub d: F16,
    pub s: F16,
    pub qs: [i8; 32],
}

/// 2-bit K-quant: 16 sub-blocks of 16. `scales[j]` low nibble = scale,
/// high nibble = min of sub-block j; `x = d*sc*q - dmin*m`.
/// `qs`: for each 128-element half h, byte `32h + l` holds elements
/// `128h + l + 32k` in bits `2k..2k+2` (k = 0..4).
/// Offsets: scales 0, qs 16, d 80, dmin 82. 84 bytes.
#[derive(Clone, Copy, Debug, Pod, Zeroable)]
#[repr(C)]
pub struct BlockQ2_K {
    pub scales: [u8; 16],
    pub qs: [u8; 64],
    pub d: F16,
    pub dmin: F16,
}

/// 3-bit K-quant: 16 sub-blocks of 16, `x = d * (sc - 32) * (q - 4)` with
/// q = 2 low bits (`qs`, packed as in [`BlockQ2_K`]) + high bit from `hmask`
/// (bit k of `hmask[l]` is the high bit of element `32k + l`; a SET bit means
/// "no -4"). The sixteen 6-bit scales are packed in 12 bytes: low nibbles of
/// scales 0..8 in the low nibbles of bytes 0..8, of scales 8..16 in the high
/// nibbles of bytes 0..8; the top two bits of scale j sit in byte `8 + j%4`
/// at bit `2*(j/4)`. Offsets: hmask 0, qs 32, scales 96, d 108. 110 bytes.
#[derive(Clone, Copy, Debug, Pod, Zeroable)]
#[repr(C)]
pub struct BlockQ3_K {
    pub hmask: [u8; 32],
    pub qs: [u8; 64],
    pub scales: [u8; 12],
    pub d: F16,
}

/// 4-bit K-quant: 8 sub-blocks of 32, `x = d*sc*q - dmin*m`, with 6-bit
/// scales and mins packed in 12 bytes (see [`scale_min_k4`]). `qs`: for each
/// 64-element chunk c, bytes `32c..32c+32` hold elements `64c + l` in the low
/// nibble and `64c + 32 + l` in the high nibble.
/// Offsets: d 0, dmin 2, scales 4, qs 16. 144 bytes.
#[derive(Clone, Copy, Debug, Pod, Zeroable)]
#[repr(C)]
pub struct BlockQ4_K {
    pub d: F16,
    pub dmin: F16,
    pub scales: [u8; 12],
    pub qs: [u8; 128],
}

/// 5-bit K-quant: as [`BlockQ4_K`] plus a fifth bit: bit `2c` of `qh[l]` is
/// the high bit of element `64c + l`, bit `2c+1` that of `64c + 32 + l`.
/// Offsets: d 0, dmin 2, scales 4, qh 16, qs 48. 176 bytes.
#[derive(Clone, Copy, Debug, Pod, Zeroable)]
#[repr(C)]
pub struct BlockQ5_K {
    pub d: F16,
    pub dmin: F16,
    pub scales: [u8; 12],
    pub qh: [u8; 32],
    pub qs: [u8; 128],
}

/// 6-bit K-quant: 16 sub-blocks of 16, `x = d * scales[j] * (q - 32)`.
/// For each 128-element half h (ql offset 64h, qh offset 32h), with l in
/// 0..32: element `l` = low nibble of `ql[l]` | bits 0-1 of `qh[l]` << 4;
/// `l+32` = low nibble of `ql[l+32]` | bits 2-3; `l+64` = high nibble of
/// `ql[l]` | bits 4-5; `l+96` = high nibble of `ql[l+32]` | bits 6-7.
/// Offsets: ql 0, qh 128, scales 192, d 208. 210 bytes.
#[derive(Clone, Copy, Debug, Pod, Zeroable)]
#[repr(C)]
pub struct BlockQ6_K {
    pub ql: [u8; 128],
    pub qh: [u8; 64],
    pub scales: [i8; 16],
    pub d: F16,
}

/// Activation block for K-quant dot products: `x = d * q` with an f32 `d`,
/// plus `bsums[j]` = sum of `qs[16j..16j+16]` (used for the min/offset
/// terms). Offsets: d 0, qs 4, bsums 260. 292 bytes.
#[derive(Clone, Copy, Debug, Pod, Zeroable)]
#[repr(C)]
pub struct BlockQ8_K {
    pub d: F32Le,
    pub qs: [i8; 256],
    pub bsums: [I16Le; 16],
}

macro_rules! block_impl {
    ($t:ty, $ty:expr, $elems:expr) => {
        impl Block for $t {
            const TYPE: GgmlType = $ty;
            const ELEMS: usize = $elems;
        }
        // The struct must be exactly ggml's on-disk block.
        const _: () = assert!(std::mem::size_of::<$t>() == $ty.type_size());
        const _: () = assert!(std::mem::align_of::<$t>() == 1);
        const _: () = assert!($ty.block_size() == $elems);
    };
}

block_impl!(BlockQ4_0, GgmlType::Q4_0, QK);
block_impl!(BlockQ4_1, GgmlType::Q4_1, QK);
block_impl!(BlockQ5_0, GgmlType::Q5_0, QK);
block_impl!(BlockQ5_1, GgmlType::Q5_1, QK);
block_impl!(BlockQ8_0, GgmlType::Q8_0, QK);
block_impl!(BlockQ8_1, GgmlType::Q8_1, QK);
block_impl!(BlockQ2_K, GgmlType::Q2_K, QK_K);
block_impl!(BlockQ3_K, GgmlType::Q3_K, QK_K);
block_impl!(BlockQ4_K, GgmlType::Q4_K, QK_K);
block_impl!(BlockQ5_K, GgmlType::Q5_K, QK_K);
block_impl!(BlockQ6_K, GgmlType::Q6_K, QK_K);
block_impl!(BlockQ8_K, GgmlType::Q8_K, QK_K);

/// A byte slice that is not a whole number of blocks.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct BlockViewError {
    pub ty: GgmlType,
    pub len: usize,
}

impl std::fmt::Display for BlockViewError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{} bytes is not a whole number of {} blocks ({} bytes each)",
            self.len,
            self.ty,
            self.ty.type_size()
        )
    }
}

impl std::error::Error for BlockViewError {}

/// Views bytes as blocks without copying. Works at any address because every
/// block has alignment 1; fails only when the length is not a multiple of the
/// block size.
pub fn as_blocks<B: Block>(bytes: &[u8]) -> Result<&[B], BlockViewError> {
    bytemuck::try_cast_slice(bytes).map_err(|_| BlockViewError { ty: B::TYPE, len: bytes.len() })
}

/// Mutable counterpart of [`as_blocks`].
pub fn as_blocks_mut<B: Block>(bytes: &mut [u8]) -> Result<&mut [B], BlockViewError> {
    let len = bytes.len();
    bytemuck::try_cast_slice_mut(bytes).map_err(|_| BlockViewError { ty: B::TYPE, len })
}

/// The bytes of a block slice.
pub fn blocks_as_bytes<B: Block>(blocks: &[B]) -> &[u8] {
    bytemuck::cast_slice(blocks)
}

/// Scale and min of sub-block `j` (0..8) of a Q4_K/Q5_K block, unpacked from
/// the 12-byte 6-bit packing (ggml-quants.c `get_scale_min_k4`):
/// sub-blocks 0..4 keep their 6 bits in the low bits of bytes `j` (scale) and
/// `j+4` (min); sub-blocks 4..8 keep their low 4 bits in the nibbles of byte
/// `j+4` (scale low, min high) and their top 2 bits in bits 6-7 of bytes
/// `j-4` (scale) and `j` (min). Getting this wrong silently corrupts every
/// sub-block from 4 on while 0..4 still look right.
#[inline(always)]
pub fn scale_min_k4(j: usize, q: &[u8; 12]) -> (u8, u8) {
    if j < 4 {
        (q[j] & 63, q[j + 4] & 63)
    } else {
        ((q[j + 4] & 0xF) | ((q[j - 4] >> 6) << 4), (q[j + 4] >> 4) | ((q[j] >> 6) << 4))
    }
}

/// The sixteen 6-bit Q3_K scales, each in 0..64 (subtract 32 for the signed
/// scale). See [`BlockQ3_K`] for the packing.
#[inline(always)]
pub fn q3k_scales(s: &[u8; 12]) -> [u8; 16] {
    let mut out = [0u8; 16];
    for (j, o) in out.iter_mut().enumerate() {
        let low = if j < 8 { s[j] & 0xF } else { s[j - 8] >> 4 };
        let high = (s[8 + j % 4] >> (2 * (j / 4))) & 3;
        *o = low | (high << 4);
    }
    out
}

/// All 8 (scale, min) pairs of a Q4_K/Q5_K block.
#[inline(always)]
pub fn scales_mins_k4(q: &[u8; 12]) -> ([u8; 8], [u8; 8]) {
    let mut sc = [0u8; 8];
    let mut m = [0u8; 8];
    for j in 0..8 {
        (sc[j], m[j]) = scale_min_k4(j, q);
    }
    (sc, m)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn views_work_at_odd_addresses() {
        let buf = [0u8; 1 + 2 * 18];
        let v = as_blocks::<BlockQ4_0>(&buf[1..]).unwrap();
        assert_eq!(v.len(), 2);
        assert!(as_blocks::<BlockQ4_0>(&buf[1..36]).is_err());
        let buf = [0u8; 3 + 292];
        assert_eq!(as_blocks::<BlockQ8_K>(&buf[3..]).unwrap().len(), 1);
    }

    #[test]
    fn field_offsets_match_ggml() {
        // Offsets from ggml-common.h, computed by hand from the C structs.
        let b = BlockQ6_K::zeroed();
        let base = &b as *const _ as usize;
        assert_eq!(&b.qh as *const _ as usize - base, 128);
        assert_eq!(&b.scales as *const _ as usize - base, 192);
        assert_eq!(&b.d as *const _ as usize - base, 208);
        let b = BlockQ3_K::zeroed();
        let base = &b as *const _ as usize;
        assert_eq!(&b.scales as *const _ as usize - base, 96);
        assert_eq!(&b.d as *const _ as usize - base, 108);
        let b = BlockQ8_K::zeroed();
        let base = &b as *const _ as usize;
        assert_eq!(&b.bsums as *const _ as usize - base, 260);
        let b = BlockQ2_K::zeroed();
        let base = &b as *const _ as usize;
        assert_eq!(&b.d as *const _ as usize - base, 80);
        let b = BlockQ5_K::zeroed();
        let base = &b as *const _ as usize;
        assert_eq!(&b.qs as *const _ as usize - base, 48);
    }

    #[test]
    fn scale_min_k4_round_trips_all_values() {
        // Pack 8 arbitrary 6-bit (scale, min) pairs the way quantize_row_q4_K_ref
        // does and check unpacking returns them.
        let sc: [u8; 8] = [0, 63, 17, 42, 33, 1, 62, 31];
        let mn: [u8; 8] = [63, 0, 5, 60, 48, 15, 16, 47];
        let mut q = [0u8; 12];
        for j in 0..8 {
            if j < 4 {
                q[j] = sc[j];
                q[j + 4] = mn[j];
            } else {
                q[j + 4] = (sc[j] & 0xF) | ((mn[j] & 0xF) << 4);
                q[j - 4] |= (sc[j] >> 4) << 6;
                q[j] |= (mn[j] >> 4) << 6;
            }
        }
        let (s2, m2) = scales_mins_k4(&q);
        assert_eq!(s2, sc);
        assert_eq!(m2, mn);
    }
}
