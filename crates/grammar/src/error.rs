//! Typed errors. A [`SchemaError`] is the client's fault (the server answers
//! 400 and can quote [`SchemaError::keyword`]); nothing here is a panic.

/// Why a JSON Schema cannot be turned into a constraint.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum SchemaError {
    /// A keyword that affects validity and that Hearth does not enforce.
    #[error("unsupported JSON Schema keyword `{keyword}` at {path}: {reason}")]
    UnsupportedKeyword {
        keyword: String,
        path: String,
        reason: String,
    },
    /// A keyword whose value is malformed (wrong type, negative count, ...).
    #[error("invalid value for `{keyword}` at {path}: {reason}")]
    InvalidKeyword {
        keyword: String,
        path: String,
        reason: String,
    },
    /// A `pattern` (or `format`) outside the supported regex subset.
    #[error("unsupported pattern {pattern:?} at {path}: {reason}")]
    UnsupportedPattern {
        path: String,
        pattern: String,
        reason: String,
    },
    /// A `$ref` that is not a local JSON pointer into the same document, or
    /// that points nowhere.
    #[error("cannot resolve $ref {reference:?} at {path}: {reason}")]
    BadRef {
        path: String,
        reference: String,
        reason: String,
    },
    /// No JSON value satisfies the schema (or the supported part of it).
    #[error("the schema at {path} admits no value Hearth can generate")]
    Unsatisfiable { path: String },
    /// The schema compiles to an automaton beyond Hearth's size limits.
    #[error("schema at {path} is too complex: {reason}")]
    TooComplex { path: String, reason: String },
}

impl SchemaError {
    /// The keyword responsible, for error messages (`"$ref"`, `"pattern"`, ...).
    pub fn keyword(&self) -> &str {
        match self {
            SchemaError::UnsupportedKeyword { keyword, .. }
            | SchemaError::InvalidKeyword { keyword, .. } => keyword,
            SchemaError::UnsupportedPattern { .. } => "pattern",
            SchemaError::BadRef { .. } => "$ref",
            SchemaError::Unsatisfiable { .. } | SchemaError::TooComplex { .. } => "",
        }
    }
    /// JSON pointer (`#/properties/x`) of the offending subschema.
    pub fn path(&self) -> &str {
        match self {
            SchemaError::UnsupportedKeyword { path, .. }
            | SchemaError::InvalidKeyword { path, .. }
            | SchemaError::UnsupportedPattern { path, .. }
            | SchemaError::BadRef { path, .. }
            | SchemaError::Unsatisfiable { path }
            | SchemaError::TooComplex { path, .. } => path,
        }
    }
}

/// Why a tool-call constraint cannot be built.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum ToolError {
    #[error("tool_choice names function {0:?}, which is not among the tools")]
    UnknownFunction(String),
    #[error("tool_choice requires a tool call but no tools were given")]
    NoTools,
    #[error("tool_choice `none` or `auto` needs no constraint")]
    NotConstrained,
    #[error("tool {name:?} has an unusable parameters schema: {source}")]
    Schema {
        name: String,
        #[source]
        source: SchemaError,
    },
    #[error("tool name {0:?} cannot be written in this tool-call format")]
    BadName(String),
}
