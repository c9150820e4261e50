//! A corpus of Dockerfiles (`tests/data/build-corpus/<case>/`), each built by `berth daemon` and by
//! a private dockerd's legacy builder (Debian docker.io, `DOCKER_BUILDKIT=0`) from the same context
//! on the same busybox base (`bb:1`, imported into both), compared: the image configs (Env, Cmd,
//! Entrypoint, WorkingDir, User, ExposedPorts, Volumes, Labels, Healthcheck, StopSignal, Shell,
//! OnBuild) and the root filesystems (`docker create` + `docker export`: every entry's path, type,
//! mode, owner, size, content digest and link target; not times, not the runtime's mount points).
//!
//! A case directory holds a `Dockerfile` and its context (with any `.dockerignore`), and may hold:
//! - `args`: extra `docker build` flags, whitespace-separated (`--build-arg A=1 --target x`);
//! - `expect-error`: a substring both builders' output must contain (both builds must fail);
//! - `known-differences`: a line saying why berth and the legacy builder differ (a BuildKit
//!   semantic the legacy builder lacks, or a berth gap); the case is built but not compared.
//!
//! Cases build in name order, each tagged `corpus/<case>` in both daemons, so a case may build
//! `FROM` an earlier one (`onbuild-child` is built from `onbuild-base`).
//!
//! Run: `cargo test --release -p berth --test build_corpus -- --nocapture` (as root).

mod common;

use common::engine::{busybox_tar, Engine};
use serde_json::Value;
use std::collections::BTreeMap;
use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

const CORPUS: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/data/build-corpus");

/// The config fields compared.
const FIELDS: &[&str] = &[
    "Env",
    "Cmd",
    "Entrypoint",
    "WorkingDir",
    "User",
    "ExposedPorts",
    "Volumes",
    "Labels",
    "Healthcheck",
    "StopSignal",
    "Shell",
    "OnBuild",
];

/// Files the runtime (not the build) puts in a container's root.
fn runtime_path(p: &str) -> bool {
    matches!(p, "etc/hostname" | "etc/hosts" | "etc/resolv.conf" | ".dockerenv" | "dev" | "proc" | "sys" | "etc/mtab")
        || p.starts_with("dev/")
        || p.starts_with("proc/")
        || p.starts_with("sys/")
}

/// A daemon the docker CLI talks to.
struct Daemon {
    name: &'static str,
    sock: PathBuf,
    config: PathBuf,
}

impl Daemon {
    fn docker(&self, args: &[&str]) -> Output {
        Command::new("docker")
            .args(args)
            .env("DOCKER_HOST", format!("unix://{}", self.sock.display()))
            .env("DOCKER_CONFIG", &self.config)
            .env("DOCKER_BUILDKIT", "0")
            .stdin(Stdio::null())
            .output()
            .expect("the docker CLI")
    }

    fn ok(&self, args: &[&str]) -> Vec<u8> {
        let o = self.docker(args);
        assert!(o.status.success(), "{}: docker {args:?}: {}", self.name, String::from_utf8_lossy(&o.stderr));
        o.stdout
    }
}

/// A private dockerd (own data root, exec root, socket, pidfile and containerd; no bridge, no
/// iptables) with `bb:1` imported; stopped with SIGTERM on drop, leftovers cleaned.
struct Dockerd {
    dir: PathBuf,
    child: Option<Child>,
    daemon: Daemon,
}

impl Dockerd {
    fn new(tar: &Path) -> Dockerd {
        let dir = std::env::temp_dir().join(format!("berth-corpus-dockerd-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(dir.join("daemon.json"), "{}").unwrap();
        let sock = dir.join("d.sock");
        let child = Command::new("dockerd")
            .arg("--config-file")
            .arg(dir.join("daemon.json"))
            .arg("--data-root")
            .arg(dir.join("data"))
            .arg("--exec-root")
            .arg(dir.join("exec"))
            .arg("-H")
            .arg(format!("unix://{}", sock.display()))
            .arg("--pidfile")
            .arg(dir.join("dockerd.pid"))
            .args([
                "--iptables=false",
                "--ip6tables=false",
                "--ip-forward=false",
                "--ip-masq=false",
                "--bridge=none",
                "--userland-proxy=false",
                "--storage-driver=overlay2",
                "--exec-opt",
                "native.cgroupdriver=cgroupfs",
            ])
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(dir.join("dockerd.log")).unwrap())
            .spawn()
            .expect("dockerd (scripts/deps.sh test)");
        let daemon = Daemon { name: "dockerd", sock, config: dir.join("docker-config") };
        let mut d = Dockerd { dir, child: Some(child), daemon };
        let deadline = Instant::now() + Duration::from_secs(60);
        while !d.daemon.docker(&["version"]).status.success() {
            if Instant::now() > deadline || matches!(d.child.as_mut().unwrap().try_wait(), Ok(Some(_))) {
                panic!(
                    "dockerd did not start: {}",
                    std::fs::read_to_string(d.dir.join("dockerd.log")).unwrap_or_default()
                );
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        d.daemon.ok(&["import", tar.to_str().unwrap(), "bb:1"]);
        d
    }

    /// Processes whose command line names our directory (containerd, shims), by pid.
    fn our_pids(&self) -> Vec<i32> {
        let me = std::process::id() as i32;
        let d = self.dir.to_str().unwrap().as_bytes().to_vec();
        let mut pids = Vec::new();
        for e in std::fs::read_dir("/proc").into_iter().flatten().flatten() {
            let Ok(pid) = e.file_name().to_string_lossy().parse::<i32>() else { continue };
            if pid == me {
                continue;
            }
            if let Ok(c) = std::fs::read(e.path().join("cmdline")) {
                if c.windows(d.len()).any(|w| w == d.as_slice()) {
                    pids.push(pid);
                }
            }
        }
        pids
    }
}

impl Drop for Dockerd {
    fn drop(&mut self) {
        let ids = self.daemon.docker(&["ps", "-aq"]);
        for id in String::from_utf8_lossy(&ids.stdout).lines() {
            let _ = self.daemon.docker(&["rm", "-f", id]);
        }
        if let Some(mut c) = self.child.take() {
            unsafe { libc::kill(c.id() as i32, libc::SIGTERM) };
            let deadline = Instant::now() + Duration::from_secs(20);
            while matches!(c.try_wait(), Ok(None)) && Instant::now() < deadline {
                std::thread::sleep(Duration::from_millis(100));
            }
            let _ = c.kill();
            let _ = c.wait();
        }
        for pid in self.our_pids() {
            unsafe { libc::kill(pid, libc::SIGKILL) };
        }
        let d = self.dir.to_str().unwrap().to_string();
        for _ in 0..3 {
            let mi = std::fs::read_to_string("/proc/self/mountinfo").unwrap_or_default();
            let mut ms: Vec<&str> = mi
                .lines()
                .filter_map(|l| l.split(' ').nth(4))
                .filter(|m| *m == d || m.starts_with(&format!("{d}/")))
                .collect();
            ms.sort();
            for m in ms.iter().rev() {
                let _ = Command::new("umount").arg("-l").arg(m).stderr(Stdio::null()).status();
            }
        }
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// One entry of an exported root filesystem (everything but the time).
#[derive(Debug, PartialEq, Eq, Clone)]
struct Entry {
    kind: char,
    mode: u32,
    uid: u64,
    gid: u64,
    size: u64,
    sha256: String,
    link: String,
}

fn rootfs(d: &Daemon, image: &str) -> BTreeMap<String, Entry> {
    let id = String::from_utf8(d.ok(&["create", "--network", "none", "--entrypoint", "/bin/true", image]))
        .unwrap()
        .trim()
        .to_string();
    let mut child = Command::new("docker")
        .args(["export", &id])
        .env("DOCKER_HOST", format!("unix://{}", d.sock.display()))
        .env("DOCKER_CONFIG", &d.config)
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let mut map = BTreeMap::new();
    {
        let mut ar = tar::Archive::new(child.stdout.take().unwrap());
        for e in ar.entries().unwrap() {
            let mut e = e.unwrap();
            let path = e.path().unwrap().to_string_lossy().trim_start_matches("./").trim_end_matches('/').to_string();
            if path.is_empty() || runtime_path(&path) {
                continue;
            }
            let h = e.header().clone();
            let kind = match h.entry_type() {
                tar::EntryType::Regular | tar::EntryType::Continuous => 'f',
                tar::EntryType::Directory => 'd',
                tar::EntryType::Symlink => 'l',
                tar::EntryType::Link => 'h',
                tar::EntryType::Char => 'c',
                tar::EntryType::Block => 'b',
                tar::EntryType::Fifo => 'p',
                _ => '?',
            };
            let mut data = Vec::new();
            e.read_to_end(&mut data).unwrap();
            let sha256 = if kind == 'f' {
                berth_image::digest::Digest::of(&data).hex()[..16].to_string()
            } else {
                String::new()
            };
            let link = e.link_name().ok().flatten().map(|l| l.to_string_lossy().into_owned()).unwrap_or_default();
            let link =
                if kind == 'h' { link.trim_start_matches("./").trim_start_matches('/').to_string() } else { link };
            map.insert(
                path,
                Entry {
                    kind,
                    mode: h.mode().unwrap() & 0o7777,
                    uid: h.uid().unwrap(),
                    gid: h.gid().unwrap(),
                    size: data.len() as u64,
                    sha256,
                    link,
                },
            );
        }
    }
    assert!(child.wait().unwrap().success(), "{}: docker export {image}", d.name);
    // An /etc holding nothing but the runtime's files is the runtime's (FROM scratch).
    if !map.keys().any(|k| k.starts_with("etc/")) {
        map.remove("etc");
    }
    let _ = d.docker(&["rm", "-f", &id]);
    map
}

/// A config value with Docker's empties (null, [], {}, "") made one.
fn norm(v: Option<&Value>) -> Value {
    match v {
        None | Some(Value::Null) => Value::Null,
        Some(Value::Array(a)) if a.is_empty() => Value::Null,
        Some(Value::Object(o)) if o.is_empty() => Value::Null,
        Some(Value::String(s)) if s.is_empty() => Value::Null,
        Some(v) => v.clone(),
    }
}

fn config(d: &Daemon, image: &str) -> BTreeMap<&'static str, Value> {
    let v: Value = serde_json::from_slice(&d.ok(&["image", "inspect", image])).unwrap();
    let c = &v[0]["Config"];
    FIELDS.iter().map(|f| (*f, norm(c.get(*f)))).collect()
}

fn build(d: &Daemon, case: &str, dir: &Path, args: &[String]) -> Output {
    let tag = format!("corpus/{case}");
    let mut a: Vec<&str> = vec!["build", "--network", "none", "-q", "-t", &tag];
    a.extend(args.iter().map(|s| s.as_str()));
    let dir = dir.to_str().unwrap();
    a.push(dir);
    d.docker(&a)
}

fn text(o: &Output) -> String {
    format!("{}{}", String::from_utf8_lossy(&o.stdout), String::from_utf8_lossy(&o.stderr))
}

/// Builds one case in both daemons and compares; returns the differences found.
fn run_case(berth: &Daemon, dockerd: &Daemon, case: &str, dir: &Path) -> Result<(), String> {
    let read = |f: &str| std::fs::read_to_string(dir.join(f)).ok();
    let args: Vec<String> = read("args").map(|a| a.split_whitespace().map(String::from).collect()).unwrap_or_default();
    let ob = build(berth, case, dir, &args);
    let od = build(dockerd, case, dir, &args);
    if let Some(want) = read("expect-error") {
        let want = want.trim();
        let mut errs = Vec::new();
        for (d, o) in [(berth, &ob), (dockerd, &od)] {
            if o.status.success() {
                errs.push(format!("{} built it; want an error containing {want:?}", d.name));
            } else if !text(o).contains(want) {
                errs.push(format!("{} failed without {want:?}:\n{}", d.name, text(o)));
            }
        }
        return if errs.is_empty() { Ok(()) } else { Err(errs.join("\n")) };
    }
    match (ob.status.success(), od.status.success()) {
        (true, true) => {}
        (b, d) => {
            return Err(format!(
                "berth {}, dockerd {}:\n--- berth\n{}--- dockerd\n{}",
                if b { "built it" } else { "failed" },
                if d { "built it" } else { "failed" },
                text(&ob),
                text(&od)
            ))
        }
    }
    let image = format!("corpus/{case}");
    let mut diffs = Vec::new();
    let (cb, cd) = (config(berth, &image), config(dockerd, &image));
    for f in FIELDS {
        if cb[f] != cd[f] {
            diffs.push(format!("config {f}: berth {} | dockerd {}", cb[f], cd[f]));
        }
    }
    let (fb, fd) = (rootfs(berth, &image), rootfs(dockerd, &image));
    let mut paths: Vec<&String> = fb.keys().chain(fd.keys()).collect();
    paths.sort();
    paths.dedup();
    for p in paths {
        match (fb.get(p), fd.get(p)) {
            (Some(b), Some(d)) if b == d => {}
            (b, d) => diffs.push(format!("/{p}: berth {b:?} | dockerd {d:?}")),
        }
    }
    if diffs.is_empty() {
        Ok(())
    } else {
        Err(diffs.join("\n"))
    }
}

#[test]
fn corpus_matches_dockerd_legacy_builder() {
    let started = Instant::now();
    let filter = std::env::var("CORPUS_CASE").ok();
    let mut cases: Vec<(String, PathBuf)> = std::fs::read_dir(CORPUS)
        .unwrap()
        .flatten()
        .filter(|e| e.path().join("Dockerfile").is_file())
        .map(|e| (e.file_name().to_string_lossy().into_owned(), e.path()))
        .collect();
    cases.sort();
    assert!(cases.len() >= 25, "the corpus has {} cases", cases.len());
    if let Some(f) = &filter {
        cases.retain(|(c, _)| c.contains(f.as_str()) || c.ends_with("-base"));
    }

    let e = Engine::new("corpus");
    let berth = Daemon { name: "berth", sock: e.sock.clone(), config: e.dir.join("docker-config") };
    let tar = busybox_tar(&e.dir.join("dockerd-base"));
    let dd = Dockerd::new(&tar);
    let dockerd = &dd.daemon;
    eprintln!("daemons up in {:.1?}", started.elapsed());

    let (mut passed, mut skipped, mut failed) = (Vec::new(), Vec::new(), Vec::new());
    for (case, dir) in &cases {
        let t = Instant::now();
        let r = run_case(&berth, dockerd, case, dir);
        let known = std::fs::read_to_string(dir.join("known-differences")).ok();
        match (r, known) {
            (Ok(()), None) => {
                eprintln!("PASS {case} ({:.1?})", t.elapsed());
                passed.push(case.clone());
            }
            (Ok(()), Some(why)) => {
                eprintln!("PASS {case} ({:.1?}) although known-differences says: {}", t.elapsed(), why.trim());
                passed.push(case.clone());
            }
            (Err(d), Some(why)) => {
                eprintln!("SKIP {case}: {}\n  (differences: {})", why.trim(), d.lines().count());
                skipped.push(case.clone());
            }
            (Err(d), None) => {
                eprintln!("FAIL {case}:\n  {}", d.replace('\n', "\n  "));
                failed.push(case.clone());
            }
        }
    }
    eprintln!(
        "{} cases: {} passed, {} skipped (known differences), {} failed {:?}; {:.1?}",
        cases.len(),
        passed.len(),
        skipped.len(),
        failed.len(),
        failed,
        started.elapsed()
    );
    if !failed.is_empty() {
        eprintln!("berth daemon log (tail):\n{}", tail(&e.log(), 40));
    }
    assert!(failed.is_empty(), "cases differing from dockerd's legacy builder: {failed:?}");
}

fn tail(s: &str, n: usize) -> String {
    let l: Vec<&str> = s.lines().collect();
    l[l.len().saturating_sub(n)..].join("\n")
}
