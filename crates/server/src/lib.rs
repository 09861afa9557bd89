//! Hearth's OpenAI-compatible HTTP server.
//!
//! The request path: wire JSON → validated `hearth_api::ChatRequest`
//! ([`wire`]) → with a gateway, guard → router → privacy veto (`hybrid`,
//! [`hearth_gateway`]) → the engine's batching
//! [`Scheduler`](hearth_engine::scheduler::Scheduler) → token events → JSON
//! or SSE ([`backend`]). OpenAI wire types live only in this crate; errors
//! become HTTP responses in one place ([`error`]).
//!
//! Routes (each also without the `/v1` prefix): `POST /v1/chat/completions`,
//! `POST /v1/completions`, `POST /v1/embeddings` (501 until an [`Embedder`]
//! is configured), `GET /v1/models`, `GET /v1/models/{id}`, `GET /health`
//! (503 while the model loads), `GET /metrics` (Prometheus text).
//!
//! Safe by default: binds loopback, refuses a non-loopback address without
//! an API key, checks the API key in constant time on every route but
//! `/health`, allows only loopback names, IP literals, the bound host and
//! `--allow-host` names in `Host` (DNS rebinding needs a name the attacker
//! controls, so IP literals cannot be rebound), limits bodies (413), times
//! out slow headers (slowloris) and slow bodies, caps connections, and
//! fetches no URLs.
//!
//! `response_format` (`json_object`, `json_schema`) and `tools` /
//! `tool_choice` use hearth-grammar: token masks as per-choice logits
//! processors in the scheduler, tool calls detected in the output
//! ([`backend`]).
//!
//! Deliberately absent: TLS (put a reverse proxy in front), HTTP/2, CORS
//! headers (browsers on other origins cannot read responses), several
//! prompts per legacy completions request, streaming of partial tool-call
//! arguments.

pub mod backend;
pub mod embed;
pub mod error;
pub mod http;
mod hybrid;
pub mod metrics;
pub mod testing;
pub mod wire;

pub use backend::Local;
pub use embed::Embedder;
pub use error::ApiError;
pub use hearth_guard::Secret;

use hearth_engine::scheduler::SchedulerConfig;
use hearth_engine::{Engine, EngineConfig, EngineError};
use hyper::server::conn::http1;
use hyper_util::rt::{TokioIo, TokioTimer};
use std::future::Future;
use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;
use std::sync::atomic::AtomicU64;
use std::sync::{Arc, OnceLock};
use std::time::Duration;
use tokio::net::TcpListener;
use tokio::sync::Semaphore;

/// Server settings.
#[derive(Clone)]
pub struct ServerConfig {
    /// Address or name to bind (default loopback).
    pub host: String,
    /// 0 picks a free port.
    pub port: u16,
    pub api_key: Option<Secret>,
    /// Extra names accepted in `Host` (`*` accepts any).
    pub allow_hosts: Vec<String>,
    /// Largest request body in bytes.
    pub body_limit: usize,
    /// Time allowed for a request's headers, and for an idle keep-alive
    /// connection to send its next request.
    pub header_timeout: Duration,
    /// Time allowed to receive a request body.
    pub body_timeout: Duration,
    /// Open connections beyond this are closed at once.
    pub max_connections: usize,
    /// The id `/v1/models` lists (default: the model file's stem).
    pub model_alias: Option<String>,
    pub scheduler: SchedulerConfig,
    pub embedder: Option<Arc<dyn Embedder>>,
    /// Routing between the local model and a cloud model, with the privacy
    /// guard, audit log and ledger (`hearth serve --config`). `None`: every
    /// chat request is answered locally, as before.
    pub gateway: Option<Arc<hearth_gateway::Gateway>>,
    /// PEFT LoRA adapters `(name, directory)` served next to the base as
    /// model `{base id}+{name}`, each merged into its own copy of the
    /// adapted matrices (`hearth_engine::lora`) with its own scheduler.
    pub adapters: Vec<(String, PathBuf)>,
}

impl Default for ServerConfig {
    fn default() -> Self {
        ServerConfig {
            host: "127.0.0.1".into(),
            port: 8080,
            api_key: None,
            allow_hosts: Vec::new(),
            body_limit: 2 << 20,
            header_timeout: Duration::from_secs(10),
            body_timeout: Duration::from_secs(30),
            max_connections: 512,
            model_alias: None,
            scheduler: SchedulerConfig::default(),
            embedder: None,
            gateway: None,
            adapters: Vec::new(),
        }
    }
}

/// Where the model comes from.
pub enum ModelSource {
    /// Loaded in the background after binding; `/health` is 503 until done.
    Path { path: PathBuf, engine: EngineConfig },
    /// Already loaded (tests, embedding the server).
    Loaded(Arc<Engine>),
    /// Loaded by a caller-supplied function on a blocking thread, after
    /// binding; `/health` is 503 until it returns.
    Loader(LoadFn),
}

#[derive(Debug, thiserror::Error)]
pub enum ServerError {
    #[error(
        "refusing to listen on {host} ({addr}), which is reachable from other machines, without an API key; pass --api-key (or bind 127.0.0.1)"
    )]
    InsecureBind { host: String, addr: IpAddr },
    #[error("cannot resolve {host}: {source}")]
    Resolve {
        host: String,
        source: std::io::Error,
    },
    #[error("cannot listen on {addr}: {source}")]
    Bind {
        addr: String,
        source: std::io::Error,
    },
    #[error("an API key must not be empty")]
    EmptyKey,
    #[error("loading the model: {0}")]
    Load(#[from] EngineError),
    #[error("the model loader failed: {0}")]
    LoaderPanicked(String),
}

type LoadFn = Box<dyn FnOnce() -> Result<Arc<Engine>, EngineError> + Send>;

fn spawn_loader(
    state: Arc<State>,
    sched: SchedulerConfig,
    id: Option<String>,
    adapters: Vec<(String, PathBuf)>,
    load: LoadFn,
) -> tokio::task::JoinHandle<Result<(), ServerError>> {
    tokio::task::spawn_blocking(move || {
        let engine = load()?;
        let id = id.unwrap_or_else(|| {
            engine
                .model()
                .path
                .file_stem()
                .map(|s| s.to_string_lossy().into_owned())
                .unwrap_or_else(|| "hearth".into())
        });
        let with = adapter_locals(&engine, &sched, &id, &adapters)?;
        let local = Local::new(engine, sched, id)?;
        let _ = state.adapters.set(with);
        let _ = state.local.set(Arc::new(local));
        tracing::info!("model loaded");
        Ok(())
    })
}

/// One backend per adapter, named `{base_id}+{name}`.
fn adapter_locals(
    engine: &Arc<Engine>,
    sched: &SchedulerConfig,
    base_id: &str,
    adapters: &[(String, PathBuf)],
) -> Result<Vec<Arc<Local>>, ServerError> {
    let mut out = Vec::with_capacity(adapters.len());
    for (name, dir) in adapters {
        let tuned = Arc::new(engine.with_adapter(dir)?);
        out.push(Arc::new(Local::new(tuned, sched.clone(), format!("{base_id}+{name}"))?));
        tracing::info!(adapter = %name, "adapter loaded");
    }
    Ok(out)
}

/// Shared by every connection.
pub struct State {
    pub(crate) local: OnceLock<Arc<Local>>,
    /// Adapter backends ([`ServerConfig::adapters`]); set before `local`.
    pub(crate) adapters: OnceLock<Vec<Arc<Local>>>,
    pub(crate) metrics: Arc<metrics::Metrics>,
    pub(crate) api_key: Option<Secret>,
    pub(crate) allowed_hosts: Vec<String>,
    pub(crate) allow_any_host: bool,
    pub(crate) body_limit: usize,
    pub(crate) body_timeout: Duration,
    pub(crate) embedder: Option<Arc<dyn Embedder>>,
    pub(crate) gateway: Option<Arc<hearth_gateway::Gateway>>,
    pub(crate) ids: AtomicU64,
    pub(crate) boot: u32,
}

/// A bound, not yet serving, server.
pub struct Server {
    listener: TcpListener,
    state: Arc<State>,
    cfg: ServerConfig,
}

impl Server {
    /// Resolves and binds `cfg.host:cfg.port`, enforcing the loopback rule.
    pub async fn bind(cfg: ServerConfig) -> Result<Server, ServerError> {
        if cfg.api_key.as_ref().is_some_and(|k| k.expose().is_empty()) {
            return Err(ServerError::EmptyKey);
        }
        let target = format!(
            "{}:{}",
            cfg.host.trim_start_matches('[').trim_end_matches(']'),
            cfg.port
        );
        let target = if cfg.host.contains(':') {
            format!(
                "[{}]:{}",
                cfg.host.trim_start_matches('[').trim_end_matches(']'),
                cfg.port
            )
        } else {
            target
        };
        let addrs: Vec<SocketAddr> = tokio::net::lookup_host(&target)
            .await
            .map_err(|source| ServerError::Resolve {
                host: cfg.host.clone(),
                source,
            })?
            .collect();
        let Some(addr) = addrs
            .iter()
            .find(|a| a.ip().is_loopback())
            .or(addrs.first())
            .copied()
        else {
            return Err(ServerError::Resolve {
                host: cfg.host.clone(),
                source: std::io::Error::other("no addresses"),
            });
        };
        if !addr.ip().is_loopback() && cfg.api_key.is_none() {
            return Err(ServerError::InsecureBind {
                host: cfg.host.clone(),
                addr: addr.ip(),
            });
        }
        let listener = TcpListener::bind(addr)
            .await
            .map_err(|source| ServerError::Bind {
                addr: addr.to_string(),
                source,
            })?;
        let mut allowed: Vec<String> = cfg.allow_hosts.iter().map(|h| http::host_name(h)).collect();
        allowed.push(http::host_name(&cfg.host));
        let boot = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_secs() as u32)
            .unwrap_or(0);
        let state = Arc::new(State {
            local: OnceLock::new(),
            adapters: OnceLock::new(),
            metrics: Arc::new(metrics::Metrics::default()),
            api_key: cfg.api_key.clone(),
            allow_any_host: cfg.allow_hosts.iter().any(|h| h == "*"),
            allowed_hosts: allowed,
            body_limit: cfg.body_limit,
            body_timeout: cfg.body_timeout,
            embedder: cfg.embedder.clone(),
            gateway: cfg.gateway.clone(),
            ids: AtomicU64::new(0),
            boot,
        });
        Ok(Server {
            listener,
            state,
            cfg,
        })
    }

    pub fn local_addr(&self) -> SocketAddr {
        // A bound listener always has an address.
        self.listener
            .local_addr()
            .unwrap_or_else(|_| SocketAddr::from(([127, 0, 0, 1], 0)))
    }

    /// Serves until `shutdown` completes (or the model fails to load).
    pub async fn run(
        self,
        source: ModelSource,
        shutdown: impl Future<Output = ()>,
    ) -> Result<(), ServerError> {
        let Server {
            listener,
            state,
            cfg,
        } = self;
        let model_id = |path: Option<&std::path::Path>| {
            cfg.model_alias.clone().unwrap_or_else(|| {
                path.and_then(|p| p.file_stem())
                    .map(|s| s.to_string_lossy().into_owned())
                    .unwrap_or_else(|| "hearth".into())
            })
        };
        let sched = cfg.scheduler.clone();
        let loader = match source {
            ModelSource::Loaded(engine) => {
                let id = model_id(Some(&engine.model().path));
                let _ = state.adapters.set(adapter_locals(&engine, &sched, &id, &cfg.adapters)?);
                let _ = state.local.set(Arc::new(Local::new(engine, sched, id)?));
                None
            }
            ModelSource::Path { path, engine } => {
                let id = model_id(Some(&path));
                Some(spawn_loader(
                    Arc::clone(&state),
                    sched,
                    Some(id),
                    cfg.adapters.clone(),
                    Box::new(move || Ok(Arc::new(Engine::load(&path, engine)?))),
                ))
            }
            ModelSource::Loader(load) => Some(spawn_loader(
                Arc::clone(&state),
                sched,
                cfg.model_alias.clone(),
                cfg.adapters.clone(),
                load,
            )),
        };
        let conns = Arc::new(Semaphore::new(cfg.max_connections.max(1)));
        tokio::pin!(shutdown);
        let mut loader = loader;
        loop {
            tokio::select! {
                _ = &mut shutdown => return Ok(()),
                done = async {
                    match loader.as_mut() {
                        Some(h) => h.await,
                        None => std::future::pending().await,
                    }
                }, if loader.is_some() => {
                    loader = None;
                    match done {
                        Ok(Ok(())) => {}
                        Ok(Err(e)) => return Err(e),
                        Err(e) => return Err(ServerError::LoaderPanicked(e.to_string())),
                    }
                }
                accepted = listener.accept() => {
                    let Ok((stream, _peer)) = accepted else { continue };
                    let Ok(permit) = Arc::clone(&conns).try_acquire_owned() else {
                        // Over the connection cap: close at once.
                        drop(stream);
                        continue;
                    };
                    let _ = stream.set_nodelay(true);
                    let st = Arc::clone(&state);
                    let header_timeout = cfg.header_timeout;
                    tokio::spawn(async move {
                        let svc = hyper::service::service_fn(move |req| http::handle(Arc::clone(&st), req));
                        let conn = http1::Builder::new()
                            .timer(TokioTimer::new())
                            .header_read_timeout(header_timeout)
                            .max_buf_size(64 << 10)
                            .serve_connection(TokioIo::new(stream), svc);
                        let _ = conn.await;
                        drop(permit);
                    });
                }
            }
        }
    }
}
