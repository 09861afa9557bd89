//! The quality router's interface, and stand-in routers.
//!
//! The trained router (MiniLM embedding + head, calibrated threshold) lives
//! in `hearth-router`; [`TrainedRouter`] adapts it to [`QueryRouter`].
//! [`HeuristicRouter`] stays as the fallback for deployments without the
//! MiniLM encoder.
//!
//! A router only *scores*: higher means the query needs the cloud model. It
//! never sees the guard's decision and cannot override it — the privacy
//! veto runs after it ([`crate::Gateway::plan`]).

use hearth_api::ChatRequest;

/// Why a router could not score a request. The gateway answers such a
/// request locally (reason `router.error`): a broken router must not send
/// traffic to the cloud.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum RouterError {
    #[error("router input: {0}")]
    Input(String),
    #[error("router model: {0}")]
    Model(String),
}

/// Scores how much a query needs the cloud model.
pub trait QueryRouter: Send + Sync {
    /// Probability-like score that the query needs the cloud model (higher = cloud).
    fn score(&self, req: &ChatRequest) -> Result<f32, RouterError>;
    /// Scores at or above this go to the cloud.
    fn threshold(&self) -> f32;
    /// A short name for logs, `/metrics` and `hearth config check`.
    fn name(&self) -> &str;
}

/// A router with a configured threshold instead of its own.
pub struct WithThreshold<R> {
    pub inner: R,
    pub threshold: f32,
}

impl<R: QueryRouter> QueryRouter for WithThreshold<R> {
    fn score(&self, req: &ChatRequest) -> Result<f32, RouterError> {
        self.inner.score(req)
    }
    fn threshold(&self) -> f32 {
        self.threshold
    }
    fn name(&self) -> &str {
        self.inner.name()
    }
}

/// Always the same score: `always-local` (0) and `always-cloud` (1), and
/// tests.
#[derive(Clone, Debug)]
pub struct FixedRouter {
    pub score: f32,
    pub threshold: f32,
    pub name: String,
}

impl FixedRouter {
    pub fn always_local() -> FixedRouter {
        FixedRouter { score: 0.0, threshold: 0.5, name: "always-local".into() }
    }
    pub fn always_cloud() -> FixedRouter {
        FixedRouter { score: 1.0, threshold: 0.5, name: "always-cloud".into() }
    }
}

impl QueryRouter for FixedRouter {
    fn score(&self, _req: &ChatRequest) -> Result<f32, RouterError> {
        Ok(self.score)
    }
    fn threshold(&self) -> f32 {
        self.threshold
    }
    fn name(&self) -> &str {
        &self.name
    }
}

/// The stand-in quality router: query length plus cue words, squashed to
/// (0, 1). It is the "length baseline" of RouteLLM-style evaluations
/// (`shared/router/external/length_baseline.py` scores by length alone)
/// with a handful of cues that separate routine requests (summarise,
/// extract, translate, ...) from open-ended ones (design, prove, debug, ...).
/// It is a placeholder for the trained router, not a claim about quality.
#[derive(Clone, Debug)]
pub struct HeuristicRouter {
    pub threshold: f32,
}

impl Default for HeuristicRouter {
    fn default() -> Self {
        HeuristicRouter { threshold: 0.5 }
    }
}

/// Cues of multi-step or open-ended work (lower-case substrings).
const HARD_CUES: [&str; 18] = [
    "design", "architect", "prove", "derive", "debug", "step by step", "trade-off", "tradeoff", "analyze",
    "analyse", "optimi", "strategy", "research", "algorithm", "in depth", "compare and contrast", "why does",
    "implement",
];
/// Cues of routine work.
const EASY_CUES: [&str; 12] = [
    "summarize", "summarise", "translate", "extract", "classify", "rewrite", "rephrase", "fix the grammar",
    "list the", "list just", "what is the capital", "short answer",
];

impl QueryRouter for HeuristicRouter {
    fn score(&self, req: &ChatRequest) -> Result<f32, RouterError> {
        let text = req.last_user_text().to_lowercase();
        // Length in words, on a log scale: 8 words is neutral, each doubling
        // adds 0.6 (a 128-word request leans cloud on length alone).
        let words = text.split_whitespace().count().max(1) as f32;
        let mut z = 0.6 * (words / 8.0).log2() - 1.0;
        z += 1.6 * HARD_CUES.iter().filter(|c| text.contains(*c)).count() as f32;
        z -= 1.6 * EASY_CUES.iter().filter(|c| text.contains(*c)).count() as f32;
        Ok(1.0 / (1.0 + (-z).exp()))
    }
    fn threshold(&self) -> f32 {
        self.threshold
    }
    fn name(&self) -> &str {
        "heuristic"
    }
}

/// A trained `hearth-router` router (MiniLM embedding + logistic head with
/// its calibrated threshold). A conversation is scored from its user turns
/// as `hearth_router::Router::score_user_turns` defines: the last turn alone
/// or all of them together, whichever needs the cloud more.
pub struct TrainedRouter {
    inner: hearth_router::Router,
}

impl TrainedRouter {
    /// `spec`: a router name (`default`, `routellm`, `routers/<name>.json`,
    /// `$HEARTH_ROUTERS`) or a path to a router file.
    pub fn load(spec: &str) -> Result<TrainedRouter, RouterError> {
        hearth_router::Router::load(spec)
            .map(|inner| TrainedRouter { inner })
            .map_err(|e| RouterError::Model(e.to_string()))
    }
}

impl QueryRouter for TrainedRouter {
    fn score(&self, req: &ChatRequest) -> Result<f32, RouterError> {
        let turns: Vec<&str> =
            req.messages.iter().filter(|m| m.role == hearth_api::Role::User).map(|m| m.content.as_str()).collect();
        self.inner.score_user_turns(&turns).map_err(|e| RouterError::Model(e.to_string()))
    }
    fn threshold(&self) -> f32 {
        self.inner.threshold()
    }
    fn name(&self) -> &str {
        self.inner.name()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use hearth_api::{Message, Role};

    fn req(text: &str) -> ChatRequest {
        ChatRequest::new("hearth/auto", vec![Message::new(Role::User, text)])
    }

    #[test]
    fn heuristic_separates_routine_from_open_ended() {
        let r = HeuristicRouter::default();
        let easy = r.score(&req("Summarize this paragraph in two sentences.")).unwrap();
        let hard = r
            .score(&req("Design a fault-tolerant architecture for a payments system and analyze the trade-offs step by step."))
            .unwrap();
        assert!(easy < r.threshold(), "{easy}");
        assert!(hard >= r.threshold(), "{hard}");
        assert!((0.0..=1.0).contains(&easy) && (0.0..=1.0).contains(&hard));
    }

    #[test]
    fn threshold_override_keeps_scores() {
        let r = WithThreshold { inner: HeuristicRouter::default(), threshold: 0.9 };
        let q = req("Prove that the algorithm terminates.");
        assert_eq!(r.score(&q).unwrap(), HeuristicRouter::default().score(&q).unwrap());
        assert_eq!(r.threshold(), 0.9);
        assert_eq!(r.name(), "heuristic");
    }
}
