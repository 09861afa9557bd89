//! A fault-injection server for tests (feature `testing`).
//!
//! [`FaultServer`] is a real HTTP/1.1 server on 127.0.0.1 that answers
//! `POST /v1/chat/completions` like an OpenAI-compatible endpoint — a
//! deterministic echo, streamed as `chat.completion.chunk` SSE events with
//! chunked transfer encoding — and misbehaves on command: per mode
//! ([`FaultServer::set_mode`]), per upcoming request
//! ([`FaultServer::push_faults`]), for the first k attempts of every distinct
//! request body ([`FaultServer::set_flaky`], which makes "succeeds after a
//! retry" testable under concurrency), or by closing its port
//! ([`FaultServer::set_refusing`]).
//!
//! It records every byte it receives ([`FaultServer::received_bytes`]) and
//! every parsed request ([`FaultServer::requests`]), for privacy tests that
//! check what left the machine.
//!
//! The echo: the answer text is [`echo_reply`] of the last user message,
//! streamed word by word (one content chunk per word, trailing space
//! included); with `tools` (and `tool_choice` not `"none"`) the answer is
//! instead one call of the chosen (or first) tool with arguments
//! `{"echo": <last user text>}`, streamed in three fragments. `n` choices get
//! the same answer, interleaved. Usage (when `stream_options.include_usage`)
//! is `prompt_tokens` = whitespace-separated words over all message contents,
//! `completion_tokens` = content chunks over all choices.
//!
//! Deliberately absent: keep-alive (every response closes its connection, so
//! connection counts equal attempts), chunked request bodies, TLS.

use std::collections::{HashMap, VecDeque};
use std::hash::{Hash, Hasher};
use std::io;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use serde_json::{json, Value};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{mpsc, oneshot};
use tokio::task::JoinSet;

/// How the server treats a request.
#[derive(Clone, Debug, PartialEq)]
pub enum Fault {
    /// Answer normally.
    None,
    /// Read the request, then reset the connection (RST) without a byte.
    ResetBeforeHeaders,
    /// Read the request, then close the connection (FIN) without a byte.
    CloseBeforeHeaders,
    /// Send headers and the first `after_events` SSE events, then reset.
    ResetMidStream { after_events: usize },
    /// Read the request and never answer (until the client goes away).
    BlackHole,
    /// Send headers and the first `after_events` SSE events, then nothing
    /// more (the connection stays open until the client goes away).
    Stall { after_events: usize },
    /// Send the normal answer one byte at a time, `byte_delay` apart.
    Slow { byte_delay: Duration },
    /// Answer with this status, an optional `Retry-After` value and a body.
    Status { code: u16, retry_after: Option<String>, body: String },
    /// After `after_events` events, a `data:` line that is not JSON.
    MalformedJson { after_events: usize },
    /// After `after_events` events, a `data:` line that is not UTF-8.
    MalformedSse { after_events: usize },
    /// After `after_events` events, end the body cleanly, without `[DONE]`.
    Truncated { after_events: usize },
    /// After `after_events` events, an in-stream `{"error": ...}` object.
    InStreamError { after_events: usize },
    /// 200 with a `text/html` page (a captive portal or proxy).
    Html,
    /// The whole answer as one `chat.completion` JSON object (an endpoint
    /// that ignores `stream: true`).
    NonStreaming,
}

impl Fault {
    /// A plain status answer with an OpenAI-style error body.
    pub fn status(code: u16) -> Fault {
        Fault::Status {
            code,
            retry_after: None,
            body: json!({"error": {"message": format!("injected status {code}"), "type": "server_error"}}).to_string(),
        }
    }

    /// 429 with `Retry-After: <value>`.
    pub fn too_many_requests(retry_after: impl Into<String>) -> Fault {
        Fault::Status {
            code: 429,
            retry_after: Some(retry_after.into()),
            body: json!({"error": {"message": "rate limited", "type": "rate_limit_error"}}).to_string(),
        }
    }
}

/// One request as the server parsed it.
#[derive(Clone, Debug)]
pub struct RecordedRequest {
    pub method: String,
    pub path: String,
    /// Header names lower-cased, in arrival order.
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
    /// What the server did with it.
    pub fault: Fault,
}

impl RecordedRequest {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.iter().find(|(n, _)| n.eq_ignore_ascii_case(name)).map(|(_, v)| v.as_str())
    }

    pub fn json(&self) -> Option<Value> {
        serde_json::from_slice(&self.body).ok()
    }
}

/// The echo answer for a last user message.
pub fn echo_reply(user_text: &str) -> String {
    format!("echo: {user_text}")
}

#[derive(Default)]
struct Shared {
    mode: Mutex<Option<Fault>>,
    queue: Mutex<VecDeque<Fault>>,
    flaky: Mutex<Option<(Fault, u32)>>,
    attempts_by_body: Mutex<HashMap<u64, u32>>,
    received: Mutex<Vec<u8>>,
    requests: Mutex<Vec<RecordedRequest>>,
    connections: AtomicU64,
    open: AtomicU64,
}

/// Counts a connection as open until its handler ends or is aborted.
struct OpenGuard(Arc<Shared>);

impl OpenGuard {
    fn new(shared: Arc<Shared>) -> OpenGuard {
        shared.open.fetch_add(1, Ordering::SeqCst);
        OpenGuard(shared)
    }
}

impl Drop for OpenGuard {
    fn drop(&mut self) {
        self.0.open.fetch_sub(1, Ordering::SeqCst);
    }
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

enum Cmd {
    Refuse(bool, oneshot::Sender<io::Result<()>>),
}

/// See the module docs. Dropping it stops the server and all connections.
pub struct FaultServer {
    addr: SocketAddr,
    shared: Arc<Shared>,
    cmd: mpsc::Sender<Cmd>,
    task: tokio::task::JoinHandle<()>,
}

impl FaultServer {
    /// Binds 127.0.0.1 on a free port and starts serving (needs a Tokio
    /// runtime with I/O and time enabled).
    pub async fn start() -> io::Result<FaultServer> {
        let listener = TcpListener::bind("127.0.0.1:0").await?;
        let addr = listener.local_addr()?;
        let shared = Arc::new(Shared::default());
        let (cmd, rx) = mpsc::channel(4);
        let task = tokio::spawn(accept_loop(listener, addr, shared.clone(), rx));
        Ok(FaultServer { addr, shared, cmd, task })
    }

    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// `http://127.0.0.1:<port>/v1`, the base URL for `CloudConfig`.
    pub fn base_url(&self) -> String {
        format!("http://{}/v1", self.addr)
    }

    /// The treatment of requests not covered by queued or flaky faults.
    pub fn set_mode(&self, fault: Fault) {
        *lock(&self.shared.mode) = Some(fault);
    }

    /// Faults for the next requests, one each, in arrival order.
    pub fn push_faults(&self, faults: impl IntoIterator<Item = Fault>) {
        lock(&self.shared.queue).extend(faults);
    }

    /// The first `failures` attempts of every distinct request body get
    /// `fault`; later attempts with the same body are answered by the mode.
    pub fn set_flaky(&self, fault: Fault, failures: u32) {
        *lock(&self.shared.flaky) = Some((fault, failures));
        lock(&self.shared.attempts_by_body).clear();
    }

    pub fn clear_flaky(&self) {
        *lock(&self.shared.flaky) = None;
    }

    /// Closes (`true`) or reopens (`false`) the listening port; returns once
    /// done, so connections made afterwards are refused / accepted.
    pub async fn set_refusing(&self, refusing: bool) -> io::Result<()> {
        let (tx, rx) = oneshot::channel();
        self.cmd.send(Cmd::Refuse(refusing, tx)).await.map_err(|_| io::Error::other("fault server stopped"))?;
        rx.await.map_err(|_| io::Error::other("fault server stopped"))?
    }

    /// TCP connections accepted so far.
    pub fn connections(&self) -> u64 {
        self.shared.connections.load(Ordering::SeqCst)
    }

    /// Connections whose handler is still running (a black hole or a stall
    /// stays open until the client closes its side).
    pub fn open_connections(&self) -> u64 {
        self.shared.open.load(Ordering::SeqCst)
    }

    /// Every request parsed so far.
    pub fn requests(&self) -> Vec<RecordedRequest> {
        lock(&self.shared.requests).clone()
    }

    /// Every byte received on every connection, in arrival order.
    pub fn received_bytes(&self) -> Vec<u8> {
        lock(&self.shared.received).clone()
    }

    /// Forgets recorded requests, bytes and the connection count.
    pub fn reset_records(&self) {
        lock(&self.shared.requests).clear();
        lock(&self.shared.received).clear();
        self.shared.connections.store(0, Ordering::SeqCst);
    }
}

impl Drop for FaultServer {
    fn drop(&mut self) {
        self.task.abort();
    }
}

async fn accept_loop(listener: TcpListener, addr: SocketAddr, shared: Arc<Shared>, mut cmds: mpsc::Receiver<Cmd>) {
    // Connection tasks live in the set, so aborting this task (dropping the
    // server) aborts them all.
    let mut conns = JoinSet::new();
    let mut listener = Some(listener);
    loop {
        while conns.try_join_next().is_some() {}
        tokio::select! {
            cmd = cmds.recv() => match cmd {
                None => return,
                Some(Cmd::Refuse(refuse, ack)) => {
                    let r = if refuse {
                        listener = None;
                        Ok(())
                    } else if listener.is_none() {
                        // Tokio sets SO_REUSEADDR on Unix, so the port can be
                        // bound again right away.
                        TcpListener::bind(addr).await.map(|l| listener = Some(l))
                    } else {
                        Ok(())
                    };
                    let _ = ack.send(r);
                }
            },
            accepted = async {
                match &listener {
                    Some(l) => l.accept().await,
                    None => std::future::pending().await,
                }
            } => {
                if let Ok((stream, _)) = accepted {
                    shared.connections.fetch_add(1, Ordering::SeqCst);
                    let open = OpenGuard::new(shared.clone());
                    conns.spawn(async move {
                        let _open = open;
                        handle(stream, _open.0.clone()).await
                    });
                }
            }
        }
    }
}

struct Request {
    method: String,
    path: String,
    headers: Vec<(String, String)>,
    body: Vec<u8>,
}

const MAX_HEAD: usize = 64 << 10;
const MAX_BODY: usize = 64 << 20;

/// Reads one request; `None` if the client went away or sent garbage.
async fn read_request(stream: &mut TcpStream, shared: &Shared) -> Option<Request> {
    let mut buf = Vec::new();
    let mut chunk = [0u8; 8192];
    let head_end = loop {
        if let Some(i) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            break i + 4;
        }
        if buf.len() > MAX_HEAD {
            return None;
        }
        let n = stream.read(&mut chunk).await.ok()?;
        if n == 0 {
            return None;
        }
        lock(&shared.received).extend_from_slice(&chunk[..n]);
        buf.extend_from_slice(&chunk[..n]);
    };
    let head = std::str::from_utf8(&buf[..head_end]).ok()?;
    let mut lines = head.split("\r\n");
    let mut first = lines.next()?.split(' ');
    let method = first.next()?.to_string();
    let path = first.next()?.to_string();
    let headers: Vec<(String, String)> = lines
        .filter(|l| !l.is_empty())
        .filter_map(|l| l.split_once(':').map(|(n, v)| (n.trim().to_ascii_lowercase(), v.trim().to_string())))
        .collect();
    let len = headers.iter().find(|(n, _)| n == "content-length").and_then(|(_, v)| v.parse::<usize>().ok()).unwrap_or(0);
    if len > MAX_BODY {
        return None;
    }
    let mut body = buf[head_end..].to_vec();
    while body.len() < len {
        let n = stream.read(&mut chunk).await.ok()?;
        if n == 0 {
            return None;
        }
        lock(&shared.received).extend_from_slice(&chunk[..n]);
        body.extend_from_slice(&chunk[..n]);
    }
    body.truncate(len);
    Some(Request { method, path, headers, body })
}

fn choose_fault(shared: &Shared, body: &[u8]) -> Fault {
    if let Some(f) = lock(&shared.queue).pop_front() {
        return f;
    }
    if let Some((fault, failures)) = lock(&shared.flaky).clone() {
        let mut h = std::collections::hash_map::DefaultHasher::new();
        body.hash(&mut h);
        let mut attempts = lock(&shared.attempts_by_body);
        let n = attempts.entry(h.finish()).or_insert(0);
        *n += 1;
        if *n <= failures {
            return fault;
        }
    }
    lock(&shared.mode).clone().unwrap_or(Fault::None)
}

async fn handle(mut stream: TcpStream, shared: Arc<Shared>) {
    let _ = stream.set_nodelay(true);
    let Some(req) = read_request(&mut stream, &shared).await else {
        return;
    };
    let fault = if req.method == "POST" && req.path == "/v1/chat/completions" {
        choose_fault(&shared, &req.body)
    } else {
        Fault::Status { code: 404, retry_after: None, body: json!({"error": {"message": "not found"}}).to_string() }
    };
    lock(&shared.requests).push(RecordedRequest {
        method: req.method,
        path: req.path,
        headers: req.headers,
        body: req.body.clone(),
        fault: fault.clone(),
    });
    let parsed: Option<Value> = serde_json::from_slice(&req.body).ok();
    let script = match &parsed {
        Some(v) => Script::echo(v),
        None if !matches!(fault, Fault::Status { .. }) => {
            let body = json!({"error": {"message": "request body is not JSON"}}).to_string();
            let _ = write_all(&mut stream, &status_response(400, None, &body)).await;
            return;
        }
        None => Script::echo(&Value::Null),
    };
    let _ = respond(stream, &fault, &script).await;
}

async fn write_all(stream: &mut TcpStream, bytes: &[u8]) -> io::Result<()> {
    stream.write_all(bytes).await?;
    stream.flush().await
}

/// Holds the connection open, reading and discarding, until the peer
/// closes it.
async fn wait_for_close(stream: &mut TcpStream) {
    let mut sink = [0u8; 1024];
    loop {
        match stream.read(&mut sink).await {
            Ok(0) | Err(_) => return,
            Ok(_) => {}
        }
    }
}

fn reset(stream: TcpStream) {
    // SO_LINGER with a zero timeout makes close() send RST instead of FIN.
    let _ = socket2::SockRef::from(&stream).set_linger(Some(Duration::ZERO));
    drop(stream);
}

fn reason(code: u16) -> &'static str {
    match code {
        400 => "Bad Request",
        401 => "Unauthorized",
        403 => "Forbidden",
        404 => "Not Found",
        408 => "Request Timeout",
        413 => "Payload Too Large",
        422 => "Unprocessable Entity",
        429 => "Too Many Requests",
        500 => "Internal Server Error",
        502 => "Bad Gateway",
        503 => "Service Unavailable",
        504 => "Gateway Timeout",
        _ => "Status",
    }
}

fn status_response(code: u16, retry_after: Option<&str>, body: &str) -> Vec<u8> {
    let mut s = format!(
        "HTTP/1.1 {code} {}\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n",
        reason(code),
        body.len()
    );
    if let Some(r) = retry_after {
        s.push_str(&format!("retry-after: {r}\r\n"));
    }
    s.push_str("\r\n");
    s.push_str(body);
    s.into_bytes()
}

const SSE_HEAD: &[u8] = b"HTTP/1.1 200 OK\r\ncontent-type: text/event-stream\r\ncache-control: no-cache\r\ntransfer-encoding: chunked\r\nconnection: close\r\n\r\n";

/// One HTTP/1.1 chunk of the chunked transfer coding (RFC 9112 §7.1).
fn http_chunk(data: &[u8]) -> Vec<u8> {
    let mut v = format!("{:x}\r\n", data.len()).into_bytes();
    v.extend_from_slice(data);
    v.extend_from_slice(b"\r\n");
    v
}

fn sse(data: &str) -> Vec<u8> {
    http_chunk(format!("data: {data}\n\n").as_bytes())
}

const LAST_CHUNK: &[u8] = b"0\r\n\r\n";

async fn respond(mut stream: TcpStream, fault: &Fault, script: &Script) -> io::Result<()> {
    // The events of the normal answer, `[DONE]` last.
    let events: Vec<Vec<u8>> = script.events.iter().map(|e| sse(e)).chain(std::iter::once(sse("[DONE]"))).collect();
    let prefix = |after: usize| -> Vec<u8> {
        let mut v = SSE_HEAD.to_vec();
        for e in events.iter().take(after) {
            v.extend_from_slice(e);
        }
        v
    };
    let normal = prefix(events.len()).into_iter().chain(LAST_CHUNK.iter().copied()).collect::<Vec<u8>>();
    match fault {
        Fault::None => write_all(&mut stream, &normal).await,
        Fault::ResetBeforeHeaders => {
            reset(stream);
            Ok(())
        }
        Fault::CloseBeforeHeaders => stream.shutdown().await,
        Fault::ResetMidStream { after_events } => {
            write_all(&mut stream, &prefix(*after_events)).await?;
            // Let the bytes reach the peer before the reset overtakes them.
            tokio::time::sleep(Duration::from_millis(20)).await;
            reset(stream);
            Ok(())
        }
        Fault::BlackHole => {
            wait_for_close(&mut stream).await;
            Ok(())
        }
        Fault::Stall { after_events } => {
            write_all(&mut stream, &prefix(*after_events)).await?;
            wait_for_close(&mut stream).await;
            Ok(())
        }
        Fault::Slow { byte_delay } => {
            for b in &normal {
                stream.write_all(std::slice::from_ref(b)).await?;
                stream.flush().await?;
                if byte_delay.is_zero() {
                    tokio::task::yield_now().await;
                } else {
                    tokio::time::sleep(*byte_delay).await;
                }
            }
            Ok(())
        }
        Fault::Status { code, retry_after, body } => write_all(&mut stream, &status_response(*code, retry_after.as_deref(), body)).await,
        Fault::MalformedJson { after_events } => {
            let mut v = prefix(*after_events);
            v.extend(sse(r#"{"choices":[{"index":0,"delta":{"content": oops}}"#));
            v.extend(sse("[DONE]"));
            v.extend_from_slice(LAST_CHUNK);
            write_all(&mut stream, &v).await
        }
        Fault::MalformedSse { after_events } => {
            let mut v = prefix(*after_events);
            v.extend(http_chunk(b"data: \xff\xfe\xfd not utf-8\n\n"));
            v.extend(sse("[DONE]"));
            v.extend_from_slice(LAST_CHUNK);
            write_all(&mut stream, &v).await
        }
        Fault::Truncated { after_events } => {
            let mut v = prefix(*after_events);
            v.extend_from_slice(LAST_CHUNK);
            write_all(&mut stream, &v).await
        }
        Fault::InStreamError { after_events } => {
            let mut v = prefix(*after_events);
            v.extend(sse(&json!({"error": {"message": "injected overload", "type": "server_error", "code": 503}}).to_string()));
            v.extend_from_slice(LAST_CHUNK);
            write_all(&mut stream, &v).await
        }
        Fault::Html => {
            let body = "<!DOCTYPE html><html><body>Please log in to the Wi-Fi</body></html>";
            let head = format!(
                "HTTP/1.1 200 OK\r\ncontent-type: text/html; charset=utf-8\r\ncontent-length: {}\r\nconnection: close\r\n\r\n",
                body.len()
            );
            write_all(&mut stream, format!("{head}{body}").as_bytes()).await
        }
        Fault::NonStreaming => {
            let body = script.completion.to_string();
            let head = format!(
                "HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n",
                body.len()
            );
            write_all(&mut stream, format!("{head}{body}").as_bytes()).await
        }
    }
}

/// The normal answer to one request, as SSE payloads and as one object.
struct Script {
    events: Vec<String>,
    completion: Value,
}

fn words(s: &str) -> Vec<String> {
    // Split after each run of whitespace so the pieces concatenate back to
    // the original text exactly.
    let mut out = Vec::new();
    let mut cur = String::new();
    let mut in_space = false;
    for c in s.chars() {
        if in_space && !c.is_whitespace() {
            out.push(std::mem::take(&mut cur));
        }
        in_space = c.is_whitespace();
        cur.push(c);
    }
    if !cur.is_empty() {
        out.push(cur);
    }
    out
}

impl Script {
    fn echo(req: &Value) -> Script {
        let model = req.get("model").and_then(Value::as_str).unwrap_or("echo").to_string();
        let messages = req.get("messages").and_then(Value::as_array).cloned().unwrap_or_default();
        let user = messages
            .iter()
            .rev()
            .find(|m| m.get("role").and_then(Value::as_str) == Some("user"))
            .and_then(|m| m.get("content").and_then(Value::as_str))
            .unwrap_or("")
            .to_string();
        let prompt_tokens: usize = messages
            .iter()
            .filter_map(|m| m.get("content").and_then(Value::as_str))
            .map(|c| c.split_whitespace().count())
            .sum();
        let n = req.get("n").and_then(Value::as_u64).unwrap_or(1).clamp(1, 8) as u32;
        let include_usage = req.pointer("/stream_options/include_usage").and_then(Value::as_bool).unwrap_or(false);
        let tools = req.get("tools").and_then(Value::as_array).cloned().unwrap_or_default();
        let choice = req.get("tool_choice");
        let tool_name = if tools.is_empty() || choice.and_then(Value::as_str) == Some("none") {
            None
        } else {
            choice
                .and_then(|c| c.pointer("/function/name"))
                .or_else(|| tools[0].pointer("/function/name"))
                .and_then(Value::as_str)
                .map(str::to_string)
        };

        let base = |choices: Value| {
            json!({"id": "chatcmpl-fault", "object": "chat.completion.chunk", "created": 0, "model": model, "choices": choices})
        };
        let mut events = Vec::new();
        let mut completion_tokens = 0usize;
        let mut message = json!({"role": "assistant", "content": null});
        let finish = if tool_name.is_some() { "tool_calls" } else { "stop" };
        for i in 0..n {
            events.push(base(json!([{"index": i, "delta": {"role": "assistant", "content": ""}, "finish_reason": null}])));
        }
        match &tool_name {
            None => {
                let text = echo_reply(&user);
                let pieces = words(&text);
                for p in &pieces {
                    for i in 0..n {
                        events.push(base(json!([{"index": i, "delta": {"content": p}, "finish_reason": null}])));
                    }
                }
                completion_tokens = pieces.len() * n as usize;
                message["content"] = json!(text);
            }
            Some(name) => {
                let args = json!({"echo": user}).to_string();
                let cut1 = (1..=args.len() / 3).rev().find(|&k| args.is_char_boundary(k)).unwrap_or(0);
                let cut2 = (cut1..=2 * args.len() / 3).rev().find(|&k| args.is_char_boundary(k)).unwrap_or(cut1);
                for i in 0..n {
                    let id = format!("call_fault_{i}");
                    events.push(base(json!([{"index": i, "delta": {"tool_calls": [
                        {"index": 0, "id": id, "type": "function", "function": {"name": name, "arguments": &args[..cut1]}}]}}])));
                    events.push(base(json!([{"index": i, "delta": {"tool_calls": [{"index": 0, "function": {"arguments": &args[cut1..cut2]}}]}}])));
                    events.push(base(json!([{"index": i, "delta": {"tool_calls": [{"index": 0, "function": {"arguments": &args[cut2..]}}]}}])));
                }
                message["tool_calls"] =
                    json!([{"id": "call_fault_0", "type": "function", "function": {"name": name, "arguments": args}}]);
            }
        }
        for i in 0..n {
            events.push(base(json!([{"index": i, "delta": {}, "finish_reason": finish}])));
        }
        let usage = json!({"prompt_tokens": prompt_tokens, "completion_tokens": completion_tokens,
                           "total_tokens": prompt_tokens + completion_tokens});
        if include_usage {
            let mut u = base(json!([]));
            u["usage"] = usage.clone();
            events.push(u);
        }
        let completion = json!({
            "id": "chatcmpl-fault", "object": "chat.completion", "created": 0, "model": model,
            "choices": (0..n).map(|i| json!({"index": i, "message": message, "finish_reason": finish})).collect::<Vec<_>>(),
            "usage": usage,
        });
        Script { events: events.into_iter().map(|e| e.to_string()).collect(), completion }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn words_concatenate_back() {
        for s in ["echo: hello  world ", "", "one", " lead", "a\tb\nc"] {
            assert_eq!(words(s).concat(), s);
        }
        assert_eq!(words("echo: hi there"), vec!["echo: ", "hi ", "there"]);
    }

    #[test]
    fn echo_script_shape() {
        let s = Script::echo(&json!({"messages": [{"role": "system", "content": "be nice"}, {"role": "user", "content": "hi there"}],
                                    "stream_options": {"include_usage": true}}));
        // role, 3 words, finish, usage
        assert_eq!(s.events.len(), 6);
        let last: Value = serde_json::from_str(&s.events[5]).unwrap();
        assert_eq!(last["usage"]["prompt_tokens"], 4);
        assert_eq!(last["usage"]["completion_tokens"], 3);
    }
}
