//! Random-weight test models: a real vocabulary and chat template (taken
//! from a vocab-only GGUF such as llama.cpp's `ggml-vocab-qwen2.gguf`) with
//! seeded random `qwen2` weights, written with [`GgufWriter`].
//!
//! No weights can be downloaded in CI, and protocol tests need none: with
//! temperature 0 a random model is deterministic and `max_tokens` controls
//! the length. The text is gibberish; tests check behaviour, not quality.
//! The same spec and seed always produce the same file.

use hearth_formats::{GgmlType, GgufFile, GgufWriteError, GgufWriter, MetaValue};
use std::io::Write;
use std::path::{Path, PathBuf};

/// Shape of a generated model.
#[derive(Clone, Debug, PartialEq)]
pub struct TestModelSpec {
    pub name: String,
    pub n_embd: usize,
    pub n_layer: usize,
    pub n_head: usize,
    pub n_head_kv: usize,
    pub n_ff: usize,
    pub n_ctx_train: usize,
    /// Type of the matrices (norms and biases stay F32).
    pub weight_type: GgmlType,
    pub seed: u64,
}

impl TestModelSpec {
    /// A tiny model (64 wide, 2 layers) for tests: loads and steps in
    /// milliseconds; most of its size is the 151,936-token embedding.
    pub fn tiny() -> TestModelSpec {
        TestModelSpec {
            name: "hearth-tiny-qwen2".into(),
            n_embd: 64,
            n_layer: 2,
            n_head: 4,
            n_head_kv: 2,
            n_ff: 128,
            n_ctx_train: 4096,
            weight_type: GgmlType::Q8_0,
            seed: 1,
        }
    }

    /// The shape of Qwen2.5-0.5B-Instruct (896 wide, 24 layers, 14 heads,
    /// 2 KV heads, FFN 4864, tied embeddings), in Q4_0: realistic
    /// memory traffic for benchmarks.
    pub fn qwen25_05b_q4_0() -> TestModelSpec {
        TestModelSpec {
            name: "hearth-random-qwen2.5-0.5b-q4_0".into(),
            n_embd: 896,
            n_layer: 24,
            n_head: 14,
            n_head_kv: 2,
            n_ff: 4864,
            n_ctx_train: 32768,
            weight_type: GgmlType::Q4_0,
            seed: 1,
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum TestModelError {
    #[error("reading the vocabulary {path}: {message}")]
    Vocab { path: PathBuf, message: String },
    #[error("{0}")]
    Write(#[from] GgufWriteError),
    #[error("invalid spec: {0}")]
    Spec(String),
}

/// llama.cpp's Qwen2 vocabulary (with its ChatML template), in this
/// repository's test data.
pub fn qwen2_vocab_path() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../testdata/vocab/ggml-vocab-qwen2.gguf")
}

/// SplitMix64 (Steele, Lea & Flood 2014): tiny, seeded, good enough for
/// random weights.
struct SplitMix(u64);

impl SplitMix {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// Uniform in [-1, 1).
    fn uniform(&mut self) -> f32 {
        ((self.next() >> 40) as f32 / (1u64 << 24) as f32) * 2.0 - 1.0
    }

    /// Approximately normal with standard deviation `std` (sum of three
    /// uniforms: variance 3 * 1/3 = 1).
    fn normal(&mut self, std: f32) -> f32 {
        (self.uniform() + self.uniform() + self.uniform()) * std
    }
}

/// What one tensor holds.
#[derive(Clone, Copy)]
enum Fill {
    Ones,
    Normal(f32),
}

/// Writes a random `qwen2` model with the vocabulary and template of the
/// vocab-only GGUF at `vocab`. Returns the file size.
pub fn write_test_model(
    vocab: &Path,
    out: &Path,
    spec: &TestModelSpec,
) -> Result<u64, TestModelError> {
    let vf = GgufFile::open(vocab).map_err(|e| TestModelError::Vocab {
        path: vocab.to_path_buf(),
        message: e.to_string(),
    })?;
    let n_vocab = vf
        .get_array("tokenizer.ggml.tokens")
        .ok()
        .flatten()
        .map(|a| a.len())
        .ok_or_else(|| TestModelError::Vocab {
            path: vocab.to_path_buf(),
            message: "no tokenizer.ggml.tokens".into(),
        })?;
    let hd = spec.n_embd / spec.n_head.max(1);
    let block = spec.weight_type.block_size();
    if spec.n_head == 0
        || spec.n_embd % spec.n_head != 0
        || spec.n_head % spec.n_head_kv.max(1) != 0
    {
        return Err(TestModelError::Spec(
            "n_embd must split into n_head heads, n_head into n_head_kv groups".into(),
        ));
    }
    if spec.n_embd % block != 0 || spec.n_ff % block != 0 {
        return Err(TestModelError::Spec(format!(
            "n_embd and n_ff must be multiples of the {} block size {block}",
            spec.weight_type
        )));
    }
    let mut w = GgufWriter::new();
    for (k, v) in vf.metadata() {
        // Keep the tokenizer and template; the architecture keys are ours.
        if k.starts_with("tokenizer.") {
            w.add_meta(k.clone(), v.clone())?;
        }
    }
    let u32m = |v: usize| MetaValue::U32(v as u32);
    w.set_meta("general.architecture", MetaValue::String("qwen2".into()))?;
    w.set_meta("general.name", MetaValue::String(spec.name.clone()))?;
    w.set_meta("qwen2.block_count", u32m(spec.n_layer))?;
    w.set_meta("qwen2.context_length", u32m(spec.n_ctx_train))?;
    w.set_meta("qwen2.embedding_length", u32m(spec.n_embd))?;
    w.set_meta("qwen2.feed_forward_length", u32m(spec.n_ff))?;
    w.set_meta("qwen2.attention.head_count", u32m(spec.n_head))?;
    w.set_meta("qwen2.attention.head_count_kv", u32m(spec.n_head_kv))?;
    w.set_meta("qwen2.rope.freq_base", MetaValue::F32(1_000_000.0))?;
    w.set_meta(
        "qwen2.attention.layer_norm_rms_epsilon",
        MetaValue::F32(1e-6),
    )?;

    let (e, q, kv, ff) = (
        spec.n_embd as u64,
        (spec.n_head * hd) as u64,
        (spec.n_head_kv * hd) as u64,
        spec.n_ff as u64,
    );
    let wt = spec.weight_type;
    let mut fills: Vec<Fill> = Vec::new();
    let mut add = |w: &mut GgufWriter,
                   name: String,
                   dims: &[u64],
                   ty: GgmlType,
                   fill: Fill|
     -> Result<(), GgufWriteError> {
        w.add_tensor(name, dims, ty)?;
        fills.push(fill);
        Ok(())
    };
    // Embedding scale: logits are dot products of n_embd unit-RMS values, so
    // std 2/sqrt(n_embd) gives logits of std ~2 — peaked enough for a stable
    // argmax, flat enough that seeded sampling varies.
    add(
        &mut w,
        "token_embd.weight".into(),
        &[e, n_vocab as u64],
        wt,
        Fill::Normal(2.0 / (e as f32).sqrt()),
    )?;
    add(
        &mut w,
        "output_norm.weight".into(),
        &[e],
        GgmlType::F32,
        Fill::Ones,
    )?;
    let proj = |fan_in: u64| Fill::Normal(1.0 / (fan_in as f32).sqrt());
    for i in 0..spec.n_layer {
        let n = |s: &str| format!("blk.{i}.{s}");
        add(
            &mut w,
            n("attn_norm.weight"),
            &[e],
            GgmlType::F32,
            Fill::Ones,
        )?;
        add(&mut w, n("attn_q.weight"), &[e, q], wt, proj(e))?;
        add(&mut w, n("attn_k.weight"), &[e, kv], wt, proj(e))?;
        add(&mut w, n("attn_v.weight"), &[e, kv], wt, proj(e))?;
        add(
            &mut w,
            n("attn_q.bias"),
            &[q],
            GgmlType::F32,
            Fill::Normal(0.1),
        )?;
        add(
            &mut w,
            n("attn_k.bias"),
            &[kv],
            GgmlType::F32,
            Fill::Normal(0.1),
        )?;
        add(
            &mut w,
            n("attn_v.bias"),
            &[kv],
            GgmlType::F32,
            Fill::Normal(0.1),
        )?;
        add(&mut w, n("attn_output.weight"), &[q, e], wt, proj(q))?;
        add(
            &mut w,
            n("ffn_norm.weight"),
            &[e],
            GgmlType::F32,
            Fill::Ones,
        )?;
        add(&mut w, n("ffn_gate.weight"), &[e, ff], wt, proj(e))?;
        add(&mut w, n("ffn_up.weight"), &[e, ff], wt, proj(e))?;
        add(&mut w, n("ffn_down.weight"), &[ff, e], wt, proj(ff))?;
    }
    let mut rng = SplitMix(spec.seed);
    let mut index = 0;
    let mut row = Vec::new();
    let mut bytes = Vec::new();
    let n = w.write_to_path(out, |info, sink| {
        let fill = fills[index];
        index += 1;
        let cols = info.dims.first().copied().unwrap_or(1) as usize;
        let rows = info.dims.iter().skip(1).product::<u64>() as usize;
        let rb = info.ty.row_bytes(cols as u64).unwrap_or(0) as usize;
        row.resize(cols, 0.0);
        bytes.resize(rb, 0);
        for _ in 0..rows {
            for x in row.iter_mut() {
                *x = match fill {
                    Fill::Ones => 1.0,
                    Fill::Normal(s) => rng.normal(s),
                };
            }
            hearth_kernels::quantize_row_ref(info.ty, &row, &mut bytes);
            sink.write_all(&bytes)?;
        }
        Ok(())
    })?;
    Ok(n)
}
