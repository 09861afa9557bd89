//! Chat templates from GGUF metadata, and the fallback for models without
//! one.
//!
//! llama.cpp's converter stores the Hugging Face `chat_template` under
//! `tokenizer.chat_template` (named variants such as `tool_use` under
//! `tokenizer.chat_template.<name>`, listed in `tokenizer.chat_templates`),
//! and the special tokens as ids into `tokenizer.ggml.tokens`
//! (llama.cpp `gguf-py/gguf/constants.py`, `Keys.Tokenizer`).

use hearth_formats::GgufFile;

use crate::error::TemplateError;
use crate::template::{ChatTemplate, TemplateLimits};

/// The ChatML format (`<|im_start|>role\n...<|im_end|>\n`), used when a model
/// ships no template. This is the format transformers used as its
/// class-level default before templates became mandatory, and llama.cpp's
/// `chatml` built-in. Content given as a list of parts is joined from its
/// `text` parts.
pub const CHATML_TEMPLATE: &str = "\
{%- for message in messages -%}
{{- '<|im_start|>' + message['role'] + '\\n' -}}
{%- if message['content'] is string -%}
{{- message['content'] -}}
{%- elif message['content'] is iterable -%}
{%- for part in message['content'] -%}
{%- if part['text'] is defined -%}{{- part['text'] -}}{%- endif -%}
{%- endfor -%}
{%- endif -%}
{{- '<|im_end|>\\n' -}}
{%- endfor -%}
{%- if add_generation_prompt -%}
{{- '<|im_start|>assistant\\n' -}}
{%- endif -%}
";

/// Metadata key of the default chat template.
pub const GGUF_CHAT_TEMPLATE_KEY: &str = "tokenizer.chat_template";

/// A template taken from a model file, with the special tokens a template
/// expects as `bos_token` / `eos_token`.
#[derive(Debug)]
pub struct GgufChatTemplate {
    pub template: ChatTemplate,
    /// `tokens[tokenizer.ggml.bos_token_id]`, when both are present.
    pub bos_token: Option<String>,
    /// `tokens[tokenizer.ggml.eos_token_id]`, when both are present.
    pub eos_token: Option<String>,
    /// `false` when the file had no template and ChatML was used.
    pub embedded: bool,
}

impl ChatTemplate {
    /// The ChatML fallback template.
    pub fn chatml(limits: TemplateLimits) -> Result<ChatTemplate, TemplateError> {
        ChatTemplate::new(CHATML_TEMPLATE, limits)
    }

    /// `source` if there is one (and it is not blank), otherwise ChatML.
    pub fn or_chatml(
        source: Option<&str>,
        limits: TemplateLimits,
    ) -> Result<ChatTemplate, TemplateError> {
        match source {
            Some(s) if !s.trim().is_empty() => ChatTemplate::new(s, limits),
            _ => ChatTemplate::chatml(limits),
        }
    }

    /// The model's own chat template (`tokenizer.chat_template`) with its
    /// bos/eos token strings, or ChatML when the file has no template.
    pub fn from_gguf_metadata(
        gguf: &GgufFile,
        limits: TemplateLimits,
    ) -> Result<GgufChatTemplate, TemplateError> {
        let meta = |e: hearth_formats::GgufError| TemplateError::Metadata(e.to_string());
        let source = gguf.get_str(GGUF_CHAT_TEMPLATE_KEY).map_err(meta)?;
        let embedded = source.is_some_and(|s| !s.trim().is_empty());
        let template = ChatTemplate::or_chatml(source, limits)?;
        let tokens = gguf.get_str_array("tokenizer.ggml.tokens").map_err(meta)?;
        let token = |key: &str| -> Result<Option<String>, TemplateError> {
            let id = gguf.get_u64(key).map_err(meta)?;
            Ok(match (id, tokens) {
                (Some(id), Some(tokens)) => usize::try_from(id)
                    .ok()
                    .and_then(|i| tokens.get(i))
                    .cloned(),
                _ => None,
            })
        };
        Ok(GgufChatTemplate {
            template,
            bos_token: token("tokenizer.ggml.bos_token_id")?,
            eos_token: token("tokenizer.ggml.eos_token_id")?,
            embedded,
        })
    }
}
