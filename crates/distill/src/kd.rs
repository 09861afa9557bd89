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
//! Deliberately absent: remote (HTTP) teachers, sampling several answers per
//! prompt, judging answer quality, and deduplication; see `hearth distill`'s
//! documentation for what the CLI offers.

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

/// The teacher's top-`k` `(token, log-probability)` pairs at every trained
/// (assistant) token of `messages`, rendered with the teacher's chat
/// template: the `teacher_topk` rows of [`crate::data`]. `None` when the
/// conversation has no trained token.
pub fn answer_topk(teacher: &Engine, messages: &[Message], k: usize) -> Result<Option<Vec<Vec<(u32, f32)>>>> {
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
