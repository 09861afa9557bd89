//! Byte-level behaviour of schema constraints: what is accepted, what is
//! rejected, and which schemas are refused with which error.

use hearth_grammar::{Grammar, JsonOptions, JsonSchemaConstraint, SchemaError};
use serde_json::json;

fn compile(s: serde_json::Value) -> Grammar {
    match JsonSchemaConstraint::compile(&s) {
        Ok(g) => g,
        Err(e) => panic!("schema {s} failed: {e}"),
    }
}

fn accepts(g: &Grammar, text: &str) -> bool {
    let st = g.start_state();
    g.advance_bytes(&st, text.as_bytes())
        .is_some_and(|s| g.state_is_complete(&s))
}

fn prefix_ok(g: &Grammar, text: &str) -> bool {
    let st = g.start_state();
    g.advance_bytes(&st, text.as_bytes()).is_some()
}

#[track_caller]
fn check(schema: serde_json::Value, good: &[&str], bad: &[&str]) {
    let g = compile(schema.clone());
    for t in good {
        assert!(accepts(&g, t), "{schema} should accept {t}");
        // And the independent validator agrees.
        let v: serde_json::Value = serde_json::from_str(t).expect("test text is JSON");
        assert!(
            jsonschema::is_valid(&schema, &v),
            "test bug: {t} invalid under {schema}"
        );
    }
    for t in bad {
        assert!(!accepts(&g, t), "{schema} should reject {t}");
    }
}

#[test]
fn json_object_mode() {
    let g = Grammar::json_object(JsonOptions::default());
    for t in [
        r#"{}"#,
        r#"{"a":1}"#,
        "{\n  \"a\": [1, 2.5, -3e2, true, null, \"x\"],\n  \"b\": {\"c\": {}}\n}",
    ] {
        assert!(accepts(&g, t), "{t}");
    }
    for t in [
        "[]",
        "1",
        "\"x\"",
        " {}",
        "{\"a\":1,}",
        "{\"a\" 1}",
        "{'a':1}",
        "{\"a\":01}",
        "{} x",
    ] {
        assert!(!accepts(&g, t), "{t}");
    }
    // Whitespace runs are capped.
    let many = format!("{{{}}}", " ".repeat(20));
    let too_many = format!("{{{}}}", " ".repeat(21));
    assert!(accepts(&g, &many));
    assert!(!prefix_ok(&g, &too_many));
    // Raw control characters and invalid UTF-8 never enter strings.
    assert!(!prefix_ok(&g, "{\"a\n"));
    let st = g.advance_bytes(&g.start_state(), b"{\"").unwrap();
    assert!(
        g.advance_bytes(&st, &[0xC0, 0x80]).is_none(),
        "overlong encoding"
    );
    assert!(
        g.advance_bytes(&st, &[0xED, 0xA0, 0x80]).is_none(),
        "surrogate"
    );
    assert!(g.advance_bytes(&st, "é😀".as_bytes()).is_some());
}

#[test]
fn nesting_depth_is_capped() {
    let opts = JsonOptions {
        max_any_depth: 3,
        ..JsonOptions::default()
    };
    let g = Grammar::json_object(opts);
    assert!(accepts(&g, r#"{"a":{"b":{"c":1}}}"#));
    assert!(!prefix_ok(&g, r#"{"a":{"b":{"c":{"#));
    assert!(!prefix_ok(&g, r#"{"a":[[[["#));
}

#[test]
fn objects_required_optional_additional() {
    let s = json!({
        "type": "object",
        "properties": {"name": {"type": "string"}, "age": {"type": "integer"}, "tags": {"type": "array", "items": {"type": "string"}}},
        "required": ["name", "tags"]
    });
    check(
        s,
        &[
            r#"{"name":"a","tags":[]}"#,
            r#"{"name":"a","age":3,"tags":["x"]}"#,
            r#"{ "name" : "a" , "tags" : [ "x" , "y" ] }"#,
        ],
        &[
            r#"{"tags":[],"name":"a"}"#, // out of schema order
            r#"{"name":"a"}"#,           // missing required
            r#"{"name":"a","tags":[],"extra":1}"#,
            r#"{"age":3,"tags":[]}"#,
            r#"{"name":"a","name":"b","tags":[]}"#,
        ],
    );
    // additionalProperties: true → extra keys after the required ones, never a declared name.
    let s = json!({"type": "object", "properties": {"a": {"type": "integer"}}, "required": ["a"], "additionalProperties": true});
    check(
        s.clone(),
        &[r#"{"a":1}"#, r#"{"a":1,"b":"x","c":[1]}"#],
        &[r#"{"b":1,"a":1}"#],
    );
    let g = compile(s);
    assert!(
        !accepts(&g, r#"{"a":1,"a":2}"#),
        "a declared key is not an additional key"
    );
    // Schema-valued additionalProperties.
    check(
        json!({"type": "object", "additionalProperties": {"type": "integer"}}),
        &[r#"{}"#, r#"{"x":1,"y":-2}"#],
        &[r#"{"x":"s"}"#],
    );
    // No properties and no additionalProperties → any object.
    check(
        json!({"type": "object"}),
        &[r#"{"k":{"z":[null]}}"#],
        &["[]"],
    );
    // additionalProperties false with no properties → only {}.
    check(
        json!({"type": "object", "additionalProperties": false}),
        &["{}"],
        &[r#"{"a":1}"#],
    );
    // A required name not in properties takes the additionalProperties schema.
    check(
        json!({"type": "object", "required": ["id"]}),
        &[r#"{"id":[1]}"#],
        &["{}"],
    );
}

#[test]
fn strings_lengths_patterns_formats() {
    check(
        json!({"type": "string", "minLength": 2, "maxLength": 3}),
        &[r#""ab""#, r#""abc""#, r#""éé""#, r#""\n\t""#],
        &[r#""a""#, r#""abcd""#],
    );
    check(
        json!({"type": "string", "pattern": "^[a-z]+-\\d{2}$"}),
        &[r#""ab-12""#],
        &[r#""ab-1""#, r#""AB-12""#, r#""ab-123""#],
    );
    // Unanchored: matches anywhere.
    check(
        json!({"type": "string", "pattern": "\\d{3}"}),
        &[r#""ab123cd""#],
        &[r#""ab12cd""#],
    );
    // Pattern + length: only even-length strings in 3..=6 → 4 or 6 characters.
    let g =
        compile(json!({"type": "string", "pattern": "^(ab)*$", "minLength": 3, "maxLength": 6}));
    assert!(accepts(&g, r#""abab""#) && accepts(&g, r#""ababab""#));
    assert!(!accepts(&g, r#""ab""#) && !prefix_ok(&g, r#""abababa"#));
    check(
        json!({"type": "string", "format": "date"}),
        &[r#""2024-02-28""#, r#""1999-12-31""#],
        &[r#""2024-13-01""#, r#""2024-02-30""#, r#""24-01-01""#],
    );
    check(
        json!({"type": "string", "format": "date-time"}),
        &[
            r#""2024-05-06T07:08:09Z""#,
            r#""2024-05-06T07:08:09.123+02:00""#,
        ],
        &[r#""2024-05-06 07:08:09Z""#, r#""2024-05-06T25:00:00Z""#],
    );
    check(
        json!({"type": "string", "format": "uuid"}),
        &[r#""123e4567-e89b-12d3-a456-426614174000""#],
        &[r#""123e4567e89b12d3a456426614174000""#],
    );
    check(
        json!({"type": "string", "format": "email"}),
        &[r#""a.b@example.com""#],
        &[r#""a@b""#, r#""@x.com""#],
    );
    check(
        json!({"type": "string", "format": "ipv4"}),
        &[r#""192.168.0.1""#],
        &[r#""256.1.1.1""#],
    );
}

#[test]
fn numbers_and_bounds() {
    check(
        json!({"type": "integer"}),
        &["0", "-12", "123456789012345678"],
        &["1.5", "1e3", "01", "-"],
    );
    check(
        json!({"type": "number"}),
        &["0", "-1.5e-3", "2E+10"],
        &["1.", ".5", "+1", "NaN"],
    );
    check(
        json!({"type": "integer", "minimum": 1, "maximum": 12}),
        &["1", "12", "7"],
        &["0", "13", "-1", "120"],
    );
    check(
        json!({"type": "integer", "exclusiveMinimum": 0, "exclusiveMaximum": 10}),
        &["1", "9"],
        &["0", "10"],
    );
    check(
        json!({"type": "number", "minimum": -0.5, "maximum": 0.5}),
        &["-0.5", "0", "0.25", "-0"],
        &["0.51", "-1", "1e-1"],
    );
    // Draft-4 boolean exclusivity.
    check(
        json!({"$schema": "http://json-schema.org/draft-04/schema#", "type": "number", "minimum": 0, "exclusiveMinimum": true, "maximum": 1}),
        &["0.5", "1"],
        &["0"],
    );
}

#[test]
fn arrays() {
    check(
        json!({"type": "array", "items": {"type": "integer"}, "minItems": 1, "maxItems": 3}),
        &["[1]", "[1,2,3]", "[ 1 , 2 ]"],
        &["[]", "[1,2,3,4]", "[1,]", "[\"a\"]"],
    );
    check(
        json!({"type": "array", "prefixItems": [{"type": "string"}, {"type": "integer"}], "items": false}),
        &[r#"["a",1]"#, r#"["a"]"#, "[]"],
        &[r#"["a",1,2]"#, r#"[1,"a"]"#],
    );
    // Draft-4 tuple form.
    check(
        json!({"$schema": "http://json-schema.org/draft-04/schema#", "type": "array", "items": [{"type": "boolean"}], "additionalItems": {"type": "null"}}),
        &["[true,null,null]"],
        &["[true,true]"],
    );
}

#[test]
fn enums_consts_unions() {
    check(
        json!({"enum": ["red", "green", 3, null, {"a": [1]}]}),
        &[r#""red""#, "3", "null", r#"{"a":[1]}"#],
        &[r#""blue""#, "4", r#""re""#],
    );
    check(json!({"const": "x"}), &[r#""x""#], &[r#""y""#]);
    // enum filtered by sibling type.
    check(
        json!({"type": "string", "enum": ["a", 1, "b"]}),
        &[r#""a""#, r#""b""#],
        &["1"],
    );
    // Prefix-sharing enum values: "ab" and "abc".
    check(
        json!({"enum": ["ab", "abc", 1, 12]}),
        &[r#""ab""#, r#""abc""#, "1", "12"],
        &["123"],
    );
    check(
        json!({"type": ["string", "null"]}),
        &[r#""s""#, "null"],
        &["1"],
    );
    check(
        json!({"anyOf": [{"type": "integer"}, {"type": "string", "maxLength": 1}]}),
        &["5", r#""a""#],
        &[r#""ab""#],
    );
    check(
        json!({"anyOf": [
            {"type": "object", "properties": {"a": {"type": "integer"}}, "required": ["a"]},
            {"type": "object", "properties": {"a": {"type": "string"}, "b": {"type": "integer"}}, "required": ["a", "b"]}
        ]}),
        &[r#"{"a":1}"#, r#"{"a":"x","b":2}"#],
        &[r#"{"a":"x"}"#, r#"{"a":1,"b":2}"#],
    );
    // oneOf with a discriminator.
    check(
        json!({"oneOf": [
            {"type": "object", "properties": {"kind": {"const": "circle"}, "r": {"type": "number"}}, "required": ["kind", "r"]},
            {"type": "object", "properties": {"kind": {"const": "square"}, "side": {"type": "number"}}, "required": ["kind", "side"]}
        ]}),
        &[
            r#"{"kind":"circle","r":1}"#,
            r#"{"kind":"square","side":2}"#,
        ],
        &[r#"{"kind":"circle","side":1}"#],
    );
    // Sibling keywords merge into each branch.
    check(
        json!({"type": "object", "properties": {"a": {"type": "integer"}, "b": {"type": "integer"}}, "anyOf": [{"required": ["a"]}, {"required": ["b"]}]}),
        &[r#"{"a":1}"#, r#"{"b":1}"#, r#"{"a":1,"b":2}"#],
        &["{}"],
    );
    check(
        json!({"allOf": [{"type": "object", "properties": {"a": {"type": "integer"}}, "required": ["a"]}, {"properties": {"b": {"type": "boolean"}}, "required": ["b"]}]}),
        &[r#"{"a":1,"b":true}"#],
        &[r#"{"a":1}"#],
    );
}

#[test]
fn refs_nonrecursive_and_recursive() {
    check(
        json!({
            "$defs": {"point": {"type": "object", "properties": {"x": {"type": "number"}, "y": {"type": "number"}}, "required": ["x", "y"]}},
            "type": "object",
            "properties": {"from": {"$ref": "#/$defs/point"}, "to": {"$ref": "#/$defs/point"}},
            "required": ["from", "to"]
        }),
        &[r#"{"from":{"x":0,"y":1},"to":{"x":2,"y":3}}"#],
        &[r#"{"from":{"x":0},"to":{"x":2,"y":3}}"#],
    );
    let tree = json!({
        "$defs": {"node": {"type": "object", "properties": {
            "value": {"type": "integer"},
            "children": {"type": "array", "items": {"$ref": "#/$defs/node"}}
        }, "required": ["value"]}},
        "$ref": "#/$defs/node"
    });
    check(
        tree,
        &[
            r#"{"value":1}"#,
            r#"{"value":1,"children":[{"value":2,"children":[{"value":3}]}]}"#,
        ],
        &[r#"{"children":[]}"#],
    );
    // Recursion through the root and the `definitions` spelling.
    check(
        json!({"definitions": {"s": {"type": "string"}}, "type": "object", "properties": {"name": {"$ref": "#/definitions/s"}, "next": {"anyOf": [{"$ref": "#"}, {"type": "null"}]}}, "required": ["name", "next"]}),
        &[
            r#"{"name":"a","next":null}"#,
            r#"{"name":"a","next":{"name":"b","next":null}}"#,
        ],
        &[r#"{"name":"a"}"#],
    );
}

#[test]
fn unsatisfiable_parts_are_pruned() {
    // An optional property that can never be satisfied is simply never written.
    let g = compile(
        json!({"type": "object", "properties": {"a": {"type": "string", "minLength": 5, "maxLength": 2}, "b": {"type": "integer"}}}),
    );
    assert!(accepts(&g, r#"{"b":1}"#));
    assert!(!prefix_ok(&g, r#"{"a"#));
    // A required self-recursive property has no finite instance.
    let e = JsonSchemaConstraint::compile(
        &json!({"type": "object", "properties": {"me": {"$ref": "#"}}, "required": ["me"]}),
    )
    .unwrap_err();
    assert!(matches!(e, SchemaError::Unsatisfiable { .. }), "{e}");
    let e = JsonSchemaConstraint::compile(&json!({"type": "integer", "minimum": 5, "maximum": 4}))
        .unwrap_err();
    assert!(matches!(e, SchemaError::Unsatisfiable { .. }), "{e}");
    let e = JsonSchemaConstraint::compile(&json!({"enum": []})).unwrap_err();
    assert!(matches!(e, SchemaError::Unsatisfiable { .. }), "{e}");
}

#[test]
fn rejected_keywords_are_named() {
    let cases = [
        (json!({"not": {"type": "string"}}), "not"),
        (
            json!({"type": "object", "properties": {"a": {"type": "array", "uniqueItems": true}}}),
            "uniqueItems",
        ),
        (json!({"type": "integer", "multipleOf": 3}), "multipleOf"),
        (
            json!({"type": "object", "patternProperties": {"^x": {}}}),
            "patternProperties",
        ),
        (json!({"if": {}, "then": {}}), "if"),
        (json!({"type": "string", "format": "hostname"}), "format"),
        (
            json!({"type": "object", "minProperties": 2}),
            "minProperties",
        ),
        (
            json!({"type": "array", "contains": {"type": "integer"}}),
            "contains",
        ),
        (
            json!({"oneOf": [{"type": "integer"}, {"type": "number"}]}),
            "oneOf",
        ),
        (
            json!({"$ref": "#/$defs/a", "type": "object", "$defs": {"a": {}}}),
            "type",
        ),
        (json!({"$ref": "http://example.com/s.json"}), "$ref"),
        (json!({"$ref": "#/$defs/missing"}), "$ref"),
        (json!({"type": "string", "pattern": "(a)\\1"}), "pattern"),
        (json!({"type": "string", "pattern": "(?=a)"}), "pattern"),
    ];
    for (s, kw) in cases {
        match JsonSchemaConstraint::compile(&s) {
            Err(e) => assert_eq!(e.keyword(), kw, "{s}: {e}"),
            Ok(_) => panic!("{s} should be rejected"),
        }
    }
    // Non-consuming ref cycles are refused, not looped on.
    assert!(matches!(
        JsonSchemaConstraint::compile(
            &json!({"$defs": {"a": {"$ref": "#/$defs/a"}}, "$ref": "#/$defs/a"})
        ),
        Err(SchemaError::TooComplex { .. })
    ));
    assert!(matches!(
        JsonSchemaConstraint::compile(&json!({"anyOf": [{"$ref": "#"}]})),
        Err(SchemaError::TooComplex { .. })
    ));
    // Annotations and unknown keywords are ignored; uniqueItems false is fine.
    compile(
        json!({"title": "t", "description": "d", "x-vendor": 1, "nullable": true, "type": "array", "uniqueItems": false}),
    );
    // Malformed values are typed errors.
    assert!(matches!(
        JsonSchemaConstraint::compile(&json!({"type": "string", "minLength": -1})),
        Err(SchemaError::InvalidKeyword { .. })
    ));
    assert!(matches!(
        JsonSchemaConstraint::compile(&json!({"type": 5})),
        Err(SchemaError::InvalidKeyword { .. })
    ));
    assert!(matches!(
        JsonSchemaConstraint::compile(&json!("string")),
        Err(SchemaError::InvalidKeyword { .. })
    ));
}

#[test]
fn hostile_schemas_are_bounded() {
    // Many large patterns: the grammar-wide automaton budget refuses them.
    let mut props = serde_json::Map::new();
    for i in 0..64 {
        props.insert(
            format!("p{i}"),
            json!({"type": "string", "pattern": "[ab]*a[ab]{10}$"}),
        );
    }
    let e =
        JsonSchemaConstraint::compile(&json!({"type": "object", "properties": props})).unwrap_err();
    assert!(matches!(e, SchemaError::TooComplex { .. }), "{e}");
    // One pattern beyond the per-pattern DFA limit.
    let e = JsonSchemaConstraint::compile(&json!({"type": "string", "pattern": "[ab]*a[ab]{14}$"}))
        .unwrap_err();
    assert!(matches!(e, SchemaError::UnsupportedPattern { .. }), "{e}");
    // Thousands of optional properties: quadratic key tries are refused.
    let mut props = serde_json::Map::new();
    for i in 0..3000 {
        props.insert(format!("k{i}"), json!({"type": "integer"}));
    }
    let e =
        JsonSchemaConstraint::compile(&json!({"type": "object", "properties": props})).unwrap_err();
    assert!(matches!(e, SchemaError::TooComplex { .. }), "{e}");
    // Deep nesting is refused, not a stack overflow.
    let mut s = json!({"type": "integer"});
    for _ in 0..200 {
        s = json!({"type": "array", "items": s});
    }
    assert!(matches!(
        JsonSchemaConstraint::compile(&s),
        Err(SchemaError::TooComplex { .. })
    ));
    // A very long literal is fine.
    let long = "x".repeat(200_000);
    let g = compile(json!({"const": long}));
    assert!(accepts(&g, &format!("\"{long}\"")));
}
