//! The image crate's error type: one line for users, plus a kind for callers that branch on it.

use std::fmt;
use std::io;

/// What went wrong, for callers that must react differently (retry, skip, report).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum ErrorKind {
    /// An image reference that does not follow Docker's grammar.
    InvalidReference,
    /// A digest that is malformed.
    InvalidDigest,
    /// A well-formed digest whose algorithm Berth does not support (anything but sha256).
    UnsupportedDigest,
    /// A blob, ingest or path that does not exist.
    NotFound,
    /// Another writer holds the ingest (only from [`crate::store::Store::try_writer`]).
    Busy,
    /// Content longer than its descriptor says; the partial data was removed.
    SizeMismatch,
    /// Content shorter than its descriptor says; the partial data was kept for resuming.
    Truncated,
    /// Content whose digest differs from the expected one; the partial data was removed.
    DigestMismatch,
    /// A layer entry that would write outside the snapshot root or through a symlink.
    UnsafeLayer,
    /// A layer that is malformed or uses something unsupported (entry type, compression).
    InvalidLayer,
    /// A caller's setting that is malformed or unsupported (an `import` change instruction).
    InvalidArgument,
    /// Any other I/O failure.
    Io,
}

/// An error with a one-line message naming the reference, digest, entry or path involved.
#[derive(Debug)]
pub struct Error {
    kind: ErrorKind,
    msg: String,
    errno: Option<i32>,
}

pub type Result<T, E = Error> = std::result::Result<T, E>;

impl Error {
    pub fn new(kind: ErrorKind, msg: impl Into<String>) -> Self {
        Error { kind, msg: msg.into(), errno: None }
    }

    /// Wrap an OS error with what we were doing: `"{what}: {strerror}"`. `ENOENT` becomes [`ErrorKind::NotFound`].
    pub fn io(what: impl fmt::Display, e: io::Error) -> Self {
        let kind = if e.kind() == io::ErrorKind::NotFound { ErrorKind::NotFound } else { ErrorKind::Io };
        Error { kind, msg: format!("{what}: {e}"), errno: e.raw_os_error() }
    }

    /// An error of `kind` whose message is complete already, keeping the OS error number of `e`.
    pub(crate) fn with_os(kind: ErrorKind, msg: String, e: &io::Error) -> Self {
        Error { kind, msg, errno: e.raw_os_error() }
    }

    pub fn kind(&self) -> ErrorKind {
        self.kind
    }

    /// The OS error number, when the error came from a system call.
    pub fn errno(&self) -> Option<i32> {
        self.errno
    }

    pub fn message(&self) -> &str {
        &self.msg
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.msg)
    }
}

impl std::error::Error for Error {}

impl From<Error> for io::Error {
    fn from(e: Error) -> io::Error {
        let kind = match e.kind {
            ErrorKind::NotFound => io::ErrorKind::NotFound,
            ErrorKind::Truncated => io::ErrorKind::UnexpectedEof,
            ErrorKind::Io => io::ErrorKind::Other,
            _ => io::ErrorKind::InvalidData,
        };
        io::Error::new(kind, e.msg)
    }
}

/// `result.ctx("doing X")?` turns an `io::Error` into an [`Error`] naming the operation.
pub trait Context<T> {
    fn ctx(self, what: impl fmt::Display) -> Result<T>;
}

impl<T> Context<T> for io::Result<T> {
    fn ctx(self, what: impl fmt::Display) -> Result<T> {
        self.map_err(|e| Error::io(what, e))
    }
}

/// Quote user input for an error message, shortening it so a hostile input cannot flood a log line.
pub(crate) fn quoted(s: &str) -> String {
    const MAX: usize = 100;
    if s.len() <= MAX {
        return format!("{s:?}");
    }
    let mut end = MAX;
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    format!("{:?}...", &s[..end])
}
