//! Constrained decoding for Hearth (see the crate README section in the
//! module docs below).

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
pub use mask::{Matcher, MaskScratch, Rejected, TokenBitset, TokenMask};
pub use tools::{parse_tool_calls, DetectorEvent, ParsedOutput, ToolCallConstraint, ToolCallDetector, ToolFormat};
