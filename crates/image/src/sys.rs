//! Thin, checked wrappers over the `*at` system calls the store and the unpacker use.
//!
//! Every function turns a `-1`/errno return into an `io::Error` and keeps its `unsafe` block to
//! the single call. Names are `&CStr` components relative to a directory fd that the caller has
//! already resolved safely; nothing here resolves multi-component paths on its own.

use std::ffi::{CStr, CString, OsStr};
use std::io;
use std::os::fd::{AsRawFd, BorrowedFd, FromRawFd, OwnedFd, RawFd};
use std::os::unix::ffi::OsStrExt;

fn check(ret: libc::c_int) -> io::Result<libc::c_int> {
    if ret < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(ret)
    }
}

/// A C string from OS bytes; a NUL byte inside is an `InvalidInput` error.
pub fn cstr(s: &OsStr) -> io::Result<CString> {
    CString::new(s.as_bytes()).map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "name contains a NUL byte"))
}

pub fn openat(dir: BorrowedFd<'_>, name: &CStr, flags: libc::c_int, mode: libc::mode_t) -> io::Result<OwnedFd> {
    // SAFETY: name is a valid C string and dir an open directory fd; the result is a new fd we own.
    let fd = check(unsafe { libc::openat(dir.as_raw_fd(), name.as_ptr(), flags | libc::O_CLOEXEC, mode) })?;
    // SAFETY: fd was just returned by openat and is owned by nobody else.
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}

pub fn mkdirat(dir: BorrowedFd<'_>, name: &CStr, mode: libc::mode_t) -> io::Result<()> {
    // SAFETY: name is a valid C string; dir an open directory fd.
    check(unsafe { libc::mkdirat(dir.as_raw_fd(), name.as_ptr(), mode) })?;
    Ok(())
}

pub fn mknodat(dir: BorrowedFd<'_>, name: &CStr, mode: libc::mode_t, dev: libc::dev_t) -> io::Result<()> {
    // SAFETY: name is a valid C string; dir an open directory fd.
    check(unsafe { libc::mknodat(dir.as_raw_fd(), name.as_ptr(), mode, dev) })?;
    Ok(())
}

pub fn symlinkat(target: &CStr, dir: BorrowedFd<'_>, name: &CStr) -> io::Result<()> {
    // SAFETY: both are valid C strings; dir an open directory fd.
    check(unsafe { libc::symlinkat(target.as_ptr(), dir.as_raw_fd(), name.as_ptr()) })?;
    Ok(())
}

/// `linkat` without `AT_SYMLINK_FOLLOW`: a symlink target is linked itself, never followed.
pub fn linkat(old_dir: BorrowedFd<'_>, old: &CStr, new_dir: BorrowedFd<'_>, new: &CStr) -> io::Result<()> {
    // SAFETY: both names are valid C strings; both dirs are open directory fds.
    check(unsafe { libc::linkat(old_dir.as_raw_fd(), old.as_ptr(), new_dir.as_raw_fd(), new.as_ptr(), 0) })?;
    Ok(())
}

pub fn unlinkat(dir: BorrowedFd<'_>, name: &CStr, flags: libc::c_int) -> io::Result<()> {
    // SAFETY: name is a valid C string; dir an open directory fd.
    check(unsafe { libc::unlinkat(dir.as_raw_fd(), name.as_ptr(), flags) })?;
    Ok(())
}

/// `fstatat(dir, name, AT_SYMLINK_NOFOLLOW)`; `Ok(None)` when the name does not exist.
pub fn lstatat(dir: BorrowedFd<'_>, name: &CStr) -> io::Result<Option<libc::stat>> {
    // SAFETY: an all-zero stat is a valid value of this plain C struct.
    let mut st: libc::stat = unsafe { std::mem::zeroed() };
    // SAFETY: name is a valid C string, st a valid out-pointer.
    let r = unsafe { libc::fstatat(dir.as_raw_fd(), name.as_ptr(), &mut st, libc::AT_SYMLINK_NOFOLLOW) };
    match check(r) {
        Ok(_) => Ok(Some(st)),
        Err(e) if e.raw_os_error() == Some(libc::ENOENT) => Ok(None),
        Err(e) => Err(e),
    }
}

pub fn fstat(fd: BorrowedFd<'_>) -> io::Result<libc::stat> {
    // SAFETY: an all-zero stat is a valid value of this plain C struct.
    let mut st: libc::stat = unsafe { std::mem::zeroed() };
    // SAFETY: fd is open, st a valid out-pointer.
    check(unsafe { libc::fstat(fd.as_raw_fd(), &mut st) })?;
    Ok(st)
}

/// Change the owner of the object `fd` refers to (any fd, including `O_PATH` ones and symlinks).
pub fn fchown_empty(fd: BorrowedFd<'_>, uid: u32, gid: u32) -> io::Result<()> {
    // SAFETY: the empty name with AT_EMPTY_PATH makes fchownat act on fd itself.
    check(unsafe { libc::fchownat(fd.as_raw_fd(), c"".as_ptr(), uid, gid, libc::AT_EMPTY_PATH) })?;
    Ok(())
}

pub fn fchmod(fd: BorrowedFd<'_>, mode: libc::mode_t) -> io::Result<()> {
    // SAFETY: fd is an open (non-O_PATH) fd.
    check(unsafe { libc::fchmod(fd.as_raw_fd(), mode) })?;
    Ok(())
}

/// The `/proc/self/fd/N` path of an fd, optionally with a child name: the way to reach
/// an `O_PATH` fd (device node, fifo) or a symlink in a resolved directory with path-only calls.
pub fn proc_fd_path(fd: RawFd, child: Option<&CStr>) -> CString {
    let mut s = format!("/proc/self/fd/{fd}").into_bytes();
    if let Some(c) = child {
        s.push(b'/');
        s.extend_from_slice(c.to_bytes());
    }
    CString::new(s).expect("no NUL in a /proc path built from an fd number and a C string")
}

/// `chmod` through `/proc/self/fd/N` of an `O_PATH` fd (fchmod refuses `O_PATH` fds).
pub fn chmod_path(path: &CStr, mode: libc::mode_t) -> io::Result<()> {
    // SAFETY: path is a valid C string.
    check(unsafe { libc::chmod(path.as_ptr(), mode) })?;
    Ok(())
}

/// Seconds since the epoch and nanoseconds.
pub type Time = (i64, u32);

fn timespec((secs, nanos): Time) -> libc::timespec {
    libc::timespec { tv_sec: secs as libc::time_t, tv_nsec: nanos as libc::c_long }
}

/// Set access and modification times of `name` in `dir` without following a final symlink.
pub fn utimensat_nofollow(dir: BorrowedFd<'_>, name: &CStr, atime: Time, mtime: Time) -> io::Result<()> {
    let ts = [timespec(atime), timespec(mtime)];
    // SAFETY: name is a valid C string and ts an array of two timespecs.
    check(unsafe { libc::utimensat(dir.as_raw_fd(), name.as_ptr(), ts.as_ptr(), libc::AT_SYMLINK_NOFOLLOW) })?;
    Ok(())
}

pub fn futimens(fd: BorrowedFd<'_>, atime: Time, mtime: Time) -> io::Result<()> {
    let ts = [timespec(atime), timespec(mtime)];
    // SAFETY: fd is open and ts an array of two timespecs.
    check(unsafe { libc::futimens(fd.as_raw_fd(), ts.as_ptr()) })?;
    Ok(())
}

pub fn fsetxattr(fd: BorrowedFd<'_>, name: &CStr, value: &[u8]) -> io::Result<()> {
    // SAFETY: name is a valid C string; value points to value.len() readable bytes.
    check(unsafe { libc::fsetxattr(fd.as_raw_fd(), name.as_ptr(), value.as_ptr().cast(), value.len(), 0) })?;
    Ok(())
}

/// `setxattr` (follow = true) or `lsetxattr` on a path (used with [`proc_fd_path`]).
pub fn setxattr_path(path: &CStr, name: &CStr, value: &[u8], follow: bool) -> io::Result<()> {
    let (p, n, v, len) = (path.as_ptr(), name.as_ptr(), value.as_ptr().cast(), value.len());
    // SAFETY: path and name are valid C strings; value points to len readable bytes.
    let r = unsafe {
        if follow {
            libc::setxattr(p, n, v, len, 0)
        } else {
            libc::lsetxattr(p, n, v, len, 0)
        }
    };
    check(r)?;
    Ok(())
}

/// `flock(2)`; `Ok(false)` when `nonblocking` and another open file description holds the lock.
pub fn flock_exclusive(fd: BorrowedFd<'_>, nonblocking: bool) -> io::Result<bool> {
    let op = libc::LOCK_EX | if nonblocking { libc::LOCK_NB } else { 0 };
    loop {
        // SAFETY: flock takes an open fd and flags.
        match check(unsafe { libc::flock(fd.as_raw_fd(), op) }) {
            Ok(_) => return Ok(true),
            Err(e) if e.raw_os_error() == Some(libc::EWOULDBLOCK) => return Ok(false),
            Err(e) if e.raw_os_error() == Some(libc::EINTR) => continue,
            Err(e) => return Err(e),
        }
    }
}

/// `renameat2(RENAME_NOREPLACE)`; `Ok(false)` if the destination already exists. Falls back to
/// a link + unlink pair on filesystems without `RENAME_NOREPLACE`, which has the same outcome.
pub fn rename_noreplace(old: &CStr, new: &CStr) -> io::Result<bool> {
    // SAFETY: both are valid C strings; AT_FDCWD makes them ordinary paths.
    let r = unsafe {
        libc::syscall(
            libc::SYS_renameat2,
            libc::AT_FDCWD,
            old.as_ptr(),
            libc::AT_FDCWD,
            new.as_ptr(),
            libc::RENAME_NOREPLACE,
        )
    };
    if r == 0 {
        return Ok(true);
    }
    let e = io::Error::last_os_error();
    match e.raw_os_error() {
        Some(libc::EEXIST) => Ok(false),
        Some(libc::EINVAL) | Some(libc::ENOSYS) => {
            // SAFETY: both are valid C strings.
            match check(unsafe { libc::link(old.as_ptr(), new.as_ptr()) }) {
                Ok(_) => {}
                Err(e) if e.raw_os_error() == Some(libc::EEXIST) => return Ok(false),
                Err(e) => return Err(e),
            }
            // SAFETY: old is a valid C string.
            check(unsafe { libc::unlink(old.as_ptr()) })?;
            Ok(true)
        }
        _ => Err(e),
    }
}

pub fn makedev(major: u32, minor: u32) -> libc::dev_t {
    libc::makedev(major, minor)
}

/// `mount -t overlay overlay <target> -o <opts>`.
/// Mount overlayfs at `target` with `opts`, resolving relative paths in `opts` against `cwd`.
///
/// Relative lower dirs keep the option string (one page at most) short enough for deep images.
/// The mount is made by a forked child that changes directory first, so the caller's working
/// directory (shared by all its threads) never changes; the child shares the mount namespace,
/// so the mount is the caller's.
pub fn mount_overlay(cwd: &std::path::Path, target: &std::path::Path, opts: &str) -> io::Result<()> {
    let dir = cstr(cwd.as_os_str())?;
    let t = cstr(target.as_os_str())?;
    let o = CString::new(opts).map_err(|_| io::Error::from_raw_os_error(libc::EINVAL))?;
    // SAFETY: the child runs only async-signal-safe system calls (chdir, mount, _exit) on strings
    // prepared before the fork, so forking a multi-threaded process is sound.
    let pid = check(unsafe { libc::fork() })?;
    if pid == 0 {
        // SAFETY: valid C strings that outlive the calls; _exit never returns.
        unsafe {
            if libc::chdir(dir.as_ptr()) < 0 {
                libc::_exit(*libc::__errno_location());
            }
            let r =
                libc::mount(c"overlay".as_ptr(), t.as_ptr(), c"overlay".as_ptr(), 0, o.as_ptr() as *const libc::c_void);
            libc::_exit(if r < 0 { *libc::__errno_location() } else { 0 });
        }
    }
    let mut status = 0;
    loop {
        // SAFETY: waiting for our own child; status is a valid out pointer.
        let r = unsafe { libc::waitpid(pid, &mut status, 0) };
        if r == pid {
            break;
        }
        let e = io::Error::last_os_error();
        if e.raw_os_error() != Some(libc::EINTR) {
            return Err(e);
        }
    }
    match (libc::WIFEXITED(status), libc::WEXITSTATUS(status)) {
        (true, 0) => Ok(()),
        (true, errno) => Err(io::Error::from_raw_os_error(errno)),
        _ => Err(io::Error::other("the mount helper process was killed")),
    }
}

/// `umount2(target, MNT_DETACH)`.
pub fn umount(target: &std::path::Path) -> io::Result<()> {
    let t = cstr(target.as_os_str())?;
    // SAFETY: t is a valid C string.
    check(unsafe { libc::umount2(t.as_ptr(), libc::MNT_DETACH) })?;
    Ok(())
}
