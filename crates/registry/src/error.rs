use std::fmt;

/// A one-line error naming the registry, repository and cause.
#[derive(Debug)]
pub struct Error {
    msg: String,
    /// The HTTP status, when the registry answered.
    pub status: Option<u16>,
}

pub type Result<T> = std::result::Result<T, Error>;

impl Error {
    pub fn new(msg: impl Into<String>) -> Error {
        Error { msg: msg.into(), status: None }
    }

    pub fn http(msg: impl Into<String>, status: u16) -> Error {
        Error { msg: msg.into(), status: Some(status) }
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.msg)
    }
}

impl std::error::Error for Error {}

impl From<berth_image::Error> for Error {
    fn from(e: berth_image::Error) -> Error {
        Error::new(e.to_string())
    }
}
