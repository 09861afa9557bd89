//! The training loop: micro-batches with gradient accumulation, global-norm
//! clipping, AdamW under a warm-up + cosine schedule, evaluation,
//! checkpoints that resume bit-identically, and a progress bar.
//!
//! Bit-identical resume holds because everything a step depends on is in
//! the checkpoint: parameters, both Adam moments and the step count (f32,
//! exact), and the data order (the loader's generator state at the start of
//! the epoch plus the position in it). The arithmetic itself is
//! deterministic for a given thread count and CPU (see [`crate::gemm`]).
//!
//! Deliberately absent: learning-rate finders, early stopping, mixed
//! precision, and multi-process data parallelism.

use crate::data::{BatchData, Loader, LoaderState, Sample};
use crate::error::{DistillError, Result};
use crate::exec::{forward_backward, Batch, LossSums, LossWeights, Workspace};
use crate::net::Net;
use crate::optim::{clip_global_norm, AdamW, AdamWConfig, Schedule};
use crate::st::{self, StTensor};
use hearth_formats::{Dtype, SafetensorsFile};
use hearth_models::pool::ThreadPool;
use std::path::{Path, PathBuf};
use std::time::Instant;

/// Training hyper-parameters.
#[derive(Clone, Debug, PartialEq)]
pub struct TrainConfig {
    /// Peak learning rate.
    pub lr: f32,
    /// Final learning rate as a fraction of the peak.
    pub min_lr_ratio: f32,
    pub warmup: u64,
    /// Optimizer updates in the whole run.
    pub steps: u64,
    /// Sequences per micro-batch.
    pub batch: usize,
    /// Micro-batches per update.
    pub grad_accum: usize,
    /// Global gradient-norm limit (0 = no clipping).
    pub clip: f64,
    pub adamw: AdamWConfig,
    /// Weight of the teacher KL term.
    pub kl_weight: f64,
    /// KL over the teacher's top-k plus one bucket for its remaining mass
    /// ([`crate::exec::LossWeights::kl_rest`]).
    pub kl_rest: bool,
    /// Seeds the data order.
    pub seed: u64,
    /// Worker threads (0 = all cores).
    pub threads: usize,
    /// Token used to pad short sequences (never a target).
    pub pad: u32,
}

impl Default for TrainConfig {
    fn default() -> Self {
        TrainConfig {
            lr: 1e-3,
            min_lr_ratio: 0.1,
            warmup: 100,
            steps: 1000,
            batch: 8,
            grad_accum: 1,
            clip: 1.0,
            adamw: AdamWConfig::default(),
            kl_weight: 0.0,
            kl_rest: false,
            seed: 0,
            threads: 0,
            pad: 0,
        }
    }
}

/// What one update did.
#[derive(Clone, Debug, PartialEq)]
pub struct StepReport {
    /// Updates done, including this one.
    pub step: u64,
    /// Mean cross-entropy per target token.
    pub ce: f64,
    /// Mean teacher KL per target token.
    pub kl: f64,
    pub lr: f32,
    /// Gradient norm before clipping.
    pub grad_norm: f64,
    /// Positions processed (batch × sequence length, padding included).
    pub tokens: usize,
    pub targets: usize,
    pub seconds: f64,
    pub epoch: u64,
}

/// Loss on held-out samples.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct EvalReport {
    /// Mean cross-entropy per target token (nats).
    pub loss: f64,
    pub n_targets: usize,
}

impl EvalReport {
    pub fn perplexity(&self) -> f64 {
        self.loss.exp()
    }
}

/// Options of [`Trainer::run`].
#[derive(Clone, Debug, Default)]
pub struct RunOptions {
    pub progress: bool,
    /// Write a checkpoint here every `checkpoint_every` updates and at the end.
    pub checkpoint: Option<PathBuf>,
    pub checkpoint_every: u64,
}

pub struct Trainer {
    pub net: Net,
    pub params: Vec<f32>,
    grads: Vec<f32>,
    pub opt: AdamW,
    pub sched: Schedule,
    pub cfg: TrainConfig,
    samples: Vec<Sample>,
    loader: Loader,
    pool: ThreadPool,
    ws: Workspace<f32>,
    /// Updates done.
    pub step: u64,
}

const FORMAT: &str = "hearth-distill-checkpoint-1";

impl Trainer {
    pub fn new(net: Net, params: Vec<f32>, samples: Vec<Sample>, cfg: TrainConfig) -> Result<Trainer> {
        if params.len() != net.params.len {
            return Err(DistillError::Config(format!("{} initial values for {} parameters", params.len(), net.params.len)));
        }
        if samples.is_empty() {
            return Err(DistillError::Config("no training samples".into()));
        }
        if cfg.batch == 0 || cfg.grad_accum == 0 || cfg.steps == 0 {
            return Err(DistillError::Config("batch, grad_accum and steps must be positive".into()));
        }
        if !(cfg.lr.is_finite() && cfg.lr > 0.0) {
            return Err(DistillError::Config(format!("learning rate {} must be positive", cfg.lr)));
        }
        if cfg.pad as usize >= net.cfg.n_vocab {
            return Err(DistillError::TokenOutOfRange { id: cfg.pad, n_vocab: net.cfg.n_vocab });
        }
        let n = params.len();
        Ok(Trainer {
            opt: AdamW::new(cfg.adamw, n),
            sched: Schedule { peak: cfg.lr, warmup: cfg.warmup, total: cfg.steps, min_ratio: cfg.min_lr_ratio },
            loader: Loader::new(samples.len(), cfg.seed),
            pool: ThreadPool::new(cfg.threads),
            ws: Workspace::new(),
            grads: vec![0.0; n],
            samples,
            net,
            params,
            cfg,
            step: 0,
        })
    }

    pub fn n_threads(&self) -> usize {
        self.pool.n_threads()
    }

    pub fn epoch(&self) -> u64 {
        self.loader.epoch()
    }

    /// One optimizer update over `grad_accum` micro-batches.
    pub fn train_step(&mut self) -> Result<StepReport> {
        let t0 = Instant::now();
        let micro: Vec<BatchData> = (0..self.cfg.grad_accum)
            .map(|_| {
                let idx = self.loader.next(self.cfg.batch);
                let refs: Vec<&Sample> = idx.iter().map(|&i| &self.samples[i]).collect();
                BatchData::assemble(&refs, self.cfg.pad)
            })
            .collect();
        let n_targets: usize = micro.iter().map(BatchData::n_targets).sum();
        let w = LossWeights { scale: 1.0 / n_targets.max(1) as f64, kl: self.cfg.kl_weight, kl_rest: self.cfg.kl_rest };
        self.grads.iter_mut().for_each(|g| *g = 0.0);
        let mut sums = LossSums::default();
        let mut tokens = 0;
        for bd in &micro {
            let batch = Batch { b: bd.b, t: bd.t, inputs: &bd.inputs, targets: &bd.targets, teacher: bd.teacher.as_deref() };
            let s = forward_backward(&self.pool, &self.net, &self.params, Some(&mut self.grads), &batch, w, &mut self.ws)?;
            sums.add(&s);
            tokens += bd.b * bd.t;
        }
        let ce = sums.ce / n_targets.max(1) as f64;
        let kl = sums.kl / n_targets.max(1) as f64;
        if !ce.is_finite() || !kl.is_finite() {
            return Err(DistillError::Diverged(ce + kl));
        }
        let grad_norm = clip_global_norm(&mut self.grads, self.cfg.clip);
        if !grad_norm.is_finite() {
            return Err(DistillError::Diverged(grad_norm));
        }
        let lr = self.sched.lr(self.step);
        self.opt.step(&self.net.params, &mut self.params, &self.grads, lr);
        self.step += 1;
        Ok(StepReport {
            step: self.step,
            ce,
            kl,
            lr,
            grad_norm,
            tokens,
            targets: n_targets,
            seconds: t0.elapsed().as_secs_f64(),
            epoch: self.loader.epoch(),
        })
    }

    /// Mean cross-entropy on `samples` (no gradients).
    pub fn evaluate(&mut self, samples: &[Sample], batch: usize) -> Result<EvalReport> {
        evaluate(&self.pool, &self.net, &self.params, samples, batch, self.cfg.pad, &mut self.ws)
    }

    /// Runs updates until `cfg.steps`, reporting each.
    pub fn run(&mut self, opts: &RunOptions, on_step: &mut dyn FnMut(&StepReport)) -> Result<()> {
        let bar = if opts.progress {
            let b = indicatif::ProgressBar::new(self.cfg.steps);
            b.set_style(
                indicatif::ProgressStyle::with_template("{bar:30} {pos}/{len} [{elapsed_precise}<{eta_precise}] {msg}")
                    .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar()),
            );
            b.set_position(self.step);
            b
        } else {
            indicatif::ProgressBar::hidden()
        };
        let mut avg: Option<f64> = None;
        while self.step < self.cfg.steps {
            let r = self.train_step()?;
            // Smoothed loss for display: the raw value is noisy per batch.
            let a = avg.map_or(r.ce, |a| 0.9 * a + 0.1 * r.ce);
            avg = Some(a);
            bar.set_message(format!(
                "loss {:.3} (avg {a:.3}) lr {:.2e} |g| {:.2} {:.0} tok/s epoch {}",
                r.ce,
                r.lr,
                r.grad_norm,
                r.tokens as f64 / r.seconds.max(1e-9),
                r.epoch
            ));
            bar.set_position(self.step);
            on_step(&r);
            if let Some(path) = &opts.checkpoint {
                if (opts.checkpoint_every > 0 && self.step.is_multiple_of(opts.checkpoint_every)) || self.step == self.cfg.steps {
                    self.save_checkpoint(path)?;
                }
            }
        }
        bar.finish();
        Ok(())
    }

    /// Saves parameters, optimizer state, step and data position.
    pub fn save_checkpoint(&self, path: &Path) -> Result<()> {
        let mut tensors = Vec::with_capacity(3 * self.net.params.tensors.len());
        for (prefix, buf) in [("param", &self.params), ("adam_m", &self.opt.m), ("adam_v", &self.opt.v)] {
            for info in &self.net.params.tensors {
                tensors.push(StTensor {
                    name: format!("{prefix}/{}", info.name),
                    shape: info.shape.clone(),
                    data: &buf[info.range()],
                    dtype: Dtype::F32,
                });
            }
        }
        let layout: Vec<(String, Vec<usize>)> = self.net.params.tensors.iter().map(|t| (t.name.clone(), t.shape.clone())).collect();
        let json = |v: serde_json::Value| v.to_string();
        let meta = vec![
            ("format".to_string(), FORMAT.to_string()),
            ("step".to_string(), self.step.to_string()),
            ("adam_t".to_string(), self.opt.t.to_string()),
            ("loader".to_string(), json(serde_json::to_value(self.loader.state()).map_err(|e| DistillError::Config(e.to_string()))?)),
            ("layout".to_string(), json(serde_json::json!(layout))),
            ("seed".to_string(), self.cfg.seed.to_string()),
        ];
        st::write(path, &tensors, &meta)
    }

    /// Restores a checkpoint written by [`Trainer::save_checkpoint`] for the
    /// same network and data.
    pub fn resume(&mut self, path: &Path) -> Result<()> {
        let bad = |why: String| DistillError::Checkpoint { path: path.to_path_buf(), why };
        let f = SafetensorsFile::open(path)?;
        if f.get_metadata("format") != Some(FORMAT) {
            return Err(bad(format!("not a {FORMAT} file")));
        }
        let num = |k: &str| -> Result<u64> {
            f.get_metadata(k).and_then(|v| v.parse().ok()).ok_or_else(|| bad(format!("missing or invalid {k}")))
        };
        let (step, adam_t) = (num("step")?, num("adam_t")?);
        let loader: LoaderState = f
            .get_metadata("loader")
            .and_then(|s| serde_json::from_str(s).ok())
            .ok_or_else(|| bad("missing or invalid loader state".into()))?;
        if loader.n != self.samples.len() {
            return Err(bad(format!("it was made with {} samples, this run has {}", loader.n, self.samples.len())));
        }
        let loader = Loader::from_state(&loader).ok_or_else(|| bad("invalid loader state".into()))?;
        let mut bufs = [vec![0f32; self.params.len()], vec![0f32; self.params.len()], vec![0f32; self.params.len()]];
        for (prefix, buf) in ["param", "adam_m", "adam_v"].iter().zip(bufs.iter_mut()) {
            for info in &self.net.params.tensors {
                let name = format!("{prefix}/{}", info.name);
                let (shape, vals) = st::read_f32(&f, &name).ok_or_else(|| bad(format!("missing tensor {name}")))?;
                if shape != info.shape {
                    return Err(bad(format!("{name} has shape {shape:?}, the network wants {:?}", info.shape)));
                }
                buf[info.range()].copy_from_slice(&vals);
            }
        }
        let [p, m, v] = bufs;
        self.params = p;
        self.opt.m = m;
        self.opt.v = v;
        self.opt.t = adam_t;
        self.step = step;
        self.loader = loader;
        Ok(())
    }
}

/// Mean cross-entropy of `params` on `samples`, in batches of `batch`.
pub fn evaluate(
    pool: &ThreadPool,
    net: &Net,
    params: &[f32],
    samples: &[Sample],
    batch: usize,
    pad: u32,
    ws: &mut Workspace<f32>,
) -> Result<EvalReport> {
    let mut sums = LossSums::default();
    for chunk in samples.chunks(batch.max(1)) {
        let refs: Vec<&Sample> = chunk.iter().collect();
        let bd = BatchData::assemble(&refs, pad);
        let b = Batch { b: bd.b, t: bd.t, inputs: &bd.inputs, targets: &bd.targets, teacher: None };
        let s = forward_backward(pool, net, params, None, &b, LossWeights { scale: 1.0, kl: 0.0, kl_rest: false }, ws)?;
        sums.add(&s);
    }
    Ok(EvalReport { loss: sums.ce / sums.n_targets.max(1) as f64, n_targets: sums.n_targets })
}
