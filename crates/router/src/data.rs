//! Labelled query sets in JSONL, in the two record formats the router trains on.
//!
//! * **Labelled**: `{"id"?, "query", "label": "local" | "cloud"}` (Hearth's own
//!   format; other fields are ignored).
//! * **Strong/weak results** (RouteLLM's per-question format, as in
//!   `testdata/router/external/`): `{"id", "query", "strong_correct",
//!   "weak_correct"}` (booleans) or `{"id", "query", "strong_score",
//!   "weak_score"}` (judge scores, MT-Bench's 1–10 scale).
//!
//! A strong/weak record carries a *gain* `d = quality(strong) − quality(weak)`,
//! normalised to `[-1, 1]` (correctness is 0/1; judge scores are divided by
//! the 1–10 scale's span, 9). Its training target depends on [`LabelMode`].

use crate::RouterError;
use serde_json::Value;
use std::path::Path;

/// Judge scores (MT-Bench) run from 1 to 10, so a gain spans at most 9.
const JUDGE_SCORE_SPAN: f64 = 9.0;

/// How strong/weak records become training targets.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum LabelMode {
    /// Target 1 when the strong model did strictly better than the weak one
    /// (for 0/1 correctness: the weak model failed where the strong one
    /// succeeded), else 0.
    Hard,
    /// Target `(1 + d) / 2` for the normalised gain `d`: 1 when only the
    /// strong model succeeded, 0 when only the weak one did, ½ when they tie.
    /// Cross-entropy against this target is minimised by
    /// `p = (1 + E[d | query]) / 2`, a monotone function of the expected
    /// gain, which is exactly the ordering APGR rewards (see metrics.py: the
    /// PGR curve sums the gains of the queries sent to the strong model). The
    /// hard label instead ranks by `P(strong ok, weak failed)` and ignores
    /// the queries the weak model answers and the strong one misses.
    Soft,
}

/// One query with its label.
#[derive(Clone, Debug, PartialEq)]
pub struct Example {
    pub id: Value,
    pub query: String,
    /// The record says the query needs the cloud model: a `cloud` label, or
    /// a strictly positive strong-minus-weak gain.
    pub cloud: bool,
    /// Strong and weak quality (strong/weak records only), for APGR.
    pub qualities: Option<(f64, f64)>,
    /// Excluded from RouteLLM's published numbers (strong/weak records).
    pub contaminated: bool,
}

impl Example {
    /// The training target in `[0, 1]`.
    pub fn target(&self, mode: LabelMode) -> f32 {
        match (self.qualities, mode) {
            (Some((s, w)), LabelMode::Soft) => {
                let span = if s.max(w) > 1.0 { JUDGE_SCORE_SPAN } else { 1.0 };
                let d = ((s - w) / span).clamp(-1.0, 1.0);
                ((1.0 + d) / 2.0) as f32
            }
            _ => {
                if self.cloud {
                    1.0
                } else {
                    0.0
                }
            }
        }
    }
}

fn bad(path: &Path, line: usize, why: impl Into<String>) -> RouterError {
    RouterError::Data { path: path.to_path_buf(), line, why: why.into() }
}

/// Parses one JSONL line (1-based `line` for messages). Blank lines are
/// skipped by the caller.
pub fn parse_record(v: &Value, path: &Path, line: usize) -> Result<Example, RouterError> {
    let obj = v.as_object().ok_or_else(|| bad(path, line, "expected a JSON object"))?;
    let query = match obj.get("query") {
        Some(Value::String(s)) => s.clone(),
        Some(_) => return Err(bad(path, line, "\"query\" must be a string")),
        None => return Err(bad(path, line, "missing \"query\"")),
    };
    let id = obj.get("id").cloned().unwrap_or(Value::from(line));
    let contaminated = obj.get("contaminated").and_then(Value::as_bool).unwrap_or(false);
    if let Some(label) = obj.get("label") {
        let cloud = match label.as_str() {
            Some("cloud") => true,
            Some("local") => false,
            _ => return Err(bad(path, line, format!("\"label\" must be \"local\" or \"cloud\", found {label}"))),
        };
        return Ok(Example { id, query, cloud, qualities: None, contaminated });
    }
    let q = |k: &str| -> Result<Option<f64>, RouterError> {
        match obj.get(k) {
            None | Some(Value::Null) => Ok(None),
            Some(Value::Bool(b)) => Ok(Some(if *b { 1.0 } else { 0.0 })),
            Some(Value::Number(n)) => match n.as_f64() {
                Some(x) if x.is_finite() => Ok(Some(x)),
                _ => Err(bad(path, line, format!("\"{k}\" is not a finite number"))),
            },
            Some(other) => Err(bad(path, line, format!("\"{k}\" must be a boolean or number, found {other}"))),
        }
    };
    let pair = match (q("strong_correct")?, q("weak_correct")?) {
        (Some(s), Some(w)) => Some((s, w)),
        (None, None) => match (q("strong_score")?, q("weak_score")?) {
            (Some(s), Some(w)) => Some((s, w)),
            (None, None) => None,
            _ => return Err(bad(path, line, "needs both \"strong_score\" and \"weak_score\"")),
        },
        _ => return Err(bad(path, line, "needs both \"strong_correct\" and \"weak_correct\"")),
    };
    let Some((s, w)) = pair else {
        return Err(bad(path, line, "no \"label\", and no strong/weak results (strong_correct/weak_correct or strong_score/weak_score)"));
    };
    Ok(Example { id, query, cloud: s > w, qualities: Some((s, w)), contaminated })
}

/// Parses JSONL text (blank lines skipped). `path` names it in errors.
pub fn parse_jsonl(text: &str, path: &Path) -> Result<Vec<Example>, RouterError> {
    let mut out = Vec::new();
    for (i, l) in text.lines().enumerate() {
        if l.trim().is_empty() {
            continue;
        }
        let v: Value = serde_json::from_str(l).map_err(|e| bad(path, i + 1, format!("invalid JSON: {e}")))?;
        out.push(parse_record(&v, path, i + 1)?);
    }
    if out.is_empty() {
        return Err(bad(path, 0, "no records"));
    }
    Ok(out)
}

/// Reads a JSONL file.
pub fn load_jsonl(path: &Path) -> Result<Vec<Example>, RouterError> {
    let text = std::fs::read_to_string(path).map_err(|source| RouterError::Io { path: path.to_path_buf(), source })?;
    parse_jsonl(&text, path)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn one(s: &str) -> Result<Example, RouterError> {
        parse_jsonl(s, Path::new("t.jsonl")).map(|mut v| v.remove(0))
    }

    #[test]
    fn both_formats_and_their_targets() {
        let e = one(r#"{"id": "a", "query": "q", "label": "cloud", "category": "x"}"#).unwrap();
        assert!(e.cloud && e.qualities.is_none());
        assert_eq!((e.target(LabelMode::Hard), e.target(LabelMode::Soft)), (1.0, 1.0));
        let e = one(r#"{"query": "q", "label": "local"}"#).unwrap();
        assert_eq!(e.id, Value::from(1));
        assert_eq!(e.target(LabelMode::Soft), 0.0);
        // Strong ok, weak failed -> cloud; both ok -> tie (soft 0.5); weak only -> 0.
        let e = one(r#"{"id": 1, "query": "q", "strong_correct": true, "weak_correct": false}"#).unwrap();
        assert!(e.cloud);
        assert_eq!(e.target(LabelMode::Soft), 1.0);
        let e = one(r#"{"id": 1, "query": "q", "strong_correct": true, "weak_correct": true, "contaminated": true}"#).unwrap();
        assert!(!e.cloud && e.contaminated);
        assert_eq!((e.target(LabelMode::Hard), e.target(LabelMode::Soft)), (0.0, 0.5));
        let e = one(r#"{"id": 1, "query": "q", "strong_correct": false, "weak_correct": true}"#).unwrap();
        assert_eq!(e.target(LabelMode::Soft), 0.0);
        // Judge scores: a gain of 4.5 on the 1-10 scale is d = 0.5.
        let e = one(r#"{"id": "m", "query": "q", "strong_score": 9.5, "weak_score": 5.0}"#).unwrap();
        assert!(e.cloud);
        assert!((e.target(LabelMode::Soft) - 0.75).abs() < 1e-6);
    }

    #[test]
    fn bad_records_name_the_line() {
        let text = "{\"query\": \"a\", \"label\": \"local\"}\n\n{\"query\": \"b\", \"label\": \"maybe\"}\n";
        match parse_jsonl(text, Path::new("x.jsonl")) {
            Err(RouterError::Data { line, why, .. }) => {
                assert_eq!(line, 3);
                assert!(why.contains("label"), "{why}");
            }
            other => panic!("{other:?}"),
        }
        for bad in [
            r#"{"label": "local"}"#,
            r#"{"query": 5, "label": "local"}"#,
            r#"{"query": "q"}"#,
            r#"{"query": "q", "strong_correct": true}"#,
            r#"{"query": "q", "strong_score": "high", "weak_score": 2}"#,
            r#"[1, 2]"#,
            r#"{"query": "#,
        ] {
            assert!(matches!(one(bad), Err(RouterError::Data { line: 1, .. })), "{bad}");
        }
        assert!(matches!(parse_jsonl("\n\n", Path::new("e")), Err(RouterError::Data { .. })));
    }
}
