//! Turning a conversation into prompt tokens with the model's own chat
//! template (hearth-chat, sandboxed), the way llama.cpp's server does:
//! render, drop a leading BOS text when the tokenizer adds BOS itself (so the
//! prompt never starts with two BOS tokens), then tokenize with special-token
//! parsing on.

use crate::{EngineError, Model, Result};
use hearth_chat::{ChatTemplate, GgufChatTemplate, RenderRequest, TemplateLimits};
use hearth_tokenizer::EncodeOptions;
use serde_json::Value as Json;

/// The model's template with its bos/eos strings.
pub struct ChatFormat {
    pub template: GgufChatTemplate,
}

impl ChatFormat {
    pub fn from_model(model: &Model) -> Result<ChatFormat> {
        let template = ChatTemplate::from_gguf_metadata(&model.file, TemplateLimits::default())
            .map_err(|e| EngineError::Template(e.to_string()))?;
        Ok(ChatFormat { template })
    }

    /// Renders `req` (its bos/eos fields are filled from the model when unset).
    pub fn render(&self, mut req: RenderRequest) -> Result<String> {
        if req.bos_token.is_none() {
            req.bos_token = self.template.bos_token.clone();
        }
        if req.eos_token.is_none() {
            req.eos_token = self.template.eos_token.clone();
        }
        self.template.template.render(&req).map_err(|e| EngineError::Template(e.to_string()))
    }

    /// Renders and tokenizes a conversation.
    pub fn prompt_tokens(&self, model: &Model, req: RenderRequest) -> Result<Vec<u32>> {
        let text = self.render(req)?;
        Ok(tokenize_rendered(model, &text, self.template.bos_token.as_deref()))
    }

    /// Convenience: `messages` as (role, content) pairs, generation prompt on.
    pub fn simple(&self, model: &Model, messages: &[(&str, &str)]) -> Result<Vec<u32>> {
        let msgs: Vec<Json> = messages.iter().map(|(r, c)| serde_json::json!({"role": r, "content": c})).collect();
        let mut req = RenderRequest::new(msgs);
        req.add_generation_prompt = true;
        self.prompt_tokens(model, req)
    }
}

/// Tokenizes rendered template output: BOS is added by the tokenizer when
/// the vocabulary asks for it, and a BOS the template already wrote is
/// dropped first.
pub fn tokenize_rendered(model: &Model, text: &str, bos_text: Option<&str>) -> Vec<u32> {
    let tok = &model.tokenizer;
    let mut body = text;
    if tok.add_bos() {
        if let Some(b) = bos_text.filter(|b| !b.is_empty()) {
            body = body.strip_prefix(b).unwrap_or(body);
        }
    }
    tok.encode(body, EncodeOptions { add_special: true, parse_special: true })
}
