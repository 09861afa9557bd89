//! A JSON value that keeps object entries in order *including duplicates*.
//!
//! `serde_json::Value` keeps only the last of two equal keys, which would let
//! a hostile safetensors header say one thing to this reader and another to
//! a reader that keeps the first. Parsing into this type instead lets the
//! callers reject duplicates with an error that names them. Nesting depth is
//! bounded by serde_json's recursion limit (128).

use serde::de::{self, Deserialize, Deserializer, MapAccess, SeqAccess, Visitor};
use std::fmt;

#[derive(Clone, Debug, PartialEq)]
pub(crate) enum Json {
    Null,
    Bool(bool),
    /// A non-negative integer.
    U64(u64),
    /// A negative integer.
    I64(i64),
    /// Any other number (fractions, exponents, integers beyond u64).
    F64(f64),
    Str(String),
    Arr(Vec<Json>),
    /// Entries in document order, duplicates kept.
    Obj(Vec<(String, Json)>),
}

impl Json {
    pub(crate) fn kind(&self) -> &'static str {
        match self {
            Json::Null => "null",
            Json::Bool(_) => "a boolean",
            Json::U64(_) | Json::I64(_) | Json::F64(_) => "a number",
            Json::Str(_) => "a string",
            Json::Arr(_) => "an array",
            Json::Obj(_) => "an object",
        }
    }
}

/// Where and why JSON parsing failed.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct JsonError {
    pub line: usize,
    pub column: usize,
    pub message: String,
}

pub(crate) fn parse(text: &str) -> Result<Json, JsonError> {
    serde_json::from_str(text).map_err(|e| JsonError { line: e.line(), column: e.column(), message: e.to_string() })
}

/// The first key that occurs twice, if any. Quadratic-free: one hash set.
pub(crate) fn first_duplicate(entries: &[(String, Json)]) -> Option<&str> {
    let mut seen = std::collections::HashSet::with_capacity(entries.len());
    entries.iter().map(|(k, _)| k.as_str()).find(|k| !seen.insert(*k))
}

impl<'de> Deserialize<'de> for Json {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Json, D::Error> {
        d.deserialize_any(JsonVisitor)
    }
}

struct JsonVisitor;

impl<'de> Visitor<'de> for JsonVisitor {
    type Value = Json;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("any JSON value")
    }

    fn visit_unit<E: de::Error>(self) -> Result<Json, E> {
        Ok(Json::Null)
    }

    fn visit_bool<E: de::Error>(self, v: bool) -> Result<Json, E> {
        Ok(Json::Bool(v))
    }

    fn visit_u64<E: de::Error>(self, v: u64) -> Result<Json, E> {
        Ok(Json::U64(v))
    }

    fn visit_i64<E: de::Error>(self, v: i64) -> Result<Json, E> {
        Ok(if v >= 0 { Json::U64(v as u64) } else { Json::I64(v) })
    }

    fn visit_f64<E: de::Error>(self, v: f64) -> Result<Json, E> {
        Ok(Json::F64(v))
    }

    fn visit_str<E: de::Error>(self, v: &str) -> Result<Json, E> {
        Ok(Json::Str(v.to_owned()))
    }

    fn visit_string<E: de::Error>(self, v: String) -> Result<Json, E> {
        Ok(Json::Str(v))
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Json, A::Error> {
        // No size hint from serde_json; growth is bounded by the input.
        let mut v = Vec::new();
        while let Some(x) = seq.next_element()? {
            v.push(x);
        }
        Ok(Json::Arr(v))
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Json, A::Error> {
        let mut v = Vec::new();
        while let Some((k, x)) = map.next_entry::<String, Json>()? {
            v.push((k, x));
        }
        Ok(Json::Obj(v))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn duplicates_are_kept_in_order() {
        let j = parse(r#"{"a": 1, "b": [true, null, -2, 2.5], "a": "x"}"#).unwrap();
        let Json::Obj(e) = j else { panic!() };
        assert_eq!(e.len(), 3);
        assert_eq!(e[0], ("a".into(), Json::U64(1)));
        assert_eq!(e[1].1, Json::Arr(vec![Json::Bool(true), Json::Null, Json::I64(-2), Json::F64(2.5)]));
        assert_eq!(e[2], ("a".into(), Json::Str("x".into())));
        assert_eq!(first_duplicate(&e), Some("a"));
    }

    #[test]
    fn huge_integers_become_floats_and_deep_nesting_is_an_error() {
        assert!(matches!(parse("18446744073709551616").unwrap(), Json::F64(_)));
        assert_eq!(parse("18446744073709551615").unwrap(), Json::U64(u64::MAX));
        let deep = "[".repeat(100_000);
        let e = parse(&deep).unwrap_err();
        assert!(e.message.contains("recursion limit"), "{e:?}");
    }
}
