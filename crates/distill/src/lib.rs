//! Training on the CPU, with no ML framework.

pub mod error;
pub mod exec;
pub mod gemm;
pub mod net;
pub mod real;
pub mod rng;

pub use error::{DistillError, Result};
