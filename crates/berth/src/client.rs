//! A small HTTP/1.1 client for the engine's API on a unix socket: plain calls, streamed
//! bodies (chunked), and hijacked connections for attach and exec.
//!
//! The daemon is found through `--host`/`-H`, then `BERTH_HOST`, then the default socket;
//! `unix:///path` and a plain path are both accepted.

use serde_json::Value;
use std::io::{BufRead, BufReader, Read, Write};
use std::os::unix::net::UnixStream;
use std::path::PathBuf;

pub const DEFAULT_SOCKET: &str = "/run/berth/berth.sock";
/// The Engine API version this client speaks.
pub const API_VERSION: &str = "1.50";
const API: &str = "/v1.50";

/// An error from the daemon (its status and message) or from reaching it (status 0).
#[derive(Debug)]
pub struct ApiErr {
    pub status: u16,
    pub message: String,
}

impl std::fmt::Display for ApiErr {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        if self.status == 0 {
            f.write_str(&self.message)
        } else {
            write!(f, "Error response from daemon: {}", self.message)
        }
    }
}

pub type Result<T> = std::result::Result<T, ApiErr>;

/// A failed command: its exit code and the message (`berth: <message>`; empty: nothing to print).
pub struct Fail(pub i32, pub String);

impl From<ApiErr> for Fail {
    fn from(e: ApiErr) -> Fail {
        Fail(1, e.to_string())
    }
}

impl From<String> for Fail {
    fn from(e: String) -> Fail {
        Fail(1, e)
    }
}

pub type R<T> = std::result::Result<T, Fail>;

/// `--filter k=v` flags as the API's `filters` JSON (`{"k":{"v":true}}`).
pub fn filters_json(filters: &[String]) -> R<String> {
    let mut m = serde_json::Map::new();
    for f in filters {
        let (k, v) =
            f.split_once('=').ok_or_else(|| Fail(1, format!("bad format of filter (expected name=value): {f}")))?;
        m.entry(k.to_string()).or_insert_with(|| serde_json::json!({}))[v] = serde_json::json!(true);
    }
    Ok(serde_json::to_string(&m).unwrap_or_default())
}

/// What a request carries after its head.
pub enum ReqBody<'a> {
    None,
    /// A whole body of this content type.
    Bytes(&'a str, &'a [u8]),
    /// A body of this content type read to its end and sent chunked (a tar from a file or stdin).
    Stream(&'a str, &'a mut dyn Read),
}

fn local(message: impl Into<String>) -> ApiErr {
    ApiErr { status: 0, message: message.into() }
}

type Headers = Vec<(String, String)>;

pub struct Client {
    sock: PathBuf,
}

pub struct Response {
    pub body: Vec<u8>,
}

impl Response {
    pub fn json(&self) -> Result<Value> {
        serde_json::from_slice(&self.body).map_err(|e| local(format!("the daemon sent malformed JSON: {e}")))
    }
}

/// A response body being read: by length, chunked, or to the end of the connection.
pub struct Body {
    r: BufReader<UnixStream>,
    mode: BodyMode,
}

enum BodyMode {
    Length(u64),
    Chunked { left: u64, done: bool },
    ToEnd,
}

impl Read for Body {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        match &mut self.mode {
            BodyMode::Length(0) => Ok(0),
            BodyMode::Length(n) => {
                let max = (*n).min(buf.len() as u64) as usize;
                let got = self.r.read(&mut buf[..max])?;
                *n -= got as u64;
                Ok(got)
            }
            BodyMode::ToEnd => self.r.read(buf),
            BodyMode::Chunked { left, done } => {
                if *done {
                    return Ok(0);
                }
                if *left == 0 {
                    let mut line = String::new();
                    self.r.read_line(&mut line)?;
                    if line.trim().is_empty() {
                        line.clear();
                        self.r.read_line(&mut line)?;
                    }
                    let size = u64::from_str_radix(line.trim().split(';').next().unwrap_or(""), 16)
                        .map_err(|_| std::io::Error::new(std::io::ErrorKind::InvalidData, "bad chunk size"))?;
                    if size == 0 {
                        *done = true;
                        return Ok(0);
                    }
                    *left = size;
                }
                let max = (*left).min(buf.len() as u64) as usize;
                let got = self.r.read(&mut buf[..max])?;
                if got == 0 {
                    // The connection ended inside a chunk: a cut answer, never a complete one.
                    return Err(std::io::Error::new(
                        std::io::ErrorKind::UnexpectedEof,
                        "the daemon's answer ended early",
                    ));
                }
                *left -= got as u64;
                Ok(got)
            }
        }
    }
}

/// Percent-encode a query value.
pub fn enc(s: &str) -> String {
    let mut out = String::new();
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b'~') {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

impl Client {
    pub fn new(host: Option<&str>) -> Client {
        let h = host.map(String::from).or_else(|| std::env::var("BERTH_HOST").ok()).filter(|h| !h.is_empty());
        let h = h.unwrap_or_else(|| DEFAULT_SOCKET.to_string());
        let path = h.strip_prefix("unix://").unwrap_or(&h).to_string();
        Client { sock: PathBuf::from(path) }
    }

    fn connect(&self) -> Result<UnixStream> {
        UnixStream::connect(&self.sock).map_err(|e| {
            local(format!(
                "Cannot connect to the Berth daemon at unix://{} ({e}). Is `berth daemon` running?",
                self.sock.display()
            ))
        })
    }

    /// Send a request; returns the connection positioned at the body, the status and headers.
    fn send(
        &self,
        method: &str,
        path: &str,
        body: Option<&Value>,
        upgrade: bool,
    ) -> Result<(BufReader<UnixStream>, u16, Headers)> {
        let data = body.map(|b| b.to_string()).unwrap_or_default();
        let b = if body.is_some() { ReqBody::Bytes("application/json", data.as_bytes()) } else { ReqBody::None };
        self.send_with(method, path, &[], b, upgrade)
    }

    /// Send a request with extra headers and a body of any kind.
    fn send_with(
        &self,
        method: &str,
        path: &str,
        headers: &[(&str, String)],
        body: ReqBody,
        upgrade: bool,
    ) -> Result<(BufReader<UnixStream>, u16, Headers)> {
        let mut s = self.connect()?;
        let mut head = format!("{method} {API}{path} HTTP/1.1\r\nHost: berth\r\nUser-Agent: berth-cli\r\n");
        for (k, v) in headers {
            head.push_str(&format!("{k}: {v}\r\n"));
        }
        match &body {
            ReqBody::Bytes(ct, data) => {
                head.push_str(&format!("Content-Type: {ct}\r\nContent-Length: {}\r\n", data.len()))
            }
            ReqBody::Stream(ct, _) => head.push_str(&format!("Content-Type: {ct}\r\nTransfer-Encoding: chunked\r\n")),
            ReqBody::None if method == "POST" || method == "PUT" => head.push_str("Content-Length: 0\r\n"),
            ReqBody::None => {}
        }
        if upgrade {
            head.push_str("Connection: Upgrade\r\nUpgrade: tcp\r\n");
        }
        head.push_str("\r\n");
        let sending = |e: std::io::Error| local(format!("sending to the daemon: {e}"));
        s.write_all(head.as_bytes()).map_err(sending)?;
        match body {
            ReqBody::None => {}
            ReqBody::Bytes(_, data) => s.write_all(data).map_err(sending)?,
            ReqBody::Stream(_, r) => {
                // A daemon that refused the request early answers before reading it all and
                // may close: then its answer, not our broken pipe, is what to report.
                match send_chunked(&mut s, r) {
                    Ok(()) => {}
                    Err(Chunking::Input(e)) => return Err(local(format!("reading the input: {e}"))),
                    Err(Chunking::Output(e))
                        if matches!(e.kind(), std::io::ErrorKind::BrokenPipe | std::io::ErrorKind::ConnectionReset) => {
                    }
                    Err(Chunking::Output(e)) => return Err(sending(e)),
                }
            }
        }
        let mut r = BufReader::new(s);
        let mut line = String::new();
        r.read_line(&mut line).map_err(|e| local(format!("reading from the daemon: {e}")))?;
        let status = line.split_whitespace().nth(1).and_then(|c| c.parse().ok()).unwrap_or(0);
        if status == 0 {
            return Err(local(format!("the daemon sent a malformed response: {:?}", line.trim())));
        }
        let mut headers = Vec::new();
        loop {
            line.clear();
            r.read_line(&mut line).map_err(|e| local(format!("reading from the daemon: {e}")))?;
            let l = line.trim_end();
            if l.is_empty() {
                break;
            }
            if let Some((k, v)) = l.split_once(':') {
                headers.push((k.trim().to_ascii_lowercase(), v.trim().to_string()));
            }
        }
        Ok((r, status, headers))
    }

    fn body(r: BufReader<UnixStream>, method: &str, status: u16, headers: &[(String, String)]) -> Body {
        let h = |k: &str| headers.iter().find(|(n, _)| n == k).map(|(_, v)| v.as_str());
        let mode = if method == "HEAD" || status == 204 || status == 304 {
            BodyMode::Length(0)
        } else if h("transfer-encoding").is_some_and(|t| t.eq_ignore_ascii_case("chunked")) {
            BodyMode::Chunked { left: 0, done: false }
        } else if let Some(n) = h("content-length").and_then(|n| n.parse().ok()) {
            BodyMode::Length(n)
        } else {
            BodyMode::ToEnd
        };
        Body { r, mode }
    }

    fn check(status: u16, body: &[u8]) -> Result<()> {
        if status < 400 {
            return Ok(());
        }
        let msg = serde_json::from_slice::<Value>(body)
            .ok()
            .and_then(|v| v["message"].as_str().map(String::from))
            .unwrap_or_else(|| String::from_utf8_lossy(body).trim().to_string());
        Err(ApiErr { status, message: msg })
    }

    /// A call whose whole response is read; errors (status >= 400) carry the daemon's message.
    pub fn call(&self, method: &str, path: &str, body: Option<&Value>) -> Result<Response> {
        let (r, status, headers) = self.send(method, path, body, false)?;
        let mut b = Self::body(r, method, status, &headers);
        let mut data = Vec::new();
        b.read_to_end(&mut data).map_err(|e| local(format!("reading from the daemon: {e}")))?;
        Self::check(status, &data)?;
        Ok(Response { body: data })
    }

    /// A call with a raw body (a tar for `PUT .../archive`).
    pub fn call_raw(&self, method: &str, path: &str, content_type: &str, data: &[u8]) -> Result<Response> {
        let (r, status, headers) = self.send_with(method, path, &[], ReqBody::Bytes(content_type, data), false)?;
        let mut b = Self::body(r, method, status, &headers);
        let mut out = Vec::new();
        b.read_to_end(&mut out).map_err(|e| local(format!("reading from the daemon: {e}")))?;
        Self::check(status, &out)?;
        Ok(Response { body: out })
    }

    pub fn get(&self, path: &str) -> Result<Value> {
        self.call("GET", path, None)?.json()
    }

    /// A call whose body is read as it arrives (logs -f, pull progress, wait).
    pub fn stream(&self, method: &str, path: &str, body: Option<&Value>) -> Result<Body> {
        let (r, status, headers) = self.send(method, path, body, false)?;
        let mut b = Self::body(r, method, status, &headers);
        if status >= 400 {
            let mut data = Vec::new();
            let _ = b.read_to_end(&mut data);
            Self::check(status, &data)?;
        }
        Ok(b)
    }

    /// Like [`Client::stream`], with extra headers (`X-Registry-Auth`) and any kind of body
    /// (a tar streamed up for load and import).
    pub fn stream_with(&self, method: &str, path: &str, headers: &[(&str, String)], body: ReqBody) -> Result<Body> {
        let (r, status, hs) = self.send_with(method, path, headers, body, false)?;
        let mut b = Self::body(r, method, status, &hs);
        if status >= 400 {
            let mut data = Vec::new();
            let _ = b.read_to_end(&mut data);
            Self::check(status, &data)?;
        }
        Ok(b)
    }

    /// A hijacked connection (attach, exec start): the raw stream after the response head.
    pub fn hijack(&self, path: &str, body: Option<&Value>) -> Result<(BufReader<UnixStream>, UnixStream)> {
        let (r, status, headers) = self.send("POST", path, body, true)?;
        if status >= 400 {
            let mut b = Self::body(r, "POST", status, &headers);
            let mut data = Vec::new();
            let _ = b.read_to_end(&mut data);
            Self::check(status, &data)?;
            return Err(local("unreachable"));
        }
        let w = r.get_ref().try_clone().map_err(|e| local(format!("socket: {e}")))?;
        Ok((r, w))
    }
}

enum Chunking {
    Input(std::io::Error),
    Output(std::io::Error),
}

/// Copy `r` to `w` in HTTP chunks, ending with the last (empty) chunk.
fn send_chunked(w: &mut impl Write, r: &mut dyn Read) -> std::result::Result<(), Chunking> {
    let mut buf = vec![0u8; 256 << 10];
    loop {
        let n = match r.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => n,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(Chunking::Input(e)),
        };
        let mut out = || -> std::io::Result<()> {
            w.write_all(format!("{n:x}\r\n").as_bytes())?;
            w.write_all(&buf[..n])?;
            w.write_all(b"\r\n")
        };
        out().map_err(Chunking::Output)?;
    }
    w.write_all(b"0\r\n\r\n").and_then(|_| w.flush()).map_err(Chunking::Output)
}

/// Copy a multiplexed stream (8-byte frame heads) to stdout/stderr until it ends.
pub fn demux(r: &mut impl Read, tty: bool) -> std::io::Result<()> {
    let (mut out, mut err) = (std::io::stdout(), std::io::stderr());
    if tty {
        let mut buf = [0u8; 32 << 10];
        loop {
            let n = match r.read(&mut buf) {
                Ok(0) => return Ok(()),
                Ok(n) => n,
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(e),
            };
            out.write_all(&buf[..n])?;
            out.flush()?;
        }
    }
    let mut head = [0u8; 8];
    let mut buf = Vec::new();
    loop {
        match r.read_exact(&mut head) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof => return Ok(()),
            Err(e) => return Err(e),
        }
        let n = u32::from_be_bytes([head[4], head[5], head[6], head[7]]) as usize;
        buf.resize(n, 0);
        r.read_exact(&mut buf)?;
        if head[0] == 2 {
            err.write_all(&buf)?;
            err.flush()?;
        } else {
            out.write_all(&buf)?;
            out.flush()?;
        }
    }
}

/// `inspect` of several objects: each looked up with `get`; the ones not found reported (with
/// `missing`'s message) and the rest printed as JSON or with `--format`; exit 1 if any was missing.
pub fn inspect_each(
    names: &[String],
    format: Option<&str>,
    get: impl Fn(&str) -> Result<Value>,
    missing: impl Fn(&str, &ApiErr) -> Option<String>,
) -> R<i32> {
    let mut found = Vec::new();
    let mut code = 0;
    for n in names {
        match get(n) {
            Ok(v) => found.push(v),
            Err(e) => match missing(n, &e) {
                Some(msg) => {
                    eprintln!("berth: {msg}");
                    code = 1;
                }
                None => return Err(e.into()),
            },
        }
    }
    crate::template::print_inspected(format, found)?;
    Ok(code)
}
