//! `hearth distill eval`: is the student good enough to keep a domain's
//! traffic local?
//!
//! For every test record (`{"messages": [...]}`, the last assistant turn is
//! the reference; metadata from the `*.meta.jsonl` sidecar when present):
//!
//! * **Exact match / token F1** against the reference, for closed-form items
//!   (`closed_form` in the metadata; without a sidecar every item counts).
//!   Normalisation as SQuAD's evaluation script: lower case, punctuation and
//!   the articles a/an/the removed, whitespace collapsed; F1 over the
//!   multiset of normalised tokens.
//! * **Schema validity** of the student's answer for items with a schema.
//! * **Agreement with the teacher**: normalised exact match between the
//!   student's and the teacher's answer (the teacher is asked again when
//!   given, else the reference is the teacher's answer). When the teacher is
//!   a local model with the student's vocabulary, also teacher-forced
//!   next-token agreement and KL(teacher ‖ student) along the teacher's
//!   answers ([`crate::kd::compare`]).
//! * **Judged win rate**: the judge sees each (student, teacher) pair twice,
//!   once in each order, to cancel position bias; a win counts 1, a tie ½.
//!   95 % intervals: Wilson score over all judgments, and a seeded
//!   percentile bootstrap over items (the two orders of one item are not
//!   independent, so the bootstrap is the honest one). Position consistency
//!   is the share of items whose two verdicts agree.
//! * **Latency** of the student per answer (p50/p95, nearest rank, prompt
//!   included), answer tokens per second, and peak RSS of the process
//!   (`VmHWM`, Linux; a local teacher or judge in the same process counts).
//! * **Cost per 1,000 queries** without the student (every query to the
//!   cloud teacher: measured token counts × the prices) and with it (every
//!   query local: measured seconds × a configurable machine price per hour,
//!   0 by default — the electricity of an idle desktop is the user's call).
//!
//! Deliberately absent: sampling several student answers (pass@k), ROUGE
//! and BLEU, per-task breakdowns beyond closed-form/structured, and judges
//! that score with log-probabilities.

use crate::data::Message;
use crate::error::{io_at, DistillError, Result};
use crate::generate::{schema_valid, RecordMeta};
use crate::kd::{compare, Closeness};
use crate::rng::Rng;
use crate::spec::Prices;
use crate::teacher::{local_answer, Teacher, TeacherCall};
use hearth_engine::{Engine, SamplerConfig};
use serde::Serialize;
use std::collections::HashMap;
use std::path::{Path, PathBuf};

/// SQuAD normalisation (see the module docs).
pub fn normalize_answer(s: &str) -> String {
    let lower = s.to_lowercase();
    let no_punct: String = lower.chars().map(|c| if c.is_alphanumeric() || c.is_whitespace() { c } else { ' ' }).collect();
    no_punct.split_whitespace().filter(|w| !matches!(*w, "a" | "an" | "the")).collect::<Vec<_>>().join(" ")
}

pub fn exact_match(pred: &str, gold: &str) -> bool {
    normalize_answer(pred) == normalize_answer(gold)
}

/// Token F1 over normalised tokens (multiset overlap). Two empty answers
/// score 1, one empty answer 0.
pub fn token_f1(pred: &str, gold: &str) -> f64 {
    let p = normalize_answer(pred);
    let g = normalize_answer(gold);
    let pt: Vec<&str> = p.split_whitespace().collect();
    let gt: Vec<&str> = g.split_whitespace().collect();
    if pt.is_empty() || gt.is_empty() {
        return if pt.is_empty() && gt.is_empty() { 1.0 } else { 0.0 };
    }
    let mut counts: HashMap<&str, i64> = HashMap::new();
    for t in &gt {
        *counts.entry(t).or_default() += 1;
    }
    let mut common = 0i64;
    for t in &pt {
        if let Some(c) = counts.get_mut(t) {
            if *c > 0 {
                *c -= 1;
                common += 1;
            }
        }
    }
    if common == 0 {
        return 0.0;
    }
    let precision = common as f64 / pt.len() as f64;
    let recall = common as f64 / gt.len() as f64;
    2.0 * precision * recall / (precision + recall)
}

/// Wilson score interval for `successes` out of `n` at z = 1.96 (95 %).
/// `(0, 1)` when `n` is 0.
pub fn wilson(successes: f64, n: f64) -> (f64, f64) {
    if n <= 0.0 {
        return (0.0, 1.0);
    }
    let z = 1.959_963_984_540_054_f64;
    let p = successes / n;
    let z2 = z * z;
    let denom = 1.0 + z2 / n;
    let centre = (p + z2 / (2.0 * n)) / denom;
    let half = z * (p * (1.0 - p) / n + z2 / (4.0 * n * n)).sqrt() / denom;
    ((centre - half).max(0.0), (centre + half).min(1.0))
}

/// Percentile bootstrap 95 % interval of the mean of `values`.
pub fn bootstrap_ci(values: &[f64], resamples: usize, seed: u64) -> (f64, f64) {
    if values.is_empty() {
        return (0.0, 1.0);
    }
    let mut rng = Rng::new(seed);
    let n = values.len();
    let mut means: Vec<f64> = (0..resamples.max(1)).map(|_| (0..n).map(|_| values[rng.below(n)]).sum::<f64>() / n as f64).collect();
    means.sort_by(f64::total_cmp);
    (percentile(&means, 0.025), percentile(&means, 0.975))
}

/// Nearest-rank percentile of sorted data (`q` in [0, 1]).
pub fn percentile(sorted: &[f64], q: f64) -> f64 {
    if sorted.is_empty() {
        return 0.0;
    }
    let rank = (q * sorted.len() as f64).ceil() as usize;
    sorted[rank.clamp(1, sorted.len()) - 1]
}

/// A pairwise judge's verdict.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Verdict {
    A,
    B,
    Tie,
}

/// The first standalone `A`, `B` or `tie` in a judge's reply.
pub fn parse_verdict(reply: &str) -> Option<Verdict> {
    for w in reply.split(|c: char| !c.is_alphanumeric()).filter(|w| !w.is_empty()) {
        match w {
            // Upper case only: a lower-case "a" is an article.
            "A" => return Some(Verdict::A),
            "B" => return Some(Verdict::B),
            _ if w.eq_ignore_ascii_case("tie") => return Some(Verdict::Tie),
            _ => {}
        }
    }
    None
}

/// Pairwise judge prompt; variables `question`, `answer_a`, `answer_b`.
pub const PAIRWISE_TEMPLATE: &str = "Which answer to the question is better? Reply with A, B, or TIE only.\n\nQuestion: {{ question }}\n\nAnswer A: {{ answer_a }}\n\nAnswer B: {{ answer_b }}\n\nBetter answer:";

/// One test item.
#[derive(Clone, Debug)]
pub struct EvalItem {
    /// The conversation up to (not including) the reference answer.
    pub prompt: Vec<Message>,
    pub reference: String,
    pub meta: Option<RecordMeta>,
}

/// `data` and its sidecar (`x.jsonl` → `x.meta.jsonl`, same line order) when
/// it exists.
pub fn load_items(data: &Path) -> Result<Vec<EvalItem>> {
    let examples = crate::data::read_jsonl(data)?;
    let meta_path: PathBuf = {
        let s = data.to_string_lossy();
        PathBuf::from(format!("{}.meta.jsonl", s.strip_suffix(".jsonl").unwrap_or(&s)))
    };
    let metas: Option<Vec<RecordMeta>> = if meta_path.is_file() && data.is_file() {
        let text = std::fs::read_to_string(&meta_path).map_err(io_at(&meta_path))?;
        let mut v = Vec::new();
        for (i, l) in text.lines().enumerate().filter(|(_, l)| !l.trim().is_empty()) {
            v.push(serde_json::from_str(l).map_err(|e| DistillError::Data { path: meta_path.clone(), line: i + 1, why: e.to_string() })?);
        }
        if v.len() != examples.len() {
            return Err(DistillError::Data { path: meta_path, line: 0, why: format!("{} metadata lines for {} records", v.len(), examples.len()) });
        }
        Some(v)
    } else {
        None
    };
    let mut items = Vec::new();
    for (i, ex) in examples.into_iter().enumerate() {
        let Some(mut msgs) = ex.messages else { continue };
        let Some(pos) = msgs.iter().rposition(|m| m.role == "assistant") else { continue };
        let reference = msgs[pos].content.clone();
        msgs.truncate(pos);
        if msgs.is_empty() {
            continue;
        }
        items.push(EvalItem { prompt: msgs, reference, meta: metas.as_ref().map(|m| m[i].clone()) });
    }
    Ok(items)
}

#[derive(Clone, Debug)]
pub struct EvalOptions {
    pub max_tokens: usize,
    /// Cloud prices for the "without the student" cost.
    pub prices: Prices,
    pub machine_usd_per_hour: f64,
    pub seed: u64,
    pub bootstrap_resamples: usize,
    pub judge_max_tokens: u32,
}

impl Default for EvalOptions {
    fn default() -> Self {
        EvalOptions { max_tokens: 128, prices: Prices::default(), machine_usd_per_hour: 0.0, seed: 0, bootstrap_resamples: 2000, judge_max_tokens: 8 }
    }
}

#[derive(Clone, Debug, Default, Serialize)]
pub struct WinRate {
    pub items: usize,
    pub judgments: usize,
    pub wins: usize,
    pub ties: usize,
    pub losses: usize,
    pub unparsed: usize,
    /// Student wins (+½ per tie) over parsed judgments.
    pub win_rate: f64,
    pub wilson_95: (f64, f64),
    pub bootstrap_95: (f64, f64),
    pub position_consistency: f64,
}

#[derive(Clone, Debug, Default, Serialize)]
pub struct EvalReport {
    pub student: String,
    pub teacher: Option<String>,
    pub items: usize,
    pub closed_form_items: usize,
    pub exact_match: Option<f64>,
    pub token_f1: Option<f64>,
    pub structured_items: usize,
    pub schema_valid: Option<f64>,
    /// Student answer == teacher answer (normalised).
    pub teacher_agreement: f64,
    pub teacher_failures: usize,
    /// Teacher-forced comparison (local teacher with the student's vocabulary).
    pub teacher_forced: Option<Closeness>,
    pub judge: Option<WinRate>,
    pub latency_p50_s: f64,
    pub latency_p95_s: f64,
    pub student_tokens_per_s: f64,
    pub peak_rss_bytes: Option<u64>,
    pub mean_teacher_prompt_tokens: f64,
    pub mean_teacher_completion_tokens: f64,
    /// Whether those token counts were measured (teacher called) or taken
    /// from the student's tokenizer on the references.
    pub teacher_tokens_measured: bool,
    pub cost_per_1k_without_student_usd: f64,
    pub cost_per_1k_with_student_usd: f64,
    pub samples: Vec<EvalSample>,
}

#[derive(Clone, Debug, Serialize)]
pub struct EvalSample {
    pub question: String,
    pub reference: String,
    pub teacher: String,
    pub student: String,
}

/// Peak resident set size of this process (Linux `VmHWM`).
pub fn peak_rss_bytes() -> Option<u64> {
    let s = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = s.lines().find(|l| l.starts_with("VmHWM:"))?;
    let kb: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kb * 1024)
}

fn judge_once(judge: &mut dyn Teacher, tmpl: &hearth_chat::ChatTemplate, q: &str, a: &str, b: &str, opts: &EvalOptions) -> Option<Verdict> {
    let mut vars = serde_json::Map::new();
    vars.insert("question".into(), q.into());
    vars.insert("answer_a".into(), a.into());
    vars.insert("answer_b".into(), b.into());
    let prompt = tmpl.render_vars(&vars, None).ok()?;
    let call = TeacherCall {
        messages: vec![Message { role: "user".into(), content: prompt }],
        max_tokens: opts.judge_max_tokens,
        temperature: 0.0,
        seed: opts.seed,
        schema: None,
        top_k: 0,
    };
    judge.complete(&call).ok().and_then(|r| parse_verdict(&r.text))
}

/// Runs the evaluation; see the module docs.
pub fn evaluate(
    student: &Engine,
    student_name: &str,
    mut teacher: Option<&mut dyn Teacher>,
    judge: Option<&mut dyn Teacher>,
    items: &[EvalItem],
    opts: &EvalOptions,
    log: &mut dyn FnMut(&str),
) -> Result<EvalReport> {
    let mut rep = EvalReport { student: student_name.to_string(), teacher: teacher.as_ref().map(|t| t.name()), items: items.len(), ..Default::default() };
    let (mut em, mut f1, mut n_closed) = (0.0, 0.0, 0usize);
    let (mut valid, mut n_struct) = (0usize, 0usize);
    let mut agree = 0usize;
    let mut latencies = Vec::new();
    let (mut gen_tokens, mut gen_secs) = (0usize, 0.0f64);
    let (mut t_in, mut t_out, mut t_n) = (0u64, 0u64, 0usize);
    let mut forced_examples = Vec::new();
    let mut pairs: Vec<(String, String, String)> = Vec::new();
    for (i, it) in items.iter().enumerate() {
        if i % 10 == 0 {
            log(&format!("item {i}/{}", items.len()));
        }
        let t0 = std::time::Instant::now();
        let (ans, n_prompt, n_gen) = local_answer(student, &it.prompt, opts.max_tokens, SamplerConfig { temperature: 0.0, ..SamplerConfig::default() })?;
        let secs = t0.elapsed().as_secs_f64();
        latencies.push(secs);
        gen_tokens += n_gen;
        gen_secs += secs;

        let teacher_ans = match teacher.as_deref_mut() {
            Some(t) => {
                let call = TeacherCall { messages: it.prompt.clone(), max_tokens: opts.max_tokens as u32, temperature: 0.0, seed: opts.seed, schema: None, top_k: 0 };
                match t.complete(&call) {
                    Ok(r) => {
                        t_in += r.prompt_tokens;
                        t_out += r.completion_tokens;
                        t_n += 1;
                        rep.teacher_tokens_measured = true;
                        r.text
                    }
                    Err(e) => {
                        log(&format!("teacher failed on item {i}: {e}"));
                        rep.teacher_failures += 1;
                        it.reference.clone()
                    }
                }
            }
            None => {
                // Without a teacher the reference is its answer; its token
                // counts are estimated with the student's tokenizer.
                t_in += n_prompt as u64;
                t_out += student.tokenize(&it.reference, false, false).len() as u64;
                t_n += 1;
                it.reference.clone()
            }
        };
        let closed = it.meta.as_ref().is_none_or(|m| m.closed_form);
        if closed {
            n_closed += 1;
            em += f64::from(u8::from(exact_match(&ans, &it.reference)));
            f1 += token_f1(&ans, &it.reference);
        }
        if let Some(schema) = it.meta.as_ref().and_then(|m| m.schema.as_ref()) {
            n_struct += 1;
            let v = jsonschema::validator_for(schema).map_err(|e| DistillError::Config(format!("schema of item {i}: {e}")))?;
            valid += usize::from(schema_valid(&v, &ans));
        }
        agree += usize::from(exact_match(&ans, &teacher_ans));
        let question = it.prompt.last().map(|m| m.content.clone()).unwrap_or_default();
        if rep.samples.len() < 8 {
            rep.samples.push(EvalSample { question: question.clone(), reference: it.reference.clone(), teacher: teacher_ans.clone(), student: ans.clone() });
        }
        let mut conv = it.prompt.clone();
        conv.push(Message { role: "assistant".into(), content: teacher_ans.clone() });
        forced_examples.push(crate::data::Example { messages: Some(conv), text: None, teacher_topk: None });
        pairs.push((question, ans, teacher_ans));
    }
    let n = items.len().max(1) as f64;
    rep.closed_form_items = n_closed;
    if n_closed > 0 {
        rep.exact_match = Some(em / n_closed as f64);
        rep.token_f1 = Some(f1 / n_closed as f64);
    }
    rep.structured_items = n_struct;
    if n_struct > 0 {
        rep.schema_valid = Some(valid as f64 / n_struct as f64);
    }
    rep.teacher_agreement = agree as f64 / n;

    if let Some(te) = teacher.as_deref().and_then(|t| t.engine()) {
        if te.model().config().n_vocab == student.model().config().n_vocab && !forced_examples.is_empty() {
            rep.teacher_forced = Some(compare(te, student, &forced_examples)?);
        }
    }

    if let Some(j) = judge {
        let tmpl = crate::spec::compile_template(PAIRWISE_TEMPLATE, "judge").map_err(|e| DistillError::Config(e.to_string()))?;
        let mut w = WinRate { items: pairs.len(), ..Default::default() };
        let mut per_item = Vec::new();
        let mut consistent = 0usize;
        for (q, s, t) in &pairs {
            // Order 1: student is A. Order 2: student is B.
            let v1 = judge_once(j, &tmpl, q, s, t, opts).map(|v| match v {
                Verdict::A => 1.0,
                Verdict::B => 0.0,
                Verdict::Tie => 0.5,
            });
            let v2 = judge_once(j, &tmpl, q, t, s, opts).map(|v| match v {
                Verdict::B => 1.0,
                Verdict::A => 0.0,
                Verdict::Tie => 0.5,
            });
            let mut scores = Vec::new();
            for v in [v1, v2] {
                match v {
                    None => w.unparsed += 1,
                    Some(x) => {
                        w.judgments += 1;
                        if x == 1.0 {
                            w.wins += 1;
                        } else if x == 0.5 {
                            w.ties += 1;
                        } else {
                            w.losses += 1;
                        }
                        scores.push(x);
                    }
                }
            }
            if let (Some(a), Some(b)) = (v1, v2) {
                consistent += usize::from(a == b);
            }
            if !scores.is_empty() {
                per_item.push(scores.iter().sum::<f64>() / scores.len() as f64);
            }
        }
        let succ = w.wins as f64 + 0.5 * w.ties as f64;
        w.win_rate = if w.judgments > 0 { succ / w.judgments as f64 } else { 0.0 };
        w.wilson_95 = wilson(succ, w.judgments as f64);
        w.bootstrap_95 = bootstrap_ci(&per_item, opts.bootstrap_resamples, opts.seed);
        w.position_consistency = consistent as f64 / pairs.len().max(1) as f64;
        rep.judge = Some(w);
    }

    latencies.sort_by(f64::total_cmp);
    rep.latency_p50_s = percentile(&latencies, 0.5);
    rep.latency_p95_s = percentile(&latencies, 0.95);
    rep.student_tokens_per_s = gen_tokens as f64 / gen_secs.max(1e-9);
    rep.peak_rss_bytes = peak_rss_bytes();
    let tn = t_n.max(1) as f64;
    rep.mean_teacher_prompt_tokens = t_in as f64 / tn;
    rep.mean_teacher_completion_tokens = t_out as f64 / tn;
    rep.cost_per_1k_without_student_usd =
        1000.0 * (rep.mean_teacher_prompt_tokens * opts.prices.input_per_mtok + rep.mean_teacher_completion_tokens * opts.prices.output_per_mtok) / 1e6;
    let mean_secs = latencies.iter().sum::<f64>() / latencies.len().max(1) as f64;
    rep.cost_per_1k_with_student_usd = 1000.0 * mean_secs * opts.machine_usd_per_hour / 3600.0;
    Ok(rep)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exact_match_and_f1_by_hand() {
        assert!(exact_match("The Transmission Control Protocol.", "transmission control protocol"));
        assert!(!exact_match("TCP", "transmission control protocol"));
        // pred tokens {a→dropped} "fast memory chip" vs gold "memory chip used for storage":
        // common = memory, chip → P = 2/3, R = 2/5, F1 = 2·(2/3)(2/5)/(2/3+2/5) = 0.5.
        assert!((token_f1("A fast memory chip", "memory chip used for storage") - 0.5).abs() < 1e-12);
        assert_eq!(token_f1("", ""), 1.0);
        assert_eq!(token_f1("x", ""), 0.0);
        // Multiset: a repeated token counts once per occurrence in the gold.
        // pred "bit bit bit" vs gold "bit byte": common 1, P = 1/3, R = 1/2 → 0.4.
        assert!((token_f1("bit bit bit", "bit byte") - 0.4).abs() < 1e-12);
    }

    #[test]
    fn wilson_interval_by_hand() {
        // 8 of 10 at z = 1.96: the textbook interval is (0.4902, 0.9433).
        let (lo, hi) = wilson(8.0, 10.0);
        assert!((lo - 0.4902).abs() < 1e-4 && (hi - 0.9433).abs() < 1e-4, "{lo} {hi}");
        // 0 of 20: (0, 0.1611).
        let (lo, hi) = wilson(0.0, 20.0);
        assert!(lo.abs() < 1e-12 && (hi - 0.1611).abs() < 1e-4, "{lo} {hi}");
        assert_eq!(wilson(0.0, 0.0), (0.0, 1.0));
    }

    #[test]
    fn percentiles_and_bootstrap() {
        let v: Vec<f64> = (1..=20).map(f64::from).collect();
        assert_eq!(percentile(&v, 0.5), 10.0);
        assert_eq!(percentile(&v, 0.95), 19.0);
        assert_eq!(percentile(&v, 1.0), 20.0);
        let vals = [1.0, 0.0, 1.0, 1.0, 0.5, 1.0, 0.0, 1.0];
        let (lo, hi) = bootstrap_ci(&vals, 2000, 3);
        let mean = vals.iter().sum::<f64>() / vals.len() as f64;
        assert!(lo < mean && mean < hi && lo >= 0.0 && hi <= 1.0, "{lo} {mean} {hi}");
        assert_eq!((lo, hi), bootstrap_ci(&vals, 2000, 3), "seeded");
        assert_eq!(bootstrap_ci(&[1.0; 5], 100, 1), (1.0, 1.0));
    }

    #[test]
    fn verdicts() {
        assert_eq!(parse_verdict("A"), Some(Verdict::A));
        assert_eq!(parse_verdict("Answer B is better"), Some(Verdict::B), "'Answer' is not a verdict");
        assert_eq!(parse_verdict("TIE."), Some(Verdict::Tie));
        assert_eq!(parse_verdict("neither"), None);
        assert_eq!(parse_verdict("a fine answer"), None);
    }
}
