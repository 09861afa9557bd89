//! Shared test support: the random-weight test model (written once per test
//! binary), an in-process server on an ephemeral port, and a minimal
//! blocking HTTP/1.1 client that gives full control over headers and lets a
//! test read a stream incrementally or hang up mid-stream.
#![allow(dead_code)]

use hearth_engine::{Engine, EngineConfig};
use hearth_server::testing::{qwen2_vocab_path, write_test_model, TestModelSpec};
use hearth_server::{ModelSource, Server, ServerConfig};
use serde_json::Value;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::PathBuf;
use std::sync::{Arc, OnceLock};
use std::time::Duration;

pub fn model_path() -> &'static PathBuf {
    static P: OnceLock<PathBuf> = OnceLock::new();
    P.get_or_init(|| {
        let p = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("hearth-tiny-qwen2.gguf");
        // Deterministic content, written atomically: concurrent test
        // binaries may both write it.
        write_test_model(&qwen2_vocab_path(), &p, &TestModelSpec::tiny())
            .expect("writing the test model");
        p
    })
}

pub fn engine() -> Arc<Engine> {
    static E: OnceLock<Arc<Engine>> = OnceLock::new();
    E.get_or_init(|| {
        Arc::new(
            Engine::load(
                model_path(),
                EngineConfig {
                    threads: 2,
                    ..Default::default()
                },
            )
            .expect("loading the test model"),
        )
    })
    .clone()
}

/// A server running on its own runtime thread; dropped → shut down.
pub struct TestServer {
    pub addr: SocketAddr,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl TestServer {
    pub fn start(cfg: ServerConfig) -> TestServer {
        TestServer::start_with(cfg, ModelSource::Loaded(engine()))
    }

    pub fn start_with(mut cfg: ServerConfig, source: ModelSource) -> TestServer {
        cfg.port = 0;
        let (addr_tx, addr_rx) = std::sync::mpsc::channel();
        let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
        let thread = std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_multi_thread()
                .worker_threads(2)
                .enable_all()
                .build()
                .unwrap();
            rt.block_on(async move {
                let server = Server::bind(cfg).await.expect("bind");
                addr_tx.send(server.local_addr()).unwrap();
                server
                    .run(source, async {
                        let _ = stop_rx.await;
                    })
                    .await
                    .expect("serve");
            });
        });
        let addr = addr_rx.recv().expect("server address");
        TestServer {
            addr,
            stop: Some(stop_tx),
            thread: Some(thread),
        }
    }

    pub fn default() -> TestServer {
        TestServer::start(ServerConfig::default())
    }

    pub fn post(&self, path: &str, body: &Value) -> Resp {
        request(
            self.addr,
            "POST",
            path,
            &[],
            Some(body.to_string().as_bytes()),
        )
    }

    pub fn get(&self, path: &str) -> Resp {
        request(self.addr, "GET", path, &[], None)
    }
}

impl Drop for TestServer {
    fn drop(&mut self) {
        if let Some(s) = self.stop.take() {
            let _ = s.send(());
        }
        // The runtime drops its connection tasks when the thread ends.
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

#[derive(Debug)]
pub struct Resp {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl Resp {
    pub fn json(&self) -> Value {
        serde_json::from_slice(&self.body)
            .unwrap_or_else(|e| panic!("not JSON ({e}): {}", String::from_utf8_lossy(&self.body)))
    }

    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }

    /// The `data:` payloads of an SSE body.
    pub fn events(&self) -> Vec<String> {
        self.text()
            .split("\n\n")
            .filter_map(|e| e.strip_prefix("data: "))
            .map(str::to_string)
            .collect()
    }
}

fn write_request(
    s: &mut TcpStream,
    addr: SocketAddr,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: Option<&[u8]>,
) {
    let mut req = format!("{method} {path} HTTP/1.1\r\n");
    if !headers.iter().any(|(k, _)| k.eq_ignore_ascii_case("host")) {
        req.push_str(&format!("Host: {addr}\r\n"));
    }
    for (k, v) in headers {
        req.push_str(&format!("{k}: {v}\r\n"));
    }
    if let Some(b) = body {
        req.push_str(&format!(
            "Content-Type: application/json\r\nContent-Length: {}\r\n",
            b.len()
        ));
    }
    req.push_str("Connection: close\r\n\r\n");
    s.write_all(req.as_bytes()).unwrap();
    if let Some(b) = body {
        s.write_all(b).unwrap();
    }
}

fn read_head(r: &mut impl BufRead) -> (u16, Vec<(String, String)>) {
    let mut line = String::new();
    r.read_line(&mut line).unwrap();
    let status = line
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| panic!("bad status line {line:?}"));
    let mut headers = Vec::new();
    loop {
        line.clear();
        r.read_line(&mut line).unwrap();
        let l = line.trim_end();
        if l.is_empty() {
            break;
        }
        if let Some((k, v)) = l.split_once(':') {
            headers.push((k.trim().to_string(), v.trim().to_string()));
        }
    }
    (status, headers)
}

fn is_chunked(headers: &[(String, String)]) -> bool {
    headers
        .iter()
        .any(|(k, v)| k.eq_ignore_ascii_case("transfer-encoding") && v.contains("chunked"))
}

/// Reads one chunk of a chunked body; None at the end.
fn read_chunk(r: &mut impl BufRead) -> Option<Vec<u8>> {
    let mut line = String::new();
    if r.read_line(&mut line).ok()? == 0 {
        return None;
    }
    let n = usize::from_str_radix(line.trim(), 16).ok()?;
    let mut buf = vec![0; n + 2];
    r.read_exact(&mut buf).ok()?;
    buf.truncate(n);
    (n > 0).then_some(buf)
}

/// One request on a fresh connection; reads the whole response.
pub fn request(
    addr: SocketAddr,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: Option<&[u8]>,
) -> Resp {
    let mut s = TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(120))).unwrap();
    write_request(&mut s, addr, method, path, headers, body);
    let mut r = BufReader::new(s);
    let (status, headers) = read_head(&mut r);
    let mut body = Vec::new();
    if is_chunked(&headers) {
        while let Some(c) = read_chunk(&mut r) {
            body.extend(c);
        }
    } else {
        r.read_to_end(&mut body).unwrap();
    }
    Resp {
        status,
        headers,
        body,
    }
}

/// A streaming response read event by event.
pub struct Stream {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    reader: BufReader<TcpStream>,
    pending: String,
}

impl Stream {
    pub fn open(addr: SocketAddr, path: &str, body: &Value) -> Stream {
        let mut s = TcpStream::connect(addr).unwrap();
        s.set_read_timeout(Some(Duration::from_secs(120))).unwrap();
        write_request(
            &mut s,
            addr,
            "POST",
            path,
            &[],
            Some(body.to_string().as_bytes()),
        );
        let mut reader = BufReader::new(s);
        let (status, headers) = read_head(&mut reader);
        Stream {
            status,
            headers,
            reader,
            pending: String::new(),
        }
    }

    /// The next `data:` payload, or None at the end of the body.
    pub fn next_event(&mut self) -> Option<String> {
        loop {
            if let Some(i) = self.pending.find("\n\n") {
                let ev: String = self.pending.drain(..i + 2).collect();
                if let Some(d) = ev.trim_end().strip_prefix("data: ") {
                    return Some(d.to_string());
                }
                continue;
            }
            let c = read_chunk(&mut self.reader)?;
            self.pending.push_str(&String::from_utf8_lossy(&c));
        }
    }

    /// Hangs up (the client disconnects).
    pub fn close(self) {
        let _ = self.reader.get_ref().shutdown(std::net::Shutdown::Both);
    }
}

/// A chat request body.
pub fn chat(content: &str, extra: Value) -> Value {
    let mut v =
        serde_json::json!({"model": "tiny", "messages": [{"role": "user", "content": content}]});
    if let (Value::Object(m), Value::Object(e)) = (&mut v, extra) {
        m.extend(e);
    }
    v
}

/// Polls `/metrics` until `pred` holds for the named gauge or counter (the
/// engine frees slots asynchronously). Bounded by `tries` attempts; this is
/// a wait for a state, not a timing assertion.
pub fn wait_metric(srv: &TestServer, name: &str, pred: impl Fn(f64) -> bool) -> f64 {
    let mut last = f64::NAN;
    for _ in 0..600 {
        let text = srv.get("/metrics").text();
        last = metric(&text, name);
        if pred(last) {
            return last;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    panic!("metric {name} never reached the expected value (last {last})");
}

pub fn metric(text: &str, name: &str) -> f64 {
    text.lines()
        .find(|l| l.starts_with(name) && l[name.len()..].starts_with([' ', '{']))
        .and_then(|l| l.rsplit(' ').next())
        .and_then(|v| v.parse().ok())
        .unwrap_or(f64::NAN)
}
