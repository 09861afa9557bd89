//! `hearth distill generate` end to end against a fake OpenAI-compatible
//! teacher: a std `TcpListener` server that counts requests and answers
//! according to a closure (text, HTTP status, garbage, or silence).

use hearth_distill::generate::{generate, GenerateOptions, RecordMeta, Stopped};
use hearth_distill::spec::Spec;
use hearth_distill::teacher::HttpTeacher;
use hearth_guard::Policy;
use serde_json::{json, Value};
use std::collections::{BTreeMap, BTreeSet};
use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

enum Reply {
    Text(String),
    Status(u16),
    Garbage,
    Silence(Duration),
}

type Handler = dyn Fn(&str, usize) -> Reply + Send + Sync;

/// The fake teacher. `prompts` records the last user message of every request.
struct FakeTeacher {
    url: String,
    count: Arc<AtomicUsize>,
    prompts: Arc<Mutex<Vec<String>>>,
}

fn start(handler: Arc<Handler>) -> FakeTeacher {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
    let url = format!("http://{}/v1", listener.local_addr().expect("addr"));
    let count = Arc::new(AtomicUsize::new(0));
    let prompts = Arc::new(Mutex::new(Vec::new()));
    let (c2, p2) = (count.clone(), prompts.clone());
    std::thread::spawn(move || {
        for stream in listener.incoming() {
            let Ok(mut stream) = stream else { continue };
            let (c, p, h) = (c2.clone(), p2.clone(), handler.clone());
            std::thread::spawn(move || {
                let mut reader = BufReader::new(stream.try_clone().expect("clone"));
                let mut len = 0usize;
                loop {
                    let mut line = String::new();
                    if reader.read_line(&mut line).unwrap_or(0) == 0 {
                        return;
                    }
                    if line == "\r\n" {
                        break;
                    }
                    if let Some(v) = line.to_ascii_lowercase().strip_prefix("content-length:") {
                        len = v.trim().parse().unwrap_or(0);
                    }
                }
                let mut body = vec![0u8; len];
                if reader.read_exact(&mut body).is_err() {
                    return;
                }
                let req: Value = serde_json::from_slice(&body).unwrap_or(Value::Null);
                let prompt = req["messages"].as_array().and_then(|m| m.last()).and_then(|m| m["content"].as_str()).unwrap_or("").to_string();
                let n = c.fetch_add(1, Ordering::SeqCst) + 1;
                p.lock().expect("lock").push(prompt.clone());
                let (status, ctype, text) = match h(&prompt, n) {
                    Reply::Text(t) => {
                        let v = json!({"id": "x", "object": "chat.completion", "model": "fake",
                            "choices": [{"index": 0, "message": {"role": "assistant", "content": t}, "finish_reason": "stop"}],
                            "usage": {"prompt_tokens": 10, "completion_tokens": 5, "total_tokens": 15}});
                        (200, "application/json", v.to_string())
                    }
                    Reply::Status(s) => (s, "application/json", json!({"error": {"message": "nope"}}).to_string()),
                    Reply::Garbage => (200, "application/json", "<<not json>>".to_string()),
                    Reply::Silence(d) => {
                        std::thread::sleep(d);
                        return;
                    }
                };
                let _ = write!(stream, "HTTP/1.1 {status} X\r\nContent-Type: {ctype}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{text}", text.len());
                let _ = stream.flush();
            });
        }
    });
    FakeTeacher { url, count, prompts }
}

fn tempdir(name: &str) -> PathBuf {
    static N: AtomicUsize = AtomicUsize::new(0);
    let d = std::env::temp_dir().join(format!("hearth-gen-{}-{}-{name}", std::process::id(), N.fetch_add(1, Ordering::SeqCst)));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).expect("mkdir");
    d
}

const TOPICS: &str = "[topics]\nlist = [\"binary search\", \"TCP\", \"RAM\", \"compiler\", \"linker\", \"cache\"]\n";
const TASK: &str = "[[tasks]]\nname = \"define\"\ntemplate = \"Define {{ topic }} for a {{ difficulty }} reader.\"\nclosed_form = true\n";

fn spec(extra_top: &str, extra: &str) -> Spec {
    let text = format!("{extra_top}difficulty = [\"beginner\", \"expert\"]\n{TOPICS}{TASK}[teacher]\nmodel = \"fake\"\ntimeout_s = 0.5\nmax_consecutive_errors = 3\n[prices]\ninput_per_mtok = 1000.0\noutput_per_mtok = 2000.0\n{extra}");
    Spec::parse(&text, Path::new(".")).expect("spec")
}

/// A distinct answer per prompt, long enough not to be near-duplicates.
fn distinct(prompt: &str, _: usize) -> Reply {
    Reply::Text(format!("{prompt} The answer is specific to this prompt: {}", prompt.chars().rev().collect::<String>()))
}

fn run(spec: &Spec, t: &FakeTeacher, out: &Path, budget: Option<f64>) -> hearth_distill::generate::GenerateReport {
    let mut teacher = HttpTeacher::new(&t.url, &spec.teacher, Policy::default()).expect("teacher");
    generate(spec, &mut teacher, &GenerateOptions { out: out.to_path_buf(), budget_usd: budget, fresh: false }, &mut |_| {}).expect("generate")
}

fn read_meta(out: &Path, split: &str) -> Vec<RecordMeta> {
    std::fs::read_to_string(out.join(format!("{split}.meta.jsonl")))
        .expect("meta")
        .lines()
        .map(|l| serde_json::from_str(l).expect("meta line"))
        .collect()
}

#[test]
fn budget_cap_stops_before_exceeding_and_resume_repeats_no_call() {
    let t = start(Arc::new(distinct));
    let s = spec("", "");
    let out = tempdir("resume");
    // One call costs 10·1000/1e6 + 5·2000/1e6 = $0.02; the worst-case bound
    // for these prompts is ~ (60+32)·1e-3 + 256·2e-3 ≈ $0.6, so a $0.75 cap
    // admits calls while spent ≤ ~$0.15.
    let r1 = run(&s, &t, &out, Some(0.75));
    assert_eq!(r1.stopped, Some(Stopped::Budget));
    assert!(r1.calls_made >= 1 && r1.calls_made < 12, "{r1:?}");
    assert!(r1.cost_usd_total <= 0.75, "spent {} over the cap", r1.cost_usd_total);
    assert_eq!(t.count.load(Ordering::SeqCst), r1.calls_made);
    // Outputs exist even though the run stopped early.
    let kept: usize = r1.records.values().sum();
    assert_eq!(kept, r1.calls_made);

    // Simulate a kill in the middle of writing the ledger: a torn last line.
    let ledger = out.join("calls.jsonl");
    let mut f = std::fs::OpenOptions::new().append(true).open(&ledger).expect("ledger");
    write!(f, "{{\"key\": \"abc\", \"kind\": \"ans").expect("torn");
    drop(f);

    let before = t.count.load(Ordering::SeqCst);
    let r2 = run(&s, &t, &out, None);
    assert_eq!(r2.stopped, Some(Stopped::Complete));
    assert_eq!(r2.ledger_bad_lines, 1);
    assert_eq!(r2.calls_reused, r1.calls_made);
    assert_eq!(r2.calls_made, 12 - r1.calls_made);
    assert_eq!(t.count.load(Ordering::SeqCst) - before, 12 - r1.calls_made);
    // Every prompt was sent exactly once over both runs.
    let prompts = t.prompts.lock().expect("lock").clone();
    let unique: BTreeSet<&String> = prompts.iter().collect();
    assert_eq!(unique.len(), prompts.len(), "a prompt was sent twice");
    assert!((r2.cost_usd_total - 12.0 * 0.02).abs() < 1e-9, "{}", r2.cost_usd_total);

    // A third run: nothing left to call.
    let before = t.count.load(Ordering::SeqCst);
    let r3 = run(&s, &t, &out, None);
    assert_eq!((r3.calls_made, r3.calls_reused), (0, 12));
    assert_eq!(t.count.load(Ordering::SeqCst), before);
    let all: usize = r3.records.values().sum();
    assert_eq!(all, 12);

    // Output format: OpenAI chat lines, aligned with the metadata sidecar.
    let train = std::fs::read_to_string(out.join("train.jsonl")).expect("train");
    let first: Value = serde_json::from_str(train.lines().next().expect("a line")).expect("json");
    assert_eq!(first["messages"][0]["role"], "user");
    assert_eq!(first["messages"][1]["role"], "assistant");
    assert_eq!(train.lines().count(), read_meta(&out, "train").len());
    let m = &read_meta(&out, "train")[0];
    assert_eq!((m.prompt_tokens, m.completion_tokens, m.teacher.as_str()), (10, 5, "fake"));
    assert!((m.cost_usd - 0.02).abs() < 1e-12);
}

#[test]
fn split_by_topic_has_no_leakage() {
    // Two samples per cell share a prompt; a sampling teacher answers them
    // differently (here: the request number).
    let t = start(Arc::new(|prompt: &str, n: usize| distinct(&format!("{prompt} {n} {}", "x".repeat(n)), 0)));
    let s = spec("samples_per_cell = 2\n", "[split]\ntrain = 0.6\nvalid = 0.2\ntest = 0.2\nseed = 3\n");
    let out = tempdir("split");
    let r = run(&s, &t, &out, None);
    let mut seen: BTreeMap<String, &str> = BTreeMap::new();
    let mut total = 0;
    for split in ["train", "valid", "test"] {
        let metas = read_meta(&out, split);
        assert!(!metas.is_empty(), "{split} is empty");
        total += metas.len();
        for m in metas {
            if let Some(prev) = seen.insert(m.cluster.clone(), split) {
                assert_eq!(prev, split, "topic {} is in {prev} and {split}", m.cluster);
            }
        }
    }
    assert_eq!(total, 24);
    assert_eq!(r.clusters.values().map(Vec::len).sum::<usize>(), 6);
}

#[test]
fn documents_are_chunked_and_clustered_by_document() {
    let t = start(Arc::new(distinct));
    let docs = tempdir("docs");
    for i in 0..4 {
        let body: String = (0..6).map(|p| format!("Paragraph {p} of document {i} says something about subject {i}-{p}.\n\n")).collect();
        std::fs::write(docs.join(format!("doc{i}.md")), format!("# Document {i}\n\n{body}")).expect("write");
    }
    std::fs::write(docs.join("ignored.bin"), "x").expect("write");
    let text = format!(
        "[topics]\nfrom = \"{}/*.md\"\nchunk_chars = 120\nmax_chunks_per_doc = 3\n[[tasks]]\nname = \"q\"\ntemplate = \"About {{{{ topic }}}}: {{{{ snippet }}}}\"\n[teacher]\nmodel = \"fake\"\n[split]\ntrain = 0.5\nvalid = 0.25\ntest = 0.25\n",
        docs.display()
    );
    let s = Spec::parse(&text, Path::new("/")).expect("spec");
    let out = tempdir("docs-out");
    let r = run(&s, &t, &out, None);
    assert_eq!(r.topic_units, 12);
    let prompts = t.prompts.lock().expect("lock").clone();
    assert!(prompts.iter().any(|p| p.starts_with("About Document 2: ")), "{prompts:?}");
    let mut where_: BTreeMap<String, BTreeSet<&str>> = BTreeMap::new();
    for split in ["train", "valid", "test"] {
        for m in read_meta(&out, split) {
            where_.entry(m.cluster).or_default().insert(split);
        }
    }
    assert_eq!(where_.len(), 4);
    assert!(where_.values().all(|s| s.len() == 1), "a document leaked: {where_:?}");
}

#[test]
fn schema_invalid_answers_are_counted_retried_and_never_kept() {
    // First answer to each prompt is prose, the retry is valid JSON — except
    // for "TCP", which never answers valid JSON.
    let seen: Arc<Mutex<BTreeMap<String, usize>>> = Arc::default();
    let t = start(Arc::new(move |prompt: &str, _| {
        let mut s = seen.lock().expect("lock");
        let n = s.entry(prompt.to_string()).or_default();
        *n += 1;
        if *n == 1 || prompt.contains("TCP") {
            Reply::Text("Sure! The term means something.".into())
        } else {
            Reply::Text(format!("```json\n{{\"term\": \"{}\", \"definition\": \"a definition long enough\"}}\n```", prompt.len()))
        }
    }));
    let s = Spec::parse(
        &format!("{TOPICS}[[tasks]]\nname = \"json\"\ntemplate = \"Define {{{{ topic }}}} as JSON.\"\nschema = {{ type = \"object\", required = [\"term\", \"definition\"], properties = {{ term = {{ type = \"string\" }}, definition = {{ type = \"string\", minLength = 10 }} }} }}\n[teacher]\nmodel = \"fake\"\n[dedup]\nnear_threshold = 1.0\n"),
        Path::new("."),
    )
    .expect("spec");
    let out = tempdir("schema");
    let r = run(&s, &t, &out, None);
    assert_eq!(r.calls_made, 12, "6 prompts × (first + one retry)");
    assert_eq!(r.schema_invalid, 7, "6 first answers + TCP's retry");
    assert_eq!(r.schema_retried, 6);
    let kept: usize = r.records.values().sum();
    assert_eq!(kept, 5);
    for split in ["train", "valid", "test"] {
        for m in read_meta(&out, split) {
            assert_eq!(m.schema_valid, Some(true));
            assert!(m.schema.is_some());
            assert_ne!(m.topic, "TCP");
        }
    }
}

#[test]
fn exact_duplicates_from_the_teacher_are_removed_and_judge_filters() {
    // Two topics get the same answer; the judge gives "cache" a low score.
    let t = start(Arc::new(|prompt: &str, _| {
        if prompt.starts_with("Rate the answer") {
            return Reply::Text(if prompt.contains("cache") { "Score: 3".into() } else { "8".into() });
        }
        if prompt.contains("RAM") || prompt.contains("TCP") {
            return Reply::Text("It is a standard piece of computing vocabulary.".into());
        }
        distinct(prompt, 0)
    }));
    let s = Spec::parse(&format!("{TOPICS}{TASK}[teacher]\nmodel = \"fake\"\n[judge]\nenabled = true\nmin_score = 5\n"), Path::new(".")).expect("spec");
    let out = tempdir("dedup");
    let r = run(&s, &t, &out, None);
    assert_eq!(r.dedup.exact_removed, 1);
    assert_eq!(r.judged, 5, "duplicates are not judged");
    assert_eq!(r.judge_below_threshold, 1);
    let kept: usize = r.records.values().sum();
    assert_eq!(kept, 4);
    let metas: Vec<RecordMeta> = ["train", "valid", "test"].iter().flat_map(|s| read_meta(&out, s)).collect();
    assert!(metas.iter().all(|m| m.judge_score == Some(8)));
    assert_eq!(metas.iter().map(|m| m.exact_duplicates_removed).sum::<usize>(), 1);
}

#[test]
fn timeouts_and_garbage_are_typed_and_the_run_continues_or_stops_cleanly() {
    let t = start(Arc::new(|prompt: &str, _| {
        if prompt.contains("TCP") {
            Reply::Silence(Duration::from_secs(3))
        } else if prompt.contains("RAM") {
            Reply::Garbage
        } else if prompt.contains("linker") {
            Reply::Status(400)
        } else {
            distinct(prompt, 0)
        }
    }));
    let s = Spec::parse(&format!("{TOPICS}{TASK}[teacher]\nmodel = \"fake\"\ntimeout_s = 0.5\nmax_consecutive_errors = 5\n"), Path::new(".")).expect("spec");
    let out = tempdir("faults");
    let r = run(&s, &t, &out, None);
    assert_eq!(r.stopped, Some(Stopped::Complete));
    assert_eq!(r.calls_failed.get("timeout"), Some(&1), "{:?}", r.calls_failed);
    assert_eq!(r.calls_failed.get("protocol"), Some(&1), "{:?}", r.calls_failed);
    assert_eq!(r.calls_failed.get("http_status"), Some(&1), "{:?}", r.calls_failed);
    let kept: usize = r.records.values().sum();
    assert_eq!(kept, 3);

    // Now everything fails: the run stops after 3 failures in a row and the
    // records already in the ledger are still written.
    let bad = start(Arc::new(|_: &str, _| Reply::Garbage));
    let s2 = Spec::parse(
        &format!("[topics]\nlist = [\"binary search\", \"compiler\", \"cache\", \"new1\", \"new2\", \"new3\", \"new4\"]\n{TASK}[teacher]\nmodel = \"fake\"\ntimeout_s = 0.5\nmax_consecutive_errors = 3\n"),
        Path::new("."),
    )
    .expect("spec");
    let r2 = run(&s2, &bad, &out, None);
    assert_eq!(r2.stopped, Some(Stopped::Errors));
    assert_eq!(r2.calls_reused, 3);
    assert_eq!(bad.count.load(Ordering::SeqCst), 3);
    let kept: usize = r2.records.values().sum();
    assert_eq!(kept, 3, "finished records survive a stopped run");
}

#[test]
fn shipped_specs_parse() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../docs/distill-example");
    let s = Spec::load(&dir.join("spec.toml")).expect("spec.toml");
    assert_eq!(s.tasks.len(), 2);
    assert!(s.tasks[1].schema.is_some());
    assert!(s.judge.enabled);
    let f = Spec::load(&dir.join("foldoc-spec.toml")).expect("foldoc-spec.toml");
    assert_eq!(f.teacher.top_k_logprobs, 8);
}

#[test]
fn prompts_with_personal_data_pass_the_privacy_guard_first() {
    let t = start(Arc::new(|prompt: &str, _| Reply::Text(format!("You asked: {prompt}"))));
    let text = "[topics]\nlist = [\"TCP\", \"mail to alice.smith@example.com\"]\n[[tasks]]\nname = \"d\"\ntemplate = \"Define {{ topic }}.\"\n[teacher]\nmodel = \"fake\"\n";
    let s = Spec::parse(text, Path::new(".")).expect("spec");
    // Default policy: personal data keeps the prompt on this machine.
    let out = tempdir("privacy");
    let mut teacher = HttpTeacher::new(&t.url, &s.teacher, Policy::default()).expect("teacher");
    let r = generate(&s, &mut teacher, &GenerateOptions { out: out.clone(), budget_usd: None, fresh: false }, &mut |_| {}).expect("generate");
    assert_eq!(r.calls_failed.get("privacy"), Some(&1), "{:?}", r.calls_failed);
    assert_eq!(t.count.load(Ordering::SeqCst), 1);
    assert!(t.prompts.lock().expect("lock").iter().all(|p| !p.contains("alice")));
    // Redaction: the address leaves as a placeholder and comes back restored.
    let out2 = tempdir("privacy-redact");
    let mut teacher = HttpTeacher::new(&t.url, &s.teacher, Policy::all(hearth_guard::Action::Redact)).expect("teacher");
    let r = generate(&s, &mut teacher, &GenerateOptions { out: out2.clone(), budget_usd: None, fresh: false }, &mut |_| {}).expect("generate");
    assert!(r.calls_failed.is_empty(), "{:?}", r.calls_failed);
    let sent = t.prompts.lock().expect("lock").clone();
    assert!(sent.iter().all(|p| !p.contains("alice.smith@example.com")), "{sent:?}");
    let all: String = ["train", "valid", "test"].iter().map(|s| std::fs::read_to_string(out2.join(format!("{s}.jsonl"))).expect("split")).collect();
    assert!(all.contains("You asked: Define mail to alice.smith@example.com."), "{all}");
}
