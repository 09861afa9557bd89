//! Hugging Face model folders: `config.json`, `model.safetensors` (or a
//! sharded `model.safetensors.index.json`), `tokenizer.json`,
//! `tokenizer_config.json`, `generation_config.json`, `chat_template.jinja`.
//!
//! A folder is converted, in memory, into the GGUF file llama.cpp's
//! `convert_hf_to_gguf.py` would write for it (same keys, same tensor names,
//! same tensor transforms), and then loaded like any GGUF file. One loading
//! path means a folder and its converted GGUF give the same tokens, and the
//! tokenizer, chat template and special ids reach the engine, the grammar
//! masks and the server through the same metadata.
//!
//! Conventions that silently corrupt output when missed:
//!
//! - **RoPE layout of Llama/Mistral.** Hugging Face stores `q_proj`/`k_proj`
//!   for the "rotate half" RoPE (dimension `i` pairs with `i + d/2`), but a
//!   `llama` GGUF expects adjacent pairs (`2i`, `2i+1`), because the
//!   converter permutes the rows of each head (`LlamaModel.permute`:
//!   reshape `[n_head, 2, d/2, n_embd]`, swap axes 1 and 2). We apply the
//!   same row permutation here. Qwen, Phi-3 and Gemma GGUFs keep the Hugging
//!   Face rows and use the halves layout instead.
//! - **Gemma norms.** transformers computes `x * (1 + w)`; GGUF files store
//!   `1 + w` (conversion/gemma.py adds 1 to every `*norm.weight`), so we add
//!   1 too.
//! - **Shapes.** PyTorch `[out, in]` becomes ggml dims `[in, out]`; the bytes
//!   are the same row-major rows.
//!
//! Weights keep their dtype (F32, F16, BF16); 1-D tensors become F32.
//! Memory: the converted file is one owned buffer, so a folder costs its
//! weights' size in RAM (a GGUF file is memory-mapped instead).
//!
//! Tokenizers: byte-level BPE `tokenizer.json` files (GPT-2, Llama 3,
//! Qwen 2/3, SmolLM style) become `tokenizer.ggml.model = gpt2` with the
//! pre-tokenizer recognised from its regex. SentencePiece-style BPE
//! (`byte_fallback`, Metaspace: Llama 2, Mistral, Gemma, Phi-3) becomes
//! `tokenizer.ggml.model = llama` with scores from the merge ranks.
//! Anything else is refused with a message naming what was found.
//!
//! Deliberately absent: pickle checkpoints (`.bin`, `.pt`: refused by
//! hearth-formats), quantized safetensors (GPTQ/AWQ/FP8), vision and audio
//! towers (skipped), mixture-of-experts.

use hearth_formats::{Dtype, GgmlType, GgufFile, GgufWriter, MetaArray, SafetensorsModel};
use serde_json::Value;
use std::path::{Path, PathBuf};

/// Why a folder could not be converted.
#[derive(Debug, thiserror::Error)]
pub enum HfError {
    #[error("{path}: {source}")]
    Io { path: PathBuf, source: std::io::Error },
    #[error("{file}: {msg}")]
    Json { file: String, msg: String },
    #[error("config.json: {key}: {why}")]
    Config { key: String, why: String },
    #[error("config.json names architecture {0:?}; supported: {SUPPORTED}")]
    UnsupportedArch(String),
    #[error("tensor {name:?} has shape {found:?}, expected {expected:?}")]
    TensorShape { name: String, expected: Vec<u64>, found: Vec<u64> },
    #[error("tensor {name:?} has dtype {dtype:?}; weights must be F32, F16 or BF16")]
    Dtype { name: String, dtype: Dtype },
    #[error(transparent)]
    Safetensors(#[from] hearth_formats::ShardedError),
    #[error(transparent)]
    GgufWrite(#[from] hearth_formats::GgufWriteError),
    #[error(transparent)]
    Gguf(#[from] hearth_formats::GgufError),
    #[error("tokenizer.json: {0}")]
    Tokenizer(String),
    #[error(transparent)]
    WeightFile(#[from] hearth_formats::WeightFileError),
    #[error("{0} is a lone safetensors file; pass the folder that holds it with its config.json and tokenizer.json")]
    LoneSafetensors(PathBuf),
}

type Result<T> = std::result::Result<T, HfError>;

const SUPPORTED: &str = "LlamaForCausalLM, MistralForCausalLM, Qwen2ForCausalLM, Qwen3ForCausalLM, Phi3ForCausalLM, \
                         Gemma2ForCausalLM, Gemma3ForCausalLM, Gemma3ForConditionalGeneration (text only)";

/// Largest JSON side file read (tokenizer.json of a 256k vocabulary is ~35 MB).
const MAX_JSON: u64 = 256 << 20;

/// True when `path` looks like a Hugging Face model folder.
pub fn is_folder(path: &Path) -> bool {
    path.is_dir() && path.join("config.json").is_file()
}

/// Opens a model given as a GGUF file or a Hugging Face folder. Pickle
/// checkpoints are refused before a byte of them is parsed.
pub fn open(path: &Path) -> Result<GgufFile> {
    if path.is_dir() {
        return load_folder(path);
    }
    match hearth_formats::check_weight_file(path)? {
        hearth_formats::WeightFormat::Gguf => Ok(GgufFile::open(path)?),
        hearth_formats::WeightFormat::Safetensors => Err(HfError::LoneSafetensors(path.to_path_buf())),
    }
}

/// Converts the folder at `dir` into an in-memory GGUF file.
pub fn load_folder(dir: &Path) -> Result<GgufFile> {
    let config = read_json(dir, "config.json")?.ok_or_else(|| HfError::Io {
        path: dir.join("config.json"),
        source: std::io::Error::new(std::io::ErrorKind::NotFound, "a model folder needs config.json"),
    })?;
    let archs = config.get("architectures").and_then(Value::as_array).cloned().unwrap_or_default();
    let hf_arch = archs.first().and_then(Value::as_str).unwrap_or("").to_string();
    let arch = match hf_arch.as_str() {
        "LlamaForCausalLM" | "MistralForCausalLM" => "llama",
        "Qwen2ForCausalLM" => "qwen2",
        "Qwen3ForCausalLM" => "qwen3",
        "Phi3ForCausalLM" => "phi3",
        "Gemma2ForCausalLM" => "gemma2",
        "Gemma3ForCausalLM" | "Gemma3ForConditionalGeneration" => "gemma3",
        _ => return Err(HfError::UnsupportedArch(hf_arch)),
    };
    // Multimodal Gemma 3 keeps the decoder's settings in text_config.
    let h = Cfg(config.get("text_config").filter(|v| v.is_object()).unwrap_or(&config));
    refuse_pickle_only(dir)?;
    let st = SafetensorsModel::open(dir)?;
    let mut out = Converter { w: GgufWriter::new(), data: Vec::new() };
    let name = dir.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
    out.w.add_meta("general.architecture", arch)?;
    out.w.add_meta("general.name", name.as_str())?;
    let hp = write_hparams(&mut out.w, arch, &h, &config)?;
    write_tensors(&mut out, arch, &hp, &st)?;
    tokenizer::write(&mut out.w, dir, &config, hp.n_vocab)?;
    let Converter { w, data } = out;
    let layout = w.layout()?;
    let mut bytes = Vec::with_capacity(usize::try_from(layout.file_len).unwrap_or(0));
    let mut i = 0usize;
    w.write(&mut bytes, |_, sink| {
        let r = data[i].write(&st, sink);
        i += 1;
        r
    })?;
    drop(data);
    Ok(GgufFile::from_bytes(bytes)?)
}

/// A folder whose only weights are pickle checkpoints gets the pickle
/// refusal, which says what to do, rather than "no safetensors".
fn refuse_pickle_only(dir: &Path) -> Result<()> {
    if dir.join(hearth_formats::safetensors::INDEX_FILE).is_file() || dir.join(hearth_formats::safetensors::SINGLE_FILE).is_file() {
        return Ok(());
    }
    let entries = std::fs::read_dir(dir).map_err(|source| HfError::Io { path: dir.to_path_buf(), source })?;
    for e in entries.flatten() {
        let p = e.path();
        if hearth_formats::weights::pickle_extension(&p).is_some() {
            hearth_formats::check_weight_file(&p)?;
        }
    }
    Ok(())
}

fn read_json(dir: &Path, file: &str) -> Result<Option<Value>> {
    let path = dir.join(file);
    let meta = match std::fs::metadata(&path) {
        Ok(m) => m,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(source) => return Err(HfError::Io { path, source }),
    };
    if meta.len() > MAX_JSON {
        return Err(HfError::Json { file: file.into(), msg: format!("{} bytes is more than the {MAX_JSON} allowed", meta.len()) });
    }
    let text = std::fs::read(&path).map_err(|source| HfError::Io { path: path.clone(), source })?;
    serde_json::from_slice(&text).map(Some).map_err(|e| HfError::Json { file: file.into(), msg: e.to_string() })
}

/// Typed access to config.json values.
struct Cfg<'a>(&'a Value);

impl Cfg<'_> {
    fn get(&self, key: &str) -> Option<&Value> {
        self.0.get(key).filter(|v| !v.is_null())
    }
    fn opt_usize(&self, key: &str) -> Result<Option<usize>> {
        match self.get(key) {
            None => Ok(None),
            Some(v) => v
                .as_u64()
                .filter(|&n| n <= u32::MAX as u64)
                .map(|n| Some(n as usize))
                .ok_or_else(|| HfError::Config { key: key.into(), why: format!("{v} is not a non-negative integer") }),
        }
    }
    fn usize(&self, key: &str) -> Result<usize> {
        self.opt_usize(key)?.ok_or_else(|| HfError::Config { key: key.into(), why: "missing".into() })
    }
    fn opt_f64(&self, key: &str) -> Result<Option<f64>> {
        opt_f64(self.0, key)
    }
}

fn opt_f64(v: &Value, key: &str) -> Result<Option<f64>> {
    match v.get(key).filter(|v| !v.is_null()) {
        None => Ok(None),
        Some(x) => x
            .as_f64()
            .filter(|f| f.is_finite())
            .map(Some)
            .ok_or_else(|| HfError::Config { key: key.into(), why: format!("{x} is not a finite number") }),
    }
}

fn f32_list(v: &Value, key: &str, len: usize) -> Result<Vec<f32>> {
    let bad = || HfError::Config { key: key.into(), why: format!("expected {len} numbers") };
    let a = v.get(key).and_then(Value::as_array).ok_or_else(bad)?;
    if a.len() != len {
        return Err(bad());
    }
    a.iter().map(|x| x.as_f64().map(|f| f as f32).ok_or_else(bad)).collect()
}

fn cfg_err(key: &str, why: impl Into<String>) -> HfError {
    HfError::Config { key: key.into(), why: why.into() }
}

/// Shapes the tensor pass needs.
struct Hp {
    n_vocab: usize,
    n_layer: usize,
    n_head: usize,
    n_head_kv: usize,
    head_dim: usize,
    tied: bool,
    rope_freqs: Option<Vec<f32>>,
    longrope: Option<(Vec<f32>, Vec<f32>)>,
}

fn write_hparams(w: &mut GgufWriter, arch: &str, h: &Cfg<'_>, top: &Value) -> Result<Hp> {
    let k = |s: &str| format!("{arch}.{s}");
    let gemma3 = arch == "gemma3";
    // Gemma 3's text_config omits keys that equal transformers' defaults
    // (Gemma3TextConfig; convert_hf_to_gguf uses the same fallbacks).
    let dflt = |v: usize| if gemma3 { Some(v) } else { None };
    let n_embd = h.usize("hidden_size")?;
    let n_layer = h.usize("num_hidden_layers")?;
    let n_head = match h.opt_usize("num_attention_heads")?.or(dflt(8)) {
        Some(n) => n,
        None => h.usize("num_attention_heads")?,
    };
    if n_head == 0 || n_embd == 0 || n_layer == 0 {
        return Err(cfg_err("hidden_size/num_hidden_layers/num_attention_heads", "must be positive"));
    }
    let n_head_kv = h.opt_usize("num_key_value_heads")?.or(dflt(4)).unwrap_or(n_head);
    let head_dim = h.opt_usize("head_dim")?.or(dflt(256)).unwrap_or(n_embd / n_head);
    let n_ff = h.usize("intermediate_size")?;
    let n_vocab = match h.opt_usize("vocab_size")?.or(dflt(262_208)) {
        Some(n) => n,
        None => h.usize("vocab_size")?,
    };
    // Bounds before anything is sized from them (a hostile config must not
    // make us allocate billions of token strings or RoPE factors); the
    // architecture loader checks the rest against the tensors.
    for (key, v, max) in [
        ("vocab_size", n_vocab, 1usize << 21),
        ("num_hidden_layers", n_layer, 1024),
        ("head_dim", head_dim, 1024),
        ("num_key_value_heads", n_head_kv, 1024),
    ] {
        if v == 0 || v > max {
            return Err(cfg_err(key, format!("{v} is outside 1..={max}")));
        }
    }
    let n_ctx = h.opt_usize("max_position_embeddings")?.unwrap_or(if gemma3 { 131072 } else { 0 });
    if n_ctx == 0 {
        return Err(cfg_err("max_position_embeddings", "missing"));
    }
    let eps = h.opt_f64("rms_norm_eps")?.unwrap_or(1e-6);
    let tied = match h.get("tie_word_embeddings").or_else(|| top.get("tie_word_embeddings")) {
        Some(v) => v.as_bool().unwrap_or(false),
        // transformers' PretrainedConfig default.
        None => true,
    };
    w.add_meta(k("context_length"), n_ctx as u32)?;
    w.add_meta(k("embedding_length"), n_embd as u32)?;
    w.add_meta(k("block_count"), n_layer as u32)?;
    w.add_meta(k("feed_forward_length"), n_ff as u32)?;
    w.add_meta(k("attention.head_count"), n_head as u32)?;
    w.add_meta(k("attention.head_count_kv"), n_head_kv as u32)?;
    w.add_meta(k("attention.key_length"), head_dim as u32)?;
    w.add_meta(k("attention.value_length"), head_dim as u32)?;
    w.add_meta(k("attention.layer_norm_rms_epsilon"), eps as f32)?;
    w.add_meta(k("vocab_size"), n_vocab as u32)?;

    // RoPE: transformers 5 writes `rope_parameters` (per layer type for
    // Gemma 3); older configs `rope_theta` + `rope_scaling`.
    let rope_all = h.get("rope_parameters").or_else(|| h.get("rope_scaling"));
    let (global, local) = match rope_all {
        Some(r) if r.get("full_attention").is_some() => (r.get("full_attention"), r.get("sliding_attention")),
        other => (other, None),
    };
    let theta = |r: Option<&Value>, fallback: Option<f64>| -> Result<f64> {
        Ok(match r {
            Some(r) => opt_f64(r, "rope_theta")?,
            None => None,
        }
        .or(fallback)
        .unwrap_or(10000.0))
    };
    let base = theta(global, h.opt_f64("rope_theta")?)?;
    w.add_meta(k("rope.freq_base"), base as f32)?;
    let partial = match global.map(|g| opt_f64(g, "partial_rotary_factor")).transpose()?.flatten() {
        Some(p) => Some(p),
        None => h.opt_f64("partial_rotary_factor")?,
    };
    let n_rot = match partial {
        // convert_hf_to_gguf Phi3: int(rot_pct * n_embd) // n_head.
        Some(p) => ((p * n_embd as f64) as usize) / n_head,
        None => head_dim,
    };
    w.add_meta(k("rope.dimension_count"), n_rot as u32)?;
    let mut rope_freqs = None;
    let mut longrope = None;
    if let Some(r) = global {
        let ty = r.get("rope_type").or_else(|| r.get("type")).and_then(Value::as_str).unwrap_or("default");
        let factor = opt_f64(r, "factor")?;
        let orig = match opt_f64(r, "original_max_position_embeddings")? {
            Some(o) => Some(o as usize),
            None => h.opt_usize("original_max_position_embeddings")?,
        };
        match ty {
            "default" => {}
            "linear" => {
                let f = factor.ok_or_else(|| cfg_err("rope_parameters.factor", "missing for linear scaling"))?;
                w.add_meta(k("rope.scaling.type"), "linear")?;
                w.add_meta(k("rope.scaling.factor"), f as f32)?;
            }
            "yarn" => {
                let f = factor.ok_or_else(|| cfg_err("rope_parameters.factor", "missing for yarn"))?;
                w.add_meta(k("rope.scaling.type"), "yarn")?;
                w.add_meta(k("rope.scaling.factor"), f as f32)?;
                w.add_meta(k("rope.scaling.original_context_length"), orig.unwrap_or(n_ctx) as u32)?;
            }
            "llama3" => {
                // conversion/llama.py generate_extra_tensors: per-pair
                // divisors of the rotation frequencies.
                let f = factor.unwrap_or(8.0);
                let low = opt_f64(r, "low_freq_factor")?.unwrap_or(1.0);
                let high = opt_f64(r, "high_freq_factor")?.unwrap_or(4.0);
                let old = orig.unwrap_or(8192) as f64;
                let (low_wl, high_wl) = (old / low, old / high);
                let mut ff = Vec::with_capacity(head_dim / 2);
                for i in (0..head_dim).step_by(2) {
                    let freq = 1.0 / (base as f32).powf(i as f32 / head_dim as f32);
                    let wavelen = 2.0 * std::f64::consts::PI / freq as f64;
                    ff.push(if wavelen < high_wl {
                        1.0
                    } else if wavelen > low_wl {
                        f as f32
                    } else {
                        let smooth = (old / wavelen - low) / (high - low);
                        (1.0 / ((1.0 - smooth) / f + smooth)) as f32
                    });
                }
                rope_freqs = Some(ff);
            }
            "longrope" | "su" => {
                // conversion/phi.py generate_extra_tensors.
                let orig = orig.ok_or_else(|| cfg_err("original_max_position_embeddings", "missing for longrope"))?;
                if orig == 0 {
                    return Err(cfg_err("original_max_position_embeddings", "must be positive"));
                }
                let long = f32_list(r, "long_factor", n_rot / 2)?;
                let short = f32_list(r, "short_factor", n_rot / 2)?;
                let scale = n_ctx as f64 / orig as f64;
                let attn = match opt_f64(r, "attention_factor")? {
                    Some(a) => a,
                    None if scale > 1.0 => (1.0 + scale.ln() / (orig as f64).ln()).sqrt(),
                    None => 1.0,
                };
                w.add_meta(k("rope.scaling.attn_factor"), attn as f32)?;
                w.add_meta(k("rope.scaling.original_context_length"), orig as u32)?;
                longrope = Some((long, short));
            }
            other => return Err(cfg_err("rope_parameters.rope_type", format!("{other:?} is not supported"))),
        }
    }

    match arch {
        "gemma2" | "gemma3" => {
            // Sliding-window layers: transformers 5 lists layer_types; older
            // Gemma 3 configs give a period, Gemma 2 alternates.
            let window = h.opt_usize("sliding_window")?.or(dflt(4096));
            if let Some(wnd) = window.filter(|&x| x > 0) {
                w.add_meta(k("attention.sliding_window"), wnd as u32)?;
                if let Some(types) = h.get("layer_types").and_then(Value::as_array) {
                    if types.len() != n_layer {
                        return Err(cfg_err("layer_types", format!("{} entries for {n_layer} layers", types.len())));
                    }
                    let flags: Vec<bool> = types.iter().map(|t| t.as_str() == Some("sliding_attention")).collect();
                    w.add_meta(k("attention.sliding_window_pattern"), MetaArray::Bool(flags))?;
                } else if let Some(p) = h.opt_usize("sliding_window_pattern")?.or(h.opt_usize("_sliding_window_pattern")?) {
                    w.add_meta(k("attention.sliding_window_pattern"), p as u32)?;
                }
            }
            if let Some(c) = h.opt_f64("final_logit_softcapping")? {
                w.add_meta(k("final_logit_softcapping"), c as f32)?;
            }
            if arch == "gemma2" {
                let c = h.opt_f64("attn_logit_softcapping")?.unwrap_or(0.0);
                w.add_meta(k("attn_logit_softcapping"), c as f32)?;
                if window.is_none() {
                    return Err(cfg_err("sliding_window", "missing"));
                }
            } else {
                let local_base = match local {
                    Some(l) => opt_f64(l, "rope_theta")?,
                    None => h.opt_f64("rope_local_base_freq")?,
                };
                w.add_meta(k("rope.freq_base_swa"), local_base.unwrap_or(10000.0) as f32)?;
                if global.is_none() && h.opt_f64("rope_theta")?.is_none() {
                    // Gemma3TextConfig's default global base.
                    w.set_meta(k("rope.freq_base"), 1_000_000f32)?;
                }
            }
            // transformers scales queries by query_pre_attn_scalar^-0.5;
            // llama.cpp infers it from the model size, we store it.
            let qpas = h.opt_f64("query_pre_attn_scalar")?.unwrap_or(if gemma3 { 256.0 } else { head_dim as f64 });
            if qpas <= 0.0 {
                return Err(cfg_err("query_pre_attn_scalar", "must be positive"));
            }
            w.add_meta(k("attention.scale"), (1.0 / qpas.sqrt()) as f32)?;
        }
        _ => {}
    }
    let tied = tied || arch == "gemma2";
    Ok(Hp { n_vocab, n_layer, n_head, n_head_kv, head_dim, tied, rope_freqs, longrope })
}

/// Where one GGUF tensor's bytes come from.
enum Source {
    /// A safetensors tensor as it is.
    Raw(String),
    /// A safetensors tensor with its rows reordered: row `i` of the output
    /// is row `perm[i]` of the input.
    Rows { name: String, row_bytes: usize, perm: Vec<usize> },
    Owned(Vec<u8>),
}

impl Source {
    fn write(&self, st: &SafetensorsModel, sink: &mut dyn std::io::Write) -> std::io::Result<()> {
        let get = |n: &str| st.tensor_bytes(n).ok_or_else(|| std::io::Error::other(format!("tensor {n} vanished")));
        match self {
            Source::Raw(n) => sink.write_all(get(n)?),
            Source::Rows { name, row_bytes, perm } => {
                let d = get(name)?;
                for &r in perm {
                    sink.write_all(&d[r * row_bytes..(r + 1) * row_bytes])?;
                }
                Ok(())
            }
            Source::Owned(v) => sink.write_all(v),
        }
    }
}

struct Converter {
    w: GgufWriter,
    data: Vec<Source>,
}

impl Converter {
    fn owned_f32(&mut self, name: &str, v: &[f32]) -> Result<()> {
        self.w.add_tensor(name, &[v.len() as u64], GgmlType::F32)?;
        self.data.push(Source::Owned(v.iter().flat_map(|x| x.to_le_bytes()).collect()));
        Ok(())
    }
}

fn ggml_type(name: &str, dtype: Dtype) -> Result<(GgmlType, usize)> {
    match dtype {
        Dtype::F32 => Ok((GgmlType::F32, 4)),
        Dtype::F16 => Ok((GgmlType::F16, 2)),
        Dtype::BF16 => Ok((GgmlType::BF16, 2)),
        other => Err(HfError::Dtype { name: name.into(), dtype: other }),
    }
}

/// Values of a 1-D tensor as f32.
fn vector_f32(name: &str, dtype: Dtype, bytes: &[u8]) -> Result<Vec<f32>> {
    Ok(match dtype {
        Dtype::F32 => bytes.chunks_exact(4).map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]])).collect(),
        Dtype::F16 => bytes.chunks_exact(2).map(|c| half::f16::from_le_bytes([c[0], c[1]]).to_f32()).collect(),
        Dtype::BF16 => bytes.chunks_exact(2).map(|c| half::bf16::from_le_bytes([c[0], c[1]]).to_f32()).collect(),
        other => return Err(HfError::Dtype { name: name.into(), dtype: other }),
    })
}

/// `LlamaModel.permute`: within each of `n_head` heads of `d` rows, output
/// row `2j + t` is input row `t * d/2 + j` (rotate-half pairs `(j, j+d/2)`
/// become adjacent pairs).
fn rope_row_perm(n_head: usize, d: usize) -> Vec<usize> {
    let half = d / 2;
    let mut p = Vec::with_capacity(n_head * d);
    for h in 0..n_head {
        for j in 0..half {
            for t in 0..2 {
                p.push(h * d + t * half + j);
            }
        }
    }
    p
}

fn write_tensors(out: &mut Converter, arch: &str, hp: &Hp, st: &SafetensorsModel) -> Result<()> {
    let gemma = arch.starts_with("gemma");
    // Decoder weights live under "model." (CausalLM) or under the language
    // model of a multimodal checkpoint.
    let prefix = ["model.", "model.language_model.", "language_model.model."]
        .into_iter()
        .find(|p| st.tensor(&format!("{p}embed_tokens.weight")).is_some())
        .ok_or_else(|| HfError::TensorShape { name: "model.embed_tokens.weight".into(), expected: vec![], found: vec![] })?;
    let mut map: Vec<(String, String)> = vec![
        (format!("{prefix}embed_tokens.weight"), "token_embd.weight".into()),
        (format!("{prefix}norm.weight"), "output_norm.weight".into()),
    ];
    if !hp.tied {
        let lm = ["lm_head.weight", "language_model.lm_head.weight"].into_iter().find(|n| st.tensor(n).is_some());
        if let Some(lm) = lm {
            map.push((lm.into(), "output.weight".into()));
        }
    }
    for i in 0..hp.n_layer {
        let hf = |s: &str| format!("{prefix}layers.{i}.{s}");
        let gg = |s: &str| format!("blk.{i}.{s}");
        let pairs: &[(&str, &str)] = &[
            ("input_layernorm.weight", "attn_norm.weight"),
            ("self_attn.q_proj.weight", "attn_q.weight"),
            ("self_attn.k_proj.weight", "attn_k.weight"),
            ("self_attn.v_proj.weight", "attn_v.weight"),
            ("self_attn.q_proj.bias", "attn_q.bias"),
            ("self_attn.k_proj.bias", "attn_k.bias"),
            ("self_attn.v_proj.bias", "attn_v.bias"),
            ("self_attn.qkv_proj.weight", "attn_qkv.weight"),
            ("self_attn.o_proj.weight", "attn_output.weight"),
            ("self_attn.o_proj.bias", "attn_output.bias"),
            ("self_attn.q_norm.weight", "attn_q_norm.weight"),
            ("self_attn.k_norm.weight", "attn_k_norm.weight"),
            ("mlp.gate_proj.weight", "ffn_gate.weight"),
            ("mlp.up_proj.weight", "ffn_up.weight"),
            ("mlp.gate_up_proj.weight", "ffn_up.weight"),
            ("mlp.down_proj.weight", "ffn_down.weight"),
        ];
        for (a, b) in pairs {
            map.push((hf(a), gg(b)));
        }
        if gemma {
            map.push((hf("post_attention_layernorm.weight"), gg("post_attention_norm.weight")));
            map.push((hf("pre_feedforward_layernorm.weight"), gg("ffn_norm.weight")));
            map.push((hf("post_feedforward_layernorm.weight"), gg("post_ffw_norm.weight")));
        } else {
            map.push((hf("post_attention_layernorm.weight"), gg("ffn_norm.weight")));
        }
    }
    if let Some(ff) = &hp.rope_freqs {
        out.owned_f32("rope_freqs.weight", ff)?;
    }
    if let Some((long, short)) = &hp.longrope {
        out.owned_f32("rope_factors_long.weight", long)?;
        out.owned_f32("rope_factors_short.weight", short)?;
    }
    let permute = arch == "llama";
    for (hf_name, gg_name) in map {
        let Some(t) = st.tensor(&hf_name) else { continue };
        let info = t.info;
        let dims: Vec<u64> = info.shape.iter().rev().copied().collect();
        if dims.len() == 1 {
            let mut v = vector_f32(&hf_name, info.dtype, t.data())?;
            if gemma && hf_name.ends_with("norm.weight") {
                v.iter_mut().for_each(|x| *x += 1.0);
            }
            if permute && (gg_name.ends_with("attn_q.bias") || gg_name.ends_with("attn_k.bias")) {
                let nh = if gg_name.ends_with("attn_q.bias") { hp.n_head } else { hp.n_head_kv };
                if v.len() != nh * hp.head_dim {
                    return Err(HfError::TensorShape { name: hf_name, expected: vec![(nh * hp.head_dim) as u64], found: info.shape.clone() });
                }
                v = rope_row_perm(nh, hp.head_dim).into_iter().map(|r| v[r]).collect();
            }
            out.owned_f32(&gg_name, &v)?;
            continue;
        }
        if dims.len() != 2 {
            return Err(HfError::TensorShape { name: hf_name, expected: vec![0, 0], found: info.shape.clone() });
        }
        let (ty, elem) = ggml_type(&hf_name, info.dtype)?;
        out.w.add_tensor(gg_name.as_str(), &dims, ty)?;
        let rows = info.shape[0] as usize;
        let row_bytes = info.shape[1] as usize * elem;
        let rope_heads = match gg_name.rsplit('.').nth(1) {
            Some("attn_q") if permute => Some(hp.n_head),
            Some("attn_k") if permute => Some(hp.n_head_kv),
            _ => None,
        };
        match rope_heads {
            Some(nh) => {
                if rows != nh * hp.head_dim || hp.head_dim % 2 != 0 {
                    return Err(HfError::TensorShape {
                        name: hf_name,
                        expected: vec![(nh * hp.head_dim) as u64, info.shape[1]],
                        found: info.shape.clone(),
                    });
                }
                out.data.push(Source::Rows { name: hf_name, row_bytes, perm: rope_row_perm(nh, hp.head_dim) });
            }
            None => out.data.push(Source::Raw(hf_name)),
        }
    }
    Ok(())
}

mod tokenizer {
    //! `tokenizer.json` + `tokenizer_config.json` + `generation_config.json`
    //! → `tokenizer.*` GGUF keys, as convert_hf_to_gguf's `_set_vocab_gpt2`
    //! and `gguf.SpecialVocab` write them.

    use super::{read_json, HfError, Result};
    use hearth_formats::{GgufWriter, MetaArray};
    use serde_json::Value;
    use std::collections::HashMap;
    use std::path::Path;

    /// llama.h `llama_token_type`.
    const NORMAL: i32 = 1;
    const UNKNOWN: i32 = 2;
    const CONTROL: i32 = 3;
    const USER_DEFINED: i32 = 4;
    const UNUSED: i32 = 5;
    const BYTE: i32 = 6;

    /// Pre-tokenizer regexes of tokenizer.json files and the llama.cpp
    /// pre-tokenizer that implements each (convert_hf_to_gguf_update.py
    /// identifies them by hashing tokenizer output; the regex is the
    /// source of that behaviour, so we match it directly).
    const KNOWN_SPLITS: &[(&str, &str)] = &[
        (
            "(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\\r\\n\\p{L}\\p{N}]?\\p{L}+|\\p{N}{1,3}| ?[^\\s\\p{L}\\p{N}]+[\\r\\n]*|\\s*[\\r\\n]+|\\s+(?!\\S)|\\s+",
            "llama-bpe",
        ),
        (
            "(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\\r\\n\\p{L}\\p{N}]?\\p{L}+|\\p{N}| ?[^\\s\\p{L}\\p{N}]+[\\r\\n]*|\\s*[\\r\\n]+|\\s+(?!\\S)|\\s+",
            "qwen2",
        ),
    ];

    fn terr(msg: impl Into<String>) -> HfError {
        HfError::Tokenizer(msg.into())
    }

    /// A special-token field of tokenizer_config.json: a string or an
    /// AddedToken object.
    fn token_text(v: Option<&Value>) -> Option<&str> {
        match v? {
            Value::String(s) => Some(s),
            Value::Object(o) => o.get("content").and_then(Value::as_str),
            _ => None,
        }
    }

    pub fn write(w: &mut GgufWriter, dir: &Path, config: &Value, n_vocab: usize) -> Result<()> {
        let Some(tj) = read_json(dir, "tokenizer.json")? else {
            if dir.join("tokenizer.model").is_file() {
                return Err(terr("only tokenizer.model (SentencePiece protobuf) is present; Hearth reads tokenizer.json"));
            }
            return Err(terr("missing: a model folder needs tokenizer.json"));
        };
        let tc = read_json(dir, "tokenizer_config.json")?.unwrap_or(Value::Null);
        let gc = read_json(dir, "generation_config.json")?.unwrap_or(Value::Null);
        let model = tj.get("model").ok_or_else(|| terr("no \"model\""))?;
        let kind = model.get("type").and_then(Value::as_str).unwrap_or("");
        if kind != "BPE" {
            return Err(terr(format!("model type {kind:?} is not supported (byte-level or SentencePiece-style BPE only)")));
        }
        let vocab = model.get("vocab").and_then(Value::as_object).ok_or_else(|| terr("model.vocab is not an object"))?;
        let mut by_id: HashMap<usize, String> = HashMap::new();
        for (tok, id) in vocab {
            let id = id.as_u64().ok_or_else(|| terr(format!("vocab id of {tok:?} is not an integer")))? as usize;
            by_id.insert(id, tok.clone());
        }
        let mut added: HashMap<usize, bool> = HashMap::new();
        for a in tj.get("added_tokens").and_then(Value::as_array).map(Vec::as_slice).unwrap_or(&[]) {
            let id = a.get("id").and_then(Value::as_u64).ok_or_else(|| terr("added token without id"))? as usize;
            let content = a.get("content").and_then(Value::as_str).ok_or_else(|| terr("added token without content"))?;
            by_id.insert(id, content.to_string());
            added.insert(id, a.get("special").and_then(Value::as_bool).unwrap_or(false));
        }
        let max_id = by_id.keys().copied().max().unwrap_or(0);
        if max_id >= n_vocab {
            return Err(terr(format!("token id {max_id} is outside the model's vocab_size {n_vocab}")));
        }
        let merges: Vec<String> = match model.get("merges").and_then(Value::as_array) {
            Some(m) => m
                .iter()
                .map(|x| match x {
                    Value::String(s) => Ok(s.clone()),
                    Value::Array(p) if p.len() == 2 => match (p[0].as_str(), p[1].as_str()) {
                        (Some(a), Some(b)) => Ok(format!("{a} {b}")),
                        _ => Err(terr("a merge pair is not two strings")),
                    },
                    _ => Err(terr("a merge is neither \"a b\" nor [a, b]")),
                })
                .collect::<Result<_>>()?,
            None => Vec::new(),
        };
        let byte_fallback = model.get("byte_fallback").and_then(Value::as_bool).unwrap_or(false);
        let pre = tj.get("pre_tokenizer").unwrap_or(&Value::Null);
        let byte_level = contains_type(pre, "ByteLevel") || contains_type(tj.get("decoder").unwrap_or(&Value::Null), "ByteLevel");
        let unk = model.get("unk_token").and_then(Value::as_str);

        let mut tokens = Vec::with_capacity(n_vocab);
        let mut types = Vec::with_capacity(n_vocab);
        for id in 0..n_vocab {
            match by_id.get(&id) {
                Some(t) => {
                    let ty = match added.get(&id) {
                        Some(true) => CONTROL,
                        Some(false) => USER_DEFINED,
                        None if Some(t.as_str()) == unk => UNKNOWN,
                        None if !byte_level && is_byte_token(t) => BYTE,
                        None => NORMAL,
                    };
                    tokens.push(t.clone());
                    types.push(ty);
                }
                // convert_hf_to_gguf pads the vocabulary up to vocab_size.
                None => {
                    tokens.push(format!("[PAD{id}]"));
                    types.push(UNUSED);
                }
            }
        }
        if byte_level {
            let pre_name = detect_pre(pre)?;
            w.add_meta("tokenizer.ggml.model", "gpt2")?;
            w.add_meta("tokenizer.ggml.pre", pre_name)?;
            w.add_meta("tokenizer.ggml.tokens", MetaArray::String(tokens.clone()))?;
            w.add_meta("tokenizer.ggml.token_type", MetaArray::I32(types))?;
            w.add_meta("tokenizer.ggml.merges", MetaArray::String(merges))?;
        } else if byte_fallback {
            // SentencePiece BPE: llama.cpp's SPM tokenizer merges the pair
            // whose result has the highest score; a merge list is the same
            // order when score = -rank of the merge that makes the token.
            let index: HashMap<&str, usize> = tokens.iter().enumerate().map(|(i, t)| (t.as_str(), i)).collect();
            let mut scores = vec![0f32; n_vocab];
            let mut seen = vec![false; n_vocab];
            for (rank, m) in merges.iter().enumerate() {
                let joined: String = m.split(' ').collect();
                if let Some(&i) = index.get(joined.as_str()) {
                    if !seen[i] {
                        seen[i] = true;
                        scores[i] = -(rank as f32) - 1.0;
                    }
                }
            }
            let add_space = metaspace_prefix(&tj);
            w.add_meta("tokenizer.ggml.model", "llama")?;
            w.add_meta("tokenizer.ggml.pre", "default")?;
            w.add_meta("tokenizer.ggml.tokens", MetaArray::String(tokens.clone()))?;
            w.add_meta("tokenizer.ggml.scores", MetaArray::F32(scores))?;
            w.add_meta("tokenizer.ggml.token_type", MetaArray::I32(types))?;
            w.add_meta("tokenizer.ggml.add_space_prefix", add_space)?;
        } else {
            return Err(terr("BPE without ByteLevel or byte_fallback is not supported"));
        }

        // Special ids: tokenizer_config.json strings, else config.json ids
        // (gguf.SpecialVocab reads both).
        let id_of = |text: Option<&str>| text.and_then(|t| tokens.iter().position(|x| x == t));
        let cfg_id = |v: &Value, key: &str| -> Option<usize> {
            match v.get(key)? {
                Value::Number(n) => n.as_u64().map(|n| n as usize),
                Value::Array(a) => a.first().and_then(Value::as_u64).map(|n| n as usize),
                _ => None,
            }
        };
        let bos = id_of(token_text(tc.get("bos_token"))).or_else(|| cfg_id(config, "bos_token_id"));
        let eos = id_of(token_text(tc.get("eos_token"))).or_else(|| cfg_id(&gc, "eos_token_id")).or_else(|| cfg_id(config, "eos_token_id"));
        let pad = id_of(token_text(tc.get("pad_token"))).or_else(|| cfg_id(config, "pad_token_id"));
        let unk_id = id_of(token_text(tc.get("unk_token"))).or_else(|| id_of(unk));
        for (key, v) in [("bos", bos), ("eos", eos), ("padding", pad), ("unknown", unk_id)] {
            if let Some(id) = v.filter(|&i| i < n_vocab) {
                w.add_meta(format!("tokenizer.ggml.{key}_token_id"), id as u32)?;
            }
        }
        // generation_config.json may list several end ids (Llama 3: end of
        // text, end of message, end of turn); the second becomes the
        // end-of-turn token so generation stops on it.
        if let Some(list) = gc.get("eos_token_id").and_then(Value::as_array) {
            let ids: Vec<usize> = list.iter().filter_map(Value::as_u64).map(|n| n as usize).filter(|&i| i < n_vocab).collect();
            if let Some(&eot) = ids.iter().find(|&&i| Some(i) != eos) {
                w.add_meta("tokenizer.ggml.eot_token_id", eot as u32)?;
            }
        }
        let (post_bos, post_eos) = post_processor_specials(&tj);
        let add_bos = tc.get("add_bos_token").and_then(Value::as_bool).unwrap_or(post_bos);
        let add_eos = tc.get("add_eos_token").and_then(Value::as_bool).unwrap_or(post_eos);
        w.add_meta("tokenizer.ggml.add_bos_token", add_bos)?;
        w.add_meta("tokenizer.ggml.add_eos_token", add_eos)?;

        // Chat template: tokenizer_config.json, or chat_template.jinja
        // (transformers 4.43+ writes it there).
        let template = match tc.get("chat_template") {
            Some(Value::String(s)) => Some(s.clone()),
            Some(Value::Array(list)) => list
                .iter()
                .find(|t| t.get("name").and_then(Value::as_str) == Some("default"))
                .or_else(|| list.first())
                .and_then(|t| t.get("template"))
                .and_then(Value::as_str)
                .map(str::to_string),
            _ => None,
        };
        let template = match template {
            Some(t) => Some(t),
            None => {
                let p = dir.join("chat_template.jinja");
                match std::fs::read_to_string(&p) {
                    Ok(t) => Some(t),
                    Err(e) if e.kind() == std::io::ErrorKind::NotFound => None,
                    Err(source) => return Err(HfError::Io { path: p, source }),
                }
            }
        };
        if let Some(t) = template {
            w.add_meta("tokenizer.chat_template", t.as_str())?;
        }
        Ok(())
    }

    fn is_byte_token(t: &str) -> bool {
        t.len() == 6 && t.starts_with("<0x") && t.ends_with('>') && u8::from_str_radix(&t[3..5], 16).is_ok()
    }

    fn contains_type(v: &Value, ty: &str) -> bool {
        match v {
            Value::Object(o) => {
                o.get("type").and_then(Value::as_str) == Some(ty) || o.values().any(|x| contains_type(x, ty))
            }
            Value::Array(a) => a.iter().any(|x| contains_type(x, ty)),
            _ => false,
        }
    }

    /// Does the normalizer or pre-tokenizer put "▁" before the first word?
    fn metaspace_prefix(tj: &Value) -> bool {
        fn walk(v: &Value) -> bool {
            match v {
                Value::Object(o) => {
                    let ty = o.get("type").and_then(Value::as_str);
                    if ty == Some("Prepend") && o.get("prepend").and_then(Value::as_str) == Some("\u{2581}") {
                        return true;
                    }
                    if ty == Some("Metaspace") {
                        let scheme = o.get("prepend_scheme").and_then(Value::as_str);
                        let legacy = o.get("add_prefix_space").and_then(Value::as_bool);
                        return matches!(scheme, Some("always") | Some("first")) || legacy == Some(true);
                    }
                    o.values().any(walk)
                }
                Value::Array(a) => a.iter().any(walk),
                _ => false,
            }
        }
        walk(tj.get("normalizer").unwrap_or(&Value::Null)) || walk(tj.get("pre_tokenizer").unwrap_or(&Value::Null))
    }

    /// Whether TemplateProcessing adds a special token before / after a
    /// single sequence.
    fn post_processor_specials(tj: &Value) -> (bool, bool) {
        let Some(single) = tj.get("post_processor").and_then(|p| p.get("single")).and_then(Value::as_array) else {
            return (false, false);
        };
        let special = |v: Option<&Value>| v.is_some_and(|x| x.get("SpecialToken").is_some());
        (special(single.first()), single.len() > 1 && special(single.last()))
    }

    fn detect_pre(pre: &Value) -> Result<&'static str> {
        // GPT-2: a lone ByteLevel with its built-in regex.
        if pre.get("type").and_then(Value::as_str) == Some("ByteLevel") {
            if pre.get("use_regex").and_then(Value::as_bool).unwrap_or(true) {
                return Ok("gpt-2");
            }
            return Err(terr("ByteLevel pre-tokenizer without a splitting regex"));
        }
        let mut regexes = Vec::new();
        collect_regexes(pre, &mut regexes);
        for r in &regexes {
            if let Some((_, name)) = KNOWN_SPLITS.iter().find(|(k, _)| k == r) {
                return Ok(name);
            }
        }
        Err(terr(format!(
            "pre-tokenizer not recognised (regexes {regexes:?}); convert the folder with llama.cpp's convert_hf_to_gguf.py"
        )))
    }

    fn collect_regexes(v: &Value, out: &mut Vec<String>) {
        match v {
            Value::Object(o) => {
                if let Some(r) = o.get("pattern").and_then(|p| p.get("Regex")).and_then(Value::as_str) {
                    out.push(r.to_string());
                }
                o.values().for_each(|x| collect_regexes(x, out));
            }
            Value::Array(a) => a.iter().for_each(|x| collect_regexes(x, out)),
            _ => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rope_permutation_pairs_halves() {
        // One head of 8 rows: rotate-half pairs (0,4) (1,5) (2,6) (3,7)
        // must become adjacent rows.
        assert_eq!(rope_row_perm(1, 8), vec![0, 4, 1, 5, 2, 6, 3, 7]);
        assert_eq!(rope_row_perm(2, 4), vec![0, 2, 1, 3, 4, 6, 5, 7]);
    }

    /// A copy of the qwen2 fixture folder with one file replaced.
    fn variant(tag: &str, file: &str, edit: impl Fn(&mut Value)) -> PathBuf {
        variant_of("qwen2", tag, file, edit)
    }

    fn variant_of(fixture: &str, tag: &str, file: &str, edit: impl Fn(&mut Value)) -> PathBuf {
        let src = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../testdata/hf").join(fixture);
        let dir = std::env::temp_dir().join(format!("hearth-hf-{tag}-{}", std::process::id()));
        std::fs::remove_dir_all(&dir).ok();
        std::fs::create_dir_all(&dir).unwrap();
        for e in std::fs::read_dir(&src).unwrap() {
            let p = e.unwrap().path();
            std::fs::copy(&p, dir.join(p.file_name().unwrap())).unwrap();
        }
        let mut v: Value = serde_json::from_str(&std::fs::read_to_string(dir.join(file)).unwrap()).unwrap();
        edit(&mut v);
        std::fs::write(dir.join(file), v.to_string()).unwrap();
        dir
    }

    #[test]
    fn hostile_side_files_are_typed_errors() {
        type Edit = fn(&mut Value);
        let cases: &[(&str, &str, Edit, &str)] = &[
            ("vocab", "config.json", |v| v["vocab_size"] = 4_000_000_000u64.into(), "vocab_size"),
            ("layers", "config.json", |v| v["num_hidden_layers"] = 0.into(), "num_hidden_layers"),
            ("hidden", "config.json", |v| v["hidden_size"] = "wide".into(), "hidden_size"),
            ("rope", "config.json", |v| v["rope_parameters"]["rope_type"] = "dynamic-ntk-xl".into(), "rope_type"),
            ("theta", "config.json", |v| v["rope_parameters"]["rope_theta"] = "hot".into(), "rope_theta"),
            ("unigram", "tokenizer.json", |v| v["model"]["type"] = "Unigram".into(), "Unigram"),
            ("regex", "tokenizer.json", |v| v["pre_tokenizer"]["pretokenizers"][0]["pattern"]["Regex"] = "\\w+".into(), "not recognised"),
            ("merge", "tokenizer.json", |v| v["model"]["merges"][0] = 7.into(), "merge"),
            ("id", "tokenizer.json", |v| v["added_tokens"][0]["id"] = 100000.into(), "outside"),
        ];
        for (tag, file, edit, needle) in cases {
            let dir = variant(tag, file, *edit);
            let e = load_folder(&dir).err().unwrap_or_else(|| panic!("{tag}: accepted"));
            assert!(matches!(e, HfError::Config { .. } | HfError::Tokenizer(_)), "{tag}: {e}");
            assert!(e.to_string().contains(needle), "{tag}: {e}");
            std::fs::remove_dir_all(&dir).ok();
        }
    }

    #[test]
    fn gemma3_text_config_defaults() {
        let dir = variant_of("gemma3", "g3-defaults", "config.json", |v| {
            let o = v.as_object_mut().unwrap();
            for k in ["num_attention_heads", "num_key_value_heads", "head_dim", "vocab_size", "sliding_window", "query_pre_attn_scalar"] {
                o.remove(k);
            }
        });
        let f = load_folder(&dir).unwrap();
        let u = |k: &str| f.get_u64(&format!("gemma3.{k}")).unwrap();
        assert_eq!(u("attention.head_count"), Some(8));
        assert_eq!(u("attention.head_count_kv"), Some(4));
        assert_eq!(u("attention.key_length"), Some(256));
        assert_eq!(u("vocab_size"), Some(262_208));
        assert_eq!(u("attention.sliding_window"), Some(4096));
        assert_eq!(f.get_f32("gemma3.attention.scale").unwrap(), Some(1.0 / 16.0));
        assert_eq!(f.get_str_array("tokenizer.ggml.tokens").unwrap().map(|t| t.len()), Some(262_208));
        std::fs::remove_dir_all(&dir).ok();
    }

    #[test]
    fn unknown_architecture_is_named() {
        let dir = std::env::temp_dir().join(format!("hearth-hf-arch-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(dir.join("config.json"), r#"{"architectures": ["FalconForCausalLM"]}"#).unwrap();
        let e = load_folder(&dir).unwrap_err();
        assert!(matches!(&e, HfError::UnsupportedArch(a) if a == "FalconForCausalLM"), "{e}");
        std::fs::write(dir.join("config.json"), "{not json").unwrap();
        assert!(matches!(load_folder(&dir).unwrap_err(), HfError::Json { .. }));
        std::fs::remove_dir_all(&dir).ok();
    }

    #[test]
    fn pickle_only_folder_is_refused() {
        let dir = std::env::temp_dir().join(format!("hearth-hf-pickle-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(dir.join("config.json"), r#"{"architectures": ["LlamaForCausalLM"]}"#).unwrap();
        std::fs::write(dir.join("pytorch_model.bin"), b"PK\x03\x04").unwrap();
        let e = load_folder(&dir).unwrap_err();
        assert!(matches!(e, HfError::WeightFile(hearth_formats::WeightFileError::PickleRefused { .. })), "{e}");
        assert!(e.to_string().contains("never opens them"), "{e}");
        std::fs::remove_file(dir.join("pytorch_model.bin")).unwrap();
        assert!(matches!(load_folder(&dir).unwrap_err(), HfError::Safetensors(_)));
        let e = open(&dir.join("model.pt")).unwrap_err();
        assert!(matches!(e, HfError::WeightFile(_)), "{e}");
        std::fs::remove_dir_all(&dir).ok();
    }
}
