//! Entity types and findings.
//!
//! A [`Finding`] is a type, a byte span and a confidence. It deliberately
//! does not own the matched text: anything that prints a finding (Debug,
//! reason codes, the audit log) therefore cannot print the value.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

/// The kinds of personal data the guard recognises.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum EntityType {
    Person,
    Email,
    Phone,
    UsSsn,
    CreditCard,
    Iban,
    IpAddress,
    StreetAddress,
    DateOfBirth,
    MedicalRecordNumber,
    Passport,
    ApiKey,
}

impl EntityType {
    pub const ALL: [EntityType; 12] = [
        EntityType::Person,
        EntityType::Email,
        EntityType::Phone,
        EntityType::UsSsn,
        EntityType::CreditCard,
        EntityType::Iban,
        EntityType::IpAddress,
        EntityType::StreetAddress,
        EntityType::DateOfBirth,
        EntityType::MedicalRecordNumber,
        EntityType::Passport,
        EntityType::ApiKey,
    ];

    /// The upper-case name used in reason codes, placeholders, the audit log
    /// and evaluation files (`PERSON`, `US_SSN`, ...).
    pub fn as_str(self) -> &'static str {
        match self {
            EntityType::Person => "PERSON",
            EntityType::Email => "EMAIL",
            EntityType::Phone => "PHONE",
            EntityType::UsSsn => "US_SSN",
            EntityType::CreditCard => "CREDIT_CARD",
            EntityType::Iban => "IBAN",
            EntityType::IpAddress => "IP_ADDRESS",
            EntityType::StreetAddress => "STREET_ADDRESS",
            EntityType::DateOfBirth => "DATE_OF_BIRTH",
            EntityType::MedicalRecordNumber => "MEDICAL_RECORD_NUMBER",
            EntityType::Passport => "PASSPORT",
            EntityType::ApiKey => "API_KEY",
        }
    }
}

impl fmt::Display for EntityType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Error for an entity type name that is not one of [`EntityType::ALL`].
/// Carries no input text: the name came from a config file or an eval file,
/// and an error message is no place to echo arbitrary input.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown entity type name")]
pub struct UnknownEntityType;

impl FromStr for EntityType {
    type Err = UnknownEntityType;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        EntityType::ALL.into_iter().find(|t| t.as_str().eq_ignore_ascii_case(s)).ok_or(UnknownEntityType)
    }
}

/// One detected (or suspected) entity: `text[start..end]` (byte offsets, on
/// char boundaries) is the value.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Finding {
    pub entity: EntityType,
    pub start: usize,
    pub end: usize,
    /// 0..=1; findings at or above the detector's threshold are reported as
    /// entities, those between the uncertainty floor and the threshold as
    /// uncertain.
    pub confidence: f32,
}

impl Finding {
    pub fn len(&self) -> usize {
        self.end - self.start
    }
    pub fn is_empty(&self) -> bool {
        self.end == self.start
    }
    pub fn overlaps(&self, start: usize, end: usize) -> bool {
        self.start < end && start < self.end
    }
}

/// What the detector found in one text.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Detection {
    /// Confident findings, sorted by start, non-overlapping.
    pub entities: Vec<Finding>,
    /// Spans that look like a name, address or number but scored below the
    /// threshold; sorted, non-overlapping, and overlapping no entity. The
    /// policy treats them as sensitive when `fail_closed` is on.
    pub uncertain: Vec<Finding>,
}

impl Detection {
    pub fn is_clean(&self) -> bool {
        self.entities.is_empty() && self.uncertain.is_empty()
    }
}
