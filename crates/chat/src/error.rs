//! Typed failures of compiling and rendering a chat template.

use thiserror::Error;

/// Why a render failed when no more specific [`TemplateError`] variant fits.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RenderFailure {
    /// An undefined value was used where a value is needed (Jinja2's
    /// `UndefinedError`).
    Undefined,
    /// The template named a filter, test, function or method that the
    /// sandbox does not provide (this is also what attempts to reach host
    /// objects, e.g. `''.__class__` or `x.append(...)`, end in).
    UnknownName,
    /// An operation on values of the wrong type, a bad argument, a failed
    /// conversion.
    InvalidOperation,
    /// `include` / `import` / `extends`: the sandbox has no template loader.
    Loading,
    /// Anything else MiniJinja reports.
    Other,
}

/// Everything that can go wrong turning a chat into a prompt.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum TemplateError {
    /// The template source is larger than [`crate::TemplateLimits::max_source_bytes`].
    #[error("chat template is {len} bytes, over the {limit}-byte limit")]
    SourceTooLarge { len: usize, limit: usize },
    /// The template does not parse.
    #[error("chat template syntax error: {message}")]
    Syntax {
        message: String,
        line: Option<usize>,
    },
    /// The template called `raise_exception(message)` (transformers raises
    /// `jinja2.TemplateError(message)`).
    #[error("chat template raised: {0}")]
    Raised(String),
    /// The render used up its fuel budget ([`crate::TemplateLimits::fuel`]).
    #[error("chat template used up its fuel budget of {limit}")]
    OutOfFuel { limit: u64 },
    /// Macro calls / nesting went deeper than the recursion limit (at run
    /// time), or the source nests deeper than the parser allows.
    #[error("chat template exceeded the recursion limit")]
    RecursionLimit,
    /// The rendered prompt grew past [`crate::TemplateLimits::max_output_bytes`].
    #[error("chat template output exceeds {limit} bytes")]
    OutputTooLarge { limit: usize },
    /// Any other failure while rendering.
    #[error("chat template failed ({kind:?}): {message}")]
    Render {
        kind: RenderFailure,
        message: String,
        line: Option<usize>,
    },
    /// The request itself is unusable (empty conversation, a message that
    /// is not an object, reserved keyword names, or a
    /// `continue_final_message` the template cannot honour). The messages
    /// follow transformers' `ValueError`s.
    #[error("invalid chat request: {0}")]
    Request(String),
    /// A GGUF file's chat-template metadata could not be read.
    #[error("GGUF metadata: {0}")]
    Metadata(String),
}
