//! `berth daemon` driven by the real docker CLI (28.x on the PATH): containers run, print,
//! exit with their codes, keep running across a daemon kill -9, restart by policy; images are
//! pulled through the API from Debian's docker-registry; bad input gets Docker's errors.

mod common;

use common::registry::{make_layout, Registry};
use std::io::{Read, Write};
use std::path::Path;
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use common::engine::{err, out, Engine, BERTH};

#[test]
fn run_output_exit_codes_stdin_and_bad_input() {
    let e = Engine::new("run");
    let o = e.docker(&["run", "--rm", "bb:1", "sh", "-c", "echo out; echo err >&2; exit 3"]);
    assert_eq!(o.status.code(), Some(3), "{}{}", err(&o), e.log());
    assert_eq!(out(&o), "out\n");
    assert!(err(&o).contains("err\n"), "{}", err(&o));

    assert_eq!(e.docker_in(&["run", "-i", "--rm", "bb:1", "cat"], Some("piped in\n")).stdout, b"piped in\n");
    assert_eq!(e.ok(&["run", "--rm", "-e", "A=b c", "bb:1", "sh", "-c", "echo $A; hostname | wc -c"]), "b c\n13\n");
    assert_eq!(e.ok(&["run", "--rm", "-u", "nobody", "bb:1", "id", "-u"]), "65534\n");

    // Bind mounts: written through, and read-only with :ro.
    let vol = e.dir.join("vol");
    std::fs::create_dir_all(&vol).unwrap();
    let v = format!("{}:/data", vol.display());
    e.ok(&["run", "--rm", "-v", &v, "bb:1", "sh", "-c", "echo written > /data/f"]);
    assert_eq!(std::fs::read_to_string(vol.join("f")).unwrap(), "written\n");
    let o = e.docker(&["run", "--rm", "-v", &format!("{v}:ro"), "bb:1", "sh", "-c", "echo x > /data/g"]);
    assert_ne!(o.status.code(), Some(0));
    assert!(!vol.join("g").exists(), "wrote through a read-only bind");
    let o = e.docker(&["create", "-v", &format!("{v}:bogus"), "bb:1", "true"]);
    assert!(err(&o).contains("unknown option"), "{}", err(&o));

    // A missing executable: Docker's 127 and its message; the --rm container is gone.
    let o = e.docker(&["run", "--rm", "bb:1", "nosuchcmd"]);
    assert_eq!(o.status.code(), Some(127), "{}", err(&o));
    assert!(err(&o).contains("executable file not found"), "{}", err(&o));
    // Refused flags name the problem and create nothing.
    let o = e.docker(&["run", "--rm", "--sysctl", "net.ipv4.ip_forward=1", "bb:1", "true"]);
    assert_eq!(o.status.code(), Some(125));
    assert!(err(&o).contains("--sysctl"), "{}", err(&o));
    let o = e.docker(&["run", "--rm", "--network", "none", "-p", "8080:80", "bb:1", "true"]);
    assert_eq!(o.status.code(), Some(125));
    assert!(err(&o).contains("conflicting options"), "{}", err(&o));
    assert_eq!(e.ok(&["ps", "-aq"]), "", "half-made containers left");

    // Names: a conflict is Docker's 409 message.
    e.ok(&["create", "--name", "dup", "bb:1", "true"]);
    let o = e.docker(&["create", "--name", "dup", "bb:1", "true"]);
    assert!(err(&o).contains("is already in use"), "{}", err(&o));
    e.ok(&["rm", "dup"]);

    // Malformed JSON and unknown images through the raw API.
    let (code, body) = e.raw("POST", "/v1.50/containers/create", "{not json");
    assert_eq!(code, 400, "{body}");
    assert!(body.contains("invalid JSON"), "{body}");
    let (code, body) = e.raw("POST", "/containers/create", r#"{"Image":"nosuch:1"}"#);
    assert_eq!(code, 404, "{body}");
    assert!(body.contains("No such image: nosuch:1"), "{body}");
    let (code, body) = e.raw(
        "POST",
        "/containers/create",
        r#"{"Image":"bb:1","Cmd":["true"],"HostConfig":{"Binds":["../relative:/x"]}}"#,
    );
    assert_eq!(code, 400, "{body}");
    let (code, _) = e.raw("GET", "/v1.12/version", "");
    assert_eq!(code, 400, "an API version below the minimum is refused");
    assert_eq!(e.ok(&["ps", "-aq"]), "");
    assert!(e.mounts_left().is_empty(), "{:?}", e.mounts_left());
}

fn pid_alive(pid: i64) -> bool {
    pid > 0 && Path::new(&format!("/proc/{pid}")).exists()
}

#[test]
fn containers_outlive_the_daemon_and_restart_by_policy() {
    let mut e = Engine::new("life");
    let id = e
        .ok(&[
            "run",
            "-d",
            "--name",
            "tick",
            "bb:1",
            "sh",
            "-c",
            "i=0; while true; do echo tick $i; i=$((i+1)); sleep 0.1; done",
        ])
        .trim()
        .to_string();
    assert_eq!(id.len(), 64);
    std::thread::sleep(Duration::from_millis(500));
    let ps = e.ok(&["ps", "--format", "{{.Names}} {{.Status}}"]);
    assert!(ps.starts_with("tick Up"), "{ps}");
    let logs = e.ok(&["logs", "tick"]);
    assert!(logs.starts_with("tick 0\ntick 1\n"), "{logs}");
    let pid: i64 = e.ok(&["inspect", "-f", "{{.State.Pid}}", "tick"]).trim().parse().unwrap();
    assert!(pid_alive(pid));

    // kill -9 the daemon: the container keeps running and logging; a new daemon adopts it.
    e.kill9_daemon();
    let before =
        std::fs::read_to_string(e.dir.join(format!("data/containers/{id}/{id}-json.log"))).unwrap().lines().count();
    std::thread::sleep(Duration::from_millis(500));
    assert!(pid_alive(pid), "the container died with the daemon");
    let after =
        std::fs::read_to_string(e.dir.join(format!("data/containers/{id}/{id}-json.log"))).unwrap().lines().count();
    assert!(after > before, "logging stopped with the daemon ({before} -> {after})");
    e.start_daemon();
    assert_eq!(e.ok(&["inspect", "-f", "{{.State.Status}} {{.State.Pid}}", "tick"]).trim(), format!("running {pid}"));
    let tail = e.ok(&["logs", "--tail", "1", "tick"]);
    assert!(tail.starts_with("tick "), "{tail}");
    // sh as pid 1 ignores SIGTERM: stop kills after the timeout.
    e.ok(&["stop", "-t", "1", "tick"]);
    assert_eq!(e.ok(&["inspect", "-f", "{{.State.Status}} {{.State.ExitCode}}", "tick"]).trim(), "exited 137");
    assert!(!pid_alive(pid));
    assert!(e.mounts_left().is_empty(), "{:?}", e.mounts_left());
    e.ok(&["rm", "tick"]);
    assert!(!e.dir.join(format!("data/containers/{id}")).exists());

    // on-failure:2 restarts a failing container twice, then leaves it exited.
    e.ok(&["run", "-d", "--name", "flaky", "--restart", "on-failure:2", "bb:1", "sh", "-c", "echo try; exit 5"]);
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let s = e.ok(&["inspect", "-f", "{{.State.Status}} {{.RestartCount}} {{.State.ExitCode}}", "flaky"]);
        if s.trim() == "exited 2 5" {
            break;
        }
        assert!(Instant::now() < deadline, "flaky: {s}");
        std::thread::sleep(Duration::from_millis(100));
    }
    assert_eq!(e.ok(&["logs", "flaky"]), "try\ntry\ntry\n");
    e.ok(&["rm", "flaky"]);
}

#[test]
fn pull_through_the_api_then_run() {
    let e = Engine::new("pull");
    let reg = Registry::start("engpull", "");
    let layout = e.dir.join("layout");
    make_layout(&layout, "t1");
    reg.push_layout(&layout, "t1", "test/bb:t1");
    let name = format!("{}/test/bb:t1", reg.addr);
    let o = e.docker(&["pull", &name]);
    assert!(o.status.success(), "{}{}", err(&o), e.log());
    assert!(out(&o).contains("Pull complete") && out(&o).contains("Digest: sha256:"), "{}", out(&o));
    let images = e.ok(&["images", "--format", "{{.Repository}}:{{.Tag}}"]);
    assert!(images.contains(&name), "{images}");
    assert_eq!(e.ok(&["run", "--rm", &name, "/bin/busybox", "cat", "/etc/motd"]), "layer two\n");
    // A tag that does not exist: the in-stream error makes the CLI fail.
    let o = e.docker(&["pull", &format!("{}/test/bb:nope", reg.addr)]);
    assert!(!o.status.success());
    // push through the daemon: the local image under a new name, then pulled back by digest.
    let pushed = format!("{}/other/bb:p1", reg.addr);
    e.ok(&["tag", "bb:1", &pushed]);
    let o = e.ok(&["push", &pushed]);
    assert!(o.contains("Pushed") && o.contains("p1: digest: sha256:"), "{o}");
    let digest = o.split("digest: ").nth(1).unwrap().split_whitespace().next().unwrap().to_string();
    e.ok(&["rmi", &pushed]);
    let by_digest = format!("{}/other/bb@{digest}", reg.addr);
    e.ok(&["pull", &by_digest]);
    assert_eq!(e.ok(&["run", "--rm", &by_digest, "echo", "round trip"]), "round trip\n");
    // history, save and load through the API: the same image id back.
    let id = e.ok(&["inspect", "-f", "{{.Id}}", "bb:1"]);
    assert!(e.ok(&["history", "bb:1"]).contains("berth import"));
    let tar = e.dir.join("saved.tar");
    e.ok(&["save", "-o", tar.to_str().unwrap(), "bb:1"]);
    e.ok(&["rmi", "-f", "bb:1", &by_digest]);
    assert!(!e.docker(&["inspect", "bb:1"]).status.success());
    assert_eq!(e.ok(&["load", "-i", tar.to_str().unwrap()]), "Loaded image: bb:1\n");
    assert_eq!(e.ok(&["inspect", "-f", "{{.Id}}", "bb:1"]), id);
    // A broken archive fails and loads nothing; the connection is still usable.
    std::fs::write(e.dir.join("bad.tar"), "not a tar").unwrap();
    assert!(!e.docker(&["load", "-i", e.dir.join("bad.tar").to_str().unwrap()]).status.success());
    e.ok(&["rmi", &name]);
    assert_eq!(e.ok(&["images", "-q"]).lines().count(), 1);
}

#[test]
fn exec_top_pause_unpause_rename() {
    let e = Engine::new("exec");
    let id = e.ok(&["run", "-d", "--name", "x1", "-e", "FROM_RUN=1", "bb:1", "sleep", "1000"]).trim().to_string();
    // Output, exit codes, the container's environment plus the exec's, user and working dir.
    assert_eq!(e.ok(&["exec", "x1", "sh", "-c", "echo $FROM_RUN; echo err >&2"]), "1\n");
    assert_eq!(e.docker(&["exec", "x1", "sh", "-c", "exit 7"]).status.code(), Some(7));
    let o = e.docker(&["exec", "x1", "nosuchcmd"]);
    assert_eq!(o.status.code(), Some(127), "{}", err(&o));
    assert!(out(&o).contains("executable file not found"), "{}{}", out(&o), err(&o));
    assert_eq!(
        e.ok(&["exec", "-u", "nobody", "-w", "/etc", "-e", "X=y", "x1", "sh", "-c", "id -u; pwd; echo $X"]),
        "65534\n/etc\ny\n"
    );
    assert_eq!(e.docker_in(&["exec", "-i", "x1", "wc", "-c"], Some("four")).stdout, b"4\n");
    // A tty exec under a pty: sized as the client's terminal.
    let o = Command::new("script")
        .args(["-qc", "stty rows 33 cols 101; docker exec -it x1 sh -c 'stty size; echo $TERM'", "/dev/null"])
        .env("DOCKER_HOST", format!("unix://{}", e.sock.display()))
        .output()
        .unwrap();
    let text = out(&o).replace('\r', "");
    assert!(text.contains("33 101\nxterm\n"), "{text:?}");
    // Detached exec: visible in top (the host's ps, rows of the container's processes only).
    e.ok(&["exec", "-d", "x1", "sleep", "777"]);
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let top = e.ok(&["top", "x1"]);
        if top.contains("sleep 777") {
            assert!(top.contains("sleep 1000") && top.lines().count() == 3, "{top}");
            break;
        }
        assert!(Instant::now() < deadline, "{top}");
        std::thread::sleep(Duration::from_millis(50));
    }
    // Pause freezes (the freezer's state), exec is refused while paused, unpause thaws.
    e.ok(&["pause", "x1"]);
    assert_eq!(e.ok(&["inspect", "-f", "{{.State.Status}}", "x1"]), "paused\n");
    let o = e.docker(&["exec", "x1", "true"]);
    assert!(err(&o).contains("is paused"), "{}", err(&o));
    e.ok(&["unpause", "x1"]);
    assert_eq!(e.ok(&["exec", "x1", "echo", "thawed"]), "thawed\n");
    // Rename: the new name finds it, the old one is free, a taken name is refused.
    e.ok(&["rename", "x1", "x2"]);
    assert_eq!(e.ok(&["inspect", "-f", "{{.Id}}", "x2"]).trim(), id);
    assert!(!e.docker(&["inspect", "x1"]).status.success());
    e.ok(&["create", "--name", "x3", "bb:1", "true"]);
    let o = e.docker(&["rename", "x2", "x3"]);
    assert!(err(&o).contains("already in use"), "{}", err(&o));
    // A paused container stops (thawed to receive the signal).
    e.ok(&["pause", "x2"]);
    e.ok(&["stop", "-t", "1", "x2"]);
    assert_eq!(e.ok(&["inspect", "-f", "{{.State.Status}} {{.State.ExitCode}}", "x2"]), "exited 137\n");
    // exec into a stopped container: 409.
    let o = e.docker(&["exec", "x2", "true"]);
    assert!(err(&o).contains("is not running"), "{}", err(&o));
}

#[test]
fn volumes_named_anonymous_tmpfs_and_their_api() {
    let e = Engine::new("vol");
    let data = e.dir.join("data/volumes");
    // A named volume outlives the container that wrote to it; :ro is enforced.
    assert_eq!(e.ok(&["volume", "create", "--label", "k=v", "keep"]), "keep\n");
    e.ok(&["run", "--rm", "-v", "keep:/data", "bb:1", "sh", "-c", "echo persisted > /data/f"]);
    assert_eq!(std::fs::read_to_string(data.join("keep/_data/f")).unwrap(), "persisted\n");
    assert_eq!(e.ok(&["run", "--rm", "-v", "keep:/data:ro", "bb:1", "cat", "/data/f"]), "persisted\n");
    let o = e.docker(&["run", "--rm", "-v", "keep:/data:ro", "bb:1", "sh", "-c", "echo x > /data/g"]);
    assert_ne!(o.status.code(), Some(0));
    assert!(!data.join("keep/_data/g").exists());
    // `--mount type=volume` creates a missing volume and copies the image's content into it.
    assert_eq!(
        e.ok(&["run", "--rm", "--mount", "type=volume,source=etcvol,target=/etc", "bb:1", "ls", "/etc"]),
        "group\npasswd\n"
    );
    assert!(data.join("etcvol/_data/passwd").exists());
    // ls, filters, inspect.
    let ls = e.ok(&["volume", "ls", "--format", "{{.Name}}"]);
    assert_eq!(ls, "etcvol\nkeep\n");
    assert_eq!(e.ok(&["volume", "ls", "-q", "--filter", "label=k=v"]), "keep\n");
    assert_eq!(e.ok(&["volume", "inspect", "-f", "{{.Driver}} {{.Labels.k}}", "keep"]), "local v\n");
    // In use: refused; anonymous volumes (-v /path) go with `rm -v`, named ones stay.
    e.ok(&["run", "-d", "--name", "user", "-v", "keep:/k", "-v", "/anon", "bb:1", "sleep", "100"]);
    let o = e.docker(&["volume", "rm", "keep"]);
    assert!(err(&o).contains("volume is in use"), "{}", err(&o));
    let anon =
        e.ok(&["inspect", "-f", "{{range .Mounts}}{{if eq .Destination \"/anon\"}}{{.Name}}{{end}}{{end}}", "user"]);
    let anon = anon.trim();
    assert_eq!(anon.len(), 64, "{anon}");
    assert!(data.join(anon).exists());
    e.ok(&["rm", "-fv", "user"]);
    assert!(!data.join(anon).exists(), "the anonymous volume outlived rm -v");
    assert!(data.join("keep/_data/f").exists());
    // tmpfs, both spellings, with their sizes in effect.
    let m = e.ok(&[
        "run",
        "--rm",
        "--tmpfs",
        "/scratch:size=1m",
        "--mount",
        "type=tmpfs,target=/t,tmpfs-size=2m",
        "bb:1",
        "grep",
        "tmpfs /",
        "/proc/mounts",
    ]);
    assert!(m.contains("/scratch tmpfs rw,nosuid,nodev,noexec,relatime,size=1024k"), "{m}");
    assert!(m.contains("/t tmpfs rw,nosuid,nodev,noexec,relatime,size=2048k"), "{m}");
    // Bad mounts: Docker's messages, nothing created.
    for (args, msg) in [
        (vec!["--mount", "type=bind,source=/nonexistent-berth,target=/x"], "bind source path does not exist"),
        (vec!["-v", "bad name:/x"], "invalid characters for a local volume name"),
        (vec!["-v", "/tmp:/"], "destination can't be '/'"),
        (vec!["-v", "keep:/x", "-v", "etcvol:/x"], "Duplicate mount point"),
        (vec!["--mount", "type=image,source=x,target=/x"], "not supported"),
    ] {
        let mut a = vec!["create"];
        a.extend(args);
        a.extend(["bb:1", "true"]);
        let o = e.docker(&a);
        assert!(err(&o).contains(msg), "{a:?}: {}", err(&o));
    }
    assert_eq!(e.ok(&["ps", "-aq"]), "");
    assert_eq!(e.ok(&["volume", "ls", "-q"]), "etcvol\nkeep\n");
    // prune: anonymous only by default; `--all` takes unused named ones; data of used ones stays.
    e.ok(&["create", "--name", "holder", "-v", "keep:/k", "bb:1", "true"]);
    e.ok(&["volume", "prune", "-f"]);
    assert_eq!(e.ok(&["volume", "ls", "-q"]), "etcvol\nkeep\n");
    e.ok(&["volume", "prune", "-af"]);
    assert_eq!(e.ok(&["volume", "ls", "-q"]), "keep\n");
    e.ok(&["rm", "holder"]);
    e.ok(&["volume", "rm", "keep"]);
    assert_eq!(std::fs::read_dir(&data).unwrap().count(), 0);
    assert!(e.mounts_left().is_empty(), "{:?}", e.mounts_left());
}

#[test]
fn docker_py_drives_the_daemon() {
    let e = Engine::new("dpy");
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../tests/compat/dockerpy_engine.py");
    let o = Command::new("python3").arg(&script).arg(&e.sock).output().expect("python3");
    assert!(o.status.success(), "docker-py checks failed:\n{}{}\n{}", out(&o), err(&o), e.log());
    assert!(out(&o).contains(" 0 failed"), "{}", out(&o));
}

/// Our own CLI: the same verbs over the same API.
fn berth(e: &Engine, args: &[&str], input: Option<&str>) -> Output {
    let mut c = Command::new(BERTH)
        .arg("-H")
        .arg(&e.sock)
        .args(args)
        .stdin(if input.is_some() { Stdio::piped() } else { Stdio::null() })
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    if let Some(i) = input {
        c.stdin.take().unwrap().write_all(i.as_bytes()).unwrap();
    }
    c.wait_with_output().unwrap()
}

fn berth_ok(e: &Engine, args: &[&str]) -> String {
    let o = berth(e, args, None);
    assert!(o.status.success(), "berth {args:?}: {}{}\n{}", out(&o), err(&o), e.log());
    out(&o)
}

#[test]
fn the_berth_cli_speaks_the_api() {
    let e = Engine::new("cli");
    // run: output, exit code, stdin, and Docker's 125/127 on failures.
    let o = berth(&e, &["run", "--rm", "bb:1", "sh", "-c", "echo out; echo err >&2; exit 3"], None);
    assert_eq!((o.status.code(), out(&o).as_str()), (Some(3), "out\n"), "{}", err(&o));
    assert_eq!(err(&o), "err\n");
    assert_eq!(berth(&e, &["run", "-i", "--rm", "bb:1", "wc", "-c"], Some("12345")).stdout, b"5\n");
    let o = berth(&e, &["run", "--rm", "bb:1", "nosuchcmd"], None);
    assert_eq!(o.status.code(), Some(127), "{}", err(&o));
    assert!(err(&o).contains("executable file not found"), "{}", err(&o));
    let o = berth(&e, &["run", "--bogus", "bb:1"], None);
    assert_eq!(o.status.code(), Some(125));
    assert!(err(&o).contains("--bogus"), "{}", err(&o));
    let o = berth(&e, &["run", "--rm", "-m", "lots", "bb:1", "true"], None);
    assert_eq!(o.status.code(), Some(125));
    assert!(err(&o).contains("invalid size"), "{}", err(&o));
    // run -d with a volume, env, label; ps (table, template, json, filter); exec; logs; top.
    let id = berth_ok(
        &e,
        &[
            "run",
            "-d",
            "--name",
            "web",
            "-e",
            "A=b",
            "-l",
            "k=v",
            "-v",
            "data:/data",
            "bb:1",
            "sh",
            "-c",
            "echo $A > /data/f; while true; do echo tick; sleep 0.2; done",
        ],
    );
    let id = id.trim();
    assert_eq!(id.len(), 64);
    let table = berth_ok(&e, &["ps"]);
    let mut lines = table.lines();
    let head = lines.next().unwrap();
    for col in ["CONTAINER ID", "IMAGE", "COMMAND", "CREATED", "STATUS", "PORTS", "NAMES"] {
        assert!(head.contains(col), "{head}");
    }
    let row = lines.next().unwrap();
    assert!(row.starts_with(&id[..12]) && row.ends_with(" web") && row.contains("Up "), "{row}");
    assert_eq!(berth_ok(&e, &["ps", "--format", "{{.Names}} {{.State}} {{.Labels}}"]), "web running k=v\n");
    let j: serde_json::Value = serde_json::from_str(berth_ok(&e, &["ps", "--format", "json"]).trim()).unwrap();
    assert_eq!(j["Names"], "web");
    assert_eq!(berth_ok(&e, &["ps", "-q", "--filter", "label=k=nope"]), "");
    assert_eq!(berth_ok(&e, &["ps", "-q", "--no-trunc", "--filter", "name=web"]).trim(), id);
    let o = berth(&e, &["exec", "-e", "X=1", "web", "sh", "-c", "cat /data/f; echo $X; exit 5"], None);
    assert_eq!((o.status.code(), out(&o).as_str()), (Some(5), "b\n1\n"));
    let deadline = Instant::now() + Duration::from_secs(5);
    while berth_ok(&e, &["logs", "--tail", "2", "web"]) != "tick\ntick\n" {
        assert!(Instant::now() < deadline);
        std::thread::sleep(Duration::from_millis(100));
    }
    assert!(berth_ok(&e, &["logs", "-t", "--tail", "1", "web"]).starts_with("20"));
    assert!(berth_ok(&e, &["top", "web"]).contains("sleep"));
    assert_eq!(
        berth_ok(&e, &["inspect", "-f", "{{.State.Status}} {{.Config.Image}} {{json .Config.Labels}}", "web"]),
        "running bb:1 {\"k\":\"v\"}\n"
    );
    let full: serde_json::Value = serde_json::from_str(&berth_ok(&e, &["inspect", "web"])).unwrap();
    assert_eq!(full[0]["Id"], id);
    // attach: our stdin in, its output out, its exit code.
    berth_ok(&e, &["run", "-d", "-i", "--name", "att", "bb:1", "sh", "-c", "read x; echo got $x; exit 9"]);
    let o = berth(&e, &["attach", "att"], Some("hello\n"));
    assert_eq!((o.status.code(), out(&o).as_str()), (Some(9), "got hello\n"), "{}", err(&o));
    let o = berth(&e, &["attach", "att"], None);
    assert!(err(&o).contains("cannot attach to a stopped container"), "{}", err(&o));
    berth_ok(&e, &["rm", "att"]);
    // cp both ways (a file, a directory, a new name), stats, events.
    let local = e.dir.join("cpsrc");
    std::fs::create_dir_all(&local).unwrap();
    std::fs::write(local.join("f.txt"), "from host\n").unwrap();
    berth_ok(&e, &["cp", local.join("f.txt").to_str().unwrap(), "web:/etc/"]);
    berth_ok(&e, &["cp", local.to_str().unwrap(), "web:/copied"]);
    assert_eq!(berth_ok(&e, &["exec", "web", "cat", "/etc/f.txt", "/copied/f.txt"]), "from host\nfrom host\n");
    let back = e.dir.join("back");
    std::fs::create_dir_all(&back).unwrap();
    berth_ok(&e, &["cp", "web:/etc/passwd", back.to_str().unwrap()]);
    berth_ok(&e, &["cp", "web:/copied", back.join("renamed").to_str().unwrap()]);
    assert!(std::fs::read_to_string(back.join("passwd")).unwrap().starts_with("root:"));
    assert_eq!(std::fs::read_to_string(back.join("renamed/f.txt")).unwrap(), "from host\n");
    let st = berth_ok(&e, &["stats", "--no-stream", "--format", "{{.Name}} {{.PIDs}}", "web"]);
    assert!(st.starts_with("web "), "{st}");
    let ev = berth_ok(
        &e,
        &[
            "events",
            "--since",
            "1m",
            "--until",
            "0s",
            "--filter",
            "event=create",
            "--format",
            "{{.Actor.Attributes.name}}",
        ],
    );
    assert!(ev.lines().any(|l| l == "web"), "{ev}");
    // pause/unpause/rename/stop/wait/start/restart/kill/rm.
    assert_eq!(berth_ok(&e, &["pause", "web"]), "web\n");
    assert_eq!(berth_ok(&e, &["inspect", "-f", "{{.State.Status}}", "web"]), "paused\n");
    berth_ok(&e, &["unpause", "web"]);
    berth_ok(&e, &["rename", "web", "w2"]);
    assert_eq!(berth_ok(&e, &["stop", "-t", "1", "w2"]), "w2\n");
    assert_eq!(berth_ok(&e, &["wait", "w2"]), "137\n");
    berth_ok(&e, &["start", "w2"]);
    assert_eq!(berth_ok(&e, &["inspect", "-f", "{{.State.Running}}", "w2"]), "true\n");
    berth_ok(&e, &["kill", "w2"]);
    assert_eq!(berth_ok(&e, &["wait", "w2"]), "137\n");
    let o = berth(&e, &["rm", "nosuch"], None);
    assert_eq!(o.status.code(), Some(1));
    assert!(err(&o).contains("No such container: nosuch"), "{}", err(&o));
    berth_ok(&e, &["rm", "-v", "w2"]);
    // The named volume outlived the container; a new one reads its data.
    assert_eq!(berth_ok(&e, &["run", "--rm", "-v", "data:/d", "bb:1", "cat", "/d/f"]), "b\n");
    assert_eq!(berth_ok(&e, &["volume", "ls", "--format", "{{.Name}} {{.Driver}}"]), "data local\n");
    assert_eq!(berth_ok(&e, &["volume", "rm", "data"]), "data\n");
    assert_eq!(berth_ok(&e, &["ps", "-aq"]), "");
    // No daemon: a clear message, exit 1.
    let o = Command::new(BERTH).args(["-H", "/nonexistent/berth.sock", "ps"]).output().unwrap();
    assert_eq!(o.status.code(), Some(1));
    assert!(err(&o).contains("Cannot connect to the Berth daemon"), "{}", err(&o));
}

#[test]
fn stats_from_cgroups_and_events() {
    let e = Engine::new("stats");
    let mut ev = Command::new("docker")
        .args(["events", "--format", "{{.Type}} {{.Action}} {{.Actor.Attributes.name}}"])
        .env("DOCKER_HOST", format!("unix://{}", e.sock.display()))
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    std::thread::sleep(Duration::from_millis(300));
    e.ok(&[
        "run",
        "-d",
        "--name",
        "busy",
        "-m",
        "64m",
        "--pids-limit",
        "50",
        "bb:1",
        "sh",
        "-c",
        "while true; do :; done",
    ]);
    // The API's numbers are the cgroup's: the limit set, one process, a busy CPU.
    let (code, body) = e.raw("GET", "/containers/busy/stats?stream=0", "");
    assert_eq!(code, 200);
    let body = body.lines().find(|l| l.starts_with('{')).unwrap_or("").to_string();
    let s: serde_json::Value = serde_json::from_str(&body).unwrap_or_else(|err| panic!("{err}: {body:?}"));
    assert_eq!(s["memory_stats"]["limit"], 64 << 20, "{s}");
    assert!(s["memory_stats"]["usage"].as_u64().unwrap() > 0, "{s}");
    assert_eq!(s["pids_stats"]["current"], 1, "{s}");
    assert_eq!(s["pids_stats"]["limit"], 50, "{s}");
    let cpu = s["cpu_stats"]["cpu_usage"]["total_usage"].as_u64().unwrap();
    let pre = s["precpu_stats"]["cpu_usage"]["total_usage"].as_u64().unwrap();
    assert!(cpu > pre, "{s}");
    let table = e.ok(&["stats", "--no-stream", "--format", "{{.Name}} {{.MemUsage}} {{.PIDs}}", "busy"]);
    assert!(table.starts_with("busy ") && table.contains("/ 64MiB 1"), "{table}");
    e.ok(&["exec", "busy", "true"]);
    e.ok(&["pause", "busy"]);
    e.ok(&["unpause", "busy"]);
    e.ok(&["rm", "-f", "busy"]);
    std::thread::sleep(Duration::from_millis(300));
    let _ = ev.kill();
    let mut text = String::new();
    ev.stdout.take().unwrap().read_to_string(&mut text).unwrap();
    let _ = ev.wait();
    let actions: Vec<&str> = text.lines().collect();
    assert_eq!(
        actions,
        [
            "container create busy",
            "container start busy",
            "container exec_create: true busy",
            "container exec_start: true busy",
            "container exec_die busy",
            "container pause busy",
            "container unpause busy",
            "container kill busy",
            "container die busy",
            "container destroy busy"
        ]
    );
    // History with since/until, filtered.
    let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_secs() + 1;
    let past = e.ok(&[
        "events",
        "--since",
        "0",
        "--until",
        &now.to_string(),
        "--filter",
        "event=die",
        "--format",
        "{{.Actor.Attributes.exitCode}}",
    ]);
    assert_eq!(past, "137\n");
}

#[test]
fn compose_up_ps_down() {
    let e = Engine::new("compose");
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../tests/compat/compose");
    let compose = |args: &[&str]| out(&common::engine::compose(&e, &dir, args));
    compose(&["up", "-d"]);
    let ps = compose(&["ps"]);
    assert!(ps.contains("bproj_db_1") && ps.contains("bproj_web_1"), "{ps}");
    assert_eq!(ps.matches(" Up ").count(), 2, "{ps}");
    assert_eq!(e.ok(&["ps", "-q", "--filter", "label=role=db"]).lines().count(), 1);
    assert!(e.ok(&["network", "ls", "--format", "{{.Name}}"]).contains("bproj_default"));
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        let logs = compose(&["logs", "--no-color"]);
        if logs.contains("db-up")
            && logs.contains("web-up MODE=test")
            && logs.contains("first-run")
            && logs.contains("web-got stored")
        {
            break;
        }
        assert!(Instant::now() < deadline, "{logs}");
        std::thread::sleep(Duration::from_millis(100));
    }
    // down keeps the named volume; up again finds the data the first db wrote.
    compose(&["down"]);
    assert_eq!(e.ok(&["ps", "-aq"]), "");
    assert!(!e.ok(&["network", "ls", "--format", "{{.Name}}"]).contains("bproj_default"), "down removes the network");
    assert_eq!(e.ok(&["volume", "ls", "-q"]), "bproj_data\n");
    compose(&["up", "-d"]);
    let deadline = Instant::now() + Duration::from_secs(5);
    while !e.ok(&["logs", "bproj_db_1"]).contains("stored") {
        assert!(Instant::now() < deadline);
        std::thread::sleep(Duration::from_millis(100));
    }
    compose(&["down", "-v"]);
    assert_eq!(e.ok(&["ps", "-aq"]), "");
    assert_eq!(e.ok(&["volume", "ls", "-q"]), "");
    assert!(e.mounts_left().is_empty(), "{:?}", e.mounts_left());
}

#[test]
fn healthchecks_move_between_states_and_survive_a_daemon_restart() {
    let mut e = Engine::new("health");
    let status =
        |e: &Engine| e.ok(&["inspect", "-f", "{{.State.Health.Status}} {{.State.Health.FailingStreak}}", "hc"]);
    let wait_for = |e: &Engine, want: &str| {
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            let s = status(e);
            if s.starts_with(want) {
                return;
            }
            assert!(Instant::now() < deadline, "still {s} waiting for {want}: {}", e.log());
            std::thread::sleep(Duration::from_millis(50));
        }
    };
    e.ok(&[
        "run",
        "-d",
        "--name",
        "hc",
        "--health-cmd",
        "test -f /ok",
        "--health-interval",
        "200ms",
        "--health-retries",
        "2",
        "bb:1",
        "sleep",
        "100",
    ]);
    assert!(e.ok(&["ps", "--format", "{{.Status}}"]).contains("(health: starting)"));
    wait_for(&e, "unhealthy");
    assert!(e.ok(&["ps", "--format", "{{.Status}}"]).contains("(unhealthy)"));
    e.ok(&["exec", "hc", "sh", "-c", "echo > /ok"]);
    wait_for(&e, "healthy 0");
    assert_eq!(e.ok(&["ps", "-q", "--filter", "health=healthy"]).lines().count(), 1);
    let log = e.ok(&["inspect", "-f", "{{json .State.Health.Log}}", "hc"]);
    let log: serde_json::Value = serde_json::from_str(&log).unwrap();
    assert!(log.as_array().unwrap().len() <= 5);
    assert_eq!(log.as_array().unwrap().last().unwrap()["ExitCode"], 0);
    // Probing resumes after a daemon crash.
    e.kill9_daemon();
    e.start_daemon();
    e.ok(&["exec", "hc", "busybox", "rm", "/ok"]);
    wait_for(&e, "unhealthy");
    // A probe over its timeout fails; a malformed check is refused at create.
    let o = e.docker(&["create", "--health-cmd", "true", "--health-interval", "1ns", "bb:1", "true"]);
    assert!(!o.status.success());
    assert!(err(&o).contains("Interval in Healthcheck cannot be less than 1ms"), "{}", err(&o));
    e.ok(&[
        "run",
        "-d",
        "--name",
        "slow",
        "--health-cmd",
        "sleep 5",
        "--health-timeout",
        "200ms",
        "--health-interval",
        "100ms",
        "--health-retries",
        "1",
        "bb:1",
        "sleep",
        "100",
    ]);
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let s = e.ok(&["inspect", "-f", "{{.State.Health.Status}}", "slow"]);
        if s == "unhealthy\n" {
            break;
        }
        assert!(Instant::now() < deadline, "{s}");
        std::thread::sleep(Duration::from_millis(50));
    }
    let out = e.ok(&["inspect", "-f", "{{(index .State.Health.Log 0).Output}}", "slow"]);
    assert!(out.contains("exceeded timeout"), "{out}");
}

#[test]
fn init_ulimits_devices_and_privileged() {
    let e = Engine::new("priv");
    // --init: a minimal pid 1 that passes SIGTERM on (sleep alone, as pid 1, would ignore it).
    e.ok(&["run", "-d", "--name", "withinit", "--init", "bb:1", "sleep", "100"]);
    assert_eq!(
        e.ok(&["exec", "withinit", "sh", "-c", "tr -d '\\0' < /proc/1/cmdline; echo; ls /proc/1/fd"]).trim_end(),
        "berth-init\n0\n1\n2"
    );
    let t = Instant::now();
    e.ok(&["stop", "-t", "8", "withinit"]);
    assert!(t.elapsed() < Duration::from_secs(5), "the init did not pass SIGTERM on");
    assert_eq!(e.ok(&["inspect", "-f", "{{.State.ExitCode}}", "withinit"]), "143\n");
    assert_eq!(e.docker(&["run", "--rm", "--init", "bb:1", "sh", "-c", "exit 7"]).status.code(), Some(7));
    // No --ulimit: the daemon's limits (inherited from this test), as with dockerd.
    let mut lim = libc::rlimit { rlim_cur: 0, rlim_max: 0 };
    // SAFETY: getrlimit writes into the struct we own.
    assert_eq!(unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim) }, 0);
    assert_eq!(
        e.ok(&["run", "--rm", "bb:1", "sh", "-c", "ulimit -n; ulimit -Hn"]),
        format!("{}\n{}\n", lim.rlim_cur, lim.rlim_max)
    );
    // --ulimit in effect; above our own hard limit: refused with the reason.
    assert_eq!(
        e.ok(&["run", "--rm", "--ulimit", "nofile=512:1024", "bb:1", "sh", "-c", "ulimit -n; ulimit -Hn"]),
        "512\n1024\n"
    );
    let o = e.docker(&["run", "--rm", "--ulimit", "nofile=512:999999999", "bb:1", "true"]);
    assert_eq!(o.status.code(), Some(125));
    assert!(err(&o).contains("exceeds the current hard limit"), "{}", err(&o));
    // --device: the node exists inside with the host's numbers; not without the flag.
    assert!(e.ok(&["run", "--rm", "--device", "/dev/fuse", "bb:1", "ls", "-l", "/dev/fuse"]).contains("10, 229"));
    let o = e.docker(&["run", "--rm", "bb:1", "sh", "-c", "ls -l /dev/fuse; cat /proc/self/mountinfo | grep -w /dev"]);
    assert!(!out(&o).contains("10, 229"), "/dev/fuse without --device: {}{}", out(&o), err(&o));
    let o = e.docker(&["run", "--rm", "--device", "/nonexistent-dev", "bb:1", "true"]);
    assert!(err(&o).contains("/nonexistent-dev"), "{}", err(&o));
    // --privileged: every capability we hold, no seccomp, /sys writable; the default has Docker's set.
    let ours = std::fs::read_to_string("/proc/self/status").unwrap();
    let bnd = ours.lines().find_map(|l| l.strip_prefix("CapBnd:")).unwrap().trim().to_string();
    let p = e.ok(&[
        "run",
        "--rm",
        "--privileged",
        "bb:1",
        "sh",
        "-c",
        "grep -E 'CapEff|Seccomp:' /proc/self/status; grep ' /sys ' /proc/mounts",
    ]);
    assert!(p.contains(&format!("CapEff:\t{bnd}")) && p.contains("Seccomp:\t0") && p.contains("sysfs rw,"), "{p}");
    let d = e.ok(&["run", "--rm", "bb:1", "sh", "-c", "grep -E 'CapEff|Seccomp:' /proc/self/status"]);
    assert!(d.contains("CapEff:\t00000000a80425fb") && d.contains("Seccomp:\t2"), "{d}");
}

#[test]
fn oom_kills_are_recorded() {
    let e = Engine::new("oom");
    let o = e.docker(&["run", "--name", "hog", "-m", "8m", "bb:1", "sh", "-c", "x=a; while true; do x=\"$x$x\"; done"]);
    assert_eq!(o.status.code(), Some(137));
    assert_eq!(e.ok(&["inspect", "-f", "{{.State.OOMKilled}} {{.State.ExitCode}}", "hog"]), "true 137\n");
    let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_secs() + 1;
    let ev = e.ok(&[
        "events",
        "--since",
        "0",
        "--until",
        &now.to_string(),
        "--filter",
        "event=oom",
        "--format",
        "{{.Actor.Attributes.name}}",
    ]);
    assert_eq!(ev, "hog\n");
    // The flag is per run: a clean run after it clears it.
    e.ok(&["rm", "hog"]);
    e.ok(&["run", "--name", "fine", "-m", "8m", "bb:1", "true"]);
    assert_eq!(e.ok(&["inspect", "-f", "{{.State.OOMKilled}}", "fine"]), "false\n");
}

#[test]
fn update_prune_and_system_df() {
    let e = Engine::new("update");
    let id = e.ok(&["run", "-d", "--name", "up", "-m", "64m", "bb:1", "sleep", "100"]).trim().to_string();
    e.ok(&[
        "update",
        "-m",
        "128m",
        "--memory-swap",
        "256m",
        "--cpus",
        "0.5",
        "--pids-limit",
        "20",
        "--restart",
        "always",
        "up",
    ]);
    // In effect in the cgroup (this host's v1 controllers), and kept for later starts.
    let cg = |c: &str, f: &str| std::fs::read_to_string(format!("/sys/fs/cgroup/{c}/berth/{id}/{f}")).unwrap();
    assert_eq!(cg("memory", "memory.limit_in_bytes").trim(), (128u64 << 20).to_string());
    assert_eq!(cg("cpu", "cpu.cfs_quota_us").trim(), "50000");
    assert_eq!(cg("pids", "pids.max").trim(), "20");
    assert_eq!(
        e.ok(&["inspect", "-f", "{{.HostConfig.Memory}} {{.HostConfig.RestartPolicy.Name}}", "up"]),
        format!("{} always\n", 128u64 << 20)
    );
    let o = e.docker(&["update", "--blkio-weight", "300", "up"]);
    assert!(err(&o).contains("BlkioWeight cannot be updated"), "{}", err(&o));
    let o = e.docker(&["update", "-m", "1m", "up"]);
    assert!(!o.status.success());
    // prune removes stopped containers only; df counts what is there.
    e.ok(&["create", "--name", "idle", "bb:1", "true"]);
    let pruned = e.ok(&["container", "prune", "-f"]);
    assert_eq!(pruned.lines().filter(|l| l.len() == 64).count(), 1, "{pruned}");
    assert_eq!(e.ok(&["ps", "-aq", "--no-trunc"]).trim(), id);
    let df = e.ok(&["system", "df", "--format", "{{.Type}} {{.TotalCount}} {{.Active}}"]);
    assert!(df.contains("Images 1 1") && df.contains("Containers 1 1"), "{df}");
    e.ok(&["rm", "-f", "up"]);
}
