//! cgroup v1: one directory per hierarchy, one file per setting.

use crate::{read, read_kv, read_u64, write, Error, Result, Stats};
use oci_spec::runtime::{LinuxDeviceCgroup, LinuxResources};
use std::path::Path;
use std::time::Duration;

fn has(ctls: &[String], c: &str) -> bool {
    ctls.iter().any(|x| x == c)
}

/// Write `resources` to the files of the controllers mounted in `dir`'s hierarchy.
pub(crate) fn apply(dir: &Path, ctls: &[String], r: &LinuxResources) -> Result<()> {
    if has(ctls, "memory") {
        if let Some(m) = r.memory() {
            if let Some(v) = m.reservation() {
                write(&dir.join("memory.soft_limit_in_bytes"), &v.to_string())?;
            }
            set_memory(dir, m.limit(), m.swap())?;
            if let Some(v) = m.kernel_tcp() {
                write(&dir.join("memory.kmem.tcp.limit_in_bytes"), &v.to_string())?;
            }
            if let Some(v) = m.swappiness() {
                write(&dir.join("memory.swappiness"), &v.to_string())?;
            }
            if m.disable_oom_killer().unwrap_or(false) {
                write(&dir.join("memory.oom_control"), "1")?;
            }
        }
    }
    if let Some(c) = r.cpu() {
        if has(ctls, "cpu") {
            if let Some(v) = c.shares() {
                write(&dir.join("cpu.shares"), &v.to_string())?;
            }
            // The period first: a quota is only valid against the period in effect.
            if let Some(v) = c.period() {
                write(&dir.join("cpu.cfs_period_us"), &v.to_string())?;
            }
            if let Some(v) = c.quota() {
                write(&dir.join("cpu.cfs_quota_us"), &if v <= 0 { -1 } else { v }.to_string())?;
            }
            if let Some(v) = c.burst() {
                write(&dir.join("cpu.cfs_burst_us"), &v.to_string())?;
            }
            if let Some(v) = c.realtime_period() {
                write(&dir.join("cpu.rt_period_us"), &v.to_string())?;
            }
            if let Some(v) = c.realtime_runtime() {
                write(&dir.join("cpu.rt_runtime_us"), &v.to_string())?;
            }
        }
        if has(ctls, "cpuset") {
            if let Some(v) = c.cpus().as_deref().filter(|s| !s.is_empty()) {
                write(&dir.join("cpuset.cpus"), v)?;
            }
            if let Some(v) = c.mems().as_deref().filter(|s| !s.is_empty()) {
                write(&dir.join("cpuset.mems"), v)?;
            }
        }
    }
    if has(ctls, "pids") {
        if let Some(p) = r.pids() {
            let v = if p.limit() > 0 { p.limit().to_string() } else { "max".into() };
            write(&dir.join("pids.max"), &v)?;
        }
    }
    if has(ctls, "blkio") {
        if let Some(b) = r.block_io() {
            if let Some(w) = b.weight() {
                let f = if dir.join("blkio.weight").exists() { "blkio.weight" } else { "blkio.bfq.weight" };
                write(&dir.join(f), &w.to_string())?;
            }
            if let Some(w) = b.leaf_weight() {
                write(&dir.join("blkio.leaf_weight"), &w.to_string())?;
            }
            for d in b.weight_device().iter().flatten() {
                if let Some(w) = d.weight() {
                    let f = if dir.join("blkio.weight_device").exists() {
                        "blkio.weight_device"
                    } else {
                        "blkio.bfq.weight_device"
                    };
                    write(&dir.join(f), &format!("{}:{} {}", d.major(), d.minor(), w))?;
                }
            }
            let throttles = [
                ("blkio.throttle.read_bps_device", b.throttle_read_bps_device()),
                ("blkio.throttle.write_bps_device", b.throttle_write_bps_device()),
                ("blkio.throttle.read_iops_device", b.throttle_read_iops_device()),
                ("blkio.throttle.write_iops_device", b.throttle_write_iops_device()),
            ];
            for (file, list) in throttles {
                for d in list.iter().flatten() {
                    write(&dir.join(file), &format!("{}:{} {}", d.major(), d.minor(), d.rate()))?;
                }
            }
        }
    }
    if has(ctls, "hugetlb") {
        for h in r.hugepage_limits().iter().flatten() {
            write(&dir.join(format!("hugetlb.{}.limit_in_bytes", h.page_size())), &h.limit().to_string())?;
        }
    }
    if let Some(n) = r.network() {
        if has(ctls, "net_cls") {
            if let Some(id) = n.class_id() {
                write(&dir.join("net_cls.classid"), &id.to_string())?;
            }
        }
        if has(ctls, "net_prio") {
            for p in n.priorities().iter().flatten() {
                write(&dir.join("net_prio.ifpriomap"), &format!("{} {}", p.name(), p.priority()))?;
            }
        }
    }
    if has(ctls, "devices") {
        if let Some(devs) = r.devices() {
            for d in devs {
                let file = if d.allow() { "devices.allow" } else { "devices.deny" };
                write(&dir.join(file), &device_rule(d))?;
            }
        }
    }
    Ok(())
}

/// The v1 devices-cgroup line for a rule: "c 1:3 rwm", "a *:* rwm".
pub(crate) fn device_rule(d: &LinuxDeviceCgroup) -> String {
    let typ = d.typ().map(|t| t.as_str().to_string()).unwrap_or_else(|| "a".into());
    let num = |v: Option<i64>| v.filter(|n| *n >= 0).map(|n| n.to_string()).unwrap_or_else(|| "*".into());
    let access = d.access().clone().filter(|a| !a.is_empty()).unwrap_or_else(|| "rwm".into());
    format!("{typ} {}:{} {access}", num(d.major()), num(d.minor()))
}

/// memory.limit_in_bytes and memory.memsw.limit_in_bytes must stay ordered
/// (memsw >= limit) after every single write, so the order depends on the direction.
fn set_memory(dir: &Path, limit: Option<i64>, swap: Option<i64>) -> Result<()> {
    let norm = |v: i64| if v <= 0 { "-1".to_string() } else { v.to_string() };
    let lim = dir.join("memory.limit_in_bytes");
    let sw = dir.join("memory.memsw.limit_in_bytes");
    match (limit, swap) {
        (None, None) => Ok(()),
        (Some(l), None) => {
            // Without a swap setting Docker gives memory+swap = 2 x limit; we keep the
            // kernel's default (unlimited swap) like runc, so only the limit changes.
            write(&lim, &norm(l))
        }
        (l, Some(s)) => {
            if !sw.exists() {
                return if s > 0 {
                    Err(Error::Invalid("a swap limit was requested but this kernel has no swap accounting".into()))
                } else {
                    l.map(|l| write(&lim, &norm(l))).unwrap_or(Ok(()))
                };
            }
            // Raising: memsw first. Lowering: limit first. Try one order, then the other.
            let first = (|| -> Result<()> {
                write(&sw, &norm(s))?;
                if let Some(l) = l {
                    write(&lim, &norm(l))?;
                }
                Ok(())
            })();
            match first {
                Ok(()) => Ok(()),
                Err(_) => {
                    if let Some(l) = l {
                        write(&lim, &norm(l))?;
                    }
                    write(&sw, &norm(s))
                }
            }
        }
    }
}

/// A new v1 cpuset cgroup starts with empty cpus/mems: copy the parent's.
pub(crate) fn init_cpuset(dir: &Path) -> Result<()> {
    let Some(parent) = dir.parent() else { return Ok(()) };
    for f in ["cpuset.cpus", "cpuset.mems"] {
        let mine = read(&dir.join(f))?;
        if mine.trim().is_empty() {
            let theirs = read(&parent.join(f))?;
            write(&dir.join(f), theirs.trim())?;
        }
    }
    Ok(())
}

pub(crate) fn set_frozen(dir: &Path, on: bool) -> Result<()> {
    let want = if on { "FROZEN" } else { "THAWED" };
    let f = dir.join("freezer.state");
    for i in 0..1000 {
        write(&f, want)?;
        if read(&f)?.trim() == want {
            return Ok(());
        }
        std::thread::sleep(Duration::from_millis(if i < 10 { 1 } else { 10 }));
    }
    // Give up cleanly: never leave a half-frozen container behind.
    if on {
        let _ = write(&f, "THAWED");
    }
    Err(Error::Invalid(format!("{}: did not reach {want}", f.display())))
}

pub(crate) fn memory_stats(dir: &Path, s: &mut Stats) -> Result<()> {
    s.memory_usage = read_u64(&dir.join("memory.usage_in_bytes"))?;
    s.memory_max_usage = read_u64(&dir.join("memory.max_usage_in_bytes")).unwrap_or(0);
    let lim = read_u64(&dir.join("memory.limit_in_bytes")).unwrap_or(u64::MAX);
    // The kernel reports "unlimited" as PAGE_COUNTER_MAX pages, rounded down to a page.
    s.memory_limit = (lim < (1u64 << 62)).then_some(lim);
    s.memory_stat = read_kv(&dir.join("memory.stat")).unwrap_or_default();
    if let Ok(kv) = read_kv(&dir.join("memory.oom_control")) {
        s.oom_kills = kv.get("oom_kill").copied().unwrap_or(0);
    }
    Ok(())
}

pub(crate) fn cpuacct_stats(dir: &Path, s: &mut Stats) -> Result<()> {
    s.cpu_usage_ns = read_u64(&dir.join("cpuacct.usage"))?;
    if let Ok(kv) = read_kv(&dir.join("cpuacct.stat")) {
        // USER_HZ ticks (100 per second on every Linux architecture we run on).
        s.cpu_user_ns = kv.get("user").copied().unwrap_or(0) * 10_000_000;
        s.cpu_system_ns = kv.get("system").copied().unwrap_or(0) * 10_000_000;
    }
    Ok(())
}

pub(crate) fn cpu_throttle_stats(dir: &Path, s: &mut Stats) {
    if let Ok(kv) = read_kv(&dir.join("cpu.stat")) {
        s.cpu_throttled_periods = kv.get("nr_throttled").copied().unwrap_or(0);
        s.cpu_throttled_ns = kv.get("throttled_time").copied().unwrap_or(0);
    }
}
