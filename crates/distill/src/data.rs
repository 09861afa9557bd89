//! Training data: the on-disk example format, tokenized samples with loss
//! masks, packing of plain text, batching, and the seeded data order.
//!
//! # On-disk format (JSON Lines, one example per line)
//!
//! ```json
//! {"messages": [{"role": "user", "content": "What is RAM?"},
//!               {"role": "assistant", "content": "Random-access memory ..."}],
//!  "teacher_topk": [[[1234, -0.11], [88, -2.5]], ...]}
//! {"text": "plain text, trained on every token"}
//! ```
//!
//! For `messages`, the conversation is rendered with the model's chat
//! template and only the assistant turns (including each turn's end token)
//! carry loss. `teacher_topk` is optional: entry `i` holds the teacher's
//! top-k `[token_id, log_probability]` pairs for the `i`-th trained token of
//! the rendered conversation (assistant tokens in order). It requires the
//! teacher to share the student's vocabulary, and adds a KL term
//! `Σ_k p_teacher(k) (log p_teacher(k) − log p_student(k))` over those k
//! (see [`crate::exec`]). `hearth distill generate` with a local teacher
//! writes them ([`crate::generate`], [`crate::kd::answer_topk`]).
//!
//! Deliberately absent: multi-turn loss weighting, sequence packing of chat
//! examples (each is its own padded row), and streaming datasets larger than
//! memory.

use crate::error::{io_at, DistillError, Result};
use crate::exec::IGNORE;
use crate::rng::Rng;
use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};

/// One chat message.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Message {
    pub role: String,
    pub content: String,
}

/// One line of a JSONL training file.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Example {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub messages: Option<Vec<Message>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub text: Option<String>,
    /// Per trained token: `(token id, teacher log-probability)` pairs.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub teacher_topk: Option<Vec<Vec<(u32, f32)>>>,
}

/// A tokenized example.
#[derive(Clone, Debug, PartialEq)]
pub struct Sample {
    pub tokens: Vec<u32>,
    /// `mask[i]`: token `i` is a target (predicted from `tokens[..i]`).
    /// `mask[0]` is never used.
    pub mask: Vec<bool>,
    /// Teacher top-k per token position (aligned with `tokens`; empty rows
    /// where there is none).
    pub teacher: Option<Vec<Vec<(u32, f32)>>>,
}

impl Sample {
    /// Number of positions that carry loss.
    pub fn n_targets(&self) -> usize {
        self.mask.iter().skip(1).filter(|&&m| m).count()
    }
}

/// Reads every `*.jsonl` file in `dir` (sorted by name) or the single file
/// `dir`, skipping blank lines.
pub fn read_jsonl(path: &Path) -> Result<Vec<Example>> {
    let files: Vec<PathBuf> = if path.is_dir() {
        let mut v: Vec<PathBuf> = std::fs::read_dir(path)
            .map_err(io_at(path))?
            .filter_map(|e| e.ok().map(|e| e.path()))
            .filter(|p| p.extension().is_some_and(|e| e == "jsonl"))
            .collect();
        v.sort();
        v
    } else {
        vec![path.to_path_buf()]
    };
    if files.is_empty() {
        return Err(DistillError::Data { path: path.to_path_buf(), line: 0, why: "no .jsonl files".into() });
    }
    let mut out = Vec::new();
    for f in files {
        let text = std::fs::read_to_string(&f).map_err(io_at(&f))?;
        for (i, line) in text.lines().enumerate() {
            if line.trim().is_empty() {
                continue;
            }
            let ex: Example =
                serde_json::from_str(line).map_err(|e| DistillError::Data { path: f.clone(), line: i + 1, why: e.to_string() })?;
            if ex.messages.is_some() == ex.text.is_some() {
                return Err(DistillError::Data { path: f.clone(), line: i + 1, why: "exactly one of \"messages\" and \"text\" is required".into() });
            }
            if ex.text.is_some() && ex.teacher_topk.is_some() {
                return Err(DistillError::Data { path: f.clone(), line: i + 1, why: "teacher_topk is only defined for messages".into() });
            }
            out.push(ex);
        }
    }
    Ok(out)
}

/// Tokenizes a conversation, marking the assistant turns as targets.
///
/// `render(messages, add_generation_prompt)` applies the chat template and
/// `tokenize` turns rendered text into ids. The span of assistant message
/// `i` is found by rendering the conversation up to it with the generation
/// prompt (its start) and up to and including it (its end); both must be
/// token prefixes of the whole conversation, which holds for ChatML, Llama 3
/// and Qwen templates.
pub fn tokenize_chat(
    messages: &[Message],
    teacher: Option<&[Vec<(u32, f32)>]>,
    render: &dyn Fn(&[Message], bool) -> Result<String>,
    tokenize: &dyn Fn(&str) -> Vec<u32>,
) -> Result<Sample> {
    let full = tokenize(&render(messages, false)?);
    let mut mask = vec![false; full.len()];
    for (i, m) in messages.iter().enumerate() {
        if m.role != "assistant" {
            continue;
        }
        let start = tokenize(&render(&messages[..i], true)?);
        let end = tokenize(&render(&messages[..=i], false)?);
        if !full.starts_with(&end) || !end.starts_with(&start) {
            return Err(DistillError::Config(
                "the chat template does not render conversations as token prefixes of each other; cannot find assistant turns".into(),
            ));
        }
        mask[start.len()..end.len()].iter_mut().for_each(|v| *v = true);
    }
    if let Some(m0) = mask.first_mut() {
        // The first token is never predicted.
        *m0 = false;
    }
    if mask.iter().all(|m| !m) {
        return Err(DistillError::Config("conversation has no assistant tokens to train on".into()));
    }
    let teacher = match teacher {
        None => None,
        Some(rows) => {
            let n = mask.iter().filter(|&&m| m).count();
            if rows.len() != n {
                return Err(DistillError::Config(format!("teacher_topk has {} rows for {n} assistant tokens", rows.len())));
            }
            let mut it = rows.iter();
            Some(mask.iter().map(|&m| if m { it.next().cloned().unwrap_or_default() } else { Vec::new() }).collect())
        }
    };
    Ok(Sample { tokens: full, mask, teacher })
}

/// Cuts a token stream into windows of `ctx + 1` tokens overlapping by one
/// (so every token but the first is a target exactly once); a final partial
/// window is kept if it has at least two tokens.
pub fn pack_stream(tokens: &[u32], ctx: usize) -> Vec<Sample> {
    let mut out = Vec::new();
    let mut s = 0;
    while s + 1 < tokens.len() {
        let e = (s + ctx + 1).min(tokens.len());
        let w = tokens[s..e].to_vec();
        out.push(Sample { mask: vec![true; w.len()], tokens: w, teacher: None });
        s += ctx;
    }
    out
}

/// A micro-batch in the layout [`crate::exec::Batch`] wants.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct BatchData {
    pub b: usize,
    pub t: usize,
    pub inputs: Vec<u32>,
    pub targets: Vec<u32>,
    pub teacher: Option<Vec<Vec<(u32, f32)>>>,
}

impl BatchData {
    /// Pads `samples` to their longest length (minus one) with `pad`.
    pub fn assemble(samples: &[&Sample], pad: u32) -> BatchData {
        let b = samples.len();
        let t = samples.iter().map(|s| s.tokens.len().saturating_sub(1)).max().unwrap_or(0).max(1);
        let mut inputs = vec![pad; b * t];
        let mut targets = vec![IGNORE; b * t];
        let any_teacher = samples.iter().any(|s| s.teacher.is_some());
        let mut teacher = any_teacher.then(|| vec![Vec::new(); b * t]);
        for (bi, s) in samples.iter().enumerate() {
            let n = s.tokens.len().saturating_sub(1);
            for i in 0..n {
                inputs[bi * t + i] = s.tokens[i];
                if s.mask[i + 1] {
                    targets[bi * t + i] = s.tokens[i + 1];
                    if let (Some(tt), Some(st)) = (teacher.as_mut(), s.teacher.as_ref()) {
                        tt[bi * t + i] = st[i + 1].clone();
                    }
                }
            }
        }
        BatchData { b, t, inputs, targets, teacher }
    }

    pub fn n_targets(&self) -> usize {
        self.targets.iter().filter(|&&t| t != IGNORE).count()
    }
}

/// Seeded data order: each epoch is a fresh shuffle drawn from a generator
/// whose state at the start of the epoch is what a checkpoint stores.
#[derive(Clone, Debug, PartialEq)]
pub struct Loader {
    n: usize,
    order: Vec<usize>,
    pos: usize,
    epoch: u64,
    /// Generator state before this epoch's shuffle.
    epoch_rng: [u64; 4],
    rng: Rng,
}

/// What a checkpoint stores of a [`Loader`].
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct LoaderState {
    pub n: usize,
    pub pos: usize,
    pub epoch: u64,
    /// The generator state as four hex words (JSON numbers lose u64 bits).
    pub epoch_rng: Vec<String>,
}

impl Loader {
    pub fn new(n: usize, seed: u64) -> Loader {
        let rng = Rng::derive(seed, 0xDA7A);
        let mut l = Loader { n, order: Vec::new(), pos: 0, epoch: 0, epoch_rng: rng.state(), rng };
        l.shuffle();
        l
    }

    fn shuffle(&mut self) {
        self.epoch_rng = self.rng.state();
        self.order = (0..self.n).collect();
        self.rng.shuffle(&mut self.order);
        self.pos = 0;
    }

    /// The next `k` sample indices, wrapping into a new epoch as needed.
    pub fn next(&mut self, k: usize) -> Vec<usize> {
        let mut out = Vec::with_capacity(k);
        if self.n == 0 {
            return out;
        }
        while out.len() < k {
            if self.pos == self.n {
                self.epoch += 1;
                self.shuffle();
            }
            out.push(self.order[self.pos]);
            self.pos += 1;
        }
        out
    }

    pub fn epoch(&self) -> u64 {
        self.epoch
    }

    /// Fraction of the current epoch consumed.
    pub fn epoch_progress(&self) -> f64 {
        self.pos as f64 / self.n.max(1) as f64
    }

    pub fn state(&self) -> LoaderState {
        LoaderState { n: self.n, pos: self.pos, epoch: self.epoch, epoch_rng: self.epoch_rng.iter().map(|w| format!("{w:016x}")).collect() }
    }

    /// Rebuilds the loader a checkpoint describes: replays the epoch's
    /// shuffle from the stored generator state.
    pub fn from_state(s: &LoaderState) -> Option<Loader> {
        if s.epoch_rng.len() != 4 || s.pos > s.n {
            return None;
        }
        let mut words = [0u64; 4];
        for (w, h) in words.iter_mut().zip(&s.epoch_rng) {
            *w = u64::from_str_radix(h, 16).ok()?;
        }
        let rng = Rng::from_state(words)?;
        let mut l = Loader { n: s.n, order: Vec::new(), pos: 0, epoch: s.epoch, epoch_rng: words, rng };
        l.shuffle();
        l.pos = s.pos;
        Some(l)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn packing_covers_every_target_once() {
        let toks: Vec<u32> = (0..23).collect();
        let s = pack_stream(&toks, 5);
        let targets: Vec<u32> = s.iter().flat_map(|w| w.tokens[1..].to_vec()).collect();
        assert_eq!(targets, (1..23).collect::<Vec<_>>());
        assert!(s.iter().all(|w| w.tokens.len() <= 6));
    }

    #[test]
    fn batches_pad_and_shift() {
        let a = Sample { tokens: vec![1, 2, 3, 4], mask: vec![false, false, true, true], teacher: None };
        let b = Sample { tokens: vec![5, 6], mask: vec![true, true], teacher: None };
        let bd = BatchData::assemble(&[&a, &b], 0);
        assert_eq!((bd.b, bd.t), (2, 3));
        assert_eq!(bd.inputs, vec![1, 2, 3, 5, 0, 0]);
        assert_eq!(bd.targets, vec![IGNORE, 3, 4, 6, IGNORE, IGNORE]);
        assert_eq!(bd.n_targets(), 3);
    }

    #[test]
    fn loader_resumes_mid_epoch_identically() {
        let mut a = Loader::new(10, 3);
        let _ = a.next(13); // into the second epoch
        let st = a.state();
        let mut b = Loader::from_state(&st).unwrap();
        assert_eq!(a.next(25), b.next(25));
        let mut seen = Loader::new(10, 3).next(10);
        seen.sort();
        assert_eq!(seen, (0..10).collect::<Vec<_>>());
    }

    fn chatml(msgs: &[Message], gen: bool) -> Result<String> {
        let mut s: String = msgs.iter().map(|m| format!("<s>{}\n{}</s>\n", m.role, m.content)).collect();
        if gen {
            s.push_str("<s>assistant\n");
        }
        Ok(s)
    }

    /// A toy tokenizer: one id per byte.
    fn bytes(s: &str) -> Vec<u32> {
        s.bytes().map(u32::from).collect()
    }

    #[test]
    fn chat_masks_cover_exactly_the_assistant_turns() {
        let msgs = vec![
            Message { role: "user".into(), content: "hi".into() },
            Message { role: "assistant".into(), content: "yo".into() },
        ];
        let s = tokenize_chat(&msgs, None, &chatml, &bytes).unwrap();
        let trained: String = s.tokens.iter().zip(&s.mask).filter(|(_, &m)| m).map(|(&t, _)| t as u8 as char).collect();
        assert_eq!(trained, "yo</s>\n");
        let teacher: Vec<Vec<(u32, f32)>> = (0..7).map(|i| vec![(i, -0.5)]).collect();
        let s = tokenize_chat(&msgs, Some(&teacher), &chatml, &bytes).unwrap();
        let t = s.teacher.unwrap();
        let first = s.mask.iter().position(|&m| m).unwrap();
        assert_eq!(t[first], vec![(0, -0.5)]);
        assert!(t[first - 1].is_empty());
        assert!(tokenize_chat(&msgs, Some(&teacher[..3]), &chatml, &bytes).is_err());
        let no_assistant = &msgs[..1];
        assert!(tokenize_chat(no_assistant, None, &chatml, &bytes).is_err());
    }

    #[test]
    fn jsonl_examples_parse_and_validate() {
        let dir = std::env::temp_dir().join(format!("hearth-distill-data-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(
            dir.join("a.jsonl"),
            "{\"text\": \"hello\"}\n\n{\"messages\": [{\"role\": \"user\", \"content\": \"q\"}], \"teacher_topk\": [[[1, -0.5]]]}\n",
        )
        .unwrap();
        let ex = read_jsonl(&dir).unwrap();
        assert_eq!(ex.len(), 2);
        assert_eq!(ex[1].teacher_topk, Some(vec![vec![(1, -0.5)]]));
        std::fs::write(dir.join("b.jsonl"), "{\"text\": \"x\", \"messages\": []}\n").unwrap();
        assert!(matches!(read_jsonl(&dir), Err(DistillError::Data { line: 1, .. })));
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
