//! Detection quality and redaction leak checks on the committed public
//! corpus (testdata/pii/public.jsonl, 1,000 synthetic prompts, frame set A).
//!
//! The thresholds are what the detector reaches on this corpus minus a
//! margin, not targets for unseen text: the hidden frame set B uses other
//! carrier sentences, so names and addresses in particular may score lower
//! there (see the crate report).

use std::io::BufRead;
use std::path::PathBuf;

use hearth_api::{ChatRequest, Message, Role, Route};
use hearth_guard::eval::{evaluate_file, parse_record};
use hearth_guard::{Action, Decision, Detector, Guard, Policy};

fn corpus() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../testdata/pii/public.jsonl")
}

#[test]
fn recall_and_precision_on_the_public_corpus() {
    let rep = evaluate_file(&corpus(), &Detector::new()).unwrap();
    assert_eq!(rep.n, 1000);
    // Checksum / fixed-format types: near-perfect recall.
    for t in ["EMAIL", "PHONE", "US_SSN", "CREDIT_CARD", "IBAN", "IP_ADDRESS", "API_KEY"] {
        let s = &rep.per_type[t];
        assert!(s.recall >= 0.99, "{t} recall {}", s.recall);
        assert!(s.precision >= 0.98, "{t} precision {}", s.precision);
    }
    // Context-gated identifiers.
    for t in ["DATE_OF_BIRTH", "MEDICAL_RECORD_NUMBER", "PASSPORT"] {
        let s = &rep.per_type[t];
        assert!(s.recall >= 0.97, "{t} recall {}", s.recall);
        assert!(s.precision >= 0.97, "{t} precision {}", s.precision);
    }
    // Gazetteer/heuristic types.
    for t in ["PERSON", "STREET_ADDRESS"] {
        let s = &rep.per_type[t];
        assert!(s.recall >= 0.95, "{t} recall {}", s.recall);
        assert!(s.precision >= 0.95, "{t} precision {}", s.precision);
    }
    assert!(rep.recall >= 0.98, "overall recall {}", rep.recall);
    assert!(rep.precision >= 0.98, "overall precision {}", rep.precision);
    assert!(rep.clean_prompts_flagged <= 0.05, "clean flagged {}", rep.clean_prompts_flagged);
    // The report serialises with the keys the CLI prints.
    let v = serde_json::to_value(&rep).unwrap();
    for k in ["n", "recall", "precision", "per_type", "clean_prompts_flagged"] {
        assert!(v.get(k).is_some(), "missing {k}");
    }
    assert!(v["per_type"]["PERSON"].get("support").is_some());
}

fn digit_runs(s: &str) -> Vec<String> {
    // digits joined across the separators numbers are written with
    let mut out = Vec::new();
    let mut cur = String::new();
    let mut pending_sep = false;
    for c in s.chars() {
        if c.is_ascii_digit() {
            cur.push(c);
            pending_sep = false;
        } else if !cur.is_empty() && !pending_sep && matches!(c, ' ' | '-' | '.' | '/' | '(' | ')') {
            pending_sep = true;
        } else {
            if !cur.is_empty() {
                out.push(std::mem::take(&mut cur));
            }
            pending_sep = false;
        }
    }
    if !cur.is_empty() {
        out.push(cur);
    }
    out
}

/// With every type set to `redact`, no entity value reaches the cloud
/// request, in any of these forms: as is, lower-cased, without whitespace,
/// or (for values with at least 6 digits) as its digit sequence.
#[test]
fn redaction_leaks_no_value_of_the_corpus() {
    let guard = Guard::new(Policy::all(Action::Redact));
    let f = std::io::BufReader::new(std::fs::File::open(corpus()).unwrap());
    let mut hits = Vec::new();
    let mut checked = 0;
    for (i, line) in f.lines().enumerate() {
        let (text, gold) = parse_record(&line.unwrap(), i + 1).unwrap();
        let req = ChatRequest::new("hearth/auto", vec![Message::new(Role::User, text.clone())]);
        let Decision::Cloud(safe, _) = guard.decide(&req, Route::Cloud) else {
            panic!("line {}: redact-all policy must allow the cloud", i + 1)
        };
        let json = serde_json::to_string(safe.request()).unwrap();
        // compare against the decoded text of the request, not JSON escapes
        let sent = &safe.request().messages[0].content;
        let lower = sent.to_lowercase();
        let squashed: String = lower.split_whitespace().collect();
        let runs = digit_runs(sent);
        for g in &gold {
            let v = &text[g.start..g.end];
            checked += 1;
            let vl = v.to_lowercase();
            let vs: String = vl.split_whitespace().collect();
            let vd: String = v.chars().filter(char::is_ascii_digit).collect();
            let leak = sent.contains(v)
                || json.contains(v)
                || lower.contains(&vl)
                || squashed.contains(&vs)
                || (vd.len() >= 6 && runs.iter().any(|r| r.contains(&vd)));
            if leak {
                hits.push((i + 1, g.entity));
            }
        }
    }
    assert!(checked > 2000);
    assert!(hits.is_empty(), "{} leaks (line, type): {:?}", hits.len(), hits);
}
