//! Property tests: decoding with random logits under a constraint over real
//! vocabularies always yields text that parses and validates, never
//! dead-ends, and can always be completed.

mod common;

use std::sync::Arc;

use common::{random_decode, Vocab};
use hearth_grammar::{Grammar, JsonOptions, JsonSchemaConstraint};
use serde_json::{json, Value};

fn schemas() -> Vec<(&'static str, Value)> {
    vec![
        (
            "person",
            json!({
                "type": "object",
                "properties": {
                    "name": {"type": "string", "maxLength": 24},
                    "age": {"type": "integer", "minimum": 0, "maximum": 130},
                    "email": {"type": "string", "format": "email"},
                    "tags": {"type": "array", "items": {"type": "string", "enum": ["a", "bb", "ccc"]}, "maxItems": 4}
                },
                "required": ["name", "age"],
                "additionalProperties": false
            }),
        ),
        (
            "nested-refs",
            json!({
                "$defs": {
                    "point": {"type": "object", "properties": {"x": {"type": "number"}, "y": {"type": "number", "minimum": -1, "maximum": 1}}, "required": ["x", "y"]},
                    "color": {"enum": ["red", "green", "blue", null]}
                },
                "type": "object",
                "properties": {
                    "points": {"type": "array", "items": {"$ref": "#/$defs/point"}, "minItems": 1, "maxItems": 3},
                    "color": {"$ref": "#/$defs/color"},
                    "when": {"type": "string", "format": "date-time"}
                },
                "required": ["points", "color", "when"]
            }),
        ),
        (
            "recursive-tree",
            json!({
                "$defs": {"node": {"type": "object", "properties": {
                    "id": {"type": "string", "format": "uuid"},
                    "kids": {"type": "array", "items": {"$ref": "#/$defs/node"}, "maxItems": 2}
                }, "required": ["id"]}},
                "$ref": "#/$defs/node"
            }),
        ),
        (
            "unions",
            json!({
                "type": "object",
                "properties": {
                    "v": {"anyOf": [{"type": "integer"}, {"type": "string", "pattern": "^[a-z]{2,5}$"}, {"type": "null"}]},
                    "shape": {"oneOf": [
                        {"type": "object", "properties": {"kind": {"const": "circle"}, "r": {"type": "number", "exclusiveMinimum": 0, "maximum": 10}}, "required": ["kind", "r"], "additionalProperties": false},
                        {"type": "object", "properties": {"kind": {"const": "rect"}, "w": {"type": "integer"}, "h": {"type": "integer"}}, "required": ["kind", "w", "h"], "additionalProperties": false}
                    ]}
                },
                "required": ["v", "shape"],
                "additionalProperties": false
            }),
        ),
        (
            "extra-keys",
            json!({
                "type": "object",
                "properties": {"id": {"type": "integer"}, "note": {"type": "string", "minLength": 3, "maxLength": 8}},
                "required": ["id"],
                "additionalProperties": {"type": ["boolean", "string"], "maxLength": 6}
            }),
        ),
        (
            "tuple-and-patterns",
            json!({
                "type": "array",
                "prefixItems": [{"type": "string", "format": "date"}, {"type": "string", "pattern": "\\d{3}-\\d{4}"}, {"type": "boolean"}],
                "items": false,
                "minItems": 2
            }),
        ),
        (
            "free-value",
            json!({"type": "object", "properties": {"payload": {}, "n": {"type": "number"}}, "required": ["payload", "n"]}),
        ),
        (
            "ipv4-time",
            json!({"type": "object", "properties": {"ip": {"type": "string", "format": "ipv4"}, "t": {"type": "string", "format": "time"}, "d": {"type": "string", "format": "date"}}, "required": ["ip", "t", "d"]}),
        ),
    ]
}

fn validator(schema: &Value) -> jsonschema::Validator {
    jsonschema::options()
        .should_validate_formats(true)
        .build(schema)
        .expect("test schema is valid")
}

const SEEDS: u64 = 12;

fn property(v: &Vocab, label: &str) {
    let mut total = 0;
    let mut unbiased = 0;
    for (name, schema) in schemas() {
        let g = Arc::new(
            JsonSchemaConstraint::compile(&schema).unwrap_or_else(|e| panic!("{name}: {e}")),
        );
        let val = validator(&schema);
        for seed in 0..SEEDS {
            let full = if seed == 0 { Some(37) } else { None };
            let run = random_decode(v, g.clone(), seed, 160, full);
            assert!(
                run.finished,
                "{label}/{name}/{seed}: not completed: {:?}",
                String::from_utf8_lossy(&run.bytes)
            );
            let text = String::from_utf8(run.bytes.clone())
                .unwrap_or_else(|_| panic!("{label}/{name}/{seed}: invalid UTF-8"));
            let value: Value = serde_json::from_str(&text)
                .unwrap_or_else(|e| panic!("{label}/{name}/{seed}: {e}: {text}"));
            if let Err(e) = val.validate(&value) {
                panic!("{label}/{name}/{seed}: {text} does not validate: {e}");
            }
            total += 1;
            unbiased += run.finished_unbiased as usize;
        }
    }
    eprintln!("{label}: {total} schema runs valid ({unbiased} ended by a sampled EOG, the rest completed by the shortest-completion path)");
}

#[test]
fn schema_decoding_qwen2() {
    property(common::qwen2(), "qwen2");
}

#[test]
fn schema_decoding_llama_bpe() {
    property(common::llama_bpe(), "llama-bpe");
}

#[test]
fn schema_decoding_phi3_spm() {
    property(common::phi3(), "phi3");
}

#[test]
fn json_object_decoding() {
    for (label, v) in [
        ("qwen2", common::qwen2()),
        ("llama-bpe", common::llama_bpe()),
    ] {
        let g = Arc::new(Grammar::json_object(JsonOptions::default()));
        for seed in 0..SEEDS {
            let run = random_decode(
                v,
                g.clone(),
                1000 + seed,
                160,
                if seed == 0 { Some(41) } else { None },
            );
            assert!(run.finished, "{label}/{seed}");
            let text = String::from_utf8(run.bytes).expect("UTF-8");
            let value: Value = serde_json::from_str(&text)
                .unwrap_or_else(|e| panic!("{label}/{seed}: {e}: {text}"));
            assert!(value.is_object());
        }
    }
}
