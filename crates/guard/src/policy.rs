//! Per-entity policy.
//!
//! Deserialises from the lead's TOML, e.g.
//! ```toml
//! fail_closed = true            # uncertain spans count as sensitive
//! default = "keep-local"        # for types not listed below
//! [entities]
//! EMAIL = "redact"
//! API_KEY = "block"
//! ```
//! Precedence over a request: any `block` entity refuses it; otherwise any
//! `keep-local` entity (or, under `fail_closed`, any uncertain span whose
//! type is not `redact`) keeps it local; otherwise `redact` entities are
//! replaced by placeholders and the request may go to the cloud.
//!
//! An uncertain span is never a reason to *block*: under `fail_closed` an
//! uncertain span of a `block` type keeps the request local instead
//! (refusing a user on a guess is worse than answering locally), and one of
//! a `redact` type is redacted.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::entity::{Detection, EntityType};

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Action {
    /// The request must be answered locally whatever the router said.
    #[default]
    KeepLocal,
    /// Replace each value with a stable placeholder before escalation and
    /// restore it in the answer.
    Redact,
    /// Refuse the request.
    Block,
}

impl Action {
    pub fn as_str(self) -> &'static str {
        match self {
            Action::KeepLocal => "keep_local",
            Action::Redact => "redact",
            Action::Block => "block",
        }
    }
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Policy {
    /// Treat uncertain spans as sensitive (default true).
    pub fail_closed: bool,
    /// Action for entity types not listed in `entities` (default keep-local).
    #[serde(rename = "default")]
    pub default_action: Action,
    /// Per-type actions.
    pub entities: BTreeMap<EntityType, Action>,
}

impl Default for Policy {
    fn default() -> Self {
        Policy { fail_closed: true, default_action: Action::KeepLocal, entities: BTreeMap::new() }
    }
}

impl Policy {
    /// A policy giving every type the same action.
    pub fn all(action: Action) -> Policy {
        Policy { default_action: action, ..Policy::default() }
    }

    pub fn with(mut self, t: EntityType, a: Action) -> Policy {
        self.entities.insert(t, a);
        self
    }

    pub fn action(&self, t: EntityType) -> Action {
        self.entities.get(&t).copied().unwrap_or(self.default_action)
    }

    /// The action for an uncertain span of type `t` (`None`: ignore it).
    pub fn uncertain_action(&self, t: EntityType) -> Option<Action> {
        if !self.fail_closed {
            return None;
        }
        Some(match self.action(t) {
            Action::Block => Action::KeepLocal,
            a => a,
        })
    }

    /// Whether this detection alone would keep a cloud-bound request local
    /// (or refuse it): used for `clean_prompts_flagged`.
    pub fn keeps_local(&self, d: &Detection) -> bool {
        d.entities.iter().any(|f| self.action(f.entity) != Action::Redact)
            || d.uncertain.iter().any(|f| self.uncertain_action(f.entity).is_some_and(|a| a != Action::Redact))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn deserialises_from_json_shaped_config() {
        let p: Policy = serde_json::from_str(
            r#"{"fail_closed": false, "default": "redact", "entities": {"API_KEY": "block", "PERSON": "keep-local"}}"#,
        )
        .unwrap();
        assert!(!p.fail_closed);
        assert_eq!(p.action(EntityType::Email), Action::Redact);
        assert_eq!(p.action(EntityType::ApiKey), Action::Block);
        assert_eq!(p.action(EntityType::Person), Action::KeepLocal);
    }

    #[test]
    fn defaults_are_keep_local_and_fail_closed() {
        let p: Policy = serde_json::from_str("{}").unwrap();
        assert_eq!(p, Policy::default());
        assert!(EntityType::ALL.iter().all(|&t| p.action(t) == Action::KeepLocal));
        assert!(p.fail_closed);
    }

    #[test]
    fn unknown_keys_and_types_are_rejected() {
        assert!(serde_json::from_str::<Policy>(r#"{"fail_open": true}"#).is_err());
        assert!(serde_json::from_str::<Policy>(r#"{"entities": {"SHOE": "block"}}"#).is_err());
        assert!(serde_json::from_str::<Policy>(r#"{"entities": {"EMAIL": "maybe"}}"#).is_err());
    }

    #[test]
    fn uncertain_never_blocks() {
        let p = Policy::all(Action::Block);
        assert_eq!(p.uncertain_action(EntityType::Person), Some(Action::KeepLocal));
        let p = Policy { fail_closed: false, ..Policy::default() };
        assert_eq!(p.uncertain_action(EntityType::Person), None);
    }
}
