//! Token masks over real vocabularies: agreement with a brute-force check,
//! end-of-generation and control-token rules, and the sampling fast path.

mod common;

use std::sync::Arc;

use hearth_grammar::{
    Constraint, Grammar, JsonOptions, JsonSchemaConstraint, MaskScratch, Matcher, TokenBitset,
};
use serde_json::json;

/// Every token, checked one by one against the constraint.
fn brute(v: &common::Vocab, g: &Grammar, state: &hearth_grammar::GrammarState) -> TokenBitset {
    let mut b = TokenBitset::new(v.mask.n_vocab());
    for id in 0..v.mask.n_vocab() as u32 {
        if v.mask.advance_token(g, state, id).is_some() {
            b.set(id);
        }
    }
    b
}

#[test]
fn mask_equals_brute_force_at_tricky_states() {
    let g = JsonSchemaConstraint::compile(&json!({
        "type": "object",
        "properties": {
            "s": {"type": "string", "maxLength": 5},
            "p": {"type": "string", "pattern": "^[a-c]+$"},
            "n": {"type": "number", "minimum": -2, "maximum": 3.5},
            "e": {"enum": ["ab", "abc", 12]},
            "x": {}
        },
        "required": ["s", "p", "n", "e"],
        "additionalProperties": true
    }))
    .expect("schema");
    let prefixes = [
        "",
        "{",
        "{\"s\":\"",
        "{\"s\":\"abc",    // budget of 2 characters left
        "{\"s\":\"abcd\\", // inside an escape
        "{\"s\":\"é",
        "{\"s\":\"\",\"p\":\"a",
        "{\"s\":\"\",\"p\":\"a\",\"n\":3",
        "{\"s\":\"\",\"p\":\"a\",\"n\":-1.",
        "{\"s\":\"\",\"p\":\"a\",\"n\":1,\"e\":\"ab",
        "{\"s\":\"\",\"p\":\"a\",\"n\":1,\"e\":1",
        "{\"s\":\"\",\"p\":\"a\",\"n\":1,\"e\":12,\"",
        "{\"s\":\"\",\"p\":\"a\",\"n\":1,\"e\":12,\"x\":{\"k\":[1,{\"",
    ];
    for v in [common::qwen2(), common::llama_bpe(), common::phi3()] {
        let mut scratch = MaskScratch::default();
        let mut out = TokenBitset::new(v.mask.n_vocab());
        for p in prefixes {
            let st = g
                .advance_bytes(&g.start_state(), p.as_bytes())
                .unwrap_or_else(|| panic!("prefix {p}"));
            v.mask.fill_mask(&g, &st, &mut scratch, &mut out);
            let want = brute(v, &g, &st);
            assert_eq!(out.count(), want.count(), "prefix {p:?}");
            assert!(out == want, "prefix {p:?}: masks differ");
            assert!(out.count() > 0, "prefix {p:?}: nothing allowed");
            // Twice: the cached path gives the same answer.
            v.mask.fill_mask(&g, &st, &mut scratch, &mut out);
            assert!(out == want, "prefix {p:?}: cached mask differs");
        }
    }
}

#[test]
fn eog_only_when_complete_and_control_tokens_never() {
    let v = common::qwen2();
    let g = Arc::new(JsonSchemaConstraint::compile(&json!({"type": "integer"})).expect("schema"));
    let eog: Vec<u32> = (0..v.mask.n_vocab() as u32)
        .filter(|&t| v.mask.is_eog(t))
        .collect();
    assert!(!eog.is_empty());
    let controls: Vec<u32> = (0..v.mask.n_vocab() as u32)
        .filter(|&t| v.tok.is_control(t) && !v.tok.is_eog(t))
        .collect();
    assert!(!controls.is_empty(), "qwen2 has <|im_start|>");
    let mut m = Matcher::new(v.mask.clone(), g.clone());
    let mask = m.compute_mask().clone();
    assert!(
        eog.iter().all(|&t| !mask.get(t)),
        "empty output is not an integer"
    );
    assert!(controls.iter().all(|&t| !mask.get(t)));
    assert!(m.accept_token(eog[0]).is_err());
    let one = v.tok.token_id("1").expect("digit token");
    m.accept_token(one).expect("digit");
    let mask = m.compute_mask().clone();
    assert!(eog.iter().all(|&t| mask.get(t)), "\"1\" is complete");
    assert!(mask.get(one), "and may continue");
    assert!(controls.iter().all(|&t| !mask.get(t)));
    m.accept_token(eog[0]).expect("EOG");
    assert!(m.is_finished());
    assert_eq!(m.compute_mask().count(), 0, "nothing after EOG");
    assert!(m.accept_token(one).is_err());
}

#[test]
fn sample_fast_path() {
    let v = common::llama_bpe();
    let g = Arc::new(Grammar::json_object(JsonOptions::default()));
    let brace = v.tok.token_id("{").expect("{");
    let word = v.tok.token_id("hello").expect("hello");
    let n = v.mask.n_vocab();
    // The sampler's first choice is allowed: it is drawn once, logits untouched.
    let mut m = Matcher::new(v.mask.clone(), g.clone());
    let mut logits = vec![0.0f32; n];
    let mut calls = 0;
    let t = m.sample(&mut logits, |_| {
        calls += 1;
        brace
    });
    assert_eq!((t, calls), (Some(brace), 1));
    assert!(logits.iter().all(|&x| x == 0.0));
    // The first choice is rejected: the mask is applied and it draws again.
    let mut m = Matcher::new(v.mask.clone(), g);
    let mut logits = vec![0.0f32; n];
    logits[word as usize] = 10.0;
    logits[brace as usize] = 5.0;
    let mut calls = 0;
    let t = m.sample(&mut logits, |l| {
        calls += 1;
        let mut best = 0;
        for (i, &x) in l.iter().enumerate() {
            if x > l[best] {
                best = i;
            }
        }
        best as u32
    });
    assert_eq!((t, calls), (Some(brace), 2));
    assert_eq!(logits[word as usize], f32::NEG_INFINITY);
    // apply_to_logits also disallows ids beyond the vocabulary.
    let mut wide = vec![1.0f32; n + 3];
    m.compute_mask().apply_to_logits(&mut wide);
    assert!(wide[n..].iter().all(|&x| x == f32::NEG_INFINITY));
}

#[test]
fn constraint_trait_defaults() {
    let g = Grammar::json_value(JsonOptions::default());
    let s = g.start();
    assert!(g.allowed(&s, b"[1, \"a\"]"));
    assert!(!g.allowed(&s, b"[1,,"));
    let done = g.advance(&s, b"true").expect("accepted");
    assert!(g.is_complete(&done));
    assert!(!g.is_complete(&g.advance(&s, b"tru").expect("prefix")));
}

#[test]
fn test_vocabularies_spell_every_byte() {
    for v in [common::qwen2(), common::llama_bpe(), common::phi3()] {
        assert_eq!(v.mask.missing_single_bytes(), Vec::<u8>::new());
    }
}
