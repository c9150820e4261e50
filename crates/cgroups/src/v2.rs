//! cgroup v2: one directory, controllers enabled from the top down.

use crate::{devices, read, read_kv, read_u64, write, Error, Result, Stats};
use oci_spec::runtime::LinuxResources;
use std::collections::HashMap;
use std::path::Path;
use std::time::Duration;

const WANTED: &[&str] = &["cpuset", "cpu", "io", "memory", "hugetlb", "pids", "rdma", "misc"];

/// Enable the controllers the root offers in every ancestor's
/// cgroup.subtree_control, from `mount` down to `dir`'s parent. Best effort:
/// an ancestor with processes of its own cannot delegate ("no internal
/// processes"), and a resource that then cannot be set fails in [`apply`]
/// with the file it needed.
pub(crate) fn enable_controllers(dir: &Path, mount: &Path) -> Result<()> {
    let Ok(rel) = dir.strip_prefix(mount) else { return Ok(()) };
    let mut cur = mount.to_path_buf();
    let comps: Vec<_> = rel.components().collect();
    for (i, c) in comps.iter().enumerate() {
        if !cur.exists() {
            break;
        }
        let avail = read(&cur.join("cgroup.controllers")).unwrap_or_default();
        let on = read(&cur.join("cgroup.subtree_control")).unwrap_or_default();
        for ctl in avail.split_whitespace().filter(|c| WANTED.contains(c)) {
            if !on.split_whitespace().any(|o| o == ctl) {
                let _ = write(&cur.join("cgroup.subtree_control"), &format!("+{ctl}"));
            }
        }
        if i + 1 == comps.len() {
            break;
        }
        cur.push(c);
    }
    Ok(())
}

/// Convert cgroup v1 cpu.shares (2-262144) to v2 cpu.weight (1-10000), as runc and crun do.
pub fn shares_to_weight(shares: u64) -> u64 {
    if shares == 0 {
        return 0;
    }
    1 + ((shares.clamp(2, 262_144) - 2) * 9999) / 262_142
}

/// Convert blkio.weight (10-1000) to io.weight (1-10000).
pub fn blkio_to_io_weight(w: u16) -> u64 {
    1 + (u64::from(w.clamp(10, 1000)) - 10) * 9999 / 990
}

pub(crate) fn apply(dir: &Path, r: &LinuxResources) -> Result<()> {
    let max = |v: i64| if v < 0 { "max".to_string() } else { v.to_string() };
    if let Some(m) = r.memory() {
        if let Some(v) = m.reservation() {
            write(&dir.join("memory.low"), &max(v))?;
        }
        if let Some(l) = m.limit() {
            write(&dir.join("memory.max"), &max(l))?;
        }
        if let Some(s) = m.swap() {
            // OCI swap is memory+swap (v1 semantics); v2 limits swap alone.
            let v = match (s, m.limit()) {
                (s, _) if s < 0 => "max".to_string(),
                (s, Some(l)) if l > 0 => (s - l).max(0).to_string(),
                (s, _) => s.to_string(),
            };
            if dir.join("memory.swap.max").exists() {
                write(&dir.join("memory.swap.max"), &v)?;
            } else if s > 0 {
                return Err(Error::Invalid("a swap limit was requested but this kernel has no swap accounting".into()));
            }
        }
    }
    if let Some(c) = r.cpu() {
        if let Some(s) = c.shares() {
            if s > 0 {
                write(&dir.join("cpu.weight"), &shares_to_weight(s).to_string())?;
            }
        }
        if c.quota().is_some() || c.period().is_some() {
            // Keep what is in effect for the half not given.
            let cur = read(&dir.join("cpu.max")).unwrap_or_else(|_| "max 100000".into());
            let mut it = cur.split_whitespace();
            let (cq, cp) = (it.next().unwrap_or("max").to_string(), it.next().unwrap_or("100000").to_string());
            let q = c.quota().map(|q| if q <= 0 { "max".to_string() } else { q.to_string() }).unwrap_or(cq);
            let p = c.period().map(|p| p.to_string()).unwrap_or(cp);
            write(&dir.join("cpu.max"), &format!("{q} {p}"))?;
        }
        if let Some(b) = c.burst() {
            write(&dir.join("cpu.max.burst"), &b.to_string())?;
        }
        if let Some(i) = c.idle() {
            write(&dir.join("cpu.idle"), &i.to_string())?;
        }
        if let Some(v) = c.cpus().as_deref().filter(|s| !s.is_empty()) {
            write(&dir.join("cpuset.cpus"), v)?;
        }
        if let Some(v) = c.mems().as_deref().filter(|s| !s.is_empty()) {
            write(&dir.join("cpuset.mems"), v)?;
        }
    }
    if let Some(p) = r.pids() {
        write(&dir.join("pids.max"), &if p.limit() > 0 { p.limit().to_string() } else { "max".into() })?;
    }
    if let Some(b) = r.block_io() {
        if let Some(w) = b.weight() {
            write(&dir.join("io.weight"), &format!("default {}", blkio_to_io_weight(w)))?;
        }
        for d in b.weight_device().iter().flatten() {
            if let Some(w) = d.weight() {
                write(&dir.join("io.weight"), &format!("{}:{} {}", d.major(), d.minor(), blkio_to_io_weight(w)))?;
            }
        }
        let throttles = [
            ("rbps", b.throttle_read_bps_device()),
            ("wbps", b.throttle_write_bps_device()),
            ("riops", b.throttle_read_iops_device()),
            ("wiops", b.throttle_write_iops_device()),
        ];
        for (key, list) in throttles {
            for d in list.iter().flatten() {
                write(&dir.join("io.max"), &format!("{}:{} {key}={}", d.major(), d.minor(), d.rate()))?;
            }
        }
    }
    for h in r.hugepage_limits().iter().flatten() {
        write(&dir.join(format!("hugetlb.{}.max", h.page_size())), &h.limit().to_string())?;
    }
    for (dev, l) in r.rdma().iter().flatten() {
        let mut parts = Vec::new();
        if let Some(v) = l.hca_handles() {
            parts.push(format!("hca_handle={v}"));
        }
        if let Some(v) = l.hca_objects() {
            parts.push(format!("hca_object={v}"));
        }
        if !parts.is_empty() {
            write(&dir.join("rdma.max"), &format!("{dev} {}", parts.join(" ")))?;
        }
    }
    if let Some(u) = r.unified() {
        apply_unified(dir, u)?;
    }
    if let Some(devs) = r.devices() {
        if !devs.is_empty() {
            devices::apply(dir, devs)?;
        }
    }
    Ok(())
}

/// linux.resources.unified: raw "file" → "value" writes.
pub(crate) fn apply_unified(dir: &Path, u: &HashMap<String, String>) -> Result<()> {
    let mut keys: Vec<_> = u.keys().collect();
    keys.sort();
    for k in keys {
        let f = dir.join(k);
        if !f.exists() {
            return Err(Error::Invalid(format!(
                "linux.resources.unified: {k:?} does not exist in {} (is its controller enabled?)",
                dir.display()
            )));
        }
        write(&f, &u[k])?;
    }
    Ok(())
}

pub(crate) fn set_frozen(dir: &Path, on: bool) -> Result<()> {
    write(&dir.join("cgroup.freeze"), if on { "1" } else { "0" })?;
    let want = if on { 1 } else { 0 };
    for i in 0..1000 {
        let ev = read_kv(&dir.join("cgroup.events")).unwrap_or_default();
        if ev.get("frozen").copied().unwrap_or(want) == want {
            return Ok(());
        }
        std::thread::sleep(Duration::from_millis(if i < 10 { 1 } else { 10 }));
    }
    if on {
        let _ = write(&dir.join("cgroup.freeze"), "0");
    }
    Err(Error::Invalid(format!("{}: the cgroup did not freeze", dir.display())))
}

pub(crate) fn memory_stats(dir: &Path, s: &mut Stats) -> Result<()> {
    s.memory_usage = read_u64(&dir.join("memory.current"))?;
    s.memory_max_usage = read_u64(&dir.join("memory.peak")).unwrap_or(0);
    s.memory_limit = read(&dir.join("memory.max")).ok().and_then(|v| v.trim().parse().ok());
    s.memory_stat = read_kv(&dir.join("memory.stat")).unwrap_or_default();
    if let Ok(kv) = read_kv(&dir.join("memory.events")) {
        s.oom_kills = kv.get("oom_kill").copied().unwrap_or(0);
    }
    Ok(())
}

pub(crate) fn cpu_stats(dir: &Path, s: &mut Stats) -> Result<()> {
    let kv = read_kv(&dir.join("cpu.stat"))?;
    let us = |k: &str| kv.get(k).copied().unwrap_or(0);
    s.cpu_usage_ns = us("usage_usec") * 1000;
    s.cpu_user_ns = us("user_usec") * 1000;
    s.cpu_system_ns = us("system_usec") * 1000;
    s.cpu_throttled_periods = us("nr_throttled");
    s.cpu_throttled_ns = us("throttled_usec") * 1000;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn conversions() {
        assert_eq!(shares_to_weight(2), 1);
        assert_eq!(shares_to_weight(1024), 39);
        assert_eq!(shares_to_weight(262_144), 10_000);
        assert_eq!(blkio_to_io_weight(10), 1);
        assert_eq!(blkio_to_io_weight(1000), 10_000);
        assert_eq!(blkio_to_io_weight(500), 4950);
    }
}
