//! JSON Schema (draft 2020-12, with draft-4..2019 spellings of tuple
//! `items`/`additionalItems` and boolean `exclusiveMinimum`) compiled to a
//! [`Grammar`].
//!
//! The generated language is always a *subset* of the schema's valid
//! instances, never a superset. Choices that narrow it on purpose:
//! * properties are written in the order `properties` lists them; required
//!   ones always, optional ones may be written or skipped;
//! * when `additionalProperties` is absent and `properties` is present, no
//!   extra keys are written (as llama.cpp's json-schema-to-grammar); with
//!   `additionalProperties: true` or a schema, extra keys (never equal to a
//!   declared name) may follow once every required property is written;
//!   an object schema without `properties` allows any keys;
//! * a schema without `type` generates only the types its keywords imply
//!   (`properties` → object, ...), or any value when none;
//! * strings: lengths count code points (`minLength`/`maxLength`); a
//!   character is written as raw UTF-8, except `"` and `\` (always escaped),
//!   `/` (raw or `\/`) and control characters (`\n`-style or `\u00XX`);
//!   no `\uXXXX` for other characters;
//! * `pattern`: ECMA-262 subset — literals, `.`, classes, `\d \w \s` and
//!   negations, `\xHH`, `\uHHHH`, groups, `|`, `* + ? {n,m}` (lazy too),
//!   `^`/`$` at the ends of top-level alternatives; search semantics
//!   (unanchored patterns match anywhere). Where ECMA-262 and Rust's `regex`
//!   differ the intersection is used (`\d`/`\w` ASCII, `.` excludes all line
//!   terminators, negated shorthands ASCII-only). Backreferences,
//!   lookaround, `\b`, `\p{…}`, inline flags and inner anchors are a
//!   [`SchemaError::UnsupportedPattern`];
//! * `format`: `date`, `time`, `date-time` (RFC 3339; no 29 February, no
//!   leap second, upper-case `T`/`Z`), `uuid`, `email` (dotted ASCII, short
//!   local part), `ipv4`, enforced as patterns;
//! * numbers: unbounded `number` ≤ 15 integer and 15 fraction digits and a
//!   2-digit exponent; `integer` ≤ 18 digits; with `minimum`/`maximum`/
//!   `exclusive*` no exponent, ≤ 6 fraction digits, bounds exact;
//! * `enum`/`const` values are written in compact JSON (serde_json's form),
//!   filtered by sibling keywords;
//! * `oneOf` is accepted only when its branches are provably disjoint
//!   (different JSON types, disjoint `enum`/`const` sets, or objects told
//!   apart by a required property with disjoint constant values, or by a
//!   required property the other forbids); otherwise it is rejected, since
//!   treating it as `anyOf` could emit a value matching two branches.
//!
//! Keywords that only annotate (`title`, `description`, `default`,
//! `examples`, `deprecated`, `readOnly`, ...) and keywords that are not JSON
//! Schema vocabulary at all are ignored, as the specification says. Standard
//! keywords that would restrict validity and are not enforced are rejected
//! with [`SchemaError::UnsupportedKeyword`]: `not`, `if`/`then`/`else`,
//! `uniqueItems: true`, `contains`, `minContains`, `maxContains`,
//! `patternProperties`, `propertyNames`, `dependentRequired`,
//! `dependentSchemas`, `dependencies`, `unevaluatedProperties`,
//! `unevaluatedItems`, `multipleOf`, `$dynamicRef`, `$recursiveRef`,
//! `minProperties` above the required count, `maxProperties` below what could
//! be written, and `format`s other than `date`, `time`, `date-time`, `uuid`,
//! `email`, `ipv4`. `$ref` resolves local JSON pointers only (`#`,
//! `#/$defs/x`, `#/definitions/x`, any `#/…` pointer), recursive ones
//! included.

use std::collections::HashMap;

use serde_json::{Map, Value};

use crate::dfa::{Dfa, LenTable};
use crate::error::SchemaError;
use crate::grammar::*;
use crate::number::{scale_bound, NumKind, BOUNDED_SCALE};
use crate::regex::parse_pattern;

/// Keywords that never affect validity.
const ANNOTATIONS: &[&str] = &[
    "title",
    "description",
    "default",
    "examples",
    "$comment",
    "$schema",
    "$id",
    "$anchor",
    "$dynamicAnchor",
    "$vocabulary",
    "deprecated",
    "readOnly",
    "writeOnly",
    "contentEncoding",
    "contentMediaType",
    "contentSchema",
    "discriminator",
    "$defs",
    "definitions",
];

/// Standard keywords that affect validity and are not enforced.
const REJECTED: &[(&str, &str)] = &[
    ("not", "negation is not supported"),
    ("if", "conditional schemas are not supported"),
    ("then", "conditional schemas are not supported"),
    ("else", "conditional schemas are not supported"),
    ("contains", "`contains` is not supported"),
    ("minContains", "`minContains` is not supported"),
    ("maxContains", "`maxContains` is not supported"),
    ("patternProperties", "`patternProperties` is not supported"),
    ("propertyNames", "`propertyNames` is not supported"),
    ("dependentRequired", "`dependentRequired` is not supported"),
    ("dependentSchemas", "`dependentSchemas` is not supported"),
    ("dependencies", "`dependencies` is not supported"),
    (
        "unevaluatedProperties",
        "`unevaluatedProperties` is not supported",
    ),
    ("unevaluatedItems", "`unevaluatedItems` is not supported"),
    ("multipleOf", "`multipleOf` is not supported"),
    ("$dynamicRef", "dynamic references are not supported"),
    (
        "$recursiveRef",
        "recursive references are not supported; use $ref",
    ),
];

/// Keywords this compiler understands.
const HANDLED: &[&str] = &[
    "type",
    "enum",
    "const",
    "properties",
    "required",
    "additionalProperties",
    "minProperties",
    "maxProperties",
    "items",
    "prefixItems",
    "additionalItems",
    "minItems",
    "maxItems",
    "uniqueItems",
    "minLength",
    "maxLength",
    "pattern",
    "format",
    "minimum",
    "maximum",
    "exclusiveMinimum",
    "exclusiveMaximum",
    "anyOf",
    "oneOf",
    "allOf",
    "$ref",
];

const OBJECT_KW: &[&str] = &[
    "properties",
    "required",
    "additionalProperties",
    "minProperties",
    "maxProperties",
];
const ARRAY_KW: &[&str] = &[
    "items",
    "prefixItems",
    "additionalItems",
    "minItems",
    "maxItems",
    "uniqueItems",
];
const STRING_KW: &[&str] = &["minLength", "maxLength", "pattern", "format"];
const NUMBER_KW: &[&str] = &["minimum", "maximum", "exclusiveMinimum", "exclusiveMaximum"];

/// Deepest schema nesting compiled (and deepest chain of `$ref`s inlined
/// for `allOf`/branch merging).
const MAX_SCHEMA_DEPTH: u32 = 64;

/// The `format`s Hearth enforces, as anchored patterns. Deliberately
/// narrower than the RFCs where a validator might disagree: dates never use
/// 29 February, times have no leap second, fractions ≤ 9 digits, offsets and
/// `T`/`Z` upper-case; e-mail addresses are plain dotted ASCII with a short
/// local part and domain labels.
fn format_pattern(name: &str) -> Option<&'static str> {
    Some(match name {
        "date" => {
            r"^\d{4}-(?:(?:0[13578]|1[02])-(?:0[1-9]|[12]\d|3[01])|(?:0[469]|11)-(?:0[1-9]|[12]\d|30)|02-(?:0[1-9]|1\d|2[0-8]))$"
        }
        "time" => {
            r"^(?:[01]\d|2[0-3]):[0-5]\d:[0-5]\d(?:\.\d{1,9})?(?:Z|[+-](?:[01]\d|2[0-3]):[0-5]\d)$"
        }
        "date-time" => concat!(
            r"^\d{4}-(?:(?:0[13578]|1[02])-(?:0[1-9]|[12]\d|3[01])|(?:0[469]|11)-(?:0[1-9]|[12]\d|30)|02-(?:0[1-9]|1\d|2[0-8]))",
            r"T(?:[01]\d|2[0-3]):[0-5]\d:[0-5]\d(?:\.\d{1,9})?(?:Z|[+-](?:[01]\d|2[0-3]):[0-5]\d)$"
        ),
        "uuid" => r"^[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}$",
        "email" => concat!(
            r"^[A-Za-z0-9]{1,16}(?:[._+-][A-Za-z0-9]{1,16}){0,2}@",
            r"[A-Za-z0-9]{1,20}(?:-[A-Za-z0-9]{1,20}){0,2}(?:\.[A-Za-z0-9]{1,20}){0,2}\.[A-Za-z]{2,10}$"
        ),
        "ipv4" => {
            r"^(?:(?:25[0-5]|2[0-4]\d|1\d\d|[1-9]?\d)\.){3}(?:25[0-5]|2[0-4]\d|1\d\d|[1-9]?\d)$"
        }
        _ => return None,
    })
}

/// Supported `format` names, for error messages and docs.
pub const SUPPORTED_FORMATS: &[&str] = &["date", "time", "date-time", "uuid", "email", "ipv4"];

fn is_validation_kw(k: &str) -> bool {
    HANDLED.contains(&k) || REJECTED.iter().any(|r| r.0 == k)
}

struct EnumFilter {
    lit_node: NodeId,
    base: NodeId,
    values: Vec<Value>,
}

pub(crate) struct Compiler<'a> {
    g: Grammar,
    doc: &'a Value,
    ref_slots: HashMap<String, NodeId>,
    one_of: Vec<(NodeId, String)>,
    enums: Vec<EnumFilter>,
    /// Literal values behind each enum/const node (for `oneOf` checks).
    lit_values: HashMap<NodeId, Vec<Value>>,
    bool_node: Option<NodeId>,
    depth: u32,
    dfa_states: usize,
    table_cells: usize,
}

/// Grammar-wide limits: a client's schema must not make the server build
/// unbounded automata (each DFA state is a 1 KiB transition row).
const MAX_TOTAL_DFA_STATES: usize = 65_536;
const MAX_TOTAL_TABLE_CELLS: usize = 4_000_000;

fn unsupported(keyword: &str, path: &str, reason: impl Into<String>) -> SchemaError {
    SchemaError::UnsupportedKeyword {
        keyword: keyword.into(),
        path: path.into(),
        reason: reason.into(),
    }
}
fn invalid(keyword: &str, path: &str, reason: impl Into<String>) -> SchemaError {
    SchemaError::InvalidKeyword {
        keyword: keyword.into(),
        path: path.into(),
        reason: reason.into(),
    }
}
fn too_complex(path: &str, reason: impl Into<String>) -> SchemaError {
    SchemaError::TooComplex {
        path: path.into(),
        reason: reason.into(),
    }
}

fn json_ptr_escape(s: &str) -> String {
    s.replace('~', "~0").replace('/', "~1")
}

fn percent_decode(s: &str) -> Option<String> {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'%' {
            let h = std::str::from_utf8(b.get(i + 1..i + 3)?).ok()?;
            out.push(u8::from_str_radix(h, 16).ok()?);
            i += 3;
        } else {
            out.push(b[i]);
            i += 1;
        }
    }
    String::from_utf8(out).ok()
}

fn as_count(v: &Value, kw: &str, path: &str) -> Result<u32, SchemaError> {
    match v.as_u64() {
        Some(n) => Ok(n.min(u32::MAX as u64 - 1) as u32),
        None => match v.as_f64() {
            Some(f) if f >= 0.0 && f.fract() == 0.0 => Ok(f.min((u32::MAX - 1) as f64) as u32),
            _ => Err(invalid(kw, path, "must be a non-negative integer")),
        },
    }
}

impl<'a> Compiler<'a> {
    pub(crate) fn new(doc: &'a Value, g: Grammar) -> Compiler<'a> {
        Compiler {
            g,
            doc,
            ref_slots: HashMap::new(),
            one_of: Vec::new(),
            enums: Vec::new(),
            lit_values: HashMap::new(),
            bool_node: None,
            depth: 0,
            dfa_states: 0,
            table_cells: 0,
        }
    }

    /// Compiles the whole document as the grammar's root.
    pub(crate) fn compile_root(mut self) -> Result<Grammar, SchemaError> {
        let doc: &'a Value = self.doc;
        let root = self.compile(doc, "#")?;
        self.g.root = root;
        self.finish()
    }

    /// Compiles `schema` (inside this compiler's document) as a node of the
    /// grammar, for embedding (tool arguments). Call [`Compiler::finish`]
    /// once all nodes are in.
    pub(crate) fn compile_node(
        &mut self,
        schema: &Value,
        path: &str,
    ) -> Result<NodeId, SchemaError> {
        self.compile(schema, path)
    }

    /// Switches the document `$ref`s resolve against (one per tool).
    pub(crate) fn set_doc(&mut self, doc: &'a Value) {
        self.doc = doc;
        self.ref_slots.clear();
    }

    pub(crate) fn grammar_mut(&mut self) -> &mut Grammar {
        &mut self.g
    }

    fn never(&mut self) -> NodeId {
        self.g.add_node(Node::Union(Vec::new()))
    }

    fn compile(&mut self, s: &Value, path: &str) -> Result<NodeId, SchemaError> {
        self.depth += 1;
        if self.depth > MAX_SCHEMA_DEPTH {
            self.depth -= 1;
            return Err(too_complex(path, "schema nested too deeply"));
        }
        let r = match s {
            Value::Bool(true) => Ok(ANY),
            Value::Bool(false) => Ok(self.never()),
            Value::Object(m) => self.compile_map(m, path),
            _ => Err(invalid(
                "(schema)",
                path,
                "a schema must be an object or a boolean",
            )),
        };
        self.depth -= 1;
        r
    }

    fn compile_map(&mut self, m: &Map<String, Value>, path: &str) -> Result<NodeId, SchemaError> {
        for (k, v) in m {
            if let Some((_, why)) = REJECTED.iter().find(|r| r.0 == k) {
                return Err(unsupported(k, path, *why));
            }
            if k == "uniqueItems" && v != &Value::Bool(false) {
                return Err(unsupported(k, path, "`uniqueItems: true` is not supported"));
            }
        }
        if let Some(r) = m.get("$ref") {
            if let Some(k) = m
                .keys()
                .find(|k| k.as_str() != "$ref" && is_validation_kw(k))
            {
                return Err(unsupported(
                    k,
                    path,
                    "keywords beside `$ref` are not supported",
                ));
            }
            let r = r
                .as_str()
                .ok_or_else(|| invalid("$ref", path, "must be a string"))?;
            return self.resolve_ref(r, path);
        }
        if let Some(all) = m.get("allOf") {
            let all = all
                .as_array()
                .ok_or_else(|| invalid("allOf", path, "must be an array"))?;
            let mut merged: Map<String, Value> = m.clone();
            merged.remove("allOf");
            for (i, sub) in all.iter().enumerate() {
                let sub = self.deref_json(sub, &format!("{path}/allOf/{i}"), 0)?;
                match sub {
                    Value::Bool(true) => {}
                    Value::Bool(false) => return Ok(self.never()),
                    Value::Object(sm) => merged = merge(&merged, sm, &format!("{path}/allOf/{i}"))?,
                    _ => return Err(invalid("allOf", path, "items must be schemas")),
                }
            }
            return self.compile_map(&merged, path);
        }
        let any_of = m.get("anyOf");
        let one_of = m.get("oneOf");
        if any_of.is_some() && one_of.is_some() {
            return Err(unsupported(
                "oneOf",
                path,
                "`anyOf` and `oneOf` together are not supported",
            ));
        }
        if let Some((kw, list)) = any_of
            .map(|v| ("anyOf", v))
            .or(one_of.map(|v| ("oneOf", v)))
        {
            let list = list
                .as_array()
                .ok_or_else(|| invalid(kw, path, "must be an array"))?;
            if list.is_empty() {
                return Err(invalid(kw, path, "must not be empty"));
            }
            let mut base = m.clone();
            base.remove(kw);
            let base_has_validation = base.keys().any(|k| is_validation_kw(k));
            let mut branches = Vec::with_capacity(list.len());
            for (i, b) in list.iter().enumerate() {
                let bp = format!("{path}/{kw}/{i}");
                let node = if base_has_validation {
                    match self.deref_json(b, &bp, 0)? {
                        Value::Bool(true) => self.compile_map(&base, path)?,
                        Value::Bool(false) => self.never(),
                        Value::Object(bm) => {
                            let merged = merge(&base, bm, &bp)?;
                            self.compile_map(&merged, &bp)?
                        }
                        _ => return Err(invalid(kw, path, "items must be schemas")),
                    }
                } else {
                    self.compile(b, &bp)?
                };
                branches.push(node);
            }
            let u = self.g.add_node(Node::Union(branches));
            if kw == "oneOf" {
                self.one_of.push((u, path.to_string()));
            }
            return Ok(u);
        }
        if m.contains_key("enum") || m.contains_key("const") {
            return self.compile_enum(m, path);
        }
        let types: Vec<String> = match m.get("type") {
            None => {
                let has = |kws: &[&str]| m.keys().any(|k| kws.contains(&k.as_str()));
                let mut t = Vec::new();
                if has(OBJECT_KW) {
                    t.push("object".to_string());
                }
                if has(ARRAY_KW) && !(m.len() == 1 && m.get("uniqueItems").is_some()) {
                    t.push("array".to_string());
                }
                if has(STRING_KW) {
                    t.push("string".to_string());
                }
                if has(NUMBER_KW) {
                    t.push("number".to_string());
                }
                if t.is_empty() {
                    return Ok(ANY);
                }
                t
            }
            Some(Value::String(s)) => vec![s.clone()],
            Some(Value::Array(a)) => {
                let mut t = Vec::new();
                for x in a {
                    match x.as_str() {
                        Some(s) => {
                            if !t.iter().any(|y: &String| y == s) {
                                t.push(s.to_string());
                            }
                        }
                        None => {
                            return Err(invalid(
                                "type",
                                path,
                                "must be a string or an array of strings",
                            ))
                        }
                    }
                }
                if t.is_empty() {
                    return Err(invalid("type", path, "must not be empty"));
                }
                t
            }
            Some(_) => {
                return Err(invalid(
                    "type",
                    path,
                    "must be a string or an array of strings",
                ))
            }
        };
        // `integer` is a subset of `number`: drop it when both are listed.
        let types: Vec<&String> = types
            .iter()
            .filter(|t| !(t.as_str() == "integer" && types.iter().any(|u| u == "number")))
            .collect();
        let mut nodes = Vec::with_capacity(types.len());
        for t in types {
            nodes.push(self.compile_typed(t, m, path)?);
        }
        Ok(if nodes.len() == 1 {
            nodes[0]
        } else {
            self.g.add_node(Node::Union(nodes))
        })
    }

    /// Follows `$ref`-only schemas to the JSON they name (for merging).
    fn deref_json<'b>(&self, v: &'b Value, path: &str, hops: u32) -> Result<&'b Value, SchemaError>
    where
        'a: 'b,
    {
        if hops > MAX_SCHEMA_DEPTH {
            return Err(too_complex(path, "chain of $ref too long"));
        }
        if let Value::Object(m) = v {
            if let Some(r) = m.get("$ref") {
                if let Some(k) = m
                    .keys()
                    .find(|k| k.as_str() != "$ref" && is_validation_kw(k))
                {
                    return Err(unsupported(
                        k,
                        path,
                        "keywords beside `$ref` are not supported",
                    ));
                }
                let r = r
                    .as_str()
                    .ok_or_else(|| invalid("$ref", path, "must be a string"))?;
                let ptr = self.pointer(r, path)?;
                let doc: &'a Value = self.doc;
                let target: &'b Value = doc.pointer(&ptr).ok_or_else(|| SchemaError::BadRef {
                    path: path.into(),
                    reference: r.into(),
                    reason: "no such location in the schema".into(),
                })?;
                return self.deref_json(target, path, hops + 1);
            }
        }
        Ok(v)
    }

    fn pointer(&self, r: &str, path: &str) -> Result<String, SchemaError> {
        let bad = |why: &str| SchemaError::BadRef {
            path: path.into(),
            reference: r.into(),
            reason: why.into(),
        };
        let Some(frag) = r.strip_prefix('#') else {
            return Err(bad("only local references (`#…`) are supported"));
        };
        let frag = percent_decode(frag).ok_or_else(|| bad("bad percent-encoding"))?;
        if !frag.is_empty() && !frag.starts_with('/') {
            return Err(bad("anchors are not supported; use a JSON pointer"));
        }
        Ok(frag)
    }

    fn resolve_ref(&mut self, r: &str, path: &str) -> Result<NodeId, SchemaError> {
        let ptr = self.pointer(r, path)?;
        if let Some(&slot) = self.ref_slots.get(&ptr) {
            return Ok(slot);
        }
        let doc: &'a Value = self.doc;
        let target = doc.pointer(&ptr).ok_or_else(|| SchemaError::BadRef {
            path: path.into(),
            reference: r.into(),
            reason: "no such location in the schema".into(),
        })?;
        let slot = self.never();
        self.ref_slots.insert(ptr.clone(), slot);
        let node = self.compile(target, &format!("#{ptr}"))?;
        self.g.nodes[slot as usize] = Node::Union(vec![node]);
        Ok(slot)
    }

    fn compile_enum(&mut self, m: &Map<String, Value>, path: &str) -> Result<NodeId, SchemaError> {
        let mut values: Vec<Value> = match m.get("enum") {
            Some(Value::Array(a)) => a.clone(),
            Some(_) => return Err(invalid("enum", path, "must be an array")),
            None => Vec::new(),
        };
        if let Some(c) = m.get("const") {
            if m.contains_key("enum") {
                values.retain(|v| v == c);
            } else {
                values = vec![c.clone()];
            }
        }
        let mut base = m.clone();
        base.remove("enum");
        base.remove("const");
        let base_node = if base.keys().any(|k| is_validation_kw(k)) {
            self.compile_map(&base, path)?
        } else {
            ANY
        };
        let lit_root = self.g.add_lits(&[]);
        let node = self.g.add_node(Node::Lit(lit_root));
        self.enums.push(EnumFilter {
            lit_node: node,
            base: base_node,
            values,
        });
        Ok(node)
    }

    fn compile_typed(
        &mut self,
        t: &str,
        m: &Map<String, Value>,
        path: &str,
    ) -> Result<NodeId, SchemaError> {
        match t {
            "null" => Ok(NULL_NODE),
            "boolean" => {
                if let Some(b) = self.bool_node {
                    return Ok(b);
                }
                let root = self
                    .g
                    .add_lits(&[(b"true".to_vec(), NONE), (b"false".to_vec(), NONE)]);
                let n = self.g.add_node(Node::Lit(root));
                self.lit_values
                    .insert(n, vec![Value::Bool(true), Value::Bool(false)]);
                self.bool_node = Some(n);
                Ok(n)
            }
            "string" => self.compile_string(m, path),
            "integer" | "number" => self.compile_number(t == "integer", m, path),
            "object" => self.compile_object(m, path),
            "array" => self.compile_array(m, path),
            other => Err(invalid("type", path, format!("unknown type {other:?}"))),
        }
    }

    fn compile_string(
        &mut self,
        m: &Map<String, Value>,
        path: &str,
    ) -> Result<NodeId, SchemaError> {
        let min = match m.get("minLength") {
            Some(v) => as_count(v, "minLength", path)?,
            None => 0,
        };
        let max = match m.get("maxLength") {
            Some(v) => as_count(v, "maxLength", path)?,
            None => u32::MAX,
        };
        if min > max {
            return Ok(self.never());
        }
        let mut dfa: Option<Dfa> = None;
        if let Some(p) = m.get("pattern") {
            let p = p
                .as_str()
                .ok_or_else(|| invalid("pattern", path, "must be a string"))?;
            dfa = Some(compile_pattern(p, path)?);
        }
        if let Some(f) = m.get("format") {
            let f = f
                .as_str()
                .ok_or_else(|| invalid("format", path, "must be a string"))?;
            let Some(p) = format_pattern(f) else {
                return Err(unsupported(
                    "format",
                    path,
                    format!(
                        "format {f:?} is not enforced (supported: {})",
                        SUPPORTED_FORMATS.join(", ")
                    ),
                ));
            };
            let fd = compile_pattern(p, path)?;
            dfa = Some(match dfa {
                None => fd,
                Some(d) => {
                    Dfa::product(&d, &fd, |a, b| a && b).map_err(|e| too_complex(path, e.0))?
                }
            });
        }
        let kind = match dfa {
            None if min == 0 && max == u32::MAX => FREE_STR,
            None => self.add_str(StrKind {
                dfa: 0,
                min,
                max,
                table: None,
            }),
            Some(d) => {
                if d.is_empty() {
                    return Ok(self.never());
                }
                let table = if min > 0 || max != u32::MAX {
                    let levels = if max != u32::MAX {
                        max as usize + 1
                    } else {
                        min as usize + 1
                    };
                    self.table_cells += levels.saturating_mul(d.n_states());
                    if self.table_cells > MAX_TOTAL_TABLE_CELLS {
                        return Err(too_complex(
                            path,
                            "patterns with length bounds need too large tables in total",
                        ));
                    }
                    let t = LenTable::build(&d, min, (max != u32::MAX).then_some(max))
                        .map_err(|e| too_complex(path, e.0))?;
                    if !t.is_live(d.start, 0) {
                        return Ok(self.never());
                    }
                    Some(t)
                } else {
                    None
                };
                let di = self.push_dfa(d, path)?;
                self.add_str(StrKind {
                    dfa: di,
                    min,
                    max,
                    table,
                })
            }
        };
        Ok(self.g.add_node(Node::Str(kind)))
    }

    /// Adds a string DFA within the grammar-wide state budget.
    fn push_dfa(&mut self, d: Dfa, path: &str) -> Result<u32, SchemaError> {
        self.dfa_states += d.n_states();
        if self.dfa_states > MAX_TOTAL_DFA_STATES {
            return Err(too_complex(
                path,
                "string patterns need too many automaton states in total",
            ));
        }
        self.g.dfas.push(d);
        Ok(self.g.dfas.len() as u32 - 1)
    }

    fn add_str(&mut self, k: StrKind) -> u32 {
        self.g.strs.push(k);
        self.g.strs.len() as u32 - 1
    }

    fn compile_number(
        &mut self,
        integer: bool,
        m: &Map<String, Value>,
        path: &str,
    ) -> Result<NodeId, SchemaError> {
        let scale = if integer { 0 } else { BOUNDED_SCALE };
        let num = |kw: &str| -> Result<Option<&serde_json::Number>, SchemaError> {
            match m.get(kw) {
                None => Ok(None),
                Some(Value::Number(n)) => Ok(Some(n)),
                // Draft 4 spelled exclusivity as booleans next to min/max.
                Some(Value::Bool(_)) if kw.starts_with("exclusive") => Ok(None),
                Some(_) => Err(invalid(kw, path, "must be a number")),
            }
        };
        let excl_bool = |kw: &str| m.get(kw) == Some(&Value::Bool(true));
        let mut lo: Option<i128> = None;
        let mut hi: Option<i128> = None;
        let mut tighten_lo = |v: i128| lo = Some(lo.map_or(v, |l: i128| l.max(v)));
        if let Some(n) = num("minimum")? {
            if excl_bool("exclusiveMinimum") {
                tighten_lo(scale_bound(n, scale, false) + 1);
            } else {
                tighten_lo(scale_bound(n, scale, true));
            }
        }
        if let Some(n) = num("exclusiveMinimum")? {
            tighten_lo(scale_bound(n, scale, false) + 1);
        }
        let mut tighten_hi = |v: i128| hi = Some(hi.map_or(v, |h: i128| h.min(v)));
        if let Some(n) = num("maximum")? {
            if excl_bool("exclusiveMaximum") {
                tighten_hi(scale_bound(n, scale, true) - 1);
            } else {
                tighten_hi(scale_bound(n, scale, false));
            }
        }
        if let Some(n) = num("exclusiveMaximum")? {
            tighten_hi(scale_bound(n, scale, true) - 1);
        }
        let kind = if lo.is_none() && hi.is_none() {
            if integer {
                NumKind::free_integer()
            } else {
                NumKind::free_number()
            }
        } else {
            NumKind::bounded(
                integer,
                lo.unwrap_or(i128::MIN / 4),
                hi.unwrap_or(i128::MAX / 4),
            )
        };
        if !kind.satisfiable() {
            return Ok(self.never());
        }
        let id = match self.g.nums.iter().position(|k| *k == kind) {
            Some(i) => i as u32,
            None => {
                self.g.nums.push(kind);
                self.g.nums.len() as u32 - 1
            }
        };
        Ok(self.g.add_node(Node::Num(id)))
    }

    fn compile_object(
        &mut self,
        m: &Map<String, Value>,
        path: &str,
    ) -> Result<NodeId, SchemaError> {
        let required: Vec<String> = match m.get("required") {
            None => Vec::new(),
            Some(Value::Array(a)) => {
                let mut r = Vec::new();
                for x in a {
                    let s = x
                        .as_str()
                        .ok_or_else(|| invalid("required", path, "must be an array of strings"))?;
                    if !r.iter().any(|y: &String| y == s) {
                        r.push(s.to_string());
                    }
                }
                r
            }
            Some(_) => return Err(invalid("required", path, "must be an array of strings")),
        };
        let props_v = match m.get("properties") {
            None => None,
            Some(Value::Object(p)) => Some(p),
            Some(_) => return Err(invalid("properties", path, "must be an object")),
        };
        let additional = match m.get("additionalProperties") {
            None => {
                if props_v.is_none() {
                    Some(ANY)
                } else {
                    None
                }
            }
            Some(Value::Bool(true)) => Some(ANY),
            Some(Value::Bool(false)) => None,
            Some(s @ Value::Object(_)) => {
                Some(self.compile(s, &format!("{path}/additionalProperties"))?)
            }
            Some(_) => return Err(invalid("additionalProperties", path, "must be a schema")),
        };
        let mut props = Vec::new();
        if let Some(p) = props_v {
            for (name, sub) in p {
                let node =
                    self.compile(sub, &format!("{path}/properties/{}", json_ptr_escape(name)))?;
                props.push(Prop {
                    name: name.clone(),
                    node,
                    required: required.contains(name),
                });
            }
        }
        for r in &required {
            if !props.iter().any(|p| &p.name == r) {
                match additional {
                    Some(a) => props.push(Prop {
                        name: r.clone(),
                        node: a,
                        required: true,
                    }),
                    None => return Ok(self.never()),
                }
            }
        }
        if props.len() >= u16::MAX as usize - 1 {
            return Err(too_complex(path, "too many properties"));
        }
        let n_required = props.iter().filter(|p| p.required).count() as u32;
        if let Some(v) = m.get("minProperties") {
            let n = as_count(v, "minProperties", path)?;
            if n > n_required {
                return Err(unsupported(
                    "minProperties",
                    path,
                    "only values up to the number of required properties are supported",
                ));
            }
        }
        if let Some(v) = m.get("maxProperties") {
            let n = as_count(v, "maxProperties", path)?;
            if additional.is_some() || (props.len() as u32) > n {
                if n_required > n {
                    return Ok(self.never());
                }
                return Err(unsupported("maxProperties", path, "only values covering every declared property, with no additional properties, are supported"));
            }
        }
        let add_key_kind = if additional.is_some() && !props.is_empty() {
            let keys = Dfa::from_literals(props.iter().map(|p| p.name.as_str()))
                .map_err(|e| too_complex(path, e.0))?;
            let free = &self.g.dfas[0];
            let d =
                Dfa::product(free, &keys, |a, b| a && !b).map_err(|e| too_complex(path, e.0))?;
            let di = self.push_dfa(d, path)?;
            self.add_str(StrKind {
                dfa: di,
                min: 0,
                max: u32::MAX,
                table: None,
            })
        } else {
            FREE_STR
        };
        Ok(self.g.add_node(Node::Object(ObjectNode {
            props,
            additional,
            add_key_kind,
            key_tries: Vec::new(),
            req_from: Vec::new(),
        })))
    }

    fn compile_array(&mut self, m: &Map<String, Value>, path: &str) -> Result<NodeId, SchemaError> {
        let mut prefix = Vec::new();
        let mut items: Option<NodeId> = Some(ANY);
        if let Some(p) = m.get("prefixItems") {
            let a = p
                .as_array()
                .ok_or_else(|| invalid("prefixItems", path, "must be an array"))?;
            for (i, s) in a.iter().enumerate() {
                prefix.push(self.compile(s, &format!("{path}/prefixItems/{i}"))?);
            }
        }
        match m.get("items") {
            None => {}
            Some(Value::Array(a)) => {
                if m.contains_key("prefixItems") {
                    return Err(invalid(
                        "items",
                        path,
                        "array form together with prefixItems",
                    ));
                }
                for (i, s) in a.iter().enumerate() {
                    prefix.push(self.compile(s, &format!("{path}/items/{i}"))?);
                }
                items = match m.get("additionalItems") {
                    None | Some(Value::Bool(true)) => Some(ANY),
                    Some(Value::Bool(false)) => None,
                    Some(s) => Some(self.compile(s, &format!("{path}/additionalItems"))?),
                };
            }
            Some(Value::Bool(false)) => items = None,
            Some(s) => items = Some(self.compile(s, &format!("{path}/items"))?),
        }
        let min = match m.get("minItems") {
            Some(v) => as_count(v, "minItems", path)?,
            None => 0,
        };
        let max = match m.get("maxItems") {
            Some(v) => as_count(v, "maxItems", path)?,
            None => u32::MAX,
        };
        if min > max {
            return Ok(self.never());
        }
        Ok(self.g.add_node(Node::Array(ArrayNode {
            prefix,
            items,
            min,
            max,
        })))
    }

    // ---- whole-grammar passes -------------------------------------------

    /// Resolves aliases, rejects non-consuming cycles, filters enums, removes
    /// unsatisfiable parts and builds key tries. Errors if the root admits
    /// no value.
    pub(crate) fn finish(mut self) -> Result<Grammar, SchemaError> {
        self.collapse_aliases()?;
        check_start_cycles(&self.g)?;
        finalize_objects(&mut self.g)?;
        self.filter_enums();
        let productive = productive(&self.g);
        cleanup(&mut self.g, &productive);
        finalize_objects(&mut self.g)?;
        if !productive[self.g.root as usize] {
            return Err(SchemaError::Unsatisfiable { path: "#".into() });
        }
        for (u, path) in std::mem::take(&mut self.one_of) {
            self.check_one_of(u, &path)?;
        }
        Ok(self.g)
    }

    fn collapse_aliases(&mut self) -> Result<(), SchemaError> {
        let n = self.g.nodes.len();
        let mut target: Vec<NodeId> = (0..n as NodeId).collect();
        for (i, tgt) in target.iter_mut().enumerate() {
            let mut cur = i as NodeId;
            let mut hops = 0;
            while let Node::Union(b) = &self.g.nodes[cur as usize] {
                if b.len() != 1 {
                    break;
                }
                cur = b[0];
                hops += 1;
                if hops > n {
                    return Err(too_complex("#", "a $ref cycle that never produces a value"));
                }
            }
            *tgt = cur;
        }
        let t = |x: &mut NodeId| *x = target[*x as usize];
        for node in self.g.nodes.iter_mut() {
            match node {
                Node::Object(o) => {
                    for p in o.props.iter_mut() {
                        t(&mut p.node);
                    }
                    if let Some(a) = o.additional.as_mut() {
                        t(a);
                    }
                }
                Node::Array(a) => {
                    for p in a.prefix.iter_mut() {
                        t(p);
                    }
                    if let Some(i) = a.items.as_mut() {
                        t(i);
                    }
                }
                Node::Union(b) => b.iter_mut().for_each(t),
                Node::Seq(items) => items.iter_mut().for_each(t),
                Node::Repeat { item, sep, .. } => {
                    t(item);
                    if let Some(s) = sep.as_mut() {
                        t(s);
                    }
                }
                _ => {}
            }
        }
        t(&mut self.g.root);
        for (u, _) in self.one_of.iter_mut() {
            t(u);
        }
        for e in self.enums.iter_mut() {
            t(&mut e.base);
        }
        let lv: HashMap<NodeId, Vec<Value>> = self
            .lit_values
            .drain()
            .map(|(k, v)| (target[k as usize], v))
            .collect();
        self.lit_values = lv;
        Ok(())
    }

    fn filter_enums(&mut self) {
        for e in std::mem::take(&mut self.enums) {
            let mut words = Vec::new();
            let mut kept = Vec::new();
            for v in &e.values {
                let Ok(text) = serde_json::to_string(v) else {
                    continue;
                };
                let ok = {
                    let st = self.g.start_at(e.base);
                    match self.g.advance_bytes(&st, text.as_bytes()) {
                        Some(s) => self.g.state_is_complete(&s),
                        None => false,
                    }
                };
                if ok {
                    words.push((text.into_bytes(), NONE));
                    kept.push(v.clone());
                }
            }
            let root = self.g.add_lits(&words);
            self.g.nodes[e.lit_node as usize] = Node::Lit(root);
            self.lit_values.insert(e.lit_node, kept);
        }
    }

    fn check_one_of(&self, u: NodeId, path: &str) -> Result<(), SchemaError> {
        let Node::Union(bs) = &self.g.nodes[u as usize] else {
            return Ok(());
        };
        for i in 0..bs.len() {
            for j in i + 1..bs.len() {
                if !self.disjoint(bs[i], bs[j]) {
                    return Err(unsupported(
                        "oneOf",
                        path,
                        format!("branches {i} and {j} may both match one value; use anyOf, or tell them apart by type, const/enum, or a required discriminator property"),
                    ));
                }
            }
        }
        Ok(())
    }

    fn disjoint(&self, a: NodeId, b: NodeId) -> bool {
        if first_classes(&self.g, a, 0) & first_classes(&self.g, b, 0) == 0 {
            return true;
        }
        if let (Some(va), Some(vb)) = (self.lit_values.get(&a), self.lit_values.get(&b)) {
            return !va.iter().any(|x| vb.contains(x));
        }
        if let (Node::Object(oa), Node::Object(ob)) =
            (&self.g.nodes[a as usize], &self.g.nodes[b as usize])
        {
            // A required discriminator with disjoint constant values.
            for pa in oa.props.iter().filter(|p| p.required) {
                if let Some(pb) = ob.props.iter().find(|p| p.required && p.name == pa.name) {
                    if let (Some(va), Some(vb)) =
                        (self.lit_values.get(&pa.node), self.lit_values.get(&pb.node))
                    {
                        if !va.iter().any(|x| vb.contains(x)) {
                            return true;
                        }
                    }
                }
            }
            // A property required by one that the other cannot have.
            let forbids = |o: &ObjectNode, name: &str| {
                o.additional.is_none() && !o.props.iter().any(|p| p.name == name)
            };
            if oa.props.iter().any(|p| p.required && forbids(ob, &p.name))
                || ob.props.iter().any(|p| p.required && forbids(oa, &p.name))
            {
                return true;
            }
        }
        false
    }
}

fn compile_pattern(p: &str, path: &str) -> Result<Dfa, SchemaError> {
    let re = parse_pattern(p).map_err(|e| SchemaError::UnsupportedPattern {
        path: path.into(),
        pattern: p.into(),
        reason: e.0,
    })?;
    Dfa::from_re(&re).map_err(|e| SchemaError::UnsupportedPattern {
        path: path.into(),
        pattern: p.into(),
        reason: e.0,
    })
}

/// Merges two schema objects as an intersection (for `allOf` and for
/// keywords beside `anyOf`/`oneOf`). Only non-conflicting merges are done.
fn merge(
    a: &Map<String, Value>,
    b: &Map<String, Value>,
    path: &str,
) -> Result<Map<String, Value>, SchemaError> {
    let mut out = a.clone();
    for (k, v) in b {
        match out.get(k) {
            None => {
                out.insert(k.clone(), v.clone());
            }
            Some(x) if x == v => {}
            Some(_) if ANNOTATIONS.contains(&k.as_str()) || !is_validation_kw(k) => {}
            Some(Value::Array(x)) if k == "required" => {
                let mut r = x.clone();
                if let Value::Array(y) = v {
                    for s in y {
                        if !r.contains(s) {
                            r.push(s.clone());
                        }
                    }
                }
                out.insert(k.clone(), Value::Array(r));
            }
            Some(Value::Object(x)) if k == "properties" => {
                let Value::Object(y) = v else {
                    return Err(invalid("properties", path, "must be an object"));
                };
                let mut p = x.clone();
                for (name, s) in y {
                    match p.get(name) {
                        None => {
                            p.insert(name.clone(), s.clone());
                        }
                        Some(t) if t == s => {}
                        Some(_) => {
                            return Err(unsupported(
                                "allOf",
                                path,
                                format!("property {name:?} is constrained by two subschemas; merging them is not supported"),
                            ))
                        }
                    }
                }
                out.insert(k.clone(), Value::Object(p));
            }
            Some(_) => {
                return Err(unsupported(k, path, format!("`{k}` appears in two subschemas with different values; merging them is not supported")));
            }
        }
    }
    Ok(out)
}

const C_OBJ: u8 = 1;
const C_ARR: u8 = 2;
const C_STR: u8 = 4;
const C_NUM: u8 = 8;
const C_TRUE: u8 = 16;
const C_FALSE: u8 = 32;
const C_NULL: u8 = 64;
const C_RAW: u8 = 128;

fn class_of_byte(b: u8) -> u8 {
    match b {
        b'{' => C_OBJ,
        b'[' => C_ARR,
        b'"' => C_STR,
        b'-' | b'0'..=b'9' => C_NUM,
        b't' => C_TRUE,
        b'f' => C_FALSE,
        b'n' => C_NULL,
        _ => C_RAW,
    }
}

/// Which JSON types a node's values can have (by first byte).
fn first_classes(g: &Grammar, n: NodeId, depth: u32) -> u8 {
    if depth > 64 {
        return 0xFF;
    }
    match &g.nodes[n as usize] {
        Node::Any => 0x7F,
        Node::Object(_) => C_OBJ,
        Node::Array(_) => C_ARR,
        Node::Str(_) => C_STR,
        Node::Num(_) => C_NUM,
        Node::Lit(r) => g.lits[*r as usize]
            .edges
            .iter()
            .fold(0, |acc, e| acc | class_of_byte(e.0)),
        Node::Union(bs) => bs
            .iter()
            .fold(0, |acc, &b| acc | first_classes(g, b, depth + 1)),
        _ => C_RAW,
    }
}

/// Rejects cycles of nodes that start each other without consuming input
/// (`{"$ref": "#"}` alone, `anyOf: [{"$ref": "#"}]`, ...), which would make
/// the automaton loop.
pub(crate) fn check_start_cycles(g: &Grammar) -> Result<(), SchemaError> {
    let n = g.nodes.len();
    // 0 = unvisited, 1 = on stack, 2 = done
    let mut mark = vec![0u8; n];
    fn succ(g: &Grammar, i: usize) -> Vec<NodeId> {
        match &g.nodes[i] {
            Node::Union(b) => b.clone(),
            Node::Seq(items) => items.first().copied().into_iter().collect(),
            Node::Repeat { item, .. } => vec![*item],
            _ => Vec::new(),
        }
    }
    for s in 0..n {
        if mark[s] != 0 {
            continue;
        }
        let mut stack: Vec<(usize, Vec<NodeId>, usize)> = vec![(s, succ(g, s), 0)];
        mark[s] = 1;
        while let Some((node, ss, i)) = stack.last_mut() {
            if *i < ss.len() {
                let t = ss[*i] as usize;
                *i += 1;
                match mark[t] {
                    1 => {
                        return Err(too_complex(
                            "#",
                            "a $ref/anyOf cycle that never produces a value",
                        ))
                    }
                    0 => {
                        mark[t] = 1;
                        let st = succ(g, t);
                        stack.push((t, st, 0));
                    }
                    _ => {}
                }
            } else {
                mark[*node] = 2;
                stack.pop();
            }
        }
    }
    Ok(())
}

/// Most key-trie words built over all objects (objects with many optional
/// properties need one trie per position: quadratic in the count).
const MAX_KEY_WORDS: usize = 1_000_000;

/// Builds each object's per-position key tries and required flags.
pub(crate) fn finalize_objects(g: &mut Grammar) -> Result<(), SchemaError> {
    let mut words_total = 0usize;
    for n in &g.nodes {
        if let Node::Object(o) = n {
            for next in 0..o.props.len() {
                let upto = o.props[next..]
                    .iter()
                    .position(|p| p.required)
                    .map_or(o.props.len(), |k| next + k + 1);
                words_total += upto - next;
            }
        }
    }
    if words_total > MAX_KEY_WORDS {
        return Err(too_complex("#", "too many optional properties"));
    }
    for i in 0..g.nodes.len() {
        let Node::Object(o) = &g.nodes[i] else {
            continue;
        };
        let n = o.props.len();
        let mut req_from = vec![false; n + 1];
        for j in (0..n).rev() {
            req_from[j] = req_from[j + 1] || o.props[j].required;
        }
        let names: Vec<(String, bool)> = o
            .props
            .iter()
            .map(|p| (p.name.clone(), p.required))
            .collect();
        let mut tries = Vec::with_capacity(n + 1);
        for next in 0..=n {
            let mut words = Vec::new();
            for (j, (name, req)) in names.iter().enumerate().skip(next) {
                if let Ok(enc) = serde_json::to_string(name) {
                    words.push((enc.into_bytes(), j as u32));
                }
                if *req {
                    break;
                }
            }
            tries.push(if words.is_empty() {
                None
            } else {
                Some(g.add_lits(&words))
            });
        }
        if let Node::Object(o) = &mut g.nodes[i] {
            o.key_tries = tries;
            o.req_from = req_from;
        }
    }
    Ok(())
}

/// Least fixpoint: which nodes can produce at least one finite value.
pub(crate) fn productive(g: &Grammar) -> Vec<bool> {
    let n = g.nodes.len();
    let mut p = vec![false; n];
    loop {
        let mut changed = false;
        for i in 0..n {
            if p[i] {
                continue;
            }
            let ok = match &g.nodes[i] {
                Node::Any | Node::Special(_) => true,
                Node::Bytes(v) => !v.is_empty(),
                Node::Str(k) => {
                    let k = &g.strs[*k as usize];
                    let d = &g.dfas[k.dfa as usize];
                    !d.is_empty()
                        && k.min <= k.max
                        && k.table.as_ref().is_none_or(|t| t.is_live(d.start, 0))
                }
                Node::Num(k) => g.nums[*k as usize].satisfiable(),
                Node::Lit(r) => !g.lit_is_empty(*r),
                Node::Object(o) => o
                    .props
                    .iter()
                    .filter(|x| x.required)
                    .all(|x| p[x.node as usize]),
                Node::Array(a) => (0..a.min).all(|j| a.elem(j).is_some_and(|e| p[e as usize])),
                Node::Union(b) => b.iter().any(|&x| p[x as usize]),
                Node::Seq(items) => !items.is_empty() && items.iter().all(|&x| p[x as usize]),
                Node::Repeat { item, sep, min, .. } => {
                    p[*item as usize] && (*min < 2 || sep.is_none_or(|s| p[s as usize]))
                }
            };
            if ok {
                p[i] = true;
                changed = true;
            }
        }
        if !changed {
            return p;
        }
    }
}

/// Removes what cannot be completed: union branches, optional properties,
/// additional-property and item schemas that admit no value.
pub(crate) fn cleanup(g: &mut Grammar, p: &[bool]) {
    for node in g.nodes.iter_mut() {
        match node {
            Node::Union(b) => b.retain(|&x| p[x as usize]),
            Node::Object(o) => {
                o.props.retain(|x| p[x.node as usize]);
                if o.additional.is_some_and(|a| !p[a as usize]) {
                    o.additional = None;
                }
            }
            Node::Array(a) => {
                if let Some(k) = a.prefix.iter().position(|&x| !p[x as usize]) {
                    a.max = a.max.min(k as u32);
                    a.prefix.truncate(k);
                    a.items = None;
                }
                if a.items.is_some_and(|x| !p[x as usize]) {
                    a.items = None;
                }
                if a.items.is_none() {
                    a.max = a.max.min(a.prefix.len() as u32);
                }
            }
            // Without a usable separator only one item can be written.
            Node::Repeat {
                sep: Some(s), max, ..
            } if !p[*s as usize] => *max = 1,
            _ => {}
        }
    }
}
