//! `docker cp`, `docker export` and `docker diff` against `berth daemon`, driven by the real
//! docker CLI: copies out of and into running, stopped and never-started containers, the
//! path-stat header, hostile archives that must not write outside the container's root
//! filesystem, and no temporary mounts left behind.

mod common;

use common::engine::{err, out, Engine};
use std::io::{Read, Write};
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::process::Command;

/// A raw API request with a binary body; returns (status, head, body with chunking undone).
fn request(e: &Engine, method: &str, path: &str, body: &[u8]) -> (u16, String, Vec<u8>) {
    let mut s = UnixStream::connect(&e.sock).unwrap();
    write!(
        s,
        "{method} {path} HTTP/1.1\r\nHost: x\r\nContent-Type: application/x-tar\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
        body.len()
    )
    .unwrap();
    s.write_all(body).unwrap();
    let mut raw = Vec::new();
    s.read_to_end(&mut raw).unwrap();
    let split = raw.windows(4).position(|w| w == b"\r\n\r\n").expect("a response head");
    let head = String::from_utf8_lossy(&raw[..split]).into_owned();
    let mut rest = &raw[split + 4..];
    let status = head.split(' ').nth(1).and_then(|c| c.parse().ok()).unwrap_or(0);
    if !head.to_ascii_lowercase().contains("transfer-encoding: chunked") {
        return (status, head, rest.to_vec());
    }
    let mut body = Vec::new();
    loop {
        let eol = rest.windows(2).position(|w| w == b"\r\n").expect("a chunk size line");
        let n = usize::from_str_radix(std::str::from_utf8(&rest[..eol]).unwrap().trim(), 16).unwrap();
        rest = &rest[eol + 2..];
        if n == 0 {
            break;
        }
        body.extend_from_slice(&rest[..n]);
        rest = &rest[n + 2..];
    }
    (status, head, body)
}

fn header<'a>(head: &'a str, name: &str) -> Option<&'a str> {
    head.lines().find_map(|l| {
        let (k, v) = l.split_once(':')?;
        k.trim().eq_ignore_ascii_case(name).then(|| v.trim())
    })
}

fn base64_decode(s: &str) -> Vec<u8> {
    let val = |c: u8| match c {
        b'A'..=b'Z' => c - b'A',
        b'a'..=b'z' => c - b'a' + 26,
        b'0'..=b'9' => c - b'0' + 52,
        b'+' => 62,
        b'/' => 63,
        _ => panic!("not base64: {c}"),
    };
    let mut out = Vec::new();
    let (mut acc, mut bits) = (0u32, 0);
    for c in s.bytes().filter(|&c| c != b'=') {
        acc = (acc << 6) | u32::from(val(c));
        bits += 6;
        if bits >= 8 {
            bits -= 8;
            out.push((acc >> bits) as u8);
        }
    }
    out
}

/// The decoded `X-Docker-Container-Path-Stat` of a response head.
fn path_stat(head: &str) -> serde_json::Value {
    let h = header(head, "X-Docker-Container-Path-Stat").unwrap_or_else(|| panic!("no stat header in {head}"));
    serde_json::from_slice(&base64_decode(h)).unwrap()
}

/// A ustar archive built by hand: (name, kind, link target or content). Kinds: `f` file,
/// `d` directory, `l` symlink, `h` hardlink.
fn tar_of(entries: &[(&str, char, &str)]) -> Vec<u8> {
    let mut out = Vec::new();
    for (name, kind, arg) in entries {
        let mut h = [0u8; 512];
        let put = |h: &mut [u8; 512], at: usize, len: usize, v: &[u8]| h[at..at + v.len().min(len)].copy_from_slice(v);
        put(&mut h, 0, 100, name.as_bytes());
        let data: &[u8] = if *kind == 'f' { arg.as_bytes() } else { b"" };
        let mode = if *kind == 'd' { "0000755\0" } else { "0000644\0" };
        put(&mut h, 100, 8, mode.as_bytes());
        put(&mut h, 108, 8, b"0000000\0");
        put(&mut h, 116, 8, b"0000000\0");
        put(&mut h, 124, 12, format!("{:011o}\0", data.len()).as_bytes());
        put(&mut h, 136, 12, b"14000000000\0");
        h[156] = match kind {
            'f' => b'0',
            'd' => b'5',
            'l' => b'2',
            'h' => b'1',
            _ => panic!("kind {kind}"),
        };
        if matches!(kind, 'l' | 'h') {
            put(&mut h, 157, 100, arg.as_bytes());
        }
        put(&mut h, 257, 6, b"ustar\0");
        put(&mut h, 263, 2, b"00");
        h[148..156].copy_from_slice(b"        ");
        let sum: u32 = h.iter().map(|&b| u32::from(b)).sum();
        put(&mut h, 148, 8, format!("{sum:06o}\0 ").as_bytes());
        out.extend_from_slice(&h);
        out.extend_from_slice(data);
        out.resize(out.len().div_ceil(512) * 512, 0);
    }
    out.resize(out.len() + 1024, 0);
    out
}

fn tar_names(tar: &Path) -> Vec<String> {
    let o = Command::new("tar").arg("-tf").arg(tar).output().unwrap();
    assert!(o.status.success(), "tar -tf {}: {}", tar.display(), err(&o));
    out(&o).lines().map(String::from).collect()
}

fn read(p: &Path) -> String {
    std::fs::read_to_string(p).unwrap_or_else(|e| panic!("{}: {e}", p.display()))
}

/// Temporary mounts of the cp code (`<dir>/cp-*`) still mounted.
fn cp_mounts(e: &Engine) -> Vec<String> {
    e.mounts_left().into_iter().filter(|l| l.contains("/cp-")).collect()
}

fn container_dir(e: &Engine, name: &str) -> PathBuf {
    let id = e.ok(&["inspect", "-f", "{{.Id}}", name]);
    e.dir.join("data/containers").join(id.trim())
}

#[test]
fn cp_out_of_running_stopped_and_created_containers() {
    let e = Engine::new("cpout");
    let host = e.dir.join("host");
    std::fs::create_dir_all(&host).unwrap();
    e.ok(&["run", "-d", "--name", "rc", "bb:1", "sleep", "1000"]);
    e.ok(&["exec", "rc", "sh", "-c", "mkdir -p /d/sub; echo one > /d/f; echo two > /d/sub/g; ln -s /d /lnk"]);
    let h = |p: &str| host.join(p);
    let hs = |p: &str| h(p).to_str().unwrap().to_string();

    // A file, a directory (under its own name), a directory's contents (`dir/.`).
    e.ok(&["cp", "rc:/d/f", &hs("f")]);
    assert_eq!(read(&h("f")), "one\n");
    e.ok(&["cp", "rc:/d", &hs("")]);
    assert_eq!(read(&h("d/f")), "one\n");
    assert_eq!(read(&h("d/sub/g")), "two\n");
    e.ok(&["cp", "rc:/d/.", &hs("contents")]);
    assert_eq!(read(&h("contents/f")), "one\n");
    assert_eq!(read(&h("contents/sub/g")), "two\n");
    // A symlink is copied as a link; with -L its target; through a trailing `/` the directory.
    e.ok(&["cp", "rc:/lnk", &hs("lnk")]);
    assert_eq!(std::fs::read_link(h("lnk")).unwrap(), Path::new("/d"));
    e.ok(&["cp", "-L", "rc:/lnk", &hs("followed")]);
    assert_eq!(read(&h("followed/sub/g")), "two\n");
    // The bind-mounted /etc/hostname as the container sees it.
    e.ok(&["cp", "rc:/etc/hostname", &hs("hostname")]);
    assert_eq!(read(&h("hostname")), format!("{}\n", e.ok(&["exec", "rc", "hostname"]).trim()));
    // To stdout: a tar of the directory under its base name.
    let o = e.docker(&["cp", "rc:/d", "-"]);
    assert!(o.status.success(), "{}", err(&o));
    std::fs::write(h("d.tar"), &o.stdout).unwrap();
    let names = tar_names(&h("d.tar"));
    for want in ["d/", "d/f", "d/sub/", "d/sub/g"] {
        assert!(names.iter().any(|n| n == want), "{want} not in {names:?}");
    }
    // Missing: Docker's message.
    let o = e.docker(&["cp", "rc:/nope", &hs("nope")]);
    assert!(!o.status.success());
    assert!(err(&o).contains("Could not find the file /nope in container rc"), "{}", err(&o));

    // The stat header and the tar through the raw API.
    let (code, head, body) = request(&e, "GET", "/containers/rc/archive?path=/d/f", b"");
    assert_eq!(code, 200, "{head}");
    assert!(header(&head, "Content-Type").is_some_and(|c| c == "application/x-tar"), "{head}");
    let st = path_stat(&head);
    assert_eq!((st["name"].as_str(), st["size"].as_i64(), st["mode"].as_u64()), (Some("f"), Some(4), Some(0o644)));
    assert!(st["mtime"].as_str().unwrap().ends_with('Z'), "{st}");
    assert_eq!(&body[..2], b"f\0", "the entry is named by the base name");
    let (code, head, body) = request(&e, "HEAD", "/containers/rc/archive?path=/lnk", b"");
    assert_eq!(code, 200, "{head}");
    assert!(body.is_empty());
    let st = path_stat(&head);
    assert_eq!(st["mode"].as_u64(), Some((1 << 27) | 0o777), "{st}");
    assert_eq!(st["linkTarget"], "/d");
    let (_, head, _) = request(&e, "HEAD", "/containers/rc/archive?path=/d/.", b"");
    let st = path_stat(&head);
    assert_eq!((st["name"].as_str(), st["mode"].as_u64()), (Some("."), Some((1 << 31) | 0o755)), "{st}");
    let (code, _, body) = request(&e, "GET", "/containers/rc/archive?path=/no/such", b"");
    assert_eq!(code, 404);
    let msg: serde_json::Value = serde_json::from_slice(&body).unwrap();
    assert_eq!(msg["message"], "Could not find the file /no/such in container rc");
    let (code, _, _) = request(&e, "GET", "/containers/rc/archive", b"");
    assert_eq!(code, 400);
    let (code, _, _) = request(&e, "GET", "/containers/nosuch/archive?path=/", b"");
    assert_eq!(code, 404);

    // Stopped: the root filesystem is mounted for the copy only.
    e.ok(&["kill", "rc"]);
    e.ok(&["wait", "rc"]);
    assert!(e.mounts_left().is_empty(), "{:?}", e.mounts_left());
    e.ok(&["cp", "rc:/d/sub/g", &hs("g-stopped")]);
    assert_eq!(read(&h("g-stopped")), "two\n");
    e.ok(&["cp", "rc:/d/.", &hs("stopped")]);
    assert_eq!(read(&h("stopped/sub/g")), "two\n");
    let o = e.docker(&["cp", "rc:/nope", &hs("nope")]);
    assert!(!o.status.success());
    // Never started.
    e.ok(&["create", "--name", "fresh", "bb:1", "true"]);
    e.ok(&["cp", "fresh:/etc/passwd", &hs("passwd")]);
    assert!(read(&h("passwd")).starts_with("root:x:0:0:"));
    assert!(e.mounts_left().is_empty(), "mounts left: {:?}", e.mounts_left());
    let cdir = container_dir(&e, "rc");
    let leftovers: Vec<_> = std::fs::read_dir(&cdir)
        .unwrap()
        .flatten()
        .map(|d| d.file_name().to_string_lossy().into_owned())
        .filter(|n| n.starts_with("cp-"))
        .collect();
    assert!(leftovers.is_empty(), "temporary mount points left: {leftovers:?}");
}

#[test]
fn cp_into_running_and_stopped_containers() {
    let e = Engine::new("cpin");
    let host = e.dir.join("host");
    std::fs::create_dir_all(host.join("tree/sub")).unwrap();
    std::fs::write(host.join("file.txt"), "file bytes\n").unwrap();
    std::fs::write(host.join("tree/a"), "aaa\n").unwrap();
    std::fs::write(host.join("tree/sub/b"), "bbb\n").unwrap();
    let hs = |p: &str| host.join(p).to_str().unwrap().to_string();

    e.ok(&["run", "-d", "--name", "rc", "bb:1", "sleep", "1000"]);
    e.ok(&["exec", "rc", "sh", "-c", "mkdir -p /dst /real; ln -s /real /via"]);
    // A file into a directory, and under a new name.
    e.ok(&["cp", &hs("file.txt"), "rc:/dst"]);
    assert_eq!(e.ok(&["exec", "rc", "cat", "/dst/file.txt"]), "file bytes\n");
    e.ok(&["cp", &hs("file.txt"), "rc:/dst/renamed"]);
    assert_eq!(e.ok(&["exec", "rc", "cat", "/dst/renamed"]), "file bytes\n");
    // A directory, under its name and as a new name; contents with `dir/.`.
    e.ok(&["cp", &hs("tree"), "rc:/dst"]);
    assert_eq!(e.ok(&["exec", "rc", "cat", "/dst/tree/a", "/dst/tree/sub/b"]), "aaa\nbbb\n");
    e.ok(&["cp", &hs("tree"), "rc:/copy"]);
    assert_eq!(e.ok(&["exec", "rc", "cat", "/copy/sub/b"]), "bbb\n");
    e.ok(&["cp", &hs("tree/."), "rc:/dst"]);
    assert_eq!(e.ok(&["exec", "rc", "cat", "/dst/a"]), "aaa\n");
    // Through a symlink in the container: resolved inside it.
    e.ok(&["cp", &hs("file.txt"), "rc:/via/"]);
    assert_eq!(e.ok(&["exec", "rc", "cat", "/real/file.txt"]), "file bytes\n");
    // Overwriting a file with a directory is refused (noOverwriteDirNonDir).
    e.ok(&["exec", "rc", "sh", "-c", "echo x > /clash"]);
    std::fs::create_dir_all(host.join("clash")).unwrap();
    let o = e.docker(&["cp", &hs("clash"), "rc:/"]);
    assert!(!o.status.success(), "{}", out(&o));
    assert!(err(&o).contains("cannot overwrite non-directory"), "{}", err(&o));
    // Destinations that do not exist or are not directories: Docker's codes and messages.
    let tar = tar_of(&[("x", 'f', "x")]);
    let (code, _, body) = request(&e, "PUT", "/containers/rc/archive?path=/nowhere", &tar);
    assert_eq!(code, 404, "{}", String::from_utf8_lossy(&body));
    assert!(String::from_utf8_lossy(&body).contains("Could not find the file /nowhere in container rc"));
    let (code, _, body) = request(&e, "PUT", "/containers/rc/archive?path=/dst/file.txt", &tar);
    assert_eq!(code, 400, "{}", String::from_utf8_lossy(&body));
    assert!(String::from_utf8_lossy(&body).contains("extraction point is not a directory"));
    let (code, _, _) = request(&e, "PUT", "/containers/rc/archive?path=/dst", &tar);
    assert_eq!(code, 200);
    assert_eq!(e.ok(&["exec", "rc", "cat", "/dst/x"]), "x");

    // Into a stopped container: there when it runs next.
    e.ok(&["create", "--name", "sc", "bb:1", "sh", "-c", "cat /in/file.txt /in/sub/b"]);
    e.ok(&["cp", &hs("file.txt"), "sc:/"]);
    e.ok(&["cp", &hs("tree"), "sc:/in"]);
    e.ok(&["cp", &hs("file.txt"), "sc:/in/"]);
    assert!(cp_mounts(&e).is_empty(), "{:?}", cp_mounts(&e));
    assert_eq!(e.ok(&["start", "-a", "sc"]), "file bytes\nbbb\n");
    assert_eq!(
        e.ok(&["run", "--rm", "bb:1", "sh", "-c", "ls /in 2>&1 || true"]),
        "ls: /in: No such file or directory\n"
    );
    e.ok(&["rm", "-f", "rc"]);
    assert!(e.mounts_left().is_empty(), "mounts left: {:?}", e.mounts_left());
}

#[test]
fn hostile_archives_do_not_leave_the_container() {
    let e = Engine::new("cphostile");
    e.ok(&["run", "-d", "--name", "rc", "bb:1", "sleep", "1000"]);
    let cdir = container_dir(&e, "rc");
    let outside = e.dir.join("outside");
    std::fs::create_dir_all(&outside).unwrap();
    let outside_s = outside.to_str().unwrap().to_string();
    // Links the container itself makes: absolute to a host path, relative far upwards.
    e.ok(&[
        "exec",
        "rc",
        "sh",
        "-c",
        &format!("mkdir /tmp; ln -s {outside_s} /tmp/abs; ln -s ../../../../../../.. /tmp/up"),
    ]);
    for marker in ["escape", "pwned", "viaabs", "viaup"] {
        assert!(!Path::new("/").join(marker).exists(), "/{marker} exists before the test");
    }
    let put = |tar: &[u8]| {
        let (code, _, body) = request(&e, "PUT", "/containers/rc/archive?path=/tmp", tar);
        (code, String::from_utf8_lossy(&body).into_owned())
    };

    // `..` out of the extraction directory: refused as dockerd does.
    let up = "../".repeat(12);
    let (code, body) = put(&tar_of(&[("../../escape", 'f', "bad"), (&format!("{up}tmp/escape"), 'f', "bad")]));
    assert_eq!(code, 500, "{body}");
    assert!(body.contains("is outside of"), "{body}");
    // Hardlinks to outside.
    let (code, body) = put(&tar_of(&[("hl", 'h', &format!("{up}etc/passwd"))]));
    assert_eq!(code, 500, "{body}");
    // A symlink to / then a file through it: the container's /, not the host's.
    let (code, body) = put(&tar_of(&[("root", 'l', "/"), ("root/pwned", 'f', "p")]));
    assert_eq!(code, 200, "{body}");
    assert_eq!(e.ok(&["exec", "rc", "cat", "/pwned"]), "p");
    // Through the container's own absolute link: that path inside the container, which does
    // not exist there.
    let (code, body) = put(&tar_of(&[("abs/viaabs", 'f', "a")]));
    assert_eq!(code, 500, "{body}");
    // Through its relative link climbing past the root: clamped at the container's root.
    let (code, body) = put(&tar_of(&[(&format!("up{outside_s}/viaup"), 'f', "u")]));
    assert_eq!(code, 200, "{body}");
    assert_eq!(e.ok(&["exec", "rc", "cat", &format!("{outside_s}/viaup")]), "u");
    // A relative symlink in the archive climbing out of the extraction directory: refused.
    let (code, body) = put(&tar_of(&[("climb", 'l', "../../../.."), ("climb/x", 'f', "c")]));
    assert_eq!(code, 500, "{body}");
    assert!(body.contains("invalid symlink"), "{body}");

    // Nothing written outside the container's root filesystem.
    let mut bad = Vec::new();
    for p in [
        PathBuf::from("/escape"),
        PathBuf::from("/tmp/escape"),
        PathBuf::from("/pwned"),
        PathBuf::from("/hl"),
        PathBuf::from("/viaabs"),
        PathBuf::from("/viaup"),
        outside.join("viaabs"),
        outside.join("viaup"),
        cdir.join("escape"),
        cdir.join("hl"),
        cdir.parent().unwrap().join("escape"),
        e.dir.join("escape"),
    ] {
        if std::fs::symlink_metadata(&p).is_ok() {
            bad.push(p);
        }
    }
    assert!(bad.is_empty(), "written outside the container: {bad:?}");
    assert_eq!(std::fs::read_dir(&outside).unwrap().count(), 0);
    assert!(!e.log().contains("panicked"), "{}", e.log());
}

#[test]
fn export_and_diff() {
    let e = Engine::new("cpexport");
    e.ok(&["run", "--name", "xc", "bb:1", "sh", "-c", "touch /new; rm /bin/ls; mkdir -p /a/b; echo >> /etc/passwd"]);
    let diff = e.ok(&["diff", "xc"]);
    let lines: Vec<&str> = diff.lines().collect();
    for want in ["A /new", "D /bin/ls", "C /bin", "A /a", "A /a/b", "C /etc", "C /etc/passwd"] {
        assert!(lines.contains(&want), "{want:?} not in {lines:?}");
    }
    // The runtime's mount points (Docker keeps them in its init layer) are not changes.
    for hidden in ["A /proc", "A /sys", "A /dev", "A /etc/hostname", "A /etc/resolv.conf"] {
        assert!(!lines.contains(&hidden), "{hidden:?} in {lines:?}");
    }
    assert_eq!(lines.len(), 7, "{lines:?}");
    let (code, body) = e.raw("GET", "/containers/xc/changes", "");
    assert_eq!(code, 200, "{body}");
    let v: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert!(v.as_array().unwrap().contains(&serde_json::json!({"Path": "/bin/ls", "Kind": 2})), "{v}");
    // Nothing changed: null, as dockerd.
    e.ok(&["create", "--name", "untouched", "bb:1", "true"]);
    assert_eq!(e.raw("GET", "/containers/untouched/changes", "").1.trim(), "null");

    let tar = e.dir.join("x.tar");
    e.ok(&["export", "-o", tar.to_str().unwrap(), "xc"]);
    let names = tar_names(&tar);
    for want in ["bin/busybox", "bin/sh", "new", "a/b/", "etc/passwd"] {
        assert!(names.iter().any(|n| n == want), "{want} not in {names:?}");
    }
    assert!(!names.iter().any(|n| n == "bin/ls"), "a deleted file exported: {names:?}");
    assert!(!names.iter().any(|n| n.starts_with('/') || n.starts_with("./")), "{names:?}");
    // A running container exports too.
    e.ok(&["run", "-d", "--name", "rc", "bb:1", "sleep", "1000"]);
    e.ok(&["exec", "rc", "sh", "-c", "echo live > /live"]);
    let o = e.docker(&["export", "rc"]);
    assert!(o.status.success(), "{}", err(&o));
    let live = e.dir.join("live.tar");
    std::fs::write(&live, &o.stdout).unwrap();
    assert!(tar_names(&live).iter().any(|n| n == "live"));
    e.ok(&["rm", "-f", "rc"]);
    assert!(e.mounts_left().is_empty(), "mounts left: {:?}", e.mounts_left());
}
