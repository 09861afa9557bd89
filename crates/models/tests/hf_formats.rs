//! Folder variants built from the qwen2 and llama fixtures of testdata/hf:
//! sharded checkpoints (`model.safetensors.index.json`) convert to exactly
//! the same GGUF bytes as the single file, and F16/BF16 checkpoints load as
//! F16/BF16 weights whose logits stay close to the F32 model's.

use hearth_formats::{Dtype, GgmlType, SafetensorsFile};
use hearth_models::{hf, KvCache, KvType, Logits, Scratch, SeqInput, ThreadPool};
use std::path::{Path, PathBuf};
use std::sync::Arc;

fn fixture(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../testdata/hf").join(name)
}

fn tmp(tag: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("hearth-hf-{tag}-{}", std::process::id()));
    std::fs::remove_dir_all(&d).ok();
    std::fs::create_dir_all(&d).unwrap();
    d
}

/// Copies the side files (everything but the weights) of `src` into `dst`.
fn copy_side_files(src: &Path, dst: &Path) {
    for e in std::fs::read_dir(src).unwrap() {
        let p = e.unwrap().path();
        let name = p.file_name().unwrap().to_str().unwrap().to_string();
        if !name.ends_with(".safetensors") {
            std::fs::copy(&p, dst.join(name)).unwrap();
        }
    }
}

/// A minimal safetensors writer: header length, JSON header, data.
fn write_safetensors(path: &Path, tensors: &[(String, &str, Vec<u64>, Vec<u8>)]) {
    let mut header = String::from("{");
    let mut off = 0usize;
    for (i, (name, dtype, shape, data)) in tensors.iter().enumerate() {
        if i > 0 {
            header.push(',');
        }
        let shape: Vec<String> = shape.iter().map(u64::to_string).collect();
        header.push_str(&format!(
            "\"{name}\":{{\"dtype\":\"{dtype}\",\"shape\":[{}],\"data_offsets\":[{off},{}]}}",
            shape.join(","),
            off + data.len()
        ));
        off += data.len();
    }
    header.push('}');
    while header.len() % 8 != 0 {
        header.push(' ');
    }
    let mut out = (header.len() as u64).to_le_bytes().to_vec();
    out.extend_from_slice(header.as_bytes());
    for t in tensors {
        out.extend_from_slice(&t.3);
    }
    std::fs::write(path, out).unwrap();
}

fn f32s(b: &[u8]) -> impl Iterator<Item = f32> + '_ {
    b.chunks_exact(4).map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
}

#[test]
fn sharded_folder_converts_like_the_single_file() {
    let src = fixture("qwen2");
    let st = SafetensorsFile::open(src.join("model.safetensors")).unwrap();
    let dst = tmp("sharded");
    copy_side_files(&src, &dst);
    let all: Vec<_> = st.tensors().iter().map(|t| (t.name.clone(), "F32", t.shape.clone(), st.tensor_data(t).to_vec())).collect();
    let (a, b) = all.split_at(all.len() / 2);
    write_safetensors(&dst.join("model-00001-of-00002.safetensors"), a);
    write_safetensors(&dst.join("model-00002-of-00002.safetensors"), b);
    let mut map = Vec::new();
    for (part, file) in [(a, "model-00001-of-00002.safetensors"), (b, "model-00002-of-00002.safetensors")] {
        for t in part {
            map.push(format!("\"{}\":\"{file}\"", t.0));
        }
    }
    std::fs::write(dst.join("model.safetensors.index.json"), format!("{{\"metadata\":{{}},\"weight_map\":{{{}}}}}", map.join(","))).unwrap();
    let single = hf::load_folder(&src).unwrap();
    let sharded = hf::load_folder(&dst).unwrap();
    // Everything but general.name (the folder's name) is identical.
    let meta = |f: &hearth_formats::GgufFile| {
        f.metadata().iter().filter(|(k, _)| k != "general.name").cloned().collect::<Vec<_>>()
    };
    assert!(meta(&single) == meta(&sharded), "metadata differs");
    assert_eq!(single.tensors().len(), sharded.tensors().len());
    for (a, b) in single.tensors().iter().zip(sharded.tensors()) {
        assert_eq!((&a.name, &a.dims, a.ty), (&b.name, &b.dims, b.ty));
        assert!(single.tensor_data(a) == sharded.tensor_data(b), "{} differs", a.name);
    }
    std::fs::remove_dir_all(&dst).ok();
}

/// The llama fixture rewritten with 2-D weights in `dtype`.
fn converted(dtype: &str) -> PathBuf {
    let src = fixture("llama");
    let st = SafetensorsFile::open(src.join("model.safetensors")).unwrap();
    let dst = tmp(dtype);
    copy_side_files(&src, &dst);
    let tensors: Vec<_> = st
        .tensors()
        .iter()
        .map(|t| {
            assert_eq!(t.dtype, Dtype::F32);
            let d = st.tensor_data(t);
            let bytes: Vec<u8> = match dtype {
                "F16" => f32s(d).flat_map(|x| half::f16::from_f32(x).to_le_bytes()).collect(),
                _ => f32s(d).flat_map(|x| half::bf16::from_f32(x).to_le_bytes()).collect(),
            };
            (t.name.clone(), dtype, t.shape.clone(), bytes)
        })
        .collect();
    write_safetensors(&dst.join("model.safetensors"), &tensors);
    dst
}

fn first_logits(dir: &Path) -> (Vec<f32>, GgmlType) {
    let model = hearth_models::load_gguf(Arc::new(hf::load_folder(dir).unwrap())).unwrap();
    let ty = model.w.tok_embd.ty;
    let mut cache = KvCache::new(&model.cfg, 16, KvType::F32, KvType::F32);
    let mut out = Vec::new();
    let pool = ThreadPool::new(1);
    model
        .forward(&mut [SeqInput { tokens: &[1, 100, 101, 102, 103], cache: &mut cache, logits: Logits::Last, out: &mut out }], &pool, &mut Scratch::default())
        .unwrap();
    (out, ty)
}

#[test]
fn half_precision_folders_keep_their_type() {
    let (reference, ty) = first_logits(&fixture("llama"));
    assert_eq!(ty, GgmlType::F32);
    let spread = reference.iter().fold(0f32, |m, x| m.max(x.abs()));
    for (dtype, want, rel) in [("F16", GgmlType::F16, 0.02f32), ("BF16", GgmlType::BF16, 0.1)] {
        let dir = converted(dtype);
        let (logits, ty) = first_logits(&dir);
        assert_eq!(ty, want);
        let diff = logits.iter().zip(&reference).map(|(a, b)| (a - b).abs()).fold(0f32, f32::max);
        // Rounded weights and activations: close to F32, but not equal.
        assert!(diff > 0.0 && diff < rel * spread, "{dtype}: {diff} vs spread {spread}");
        std::fs::remove_dir_all(&dir).ok();
    }
}
