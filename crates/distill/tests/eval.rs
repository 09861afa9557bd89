//! `hearth distill eval` on the shipped demo model: a student identical to
//! its teacher agrees with it completely, and a position-biased judge is
//! cancelled by judging both orders.

use hearth_distill::data::Message;
use hearth_distill::eval::{evaluate, load_items, EvalOptions};
use hearth_distill::spec::Prices;
use hearth_distill::teacher::{LocalTeacher, Teacher, TeacherCall, TeacherError, TeacherReply};
use hearth_engine::{Engine, EngineConfig};
use std::path::{Path, PathBuf};

fn demo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../assets/demo/foldoc-demo.gguf")
}

/// A judge that always prefers whichever answer is shown first.
struct FirstIsBetter(usize);

impl Teacher for FirstIsBetter {
    fn name(&self) -> String {
        "biased".into()
    }
    fn complete(&mut self, _: &TeacherCall) -> Result<TeacherReply, TeacherError> {
        self.0 += 1;
        Ok(TeacherReply { text: "A".into(), ..TeacherReply::default() })
    }
}

fn write_items(dir: &Path) -> PathBuf {
    std::fs::create_dir_all(dir).expect("mkdir");
    let p = dir.join("test.jsonl");
    let lines: Vec<String> = [("What is a compiler?", "A program that translates source code."), ("Define byte.", "Eight bits."), ("What is RAM?", "Random access memory.")]
        .iter()
        .map(|(q, a)| serde_json::json!({"messages": [Message { role: "user".into(), content: q.to_string() }, Message { role: "assistant".into(), content: a.to_string() }]}).to_string())
        .collect();
    std::fs::write(&p, lines.join("\n") + "\n").expect("write");
    p
}

#[test]
fn identical_student_agrees_and_biased_judge_is_cancelled() {
    let cfg = EngineConfig { threads: 1, ..EngineConfig::default() };
    let student = Engine::load(&demo(), cfg.clone()).expect("student");
    let mut teacher = LocalTeacher::new(Engine::load(&demo(), cfg).expect("teacher"), "foldoc-demo");
    let mut judge = FirstIsBetter(0);
    let dir = std::env::temp_dir().join(format!("hearth-eval-{}", std::process::id()));
    let items = load_items(&write_items(&dir)).expect("items");
    assert_eq!(items.len(), 3);
    let opts = EvalOptions { max_tokens: 24, prices: Prices { input_per_mtok: 1.0, output_per_mtok: 2.0 }, machine_usd_per_hour: 0.36, ..EvalOptions::default() };
    let r = evaluate(&student, "demo", Some(&mut teacher as &mut dyn Teacher), Some(&mut judge as &mut dyn Teacher), &items, &opts, &mut |_| {}).expect("eval");
    // The same model: same greedy answers, same distributions.
    assert_eq!(r.teacher_agreement, 1.0);
    let tf = r.teacher_forced.expect("local teacher with the same vocabulary");
    assert_eq!(tf.agreement, 1.0);
    assert!(tf.kl.abs() < 1e-6, "KL {}", tf.kl);
    assert!(tf.positions > 0);
    // The demo model does not know these references verbatim.
    assert_eq!(r.closed_form_items, 3);
    assert!(r.exact_match.is_some_and(|em| em < 1.0));
    // Both orders: the "first is better" judge gives 3 wins and 3 losses.
    let w = r.judge.expect("judge");
    assert_eq!(judge.0, 6);
    assert_eq!((w.judgments, w.wins, w.losses, w.ties), (6, 3, 3, 0));
    assert_eq!(w.win_rate, 0.5);
    assert_eq!(w.position_consistency, 0.0);
    assert!(w.wilson_95.0 < 0.5 && w.wilson_95.1 > 0.5);
    // Costs: measured teacher tokens × prices; student seconds × $/hour.
    let cloud = 1000.0 * (r.mean_teacher_prompt_tokens * 1.0 + r.mean_teacher_completion_tokens * 2.0) / 1e6;
    assert!((r.cost_per_1k_without_student_usd - cloud).abs() < 1e-12);
    assert!(r.teacher_tokens_measured && r.mean_teacher_prompt_tokens > 0.0);
    assert!(r.cost_per_1k_with_student_usd > 0.0);
    assert!(r.latency_p95_s >= r.latency_p50_s);
    let _ = std::fs::remove_dir_all(&dir);
}
