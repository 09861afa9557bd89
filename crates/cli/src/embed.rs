//! `hearth embed [--model DIR] [TEXT...]`: sentence embeddings with the
//! router's encoder. Texts come from the arguments, else one per line of
//! stdin. Prints one JSON array of vectors, or one JSON array per line with
//! `--jsonl`.

use anyhow::{bail, Context, Result};
use hearth_embed::{find_model_dir, Embedder, EmbedderOptions, EncoderOptions, MAX_BATCH_TOKENS};
use hearth_formats::GgmlType;
use std::io::{BufRead, Write};
use std::path::PathBuf;

#[derive(clap::Args)]
pub struct EmbedArgs {
    /// Model folder (sentence-transformers layout). Default: $HEARTH_MINILM,
    /// then ./models/all-MiniLM-L6-v2, then $XDG_DATA_HOME/hearth/models/all-MiniLM-L6-v2.
    #[arg(long)]
    pub model: Option<PathBuf>,
    /// One JSON array per line instead of one array of arrays.
    #[arg(long)]
    pub jsonl: bool,
    /// Threads (0 = all cores).
    #[arg(long, default_value_t = 0)]
    pub threads: usize,
    /// Weight storage: f32 (exact), f16 (f32 math, ~1e-6 cosine off, less
    /// memory traffic) or q8_0 (hearth-kernels' int8 path, ~2e-3 off).
    #[arg(long, default_value = "f32", value_parser = ["f32", "f16", "q8_0"])]
    pub weights: String,
    /// Texts to embed; without any, each line of stdin is one text.
    pub texts: Vec<String>,
}

pub fn main(a: EmbedArgs) -> Result<()> {
    let dir = find_model_dir(a.model.as_deref())?;
    let opts = EmbedderOptions {
        threads: a.threads,
        encoder: EncoderOptions {
            quantize: match a.weights.as_str() {
                "f16" => Some(GgmlType::F16),
                "q8_0" => Some(GgmlType::Q8_0),
                _ => None,
            },
        },
        max_tokens: None,
    };
    let e = Embedder::load_with(&dir, &opts).with_context(|| format!("cannot load the embedding model in {}", dir.display()))?;
    let texts = if a.texts.is_empty() {
        let mut v = Vec::new();
        for line in std::io::stdin().lock().lines() {
            v.push(line.context("cannot read stdin (is it UTF-8?)")?);
        }
        v
    } else {
        a.texts
    };
    if texts.is_empty() {
        bail!("nothing to embed: give texts as arguments or lines on stdin");
    }
    let stdout = std::io::stdout();
    let mut out = std::io::BufWriter::new(stdout.lock());
    if !a.jsonl {
        out.write_all(b"[")?;
    }
    // Embed in slices so a long stdin streams instead of holding every vector.
    let per_call = (MAX_BATCH_TOKENS / e.max_tokens()).max(1);
    let mut first = true;
    for chunk in texts.chunks(per_call) {
        let refs: Vec<&str> = chunk.iter().map(String::as_str).collect();
        for v in e.embed(&refs)? {
            let json = serde_json::to_string(&v)?;
            if a.jsonl {
                writeln!(out, "{json}")?;
            } else {
                if !first {
                    out.write_all(b",")?;
                }
                out.write_all(json.as_bytes())?;
            }
            first = false;
        }
    }
    if !a.jsonl {
        out.write_all(b"]\n")?;
    }
    out.flush()?;
    Ok(())
}
