//! Persistent network namespaces: a namespace made by one thread's `unshare(CLONE_NEWNET)` and
//! kept alive by a bind mount of its nsfs file (as `ip netns add` does), so that it can be set
//! up before any container process exists and handed to the runtime as a path.
//!
//! Network namespace membership is per thread, so everything here runs on a short-lived thread
//! of its own: the calling thread's namespace never changes.

use std::ffi::CString;
use std::fs::File;
use std::io;
use std::os::fd::AsRawFd;
use std::os::unix::ffi::OsStrExt;
use std::path::Path;

fn cstr(p: &Path) -> io::Result<CString> {
    CString::new(p.as_os_str().as_bytes()).map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "path with NUL"))
}

fn check(r: libc::c_int, what: impl FnOnce() -> String) -> io::Result<()> {
    if r < 0 {
        let e = io::Error::last_os_error();
        return Err(io::Error::new(e.kind(), format!("{}: {e}", what())));
    }
    Ok(())
}

/// Make a new network namespace and pin it at `path` (a new empty file is created there).
pub fn create(path: &Path) -> io::Result<()> {
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir)?;
    }
    File::create(path).map_err(|e| io::Error::new(e.kind(), format!("creating {}: {e}", path.display())))?;
    let target = cstr(path)?;
    let made = std::thread::spawn(move || -> io::Result<()> {
        // SAFETY: unshare(2) with a constant flag; it changes only this thread's namespace.
        check(unsafe { libc::unshare(libc::CLONE_NEWNET) }, || "unshare(CLONE_NEWNET)".into())?;
        let src = c"/proc/thread-self/ns/net";
        // SAFETY: bind mount between two valid NUL-terminated paths.
        let r =
            unsafe { libc::mount(src.as_ptr(), target.as_ptr(), std::ptr::null(), libc::MS_BIND, std::ptr::null()) };
        check(r, || format!("pinning the network namespace at {}", target.to_string_lossy()))
    })
    .join()
    .unwrap_or_else(|_| Err(io::Error::other("the namespace thread panicked")));
    if made.is_err() {
        let _ = std::fs::remove_file(path);
    }
    made
}

/// Unpin and remove a namespace made by [`create`] (it ends when nothing else uses it).
/// A missing one is not an error.
pub fn remove(path: &Path) -> io::Result<()> {
    let p = cstr(path)?;
    // SAFETY: umount2 of a valid path; EINVAL/ENOENT (not mounted, missing) are fine.
    unsafe { libc::umount2(p.as_ptr(), libc::MNT_DETACH) };
    match std::fs::remove_file(path) {
        Err(e) if e.kind() != io::ErrorKind::NotFound => Err(e),
        _ => Ok(()),
    }
}

/// Run `f` on a thread that has joined the namespace at `path` (a pinned namespace or a
/// `/proc/<pid>/ns/net`). Sockets opened in `f` stay in that namespace when returned.
pub fn run_in<T: Send + 'static>(path: &Path, f: impl FnOnce() -> io::Result<T> + Send + 'static) -> io::Result<T> {
    let ns = File::open(path).map_err(|e| io::Error::new(e.kind(), format!("opening {}: {e}", path.display())))?;
    let shown = path.display().to_string();
    std::thread::spawn(move || {
        // SAFETY: setns(2) on an open namespace fd; it changes only this thread.
        check(unsafe { libc::setns(ns.as_raw_fd(), libc::CLONE_NEWNET) }, || format!("joining {shown}"))?;
        f()
    })
    .join()
    .unwrap_or_else(|_| Err(io::Error::other("the namespace thread panicked")))
}
