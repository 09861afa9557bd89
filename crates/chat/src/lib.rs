//! Chat templates for Hearth: turn a conversation into the prompt text a
//! model was trained on, byte-identical to Hugging Face transformers'
//! `apply_chat_template(..., tokenize=False)`, inside a sandbox.
//!
//! Templates come from model files and are untrusted code. They run in
//! MiniJinja configured like transformers configures Jinja2 (`trim_blocks`,
//! `lstrip_blocks`, loop controls, `raise_exception`, `tojson`,
//! `strftime_now`), with Python's spelling of values and Python's string
//! methods, and under hard limits (source size, fuel, recursion, output
//! size). Nothing outside the request's JSON is reachable: no loader, no
//! host objects.
//!
//! ```
//! use hearth_chat::{ChatTemplate, RenderRequest, TemplateLimits};
//! let t = ChatTemplate::chatml(TemplateLimits::default()).unwrap();
//! let mut req = RenderRequest::new(vec![serde_json::json!({"role": "user", "content": "Hi"})]);
//! req.add_generation_prompt = true;
//! assert_eq!(t.render(&req).unwrap(), "<|im_start|>user\nHi<|im_end|>\n<|im_start|>assistant\n");
//! ```
//!
//! Known differences from Jinja2 that cannot be fixed from outside MiniJinja
//! (none is hit by the reference templates in `testdata/templates`):
//! - `~` concatenation prints `true`/`none` where Python prints `True`/`None`
//!   (`{{ }}`, `string`, `join` and `tojson` do follow Python);
//! - `dict.items` without a call returns the key `items`, not the method;
//! - `namespace` accepts underscore-prefixed attributes, which transformers
//!   refuses;
//! - `map`/`select`/`selectattr` results are lists where Jinja2 returns
//!   generators.
//!
//! Deliberately absent: the `{% generation %}` tag (assistant-token masks
//! for training), tokenization of the result, and Jinja2's `cycler`,
//! `joiner` and `lipsum` globals.

mod clock;
mod error;
mod gguf;
mod pyfmt;
mod pymethods;
mod sandbox;
mod template;

pub use clock::CivilTime;
pub use error::{RenderFailure, TemplateError};
pub use gguf::{GgufChatTemplate, CHATML_TEMPLATE, GGUF_CHAT_TEMPLATE_KEY};
pub use template::{Capabilities, ChatTemplate, RenderRequest, RenderStats, TemplateLimits};
