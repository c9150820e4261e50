//! `berth build --output` (`-o`) against a private daemon: the image's root filesystem into a
//! directory (`type=local`, or a bare path) and as a tar (to a file and to stdout with `-o -`),
//! the same entries each way, the layers flattened (a file the last stage removed is gone) and
//! nothing a container runtime adds; a `docker` archive that `docker load` reads back as the same
//! image, named; an `oci` archive skopeo and umoci accept, whose config digest is the image ID;
//! bad values refused before the build, failed writes leaving no file; no container or volume
//! left behind by the export.

mod common;

use common::engine::{err, out, Engine, BERTH};
use std::collections::BTreeSet;
use std::io::Write;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::process::{Command, Output, Stdio};

const DOCKERFILE: &str = "FROM bb:1 AS builder
RUN echo hi > /hi && mkdir -p /data/sub

FROM bb:1
COPY --from=builder /hi /hi
COPY --from=builder /data /data
COPY --chmod=751 tool.sh /usr/bin/tool.sh
RUN ln -s hi /hi.link && rm /bin/stty
VOLUME /vol
CMD [\"cat\", \"/hi\"]
";

fn berth(e: &Engine, args: &[&str]) -> Output {
    Command::new(BERTH).arg("-H").arg(&e.sock).args(args).stdin(Stdio::null()).output().unwrap()
}

fn build_ok(e: &Engine, args: &[&str]) -> Output {
    let o = berth(e, args);
    assert!(o.status.success(), "berth {args:?}: {}{}\n{}", out(&o), err(&o), e.log());
    o
}

/// The names in a tar (`./` prefixes and trailing `/` dropped), from tar itself.
fn tar_names(data: &[u8]) -> BTreeSet<String> {
    let mut c = Command::new("tar").arg("-tf").arg("-").stdin(Stdio::piped()).stdout(Stdio::piped()).spawn().unwrap();
    let mut stdin = c.stdin.take().unwrap();
    let data = data.to_vec();
    let w = std::thread::spawn(move || stdin.write_all(&data));
    let o = c.wait_with_output().unwrap();
    w.join().unwrap().unwrap();
    assert!(o.status.success(), "not a tar: {}", err(&o));
    out(&o)
        .lines()
        .map(|l| l.trim_start_matches("./").trim_end_matches('/').to_string())
        .filter(|l| !l.is_empty())
        .collect()
}

/// Every path under `root`, relative.
fn tree(root: &Path) -> BTreeSet<String> {
    let mut all = BTreeSet::new();
    let mut stack = vec![root.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).unwrap().flatten() {
            let p = e.path();
            all.insert(p.strip_prefix(root).unwrap().to_string_lossy().into_owned());
            if e.file_type().unwrap().is_dir() {
                stack.push(p);
            }
        }
    }
    all
}

/// Files in `dir` whose name contains `partial` (a temporary file left behind).
fn partials(dir: &Path) -> Vec<String> {
    std::fs::read_dir(dir)
        .unwrap()
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|n| n.contains("partial"))
        .collect()
}

fn no_leftovers(e: &Engine) {
    assert_eq!(e.ok(&["ps", "-aq"]), "", "the export's container is removed");
    assert_eq!(e.ok(&["volume", "ls", "-q"]), "", "and its anonymous volume");
    assert!(e.mounts_left().iter().all(|m| !m.contains("/cp-")), "{:?}", e.mounts_left());
}

#[test]
fn build_outputs() {
    let e = Engine::new("buildout");
    let ctx = e.dir.join("ctx");
    std::fs::create_dir_all(&ctx).unwrap();
    std::fs::write(ctx.join("Dockerfile"), DOCKERFILE).unwrap();
    std::fs::write(ctx.join("tool.sh"), "#!/bin/sh\necho tool\n").unwrap();
    let ctx_s = ctx.to_str().unwrap();
    let o = e.dir.join("o");
    std::fs::create_dir_all(&o).unwrap();
    let p = |n: &str| o.join(n).to_str().unwrap().to_string();

    // type=local: the flattened filesystem, nothing the runtime adds.
    let dest = p("fs");
    let r = build_ok(&e, &["build", "-q", "-t", "app:1", "-o", &format!("type=local,dest={dest}"), ctx_s]);
    let id = out(&r).trim().to_string();
    assert!(id.starts_with("sha256:"), "{id}");
    let fs = o.join("fs");
    assert_eq!(std::fs::read(fs.join("hi")).unwrap(), b"hi\n");
    let md = std::fs::symlink_metadata(fs.join("usr/bin/tool.sh")).unwrap();
    assert_eq!(md.permissions().mode() & 0o7777, 0o751);
    assert_eq!(std::fs::read_link(fs.join("hi.link")).unwrap(), Path::new("hi"));
    assert!(std::fs::symlink_metadata(fs.join("bin/sh")).unwrap().file_type().is_symlink());
    assert!(fs.join("bin/busybox").is_file() && fs.join("data/sub").is_dir());
    assert!(!fs.join("bin/stty").exists() && std::fs::symlink_metadata(fs.join("bin/stty")).is_err(), "whiteout");
    for runtime in [".dockerenv", "etc/hostname", "etc/hosts", "etc/resolv.conf"] {
        let f = fs.join(runtime);
        assert!(!f.exists() || std::fs::metadata(&f).unwrap().len() == 0, "{runtime} has content");
    }
    let names = tree(&fs);
    assert!(!names.iter().any(|n| n.contains(".wh.")), "{names:?}");
    no_leftovers(&e);

    // The bare path form is type=local; the same tree (a cached rebuild, the same image).
    let r = build_ok(&e, &["build", "-q", "-o", &p("fs2"), ctx_s]);
    assert_eq!(out(&r).trim(), id);
    assert_eq!(tree(&o.join("fs2")), names);

    // type=tar to a file, and -o - to stdout: the same entries; the build's output on stderr.
    build_ok(&e, &["build", "-o", &format!("type=tar,dest={}", p("fs.tar")), ctx_s]);
    assert_eq!(tar_names(&std::fs::read(o.join("fs.tar")).unwrap()), names);
    let r = build_ok(&e, &["build", "-o", "-", ctx_s]);
    assert_eq!(tar_names(&r.stdout), names);
    assert!(err(&r).contains("Using cache"), "{}", err(&r));
    assert!(partials(&o).is_empty(), "{:?}", partials(&o));
    no_leftovers(&e);

    // type=docker: docker load gives back the same image, with the name asked for.
    let img = p("img.tar");
    build_ok(&e, &["build", "-o", &format!("type=docker,dest={img},name=out:7"), ctx_s]);
    assert!(!e.docker(&["image", "inspect", "out:7"]).status.success(), "only the archive has the name");
    let raw = Command::new("skopeo").args(["inspect", "--raw", &format!("docker-archive:{img}")]).output().unwrap();
    assert!(raw.status.success(), "{}", err(&raw));
    let m: serde_json::Value = serde_json::from_slice(&raw.stdout).unwrap();
    assert_eq!(m["config"]["digest"], id.as_str(), "{m}");
    let l = e.ok(&["load", "-i", &img]);
    assert!(l.contains("Loaded image: out:7"), "{l}");
    assert_eq!(e.ok(&["image", "inspect", "-f", "{{.Id}}", "out:7"]).trim(), id);

    // type=oci: an OCI layout archive (named after -t), config digest = image ID.
    let oci = p("oci.tar");
    build_ok(&e, &["build", "-t", "app:1", "-o", &format!("type=oci,dest={oci}"), ctx_s]);
    let raw = Command::new("skopeo").args(["inspect", "--raw", &format!("oci-archive:{oci}")]).output().unwrap();
    assert!(raw.status.success(), "{}", err(&raw));
    let m: serde_json::Value = serde_json::from_slice(&raw.stdout).unwrap();
    assert_eq!(m["config"]["digest"], id.as_str(), "{m}");
    let cfg = Command::new("skopeo").args(["inspect", "--config", &format!("oci-archive:{oci}:1")]).output().unwrap();
    assert!(cfg.status.success(), "the ref name is the tag: {}", err(&cfg));
    let layout = o.join("layout");
    std::fs::create_dir_all(&layout).unwrap();
    let x = Command::new("tar").arg("-xf").arg(&oci).arg("-C").arg(&layout).output().unwrap();
    assert!(x.status.success());
    let ls = Command::new("umoci").args(["ls", "--layout", layout.to_str().unwrap()]).output().unwrap();
    assert!(ls.status.success() && out(&ls).lines().any(|l| l == "1"), "{}{}", out(&ls), err(&ls));
    no_leftovers(&e);

    // type=image,name=: the image tagged in the store.
    build_ok(&e, &["build", "-o", "type=image,name=kept:2", ctx_s]);
    assert_eq!(e.ok(&["image", "inspect", "-f", "{{.Id}}", "kept:2"]).trim(), id);

    // Bad values: refused before the build (no build output), one line naming the problem.
    for (v, want) in [
        ("type=nope", "\"nope\""),
        ("type=local", "dest"),
        ("type=local,dest=-", "stdout"),
        ("type=tar,compression=gzip", "compression"),
        ("dest=x,name=y", "type is required"),
    ] {
        let r = berth(&e, &["build", "-o", v, ctx_s]);
        assert!(!r.status.success(), "{v}");
        let msg = err(&r);
        assert!(msg.contains(want) && msg.trim().lines().count() == 1, "{v}: {msg}");
        assert_eq!(out(&r), "", "{v}: nothing built");
    }
    // Two outputs to stdout.
    let r = berth(&e, &["build", "-o", "-", "-o", "type=oci", ctx_s]);
    assert!(!r.status.success() && err(&r).contains("stdout"), "{}", err(&r));

    // Writes that fail: a message naming the path, no file left.
    let missing = p("nodir/x.tar");
    let r = berth(&e, &["build", "-q", "-o", &format!("type=tar,dest={missing}"), ctx_s]);
    assert!(!r.status.success() && err(&r).contains(&missing), "{}", err(&r));
    assert!(!o.join("nodir").exists());
    std::fs::write(o.join("plain"), "x").unwrap();
    let under_file = p("plain/sub");
    let r = berth(&e, &["build", "-q", "-o", &under_file, ctx_s]);
    assert!(!r.status.success() && err(&r).contains(&under_file), "{}", err(&r));
    let r = berth(&e, &["build", "-q", "-o", &format!("type=oci,dest={}", p("fs")), ctx_s]);
    assert!(!r.status.success(), "a directory as the archive's dest");
    assert!(partials(&o).is_empty(), "{:?}", partials(&o));
    no_leftovers(&e);
}
