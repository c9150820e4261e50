//! berth-cgroups: create, configure, query and remove the cgroup of one container.
//!
//! Works on cgroup v1, v2 (unified) and hybrid hosts (v1 controllers plus an
//! empty cgroup2 mount at /sys/fs/cgroup/unified). Never removes a cgroup
//! directory it did not create itself (see [`CgroupState::created`]).
//!
//! PUBLIC API CONTRACT (used by berth-runtime; keep these signatures):
//!
//! ```ignore
//! pub enum Layout { V1, V2, Hybrid }
//! pub fn detect_layout() -> Result<Layout>;
//! #[derive(Serialize, Deserialize, Clone, Debug)]
//! pub struct CgroupState { .. pub created: Vec<PathBuf>, .. }   // persisted in the container state file
//! pub struct Manager;
//! impl Manager {
//!     /// `cgroups_path`: the spec's linux.cgroupsPath (absolute = from the hierarchy root,
//!     /// relative = below this process's own cgroup); None => "/berth/<id>".
//!     /// The systemd form "slice:prefix:name" is refused with a clear error.
//!     pub fn new(cgroups_path: Option<&Path>, id: &str) -> Result<Manager>;
//!     pub fn from_state(state: CgroupState) -> Manager;
//!     pub fn state(&self) -> CgroupState;
//!     /// Check resources can be honoured on this host (before anything is created).
//!     pub fn validate(&self, resources: &LinuxResources) -> Result<()>;
//!     /// mkdir -p in every hierarchy, recording each directory this call created.
//!     pub fn create(&mut self) -> Result<()>;
//!     pub fn apply(&self, resources: &LinuxResources) -> Result<()>;
//!     pub fn add_pid(&self, pid: i32) -> Result<()>;
//!     pub fn pids(&self) -> Result<Vec<i32>>;
//!     pub fn freeze(&self) -> Result<()>;
//!     pub fn thaw(&self) -> Result<()>;
//!     pub fn is_frozen(&self) -> Result<bool>;
//!     pub fn stats(&self) -> Result<Stats>;
//!     /// For the container's /sys/fs/cgroup: (name under /sys/fs/cgroup, host dir to bind).
//!     pub fn container_mounts(&self) -> Vec<(String, PathBuf)>;
//!     /// rmdir the directories this manager created (deepest first); no-op for others.
//!     pub fn destroy(&self) -> Result<()>;
//! }
//! ```
