//! `hearth distill export-lora`: a LoRA adapter (PEFT directory, or a GGUF
//! LoRA to re-check and rewrite) written as a GGUF LoRA file that llama.cpp
//! loads with `--lora` (`hearth_engine::lora::gguf`). The base model is
//! needed for its architecture, its Q/K row order and the shapes the
//! factors are checked against, as llama.cpp's `convert_lora_to_gguf.py`
//! needs it.

use anyhow::{Context, Result};
use hearth_engine::lora::{gguf, LoraAdapter};
use hearth_formats::GgmlType;
use std::path::PathBuf;

#[derive(clap::Args)]
pub struct ExportLoraArgs {
    /// Base model the adapter was trained on (GGUF or Hugging Face folder).
    pub base: PathBuf,
    /// Adapter: a PEFT directory (adapter_config.json + adapter_model.safetensors) or a GGUF LoRA file.
    pub adapter: PathBuf,
    /// Output GGUF LoRA file.
    pub out: PathBuf,
    /// Type of the factors: f32, f16, bf16 or q8_0 (rows that are not whole Q8_0 blocks are stored as f16).
    #[arg(long, default_value = "f32")]
    pub outtype: String,
}

pub fn export(a: ExportLoraArgs) -> Result<()> {
    let ty = match a.outtype.to_ascii_lowercase().as_str() {
        "f32" => GgmlType::F32,
        "f16" => GgmlType::F16,
        "bf16" => GgmlType::BF16,
        "q8_0" => GgmlType::Q8_0,
        other => anyhow::bail!("unknown --outtype {other} (f32, f16, bf16, q8_0)"),
    };
    let model = hearth_engine::Model::load(&a.base).with_context(|| format!("loading the base {}", a.base.display()))?;
    let adapter = LoraAdapter::open(&a.adapter)?;
    let n = gguf::write(&adapter, &model.decoder, ty, &a.out).context("export failed")?;
    eprintln!(
        "hearth: wrote {} ({n} bytes; {} pairs, rank {}, scale {}) for llama.cpp --lora",
        a.out.display(),
        adapter.pairs.len(),
        adapter.rank,
        adapter.scale()
    );
    Ok(())
}
