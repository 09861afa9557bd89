//! The gateway's commands through the real binary: `hearth config check`
//! on the shipped example and on broken files, `hearth audit keygen` and
//! `verify` (including a tampered log), `hearth guard eval --json` on the
//! PII corpus, `hearth report` on an empty ledger.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

fn hearth(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_hearth"))
        .args(args)
        .env_remove("OPENAI_API_KEY")
        .env_remove("HEARTH_API_KEY")
        .output()
        .expect("running hearth")
}

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

fn text(o: &Output) -> String {
    format!("{}{}", String::from_utf8_lossy(&o.stdout), String::from_utf8_lossy(&o.stderr))
}

#[test]
fn example_config_checks() {
    let ex = root().join("hearth.example.toml");
    let o = hearth(&["config", "check", ex.to_str().unwrap()]);
    let t = text(&o);
    assert!(o.status.success(), "{t}");
    assert!(t.contains(": ok"), "{t}");
    // The example's variables are unset and its model absent here: warnings that name them.
    assert!(t.contains("warning: cloud.api_key_env: environment variable OPENAI_API_KEY is not set"), "{t}");
    assert!(t.contains("warning: local.model: no such file"), "{t}");
    let o = hearth(&["config", "check", "--strict", ex.to_str().unwrap()]);
    assert!(!o.status.success());
}

#[test]
fn broken_config_names_key_paths() {
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("bad.toml");
    std::fs::write(
        &p,
        "[cloud]\nbase_url = \"api.example.com/v1\"\nmodel = \"m\"\napi_key_env = \"sk-live-123\"\n[guard.entities]\nEMAIL = \"hide\"\n[router]\nkidn = \"heuristic\"\n",
    )
    .unwrap();
    let o = hearth(&["config", "check", p.to_str().unwrap()]);
    let t = text(&o);
    assert!(!o.status.success(), "{t}");
    for want in [
        "error: cloud.base_url: missing scheme",
        "error: cloud.api_key_env: must be the NAME of an environment variable",
        "error: guard.entities.EMAIL: unknown action 'hide'",
        "error: router.kidn: unknown key; did you mean 'kind'?",
    ] {
        assert!(t.contains(want), "missing {want:?} in {t}");
    }
    assert!(!t.contains("sk-live-123"), "{t}");
}

#[test]
fn audit_keygen_verify_and_tamper() {
    let dir = tempfile::tempdir().unwrap();
    let key = dir.path().join("k.key");
    let o = hearth(&["audit", "keygen", "--out", key.to_str().unwrap()]);
    assert!(o.status.success(), "{}", text(&o));
    let public = String::from_utf8_lossy(&o.stdout).lines().find_map(|l| l.strip_prefix("public key: ").map(str::to_string)).unwrap();
    // A log written through the library, as `hearth serve` writes it.
    let log = dir.path().join("a.jsonl");
    let sk = hearth_guard::audit::read_key_file(&key).unwrap();
    let a = hearth_guard::audit::AuditLog::open(&log, sk, 3).unwrap();
    for i in 0..7 {
        a.append(&hearth_guard::audit::AuditEntry::now(format!("req-{i}"), if i % 2 == 0 { "local" } else { "cloud" })).unwrap();
    }
    a.close().unwrap();
    let o = hearth(&["audit", "verify", log.to_str().unwrap(), "--public-key", &public, "--json"]);
    assert!(o.status.success(), "{}", text(&o));
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(v["ok"], true);
    assert_eq!(v["entries"], 7);
    let o = hearth(&["audit", "verify", log.to_str().unwrap(), "--key", key.to_str().unwrap()]);
    assert!(o.status.success(), "{}", text(&o));
    // Edit one entry's route.
    let s = std::fs::read_to_string(&log).unwrap();
    let tampered = s.replacen("\"cloud\"", "\"local\"", 1);
    assert_ne!(s, tampered);
    std::fs::write(&log, tampered).unwrap();
    let o = hearth(&["audit", "verify", log.to_str().unwrap(), "--public-key", &public]);
    assert!(!o.status.success());
    assert!(text(&o).contains("verification FAILED"), "{}", text(&o));
}

#[test]
fn guard_eval_json_keys() {
    let data = root().join("testdata/pii/public.jsonl");
    let o = hearth(&["guard", "eval", "--data", data.to_str().unwrap(), "--json"]);
    assert!(o.status.success(), "{}", text(&o));
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(v["n"], 1000);
    for k in ["recall", "precision", "clean_prompts_flagged"] {
        assert!(v[k].as_f64().is_some_and(|x| (0.0..=1.0).contains(&x)), "{k}: {v}");
    }
    let email = &v["per_type"]["EMAIL"];
    assert!(email["support"].as_u64().unwrap() > 0 && email["recall"].as_f64().unwrap() > 0.9, "{v}");
    eprintln!("guard eval: recall {} precision {} clean flagged {}", v["recall"], v["precision"], v["clean_prompts_flagged"]);
}

#[test]
fn report_on_an_empty_ledger() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("l.db");
    let o = hearth(&["report", "--ledger", db.to_str().unwrap(), "--json"]);
    assert!(o.status.success(), "{}", text(&o));
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(v["requests"], 0);
    let o = hearth(&["report", "--ledger", db.to_str().unwrap(), "--since", "yesterday-ish"]);
    assert!(!o.status.success());
    assert!(text(&o).contains("--since"), "{}", text(&o));
}

#[test]
fn cascade_calibrate_on_the_test_model() {
    use hearth_server::testing::{qwen2_vocab_path, write_test_model, TestModelSpec};
    let dir = tempfile::tempdir().unwrap();
    let model = dir.path().join("tiny.gguf");
    write_test_model(&qwen2_vocab_path(), &model, &TestModelSpec::tiny()).unwrap();
    let data = dir.path().join("q.jsonl");
    std::fs::write(
        &data,
        "{\"query\": \"Summarize this.\", \"label\": \"local\"}\n{\"query\": \"Design a database.\", \"label\": \"cloud\"}\n{\"query\": \"Translate hi.\", \"label\": \"local\"}\n{\"query\": \"Prove it terminates.\", \"label\": \"cloud\"}\n",
    )
    .unwrap();
    let o = hearth(&[
        "cascade", "calibrate", "-m", model.to_str().unwrap(), "--data", data.to_str().unwrap(), "--max-tokens", "3",
        "--target-escalation", "0.5", "--json",
    ]);
    assert!(o.status.success(), "{}", text(&o));
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(v["n"], 4);
    assert!(v["threshold"].as_f64().is_some_and(|t| t < 0.0), "{v}");
    assert!(v["escalation_rate"].as_f64().is_some_and(|r| r >= 0.5), "{v}");
}
