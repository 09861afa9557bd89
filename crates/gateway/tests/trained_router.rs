//! The shipped trained router (`default`) behind the gateway's
//! `QueryRouter`: loaded from a config that names it, scores conversations
//! from their user turns, and its calibrated threshold separates an obviously
//! routine request from an obviously hard one.
//!
//! Needs all-MiniLM-L6-v2 (`scripts/fetch-minilm.sh`, or `HEARTH_MINILM`):
//! under `CI` its absence fails the test, elsewhere it prints SKIPPED.

use hearth_api::{ChatRequest, Message, Role};
use hearth_gateway::router::{QueryRouter, TrainedRouter};
use hearth_gateway::{Config, Gateway};
use std::path::PathBuf;

fn minilm() -> Option<PathBuf> {
    let repo = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../models/all-MiniLM-L6-v2");
    let dir = std::env::var_os("HEARTH_MINILM").map(PathBuf::from).unwrap_or(repo);
    if dir.join("config.json").is_file() {
        // hearth-embed finds the encoder through this variable.
        std::env::set_var("HEARTH_MINILM", &dir);
        return Some(dir);
    }
    assert!(std::env::var_os("CI").is_none(), "all-MiniLM-L6-v2 missing under CI at {}", dir.display());
    eprintln!("SKIPPED: no all-MiniLM-L6-v2 at {} (scripts/fetch-minilm.sh)", dir.display());
    None
}

fn user(texts: &[&str]) -> ChatRequest {
    ChatRequest::new("hearth/auto", texts.iter().map(|t| Message::new(Role::User, *t)).collect())
}

#[test]
fn default_router_splits_routine_from_hard_and_loads_from_config() {
    if minilm().is_none() {
        return;
    }
    let r = TrainedRouter::load("default").unwrap();
    let t = r.threshold();
    assert!(t > 0.0 && t < 1.0, "threshold {t}");
    let easy = r.score(&user(&["What are your opening hours on Saturday?"])).unwrap();
    let hard = r
        .score(&user(&[
            "Design a multi-region disaster-recovery architecture for our payments ledger, compare active-active \
             with active-passive under a 15-minute RPO, and derive the cost and consistency trade-offs step by step.",
        ]))
        .unwrap();
    assert!(easy < t && hard >= t, "easy {easy}, hard {hard}, threshold {t}");
    // A conversation is at least as cloud-worthy as its last turn alone.
    let convo = r.score(&user(&["Hi there.", "Design a multi-region disaster-recovery architecture step by step."])).unwrap();
    let last = r.score(&user(&["Design a multi-region disaster-recovery architecture step by step."])).unwrap();
    assert!(convo >= last - 1e-6, "{convo} < {last}");

    let dir = tempfile::tempdir().unwrap();
    let cfg_path = dir.path().join("hearth.toml");
    std::fs::write(&cfg_path, "offline = true\n[router]\nkind = \"file\"\npath = \"default\"\n").unwrap();
    let cfg = Config::load(&cfg_path).unwrap();
    let gw = Gateway::from_config(&cfg, &|_| None).unwrap();
    assert_eq!(gw.router_name(), r.name());
}

#[test]
fn a_missing_router_file_is_a_config_error_naming_the_key() {
    let dir = tempfile::tempdir().unwrap();
    let cfg_path = dir.path().join("hearth.toml");
    std::fs::write(&cfg_path, "offline = true\n[router]\nkind = \"file\"\npath = \"routers/nope.json\"\n").unwrap();
    let e = match Config::load(&cfg_path) {
        Ok(cfg) => Gateway::from_config(&cfg, &|_| None).err().expect("must fail").to_string(),
        Err(e) => e.to_string(),
    };
    assert!(e.contains("router.path"), "{e}");
}
