//! What quantization costs: perplexity, and the divergence of a quantized
//! model from its base, measured the way llama.cpp's `llama-perplexity`
//! measures them (tools/perplexity/perplexity.cpp).
//!
//! # Method
//!
//! The text is tokenized once (with BOS when the vocabulary adds one). The
//! tokens are cut into `n_tokens / n_ctx` non-overlapping chunks of `n_ctx`;
//! each chunk is evaluated from an empty KV cache with its first token
//! replaced by BOS (when the vocabulary adds one), and only the second half
//! is scored: the logits at positions `n_ctx/2 .. n_ctx-1` predict tokens
//! `n_ctx/2 + 1 .. n_ctx`, so every scored token has at least `n_ctx/2`
//! tokens of context. Perplexity is `exp(mean NLL)` and its uncertainty
//! `ppl * sqrt(var(NLL) / (count - 1))`.
//!
//! [`compare`] runs both models over the same chunks in lock step and
//! reports, over the same scored positions: both perplexities,
//! `ln(PPL(Q)/PPL(base))` with its covariance-corrected uncertainty, the mean
//! Kullback–Leibler divergence `KL(base ‖ quant)`, how often the two models'
//! most likely token agree ("same top p" in llama-perplexity), and the RMS of
//! the change in the probability of the correct token.
//!
//! # Differences from llama-perplexity
//!
//! * Log-softmax and KL are computed in f64 over the full distribution;
//!   llama-perplexity's `--kl-divergence` compares against base log-probs
//!   stored as 16-bit values and skips base probabilities below e^-16, so
//!   its KL differs in the last digits.
//! * Only one sequence is evaluated per forward pass, and the last token of
//!   each chunk (whose logits are never scored) is not evaluated.
//!
//! Deliberately absent: `--ppl-stride`, HellaSwag/Winogrande/multiple-choice
//! scores, saving logits to a file.

use hearth_engine::{Engine, EngineError};
use hearth_models::{KvCache, KvType, Logits, SeqInput};

/// Evaluation settings.
#[derive(Clone, Debug)]
pub struct EvalOptions {
    /// Tokens per chunk (`-c`, default 512).
    pub n_ctx: usize,
    /// Evaluate at most this many chunks (`--chunks`).
    pub max_chunks: Option<usize>,
    /// Positions whose logits are computed per forward call; bounds the
    /// logits buffer to `logits_batch * n_vocab` floats.
    pub logits_batch: usize,
}

impl Default for EvalOptions {
    fn default() -> Self {
        EvalOptions {
            n_ctx: 512,
            max_chunks: None,
            logits_batch: 64,
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum EvalError {
    #[error(transparent)]
    Engine(#[from] EngineError),
    #[error(
        "the text tokenizes to {have} tokens; a context of {n_ctx} needs at least {need} (two chunks)"
    )]
    NotEnoughTokens {
        have: usize,
        need: usize,
        n_ctx: usize,
    },
    #[error("the context must be at least 8 tokens, not {0}")]
    ContextTooSmall(usize),
    #[error("the two models tokenize the text differently (vocabularies of {base} and {quant} tokens); they cannot be compared")]
    VocabMismatch { base: usize, quant: usize },
}

/// Perplexity with its uncertainty.
#[derive(Clone, Debug, PartialEq)]
pub struct Perplexity {
    pub ppl: f64,
    /// One standard error of `ppl`.
    pub ppl_stderr: f64,
    /// Mean negative log-likelihood (nats per token).
    pub mean_nll: f64,
    /// Tokens scored.
    pub count: usize,
    pub n_chunks: usize,
    /// Tokens in the whole text.
    pub n_tokens: usize,
}

/// A quantized model against its base; see the module docs.
#[derive(Clone, Debug, PartialEq)]
pub struct Comparison {
    pub base: Perplexity,
    pub quant: Perplexity,
    /// `ln(PPL(quant) / PPL(base))` and its uncertainty.
    pub ln_ppl_ratio: f64,
    pub ln_ppl_ratio_stderr: f64,
    /// Mean `KL(base ‖ quant)` in nats, and its uncertainty.
    pub kl_mean: f64,
    pub kl_stderr: f64,
    pub kl_max: f64,
    /// 99th percentile of the per-token KL.
    pub kl_p99: f64,
    /// Fraction of scored positions where both models' argmax agree.
    pub top1_agreement: f64,
    pub top1_stderr: f64,
    /// RMS of `p_quant(token) - p_base(token)`.
    pub rms_delta_p: f64,
}

/// Running sums for one model's NLL.
#[derive(Clone, Copy, Debug, Default)]
struct Nll {
    sum: f64,
    sum2: f64,
    count: usize,
}

impl Nll {
    fn add(&mut self, v: f64) {
        self.sum += v;
        self.sum2 += v * v;
        self.count += 1;
    }

    /// Mean and one standard error of the mean (llama-perplexity's
    /// `mean_and_uncertainty` without its `count > 10` cut-off).
    fn mean_err(&self) -> (f64, f64) {
        mean_err(self.sum, self.sum2, self.count)
    }

    fn perplexity(&self, n_chunks: usize, n_tokens: usize) -> Perplexity {
        let (m, e) = self.mean_err();
        let ppl = m.exp();
        Perplexity {
            ppl,
            ppl_stderr: ppl * e,
            mean_nll: m,
            count: self.count,
            n_chunks,
            n_tokens,
        }
    }
}

fn mean_err(sum: f64, sum2: f64, count: usize) -> (f64, f64) {
    if count == 0 {
        return (0.0, 0.0);
    }
    let n = count as f64;
    let m = sum / n;
    let var = sum2 / n - m * m;
    let e = if var > 0.0 && count > 1 {
        (var / (n - 1.0)).sqrt()
    } else {
        0.0
    };
    (m, e)
}

/// Log-softmax pieces of one row of logits: (max, log-sum-exp, argmax).
/// The argmax is the first index of the maximum, as llama-perplexity's
/// strict `>` scan picks it.
fn log_sum_exp(logits: &[f32]) -> (f64, f64, usize) {
    let mut max = f32::NEG_INFINITY;
    let mut imax = 0;
    for (i, &l) in logits.iter().enumerate() {
        if l > max {
            max = l;
            imax = i;
        }
    }
    let max = f64::from(max);
    let s: f64 = logits.iter().map(|&l| (f64::from(l) - max).exp()).sum();
    (max, max + s.ln(), imax)
}

/// The tokens of `text` as llama-perplexity tokenizes them, and the number
/// of chunks to evaluate.
fn prepare(
    engine: &Engine,
    text: &str,
    opts: &EvalOptions,
) -> Result<(Vec<u32>, usize), EvalError> {
    if opts.n_ctx < 8 {
        return Err(EvalError::ContextTooSmall(opts.n_ctx));
    }
    let tokens = engine.tokenize(text, true, false);
    if tokens.len() < 2 * opts.n_ctx {
        return Err(EvalError::NotEnoughTokens {
            have: tokens.len(),
            need: 2 * opts.n_ctx,
            n_ctx: opts.n_ctx,
        });
    }
    let n_chunks = tokens.len() / opts.n_ctx;
    Ok((
        tokens,
        opts.max_chunks.map_or(n_chunks, |m| m.clamp(1, n_chunks)),
    ))
}

/// Evaluates one chunk in pieces; calls `f(first_pos, logits)` for each
/// batch of scored positions (`logits` holds `n * n_vocab` values for
/// positions `first_pos .. first_pos + n`).
struct ChunkRunner<'a> {
    engine: &'a Engine,
    cache: KvCache,
    out: Vec<f32>,
}

impl<'a> ChunkRunner<'a> {
    fn new(engine: &'a Engine, n_ctx: usize) -> ChunkRunner<'a> {
        let cache = KvCache::new(engine.model().config(), n_ctx, KvType::F16, KvType::F16);
        ChunkRunner {
            engine,
            cache,
            out: Vec::new(),
        }
    }

    /// Feeds `tokens` (positions continue from the cache) and returns the
    /// logits for all of them (or none).
    fn feed(&mut self, tokens: &[u32], want: Logits) -> Result<&[f32], EvalError> {
        let mut seq = [SeqInput {
            tokens,
            cache: &mut self.cache,
            logits: want,
            out: &mut self.out,
        }];
        self.engine.forward_batch(&mut seq)?;
        Ok(&self.out)
    }
}

/// Chunk `c` of `tokens` with BOS in front when the vocabulary adds one.
fn chunk(engine: &Engine, tokens: &[u32], c: usize, n_ctx: usize) -> Vec<u32> {
    let mut t = tokens[c * n_ctx..(c + 1) * n_ctx].to_vec();
    let tok = engine.tokenizer();
    if let (true, Some(bos)) = (tok.add_bos(), tok.bos()) {
        t[0] = bos;
    }
    t
}

/// Perplexity of `engine`'s model on `text`; `progress(done, total)` is
/// called after each chunk.
pub fn perplexity(
    engine: &Engine,
    text: &str,
    opts: &EvalOptions,
    progress: &mut dyn FnMut(usize, usize),
) -> Result<Perplexity, EvalError> {
    let (tokens, n_chunks) = prepare(engine, text, opts)?;
    let n_ctx = opts.n_ctx;
    let first = n_ctx / 2;
    let n_vocab = engine.model().config().n_vocab;
    let lb = opts.logits_batch.max(1);
    let mut nll = Nll::default();
    for c in 0..n_chunks {
        let t = chunk(engine, &tokens, c, n_ctx);
        let mut run = ChunkRunner::new(engine, n_ctx);
        run.feed(&t[..first], Logits::None)?;
        // Scored positions first .. n_ctx-1 predict t[pos + 1].
        let mut pos = first;
        while pos < n_ctx - 1 {
            let end = (pos + lb).min(n_ctx - 1);
            let logits = run.feed(&t[pos..end], Logits::All)?;
            for (k, row) in logits.chunks_exact(n_vocab).take(end - pos).enumerate() {
                let target = t[pos + k + 1] as usize;
                let (_, lse, _) = log_sum_exp(row);
                nll.add(lse - f64::from(row[target]));
            }
            pos = end;
        }
        progress(c + 1, n_chunks);
    }
    Ok(nll.perplexity(n_chunks, tokens.len()))
}

/// `quant` against `base` on `text`; see the module docs.
pub fn compare(
    base: &Engine,
    quant: &Engine,
    text: &str,
    opts: &EvalOptions,
    progress: &mut dyn FnMut(usize, usize),
) -> Result<Comparison, EvalError> {
    let (tokens, n_chunks) = prepare(base, text, opts)?;
    let vb = base.model().config().n_vocab;
    let vq = quant.model().config().n_vocab;
    if vb != vq || quant.tokenize(text, true, false) != tokens {
        return Err(EvalError::VocabMismatch {
            base: vb,
            quant: vq,
        });
    }
    let n_ctx = opts.n_ctx;
    let first = n_ctx / 2;
    let lb = opts.logits_batch.max(1);
    let (mut nb, mut nq) = (Nll::default(), Nll::default());
    let mut sum_cross = 0.0f64;
    let (mut kl_sum, mut kl_sum2) = (0.0f64, 0.0f64);
    let mut kls: Vec<f64> = Vec::new();
    let mut same_top = 0usize;
    let mut dp2 = 0.0f64;
    for c in 0..n_chunks {
        let t = chunk(base, &tokens, c, n_ctx);
        let mut rb = ChunkRunner::new(base, n_ctx);
        let mut rq = ChunkRunner::new(quant, n_ctx);
        rb.feed(&t[..first], Logits::None)?;
        rq.feed(&t[..first], Logits::None)?;
        let mut pos = first;
        while pos < n_ctx - 1 {
            let end = (pos + lb).min(n_ctx - 1);
            rb.feed(&t[pos..end], Logits::All)?;
            let lq = rq.feed(&t[pos..end], Logits::All)?;
            for (k, (pb, pq)) in rb
                .out
                .chunks_exact(vb)
                .zip(lq.chunks_exact(vb))
                .take(end - pos)
                .enumerate()
            {
                let target = t[pos + k + 1] as usize;
                let (_, lse_b, top_b) = log_sum_exp(pb);
                let (_, lse_q, top_q) = log_sum_exp(pq);
                let nll_b = lse_b - f64::from(pb[target]);
                let nll_q = lse_q - f64::from(pq[target]);
                nb.add(nll_b);
                nq.add(nll_q);
                sum_cross += nll_b * nll_q;
                let mut kl = 0.0f64;
                for (&b, &q) in pb.iter().zip(pq) {
                    let logp = f64::from(b) - lse_b;
                    let logq = f64::from(q) - lse_q;
                    kl += logp.exp() * (logp - logq);
                }
                // Rounding can make a zero divergence slightly negative.
                let kl = kl.max(0.0);
                kl_sum += kl;
                kl_sum2 += kl * kl;
                kls.push(kl);
                same_top += usize::from(top_b == top_q);
                let dp = (-nll_q).exp() - (-nll_b).exp();
                dp2 += dp * dp;
            }
            pos = end;
        }
        progress(c + 1, n_chunks);
    }
    let count = nb.count;
    let n = count.max(1) as f64;
    let (mb, eb) = nb.mean_err();
    let (mq, eq) = nq.mean_err();
    // Covariance of the two mean NLLs (llama-perplexity's `covariance`).
    let cov = if count > 1 {
        (sum_cross / n - mb * mq) / (n - 1.0)
    } else {
        0.0
    };
    let ratio_var = eq * eq + eb * eb - 2.0 * cov;
    let (kl_mean, kl_stderr) = mean_err(kl_sum, kl_sum2, count);
    kls.sort_by(f64::total_cmp);
    let pct = |f: f64| -> f64 {
        if kls.is_empty() {
            return 0.0;
        }
        let p = f * (kls.len() - 1) as f64;
        let i = p.floor() as usize;
        let frac = p - i as f64;
        let j = (i + 1).min(kls.len() - 1);
        (1.0 - frac) * kls[i] + frac * kls[j]
    };
    let top1 = same_top as f64 / n;
    Ok(Comparison {
        base: nb.perplexity(n_chunks, tokens.len()),
        quant: nq.perplexity(n_chunks, tokens.len()),
        ln_ppl_ratio: mq - mb,
        ln_ppl_ratio_stderr: ratio_var.max(0.0).sqrt(),
        kl_mean,
        kl_stderr,
        kl_max: kls.last().copied().unwrap_or(0.0),
        kl_p99: pct(0.99),
        top1_agreement: top1,
        top1_stderr: if count > 1 {
            (top1 * (1.0 - top1) / (n - 1.0)).sqrt()
        } else {
            0.0
        },
        rms_delta_p: (dp2 / n).sqrt(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn log_sum_exp_is_stable_and_picks_the_first_max() {
        let (m, lse, i) = log_sum_exp(&[1000.0, 1000.0, -1000.0]);
        assert_eq!((m, i), (1000.0, 0));
        assert!((lse - (1000.0 + 2f64.ln())).abs() < 1e-9);
    }

    #[test]
    fn uncertainty_of_the_mean() {
        // Values 1, 2, 3: mean 2, sample variance 1, standard error 1/sqrt(3).
        let (m, e) = mean_err(6.0, 14.0, 3);
        assert!((m - 2.0).abs() < 1e-12);
        // llama-perplexity's estimator: (E[x²] - E[x]²) / (n - 1) = (2/3) / 2.
        assert!((e - (1.0f64 / 3.0).sqrt()).abs() < 1e-12);
        assert_eq!(mean_err(0.0, 0.0, 0), (0.0, 0.0));
    }
}
