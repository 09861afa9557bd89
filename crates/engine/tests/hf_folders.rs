//! Hugging Face folders load as engine models: the tokenizer converted from
//! tokenizer.json gives transformers' ids, and the special tokens and chat
//! template come through (testdata/hf, tools/fixtures/gen_hf.py).

use hearth_engine::Model;
use serde_json::Value;
use std::path::PathBuf;

const FOLDERS: &[&str] = &["llama", "qwen2", "qwen3", "phi3", "gemma2", "gemma3"];

fn dir(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../testdata/hf").join(name)
}

#[test]
fn folder_tokenizers_match_transformers() {
    for name in FOLDERS {
        let d = dir(name);
        let model = Model::load(&d).unwrap_or_else(|e| panic!("{name}: {e}"));
        let exp: Value = serde_json::from_str(&std::fs::read_to_string(d.join("expected.json")).unwrap()).unwrap();
        let tok = &model.tokenizer;
        assert_eq!(tok.bos().map(|b| b as u64), exp["bos_id"].as_u64(), "{name} bos");
        assert_eq!(tok.eos().map(|b| b as u64), exp["eos_id"].as_u64(), "{name} eos");
        // tokenizer.json's post-processor adds nothing, so neither do we.
        assert!(!tok.add_bos(), "{name}");
        for case in exp["tokenizer"].as_array().unwrap() {
            let text = case["text"].as_str().unwrap();
            let want: Vec<u32> = case["ids"].as_array().unwrap().iter().map(|v| v.as_u64().unwrap() as u32).collect();
            // transformers always matches added-token text (`<s>`), as
            // llama.cpp does with parse_special.
            let got = model.tokenizer.encode(text, hearth_tokenizer::EncodeOptions { add_special: false, parse_special: true });
            assert_eq!(got, want, "{name}: {text:?}");
            // Text after a special token is a new segment to SentencePiece
            // ("<s>not" encodes as "<s>", "▁not"), so only plain text
            // round-trips exactly.
            if !text.contains("<s>") {
                let back = tok.decode(&got, hearth_tokenizer::DecodeOptions { remove_special: false, special: true });
                assert_eq!(back, text, "{name}: round trip");
            }
        }
        let template = model.chat_template().unwrap_or_else(|| panic!("{name}: no chat template"));
        assert!(template.contains("add_generation_prompt"), "{name}");
    }
}

#[test]
fn a_folder_and_its_pickle_twin_are_told_apart() {
    let tmp = std::env::temp_dir().join(format!("hearth-engine-pickle-{}", std::process::id()));
    std::fs::create_dir_all(&tmp).unwrap();
    let bin = tmp.join("model.bin");
    std::fs::write(&bin, b"\x80\x04junk").unwrap();
    let e = Model::load(&bin).err().expect("a pickle file is refused");
    assert!(e.to_string().contains("never opens them"), "{e}");
    std::fs::remove_dir_all(&tmp).ok();
}
