//! `hearth distill generate`: a teacher writes a training set from a spec.
//!
//! # Pipeline
//!
//! 1. **Grid.** Topic units (named topics, or snippets chunked from the
//!    user's documents) × task types × difficulty levels × samples per cell.
//!    Each cell's prompt is the task's MiniJinja template rendered in
//!    `hearth-chat`'s sandbox with `topic`, `snippet`, `difficulty`, `task`,
//!    `sample`.
//! 2. **Teacher calls**, each guarded by the **budget**: before a call, its
//!    worst case (input bounded by one token per prompt byte plus template
//!    overhead, output by `max_tokens`) is priced; if spent + worst case
//!    would exceed the cap, the run stops cleanly before the call. So the
//!    total never exceeds the cap as long as the server honours
//!    `max_tokens`. Every finished call is appended (and flushed) to
//!    `DIR/calls.jsonl`, keyed by the SHA-256 of (kind, cell, sample,
//!    attempt, messages, teacher parameters); a later run with the same
//!    spec finds the key and reuses the stored answer instead of calling
//!    again, so an interrupted run resumes with zero repeated paid calls. A
//!    torn last line (killed mid-write) is skipped.
//! 3. **Schema validation** for structured tasks (full JSON Schema via the
//!    `jsonschema` crate; a fenced ```json block is unwrapped first).
//!    Invalid answers are counted, retried once with a different seed when
//!    `retry_invalid`, and never kept.
//! 4. **Dedup**: exact then MinHash near-duplicates ([`crate::dedup`]) on the
//!    answer (or prompt, or both), before judging so duplicates cost nothing.
//! 5. **Judge** (optional): the teacher scores each survivor 1–10 with the
//!    judge prompt; the first integer 1–10 in its reply is the score;
//!    records below `min_score` or without a parsable score are dropped.
//! 6. **Split** by topic cluster (a named topic, or a document), seeded, so
//!    no cluster appears in two of train/valid/test.
//! 7. **Output**: `DIR/{train,valid,test}.jsonl` (`{"messages": [...]}`,
//!    plus `teacher_topk` for local teachers asked for it), one metadata line
//!    per record in `DIR/{split}.meta.jsonl` (same order), and
//!    `DIR/report.json`. Outputs are rewritten from the ledger at the end of
//!    every run, so they always reflect every finished call.
//!
//! Failed calls (timeout, HTTP error, broken stream, garbage, privacy
//! refusal) are counted by kind and not stored, so a resumed run retries
//! them; `max_consecutive_errors` failures in a row stop the run cleanly
//! (outputs are still written from what finished).
//!
//! Deliberately absent: parallel calls (one at a time keeps the budget check
//! exact), Self-Instruct style bootstrapping of new tasks from generated
//! ones, and multi-turn conversations.

use crate::data::{Example, Message};
use crate::dedup::{dedup, DedupOptions, Verdict};
use crate::error::{io_at, DistillError, Result};
use crate::rng::Rng;
use crate::spec::{compile_template, DedupField, Spec, TopicSource};
use crate::teacher::{input_token_bound, Teacher, TeacherCall};
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value as Json};
use sha2::{Digest, Sha256};
use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::io::Write;
use std::path::{Path, PathBuf};

/// One topic to write about, with its split cluster.
#[derive(Clone, Debug, PartialEq)]
pub struct TopicUnit {
    pub topic: String,
    /// Records of one cluster always land in the same split.
    pub cluster: String,
    /// Grounding text (document topics), empty for named topics.
    pub snippet: String,
    /// Stable id within the spec (`topic` or `file#chunk`).
    pub id: String,
}

/// One grid cell × sample.
#[derive(Clone, Debug, PartialEq)]
pub struct Cell {
    pub unit: usize,
    pub task: usize,
    pub difficulty: String,
    pub sample: usize,
}

/// Files matched by `pattern`: a directory (its `.md`/`.txt` files), a path
/// whose last component holds one `*`, or a single file. Sorted.
pub fn match_files(pattern: &Path) -> Result<Vec<PathBuf>> {
    if pattern.is_dir() {
        let mut v: Vec<PathBuf> = std::fs::read_dir(pattern)
            .map_err(io_at(pattern))?
            .filter_map(|e| e.ok().map(|e| e.path()))
            .filter(|p| p.is_file() && p.extension().is_some_and(|e| e == "md" || e == "txt"))
            .collect();
        v.sort();
        return Ok(v);
    }
    let name = pattern.file_name().map(|n| n.to_string_lossy().to_string()).unwrap_or_default();
    if let Some((pre, post)) = name.split_once('*') {
        let dir = pattern.parent().unwrap_or(Path::new("."));
        let mut v: Vec<PathBuf> = std::fs::read_dir(dir)
            .map_err(io_at(dir))?
            .filter_map(|e| e.ok().map(|e| e.path()))
            .filter(|p| {
                p.is_file()
                    && p.file_name().is_some_and(|n| {
                        let n = n.to_string_lossy();
                        n.len() >= pre.len() + post.len() && n.starts_with(pre) && n.ends_with(post)
                    })
            })
            .collect();
        v.sort();
        return Ok(v);
    }
    if pattern.is_file() {
        return Ok(vec![pattern.to_path_buf()]);
    }
    Err(DistillError::Config(format!("topics.from: {} matches no file", pattern.display())))
}

/// Splits `text` into chunks of about `chunk_chars` characters at paragraph
/// boundaries (a longer paragraph is cut at a space).
pub fn chunk_text(text: &str, chunk_chars: usize) -> Vec<String> {
    let mut out = Vec::new();
    let mut cur = String::new();
    let push = |cur: &mut String, out: &mut Vec<String>| {
        let t = cur.trim();
        if !t.is_empty() {
            out.push(t.to_string());
        }
        cur.clear();
    };
    for para in text.split("\n\n").map(str::trim).filter(|p| !p.is_empty()) {
        let mut rest = para;
        while rest.chars().count() > chunk_chars {
            push(&mut cur, &mut out);
            let cut = rest.char_indices().nth(chunk_chars).map_or(rest.len(), |(i, _)| i);
            let cut = rest[..cut].rfind(char::is_whitespace).filter(|&i| i > 0).unwrap_or(cut);
            out.push(rest[..cut].trim().to_string());
            rest = rest[cut..].trim_start();
        }
        if !cur.is_empty() && cur.chars().count() + rest.chars().count() > chunk_chars {
            push(&mut cur, &mut out);
        }
        if !cur.is_empty() {
            cur.push_str("\n\n");
        }
        cur.push_str(rest);
    }
    push(&mut cur, &mut out);
    out
}

/// The topic units of a spec.
pub fn topic_units(spec: &Spec) -> Result<Vec<TopicUnit>> {
    match &spec.topics {
        TopicSource::List(l) => Ok(l.iter().map(|t| TopicUnit { topic: t.clone(), cluster: t.clone(), snippet: String::new(), id: t.clone() }).collect()),
        TopicSource::Documents { pattern, chunk_chars, max_chunks_per_doc } => {
            let files = match_files(pattern)?;
            if files.is_empty() {
                return Err(DistillError::Config(format!("topics.from: {} matches no file", pattern.display())));
            }
            let mut units = Vec::new();
            for f in files {
                let text = std::fs::read_to_string(&f).map_err(io_at(&f))?;
                let fname = f.file_name().map(|n| n.to_string_lossy().to_string()).unwrap_or_default();
                let title = text
                    .lines()
                    .map(str::trim)
                    .find(|l| l.starts_with('#'))
                    .map(|l| l.trim_start_matches('#').trim().to_string())
                    .filter(|t| !t.is_empty())
                    .unwrap_or_else(|| f.file_stem().map(|s| s.to_string_lossy().to_string()).unwrap_or_default());
                for (i, c) in chunk_text(&text, *chunk_chars).into_iter().take(*max_chunks_per_doc).enumerate() {
                    units.push(TopicUnit { topic: title.clone(), cluster: fname.clone(), snippet: c, id: format!("{fname}#{i}") });
                }
            }
            Ok(units)
        }
    }
}

/// The grid, in a fixed order (unit, task, difficulty, sample).
pub fn cells(spec: &Spec, n_units: usize) -> Vec<Cell> {
    let mut v = Vec::new();
    for unit in 0..n_units {
        for task in 0..spec.tasks.len() {
            for d in &spec.difficulties {
                for sample in 0..spec.samples_per_cell {
                    v.push(Cell { unit, task, difficulty: d.clone(), sample });
                }
            }
        }
    }
    v
}

/// One line of `calls.jsonl`: a finished, paid teacher call.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct CallRecord {
    pub key: String,
    /// `answer` or `judge`.
    pub kind: String,
    pub cell: String,
    pub attempt: u32,
    pub prompt_tokens: u64,
    pub completion_tokens: u64,
    pub usage_estimated: bool,
    pub cost_usd: f64,
    pub seconds: f64,
    pub text: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub topk: Option<Vec<Vec<(u32, f32)>>>,
}

/// The append-only call ledger.
pub struct Ledger {
    path: PathBuf,
    file: std::fs::File,
    done: HashMap<String, CallRecord>,
    /// Lines that did not parse (a torn write from a killed run).
    pub bad_lines: usize,
    /// USD of every call in the ledger, this run's and earlier ones.
    pub spent_usd: f64,
}

impl Ledger {
    pub fn open(path: &Path) -> Result<Ledger> {
        let mut done = HashMap::new();
        let (mut bad_lines, mut spent) = (0, 0.0);
        let mut needs_newline = false;
        if path.exists() {
            let text = std::fs::read_to_string(path).map_err(io_at(path))?;
            needs_newline = !text.is_empty() && !text.ends_with('\n');
            for line in text.lines().filter(|l| !l.trim().is_empty()) {
                match serde_json::from_str::<CallRecord>(line) {
                    Ok(r) => {
                        spent += r.cost_usd;
                        done.insert(r.key.clone(), r);
                    }
                    Err(_) => bad_lines += 1,
                }
            }
        }
        let mut file = std::fs::OpenOptions::new().create(true).append(true).open(path).map_err(io_at(path))?;
        if needs_newline {
            // Terminate a torn line so the next record starts on its own.
            file.write_all(b"\n").map_err(io_at(path))?;
        }
        Ok(Ledger { path: path.to_path_buf(), file, done, bad_lines, spent_usd: spent })
    }

    pub fn get(&self, key: &str) -> Option<&CallRecord> {
        self.done.get(key)
    }

    pub fn len(&self) -> usize {
        self.done.len()
    }

    pub fn is_empty(&self) -> bool {
        self.done.is_empty()
    }

    /// Appends and flushes one finished call.
    pub fn append(&mut self, r: CallRecord) -> Result<()> {
        let line = serde_json::to_string(&r).map_err(|e| DistillError::Config(format!("ledger record: {e}")))? + "\n";
        self.file.write_all(line.as_bytes()).map_err(io_at(&self.path))?;
        self.file.flush().map_err(io_at(&self.path))?;
        self.spent_usd += r.cost_usd;
        self.done.insert(r.key.clone(), r);
        Ok(())
    }
}

/// Why a run ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Stopped {
    Complete,
    /// The next call could have exceeded the budget.
    Budget,
    /// `max_consecutive_errors` failed calls in a row.
    Errors,
}

/// Counts of one run (`report.json`).
#[derive(Clone, Debug, Default, Serialize)]
pub struct GenerateReport {
    pub spec: String,
    pub teacher: String,
    pub topic_units: usize,
    pub cells: usize,
    pub stopped: Option<Stopped>,
    pub calls_made: usize,
    pub calls_reused: usize,
    pub calls_failed: BTreeMap<String, usize>,
    pub ledger_bad_lines: usize,
    pub input_tokens_this_run: u64,
    pub output_tokens_this_run: u64,
    pub cost_usd_this_run: f64,
    /// Every call in the ledger, all runs.
    pub cost_usd_total: f64,
    pub budget_usd: Option<f64>,
    pub answers: usize,
    pub schema_checked: usize,
    pub schema_invalid: usize,
    pub schema_retried: usize,
    pub dedup: crate::dedup::DedupCounts,
    pub judged: usize,
    pub judge_below_threshold: usize,
    pub judge_unparsed: usize,
    /// Survivors of dedup not judged because the run stopped first.
    pub judge_missing: usize,
    pub records: BTreeMap<String, usize>,
    pub clusters: BTreeMap<String, Vec<String>>,
}

/// Metadata sidecar line.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct RecordMeta {
    pub id: String,
    pub topic: String,
    pub cluster: String,
    pub task: String,
    pub difficulty: String,
    pub sample: usize,
    pub teacher: String,
    pub prompt_tokens: u64,
    pub completion_tokens: u64,
    pub cost_usd: f64,
    #[serde(default)]
    pub judge_score: Option<u32>,
    /// `None` for tasks without a schema.
    #[serde(default)]
    pub schema_valid: Option<bool>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub schema: Option<Json>,
    #[serde(default)]
    pub closed_form: bool,
    /// Later records dropped as exact / near duplicates of this one.
    #[serde(default)]
    pub exact_duplicates_removed: usize,
    #[serde(default)]
    pub near_duplicates_removed: usize,
}

fn sha256_hex(v: &Json) -> String {
    let bytes = serde_json::to_vec(v).unwrap_or_default();
    Sha256::digest(&bytes).iter().map(|b| format!("{b:02x}")).collect()
}

/// Extracts a JSON value from an answer: the whole text, or the body of a
/// fenced code block.
pub fn parse_json_answer(text: &str) -> Option<Json> {
    let t = text.trim();
    if let Ok(v) = serde_json::from_str::<Json>(t) {
        return Some(v);
    }
    let start = t.find("```")?;
    let body = &t[start + 3..];
    let body = body.strip_prefix("json").unwrap_or(body);
    let end = body.find("```")?;
    serde_json::from_str(body[..end].trim()).ok()
}

/// Checks `text` against a compiled schema.
pub fn schema_valid(validator: &jsonschema::Validator, text: &str) -> bool {
    parse_json_answer(text).is_some_and(|v| validator.is_valid(&v))
}

/// The first integer 1–10 in a judge's reply.
pub fn parse_score(reply: &str) -> Option<u32> {
    let mut num = String::new();
    for c in reply.chars().chain(std::iter::once(' ')) {
        if c.is_ascii_digit() {
            num.push(c);
        } else if !num.is_empty() {
            match num.parse::<u32>() {
                Ok(n) if (1..=10).contains(&n) => return Some(n),
                _ => num.clear(),
            }
        }
    }
    None
}

/// Assigns clusters to train/valid/test: clusters are shuffled with `seed`
/// and each goes to the split furthest below its target share of records.
/// With at least three clusters and non-zero ratios, every split gets one.
pub fn split_clusters(sizes: &BTreeMap<String, usize>, ratios: [f64; 3], seed: u64) -> BTreeMap<String, usize> {
    let mut names: Vec<&String> = sizes.keys().collect();
    Rng::new(seed).shuffle(&mut names);
    let total: usize = sizes.values().sum();
    let mut have = [0usize; 3];
    let mut out = BTreeMap::new();
    // Seed the smaller splits first so that they are not starved when
    // clusters are few.
    let mut order: Vec<usize> = (0..3).filter(|&s| ratios[s] > 0.0).collect();
    order.sort_by(|&a, &b| ratios[a].total_cmp(&ratios[b]));
    let mut it = names.into_iter();
    if sizes.len() >= order.len() {
        for &s in &order {
            if let Some(n) = it.next() {
                have[s] += sizes[n];
                out.insert(n.clone(), s);
            }
        }
    }
    for n in it {
        let s = (0..3)
            .filter(|&s| ratios[s] > 0.0)
            .max_by(|&a, &b| {
                let da = ratios[a] * total as f64 - have[a] as f64;
                let db = ratios[b] * total as f64 - have[b] as f64;
                da.total_cmp(&db).then(b.cmp(&a))
            })
            .unwrap_or(0);
        have[s] += sizes[n];
        out.insert(n.clone(), s);
    }
    out
}

/// Where the outputs go and run-level overrides.
#[derive(Clone, Debug)]
pub struct GenerateOptions {
    pub out: PathBuf,
    /// Overrides the spec's `budget_usd`.
    pub budget_usd: Option<f64>,
    /// Ignore (truncate) an existing ledger.
    pub fresh: bool,
}

struct Candidate {
    cell: usize,
    messages: Vec<Message>,
    answer: String,
    topk: Option<Vec<Vec<(u32, f32)>>>,
    prompt_tokens: u64,
    completion_tokens: u64,
    cost_usd: f64,
    schema_valid: Option<bool>,
    key: String,
}

/// Outcome of one guarded call.
enum CallOutcome {
    Done(CallRecord),
    Failed,
    Stop(Stopped),
}

struct Runner<'a> {
    spec: &'a Spec,
    teacher: &'a mut dyn Teacher,
    ledger: Ledger,
    budget: Option<f64>,
    report: GenerateReport,
    consecutive_errors: usize,
    log: &'a mut dyn FnMut(&str),
}

impl Runner<'_> {
    fn call(&mut self, kind: &str, cell_id: &str, attempt: u32, call: TeacherCall) -> Result<CallOutcome> {
        let p = &self.spec.teacher;
        let key = sha256_hex(&serde_json::json!({
            "kind": kind, "cell": cell_id, "attempt": attempt,
            "messages": call.messages, "schema": call.schema,
            "teacher": {"model": p.model, "temperature": call.temperature, "max_tokens": call.max_tokens, "seed": call.seed, "top_k": call.top_k},
        }));
        if let Some(r) = self.ledger.get(&key) {
            self.report.calls_reused += 1;
            return Ok(CallOutcome::Done(r.clone()));
        }
        if let Some(b) = self.budget {
            let worst = self.spec.prices.cost(input_token_bound(&call.messages), call.max_tokens as u64);
            if self.ledger.spent_usd + worst > b {
                (self.log)(&format!("budget: spent ${:.6}, next call could cost up to ${worst:.6}, cap ${b:.6}: stopping", self.ledger.spent_usd));
                return Ok(CallOutcome::Stop(Stopped::Budget));
            }
        }
        match self.teacher.complete(&call) {
            Ok(reply) => {
                self.consecutive_errors = 0;
                let cost = self.spec.prices.cost(reply.prompt_tokens, reply.completion_tokens);
                let r = CallRecord {
                    key,
                    kind: kind.into(),
                    cell: cell_id.into(),
                    attempt,
                    prompt_tokens: reply.prompt_tokens,
                    completion_tokens: reply.completion_tokens,
                    usage_estimated: reply.usage_estimated,
                    cost_usd: cost,
                    seconds: reply.seconds,
                    text: reply.text,
                    topk: reply.topk,
                };
                self.report.calls_made += 1;
                self.report.input_tokens_this_run += r.prompt_tokens;
                self.report.output_tokens_this_run += r.completion_tokens;
                self.report.cost_usd_this_run += cost;
                self.ledger.append(r.clone())?;
                Ok(CallOutcome::Done(r))
            }
            Err(e) => {
                (self.log)(&format!("{kind} call for {cell_id} failed: {e}"));
                *self.report.calls_failed.entry(e.kind().to_string()).or_default() += 1;
                self.consecutive_errors += 1;
                if self.consecutive_errors >= self.spec.teacher.max_consecutive_errors {
                    (self.log)(&format!("{} failed calls in a row: stopping", self.consecutive_errors));
                    return Ok(CallOutcome::Stop(Stopped::Errors));
                }
                Ok(CallOutcome::Failed)
            }
        }
    }
}

fn call_seed(base: u64, cell_id: &str, attempt: u32) -> u64 {
    base ^ crate::dedup::fnv1a(cell_id.as_bytes()).wrapping_add(attempt as u64 * 0x9e37_79b9_7f4a_7c15)
}

/// Runs the pipeline; see the module docs.
pub fn generate(spec: &Spec, teacher: &mut dyn Teacher, opts: &GenerateOptions, log: &mut dyn FnMut(&str)) -> Result<GenerateReport> {
    std::fs::create_dir_all(&opts.out).map_err(io_at(&opts.out))?;
    let ledger_path = opts.out.join("calls.jsonl");
    if opts.fresh && ledger_path.exists() {
        std::fs::remove_file(&ledger_path).map_err(io_at(&ledger_path))?;
    }
    let ledger = Ledger::open(&ledger_path)?;
    if !ledger.is_empty() {
        log(&format!("resuming: {} finished calls in {} (${:.6} spent)", ledger.len(), ledger_path.display(), ledger.spent_usd));
    }
    let units = topic_units(spec)?;
    let grid = cells(spec, units.len());
    let templates = spec
        .tasks
        .iter()
        .enumerate()
        .map(|(i, t)| compile_template(&t.template, &format!("tasks[{i}].template")))
        .collect::<std::result::Result<Vec<_>, _>>()
        .map_err(|e| DistillError::Config(e.to_string()))?;
    let validators = spec
        .tasks
        .iter()
        .map(|t| t.schema.as_ref().map(jsonschema::validator_for).transpose())
        .collect::<std::result::Result<Vec<_>, _>>()
        .map_err(|e| DistillError::Config(format!("schema: {e}")))?;
    let judge_tmpl = compile_template(&spec.judge.template, "judge.template").map_err(|e| DistillError::Config(e.to_string()))?;
    let budget = opts.budget_usd.or(spec.budget_usd);
    let report = GenerateReport {
        spec: spec.name.clone(),
        teacher: teacher.name(),
        topic_units: units.len(),
        cells: grid.len(),
        ledger_bad_lines: ledger.bad_lines,
        budget_usd: budget,
        ..Default::default()
    };
    let mut r = Runner { spec, teacher, ledger, budget, report, consecutive_errors: 0, log };
    let mut stopped = Stopped::Complete;
    let mut cands: Vec<Candidate> = Vec::new();
    let tp = spec.teacher.clone();

    // 1–3: answers.
    'cells: for (ci, cell) in grid.iter().enumerate() {
        let unit = &units[cell.unit];
        let task = &spec.tasks[cell.task];
        let mut vars = Map::new();
        vars.insert("topic".into(), Json::String(unit.topic.clone()));
        vars.insert("snippet".into(), Json::String(unit.snippet.clone()));
        vars.insert("difficulty".into(), Json::String(cell.difficulty.clone()));
        vars.insert("task".into(), Json::String(task.name.clone()));
        vars.insert("sample".into(), Json::from(cell.sample));
        let prompt = templates[cell.task].render_vars(&vars, None).map_err(|e| DistillError::Config(format!("tasks[{}].template: {e}", cell.task)))?;
        let mut messages = Vec::new();
        if let Some(s) = &task.system {
            messages.push(Message { role: "system".into(), content: s.clone() });
        }
        messages.push(Message { role: "user".into(), content: prompt.trim().to_string() });
        let cell_id = format!("{}|{}|{}|{}", task.name, unit.id, cell.difficulty, cell.sample);
        let attempts = if task.schema.is_some() && spec.retry_invalid { 2 } else { 1 };
        for attempt in 0..attempts {
            let call = TeacherCall {
                messages: messages.clone(),
                max_tokens: tp.max_tokens,
                temperature: tp.temperature,
                seed: call_seed(tp.seed, &cell_id, attempt),
                schema: task.schema.clone(),
                top_k: tp.top_k_logprobs,
            };
            let rec = match r.call("answer", &cell_id, attempt, call)? {
                CallOutcome::Done(rec) => rec,
                CallOutcome::Failed => continue 'cells,
                CallOutcome::Stop(s) => {
                    stopped = s;
                    break 'cells;
                }
            };
            r.report.answers += 1;
            let valid = validators[cell.task].as_ref().map(|v| schema_valid(v, &rec.text));
            if valid == Some(false) {
                r.report.schema_checked += 1;
                r.report.schema_invalid += 1;
                if attempt + 1 < attempts {
                    r.report.schema_retried += 1;
                }
                continue;
            }
            if valid.is_some() {
                r.report.schema_checked += 1;
            }
            cands.push(Candidate {
                cell: ci,
                messages: messages.clone(),
                answer: rec.text.clone(),
                topk: rec.topk.clone(),
                prompt_tokens: rec.prompt_tokens,
                completion_tokens: rec.completion_tokens,
                cost_usd: rec.cost_usd,
                schema_valid: valid,
                key: rec.key.clone(),
            });
            break;
        }
    }

    // 4: dedup.
    let texts: Vec<String> = cands
        .iter()
        .map(|c| {
            let prompt = c.messages.last().map(|m| m.content.as_str()).unwrap_or("");
            match spec.dedup.field {
                DedupField::Answer => c.answer.clone(),
                DedupField::Prompt => prompt.to_string(),
                DedupField::Both => format!("{prompt}\n{}", c.answer),
            }
        })
        .collect();
    let refs: Vec<&str> = texts.iter().map(String::as_str).collect();
    let d = &spec.dedup;
    let (verdicts, counts) = dedup(
        &refs,
        &DedupOptions { exact: d.exact, near_threshold: d.near_threshold, shingle_words: d.shingle_words, num_perm: d.num_perm, bands: d.bands, seed: 0x5eed },
    );
    r.report.dedup = counts;
    let mut exact_of = vec![0usize; cands.len()];
    let mut near_of = vec![0usize; cands.len()];
    for v in &verdicts {
        match v {
            Verdict::Exact { of } => exact_of[*of] += 1,
            Verdict::Near { of, .. } => near_of[*of] += 1,
            Verdict::Kept => {}
        }
    }

    // 5: judge, then 7: records.
    let mut kept: Vec<(Candidate, RecordMeta)> = Vec::new();
    for (i, c) in cands.into_iter().enumerate() {
        if verdicts[i] != Verdict::Kept {
            continue;
        }
        let cell = &grid[c.cell];
        let unit = &units[cell.unit];
        let task = &spec.tasks[cell.task];
        let mut score = None;
        if spec.judge.enabled {
            if stopped != Stopped::Complete {
                r.report.judge_missing += 1;
                continue;
            }
            let mut vars = Map::new();
            vars.insert("question".into(), Json::String(c.messages.last().map(|m| m.content.clone()).unwrap_or_default()));
            vars.insert("answer".into(), Json::String(c.answer.clone()));
            vars.insert("topic".into(), Json::String(unit.topic.clone()));
            vars.insert("task".into(), Json::String(task.name.clone()));
            let prompt = judge_tmpl.render_vars(&vars, None).map_err(|e| DistillError::Config(format!("judge.template: {e}")))?;
            let call = TeacherCall {
                messages: vec![Message { role: "user".into(), content: prompt.trim().to_string() }],
                max_tokens: spec.judge.max_tokens,
                temperature: 0.0,
                seed: tp.seed,
                schema: None,
                top_k: 0,
            };
            match r.call("judge", &c.key, 0, call)? {
                CallOutcome::Done(rec) => {
                    r.report.judged += 1;
                    match parse_score(&rec.text) {
                        None => {
                            r.report.judge_unparsed += 1;
                            continue;
                        }
                        Some(s) if s < spec.judge.min_score => {
                            r.report.judge_below_threshold += 1;
                            continue;
                        }
                        Some(s) => score = Some(s),
                    }
                }
                CallOutcome::Failed => {
                    r.report.judge_missing += 1;
                    continue;
                }
                CallOutcome::Stop(s) => {
                    stopped = s;
                    r.report.judge_missing += 1;
                    continue;
                }
            }
        }
        let meta = RecordMeta {
            id: c.key[..16].to_string(),
            topic: unit.topic.clone(),
            cluster: unit.cluster.clone(),
            task: task.name.clone(),
            difficulty: cell.difficulty.clone(),
            sample: cell.sample,
            teacher: r.report.teacher.clone(),
            prompt_tokens: c.prompt_tokens,
            completion_tokens: c.completion_tokens,
            cost_usd: c.cost_usd,
            judge_score: score,
            schema_valid: c.schema_valid,
            schema: task.schema.clone(),
            closed_form: task.closed_form,
            exact_duplicates_removed: exact_of[i],
            near_duplicates_removed: near_of[i],
        };
        kept.push((c, meta));
    }

    // 6: split by cluster.
    let mut sizes: BTreeMap<String, usize> = BTreeMap::new();
    for (_, m) in &kept {
        *sizes.entry(m.cluster.clone()).or_default() += 1;
    }
    let assign = split_clusters(&sizes, [spec.split.train, spec.split.valid, spec.split.test], spec.split.seed);
    const SPLITS: [&str; 3] = ["train", "valid", "test"];
    let mut files: Vec<(String, String)> = vec![(String::new(), String::new()); 3];
    let mut clusters: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    let mut counts: BTreeMap<String, usize> = SPLITS.iter().map(|s| (s.to_string(), 0)).collect();
    for (c, m) in &kept {
        let s = assign.get(&m.cluster).copied().unwrap_or(0);
        let mut msgs = c.messages.clone();
        msgs.push(Message { role: "assistant".into(), content: c.answer.clone() });
        let ex = Example { messages: Some(msgs), text: None, teacher_topk: c.topk.clone() };
        files[s].0.push_str(&to_line(&ex)?);
        files[s].0.push('\n');
        files[s].1.push_str(&to_line(m)?);
        files[s].1.push('\n');
        clusters.entry(SPLITS[s].to_string()).or_default().insert(m.cluster.clone());
        *counts.entry(SPLITS[s].to_string()).or_default() += 1;
    }
    for (s, (data, meta)) in files.iter().enumerate() {
        write_atomic(&opts.out.join(format!("{}.jsonl", SPLITS[s])), data)?;
        write_atomic(&opts.out.join(format!("{}.meta.jsonl", SPLITS[s])), meta)?;
    }
    r.report.records = counts;
    r.report.clusters = clusters.into_iter().map(|(k, v)| (k, v.into_iter().collect())).collect();
    r.report.stopped = Some(stopped);
    r.report.cost_usd_total = r.ledger.spent_usd;
    let report = r.report;
    let json = serde_json::to_string_pretty(&report).map_err(|e| DistillError::Config(format!("report: {e}")))? + "\n";
    write_atomic(&opts.out.join("report.json"), &json)?;
    Ok(report)
}

fn to_line<T: Serialize>(v: &T) -> Result<String> {
    serde_json::to_string(v).map_err(|e| DistillError::Config(format!("cannot encode a record: {e}")))
}

/// Writes through a temporary file and a rename, so a killed run never
/// leaves a half-written output.
pub fn write_atomic(path: &Path, text: &str) -> Result<()> {
    let tmp = path.with_extension("tmp");
    std::fs::write(&tmp, text).map_err(io_at(&tmp))?;
    std::fs::rename(&tmp, path).map_err(io_at(path))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn score_parsing() {
        assert_eq!(parse_score("8"), Some(8));
        assert_eq!(parse_score("Score: 10/10"), Some(10));
        assert_eq!(parse_score("I give it 42, no, 7"), Some(7));
        assert_eq!(parse_score("great"), None);
        assert_eq!(parse_score("0"), None);
    }

    #[test]
    fn json_answers_are_unfenced() {
        assert_eq!(parse_json_answer("{\"a\": 1}"), Some(serde_json::json!({"a": 1})));
        assert_eq!(parse_json_answer("Here:\n```json\n{\"a\": 2}\n```\n"), Some(serde_json::json!({"a": 2})));
        assert_eq!(parse_json_answer("{\"a\": "), None);
    }

    #[test]
    fn schema_validation_accepts_and_rejects() {
        let schema = serde_json::json!({"type": "object", "required": ["term", "definition"],
            "properties": {"term": {"type": "string"}, "definition": {"type": "string", "minLength": 5}}, "additionalProperties": false});
        let v = jsonschema::validator_for(&schema).unwrap();
        assert!(schema_valid(&v, r#"{"term": "RAM", "definition": "random-access memory"}"#));
        assert!(!schema_valid(&v, r#"{"term": "RAM"}"#), "missing required");
        assert!(!schema_valid(&v, r#"{"term": "RAM", "definition": "mem"}"#), "minLength");
        assert!(!schema_valid(&v, r#"{"term": "RAM", "definition": "random-access memory", "x": 1}"#), "additionalProperties");
        assert!(!schema_valid(&v, "RAM is memory"), "not JSON");
    }

    #[test]
    fn chunking_respects_size_and_paragraphs() {
        let text = format!("# Title\n\n{}\n\n{}\n\nshort", "a ".repeat(30), "word ".repeat(100));
        let chunks = chunk_text(&text, 120);
        assert!(chunks.iter().all(|c| c.chars().count() <= 120), "{chunks:?}");
        assert!(chunks.len() >= 5);
        assert!(chunks[0].starts_with("# Title"));
        assert!(chunks.last().is_some_and(|c| c.ends_with("short")));
    }

    #[test]
    fn split_has_no_cluster_in_two_splits_and_is_seeded() {
        let sizes: BTreeMap<String, usize> = (0..20).map(|i| (format!("topic{i}"), 3 + i % 4)).collect();
        let a = split_clusters(&sizes, [0.8, 0.1, 0.1], 7);
        assert_eq!(a, split_clusters(&sizes, [0.8, 0.1, 0.1], 7), "deterministic");
        assert_ne!(a, split_clusters(&sizes, [0.8, 0.1, 0.1], 8), "seed matters");
        assert_eq!(a.len(), 20, "every cluster assigned exactly once");
        for s in 0..3 {
            assert!(a.values().any(|&v| v == s), "split {s} is empty");
        }
        let total: usize = sizes.values().sum();
        let train: usize = a.iter().filter(|(_, &s)| s == 0).map(|(k, _)| sizes[k]).sum();
        assert!((train as f64 / total as f64 - 0.8).abs() < 0.15, "train share {train}/{total}");
    }
}
