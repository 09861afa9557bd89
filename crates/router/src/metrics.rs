//! Evaluation figures of a router on labelled data.
//!
//! Classification figures at the router's threshold (`score >= threshold`
//! means "escalate to the cloud"): accuracy, local share, cloud recall (share
//! of cloud-labelled queries escalated), false escalation (share of
//! local-labelled queries escalated); and the threshold-free ROC AUC
//! (Mann–Whitney, ties counted one half).
//!
//! For strong/weak records, RouteLLM's cost–quality summary as computed by
//! `testdata/router/external/metrics.py` ("exact" estimator): send the `k`
//! highest-scored queries to the strong model, `k = 0..N`, with tied scores
//! averaged over random tie-breaking; PGR(x) = (Q(x) − Q_weak) / (Q_strong −
//! Q_weak); APGR = trapezoid area under PGR over x ∈ [0, 1]; CPT(p) = the
//! smallest strong-call share (in %) at which PGR reaches p, linearly
//! interpolated. Contaminated questions are left out unless asked, as in
//! metrics.py and RouteLLM's published tables.

use serde::Serialize;

/// Threshold-based figures and AUC.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct ClassMetrics {
    pub n: usize,
    pub accuracy: f64,
    /// `None` when only one class is present.
    pub auc: Option<f64>,
    pub local_share: f64,
    /// `None` when no query is cloud-labelled.
    pub cloud_recall: Option<f64>,
    /// `None` when no query is local-labelled.
    pub false_escalation: Option<f64>,
    pub threshold: f64,
}

fn ratio(num: usize, den: usize) -> Option<f64> {
    (den > 0).then(|| num as f64 / den as f64)
}

/// Figures for `scores` against labels (`true` = cloud) at `threshold`.
/// Empty input gives `n = 0` and zero/None figures.
pub fn classify(scores: &[f32], cloud: &[bool], threshold: f32) -> ClassMetrics {
    let n = scores.len().min(cloud.len());
    let (mut tp, mut fp, mut pos) = (0usize, 0usize, 0usize);
    let mut correct = 0usize;
    for (&s, &c) in scores.iter().zip(cloud) {
        let up = s >= threshold;
        pos += usize::from(c);
        tp += usize::from(up && c);
        fp += usize::from(up && !c);
        correct += usize::from(up == c);
    }
    let neg = n - pos;
    ClassMetrics {
        n,
        accuracy: ratio(correct, n).unwrap_or(0.0),
        auc: auc(&scores[..n], &cloud[..n]),
        local_share: ratio(n - tp - fp, n).unwrap_or(0.0),
        cloud_recall: ratio(tp, pos),
        false_escalation: ratio(fp, neg),
        threshold: f64::from(threshold),
    }
}

/// ROC AUC = P(score of a random cloud query > that of a random local one),
/// ties counted ½ (average ranks).
pub fn auc(scores: &[f32], cloud: &[bool]) -> Option<f64> {
    let n = scores.len().min(cloud.len());
    let pos = cloud[..n].iter().filter(|&&c| c).count();
    let neg = n - pos;
    if pos == 0 || neg == 0 {
        return None;
    }
    let mut idx: Vec<usize> = (0..n).collect();
    idx.sort_by(|&a, &b| scores[a].total_cmp(&scores[b]));
    let mut rank_sum = 0f64;
    let mut i = 0;
    while i < n {
        let mut j = i;
        while j < n && scores[idx[j]] == scores[idx[i]] {
            j += 1;
        }
        // Ranks i+1 ..= j share their mean.
        let mean_rank = (i + 1 + j) as f64 / 2.0;
        rank_sum += mean_rank * idx[i..j].iter().filter(|&&k| cloud[k]).count() as f64;
        i = j;
    }
    let p = pos as f64;
    Some((rank_sum - p * (p + 1.0) / 2.0) / (p * neg as f64))
}

/// RouteLLM's summary of a router on strong/weak results.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct PgrMetrics {
    pub n: usize,
    pub strong_quality: f64,
    pub weak_quality: f64,
    pub apgr: f64,
    /// Strong-call share (%) reaching PGR 0.5 / 0.8; `None` if never reached.
    pub cpt50_pct: Option<f64>,
    pub cpt80_pct: Option<f64>,
}

/// APGR and CPT of `scores` for per-query `(strong, weak)` qualities.
/// `None` when the strong model is not better on average (PGR undefined)
/// or the input is empty.
pub fn pgr(scores: &[f32], qualities: &[(f64, f64)]) -> Option<PgrMetrics> {
    let n = scores.len().min(qualities.len());
    if n == 0 {
        return None;
    }
    let qs = qualities[..n].iter().map(|q| q.0).sum::<f64>() / n as f64;
    let qw = qualities[..n].iter().map(|q| q.1).sum::<f64>() / n as f64;
    let gap = qs - qw;
    if gap <= 0.0 || !gap.is_finite() {
        return None;
    }
    let mut order: Vec<usize> = (0..n).collect();
    // Descending score; a stable sort keeps ties in input order, and ties
    // are averaged below anyway.
    order.sort_by(|&a, &b| scores[b].total_cmp(&scores[a]));
    let mut gains = Vec::with_capacity(n + 1);
    gains.push(0.0);
    let mut acc = 0.0;
    let mut i = 0;
    while i < n {
        let mut j = i;
        while j < n && scores[order[j]] == scores[order[i]] {
            j += 1;
        }
        let d: f64 = order[i..j].iter().map(|&k| qualities[k].0 - qualities[k].1).sum();
        let m = (j - i) as f64;
        for t in 1..=(j - i) {
            gains.push(acc + d * t as f64 / m);
        }
        acc += d;
        i = j;
    }
    let pgr: Vec<f64> = gains.iter().map(|g| g / n as f64 / gap).collect();
    let dx = 1.0 / n as f64;
    let apgr = pgr.windows(2).map(|w| dx * (w[0] + w[1]) / 2.0).sum();
    let crossing = |target: f64| -> Option<f64> {
        if pgr[0] >= target {
            return Some(0.0);
        }
        pgr.windows(2).enumerate().find(|(_, w)| w[1] >= target).map(|(i, w)| {
            let frac = if w[1] == w[0] { 0.0 } else { (target - w[0]) / (w[1] - w[0]) };
            100.0 * (i as f64 + frac) * dx
        })
    };
    Some(PgrMetrics { n, strong_quality: qs, weak_quality: qw, apgr, cpt50_pct: crossing(0.5), cpt80_pct: crossing(0.8) })
}

/// The threshold that keeps `target_local` of `scores` local (`score <
/// threshold`): halfway between the k-th and (k+1)-th smallest scores, `k =
/// round(target_local · n)`. `None` for empty input or a target outside [0, 1].
pub fn threshold_for_local_share(scores: &[f32], target_local: f64) -> Option<f32> {
    if scores.is_empty() || !(0.0..=1.0).contains(&target_local) {
        return None;
    }
    let mut s = scores.to_vec();
    s.sort_by(f32::total_cmp);
    let k = (target_local * s.len() as f64).round() as usize;
    Some(if k == 0 {
        // Everything escalated: at or below the smallest score.
        s[0]
    } else if k >= s.len() {
        // Nothing escalated: just above the largest score.
        next_up(s[s.len() - 1])
    } else {
        let mid = s[k - 1] + (s[k] - s[k - 1]) / 2.0;
        // With equal neighbours the midpoint is the tie itself; tied scores
        // all go the same way (escalated), so the share is approximate.
        if mid > s[k - 1] {
            mid
        } else {
            s[k]
        }
    })
}

/// The highest threshold that escalates at least `target_recall` of the
/// cloud-labelled scores. `None` without cloud-labelled queries or a target
/// outside [0, 1].
pub fn threshold_for_recall(scores: &[f32], cloud: &[bool], target_recall: f64) -> Option<f32> {
    if !(0.0..=1.0).contains(&target_recall) {
        return None;
    }
    let mut pos: Vec<f32> = scores.iter().zip(cloud).filter(|(_, &c)| c).map(|(&s, _)| s).collect();
    if pos.is_empty() {
        return None;
    }
    pos.sort_by(|a, b| b.total_cmp(a));
    let need = ((target_recall * pos.len() as f64).ceil() as usize).clamp(1, pos.len());
    Some(pos[need - 1])
}

/// Smallest f32 above `x` (finite `x`).
fn next_up(x: f32) -> f32 {
    if x.is_nan() || x == f32::INFINITY {
        return x;
    }
    if x == 0.0 {
        return f32::from_bits(1);
    }
    let b = x.to_bits();
    f32::from_bits(if x > 0.0 { b + 1 } else { b - 1 })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn classification_figures_on_a_hand_made_set() {
        // cloud: 0.9, 0.6, 0.2 ; local: 0.7, 0.3, 0.1, 0.05 ; threshold 0.5.
        let scores = [0.9, 0.6, 0.2, 0.7, 0.3, 0.1, 0.05];
        let cloud = [true, true, true, false, false, false, false];
        let m = classify(&scores, &cloud, 0.5);
        assert_eq!(m.n, 7);
        // Escalated: 0.9, 0.6, 0.7 -> tp 2, fp 1; correct = 2 + 3 = 5.
        assert!((m.accuracy - 5.0 / 7.0).abs() < 1e-12);
        assert!((m.local_share - 4.0 / 7.0).abs() < 1e-12);
        assert!((m.cloud_recall.unwrap() - 2.0 / 3.0).abs() < 1e-12);
        assert!((m.false_escalation.unwrap() - 0.25).abs() < 1e-12);
        // Pairs (cloud > local) out of 12: 0.9 beats 4, 0.6 beats 3, 0.2 beats 2 -> 9/12.
        assert!((m.auc.unwrap() - 0.75).abs() < 1e-12);
        // A tie counts one half.
        assert_eq!(auc(&[0.5, 0.5], &[true, false]), Some(0.5));
        assert_eq!(auc(&[0.1, 0.9], &[true, true]), None);
        let e = classify(&[], &[], 0.5);
        assert_eq!((e.n, e.cloud_recall, e.auc), (0, None, None));
    }

    #[test]
    fn pgr_matches_a_hand_computation() {
        // Gains s - w: q0 +1, q1 0, q2 -1, q3 +1. Q_strong = 3/4, Q_weak = 2/4, gap 1/4.
        let q = [(1.0, 0.0), (1.0, 1.0), (0.0, 1.0), (1.0, 0.0)];
        // Order by score: q0, q3, q1, q2 -> cumulative gains 0, 1, 2, 2, 1 -> PGR = g / 4 / 0.25 = g.
        let m = pgr(&[0.9, 0.5, 0.1, 0.8], &q).unwrap();
        assert!((m.strong_quality - 0.75).abs() < 1e-12 && (m.weak_quality - 0.5).abs() < 1e-12);
        let p = [0.0, 1.0, 2.0, 2.0, 1.0];
        let want: f64 = p.windows(2).map(|w| 0.25 * (w[0] + w[1]) / 2.0).sum();
        assert!((m.apgr - want).abs() < 1e-12 && (want - 1.375).abs() < 1e-12, "{} vs {want}", m.apgr);
        // PGR 0.5 and 0.8 are crossed on the first segment (0 -> 1 over x 0 -> 0.25).
        assert!((m.cpt50_pct.unwrap() - 12.5).abs() < 1e-9);
        assert!((m.cpt80_pct.unwrap() - 20.0).abs() < 1e-9);
        // A constant score is the random router: PGR(x) = x, APGR 1/2, CPT = p.
        let c = pgr(&[0.3; 4], &q).unwrap();
        assert!((c.apgr - 0.5).abs() < 1e-12);
        assert!((c.cpt50_pct.unwrap() - 50.0).abs() < 1e-9 && (c.cpt80_pct.unwrap() - 80.0).abs() < 1e-9);
        assert!(pgr(&[0.1, 0.2], &[(0.0, 1.0), (1.0, 1.0)]).is_none(), "no strong-weak gap");
        assert!(pgr(&[], &[]).is_none());
    }

    #[test]
    fn thresholds_hit_their_targets() {
        let s = [0.1, 0.4, 0.2, 0.9, 0.3, 0.8, 0.5, 0.7, 0.6, 0.0];
        let t = threshold_for_local_share(&s, 0.8).unwrap();
        assert_eq!(s.iter().filter(|&&x| x < t).count(), 8);
        assert!((t - 0.75).abs() < 1e-6);
        let all = threshold_for_local_share(&s, 1.0).unwrap();
        assert!(s.iter().all(|&x| x < all));
        let none = threshold_for_local_share(&s, 0.0).unwrap();
        assert!(s.iter().all(|&x| x >= none));
        assert!(threshold_for_local_share(&s, 1.5).is_none() && threshold_for_local_share(&[], 0.5).is_none());
        let cloud = [false, false, false, true, false, true, true, true, false, false];
        // Cloud scores 0.9, 0.8, 0.7, 0.5: 75% recall needs 3 -> threshold 0.7.
        assert_eq!(threshold_for_recall(&s, &cloud, 0.75), Some(0.7));
        assert_eq!(threshold_for_recall(&s, &cloud, 1.0), Some(0.5));
        assert_eq!(threshold_for_recall(&s, &[false; 10], 0.9), None);
    }
}
