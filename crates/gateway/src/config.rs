//! `hearth.toml`: the gateway's configuration.
//!
//! The file is parsed into a TOML table and then walked by hand (as the
//! server walks request JSON), so that every problem is reported with its
//! key path — `cloud.base_url: missing scheme (write http://... or
//! https://...)` — and all problems are reported at once, not the first
//! only. Unknown keys are errors (a typo such as `fail_close` must not
//! silently leave a default in force). See `hearth.example.toml` at the
//! repository root for every key with its default.
//!
//! Secrets never appear in the file: the cloud API key and the server's API
//! keys are named by environment variable (`api_key_env`), and the audit
//! signing key is a path to a 0600 file. A value that looks like a key
//! where a variable name belongs is refused without echoing it.
//!
//! Relative paths are resolved against the configuration file's directory.
//!
//! Two stages: [`Config::parse`] checks the file itself (types, ranges,
//! URLs, names); [`Config::environment_problems`] checks what it points at
//! (environment variables set, files present). `hearth config check`
//! reports the second stage as warnings, `hearth serve` as errors.

use std::collections::BTreeMap;
use std::fmt;
use std::path::{Path, PathBuf};
use std::time::Duration;

use hearth_cloud::{BreakerConfig, RetryPolicy};
use hearth_guard::{Action, EntityType, Policy};
use hearth_ledger::{CloudPrice, UsdPerMTok};
use toml::{Table, Value};

use crate::cascade::{CascadeConfig, Metric};

/// The routing alias when none is configured.
pub const DEFAULT_ALIAS: &str = "hearth/auto";

/// One problem, with the key path it concerns.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ConfigError {
    /// Dotted key path (`cloud.retry.max_attempts`), or empty for the file.
    pub path: String,
    pub message: String,
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.path.is_empty() {
            f.write_str(&self.message)
        } else {
            write!(f, "{}: {}", self.path, self.message)
        }
    }
}

/// Every problem found in a file.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub struct ConfigErrors(pub Vec<ConfigError>);

impl fmt::Display for ConfigErrors {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, e) in self.0.iter().enumerate() {
            if i > 0 {
                f.write_str("\n")?;
            }
            write!(f, "{e}")?;
        }
        Ok(())
    }
}

/// `[server]`.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct ServerSection {
    pub host: Option<String>,
    pub port: Option<u16>,
    /// Names of environment variables, each holding one accepted API key.
    pub api_key_env: Vec<String>,
    pub allow_hosts: Vec<String>,
    pub body_limit: Option<usize>,
    pub header_timeout: Option<Duration>,
    pub body_timeout: Option<Duration>,
    pub max_connections: Option<usize>,
}

/// `[local]`.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct LocalSection {
    pub model: Option<PathBuf>,
    /// The id the local model is served under (`local/<name>`).
    pub name: Option<String>,
    pub threads: Option<usize>,
    pub parallel: Option<usize>,
    pub ctx: Option<usize>,
    pub queue: Option<usize>,
    pub prefill_chunk: Option<usize>,
}

/// `[cloud]`.
#[derive(Clone, Debug, PartialEq)]
pub struct CloudSection {
    pub base_url: String,
    pub model: String,
    /// Name of the environment variable holding the API key.
    pub api_key_env: Option<String>,
    pub deadline: Duration,
    pub connect_timeout: Duration,
    pub first_byte_timeout: Option<Duration>,
    pub retry: RetryPolicy,
    pub breaker: BreakerConfig,
    pub send_stream_options: bool,
    pub max_response_bytes: usize,
    /// PEM files of extra trusted roots.
    pub ca_certs: Vec<PathBuf>,
    /// `[cloud.prices]`.
    pub prices: Option<CloudPrice>,
}

/// Which quality router scores queries.
#[derive(Clone, Debug, PartialEq)]
pub enum RouterKind {
    /// The built-in stand-in ([`crate::router::HeuristicRouter`]).
    Heuristic,
    AlwaysLocal,
    AlwaysCloud,
    /// A trained router file (`hearth-router`).
    File(PathBuf),
}

/// `[router]`.
#[derive(Clone, Debug, PartialEq)]
pub struct RouterSection {
    pub kind: RouterKind,
    /// The model name that asks for routing.
    pub alias: String,
    pub threshold: Option<f32>,
    pub cascade: Option<CascadeConfig>,
}

impl Default for RouterSection {
    fn default() -> Self {
        RouterSection { kind: RouterKind::Heuristic, alias: DEFAULT_ALIAS.into(), threshold: None, cascade: None }
    }
}

/// `[guard]`.
#[derive(Clone, Debug, PartialEq)]
pub struct GuardSection {
    pub policy: Policy,
    pub audit_log: Option<PathBuf>,
    pub audit_key: Option<PathBuf>,
    pub checkpoint_every: u64,
}

impl Default for GuardSection {
    fn default() -> Self {
        GuardSection { policy: Policy::default(), audit_log: None, audit_key: None, checkpoint_every: 100 }
    }
}

/// `[ledger]`.
#[derive(Clone, Debug, PartialEq)]
pub struct LedgerSection {
    pub url: String,
    pub local_per_mtok: UsdPerMTok,
    /// The cloud model the all-cloud counterfactual is priced at (default:
    /// `[cloud].model`).
    pub all_cloud_model: Option<String>,
    /// Extra cloud prices for the counterfactual, by model name.
    pub extra_prices: BTreeMap<String, CloudPrice>,
    pub queue: usize,
}

/// A whole `hearth.toml`.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Config {
    pub offline: bool,
    pub server: ServerSection,
    pub local: LocalSection,
    pub cloud: Option<CloudSection>,
    pub router: RouterSection,
    pub guard: GuardSection,
    pub ledger: Option<LedgerSection>,
}

// ---------------------------------------------------------------- walking

struct Cx {
    errors: Vec<ConfigError>,
    base: PathBuf,
}

impl Cx {
    fn err(&mut self, path: impl Into<String>, message: impl Into<String>) {
        self.errors.push(ConfigError { path: path.into(), message: message.into() });
    }
}

fn type_name(v: &Value) -> &'static str {
    match v {
        Value::String(_) => "a string",
        Value::Integer(_) => "an integer",
        Value::Float(_) => "a float",
        Value::Boolean(_) => "a boolean",
        Value::Datetime(_) => "a date-time",
        Value::Array(_) => "an array",
        Value::Table(_) => "a table",
    }
}

/// One table being read, with its path.
struct Sect<'a> {
    t: &'a Table,
    path: String,
}

impl<'a> Sect<'a> {
    /// Reports keys not in `known`.
    fn new(cx: &mut Cx, t: &'a Table, path: &str, known: &[&str]) -> Sect<'a> {
        let s = Sect { t, path: path.to_string() };
        for k in t.keys() {
            if !known.contains(&k.as_str()) {
                let hint = known.iter().find(|c| close(c, k)).map(|c| format!("; did you mean '{c}'?")).unwrap_or_default();
                cx.err(s.key(k), format!("unknown key{hint} (known: {})", known.join(", ")));
            }
        }
        s
    }

    fn key(&self, k: &str) -> String {
        if self.path.is_empty() {
            k.to_string()
        } else {
            format!("{}.{k}", self.path)
        }
    }

    fn get(&self, k: &str) -> Option<&'a Value> {
        self.t.get(k)
    }

    fn wrong(&self, cx: &mut Cx, k: &str, want: &str) {
        if let Some(v) = self.get(k) {
            cx.err(self.key(k), format!("must be {want}, not {}", type_name(v)));
        }
    }

    fn str(&self, cx: &mut Cx, k: &str) -> Option<&'a str> {
        match self.get(k)? {
            Value::String(s) => Some(s),
            _ => {
                self.wrong(cx, k, "a string");
                None
            }
        }
    }

    fn nonempty(&self, cx: &mut Cx, k: &str) -> Option<&'a str> {
        let s = self.str(cx, k)?;
        if s.trim().is_empty() {
            cx.err(self.key(k), "must not be empty");
            return None;
        }
        Some(s)
    }

    fn bool(&self, cx: &mut Cx, k: &str) -> Option<bool> {
        match self.get(k)? {
            Value::Boolean(b) => Some(*b),
            _ => {
                self.wrong(cx, k, "true or false");
                None
            }
        }
    }

    fn int(&self, cx: &mut Cx, k: &str, lo: i64, hi: i64) -> Option<i64> {
        match self.get(k)? {
            Value::Integer(i) if (lo..=hi).contains(i) => Some(*i),
            Value::Integer(i) => {
                cx.err(self.key(k), format!("must be between {lo} and {hi}, not {i}"));
                None
            }
            _ => {
                self.wrong(cx, k, "an integer");
                None
            }
        }
    }

    fn usize(&self, cx: &mut Cx, k: &str, lo: usize, hi: usize) -> Option<usize> {
        self.int(cx, k, lo as i64, hi as i64).map(|i| i as usize)
    }

    fn float(&self, cx: &mut Cx, k: &str, lo: f64, hi: f64) -> Option<f64> {
        let v = match self.get(k)? {
            Value::Float(f) => *f,
            Value::Integer(i) => *i as f64,
            _ => {
                self.wrong(cx, k, "a number");
                return None;
            }
        };
        if !(v.is_finite() && (lo..=hi).contains(&v)) {
            cx.err(self.key(k), format!("must be between {lo} and {hi}, not {v}"));
            return None;
        }
        Some(v)
    }

    fn duration(&self, cx: &mut Cx, k: &str) -> Option<Duration> {
        let v = self.get(k)?;
        let Value::String(s) = v else {
            cx.err(self.key(k), format!("must be a duration string with a unit such as \"30s\" or \"250ms\", not {}", type_name(v)));
            return None;
        };
        match parse_duration(s) {
            Some(d) if !d.is_zero() => Some(d),
            Some(_) => {
                cx.err(self.key(k), "must be positive");
                None
            }
            None => {
                cx.err(self.key(k), "not a duration; write a number with a unit: ms, s, m or h (e.g. \"30s\")");
                None
            }
        }
    }

    fn path(&self, cx: &mut Cx, k: &str) -> Option<PathBuf> {
        let s = self.nonempty(cx, k)?;
        let p = PathBuf::from(s);
        Some(if p.is_relative() { cx.base.join(p) } else { p })
    }

    /// A string or an array of strings.
    fn strings(&self, cx: &mut Cx, k: &str) -> Vec<String> {
        match self.get(k) {
            None => Vec::new(),
            Some(Value::String(s)) => vec![s.clone()],
            Some(Value::Array(a)) => {
                let mut out = Vec::new();
                for (i, v) in a.iter().enumerate() {
                    match v {
                        Value::String(s) => out.push(s.clone()),
                        other => cx.err(format!("{}[{i}]", self.key(k)), format!("must be a string, not {}", type_name(other))),
                    }
                }
                out
            }
            Some(_) => {
                self.wrong(cx, k, "a string or an array of strings");
                Vec::new()
            }
        }
    }

    fn table(&self, cx: &mut Cx, k: &str) -> Option<&'a Table> {
        match self.get(k)? {
            Value::Table(t) => Some(t),
            _ => {
                self.wrong(cx, k, "a table");
                None
            }
        }
    }
}

/// Edit distance ≤ 2 or one is a prefix of the other: a likely typo.
fn close(a: &str, b: &str) -> bool {
    if a.starts_with(b) || b.starts_with(a) {
        return true;
    }
    let (a, b): (Vec<char>, Vec<char>) = (a.chars().collect(), b.chars().collect());
    let mut prev: Vec<usize> = (0..=b.len()).collect();
    for i in 1..=a.len() {
        let mut cur = vec![i; b.len() + 1];
        for j in 1..=b.len() {
            let sub = prev[j - 1] + usize::from(a[i - 1] != b[j - 1]);
            cur[j] = sub.min(prev[j] + 1).min(cur[j - 1] + 1);
        }
        prev = cur;
    }
    prev[b.len()] <= 2
}

/// `"250ms"`, `"30s"`, `"1.5s"`, `"2m"`, `"1h"`.
pub fn parse_duration(s: &str) -> Option<Duration> {
    let s = s.trim();
    let split = s.find(|c: char| !(c.is_ascii_digit() || c == '.'))?;
    let (num, unit) = s.split_at(split);
    let v: f64 = num.parse().ok()?;
    let secs = match unit.trim() {
        "ms" => v / 1000.0,
        "s" => v,
        "m" => v * 60.0,
        "h" => v * 3600.0,
        _ => return None,
    };
    (secs.is_finite() && secs >= 0.0 && secs < 1e9).then(|| Duration::from_secs_f64(secs))
}

/// An environment variable name: what `api_key_env` must hold.
fn is_env_name(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 128
        && s.bytes().all(|b| b.is_ascii_uppercase() || b.is_ascii_digit() || b == b'_')
        && !s.as_bytes()[0].is_ascii_digit()
}

fn env_name(cx: &mut Cx, path: String, s: &str) -> Option<String> {
    if is_env_name(s) {
        return Some(s.to_string());
    }
    // Never echo the value: it may be the key itself, pasted in the wrong place.
    cx.err(
        path,
        "must be the NAME of an environment variable holding the key (upper-case letters, digits and _, e.g. OPENAI_API_KEY), never the key itself",
    );
    None
}

/// Checks a cloud base URL without a URL library: scheme, host, no
/// credentials, query or fragment (what the cloud client also refuses).
fn check_base_url(cx: &mut Cx, path: &str, url: &str) -> bool {
    let url = url.trim();
    let Some((scheme, rest)) = url.split_once("://") else {
        cx.err(path, "missing scheme (write http://... or https://...)");
        return false;
    };
    if !scheme.eq_ignore_ascii_case("http") && !scheme.eq_ignore_ascii_case("https") {
        cx.err(path, format!("scheme must be http or https, not '{scheme}'"));
        return false;
    }
    let authority = rest.split('/').next().unwrap_or("");
    if authority.contains('@') {
        // Not echoed: it holds credentials.
        cx.err(path, "must not contain credentials (user:password@); put the key in the variable named by cloud.api_key_env");
        return false;
    }
    // `[v6]:port` or `name:port`.
    let host = match authority.strip_prefix('[') {
        Some(v6) => v6.split(']').next().unwrap_or(""),
        None => authority.split(':').next().unwrap_or(""),
    };
    if host.is_empty() {
        cx.err(path, "has no host");
        return false;
    }
    if rest.contains('?') || rest.contains('#') {
        cx.err(path, "must not have a query or fragment");
        return false;
    }
    true
}

fn action(s: &str) -> Option<Action> {
    match s {
        "keep-local" | "keep_local" => Some(Action::KeepLocal),
        "redact" => Some(Action::Redact),
        "block" => Some(Action::Block),
        _ => None,
    }
}

fn price(cx: &mut Cx, t: &Table, path: &str) -> Option<CloudPrice> {
    let s = Sect::new(cx, t, path, &["input_per_mtok", "output_per_mtok"]);
    let one = |cx: &mut Cx, k: &str| -> Option<UsdPerMTok> {
        let v = s.get(k);
        let r = match v {
            None => {
                cx.err(s.key(k), "required (USD per 1M tokens)");
                return None;
            }
            Some(Value::Integer(i)) if *i < 0 => {
                cx.err(s.key(k), "must not be negative");
                return None;
            }
            Some(Value::Integer(i)) => UsdPerMTok::from_micro_usd((*i as u64).saturating_mul(1_000_000)),
            Some(Value::Float(f)) => UsdPerMTok::from_usd(*f),
            Some(Value::String(st)) => UsdPerMTok::parse(st),
            Some(other) => {
                cx.err(s.key(k), format!("must be a number of USD per 1M tokens, not {}", type_name(other)));
                return None;
            }
        };
        match r {
            Ok(p) => Some(p),
            Err(e) => {
                cx.err(s.key(k), e.to_string());
                None
            }
        }
    };
    let i = one(cx, "input_per_mtok");
    let o = one(cx, "output_per_mtok");
    Some(CloudPrice { input_per_mtok: i?, output_per_mtok: o? })
}

impl Config {
    /// Reads and parses a file; relative paths are resolved against its directory.
    pub fn load(path: &Path) -> Result<Config, ConfigErrors> {
        let text = std::fs::read_to_string(path).map_err(|e| {
            ConfigErrors(vec![ConfigError { path: String::new(), message: format!("cannot read {}: {e}", path.display()) }])
        })?;
        let base = path.parent().map(Path::to_path_buf).unwrap_or_default();
        Config::parse(&text, &base)
    }

    /// Parses a file's text. `base`: the directory relative paths are resolved against.
    pub fn parse(text: &str, base: &Path) -> Result<Config, ConfigErrors> {
        let table: Table = match text.parse() {
            Ok(t) => t,
            Err(e) => {
                let e: toml::de::Error = e;
                // toml's message quotes the offending line; a config file is
                // not secret-bearing by design (keys live in the environment).
                let at = e.span().map(|s| line_col(text, s.start)).map(|(l, c)| format!("line {l}, column {c}: ")).unwrap_or_default();
                return Err(ConfigErrors(vec![ConfigError { path: String::new(), message: format!("{at}not valid TOML: {}", e.message()) }]));
            }
        };
        let mut cx = Cx { errors: Vec::new(), base: base.to_path_buf() };
        let root = Sect::new(&mut cx, &table, "", &["offline", "server", "local", "cloud", "router", "guard", "ledger"]);
        let mut cfg = Config { offline: root.bool(&mut cx, "offline").unwrap_or(false), ..Config::default() };
        if let Some(t) = root.table(&mut cx, "server") {
            cfg.server = server(&mut cx, t);
        }
        if let Some(t) = root.table(&mut cx, "local") {
            cfg.local = local(&mut cx, t);
        }
        if let Some(t) = root.table(&mut cx, "cloud") {
            cfg.cloud = cloud(&mut cx, t);
        }
        if let Some(t) = root.table(&mut cx, "router") {
            cfg.router = router(&mut cx, t);
        }
        if let Some(t) = root.table(&mut cx, "guard") {
            cfg.guard = guard(&mut cx, t);
        }
        if let Some(t) = root.table(&mut cx, "ledger") {
            cfg.ledger = ledger(&mut cx, t);
        }
        // Cross-section rules.
        if let (RouterKind::AlwaysCloud, true) = (&cfg.router.kind, cfg.offline) {
            cx.err("router.kind", "'always-cloud' cannot route anything in an offline deployment (offline = true)");
        }
        if cx.errors.is_empty() {
            Ok(cfg)
        } else {
            Err(ConfigErrors(cx.errors))
        }
    }

    /// What the file points at that is missing here: unset environment
    /// variables, absent files. `env` looks a variable up (by name only;
    /// values are never returned to callers of this function).
    pub fn environment_problems(&self, env: &dyn Fn(&str) -> Option<String>) -> Vec<ConfigError> {
        let mut out = Vec::new();
        let mut need_env = |path: String, name: &str| {
            if env(name).is_none_or(|v| v.is_empty()) {
                out.push(ConfigError { path, message: format!("environment variable {name} is not set") });
            }
        };
        for (i, n) in self.server.api_key_env.iter().enumerate() {
            let path = if self.server.api_key_env.len() == 1 { "server.api_key_env".to_string() } else { format!("server.api_key_env[{i}]") };
            need_env(path, n);
        }
        if let (Some(c), false) = (&self.cloud, self.offline) {
            if let Some(n) = &c.api_key_env {
                need_env("cloud.api_key_env".into(), n);
            }
        }
        let mut need_file = |path: &str, p: &Path| {
            if !p.is_file() {
                out.push(ConfigError { path: path.into(), message: format!("no such file: {}", p.display()) });
            }
        };
        if let Some(m) = &self.local.model {
            need_file("local.model", m);
        }
        if let RouterKind::File(p) = &self.router.kind {
            // A bare name (`default`, `routellm`) is a named router that
            // hearth-router resolves (routers/, $HEARTH_ROUTERS, built-in).
            let s = p.to_string_lossy();
            if s.contains('/') || s.contains('\\') || s.ends_with(".json") {
                need_file("router.path", p);
            }
        }
        if let Some(k) = &self.guard.audit_key {
            need_file("guard.audit_key", k);
        }
        if let (Some(c), false) = (&self.cloud, self.offline) {
            for (i, p) in c.ca_certs.iter().enumerate() {
                need_file(&format!("cloud.ca_certs[{i}]"), p);
            }
        }
        out
    }
}

fn line_col(text: &str, offset: usize) -> (usize, usize) {
    let before = &text[..offset.min(text.len())];
    let line = before.matches('\n').count() + 1;
    let col = before.rsplit('\n').next().map_or(0, |l| l.chars().count()) + 1;
    (line, col)
}

fn server(cx: &mut Cx, t: &Table) -> ServerSection {
    let s = Sect::new(
        cx,
        t,
        "server",
        &["host", "port", "api_key_env", "allow_hosts", "body_limit", "header_timeout", "body_timeout", "max_connections"],
    );
    let names = s.strings(cx, "api_key_env");
    let many = names.len() > 1 || matches!(s.get("api_key_env"), Some(Value::Array(_)));
    let api_key_env = names
        .iter()
        .enumerate()
        .filter_map(|(i, n)| {
            let path = if many { format!("server.api_key_env[{i}]") } else { "server.api_key_env".into() };
            env_name(cx, path, n)
        })
        .collect();
    ServerSection {
        host: s.nonempty(cx, "host").map(str::to_string),
        port: s.int(cx, "port", 0, 65535).map(|p| p as u16),
        api_key_env,
        allow_hosts: s.strings(cx, "allow_hosts"),
        body_limit: s.usize(cx, "body_limit", 1024, 1 << 30),
        header_timeout: s.duration(cx, "header_timeout"),
        body_timeout: s.duration(cx, "body_timeout"),
        max_connections: s.usize(cx, "max_connections", 1, 1 << 20),
    }
}

fn local(cx: &mut Cx, t: &Table) -> LocalSection {
    let s = Sect::new(cx, t, "local", &["model", "name", "threads", "parallel", "ctx", "queue", "prefill_chunk"]);
    let name = s.nonempty(cx, "name").map(str::to_string);
    if let Some(n) = &name {
        if n.contains('/') || n.chars().any(char::is_whitespace) {
            cx.err("local.name", "must not contain '/' or spaces (it is served as local/<name>)");
        }
    }
    LocalSection {
        model: s.path(cx, "model"),
        name,
        threads: s.usize(cx, "threads", 0, 1024),
        parallel: s.usize(cx, "parallel", 1, 1024),
        ctx: s.usize(cx, "ctx", 16, 1 << 22),
        queue: s.usize(cx, "queue", 0, 1 << 20),
        prefill_chunk: s.usize(cx, "prefill_chunk", 1, 1 << 16),
    }
}

fn cloud(cx: &mut Cx, t: &Table) -> Option<CloudSection> {
    let s = Sect::new(
        cx,
        t,
        "cloud",
        &[
            "base_url",
            "model",
            "api_key_env",
            "deadline",
            "connect_timeout",
            "first_byte_timeout",
            "send_stream_options",
            "max_response_bytes",
            "ca_certs",
            "retry",
            "breaker",
            "prices",
        ],
    );
    let before = cx.errors.len();
    let base_url = match s.nonempty(cx, "base_url") {
        Some(u) => {
            check_base_url(cx, "cloud.base_url", u);
            u.trim().to_string()
        }
        None => {
            if s.get("base_url").is_none() {
                cx.err("cloud.base_url", "required: the OpenAI-compatible API base, e.g. https://api.openai.com/v1");
            }
            String::new()
        }
    };
    let model = s.nonempty(cx, "model").map(str::to_string).unwrap_or_else(|| {
        if s.get("model").is_none() {
            cx.err("cloud.model", "required: the upstream model name, e.g. gpt-4o-mini");
        }
        String::new()
    });
    let api_key_env = s.str(cx, "api_key_env").and_then(|n| env_name(cx, "cloud.api_key_env".into(), n));
    let mut retry = RetryPolicy::default();
    if let Some(rt) = s.table(cx, "retry") {
        let r = Sect::new(cx, rt, "cloud.retry", &["max_attempts", "base_delay", "max_delay", "jitter_seed"]);
        if let Some(v) = r.int(cx, "max_attempts", 1, 20) {
            retry.max_attempts = v as u32;
        }
        if let Some(v) = r.duration(cx, "base_delay") {
            retry.base_delay = v;
        }
        if let Some(v) = r.duration(cx, "max_delay") {
            retry.max_delay = v;
        }
        if let Some(v) = r.int(cx, "jitter_seed", 0, i64::MAX) {
            retry.jitter_seed = v as u64;
        }
        if retry.base_delay > retry.max_delay {
            cx.err("cloud.retry.base_delay", "must not exceed cloud.retry.max_delay");
        }
    }
    let mut breaker = BreakerConfig::default();
    if let Some(bt) = s.table(cx, "breaker") {
        let b = Sect::new(
            cx,
            bt,
            "cloud.breaker",
            &["enabled", "consecutive_failures", "failure_rate", "window", "min_samples", "cool_down"],
        );
        if let Some(v) = b.bool(cx, "enabled") {
            breaker.enabled = v;
        }
        if let Some(v) = b.int(cx, "consecutive_failures", 1, 10_000) {
            breaker.consecutive_failures = v as u32;
        }
        if let Some(v) = b.float(cx, "failure_rate", 0.0, 1.0) {
            if v == 0.0 {
                cx.err("cloud.breaker.failure_rate", "must be greater than 0");
            }
            breaker.failure_rate = v;
        }
        if let Some(v) = b.int(cx, "window", 1, 100_000) {
            breaker.window = v as u32;
        }
        if let Some(v) = b.int(cx, "min_samples", 1, 100_000) {
            breaker.min_samples = v as u32;
        }
        if let Some(v) = b.duration(cx, "cool_down") {
            breaker.cool_down = v;
        }
        if breaker.min_samples > breaker.window {
            cx.err("cloud.breaker.min_samples", "must not exceed cloud.breaker.window");
        }
    }
    let prices = s.table(cx, "prices").and_then(|pt| price(cx, pt, "cloud.prices"));
    let ca_certs = s
        .strings(cx, "ca_certs")
        .into_iter()
        .map(|p| {
            let p = PathBuf::from(p);
            if p.is_relative() {
                cx.base.join(p)
            } else {
                p
            }
        })
        .collect();
    let sec = CloudSection {
        base_url,
        model,
        api_key_env,
        deadline: s.duration(cx, "deadline").unwrap_or(Duration::from_secs(120)),
        connect_timeout: s.duration(cx, "connect_timeout").unwrap_or(Duration::from_secs(10)),
        first_byte_timeout: s.duration(cx, "first_byte_timeout"),
        retry,
        breaker,
        send_stream_options: s.bool(cx, "send_stream_options").unwrap_or(true),
        max_response_bytes: s.usize(cx, "max_response_bytes", 1024, 1 << 32).unwrap_or(32 << 20),
        ca_certs,
        prices,
    };
    (cx.errors.len() == before).then_some(sec)
}

fn router(cx: &mut Cx, t: &Table) -> RouterSection {
    let s = Sect::new(
        cx,
        t,
        "router",
        &["kind", "path", "alias", "threshold", "cascade", "cascade_threshold", "cascade_metric"],
    );
    let mut r = RouterSection::default();
    // `path` is a router file (relative to this config) or the name of a
    // router hearth-router knows (`default`, `routellm`): names stay bare.
    let is_name = s
        .get("path")
        .and_then(|v| v.as_str())
        .is_some_and(|v| !v.is_empty() && !v.contains('/') && !v.contains('\\') && !v.ends_with(".json"));
    let path = if is_name { s.nonempty(cx, "path").map(PathBuf::from) } else { s.path(cx, "path") };
    match (s.str(cx, "kind"), path) {
        (None, None) | (Some("heuristic"), None) => {}
        (Some("always-local"), None) => r.kind = RouterKind::AlwaysLocal,
        (Some("always-cloud"), None) => r.kind = RouterKind::AlwaysCloud,
        (None, Some(p)) | (Some("file"), Some(p)) => r.kind = RouterKind::File(p),
        (Some("file"), None) => cx.err("router.path", "required when router.kind = \"file\""),
        (Some(k @ ("heuristic" | "always-local" | "always-cloud")), Some(_)) => {
            cx.err("router.path", format!("only used with kind = \"file\", not '{k}'"))
        }
        (Some(other), _) => cx.err(
            "router.kind",
            format!("unknown router '{other}'; expected heuristic, always-local, always-cloud or file"),
        ),
    }
    if let Some(a) = s.nonempty(cx, "alias") {
        if a.starts_with("local/") || a.starts_with("cloud/") {
            cx.err("router.alias", "must not start with local/ or cloud/ (those force a route)");
        } else {
            r.alias = a.to_string();
        }
    }
    r.threshold = s.float(cx, "threshold", 0.0, 1.0).map(|v| v as f32);
    let cascade = s.bool(cx, "cascade").unwrap_or(false);
    let metric = match s.str(cx, "cascade_metric") {
        None => Metric::Mean,
        Some(m) => Metric::parse(m).unwrap_or_else(|| {
            cx.err("router.cascade_metric", format!("unknown metric '{m}'; expected mean or min"));
            Metric::Mean
        }),
    };
    let threshold = s.float(cx, "cascade_threshold", -1e6, 0.0);
    if cascade {
        match threshold {
            Some(th) => r.cascade = Some(CascadeConfig { threshold: th as f32, metric }),
            None if s.get("cascade_threshold").is_none() => cx.err(
                "router.cascade_threshold",
                "required when router.cascade = true: a token log-probability (<= 0); choose it with `hearth cascade calibrate`",
            ),
            None => {}
        }
    }
    r
}

fn guard(cx: &mut Cx, t: &Table) -> GuardSection {
    let s = Sect::new(
        cx,
        t,
        "guard",
        &["fail_closed", "default", "entities", "audit_log", "audit_key", "checkpoint_every"],
    );
    let mut g = GuardSection::default();
    if let Some(v) = s.bool(cx, "fail_closed") {
        g.policy.fail_closed = v;
    }
    if let Some(d) = s.str(cx, "default") {
        match action(d) {
            Some(a) => g.policy.default_action = a,
            None => cx.err("guard.default", format!("unknown action '{d}'; expected keep-local, redact or block")),
        }
    }
    if let Some(et) = s.table(cx, "entities") {
        for (k, v) in et {
            let path = format!("guard.entities.{k}");
            let ty: Option<EntityType> = k.parse().ok();
            if ty.is_none() {
                let known: Vec<&str> = EntityType::ALL.iter().map(|t| t.as_str()).collect();
                cx.err(&path, format!("unknown entity type; known: {}", known.join(", ")));
            }
            let act = match v {
                Value::String(a) => action(a).or_else(|| {
                    cx.err(&path, format!("unknown action '{a}'; expected keep-local, redact or block"));
                    None
                }),
                other => {
                    cx.err(&path, format!("must be an action string, not {}", type_name(other)));
                    None
                }
            };
            if let (Some(ty), Some(a)) = (ty, act) {
                g.policy.entities.insert(ty, a);
            }
        }
    }
    g.audit_log = s.path(cx, "audit_log");
    g.audit_key = s.path(cx, "audit_key");
    match (&g.audit_log, &g.audit_key) {
        (Some(_), None) => cx.err("guard.audit_key", "required with guard.audit_log (create one with `hearth audit keygen`)"),
        (None, Some(_)) => cx.err("guard.audit_log", "required with guard.audit_key"),
        _ => {}
    }
    if let Some(n) = s.int(cx, "checkpoint_every", 1, 1_000_000) {
        g.checkpoint_every = n as u64;
    }
    g
}

fn ledger(cx: &mut Cx, t: &Table) -> Option<LedgerSection> {
    let s = Sect::new(cx, t, "ledger", &["url", "local_per_mtok", "all_cloud_model", "prices", "queue"]);
    let before = cx.errors.len();
    let url = match s.nonempty(cx, "url") {
        Some(u) => match hearth_ledger::Location::parse(u) {
            Ok(hearth_ledger::Location::Sqlite(p)) if p.is_relative() => cx.base.join(p).to_string_lossy().into_owned(),
            Ok(_) => u.to_string(),
            Err(e) => {
                cx.err("ledger.url", e.to_string());
                String::new()
            }
        },
        None => {
            if s.get("url").is_none() {
                cx.err("ledger.url", "required: a SQLite file path or a postgres:// URL");
            }
            String::new()
        }
    };
    let local_per_mtok = match s.get("local_per_mtok") {
        None => UsdPerMTok::ZERO,
        Some(v) => {
            let r = match v {
                Value::Integer(i) => UsdPerMTok::from_micro_usd((*i).max(0) as u64 * 1_000_000).and_then(|p| {
                    if *i < 0 {
                        Err(hearth_ledger::LedgerError::InvalidField { field: "price", reason: "negative".into() })
                    } else {
                        Ok(p)
                    }
                }),
                Value::Float(f) => UsdPerMTok::from_usd(*f),
                Value::String(st) => UsdPerMTok::parse(st),
                other => {
                    cx.err("ledger.local_per_mtok", format!("must be a number, not {}", type_name(other)));
                    Ok(UsdPerMTok::ZERO)
                }
            };
            r.unwrap_or_else(|e| {
                cx.err("ledger.local_per_mtok", e.to_string());
                UsdPerMTok::ZERO
            })
        }
    };
    let mut extra_prices = BTreeMap::new();
    if let Some(pt) = s.table(cx, "prices") {
        for (model, v) in pt {
            let path = format!("ledger.prices.{model}");
            match v {
                Value::Table(t) => {
                    if let Some(p) = price(cx, t, &path) {
                        extra_prices.insert(model.clone(), p);
                    }
                }
                other => cx.err(path, format!("must be a table with input_per_mtok and output_per_mtok, not {}", type_name(other))),
            }
        }
    }
    let sec = LedgerSection {
        url,
        local_per_mtok,
        all_cloud_model: s.nonempty(cx, "all_cloud_model").map(str::to_string),
        extra_prices,
        queue: s.usize(cx, "queue", 1, 1 << 24).unwrap_or(4096),
    };
    (cx.errors.len() == before).then_some(sec)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(s: &str) -> Result<Config, ConfigErrors> {
        Config::parse(s, Path::new("/etc/hearth"))
    }

    fn errors(s: &str) -> Vec<String> {
        parse(s).unwrap_err().0.iter().map(|e| e.to_string()).collect()
    }

    #[test]
    fn empty_file_is_all_defaults() {
        let c = parse("").unwrap();
        assert!(!c.offline);
        assert!(c.cloud.is_none() && c.ledger.is_none());
        assert_eq!(c.router.alias, "hearth/auto");
        assert_eq!(c.router.kind, RouterKind::Heuristic);
        assert_eq!(c.guard.policy, Policy::default());
    }

    #[test]
    fn full_example_parses() {
        let text = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/../../hearth.example.toml")).unwrap();
        let c = parse(&text).unwrap_or_else(|e| panic!("{e}"));
        let cloud = c.cloud.as_ref().unwrap();
        assert_eq!(cloud.api_key_env.as_deref(), Some("OPENAI_API_KEY"));
        assert_eq!(cloud.deadline, Duration::from_secs(60));
        assert!(cloud.prices.is_some());
        assert_eq!(c.guard.policy.action(EntityType::Email), Action::Redact);
        assert_eq!(c.guard.policy.action(EntityType::ApiKey), Action::Block);
        assert_eq!(c.ledger.as_ref().unwrap().url, "/etc/hearth/hearth-ledger.db");
        assert_eq!(c.local.model.as_deref(), Some(Path::new("/etc/hearth/models/qwen2.5-0.5b-instruct-q4_k_m.gguf")));
    }

    #[test]
    fn errors_name_their_key_paths() {
        let errs = errors(
            r#"
offline = "no"
[cloud]
base_url = "api.openai.com/v1"
model = "gpt-4o-mini"
api_key_env = "sk-live-canary-123"
deadline = 30
[cloud.retry]
max_attempts = 0
[cloud.breaker]
min_samples = 50
[router]
cascade = true
kind = "magic"
[guard]
fail_close = true
[guard.entities]
EMAIL = "hide"
SHOE = "block"
[ledger]
url = "mysql://db/x"
"#,
        );
        let want = [
            "offline: must be true or false, not a string",
            "cloud.base_url: missing scheme (write http://... or https://...)",
            "cloud.api_key_env: must be the NAME of an environment variable",
            "cloud.retry.max_attempts: must be between 1 and 20, not 0",
            "cloud.breaker.min_samples: must not exceed cloud.breaker.window",
            "cloud.deadline: must be a duration string with a unit",
            "router.kind: unknown router 'magic'",
            "router.cascade_threshold: required when router.cascade = true",
            "guard.fail_close: unknown key; did you mean 'fail_closed'?",
            "guard.entities.EMAIL: unknown action 'hide'",
            "guard.entities.SHOE: unknown entity type",
            "ledger.url: ",
        ];
        for w in want {
            assert!(errs.iter().any(|e| e.starts_with(w)), "missing {w:?} in {errs:#?}");
        }
        assert!(errs.iter().all(|e| !e.contains("canary")), "a key-like value was echoed: {errs:#?}");
    }

    #[test]
    fn toml_syntax_errors_have_a_position() {
        let e = errors("[cloud\nmodel = 1");
        assert_eq!(e.len(), 1);
        assert!(e[0].starts_with("line 1, column"), "{e:?}");
    }

    #[test]
    fn base_url_rules() {
        for (url, msg) in [
            ("ftp://x/v1", "scheme must be http or https"),
            ("https://user:pw@x/v1", "must not contain credentials"),
            ("https:///v1", "has no host"),
            ("https://x/v1?key=1", "must not have a query"),
        ] {
            let errs = errors(&format!("[cloud]\nbase_url = \"{url}\"\nmodel = \"m\""));
            assert!(errs.iter().any(|e| e.starts_with("cloud.base_url: ") && e.contains(msg)), "{url}: {errs:?}");
            assert!(errs.iter().all(|e| !e.contains("pw@")));
        }
        assert!(parse("[cloud]\nbase_url = \"http://[::1]:8080/v1\"\nmodel = \"m\"").is_ok());
    }

    #[test]
    fn durations() {
        assert_eq!(parse_duration("250ms"), Some(Duration::from_millis(250)));
        assert_eq!(parse_duration("1.5s"), Some(Duration::from_millis(1500)));
        assert_eq!(parse_duration("2m"), Some(Duration::from_secs(120)));
        assert_eq!(parse_duration("1h"), Some(Duration::from_secs(3600)));
        for bad in ["30", "s", "-1s", "1 fortnight", "1e3s", ""] {
            assert_eq!(parse_duration(bad), None, "{bad}");
        }
    }

    #[test]
    fn server_keys_by_env_name_and_audit_pairs() {
        let c = parse("[server]\napi_key_env = [\"A_KEY\", \"B_KEY\"]\nport = 9000").unwrap();
        assert_eq!(c.server.api_key_env, vec!["A_KEY", "B_KEY"]);
        assert_eq!(c.server.port, Some(9000));
        let e = errors("[server]\napi_key_env = [\"A_KEY\", \"hunter2\"]");
        assert_eq!(e.len(), 1);
        assert!(e[0].starts_with("server.api_key_env[1]: must be the NAME"), "{e:?}");
        assert!(!e[0].contains("hunter2"));
        let e = errors("[guard]\naudit_log = \"a.jsonl\"");
        assert!(e[0].starts_with("guard.audit_key: required"), "{e:?}");
    }

    #[test]
    fn offline_with_always_cloud_is_refused() {
        let e = errors("offline = true\n[router]\nkind = \"always-cloud\"");
        assert!(e[0].starts_with("router.kind:"), "{e:?}");
    }

    #[test]
    fn environment_problems_name_variables_not_values() {
        let c = parse(
            "[server]\napi_key_env = \"SRV_KEY\"\n[cloud]\nbase_url = \"https://x/v1\"\nmodel = \"m\"\napi_key_env = \"CLOUD_KEY\"\n[local]\nmodel = \"/nonexistent/m.gguf\"",
        )
        .unwrap();
        let p = c.environment_problems(&|n| (n == "SRV_KEY").then(|| "secret-value".to_string()));
        let text: Vec<String> = p.iter().map(|e| e.to_string()).collect();
        assert_eq!(text.len(), 2, "{text:?}");
        assert!(text.contains(&"cloud.api_key_env: environment variable CLOUD_KEY is not set".to_string()));
        assert!(text.iter().any(|t| t.starts_with("local.model: no such file")));
        // Offline: the cloud key is not needed.
        let mut off = c.clone();
        off.offline = true;
        assert_eq!(off.environment_problems(&|n| (n == "SRV_KEY").then(String::new)).len(), 2);
    }

    #[test]
    fn cascade_and_prices() {
        let c = parse(
            "[router]\ncascade = true\ncascade_threshold = -1.25\ncascade_metric = \"min\"\n[cloud]\nbase_url = \"https://x/v1\"\nmodel = \"m\"\n[cloud.prices]\ninput_per_mtok = 0.15\noutput_per_mtok = \"0.6\"",
        )
        .unwrap();
        assert_eq!(c.router.cascade, Some(CascadeConfig { threshold: -1.25, metric: Metric::Min }));
        let p = c.cloud.unwrap().prices.unwrap();
        assert_eq!(p.input_per_mtok.micro_usd(), 150_000);
        assert_eq!(p.output_per_mtok.micro_usd(), 600_000);
        let e = errors("[cloud]\nbase_url = \"https://x/v1\"\nmodel = \"m\"\n[cloud.prices]\ninput_per_mtok = -1");
        assert!(e.iter().any(|e| e.starts_with("cloud.prices.input_per_mtok")), "{e:?}");
        assert!(e.iter().any(|e| e.starts_with("cloud.prices.output_per_mtok: required")), "{e:?}");
    }
}
