//! The gateway's commands: `hearth config check`, `hearth report`,
//! `hearth audit keygen|verify`, `hearth guard eval`.

use anyhow::{bail, Context, Result};
use hearth_gateway::Config;
use hearth_guard::audit;
use std::path::PathBuf;

// ------------------------------------------------------------------ config

#[derive(clap::Args)]
pub struct ConfigArgs {
    #[command(subcommand)]
    pub command: ConfigCommand,
}

#[derive(clap::Subcommand)]
pub enum ConfigCommand {
    /// Validate a hearth.toml: every problem with its key path. Unset
    /// environment variables and missing files are warnings (exit 0);
    /// problems in the file itself are errors (exit 1).
    Check {
        file: PathBuf,
        /// Treat warnings (unset variables, missing files) as errors.
        #[arg(long)]
        strict: bool,
    },
}

pub fn config(a: ConfigArgs) -> Result<()> {
    match a.command {
        ConfigCommand::Check { file, strict } => {
            let cfg = match Config::load(&file) {
                Ok(c) => c,
                Err(errs) => {
                    for e in &errs.0 {
                        eprintln!("error: {e}");
                    }
                    bail!("{}: {} problem(s)", file.display(), errs.0.len());
                }
            };
            // Looked up by name; the value never leaves this closure.
            let warnings = cfg.environment_problems(&|n| std::env::var(n).ok());
            for w in &warnings {
                eprintln!("warning: {w}");
            }
            if strict && !warnings.is_empty() {
                bail!("{}: {} warning(s) with --strict", file.display(), warnings.len());
            }
            println!("{}: ok", file.display());
            println!("{}", summary(&cfg));
            Ok(())
        }
    }
}

/// One line per section of what the file configures (no secret values:
/// only variable names).
fn summary(c: &Config) -> String {
    let mut out = Vec::new();
    out.push(format!("offline: {}", c.offline));
    if let Some(m) = &c.local.model {
        out.push(format!("local: {} (served as {})", m.display(), c.local.name.as_deref().unwrap_or("<file stem>")));
    }
    match (&c.cloud, c.offline) {
        (_, true) => out.push("cloud: none (offline)".into()),
        (None, false) => out.push("cloud: none configured".into()),
        (Some(cl), false) => out.push(format!(
            "cloud: {} model {} key from {}",
            cl.base_url,
            cl.model,
            cl.api_key_env.as_deref().unwrap_or("<no key>")
        )),
    }
    out.push(format!("router: {:?} alias {} cascade {}", c.router.kind, c.router.alias, c.router.cascade.is_some()));
    let ents: Vec<String> = c.guard.policy.entities.iter().map(|(k, v)| format!("{}={v:?}", k.as_str())).collect();
    out.push(format!(
        "guard: default {:?}, fail_closed {}, {}; audit {}",
        c.guard.policy.default_action,
        c.guard.policy.fail_closed,
        ents.join(" "),
        c.guard.audit_log.as_ref().map_or("off".into(), |p| p.display().to_string())
    ));
    out.push(format!("ledger: {}", c.ledger.as_ref().map_or("off", |l| if l.url.starts_with("postgres") { "postgres" } else { l.url.as_str() })));
    out.join("\n")
}

// ------------------------------------------------------------------ report

#[derive(clap::Args)]
pub struct ReportArgs {
    /// Ledger location (SQLite path or postgres:// URL).
    #[arg(long, conflicts_with = "config")]
    pub ledger: Option<String>,
    /// Take the ledger location from this hearth.toml.
    #[arg(long)]
    pub config: Option<PathBuf>,
    /// Window start: a duration back from now (30m, 24h, 7d), an RFC 3339
    /// time or a date.
    #[arg(long)]
    pub since: Option<String>,
    /// One JSON object instead of the table.
    #[arg(long)]
    pub json: bool,
}

pub fn report(a: ReportArgs) -> Result<()> {
    let url = match (a.ledger, a.config) {
        (Some(u), _) => u,
        (None, Some(c)) => {
            let cfg = Config::load(&c).map_err(|e| anyhow::anyhow!("{}:\n{e}", c.display()))?;
            match cfg.ledger {
                Some(l) => l.url,
                None => bail!("{} has no [ledger] section", c.display()),
            }
        }
        (None, None) => bail!("name the ledger: --ledger PATH|URL or --config hearth.toml"),
    };
    let since = a
        .since
        .as_deref()
        .map(|s| hearth_ledger::report::parse_since(s, chrono::Utc::now()))
        .transpose()
        .context("--since")?;
    let store = hearth_ledger::open(&url).context("opening the ledger")?;
    let rep = store.summary(since).context("reading the ledger")?;
    if a.json {
        println!("{}", rep.to_json());
    } else {
        print!("{}", rep.render_table());
    }
    Ok(())
}

// ------------------------------------------------------------------ audit

#[derive(clap::Args)]
pub struct AuditArgs {
    #[command(subcommand)]
    pub command: AuditCommand,
}

#[derive(clap::Subcommand)]
pub enum AuditCommand {
    /// Create a signing key file (mode 0600) and print its public key.
    Keygen {
        #[arg(long)]
        out: PathBuf,
    },
    /// Verify an audit log's hash chain and signed checkpoints: any edit,
    /// deletion, reordering, insertion or truncation is reported.
    Verify {
        file: PathBuf,
        /// The signing key file (its public half is used).
        #[arg(long, conflicts_with = "public_key")]
        key: Option<PathBuf>,
        /// The public key in hex (what `keygen` printed).
        #[arg(long)]
        public_key: Option<String>,
        #[arg(long)]
        json: bool,
    },
}

pub fn audit(a: AuditArgs) -> Result<()> {
    match a.command {
        AuditCommand::Keygen { out } => {
            let key = audit::generate_key(&mut rand_core::OsRng);
            audit::write_key_file(&out, &key).with_context(|| format!("writing {}", out.display()))?;
            println!("wrote {} (keep it private, mode 0600)", out.display());
            println!("public key: {}", audit::verifying_key_hex(&key.verifying_key()));
            Ok(())
        }
        AuditCommand::Verify { file, key, public_key, json } => {
            let vk = match (key, public_key) {
                (Some(k), _) => audit::read_key_file(&k).with_context(|| format!("reading {}", k.display()))?.verifying_key(),
                (None, Some(h)) => audit::verifying_key_from_hex(&h).context("--public-key")?,
                (None, None) => bail!("give the key: --key FILE or --public-key HEX"),
            };
            match audit::verify(&file, &vk) {
                Ok(r) => {
                    if json {
                        println!(
                            "{}",
                            serde_json::json!({"ok": true, "entries": r.entries, "checkpoints": r.checkpoints,
                                "last_seq": r.last_seq, "signed_through": r.signed_through,
                                "entries_since_checkpoint": r.entries_since_checkpoint, "last_hash": r.last_hash})
                        );
                    } else {
                        println!(
                            "{}: ok: {} entries, {} signed checkpoints (through #{}), {} entries after the last checkpoint covered by the signed head",
                            file.display(),
                            r.entries,
                            r.checkpoints,
                            r.signed_through,
                            r.entries_since_checkpoint
                        );
                    }
                    Ok(())
                }
                Err(e) => {
                    if json {
                        println!("{}", serde_json::json!({"ok": false, "error": e.to_string()}));
                    }
                    bail!("{}: verification FAILED: {e}", file.display())
                }
            }
        }
    }
}

// ------------------------------------------------------------------ guard

#[derive(clap::Args)]
pub struct GuardArgs {
    #[command(subcommand)]
    pub command: GuardCommand,
}

#[derive(clap::Subcommand)]
pub enum GuardCommand {
    /// Measure PII detection on a labelled JSONL corpus (testdata/pii/public.jsonl format).
    Eval {
        #[arg(long)]
        data: PathBuf,
        /// One JSON object: n, recall, precision, per_type, clean_prompts_flagged.
        #[arg(long)]
        json: bool,
    },
}

pub fn guard(a: GuardArgs) -> Result<()> {
    match a.command {
        GuardCommand::Eval { data, json } => {
            let det = hearth_guard::Detector::new();
            let r = hearth_guard::eval::evaluate_file(&data, &det).with_context(|| format!("evaluating {}", data.display()))?;
            if json {
                println!("{}", serde_json::to_string(&r)?);
                return Ok(());
            }
            println!(
                "{} prompts, {} entities: recall {:.4} (with uncertain spans {:.4}), precision {:.4}",
                r.n, r.entities, r.recall, r.recall_with_uncertain, r.precision
            );
            println!(
                "clean prompts wrongly flagged: {:.4} of {}",
                r.clean_prompts_flagged, r.clean_prompts
            );
            println!("{:<24}{:>9}{:>11}{:>9}", "type", "recall", "precision", "support");
            for (t, s) in &r.per_type {
                println!("{t:<24}{:>9.4}{:>11.4}{:>9}", s.recall, s.precision, s.support);
            }
            Ok(())
        }
    }
}
