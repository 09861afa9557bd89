//! `hearth run`: like llama.cpp's `llama-simple`, prints exactly the pieces of
//! the generated tokens (no prompt echo, no BOS text, nothing added), then
//! timings on stderr.

use anyhow::{Context, Result};
use hearth_engine::{Engine, EngineConfig, Flow, GenerateRequest, SamplerConfig};
use std::io::Write;
use std::path::PathBuf;

#[derive(clap::Args)]
pub struct RunArgs {
    /// Model file (.gguf) or Hugging Face model folder.
    /// Default: $HEARTH_MODEL, else the embedded demo model (foldoc-demo).
    pub model: Option<PathBuf>,
    /// The prompt.
    #[arg(short = 'p', long)]
    pub prompt: String,
    /// Tokens to generate (fewer if an end-of-generation token comes first).
    #[arg(short = 'n', long = "n-predict", default_value_t = 128)]
    pub n_predict: usize,
    #[command(flatten)]
    pub sampling: SamplingArgs,
    /// Worker threads (default: all cores).
    #[arg(short = 't', long, default_value_t = 0)]
    pub threads: usize,
    /// Keep generating past end-of-generation tokens.
    #[arg(long)]
    pub ignore_eos: bool,
}

pub fn main(mut a: RunArgs) -> Result<()> {
    let model_path = crate::default_model::resolve(a.model.take().as_deref())?;
    let sampler = a.sampling.config(0)?;
    let seed = sampler.seed;
    let engine = Engine::load(&model_path, EngineConfig { threads: a.threads, ..Default::default() })
        .with_context(|| format!("cannot load {}", model_path.display()))?;
    let prompt = engine.tokenize(&a.prompt, true, true);
    anyhow::ensure!(!prompt.is_empty(), "the prompt is empty");
    let n_ctx = prompt.len() + a.n_predict.saturating_sub(1);
    let limit = engine.model().config().n_ctx_train;
    anyhow::ensure!(
        n_ctx <= limit,
        "context overflow: {} prompt tokens + {} to generate exceed the model's context of {limit} tokens",
        prompt.len(),
        a.n_predict
    );
    let mut session = engine.new_session(n_ctx.max(1));
    let req = GenerateRequest { prompt, max_tokens: a.n_predict, sampler, ignore_eos: a.ignore_eos };
    let stdout = std::io::stdout();
    let mut out = stdout.lock();
    let mut io_err = None;
    let stats = engine.generate(&mut session, &req, &mut |ev| {
        if let Err(e) = out.write_all(ev.piece).and_then(|_| out.flush()) {
            io_err = Some(e);
            return Flow::Stop;
        }
        Flow::Continue
    })?;
    if let Some(e) = io_err {
        if e.kind() != std::io::ErrorKind::BrokenPipe {
            return Err(e).context("writing to stdout");
        }
    }
    eprintln!();
    eprintln!(
        "hearth: seed {seed}, threads {}, prompt {} tokens ({} cached) at {:.1} tok/s, time to first token {:.1} ms, generated {} tokens at {:.1} tok/s",
        engine.n_threads(),
        stats.prompt_tokens,
        stats.cached_tokens,
        stats.prompt_tok_per_s(),
        stats.time_to_first_token.as_secs_f64() * 1e3,
        stats.generated_tokens,
        stats.gen_tok_per_s()
    );
    Ok(())
}

/// Sampling flags shared by `run` and `chat` (llama.cpp's names and defaults).
#[derive(clap::Args)]
pub struct SamplingArgs {
    /// Sampling temperature; 0 = greedy.
    #[arg(long, default_value_t = 0.8)]
    pub temp: f32,
    /// Seed for sampling (default: random, printed to stderr).
    #[arg(long)]
    pub seed: Option<u64>,
    #[arg(long, default_value_t = 40)]
    pub top_k: usize,
    #[arg(long, default_value_t = 0.95)]
    pub top_p: f32,
    #[arg(long, default_value_t = 0.05)]
    pub min_p: f32,
    #[arg(long, default_value_t = 1.0)]
    pub repeat_penalty: f32,
    #[arg(long, default_value_t = 0.0)]
    pub presence_penalty: f32,
    #[arg(long, default_value_t = 0.0)]
    pub frequency_penalty: f32,
}

impl SamplingArgs {
    /// The sampler settings; `turn` varies the seed between chat turns.
    pub fn config(&self, turn: u64) -> Result<SamplerConfig> {
        let seed = self.seed.unwrap_or_else(random_seed).wrapping_add(turn);
        let cfg = SamplerConfig {
            temperature: self.temp,
            top_k: self.top_k,
            top_p: self.top_p,
            min_p: self.min_p,
            repeat_penalty: self.repeat_penalty,
            presence_penalty: self.presence_penalty,
            frequency_penalty: self.frequency_penalty,
            seed,
            ..Default::default()
        };
        cfg.validate().map_err(anyhow::Error::msg)?;
        Ok(cfg)
    }
}

/// A seed for when the user gives none: time and address entropy, printed so
/// the run can be reproduced with `--seed`.
fn random_seed() -> u64 {
    use std::hash::{BuildHasher, Hasher};
    let mut h = std::collections::hash_map::RandomState::new().build_hasher();
    h.write_u128(std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_nanos()).unwrap_or(0));
    h.finish() & 0xFFFF_FFFF
}
