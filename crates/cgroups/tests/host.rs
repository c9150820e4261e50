//! berth-cgroups against the real cgroup filesystem of this host (run as root).

use berth_cgroups::{detect_layout, devices, Layout, Manager};
use oci_spec::runtime::{LinuxDeviceCgroup, LinuxDeviceType, LinuxResources};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

fn resources(json: serde_json::Value) -> LinuxResources {
    serde_json::from_value(json).unwrap()
}

fn unique(name: &str) -> String {
    format!("{name}-{}", std::process::id())
}

#[test]
fn create_apply_track_freeze_destroy() {
    let id = unique("cgtest");
    let parent = format!("/berth-cgtest-{}", std::process::id());
    let path = PathBuf::from(&parent).join(&id);
    let mut m = Manager::new(Some(&path), &id).unwrap();
    let r = resources(serde_json::json!({
        "memory": {"limit": 64 << 20},
        "pids": {"limit": 20},
        "cpu": {"shares": 256, "quota": 20000, "period": 100000}
    }));
    m.validate(&r).unwrap();
    m.create().unwrap();
    let st = m.state();
    assert!(!st.created.is_empty());
    m.apply(&r).unwrap();
    let mem = m.dir("memory").unwrap().to_path_buf();
    let read = |p: &Path, f: &str| std::fs::read_to_string(p.join(f)).unwrap().trim().to_string();
    match detect_layout().unwrap() {
        Layout::V2 => {
            assert_eq!(read(&mem, "memory.max"), "67108864");
            assert_eq!(read(&mem, "cpu.max"), "20000 100000");
        }
        _ => {
            assert_eq!(read(&mem, "memory.limit_in_bytes"), "67108864");
            let cpu = m.dir("cpu").unwrap();
            assert_eq!(read(cpu, "cpu.cfs_quota_us"), "20000");
            assert_eq!(read(cpu, "cpu.shares"), "256");
        }
    }
    assert_eq!(read(m.dir("pids").unwrap(), "pids.max"), "20");

    // A process put in the cgroup is tracked, frozen and thawed.
    let mut child = Command::new("sleep").arg("100").stdin(Stdio::null()).spawn().unwrap();
    let pid = child.id() as i32;
    m.add_pid(pid).unwrap();
    assert_eq!(m.pids().unwrap(), vec![pid]);
    assert!(!m.is_frozen().unwrap());
    m.freeze().unwrap();
    assert!(m.is_frozen().unwrap());
    m.thaw().unwrap();
    assert!(!m.is_frozen().unwrap());
    let stats = m.stats().unwrap();
    assert_eq!(stats.pids_current, 1);
    assert_eq!(stats.pids_limit, Some(20));
    assert_eq!(stats.memory_limit, Some(64 << 20));
    assert!(stats.memory_stat.contains_key("rss") || stats.memory_stat.contains_key("anon"));

    // The state round-trips through JSON (it is persisted by the runtime).
    let again: berth_cgroups::CgroupState = serde_json::from_str(&serde_json::to_string(&st).unwrap()).unwrap();
    let m2 = Manager::from_state(again);
    child.kill().unwrap();
    child.wait().unwrap();
    m2.destroy().unwrap();
    for d in &st.dirs {
        assert!(!d.path.exists(), "left behind: {}", d.path.display());
        assert!(!d.path.parent().unwrap().exists(), "parent left behind: {}", d.path.display());
    }
}

#[test]
fn never_removes_what_it_did_not_create() {
    let parent = format!("/berth-keep-{}", std::process::id());
    // Make the parent ourselves, as another tool would have.
    let mut pre = Manager::new(Some(Path::new(&parent)), "x").unwrap();
    pre.create().unwrap();
    let id = unique("child");
    let mut m = Manager::new(Some(&PathBuf::from(&parent).join(&id)), &id).unwrap();
    m.create().unwrap();
    assert!(m.state().created.iter().all(|p| p.ends_with(&id)), "{:?}", m.state().created);
    m.destroy().unwrap();
    for d in pre.state().dirs {
        assert!(d.path.exists(), "pre-existing cgroup removed: {}", d.path.display());
    }
    pre.destroy().unwrap();
    // Destroying twice is harmless.
    pre.destroy().unwrap();
}

#[test]
fn refuses_what_the_host_cannot_do() {
    let m = Manager::new(None, "refuse").unwrap();
    let e = m.validate(&resources(serde_json::json!({"cpu": {"period": 10}}))).unwrap_err();
    assert!(e.to_string().contains("period"), "{e}");
    let e = m.validate(&resources(serde_json::json!({"cpu": {"cpus": "0-x"}}))).unwrap_err();
    assert!(e.to_string().contains("0-x"), "{e}");
    let e = m.validate(&resources(serde_json::json!({"memory": {"limit": 100, "swap": 50}}))).unwrap_err();
    assert!(e.to_string().contains("swap"), "{e}");
    if !Path::new("/sys/fs/cgroup/net_cls").exists() {
        let e = m.validate(&resources(serde_json::json!({"network": {"classID": 1}}))).unwrap_err();
        assert!(e.to_string().contains("net_cls"), "{e}");
    }
    assert!(!Path::new("/sys/fs/cgroup/memory/berth/refuse").exists());
}

/// The cgroup v2 eBPF device filter, on whichever cgroup2 hierarchy the host has
/// (on a hybrid host the device hook works without any enabled controller).
#[test]
fn v2_device_filter_denies_unlisted_devices() {
    let root = ["/sys/fs/cgroup/unified", "/sys/fs/cgroup"]
        .iter()
        .map(PathBuf::from)
        .find(|p| p.join("cgroup.procs").exists() && p.join("cgroup.controllers").exists());
    let Some(root) = root else {
        eprintln!("no cgroup2 hierarchy; skipped");
        return;
    };
    let dir = root.join(format!("berth-devtest-{}", std::process::id()));
    std::fs::create_dir(&dir).unwrap();
    let rule = |allow: bool, typ, major: Option<i64>, minor: Option<i64>, acc: &str| {
        let mut r = LinuxDeviceCgroup::default();
        r.set_allow(allow);
        r.set_typ(typ);
        r.set_major(major);
        r.set_minor(minor);
        r.set_access(Some(acc.into()));
        r
    };
    // Deny everything, then allow /dev/zero (1:5) read-only.
    let rules = vec![
        rule(false, Some(LinuxDeviceType::A), None, None, "rwm"),
        rule(true, Some(LinuxDeviceType::C), Some(1), Some(5), "r"),
    ];
    devices::apply(&dir, &rules).unwrap();
    let script = format!(
        "echo $$ > {}/cgroup.procs; head -c1 /dev/zero | wc -c; echo x > /dev/zero 2>/dev/null; echo w=$?; \
         cat /dev/null 2>/dev/null; echo n=$?",
        dir.display()
    );
    let out = Command::new("sh").arg("-c").arg(&script).output().unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    // Re-apply (as `update` does): the old program is replaced, not stacked.
    devices::apply(&dir, &[rule(true, Some(LinuxDeviceType::A), None, None, "rwm")]).unwrap();
    let out2 = Command::new("sh")
        .arg("-c")
        .arg(format!("echo $$ > {}/cgroup.procs; cat /dev/null; echo n=$?", dir.display()))
        .output()
        .unwrap();
    std::fs::remove_dir(&dir).unwrap();
    // /dev/zero reads one byte; writing to it and opening /dev/null are refused
    // (the shell's redirection fails: status 2).
    let lines: Vec<String> = text.lines().map(|l| l.trim().to_string()).collect();
    assert_eq!(lines, ["1", "w=2", "n=2"], "{text}");
    assert_eq!(String::from_utf8_lossy(&out2.stdout).trim(), "n=0");
}
