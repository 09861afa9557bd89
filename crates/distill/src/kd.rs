//! Knowledge distillation from a local teacher with the student's
//! vocabulary: the teacher answers prompts (greedy), its top-k
//! log-probabilities at every answer token are stored with the example
//! ([`crate::data`]'s `teacher_topk`), and teacher and student are compared
//! on held-out prompts.
//!
//! Comparison ([`compare`]), teacher-forced on the teacher's own answer so
//! both models see the same prefix at every position:
//! * agreement: the fraction of answer positions where the student's most
//!   likely next token is the teacher's;
//! * KL(teacher ‖ student) over the full vocabulary, in nats per answer
//!   token;
//! * the student's cross-entropy on the teacher's tokens.
//!
//! Both models run through `hearth-engine` on their saved GGUF files (F16 KV
//! cache), so the numbers are about the files a user would serve.
//!
//! Also here: [`train_scratch_student`], the from-scratch student behind
//! `hearth distill train --init-student`.
//!
//! Remote teachers, sampling, judging and dedup live in [`crate::generate`]
//! and [`crate::teacher`]; the evaluation CLI in [`crate::eval`].

use crate::data::{Example, Message, Sample};
use crate::error::{DistillError, Result};
use crate::lora::tokenize_examples;
use hearth_engine::Engine;
use hearth_models::{KvCache, KvType, Logits, SeqInput};

/// Log-softmax of one row of logits, in f64.
fn log_softmax(z: &[f32]) -> Vec<f64> {
    let max = z.iter().fold(f32::NEG_INFINITY, |m, &v| m.max(v)) as f64;
    let lse = max + z.iter().map(|&v| (v as f64 - max).exp()).sum::<f64>().ln();
    z.iter().map(|&v| v as f64 - lse).collect()
}

/// All next-token logits of `tokens[..len-1]` from an empty cache.
fn all_logits(engine: &Engine, tokens: &[u32]) -> Result<Vec<f32>> {
    let cfg = engine.model().config().clone();
    let mut cache = KvCache::new(&cfg, tokens.len().max(1), KvType::F16, KvType::F16);
    let mut out = Vec::new();
    let mut seq = [SeqInput { tokens: &tokens[..tokens.len() - 1], cache: &mut cache, logits: Logits::All, out: &mut out }];
    engine.forward_batch(&mut seq)?;
    Ok(out)
}

/// The teacher's answers to `questions` (greedy, at most `max_tokens`), each
/// as a chat example with the teacher's top-`k` log-probabilities at every
/// trained token. Questions the teacher answers with nothing are skipped.
pub fn teacher_examples(teacher: &Engine, questions: &[String], max_tokens: usize, k: usize, progress: &mut dyn FnMut(usize)) -> Result<Vec<Example>> {
    let mut out = Vec::with_capacity(questions.len());
    for (i, q) in questions.iter().enumerate() {
        progress(i);
        let answer = crate::demo::answer(teacher, q, max_tokens)?;
        if answer.is_empty() {
            continue;
        }
        let messages = vec![Message { role: "user".into(), content: q.clone() }, Message { role: "assistant".into(), content: answer }];
        let Some(rows) = answer_topk(teacher, &messages, k)? else { continue };
        out.push(Example { messages: Some(messages), text: None, teacher_topk: Some(rows) });
    }
    Ok(out)
}

/// Per trained token, the teacher's `(token id, log-probability)` pairs.
pub type TopK = Vec<Vec<(u32, f32)>>;

/// The teacher's top-`k` `(token, log-probability)` pairs at every trained
/// (assistant) token of `messages`, rendered with the teacher's chat
/// template: the `teacher_topk` rows of [`crate::data`]. `None` when the
/// conversation has no trained token.
pub fn answer_topk(teacher: &Engine, messages: &[Message], k: usize) -> Result<Option<TopK>> {
    let plain = Example { messages: Some(messages.to_vec()), text: None, teacher_topk: None };
    let s = tokenize_examples(teacher.model(), std::slice::from_ref(&plain), usize::MAX)?;
    let Some(s) = s.into_iter().next() else { return Ok(None) };
    let logits = all_logits(teacher, &s.tokens)?;
    let nv = teacher.model().config().n_vocab;
    let mut rows = Vec::new();
    for i in 1..s.tokens.len() {
        if !s.mask[i] {
            continue;
        }
        let lp = log_softmax(&logits[(i - 1) * nv..i * nv]);
        let mut idx: Vec<usize> = (0..nv).collect();
        let k = k.clamp(1, nv);
        idx.select_nth_unstable_by(k - 1, |&a, &b| lp[b].total_cmp(&lp[a]));
        idx.truncate(k);
        idx.sort_by(|&a, &b| lp[b].total_cmp(&lp[a]));
        rows.push(idx.into_iter().map(|t| (t as u32, lp[t] as f32)).collect());
    }
    Ok(Some(rows))
}

/// How close a student is to its teacher (see the module docs).
#[derive(Clone, Copy, Debug, Default, PartialEq, serde::Serialize)]
pub struct Closeness {
    pub agreement: f64,
    pub kl: f64,
    pub student_ce: f64,
    pub positions: usize,
}

/// Compares `student` with `teacher` on `examples` (chat examples whose
/// assistant turns are the teacher's answers). Both must share a vocabulary.
pub fn compare(teacher: &Engine, student: &Engine, examples: &[Example]) -> Result<Closeness> {
    let nv = teacher.model().config().n_vocab;
    if student.model().config().n_vocab != nv {
        return Err(DistillError::Config(format!("teacher vocabulary {nv} differs from the student's {}", student.model().config().n_vocab)));
    }
    let stripped: Vec<Example> = examples.iter().map(|e| Example { teacher_topk: None, ..e.clone() }).collect();
    let samples: Vec<Sample> = tokenize_examples(teacher.model(), &stripped, teacher.model().config().n_ctx_train)?;
    let (mut agree, mut kl, mut ce, mut n) = (0usize, 0f64, 0f64, 0usize);
    for s in &samples {
        let lt = all_logits(teacher, &s.tokens)?;
        let ls = all_logits(student, &s.tokens)?;
        for i in 1..s.tokens.len() {
            if !s.mask[i] {
                continue;
            }
            let (pt, ps) = (log_softmax(&lt[(i - 1) * nv..i * nv]), log_softmax(&ls[(i - 1) * nv..i * nv]));
            let arg = |v: &[f64]| v.iter().enumerate().fold((0, f64::NEG_INFINITY), |b, (j, &x)| if x > b.1 { (j, x) } else { b }).0;
            agree += usize::from(arg(&pt) == arg(&ps));
            kl += pt.iter().zip(&ps).map(|(&a, &b)| a.exp() * (a - b)).sum::<f64>();
            ce -= ps[s.tokens[i] as usize];
            n += 1;
        }
    }
    let d = n.max(1) as f64;
    Ok(Closeness { agreement: agree as f64 / d, kl: kl / d, student_ce: ce / d, positions: n })
}

/// Tokenizes teacher examples for training (top-k rows included).
pub fn samples(teacher: &Engine, examples: &[Example], max_len: usize) -> Result<Vec<Sample>> {
    tokenize_examples(teacher.model(), examples, max_len)
}

/// Shape of a from-scratch student: `WIDTHxLAYERS` (e.g. `128x4`); heads of
/// 32 dimensions, half as many KV heads (grouped-query attention, as the
/// demo model), feed-forward width ≈ 2.75 × width rounded to 32.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct StudentShape {
    pub n_embd: usize,
    pub n_layer: usize,
    pub n_head: usize,
    pub n_head_kv: usize,
    pub n_ff: usize,
}

impl StudentShape {
    pub fn parse(s: &str) -> Option<StudentShape> {
        let (w, l) = s.trim().split_once(['x', 'X'])?;
        let (n_embd, n_layer): (usize, usize) = (w.parse().ok()?, l.parse().ok()?);
        if n_embd < 32 || !n_embd.is_multiple_of(32) || n_layer == 0 || n_layer > 64 || n_embd > 4096 {
            return None;
        }
        let n_head = n_embd / 32;
        let n_head_kv = (n_head / 2).max(1);
        let n_ff = (n_embd * 11 / 4).div_ceil(32) * 32;
        Some(StudentShape { n_embd, n_layer, n_head, n_head_kv, n_ff })
    }
}

/// Settings of [`train_scratch_student`].
#[derive(Clone, Debug)]
pub struct ScratchOptions {
    /// The teacher GGUF: its tokenizer (and chat template) are copied.
    pub base: std::path::PathBuf,
    pub data: std::path::PathBuf,
    /// Output directory: `student-init.gguf` (the untrained student, for a
    /// before/after comparison), `student.gguf`, `train_report.json`.
    pub out: std::path::PathBuf,
    pub shape: StudentShape,
    pub n_ctx: usize,
    pub steps: u64,
    pub batch: usize,
    pub lr: f32,
    pub warmup: u64,
    pub kl_weight: f64,
    /// KL with the teacher's remaining mass as one extra bucket.
    pub kl_rest: bool,
    pub seed: u64,
    pub threads: usize,
}

/// What [`train_scratch_student`] did.
#[derive(Clone, Debug, serde::Serialize)]
pub struct ScratchReport {
    pub params: usize,
    pub examples: usize,
    pub steps: u64,
    pub seconds: f64,
    pub ce_start: f64,
    pub ce_end: f64,
    pub kl_end: f64,
}

/// Trains a student from scratch on teacher data (cross-entropy on the
/// teacher's answers plus `kl_weight` · KL to stored `teacher_topk` rows),
/// with the teacher's tokenizer; the recipe of the `kd_demo` example behind
/// `hearth distill train --init-student`. No checkpoints: runs are minutes.
pub fn train_scratch_student(opts: &ScratchOptions, log: &mut dyn FnMut(&str)) -> Result<ScratchReport> {
    use crate::export::{write_gguf, ExportOptions};
    use crate::net::{Net, NetConfig};
    use crate::trainer::{RunOptions, TrainConfig, Trainer};
    let model = hearth_engine::Model::load(&opts.base)?;
    let meta: Vec<_> = model.file.metadata().iter().filter(|(k, _)| k.starts_with("tokenizer.")).cloned().collect();
    let nv = model.config().n_vocab;
    let sh = opts.shape;
    let n_ctx = opts.n_ctx.max(8);
    let examples = crate::data::read_jsonl(&opts.data)?;
    let samples = tokenize_examples(&model, &examples, n_ctx)?;
    if samples.is_empty() {
        return Err(DistillError::Config(format!("{}: no trainable examples", opts.data.display())));
    }
    let pad = model.tokenizer.eos().unwrap_or(0);
    let net = Net::new_scratch(NetConfig::llama(nv, sh.n_embd, sh.n_layer, sh.n_head, sh.n_head_kv, sh.n_ff, n_ctx, true))?;
    let params = net.init_scratch(&mut crate::rng::Rng::new(opts.seed));
    let n_params = net.params.len;
    std::fs::create_dir_all(&opts.out).map_err(crate::error::io_at(&opts.out))?;
    let export = ExportOptions { matrix_type: hearth_formats::GgmlType::F16, name: "distilled-student".into(), metadata: meta };
    write_gguf(&opts.out.join("student-init.gguf"), &net, &params, &export)?;
    log(&format!("student {}x{}: {n_params} parameters, {} examples", sh.n_embd, sh.n_layer, samples.len()));
    let n_examples = samples.len();
    let tcfg = TrainConfig {
        lr: opts.lr,
        min_lr_ratio: 0.1,
        warmup: opts.warmup,
        steps: opts.steps,
        batch: opts.batch,
        grad_accum: 1,
        clip: 1.0,
        adamw: crate::optim::AdamWConfig { beta1: 0.9, beta2: 0.95, eps: 1e-8, weight_decay: 0.1 },
        kl_weight: opts.kl_weight,
        kl_rest: opts.kl_rest,
        seed: opts.seed.wrapping_add(1),
        threads: opts.threads,
        pad,
    };
    let mut trainer = Trainer::new(net, params, samples, tcfg)?;
    let t0 = std::time::Instant::now();
    let mut hist: Vec<(f64, f64)> = Vec::new();
    trainer.run(&RunOptions { progress: true, checkpoint: None, checkpoint_every: 0 }, &mut |r| hist.push((r.ce, r.kl)))?;
    write_gguf(&opts.out.join("student.gguf"), &trainer.net, &trainer.params, &export)?;
    let k = hist.len().clamp(1, 20);
    let avg = |v: &[(f64, f64)], f: fn(&(f64, f64)) -> f64| v.iter().map(f).sum::<f64>() / v.len().max(1) as f64;
    let report = ScratchReport {
        params: n_params,
        examples: n_examples,
        steps: opts.steps,
        seconds: t0.elapsed().as_secs_f64(),
        ce_start: avg(&hist[..k.min(hist.len())], |x| x.0),
        ce_end: avg(&hist[hist.len().saturating_sub(k)..], |x| x.0),
        kl_end: avg(&hist[hist.len().saturating_sub(k)..], |x| x.1),
    };
    let json = serde_json::to_string_pretty(&report).map_err(|e| DistillError::Config(e.to_string()))? + "\n";
    crate::generate::write_atomic(&opts.out.join("train_report.json"), &json)?;
    Ok(report)
}

#[cfg(test)]
mod tests {
    use super::StudentShape;

    #[test]
    fn student_shapes() {
        assert_eq!(StudentShape::parse("128x4"), Some(StudentShape { n_embd: 128, n_layer: 4, n_head: 4, n_head_kv: 2, n_ff: 352 }));
        assert_eq!(StudentShape::parse("100x4"), None);
        assert_eq!(StudentShape::parse("128"), None);
        assert_eq!(StudentShape::parse("128x0"), None);
    }
}
