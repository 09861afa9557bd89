//! Deduplication of generated records: exact (hash of normalised text), then
//! near-duplicates by MinHash over word shingles with LSH banding.
//!
//! * Normalisation: lower case, every run of non-alphanumeric characters
//!   becomes one space, trimmed. "The  CPU!" and "the cpu" are exact
//!   duplicates.
//! * Shingles: runs of `k` consecutive normalised words (a text shorter than
//!   `k` words is one shingle), hashed with FNV-1a 64.
//! * MinHash: `num_perm` hash functions `h_i(x) = mix(x ⊕ salt_i)` (a
//!   SplitMix64 finaliser, salts from a fixed seed), signature = per-function
//!   minimum; the probability that two signatures agree in one position is
//!   the Jaccard similarity of the shingle sets (Broder 1997).
//! * LSH: the signature is cut into `bands` bands of `num_perm / bands`
//!   rows; texts sharing any whole band are candidates (Leskovec, Rajaraman,
//!   Ullman, *Mining of Massive Datasets*, ch. 3.4). Candidates are then
//!   confirmed with the *exact* Jaccard similarity of their shingle sets, so
//!   LSH only decides which pairs are looked at, never the verdict.
//!
//! Records are visited in order; a record is dropped when it duplicates an
//! earlier *kept* record, so the first occurrence always survives.
//!
//! Deliberately absent: ROUGE-L (Self-Instruct's measure; quadratic, and
//! MinHash Jaccard catches the same paraphrase-by-reordering cases at scale),
//! embeddings-based semantic dedup.

use std::collections::{HashMap, HashSet};

/// Lower case, non-alphanumeric runs → one space, trimmed.
pub fn normalise(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut gap = false;
    for c in text.chars() {
        if c.is_alphanumeric() {
            if gap && !out.is_empty() {
                out.push(' ');
            }
            gap = false;
            out.extend(c.to_lowercase());
        } else {
            gap = true;
        }
    }
    out
}

/// FNV-1a, 64 bit (stable across runs and platforms, unlike `DefaultHasher`).
pub fn fnv1a(bytes: &[u8]) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for &b in bytes {
        h ^= b as u64;
        h = h.wrapping_mul(0x0000_0100_0000_01b3);
    }
    h
}

fn mix(mut z: u64) -> u64 {
    // SplitMix64's finaliser (Steele, Lea, Flood 2014).
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

/// The set of hashed `k`-word shingles of normalised `text`.
pub fn shingles(text: &str, k: usize) -> HashSet<u64> {
    let norm = normalise(text);
    let words: Vec<&str> = norm.split(' ').filter(|w| !w.is_empty()).collect();
    let k = k.max(1);
    let mut set = HashSet::new();
    if words.is_empty() {
        return set;
    }
    if words.len() <= k {
        set.insert(fnv1a(words.join(" ").as_bytes()));
        return set;
    }
    for w in words.windows(k) {
        set.insert(fnv1a(w.join(" ").as_bytes()));
    }
    set
}

/// Jaccard similarity of two sets (1 for two empty sets).
pub fn jaccard(a: &HashSet<u64>, b: &HashSet<u64>) -> f64 {
    if a.is_empty() && b.is_empty() {
        return 1.0;
    }
    let inter = a.iter().filter(|x| b.contains(x)).count();
    inter as f64 / (a.len() + b.len() - inter) as f64
}

/// MinHash signatures with `num_perm` functions.
#[derive(Clone, Debug)]
pub struct MinHasher {
    salts: Vec<u64>,
}

impl MinHasher {
    pub fn new(num_perm: usize, seed: u64) -> MinHasher {
        let mut s = seed;
        let salts = (0..num_perm.max(1))
            .map(|_| {
                s = s.wrapping_add(0x9e37_79b9_7f4a_7c15);
                mix(s)
            })
            .collect();
        MinHasher { salts }
    }

    pub fn signature(&self, set: &HashSet<u64>) -> Vec<u64> {
        self.salts.iter().map(|&salt| set.iter().map(|&x| mix(x ^ salt)).min().unwrap_or(u64::MAX)).collect()
    }

    /// Fraction of agreeing positions: an unbiased estimate of the Jaccard
    /// similarity.
    pub fn estimate(a: &[u64], b: &[u64]) -> f64 {
        let n = a.len().min(b.len()).max(1);
        a.iter().zip(b).filter(|(x, y)| x == y).count() as f64 / n as f64
    }
}

/// Settings of [`dedup`].
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct DedupOptions {
    pub exact: bool,
    /// Jaccard at or above which a record is a near-duplicate; ≥ 1.0 turns
    /// the MinHash stage off (exact copies are caught by the first stage).
    pub near_threshold: f64,
    pub shingle_words: usize,
    pub num_perm: usize,
    pub bands: usize,
    pub seed: u64,
}

impl Default for DedupOptions {
    fn default() -> Self {
        DedupOptions { exact: true, near_threshold: 0.8, shingle_words: 3, num_perm: 128, bands: 32, seed: 0x5eed }
    }
}

/// Why a record was dropped.
#[derive(Clone, Debug, PartialEq)]
pub enum Verdict {
    Kept,
    /// Same normalised text as record `of`.
    Exact { of: usize },
    /// Jaccard similarity `jaccard` ≥ threshold with record `of`.
    Near { of: usize, jaccard: f64 },
}

/// Counts, for the report.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, serde::Serialize)]
pub struct DedupCounts {
    pub input: usize,
    pub exact_removed: usize,
    pub near_removed: usize,
    /// Pairs LSH proposed and the exact Jaccard check then looked at.
    pub candidate_pairs: usize,
    pub kept: usize,
}

/// Decides, for each text in order, whether it is kept or duplicates an
/// earlier kept one.
pub fn dedup(texts: &[&str], opts: &DedupOptions) -> (Vec<Verdict>, DedupCounts) {
    let mut counts = DedupCounts { input: texts.len(), ..Default::default() };
    let mut verdicts = Vec::with_capacity(texts.len());
    let mut exact_seen: HashMap<String, usize> = HashMap::new();
    let near_on = opts.near_threshold < 1.0;
    let bands = opts.bands.clamp(1, opts.num_perm.max(1));
    let rows = (opts.num_perm / bands).max(1);
    let hasher = MinHasher::new(rows * bands, opts.seed);
    // Kept records' shingle sets and LSH buckets (band index, band hash) → ids.
    let mut kept_sets: HashMap<usize, HashSet<u64>> = HashMap::new();
    let mut buckets: HashMap<(usize, u64), Vec<usize>> = HashMap::new();
    for (i, t) in texts.iter().enumerate() {
        if opts.exact {
            let key = normalise(t);
            if let Some(&of) = exact_seen.get(&key) {
                counts.exact_removed += 1;
                verdicts.push(Verdict::Exact { of });
                continue;
            }
            exact_seen.insert(key, i);
        }
        if near_on {
            let set = shingles(t, opts.shingle_words);
            let sig = hasher.signature(&set);
            let keys: Vec<(usize, u64)> = (0..bands)
                .map(|b| {
                    let band = &sig[b * rows..(b + 1) * rows];
                    let bytes: Vec<u8> = band.iter().flat_map(|v| v.to_le_bytes()).collect();
                    (b, fnv1a(&bytes))
                })
                .collect();
            let mut cands: Vec<usize> = keys.iter().filter_map(|k| buckets.get(k)).flatten().copied().collect();
            cands.sort_unstable();
            cands.dedup();
            counts.candidate_pairs += cands.len();
            let hit = cands.iter().map(|&c| (c, jaccard(&set, &kept_sets[&c]))).filter(|&(_, j)| j >= opts.near_threshold).max_by(|a, b| a.1.total_cmp(&b.1));
            if let Some((of, j)) = hit {
                counts.near_removed += 1;
                verdicts.push(Verdict::Near { of, jaccard: j });
                continue;
            }
            for k in keys {
                buckets.entry(k).or_default().push(i);
            }
            kept_sets.insert(i, set);
        }
        counts.kept += 1;
        verdicts.push(Verdict::Kept);
    }
    (verdicts, counts)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn normalisation() {
        assert_eq!(normalise("  The  CPU!  runs, fast "), "the cpu runs fast");
        assert_eq!(normalise("Ünïcode-Text"), "ünïcode text");
        assert_eq!(normalise("!!!"), "");
    }

    #[test]
    fn jaccard_of_shingles_by_hand() {
        // 3-word shingles: "a b c d" → {abc, bcd}; "a b c e" → {abc, bce}: 1/3.
        let a = shingles("a b c d", 3);
        let b = shingles("A b, c e", 3);
        assert!((jaccard(&a, &b) - 1.0 / 3.0).abs() < 1e-12);
        assert_eq!(jaccard(&a, &a), 1.0);
    }

    #[test]
    fn minhash_estimate_tracks_jaccard() {
        let words: Vec<String> = (0..200).map(|i| format!("w{i}")).collect();
        let a = words[..150].join(" ");
        let b = words[50..].join(" ");
        let (sa, sb) = (shingles(&a, 2), shingles(&b, 2));
        let truth = jaccard(&sa, &sb);
        let h = MinHasher::new(512, 1);
        let est = MinHasher::estimate(&h.signature(&sa), &h.signature(&sb));
        assert!((est - truth).abs() < 0.08, "estimate {est} vs {truth}");
    }

    #[test]
    fn exact_and_near_duplicates_are_removed_and_counted() {
        let base = "A compiler translates a program written in a high level language into machine code that the processor can execute directly";
        let texts = [
            base,                                                         // 0 kept
            "a compiler translates a program, written in a high-level language, into machine code that the processor can execute directly!", // exact after normalisation
            "A compiler translates a program written in a high level language into machine code that the processor can execute directly and quickly", // near
            "Random access memory is storage whose words can be read in any order with the same delay", // kept
            "Random access memory is storage whose words can be read in any order with the same delay", // exact
            "A linker combines object files into one executable and resolves the symbols between them", // kept
        ];
        let (v, c) = dedup(&texts, &DedupOptions::default());
        assert_eq!(v[0], Verdict::Kept);
        assert_eq!(v[1], Verdict::Exact { of: 0 });
        assert!(matches!(v[2], Verdict::Near { of: 0, jaccard } if (0.8..1.0).contains(&jaccard)), "{:?}", v[2]);
        assert_eq!(v[3], Verdict::Kept);
        assert_eq!(v[4], Verdict::Exact { of: 3 });
        assert_eq!(v[5], Verdict::Kept);
        assert_eq!((c.input, c.exact_removed, c.near_removed, c.kept), (6, 2, 1, 3));
    }

    #[test]
    fn threshold_decides_and_one_disables_near_stage() {
        let texts = ["one two three four five six seven eight", "one two three four five six seven nine"];
        // Jaccard of 3-shingles: 5 shared of 7 distinct = 0.714.
        let strict = DedupOptions { near_threshold: 0.9, ..DedupOptions::default() };
        assert_eq!(dedup(&texts, &strict).1.near_removed, 0);
        let loose = DedupOptions { near_threshold: 0.5, ..DedupOptions::default() };
        assert_eq!(dedup(&texts, &loose).1.near_removed, 1);
        let off = DedupOptions { near_threshold: 1.0, ..DedupOptions::default() };
        assert_eq!(dedup(&texts, &off).1.kept, 2);
    }
}
