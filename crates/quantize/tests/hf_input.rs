//! A Hugging Face folder as `hearth quantize` input: the folder is converted
//! in memory (`hearth_models::hf`) and quantized like any GGUF. Checked on
//! the repository's tiny transformers fixtures (testdata/hf): every tensor
//! the conversion produces comes out, each one's
//! dequantized values within the type's error of the source, the tokenizer
//! and architecture metadata carried over, and the file loads as a model.

use hearth_formats::{GgmlType, GgufFile};
use hearth_quantize::{quantize, FileType, GgufSource, QuantizeOptions, TensorSource};
use std::path::PathBuf;

fn folder(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../testdata/hf").join(name)
}

fn f32_values(file: &GgufFile, name: &str) -> Vec<f32> {
    let t = file.tensors().iter().find(|t| t.name == name).unwrap();
    let n: u64 = t.dims.iter().product();
    let mut out = vec![0f32; n as usize];
    let row = t.dims[0] as usize;
    let bytes = file.tensor_data(t);
    let row_bytes = bytes.len() / (n as usize / row);
    for (i, chunk) in out.chunks_mut(row).enumerate() {
        hearth_kernels::dequantize_row(t.ty, &bytes[i * row_bytes..(i + 1) * row_bytes], chunk);
    }
    out
}

#[test]
fn hf_folders_quantize_to_q8_0_and_load() {
    for arch in ["llama", "qwen2", "gemma2"] {
        let src = GgufSource::open_model(folder(arch)).unwrap_or_else(|e| panic!("{arch}: {e}"));
        let converted = hearth_models::hf::load_folder(&folder(arch)).unwrap();
        let dir = std::env::temp_dir().join(format!("hearth-quantize-hf-{arch}-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let out = dir.join("q8.gguf");
        let mut opts = QuantizeOptions::new(FileType::Q8_0);
        opts.threads = 2;
        quantize(&src, &out, &opts, &mut |_| {}).unwrap_or_else(|e| panic!("{arch}: {e}"));
        let q = GgufFile::open(&out).unwrap();
        // The same tensors (the writer orders them as llama-quantize does).
        let mut names: Vec<&str> = q.tensors().iter().map(|t| t.name.as_str()).collect();
        let mut want: Vec<&str> = src.tensors().iter().map(|t| t.name.as_str()).collect();
        names.sort_unstable();
        want.sort_unstable();
        assert_eq!(names, want, "{arch}: tensor names");
        let mut quantized = 0;
        for t in q.tensors() {
            if t.ty == GgmlType::Q8_0 {
                quantized += 1;
            }
            let a = f32_values(&converted, &t.name);
            let b = f32_values(&q, &t.name);
            let scale = a.iter().fold(0f32, |m, v| m.max(v.abs())).max(1e-12);
            let err = a.iter().zip(&b).fold(0f32, |m, (x, y)| m.max((x - y).abs()));
            // Q8_0: at most half a step of a 127-level block scale.
            assert!(err <= scale / 127.0, "{arch} {}: max error {err} for max |w| {scale}", t.name);
        }
        assert!(quantized > 0, "{arch}: no tensor was quantized");
        assert_eq!(q.get_str("general.architecture").unwrap(), converted.get_str("general.architecture").unwrap());
        assert_eq!(q.get_str("tokenizer.ggml.model").unwrap(), converted.get_str("tokenizer.ggml.model").unwrap());
        hearth_models::load_gguf(std::sync::Arc::new(q)).unwrap_or_else(|e| panic!("{arch}: {e}"));
        std::fs::remove_dir_all(&dir).ok();
    }
}
