//! The demo model recipe: a small Llama-architecture model trained from
//! scratch on FOLDOC so that a fresh machine can run Hearth with no
//! download. Everything is seeded; the same inputs and settings reproduce
//! the same file on the same CPU and thread count.
//!
//! Steps: load and clean the dictionary ([`crate::foldoc`]); hold out one
//! entry in [`DemoConfig::holdout`] (by a hash of its headword); build
//! documents — every entry as plain text, plus one ChatML exchange per
//! entry asking for it ("What is X?", "Define X.", ...) answered with its
//! short definition; train a byte-level BPE tokenizer on the training
//! documents ([`crate::bpe`]); pack the tokenized documents into windows;
//! train with AdamW ([`crate::trainer`]); write the GGUF; then evaluate the
//! *saved file* through `hearth-engine` (held-out perplexity and sample
//! answers), next to the training code's own numbers.
//!
//! Deliberately absent: teacher-generated answers (the answers are
//! FOLDOC's own words), deduplication against the held-out set beyond the
//! entry split, and any quality filtering of entries.

use crate::bpe::{self, Bpe, BpeConfig, CHATML_TEMPLATE};
use crate::data::{pack_stream, Sample};
use crate::error::{io_at, DistillError, Result};
use crate::export::{write_gguf, ExportOptions};
use crate::foldoc::{self, Entry};
use crate::net::{Net, NetConfig};
use crate::optim::AdamWConfig;
use crate::rng::Rng;
use crate::trainer::{RunOptions, StepReport, TrainConfig, Trainer};
use hearth_engine::{Engine, EngineConfig, Flow, GenerateRequest, SamplerConfig};
use hearth_formats::{GgmlType, MetaValue};
use hearth_models::{KvCache, KvType, Logits, SeqInput};
use hearth_tokenizer::{EncodeOptions, Tokenizer};
use serde::Serialize;
use std::path::PathBuf;
use std::time::Instant;

pub const SPECIAL_TOKENS: [&str; 3] = ["<|endoftext|>", "<|im_start|>", "<|im_end|>"];

/// Question templates; `{}` is the headword.
const QUESTIONS: [&str; 6] = ["What is {}?", "Define {}.", "What does {} mean?", "Explain {}.", "What is meant by {}?", "Tell me about {}."];

/// Settings of the recipe. [`DemoConfig::default`] is the shipped model.
#[derive(Clone, Debug, Serialize)]
pub struct DemoConfig {
    pub dict: PathBuf,
    pub index: PathBuf,
    /// Where the GGUF and `eval.json` go.
    pub out_dir: PathBuf,
    /// Checkpoints and intermediate files.
    pub work_dir: PathBuf,
    pub seed: u64,
    /// One entry in `holdout` is held out for validation.
    pub holdout: u64,
    pub vocab_size: usize,
    pub n_ctx: usize,
    pub n_embd: usize,
    pub n_layer: usize,
    pub n_head: usize,
    pub n_head_kv: usize,
    pub n_ff: usize,
    pub steps: u64,
    pub batch: usize,
    pub grad_accum: usize,
    pub lr: f32,
    pub warmup: u64,
    pub weight_decay: f32,
    pub threads: usize,
    #[serde(skip)]
    pub matrix_type: GgmlType,
    pub progress: bool,
    /// Continue from `work_dir/checkpoint.safetensors` if it exists.
    pub resume: bool,
    pub checkpoint_every: u64,
}

impl Default for DemoConfig {
    fn default() -> Self {
        DemoConfig {
            dict: "/usr/share/dictd/foldoc.dict.dz".into(),
            index: "/usr/share/dictd/foldoc.index".into(),
            out_dir: "assets/demo".into(),
            work_dir: "target/demo-work".into(),
            seed: 1234,
            holdout: 50,
            vocab_size: 4096,
            n_ctx: 256,
            n_embd: 192,
            n_layer: 6,
            n_head: 6,
            n_head_kv: 2,
            n_ff: 512,
            steps: 1500,
            batch: 8,
            grad_accum: 1,
            lr: 2e-3,
            warmup: 60,
            weight_decay: 0.1,
            threads: 0,
            matrix_type: GgmlType::F16,
            progress: true,
            resume: true,
            checkpoint_every: 50,
        }
    }
}

/// One chat exchange.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Qa {
    pub question: String,
    pub answer: String,
}

/// Training and validation documents.
#[derive(Clone, Debug, Default)]
pub struct Documents {
    pub train_plain: Vec<String>,
    pub train_chat: Vec<Qa>,
    pub val_plain: Vec<String>,
    pub val_chat: Vec<Qa>,
    /// Headwords of the held-out entries.
    pub val_headwords: Vec<String>,
}

fn fnv1a(s: &str) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in s.bytes() {
        h ^= b as u64;
        h = h.wrapping_mul(0x0100_0000_01b3);
    }
    h
}

/// The held-out test: a seeded hash of the main headword.
pub fn is_held_out(headword: &str, seed: u64, holdout: u64) -> bool {
    holdout > 0 && (fnv1a(headword) ^ seed.wrapping_mul(0x9E37_79B9_7F4A_7C15)).is_multiple_of(holdout)
}

/// Splits entries and builds documents (see the module docs).
pub fn build_documents(entries: &[Entry], seed: u64, holdout: u64) -> Documents {
    let mut rng = Rng::derive(seed, 0xD0C5);
    let mut d = Documents::default();
    for e in entries {
        let val = is_held_out(e.headword(), seed, holdout);
        let mut plain = e.text();
        // Very long entries (a few are essays) are cut so they do not
        // dominate the data.
        if plain.len() > 3000 {
            let cut = plain.char_indices().take_while(|(i, _)| *i < 3000).last().map_or(0, |(i, _)| i);
            plain.truncate(cut);
        }
        let answer = e.short_definition(2, 320);
        let qa = (answer.len() >= 30).then(|| {
            // Ask about the headword most likely to be typed: the shortest
            // of the first two spellings (acronym or full name).
            let hw = e.headwords.iter().take(2).min_by_key(|h| h.len()).map_or(e.headword(), |h| h.as_str());
            let template = QUESTIONS[rng.below(QUESTIONS.len())];
            // "Define Foo Ltd.." reads badly: drop the template's period.
            let template = if hw.ends_with('.') { template.trim_end_matches('.') } else { template };
            let q = template.replace("{}", hw);
            Qa { question: q, answer }
        });
        if val {
            d.val_plain.push(plain);
            d.val_chat.extend(qa);
            d.val_headwords.push(e.headword().to_string());
        } else {
            d.train_plain.push(plain);
            d.train_chat.extend(qa);
        }
    }
    d
}

/// The ChatML prompt for `question`, ending where the answer starts.
pub fn chat_prompt(question: &str) -> String {
    format!("<|im_start|>user\n{question}<|im_end|>\n<|im_start|>assistant\n")
}

/// Tokens of one exchange and the index where the answer starts: the prompt
/// and the answer are tokenized separately, as at inference.
fn chat_tokens(tok: &Tokenizer, qa: &Qa) -> (Vec<u32>, usize) {
    let special = EncodeOptions { add_special: false, parse_special: true };
    let mut t = tok.encode(&chat_prompt(&qa.question), special);
    let start = t.len();
    t.extend(tok.encode(&qa.answer, EncodeOptions { add_special: false, parse_special: false }));
    t.extend(tok.encode("<|im_end|>\n", special));
    (t, start)
}

/// What the recipe measured.
#[derive(Clone, Debug, Serialize)]
pub struct DemoReport {
    pub config: DemoConfig,
    pub n_params: usize,
    pub file: PathBuf,
    pub file_bytes: u64,
    pub entries: usize,
    pub held_out_entries: usize,
    pub train_tokens_per_epoch: usize,
    pub tokens_trained: usize,
    pub epochs: f64,
    pub train_seconds: f64,
    pub tokens_per_second: f64,
    pub threads: usize,
    /// Final training loss (mean of the last 20 updates).
    pub final_train_loss: f64,
    /// Held-out plain-text loss from the training code (f32, exact weights
    /// as stored).
    pub val_loss_training_code: f64,
    /// The same through `hearth-engine` on the saved GGUF (F16 KV cache).
    pub val_loss_engine: f64,
    pub val_perplexity_engine: f64,
    pub val_tokens: usize,
    /// Held-out answer-only loss through the engine.
    pub val_answer_loss_engine: f64,
    pub samples: Vec<SampleAnswer>,
}

#[derive(Clone, Debug, Serialize)]
pub struct SampleAnswer {
    pub question: String,
    pub answer: String,
    /// Whether the entry asked about was held out of training.
    pub held_out: bool,
}

fn meta_str(k: &str, v: &str) -> (String, MetaValue) {
    (k.to_string(), MetaValue::from(v))
}

/// Runs the whole recipe; `log` receives progress lines.
pub fn train_demo(cfg: &DemoConfig, log: &mut dyn FnMut(&str)) -> Result<DemoReport> {
    std::fs::create_dir_all(&cfg.out_dir).map_err(io_at(&cfg.out_dir))?;
    std::fs::create_dir_all(&cfg.work_dir).map_err(io_at(&cfg.work_dir))?;
    let entries = foldoc::load(&cfg.dict, &cfg.index)?;
    let docs = build_documents(&entries, cfg.seed, cfg.holdout);
    log(&format!(
        "{} entries: {} train ({} Q&A), {} held out",
        entries.len(),
        docs.train_plain.len(),
        docs.train_chat.len(),
        docs.val_plain.len()
    ));

    // Tokenizer.
    let t0 = Instant::now();
    let bpe_texts = docs.train_plain.iter().map(String::as_str).chain(docs.train_chat.iter().flat_map(|q| [q.question.as_str(), q.answer.as_str()]));
    let bpe = bpe::train(
        bpe_texts,
        &BpeConfig { vocab_size: cfg.vocab_size, min_frequency: 2, special_tokens: SPECIAL_TOKENS.iter().map(|s| s.to_string()).collect() },
    )?;
    let tok_meta = bpe.gguf_metadata("<|endoftext|>", "<|im_end|>", "<|endoftext|>", CHATML_TEMPLATE)?;
    let tok = Tokenizer::from_gguf(&Bpe::vocab_gguf(&tok_meta)?)?;
    let eot = bpe.token_id("<|endoftext|>").ok_or_else(|| DistillError::Config("no <|endoftext|>".into()))?;
    log(&format!("tokenizer: {} tokens, {} merges ({:.1} s)", bpe.tokens.len(), bpe.merges.len(), t0.elapsed().as_secs_f64()));

    // Training stream: documents in a seeded order, each ended by <|endoftext|>.
    let plain = EncodeOptions { add_special: false, parse_special: false };
    enum Doc<'a> {
        Plain(&'a str),
        Chat(&'a Qa),
    }
    let mut order: Vec<Doc> = docs.train_plain.iter().map(|s| Doc::Plain(s)).chain(docs.train_chat.iter().map(Doc::Chat)).collect();
    Rng::derive(cfg.seed, 0x5EED).shuffle(&mut order);
    let mut stream = Vec::new();
    for d in &order {
        match d {
            Doc::Plain(s) => stream.extend(tok.encode(s, plain)),
            Doc::Chat(q) => stream.extend(chat_tokens(&tok, q).0),
        }
        stream.push(eot);
    }
    let samples = pack_stream(&stream, cfg.n_ctx);
    log(&format!("{} training tokens per epoch in {} windows of {}", stream.len(), samples.len(), cfg.n_ctx));

    // Validation samples: each held-out entry alone (cut to the context),
    // and each held-out exchange with loss on the answer only.
    let val_plain: Vec<Vec<u32>> = docs
        .val_plain
        .iter()
        .map(|s| {
            let mut t = vec![eot];
            t.extend(tok.encode(s, plain));
            t.truncate(cfg.n_ctx);
            t
        })
        .collect();
    let val_chat: Vec<(Vec<u32>, usize)> = docs
        .val_chat
        .iter()
        .map(|q| {
            let (mut t, s) = chat_tokens(&tok, q);
            t.truncate(cfg.n_ctx);
            (t, s)
        })
        .filter(|(t, s)| *s + 1 < t.len())
        .collect();

    // Model and training.
    let ncfg = NetConfig::llama(bpe.tokens.len(), cfg.n_embd, cfg.n_layer, cfg.n_head, cfg.n_head_kv, cfg.n_ff, cfg.n_ctx, true);
    let net = Net::new_scratch(ncfg)?;
    let n_params = net.params.len;
    let params = net.init_scratch(&mut Rng::derive(cfg.seed, 0x1417));
    log(&format!("model: {n_params} parameters"));
    let tcfg = TrainConfig {
        lr: cfg.lr,
        min_lr_ratio: 0.1,
        warmup: cfg.warmup,
        steps: cfg.steps,
        batch: cfg.batch,
        grad_accum: cfg.grad_accum,
        clip: 1.0,
        adamw: AdamWConfig { beta1: 0.9, beta2: 0.95, eps: 1e-8, weight_decay: cfg.weight_decay },
        kl_weight: 0.0,
        kl_rest: false,
        seed: cfg.seed,
        threads: cfg.threads,
        pad: eot,
    };
    let n_windows = samples.len();
    let mut trainer = Trainer::new(net, params, samples, tcfg)?;
    let ckpt = cfg.work_dir.join("checkpoint.safetensors");
    if cfg.resume && ckpt.exists() {
        trainer.resume(&ckpt)?;
        log(&format!("resumed from {} at step {}", ckpt.display(), trainer.step));
    }
    let start_step = trainer.step;
    let t_train = Instant::now();
    let mut recent: Vec<f64> = Vec::new();
    let mut tokens_trained = 0usize;
    let mut log_steps: Vec<StepReport> = Vec::new();
    trainer.run(
        &RunOptions { progress: cfg.progress, checkpoint: Some(ckpt.clone()), checkpoint_every: cfg.checkpoint_every },
        &mut |r| {
            recent.push(r.ce);
            if recent.len() > 20 {
                recent.remove(0);
            }
            tokens_trained += r.tokens;
            if r.step % 50 == 0 || r.step == 1 {
                log_steps.push(r.clone());
            }
        },
    )?;
    let train_seconds = t_train.elapsed().as_secs_f64();
    for r in &log_steps {
        log(&format!("step {} loss {:.4} lr {:.2e} |g| {:.3} epoch {}", r.step, r.ce, r.lr, r.grad_norm, r.epoch));
    }
    let steps_run = trainer.step - start_step;
    let tokens_per_step = cfg.batch * cfg.grad_accum * cfg.n_ctx;
    let val_samples: Vec<Sample> = val_plain.iter().map(|t| Sample { mask: vec![true; t.len()], tokens: t.clone(), teacher: None }).collect();
    let val_train_code = trainer.evaluate(&val_samples, 8)?;
    log(&format!("held-out loss (training code): {:.4}", val_train_code.loss));

    // Save.
    let file = cfg.out_dir.join("foldoc-demo.gguf");
    let mut meta = tok_meta.clone();
    meta.push(meta_str("general.license", "GFDL-1.1-or-later"));
    meta.push(meta_str(
        "general.description",
        "Hearth demo model trained from scratch on FOLDOC, the Free On-line Dictionary of Computing (http://foldoc.org/, editor Denis Howe)",
    ));
    meta.push(meta_str("general.source.url", "http://foldoc.org/"));
    let file_bytes =
        write_gguf(&file, &trainer.net, &trainer.params, &ExportOptions { matrix_type: cfg.matrix_type, name: "foldoc-demo".into(), metadata: meta })?;
    log(&format!("wrote {} ({} bytes)", file.display(), file_bytes));

    // Evaluate the saved file through the engine.
    let engine = Engine::load(&file, EngineConfig { threads: cfg.threads, ..EngineConfig::default() })?;
    let (val_loss_engine, val_tokens) = engine_loss(&engine, val_plain.iter().map(|t| (t.as_slice(), 1)))?;
    let (val_answer_loss_engine, _) = engine_loss(&engine, val_chat.iter().map(|(t, s)| (t.as_slice(), *s)))?;
    log(&format!("held-out loss (engine): {val_loss_engine:.4}, answers only {val_answer_loss_engine:.4}"));
    let mut questions: Vec<(String, bool)> =
        ["What is a compiler?", "What is RAM?", "Define byte.", "What is Linux?", "What does TCP mean?", "Explain recursion."]
            .iter()
            .map(|q| (q.to_string(), false))
            .collect();
    questions.extend(docs.val_chat.iter().take(4).map(|q| (q.question.clone(), true)));
    let mut samples_out = Vec::new();
    for (q, held) in questions {
        let answer = answer(&engine, &q, 96)?;
        samples_out.push(SampleAnswer { question: q, answer, held_out: held });
    }
    let report = DemoReport {
        config: cfg.clone(),
        n_params,
        file: file.clone(),
        file_bytes,
        entries: entries.len(),
        held_out_entries: docs.val_plain.len(),
        train_tokens_per_epoch: stream.len(),
        tokens_trained,
        epochs: (trainer.step as f64 * (cfg.batch * cfg.grad_accum) as f64) / n_windows as f64,
        train_seconds,
        tokens_per_second: (steps_run as usize * tokens_per_step) as f64 / train_seconds.max(1e-9),
        threads: trainer.n_threads(),
        final_train_loss: recent.iter().sum::<f64>() / recent.len().max(1) as f64,
        val_loss_training_code: val_train_code.loss,
        val_loss_engine,
        val_perplexity_engine: val_loss_engine.exp(),
        val_tokens,
        val_answer_loss_engine,
        samples: samples_out,
    };
    let json = serde_json::to_string_pretty(&report).map_err(|e| DistillError::Config(e.to_string()))?;
    let path = cfg.out_dir.join("eval.json");
    std::fs::write(&path, json + "\n").map_err(io_at(&path))?;
    Ok(report)
}

/// Mean next-token loss through the engine over `(tokens, first target)`
/// sequences, each evaluated from an empty cache: targets are
/// `tokens[first..]`. Returns the loss and the number of targets.
pub fn engine_loss<'a>(engine: &Engine, seqs: impl Iterator<Item = (&'a [u32], usize)>) -> Result<(f64, usize)> {
    let cfg = engine.model().config().clone();
    let mut sum = 0f64;
    let mut n = 0usize;
    let mut out = Vec::new();
    for (t, first) in seqs {
        if t.len() < 2 || first == 0 || first >= t.len() {
            continue;
        }
        let mut cache = KvCache::new(&cfg, t.len(), KvType::F16, KvType::F16);
        let mut seq = [SeqInput { tokens: &t[..t.len() - 1], cache: &mut cache, logits: Logits::All, out: &mut out }];
        engine.forward_batch(&mut seq)?;
        let nv = cfg.n_vocab;
        for (i, &target) in t.iter().enumerate().skip(first) {
            let z = &out[(i - 1) * nv..i * nv];
            let max = z.iter().fold(f32::NEG_INFINITY, |m, &v| m.max(v)) as f64;
            let lse = max + z.iter().map(|&v| (v as f64 - max).exp()).sum::<f64>().ln();
            sum += lse - z[target as usize] as f64;
            n += 1;
        }
    }
    Ok((sum / n.max(1) as f64, n))
}

/// Greedy answer to `question` using the model's own chat template.
pub fn answer(engine: &Engine, question: &str, max_tokens: usize) -> Result<String> {
    let fmt = hearth_engine::chat::ChatFormat::from_model(engine.model())?;
    let prompt = fmt.simple(engine.model(), &[("user", question)])?;
    let n_ctx = engine.model().config().n_ctx_train;
    let max_tokens = max_tokens.min(n_ctx.saturating_sub(prompt.len()));
    let mut session = engine.new_session(n_ctx);
    let req = GenerateRequest { prompt, max_tokens, sampler: SamplerConfig { temperature: 0.0, ..SamplerConfig::default() }, ignore_eos: false };
    let mut bytes = Vec::new();
    engine.generate(&mut session, &req, &mut |ev| {
        bytes.extend_from_slice(ev.piece);
        Flow::Continue
    })?;
    Ok(String::from_utf8_lossy(&bytes).trim().to_string())
}
