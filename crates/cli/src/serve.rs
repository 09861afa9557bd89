//! `hearth serve`: the OpenAI-compatible HTTP server (hearth-server).

use anyhow::{Context, Result};
use hearth_engine::scheduler::SchedulerConfig;
use hearth_engine::EngineConfig;
use hearth_server::{ModelSource, Secret, Server, ServerConfig};
use std::path::PathBuf;
use std::time::Duration;

#[derive(clap::Args)]
pub struct ServeArgs {
    /// Model file (.gguf).
    #[arg(short = 'm', long)]
    pub model: PathBuf,
    /// Address to bind. Anything but loopback requires --api-key.
    #[arg(long, default_value = "127.0.0.1")]
    pub host: String,
    /// Port (0 picks a free one; the bound address is printed).
    #[arg(long, default_value_t = 8080)]
    pub port: u16,
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
    /// A PEFT LoRA adapter served as model `{id}+NAME` (repeatable): NAME=DIR.
    #[arg(long = "lora", value_name = "NAME=DIR")]
    pub lora: Vec<String>,
}

pub fn main(a: ServeArgs) -> Result<()> {
    let mut adapters = Vec::new();
    for spec in &a.lora {
        let (name, dir) = spec.split_once('=').with_context(|| format!("--lora {spec}: expected NAME=DIR"))?;
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
        let cfg = ServerConfig {
            host: a.host.clone(),
            port: a.port,
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
            adapters,
            ..ServerConfig::default()
        };
        let server = Server::bind(cfg).await?;
        // Scripts read this line to find the port.
        eprintln!("hearth serve: listening on http://{}", server.local_addr());
        let source = ModelSource::Path {
            path: a.model.clone(),
            engine: EngineConfig {
                threads: a.threads,
                ..Default::default()
            },
        };
        let shutdown = async {
            let _ = tokio::signal::ctrl_c().await;
        };
        server
            .run(source, shutdown)
            .await
            .with_context(|| format!("serving {}", a.model.display()))
    })
}
