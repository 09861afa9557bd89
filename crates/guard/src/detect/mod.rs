//! PII detection: pattern recognizers with validators (Luhn, mod-97, octet
//! ranges, calendar checks), context-gated recognizers (dates of birth,
//! medical record numbers, passports), and gazetteer + cue scoring for
//! names and addresses.
//!
//! Design, after Microsoft Presidio's recognizer model: every recognizer
//! proposes candidate spans with a confidence; candidates are resolved
//! greedily (highest confidence, then longest, wins an overlap). Confident
//! spans (>= [`THRESHOLD`]) are entities; spans between [`UNCERTAIN_FLOOR`]
//! and the threshold are "uncertain" and the policy fails closed on them.
//!
//! Deliberately absent: no statistical NER model (names are found from
//! gazetteers, capitalisation and context cues, see `names`), no
//! non-Latin-script names (CJK, Arabic, Cyrillic names written in their own
//! script are not detected), no free-text addresses without a house number
//! or street-type word, and no language identification.
//!
//! All regexes are compiled once per process (`OnceLock`).

mod address;
mod context;
mod names;
mod patterns;

use std::sync::OnceLock;

use crate::entity::{Detection, EntityType, Finding};

pub(crate) use context::Context;

/// Findings at or above this confidence are entities.
pub const THRESHOLD: f32 = 0.5;
/// Findings at or above this confidence (and below [`THRESHOLD`]) are
/// uncertain; below it they are dropped.
pub const UNCERTAIN_FLOOR: f32 = 0.25;

/// The detector. Cheap to construct (the compiled tables are shared).
#[derive(Clone, Copy, Debug, Default)]
pub struct Detector {
    _private: (),
}

impl Detector {
    pub fn new() -> Detector {
        // Force compilation now so the first request does not pay for it.
        let _ = tables();
        Detector { _private: () }
    }

    /// Detects entities in one text.
    pub fn detect(&self, text: &str) -> Detection {
        let t = tables();
        let ctx = Context::new(text, &t.context);
        let mut cands: Vec<Finding> = Vec::new();
        let dates = patterns::dates(text, &t.patterns);
        patterns::scan(text, &ctx, &t.patterns, &dates, &mut cands);
        address::scan(text, &ctx, &t.address, &t.names, &dates, &mut cands);
        let before_names = cands.clone();
        names::scan(text, &ctx, &t.names, &before_names, &dates, &mut cands);
        dob_after_name(text, &dates, &mut cands);
        resolve(cands)
    }
}

pub(crate) struct Tables {
    context: context::Tables,
    patterns: patterns::Tables,
    address: address::Tables,
    names: names::Tables,
}

pub(crate) fn tables() -> &'static Tables {
    static T: OnceLock<Tables> = OnceLock::new();
    T.get_or_init(|| Tables {
        context: context::Tables::new(),
        patterns: patterns::Tables::new(),
        address: address::Tables::new(),
        names: names::Tables::new(),
    })
}

/// A date right after a person's name, in brackets or between commas
/// ("Olivia Smith (12/03/1980)", "Olivia Smith, 12 March 1980,") is taken
/// for a date of birth.
fn dob_after_name(text: &str, dates: &[(usize, usize)], cands: &mut Vec<Finding>) {
    let persons: Vec<usize> =
        cands.iter().filter(|f| f.entity == EntityType::Person && f.confidence >= THRESHOLD).map(|f| f.end).collect();
    for &(s, e) in dates {
        let follows = persons.iter().any(|&pe| {
            pe <= s && matches!(&text[pe..s], " (" | ", " | " - " | ", born " | " (born " | " (b. " | ", b. ")
        });
        let closes = matches!(next_char(text, e), Some(')') | Some(',') | Some(';') | None);
        if follows && closes {
            cands.push(Finding { entity: EntityType::DateOfBirth, start: s, end: e, confidence: 0.75 });
        }
    }
}

/// Greedy overlap resolution: the most confident (then longest, then
/// earliest) candidate wins; an uncertain candidate survives only where it
/// overlaps no entity and no more confident uncertain span.
fn resolve(mut cands: Vec<Finding>) -> Detection {
    cands.retain(|f| f.confidence >= UNCERTAIN_FLOOR && f.end > f.start);
    cands.sort_by(|a, b| {
        b.confidence
            .total_cmp(&a.confidence)
            .then(b.len().cmp(&a.len()))
            .then(a.start.cmp(&b.start))
            .then(a.entity.cmp(&b.entity))
    });
    let mut taken: Vec<Finding> = Vec::new();
    for c in cands {
        if taken.iter().any(|t| t.overlaps(c.start, c.end)) {
            continue;
        }
        taken.push(c);
    }
    taken.sort_by_key(|f| f.start);
    let (entities, uncertain) = taken.into_iter().partition(|f| f.confidence >= THRESHOLD);
    Detection { entities, uncertain }
}

/// Convenience for callers that want a single entity type list.
pub fn entity_types(d: &Detection) -> Vec<EntityType> {
    let mut v: Vec<EntityType> = d.entities.iter().map(|f| f.entity).collect();
    v.sort();
    v.dedup();
    v
}

/// The largest char boundary <= `i`.
pub(crate) fn floor_boundary(text: &str, mut i: usize) -> usize {
    i = i.min(text.len());
    while !text.is_char_boundary(i) {
        i -= 1;
    }
    i
}

/// Previous char before byte offset `i`.
pub(crate) fn prev_char(text: &str, i: usize) -> Option<char> {
    text.get(..i).and_then(|s| s.chars().next_back())
}

/// Char at byte offset `i`.
pub(crate) fn next_char(text: &str, i: usize) -> Option<char> {
    text.get(i..).and_then(|s| s.chars().next())
}

#[cfg(test)]
mod tests;
