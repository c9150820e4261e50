//! Files in and out of a container's root filesystem: `docker cp` (`GET`/`HEAD`/`PUT
//! /containers/{id}/archive`), `docker export` (`GET /containers/{id}/export`) and `docker diff`
//! (`GET /containers/{id}/changes`).
//!
//! What is seen: the container's root filesystem, i.e. the overlay of the image's layers and the
//! container's `rw/upper`. A running container's is the mount at `<dir>/rootfs`; a stopped one's
//! is mounted for the operation at a private temporary mount point (`<dir>/cp-<random>`) and
//! unmounted afterwards, also on errors (the mount shares `rw/upper` and `rw/work` with the
//! container's own: should the container be started meanwhile, both are mounted for that
//! moment, which overlayfs allows with a warning).
//!
//! Binds, volumes and tmpfs mounts live in the container's own mount namespace and are NOT
//! visible here: copying from such a path gives what the image/rw layer holds under the mount
//! point, and copying into it writes to the root filesystem underneath the mount (dockerd works
//! inside the container's mount namespace and sees them). The exception is the daemon's
//! `/etc/hostname`, `/etc/hosts` and `/etc/resolv.conf`: copied out, they are the files the
//! container sees. `export` is the root filesystem alone, as Docker's.
//!
//! Security invariants (the root is the container's root filesystem, `root` below):
//! - Every path is resolved by this module one component at a time from an fd of `root`
//!   ([`resolve_dir`]): each step is an `openat(O_NOFOLLOW | O_DIRECTORY)` relative to the
//!   previous directory's fd. A symlink met on the way is read with `readlinkat` and its target
//!   resolved *inside* the root: an absolute target restarts at `root`, `..` pops the walked
//!   stack and never climbs above `root`. The kernel never follows a symlink for us, so neither a
//!   hostile link made by the container nor a directory swapped for a link while we work can lead
//!   outside (a swapped component makes the `O_NOFOLLOW` step fail instead).
//! - Final operations are `*at` calls on the resolved parent fd that do not follow a last
//!   symlink: files are created `O_CREAT | O_EXCL | O_NOFOLLOW`, existing entries removed without
//!   following ([`safepath::remove_all_at`]), metadata set through the opened fd or with
//!   `AT_SYMLINK_NOFOLLOW`; files read for a tar are opened `O_NOFOLLOW | O_NONBLOCK` and checked
//!   with `fstat` (device nodes are never opened).
//! - Archive entry names and hardlink targets are normalised lexically against the extraction
//!   directory; one climbing above it is refused (dockerd's "breakout" check), as is a symlink
//!   whose target, joined to the entry's directory, leaves the extraction directory.
//! - `trusted.overlay.*` xattrs in an archive are never applied.

use crate::daemon::{Container, Daemon};
use crate::http::{ApiError, ApiResult, Chunked, ChunkedWriter, Conn, Request};
use base64::Engine as _;
use berth_image::safepath;
use serde_json::{json, Value};
use std::collections::{BTreeSet, HashMap, VecDeque};
use std::ffi::{CStr, CString, OsStr};
use std::fs::File;
use std::io::{self, BufReader, BufWriter, Read, Write};
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, FromRawFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

/// Most symlinks followed while resolving one path (Linux's own limit).
const MAX_LINKS: u32 = 40;
const COPY_BUFFER: usize = 256 << 10;
/// Deepest directory nesting walked (tar and diff recurse per level on a connection thread's
/// stack; a container could otherwise nest directories until the daemon's stack overflows).
const MAX_DEPTH: usize = 400;
const OPAQUE_XATTR: &CStr = c"trusted.overlay.opaque";

// ---------------------------------------------------------------------------------------------
// Handlers

/// `GET /containers/{id}/archive?path=P` (a tar of P plus the stat header) and `HEAD` (the
/// header only).
pub fn get_archive(d: &Daemon, conn: &mut Conn, req: &Request, key: &str, head_only: bool) -> ApiResult<()> {
    archive(d, conn, req, key, head_only)
}

fn archive(d: &Daemon, conn: &mut Conn, req: &Request, key: &str, head_only: bool) -> ApiResult<()> {
    let path = req.q("path").unwrap_or("");
    if path.is_empty() {
        return Err(ApiError::bad("path cannot be empty"));
    }
    let c = d.find(key)?;
    let root = RootFs::open(d, &c)?;
    let abs = abs_path(path);
    let (mut target, canon) = lookup(root.fd(), &abs).map_err(|e| path_error(e, path, key))?;
    let etc = etc_files(d, &c);
    if let Target::Entry { st, .. } = &target {
        if st.st_mode & libc::S_IFMT == libc::S_IFREG {
            if let Some((fd, st)) = etc.iter().find(|(p, _)| *p == canon).and_then(|(_, h)| open_host_file(h)) {
                target = Target::File(fd, st);
            }
        }
    }
    let stat = stat_json(root.fd(), &abs, &target);
    let stat = base64::engine::general_purpose::STANDARD.encode(stat.to_string());
    if head_only {
        drop(root);
        return conn
            .head(200, &[("X-Docker-Container-Path-Stat", stat), ("Content-Length", "0".into())])
            .map_err(io_err);
    }
    conn.head(
        200,
        &[
            ("Content-Type", "application/x-tar".into()),
            ("X-Docker-Container-Path-Stat", stat),
            ("Transfer-Encoding", "chunked".into()),
        ],
    )
    .map_err(io_err)?;
    let base = go_base(&abs);
    let result = {
        let mut tw =
            TarWriter::new(BufWriter::with_capacity(COPY_BUFFER, ChunkedWriter(Chunked::new(&mut conn.stream))));
        tw.overrides = etc;
        tw.canon = canon;
        let r = match target {
            Target::Dir(fd, st) => {
                // dockerd's rebase: the directory itself is `<base>/` (`./` for `dir/.`, `/` for
                // the root) and its contents follow under it.
                let prefix = if base == b"/" { Vec::new() } else { base.clone() };
                tw.dir(fd.as_fd(), Some(prefix), &st)
            }
            Target::Entry { parent, name, st } => tw.entry(parent.as_fd(), &name, base.clone(), &st, st.st_dev),
            Target::File(fd, st) => tw.file(fd, base.clone(), &st),
        };
        r.and_then(|()| tw.finish())
    };
    drop(root);
    finish_stream(conn, result, "archive");
    d.container_event(&c, "archive-path", json!({}));
    Ok(())
}

/// `PUT /containers/{id}/archive?path=DIR`: extract the tar body into DIR (which must exist and
/// be a directory, symlinks followed inside the container).
pub fn put_archive(d: &Daemon, conn: &mut Conn, req: &Request, key: &str) -> ApiResult<()> {
    let path = req.q("path").unwrap_or("").to_string();
    if path.is_empty() {
        return Err(ApiError::bad("path cannot be empty"));
    }
    let c = d.find(key)?;
    let no_overwrite = req.flag("noOverwriteDirNonDir");
    let copy_uid_gid = req.flag("copyUIDGID");
    let result = (|| -> ApiResult<()> {
        let root = RootFs::open(d, &c)?;
        let abs = abs_path(&path);
        let (dest, dest_fd) = match resolve_dir(root.fd(), &[], &abs, false) {
            Ok(r) => r,
            Err(ResolveError::NotDir(_)) => return Err(ApiError::bad("extraction point is not a directory")),
            Err(e) => return Err(path_error(e, &path, key)),
        };
        drop(dest_fd);
        if c.host_config["ReadonlyRootfs"].as_bool().unwrap_or(false) {
            return Err(ApiError::bad("container rootfs is marked read-only"));
        }
        let owner = if copy_uid_gid { container_user(root.fd(), &c) } else { None };
        let mut x = Extractor {
            root: root.fd(),
            dest,
            dest_shown: String::from_utf8_lossy(&abs).into_owned(),
            no_overwrite,
            owner,
            dir_times: Vec::new(),
            buf: vec![0; COPY_BUFFER],
        };
        let mut body = BufReader::with_capacity(COPY_BUFFER, conn.body_reader());
        let r = x.extract(&mut body);
        // Whatever was not read (the rest after an error, tar padding) is drained so the
        // connection stays in step.
        let _ = io::copy(&mut body, &mut io::sink());
        drop(body);
        drop(x);
        drop(root);
        r.map_err(|e| ApiError::internal(format!("Error processing tar file: {e}")))
    })();
    // An error before the body was read: drain it, then answer.
    let _ = io::copy(&mut conn.body_reader(), &mut io::sink());
    result?;
    d.container_event(&c, "extract-to-dir", json!({}));
    conn.empty(200).map_err(io_err)
}

/// `GET /containers/{id}/export`: the whole root filesystem as a tar (names relative, no entry
/// for the root itself; directories that are mount points are listed without their contents).
pub fn export(d: &Daemon, conn: &mut Conn, key: &str) -> ApiResult<()> {
    let c = d.find(key)?;
    let root = RootFs::open(d, &c)?;
    let st = sys::fstat(root.fd()).map_err(|e| ApiError::internal(format!("exporting: {e}")))?;
    conn.head(200, &[("Content-Type", "application/x-tar".into()), ("Transfer-Encoding", "chunked".into())])
        .map_err(io_err)?;
    let result = {
        let mut tw =
            TarWriter::new(BufWriter::with_capacity(COPY_BUFFER, ChunkedWriter(Chunked::new(&mut conn.stream))));
        tw.dir(root.fd(), None, &st).and_then(|()| tw.finish())
    };
    drop(root);
    finish_stream(conn, result, "export");
    d.container_event(&c, "export", json!({}));
    Ok(())
}

/// `GET /containers/{id}/changes`: what the container's rw layer changed, as dockerd reports it:
/// `Kind` 0 modified, 1 added, 2 deleted; a directory of the image that has changes below it
/// (or whose mode or owner changed) is listed as modified.
pub fn changes(d: &Daemon, conn: &mut Conn, key: &str) -> ApiResult<()> {
    let c = d.find(key)?;
    let rec = d.images.resolve(&c.image_id).map_err(|e| ApiError::internal(format!("image: {e}")))?;
    let mut layers = d.images.rootfs_layers(&rec);
    layers.reverse();
    let upper = d.dir(&c.id).join("rw").join("upper");
    let list = compute_changes(&upper, &layers).map_err(|e| ApiError::internal(format!("computing changes: {e}")))?;
    let v = if list.is_empty() {
        Value::Null // dockerd's empty (nil) list
    } else {
        Value::Array(list.iter().map(|(p, k)| json!({"Path": String::from_utf8_lossy(p), "Kind": *k as u8})).collect())
    };
    conn.json(200, &v).map_err(io_err)
}

fn io_err(e: io::Error) -> ApiError {
    ApiError::internal(format!("writing the response: {e}"))
}

fn path_error(e: ResolveError, path: &str, key: &str) -> ApiError {
    match e {
        ResolveError::NotFound(_) => ApiError::not_found(format!("Could not find the file {path} in container {key}")),
        e => ApiError::internal(format!("lstat {path}: {e}")),
    }
}

/// After a streamed tar: end the chunked body, or end the connection when the tar failed midway
/// (the client sees a truncated stream, as with dockerd).
fn finish_stream(conn: &mut Conn, result: io::Result<()>, what: &str) {
    match result {
        Ok(()) => {
            if conn.stream.write_all(b"0\r\n\r\n").and_then(|()| conn.stream.flush()).is_err() {
                conn.closed = true;
            }
        }
        Err(e) => {
            eprintln!("berth daemon: {what}: {e}");
            let _ = conn.stream.shutdown(std::net::Shutdown::Both);
            conn.closed = true;
        }
    }
}

// ---------------------------------------------------------------------------------------------
// The container's root filesystem for one operation

/// An fd of the container's root filesystem; for a stopped container the overlay is mounted at
/// a temporary mount point for as long as this lives.
struct RootFs {
    fd: Option<OwnedFd>,
    tmp: Option<PathBuf>,
}

impl RootFs {
    fn open(d: &Daemon, c: &Container) -> ApiResult<RootFs> {
        let internal = |what: &str, e: &dyn std::fmt::Display| ApiError::internal(format!("{what}: {e}"));
        let dir = d.dir(&c.id);
        let rootfs = dir.join("rootfs");
        if c.running() && is_mount_point(&rootfs, &dir) {
            let fd = open_dir_path(&rootfs).map_err(|e| internal("opening the root filesystem", &e))?;
            // Still the overlay (not unmounted between the check and the open)?
            if sys::fstat(fd.as_fd()).ok().map(|s| s.st_dev) != std::fs::metadata(&dir).ok().map(|m| m.dev()) {
                return Ok(RootFs { fd: Some(fd), tmp: None });
            }
        }
        let rec = d.images.resolve(&c.image_id).map_err(|e| internal("image", &e))?;
        let tmp = dir.join(format!("cp-{}", &crate::daemon::random_id()[..16]));
        std::fs::create_dir(&tmp).map_err(|e| internal("creating a mount point", &e))?;
        if let Err(e) = d.images.mount(&rec, &dir.join("rw"), &tmp) {
            let _ = std::fs::remove_dir(&tmp);
            return Err(internal("mounting the root filesystem", &e));
        }
        let mut r = RootFs { fd: None, tmp: Some(tmp.clone()) };
        r.fd = Some(open_dir_path(&tmp).map_err(|e| internal("opening the root filesystem", &e))?);
        Ok(r)
    }

    fn fd(&self) -> BorrowedFd<'_> {
        self.fd.as_ref().expect("set once opened").as_fd()
    }
}

impl Drop for RootFs {
    fn drop(&mut self) {
        // Close first: a lazily unmounted overlay lives on while an fd holds it.
        self.fd.take();
        if let Some(tmp) = self.tmp.take() {
            if let Err(e) = berth_image::imagestore::unmount(&tmp) {
                eprintln!("berth daemon: {e}");
            }
            let _ = std::fs::remove_dir(&tmp);
        }
    }
}

fn is_mount_point(p: &Path, parent: &Path) -> bool {
    match (std::fs::symlink_metadata(p), std::fs::metadata(parent)) {
        (Ok(a), Ok(b)) => a.is_dir() && a.dev() != b.dev(),
        _ => false,
    }
}

fn open_dir_path(p: &Path) -> io::Result<OwnedFd> {
    let c = CString::new(p.as_os_str().as_bytes()).map_err(|_| io::Error::from_raw_os_error(libc::EINVAL))?;
    // SAFETY: a valid C string; the result is a new fd we own.
    let fd = unsafe { libc::open(c.as_ptr(), libc::O_RDONLY | libc::O_DIRECTORY | libc::O_CLOEXEC) };
    if fd < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: fd was just returned by open.
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}

// ---------------------------------------------------------------------------------------------
// Paths

/// The path's components (no empty ones, no `.`); `..` is kept for the resolver.
fn split(p: &[u8]) -> impl Iterator<Item = &[u8]> {
    p.split(|&b| b == b'/').filter(|c| !c.is_empty() && *c != b".")
}

/// Lexical cleaning of an absolute path (Go's `filepath.Clean` of `"/" + p`), as components.
fn clean_comps(p: &[u8]) -> Vec<Vec<u8>> {
    let mut out: Vec<Vec<u8>> = Vec::new();
    for c in split(p) {
        if c == b".." {
            out.pop();
        } else {
            out.push(c.to_vec());
        }
    }
    out
}

/// dockerd's `PreserveTrailingDotOrSeparator(filepath.Join("/", p), p)`.
fn abs_path(p: &str) -> Vec<u8> {
    let comps = clean_comps(p.as_bytes());
    let mut s = Vec::new();
    for c in &comps {
        s.push(b'/');
        s.extend_from_slice(c);
    }
    if s.is_empty() {
        s.push(b'/');
    }
    let orig = p.as_bytes();
    if orig == b"." || orig.ends_with(b"/.") {
        if !s.ends_with(b"/") {
            s.push(b'/');
        }
        s.push(b'.');
    } else if orig.ends_with(b"/") && !s.ends_with(b"/") {
        s.push(b'/');
    }
    s
}

/// Go's `filepath.Base`: the last element after trailing slashes are dropped; `/` for the root.
fn go_base(p: &[u8]) -> Vec<u8> {
    let t = {
        let mut e = p.len();
        while e > 0 && p[e - 1] == b'/' {
            e -= 1;
        }
        &p[..e]
    };
    if t.is_empty() {
        return if p.is_empty() { b".".to_vec() } else { b"/".to_vec() };
    }
    t.rsplit(|&b| b == b'/').next().unwrap_or(t).to_vec()
}

fn show(comps: &[Vec<u8>]) -> String {
    let mut s = String::new();
    for c in comps {
        s.push('/');
        s.push_str(&String::from_utf8_lossy(c));
    }
    if s.is_empty() {
        s.push('/');
    }
    s
}

#[derive(Debug)]
enum ResolveError {
    NotFound(String),
    NotDir(String),
    Loop(String),
    Io(String, io::Error),
}

impl std::fmt::Display for ResolveError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ResolveError::NotFound(p) => write!(f, "{p}: no such file or directory"),
            ResolveError::NotDir(p) => write!(f, "{p}: not a directory"),
            ResolveError::Loop(p) => write!(f, "{p}: too many levels of symbolic links"),
            ResolveError::Io(p, e) => write!(f, "{p}: {e}"),
        }
    }
}

/// Resolve the directory `rel` below the directory `start` (canonical components from the root)
/// inside `root`, following symlinks inside the root only (see the module documentation).
/// With `mkdir`, missing components of `rel` itself (not of a symlink's target) are created
/// (mode 0755). Returns the directory's canonical components and an fd of it.
fn resolve_dir(
    root: BorrowedFd<'_>,
    start: &[Vec<u8>],
    rel: &[u8],
    mkdir: bool,
) -> Result<(Vec<Vec<u8>>, OwnedFd), ResolveError> {
    let mut stack: Vec<(Vec<u8>, OwnedFd)> = Vec::new();
    // (component, came from a symlink's target or the start)
    let mut queue: VecDeque<(Vec<u8>, bool)> = start.iter().map(|c| (c.clone(), true)).collect();
    queue.extend(split(rel).map(|c| (c.to_vec(), false)));
    let mut links = 0;
    let here = |stack: &Vec<(Vec<u8>, OwnedFd)>, c: &[u8]| {
        let mut comps: Vec<Vec<u8>> = stack.iter().map(|(n, _)| n.clone()).collect();
        comps.push(c.to_vec());
        show(&comps)
    };
    while let Some((c, from_link)) = queue.pop_front() {
        if c == b".." {
            stack.pop();
            continue;
        }
        let name = CString::new(c.clone()).map_err(|_| ResolveError::NotFound(here(&stack, &c)))?;
        let cur = stack.last().map_or(root, |(_, fd)| fd.as_fd());
        match sys::openat(cur, &name, libc::O_RDONLY | libc::O_DIRECTORY | libc::O_NOFOLLOW, 0) {
            Ok(fd) => stack.push((c, fd)),
            Err(e) if e.raw_os_error() == Some(libc::ENOENT) => {
                if !mkdir || from_link {
                    return Err(ResolveError::NotFound(here(&stack, &c)));
                }
                match sys::mkdirat(cur, &name, 0o755) {
                    Ok(()) => {
                        if let Ok(fd) =
                            sys::openat(cur, &name, libc::O_RDONLY | libc::O_DIRECTORY | libc::O_NOFOLLOW, 0)
                        {
                            let _ = sys::fchmod(fd.as_fd(), 0o755); // mkdirat honours the umask
                        }
                    }
                    Err(e) if e.raw_os_error() == Some(libc::EEXIST) => {}
                    Err(e) => return Err(ResolveError::Io(here(&stack, &c), e)),
                }
                queue.push_front((c, from_link));
            }
            Err(e) if matches!(e.raw_os_error(), Some(libc::ELOOP) | Some(libc::ENOTDIR)) => {
                let st = sys::lstatat(cur, &name).map_err(|e| ResolveError::Io(here(&stack, &c), e))?;
                match st {
                    Some(st) if st.st_mode & libc::S_IFMT == libc::S_IFLNK => {
                        links += 1;
                        if links > MAX_LINKS {
                            return Err(ResolveError::Loop(here(&stack, &c)));
                        }
                        let target = sys::readlinkat(cur, &name).map_err(|e| ResolveError::Io(here(&stack, &c), e))?;
                        if target.starts_with(b"/") {
                            stack.clear();
                        }
                        for part in split(&target).collect::<Vec<_>>().into_iter().rev() {
                            queue.push_front((part.to_vec(), true));
                        }
                    }
                    Some(_) => return Err(ResolveError::NotDir(here(&stack, &c))),
                    None => return Err(ResolveError::NotFound(here(&stack, &c))),
                }
            }
            Err(e) => return Err(ResolveError::Io(here(&stack, &c), e)),
        }
    }
    let fd = match stack.last() {
        Some((_, fd)) => fd.try_clone(),
        None => root.try_clone_to_owned(),
    }
    .map_err(|e| ResolveError::Io(show(&[]), e))?;
    Ok((stack.into_iter().map(|(c, _)| c).collect(), fd))
}

/// What an archive path names.
enum Target {
    /// A directory (also a symlink followed because of a trailing `/` or `/.`).
    Dir(OwnedFd, libc::stat),
    /// Anything, not followed if a symlink: `name` in `parent`.
    Entry { parent: OwnedFd, name: CString, st: libc::stat },
    /// A file of the daemon's bind-mounted over the path ([`etc_files`]), opened.
    File(OwnedFd, libc::stat),
}

/// The files the daemon bind-mounts into every container (`<dir>/etc/{hostname,hosts,
/// resolv.conf}`), by their canonical path in the container, so that copying them out gives
/// what the container sees rather than the empty mount points underneath.
fn etc_files(d: &Daemon, c: &Container) -> Vec<(Vec<Vec<u8>>, PathBuf)> {
    ["hostname", "hosts", "resolv.conf"]
        .iter()
        .map(|f| (vec![b"etc".to_vec(), f.as_bytes().to_vec()], d.dir(&c.id).join("etc").join(f)))
        .filter(|(_, p)| std::fs::symlink_metadata(p).map(|m| m.is_file()).unwrap_or(false))
        .collect()
}

fn open_host_file(p: &Path) -> Option<(OwnedFd, libc::stat)> {
    let c = CString::new(p.as_os_str().as_bytes()).ok()?;
    let flags = libc::O_RDONLY | libc::O_NOFOLLOW | libc::O_NONBLOCK | libc::O_NOCTTY | libc::O_CLOEXEC;
    // SAFETY: a valid C string; the result is a new fd we own.
    let fd = unsafe { libc::open(c.as_ptr(), flags) };
    if fd < 0 {
        return None;
    }
    // SAFETY: fd was just returned by open.
    let fd = unsafe { OwnedFd::from_raw_fd(fd) };
    let st = sys::fstat(fd.as_fd()).ok()?;
    (st.st_mode & libc::S_IFMT == libc::S_IFREG).then_some((fd, st))
}

/// Resolve an [`abs_path`] as dockerd's `lstat` in the container would: every component but
/// the last followed; the last too when the path ends in `/` or `/.`.
fn lookup(root: BorrowedFd<'_>, abs: &[u8]) -> Result<(Target, Vec<Vec<u8>>), ResolveError> {
    let comps = clean_comps(abs);
    let follow_last = abs.ends_with(b"/") || abs.ends_with(b"/.");
    if follow_last || comps.is_empty() {
        let (canon, fd) = resolve_dir(root, &[], abs, false)?;
        let st = sys::fstat(fd.as_fd()).map_err(|e| ResolveError::Io(show(&comps), e))?;
        return Ok((Target::Dir(fd, st), canon));
    }
    let (last, parent) = comps.split_last().expect("not empty");
    let mut parent_path = Vec::new();
    for c in parent {
        parent_path.push(b'/');
        parent_path.extend_from_slice(c);
    }
    let (mut canon, pfd) = resolve_dir(root, &[], &parent_path, false)?;
    canon.push(last.clone());
    let name = CString::new(last.clone()).map_err(|_| ResolveError::NotFound(show(&comps)))?;
    let st = sys::lstatat(pfd.as_fd(), &name)
        .map_err(|e| ResolveError::Io(show(&comps), e))?
        .ok_or_else(|| ResolveError::NotFound(show(&comps)))?;
    if st.st_mode & libc::S_IFMT == libc::S_IFDIR {
        let fd = sys::openat(pfd.as_fd(), &name, libc::O_RDONLY | libc::O_DIRECTORY | libc::O_NOFOLLOW, 0)
            .map_err(|e| ResolveError::Io(show(&comps), e))?;
        let st = sys::fstat(fd.as_fd()).map_err(|e| ResolveError::Io(show(&comps), e))?;
        return Ok((Target::Dir(fd, st), canon));
    }
    Ok((Target::Entry { parent: pfd, name, st }, canon))
}

/// Where a path leads with every symlink followed inside the root, as far as it exists (the
/// rest appended lexically): dockerd's `FollowSymlinkInScope(path, "/")`.
fn follow_in_root(root: BorrowedFd<'_>, abs: &[u8]) -> String {
    let mut stack: Vec<(Vec<u8>, OwnedFd)> = Vec::new();
    let mut queue: VecDeque<Vec<u8>> = split(abs).map(|c| c.to_vec()).collect();
    let mut tail: Vec<Vec<u8>> = Vec::new();
    let mut links = 0;
    while let Some(c) = queue.pop_front() {
        if !tail.is_empty() {
            if c == b".." {
                tail.pop();
            } else {
                tail.push(c);
            }
            continue;
        }
        if c == b".." {
            stack.pop();
            continue;
        }
        let cur = stack.last().map_or(root, |(_, fd)| fd.as_fd());
        let Ok(name) = CString::new(c.clone()) else { break };
        match sys::lstatat(cur, &name) {
            Ok(Some(st)) if st.st_mode & libc::S_IFMT == libc::S_IFLNK && links < MAX_LINKS => {
                links += 1;
                let Ok(target) = sys::readlinkat(cur, &name) else { break };
                if target.starts_with(b"/") {
                    stack.clear();
                }
                for part in split(&target).collect::<Vec<_>>().into_iter().rev() {
                    queue.push_front(part.to_vec());
                }
            }
            Ok(Some(st)) if st.st_mode & libc::S_IFMT == libc::S_IFDIR => {
                match sys::openat(cur, &name, libc::O_RDONLY | libc::O_DIRECTORY | libc::O_NOFOLLOW, 0) {
                    Ok(fd) => stack.push((c, fd)),
                    Err(_) => tail.push(c),
                }
            }
            _ => tail.push(c),
        }
    }
    let mut comps: Vec<Vec<u8>> = stack.into_iter().map(|(c, _)| c).collect();
    comps.extend(tail);
    show(&comps)
}

// ---------------------------------------------------------------------------------------------
// Stat header

/// Go's `os.FileMode` of a `st_mode`.
fn go_mode(m: u32) -> u32 {
    let mut g = m & 0o777;
    g |= match m & libc::S_IFMT {
        libc::S_IFDIR => 1 << 31,
        libc::S_IFLNK => 1 << 27,
        libc::S_IFBLK => 1 << 26,
        libc::S_IFCHR => (1 << 26) | (1 << 21),
        libc::S_IFIFO => 1 << 25,
        libc::S_IFSOCK => 1 << 24,
        _ => 0,
    };
    if m & libc::S_ISUID != 0 {
        g |= 1 << 23;
    }
    if m & libc::S_ISGID != 0 {
        g |= 1 << 22;
    }
    if m & libc::S_ISVTX != 0 {
        g |= 1 << 20;
    }
    g
}

fn rfc3339(secs: i64, nanos: i64) -> String {
    let t = if secs >= 0 {
        std::time::UNIX_EPOCH + std::time::Duration::new(secs as u64, nanos.clamp(0, 999_999_999) as u32)
    } else {
        std::time::UNIX_EPOCH
    };
    berth_runtime::state::rfc3339(t)
}

/// dockerd's `ContainerPathStat`.
fn stat_json(root: BorrowedFd<'_>, abs: &[u8], t: &Target) -> Value {
    let st = match t {
        Target::Dir(_, st) | Target::File(_, st) => st,
        Target::Entry { st, .. } => st,
    };
    let link = if st.st_mode & libc::S_IFMT == libc::S_IFLNK { follow_in_root(root, abs) } else { String::new() };
    json!({
        "name": String::from_utf8_lossy(&go_base(abs)),
        "size": st.st_size,
        "mode": go_mode(st.st_mode),
        "mtime": rfc3339(st.st_mtime, st.st_mtime_nsec),
        "linkTarget": link,
    })
}

// ---------------------------------------------------------------------------------------------
// Writing tars

struct TarWriter<W: Write> {
    w: W,
    /// Regular files with several links already written: (dev, ino) → archive name.
    links: HashMap<(u64, u64), Vec<u8>>,
    buf: Vec<u8>,
    /// Files shown instead of what the root filesystem has at a canonical path ([`etc_files`]).
    overrides: Vec<(Vec<Vec<u8>>, PathBuf)>,
    /// The canonical path of the entry being written (kept only while `overrides` matter).
    canon: Vec<Vec<u8>>,
    /// Directories being walked.
    depth: usize,
}

fn pax_record(out: &mut Vec<u8>, key: &str, value: &[u8]) {
    let rest = key.len() + value.len() + 3; // ' ', '=', '\n'
    let mut n = rest + 1;
    while n != rest + n.to_string().len() {
        n = rest + n.to_string().len();
    }
    out.extend_from_slice(format!("{n} {key}=").as_bytes());
    out.extend_from_slice(value);
    out.push(b'\n');
}

fn set_field(field: &mut [u8], value: &[u8]) {
    let n = value.len().min(field.len());
    field[..n].copy_from_slice(&value[..n]);
}

impl<W: Write> TarWriter<W> {
    fn new(w: W) -> Self {
        TarWriter {
            w,
            links: HashMap::new(),
            buf: vec![0; COPY_BUFFER],
            overrides: Vec::new(),
            canon: Vec::new(),
            depth: 0,
        }
    }

    fn pad(&mut self, size: u64) -> io::Result<()> {
        let rem = (size % 512) as usize;
        if rem != 0 {
            self.w.write_all(&[0u8; 512][..512 - rem])?;
        }
        Ok(())
    }

    /// One header (preceded by a PAX header when the name or link is long or not ASCII, or
    /// xattrs are carried).
    fn header(
        &mut self,
        name: &[u8],
        st: &libc::stat,
        kind: tar::EntryType,
        link: Option<&[u8]>,
        size: u64,
        xattrs: &[(&str, Vec<u8>)],
    ) -> io::Result<()> {
        let long = |b: &[u8]| b.len() > 100 || !b.is_ascii();
        let mut pax = Vec::new();
        if long(name) {
            pax_record(&mut pax, "path", name);
        }
        if let Some(l) = link.filter(|l| long(l)) {
            pax_record(&mut pax, "linkpath", l);
        }
        for (k, v) in xattrs {
            pax_record(&mut pax, &format!("SCHILY.xattr.{k}"), v);
        }
        let mtime = st.st_mtime.max(0) as u64;
        if !pax.is_empty() {
            let mut h = tar::Header::new_ustar();
            set_field(&mut h.as_old_mut().name, b"././@PaxHeader");
            h.set_entry_type(tar::EntryType::XHeader);
            h.set_mode(0o644);
            h.set_mtime(mtime);
            h.set_size(pax.len() as u64);
            h.set_cksum();
            self.w.write_all(h.as_bytes())?;
            self.w.write_all(&pax)?;
            self.pad(pax.len() as u64)?;
        }
        let mut h = tar::Header::new_ustar();
        set_field(&mut h.as_old_mut().name, name);
        if let Some(l) = link {
            set_field(&mut h.as_old_mut().linkname, l);
        }
        h.set_entry_type(kind);
        h.set_mode(st.st_mode & 0o7777);
        h.set_uid(st.st_uid as u64);
        h.set_gid(st.st_gid as u64);
        h.set_mtime(mtime);
        h.set_size(size);
        if matches!(kind, tar::EntryType::Char | tar::EntryType::Block) {
            h.set_device_major(libc::major(st.st_rdev))?;
            h.set_device_minor(libc::minor(st.st_rdev))?;
        }
        h.set_cksum();
        self.w.write_all(h.as_bytes())
    }

    /// Write `name` (in the directory `dir`, found as `st` by `lstat`) as `arc`; a directory
    /// with its contents unless it is a mount point (its device differs from `parent_dev`).
    fn entry(
        &mut self,
        dir: BorrowedFd<'_>,
        name: &CStr,
        arc: Vec<u8>,
        st: &libc::stat,
        parent_dev: u64,
    ) -> io::Result<()> {
        let gone =
            |e: &io::Error| matches!(e.raw_os_error(), Some(libc::ENOENT) | Some(libc::ELOOP) | Some(libc::ENOTDIR));
        match st.st_mode & libc::S_IFMT {
            libc::S_IFREG => {
                let flags = libc::O_RDONLY | libc::O_NOFOLLOW | libc::O_NONBLOCK | libc::O_NOCTTY;
                let fd = match sys::openat(dir, name, flags, 0) {
                    Ok(fd) => fd,
                    Err(e) if gone(&e) => return Ok(()), // removed or replaced meanwhile
                    Err(e) => return Err(e),
                };
                let st = sys::fstat(fd.as_fd())?;
                if st.st_mode & libc::S_IFMT != libc::S_IFREG {
                    return Ok(());
                }
                if st.st_nlink > 1 {
                    let key = (st.st_dev, st.st_ino);
                    if let Some(first) = self.links.get(&key).cloned() {
                        return self.header(&arc, &st, tar::EntryType::Link, Some(&first), 0, &[]);
                    }
                    self.links.insert(key, arc.clone());
                }
                self.file(fd, arc, &st)
            }
            libc::S_IFDIR => {
                let fd = match sys::openat(dir, name, libc::O_RDONLY | libc::O_DIRECTORY | libc::O_NOFOLLOW, 0) {
                    Ok(fd) => fd,
                    Err(e) if gone(&e) => return Ok(()),
                    Err(e) => return Err(e),
                };
                let st = sys::fstat(fd.as_fd())?;
                if st.st_dev != parent_dev {
                    let mut n = arc;
                    if !n.ends_with(b"/") {
                        n.push(b'/');
                    }
                    return self.header(&n, &st, tar::EntryType::Directory, None, 0, &[]);
                }
                self.dir(fd.as_fd(), Some(arc), &st)
            }
            libc::S_IFLNK => {
                let target = match sys::readlinkat(dir, name) {
                    Ok(t) => t,
                    Err(e) if matches!(e.raw_os_error(), Some(libc::ENOENT) | Some(libc::EINVAL)) => return Ok(()),
                    Err(e) => return Err(e),
                };
                self.header(&arc, st, tar::EntryType::Symlink, Some(&target), 0, &[])
            }
            libc::S_IFCHR => self.header(&arc, st, tar::EntryType::Char, None, 0, &[]),
            libc::S_IFBLK => self.header(&arc, st, tar::EntryType::Block, None, 0, &[]),
            libc::S_IFIFO => self.header(&arc, st, tar::EntryType::Fifo, None, 0, &[]),
            _ => Ok(()), // sockets are skipped, as dockerd does
        }
    }

    /// The open regular file `fd` (stat `st`) as `arc`.
    fn file(&mut self, fd: OwnedFd, arc: Vec<u8>, st: &libc::stat) -> io::Result<()> {
        let mut xattrs = Vec::new();
        if let Some(cap) = sys::fgetxattr(fd.as_fd(), c"security.capability") {
            xattrs.push(("security.capability", cap));
        }
        let size = st.st_size.max(0) as u64;
        self.header(&arc, st, tar::EntryType::Regular, None, size, &xattrs)?;
        let mut f = File::from(fd);
        let mut left = size;
        while left > 0 {
            let want = (left as usize).min(self.buf.len());
            let n = match f.read(&mut self.buf[..want]) {
                Ok(n) => n,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(e),
            };
            if n == 0 {
                // Shrunk while being read: zeros keep the archive well-formed.
                self.buf[..want].fill(0);
                self.w.write_all(&self.buf[..want])?;
                left -= want as u64;
                continue;
            }
            self.w.write_all(&self.buf[..n])?;
            left -= n as u64;
        }
        self.pad(size)
    }

    /// The directory `fd` (stat `st`): its own entry `<arc>/` unless `arc` is `None`, then its
    /// contents as `<arc>/<name>` (or `<name>`), in name order.
    fn dir(&mut self, fd: BorrowedFd<'_>, arc: Option<Vec<u8>>, st: &libc::stat) -> io::Result<()> {
        if let Some(a) = &arc {
            let mut n = a.clone();
            if !n.ends_with(b"/") {
                n.push(b'/');
            }
            self.header(&n, st, tar::EntryType::Directory, None, 0, &[])?;
        }
        if self.depth >= MAX_DEPTH {
            return Err(io::Error::other(format!("directories nested deeper than {MAX_DEPTH} levels")));
        }
        self.depth += 1;
        let r = self.dir_contents(fd, arc.as_deref(), st);
        self.depth -= 1;
        r
    }

    fn dir_contents(&mut self, fd: BorrowedFd<'_>, arc: Option<&[u8]>, st: &libc::stat) -> io::Result<()> {
        let mut names = safepath::list_dir(fd)?;
        names.sort();
        for name in names {
            let Some(cst) = sys::lstatat(fd, &name)? else { continue };
            let child = match arc {
                None => name.to_bytes().to_vec(),
                Some(a) => {
                    let mut c = a.to_vec();
                    if !c.ends_with(b"/") || c.is_empty() {
                        c.push(b'/');
                    }
                    c.extend_from_slice(name.to_bytes());
                    c
                }
            };
            if self.overrides.is_empty() {
                self.entry(fd, &name, child, &cst, st.st_dev)?;
                continue;
            }
            self.canon.push(name.to_bytes().to_vec());
            let host = (cst.st_mode & libc::S_IFMT == libc::S_IFREG)
                .then(|| self.overrides.iter().find(|(p, _)| *p == self.canon))
                .flatten()
                .and_then(|(_, h)| open_host_file(h));
            let r = match host {
                Some((hfd, hst)) => self.file(hfd, child, &hst),
                None => self.entry(fd, &name, child, &cst, st.st_dev),
            };
            self.canon.pop();
            r?;
        }
        Ok(())
    }

    fn finish(mut self) -> io::Result<()> {
        self.w.write_all(&[0u8; 1024])?;
        self.w.flush()
    }
}

// ---------------------------------------------------------------------------------------------
// Extracting tars

type Time = (i64, u32);

struct Meta {
    mode: u32,
    uid: u32,
    gid: u32,
    atime: Time,
    mtime: Time,
    xattrs: Vec<(CString, Vec<u8>)>,
}

impl Meta {
    fn read<R: Read>(e: &mut tar::Entry<'_, R>) -> io::Result<Meta> {
        let bad = |w: &str| io::Error::new(io::ErrorKind::InvalidData, w.to_string());
        let h = e.header();
        // Empty numeric fields read as 0, as Go's archive/tar (the docker CLI's) does.
        let mode = h.mode().unwrap_or(0o644) & 0o7777;
        let uid = u32::try_from(h.uid().unwrap_or(0)).map_err(|_| bad("uid out of range"))?;
        let gid = u32::try_from(h.gid().unwrap_or(0)).map_err(|_| bad("gid out of range"))?;
        let mtime = (i64::try_from(h.mtime().unwrap_or(0)).map_err(|_| bad("mtime out of range"))?, 0);
        let mut m = Meta { mode, uid, gid, atime: mtime, mtime, xattrs: Vec::new() };
        let mut atime = None;
        if let Some(exts) = e.pax_extensions()? {
            for ext in exts {
                let ext = ext?;
                let Ok(key) = ext.key() else { continue };
                match key {
                    "mtime" => {
                        m.mtime = ext
                            .value()
                            .ok()
                            .and_then(berth_image::unpack::parse_pax_time)
                            .ok_or_else(|| bad("bad PAX mtime"))?
                    }
                    "atime" => atime = ext.value().ok().and_then(berth_image::unpack::parse_pax_time),
                    _ => {
                        if let Some(name) = key.strip_prefix("SCHILY.xattr.") {
                            let name = CString::new(name).map_err(|_| bad("xattr name contains a NUL byte"))?;
                            m.xattrs.push((name, ext.value_bytes().to_vec()));
                        }
                    }
                }
            }
        }
        m.atime = atime.unwrap_or(m.mtime);
        Ok(m)
    }
}

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Kind {
    File,
    Dir,
    Symlink,
    Hardlink,
    Char,
    Block,
    Fifo,
}

struct Extractor<'a> {
    root: BorrowedFd<'a>,
    /// The extraction directory, canonical components from the root.
    dest: Vec<Vec<u8>>,
    dest_shown: String,
    no_overwrite: bool,
    /// Owner for everything extracted (`copyUIDGID`), instead of the archive's.
    owner: Option<(u32, u32)>,
    dir_times: Vec<(Vec<Vec<u8>>, Time, Time)>,
    buf: Vec<u8>,
}

fn is_dir(st: &libc::stat) -> bool {
    st.st_mode & libc::S_IFMT == libc::S_IFDIR
}

impl Extractor<'_> {
    fn extract<R: Read>(&mut self, r: R) -> Result<(), String> {
        let mut archive = tar::Archive::new(r);
        let entries = archive.entries().map_err(|e| e.to_string())?;
        for entry in entries {
            let mut entry = entry.map_err(|e| e.to_string())?;
            self.entry(&mut entry)?;
        }
        self.set_dir_times();
        Ok(())
    }

    fn entry<R: Read>(&mut self, e: &mut tar::Entry<'_, R>) -> Result<(), String> {
        let et = e.header().entry_type();
        if et.is_pax_global_extensions() || et.is_pax_local_extensions() || et.is_gnu_longname() || et.is_gnu_longlink()
        {
            return Ok(());
        }
        let raw = e.path_bytes().into_owned();
        let shown = String::from_utf8_lossy(&raw).into_owned();
        let outside = || format!("{shown:?} is outside of {:?}", self.dest_shown);
        let comps = safepath::normalise(&raw).map_err(|_| outside())?;
        let kind = match et {
            tar::EntryType::Regular | tar::EntryType::Continuous | tar::EntryType::GNUSparse => {
                if e.header().as_old().linkflag[0] == 0 && raw.ends_with(b"/") {
                    Kind::Dir
                } else {
                    Kind::File
                }
            }
            tar::EntryType::Directory => Kind::Dir,
            tar::EntryType::Symlink => Kind::Symlink,
            tar::EntryType::Link => Kind::Hardlink,
            tar::EntryType::Char => Kind::Char,
            tar::EntryType::Block => Kind::Block,
            tar::EntryType::Fifo => Kind::Fifo,
            other => return Err(format!("{shown:?}: unhandled tar header type {}", other.as_byte())),
        };
        let link = e.link_name_bytes().map(|l| l.into_owned());
        let meta = Meta::read(e).map_err(|err| format!("{shown:?}: {err}"))?;
        let Some((name, parent)) = comps.split_last() else {
            // The extraction directory itself (`./`): left as it is, as dockerd does.
            return if kind == Kind::Dir { Ok(()) } else { Err(format!("{shown:?}: not a directory")) };
        };
        let parent_rel: Vec<u8> = parent.iter().flat_map(|c| [&b"/"[..], c.to_bytes()].concat()).collect();
        if kind == Kind::Symlink {
            // dockerd: the target, joined to the entry's directory, must stay in the extraction dir.
            let l = link.as_deref().unwrap_or_default();
            let mut joined: Vec<u8> = self.dest.iter().flat_map(|c| [&b"/"[..], c].concat()).collect();
            joined.extend_from_slice(&parent_rel);
            joined.push(b'/');
            joined.extend_from_slice(l);
            let j = clean_comps(&joined);
            if j.len() < self.dest.len() || j[..self.dest.len()] != self.dest[..] {
                return Err(format!("invalid symlink {shown:?} -> {:?}", String::from_utf8_lossy(l)));
            }
        }
        let (pcomps, pfd) =
            resolve_dir(self.root, &self.dest, &parent_rel, true).map_err(|err| format!("{shown:?}: {err}"))?;
        let pfd = pfd.as_fd();
        let existing = sys::lstatat(pfd, name).map_err(|err| format!("{shown:?}: {err}"))?;
        let mut full = pcomps;
        full.push(name.to_bytes().to_vec());
        if let Some(st) = existing {
            if self.no_overwrite && is_dir(&st) && kind != Kind::Dir {
                return Err(format!(
                    "cannot overwrite directory {:?} with non-directory {:?}",
                    show(&full),
                    self.dest_shown
                ));
            }
            if self.no_overwrite && !is_dir(&st) && kind == Kind::Dir {
                return Err(format!(
                    "cannot overwrite non-directory {:?} with directory {:?}",
                    show(&full),
                    self.dest_shown
                ));
            }
            if is_dir(&st) && kind == Kind::Dir {
                let fd = sys::openat(pfd, name, libc::O_RDONLY | libc::O_DIRECTORY | libc::O_NOFOLLOW, 0)
                    .map_err(|err| format!("{shown:?}: {err}"))?;
                self.set_meta(fd.as_fd(), &meta, &shown)?;
                self.dir_times.push((full, meta.atime, meta.mtime));
                return Ok(());
            }
        }
        // A hardlink's target is found before anything is removed.
        let target = match (kind, &link) {
            (Kind::Hardlink, Some(l)) => Some(self.hardlink_target(l, &shown)?),
            (Kind::Hardlink, None) => return Err(format!("{shown:?}: hardlink without a target")),
            _ => None,
        };
        if existing.is_some() {
            if let (Some((_, _, tst)), Some(st)) = (&target, &existing) {
                if tst.st_dev == st.st_dev && tst.st_ino == st.st_ino {
                    return Ok(()); // already that file
                }
            }
            safepath::remove_all_at(pfd, name)
                .map_err(|err| format!("{shown:?}: removing the existing entry: {err}"))?;
        }
        let fail = |what: &str, err: io::Error| format!("{shown:?}: {what}: {err}");
        match kind {
            Kind::File => {
                let flags = libc::O_WRONLY | libc::O_CREAT | libc::O_EXCL | libc::O_NOFOLLOW;
                let fd = sys::openat(pfd, name, flags, 0o600).map_err(|err| fail("creating", err))?;
                let mut f = File::from(fd);
                loop {
                    let n = match e.read(&mut self.buf) {
                        Ok(0) => break,
                        Ok(n) => n,
                        Err(err) if err.kind() == io::ErrorKind::Interrupted => continue,
                        Err(err) => return Err(fail("reading", err)),
                    };
                    f.write_all(&self.buf[..n]).map_err(|err| fail("writing", err))?;
                }
                self.set_meta(f.as_fd(), &meta, &shown)?;
                sys::futimens(f.as_fd(), meta.atime, meta.mtime).map_err(|err| fail("setting times", err))?;
            }
            Kind::Dir => {
                sys::mkdirat(pfd, name, 0o700).map_err(|err| fail("creating directory", err))?;
                let fd = sys::openat(pfd, name, libc::O_RDONLY | libc::O_DIRECTORY | libc::O_NOFOLLOW, 0)
                    .map_err(|err| fail("opening directory", err))?;
                self.set_meta(fd.as_fd(), &meta, &shown)?;
                self.dir_times.push((full, meta.atime, meta.mtime));
            }
            Kind::Symlink => {
                let t = CString::new(link.unwrap_or_default())
                    .map_err(|_| format!("{shown:?}: symlink target contains a NUL byte"))?;
                sys::symlinkat(&t, pfd, name).map_err(|err| fail("creating symlink", err))?;
                self.set_node_meta(pfd, name, &meta, &shown, false)?;
            }
            Kind::Hardlink => {
                let (tdir, tname, _) = target.expect("resolved above");
                sys::linkat(tdir.as_fd(), &tname, pfd, name).map_err(|err| fail("creating hardlink", err))?;
            }
            Kind::Char | Kind::Block | Kind::Fifo => {
                let ftype = match kind {
                    Kind::Char => libc::S_IFCHR,
                    Kind::Block => libc::S_IFBLK,
                    _ => libc::S_IFIFO,
                };
                let h = e.header();
                let dev = libc::makedev(
                    h.device_major().ok().flatten().unwrap_or(0),
                    h.device_minor().ok().flatten().unwrap_or(0),
                );
                sys::mknodat(pfd, name, ftype | 0o600, if kind == Kind::Fifo { 0 } else { dev })
                    .map_err(|err| fail("creating node", err))?;
                self.set_node_meta(pfd, name, &meta, &shown, true)?;
            }
        }
        Ok(())
    }

    /// A hardlink target, relative to the extraction directory: its directory fd, name, stat.
    fn hardlink_target(&self, link: &[u8], shown: &str) -> Result<(OwnedFd, CString, libc::stat), String> {
        let bad = || format!("invalid hardlink {shown:?} -> {:?}", String::from_utf8_lossy(link));
        let comps = safepath::normalise(link).map_err(|_| bad())?;
        let (name, parent) = comps.split_last().ok_or_else(bad)?;
        let parent_rel: Vec<u8> = parent.iter().flat_map(|c| [&b"/"[..], c.to_bytes()].concat()).collect();
        let (_, dir) = resolve_dir(self.root, &self.dest, &parent_rel, false).map_err(|e| format!("{shown:?}: {e}"))?;
        let st = sys::lstatat(dir.as_fd(), name)
            .map_err(|e| format!("{shown:?}: {e}"))?
            .ok_or_else(|| format!("{shown:?}: hardlink target {:?} does not exist", String::from_utf8_lossy(link)))?;
        if is_dir(&st) {
            return Err(format!("{shown:?}: hardlink target is a directory"));
        }
        Ok((dir, name.clone(), st))
    }

    fn owner(&self, meta: &Meta) -> (u32, u32) {
        self.owner.unwrap_or((meta.uid, meta.gid))
    }

    /// Owner, mode, xattrs through an open fd (chown first: it clears setuid/setgid).
    fn set_meta(&self, fd: BorrowedFd<'_>, meta: &Meta, shown: &str) -> Result<(), String> {
        let (uid, gid) = self.owner(meta);
        sys::fchownat(fd, c"", uid, gid, libc::AT_EMPTY_PATH).map_err(|e| format!("{shown:?}: changing owner: {e}"))?;
        sys::fchmod(fd, meta.mode).map_err(|e| format!("{shown:?}: changing mode: {e}"))?;
        let p = sys::proc_fd_path(fd.as_raw_fd(), None);
        self.set_xattrs(meta, shown, &p, true)
    }

    /// Metadata of a symlink or node `name` in `dir`, never following it.
    fn set_node_meta(
        &self,
        dir: BorrowedFd<'_>,
        name: &CStr,
        meta: &Meta,
        shown: &str,
        chmod: bool,
    ) -> Result<(), String> {
        let (uid, gid) = self.owner(meta);
        let fd = sys::openat(dir, name, libc::O_PATH | libc::O_NOFOLLOW, 0).map_err(|e| format!("{shown:?}: {e}"))?;
        sys::fchownat(fd.as_fd(), c"", uid, gid, libc::AT_EMPTY_PATH)
            .map_err(|e| format!("{shown:?}: changing owner: {e}"))?;
        if chmod {
            // Not a symlink (we made it a node and hold it), so the /proc link reaches it only.
            let st = sys::fstat(fd.as_fd()).map_err(|e| format!("{shown:?}: {e}"))?;
            if st.st_mode & libc::S_IFMT != libc::S_IFLNK {
                let p = sys::proc_fd_path(fd.as_raw_fd(), None);
                sys::chmod_path(&p, meta.mode).map_err(|e| format!("{shown:?}: changing mode: {e}"))?;
                self.set_xattrs(meta, shown, &p, true)?;
            }
        } else {
            let p = sys::proc_fd_path(dir.as_raw_fd(), Some(name));
            self.set_xattrs(meta, shown, &p, false)?;
        }
        sys::utimensat_nofollow(dir, name, meta.atime, meta.mtime).map_err(|e| format!("{shown:?}: setting times: {e}"))
    }

    fn set_xattrs(&self, meta: &Meta, shown: &str, path: &CStr, follow: bool) -> Result<(), String> {
        for (name, value) in &meta.xattrs {
            if name.to_bytes().starts_with(b"trusted.overlay.") {
                continue;
            }
            match sys::setxattr_path(path, name, value, follow) {
                Ok(()) => {}
                Err(e) if matches!(e.raw_os_error(), Some(libc::ENOTSUP) | Some(libc::EPERM)) => {}
                Err(e) => return Err(format!("{shown:?}: setting xattr {}: {e}", name.to_string_lossy())),
            }
        }
        Ok(())
    }

    /// Directory times, once their contents are in; directories replaced since are skipped.
    fn set_dir_times(&mut self) {
        for (comps, atime, mtime) in std::mem::take(&mut self.dir_times) {
            let Ok(cs) = comps.iter().map(|c| CString::new(c.clone())).collect::<Result<Vec<_>, _>>() else { continue };
            if let Ok(fd) = safepath::walk(self.root, &cs, false) {
                let _ = sys::futimens(fd.as_fd(), atime, mtime);
            }
        }
    }
}

/// `copyUIDGID`: the container's `User` (`uid[:gid]` or names from its `/etc/passwd`, `/etc/group`).
fn container_user(root: BorrowedFd<'_>, c: &Container) -> Option<(u32, u32)> {
    let user = c.config["User"].as_str().unwrap_or("");
    if user.is_empty() {
        return None; // dockerd: the archive's owners, as without copyUIDGID
    }
    let (u, g) = match user.split_once(':') {
        Some((u, g)) => (u, Some(g)),
        None => (user, None),
    };
    let passwd = read_in_root(root, b"/etc/passwd").unwrap_or_default();
    let group = read_in_root(root, b"/etc/group").unwrap_or_default();
    let rows = |data: &[u8]| -> Vec<Vec<String>> {
        String::from_utf8_lossy(data).lines().map(|l| l.split(':').map(String::from).collect()).collect()
    };
    let (passwd, group) = (rows(&passwd), rows(&group));
    let entry = passwd.iter().find(|r| r.len() > 3 && (r[0] == u || r[2] == u));
    let uid = match u.parse::<u32>() {
        Ok(n) => n,
        Err(_) => entry?.get(2)?.parse().ok()?,
    };
    let gid = match g {
        Some(g) => match g.parse::<u32>() {
            Ok(n) => n,
            Err(_) => group.iter().find(|r| r.len() > 2 && r[0] == g)?.get(2)?.parse().ok()?,
        },
        None => entry.and_then(|r| r.get(3)).and_then(|s| s.parse().ok()).unwrap_or(0),
    };
    Some((uid, gid))
}

/// A small file of the container (symlinks followed inside the root), at most 1 MiB.
fn read_in_root(root: BorrowedFd<'_>, path: &[u8]) -> Option<Vec<u8>> {
    let real = follow_in_root(root, path);
    let comps = clean_comps(real.as_bytes());
    let (last, parent) = comps.split_last()?;
    let parent_rel: Vec<u8> = parent.iter().flat_map(|c| [&b"/"[..], c].concat()).collect();
    let (_, dir) = resolve_dir(root, &[], &parent_rel, false).ok()?;
    let name = CString::new(last.clone()).ok()?;
    let fd = sys::openat(dir.as_fd(), &name, libc::O_RDONLY | libc::O_NOFOLLOW | libc::O_NONBLOCK | libc::O_NOCTTY, 0)
        .ok()?;
    if sys::fstat(fd.as_fd()).ok()?.st_mode & libc::S_IFMT != libc::S_IFREG {
        return None;
    }
    let mut out = Vec::new();
    File::from(fd).take(1 << 20).read_to_end(&mut out).ok()?;
    Some(out)
}

// ---------------------------------------------------------------------------------------------
// Changes

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum ChangeKind {
    Modified = 0,
    Added = 1,
    Deleted = 2,
}

/// The changes recorded in the overlay upper directory `upper` against the image layers
/// `layers` (top first), in walk order (name order, a directory before its contents).
///
/// As dockerd: a whiteout (0:0 character device) is a deletion; an entry of the upper dir that
/// exists in the image is modified, otherwise added (and so is everything below an added
/// directory); an image directory is listed as modified when anything below it changed or its
/// mode or owner did; an opaque directory (`trusted.overlay.opaque=y`) hides the image's
/// entries in it, each reported deleted unless the upper dir has it again.
fn compute_changes(upper: &Path, layers: &[PathBuf]) -> io::Result<Vec<(Vec<u8>, ChangeKind)>> {
    let fd = match open_dir_path(upper) {
        Ok(fd) => fd,
        Err(e) if e.raw_os_error() == Some(libc::ENOENT) => return Ok(Vec::new()),
        Err(e) => return Err(e),
    };
    let lower = Lower { layers };
    let mut out = Vec::new();
    diff_dir(&lower, fd.as_fd(), &mut Vec::new(), false, &mut out)?;
    Ok(out)
}

/// What the runtime creates in the rw layer as mount points when the image lacks them (dockerd
/// keeps these in the container's init layer, below the rw layer, so `docker diff` never shows
/// them): not reported while they are added and empty.
const RUNTIME_MOUNT_POINTS: &[&[u8]] = &[
    b"/dev",
    b"/dev/pts",
    b"/dev/shm",
    b"/proc",
    b"/sys",
    b"/etc",
    b"/etc/hostname",
    b"/etc/hosts",
    b"/etc/resolv.conf",
    b"/.dockerenv",
];

fn path_of(comps: &[Vec<u8>]) -> Vec<u8> {
    show(comps).into_bytes()
}

fn is_whiteout(st: &libc::stat) -> bool {
    st.st_mode & libc::S_IFMT == libc::S_IFCHR && st.st_rdev == 0
}

fn diff_dir(
    lower: &Lower<'_>,
    dir: BorrowedFd<'_>,
    comps: &mut Vec<Vec<u8>>,
    all_new: bool,
    out: &mut Vec<(Vec<u8>, ChangeKind)>,
) -> io::Result<()> {
    if comps.len() >= MAX_DEPTH {
        return Err(io::Error::other(format!("directories nested deeper than {MAX_DEPTH} levels")));
    }
    let mut names = safepath::list_dir(dir)?;
    names.sort();
    for name in names {
        let Some(st) = sys::lstatat(dir, &name)? else { continue };
        comps.push(name.to_bytes().to_vec());
        let result = (|| -> io::Result<()> {
            if is_whiteout(&st) {
                if !all_new {
                    out.push((path_of(comps), ChangeKind::Deleted));
                }
                return Ok(());
            }
            let low = if all_new { None } else { lower.lookup(comps) };
            let artefact = low.is_none() && RUNTIME_MOUNT_POINTS.contains(&path_of(comps).as_slice());
            if !is_dir(&st) {
                if artefact && st.st_mode & libc::S_IFMT == libc::S_IFREG && st.st_size == 0 {
                    return Ok(());
                }
                let kind = if low.is_some() { ChangeKind::Modified } else { ChangeKind::Added };
                out.push((path_of(comps), kind));
                return Ok(());
            }
            let fd = match sys::openat(dir, &name, libc::O_RDONLY | libc::O_DIRECTORY | libc::O_NOFOLLOW, 0) {
                Ok(fd) => fd,
                Err(e) if matches!(e.raw_os_error(), Some(libc::ENOENT) | Some(libc::ELOOP) | Some(libc::ENOTDIR)) => {
                    return Ok(())
                }
                Err(e) => return Err(e),
            };
            match low {
                None => {
                    let at = out.len();
                    diff_dir(lower, fd.as_fd(), comps, true, out)?;
                    if !(artefact && out.len() == at) {
                        out.insert(at, (path_of(comps), ChangeKind::Added));
                    }
                    Ok(())
                }
                Some(l) if !l.is_dir() => {
                    out.push((path_of(comps), ChangeKind::Modified));
                    diff_dir(lower, fd.as_fd(), comps, true, out)
                }
                Some(l) => {
                    let at = out.len();
                    diff_dir(lower, fd.as_fd(), comps, false, out)?;
                    if sys::fgetxattr(fd.as_fd(), OPAQUE_XATTR).as_deref() == Some(b"y") {
                        let here: BTreeSet<Vec<u8>> =
                            safepath::list_dir(fd.as_fd())?.into_iter().map(|c| c.to_bytes().to_vec()).collect();
                        for n in lower.list(comps) {
                            if !here.contains(&n) {
                                comps.push(n);
                                out.push((path_of(comps), ChangeKind::Deleted));
                                comps.pop();
                            }
                        }
                    }
                    let differs = l.mode() != st.st_mode || l.uid() != st.st_uid || l.gid() != st.st_gid;
                    if out.len() > at || differs {
                        out.insert(at, (path_of(comps), ChangeKind::Modified));
                    }
                    Ok(())
                }
            }
        })();
        comps.pop();
        result?;
    }
    Ok(())
}

/// The image's merged view from its layer directories (top first; overlay whiteouts and opaque
/// directories honoured). Layers are the image store's own snapshots, not container data; every
/// component is checked with `lstat` before it is descended into, so no symlink is followed.
struct Lower<'a> {
    layers: &'a [PathBuf],
}

fn lgetxattr_path(p: &Path, name: &CStr) -> Option<Vec<u8>> {
    let c = CString::new(p.as_os_str().as_bytes()).ok()?;
    let mut buf = vec![0u8; 256];
    // SAFETY: valid C strings and a writable buffer of the given length.
    let n = unsafe { libc::lgetxattr(c.as_ptr(), name.as_ptr(), buf.as_mut_ptr().cast(), buf.len()) };
    if n < 0 {
        return None;
    }
    buf.truncate(n as usize);
    Some(buf)
}

fn md_whiteout(md: &std::fs::Metadata) -> bool {
    use std::os::unix::fs::FileTypeExt;
    md.file_type().is_char_device() && md.rdev() == 0
}

fn md_opaque(p: &Path) -> bool {
    lgetxattr_path(p, OPAQUE_XATTR).as_deref() == Some(b"y")
}

/// How far a path reaches in one layer.
enum Probe {
    /// Not in this layer; lower layers may have it (unless `opaque_above`).
    Missing {
        opaque_above: bool,
    },
    /// Hidden from here down (a whiteout, or a non-directory on the way).
    Hidden,
    Found(std::fs::Metadata, PathBuf, bool),
}

impl Lower<'_> {
    fn probe(layer: &Path, comps: &[Vec<u8>]) -> Probe {
        let mut p = layer.to_path_buf();
        let mut opaque_above = false;
        for (i, c) in comps.iter().enumerate() {
            p.push(OsStr::from_bytes(c));
            let Ok(md) = std::fs::symlink_metadata(&p) else { return Probe::Missing { opaque_above } };
            if md_whiteout(&md) {
                return Probe::Hidden;
            }
            if i + 1 == comps.len() {
                return Probe::Found(md, p, opaque_above);
            }
            if !md.is_dir() {
                return Probe::Hidden;
            }
            if md_opaque(&p) {
                opaque_above = true;
            }
        }
        // The root of the layer.
        match std::fs::symlink_metadata(&p) {
            Ok(md) => Probe::Found(md, p, false),
            Err(_) => Probe::Missing { opaque_above: false },
        }
    }

    /// The image's entry at `comps`, if it has one.
    fn lookup(&self, comps: &[Vec<u8>]) -> Option<std::fs::Metadata> {
        for layer in self.layers {
            match Self::probe(layer, comps) {
                Probe::Found(md, _, _) => return Some(md),
                Probe::Hidden | Probe::Missing { opaque_above: true } => return None,
                Probe::Missing { opaque_above: false } => {}
            }
        }
        None
    }

    /// The names in the image's directory at `comps`.
    fn list(&self, comps: &[Vec<u8>]) -> Vec<Vec<u8>> {
        let mut seen = BTreeSet::new();
        let mut hidden = BTreeSet::new();
        for layer in self.layers {
            match Self::probe(layer, comps) {
                Probe::Found(md, p, opaque_above) => {
                    if !md.is_dir() {
                        break;
                    }
                    if let Ok(rd) = std::fs::read_dir(&p) {
                        for e in rd.flatten() {
                            let n = e.file_name().as_bytes().to_vec();
                            match e.metadata() {
                                Ok(m) if md_whiteout(&m) => {
                                    hidden.insert(n);
                                }
                                Ok(_) if !hidden.contains(&n) => {
                                    seen.insert(n);
                                }
                                _ => {}
                            }
                        }
                    }
                    if opaque_above || md_opaque(&p) {
                        break;
                    }
                }
                Probe::Hidden | Probe::Missing { opaque_above: true } => break,
                Probe::Missing { opaque_above: false } => {}
            }
        }
        seen.into_iter().collect()
    }
}

// ---------------------------------------------------------------------------------------------
// System calls: each wrapper turns -1/errno into io::Error, with its unsafe block kept to the call.

mod sys {
    use std::ffi::{CStr, CString};
    use std::io;
    use std::os::fd::{AsRawFd, BorrowedFd, FromRawFd, OwnedFd, RawFd};

    pub type Time = (i64, u32);

    fn check(r: libc::c_int) -> io::Result<libc::c_int> {
        if r < 0 {
            Err(io::Error::last_os_error())
        } else {
            Ok(r)
        }
    }

    pub fn openat(dir: BorrowedFd<'_>, name: &CStr, flags: libc::c_int, mode: libc::mode_t) -> io::Result<OwnedFd> {
        // SAFETY: a valid C string and an open directory fd; the result is a new fd we own.
        let fd = check(unsafe { libc::openat(dir.as_raw_fd(), name.as_ptr(), flags | libc::O_CLOEXEC, mode) })?;
        // SAFETY: fd was just returned by openat.
        Ok(unsafe { OwnedFd::from_raw_fd(fd) })
    }

    pub fn lstatat(dir: BorrowedFd<'_>, name: &CStr) -> io::Result<Option<libc::stat>> {
        // SAFETY: an all-zero stat is a valid value of this plain C struct.
        let mut st: libc::stat = unsafe { std::mem::zeroed() };
        // SAFETY: a valid C string and out-pointer.
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
        // SAFETY: an open fd and a valid out-pointer.
        check(unsafe { libc::fstat(fd.as_raw_fd(), &mut st) })?;
        Ok(st)
    }

    pub fn readlinkat(dir: BorrowedFd<'_>, name: &CStr) -> io::Result<Vec<u8>> {
        let mut buf = vec![0u8; 4096];
        // SAFETY: a valid C string and a writable buffer of the given length.
        let n = unsafe { libc::readlinkat(dir.as_raw_fd(), name.as_ptr(), buf.as_mut_ptr().cast(), buf.len()) };
        if n < 0 {
            return Err(io::Error::last_os_error());
        }
        buf.truncate(n as usize);
        Ok(buf)
    }

    pub fn mkdirat(dir: BorrowedFd<'_>, name: &CStr, mode: libc::mode_t) -> io::Result<()> {
        // SAFETY: a valid C string and an open directory fd.
        check(unsafe { libc::mkdirat(dir.as_raw_fd(), name.as_ptr(), mode) }).map(drop)
    }

    pub fn mknodat(dir: BorrowedFd<'_>, name: &CStr, mode: libc::mode_t, dev: libc::dev_t) -> io::Result<()> {
        // SAFETY: a valid C string and an open directory fd.
        check(unsafe { libc::mknodat(dir.as_raw_fd(), name.as_ptr(), mode, dev) }).map(drop)
    }

    pub fn symlinkat(target: &CStr, dir: BorrowedFd<'_>, name: &CStr) -> io::Result<()> {
        // SAFETY: valid C strings and an open directory fd.
        check(unsafe { libc::symlinkat(target.as_ptr(), dir.as_raw_fd(), name.as_ptr()) }).map(drop)
    }

    /// Without `AT_SYMLINK_FOLLOW`: a symlink is linked itself, never followed.
    pub fn linkat(odir: BorrowedFd<'_>, old: &CStr, ndir: BorrowedFd<'_>, new: &CStr) -> io::Result<()> {
        // SAFETY: valid C strings and open directory fds.
        check(unsafe { libc::linkat(odir.as_raw_fd(), old.as_ptr(), ndir.as_raw_fd(), new.as_ptr(), 0) }).map(drop)
    }

    pub fn fchownat(fd: BorrowedFd<'_>, name: &CStr, uid: u32, gid: u32, flags: libc::c_int) -> io::Result<()> {
        // SAFETY: a valid C string and an open fd.
        check(unsafe { libc::fchownat(fd.as_raw_fd(), name.as_ptr(), uid, gid, flags) }).map(drop)
    }

    pub fn fchmod(fd: BorrowedFd<'_>, mode: libc::mode_t) -> io::Result<()> {
        // SAFETY: an open (non-O_PATH) fd.
        check(unsafe { libc::fchmod(fd.as_raw_fd(), mode) }).map(drop)
    }

    pub fn chmod_path(path: &CStr, mode: libc::mode_t) -> io::Result<()> {
        // SAFETY: a valid C string.
        check(unsafe { libc::chmod(path.as_ptr(), mode) }).map(drop)
    }

    fn ts((s, n): Time) -> libc::timespec {
        libc::timespec { tv_sec: s as libc::time_t, tv_nsec: n as libc::c_long }
    }

    pub fn futimens(fd: BorrowedFd<'_>, atime: Time, mtime: Time) -> io::Result<()> {
        let t = [ts(atime), ts(mtime)];
        // SAFETY: an open fd and two timespecs.
        check(unsafe { libc::futimens(fd.as_raw_fd(), t.as_ptr()) }).map(drop)
    }

    pub fn utimensat_nofollow(dir: BorrowedFd<'_>, name: &CStr, atime: Time, mtime: Time) -> io::Result<()> {
        let t = [ts(atime), ts(mtime)];
        // SAFETY: a valid C string and two timespecs.
        check(unsafe { libc::utimensat(dir.as_raw_fd(), name.as_ptr(), t.as_ptr(), libc::AT_SYMLINK_NOFOLLOW) })
            .map(drop)
    }

    pub fn fgetxattr(fd: BorrowedFd<'_>, name: &CStr) -> Option<Vec<u8>> {
        let mut buf = vec![0u8; 4096];
        // SAFETY: a valid C string and a writable buffer of the given length.
        let n = unsafe { libc::fgetxattr(fd.as_raw_fd(), name.as_ptr(), buf.as_mut_ptr().cast(), buf.len()) };
        if n < 0 {
            return None;
        }
        buf.truncate(n as usize);
        Some(buf)
    }

    /// `setxattr` (follow) or `lsetxattr` on a `/proc/self/fd/...` path.
    pub fn setxattr_path(path: &CStr, name: &CStr, value: &[u8], follow: bool) -> io::Result<()> {
        let (p, n, v, l) = (path.as_ptr(), name.as_ptr(), value.as_ptr().cast(), value.len());
        // SAFETY: valid C strings; value points to l readable bytes.
        let r = unsafe {
            if follow {
                libc::setxattr(p, n, v, l, 0)
            } else {
                libc::lsetxattr(p, n, v, l, 0)
            }
        };
        check(r).map(drop)
    }

    /// `/proc/self/fd/N[/child]`: reaches exactly the object an fd holds.
    pub fn proc_fd_path(fd: RawFd, child: Option<&CStr>) -> CString {
        let mut s = format!("/proc/self/fd/{fd}").into_bytes();
        if let Some(c) = child {
            s.push(b'/');
            s.extend_from_slice(c.to_bytes());
        }
        CString::new(s).expect("no NUL in a /proc path")
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::process::Command;

    fn tmp(name: &str) -> PathBuf {
        let d = std::env::temp_dir().join(format!("berth-archive-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&d);
        std::fs::create_dir_all(&d).unwrap();
        d
    }

    #[test]
    fn paths() {
        assert_eq!(abs_path("/etc"), b"/etc");
        assert_eq!(abs_path("etc/"), b"/etc/");
        assert_eq!(abs_path("/etc/."), b"/etc/.");
        assert_eq!(abs_path("/"), b"/");
        assert_eq!(abs_path("/."), b"/.");
        assert_eq!(abs_path("/a/../../b"), b"/b");
        assert_eq!(go_base(b"/etc/."), b".");
        assert_eq!(go_base(b"/etc/"), b"etc");
        assert_eq!(go_base(b"/"), b"/");
        assert_eq!(go_mode(libc::S_IFDIR | 0o755), 2147484141);
        assert_eq!(go_mode(libc::S_IFLNK | 0o777), 134218239);
    }

    #[test]
    fn pax_lengths() {
        let mut v = Vec::new();
        pax_record(&mut v, "path", &[b'a'; 95]);
        assert_eq!(v.len(), 105);
        assert!(v.starts_with(b"105 path="));
        let mut v = Vec::new();
        pax_record(&mut v, "path", b"x");
        assert_eq!(v, b"9 path=x\n");
    }

    #[test]
    fn resolution_stays_in_root() {
        let d = tmp("resolve");
        let root = d.join("root");
        std::fs::create_dir_all(root.join("a/b")).unwrap();
        std::os::unix::fs::symlink("/", root.join("abs")).unwrap();
        std::os::unix::fs::symlink("../../../../..", root.join("a/up")).unwrap();
        std::os::unix::fs::symlink("/a/b", root.join("ab")).unwrap();
        std::os::unix::fs::symlink("loop", root.join("loop")).unwrap();
        let fd = open_dir_path(&root).unwrap();
        let (c, _) = resolve_dir(fd.as_fd(), &[], b"/abs/abs/a/up/a/b", false).unwrap();
        assert_eq!(show(&c), "/a/b");
        let (c, _) = resolve_dir(fd.as_fd(), &[], b"/ab/../../..", false).unwrap();
        assert_eq!(show(&c), "/");
        assert!(matches!(resolve_dir(fd.as_fd(), &[], b"/loop", false), Err(ResolveError::Loop(_))));
        assert!(matches!(resolve_dir(fd.as_fd(), &[], b"/abs/tmp", false), Err(ResolveError::NotFound(_))));
        assert_eq!(follow_in_root(fd.as_fd(), b"/ab/x/y"), "/a/b/x/y");
        let _ = std::fs::remove_dir_all(&d);
    }

    #[test]
    fn hostile_archives_stay_inside() {
        let d = tmp("hostile");
        let root = d.join("root");
        std::fs::create_dir_all(root.join("tmp")).unwrap();
        let fd = open_dir_path(&root).unwrap();
        let run = |tar: Vec<u8>| {
            let (dest, _) = resolve_dir(fd.as_fd(), &[], b"/tmp", false).unwrap();
            let mut x = Extractor {
                root: fd.as_fd(),
                dest,
                dest_shown: "/tmp".into(),
                no_overwrite: true,
                owner: None,
                dir_times: Vec::new(),
                buf: vec![0; 4096],
            };
            x.extract(&tar[..])
        };
        let build = |entries: &[(&str, Option<&str>, &[u8])]| {
            let mut b = tar::Builder::new(Vec::new());
            for (name, link, data) in entries {
                let mut h = tar::Header::new_gnu();
                h.set_mode(0o644);
                match link {
                    Some(l) => {
                        h.set_entry_type(tar::EntryType::Symlink);
                        h.set_size(0);
                        set_field(&mut h.as_old_mut().name, name.as_bytes());
                        set_field(&mut h.as_old_mut().linkname, l.as_bytes());
                        h.set_cksum();
                        b.append(&h, &[][..]).unwrap();
                    }
                    None => {
                        h.set_entry_type(tar::EntryType::Regular);
                        h.set_size(data.len() as u64);
                        set_field(&mut h.as_old_mut().name, name.as_bytes());
                        h.set_cksum();
                        b.append(&h, *data).unwrap();
                    }
                }
            }
            b.into_inner().unwrap()
        };
        let e = run(build(&[("../../escape", None, b"x")])).unwrap_err();
        assert!(e.contains("outside"), "{e}");
        assert!(!d.join("escape").exists() && !root.join("escape").exists());
        // A symlink to / followed by a file through it lands in the container's root.
        run(build(&[("r", Some("/"), b""), ("r/pwned", None, b"p")])).unwrap();
        assert_eq!(std::fs::read(root.join("pwned")).unwrap(), b"p");
        assert!(!Path::new("/pwned").exists());
        // A relative link climbing out is refused as dockerd does.
        let e = run(build(&[("up", Some("../../../../.."), b"")])).unwrap_err();
        assert!(e.contains("invalid symlink"), "{e}");
        // A link made by the container itself, pointing far out: resolved inside.
        std::os::unix::fs::symlink("../../../../../../..", root.join("tmp/out")).unwrap();
        run(build(&[("out/inside", None, b"i")])).unwrap();
        assert_eq!(std::fs::read(root.join("inside")).unwrap(), b"i");
        let _ = std::fs::remove_dir_all(&d);
    }

    #[test]
    fn deep_nesting_is_an_error_not_a_crash() {
        let d = tmp("deep");
        let root = d.join("root");
        std::fs::create_dir_all(&root).unwrap();
        let mut fd = open_dir_path(&root).unwrap();
        for _ in 0..MAX_DEPTH + 5 {
            sys::mkdirat(fd.as_fd(), c"d", 0o755).unwrap();
            fd = sys::openat(fd.as_fd(), c"d", libc::O_RDONLY | libc::O_DIRECTORY, 0).unwrap();
        }
        // On a thread with the default stack of the daemon's connection threads (2 MiB).
        let r = root.clone();
        std::thread::Builder::new()
            .stack_size(2 << 20)
            .spawn(move || {
                let fd = open_dir_path(&r).unwrap();
                let st = sys::fstat(fd.as_fd()).unwrap();
                let mut tw = TarWriter::new(io::sink());
                let e = tw.dir(fd.as_fd(), None, &st).unwrap_err();
                assert!(e.to_string().contains("nested deeper"), "{e}");
                let e = compute_changes(&r, &[]).unwrap_err();
                assert!(e.to_string().contains("nested deeper"), "{e}");
                // Just within the limit works.
                let fd = open_dir_path(&r).unwrap();
                let mut sub = fd;
                for _ in 0..6 {
                    sub = sys::openat(sub.as_fd(), c"d", libc::O_RDONLY | libc::O_DIRECTORY, 0).unwrap();
                }
                let st = sys::fstat(sub.as_fd()).unwrap();
                TarWriter::new(io::sink()).dir(sub.as_fd(), None, &st).unwrap();
            })
            .unwrap()
            .join()
            .unwrap();
        let _ = Command::new("rm").arg("-rf").arg(&d).status();
    }

    #[test]
    fn tar_of_a_tree() {
        let d = tmp("tarout");
        let root = d.join("root");
        std::fs::create_dir_all(root.join("etc/sub")).unwrap();
        std::fs::write(root.join("etc/f"), b"hello").unwrap();
        std::os::unix::fs::symlink("/nowhere", root.join("etc/l")).unwrap();
        let long = "n".repeat(150);
        std::fs::write(root.join("etc/sub").join(&long), b"long").unwrap();
        std::fs::hard_link(root.join("etc/f"), root.join("etc/g")).unwrap();
        let fd = open_dir_path(&root).unwrap();
        let Ok((Target::Dir(dfd, st), _)) = lookup(fd.as_fd(), b"/etc") else { panic!() };
        let mut out = Vec::new();
        let mut tw = TarWriter::new(&mut out);
        tw.dir(dfd.as_fd(), Some(b"etc".to_vec()), &st).unwrap();
        tw.finish().unwrap();
        let mut a = tar::Archive::new(&out[..]);
        let mut seen = Vec::new();
        for e in a.entries().unwrap() {
            let mut e = e.unwrap();
            let name = String::from_utf8_lossy(&e.path_bytes()).into_owned();
            let mut data = String::new();
            e.read_to_string(&mut data).unwrap();
            seen.push((name, data));
        }
        let names: Vec<&str> = seen.iter().map(|(n, _)| n.as_str()).collect();
        assert_eq!(names, ["etc/", "etc/f", "etc/g", "etc/l", "etc/sub/", &format!("etc/sub/{long}")]);
        assert_eq!(seen[1].1, "hello");
        assert_eq!(seen[5].1, "long");
        let _ = std::fs::remove_dir_all(&d);
    }
}
