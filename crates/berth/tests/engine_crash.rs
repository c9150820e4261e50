//! Crash safety of the engine: the daemon is killed (SIGKILL, by itself at a named failpoint:
//! `BERTH_FAILPOINT`, see `berth_engine::failpoint`) at every step of a container's life:
//! create, start, exit, remove. A restarted daemon must then show the container whole or not
//! at all (never twice), let it be used and removed, and leave nothing behind: no mounts, no
//! monitor, no cgroups, no runtime state, no container directory, no volume, no image hold.
//! Also: a restart policy resumes for a container that died while the daemon was down.

mod common;

use common::engine::{err, out, Engine};
use std::path::Path;
use std::time::{Duration, Instant};

/// Directory entries of `dir` (none if it does not exist).
fn entries(dir: &Path) -> Vec<String> {
    std::fs::read_dir(dir)
        .map(|r| r.flatten().map(|e| e.file_name().to_string_lossy().into_owned()).collect())
        .unwrap_or_default()
}

/// Processes whose command line mentions `needle`.
fn processes_with(needle: &str) -> Vec<String> {
    let mut found = Vec::new();
    for pid in entries(Path::new("/proc")).into_iter().filter(|p| p.bytes().all(|b| b.is_ascii_digit())) {
        if let Ok(c) = std::fs::read(format!("/proc/{pid}/cmdline")) {
            let c = String::from_utf8_lossy(&c).replace('\0', " ");
            if c.contains(needle) {
                found.push(format!("{pid}: {c}"));
            }
        }
    }
    found
}

/// cgroup directories Berth made for container `id`, in any hierarchy.
fn cgroups_of(id: &str) -> Vec<String> {
    let mut found = Vec::new();
    for ctrl in entries(Path::new("/sys/fs/cgroup")) {
        let p = Path::new("/sys/fs/cgroup").join(ctrl).join("berth").join(id);
        if p.exists() {
            found.push(p.display().to_string());
        }
    }
    found
}

/// Everything a container leaves behind once it is removed must be gone.
fn assert_nothing_left(e: &Engine, point: &str, ids: &[String]) {
    assert!(e.mounts_left().is_empty(), "{point}: mounts left: {:?}", e.mounts_left());
    let dirs = entries(&e.dir.join("data/containers"));
    assert!(dirs.is_empty(), "{point}: container directories left: {dirs:?}");
    let runs = entries(&e.dir.join("run/c"));
    assert!(runs.is_empty(), "{point}: monitor directories left: {runs:?}");
    let rt = entries(&e.dir.join("run/runtime"));
    assert!(rt.is_empty(), "{point}: runtime state left: {rt:?}");
    let vols = e.ok(&["volume", "ls", "-q"]);
    assert!(vols.trim().is_empty(), "{point}: volumes left: {vols}");
    for id in ids {
        assert!(cgroups_of(id).is_empty(), "{point}: cgroups left: {:?}", cgroups_of(id));
        assert!(processes_with(id).is_empty(), "{point}: processes left: {:?}", processes_with(id));
    }
}

#[test]
fn the_daemon_killed_at_every_step_loses_nothing_and_leaves_nothing() {
    let mut e = Engine::new("crash");
    let mut ids: Vec<String> = Vec::new();
    for point in berth_engine::failpoint::POINTS {
        let name = format!("c-{}", point.replace('.', "-"));
        let line = format!("hello from {name}");
        let script = format!("echo {line}; echo {line} >> /data/runs; sleep 0.5");
        e.kill9_daemon();
        e.start_daemon_env(&[("BERTH_FAILPOINT", point)]);
        // A whole life, until the daemon dies in it.
        let life: [Vec<&str>; 4] = [
            vec!["create", "--name", &name, "-v", "/anon", "-v", "vol-crash:/data", "bb:1", "sh", "-c", &script],
            vec!["start", &name],
            vec!["wait", &name],
            vec!["rm", "-v", &name],
        ];
        for args in &life {
            let o = e.docker(args);
            if !o.status.success() {
                break;
            }
            if args[0] == "create" {
                ids.push(out(&o).trim().to_string());
            }
        }
        assert!(e.daemon_died_within(Duration::from_secs(10)), "{point}: the failpoint was never reached");
        e.start_daemon();

        // Whole or absent, never twice.
        let ps = e.ok(&["ps", "-a", "--format", "{{.ID}} {{.Names}} {{.State}}"]);
        let rows: Vec<&str> = ps.lines().collect();
        assert!(rows.len() <= 1, "{point}: {ps}");
        let dirs = entries(&e.dir.join("data/containers"));
        assert_eq!(dirs.len(), rows.len(), "{point}: records {dirs:?} vs ps {ps}");
        if let Some(row) = rows.first() {
            let state = row.split(' ').nth(2).unwrap_or("");
            match *point {
                "create.saved" | "start.mounted" => assert_eq!(state, "created", "{point}"),
                "start.monitor" | "start.started" => assert!(matches!(state, "running" | "exited"), "{point}: {state}"),
                "exit.cleaned" => assert_eq!(state, "exited", "{point}"),
                _ => panic!("{point}: the container should not exist: {row}"),
            }
            if state == "created" {
                // Usable: it runs, with its volumes, and prints what it should.
                let o = e.docker(&["start", "-a", &name]);
                assert!(o.status.success(), "{point}: start -a: {}\n{}", err(&o), e.log());
                assert_eq!(out(&o).trim(), line, "{point}");
            } else {
                assert_eq!(e.ok(&["wait", &name]).trim(), "0", "{point}");
                let logs = e.ok(&["logs", &name]);
                assert_eq!(logs.trim(), line, "{point}: its output survived the crash");
            }
            e.ok(&["rm", "-v", &name]);
        } else {
            assert!(point.starts_with("create.") || point.starts_with("rm."), "{point}: the container was lost");
        }
        // The named volume is the user's: it stays; a started container wrote to it once.
        let vols = e.ok(&["volume", "ls", "-q"]);
        if vols.trim() == "vol-crash" {
            e.ok(&["volume", "rm", "vol-crash"]);
        }
        assert_nothing_left(&e, point, &ids);
    }
    // No image hold is left from any of it: the image can go.
    let o = e.docker(&["rmi", "bb:1"]);
    assert!(o.status.success(), "rmi: {}", err(&o));
    assert!(e.ok(&["images", "-q"]).trim().is_empty());
}

#[test]
fn a_restart_policy_resumes_for_a_container_that_died_while_the_daemon_was_down() {
    let mut e = Engine::new("crash-restart");
    e.ok(&["run", "-d", "--name", "svc", "--restart", "always", "bb:1", "sh", "-c", "echo up; exec sleep 1000"]);
    let pid: i32 = e.ok(&["inspect", "-f", "{{.State.Pid}}", "svc"]).trim().parse().unwrap();
    e.kill9_daemon();
    // SAFETY: a plain kill(2) of the container's process, which this test started.
    unsafe { libc::kill(pid, libc::SIGKILL) };
    let deadline = Instant::now() + Duration::from_secs(10);
    while Path::new(&format!("/proc/{pid}")).exists() {
        assert!(Instant::now() < deadline, "the container's process did not die");
        std::thread::sleep(Duration::from_millis(20));
    }
    e.start_daemon();
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let s = e.ok(&["inspect", "-f", "{{.State.Status}} {{.RestartCount}} {{.State.Pid}}", "svc"]);
        let f: Vec<&str> = s.split_whitespace().collect();
        if f[0] == "running" && f[1] == "1" && f[2] != pid.to_string() {
            break;
        }
        assert!(Instant::now() < deadline, "not restarted: {s}\n{}", e.log());
        std::thread::sleep(Duration::from_millis(50));
    }
    let deadline = Instant::now() + Duration::from_secs(10);
    while e.ok(&["logs", "svc"]) != "up\nup\n" {
        assert!(Instant::now() < deadline, "logs: {:?}", e.ok(&["logs", "svc"]));
        std::thread::sleep(Duration::from_millis(50));
    }
    e.ok(&["rm", "-f", "svc"]);
    assert!(e.mounts_left().is_empty(), "{:?}", e.mounts_left());
}
