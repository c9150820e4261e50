//! berth-cgroups: create, configure, query and remove the cgroup of one container.
//!
//! Works on cgroup v1, v2 (unified) and hybrid hosts (v1 controllers plus a
//! cgroup2 mount at `/sys/fs/cgroup/unified`, often with no controllers). The
//! host layout is read from `/proc/self/mountinfo`, never assumed.
//!
//! Invariants:
//! * A directory is only ever removed if this crate created it (it is then
//!   listed in [`CgroupState::created`], which the runtime persists in the
//!   container's state file). Cgroups that existed before — the parent of a
//!   `cgroupsPath`, the session's own cgroup — are never removed.
//! * [`Manager::validate`] runs before anything is created, so a spec that
//!   asks for a controller the host lacks fails without side effects.
//! * Every error is one line that names the file or the setting concerned.
//!
//! Module map: [`mountinfo`] finds the hierarchies, [`v1`] and [`v2`] write
//! resources in each format, [`devices`] builds the cgroup v2 eBPF device filter.

pub mod devices;
pub mod mountinfo;
mod v1;
mod v2;

use oci_spec::runtime::LinuxResources;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::io;
use std::path::{Path, PathBuf};

/// How the host mounts its cgroups.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, Default)]
#[serde(rename_all = "lowercase")]
pub enum Layout {
    /// Only cgroup v1 hierarchies.
    V1,
    /// One cgroup2 hierarchy at /sys/fs/cgroup.
    #[default]
    V2,
    /// v1 controllers, plus a cgroup2 hierarchy (usually without controllers).
    Hybrid,
}

/// A cgroup error: one line naming what failed.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("{0}")]
    Invalid(String),
    #[error("{what}: {source}")]
    Io {
        what: String,
        #[source]
        source: io::Error,
    },
}

impl Error {
    fn io(what: impl Into<String>, source: io::Error) -> Error {
        Error::Io { what: what.into(), source }
    }
    /// The errno, when the error came from the kernel.
    pub fn raw_os_error(&self) -> Option<i32> {
        match self {
            Error::Io { source, .. } => source.raw_os_error(),
            Error::Invalid(_) => None,
        }
    }
}

pub type Result<T> = std::result::Result<T, Error>;

macro_rules! invalid {
    ($($t:tt)*) => { return Err($crate::Error::Invalid(format!($($t)*))) };
}

/// One hierarchy the container has a directory in.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
pub struct CgroupDir {
    /// The hierarchy's directory name under /sys/fs/cgroup ("cpu,cpuacct",
    /// "memory", "systemd", "unified"); empty on a pure v2 host.
    pub name: String,
    /// v1 controllers of this hierarchy ("name=systemd" for named ones); empty for cgroup2.
    pub controllers: Vec<String>,
    pub v2: bool,
    /// The container's directory in this hierarchy.
    pub path: PathBuf,
}

/// Everything needed to find the cgroup again; persisted in the container state.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, Eq)]
pub struct CgroupState {
    pub layout: Layout,
    /// The container's cgroup path relative to each hierarchy's root ("/berth/<id>").
    pub path: PathBuf,
    pub dirs: Vec<CgroupDir>,
    /// Directories this manager created, parents before children.
    pub created: Vec<PathBuf>,
}

/// Resource usage, read from the controllers that exist.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, Eq)]
pub struct Stats {
    pub memory_usage: u64,
    pub memory_max_usage: u64,
    /// None when unlimited.
    pub memory_limit: Option<u64>,
    /// memory.stat, as key → value.
    pub memory_stat: BTreeMap<String, u64>,
    pub oom_kills: u64,
    pub cpu_usage_ns: u64,
    pub cpu_user_ns: u64,
    pub cpu_system_ns: u64,
    pub cpu_throttled_periods: u64,
    pub cpu_throttled_ns: u64,
    pub pids_current: u64,
    /// None when unlimited.
    pub pids_limit: Option<u64>,
}

/// The cgroup of one container.
#[derive(Debug, Clone)]
pub struct Manager {
    state: CgroupState,
}

/// Find the host's cgroup layout.
/// Treat the zero values that callers use for "unset" as unset, as runc does: dockerd sends
/// `cpu.shares: 0`, `cpu.quota: 0`, `cpu.period: 0` and `blockIO.weight: 0` for "not configured"
/// (also in `update`), and writing them would set the kernel's minimum instead of leaving the default.
pub fn normalize(r: &LinuxResources) -> LinuxResources {
    let mut r = r.clone();
    if let Some(c) = r.cpu().clone() {
        let mut c = c;
        if c.shares() == Some(0) {
            c.set_shares(None);
        }
        if c.quota() == Some(0) {
            c.set_quota(None);
        }
        if c.period() == Some(0) {
            c.set_period(None);
        }
        if c.realtime_runtime() == Some(0) {
            c.set_realtime_runtime(None);
        }
        if c.realtime_period() == Some(0) {
            c.set_realtime_period(None);
        }
        r.set_cpu(Some(c));
    }
    if let Some(b) = r.block_io().clone() {
        let mut b = b;
        if b.weight() == Some(0) {
            b.set_weight(None);
        }
        if b.leaf_weight() == Some(0) {
            b.set_leaf_weight(None);
        }
        r.set_block_io(Some(b));
    }
    r
}

pub fn detect_layout() -> Result<Layout> {
    let h = mountinfo::hierarchies()?;
    Ok(mountinfo::layout_of(&h))
}

impl Manager {
    /// `cgroups_path`: the spec's linux.cgroupsPath (absolute = from the hierarchy root,
    /// relative = below this process's own cgroup); None => "/berth/<id>".
    /// The systemd form "slice:prefix:name" is refused with a clear error.
    pub fn new(cgroups_path: Option<&Path>, id: &str) -> Result<Manager> {
        let hier = mountinfo::hierarchies()?;
        Self::with_hierarchies(&hier, &mountinfo::own_cgroups()?, cgroups_path, id)
    }

    fn with_hierarchies(
        hier: &[mountinfo::Hierarchy],
        own: &BTreeMap<String, PathBuf>,
        cgroups_path: Option<&Path>,
        id: &str,
    ) -> Result<Manager> {
        let layout = mountinfo::layout_of(hier);
        let rel = match cgroups_path {
            None => PathBuf::from("/berth").join(id),
            Some(p) => {
                let s = p.to_string_lossy();
                if s.is_empty() {
                    PathBuf::from("/berth").join(id)
                } else if !s.starts_with('/') && s.matches(':').count() == 2 {
                    invalid!(
                        "cgroupsPath {s:?} is in systemd form (slice:prefix:name); berth manages cgroups directly: give a path such as /berth/{id}"
                    )
                } else {
                    p.to_path_buf()
                }
            }
        };
        if rel.components().any(|c| matches!(c, std::path::Component::ParentDir)) {
            invalid!("cgroupsPath {:?} must not contain \"..\"", rel.display().to_string());
        }
        let mut dirs = Vec::new();
        for h in hier {
            if h.v2 && layout == Layout::Hybrid && h.mount != Path::new("/sys/fs/cgroup/unified") {
                continue;
            }
            let key = h.own_key();
            let sub = if rel.is_absolute() {
                rel.strip_prefix("/").unwrap_or(&rel).to_path_buf()
            } else {
                // Relative: below this process's own cgroup in that hierarchy.
                let mine = own.get(&key).cloned().unwrap_or_else(|| PathBuf::from("/"));
                let mine = mine.strip_prefix(&h.root).map(Path::to_path_buf).unwrap_or(mine);
                mine.strip_prefix("/").unwrap_or(&mine).join(&rel)
            };
            dirs.push(CgroupDir {
                name: h.name(),
                controllers: h.controllers.clone(),
                v2: h.v2,
                path: h.mount.join(sub),
            });
        }
        if dirs.is_empty() {
            invalid!("no cgroup hierarchy is mounted under /sys/fs/cgroup");
        }
        let path = if rel.is_absolute() { rel } else { PathBuf::from("/").join(rel) };
        Ok(Manager { state: CgroupState { layout, path, dirs, created: Vec::new() } })
    }

    pub fn from_state(state: CgroupState) -> Manager {
        Manager { state }
    }

    pub fn state(&self) -> CgroupState {
        self.state.clone()
    }

    pub fn layout(&self) -> Layout {
        self.state.layout
    }

    /// The container's directory in the hierarchy holding `controller`
    /// ("memory", "pids", ...; "" for the cgroup2 hierarchy).
    pub fn dir(&self, controller: &str) -> Option<&Path> {
        self.v1(controller).or_else(|| self.v2_dir().filter(|_| self.v2_has(controller)))
    }

    fn v1(&self, controller: &str) -> Option<&Path> {
        self.state
            .dirs
            .iter()
            .find(|d| !d.v2 && d.controllers.iter().any(|c| c == controller))
            .map(|d| d.path.as_path())
    }

    fn v2_dir(&self) -> Option<&Path> {
        self.state.dirs.iter().find(|d| d.v2).map(|d| d.path.as_path())
    }

    /// True if the cgroup2 hierarchy offers `controller` (""=the hierarchy itself).
    fn v2_has(&self, controller: &str) -> bool {
        let Some(dir) = self.v2_dir() else { return false };
        if controller.is_empty() {
            return true;
        }
        if self.state.layout == Layout::Hybrid {
            return false;
        }
        let root = self.v2_mount().unwrap_or_else(|| dir.to_path_buf());
        std::fs::read_to_string(root.join("cgroup.controllers"))
            .map(|s| s.split_whitespace().any(|c| c == controller))
            .unwrap_or(false)
    }

    fn v2_mount(&self) -> Option<PathBuf> {
        let d = self.state.dirs.iter().find(|d| d.v2)?;
        let rel = self.state.path.strip_prefix("/").ok()?;
        let mut p = d.path.clone();
        for _ in rel.components() {
            p.pop();
        }
        Some(p)
    }

    /// Which controller serves each resource on this host ("" = none).
    fn provider(&self, v1_name: &str, v2_name: &str) -> Option<Backend<'_>> {
        if let Some(p) = self.v1(v1_name) {
            return Some(Backend::V1(p));
        }
        if self.state.layout == Layout::V2 && self.v2_has(v2_name) {
            return self.v2_dir().map(Backend::V2);
        }
        None
    }

    /// Check resources can be honoured on this host (before anything is created).
    pub fn validate(&self, r: &LinuxResources) -> Result<()> {
        let r = &normalize(r);
        let need = |ok: bool, what: &str, ctl: &str| -> Result<()> {
            if ok {
                Ok(())
            } else {
                invalid!("{what} requested but the {ctl} cgroup controller is not available on this host")
            }
        };
        if let Some(m) = r.memory() {
            let any = m.limit().is_some()
                || m.reservation().is_some()
                || m.swap().is_some()
                || m.swappiness().is_some()
                || m.disable_oom_killer().unwrap_or(false)
                || m.kernel_tcp().is_some();
            if any {
                need(self.provider("memory", "memory").is_some(), "a memory limit", "memory")?;
            }
            if let (Some(l), Some(s)) = (m.limit(), m.swap()) {
                if l > 0 && s > 0 && s < l {
                    invalid!("memory+swap limit ({s}) must not be lower than the memory limit ({l})");
                }
            }
            if let Some(s) = m.swappiness() {
                if s > 100 {
                    invalid!("memory swappiness {s} is out of range (0-100)");
                }
            }
            if let Some(Backend::V1(dir)) = self.provider("memory", "memory") {
                let parent = existing_ancestor(dir);
                if m.swap().is_some_and(|s| s > 0) && !parent.join("memory.memsw.limit_in_bytes").exists() {
                    invalid!("a swap limit was requested but this kernel has no swap accounting (memory.memsw.limit_in_bytes); boot with swapaccount=1 or drop the swap limit");
                }
                if m.kernel().is_some_and(|k| k > 0) {
                    invalid!("kernel memory limits are not supported by this kernel (memory.kmem.limit_in_bytes was removed in Linux 5.16)");
                }
            }
            if let Some(Backend::V2(_)) = self.provider("memory", "memory") {
                if m.disable_oom_killer().unwrap_or(false) {
                    invalid!("disabling the OOM killer is not supported on cgroup v2");
                }
                if m.kernel().is_some_and(|k| k > 0) || m.kernel_tcp().is_some_and(|k| k > 0) {
                    invalid!("kernel memory limits are not supported on cgroup v2");
                }
            }
        }
        if let Some(c) = r.cpu() {
            if c.shares().is_some() || c.quota().is_some() || c.period().is_some() || c.burst().is_some() {
                need(self.provider("cpu", "cpu").is_some(), "a CPU limit", "cpu")?;
            }
            if c.realtime_runtime().is_some() || c.realtime_period().is_some() {
                need(matches!(self.provider("cpu", "cpu"), Some(Backend::V1(_))), "a realtime CPU limit", "cpu (v1)")?;
            }
            if c.idle().is_some_and(|i| i != 0) {
                need(matches!(self.provider("cpu", "cpu"), Some(Backend::V2(_))), "cpu idle", "cpu (v2)")?;
            }
            if let Some(p) = c.period() {
                if !(1000..=1_000_000).contains(&p) {
                    invalid!("CPU period {p} is out of range (1000-1000000 microseconds)");
                }
            }
            if let Some(q) = c.quota() {
                if q > 0 && q < 1000 {
                    invalid!("CPU quota {q} is too small (minimum 1000 microseconds)");
                }
            }
            if c.cpus().as_deref().is_some_and(|s| !s.is_empty()) || c.mems().as_deref().is_some_and(|s| !s.is_empty())
            {
                need(self.provider("cpuset", "cpuset").is_some(), "a cpuset", "cpuset")?;
                if let Some(cpus) = c.cpus().as_deref().filter(|s| !s.is_empty()) {
                    check_cpulist(cpus, "cpus")?;
                }
                if let Some(mems) = c.mems().as_deref().filter(|s| !s.is_empty()) {
                    check_cpulist(mems, "mems")?;
                }
            }
        }
        if let Some(p) = r.pids() {
            let _ = p;
            need(self.provider("pids", "pids").is_some(), "a pids limit", "pids")?;
        }
        if let Some(b) = r.block_io() {
            let any = b.weight().is_some()
                || b.leaf_weight().is_some()
                || b.weight_device().as_ref().is_some_and(|v| !v.is_empty())
                || b.throttle_read_bps_device().as_ref().is_some_and(|v| !v.is_empty())
                || b.throttle_write_bps_device().as_ref().is_some_and(|v| !v.is_empty())
                || b.throttle_read_iops_device().as_ref().is_some_and(|v| !v.is_empty())
                || b.throttle_write_iops_device().as_ref().is_some_and(|v| !v.is_empty());
            if any {
                need(self.provider("blkio", "io").is_some(), "a block I/O limit", "blkio/io")?;
            }
            if let Some(w) = b.weight() {
                if !(10..=1000).contains(&w) {
                    invalid!("block I/O weight {w} is out of range (10-1000)");
                }
                if let Some(Backend::V1(dir)) = self.provider("blkio", "io") {
                    let parent = existing_ancestor(dir);
                    if !parent.join("blkio.weight").exists() && !parent.join("blkio.bfq.weight").exists() {
                        invalid!("a block I/O weight was requested but no I/O scheduler on this host supports weights (blkio.weight/blkio.bfq.weight missing)");
                    }
                }
            }
        }
        if r.hugepage_limits().as_ref().is_some_and(|v| !v.is_empty()) {
            need(self.provider("hugetlb", "hugetlb").is_some(), "a hugepage limit", "hugetlb")?;
        }
        if let Some(n) = r.network() {
            if n.class_id().is_some() {
                need(self.v1("net_cls").is_some(), "a network class id", "net_cls")?;
            }
            if n.priorities().as_ref().is_some_and(|v| !v.is_empty()) {
                need(self.v1("net_prio").is_some(), "network priorities", "net_prio")?;
            }
        }
        if r.rdma().as_ref().is_some_and(|v| !v.is_empty()) {
            need(self.provider("rdma", "rdma").is_some(), "an rdma limit", "rdma")?;
        }
        if let Some(u) = r.unified() {
            if !u.is_empty() && self.v2_dir().is_none() {
                invalid!("linux.resources.unified needs a cgroup v2 hierarchy, and this host has none");
            }
            for k in u.keys() {
                if k.contains('/') || k.starts_with('.') || !k.contains('.') {
                    invalid!("linux.resources.unified: {k:?} is not a cgroup interface file name");
                }
                if self.state.layout == Layout::Hybrid {
                    let ctl = k.split('.').next().unwrap_or("");
                    if ctl != "cgroup" {
                        invalid!("linux.resources.unified: {k:?} needs the {ctl} controller, which this hybrid host only offers on cgroup v1");
                    }
                }
            }
        }
        if let Some(devs) = r.devices() {
            for d in devs {
                if let Some(a) = d.access() {
                    if a.is_empty() || a.chars().any(|c| !matches!(c, 'r' | 'w' | 'm')) {
                        invalid!("device rule access {a:?} is invalid (want a combination of r, w, m)");
                    }
                }
            }
        }
        Ok(())
    }

    /// mkdir -p in every hierarchy, recording each directory this call created.
    pub fn create(&mut self) -> Result<()> {
        let dirs: Vec<CgroupDir> = self.state.dirs.clone();
        for d in &dirs {
            // A shared parent ("/berth") can be removed by another container's
            // cleanup between our check and our mkdir: then start over.
            let mut tries = 0;
            loop {
                match self.create_one(d) {
                    Err(e) if e.raw_os_error() == Some(libc::ENOENT) && tries < 10 => tries += 1,
                    r => break r?,
                }
            }
        }
        Ok(())
    }

    fn create_one(&mut self, d: &CgroupDir) -> Result<()> {
        let mut missing = Vec::new();
        let mut p = d.path.as_path();
        while !p.exists() {
            missing.push(p.to_path_buf());
            match p.parent() {
                Some(q) => p = q,
                None => break,
            }
        }
        let v2 = d.v2 && self.state.layout == Layout::V2;
        let mount = self.v2_mount().unwrap_or_default();
        if v2 {
            v2::enable_controllers(&d.path, &mount)?;
        }
        for m in missing.into_iter().rev() {
            match std::fs::create_dir(&m) {
                Ok(()) => {
                    if !self.state.created.contains(&m) {
                        self.state.created.push(m.clone());
                    }
                }
                Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {}
                Err(e) => return Err(Error::io(format!("create cgroup {}", m.display()), e)),
            }
            if d.controllers.iter().any(|c| c == "cpuset") {
                v1::init_cpuset(&m)?;
            }
            if v2 && m != d.path {
                // Intermediate directories pass the controllers down too.
                v2::enable_controllers(&d.path, &mount)?;
            }
        }
        Ok(())
    }

    pub fn apply(&self, r: &LinuxResources) -> Result<()> {
        let r = &normalize(r);
        for d in &self.state.dirs {
            if d.v2 {
                if self.state.layout == Layout::V2 {
                    v2::apply(&d.path, r)?;
                } else if let Some(u) = r.unified() {
                    v2::apply_unified(&d.path, u)?;
                }
            } else {
                v1::apply(&d.path, &d.controllers, r)?;
            }
        }
        Ok(())
    }

    pub fn add_pid(&self, pid: i32) -> Result<()> {
        for d in &self.state.dirs {
            write(&d.path.join("cgroup.procs"), &pid.to_string())?;
        }
        Ok(())
    }

    /// Every process in the container's cgroup.
    pub fn pids(&self) -> Result<Vec<i32>> {
        let dir = self
            .v1("pids")
            .or_else(|| self.v1("freezer"))
            .or_else(|| self.v1("memory"))
            .or_else(|| self.v2_dir())
            .or_else(|| self.state.dirs.first().map(|d| d.path.as_path()));
        let Some(dir) = dir else { return Ok(Vec::new()) };
        let mut out = Vec::new();
        collect_procs(dir, &mut out)?;
        out.sort_unstable();
        out.dedup();
        Ok(out)
    }

    /// Processes the kernel's OOM killer killed in this cgroup (v1 `memory.oom_control`,
    /// v2 `memory.events`); 0 when unknown.
    pub fn oom_kills(&self) -> u64 {
        let read = |p: PathBuf| {
            std::fs::read_to_string(p)
                .ok()
                .and_then(|t| t.lines().find_map(|l| l.strip_prefix("oom_kill ").and_then(|n| n.trim().parse().ok())))
        };
        if let Some(dir) = self.v1("memory") {
            return read(dir.join("memory.oom_control")).unwrap_or(0);
        }
        self.v2_dir().and_then(|d| read(d.join("memory.events"))).unwrap_or(0)
    }

    pub fn freeze(&self) -> Result<()> {
        self.set_frozen(true)
    }

    pub fn thaw(&self) -> Result<()> {
        self.set_frozen(false)
    }

    fn set_frozen(&self, on: bool) -> Result<()> {
        if let Some(dir) = self.v1("freezer") {
            return v1::set_frozen(dir, on);
        }
        if let Some(dir) = self.v2_dir() {
            if dir.join("cgroup.freeze").exists() {
                return v2::set_frozen(dir, on);
            }
        }
        invalid!("pausing needs the freezer cgroup controller, which this host does not offer")
    }

    pub fn is_frozen(&self) -> Result<bool> {
        if let Some(dir) = self.v1("freezer") {
            let s = read(&dir.join("freezer.state"))?;
            return Ok(s.trim() == "FROZEN" || s.trim() == "FREEZING");
        }
        if let Some(dir) = self.v2_dir() {
            let f = dir.join("cgroup.freeze");
            if f.exists() {
                return Ok(read(&f)?.trim() == "1");
            }
        }
        Ok(false)
    }

    pub fn stats(&self) -> Result<Stats> {
        let mut s = Stats::default();
        if let Some(dir) = self.v1("memory") {
            v1::memory_stats(dir, &mut s)?;
        } else if let Some(Backend::V2(dir)) = self.provider("memory", "memory") {
            v2::memory_stats(dir, &mut s)?;
        }
        if let Some(dir) = self.v1("cpuacct") {
            v1::cpuacct_stats(dir, &mut s)?;
        }
        if let Some(dir) = self.v1("cpu") {
            v1::cpu_throttle_stats(dir, &mut s);
        }
        if let Some(Backend::V2(dir)) = self.provider("cpu", "cpu") {
            v2::cpu_stats(dir, &mut s)?;
        }
        if let Some(dir) = self.dir("pids") {
            s.pids_current = read_u64(&dir.join("pids.current")).unwrap_or(0);
            s.pids_limit = read(&dir.join("pids.max")).ok().and_then(|v| v.trim().parse().ok());
        }
        Ok(s)
    }

    /// For the container's /sys/fs/cgroup: (name under /sys/fs/cgroup, host dir to bind).
    /// A pure v2 host gives one entry with an empty name.
    pub fn container_mounts(&self) -> Vec<(String, PathBuf)> {
        self.state.dirs.iter().map(|d| (d.name.clone(), d.path.clone())).collect()
    }

    /// rmdir the directories this manager created (deepest first); no-op for others.
    /// Sub-cgroups the container made inside its own cgroup go too.
    pub fn destroy(&self) -> Result<()> {
        let mut first_err = None;
        for dir in self.state.created.iter().rev() {
            if !dir.exists() {
                continue;
            }
            let leaf = self.state.dirs.iter().any(|d| &d.path == dir);
            // Only the container's own cgroup is removed with what is inside it; a
            // parent is removed only when empty (it may hold other containers).
            let r = if leaf {
                remove_tree(dir)
            } else {
                std::fs::remove_dir(dir).map_err(|e| Error::io(format!("remove cgroup {}", dir.display()), e))
            };
            match r {
                Ok(()) => {}
                // A shared parent ("/berth") still in use by other containers stays.
                Err(e)
                    if !leaf
                        && matches!(
                            e.raw_os_error(),
                            Some(libc::EBUSY) | Some(libc::ENOTEMPTY) | Some(libc::ENOENT)
                        ) => {}
                Err(e) => {
                    if first_err.is_none() {
                        first_err = Some(e);
                    }
                }
            }
        }
        match first_err {
            Some(e) => Err(e),
            None => Ok(()),
        }
    }
}

enum Backend<'a> {
    V1(&'a Path),
    V2(&'a Path),
}

/// The nearest existing ancestor of `p` (for probing which files a controller offers).
fn existing_ancestor(p: &Path) -> PathBuf {
    let mut q = p;
    while !q.exists() {
        match q.parent() {
            Some(x) => q = x,
            None => break,
        }
    }
    q.to_path_buf()
}

fn check_cpulist(s: &str, what: &str) -> Result<()> {
    for part in s.split(',') {
        let ok = match part.split_once('-') {
            Some((a, b)) => a.trim().parse::<u32>().is_ok() && b.trim().parse::<u32>().is_ok(),
            None => part.trim().parse::<u32>().is_ok(),
        };
        if !ok {
            invalid!("cpuset {what} {s:?} is not a list like \"0-2,4\"");
        }
    }
    Ok(())
}

fn collect_procs(dir: &Path, out: &mut Vec<i32>) -> Result<()> {
    let s = read(&dir.join("cgroup.procs"))?;
    out.extend(s.lines().filter_map(|l| l.trim().parse::<i32>().ok()));
    if let Ok(rd) = std::fs::read_dir(dir) {
        for e in rd.flatten() {
            if e.file_type().map(|t| t.is_dir()).unwrap_or(false) {
                collect_procs(&e.path(), out)?;
            }
        }
    }
    Ok(())
}

/// rmdir a cgroup and the sub-cgroups inside it, retrying while the last
/// processes finish exiting.
fn remove_tree(dir: &Path) -> Result<()> {
    if let Ok(rd) = std::fs::read_dir(dir) {
        for e in rd.flatten() {
            if e.file_type().map(|t| t.is_dir()).unwrap_or(false) {
                remove_tree(&e.path())?;
            }
        }
    }
    let mut last = None;
    for i in 0..50 {
        match std::fs::remove_dir(dir) {
            Ok(()) => return Ok(()),
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(()),
            Err(e) if e.raw_os_error() == Some(libc::EBUSY) => {
                last = Some(e);
                std::thread::sleep(std::time::Duration::from_millis(if i < 10 { 1 } else { 10 }));
            }
            Err(e) => return Err(Error::io(format!("remove cgroup {}", dir.display()), e)),
        }
    }
    Err(Error::io(
        format!("remove cgroup {} (processes still inside)", dir.display()),
        last.unwrap_or_else(|| io::Error::from_raw_os_error(libc::EBUSY)),
    ))
}

pub(crate) fn write(path: &Path, value: &str) -> Result<()> {
    std::fs::write(path, value).map_err(|e| Error::io(format!("write {value:?} to {}", path.display()), e))
}

pub(crate) fn read(path: &Path) -> Result<String> {
    std::fs::read_to_string(path).map_err(|e| Error::io(format!("read {}", path.display()), e))
}

pub(crate) fn read_u64(path: &Path) -> Result<u64> {
    let s = read(path)?;
    s.trim().parse().map_err(|_| Error::Invalid(format!("{}: not a number: {:?}", path.display(), s.trim())))
}

/// Parse "key value" lines (memory.stat, cpu.stat).
pub(crate) fn read_kv(path: &Path) -> Result<BTreeMap<String, u64>> {
    Ok(read(path)?
        .lines()
        .filter_map(|l| {
            let (k, v) = l.split_once(' ')?;
            Some((k.to_string(), v.trim().parse().ok()?))
        })
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;
    use mountinfo::Hierarchy;

    fn hybrid() -> Vec<Hierarchy> {
        let mi = "31 23 0:28 / /sys/fs/cgroup rw,relatime - tmpfs tmpfs rw,mode=755\n\
32 31 0:29 / /sys/fs/cgroup/cpu,cpuacct rw,relatime - cgroup cgroup rw,cpu,cpuacct\n\
35 31 0:32 / /sys/fs/cgroup/memory rw,relatime - cgroup cgroup rw,memory\n\
40 31 0:37 / /sys/fs/cgroup/systemd rw,relatime - cgroup cgroup rw,xattr,name=systemd\n\
41 31 0:38 / /sys/fs/cgroup/unified rw,relatime - cgroup2 cgroup2 rw\n";
        mountinfo::parse(mi)
    }

    #[test]
    fn paths_on_hybrid() {
        let own: BTreeMap<String, PathBuf> = [("memory".to_string(), PathBuf::from("/session/x"))].into();
        let m = Manager::with_hierarchies(&hybrid(), &own, None, "c1").unwrap();
        assert_eq!(m.layout(), Layout::Hybrid);
        let mounts = m.container_mounts();
        assert_eq!(
            mounts,
            vec![
                ("cpu,cpuacct".into(), PathBuf::from("/sys/fs/cgroup/cpu,cpuacct/berth/c1")),
                ("memory".into(), PathBuf::from("/sys/fs/cgroup/memory/berth/c1")),
                ("systemd".into(), PathBuf::from("/sys/fs/cgroup/systemd/berth/c1")),
                ("unified".into(), PathBuf::from("/sys/fs/cgroup/unified/berth/c1")),
            ]
        );
        // Relative paths go below our own cgroup.
        let m = Manager::with_hierarchies(&hybrid(), &own, Some(Path::new("sub/c1")), "c1").unwrap();
        assert_eq!(m.dir("memory").unwrap(), Path::new("/sys/fs/cgroup/memory/session/x/sub/c1"));
        assert_eq!(m.dir("cpu").unwrap(), Path::new("/sys/fs/cgroup/cpu,cpuacct/sub/c1"));
    }

    #[test]
    fn refuses_systemd_and_dotdot() {
        let own = BTreeMap::new();
        let e = Manager::with_hierarchies(&hybrid(), &own, Some(Path::new("system.slice:berth:c1")), "c1").unwrap_err();
        assert!(e.to_string().contains("systemd form"), "{e}");
        let e = Manager::with_hierarchies(&hybrid(), &own, Some(Path::new("/a/../../etc")), "c1").unwrap_err();
        assert!(e.to_string().contains(".."), "{e}");
    }

    #[test]
    fn pure_v2() {
        let mi = "30 23 0:26 / /sys/fs/cgroup rw,nosuid - cgroup2 cgroup2 rw,nsdelegate\n";
        let m = Manager::with_hierarchies(&mountinfo::parse(mi), &BTreeMap::new(), None, "c").unwrap();
        assert_eq!(m.layout(), Layout::V2);
        assert_eq!(m.container_mounts(), vec![(String::new(), PathBuf::from("/sys/fs/cgroup/berth/c"))]);
    }

    #[test]
    fn zeros_mean_unset() {
        let r: LinuxResources = serde_json::from_str(
            r#"{"cpu":{"shares":0,"quota":0,"period":0,"cpus":"0"},"blockIO":{"weight":0,"leafWeight":0}}"#,
        )
        .unwrap();
        let n = normalize(&r);
        let c = n.cpu().as_ref().unwrap();
        assert_eq!((c.shares(), c.quota(), c.period()), (None, None, None));
        assert_eq!(c.cpus().as_deref(), Some("0"));
        let b = n.block_io().as_ref().unwrap();
        assert_eq!((b.weight(), b.leaf_weight()), (None, None));
        let r: LinuxResources = serde_json::from_str(r#"{"cpu":{"shares":512,"quota":-1}}"#).unwrap();
        assert_eq!(normalize(&r), r);
    }
}
