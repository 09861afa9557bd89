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

/// The encoder beside the decoder registry: a tiny random BERT in llama.cpp's
/// GGUF layout (what `convert_hf_to_gguf.py` writes for all-MiniLM-L6-v2)
/// loads, runs, is bidirectional (a later token changes an earlier token's
/// state), and a causal-flagged file is a typed error.
#[test]
fn bert_encoder_loads_runs_and_is_bidirectional() {
    use hearth_formats::GgmlType;
    use hearth_models::bert::{Bert, BertInput, BertOptions, BertScratch};
    const E: u64 = 32;
    const FF: u64 = 64;
    const V: u64 = 50;
    const POS: u64 = 16;
    let build = |causal: Option<bool>| -> Arc<GgufFile> {
        let mut w = GgufWriter::new();
        w.set_meta("general.architecture", MetaValue::String("bert".into())).unwrap();
        w.set_meta("bert.embedding_length", MetaValue::U32(E as u32)).unwrap();
        w.set_meta("bert.block_count", MetaValue::U32(2)).unwrap();
        w.set_meta("bert.attention.head_count", MetaValue::U32(4)).unwrap();
        w.set_meta("bert.feed_forward_length", MetaValue::U32(FF as u32)).unwrap();
        w.set_meta("bert.context_length", MetaValue::U32(POS as u32)).unwrap();
        w.set_meta("bert.attention.layer_norm_epsilon", MetaValue::F32(1e-12)).unwrap();
        if let Some(c) = causal {
            w.set_meta("bert.attention.causal", MetaValue::Bool(c)).unwrap();
        }
        let mut shapes: Vec<(String, Vec<u64>)> = vec![
            ("token_embd.weight".into(), vec![E, V]),
            ("position_embd.weight".into(), vec![E, POS]),
            ("token_types.weight".into(), vec![E, 2]),
            ("token_embd_norm.weight".into(), vec![E]),
            ("token_embd_norm.bias".into(), vec![E]),
        ];
        for i in 0..2 {
            for (n, d) in [
                ("attn_q.weight", vec![E, E]),
                ("attn_q.bias", vec![E]),
                ("attn_k.weight", vec![E, E]),
                ("attn_k.bias", vec![E]),
                ("attn_v.weight", vec![E, E]),
                ("attn_v.bias", vec![E]),
                ("attn_output.weight", vec![E, E]),
                ("attn_output.bias", vec![E]),
                ("attn_output_norm.weight", vec![E]),
                ("attn_output_norm.bias", vec![E]),
                ("ffn_up.weight", vec![E, FF]),
                ("ffn_up.bias", vec![FF]),
                ("ffn_down.weight", vec![FF, E]),
                ("ffn_down.bias", vec![E]),
                ("layer_output_norm.weight", vec![E]),
                ("layer_output_norm.bias", vec![E]),
            ] {
                shapes.push((format!("blk.{i}.{n}"), d));
            }
        }
        // A fixed xorshift stream: deterministic weights, no global RNG.
        let mut state = 0x9e37_79b9_7f4a_7c15u64;
        let mut data = Vec::new();
        for (name, dims) in &shapes {
            w.add_tensor(name, dims, GgmlType::F32).unwrap();
            let n: u64 = dims.iter().product();
            let norm_weight = name.ends_with("norm.weight");
            let mut bytes = Vec::with_capacity(n as usize * 4);
            for _ in 0..n {
                state ^= state << 13;
                state ^= state >> 7;
                state ^= state << 17;
                let u = (state >> 40) as f32 / (1u64 << 24) as f32 - 0.5;
                let v = if norm_weight { 1.0 + 0.1 * u } else { 0.4 * u };
                bytes.extend_from_slice(&v.to_le_bytes());
            }
            data.push(bytes);
        }
        let refs: Vec<&[u8]> = data.iter().map(Vec::as_slice).collect();
        Arc::new(GgufFile::from_bytes(w.write_to_vec(&refs).unwrap()).unwrap())
    };
    let bert = Bert::from_gguf(build(None), &BertOptions::default()).unwrap();
    assert_eq!(bert.n_embd(), E as usize);
    let pool = ThreadPool::new(1);
    let run = |ids: &[u32]| -> Vec<f32> {
        let mut out = Vec::new();
        bert.forward(&[BertInput::new(ids)], &pool, &mut BertScratch::default(), &mut out).unwrap();
        out
    };
    let a = run(&[1, 7, 9, 3]);
    let b = run(&[1, 7, 9, 4]);
    assert_eq!(a.len(), 4 * E as usize, "one state per token");
    assert!(a.iter().all(|v| v.is_finite()));
    // The first token's state depends on the last token: no causal mask.
    let first_diff = a[..E as usize].iter().zip(&b[..E as usize]).fold(0f32, |m, (x, y)| m.max((x - y).abs()));
    assert!(first_diff > 1e-4, "token 0 ignored a later token ({first_diff})");
    assert!(Bert::from_gguf(build(Some(true)), &BertOptions::default()).is_err(), "a causal BERT must be refused");
}
