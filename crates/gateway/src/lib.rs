//! Hearth's hybrid gateway: the decisions behind `hearth serve` when it
//! routes between the local model and a cloud model.
//!
//! * [`config`]: `hearth.toml`, validated with key paths in every error.
//! * [`router`]: the quality router's interface ([`QueryRouter`]) and
//!   stand-ins until `hearth-router` is merged.
//! * [`Gateway`]: guard detection → router → deterministic privacy veto
//!   ([`Gateway::plan`]); the only cloud client ([`Egress`]); the audit log
//!   and ledger bookkeeping.
//! * [`cascade`]: confidence of a local answer from its token
//!   log-probabilities, and threshold calibration.
//! * [`reasons`]: the reason-code vocabulary shared by the
//!   `x-hearth-reason` header, the ledger and the audit log.
//!
//! This crate holds no HTTP and no model: the server (`hearth-server`) runs
//! the plan — local generation, the cloud call, fallback, cascade, SSE —
//! and reports back through [`Gateway::audit`] and [`Gateway::record`].
//!
//! Deliberately absent: several cloud endpoints or providers (one
//! OpenAI-compatible endpoint), per-tenant policies, routing of legacy
//! `/v1/completions` (always local) and embeddings.

pub mod cascade;
pub mod config;
mod gateway;
pub mod reasons;
pub mod router;

pub use config::{Config, ConfigError, ConfigErrors};
pub use gateway::{
    egress_bytes, prices_from, Attempt, Egress, Escalation, Gateway, GatewayBuilder, Outcome, Plan, Target, TargetError,
};
pub use router::{QueryRouter, RouterError};
