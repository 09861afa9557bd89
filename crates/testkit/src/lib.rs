//! Dev-only test support: Hearth's tiny random-weight model fixtures.
//!
//! No real model weights can be shipped, so each fixture in `testdata/models/` is a
//! small *recipe*: the exact architecture of a real model family (Llama-3, TinyLlama,
//! SmolLM, Qwen2, Qwen3) at toy size, with a real vocabulary from `testdata/vocab/`,
//! and weights drawn from a counter-based PRNG ([`prng`]) so that
//! `tools/fixtures/gen_models.py` (numpy) and this crate produce the same F32 bits.
//! Next to each recipe, `expected-<VARIANT>.json` holds llama.cpp's greedy tokens and
//! first-step logits for that variant ([`Expected`]).
//!
//! [`build::variant_gguf`] turns a recipe back into the GGUF file llama.cpp ran:
//! [`Recipe::f32_tensors`] -> quantize each tensor to the type llama.cpp chose
//! (hearth-kernels' reference quantizers) -> [`Variant::check_tensor`] proves the
//! bytes are the ones llama.cpp ran -> write with hearth-formats' `GgufWriter`.
//! The parity tests (`crates/engine/tests/fidelity.rs`,
//! `crates/cli/tests/run_parity.rs`) run that file and compare with
//! [`Recipe::expected`]; see `docs/fidelity.md`.
//!
//! Deliberately absent: inference (hearth-engine owns it), and any network access.

pub mod build;
pub mod expected;
pub mod prng;
pub mod recipe;

pub use expected::{Expected, FirstLogits, LlamaSimple, PromptCase, SelfCheck, SimpleRun};
pub use recipe::{HashMismatch, Hparams, Init, MetaEntry, Recipe, TensorSpec, Variant, VariantTensor};

use sha2::{Digest, Sha256};
use std::path::PathBuf;

/// The fixtures this repository ships, by directory name.
pub const FIXTURES: [&str; 5] = ["llama3", "llama-spm", "smollm-gpt2", "qwen2", "qwen3"];

/// The variants each fixture records, in llama.cpp ftype terms.
pub const VARIANTS: [&str; 5] = ["F32", "F16", "Q8_0", "Q4_0", "Q4_K_M"];

/// The extra reference of each fixture: the F32 model with an F32 KV cache
/// (`expected-F32-kvf32.json`), for `Recipe::expected`.
pub const F32_KV_F32: &str = "F32-kvf32";

#[derive(Debug, thiserror::Error)]
pub enum TestkitError {
    #[error("cannot read {path}: {source}")]
    Io { path: PathBuf, source: std::io::Error },
    #[error("{path}: {source}")]
    Json { path: PathBuf, source: serde_json::Error },
    #[error(transparent)]
    Gguf(#[from] hearth_formats::GgufError),
    #[error("{0}")]
    Format(String),
    #[error(transparent)]
    Hash(#[from] HashMismatch),
}

/// The repository root (this crate lives in `<root>/crates/testkit`).
pub fn repo_root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("..").join("..")
}

/// `<root>/testdata/models`.
pub fn models_dir() -> PathBuf {
    repo_root().join("testdata").join("models")
}

/// Where the generator leaves the GGUF files themselves (`$HEARTH_FIXTURE_GGUFS`,
/// default `/work/fixture-ggufs`): `<dir>/<fixture>/<fixture>-<VARIANT>.gguf`.
/// They are not in the repository; tests that need them are `#[ignore]`d.
pub fn gguf_scratch_path(fixture: &str, variant: &str) -> PathBuf {
    let dir = std::env::var_os("HEARTH_FIXTURE_GGUFS").map(PathBuf::from).unwrap_or_else(|| PathBuf::from("/work/fixture-ggufs"));
    dir.join(fixture).join(format!("{fixture}-{variant}.gguf"))
}

/// Lower-case hex SHA-256.
pub fn sha256_hex(bytes: &[u8]) -> String {
    let digest = Sha256::digest(bytes);
    let mut s = String::with_capacity(64);
    for b in digest {
        s.push_str(&format!("{b:02x}"));
    }
    s
}

/// Little-endian bytes of an F32 slice (the GGUF data layout).
pub fn f32_le_bytes(v: &[f32]) -> Vec<u8> {
    let mut out = Vec::with_capacity(v.len() * 4);
    for x in v {
        out.extend_from_slice(&x.to_le_bytes());
    }
    out
}
