//! The parent <-> child synchronisation channel: a SOCK_SEQPACKET pair.
//!
//! One message is one tag byte plus an optional UTF-8 payload. Both ends are
//! close-on-exec, so a successful `execve` in the child shows up in the parent
//! as end-of-file, and a failure as an `Error` message sent before exiting.

use crate::error::{Error, Result};
use crate::sys;
use std::os::fd::{AsRawFd, OwnedFd};

/// Message tags.
pub mod tag {
    /// parent -> child: carry on (cgroup joined).
    pub const GO: u8 = b'G';
    /// parent -> child: uid/gid maps written.
    pub const MAPS_DONE: u8 = b'M';
    /// parent -> child: createRuntime hooks done.
    pub const HOOKS_DONE: u8 = b'H';
    /// parent -> child: start the user process now (run mode).
    pub const START: u8 = b'S';
    /// child -> parent: a new user namespace exists; write its maps.
    pub const USERNS: u8 = b'U';
    /// child -> parent: the host pid of the container process (payload).
    pub const PID: u8 = b'I';
    /// child -> parent: run prestart/createRuntime hooks now.
    pub const RUN_HOOKS: u8 = b'R';
    /// child -> parent: set up, about to wait for start.
    pub const READY: u8 = b'Y';
    /// child -> parent: failure (payload is the message).
    pub const ERROR: u8 = b'E';
}

pub struct Channel {
    fd: OwnedFd,
}

impl Channel {
    /// The socket's descriptor (for a forked process that must close its copy).
    pub fn raw_fd(&self) -> std::os::fd::RawFd {
        use std::os::fd::AsRawFd;
        self.fd.as_raw_fd()
    }

    pub fn new(fd: OwnedFd) -> Channel {
        Channel { fd }
    }

    pub fn raw(&self) -> i32 {
        self.fd.as_raw_fd()
    }

    pub fn send(&self, tag: u8, payload: &str) -> Result<()> {
        let mut buf = Vec::with_capacity(1 + payload.len());
        buf.push(tag);
        buf.extend_from_slice(payload.as_bytes());
        // SAFETY: buf is a valid slice; MSG_NOSIGNAL avoids SIGPIPE if the peer is gone.
        let r = unsafe { libc::send(self.fd.as_raw_fd(), buf.as_ptr().cast(), buf.len(), libc::MSG_NOSIGNAL) };
        if r < 0 {
            return Err(Error::os("sync channel send", std::io::Error::last_os_error()));
        }
        Ok(())
    }

    /// Receive one message; `None` on end-of-file (the peer exited or exec'd).
    pub fn recv(&self) -> Result<Option<(u8, String)>> {
        let mut buf = vec![0u8; 64 * 1024];
        let n = sys::read(self.fd.as_raw_fd(), &mut buf).map_err(|e| Error::os("sync channel receive", e))?;
        if n == 0 {
            return Ok(None);
        }
        let payload = String::from_utf8_lossy(&buf[1..n]).into_owned();
        Ok(Some((buf[0], payload)))
    }

    /// Receive and require a given tag; an ERROR message becomes the returned error.
    pub fn expect(&self, want: u8) -> Result<String> {
        match self.recv()? {
            Some((t, p)) if t == want => Ok(p),
            Some((tag::ERROR, msg)) => Err(Error::new(msg)),
            Some((t, _)) => Err(Error::new(format!("sync channel: unexpected message {:?}", t as char))),
            None => Err(Error::new("sync channel: peer exited unexpectedly")),
        }
    }
}
