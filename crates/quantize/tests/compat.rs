//! Hearth's quantizer against llama.cpp's `llama-quantize`, without
//! llama.cpp: `tests/data/llama_quantize_expected.json` holds what
//! llama-quantize wrote for the synthetic models of `recipes.json`
//! (tools/quantize/make_expected.py), per target type and tensor: its type,
//! the SHA-256 of its bytes and its reconstruction RMSE. The tests rebuild
//! the same inputs (`common/synth.rs`), quantize them and compare.

mod common;

use common::synth::{recipes, Recipe};
use hearth_formats::{GgmlType, GgufFile};
use hearth_quantize::{quantize, FileType, PlanOptions, QuantizeOptions};
use serde_json::Value;
use sha2::{Digest, Sha256};
use std::collections::BTreeMap;

fn expected() -> Value {
    let path = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/tests/data/llama_quantize_expected.json"
    );
    serde_json::from_str(&std::fs::read_to_string(path).expect("expected json")).expect("json")
}

fn sha256(b: &[u8]) -> String {
    Sha256::digest(b)
        .iter()
        .map(|x| format!("{x:02x}"))
        .collect()
}

fn ty_name(t: GgmlType) -> String {
    t.to_string()
}

/// Every (model, type): the tensor types Hearth plans are llama-quantize's,
/// including the _M mixes' layer-position bumps on 32 and 80 layers and
/// the shape fallbacks.
#[test]
fn per_tensor_types_match_llama_quantize_for_every_type() {
    let exp = expected();
    let mut checked = 0;
    for r in recipes() {
        let src = r.source_plan_only();
        let model = &exp["models"][&r.name];
        for ft in FileType::ALL {
            let want = &model["types"][ft.name()];
            assert!(want.is_object(), "{} {ft}: not in the expectations", r.name);
            let plan = hearth_quantize::plan_for(&src, ft, &PlanOptions::default()).unwrap();
            let got: BTreeMap<String, String> = plan
                .tensors
                .iter()
                .map(|t| (t.name.clone(), ty_name(t.dst_type)))
                .collect();
            let want_types: BTreeMap<String, String> = want["tensors"]
                .as_object()
                .unwrap()
                .iter()
                .map(|(k, v)| (k.clone(), v["type"].as_str().unwrap().to_string()))
                .collect();
            assert_eq!(got, want_types, "{} {ft}", r.name);
            // The same tensors are reported as falling back.
            let mut fb: Vec<String> = plan.fallbacks().map(|f| f.tensor.clone()).collect();
            let mut want_fb: Vec<String> = want["fallbacks"]
                .as_array()
                .unwrap()
                .iter()
                .map(|v| v.as_str().unwrap().to_string())
                .collect();
            fb.sort();
            want_fb.sort();
            assert_eq!(fb, want_fb, "{} {ft}: fallbacks", r.name);
            checked += 1;
        }
    }
    assert_eq!(checked, 5 * FileType::ALL.len());
}

/// Quantizes one synthetic model to every type and checks each tensor's
/// bytes against llama-quantize's, and the RMSE within 1% of its RMSE.
fn bytes_and_errors_match(r: &Recipe) {
    let exp = expected();
    let model = &exp["models"][&r.name];
    let src = r.source();
    // The generator agrees with synth.py (else every later check is moot).
    for (t, data) in src.tensors.iter().zip(&src.data) {
        assert_eq!(
            sha256(data),
            model["input_tensors"][&t.name].as_str().unwrap(),
            "{}: input {}",
            r.name,
            t.name
        );
    }
    let dir = tempdir();
    for ft in FileType::ALL {
        let want = &model["types"][ft.name()]["tensors"];
        let out = dir.join(format!("{}-{ft}.gguf", r.name));
        let mut opts = QuantizeOptions::new(ft);
        opts.threads = 2;
        let report = quantize(&src, &out, &opts, &mut |_| {}).unwrap();
        let file = GgufFile::open(&out).unwrap();
        assert_eq!(file.tensors().len(), want.as_object().unwrap().len());
        let mut byte_identical = 0;
        for t in file.tensors() {
            let w = &want[&t.name];
            assert_eq!(
                ty_name(t.ty),
                w["type"].as_str().unwrap(),
                "{} {ft} {}",
                r.name,
                t.name
            );
            if sha256(file.tensor_data(t)) == w["sha256"].as_str().unwrap() {
                byte_identical += 1;
            } else if matches!(ft, FileType::Q8_0 | FileType::Q4_0 | FileType::Q4_1) {
                panic!(
                    "{} {ft} {}: bytes differ from llama-quantize's",
                    r.name, t.name
                );
            }
            let rep = report.tensors.iter().find(|x| x.name == t.name).unwrap();
            let want_rmse = w["rmse"].as_f64().unwrap();
            assert!(
                (rep.rmse - want_rmse).abs() <= 0.01 * want_rmse + 1e-9,
                "{} {ft} {}: rmse {} vs llama-quantize {}",
                r.name,
                t.name,
                rep.rmse,
                want_rmse
            );
        }
        // Hearth's quantizers are ports of the reference ones, so in practice
        // every type is byte-identical; only Q8_0/Q4_0/Q4_1 are required to be.
        assert_eq!(
            byte_identical,
            file.tensors().len(),
            "{} {ft}: tensors differ from llama-quantize's",
            r.name
        );
        // Metadata: the file type is recorded.
        let ftv = file
            .metadata()
            .iter()
            .find(|(k, _)| k == "general.file_type")
            .unwrap()
            .1
            .as_integer()
            .unwrap();
        assert_eq!(ftv, i128::from(ft.llama_ftype()));
        std::fs::remove_file(&out).unwrap();
    }
    std::fs::remove_dir_all(&dir).ok();
}

fn tempdir() -> std::path::PathBuf {
    let d = std::env::temp_dir().join(format!(
        "hearth-quantize-compat-{}-{:?}",
        std::process::id(),
        std::thread::current().id()
    ));
    std::fs::create_dir_all(&d).unwrap();
    d
}

fn recipe(name: &str) -> Recipe {
    recipes().into_iter().find(|r| r.name == name).unwrap()
}

#[test]
fn llama_f32_bytes_match_llama_quantize() {
    bytes_and_errors_match(&recipe("llama-f32"));
}

#[test]
fn qwen2_f16_odd_shapes_bytes_match_llama_quantize() {
    bytes_and_errors_match(&recipe("qwen2-f16-odd"));
}

#[test]
fn llama_bf16_gqa4_bytes_match_llama_quantize() {
    bytes_and_errors_match(&recipe("llama-bf16-gqa4"));
}
