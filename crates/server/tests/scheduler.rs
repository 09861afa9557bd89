//! The engine's batching scheduler, driven directly (no HTTP) on the
//! random-weight test model.

mod common;

use hearth_engine::scheduler::{
    ChoiceStats, Event, EventSink, Finish, Job, LogitsProcessor, Scheduler, SchedulerConfig,
    SubmitError, TokenLogprob,
};
use hearth_engine::SamplerConfig;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{channel, Receiver, Sender};
use std::sync::{Arc, Mutex};
use std::time::Duration;

struct Sink {
    tx: Mutex<Sender<Event>>,
    closed: AtomicBool,
}

impl EventSink for Sink {
    fn send(&self, event: Event) -> bool {
        !self.closed.load(Ordering::SeqCst) && self.tx.lock().unwrap().send(event).is_ok()
    }
    fn is_closed(&self) -> bool {
        self.closed.load(Ordering::SeqCst)
    }
}

fn sink() -> (Arc<Sink>, Receiver<Event>) {
    let (tx, rx) = channel();
    (
        Arc::new(Sink {
            tx: Mutex::new(tx),
            closed: AtomicBool::new(false),
        }),
        rx,
    )
}

fn sched(n_slots: usize, queue: usize) -> Scheduler {
    Scheduler::start(
        common::engine(),
        SchedulerConfig {
            n_slots,
            n_ctx: 1024,
            queue_capacity: queue,
            prefill_chunk: 16,
            prefill_batch: 64,
        },
    )
}

fn prompt(text: &str) -> Vec<u32> {
    common::engine().tokenize(text, true, true)
}

fn job(prompt: Vec<u32>, max_tokens: usize, sampler: SamplerConfig, sink: Arc<Sink>) -> Job {
    Job {
        prompt,
        n: 1,
        max_tokens,
        sampler,
        stop: Vec::new(),
        logprobs: None,
        logit_bias: Vec::new(),
        ignore_eos: true,
        render_special: false,
        processors: Vec::new(),
        sink,
    }
}

#[derive(Debug, Default, Clone)]
struct Outcome {
    text: Vec<String>,
    logprobs: Vec<Vec<TokenLogprob>>,
    finish: Vec<Option<Finish>>,
    stats: Vec<ChoiceStats>,
}

/// Collects events until every choice is done.
fn collect(rx: &Receiver<Event>, n: usize) -> Outcome {
    let mut o = Outcome {
        text: vec![String::new(); n],
        logprobs: vec![Vec::new(); n],
        finish: vec![None; n],
        stats: vec![ChoiceStats::default(); n],
    };
    let mut left = n;
    while left > 0 {
        match rx.recv_timeout(Duration::from_secs(300)).expect("an event") {
            Event::Delta {
                choice,
                text,
                logprobs,
            } => {
                o.text[choice].push_str(&text);
                o.logprobs[choice].extend(logprobs);
            }
            Event::Done {
                choice,
                finish,
                stats,
            } => {
                assert!(o.finish[choice].is_none(), "choice {choice} finished twice");
                o.finish[choice] = Some(finish);
                o.stats[choice] = stats;
                left -= 1;
            }
            Event::Error { message } => panic!("error event: {message}"),
        }
    }
    o
}

fn run(s: &Scheduler, j: Job, rx: &Receiver<Event>) -> Outcome {
    let n = j.n;
    s.submit(j).unwrap();
    collect(rx, n)
}

fn greedy() -> SamplerConfig {
    SamplerConfig::greedy()
}

const PROMPTS: [&str; 4] = [
    "The quick brown fox jumps over the lazy dog.",
    "Hello, how are you today?",
    "In 1492 Columbus sailed the ocean blue, and then",
    "fn main() { println!(\"hi\"); }",
];

#[test]
fn batched_decoding_matches_one_at_a_time() {
    let solo = sched(1, 8);
    let expected: Vec<String> = PROMPTS
        .iter()
        .map(|p| {
            let (sk, rx) = sink();
            run(&solo, job(prompt(p), 24, greedy(), sk), &rx).text[0].clone()
        })
        .collect();
    drop(solo);
    // All four at once share every forward pass.
    let s = sched(4, 8);
    let rxs: Vec<Receiver<Event>> = PROMPTS
        .iter()
        .map(|p| {
            let (sk, rx) = sink();
            s.submit(job(prompt(p), 24, greedy(), sk)).unwrap();
            rx
        })
        .collect();
    for (i, rx) in rxs.iter().enumerate() {
        let o = collect(rx, 1);
        assert_eq!(o.text[0], expected[i], "prompt {i}");
        assert_eq!(o.finish[0], Some(Finish::Length));
        assert_eq!(o.stats[0].completion_tokens, 24);
    }
    let st = s.stats();
    // Batching happened: far fewer steps than 4 × 24 decode steps.
    assert!(st.steps < 4 * 24, "steps = {}", st.steps);
}

#[test]
fn long_prompts_are_read_in_chunks_beside_generating_slots() {
    let long: String = (0..60).map(|i| format!("word{i} ")).collect();
    let solo = sched(1, 8);
    let (sk, rx) = sink();
    let want_long = run(&solo, job(prompt(&long), 8, greedy(), sk), &rx);
    let (sk, rx) = sink();
    let want_short = run(&solo, job(prompt(PROMPTS[1]), 40, greedy(), sk), &rx);
    drop(solo);

    let s = sched(2, 8);
    let (sk1, rx1) = sink();
    s.submit(job(prompt(PROMPTS[1]), 40, greedy(), sk1))
        .unwrap();
    // Wait until the short one is generating, then add the long prompt.
    let head = match rx1.recv_timeout(Duration::from_secs(60)).unwrap() {
        Event::Delta { text, .. } => text,
        other => panic!("{other:?}"),
    };
    let steps_before = s.stats().steps;
    let (sk2, rx2) = sink();
    let n_long = prompt(&long).len();
    assert!(n_long > 100, "{n_long}");
    s.submit(job(prompt(&long), 8, greedy(), sk2)).unwrap();
    let got_long = collect(&rx2, 1);
    assert_eq!(got_long.text, want_long.text);
    // 16 prompt tokens per step while the other slot decodes.
    assert!(
        s.stats().steps - steps_before >= (n_long / 16) as u64,
        "prompt read in too few steps"
    );
    let rest = collect(&rx1, 1);
    assert_eq!(
        format!("{head}{}", rest.text[0]),
        want_short.text[0],
        "the generating slot was not disturbed"
    );
}

#[test]
fn prefix_reuse_picks_the_slot_with_the_longest_common_prefix() {
    let s = sched(2, 8);
    let a = prompt("System: you are terse.\nUser: tell me about rivers and lakes and seas");
    let b = prompt("Completely different conversation about cooking pasta at home");
    let (sk, rx) = sink();
    let first = run(&s, job(a.clone(), 4, greedy(), sk), &rx);
    assert_eq!(first.stats[0].cached_tokens, 0);
    let (sk, rx) = sink();
    run(&s, job(b.clone(), 4, greedy(), sk), &rx);
    // The slot that served `b` is the most recently used; a continuation of
    // `a` must still go to `a`'s slot.
    let mut a2 = a.clone();
    a2.extend(prompt(" and oceans"));
    let (sk, rx) = sink();
    let o = run(&s, job(a2, 4, greedy(), sk), &rx);
    assert!(
        o.stats[0].cached_tokens >= a.len() - 1,
        "cached {} of {}",
        o.stats[0].cached_tokens,
        a.len()
    );
    // The same prompt again: everything but the last token is cached.
    let (sk, rx) = sink();
    let again = run(&s, job(b.clone(), 4, greedy(), sk), &rx);
    assert_eq!(again.stats[0].cached_tokens, b.len() - 1);
    assert!(s.stats().prompt_tokens_cached >= (a.len() - 1 + b.len() - 1) as u64);
}

#[test]
fn n_choices_read_the_prompt_once() {
    let s = sched(3, 8);
    let p = prompt(PROMPTS[2]);
    let before = s.stats().prompt_tokens_evaluated;
    let (sk, rx) = sink();
    let mut j = job(
        p.clone(),
        12,
        SamplerConfig {
            temperature: 1.0,
            seed: 9,
            ..SamplerConfig::default()
        },
        sk,
    );
    j.n = 3;
    let o = run(&s, j, &rx);
    assert_eq!(
        s.stats().prompt_tokens_evaluated - before,
        p.len() as u64,
        "the prompt was evaluated once"
    );
    assert!(o.finish.iter().all(|f| *f == Some(Finish::Length)));
    // Each choice has its own seed (seed + index): they differ.
    assert!(
        o.text[0] != o.text[1] || o.text[1] != o.text[2],
        "{:?}",
        o.text
    );
    // Greedy choices are identical.
    let (sk, rx) = sink();
    let mut j = job(p, 12, greedy(), sk);
    j.n = 3;
    let g = run(&s, j, &rx);
    assert!(g.text.iter().all(|t| *t == g.text[0]), "{:?}", g.text);
}

#[test]
fn seeded_sampling_is_reproducible() {
    let s = sched(2, 8);
    let cfg = |seed| SamplerConfig {
        temperature: 1.0,
        top_k: 0,
        top_p: 1.0,
        min_p: 0.0,
        seed,
        ..SamplerConfig::default()
    };
    let go = |seed| {
        let (sk, rx) = sink();
        run(&s, job(prompt(PROMPTS[0]), 16, cfg(seed), sk), &rx).text[0].clone()
    };
    let a = go(42);
    assert_eq!(a, go(42));
    assert_ne!(a, go(43));
}

#[test]
fn refusals() {
    let s = sched(2, 8);
    let (sk, _rx) = sink();
    let p = prompt(PROMPTS[0]);
    assert_eq!(
        s.submit(job(p.clone(), 1024, greedy(), sk.clone())),
        Err(SubmitError::ContextOverflow {
            prompt: p.len(),
            requested: 1024,
            n_ctx: 1024
        })
    );
    let mut j = job(p.clone(), 4, greedy(), sk.clone());
    j.n = 3;
    assert_eq!(
        s.submit(j),
        Err(SubmitError::TooManyChoices { n: 3, slots: 2 })
    );
    assert_eq!(
        s.submit(job(Vec::new(), 4, greedy(), sk.clone())),
        Err(SubmitError::EmptyPrompt)
    );
    let n_vocab = common::engine().model().config().n_vocab;
    assert!(matches!(
        s.submit(job(vec![n_vocab as u32], 4, greedy(), sk.clone())),
        Err(SubmitError::TokenOutOfRange { .. })
    ));
    assert!(matches!(
        s.submit(job(p.clone(), 0, greedy(), sk.clone())),
        Err(SubmitError::Invalid(_))
    ));
    let bad = SamplerConfig {
        top_p: 0.0,
        ..SamplerConfig::default()
    };
    assert!(
        matches!(s.submit(job(p, 4, bad, sk)), Err(SubmitError::Invalid(m)) if m.contains("top_p"))
    );
}

#[test]
fn a_full_queue_refuses_and_a_closed_sink_frees_its_slot() {
    let s = sched(1, 1);
    let (busy, busy_rx) = sink();
    s.submit(job(prompt(PROMPTS[0]), 900, greedy(), busy.clone()))
        .unwrap();
    // Wait until it holds the slot.
    assert!(matches!(
        busy_rx.recv_timeout(Duration::from_secs(60)).unwrap(),
        Event::Delta { .. }
    ));
    let (waiting, waiting_rx) = sink();
    s.submit(job(prompt(PROMPTS[1]), 3, greedy(), waiting))
        .unwrap();
    let (third, _r) = sink();
    assert_eq!(
        s.submit(job(prompt(PROMPTS[2]), 3, greedy(), third)),
        Err(SubmitError::QueueFull { capacity: 1 })
    );
    assert_eq!(s.stats().queued, 1);
    // The client of the busy job goes away: its slot is freed and the
    // waiting job runs to completion.
    busy.closed.store(true, Ordering::SeqCst);
    let o = collect(&waiting_rx, 1);
    assert_eq!(o.finish[0], Some(Finish::Length));
    // The busy job never finished: it was cancelled, far short of 900 tokens.
    let mut got = 0;
    while let Ok(ev) = busy_rx.try_recv() {
        assert!(matches!(ev, Event::Delta { .. }), "{ev:?}");
        got += 1;
    }
    assert!(got < 900);
    assert_eq!(s.stats().queued, 0);
}

#[test]
fn stop_strings_end_the_text_and_drop_their_logprobs() {
    let s = sched(1, 8);
    let p = prompt(PROMPTS[3]);
    let (sk, rx) = sink();
    let mut j = job(p.clone(), 20, greedy(), sk);
    j.logprobs = Some(3);
    let full = run(&s, j, &rx);
    let text = &full.text[0];
    assert_eq!(full.logprobs[0].len(), 20);
    for lp in &full.logprobs[0] {
        assert_eq!(lp.top.len(), 3);
        // Greedy: the chosen token is the most likely one.
        assert_eq!(lp.top[0].0, lp.id);
        assert!((lp.top[0].2 - lp.logprob).abs() < 1e-6);
        assert!(lp.top.windows(2).all(|w| w[0].2 >= w[1].2));
        assert!(lp.logprob <= 0.0);
    }
    // A stop string made of the text of tokens 6..8 (byte offsets from the pieces).
    let pieces: Vec<Vec<u8>> = full.logprobs[0].iter().map(|l| l.bytes.clone()).collect();
    let start: usize = pieces[..6].iter().map(Vec::len).sum();
    let end: usize = pieces[..8].iter().map(Vec::len).sum();
    let stop = String::from_utf8_lossy(&pieces.concat()[start..end]).into_owned();
    assert!(text.contains(&stop), "{text:?} / {stop:?}");
    let cut = text.find(&stop).unwrap();
    let (sk, rx) = sink();
    let mut j = job(p, 20, greedy(), sk);
    j.logprobs = Some(0);
    j.stop = vec!["never-appears".into(), stop.clone()];
    let o = run(&s, j, &rx);
    assert_eq!(
        o.text[0],
        text[..cut],
        "the output ends before the stop string"
    );
    assert_eq!(o.finish[0], Some(Finish::Stop { index: 1 }));
    // Logprobs cover the released text, not the stop string's tokens.
    let lp_text: Vec<u8> = o.logprobs[0].iter().flat_map(|l| l.bytes.clone()).collect();
    assert!(
        lp_text.len() >= cut && lp_text.len() < end,
        "{} released bytes for cut {cut}",
        lp_text.len()
    );
    assert!(o.logprobs[0].iter().all(|l| l.top.is_empty()));
    assert!(o.stats[0].completion_tokens <= 8);
}

/// Allows only the tokens in `allowed`, in any order, and is complete
/// after `len` tokens.
struct OnlyThese {
    allowed: Vec<u32>,
    len: usize,
    seen: Arc<Mutex<Vec<u32>>>,
}

impl LogitsProcessor for OnlyThese {
    fn process(&mut self, logits: &mut [f32]) {
        for (i, l) in logits.iter_mut().enumerate() {
            if !self.allowed.contains(&(i as u32)) {
                *l = f32::NEG_INFINITY;
            }
        }
    }
    fn accept(&mut self, token: u32) -> Result<(), String> {
        if !self.allowed.contains(&token) {
            return Err(format!("token {token} is not allowed"));
        }
        self.seen.lock().unwrap().push(token);
        Ok(())
    }
    fn is_finished(&self) -> bool {
        self.seen.lock().unwrap().len() >= self.len
    }
}

#[test]
fn logits_processors_mask_and_complete() {
    let s = sched(2, 8);
    let allowed = prompt("alpha beta gamma");
    let seen = Arc::new(Mutex::new(Vec::new()));
    let (sk, rx) = sink();
    let mut j = job(
        prompt(PROMPTS[0]),
        50,
        SamplerConfig {
            temperature: 1.0,
            seed: 3,
            ..SamplerConfig::default()
        },
        sk,
    );
    j.processors = vec![Box::new(OnlyThese {
        allowed: allowed.clone(),
        len: 5,
        seen: seen.clone(),
    })];
    let o = run(&s, j, &rx);
    assert_eq!(o.finish[0], Some(Finish::Constraint));
    let seen = seen.lock().unwrap();
    assert_eq!(seen.len(), 5);
    assert!(
        seen.iter().all(|t| allowed.contains(t)),
        "{seen:?} ⊄ {allowed:?}"
    );
    assert_eq!(o.stats[0].completion_tokens, 5);
}

#[test]
fn logit_bias_forces_and_forbids_tokens() {
    let s = sched(1, 8);
    let target = prompt("banana")[0];
    let (sk, rx) = sink();
    let mut j = job(prompt(PROMPTS[1]), 5, greedy(), sk);
    j.logit_bias = vec![(target, 100.0)];
    run(&s, j, &rx);
    // Greedy with +100 on one token: every token is that token.
    let (sk, rx) = sink();
    let mut j = job(prompt(PROMPTS[1]), 5, greedy(), sk);
    j.logit_bias = vec![(target, 100.0)];
    j.logprobs = Some(0);
    let o = run(&s, j, &rx);
    assert!(o.logprobs[0].iter().all(|l| l.id == target));
    // -100 on the greedy first token changes it.
    let (sk, rx) = sink();
    let mut j = job(prompt(PROMPTS[1]), 1, greedy(), sk);
    j.logprobs = Some(0);
    let first = run(&s, j, &rx).logprobs[0][0].id;
    let (sk, rx) = sink();
    let mut j = job(prompt(PROMPTS[1]), 1, greedy(), sk);
    j.logprobs = Some(0);
    j.logit_bias = vec![(first, -100.0)];
    assert_ne!(run(&s, j, &rx).logprobs[0][0].id, first);
}

#[test]
fn end_of_generation_stops_unless_ignored() {
    let s = sched(1, 8);
    let eos = common::engine().tokenizer().eos().unwrap();
    // Force the end token with a bias: the choice ends with Eos and no text.
    let (sk, rx) = sink();
    let mut j = job(prompt(PROMPTS[0]), 5, greedy(), sk);
    j.ignore_eos = false;
    j.logit_bias = vec![(eos, 100.0)];
    let o = run(&s, j, &rx);
    assert_eq!(o.finish[0], Some(Finish::Eos));
    assert_eq!(o.stats[0].completion_tokens, 0);
    assert_eq!(o.text[0], "");
    let (sk, rx) = sink();
    let mut j = job(prompt(PROMPTS[0]), 5, greedy(), sk);
    j.logit_bias = vec![(eos, 100.0)];
    let o = run(&s, j, &rx);
    assert_eq!(o.finish[0], Some(Finish::Length));
    assert_eq!(o.stats[0].completion_tokens, 5);
}

#[test]
fn many_concurrent_jobs_all_finish() {
    let s = sched(4, 64);
    let rxs: Vec<_> = (0..24)
        .map(|i| {
            let (sk, rx) = sink();
            let p = prompt(&format!("request number {i}: {}", PROMPTS[i % 4]));
            s.submit(job(
                p,
                3 + i % 5,
                SamplerConfig {
                    seed: i as u64,
                    ..SamplerConfig::default()
                },
                sk,
            ))
            .unwrap();
            (i, rx)
        })
        .collect();
    for (i, rx) in rxs {
        let o = collect(&rx, 1);
        assert_eq!(o.stats[0].completion_tokens, 3 + i % 5);
    }
    let st = s.stats();
    assert_eq!((st.active_slots, st.queued), (0, 0));
}

/// Rejects every token it is shown (a constraint that has gone wrong).
struct RejectAll;

impl LogitsProcessor for RejectAll {
    fn process(&mut self, _logits: &mut [f32]) {}
    fn accept(&mut self, token: u32) -> Result<(), String> {
        Err(format!("token {token} rejected"))
    }
    fn is_finished(&self) -> bool {
        false
    }
}

#[test]
fn a_failing_processor_ends_its_request_with_an_error() {
    let s = sched(1, 8);
    let (sk, rx) = sink();
    let mut j = job(prompt(PROMPTS[0]), 10, greedy(), sk);
    j.processors = vec![Box::new(RejectAll)];
    s.submit(j).unwrap();
    match rx.recv_timeout(Duration::from_secs(60)).unwrap() {
        Event::Error { message } => assert!(message.contains("rejected"), "{message}"),
        other => panic!("{other:?}"),
    }
    // The slot is free for the next request.
    let (sk, rx) = sink();
    assert_eq!(
        run(&s, job(prompt(PROMPTS[1]), 2, greedy(), sk), &rx).finish[0],
        Some(Finish::Length)
    );
    assert_eq!(s.stats().active_slots, 0);
}

#[test]
fn control_tokens_render_only_when_asked() {
    let s = sched(1, 8);
    let tok = common::engine();
    let im_start = tok.tokenizer().token_id("<|im_start|>").unwrap();
    assert!(tok.tokenizer().is_control(im_start) && !tok.tokenizer().is_eog(im_start));
    for (special, want) in [(false, ""), (true, "<|im_start|><|im_start|>")] {
        let (sk, rx) = sink();
        let mut j = job(prompt(PROMPTS[0]), 2, greedy(), sk);
        j.logit_bias = vec![(im_start, 100.0)];
        j.render_special = special;
        let o = run(&s, j, &rx);
        assert_eq!(o.text[0], want);
        assert_eq!(o.stats[0].completion_tokens, 2);
    }
}

const SYSTEM: &str = "System: you are a careful assistant who answers questions about \
    geography, rivers, lakes, mountains and the weather in short, plain sentences.\nUser: ";

/// Seeded sampling (not greedy), so that a changed cache or RNG would show.
fn sampled(seed: u64) -> SamplerConfig {
    SamplerConfig {
        temperature: 0.9,
        seed,
        ..SamplerConfig::default()
    }
}

/// What `p` produces alone on a fresh scheduler (nothing cached).
fn alone(p: &[u32], max_tokens: usize, seed: u64) -> Outcome {
    let s = sched(1, 8);
    let (sk, rx) = sink();
    run(&s, job(p.to_vec(), max_tokens, sampled(seed), sk), &rx)
}

fn shared_len(a: &[u32], b: &[u32]) -> usize {
    a.iter().zip(b).take_while(|(x, y)| x == y).count()
}

#[test]
fn prompts_arriving_together_read_their_shared_prefix_once() {
    let a = prompt(&format!("{SYSTEM}tell me about the Danube"));
    let b = prompt(&format!("{SYSTEM}why is the sea salty?"));
    let common = shared_len(&a, &b);
    assert!(common >= 20, "shared prefix of {common} tokens");
    let (want_a, want_b) = (alone(&a, 12, 1), alone(&b, 12, 2));

    let s = sched(2, 8);
    let (ska, rxa) = sink();
    let (skb, rxb) = sink();
    s.submit(job(a.clone(), 12, sampled(1), ska)).unwrap();
    s.submit(job(b.clone(), 12, sampled(2), skb)).unwrap();
    let (got_a, got_b) = (collect(&rxa, 1), collect(&rxb, 1));
    assert_eq!(got_a.text, want_a.text);
    assert_eq!(got_b.text, want_b.text, "the copied prefix gives the same tokens");
    assert_eq!(got_a.stats[0].cached_tokens, 0);
    assert!(
        got_b.stats[0].cached_tokens >= common,
        "cached {} of a {common}-token shared prefix",
        got_b.stats[0].cached_tokens
    );
    let st = s.stats();
    assert_eq!(
        st.prompt_tokens_evaluated as usize,
        a.len() + b.len() - got_b.stats[0].cached_tokens,
        "the shared prefix was evaluated once"
    );
    assert_eq!(st.prompt_tokens_cached as usize, got_b.stats[0].cached_tokens);
}

#[test]
fn a_request_arriving_mid_decode_copies_a_busy_prefix_and_changes_nothing() {
    let a = prompt(&format!("{SYSTEM}list three rivers"));
    let b = prompt(&format!("{SYSTEM}and three lakes, please"));
    let common = shared_len(&a, &b);
    let (want_a, want_b) = (alone(&a, 40, 7), alone(&b, 10, 8));

    let s = sched(2, 8);
    let (ska, rxa) = sink();
    s.submit(job(a.clone(), 40, sampled(7), ska)).unwrap();
    // `a` is generating (its prompt is in its slot's cache) when `b` comes.
    let head = match rxa.recv_timeout(Duration::from_secs(60)).unwrap() {
        Event::Delta { text, .. } => text,
        other => panic!("{other:?}"),
    };
    let (skb, rxb) = sink();
    s.submit(job(b.clone(), 10, sampled(8), skb)).unwrap();
    let got_b = collect(&rxb, 1);
    let rest_a = collect(&rxa, 1);
    assert_eq!(got_b.text, want_b.text);
    assert!(
        got_b.stats[0].cached_tokens >= common,
        "cached {} of a {common}-token shared prefix",
        got_b.stats[0].cached_tokens
    );
    assert_eq!(
        format!("{head}{}", rest_a.text[0]),
        want_a.text[0],
        "the generating stream was not disturbed"
    );
    // The busy slot kept its own cache: `a` again reuses all but its last token.
    let (sk, rx) = sink();
    let again = run(&s, job(a.clone(), 2, sampled(7), sk), &rx);
    assert_eq!(again.stats[0].cached_tokens, a.len() - 1);
}


#[test]
fn n_choices_start_from_a_copied_prefix() {
    let a = prompt(&format!("{SYSTEM}name a mountain"));
    let b = prompt(&format!("{SYSTEM}name two deserts"));
    let common = shared_len(&a, &b);
    // `b` alone, two choices (seeds 5 and 6), nothing cached.
    let want = {
        let s = sched(2, 8);
        let (sk, rx) = sink();
        let mut j = job(b.clone(), 10, sampled(5), sk);
        j.n = 2;
        run(&s, j, &rx)
    };
    // `a` is generating in one slot (an idle slot holding the prefix would
    // simply be chosen for `b`); `b` takes the two others and copies.
    let s = sched(3, 8);
    let (ska, rxa) = sink();
    s.submit(job(a.clone(), 30, sampled(1), ska)).unwrap();
    assert!(matches!(
        rxa.recv_timeout(Duration::from_secs(60)).unwrap(),
        Event::Delta { .. }
    ));
    let (sk, rx) = sink();
    let mut j = job(b.clone(), 10, sampled(5), sk);
    j.n = 2;
    let got = run(&s, j, &rx);
    assert_eq!(got.text, want.text, "both choices as if nothing were cached");
    for st in &got.stats {
        assert!(st.cached_tokens >= common, "cached {} of {common}", st.cached_tokens);
    }
    collect(&rxa, 1);
}
