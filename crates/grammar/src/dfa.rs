//! Byte-level DFAs for the *contents* of JSON strings (the bytes between the
//! quotes), built from the regex AST of [`crate::regex`].
//!
//! Each character of the language is compiled to every JSON encoding Hearth
//! lets a model write for it (RFC 8259 §7):
//! * `"` only as `\"`, `\` only as `\\`;
//! * `/` raw or as `\/`;
//! * control characters U+0000–U+001F as `\b \f \n \r \t` where one exists,
//!   and as `\u00XX` (hex digits in either case);
//! * every other character as raw UTF-8 only: no `\uXXXX` for non-control
//!   characters (deliberately absent: it would multiply automaton size for
//!   no benefit to a model, and raw UTF-8 is always valid JSON).
//!
//! Transitions carry a "starts a character" bit so the matcher can count
//! characters for `minLength`/`maxLength` (code points, as JSON Schema counts)
//! without decoding.

use std::collections::HashMap;

use crate::regex::{CharSet, Re};

/// No transition.
pub(crate) const DEAD: u32 = 0x7FFF_FFFF;
/// Bit set on a transition that begins a new character.
pub(crate) const CHAR_START: u32 = 0x8000_0000;
/// Limits that keep automata (and compile time) bounded.
const MAX_NFA_STATES: usize = 200_000;
pub(crate) const MAX_DFA_STATES: usize = 4096;
/// Largest (state × length) table kept for patterns with length bounds.
const MAX_LEN_TABLE: usize = 500_000;

#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct DfaError(pub String);

#[derive(Default)]
struct NState {
    eps: Vec<u32>,
    /// (lo, hi, target, starts a character)
    edges: Vec<(u8, u8, u32, bool)>,
}

#[derive(Default)]
struct Nfa {
    states: Vec<NState>,
}

impl Nfa {
    fn add(&mut self) -> Result<u32, DfaError> {
        if self.states.len() >= MAX_NFA_STATES {
            return Err(DfaError("pattern automaton too large".into()));
        }
        self.states.push(NState::default());
        Ok(self.states.len() as u32 - 1)
    }
    fn eps(&mut self, a: u32, b: u32) {
        self.states[a as usize].eps.push(b);
    }
    fn edge(&mut self, a: u32, lo: u8, hi: u8, b: u32, start: bool) {
        self.states[a as usize].edges.push((lo, hi, b, start));
    }
    /// A chain of byte ranges from `a` to `b`.
    fn chain(&mut self, a: u32, seq: &[(u8, u8)], b: u32) -> Result<(), DfaError> {
        let mut cur = a;
        for (i, &(lo, hi)) in seq.iter().enumerate() {
            let next = if i + 1 == seq.len() { b } else { self.add()? };
            self.edge(cur, lo, hi, next, i == 0);
            cur = next;
        }
        Ok(())
    }
    /// A chain where each position is a set of alternative ranges.
    fn chain_alts(&mut self, a: u32, seq: &[Vec<(u8, u8)>], b: u32) -> Result<(), DfaError> {
        let mut cur = a;
        for (i, alts) in seq.iter().enumerate() {
            let next = if i + 1 == seq.len() { b } else { self.add()? };
            for &(lo, hi) in alts {
                self.edge(cur, lo, hi, next, i == 0);
            }
            cur = next;
        }
        Ok(())
    }

    /// Adds edges `a → b` for one character of `set`, in every JSON encoding.
    fn class(&mut self, a: u32, set: &CharSet, b: u32) -> Result<(), DfaError> {
        let plain = set.minus(&CharSet::from_ranges(&[
            (0, 0x1F),
            (0x22, 0x22),
            (0x5C, 0x5C),
        ]));
        for &(lo, hi) in plain.ranges() {
            for seq in utf8_sequences(lo, hi) {
                self.chain(a, &seq, b)?;
            }
        }
        if set.contains(0x22) {
            self.chain(a, &[(b'\\', b'\\'), (b'"', b'"')], b)?;
        }
        if set.contains(0x5C) {
            self.chain(a, &[(b'\\', b'\\'), (b'\\', b'\\')], b)?;
        }
        if set.contains(0x2F) {
            self.chain(a, &[(b'\\', b'\\'), (b'/', b'/')], b)?;
        }
        for c in 0u32..0x20 {
            if !set.contains(c) {
                continue;
            }
            let short = match c {
                0x08 => Some(b'b'),
                0x0C => Some(b'f'),
                0x0A => Some(b'n'),
                0x0D => Some(b'r'),
                0x09 => Some(b't'),
                _ => None,
            };
            if let Some(s) = short {
                self.chain(a, &[(b'\\', b'\\'), (s, s)], b)?;
            }
            let hexd = |v: u32| -> Vec<(u8, u8)> {
                if v < 10 {
                    vec![(b'0' + v as u8, b'0' + v as u8)]
                } else {
                    let l = b'a' + (v - 10) as u8;
                    let u = b'A' + (v - 10) as u8;
                    vec![(l, l), (u, u)]
                }
            };
            let seq = vec![
                vec![(b'\\', b'\\')],
                vec![(b'u', b'u')],
                vec![(b'0', b'0')],
                vec![(b'0', b'0')],
                hexd(c >> 4),
                hexd(c & 15),
            ];
            self.chain_alts(a, &seq, b)?;
        }
        Ok(())
    }

    /// Thompson construction: returns (start, end).
    fn build(&mut self, re: &Re) -> Result<(u32, u32), DfaError> {
        match re {
            Re::Empty => {
                let s = self.add()?;
                Ok((s, s))
            }
            Re::Class(set) => {
                let s = self.add()?;
                let e = self.add()?;
                self.class(s, set, e)?;
                Ok((s, e))
            }
            Re::Concat(items) => {
                let s = self.add()?;
                let mut cur = s;
                for it in items {
                    let (a, b) = self.build(it)?;
                    self.eps(cur, a);
                    cur = b;
                }
                Ok((s, cur))
            }
            Re::Alt(items) => {
                let s = self.add()?;
                let e = self.add()?;
                for it in items {
                    let (a, b) = self.build(it)?;
                    self.eps(s, a);
                    self.eps(b, e);
                }
                Ok((s, e))
            }
            Re::Repeat(inner, min, max) => {
                let s = self.add()?;
                let mut cur = s;
                for _ in 0..*min {
                    let (a, b) = self.build(inner)?;
                    self.eps(cur, a);
                    cur = b;
                }
                match max {
                    None => {
                        let (a, b) = self.build(inner)?;
                        let e = self.add()?;
                        self.eps(cur, a);
                        self.eps(cur, e);
                        self.eps(b, a);
                        self.eps(b, e);
                        Ok((s, e))
                    }
                    Some(m) => {
                        let e = self.add()?;
                        self.eps(cur, e);
                        for _ in *min..*m {
                            let (a, b) = self.build(inner)?;
                            self.eps(cur, a);
                            self.eps(b, e);
                            cur = b;
                        }
                        Ok((s, e))
                    }
                }
            }
            Re::Start | Re::End => Err(DfaError("anchor inside pattern".into())),
        }
    }

    fn closure(&self, set: &mut Vec<u32>, seen: &mut [bool]) {
        let mut stack: Vec<u32> = set.clone();
        for &s in set.iter() {
            seen[s as usize] = true;
        }
        while let Some(s) = stack.pop() {
            for &t in &self.states[s as usize].eps {
                if !seen[t as usize] {
                    seen[t as usize] = true;
                    set.push(t);
                    stack.push(t);
                }
            }
        }
        for &s in set.iter() {
            seen[s as usize] = false;
        }
        set.sort_unstable();
        set.dedup();
    }
}

/// Splits a scalar-value range into UTF-8 byte-range sequences (the
/// classic utf8-ranges construction: split at encoding-length boundaries,
/// then until every byte position is an independent range).
pub(crate) fn utf8_sequences(lo: u32, hi: u32) -> Vec<Vec<(u8, u8)>> {
    let mut out = Vec::new();
    split_utf8(lo, hi, &mut out);
    out
}

fn split_utf8(lo: u32, hi: u32, out: &mut Vec<Vec<(u8, u8)>>) {
    if lo > hi {
        return;
    }
    // Never encode surrogates.
    if lo <= 0xDFFF && hi >= 0xD800 {
        if lo < 0xD800 {
            split_utf8(lo, 0xD7FF, out);
        }
        if hi > 0xDFFF {
            split_utf8(0xE000, hi, out);
        }
        return;
    }
    for max in [0x7F, 0x7FF, 0xFFFF] {
        if lo <= max && hi > max {
            split_utf8(lo, max, out);
            split_utf8(max + 1, hi, out);
            return;
        }
    }
    if hi <= 0x7F {
        out.push(vec![(lo as u8, hi as u8)]);
        return;
    }
    let n = if hi <= 0x7FF {
        2
    } else if hi <= 0xFFFF {
        3
    } else {
        4
    };
    for i in 1..n {
        let m: u32 = (1 << (6 * i)) - 1;
        if lo & !m != hi & !m {
            if lo & m != 0 {
                split_utf8(lo, lo | m, out);
                split_utf8((lo | m) + 1, hi, out);
                return;
            }
            if hi & m != m {
                split_utf8(lo, (hi & !m) - 1, out);
                split_utf8(hi & !m, hi, out);
                return;
            }
        }
    }
    let a = encode_utf8(lo);
    let b = encode_utf8(hi);
    out.push(a.iter().zip(b.iter()).map(|(&x, &y)| (x, y)).collect());
}

fn encode_utf8(c: u32) -> Vec<u8> {
    match char::from_u32(c) {
        Some(ch) => {
            let mut buf = [0u8; 4];
            ch.encode_utf8(&mut buf).as_bytes().to_vec()
        }
        None => Vec::new(),
    }
}

/// A DFA over the bytes of JSON string contents.
#[derive(Clone, Debug)]
pub(crate) struct Dfa {
    /// `n × 256` entries: target | CHAR_START, or DEAD.
    pub trans: Vec<u32>,
    pub accept: Vec<bool>,
    pub start: u32,
}

impl Dfa {
    pub fn n_states(&self) -> usize {
        self.accept.len()
    }
    #[inline]
    pub fn next(&self, s: u32, b: u8) -> u32 {
        self.trans[(s as usize) << 8 | b as usize]
    }
    /// True when no string is accepted.
    pub fn is_empty(&self) -> bool {
        self.start == DEAD
    }

    /// Compiles a regex AST (string contents).
    pub fn from_re(re: &Re) -> Result<Dfa, DfaError> {
        let mut nfa = Nfa::default();
        let (s, e) = nfa.build(re)?;
        Dfa::determinize(&nfa, s, e)
    }

    /// Exactly the given strings (their contents, unescaped).
    pub fn from_literals<'a>(words: impl IntoIterator<Item = &'a str>) -> Result<Dfa, DfaError> {
        let alts: Vec<Re> = words
            .into_iter()
            .map(|w| {
                Re::Concat(
                    w.chars()
                        .map(|c| Re::Class(CharSet::single(c as u32)))
                        .collect(),
                )
            })
            .collect();
        Dfa::from_re(&Re::Alt(alts))
    }

    fn determinize(nfa: &Nfa, start: u32, end: u32) -> Result<Dfa, DfaError> {
        let mut seen = vec![false; nfa.states.len()];
        let mut first = vec![start];
        nfa.closure(&mut first, &mut seen);
        let mut ids: HashMap<Vec<u32>, u32> = HashMap::new();
        let mut sets: Vec<Vec<u32>> = vec![first.clone()];
        ids.insert(first, 0);
        let mut trans: Vec<u32> = Vec::new();
        let mut accept = Vec::new();
        let mut i = 0;
        let mut buckets: Vec<Vec<u32>> = vec![Vec::new(); 256];
        let mut starts = [false; 256];
        while i < sets.len() {
            let set = sets[i].clone();
            accept.push(set.binary_search(&end).is_ok());
            for b in buckets.iter_mut() {
                b.clear();
            }
            starts.fill(false);
            for &s in &set {
                for &(lo, hi, t, st) in &nfa.states[s as usize].edges {
                    for byte in lo..=hi {
                        buckets[byte as usize].push(t);
                        starts[byte as usize] |= st;
                    }
                }
            }
            let row = trans.len();
            trans.resize(row + 256, DEAD);
            let mut memo: HashMap<Vec<u32>, u32> = HashMap::new();
            for byte in 0..256usize {
                if buckets[byte].is_empty() {
                    continue;
                }
                let mut tset = std::mem::take(&mut buckets[byte]);
                tset.sort_unstable();
                tset.dedup();
                let id = if let Some(&id) = memo.get(&tset) {
                    id
                } else {
                    let key = tset.clone();
                    let mut cl = tset.clone();
                    nfa.closure(&mut cl, &mut seen);
                    let id = match ids.get(&cl) {
                        Some(&id) => id,
                        None => {
                            if sets.len() >= MAX_DFA_STATES {
                                return Err(DfaError(format!(
                                    "pattern needs more than {MAX_DFA_STATES} DFA states"
                                )));
                            }
                            let id = sets.len() as u32;
                            ids.insert(cl.clone(), id);
                            sets.push(cl);
                            id
                        }
                    };
                    memo.insert(key, id);
                    id
                };
                buckets[byte] = tset;
                trans[row + byte] = id | if starts[byte] { CHAR_START } else { 0 };
            }
            i += 1;
        }
        let mut d = Dfa {
            trans,
            accept,
            start: 0,
        };
        d.prune();
        Ok(d)
    }

    /// Redirects every transition into a state that cannot reach acceptance
    /// to DEAD, so any live state always has a way to finish.
    fn prune(&mut self) {
        let n = self.n_states();
        let mut live = self.accept.clone();
        loop {
            let mut changed = false;
            for s in 0..n {
                if live[s] {
                    continue;
                }
                let row = &self.trans[s << 8..(s + 1) << 8];
                if row
                    .iter()
                    .any(|&t| t != DEAD && live[(t & !CHAR_START) as usize])
                {
                    live[s] = true;
                    changed = true;
                }
            }
            if !changed {
                break;
            }
        }
        for t in self.trans.iter_mut() {
            if *t != DEAD && !live[(*t & !CHAR_START) as usize] {
                *t = DEAD;
            }
        }
        if !live[self.start as usize] {
            self.start = DEAD;
        }
    }

    /// Product automaton accepting where `f(accept_a, accept_b)`; a DEAD
    /// side is kept as a rejecting sink so differences work.
    pub fn product(a: &Dfa, b: &Dfa, f: fn(bool, bool) -> bool) -> Result<Dfa, DfaError> {
        const SINK: u32 = u32::MAX;
        let key = |x: u32, y: u32| ((x as u64) << 32) | y as u64;
        let norm = |t: u32| if t == DEAD { SINK } else { t & !CHAR_START };
        let sa = if a.start == DEAD { SINK } else { a.start };
        let sb = if b.start == DEAD { SINK } else { b.start };
        let mut ids: HashMap<u64, u32> = HashMap::new();
        let mut pairs = vec![(sa, sb)];
        ids.insert(key(sa, sb), 0);
        let mut trans = Vec::new();
        let mut accept = Vec::new();
        let mut i = 0;
        while i < pairs.len() {
            let (x, y) = pairs[i];
            let ax = x != SINK && a.accept[x as usize];
            let by = y != SINK && b.accept[y as usize];
            accept.push(f(ax, by));
            let row = trans.len();
            trans.resize(row + 256, DEAD);
            for byte in 0..=255u8 {
                let tx = if x == SINK { DEAD } else { a.next(x, byte) };
                let ty = if y == SINK { DEAD } else { b.next(y, byte) };
                if tx == DEAD && ty == DEAD {
                    continue;
                }
                let start_bit = if tx != DEAD {
                    tx & CHAR_START
                } else {
                    ty & CHAR_START
                };
                let (nx, ny) = (norm(tx), norm(ty));
                let id = match ids.get(&key(nx, ny)) {
                    Some(&id) => id,
                    None => {
                        if pairs.len() >= MAX_DFA_STATES {
                            return Err(DfaError(format!(
                                "string automaton needs more than {MAX_DFA_STATES} states"
                            )));
                        }
                        let id = pairs.len() as u32;
                        ids.insert(key(nx, ny), id);
                        pairs.push((nx, ny));
                        id
                    }
                };
                trans[row + byte as usize] = id | start_bit;
            }
            i += 1;
        }
        let mut d = Dfa {
            trans,
            accept,
            start: 0,
        };
        d.prune();
        Ok(d)
    }

    /// Runs the automaton over `bytes` from the start state.
    #[cfg(test)]
    pub fn matches(&self, bytes: &[u8]) -> bool {
        let mut s = self.start;
        for &b in bytes {
            if s == DEAD {
                return false;
            }
            let t = self.next(s, b);
            if t == DEAD {
                return false;
            }
            s = t & !CHAR_START;
        }
        s != DEAD && self.accept[s as usize]
    }
}

/// Which (state, character count) pairs can still reach an accepted string
/// whose length lies in `[min, max]`. Needed only when a pattern and length
/// bounds meet; the reachable lengths of a pattern need not be an interval.
#[derive(Clone, Debug)]
pub(crate) struct LenTable {
    n: usize,
    /// Count levels stored: `max + 1` when bounded, else `min + 1` with the
    /// last level saturating.
    levels: u32,
    bounded: bool,
    live: Vec<bool>,
}

impl LenTable {
    pub fn build(d: &Dfa, min: u32, max: Option<u32>) -> Result<LenTable, DfaError> {
        let n = d.n_states();
        let levels = match max {
            Some(m) => m as u64 + 1,
            None => min as u64 + 1,
        };
        if levels.saturating_mul(n as u64) > MAX_LEN_TABLE as u64 {
            return Err(DfaError(
                "pattern with these length bounds is too large".into(),
            ));
        }
        let levels = levels as u32;
        let mut live = vec![false; levels as usize * n];
        for c in (0..levels).rev() {
            let top = c + 1 == levels;
            // Within a level, only non-counting edges (continuation bytes,
            // escape tails) stay on it; they are acyclic, but the counting
            // edges of the saturating top level are not, so iterate.
            loop {
                let mut changed = false;
                for s in 0..n {
                    let idx = c as usize * n + s;
                    if live[idx] {
                        continue;
                    }
                    let mut ok = d.accept[s] && c >= min;
                    if !ok {
                        for b in 0..256usize {
                            let t = d.trans[s << 8 | b];
                            if t == DEAD {
                                continue;
                            }
                            let ts = (t & !CHAR_START) as usize;
                            let counted = t & CHAR_START != 0;
                            let nc = if counted {
                                if top {
                                    if max.is_some() {
                                        continue;
                                    }
                                    c
                                } else {
                                    c + 1
                                }
                            } else {
                                c
                            };
                            if live[nc as usize * n + ts] {
                                ok = true;
                                break;
                            }
                        }
                    }
                    if ok {
                        live[idx] = true;
                        changed = true;
                    }
                }
                if !changed {
                    break;
                }
            }
        }
        Ok(LenTable {
            n,
            levels,
            bounded: max.is_some(),
            live,
        })
    }

    pub fn is_live(&self, s: u32, count: u32) -> bool {
        let level = if self.bounded {
            if count >= self.levels {
                return false;
            }
            count
        } else {
            count.min(self.levels - 1)
        };
        self.live[level as usize * self.n + s as usize]
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::regex::parse_pattern;

    fn dfa(p: &str) -> Dfa {
        Dfa::from_re(&parse_pattern(p).unwrap()).unwrap()
    }

    #[test]
    fn utf8_split_round_trips() {
        for (lo, hi) in [
            (0u32, 0x10FFFF),
            (0x80, 0x7FF),
            (0x7F0, 0x812),
            (0xFFF0, 0x10010),
            (0xD000, 0xE100),
        ] {
            let seqs = utf8_sequences(lo, hi);
            // Every scalar value in range must be matched by exactly one
            // sequence, and nothing else.
            for c in (lo..=hi).step_by(7) {
                let Some(ch) = char::from_u32(c) else {
                    continue;
                };
                let mut buf = [0u8; 4];
                let enc = ch.encode_utf8(&mut buf).as_bytes();
                let hits = seqs
                    .iter()
                    .filter(|s| {
                        s.len() == enc.len()
                            && s.iter().zip(enc).all(|(&(a, b), &x)| a <= x && x <= b)
                    })
                    .count();
                assert_eq!(hits, 1, "U+{c:04X}");
            }
        }
    }

    #[test]
    fn json_encodings() {
        let d = dfa("^a\"b$");
        assert!(d.matches(b"a\\\"b"));
        assert!(!d.matches(b"a\"b"));
        let d = dfa("^\\n$");
        assert!(d.matches(b"\\n") && d.matches(b"\\u000a") && d.matches(b"\\u000A"));
        assert!(!d.matches(b"\n"), "raw control characters are invalid JSON");
        let d = dfa("^/$");
        assert!(d.matches(b"/") && d.matches(b"\\/"));
        let d = dfa("^é+$");
        assert!(d.matches("ééé".as_bytes()));
        assert!(
            !d.matches(b"\\u00e9"),
            "non-control characters are raw UTF-8 only"
        );
    }

    #[test]
    fn search_semantics_and_prune() {
        let d = dfa("[0-9]{3}");
        assert!(d.matches(b"ab123cd") && d.matches(b"999") && !d.matches(b"12a3"));
        let d = dfa("^(ab|cd)*$");
        assert!(d.matches(b"") && d.matches(b"abcdab") && !d.matches(b"abc"));
        // Every state reachable by a live path can still finish.
        let s = d.next(d.start, b'a') & !CHAR_START;
        assert_eq!(d.next(s, b'x'), DEAD);
    }

    #[test]
    fn product_difference() {
        let any = dfa("");
        let keys = Dfa::from_literals(["name", "id"]).unwrap();
        let d = Dfa::product(&any, &keys, |a, b| a && !b).unwrap();
        assert!(!d.matches(b"name") && !d.matches(b"id"));
        assert!(d.matches(b"nam") && d.matches(b"names") && d.matches(b"") && d.matches(b"i\\\"d"));
    }

    #[test]
    fn length_table() {
        // Only even lengths; min 3, max 6 → 4 or 6.
        let d = dfa("^(ab)*$");
        let t = LenTable::build(&d, 3, Some(6)).unwrap();
        assert!(t.is_live(d.start, 0));
        let s1 = d.next(d.start, b'a') & !CHAR_START;
        assert!(t.is_live(s1, 1) && t.is_live(s1, 5) && !t.is_live(s1, 7));
        let t = LenTable::build(&dfa("^[0-9]{3}$"), 5, None).unwrap();
        let d3 = dfa("^[0-9]{3}$");
        assert!(
            !t.is_live(d3.start, 0),
            "three digits can never have length ≥ 5"
        );
    }
}
