//! The sampler chain: penalties → top-k → top-p → min-p → temperature → draw.
//!
//! The order and each stage's definition follow llama.cpp's common sampler
//! (`common/sampling.cpp`, `src/llama-sampler.cpp`), so settings mean what a
//! llama.cpp or OpenAI user expects:
//! - repetition penalty divides positive logits and multiplies negative ones
//!   for every token seen in the last `repeat_last_n` tokens; frequency and
//!   presence penalties subtract `count * frequency + presence` (OpenAI);
//! - top-p keeps the smallest set of most likely tokens whose probability
//!   reaches `top_p`; min-p drops tokens less likely than `min_p` times the
//!   most likely one;
//! - temperature 0 (or below) means greedy: the highest logit, first index on
//!   ties, with no randomness consumed.
//!
//! The random source is a ChaCha8 stream seeded by the caller, so a seed
//! reproduces a run exactly on any machine.

use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use std::collections::{HashMap, VecDeque};

/// Sampling settings. `Default` is llama.cpp's common defaults.
#[derive(Clone, Debug, PartialEq)]
pub struct SamplerConfig {
    pub temperature: f32,
    /// 0 disables.
    pub top_k: usize,
    /// 1.0 disables.
    pub top_p: f32,
    /// 0.0 disables.
    pub min_p: f32,
    /// 1.0 disables.
    pub repeat_penalty: f32,
    pub repeat_last_n: usize,
    pub presence_penalty: f32,
    pub frequency_penalty: f32,
    pub seed: u64,
}

impl Default for SamplerConfig {
    fn default() -> Self {
        SamplerConfig {
            temperature: 0.8,
            top_k: 40,
            top_p: 0.95,
            min_p: 0.05,
            repeat_penalty: 1.0,
            repeat_last_n: 64,
            presence_penalty: 0.0,
            frequency_penalty: 0.0,
            seed: 0,
        }
    }
}

impl SamplerConfig {
    /// Greedy decoding (argmax), no penalties.
    pub fn greedy() -> SamplerConfig {
        SamplerConfig { temperature: 0.0, top_k: 0, top_p: 1.0, min_p: 0.0, ..Default::default() }
    }

    pub fn is_greedy(&self) -> bool {
        self.temperature <= 0.0
    }

    /// Checks ranges; the message names the parameter.
    pub fn validate(&self) -> Result<(), String> {
        let check = |ok: bool, name: &str, v: String, want: &str| if ok { Ok(()) } else { Err(format!("{name} = {v} is out of range ({want})")) };
        check(self.temperature.is_finite() && self.temperature >= 0.0, "temperature", self.temperature.to_string(), ">= 0")?;
        check(self.top_p.is_finite() && self.top_p > 0.0 && self.top_p <= 1.0, "top_p", self.top_p.to_string(), "(0, 1]")?;
        check(self.min_p.is_finite() && (0.0..=1.0).contains(&self.min_p), "min_p", self.min_p.to_string(), "[0, 1]")?;
        check(self.repeat_penalty.is_finite() && self.repeat_penalty > 0.0, "repeat_penalty", self.repeat_penalty.to_string(), "> 0")?;
        check(self.presence_penalty.is_finite() && (-2.0..=2.0).contains(&self.presence_penalty), "presence_penalty", self.presence_penalty.to_string(), "[-2, 2]")?;
        check(self.frequency_penalty.is_finite() && (-2.0..=2.0).contains(&self.frequency_penalty), "frequency_penalty", self.frequency_penalty.to_string(), "[-2, 2]")?;
        Ok(())
    }
}

/// A token and its probability among the candidates left by the chain.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Candidate {
    pub id: u32,
    pub logit: f32,
}

/// A stateful sampler: holds the RNG and the recent-token window.
pub struct Sampler {
    cfg: SamplerConfig,
    rng: ChaCha8Rng,
    recent: VecDeque<u32>,
    counts: HashMap<u32, u32>,
    cand: Vec<Candidate>,
    heap: std::collections::BinaryHeap<Worst>,
}

impl Sampler {
    pub fn new(cfg: SamplerConfig) -> Sampler {
        let rng = ChaCha8Rng::seed_from_u64(cfg.seed);
        Sampler { cfg, rng, recent: VecDeque::new(), counts: HashMap::new(), cand: Vec::new(), heap: Default::default() }
    }

    pub fn config(&self) -> &SamplerConfig {
        &self.cfg
    }

    /// Records tokens that count for the penalties (the prompt, usually).
    pub fn accept(&mut self, id: u32) {
        if self.cfg.repeat_last_n == 0 {
            return;
        }
        self.recent.push_back(id);
        *self.counts.entry(id).or_insert(0) += 1;
        while self.recent.len() > self.cfg.repeat_last_n {
            if let Some(old) = self.recent.pop_front() {
                if let Some(c) = self.counts.get_mut(&old) {
                    *c -= 1;
                    if *c == 0 {
                        self.counts.remove(&old);
                    }
                }
            }
        }
    }

    fn penalties_active(&self) -> bool {
        self.cfg.repeat_penalty != 1.0 || self.cfg.presence_penalty != 0.0 || self.cfg.frequency_penalty != 0.0
    }

    /// Applies the penalties to `logits` in place.
    pub fn apply_penalties(&self, logits: &mut [f32]) {
        if !self.penalties_active() {
            return;
        }
        for (&id, &count) in &self.counts {
            let Some(l) = logits.get_mut(id as usize) else { continue };
            if *l <= 0.0 {
                *l *= self.cfg.repeat_penalty;
            } else {
                *l /= self.cfg.repeat_penalty;
            }
            *l -= count as f32 * self.cfg.frequency_penalty + self.cfg.presence_penalty;
        }
    }

    /// Chooses the next token and records it. `logits` may be modified.
    pub fn sample(&mut self, logits: &mut [f32]) -> u32 {
        self.apply_penalties(logits);
        let id = if self.cfg.is_greedy() { argmax(logits) } else { self.sample_random(logits) };
        self.accept(id);
        id
    }

    fn sample_random(&mut self, logits: &[f32]) -> u32 {
        let c = &mut self.cand;
        c.clear();
        // top-k (also bounds the work of the sorts below). A small k is taken
        // in one pass over the logits; building and partitioning a candidate
        // per vocabulary entry cost ~1 ms per token on a 152k vocabulary,
        // paid once per sequence in every batched decode step.
        let k = self.cfg.top_k;
        if k > 0 && k <= SMALL_TOP_K {
            top_k_scan(logits, k, &mut self.heap, c);
        } else {
            c.extend(logits.iter().enumerate().filter(|(_, l)| !l.is_nan()).map(|(i, &l)| Candidate { id: i as u32, logit: l }));
            let k = if k == 0 { c.len() } else { k.min(c.len()) };
            if k > 0 && k < c.len() {
                c.select_nth_unstable_by(k - 1, better_first);
                c.truncate(k);
            }
        }
        if c.is_empty() {
            return 0;
        }
        c.sort_by(better_first);
        // Probabilities at temperature 1 for top-p / min-p, as llama.cpp does.
        let probs = softmax(c.iter().map(|x| x.logit));
        if self.cfg.top_p < 1.0 {
            let mut cum = 0.0;
            let mut keep = c.len();
            for (i, p) in probs.iter().enumerate() {
                cum += p;
                if cum >= self.cfg.top_p as f64 {
                    keep = i + 1;
                    break;
                }
            }
            c.truncate(keep.max(1));
        }
        if self.cfg.min_p > 0.0 {
            let max = c[0].logit;
            let threshold = max + self.cfg.min_p.ln();
            let keep = c.iter().take_while(|x| x.logit >= threshold).count();
            c.truncate(keep.max(1));
        }
        let t = self.cfg.temperature;
        let probs = softmax(c.iter().map(|x| x.logit / t));
        let r: f64 = self.rng.random::<f64>();
        let mut cum = 0.0;
        for (cand, p) in c.iter().zip(&probs) {
            cum += *p;
            if r < cum {
                return cand.id;
            }
        }
        c.last().map(|x| x.id).unwrap_or(0)
    }
}

/// Largest `top_k` served by [`top_k_scan`] (a heap of at most this many).
const SMALL_TOP_K: usize = 256;

/// The order of the candidate list: higher logit first, lower id on ties
/// (`total_cmp`, so -0.0 sorts below +0.0). A strict total order, so the
/// top-k set is unique whichever way it is found.
fn better_first(a: &Candidate, b: &Candidate) -> std::cmp::Ordering {
    b.logit.total_cmp(&a.logit).then(a.id.cmp(&b.id))
}

/// Heap entry ordered worst-first (`BinaryHeap` pops its greatest).
struct Worst(Candidate);

impl PartialEq for Worst {
    fn eq(&self, o: &Self) -> bool {
        better_first(&self.0, &o.0).is_eq()
    }
}
impl Eq for Worst {}
impl PartialOrd for Worst {
    fn partial_cmp(&self, o: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(o))
    }
}
impl Ord for Worst {
    fn cmp(&self, o: &Self) -> std::cmp::Ordering {
        better_first(&self.0, &o.0)
    }
}

/// The `k` best non-NaN logits (by [`better_first`]) into `out`, unsorted.
/// Ids are visited in increasing order, so an entry equal in logit to the
/// current worst is never better than it; only a strictly greater logit
/// enters.
///
/// Once the heap is full, blocks of [`SCAN_BLOCK`] logits are first tested
/// against the current worst with a plain `>=` (a loop the compiler
/// vectorises); a block with no such logit cannot change the heap and is
/// skipped. `>=` is a superset of "enters": a non-NaN logit that
/// `total_cmp`s above the worst is `>=` it (only ±0.0 differ, and they
/// compare equal), NaN fails both. So the set found is the one the
/// element-by-element scan finds, at a fraction of its cost on a 152k
/// vocabulary where almost every block is skipped.
fn top_k_scan(logits: &[f32], k: usize, heap: &mut std::collections::BinaryHeap<Worst>, out: &mut Vec<Candidate>) {
    heap.clear();
    let offer = |heap: &mut std::collections::BinaryHeap<Worst>, i: usize, l: f32| {
        if l.is_nan() {
            return;
        }
        if heap.len() < k {
            heap.push(Worst(Candidate { id: i as u32, logit: l }));
        } else if let Some(mut w) = heap.peek_mut() {
            if l.total_cmp(&w.0.logit).is_gt() {
                *w = Worst(Candidate { id: i as u32, logit: l });
            }
        }
    };
    let mut i = 0;
    while i < logits.len() && heap.len() < k {
        offer(heap, i, logits[i]);
        i += 1;
    }
    let mut blocks = logits[i..].chunks_exact(SCAN_BLOCK);
    for block in blocks.by_ref() {
        let worst = heap.peek().map_or(f32::NEG_INFINITY, |w| w.0.logit);
        if block.iter().fold(false, |hit, &l| hit | (l >= worst)) {
            for (j, &l) in block.iter().enumerate() {
                offer(heap, i + j, l);
            }
        }
        i += SCAN_BLOCK;
    }
    for (j, &l) in blocks.remainder().iter().enumerate() {
        offer(heap, i + j, l);
    }
    out.extend(heap.drain().map(|w| w.0));
}

/// Logits tested together by [`top_k_scan`] before any enters the heap.
const SCAN_BLOCK: usize = 32;

/// The element-by-element scan [`top_k_scan`] must equal (tests).
#[cfg(test)]
fn top_k_scan_plain(logits: &[f32], k: usize, out: &mut Vec<Candidate>) {
    let mut heap = std::collections::BinaryHeap::new();
    for (i, &l) in logits.iter().enumerate() {
        if l.is_nan() {
            continue;
        }
        if heap.len() < k {
            heap.push(Worst(Candidate { id: i as u32, logit: l }));
        } else if let Some(mut w) = heap.peek_mut() {
            if l.total_cmp(&w.0.logit).is_gt() {
                *w = Worst(Candidate { id: i as u32, logit: l });
            }
        }
    }
    out.extend(heap.drain().map(|w| w.0));
}

/// Index of the largest value, the first on ties (NaN never wins).
pub fn argmax(x: &[f32]) -> u32 {
    let mut best = 0usize;
    let mut best_v = f32::NEG_INFINITY;
    for (i, &v) in x.iter().enumerate() {
        if v > best_v {
            best_v = v;
            best = i;
        }
    }
    best as u32
}

fn softmax(it: impl Iterator<Item = f32> + Clone) -> Vec<f64> {
    let max = it.clone().fold(f32::NEG_INFINITY, f32::max) as f64;
    let e: Vec<f64> = it.map(|l| (l as f64 - max).exp()).collect();
    let s: f64 = e.iter().sum();
    e.into_iter().map(|v| v / s).collect()
}

/// Log-softmax of the raw logits (for OpenAI `logprobs`).
pub fn log_softmax(logits: &[f32]) -> Vec<f32> {
    let max = logits.iter().copied().fold(f32::NEG_INFINITY, f32::max) as f64;
    let lse = logits.iter().map(|&l| (l as f64 - max).exp()).sum::<f64>().ln() + max;
    logits.iter().map(|&l| (l as f64 - lse) as f32).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn logits() -> Vec<f32> {
        vec![1.0, 3.0, 2.0, 3.0, -1.0, 0.5]
    }

    #[test]
    fn greedy_takes_the_first_maximum() {
        let mut s = Sampler::new(SamplerConfig::greedy());
        assert_eq!(s.sample(&mut logits()), 1);
    }

    #[test]
    fn same_seed_same_tokens_different_seed_differs() {
        let cfg = SamplerConfig { temperature: 1.5, top_k: 0, top_p: 1.0, min_p: 0.0, seed: 42, ..Default::default() };
        let run = |cfg: SamplerConfig| {
            let mut s = Sampler::new(cfg);
            (0..200).map(|_| s.sample(&mut logits())).collect::<Vec<_>>()
        };
        assert_eq!(run(cfg.clone()), run(cfg.clone()));
        assert_ne!(run(cfg.clone()), run(SamplerConfig { seed: 43, ..cfg }));
    }

    /// The one-pass top-k must pick exactly the set (and, after the sort,
    /// the order) that partitioning every candidate picks, ties and signed
    /// zeros and NaNs included.
    #[test]
    fn top_k_scan_equals_full_partition() {
        let mut rng = ChaCha8Rng::seed_from_u64(5);
        for case in 0..300 {
            let n = 1 + (case * 37) % 700;
            let logits: Vec<f32> = (0..n)
                .map(|_| match rng.random_range(0..10) {
                    0 => f32::NAN,
                    1 => 0.0,
                    2 => -0.0,
                    3 => 1.5,
                    _ => rng.random_range(-8.0f32..8.0),
                })
                .collect();
            for k in [1usize, 2, 3, 40, 255, 256] {
                let mut full: Vec<Candidate> = logits
                    .iter()
                    .enumerate()
                    .filter(|(_, l)| !l.is_nan())
                    .map(|(i, &l)| Candidate { id: i as u32, logit: l })
                    .collect();
                full.sort_by(better_first);
                full.truncate(k);
                let mut heap = Default::default();
                let mut got = Vec::new();
                top_k_scan(&logits, k, &mut heap, &mut got);
                got.sort_by(better_first);
                let ids = |v: &[Candidate]| v.iter().map(|c| (c.id, c.logit.to_bits())).collect::<Vec<_>>();
                assert_eq!(ids(&got), ids(&full), "case {case} n {n} k {k}");
            }
        }
    }

    /// The block-skipping scan against the element-by-element one on inputs
    /// made to defeat the skip (rising logits: every block enters; ties;
    /// signed zeros straddling a block edge; infinities; NaN runs) and on
    /// lengths around the block size.
    #[test]
    fn block_scan_equals_plain_scan() {
        let mut rng = ChaCha8Rng::seed_from_u64(11);
        let mut inputs: Vec<Vec<f32>> = vec![
            (0..3000).map(|i| i as f32).collect(),
            (0..3000).map(|i| -(i as f32)).collect(),
            vec![2.0; 1000],
            (0..1000).map(|i| if i % 2 == 0 { 0.0 } else { -0.0 }).collect(),
            (0..1000).map(|i| if i < 500 { -0.0 } else { 0.0 }).collect(),
            (0..700).map(|i| match i % 7 { 0 => f32::INFINITY, 1 => f32::NEG_INFINITY, 2 => f32::NAN, _ => (i % 13) as f32 }).collect(),
            vec![f32::NAN; 100],
        ];
        for n in [0usize, 1, 31, 32, 33, 63, 64, 65, 200, 20_000] {
            inputs.push((0..n).map(|_| if rng.random_range(0..50) == 0 { f32::NAN } else { rng.random_range(-4.0f32..4.0) }).collect());
        }
        let mut heap = Default::default();
        for (case, logits) in inputs.iter().enumerate() {
            for k in [1usize, 2, 31, 32, 33, 40, 256] {
                let (mut got, mut want) = (Vec::new(), Vec::new());
                top_k_scan(logits, k, &mut heap, &mut got);
                top_k_scan_plain(logits, k, &mut want);
                got.sort_by(better_first);
                want.sort_by(better_first);
                let ids = |v: &[Candidate]| v.iter().map(|c| (c.id, c.logit.to_bits())).collect::<Vec<_>>();
                assert_eq!(ids(&got), ids(&want), "case {case} k {k}");
            }
        }
    }

    #[test]
    fn top_k_one_is_greedy() {
        let mut s = Sampler::new(SamplerConfig { temperature: 1.0, top_k: 1, seed: 7, ..Default::default() });
        for _ in 0..50 {
            assert_eq!(s.sample(&mut logits()), 1);
        }
    }

    #[test]
    fn top_p_and_min_p_cut_the_tail() {
        // Two tokens at logit 3 hold ~63% of the mass together; top_p 0.5 keeps
        // only them, so the others are never drawn.
        let mut s = Sampler::new(SamplerConfig { temperature: 1.0, top_k: 0, top_p: 0.5, min_p: 0.0, seed: 1, ..Default::default() });
        for _ in 0..300 {
            let t = s.sample(&mut logits());
            assert!(t == 1 || t == 3, "{t}");
        }
        // min_p 0.3: exp(2-3) = 0.37 >= 0.3 survives, exp(1-3) = 0.14 does not.
        let mut s = Sampler::new(SamplerConfig { temperature: 1.0, top_k: 0, top_p: 1.0, min_p: 0.3, seed: 1, ..Default::default() });
        let mut seen = std::collections::HashSet::new();
        for _ in 0..500 {
            seen.insert(s.sample(&mut logits()));
        }
        assert_eq!(seen, [1, 2, 3].into_iter().collect());
    }

    #[test]
    fn penalties_follow_llama_cpp_signs() {
        let mut s = Sampler::new(SamplerConfig { repeat_penalty: 2.0, presence_penalty: 0.5, frequency_penalty: 0.25, ..SamplerConfig::greedy() });
        s.accept(1);
        s.accept(1);
        s.accept(4);
        let mut l = logits();
        s.apply_penalties(&mut l);
        assert_eq!(l[1], 3.0 / 2.0 - (2.0 * 0.25 + 0.5));
        assert_eq!(l[4], -1.0 * 2.0 - (0.25 + 0.5));
        assert_eq!(l[0], 1.0);
    }

    #[test]
    fn repeat_window_forgets_old_tokens() {
        let mut s = Sampler::new(SamplerConfig { repeat_penalty: 2.0, repeat_last_n: 2, ..SamplerConfig::greedy() });
        for t in [1, 2, 3] {
            s.accept(t);
        }
        let mut l = logits();
        s.apply_penalties(&mut l);
        assert_eq!(l[1], 3.0, "token 1 left the window");
        assert_eq!(l[2], 1.0);
    }

    #[test]
    fn validate_names_the_parameter() {
        let e = SamplerConfig { top_p: 1.5, ..Default::default() }.validate().unwrap_err();
        assert!(e.contains("top_p"));
        assert!(SamplerConfig { temperature: f32::NAN, ..Default::default() }.validate().unwrap_err().contains("temperature"));
    }

    #[test]
    fn log_softmax_normalises() {
        let lp = log_softmax(&logits());
        let s: f32 = lp.iter().map(|x| x.exp()).sum();
        assert!((s - 1.0).abs() < 1e-5);
    }
}
