//! The constraint engine: a grammar of JSON-value and raw-text nodes, run as
//! a nondeterministic pushdown automaton over bytes (and special tokens).
//!
//! A state is a small *set* of configurations; a configuration is a stack of
//! [`Frame`]s. Most inputs keep one configuration; unions (`anyOf`, type
//! lists), keys that may be declared or additional, literals that are
//! prefixes of others and repeat/stop decisions fork it. Every configuration
//! the engine keeps is *live*: it can still be completed (DFAs are pruned,
//! string length tables and number bounds are checked after every byte, and
//! unsatisfiable schema parts are removed at compile time). So a constrained
//! decoder never dead-ends: some token is always allowed, or the output is
//! complete.
//!
//! Strings, numbers and literals are lexemes handled inside single frames;
//! strings expose a context-free "lexeme" view used by the token mask cache
//! (see [`crate::mask`]).

use crate::constraint::{LexStep, Lexeme};
use crate::dfa::{Dfa, LenTable, CHAR_START, DEAD};
use crate::number::{NumKind, NumState, NumStep};

pub(crate) type NodeId = u32;

/// Payload for "no literal payload / additional property key".
pub(crate) const NONE: u32 = u32::MAX;
const ADD16: u16 = u16::MAX;

/// Tuning for JSON generation.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct JsonOptions {
    /// Longest run of whitespace allowed between JSON tokens (so a model
    /// cannot loop forever on spaces). Default 20, as llama.cpp's
    /// `json.gbnf` (`ws ::= | " " | "\n" [ \t]{0,20}`).
    pub max_whitespace: u8,
    /// Nesting depth beyond which a free-form value (`{}` schema,
    /// `json_object` members) may only be a scalar. Default 24.
    pub max_any_depth: u8,
    /// Most configurations kept at once; further ones are dropped (every
    /// kept one stays live, so this narrows the language but never breaks
    /// validity). Default 64.
    pub max_configs: u16,
}

impl Default for JsonOptions {
    fn default() -> Self {
        JsonOptions {
            max_whitespace: 20,
            max_any_depth: 24,
            max_configs: 64,
        }
    }
}

/// One input symbol: a byte of a token's text, or a special (control)
/// token that has no text of its own.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Input {
    Byte(u8),
    Special(u32),
}

#[derive(Clone, Debug)]
pub(crate) struct Prop {
    pub name: String,
    pub node: NodeId,
    pub required: bool,
}

#[derive(Clone, Debug)]
pub(crate) struct ObjectNode {
    pub props: Vec<Prop>,
    /// Schema for keys not in `props`; `None` = no extra keys.
    pub additional: Option<NodeId>,
    /// String kind for extra keys (any string minus the declared names).
    pub add_key_kind: u32,
    /// Per `next` index: literal trie of the candidate declared keys.
    pub key_tries: Vec<Option<u32>>,
    /// Per `next` index: some required property remains at or after it.
    pub req_from: Vec<bool>,
}

impl ObjectNode {
    fn has_required_from(&self, next: usize) -> bool {
        self.req_from.get(next).copied().unwrap_or(false)
    }
    fn extra_allowed(&self, next: usize) -> bool {
        self.additional.is_some() && !self.has_required_from(next)
    }
    fn more_keys(&self, next: usize) -> bool {
        next < self.props.len() || self.extra_allowed(next)
    }
}

#[derive(Clone, Debug)]
pub(crate) struct ArrayNode {
    pub prefix: Vec<NodeId>,
    /// Schema for elements after `prefix`; `None` = no more elements.
    pub items: Option<NodeId>,
    pub min: u32,
    pub max: u32,
}

impl ArrayNode {
    pub(crate) fn elem(&self, i: u32) -> Option<NodeId> {
        self.prefix.get(i as usize).copied().or(self.items)
    }
    fn can_add(&self, count: u32) -> bool {
        count < self.max && self.elem(count).is_some()
    }
}

#[derive(Clone, Debug)]
pub(crate) enum Node {
    /// Any JSON value (depth-limited containers).
    Any,
    Object(ObjectNode),
    Array(ArrayNode),
    Str(u32),
    Num(u32),
    /// A literal trie root: one of a set of exact byte strings.
    Lit(u32),
    Union(Vec<NodeId>),
    /// One special token.
    Special(u32),
    /// Exact raw bytes (non-empty).
    Bytes(Vec<u8>),
    /// Raw sequence (non-empty; no whitespace between items).
    Seq(Vec<NodeId>),
    /// `item (sep item)*`, between `min` (≥ 1) and `max` items.
    Repeat {
        item: NodeId,
        sep: Option<NodeId>,
        min: u32,
        max: u32,
    },
}

/// A string lexeme: contents DFA plus length bounds (in characters).
#[derive(Clone, Debug)]
pub(crate) struct StrKind {
    pub dfa: u32,
    pub min: u32,
    pub max: u32,
    /// Present when a pattern DFA meets length bounds. Kind with DFA 0
    /// (any string) never need one: any count ≤ `max` can be padded to `min`.
    pub table: Option<LenTable>,
}

/// A literal trie node.
#[derive(Clone, Debug, Default)]
pub(crate) struct LitNode {
    pub edges: Vec<(u8, u32)>,
    pub accept: Option<u32>,
}

impl LitNode {
    fn child(&self, b: u8) -> Option<u32> {
        self.edges.iter().find(|e| e.0 == b).map(|e| e.1)
    }
}

pub(crate) const ST_OPEN: u8 = 0;
pub(crate) const ST_COMMA: u8 = 1;
pub(crate) const ST_KEY: u8 = 2;
pub(crate) const ST_AFTER_KEY: u8 = 3;
pub(crate) const ST_COLON: u8 = 4;
pub(crate) const ST_VALUE: u8 = 5;
pub(crate) const ST_AFTER_VALUE: u8 = 6;

const REP_IN_ITEM: u8 = 0;
const REP_AFTER_ITEM: u8 = 1;
const REP_IN_SEP: u8 = 2;
const REP_BEFORE_ITEM: u8 = 3;

/// One stack frame of a configuration.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub(crate) enum Frame {
    Root {
        node: NodeId,
        done: bool,
    },
    Obj {
        node: NodeId,
        next: u16,
        cur: u16,
        stage: u8,
        ws: u8,
        depth: u8,
    },
    Arr {
        node: NodeId,
        count: u32,
        stage: u8,
        ws: u8,
        depth: u8,
    },
    Str {
        kind: u32,
        st: u32,
        count: u32,
    },
    Num {
        kind: u32,
        st: NumState,
    },
    Lit {
        at: u32,
    },
    Bytes {
        node: NodeId,
        pos: u32,
    },
    Seq {
        node: NodeId,
        idx: u32,
    },
    Rep {
        node: NodeId,
        count: u32,
        stage: u8,
    },
}

/// The state of a [`Grammar`]: a set of live configurations.
#[derive(Clone, Debug, Default, PartialEq, Eq, Hash)]
pub struct GrammarState {
    frames: Vec<Frame>,
    ends: Vec<u32>,
}

impl GrammarState {
    /// Number of configurations (0 only for a rejected state).
    pub fn n_configs(&self) -> usize {
        self.ends.len()
    }
    fn config(&self, i: usize) -> &[Frame] {
        let s = if i == 0 { 0 } else { self.ends[i - 1] as usize };
        &self.frames[s..self.ends[i] as usize]
    }
    fn clear(&mut self) {
        self.frames.clear();
        self.ends.clear();
    }
}

/// Output under construction: configurations are appended one at a time; the
/// one being worked on is `frames[base..]`.
struct Out<'a> {
    frames: &'a mut Vec<Frame>,
    ends: &'a mut Vec<u32>,
}

impl Out<'_> {
    fn emit(&mut self) {
        self.ends.push(self.frames.len() as u32);
    }
    fn reject(&mut self, base: usize) {
        self.frames.truncate(base);
    }
    fn top(&self) -> Option<Frame> {
        self.frames.last().copied()
    }
    fn set_top(&mut self, f: Frame) {
        if let Some(t) = self.frames.last_mut() {
            *t = f;
        }
    }
    /// Copies the working stack so each branch of a fork starts from it.
    fn save(&mut self, base: usize) -> Vec<Frame> {
        let v = self.frames[base..].to_vec();
        self.frames.truncate(base);
        v
    }
    fn restore(&mut self, saved: &[Frame]) -> usize {
        let b = self.frames.len();
        self.frames.extend_from_slice(saved);
        b
    }
}

/// A compiled constraint: JSON values (free or schema-driven) and raw text
/// around them (tool-call syntax). Build one with
/// [`Grammar::json_object`], [`Grammar::json_value`],
/// [`Grammar::json_schema`] or [`crate::tools::ToolCallConstraint`].
#[derive(Clone, Debug)]
pub struct Grammar {
    pub(crate) nodes: Vec<Node>,
    pub(crate) root: NodeId,
    pub(crate) strs: Vec<StrKind>,
    pub(crate) nums: Vec<NumKind>,
    pub(crate) lits: Vec<LitNode>,
    pub(crate) dfas: Vec<Dfa>,
    pub(crate) opts: JsonOptions,
}

/// Well-known ids every grammar has (created by [`Grammar::base`]).
pub(crate) const ANY: NodeId = 0;
pub(crate) const ANY_OBJ: NodeId = 1;
pub(crate) const ANY_ARR: NodeId = 2;
pub(crate) const FREE_STR_NODE: NodeId = 3;
pub(crate) const FREE_NUM_NODE: NodeId = 4;
pub(crate) const TRUE_NODE: NodeId = 5;
pub(crate) const FALSE_NODE: NodeId = 6;
pub(crate) const NULL_NODE: NodeId = 7;
/// String kind 0: any string.
pub(crate) const FREE_STR: u32 = 0;

impl Grammar {
    /// A grammar with the free-form JSON building blocks and no root yet.
    pub(crate) fn base(opts: JsonOptions) -> Result<Grammar, crate::dfa::DfaError> {
        let any_str = Dfa::from_re(&crate::regex::Re::Repeat(
            Box::new(crate::regex::Re::Class(crate::regex::CharSet::any())),
            0,
            None,
        ))?;
        let mut g = Grammar {
            nodes: Vec::new(),
            root: ANY,
            strs: vec![StrKind {
                dfa: 0,
                min: 0,
                max: u32::MAX,
                table: None,
            }],
            nums: vec![NumKind::free_number()],
            lits: Vec::new(),
            dfas: vec![any_str],
            opts,
        };
        g.nodes.push(Node::Any);
        g.nodes.push(Node::Object(ObjectNode {
            props: Vec::new(),
            additional: Some(ANY),
            add_key_kind: FREE_STR,
            key_tries: vec![None],
            req_from: vec![false],
        }));
        g.nodes.push(Node::Array(ArrayNode {
            prefix: Vec::new(),
            items: Some(ANY),
            min: 0,
            max: u32::MAX,
        }));
        g.nodes.push(Node::Str(FREE_STR));
        g.nodes.push(Node::Num(0));
        for lit in [&b"true"[..], b"false", b"null"] {
            let root = g.add_lits(&[(lit.to_vec(), NONE)]);
            g.nodes.push(Node::Lit(root));
        }
        Ok(g)
    }

    pub(crate) fn add_node(&mut self, n: Node) -> NodeId {
        self.nodes.push(n);
        self.nodes.len() as NodeId - 1
    }

    /// Adds a trie of `(bytes, payload)` words; returns its root.
    pub(crate) fn add_lits(&mut self, words: &[(Vec<u8>, u32)]) -> u32 {
        let root = self.lits.len() as u32;
        self.lits.push(LitNode::default());
        for (w, payload) in words {
            let mut at = root;
            for &b in w {
                at = match self.lits[at as usize].child(b) {
                    Some(c) => c,
                    None => {
                        let c = self.lits.len() as u32;
                        self.lits.push(LitNode::default());
                        self.lits[at as usize].edges.push((b, c));
                        c
                    }
                };
            }
            if self.lits[at as usize].accept.is_none() {
                self.lits[at as usize].accept = Some(*payload);
            }
        }
        root
    }

    /// No word in the trie (iterative: literals can be long).
    pub(crate) fn lit_is_empty(&self, root: u32) -> bool {
        let mut stack = vec![root];
        while let Some(at) = stack.pop() {
            let n = &self.lits[at as usize];
            if n.accept.is_some() {
                return false;
            }
            stack.extend(n.edges.iter().map(|e| e.1));
        }
        true
    }

    /// The options this grammar was built with.
    pub fn options(&self) -> JsonOptions {
        self.opts
    }

    // ---- running ---------------------------------------------------------

    /// The state before any input.
    pub fn start_state(&self) -> GrammarState {
        self.start_at(self.root)
    }

    pub(crate) fn start_at(&self, node: NodeId) -> GrammarState {
        GrammarState {
            frames: vec![Frame::Root { node, done: false }],
            ends: vec![1],
        }
    }

    /// Feeds one input symbol to every configuration of `from`, writing the
    /// successors into `to` (its allocations are reused). False if none.
    pub fn step_into(&self, from: &GrammarState, inp: Input, to: &mut GrammarState) -> bool {
        to.clear();
        let mut out = Out {
            frames: &mut to.frames,
            ends: &mut to.ends,
        };
        for i in 0..from.ends.len() {
            let base = out.frames.len();
            out.frames.extend_from_slice(from.config(i));
            self.feed(&mut out, base, inp);
            if out.ends.len() > self.opts.max_configs as usize {
                break;
            }
        }
        if to.ends.len() > 1 {
            dedupe(to, self.opts.max_configs as usize);
        }
        !to.ends.is_empty()
    }

    /// Feeds a byte string; `None` if any byte is rejected.
    pub fn advance_bytes(&self, from: &GrammarState, bytes: &[u8]) -> Option<GrammarState> {
        let mut a = from.clone();
        let mut b = GrammarState::default();
        for &x in bytes {
            if !self.step_into(&a, Input::Byte(x), &mut b) {
                return None;
            }
            std::mem::swap(&mut a, &mut b);
        }
        Some(a)
    }

    /// A shortest input sequence that completes `state` (breadth-first over
    /// bytes and this grammar's special tokens, exploring at most
    /// `max_states` distinct states). Every state this engine produces has
    /// one; `None` means the search limit was hit. Useful to close an
    /// output deliberately, and in tests as a constructive liveness check.
    pub fn shortest_completion(
        &self,
        state: &GrammarState,
        max_states: usize,
    ) -> Option<Vec<Input>> {
        use std::collections::{HashMap, VecDeque};
        if self.state_is_complete(state) {
            return Some(Vec::new());
        }
        let mut inputs: Vec<Input> = (0..=255u8).map(Input::Byte).collect();
        for n in &self.nodes {
            if let Node::Special(id) = n {
                inputs.push(Input::Special(*id));
            }
        }
        // state → (parent index, input)
        let mut seen: HashMap<GrammarState, usize> = HashMap::new();
        let mut nodes: Vec<(usize, Input)> = vec![(usize::MAX, Input::Byte(0))];
        let mut queue = VecDeque::new();
        seen.insert(state.clone(), 0);
        queue.push_back((state.clone(), 0usize));
        let mut next = GrammarState::default();
        while let Some((s, idx)) = queue.pop_front() {
            for &inp in &inputs {
                if !self.step_into(&s, inp, &mut next) || seen.contains_key(&next) {
                    continue;
                }
                nodes.push((idx, inp));
                let ni = nodes.len() - 1;
                if self.state_is_complete(&next) {
                    let mut path = Vec::new();
                    let mut i = ni;
                    while i != 0 {
                        path.push(nodes[i].1);
                        i = nodes[i].0;
                    }
                    path.reverse();
                    return Some(path);
                }
                if seen.len() >= max_states {
                    return None;
                }
                seen.insert(next.clone(), ni);
                queue.push_back((next.clone(), ni));
            }
        }
        None
    }

    /// Some configuration may stop here.
    pub fn state_is_complete(&self, s: &GrammarState) -> bool {
        (0..s.ends.len()).any(|i| self.stack_complete(s.config(i)))
    }

    fn stack_complete(&self, stack: &[Frame]) -> bool {
        let mut v = stack.to_vec();
        loop {
            match v.last().copied() {
                Some(Frame::Root { done, .. }) => return done,
                Some(Frame::Num { kind, st }) if self.nums[kind as usize].can_end(&st) => {
                    v.pop();
                    self.child_done(&mut v, NONE);
                }
                Some(Frame::Lit { at }) => match self.lits[at as usize].accept {
                    Some(p) => {
                        v.pop();
                        self.child_done(&mut v, p);
                    }
                    None => return false,
                },
                Some(Frame::Rep {
                    node,
                    count,
                    stage: REP_AFTER_ITEM,
                }) => {
                    let Node::Repeat { min, .. } = &self.nodes[node as usize] else {
                        return false;
                    };
                    if count < *min {
                        return false;
                    }
                    v.pop();
                    self.child_done(&mut v, NONE);
                }
                _ => return false,
            }
        }
    }

    /// The string-lexeme view of a state: one configuration inside a
    /// string whose next bytes the DFA alone judges until the closing quote
    /// (strings whose pattern meets length bounds need the length table and
    /// are excluded; `maxLength` alone becomes a character budget).
    pub(crate) fn lexeme(&self, s: &GrammarState) -> Option<Lexeme> {
        if s.ends.len() != 1 {
            return None;
        }
        match s.frames.last()? {
            Frame::Str { kind, st, count } => {
                let k = &self.strs[*kind as usize];
                if k.table.is_some() {
                    return None;
                }
                Some(Lexeme {
                    kind: *kind,
                    state: *st,
                    shared: k.dfa == 0,
                    budget: (k.max != u32::MAX).then(|| k.max.saturating_sub(*count)),
                })
            }
            _ => None,
        }
    }

    /// One byte of a string lexeme: a closing quote exits, a DEAD
    /// transition rejects.
    #[inline]
    pub(crate) fn lex_step(&self, kind: u32, st: u32, b: u8) -> LexStep {
        let d = &self.dfas[self.strs[kind as usize].dfa as usize];
        let t = d.next(st, b);
        if t != DEAD {
            return LexStep::Continue {
                state: t & !CHAR_START,
                counts: t & CHAR_START != 0,
            };
        }
        if b == b'"' {
            LexStep::Exit
        } else {
            LexStep::Reject
        }
    }

    // ---- the machine -----------------------------------------------------

    fn feed(&self, o: &mut Out, mut base: usize, inp: Input) {
        loop {
            let Some(top) = o.top() else {
                return o.reject(base);
            };
            match top {
                Frame::Root { node, done } => {
                    if done {
                        return o.reject(base);
                    }
                    return self.start(o, base, node, 1, inp);
                }
                Frame::Str { kind, st, count } => {
                    let Input::Byte(b) = inp else {
                        return o.reject(base);
                    };
                    let k = &self.strs[kind as usize];
                    let d = &self.dfas[k.dfa as usize];
                    let t = d.next(st, b);
                    if t == DEAD {
                        if b == b'"' && d.accept[st as usize] && count >= k.min {
                            o.frames.pop();
                            self.child_done(o.frames, NONE);
                            return o.emit();
                        }
                        return o.reject(base);
                    }
                    let ns = t & !CHAR_START;
                    let nc = count + (t >> 31);
                    if nc > k.max {
                        return o.reject(base);
                    }
                    if let Some(tab) = &k.table {
                        if !tab.is_live(ns, nc) {
                            return o.reject(base);
                        }
                    }
                    o.set_top(Frame::Str {
                        kind,
                        st: ns,
                        count: nc,
                    });
                    return o.emit();
                }
                Frame::Num { kind, mut st } => {
                    let k = &self.nums[kind as usize];
                    let r = match inp {
                        Input::Byte(b) => k.step(&mut st, b),
                        Input::Special(_) => {
                            if k.can_end(&st) {
                                NumStep::End
                            } else {
                                NumStep::Reject
                            }
                        }
                    };
                    match r {
                        NumStep::Continue => {
                            o.set_top(Frame::Num { kind, st });
                            return o.emit();
                        }
                        NumStep::End => {
                            o.frames.pop();
                            self.child_done(o.frames, NONE);
                            continue;
                        }
                        NumStep::Reject => return o.reject(base),
                    }
                }
                Frame::Lit { at } => {
                    let n = &self.lits[at as usize];
                    let next = match inp {
                        Input::Byte(b) => n.child(b),
                        Input::Special(_) => None,
                    };
                    match (next, n.accept) {
                        (Some(c), None) => {
                            o.set_top(Frame::Lit { at: c });
                            return o.emit();
                        }
                        (None, Some(p)) => {
                            o.frames.pop();
                            self.child_done(o.frames, p);
                            continue;
                        }
                        (Some(c), Some(p)) => {
                            // Both "longer literal" and "literal ends here".
                            let saved = o.save(base);
                            o.restore(&saved);
                            o.set_top(Frame::Lit { at: c });
                            o.emit();
                            base = o.restore(&saved);
                            o.frames.pop();
                            self.child_done(o.frames, p);
                            continue;
                        }
                        (None, None) => return o.reject(base),
                    }
                }
                Frame::Bytes { node, pos } => {
                    let Node::Bytes(v) = &self.nodes[node as usize] else {
                        return o.reject(base);
                    };
                    if inp != Input::Byte(v[pos as usize]) {
                        return o.reject(base);
                    }
                    if pos as usize + 1 == v.len() {
                        o.frames.pop();
                        self.child_done(o.frames, NONE);
                    } else {
                        o.set_top(Frame::Bytes { node, pos: pos + 1 });
                    }
                    return o.emit();
                }
                Frame::Seq { node, idx } => {
                    let Node::Seq(items) = &self.nodes[node as usize] else {
                        return o.reject(base);
                    };
                    return self.start(o, base, items[idx as usize], 1, inp);
                }
                Frame::Rep { node, count, stage } => {
                    let Node::Repeat {
                        item,
                        sep,
                        min,
                        max,
                    } = &self.nodes[node as usize]
                    else {
                        return o.reject(base);
                    };
                    match stage {
                        REP_BEFORE_ITEM => {
                            o.set_top(Frame::Rep {
                                node,
                                count,
                                stage: REP_IN_ITEM,
                            });
                            return self.start(o, base, *item, 1, inp);
                        }
                        REP_AFTER_ITEM => {
                            let more = count < *max;
                            let end = count >= *min;
                            if !more && !end {
                                return o.reject(base);
                            }
                            let saved = if more && end {
                                Some(o.save(base))
                            } else {
                                None
                            };
                            if more {
                                let b = match &saved {
                                    Some(s) => o.restore(s),
                                    None => base,
                                };
                                match sep {
                                    Some(sp) => {
                                        o.set_top(Frame::Rep {
                                            node,
                                            count,
                                            stage: REP_IN_SEP,
                                        });
                                        self.start(o, b, *sp, 1, inp);
                                    }
                                    None => {
                                        o.set_top(Frame::Rep {
                                            node,
                                            count,
                                            stage: REP_IN_ITEM,
                                        });
                                        self.start(o, b, *item, 1, inp);
                                    }
                                }
                            }
                            if !end {
                                return;
                            }
                            base = match &saved {
                                Some(s) => o.restore(s),
                                None => base,
                            };
                            o.frames.pop();
                            self.child_done(o.frames, NONE);
                            continue;
                        }
                        _ => return o.reject(base),
                    }
                }
                Frame::Obj {
                    node,
                    next,
                    cur,
                    stage,
                    ws,
                    depth,
                } => {
                    return self.obj(o, base, inp, node, next, cur, stage, ws, depth);
                }
                Frame::Arr {
                    node,
                    count,
                    stage,
                    ws,
                    depth,
                } => {
                    return self.arr(o, base, inp, node, count, stage, ws, depth);
                }
            }
        }
    }

    /// Begins a value/raw node with its first input symbol.
    fn start(&self, o: &mut Out, base: usize, node: NodeId, depth: u8, inp: Input) {
        match &self.nodes[node as usize] {
            Node::Any => {
                let Input::Byte(b) = inp else {
                    return o.reject(base);
                };
                let n = match b {
                    b'{' | b'[' if depth > self.opts.max_any_depth => return o.reject(base),
                    b'{' => ANY_OBJ,
                    b'[' => ANY_ARR,
                    b'"' => FREE_STR_NODE,
                    b'-' | b'0'..=b'9' => FREE_NUM_NODE,
                    b't' => TRUE_NODE,
                    b'f' => FALSE_NODE,
                    b'n' => NULL_NODE,
                    _ => return o.reject(base),
                };
                self.start(o, base, n, depth, inp)
            }
            Node::Object(_) => {
                if inp != Input::Byte(b'{') {
                    return o.reject(base);
                }
                o.frames.push(Frame::Obj {
                    node,
                    next: 0,
                    cur: 0,
                    stage: ST_OPEN,
                    ws: 0,
                    depth,
                });
                o.emit()
            }
            Node::Array(_) => {
                if inp != Input::Byte(b'[') {
                    return o.reject(base);
                }
                o.frames.push(Frame::Arr {
                    node,
                    count: 0,
                    stage: ST_OPEN,
                    ws: 0,
                    depth,
                });
                o.emit()
            }
            Node::Str(k) => {
                if inp != Input::Byte(b'"') {
                    return o.reject(base);
                }
                let d = &self.dfas[self.strs[*k as usize].dfa as usize];
                o.frames.push(Frame::Str {
                    kind: *k,
                    st: d.start,
                    count: 0,
                });
                o.emit()
            }
            Node::Num(k) => {
                o.frames.push(Frame::Num {
                    kind: *k,
                    st: NumState::default(),
                });
                self.feed(o, base, inp)
            }
            Node::Lit(root) => {
                o.frames.push(Frame::Lit { at: *root });
                self.feed(o, base, inp)
            }
            Node::Union(branches) => {
                if branches.is_empty() {
                    return o.reject(base);
                }
                let saved = o.save(base);
                for &b in branches {
                    let nb = o.restore(&saved);
                    self.start(o, nb, b, depth, inp);
                }
            }
            Node::Special(id) => {
                if inp != Input::Special(*id) {
                    return o.reject(base);
                }
                self.child_done(o.frames, NONE);
                o.emit()
            }
            Node::Bytes(v) => {
                if v.is_empty() || inp != Input::Byte(v[0]) {
                    return o.reject(base);
                }
                if v.len() == 1 {
                    self.child_done(o.frames, NONE);
                } else {
                    o.frames.push(Frame::Bytes { node, pos: 1 });
                }
                o.emit()
            }
            Node::Seq(items) => {
                let Some(&first) = items.first() else {
                    return o.reject(base);
                };
                o.frames.push(Frame::Seq { node, idx: 0 });
                self.start(o, base, first, depth, inp)
            }
            Node::Repeat { item, .. } => {
                o.frames.push(Frame::Rep {
                    node,
                    count: 0,
                    stage: REP_IN_ITEM,
                });
                self.start(o, base, *item, depth, inp)
            }
        }
    }

    /// The frame on top of `frames` had a child finish (already popped).
    fn child_done(&self, frames: &mut Vec<Frame>, payload: u32) {
        let mut payload = payload;
        while let Some(top) = frames.last_mut() {
            match top {
                Frame::Root { done, .. } => {
                    *done = true;
                    return;
                }
                Frame::Obj {
                    stage,
                    next,
                    cur,
                    ws,
                    ..
                } => {
                    if *stage == ST_KEY {
                        if payload == NONE {
                            *cur = ADD16;
                        } else {
                            *cur = payload as u16;
                            *next = payload as u16 + 1;
                        }
                        *stage = ST_AFTER_KEY;
                    } else {
                        *stage = ST_AFTER_VALUE;
                    }
                    *ws = 0;
                    return;
                }
                Frame::Arr {
                    count, stage, ws, ..
                } => {
                    *count += 1;
                    *stage = ST_AFTER_VALUE;
                    *ws = 0;
                    return;
                }
                Frame::Seq { node, idx } => {
                    let len = match &self.nodes[*node as usize] {
                        Node::Seq(items) => items.len() as u32,
                        _ => 0,
                    };
                    *idx += 1;
                    if *idx >= len {
                        frames.pop();
                        payload = NONE;
                        continue;
                    }
                    return;
                }
                Frame::Rep { count, stage, .. } => {
                    if *stage == REP_IN_SEP {
                        *stage = REP_BEFORE_ITEM;
                    } else {
                        *count += 1;
                        *stage = REP_AFTER_ITEM;
                    }
                    return;
                }
                // Lexeme frames never have children.
                _ => return,
            }
        }
    }

    #[allow(clippy::too_many_arguments)]
    fn obj(
        &self,
        o: &mut Out,
        base: usize,
        inp: Input,
        node: NodeId,
        next: u16,
        cur: u16,
        stage: u8,
        ws: u8,
        depth: u8,
    ) {
        let Node::Object(on) = &self.nodes[node as usize] else {
            return o.reject(base);
        };
        let Input::Byte(b) = inp else {
            return o.reject(base);
        };
        let nx = next as usize;
        let frame = |next: u16, cur: u16, stage: u8, ws: u8| Frame::Obj {
            node,
            next,
            cur,
            stage,
            ws,
            depth,
        };
        if matches!(b, b' ' | b'\t' | b'\n' | b'\r')
            && matches!(
                stage,
                ST_OPEN | ST_COMMA | ST_AFTER_KEY | ST_COLON | ST_AFTER_VALUE
            )
        {
            if ws >= self.opts.max_whitespace {
                return o.reject(base);
            }
            o.set_top(frame(next, cur, stage, ws + 1));
            return o.emit();
        }
        match (stage, b) {
            (ST_OPEN | ST_COMMA, b'"') => {
                let trie = on.key_tries.get(nx).copied().flatten();
                let extra = on.extra_allowed(nx);
                o.set_top(frame(next, cur, ST_KEY, 0));
                let saved = if trie.is_some() && extra {
                    Some(o.save(base))
                } else {
                    None
                };
                if let Some(root) = trie {
                    let b1 = match &saved {
                        Some(s) => o.restore(s),
                        None => base,
                    };
                    match self.lits[root as usize].child(b'"') {
                        Some(c) => {
                            o.frames.push(Frame::Lit { at: c });
                            o.emit();
                        }
                        None => o.reject(b1),
                    }
                }
                if extra {
                    if let Some(s) = &saved {
                        o.restore(s);
                    }
                    let k = &self.strs[on.add_key_kind as usize];
                    let st = self.dfas[k.dfa as usize].start;
                    o.frames.push(Frame::Str {
                        kind: on.add_key_kind,
                        st,
                        count: 0,
                    });
                    o.emit();
                }
                if trie.is_none() && !extra {
                    o.reject(base);
                }
            }
            (ST_OPEN | ST_AFTER_VALUE, b'}') if !on.has_required_from(nx) => {
                o.frames.pop();
                self.child_done(o.frames, NONE);
                o.emit()
            }
            (ST_AFTER_KEY, b':') => {
                o.set_top(frame(next, cur, ST_COLON, 0));
                o.emit()
            }
            (ST_COLON, _) => {
                let vnode = if cur == ADD16 {
                    match on.additional {
                        Some(a) => a,
                        None => return o.reject(base),
                    }
                } else {
                    match on.props.get(cur as usize) {
                        Some(p) => p.node,
                        None => return o.reject(base),
                    }
                };
                o.set_top(frame(next, cur, ST_VALUE, 0));
                self.start(o, base, vnode, depth.saturating_add(1), inp)
            }
            (ST_AFTER_VALUE, b',') if on.more_keys(nx) => {
                o.set_top(frame(next, cur, ST_COMMA, 0));
                o.emit()
            }
            _ => o.reject(base),
        }
    }

    #[allow(clippy::too_many_arguments)]
    fn arr(
        &self,
        o: &mut Out,
        base: usize,
        inp: Input,
        node: NodeId,
        count: u32,
        stage: u8,
        ws: u8,
        depth: u8,
    ) {
        let Node::Array(an) = &self.nodes[node as usize] else {
            return o.reject(base);
        };
        let Input::Byte(b) = inp else {
            return o.reject(base);
        };
        let frame = |count: u32, stage: u8, ws: u8| Frame::Arr {
            node,
            count,
            stage,
            ws,
            depth,
        };
        if matches!(b, b' ' | b'\t' | b'\n' | b'\r')
            && matches!(stage, ST_OPEN | ST_COMMA | ST_AFTER_VALUE)
        {
            if ws >= self.opts.max_whitespace {
                return o.reject(base);
            }
            o.set_top(frame(count, stage, ws + 1));
            return o.emit();
        }
        match (stage, b) {
            (ST_OPEN, b']') if an.min == 0 => {
                o.frames.pop();
                self.child_done(o.frames, NONE);
                o.emit()
            }
            (ST_AFTER_VALUE, b']') if count >= an.min => {
                o.frames.pop();
                self.child_done(o.frames, NONE);
                o.emit()
            }
            (ST_AFTER_VALUE, b',') if an.can_add(count) => {
                o.set_top(frame(count, ST_COMMA, 0));
                o.emit()
            }
            (ST_OPEN | ST_COMMA, _) => {
                if !an.can_add(count) {
                    return o.reject(base);
                }
                let Some(e) = an.elem(count) else {
                    return o.reject(base);
                };
                o.set_top(frame(count, ST_VALUE, 0));
                self.start(o, base, e, depth.saturating_add(1), inp)
            }
            _ => o.reject(base),
        }
    }
}

/// Removes duplicate configurations and caps their number.
fn dedupe(s: &mut GrammarState, cap: usize) {
    let n = s.ends.len();
    let mut keep: Vec<usize> = Vec::with_capacity(n);
    for i in 0..n {
        let c = s.config(i);
        if keep.len() >= cap {
            break;
        }
        if !keep.iter().any(|&j| s.config(j) == c) {
            keep.push(i);
        }
    }
    if keep.len() == n {
        return;
    }
    let mut frames = Vec::with_capacity(s.frames.len());
    let mut ends = Vec::with_capacity(keep.len());
    for &i in &keep {
        frames.extend_from_slice(s.config(i));
        ends.push(frames.len() as u32);
    }
    s.frames = frames;
    s.ends = ends;
}
