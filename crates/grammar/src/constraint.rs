//! The [`Constraint`] trait: an incremental acceptor over bytes (and special
//! tokens), and its implementation by [`Grammar`].

use serde_json::Value;

use crate::error::SchemaError;
use crate::grammar::{Grammar, GrammarState, Input, JsonOptions, ANY, ANY_OBJ};
use crate::schema::Compiler;

/// What a lexeme-level step decided (see [`Constraint::lexeme`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum LexStep {
    /// Still inside the lexeme, in lexer state `state`; `counts` when the
    /// byte begins a character (for length budgets).
    Continue { state: u32, counts: bool },
    /// The byte leaves the lexeme; only the full constraint can judge it.
    Exit,
    /// The byte is rejected whatever the context.
    Reject,
}

/// A context-free view of a constraint state (see [`Constraint::lexeme`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Lexeme {
    /// Which lexer (meaningful to [`Constraint::lex_step`]).
    pub kind: u32,
    /// The lexer's state.
    pub state: u32,
    /// The lexer is the canonical any-JSON-string lexer, numbered the same
    /// in every constraint, so results may be cached across constraints.
    pub shared: bool,
    /// At most this many more characters may stay inside the lexeme.
    pub budget: Option<u32>,
}

/// An incremental constraint on generated text.
///
/// `State` is the position after some accepted prefix; all methods are pure
/// functions of their arguments, so one constraint can serve many requests.
pub trait Constraint {
    type State: Clone;

    /// The state before any output.
    fn start(&self) -> Self::State;

    /// Feeds one input symbol to `state`, writing the successor into `out`
    /// (whose allocations are reused). Returns false when the symbol is not
    /// allowed; `out` is then unspecified.
    fn step(&self, state: &Self::State, input: Input, out: &mut Self::State) -> bool;

    /// The output so far is a complete, valid instance (end-of-generation
    /// may be allowed here).
    fn is_complete(&self, state: &Self::State) -> bool;

    /// Feeds `bytes`; `None` if any is rejected.
    fn advance(&self, state: &Self::State, bytes: &[u8]) -> Option<Self::State> {
        let mut a = state.clone();
        let mut b = state.clone();
        for &x in bytes {
            if !self.step(&a, Input::Byte(x), &mut b) {
                return None;
            }
            std::mem::swap(&mut a, &mut b);
        }
        Some(a)
    }

    /// True when `bytes` may follow `state`.
    fn allowed(&self, state: &Self::State, bytes: &[u8]) -> bool {
        self.advance(state, bytes).is_some()
    }

    /// Optional acceleration for token masks: `Some` when the next bytes
    /// are judged by a context-free lexer alone (via
    /// [`Constraint::lex_step`]) until it reports [`LexStep::Exit`].
    /// Contract: a byte sequence the lexer continues on, counting at most
    /// `budget` characters, is accepted by [`Constraint::step`] (leaving a
    /// live state), and bytes it rejects are rejected by it.
    fn lexeme(&self, _state: &Self::State) -> Option<Lexeme> {
        None
    }

    /// One byte of the lexer named by [`Constraint::lexeme`].
    fn lex_step(&self, _kind: u32, _lexer_state: u32, _byte: u8) -> LexStep {
        LexStep::Exit
    }
}

impl Constraint for Grammar {
    type State = GrammarState;

    fn start(&self) -> GrammarState {
        self.start_state()
    }
    fn step(&self, state: &GrammarState, input: Input, out: &mut GrammarState) -> bool {
        self.step_into(state, input, out)
    }
    fn is_complete(&self, state: &GrammarState) -> bool {
        self.state_is_complete(state)
    }
    fn advance(&self, state: &GrammarState, bytes: &[u8]) -> Option<GrammarState> {
        self.advance_bytes(state, bytes)
    }
    fn lexeme(&self, state: &GrammarState) -> Option<Lexeme> {
        Grammar::lexeme(self, state)
    }
    #[inline]
    fn lex_step(&self, kind: u32, st: u32, byte: u8) -> LexStep {
        Grammar::lex_step(self, kind, st, byte)
    }
}

impl Grammar {
    /// `response_format: json_object`: any JSON object (no leading
    /// whitespace, whitespace runs capped, nesting capped — see
    /// [`JsonOptions`]).
    pub fn json_object(opts: JsonOptions) -> Grammar {
        Self::free(opts, ANY_OBJ)
    }

    /// Any JSON value.
    pub fn json_value(opts: JsonOptions) -> Grammar {
        Self::free(opts, ANY)
    }

    fn free(opts: JsonOptions, root: u32) -> Grammar {
        match Grammar::base(opts) {
            Ok(mut g) => {
                g.root = root;
                g
            }
            // The any-string automaton is a fixed, tiny regex; its
            // construction cannot exceed limits.
            Err(e) => unreachable!("building the free-string automaton failed: {}", e.0),
        }
    }

    /// `response_format: json_schema`: values valid under `schema` (the
    /// supported subset is documented in [`crate::schema`]).
    pub fn json_schema(schema: &Value, opts: JsonOptions) -> Result<Grammar, SchemaError> {
        let g = Grammar::base(opts).map_err(|e| SchemaError::TooComplex {
            path: "#".into(),
            reason: e.0,
        })?;
        Compiler::new(schema, g).compile_root()
    }
}

/// Convenience name for [`Grammar::json_schema`] with default options.
pub struct JsonSchemaConstraint;

impl JsonSchemaConstraint {
    pub fn compile(schema: &Value) -> Result<Grammar, SchemaError> {
        Grammar::json_schema(schema, JsonOptions::default())
    }
}

/// Convenience name for [`Grammar::json_object`] with default options.
pub struct JsonObjectConstraint;

impl JsonObjectConstraint {
    #[allow(clippy::new_ret_no_self)]
    pub fn new() -> Grammar {
        Grammar::json_object(JsonOptions::default())
    }
}
