//! A small HTTP/1.1 server for the Docker Engine API on a unix socket: one thread per
//! connection, keep-alive, `Content-Length` and chunked request bodies, JSON and chunked
//! streaming responses, and connection hijacking (`101 UPGRADED`) for attach and exec.
//!
//! Why not hyper: the API's hard parts are the hijacked streams and responses whose headers
//! must go out before the body exists (`wait`, `events`, `logs -f`); with a blocking socket per
//! connection both are a `write` and a `flush`. Requests are parsed by `httparse` (hyper's own
//! parser); everything else is the few hundred lines below.

use serde_json::Value;
use std::io::{self, BufRead, BufReader, Read, Write};
use std::os::unix::net::UnixStream;

/// Largest request head and largest JSON body accepted.
const MAX_HEAD: usize = 64 << 10;
pub const MAX_BODY: u64 = 16 << 20;

pub struct Request {
    pub method: String,
    /// The path without the `/v1.xx` prefix.
    pub path: String,
    /// The API version from the path prefix, if any.
    pub version: Option<String>,
    pub query: Vec<(String, String)>,
    pub headers: Vec<(String, String)>,
}

#[derive(Clone, Copy, PartialEq, Debug)]
enum BodyKind {
    None,
    Length(u64),
    Chunked,
}

impl Request {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.iter().find(|(k, _)| k.eq_ignore_ascii_case(name)).map(|(_, v)| v.as_str())
    }

    /// Every value of a repeated query parameter (`names=a&names=b`).
    pub fn q_all(&self, name: &str) -> Vec<&str> {
        self.query.iter().filter(|(k, _)| k == name).map(|(_, v)| v.as_str()).collect()
    }

    pub fn q(&self, name: &str) -> Option<&str> {
        self.query.iter().rev().find(|(k, _)| k == name).map(|(_, v)| v.as_str())
    }

    /// Docker's query booleans: the CLI sends `1`, docker-py `True`/`False`; empty, `0`, `no`,
    /// `false`, `none` are false.
    pub fn flag(&self, name: &str) -> bool {
        match self.q(name) {
            None => false,
            Some(v) => !matches!(v.to_ascii_lowercase().as_str(), "" | "0" | "no" | "false" | "none"),
        }
    }

    pub fn wants_upgrade(&self) -> bool {
        self.header("upgrade").is_some()
            || self.header("connection").is_some_and(|c| c.to_ascii_lowercase().contains("upgrade"))
    }
}

/// An API error: Docker's status code and `{"message": ...}`.
#[derive(Debug)]
pub struct ApiError {
    pub status: u16,
    pub message: String,
}

impl ApiError {
    pub fn new(status: u16, message: impl Into<String>) -> ApiError {
        ApiError { status, message: message.into() }
    }
    pub fn bad(message: impl Into<String>) -> ApiError {
        ApiError::new(400, message)
    }
    pub fn not_found(message: impl Into<String>) -> ApiError {
        ApiError::new(404, message)
    }
    pub fn forbidden(message: impl Into<String>) -> ApiError {
        ApiError::new(403, message)
    }
    pub fn conflict(message: impl Into<String>) -> ApiError {
        ApiError::new(409, message)
    }
    pub fn internal(message: impl Into<String>) -> ApiError {
        ApiError::new(500, message)
    }
}

impl std::fmt::Display for ApiError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.message)
    }
}

pub type ApiResult<T> = std::result::Result<T, ApiError>;

/// One client connection.
pub struct Conn {
    reader: BufReader<UnixStream>,
    pub stream: UnixStream,
    /// Set once a response went out that ends the connection (hijack, streamed without length).
    pub closed: bool,
    pub api_version: String,
    pending: BodyKind,
    /// The request being answered is a HEAD: responses carry no body.
    head_request: bool,
}

fn percent_decode(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        match b[i] {
            b'%' if i + 2 < b.len() => {
                match u8::from_str_radix(std::str::from_utf8(&b[i + 1..i + 3]).unwrap_or("zz"), 16) {
                    Ok(v) => {
                        out.push(v);
                        i += 3;
                        continue;
                    }
                    Err(_) => out.push(b'%'),
                }
            }
            b'+' => out.push(b' '),
            c => out.push(c),
        }
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// Path segments are decoded without turning `+` into a space.
fn decode_path(s: &str) -> String {
    percent_decode(&s.replace('+', "%2B"))
}

pub fn status_text(code: u16) -> &'static str {
    match code {
        101 => "UPGRADED",
        200 => "OK",
        201 => "Created",
        204 => "No Content",
        304 => "Not Modified",
        400 => "Bad Request",
        401 => "Unauthorized",
        403 => "Forbidden",
        404 => "Not Found",
        405 => "Method Not Allowed",
        409 => "Conflict",
        500 => "Internal Server Error",
        501 => "Not Implemented",
        _ => "",
    }
}

impl Conn {
    pub fn new(stream: UnixStream) -> io::Result<Conn> {
        let reader = BufReader::with_capacity(16 << 10, stream.try_clone()?);
        Ok(Conn {
            reader,
            stream,
            closed: false,
            api_version: String::new(),
            pending: BodyKind::None,
            head_request: false,
        })
    }

    /// The next request's head, or `None` at a clean end of the connection.
    pub fn next_request(&mut self) -> io::Result<Option<Request>> {
        // Discard an unread body of the previous request.
        if self.pending != BodyKind::None {
            let mut r = self.body_reader();
            io::copy(&mut r, &mut io::sink())?;
        }
        let mut head = Vec::new();
        loop {
            let n = self.reader.read_until(b'\n', &mut head)?;
            if n == 0 {
                return if head.is_empty() { Ok(None) } else { Err(io::Error::other("connection closed mid-request")) };
            }
            if head.len() > MAX_HEAD {
                return Err(io::Error::other("request head too large"));
            }
            if head == b"\r\n" || head == b"\n" {
                head.clear(); // stray blank lines between requests
                continue;
            }
            if head.ends_with(b"\r\n\r\n") || head.ends_with(b"\n\n") {
                break;
            }
        }
        let mut hs = [httparse::EMPTY_HEADER; 64];
        let mut req = httparse::Request::new(&mut hs);
        match req.parse(&head) {
            Ok(httparse::Status::Complete(_)) => {}
            _ => return Err(io::Error::other("malformed request")),
        }
        let method = req.method.unwrap_or("GET").to_string();
        let target = req.path.unwrap_or("/");
        let headers: Vec<(String, String)> = req
            .headers
            .iter()
            .map(|h| (h.name.to_string(), String::from_utf8_lossy(h.value).trim().to_string()))
            .collect();
        let (raw_path, raw_query) = target.split_once('?').unwrap_or((target, ""));
        let mut path = decode_path(raw_path);
        let mut version = None;
        if let Some(rest) = path.strip_prefix("/v") {
            if let Some((v, tail)) = rest.split_once('/') {
                if !v.is_empty() && v.chars().all(|c| c.is_ascii_digit() || c == '.') {
                    version = Some(v.to_string());
                    path = format!("/{tail}");
                }
            }
        }
        let query = raw_query
            .split('&')
            .filter(|s| !s.is_empty())
            .map(|kv| {
                let (k, v) = kv.split_once('=').unwrap_or((kv, ""));
                (percent_decode(k), percent_decode(v))
            })
            .collect();
        let find = |n: &str| headers.iter().find(|(k, _)| k.eq_ignore_ascii_case(n)).map(|(_, v)| v.clone());
        let body_kind = if find("transfer-encoding").is_some_and(|t| t.to_ascii_lowercase().contains("chunked")) {
            BodyKind::Chunked
        } else {
            match find("content-length").map(|l| l.parse::<u64>()) {
                Some(Ok(0)) | None => BodyKind::None,
                Some(Ok(n)) => BodyKind::Length(n),
                Some(Err(_)) => return Err(io::Error::other("bad Content-Length")),
            }
        };
        self.pending = body_kind;
        self.head_request = method == "HEAD";
        Ok(Some(Request { method, path, version, query, headers }))
    }

    /// A reader of the current request's body (nothing when it has none).
    pub fn body_reader(&mut self) -> Box<dyn Read + Send + '_> {
        let kind = std::mem::replace(&mut self.pending, BodyKind::None);
        match kind {
            BodyKind::None => Box::new(io::empty()),
            BodyKind::Length(n) => Box::new((&mut self.reader).take(n)),
            BodyKind::Chunked => Box::new(ChunkedReader { inner: &mut self.reader, left: 0, done: false }),
        }
    }

    /// The whole body of the current request, at most [`MAX_BODY`] bytes.
    pub fn body(&mut self, _req: &Request) -> ApiResult<Vec<u8>> {
        let mut data = Vec::new();
        self.body_reader()
            .take(MAX_BODY + 1)
            .read_to_end(&mut data)
            .map_err(|e| ApiError::bad(format!("reading the request body: {e}")))?;
        if data.len() as u64 > MAX_BODY {
            return Err(ApiError::bad(format!("request body is over {MAX_BODY} bytes")));
        }
        Ok(data)
    }

    /// The body parsed as JSON; an empty body is `null`.
    pub fn json_body(&mut self, req: &Request) -> ApiResult<Value> {
        let data = self.body(req)?;
        if data.iter().all(|b| b.is_ascii_whitespace()) {
            return Ok(Value::Null);
        }
        serde_json::from_slice(&data).map_err(|e| ApiError::bad(format!("invalid JSON in the request body: {e}")))
    }

    /// A response head (status line, the engine's fixed headers, `headers`), flushed; the
    /// caller writes the body, if any.
    pub fn head(&mut self, status: u16, headers: &[(&str, String)]) -> io::Result<()> {
        let mut h = format!("HTTP/1.1 {status} {}\r\n", status_text(status));
        h.push_str(&format!("Api-Version: {}\r\n", crate::API_VERSION));
        h.push_str("Docker-Experimental: false\r\nOstype: linux\r\nBuilder-Version: 1\r\n");
        h.push_str(&format!("Server: Docker/{} (linux)\r\n", crate::DOCKER_VERSION));
        for (k, v) in headers {
            h.push_str(&format!("{k}: {v}\r\n"));
        }
        h.push_str("\r\n");
        self.stream.write_all(h.as_bytes())?;
        self.stream.flush()
    }

    /// A complete response with a body.
    pub fn respond(&mut self, status: u16, content_type: &str, body: &[u8]) -> io::Result<()> {
        let mut hs = vec![("Content-Length", body.len().to_string())];
        if !content_type.is_empty() {
            hs.push(("Content-Type", content_type.to_string()));
        }
        self.head(status, &hs)?;
        if self.head_request {
            // HEAD: the length the body would have, never the body (the client would read it
            // as the next response).
            return Ok(());
        }
        self.stream.write_all(body)?;
        self.stream.flush()
    }

    pub fn json(&mut self, status: u16, v: &Value) -> io::Result<()> {
        let mut body = serde_json::to_vec(v).unwrap_or_default();
        body.push(b'\n');
        self.respond(status, "application/json", &body)
    }

    pub fn empty(&mut self, status: u16) -> io::Result<()> {
        self.head(status, &[("Content-Length", "0".into())])
    }

    pub fn error(&mut self, e: &ApiError) -> io::Result<()> {
        self.json(e.status, &serde_json::json!({ "message": e.message }))
    }

    /// Start a chunked response; write with [`Chunked::write_all`], end with [`Chunked::finish`].
    pub fn chunked(&mut self, status: u16, content_type: &str) -> io::Result<Chunked<'_>> {
        self.head(status, &[("Content-Type", content_type.to_string()), ("Transfer-Encoding", "chunked".into())])?;
        self.stream.flush()?;
        Ok(Chunked { stream: &mut self.stream })
    }

    /// Answer `101 UPGRADED` (or `200 OK` for clients that did not ask to upgrade) and hand
    /// over the raw stream; the connection ends when the caller is done with it.
    pub fn hijack(&mut self, req: &Request, content_type: &str) -> io::Result<(UnixStream, Vec<u8>)> {
        if req.wants_upgrade() {
            self.head(
                101,
                &[
                    ("Content-Type", content_type.to_string()),
                    ("Connection", "Upgrade".into()),
                    ("Upgrade", "tcp".into()),
                ],
            )?;
        } else {
            self.head(200, &[("Content-Type", content_type.to_string())])?;
        }
        self.stream.flush()?;
        self.closed = true;
        // Bytes the client sent after the request head (early stdin) are already buffered.
        let buffered = self.reader.buffer().to_vec();
        Ok((self.stream.try_clone()?, buffered))
    }
}

/// A [`Chunked`] body as an `io::Write` (for streaming a tar out).
pub struct ChunkedWriter<'a>(pub Chunked<'a>);

impl Write for ChunkedWriter<'_> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.0.write_all(buf)?;
        Ok(buf.len())
    }
    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

pub struct Chunked<'a> {
    stream: &'a mut UnixStream,
}

impl<'a> Chunked<'a> {
    /// Chunk encoding onto a connection whose head (with `Transfer-Encoding: chunked`) is out.
    pub fn new(stream: &'a mut UnixStream) -> Chunked<'a> {
        Chunked { stream }
    }

    pub fn write_all(&mut self, data: &[u8]) -> io::Result<()> {
        if data.is_empty() {
            return Ok(());
        }
        self.stream.write_all(format!("{:x}\r\n", data.len()).as_bytes())?;
        self.stream.write_all(data)?;
        self.stream.write_all(b"\r\n")?;
        self.stream.flush()
    }

    pub fn json_line(&mut self, v: &Value) -> io::Result<()> {
        let mut b = serde_json::to_vec(v).unwrap_or_default();
        b.push(b'\n');
        self.write_all(&b)
    }

    pub fn finish(self) -> io::Result<()> {
        self.stream.write_all(b"0\r\n\r\n")?;
        self.stream.flush()
    }
}

struct ChunkedReader<'a, R: BufRead> {
    inner: &'a mut R,
    left: u64,
    done: bool,
}

impl<R: BufRead> Read for ChunkedReader<'_, R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        if self.done || buf.is_empty() {
            return Ok(0);
        }
        if self.left == 0 {
            let mut line = String::new();
            self.inner.read_line(&mut line)?;
            if line.trim().is_empty() {
                // The CRLF after the previous chunk.
                line.clear();
                self.inner.read_line(&mut line)?;
            }
            let size = line.trim().split(';').next().unwrap_or("");
            self.left = u64::from_str_radix(size, 16)
                .map_err(|_| io::Error::new(io::ErrorKind::InvalidData, "bad chunk size"))?;
            if self.left == 0 {
                // Trailers end with an empty line.
                loop {
                    let mut t = String::new();
                    if self.inner.read_line(&mut t)? == 0 || t.trim().is_empty() {
                        break;
                    }
                }
                self.done = true;
                return Ok(0);
            }
        }
        let want = buf.len().min(self.left as usize);
        let n = self.inner.read(&mut buf[..want])?;
        if n == 0 {
            return Err(io::Error::new(io::ErrorKind::UnexpectedEof, "body ended mid-chunk"));
        }
        self.left -= n as u64;
        Ok(n)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn decoding() {
        assert_eq!(percent_decode("a%2Fb+c"), "a/b c");
        assert_eq!(decode_path("/images/localhost:5000%2Fa+b/json"), "/images/localhost:5000/a+b/json");
        assert_eq!(percent_decode("%zz%"), "%zz%");
    }

    #[test]
    fn chunked_body() {
        let data = b"4\r\nWiki\r\n5;ext=1\r\npedia\r\n0\r\nX-T: 1\r\n\r\nNEXT";
        let mut r = std::io::BufReader::new(&data[..]);
        let mut out = String::new();
        ChunkedReader { inner: &mut r, left: 0, done: false }.read_to_string(&mut out).unwrap();
        assert_eq!(out, "Wikipedia");
        let mut rest = String::new();
        r.read_to_string(&mut rest).unwrap();
        assert_eq!(rest, "NEXT");
    }
}
