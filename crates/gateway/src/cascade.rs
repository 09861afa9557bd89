//! The cascade: answer locally first, escalate when the local answer looks
//! unsure.
//!
//! Confidence is computed from the log-probabilities the local model gave
//! the tokens it actually sampled (its own belief in its answer):
//! * `mean`: the mean token log-probability (the log of the geometric-mean
//!   token probability) — robust, the usual choice;
//! * `min`: the least likely token — catches one confused step in an
//!   otherwise fluent answer.
//!
//! An answer whose confidence is *below* the threshold is escalated.
//!
//! # Choosing the threshold
//! `hearth cascade calibrate` runs the local model over a labelled
//! query set (`{"query", "label": "local"|"cloud"}` per line, the router's
//! training format), records each answer's confidence, and calls
//! [`calibrate`]: by default the threshold maximising Youden's J (true
//! escalation rate on `cloud` queries minus false escalation rate on `local`
//! ones), or, with a target escalation share, the quantile that escalates
//! that share of the set. Both are printed with the rates they imply, so
//! the operator sees what a threshold costs.
//!
//! # Latency
//! A cascaded request always pays for the local attempt. Streaming clients
//! see nothing until the local answer is complete and judged (a streamed
//! local answer cannot be taken back), so their time to first token is the
//! whole local generation, plus the cloud's first-token time when
//! escalated. That is the trade-off of enabling `router.cascade`.

/// How token log-probabilities become one confidence number.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum Metric {
    #[default]
    Mean,
    Min,
}

impl Metric {
    pub fn parse(s: &str) -> Option<Metric> {
        match s {
            "mean" => Some(Metric::Mean),
            "min" => Some(Metric::Min),
            _ => None,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Metric::Mean => "mean",
            Metric::Min => "min",
        }
    }
}

/// The cascade's settings.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct CascadeConfig {
    pub threshold: f32,
    pub metric: Metric,
}

/// Confidence of an answer from its tokens' log-probabilities; `None` for
/// an answer without tokens (nothing to judge: it is escalated).
pub fn confidence(logprobs: &[f32], metric: Metric) -> Option<f32> {
    if logprobs.is_empty() {
        return None;
    }
    Some(match metric {
        // f64 accumulation: long answers, and -inf stays -inf.
        Metric::Mean => (logprobs.iter().map(|&x| f64::from(x)).sum::<f64>() / logprobs.len() as f64) as f32,
        Metric::Min => logprobs.iter().copied().fold(f32::INFINITY, f32::min),
    })
}

/// Whether an answer with this confidence is escalated.
pub fn escalate(conf: Option<f32>, cfg: &CascadeConfig) -> bool {
    match conf {
        None => true,
        // NaN compares false: escalate rather than trust it.
        Some(c) => !(c >= cfg.threshold),
    }
}

/// One labelled calibration sample.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Sample {
    pub confidence: f32,
    /// The query's label says it needs the cloud model.
    pub needs_cloud: bool,
}

/// A chosen threshold and what it does on the calibration set.
#[derive(Clone, Debug, PartialEq)]
pub struct Calibration {
    pub threshold: f32,
    /// Share of all samples escalated.
    pub escalation_rate: f64,
    /// Share of `cloud` samples escalated (recall of the escalation).
    pub true_escalation_rate: f64,
    /// Share of `local` samples escalated.
    pub false_escalation_rate: f64,
    /// Probability that a random `cloud` sample has lower confidence than a
    /// random `local` one (ties count half): how well confidence separates
    /// the labels at all (0.5 = not at all).
    pub auc: f64,
    pub samples: usize,
}

#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum CalibrationError {
    #[error("no samples with a finite confidence")]
    Empty,
    #[error("the target escalation share must be in [0, 1]")]
    BadTarget,
}

/// Picks a threshold. `target`: escalate this share of the samples;
/// `None`: maximise Youden's J (needs both labels; with one label it falls
/// back to escalating nothing).
pub fn calibrate(samples: &[Sample], target: Option<f64>) -> Result<Calibration, CalibrationError> {
    let mut s: Vec<Sample> = samples.iter().copied().filter(|x| x.confidence.is_finite()).collect();
    if s.is_empty() {
        return Err(CalibrationError::Empty);
    }
    if target.is_some_and(|t| !(0.0..=1.0).contains(&t)) {
        return Err(CalibrationError::BadTarget);
    }
    s.sort_by(|a, b| a.confidence.total_cmp(&b.confidence));
    // Candidate thresholds: escalating `conf < t` for t at each distinct
    // value, and above the largest (escalate everything).
    let mut candidates: Vec<f32> = s.iter().map(|x| x.confidence).collect();
    candidates.dedup();
    let top = candidates.last().copied().unwrap_or(0.0);
    candidates.push(top + top.abs().max(1.0) * 1e-3);
    let threshold = match target {
        Some(t) => {
            // The smallest candidate escalating at least the target share.
            let want = (t * s.len() as f64).ceil() as usize;
            candidates
                .iter()
                .copied()
                .find(|&c| s.iter().filter(|x| x.confidence < c).count() >= want)
                .unwrap_or(top)
        }
        None => {
            let mut best = (f64::NEG_INFINITY, candidates[0]);
            for &c in &candidates {
                let j = rates(&s, c).1 - rates(&s, c).2;
                if j > best.0 {
                    best = (j, c);
                }
            }
            best.1
        }
    };
    let (esc, tpr, fpr) = rates(&s, threshold);
    Ok(Calibration {
        threshold,
        escalation_rate: esc,
        true_escalation_rate: tpr,
        false_escalation_rate: fpr,
        auc: auc(&s),
        samples: s.len(),
    })
}

/// (escalated share, escalated share of cloud samples, escalated share of local samples).
fn rates(s: &[Sample], t: f32) -> (f64, f64, f64) {
    let (mut esc, mut pos, mut tp, mut neg, mut fp) = (0usize, 0usize, 0usize, 0usize, 0usize);
    for x in s {
        let e = x.confidence < t;
        esc += e as usize;
        if x.needs_cloud {
            pos += 1;
            tp += e as usize;
        } else {
            neg += 1;
            fp += e as usize;
        }
    }
    let frac = |a: usize, b: usize| if b == 0 { 0.0 } else { a as f64 / b as f64 };
    (frac(esc, s.len()), frac(tp, pos), frac(fp, neg))
}

fn auc(s: &[Sample]) -> f64 {
    let (mut wins, mut pairs) = (0.0f64, 0usize);
    for c in s.iter().filter(|x| x.needs_cloud) {
        for l in s.iter().filter(|x| !x.needs_cloud) {
            pairs += 1;
            wins += if c.confidence < l.confidence {
                1.0
            } else if c.confidence == l.confidence {
                0.5
            } else {
                0.0
            };
        }
    }
    if pairs == 0 {
        0.5
    } else {
        wins / pairs as f64
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mean_and_min() {
        assert_eq!(confidence(&[], Metric::Mean), None);
        assert!((confidence(&[-1.0, -2.0, -3.0], Metric::Mean).unwrap() + 2.0).abs() < 1e-6);
        assert_eq!(confidence(&[-1.0, -2.0, -3.0], Metric::Min), Some(-3.0));
        assert_eq!(confidence(&[-1.0, f32::NEG_INFINITY], Metric::Mean), Some(f32::NEG_INFINITY));
    }

    #[test]
    fn escalation_rule() {
        let cfg = CascadeConfig { threshold: -1.0, metric: Metric::Mean };
        assert!(escalate(None, &cfg));
        assert!(escalate(Some(-1.5), &cfg));
        assert!(!escalate(Some(-1.0), &cfg));
        assert!(!escalate(Some(-0.2), &cfg));
        assert!(escalate(Some(f32::NAN), &cfg));
    }

    fn sample(c: f32, cloud: bool) -> Sample {
        Sample { confidence: c, needs_cloud: cloud }
    }

    #[test]
    fn youden_finds_the_separating_threshold() {
        // cloud answers are unsure (-3..-2), local ones sure (-1..0).
        let s: Vec<Sample> = (0..10)
            .map(|i| sample(-3.0 + i as f32 * 0.1, true))
            .chain((0..10).map(|i| sample(-1.0 + i as f32 * 0.1, false)))
            .collect();
        let c = calibrate(&s, None).unwrap();
        assert!(c.threshold > -2.1 && c.threshold <= -1.0, "{c:?}");
        assert_eq!(c.true_escalation_rate, 1.0);
        assert_eq!(c.false_escalation_rate, 0.0);
        assert_eq!(c.auc, 1.0);
        assert_eq!(c.escalation_rate, 0.5);
    }

    #[test]
    fn target_share_is_a_quantile() {
        let s: Vec<Sample> = (0..100).map(|i| sample(-(i as f32) / 10.0, i % 2 == 0)).collect();
        let c = calibrate(&s, Some(0.2)).unwrap();
        assert!((c.escalation_rate - 0.2).abs() < 1e-9, "{c:?}");
        let all = calibrate(&s, Some(1.0)).unwrap();
        assert_eq!(all.escalation_rate, 1.0);
        let none = calibrate(&s, Some(0.0)).unwrap();
        assert_eq!(none.escalation_rate, 0.0);
        assert_eq!(calibrate(&s, Some(1.5)), Err(CalibrationError::BadTarget));
        assert_eq!(calibrate(&[sample(f32::NAN, true)], None), Err(CalibrationError::Empty));
    }

    #[test]
    fn auc_of_uninformative_confidence_is_half() {
        let s = vec![sample(-1.0, true), sample(-1.0, false), sample(-2.0, true), sample(-2.0, false)];
        assert_eq!(calibrate(&s, None).unwrap().auc, 0.5);
    }
}
