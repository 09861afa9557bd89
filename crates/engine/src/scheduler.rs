//! The batching scheduler: one engine thread owns the model and steps every
//! active request together (continuous batching).
//!
//! Each step runs one [`Engine::forward_batch`] holding one decode token for
//! every generating slot plus a bounded chunk of prompt tokens for slots
//! still reading their prompt, so a long prompt delays the others by at most
//! one chunk per step. The weights are read once per step for all streams,
//! which is what makes N concurrent streams cheaper than N times one.
//!
//! - **Slots.** `n_slots` fixed slots, each with its own [`Session`] (KV
//!   cache), sampler (seeded), [`StreamDecoder`] (stop strings) and counts.
//!   A request asking for `n` choices occupies `n` slots: the prompt is read
//!   once, in one slot, and its cache and logits are copied to the others.
//! - **Queue.** Requests wait in a bounded FIFO queue; [`Scheduler::submit`]
//!   fails with [`SubmitError::QueueFull`] instead of growing it.
//! - **Prefix reuse.** Idle slots keep their caches. A new request goes to
//!   the free slot whose cached tokens share the longest prefix with its
//!   prompt (llama-server's `--cache-reuse`-free slot similarity, simplified
//!   to the longest common prefix); only the rest of the prompt is read.
//!   When another slot, busy or idle, holds a longer prefix (clients
//!   sharing a system prompt), its cache is copied up to that prefix; a
//!   prompt sharing a prefix with an older prompt being read in the same
//!   step waits for it and copies it. Clients sharing a system prompt thus
//!   have it evaluated once between them, not once per slot.
//! - **Cancellation.** Events go to an [`EventSink`]; when its receiver is
//!   gone (the client disconnected) the slot is freed before the next step.
//! - **Plug-ins.** A per-choice [`LogitsProcessor`] masks logits before
//!   sampling (constrained decoding) and can end generation when its output
//!   is complete.
//!
//! Deliberately absent: preemption or swapping of running requests, paged
//! or shared KV memory (choices copy the prompt's cache), speculative
//! decoding, priorities. Logprobs are those of the model's raw distribution
//! (before penalties, biases and masks), as OpenAI reports them.

use crate::{Engine, Sampler, SamplerConfig, Session};
use hearth_models::{Logits, SeqInput};
use hearth_tokenizer::StreamDecoder;
use std::collections::VecDeque;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::thread::JoinHandle;

/// Scheduler settings.
#[derive(Clone, Debug)]
pub struct SchedulerConfig {
    /// Concurrent sequences (llama-server `--parallel`).
    pub n_slots: usize,
    /// Context of each slot in tokens (capped at the model's training context).
    pub n_ctx: usize,
    /// Requests allowed to wait for a slot; more are refused.
    pub queue_capacity: usize,
    /// Prompt tokens per step while other slots are generating: bounds how
    /// long a long prompt delays their next token.
    pub prefill_chunk: usize,
    /// Prompt tokens per step when no slot is generating.
    pub prefill_batch: usize,
}

impl Default for SchedulerConfig {
    fn default() -> Self {
        SchedulerConfig {
            n_slots: 4,
            n_ctx: 4096,
            queue_capacity: 64,
            prefill_chunk: 128,
            prefill_batch: 512,
        }
    }
}

/// Masks logits before sampling and follows the sampled tokens (JSON-schema
/// constrained decoding plugs in here: hearth-grammar's `Matcher`).
pub trait LogitsProcessor: Send {
    /// Changes `logits` in place (set disallowed tokens to `-inf`).
    fn process(&mut self, logits: &mut [f32]);
    /// Records the token that was sampled; an error ends the request (the
    /// token was not allowed, e.g. every token was masked).
    fn accept(&mut self, token: u32) -> Result<(), String>;
    /// True once nothing more may follow; generation then stops.
    fn is_finished(&self) -> bool;
}

/// Where a request's events go. Shared by all its choices.
pub trait EventSink: Send + Sync {
    /// Delivers one event; false when the receiver is gone.
    fn send(&self, event: Event) -> bool;
    /// True when the receiver is gone (the client disconnected).
    fn is_closed(&self) -> bool;
}

/// One token's log-probability and the most likely alternatives.
#[derive(Clone, Debug, PartialEq)]
pub struct TokenLogprob {
    pub id: u32,
    /// `token_to_piece(id, special = true)`.
    pub bytes: Vec<u8>,
    pub logprob: f32,
    /// The `top_logprobs` most likely tokens, most likely first.
    pub top: Vec<(u32, Vec<u8>, f32)>,
}

/// Why a choice ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Finish {
    /// An end-of-generation token was sampled (it is not part of the output).
    Eos,
    /// Stop string `index` completed (it is not part of the output).
    Stop { index: usize },
    /// `max_tokens` reached.
    Length,
    /// The logits processor reported that nothing more may follow.
    Constraint,
}

/// What a choice produced.
#[derive(Clone, Debug, PartialEq)]
pub enum Event {
    /// New text (possibly empty when only logprobs were released).
    Delta {
        choice: usize,
        text: String,
        logprobs: Vec<TokenLogprob>,
    },
    /// The choice finished; no more events for it.
    Done {
        choice: usize,
        finish: Finish,
        stats: ChoiceStats,
    },
    /// The request failed; no more events for any of its choices.
    Error { message: String },
}

/// Counts of one finished choice.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ChoiceStats {
    pub prompt_tokens: usize,
    /// Prompt tokens found in the slot's cache (not evaluated again).
    pub cached_tokens: usize,
    /// Sampled tokens, including those of a stop string, excluding an
    /// end-of-generation token.
    pub completion_tokens: usize,
}

/// A request for the scheduler.
pub struct Job {
    pub prompt: Vec<u32>,
    /// Number of choices (each takes a slot).
    pub n: usize,
    /// New tokens per choice, at least 1.
    pub max_tokens: usize,
    /// Choice `i` samples with `seed + i`.
    pub sampler: SamplerConfig,
    pub stop: Vec<String>,
    /// `Some(k)`: report each token's logprob and the `k` most likely.
    pub logprobs: Option<usize>,
    /// Additive biases on raw logits (OpenAI `logit_bias`).
    pub logit_bias: Vec<(u32, f32)>,
    /// Keep going past end-of-generation tokens (benchmarks).
    pub ignore_eos: bool,
    /// Render control tokens as their text (tool-call markers such as
    /// `[TOOL_CALLS]` are control tokens in some vocabularies).
    pub render_special: bool,
    /// Empty, or one per choice.
    pub processors: Vec<Box<dyn LogitsProcessor>>,
    pub sink: Arc<dyn EventSink>,
}

/// Why a job was not accepted.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum SubmitError {
    #[error("the server is busy: {capacity} requests are already waiting")]
    QueueFull { capacity: usize },
    #[error("n = {n} choices need {n} slots, but the server has {slots}")]
    TooManyChoices { n: usize, slots: usize },
    #[error("the prompt has {prompt} tokens and {requested} more were requested, but the context holds {n_ctx}")]
    ContextOverflow {
        prompt: usize,
        requested: usize,
        n_ctx: usize,
    },
    #[error("the prompt is empty")]
    EmptyPrompt,
    #[error("token id {id} is outside the vocabulary ({n_vocab})")]
    TokenOutOfRange { id: u32, n_vocab: usize },
    #[error("invalid job: {0}")]
    Invalid(String),
    #[error("the scheduler has stopped")]
    Stopped,
}

/// A snapshot of the scheduler's counters.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct SchedulerStats {
    pub n_slots: usize,
    pub active_slots: usize,
    pub queued: usize,
    pub steps: u64,
    /// Prompt tokens evaluated (cache hits excluded).
    pub prompt_tokens_evaluated: u64,
    /// Prompt tokens served from slot caches.
    pub prompt_tokens_cached: u64,
    pub tokens_generated: u64,
}

#[derive(Default)]
struct Counters {
    active: AtomicUsize,
    queued: AtomicUsize,
    steps: AtomicU64,
    evaluated: AtomicU64,
    cached: AtomicU64,
    generated: AtomicU64,
}

struct Shared {
    queue: Mutex<VecDeque<Job>>,
    wake: Condvar,
    stop: AtomicBool,
    counters: Counters,
}

/// Owns the engine thread; dropping it stops the thread (waiting requests
/// get an error event).
pub struct Scheduler {
    shared: Arc<Shared>,
    cfg: SchedulerConfig,
    n_vocab: usize,
    thread: Option<JoinHandle<()>>,
}

impl Scheduler {
    /// Starts the engine thread.
    pub fn start(engine: Arc<Engine>, mut cfg: SchedulerConfig) -> Scheduler {
        cfg.n_slots = cfg.n_slots.max(1);
        cfg.n_ctx = cfg
            .n_ctx
            .clamp(1, engine.model().config().n_ctx_train.max(1));
        cfg.prefill_chunk = cfg.prefill_chunk.max(1);
        cfg.prefill_batch = cfg.prefill_batch.max(cfg.prefill_chunk);
        let shared = Arc::new(Shared {
            queue: Mutex::new(VecDeque::new()),
            wake: Condvar::new(),
            stop: AtomicBool::new(false),
            counters: Counters::default(),
        });
        let n_vocab = engine.model().config().n_vocab;
        let (s, c) = (Arc::clone(&shared), cfg.clone());
        let thread = std::thread::Builder::new()
            .name("hearth-engine".into())
            .spawn(move || run(&engine, &c, &s))
            .expect("spawning the engine thread");
        Scheduler {
            shared,
            cfg,
            n_vocab,
            thread: Some(thread),
        }
    }

    pub fn config(&self) -> &SchedulerConfig {
        &self.cfg
    }

    /// Context of each slot.
    pub fn n_ctx(&self) -> usize {
        self.cfg.n_ctx
    }

    /// Queues a job. Checks everything a slot would reject, so an accepted
    /// job only fails if the forward pass itself fails.
    pub fn submit(&self, job: Job) -> Result<(), SubmitError> {
        if job.prompt.is_empty() {
            return Err(SubmitError::EmptyPrompt);
        }
        if job.n == 0 || job.max_tokens == 0 {
            return Err(SubmitError::Invalid(
                "n and max_tokens must be at least 1".into(),
            ));
        }
        if job.n > self.cfg.n_slots {
            return Err(SubmitError::TooManyChoices {
                n: job.n,
                slots: self.cfg.n_slots,
            });
        }
        if !job.processors.is_empty() && job.processors.len() != job.n {
            return Err(SubmitError::Invalid(format!(
                "{} logits processors for {} choices",
                job.processors.len(),
                job.n
            )));
        }
        if let Some(&id) = job
            .prompt
            .iter()
            .chain(job.logit_bias.iter().map(|(t, _)| t))
            .find(|&&t| t as usize >= self.n_vocab)
        {
            return Err(SubmitError::TokenOutOfRange {
                id,
                n_vocab: self.n_vocab,
            });
        }
        if job.prompt.len().saturating_add(job.max_tokens) > self.cfg.n_ctx {
            return Err(SubmitError::ContextOverflow {
                prompt: job.prompt.len(),
                requested: job.max_tokens,
                n_ctx: self.cfg.n_ctx,
            });
        }
        job.sampler.validate().map_err(SubmitError::Invalid)?;
        if self.shared.stop.load(Ordering::Acquire) {
            return Err(SubmitError::Stopped);
        }
        let mut q = self.shared.queue.lock().unwrap_or_else(|e| e.into_inner());
        if q.len() >= self.cfg.queue_capacity {
            return Err(SubmitError::QueueFull {
                capacity: self.cfg.queue_capacity,
            });
        }
        q.push_back(job);
        self.shared
            .counters
            .queued
            .store(q.len(), Ordering::Relaxed);
        drop(q);
        self.shared.wake.notify_one();
        Ok(())
    }

    pub fn stats(&self) -> SchedulerStats {
        let c = &self.shared.counters;
        SchedulerStats {
            n_slots: self.cfg.n_slots,
            active_slots: c.active.load(Ordering::Relaxed),
            queued: c.queued.load(Ordering::Relaxed),
            steps: c.steps.load(Ordering::Relaxed),
            prompt_tokens_evaluated: c.evaluated.load(Ordering::Relaxed),
            prompt_tokens_cached: c.cached.load(Ordering::Relaxed),
            tokens_generated: c.generated.load(Ordering::Relaxed),
        }
    }
}

impl Drop for Scheduler {
    fn drop(&mut self) {
        self.shared.stop.store(true, Ordering::Release);
        self.shared.wake.notify_all();
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// What a slot is doing.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Phase {
    Idle,
    /// Reading the prompt from position `next`.
    Prefill {
        next: usize,
    },
    /// Waiting for slot `primary` to read the shared prompt.
    Follow {
        primary: usize,
    },
    /// The sampled token to evaluate next.
    Decode {
        token: u32,
    },
}

/// A log-probability entry waiting for its text to be released.
struct PendingLogprob {
    /// Output byte range of the token's text.
    start: usize,
    end: usize,
    lp: TokenLogprob,
}

/// A running choice.
struct Active<'t> {
    sink: Arc<dyn EventSink>,
    prompt: Arc<[u32]>,
    choice: usize,
    max_tokens: usize,
    ignore_eos: bool,
    render_special: bool,
    logprobs: Option<usize>,
    logit_bias: Arc<[(u32, f32)]>,
    sampler: Sampler,
    decoder: StreamDecoder<'t>,
    processor: Option<Box<dyn LogitsProcessor>>,
    generated: usize,
    cached: usize,
    /// Bytes of token text pushed into the decoder and released by it.
    pushed: usize,
    released: usize,
    pending: VecDeque<PendingLogprob>,
    /// Slots waiting for this one's prompt (n > 1).
    followers: Vec<usize>,
    /// Admission order, for prefill fairness.
    seq: u64,
}

struct Slot<'t> {
    session: Session,
    logits: Vec<f32>,
    /// Copy of the raw logits when logprobs are wanted.
    raw: Vec<f32>,
    phase: Phase,
    /// Decode token storage (the batch borrows it).
    token: [u32; 1],
    last_used: u64,
    active: Option<Active<'t>>,
}

/// Tokens a slot contributes to the current step.
#[derive(Clone, Copy)]
struct Plan {
    start: usize,
    end: usize,
    want: Logits,
}

fn run(engine: &Engine, cfg: &SchedulerConfig, shared: &Shared) {
    let tok = engine.tokenizer();
    let n_vocab = engine.model().config().n_vocab;
    let mut slots: Vec<Slot<'_>> = (0..cfg.n_slots)
        .map(|_| Slot {
            session: engine.new_session(cfg.n_ctx),
            logits: Vec::with_capacity(n_vocab),
            raw: Vec::new(),
            phase: Phase::Idle,
            token: [0],
            last_used: 0,
            active: None,
        })
        .collect();
    let mut plans: Vec<Option<Plan>> = vec![None; cfg.n_slots];
    let mut order: Vec<usize> = Vec::with_capacity(cfg.n_slots);
    let mut tick: u64 = 0;
    let mut admitted: u64 = 0;
    loop {
        // Admission: first in, first served; a job waits until all its
        // choices fit.
        {
            let mut q = shared.queue.lock().unwrap_or_else(|e| e.into_inner());
            loop {
                let busy = slots.iter().any(|s| s.active.is_some());
                if shared.stop.load(Ordering::Acquire) {
                    for job in q.drain(..) {
                        job.sink.send(Event::Error {
                            message: "the server is shutting down".into(),
                        });
                    }
                    shared.counters.queued.store(0, Ordering::Relaxed);
                    drop(q);
                    for s in slots.iter_mut() {
                        if let Some(a) = s.active.take() {
                            a.sink.send(Event::Error {
                                message: "the server is shutting down".into(),
                            });
                        }
                    }
                    return;
                }
                while let Some(job) = q.front() {
                    if job.sink.is_closed() {
                        q.pop_front();
                        continue;
                    }
                    let free = slots.iter().filter(|s| s.active.is_none()).count();
                    if free < job.n {
                        break;
                    }
                    let Some(job) = q.pop_front() else { break };
                    tick += 1;
                    admitted += 1;
                    admit(&mut slots, job, tok, tick, admitted, &shared.counters);
                }
                shared.counters.queued.store(q.len(), Ordering::Relaxed);
                if busy || slots.iter().any(|s| s.active.is_some()) {
                    break;
                }
                q = shared.wake.wait(q).unwrap_or_else(|e| e.into_inner());
            }
        }

        // Free the slots of clients that went away.
        for s in slots.iter_mut() {
            if s.active.as_ref().is_some_and(|a| a.sink.is_closed()) {
                release(s, tick, &shared.counters);
            }
        }

        // Prompt prefixes already in another slot's cache (a shared system
        // prompt, a conversation continued in another slot) are copied
        // instead of evaluated again.
        for i in 0..slots.len() {
            copy_cached_prefix(&mut slots, i, &shared.counters);
        }

        // Plan the step: every decoding slot, then prompt chunks oldest first.
        let decoding = slots
            .iter()
            .any(|s| matches!(s.phase, Phase::Decode { .. }));
        let mut budget = if decoding {
            cfg.prefill_chunk
        } else {
            cfg.prefill_batch
        };
        order.clear();
        for (i, s) in slots.iter().enumerate() {
            plans[i] = None;
            if let (Phase::Decode { .. }, Some(_)) = (s.phase, &s.active) {
                plans[i] = Some(Plan {
                    start: 0,
                    end: 1,
                    want: Logits::Last,
                });
            } else if let (Phase::Prefill { .. }, Some(_)) = (s.phase, &s.active) {
                order.push(i);
            }
        }
        order.sort_by_key(|&i| slots[i].active.as_ref().map_or(u64::MAX, |a| a.seq));
        for (o, &i) in order.iter().enumerate() {
            if budget == 0 {
                break;
            }
            let (Phase::Prefill { next }, Some(a)) = (slots[i].phase, &slots[i].active) else {
                continue;
            };
            // An older prompt evaluated in this step shares a longer prefix:
            // wait one step and copy it rather than evaluate it twice.
            let limit = a.prompt.len() - 1;
            let shared_soon = order[..o]
                .iter()
                .filter_map(|&j| {
                    let (p, b) = (plans[j]?, slots[j].active.as_ref()?);
                    Some(common_prefix(&b.prompt[..p.end], &a.prompt).min(limit))
                })
                .max()
                .unwrap_or(0);
            if shared_soon >= next + MIN_WAIT_GAIN {
                continue;
            }
            let end = (next + budget).min(a.prompt.len());
            budget -= end - next;
            let want = if end == a.prompt.len() {
                Logits::Last
            } else {
                Logits::None
            };
            plans[i] = Some(Plan {
                start: next,
                end,
                want,
            });
        }
        if plans.iter().all(Option::is_none) {
            continue;
        }

        // One forward pass for the whole batch.
        let result = {
            let mut seqs: Vec<SeqInput<'_>> = Vec::with_capacity(slots.len());
            for (s, plan) in slots.iter_mut().zip(&plans) {
                let Some(p) = plan else { continue };
                let Slot {
                    session,
                    logits,
                    phase,
                    token,
                    active,
                    ..
                } = s;
                let tokens: &[u32] = match (phase, active.as_ref()) {
                    (Phase::Decode { token: t }, _) => {
                        token[0] = *t;
                        &token[..]
                    }
                    (_, Some(a)) => &a.prompt[p.start..p.end],
                    _ => continue,
                };
                seqs.push(SeqInput {
                    tokens,
                    cache: &mut session.cache,
                    logits: p.want,
                    out: logits,
                });
            }
            engine.forward_batch(&mut seqs)
        };
        shared.counters.steps.fetch_add(1, Ordering::Relaxed);
        tick += 1;
        if let Err(e) = result {
            let message = format!("inference failed: {e}");
            for (s, plan) in slots.iter_mut().zip(&plans) {
                if plan.is_some() {
                    if let Some(a) = &s.active {
                        a.sink.send(Event::Error {
                            message: message.clone(),
                        });
                    }
                    // The cache may be half-written: forget it.
                    s.session.truncate(0);
                    release(s, tick, &shared.counters);
                }
            }
            continue;
        }

        // Record what was evaluated, then sample where logits came back.
        for i in 0..slots.len() {
            let Some(p) = plans[i] else { continue };
            let s = &mut slots[i];
            match s.phase {
                Phase::Decode { token } => s.session.tokens.push(token),
                Phase::Prefill { .. } => {
                    if let Some(a) = &s.active {
                        s.session
                            .tokens
                            .extend_from_slice(&a.prompt[p.start..p.end]);
                        shared
                            .counters
                            .evaluated
                            .fetch_add((p.end - p.start) as u64, Ordering::Relaxed);
                    }
                    s.phase = Phase::Prefill { next: p.end };
                }
                _ => {}
            }
            if p.want == Logits::None {
                continue;
            }
            // The prompt is read: hand the cache and logits to followers.
            let followers = s
                .active
                .as_mut()
                .map(|a| std::mem::take(&mut a.followers))
                .unwrap_or_default();
            if !followers.is_empty() {
                let cache = slots[i].session.cache.clone();
                let tokens = slots[i].session.tokens.clone();
                let cached = slots[i].active.as_ref().map_or(0, |a| a.cached);
                for &f in &followers {
                    let (src_logits, dst) = if f < i {
                        let (a, b) = slots.split_at_mut(i);
                        (&b[0].logits, &mut a[f])
                    } else {
                        let (a, b) = slots.split_at_mut(f);
                        (&a[i].logits, &mut b[0])
                    };
                    if dst.phase != (Phase::Follow { primary: i }) {
                        continue;
                    }
                    dst.session.cache = cache.clone();
                    dst.session.tokens.clone_from(&tokens);
                    dst.logits.clone_from(src_logits);
                    if let Some(a) = &mut dst.active {
                        a.cached = cached;
                    }
                    sample_and_emit(&mut slots[f], tok, tick, &shared.counters);
                }
            }
            sample_and_emit(&mut slots[i], tok, tick, &shared.counters);
        }
    }
}

/// Length of the common prefix of two token sequences.
fn common_prefix(a: &[u32], b: &[u32]) -> usize {
    a.iter().zip(b).take_while(|(x, y)| x == y).count()
}

/// Prompt tokens a slot must gain by waiting for another slot's prefill of
/// their shared prefix, so that a one-token overlap (a BOS) does not delay it.
const MIN_WAIT_GAIN: usize = 8;

/// A copied cache may be at most this many positions per prompt position it
/// saves. Copying is a memcpy of the donor's whole buffer (its capacity, not
/// just the prefix), evaluating a position a pass over every weight, so the
/// bound only matters for a long donor context and a short gain.
const COPY_POSITIONS_PER_GAIN: usize = 256;

/// If slot `i` is reading its prompt and another slot's cache holds a longer
/// prefix of that prompt than `i` has evaluated, copies that cache into `i`
/// (truncated to the shared prefix) and moves `i`'s prompt position forward.
/// The copied keys and values are those `i` would compute itself: a
/// position's cache depends only on the tokens up to it, and the kernels
/// give every row the same summation order whatever the batch.
fn copy_cached_prefix(slots: &mut [Slot<'_>], i: usize, c: &Counters) {
    let (Phase::Prefill { next }, Some(a)) = (slots[i].phase, &slots[i].active) else {
        return;
    };
    // Keep at least the last prompt token to evaluate: its logits are needed.
    let limit = a.prompt.len() - 1;
    let mut best: Option<(usize, usize)> = None;
    for (j, s) in slots.iter().enumerate() {
        if j == i {
            continue;
        }
        let n = common_prefix(&s.session.tokens, &a.prompt).min(limit);
        if n > next
            && s.session.tokens.len() <= (n - next).saturating_mul(COPY_POSITIONS_PER_GAIN)
            && best.is_none_or(|(_, m)| n > m)
        {
            best = Some((j, n));
        }
    }
    let Some((d, n)) = best else { return };
    let mut cache = slots[d].session.cache.clone();
    cache.truncate(n);
    let s = &mut slots[i];
    let Some(a) = s.active.as_mut() else { return };
    s.session.cache = cache;
    s.session.tokens.clear();
    s.session.tokens.extend_from_slice(&a.prompt[..n]);
    s.phase = Phase::Prefill { next: n };
    a.cached += n - next;
    c.cached.fetch_add((n - next) as u64, Ordering::Relaxed);
}

/// Places `job` in free slots: the primary is the one sharing the longest
/// prefix with the prompt (least recently used on ties), the followers are
/// the least recently used of the rest.
fn admit<'t>(
    slots: &mut [Slot<'t>],
    mut job: Job,
    tok: &'t hearth_tokenizer::Tokenizer,
    tick: u64,
    seq: u64,
    c: &Counters,
) {
    let prompt: Arc<[u32]> = Arc::from(std::mem::take(&mut job.prompt));
    let common = |s: &Slot<'_>| {
        s.session
            .tokens
            .iter()
            .zip(prompt.iter())
            .take_while(|(a, b)| a == b)
            .count()
    };
    let Some(primary) = slots
        .iter()
        .enumerate()
        .filter(|(_, s)| s.active.is_none())
        .max_by(|(_, a), (_, b)| {
            common(a)
                .cmp(&common(b))
                .then(b.last_used.cmp(&a.last_used))
        })
        .map(|(i, _)| i)
    else {
        return;
    };
    let mut free: Vec<usize> = (0..slots.len())
        .filter(|&i| i != primary && slots[i].active.is_none())
        .collect();
    free.sort_by_key(|&i| slots[i].last_used);
    let followers: Vec<usize> = free.into_iter().take(job.n - 1).collect();
    // Keep at least the last prompt token to evaluate: its logits are needed.
    let keep = common(&slots[primary]).min(prompt.len() - 1);
    c.cached.fetch_add(keep as u64, Ordering::Relaxed);
    let logit_bias: Arc<[(u32, f32)]> = Arc::from(std::mem::take(&mut job.logit_bias));
    let mut processors = std::mem::take(&mut job.processors).into_iter();
    for (choice, &i) in std::iter::once(&primary).chain(&followers).enumerate() {
        let mut cfg = job.sampler.clone();
        cfg.seed = cfg.seed.wrapping_add(choice as u64);
        let mut sampler = Sampler::new(cfg);
        for &t in prompt.iter() {
            sampler.accept(t);
        }
        let s = &mut slots[i];
        c.active.fetch_add(1, Ordering::Relaxed);
        s.last_used = tick;
        s.phase = if choice == 0 {
            s.session.truncate(keep);
            Phase::Prefill { next: keep }
        } else {
            Phase::Follow { primary }
        };
        s.active = Some(Active {
            sink: Arc::clone(&job.sink),
            prompt: Arc::clone(&prompt),
            choice,
            max_tokens: job.max_tokens,
            ignore_eos: job.ignore_eos,
            render_special: job.render_special,
            logprobs: job.logprobs,
            logit_bias: Arc::clone(&logit_bias),
            sampler,
            decoder: StreamDecoder::new(tok, job.render_special)
                .with_stop_strings(job.stop.iter().cloned()),
            processor: processors.next(),
            generated: 0,
            cached: keep,
            pushed: 0,
            released: 0,
            pending: VecDeque::new(),
            followers: if choice == 0 {
                followers.clone()
            } else {
                Vec::new()
            },
            seq,
        });
    }
}

/// Ends a slot's choice; the slot keeps its cache for prefix reuse.
fn release(s: &mut Slot<'_>, tick: u64, c: &Counters) {
    if s.active.take().is_some() {
        c.active.fetch_sub(1, Ordering::Relaxed);
    }
    s.phase = Phase::Idle;
    s.last_used = tick;
}

/// Samples from the slot's logits and emits what that releases.
fn sample_and_emit(s: &mut Slot<'_>, tok: &hearth_tokenizer::Tokenizer, tick: u64, c: &Counters) {
    let Some(a) = s.active.as_mut() else { return };
    let logits = &mut s.logits;
    if a.logprobs.is_some() {
        // Penalties, biases and masks change `logits`; logprobs are reported
        // from the raw distribution.
        s.raw.clear();
        s.raw.extend_from_slice(logits);
    }
    for &(t, b) in a.logit_bias.iter() {
        if let Some(l) = logits.get_mut(t as usize) {
            *l += b;
        }
    }
    if let Some(p) = a.processor.as_mut() {
        p.process(logits);
    }
    let id = a.sampler.sample(logits);
    if let Some(p) = a.processor.as_mut() {
        if let Err(message) = p.accept(id) {
            a.sink.send(Event::Error {
                message: format!("constrained decoding failed: {message}"),
            });
            release(s, tick, c);
            return;
        }
    }
    let finish;
    let mut text = String::new();
    let mut released = Vec::new();
    if !a.ignore_eos && tok.is_eog(id) {
        finish = Some(Finish::Eos);
    } else {
        a.generated += 1;
        c.generated.fetch_add(1, Ordering::Relaxed);
        let start = a.pushed;
        a.pushed += tok.token_to_piece(id, a.render_special).len();
        if let Some(k) = a.logprobs {
            a.pending.push_back(PendingLogprob {
                start,
                end: a.pushed,
                lp: logprob_entry(&s.raw, id, k, tok),
            });
        }
        let chunk = a.decoder.push(id);
        text = chunk.text;
        a.released += text.len();
        finish = if let Some(m) = chunk.stop {
            Some(Finish::Stop { index: m.index })
        } else if a.processor.as_ref().is_some_and(|p| p.is_finished()) {
            Some(Finish::Constraint)
        } else if a.generated >= a.max_tokens {
            Some(Finish::Length)
        } else {
            None
        };
        // Logprobs go out with their token's text: those whose text is fully
        // released; at a stop string also those that contributed any
        // released text (the rest belong to the stop string and are dropped).
        let at_stop = matches!(finish, Some(Finish::Stop { .. }));
        while let Some(p) = a.pending.front() {
            if !(p.end <= a.released || (at_stop && p.start < a.released)) {
                break;
            }
            released.extend(a.pending.pop_front().map(|p| p.lp));
        }
    }
    if finish.is_some() && !matches!(finish, Some(Finish::Stop { .. })) {
        text.push_str(&a.decoder.finish().text);
        released.extend(a.pending.drain(..).map(|p| p.lp));
    }
    let mut alive = true;
    if !text.is_empty() || !released.is_empty() {
        alive = a.sink.send(Event::Delta {
            choice: a.choice,
            text,
            logprobs: released,
        });
    }
    match finish {
        Some(f) => {
            // Free the slot first, so counters are current when the client
            // sees the end.
            let stats = ChoiceStats {
                prompt_tokens: a.prompt.len(),
                cached_tokens: a.cached,
                completion_tokens: a.generated,
            };
            let (sink, choice) = (Arc::clone(&a.sink), a.choice);
            release(s, tick, c);
            sink.send(Event::Done {
                choice,
                finish: f,
                stats,
            });
        }
        None if !alive => release(s, tick, c),
        None => s.phase = Phase::Decode { token: id },
    }
}

/// The chosen token's log-probability and the `k` most likely tokens, from
/// raw logits.
fn logprob_entry(
    raw: &[f32],
    id: u32,
    k: usize,
    tok: &hearth_tokenizer::Tokenizer,
) -> TokenLogprob {
    let max = raw.iter().copied().fold(f32::NEG_INFINITY, f32::max) as f64;
    let lse = (raw
        .iter()
        .map(|&l| (l as f64 - max).exp())
        .sum::<f64>()
        .ln()
        + max) as f32;
    // Top k by a bounded insertion list (k <= 20): one pass, no sort of the
    // vocabulary; ties keep the lower id first.
    let mut top: Vec<(u32, f32)> = Vec::with_capacity(k + 1);
    if k > 0 {
        for (i, &l) in raw.iter().enumerate() {
            if top.len() == k && top.last().is_some_and(|&(_, m)| l <= m) {
                continue;
            }
            let at = top.iter().position(|&(_, m)| l > m).unwrap_or(top.len());
            top.insert(at, (i as u32, l));
            top.truncate(k);
        }
    }
    TokenLogprob {
        id,
        bytes: tok.token_to_piece(id, true).into_owned(),
        logprob: raw.get(id as usize).map_or(f32::NEG_INFINITY, |&l| l - lse),
        top: top
            .into_iter()
            .map(|(i, l)| (i, tok.token_to_piece(i, true).into_owned(), l - lse))
            .collect(),
    }
}
