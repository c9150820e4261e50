//! Path handling that cannot leave a root directory: lexical normalisation of archive names and
//! a directory walk that opens one component at a time with `O_NOFOLLOW`.
//!
//! Invariants:
//! - A normalised path is a list of plain components (no `""`, `.`, `..`, `/`, NUL); a leading
//!   `/` is dropped and `..` is resolved lexically, and a `..` that would climb above the root is
//!   an error. No component is ever looked up on disk during normalisation.
//! - Walking opens each component relative to the previous directory fd with
//!   `O_DIRECTORY | O_NOFOLLOW`: a symlink anywhere on the way (made by the archive or already
//!   there) is never followed; it is reported as [`WalkError::Symlink`].
//! - [`DirStack`] caches the fds of the last walked directory chain. A cached fd names a
//!   directory inode, so the cache must be cleared whenever a directory may have been removed or
//!   replaced (the unpacker does so on every removal).

use std::ffi::{CStr, CString, OsStr, OsString};
use std::io;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd};
use std::os::unix::ffi::{OsStrExt, OsStringExt};
use std::path::PathBuf;

use crate::sys;

/// One path component: a C string without `/` or NUL, never `.` or `..`.
pub type Component = CString;

/// Normalise an archive name into components relative to the root. `Err` carries the reason.
pub fn normalise(raw: &[u8]) -> Result<Vec<Component>, &'static str> {
    if raw.contains(&0) {
        return Err("path contains a NUL byte");
    }
    let mut out: Vec<Component> = Vec::new();
    for c in raw.split(|&b| b == b'/') {
        match c {
            b"" | b"." => {}
            b".." => {
                if out.pop().is_none() {
                    return Err("path escapes the root through \"..\"");
                }
            }
            c => out.push(CString::new(c).expect("NUL bytes were rejected above")),
        }
    }
    Ok(out)
}

/// Components joined with `/`, for messages and for bookkeeping keys.
pub fn display(comps: &[Component]) -> String {
    let mut p = PathBuf::new();
    for c in comps {
        p.push(OsStr::from_bytes(c.as_bytes()));
    }
    p.to_string_lossy().into_owned()
}

pub fn to_path(comps: &[Component]) -> PathBuf {
    comps.iter().map(|c| OsStr::from_bytes(c.as_bytes())).collect()
}

/// Why a walk stopped. The `String` is the offending prefix, relative to the root.
#[derive(Debug)]
pub enum WalkError {
    /// A component is a symlink: refused, never followed.
    Symlink(String),
    /// A component exists but is not a directory.
    NotDir(String),
    /// A component does not exist (and creating was not asked for).
    Missing(String),
    Io(String, io::Error),
}

impl std::fmt::Display for WalkError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            WalkError::Symlink(p) => write!(f, "{p:?} is a symlink; refusing to resolve a path through it"),
            WalkError::NotDir(p) => write!(f, "{p:?} is not a directory"),
            WalkError::Missing(p) => write!(f, "{p:?} does not exist"),
            WalkError::Io(p, e) => write!(f, "opening {p:?}: {e}"),
        }
    }
}

fn open_dir_flags() -> libc::c_int {
    libc::O_RDONLY | libc::O_DIRECTORY | libc::O_NOFOLLOW
}

/// Open the directory `name` inside `dir` without following symlinks; with `create`, make it
/// (mode 0755) if missing. `prefix` is only used in errors.
fn open_child(dir: BorrowedFd<'_>, name: &CStr, create: bool, prefix: &[Component]) -> Result<OwnedFd, WalkError> {
    let mut created = false;
    loop {
        match sys::openat(dir, name, open_dir_flags(), 0) {
            Ok(fd) => {
                if created {
                    // mkdirat honours the umask; make the implied directory exactly 0755.
                    sys::fchmod(fd.as_fd(), 0o755).map_err(|e| WalkError::Io(display(prefix), e))?;
                }
                return Ok(fd);
            }
            Err(e) if e.raw_os_error() == Some(libc::ENOENT) => {
                if !create {
                    return Err(WalkError::Missing(display(prefix)));
                }
                match sys::mkdirat(dir, name, 0o755) {
                    Ok(()) => created = true,
                    Err(e) if e.raw_os_error() == Some(libc::EEXIST) => {}
                    Err(e) => return Err(WalkError::Io(display(prefix), e)),
                }
            }
            Err(e) if matches!(e.raw_os_error(), Some(libc::ELOOP) | Some(libc::ENOTDIR)) => {
                let st = sys::lstatat(dir, name).map_err(|e| WalkError::Io(display(prefix), e))?;
                return Err(match st {
                    Some(st) if st.st_mode & libc::S_IFMT == libc::S_IFLNK => WalkError::Symlink(display(prefix)),
                    _ => WalkError::NotDir(display(prefix)),
                });
            }
            Err(e) => return Err(WalkError::Io(display(prefix), e)),
        }
    }
}

/// Open the directory `comps` below `root` (the root itself if empty), one component at a time.
pub fn walk(root: BorrowedFd<'_>, comps: &[Component], create: bool) -> Result<OwnedFd, WalkError> {
    let mut cur: OwnedFd = sys::openat(root, c".", open_dir_flags(), 0).map_err(|e| WalkError::Io(String::new(), e))?;
    for (i, c) in comps.iter().enumerate() {
        cur = open_child(cur.as_fd(), c, create, &comps[..=i])?;
    }
    Ok(cur)
}

/// A cache of the directory fds along the most recently walked path, so consecutive archive
/// entries in the same directory cost no extra system calls.
pub struct DirStack {
    root: OwnedFd,
    stack: Vec<(Component, OwnedFd)>,
}

impl DirStack {
    /// A cache for walks below `root` (the fd is duplicated).
    pub fn new(root: BorrowedFd<'_>) -> io::Result<DirStack> {
        Ok(DirStack { root: root.try_clone_to_owned()?, stack: Vec::new() })
    }

    /// Forget every cached fd (call after anything was removed or replaced).
    pub fn clear(&mut self) {
        self.stack.clear();
    }

    /// The fd of directory `comps` below the root, walking only the part not already cached.
    pub fn resolve(&mut self, comps: &[Component], create: bool) -> Result<BorrowedFd<'_>, WalkError> {
        let common = self.stack.iter().zip(comps).take_while(|((a, _), b)| a == *b).count();
        self.stack.truncate(common);
        for i in common..comps.len() {
            let fd = {
                let parent = self.stack.last().map_or(self.root.as_fd(), |(_, fd)| fd.as_fd());
                open_child(parent, &comps[i], create, &comps[..=i])?
            };
            self.stack.push((comps[i].clone(), fd));
        }
        Ok(self.stack.last().map_or(self.root.as_fd(), |(_, fd)| fd.as_fd()))
    }
}

/// Remove `name` in `dir` and, if it is a directory, everything below it, never following a
/// symlink. Missing is fine.
pub fn remove_all_at(dir: BorrowedFd<'_>, name: &CStr) -> io::Result<()> {
    let Some(st) = sys::lstatat(dir, name)? else { return Ok(()) };
    if st.st_mode & libc::S_IFMT != libc::S_IFDIR {
        return ignore_enoent(sys::unlinkat(dir, name, 0));
    }
    let child = sys::openat(dir, name, open_dir_flags(), 0)?;
    for entry in list_dir(child.as_fd())? {
        remove_all_at(child.as_fd(), &entry)?;
    }
    drop(child);
    ignore_enoent(sys::unlinkat(dir, name, libc::AT_REMOVEDIR))
}

fn ignore_enoent(r: io::Result<()>) -> io::Result<()> {
    match r {
        Err(e) if e.raw_os_error() == Some(libc::ENOENT) => Ok(()),
        r => r,
    }
}

/// The names in a directory (without `.` and `..`), read through `/proc/self/fd` so the
/// already-resolved fd is used and nothing is looked up by path again.
pub fn list_dir(dir: BorrowedFd<'_>) -> io::Result<Vec<Component>> {
    let path = sys::proc_fd_path(dir.as_raw_fd(), None);
    let path = PathBuf::from(OsString::from_vec(path.into_bytes()));
    let mut out = Vec::new();
    for entry in std::fs::read_dir(path)? {
        let name = entry?.file_name();
        out.push(CString::new(name.as_bytes()).expect("directory entry names contain no NUL"));
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::{display, normalise};

    fn norm(s: &str) -> Result<String, &'static str> {
        normalise(s.as_bytes()).map(|c| display(&c))
    }

    #[test]
    fn normalises_lexically() {
        assert_eq!(norm("a/b/c"), Ok("a/b/c".into()));
        assert_eq!(norm("/abs/path/"), Ok("abs/path".into()));
        assert_eq!(norm("./a//./b/"), Ok("a/b".into()));
        assert_eq!(norm("a/../b"), Ok("b".into()));
        assert_eq!(norm("a/b/../../c"), Ok("c".into()));
        assert_eq!(norm("./"), Ok("".into()));
        assert_eq!(norm("/"), Ok("".into()));
        assert_eq!(norm("a/.."), Ok("".into()));
        assert!(norm("..").is_err());
        assert!(norm("../x").is_err());
        assert!(norm("/../x").is_err());
        assert!(norm("a/../../x").is_err());
        assert!(normalise(b"a\0b").is_err());
        assert_eq!(norm("...").unwrap(), "...");
        assert_eq!(norm("a/.wh..wh..opq").unwrap(), "a/.wh..wh..opq");
    }
}
