//! Container logs in Docker's json-file format: one JSON object a line,
//! `{"log":"text\n","stream":"stdout","time":"2026-11-23T07:00:00.123456789Z"}`,
//! with rotation by size (`max-size`, `max-file`: `<log>`, `<log>.1`, ... oldest last).
//!
//! The writer (in the monitor) splits output into lines as Docker does: a line is emitted at
//! each `\n`; a line longer than 16 KiB is emitted in 16 KiB pieces; what is left at the end of
//! a stream is emitted without a newline. The reader (in the daemon) serves `logs` with
//! `tail`, `since`, `until` and `follow`.

use serde_json::{json, Value};
use std::fs::File;
use std::io::{BufRead, BufReader, Seek, Write};
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

const MAX_LINE: usize = 16 << 10;

#[derive(Clone, Debug, Default, PartialEq)]
pub struct LogOpts {
    /// Rotate when the file reaches this many bytes (0: never).
    pub max_size: u64,
    /// Files kept, the current one included (at least 1).
    pub max_file: u32,
}

impl LogOpts {
    /// From `HostConfig.LogConfig.Config` (`max-size` like "10m", `max-file` like "3").
    pub fn from_config(cfg: &Value) -> Result<LogOpts, String> {
        let mut o = LogOpts { max_size: 0, max_file: 1 };
        if let Some(s) = cfg.get("max-size").and_then(|v| v.as_str()) {
            o.max_size = parse_size(s).ok_or_else(|| format!("invalid max-size {s:?}: use a size like 10m"))?;
        }
        if let Some(s) = cfg.get("max-file").and_then(|v| v.as_str()) {
            o.max_file = s.parse().ok().filter(|n| *n >= 1).ok_or_else(|| format!("invalid max-file {s:?}"))?;
        }
        if let Some(obj) = cfg.as_object() {
            if let Some(k) = obj.keys().find(|k| !matches!(k.as_str(), "max-size" | "max-file")) {
                return Err(format!("unknown log opt {k:?} for the json-file driver"));
            }
        }
        Ok(o)
    }
}

/// "10m", "1g", "512k", "100" (bytes), as Docker's units.RAMInBytes.
pub fn parse_size(s: &str) -> Option<u64> {
    let s = s.trim().to_ascii_lowercase();
    let s = s.strip_suffix('b').unwrap_or(&s);
    let (num, mult) = match s.chars().last()? {
        'k' => (&s[..s.len() - 1], 1u64 << 10),
        'm' => (&s[..s.len() - 1], 1 << 20),
        'g' => (&s[..s.len() - 1], 1 << 30),
        't' => (&s[..s.len() - 1], 1 << 40),
        _ => (s, 1),
    };
    let n: f64 = num.trim().parse().ok()?;
    (n >= 0.0).then_some((n * mult as f64) as u64)
}

pub struct LogWriter {
    path: PathBuf,
    file: File,
    size: u64,
    opts: LogOpts,
    /// Unfinished line per stream (1 stdout, 2 stderr).
    partial: [Vec<u8>; 3],
}

fn stream_name(s: u8) -> &'static str {
    if s == 2 {
        "stderr"
    } else {
        "stdout"
    }
}

impl LogWriter {
    pub fn open(path: &Path, opts: LogOpts) -> std::io::Result<LogWriter> {
        let file = File::options().create(true).append(true).open(path)?;
        let size = file.metadata()?.len();
        Ok(LogWriter { path: path.to_path_buf(), file, size, opts, partial: Default::default() })
    }

    /// Output from `stream` (1 or 2); complete lines are written at once.
    pub fn write(&mut self, stream: u8, data: &[u8]) {
        let idx = if stream == 2 { 2 } else { 1 };
        let mut buf = std::mem::take(&mut self.partial[idx]);
        buf.extend_from_slice(data);
        let mut start = 0;
        while let Some(pos) = buf[start..].iter().position(|b| *b == b'\n') {
            let end = start + pos + 1;
            self.emit(stream, &buf[start..end]);
            start = end;
        }
        while buf.len() - start >= MAX_LINE {
            self.emit(stream, &buf[start..start + MAX_LINE]);
            start += MAX_LINE;
        }
        self.partial[idx] = buf[start..].to_vec();
    }

    /// The stream ended: what is left is a last line without a newline.
    pub fn end_stream(&mut self, stream: u8) {
        let idx = if stream == 2 { 2 } else { 1 };
        let rest = std::mem::take(&mut self.partial[idx]);
        if !rest.is_empty() {
            self.emit(stream, &rest);
        }
    }

    pub fn flush(&mut self) {
        let _ = self.file.flush();
    }

    fn emit(&mut self, stream: u8, line: &[u8]) {
        let mut rec = serde_json::to_vec(&json!({
            "log": String::from_utf8_lossy(line),
            "stream": stream_name(stream),
            "time": berth_runtime::state::now_rfc3339(),
        }))
        .unwrap_or_default();
        rec.push(b'\n');
        if self.opts.max_size > 0 && self.size > 0 && self.size + rec.len() as u64 > self.opts.max_size {
            self.rotate();
        }
        if self.file.write_all(&rec).is_ok() {
            self.size += rec.len() as u64;
        }
    }

    fn rotate(&mut self) {
        let n = self.opts.max_file.max(1);
        if n == 1 {
            let _ = self.file.set_len(0);
            let _ = self.file.rewind();
            self.size = 0;
            return;
        }
        for i in (1..n - 1).rev() {
            let _ = std::fs::rename(rotated(&self.path, i), rotated(&self.path, i + 1));
        }
        let _ = std::fs::rename(&self.path, rotated(&self.path, 1));
        if let Ok(f) = File::options().create(true).append(true).open(&self.path) {
            self.file = f;
            self.size = 0;
        }
    }
}

fn rotated(p: &Path, i: u32) -> PathBuf {
    let mut s = p.as_os_str().to_owned();
    s.push(format!(".{i}"));
    PathBuf::from(s)
}

/// One log record read back.
pub struct Record {
    pub stream: u8,
    pub time: String,
    pub log: Vec<u8>,
}

fn parse_line(line: &str) -> Option<Record> {
    let v: Value = serde_json::from_str(line).ok()?;
    Some(Record {
        stream: if v["stream"] == "stderr" { 2 } else { 1 },
        time: v["time"].as_str().unwrap_or("").to_string(),
        log: v["log"].as_str().unwrap_or("").as_bytes().to_vec(),
    })
}

/// Parse Docker's `since`/`until`: unix seconds with optional fraction ("1700000000.5").
pub fn parse_unix(s: &str) -> Option<SystemTime> {
    if s.is_empty() || s == "0" {
        return None;
    }
    let (secs, frac) = s.split_once('.').unwrap_or((s, "0"));
    let secs: u64 = secs.parse().ok()?;
    let nanos: u32 = format!("{frac:0<9}")[..9].parse().ok()?;
    Some(SystemTime::UNIX_EPOCH + Duration::new(secs, nanos))
}

pub struct ReadOpts {
    pub stdout: bool,
    pub stderr: bool,
    /// Last N records (None: all).
    pub tail: Option<usize>,
    pub since: Option<SystemTime>,
    pub until: Option<SystemTime>,
}

/// All records of the log (rotated files first), filtered; returns them and the byte offset
/// of the current file's end (where `follow` continues).
pub fn read(path: &Path, o: &ReadOpts) -> (Vec<Record>, u64) {
    let mut files = Vec::new();
    for i in (1..100).rev() {
        let p = rotated(path, i);
        if p.exists() {
            files.push(p);
        }
    }
    files.push(path.to_path_buf());
    let since = o.since.map(berth_runtime::state::rfc3339);
    let until = o.until.map(berth_runtime::state::rfc3339);
    let mut out = Vec::new();
    let mut end = 0;
    for (i, f) in files.iter().enumerate() {
        let Ok(file) = File::open(f) else { continue };
        let pos = read_records(file, 0, &mut |rec| {
            if wanted(&rec, o, since.as_deref(), until.as_deref()) {
                out.push(rec);
            }
        });
        if i == files.len() - 1 {
            end = pos;
        }
    }
    if let Some(n) = o.tail {
        let skip = out.len().saturating_sub(n);
        out.drain(..skip);
    }
    (out, end)
}

/// Parse the complete records of `file` from `offset` on (a last line still being written is
/// left for later); returns the offset after the last complete one.
fn read_records(file: File, mut offset: u64, each: &mut dyn FnMut(Record)) -> u64 {
    let mut r = BufReader::new(file);
    let mut line = String::new();
    loop {
        line.clear();
        match r.read_line(&mut line) {
            Ok(n) if n > 0 && line.ends_with('\n') => offset += n as u64,
            _ => return offset,
        }
        if let Some(rec) = parse_line(&line) {
            each(rec);
        }
    }
}

fn wanted(rec: &Record, o: &ReadOpts, since: Option<&str>, until: Option<&str>) -> bool {
    let t = rec.time.as_str();
    (if rec.stream == 2 { o.stderr } else { o.stdout }) && since.is_none_or(|s| t >= s) && until.is_none_or(|u| t <= u)
}

/// Records appended to the current file after `offset`; returns them and the new offset.
/// A rotation (the file got shorter) starts again at 0.
pub fn read_from(path: &Path, offset: u64, o: &ReadOpts) -> (Vec<Record>, u64) {
    let Ok(mut file) = File::open(path) else { return (Vec::new(), offset) };
    let len = file.metadata().map(|m| m.len()).unwrap_or(0);
    let offset = if len < offset { 0 } else { offset };
    if file.seek(std::io::SeekFrom::Start(offset)).is_err() {
        return (Vec::new(), offset);
    }
    let until = o.until.map(berth_runtime::state::rfc3339);
    let mut out = Vec::new();
    let offset = read_records(file, offset, &mut |rec| {
        if wanted(&rec, o, None, until.as_deref()) {
            out.push(rec);
        }
    });
    (out, offset)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes() {
        assert_eq!(parse_size("10m"), Some(10 << 20));
        assert_eq!(parse_size("1k"), Some(1024));
        assert_eq!(parse_size("100"), Some(100));
        assert_eq!(parse_size("2MB"), Some(2 << 20));
        assert_eq!(parse_size("x"), None);
    }

    #[test]
    fn lines_split_and_rotate() {
        let dir = std::env::temp_dir().join(format!("berth-logs-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        let p = dir.join("c-json.log");
        let mut w = LogWriter::open(&p, LogOpts { max_size: 400, max_file: 3 }).unwrap();
        w.write(1, b"one\ntw");
        w.write(2, b"err\n");
        w.write(1, b"o\n");
        w.write(1, b"tail");
        w.end_stream(1);
        w.flush();
        let all = ReadOpts { stdout: true, stderr: true, tail: None, since: None, until: None };
        let (recs, _) = read(&p, &all);
        let logs: Vec<String> = recs.iter().map(|r| String::from_utf8_lossy(&r.log).into_owned()).collect();
        assert_eq!(logs, ["one\n", "err\n", "two\n", "tail"]);
        assert_eq!(recs[1].stream, 2);
        let only_err = ReadOpts { stdout: false, ..all };
        assert_eq!(read(&p, &only_err).0.len(), 1);
        // Enough to rotate several times: at most 3 files, the newest records kept.
        for i in 0..50 {
            w.write(1, format!("line {i}\n").as_bytes());
        }
        w.flush();
        assert!(rotated(&p, 2).exists() && !rotated(&p, 3).exists());
        let all = ReadOpts { stdout: true, stderr: true, tail: Some(1), since: None, until: None };
        assert_eq!(read(&p, &all).0[0].log, b"line 49\n");
        let _ = std::fs::remove_dir_all(&dir);
    }
}
