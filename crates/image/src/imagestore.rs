//! The image store: blobs ([`Store`]), layer snapshots keyed by chain id, and the image
//! metadata database, tied together.
//!
//! ```text
//! <root>/content/            the blob store (blobs/sha256/<hex>, ingest/)
//! <root>/snapshots/<hex>/    one unpacked layer, <hex> = its chain id
//!     fs/                    the layer in overlayfs format (whiteouts as 0:0 char devices,
//!                            opaque dirs with trusted.overlay.opaque=y)
//!     info.json              {diff_id, size, parent}
//! <root>/snapshots/tmp-*/    an unpack in progress (renamed into place when complete)
//! <root>/snapshots/l/<20 hex> short symlink to `../<hex>/fs`, the name overlay mounts use
//! <root>/meta.db             redb: references, images, holders
//! <root>/meta.lock           flock serialising database access between processes
//! ```
//!
//! Metadata lives in redb rather than SQLite: pure Rust (no C library to build), ACID with
//! copy-on-write pages and checksums, small. redb lets one process open a file at a time, so
//! every operation takes `meta.lock` (blocking flock), opens the database, runs one
//! transaction and closes it: two `berth` processes interleave safely, and a killed one
//! leaves at most an uncommitted transaction, which redb discards.
//!
//! Invariants:
//! - A snapshot directory exists under its chain id only once completely unpacked and its
//!   layer blob verified; a crash leaves a `tmp-*` directory that GC removes.
//! - An image record is written only after its config, manifest and every layer snapshot
//!   are in place, in one transaction with its references.
//! - GC removes only what no image record and no holder (container) reaches.

use crate::digest::Digest;
use crate::error::{Context, Error, ErrorKind, Result};
use crate::reference::Reference;
use crate::store::Store;
use crate::sys;
use crate::unpack::{apply_layer, ApplyMode};
use redb::{Database, ReadableTable, TableDefinition};
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, BTreeSet};
use std::fs::{self, File};
use std::io::{self, Read, Write};
use std::os::fd::AsFd;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};

const REFS: TableDefinition<&str, &str> = TableDefinition::new("refs");
const IMAGES: TableDefinition<&str, &[u8]> = TableDefinition::new("images");
const HOLDERS: TableDefinition<&str, &[u8]> = TableDefinition::new("holders");
const META: TableDefinition<&str, &str> = TableDefinition::new("meta");
const SCHEMA_VERSION: &str = "1";

/// What [`ImageStore::add_layer`] made.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NewLayer {
    pub desc: LayerDesc,
    pub diff_id: Digest,
    pub chain: Digest,
}

/// A layer as the manifest describes it.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq)]
pub struct LayerDesc {
    pub digest: Digest,
    pub size: u64,
    pub media_type: String,
}

/// One image: its ID is the digest of its config (as Docker's).
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq)]
pub struct ImageRecord {
    pub id: Digest,
    pub config_media_type: String,
    pub manifest: Digest,
    pub manifest_media_type: String,
    /// The index it was selected from, if pulled through one.
    #[serde(default)]
    pub index: Option<Digest>,
    pub layers: Vec<LayerDesc>,
    pub diff_ids: Vec<Digest>,
    pub chain_ids: Vec<Digest>,
    /// Unpacked size of all layers, bytes.
    pub size: u64,
    /// `created` from the config (RFC 3339), if any.
    #[serde(default)]
    pub created: Option<String>,
    /// `name@sha256:...` digests the image is known by in registries.
    #[serde(default)]
    pub repo_digests: Vec<String>,
}

/// What `ingest_layer` did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Ingested {
    /// Blob and snapshot were already present.
    AlreadyExists,
    /// Downloaded (from `offset`, when an earlier attempt was resumed) and unpacked.
    Pulled { resumed_from: u64 },
    /// The blob was present; only unpacked.
    Unpacked,
}

#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct GcReport {
    pub blobs: Vec<Digest>,
    pub snapshots: Vec<Digest>,
    pub bytes: u64,
}

#[derive(Serialize, Deserialize)]
struct SnapshotInfo {
    diff_id: Digest,
    size: u64,
    parent: Option<Digest>,
}

pub struct ImageStore {
    root: PathBuf,
    content: Store,
    /// Set by [`ImageStore::open_held`]: the lock and the database, open for the store's life.
    held: Option<(fs::File, Database)>,
    /// Leases held by operations whose new layers no image reaches yet (builds, pulls, loads,
    /// commits), and whether a GC was asked for meanwhile (it runs when the last one ends).
    leases: std::sync::Mutex<(usize, bool)>,
}

/// A hold on the store's GC ([`ImageStore::lease`]): while any lease lives, a GC is put off
/// until the last one is dropped, so layers made but not yet registered are never collected.
pub struct Lease<'a> {
    store: &'a ImageStore,
}

impl Drop for Lease<'_> {
    fn drop(&mut self) {
        let run = {
            let mut l = self.store.leases.lock().unwrap_or_else(|e| e.into_inner());
            l.0 -= 1;
            let run = l.0 == 0 && l.1;
            if run {
                l.1 = false;
            }
            run
        };
        if run {
            let _ = self.store.gc();
        }
    }
}

/// ChainID(L0) = DiffID(L0); ChainID(Ln) = sha256(ChainID(Ln-1) + " " + DiffID(Ln)).
pub fn chain_ids(diff_ids: &[Digest]) -> Vec<Digest> {
    let mut out: Vec<Digest> = Vec::with_capacity(diff_ids.len());
    for d in diff_ids {
        let next = match out.last() {
            None => d.clone(),
            Some(prev) => Digest::of(format!("{prev} {d}").as_bytes()),
        };
        out.push(next);
    }
    out
}

/// The DiffIDs an image config lists (`rootfs.diff_ids`) and their chain ids, checked against
/// the number of layers the manifest has.
pub fn config_diff_ids(cfg: &serde_json::Value, layer_count: usize) -> Result<(Vec<Digest>, Vec<Digest>)> {
    let diff_ids: Vec<Digest> = cfg["rootfs"]["diff_ids"]
        .as_array()
        .ok_or_else(|| Error::new(ErrorKind::InvalidLayer, "image config has no rootfs.diff_ids"))?
        .iter()
        .map(|d| Digest::parse(d.as_str().unwrap_or("")))
        .collect::<Result<_>>()?;
    if diff_ids.len() != layer_count {
        return Err(Error::new(
            ErrorKind::InvalidLayer,
            format!("image config lists {} layers but the manifest {layer_count}", diff_ids.len()),
        ));
    }
    let chains = chain_ids(&diff_ids);
    Ok((diff_ids, chains))
}

fn db_err(what: &str, e: impl std::fmt::Display) -> Error {
    Error::new(ErrorKind::Io, format!("image database: {what}: {e}"))
}

fn not_found(what: impl std::fmt::Display) -> Error {
    Error::new(ErrorKind::NotFound, format!("No such image: {what}"))
}

/// Counts bytes read and hands a copy of them to the blob-writing thread (the download's one
/// pass: the compressed bytes are hashed and stored on one core while they are inflated, hashed
/// and unpacked on another).
struct Tee<'a, R> {
    inner: R,
    to_blob: std::sync::mpsc::SyncSender<Vec<u8>>,
    /// Set by the blob writer when storing failed: reading stops at once.
    write_failed: &'a AtomicBool,
    done: u64,
    progress: &'a mut (dyn FnMut(u64) + Send),
    /// Set when the source (the network) failed, as opposed to the content being bad.
    source_failed: &'a AtomicBool,
}

impl<R: Read> Read for Tee<'_, R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        if self.write_failed.load(Ordering::Relaxed) {
            return Err(io::Error::other("storing the blob failed"));
        }
        let n = self.inner.read(buf).inspect_err(|_| self.source_failed.store(true, Ordering::Relaxed))?;
        if n > 0 && self.to_blob.send(buf[..n].to_vec()).is_err() {
            return Err(io::Error::other("the blob writer stopped"));
        }
        self.done += n as u64;
        (self.progress)(self.done);
        Ok(n)
    }
}

/// Removes a temporary directory unless disarmed.
struct TmpDir(Option<PathBuf>);

impl TmpDir {
    fn join(&self, p: &str) -> PathBuf {
        self.0.as_ref().expect("armed").join(p)
    }
}

impl Drop for TmpDir {
    fn drop(&mut self) {
        if let Some(p) = self.0.take() {
            let _ = fs::remove_dir_all(p);
        }
    }
}

impl ImageStore {
    pub fn open(root: impl Into<PathBuf>) -> Result<ImageStore> {
        let root = root.into();
        for d in [root.clone(), root.join("snapshots")] {
            fs::create_dir_all(&d).ctx(format_args!("creating {}", d.display()))?;
        }
        let content = Store::new(root.join("content"))?;
        let s = ImageStore { root, content, held: None, leases: Default::default() };
        s.init_schema()?;
        Ok(s)
    }

    /// Open the store for one long-lived owner (the daemon): `meta.lock` is taken once and the
    /// database stays open, so an operation costs no open/close of the database (each of which
    /// syncs it to disk several times). Other processes get a clear error meanwhile.
    pub fn open_held(root: impl Into<PathBuf>) -> Result<ImageStore> {
        let root = root.into();
        let mut s = ImageStore::open(root.clone())?;
        let lock_path = s.root.join("meta.lock");
        let lock = Self::lock_file(&lock_path)?;
        if !sys::flock_exclusive(lock.as_fd(), true).ctx(format_args!("locking {}", lock_path.display()))? {
            return Err(Error::new(
                ErrorKind::Busy,
                format!("the image store {} is in use by another process (a berth daemon?)", root.display()),
            ));
        }
        let db = Database::create(s.root.join("meta.db")).map_err(|e| db_err("open", e))?;
        s.held = Some((lock, db));
        Ok(s)
    }

    fn lock_file(path: &Path) -> Result<fs::File> {
        fs::OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(path)
            .ctx(format_args!("opening {}", path.display()))
    }

    fn init_schema(&self) -> Result<()> {
        self.with_db(|db| {
            let w = db.begin_write().map_err(|e| db_err("begin", e))?;
            {
                let mut m = w.open_table(META).map_err(|e| db_err("open meta", e))?;
                let v = m.get("schema").map_err(|e| db_err("read schema", e))?.map(|v| v.value().to_string());
                match v.as_deref() {
                    None => {
                        m.insert("schema", SCHEMA_VERSION).map_err(|e| db_err("write schema", e))?;
                    }
                    Some(SCHEMA_VERSION) => {}
                    Some(other) => {
                        return Err(db_err("schema", format!("version {other} is newer than this berth understands")))
                    }
                }
                w.open_table(REFS).map_err(|e| db_err("open refs", e))?;
                w.open_table(IMAGES).map_err(|e| db_err("open images", e))?;
                w.open_table(HOLDERS).map_err(|e| db_err("open holders", e))?;
            }
            w.commit().map_err(|e| db_err("commit", e))
        })
    }

    pub fn root(&self) -> &Path {
        &self.root
    }

    pub fn content(&self) -> &Store {
        &self.content
    }

    /// Run `f` with the database open, holding `meta.lock` (processes take turns; a process
    /// that holds the store for good, the daemon, makes others give up after a few seconds).
    fn with_db<T>(&self, f: impl FnOnce(&Database) -> Result<T>) -> Result<T> {
        if let Some((_, db)) = &self.held {
            return f(db);
        }
        let lock_path = self.root.join("meta.lock");
        let lock = Self::lock_file(&lock_path)?;
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
        while !sys::flock_exclusive(lock.as_fd(), true).ctx(format_args!("locking {}", lock_path.display()))? {
            if std::time::Instant::now() > deadline {
                return Err(Error::new(
                    ErrorKind::Busy,
                    format!(
                        "the image store {} is in use by another process (a running berth daemon? leave out --data-root to go through it)",
                        self.root.display()
                    ),
                ));
            }
            std::thread::sleep(std::time::Duration::from_millis(10));
        }
        let db = Database::create(self.root.join("meta.db")).map_err(|e| db_err("open", e))?;
        let r = f(&db);
        drop(db);
        drop(lock);
        r
    }

    fn snapshot_dir(&self, chain: &Digest) -> PathBuf {
        self.root.join("snapshots").join(chain.hex())
    }

    /// The unpacked layer directory (overlay format) of a snapshot.
    pub fn snapshot_fs(&self, chain: &Digest) -> PathBuf {
        self.snapshot_dir(chain).join("fs")
    }

    pub fn has_snapshot(&self, chain: &Digest) -> bool {
        self.snapshot_dir(chain).join("info.json").exists()
    }

    /// Bring one layer in: in a single streaming pass the compressed bytes from `fetch(offset)`
    /// go into the blob store (digest and size verified at commit), are decompressed, hashed for
    /// the DiffID and unpacked into a new snapshot. An interrupted earlier download is resumed:
    /// its bytes are replayed from disk and `fetch` is asked for the rest.
    #[allow(clippy::too_many_arguments)]
    pub fn ingest_layer(
        &self,
        layer: &LayerDesc,
        diff_id: &Digest,
        chain_id: &Digest,
        parent: Option<&Digest>,
        fetch: &mut dyn FnMut(u64) -> Result<Box<dyn Read + Send>>,
        progress: &mut (dyn FnMut(u64) + Send),
    ) -> Result<Ingested> {
        if self.has_snapshot(chain_id) && self.content.has(&layer.digest)? {
            return Ok(Ingested::AlreadyExists);
        }
        if self.content.has(&layer.digest)? {
            let f = self.content.open(&layer.digest)?;
            self.unpack_into_snapshot(f, layer, diff_id, chain_id, parent)?;
            return Ok(Ingested::Unpacked);
        }
        let mut writer = self.content.writer(&format!("layer-{}", layer.digest))?;
        // Another process may have finished this layer while we waited for the ingest lock.
        if self.content.has(&layer.digest)? {
            drop(writer);
            if !self.has_snapshot(chain_id) {
                let f = self.content.open(&layer.digest)?;
                self.unpack_into_snapshot(f, layer, diff_id, chain_id, parent)?;
            }
            return Ok(Ingested::AlreadyExists);
        }
        if writer.offset() >= layer.size {
            writer.reset()?;
        }
        let offset = writer.offset();
        let partial = writer.partial()?.take(offset);
        let net = fetch(offset)?;
        progress(offset);
        let tmp = self.new_tmp()?;
        let source_failed = AtomicBool::new(false);
        let write_failed = AtomicBool::new(false);
        let (result, writer, stored) = std::thread::scope(|s| {
            let (to_blob, chunks) = std::sync::mpsc::sync_channel::<Vec<u8>>(64);
            let write_failed = &write_failed;
            let blob_writer = s.spawn(move || {
                let mut stored = Ok(());
                // Keep draining after an error so the reader never blocks on a full channel.
                for chunk in chunks {
                    if stored.is_ok() {
                        stored = writer.write_all(&chunk);
                        if stored.is_err() {
                            write_failed.store(true, Ordering::Relaxed);
                        }
                    }
                }
                (writer, stored)
            });
            let result = (|| {
                let tee =
                    Tee { inner: net, to_blob, write_failed, done: offset, progress, source_failed: &source_failed };
                let mut input = partial.chain(tee);
                let stats = {
                    let mut decoded = crate::compression::decompress(&mut input)
                        .map_err(|e| Error::new(e.kind(), format!("layer {}: {e}", layer.digest)))?;
                    apply_layer(&tmp.join("fs"), &mut decoded, ApplyMode::Overlay)
                        .map_err(|e| Error::new(e.kind(), format!("layer {}: {e}", layer.digest)))?
                };
                // Bytes after the compressed stream's end still belong to the blob.
                io::copy(&mut input, &mut io::sink()).ctx(format_args!("downloading layer {}", layer.digest))?;
                Ok(stats)
            })();
            // The tee (and with it the channel's sender) is gone: the writer finishes.
            let (writer, stored) = match blob_writer.join() {
                Ok(r) => r,
                Err(p) => std::panic::resume_unwind(p),
            };
            (result, writer, stored)
        });
        if let Err(e) = stored {
            let _ = writer.abort();
            return Err(Error::io(format!("storing layer {}", layer.digest), e));
        }
        let stats = match result {
            Ok(s) => s,
            Err(e) => {
                // Bad content (not a broken connection) must not be resumed from: drop it.
                if !source_failed.load(Ordering::Relaxed) {
                    let _ = writer.abort();
                }
                return Err(e);
            }
        };
        writer.commit(Some(layer.size), Some(&layer.digest))?;
        self.finish_snapshot(tmp, &stats.diff_id, stats.size, layer, diff_id, chain_id, parent)?;
        Ok(Ingested::Pulled { resumed_from: offset })
    }

    fn new_tmp(&self) -> Result<TmpDir> {
        let nanos =
            std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_nanos()).unwrap_or(0);
        let p = self.root.join("snapshots").join(format!("tmp-{}-{nanos}", std::process::id()));
        fs::create_dir_all(p.join("fs")).ctx(format_args!("creating {}", p.display()))?;
        Ok(TmpDir(Some(p)))
    }

    fn unpack_into_snapshot(
        &self,
        blob: File,
        layer: &LayerDesc,
        diff_id: &Digest,
        chain_id: &Digest,
        parent: Option<&Digest>,
    ) -> Result<()> {
        let tmp = self.new_tmp()?;
        let decoded = crate::compression::decompress(io::BufReader::new(blob))?;
        let stats = apply_layer(&tmp.join("fs"), decoded, ApplyMode::Overlay)
            .map_err(|e| Error::new(e.kind(), format!("layer {}: {e}", layer.digest)))?;
        self.finish_snapshot(tmp, &stats.diff_id, stats.size, layer, diff_id, chain_id, parent)
    }

    #[allow(clippy::too_many_arguments)]
    fn finish_snapshot(
        &self,
        mut tmp: TmpDir,
        got: &Digest,
        size: u64,
        layer: &LayerDesc,
        diff_id: &Digest,
        chain_id: &Digest,
        parent: Option<&Digest>,
    ) -> Result<()> {
        if got != diff_id {
            return Err(Error::new(
                ErrorKind::DigestMismatch,
                format!("layer {}: uncompressed content is {got}, but the image config says {diff_id}", layer.digest),
            ));
        }
        let dir = tmp.0.clone().expect("armed");
        let info = SnapshotInfo { diff_id: diff_id.clone(), size, parent: parent.cloned() };
        fs::write(dir.join("info.json"), serde_json::to_vec(&info).unwrap_or_default())
            .ctx(format_args!("writing {}", dir.display()))?;
        let dest = self.snapshot_dir(chain_id);
        if dest.join("info.json").exists() {
            return Ok(()); // another process finished the same layer first; tmp is dropped
        }
        let _ = fs::remove_dir_all(&dest); // a partial leftover without info.json
        match fs::rename(&dir, &dest) {
            Ok(()) => {
                tmp.0 = None;
                Ok(())
            }
            Err(_) if dest.join("info.json").exists() => Ok(()),
            Err(e) => Err(Error::io(format!("moving snapshot into {}", dest.display()), e)),
        }
    }

    /// Record an image whose layers are all unpacked: stores its config and manifest blobs,
    /// points `names` at it and, when it came from repository `repo`, records its repo digest
    /// (`name@sha256:...` of the index or manifest), in one transaction.
    #[allow(clippy::too_many_arguments)]
    pub fn register(
        &self,
        names: &[Reference],
        repo: Option<&Reference>,
        manifest: &[u8],
        manifest_media_type: &str,
        config: &[u8],
        config_media_type: &str,
        layers: &[LayerDesc],
        index: Option<(&[u8], &Digest)>,
    ) -> Result<ImageRecord> {
        let cfg: serde_json::Value = serde_json::from_slice(config)
            .map_err(|e| Error::new(ErrorKind::InvalidLayer, format!("image config is not valid JSON: {e}")))?;
        let (diff_ids, chains) = config_diff_ids(&cfg, layers.len())?;
        let mut size = 0;
        for c in &chains {
            let info: SnapshotInfo = fs::read(self.snapshot_dir(c).join("info.json"))
                .ok()
                .and_then(|d| serde_json::from_slice(&d).ok())
                .ok_or_else(|| Error::new(ErrorKind::NotFound, format!("layer snapshot {c} is missing")))?;
            size += info.size;
        }
        let id = self.content.write_blob(config, None)?;
        let mdigest = self.content.write_blob(manifest, None)?;
        let index_digest = match index {
            Some((bytes, d)) => Some(self.content.write_blob(bytes, Some(d))?),
            None => None,
        };
        let mut rec = ImageRecord {
            id: id.clone(),
            config_media_type: config_media_type.to_string(),
            manifest: mdigest.clone(),
            manifest_media_type: manifest_media_type.to_string(),
            index: index_digest.clone(),
            layers: layers.to_vec(),
            diff_ids,
            chain_ids: chains,
            size,
            created: cfg["created"].as_str().map(str::to_string),
            repo_digests: Vec::new(),
        };
        self.with_db(|db| {
            let w = db.begin_write().map_err(|e| db_err("begin", e))?;
            {
                let mut images = w.open_table(IMAGES).map_err(|e| db_err("open images", e))?;
                if let Some(old) = images.get(id.as_str()).map_err(|e| db_err("read image", e))? {
                    if let Ok(old) = serde_json::from_slice::<ImageRecord>(old.value()) {
                        rec.repo_digests = old.repo_digests;
                    }
                }
                if let Some(repo) = repo {
                    let rd = format!("{}@{}", repo.name(), index_digest.as_ref().unwrap_or(&mdigest));
                    if !rec.repo_digests.contains(&rd) {
                        rec.repo_digests.push(rd);
                    }
                }
                images
                    .insert(id.as_str(), serde_json::to_vec(&rec).unwrap_or_default().as_slice())
                    .map_err(|e| db_err("write image", e))?;
                let mut refs = w.open_table(REFS).map_err(|e| db_err("open refs", e))?;
                for n in names {
                    refs.insert(n.to_string().as_str(), id.as_str()).map_err(|e| db_err("write reference", e))?;
                }
            }
            w.commit().map_err(|e| db_err("commit", e))
        })?;
        Ok(rec)
    }

    /// All images with their references (sorted).
    pub fn list(&self) -> Result<Vec<(ImageRecord, Vec<String>)>> {
        self.with_db(|db| {
            let r = db.begin_read().map_err(|e| db_err("begin", e))?;
            let images = r.open_table(IMAGES).map_err(|e| db_err("open images", e))?;
            let refs = r.open_table(REFS).map_err(|e| db_err("open refs", e))?;
            let mut by_id: BTreeMap<String, Vec<String>> = BTreeMap::new();
            for item in refs.iter().map_err(|e| db_err("list references", e))? {
                let (k, v) = item.map_err(|e| db_err("list references", e))?;
                by_id.entry(v.value().to_string()).or_default().push(k.value().to_string());
            }
            let mut out = Vec::new();
            for item in images.iter().map_err(|e| db_err("list images", e))? {
                let (k, v) = item.map_err(|e| db_err("list images", e))?;
                let rec: ImageRecord =
                    serde_json::from_slice(v.value()).map_err(|e| db_err(&format!("image {}", k.value()), e))?;
                let names = by_id.remove(k.value()).unwrap_or_default();
                out.push((rec, names));
            }
            Ok(out)
        })
    }

    /// Find an image by reference (`busybox`, `host:5000/x:tag`, `name@sha256:...`), by full
    /// ID (`sha256:...`) or by a unique ID prefix.
    pub fn resolve(&self, s: &str) -> Result<ImageRecord> {
        let all = self.list()?;
        if let Ok(r) = Reference::parse(s) {
            let full = r.to_string();
            if let Some((rec, _)) = all.iter().find(|(_, names)| names.contains(&full)) {
                return Ok(rec.clone());
            }
            if let Some(d) = r.digest() {
                let want = format!("{}@{d}", r.name());
                if let Some((rec, _)) = all.iter().find(|(rec, _)| rec.repo_digests.contains(&want)) {
                    return Ok(rec.clone());
                }
            }
        }
        let hex = s.strip_prefix("sha256:").unwrap_or(s);
        if !hex.is_empty() && hex.len() <= 64 && hex.bytes().all(|b| b.is_ascii_hexdigit()) {
            let hits: Vec<&ImageRecord> = all.iter().map(|(r, _)| r).filter(|r| r.id.hex().starts_with(hex)).collect();
            match hits.len() {
                1 => return Ok(hits[0].clone()),
                0 => {}
                _ => {
                    return Err(Error::new(
                        ErrorKind::InvalidReference,
                        format!("image ID prefix {s:?} is ambiguous ({} images)", hits.len()),
                    ))
                }
            }
        }
        Err(not_found(s))
    }

    /// Point `target` at the image `source` names.
    pub fn tag(&self, source: &str, target: &Reference) -> Result<ImageRecord> {
        let rec = self.resolve(source)?;
        if target.digest().is_some() {
            return Err(Error::new(
                ErrorKind::InvalidReference,
                format!("refusing to create a tag with a digest: {target}"),
            ));
        }
        self.with_db(|db| {
            let w = db.begin_write().map_err(|e| db_err("begin", e))?;
            {
                let mut refs = w.open_table(REFS).map_err(|e| db_err("open refs", e))?;
                refs.insert(target.to_string().as_str(), rec.id.as_str()).map_err(|e| db_err("write reference", e))?;
            }
            w.commit().map_err(|e| db_err("commit", e))
        })?;
        Ok(rec)
    }

    /// `rmi`: untag a reference; when no reference is left (or an ID was given), delete the
    /// image record, then collect what nothing uses. Returns the lines Docker prints
    /// (`Untagged: ...`, `Deleted: ...`).
    pub fn remove(&self, s: &str, force: bool) -> Result<Vec<String>> {
        let rec = self.resolve(s)?;
        let by_ref = Reference::parse(s).ok().map(|r| r.to_string());
        let mut out = Vec::new();
        let holders = self.holders_of(&rec.id)?;
        self.with_db(|db| {
            let w = db.begin_write().map_err(|e| db_err("begin", e))?;
            {
                let mut refs = w.open_table(REFS).map_err(|e| db_err("open refs", e))?;
                let mut names = Vec::new();
                for item in refs.iter().map_err(|e| db_err("list references", e))? {
                    let (k, v) = item.map_err(|e| db_err("list references", e))?;
                    if v.value() == rec.id.as_str() {
                        names.push(k.value().to_string());
                    }
                }
                let untag: Vec<String> = match &by_ref {
                    Some(r) if names.contains(r) => vec![r.clone()],
                    _ if names.len() > 1 && !force => {
                        return Err(Error::new(
                            ErrorKind::InvalidReference,
                            format!(
                                "conflict: unable to delete {} (must be forced) - image is referenced in multiple repositories",
                                &rec.id.hex()[..12]
                            ),
                        ))
                    }
                    _ => names.clone(),
                };
                let remaining = names.len() - untag.len();
                if remaining == 0 && !holders.is_empty() && !force {
                    return Err(Error::new(
                        ErrorKind::Busy,
                        format!(
                            "conflict: unable to remove {s}: image {} is used by container {}",
                            &rec.id.hex()[..12],
                            holders[0]
                        ),
                    ));
                }
                for n in &untag {
                    refs.remove(n.as_str()).map_err(|e| db_err("remove reference", e))?;
                    out.push(format!("Untagged: {}", Reference::parse(n).map(|r| r.familiar()).unwrap_or(n.clone())));
                }
                if remaining == 0 && holders.is_empty() {
                    let mut images = w.open_table(IMAGES).map_err(|e| db_err("open images", e))?;
                    images.remove(rec.id.as_str()).map_err(|e| db_err("remove image", e))?;
                    out.push(format!("Deleted: {}", rec.id));
                }
            }
            w.commit().map_err(|e| db_err("commit", e))
        })?;
        if out.iter().any(|l| l.starts_with("Deleted:")) {
            self.gc()?;
        }
        Ok(out)
    }

    /// Record that `holder` (a container) uses `image`: GC keeps its layers.
    pub fn hold(&self, holder: &str, image: &Digest) -> Result<()> {
        self.with_db(|db| {
            let w = db.begin_write().map_err(|e| db_err("begin", e))?;
            {
                let mut t = w.open_table(HOLDERS).map_err(|e| db_err("open holders", e))?;
                t.insert(holder, image.as_str().as_bytes()).map_err(|e| db_err("write holder", e))?;
            }
            w.commit().map_err(|e| db_err("commit", e))
        })
    }

    pub fn release(&self, holder: &str) -> Result<()> {
        self.with_db(|db| {
            let w = db.begin_write().map_err(|e| db_err("begin", e))?;
            {
                let mut t = w.open_table(HOLDERS).map_err(|e| db_err("open holders", e))?;
                t.remove(holder).map_err(|e| db_err("remove holder", e))?;
            }
            w.commit().map_err(|e| db_err("commit", e))
        })
    }

    /// Every holder's name (the engine releases those of containers that no longer exist).
    pub fn holder_names(&self) -> Result<Vec<String>> {
        Ok(self.holders()?.into_iter().map(|(h, _)| h).collect())
    }

    fn holders(&self) -> Result<Vec<(String, String)>> {
        self.with_db(|db| {
            let r = db.begin_read().map_err(|e| db_err("begin", e))?;
            let t = r.open_table(HOLDERS).map_err(|e| db_err("open holders", e))?;
            let mut out = Vec::new();
            for item in t.iter().map_err(|e| db_err("list holders", e))? {
                let (k, v) = item.map_err(|e| db_err("list holders", e))?;
                out.push((k.value().to_string(), String::from_utf8_lossy(v.value()).into_owned()));
            }
            Ok(out)
        })
    }

    /// Whether a container holds the image (prune leaves such images alone).
    pub fn in_use(&self, id: &Digest) -> Result<bool> {
        Ok(!self.holders_of(id)?.is_empty())
    }

    fn holders_of(&self, id: &Digest) -> Result<Vec<String>> {
        Ok(self.holders()?.into_iter().filter(|(_, i)| i == id.as_str()).map(|(h, _)| h).collect())
    }

    /// The unpacked size of a layer snapshot, if it exists.
    pub fn snapshot_size(&self, chain: &Digest) -> Option<u64> {
        let d = fs::read(self.snapshot_dir(chain).join("info.json")).ok()?;
        serde_json::from_slice::<SnapshotInfo>(&d).ok().map(|i| i.size)
    }

    /// The image's config, parsed.
    pub fn config(&self, rec: &ImageRecord) -> Result<serde_json::Value> {
        let data = self.content.read(&rec.id, 64 << 20)?;
        serde_json::from_slice(&data)
            .map_err(|e| Error::new(ErrorKind::InvalidLayer, format!("image config {} is not valid JSON: {e}", rec.id)))
    }

    /// The image as Docker's `GET /images/{name}/json` shows it (`names`: its references).
    pub fn docker_inspect(&self, rec: &ImageRecord, names: &[String]) -> Result<serde_json::Value> {
        let cfg = self.config(rec)?;
        let (tags, digests) = docker_names(rec, names);
        let mut v = serde_json::json!({
            "Id": rec.id.to_string(),
            "RepoTags": tags,
            "RepoDigests": digests,
            "Parent": "",
            "Comment": cfg.get("comment").cloned().unwrap_or(serde_json::json!("")),
            "Created": cfg.get("created").cloned().unwrap_or(serde_json::json!("")),
            "DockerVersion": cfg.get("docker_version").cloned().unwrap_or(serde_json::json!("")),
            "Author": cfg.get("author").cloned().unwrap_or(serde_json::json!("")),
            "Config": cfg.get("config").cloned().unwrap_or(serde_json::Value::Null),
            "Architecture": cfg.get("architecture").cloned().unwrap_or(serde_json::json!("")),
            "Os": cfg.get("os").cloned().unwrap_or(serde_json::json!("")),
            "Size": rec.size,
            "RootFS": {"Type": "layers", "Layers": rec.diff_ids.iter().map(|d| d.to_string()).collect::<Vec<_>>()},
            "Metadata": {"LastTagTime": "0001-01-01T00:00:00Z"},
        });
        if let Some(var) = cfg.get("variant") {
            v["Variant"] = var.clone();
        }
        Ok(v)
    }

    /// The snapshot directories of an image's root filesystem, bottom layer first.
    pub fn rootfs_layers(&self, rec: &ImageRecord) -> Vec<PathBuf> {
        rec.chain_ids.iter().map(|c| self.snapshot_fs(c)).collect()
    }

    /// A new layer on top of snapshot `parent` (None: the bottom layer) from `upper`, a tree in
    /// overlay format (a container's upper directory, or what COPY wrote): its tar stream
    /// ([`crate::diff::write_layer`], mtimes clamped to `clamp_mtime`) goes gzip-compressed
    /// into the blob store, and the layer's snapshot is made: with `take`, `upper` itself is
    /// moved there when it is on the store's filesystem; else it is unpacked from the blob (and
    /// `upper` is left alone). Equal trees give equal digests.
    pub fn add_layer(
        &self,
        upper: &Path,
        parent: Option<&Digest>,
        clamp_mtime: Option<u64>,
        take: bool,
    ) -> Result<NewLayer> {
        self.add_layer_inner(upper, parent, clamp_mtime, take, &|_, _| false)
    }

    /// [`ImageStore::add_layer`] without the entries `skip` names (see
    /// [`crate::diff::write_layer_filtered`]); `upper` is never taken (commit).
    pub fn add_layer_filtered(
        &self,
        upper: &Path,
        parent: Option<&Digest>,
        clamp_mtime: Option<u64>,
        skip: crate::diff::Skip<'_>,
    ) -> Result<NewLayer> {
        self.add_layer_inner(upper, parent, clamp_mtime, false, skip)
    }

    fn add_layer_inner(
        &self,
        upper: &Path,
        parent: Option<&Digest>,
        clamp_mtime: Option<u64>,
        take: bool,
        skip: crate::diff::Skip<'_>,
    ) -> Result<NewLayer> {
        static SEQ: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
        let seq = SEQ.fetch_add(1, Ordering::Relaxed);
        let mut w = self.content.writer(&format!("layer-{}-{seq}", std::process::id()))?;
        w.reset()?;
        let written = (|| {
            // No name, no mtime in the gzip header: the same tar gives the same blob.
            let mut gz = flate2::GzBuilder::new().write(&mut w, flate2::Compression::fast());
            let stats = crate::diff::write_layer_filtered(upper, &mut gz, clamp_mtime, skip)?;
            gz.finish().ctx("compressing the layer")?;
            Ok::<_, Error>(stats)
        })();
        let stats = match written {
            Ok(s) => s,
            Err(e) => {
                let _ = w.abort();
                return Err(e);
            }
        };
        let size = w.offset();
        let digest = w.commit(Some(size), None)?;
        let desc = LayerDesc { digest, size, media_type: "application/vnd.oci.image.layer.v1.tar+gzip".into() };
        let chain = match parent {
            None => stats.diff_id.clone(),
            Some(p) => Digest::of(format!("{p} {}", stats.diff_id).as_bytes()),
        };
        if !self.has_snapshot(&chain) {
            let tmp = self.new_tmp()?;
            let moved = take && fs::remove_dir(tmp.join("fs")).is_ok() && fs::rename(upper, tmp.join("fs")).is_ok();
            if moved {
                // The uncompressed tar's length, as an unpacked snapshot records it (`save`
                // writes the layer with it as its size).
                self.finish_snapshot(tmp, &stats.diff_id, stats.size, &desc, &stats.diff_id, &chain, parent)?;
            } else {
                drop(tmp);
                let f = self.content.open(&desc.digest)?;
                self.unpack_into_snapshot(f, &desc, &stats.diff_id, &chain, parent)?;
            }
        }
        Ok(NewLayer { desc, diff_id: stats.diff_id, chain })
    }

    /// Record an image made here (build, commit) from its config (whose `rootfs.diff_ids` name
    /// `layers`' snapshots, all present) under `names`: an OCI manifest is written for it.
    pub fn register_built(&self, names: &[Reference], config: &[u8], layers: &[LayerDesc]) -> Result<ImageRecord> {
        // An OCI manifest names its layers with OCI media types (a pulled Docker-format base
        // has the same bytes under Docker's names).
        let layers: Vec<LayerDesc> = layers
            .iter()
            .map(|l| {
                let media_type = match l.media_type.as_str() {
                    "application/vnd.docker.image.rootfs.diff.tar.gzip" => {
                        "application/vnd.oci.image.layer.v1.tar+gzip"
                    }
                    "application/vnd.docker.image.rootfs.diff.tar" => "application/vnd.oci.image.layer.v1.tar",
                    other => other,
                };
                LayerDesc { media_type: media_type.to_string(), ..l.clone() }
            })
            .collect();
        let layers = layers.as_slice();
        let manifest = serde_json::to_vec(&serde_json::json!({
            "schemaVersion": 2,
            "mediaType": "application/vnd.oci.image.manifest.v1+json",
            "config": {"mediaType": "application/vnd.oci.image.config.v1+json", "size": config.len(), "digest": Digest::of(config).to_string()},
            "layers": layers.iter().map(|l| serde_json::json!({"mediaType": l.media_type, "size": l.size, "digest": l.digest.to_string()})).collect::<Vec<_>>(),
        }))
        .unwrap_or_default();
        self.register(
            names,
            None,
            &manifest,
            "application/vnd.oci.image.manifest.v1+json",
            config,
            "application/vnd.oci.image.config.v1+json",
            layers,
            None,
        )
    }

    /// Mount the image's layers at `target` with overlayfs, writable through `rw`
    /// (`rw/upper`, `rw/work` are created). Undo with [`unmount`].
    pub fn mount(&self, rec: &ImageRecord, rw: &Path, target: &Path) -> Result<()> {
        self.mount_chain(&rec.chain_ids, rw, target)
    }

    /// [`ImageStore::mount`] for a stack of snapshots by chain id, bottom first (none: an
    /// empty root, as `FROM scratch`).
    pub fn mount_chain(&self, chain_ids: &[Digest], rw: &Path, target: &Path) -> Result<()> {
        let upper = rw.join("upper");
        let work = rw.join("work");
        for d in [&upper, &work, &target.to_path_buf()] {
            fs::create_dir_all(d).ctx(format_args!("creating {}", d.display()))?;
        }
        // Lower dirs are named by short links (`snapshots/l/<20 hex>` -> `../<chain>/fs`) and
        // given relative to `snapshots/`: 23 bytes a layer instead of a full path, so an image of
        // well over a hundred layers fits overlayfs's one-page option string.
        let snaps = self.root.join("snapshots");
        let mut lower = Vec::new();
        for chain in chain_ids.iter().rev() {
            lower.push(self.short_link(chain)?);
        }
        if lower.is_empty() {
            let empty = snaps.join("l/empty");
            fs::create_dir_all(&empty).ctx(format_args!("creating {}", empty.display()))?;
            lower.push("l/empty".to_string());
        }
        let (u, w) = (upper.display().to_string(), work.display().to_string());
        if [&u, &w].iter().any(|p| p.contains(':') || p.contains(',')) {
            return Err(Error::new(ErrorKind::Io, "container paths must not contain ':' or ','"));
        }
        let opts = format!("lowerdir={},upperdir={u},workdir={w}", lower.join(":"));
        if opts.len() >= 4000 {
            return Err(Error::new(
                ErrorKind::Io,
                format!("image has too many layers ({}) for one overlay mount option string", lower.len()),
            ));
        }
        sys::mount_overlay(&snaps, target, &opts).ctx(format_args!("mounting overlay at {}", target.display()))
    }

    /// `l/<first 20 hex digits of the chain id>`, a symlink to the snapshot's `fs`, made if missing.
    fn short_link(&self, chain: &Digest) -> Result<String> {
        let rel = format!("l/{}", &chain.hex()[..20]);
        let link = self.root.join("snapshots").join(&rel);
        let want = PathBuf::from(format!("../{}/fs", chain.hex()));
        match fs::read_link(&link) {
            Ok(t) if t == want => return Ok(rel),
            Ok(t) => {
                return Err(Error::new(
                    ErrorKind::Io,
                    format!("snapshot link {} points to {}, not {}", link.display(), t.display(), want.display()),
                ))
            }
            Err(e) if e.kind() == io::ErrorKind::NotFound => {}
            Err(e) => return Err(e).ctx(format_args!("reading {}", link.display())),
        }
        if !self.has_snapshot(chain) {
            return Err(not_found(format_args!("layer snapshot {chain}")));
        }
        let dir = self.root.join("snapshots/l");
        fs::create_dir_all(&dir).ctx(format_args!("creating {}", dir.display()))?;
        let tmp = dir.join(format!(".tmp-{}-{}", std::process::id(), &chain.hex()[..20]));
        let _ = fs::remove_file(&tmp);
        std::os::unix::fs::symlink(&want, &tmp).ctx(format_args!("creating {}", tmp.display()))?;
        fs::rename(&tmp, &link).ctx(format_args!("creating {}", link.display()))?;
        Ok(rel)
    }

    /// Hold off GC while an operation makes layers no image reaches yet (see [`Lease`]).
    pub fn lease(&self) -> Lease<'_> {
        self.leases.lock().unwrap_or_else(|e| e.into_inner()).0 += 1;
        Lease { store: self }
    }

    /// Whether a lease is held; if so, the GC asked for is noted to run when it ends.
    fn gc_put_off(&self) -> bool {
        let mut l = self.leases.lock().unwrap_or_else(|e| e.into_inner());
        if l.0 > 0 {
            l.1 = true;
        }
        l.0 > 0
    }

    /// Every blob and snapshot an image record or a build-cache record (`build-cache/*.json`,
    /// removed by `builder prune`) reaches is kept; the rest, stale unpack directories and
    /// ingests untouched for a day are removed. While a [`Lease`] is held nothing is removed
    /// (an empty report): the collection runs when the last lease ends.
    pub fn gc(&self) -> Result<GcReport> {
        let (snaps, blobs) = self.build_cache_refs();
        self.gc_keeping(&snaps, &blobs)
    }

    /// The snapshots (chain ids) and blobs the build-cache records refer to.
    pub fn build_cache_refs(&self) -> (BTreeSet<Digest>, BTreeSet<Digest>) {
        let (mut snaps, mut blobs) = (BTreeSet::new(), BTreeSet::new());
        for e in fs::read_dir(self.root.join("build-cache")).into_iter().flatten().flatten() {
            if !e.file_name().to_string_lossy().ends_with(".json") {
                continue;
            }
            let Ok(v) = fs::read(e.path())
                .map_err(|_| ())
                .and_then(|d| serde_json::from_slice::<serde_json::Value>(&d).map_err(|_| ()))
            else {
                continue;
            };
            for c in v["chains"].as_array().into_iter().flatten().filter_map(|c| c.as_str()) {
                snaps.extend(Digest::parse(c).ok());
            }
            for l in v["layers"].as_array().into_iter().flatten().filter_map(|l| l["digest"].as_str()) {
                blobs.extend(Digest::parse(l).ok());
            }
        }
        (snaps, blobs)
    }

    /// The collection behind [`ImageStore::gc`], also keeping the snapshots (by chain id)
    /// `snaps` and the blobs `blobs` (the build-cache records' layers).
    fn gc_keeping(&self, snaps: &BTreeSet<Digest>, blobs: &BTreeSet<Digest>) -> Result<GcReport> {
        if self.gc_put_off() {
            return Ok(GcReport::default());
        }
        let images = self.list()?;
        let mut keep_blobs: BTreeSet<Digest> = blobs.clone();
        let mut keep_snaps: BTreeSet<String> = snaps.iter().map(|c| c.hex().to_string()).collect();
        for (rec, _) in &images {
            keep_blobs.insert(rec.id.clone());
            keep_blobs.insert(rec.manifest.clone());
            if let Some(i) = &rec.index {
                keep_blobs.insert(i.clone());
            }
            keep_blobs.extend(rec.layers.iter().map(|l| l.digest.clone()));
            keep_snaps.extend(rec.chain_ids.iter().map(|c| c.hex().to_string()));
        }
        let mut report = GcReport::default();
        for d in self.content.list()? {
            if !keep_blobs.contains(&d) {
                report.bytes += self.content.size(&d).unwrap_or(0);
                if self.content.delete(&d)? {
                    report.blobs.push(d);
                }
            }
        }
        let snaps = self.root.join("snapshots");
        for e in fs::read_dir(&snaps).ctx(format_args!("listing {}", snaps.display()))? {
            let e = e.ctx(format_args!("listing {}", snaps.display()))?;
            let name = e.file_name().to_string_lossy().into_owned();
            if name == "l" {
                continue;
            }
            let stale_tmp = name.starts_with("tmp-") && !tmp_owner_alive(&name);
            if stale_tmp || (!name.starts_with("tmp-") && !keep_snaps.contains(&name)) {
                report.bytes += dir_size(&e.path());
                fs::remove_dir_all(e.path()).ctx(format_args!("removing {}", e.path().display()))?;
                if let Ok(d) = Digest::from_hex(&name) {
                    report.snapshots.push(d);
                }
            }
        }
        // Short links whose snapshot is gone.
        if let Ok(rd) = fs::read_dir(snaps.join("l")) {
            for e in rd.flatten() {
                if fs::metadata(e.path()).is_err() {
                    let _ = fs::remove_file(e.path());
                }
            }
        }
        let day = std::time::Duration::from_secs(24 * 3600);
        for i in self.content.ingests()? {
            if i.updated.elapsed().is_ok_and(|age| age > day) {
                if let Ok(w) = self.content.try_writer(&i.reference) {
                    w.abort()?;
                }
            }
        }
        Ok(report)
    }
}

/// `RepoTags` and `RepoDigests` as Docker shows them (familiar names: `busybox:1`,
/// `busybox@sha256:...`) from an image's references.
pub fn docker_names(rec: &ImageRecord, names: &[String]) -> (Vec<String>, Vec<String>) {
    let tags = names
        .iter()
        .filter_map(|n| Reference::parse(n).ok())
        .filter(|r| r.tag().is_some())
        .map(|r| r.familiar())
        .collect();
    let digests = rec
        .repo_digests
        .iter()
        .map(|d| match d.split_once('@') {
            Some((n, dg)) => {
                format!("{}@{dg}", Reference::parse(n).map(|r| r.familiar_name()).unwrap_or(n.to_string()))
            }
            None => d.clone(),
        })
        .collect();
    (tags, digests)
}

/// `tmp-<pid>-<nanos>`: the unpack is stale when its process is gone.
fn tmp_owner_alive(name: &str) -> bool {
    let pid: i32 = name.split('-').nth(1).and_then(|p| p.parse().ok()).unwrap_or(0);
    pid > 0 && Path::new(&format!("/proc/{pid}")).exists()
}

fn dir_size(p: &Path) -> u64 {
    let mut n = 0;
    let mut stack = vec![p.to_path_buf()];
    while let Some(d) = stack.pop() {
        let Ok(rd) = fs::read_dir(&d) else { continue };
        for e in rd.flatten() {
            let Ok(m) = e.metadata() else { continue };
            if m.is_dir() {
                stack.push(e.path());
            } else {
                n += m.len();
            }
        }
    }
    n
}

/// Unmount a root filesystem mounted by [`ImageStore::mount`].
pub fn unmount(target: &Path) -> Result<()> {
    sys::umount(target).ctx(format_args!("unmounting {}", target.display()))
}
