//! Constrained decoding for Hearth: `response_format` (`json_object`,
//! `json_schema`) and `tools` / `tool_choice`, enforced token by token so the
//! output always parses and validates, whatever the model's weights.
//!
//! # Pieces
//!
//! * [`Constraint`]: an incremental acceptor over bytes and special tokens
//!   (`start`, `step`, `advance`, `allowed`, `is_complete`).
//! * [`Grammar`]: the one implementation, a nondeterministic pushdown
//!   automaton over JSON values and raw text, whose every kept configuration
//!   can still be completed (so decoding never dead-ends). Built by
//!   - [`Grammar::json_object`] / [`JsonObjectConstraint::new`]: any JSON
//!     object; [`Grammar::json_value`]: any JSON value;
//!   - [`Grammar::json_schema`] / [`JsonSchemaConstraint::compile`]: a JSON
//!     Schema subset (see [`schema`] for supported and rejected keywords;
//!     unsupported ones are a typed [`SchemaError`] naming the keyword);
//!   - [`ToolCallConstraint::build`]: a forced call in a model family's
//!     tool-call syntax, arguments constrained by each tool's schema.
//!   - [`JsonOptions`] caps whitespace runs and free-form nesting.
//! * [`TokenMask`]: per-vocabulary tables (a byte trie of token texts) that
//!   turn a constraint state into the set of allowed tokens
//!   ([`TokenMask::fill_mask`] → [`TokenBitset`]), with a lexeme cache that
//!   makes steps inside JSON strings cheap.
//! * [`Matcher`]: one generation — constraint + state + mask; `accept_token`,
//!   `mask_logits`, `is_allowed` and the `sample` fast path (check the
//!   sampled token first, mask only on rejection, as llama.cpp does).
//! * [`tools`]: [`ToolFormat`] (detection from chat template / vocabulary),
//!   [`parse_tool_calls`], the streaming [`ToolCallDetector`].
//!
//! # Use by the server
//!
//! * `json_object` / `json_schema`: build the grammar (400 on
//!   `SchemaError`), a `Matcher` per choice, mask or fast-path-sample every
//!   step, stop on EOG (only allowed once complete). If `max_tokens` ends
//!   generation first, finish_reason is `length` (the text is a valid prefix;
//!   [`Grammar::shortest_completion`] can close it if wanted).
//! * `tool_choice: required` / a named function: [`ToolCallConstraint`], then
//!   [`parse_tool_calls`] on the output (rendered with its special tokens).
//! * `auto`: generate freely, stream through [`ToolCallDetector`].
//! * `none`: generate freely; never parse tool calls.
//!
//! # Deliberately absent
//!
//! Generic grammars (GBNF, Lark, arbitrary regex outputs); JSON Schema
//! keywords listed as rejected in [`schema`]; `\uXXXX` escapes for
//! non-control characters in generated strings (raw UTF-8 is always used);
//! lazy constraints that switch on at a tool-call marker under `auto`; the
//! tool formats listed as absent in [`tools`].

mod constraint;
mod dfa;
mod error;
mod grammar;
mod mask;
mod number;
mod regex;
pub mod schema;
pub mod tools;

pub use constraint::{Constraint, JsonObjectConstraint, JsonSchemaConstraint, LexStep, Lexeme};
pub use error::{SchemaError, ToolError};
pub use grammar::{Grammar, GrammarState, Input, JsonOptions};
pub use mask::{MaskScratch, Matcher, Rejected, TokenBitset, TokenMask};
pub use tools::{
    parse_tool_calls, DetectorEvent, ParsedOutput, ToolCallConstraint, ToolCallDetector, ToolFormat,
};
