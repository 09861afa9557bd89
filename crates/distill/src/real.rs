//! The scalar type the training code is written over.
//!
//! Training runs in `f32`. The same forward and backward code also runs in
//! `f64`, which is what makes the gradient checks meaningful: central finite
//! differences in f64 have a truncation error of O(h²) and a rounding error
//! of O(ε/h) with ε ≈ 1e-16, so with h ≈ 1e-5 they are accurate to ~1e-9 and
//! can judge the analytic gradients of the very code that trains.

use crate::gemm::{self, MatRef};
use std::fmt::Debug;
use std::iter::Sum;
use std::ops::{Add, AddAssign, Div, DivAssign, Mul, MulAssign, Neg, Sub, SubAssign};

/// A floating-point scalar: `f32` for training, `f64` for gradient checks.
pub trait Real:
    Copy
    + Send
    + Sync
    + Default
    + PartialOrd
    + Debug
    + 'static
    + Add<Output = Self>
    + Sub<Output = Self>
    + Mul<Output = Self>
    + Div<Output = Self>
    + Neg<Output = Self>
    + AddAssign
    + SubAssign
    + MulAssign
    + DivAssign
    + Sum
{
    const ZERO: Self;
    const ONE: Self;
    fn from_f64(x: f64) -> Self;
    fn to_f64(self) -> f64;
    fn from_f32(x: f32) -> Self;
    fn to_f32(self) -> f32;
    fn exp(self) -> Self;
    fn ln(self) -> Self;
    fn sqrt(self) -> Self;
    fn tanh(self) -> Self;
    fn max(self, other: Self) -> Self;

    /// `C[m0..m1, n0..n1] (+)= A·B` for one block, on the calling thread.
    ///
    /// # Safety
    /// `c` must point at a buffer holding row `m1 - 1` at stride `ldc` with
    /// at least `n1` columns, and no other thread may touch that block.
    #[allow(clippy::too_many_arguments)]
    unsafe fn gemm_block(
        rows: (usize, usize),
        cols: (usize, usize),
        k: usize,
        a: MatRef<'_, Self>,
        b: MatRef<'_, Self>,
        c: *mut Self,
        ldc: usize,
        accumulate: bool,
    );
}

impl Real for f32 {
    const ZERO: f32 = 0.0;
    const ONE: f32 = 1.0;
    #[inline(always)]
    fn from_f64(x: f64) -> f32 {
        x as f32
    }
    #[inline(always)]
    fn to_f64(self) -> f64 {
        self as f64
    }
    #[inline(always)]
    fn from_f32(x: f32) -> f32 {
        x
    }
    #[inline(always)]
    fn to_f32(self) -> f32 {
        self
    }
    #[inline(always)]
    fn exp(self) -> f32 {
        f32::exp(self)
    }
    #[inline(always)]
    fn ln(self) -> f32 {
        f32::ln(self)
    }
    #[inline(always)]
    fn sqrt(self) -> f32 {
        f32::sqrt(self)
    }
    #[inline(always)]
    fn tanh(self) -> f32 {
        f32::tanh(self)
    }
    #[inline(always)]
    fn max(self, other: f32) -> f32 {
        f32::max(self, other)
    }
    unsafe fn gemm_block(
        rows: (usize, usize),
        cols: (usize, usize),
        k: usize,
        a: MatRef<'_, f32>,
        b: MatRef<'_, f32>,
        c: *mut f32,
        ldc: usize,
        accumulate: bool,
    ) {
        gemm::sgemm_block(gemm::selected_kernel(), rows, cols, k, a, b, c, ldc, accumulate)
    }
}

impl Real for f64 {
    const ZERO: f64 = 0.0;
    const ONE: f64 = 1.0;
    #[inline(always)]
    fn from_f64(x: f64) -> f64 {
        x
    }
    #[inline(always)]
    fn to_f64(self) -> f64 {
        self
    }
    #[inline(always)]
    fn from_f32(x: f32) -> f64 {
        x as f64
    }
    #[inline(always)]
    fn to_f32(self) -> f32 {
        self as f32
    }
    #[inline(always)]
    fn exp(self) -> f64 {
        f64::exp(self)
    }
    #[inline(always)]
    fn ln(self) -> f64 {
        f64::ln(self)
    }
    #[inline(always)]
    fn sqrt(self) -> f64 {
        f64::sqrt(self)
    }
    #[inline(always)]
    fn tanh(self) -> f64 {
        f64::tanh(self)
    }
    #[inline(always)]
    fn max(self, other: f64) -> f64 {
        f64::max(self, other)
    }
    unsafe fn gemm_block(
        rows: (usize, usize),
        cols: (usize, usize),
        k: usize,
        a: MatRef<'_, f64>,
        b: MatRef<'_, f64>,
        c: *mut f64,
        ldc: usize,
        accumulate: bool,
    ) {
        gemm::reference_block(rows, cols, k, a, b, c, ldc, accumulate)
    }
}
