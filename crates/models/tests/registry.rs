//! Every registry entry loads a model of its architecture and runs it; the
//! architecture-specific hyper-parameters are validated with typed errors.
//! The models are the Hugging Face fixtures of testdata/hf converted by
//! `hf::load_folder` (one per architecture).

use hearth_formats::{GgufFile, GgufWriter, MetaArray, MetaValue};
use hearth_models::{arch, hf, KvCache, KvType, Logits, ModelError, Scratch, SeqInput, ThreadPool};
use std::path::PathBuf;
use std::sync::Arc;

fn fixture(arch: &str) -> GgufFile {
    let d = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../testdata/hf").join(arch);
    hf::load_folder(&d).unwrap_or_else(|e| panic!("{arch}: {e}"))
}

#[test]
fn every_registry_entry_loads_and_runs() {
    let names: Vec<&str> = arch::REGISTRY.iter().map(|e| e.name).collect();
    assert_eq!(names, ["llama", "qwen2", "qwen3", "phi3", "gemma2", "gemma3"]);
    let pool = ThreadPool::new(1);
    for e in arch::REGISTRY {
        let file = Arc::new(fixture(e.name));
        assert_eq!(file.get_str("general.architecture").unwrap(), Some(e.name));
        let model = (e.load)(Arc::clone(&file)).unwrap_or_else(|err| panic!("{}: {err}", e.name));
        assert_eq!(model.cfg.arch, e.name);
        let mut cache = KvCache::new(&model.cfg, 8, KvType::F16, KvType::F16);
        let mut out = Vec::new();
        model
            .forward(&mut [SeqInput { tokens: &[1, 5, 9], cache: &mut cache, logits: Logits::Last, out: &mut out }], &pool, &mut Scratch::default())
            .unwrap();
        assert_eq!(out.len(), model.cfg.n_vocab);
        assert!(out.iter().all(|x| x.is_finite()), "{}", e.name);
    }
}

#[test]
fn architecture_switches_come_from_the_file() {
    let g2 = hearth_models::load_gguf(Arc::new(fixture("gemma2"))).unwrap();
    let windows: Vec<Option<usize>> = g2.cfg.layers.iter().map(|l| l.sliding_window).collect();
    assert_eq!(windows, [Some(6), None, Some(6), None]);
    assert_eq!(g2.cfg.attn_softcap, Some(8.0));
    assert_eq!(g2.cfg.final_softcap, Some(15.0));
    assert!((g2.cfg.attn_scale - 1.0 / 24f32.sqrt()).abs() < 1e-7);
    assert_eq!(g2.cfg.embed_scale, Some(8.0));
    let g3 = hearth_models::load_gguf(Arc::new(fixture("gemma3"))).unwrap();
    let bases: Vec<f32> = g3.cfg.layers.iter().map(|l| l.rope.freq_base).collect();
    assert_eq!(bases, [1e4, 1e4, 1e4, 1e4, 1e4, 1e6]);
    assert_eq!(g3.cfg.attn_softcap, None);
    assert!(g3.w.layers.iter().all(|l| l.q_norm.is_some() && l.post_ffn_norm.is_some()));
    let phi = hearth_models::load_gguf(Arc::new(fixture("phi3"))).unwrap();
    assert_eq!(phi.cfg.layers[0].rope.n_rot, 12);
    assert!(phi.w.layers[0].rope_factors.is_some() && phi.w.layers[0].rope_factors_long.is_some());
    assert!((phi.cfg.layers[0].rope.attn_factor - (1.0 + 4f32.ln() / 64f32.ln()).sqrt()).abs() < 1e-6);
}

/// The fixture with one metadata key replaced.
fn with_meta(arch: &str, key: &str, value: MetaValue) -> Arc<GgufFile> {
    let f = fixture(arch);
    let mut w = GgufWriter::from_gguf(&f).unwrap();
    w.set_meta(key, value).unwrap();
    let data: Vec<&[u8]> = f.tensors().iter().map(|t| f.tensor_data(t)).collect();
    Arc::new(GgufFile::from_bytes(w.write_to_vec(&data).unwrap()).unwrap())
}

#[test]
fn bad_architecture_hparams_are_typed_errors() {
    let cases: Vec<(&str, &str, MetaValue)> = vec![
        ("gemma3", "gemma3.attention.sliding_window_pattern", MetaValue::Array(MetaArray::Bool(vec![true; 3]))),
        ("gemma3", "gemma3.rope.freq_base_swa", MetaValue::F32(-1.0)),
        ("gemma2", "gemma2.attn_logit_softcapping", MetaValue::F32(f32::NAN)),
        ("gemma2", "gemma2.attention.scale", MetaValue::F32(0.0)),
        ("phi3", "phi3.rope.scaling.attn_factor", MetaValue::F32(-2.0)),
        ("phi3", "phi3.rope.dimension_count", MetaValue::U32(13)),
        ("gemma3", "gemma3.rope.scaling.type", MetaValue::String("su-per".into())),
    ];
    for (arch, key, value) in cases {
        let err = hearth_models::load_gguf(with_meta(arch, key, value)).err().unwrap_or_else(|| panic!("{key} accepted"));
        assert!(matches!(err, ModelError::InvalidHparam { .. }), "{key}: {err}");
    }
    let err = hearth_models::load_gguf(with_meta("phi3", "general.architecture", MetaValue::String("phi2".into()))).err().unwrap();
    assert!(matches!(&err, ModelError::UnknownArchitecture { supported, .. } if supported.contains("gemma3")), "{err}");
}
