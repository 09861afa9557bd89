//! The privacy guard: the only code that can declare a request safe to send
//! to the cloud.
//!
//! [`CloudSafeRequest`] has no public constructor: the guard builds one after
//! it has applied the policy (redacting or refusing personal data), and the
//! cloud client accepts nothing else. So "data never leaves the device unless
//! the guard allowed it" is enforced by the type system, not by convention.
//!
//! * [`detect`]: PII recognizers ([`Detector`]).
//! * [`policy`]: per-entity actions ([`Policy`]).
//! * [`Guard::decide`]: the decision ([`Decision`]), with redaction.
//! * [`restore`]: putting values back into the cloud's answer ([`Restorer`]).
//! * [`audit`]: the hash-chained, signed audit log.
//! * [`eval`]: detection quality on a labelled corpus.
//!
//! Nothing in this crate prints an entity value: findings carry spans, not
//! text; errors name line numbers and types; [`Restorer`] and [`Secret`]
//! redact themselves in `Debug`.

pub mod audit;
pub mod detect;
pub mod entity;
pub mod eval;
mod guard;
pub mod policy;
pub mod restore;
mod safe;
pub mod secret;

pub use detect::Detector;
pub use entity::{Detection, EntityType, Finding};
pub use guard::{Blocked, Decision, Guard, Inspection, Summary};
pub use policy::{Action, Policy};
pub use restore::{EventRestorer, Restorer, StreamRestorer};
pub use safe::CloudSafeRequest;
pub use secret::Secret;
