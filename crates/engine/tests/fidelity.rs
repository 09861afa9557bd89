//! Hearth against llama.cpp on the tiny random-weight fixtures of `testdata/models/`.
//!
//! For every fixture and every reference run recorded next to its recipe
//! (`expected-<NAME>.json`: F32 with an F32 KV cache, then F32, F16, Q8_0, Q4_0 and
//! Q4_K_M with llama.cpp's default F16 KV cache), this test
//!
//! 1. rebuilds the GGUF file llama.cpp ran from the committed recipe alone
//!    (`hearth_testkit::build`: PRNG weights, Hearth's reference quantizers, and a
//!    SHA-256 check of every tensor against the hash the generator recorded from
//!    llama.cpp's own file), so no model file needs to be committed;
//! 2. checks that Hearth tokenizes each prompt to llama.cpp's ids;
//! 3. compares the first-step logits (the 100 largest plus a fixed sample of 2000
//!    ids, and the log-sum-exp over the whole vocabulary) within the reference's
//!    bound (see [`bound`]);
//! 4. runs Hearth greedily along llama.cpp's tokens and requires the same token at
//!    every step: free-running greedy generation is identical for all recorded steps
//!    (at least 32) unless it parts at a step where llama.cpp's own top-1/top-2
//!    margin is below the noise llama.cpp shows against itself ([`Bound::part_margin`]);
//!    after such a step the comparison continues teacher-forced, and every later step
//!    whose margin is above that noise must still agree.
//!
//! Nothing here names a fixture except the list of per-fixture tests; any directory
//! under `testdata/models/` is checked the same way (`fixtures_not_listed_above`), so
//! a new fixture built by `tools/fixtures/gen_models.py` is covered without code.
//!
//! Bounds come from llama.cpp against itself (`self_check`: the prompt one token per
//! micro-batch, i.e. its gemv instead of gemm kernels; `repack_check`: its repacked
//! weight layouts, the default on AVX2/AVX-512): an engine that does not reproduce
//! one particular kernel's float summation order cannot be held closer to llama.cpp
//! than llama.cpp's own code paths are to each other. `bounds_cover_llama_cpp_self_noise`
//! re-derives that justification from the committed data.

use hearth_engine::sampler::argmax;
use hearth_engine::{Engine, EngineConfig};
use hearth_models::KvType;
use hearth_testkit::{build, Expected, PromptCase, Recipe};
use std::fmt::Write as _;

/// The tolerance for one reference run.
#[derive(Clone, Copy, Debug)]
struct Bound {
    /// Largest allowed first-step |Hearth logit - llama.cpp logit|.
    logit: f32,
    /// A greedy step may differ only where llama.cpp's recorded top-1 minus top-2
    /// margin is below this: the logit noise, since a step whose two best logits
    /// are closer than the noise is not decided by the model.
    part_margin: f64,
}

/// Bounds per reference, from the committed fixtures' measured llama.cpp self-noise
/// (largest first-step logit difference of llama.cpp against itself over 5 fixtures
/// x 4 prompts; logit standard deviation ~37 in these fixtures):
///
/// | reference | llama.cpp self-noise | greedy: llama.cpp parted from itself at margins |
/// |---|---|---|
/// | F32, F32 KV | 1.1e-4 | never |
/// | F32, F16 KV | 0.049 | never |
/// | F16 | 0.148 | never |
/// | Q8_0 | 1.52 | <= 0.30 |
/// | Q4_0 | 2.57 | <= 1.00 |
/// | Q4_K_M | 3.16 | <= 1.25 |
///
/// The logit bound is twice the self-noise (room for Hearth's own summation order on
/// top of llama.cpp's), except F32 with an F32 KV cache, where nothing is rounded to a
/// coarser type and the 1e-3 applies (9x the self-noise). The quantized
/// noise is large because these random models are chaotic where activations are
/// rounded to 8 bits: one ulp of difference that flips one Q8 rounding moves later
/// values by ~1e-3 relative and flips more roundings; Hearth reproduces ggml's plain
/// CPU arithmetic and is bit-identical on most prompts, but not on all.
/// The parting margin is the logit bound: every margin at which llama.cpp parted
/// from itself lies below half of it, and a Q8_0 step with margin 0.81 (under the
/// 1.52 noise) was seen to flip for Hearth, so half-noise would be too tight.
fn bound(reference: &str) -> Bound {
    let logit = match reference {
        "F32-kvf32" => 1e-3,
        "F32" => 0.1,
        "F16" => 0.3,
        "Q8_0" => 3.1,
        "Q4_0" => 5.2,
        "Q4_K_M" => 6.4,
        other => panic!("no bound for reference {other}: derive one from its self-noise and add it to `bound`"),
    };
    Bound { logit, part_margin: f64::from(logit) }
}

/// Every reference a fixture may record: (expected file, GGUF variant, KV cache type).
const REFERENCES: [(&str, &str, KvType); 6] = [
    ("F32-kvf32", "F32", KvType::F32),
    ("F32", "F32", KvType::F16),
    ("F16", "F16", KvType::F16),
    ("Q8_0", "Q8_0", KvType::F16),
    ("Q4_0", "Q4_0", KvType::F16),
    ("Q4_K_M", "Q4_K_M", KvType::F16),
];

/// The requirement: at least this many greedy steps compared.
const MIN_STEPS: usize = 32;

/// The outcome of one fixture x reference x prompt.
struct Row {
    label: String,
    steps: usize,
    /// Leading steps where free-running greedy generation is identical.
    greedy_prefix: usize,
    /// Steps where Hearth's argmax on llama.cpp's path equals llama.cpp's token.
    forced_agree: usize,
    max_dlogit: f32,
    d_logsumexp: f64,
    min_margin: f64,
    bound: Bound,
    /// Steps where Hearth differs from llama.cpp at a margin below `part_margin`,
    /// and how many of those picked llama.cpp's runner-up.
    excused: usize,
    excused_runner_up: usize,
    failures: Vec<String>,
}

fn piece(engine: &Engine, id: u32) -> String {
    format!("{:?}", String::from_utf8_lossy(&engine.tokenizer().token_to_piece(id, true)))
}

fn logsumexp(x: &[f32]) -> f64 {
    let m = x.iter().copied().fold(f32::NEG_INFINITY, f32::max) as f64;
    m + x.iter().map(|&v| (v as f64 - m).exp()).sum::<f64>().ln()
}

/// Compares Hearth with one recorded prompt; never panics, collects failures.
fn check_prompt(engine: &Engine, e: &Expected, p: &PromptCase, b: Bound, label: String) -> Row {
    let mut row = Row {
        label,
        steps: p.generated_ids.len(),
        greedy_prefix: 0,
        forced_agree: 0,
        max_dlogit: 0.0,
        d_logsumexp: 0.0,
        min_margin: p.min_margin,
        bound: b,
        excused: 0,
        excused_runner_up: 0,
        failures: Vec::new(),
    };
    let ids = engine.tokenize(&p.text, true, true);
    if ids != p.prompt_ids {
        row.failures.push(format!("tokenization differs:\n    hearth    {ids:?}\n    llama.cpp {:?}", p.prompt_ids));
    }
    if p.generated_ids.len() < MIN_STEPS && !p.stopped_at_eog {
        row.failures.push(format!("only {} greedy steps recorded (need {MIN_STEPS})", p.generated_ids.len()));
    }
    let mut session = engine.new_session(p.prompt_ids.len() + p.generated_ids.len());
    let mut logits = Vec::new();
    if let Err(err) = engine.eval(&mut session, &p.prompt_ids, &mut logits) {
        row.failures.push(format!("prompt evaluation failed: {err}"));
        return row;
    }
    // First-step logits.
    let mut worst: Vec<(f32, u32, f32, f32)> = Vec::new();
    for (id, want) in e.reference_logits(p) {
        let got = logits.get(id as usize).copied().unwrap_or(f32::NAN);
        let d = (got - want).abs();
        if !(d <= row.max_dlogit) {
            row.max_dlogit = if d.is_nan() { f32::INFINITY } else { d };
        }
        if !(d <= b.logit) {
            worst.push((d, id, got, want));
        }
    }
    if !worst.is_empty() {
        worst.sort_by(|a, b| b.0.total_cmp(&a.0));
        let mut msg = format!("{} first-step logits differ by more than {}; worst:", worst.len(), b.logit);
        for (d, id, got, want) in worst.iter().take(5) {
            let _ = write!(msg, "\n    id {id} {}: hearth {got}, llama.cpp {want}, |d| {d:.3e}", piece(engine, *id));
        }
        row.failures.push(msg);
    }
    row.d_logsumexp = (logsumexp(&logits) - p.first_logits.logsumexp).abs();
    if !(row.d_logsumexp <= f64::from(b.logit)) {
        row.failures.push(format!(
            "logsumexp over the vocabulary: hearth {:.5}, llama.cpp {:.5}",
            logsumexp(&logits),
            p.first_logits.logsumexp
        ));
    }
    // Greedy, along llama.cpp's tokens.
    let mut parted = false;
    for (i, &want) in p.generated_ids.iter().enumerate() {
        let got = argmax(&logits);
        let margin = p.margins[i];
        if got == want {
            row.forced_agree += 1;
            if !parted {
                row.greedy_prefix += 1;
            }
        } else {
            let excused = margin < b.part_margin;
            if !parted && !excused && row.greedy_prefix < MIN_STEPS.min(p.generated_ids.len()) {
                row.failures.push(format!("free-running greedy parts from llama.cpp after {} steps", row.greedy_prefix));
            }
            parted = true;
            if excused {
                row.excused += 1;
                if got == p.runner_up_ids[i] {
                    row.excused_runner_up += 1;
                }
            } else {
                row.failures.push(format!(
                    "step {i}: hearth picked {got} {} (logit {}), llama.cpp {want} {} (logit {}); llama.cpp's margin {margin} \
                     is above the parting margin {} (runner-up was {})",
                    piece(engine, got),
                    logits[got as usize],
                    piece(engine, want),
                    logits.get(want as usize).copied().unwrap_or(f32::NAN),
                    b.part_margin,
                    p.runner_up_ids[i],
                ));
            }
        }
        if i + 1 < p.generated_ids.len() {
            if let Err(err) = engine.eval(&mut session, &[want], &mut logits) {
                row.failures.push(format!("step {i}: evaluation failed: {err}"));
                break;
            }
        }
    }
    row
}

/// Runs every reference of `fixture`; returns the rows (one per reference x prompt).
fn check_fixture(fixture: &str) -> Vec<Row> {
    let recipe = Recipe::load_fixture(fixture).unwrap_or_else(|e| panic!("{fixture}: {e}"));
    let mut rows = Vec::new();
    for (reference, variant, kv) in REFERENCES {
        let path = recipe.dir().join(format!("expected-{reference}.json"));
        if !path.exists() {
            continue;
        }
        let e = recipe.expected(reference).unwrap_or_else(|err| panic!("{fixture}/{reference}: {err}"));
        let b = bound(reference);
        let gguf = build::variant_gguf(&recipe, variant).unwrap_or_else(|err| panic!("{fixture}/{variant}: {err}"));
        // The reference runs: 2 threads, the whole prompt in one batch.
        let cfg = EngineConfig { threads: 2, n_batch: 512, cache_type_k: kv, cache_type_v: kv };
        let engine = Engine::load(&gguf, cfg).unwrap_or_else(|err| panic!("{fixture}/{variant}: {err}"));
        for p in &e.prompts {
            rows.push(check_prompt(&engine, &e, p, b, format!("{fixture}/{reference}/{}", p.kind)));
        }
    }
    assert!(!rows.is_empty(), "{fixture}: no expected-*.json references");
    rows
}

/// The one place that turns rows into a verdict: a table of every comparison on
/// stderr, and on failure a panic listing each failure in full.
fn check(rows: &[Row]) {
    if rows.is_empty() {
        return;
    }
    let mut table = String::from(
        "reference                          steps greedy forced  max|dlogit|   bound  d(lse)  min margin  excused (runner-up)\n",
    );
    for r in rows {
        let _ = writeln!(
            table,
            "{:34} {:5} {:6} {:6} {:12.3e} {:7} {:7.1e} {:11.4} {:3} ({}){}",
            r.label,
            r.steps,
            r.greedy_prefix,
            r.forced_agree,
            r.max_dlogit,
            r.bound.logit,
            r.d_logsumexp,
            r.min_margin,
            r.excused,
            r.excused_runner_up,
            if r.failures.is_empty() { "" } else { "  FAIL" }
        );
    }
    eprintln!("{table}");
    let failures: Vec<String> = rows
        .iter()
        .flat_map(|r| r.failures.iter().map(move |f| format!("{}: {f}", r.label)))
        .collect();
    assert!(failures.is_empty(), "{} failure(s):\n{}", failures.len(), failures.join("\n"));
}

macro_rules! fixture_tests {
    ($($test:ident => $fixture:literal,)*) => {
        $(
            #[test]
            fn $test() {
                check(&check_fixture($fixture));
            }
        )*
        const LISTED: &[&str] = &[$($fixture),*];
    };
}

fixture_tests! {
    llama3 => "llama3",
    llama_spm => "llama-spm",
    smollm_gpt2 => "smollm-gpt2",
    qwen2 => "qwen2",
    qwen3 => "qwen3",
}

fn fixture_dirs() -> Vec<String> {
    let dir = hearth_testkit::models_dir();
    let mut out: Vec<String> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .filter_map(|d| d.ok())
        .filter(|d| d.path().join("recipe.json").is_file())
        .map(|d| d.file_name().to_string_lossy().into_owned())
        .collect();
    out.sort();
    out
}

/// Any other fixture directory (a new or unseen fixture) gets the same checks.
#[test]
fn fixtures_not_listed_above() {
    let rows: Vec<Row> =
        fixture_dirs().iter().filter(|f| !LISTED.contains(&f.as_str())).flat_map(|f| check_fixture(f)).collect();
    check(&rows);
}

/// The bounds in [`bound`] are justified by the committed data: each is at least
/// twice what llama.cpp measured against itself (F32 with an F32 KV cache: the
/// issue's 1e-3, at least 5x), and llama.cpp's own greedy paths parted only at
/// margins of at most half the parting margin.
#[test]
fn bounds_cover_llama_cpp_self_noise() {
    let mut msgs = Vec::new();
    for fixture in fixture_dirs() {
        let recipe = Recipe::load_fixture(&fixture).unwrap();
        for (reference, _, _) in REFERENCES {
            let Ok(e) = recipe.expected(reference) else { continue };
            let b = bound(reference);
            let factor = if reference == "F32-kvf32" { 5.0 } else { 2.0 };
            for p in &e.prompts {
                for c in [&p.self_check, &p.repack_check] {
                    if c.first_logits_max_abs_diff * factor > f64::from(b.logit) * 1.0001 {
                        msgs.push(format!(
                            "{fixture}/{reference}/{}: llama.cpp self-noise {} ({}) needs a bound >= {factor}x",
                            p.kind, c.first_logits_max_abs_diff, c.method
                        ));
                    }
                    let g = c.greedy_tokens_agreeing as usize;
                    if g < p.margins.len() && p.margins[g] * 2.0 > b.part_margin {
                        msgs.push(format!(
                            "{fixture}/{reference}/{}: llama.cpp parted from itself at step {g}, margin {} ({})",
                            p.kind, p.margins[g], c.method
                        ));
                    }
                }
            }
        }
    }
    assert!(msgs.is_empty(), "{}", msgs.join("\n"));
}
