//! The build cache: `POST /build/prune` and the `BuildCache` part of `GET /system/df`.
//!
//! The builder ([`berth_build`]) keeps two kinds of cache under the image store's root:
//!
//! - *records* (`regular`): `build-cache/<key>.json`, the state after a step that made a
//!   layer (layer descriptors, diff ids, chain ids, config). The layers themselves are
//!   snapshots and blobs of the image store. A record's mtime is its last use (the builder
//!   touches it on a cache hit); its size is that of its own layer (the step's, the last
//!   one) unless a tagged or untagged image has that layer too (then it is `Shared`, size
//!   counted with the images). Records with the same layer count it once.
//! - *cache mounts* (`exec.cachemount`): `build-cache-mounts/<32 hex>` directories of
//!   `RUN --mount=type=cache`, each with a `<hex>.lock` that steps using it hold (shared or
//!   exclusive `flock`); the lock's mtime is the last use. A mount whose lock cannot be taken
//!   exclusively at once is in use: it is never removed.
//!
//! # Prune
//! What is removed:
//!
//! - default (`all=false`): records that are no use any more, "dangling": one of their
//!   layers is gone (an `rmi` collected it), or their own layer is in no tagged image (a
//!   builder stage of a multi-stage build, a build whose tag moved on); and cache mounts not
//!   used for 48 hours.
//! - `all=true`: every record and every cache mount not in use. The next build runs every
//!   step again.
//! - `filters={"until":["24h"]}`: only what was last used before that time (a duration, unix
//!   seconds or RFC 3339); for cache mounts it replaces the 48 hours. Other filters are
//!   refused (400).
//! - `keep-storage` / `reserved-space` (bytes, the larger wins): of what the rules above
//!   select, the least recently used go first, and only until the build cache (records'
//!   sizes and cache mounts') is no larger than that. `max-used-space` and `min-free-space`
//!   are refused (400).
//!
//! Then the layers nothing else keeps are collected: [`berth_image::ImageStore::gc`] keeps
//! every image's layers and those of the records left. While a build runs (it holds an
//! [`berth_image::imagestore::Lease`]) the collection is put off until it ends; records and
//! cache mounts are still removed then (a running build that misses a record just runs the
//! step).
//! The answer is `{"CachesDeleted": [ids], "SpaceReclaimed": bytes}`: the record keys and
//! cache-mount names removed, and the bytes of the files, directories, snapshots and blobs
//! removed.
//!
//! A cache mount's lock file is removed with its directory while prune holds it: a step
//! that opened it just before and waits for it then uses a directory of its own making.

use crate::daemon::Daemon;
use crate::http::{ApiError, ApiResult, Conn, Request};
use berth_image::Digest;
use serde_json::{json, Value};
use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

/// Cache mounts unused for this long go with a default prune.
const MOUNT_MAX_IDLE: Duration = Duration::from_secs(48 * 3600);

/// One build-cache record.
struct Record {
    /// The step's cache key (hex): the file's stem.
    id: String,
    path: PathBuf,
    /// The record's layers (snapshots by chain id, blobs), bottom first.
    chains: Vec<Digest>,
    blobs: Vec<Digest>,
    /// Every layer is still in the store.
    whole: bool,
    /// The step's own layer is in an image (`Shared`); in a tagged one (`tagged`).
    shared: bool,
    tagged: bool,
    /// The own layer's snapshot and blob, when not shared and not counted by another record.
    size: u64,
    created: SystemTime,
    last_used: SystemTime,
    description: String,
}

/// One `RUN --mount=type=cache` directory.
struct CacheMount {
    /// `<32 hex>`, the directory's name.
    id: String,
    dir: PathBuf,
    lock: PathBuf,
    size: u64,
    created: SystemTime,
    last_used: SystemTime,
}

fn mtime(p: &Path) -> Option<SystemTime> {
    std::fs::metadata(p).and_then(|m| m.modified()).ok()
}

fn created(p: &Path) -> Option<SystemTime> {
    let m = std::fs::metadata(p).ok()?;
    m.created().or_else(|_| m.modified()).ok()
}

/// The records under `<store>/build-cache`, sorted by id.
fn records(d: &Daemon) -> Vec<Record> {
    let dir = d.images.root().join("build-cache");
    let Ok(rd) = std::fs::read_dir(&dir) else { return Vec::new() };
    let mut in_images: BTreeMap<Digest, bool> = BTreeMap::new();
    for (rec, names) in d.images.list().unwrap_or_default() {
        for c in rec.chain_ids {
            *in_images.entry(c).or_default() |= !names.is_empty();
        }
    }
    let mut out = Vec::new();
    for e in rd.flatten() {
        let path = e.path();
        let Some(id) = path.file_name().and_then(|n| n.to_str()).and_then(|n| n.strip_suffix(".json")) else {
            continue;
        };
        let id = id.to_string();
        let v: Value = std::fs::read(&path).ok().and_then(|b| serde_json::from_slice(&b).ok()).unwrap_or(Value::Null);
        let digests = |k: &str| -> Vec<Digest> {
            v[k].as_array()
                .map(|a| a.iter().filter_map(|x| x.as_str().and_then(|s| Digest::parse(s).ok())).collect())
                .unwrap_or_default()
        };
        let chains = digests("chains");
        let blobs: Vec<Digest> = v["layers"]
            .as_array()
            .map(|a| a.iter().filter_map(|l| l["digest"].as_str().and_then(|s| Digest::parse(s).ok())).collect())
            .unwrap_or_default();
        let whole = !chains.is_empty()
            && chains.len() == blobs.len()
            && chains.iter().all(|c| d.images.has_snapshot(c))
            && blobs.iter().all(|b| d.images.content().has(b).unwrap_or(false));
        let own = chains.last().and_then(|c| in_images.get(c).copied());
        let description = v["image"]["history"]
            .as_array()
            .and_then(|h| h.iter().rev().find(|x| !x["empty_layer"].as_bool().unwrap_or(false)))
            .and_then(|x| x["created_by"].as_str())
            .unwrap_or("")
            .to_string();
        let last_used = mtime(&path).unwrap_or(SystemTime::UNIX_EPOCH);
        out.push(Record {
            id,
            created: created(&path).unwrap_or(last_used),
            last_used,
            path,
            chains,
            blobs,
            whole,
            shared: own.is_some(),
            tagged: own == Some(true),
            size: 0,
            description,
        });
    }
    out.sort_by(|a, b| a.id.cmp(&b.id));
    // A layer's size goes to one record: the most recently used of those ending in it.
    let mut owner: BTreeMap<&Digest, usize> = BTreeMap::new();
    for (i, r) in out.iter().enumerate() {
        if let (Some(c), true, false) = (r.chains.last(), r.whole, r.shared) {
            let o = owner.entry(c).or_insert(i);
            if out[*o].last_used < r.last_used {
                *o = i;
            }
        }
    }
    let sizes: Vec<(usize, u64)> = owner
        .iter()
        .map(|(c, &i)| {
            let snap = crate::volumes::du(&d.images.root().join("snapshots").join(c.hex()));
            let blob = out[i].blobs.last().and_then(|b| d.images.content().size(b).ok()).unwrap_or(0);
            (i, snap + blob)
        })
        .collect();
    for (i, s) in sizes {
        out[i].size = s;
    }
    out
}

/// The cache mounts under `<store>/build-cache-mounts`, sorted by id.
fn cache_mounts(d: &Daemon) -> Vec<CacheMount> {
    let root = d.images.root().join("build-cache-mounts");
    let Ok(rd) = std::fs::read_dir(&root) else { return Vec::new() };
    let mut ids = BTreeSet::new();
    for e in rd.flatten() {
        let name = e.file_name().to_string_lossy().into_owned();
        let stem = name.split('.').next().unwrap_or("");
        if stem.len() == 32 && stem.bytes().all(|b| b.is_ascii_hexdigit()) {
            ids.insert(stem.to_string());
        }
    }
    ids.into_iter()
        .map(|id| {
            let (dir, lock) = (root.join(&id), root.join(format!("{id}.lock")));
            let last_used = [mtime(&lock), mtime(&dir)].into_iter().flatten().max().unwrap_or(SystemTime::UNIX_EPOCH);
            CacheMount {
                size: crate::volumes::du(&dir),
                created: created(&dir).or_else(|| created(&lock)).unwrap_or(last_used),
                last_used,
                id,
                dir,
                lock,
            }
        })
        .collect()
}

/// Take `flock(LOCK_EX|LOCK_NB)` on the mount's lock file (made if missing): `None` when a
/// step holds it. The lock is released when the file is closed.
fn lock_mount(m: &CacheMount) -> ApiResult<Option<std::fs::File>> {
    let f = std::fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(&m.lock)
        .map_err(|e| ApiError::internal(format!("opening {}: {e}", m.lock.display())))?;
    match berth_build::runmount::flock(&f, libc::LOCK_EX | libc::LOCK_NB) {
        Ok(true) => Ok(Some(f)),
        Ok(false) => Ok(None),
        Err(e) => Err(ApiError::internal(format!("locking {}: {e}", m.lock.display()))),
    }
}

fn in_use(m: &CacheMount) -> bool {
    matches!(lock_mount(m), Ok(None))
}

fn rfc3339(t: SystemTime) -> String {
    berth_runtime::state::rfc3339(t)
}

/// `GET /system/df`'s `BuildCache`: the records, then the cache mounts.
pub fn df(d: &Daemon) -> Vec<Value> {
    let mut out: Vec<Value> = records(d)
        .into_iter()
        .map(|r| {
            json!({"ID": r.id, "Type": "regular", "Size": r.size, "CreatedAt": rfc3339(r.created),
                   "LastUsedAt": rfc3339(r.last_used), "UsageCount": 1, "InUse": false, "Shared": r.shared,
                   "Description": r.description, "Parents": []})
        })
        .collect();
    out.extend(cache_mounts(d).into_iter().map(|m| {
        json!({"ID": m.id, "Type": "exec.cachemount", "Size": m.size, "CreatedAt": rfc3339(m.created),
               "LastUsedAt": rfc3339(m.last_used), "UsageCount": 1, "InUse": in_use(&m), "Shared": false,
               "Description": format!("cached mount {} from exec", m.dir.display()), "Parents": []})
    }));
    out
}

/// A byte count query parameter (0 when absent or empty).
fn bytes_param(req: &Request, name: &str) -> ApiResult<u64> {
    match req.q(name).filter(|v| !v.is_empty()) {
        None => Ok(0),
        Some(v) => v
            .parse::<i64>()
            .map(|n| n.max(0) as u64)
            .map_err(|_| ApiError::bad(format!("invalid {name} value {v:?}: expected a number of bytes"))),
    }
}

/// What a prune request asks for.
struct Opts {
    all: bool,
    /// Last used before this unix time (the `until` filter).
    until: Option<i64>,
    keep: u64,
}

fn options(req: &Request) -> ApiResult<Opts> {
    let mut until = None;
    for (k, vals) in crate::api::parse_filters(req.q("filters"))? {
        match k.as_str() {
            "until" => {
                for v in &vals {
                    let t = crate::images_api::time_filter(v)?;
                    until = Some(until.map_or(t, |u: i64| u.min(t)));
                }
            }
            other => {
                return Err(ApiError::bad(format!(
                    "invalid filter '{other}': builder prune supports only 'until' (e.g. until=24h)"
                )))
            }
        }
    }
    for name in ["max-used-space", "min-free-space"] {
        if bytes_param(req, name)? != 0 {
            return Err(ApiError::bad(format!(
                "{name} is not supported by berth's builder prune: use keep-storage (reserved-space)"
            )));
        }
    }
    let keep = bytes_param(req, "keep-storage")?.max(bytes_param(req, "reserved-space")?);
    Ok(Opts { all: req.flag("all"), until, keep })
}

fn unix(t: SystemTime) -> i64 {
    t.duration_since(SystemTime::UNIX_EPOCH).map(|d| d.as_secs() as i64).unwrap_or(0)
}

/// `POST /build/prune`.
pub fn handle(d: &Daemon, conn: &mut Conn, req: &Request) -> ApiResult<()> {
    let _ = conn.body(req)?;
    let o = options(req)?;
    let report = prune(d, &o)?;
    conn.json(200, &report).map_err(|e| ApiError::internal(format!("writing the response: {e}")))
}

/// A removal candidate: a record or a cache mount, by index.
enum Item {
    Record(usize),
    Mount(usize),
}

fn prune(d: &Daemon, o: &Opts) -> ApiResult<Value> {
    let recs = records(d);
    let mounts = cache_mounts(d);
    let now = SystemTime::now();
    let before = |t: SystemTime, default_idle: Option<Duration>| match o.until {
        Some(u) => unix(t) < u,
        None => default_idle.is_none_or(|idle| now.duration_since(t).is_ok_and(|age| age >= idle)),
    };
    let mut cand: Vec<(SystemTime, u64, Item)> = Vec::new();
    for (i, r) in recs.iter().enumerate() {
        let dangling = !r.whole || !r.tagged;
        if (o.all || dangling) && before(r.last_used, None) {
            cand.push((r.last_used, r.size, Item::Record(i)));
        }
    }
    for (i, m) in mounts.iter().enumerate() {
        if before(m.last_used, if o.all { None } else { Some(MOUNT_MAX_IDLE) }) {
            cand.push((m.last_used, m.size, Item::Mount(i)));
        }
    }
    // Least recently used first; with keep-storage, only until the cache fits.
    cand.sort_by_key(|(t, _, _)| *t);
    let mut total: u64 = recs.iter().map(|r| r.size).sum::<u64>() + mounts.iter().map(|m| m.size).sum::<u64>();
    let mut deleted = Vec::new();
    let mut space = 0u64;
    for (_, size, item) in cand {
        if o.keep > 0 && total <= o.keep {
            break;
        }
        match item {
            Item::Record(i) => {
                let r = &recs[i];
                let len = std::fs::metadata(&r.path).map(|m| m.len()).unwrap_or(0);
                match std::fs::remove_file(&r.path) {
                    Ok(()) => space += len,
                    Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                    Err(e) => return Err(ApiError::internal(format!("removing {}: {e}", r.path.display()))),
                }
                deleted.push(r.id.clone());
            }
            Item::Mount(i) => {
                let m = &mounts[i];
                let Some(_lock) = lock_mount(m)? else { continue };
                for p in [m.dir.clone(), m.dir.with_extension("new")] {
                    match std::fs::remove_dir_all(&p) {
                        Ok(()) => {}
                        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                        Err(e) => return Err(ApiError::internal(format!("removing {}: {e}", p.display()))),
                    }
                }
                let _ = std::fs::remove_file(&m.lock);
                space += size;
                deleted.push(m.id.clone());
            }
        }
        total = total.saturating_sub(size);
    }
    // Stale temporary records of builds that died mid-write.
    if let Ok(rd) = std::fs::read_dir(d.images.root().join("build-cache")) {
        for e in rd.flatten() {
            let name = e.file_name().to_string_lossy().into_owned();
            if let Some(pid) = name.split_once(".tmp").and_then(|(_, p)| p.parse::<u32>().ok()) {
                if !Path::new(&format!("/proc/{pid}")).exists() {
                    let _ = std::fs::remove_file(e.path());
                }
            }
        }
    }
    // The layers only the removed records kept (the GC keeps what images and the records left
    // reach); while a build (or a pull...) holds a lease the GC runs when it ends instead.
    if !deleted.is_empty() {
        space += d.images.gc().map_err(|e| ApiError::internal(e.to_string()))?.bytes;
    }
    Ok(json!({"CachesDeleted": deleted, "SpaceReclaimed": space}))
}
