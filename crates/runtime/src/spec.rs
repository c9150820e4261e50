//! Loading and validating a bundle's config.json.
//!
//! Everything that can be checked before a process is forked is checked here,
//! so that a bad spec fails with one clear line and leaves nothing behind.

use crate::error::{Error, Result};
use crate::{bail, caps};
use oci_spec::runtime::{LinuxNamespaceType, PosixRlimitType, Spec};
use std::collections::HashSet;
use std::os::fd::AsRawFd;
use std::path::{Path, PathBuf};

/// Read and parse `<bundle>/config.json`.
pub fn load(bundle: &Path) -> Result<Spec> {
    let path = bundle.join("config.json");
    let data = std::fs::read(&path).map_err(|e| Error::os(format!("read {}", path.display()), e))?;
    parse(&data).map_err(|e| Error::new(format!("{}: {}", path.display(), e.message())))
}

/// Parse a config.json document.
pub fn parse(data: &[u8]) -> Result<Spec> {
    let spec: Spec = serde_json::from_slice(data).map_err(|e| Error::new(format!("invalid config: {e}")))?;
    Ok(spec)
}

/// Map a namespace type to its clone flag.
pub fn ns_flag(t: LinuxNamespaceType) -> libc::c_int {
    match t {
        LinuxNamespaceType::Mount => libc::CLONE_NEWNS,
        LinuxNamespaceType::Cgroup => libc::CLONE_NEWCGROUP,
        LinuxNamespaceType::Uts => libc::CLONE_NEWUTS,
        LinuxNamespaceType::Ipc => libc::CLONE_NEWIPC,
        LinuxNamespaceType::User => libc::CLONE_NEWUSER,
        LinuxNamespaceType::Pid => libc::CLONE_NEWPID,
        LinuxNamespaceType::Network => libc::CLONE_NEWNET,
        LinuxNamespaceType::Time => libc::CLONE_NEWTIME,
    }
}

/// The name used for a namespace under /proc/PID/ns.
pub fn ns_proc_name(t: LinuxNamespaceType) -> &'static str {
    match t {
        LinuxNamespaceType::Mount => "mnt",
        LinuxNamespaceType::Cgroup => "cgroup",
        LinuxNamespaceType::Uts => "uts",
        LinuxNamespaceType::Ipc => "ipc",
        LinuxNamespaceType::User => "user",
        LinuxNamespaceType::Pid => "pid",
        LinuxNamespaceType::Network => "net",
        LinuxNamespaceType::Time => "time",
    }
}

pub fn ns_spec_name(t: LinuxNamespaceType) -> &'static str {
    match t {
        LinuxNamespaceType::Mount => "mount",
        LinuxNamespaceType::Network => "network",
        other => ns_proc_name(other),
    }
}

pub fn rlimit_resource(t: PosixRlimitType) -> libc::__rlimit_resource_t {
    use PosixRlimitType::*;
    match t {
        RlimitCpu => libc::RLIMIT_CPU,
        RlimitFsize => libc::RLIMIT_FSIZE,
        RlimitData => libc::RLIMIT_DATA,
        RlimitStack => libc::RLIMIT_STACK,
        RlimitCore => libc::RLIMIT_CORE,
        RlimitRss => libc::RLIMIT_RSS,
        RlimitNproc => libc::RLIMIT_NPROC,
        RlimitNofile => libc::RLIMIT_NOFILE,
        RlimitMemlock => libc::RLIMIT_MEMLOCK,
        RlimitAs => libc::RLIMIT_AS,
        RlimitLocks => libc::RLIMIT_LOCKS,
        RlimitSigpending => libc::RLIMIT_SIGPENDING,
        RlimitMsgqueue => libc::RLIMIT_MSGQUEUE,
        RlimitNice => libc::RLIMIT_NICE,
        RlimitRtprio => libc::RLIMIT_RTPRIO,
        RlimitRttime => libc::RLIMIT_RTTIME,
    }
}

pub fn rlimit_name(t: PosixRlimitType) -> String {
    serde_json::to_value(t).ok().and_then(|v| v.as_str().map(str::to_string)).unwrap_or_default()
}

/// Check a namespace file: it must exist and be a namespace of the expected type.
fn check_ns_path(t: LinuxNamespaceType, path: &Path) -> Result<()> {
    const NS_GET_NSTYPE: libc::c_ulong = 0xb703;
    let f = std::fs::File::open(path)
        .map_err(|e| Error::os(format!("{} namespace path {}", ns_spec_name(t), path.display()), e))?;
    // SAFETY: NS_GET_NSTYPE takes no argument and returns the CLONE_NEW* type.
    let r = unsafe { libc::ioctl(f.as_raw_fd(), NS_GET_NSTYPE as _) };
    if r < 0 {
        bail!("{} namespace path {}: not a namespace file", ns_spec_name(t), path.display());
    }
    if r != ns_flag(t) {
        bail!("{} namespace path {}: is a namespace of another type", ns_spec_name(t), path.display());
    }
    Ok(())
}

/// Resolve the rootfs path against the bundle.
pub fn rootfs_path(spec: &Spec, bundle: &Path) -> Result<PathBuf> {
    let root = spec.root().as_ref().ok_or_else(|| Error::new("config: root is missing"))?;
    let p = root.path();
    if p.as_os_str().is_empty() {
        bail!("config: root.path is empty");
    }
    let abs = if p.is_absolute() { p.clone() } else { bundle.join(p) };
    match std::fs::metadata(&abs) {
        Ok(m) if m.is_dir() => {}
        Ok(_) => bail!("rootfs {} is not a directory", abs.display()),
        Err(e) => return Err(Error::os(format!("rootfs {}", abs.display()), e)),
    }
    abs.canonicalize().map_err(|e| Error::os(format!("rootfs {}", abs.display()), e))
}

/// Validate everything that does not need the container's namespaces.
pub fn validate(spec: &Spec) -> Result<()> {
    if spec.version().is_empty() {
        bail!("config: ociVersion is missing");
    }
    let process = spec.process().as_ref().ok_or_else(|| Error::new("config: process is missing"))?;
    match process.args() {
        Some(a) if !a.is_empty() => {}
        _ => bail!("config: process.args must not be empty"),
    }
    if !process.cwd().is_absolute() {
        bail!("config: process.cwd {:?} must be an absolute path", process.cwd());
    }
    let linux = spec.linux().as_ref().ok_or_else(|| Error::new("config: linux section is missing"))?;
    let mut seen = HashSet::new();
    let has = |t| linux.namespaces().iter().flatten().any(|n| n.typ() == t);
    for ns in linux.namespaces().iter().flatten() {
        if !seen.insert(ns.typ()) {
            bail!("config: linux.namespaces: {} namespace listed twice", ns_spec_name(ns.typ()));
        }
        if let Some(p) = ns.path() {
            check_ns_path(ns.typ(), p)?;
        }
    }
    let userns = has(LinuxNamespaceType::User);
    let has_maps = linux.uid_mappings().as_ref().is_some_and(|m| !m.is_empty())
        || linux.gid_mappings().as_ref().is_some_and(|m| !m.is_empty());
    let joins_user =
        linux.namespaces().iter().flatten().any(|n| n.typ() == LinuxNamespaceType::User && n.path().is_some());
    if userns && !joins_user && !has_maps {
        bail!("config: a new user namespace needs linux.uidMappings and linux.gidMappings");
    }
    if !userns && has_maps {
        bail!("config: linux.uidMappings/gidMappings given without a user namespace");
    }
    if spec.hostname().as_ref().is_some_and(|h| !h.is_empty()) && !has(LinuxNamespaceType::Uts) {
        bail!("config: hostname needs a private uts namespace");
    }
    if spec.domainname().as_ref().is_some_and(|h| !h.is_empty()) && !has(LinuxNamespaceType::Uts) {
        bail!("config: domainname needs a private uts namespace");
    }
    for (k, _) in linux.sysctl().iter().flatten() {
        if k.contains("..") || k.contains('/') && k.contains('.') && k.starts_with('/') {
            bail!("config: linux.sysctl: invalid key {k:?}");
        }
        if k.starts_with("net.") && !has(LinuxNamespaceType::Network) {
            bail!("config: linux.sysctl {k} needs a private network namespace");
        }
    }
    for m in spec.mounts().iter().flatten() {
        if !m.destination().is_absolute() {
            bail!("config: mount destination {:?} must be an absolute path", m.destination());
        }
    }
    // Rlimits: without CAP_SYS_RESOURCE a hard limit can never be raised (runc fails the same way).
    let can_raise = caps::have_effective(24);
    for rl in process.rlimits().iter().flatten() {
        if rl.soft() > rl.hard() {
            bail!(
                "config: rlimit {}: soft limit {} exceeds hard limit {}",
                rlimit_name(rl.typ()),
                rl.soft(),
                rl.hard()
            );
        }
        if !can_raise {
            let mut cur = libc::rlimit { rlim_cur: 0, rlim_max: 0 };
            // SAFETY: cur is a valid out-pointer.
            if unsafe { libc::getrlimit(rlimit_resource(rl.typ()), &mut cur) } == 0 && rl.hard() > cur.rlim_max {
                bail!(
                    "rlimit {}: hard limit {} exceeds the current hard limit {} and CAP_SYS_RESOURCE is not held: operation not permitted",
                    rlimit_name(rl.typ()),
                    rl.hard(),
                    cur.rlim_max
                );
            }
        }
    }
    if let Some(s) = linux.seccomp() {
        if s.listener_path().is_some() {
            bail!("config: linux.seccomp.listenerPath: seccomp notification is not supported");
        }
    }
    if linux.intel_rdt().is_some() {
        bail!("config: linux.intelRdt is not supported");
    }
    if process.apparmor_profile().as_ref().is_some_and(|p| !p.is_empty()) && !apparmor_enabled() {
        // runc ignores a profile when AppArmor is off; docker sets one only when it is on.
    }
    Ok(())
}

fn apparmor_enabled() -> bool {
    std::fs::read_to_string("/sys/module/apparmor/parameters/enabled").is_ok_and(|s| s.starts_with('Y'))
}
