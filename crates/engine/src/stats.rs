//! `GET /containers/{id}/stats`: Docker's stats JSON read from the container's cgroups (v1
//! controllers on v1 and hybrid hosts, cgroup2 files on unified ones) and the host's
//! /proc/stat.

use serde_json::{json, Value};
use std::path::{Path, PathBuf};

fn read(p: &Path) -> Option<String> {
    std::fs::read_to_string(p).ok()
}

fn num(p: &Path) -> Option<u64> {
    read(p)?.trim().parse().ok()
}

/// `key value` lines (memory.stat, cpu.stat) as a JSON object.
fn kv(p: &Path) -> serde_json::Map<String, Value> {
    let mut m = serde_json::Map::new();
    for l in read(p).unwrap_or_default().lines() {
        if let Some((k, v)) = l.split_once(' ') {
            if let Ok(n) = v.trim().parse::<u64>() {
                m.insert(k.to_string(), json!(n));
            }
        }
    }
    m
}

/// The host's memory in bytes (`MemTotal` of /proc/meminfo; 0 if unreadable).
pub fn host_memory() -> u64 {
    read(Path::new("/proc/meminfo"))
        .and_then(|m| m.lines().next().and_then(|l| l.split_whitespace().nth(1)).and_then(|k| k.parse::<u64>().ok()))
        .unwrap_or(0)
        * 1024
}

/// The host's total CPU time in nanoseconds (first line of /proc/stat, in USER_HZ).
fn system_cpu_ns() -> u64 {
    let s = read(Path::new("/proc/stat")).unwrap_or_default();
    let first = s.lines().next().unwrap_or("");
    // SAFETY: sysconf has no memory effects.
    let hz = unsafe { libc::sysconf(libc::_SC_CLK_TCK) }.max(1) as u64;
    let ticks: u64 = first.split_whitespace().skip(1).take(7).filter_map(|x| x.parse::<u64>().ok()).sum();
    ticks * (1_000_000_000 / hz)
}

pub struct Sample {
    pub cpu: Value,
    pub memory: Value,
    pub pids: Value,
    pub blkio: Value,
}

/// One reading of the container's cgroups (`dirs`: the runtime's per-hierarchy directories).
pub fn sample(dirs: &[berth_cgroups::CgroupDir]) -> Sample {
    let v1 = |c: &str| -> Option<PathBuf> {
        dirs.iter().find(|d| !d.v2 && d.controllers.iter().any(|x| x == c)).map(|d| d.path.clone())
    };
    let v2 = dirs.iter().find(|d| d.v2 && d.path.join("cgroup.controllers").exists()).map(|d| d.path.clone());
    let online = std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1);
    let system = system_cpu_ns();
    // CPU.
    let cpu = if let Some(d) = v1("cpuacct") {
        let total = num(&d.join("cpuacct.usage")).unwrap_or(0);
        let percpu: Vec<u64> = read(&d.join("cpuacct.usage_percpu"))
            .unwrap_or_default()
            .split_whitespace()
            .filter_map(|x| x.parse().ok())
            .collect();
        let st = kv(&d.join("cpuacct.stat"));
        // SAFETY: sysconf has no memory effects.
        let hz = unsafe { libc::sysconf(libc::_SC_CLK_TCK) }.max(1) as u64;
        let tick = 1_000_000_000 / hz;
        json!({
            "cpu_usage": {
                "total_usage": total, "percpu_usage": percpu,
                "usage_in_kernelmode": st.get("system").and_then(|v| v.as_u64()).unwrap_or(0) * tick,
                "usage_in_usermode": st.get("user").and_then(|v| v.as_u64()).unwrap_or(0) * tick,
            },
            "system_cpu_usage": system, "online_cpus": online,
            "throttling_data": {"periods": 0, "throttled_periods": 0, "throttled_time": 0},
        })
    } else if let Some(d) = &v2 {
        let st = kv(&d.join("cpu.stat"));
        let g = |k: &str| st.get(k).and_then(|v| v.as_u64()).unwrap_or(0);
        json!({
            "cpu_usage": {
                "total_usage": g("usage_usec") * 1000,
                "usage_in_kernelmode": g("system_usec") * 1000,
                "usage_in_usermode": g("user_usec") * 1000,
            },
            "system_cpu_usage": system, "online_cpus": online,
            "throttling_data": {"periods": g("nr_periods"), "throttled_periods": g("nr_throttled"), "throttled_time": g("throttled_usec") * 1000},
        })
    } else {
        json!({"cpu_usage": {"total_usage": 0}, "system_cpu_usage": system, "online_cpus": online})
    };
    // Memory.
    let memory = if let Some(d) = v1("memory") {
        let limit = num(&d.join("memory.limit_in_bytes")).unwrap_or(u64::MAX);
        let host = host_memory();
        json!({
            "usage": num(&d.join("memory.usage_in_bytes")).unwrap_or(0),
            "max_usage": num(&d.join("memory.max_usage_in_bytes")).unwrap_or(0),
            "failcnt": num(&d.join("memory.failcnt")).unwrap_or(0),
            "limit": if host > 0 { limit.min(host) } else { limit },
            "stats": kv(&d.join("memory.stat")),
        })
    } else if let Some(d) = &v2 {
        let max = read(&d.join("memory.max")).unwrap_or_default();
        let limit = max.trim().parse::<u64>().unwrap_or_else(|_| host_memory());
        json!({"usage": num(&d.join("memory.current")).unwrap_or(0), "limit": limit, "stats": kv(&d.join("memory.stat"))})
    } else {
        json!({})
    };
    let pids_dir = v1("pids").or(v2.clone());
    let pids = match pids_dir {
        Some(d) => {
            let limit = read(&d.join("pids.max")).and_then(|m| m.trim().parse::<u64>().ok());
            match limit {
                Some(l) => json!({"current": num(&d.join("pids.current")).unwrap_or(0), "limit": l}),
                None => json!({"current": num(&d.join("pids.current")).unwrap_or(0)}),
            }
        }
        None => json!({}),
    };
    let blkio = json!({"io_service_bytes_recursive": null, "io_serviced_recursive": null});
    Sample { cpu, memory, pids, blkio }
}

/// Docker's stats object from the current and the previous sample.
pub fn document(id: &str, name: &str, now: &Sample, pre: Option<&Sample>) -> Value {
    let empty_cpu =
        json!({"cpu_usage": {"total_usage": 0}, "system_cpu_usage": 0, "online_cpus": 0, "throttling_data": {}});
    json!({
        "read": berth_runtime::state::now_rfc3339(),
        "preread": if pre.is_some() { berth_runtime::state::now_rfc3339() } else { "0001-01-01T00:00:00Z".into() },
        "id": id,
        "name": format!("/{name}"),
        "pids_stats": now.pids,
        "blkio_stats": now.blkio,
        "num_procs": 0,
        "storage_stats": {},
        "cpu_stats": now.cpu,
        "precpu_stats": pre.map(|p| p.cpu.clone()).unwrap_or(empty_cpu),
        "memory_stats": now.memory,
        // Filled in for containers on a bridge network (`veth_counters`).
        "networks": {},
    })
}

/// The container's interface counters (`(ifname, host end)` pairs), read from the host end of
/// each veth pair (what the host end receives the container sent, and the other way round).
pub fn veth_counters(ifaces: &[(String, String)]) -> Value {
    let mut out = serde_json::Map::new();
    for (ifname, host_if) in ifaces {
        let dir = Path::new("/sys/class/net").join(host_if).join("statistics");
        let n = |f: &str| num(&dir.join(f)).unwrap_or(0);
        out.insert(ifname.clone(), json!({
            "rx_bytes": n("tx_bytes"), "rx_packets": n("tx_packets"), "rx_errors": n("tx_errors"), "rx_dropped": n("tx_dropped"),
            "tx_bytes": n("rx_bytes"), "tx_packets": n("rx_packets"), "tx_errors": n("rx_errors"), "tx_dropped": n("rx_dropped"),
        }));
    }
    Value::Object(out)
}
