//! The runtime's error type: one line, naming the field, file or cause.

use std::fmt;
use std::io;

/// An error with a one-line message meant for users (no backtraces, no debug dumps).
#[derive(Debug)]
pub struct Error {
    msg: String,
    errno: Option<i32>,
}

pub type Result<T, E = Error> = std::result::Result<T, E>;

impl Error {
    pub fn new(msg: impl Into<String>) -> Self {
        Error { msg: msg.into(), errno: None }
    }

    /// Wrap an OS error with what we were doing: `"{what}: {strerror}"`.
    pub fn os(what: impl fmt::Display, e: io::Error) -> Self {
        Error { msg: format!("{what}: {e}"), errno: e.raw_os_error() }
    }

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

impl From<io::Error> for Error {
    fn from(e: io::Error) -> Self {
        Error { msg: e.to_string(), errno: e.raw_os_error() }
    }
}

impl From<berth_cgroups::Error> for Error {
    fn from(e: berth_cgroups::Error) -> Self {
        Error::new(e.to_string())
    }
}

impl From<berth_seccomp::Error> for Error {
    fn from(e: berth_seccomp::Error) -> Self {
        Error::new(format!("seccomp: {e}"))
    }
}

/// `result.ctx("doing X")?` turns an io::Error into an [`Error`] naming the operation.
pub trait Context<T> {
    fn ctx(self, what: impl fmt::Display) -> Result<T>;
}

impl<T> Context<T> for io::Result<T> {
    fn ctx(self, what: impl fmt::Display) -> Result<T> {
        self.map_err(|e| Error::os(what, e))
    }
}

/// Early-return with a formatted [`Error`].
#[macro_export]
macro_rules! bail {
    ($($arg:tt)*) => { return Err($crate::error::Error::new(format!($($arg)*))) };
}
