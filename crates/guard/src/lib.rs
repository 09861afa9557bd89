//! The privacy guard: the only code that can declare a request safe to send
//! to the cloud.
//!
//! [`CloudSafeRequest`] has no public constructor: the guard builds one after
//! it has applied the policy (redacting or refusing personal data), and the
//! cloud client accepts nothing else. So "data never leaves the device unless
//! the guard allowed it" is enforced by the type system, not by convention.

pub mod detect;
pub mod entity;
pub mod eval;
pub mod policy;
mod safe;
pub mod secret;

pub use detect::Detector;
pub use entity::{Detection, EntityType, Finding};
pub use safe::CloudSafeRequest;
pub use secret::Secret;
