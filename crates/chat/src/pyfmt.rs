//! Python's text forms of template values: `str()`, `repr()` and
//! `json.dumps()`.
//!
//! Jinja2 writes `{{ x }}` as `str(x)`, and transformers' `tojson` filter is
//! `json.dumps(x, ensure_ascii=False, indent=None, separators=None,
//! sort_keys=False)` (transformers `utils/chat_template_utils.py`). MiniJinja's
//! own spellings (`true`, `none`, `["a"]`) differ, so the sandbox routes
//! output and `tojson` through these functions instead.
//!
//! Deliberately approximate: `repr()` of a string escapes the characters
//! Python's `str.isprintable()` rejects only for the ranges listed in
//! [`is_py_printable`] (no full Unicode category table), and values Python
//! would show as `<generator object ...>` are shown with a fixed placeholder.

use std::fmt::Write as _;

use minijinja::value::ValueKind;
use minijinja::{Error, ErrorKind, Value};

/// How deep `repr()` / `json.dumps()` descend before giving up. Python's own
/// limit is the interpreter recursion limit (1000); values reaching this
/// depth can only come from a template building a self-referencing namespace.
pub(crate) const MAX_DEPTH: usize = 200;

/// Pays fuel for work done on behalf of the template: one unit per item
/// visited and one per 64 bytes copied (MiniJinja's own rate). Needed
/// because a template can build lists far larger than the fuel it spent on
/// them (`a + a` concatenations are lazy and free), and formatting walks
/// every item.
pub(crate) type Charge<'a> = &'a dyn Fn(u64) -> Result<(), Error>;

/// A [`Charge`] that charges nothing, for callers outside a render.
#[cfg(test)]
pub(crate) fn free(_: u64) -> Result<(), Error> {
    Ok(())
}

fn str_cost(s: &str) -> u64 {
    1 + (s.len() / 64) as u64
}

fn too_deep() -> Error {
    Error::new(
        ErrorKind::InvalidOperation,
        "value nested too deeply to format",
    )
}

/// Python `repr(float)`: shortest round-tripping digits, scientific notation
/// when the decimal exponent is below -4 or above 16 (CPython
/// `float_repr_style == 'short'`, `PyOS_double_to_string(x, 'r', ...)`).
pub(crate) fn py_float_repr(f: f64) -> String {
    if f.is_nan() {
        return "nan".into();
    }
    if f.is_infinite() {
        return if f > 0.0 { "inf".into() } else { "-inf".into() };
    }
    if f == 0.0 {
        return if f.is_sign_negative() {
            "-0.0".into()
        } else {
            "0.0".into()
        };
    }
    // Rust's `{:e}` also prints the shortest round-tripping digit string.
    let sci = format!("{:e}", f);
    let (mantissa, exp) = match sci.split_once('e') {
        Some((m, e)) => (m, e.parse::<i32>().unwrap_or(0)),
        None => (sci.as_str(), 0),
    };
    let (neg, mantissa) = match mantissa.strip_prefix('-') {
        Some(m) => (true, m),
        None => (false, mantissa),
    };
    let digits: String = mantissa.chars().filter(|c| *c != '.').collect();
    let decpt = exp + 1;
    let mut out = String::new();
    if neg {
        out.push('-');
    }
    if decpt > -4 && decpt <= 16 {
        if decpt <= 0 {
            out.push_str("0.");
            for _ in 0..(-decpt) {
                out.push('0');
            }
            out.push_str(&digits);
        } else {
            let decpt = decpt as usize;
            if decpt >= digits.len() {
                out.push_str(&digits);
                for _ in digits.len()..decpt {
                    out.push('0');
                }
                out.push_str(".0");
            } else {
                out.push_str(&digits[..decpt]);
                out.push('.');
                out.push_str(&digits[decpt..]);
            }
        }
    } else {
        out.push_str(&digits[..1]);
        if digits.len() > 1 {
            out.push('.');
            out.push_str(&digits[1..]);
        }
        let e = decpt - 1;
        let _ = write!(out, "e{}{:02}", if e < 0 { '-' } else { '+' }, e.abs());
    }
    out
}

/// The integer or float inside a number value.
enum Num {
    Int(i128),
    Float(f64),
}

fn number(v: &Value) -> Option<Num> {
    if v.is_integer() {
        i128::try_from(v.clone()).ok().map(Num::Int)
    } else {
        f64::try_from(v.clone()).ok().map(Num::Float)
    }
}

/// Approximation of Python's `str.isprintable()` for one character: control
/// characters, separators other than the ASCII space, and the common format
/// characters are not printable.
fn is_py_printable(c: char) -> bool {
    let u = c as u32;
    !(u < 0x20
        || (0x7f..=0xa0).contains(&u)
        || u == 0xad
        || u == 0x1680
        || (0x2000..=0x200f).contains(&u)
        || (0x2028..=0x202f).contains(&u)
        || (0x205f..=0x206f).contains(&u)
        || u == 0x3000
        || u == 0xfeff
        || (0xd800..=0xdfff).contains(&u)
        || (0xe000..=0xf8ff).contains(&u)
        || (0xfff9..=0xfffb).contains(&u)
        || u >= 0xf0000)
}

/// Python `repr(str)`.
pub(crate) fn py_str_repr(s: &str, out: &mut String) {
    let quote = if s.contains('\'') && !s.contains('"') {
        '"'
    } else {
        '\''
    };
    out.push(quote);
    for c in s.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            c if c == quote => {
                out.push('\\');
                out.push(c);
            }
            c if is_py_printable(c) => out.push(c),
            c => {
                let u = c as u32;
                let _ = if u < 0x100 {
                    write!(out, "\\x{:02x}", u)
                } else if u < 0x10000 {
                    write!(out, "\\u{:04x}", u)
                } else {
                    write!(out, "\\U{:08x}", u)
                };
            }
        }
    }
    out.push(quote);
}

/// Python `str(value)` as Jinja2 prints it (`Undefined` prints nothing).
pub(crate) fn py_str(v: &Value, out: &mut String, charge: Charge) -> Result<(), Error> {
    match v.kind() {
        ValueKind::String => {
            let s = v.as_str().unwrap_or_default();
            charge(str_cost(s))?;
            out.push_str(s);
            Ok(())
        }
        ValueKind::Undefined => Ok(()),
        _ => py_repr(v, out, 0, charge),
    }
}

/// Python `repr(value)` for the data shapes a template can hold.
pub(crate) fn py_repr(
    v: &Value,
    out: &mut String,
    depth: usize,
    charge: Charge,
) -> Result<(), Error> {
    if depth > MAX_DEPTH {
        return Err(too_deep());
    }
    charge(1)?;
    if crate::sandbox::is_py_none(v) {
        out.push_str("None");
        return Ok(());
    }
    match v.kind() {
        ValueKind::Undefined => {}
        ValueKind::None => out.push_str("None"),
        ValueKind::Bool => out.push_str(if v.is_true() { "True" } else { "False" }),
        ValueKind::Number => match number(v) {
            Some(Num::Int(i)) => {
                let _ = write!(out, "{i}");
            }
            Some(Num::Float(f)) => out.push_str(&py_float_repr(f)),
            None => {
                let _ = write!(out, "{v}");
            }
        },
        ValueKind::String => {
            let s = v.as_str().unwrap_or_default();
            charge(str_cost(s))?;
            py_str_repr(s, out)
        }
        ValueKind::Bytes => {
            out.push('b');
            py_str_repr(
                &String::from_utf8_lossy(v.as_bytes().unwrap_or_default()),
                out,
            );
        }
        ValueKind::Seq => {
            let tuple = v.is_tuple();
            out.push(if tuple { '(' } else { '[' });
            let mut n = 0usize;
            for (i, item) in v.try_iter()?.enumerate() {
                if i > 0 {
                    out.push_str(", ");
                }
                py_repr(&item, out, depth + 1, charge)?;
                n += 1;
            }
            if tuple && n == 1 {
                out.push(',');
            }
            out.push(if tuple { ')' } else { ']' });
        }
        ValueKind::Map => {
            out.push('{');
            for (i, key) in v.try_iter()?.enumerate() {
                if i > 0 {
                    out.push_str(", ");
                }
                let item = v.get_item(&key)?;
                py_repr(&key, out, depth + 1, charge)?;
                out.push_str(": ");
                py_repr(&item, out, depth + 1, charge)?;
            }
            out.push('}');
        }
        // Python shows generators in an address-bearing form that no one
        // can match byte for byte. Other iterables are MiniJinja's lazy
        // forms of lists (slices, `+` concatenations) and print as lists.
        ValueKind::Iterable if v.downcast_object_ref::<crate::sandbox::PyIter>().is_some() => {
            out.push_str("<generator object>")
        }
        ValueKind::Iterable
            if v.downcast_object_ref::<crate::pymethods::DictView>()
                .is_some() =>
        {
            let view = v
                .downcast_object_ref::<crate::pymethods::DictView>()
                .map(|d| d.kind_name())
                .unwrap_or("");
            out.push_str(view);
            out.push_str("([");
            for (i, item) in v.try_iter()?.enumerate() {
                if i > 0 {
                    out.push_str(", ");
                }
                py_repr(&item, out, depth + 1, charge)?;
            }
            out.push_str("])");
        }
        ValueKind::Iterable => {
            out.push('[');
            for (i, item) in v.try_iter()?.enumerate() {
                if i > 0 {
                    out.push_str(", ");
                }
                py_repr(&item, out, depth + 1, charge)?;
            }
            out.push(']');
        }
        _ => {
            let _ = write!(out, "{v}");
        }
    }
    Ok(())
}

/// Options of transformers' `tojson` filter (the `json.dumps` keywords).
#[derive(Debug, Clone)]
pub(crate) struct JsonOptions {
    pub ensure_ascii: bool,
    /// `None`: single line; `Some(s)`: newline plus `s` per level.
    pub indent: Option<String>,
    pub item_sep: String,
    pub key_sep: String,
    pub sort_keys: bool,
}

impl Default for JsonOptions {
    fn default() -> Self {
        JsonOptions {
            ensure_ascii: false,
            indent: None,
            item_sep: ", ".into(),
            key_sep: ": ".into(),
            sort_keys: false,
        }
    }
}

/// `json.dumps` string encoding (`py_encode_basestring` /
/// `py_encode_basestring_ascii` in CPython's `json/encoder.py`).
pub(crate) fn json_str(s: &str, ensure_ascii: bool, out: &mut String) {
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            '\u{8}' => out.push_str("\\b"),
            '\u{c}' => out.push_str("\\f"),
            c if (c as u32) < 0x20 => {
                let _ = write!(out, "\\u{:04x}", c as u32);
            }
            c if ensure_ascii && (c as u32) > 0x7e => {
                let mut buf = [0u16; 2];
                for unit in c.encode_utf16(&mut buf) {
                    let _ = write!(out, "\\u{:04x}", unit);
                }
            }
            c => out.push(c),
        }
    }
    out.push('"');
}

fn not_serializable(what: &str) -> Error {
    Error::new(
        ErrorKind::InvalidOperation,
        format!("Object of type {what} is not JSON serializable"),
    )
}

/// A map key as `json.dumps` writes it: strings as-is, numbers, booleans and
/// None converted to their JSON spelling, anything else refused.
fn json_key(k: &Value) -> Result<String, Error> {
    match k.kind() {
        ValueKind::String => Ok(k.as_str().unwrap_or_default().to_string()),
        ValueKind::Bool => Ok(if k.is_true() { "true" } else { "false" }.into()),
        ValueKind::None => Ok("null".into()),
        ValueKind::Number => Ok(match number(k) {
            Some(Num::Int(i)) => i.to_string(),
            Some(Num::Float(f)) => json_float(f),
            None => k.to_string(),
        }),
        _ => Err(Error::new(
            ErrorKind::InvalidOperation,
            format!(
                "keys must be str, int, float, bool or None, not {}",
                k.kind()
            ),
        )),
    }
}

fn json_float(f: f64) -> String {
    if f.is_nan() {
        "NaN".into()
    } else if f.is_infinite() {
        if f > 0.0 {
            "Infinity".into()
        } else {
            "-Infinity".into()
        }
    } else {
        py_float_repr(f)
    }
}

fn newline_indent(opts: &JsonOptions, level: usize, out: &mut String) {
    if let Some(ind) = &opts.indent {
        out.push('\n');
        for _ in 0..level {
            out.push_str(ind);
        }
    }
}

/// `json.dumps(value, ...)` over the JSON-shaped values a template holds.
pub(crate) fn json_dumps(
    v: &Value,
    opts: &JsonOptions,
    out: &mut String,
    level: usize,
    charge: Charge,
) -> Result<(), Error> {
    if level > MAX_DEPTH {
        return Err(too_deep());
    }
    charge(1 + (opts.indent.as_ref().map_or(0, |i| i.len() * level) / 64) as u64)?;
    if crate::sandbox::is_py_none(v) {
        out.push_str("null");
        return Ok(());
    }
    match v.kind() {
        ValueKind::None => out.push_str("null"),
        ValueKind::Bool => out.push_str(if v.is_true() { "true" } else { "false" }),
        ValueKind::Number => match number(v) {
            Some(Num::Int(i)) => {
                let _ = write!(out, "{i}");
            }
            Some(Num::Float(f)) => out.push_str(&json_float(f)),
            None => return Err(not_serializable("number")),
        },
        ValueKind::String => {
            let s = v.as_str().unwrap_or_default();
            charge(str_cost(s))?;
            json_str(s, opts.ensure_ascii, out)
        }
        ValueKind::Iterable if v.downcast_object_ref::<crate::sandbox::PyIter>().is_some() => {
            return Err(not_serializable("generator"))
        }
        ValueKind::Iterable
            if v.downcast_object_ref::<crate::pymethods::DictView>()
                .is_some() =>
        {
            let view = v
                .downcast_object_ref::<crate::pymethods::DictView>()
                .map(|d| d.kind_name())
                .unwrap_or("");
            return Err(not_serializable(view));
        }
        ValueKind::Seq | ValueKind::Iterable => {
            let mut iter = v.try_iter()?.peekable();
            if iter.peek().is_none() {
                out.push_str("[]");
                return Ok(());
            }
            out.push('[');
            for (i, item) in iter.enumerate() {
                let item = &item;
                if i > 0 {
                    out.push_str(&opts.item_sep);
                }
                newline_indent(opts, level + 1, out);
                json_dumps(item, opts, out, level + 1, charge)?;
            }
            newline_indent(opts, level, out);
            out.push(']');
        }
        ValueKind::Map => {
            let mut pairs = Vec::new();
            for key in v.try_iter()? {
                charge(1)?;
                let item = v.get_item(&key)?;
                pairs.push((key, item));
            }
            if pairs.is_empty() {
                out.push_str("{}");
                return Ok(());
            }
            if opts.sort_keys {
                // Python sorts the original keys and refuses mixed types.
                let all_str = pairs.iter().all(|(k, _)| k.kind() == ValueKind::String);
                let all_num = pairs.iter().all(|(k, _)| k.kind() == ValueKind::Number);
                if !all_str && !all_num {
                    return Err(Error::new(
                        ErrorKind::InvalidOperation,
                        "'<' not supported between instances of mixed key types",
                    ));
                }
                pairs.sort_by(|a, b| a.0.cmp(&b.0));
            }
            out.push('{');
            for (i, (k, item)) in pairs.iter().enumerate() {
                if i > 0 {
                    out.push_str(&opts.item_sep);
                }
                newline_indent(opts, level + 1, out);
                json_str(&json_key(k)?, opts.ensure_ascii, out);
                out.push_str(&opts.key_sep);
                json_dumps(item, opts, out, level + 1, charge)?;
            }
            newline_indent(opts, level, out);
            out.push('}');
        }
        ValueKind::Undefined => return Err(not_serializable("Undefined")),
        ValueKind::Bytes => return Err(not_serializable("bytes")),
        _ => return Err(not_serializable(&v.kind().to_string())),
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn float_repr_matches_python() {
        // Values checked against CPython 3 `repr(float)`.
        let cases = [
            (1.0, "1.0"),
            (0.25, "0.25"),
            (0.1, "0.1"),
            (1e16, "1e+16"),
            (1e15, "1000000000000000.0"),
            (123456789012345680.0, "1.2345678901234568e+17"),
            (0.0001, "0.0001"),
            (0.00001, "1e-05"),
            (1.5e-7, "1.5e-07"),
            (-2.5, "-2.5"),
            (-0.0, "-0.0"),
            (1e100, "1e+100"),
            (2.71, "2.71"),
            (f64::INFINITY, "inf"),
        ];
        for (f, want) in cases {
            assert_eq!(py_float_repr(f), want, "{f:e}");
        }
    }

    #[test]
    fn str_repr_quotes_like_python() {
        let mut s = String::new();
        py_str_repr("it's", &mut s);
        assert_eq!(s, "\"it's\"");
        s.clear();
        py_str_repr("a'b\"c\n\u{1}é", &mut s);
        assert_eq!(s, "'a\\'b\"c\\n\\x01é'");
    }

    #[test]
    fn json_escapes_like_python() {
        let mut s = String::new();
        json_str("a\"\\\n\u{1f}é😀\u{7f}", false, &mut s);
        assert_eq!(s, "\"a\\\"\\\\\\n\\u001fé😀\u{7f}\"");
        s.clear();
        json_str("é😀", true, &mut s);
        assert_eq!(s, "\"\\u00e9\\ud83d\\ude00\"");
    }

    #[test]
    fn repr_of_nested_data() {
        let v = crate::template::json_to_value(
            &serde_json::json!({"a": [1, 2.5, true, null, "x"], "b": {}}),
            0,
        )
        .unwrap();
        let mut s = String::new();
        py_str(&v, &mut s, &free).unwrap();
        assert_eq!(s, "{'a': [1, 2.5, True, None, 'x'], 'b': {}}");
    }

    #[test]
    fn dumps_with_indent_and_sort() {
        let v =
            crate::template::json_to_value(&serde_json::json!({"b": [1, {"c": []}], "a": "é"}), 0)
                .unwrap();
        let mut s = String::new();
        json_dumps(&v, &JsonOptions::default(), &mut s, 0, &free).unwrap();
        assert_eq!(s, r#"{"b": [1, {"c": []}], "a": "é"}"#);
        let opts = JsonOptions {
            indent: Some("  ".into()),
            item_sep: ",".into(),
            sort_keys: true,
            ..JsonOptions::default()
        };
        s.clear();
        json_dumps(&v, &opts, &mut s, 0, &free).unwrap();
        assert_eq!(
            s,
            "{\n  \"a\": \"é\",\n  \"b\": [\n    1,\n    {\n      \"c\": []\n    }\n  ]\n}"
        );
    }
}
