//! `hearth tokenize MODEL`: reads text on stdin, prints token ids separated by
//! spaces, like `llama-tokenize --ids` without BOS (unless `--special`).

use anyhow::{Context, Result};
use hearth_tokenizer::{EncodeOptions, Tokenizer};
use std::io::Read;
use std::path::PathBuf;

#[derive(clap::Args)]
pub struct TokenizeArgs {
    /// Model or vocabulary file (.gguf), or a Hugging Face model folder.
    pub model: PathBuf,
    /// Add BOS/EOS as the model asks and parse special-token text.
    #[arg(long)]
    pub special: bool,
}

pub fn main(a: TokenizeArgs) -> Result<()> {
    let file = hearth_models::hf::open(&a.model).with_context(|| format!("cannot read {}", a.model.display()))?;
    let tok = Tokenizer::from_gguf(&file).context("cannot build the tokenizer")?;
    let mut text = String::new();
    std::io::stdin().read_to_string(&mut text).context("stdin is not valid UTF-8")?;
    let ids = tok.encode(&text, EncodeOptions { add_special: a.special, parse_special: a.special });
    let s: Vec<String> = ids.iter().map(|i| i.to_string()).collect();
    println!("{}", s.join(" "));
    Ok(())
}
