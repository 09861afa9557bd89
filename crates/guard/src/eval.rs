//! Detection quality on a labelled corpus (`hearth guard eval --data FILE`).
//!
//! Input: JSONL, one prompt per line:
//! `{"id", "text", "entities": [{"type", "start", "end", "value"}]}` where
//! `start`/`end` are Python `str` offsets (Unicode code points). They are
//! converted to byte offsets, and `text[start..end] == value` is checked.
//!
//! Matching rules (stated here because the numbers mean nothing without them):
//! * **Recall.** A labelled entity counts as found when every alphanumeric
//!   character of it lies inside some confident detected span, of *any*
//!   type (a phone number detected as an SSN is still kept local or
//!   redacted). Uncertain spans do not count towards recall.
//! * **Precision.** Overall: share of confident detected spans that overlap
//!   some labelled entity. Per type T: share of detected spans of type T that
//!   overlap a labelled entity of type T.
//! * **clean_prompts_flagged**: share of prompts without labelled entities on
//!   which the default policy (every type keep-local, fail closed) would keep
//!   the request local, i.e. where anything, confident or uncertain, was found.
//!
//! Errors name the line number, never the text.

use std::collections::BTreeMap;
use std::io::BufRead;
use std::path::Path;

use serde::{Deserialize, Serialize};

use crate::detect::Detector;
use crate::entity::{EntityType, Finding};
use crate::policy::Policy;

#[derive(Debug, thiserror::Error)]
pub enum EvalError {
    #[error("reading the evaluation file: {0}")]
    Io(#[from] std::io::Error),
    #[error("line {line}: not a valid evaluation record (JSON error at column {column})")]
    Json { line: usize, column: usize },
    #[error("line {line}: entity {index} has offsets outside the text or a value that does not match them")]
    Offsets { line: usize, index: usize },
    #[error("line {line}: entity {index} has an unknown type")]
    UnknownType { line: usize, index: usize },
}

#[derive(Deserialize)]
struct Record {
    #[allow(dead_code)]
    #[serde(default)]
    id: String,
    text: String,
    #[serde(default)]
    entities: Vec<GoldEntity>,
}

#[derive(Deserialize)]
struct GoldEntity {
    #[serde(rename = "type")]
    ty: String,
    start: usize,
    end: usize,
    value: String,
}

/// One labelled entity, in byte offsets.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Gold {
    pub entity: EntityType,
    pub start: usize,
    pub end: usize,
}

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct TypeStats {
    pub recall: f64,
    pub precision: f64,
    /// Number of labelled entities of this type.
    pub support: usize,
    /// Number of confident detected spans of this type.
    pub detected: usize,
}

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct EvalReport {
    /// Prompts read.
    pub n: usize,
    pub recall: f64,
    pub precision: f64,
    pub per_type: BTreeMap<String, TypeStats>,
    pub clean_prompts_flagged: f64,
    /// Prompts without labelled entities.
    pub clean_prompts: usize,
    /// Labelled entities.
    pub entities: usize,
    /// Recall when uncertain spans count too (what fail-closed protects).
    pub recall_with_uncertain: f64,
}

/// Converts Python code-point offsets to byte offsets; `None` when out of range.
pub fn codepoint_to_byte(text: &str, cp: usize) -> Option<usize> {
    if cp == 0 {
        return Some(0);
    }
    match text.char_indices().nth(cp) {
        Some((b, _)) => Some(b),
        None => (text.chars().count() == cp).then_some(text.len()),
    }
}

/// Parses one JSONL record into its text and byte-offset entities.
pub fn parse_record(line: &str, line_no: usize) -> Result<(String, Vec<Gold>), EvalError> {
    let rec: Record =
        serde_json::from_str(line).map_err(|e| EvalError::Json { line: line_no, column: e.column() })?;
    let mut gold = Vec::with_capacity(rec.entities.len());
    // code point -> byte table, built once per record
    let mut table: Vec<usize> = rec.text.char_indices().map(|(b, _)| b).collect();
    table.push(rec.text.len());
    for (index, e) in rec.entities.iter().enumerate() {
        let entity: EntityType = e.ty.parse().map_err(|_| EvalError::UnknownType { line: line_no, index })?;
        let (Some(&start), Some(&end)) = (table.get(e.start), table.get(e.end)) else {
            return Err(EvalError::Offsets { line: line_no, index });
        };
        if start > end || rec.text.get(start..end) != Some(e.value.as_str()) {
            return Err(EvalError::Offsets { line: line_no, index });
        }
        gold.push(Gold { entity, start, end });
    }
    Ok((rec.text, gold))
}

/// Whether every alphanumeric char of `text[g.start..g.end]` is inside one of `spans`.
pub fn covered(text: &str, g: &Gold, spans: &[Finding]) -> bool {
    text[g.start..g.end].char_indices().filter(|(_, c)| c.is_alphanumeric()).all(|(i, _)| {
        let b = g.start + i;
        spans.iter().any(|f| f.start <= b && b < f.end)
    })
}

#[derive(Default)]
struct Acc {
    found: usize,
    support: usize,
    det: usize,
    det_tp: usize,
}

/// Evaluates the detector on a JSONL corpus.
pub fn evaluate<R: BufRead>(reader: R, detector: &Detector) -> Result<EvalReport, EvalError> {
    let policy = Policy::default();
    let mut acc: BTreeMap<EntityType, Acc> = BTreeMap::new();
    let (mut n, mut clean, mut clean_flagged) = (0usize, 0usize, 0usize);
    let (mut ents, mut found, mut found_unc, mut det, mut det_tp) = (0usize, 0usize, 0usize, 0usize, 0usize);
    for (i, line) in reader.lines().enumerate() {
        let line = line?;
        if line.trim().is_empty() {
            continue;
        }
        let (text, gold) = parse_record(&line, i + 1)?;
        n += 1;
        let d = detector.detect(&text);
        if gold.is_empty() {
            clean += 1;
            if policy.keeps_local(&d) {
                clean_flagged += 1;
            }
        }
        let all: Vec<Finding> = d.entities.iter().chain(&d.uncertain).copied().collect();
        for g in &gold {
            let a = acc.entry(g.entity).or_default();
            a.support += 1;
            ents += 1;
            if covered(&text, g, &d.entities) {
                a.found += 1;
                found += 1;
            }
            if covered(&text, g, &all) {
                found_unc += 1;
            }
        }
        for f in &d.entities {
            det += 1;
            if gold.iter().any(|g| f.overlaps(g.start, g.end)) {
                det_tp += 1;
            }
            let a = acc.entry(f.entity).or_default();
            a.det += 1;
            if gold.iter().any(|g| g.entity == f.entity && f.overlaps(g.start, g.end)) {
                a.det_tp += 1;
            }
        }
    }
    let ratio = |a: usize, b: usize| if b == 0 { 1.0 } else { a as f64 / b as f64 };
    let per_type = acc
        .into_iter()
        .map(|(t, a)| {
            (
                t.as_str().to_string(),
                TypeStats {
                    recall: ratio(a.found, a.support),
                    precision: ratio(a.det_tp, a.det),
                    support: a.support,
                    detected: a.det,
                },
            )
        })
        .collect();
    Ok(EvalReport {
        n,
        recall: ratio(found, ents),
        precision: ratio(det_tp, det),
        per_type,
        clean_prompts_flagged: if clean == 0 { 0.0 } else { clean_flagged as f64 / clean as f64 },
        clean_prompts: clean,
        entities: ents,
        recall_with_uncertain: ratio(found_unc, ents),
    })
}

/// Evaluates the detector on a JSONL file.
pub fn evaluate_file(path: &Path, detector: &Detector) -> Result<EvalReport, EvalError> {
    let f = std::fs::File::open(path)?;
    evaluate(std::io::BufReader::new(f), detector)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codepoint_offsets_become_byte_offsets() {
        let t = "Müller 😀 x";
        assert_eq!(codepoint_to_byte(t, 0), Some(0));
        assert_eq!(codepoint_to_byte(t, 2), Some(3)); // 'ü' is 2 bytes
        assert_eq!(codepoint_to_byte(t, 9), Some(t.len() - 1)); // 'x' after a 4-byte emoji
        assert_eq!(codepoint_to_byte(t, 10), Some(t.len()));
        assert_eq!(codepoint_to_byte(t, 11), None);
    }

    #[test]
    fn record_with_non_ascii_offsets_parses() {
        let line = r#"{"id":"x","text":"Dr. Gráinne Keane, tel +44 20 7946 0123","entities":[{"type":"PERSON","start":4,"end":17,"value":"Gráinne Keane"}]}"#;
        let (text, gold) = parse_record(line, 1).unwrap();
        assert_eq!(&text[gold[0].start..gold[0].end], "Gráinne Keane");
    }

    #[test]
    fn mismatched_value_is_an_error_without_the_value() {
        let line = r#"{"id":"x","text":"hello canary-value","entities":[{"type":"PERSON","start":0,"end":3,"value":"canary-value"}]}"#;
        let e = parse_record(line, 7).unwrap_err();
        let msg = format!("{e} {e:?}");
        assert!(msg.contains("line 7"));
        assert!(!msg.contains("canary"));
    }

    #[test]
    fn unknown_type_is_an_error() {
        let line = r#"{"id":"x","text":"abc","entities":[{"type":"SHOE_SIZE","start":0,"end":3,"value":"abc"}]}"#;
        assert!(matches!(parse_record(line, 1), Err(EvalError::UnknownType { line: 1, index: 0 })));
    }

    #[test]
    fn coverage_rule_ignores_punctuation_but_not_letters() {
        let text = "at 12 Oak Street, Leeds LS6 2AB now";
        let g = Gold { entity: EntityType::StreetAddress, start: 3, end: 31 };
        let mk = |s, e| Finding { entity: EntityType::StreetAddress, start: s, end: e, confidence: 0.9 };
        assert!(covered(text, &g, &[mk(3, 16), mk(18, 31)]));
        assert!(!covered(text, &g, &[mk(3, 16)]));
    }
}
