//! Applying one layer (an uncompressed tar stream) to a snapshot directory, in one streaming
//! pass that also computes the layer's DiffID (sha256 of the uncompressed tar).
//!
//! Two modes:
//! - [`ApplyMode::Overlay`]: the directory holds only this layer's changes, to be stacked by
//!   overlayfs. `.wh.<name>` becomes an overlay whiteout (a char device 0:0 named `<name>`) and
//!   `.wh..wh..opq` marks its directory opaque (`trusted.overlay.opaque=y`), as Docker's overlay2
//!   and containerd's overlayfs snapshotter do.
//! - [`ApplyMode::Flatten`]: the directory already holds the lower layers; whiteouts delete the
//!   named paths (an opaque marker deletes everything in its directory that this layer did not
//!   add). Per the OCI image spec a whiteout never removes what the same layer created.
//!
//! Security invariants (the snapshot root is `root`):
//! - **Nothing is written outside the root.** Entry names are normalised lexically (leading `/`
//!   dropped, `..` resolved, a `..` above the root refused); see [`crate::safepath`].
//! - **No symlink is followed while resolving a path for writing**, whether the archive made it or
//!   it was there before: parents are opened component by component with `O_NOFOLLOW` from a
//!   root directory fd, and every final operation is an `*at` call on that parent fd that does
//!   not follow (`O_EXCL|O_NOFOLLOW` create, `mkdirat`, `symlinkat`, `mknodat`, `linkat` without
//!   `AT_SYMLINK_FOLLOW`, `AT_SYMLINK_NOFOLLOW`). So `evil -> /tmp` followed by `evil/pwned` is
//!   refused with an error naming the entry. Symlink *targets* are stored as given (absolute
//!   ones such as `bin -> /usr/bin` are legal: they resolve against the container root at run
//!   time).
//! - **Hardlinks stay inside.** A hardlink target is normalised like a name and must already
//!   exist in this snapshot, reached without symlinks; hardlinks to directories are refused.
//! - **Existing files are never written through.** A path that exists is removed (recursively,
//!   without following symlinks) and re-created, except directory-over-directory which merges
//!   and only updates metadata; a regular file is always created with `O_CREAT|O_EXCL`.
//! - `trusted.overlay.*` xattrs in the archive are dropped (counted in
//!   [`LayerStats::xattrs_skipped`]): only the unpacker decides what overlayfs sees.
//!
//! Metadata: owner, mode (incl. setuid/setgid/sticky, applied after chown, which clears them),
//! xattrs (PAX `SCHILY.xattr.*`, after chown, which clears `security.capability`), atime/mtime
//! (PAX sub-second times when present). Directory times are set at the end, after their
//! children were written. Hardlinks share their target's inode and metadata. xattrs the
//! filesystem refuses (`ENOTSUP`, `EPERM`) are skipped and counted, as Docker does.

use std::collections::HashSet;
use std::ffi::{CStr, CString};
use std::fs::File;
use std::io::{self, BufReader, Read, Write};
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd};
use std::path::{Path, PathBuf};

use crate::digest::{Digest, HashReader};
use crate::error::{quoted, Context, Error, ErrorKind, Result};
use crate::safepath::{self, Component, DirStack, WalkError};
use crate::sys::{self, Time};

pub use crate::compression::{decompress, Compression};

/// How whiteouts are represented; see the module documentation.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ApplyMode {
    Overlay,
    Flatten,
}

/// What applying a layer found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LayerStats {
    /// sha256 of the uncompressed tar stream, trailing padding included.
    pub diff_id: Digest,
    /// Size of the uncompressed tar stream in bytes.
    pub size: u64,
    /// Archive entries processed (whiteouts included, PAX/GNU meta headers not).
    pub entries: u64,
    /// xattrs not applied: `trusted.overlay.*` ones and those the filesystem refused.
    pub xattrs_skipped: u64,
}

/// The xattr overlayfs reads to treat a directory as opaque.
pub const OVERLAY_OPAQUE_XATTR: &CStr = c"trusted.overlay.opaque";
const WHITEOUT_PREFIX: &[u8] = b".wh.";
const WHITEOUT_META_PREFIX: &[u8] = b".wh..wh.";
const WHITEOUT_OPAQUE: &[u8] = b".wh..wh..opq";
const XATTR_PAX_PREFIX: &str = "SCHILY.xattr.";
const COPY_BUFFER: usize = 256 * 1024;

/// Apply the uncompressed layer tar `layer` to the directory `root` (which must exist).
/// Compressed input goes through [`decompress`] first. The whole stream is read, so the returned
/// DiffID covers it all even if bytes follow the end-of-archive marker.
pub fn apply_layer<R: Read>(root: &Path, layer: R, mode: ApplyMode) -> Result<LayerStats> {
    let root_fd: OwnedFd = File::open(root).ctx(format_args!("opening snapshot {}", root.display()))?.into();
    let st = sys::fstat(root_fd.as_fd()).ctx(format_args!("checking snapshot {}", root.display()))?;
    if st.st_mode & libc::S_IFMT != libc::S_IFDIR {
        return Err(Error::new(ErrorKind::Io, format!("snapshot {} is not a directory", root.display())));
    }
    let mut reader = HashReader::new(BufReader::with_capacity(COPY_BUFFER, layer));
    let mut applier = Applier {
        root: root_fd,
        mode,
        created: HashSet::new(),
        dir_times: Vec::new(),
        buf: vec![0; COPY_BUFFER],
        entries: 0,
        xattrs_skipped: 0,
    };
    let mut dirs = DirStack::new(applier.root.as_fd()).ctx("duplicating the snapshot fd")?;
    {
        let mut archive = tar::Archive::new(&mut reader);
        let entries = archive.entries().map_err(|e| layer_error(format_args!("reading layer: {e}")))?;
        for entry in entries {
            let mut entry = entry.map_err(|e| layer_error(format_args!("reading layer: {e}")))?;
            applier.apply(&mut dirs, &mut entry)?;
        }
    }
    io::copy(&mut reader, &mut io::sink()).map_err(|e| layer_error(format_args!("reading layer: {e}")))?;
    applier.set_dir_times()?;
    Ok(LayerStats {
        diff_id: reader.digest(),
        size: reader.len(),
        entries: applier.entries,
        xattrs_skipped: applier.xattrs_skipped,
    })
}

fn layer_error(msg: impl std::fmt::Display) -> Error {
    Error::new(ErrorKind::InvalidLayer, msg.to_string())
}

/// An error about one entry: `layer entry "<name>": <why>`.
fn entry_error(kind: ErrorKind, shown: &str, why: impl std::fmt::Display) -> Error {
    Error::new(kind, format!("layer entry {}: {why}", quoted(shown)))
}

fn entry_io(shown: &str, what: impl std::fmt::Display, e: io::Error) -> Error {
    let kind = match e.kind() {
        io::ErrorKind::UnexpectedEof | io::ErrorKind::InvalidData => ErrorKind::InvalidLayer,
        _ => ErrorKind::Io,
    };
    Error::with_os(kind, format!("layer entry {}: {what}: {e}", quoted(shown)), &e)
}

fn walk_error(shown: &str, context: &str, e: WalkError) -> Error {
    let kind = match e {
        WalkError::Symlink(_) => ErrorKind::UnsafeLayer,
        WalkError::NotDir(_) | WalkError::Missing(_) => ErrorKind::InvalidLayer,
        WalkError::Io(..) => ErrorKind::Io,
    };
    entry_error(kind, shown, format_args!("{context}{e}"))
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    File,
    Dir,
    Symlink,
    Hardlink,
    Char,
    Block,
    Fifo,
}

/// The kind of object an entry makes.
fn entry_kind<R: Read>(entry: &tar::Entry<'_, R>, raw: &[u8], shown: &str) -> Result<Kind> {
    Ok(match entry.header().entry_type() {
        tar::EntryType::Regular | tar::EntryType::Continuous | tar::EntryType::GNUSparse => {
            // Pre-POSIX tars mark directories as '\0'-typed names ending in '/'.
            if entry.header().as_old().linkflag[0] == 0 && raw.ends_with(b"/") {
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
        other => {
            let t = other.as_byte() as char;
            return Err(entry_error(ErrorKind::InvalidLayer, shown, format_args!("unsupported entry type {t:?}")));
        }
    })
}

/// The metadata of one entry, PAX records applied.
struct Meta {
    mode: u32,
    uid: u32,
    gid: u32,
    atime: Time,
    mtime: Time,
    xattrs: Vec<(CString, Vec<u8>)>,
    dev: (u32, u32),
}

/// A PAX time: decimal seconds with an optional fraction, possibly negative, as
/// (seconds, nanoseconds).
pub fn parse_pax_time(v: &str) -> Option<Time> {
    let (neg, v) = match v.strip_prefix('-') {
        Some(rest) => (true, rest),
        None => (false, v),
    };
    let (secs, frac) = v.split_once('.').unwrap_or((v, ""));
    if secs.is_empty() || !secs.bytes().all(|b| b.is_ascii_digit()) || !frac.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let secs: i64 = secs.parse().ok()?;
    let mut nanos: u32 = 0;
    for (i, b) in frac.bytes().take(9).enumerate() {
        nanos += u32::from(b - b'0') * 10u32.pow(8 - i as u32);
    }
    if !neg {
        Some((secs, nanos))
    } else if nanos == 0 {
        Some((-secs, 0))
    } else {
        Some((-secs - 1, 1_000_000_000 - nanos))
    }
}

impl Meta {
    fn read<R: Read>(entry: &mut tar::Entry<'_, R>) -> io::Result<Meta> {
        let h = entry.header();
        let bad = |what: &str| io::Error::new(io::ErrorKind::InvalidData, what.to_string());
        let mode = h.mode()? & 0o7777;
        let uid = u32::try_from(h.uid()?).map_err(|_| bad("uid out of range"))?;
        let gid = u32::try_from(h.gid()?).map_err(|_| bad("gid out of range"))?;
        let mtime = (i64::try_from(h.mtime()?).map_err(|_| bad("mtime out of range"))?, 0);
        let dev = match h.entry_type() {
            tar::EntryType::Char | tar::EntryType::Block => {
                (h.device_major()?.unwrap_or(0), h.device_minor()?.unwrap_or(0))
            }
            _ => (0, 0),
        };
        let mut meta = Meta { mode, uid, gid, atime: mtime, mtime, xattrs: Vec::new(), dev };
        let mut atime = None;
        if let Some(exts) = entry.pax_extensions()? {
            for ext in exts {
                let ext = ext?;
                let Ok(key) = ext.key() else { continue };
                match key {
                    "mtime" => {
                        meta.mtime = ext.value().ok().and_then(parse_pax_time).ok_or_else(|| bad("bad PAX mtime"))?
                    }
                    "atime" => {
                        atime = Some(ext.value().ok().and_then(parse_pax_time).ok_or_else(|| bad("bad PAX atime"))?)
                    }
                    _ => {
                        if let Some(name) = key.strip_prefix(XATTR_PAX_PREFIX) {
                            let name = CString::new(name).map_err(|_| bad("xattr name contains a NUL byte"))?;
                            meta.xattrs.push((name, ext.value_bytes().to_vec()));
                        }
                    }
                }
            }
        }
        meta.atime = atime.unwrap_or(meta.mtime);
        Ok(meta)
    }
}

fn is_dir(st: &libc::stat) -> bool {
    st.st_mode & libc::S_IFMT == libc::S_IFDIR
}

fn is_overlay_whiteout(st: &libc::stat) -> bool {
    st.st_mode & libc::S_IFMT == libc::S_IFCHR && st.st_rdev == 0
}

/// An existing file a hardlink entry points to: its directory, name and identity.
struct HardlinkTarget {
    dir: OwnedFd,
    name: Component,
    stat: libc::stat,
}

/// What to create for one entry.
struct NewEntry<'a> {
    kind: Kind,
    meta: &'a Meta,
    link: Option<&'a [u8]>,
    target: Option<&'a HardlinkTarget>,
    /// The path held an overlay whiteout made earlier in this layer.
    replaced_whiteout: bool,
}

struct DirTimes {
    comps: Vec<Component>,
    atime: Time,
    mtime: Time,
}

struct Applier {
    root: OwnedFd,
    mode: ApplyMode,
    /// Paths this layer created or merged, with their ancestors (Flatten mode only).
    created: HashSet<PathBuf>,
    /// Directory times to set once all entries are in.
    dir_times: Vec<DirTimes>,
    buf: Vec<u8>,
    entries: u64,
    xattrs_skipped: u64,
}

impl Applier {
    fn apply<R: Read>(&mut self, dirs: &mut DirStack, entry: &mut tar::Entry<'_, R>) -> Result<()> {
        let etype = entry.header().entry_type();
        if etype.is_pax_global_extensions() {
            return Ok(());
        }
        let raw = entry.path_bytes().into_owned();
        let shown = String::from_utf8_lossy(&raw).into_owned();
        let comps = safepath::normalise(&raw).map_err(|why| entry_error(ErrorKind::UnsafeLayer, &shown, why))?;
        let kind = entry_kind(entry, &raw, &shown)?;
        let link = match kind {
            Kind::Symlink | Kind::Hardlink => match entry.link_name_bytes() {
                Some(l) if !l.is_empty() => Some(l.into_owned()),
                _ => return Err(entry_error(ErrorKind::InvalidLayer, &shown, "link without a target")),
            },
            _ => None,
        };
        let meta = Meta::read(entry).map_err(|e| entry_io(&shown, "reading header", e))?;
        self.entries += 1;

        let Some((name, parent)) = comps.split_last() else {
            if kind != Kind::Dir {
                return Err(entry_error(ErrorKind::InvalidLayer, &shown, "a non-directory entry for the root"));
            }
            let fd = safepath::walk(self.root.as_fd(), &[], false).map_err(|e| walk_error(&shown, "", e))?;
            self.set_meta(fd.as_fd(), &meta, &shown)?;
            self.dir_times.push(DirTimes { comps: Vec::new(), atime: meta.atime, mtime: meta.mtime });
            return Ok(());
        };
        if name.to_bytes().starts_with(WHITEOUT_PREFIX) {
            return self.whiteout(dirs, parent, name, &shown);
        }

        let target = match (kind, &link) {
            (Kind::Hardlink, Some(l)) => Some(self.hardlink_target(l, &shown)?),
            _ => None,
        };
        let mut removed_dir = false;
        {
            let pfd = dirs.resolve(parent, true).map_err(|e| walk_error(&shown, "parent directory ", e))?;
            let existing = sys::lstatat(pfd, name).map_err(|e| entry_io(&shown, "checking", e))?;
            let mut replaced_whiteout = false;
            if let Some(st) = existing {
                if kind == Kind::Dir && is_dir(&st) {
                    let fd = sys::openat(pfd, name, libc::O_RDONLY | libc::O_DIRECTORY | libc::O_NOFOLLOW, 0)
                        .map_err(|e| entry_io(&shown, "opening", e))?;
                    self.set_meta(fd.as_fd(), &meta, &shown)?;
                    self.dir_times.push(DirTimes { comps: comps.clone(), atime: meta.atime, mtime: meta.mtime });
                    self.note_created(&comps);
                    return Ok(());
                }
                if let Some(t) = &target {
                    if t.stat.st_dev == st.st_dev && t.stat.st_ino == st.st_ino {
                        return Ok(());
                    }
                }
                replaced_whiteout = is_overlay_whiteout(&st);
                removed_dir = is_dir(&st);
                safepath::remove_all_at(pfd, name).map_err(|e| entry_io(&shown, "replacing existing entry", e))?;
            }
            let new = NewEntry { kind, meta: &meta, link: link.as_deref(), target: target.as_ref(), replaced_whiteout };
            self.create(pfd, name, entry, &new, &shown)?;
            self.note_created(&comps);
            if kind == Kind::Dir {
                self.dir_times.push(DirTimes { comps, atime: meta.atime, mtime: meta.mtime });
            }
        }
        if removed_dir {
            dirs.clear();
        }
        Ok(())
    }

    /// Make the new object `name` in `pfd` (nothing exists there now) with its metadata.
    fn create<R: Read>(
        &mut self,
        pfd: BorrowedFd<'_>,
        name: &CStr,
        entry: &mut tar::Entry<'_, R>,
        new: &NewEntry<'_>,
        shown: &str,
    ) -> Result<()> {
        let meta = new.meta;
        match new.kind {
            Kind::File => self.create_file(pfd, name, entry, meta, shown),
            Kind::Dir => {
                sys::mkdirat(pfd, name, 0o700).map_err(|e| entry_io(shown, "creating directory", e))?;
                let fd = sys::openat(pfd, name, libc::O_RDONLY | libc::O_DIRECTORY | libc::O_NOFOLLOW, 0)
                    .map_err(|e| entry_io(shown, "opening directory", e))?;
                self.set_meta(fd.as_fd(), meta, shown)?;
                if new.replaced_whiteout && self.mode == ApplyMode::Overlay {
                    // Re-created after a whiteout in this layer: hide the lower directory.
                    sys::fsetxattr(fd.as_fd(), OVERLAY_OPAQUE_XATTR, b"y")
                        .map_err(|e| entry_io(shown, "marking directory opaque", e))?;
                }
                Ok(())
            }
            Kind::Symlink => {
                let t = CString::new(new.link.unwrap_or_default())
                    .map_err(|_| entry_error(ErrorKind::InvalidLayer, shown, "symlink target contains a NUL byte"))?;
                sys::symlinkat(&t, pfd, name).map_err(|e| entry_io(shown, "creating symlink", e))?;
                self.set_node_meta(pfd, name, meta, shown, false)
            }
            Kind::Hardlink => {
                let t = new.target.expect("hardlink target resolved before");
                sys::linkat(t.dir.as_fd(), &t.name, pfd, name).map_err(|e| entry_io(shown, "creating hardlink", e))
            }
            Kind::Char | Kind::Block | Kind::Fifo => {
                let ftype = match new.kind {
                    Kind::Char => libc::S_IFCHR,
                    Kind::Block => libc::S_IFBLK,
                    _ => libc::S_IFIFO,
                };
                let dev = sys::makedev(meta.dev.0, meta.dev.1);
                sys::mknodat(pfd, name, ftype | 0o600, dev).map_err(|e| entry_io(shown, "creating node", e))?;
                self.set_node_meta(pfd, name, meta, shown, true)
            }
        }
    }

    fn create_file<R: Read>(
        &mut self,
        dir: BorrowedFd<'_>,
        name: &CStr,
        entry: &mut tar::Entry<'_, R>,
        meta: &Meta,
        shown: &str,
    ) -> Result<()> {
        let flags = libc::O_WRONLY | libc::O_CREAT | libc::O_EXCL | libc::O_NOFOLLOW;
        let fd = sys::openat(dir, name, flags, 0o600).map_err(|e| entry_io(shown, "creating file", e))?;
        let mut file = File::from(fd);
        loop {
            let n = match entry.read(&mut self.buf) {
                Ok(0) => break,
                Ok(n) => n,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(entry_error(ErrorKind::InvalidLayer, shown, format_args!("reading data: {e}"))),
            };
            file.write_all(&self.buf[..n]).map_err(|e| entry_io(shown, "writing data", e))?;
        }
        self.set_meta(file.as_fd(), meta, shown)?;
        sys::futimens(file.as_fd(), meta.atime, meta.mtime).map_err(|e| entry_io(shown, "setting times", e))
    }

    /// Owner, mode and xattrs through an open (non-`O_PATH`) fd: chown first, since it clears
    /// setuid/setgid and `security.capability`.
    fn set_meta(&mut self, fd: BorrowedFd<'_>, meta: &Meta, shown: &str) -> Result<()> {
        sys::fchown_empty(fd, meta.uid, meta.gid).map_err(|e| entry_io(shown, "changing owner", e))?;
        sys::fchmod(fd, meta.mode).map_err(|e| entry_io(shown, "changing mode", e))?;
        self.set_xattrs(meta, shown, |n, v| sys::fsetxattr(fd, n, v))
    }

    /// Metadata of a symlink or device/fifo `name` in `dir`, never following it.
    fn set_node_meta(&mut self, dir: BorrowedFd<'_>, name: &CStr, meta: &Meta, shown: &str, chmod: bool) -> Result<()> {
        let fd =
            sys::openat(dir, name, libc::O_PATH | libc::O_NOFOLLOW, 0).map_err(|e| entry_io(shown, "opening", e))?;
        sys::fchown_empty(fd.as_fd(), meta.uid, meta.gid).map_err(|e| entry_io(shown, "changing owner", e))?;
        if chmod {
            // The node is not a symlink, so following the /proc magic link reaches it and nothing else.
            let p = sys::proc_fd_path(fd.as_raw_fd(), None);
            sys::chmod_path(&p, meta.mode).map_err(|e| entry_io(shown, "changing mode", e))?;
            self.set_xattrs(meta, shown, |n, v| sys::setxattr_path(&p, n, v, true))?;
        } else {
            let p = sys::proc_fd_path(dir.as_raw_fd(), Some(name));
            self.set_xattrs(meta, shown, |n, v| sys::setxattr_path(&p, n, v, false))?;
        }
        sys::utimensat_nofollow(dir, name, meta.atime, meta.mtime).map_err(|e| entry_io(shown, "setting times", e))
    }

    fn set_xattrs(&mut self, meta: &Meta, shown: &str, set: impl Fn(&CStr, &[u8]) -> io::Result<()>) -> Result<()> {
        for (name, value) in &meta.xattrs {
            if name.to_bytes().starts_with(b"trusted.overlay.") {
                self.xattrs_skipped += 1;
                continue;
            }
            match set(name, value) {
                Ok(()) => {}
                Err(e) if matches!(e.raw_os_error(), Some(libc::ENOTSUP) | Some(libc::EPERM)) => {
                    self.xattrs_skipped += 1
                }
                Err(e) => return Err(entry_io(shown, format_args!("setting xattr {}", name.to_string_lossy()), e)),
            }
        }
        Ok(())
    }

    /// Resolve a hardlink target inside the snapshot: its parent directory fd, its name and stat.
    fn hardlink_target(&self, link: &[u8], shown: &str) -> Result<HardlinkTarget> {
        let shown_target = String::from_utf8_lossy(link);
        let unsafe_target = |why: &dyn std::fmt::Display| {
            entry_error(ErrorKind::UnsafeLayer, shown, format_args!("hardlink target {}: {why}", quoted(&shown_target)))
        };
        let comps = safepath::normalise(link).map_err(|why| unsafe_target(&why))?;
        let Some((name, parent)) = comps.split_last() else {
            return Err(unsafe_target(&"is the root directory"));
        };
        let missing = || {
            entry_error(
                ErrorKind::InvalidLayer,
                shown,
                format_args!("hardlink target {} does not exist in this layer", quoted(&safepath::display(&comps))),
            )
        };
        let dir = safepath::walk(self.root.as_fd(), parent, false).map_err(|e| match e {
            WalkError::Symlink(_) => unsafe_target(&e),
            WalkError::Missing(_) => missing(),
            e => walk_error(shown, &format!("hardlink target {}: ", quoted(&shown_target)), e),
        })?;
        let st = sys::lstatat(dir.as_fd(), name)
            .map_err(|e| entry_io(shown, "checking hardlink target", e))?
            .ok_or_else(missing)?;
        if is_dir(&st) {
            return Err(entry_error(
                ErrorKind::InvalidLayer,
                shown,
                format_args!("hardlink target {} is a directory", quoted(&shown_target)),
            ));
        }
        Ok(HardlinkTarget { dir, name: name.clone(), stat: st })
    }

    fn whiteout(&mut self, dirs: &mut DirStack, parent: &[Component], name: &CStr, shown: &str) -> Result<()> {
        let n = name.to_bytes();
        if n == WHITEOUT_OPAQUE {
            return self.opaque(dirs, parent, shown);
        }
        if n.starts_with(WHITEOUT_META_PREFIX) {
            return Ok(()); // other reserved AUFS metadata (.wh..wh.plnk, ...): nothing to apply
        }
        let target = &n[WHITEOUT_PREFIX.len()..];
        if target.is_empty() || target == b"." || target == b".." {
            return Err(entry_error(ErrorKind::InvalidLayer, shown, "whiteout names no file"));
        }
        let target = CString::new(target).expect("a C string's tail has no NUL");
        match self.mode {
            ApplyMode::Overlay => {
                let pfd = dirs.resolve(parent, true).map_err(|e| walk_error(shown, "parent directory ", e))?;
                match sys::lstatat(pfd, &target).map_err(|e| entry_io(shown, "checking whiteout target", e))? {
                    None => sys::mknodat(pfd, &target, libc::S_IFCHR, sys::makedev(0, 0))
                        .map_err(|e| entry_io(shown, "creating overlay whiteout", e))?,
                    Some(st) if is_dir(&st) => {
                        // This layer also created the directory: hide the lower one under it.
                        let fd = sys::openat(pfd, &target, libc::O_RDONLY | libc::O_DIRECTORY | libc::O_NOFOLLOW, 0)
                            .map_err(|e| entry_io(shown, "opening whiteout target", e))?;
                        sys::fsetxattr(fd.as_fd(), OVERLAY_OPAQUE_XATTR, b"y")
                            .map_err(|e| entry_io(shown, "marking directory opaque", e))?;
                    }
                    Some(_) => {} // a non-directory from this layer already hides the lower path
                }
            }
            ApplyMode::Flatten => {
                let pfd = match dirs.resolve(parent, false) {
                    Ok(fd) => fd,
                    Err(WalkError::Missing(_)) => return Ok(()),
                    Err(e) => return Err(walk_error(shown, "whiteout parent ", e)),
                };
                let mut full = parent.to_vec();
                full.push(target.clone());
                if self.created.contains(&safepath::to_path(&full)) {
                    return Ok(());
                }
                safepath::remove_all_at(pfd, &target).map_err(|e| entry_io(shown, "applying whiteout", e))?;
                dirs.clear();
            }
        }
        Ok(())
    }

    fn opaque(&mut self, dirs: &mut DirStack, dir: &[Component], shown: &str) -> Result<()> {
        match self.mode {
            ApplyMode::Overlay => {
                let fd = dirs.resolve(dir, true).map_err(|e| walk_error(shown, "opaque directory ", e))?;
                sys::fsetxattr(fd, OVERLAY_OPAQUE_XATTR, b"y")
                    .map_err(|e| entry_io(shown, "marking directory opaque", e))
            }
            ApplyMode::Flatten => {
                let fd = match safepath::walk(self.root.as_fd(), dir, false) {
                    Ok(fd) => fd,
                    Err(WalkError::Missing(_)) => return Ok(()),
                    Err(e) => return Err(walk_error(shown, "opaque directory ", e)),
                };
                let mut path = dir.to_vec();
                self.clear_lower(fd.as_fd(), &mut path).map_err(|e| entry_io(shown, "applying opaque whiteout", e))?;
                dirs.clear();
                Ok(())
            }
        }
    }

    /// Remove everything below `dir` that this layer did not create (Flatten mode).
    fn clear_lower(&self, dir: BorrowedFd<'_>, path: &mut Vec<Component>) -> io::Result<()> {
        for name in safepath::list_dir(dir)? {
            path.push(name);
            let name = path.last().expect("just pushed");
            if self.created.contains(&safepath::to_path(path)) {
                if let Some(st) = sys::lstatat(dir, name)? {
                    if is_dir(&st) {
                        let child = sys::openat(dir, name, libc::O_RDONLY | libc::O_DIRECTORY | libc::O_NOFOLLOW, 0)?;
                        self.clear_lower(child.as_fd(), path)?;
                    }
                }
            } else {
                safepath::remove_all_at(dir, name)?;
            }
            path.pop();
        }
        Ok(())
    }

    fn note_created(&mut self, comps: &[Component]) {
        if self.mode != ApplyMode::Flatten {
            return;
        }
        for end in (1..=comps.len()).rev() {
            if !self.created.insert(safepath::to_path(&comps[..end])) {
                break;
            }
        }
    }

    fn set_dir_times(&mut self) -> Result<()> {
        let mut dirs = DirStack::new(self.root.as_fd()).ctx("duplicating the snapshot fd")?;
        for DirTimes { comps, atime, mtime } in std::mem::take(&mut self.dir_times) {
            let shown = safepath::display(&comps);
            match dirs.resolve(&comps, false) {
                Ok(fd) => sys::futimens(fd, atime, mtime).map_err(|e| entry_io(&shown, "setting times", e))?,
                // Removed or replaced later in the same layer: nothing to stamp.
                Err(WalkError::Missing(_) | WalkError::NotDir(_) | WalkError::Symlink(_)) => {}
                Err(e) => return Err(walk_error(&shown, "", e)),
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::parse_pax_time;

    #[test]
    fn pax_times() {
        assert_eq!(parse_pax_time("1700000000"), Some((1_700_000_000, 0)));
        assert_eq!(parse_pax_time("1700000000.25"), Some((1_700_000_000, 250_000_000)));
        assert_eq!(parse_pax_time("1.123456789123"), Some((1, 123_456_789)));
        assert_eq!(parse_pax_time("-1.5"), Some((-2, 500_000_000)));
        assert_eq!(parse_pax_time("-3"), Some((-3, 0)));
        for bad in ["", ".5", "1.2.3", "x", "1e9", "-"] {
            assert_eq!(parse_pax_time(bad), None, "{bad:?}");
        }
    }
}
