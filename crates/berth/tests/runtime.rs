//! End-to-end tests of `berth runtime`: real containers on the real kernel.
//! Every test builds a busybox bundle, runs the berth binary, and asserts
//! outcomes (exit codes, bytes read back, cgroup values, nothing left behind).

use serde_json::{json, Value};
use std::io::Read;
use std::os::unix::io::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::os::unix::net::UnixListener;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};

const BERTH: &str = env!("CARGO_BIN_EXE_berth");

static SEQ: AtomicUsize = AtomicUsize::new(0);

/// A bundle plus a private state root; removed on drop.
struct Fixture {
    dir: PathBuf,
    id: String,
}

impl Fixture {
    fn new(args: &[&str]) -> Fixture {
        let n = SEQ.fetch_add(1, Ordering::SeqCst);
        let id = format!("t{}-{}", std::process::id(), n);
        let dir = std::env::temp_dir().join(format!("berth-test-{id}"));
        let _ = std::fs::remove_dir_all(&dir);
        let rootfs = dir.join("bundle/rootfs");
        for d in ["bin", "dev", "proc", "sys", "tmp", "etc", "root"] {
            std::fs::create_dir_all(rootfs.join(d)).unwrap();
        }
        // World-traversable so that user-namespaced containers can reach their root.
        for p in [&dir, &dir.join("bundle"), &rootfs] {
            chmod(p, 0o755);
        }
        chmod(&rootfs.join("tmp"), 0o1777);
        std::fs::copy("/bin/busybox", rootfs.join("bin/busybox"))
            .expect("/bin/busybox (apt-get install busybox-static)");
        let list = Command::new("/bin/busybox").arg("--list").output().unwrap();
        for app in String::from_utf8_lossy(&list.stdout).lines() {
            if app != "busybox" {
                let _ = std::os::unix::fs::symlink("busybox", rootfs.join("bin").join(app));
            }
        }
        std::fs::write(
            rootfs.join("etc/passwd"),
            "root:x:0:0:root:/root:/bin/sh\nnobody:x:65534:65534::/:/bin/false\n",
        )
        .unwrap();
        std::fs::write(rootfs.join("etc/group"), "root:x:0:\nnogroup:x:65534:\n").unwrap();
        let out = Command::new(BERTH)
            .args(["runtime", "spec", "--bundle"])
            .arg(dir.join("bundle"))
            .arg("--")
            .args(args)
            .output()
            .unwrap();
        assert!(out.status.success(), "spec: {}", String::from_utf8_lossy(&out.stderr));
        let f = Fixture { dir, id };
        f.edit(|c| {
            c["process"]["env"] = json!(["PATH=/bin", "HOME=/root"]);
            c["process"]["terminal"] = json!(false);
        });
        f
    }

    fn bundle(&self) -> PathBuf {
        self.dir.join("bundle")
    }

    fn root(&self) -> PathBuf {
        self.dir.join("state")
    }

    fn config(&self) -> Value {
        serde_json::from_slice(&std::fs::read(self.bundle().join("config.json")).unwrap()).unwrap()
    }

    fn edit(&self, f: impl FnOnce(&mut Value)) {
        let mut c = self.config();
        f(&mut c);
        std::fs::write(self.bundle().join("config.json"), serde_json::to_vec_pretty(&c).unwrap()).unwrap();
    }

    /// `berth runtime --root <state> <args...>`
    fn cmd(&self, args: &[&str]) -> Command {
        let mut c = Command::new(BERTH);
        c.arg("runtime").arg("--root").arg(self.root()).args(args);
        c.stdin(Stdio::null());
        c
    }

    fn berth(&self, args: &[&str]) -> Output {
        self.cmd(args).output().unwrap()
    }

    /// For `create` and `run -d`: the container inherits stdio and keeps it
    /// open, so collect stderr through a file rather than a pipe.
    fn berth_detached(&self, args: &[&str]) -> Output {
        let n = SEQ.fetch_add(1, Ordering::SeqCst);
        let errf = self.dir.join(format!("stderr-{n}"));
        let status =
            self.cmd(args).stdout(Stdio::null()).stderr(std::fs::File::create(&errf).unwrap()).status().unwrap();
        Output { status, stdout: Vec::new(), stderr: std::fs::read(&errf).unwrap_or_default() }
    }

    /// Run the bundle in the foreground and return its output.
    fn run(&self) -> Output {
        let b = self.bundle();
        self.berth(&["run", "--bundle", b.to_str().unwrap(), &self.id])
    }

    fn state(&self) -> Value {
        let o = self.berth(&["state", &self.id]);
        assert!(o.status.success(), "state: {}", String::from_utf8_lossy(&o.stderr));
        serde_json::from_slice(&o.stdout).unwrap()
    }

    fn create(&self) {
        let b = self.bundle();
        let o = self.berth_detached(&["create", "--bundle", b.to_str().unwrap(), &self.id]);
        assert!(o.status.success(), "create: {}", String::from_utf8_lossy(&o.stderr));
    }

    /// Nothing of the container is left: state dir, cgroups, mounts.
    fn assert_gone(&self) {
        assert!(!self.root().join(&self.id).exists(), "state directory left behind");
        for h in ["memory", "pids", "cpu", "freezer", "devices", "unified", "systemd"] {
            let p = Path::new("/sys/fs/cgroup").join(h).join("berth").join(&self.id);
            assert!(!p.exists(), "cgroup left behind: {}", p.display());
        }
        let mi = std::fs::read_to_string("/proc/self/mountinfo").unwrap();
        let rootfs = self.bundle().join("rootfs");
        assert!(!mi.contains(rootfs.to_str().unwrap()), "mount left behind under {}", rootfs.display());
    }
}

impl Drop for Fixture {
    fn drop(&mut self) {
        let _ = self.cmd(&["delete", "--force", &self.id]).output();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

fn chmod(p: &Path, mode: u32) {
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(p, std::fs::Permissions::from_mode(mode)).unwrap();
}

fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

fn sh(script: &str) -> Fixture {
    Fixture::new(&["sh", "-c", script])
}

#[test]
fn pid1_hostname_exit_code() {
    let f = sh("echo pid=$$; echo procs=$(ls /proc | grep -c '^[0-9]'); hostname; cat /proc/self/status | grep -E '^(NoNewPrivs|Seccomp):'; exit 42");
    f.edit(|c| c["hostname"] = json!("berth-test"));
    let o = f.run();
    assert_eq!(o.status.code(), Some(42), "{}", stderr(&o));
    let out = stdout(&o);
    assert!(out.contains("pid=1\n"), "{out}");
    // Host processes are invisible: only sh, its subshell, and the ls and grep of the pipeline.
    let procs: usize = out.split("procs=").nth(1).and_then(|r| r.lines().next()).unwrap().parse().unwrap();
    assert!(procs <= 4, "{procs} processes visible: {out}");
    assert!(out.contains("berth-test\n"), "{out}");
    assert!(out.contains("NoNewPrivs:\t1"), "{out}");
    assert!(out.contains("Seccomp:\t2"), "{out}");
    f.assert_gone();
}

#[test]
fn isolated_network_and_ipc() {
    let f = sh("cat /proc/net/dev | tail -n +3 | cut -d: -f1 | tr -d ' '; ls /dev");
    let o = f.run();
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    let out = stdout(&o);
    let ifaces: Vec<&str> = out.lines().take_while(|l| !l.is_empty() && *l != "console").collect();
    assert_eq!(ifaces.first(), Some(&"lo"), "{out}");
    for dev in ["null", "zero", "full", "random", "urandom", "tty", "ptmx", "pts", "shm"] {
        assert!(out.lines().any(|l| l == dev), "/dev/{dev} missing: {out}");
    }
}

#[test]
fn memory_limit_is_in_effect_and_oom_kills() {
    let f = sh("cat /sys/fs/cgroup/memory/memory.limit_in_bytes; tail /dev/zero");
    f.edit(|c| c["linux"]["resources"]["memory"] = json!({"limit": 32 << 20, "swap": 32 << 20}));
    let o = f.run();
    assert!(stdout(&o).starts_with("33554432\n"), "{}", stdout(&o));
    // The container's init is killed by the OOM killer: 128 + SIGKILL.
    assert_eq!(o.status.code(), Some(137), "{}", stderr(&o));
    f.assert_gone();
}

#[test]
fn pids_limit_stops_fork_bombs() {
    let f = sh("cat /sys/fs/cgroup/pids/pids.max; for i in $(seq 30); do sleep 5 & done; echo all-started");
    f.edit(|c| c["linux"]["resources"]["pids"] = json!({"limit": 10}));
    let o = f.run();
    let out = stdout(&o);
    assert!(out.starts_with("10\n"), "{out}");
    assert!(!out.contains("all-started"), "30 processes ran under pids.max=10: {out}");
    assert!(stderr(&o).contains("can't fork"), "{}", stderr(&o));
    f.assert_gone();
}

#[test]
fn cpu_quota_and_shares_are_written() {
    let f = sh(
        "cat /sys/fs/cgroup/cpu/cpu.cfs_quota_us /sys/fs/cgroup/cpu/cpu.cfs_period_us /sys/fs/cgroup/cpu/cpu.shares",
    );
    f.edit(|c| c["linux"]["resources"]["cpu"] = json!({"quota": 50000, "period": 100000, "shares": 512}));
    let o = f.run();
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    assert_eq!(stdout(&o), "50000\n100000\n512\n");
}

#[test]
fn cpu_quota_caps_usage() {
    // A busy loop for one second of wall time under a 10% quota: the kernel throttles it and the
    // CPU time it gets stays near 100 ms (unlimited, it would take the whole second).
    let f = sh("timeout 1 sh -c 'while :; do :; done'; \
                cat /sys/fs/cgroup/cpuacct/cpuacct.usage; grep nr_throttled /sys/fs/cgroup/cpu/cpu.stat");
    f.edit(|c| c["linux"]["resources"]["cpu"] = json!({"quota": 10000, "period": 100000}));
    let o = f.run();
    let out = stdout(&o);
    let mut lines = out.lines();
    let usage_ns: u64 = lines.next().and_then(|l| l.parse().ok()).unwrap_or_else(|| panic!("{out} / {}", stderr(&o)));
    let throttled: u64 = lines.next().and_then(|l| l.strip_prefix("nr_throttled ")).unwrap().parse().unwrap();
    assert!(usage_ns < 400_000_000, "used {usage_ns} ns of CPU in 1 s under a 10% quota");
    assert!(throttled >= 3, "throttled only {throttled} times: {out}");
}

#[test]
fn signals_are_delivered_to_the_container() {
    let f = sh("trap 'echo got-term; exit 7' TERM; echo ready; while :; do sleep 0.05; done");
    let out = f.dir.join("out");
    let b = f.bundle();
    let status = f
        .cmd(&["run", "--detach", "--bundle", b.to_str().unwrap(), &f.id])
        .stdout(std::fs::File::create(&out).unwrap())
        .stderr(Stdio::null())
        .status()
        .unwrap();
    assert!(status.success());
    for _ in 0..200 {
        if std::fs::read_to_string(&out).unwrap().contains("ready") {
            break;
        }
        std::thread::sleep(std::time::Duration::from_millis(10));
    }
    let o = f.berth(&["kill", &f.id, "TERM"]);
    assert!(o.status.success(), "{}", stderr(&o));
    for _ in 0..300 {
        if f.state()["status"] == "stopped" {
            break;
        }
        std::thread::sleep(std::time::Duration::from_millis(10));
    }
    assert_eq!(f.state()["status"], "stopped");
    assert_eq!(std::fs::read_to_string(&out).unwrap(), "ready\ngot-term\n");
    // An unknown signal is refused by name.
    let o = f.berth(&["kill", &f.id, "SIGNOPE"]);
    assert!(!o.status.success());
    assert!(stderr(&o).contains("SIGNOPE"), "{}", stderr(&o));
    assert!(f.berth(&["delete", &f.id]).status.success());
    f.assert_gone();
}

#[test]
fn default_capabilities_match_docker_and_can_be_reduced() {
    let f = sh("grep -E '^Cap(Inh|Prm|Eff|Bnd|Amb):' /proc/self/status");
    let o = f.run();
    let out = stdout(&o);
    for k in ["CapPrm", "CapEff", "CapBnd"] {
        assert!(out.contains(&format!("{k}:\t00000000a80425fb")), "{out}");
    }
    assert!(out.contains("CapAmb:\t0000000000000000"), "{out}");
    f.edit(|c| {
        let caps = json!(["CAP_NET_BIND_SERVICE"]);
        c["process"]["capabilities"] =
            json!({"bounding": caps, "effective": caps, "permitted": caps, "inheritable": [], "ambient": []});
    });
    let out = stdout(&f.run());
    assert!(out.contains("CapEff:\t0000000000000400"), "{out}");
    assert!(out.contains("CapBnd:\t0000000000000400"), "{out}");
}

#[test]
fn non_root_user_has_no_capabilities() {
    let f = sh("id -u; id -g; id -G; grep CapEff /proc/self/status; touch /root/x");
    f.edit(|c| c["process"]["user"] = json!({"uid": 1000, "gid": 1000, "additionalGids": [5, 7]}));
    let o = f.run();
    let out = stdout(&o);
    assert!(out.starts_with("1000\n1000\n1000 5 7\nCapEff:\t0000000000000000\n"), "{out}");
    assert_ne!(o.status.code(), Some(0), "a non-root user wrote to /root");
}

#[test]
fn seccomp_profile_denies_with_errno() {
    let f = sh("mkdir /tmp/a && echo made; echo rc=$?");
    f.edit(|c| {
        c["linux"]["seccomp"] = json!({
            "defaultAction": "SCMP_ACT_ALLOW",
            "architectures": ["SCMP_ARCH_X86_64"],
            "syscalls": [{"names": ["mkdir", "mkdirat"], "action": "SCMP_ACT_ERRNO", "errnoRet": 1}]
        })
    });
    let o = f.run();
    let out = stdout(&o);
    assert!(!out.contains("made"), "{out}");
    assert!(stderr(&o).contains("Operation not permitted"), "{}", stderr(&o));
}

#[test]
fn default_seccomp_blocks_new_user_namespaces() {
    // The kernel lets any process create a user namespace; Docker's default
    // profile (ours) refuses it without CAP_SYS_ADMIN. Same container without
    // seccomp: allowed. So the difference is the filter.
    let f = sh("unshare -U true; echo rc=$?");
    let o = f.run();
    assert!(stdout(&o).contains("rc=1"), "{} {}", stdout(&o), stderr(&o));
    assert!(stderr(&o).contains("Operation not permitted"), "{}", stderr(&o));
    f.edit(|c| c["linux"].as_object_mut().unwrap().remove("seccomp").map(|_| ()).unwrap_or(()));
    let o = f.run();
    assert!(stdout(&o).contains("rc=0"), "{} {}", stdout(&o), stderr(&o));
}

#[test]
fn masked_and_readonly_paths() {
    // /proc/timer_list exists on every kernel (kcore may be compiled out).
    let f =
        sh("wc -c < /proc/timer_list; ls /sys/firmware | wc -l; echo x > /proc/sys/kernel/domainname; echo rc=$?; \
                echo 1 > /proc/sysrq-trigger; echo rc2=$?");
    let o = f.run();
    let out = stdout(&o);
    assert!(out.starts_with("0\n0\n"), "{out}");
    assert!(out.contains("rc=1"), "{out}");
    assert!(out.contains("rc2=1"), "{out}");
    assert!(stderr(&o).contains("Read-only file system"), "{}", stderr(&o));
}

#[test]
fn readonly_root_and_tmpfs_mount() {
    let f = sh("touch /x 2>&1; echo rc=$?; touch /tmp/ok && echo tmp-ok; grep ' /tmp ' /proc/mounts");
    f.edit(|c| {
        c["root"]["readonly"] = json!(true);
        c["mounts"].as_array_mut().unwrap().push(json!({
            "destination": "/tmp", "type": "tmpfs", "source": "tmpfs", "options": ["nosuid", "nodev", "size=1m"]
        }));
    });
    let o = f.run();
    let out = stdout(&o);
    assert!(out.contains("Read-only file system"), "{out}");
    assert!(out.contains("rc=1"), "{out}");
    assert!(out.contains("tmp-ok"), "{out}");
    assert!(out.contains("tmpfs /tmp tmpfs rw,nosuid,nodev"), "{out}");
}

#[test]
fn bind_mount_readonly() {
    let f = sh("cat /data/hello; echo more >> /data/hello; echo rc=$?");
    let data = f.dir.join("data");
    std::fs::create_dir_all(&data).unwrap();
    std::fs::write(data.join("hello"), "from the host\n").unwrap();
    f.edit(|c| {
        c["mounts"].as_array_mut().unwrap().push(json!({
            "destination": "/data", "type": "bind", "source": data, "options": ["rbind", "ro"]
        }));
    });
    let o = f.run();
    let out = stdout(&o);
    assert!(out.starts_with("from the host\n"), "{out}");
    assert!(out.contains("rc=1"), "{out}");
    assert_eq!(std::fs::read_to_string(data.join("hello")).unwrap(), "from the host\n");
}

#[test]
fn user_namespace_maps_root() {
    let f = sh("id -u; cat /proc/self/uid_map /proc/self/gid_map | tr -s ' '; echo hi > /tmp/f; stat -c %u /tmp/f");
    f.edit(|c| {
        c["linux"]["namespaces"].as_array_mut().unwrap().push(json!({"type": "user"}));
        c["linux"]["uidMappings"] = json!([{"containerID": 0, "hostID": 200000, "size": 65536}]);
        c["linux"]["gidMappings"] = json!([{"containerID": 0, "hostID": 200000, "size": 65536}]);
    });
    let o = f.run();
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    let out = stdout(&o);
    assert!(out.starts_with("0\n 0 200000 65536\n 0 200000 65536\n0\n"), "{out}");
    // On the host, the file belongs to the mapped uid.
    use std::os::unix::fs::MetadataExt;
    let meta = std::fs::metadata(f.bundle().join("rootfs/tmp/f")).unwrap();
    assert_eq!(meta.uid(), 200000);
}

#[test]
fn rlimits_applied_and_impossible_ones_refused() {
    let f = sh("ulimit -n; ulimit -Hn");
    f.edit(|c| c["process"]["rlimits"] = json!([{"type": "RLIMIT_NOFILE", "soft": 100, "hard": 200}]));
    let o = f.run();
    assert_eq!(stdout(&o), "100\n200\n", "{}", stderr(&o));

    // Above the current hard limit, without CAP_SYS_RESOURCE: refused up front.
    let mut cur = libc::rlimit { rlim_cur: 0, rlim_max: 0 };
    // SAFETY: getrlimit writes into a valid rlimit struct.
    unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut cur) };
    if cur.rlim_max != libc::RLIM_INFINITY && !has_cap_sys_resource() {
        let big = cur.rlim_max + 1;
        f.edit(|c| c["process"]["rlimits"] = json!([{"type": "RLIMIT_NOFILE", "soft": big, "hard": big}]));
        let o = f.run();
        assert_ne!(o.status.code(), Some(0));
        let e = stderr(&o);
        assert!(e.contains("RLIMIT_NOFILE"), "{e}");
        assert_eq!(e.trim().lines().count(), 1, "{e}");
        f.assert_gone();
    }
}

fn has_cap_sys_resource() -> bool {
    let s = std::fs::read_to_string("/proc/self/status").unwrap();
    let eff = s.lines().find(|l| l.starts_with("CapEff:")).unwrap();
    let v = u64::from_str_radix(eff.split_whitespace().nth(1).unwrap(), 16).unwrap();
    v & (1 << 24) != 0
}

#[test]
fn device_cgroup_denies_unlisted_devices() {
    // Like Docker, any device node may be made (CAP_MKNOD, "b *:* m"), but the
    // device rules forbid opening one that is not listed.
    let f =
        sh("mknod /tmp/sda b 8 0; echo mknod=$?; head -c1 /tmp/sda; echo rc=$?; echo ok > /dev/null && echo null-ok");
    let o = f.run();
    let out = stdout(&o);
    assert!(out.contains("mknod=0"), "{out} / {}", stderr(&o));
    assert!(out.contains("rc=1"), "{out} / {}", stderr(&o));
    assert!(stderr(&o).contains("Operation not permitted"), "{}", stderr(&o));
    assert!(out.contains("null-ok"), "{out}");
}

#[test]
fn engine_style_resources_are_accepted() {
    // What dockerd sends: a device list that only denies everything (the runtime adds the
    // devices it creates itself, as runc does), and zeros meaning "unset" for shares and weights.
    let f = sh("echo x > /dev/null && echo null-ok; echo x > /dev/full; head -c4 /dev/zero | wc -c; \
                cat /sys/fs/cgroup/cpu/cpu.shares");
    f.edit(|c| {
        c["linux"]["resources"]["devices"] = json!([{"allow": false, "access": "rwm"}]);
        c["linux"]["resources"]["cpu"] = json!({"shares": 0, "quota": 0, "period": 0});
        c["linux"]["resources"]["blockIO"] = json!({"weight": 0});
    });
    let o = f.run();
    let out = stdout(&o);
    assert!(out.starts_with("null-ok\n4\n"), "{out} / {}", stderr(&o));
    assert!(stderr(&o).contains("No space left on device"), "{}", stderr(&o));
    // shares 0 left the kernel default instead of writing the minimum.
    assert!(out.ends_with("\n1024\n"), "{out}");
}

#[test]
fn non_root_init_without_capabilities_can_be_started() {
    // The init opens exec.fifo as the container user: it must not depend on the caller's umask.
    let f = Fixture::new(&["id", "-u"]);
    f.edit(|c| {
        c["process"]["user"] = json!({"uid": 65534, "gid": 65534});
        c["process"]["capabilities"] = json!({});
    });
    let out = f.dir.join("out");
    let b = f.bundle();
    let status = f
        .cmd(&["create", "--bundle", b.to_str().unwrap(), &f.id])
        .stdout(std::fs::File::create(&out).unwrap())
        .stderr(Stdio::null())
        .status()
        .unwrap();
    assert!(status.success());
    let o = f.berth(&["start", &f.id]);
    assert!(o.status.success(), "{}", stderr(&o));
    for _ in 0..200 {
        if f.state()["status"] == "stopped" {
            break;
        }
        std::thread::sleep(std::time::Duration::from_millis(10));
    }
    assert_eq!(std::fs::read_to_string(&out).unwrap(), "65534\n");
    assert!(f.berth(&["delete", &f.id]).status.success());
    // Like runc, `delete --force` of a container that does not exist succeeds; without --force it fails.
    assert!(f.berth(&["delete", "--force", &f.id]).status.success());
    let o = f.berth(&["delete", &f.id]);
    assert!(!o.status.success());
    assert!(stderr(&o).contains("does not exist"), "{}", stderr(&o));
    f.assert_gone();
}

#[test]
fn lifecycle_create_start_state_kill_delete() {
    let f = Fixture::new(&["sleep", "1000"]);
    let pidfile = f.dir.join("pid");
    let b = f.bundle();
    let o =
        f.berth_detached(&["create", "--bundle", b.to_str().unwrap(), "--pid-file", pidfile.to_str().unwrap(), &f.id]);
    assert!(o.status.success(), "{}", stderr(&o));
    let st = f.state();
    assert_eq!(st["status"], "created");
    assert_eq!(st["id"], f.id.as_str());
    let pid: i64 = std::fs::read_to_string(&pidfile).unwrap().trim().parse().unwrap();
    assert_eq!(st["pid"], pid);
    // The user process has not run yet: /proc/<pid>/cmdline is still berth's.
    let cmdline = std::fs::read(format!("/proc/{pid}/cmdline")).unwrap();
    assert!(!String::from_utf8_lossy(&cmdline).contains("sleep"));
    // A second container with the same id is refused.
    let o = f.berth_detached(&["create", "--bundle", b.to_str().unwrap(), &f.id]);
    assert!(!o.status.success());
    assert!(stderr(&o).contains("already exists"), "{}", stderr(&o));

    let o = f.berth(&["start", &f.id]);
    assert!(o.status.success(), "{}", stderr(&o));
    assert_eq!(f.state()["status"], "running");
    let cmdline = std::fs::read(format!("/proc/{pid}/cmdline")).unwrap();
    assert!(String::from_utf8_lossy(&cmdline).starts_with("sleep"));

    // delete refuses a running container.
    let o = f.berth(&["delete", &f.id]);
    assert!(!o.status.success());
    assert!(stderr(&o).contains("not stopped"), "{}", stderr(&o));

    let o = f.berth(&["pause", &f.id]);
    assert!(o.status.success(), "{}", stderr(&o));
    assert_eq!(f.state()["status"], "paused");
    let o = f.berth(&["resume", &f.id]);
    assert!(o.status.success(), "{}", stderr(&o));
    assert_eq!(f.state()["status"], "running");

    let o = f.berth(&["kill", &f.id, "KILL"]);
    assert!(o.status.success(), "{}", stderr(&o));
    for _ in 0..200 {
        if f.state()["status"] == "stopped" {
            break;
        }
        std::thread::sleep(std::time::Duration::from_millis(10));
    }
    assert_eq!(f.state()["status"], "stopped");
    let o = f.berth(&["delete", &f.id]);
    assert!(o.status.success(), "{}", stderr(&o));
    f.assert_gone();
    let o = f.berth(&["state", &f.id]);
    assert!(!o.status.success());
    assert!(stderr(&o).contains("does not exist"), "{}", stderr(&o));
}

#[test]
fn exec_joins_the_container() {
    let f = Fixture::new(&["sleep", "1000"]);
    f.edit(|c| c["hostname"] = json!("exec-host"));
    let b = f.bundle();
    let o = f.berth_detached(&["run", "-d", "--bundle", b.to_str().unwrap(), &f.id]);
    assert!(o.status.success(), "{}", stderr(&o));
    let o = f.berth(&["exec", &f.id, "sh", "-c", "hostname; cat /proc/1/cmdline | tr '\\0' ' '; echo; exit 5"]);
    assert_eq!(o.status.code(), Some(5), "{}", stderr(&o));
    assert_eq!(stdout(&o), "exec-host\nsleep 1000 \n");
    // The exec'd process is in the container's cgroup while it runs (and, in its
    // cgroup namespace, that cgroup is the root).
    let o = f.berth(&[
        "exec",
        &f.id,
        "sh",
        "-c",
        "grep -qx $$ /sys/fs/cgroup/pids/cgroup.procs && echo in; cat /proc/self/cgroup",
    ]);
    let out = stdout(&o);
    assert!(out.starts_with("in\n"), "{out}");
    assert!(out.contains("memory:/\n"), "{out}");
    // An unknown command fails like runc.
    let o = f.berth(&["exec", &f.id, "no-such-command"]);
    assert_ne!(o.status.code(), Some(0));
    assert!(stderr(&o).contains("executable file not found"), "{}", stderr(&o));
    let o = f.berth(&["delete", "--force", &f.id]);
    assert!(o.status.success(), "{}", stderr(&o));
    f.assert_gone();
}

#[test]
fn hooks_receive_the_state() {
    let f = sh("echo in-container");
    let log = f.dir.join("hooks.log");
    let hook = |name: &str| json!({"path": "/bin/sh", "args": ["sh", "-c", format!("echo {name} $(cat) >> {}", log.display())]});
    f.edit(|c| {
        c["hooks"] = json!({
            "createRuntime": [hook("createRuntime")],
            "poststart": [hook("poststart")],
            "poststop": [hook("poststop")],
        })
    });
    let o = f.run();
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    let text = std::fs::read_to_string(&log).unwrap();
    let names: Vec<&str> = text.lines().map(|l| l.split(' ').next().unwrap()).collect();
    assert_eq!(names, ["createRuntime", "poststart", "poststop"], "{text}");
    for l in text.lines() {
        let st: Value = serde_json::from_str(l.split_once(' ').unwrap().1).unwrap();
        assert_eq!(st["id"], f.id.as_str());
        assert_eq!(st["ociVersion"], "1.2.0");
    }
    // A failing createRuntime hook aborts the container and leaves nothing.
    f.edit(|c| c["hooks"] = json!({"createRuntime": [{"path": "/bin/false"}]}));
    let o = f.run();
    assert_ne!(o.status.code(), Some(0));
    assert!(stderr(&o).contains("createRuntime"), "{}", stderr(&o));
    f.assert_gone();
}

/// Receive one file descriptor over a unix stream (SCM_RIGHTS).
fn recv_fd(sock: RawFd) -> OwnedFd {
    let mut buf = [0u8; 256];
    let mut iov = libc::iovec { iov_base: buf.as_mut_ptr().cast(), iov_len: buf.len() };
    let mut cmsg = [0u64; 8];
    // SAFETY: a zeroed msghdr is valid; the buffers outlive the call.
    let mut msg: libc::msghdr = unsafe { std::mem::zeroed() };
    msg.msg_iov = &mut iov;
    msg.msg_iovlen = 1;
    msg.msg_control = cmsg.as_mut_ptr().cast();
    msg.msg_controllen = std::mem::size_of_val(&cmsg);
    // SAFETY: msg points to valid buffers.
    let n = unsafe { libc::recvmsg(sock, &mut msg, 0) };
    assert!(n >= 0, "recvmsg: {}", std::io::Error::last_os_error());
    // SAFETY: the kernel filled in a control message; CMSG_* walk it.
    unsafe {
        let c = libc::CMSG_FIRSTHDR(&msg);
        assert!(!c.is_null(), "no fd received");
        assert_eq!((*c).cmsg_type, libc::SCM_RIGHTS);
        let fd = std::ptr::read_unaligned(libc::CMSG_DATA(c) as *const RawFd);
        OwnedFd::from_raw_fd(fd)
    }
}

#[test]
fn terminal_via_console_socket() {
    let f = sh("tty; stty size; exit 3");
    f.edit(|c| {
        c["process"]["terminal"] = json!(true);
        c["process"]["consoleSize"] = json!({"height": 30, "width": 100});
    });
    let sock = f.dir.join("console.sock");
    let listener = UnixListener::bind(&sock).unwrap();
    let b = f.bundle();
    let mut child = f
        .cmd(&["create", "--bundle", b.to_str().unwrap(), "--console-socket", sock.to_str().unwrap(), &f.id])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let (conn, _) = listener.accept().unwrap();
    let master = recv_fd(conn.as_raw_fd());
    let status = child.wait().unwrap();
    assert!(status.success(), "create failed");
    let o = f.berth(&["start", &f.id]);
    assert!(o.status.success(), "{}", stderr(&o));
    let mut out = Vec::new();
    let mut file = std::fs::File::from(master);
    let mut buf = [0u8; 1024];
    loop {
        match file.read(&mut buf) {
            Ok(0) | Err(_) => break, // EIO once the container side closes
            Ok(n) => out.extend_from_slice(&buf[..n]),
        }
    }
    let text = String::from_utf8_lossy(&out);
    assert!(text.contains("/dev/pts/0"), "{text:?}");
    assert!(text.contains("30 100"), "{text:?}");
    for _ in 0..200 {
        if f.state()["status"] == "stopped" {
            break;
        }
        std::thread::sleep(std::time::Duration::from_millis(10));
    }
    assert_eq!(f.state()["status"], "stopped");
    assert!(f.berth(&["delete", &f.id]).status.success());
    f.assert_gone();
}

#[test]
fn bad_input_is_refused_cleanly() {
    let f = sh("true");
    let b = f.bundle();
    let run = |f: &Fixture| f.berth(&["run", "--bundle", f.bundle().to_str().unwrap(), &f.id]);
    let one_line = |o: &Output, needle: &str| {
        assert_ne!(o.status.code(), Some(0));
        let e = stderr(o);
        assert!(e.contains(needle), "expected {needle:?} in {e:?}");
        assert_eq!(e.trim().lines().count(), 1, "{e}");
    };

    std::fs::write(b.join("config.json"), "{\"ociVersion\": \"1.2.0\", \"process\": ").unwrap();
    one_line(&run(&f), "config.json");
    f.assert_gone();

    let f = sh("true");
    f.edit(|c| {
        for ns in c["linux"]["namespaces"].as_array_mut().unwrap() {
            if ns["type"] == "network" {
                ns["path"] = json!("/nonexistent/ns");
            }
        }
    });
    one_line(&run(&f), "/nonexistent/ns");
    f.assert_gone();

    let f = sh("true");
    f.edit(|c| c["root"]["path"] = json!("no-such-rootfs"));
    one_line(&run(&f), "no-such-rootfs");
    f.assert_gone();

    let f = Fixture::new(&["/bin/does-not-exist"]);
    let o = run(&f);
    one_line(&o, "does-not-exist");
    f.assert_gone();

    let f = sh("true");
    f.edit(|c| c["linux"]["cgroupsPath"] = json!("system.slice:berth:x"));
    one_line(&run(&f), "systemd");
    f.assert_gone();

    let f = sh("true");
    f.edit(|c| c["linux"]["resources"]["hugepageLimits"] = json!([{"pageSize": "2MB", "limit": 1048576}]));
    let o = run(&f);
    if !Path::new("/sys/fs/cgroup/hugetlb").exists() {
        one_line(&o, "hugetlb");
    }
    f.assert_gone();

    let o = f.berth(&["kill", &f.id, "NOSUCHSIG"]);
    assert_ne!(o.status.code(), Some(0));
    let o = f.berth(&["state", "../etc"]);
    assert_ne!(o.status.code(), Some(0));
    assert_eq!(stderr(&o).trim().lines().count(), 1, "{}", stderr(&o));
}

#[test]
fn list_shows_containers() {
    let f = Fixture::new(&["sleep", "1000"]);
    f.create();
    let o = f.berth(&["list", "--format", "json"]);
    assert!(o.status.success(), "{}", stderr(&o));
    let v: Value = serde_json::from_slice(&o.stdout).unwrap();
    let arr = v.as_array().unwrap();
    assert_eq!(arr.len(), 1);
    assert_eq!(arr[0]["id"], f.id.as_str());
    assert_eq!(arr[0]["status"], "created");
    let o = f.berth(&["list"]);
    let out = stdout(&o);
    assert!(out.starts_with("ID"), "{out}");
    assert!(out.contains(&f.id), "{out}");
    assert!(f.berth(&["delete", &f.id]).status.success());
    f.assert_gone();
}
