//! Volumes (the `local` driver): directories under `<data-root>/volumes/<name>/_data`, with
//! `meta.json` beside `_data` (labels, options, creation time, anonymous or not).
//!
//! A volume is made in a temporary directory (`.tmp-<random>`) and renamed into place, so a
//! crash leaves either a whole volume or a temporary directory that the next start removes.
//! Whether a volume is in use is the daemon's knowledge (its containers' mount points).

use crate::http::{ApiError, ApiResult};
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};
use std::path::{Path, PathBuf};

#[derive(Serialize, Deserialize, Clone, Debug, Default)]
pub struct VolumeMeta {
    pub created: String,
    #[serde(default)]
    pub labels: serde_json::Map<String, Value>,
    #[serde(default)]
    pub options: serde_json::Map<String, Value>,
    #[serde(default)]
    pub anonymous: bool,
}

#[derive(Clone, Debug)]
pub struct Volume {
    pub name: String,
    pub meta: VolumeMeta,
    pub mountpoint: PathBuf,
}

impl Volume {
    pub fn json(&self) -> Value {
        json!({
            "Name": self.name,
            "Driver": "local",
            "Mountpoint": self.mountpoint,
            "CreatedAt": self.meta.created,
            "Labels": self.meta.labels,
            "Scope": "local",
            "Options": if self.meta.options.is_empty() { Value::Null } else { Value::Object(self.meta.options.clone()) },
        })
    }
}

pub struct Volumes {
    root: PathBuf,
}

/// Docker's volume name rule: `[a-zA-Z0-9][a-zA-Z0-9_.-]+`.
pub fn valid_name(n: &str) -> bool {
    let b = n.as_bytes();
    b.len() >= 2
        && b[0].is_ascii_alphanumeric()
        && b[1..].iter().all(|c| c.is_ascii_alphanumeric() || matches!(c, b'_' | b'.' | b'-'))
}

impl Volumes {
    pub fn open(root: &Path) -> Result<Volumes, String> {
        std::fs::create_dir_all(root).map_err(|e| format!("creating {}: {e}", root.display()))?;
        // Half-made volumes of a crash.
        for e in std::fs::read_dir(root).map_err(|e| format!("listing {}: {e}", root.display()))?.flatten() {
            if e.file_name().to_string_lossy().starts_with(".tmp-") {
                let _ = std::fs::remove_dir_all(e.path());
            }
        }
        Ok(Volumes { root: root.to_path_buf() })
    }

    fn dir(&self, name: &str) -> PathBuf {
        self.root.join(name)
    }

    pub fn get(&self, name: &str) -> ApiResult<Volume> {
        if !valid_name(name) {
            return Err(ApiError::not_found(format!("get {name}: no such volume")));
        }
        let dir = self.dir(name);
        let data = std::fs::read(dir.join("meta.json"))
            .map_err(|_| ApiError::not_found(format!("get {name}: no such volume")))?;
        let meta: VolumeMeta = serde_json::from_slice(&data)
            .map_err(|e| ApiError::internal(format!("volume {name}: unreadable meta.json: {e}")))?;
        Ok(Volume { name: name.to_string(), meta, mountpoint: dir.join("_data") })
    }

    pub fn list(&self) -> Vec<Volume> {
        let mut out: Vec<Volume> = std::fs::read_dir(&self.root)
            .into_iter()
            .flatten()
            .flatten()
            .filter_map(|e| e.file_name().to_str().map(String::from))
            .filter(|n| !n.starts_with('.'))
            .filter_map(|n| self.get(&n).ok())
            .collect();
        out.sort_by(|a, b| a.name.cmp(&b.name));
        out
    }

    /// Create `name` (a random one if empty: an anonymous volume); an existing volume of that
    /// name is returned as it is, as Docker does.
    pub fn create(&self, name: &str, driver: &str, labels: &Value, opts: &Value, anonymous: bool) -> ApiResult<Volume> {
        if !matches!(driver, "" | "local") {
            return Err(ApiError::not_found(format!(
                "error looking up volume plugin {driver}: plugin \"{driver}\" not found"
            )));
        }
        if opts.as_object().is_some_and(|o| !o.is_empty()) {
            return Err(ApiError::bad("volume driver options (-o) are not supported yet by the local driver"));
        }
        let name = if name.is_empty() { crate::daemon::random_id() } else { name.to_string() };
        if !valid_name(&name) {
            return Err(ApiError::bad(format!(
                "create {name}: \"{name}\" includes invalid characters for a local volume name, only \"[a-zA-Z0-9][a-zA-Z0-9_.-]\" are allowed. If you intended to pass a host directory, use absolute path"
            )));
        }
        if let Ok(v) = self.get(&name) {
            return Ok(v);
        }
        let meta = VolumeMeta {
            created: berth_runtime::state::now_rfc3339(),
            labels: labels.as_object().cloned().unwrap_or_default(),
            options: serde_json::Map::new(),
            anonymous,
        };
        let tmp = self.root.join(format!(".tmp-{}", &crate::daemon::random_id()[..16]));
        let made = (|| -> std::io::Result<()> {
            std::fs::create_dir_all(tmp.join("_data"))?;
            std::fs::write(tmp.join("meta.json"), serde_json::to_vec_pretty(&meta).unwrap_or_default())?;
            std::fs::rename(&tmp, self.dir(&name))
        })();
        if let Err(e) = made {
            let _ = std::fs::remove_dir_all(&tmp);
            if let Ok(v) = self.get(&name) {
                return Ok(v); // made by someone else meanwhile
            }
            return Err(ApiError::internal(format!("creating volume {name}: {e}")));
        }
        self.get(&name)
    }

    /// Remove a volume and its data (the caller checked that no container uses it).
    pub fn remove(&self, name: &str) -> ApiResult<()> {
        self.get(name)?;
        // Renamed away first: a crash midway leaves a .tmp- directory, not half a volume.
        let tmp = self.root.join(format!(".tmp-{}", &crate::daemon::random_id()[..16]));
        std::fs::rename(self.dir(name), &tmp)
            .map_err(|e| ApiError::internal(format!("removing volume {name}: {e}")))?;
        std::fs::remove_dir_all(&tmp).map_err(|e| ApiError::internal(format!("removing volume {name}: {e}")))
    }
}

/// Bytes used under `dir` (for prune's `SpaceReclaimed` and `system df`).
pub fn du(dir: &Path) -> u64 {
    use std::os::unix::fs::MetadataExt;
    let mut total = 0;
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).into_iter().flatten().flatten() {
            let Ok(m) = e.path().symlink_metadata() else { continue };
            if m.is_dir() {
                stack.push(e.path());
            } else {
                total += m.blocks() * 512;
            }
        }
    }
    total
}

/// Copy an image's content at a mount point into a new, empty volume (Docker's copy-up),
/// keeping modes, owners, symlinks and times.
pub fn copy_up(from: &Path, to: &Path) -> std::io::Result<()> {
    use std::os::unix::fs::{MetadataExt, PermissionsExt};
    let m = from.symlink_metadata()?;
    if !m.is_dir() {
        return Ok(());
    }
    for e in std::fs::read_dir(from)? {
        let e = e?;
        let (src, dst) = (e.path(), to.join(e.file_name()));
        let m = src.symlink_metadata()?;
        let ft = m.file_type();
        if ft.is_dir() {
            std::fs::create_dir(&dst)?;
            copy_up(&src, &dst)?;
        } else if ft.is_symlink() {
            std::os::unix::fs::symlink(std::fs::read_link(&src)?, &dst)?;
        } else if ft.is_file() {
            std::fs::copy(&src, &dst)?;
        } else {
            continue; // devices, fifos and sockets are not copied
        }
        std::os::unix::fs::lchown(&dst, Some(m.uid()), Some(m.gid()))?;
        if !ft.is_symlink() {
            std::fs::set_permissions(&dst, std::fs::Permissions::from_mode(m.mode() & 0o7777))?;
        }
    }
    std::os::unix::fs::lchown(to, Some(m.uid()), Some(m.gid()))?;
    std::fs::set_permissions(to, std::fs::Permissions::from_mode(m.mode() & 0o7777))?;
    Ok(())
}
