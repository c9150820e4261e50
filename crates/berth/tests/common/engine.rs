//! A `berth daemon` of a test's own (data root, exec root and socket under a temp dir, a
//! busybox image `bb:1` imported), driven by the real docker CLI; cleaned up on drop.
#![allow(dead_code)]

use std::io::{Read, Write};
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

pub const BERTH: &str = env!("CARGO_BIN_EXE_berth");

pub struct Engine {
    pub dir: PathBuf,
    pub sock: PathBuf,
    daemon: Option<Child>,
    /// This daemon's own bridge and subnet (tests run side by side; none touches `berth0`).
    pub bridge: String,
    pub bip: String,
}

static ENGINES: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);

/// A busybox root filesystem (Debian's busybox-static) as a tarball.
pub fn busybox_tar(dir: &Path) -> PathBuf {
    let root = dir.join("bbroot");
    std::fs::create_dir_all(root.join("bin")).unwrap();
    std::fs::create_dir_all(root.join("etc")).unwrap();
    std::fs::copy("/bin/busybox", root.join("bin/busybox")).expect("busybox-static (scripts/deps.sh test)");
    for a in ["sh", "echo", "cat", "sleep", "ls", "id", "hostname", "true", "false", "env", "wc", "grep", "stty", "pwd"]
    {
        let _ = std::os::unix::fs::symlink("busybox", root.join("bin").join(a));
    }
    std::fs::write(root.join("etc/passwd"), "root:x:0:0:root:/root:/bin/sh\nnobody:x:65534:65534:nobody:/:/bin/sh\n")
        .unwrap();
    std::fs::write(root.join("etc/group"), "root:x:0:\nnogroup:x:65534:\n").unwrap();
    let tar = dir.join("bb.tar");
    let o = Command::new("tar").arg("-C").arg(&root).arg("-cf").arg(&tar).arg(".").output().unwrap();
    assert!(o.status.success());
    tar
}

impl Engine {
    pub fn new(name: &str) -> Engine {
        let dir = std::env::temp_dir().join(format!("berth-eng-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        let tar = busybox_tar(&dir);
        let o = Command::new(BERTH)
            .arg("--data-root")
            .arg(dir.join("data"))
            .args(["import", tar.to_str().unwrap(), "bb:1"])
            .output()
            .unwrap();
        assert!(o.status.success(), "import: {}", String::from_utf8_lossy(&o.stderr));
        let sock = dir.join("berth.sock");
        let n = ENGINES.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let pid = std::process::id();
        let bridge = format!("bt{}x{n}", pid % 100_000);
        let bip = format!("10.{}.{}.1/24", 100 + pid % 100, n % 250);
        let mut e = Engine { dir, sock, daemon: None, bridge, bip };
        e.start_daemon();
        e
    }

    pub fn start_daemon(&mut self) {
        self.start_daemon_env(&[]);
    }

    /// Start the daemon with extra environment (e.g. `BERTH_FAILPOINT`).
    pub fn start_daemon_env(&mut self, env: &[(&str, &str)]) {
        let child = Command::new(BERTH)
            .envs(env.iter().copied())
            .arg("daemon")
            .arg("--data-root")
            .arg(self.dir.join("data"))
            .arg("--exec-root")
            .arg(self.dir.join("run"))
            .arg("-H")
            .arg(&self.sock)
            .args(["--bridge", &self.bridge, "--bip", &self.bip])
            .stdout(Stdio::null())
            .stderr(std::fs::File::options().create(true).append(true).open(self.dir.join("daemon.log")).unwrap())
            .spawn()
            .unwrap();
        self.daemon = Some(child);
        let deadline = Instant::now() + Duration::from_secs(10);
        while UnixStream::connect(&self.sock).is_err() {
            assert!(Instant::now() < deadline, "daemon did not start: {}", self.log());
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    pub fn kill9_daemon(&mut self) {
        if let Some(mut c) = self.daemon.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// Whether the daemon process ended (by itself) within `t`.
    pub fn daemon_died_within(&mut self, t: Duration) -> bool {
        let deadline = Instant::now() + t;
        loop {
            match self.daemon.as_mut().map(|c| c.try_wait()) {
                None | Some(Ok(Some(_))) | Some(Err(_)) => {
                    self.daemon = None;
                    return true;
                }
                Some(Ok(None)) if Instant::now() > deadline => return false,
                Some(Ok(None)) => std::thread::sleep(Duration::from_millis(10)),
            }
        }
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.join("daemon.log")).unwrap_or_default()
    }

    pub fn docker(&self, args: &[&str]) -> Output {
        self.docker_in(args, None)
    }

    pub fn docker_in(&self, args: &[&str], input: Option<&str>) -> Output {
        let mut c = Command::new("docker")
            .args(args)
            .env("DOCKER_HOST", format!("unix://{}", self.sock.display()))
            .env("DOCKER_CONFIG", self.dir.join("docker-config"))
            .stdin(if input.is_some() { Stdio::piped() } else { Stdio::null() })
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("the docker CLI");
        if let Some(i) = input {
            c.stdin.take().unwrap().write_all(i.as_bytes()).unwrap();
        }
        c.wait_with_output().unwrap()
    }

    pub fn ok(&self, args: &[&str]) -> String {
        let o = self.docker(args);
        assert!(
            o.status.success(),
            "docker {args:?}: {}{}\n{}",
            String::from_utf8_lossy(&o.stdout),
            String::from_utf8_lossy(&o.stderr),
            self.log()
        );
        String::from_utf8_lossy(&o.stdout).into_owned()
    }

    /// A raw API request; returns (status, body).
    pub fn raw(&self, method: &str, path: &str, body: &str) -> (u16, String) {
        let mut s = UnixStream::connect(&self.sock).unwrap();
        write!(
            s,
            "{method} {path} HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
            body.len()
        )
        .unwrap();
        let mut out = String::new();
        s.read_to_string(&mut out).unwrap();
        let status = out.split(' ').nth(1).and_then(|c| c.parse().ok()).unwrap_or(0);
        let body = out.split_once("\r\n\r\n").map(|(_, b)| b.to_string()).unwrap_or_default();
        (status, body)
    }

    pub fn mounts_left(&self) -> Vec<String> {
        let mi = std::fs::read_to_string("/proc/self/mountinfo").unwrap();
        let d = self.dir.to_str().unwrap().to_string();
        mi.lines().filter(|l| l.contains(&d)).map(String::from).collect()
    }
}

impl Drop for Engine {
    fn drop(&mut self) {
        let _ = self.docker(&["rm", "-f", "-v"]);
        let ids = self.docker(&["ps", "-aq"]);
        for id in String::from_utf8_lossy(&ids.stdout).lines() {
            let _ = self.docker(&["rm", "-f", id]);
        }
        // User-defined networks (their bridges are host-wide) go with the daemon's help.
        let _ = self.docker(&["network", "prune", "-f"]);
        self.kill9_daemon();
        // Monitors the test left behind.
        let _ = Command::new("pkill").arg("-9").arg("-f").arg(self.dir.to_str().unwrap()).status();
        for m in self.mounts_left().iter().rev() {
            if let Some(p) = m.split(' ').nth(4) {
                let _ = Command::new("umount").arg("-l").arg(p).status();
            }
        }
        let _ = std::fs::remove_dir_all(&self.dir);
        let _ = Command::new("ip").args(["link", "del", &self.bridge]).stderr(Stdio::null()).status();
        let table = format!("berth_{}", self.bridge);
        let _ = Command::new("nft").args(["delete", "table", "ip", &table]).stderr(Stdio::null()).status();
    }
}

pub fn out(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}
pub fn err(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

/// `docker build` with the legacy builder (`DOCKER_BUILDKIT=0`) against `e`'s daemon.
pub fn docker_build(e: &Engine, args: &[&str], dir: &Path) -> Output {
    Command::new("docker")
        .env("DOCKER_HOST", format!("unix://{}", e.sock.display()))
        .env("DOCKER_BUILDKIT", "0")
        .arg("build")
        .args(args)
        .arg(dir)
        .output()
        .unwrap()
}

/// `docker-compose -p bproj ARGS` in `dir` against `e`'s daemon, which must succeed.
pub fn compose(e: &Engine, dir: &Path, args: &[&str]) -> Output {
    let o = Command::new("docker-compose")
        .args(["-p", "bproj"])
        .args(args)
        .current_dir(dir)
        .env("DOCKER_HOST", format!("unix://{}", e.sock.display()))
        .output()
        .expect("docker-compose (scripts/deps.sh test)");
    assert!(o.status.success(), "compose {args:?}: {}{}\n{}", out(&o), err(&o), e.log());
    o
}
