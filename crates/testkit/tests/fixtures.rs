//! The committed fixtures are self-consistent and reproducible from Rust alone.

use hearth_formats::{GgmlType, GgufFile, MetaValue};
use hearth_testkit::prng::{tensor_seed, uniform_value};
use hearth_testkit::{f32_le_bytes, gguf_scratch_path, sha256_hex, Recipe, TestkitError, F32_KV_F32, FIXTURES, VARIANTS};

fn recipes() -> Vec<Recipe> {
    FIXTURES.iter().map(|f| Recipe::load_fixture(f).unwrap_or_else(|e| panic!("{f}: {e}"))).collect()
}

/// Numbers printed by tools/fixtures/gen_models.py (`prng_tensor`, numpy float32) for a
/// seed and names unrelated to any fixture, so a PRNG change shows up even if someone
/// regenerated every fixture with it.
#[test]
fn prng_matches_python_reference_values() {
    let seed = tensor_seed(0x0123_4567_89ab_cdef, "blk.0.attn_q.weight");
    assert_eq!(seed, 0xb3fb_cf33_dd49_a1d4);
    let want = [
        -0.03915464133024216f64,
        0.007871170528233051,
        0.08306095004081726,
        -0.07142994552850723,
        -0.006467284634709358,
        -0.10709410160779953,
    ];
    for (i, &w) in want.iter().enumerate() {
        assert_eq!(uniform_value(seed, i as u64, 0.10825318, 0.0), w as f32, "element {i}");
    }
    let seed = tensor_seed(0x0123_4567_89ab_cdef, "output_norm.weight");
    let want = [0.8417561054229736f64, 1.0637422800064087, 0.8425214886665344, 1.0301094055175781];
    for (i, &w) in want.iter().enumerate() {
        assert_eq!(uniform_value(seed, i as u64, 0.2, 1.0), w as f32, "element {i}");
    }
    // seed_t = 0 gives SplitMix64's own sequence: top 24 bits of 0xe220a8397b1dcdaf.
    assert_eq!(uniform_value(0, 0, 1.0, 0.0), 0.7666216);
}

#[test]
fn every_f32_tensor_regenerates_bit_identically() {
    for r in recipes() {
        for (spec, t) in r.tensors().iter().zip(r.f32_tensors()) {
            let (name, dims, data) = t.unwrap();
            assert_eq!(name, spec.name);
            assert_eq!(dims, spec.dims);
            for (i, (&got, &want)) in data.iter().zip(&spec.first8).enumerate() {
                assert_eq!(got.to_bits(), (want as f32).to_bits(), "{}/{name}[{i}]", r.fixture());
            }
            assert_eq!(sha256_hex(&f32_le_bytes(&data)), spec.sha256_f32, "{}/{name}", r.fixture());
        }
    }
}

#[test]
fn f32_and_f16_variants_are_reproduced_byte_for_byte() {
    // The F32 variant is the generator's file itself; F16 is llama-quantize's conversion,
    // which is IEEE round-to-nearest-even (ggml.c ggml_fp32_to_fp16_row), as is `half`.
    for r in recipes() {
        let v32 = r.variant("F32").unwrap();
        let v16 = r.variant("F16").unwrap();
        for t in r.f32_tensors() {
            let (name, _dims, data) = t.unwrap();
            v32.check_tensor(&name, &f32_le_bytes(&data)).unwrap();
            let bytes = match v16.tensor(&name).unwrap().ty {
                GgmlType::F32 => f32_le_bytes(&data),
                GgmlType::F16 => data.iter().flat_map(|&x| half::f16::from_f32(x).to_le_bytes()).collect(),
                other => panic!("{}: {name} is {other} in the F16 variant", r.fixture()),
            };
            v16.check_tensor(&name, &bytes).unwrap_or_else(|e| panic!("{}: {e}", r.fixture()));
        }
    }
}

#[test]
fn a_wrong_byte_is_reported_as_a_hash_mismatch() {
    let r = Recipe::load_fixture("llama-spm").unwrap();
    let v = r.variant("F32").unwrap();
    let spec = &r.tensors()[1];
    let mut data = spec.generate(r.model_seed()).unwrap();
    data[3] = f32::from_bits(data[3].to_bits() ^ 1);
    match v.check_tensor(&spec.name, &f32_le_bytes(&data)) {
        Err(TestkitError::Hash(m)) => assert_eq!(m.name, spec.name),
        other => panic!("expected a hash mismatch, got {other:?}"),
    }
}

#[test]
fn variants_record_a_type_and_consistent_size_for_every_tensor() {
    for r in recipes() {
        for vname in VARIANTS {
            let v = r.variant(vname).unwrap_or_else(|e| panic!("{}: {e}", r.fixture()));
            let names: Vec<&str> = v.tensors().iter().map(|t| t.name.as_str()).collect();
            let want: Vec<&str> = r.tensors().iter().map(|t| t.name.as_str()).collect();
            assert_eq!(names, want, "{}/{vname}: tensor order", r.fixture());
            for (t, spec) in v.tensors().iter().zip(r.tensors()) {
                assert_eq!(t.dims, spec.dims);
                let rows: u64 = t.dims[1..].iter().product();
                let row_bytes = t.ty.row_bytes(t.dims[0]).expect("whole blocks");
                assert_eq!(t.n_bytes, row_bytes * rows, "{}/{vname}/{}", r.fixture(), t.name);
                // 1-D tensors (norms, biases, rope factors) are never quantized.
                if t.dims.len() == 1 {
                    assert_eq!(t.ty, GgmlType::F32, "{}/{vname}/{}", r.fixture(), t.name);
                }
            }
            let ft = v
                .metadata_entries()
                .iter()
                .find(|e| e.key == "general.file_type")
                .and_then(|e| e.value.as_u64());
            assert_eq!(ft, Some(u64::from(v.ftype)), "{}/{vname}", r.fixture());
        }
    }
}

fn get<'a>(md: &'a [(String, MetaValue)], key: &str) -> &'a MetaValue {
    &md.iter().find(|(k, _)| k == key).unwrap_or_else(|| panic!("missing {key}")).1
}

#[test]
fn metadata_combines_hparams_and_the_vocabulary_tokenizer() {
    for r in recipes() {
        let vocab = r.open_vocab().unwrap();
        let md = r.metadata(&vocab).unwrap();
        let a = r.architecture();
        assert_eq!(md[0], ("general.architecture".to_string(), MetaValue::String(a.to_string())));
        let h = r.hparams();
        assert_eq!(get(&md, &format!("{a}.embedding_length")).as_integer(), Some(i128::from(h.n_embd)));
        assert_eq!(get(&md, &format!("{a}.block_count")).as_integer(), Some(i128::from(h.n_layer)));
        assert_eq!(get(&md, &format!("{a}.attention.head_count_kv")).as_integer(), Some(i128::from(h.n_head_kv)));
        let tokens = get(&md, "tokenizer.ggml.tokens").as_array().expect("token list");
        assert_eq!(tokens.len() as u64, r.n_vocab());
        // The token embedding is [n_embd, n_vocab].
        let te = r.tensors().iter().find(|t| t.name == "token_embd.weight").unwrap();
        assert_eq!(te.dims, vec![u64::from(h.n_embd), r.n_vocab()]);
        assert_eq!(r.tensors().iter().any(|t| t.name == "output.weight"), !h.tied_embeddings);
        // Every variant's key order can be served.
        for vname in VARIANTS {
            let vm = r.variant_metadata(vname, &vocab).unwrap();
            assert_eq!(vm.len(), r.variant(vname).unwrap().key_order().len());
        }
    }
}

#[test]
fn expected_outputs_are_consistent() {
    for r in recipes() {
        for name in VARIANTS.iter().chain([&F32_KV_F32]) {
            let e = r.expected(name).unwrap_or_else(|err| panic!("{}/{name}: {err}", r.fixture()));
            assert_eq!(e.fixture, r.fixture());
            let (variant, kv) = if *name == F32_KV_F32 { ("F32", "F32") } else { (*name, "F16") };
            assert_eq!(e.variant, variant);
            assert_eq!(e.kv_cache(), Some(kv), "{}/{name}", r.fixture());
            assert_eq!(u64::from(e.n_vocab), r.n_vocab());
            assert_eq!(e.prompts.len(), 4, "{}/{name}", r.fixture());
            for p in &e.prompts {
                let ctx = format!("{}/{name}/{}", r.fixture(), p.kind);
                assert!(p.generated_ids.len() >= 40 || p.stopped_at_eog, "{ctx}");
                if p.stopped_at_eog {
                    assert!(e.eog_ids.contains(p.generated_ids.last().unwrap()), "{ctx}");
                }
                assert!(p.min_margin >= 0.02, "{ctx}: min margin {}", p.min_margin);
                assert!(p.margins.iter().all(|&m| m >= p.min_margin), "{ctx}");
                assert!(p.generated_ids.iter().zip(&p.runner_up_ids).all(|(a, b)| a != b), "{ctx}");
                let l = &p.first_logits;
                assert_eq!(l.argmax, p.generated_ids[0], "{ctx}");
                assert_eq!(l.top_ids[0], l.argmax, "{ctx}");
                assert_eq!(l.top_ids[1], p.runner_up_ids[0], "{ctx}");
                assert!(l.top_logits.windows(2).all(|w| w[0] >= w[1]), "{ctx}: top logits not sorted");
                let m0 = f64::from(l.top_logits[0] - l.top_logits[1]);
                assert!((m0 - p.margins[0]).abs() < 1e-3, "{ctx}: margin {m0} vs {}", p.margins[0]);
                // Every sampled logit lies below the 100th largest unless it is in the top list.
                let floor = *l.top_logits.last().unwrap();
                for (id, v) in e.sample_ids.iter().zip(&l.sample_logits) {
                    assert!(*v <= floor || l.top_ids.contains(id), "{ctx}: id {id}");
                }
                assert!(e.reference_logits(p).count() >= 2000, "{ctx}");
                assert!(p.prompt_ids.iter().chain(&p.generated_ids).all(|&t| t < e.n_vocab), "{ctx}");
                for c in [&p.self_check, &p.repack_check] {
                    assert!(c.greedy_tokens_agreeing <= c.greedy_len, "{ctx}");
                    assert_eq!(c.greedy_len as usize, p.generated_ids.len(), "{ctx}");
                    // a zero difference must come with identical greedy tokens
                    if c.first_logits_max_abs_diff == 0.0 && c.greedy_tokens_agreeing < c.greedy_len {
                        assert!(c.greedy_tokens_agreeing > 0, "{ctx}: identical first logits, different first token");
                    }
                }
            }
            let Some(simple) = &e.llama_simple else {
                assert_eq!(*name, F32_KV_F32, "{}: only the F32-KV reference lacks llama-simple runs", r.fixture());
                continue;
            };
            assert_eq!(simple.runs.len(), 4);
            for run in &simple.runs {
                let out = run.stdout().unwrap();
                assert!(out.len() >= run.prompt_echo_len && out.ends_with(b"\n"));
                if run.matches_greedy {
                    let p = e.prompt(&run.prompt_kind).unwrap();
                    let gen = p.generated_bytes().unwrap();
                    // llama-simple prints 32 tokens; the reference text holds 40 or more.
                    let body = &out[run.prompt_echo_len..out.len() - 1];
                    assert!(gen.starts_with(body), "{}/{name}/{}", r.fixture(), run.prompt_kind);
                }
            }
        }
    }
}

/// The F32 model with an F16 and with an F32 KV cache is the same model: the two runs
/// differ only by the F16 rounding of K and V (relative 2^-11, which moves logits of this
/// size by about 0.1), so their first tokens agree wherever the margin is clearly larger.
#[test]
fn f32_kv_reference_is_the_same_model_as_the_f16_kv_run() {
    for r in recipes() {
        let a = r.expected("F32").unwrap();
        let b = r.expected(F32_KV_F32).unwrap();
        assert_eq!(a.sample_ids, b.sample_ids);
        for (pa, pb) in a.prompts.iter().zip(&b.prompts) {
            let ctx = format!("{}/{}", r.fixture(), pa.kind);
            assert_eq!(pa.prompt_ids, pb.prompt_ids, "{ctx}");
            let worst = pa
                .first_logits
                .sample_logits
                .iter()
                .zip(&pb.first_logits.sample_logits)
                .map(|(x, y)| (x - y).abs())
                .fold(0.0f32, f32::max);
            assert!(worst < 0.5, "{ctx}: F16 vs F32 KV cache moved a logit by {worst}");
            if pa.margins[0] > 0.5 && pb.margins[0] > 0.5 {
                assert_eq!(pa.generated_ids[0], pb.generated_ids[0], "{ctx}");
            }
        }
    }
}

/// Needs the GGUF files the generator leaves in the scratch directory (not in git):
/// `cargo test -p hearth-testkit -- --ignored`.
#[test]
#[ignore = "needs the generated GGUF files (HEARTH_FIXTURE_GGUFS)"]
fn scratch_gguf_files_match_their_recipes() {
    for r in recipes() {
        let vocab = r.open_vocab().unwrap();
        for vname in VARIANTS {
            let path = gguf_scratch_path(r.fixture(), vname);
            let f = GgufFile::open(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
            let want = r.variant_metadata(vname, &vocab).unwrap();
            assert_eq!(f.metadata(), &want[..], "{}", path.display());
            let v = r.variant(vname).unwrap();
            for t in f.tensors() {
                assert_eq!(v.tensor(&t.name).map(|x| x.ty), Some(t.ty));
                v.check_tensor(&t.name, f.tensor_data(t)).unwrap();
            }
        }
    }
}
