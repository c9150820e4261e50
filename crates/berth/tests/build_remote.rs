//! `ADD` of remote sources, against real servers on loopback (the daemon fetches them, in the
//! host's network namespace): HTTP downloads (named after the URL, mode 0600, `--chown` and
//! `--chmod` applied, never unpacked), the cache keyed by what was downloaded (a changed file
//! reruns its step, an unchanged one is cached), `--checksum`, HTTP errors; git repositories
//! served by `git daemon` (a tag, a branch with a subdirectory, the default branch, `.git` only
//! with `--keep-git-dir`, a commit checksum). Every failure is one clear line with the
//! Dockerfile line, no image tagged and no mount left.

mod common;

use common::engine::{docker_build, err, out, Engine, BERTH};
use std::collections::HashMap;
use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

fn write(dir: &Path, name: &str, data: &[u8]) {
    let p = dir.join(name);
    std::fs::create_dir_all(p.parent().unwrap()).unwrap();
    std::fs::write(p, data).unwrap();
}

/// A file the test server serves: its content and `Last-Modified`.
type Files = Arc<Mutex<HashMap<String, (Vec<u8>, Option<String>)>>>;

/// A tiny HTTP/1.1 server on 127.0.0.1: the paths of `files`, 404 for others; every request
/// is counted by path.
struct Server {
    port: u16,
    files: Files,
    hits: Arc<Mutex<HashMap<String, usize>>>,
}

impl Server {
    fn start() -> Server {
        let l = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = l.local_addr().unwrap().port();
        let files: Files = Arc::default();
        let hits: Arc<Mutex<HashMap<String, usize>>> = Arc::default();
        let (f, h) = (files.clone(), hits.clone());
        std::thread::spawn(move || {
            for s in l.incoming().flatten() {
                let (f, h) = (f.clone(), h.clone());
                std::thread::spawn(move || serve(s, &f, &h));
            }
        });
        Server { port, files, hits }
    }

    fn url(&self, path: &str) -> String {
        format!("http://127.0.0.1:{}{path}", self.port)
    }

    fn put(&self, path: &str, data: &[u8], last_modified: Option<&str>) {
        self.files.lock().unwrap().insert(path.to_string(), (data.to_vec(), last_modified.map(String::from)));
    }

    fn hits(&self, path: &str) -> usize {
        self.hits.lock().unwrap().get(path).copied().unwrap_or(0)
    }
}

fn serve(mut s: TcpStream, files: &Files, hits: &Mutex<HashMap<String, usize>>) {
    let mut req = Vec::new();
    let mut b = [0u8; 1024];
    while !req.windows(4).any(|w| w == b"\r\n\r\n") {
        match s.read(&mut b) {
            Ok(0) | Err(_) => return,
            Ok(n) => req.extend_from_slice(&b[..n]),
        }
    }
    let text = String::from_utf8_lossy(&req);
    let path = text.split(' ').nth(1).unwrap_or("").to_string();
    *hits.lock().unwrap().entry(path.clone()).or_default() += 1;
    let found = files.lock().unwrap().get(&path).cloned();
    let _ = match found {
        Some((data, lm)) => {
            let lm = lm.map(|l| format!("Last-Modified: {l}\r\n")).unwrap_or_default();
            let head = format!(
                "HTTP/1.1 200 OK\r\nContent-Length: {}\r\nContent-Type: application/octet-stream\r\n{lm}Connection: close\r\n\r\n",
                data.len()
            );
            s.write_all(head.as_bytes()).and_then(|_| s.write_all(&data))
        }
        None => s.write_all(b"HTTP/1.1 404 Not Found\r\nContent-Length: 9\r\nConnection: close\r\n\r\nnot found"),
    };
}

fn sha256(data: &[u8]) -> String {
    let mut c = Command::new("sha256sum").stdin(Stdio::piped()).stdout(Stdio::piped()).spawn().unwrap();
    c.stdin.take().unwrap().write_all(data).unwrap();
    let o = c.wait_with_output().unwrap();
    format!("sha256:{}", String::from_utf8_lossy(&o.stdout).split(' ').next().unwrap())
}

/// Run `script` with busybox's sh in image `img`.
fn sh(e: &Engine, img: &str, script: &str) -> String {
    e.ok(&["run", "--rm", img, "sh", "-c", script])
}

fn image_id(e: &Engine, img: &str) -> String {
    e.ok(&["image", "inspect", "-f", "{{.Id}}", img]).trim().to_string()
}

/// A build that must fail saying `says`, with the Dockerfile line, leaving nothing behind.
fn refused(e: &Engine, ctx: &Path, df: &str, says: &str) {
    write(ctx, "Dockerfile", df.as_bytes());
    let o = docker_build(e, &["-t", "broken:1"], ctx);
    let msg = format!("{}{}", out(&o), err(&o));
    assert!(!o.status.success(), "{df}: {msg}");
    assert!(msg.contains(says), "{df}: {msg}");
    assert!(msg.contains("Dockerfile:2"), "the line is given: {msg}");
    assert!(!e.docker(&["image", "inspect", "broken:1"]).status.success(), "{df}: nothing tagged");
    assert!(e.mounts_left().is_empty(), "{df}: {:?}", e.mounts_left());
    let work = e.dir.join("run/build");
    assert!(!work.exists() || std::fs::read_dir(&work).unwrap().next().is_none(), "{df}: work dirs left");
}

#[test]
fn add_from_http_urls() {
    let e = Engine::new("addurl");
    let srv = Server::start();
    let ctx = e.dir.join("ctx");
    write(&ctx, "local.txt", b"from the context\n");
    srv.put("/files/hello.txt", b"hello from http\n", Some("Tue, 14 Nov 2023 22:13:20 GMT"));
    srv.put("/files/changing.txt", b"version 1\n", None);
    // A real gzipped tar: ADD must not unpack it when it comes from a URL.
    let tdir = e.dir.join("tarsrc");
    write(&tdir, "inner.txt", b"inside\n");
    let tgz = e.dir.join("arch.tar.gz");
    assert!(Command::new("tar").arg("-C").arg(&tdir).arg("-czf").arg(&tgz).arg(".").status().unwrap().success());
    let tgz_bytes = std::fs::read(&tgz).unwrap();
    srv.put("/dl/arch.tar.gz", &tgz_bytes, None);

    let df = format!(
        "FROM bb:1\n\
         ADD {hello} /dl/\n\
         ADD --chown=65534:65534 --chmod=640 {hello} /explicit/name.txt\n\
         ADD {tgz} local.txt /mixed/\n\
         ADD {changing} /changing\n",
        hello = srv.url("/files/hello.txt"),
        tgz = srv.url("/dl/arch.tar.gz"),
        changing = srv.url("/files/changing.txt"),
    );
    write(&ctx, "Dockerfile", df.as_bytes());
    let o = docker_build(&e, &["-t", "dl:1"], &ctx);
    assert!(o.status.success(), "{}{}\n{}", out(&o), err(&o), e.log());
    let got = sh(
        &e,
        "dl:1",
        "cat /dl/hello.txt; busybox stat -c '%a %u:%g %Y' /dl/hello.txt; \
         cat /explicit/name.txt; busybox stat -c '%a %u:%g' /explicit/name.txt; \
         busybox stat -c '%a %s' /mixed/arch.tar.gz; cat /mixed/local.txt; \
         ls /mixed; cat /changing",
    );
    assert_eq!(
        got,
        format!(
            "hello from http\n600 0:0 1700000000\nhello from http\n640 65534:65534\n600 {}\nfrom the context\narch.tar.gz\nlocal.txt\nversion 1\n",
            tgz_bytes.len()
        )
    );
    let id1 = image_id(&e, "dl:1");

    // Unchanged remote content: every step cached, the same image, though fetched again.
    let before = srv.hits("/files/changing.txt");
    let o = docker_build(&e, &["-t", "dl:2"], &ctx);
    assert!(o.status.success(), "{}{}", out(&o), err(&o));
    assert_eq!(out(&o).matches("Using cache").count(), 4, "{}", out(&o));
    assert_eq!(image_id(&e, "dl:2"), id1);
    assert_eq!(srv.hits("/files/changing.txt"), before + 1, "the URL is fetched at every build");

    // A changed remote file: its step (the last) runs again, the others are cached.
    srv.put("/files/changing.txt", b"version 2\n", None);
    let o = docker_build(&e, &["-t", "dl:3"], &ctx);
    assert!(o.status.success(), "{}{}", out(&o), err(&o));
    let log = out(&o);
    assert_eq!(log.matches("Using cache").count(), 3, "{log}");
    let last = log.split("Step 5/5").nth(1).unwrap();
    assert!(!last.contains("Using cache"), "{log}");
    assert_ne!(image_id(&e, "dl:3"), id1);
    assert_eq!(sh(&e, "dl:3", "cat /changing"), "version 2\n");

    // --checksum: the right digest builds (through berth's own CLI), a wrong one does not.
    let sum = sha256(b"hello from http\n");
    write(
        &ctx,
        "Dockerfile",
        format!("FROM bb:1\nADD --checksum={sum} {} /sum/\n", srv.url("/files/hello.txt")).as_bytes(),
    );
    let o =
        Command::new(BERTH).args(["-H", e.sock.to_str().unwrap(), "build", "-t", "sum:1"]).arg(&ctx).output().unwrap();
    assert!(o.status.success(), "{}{}", out(&o), err(&o));
    assert_eq!(sh(&e, "sum:1", "cat /sum/hello.txt"), "hello from http\n");

    let wrong = sha256(b"something else");
    refused(
        &e,
        &ctx,
        &format!("FROM bb:1\nADD --checksum={wrong} {} /sum/\n", srv.url("/files/hello.txt")),
        &format!("digest mismatch for {}: {sum} (expected: {wrong})", srv.url("/files/hello.txt")),
    );
    refused(
        &e,
        &ctx,
        "FROM bb:1\nADD --checksum=sha256:abc local.txt /x\n",
        "checksum can't be specified for non-HTTP(S)",
    );
    refused(
        &e,
        &ctx,
        &format!("FROM bb:1\nADD --checksum=md5:abc {} /x\n", srv.url("/files/hello.txt")),
        "invalid checksum digest format",
    );
    refused(
        &e,
        &ctx,
        &format!("FROM bb:1\nADD {} /x/\n", srv.url("/nothere.txt")),
        &format!("failed to GET {} with status 404 Not Found", srv.url("/nothere.txt")),
    );
    refused(
        &e,
        &ctx,
        &format!("FROM bb:1\nCOPY {} /x/\n", srv.url("/files/hello.txt")),
        "source can't be a URL for COPY",
    );
    // A server that is not there.
    let dead = TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    refused(&e, &ctx, &format!("FROM bb:1\nADD http://127.0.0.1:{dead}/f /x\n"), "failed to GET");
}

fn git(dir: &Path, args: &[&str]) -> String {
    let o = Command::new("git")
        .current_dir(dir)
        .args(["-c", "user.name=t", "-c", "user.email=t@example.com", "-c", "init.defaultBranch=main"])
        .args(args)
        .output()
        .unwrap();
    assert!(o.status.success(), "git {args:?}: {}", err(&o));
    out(&o).trim().to_string()
}

/// `git daemon` serving `base` on a free loopback port; killed on drop.
struct GitDaemon {
    child: std::process::Child,
    port: u16,
}

impl GitDaemon {
    fn start(base: &Path) -> GitDaemon {
        let port = TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
        let child = Command::new("git")
            .arg("daemon")
            .arg("--export-all")
            .arg("--reuseaddr")
            .arg(format!("--base-path={}", base.display()))
            .arg("--listen=127.0.0.1")
            .arg(format!("--port={port}"))
            .arg(base)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("git daemon (scripts/deps.sh test installs git)");
        let deadline = Instant::now() + Duration::from_secs(10);
        while TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(Instant::now() < deadline, "git daemon did not start");
            std::thread::sleep(Duration::from_millis(20));
        }
        GitDaemon { child, port }
    }
}

impl Drop for GitDaemon {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[test]
fn add_from_git_repositories() {
    let e = Engine::new("addgit");
    let base = e.dir.join("git");
    let repo = base.join("repo");
    std::fs::create_dir_all(&repo).unwrap();
    git(&repo, &["init", "-q"]);
    write(&repo, "README", b"readme\n");
    write(&repo, "sub/a.txt", b"v1\n");
    write(&repo, "sub/run.sh", b"#!/bin/sh\n");
    std::fs::set_permissions(repo.join("sub/run.sh"), std::os::unix::fs::PermissionsExt::from_mode(0o755)).unwrap();
    git(&repo, &["add", "."]);
    git(&repo, &["commit", "-q", "-m", "one"]);
    git(&repo, &["tag", "-a", "v1", "-m", "v1"]);
    let v1 = git(&repo, &["rev-parse", "HEAD"]);
    git(&repo, &["checkout", "-q", "-b", "dev"]);
    write(&repo, "sub/a.txt", b"dev\n");
    git(&repo, &["commit", "-q", "-am", "dev"]);
    git(&repo, &["checkout", "-q", "main"]);
    write(&repo, "sub/a.txt", b"v2\n");
    git(&repo, &["commit", "-q", "-am", "two"]);
    let d = GitDaemon::start(&base);
    let url = format!("git://127.0.0.1:{}/repo", d.port);

    let ctx = e.dir.join("ctx");
    let df = format!(
        "FROM bb:1\n\
         ADD {url}#v1 /v1\n\
         ADD {url}#dev:sub /devsub\n\
         ADD {url} /head/\n\
         ADD --keep-git-dir=true {url}#main /kept\n\
         ADD --checksum={short} {url}#v1 /pinned\n",
        short = &v1[..12]
    );
    write(&ctx, "Dockerfile", df.as_bytes());
    let o = docker_build(&e, &["-t", "git:1"], &ctx);
    assert!(o.status.success(), "{}{}\n{}", out(&o), err(&o), e.log());
    let got = sh(
        &e,
        "git:1",
        "cat /v1/README /v1/sub/a.txt; busybox stat -c '%a %u:%g' /v1/sub/run.sh; ls -a /v1; \
         ls /devsub; cat /devsub/a.txt; cat /head/sub/a.txt; ls -d /kept/.git; cat /pinned/sub/a.txt",
    );
    assert_eq!(
        got, "readme\nv1\n755 0:0\n.\n..\nREADME\nsub\na.txt\nrun.sh\ndev\nv2\n/kept/.git\nv1\n",
        "no .git without --keep-git-dir"
    );
    let id1 = image_id(&e, "git:1");

    // Nothing changed upstream: all cached, same image. A new commit on main: the steps
    // reading main run again.
    let o = docker_build(&e, &["-t", "git:2"], &ctx);
    assert!(o.status.success(), "{}{}", out(&o), err(&o));
    assert_eq!(image_id(&e, "git:2"), id1);
    assert_eq!(out(&o).matches("Using cache").count(), 5, "{}", out(&o));
    write(&repo, "sub/a.txt", b"v3\n");
    git(&repo, &["commit", "-q", "-am", "three"]);
    let o = docker_build(&e, &["-t", "git:3"], &ctx);
    assert!(o.status.success(), "{}{}", out(&o), err(&o));
    assert_eq!(out(&o).matches("Using cache").count(), 2, "{}", out(&o));
    assert_eq!(sh(&e, "git:3", "cat /head/sub/a.txt /v1/sub/a.txt"), "v3\nv1\n");

    refused(&e, &ctx, &format!("FROM bb:1\nADD --checksum=0123456789ab {url}#v1 /p\n"), "expected checksum to match");
    refused(&e, &ctx, &format!("FROM bb:1\nADD {url}#no-such-ref /p\n"), "failed to fetch");
    refused(&e, &ctx, &format!("FROM bb:1\nADD {url}#main:nope /p\n"), "subdirectory nope not found");
    refused(&e, &ctx, &format!("FROM bb:1\nCOPY {url}#v1 /p\n"), "source can't be a git ref for COPY");
    drop(d);
}
