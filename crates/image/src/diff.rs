//! A container's changes turned back into a layer: the overlayfs upper directory written as a
//! tar stream in the image layer format (needed by commit and build).
//!
//! - A 0:0 character device (overlayfs' whiteout) becomes an empty `.wh.<name>` entry.
//! - A directory with `trusted.overlay.opaque=y` is written, followed by `.wh..wh..opq`.
//! - Files with several links inside the upper dir become one file and tar hardlinks.
//! - Entries are sorted by name and owners/modes kept as on disk, so equal trees give equal
//!   bytes; with `clamp_mtime` (SOURCE_DATE_EPOCH) no mtime is later than it.
//! - Extended attributes other than `trusted.overlay.*` are not carried yet.

use crate::digest::{Digest, Hasher};
use crate::error::{Context, Error, ErrorKind, Result};
use std::collections::HashMap;
use std::ffi::CString;
use std::fs;
use std::io::{self, Write};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{FileTypeExt, MetadataExt};
use std::path::{Path, PathBuf};

/// What [`write_layer`] produced.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DiffStats {
    /// sha256 of the tar stream (the layer's DiffID).
    pub diff_id: Digest,
    pub size: u64,
    pub entries: u64,
}

struct Counting<W> {
    inner: W,
    hasher: Hasher,
}

impl<W: Write> Write for Counting<W> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let n = self.inner.write(buf)?;
        self.hasher.update(&buf[..n]);
        Ok(n)
    }
    fn flush(&mut self) -> io::Result<()> {
        self.inner.flush()
    }
}

fn is_opaque(path: &Path) -> bool {
    let Ok(p) = CString::new(path.as_os_str().as_bytes()) else { return false };
    let mut buf = [0u8; 4];
    // SAFETY: p is a valid C string, buf a writable buffer of the given length.
    let n = unsafe {
        libc::lgetxattr(
            p.as_ptr(),
            c"trusted.overlay.opaque".as_ptr(),
            buf.as_mut_ptr() as *mut libc::c_void,
            buf.len(),
        )
    };
    n == 1 && buf[0] == b'y'
}

/// Write the changes recorded in the overlay upper directory `upper` to `out` as a layer tar.
pub fn write_layer(upper: &Path, out: impl Write, clamp_mtime: Option<u64>) -> Result<DiffStats> {
    write_layer_filtered(upper, out, clamp_mtime, &|_, _| false)
}

/// Decides which entries [`write_layer_filtered`] leaves out: called with an entry's path
/// relative to the upper directory and its (lstat) metadata; true skips it (a directory with
/// everything below it).
pub type Skip<'a> = &'a dyn Fn(&Path, &fs::Metadata) -> bool;

/// [`write_layer`] without the entries `skip` names (commit: the runtime's mount points).
pub fn write_layer_filtered(
    upper: &Path,
    out: impl Write,
    clamp_mtime: Option<u64>,
    skip: Skip<'_>,
) -> Result<DiffStats> {
    let mut tar = tar::Builder::new(Counting { inner: out, hasher: Hasher::new() });
    tar.follow_symlinks(false);
    let mut links: HashMap<(u64, u64), String> = HashMap::new();
    let mut entries = 0u64;
    let mut stack: Vec<PathBuf> = vec![PathBuf::new()];
    while let Some(rel) = stack.pop() {
        let dir = upper.join(&rel);
        let mut names: Vec<_> = fs::read_dir(&dir)
            .ctx(format_args!("reading {}", dir.display()))?
            .map(|e| e.map(|e| e.file_name()))
            .collect::<io::Result<_>>()
            .ctx(format_args!("reading {}", dir.display()))?;
        names.sort();
        let mut subdirs = Vec::new();
        for name in names {
            let rp = rel.join(&name);
            let full = upper.join(&rp);
            let md = fs::symlink_metadata(&full).ctx(format_args!("inspecting {}", full.display()))?;
            if skip(&rp, &md) {
                continue;
            }
            let ft = md.file_type();
            let mtime = clamp_mtime.map_or(md.mtime().max(0) as u64, |c| (md.mtime().max(0) as u64).min(c));
            let mut h = tar::Header::new_ustar();
            h.set_mode(md.mode() & 0o7777);
            h.set_uid(md.uid() as u64);
            h.set_gid(md.gid() as u64);
            h.set_mtime(mtime);
            h.set_size(0);
            let path_str = rp.to_string_lossy().into_owned();
            if ft.is_char_device() && md.rdev() == 0 {
                let wh = rel.join(format!(".wh.{}", name.to_string_lossy()));
                h.set_entry_type(tar::EntryType::Regular);
                h.set_mode(0o644);
                h.set_uid(0);
                h.set_gid(0);
                tar.append_data(&mut h, &wh, io::empty()).ctx(format_args!("writing whiteout for {path_str}"))?;
            } else if ft.is_dir() {
                h.set_entry_type(tar::EntryType::Directory);
                tar.append_data(&mut h, &rp, io::empty()).ctx(format_args!("writing {path_str}"))?;
                if is_opaque(&full) {
                    let mut o = tar::Header::new_ustar();
                    o.set_entry_type(tar::EntryType::Regular);
                    o.set_mode(0o644);
                    o.set_uid(0);
                    o.set_gid(0);
                    o.set_mtime(mtime);
                    o.set_size(0);
                    tar.append_data(&mut o, rp.join(".wh..wh..opq"), io::empty())
                        .ctx(format_args!("writing opaque marker for {path_str}"))?;
                    entries += 1;
                }
                subdirs.push(rp.clone());
            } else if ft.is_symlink() {
                let target = fs::read_link(&full).ctx(format_args!("reading link {}", full.display()))?;
                h.set_entry_type(tar::EntryType::Symlink);
                tar.append_link(&mut h, &rp, &target).ctx(format_args!("writing {path_str}"))?;
            } else if ft.is_file() {
                let key = (md.dev(), md.ino());
                if md.nlink() > 1 {
                    if let Some(first) = links.get(&key) {
                        h.set_entry_type(tar::EntryType::Link);
                        tar.append_link(&mut h, &rp, first).ctx(format_args!("writing {path_str}"))?;
                        entries += 1;
                        continue;
                    }
                    links.insert(key, path_str.clone());
                }
                h.set_entry_type(tar::EntryType::Regular);
                h.set_size(md.len());
                let f = fs::File::open(&full).ctx(format_args!("opening {}", full.display()))?;
                tar.append_data(&mut h, &rp, f).ctx(format_args!("writing {path_str}"))?;
            } else if ft.is_fifo() || ft.is_char_device() || ft.is_block_device() {
                h.set_entry_type(if ft.is_fifo() {
                    tar::EntryType::Fifo
                } else if ft.is_char_device() {
                    tar::EntryType::Char
                } else {
                    tar::EntryType::Block
                });
                let rdev = md.rdev();
                h.set_device_major(libc::major(rdev)).ctx("device number")?;
                h.set_device_minor(libc::minor(rdev)).ctx("device number")?;
                tar.append_data(&mut h, &rp, io::empty()).ctx(format_args!("writing {path_str}"))?;
            } else {
                return Err(Error::new(
                    ErrorKind::InvalidLayer,
                    format!("{path_str}: sockets cannot be put in a layer"),
                ));
            }
            entries += 1;
        }
        // Depth-first in name order: push in reverse so the smallest name is visited first.
        stack.extend(subdirs.into_iter().rev());
    }
    let w = tar.into_inner().ctx("finishing the layer")?;
    let size = w.hasher.len();
    Ok(DiffStats { diff_id: w.hasher.finish(), size, entries })
}
