//! The engine: a loaded model with its tokenizer, sessions that own a KV
//! cache, and generation as a stream of token events.
//!
//! The interface is deliberately narrow — a request in, token events out —
//! so the CLI, the server's scheduler and the distillation tooling all drive
//! models the same way.
//!
//! Deliberately absent here: HTTP, chat templates (hearth-chat), routing.

pub mod chat;
pub mod lora;
pub mod sampler;
pub mod scheduler;

use hearth_formats::GgufFile;
use hearth_models::{Decoder, KvCache, KvType, Logits, ModelConfig, Scratch, SeqInput, ThreadPool};
use hearth_tokenizer::{EncodeOptions, Tokenizer};
pub use sampler::{Sampler, SamplerConfig};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

#[derive(Debug, thiserror::Error)]
pub enum EngineError {
    #[error("{path}: {source}")]
    Load { path: PathBuf, source: Box<dyn std::error::Error + Send + Sync> },
    #[error(transparent)]
    Model(#[from] hearth_models::ModelError),
    #[error("the prompt is empty (after tokenization)")]
    EmptyPrompt,
    #[error("chat template: {0}")]
    Template(String),
    #[error("invalid sampling parameters: {0}")]
    Sampling(String),
    #[error("the prompt has {prompt} tokens and {requested} more were requested, but the context holds {n_ctx}")]
    ContextOverflow { prompt: usize, requested: usize, n_ctx: usize },
}

pub type Result<T> = std::result::Result<T, EngineError>;

/// Engine settings.
#[derive(Clone, Debug)]
pub struct EngineConfig {
    /// Worker threads (0 = all cores).
    pub threads: usize,
    /// Tokens evaluated per forward call while reading a prompt.
    pub n_batch: usize,
    /// Element type of cached keys (llama.cpp `--cache-type-k`).
    pub cache_type_k: KvType,
    /// Element type of cached values (llama.cpp `--cache-type-v`).
    pub cache_type_v: KvType,
}

impl Default for EngineConfig {
    fn default() -> Self {
        EngineConfig { threads: 0, n_batch: 512, cache_type_k: KvType::F16, cache_type_v: KvType::F16 }
    }
}

/// A model and its tokenizer, shareable between sessions.
pub struct Model {
    pub decoder: Decoder,
    pub tokenizer: Tokenizer,
    pub file: Arc<GgufFile>,
    pub path: PathBuf,
}

impl Model {
    /// Loads a GGUF model file or a Hugging Face model folder (converted in
    /// memory to the GGUF llama.cpp's converter would write, see
    /// `hearth_models::hf`).
    pub fn load(path: &Path) -> Result<Model> {
        let err = |e: Box<dyn std::error::Error + Send + Sync>| EngineError::Load { path: path.to_path_buf(), source: e };
        let file = Arc::new(hearth_models::hf::open(path).map_err(|e| err(Box::new(e)))?);
        let decoder = hearth_models::load_gguf(Arc::clone(&file)).map_err(|e| err(Box::new(e)))?;
        let tokenizer = Tokenizer::from_gguf(&file).map_err(|e| err(Box::new(e)))?;
        if tokenizer.n_vocab() != decoder.cfg.n_vocab {
            return Err(err(format!(
                "tokenizer has {} tokens but the model's vocabulary is {}",
                tokenizer.n_vocab(),
                decoder.cfg.n_vocab
            )
            .into()));
        }
        Ok(Model { decoder, tokenizer, file, path: path.to_path_buf() })
    }

    pub fn config(&self) -> &ModelConfig {
        &self.decoder.cfg
    }

    /// This model with a PEFT LoRA adapter merged into owned copies of the
    /// adapted matrices; everything else is shared ([`lora`]).
    pub fn with_adapter(&self, adapter: &lora::PeftAdapter) -> Result<Model> {
        let decoder = adapter.merge_into(&self.decoder).map_err(|e| EngineError::Load { path: adapter.path.clone(), source: Box::new(e) })?;
        // The tokenizer is not `Clone`; it is rebuilt from the same file.
        let tokenizer = Tokenizer::from_gguf(&self.file).map_err(|e| EngineError::Load { path: self.path.clone(), source: Box::new(e) })?;
        Ok(Model { decoder, tokenizer, file: Arc::clone(&self.file), path: self.path.clone() })
    }

    /// Chat template embedded in the file, if any.
    pub fn chat_template(&self) -> Option<&str> {
        self.file.get_str("tokenizer.chat_template").ok().flatten()
    }
}

/// One conversation's state: its KV cache and the tokens it holds.
pub struct Session {
    cache: KvCache,
    tokens: Vec<u32>,
}

impl Session {
    pub fn tokens(&self) -> &[u32] {
        &self.tokens
    }

    pub fn n_ctx(&self) -> usize {
        self.cache.n_ctx()
    }

    pub fn kv_bytes(&self) -> usize {
        self.cache.bytes()
    }

    /// Drops everything after the first `n` tokens.
    pub fn truncate(&mut self, n: usize) {
        self.tokens.truncate(n);
        self.cache.truncate(n);
    }
}

/// What to generate.
#[derive(Clone, Debug)]
pub struct GenerateRequest {
    pub prompt: Vec<u32>,
    /// Maximum new tokens.
    pub max_tokens: usize,
    pub sampler: SamplerConfig,
    /// Keep going past end-of-generation tokens.
    pub ignore_eos: bool,
}

/// Why generation stopped.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FinishReason {
    /// An end-of-generation token was sampled (not emitted).
    Stop,
    /// `max_tokens` reached.
    Length,
    /// The event callback asked to stop (stop string, client gone).
    Cancelled,
}

/// One generated token.
#[derive(Clone, Debug)]
pub struct TokenEvent<'a> {
    pub id: u32,
    /// `token_to_piece(id, special = true)`: exactly what llama.cpp prints.
    pub piece: &'a [u8],
    /// The logits the token was drawn from (after no processing), for logprobs.
    pub logits: &'a [f32],
}

/// What the callback wants next.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Flow {
    Continue,
    Stop,
}

/// Timings and counts of one generation.
#[derive(Clone, Debug, Default)]
pub struct GenerationStats {
    pub prompt_tokens: usize,
    /// Prompt tokens found already in the session's cache.
    pub cached_tokens: usize,
    pub prompt_time: Duration,
    pub time_to_first_token: Duration,
    pub generated_tokens: usize,
    /// Time from the first sampled token to the last.
    pub generation_time: Duration,
    pub finish: Option<FinishReason>,
}

impl GenerationStats {
    pub fn prompt_tok_per_s(&self) -> f64 {
        let n = (self.prompt_tokens - self.cached_tokens) as f64;
        n / self.prompt_time.as_secs_f64().max(1e-9)
    }

    /// Decode speed: tokens after the first over the time they took.
    pub fn gen_tok_per_s(&self) -> f64 {
        if self.generated_tokens <= 1 {
            return 0.0;
        }
        (self.generated_tokens - 1) as f64 / self.generation_time.as_secs_f64().max(1e-9)
    }
}

/// A model plus the threads and buffers that run it.
pub struct Engine {
    model: Arc<Model>,
    pool: ThreadPool,
    scratch: Mutex<Scratch>,
    cfg: EngineConfig,
}

impl Engine {
    pub fn new(model: Arc<Model>, cfg: EngineConfig) -> Engine {
        Engine { model, pool: ThreadPool::new(cfg.threads), scratch: Mutex::new(Scratch::default()), cfg }
    }

    pub fn load(path: &Path, cfg: EngineConfig) -> Result<Engine> {
        Ok(Engine::new(Arc::new(Model::load(path)?), cfg))
    }

    pub fn model(&self) -> &Arc<Model> {
        &self.model
    }

    /// A new engine (own thread pool) over this engine's model with the PEFT
    /// adapter in `dir` merged in; the base engine is unchanged.
    pub fn with_adapter(&self, dir: &Path) -> Result<Engine> {
        let adapter = lora::PeftAdapter::open(dir).map_err(|e| EngineError::Load { path: dir.to_path_buf(), source: Box::new(e) })?;
        Ok(Engine::new(Arc::new(self.model.with_adapter(&adapter)?), self.cfg.clone()))
    }

    pub fn tokenizer(&self) -> &Tokenizer {
        &self.model.tokenizer
    }

    pub fn n_threads(&self) -> usize {
        self.pool.n_threads()
    }

    /// A new session holding up to `n_ctx` positions (capped at the model's
    /// training context).
    pub fn new_session(&self, n_ctx: usize) -> Session {
        let n_ctx = n_ctx.min(self.model.config().n_ctx_train).max(1);
        Session { cache: KvCache::new(self.model.config(), n_ctx, self.cfg.cache_type_k, self.cfg.cache_type_v), tokens: Vec::new() }
    }

    /// Tokenizes like llama.cpp's examples (`add_special`, `parse_special`).
    pub fn tokenize(&self, text: &str, add_special: bool, parse_special: bool) -> Vec<u32> {
        self.model.tokenizer.encode(text, EncodeOptions { add_special, parse_special })
    }

    /// Appends `tokens` to the session; fills `logits` with the last token's.
    pub fn eval(&self, session: &mut Session, tokens: &[u32], logits: &mut Vec<f32>) -> Result<()> {
        let mut scratch = self.scratch.lock().unwrap_or_else(|e| e.into_inner());
        let n_batch = self.cfg.n_batch.max(1);
        let mut done = 0;
        while done < tokens.len() {
            let end = (done + n_batch).min(tokens.len());
            let chunk = &tokens[done..end];
            let want = if end == tokens.len() { Logits::Last } else { Logits::None };
            let mut seq = [SeqInput { tokens: chunk, cache: &mut session.cache, logits: want, out: logits }];
            self.model.decoder.forward(&mut seq, &self.pool, &mut scratch)?;
            session.tokens.extend_from_slice(chunk);
            done = end;
        }
        Ok(())
    }

    /// Runs a whole batch of sequences through one forward pass (the
    /// server's scheduler uses this to share decode steps).
    pub fn forward_batch(&self, seqs: &mut [SeqInput<'_>]) -> Result<()> {
        let mut scratch = self.scratch.lock().unwrap_or_else(|e| e.into_inner());
        self.model.decoder.forward(seqs, &self.pool, &mut scratch)?;
        Ok(())
    }

    /// Generates from `req.prompt`, reusing whatever prefix of it the session
    /// already holds, and calls `on_token` for each new token.
    pub fn generate(
        &self,
        session: &mut Session,
        req: &GenerateRequest,
        on_token: &mut dyn FnMut(TokenEvent<'_>) -> Flow,
    ) -> Result<GenerationStats> {
        req.sampler.validate().map_err(EngineError::Sampling)?;
        if req.prompt.is_empty() {
            return Err(EngineError::EmptyPrompt);
        }
        let n_ctx = session.n_ctx();
        // llama-simple's budget: the last generated token is never decoded, so
        // prompt + max_tokens - 1 positions suffice.
        if req.prompt.len() + req.max_tokens.saturating_sub(1) > n_ctx {
            return Err(EngineError::ContextOverflow { prompt: req.prompt.len(), requested: req.max_tokens, n_ctx });
        }
        let t0 = Instant::now();
        let common = session.tokens.iter().zip(&req.prompt).take_while(|(a, b)| a == b).count();
        // Keep at least the last prompt token to evaluate: its logits are needed.
        let keep = common.min(req.prompt.len() - 1);
        session.truncate(keep);
        let mut stats = GenerationStats { prompt_tokens: req.prompt.len(), cached_tokens: keep, ..Default::default() };
        let mut sampler = Sampler::new(req.sampler.clone());
        for &t in &req.prompt {
            sampler.accept(t);
        }
        let mut logits = Vec::new();
        self.eval(session, &req.prompt[keep..], &mut logits)?;
        stats.prompt_time = t0.elapsed();
        let tok = &self.model.tokenizer;
        let mut t_first = None;
        let mut raw = Vec::new();
        loop {
            if stats.generated_tokens >= req.max_tokens {
                stats.finish = Some(FinishReason::Length);
                break;
            }
            raw.clear();
            raw.extend_from_slice(&logits);
            let id = sampler.sample(&mut logits);
            let now = Instant::now();
            if t_first.is_none() {
                t_first = Some(now);
                stats.time_to_first_token = now - t0;
            }
            if !req.ignore_eos && tok.is_eog(id) {
                stats.finish = Some(FinishReason::Stop);
                break;
            }
            stats.generated_tokens += 1;
            let piece = tok.token_to_piece(id, true);
            let flow = on_token(TokenEvent { id, piece: &piece, logits: &raw });
            if let Some(t) = t_first {
                stats.generation_time = now - t;
            }
            if flow == Flow::Stop {
                stats.finish = Some(FinishReason::Cancelled);
                break;
            }
            if stats.generated_tokens >= req.max_tokens {
                stats.finish = Some(FinishReason::Length);
                break;
            }
            self.eval(session, &[id], &mut logits)?;
        }
        if let Some(t) = t_first {
            stats.generation_time = t.elapsed();
        }
        Ok(stats)
    }
}
