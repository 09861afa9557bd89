//! The MiniJinja environment a chat template runs in.
//!
//! It mirrors what transformers builds in `_cached_compile_jinja_template`
//! (`utils/chat_template_utils.py`, transformers 5.x):
//! `ImmutableSandboxedEnvironment(trim_blocks=True, lstrip_blocks=True,
//! extensions=[AssistantTracker, loopcontrols])` plus the `tojson` filter and
//! the `raise_exception`, `strftime_now`, `dict` and `namespace` globals.
//!
//! Sandboxing: there is no loader (MiniJinja is built without `loader` and
//! `multi_template`), so `include` / `import` / `extends` cannot reach a
//! file; the only values a template sees are the JSON data of the request
//! and the functions registered here; fuel bounds instructions and the bytes
//! a render can create; the recursion limit bounds macro depth; the writer
//! bounds output. MiniJinja has no attribute protocol into host objects, so
//! `__class__`-style lookups are plain missing keys.
//!
//! Deliberately absent: the `{% generation %}` tag (assistant-token masks
//! are a training feature), the `debug()` global, and Jinja2's `cycler`,
//! `joiner` and `lipsum` globals (unused by chat templates).

use std::borrow::Cow;
use std::sync::Arc;

use minijinja::value::{Kwargs, Object, ObjectRepr, Rest, ValueKind, ValueOrKwargs};
use minijinja::{AutoEscape, Environment, Error, ErrorKind, Output, State, Value};

use crate::clock::CivilTime;
use crate::pyfmt::{json_dumps, py_str, JsonOptions};
use crate::pymethods::{call_method, py_strip};
use crate::TemplateLimits;

/// Name of the one template held by a sandbox environment.
pub(crate) const TEMPLATE_NAME: &str = "chat_template";

/// Context key carrying the request's clock to `strftime_now`. It contains
/// a space, so no template expression can name it.
pub(crate) const CLOCK_KEY: &str = "hearth clock";

/// Marker error attached to `raise_exception` failures so the caller can
/// tell them from engine errors.
#[derive(Debug)]
pub(crate) struct Raised(pub String);

impl std::fmt::Display for Raised {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}
impl std::error::Error for Raised {}

/// Python `str(v)`, paid for with the render's fuel.
fn py_string(state: &State, v: &Value) -> Result<String, Error> {
    let mut s = String::new();
    py_str(v, &mut s, &|n| state.consume_fuel(n))?;
    Ok(s)
}

/// transformers: `raise jinja2.exceptions.TemplateError(message)`.
fn raise_exception(state: &State, message: Value) -> Result<Value, Error> {
    let msg = py_string(state, &message)?;
    Err(Error::new(ErrorKind::InvalidOperation, msg.clone()).with_source(Raised(msg)))
}

/// transformers: `datetime.now().strftime(format)`, with the clock taken
/// from the request.
fn strftime_now(state: &State, format: &str) -> Result<String, Error> {
    let now = state
        .lookup(CLOCK_KEY)
        .and_then(|v| {
            let f = |k: &str| v.get_attr(k).ok().and_then(|x| i64::try_from(x).ok());
            CivilTime::new(
                f("year")? as i32,
                f("month")? as u8,
                f("day")? as u8,
                f("hour")? as u8,
                f("minute")? as u8,
                f("second")? as u8,
            )
        })
        .unwrap_or_else(CivilTime::now_utc);
    state.consume_fuel((format.len() / 8) as u64)?;
    Ok(now.strftime(format))
}

/// transformers' `tojson(x, ensure_ascii=False, indent=None,
/// separators=None, sort_keys=False)` = `json.dumps` with those arguments.
fn tojson(state: &State, value: &Value, args: Rest<Value>, kwargs: Kwargs) -> Result<Value, Error> {
    let names = ["ensure_ascii", "indent", "separators", "sort_keys"];
    if args.0.len() > names.len() {
        return Err(Error::from(ErrorKind::TooManyArguments));
    }
    let mut slots: [Option<Value>; 4] = Default::default();
    for (i, a) in args.0.iter().enumerate() {
        slots[i] = Some(a.clone());
    }
    for (i, name) in names.iter().enumerate() {
        if let Some(v) = kwargs.get::<Option<Value>>(name)? {
            if slots[i].is_some() {
                return Err(Error::new(
                    ErrorKind::InvalidOperation,
                    format!("tojson() got multiple values for argument '{name}'"),
                ));
            }
            slots[i] = Some(v);
        }
    }
    kwargs.assert_all_used()?;
    let present = |v: &Option<Value>| {
        v.as_ref()
            .filter(|v| !v.is_none() && !v.is_undefined())
            .cloned()
    };
    let mut opts = JsonOptions {
        ensure_ascii: present(&slots[0]).is_some_and(|v| v.is_true()),
        sort_keys: present(&slots[3]).is_some_and(|v| v.is_true()),
        ..JsonOptions::default()
    };
    if let Some(ind) = present(&slots[1]) {
        // json.dumps: an int indent means that many spaces, a str is used as is.
        opts.indent = Some(match ind.as_str() {
            Some(s) => s.to_string(),
            None => {
                let n = i64::try_from(ind.clone()).map_err(|_| {
                    Error::new(
                        ErrorKind::InvalidOperation,
                        "tojson indent must be an int or a str",
                    )
                })?;
                " ".repeat(n.clamp(0, 64) as usize)
            }
        });
        opts.item_sep = ",".into();
    }
    if let Some(seps) = present(&slots[2]) {
        let parts: Vec<Value> = seps.try_iter()?.collect();
        match (
            parts.first().and_then(|v| v.as_str()),
            parts.get(1).and_then(|v| v.as_str()),
        ) {
            (Some(item), Some(key)) if parts.len() == 2 => {
                opts.item_sep = item.to_string();
                opts.key_sep = key.to_string();
            }
            _ => {
                return Err(Error::new(
                    ErrorKind::InvalidOperation,
                    "tojson separators must be a pair of strings",
                ))
            }
        }
    }
    let mut out = String::new();
    json_dumps(value, &opts, &mut out, 0, &|n| state.consume_fuel(n))?;
    Ok(Value::from(out))
}

/// Jinja2 `string` filter: `str(value)`.
fn string_filter(state: &State, value: &Value) -> Result<Value, Error> {
    if value.kind() == ValueKind::String {
        return Ok(value.clone());
    }
    Ok(Value::from(py_string(state, value)?))
}

/// Jinja2 `trim(value, chars=None)`: `str(value).strip(chars)`.
fn trim_filter(state: &State, value: &Value, chars: Option<Value>) -> Result<Value, Error> {
    let s = py_string(state, value)?;
    let chars = chars.filter(|c| !c.is_none());
    let set = match &chars {
        Some(c) => Some(c.as_str().ok_or_else(|| {
            Error::new(ErrorKind::InvalidOperation, "strip arg must be None or str")
        })?),
        None => None,
    };
    Ok(Value::from(py_strip(&s, set, true, true)))
}

/// Follows a Jinja2 attribute path (`"a.b.0"`) like `make_attrgetter`.
fn get_path(value: &Value, path: &str) -> Result<Value, Error> {
    let mut cur = value.clone();
    for part in path.split('.') {
        cur = match part.parse::<i64>() {
            Ok(i) => cur.get_item(&Value::from(i))?,
            Err(_) => cur.get_attr(part)?,
        };
    }
    Ok(cur)
}

/// Jinja2 `join(value, d='', attribute=None)`: `d.join(map(str, value))`.
fn join_filter(
    state: &State,
    value: &Value,
    d: Option<Value>,
    kwargs: Kwargs,
) -> Result<Value, Error> {
    let attribute: Option<String> = kwargs.get("attribute")?;
    kwargs.assert_all_used()?;
    let sep = match &d {
        Some(d) => py_string(state, d)?,
        None => String::new(),
    };
    if value.is_undefined() {
        return Ok(Value::from(""));
    }
    let mut out = String::new();
    for (i, item) in value.try_iter()?.enumerate() {
        if i > 0 {
            out.push_str(&sep);
        }
        let item = match &attribute {
            Some(path) => get_path(&item, path)?,
            None => item,
        };
        py_str(&item, &mut out, &|n| state.consume_fuel(n))?;
        state.consume_fuel(1 + (sep.len() / 64) as u64)?;
    }
    Ok(Value::from(out))
}

/// Jinja2 `indent(s, width=4, first=False, blank=False)`.
fn indent_filter(
    state: &State,
    value: &Value,
    args: Rest<Value>,
    kwargs: Kwargs,
) -> Result<Value, Error> {
    if args.0.len() > 3 {
        return Err(Error::from(ErrorKind::TooManyArguments));
    }
    let width = match args.0.first() {
        Some(w) => Some(w.clone()),
        None => kwargs.get::<Option<Value>>("width")?,
    };
    let flag = |i: usize, name: &str| -> Result<bool, Error> {
        Ok(match args.0.get(i) {
            Some(v) => v.is_true(),
            None => kwargs.get::<Option<bool>>(name)?.unwrap_or(false),
        })
    };
    let first = flag(1, "first")?;
    let blank = flag(2, "blank")?;
    kwargs.assert_all_used()?;
    let indention = match &width {
        None => "    ".to_string(),
        Some(w) => match w.as_str() {
            Some(s) => s.to_string(),
            None => {
                let n = i64::try_from(w.clone()).map_err(|_| {
                    Error::new(
                        ErrorKind::InvalidOperation,
                        "indent width must be an int or a str",
                    )
                })?;
                " ".repeat(n.clamp(0, 256) as usize)
            }
        },
    };
    // Jinja2 appends a newline before `splitlines()` so a trailing newline
    // survives, then joins with "\n".
    let mut s = py_string(state, value)?;
    s.push('\n');
    // Every line gains the indentation: pay for the result up front.
    let lines = s.matches('\n').count();
    state.consume_fuel((lines.saturating_mul(indention.len()) / 64) as u64)?;
    let lines = crate::pymethods::py_splitlines(&s, false);
    let mut rv = String::new();
    if blank {
        rv = lines.join(&format!("\n{indention}"));
    } else {
        let mut it = lines.iter();
        if let Some(head) = it.next() {
            rv.push_str(head);
        }
        let rest: Vec<&String> = it.collect();
        if !rest.is_empty() {
            rv.push('\n');
            for (i, line) in rest.iter().enumerate() {
                if i > 0 {
                    rv.push('\n');
                }
                if !line.is_empty() {
                    rv.push_str(&indention);
                }
                rv.push_str(line);
            }
        }
    }
    if first {
        rv.insert_str(0, &indention);
    }
    Ok(Value::from(rv))
}

/// Python's `None` as transformers passes it for absent `tools` /
/// `documents`. MiniJinja's own `none` iterates as an empty sequence, while
/// Python raises `TypeError: 'NoneType' object is not iterable`; templates
/// that loop over `tools` unguarded fail in transformers when no tools are
/// given, and must fail here too. Everything else behaves as `None`: falsy,
/// `is none`, prints `None`, `tojson` gives `null`, attribute and item
/// lookups are undefined (Jinja2's `getattr` / `getitem` on None).
#[derive(Debug)]
pub(crate) struct PyNone;

impl Object for PyNone {
    fn repr(self: &Arc<Self>) -> ObjectRepr {
        ObjectRepr::Plain
    }
    fn get_value(self: &Arc<Self>, _key: &Value) -> Option<Value> {
        None
    }
    fn is_true(self: &Arc<Self>) -> bool {
        false
    }
    fn render(self: &Arc<Self>, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("None")
    }
}

pub(crate) fn is_py_none(v: &Value) -> bool {
    v.is_none() || v.downcast_object_ref::<PyNone>().is_some()
}

fn is_none(v: &Value) -> bool {
    is_py_none(v)
}

/// Jinja2 `test_iterable`: `iter(value)` succeeds. Unlike MiniJinja, None
/// is not iterable.
fn is_iterable(v: &Value) -> bool {
    !is_py_none(v) && v.try_iter().is_ok()
}

/// Jinja2's `map`, `select`, `reject`, `selectattr`, `rejectattr`,
/// `unique`, `items` and (for non-strings) `reverse` return Python
/// iterators: always truthy, printed as `<generator object ...>`, and not
/// JSON-serializable (`tojson` fails). MiniJinja returns lists; this object
/// restores those three traits. Unlike a Python generator it can be
/// iterated twice and has a length, so `loop.last` / `loop.length` work as
/// Jinja2's loop look-ahead makes them work.
#[derive(Debug)]
pub(crate) struct PyIter(Vec<Value>);

impl Object for PyIter {
    fn repr(self: &Arc<Self>) -> ObjectRepr {
        ObjectRepr::Iterable
    }
    fn enumerate(self: &Arc<Self>) -> minijinja::value::Enumerator {
        minijinja::value::Enumerator::Values(self.0.clone())
    }
    fn enumerator_len(self: &Arc<Self>) -> Option<usize> {
        Some(self.0.len())
    }
    fn is_true(self: &Arc<Self>) -> bool {
        true
    }
}

fn generator(items: Vec<Value>) -> Value {
    Value::from_object(PyIter(items))
}

fn collect(state: &State, v: Value) -> Result<Vec<Value>, Error> {
    let mut out = Vec::new();
    for item in v.try_iter()? {
        state.consume_fuel(1)?;
        out.push(item);
    }
    Ok(out)
}

fn map_filter(state: &mut State, value: Value, args: Rest<ValueOrKwargs>) -> Result<Value, Error> {
    if !value.is_true() {
        return Ok(generator(Vec::new()));
    }
    minijinja::filters::map(state, value, args).map(generator)
}
fn select_filter(
    state: &mut State,
    value: Value,
    test: Option<Cow<'_, str>>,
    args: Rest<ValueOrKwargs>,
) -> Result<Value, Error> {
    if !value.is_true() {
        return Ok(generator(Vec::new()));
    }
    minijinja::filters::select(state, value, test, args).map(generator)
}
fn reject_filter(
    state: &mut State,
    value: Value,
    test: Option<Cow<'_, str>>,
    args: Rest<ValueOrKwargs>,
) -> Result<Value, Error> {
    if !value.is_true() {
        return Ok(generator(Vec::new()));
    }
    minijinja::filters::reject(state, value, test, args).map(generator)
}
fn selectattr_filter(
    state: &mut State,
    value: Value,
    attr: Cow<'_, str>,
    test: Option<Cow<'_, str>>,
    args: Rest<ValueOrKwargs>,
) -> Result<Value, Error> {
    if !value.is_true() {
        return Ok(generator(Vec::new()));
    }
    minijinja::filters::selectattr(state, value, attr, test, args).map(generator)
}
fn rejectattr_filter(
    state: &mut State,
    value: Value,
    attr: Cow<'_, str>,
    test: Option<Cow<'_, str>>,
    args: Rest<ValueOrKwargs>,
) -> Result<Value, Error> {
    if !value.is_true() {
        return Ok(generator(Vec::new()));
    }
    minijinja::filters::rejectattr(state, value, attr, test, args).map(generator)
}
fn unique_filter(state: &State, value: Value, kwargs: Kwargs) -> Result<Value, Error> {
    let v = minijinja::filters::unique(state, value, kwargs)?;
    Ok(generator(collect(state, v)?))
}
/// Jinja2 `do_items`: Undefined gives nothing, a non-mapping is a
/// `TypeError`.
fn items_filter(state: &State, value: &Value) -> Result<Value, Error> {
    if value.is_undefined() {
        return Ok(generator(Vec::new()));
    }
    if value.kind() != ValueKind::Map {
        return Err(Error::new(
            ErrorKind::InvalidOperation,
            "Can only get item pairs from a mapping.",
        ));
    }
    let mut out = Vec::new();
    for key in value.try_iter()? {
        state.consume_fuel(1)?;
        let item = value.get_item(&key)?;
        out.push(Value::from(minijinja::value::Tuple::from([key, item])));
    }
    Ok(generator(out))
}
/// Jinja2 `do_reverse`: a reversed string, otherwise `reversed(value)`.
fn reverse_filter(state: &State, value: &Value) -> Result<Value, Error> {
    if value.kind() == ValueKind::String {
        return Ok(Value::from(
            value
                .as_str()
                .unwrap_or_default()
                .chars()
                .rev()
                .collect::<String>(),
        ));
    }
    if is_py_none(value) || value.is_undefined() {
        return Err(Error::new(
            ErrorKind::InvalidOperation,
            "argument to reversed() must be a sequence",
        ));
    }
    let mut items = collect(state, value.clone())?;
    items.reverse();
    Ok(generator(items))
}

/// Jinja2 `length` / `count`: Python `len()`, which generators lack.
fn length_filter(v: &Value) -> Result<Value, Error> {
    if v.downcast_object_ref::<PyIter>().is_some() {
        return Err(Error::new(
            ErrorKind::InvalidOperation,
            "object of type 'generator' has no len()",
        ));
    }
    if is_py_none(v) && !v.is_none() {
        return Err(Error::new(
            ErrorKind::InvalidOperation,
            "object of type 'NoneType' has no len()",
        ));
    }
    minijinja::filters::length(v).map(Value::from)
}

/// Python `float(str)`: surrounding whitespace, `_` between digits,
/// `inf` / `nan` in any case.
fn parse_py_float(s: &str) -> Option<f64> {
    let t = py_strip(s, None, true, true);
    let lower = t.to_ascii_lowercase();
    let unsigned = lower.trim_start_matches(['+', '-']);
    if matches!(unsigned, "inf" | "infinity" | "nan") {
        return lower.parse::<f64>().ok();
    }
    if t.starts_with('_') || t.ends_with('_') || t.contains("__") {
        return None;
    }
    let cleaned: String = t.chars().filter(|c| *c != '_').collect();
    if cleaned.is_empty()
        || !cleaned
            .chars()
            .all(|c| c.is_ascii_digit() || "+-.eE".contains(c))
    {
        return None;
    }
    cleaned.parse::<f64>().ok()
}

/// Jinja2 `float(value, default=0.0)`: `float(value)`, or the default when
/// Python's `float()` raises.
fn float_filter(value: &Value, default: Option<Value>, kwargs: Kwargs) -> Result<Value, Error> {
    let default = match default {
        Some(d) => d,
        None => kwargs
            .get::<Option<Value>>("default")?
            .unwrap_or(Value::from(0.0)),
    };
    kwargs.assert_all_used()?;
    let got = match value.kind() {
        ValueKind::Bool => Some(if value.is_true() { 1.0 } else { 0.0 }),
        ValueKind::Number => f64::try_from(value.clone()).ok(),
        ValueKind::String => parse_py_float(value.as_str().unwrap_or_default()),
        _ => None,
    };
    Ok(got.map(Value::from).unwrap_or(default))
}

/// Python `int(str, base)`: whitespace, sign, `_` between digits, and the
/// `0x`/`0o`/`0b` prefixes (required to pick the base when `base` is 0).
fn parse_py_int(s: &str, base: u32) -> Option<i128> {
    let t = py_strip(s, None, true, true);
    let (neg, t) = match t.strip_prefix('-') {
        Some(r) => (true, r),
        None => (false, t.strip_prefix('+').unwrap_or(t)),
    };
    let lower = t.to_ascii_lowercase();
    let prefixed = |p: &str, b: u32| lower.strip_prefix(p).map(|r| (r.to_string(), b));
    let (digits, base) = match base {
        0 => prefixed("0x", 16)
            .or_else(|| prefixed("0o", 8))
            .or_else(|| prefixed("0b", 2))
            .unwrap_or((lower.clone(), 10)),
        16 => prefixed("0x", 16).unwrap_or((lower.clone(), 16)),
        8 => prefixed("0o", 8).unwrap_or((lower.clone(), 8)),
        2 => prefixed("0b", 2).unwrap_or((lower.clone(), 2)),
        b if (2..=36).contains(&b) => (lower.clone(), b),
        _ => return None,
    };
    let digits = digits.strip_prefix('_').unwrap_or(&digits).to_string();
    if digits.is_empty()
        || digits.ends_with('_')
        || digits.contains("__")
        || digits.starts_with(['+', '-'])
    {
        return None;
    }
    let cleaned: String = digits.chars().filter(|c| *c != '_').collect();
    let v = i128::from_str_radix(&cleaned, base).ok()?;
    Some(if neg { -v } else { v })
}

/// Jinja2 `int(value, default=0, base=10)`: `int(value)` (with `base` for
/// strings), else `int(float(value))`, else the default.
fn int_filter(
    value: &Value,
    default: Option<Value>,
    base: Option<u32>,
    kwargs: Kwargs,
) -> Result<Value, Error> {
    let default = match default {
        Some(d) => d,
        None => kwargs
            .get::<Option<Value>>("default")?
            .unwrap_or(Value::from(0)),
    };
    let base = match base {
        Some(b) => b,
        None => kwargs.get::<Option<u32>>("base")?.unwrap_or(10),
    };
    kwargs.assert_all_used()?;
    let from_float = |f: f64| -> Result<Value, Error> {
        if f.is_finite() {
            Ok(Value::from(f.trunc() as i128))
        } else {
            Err(Error::new(
                ErrorKind::InvalidOperation,
                "cannot convert float infinity or NaN to integer",
            ))
        }
    };
    match value.kind() {
        ValueKind::Bool => Ok(Value::from(i64::from(value.is_true()))),
        ValueKind::Number if value.is_integer() => Ok(value.clone()),
        ValueKind::Number => from_float(f64::try_from(value.clone()).unwrap_or(f64::NAN)),
        ValueKind::String => {
            let s = value.as_str().unwrap_or_default();
            if let Some(i) = parse_py_int(s, base) {
                return Ok(Value::from(i));
            }
            match parse_py_float(s) {
                Some(f) => from_float(f),
                None => Ok(default),
            }
        }
        _ => Ok(default),
    }
}

/// MarkupSafe `escape`, which Jinja2's `escape` / `e` filters use: `&`,
/// `<`, `>`, `"` and `'` become entities (`&#34;`, `&#39;` for the quotes);
/// already-safe strings pass unchanged.
fn escape_filter(state: &State, value: &Value) -> Result<Value, Error> {
    if value.is_safe() {
        return Ok(value.clone());
    }
    let s = py_string(state, value)?;
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&#34;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    Ok(Value::from_safe_string(out))
}

/// transformers' `TemplateNamespace`: a namespace refuses
/// underscore-prefixed attribute names (to keep templates away from
/// CPython internals). Checked here for the initial values; later
/// `{% set ns._x = ... %}` assignments cannot be intercepted in MiniJinja.
fn namespace(defaults: Option<ValueOrKwargs>) -> Result<Value, Error> {
    if let Some(d) = &defaults {
        let v = d.clone().into_value();
        if v.kind() == ValueKind::Map {
            for key in v.try_iter()? {
                if key.as_str().is_some_and(|k| k.starts_with('_')) {
                    return Err(Error::new(
                        ErrorKind::InvalidOperation,
                        format!("Chat templates cannot store underscore-prefixed attributes on a namespace, but got {key:?}."),
                    ));
                }
            }
        }
    }
    minijinja::functions::namespace(defaults)
}

/// Jinja2 `test_callable`. The callables a sandboxed template can hold
/// are macros, `caller`, `loop` and the registered functions, all plain
/// objects in MiniJinja.
fn is_callable(v: &Value) -> bool {
    v.kind() == ValueKind::Plain && !is_py_none(v)
}

/// Jinja2 `test_sequence`: anything with `len()` and `__getitem__`, which
/// includes strings, dicts and `Undefined`.
fn is_sequence(v: &Value) -> bool {
    matches!(
        v.kind(),
        ValueKind::Undefined
            | ValueKind::String
            | ValueKind::Seq
            | ValueKind::Map
            | ValueKind::Bytes
    )
}

/// Name of the function the `{% generation %}` block is rewritten to call.
const GENERATION_FN: &str = "__hearth_generation";

/// transformers' `AssistantTracker` extension parses `{% generation %}
/// ... {% endgeneration %}` into a call block whose macro returns
/// `caller()` unchanged (it only records offsets for training masks). The
/// same block in MiniJinja syntax: `{% call f() %}...{% endcall %}` with an
/// `f` that returns `caller()`. Keeping it a call block keeps Jinja2's
/// scoping (a `set` inside does not leak out).
fn generation(state: &mut State, kwargs: Kwargs) -> Result<Value, Error> {
    let caller: Value = kwargs.get("caller")?;
    kwargs.assert_all_used()?;
    caller.call(state, &[])
}

/// Rewrites the `generation` / `endgeneration` tags, keeping their
/// whitespace-control markers and every newline (so line numbers and
/// `trim_blocks` / `lstrip_blocks` behave as for the original tag).
pub(crate) fn rewrite_generation_tags(source: &str) -> String {
    let mut out = String::with_capacity(source.len());
    let mut rest = source;
    while let Some(start) = rest.find("{%") {
        out.push_str(&rest[..start]);
        let tag = &rest[start..];
        let Some(end) = tag.find("%}") else {
            out.push_str(tag);
            return out;
        };
        let inner = &tag[2..end];
        let (lead, body) = match inner.strip_prefix(['-', '+']) {
            Some(b) => (&inner[..1], b),
            None => ("", inner),
        };
        let (body, trail) = match body.strip_suffix(['-', '+']) {
            Some(b) => (b, &body[b.len()..]),
            None => (body, ""),
        };
        let word = body.trim();
        let is_ws = |s: &str| s.chars().all(char::is_whitespace);
        let replacement = match word {
            "generation" => Some(format!("call {GENERATION_FN}()")),
            "endgeneration" => Some("endcall".to_string()),
            _ => None,
        };
        match replacement {
            Some(r) if is_ws(&body.replace(word, "")) => {
                out.push_str("{%");
                out.push_str(lead);
                out.push(' ');
                out.push_str(&r);
                out.push(' ');
                out.push_str(trail);
                out.push_str("%}");
            }
            _ => out.push_str(&tag[..end + 2]),
        }
        rest = &tag[end + 2..];
    }
    out.push_str(rest);
    out
}

/// Jinja2 writes `{{ x }}` as `str(x)`.
fn formatter(out: &mut Output, state: &mut State, value: &Value) -> Result<(), Error> {
    let write_failed = |_| Error::from(ErrorKind::WriteFailure);
    if let Some(s) = value.as_str() {
        return out.write_str(s).map_err(write_failed);
    }
    let s = py_string(state, value)?;
    out.write_str(&s).map_err(write_failed)
}

/// Builds the sandbox environment for one template source.
pub(crate) fn build(
    source: String,
    limits: &TemplateLimits,
) -> Result<Environment<'static>, Error> {
    let mut env = Environment::new();
    env.set_syntax(
        minijinja::syntax::SyntaxConfig::builder()
            .trim_blocks(true)
            .lstrip_blocks(true)
            .build()?,
    );
    env.set_auto_escape_callback(|_| AutoEscape::None);
    env.set_fuel(Some(limits.fuel));
    env.set_recursion_limit(limits.max_recursion);
    env.set_formatter(formatter);
    env.set_unknown_method_callback(call_method);
    env.remove_global("debug");
    env.add_global("namespace", Value::from_function(namespace));
    // MiniJinja extras that Jinja2 lacks: a template using them fails under
    // transformers, so it fails here too.
    for f in ["split", "lines", "bool", "chain", "zip"] {
        env.remove_filter(f);
    }
    for t in ["int", "startingwith", "endingwith", "safe"] {
        env.remove_test(t);
    }
    env.add_global("raise_exception", Value::from_function(raise_exception));
    env.add_global("strftime_now", Value::from_function(strftime_now));
    env.add_global(GENERATION_FN, Value::from_function(generation));
    env.add_filter("tojson", tojson);
    env.add_filter("string", string_filter);
    env.add_filter("trim", trim_filter);
    env.add_filter("join", join_filter);
    env.add_filter("indent", indent_filter);
    env.add_test("sequence", is_sequence);
    env.add_test("iterable", is_iterable);
    env.add_test("callable", is_callable);
    env.add_test("none", is_none);
    env.add_filter("map", map_filter);
    env.add_filter("select", select_filter);
    env.add_filter("reject", reject_filter);
    env.add_filter("selectattr", selectattr_filter);
    env.add_filter("rejectattr", rejectattr_filter);
    env.add_filter("unique", unique_filter);
    env.add_filter("items", items_filter);
    env.add_filter("reverse", reverse_filter);
    env.add_filter("length", length_filter);
    env.add_filter("count", length_filter);
    env.add_filter("float", float_filter);
    env.add_filter("int", int_filter);
    env.add_filter("escape", escape_filter);
    env.add_filter("e", escape_filter);
    env.add_template_owned(TEMPLATE_NAME, rewrite_generation_tags(&source))?;
    Ok(env)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn generation_tags_are_rewritten_in_place() {
        let src = "a{%- generation %}x{% endgeneration -%}\n{%generation%}{%endgeneration%}{% if g %}{% endif %}";
        assert_eq!(
            rewrite_generation_tags(src),
            "a{%- call __hearth_generation() %}x{% endcall -%}\n{% call __hearth_generation() %}{% endcall %}{% if g %}{% endif %}"
        );
    }
}
