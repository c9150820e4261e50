//! Foreground terminal: when `run` or `exec` is asked for a terminal without a console
//! socket, berth receives the pty master itself and relays it to its own stdio.

use crate::error::{Context, Result};
use crate::sys;
use std::os::fd::{AsRawFd, OwnedFd, RawFd};

/// The parent's end of an internal console socket.
pub struct Relay {
    master: OwnedFd,
    saved: Option<libc::termios>,
}

/// A connected pair: (ours, the one handed to the container as its console socket).
pub fn console_pair() -> Result<(OwnedFd, OwnedFd)> {
    let mut fds = [0; 2];
    // SAFETY: fds is a valid 2-element array.
    sys::check(unsafe { libc::socketpair(libc::AF_UNIX, libc::SOCK_STREAM | libc::SOCK_CLOEXEC, 0, fds.as_mut_ptr()) })
        .ctx("socketpair")?;
    Ok((crate::container::owned(fds[0]), crate::container::owned(fds[1])))
}

fn winsize(fd: RawFd) -> Option<libc::winsize> {
    // SAFETY: zeroed winsize is a valid out-buffer.
    let mut ws: libc::winsize = unsafe { std::mem::zeroed() };
    // SAFETY: TIOCGWINSZ writes a winsize.
    (unsafe { libc::ioctl(fd, libc::TIOCGWINSZ, &mut ws) } == 0).then_some(ws)
}

impl Relay {
    /// Receive the master and start copying in both directions (two threads).
    pub fn start(ours: &OwnedFd) -> Result<Relay> {
        let master = sys::recv_fd(ours.as_raw_fd()).ctx("receive the pty master")?;
        let mut saved = None;
        // SAFETY: isatty on fd 0.
        if unsafe { libc::isatty(0) } == 1 {
            // SAFETY: zeroed termios is a valid out-buffer; tcgetattr on fd 0.
            let mut t: libc::termios = unsafe { std::mem::zeroed() };
            // SAFETY: as above.
            if unsafe { libc::tcgetattr(0, &mut t) } == 0 {
                saved = Some(t);
                let mut raw = t;
                // SAFETY: cfmakeraw edits the struct in place.
                unsafe { libc::cfmakeraw(&mut raw) };
                // SAFETY: tcsetattr on fd 0 with a valid termios.
                unsafe { libc::tcsetattr(0, libc::TCSANOW, &raw) };
            }
            if let Some(ws) = winsize(0) {
                // SAFETY: TIOCSWINSZ reads a winsize.
                unsafe { libc::ioctl(master.as_raw_fd(), libc::TIOCSWINSZ, &ws) };
            }
        }
        let m_in = master.try_clone().ctx("dup pty master")?;
        let m_out = master.try_clone().ctx("dup pty master")?;
        std::thread::spawn(move || copy(0, m_in.as_raw_fd()));
        std::thread::spawn(move || copy(m_out.as_raw_fd(), 1));
        Ok(Relay { master, saved })
    }

    /// Propagate our terminal's size (on SIGWINCH).
    pub fn resize(&self) {
        if let Some(ws) = winsize(0) {
            // SAFETY: TIOCSWINSZ reads a winsize.
            unsafe { libc::ioctl(self.master.as_raw_fd(), libc::TIOCSWINSZ, &ws) };
        }
    }
}

impl Drop for Relay {
    fn drop(&mut self) {
        // Let the output thread drain what the process printed last.
        std::thread::sleep(std::time::Duration::from_millis(20));
        if let Some(t) = self.saved {
            // SAFETY: restore the terminal settings saved at start.
            unsafe { libc::tcsetattr(0, libc::TCSANOW, &t) };
        }
    }
}

fn copy(from: RawFd, to: RawFd) {
    let mut buf = [0u8; 8192];
    loop {
        match sys::read(from, &mut buf) {
            Ok(0) | Err(_) => return,
            Ok(n) => {
                if sys::write_all(to, &buf[..n]).is_err() {
                    return;
                }
            }
        }
    }
}
