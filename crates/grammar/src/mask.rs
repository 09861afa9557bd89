//! Token masks: which vocabulary entries a [`Constraint`] allows next.
//!
//! [`TokenMask`] holds every ordinary token's text (`token_to_piece(id,
//! special = false)`) in a byte trie laid out in depth-first order, so the
//! mask is one linear scan that skips whole subtrees once a prefix is
//! rejected: shared prefixes are walked once.
//!
//! Token classes:
//! * end-of-generation tokens (`is_eog`): allowed only when the constraint is
//!   complete, and end the match;
//! * other control tokens: never part of the trie; each is offered to the
//!   constraint as [`Input::Special`] (tool-call markers such as
//!   `<|python_tag|>` or `[TOOL_CALLS]` are control tokens in their
//!   vocabularies), and JSON constraints reject them all;
//! * tokens with an empty piece (unknown/unused): never allowed, since they
//!   would make no progress;
//! * everything else (including user-defined tokens, by their text).
//!
//! Inside a JSON string the walk would visit nearly the whole trie, so the
//! per-lexer-state result is cached ([`Constraint::lexeme`]): the tokens that
//! stay inside the string are a precomputed bitset, and only the subtrees
//! where the string closes are walked with the full constraint.
//!
//! [`Matcher`] ties a constraint, its state and the mask together and offers
//! llama.cpp's fast path: check the sampled token first and compute the full
//! mask only when it is rejected (for plain temperature sampling, resampling
//! from the masked distribution after a rejection gives exactly the masked
//! distribution overall).

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use hearth_tokenizer::Tokenizer;

use crate::constraint::{Constraint, LexStep, Lexeme};
use crate::grammar::Input;

/// A fixed-size set of token ids.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TokenBitset {
    words: Vec<u64>,
    len: usize,
}

impl TokenBitset {
    pub fn new(len: usize) -> TokenBitset {
        TokenBitset {
            words: vec![0; len.div_ceil(64)],
            len,
        }
    }
    pub fn len(&self) -> usize {
        self.len
    }
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }
    pub fn clear(&mut self) {
        self.words.fill(0);
    }
    #[inline]
    pub fn set(&mut self, i: u32) {
        if (i as usize) < self.len {
            self.words[i as usize >> 6] |= 1 << (i & 63);
        }
    }
    #[inline]
    pub fn unset(&mut self, i: u32) {
        if (i as usize) < self.len {
            self.words[i as usize >> 6] &= !(1 << (i & 63));
        }
    }
    #[inline]
    pub fn get(&self, i: u32) -> bool {
        (i as usize) < self.len && self.words[i as usize >> 6] >> (i & 63) & 1 == 1
    }
    pub fn or_with(&mut self, o: &TokenBitset) {
        for (a, b) in self.words.iter_mut().zip(&o.words) {
            *a |= *b;
        }
    }
    pub fn count(&self) -> usize {
        self.words.iter().map(|w| w.count_ones() as usize).sum()
    }
    /// Allowed ids, ascending.
    pub fn iter(&self) -> impl Iterator<Item = u32> + '_ {
        self.words.iter().enumerate().flat_map(|(wi, &w)| {
            let mut w = w;
            std::iter::from_fn(move || {
                if w == 0 {
                    return None;
                }
                let b = w.trailing_zeros();
                w &= w - 1;
                Some((wi as u32) << 6 | b)
            })
        })
    }
    /// Sets every disallowed logit to −∞ (logits beyond the set's length,
    /// e.g. padding rows of an output matrix, are disallowed too).
    pub fn apply_to_logits(&self, logits: &mut [f32]) {
        for (i, l) in logits.iter_mut().enumerate() {
            if !self.get(i as u32) {
                *l = f32::NEG_INFINITY;
            }
        }
    }
    /// Writes the set as booleans.
    pub fn to_bools(&self, out: &mut [bool]) {
        for (i, o) in out.iter_mut().enumerate() {
            *o = self.get(i as u32);
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum TokClass {
    Normal,
    Special,
    Eog,
    Never,
}

/// Per-vocabulary tables: the token trie and token classes. Build once per
/// loaded model and share (`Arc`) across requests.
#[derive(Debug)]
pub struct TokenMask {
    n_vocab: usize,
    /// Trie nodes in preorder; node 0 is the root.
    byte: Vec<u8>,
    depth: Vec<u16>,
    skip: Vec<u32>,
    parent: Vec<u32>,
    /// Tokens ending at node `i` are `order[tok_start[i]..tok_start[i+1]]`.
    tok_start: Vec<u32>,
    order: Vec<u32>,
    class: Vec<TokClass>,
    /// Token text for ordinary tokens (offsets into `text`).
    text: Vec<u8>,
    text_off: Vec<u32>,
    specials: Vec<u32>,
    eog: Vec<u32>,
    max_len: usize,
    /// Lexeme results for the canonical any-string lexer, shared by every
    /// constraint and request using this vocabulary.
    shared: Mutex<HashMap<u32, Arc<LexEntry>>>,
}

impl TokenMask {
    /// Precomputes the tables for `tok` (about a second for a 150k vocabulary
    /// in a debug build, far less in release).
    pub fn new(tok: &Tokenizer) -> TokenMask {
        let n = tok.n_vocab();
        let mut class = vec![TokClass::Never; n];
        let mut text = Vec::new();
        let mut text_off = Vec::with_capacity(n + 1);
        let mut specials = Vec::new();
        let mut eog = Vec::new();
        for id in 0..n as u32 {
            text_off.push(text.len() as u32);
            if tok.is_eog(id) {
                class[id as usize] = TokClass::Eog;
                eog.push(id);
                continue;
            }
            if tok.is_control(id) {
                class[id as usize] = TokClass::Special;
                specials.push(id);
                continue;
            }
            let p = tok.token_to_piece(id, false);
            if !p.is_empty() {
                class[id as usize] = TokClass::Normal;
                text.extend_from_slice(&p);
            }
        }
        text_off.push(text.len() as u32);
        let piece =
            |id: u32| &text[text_off[id as usize] as usize..text_off[id as usize + 1] as usize];
        let mut ids: Vec<u32> = (0..n as u32)
            .filter(|&i| class[i as usize] == TokClass::Normal)
            .collect();
        ids.sort_by(|&a, &b| piece(a).cmp(piece(b)).then(a.cmp(&b)));

        let mut byte = vec![0u8];
        let mut depth = vec![0u16];
        let mut skip = vec![0u32];
        let mut parent = vec![0u32];
        let mut end_node: Vec<u32> = Vec::with_capacity(ids.len());
        // Path of node ids from the root to the current node.
        let mut path: Vec<u32> = vec![0];
        let mut prev: &[u8] = &[];
        let mut max_len = 0;
        for &id in &ids {
            let p = piece(id);
            max_len = max_len.max(p.len());
            let common = p.iter().zip(prev).take_while(|(a, b)| a == b).count();
            while path.len() > common + 1 {
                if let Some(done) = path.pop() {
                    skip[done as usize] = byte.len() as u32;
                }
            }
            for &b in &p[common..] {
                let parent_id = *path.last().unwrap_or(&0);
                byte.push(b);
                depth.push(path.len() as u16);
                skip.push(0);
                parent.push(parent_id);
                path.push(byte.len() as u32 - 1);
            }
            end_node.push(*path.last().unwrap_or(&0));
            prev = p;
        }
        while let Some(done) = path.pop() {
            skip[done as usize] = byte.len() as u32;
        }
        let n_nodes = byte.len();
        let mut tok_start = vec![0u32; n_nodes + 1];
        for &e in &end_node {
            tok_start[e as usize + 1] += 1;
        }
        for i in 0..n_nodes {
            tok_start[i + 1] += tok_start[i];
        }
        // `ids` is sorted by piece, which is the preorder of end nodes.
        TokenMask {
            n_vocab: n,
            byte,
            depth,
            skip,
            parent,
            tok_start,
            order: ids,
            class,
            text,
            text_off,
            specials,
            eog,
            max_len,
            shared: Mutex::new(HashMap::new()),
        }
    }

    pub fn n_vocab(&self) -> usize {
        self.n_vocab
    }

    /// Precomputes the shared results for every state of the canonical
    /// any-string lexer (a few ms each), so no request pays for a cache miss
    /// inside an unconstrained JSON string. Call once after loading.
    pub fn prewarm_strings(&self) {
        let g = crate::grammar::Grammar::json_value(crate::grammar::JsonOptions::default());
        let mut scratch = MaskScratch::default();
        for st in 0..g.dfas[0].n_states() as u32 {
            let lex = Lexeme {
                kind: crate::grammar::FREE_STR,
                state: st,
                shared: true,
                budget: None,
            };
            self.lex_entry(&g, lex, &mut scratch);
        }
    }
    /// Byte values no single ordinary token spells. The never-dead-end
    /// guarantee is per byte; it holds per token when every byte a
    /// constraint may need has a token (byte-level BPE and SentencePiece
    /// with byte fallback cover all 256).
    pub fn missing_single_bytes(&self) -> Vec<u8> {
        let mut have = [false; 256];
        for id in 0..self.n_vocab as u32 {
            if let [b] = self.piece(id) {
                have[*b as usize] = true;
            }
        }
        (0..=255u8).filter(|&b| !have[b as usize]).collect()
    }

    /// Number of trie nodes (for reports).
    pub fn n_nodes(&self) -> usize {
        self.byte.len()
    }
    /// Longest token text in bytes.
    pub fn max_token_len(&self) -> usize {
        self.max_len
    }
    /// The text a token contributes under constraints (empty for special,
    /// EOG and empty tokens).
    pub fn piece(&self, id: u32) -> &[u8] {
        let i = id as usize;
        if i >= self.n_vocab {
            return &[];
        }
        &self.text[self.text_off[i] as usize..self.text_off[i + 1] as usize]
    }
    pub fn is_eog(&self, id: u32) -> bool {
        self.class.get(id as usize) == Some(&TokClass::Eog)
    }

    fn tokens_at(&self, node: usize) -> &[u32] {
        &self.order[self.tok_start[node] as usize..self.tok_start[node + 1] as usize]
    }

    fn path_bytes(&self, node: usize, out: &mut Vec<u8>) {
        out.clear();
        let mut n = node;
        while n != 0 {
            out.push(self.byte[n]);
            n = self.parent[n] as usize;
        }
        out.reverse();
    }

    /// Feeds token `id` to `c` from `state`. EOG tokens are accepted only
    /// when `state` is complete (the state is returned unchanged).
    pub fn advance_token<C: Constraint>(
        &self,
        c: &C,
        state: &C::State,
        id: u32,
    ) -> Option<C::State> {
        match self.class.get(id as usize)? {
            TokClass::Normal => c.advance(state, self.piece(id)),
            TokClass::Special => {
                let mut out = state.clone();
                c.step(state, Input::Special(id), &mut out).then_some(out)
            }
            TokClass::Eog => c.is_complete(state).then(|| state.clone()),
            TokClass::Never => None,
        }
    }

    /// Computes the set of tokens allowed after `state` into `out`.
    /// `scratch` caches per-lexeme results: use one per constraint.
    pub fn fill_mask<C: Constraint>(
        &self,
        c: &C,
        state: &C::State,
        scratch: &mut MaskScratch<C::State>,
        out: &mut TokenBitset,
    ) {
        if out.len != self.n_vocab {
            *out = TokenBitset::new(self.n_vocab);
        } else {
            out.clear();
        }
        if c.is_complete(state) {
            for &e in &self.eog {
                out.set(e);
            }
        }
        let mut tmp = state.clone();
        for &s in &self.specials {
            if c.step(state, Input::Special(s), &mut tmp) {
                out.set(s);
            }
        }
        if scratch.states.len() < self.max_len + 1 {
            scratch.states.resize(self.max_len + 1, state.clone());
        }
        if let Some(lex) = c.lexeme(state) {
            let entry = self.lex_entry(c, lex, scratch);
            out.or_with(&entry.within);
            if let Some(budget) = lex.budget {
                if (budget as usize) < self.max_len {
                    // Tokens staying in the string but longer than the
                    // remaining `maxLength` budget.
                    for t in entry.within.iter() {
                        if entry.chars[t as usize] as u32 > budget {
                            out.unset(t);
                        }
                    }
                }
            }
            let mut path = std::mem::take(&mut scratch.path);
            for &node in &entry.exits {
                self.path_bytes(node as usize, &mut path);
                if let Some(s) = c.advance(state, &path) {
                    for &t in self.tokens_at(node as usize) {
                        out.set(t);
                    }
                    self.walk(c, s, node as usize, &mut scratch.states, out);
                }
            }
            scratch.path = path;
        } else {
            self.walk(c, state.clone(), 0, &mut scratch.states, out);
        }
    }

    fn lex_entry<C: Constraint>(
        &self,
        c: &C,
        lex: Lexeme,
        scratch: &mut MaskScratch<C::State>,
    ) -> Arc<LexEntry> {
        let key = (lex.kind, lex.state);
        if lex.shared {
            // A poisoned lock only means another thread panicked mid-insert
            // of an immutable entry; the map itself is still consistent.
            let mut map = self.shared.lock().unwrap_or_else(|e| e.into_inner());
            if let Some(e) = map.get(&lex.state) {
                return e.clone();
            }
            let e = Arc::new(self.lex_walk(c, key, &mut scratch.lex_states));
            map.insert(lex.state, e.clone());
            return e;
        }
        if let Some(e) = scratch.cache.get(&key) {
            return e.clone();
        }
        if scratch.cache.len() >= MAX_CACHE {
            scratch.cache.clear();
        }
        let e = Arc::new(self.lex_walk(c, key, &mut scratch.lex_states));
        scratch.cache.insert(key, e.clone());
        e
    }

    /// Walks the subtree below `root` (whose state is `at_root`), setting
    /// every token whose text the constraint accepts.
    fn walk<C: Constraint>(
        &self,
        c: &C,
        at_root: C::State,
        root: usize,
        states: &mut [C::State],
        out: &mut TokenBitset,
    ) {
        let d0 = self.depth[root] as usize;
        states[d0] = at_root;
        let end = self.skip[root] as usize;
        let mut i = root + 1;
        while i < end {
            let d = self.depth[i] as usize;
            let (lo, hi) = states.split_at_mut(d);
            if c.step(&lo[d - 1], Input::Byte(self.byte[i]), &mut hi[0]) {
                for &t in self.tokens_at(i) {
                    out.set(t);
                }
                i += 1;
            } else {
                i = self.skip[i] as usize;
            }
        }
    }

    fn lex_walk<C: Constraint>(
        &self,
        c: &C,
        key: (u32, u32),
        lex: &mut Vec<(u32, u8)>,
    ) -> LexEntry {
        let mut within = TokenBitset::new(self.n_vocab);
        let mut chars = vec![0u8; self.n_vocab];
        let mut exits = Vec::new();
        lex.clear();
        lex.resize(self.max_len + 1, (0, 0));
        lex[0] = (key.1, 0);
        let n = self.byte.len();
        let mut i = 1;
        while i < n {
            let d = self.depth[i] as usize;
            let (st, nc) = lex[d - 1];
            match c.lex_step(key.0, st, self.byte[i]) {
                LexStep::Continue { state, counts } => {
                    let nc = nc.saturating_add(counts as u8);
                    lex[d] = (state, nc);
                    for &t in self.tokens_at(i) {
                        within.set(t);
                        chars[t as usize] = nc;
                    }
                    i += 1;
                }
                LexStep::Exit => {
                    exits.push(i as u32);
                    i = self.skip[i] as usize;
                }
                LexStep::Reject => i = self.skip[i] as usize,
            }
        }
        LexEntry {
            within,
            chars,
            exits,
        }
    }
}

/// Cached lexeme entries kept per scratch before it is flushed.
const MAX_CACHE: usize = 256;

#[derive(Debug)]
struct LexEntry {
    within: TokenBitset,
    /// Characters each `within` token adds (saturating).
    chars: Vec<u8>,
    /// Trie nodes where the lexeme is left; their subtrees need the full
    /// constraint.
    exits: Vec<u32>,
}

/// Reusable buffers and the lexeme cache for [`TokenMask::fill_mask`].
pub struct MaskScratch<S> {
    states: Vec<S>,
    lex_states: Vec<(u32, u8)>,
    path: Vec<u8>,
    cache: HashMap<(u32, u32), Arc<LexEntry>>,
}

impl<S> Default for MaskScratch<S> {
    fn default() -> Self {
        MaskScratch {
            states: Vec::new(),
            lex_states: Vec::new(),
            path: Vec::new(),
            cache: HashMap::new(),
        }
    }
}

impl<S> std::fmt::Debug for MaskScratch<S> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MaskScratch")
            .field("cached", &self.cache.len())
            .finish()
    }
}

/// A token the matcher did not allow.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
#[error("token {0} is not allowed by the constraint here")]
pub struct Rejected(pub u32);

/// One constrained generation: a constraint, its current state and the
/// vocabulary tables.
pub struct Matcher<C: Constraint> {
    vocab: Arc<TokenMask>,
    constraint: Arc<C>,
    state: C::State,
    scratch: MaskScratch<C::State>,
    bits: TokenBitset,
    finished: bool,
    n_accepted: usize,
}

impl<C: Constraint> Matcher<C> {
    pub fn new(vocab: Arc<TokenMask>, constraint: Arc<C>) -> Matcher<C> {
        let state = constraint.start();
        let bits = TokenBitset::new(vocab.n_vocab());
        Matcher {
            vocab,
            constraint,
            state,
            scratch: MaskScratch::default(),
            bits,
            finished: false,
            n_accepted: 0,
        }
    }

    /// Would `id` be accepted now? (The fast path: no mask computed.)
    pub fn is_allowed(&self, id: u32) -> bool {
        !self.finished
            && self
                .vocab
                .advance_token(&*self.constraint, &self.state, id)
                .is_some()
    }

    /// Advances by `id`; an EOG token (allowed only when complete) finishes
    /// the match.
    pub fn accept_token(&mut self, id: u32) -> Result<(), Rejected> {
        if self.finished {
            return Err(Rejected(id));
        }
        match self.vocab.advance_token(&*self.constraint, &self.state, id) {
            Some(s) => {
                self.state = s;
                self.n_accepted += 1;
                if self.vocab.is_eog(id) {
                    self.finished = true;
                }
                Ok(())
            }
            None => Err(Rejected(id)),
        }
    }

    /// The full mask of allowed tokens.
    pub fn compute_mask(&mut self) -> &TokenBitset {
        if self.finished {
            self.bits.clear();
        } else {
            self.vocab.fill_mask(
                &*self.constraint,
                &self.state,
                &mut self.scratch,
                &mut self.bits,
            );
        }
        &self.bits
    }

    /// Sets disallowed logits to −∞.
    pub fn mask_logits(&mut self, logits: &mut [f32]) {
        self.compute_mask();
        self.bits.apply_to_logits(logits);
    }

    /// Samples with the fast path: `sample` draws from `logits`; if the draw
    /// is not allowed, the mask is applied and `sample` draws again. Returns
    /// the token (not yet accepted), or `None` when nothing is allowed
    /// (only after the match finished).
    pub fn sample(
        &mut self,
        logits: &mut [f32],
        mut sample: impl FnMut(&[f32]) -> u32,
    ) -> Option<u32> {
        if self.finished {
            return None;
        }
        let first = sample(logits);
        if self.is_allowed(first) {
            return Some(first);
        }
        self.mask_logits(logits);
        if self.bits.count() == 0 {
            return None;
        }
        let t = sample(logits);
        if self.bits.get(t) {
            Some(t)
        } else {
            // A sampler that ignored −∞ (e.g. all-masked after its own
            // filters): fall back to the best allowed logit.
            let at = |t: u32| logits.get(t as usize).copied().unwrap_or(f32::NEG_INFINITY);
            self.bits.iter().max_by(|&a, &b| at(a).total_cmp(&at(b)))
        }
    }

    /// The output so far is a complete instance.
    pub fn is_complete(&self) -> bool {
        self.finished || self.constraint.is_complete(&self.state)
    }
    /// An EOG token was accepted.
    pub fn is_finished(&self) -> bool {
        self.finished
    }
    /// Tokens accepted so far.
    pub fn n_accepted(&self) -> usize {
        self.n_accepted
    }
    pub fn state(&self) -> &C::State {
        &self.state
    }
    pub fn constraint(&self) -> &C {
        &self.constraint
    }
}
