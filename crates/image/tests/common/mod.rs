//! Helpers shared by the integration tests: temporary directories, tree listings that compare
//! exactly (type, mode, owner, size/target/device, content hash, xattrs), and a layer builder.
#![allow(dead_code)]

use std::collections::BTreeMap;
use std::ffi::CString;
use std::fs;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{FileTypeExt, MetadataExt};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU32, Ordering};

use berth_image::Digest;

/// A directory under the system temp dir, removed on drop.
pub struct TempDir(PathBuf);

impl TempDir {
    pub fn new(tag: &str) -> TempDir {
        static N: AtomicU32 = AtomicU32::new(0);
        let nanos = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().subsec_nanos();
        let p = std::env::temp_dir().join(format!(
            "berth-image-{tag}-{}-{}-{nanos}",
            std::process::id(),
            N.fetch_add(1, Ordering::SeqCst)
        ));
        fs::create_dir_all(&p).unwrap();
        TempDir(p)
    }

    pub fn path(&self) -> &Path {
        &self.0
    }

    pub fn join(&self, p: &str) -> PathBuf {
        self.0.join(p)
    }

    /// Make (and return) a subdirectory.
    pub fn sub(&self, p: &str) -> PathBuf {
        let d = self.0.join(p);
        fs::create_dir_all(&d).unwrap();
        d
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = fs::remove_dir_all(&self.0);
    }
}

/// All xattrs of a path (not following a final symlink), sorted, values lossy as text.
pub fn xattrs(p: &Path) -> BTreeMap<String, String> {
    let c = CString::new(p.as_os_str().as_bytes()).unwrap();
    let mut names = vec![0u8; 4096];
    // SAFETY: c is a valid C string and names a writable buffer of the given length.
    let n = unsafe { libc::llistxattr(c.as_ptr(), names.as_mut_ptr().cast(), names.len()) };
    assert!(n >= 0, "llistxattr {}: {}", p.display(), std::io::Error::last_os_error());
    let mut out = BTreeMap::new();
    for name in names[..n as usize].split(|&b| b == 0).filter(|s| !s.is_empty()) {
        let cname = CString::new(name).unwrap();
        let mut val = vec![0u8; 4096];
        // SAFETY: both are valid C strings and val a writable buffer of the given length.
        let m = unsafe { libc::lgetxattr(c.as_ptr(), cname.as_ptr(), val.as_mut_ptr().cast(), val.len()) };
        assert!(m >= 0, "lgetxattr {}", p.display());
        out.insert(
            String::from_utf8_lossy(name).into_owned(),
            String::from_utf8_lossy(&val[..m as usize]).into_owned(),
        );
    }
    out
}

/// Options for [`tree`].
#[derive(Clone, Copy, Default)]
pub struct TreeOpts {
    /// Include directory mtimes (file, symlink and node mtimes are always included).
    pub dir_mtimes: bool,
    /// Drop `trusted.overlay.*` xattrs from the listing.
    pub hide_overlay_xattrs: bool,
}

/// One line per path below `root` (sorted), describing it completely.
pub fn tree(root: &Path, opts: TreeOpts) -> Vec<String> {
    let mut out = Vec::new();
    walk(root, root, opts, &mut out);
    out.sort();
    out
}

fn walk(root: &Path, dir: &Path, opts: TreeOpts, out: &mut Vec<String>) {
    let mut entries: Vec<_> = fs::read_dir(dir).unwrap().map(|e| e.unwrap().path()).collect();
    entries.sort();
    for p in entries {
        let m = fs::symlink_metadata(&p).unwrap();
        let rel = p.strip_prefix(root).unwrap().display().to_string();
        let ft = m.file_type();
        let perm = m.mode() & 0o7777;
        let owner = format!("{}:{}", m.uid(), m.gid());
        let what = if ft.is_dir() {
            if opts.dir_mtimes {
                format!("dir mtime={}", m.mtime())
            } else {
                "dir".to_string()
            }
        } else if ft.is_symlink() {
            format!("symlink -> {} mtime={}", fs::read_link(&p).unwrap().display(), m.mtime())
        } else if ft.is_file() {
            let data = fs::read(&p).unwrap();
            format!(
                "file size={} {} nlink={} mtime={}",
                data.len(),
                &Digest::of(&data).hex()[..12],
                m.nlink(),
                m.mtime()
            )
        } else if ft.is_char_device() && m.rdev() == 0 {
            // Overlay whiteouts get the time they were made; leave it out so trees compare.
            "whiteout".to_string()
        } else if ft.is_char_device() {
            let rdev = m.rdev();
            format!("char {}:{} mtime={}", libc::major(rdev), libc::minor(rdev), m.mtime())
        } else if ft.is_block_device() {
            let rdev = m.rdev();
            format!("block {}:{} mtime={}", libc::major(rdev), libc::minor(rdev), m.mtime())
        } else if ft.is_fifo() {
            format!("fifo mtime={}", m.mtime())
        } else {
            "other".to_string()
        };
        let mut x = xattrs(&p);
        if opts.hide_overlay_xattrs {
            x.retain(|k, _| !k.starts_with("trusted.overlay."));
        }
        let xs = if x.is_empty() { String::new() } else { format!(" xattrs={x:?}") };
        out.push(format!("{rel} {perm:04o} {owner} {what}{xs}"));
        if ft.is_dir() {
            walk(root, &p, opts, out);
        }
    }
}

/// Builds a layer tar in memory with full control over names, types and metadata.
pub struct Layer {
    b: tar::Builder<Vec<u8>>,
    pub mtime: u64,
}

impl Default for Layer {
    fn default() -> Self {
        Layer::new()
    }
}

impl Layer {
    pub fn new() -> Layer {
        let mut b = tar::Builder::new(Vec::new());
        b.mode(tar::HeaderMode::Complete);
        Layer { b, mtime: 1_600_000_000 }
    }

    fn header(&self, etype: tar::EntryType, mode: u32, uid: u64, gid: u64, size: u64) -> tar::Header {
        let mut h = tar::Header::new_gnu();
        h.set_entry_type(etype);
        h.set_mode(mode);
        h.set_uid(uid);
        h.set_gid(gid);
        h.set_size(size);
        h.set_mtime(self.mtime);
        h
    }

    /// Append with a raw name (and link name) written into the header unchecked, so hostile names
    /// (`..`, absolute) can be produced. Names must fit in 100 bytes.
    pub fn raw(
        &mut self,
        etype: tar::EntryType,
        name: &[u8],
        link: Option<&[u8]>,
        mode: u32,
        data: &[u8],
    ) -> &mut Self {
        let mut h = self.header(etype, mode, 0, 0, data.len() as u64);
        let gnu = h.as_gnu_mut().unwrap();
        gnu.name[..name.len()].copy_from_slice(name);
        if let Some(l) = link {
            gnu.linkname[..l.len()].copy_from_slice(l);
        }
        h.set_cksum();
        self.b.append(&h, data).unwrap();
        self
    }

    pub fn file_owned(&mut self, path: &str, data: &[u8], mode: u32, uid: u64, gid: u64) -> &mut Self {
        let mut h = self.header(tar::EntryType::Regular, mode, uid, gid, data.len() as u64);
        self.b.append_data(&mut h, path, data).unwrap();
        self
    }

    pub fn file(&mut self, path: &str, data: &[u8], mode: u32) -> &mut Self {
        self.file_owned(path, data, mode, 0, 0)
    }

    pub fn dir(&mut self, path: &str, mode: u32) -> &mut Self {
        let mut h = self.header(tar::EntryType::Directory, mode, 0, 0, 0);
        self.b.append_data(&mut h, path, std::io::empty()).unwrap();
        self
    }

    pub fn symlink(&mut self, path: &str, target: &str) -> &mut Self {
        let mut h = self.header(tar::EntryType::Symlink, 0o777, 0, 0, 0);
        self.b.append_link(&mut h, path, target).unwrap();
        self
    }

    pub fn hardlink(&mut self, path: &str, target: &str) -> &mut Self {
        let mut h = self.header(tar::EntryType::Link, 0o644, 0, 0, 0);
        self.b.append_link(&mut h, path, target).unwrap();
        self
    }

    pub fn node(&mut self, path: &str, etype: tar::EntryType, mode: u32, gid: u64, dev: (u32, u32)) -> &mut Self {
        let mut h = self.header(etype, mode, 0, gid, 0);
        h.set_device_major(dev.0).unwrap();
        h.set_device_minor(dev.1).unwrap();
        self.b.append_data(&mut h, path, std::io::empty()).unwrap();
        self
    }

    /// PAX records for the next entry.
    pub fn pax(&mut self, records: &[(&str, &[u8])]) -> &mut Self {
        self.b.append_pax_extensions(records.iter().copied()).unwrap();
        self
    }

    pub fn finish(self) -> Vec<u8> {
        self.b.into_inner().unwrap()
    }
}
