//! A Docker container configuration (`Config` + `HostConfig` of `POST /containers/create`)
//! and its image's config, turned into an OCI runtime spec (`config.json`).
//!
//! Starts from the runtime's Docker-equivalent defaults (capabilities, seccomp profile,
//! masked and read-only paths, device rules) and applies what the request asks for. Fields
//! Berth cannot honour yet are refused by [`check_supported`] at create time, so nothing is
//! accepted and silently ignored.

use crate::http::ApiError;
use serde_json::{json, Value};
use std::path::Path;

/// Non-empty strings of a JSON array (null and missing are empty).
pub fn strings(v: &Value) -> Vec<String> {
    v.as_array().map(|a| a.iter().filter_map(|s| s.as_str().map(String::from)).collect()).unwrap_or_default()
}

fn nonzero(v: &Value) -> bool {
    match v {
        Value::Null => false,
        Value::Bool(b) => *b,
        Value::Number(n) => n.as_f64() != Some(0.0),
        Value::String(s) => !s.is_empty(),
        Value::Array(a) => !a.is_empty(),
        Value::Object(o) => !o.is_empty(),
    }
}

/// The container's /etc/resolv.conf: `--dns`/`--dns-search`/`--dns-option` if given, else the
/// host's, without loopback resolvers a container cannot reach (Google's as Docker's fallback);
/// with host networking, the host's file as it is.
pub fn resolv_conf(host: &Value, host_net: bool, embedded_dns: Option<&str>) -> String {
    let file = std::fs::read_to_string("/etc/resolv.conf").unwrap_or_default();
    let (dns, search, opts) = (strings(&host["Dns"]), strings(&host["DnsSearch"]), strings(&host["DnsOptions"]));
    if host_net && dns.is_empty() && search.is_empty() && opts.is_empty() {
        return file;
    }
    let lines = |key: &str| -> Vec<String> {
        file.lines()
            .filter_map(|l| l.trim().strip_prefix(key))
            .filter(|r| r.starts_with([' ', '\t']))
            .flat_map(|r| r.split_whitespace().map(String::from).collect::<Vec<_>>())
            .collect()
    };
    let mut ns = if let (true, Some(e)) = (dns.is_empty(), embedded_dns) {
        vec![e.to_string()]
    } else if dns.is_empty() {
        lines("nameserver").into_iter().filter(|n| !n.starts_with("127.") && n != "::1").collect()
    } else {
        dns
    };
    if ns.is_empty() {
        ns = vec!["8.8.8.8".into(), "8.8.4.4".into()];
    }
    let search = if search.is_empty() { lines("search") } else { search };
    let opts = if opts.is_empty() { lines("options") } else { opts };
    let mut out = String::new();
    for n in ns {
        out.push_str(&format!("nameserver {n}\n"));
    }
    if !search.is_empty() {
        out.push_str(&format!("search {}\n", search.join(" ")));
    }
    if !opts.is_empty() {
        out.push_str(&format!("options {}\n", opts.join(" ")));
    }
    out
}

/// Refuse what is not implemented yet, naming the field (Docker's 400 for bad parameters).
pub fn check_supported(_cfg: &Value, host: &Value) -> Result<(), ApiError> {
    let unsupported_host = [
        ("Links", "links are not supported"),
        ("VolumesFrom", "--volumes-from is not supported yet"),
        ("DeviceRequests", "--gpus is not supported"),
        ("Sysctls", "--sysctl is not supported yet"),
        ("SecurityOpt", "--security-opt is not supported yet"),
        ("UsernsMode", "--userns is not supported yet"),
        ("CgroupParent", "--cgroup-parent is not supported yet"),
        ("CpusetCpus", "--cpuset-cpus is not supported yet"),
        ("BlkioWeight", "--blkio-weight is not supported yet"),
    ];
    for (field, why) in unsupported_host {
        if nonzero(&host[field]) {
            return Err(ApiError::bad(why));
        }
    }
    let mode = host["NetworkMode"].as_str().unwrap_or("");
    let publishes = nonzero(&host["PortBindings"]) || host["PublishAllPorts"].as_bool().unwrap_or(false);
    if mode.starts_with("container:") {
        // As dockerd: what the other container's namespace decides cannot be set here.
        let conflicts = [
            (publishes, "conflicting options: port publishing and the container type network mode"),
            (nonzero(&_cfg["Hostname"]), "conflicting options: hostname and the network mode"),
            (nonzero(&_cfg["MacAddress"]), "conflicting options: mac-address and the network mode"),
            (
                nonzero(&host["Dns"]) || nonzero(&host["DnsSearch"]) || nonzero(&host["DnsOptions"]),
                "conflicting options: dns and the network mode",
            ),
            (nonzero(&host["ExtraHosts"]), "conflicting options: custom host-to-IP mapping and the network mode"),
            (nonzero(&_cfg["ExposedPorts"]), "conflicting options: port exposing and the container type network mode"),
        ];
        if let Some((_, why)) = conflicts.iter().find(|(c, _)| *c) {
            return Err(ApiError::bad(*why));
        }
    }
    if publishes && mode == "none" {
        return Err(ApiError::bad("conflicting options: port publishing and the container type network mode"));
    }
    if !matches!(mode, "none" | "host") {
        crate::network::requested_ports(host, &_cfg["ExposedPorts"])?;
    }
    for h in strings(&host["ExtraHosts"]) {
        let ok = h.split_once(':').is_some_and(|(name, ip)| {
            !name.is_empty() && (ip == "host-gateway" || ip.parse::<std::net::IpAddr>().is_ok())
        });
        if !ok {
            return Err(ApiError::bad(format!("invalid argument \"{h}\" for \"--add-host\" flag: expected HOST:IP")));
        }
    }
    for d in strings(&host["Dns"]) {
        if d.parse::<std::net::IpAddr>().is_err() {
            return Err(ApiError::bad(format!("{d} is not an ip address")));
        }
    }
    if let Some(t) = host["LogConfig"]["Type"].as_str() {
        if !t.is_empty() && t != "json-file" {
            return Err(ApiError::bad(format!("logging driver {t:?} is not supported: use json-file")));
        }
    }
    for m in ["PidMode", "IpcMode", "UTSMode"] {
        match host[m].as_str().unwrap_or("") {
            "" | "private" | "shareable" => {}
            "host" if m != "IpcMode" => {}
            other => return Err(ApiError::bad(format!("{m} {other:?} is not supported yet"))),
        }
    }
    Ok(())
}

/// The process's user: "uid[:gid]" or "name[:group]" looked up in the image's /etc/passwd
/// and /etc/group; additional groups from /etc/group.
pub fn resolve_user(rootfs: &Path, user: &str) -> Result<(u32, u32, Vec<u32>), ApiError> {
    let read = |f: &str| std::fs::read_to_string(rootfs.join(f)).unwrap_or_default();
    let (u, g) = user.split_once(':').map(|(u, g)| (u, Some(g))).unwrap_or((user, None));
    let passwd = read("etc/passwd");
    let group = read("etc/group");
    let entry = passwd
        .lines()
        .map(|l| l.split(':').collect::<Vec<_>>())
        .find(|f| f.len() >= 4 && (f[0] == u || (u.parse::<u32>().is_ok() && f[2] == u)));
    let uid = match u.parse::<u32>() {
        Ok(n) => n,
        Err(_) => match &entry {
            Some(f) => f[2].parse().unwrap_or(0),
            None => return Err(ApiError::bad(format!("unable to find user {u}: no matching entries in passwd file"))),
        },
    };
    let gid = match g {
        Some(g) => match g.parse::<u32>() {
            Ok(n) => n,
            Err(_) => group
                .lines()
                .map(|l| l.split(':').collect::<Vec<_>>())
                .find(|f| f.len() >= 3 && f[0] == g)
                .and_then(|f| f[2].parse().ok())
                .ok_or_else(|| ApiError::bad(format!("unable to find group {g}: no matching entries in group file")))?,
        },
        None => entry.as_ref().and_then(|f| f[3].parse().ok()).unwrap_or(0),
    };
    let name = entry.as_ref().map(|f| f[0].to_string());
    // As runc under dockerd: the primary group is a supplementary group too (`id` shows it in
    // groups=), then the groups that list the user as a member.
    let mut extra = vec![gid];
    if let Some(n) = name {
        let member = group
            .lines()
            .map(|l| l.split(':').collect::<Vec<_>>())
            .filter(|f| f.len() >= 4 && f[3].split(',').any(|m| m == n))
            .filter_map(|f| f[2].parse::<u32>().ok());
        for g in member {
            if !extra.contains(&g) {
                extra.push(g);
            }
        }
    }
    Ok((uid, gid, extra))
}

/// The command: Entrypoint + Cmd of the request, falling back to the image's (an image's Cmd is
/// dropped when the request sets an Entrypoint, as Docker does).
pub fn command(cfg: &Value, image_cfg: &Value) -> Vec<String> {
    let ic = &image_cfg["config"];
    let (ep, cmd) = if !cfg["Entrypoint"].is_null() {
        (strings(&cfg["Entrypoint"]), strings(&cfg["Cmd"]))
    } else {
        let cmd = if cfg["Cmd"].is_null() { strings(&ic["Cmd"]) } else { strings(&cfg["Cmd"]) };
        (strings(&ic["Entrypoint"]), cmd)
    };
    ep.into_iter().chain(cmd).collect()
}

/// Environment: the image's, then the request's (same names replaced), PATH ensured.
pub fn environment(cfg: &Value, image_cfg: &Value, hostname: &str, tty: bool) -> Vec<String> {
    let mut env: Vec<String> = Vec::new();
    let mut set = |kv: String| {
        let key = kv.split('=').next().unwrap_or("").to_string();
        env.retain(|e| e.split('=').next() != Some(key.as_str()));
        env.push(kv);
    };
    set("PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin".into());
    set(format!("HOSTNAME={hostname}"));
    if tty {
        set("TERM=xterm".into());
    }
    for e in strings(&image_cfg["config"]["Env"]).into_iter().chain(strings(&cfg["Env"])) {
        set(e);
    }
    env.sort_by_key(|e| e.split('=').next() != Some("PATH"));
    env
}

pub struct SpecInput<'a> {
    pub id: &'a str,
    pub cfg: &'a Value,
    pub host: &'a Value,
    pub image_cfg: &'a Value,
    /// The mounted root filesystem.
    pub rootfs: &'a Path,
    /// Where /etc/hostname, /etc/hosts and /etc/resolv.conf for the container are.
    pub files_dir: &'a Path,
    /// Resolved mount points (volumes' sources are their `_data` directories).
    pub mounts: &'a [MountPoint],
    /// The pinned network namespace to join (bridge networking), if any.
    pub netns: Option<&'a Path>,
    /// The host's network namespace (`--network host`, or a container that has it).
    pub host_net: bool,
}

pub fn build(i: &SpecInput<'_>) -> Result<Value, ApiError> {
    let (cfg, host) = (i.cfg, i.host);
    let args = command(cfg, i.image_cfg);
    if args.is_empty() {
        return Err(ApiError::bad("no command specified"));
    }
    let mut spec = berth_runtime::defaults::default_spec(&args);
    let hostname = cfg["Hostname"].as_str().filter(|h| !h.is_empty()).unwrap_or(&i.id[..12]).to_string();
    let tty = cfg["Tty"].as_bool().unwrap_or(false);
    spec["hostname"] = json!(hostname);
    spec["root"] = json!({"path": i.rootfs, "readonly": host["ReadonlyRootfs"].as_bool().unwrap_or(false)});
    let p = &mut spec["process"];
    p["terminal"] = json!(tty);
    if let Some([h, w]) = host["ConsoleSize"].as_array().map(|a| a.as_slice()) {
        if let (Some(h), Some(w)) = (h.as_u64().filter(|h| *h > 0), w.as_u64().filter(|w| *w > 0)) {
            p["consoleSize"] = json!({"height": h, "width": w});
        }
    }
    p["env"] = json!(environment(cfg, i.image_cfg, &hostname, tty));
    let wd = cfg["WorkingDir"].as_str().filter(|w| !w.is_empty());
    let wd = wd.or(i.image_cfg["config"]["WorkingDir"].as_str().filter(|w| !w.is_empty())).unwrap_or("/");
    if !wd.starts_with('/') {
        return Err(ApiError::bad(format!("the working directory '{wd}' is invalid, it needs to be an absolute path")));
    }
    p["cwd"] = json!(wd);
    // As dockerd: a working directory the image lacks is made at start (root's, 0755).
    if let Ok(dir) = berth_build::copy::resolve_in_root(i.rootfs, wd, true) {
        if !dir.exists() {
            let _ = std::fs::create_dir_all(&dir);
        }
    }
    let user = cfg["User"].as_str().filter(|u| !u.is_empty());
    let user = user.or(i.image_cfg["config"]["User"].as_str().filter(|u| !u.is_empty()));
    if let Some(u) = user {
        let (uid, gid, extra) = resolve_user(i.rootfs, u)?;
        p["user"] = json!({"uid": uid, "gid": gid, "additionalGids": extra});
    }
    // Capabilities.
    let mut caps: Vec<String> = strings(&p["capabilities"]["bounding"]);
    let norm = |c: &str| {
        let c = c.to_ascii_uppercase();
        if c.starts_with("CAP_") || c == "ALL" {
            c
        } else {
            format!("CAP_{c}")
        }
    };
    for d in strings(&host["CapDrop"]) {
        let d = norm(&d);
        if d == "ALL" {
            caps.clear();
        } else {
            caps.retain(|c| *c != d);
        }
    }
    for a in strings(&host["CapAdd"]) {
        let a = norm(&a);
        if a == "ALL" {
            return Err(ApiError::bad("--cap-add ALL is not supported yet"));
        }
        if serde_json::from_value::<oci_spec::runtime::Capability>(json!(a)).is_err() {
            return Err(ApiError::bad(format!("unknown capability: {a:?}")));
        }
        if !caps.contains(&a) {
            caps.push(a);
        }
    }
    for set in ["bounding", "effective", "permitted"] {
        p["capabilities"][set] = json!(caps);
    }
    let privileged = host["Privileged"].as_bool().unwrap_or(false);
    if privileged {
        caps = all_capabilities();
        for set in ["bounding", "effective", "permitted"] {
            p["capabilities"][set] = json!(caps);
        }
    }
    // Ulimits, within what this process may grant (the runtime refuses more, clearly). None
    // by default: as with dockerd, the container inherits the daemon's limits (the OCI
    // default of 1024 open files would cramp servers such as mariadbd).
    p["rlimits"] = json!([]);
    for u in host["Ulimits"].as_array().cloned().unwrap_or_default() {
        let name = u["Name"].as_str().unwrap_or("");
        if !ULIMITS.contains(&name) {
            return Err(ApiError::bad(format!("invalid ulimit type: {name}")));
        }
        let (soft, hard) = (u["Soft"].as_i64().unwrap_or(0), u["Hard"].as_i64().unwrap_or(0));
        if soft < 0 || hard < 0 {
            return Err(ApiError::bad(format!("invalid ulimit {name}: limits must not be negative")));
        }
        if soft > hard {
            return Err(ApiError::bad(format!(
                "ulimit soft limit must be less than or equal to hard limit: {soft} > {hard}"
            )));
        }
        let ty = format!("RLIMIT_{}", name.to_ascii_uppercase());
        let list = p["rlimits"].as_array_mut().expect("rlimits is an array");
        list.retain(|r| r["type"] != ty.as_str());
        list.push(json!({"type": ty, "soft": soft, "hard": hard}));
    }
    // The seccomp profile follows the capabilities, as Docker's does; privileged has none,
    // nor masked or read-only paths, and sees /sys and cgroups read-write.
    if privileged {
        spec["linux"]["seccomp"] = Value::Null;
        spec["linux"]["maskedPaths"] = json!([]);
        spec["linux"]["readonlyPaths"] = json!([]);
        for m in spec["mounts"].as_array_mut().expect("default spec has mounts") {
            if m["destination"] == "/sys" || m["destination"] == "/sys/fs/cgroup" {
                if let Some(o) = m["options"].as_array_mut() {
                    o.retain(|x| x != "ro");
                    o.push(json!("rw"));
                }
            }
        }
    } else {
        spec["linux"]["seccomp"] = serde_json::to_value(berth_seccomp::default_profile(&caps)).unwrap_or(Value::Null);
    }
    // Namespaces.
    let mut ns: Vec<Value> = vec![
        json!({"type": "pid"}),
        json!({"type": "ipc"}),
        json!({"type": "uts"}),
        json!({"type": "mount"}),
        json!({"type": "cgroup"}),
    ];
    match i.netns {
        Some(p) => ns.push(json!({"type": "network", "path": p})),
        None if !i.host_net => ns.push(json!({"type": "network"})),
        None => {}
    }
    if host["PidMode"] == "host" {
        ns.retain(|n| n["type"] != "pid");
    }
    if host["UTSMode"] == "host" {
        ns.retain(|n| n["type"] != "uts");
    }
    spec["linux"]["namespaces"] = json!(ns);
    // Resources.
    let r = &mut spec["linux"]["resources"];
    if let Some(m) = host["Memory"].as_i64().filter(|m| *m > 0) {
        if m < 6 << 20 {
            return Err(ApiError::bad("Minimum memory limit allowed is 6MB"));
        }
        r["memory"] = json!({"limit": m});
        if let Some(s) = host["MemorySwap"].as_i64().filter(|s| *s != 0) {
            r["memory"]["swap"] = json!(s);
        }
    }
    if let Some(n) = host["NanoCpus"].as_i64().filter(|n| *n > 0) {
        let period = 100_000i64;
        r["cpu"]["period"] = json!(period);
        r["cpu"]["quota"] = json!(n * period / 1_000_000_000);
    }
    if let Some(q) = host["CpuQuota"].as_i64().filter(|q| *q > 0) {
        r["cpu"]["quota"] = json!(q);
        r["cpu"]["period"] = json!(host["CpuPeriod"].as_i64().filter(|p| *p > 0).unwrap_or(100_000));
    }
    if let Some(s) = host["CpuShares"].as_i64().filter(|s| *s > 0) {
        r["cpu"]["shares"] = json!(s);
    }
    if let Some(pl) = host["PidsLimit"].as_i64().filter(|p| *p > 0) {
        r["pids"] = json!({"limit": pl});
    }
    spec["linux"]["cgroupsPath"] = json!(format!("/berth/{}", i.id));
    if host["Init"].as_bool().unwrap_or(false) {
        // The runtime's own minimal init as pid 1 (reaps orphans, passes signals on).
        spec["annotations"][berth_runtime::container::INIT_ANNOTATION] = json!("true");
    }
    // Devices: --device ones, or every host device for --privileged.
    let mut wanted: Vec<(String, String, String)> = Vec::new();
    for dv in host["Devices"].as_array().cloned().unwrap_or_default() {
        let on_host = dv["PathOnHost"].as_str().unwrap_or("").to_string();
        let inside = dv["PathInContainer"].as_str().filter(|x| !x.is_empty()).unwrap_or(&on_host).to_string();
        let perms = dv["CgroupPermissions"].as_str().filter(|x| !x.is_empty()).unwrap_or("rwm").to_string();
        if !perms.chars().all(|c| matches!(c, 'r' | 'w' | 'm')) {
            return Err(ApiError::bad(format!("invalid device cgroup permissions {perms:?}: use r, w and m")));
        }
        if !inside.starts_with('/') {
            return Err(ApiError::bad(format!("invalid device path in container {inside:?}: must be absolute")));
        }
        wanted.push((on_host, inside, perms));
    }
    if privileged {
        for d in host_devices() {
            if !wanted.iter().any(|(_, inside, _)| *inside == d) {
                wanted.push((d.clone(), d, "rwm".into()));
            }
        }
        spec["linux"]["resources"]["devices"] = json!([{"allow": true, "access": "rwm"}]);
    }
    for (on_host, inside, perms) in wanted {
        use std::os::unix::fs::{FileTypeExt, MetadataExt};
        let md = std::fs::metadata(&on_host).map_err(|e| {
            ApiError::bad(format!("error gathering device information while adding custom device {on_host:?}: {e}"))
        })?;
        let ft = md.file_type();
        let ty = if ft.is_char_device() {
            "c"
        } else if ft.is_block_device() {
            "b"
        } else {
            return Err(ApiError::bad(format!("{on_host} is not a device node")));
        };
        let rdev = md.rdev();
        let (major, minor) = (libc::major(rdev) as i64, libc::minor(rdev) as i64);
        let devs = spec["linux"]["devices"].as_array_mut();
        let entry = json!({"path": inside, "type": ty, "major": major, "minor": minor, "fileMode": md.mode() & 0o777, "uid": 0, "gid": 0});
        match devs {
            Some(list) => {
                list.retain(|x| x["path"] != inside.as_str());
                list.push(entry);
            }
            None => spec["linux"]["devices"] = json!([entry]),
        }
        if !privileged {
            spec["linux"]["resources"]["devices"]
                .as_array_mut()
                .expect("default spec has device rules")
                .push(json!({"allow": true, "type": ty, "major": major, "minor": minor, "access": perms}));
        }
    }
    // Mounts: the container's /etc files, then binds.
    let mounts = spec["mounts"].as_array_mut().expect("default spec has mounts");
    for f in ["hostname", "hosts", "resolv.conf"] {
        mounts.push(json!({"destination": format!("/etc/{f}"), "type": "bind", "source": i.files_dir.join(f), "options": ["rbind", "rprivate"]}));
    }
    for m in i.mounts {
        mounts.push(oci_mount(m)?);
    }
    Ok(spec)
}

/// `--ulimit` names Docker accepts.
const ULIMITS: &[&str] = &[
    "core",
    "cpu",
    "data",
    "fsize",
    "locks",
    "memlock",
    "msgqueue",
    "nice",
    "nofile",
    "nproc",
    "rss",
    "rtprio",
    "rttime",
    "sigpending",
    "stack",
];

/// Every capability this kernel knows (for `--privileged`).
fn all_capabilities() -> Vec<String> {
    const NAMES: &[&str] = &[
        "CHOWN",
        "DAC_OVERRIDE",
        "DAC_READ_SEARCH",
        "FOWNER",
        "FSETID",
        "KILL",
        "SETGID",
        "SETUID",
        "SETPCAP",
        "LINUX_IMMUTABLE",
        "NET_BIND_SERVICE",
        "NET_BROADCAST",
        "NET_ADMIN",
        "NET_RAW",
        "IPC_LOCK",
        "IPC_OWNER",
        "SYS_MODULE",
        "SYS_RAWIO",
        "SYS_CHROOT",
        "SYS_PTRACE",
        "SYS_PACCT",
        "SYS_ADMIN",
        "SYS_BOOT",
        "SYS_NICE",
        "SYS_RESOURCE",
        "SYS_TIME",
        "SYS_TTY_CONFIG",
        "MKNOD",
        "LEASE",
        "AUDIT_WRITE",
        "AUDIT_CONTROL",
        "SETFCAP",
        "MAC_OVERRIDE",
        "MAC_ADMIN",
        "SYSLOG",
        "WAKE_ALARM",
        "BLOCK_SUSPEND",
        "AUDIT_READ",
        "PERFMON",
        "BPF",
        "CHECKPOINT_RESTORE",
    ];
    let last: usize =
        std::fs::read_to_string("/proc/sys/kernel/cap_last_cap").ok().and_then(|s| s.trim().parse().ok()).unwrap_or(40);
    // Only those we hold: a capability outside our bounding set cannot be granted (here,
    // for instance, CAP_SYS_RESOURCE may be absent).
    let bnd = std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| s.lines().find_map(|l| l.strip_prefix("CapBnd:").map(|v| v.trim().to_string())))
        .and_then(|v| u64::from_str_radix(&v, 16).ok())
        .unwrap_or(u64::MAX);
    NAMES
        .iter()
        .enumerate()
        .take(last + 1)
        .filter(|(i, _)| bnd & (1u64 << i) != 0)
        .map(|(_, n)| format!("CAP_{n}"))
        .collect()
}

/// Device nodes of the host's /dev (and one level below), for `--privileged`.
fn host_devices() -> Vec<String> {
    use std::os::unix::fs::FileTypeExt;
    let mut out = Vec::new();
    let mut dirs = vec![std::path::PathBuf::from("/dev")];
    let mut depth = 0;
    while !dirs.is_empty() && depth < 2 {
        let mut next = Vec::new();
        for d in dirs {
            for e in std::fs::read_dir(&d).into_iter().flatten().flatten() {
                let path = e.path();
                let name = e.file_name().to_string_lossy().into_owned();
                if matches!(name.as_str(), "pts" | "shm" | "mqueue" | "console" | "ptmx" | "fd" | "core") {
                    continue;
                }
                let Ok(ft) = e.file_type() else { continue };
                if ft.is_dir() {
                    next.push(path);
                } else if ft.is_char_device() || ft.is_block_device() {
                    out.push(path.to_string_lossy().into_owned());
                }
            }
        }
        dirs = next;
        depth += 1;
    }
    out.sort();
    out
}

/// A mount point of a container, as recorded (and shown by inspect, in Docker's shape).
#[derive(serde::Serialize, serde::Deserialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "PascalCase")]
pub struct MountPoint {
    /// bind, volume or tmpfs
    #[serde(rename = "Type")]
    pub kind: String,
    /// The volume's name (volumes only).
    #[serde(default)]
    pub name: String,
    /// The host path (a volume's `_data`; empty for tmpfs).
    pub source: String,
    pub destination: String,
    #[serde(default)]
    pub driver: String,
    #[serde(default)]
    pub mode: String,
    #[serde(rename = "RW")]
    pub rw: bool,
    #[serde(default)]
    pub propagation: String,
    /// tmpfs mount options (size=, mode=, ...).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub tmpfs_options: Vec<String>,
    /// Do not copy the image's content into a new volume.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub no_copy: bool,
    /// An anonymous volume (removed with the container by `rm -v`).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub anonymous: bool,
    /// A `-v` bind: a missing source directory is created at start.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub create_source: bool,
}

impl MountPoint {
    pub fn docker_json(&self) -> Value {
        let mut v = json!({
            "Type": self.kind, "Source": self.source, "Destination": self.destination,
            "Mode": self.mode, "RW": self.rw, "Propagation": self.propagation,
        });
        if self.kind == "volume" {
            v["Name"] = json!(self.name);
            v["Driver"] = json!(self.driver);
        }
        v
    }
}

fn check_destination(dst: &str, what: &str) -> Result<(), ApiError> {
    if !dst.starts_with('/') {
        return Err(ApiError::bad(format!(
            "invalid mount config: {what}: the destination {dst:?} must be an absolute path"
        )));
    }
    if dst.split('/').any(|c| c == "..") {
        return Err(ApiError::bad(format!("invalid mount config: {what}: the destination may not contain '..'")));
    }
    if dst.trim_end_matches('/').is_empty() {
        return Err(ApiError::bad(format!("invalid mount config: {what}: the destination can't be '/'")));
    }
    Ok(())
}

/// `-v SRC:DST[:OPTS]` (SRC an absolute host path or a volume name) as a mount point; nothing
/// is created. A volume's source is its name until the daemon resolves it.
pub fn parse_bind(b: &str) -> Result<MountPoint, ApiError> {
    let parts: Vec<&str> = b.split(':').collect();
    let (src, dst, opts) = match parts.as_slice() {
        [s, d] => (*s, *d, ""),
        [s, d, o] => (*s, *d, *o),
        _ => return Err(ApiError::bad(format!("invalid volume specification: '{b}'"))),
    };
    let volume = !src.starts_with('/');
    if volume && !crate::volumes::valid_name(src) {
        return Err(ApiError::bad(format!(
            "invalid volume specification: '{b}': \"{src}\" includes invalid characters for a local volume name, only \"[a-zA-Z0-9][a-zA-Z0-9_.-]\" are allowed. If you intended to pass a host directory, use absolute path"
        )));
    }
    if !dst.starts_with('/') {
        return Err(ApiError::bad(format!("invalid volume specification: '{b}': the destination must be absolute")));
    }
    if dst.trim_end_matches('/').is_empty() {
        return Err(ApiError::bad(format!("invalid volume specification: '{b}': destination can't be '/'")));
    }
    if dst.split('/').any(|c| c == "..") {
        return Err(ApiError::bad(format!(
            "invalid volume specification: '{b}': the destination may not contain '..'"
        )));
    }
    let mut m = MountPoint {
        kind: if volume { "volume" } else { "bind" }.into(),
        name: if volume { src.to_string() } else { String::new() },
        source: if volume { String::new() } else { src.to_string() },
        destination: dst.to_string(),
        driver: if volume { "local".into() } else { String::new() },
        mode: opts.to_string(),
        rw: true,
        propagation: if volume { String::new() } else { "rprivate".into() },
        tmpfs_options: Vec::new(),
        no_copy: false,
        anonymous: false,
        create_source: !volume,
    };
    for opt in opts.split(',').filter(|s| !s.is_empty()) {
        match opt {
            "ro" => m.rw = false,
            "rw" => {}
            "z" | "Z" => {}
            "nocopy" if volume => m.no_copy = true,
            "private" | "rprivate" | "shared" | "rshared" | "slave" | "rslave" if !volume => {
                m.propagation = opt.to_string()
            }
            other => {
                return Err(ApiError::bad(format!("invalid volume specification: '{b}': unknown option {other:?}")))
            }
        }
    }
    Ok(m)
}

/// Every mount a create request asks for: `Binds`, `Mounts`, `Tmpfs`, then anonymous volumes
/// for the request's and the image's `Volumes` not otherwise covered. Validated, nothing made.
pub fn requested_mounts(cfg: &Value, host: &Value, image_cfg: &Value) -> Result<Vec<MountPoint>, ApiError> {
    let mut out: Vec<MountPoint> = Vec::new();
    let push = |m: MountPoint, out: &mut Vec<MountPoint>| -> Result<(), ApiError> {
        let d = m.destination.trim_end_matches('/');
        if out.iter().any(|x| x.destination.trim_end_matches('/') == d) {
            return Err(ApiError::bad(format!("Duplicate mount point: {}", m.destination)));
        }
        out.push(m);
        Ok(())
    };
    for b in strings(&host["Binds"]) {
        push(parse_bind(&b)?, &mut out)?;
    }
    for m in host["Mounts"].as_array().cloned().unwrap_or_default() {
        let kind = m["Type"].as_str().unwrap_or("");
        let src = m["Source"].as_str().unwrap_or("");
        let dst = m["Target"].as_str().unwrap_or("");
        check_destination(dst, &format!("--mount type={kind}"))?;
        let ro = m["ReadOnly"].as_bool().unwrap_or(false);
        let mut mp = MountPoint {
            kind: kind.to_string(),
            name: String::new(),
            source: String::new(),
            destination: dst.to_string(),
            driver: String::new(),
            mode: String::new(),
            rw: !ro,
            propagation: String::new(),
            tmpfs_options: Vec::new(),
            no_copy: false,
            anonymous: false,
            create_source: false,
        };
        match kind {
            "bind" => {
                if !src.starts_with('/') {
                    return Err(ApiError::bad(format!("invalid mount config for type \"bind\": invalid mount path: '{src}' mount path must be absolute")));
                }
                if !Path::new(src).exists() {
                    return Err(ApiError::bad(format!(
                        "invalid mount config for type \"bind\": bind source path does not exist: {src}"
                    )));
                }
                mp.source = src.to_string();
                mp.propagation = m["BindOptions"]["Propagation"]
                    .as_str()
                    .filter(|p| !p.is_empty())
                    .unwrap_or("rprivate")
                    .to_string();
                if !matches!(
                    mp.propagation.as_str(),
                    "private" | "rprivate" | "shared" | "rshared" | "slave" | "rslave"
                ) {
                    return Err(ApiError::bad(format!("invalid propagation mode: {}", mp.propagation)));
                }
            }
            "volume" => {
                if !src.is_empty() && !crate::volumes::valid_name(src) {
                    return Err(ApiError::bad(format!(
                        "invalid mount config for type \"volume\": invalid volume name {src:?}"
                    )));
                }
                let driver = m["VolumeOptions"]["DriverConfig"]["Name"].as_str().unwrap_or("");
                if !matches!(driver, "" | "local") {
                    return Err(ApiError::bad(format!("volume driver {driver:?} is not supported: only local")));
                }
                mp.name = src.to_string();
                mp.anonymous = src.is_empty();
                mp.driver = "local".into();
                mp.mode = "z".into();
                mp.no_copy = m["VolumeOptions"]["NoCopy"].as_bool().unwrap_or(false);
            }
            "tmpfs" => {
                if !src.is_empty() {
                    return Err(ApiError::bad(
                        "invalid mount config for type \"tmpfs\": field Source must not be specified",
                    ));
                }
                mp.tmpfs_options = vec!["noexec".into(), "nosuid".into(), "nodev".into()];
                if let Some(n) = m["TmpfsOptions"]["SizeBytes"].as_i64().filter(|n| *n > 0) {
                    mp.tmpfs_options.push(format!("size={n}"));
                }
                if let Some(n) = m["TmpfsOptions"]["Mode"].as_u64().filter(|n| *n > 0) {
                    mp.tmpfs_options.push(format!("mode={n:o}"));
                }
                if ro {
                    mp.tmpfs_options.push("ro".into());
                }
            }
            other => {
                return Err(ApiError::bad(format!("mount type {other:?} is not supported: use bind, volume or tmpfs")))
            }
        }
        push(mp, &mut out)?;
    }
    if let Some(t) = host["Tmpfs"].as_object() {
        for (dst, opts) in t {
            check_destination(dst, "--tmpfs")?;
            let mut o = vec!["noexec".to_string(), "nosuid".into(), "nodev".into()];
            let mut rw = true;
            for opt in opts.as_str().unwrap_or("").split(',').filter(|x| !x.is_empty()) {
                let key = opt.split('=').next().unwrap_or("");
                if !matches!(
                    key,
                    "size"
                        | "mode"
                        | "uid"
                        | "gid"
                        | "nr_inodes"
                        | "nr_blocks"
                        | "ro"
                        | "rw"
                        | "exec"
                        | "noexec"
                        | "suid"
                        | "nosuid"
                        | "dev"
                        | "nodev"
                        | "atime"
                        | "noatime"
                        | "relatime"
                        | "strictatime"
                ) {
                    return Err(ApiError::bad(format!("--tmpfs {dst}: unknown option {opt:?}")));
                }
                for (on, off) in [("exec", "noexec"), ("suid", "nosuid"), ("dev", "nodev")] {
                    if opt == on {
                        o.retain(|x| x != off);
                    }
                }
                if opt == "ro" {
                    rw = false;
                }
                if !matches!(opt, "exec" | "suid" | "dev" | "rw") && !o.iter().any(|x| x == opt) {
                    o.push(opt.to_string());
                }
            }
            let mp = MountPoint {
                kind: "tmpfs".into(),
                name: String::new(),
                source: String::new(),
                destination: dst.clone(),
                driver: String::new(),
                mode: String::new(),
                rw,
                propagation: String::new(),
                tmpfs_options: o,
                no_copy: false,
                anonymous: false,
                create_source: false,
            };
            push(mp, &mut out)?;
        }
    }
    let mut wanted: Vec<String> = Vec::new();
    for v in [&image_cfg["config"]["Volumes"], &cfg["Volumes"]] {
        if let Some(o) = v.as_object() {
            wanted.extend(o.keys().cloned());
        }
    }
    for dst in wanted {
        check_destination(&dst, "VOLUME")?;
        let d = dst.trim_end_matches('/');
        if out.iter().any(|x| x.destination.trim_end_matches('/') == d) {
            continue;
        }
        out.push(MountPoint {
            kind: "volume".into(),
            name: String::new(),
            source: String::new(),
            destination: dst.clone(),
            driver: "local".into(),
            mode: String::new(),
            rw: true,
            propagation: String::new(),
            tmpfs_options: Vec::new(),
            no_copy: false,
            anonymous: true,
            create_source: false,
        });
    }
    // Parents before children.
    out.sort_by_key(|m| m.destination.trim_end_matches('/').split('/').count());
    Ok(out)
}

/// A resolved mount point as an OCI mount; a `-v` bind's missing source directory is made.
pub fn oci_mount(m: &MountPoint) -> Result<Value, ApiError> {
    match m.kind.as_str() {
        "tmpfs" => {
            let mut o = m.tmpfs_options.clone();
            if !o.iter().any(|x| x == "ro") {
                o.push(if m.rw { "rw" } else { "ro" }.into());
            }
            Ok(json!({"destination": m.destination, "type": "tmpfs", "source": "tmpfs", "options": o}))
        }
        _ => {
            if m.create_source && !Path::new(&m.source).exists() {
                std::fs::create_dir_all(&m.source)
                    .map_err(|e| ApiError::bad(format!("creating bind source {}: {e}", m.source)))?;
            }
            let mut o = vec!["rbind".to_string()];
            if !m.rw {
                o.push("ro".into());
            }
            o.push(if m.propagation.is_empty() { "rprivate".into() } else { m.propagation.clone() });
            Ok(json!({"destination": m.destination, "type": "bind", "source": m.source, "options": o}))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn commands() {
        let img = json!({"config": {"Entrypoint": ["/ep"], "Cmd": ["a"]}});
        assert_eq!(command(&json!({}), &img), ["/ep", "a"]);
        assert_eq!(command(&json!({"Cmd": ["b"]}), &img), ["/ep", "b"]);
        assert_eq!(command(&json!({"Entrypoint": ["/x"]}), &img), ["/x"]);
        assert_eq!(command(&json!({"Entrypoint": [], "Cmd": ["sh"]}), &img), ["sh"]);
    }

    #[test]
    fn env_order() {
        let img = json!({"config": {"Env": ["PATH=/img", "A=1"]}});
        let env = environment(&json!({"Env": ["A=2", "B=3"]}), &img, "h", false);
        assert_eq!(env, ["PATH=/img", "HOSTNAME=h", "A=2", "B=3"]);
    }

    #[test]
    fn binds() {
        assert!(parse_bind("re/l:/x").is_err());
        assert_eq!(parse_bind("vol:/x:ro,nocopy").unwrap().name, "vol");
        assert!(parse_bind("/tmp:/x/../y").is_err());
        assert!(parse_bind("/tmp:/x:bogus").is_err());
        assert!(parse_bind("/a:/b:/c:/d").is_err());
        let m = oci_mount(&parse_bind("/tmp:/x:ro").unwrap()).unwrap();
        assert_eq!(m["options"], json!(["rbind", "ro", "rprivate"]));
    }

    #[test]
    fn unsupported_fields_are_refused() {
        let e = check_supported(
            &json!({}),
            &json!({"PortBindings": {"80/tcp": [{"HostPort": "8080"}]}, "NetworkMode": "none"}),
        )
        .unwrap_err();
        assert!(e.message.contains("port publishing"), "{}", e.message);
        assert!(check_supported(&json!({}), &json!({"PortBindings": {"80/tcp": [{"HostPort": "8080"}]}})).is_ok());
        assert!(check_supported(&json!({}), &json!({"ExtraHosts": ["nocolon"]})).is_err());
        assert!(check_supported(&json!({}), &json!({"ExtraHosts": ["db:10.0.0.2", "gw:host-gateway"]})).is_ok());
        assert!(check_supported(&json!({}), &json!({"Dns": ["not-an-ip"]})).is_err());
        assert!(check_supported(&json!({}), &json!({"PortBindings": {}, "NetworkMode": "default"})).is_ok());
        assert!(check_supported(&json!({}), &json!({"NetworkMode": "container:x"})).is_ok());
        for (cfg, host, says) in [
            (json!({"Hostname": "h"}), json!({}), "hostname"),
            (json!({}), json!({"Dns": ["10.0.0.1"]}), "dns"),
            (json!({}), json!({"ExtraHosts": ["a:10.0.0.1"]}), "host-to-IP"),
            (json!({"ExposedPorts": {"80/tcp": {}}}), json!({}), "port exposing"),
            (json!({}), json!({"PortBindings": {"80/tcp": [{"HostPort": "8080"}]}}), "port publishing"),
        ] {
            let mut host = host;
            host["NetworkMode"] = json!("container:x");
            let e = check_supported(&cfg, &host).unwrap_err();
            assert!(e.message.contains(says), "{}", e.message);
        }
    }
}
