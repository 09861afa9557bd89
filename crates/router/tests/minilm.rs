//! Checks with the real all-MiniLM-L6-v2 and the shipped routers. Skipped
//! (with a message) when the model is absent: run scripts/fetch-minilm.sh
//! or set HEARTH_MINILM. CI fetches the model.

use hearth_embed::Embedder;
use hearth_router::{data, Featurizer, Router, RouterError, RouterFile, TrainSpec, View};
use std::path::{Path, PathBuf};
use std::sync::Arc;

fn model_dir() -> Option<PathBuf> {
    let repo = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../models/all-MiniLM-L6-v2");
    let dir = std::env::var_os("HEARTH_MINILM").map(PathBuf::from).unwrap_or(repo);
    if dir.join("model.safetensors").is_file() {
        Some(dir)
    } else {
        eprintln!("SKIPPED: no all-MiniLM-L6-v2 at {} (run scripts/fetch-minilm.sh or set HEARTH_MINILM)", dir.display());
        None
    }
}

fn repo(p: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..").join(p)
}

fn embedder(dir: &Path) -> Arc<Embedder> {
    Arc::new(Embedder::load_with(dir, &hearth_embed::EmbedderOptions { threads: 1, ..Default::default() }).unwrap())
}

fn shipped(name: &str) -> RouterFile {
    let p = repo(&format!("routers/{name}.json"));
    RouterFile::from_json(&std::fs::read_to_string(&p).unwrap(), name).unwrap()
}

#[test]
fn shipped_routers_order_obvious_queries() {
    let Some(dir) = model_dir() else { return };
    let e = embedder(&dir);
    let r = Router::new(shipped("default"), e.clone(), "default".into()).unwrap();
    let local = [
        "Translate \"see you tomorrow\" into Spanish.",
        "Summarize this in one sentence: the meeting moved to Thursday at 3pm in room B.",
        "Fix the typos: Thank you for you're order, it will ship tommorow.",
    ];
    let cloud = [
        "Design a multi-region, fault-tolerant event-sourcing architecture for a payments platform, compare three consistency models and derive the failure modes of each, with a migration plan from our monolith.",
        "Prove that there are infinitely many primes of the form 4k+3, then generalise the argument and explain where it fails for 4k+1.",
        "Write a 5,000-word literary short story in three timelines that converge, with an unreliable narrator and a twist that recontextualises the first scene.",
    ];
    let ls = r.score_texts(&local).unwrap();
    let cs = r.score_texts(&cloud).unwrap();
    let max_local = ls.iter().copied().fold(f32::MIN, f32::max);
    let min_cloud = cs.iter().copied().fold(f32::MAX, f32::min);
    assert!(max_local < min_cloud, "local {ls:?} vs cloud {cs:?}");
    assert!(ls.iter().all(|&s| s < r.threshold()) && cs.iter().all(|&s| s >= r.threshold()), "threshold {}", r.threshold());
    // One text scores the same alone and in a batch.
    assert!((r.score_text(local[0]).unwrap() - ls[0]).abs() < 1e-5);
    // A conversation never scores below its last turn.
    let conv = r.score_user_turns(&[cloud[0], "and now just the migration part"]).unwrap();
    assert!(conv >= r.score_text("and now just the migration part").unwrap());
    assert!(conv >= cs[0] - 0.2, "the hard first turn should carry over: {conv} vs {}", cs[0]);

    // The strong/weak router prefers a hard competition problem over a trivial one.
    let rl = Router::new(shipped("routellm"), e, "routellm".into()).unwrap();
    let s = rl
        .score_texts(&[
            "What is 2 + 3?",
            "Let f be a continuous function on [0,1] with f(0)=f(1). Prove that for every n there is x with f(x)=f(x+1/n), and determine for which real h the statement fails.",
        ])
        .unwrap();
    assert!(s[0] < s[1], "{s:?}");
}

#[test]
fn a_router_for_another_embedder_is_refused() {
    let Some(dir) = model_dir() else { return };
    let e = embedder(&dir);
    let mut f = shipped("default");
    f.embedder.sha256 = "0".repeat(64);
    match Router::new(f, e.clone(), "tampered".into()) {
        Err(RouterError::EmbedderMismatch { source_name, .. }) => assert_eq!(source_name, "tampered"),
        other => panic!("{other:?}"),
    }
    let mut f = shipped("default");
    f.embedder.max_tokens = 128;
    assert!(matches!(Router::new(f, e, "t".into()), Err(RouterError::EmbedderMismatch { .. })));
}

#[test]
fn training_end_to_end_is_deterministic() {
    let Some(dir) = model_dir() else { return };
    let e = embedder(&dir);
    let path = repo("testdata/router/train.jsonl");
    // A small slice keeps the test quick: every 8th query.
    let ex: Vec<_> = data::load_jsonl(&path).unwrap().into_iter().step_by(8).collect();
    let spec = TrainSpec {
        name: "t".into(),
        description: String::new(),
        views: vec![View::Full, View::Head],
        features: hearth_router::features::Feature::ALL.to_vec(),
        gate: None,
        label_mode: hearth_router::LabelMode::Soft,
        fit: hearth_router::train::FitOptions::default(),
        l2_gate_off: None,
        ensemble: None,
        data: vec![path.clone()],
    };
    let texts: Vec<&str> = ex.iter().map(|x| x.query.as_str()).collect();
    let rows = Featurizer { embedder: &e, views: &spec.views, features: &spec.features, gate: None, cache: None }.rows(&texts).unwrap();
    let es = hearth_router::embedder_spec(&e).unwrap();
    let a = hearth_router::train_on_rows(&spec, &ex, &rows, es.clone()).unwrap();
    let b = hearth_router::train_on_rows(&spec, &ex, &rows, es).unwrap();
    assert_eq!(a.to_json(), b.to_json());
    assert!(a.training.converged);
    // The trained file loads against the same encoder and separates its own training data.
    let r = Router::new(a, e, "trained".into()).unwrap();
    let scores = r.score_texts(&texts).unwrap();
    let cloud: Vec<bool> = ex.iter().map(|x| x.cloud).collect();
    assert!(hearth_router::metrics::auc(&scores, &cloud).unwrap() > 0.9);
}

#[test]
fn shipped_routers_score_awkward_inputs_finitely_and_deterministically() {
    let Some(dir) = model_dir() else { return };
    let e = embedder(&dir);
    let long = "Please compare the revenue of every region in the attached table and explain the trend. ".repeat(40);
    let inputs = [
        "",
        "   ",
        "Translate this sentence into French.",
        "TRANSLATE THIS SENTENCE INTO FRENCH.",
        "  \n\tTranslate this sentence into French.\n\n  ",
        "Übersetze diesen Satz ins Französische, bitte.",
        "この文を英語に翻訳してください。",
        "Переведи это предложение на английский.",
        "🙂🙂🙂 ???",
        long.as_str(),
    ];
    for name in ["default", "routellm"] {
        let r = Router::new(shipped(name), e.clone(), name.into()).unwrap();
        let a = r.score_texts(&inputs).unwrap();
        let b = r.score_texts(&inputs).unwrap();
        assert_eq!(a, b, "{name}: scores must be deterministic");
        for (s, t) in a.iter().zip(&inputs) {
            assert!(s.is_finite() && (0.0..=1.0).contains(s), "{name}: {s} for {t:?}");
        }
        // Alone or in a batch, the same score (within float noise).
        for (i, t) in inputs.iter().enumerate() {
            assert!((r.score_text(t).unwrap() - a[i]).abs() < 1e-4, "{name}: {t:?}");
        }
        // Case and surrounding whitespace do not move the score (the encoder
        // is uncased; the router trims), so they cannot flip a decision.
        assert!((a[3] - a[2]).abs() < 1e-6 && (a[4] - a[2]).abs() < 1e-6, "{name}: {:?}", &a[2..5]);
        // The long input is past the encoder's 256 tokens and still decided.
        assert!(e.count_tokens(&long).unwrap() > 256);
        assert!(r.decide(&long).is_ok());
    }
}

#[test]
fn a_router_file_from_before_per_block_l2_still_loads() {
    // The file format gained optional fields (training.l2_gate_off) and new
    // feature names; a file written before them must load unchanged.
    let Some(dir) = model_dir() else { return };
    let mut f = shipped("routellm");
    f.training.l2_gate_off = None;
    f.features = hearth_router::features::Feature::ALL.to_vec();
    let d = f.views.len() * f.embedder.dim + f.features.len();
    let hearth_router::Head::Logistic(h) = &mut f.head;
    for v in [&mut h.mean, &mut h.weights] {
        v.resize(2 * d + 1, 0.0);
    }
    h.scale.resize(2 * d + 1, 1.0);
    let text = f.to_json();
    assert!(!text.contains("l2_gate_off") && !text.contains("log_unit_words"));
    let back = RouterFile::from_json(&text, "old.json").unwrap();
    let r = Router::new(back, embedder(&dir), "old".into()).unwrap();
    assert!(r.score_text("What is 2 + 3?").unwrap().is_finite());
}

#[test]
fn the_default_router_keeps_its_decision_under_paraphrase_and_translation() {
    let Some(dir) = model_dir() else { return };
    let r = Router::new(shipped("default"), embedder(&dir), "default".into()).unwrap();
    let local = [
        "Translate \"see you tomorrow\" into Spanish.",
        "Could you please translate \"see you tomorrow\" to Spanish for me?",
        "Traduce \"see you tomorrow\" al español.",
    ];
    let cloud = [
        "Design a multi-region, fault-tolerant event-sourcing architecture for a payments platform, compare three consistency models and derive the failure modes of each, with a migration plan from our monolith.",
        "We need an architecture for payments that runs in several regions and survives failures, built on event sourcing: compare three consistency models, work out how each one fails, and plan the migration off our monolith.",
        "Diseña una arquitectura de event sourcing multirregión y tolerante a fallos para una plataforma de pagos, compara tres modelos de consistencia y deriva los modos de fallo de cada uno, con un plan de migración desde nuestro monolito.",
    ];
    for q in local {
        assert!(!r.decide(q).unwrap().cloud, "{q}");
    }
    for q in cloud {
        assert!(r.decide(q).unwrap().cloud, "{q}");
    }
}

#[test]
fn the_previous_routellm_file_still_loads() {
    // The routellm router as shipped before the averaged head (a single
    // gated logistic head, no `training.ensemble`), byte for byte.
    let text = include_str!("data/routellm-single-head.json");
    assert!(!text.contains("ensemble"));
    let f = RouterFile::from_json(text, "routellm-single-head.json").unwrap();
    assert_eq!(f.training.ensemble, None);
    assert_eq!(f.training.l2_gate_off, Some(1000.0));
    let Some(dir) = model_dir() else { return };
    let r = Router::new(f, embedder(&dir), "old".into()).unwrap();
    let s = r.score_text("Natalia sold clips to 48 of her friends in April, and then she sold half as many clips in May. How many clips did Natalia sell altogether in April and May?").unwrap();
    assert!(s.is_finite() && s > 0.0 && s < 1.0, "{s}");
}
