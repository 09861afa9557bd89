//! `testdata/models/<fixture>/expected-<VARIANT>.json`: what llama.cpp produced
//! for one variant of a fixture.
//!
//! Per prompt: the prompt token ids (tokenized like llama-simple: add_special and
//! parse_special on), the greedy continuation (at least 40 tokens, or up to and
//! including an end-of-generation token), the top-1 minus top-2 margin of each
//! greedy step, and the first-step logits (after the whole prompt) for the top 100
//! ids plus a fixed seeded sample of 2000 ids. Plus llama-simple runs with their
//! exact stdout bytes.
//!
//! The reference run used flash attention OFF, an F16 KV cache, 2 threads, one
//! batch for the whole prompt and the plain (not repacked) weight layout: llama.cpp's
//! `use_extra_bufts` off (see `settings`). `expected-F32-kvf32.json` is the F32
//! model with an F32 KV cache: no F16 rounding anywhere, so the tight-tolerance
//! reference for the forward-pass maths. llama-simple runs with flash
//! attention on (its default resolves to on for the CPU backend), whose F16
//! accumulation moves logits by up to a few tenths here; only runs with
//! `matches_greedy` are byte-for-byte targets for a non-flash-attention engine.

use crate::TestkitError;
use base64::Engine as _;
use serde::Deserialize;
use std::path::Path;

#[derive(Debug, Clone, Deserialize)]
pub struct Expected {
    pub fixture: String,
    pub variant: String,
    /// The libllama build's `llama_print_system_info()`.
    pub system_info: String,
    /// Context parameters of the reference run, as recorded.
    pub settings: serde_json::Value,
    pub n_vocab: u32,
    /// llama.cpp's `llama_vocab_get_add_bos` for this vocabulary.
    pub add_bos: bool,
    /// Every id llama.cpp's `llama_vocab_is_eog` accepts.
    pub eog_ids: Vec<u32>,
    /// The ids whose first-step logits are recorded for every prompt (sorted).
    pub sample_ids: Vec<u32>,
    pub prompts: Vec<PromptCase>,
    /// Absent for the F32-KV-cache reference (llama-simple cannot select the cache type).
    pub llama_simple: Option<LlamaSimple>,
}

#[derive(Debug, Clone, Deserialize)]
pub struct PromptCase {
    /// `short`, `long`, `unicode` or `special`.
    pub kind: String,
    pub text: String,
    pub prompt_ids: Vec<u32>,
    /// Greedy continuation; ends with the EOG id when `stopped_at_eog`.
    pub generated_ids: Vec<u32>,
    pub stopped_at_eog: bool,
    /// Top-1 minus top-2 logit before each generated token (rounded to 1e-4).
    pub margins: Vec<f64>,
    /// The second-best id at each greedy step (ties broken by the lower id).
    pub runner_up_ids: Vec<u32>,
    pub min_margin: f64,
    generated_text_b64: String,
    pub first_logits: FirstLogits,
    /// How far llama.cpp moves from itself on this prompt when the prompt is evaluated
    /// one token per micro-batch (see [`SelfCheck`]).
    pub self_check: SelfCheck,
    /// The same, when llama.cpp's repacked weight layouts (its default on AVX2/AVX-512
    /// machines, off in the reference) are enabled.
    pub repack_check: SelfCheck,
}

/// llama.cpp against itself: the same prompt and model through other kernels (another
/// float summation order), described by `method`. A floor for any tolerance: an engine
/// cannot be expected to agree with llama.cpp more closely than llama.cpp agrees with
/// itself unless it reproduces the reference kernels' arithmetic exactly.
#[derive(Debug, Clone, Deserialize)]
pub struct SelfCheck {
    pub method: String,
    pub first_logits_max_abs_diff: f64,
    pub tol: f64,
    /// How many of the n_vocab first-step logits moved by more than `tol`.
    pub first_logits_n_over_tol: u32,
    /// Leading greedy tokens that stayed the same.
    pub greedy_tokens_agreeing: u32,
    pub greedy_len: u32,
}

impl PromptCase {
    /// The concatenated pieces (special tokens rendered) of `generated_ids`.
    pub fn generated_bytes(&self) -> Result<Vec<u8>, TestkitError> {
        decode_b64(&self.generated_text_b64)
    }
}

#[derive(Debug, Clone, Deserialize)]
pub struct FirstLogits {
    pub argmax: u32,
    /// The 100 largest logits, largest first (ties by id).
    pub top_ids: Vec<u32>,
    pub top_logits: Vec<f32>,
    /// Logits of `Expected::sample_ids`, same order.
    pub sample_logits: Vec<f32>,
    /// log(sum(exp(logits))) over the whole vocabulary (f64, rounded to 1e-5).
    pub logsumexp: f64,
    pub mean: f64,
    pub std: f64,
}

#[derive(Debug, Clone, Deserialize)]
pub struct LlamaSimple {
    pub note: String,
    pub runs: Vec<SimpleRun>,
}

#[derive(Debug, Clone, Deserialize)]
pub struct SimpleRun {
    pub prompt_kind: String,
    /// `MODEL` stands for the variant's GGUF path.
    pub argv: Vec<String>,
    stdout_b64: String,
    /// stdout begins with this many bytes of prompt echo.
    pub prompt_echo_len: usize,
    /// stdout equals echo + pieces of the reference greedy tokens + "\n".
    pub matches_greedy: bool,
    /// How many leading greedy tokens llama-simple reproduced.
    pub greedy_tokens_agreeing: u32,
}

impl SimpleRun {
    pub fn stdout(&self) -> Result<Vec<u8>, TestkitError> {
        decode_b64(&self.stdout_b64)
    }
}

impl Expected {
    pub fn load(path: impl AsRef<Path>) -> Result<Expected, TestkitError> {
        let path = path.as_ref();
        let text = std::fs::read_to_string(path).map_err(|source| TestkitError::Io { path: path.to_path_buf(), source })?;
        let e: Expected =
            serde_json::from_str(&text).map_err(|source| TestkitError::Json { path: path.to_path_buf(), source })?;
        for p in &e.prompts {
            let l = &p.first_logits;
            if l.top_ids.len() != l.top_logits.len()
                || l.sample_logits.len() != e.sample_ids.len()
                || p.margins.len() != p.generated_ids.len()
                || p.runner_up_ids.len() != p.generated_ids.len()
            {
                return Err(TestkitError::Format(format!("{}: prompt {}: arrays disagree in length", path.display(), p.kind)));
            }
        }
        Ok(e)
    }

    /// The KV cache type of the reference run (`F16` or `F32`).
    pub fn kv_cache(&self) -> Option<&str> {
        self.settings.get("kv_cache").and_then(|v| v.as_str())
    }

    pub fn prompt(&self, kind: &str) -> Option<&PromptCase> {
        self.prompts.iter().find(|p| p.kind == kind)
    }

    /// Every recorded first-step logit of `prompt` as `(id, logit)`: the top ids, then
    /// the sample ids not already among them.
    pub fn reference_logits<'a>(&'a self, prompt: &'a PromptCase) -> impl Iterator<Item = (u32, f32)> + 'a {
        let l = &prompt.first_logits;
        let top = l.top_ids.iter().copied().zip(l.top_logits.iter().copied());
        let sample = self
            .sample_ids
            .iter()
            .copied()
            .zip(l.sample_logits.iter().copied())
            .filter(move |(id, _)| !l.top_ids.contains(id));
        top.chain(sample)
    }
}

fn decode_b64(s: &str) -> Result<Vec<u8>, TestkitError> {
    base64::engine::general_purpose::STANDARD
        .decode(s)
        .map_err(|e| TestkitError::Format(format!("bad base64: {e}")))
}
