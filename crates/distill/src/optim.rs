//! AdamW, global-norm gradient clipping and the learning-rate schedule.
//!
//! AdamW as in Loshchilov & Hutter, "Decoupled Weight Decay Regularization"
//! (ICLR 2019) and PyTorch's `torch.optim.AdamW`: the decay multiplies the
//! parameter by `1 − lr·λ` separately from the Adam update, and the moments
//! are bias-corrected by `1 − βᵗ`. Decay applies only to tensors marked
//! `decay` in the [`ParamSet`] (matrices, not norms or biases), as GPT-2 /
//! llm.c train.

use crate::net::ParamSet;

/// AdamW hyper-parameters.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct AdamWConfig {
    pub beta1: f32,
    pub beta2: f32,
    pub eps: f32,
    pub weight_decay: f32,
}

impl Default for AdamWConfig {
    fn default() -> Self {
        AdamWConfig { beta1: 0.9, beta2: 0.95, eps: 1e-8, weight_decay: 0.1 }
    }
}

/// Optimizer state: first and second moments and the step count.
#[derive(Clone, Debug, PartialEq)]
pub struct AdamW {
    pub cfg: AdamWConfig,
    pub m: Vec<f32>,
    pub v: Vec<f32>,
    /// Updates applied so far.
    pub t: u64,
}

impl AdamW {
    pub fn new(cfg: AdamWConfig, n: usize) -> AdamW {
        AdamW { cfg, m: vec![0.0; n], v: vec![0.0; n], t: 0 }
    }

    /// One update of `params` with `grads` at learning rate `lr`.
    pub fn step(&mut self, layout: &ParamSet, params: &mut [f32], grads: &[f32], lr: f32) {
        self.t += 1;
        let c = self.cfg;
        // Bias corrections in f64: at t = 1 with beta2 = 0.999 the f32
        // expression 1 - beta2^t loses three digits.
        let bc1 = (1.0 - (c.beta1 as f64).powi(self.t.min(i32::MAX as u64) as i32)) as f32;
        let bc2 = (1.0 - (c.beta2 as f64).powi(self.t.min(i32::MAX as u64) as i32)) as f32;
        for info in &layout.tensors {
            let decay = if info.decay { 1.0 - lr * c.weight_decay } else { 1.0 };
            let r = info.range();
            for (((p, &g), m), v) in params[r.clone()].iter_mut().zip(&grads[r.clone()]).zip(&mut self.m[r.clone()]).zip(&mut self.v[r]) {
                *m = c.beta1 * *m + (1.0 - c.beta1) * g;
                *v = c.beta2 * *v + (1.0 - c.beta2) * g * g;
                let mhat = *m / bc1;
                let vhat = *v / bc2;
                *p = *p * decay - lr * mhat / (vhat.sqrt() + c.eps);
            }
        }
    }
}

/// The L2 norm of all gradients (summed in f64).
pub fn global_norm(grads: &[f32]) -> f64 {
    grads.iter().map(|&g| g as f64 * g as f64).sum::<f64>().sqrt()
}

/// Scales `grads` so their global norm is at most `max_norm`; returns the
/// norm before clipping. `max_norm <= 0` disables clipping.
pub fn clip_global_norm(grads: &mut [f32], max_norm: f64) -> f64 {
    let norm = global_norm(grads);
    if max_norm > 0.0 && norm > max_norm {
        let s = (max_norm / (norm + 1e-6)) as f32;
        grads.iter_mut().for_each(|g| *g *= s);
    }
    norm
}

/// Linear warm-up from 0 to `peak` over `warmup` steps, then a cosine decay
/// to `peak · min_ratio` at `total` steps (and constant after).
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Schedule {
    pub peak: f32,
    pub warmup: u64,
    pub total: u64,
    pub min_ratio: f32,
}

impl Schedule {
    /// Learning rate for update number `step` (0-based).
    pub fn lr(&self, step: u64) -> f32 {
        if step < self.warmup {
            return self.peak * (step + 1) as f32 / self.warmup as f32;
        }
        let span = self.total.saturating_sub(self.warmup).max(1);
        let progress = ((step - self.warmup) as f64 / span as f64).min(1.0);
        let cos = 0.5 * (1.0 + (std::f64::consts::PI * progress).cos());
        let min = self.peak as f64 * self.min_ratio as f64;
        (min + (self.peak as f64 - min) * cos) as f32
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn layout(n: usize, decay: bool) -> ParamSet {
        let mut ps = ParamSet::default();
        ps.add("w", &[n], decay);
        ps
    }

    /// One step by hand: with bias correction the first update is
    /// `lr · g/|g|` (m̂ = g, v̂ = g²), plus the decoupled decay.
    #[test]
    fn first_step_matches_the_closed_form() {
        let ps = layout(3, true);
        let mut opt = AdamW::new(AdamWConfig { beta1: 0.9, beta2: 0.999, eps: 0.0, weight_decay: 0.5 }, 3);
        let mut p = vec![1.0f32, -2.0, 0.5];
        let g = vec![0.3f32, -0.001, 4.0];
        opt.step(&ps, &mut p, &g, 0.1);
        let want = [1.0 * (1.0 - 0.05) - 0.1, -2.0 * 0.95 + 0.1, 0.5 * 0.95 - 0.1];
        for (a, b) in p.iter().zip(want) {
            assert!((a - b).abs() < 1e-6, "{a} vs {b}");
        }
    }

    #[test]
    fn no_decay_for_unmarked_tensors_and_zero_gradient_is_a_no_op() {
        let ps = layout(2, false);
        let mut opt = AdamW::new(AdamWConfig::default(), 2);
        let mut p = vec![1.0f32, 2.0];
        opt.step(&ps, &mut p, &[0.0, 0.0], 0.1);
        assert_eq!(p, vec![1.0, 2.0]);
    }

    /// AdamW minimises a quadratic.
    #[test]
    fn converges_on_a_quadratic() {
        let ps = layout(4, false);
        let target = [3.0f32, -1.0, 0.25, 10.0];
        let mut p = vec![0.0f32; 4];
        let mut opt = AdamW::new(AdamWConfig { beta1: 0.9, beta2: 0.999, eps: 1e-8, weight_decay: 0.0 }, 4);
        let sched = Schedule { peak: 0.5, warmup: 10, total: 2000, min_ratio: 0.001 };
        for s in 0..2000 {
            let g: Vec<f32> = p.iter().zip(&target).map(|(a, b)| 2.0 * (a - b)).collect();
            opt.step(&ps, &mut p, &g, sched.lr(s));
        }
        for (a, b) in p.iter().zip(&target) {
            assert!((a - b).abs() < 1e-2, "{a} vs {b}");
        }
    }

    #[test]
    fn clipping_bounds_the_norm() {
        let mut g = vec![3.0f32, 4.0];
        assert_eq!(clip_global_norm(&mut g, 10.0), 5.0);
        assert_eq!(g, vec![3.0, 4.0]);
        let n = clip_global_norm(&mut g, 1.0);
        assert_eq!(n, 5.0);
        assert!((global_norm(&g) - 1.0).abs() < 1e-5);
    }

    #[test]
    fn schedule_warms_up_then_decays_to_the_floor() {
        let s = Schedule { peak: 1.0, warmup: 10, total: 110, min_ratio: 0.1 };
        assert!((s.lr(0) - 0.1).abs() < 1e-6);
        assert!((s.lr(9) - 1.0).abs() < 1e-6);
        assert!((s.lr(10) - 1.0).abs() < 1e-6);
        assert!((s.lr(60) - 0.55).abs() < 1e-4);
        assert!((s.lr(110) - 0.1).abs() < 1e-6);
        assert!((s.lr(500) - 0.1).abs() < 1e-6);
        for i in 10..110 {
            assert!(s.lr(i + 1) <= s.lr(i));
        }
    }
}
