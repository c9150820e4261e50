//! `RUN --mount` and `RUN <<EOF` scripts: what a step mounts besides its root filesystem.
//!
//! Each `--mount` spec is expanded with the step's variables, then resolved on the host:
//!
//! - `bind` (the default): a path of the context, or of a stage's or an image's root
//!   (`from=`), read-only unless `rw`; a writable bind gets an overlay of its own whose
//!   writes are thrown away with the step, as BuildKit's are.
//! - `cache`: a directory under `<image store>/build-cache-mounts/`, one per `id` (default:
//!   the target), kept across builds and never part of a layer or of a cache key.
//!   `sharing=shared` (the default) takes a shared lock, `locked` an exclusive one (steps
//!   wait), `private` an exclusive one or else a fresh directory of the step's own.
//! - `tmpfs`: a tmpfs (`size=`).
//! - `secret`: a build secret ([`crate::Options::secrets`]) as a file (default
//!   `/run/secrets/<id>`, mode 0400) on a tmpfs of the step's own, or as an environment
//!   variable (`env=`); never in a layer, a cache key or the image.
//! - `ssh`: refused (no agent forwarding).
//!
//! The mount points the runtime makes for these (say `/run/secrets/`) are *stubs*: they are
//! removed from the step's layer after the run when they are still empty, as BuildKit's
//! stub cleaner does.

use crate::{copy, err, BuildError, Builder, State};
use berth_dockerfile::instruction::Run;
use berth_dockerfile::mount::{parse_mount, Mount, MountType, Sharing};
use berth_dockerfile::{Lexer, Vars};
use std::ffi::CString;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

/// A mount of a RUN step, resolved on the host.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RunMount {
    /// The absolute path in the container.
    pub target: String,
    pub source: MountSource,
    pub read_only: bool,
}

/// Where a [`RunMount`] comes from.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum MountSource {
    /// A host file or directory, bind-mounted.
    Bind(PathBuf),
    /// A fresh tmpfs, of at most `size` bytes.
    Tmpfs { size: Option<i64> },
}

/// The host side of one step's mounts, held until the step ends: dropping it unmounts and
/// removes what it made, and releases cache locks.
#[derive(Default)]
pub(crate) struct Prepared {
    pub mounts: Vec<RunMount>,
    /// `KEY=value` from `secret` mounts with `env=`.
    pub env: Vec<String>,
    /// Mounted on the host for the step (unmounted last-first).
    host_mounts: Vec<PathBuf>,
    /// Directories to remove afterwards.
    dirs: Vec<PathBuf>,
    /// Cache mount locks (released when closed).
    locks: Vec<std::fs::File>,
}

impl Drop for Prepared {
    fn drop(&mut self) {
        for m in self.host_mounts.iter().rev() {
            let _ = berth_image::imagestore::unmount(m);
        }
        for d in self.dirs.iter().rev() {
            let _ = std::fs::remove_dir_all(d);
        }
        self.locks.clear();
    }
}

fn cstr(p: &Path) -> Result<CString, String> {
    CString::new(p.as_os_str().as_bytes()).map_err(|_| format!("{}: a path with a NUL byte", p.display()))
}

fn mount(source: &str, target: &Path, fstype: &str, data: &str) -> Result<(), String> {
    let (src, tgt, fs, opts) = (
        CString::new(source).map_err(|e| e.to_string())?,
        cstr(target)?,
        CString::new(fstype).map_err(|e| e.to_string())?,
        CString::new(data).map_err(|e| e.to_string())?,
    );
    // SAFETY: all four are valid NUL-terminated strings that outlive the call.
    let r = unsafe {
        libc::mount(src.as_ptr(), tgt.as_ptr(), fs.as_ptr(), libc::MS_NOSUID | libc::MS_NODEV, opts.as_ptr().cast())
    };
    if r != 0 {
        return Err(format!("mounting {fstype} at {}: {}", target.display(), std::io::Error::last_os_error()));
    }
    Ok(())
}

/// Take `flock(op)` on `f` (a cache mount's lock file; `builder prune` takes them too);
/// false when `LOCK_NB` was given and the lock is busy.
pub fn flock(f: &std::fs::File, op: libc::c_int) -> std::io::Result<bool> {
    use std::os::fd::AsRawFd;
    loop {
        // SAFETY: flock on a descriptor this function borrows; no memory is passed.
        if unsafe { libc::flock(f.as_raw_fd(), op) } == 0 {
            return Ok(true);
        }
        let e = std::io::Error::last_os_error();
        match e.raw_os_error() {
            Some(libc::EINTR) => continue,
            Some(libc::EWOULDBLOCK) if op & libc::LOCK_NB != 0 => return Ok(false),
            _ => return Err(e),
        }
    }
}

/// A bind mount's source inside `root` (`what` names the root in errors).
fn bind_source(root: &Path, source: &str, what: &str) -> Result<PathBuf, String> {
    match copy::resolve_in_root(root, source, true) {
        Ok(p) if p.exists() => Ok(p),
        Ok(_) => Err(format!("--mount source {source:?}: not found in {what}")),
        Err(e) if e.contains("No such file") => Err(format!("--mount source {source:?}: not found in {what}")),
        Err(e) => Err(format!("--mount source {source:?}: {e}")),
    }
}

/// The container path `p` made absolute against `workdir`, cleaned.
fn absolute(p: &str, workdir: &str) -> String {
    crate::clean(&if p.starts_with('/') { p.to_string() } else { format!("{workdir}/{p}") })
}

impl Builder<'_> {
    /// The step's `--mount` specs, expanded with `vars` and parsed; targets made absolute.
    pub(crate) fn parse_mounts(&self, st: &State, r: &Run, vars: &Vars, line: usize) -> Result<Vec<Mount>, BuildError> {
        let lexer = Lexer::new(self.escape);
        let workdir = st.image["config"]["WorkingDir"].as_str().filter(|w| !w.is_empty()).unwrap_or("/").to_string();
        let mut out = Vec::new();
        for spec in &r.mounts {
            let mut m = parse_mount(spec, |v| lexer.process_word(v, vars).map_err(|e| e.to_string()))
                .map_err(|e| err(line, format!("--mount={spec}: {e}")))?;
            match m.mount_type {
                MountType::Ssh => {
                    return Err(err(line, "RUN --mount=type=ssh is not supported: berth does not forward SSH agents"))
                }
                MountType::Secret => {
                    if m.id.is_none() {
                        let t = m.target.clone().or(m.source.clone()).unwrap_or_default();
                        m.id = Some(t.rsplit('/').next().unwrap_or_default().to_string());
                    }
                    if m.target.is_none() && m.env.is_none() {
                        m.target = Some(format!("/run/secrets/{}", m.id.as_deref().unwrap_or_default()));
                    }
                }
                _ => {
                    if m.target.as_deref().unwrap_or("").is_empty() {
                        return Err(err(line, format!("--mount={spec}: mount target must be specified")));
                    }
                }
            }
            if let Some(t) = m.target.as_mut() {
                *t = absolute(t, &workdir);
                if t == "/" {
                    return Err(err(line, format!("--mount={spec}: cannot mount over the root directory")));
                }
            }
            if m.mount_type == MountType::Cache && m.from.is_some() {
                return Err(err(
                    line,
                    "RUN --mount=type=cache,from=... is not supported: seed the cache in a RUN step",
                ));
            }
            out.push(m);
        }
        Ok(out)
    }

    /// What the step's cache key must hold of its mounts: the content of bind mounts (the
    /// context paths they read, or the stage they come from). Caches, tmpfs and secrets
    /// count for nothing, as in BuildKit.
    pub(crate) fn mounts_key(&self, mounts: &[Mount], line: usize) -> Result<String, BuildError> {
        let mut h = berth_image::Hasher::new();
        for m in mounts.iter().filter(|m| m.mount_type == MountType::Bind) {
            let source = m.source.as_deref().unwrap_or(".");
            match m.from.as_deref() {
                None => {
                    h.update(format!("bind context {source}\n").as_bytes());
                    let p = bind_source(self.context, source, "the build context").map_err(|e| err(line, e))?;
                    let rel = p.strip_prefix(self.context).unwrap_or(Path::new("")).to_path_buf();
                    copy::hash_tree(self.context, &rel, self.ignore.as_ref(), &mut h).map_err(|e| err(line, e))?;
                }
                Some(f) => {
                    let what = match self.source_stage(f) {
                        Some(i) => self.done.get(&i).map(|s| s.key.to_string()).unwrap_or_default(),
                        None => self.store.resolve(f).map(|r| r.id.to_string()).unwrap_or_else(|_| f.to_string()),
                    };
                    h.update(format!("bind {what} {source}\n").as_bytes());
                }
            }
        }
        Ok(h.digest().to_string())
    }

    /// Resolve `mounts` on the host (see the module docs), in `dir` (a directory of the step's
    /// own). `script` is a heredoc to run as a file: `(name, body)`, mounted at
    /// `/dev/pipes/<name>` as BuildKit does.
    pub(crate) fn prepare_mounts(
        &mut self,
        mounts: &[Mount],
        script: Option<(&str, &str)>,
        dir: &Path,
        line: usize,
    ) -> Result<Prepared, BuildError> {
        let mut p = Prepared::default();
        let e = |m: String| err(line, m);
        std::fs::create_dir_all(dir).map_err(|x| e(format!("creating {}: {x}", dir.display())))?;
        p.dirs.push(dir.to_path_buf());
        // Secrets and scripts live on a tmpfs of the step's own, never on disk.
        let needs_tmpfs = script.is_some() || mounts.iter().any(|m| m.mount_type == MountType::Secret);
        let private = dir.join("private");
        if needs_tmpfs {
            std::fs::create_dir_all(&private).map_err(|x| e(format!("creating {}: {x}", private.display())))?;
            mount("tmpfs", &private, "tmpfs", "mode=0700,size=16m").map_err(e)?;
            p.host_mounts.push(private.clone());
        }
        if let Some((name, body)) = script {
            let f = private.join(format!("script-{name}"));
            std::fs::write(&f, body).map_err(|x| e(format!("writing the heredoc script: {x}")))?;
            std::fs::set_permissions(&f, std::fs::Permissions::from_mode(0o755)).map_err(|x| e(x.to_string()))?;
            p.mounts.push(RunMount {
                target: format!("/dev/pipes/{name}"),
                source: MountSource::Bind(f),
                read_only: true,
            });
        }
        for (n, m) in mounts.iter().enumerate() {
            let target = m.target.clone().unwrap_or_default();
            match m.mount_type {
                MountType::Ssh => unreachable!("refused by parse_mounts"),
                MountType::Tmpfs => p.mounts.push(RunMount {
                    target,
                    source: MountSource::Tmpfs { size: m.size_limit },
                    read_only: m.read_only,
                }),
                MountType::Secret => {
                    let id = m.id.clone().unwrap_or_default();
                    let Some(value) = self.opts.secrets.get(&id) else {
                        if m.required {
                            return Err(e(format!(
                                "secret {id}: not provided (give it with --secret id={id},src=FILE)"
                            )));
                        }
                        continue;
                    };
                    if let Some(var) = &m.env {
                        p.env.push(format!("{var}={}", String::from_utf8_lossy(value)));
                        if m.target.is_none() {
                            continue;
                        }
                    }
                    let f = private.join(format!("secret-{n}"));
                    std::fs::write(&f, value).map_err(|x| e(format!("writing secret {id}: {x}")))?;
                    std::fs::set_permissions(&f, std::fs::Permissions::from_mode(m.mode.unwrap_or(0o400)))
                        .map_err(|x| e(x.to_string()))?;
                    std::os::unix::fs::chown(&f, Some(m.uid.unwrap_or(0)), Some(m.gid.unwrap_or(0)))
                        .map_err(|x| e(x.to_string()))?;
                    p.mounts.push(RunMount { target, source: MountSource::Bind(f), read_only: true });
                }
                MountType::Cache => {
                    let id = m.id.clone().unwrap_or_else(|| target.clone());
                    let root = self.store.root().join("build-cache-mounts");
                    let hex = berth_image::Digest::of(id.as_bytes()).hex()[..32].to_string();
                    let cache = root.join(&hex);
                    std::fs::create_dir_all(&root).map_err(|x| e(format!("creating {}: {x}", root.display())))?;
                    let lock = std::fs::OpenOptions::new()
                        .create(true)
                        .truncate(false)
                        .write(true)
                        .open(root.join(format!("{hex}.lock")))
                        .map_err(|x| e(format!("opening the cache mount's lock: {x}")))?;
                    // The lock's mtime is the mount's last use (`builder prune`, `system df`).
                    let _ = lock.set_modified(std::time::SystemTime::now());
                    let sharing = m.sharing.unwrap_or(Sharing::Shared);
                    let src = match sharing {
                        Sharing::Shared => {
                            flock(&lock, libc::LOCK_SH).map_err(|x| e(format!("locking a cache mount: {x}")))?;
                            cache
                        }
                        Sharing::Locked => {
                            flock(&lock, libc::LOCK_EX).map_err(|x| e(format!("locking a cache mount: {x}")))?;
                            cache
                        }
                        Sharing::Private => {
                            if flock(&lock, libc::LOCK_EX | libc::LOCK_NB)
                                .map_err(|x| e(format!("locking a cache mount: {x}")))?
                            {
                                cache
                            } else {
                                dir.join(format!("cache-{n}"))
                            }
                        }
                    };
                    p.locks.push(lock);
                    if !src.exists() {
                        let tmp = src.with_extension("new");
                        let _ = std::fs::remove_dir_all(&tmp);
                        std::fs::create_dir_all(&tmp).map_err(|x| e(format!("creating {}: {x}", tmp.display())))?;
                        std::fs::set_permissions(&tmp, std::fs::Permissions::from_mode(m.mode.unwrap_or(0o755)))
                            .map_err(|x| e(x.to_string()))?;
                        std::os::unix::fs::chown(&tmp, Some(m.uid.unwrap_or(0)), Some(m.gid.unwrap_or(0)))
                            .map_err(|x| e(x.to_string()))?;
                        std::fs::rename(&tmp, &src).map_err(|x| e(format!("creating {}: {x}", src.display())))?;
                    }
                    p.mounts.push(RunMount { target, source: MountSource::Bind(src), read_only: m.read_only });
                }
                MountType::Bind => {
                    let source = m.source.as_deref().unwrap_or(".");
                    let root = match m.from.as_deref() {
                        None => self.context.to_path_buf(),
                        Some(f) => {
                            let chains = self.chains_of(f, line)?;
                            let root = dir.join(format!("from-{n}"));
                            self.store
                                .mount_chain(&chains, &dir.join(format!("from-{n}-rw")), &root)
                                .map_err(|x| e(format!("mounting {f}: {x}")))?;
                            p.host_mounts.push(root.clone());
                            root
                        }
                    };
                    let mut src =
                        bind_source(&root, source, m.from.as_deref().unwrap_or("the build context")).map_err(e)?;
                    if !m.read_only && m.from.is_none() {
                        // Writes to a bind of the context go to an overlay thrown away after.
                        if src.is_dir() {
                            let (upper, work, merged) = (
                                dir.join(format!("rw-{n}/upper")),
                                dir.join(format!("rw-{n}/work")),
                                dir.join(format!("rw-{n}/merged")),
                            );
                            for d in [&upper, &work, &merged] {
                                std::fs::create_dir_all(d).map_err(|x| e(x.to_string()))?;
                            }
                            let lower = src.display().to_string();
                            if lower.contains([':', ',']) {
                                return Err(e(format!("--mount source {source:?}: path holds ':' or ','")));
                            }
                            let opts =
                                format!("lowerdir={lower},upperdir={},workdir={}", upper.display(), work.display());
                            mount("overlay", &merged, "overlay", &opts).map_err(e)?;
                            p.host_mounts.push(merged.clone());
                            src = merged;
                        } else {
                            let copy = dir.join(format!("rw-{n}-file"));
                            std::fs::copy(&src, &copy).map_err(|x| e(x.to_string()))?;
                            src = copy;
                        }
                    }
                    p.mounts.push(RunMount { target, source: MountSource::Bind(src), read_only: m.read_only });
                }
            }
        }
        Ok(p)
    }
}

/// The mount-point stubs the runtime will make in `root` for `mounts`: for each target, its
/// topmost path component that does not exist yet (targets under `/dev` make none: the
/// runtime's own tmpfs is there).
pub(crate) fn stubs(root: &Path, mounts: &[RunMount]) -> Vec<(PathBuf, PathBuf)> {
    let mut out = Vec::new();
    for m in mounts {
        let rel = Path::new(m.target.trim_start_matches('/'));
        if rel.starts_with("dev") || rel.starts_with("proc") || rel.starts_with("sys") {
            continue;
        }
        let mut cur = root.to_path_buf();
        for c in rel.components() {
            cur.push(c);
            if std::fs::symlink_metadata(&cur).is_err() {
                out.push((cur.clone(), root.join(rel)));
                break;
            }
        }
    }
    out
}

/// Remove the stubs left in `root` (see [`stubs`]): the target if it is an empty file or
/// directory, then its parents up to the first that was made, while empty.
pub(crate) fn remove_stubs(stubs: &[(PathBuf, PathBuf)]) {
    for (top, target) in stubs {
        let mut cur = target.clone();
        while let Ok(md) = std::fs::symlink_metadata(&cur) {
            let removed = if md.is_dir() {
                std::fs::remove_dir(&cur).is_ok()
            } else {
                md.is_file() && md.len() == 0 && std::fs::remove_file(&cur).is_ok()
            };
            if !removed || cur == *top {
                break;
            }
            match cur.parent() {
                Some(p) => cur = p.to_path_buf(),
                None => break,
            }
        }
    }
}
