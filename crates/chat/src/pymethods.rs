//! Python `str` / `dict` / `list` methods that chat templates call
//! (`.strip()`, `.split()`, `.startswith()`, `.get()`, ...).
//!
//! Jinja2 runs these as real Python methods; MiniJinja has none, so they are
//! written here following the Python documentation of each method
//! (docs.python.org, "String Methods"). Methods not listed fall back to
//! `minijinja_contrib::pycompat`.
//!
//! Deliberately absent: every method that mutates (`append`, `pop`,
//! `update`, `extend`, `insert`, `remove`, `clear`, `setdefault`, ...).
//! transformers renders with Jinja2's `ImmutableSandboxedEnvironment`, which
//! refuses them with a `SecurityError`; here they are unknown methods and
//! fail the render the same way.

use std::sync::Arc;

use minijinja::value::{from_args, Enumerator, Object, ObjectRepr, ValueKind};
use minijinja::{Error, ErrorKind, State, Value};

/// Python's `str.isspace()` set: Rust's `White_Space` plus the four ASCII
/// information separators U+001C..U+001F, which Python also treats as
/// whitespace (they have bidi class B/S).
pub(crate) fn py_is_space(c: char) -> bool {
    c.is_whitespace() || ('\u{1c}'..='\u{1f}').contains(&c)
}

/// `str.strip([chars])` and friends. `chars=None` means whitespace.
pub(crate) fn py_strip<'a>(s: &'a str, chars: Option<&str>, left: bool, right: bool) -> &'a str {
    let matcher = |c: char| match chars {
        Some(set) => set.contains(c),
        None => py_is_space(c),
    };
    let mut out = s;
    if left {
        out = out.trim_start_matches(matcher);
    }
    if right {
        out = out.trim_end_matches(matcher);
    }
    out
}

/// `str.split(sep=None, maxsplit=-1)`.
pub(crate) fn py_split(s: &str, sep: Option<&str>, maxsplit: i64) -> Result<Vec<String>, Error> {
    let mut out = Vec::new();
    match sep {
        Some("") => return Err(Error::new(ErrorKind::InvalidOperation, "empty separator")),
        Some(sep) => {
            if maxsplit < 0 {
                out.extend(s.split(sep).map(str::to_string));
            } else {
                out.extend(s.splitn(maxsplit as usize + 1, sep).map(str::to_string));
            }
        }
        None => {
            // Runs of whitespace separate; leading/trailing whitespace yields
            // nothing; after `maxsplit` splits the rest is kept with its
            // leading whitespace removed.
            let mut rest = py_strip(s, None, true, false);
            let mut splits = 0i64;
            while !rest.is_empty() {
                if maxsplit >= 0 && splits >= maxsplit {
                    out.push(rest.to_string());
                    break;
                }
                match rest.char_indices().find(|(_, c)| py_is_space(*c)) {
                    Some((i, _)) => {
                        out.push(rest[..i].to_string());
                        rest = py_strip(&rest[i..], None, true, false);
                        splits += 1;
                    }
                    None => {
                        out.push(rest.to_string());
                        break;
                    }
                }
            }
        }
    }
    Ok(out)
}

/// `str.rsplit(sep=None, maxsplit=-1)`.
pub(crate) fn py_rsplit(s: &str, sep: Option<&str>, maxsplit: i64) -> Result<Vec<String>, Error> {
    let mut out = Vec::new();
    match sep {
        Some("") => return Err(Error::new(ErrorKind::InvalidOperation, "empty separator")),
        Some(sep) => {
            if maxsplit < 0 {
                out.extend(s.rsplit(sep).map(str::to_string));
            } else {
                out.extend(s.rsplitn(maxsplit as usize + 1, sep).map(str::to_string));
            }
        }
        None => {
            let mut rest = py_strip(s, None, false, true);
            let mut splits = 0i64;
            while !rest.is_empty() {
                if maxsplit >= 0 && splits >= maxsplit {
                    out.push(rest.to_string());
                    break;
                }
                match rest.char_indices().rev().find(|(_, c)| py_is_space(*c)) {
                    Some((i, c)) => {
                        out.push(rest[i + c.len_utf8()..].to_string());
                        rest = py_strip(&rest[..i], None, false, true);
                        splits += 1;
                    }
                    None => {
                        out.push(rest.to_string());
                        break;
                    }
                }
            }
        }
    }
    out.reverse();
    Ok(out)
}

/// Python's line boundaries for `str.splitlines()`.
fn is_line_break(c: char) -> bool {
    matches!(
        c,
        '\n' | '\r'
            | '\u{b}'
            | '\u{c}'
            | '\u{1c}'
            | '\u{1d}'
            | '\u{1e}'
            | '\u{85}'
            | '\u{2028}'
            | '\u{2029}'
    )
}

/// `str.splitlines(keepends=False)`.
pub(crate) fn py_splitlines(s: &str, keepends: bool) -> Vec<String> {
    let mut out = Vec::new();
    let mut start = 0;
    let mut iter = s.char_indices().peekable();
    while let Some((i, c)) = iter.next() {
        if is_line_break(c) {
            let mut end = i + c.len_utf8();
            if c == '\r' {
                if let Some(&(j, '\n')) = iter.peek() {
                    end = j + 1;
                    iter.next();
                }
            }
            out.push(
                if keepends {
                    &s[start..end]
                } else {
                    &s[start..i]
                }
                .to_string(),
            );
            start = end;
        }
    }
    if start < s.len() {
        out.push(s[start..].to_string());
    }
    out
}

/// `str.title()`: a cased character following an uncased one is
/// upper-cased, every other cased character lower-cased.
pub(crate) fn py_title(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    let mut prev_cased = false;
    for c in s.chars() {
        let cased = c.is_uppercase() || c.is_lowercase();
        if prev_cased {
            out.extend(c.to_lowercase());
        } else {
            out.extend(c.to_uppercase());
        }
        prev_cased = cased;
    }
    out
}

/// `str.capitalize()`: first character upper-cased, the rest lower-cased.
fn py_capitalize(s: &str) -> String {
    let mut chars = s.chars();
    match chars.next() {
        Some(first) => first
            .to_uppercase()
            .chain(chars.flat_map(char::to_lowercase))
            .collect(),
        None => String::new(),
    }
}

/// Character index of a byte offset (Python indexes code points).
fn char_index(s: &str, byte: usize) -> i64 {
    s[..byte].chars().count() as i64
}

/// Which view of a dict `.items()`, `.keys()` or `.values()` returned.
#[derive(Debug, Clone, Copy)]
pub(crate) enum ViewKind {
    Items,
    Keys,
    Values,
}

/// Python's dict views: iterable more than once, sized, truthy when not
/// empty, printed as `dict_items([...])`, and not JSON-serializable.
#[derive(Debug)]
pub(crate) struct DictView {
    kind: ViewKind,
    items: Vec<Value>,
}

impl DictView {
    pub(crate) fn kind_name(&self) -> &'static str {
        match self.kind {
            ViewKind::Items => "dict_items",
            ViewKind::Keys => "dict_keys",
            ViewKind::Values => "dict_values",
        }
    }
}

impl Object for DictView {
    fn repr(self: &Arc<Self>) -> ObjectRepr {
        ObjectRepr::Iterable
    }
    fn enumerate(self: &Arc<Self>) -> Enumerator {
        Enumerator::Values(self.items.clone())
    }
    fn enumerator_len(self: &Arc<Self>) -> Option<usize> {
        Some(self.items.len())
    }
}

fn dict_view(state: &State, map: &Value, kind: ViewKind, args: &[Value]) -> Result<Value, Error> {
    let () = from_args(args)?;
    let mut items = Vec::new();
    for key in map.try_iter()? {
        state.consume_fuel(1)?;
        items.push(match kind {
            ViewKind::Keys => key,
            ViewKind::Values => map.get_item(&key)?,
            ViewKind::Items => {
                let v = map.get_item(&key)?;
                Value::from(minijinja::value::Tuple::from([key, v]))
            }
        });
    }
    Ok(Value::from_object(DictView { kind, items }))
}

/// Prefix/suffix argument: a string or a tuple of strings (Python refuses
/// lists).
fn affix_matches(
    state: &State,
    arg: &Value,
    test: impl Fn(&str) -> bool,
    what: &str,
) -> Result<bool, Error> {
    if let Some(p) = arg.as_str() {
        return Ok(test(p));
    }
    if arg.is_tuple() {
        for item in arg.try_iter()? {
            state.consume_fuel(1)?;
            match item.as_str() {
                Some(p) if test(p) => return Ok(true),
                Some(_) => {}
                None => {
                    return Err(Error::new(
                        ErrorKind::InvalidOperation,
                        format!(
                            "tuple for {what} must only contain str, not {}",
                            item.kind()
                        ),
                    ))
                }
            }
        }
        return Ok(false);
    }
    Err(Error::new(
        ErrorKind::InvalidOperation,
        format!(
            "{what} first arg must be str or a tuple of str, not {}",
            arg.kind()
        ),
    ))
}

/// Charges fuel for a result of `n` bytes before creating it, one fuel per
/// 64 bytes like MiniJinja's own accounting (`Environment::set_fuel`).
fn charge(state: &State, n: usize) -> Result<(), Error> {
    state.consume_fuel((n / 64) as u64)
}

fn list_of(items: Vec<String>) -> Value {
    Value::from(items.into_iter().map(Value::from).collect::<Vec<_>>())
}

fn string_method(
    state: &mut State,
    s: &str,
    method: &str,
    args: &[Value],
) -> Option<Result<Value, Error>> {
    let r = (|| -> Result<Value, Error> {
        match method {
            "strip" | "lstrip" | "rstrip" => {
                let (chars,): (Option<Value>,) = from_args(args)?;
                let chars = match &chars {
                    Some(v) if v.is_none() => None,
                    Some(v) => Some(v.as_str().ok_or_else(|| {
                        Error::new(
                            ErrorKind::InvalidOperation,
                            format!("{method} arg must be None or str"),
                        )
                    })?),
                    None => None,
                };
                let (l, r) = match method {
                    "strip" => (true, true),
                    "lstrip" => (true, false),
                    _ => (false, true),
                };
                Ok(Value::from(py_strip(s, chars, l, r)))
            }
            "split" | "rsplit" => {
                let (sep, maxsplit): (Option<Value>, Option<i64>) = from_args(args)?;
                let sep = match &sep {
                    Some(v) if v.is_none() => None,
                    Some(v) => Some(v.as_str().ok_or_else(|| {
                        Error::new(ErrorKind::InvalidOperation, "must be str or None")
                    })?),
                    None => None,
                };
                charge(state, s.len())?;
                let parts = if method == "split" {
                    py_split(s, sep, maxsplit.unwrap_or(-1))?
                } else {
                    py_rsplit(s, sep, maxsplit.unwrap_or(-1))?
                };
                state.consume_fuel(parts.len() as u64)?;
                Ok(list_of(parts))
            }
            "splitlines" => {
                let (keepends,): (Option<bool>,) = from_args(args)?;
                charge(state, s.len())?;
                Ok(list_of(py_splitlines(s, keepends.unwrap_or(false))))
            }
            "startswith" => {
                let (prefix,): (Value,) = from_args(args)?;
                Ok(Value::from(affix_matches(
                    state,
                    &prefix,
                    |p| s.starts_with(p),
                    "startswith",
                )?))
            }
            "endswith" => {
                let (suffix,): (Value,) = from_args(args)?;
                Ok(Value::from(affix_matches(
                    state,
                    &suffix,
                    |p| s.ends_with(p),
                    "endswith",
                )?))
            }
            "upper" => {
                let () = from_args(args)?;
                Ok(Value::from(s.to_uppercase()))
            }
            "lower" => {
                let () = from_args(args)?;
                Ok(Value::from(s.to_lowercase()))
            }
            "title" => {
                let () = from_args(args)?;
                Ok(Value::from(py_title(s)))
            }
            "capitalize" => {
                let () = from_args(args)?;
                Ok(Value::from(py_capitalize(s)))
            }
            "replace" => {
                let (old, new, count): (&str, &str, Option<i64>) = from_args(args)?;
                let count = count.unwrap_or(-1);
                // Pay for the largest possible result before building it.
                let matches = if old.is_empty() {
                    s.chars().count() + 1
                } else {
                    s.matches(old).count()
                };
                let matches = if count < 0 {
                    matches
                } else {
                    matches.min(count as usize)
                };
                charge(
                    state,
                    s.len().saturating_add(matches.saturating_mul(new.len())),
                )?;
                Ok(Value::from(if count < 0 {
                    s.replace(old, new)
                } else {
                    s.replacen(old, new, count as usize)
                }))
            }
            "find" | "index" => {
                let (what,): (&str,) = from_args(args)?;
                match s.find(what) {
                    Some(i) => Ok(Value::from(char_index(s, i))),
                    None if method == "find" => Ok(Value::from(-1)),
                    None => Err(Error::new(
                        ErrorKind::InvalidOperation,
                        "substring not found",
                    )),
                }
            }
            "rfind" | "rindex" => {
                let (what,): (&str,) = from_args(args)?;
                match s.rfind(what) {
                    Some(i) => Ok(Value::from(char_index(s, i))),
                    None if method == "rfind" => Ok(Value::from(-1)),
                    None => Err(Error::new(
                        ErrorKind::InvalidOperation,
                        "substring not found",
                    )),
                }
            }
            "count" => {
                let (what,): (&str,) = from_args(args)?;
                Ok(Value::from(if what.is_empty() {
                    s.chars().count() as i64 + 1
                } else {
                    s.matches(what).count() as i64
                }))
            }
            "join" => {
                let (items,): (Value,) = from_args(args)?;
                let mut out = String::new();
                for (i, item) in items.try_iter()?.enumerate() {
                    let Some(piece) = item.as_str() else {
                        return Err(Error::new(
                            ErrorKind::InvalidOperation,
                            format!(
                                "sequence item {i}: expected str instance, {} found",
                                item.kind()
                            ),
                        ));
                    };
                    if i > 0 {
                        out.push_str(s);
                    }
                    out.push_str(piece);
                    charge(state, s.len() + piece.len())?;
                }
                Ok(Value::from(out))
            }
            _ => Err(Error::from(ErrorKind::UnknownMethod)),
        }
    })();
    match r {
        Err(e) if e.kind() == ErrorKind::UnknownMethod => None,
        other => Some(other),
    }
}

/// The unknown-method callback installed on the sandbox environment.
pub(crate) fn call_method(
    state: &mut State,
    value: &Value,
    method: &str,
    args: &[Value],
) -> Result<Value, Error> {
    if let Some(s) = value.as_str() {
        if let Some(r) = string_method(state, s, method, args) {
            return r;
        }
    }
    if value.kind() == ValueKind::Map {
        match method {
            "items" => return dict_view(state, value, ViewKind::Items, args),
            "keys" => return dict_view(state, value, ViewKind::Keys, args),
            "values" => return dict_view(state, value, ViewKind::Values, args),
            _ => {}
        }
    }
    if value.kind() == ValueKind::Map && method == "get" {
        // `dict.get(key, default=None)`; MiniJinja maps also answer `get`
        // for objects such as namespaces, which Python does not — keep to
        // plain maps.
        let (key, default): (Value, Option<Value>) = from_args(args)?;
        let got = value.get_item(&key)?;
        return Ok(if got.is_undefined() {
            default.unwrap_or(Value::from(()))
        } else {
            got
        });
    }
    minijinja_contrib::pycompat::unknown_method_callback(state, value, method, args)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn v(x: &[&str]) -> Vec<String> {
        x.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn split_matches_python() {
        assert_eq!(
            py_split("  a  b c ", None, -1).unwrap(),
            v(&["a", "b", "c"])
        );
        assert_eq!(py_split("  a  b c ", None, 1).unwrap(), v(&["a", "b c "]));
        assert_eq!(py_split("a,,b", Some(","), -1).unwrap(), v(&["a", "", "b"]));
        assert_eq!(py_split("a,b,c", Some(","), 1).unwrap(), v(&["a", "b,c"]));
        assert_eq!(py_split("", None, -1).unwrap(), Vec::<String>::new());
        assert_eq!(py_split("", Some(","), -1).unwrap(), v(&[""]));
        assert!(py_split("x", Some(""), -1).is_err());
        assert_eq!(py_rsplit("a b  c", None, 1).unwrap(), v(&["a b", "c"]));
        assert_eq!(py_rsplit("a,b,c", Some(","), 1).unwrap(), v(&["a,b", "c"]));
    }

    #[test]
    fn strip_and_lines_match_python() {
        assert_eq!(py_strip("\u{1c} x \n", None, true, true), "x");
        assert_eq!(py_strip("xxhixx", Some("x"), true, false), "hixx");
        assert_eq!(
            py_splitlines("a\r\nb\rc\n\nd", false),
            v(&["a", "b", "c", "", "d"])
        );
        assert_eq!(py_splitlines("a\nb\n", true), v(&["a\n", "b\n"]));
        assert_eq!(py_title("hello wORLD's 2nd"), "Hello World'S 2Nd");
        assert_eq!(py_capitalize("hELLO"), "Hello");
    }
}
