//! GGUF LoRA files (hearth_engine::lora::gguf): a PEFT adapter written as a
//! GGUF LoRA and read back merges into the same weights as the PEFT adapter
//! itself, the serving path (`Engine::with_adapter`) takes either, and every
//! malformed file is refused with its own error kind.
//!
//! The base is the bundled demo model (assets/demo, Llama architecture, so
//! the Q/K row permutation between the two formats is exercised).

use hearth_engine::lora::{gguf, AdapterErrorKind as K, AdapterFormat, LoraAdapter, MODULES};
use hearth_engine::{Engine, EngineConfig, Model};
use hearth_formats::{GgmlType, GgufFile, GgufWriter, MetaValue};
use hearth_models::decoder::{GateUp, Qkv};
use hearth_models::weights::Weight;
use hearth_models::Decoder;
use std::path::{Path, PathBuf};

fn demo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../assets/demo/foldoc-demo.gguf")
}

fn tmp(tag: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("hearth-lora-gguf-{tag}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).unwrap();
    d
}

/// splitmix64 → uniform in [-1, 1).
struct Rng(u64);
impl Rng {
    fn next(&mut self) -> f32 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^= z >> 31;
        (z >> 40) as f32 / (1u64 << 23) as f32 - 1.0
    }
}

/// `(rows, cols)` of a module's matrix in layer `l` (separate Q/K/V and gate/up).
fn shape(dec: &Decoder, l: usize, module: &str) -> (usize, usize) {
    let lw = &dec.w.layers[l];
    let w: &Weight = match (module, &lw.qkv, &lw.gate_up) {
        ("q_proj", Qkv::Separate { q, .. }, _) => q,
        ("k_proj", Qkv::Separate { k, .. }, _) => k,
        ("v_proj", Qkv::Separate { v, .. }, _) => v,
        ("o_proj", _, _) => &lw.wo,
        ("gate_proj", _, GateUp::Separate { gate, .. }) => gate,
        ("up_proj", _, GateUp::Separate { up, .. }) => up,
        ("down_proj", _, _) => &lw.down,
        _ => panic!("{module}"),
    };
    (w.rows, w.cols)
}

/// Writes a PEFT adapter (F32 safetensors) with random factors of rank `r`
/// on every module of layers `layers` of `dec`.
fn write_peft(dir: &Path, dec: &Decoder, layers: &[usize], r: usize, alpha: f32, rslora: bool, seed: u64) {
    std::fs::create_dir_all(dir).unwrap();
    let mut rng = Rng(seed);
    let mut header = serde_json::Map::new();
    let mut data: Vec<u8> = Vec::new();
    for &l in layers {
        for m in MODULES {
            let (rows, cols) = shape(dec, l, m);
            let part = if ["gate_proj", "up_proj", "down_proj"].contains(&m) { "mlp" } else { "self_attn" };
            for (ab, shape) in [("A", [r, cols]), ("B", [rows, r])] {
                let name = format!("base_model.model.model.layers.{l}.{part}.{m}.lora_{ab}.weight");
                let start = data.len();
                for _ in 0..shape[0] * shape[1] {
                    data.extend_from_slice(&(0.05 * rng.next()).to_le_bytes());
                }
                header.insert(name, serde_json::json!({"dtype": "F32", "shape": shape, "data_offsets": [start, data.len()]}));
            }
        }
    }
    let h = serde_json::to_vec(&serde_json::Value::Object(header)).unwrap();
    let mut file = (h.len() as u64).to_le_bytes().to_vec();
    file.extend_from_slice(&h);
    file.extend_from_slice(&data);
    std::fs::write(dir.join("adapter_model.safetensors"), file).unwrap();
    let cfg = serde_json::json!({
        "peft_type": "LORA", "r": r, "lora_alpha": alpha, "use_rslora": rslora,
        "target_modules": MODULES, "bias": "none", "base_model_name_or_path": "foldoc-demo",
    });
    std::fs::write(dir.join("adapter_config.json"), cfg.to_string()).unwrap();
}

/// Every adapted matrix's bytes (the rest is shared with the base).
fn matrices(dec: &Decoder) -> Vec<(GgmlType, Vec<u8>)> {
    let mut v = Vec::new();
    for l in &dec.w.layers {
        if let Qkv::Separate { q, k, v: vv } = &l.qkv {
            for w in [q, k, vv] {
                v.push((w.ty, w.bytes().to_vec()));
            }
        }
        if let GateUp::Separate { gate, up } = &l.gate_up {
            for w in [gate, up] {
                v.push((w.ty, w.bytes().to_vec()));
            }
        }
        for w in [&l.wo, &l.down] {
            v.push((w.ty, w.bytes().to_vec()));
        }
    }
    v
}

fn logits(engine: &Engine, text: &str) -> Vec<f32> {
    let toks = engine.tokenize(text, true, false);
    let mut s = engine.new_session(64);
    let mut out = Vec::new();
    engine.eval(&mut s, &toks, &mut out).unwrap();
    out
}

fn max_abs_diff(a: &[f32], b: &[f32]) -> f32 {
    assert_eq!(a.len(), b.len());
    a.iter().zip(b).fold(0f32, |m, (x, y)| m.max((x - y).abs()))
}

fn f16_round(x: f32) -> f32 {
    let mut b = [0u8; 2];
    hearth_kernels::quantize_row_ref(GgmlType::F16, &[x], &mut b);
    let mut y = [0f32];
    hearth_kernels::dequantize_row(GgmlType::F16, &b, &mut y);
    y[0]
}

#[test]
fn peft_written_as_gguf_lora_merges_to_the_same_weights_and_serves_the_same() {
    let dir = tmp("roundtrip");
    let model = std::sync::Arc::new(Model::load(&demo()).unwrap());
    let dec = &model.decoder;
    assert_eq!(dec.cfg.arch, "llama");
    let n_layer = dec.cfg.layers.len();
    let layers = [0, n_layer - 1];
    let peft_dir = dir.join("peft");
    write_peft(&peft_dir, dec, &layers, 4, 8.0, false, 7);
    let peft = LoraAdapter::open(&peft_dir).unwrap();
    assert_eq!(peft.format, AdapterFormat::Peft);

    // F32 export; the file name has no .gguf extension: detection is by content.
    let out = dir.join("adapter.bin");
    gguf::write(&peft, dec, GgmlType::F32, &out).unwrap();
    let file = GgufFile::open(&out).unwrap();
    assert_eq!(file.get_str("general.type").unwrap(), Some("adapter"));
    assert_eq!(file.get_str("adapter.type").unwrap(), Some("lora"));
    assert_eq!(file.get_str("general.architecture").unwrap(), Some("llama"));
    assert_eq!(file.get_f32("adapter.lora.alpha").unwrap(), Some(8.0));
    // llama.cpp's shapes: lora_a [in, r], lora_b [r, out] (ggml order).
    let (rows, cols) = shape(dec, 0, "k_proj");
    assert_eq!(file.tensor("blk.0.attn_k.weight.lora_a").unwrap().dims, vec![cols as u64, 4]);
    assert_eq!(file.tensor("blk.0.attn_k.weight.lora_b").unwrap().dims, vec![4, rows as u64]);
    assert_eq!(file.tensors().len(), 2 * 7 * layers.len());

    let back = LoraAdapter::open(&out).unwrap();
    assert_eq!(back.format, AdapterFormat::Gguf);
    assert_eq!(back.arch.as_deref(), Some("llama"));
    assert_eq!(back.scale(), peft.scale());
    assert_eq!(back.pairs.len(), peft.pairs.len());
    for (key, p) in &peft.pairs {
        let g = &back.pairs[key];
        assert_eq!(g.a, p.a, "{key:?} lora_a is stored as is");
        if key.1 == "q_proj" || key.1 == "k_proj" {
            assert_ne!(g.b, p.b, "{key:?} lora_b is in GGUF row order");
        } else {
            assert_eq!(g.b, p.b, "{key:?}");
        }
    }

    // Same merged matrices, bit for bit.
    let m_peft = peft.merge_into(dec).unwrap();
    let m_gguf = back.merge_into(dec).unwrap();
    assert!(matrices(&m_peft) == matrices(&m_gguf), "merged weights differ");
    assert!(matrices(&m_peft) != matrices(dec), "the adapter must change the weights");

    // The serving path: `--lora NAME=PATH` becomes Engine::with_adapter.
    let cfg = EngineConfig { threads: 1, ..EngineConfig::default() };
    let base = Engine::new(std::sync::Arc::clone(&model), cfg);
    let e_peft = base.with_adapter(&peft_dir).unwrap();
    let e_gguf = base.with_adapter(&out).unwrap();
    let text = "Define byte.";
    let (lb, lp, lg) = (logits(&base, text), logits(&e_peft, text), logits(&e_gguf, text));
    assert_eq!(lp, lg, "PEFT and GGUF LoRA serve the same logits");
    let moved = max_abs_diff(&lb, &lp);
    assert!(moved > 1e-2, "the adapter moved the logits by only {moved}");

    // F16 factors: exactly the F16 rounding of the PEFT values, and logits
    // close to the F32 adapter's.
    let out16 = dir.join("adapter-f16.gguf");
    gguf::write(&peft, dec, GgmlType::F16, &out16).unwrap();
    let back16 = LoraAdapter::open(&out16).unwrap();
    for (key, g) in &back.pairs {
        let h = &back16.pairs[key];
        assert!(g.a.iter().map(|&x| f16_round(x)).eq(h.a.iter().copied()), "{key:?} a");
        assert!(g.b.iter().map(|&x| f16_round(x)).eq(h.b.iter().copied()), "{key:?} b");
    }
    let l16 = logits(&base.with_adapter(&out16).unwrap(), text);
    let d16 = max_abs_diff(&lg, &l16);
    eprintln!("adapter moved logits by {moved}; F16 factors change them by {d16}");
    assert!(d16 < 0.05 * moved, "F16 factors changed the logits by {d16} (adapter effect {moved})");

    // Q8_0: lora_a rows (n_embd or n_ff values) are Q8_0; lora_b rows of 4
    // values are not whole blocks and fall back to F16, as the converter does.
    let out8 = dir.join("adapter-q8.gguf");
    gguf::write(&peft, dec, GgmlType::Q8_0, &out8).unwrap();
    let f8 = GgufFile::open(&out8).unwrap();
    assert_eq!(f8.tensor("blk.0.attn_q.weight.lora_a").unwrap().ty, GgmlType::Q8_0);
    assert_eq!(f8.tensor("blk.0.attn_q.weight.lora_b").unwrap().ty, GgmlType::F16);
    let back8 = LoraAdapter::open(&out8).unwrap();
    for (key, g) in &back.pairs {
        let h = &back8.pairs[key];
        // Q8_0 error is at most half a step of amax/127 per 32-block.
        assert!(max_abs_diff(&g.a, &h.a) <= 0.05 / 127.0, "{key:?}");
    }

    // A GGUF adapter re-exported is the same file.
    let again = dir.join("adapter.bin.2");
    gguf::write(&back, dec, GgmlType::F32, &again).unwrap();
    let (f1, f2) = (GgufFile::open(&out).unwrap(), GgufFile::open(&again).unwrap());
    for t in f1.tensors() {
        assert_eq!(f1.tensor_data(t), f2.tensor_bytes(&t.name).unwrap(), "{}", t.name);
    }
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn rslora_alpha_is_rescaled_for_llama_cpp() {
    let dir = tmp("rslora");
    let model = Model::load(&demo()).unwrap();
    let peft_dir = dir.join("peft");
    write_peft(&peft_dir, &model.decoder, &[0], 16, 8.0, true, 3);
    let peft = LoraAdapter::open(&peft_dir).unwrap();
    assert_eq!(peft.scale(), 2.0); // 8 / sqrt(16)
    let out = dir.join("a.gguf");
    gguf::write(&peft, &model.decoder, GgmlType::F32, &out).unwrap();
    let back = LoraAdapter::open(&out).unwrap();
    assert_eq!(back.alpha, 32.0);
    assert_eq!(back.scale(), 2.0); // llama.cpp: alpha / r
    std::fs::remove_dir_all(&dir).unwrap();
}

// ---- malformed files ----

type Tensor = (String, Vec<u64>, Vec<f32>);

fn factors(l: usize, suffix: &str, cols: usize, rows: usize, ra: usize, rb: usize) -> Vec<Tensor> {
    vec![
        (format!("blk.{l}.{suffix}.weight.lora_a"), vec![cols as u64, ra as u64], vec![0.01; cols * ra]),
        (format!("blk.{l}.{suffix}.weight.lora_b"), vec![rb as u64, rows as u64], vec![0.02; rb * rows]),
    ]
}

fn good_meta() -> Vec<(&'static str, MetaValue)> {
    vec![
        ("general.architecture", "llama".into()),
        ("general.type", "adapter".into()),
        ("adapter.type", "lora".into()),
        ("adapter.lora.alpha", 16.0f32.into()),
    ]
}

fn build(meta: &[(&'static str, MetaValue)], tensors: &[Tensor]) -> GgufFile {
    let mut w = GgufWriter::new();
    for (k, v) in meta {
        w.add_meta(*k, v.clone()).unwrap();
    }
    let mut data = Vec::new();
    for (name, dims, vals) in tensors {
        w.add_tensor(name.clone(), dims, GgmlType::F32).unwrap();
        data.push(vals.iter().flat_map(|v| v.to_le_bytes()).collect::<Vec<u8>>());
    }
    GgufFile::from_bytes(w.write_to_vec(&data).unwrap()).unwrap()
}

fn open_kind(meta: &[(&'static str, MetaValue)], tensors: &[Tensor]) -> Result<LoraAdapter, K> {
    gguf::from_file(&build(meta, tensors), Path::new("test.gguf")).map_err(|e| {
        eprintln!("{e}");
        e.kind
    })
}

#[test]
fn malformed_gguf_loras_are_typed_errors() {
    let model = Model::load(&demo()).unwrap();
    let dec = &model.decoder;
    let (rows, cols) = shape(dec, 0, "q_proj");
    let ok = factors(0, "attn_q", cols, rows, 4, 4);
    let a = open_kind(&good_meta(), &ok).unwrap();
    assert_eq!(a.scale(), 4.0);
    a.merge_into(dec).unwrap();

    let with = |key: &'static str, v: MetaValue| {
        let mut m = good_meta();
        m.retain(|(k, _)| *k != key);
        m.push((key, v));
        m
    };
    let without = |key: &str| {
        let mut m = good_meta();
        m.retain(|(k, _)| *k != key);
        m
    };
    assert_eq!(open_kind(&with("general.type", "model".into()), &ok).unwrap_err(), K::NotLora);
    assert_eq!(open_kind(&without("general.type"), &ok).unwrap_err(), K::NotLora);
    assert_eq!(open_kind(&with("adapter.type", "control_vector".into()), &ok).unwrap_err(), K::NotLora);
    assert_eq!(open_kind(&without("adapter.lora.alpha"), &ok).unwrap_err(), K::MissingKey);
    assert_eq!(open_kind(&with("adapter.lora.alpha", 16u32.into()), &ok).unwrap_err(), K::MissingKey);
    assert_eq!(open_kind(&without("general.architecture"), &ok).unwrap_err(), K::MissingKey);
    let mut alora = good_meta();
    alora.push(("adapter.alora_invocation_tokens", vec![1u32, 2].into()));
    assert_eq!(open_kind(&alora, &ok).unwrap_err(), K::Unsupported);

    // Another architecture reads, but does not merge into a llama model.
    let qwen = open_kind(&with("general.architecture", "qwen2".into()), &ok).unwrap();
    assert_eq!(qwen.merge_into(dec).err().expect("arch mismatch").kind, K::ArchMismatch);
    assert_eq!(gguf::to_writer(&qwen, dec, GgmlType::F32).unwrap_err().kind, K::ArchMismatch);

    let plus = |extra: Tensor| {
        let mut t = ok.clone();
        t.push(extra);
        t
    };
    assert_eq!(open_kind(&good_meta(), &plus(("blk.0.attn_z.weight.lora_a".into(), vec![cols as u64, 4], vec![0.0; cols * 4]))).unwrap_err(), K::UnknownTensor);
    assert_eq!(open_kind(&good_meta(), &plus(("blk.0.attn_q.weight".into(), vec![cols as u64, 4], vec![0.0; cols * 4]))).unwrap_err(), K::UnknownTensor);
    assert_eq!(open_kind(&good_meta(), &plus(("blk.0.attn_norm.weight".into(), vec![cols as u64], vec![1.0; cols]))).unwrap_err(), K::Unsupported);
    assert_eq!(open_kind(&good_meta(), &factors(0, "attn_q", cols, rows, 4, 4)[..1]).unwrap_err(), K::MissingPair);
    assert_eq!(open_kind(&good_meta(), &factors(0, "attn_q", cols, rows, 4, 4)[1..]).unwrap_err(), K::MissingPair);
    assert_eq!(open_kind(&good_meta(), &factors(0, "attn_q", cols, rows, 4, 3)).unwrap_err(), K::RankMismatch);
    assert_eq!(open_kind(&good_meta(), &[]).unwrap_err(), K::Format);

    // Shapes are checked against the base at merge time.
    let shape_err = |t: &[Tensor]| open_kind(&good_meta(), t).unwrap().merge_into(dec).err().expect("shape mismatch").kind;
    assert_eq!(shape_err(&factors(0, "attn_q", cols + 1, rows, 4, 4)), K::ShapeMismatch);
    assert_eq!(shape_err(&factors(0, "attn_q", cols, rows + 2, 4, 4)), K::ShapeMismatch);
    assert_eq!(shape_err(&factors(dec.cfg.layers.len(), "attn_q", cols, rows, 4, 4)), K::ShapeMismatch);
    // A fused Q/K/V tensor on a model with separate ones.
    assert_eq!(shape_err(&factors(0, "attn_qkv", cols, 3 * rows, 4, 4)), K::ShapeMismatch);

    // Files that are not GGUF LoRAs at all.
    let dir = tmp("bad");
    let junk = dir.join("junk.gguf");
    std::fs::write(&junk, b"not a gguf").unwrap();
    assert_eq!(LoraAdapter::open(&junk).unwrap_err().kind, K::Format);
    let trunc = dir.join("trunc.gguf");
    let bytes = std::fs::read(demo()).unwrap();
    std::fs::write(&trunc, &bytes[..100]).unwrap();
    assert_eq!(LoraAdapter::open(&trunc).unwrap_err().kind, K::Format);
    // A base model is a GGUF, but not an adapter.
    assert_eq!(LoraAdapter::open(&demo()).unwrap_err().kind, K::NotLora);
    assert_eq!(LoraAdapter::open(&dir.join("missing")).unwrap_err().kind, K::Io);
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn alpha_zero_means_scale_one_as_in_llama_cpp() {
    let model = Model::load(&demo()).unwrap();
    let (rows, cols) = shape(&model.decoder, 0, "v_proj");
    let mut meta = good_meta();
    meta.retain(|(k, _)| *k != "adapter.lora.alpha");
    meta.push(("adapter.lora.alpha", 0f32.into()));
    let a = open_kind(&meta, &factors(0, "attn_v", cols, rows, 8, 8)).unwrap();
    assert_eq!(a.scale(), 1.0);
    assert_eq!(a.scale_for_rank(2), 1.0);
}

/// Phi-3 stores Q/K/V as one `attn_qkv` and gate/up as one `ffn_up`; a GGUF
/// LoRA on those names adapts the whole fused tensor.
#[test]
fn gguf_lora_on_fused_phi3_tensors_adapts_the_whole_tensor() {
    let model = Model::load(&PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../testdata/hf/phi3")).unwrap();
    let dec = &model.decoder;
    assert_eq!(dec.cfg.arch, "phi3");
    let lw = &dec.w.layers[0];
    let (Qkv::Fused(qkv), GateUp::Fused(gu)) = (&lw.qkv, &lw.gate_up) else { panic!("phi3 is fused") };
    let mut rng = Rng(11);
    let mut pair = |suffix: &str, rows: usize, cols: usize| -> Vec<Tensor> {
        let a: Vec<f32> = (0..2 * cols).map(|_| rng.next()).collect();
        let b: Vec<f32> = (0..rows * 2).map(|_| rng.next()).collect();
        vec![(format!("blk.0.{suffix}.weight.lora_a"), vec![cols as u64, 2], a), (format!("blk.0.{suffix}.weight.lora_b"), vec![2, rows as u64], b)]
    };
    let mut tensors = pair("attn_qkv", qkv.rows, qkv.cols);
    tensors.extend(pair("ffn_up", gu.rows, gu.cols));
    let mut meta = good_meta();
    meta[0].1 = "phi3".into();
    let adapter = open_kind(&meta, &tensors).unwrap();
    let merged = adapter.merge_into(dec).unwrap();
    let ml = &merged.w.layers[0];
    let (Qkv::Fused(mqkv), GateUp::Fused(mgu)) = (&ml.qkv, &ml.gate_up) else { panic!() };
    let scale = adapter.scale();
    for (t, (old, new)) in [(0, (qkv, mqkv)), (2, (gu, mgu))] {
        let (a, b) = (&tensors[t].2, &tensors[t + 1].2);
        let (mut r0, mut r1) = (vec![0f32; old.cols], vec![0f32; old.cols]);
        // First and last row: the delta covers the whole fused tensor.
        for i in [0, old.rows - 1] {
            old.dequantize_row(i, &mut r0);
            new.dequantize_row(i, &mut r1);
            for j in 0..old.cols {
                let want = r0[j] + scale * (b[2 * i] * a[j] + b[2 * i + 1] * a[old.cols + j]);
                assert!((r1[j] - want).abs() <= 2e-3 * want.abs().max(1.0), "{} row {i} col {j}: {} vs {want}", tensors[t].0, r1[j]);
            }
        }
    }
    // Separate names do not fit a fused model.
    let q = open_kind(&meta, &factors(0, "attn_q", qkv.cols, 8, 2, 2)).unwrap();
    assert_eq!(q.merge_into(dec).err().expect("fused").kind, K::ShapeMismatch);
}

/// llama.cpp itself (llama-cpp-python 0.3.36, runtime `--lora`) on the demo
/// model with `testdata/lora/demo-adapter.gguf`, an adapter `hearth distill
/// train` made and `hearth distill export-lora` wrote
/// (`testdata/lora/gen_expected.py`). Hearth merges the adapter into F16
/// copies of the matrices where llama.cpp adds `scale · B (A x)` in f32 at
/// run time, so the two differ by the F16 rounding of the merged weights.
#[test]
fn llama_cpp_parity_on_the_demo_model() {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../testdata/lora");
    let exp: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(dir.join("expected.json")).unwrap()).unwrap();
    let floats = |v: &serde_json::Value| -> Vec<f32> { v.as_array().unwrap().iter().map(|x| x.as_f64().unwrap() as f32).collect() };
    let tokens: Vec<u32> = exp["tokens"].as_array().unwrap().iter().map(|t| t.as_u64().unwrap() as u32).collect();
    let base = Engine::load(&demo(), EngineConfig { threads: 1, ..EngineConfig::default() }).unwrap();
    let tuned = base.with_adapter(&dir.join("demo-adapter.gguf")).unwrap();
    assert_eq!(tuned.model().decoder.cfg.arch, "llama");

    // Position by position, so that every position's logits are compared.
    let run = |e: &Engine| -> Vec<Vec<f32>> {
        let mut s = e.new_session(tokens.len());
        let mut all = Vec::new();
        for &t in &tokens {
            let mut out = Vec::new();
            e.eval(&mut s, &[t], &mut out).unwrap();
            all.push(out);
        }
        all
    };
    let (lb, lt) = (run(&base), run(&tuned));
    let base_d = max_abs_diff(lb.last().unwrap(), &floats(&exp["base_last_logits"]));
    let last_d = max_abs_diff(lt.last().unwrap(), &floats(&exp["last_logits"]));
    let moved = max_abs_diff(lb.last().unwrap(), lt.last().unwrap());
    let mut top_d = 0f32;
    let mut agree = 0;
    for (pos, top) in exp["top8"].as_array().unwrap().iter().enumerate() {
        let top = top.as_array().unwrap();
        for (k, e) in top.iter().enumerate() {
            let (id, logit) = (e[0].as_u64().unwrap() as usize, e[1].as_f64().unwrap() as f32);
            top_d = top_d.max((lt[pos][id] - logit).abs());
            if k == 0 {
                let best = lt[pos].iter().enumerate().fold((0, f32::MIN), |b, (i, &v)| if v > b.1 { (i, v) } else { b });
                agree += usize::from(best.0 == id);
            }
        }
    }
    eprintln!(
        "vs llama.cpp: base last-position max |Δ| {base_d}; with the GGUF LoRA: last position {last_d}, top-8 of all {} positions {top_d}, top-1 agreement {agree}/{}; the adapter moves the logits by {moved}",
        tokens.len(),
        tokens.len()
    );
    assert!(moved > 0.5, "the adapter must move the logits measurably ({moved})");
    assert!(base_d < 0.01, "base differs from llama.cpp by {base_d}");
    assert!(last_d < 0.02 && top_d < 0.02, "with the adapter: {last_d} / {top_d}");
    assert_eq!(agree, tokens.len());
}

/// llama.cpp's own `convert_lora_to_gguf.py` is the reference writer: for a
/// PEFT adapter on the tiny Hugging Face Llama of testdata/hf, Hearth's
/// export has the same tensors (names, dims, types, bytes) in F32 and Q8_0,
/// and the converter's file merges to the same weights as the PEFT adapter.
#[test]
fn export_matches_llama_cpp_convert_lora_to_gguf() {
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../testdata");
    let model = Model::load(&root.join("hf/llama")).unwrap();
    let dec = &model.decoder;
    let peft = LoraAdapter::open(&root.join("lora/hf-llama-peft")).unwrap();
    for (ty, file) in [(GgmlType::F32, "hf-llama-convert-f32.gguf"), (GgmlType::Q8_0, "hf-llama-convert-q8_0.gguf")] {
        let reference = GgufFile::open(root.join("lora").join(file)).unwrap();
        let (w, data) = gguf::to_writer(&peft, dec, ty).unwrap();
        let ours = GgufFile::from_bytes(w.write_to_vec(&data).unwrap()).unwrap();
        assert_eq!(ours.tensors().len(), reference.tensors().len(), "{file}");
        for t in reference.tensors() {
            let o = ours.tensor(&t.name).unwrap_or_else(|| panic!("{file}: {} missing", t.name));
            assert_eq!((&o.dims, o.ty), (&t.dims, t.ty), "{file}: {}", t.name);
            assert!(ours.tensor_data(o) == reference.tensor_data(t), "{file}: {} bytes differ", t.name);
        }
        for key in ["general.architecture", "general.type", "adapter.type"] {
            assert_eq!(ours.get_str(key).unwrap(), reference.get_str(key).unwrap(), "{key}");
        }
        assert_eq!(ours.get_f32("adapter.lora.alpha").unwrap(), reference.get_f32("adapter.lora.alpha").unwrap());
    }
    let converted = LoraAdapter::open(&root.join("lora/hf-llama-convert-f32.gguf")).unwrap();
    assert!(matrices(&converted.merge_into(dec).unwrap()) == matrices(&peft.merge_into(dec).unwrap()));
}
