//! The repository's model fixtures (`testdata/models/*/recipe.json`,
//! hearth-testkit): the F32 model is rebuilt from its recipe and written as
//! a GGUF file, quantized by Hearth to Q8_0, Q4_0 and Q4_K_M, and every
//! output tensor's type and bytes are checked against the hashes of
//! llama-quantize's files recorded in the recipe; the metadata must come out
//! in llama-quantize's key order with its values.

use hearth_formats::{GgufFile, GgufWriter};
use hearth_quantize::{quantize, FileType, GgufSource, QuantizeOptions};
use hearth_testkit::Recipe;

fn check_fixture(fixture: &str) {
    let recipe = Recipe::load_fixture(fixture).unwrap();
    let vocab = recipe.open_vocab().unwrap();
    let dir = std::env::temp_dir().join(format!(
        "hearth-quantize-fixture-{fixture}-{}",
        std::process::id()
    ));
    std::fs::create_dir_all(&dir).unwrap();

    let mut w = GgufWriter::new();
    for (k, v) in recipe.metadata(&vocab).unwrap() {
        w.add_meta(k, v).unwrap();
    }
    let mut data = Vec::new();
    for t in recipe.f32_tensors() {
        let (name, dims, values) = t.unwrap();
        w.add_tensor(name, &dims, hearth_formats::GgmlType::F32)
            .unwrap();
        data.push(hearth_testkit::f32_le_bytes(&values));
    }
    let input = dir.join("f32.gguf");
    w.write_to_path_with_data(&input, &data).unwrap();
    drop(data);
    let src = GgufSource::open(&input).unwrap();

    for (variant, ft) in [
        ("Q8_0", FileType::Q8_0),
        ("Q4_0", FileType::Q4_0),
        ("Q4_K_M", FileType::Q4_K_M),
    ] {
        let want = recipe.variant(variant).unwrap();
        let out = dir.join(format!("{variant}.gguf"));
        let mut opts = QuantizeOptions::new(ft);
        opts.threads = 2;
        quantize(&src, &out, &opts, &mut |_| {}).unwrap();
        let file = GgufFile::open(&out).unwrap();
        let got: Vec<_> = file
            .tensors()
            .iter()
            .map(|t| (t.name.as_str(), t.ty))
            .collect();
        assert_eq!(
            got,
            want.tensor_types(),
            "{fixture} {variant}: tensor names, order and types"
        );
        for t in file.tensors() {
            want.check_tensor(&t.name, file.tensor_data(t))
                .unwrap_or_else(|e| panic!("{fixture} {variant}: {e}"));
        }
        let keys: Vec<&str> = file.metadata().iter().map(|(k, _)| k.as_str()).collect();
        let want_keys: Vec<&str> = want.key_order().iter().map(String::as_str).collect();
        assert_eq!(keys, want_keys, "{fixture} {variant}: metadata key order");
        let want_meta = recipe.variant_metadata(variant, &vocab).unwrap();
        assert_eq!(
            file.metadata(),
            &want_meta[..],
            "{fixture} {variant}: metadata values"
        );
        std::fs::remove_file(&out).unwrap();
    }
    std::fs::remove_dir_all(&dir).ok();
}

#[test]
fn llama_spm_fixture_matches_llama_quantize() {
    check_fixture("llama-spm");
}

#[test]
fn smollm_gpt2_fixture_matches_llama_quantize() {
    check_fixture("smollm-gpt2");
}

// The larger fixtures (100k+ vocabularies, 140-160 MB as F32): run with
// `cargo test -p hearth-quantize --release -- --ignored`.
#[test]
#[ignore]
fn llama3_fixture_matches_llama_quantize() {
    check_fixture("llama3");
}

#[test]
#[ignore]
fn qwen2_fixture_matches_llama_quantize() {
    check_fixture("qwen2");
}

#[test]
#[ignore]
fn qwen3_fixture_matches_llama_quantize() {
    check_fixture("qwen3");
}
