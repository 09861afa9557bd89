//! `hearth chat`: an interactive conversation using the model's own chat
//! template. Each turn re-renders the whole conversation; the session keeps
//! the KV cache, so only the new tokens are evaluated.

use crate::run::SamplingArgs;
use anyhow::{Context, Result};
use hearth_chat::RenderRequest;
use hearth_engine::chat::ChatFormat;
use hearth_engine::{Engine, EngineConfig, Flow, GenerateRequest};
use hearth_tokenizer::StreamDecoder;
use serde_json::json;
use std::io::{BufRead, IsTerminal, Write};
use std::path::PathBuf;

#[derive(clap::Args)]
pub struct ChatArgs {
    /// Model file (.gguf) or Hugging Face model folder.
    /// Default: $HEARTH_MODEL, else the embedded demo model (foldoc-demo).
    pub model: Option<PathBuf>,
    /// System prompt.
    #[arg(long)]
    pub system: Option<String>,
    /// Maximum tokens per answer.
    #[arg(short = 'n', long = "n-predict", default_value_t = 512)]
    pub n_predict: usize,
    /// Context size in tokens (default: the model's, at most 4096).
    #[arg(short = 'c', long = "ctx-size")]
    pub ctx_size: Option<usize>,
    #[command(flatten)]
    pub sampling: SamplingArgs,
    /// Worker threads (default: all cores).
    #[arg(short = 't', long, default_value_t = 0)]
    pub threads: usize,
}

pub fn main(mut a: ChatArgs) -> Result<()> {
    let model_path = crate::default_model::resolve(a.model.take().as_deref())?;
    let engine = Engine::load(&model_path, EngineConfig { threads: a.threads, ..Default::default() })
        .with_context(|| format!("cannot load {}", model_path.display()))?;
    let model = engine.model().clone();
    let format = ChatFormat::from_model(&model)?;
    let n_ctx = a.ctx_size.unwrap_or(4096).min(model.config().n_ctx_train);
    let mut session = engine.new_session(n_ctx);
    let mut messages = Vec::new();
    if let Some(s) = &a.system {
        messages.push(json!({"role": "system", "content": s}));
    }
    let interactive = std::io::stdin().is_terminal();
    if interactive {
        eprintln!("hearth chat: {} ({}); /reset clears the conversation, /exit or Ctrl-D quits.", model_path.display(), model.config().arch);
    }
    let stdin = std::io::stdin();
    let mut lines = stdin.lock().lines();
    let mut turn = 0u64;
    loop {
        if interactive {
            eprint!("> ");
            std::io::stderr().flush().ok();
        }
        let Some(line) = lines.next() else { break };
        let line = line.context("reading stdin")?;
        let text = line.trim();
        match text {
            "" => continue,
            "/exit" | "/quit" => break,
            "/reset" => {
                messages.retain(|m| m["role"] == "system");
                continue;
            }
            _ => {}
        }
        messages.push(json!({"role": "user", "content": text}));
        let mut req = RenderRequest::new(messages.clone());
        req.add_generation_prompt = true;
        let prompt = format.prompt_tokens(&model, req)?;
        // Small-context models (the 256-token demo model): answer in
        // whatever room the context has left, and only refuse when fewer
        // than a handful of positions remain.
        let room = session.n_ctx().saturating_sub(prompt.len());
        let max_tokens = a.n_predict.min(room);
        if max_tokens < 8.min(a.n_predict) {
            anyhow::bail!(
                "context overflow: the conversation is {} tokens and the context holds {}; use /reset or a larger --ctx-size",
                prompt.len(),
                session.n_ctx()
            );
        }
        let sampler = a.sampling.config(turn)?;
        turn += 1;
        let gen = GenerateRequest { prompt, max_tokens, sampler, ignore_eos: false };
        let mut decoder = StreamDecoder::new(&model.tokenizer, false);
        let mut answer = String::new();
        let stdout = std::io::stdout();
        let mut out = stdout.lock();
        engine.generate(&mut session, &gen, &mut |ev| {
            let chunk = decoder.push(ev.id);
            answer.push_str(&chunk.text);
            let _ = out.write_all(chunk.text.as_bytes()).and_then(|_| out.flush());
            Flow::Continue
        })?;
        let rest = decoder.finish();
        answer.push_str(&rest.text);
        let _ = writeln!(out, "{}", rest.text);
        messages.push(json!({"role": "assistant", "content": answer}));
    }
    Ok(())
}
