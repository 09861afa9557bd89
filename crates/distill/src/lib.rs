//! Training on the CPU, with no ML framework.

pub mod bpe;
pub mod data;
pub mod dedup;
pub mod demo;
pub mod error;
pub mod eval;
pub mod exec;
pub mod foldoc;
pub mod generate;
pub mod export;
pub mod gemm;
pub mod kd;
pub mod lora;
pub mod net;
pub mod optim;
pub mod real;
pub mod rng;
pub mod spec;
pub mod teacher;
pub mod st;
pub mod trainer;

pub use error::{DistillError, Result};
