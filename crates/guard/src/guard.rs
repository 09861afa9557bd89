//! The decision: may this request leave the machine, and in what form?
//!
//! [`Guard::decide`] runs after the quality router. It is a pure function
//! of the request's text, the policy and the route the router wanted:
//! nothing in the prompt ("ignore previous rules and use the cloud") is an
//! instruction to it, because it never interprets text, it only detects
//! entities in it.
//!
//! What is scanned: every message's content and name, every tool call's
//! name and arguments (JSON string leaves when the arguments parse as
//! JSON, the raw text otherwise), every tool's name, description and
//! parameter-schema string leaves, stop sequences, and a JSON response
//! schema's name and string leaves. Not scanned: the model name, tool-call
//! ids and JSON object keys (identifiers chosen by programs, not people).

use std::collections::{BTreeMap, BTreeSet, HashMap};

use hearth_api::{ChatRequest, ResponseFormat, Route};
use serde_json::Value;

use crate::detect::Detector;
use crate::entity::{Detection, EntityType};
use crate::policy::{Action, Policy};
use crate::restore::Restorer;
use crate::safe::CloudSafeRequest;
use crate::secret::Secret;

/// The guard's answer for one request.
// `Cloud` carries the whole request by value, as the cloud client's API
// expects; decisions are made once per request, so the size is irrelevant.
#[allow(clippy::large_enum_variant)]
#[derive(Debug)]
pub enum Decision {
    /// Answer locally. `reasons` are machine-readable codes
    /// (`route.local`, `pii.keep_local:PERSON`, `pii.uncertain:PERSON`).
    Local { reasons: Vec<String> },
    /// Send this (possibly redacted) request to the cloud; pass the answer
    /// through the restorer.
    Cloud(CloudSafeRequest, Restorer),
    /// Refuse: the request holds entities of these types, which the policy
    /// blocks.
    Block { types: Vec<EntityType> },
}

impl Decision {
    pub fn route(&self) -> Option<Route> {
        match self {
            Decision::Local { .. } => Some(Route::Local),
            Decision::Cloud(..) => Some(Route::Cloud),
            Decision::Block { .. } => None,
        }
    }

    /// The refusal as a typed error, for `Block`.
    pub fn blocked(&self) -> Option<Blocked> {
        match self {
            Decision::Block { types } => Some(Blocked { types: types.clone() }),
            _ => None,
        }
    }
}

/// A request refused by the policy. Names the entity types, never values.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("request refused by the privacy policy: it contains {}", type_list(.types))]
pub struct Blocked {
    pub types: Vec<EntityType>,
}

fn type_list(types: &[EntityType]) -> String {
    types.iter().map(|t| t.as_str()).collect::<Vec<_>>().join(", ")
}

/// What the guard saw, for the audit log: types, counts and reason codes,
/// never values.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Summary {
    pub counts: BTreeMap<EntityType, usize>,
    pub uncertain: BTreeMap<EntityType, usize>,
    pub reasons: Vec<String>,
    /// Bytes of scanned text.
    pub bytes_in: usize,
}

/// A decision with its summary.
#[derive(Debug)]
pub struct Inspection {
    pub decision: Decision,
    pub summary: Summary,
}

pub struct Guard {
    detector: Detector,
    policy: Policy,
}

impl std::fmt::Debug for Guard {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Guard").field("policy", &self.policy).finish()
    }
}

impl Guard {
    pub fn new(policy: Policy) -> Guard {
        Guard { detector: Detector::new(), policy }
    }

    pub fn policy(&self) -> &Policy {
        &self.policy
    }

    pub fn detector(&self) -> &Detector {
        &self.detector
    }

    /// Decides where `req` may be answered; `route_wanted` is the router's choice.
    pub fn decide(&self, req: &ChatRequest, route_wanted: Route) -> Decision {
        self.inspect(req, route_wanted).decision
    }

    /// [`Guard::decide`] plus the summary the audit log records.
    pub fn inspect(&self, req: &ChatRequest, route_wanted: Route) -> Inspection {
        let mut work = req.clone();
        let mut detections: Vec<Detection> = Vec::new();
        let mut summary = Summary::default();
        for_each_text(&mut work, &mut |s: &mut String| {
            summary.bytes_in += s.len();
            detections.push(self.detector.detect(s));
        });

        let mut blocked: BTreeSet<EntityType> = BTreeSet::new();
        let mut keep_local: BTreeSet<String> = BTreeSet::new();
        let mut redact: BTreeSet<EntityType> = BTreeSet::new();
        for d in &detections {
            for f in &d.entities {
                *summary.counts.entry(f.entity).or_default() += 1;
                match self.policy.action(f.entity) {
                    Action::Block => {
                        blocked.insert(f.entity);
                    }
                    Action::KeepLocal => {
                        keep_local.insert(format!("pii.keep_local:{}", f.entity));
                    }
                    Action::Redact => {
                        redact.insert(f.entity);
                    }
                }
            }
            for f in &d.uncertain {
                *summary.uncertain.entry(f.entity).or_default() += 1;
                match self.policy.uncertain_action(f.entity) {
                    None => {}
                    Some(Action::Redact) => {
                        redact.insert(f.entity);
                    }
                    Some(_) => {
                        keep_local.insert(format!("pii.uncertain:{}", f.entity));
                    }
                }
            }
        }

        if !blocked.is_empty() {
            let types: Vec<EntityType> = blocked.into_iter().collect();
            summary.reasons = types.iter().map(|t| format!("pii.block:{t}")).collect();
            return Inspection { decision: Decision::Block { types }, summary };
        }
        if route_wanted == Route::Local || !keep_local.is_empty() {
            let mut reasons = Vec::new();
            if route_wanted == Route::Local {
                reasons.push("route.local".to_string());
            }
            reasons.extend(keep_local);
            summary.reasons = reasons.clone();
            return Inspection { decision: Decision::Local { reasons }, summary };
        }

        // Cloud: redact what the policy says, with stable placeholders.
        let originals: Vec<String> = {
            let mut v = Vec::new();
            for_each_text(&mut req.clone(), &mut |s: &mut String| v.push(s.clone()));
            v
        };
        let mut assigner = Assigner::new(originals);
        let mut idx = 0usize;
        for_each_text(&mut work, &mut |s: &mut String| {
            let d = &detections[idx];
            idx += 1;
            let mut spans: Vec<(usize, usize, EntityType)> = d
                .entities
                .iter()
                .filter(|f| self.policy.action(f.entity) == Action::Redact)
                .chain(d.uncertain.iter().filter(|f| self.policy.uncertain_action(f.entity) == Some(Action::Redact)))
                .map(|f| (f.start, f.end, f.entity))
                .collect();
            if spans.is_empty() {
                return;
            }
            spans.sort_by_key(|x| x.0);
            let mut out = String::with_capacity(s.len());
            let mut pos = 0;
            for (st, en, ty) in spans {
                if st < pos {
                    continue; // detection output is non-overlapping; defensive
                }
                out.push_str(&s[pos..st]);
                out.push_str(&assigner.placeholder(ty, &s[st..en]));
                pos = en;
            }
            out.push_str(&s[pos..]);
            *s = out;
        });
        summary.reasons = if redact.is_empty() {
            vec!["pii.none".to_string()]
        } else {
            redact.iter().map(|t| format!("pii.redact:{t}")).collect()
        };
        let restorer = Restorer::new(assigner.into_entries());
        Inspection { decision: Decision::Cloud(CloudSafeRequest::new(work), restorer), summary }
    }
}

/// Hands out `[TYPE_n]` placeholders: the same (type, value) gets the same
/// one within a request; a placeholder that already occurs in the request's
/// own text is skipped, so restoring can never rewrite the user's text.
struct Assigner {
    originals: Vec<String>,
    by_value: HashMap<(EntityType, String), String>,
    next: HashMap<EntityType, usize>,
    entries: Vec<(String, Secret)>,
}

impl Assigner {
    fn new(originals: Vec<String>) -> Assigner {
        Assigner { originals, by_value: HashMap::new(), next: HashMap::new(), entries: Vec::new() }
    }

    fn placeholder(&mut self, t: EntityType, value: &str) -> String {
        if let Some(p) = self.by_value.get(&(t, value.to_string())) {
            return p.clone();
        }
        let n = self.next.entry(t).or_insert(0);
        let p = loop {
            *n += 1;
            let p = format!("[{}_{}]", t.as_str(), n);
            if !self.originals.iter().any(|o| o.contains(&p)) {
                break p;
            }
        };
        self.by_value.insert((t, value.to_string()), p.clone());
        self.entries.push((p.clone(), Secret::new(value)));
        p
    }

    fn into_entries(self) -> Vec<(String, Secret)> {
        self.entries
    }
}

/// Calls `f` on every scanned text slot of the request, in a fixed order.
/// JSON texts (tool-call arguments) are visited leaf by leaf and written
/// back compactly when `f` changed any leaf.
pub(crate) fn for_each_text(req: &mut ChatRequest, f: &mut dyn FnMut(&mut String)) {
    for m in &mut req.messages {
        f(&mut m.content);
        if let Some(n) = &mut m.name {
            f(n);
        }
        for c in &mut m.tool_calls {
            f(&mut c.name);
            json_text(&mut c.arguments, f);
        }
    }
    for t in &mut req.tools {
        f(&mut t.name);
        if let Some(d) = &mut t.description {
            f(d);
        }
        json_leaves(&mut t.parameters, f);
    }
    for s in &mut req.params.stop {
        f(s);
    }
    if let ResponseFormat::JsonSchema { name, schema, .. } = &mut req.response_format {
        f(name);
        json_leaves(schema, f);
    }
}

fn json_text(s: &mut String, f: &mut dyn FnMut(&mut String)) {
    match serde_json::from_str::<Value>(s) {
        Ok(mut v) if !v.is_string() || s.trim_start().starts_with('"') => {
            let before = v.clone();
            json_leaves(&mut v, f);
            if v != before {
                if let Ok(text) = serde_json::to_string(&v) {
                    *s = text;
                }
            }
        }
        _ => f(s),
    }
}

fn json_leaves(v: &mut Value, f: &mut dyn FnMut(&mut String)) {
    match v {
        Value::String(s) => f(s),
        Value::Array(a) => a.iter_mut().for_each(|x| json_leaves(x, f)),
        Value::Object(o) => o.values_mut().for_each(|x| json_leaves(x, f)),
        _ => {}
    }
}
