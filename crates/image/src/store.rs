//! The content store: immutable blobs addressed by their sha256 digest.
//!
//! ```text
//! <root>/blobs/sha256/<hex>      committed blobs, mode 0444, content hashes to <hex>
//! <root>/ingest/<sha256(ref)>/   one in-progress write per ingest reference
//!     lock                       flock(LOCK_EX) held by the one live Writer
//!     data                       the bytes received so far (its length is the resume offset)
//!     ref                        the ingest reference, for listing
//! ```
//!
//! Invariants:
//! - **Never visible unless it matches.** Bytes reach `blobs/` only by `rename(2)` from an ingest
//!   after the size and digest were checked and the data fsynced; the blobs directory is fsynced
//!   after the rename. A digest mismatch or an overlong blob removes the partial data.
//! - **Resumable.** A writer dropped without commit (crash, lost connection) leaves `data`; the next
//!   writer for the same ingest reference re-hashes it and reports its length as
//!   [`Writer::offset`], so the caller continues the download from there. A commit that comes up
//!   short ([`ErrorKind::Truncated`]) also keeps it. Data is fsynced only at commit: after a power
//!   loss a resumed ingest may hold garbage, which the final digest check catches.
//! - **Safe between processes.** One writer per ingest reference at a time (flock; the lock file's
//!   inode is re-checked after locking, so a waiter never uses a lock whose ingest was committed
//!   meanwhile). Two writers with different references for the same blob both commit fine: the
//!   loser's `RENAME_NOREPLACE` finds the blob present and just drops its copy.
//! - **Only under the root.** Every path is the root joined with fixed names and validated hex.

use std::fs::{self, File, OpenOptions};
use std::io::{self, Read, Seek, SeekFrom, Write};
use std::os::fd::AsFd;
use std::os::fd::AsRawFd;
use std::os::unix::fs::{DirBuilderExt, MetadataExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::time::SystemTime;

use crate::digest::{is_lower_hex, Digest, Hasher};
use crate::error::{Context, Error, ErrorKind, Result};
use crate::sys;

/// A content store rooted at one directory.
#[derive(Debug, Clone)]
pub struct Store {
    root: PathBuf,
}

/// An interrupted or in-progress ingest, as found on disk.
#[derive(Debug, Clone)]
pub struct IngestStatus {
    /// The ingest reference the writer was opened with.
    pub reference: String,
    /// Bytes received so far: where a resumed download continues.
    pub offset: u64,
    /// When data was last written.
    pub updated: SystemTime,
}

impl Store {
    /// Open (creating if needed) a store rooted at `root`.
    pub fn new(root: impl Into<PathBuf>) -> Result<Store> {
        let store = Store { root: root.into() };
        for dir in [store.root.clone(), store.root.join("blobs"), store.blobs_dir(), store.root.join("ingest")] {
            match fs::DirBuilder::new().mode(0o700).create(&dir) {
                Ok(()) => {}
                Err(e) if e.kind() == io::ErrorKind::AlreadyExists && dir.is_dir() => {}
                Err(e) => return Err(Error::io(format_args!("creating {}", dir.display()), e)),
            }
        }
        Ok(store)
    }

    pub fn root(&self) -> &Path {
        &self.root
    }

    fn blobs_dir(&self) -> PathBuf {
        self.root.join("blobs").join("sha256")
    }

    /// Where the blob lives (whether or not it exists). For reading only: blobs are immutable.
    pub fn blob_path(&self, digest: &Digest) -> PathBuf {
        self.blobs_dir().join(digest.hex())
    }

    fn ingest_dir(&self, reference: &str) -> PathBuf {
        self.root.join("ingest").join(Digest::of(reference.as_bytes()).hex())
    }

    pub fn has(&self, digest: &Digest) -> Result<bool> {
        match fs::symlink_metadata(self.blob_path(digest)) {
            Ok(m) => Ok(m.is_file()),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(false),
            Err(e) => Err(Error::io(format_args!("checking blob {digest}"), e)),
        }
    }

    /// Open a blob for reading.
    pub fn open(&self, digest: &Digest) -> Result<File> {
        File::open(self.blob_path(digest)).map_err(|e| self.blob_err(digest, e))
    }

    pub fn size(&self, digest: &Digest) -> Result<u64> {
        fs::metadata(self.blob_path(digest)).map(|m| m.len()).map_err(|e| self.blob_err(digest, e))
    }

    fn blob_err(&self, digest: &Digest, e: io::Error) -> Error {
        if e.kind() == io::ErrorKind::NotFound {
            Error::new(ErrorKind::NotFound, format!("blob {digest} not found in {}", self.root.display()))
        } else {
            Error::io(format_args!("opening blob {digest}"), e)
        }
    }

    /// Read a small blob (manifest, config) whole, refusing blobs over `limit` bytes, and check
    /// that it still hashes to its digest.
    pub fn read(&self, digest: &Digest, limit: u64) -> Result<Vec<u8>> {
        let file = self.open(digest)?;
        let mut data = Vec::new();
        file.take(limit.saturating_add(1)).read_to_end(&mut data).ctx(format_args!("reading blob {digest}"))?;
        if data.len() as u64 > limit {
            return Err(Error::new(ErrorKind::SizeMismatch, format!("blob {digest} is larger than {limit} bytes")));
        }
        let actual = Digest::of(&data);
        if actual != *digest {
            return Err(Error::new(
                ErrorKind::DigestMismatch,
                format!("blob {digest} is corrupt on disk: its content hashes to {actual}"),
            ));
        }
        Ok(data)
    }

    /// Remove a blob. `Ok(false)` if it was not there.
    pub fn delete(&self, digest: &Digest) -> Result<bool> {
        match fs::remove_file(self.blob_path(digest)) {
            Ok(()) => Ok(true),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(false),
            Err(e) => Err(Error::io(format_args!("deleting blob {digest}"), e)),
        }
    }

    /// All committed blobs, sorted. Names that are not 64 lowercase hex characters are ignored.
    pub fn list(&self) -> Result<Vec<Digest>> {
        let dir = self.blobs_dir();
        let mut out = Vec::new();
        for entry in fs::read_dir(&dir).ctx(format_args!("listing {}", dir.display()))? {
            let entry = entry.ctx(format_args!("listing {}", dir.display()))?;
            let name = entry.file_name();
            let Some(hex) = name.to_str() else { continue };
            if hex.len() == 64 && is_lower_hex(hex) {
                out.push(Digest::from_hex(hex)?);
            }
        }
        out.sort();
        Ok(out)
    }

    /// Store a small in-memory blob (manifest, config) and return its digest. With `expected`,
    /// nothing is written unless the data hashes to it.
    pub fn write_blob(&self, data: &[u8], expected: Option<&Digest>) -> Result<Digest> {
        let digest = Digest::of(data);
        if let Some(want) = expected {
            if *want != digest {
                return Err(Error::new(
                    ErrorKind::DigestMismatch,
                    format!("blob digest mismatch: expected {want}, got {digest}"),
                ));
            }
        }
        if self.has(&digest)? {
            return Ok(digest);
        }
        let mut w = self.writer(&format!("write-blob-{digest}"))?;
        w.reset()?;
        w.write_all(data).ctx(format_args!("writing blob {digest}"))?;
        w.commit(Some(data.len() as u64), Some(&digest))
    }

    /// Open the writer for `ingest_ref`, waiting while another writer (thread or process) holds it.
    /// If an earlier writer left data, it is re-hashed and [`Writer::offset`] says where to resume.
    pub fn writer(&self, ingest_ref: &str) -> Result<Writer> {
        self.open_writer(ingest_ref, false)
    }

    /// Like [`Store::writer`] but fails with [`ErrorKind::Busy`] instead of waiting.
    pub fn try_writer(&self, ingest_ref: &str) -> Result<Writer> {
        self.open_writer(ingest_ref, true)
    }

    fn open_writer(&self, ingest_ref: &str, nonblocking: bool) -> Result<Writer> {
        let dir = self.ingest_dir(ingest_ref);
        let lock = lock_ingest_dir(&dir, ingest_ref, nonblocking)?;
        let ref_path = dir.join("ref");
        if !ref_path.exists() {
            fs::write(&ref_path, ingest_ref).ctx(format_args!("writing {}", ref_path.display()))?;
        }
        let data_path = dir.join("data");
        let mut data = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .mode(0o600)
            .open(&data_path)
            .ctx(format_args!("opening {}", data_path.display()))?;
        let mut hasher = Hasher::new();
        io::copy(&mut data, &mut hasher).ctx(format_args!("re-hashing partial ingest {ingest_ref:?}"))?;
        let offset = hasher.len();
        Ok(Writer {
            reference: ingest_ref.to_string(),
            blobs: self.blobs_dir(),
            dir,
            data_path,
            _lock: lock,
            data,
            hasher,
            offset,
        })
    }

    /// Interrupted ingests (those no live writer holds are resumable; see [`Store::writer`]).
    pub fn ingests(&self) -> Result<Vec<IngestStatus>> {
        let ingest = self.root.join("ingest");
        let mut out = Vec::new();
        for entry in fs::read_dir(&ingest).ctx(format_args!("listing {}", ingest.display()))? {
            let dir = entry.ctx(format_args!("listing {}", ingest.display()))?.path();
            let (Ok(reference), Ok(meta)) = (fs::read_to_string(dir.join("ref")), fs::metadata(dir.join("data")))
            else {
                continue;
            };
            let updated = meta.modified().unwrap_or(SystemTime::UNIX_EPOCH);
            out.push(IngestStatus { reference, offset: meta.len(), updated });
        }
        out.sort_by(|a, b| a.reference.cmp(&b.reference));
        Ok(out)
    }

    /// Discard an interrupted ingest (waits for a live writer to finish first).
    pub fn abort(&self, ingest_ref: &str) -> Result<()> {
        let dir = self.ingest_dir(ingest_ref);
        if !dir.exists() {
            return Ok(());
        }
        self.writer(ingest_ref)?.abort()
    }
}

/// Create the ingest directory if needed and take its lock, retrying if the directory was
/// committed and removed while we waited.
fn lock_ingest_dir(dir: &Path, reference: &str, nonblocking: bool) -> Result<File> {
    let lock_path = dir.join("lock");
    loop {
        match fs::DirBuilder::new().mode(0o700).create(dir) {
            Ok(()) => {}
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {}
            Err(e) => return Err(Error::io(format_args!("creating {}", dir.display()), e)),
        }
        let lock =
            match OpenOptions::new().read(true).write(true).create(true).truncate(false).mode(0o600).open(&lock_path) {
                Ok(f) => f,
                Err(e) if e.kind() == io::ErrorKind::NotFound => continue,
                Err(e) => return Err(Error::io(format_args!("opening {}", lock_path.display()), e)),
            };
        if !sys::flock_exclusive(lock.as_fd(), nonblocking).ctx(format_args!("locking {}", lock_path.display()))? {
            return Err(Error::new(ErrorKind::Busy, format!("ingest {reference:?} is in use by another writer")));
        }
        let held = lock.metadata().ctx(format_args!("checking {}", lock_path.display()))?;
        match fs::symlink_metadata(&lock_path) {
            Ok(m) if m.ino() == held.ino() && m.dev() == held.dev() => return Ok(lock),
            Ok(_) => continue,
            Err(e) if e.kind() == io::ErrorKind::NotFound => continue,
            Err(e) => return Err(Error::io(format_args!("checking {}", lock_path.display()), e)),
        }
    }
}

/// The one live writer of an ingest. Write bytes to it, then [`Writer::commit`]. Dropping it
/// without commit keeps the data for a later resume.
pub struct Writer {
    reference: String,
    blobs: PathBuf,
    dir: PathBuf,
    data_path: PathBuf,
    _lock: File,
    data: File,
    hasher: Hasher,
    offset: u64,
}

impl Writer {
    pub fn reference(&self) -> &str {
        &self.reference
    }

    /// Bytes held so far; a resumed download continues from here.
    pub fn offset(&self) -> u64 {
        self.offset
    }

    /// A reader of the bytes held so far (from offset 0), to replay them when resuming a
    /// download whose consumer needs the whole stream (unpacking a layer in the same pass).
    pub fn partial(&self) -> Result<File> {
        File::open(&self.data_path).ctx(format_args!("opening {}", self.data_path.display()))
    }

    /// The digest of the bytes held so far.
    pub fn digest(&self) -> Digest {
        self.hasher.digest()
    }

    /// Throw away the bytes held so far and start at offset 0 (a source that cannot resume).
    pub fn reset(&mut self) -> Result<()> {
        self.data.set_len(0).ctx(format_args!("truncating {}", self.data_path.display()))?;
        self.data.seek(SeekFrom::Start(0)).ctx(format_args!("seeking {}", self.data_path.display()))?;
        self.hasher = Hasher::new();
        self.offset = 0;
        Ok(())
    }

    /// Check the content and move it into place under its digest, returning the digest.
    ///
    /// With `size`: fewer bytes is [`ErrorKind::Truncated`] (data kept for resuming), more is
    /// [`ErrorKind::SizeMismatch`] (data removed). With `expected`: another digest is
    /// [`ErrorKind::DigestMismatch`] (data removed). If the blob already exists (another
    /// writer won the race), this copy is dropped and the commit succeeds.
    pub fn commit(self, size: Option<u64>, expected: Option<&Digest>) -> Result<Digest> {
        let actual = self.hasher.digest();
        let what = expected.map_or_else(|| format!("ingest {:?}", self.reference), |d| format!("blob {d}"));
        if let Some(size) = size {
            if self.offset < size {
                return Err(Error::new(
                    ErrorKind::Truncated,
                    format!("{what} is truncated: expected {size} bytes, got {}; kept for resuming", self.offset),
                ));
            }
            if self.offset > size {
                let got = self.offset;
                self.remove()?;
                return Err(Error::new(
                    ErrorKind::SizeMismatch,
                    format!("{what} size mismatch: expected {size} bytes, got {got}"),
                ));
            }
        }
        if let Some(want) = expected {
            if *want != actual {
                self.remove()?;
                return Err(Error::new(
                    ErrorKind::DigestMismatch,
                    format!("blob digest mismatch: expected {want}, got {actual}"),
                ));
            }
        }
        self.data.sync_all().ctx(format_args!("syncing {}", self.data_path.display()))?;
        self.data
            .set_permissions(fs::Permissions::from_mode(0o444))
            .ctx(format_args!("making {} read-only", self.data_path.display()))?;
        let dest = self.blobs.join(actual.hex());
        let (old, new) = (sys::cstr(self.data_path.as_os_str()), sys::cstr(dest.as_os_str()));
        let moved = sys::rename_noreplace(&old.ctx("ingest path")?, &new.ctx("blob path")?)
            .ctx(format_args!("moving {} into place", actual))?;
        if moved {
            File::open(&self.blobs).and_then(|d| d.sync_all()).ctx(format_args!("syncing {}", self.blobs.display()))?;
        }
        self.remove()?;
        Ok(actual)
    }

    /// Discard this ingest and its data.
    pub fn abort(self) -> Result<()> {
        self.remove()
    }

    /// Remove the ingest directory while still holding its lock (the lock file goes last but
    /// one, so a waiter that wins the stale lock notices the inode changed and retries).
    fn remove(self) -> Result<()> {
        for name in ["data", "ref", "lock"] {
            let p = self.dir.join(name);
            match fs::remove_file(&p) {
                Ok(()) => {}
                Err(e) if e.kind() == io::ErrorKind::NotFound => {}
                Err(e) => return Err(Error::io(format_args!("removing {}", p.display()), e)),
            }
        }
        match fs::remove_dir(&self.dir) {
            Ok(()) => Ok(()),
            // A new writer already re-created its lock here: the directory is theirs now.
            Err(e) if e.kind() == io::ErrorKind::NotFound || e.raw_os_error() == Some(libc::ENOTEMPTY) => Ok(()),
            Err(e) => Err(Error::io(format_args!("removing {}", self.dir.display()), e)),
        }
    }
}

/// Written bytes are handed to the disk in steps of this size while the download goes on, so
/// the `fsync` at commit has little left to wait for.
const WRITEBACK_STEP: u64 = 8 << 20;

impl Write for Writer {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let n = self.data.write(buf)?;
        self.hasher.update(&buf[..n]);
        let before = self.offset;
        self.offset += n as u64;
        if before / WRITEBACK_STEP != self.offset / WRITEBACK_STEP {
            let start = (self.offset / WRITEBACK_STEP - 1) * WRITEBACK_STEP;
            // SAFETY: a plain system call on our own open fd; it only starts writeback (a hint),
            // so its result is ignored.
            unsafe {
                libc::sync_file_range(
                    self.data.as_raw_fd(),
                    start as libc::off64_t,
                    WRITEBACK_STEP as libc::off64_t,
                    libc::SYNC_FILE_RANGE_WRITE,
                );
            }
        }
        Ok(n)
    }

    fn flush(&mut self) -> io::Result<()> {
        self.data.flush()
    }
}

impl std::fmt::Debug for Writer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Writer").field("reference", &self.reference).field("offset", &self.offset).finish()
    }
}
