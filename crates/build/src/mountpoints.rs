//! The runtime's traces in a container's upper directory: the empty files and directories it
//! makes there as mount points of its own mounts (`/etc/hostname`, `/etc/hosts`,
//! `/etc/resolv.conf`, `/dev`, `/proc`, `/sys`, and `/etc` when only they are in it) when the
//! image lacks them, and sockets. dockerd keeps these in an init layer that commits and builds
//! never see; berth leaves them out of the layers it makes (commit, and build's RUN steps).

use std::fs;
use std::os::unix::fs::{FileTypeExt, MetadataExt};
use std::path::{Path, PathBuf};

/// Files the runtime creates in the rw layer as mount points for the daemon's bind mounts.
pub const FILE_MOUNT_POINTS: &[&str] = &["etc/hostname", "etc/hosts", "etc/resolv.conf", ".dockerenv"];
/// Directories the runtime creates in the rw layer as mount points (or to hold them).
pub const DIR_MOUNT_POINTS: &[&str] = &["dev", "dev/pts", "dev/shm", "proc", "sys", "etc"];

/// The entry of the image's layers (`layers`: snapshot dirs, bottom first) at `rel`, if any.
pub fn in_image(layers: &[PathBuf], rel: &Path) -> Option<fs::Metadata> {
    for l in layers.iter().rev() {
        if let Ok(md) = fs::symlink_metadata(l.join(rel)) {
            let whiteout = md.file_type().is_char_device() && md.rdev() == 0;
            return (!whiteout).then_some(md);
        }
    }
    None
}

fn opaque(p: &Path) -> bool {
    use std::os::unix::ffi::OsStrExt;
    let Ok(c) = std::ffi::CString::new(p.as_os_str().as_bytes()) else { return false };
    let mut buf = [0u8; 4];
    // SAFETY: a valid C string and a writable buffer of the given length.
    let n = unsafe { libc::lgetxattr(c.as_ptr(), c"trusted.overlay.opaque".as_ptr(), buf.as_mut_ptr().cast(), 4) };
    n == 1 && buf[0] == b'y'
}

/// Whether a layer leaves out the upper dir's entry `rel` (see the module docs): sockets;
/// the runtime's empty mount-point files; its mount-point directories when nothing kept is
/// in them and they are not in the image, or there with the same mode and owner (a copy-up
/// the mount point made), and not opaque.
pub fn skipped(upper: &Path, layers: &[PathBuf], rel: &Path, md: &fs::Metadata) -> bool {
    let ft = md.file_type();
    if ft.is_socket() {
        return true;
    }
    let Some(name) = rel.to_str() else { return false };
    if FILE_MOUNT_POINTS.contains(&name) {
        return ft.is_file() && md.len() == 0;
    }
    if !DIR_MOUNT_POINTS.contains(&name) || !ft.is_dir() {
        return false;
    }
    let full = upper.join(rel);
    if opaque(&full) {
        return false;
    }
    let Ok(rd) = fs::read_dir(&full) else { return false };
    for e in rd {
        let Ok(e) = e else { return false };
        let child = rel.join(e.file_name());
        match fs::symlink_metadata(upper.join(&child)) {
            Ok(cm) if skipped(upper, layers, &child, &cm) => {}
            _ => return false,
        }
    }
    match in_image(layers, rel) {
        None => true,
        Some(l) => l.is_dir() && l.mode() == md.mode() && l.uid() == md.uid() && l.gid() == md.gid(),
    }
}

/// Remove from `upper` what [`skipped`] names (before the directory becomes a layer as it is).
pub fn prune(upper: &Path, layers: &[PathBuf]) {
    for top in ["etc", "dev", "proc", "sys", ".dockerenv"] {
        prune_at(upper, layers, Path::new(top));
    }
}

fn prune_at(upper: &Path, layers: &[PathBuf], rel: &Path) {
    let Ok(md) = fs::symlink_metadata(upper.join(rel)) else { return };
    if skipped(upper, layers, rel, &md) {
        let p = upper.join(rel);
        let _ = if md.is_dir() { fs::remove_dir_all(&p) } else { fs::remove_file(&p) };
        return;
    }
    if md.is_dir() {
        for e in fs::read_dir(upper.join(rel)).into_iter().flatten().flatten() {
            let child = rel.join(e.file_name());
            if let Some(name) = child.to_str() {
                if FILE_MOUNT_POINTS.contains(&name) || DIR_MOUNT_POINTS.contains(&name) {
                    prune_at(upper, layers, &child);
                }
            }
        }
    }
}
