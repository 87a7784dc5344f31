//! MCP over raw HTTP/1.1 and raw stdio lines, for tests that must send
//! what no SDK client would (duplicate keys, foreign session ids, forged
//! responses) and see every byte that comes back, event streams included.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::process::{Child, ChildStdin, ChildStdout, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use serde_json::{Value, json};

/// One HTTP exchange, the response read as it arrives.
pub struct Exchange {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    reader: BufReader<TcpStream>,
    chunked: bool,
    /// Body bytes read so far (decoded).
    pub body: Vec<u8>,
    done: bool,
}

impl Exchange {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    /// Reads more of the body; false at its end or on timeout.
    fn read_more(&mut self) -> bool {
        if self.done {
            return false;
        }
        if self.chunked {
            let mut size_line = String::new();
            match self.reader.read_line(&mut size_line) {
                Ok(0) | Err(_) => {
                    self.done = true;
                    return false;
                }
                Ok(_) => {}
            }
            let size = usize::from_str_radix(size_line.trim().split(';').next().unwrap_or("0"), 16).unwrap_or(0);
            if size == 0 {
                self.done = true;
                return false;
            }
            let mut chunk = vec![0u8; size + 2];
            if self.reader.read_exact(&mut chunk).is_err() {
                self.done = true;
                return false;
            }
            self.body.extend_from_slice(&chunk[..size]);
            true
        } else {
            let mut buf = [0u8; 8192];
            match self.reader.read(&mut buf) {
                Ok(0) | Err(_) => {
                    self.done = true;
                    false
                }
                Ok(n) => {
                    self.body.extend_from_slice(&buf[..n]);
                    true
                }
            }
        }
    }

    /// The whole body (until the server ends it, or `timeout`).
    pub fn text(&mut self, timeout: Duration) -> String {
        let _ = self.reader.get_ref().set_read_timeout(Some(timeout));
        while self.read_more() {}
        String::from_utf8_lossy(&self.body).to_string()
    }

    pub fn json(&mut self, timeout: Duration) -> Value {
        let text = self.text(timeout);
        serde_json::from_str(&text).unwrap_or_else(|e| panic!("not JSON ({e}): {text}"))
    }

    /// The messages of an event stream, until one satisfies `stop`, the
    /// stream ends, or `timeout`.
    pub fn events_until(&mut self, timeout: Duration, stop: impl Fn(&Value) -> bool) -> Vec<Value> {
        let deadline = Instant::now() + timeout;
        let mut seen = 0;
        loop {
            let events = sse_messages(&self.body);
            if events.iter().skip(seen).any(&stop) || Instant::now() >= deadline {
                return events;
            }
            seen = events.len();
            let left = deadline
                .saturating_duration_since(Instant::now())
                .max(Duration::from_millis(10));
            let _ = self.reader.get_ref().set_read_timeout(Some(left));
            if !self.read_more() && self.done {
                return sse_messages(&self.body);
            }
        }
    }
}

/// The JSON messages in the `data:` lines of an event stream.
pub fn sse_messages(body: &[u8]) -> Vec<Value> {
    let text = String::from_utf8_lossy(body);
    let mut out = Vec::new();
    for event in text.split("\n\n") {
        let data: Vec<&str> = event
            .lines()
            .filter_map(|l| l.strip_prefix("data:"))
            .map(|d| d.strip_prefix(' ').unwrap_or(d))
            .collect();
        if data.is_empty() {
            continue;
        }
        if let Ok(v) = serde_json::from_str::<Value>(&data.join("\n")) {
            out.push(v);
        }
    }
    out
}

/// Sends one request; returns once the response head is read.
pub fn exchange(method: &str, url: &str, headers: &[(&str, &str)], body: &[u8]) -> Exchange {
    exchange_after(Duration::ZERO, method, url, headers, body)
}

/// [`exchange`] from a client that waits `pause` between connecting and
/// sending its request (a slow network, or a busy machine).
pub fn exchange_after(pause: Duration, method: &str, url: &str, headers: &[(&str, &str)], body: &[u8]) -> Exchange {
    let rest = url.strip_prefix("http://").expect("http url");
    let (authority, path) = rest.split_at(rest.find('/').unwrap_or(rest.len()));
    let path = if path.is_empty() { "/" } else { path };
    let stream = TcpStream::connect(authority).expect("connect to the gateway");
    std::thread::sleep(pause);
    stream.set_read_timeout(Some(Duration::from_secs(60))).expect("timeout");
    let mut head = format!("{method} {path} HTTP/1.1\r\nHost: {authority}\r\nConnection: close\r\n");
    for (k, v) in headers {
        head.push_str(&format!("{k}: {v}\r\n"));
    }
    head.push_str(&format!("Content-Length: {}\r\n\r\n", body.len()));
    let mut w = stream.try_clone().expect("clone");
    w.write_all(head.as_bytes()).expect("write head");
    w.write_all(body).expect("write body");
    let mut reader = BufReader::new(stream);
    let mut status_line = String::new();
    reader.read_line(&mut status_line).expect("status line");
    let status = status_line
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| panic!("no status in {status_line:?}"));
    let mut headers = Vec::new();
    loop {
        let mut line = String::new();
        reader.read_line(&mut line).expect("header line");
        let line = line.trim_end();
        if line.is_empty() {
            break;
        }
        if let Some((k, v)) = line.split_once(':') {
            headers.push((k.trim().to_string(), v.trim().to_string()));
        }
    }
    let chunked = headers
        .iter()
        .any(|(k, v)| k.eq_ignore_ascii_case("transfer-encoding") && v.contains("chunked"));
    Exchange {
        status,
        headers,
        reader,
        chunked,
        body: Vec::new(),
        done: false,
    }
}

pub const TIMEOUT: Duration = Duration::from_secs(30);

/// An MCP session over raw HTTP.
pub struct HttpSession {
    pub url: String,
    pub token: String,
    pub id: String,
}

pub fn initialize_params(capabilities: Value) -> Value {
    json!({
        "protocolVersion": "2025-11-25",
        "capabilities": capabilities,
        "clientInfo": {"name": "raw-test-client", "version": "1"},
    })
}

impl HttpSession {
    /// `initialize` as `token`'s holder; panics unless it succeeds.
    pub fn open(url: &str, token: &str, capabilities: Value) -> HttpSession {
        match HttpSession::try_open(url, token, capabilities) {
            Ok(s) => s,
            Err((status, body)) => panic!("initialize: HTTP {status}: {body}"),
        }
    }

    pub fn try_open(url: &str, token: &str, capabilities: Value) -> Result<HttpSession, (u16, String)> {
        let message =
            json!({"jsonrpc": "2.0", "id": 0, "method": "initialize", "params": initialize_params(capabilities)});
        let auth = format!("Bearer {token}");
        let mut ex = exchange(
            "POST",
            url,
            &[
                ("Authorization", &auth),
                ("Accept", "application/json, text/event-stream"),
                ("Content-Type", "application/json"),
            ],
            message.to_string().as_bytes(),
        );
        let id = ex.header("mcp-session-id").map(str::to_string);
        let text = ex.text(TIMEOUT);
        match id {
            Some(id) if ex.status == 200 => {
                let s = HttpSession {
                    url: url.to_string(),
                    token: token.to_string(),
                    id,
                };
                let ack = s.post_raw(&s.token, br#"{"jsonrpc":"2.0","method":"notifications/initialized"}"#);
                assert_eq!(ack.status, 202, "notifications/initialized");
                Ok(s)
            }
            _ => Err((ex.status, text)),
        }
    }

    /// POSTs bytes into this session as `token`'s holder.
    pub fn post_raw(&self, token: &str, body: &[u8]) -> Exchange {
        self.post_raw_after(Duration::ZERO, token, body)
    }

    /// [`HttpSession::post_raw`], waiting `pause` between connecting and sending.
    pub fn post_raw_after(&self, pause: Duration, token: &str, body: &[u8]) -> Exchange {
        let auth = format!("Bearer {token}");
        exchange_after(
            pause,
            "POST",
            &self.url,
            &[
                ("Authorization", &auth),
                ("Mcp-Session-Id", &self.id),
                ("MCP-Protocol-Version", "2025-11-25"),
                ("Accept", "application/json, text/event-stream"),
                ("Content-Type", "application/json"),
            ],
            body,
        )
    }

    /// A request; its JSON-RPC answer (from the event stream).
    pub fn request(&self, id: u64, method: &str, params: Value) -> Value {
        self.request_after(Duration::ZERO, id, method, params)
    }

    /// [`HttpSession::request`], waiting `pause` between connecting and sending.
    pub fn request_after(&self, pause: Duration, id: u64, method: &str, params: Value) -> Value {
        let message = json!({"jsonrpc": "2.0", "id": id, "method": method, "params": params});
        let mut ex = self.post_raw_after(pause, &self.token, message.to_string().as_bytes());
        let status = ex.status;
        if status != 200 {
            panic!("{method}: HTTP {status}: {}", ex.text(TIMEOUT));
        }
        let events = ex.events_until(TIMEOUT, |m| m["id"] == id && m.get("method").is_none());
        events
            .into_iter()
            .find(|m| m["id"] == id && m.get("method").is_none())
            .unwrap_or_else(|| panic!("no answer to {method} {id}"))
    }
}

/// `sealgate stdio` driven line by line.
pub struct StdioSession {
    pub child: Child,
    stdin: ChildStdin,
    lines: mpsc::Receiver<String>,
    /// Every line the gateway wrote, in order.
    pub seen: Vec<Value>,
}

impl StdioSession {
    pub fn start(mut cmd: Command) -> StdioSession {
        let mut child = cmd
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .spawn()
            .expect("start sealgate stdio");
        let stdin = child.stdin.take().expect("stdin");
        let stdout: ChildStdout = child.stdout.take().expect("stdout");
        let (tx, rx) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        StdioSession {
            child,
            stdin,
            lines: rx,
            seen: Vec::new(),
        }
    }

    pub fn send_raw(&mut self, line: &str) {
        self.stdin.write_all(line.as_bytes()).expect("write");
        self.stdin.write_all(b"\n").expect("write");
        self.stdin.flush().expect("flush");
    }

    /// Reads lines until one satisfies `stop` (returned), or panics after
    /// `timeout`.
    pub fn until(&mut self, timeout: Duration, stop: impl Fn(&Value) -> bool) -> Value {
        let deadline = Instant::now() + timeout;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            let line = self
                .lines
                .recv_timeout(left)
                .unwrap_or_else(|_| panic!("no matching line in {timeout:?}; seen {:?}", self.seen));
            let v: Value = serde_json::from_str(&line).unwrap_or_else(|e| panic!("not JSON ({e}): {line}"));
            self.seen.push(v.clone());
            if stop(&v) {
                return v;
            }
        }
    }

    /// The answer to request `id`.
    pub fn answer(&mut self, id: u64) -> Value {
        self.until(TIMEOUT, |m| m["id"] == id && m.get("method").is_none())
    }

    pub fn initialize(&mut self, capabilities: Value) -> Value {
        let message =
            json!({"jsonrpc": "2.0", "id": 0, "method": "initialize", "params": initialize_params(capabilities)});
        self.send_raw(&message.to_string());
        let answer = self.answer(0);
        self.send_raw(r#"{"jsonrpc":"2.0","method":"notifications/initialized"}"#);
        answer
    }

    /// Closes stdin and waits for the gateway to exit.
    pub fn finish(mut self) -> std::process::ExitStatus {
        drop(self.stdin);
        let deadline = Instant::now() + TIMEOUT;
        loop {
            if let Some(status) = self.child.try_wait().expect("wait") {
                return status;
            }
            assert!(Instant::now() < deadline, "sealgate stdio did not exit");
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}
