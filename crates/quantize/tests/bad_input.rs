//! Failures leave nothing behind: no file under the output name, no
//! temporary file, the input and any previous output untouched.

mod common;

use common::synth::recipes;
use hearth_formats::{GgmlType, GgufFile};
use hearth_quantize::{
    quantize, FileType, GgufSource, PlanOptions, QuantizeError, QuantizeOptions,
};
use std::path::{Path, PathBuf};
use std::sync::atomic::AtomicBool;
use std::sync::Arc;

fn tempdir(tag: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("hearth-quantize-bad-{tag}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).unwrap();
    d
}

fn small() -> common::synth::MemSource {
    recipes()
        .into_iter()
        .find(|r| r.name == "llama-bf16-gqa4")
        .unwrap()
        .source()
}

fn entries(dir: &Path) -> Vec<String> {
    let mut v: Vec<String> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    v.sort();
    v
}

fn opts(ft: FileType) -> QuantizeOptions {
    let mut o = QuantizeOptions::new(ft);
    o.threads = 2;
    o
}

#[test]
fn disk_full_leaves_no_file_and_keeps_the_previous_output() {
    let dir = tempdir("full");
    let out = dir.join("model-q4.gguf");
    std::fs::write(&out, b"previous contents").unwrap();
    let mut o = opts(FileType::Q4_K_M);
    o.simulate_disk_full_after = Some(100_000);
    let e = quantize(&small(), &out, &o, &mut |_| {}).unwrap_err();
    assert!(matches!(e, QuantizeError::DiskFull { .. }), "{e}");
    assert!(e.to_string().contains("no space left"), "{e}");
    assert_eq!(std::fs::read(&out).unwrap(), b"previous contents");
    assert_eq!(entries(&dir), vec!["model-q4.gguf"]);
    std::fs::remove_dir_all(&dir).ok();
}

#[test]
fn a_missing_output_folder_is_a_clear_error() {
    let dir = tempdir("nodir");
    let out = dir.join("no").join("such").join("dir").join("m.gguf");
    let e = quantize(&small(), &out, &opts(FileType::Q8_0), &mut |_| {}).unwrap_err();
    assert!(matches!(e, QuantizeError::Io { .. }), "{e}");
    assert!(e.to_string().contains("no/such/dir"), "{e}");
    assert!(entries(&dir).is_empty());
    std::fs::remove_dir_all(&dir).ok();
}

#[test]
fn cancelling_leaves_nothing() {
    let dir = tempdir("cancel");
    let out = dir.join("m.gguf");
    let mut o = opts(FileType::Q4_0);
    o.cancel = Some(Arc::new(AtomicBool::new(true)));
    let e = quantize(&small(), &out, &o, &mut |_| {}).unwrap_err();
    assert!(matches!(e, QuantizeError::Cancelled), "{e}");
    assert!(entries(&dir).is_empty());
    std::fs::remove_dir_all(&dir).ok();
}

#[test]
fn quantized_input_needs_allow_requantize_and_the_output_cannot_be_the_input() {
    let dir = tempdir("requant");
    let q8 = dir.join("m-q8.gguf");
    quantize(&small(), &q8, &opts(FileType::Q8_0), &mut |_| {}).unwrap();
    let before = std::fs::read(&q8).unwrap();
    let src = GgufSource::open(&q8).unwrap();

    let out = dir.join("m-q4.gguf");
    let e = quantize(&src, &out, &opts(FileType::Q4_K_M), &mut |_| {}).unwrap_err();
    assert!(
        matches!(
            e,
            QuantizeError::Requantize {
                from: GgmlType::Q8_0,
                ..
            }
        ),
        "{e}"
    );
    assert!(e.to_string().contains("--allow-requantize"), "{e}");
    assert!(!out.exists());

    // Writing over the input is refused even with permission.
    let mut o = opts(FileType::Q4_K_M);
    o.plan = PlanOptions {
        allow_requantize: true,
        ..Default::default()
    };
    let e = quantize(&src, &q8, &o, &mut |_| {}).unwrap_err();
    assert!(matches!(e, QuantizeError::OutputIsInput { .. }), "{e}");
    assert_eq!(std::fs::read(&q8).unwrap(), before);

    // With permission it works, and says which tensors were requantized.
    let report = quantize(&src, &out, &o, &mut |_| {}).unwrap();
    assert!(report
        .tensors
        .iter()
        .any(|t| t.src_type == GgmlType::Q8_0 && t.dst_type == GgmlType::Q4_K));
    let f = GgufFile::open(&out).unwrap();
    assert!(f.tensors().iter().any(|t| t.ty == GgmlType::Q4_K));
    assert_eq!(entries(&dir), vec!["m-q4.gguf", "m-q8.gguf"]);
    std::fs::remove_dir_all(&dir).ok();
}

#[test]
fn odd_row_lengths_fall_back_and_are_reported() {
    // qwen2-f16-odd: n_embd 192 and n_ff 200 are not multiples of 256.
    let src = recipes()
        .into_iter()
        .find(|r| r.name == "qwen2-f16-odd")
        .unwrap()
        .source();
    let dir = tempdir("odd");
    let out = dir.join("m.gguf");
    let mut planned = Vec::new();
    let report = quantize(&src, &out, &opts(FileType::Q4_K_M), &mut |ev| {
        if let hearth_quantize::Event::Planned { plan, .. } = ev {
            planned = plan.fallbacks().map(|f| f.to_string()).collect();
        }
    })
    .unwrap();
    assert!(!planned.is_empty());
    assert!(
        planned.iter().any(|m| m.contains("not a multiple of 256")),
        "{planned:?}"
    );
    // ffn_down rows are 200 long: no 32-element block fits either.
    let down = report
        .tensors
        .iter()
        .find(|t| t.name == "blk.0.ffn_down.weight")
        .unwrap();
    assert_eq!(down.dst_type, GgmlType::F16);
    assert!(down.fallback.is_some());
    std::fs::remove_dir_all(&dir).ok();
}

#[test]
fn non_finite_weights_are_refused() {
    let mut src = small();
    let i = src
        .tensors
        .iter()
        .position(|t| t.name == "blk.0.attn_q.weight")
        .unwrap();
    // BF16 +inf.
    src.data[i][2..4].copy_from_slice(&0x7f80u16.to_le_bytes());
    let dir = tempdir("nan");
    let out = dir.join("m.gguf");
    let e = quantize(&src, &out, &opts(FileType::Q4_0), &mut |_| {}).unwrap_err();
    assert!(
        matches!(e, QuantizeError::NonFinite { ref tensor } if tensor == "blk.0.attn_q.weight"),
        "{e}"
    );
    assert!(entries(&dir).is_empty());
    std::fs::remove_dir_all(&dir).ok();
}

#[test]
fn missing_architecture_is_a_metadata_error() {
    let mut src = small();
    src.metadata.retain(|(k, _)| k != "general.architecture");
    let dir = tempdir("meta");
    let e = quantize(
        &src,
        &dir.join("m.gguf"),
        &opts(FileType::Q4_0),
        &mut |_| {},
    )
    .unwrap_err();
    assert!(matches!(e, QuantizeError::Metadata(_)), "{e}");
    assert!(entries(&dir).is_empty());
    std::fs::remove_dir_all(&dir).ok();
}
