//! `hearth serve`: the OpenAI-compatible HTTP server (hearth-server).

use anyhow::{Context, Result};
use hearth_engine::scheduler::SchedulerConfig;
use hearth_engine::EngineConfig;
use hearth_server::{ModelSource, Secret, Server, ServerConfig};
use std::path::PathBuf;
use std::time::Duration;

#[derive(clap::Args)]
pub struct ServeArgs {
    /// Model file (.gguf) or Hugging Face model folder; with --config, overrides `[local] model`.
    #[arg(short = 'm', long)]
    pub model: Option<PathBuf>,
    /// A hearth.toml (see hearth.example.toml): routing between the local
    /// model and a cloud model, privacy guard, audit log, ledger. Its
    /// `[server]` and `[local]` values replace the flags' defaults; flags
    /// given explicitly (--host, --port, --model) win.
    #[arg(long)]
    pub config: Option<PathBuf>,
    /// No cloud client is created: nothing leaves this machine (same as
    /// `offline = true` in the config).
    #[arg(long)]
    pub offline: bool,
    /// Address to bind (default 127.0.0.1). Anything but loopback requires --api-key.
    #[arg(long)]
    pub host: Option<String>,
    /// Port (default 8080; 0 picks a free one; the bound address is printed).
    #[arg(long)]
    pub port: Option<u16>,
    /// Require `Authorization: Bearer KEY` on every route but /health
    /// (also read from HEARTH_API_KEY).
    #[arg(long)]
    pub api_key: Option<String>,
    /// Concurrent sequences (slots) stepped together.
    #[arg(long, default_value_t = 4)]
    pub parallel: usize,
    /// Context size of each slot in tokens (default: the model's, at most 4096).
    #[arg(short = 'c', long = "ctx-size")]
    pub ctx_size: Option<usize>,
    /// Worker threads (default: all cores).
    #[arg(short = 't', long, default_value_t = 0)]
    pub threads: usize,
    /// Requests allowed to wait for a slot; more get 503.
    #[arg(long, default_value_t = 64)]
    pub queue: usize,
    /// Extra host names accepted in the Host header ('*' accepts any).
    #[arg(long = "allow-host")]
    pub allow_host: Vec<String>,
    /// Largest request body in bytes.
    #[arg(long, default_value_t = 2 << 20)]
    pub body_limit: usize,
    /// Seconds allowed for request headers (and idle keep-alive).
    #[arg(long, default_value_t = 10)]
    pub header_timeout: u64,
    /// Seconds allowed to receive a request body.
    #[arg(long, default_value_t = 30)]
    pub body_timeout: u64,
    /// Prompt tokens per engine step while other requests generate.
    #[arg(long, default_value_t = 128)]
    pub prefill_chunk: usize,
    /// Model id listed by /v1/models (default: the file name).
    #[arg(long)]
    pub alias: Option<String>,
    /// Sentence-embedding model folder served at /v1/embeddings (default:
    /// the MiniLM folder found as by `hearth embed`; none found: 501).
    #[arg(long)]
    pub embed_model: Option<PathBuf>,
    /// Do not serve /v1/embeddings even if an embedding model is found.
    #[arg(long)]
    pub no_embeddings: bool,
    /// A LoRA adapter served as model `{id}+NAME` (repeatable): NAME=PATH,
    /// PATH a PEFT adapter directory or a GGUF LoRA file.
    #[arg(long = "lora", value_name = "NAME=PATH")]
    pub lora: Vec<String>,
}

/// `[server]` and `[local]` of a config file applied over the flags.
fn apply_config(a: &mut ServeArgs, c: &hearth_gateway::Config) -> Result<()> {
    let (s, l) = (&c.server, &c.local);
    if a.host.is_none() {
        a.host = s.host.clone();
    }
    if a.port.is_none() {
        a.port = s.port;
    }
    if a.model.is_none() {
        a.model = l.model.clone();
    }
    if a.alias.is_none() {
        a.alias = l.name.clone();
    }
    if a.api_key.is_none() {
        // The first configured variable that is set (config check warns
        // about unset ones); several keys: the first one is served.
        a.api_key = s.api_key_env.iter().find_map(|n| std::env::var(n).ok().filter(|v| !v.is_empty()));
        if a.api_key.is_none() && !s.api_key_env.is_empty() {
            anyhow::bail!("server.api_key_env: none of {} is set", s.api_key_env.join(", "));
        }
    }
    a.allow_host.extend(s.allow_hosts.iter().cloned());
    if let Some(v) = s.body_limit {
        a.body_limit = v;
    }
    if let Some(v) = s.header_timeout {
        a.header_timeout = v.as_secs().max(1);
    }
    if let Some(v) = s.body_timeout {
        a.body_timeout = v.as_secs().max(1);
    }
    if let Some(v) = l.threads {
        a.threads = v;
    }
    if let Some(v) = l.parallel {
        a.parallel = v;
    }
    if let Some(v) = l.ctx {
        a.ctx_size = Some(v);
    }
    if let Some(v) = l.queue {
        a.queue = v;
    }
    if let Some(v) = l.prefill_chunk {
        a.prefill_chunk = v;
    }
    Ok(())
}

/// Loads the config and builds the gateway (cloud client only when online).
fn load_gateway(a: &mut ServeArgs) -> Result<Option<std::sync::Arc<hearth_gateway::Gateway>>> {
    // Without a config there is no cloud: --offline changes nothing.
    let Some(path) = a.config.clone() else {
        return Ok(None);
    };
    let mut cfg = hearth_gateway::Config::load(&path)
        .map_err(|e| anyhow::anyhow!("{}:\n{e}\n(check it with `hearth config check {}`)", path.display(), path.display()))?;
    if a.offline {
        cfg.offline = true;
    }
    let problems = cfg.environment_problems(&|n| std::env::var(n).ok());
    if !problems.is_empty() {
        let list: Vec<String> = problems.iter().map(|p| p.to_string()).collect();
        anyhow::bail!("{}:\n{}", path.display(), list.join("\n"));
    }
    apply_config(a, &cfg)?;
    let gw = hearth_gateway::Gateway::from_config(&cfg, &|n| std::env::var(n).ok())
        .map_err(|e| anyhow::anyhow!("{}:\n{e}", path.display()))?;
    eprintln!(
        "hearth serve: gateway: alias {}, router {}, {}",
        gw.alias(),
        gw.router_name(),
        match (gw.is_offline(), gw.cloud_model()) {
            (true, _) => "offline (no cloud client)".to_string(),
            (false, Some(m)) => format!("cloud model cloud/{m}"),
            (false, None) => "no cloud configured".to_string(),
        }
    );
    Ok(Some(std::sync::Arc::new(gw)))
}

pub fn main(mut a: ServeArgs) -> Result<()> {
    let gateway = load_gateway(&mut a)?;
    // No --model and no `[local] model`: the embedded demo model.
    let model = crate::default_model::resolve(a.model.as_deref())?;
    let mut adapters = Vec::new();
    for spec in &a.lora {
        let (name, dir) = spec.split_once('=').with_context(|| format!("--lora {spec}: expected NAME=PATH"))?;
        anyhow::ensure!(!name.is_empty() && !name.contains('+'), "--lora {spec}: the name must be non-empty and without '+'");
        adapters.push((name.to_string(), PathBuf::from(dir)));
    }
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .context("starting the runtime")?;
    rt.block_on(async move {
        let scheduler = SchedulerConfig {
            n_slots: a.parallel.max(1),
            n_ctx: a.ctx_size.unwrap_or(4096),
            queue_capacity: a.queue,
            prefill_chunk: a.prefill_chunk.max(1),
            ..SchedulerConfig::default()
        };
        let embedder = load_embedder(&a)?;
        let cfg = ServerConfig {
            host: a.host.clone().unwrap_or_else(|| "127.0.0.1".into()),
            port: a.port.unwrap_or(8080),
            api_key: a
                .api_key
                .or_else(|| std::env::var("HEARTH_API_KEY").ok())
                .map(Secret::new),
            allow_hosts: a.allow_host,
            body_limit: a.body_limit,
            header_timeout: Duration::from_secs(a.header_timeout.max(1)),
            body_timeout: Duration::from_secs(a.body_timeout.max(1)),
            model_alias: a.alias,
            scheduler,
            embedder,
            gateway: gateway.clone(),
            adapters,
            ..ServerConfig::default()
        };
        let server = Server::bind(cfg).await?;
        // Scripts read this line to find the port.
        eprintln!("hearth serve: listening on http://{}", server.local_addr());
        let source = ModelSource::Path {
            path: model.clone(),
            engine: EngineConfig {
                threads: a.threads,
                ..Default::default()
            },
        };
        let shutdown = async {
            let _ = tokio::signal::ctrl_c().await;
        };
        let r = server
            .run(source, shutdown)
            .await
            .with_context(|| format!("serving {}", model.display()));
        if let Some(g) = &gateway {
            // Queued ledger rows stored, audit checkpoint signed.
            g.flush();
        }
        r
    })
}

/// An explicitly named embedding folder must load; the default location is
/// optional (a missing MiniLM only disables /v1/embeddings).
fn load_embedder(a: &ServeArgs) -> Result<Option<std::sync::Arc<dyn hearth_server::Embedder>>> {
    if a.no_embeddings {
        return Ok(None);
    }
    let dir = match &a.embed_model {
        Some(p) => p.clone(),
        None => match hearth_embed::find_model_dir(None) {
            Ok(d) => d,
            Err(_) => {
                tracing::info!("no embedding model found; /v1/embeddings answers 501");
                return Ok(None);
            }
        },
    };
    let e = crate::serve_embed::ServedEmbedder::load(&dir, a.threads)
        .with_context(|| format!("cannot load the embedding model in {}", dir.display()))?;
    Ok(Some(std::sync::Arc::new(e)))
}
