//! Containers and their lifecycle, kept on disk so that the daemon can die and come back.
//!
//! ```text
//! <data-root>/containers/<id>/config.json   the record (Docker's Config, HostConfig, State)
//! <data-root>/containers/<id>/<id>-json.log the json-file log (written by the monitor)
//! <data-root>/containers/<id>/rw/           overlay upper + work dirs
//! <data-root>/containers/<id>/rootfs/       the overlay mount while running
//! <data-root>/containers/<id>/etc/          hostname, hosts, resolv.conf (bind-mounted)
//! <exec-root>/c/<first 16 hex of id>/       config.json (OCI bundle), monitor.sock, console.sock,
//!                                           status, exit.json, monitor.log
//! <exec-root>/runtime/                      the OCI runtime's state root
//! ```
//!
//! Invariants: a record is written (atomically, tmp + rename) before the state it describes
//! is acted on; the rootfs is mounted only while a monitor runs; a container's image is held
//! in the image store (GC keeps it) from create to remove.

use crate::http::{ApiError, ApiResult};
use crate::logs::LogOpts;
use crate::spec;
use berth_image::ImageStore;
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};
use std::collections::BTreeMap;
use std::io::{BufRead, BufReader, Read, Write};
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Condvar, Mutex};
use std::time::{Duration, Instant};

#[derive(Serialize, Deserialize, Clone, Debug, Default)]
pub struct ContainerState {
    /// created, running, paused, restarting, exited, dead
    pub status: String,
    pub pid: i32,
    pub exit_code: i32,
    pub error: String,
    pub started_at: String,
    pub finished_at: String,
    /// Exits seen so far (for `wait?condition=next-exit`).
    #[serde(default)]
    pub exits: u64,
    /// Stopped by a user (stop/kill): restart policies other than `always` do not apply.
    #[serde(default)]
    pub stopped_by_user: bool,
    /// The kernel's OOM killer struck in the container's last run.
    #[serde(default)]
    pub oom_killed: bool,
}

#[derive(Serialize, Deserialize, Clone, Debug)]
pub struct Container {
    pub id: String,
    pub name: String,
    pub created: String,
    /// The image as the user named it, and its id.
    pub image: String,
    pub image_id: String,
    pub config: Value,
    pub host_config: Value,
    pub path: String,
    pub args: Vec<String>,
    pub state: ContainerState,
    #[serde(default)]
    pub restart_count: u64,
    /// Binds, volumes (resolved to their directories) and tmpfs mounts.
    #[serde(default)]
    pub mounts: Vec<spec::MountPoint>,
    /// `State.Health` of a container with a healthcheck.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub health: Option<crate::health::Health>,
    /// Its endpoints while it runs (the first: `eth0`, the published ports).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub attached: Vec<crate::network::Attached>,
    /// Records before `attached`: the one endpoint (moved into `attached` at load).
    #[serde(default, skip_serializing)]
    network: Option<crate::network::Attached>,
    /// Other names it answers to on its NetworkMode's network (`--network-alias`, compose's
    /// service name).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub aliases: Vec<String>,
    /// Networks it is on besides its NetworkMode's (`network connect`, or more than one network
    /// at create): name → its aliases there.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub extra_networks: BTreeMap<String, Vec<String>>,
    /// `network disconnect` took it off its NetworkMode's network.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub left_primary: bool,
}

/// The network a container joins by its NetworkMode (none for host, none, container:<id>).
pub fn network_of(host: &Value) -> Option<String> {
    match host["NetworkMode"].as_str().unwrap_or("") {
        "" | "default" | "bridge" => Some("bridge".into()),
        "host" | "none" => None,
        m if m.starts_with("container:") => None,
        other => Some(other.to_string()),
    }
}

impl Container {
    /// The container's first endpoint (eth0) while it runs.
    pub fn primary(&self) -> Option<&crate::network::Attached> {
        self.attached.first()
    }

    /// The networks it joins when it starts, in order (its NetworkMode's first).
    pub fn networks(&self) -> Vec<String> {
        let own = network_of(&self.host_config).filter(|_| !self.left_primary);
        own.into_iter().chain(self.extra_networks.keys().cloned()).collect()
    }

    /// Its aliases on `network`.
    pub fn aliases_on(&self, network: &str) -> &[String] {
        match self.extra_networks.get(network) {
            Some(a) => a,
            None if network_of(&self.host_config).as_deref() == Some(network) => &self.aliases,
            None => &[],
        }
    }

    /// Whether it is on `network` (running or not).
    pub fn on_network(&self, network: &str) -> bool {
        self.networks().iter().any(|n| n == network)
    }

    /// Whether it has a network namespace of the daemon's making (not host, none or another
    /// container's).
    pub fn own_netns(&self) -> bool {
        network_of(&self.host_config).is_some()
    }

    pub fn running(&self) -> bool {
        matches!(self.state.status.as_str(), "running" | "paused" | "restarting")
    }
    pub fn tty(&self) -> bool {
        self.config["Tty"].as_bool().unwrap_or(false)
    }
}

/// A client that attached before the container started; connected to the monitor at start.
struct PendingAttach {
    client: UnixStream,
    early: Vec<u8>,
    stdin: bool,
    stdout: bool,
    stderr: bool,
}

pub struct Daemon {
    pub data_root: PathBuf,
    pub exec_root: PathBuf,
    pub images: ImageStore,
    pub volumes: crate::volumes::Volumes,
    pub events: crate::events::Events,
    pub net: crate::network::Networking,
    containers: Mutex<BTreeMap<String, Container>>,
    changed: Condvar,
    pending: Mutex<BTreeMap<String, Vec<PendingAttach>>>,
    /// Serialises start/stop/remove of containers.
    ops: Mutex<()>,
    /// The berth binary, as the daemon was started (for monitors' argv[0]).
    pub(crate) exe: PathBuf,
    /// Execs (kept in memory, as Docker does): id → record.
    pub(crate) execs: Mutex<BTreeMap<String, crate::exec::Exec>>,
    /// The last exit code of recently removed containers (the newest 256), for a
    /// `wait?condition=removed` that wakes only after an auto-remove took the record.
    removed_exits: Mutex<std::collections::VecDeque<(String, i32)>>,
}

pub(crate) fn random_id() -> String {
    let mut b = [0u8; 32];
    if let Ok(mut f) = std::fs::File::open("/dev/urandom") {
        let _ = f.read_exact(&mut b);
    }
    b.iter().map(|x| format!("{x:02x}")).collect()
}

fn write_atomic(path: &Path, data: &[u8]) -> std::io::Result<()> {
    let tmp = path.with_extension("tmp");
    let mut f = std::fs::File::create(&tmp)?;
    f.write_all(data)?;
    f.sync_all()?;
    std::fs::rename(&tmp, path)
}

/// The exit code in a monitor directory's `exit.json`.
pub(crate) fn read_exit_json(dir: &Path) -> Option<i32> {
    let v: Value = serde_json::from_slice(&std::fs::read(dir.join("exit.json")).ok()?).ok()?;
    v["exit_code"].as_i64().map(|c| c as i32)
}

/// Block until the process of the monitor in `dir` ends: its exit code from the monitor's
/// `wait` answer, or (the monitor died without answering) from `exit.json`; `None` if unknown.
pub(crate) fn wait_monitor(dir: &Path) -> Option<i32> {
    if let Ok(mut s) = UnixStream::connect(dir.join("monitor.sock")) {
        if s.write_all(b"wait\n").is_ok() {
            let mut line = String::new();
            if BufReader::new(&s).read_line(&mut line).is_ok() {
                let code = serde_json::from_str::<Value>(&line).ok().and_then(|v| v["exit_code"].as_i64());
                if let Some(c) = code {
                    return Some(c as i32);
                }
            }
        }
    }
    read_exit_json(dir)
}

/// With `berth daemon --debug`: how long a step of container `id` took, since `t0`.
pub(crate) fn trace(id: &str, step: &str, t0: Instant) {
    if crate::api::DEBUG.load(std::sync::atomic::Ordering::Relaxed) {
        eprintln!("berth daemon: {} {step} at {:.1} ms", &id[..12.min(id.len())], t0.elapsed().as_secs_f64() * 1000.0);
    }
}

/// Docker's name rule: `[a-zA-Z0-9][a-zA-Z0-9_.-]+`.
fn valid_name(n: &str) -> bool {
    let b = n.as_bytes();
    b.len() >= 2
        && b[0].is_ascii_alphanumeric()
        && b[1..].iter().all(|c| c.is_ascii_alphanumeric() || matches!(c, b'_' | b'.' | b'-'))
}

const ADJECTIVES: &[&str] =
    &["brave", "calm", "eager", "fervent", "gallant", "happy", "keen", "lucid", "nifty", "quirky"];
const NOUNS: &[&str] =
    &["archimedes", "bohr", "curie", "darwin", "euler", "fermi", "gauss", "hopper", "lovelace", "noether"];

impl Daemon {
    pub fn open(data_root: &Path, exec_root: &Path) -> Result<Arc<Daemon>, String> {
        Self::open_with(data_root, exec_root, crate::network::NetConfig::default())
    }

    /// As [`Daemon::open`], with the default bridge network's settings.
    pub fn open_with(
        data_root: &Path,
        exec_root: &Path,
        net: crate::network::NetConfig,
    ) -> Result<Arc<Daemon>, String> {
        for d in [data_root.join("containers"), exec_root.join("c"), exec_root.join("runtime")] {
            std::fs::create_dir_all(&d).map_err(|e| format!("creating {}: {e}", d.display()))?;
        }
        let images = ImageStore::open_held(data_root.join("image")).map_err(|e| e.to_string())?;
        let exe = if berth_runtime::sealed::is_sealed() {
            // A detached read-only mount has no path of its own: keep the name we were run as.
            PathBuf::from(std::env::args_os().next().unwrap_or_else(|| "berth".into()))
        } else {
            std::fs::read_link("/proc/self/exe").map_err(|e| format!("locating berth: {e}"))?
        };
        let d = Arc::new(Daemon {
            data_root: data_root.to_path_buf(),
            exec_root: exec_root.to_path_buf(),
            images,
            volumes: crate::volumes::Volumes::open(&data_root.join("volumes"))?,
            events: Default::default(),
            net: crate::network::Networking::open(data_root, exec_root, net)?,
            containers: Mutex::new(BTreeMap::new()),
            changed: Condvar::new(),
            pending: Mutex::new(BTreeMap::new()),
            ops: Mutex::new(()),
            exe,
            execs: Mutex::new(BTreeMap::new()),
            removed_exits: Mutex::new(std::collections::VecDeque::new()),
        });
        d.load()?;
        // Embedded DNS: a name on a network is a running container's name, alias, hostname or id.
        let weak = Arc::downgrade(&d);
        d.net.start_dns(Arc::new(move |net: &str, client: std::net::Ipv4Addr, name: &str| {
            let Some(d) = weak.upgrade() else { return Vec::new() };
            let all = d.lock();
            // The networks to look in: the one asked on first, then the asker's others.
            let mut nets = vec![net.to_string()];
            let client = client.to_string();
            let asker = all.values().find(|c| c.attached.iter().any(|a| a.network == net && a.ip == client));
            if let Some(c) = asker {
                nets.extend(c.attached.iter().map(|a| a.network.clone()).filter(|n| n != net));
            }
            for n in &nets {
                let found: Vec<std::net::Ipv4Addr> = all
                    .values()
                    .filter_map(|c| c.attached.iter().find(|a| &a.network == n).map(|a| (c, a)))
                    .filter(|(c, _)| {
                        c.name.eq_ignore_ascii_case(name)
                            || c.aliases_on(n).iter().any(|a| a.eq_ignore_ascii_case(name))
                            || c.config["Hostname"].as_str().is_some_and(|h| h.eq_ignore_ascii_case(name))
                            || (name.len() >= 12 && c.id.starts_with(name))
                    })
                    .filter_map(|(_, a)| a.ip.parse().ok())
                    .collect();
                if !found.is_empty() {
                    return found;
                }
            }
            Vec::new()
        }));
        Ok(d)
    }

    /// A command running this berth binary. A daemon that sealed itself (runs from a read-only
    /// mount of its binary: CVE-2019-5736) hands that mount on through `/proc/self/exe`, so
    /// monitors are sealed from birth and skip their own re-exec.
    pub(crate) fn berth_command(&self) -> std::process::Command {
        use std::os::unix::process::CommandExt;
        if berth_runtime::sealed::is_sealed() {
            let mut cmd = std::process::Command::new("/proc/self/exe");
            cmd.arg0(&self.exe);
            cmd
        } else {
            std::process::Command::new(&self.exe)
        }
    }

    /// `<data-root>/containers/<id>`: the record, log, rw layer, rootfs mount point, etc files.
    pub fn dir(&self, id: &str) -> PathBuf {
        self.data_root.join("containers").join(id)
    }
    /// Short (`c/<16 hex>`): unix socket paths live here, and must stay under 108 bytes.
    pub(crate) fn exec_dir(&self, id: &str) -> PathBuf {
        self.exec_root.join("c").join(&id[..16.min(id.len())])
    }
    pub(crate) fn runtime_root(&self) -> PathBuf {
        self.exec_root.join("runtime")
    }
    pub fn log_path(&self, id: &str) -> PathBuf {
        self.dir(id).join(format!("{id}-json.log"))
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, BTreeMap<String, Container>> {
        self.containers.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn save(&self, c: &Container) -> ApiResult<()> {
        let data = serde_json::to_vec_pretty(c).unwrap_or_default();
        write_atomic(&self.dir(&c.id).join("config.json"), &data)
            .map_err(|e| ApiError::internal(format!("saving container {}: {e}", c.id)))
    }

    /// Update a container's record (in memory and on disk) and wake waiters.
    pub(crate) fn update(&self, id: &str, f: impl FnOnce(&mut Container)) -> ApiResult<Container> {
        let mut all = self.lock();
        let c = all.get_mut(id).ok_or_else(|| ApiError::not_found(format!("No such container: {id}")))?;
        f(c);
        let c = c.clone();
        drop(all);
        self.save(&c)?;
        self.changed.notify_all();
        Ok(c)
    }

    /// Load records; re-adopt running containers whose monitor lives, settle the others.
    fn load(self: &Arc<Self>) -> Result<(), String> {
        let dir = self.data_root.join("containers");
        let rd = std::fs::read_dir(&dir).map_err(|e| format!("listing {}: {e}", dir.display()))?;
        for e in rd.flatten() {
            if e.file_name().to_string_lossy().starts_with('.') {
                continue; // `.removing-<id>`: see `recover`
            }
            let p = e.path().join("config.json");
            let Ok(data) = std::fs::read(&p) else { continue };
            let Ok(mut c) = serde_json::from_slice::<Container>(&data) else {
                eprintln!("berth daemon: skipping unreadable container record {}", p.display());
                continue;
            };
            if let Some(a) = c.network.take() {
                c.attached.insert(0, a);
            }
            self.lock().insert(c.id.clone(), c);
        }
        self.recover();
        let all: Vec<Container> = self.lock().values().cloned().collect();
        for c in all {
            let id = &c.id;
            let live = UnixStream::connect(self.exec_dir(id).join("monitor.sock")).is_ok();
            if c.running() && live {
                self.watch(id);
                self.watch_health(&c, false);
            } else if c.running() {
                let code = self.read_exit(id).unwrap_or(255);
                self.exited(id, code);
            } else if live {
                // A start the crash interrupted after the monitor came up: finish it.
                let dir = self.exec_dir(id);
                let started = match std::fs::read_to_string(dir.join("status")) {
                    Ok(s) if s.starts_with("error: ") => Err(ApiError::bad(s)),
                    Ok(s) => Ok(s.trim().parse().unwrap_or(0)),
                    Err(_) => Self::tell_start(&dir),
                };
                match started {
                    Ok(pid) => {
                        let _ = self.update(id, |c| {
                            c.state.status = "running".into();
                            c.state.pid = pid;
                            c.state.started_at = berth_runtime::state::now_rfc3339();
                        });
                        self.watch(id);
                        self.watch_health(&c, true);
                    }
                    Err(e) => {
                        eprintln!("berth daemon: finishing the start of {id}: {}", e.message);
                        self.cleanup_run(id);
                    }
                }
            } else {
                // Not running: nothing of a run may remain (a crash mid-start leaves a mount).
                self.cleanup_run(id);
                let _ = std::fs::remove_dir_all(self.exec_dir(id));
                if !c.attached.is_empty() {
                    let _ = self.update(id, |c| c.attached.clear());
                }
            }
        }
        // Networking: only running containers keep namespaces, veths, addresses and ports.
        let running: BTreeMap<String, Vec<crate::network::Attached>> = self
            .lock()
            .values()
            .filter(|c| c.running() && !c.attached.is_empty())
            .map(|c| (c.id.clone(), c.attached.clone()))
            .collect();
        self.net.recover(&running);
        Ok(())
    }

    /// After a crash: finish interrupted removals, undo interrupted creates, release image
    /// holds of containers that no longer exist, and drop run state (monitor directories,
    /// runtime state with its cgroups) that no container owns.
    fn recover(&self) {
        // Builds do not survive the daemon: their directories (and mounts) go.
        crate::build::remove_dir_with_mounts(&self.exec_root.join("build"));
        crate::build::remove_dir_with_mounts(&self.images.root().join("build-tmp"));
        let root = self.data_root.join("containers");
        for e in std::fs::read_dir(&root).into_iter().flatten().flatten() {
            let name = e.file_name().to_string_lossy().into_owned();
            if let Some(id) = name.strip_prefix(".removing-") {
                eprintln!("berth daemon: finishing the removal of {id}");
                self.finish_removal(id, &e.path());
            } else if !e.path().join("config.json").exists() && e.path().is_dir() {
                eprintln!("berth daemon: undoing the unfinished create of {name}");
                let made: Vec<String> = std::fs::read(e.path().join("creating.json"))
                    .ok()
                    .and_then(|d| serde_json::from_slice(&d).ok())
                    .unwrap_or_default();
                let used = self.volumes_in_use();
                for v in made.iter().filter(|v| !used.contains(*v)) {
                    let _ = self.volumes.remove(v);
                }
                let _ = berth_image::imagestore::unmount(&e.path().join("rootfs"));
                let _ = std::fs::remove_dir_all(e.path());
                let _ = self.images.release(&name);
            }
        }
        let ids: std::collections::BTreeSet<String> = self.lock().keys().cloned().collect();
        for holder in self.images.holder_names().unwrap_or_default() {
            if !ids.contains(&holder) {
                let _ = self.images.release(&holder);
            }
        }
        let known = |short: &str| ids.iter().any(|id| id.starts_with(short));
        for e in std::fs::read_dir(self.exec_root.join("c")).into_iter().flatten().flatten() {
            let short = e.file_name().to_string_lossy().into_owned();
            if !known(&short) && UnixStream::connect(e.path().join("monitor.sock")).is_err() {
                let _ = std::fs::remove_dir_all(e.path());
            }
        }
        for e in std::fs::read_dir(self.runtime_root()).into_iter().flatten().flatten() {
            let id = e.file_name().to_string_lossy().into_owned();
            if !ids.contains(&id) {
                let _ = berth_runtime::container::delete(&self.runtime_root(), &id, true);
            }
        }
    }

    fn read_exit(&self, id: &str) -> Option<i32> {
        read_exit_json(&self.exec_dir(id))
    }

    pub fn list(&self) -> Vec<Container> {
        let mut v: Vec<Container> = self.lock().values().cloned().collect();
        v.sort_by(|a, b| b.created.cmp(&a.created));
        v
    }

    /// A container by name (with or without `/`), full id or unique id prefix.
    pub fn find(&self, key: &str) -> ApiResult<Container> {
        let all = self.lock();
        let name = key.trim_start_matches('/');
        if let Some(c) = all.get(key) {
            return Ok(c.clone());
        }
        if let Some(c) = all.values().find(|c| c.name == name) {
            return Ok(c.clone());
        }
        let m: Vec<&Container> = all.values().filter(|c| !key.is_empty() && c.id.starts_with(key)).collect();
        match m.as_slice() {
            [c] => Ok((*c).clone()),
            [] => Err(ApiError::not_found(format!("No such container: {key}"))),
            _ => Err(ApiError::bad(format!("multiple IDs found with provided prefix: {key}"))),
        }
    }

    pub fn create(&self, name: Option<&str>, body: &Value) -> ApiResult<Container> {
        if !body.is_object() {
            return Err(ApiError::bad("config cannot be empty in order to create a container"));
        }
        let mut host = body.get("HostConfig").cloned().unwrap_or(json!({}));
        let mut cfg = body.clone();
        if let Some(o) = cfg.as_object_mut() {
            o.remove("HostConfig");
            o.remove("NetworkingConfig");
        }
        spec::check_supported(&cfg, &host)?;
        let mut net_name = network_of(&host);
        if let Some(n) = net_name.as_deref() {
            // 400, not dockerd's 404: on a 404 the docker CLI would try to pull the image.
            let def = self.net.find(n).ok_or_else(|| ApiError::bad(format!("network {n} not found")))?;
            if def.name != n && !matches!(host["NetworkMode"].as_str(), Some("" | "default") | None) {
                // Given by id: recorded by name (a network's records and endpoints use names).
                host["NetworkMode"] = json!(def.name);
                net_name = Some(def.name);
            }
        }
        if let Some(other) = host["NetworkMode"].as_str().and_then(|m| m.strip_prefix("container:")) {
            let o = self.find(other).map_err(|_| ApiError::bad(format!("No such container: {other}")))?;
            // As dockerd: the full id is recorded.
            host["NetworkMode"] = json!(format!("container:{}", o.id));
        }
        let endpoints = &body["NetworkingConfig"]["EndpointsConfig"];
        let mut aliases: Vec<String> = Vec::new();
        // More than one network at create (API 1.44+): the others become extra networks.
        let mut extra_networks = BTreeMap::new();
        let primary = net_name.as_deref().and_then(|n| self.net.find(n)).map(|p| p.id);
        for (key, ep) in endpoints.as_object().into_iter().flatten() {
            if key == "host" || key == "none" {
                continue;
            }
            let def = self.net.find(if key == "default" { "bridge" } else { key });
            let def = def.ok_or_else(|| ApiError::bad(format!("network {key} not found")))?;
            if primary.as_deref() == Some(def.id.as_str()) {
                aliases = spec::strings(&ep["Aliases"]);
                continue;
            }
            if net_name.is_none() {
                return Err(ApiError::bad(format!(
                    "container cannot be connected to network {key}: its network mode is {}",
                    host["NetworkMode"].as_str().unwrap_or("")
                )));
            }
            extra_networks.insert(def.name, spec::strings(&ep["Aliases"]));
        }
        crate::health::validate(&cfg).map_err(ApiError::bad)?;
        let image = cfg["Image"].as_str().unwrap_or("").to_string();
        if image.is_empty() {
            return Err(ApiError::bad("no image specified"));
        }
        let rec = self.images.resolve(&image).map_err(|_| ApiError::not_found(format!("No such image: {image}")))?;
        let image_cfg = self.images.config(&rec).map_err(|e| ApiError::internal(e.to_string()))?;
        let args = spec::command(&cfg, &image_cfg);
        if args.is_empty() {
            return Err(ApiError::bad("no command specified"));
        }
        LogOpts::from_config(&host["LogConfig"]["Config"]).map_err(ApiError::bad)?;
        if let Some(rp) = host["RestartPolicy"]["Name"].as_str() {
            if !matches!(rp, "" | "no" | "always" | "unless-stopped" | "on-failure") {
                return Err(ApiError::bad(format!("invalid restart policy '{rp}'")));
            }
            if rp != "on-failure" && host["RestartPolicy"]["MaximumRetryCount"].as_i64().unwrap_or(0) != 0 {
                return Err(ApiError::bad(format!("maximum retry count cannot be used with restart policy '{rp}'")));
            }
            if !matches!(rp, "" | "no") && host["AutoRemove"].as_bool().unwrap_or(false) {
                return Err(ApiError::conflict("Conflicting options: --restart and --rm"));
            }
        }
        // Validated now so that a bad mount fails create, not start.
        let mut mounts = spec::requested_mounts(&cfg, &host, &image_cfg)?;
        let id = random_id();
        let _guard = self.ops.lock().unwrap_or_else(|e| e.into_inner());
        let name = match name.filter(|n| !n.is_empty()) {
            Some(n) => {
                let n = n.trim_start_matches('/');
                if !valid_name(n) {
                    return Err(ApiError::bad(format!(
                        "Invalid container name ({n}), only [a-zA-Z0-9][a-zA-Z0-9_.-] are allowed"
                    )));
                }
                if let Some(other) = self.lock().values().find(|c| c.name == n) {
                    return Err(ApiError::conflict(format!(
                        "Conflict. The container name \"/{n}\" is already in use by container \"{}\". You have to remove (or rename) that container to be able to reuse that name.",
                        other.id
                    )));
                }
                n.to_string()
            }
            None => {
                let all = self.lock();
                let k = u32::from_str_radix(&id[..4], 16).unwrap_or(0) as usize;
                let base =
                    format!("{}_{}", ADJECTIVES[k % ADJECTIVES.len()], NOUNS[(k / ADJECTIVES.len()) % NOUNS.len()]);
                let mut n = base.clone();
                let mut i = 1;
                while all.values().any(|c| c.name == n) {
                    i += 1;
                    n = format!("{base}{i}");
                }
                n
            }
        };
        // Docker's inspect shows the effective command and the merged environment.
        let mut shown = cfg.clone();
        shown["Image"] = json!(image);
        if shown["Cmd"].is_null() && shown["Entrypoint"].is_null() {
            shown["Cmd"] = image_cfg["config"]["Cmd"].clone();
        }
        if shown["Entrypoint"].is_null() {
            shown["Entrypoint"] = image_cfg["config"]["Entrypoint"].clone();
        }
        let mut env = spec::strings(&image_cfg["config"]["Env"]);
        for e in spec::strings(&cfg["Env"]) {
            let k = e.split('=').next().unwrap_or("").to_string();
            env.retain(|x| x.split('=').next() != Some(k.as_str()));
            env.push(e);
        }
        shown["Env"] = json!(env);
        if shown["Hostname"].as_str().unwrap_or("").is_empty() {
            shown["Hostname"] = json!(id[..12]);
        }
        if shown["Labels"].is_null() {
            shown["Labels"] = image_cfg["config"]["Labels"].clone();
        }
        if shown["Labels"].is_null() {
            shown["Labels"] = json!({});
        }
        if host["LogConfig"]["Type"].as_str().unwrap_or("").is_empty() {
            host["LogConfig"] = json!({"Type": "json-file", "Config": host["LogConfig"]["Config"].clone()});
            if host["LogConfig"]["Config"].is_null() {
                host["LogConfig"]["Config"] = json!({});
            }
        }
        if host["NetworkMode"].as_str().unwrap_or("").is_empty() {
            host["NetworkMode"] = json!("default");
        }
        // Crash safety: the container's directory comes first, with `creating.json` naming the
        // volumes this create makes; the record (config.json) completes the create. A restarted
        // daemon undoes any directory that has no record (`recover`).
        let dir = self.dir(&id);
        for m in mounts.iter_mut().filter(|m| m.kind == "volume" && m.name.is_empty()) {
            m.name = random_id();
        }
        let new_volumes: Vec<String> = mounts
            .iter()
            .filter(|m| m.kind == "volume" && self.volumes.get(&m.name).is_err())
            .map(|m| m.name.clone())
            .collect();
        let undo = |made: &[String]| {
            for n in made {
                let _ = self.volumes.remove(n);
            }
            let _ = self.images.release(&id);
            let _ = std::fs::remove_dir_all(&dir);
        };
        std::fs::create_dir_all(&dir)
            .and_then(|()| match new_volumes.is_empty() {
                true => Ok(()), // nothing to undo but the directory
                false => {
                    write_atomic(&dir.join("creating.json"), &serde_json::to_vec(&new_volumes).unwrap_or_default())
                }
            })
            .map_err(|e| {
                undo(&[]);
                ApiError::internal(format!("creating container: {e}"))
            })?;
        crate::failpoint::hit("create.dir");
        // Volumes: named ones made if missing (as Docker does), anonymous ones made now.
        let mut made: Vec<String> = Vec::new();
        for m in mounts.iter_mut().filter(|m| m.kind == "volume") {
            let existed = self.volumes.get(&m.name).is_ok();
            let v = match self.volumes.create(&m.name, "local", &json!({}), &json!({}), m.anonymous) {
                Ok(v) => v,
                Err(e) => {
                    undo(&made);
                    return Err(e);
                }
            };
            if !existed {
                made.push(v.name.clone());
            }
            m.name = v.name.clone();
            m.source = v.mountpoint.to_string_lossy().into_owned();
        }
        crate::failpoint::hit("create.volumes");
        let c = Container {
            id: id.clone(),
            name,
            created: berth_runtime::state::now_rfc3339(),
            image: image.clone(),
            image_id: rec.id.to_string(),
            config: shown,
            host_config: host,
            path: args[0].clone(),
            args: args[1..].to_vec(),
            state: ContainerState { status: "created".into(), ..Default::default() },
            restart_count: 0,
            mounts,
            health: None,
            attached: Vec::new(),
            network: None,
            aliases,
            extra_networks,
            left_primary: false,
        };
        if let Err(e) = self.images.hold(&id, &rec.id) {
            undo(&made);
            return Err(ApiError::internal(e.to_string()));
        }
        crate::failpoint::hit("create.hold");
        if let Err(e) = self.save(&c) {
            undo(&made);
            return Err(e);
        }
        if !new_volumes.is_empty() {
            let _ = std::fs::remove_file(dir.join("creating.json"));
        }
        crate::failpoint::hit("create.saved");
        self.lock().insert(id, c.clone());
        self.container_event(&c, "create", json!({}));
        Ok(c)
    }

    /// Mount the root filesystem, write the bundle, start the monitor and the container.
    pub fn start(self: &Arc<Self>, key: &str) -> ApiResult<bool> {
        let c = self.find(key)?;
        let result = {
            let _guard = self.ops.lock().unwrap_or_else(|e| e.into_inner());
            let c = self.find(&c.id)?;
            // A restarting container (waiting out its back-off) may be started at once.
            if c.running() && c.state.status != "restarting" {
                return Ok(false);
            }
            self.start_locked(&c)
        };
        match result {
            Ok(()) => {
                if let Ok(c) = self.find(&c.id) {
                    self.container_event(&c, "start", json!({}));
                    self.watch_health(&c, true);
                }
                Ok(true)
            }
            Err(e) => {
                {
                    let _guard = self.ops.lock().unwrap_or_else(|e| e.into_inner());
                    self.cleanup_run(&c.id);
                }
                // Clients attached for this start get nothing more.
                for p in self.pending.lock().unwrap_or_else(|e| e.into_inner()).remove(&c.id).unwrap_or_default() {
                    let _ = p.client.shutdown(std::net::Shutdown::Both);
                }
                let _ = self.update(&c.id, |c| {
                    c.state.error = e.message.clone();
                    c.state.exit_code =
                        if e.message.contains("not found") || e.message.contains("No such file") { 127 } else { 126 };
                    if c.state.status == "running" {
                        c.state.status = "exited".into();
                    }
                });
                if c.host_config["AutoRemove"].as_bool().unwrap_or(false) {
                    let _ = self.remove_with(&c.id, true, true);
                }
                Err(e)
            }
        }
    }

    /// `network connect`: put container `id` on `network` (now, if it runs; at its next start
    /// otherwise), answering to `aliases` there.
    pub fn connect(&self, id: &str, network: &str, aliases: Vec<String>) -> ApiResult<()> {
        let _guard = self.ops.lock().unwrap_or_else(|e| e.into_inner());
        let c = self.find(id)?;
        let mode = c.host_config["NetworkMode"].as_str().unwrap_or("");
        if !c.own_netns() {
            return Err(ApiError::forbidden(match mode {
                "host" => "container cannot be disconnected from host network or connected to host network".to_string(),
                "none" => "container cannot be connected to multiple networks with one of the networks in private (none) mode".to_string(),
                _ => "container sharing network namespace with another container or host cannot be connected to any other network".to_string(),
            }));
        }
        if c.on_network(network) {
            if c.running() {
                return Err(ApiError::forbidden(format!(
                    "endpoint with name {} already exists in network {network}",
                    c.name
                )));
            }
            // Not running: the aliases join those it has there (what compose relies on).
            return self
                .update(id, |c| {
                    let own = network_of(&c.host_config).as_deref() == Some(network);
                    let list =
                        if own { &mut c.aliases } else { c.extra_networks.entry(network.to_string()).or_default() };
                    for a in aliases {
                        if !list.contains(&a) {
                            list.push(a);
                        }
                    }
                })
                .map(|_| ());
        }
        let attached = if c.running() { Some(self.net.connect(id, network)?) } else { None };
        let r = self.update(id, |c| {
            if network_of(&c.host_config).as_deref() == Some(network) {
                c.left_primary = false;
                c.aliases = aliases;
            } else {
                c.extra_networks.insert(network.to_string(), aliases);
            }
            if let Some(a) = attached.clone() {
                c.attached.push(a);
            }
        });
        if r.is_err() && attached.is_some() {
            let _ = self.net.disconnect(id, network);
        }
        r.map(|_| ())
    }

    /// `network disconnect`: take container `id` off `network` (now, if it runs).
    pub fn disconnect(&self, id: &str, network: &str) -> ApiResult<()> {
        let _guard = self.ops.lock().unwrap_or_else(|e| e.into_inner());
        let c = self.find(id)?;
        if c.host_config["NetworkMode"] == "host" {
            return Err(ApiError::forbidden(
                "container cannot be disconnected from host network or connected to host network",
            ));
        }
        if !c.on_network(network) {
            return Err(ApiError::forbidden(format!("container {} is not connected to network {network}", c.id)));
        }
        if c.attached.iter().any(|a| a.network == network) {
            self.net.disconnect(id, network)?;
        }
        self.update(id, |c| {
            c.attached.retain(|a| a.network != network);
            if c.extra_networks.remove(network).is_none() {
                c.left_primary = true;
                c.aliases.clear();
            }
        })
        .map(|_| ())
    }

    fn start_locked(self: &Arc<Self>, c: &Container) -> ApiResult<()> {
        let id = &c.id;
        let internal = |what: &str, e: &dyn std::fmt::Display| ApiError::internal(format!("{what}: {e}"));
        let rec = self.images.resolve(&c.image_id).map_err(|e| internal("image", &e))?;
        let image_cfg = self.images.config(&rec).map_err(|e| internal("image config", &e))?;
        let dir = self.dir(id);
        let rootfs = dir.join("rootfs");
        let exec_dir = self.exec_dir(id);
        let t0 = Instant::now();
        let _ = std::fs::remove_dir_all(&exec_dir);
        std::fs::create_dir_all(&exec_dir).map_err(|e| internal("creating the exec dir", &e))?;
        // Left mounted by a crash?
        let _ = berth_image::imagestore::unmount(&rootfs);
        self.images.mount(&rec, &dir.join("rw"), &rootfs).map_err(|e| internal("mounting the root filesystem", &e))?;
        crate::failpoint::hit("start.mounted");
        trace(id, "start: mounted", t0);
        let etc = dir.join("etc");
        std::fs::create_dir_all(&etc).map_err(|e| internal("creating etc", &e))?;
        let mut hostname = c.config["Hostname"].as_str().unwrap_or(&id[..12]).to_string();
        let mode = c.host_config["NetworkMode"].as_str().unwrap_or("default");
        let mut host_net = mode == "host";
        // `--network container:<id>`: that container's namespace, and its hostname, hosts and
        // resolv.conf.
        let mut joined: Option<(PathBuf, PathBuf)> = None;
        if let Some(other) = mode.strip_prefix("container:") {
            let o = self.find(other)?;
            if !o.running() {
                return Err(ApiError::conflict(format!("cannot join network of a non running container: {}", o.id)));
            }
            let ns = if o.own_netns() {
                self.net.netns_path(&o.id)
            } else {
                PathBuf::from(format!("/proc/{}/ns/net", o.state.pid))
            };
            host_net = o.host_config["NetworkMode"] == "host";
            joined = Some((ns, self.dir(&o.id).join("etc")));
            // As dockerd: the hostname is the other container's too.
            hostname = o.config["Hostname"].as_str().filter(|h| !h.is_empty()).unwrap_or(&o.id[..12]).to_string();
        }
        // On the bridge: namespace, veths, addresses, ports — recorded before the process
        // starts, so that a daemon restarting after a crash knows what this container owns.
        let attached = if c.own_netns() {
            let a = self.net.setup(id, &c.networks(), &c.host_config, &c.config["ExposedPorts"])?;
            self.update(id, |c| c.attached = a.clone())?;
            a
        } else {
            Vec::new()
        };
        let first = attached.first();
        trace(id, "start: network", t0);
        let hn = if host_net {
            std::fs::read_to_string("/etc/hostname").unwrap_or_default()
        } else {
            format!("{hostname}\n")
        };
        let mut hosts = if host_net {
            std::fs::read_to_string("/etc/hosts").unwrap_or_default()
        } else {
            let me = first.map(|a| a.ip.as_str()).unwrap_or("127.0.1.1");
            format!("127.0.0.1\tlocalhost\n::1\tlocalhost ip6-localhost ip6-loopback\n{me}\t{hostname}\n")
        };
        for h in spec::strings(&c.host_config["ExtraHosts"]) {
            if let Some((name, ip)) = h.split_once(':') {
                let ip = match (ip, first) {
                    ("host-gateway", Some(a)) => a.gateway.clone(),
                    ("host-gateway", None) => self.net.cfg.gateway.to_string(),
                    _ => ip.to_string(),
                };
                hosts.push_str(&format!("{ip}\t{name}\n"));
            }
        }
        let embedded = attached.iter().find_map(|a| self.net.nameserver(&a.network));
        let resolv = spec::resolv_conf(&c.host_config, host_net, embedded.as_deref());
        let mut files = [("hostname", hn), ("hosts", hosts), ("resolv.conf", resolv)];
        if let Some((_, other_etc)) = &joined {
            for (f, data) in files.iter_mut() {
                *data = std::fs::read_to_string(other_etc.join(*f)).unwrap_or_default();
            }
        }
        for (f, data) in files {
            std::fs::write(etc.join(f), data).map_err(|e| internal("writing /etc files", &e))?;
        }
        // A new, empty volume gets the image's content at its mount point (Docker's copy-up).
        for m in c.mounts.iter().filter(|m| m.kind == "volume" && !m.no_copy) {
            let data = Path::new(&m.source);
            let empty = std::fs::read_dir(data).map(|mut r| r.next().is_none()).unwrap_or(false);
            let from = rootfs.join(m.destination.trim_start_matches('/'));
            if empty && from.is_dir() && !from.is_symlink() {
                crate::volumes::copy_up(&from, data)
                    .map_err(|e| internal("copying the image's content into the volume", &e))?;
            }
        }
        let mut cfg = c.config.clone();
        // The record shows the merged command; the spec wants the request's split.
        cfg["Entrypoint"] = json!([c.path]);
        cfg["Cmd"] = json!(c.args);
        if joined.is_some() {
            cfg["Hostname"] = json!(hostname);
        }
        let own_ns = self.net.netns_path(id);
        let s = spec::build(&spec::SpecInput {
            id,
            cfg: &cfg,
            host: &c.host_config,
            image_cfg: &image_cfg,
            rootfs: &rootfs,
            files_dir: &etc,
            mounts: &c.mounts,
            netns: match &joined {
                Some((ns, _)) if !host_net => Some(ns.as_path()),
                Some(_) => None,
                None if c.own_netns() => Some(own_ns.as_path()),
                None => None,
            },
            host_net,
        })?;
        std::fs::write(exec_dir.join("config.json"), serde_json::to_vec_pretty(&s).unwrap_or_default())
            .map_err(|e| internal("writing the bundle", &e))?;
        trace(id, "start: bundle written", t0);
        let log = self.log_path(id);
        let lc = &c.host_config["LogConfig"]["Config"];
        let mut cmd = self.berth_command();
        cmd.arg("monitor")
            .arg("--id")
            .arg(id)
            .arg("--bundle")
            .arg(&exec_dir)
            .arg("--runtime-root")
            .arg(self.runtime_root())
            .arg("--dir")
            .arg(&exec_dir)
            .arg("--log")
            .arg(&log)
            .arg("--log-opts")
            .arg(lc.to_string());
        if c.tty() {
            cmd.arg("--tty");
        }
        if c.config["OpenStdin"].as_bool().unwrap_or(false) {
            cmd.arg("--stdin");
        }
        if c.config["StdinOnce"].as_bool().unwrap_or(false) {
            cmd.arg("--stdin-once");
        }
        let pending = self.pending.lock().unwrap_or_else(|e| e.into_inner()).remove(id).unwrap_or_default();
        let sock = exec_dir.join("monitor.sock");
        let pid = self.launch_monitor(cmd, &exec_dir, |_| {
            crate::failpoint::hit("start.monitor");
            for p in pending {
                if let Err(e) = self.bridge(&sock, p.client, p.early, p.stdin, p.stdout, p.stderr, c.tty()) {
                    eprintln!("berth daemon: attach to {id}: {e}");
                }
            }
        })?;
        crate::failpoint::hit("start.started");
        trace(id, "start: process started", t0);
        self.update(id, |c| {
            c.state.status = "running".into();
            c.state.pid = pid;
            c.state.error.clear();
            c.state.started_at = berth_runtime::state::now_rfc3339();
            c.state.stopped_by_user = false;
            c.state.oom_killed = false;
        })?;
        self.watch(id);
        Ok(())
    }

    /// Spawn a monitor (`cmd`) for `dir`, wait for its socket, let `attach` connect clients,
    /// then tell it to start and wait for the outcome: the process's pid.
    pub(crate) fn launch_monitor(
        &self,
        mut cmd: std::process::Command,
        dir: &Path,
        attach: impl FnOnce(&Path),
    ) -> ApiResult<i32> {
        let internal = |what: &str, e: &dyn std::fmt::Display| ApiError::internal(format!("{what}: {e}"));
        cmd.stdin(std::process::Stdio::null()).stdout(std::process::Stdio::null());
        cmd.stderr(std::fs::File::create(dir.join("monitor.log")).map_err(|e| internal("monitor log", &e))?);
        use std::os::unix::process::CommandExt;
        // SAFETY: setsid is async-signal-safe; the monitor leads its own session so that signals
        // to the daemon's process group do not reach it.
        unsafe {
            cmd.pre_exec(|| {
                libc::setsid();
                Ok(())
            });
        }
        let mut child = cmd.spawn().map_err(|e| internal("starting the monitor", &e))?;
        let sock = dir.join("monitor.sock");
        let deadline = Instant::now() + Duration::from_secs(10);
        let monitor_error = |child: &mut std::process::Child| {
            let _ = child.kill();
            let _ = child.wait();
            let msg = std::fs::read_to_string(dir.join("status")).unwrap_or_default();
            let log = std::fs::read_to_string(dir.join("monitor.log")).unwrap_or_default();
            ApiError::internal(format!("the container's monitor failed: {}{}", msg.trim(), log.trim()))
        };
        while UnixStream::connect(&sock).is_err() {
            if Instant::now() > deadline || child.try_wait().ok().flatten().is_some() {
                return Err(monitor_error(&mut child));
            }
            std::thread::sleep(Duration::from_millis(2));
        }
        // Reap the monitor whenever it ends (it is our child while we live).
        std::thread::spawn(move || {
            let _ = child.wait();
        });
        attach(&sock);
        Self::tell_start(dir)
    }

    /// Tell the monitor in `dir` (listening, not yet started) to start its process; wait for
    /// the outcome: the process's pid.
    fn tell_start(dir: &Path) -> ApiResult<i32> {
        let internal = |what: &str, e: &dyn std::fmt::Display| ApiError::internal(format!("{what}: {e}"));
        let sock = dir.join("monitor.sock");
        let mut ctl = UnixStream::connect(&sock).map_err(|e| internal("connecting to the monitor", &e))?;
        ctl.write_all(b"start\n").map_err(|e| internal("starting", &e))?;
        // The monitor answers once the process runs (its pid) or failed to start (why).
        let _ = ctl.set_read_timeout(Some(Duration::from_secs(60)));
        let mut answer = String::new();
        let read = BufReader::new(&ctl).read_line(&mut answer);
        if read
            .as_ref()
            .is_err_and(|e| matches!(e.kind(), std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut))
        {
            return Err(ApiError::internal("the process did not start within 60 s"));
        }
        let status = if answer.trim().is_empty() {
            // The monitor died first; its status file may say why.
            std::fs::read_to_string(dir.join("status"))
                .map_err(|_| ApiError::internal("the monitor exited before the process started"))?
        } else {
            answer
        };
        if let Some(msg) = status.strip_prefix("error: ") {
            return Err(ApiError::bad(msg.trim().to_string()));
        }
        Ok(status.trim().parse().unwrap_or(0))
    }

    /// Connect a client (hijacked connection) to a monitor's socket.
    #[allow(clippy::too_many_arguments)]
    pub(crate) fn bridge(
        &self,
        sock: &Path,
        client: UnixStream,
        early: Vec<u8>,
        stdin: bool,
        stdout: bool,
        stderr: bool,
        tty: bool,
    ) -> std::io::Result<()> {
        let mut m = UnixStream::connect(sock)?;
        m.write_all(format!("attach {} {} {}\n", stdin as u8, stdout as u8, stderr as u8).as_bytes())?;
        let mut ack = [0u8; 8];
        m.read_exact(&mut ack)?;
        if stdin {
            let (mut from, mut to) = (client.try_clone()?, m.try_clone()?);
            std::thread::spawn(move || {
                if !early.is_empty() {
                    let _ = to.write_all(&early);
                }
                let _ = std::io::copy(&mut from, &mut to);
                let _ = to.shutdown(std::net::Shutdown::Write);
            });
        }
        let (mut from, mut to) = (m, client);
        std::thread::spawn(move || {
            // Frames from the monitor: passed on as they are (multiplexed), or unwrapped for a tty.
            let mut head = [0u8; 8];
            let mut buf = Vec::new();
            while from.read_exact(&mut head).is_ok() {
                let n = u32::from_be_bytes([head[4], head[5], head[6], head[7]]) as usize;
                buf.resize(n, 0);
                if from.read_exact(&mut buf).is_err() {
                    break;
                }
                let r = if tty { to.write_all(&buf) } else { to.write_all(&head).and_then(|_| to.write_all(&buf)) };
                if r.is_err() {
                    break;
                }
            }
            let _ = to.shutdown(std::net::Shutdown::Both);
        });
        Ok(())
    }

    /// `attach`: connect now if running, else at start.
    #[allow(clippy::too_many_arguments)]
    pub fn attach(&self, c: &Container, client: UnixStream, early: Vec<u8>, stdin: bool, stdout: bool, stderr: bool) {
        if c.running() {
            let sock = self.exec_dir(&c.id).join("monitor.sock");
            if self.bridge(&sock, client.try_clone().expect("socket"), early, stdin, stdout, stderr, c.tty()).is_err() {
                let _ = client.shutdown(std::net::Shutdown::Both);
            }
        } else {
            self.pending
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .entry(c.id.clone())
                .or_default()
                .push(PendingAttach { client, early, stdin, stdout, stderr });
        }
    }

    /// A thread that waits for the container's exit through the monitor.
    fn watch(self: &Arc<Self>, id: &str) {
        let d = self.clone();
        let id = id.to_string();
        std::thread::spawn(move || {
            let code = wait_monitor(&d.exec_dir(&id)).unwrap_or(255);
            d.exited(&id, code);
        });
    }

    fn cleanup_run(&self, id: &str) {
        let _ = berth_image::imagestore::unmount(&self.dir(id).join("rootfs"));
        let _ = berth_runtime::container::delete(&self.runtime_root(), id, true);
        self.net.teardown(id);
    }

    /// The container's process ended: record it, unmount, then auto-remove or restart.
    fn exited(self: &Arc<Self>, id: &str, code: i32) {
        let oom = std::fs::read(self.exec_dir(id).join("exit.json"))
            .ok()
            .and_then(|d| serde_json::from_slice::<Value>(&d).ok())
            .and_then(|v| v["oom_killed"].as_bool())
            .unwrap_or(false);
        let t0 = Instant::now();
        {
            let _guard = self.ops.lock().unwrap_or_else(|e| e.into_inner());
            trace(id, "exit: locked", t0);
            self.cleanup_run(id);
        }
        trace(id, "exit: cleaned up", t0);
        crate::failpoint::hit("exit.cleaned");
        let Ok(c) = self.update(id, |c| {
            c.state.status = "exited".into();
            c.state.pid = 0;
            c.state.exit_code = code;
            c.state.finished_at = berth_runtime::state::now_rfc3339();
            c.state.exits += 1;
            c.state.oom_killed = oom;
            c.attached.clear();
        }) else {
            return;
        };
        trace(id, "exit: recorded", t0);
        if oom {
            self.container_event(&c, "oom", json!({}));
        }
        self.container_event(&c, "die", json!({"exitCode": code.to_string()}));
        if c.host_config["AutoRemove"].as_bool().unwrap_or(false) {
            let _ = self.remove_with(id, true, true);
            return;
        }
        let policy = c.host_config["RestartPolicy"]["Name"].as_str().unwrap_or("");
        let max = c.host_config["RestartPolicy"]["MaximumRetryCount"].as_u64().unwrap_or(0);
        let restart = match policy {
            "always" | "unless-stopped" => !c.state.stopped_by_user,
            "on-failure" => code != 0 && !c.state.stopped_by_user && (max == 0 || c.restart_count < max),
            _ => false,
        };
        if restart {
            let d = self.clone();
            let id = id.to_string();
            // Docker's back-off: 100 ms, doubling, at most a minute.
            let delay =
                Duration::from_millis(100u64.saturating_mul(1 << c.restart_count.min(10))).min(Duration::from_secs(60));
            let _ = self.update(&id, |c| {
                c.state.status = "restarting".into();
                c.restart_count += 1;
            });
            std::thread::spawn(move || {
                std::thread::sleep(delay);
                let still = d.find(&id).map(|c| c.state.status == "restarting").unwrap_or(false);
                if still {
                    if let Err(e) = d.start(&id) {
                        eprintln!("berth daemon: restarting {id}: {}", e.message);
                    }
                }
            });
        }
    }

    pub fn kill(&self, key: &str, sig: i32) -> ApiResult<()> {
        let c = self.find(key)?;
        if !c.running() || c.state.status == "restarting" {
            return Err(ApiError::conflict(format!("Container {} is not running", c.id)));
        }
        if sig != libc::SIGWINCH {
            let _ = self.update(&c.id, |c| c.state.stopped_by_user = true);
        }
        self.container_event(&c, "kill", json!({"signal": sig.to_string()}));
        berth_runtime::container::kill(&self.runtime_root(), &c.id, sig, false)
            .map_err(|e| ApiError::internal(format!("killing {}: {e}", c.id)))?;
        if c.state.status == "paused" && matches!(sig, libc::SIGKILL | libc::SIGTERM) {
            // A frozen process cannot act on the signal: thaw it, as Docker does on stop.
            let _ = berth_runtime::container::resume(&self.runtime_root(), &c.id);
            let _ = self.update(&c.id, |c| {
                if c.state.status == "paused" {
                    c.state.status = "running".into()
                }
            });
        }
        Ok(())
    }

    /// Wait until `f` holds for the container (or it is gone: `None`), at most `timeout`.
    /// The last exit code of container `id` if it was removed lately.
    pub fn removed_exit(&self, id: &str) -> Option<i32> {
        let q = self.removed_exits.lock().unwrap_or_else(|e| e.into_inner());
        q.iter().rev().find(|(i, _)| i == id).map(|(_, code)| *code)
    }

    pub fn wait_until(&self, id: &str, timeout: Option<Duration>, f: impl Fn(&Container) -> bool) -> Option<Container> {
        let deadline = timeout.map(|t| Instant::now() + t);
        let mut all = self.lock();
        loop {
            match all.get(id) {
                None => return None,
                Some(c) if f(c) => return Some(c.clone()),
                Some(_) => {}
            }
            let wait = match deadline {
                Some(d) => match d.checked_duration_since(Instant::now()) {
                    Some(left) => left,
                    None => return all.get(id).cloned(),
                },
                None => Duration::from_secs(3600),
            };
            all = self.changed.wait_timeout(all, wait).unwrap_or_else(|e| e.into_inner()).0;
        }
    }

    /// `stop`: the stop signal, then SIGKILL after `timeout` seconds. Ok(false): not running.
    pub fn stop(&self, key: &str, timeout: Option<i64>, signal: Option<&str>) -> ApiResult<bool> {
        let c = self.find(key)?;
        if c.state.status == "restarting" {
            self.update(&c.id, |c| {
                c.state.status = "exited".into();
                c.state.stopped_by_user = true;
            })?;
            return Ok(true);
        }
        if !c.running() {
            return Ok(false);
        }
        let sig_name = signal
            .map(String::from)
            .or_else(|| c.config["StopSignal"].as_str().map(String::from))
            .unwrap_or_else(|| "SIGTERM".into());
        let sig = berth_runtime::container::parse_signal(&sig_name).map_err(|e| ApiError::bad(e.to_string()))?;
        let t = timeout.or_else(|| c.config["StopTimeout"].as_i64()).unwrap_or(10);
        let _ = self.kill(&c.id, sig);
        let not_running = |c: &Container| !c.running();
        let done = t >= 0
            && self.wait_until(&c.id, Some(Duration::from_secs(t as u64)), not_running).is_none_or(|c| !c.running());
        if !done {
            let _ = self.kill(&c.id, libc::SIGKILL);
            self.wait_until(&c.id, Some(Duration::from_secs(30)), not_running);
        }
        self.container_event(&c, "stop", json!({}));
        Ok(true)
    }

    pub fn remove(&self, key: &str, force: bool) -> ApiResult<()> {
        self.remove_with(key, force, false)
    }

    /// Names of volumes some container (in any state) mounts.
    pub fn volumes_in_use(&self) -> std::collections::BTreeSet<String> {
        self.lock()
            .values()
            .flat_map(|c| c.mounts.iter().filter(|m| m.kind == "volume").map(|m| m.name.clone()))
            .collect()
    }

    /// `rm`; with `volumes`, the container's anonymous volumes go too (unless another uses them).
    pub fn remove_with(&self, key: &str, force: bool, volumes: bool) -> ApiResult<()> {
        let c = self.find(key)?;
        if c.running() {
            if !force {
                return Err(ApiError::conflict(format!(
                    "cannot remove container \"/{}\": container is running: stop the container before removing or force remove",
                    c.name
                )));
            }
            let _ = self.kill(&c.id, libc::SIGKILL);
            self.wait_until(&c.id, Some(Duration::from_secs(30)), |c| !c.running());
        }
        let t0 = Instant::now();
        let _guard = self.ops.lock().unwrap_or_else(|e| e.into_inner());
        trace(&c.id, "rm: locked", t0);
        self.cleanup_run(&c.id);
        let _ = std::fs::remove_dir_all(self.exec_dir(&c.id));
        trace(&c.id, "rm: cleaned up", t0);
        // Crash safety: the directory is renamed out of the way first (one atomic step: a
        // restarted daemon sees the container whole or going), then its volumes, its files and
        // its image hold go; `recover` finishes a removal a crash interrupted.
        let dir = self.dir(&c.id);
        if volumes {
            std::fs::write(dir.join("remove-volumes"), b"")
                .map_err(|e| ApiError::internal(format!("removing container {}: {e}", c.id)))?;
        }
        let going = self.data_root.join("containers").join(format!(".removing-{}", c.id));
        std::fs::rename(&dir, &going).map_err(|e| ApiError::internal(format!("removing container {}: {e}", c.id)))?;
        {
            let mut all = self.lock();
            if let Some(gone) = all.remove(&c.id) {
                let mut q = self.removed_exits.lock().unwrap_or_else(|e| e.into_inner());
                q.push_back((gone.id.clone(), gone.state.exit_code));
                if q.len() > 256 {
                    q.pop_front();
                }
            }
        }
        crate::failpoint::hit("rm.renamed");
        for p in self.pending.lock().unwrap_or_else(|e| e.into_inner()).remove(&c.id).unwrap_or_default() {
            let _ = p.client.shutdown(std::net::Shutdown::Both);
        }
        drop(_guard);
        // The rest needs no lock: the container is gone from the map and its files renamed.
        trace(&c.id, "rm: renamed", t0);
        self.finish_removal(&c.id, &going);
        trace(&c.id, "rm: removed", t0);
        self.changed.notify_all();
        self.container_event(&c, "destroy", json!({}));
        Ok(())
    }

    /// The rest of a removal, from the renamed directory: anonymous volumes (if asked), the
    /// files, the image hold. Also what `recover` runs for a removal a crash interrupted.
    fn finish_removal(&self, id: &str, going: &Path) {
        if going.join("remove-volumes").exists() {
            let used = self.volumes_in_use();
            let rec = std::fs::read(going.join("config.json"))
                .ok()
                .and_then(|d| serde_json::from_slice::<Container>(&d).ok());
            for m in rec.iter().flat_map(|c| c.mounts.iter()) {
                if m.kind == "volume" && m.anonymous && !used.contains(&m.name) {
                    let _ = self.volumes.remove(&m.name);
                }
            }
            crate::failpoint::hit("rm.volumes");
        }
        // A crash may have left the root filesystem mounted; never delete through a mount.
        let _ = berth_image::imagestore::unmount(&going.join("rootfs"));
        if let Err(e) = std::fs::remove_dir_all(going) {
            eprintln!("berth daemon: removing {}: {e}", going.display());
        }
        crate::failpoint::hit("rm.deleted");
        let _ = self.images.release(id);
    }

    pub fn container_event(&self, c: &Container, action: &str, extra: Value) {
        let mut attrs = json!({"image": c.image, "name": c.name});
        if let Some(l) = c.config["Labels"].as_object() {
            for (k, v) in l {
                attrs[k] = v.clone();
            }
        }
        if let Some(e) = extra.as_object() {
            for (k, v) in e {
                attrs[k] = v.clone();
            }
        }
        self.events.emit("container", action, &c.id, attrs);
    }

    /// Start the healthcheck prober of a running container (if it has a check).
    fn watch_health(self: &Arc<Self>, c: &Container, fresh: bool) {
        if let Ok(rec) = self.images.resolve(&c.image_id) {
            if let Ok(image_cfg) = self.images.config(&rec) {
                crate::health::watch(self, c, &image_cfg, fresh);
            }
        }
    }

    /// Change a container's `State.Health` (made if missing).
    pub fn set_health(&self, id: &str, f: impl FnOnce(&mut crate::health::Health)) -> ApiResult<()> {
        self.update(id, |c| f(c.health.get_or_insert_with(Default::default))).map(|_| ())
    }

    /// The container's cgroup directories (from the runtime's state), if it runs.
    pub fn cgroup_dirs(&self, c: &Container) -> Option<Vec<berth_cgroups::CgroupDir>> {
        if !c.running() {
            return None;
        }
        berth_runtime::container::load(&self.runtime_root(), &c.id).ok().map(|(_, st)| st.cgroup.dirs)
    }

    /// `pause` (freezer cgroup).
    pub fn pause(&self, key: &str) -> ApiResult<()> {
        let c = self.find(key)?;
        let _guard = self.ops.lock().unwrap_or_else(|e| e.into_inner());
        match c.state.status.as_str() {
            "running" => {}
            "paused" => return Err(ApiError::conflict(format!("Container {} is already paused", c.id))),
            _ => return Err(ApiError::conflict(format!("Container {} is not running", c.id))),
        }
        berth_runtime::container::pause(&self.runtime_root(), &c.id)
            .map_err(|e| ApiError::internal(format!("pausing {}: {e}", c.id)))?;
        let c = self.update(&c.id, |c| c.state.status = "paused".into())?;
        self.container_event(&c, "pause", json!({}));
        Ok(())
    }

    /// `unpause`.
    pub fn unpause(&self, key: &str) -> ApiResult<()> {
        let c = self.find(key)?;
        let _guard = self.ops.lock().unwrap_or_else(|e| e.into_inner());
        if c.state.status != "paused" {
            return Err(ApiError::conflict(format!("Container {} is not paused", c.id)));
        }
        berth_runtime::container::resume(&self.runtime_root(), &c.id)
            .map_err(|e| ApiError::internal(format!("unpausing {}: {e}", c.id)))?;
        let c = self.update(&c.id, |c| {
            if c.state.status == "paused" {
                c.state.status = "running".into()
            }
        })?;
        self.container_event(&c, "unpause", json!({}));
        Ok(())
    }

    /// `update`: resources (applied to the running container's cgroups at once) and the
    /// restart policy; both kept in the record for later starts.
    pub fn update_resources(&self, key: &str, body: &Value) -> ApiResult<()> {
        let c = self.find(key)?;
        let obj = body.as_object().ok_or_else(|| ApiError::bad("update: the body must be a JSON object"))?;
        const SUPPORTED: &[&str] =
            &["Memory", "MemorySwap", "NanoCpus", "CpuShares", "CpuQuota", "CpuPeriod", "PidsLimit", "RestartPolicy"];
        for (k, v) in obj {
            let set = match v {
                Value::Null => false,
                Value::Number(n) => n.as_f64() != Some(0.0),
                Value::String(s) => !s.is_empty(),
                Value::Array(a) => !a.is_empty(),
                Value::Object(o) => !o.is_empty() && k != "RestartPolicy" || o.get("Name").is_some_and(|n| n != ""),
                Value::Bool(b) => *b,
            };
            if set && !SUPPORTED.contains(&k.as_str()) {
                return Err(ApiError::bad(format!("update: {k} cannot be updated by Berth yet")));
            }
        }
        let mut host = c.host_config.clone();
        for k in SUPPORTED {
            if let Some(v) = obj.get(*k).filter(|v| !v.is_null()) {
                if *k == "RestartPolicy" {
                    if v["Name"].as_str().unwrap_or("").is_empty() {
                        continue;
                    }
                    if c.host_config["AutoRemove"].as_bool().unwrap_or(false) && v["Name"] != "no" {
                        return Err(ApiError::bad(
                            "Restart policy cannot be updated because AutoRemove is enabled for the container",
                        ));
                    }
                } else if v.as_i64() == Some(0) {
                    continue;
                }
                host[*k] = v.clone();
            }
        }
        if let Some(m) = host["Memory"].as_i64().filter(|m| *m > 0) {
            if m < 6 << 20 {
                return Err(ApiError::bad("Minimum memory limit allowed is 6MB"));
            }
        }
        if c.running() {
            let mut r = json!({});
            if let Some(m) = obj.get("Memory").and_then(|v| v.as_i64()).filter(|m| *m > 0) {
                r["memory"]["limit"] = json!(m);
            }
            if let Some(m) = obj.get("MemorySwap").and_then(|v| v.as_i64()).filter(|m| *m != 0) {
                r["memory"]["swap"] = json!(m);
            }
            if let Some(n) = obj.get("NanoCpus").and_then(|v| v.as_i64()).filter(|n| *n > 0) {
                r["cpu"]["period"] = json!(100_000);
                r["cpu"]["quota"] = json!(n * 100_000 / 1_000_000_000);
            }
            if let Some(q) = obj.get("CpuQuota").and_then(|v| v.as_i64()).filter(|q| *q > 0) {
                r["cpu"]["quota"] = json!(q);
            }
            if let Some(p) = obj.get("CpuPeriod").and_then(|v| v.as_i64()).filter(|p| *p > 0) {
                r["cpu"]["period"] = json!(p);
            }
            if let Some(sh) = obj.get("CpuShares").and_then(|v| v.as_i64()).filter(|s| *s > 0) {
                r["cpu"]["shares"] = json!(sh);
            }
            if let Some(p) = obj.get("PidsLimit").and_then(|v| v.as_i64()).filter(|p| *p != 0) {
                r["pids"] = json!({"limit": p});
            }
            let res: oci_spec::runtime::LinuxResources =
                serde_json::from_value(r).map_err(|e| ApiError::bad(format!("update: {e}")))?;
            let (_, st) = berth_runtime::container::load(&self.runtime_root(), &c.id)
                .map_err(|e| ApiError::internal(format!("update: {e}")))?;
            let mgr = berth_cgroups::Manager::from_state(st.cgroup);
            mgr.validate(&res).map_err(|e| ApiError::bad(format!("update: {e}")))?;
            mgr.apply(&res).map_err(|e| ApiError::internal(format!("update: {e}")))?;
        }
        self.update(&c.id, |c| c.host_config = host)?;
        Ok(())
    }

    /// `rename`.
    pub fn rename(&self, key: &str, new: &str) -> ApiResult<()> {
        let new = new.trim_start_matches('/');
        if !valid_name(new) {
            return Err(ApiError::bad(format!(
                "Invalid container name ({new}), only [a-zA-Z0-9][a-zA-Z0-9_.-] are allowed"
            )));
        }
        let c = self.find(key)?;
        let _guard = self.ops.lock().unwrap_or_else(|e| e.into_inner());
        if c.name == new {
            return Err(ApiError::bad("Renaming a container with the same name as its current name"));
        }
        if let Some(other) = self.lock().values().find(|x| x.name == new) {
            return Err(ApiError::conflict(format!(
                "Conflict. The container name \"/{new}\" is already in use by container \"{}\". You have to remove (or rename) that container to be able to reuse that name.",
                other.id
            )));
        }
        let old = c.name.clone();
        let c = self.update(&c.id, |c| c.name = new.to_string())?;
        self.container_event(&c, "rename", json!({"oldName": format!("/{old}")}));
        Ok(())
    }

    /// Host pids of every process in the container (its pid namespace).
    pub fn pids(&self, c: &Container) -> Vec<i32> {
        use std::os::unix::fs::MetadataExt;
        let Ok(ns) = std::fs::metadata(format!("/proc/{}/ns/pid", c.state.pid)) else { return Vec::new() };
        let mut out = Vec::new();
        for e in std::fs::read_dir("/proc").into_iter().flatten().flatten() {
            let Some(pid) = e.file_name().to_str().and_then(|n| n.parse::<i32>().ok()) else { continue };
            if std::fs::metadata(format!("/proc/{pid}/ns/pid"))
                .is_ok_and(|m| m.ino() == ns.ino() && m.dev() == ns.dev())
            {
                out.push(pid);
            }
        }
        out
    }

    pub fn resize(&self, c: &Container, h: u16, w: u16) {
        if let Ok(mut s) = UnixStream::connect(self.exec_dir(&c.id).join("monitor.sock")) {
            let _ = s.write_all(format!("resize {h} {w}\n").as_bytes());
            let mut line = String::new();
            let _ = BufReader::new(&s).read_line(&mut line);
        }
    }
}
