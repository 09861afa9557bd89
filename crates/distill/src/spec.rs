//! The data-generation spec (`SPEC.toml`) of `hearth distill generate`.
//!
//! The file is parsed into a TOML table and walked by hand so that every
//! problem is a typed [`SpecError`] naming its dotted key path
//! (`tasks[1].template: ...`); unknown keys are errors, so a typo cannot
//! silently leave a default in force. Relative paths (`topics.from`,
//! `tasks[].schema_file`) are resolved against the spec file's directory.
//! The shipped, commented example is `docs/distill-example/spec.toml`.
//!
//! Prompt templates are MiniJinja, compiled in `hearth-chat`'s sandbox
//! (fuel, recursion and output limits, no loader) when the spec is parsed,
//! so a template syntax error is reported here with its task's key path.
//!
//! Deliberately absent: includes/inheritance between specs, per-task teacher
//! overrides, and per-topic weights (every cell gets `samples_per_cell`).

use hearth_chat::{ChatTemplate, TemplateLimits};
use serde_json::Value as Json;
use std::path::{Path, PathBuf};
use toml::{Table, Value};

/// What is wrong with a spec, and where.
#[derive(Clone, Debug, PartialEq, thiserror::Error)]
pub enum SpecError {
    #[error("spec is not valid TOML: {0}")]
    Syntax(String),
    #[error("{field}: required but missing")]
    Missing { field: String },
    #[error("{field}: expected {expected}")]
    WrongType { field: String, expected: &'static str },
    #[error("{field}: {why}")]
    Invalid { field: String, why: String },
    #[error("{field}: unknown key")]
    Unknown { field: String },
}

impl SpecError {
    /// The dotted key path the error is about (empty for syntax errors).
    pub fn field(&self) -> &str {
        match self {
            SpecError::Syntax(_) => "",
            SpecError::Missing { field } | SpecError::WrongType { field, .. } | SpecError::Invalid { field, .. } | SpecError::Unknown { field } => field,
        }
    }
}

type R<T> = std::result::Result<T, SpecError>;

/// Where topics come from.
#[derive(Clone, Debug, PartialEq)]
pub enum TopicSource {
    /// Named topics; each is its own cluster.
    List(Vec<String>),
    /// The user's documents (files matched by a `dir/*.ext` pattern or every
    /// `.md`/`.txt` file of a directory), chunked into grounding snippets;
    /// the cluster of a snippet is its document.
    Documents { pattern: PathBuf, chunk_chars: usize, max_chunks_per_doc: usize },
}

/// One task type: a prompt template and, for structured tasks, the JSON
/// schema the teacher's answer must satisfy.
#[derive(Clone, Debug)]
pub struct TaskSpec {
    pub name: String,
    /// MiniJinja source; variables: `topic`, `snippet` (document topics
    /// only, else empty), `difficulty`, `task`, `sample`.
    pub template: String,
    /// Optional system message sent with every prompt of the task.
    pub system: Option<String>,
    pub schema: Option<Json>,
    /// The answer is short and checkable (exact match / F1 in `eval`).
    pub closed_form: bool,
}

/// Teacher sampling parameters (they are part of every call's resume key).
#[derive(Clone, Debug, PartialEq)]
pub struct TeacherParams {
    /// Model name sent upstream (URL teachers) and recorded in the metadata.
    pub model: String,
    /// Name of the environment variable holding the API key (never the key).
    pub api_key_env: Option<String>,
    pub temperature: f32,
    pub max_tokens: u32,
    pub seed: u64,
    /// Local teachers: store this many top log-probabilities per answer
    /// token (`teacher_topk`); 0 = none.
    pub top_k_logprobs: usize,
    /// Deadline of one call, seconds.
    pub timeout_s: f64,
    /// Stop the run after this many failed calls in a row.
    pub max_consecutive_errors: usize,
}

/// USD per million tokens.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct Prices {
    pub input_per_mtok: f64,
    pub output_per_mtok: f64,
}

impl Prices {
    pub fn cost(&self, input_tokens: u64, output_tokens: u64) -> f64 {
        (input_tokens as f64 * self.input_per_mtok + output_tokens as f64 * self.output_per_mtok) / 1e6
    }
}

#[derive(Clone, Debug, PartialEq)]
pub struct DedupSpec {
    /// Drop records whose normalised text hash repeats.
    pub exact: bool,
    /// Jaccard similarity (of word shingles) at or above which a record is a
    /// near-duplicate of an earlier one; 1.0 disables the MinHash stage.
    pub near_threshold: f64,
    pub shingle_words: usize,
    pub num_perm: usize,
    pub bands: usize,
    /// What is compared: `answer`, `prompt` or `both`.
    pub field: DedupField,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DedupField {
    Answer,
    Prompt,
    Both,
}

#[derive(Clone, Debug, PartialEq)]
pub struct SplitSpec {
    pub train: f64,
    pub valid: f64,
    pub test: f64,
    pub seed: u64,
}

#[derive(Clone, Debug, PartialEq)]
pub struct JudgeSpec {
    pub enabled: bool,
    /// Records scoring below this (1–10) are dropped.
    pub min_score: u32,
    /// MiniJinja; variables `question`, `answer`, `topic`, `task`.
    pub template: String,
    pub max_tokens: u32,
}

/// The default judge prompt.
pub const DEFAULT_JUDGE_TEMPLATE: &str = "Rate the answer to the question below for correctness and usefulness on a scale from 1 (useless) to 10 (perfect). Reply with the number only.\n\nQuestion: {{ question }}\n\nAnswer: {{ answer }}\n\nScore:";

/// A parsed, checked spec.
#[derive(Clone, Debug)]
pub struct Spec {
    pub name: String,
    pub topics: TopicSource,
    pub tasks: Vec<TaskSpec>,
    pub difficulties: Vec<String>,
    pub samples_per_cell: usize,
    pub teacher: TeacherParams,
    pub prices: Prices,
    pub budget_usd: Option<f64>,
    pub dedup: DedupSpec,
    pub split: SplitSpec,
    pub judge: JudgeSpec,
    /// Retry a structured task once when the answer fails its schema.
    pub retry_invalid: bool,
}

/// Walks one table, remembering which keys were read so the rest can be
/// reported as unknown.
struct Walk<'a> {
    table: &'a Table,
    path: String,
    seen: Vec<&'static str>,
}

impl<'a> Walk<'a> {
    fn new(table: &'a Table, path: impl Into<String>) -> Walk<'a> {
        Walk { table, path: path.into(), seen: Vec::new() }
    }

    fn key(&self, k: &str) -> String {
        if self.path.is_empty() {
            k.to_string()
        } else {
            format!("{}.{k}", self.path)
        }
    }

    fn get(&mut self, k: &'static str) -> Option<&'a Value> {
        self.seen.push(k);
        self.table.get(k)
    }

    fn str_opt(&mut self, k: &'static str) -> R<Option<String>> {
        match self.get(k) {
            None => Ok(None),
            Some(Value::String(s)) => Ok(Some(s.clone())),
            Some(_) => Err(SpecError::WrongType { field: self.key(k), expected: "a string" }),
        }
    }

    fn f64_opt(&mut self, k: &'static str) -> R<Option<f64>> {
        match self.get(k) {
            None => Ok(None),
            Some(Value::Float(f)) if f.is_finite() => Ok(Some(*f)),
            Some(Value::Integer(i)) => Ok(Some(*i as f64)),
            Some(_) => Err(SpecError::WrongType { field: self.key(k), expected: "a finite number" }),
        }
    }

    fn u64_opt(&mut self, k: &'static str) -> R<Option<u64>> {
        match self.get(k) {
            None => Ok(None),
            Some(Value::Integer(i)) if *i >= 0 => Ok(Some(*i as u64)),
            Some(_) => Err(SpecError::WrongType { field: self.key(k), expected: "a non-negative integer" }),
        }
    }

    fn bool_opt(&mut self, k: &'static str) -> R<Option<bool>> {
        match self.get(k) {
            None => Ok(None),
            Some(Value::Boolean(b)) => Ok(Some(*b)),
            Some(_) => Err(SpecError::WrongType { field: self.key(k), expected: "true or false" }),
        }
    }

    fn strings_opt(&mut self, k: &'static str) -> R<Option<Vec<String>>> {
        match self.get(k) {
            None => Ok(None),
            Some(Value::Array(a)) => {
                let mut v = Vec::with_capacity(a.len());
                for (i, x) in a.iter().enumerate() {
                    match x {
                        Value::String(s) if !s.trim().is_empty() => v.push(s.clone()),
                        _ => return Err(SpecError::WrongType { field: format!("{}[{i}]", self.key(k)), expected: "a non-empty string" }),
                    }
                }
                Ok(Some(v))
            }
            Some(_) => Err(SpecError::WrongType { field: self.key(k), expected: "an array of strings" }),
        }
    }

    fn table_opt(&mut self, k: &'static str) -> R<Option<&'a Table>> {
        match self.get(k) {
            None => Ok(None),
            Some(Value::Table(t)) => Ok(Some(t)),
            Some(_) => Err(SpecError::WrongType { field: self.key(k), expected: "a table" }),
        }
    }

    fn invalid(&self, k: &str, why: impl Into<String>) -> SpecError {
        SpecError::Invalid { field: self.key(k), why: why.into() }
    }

    fn finish(self) -> R<()> {
        let mut unknown: Vec<&String> = self.table.keys().filter(|k| !self.seen.contains(&k.as_str())).collect();
        unknown.sort();
        match unknown.first() {
            Some(k) => Err(SpecError::Unknown { field: self.key(k) }),
            None => Ok(()),
        }
    }
}

fn toml_to_json(v: &Value) -> Json {
    match v {
        Value::String(s) => Json::String(s.clone()),
        Value::Integer(i) => Json::from(*i),
        Value::Float(f) => serde_json::Number::from_f64(*f).map_or(Json::Null, Json::Number),
        Value::Boolean(b) => Json::Bool(*b),
        Value::Datetime(d) => Json::String(d.to_string()),
        Value::Array(a) => Json::Array(a.iter().map(toml_to_json).collect()),
        Value::Table(t) => Json::Object(t.iter().map(|(k, v)| (k.clone(), toml_to_json(v))).collect()),
    }
}

/// Compiles a prompt template in the sandbox, naming `field` on failure.
pub fn compile_template(source: &str, field: &str) -> R<ChatTemplate> {
    ChatTemplate::new(source, TemplateLimits::default()).map_err(|e| SpecError::Invalid { field: field.to_string(), why: format!("template: {e}") })
}

/// Checks that `schema` is a usable JSON schema (compiles in the validator).
pub fn check_schema(schema: &Json, field: &str) -> R<()> {
    jsonschema::validator_for(schema).map(|_| ()).map_err(|e| SpecError::Invalid { field: field.to_string(), why: format!("not a usable JSON schema: {e}") })
}

impl Spec {
    /// Reads and parses `path`.
    pub fn load(path: &Path) -> crate::Result<Spec> {
        let text = std::fs::read_to_string(path).map_err(crate::error::io_at(path))?;
        let base = path.parent().unwrap_or(Path::new("."));
        Ok(Spec::parse(&text, base)?)
    }

    /// Parses spec text; relative paths are resolved against `base_dir`.
    pub fn parse(text: &str, base_dir: &Path) -> R<Spec> {
        let root: Table = text.parse::<Table>().map_err(|e| SpecError::Syntax(e.to_string().trim().to_string()))?;
        let mut w = Walk::new(&root, "");
        let name = w.str_opt("name")?.unwrap_or_else(|| "distill".into());
        let samples_per_cell = w.u64_opt("samples_per_cell")?.unwrap_or(1) as usize;
        if samples_per_cell == 0 || samples_per_cell > 10_000 {
            return Err(w.invalid("samples_per_cell", "must be between 1 and 10000"));
        }
        let budget_usd = w.f64_opt("budget_usd")?;
        if budget_usd.is_some_and(|b| b < 0.0) {
            return Err(w.invalid("budget_usd", "must not be negative"));
        }
        let difficulties = w.strings_opt("difficulty")?.unwrap_or_else(|| vec!["standard".into()]);
        if difficulties.is_empty() {
            return Err(w.invalid("difficulty", "needs at least one level"));
        }
        let retry_invalid = w.bool_opt("retry_invalid")?.unwrap_or(true);

        // [topics], or the shorthand `topics_from = "docs/*.md"`.
        let topics_from = w.str_opt("topics_from")?;
        let topics = match w.table_opt("topics")? {
            None => match topics_from {
                Some(f) => TopicSource::Documents { pattern: base_dir.join(f), chunk_chars: 800, max_chunks_per_doc: 8 },
                None => return Err(SpecError::Missing { field: "topics".into() }),
            },
            Some(_) if topics_from.is_some() => return Err(w.invalid("topics_from", "give either topics_from or a [topics] table, not both")),
            Some(t) => {
                let mut tw = Walk::new(t, "topics");
                let list = tw.strings_opt("list")?;
                let from = tw.str_opt("from")?;
                let chunk_chars = tw.u64_opt("chunk_chars")?.unwrap_or(800) as usize;
                let max_chunks = tw.u64_opt("max_chunks_per_doc")?.unwrap_or(8) as usize;
                let src = match (list, from) {
                    (Some(_), Some(_)) => return Err(tw.invalid("from", "give either topics.list or topics.from, not both")),
                    (None, None) => return Err(SpecError::Missing { field: "topics.list".into() }),
                    (Some(l), None) => {
                        if l.is_empty() {
                            return Err(tw.invalid("list", "needs at least one topic"));
                        }
                        let mut seen = std::collections::HashSet::new();
                        if let Some(d) = l.iter().find(|t| !seen.insert(t.trim().to_lowercase())) {
                            return Err(tw.invalid("list", format!("topic {d:?} is listed twice")));
                        }
                        TopicSource::List(l)
                    }
                    (None, Some(f)) => {
                        if chunk_chars < 50 {
                            return Err(tw.invalid("chunk_chars", "must be at least 50"));
                        }
                        if max_chunks == 0 {
                            return Err(tw.invalid("max_chunks_per_doc", "must be at least 1"));
                        }
                        TopicSource::Documents { pattern: base_dir.join(f), chunk_chars, max_chunks_per_doc: max_chunks }
                    }
                };
                tw.finish()?;
                src
            }
        };

        // [[tasks]]
        let tasks = match w.get("tasks") {
            None => return Err(SpecError::Missing { field: "tasks".into() }),
            Some(Value::Array(a)) if !a.is_empty() => {
                let mut tasks = Vec::new();
                for (i, v) in a.iter().enumerate() {
                    let path = format!("tasks[{i}]");
                    let Value::Table(t) = v else {
                        return Err(SpecError::WrongType { field: path, expected: "a table ([[tasks]])" });
                    };
                    let mut tw = Walk::new(t, path.clone());
                    let name = tw.str_opt("name")?.ok_or_else(|| SpecError::Missing { field: format!("{path}.name") })?;
                    if tasks.iter().any(|x: &TaskSpec| x.name == name) {
                        return Err(tw.invalid("name", format!("task {name:?} is defined twice")));
                    }
                    let template = tw.str_opt("template")?.ok_or_else(|| SpecError::Missing { field: format!("{path}.template") })?;
                    compile_template(&template, &tw.key("template"))?;
                    let system = tw.str_opt("system")?;
                    let closed_form = tw.bool_opt("closed_form")?.unwrap_or(false);
                    let inline = tw.get("schema");
                    let file = tw.str_opt("schema_file")?;
                    let schema = match (inline, file) {
                        (Some(_), Some(_)) => return Err(tw.invalid("schema_file", "give either schema or schema_file, not both")),
                        (Some(Value::Table(s)), None) => Some(toml_to_json(&Value::Table(s.clone()))),
                        (Some(Value::String(s)), None) => Some(
                            serde_json::from_str::<Json>(s).map_err(|e| tw.invalid("schema", format!("not JSON: {e}")))?,
                        ),
                        (Some(_), None) => return Err(SpecError::WrongType { field: tw.key("schema"), expected: "a table or a JSON string" }),
                        (None, Some(f)) => {
                            let p = base_dir.join(&f);
                            let s = std::fs::read_to_string(&p).map_err(|e| tw.invalid("schema_file", format!("{}: {e}", p.display())))?;
                            Some(serde_json::from_str::<Json>(&s).map_err(|e| tw.invalid("schema_file", format!("{}: not JSON: {e}", p.display())))?)
                        }
                        (None, None) => None,
                    };
                    if let Some(s) = &schema {
                        check_schema(s, &tw.key("schema"))?;
                    }
                    tw.finish()?;
                    tasks.push(TaskSpec { name, template, system, schema, closed_form });
                }
                tasks
            }
            Some(Value::Array(_)) => return Err(w.invalid("tasks", "needs at least one task")),
            Some(_) => return Err(SpecError::WrongType { field: "tasks".into(), expected: "an array of tables ([[tasks]])" }),
        };

        // [teacher]
        let teacher = {
            let empty = Table::new();
            let t = w.table_opt("teacher")?.unwrap_or(&empty);
            let mut tw = Walk::new(t, "teacher");
            let model = tw.str_opt("model")?.unwrap_or_else(|| "teacher".into());
            let api_key_env = tw.str_opt("api_key_env")?;
            if let Some(k) = &api_key_env {
                // A variable name, never a key: refuse anything that does not
                // look like one (without echoing it).
                if k.is_empty() || !k.chars().all(|c| c.is_ascii_alphanumeric() || c == '_') || k.starts_with("sk-") {
                    return Err(tw.invalid("api_key_env", "must be the NAME of an environment variable (letters, digits, _), not a key"));
                }
            }
            let temperature = tw.f64_opt("temperature")?.unwrap_or(0.7);
            if !(0.0..=2.0).contains(&temperature) {
                return Err(tw.invalid("temperature", "must be between 0 and 2"));
            }
            let max_tokens = tw.u64_opt("max_tokens")?.unwrap_or(256);
            if max_tokens == 0 || max_tokens > 1 << 20 {
                return Err(tw.invalid("max_tokens", "must be between 1 and 1048576"));
            }
            let seed = tw.u64_opt("seed")?.unwrap_or(0);
            let top_k_logprobs = tw.u64_opt("top_k_logprobs")?.unwrap_or(0) as usize;
            if top_k_logprobs > 64 {
                return Err(tw.invalid("top_k_logprobs", "at most 64"));
            }
            let timeout_s = tw.f64_opt("timeout_s")?.unwrap_or(120.0);
            if timeout_s <= 0.0 {
                return Err(tw.invalid("timeout_s", "must be positive"));
            }
            let max_consecutive_errors = tw.u64_opt("max_consecutive_errors")?.unwrap_or(5).max(1) as usize;
            tw.finish()?;
            TeacherParams { model, api_key_env, temperature: temperature as f32, max_tokens: max_tokens as u32, seed, top_k_logprobs, timeout_s, max_consecutive_errors }
        };

        // [prices]
        let prices = match w.table_opt("prices")? {
            None => Prices::default(),
            Some(t) => {
                let mut pw = Walk::new(t, "prices");
                let input = pw.f64_opt("input_per_mtok")?.unwrap_or(0.0);
                let output = pw.f64_opt("output_per_mtok")?.unwrap_or(0.0);
                if input < 0.0 {
                    return Err(pw.invalid("input_per_mtok", "must not be negative"));
                }
                if output < 0.0 {
                    return Err(pw.invalid("output_per_mtok", "must not be negative"));
                }
                pw.finish()?;
                Prices { input_per_mtok: input, output_per_mtok: output }
            }
        };

        // [dedup]
        let dedup = {
            let empty = Table::new();
            let t = w.table_opt("dedup")?.unwrap_or(&empty);
            let mut dw = Walk::new(t, "dedup");
            let exact = dw.bool_opt("exact")?.unwrap_or(true);
            let near_threshold = dw.f64_opt("near_threshold")?.unwrap_or(0.8);
            if !(0.0..=1.0).contains(&near_threshold) || near_threshold == 0.0 {
                return Err(dw.invalid("near_threshold", "must be in (0, 1] (1 disables near-duplicate removal)"));
            }
            let shingle_words = dw.u64_opt("shingle_words")?.unwrap_or(3) as usize;
            if shingle_words == 0 || shingle_words > 16 {
                return Err(dw.invalid("shingle_words", "must be between 1 and 16"));
            }
            let num_perm = dw.u64_opt("num_perm")?.unwrap_or(128) as usize;
            let bands = dw.u64_opt("bands")?.unwrap_or(32) as usize;
            if num_perm == 0 || num_perm > 1024 {
                return Err(dw.invalid("num_perm", "must be between 1 and 1024"));
            }
            if bands == 0 || !num_perm.is_multiple_of(bands) {
                return Err(dw.invalid("bands", format!("must divide num_perm ({num_perm})")));
            }
            let field = match dw.str_opt("field")?.as_deref() {
                None | Some("answer") => DedupField::Answer,
                Some("prompt") => DedupField::Prompt,
                Some("both") => DedupField::Both,
                Some(o) => return Err(dw.invalid("field", format!("{o:?}: expected \"answer\", \"prompt\" or \"both\""))),
            };
            dw.finish()?;
            DedupSpec { exact, near_threshold, shingle_words, num_perm, bands, field }
        };

        // [split]
        let split = {
            let empty = Table::new();
            let t = w.table_opt("split")?.unwrap_or(&empty);
            let mut sw = Walk::new(t, "split");
            let train = sw.f64_opt("train")?.unwrap_or(0.8);
            let valid = sw.f64_opt("valid")?.unwrap_or(0.1);
            let test = sw.f64_opt("test")?.unwrap_or(0.1);
            for (k, v) in [("train", train), ("valid", valid), ("test", test)] {
                if !(0.0..=1.0).contains(&v) {
                    return Err(sw.invalid(k, "must be between 0 and 1"));
                }
            }
            if ((train + valid + test) - 1.0).abs() > 1e-6 {
                return Err(sw.invalid("train", format!("train + valid + test must be 1 (is {})", train + valid + test)));
            }
            let seed = sw.u64_opt("seed")?.unwrap_or(0);
            sw.finish()?;
            SplitSpec { train, valid, test, seed }
        };

        // [judge]
        let judge = {
            let empty = Table::new();
            let t = w.table_opt("judge")?.unwrap_or(&empty);
            let mut jw = Walk::new(t, "judge");
            let enabled = jw.bool_opt("enabled")?.unwrap_or(false);
            let min_score = jw.u64_opt("min_score")?.unwrap_or(6);
            if !(1..=10).contains(&min_score) {
                return Err(jw.invalid("min_score", "must be between 1 and 10"));
            }
            let template = jw.str_opt("template")?.unwrap_or_else(|| DEFAULT_JUDGE_TEMPLATE.into());
            compile_template(&template, &jw.key("template"))?;
            let max_tokens = jw.u64_opt("max_tokens")?.unwrap_or(8).clamp(1, 4096) as u32;
            jw.finish()?;
            JudgeSpec { enabled, min_score: min_score as u32, template, max_tokens }
        };
        w.finish()?;
        Ok(Spec { name, topics, tasks, difficulties, samples_per_cell, teacher, prices, budget_usd, dedup, split, judge, retry_invalid })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MIN: &str = "[topics]\nlist = [\"a\", \"b\"]\n[[tasks]]\nname = \"define\"\ntemplate = \"Define {{ topic }}.\"\n";

    fn err(extra: &str) -> SpecError {
        Spec::parse(&format!("{MIN}{extra}"), Path::new(".")).expect_err("should fail")
    }

    #[test]
    fn minimal_spec_parses_with_defaults() {
        let s = Spec::parse(MIN, Path::new(".")).unwrap();
        assert_eq!(s.topics, TopicSource::List(vec!["a".into(), "b".into()]));
        assert_eq!(s.tasks.len(), 1);
        assert_eq!(s.difficulties, vec!["standard".to_string()]);
        assert_eq!(s.samples_per_cell, 1);
        assert_eq!(s.split.train, 0.8);
        assert!(!s.judge.enabled);
        assert_eq!(s.dedup.field, DedupField::Answer);
    }

    #[test]
    fn errors_are_typed_and_name_the_field() {
        assert_eq!(err("[teacher]\ntemperature = \"hot\"\n").field(), "teacher.temperature");
        assert!(matches!(err("[teacher]\ntemperature = \"hot\"\n"), SpecError::WrongType { .. }));
        assert_eq!(err("[teacher]\ntemprature = 0.5\n"), SpecError::Unknown { field: "teacher.temprature".into() });
        assert_eq!(err("[split]\ntrain = 0.5\n").field(), "split.train");
        assert_eq!(err("[dedup]\nbands = 7\n").field(), "dedup.bands");
        assert_eq!(err("[[tasks]]\nname = \"x\"\n"), SpecError::Missing { field: "tasks[1].template".into() });
        assert_eq!(err("[[tasks]]\nname = \"y\"\ntemplate = \"{{ broken\"\n").field(), "tasks[1].template");
        assert_eq!(err("[[tasks]]\nname = \"z\"\ntemplate = \"t\"\nschema = { type = 12 }\n").field(), "tasks[1].schema");
        assert_eq!(err("[teacher]\napi_key_env = \"sk-abc123\"\n").field(), "teacher.api_key_env");
        assert!(matches!(Spec::parse("[[tasks]]\nname=\"a\"\ntemplate=\"b\"\n", Path::new(".")), Err(SpecError::Missing { field }) if field == "topics"));
        assert!(matches!(Spec::parse("topics = [", Path::new(".")), Err(SpecError::Syntax(_))));
        assert_eq!(Spec::parse(&format!("surprise = 1\n{MIN}"), Path::new(".")).unwrap_err(), SpecError::Unknown { field: "surprise".into() });
        assert_eq!(Spec::parse(&format!("topics_from = \"d\"\n{MIN}"), Path::new(".")).unwrap_err().field(), "topics_from");
        let s = Spec::parse("topics_from = \"notes/*.md\"\n[[tasks]]\nname = \"a\"\ntemplate = \"b\"\n", Path::new("/x")).unwrap();
        assert_eq!(s.topics, TopicSource::Documents { pattern: PathBuf::from("/x/notes/*.md"), chunk_chars: 800, max_chunks_per_doc: 8 });
    }

    #[test]
    fn inline_schema_becomes_json() {
        let s = Spec::parse(
            &format!("{MIN}[[tasks]]\nname = \"s\"\ntemplate = \"t\"\nschema = {{ type = \"object\", required = [\"term\"], properties = {{ term = {{ type = \"string\" }} }} }}\n"),
            Path::new("."),
        )
        .unwrap();
        let schema = s.tasks[1].schema.as_ref().unwrap();
        assert_eq!(schema["required"][0], "term");
    }
}
