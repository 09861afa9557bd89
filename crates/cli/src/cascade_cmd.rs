//! `hearth cascade calibrate`: picks `[router] cascade_threshold` for a
//! local model from labelled queries.
//!
//! Each query (`{"query", "label": "local"|"cloud"}` per line, the router's
//! training format) is answered greedily by the local model with its chat
//! template; the log-probability of each generated token is taken from the
//! logits it was drawn from (log-softmax), and the answer's confidence is
//! their mean (or minimum). `hearth_gateway::cascade::calibrate` then picks
//! the threshold (Youden's J, or a target escalation share) and reports the
//! rates it implies on this set.

use anyhow::{bail, Context, Result};
use hearth_chat::RenderRequest;
use hearth_engine::chat::ChatFormat;
use hearth_engine::{Engine, EngineConfig, Flow, GenerateRequest, SamplerConfig};
use hearth_gateway::cascade::{calibrate, confidence, Metric, Sample};
use serde_json::{json, Value};
use std::io::BufRead;
use std::path::PathBuf;

#[derive(clap::Args)]
pub struct CascadeArgs {
    #[command(subcommand)]
    pub command: CascadeCommand,
}

#[derive(clap::Subcommand)]
pub enum CascadeCommand {
    /// Answer labelled queries locally and choose the confidence threshold.
    Calibrate {
        /// The local model (.gguf).
        #[arg(short = 'm', long)]
        model: PathBuf,
        /// JSONL: {"query": ..., "label": "local"|"cloud"} per line.
        #[arg(long)]
        data: PathBuf,
        /// Escalate this share of the set instead of maximising Youden's J.
        #[arg(long)]
        target_escalation: Option<f64>,
        /// Tokens generated per answer (the confidence is judged on them).
        #[arg(long, default_value_t = 32)]
        max_tokens: usize,
        /// mean or min token log-probability.
        #[arg(long, default_value = "mean")]
        metric: String,
        /// Use at most this many queries.
        #[arg(long)]
        limit: Option<usize>,
        #[arg(short = 't', long, default_value_t = 0)]
        threads: usize,
        #[arg(long)]
        json: bool,
    },
}

/// log p(token) from the logits it was drawn from.
fn log_softmax_at(logits: &[f32], id: u32) -> f32 {
    let max = logits.iter().copied().fold(f32::NEG_INFINITY, f32::max);
    let sum: f64 = logits.iter().map(|&x| f64::from(x - max).exp()).sum();
    let x = logits.get(id as usize).copied().unwrap_or(f32::NEG_INFINITY);
    ((f64::from(x - max)) - sum.ln()) as f32
}

pub fn main(a: CascadeArgs) -> Result<()> {
    let CascadeCommand::Calibrate { model, data, target_escalation, max_tokens, metric, limit, threads, json: as_json } = a.command;
    let Some(metric) = Metric::parse(&metric) else { bail!("--metric must be mean or min") };
    let engine = Engine::load(&model, EngineConfig { threads, ..Default::default() })
        .with_context(|| format!("cannot load {}", model.display()))?;
    let m = engine.model().clone();
    let format = ChatFormat::from_model(&m)?;
    let file = std::fs::File::open(&data).with_context(|| format!("cannot read {}", data.display()))?;
    let mut samples = Vec::new();
    for (i, line) in std::io::BufReader::new(file).lines().enumerate() {
        if limit.is_some_and(|l| samples.len() >= l) {
            break;
        }
        let line = line.context("reading the data")?;
        if line.trim().is_empty() {
            continue;
        }
        let v: Value = serde_json::from_str(&line).with_context(|| format!("line {}: not JSON", i + 1))?;
        let (Some(q), Some(label)) = (v["query"].as_str(), v["label"].as_str()) else {
            bail!("line {}: needs \"query\" and \"label\"", i + 1);
        };
        let needs_cloud = match label {
            "cloud" => true,
            "local" => false,
            other => bail!("line {}: label must be local or cloud, not {other:?}", i + 1),
        };
        let mut req = RenderRequest::new(vec![json!({"role": "user", "content": q})]);
        req.add_generation_prompt = true;
        let prompt = format.prompt_tokens(&m, req)?;
        let mut session = engine.new_session(prompt.len() + max_tokens);
        let gen = GenerateRequest { prompt, max_tokens, sampler: SamplerConfig::greedy(), ignore_eos: false };
        let mut lps = Vec::new();
        engine.generate(&mut session, &gen, &mut |ev| {
            lps.push(log_softmax_at(ev.logits, ev.id));
            Flow::Continue
        })?;
        let c = confidence(&lps, metric).unwrap_or(f32::NEG_INFINITY);
        samples.push(Sample { confidence: c, needs_cloud });
    }
    let cal = calibrate(&samples, target_escalation).context("calibrating")?;
    if as_json {
        println!(
            "{}",
            json!({"threshold": cal.threshold, "metric": metric.as_str(), "n": cal.samples, "escalation_rate": cal.escalation_rate,
                "true_escalation_rate": cal.true_escalation_rate, "false_escalation_rate": cal.false_escalation_rate, "auc": cal.auc})
        );
    } else {
        println!(
            "{} answers: threshold {:.3} ({} token log-probability) escalates {:.1}% (cloud-labelled {:.1}%, local-labelled {:.1}%); AUC of confidence {:.3}",
            cal.samples,
            cal.threshold,
            metric.as_str(),
            cal.escalation_rate * 100.0,
            cal.true_escalation_rate * 100.0,
            cal.false_escalation_rate * 100.0,
            cal.auc
        );
        println!("[router]\ncascade = true\ncascade_threshold = {:.3}\ncascade_metric = \"{}\"", cal.threshold, metric.as_str());
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn log_softmax_matches_the_definition() {
        let l = [1.0f32, 2.0, 3.0];
        let z: f64 = l.iter().map(|&x| f64::from(x).exp()).sum();
        for (i, &x) in l.iter().enumerate() {
            let want = (f64::from(x).exp() / z).ln() as f32;
            assert!((log_softmax_at(&l, i as u32) - want).abs() < 1e-6);
        }
        assert_eq!(log_softmax_at(&l, 9), f32::NEG_INFINITY);
    }
}
