//! `hearth route ...`: train, calibrate, evaluate, cross-validate and run
//! query routers (crate `hearth-router`). Data files are JSONL in either
//! record format `hearth_router::data` reads: `{"query", "label":
//! "local"|"cloud"}` or RouteLLM-style strong/weak results.

use anyhow::{bail, Context, Result};
use hearth_embed::{find_model_dir, Embedder, EmbedderOptions};
use hearth_router::cache::EmbedCache;
use hearth_router::features::Feature;
use hearth_router::metrics::{self, ClassMetrics, PgrMetrics};
use hearth_router::{data, train, Calibration, Ensemble, Example, Featurizer, LabelMode, Router, RouterFile, RouterOptions, TrainSpec, View};
use serde_json::json;
use std::io::Write;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Instant;

#[derive(clap::Args)]
pub struct RouteArgs {
    #[command(subcommand)]
    cmd: RouteCmd,
}

#[derive(clap::Args, Clone)]
struct Common {
    /// Encoder folder (default: $HEARTH_MINILM, ./models/all-MiniLM-L6-v2, ...).
    #[arg(long)]
    model: Option<PathBuf>,
    /// Embedding cache file (created if missing), so repeated runs embed each text once.
    #[arg(long)]
    cache: Option<PathBuf>,
    /// Encoder threads (0 = all cores).
    #[arg(long, default_value_t = 0)]
    threads: usize,
}

#[derive(clap::Args, Clone)]
struct TrainOpts {
    /// Views of the text to embed, comma-separated: full, head.
    #[arg(long, default_value = "full,head", value_delimiter = ',')]
    views: Vec<String>,
    /// Cheap features: "all", "math" (all + the word-problem cues), "none" or a comma-separated list (e.g. log_tokens,log_numbers).
    #[arg(long, default_value = "all")]
    features: String,
    /// Targets of strong/weak records: soft ((1 + gain) / 2) or hard (strong better).
    #[arg(long, default_value = "soft", value_parser = ["soft", "hard"])]
    label: String,
    /// L2 penalty on the standardised weights.
    #[arg(long, default_value_t = 10.0)]
    l2: f64,
    /// Separate weights for queries with and without this 0/1 feature (e.g. multiple_choice).
    #[arg(long)]
    gate: Option<String>,
    /// With --gate: L2 penalty of the queries without the gate feature (--l2 then applies to those with it).
    #[arg(long, requires = "gate")]
    l2_off: Option<f64>,
    /// Multiply the cheap features by this after standardisation (their L2 penalty is divided by its square).
    #[arg(long, default_value_t = 1.0)]
    feature_boost: f64,
    /// Average one head per (L2, boost) pair of these grids instead of fitting one head (with --gate: the
    /// gate-off block, replacing --l2-off), logits standardised, plus --length-weight × standardised log_tokens.
    #[arg(long, value_delimiter = ',', conflicts_with = "l2_off")]
    ensemble_l2: Vec<f64>,
    /// Boosts of the --ensemble-l2 grid (default: --feature-boost).
    #[arg(long, value_delimiter = ',', requires = "ensemble_l2")]
    ensemble_boost: Vec<f64>,
    /// With --ensemble-l2: weight of the standardised log_tokens feature added to the averaged logits.
    #[arg(long, default_value_t = 0.0, requires = "ensemble_l2")]
    length_weight: f64,
}

#[derive(clap::Args, Clone)]
struct Target {
    /// Pick the threshold that keeps this share of the calibration queries local.
    #[arg(long, conflicts_with = "target_recall")]
    target_local: Option<f64>,
    /// Or: the highest threshold that escalates this share of cloud-labelled queries.
    #[arg(long)]
    target_recall: Option<f64>,
}

#[derive(clap::Subcommand)]
enum RouteCmd {
    /// Train a router on labelled JSONL data.
    Train {
        #[arg(long, required = true)]
        data: Vec<PathBuf>,
        /// Output file (default: routers/<name>.json).
        #[arg(long)]
        out: Option<PathBuf>,
        #[arg(long, default_value = "custom")]
        name: String,
        #[arg(long, default_value = "")]
        description: String,
        #[command(flatten)]
        opts: TrainOpts,
        /// Calibrate on this data right away (with --target-local/--target-recall).
        #[arg(long, conflicts_with = "calibrate_cv")]
        calibrate: Vec<PathBuf>,
        /// Or calibrate on K-fold out-of-fold scores of the training data itself
        /// (each query scored by a head that did not see it), with --target-local/--target-recall.
        #[arg(long)]
        calibrate_cv: Option<usize>,
        /// Seed of the --calibrate-cv folds.
        #[arg(long, default_value_t = 0)]
        seed: u64,
        #[command(flatten)]
        target: Target,
        #[command(flatten)]
        common: Common,
    },
    /// Set a router's threshold from labelled data.
    Calibrate {
        #[arg(long, default_value = "default")]
        router: String,
        #[arg(long, required = true)]
        data: Vec<PathBuf>,
        #[command(flatten)]
        target: Target,
        /// Where to write the calibrated router (default: overwrite the router's file).
        #[arg(long)]
        out: Option<PathBuf>,
        #[command(flatten)]
        common: Common,
    },
    /// Evaluate a router on labelled data.
    Eval {
        #[arg(long, required = true)]
        data: Vec<PathBuf>,
        #[arg(long, default_value = "default")]
        router: String,
        /// One JSON object instead of a table.
        #[arg(long)]
        json: bool,
        /// Keep questions flagged "contaminated" (left out by default, as in RouteLLM).
        #[arg(long)]
        include_contaminated: bool,
        #[command(flatten)]
        common: Common,
    },
    /// Print {"id", "score"} per input line (higher = needs the cloud model).
    Score {
        #[arg(long, default_value = "default")]
        router: String,
        #[arg(long, required = true)]
        data: Vec<PathBuf>,
        #[command(flatten)]
        common: Common,
    },
    /// K-fold cross-validation of the training recipe (identical queries share a fold).
    Cv {
        #[arg(long, required = true)]
        data: Vec<PathBuf>,
        #[arg(long, default_value_t = 5)]
        folds: usize,
        #[arg(long, default_value_t = 0)]
        seed: u64,
        #[command(flatten)]
        opts: TrainOpts,
        /// Write the out-of-fold scores here ({"id", "score"} per line).
        #[arg(long)]
        scores_out: Option<PathBuf>,
        #[arg(long)]
        include_contaminated: bool,
        /// Also estimate the held-out recall / false escalation of the rule "threshold
        /// from out-of-fold scores for this cloud recall" by nested cross-validation.
        #[arg(long)]
        nested_recall: Option<f64>,
        /// Inner folds of --nested-recall.
        #[arg(long, default_value_t = 5)]
        inner_folds: usize,
        /// Repeat the (nested) cross-validation with seeds seed, seed+1, ... (each extra seed prints its
        /// AUC and APGR pooled over all the data to stderr; per-benchmark figures need --scores-out and metrics.py).
        #[arg(long, default_value_t = 1)]
        repeats: usize,
        /// Nested selection: candidate --l2-off values (comma-separated); the out-of-fold
        /// scores then come from heads whose settings were chosen by inner CV (mean APGR
        /// over the gate's two kinds of query, or AUC for labelled data).
        #[arg(long, value_delimiter = ',')]
        select_l2_off: Vec<f64>,
        /// Nested selection: candidate --feature-boost values (comma-separated).
        #[arg(long, value_delimiter = ',')]
        select_boost: Vec<f64>,
        /// Nested selection: candidate --length-weight values (comma-separated; needs --ensemble-l2).
        #[arg(long, value_delimiter = ',')]
        select_length_weight: Vec<f64>,
        #[command(flatten)]
        common: Common,
    },
    /// Routing-decision latency (embedding + head) for a query of N tokens.
    Bench {
        #[arg(long, default_value = "default")]
        router: String,
        #[arg(long, default_value_t = 64)]
        tokens: usize,
        #[arg(long, default_value_t = 200)]
        iters: usize,
        #[command(flatten)]
        common: Common,
    },
}

fn load_embedder(c: &Common) -> Result<Arc<Embedder>> {
    let dir = find_model_dir(c.model.as_deref())?;
    let e = Embedder::load_with(&dir, &EmbedderOptions { threads: c.threads, ..Default::default() })
        .with_context(|| format!("cannot load the encoder in {}", dir.display()))?;
    Ok(Arc::new(e))
}

fn open_cache(c: &Common, e: &Embedder) -> Result<Option<EmbedCache>> {
    let Some(p) = &c.cache else { return Ok(None) };
    let fp = hearth_router::embedder_fingerprint(e.model_dir())?;
    Ok(Some(EmbedCache::open(p, e.dim(), &fp)?))
}

fn load_router(spec: &str, c: &Common) -> Result<Router> {
    let opts = RouterOptions { model_dir: c.model.clone(), threads: c.threads };
    Ok(Router::load_with(spec, &opts).with_context(|| format!("cannot load router {spec:?}"))?)
}

fn load_data(paths: &[PathBuf]) -> Result<Vec<Example>> {
    let mut v = Vec::new();
    for p in paths {
        v.extend(data::load_jsonl(p)?);
    }
    Ok(v)
}

fn parse_views(v: &[String]) -> Result<Vec<View>> {
    v.iter()
        .map(|s| match s.trim() {
            "full" => Ok(View::Full),
            "head" => Ok(View::Head),
            other => bail!("unknown view {other:?} (full, head)"),
        })
        .collect()
}

fn parse_features(s: &str) -> Result<Vec<Feature>> {
    match s {
        "all" => Ok(Feature::ALL.to_vec()),
        "math" => Ok(Feature::ALL.iter().chain(&Feature::MATH).copied().collect()),
        "none" | "" => Ok(Vec::new()),
        list => list
            .split(',')
            .map(|n| serde_json::from_value(json!(n.trim())).map_err(|_| anyhow::anyhow!("unknown feature {n:?}")))
            .collect(),
    }
}

fn train_spec(name: &str, description: &str, o: &TrainOpts, data: &[PathBuf]) -> Result<TrainSpec> {
    let features = parse_features(&o.features)?;
    let n_features = features.len();
    Ok(TrainSpec {
        name: name.into(),
        description: description.into(),
        views: parse_views(&o.views)?,
        features,
        gate: match &o.gate {
            None => None,
            Some(g) => match parse_features(g)?.as_slice() {
                [f @ (Feature::Code | Feature::MultipleChoice)] => Some(*f),
                _ => bail!("--gate takes one 0/1 feature: code or multiple_choice"),
            },
        },
        label_mode: if o.label == "hard" { LabelMode::Hard } else { LabelMode::Soft },
        fit: train::FitOptions { l2: o.l2, boost: o.feature_boost, boost_tail: n_features, ..Default::default() },
        l2_gate_off: o.l2_off,
        ensemble: (!o.ensemble_l2.is_empty()).then(|| Ensemble {
            l2: o.ensemble_l2.clone(),
            boost: if o.ensemble_boost.is_empty() { vec![o.feature_boost] } else { o.ensemble_boost.clone() },
            length_weight: o.length_weight,
            length_feature: Feature::LogTokens,
        }),
        data: data.to_vec(),
    })
}

fn texts(ex: &[Example]) -> Vec<&str> {
    ex.iter().map(|e| e.query.as_str()).collect()
}

fn calibrate(file: &mut RouterFile, scores: &[f32], ex: &[Example], target: &Target, data: &[PathBuf]) -> Result<()> {
    let cloud: Vec<bool> = ex.iter().map(|e| e.cloud).collect();
    let t = match (target.target_local, target.target_recall) {
        (Some(l), None) => metrics::threshold_for_local_share(scores, l).with_context(|| format!("--target-local {l} must be in [0, 1]"))?,
        (None, Some(r)) => metrics::threshold_for_recall(scores, &cloud, r)
            .with_context(|| format!("--target-recall {r}: needs a value in [0, 1] and cloud-labelled queries"))?,
        _ => bail!("give one of --target-local or --target-recall"),
    };
    file.threshold = t;
    let m = metrics::classify(scores, &cloud, t);
    file.calibration = Some(Calibration {
        data: data.iter().map(|p| p.display().to_string()).collect(),
        n: scores.len(),
        target_local: target.target_local,
        target_recall: target.target_recall,
        local_share: m.local_share,
    });
    Ok(())
}

fn filter_contaminated(ex: Vec<Example>, keep: bool) -> Vec<Example> {
    if keep {
        ex
    } else {
        ex.into_iter().filter(|e| !e.contaminated).collect()
    }
}

fn report(scores: &[f32], ex: &[Example], threshold: f32) -> (ClassMetrics, Option<PgrMetrics>) {
    let cloud: Vec<bool> = ex.iter().map(|e| e.cloud).collect();
    let c = metrics::classify(scores, &cloud, threshold);
    let q: Option<Vec<(f64, f64)>> = ex.iter().map(|e| e.qualities).collect();
    let p = q.and_then(|q| metrics::pgr(scores, &q));
    (c, p)
}

fn report_json(c: &ClassMetrics, p: &Option<PgrMetrics>) -> serde_json::Value {
    let mut v = json!({
        "n": c.n, "accuracy": c.accuracy, "auc": c.auc, "local_share": c.local_share,
        "cloud_recall": c.cloud_recall, "false_escalation": c.false_escalation, "threshold": c.threshold,
    });
    if let Some(p) = p {
        v["apgr"] = json!(p.apgr);
        v["cpt50_pct"] = json!(p.cpt50_pct);
        v["cpt80_pct"] = json!(p.cpt80_pct);
        v["strong_quality"] = json!(p.strong_quality);
        v["weak_quality"] = json!(p.weak_quality);
    }
    v
}

fn print_table(c: &ClassMetrics, p: &Option<PgrMetrics>) {
    let opt = |x: Option<f64>| x.map_or("n/a".to_string(), |v| format!("{v:.4}"));
    println!("n                 {}", c.n);
    println!("threshold         {:.4}", c.threshold);
    println!("accuracy          {:.4}", c.accuracy);
    println!("auc               {}", opt(c.auc));
    println!("local_share       {:.4}", c.local_share);
    println!("cloud_recall      {}", opt(c.cloud_recall));
    println!("false_escalation  {}", opt(c.false_escalation));
    if let Some(p) = p {
        println!("apgr              {:.4}   (strong {:.4}, weak {:.4})", p.apgr, p.strong_quality, p.weak_quality);
        let pct = |x: Option<f64>| x.map_or("n/a".to_string(), |v| format!("{v:.2}%"));
        println!("cpt50 / cpt80     {} / {}", pct(p.cpt50_pct), pct(p.cpt80_pct));
    }
}

fn write_scores(out: &mut dyn Write, ex: &[Example], scores: &[f32]) -> Result<()> {
    for (e, s) in ex.iter().zip(scores) {
        writeln!(out, "{}", json!({"id": e.id, "score": s}))?;
    }
    Ok(())
}

pub fn main(a: RouteArgs) -> Result<()> {
    match a.cmd {
        RouteCmd::Train { data, out, name, description, opts, calibrate: cal_data, calibrate_cv, seed, target, common } => {
            let spec = train_spec(&name, &description, &opts, &data)?;
            let ex = load_data(&data)?;
            let e = load_embedder(&common)?;
            let mut cache = open_cache(&common, &e)?;
            let t0 = Instant::now();
            let rows = Featurizer { embedder: &e, views: &spec.views, features: &spec.features, gate: spec.gate, cache: cache.as_mut() }.rows(&texts(&ex))?;
            eprintln!("route train: {} examples embedded in {:.1}s", ex.len(), t0.elapsed().as_secs_f64());
            let mut file = hearth_router::train_on_rows(&spec, &ex, &rows, hearth_router::embedder_spec(&e)?)?;
            if !cal_data.is_empty() {
                let cex = load_data(&cal_data)?;
                let router = Router::new(file.clone(), e.clone(), "training".into())?;
                let scores = router.score_texts_cached(&texts(&cex), cache.as_mut())?;
                calibrate(&mut file, &scores, &cex, &target, &cal_data)?;
            } else if let Some(k) = calibrate_cv {
                let oof = hearth_router::cross_val_scores(&spec, &ex, &rows, k, seed)?;
                calibrate(&mut file, &oof, &ex, &target, &data)?;
                if let Some(c) = file.calibration.as_mut() {
                    c.data = data.iter().map(|p| format!("{} ({k}-fold out-of-fold scores, seed {seed})", p.display())).collect();
                }
            } else if target.target_local.is_some() || target.target_recall.is_some() {
                bail!("--target-local/--target-recall need --calibrate DATA or --calibrate-cv K");
            }
            let out = out.unwrap_or_else(|| PathBuf::from("routers").join(format!("{name}.json")));
            file.save(&out)?;
            eprintln!(
                "route train: wrote {} ({} iterations, converged: {}, threshold {:.4})",
                out.display(),
                file.training.iterations,
                file.training.converged,
                file.threshold
            );
        }
        RouteCmd::Calibrate { router, data, target, out, common } => {
            let r = load_router(&router, &common)?;
            let out = match out {
                Some(o) => o,
                None if !r.source().starts_with("builtin:") => PathBuf::from(r.source()),
                None => bail!("router {router:?} is built in; pass --out PATH"),
            };
            let ex = load_data(&data)?;
            let mut cache = open_cache(&common, r.embedder())?;
            let scores = r.score_texts_cached(&texts(&ex), cache.as_mut())?;
            let mut file = r.file().clone();
            calibrate(&mut file, &scores, &ex, &target, &data)?;
            file.save(&out)?;
            let cal = file.calibration.as_ref().map_or(0.0, |c| c.local_share);
            eprintln!("route calibrate: threshold {:.4} (local share {:.4} on {} queries), wrote {}", file.threshold, cal, ex.len(), out.display());
        }
        RouteCmd::Eval { data, router, json: as_json, include_contaminated, common } => {
            let r = load_router(&router, &common)?;
            let ex = filter_contaminated(load_data(&data)?, include_contaminated);
            if ex.is_empty() {
                bail!("no queries left to evaluate");
            }
            let mut cache = open_cache(&common, r.embedder())?;
            let scores = r.score_texts_cached(&texts(&ex), cache.as_mut())?;
            let (c, p) = report(&scores, &ex, r.threshold());
            if as_json {
                println!("{}", report_json(&c, &p));
            } else {
                println!("router            {} ({})", r.name(), r.source());
                print_table(&c, &p);
            }
        }
        RouteCmd::Score { router, data, common } => {
            let r = load_router(&router, &common)?;
            let ex = load_scoring_data(&data)?;
            let mut cache = open_cache(&common, r.embedder())?;
            let stdout = std::io::stdout();
            let mut out = std::io::BufWriter::new(stdout.lock());
            // Batches keep memory flat and output flowing on big files.
            for chunk in ex.chunks(256) {
                let scores = r.score_texts_cached(&texts(chunk), cache.as_mut())?;
                write_scores(&mut out, chunk, &scores)?;
            }
            out.flush()?;
        }
        RouteCmd::Cv {
            data,
            folds,
            seed,
            opts,
            scores_out,
            include_contaminated,
            nested_recall,
            inner_folds,
            repeats,
            select_l2_off,
            select_boost,
            select_length_weight,
            common,
        } => {
            let spec = train_spec("cv", "", &opts, &data)?;
            let ex = load_data(&data)?;
            let e = load_embedder(&common)?;
            let mut cache = open_cache(&common, &e)?;
            let rows = Featurizer { embedder: &e, views: &spec.views, features: &spec.features, gate: spec.gate, cache: cache.as_mut() }.rows(&texts(&ex))?;
            if let Some(r) = nested_recall {
                nested_report(&spec, &ex, &rows, folds, inner_folds, seed, repeats.max(1), r)?;
            }
            for extra in 1..repeats.max(1) as u64 {
                let oof = hearth_router::cross_val_scores(&spec, &ex, &rows, folds, seed + extra)?;
                let cloud: Vec<bool> = ex.iter().map(|e| e.cloud).collect();
                let auc = metrics::auc(&oof, &cloud);
                let q: Option<Vec<(f64, f64)>> = ex.iter().map(|e| e.qualities).collect();
                let keep: Vec<usize> = (0..ex.len()).filter(|&i| include_contaminated || !ex[i].contaminated).collect();
                let apgr = q.and_then(|q| {
                    metrics::pgr(&keep.iter().map(|&i| oof[i]).collect::<Vec<_>>(), &keep.iter().map(|&i| q[i]).collect::<Vec<_>>())
                });
                eprintln!("{}", json!({"seed": seed + extra, "auc": auc, "apgr": apgr.map(|p| p.apgr)}));
            }
            let oof = if select_l2_off.is_empty() && select_boost.is_empty() && select_length_weight.is_empty() {
                hearth_router::cross_val_scores(&spec, &ex, &rows, folds, seed)?
            } else {
                let l2s = if select_l2_off.is_empty() { vec![spec.l2_gate_off.unwrap_or(spec.fit.l2)] } else { select_l2_off };
                let boosts = if select_boost.is_empty() { vec![spec.fit.boost] } else { select_boost };
                let wls = if select_length_weight.is_empty() {
                    vec![spec.ensemble.as_ref().map_or(0.0, |e| e.length_weight)]
                } else if spec.ensemble.is_none() {
                    bail!("--select-length-weight needs --ensemble-l2");
                } else {
                    select_length_weight
                };
                let mut cands = Vec::new();
                let mut labels = Vec::new();
                for &w in &wls {
                    for &b in &boosts {
                        for &l in &l2s {
                            let mut c = spec.clone();
                            c.fit.boost = b;
                            if c.gate.is_some() {
                                c.l2_gate_off = Some(l);
                            } else {
                                c.fit.l2 = l;
                            }
                            if let Some(e) = c.ensemble.as_mut() {
                                e.length_weight = w;
                                // The gate-off block is the ensemble: its own grid, not --l2-off.
                                c.l2_gate_off = None;
                            }
                            labels.push(if c.ensemble.is_some() {
                                json!({"boost": b, "length_weight": w})
                            } else {
                                json!({"l2_off": l, "boost": b})
                            });
                            cands.push(c);
                        }
                    }
                }
                let (keep_all, gated) = (include_contaminated, spec.gate.is_some());
                let criterion = move |sc: &[f32], ex: &[Example], rows: &[Vec<f32>]| selection_criterion(sc, ex, rows, gated, keep_all);
                let (oof, chosen) = hearth_router::nested_select_scores(&cands, &ex, &rows, folds, inner_folds, seed, &criterion)?;
                let picked: Vec<serde_json::Value> = chosen.iter().map(|&c| labels[c].clone()).collect();
                eprintln!("{}", json!({"nested_selection": picked}));
                oof
            };
            if let Some(p) = &scores_out {
                let mut f = std::io::BufWriter::new(std::fs::File::create(p).with_context(|| format!("cannot create {}", p.display()))?);
                write_scores(&mut f, &ex, &oof)?;
                f.flush()?;
            }
            let (ex_f, oof_f): (Vec<Example>, Vec<f32>) =
                ex.into_iter().zip(oof).filter(|(e, _)| include_contaminated || !e.contaminated).unzip();
            let cloud: Vec<bool> = ex_f.iter().map(|e| e.cloud).collect();
            // Threshold-dependent figures at the out-of-fold threshold that
            // reaches 90% cloud recall (a property of the recipe, not of a shipped file).
            let t = metrics::threshold_for_recall(&oof_f, &cloud, 0.9).unwrap_or(0.5);
            let (c, p) = report(&oof_f, &ex_f, t);
            let mut v = report_json(&c, &p);
            v["folds"] = json!(folds);
            v["seed"] = json!(seed);
            v["threshold_rule"] = json!("out-of-fold threshold for 90% cloud recall");
            println!("{v}");
        }
        RouteCmd::Bench { router, tokens, iters, common } => {
            let r = load_router(&router, &common)?;
            let text = text_of_tokens(r.embedder(), tokens)?;
            let n_tok = r.embedder().count_tokens(&text)?;
            for _ in 0..5 {
                r.score_text(&text)?;
            }
            let mut ms = Vec::with_capacity(iters);
            let cpu0 = process_cpu_seconds();
            for _ in 0..iters.max(1) {
                let t0 = Instant::now();
                std::hint::black_box(r.decide(&text)?);
                ms.push(t0.elapsed().as_secs_f64() * 1e3);
            }
            // Wall time on a machine whose cores are busy with other work
            // measures the queue, not the router; the process's CPU time per
            // decision (all threads) is reported beside it.
            let cpu_ms = match (cpu0, process_cpu_seconds()) {
                (Some(a), Some(b)) => Some((b - a) * 1e3 / ms.len() as f64),
                _ => None,
            };
            ms.sort_by(f64::total_cmp);
            let q = |p: f64| ms[((ms.len() - 1) as f64 * p).round() as usize];
            println!(
                "{}",
                json!({"router": r.name(), "tokens": n_tok, "views": r.file().views, "threads": r.embedder().threads(),
                       "iters": ms.len(), "p50_ms": q(0.5), "p95_ms": q(0.95), "min_ms": ms[0], "cpu_ms_per_decision": cpu_ms})
            );
        }
    }
    Ok(())
}

/// What nested selection maximises: for strong/weak data, the mean over
/// the gate's two kinds of query (one group without a gate) of each kind's
/// APGR, contaminated questions left out as in the reported figures; for
/// labelled data, ROC AUC. Inside a kind, questions graded 0/1 (MMLU,
/// GSM8K) and questions graded by a judge on 1–10 (MT-Bench) get separate
/// APGRs, averaged weighted by their counts: one APGR over both would weigh
/// a judge-score gain of up to 9 against a 0/1 gain of 1, so 36 MT-Bench
/// questions outweighed 520 GSM8K ones (the criterion used before did that).
fn selection_criterion(scores: &[f32], ex: &[Example], rows: &[Vec<f32>], gated: bool, include_contaminated: bool) -> f64 {
    let q: Option<Vec<(f64, f64)>> = ex.iter().map(|e| e.qualities).collect();
    let Some(q) = q else {
        return metrics::auc(scores, &ex.iter().map(|e| e.cloud).collect::<Vec<_>>()).unwrap_or(0.0);
    };
    let mut total = 0.0;
    let mut n = 0;
    for kind in if gated { &[true, false][..] } else { &[true][..] } {
        let kind = *kind;
        let (mut acc, mut weight) = (0.0, 0.0);
        for graded in [false, true] {
            let idx: Vec<usize> = (0..ex.len())
                .filter(|&i| (include_contaminated || !ex[i].contaminated) && (!gated || rows[i].last().is_some_and(|&g| (g > 0.5) == kind)))
                .filter(|&i| (q[i].0.max(q[i].1) > 1.0) == graded)
                .collect();
            let s: Vec<f32> = idx.iter().map(|&i| scores[i]).collect();
            let qq: Vec<(f64, f64)> = idx.iter().map(|&i| q[i]).collect();
            if let Some(p) = metrics::pgr(&s, &qq) {
                acc += p.apgr * idx.len() as f64;
                weight += idx.len() as f64;
            }
        }
        if weight > 0.0 {
            total += acc / weight;
            n += 1;
        }
    }
    if n == 0 {
        0.0
    } else {
        total / n as f64
    }
}

/// Nested cross-validation of the recall-target threshold rule, repeated
/// over seeds: one JSON line per repeat (fold means) and a summary line
/// with the mean and standard deviation over all held-out folds.
#[allow(clippy::too_many_arguments)]
fn nested_report(spec: &TrainSpec, ex: &[Example], rows: &[Vec<f32>], k: usize, inner: usize, seed: u64, repeats: usize, recall: f64) -> Result<()> {
    let mut all = Vec::new();
    for r in 0..repeats as u64 {
        let folds = hearth_router::nested_threshold_eval(spec, ex, rows, k, inner, seed + r, recall)?;
        let mean = |f: &dyn Fn(&ClassMetrics) -> Option<f64>| {
            let v: Vec<f64> = folds.iter().filter_map(f).collect();
            v.iter().sum::<f64>() / v.len().max(1) as f64
        };
        eprintln!(
            "{}",
            json!({"nested_seed": seed + r, "folds": folds.len(), "cloud_recall": mean(&|m| m.cloud_recall),
                   "false_escalation": mean(&|m| m.false_escalation), "local_share": mean(&|m| Some(m.local_share))})
        );
        all.extend(folds);
    }
    let stat = |f: &dyn Fn(&ClassMetrics) -> Option<f64>| {
        let v: Vec<f64> = all.iter().filter_map(f).collect();
        let n = v.len().max(1) as f64;
        let m = v.iter().sum::<f64>() / n;
        let sd = (v.iter().map(|x| (x - m).powi(2)).sum::<f64>() / (n - 1.0).max(1.0)).sqrt();
        let (lo, hi) = v.iter().fold((f64::MAX, f64::MIN), |(a, b), &x| (a.min(x), b.max(x)));
        json!({"mean": m, "sd": sd, "min": lo, "max": hi})
    };
    println!(
        "{}",
        json!({"nested": {"target_recall": recall, "outer_folds": k, "inner_folds": inner, "repeats": repeats, "held_out_folds": all.len(),
               "cloud_recall": stat(&|m| m.cloud_recall), "false_escalation": stat(&|m| m.false_escalation),
               "local_share": stat(&|m| Some(m.local_share))}})
    );
    Ok(())
}

/// User + system CPU time of this process (Linux `/proc/self/stat`, fields
/// 14 and 15, in clock ticks of 1/100 s, the kernel's USER_HZ on every
/// mainstream architecture). `None` elsewhere.
fn process_cpu_seconds() -> Option<f64> {
    let stat = std::fs::read_to_string("/proc/self/stat").ok()?;
    // The command name (field 2) may contain spaces; fields resume after ')'.
    let rest = &stat[stat.rfind(')')? + 2..];
    let f: Vec<&str> = rest.split_whitespace().collect();
    let (u, s): (f64, f64) = (f.get(11)?.parse().ok()?, f.get(12)?.parse().ok()?);
    Some((u + s) / 100.0)
}

/// Score input: labelled or not — `hearth route score` needs only `query`
/// (and `id`); labels, if any, are ignored.
fn load_scoring_data(paths: &[PathBuf]) -> Result<Vec<Example>> {
    let mut v = Vec::new();
    for p in paths {
        let text = std::fs::read_to_string(p).with_context(|| format!("cannot read {}", p.display()))?;
        for (i, l) in text.lines().enumerate() {
            if l.trim().is_empty() {
                continue;
            }
            let r: serde_json::Value = serde_json::from_str(l).with_context(|| format!("{}:{}: invalid JSON", p.display(), i + 1))?;
            let Some(q) = r.get("query").and_then(|q| q.as_str()) else {
                bail!("{}:{}: missing string \"query\"", p.display(), i + 1);
            };
            let id = r.get("id").cloned().unwrap_or(json!(i + 1));
            v.push(Example { id, query: q.to_string(), cloud: false, qualities: None, contaminated: false });
        }
    }
    Ok(v)
}

/// An English-ish text of exactly `n` tokens (special tokens included) when
/// the tokenizer allows, built from a fixed sentence.
fn text_of_tokens(e: &Embedder, n: usize) -> Result<String> {
    const WORDS: &str = "please review the quarterly sales figures for our european stores and explain which regions \
        grew fastest why margins fell in the south and what we should change in the pricing plan before next year";
    let words: Vec<&str> = WORDS.split_whitespace().collect();
    let mut text = String::new();
    let mut i = 0;
    while e.count_tokens(&text)? < n && i < 10 * n {
        if !text.is_empty() {
            text.push(' ');
        }
        text.push_str(words[i % words.len()]);
        i += 1;
    }
    Ok(text)
}

