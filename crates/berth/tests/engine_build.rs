//! `docker build` (the legacy builder protocol, `DOCKER_BUILDKIT=0`) and `berth build` against
//! the daemon: multi-stage builds with COPY, RUN, ARG/ENV and .dockerignore; the layer cache
//! (a no-op rebuild reuses every step, a changed source file reruns only what follows);
//! reproducible image IDs; bad input refused with the Dockerfile line, no image tagged and no
//! mount left.

mod common;

use common::engine::{docker_build, err, out, Engine, BERTH};
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

fn write(dir: &Path, name: &str, data: &str) {
    let p = dir.join(name);
    std::fs::create_dir_all(p.parent().unwrap()).unwrap();
    std::fs::write(p, data).unwrap();
}

const DOCKERFILE: &str = r#"# syntax=docker/dockerfile:1
ARG BASE=bb:1
FROM $BASE AS builder
ARG WHO=world
ENV GREETING="hello $WHO" \
    OTHER=${WHO:-nobody}
WORKDIR /src
COPY src/ ./
RUN cat *.txt > /out.txt && echo "$GREETING" >> /out.txt && rm /bin/stty && mkdir -p /data/sub

FROM builder AS test
RUN false

FROM bb:1
LABEL org.example.stage=final
COPY --from=builder /out.txt /srv/out.txt
COPY --chmod=600 --chown=65534:65534 conf.ini /etc/app/
EXPOSE 8080/tcp 53/udp
ENV MODE=prod
USER nobody
WORKDIR /srv
STOPSIGNAL SIGINT
HEALTHCHECK --interval=5s --retries=2 CMD ["true"]
VOLUME /srv/data
CMD ["cat", "/srv/out.txt"]
"#;

#[test]
fn dockerfiles_build_cache_and_reproduce() {
    let e = Engine::new("build");
    let ctx = e.dir.join("ctx");
    write(&ctx, "Dockerfile", DOCKERFILE);
    write(&ctx, "src/a.txt", "alpha\n");
    write(&ctx, "src/b.txt", "beta\n");
    write(&ctx, "src/secret.key", "do not send\n");
    write(&ctx, "conf.ini", "[app]\n");
    write(&ctx, ".dockerignore", "src/*.key\n");

    let o = docker_build(&e, &["-t", "app:1", "--build-arg", "WHO=berth", "--label", "built.by=test"], &ctx);
    assert!(o.status.success(), "{}{}", out(&o), err(&o));
    let log = out(&o);
    assert!(log.contains("Step 1/21 : FROM $BASE AS builder") || log.contains("Step 1/"), "{log}");
    assert!(!log.contains("RUN false"), "the test stage is not needed for the target: {log}");
    assert!(log.contains("Successfully tagged app:1"), "{log}");
    // The result runs, with what each stage made.
    assert_eq!(e.ok(&["run", "--rm", "app:1"]), "alpha\nbeta\nhello berth\n");
    let o = e.ok(&[
        "run",
        "--rm",
        "--entrypoint",
        "sh",
        "app:1",
        "-c",
        "id -u; pwd; busybox stat -c '%a %u %g' /etc/app/conf.ini; echo $MODE",
    ]);
    assert_eq!(o.lines().next(), Some("65534"), "{o}");
    assert_eq!(o, "65534\n/srv\n600 65534 65534\nprod\n");
    let cfg = e.ok(&[
        "inspect",
        "-f",
        "{{json .Config.ExposedPorts}} {{.Config.User}} {{.Config.WorkingDir}} {{.Config.StopSignal}} {{json .Config.Volumes}} {{json .Config.Healthcheck.Test}} {{index .Config.Labels \"org.example.stage\"}} {{index .Config.Labels \"built.by\"}} {{json .Config.Cmd}}",
        "app:1",
    ]);
    assert_eq!(
        cfg.trim(),
        r#"{"53/udp":{},"8080/tcp":{}} nobody /srv SIGINT {"/srv/data":{}} ["CMD","true"] final test ["cat","/srv/out.txt"]"#
    );
    // The builder stage's RUN deleted a file: a whiteout in its layer (seen through --target).
    let o = docker_build(&e, &["-t", "app:builder", "--target", "builder", "--build-arg", "WHO=berth"], &ctx);
    assert!(o.status.success(), "{}", err(&o));
    let o = e.ok(&["run", "--rm", "app:builder", "sh", "-c", "ls /bin/stty 2>&1; ls /src; echo $OTHER"]);
    assert!(
        o.contains("No such file") && o.contains("a.txt") && !o.contains("secret.key") && o.contains("berth"),
        "{o}"
    );

    // A no-op rebuild: every step from the cache, the same image.
    let id1 = e.ok(&["inspect", "-f", "{{.Id}}", "app:1"]);
    let o = docker_build(&e, &["-t", "app:1", "--build-arg", "WHO=berth", "--label", "built.by=test"], &ctx);
    assert!(o.status.success(), "{}", err(&o));
    assert!(!out(&o).contains("Running in"), "nothing runs again: {}", out(&o));
    assert_eq!(out(&o).matches("Using cache").count(), 5, "{}", out(&o));
    assert_eq!(e.ok(&["inspect", "-f", "{{.Id}}", "app:1"]), id1);
    // One source changed: the COPY and everything after it run again.
    write(&ctx, "src/b.txt", "BETA\n");
    let o = docker_build(&e, &["-t", "app:1", "--build-arg", "WHO=berth", "--label", "built.by=test"], &ctx);
    assert!(o.status.success(), "{}", err(&o));
    assert_eq!(out(&o).matches("Running in").count(), 1, "{}", out(&o));
    assert_eq!(e.ok(&["run", "--rm", "app:1"]), "alpha\nBETA\nhello berth\n");
    let id2 = e.ok(&["inspect", "-f", "{{.Id}}", "app:1"]);
    assert_ne!(id1, id2);
    // Reproducible: without the cache, the same inputs give the same image ID.
    let o = docker_build(
        &e,
        &["-t", "app:again", "--no-cache", "--build-arg", "WHO=berth", "--label", "built.by=test"],
        &ctx,
    );
    assert!(o.status.success(), "{}", err(&o));
    assert!(out(&o).contains("Running in") && !out(&o).contains("Using cache"), "{}", out(&o));
    assert_eq!(e.ok(&["inspect", "-f", "{{.Id}}", "app:again"]), id2, "a --no-cache rebuild gives the same ID");
    // SOURCE_DATE_EPOCH sets the image's time.
    let o = docker_build(
        &e,
        &["-t", "app:epoch", "--build-arg", "SOURCE_DATE_EPOCH=1700000000", "--build-arg", "WHO=berth"],
        &ctx,
    );
    assert!(o.status.success(), "{}", err(&o));
    assert_eq!(e.ok(&["inspect", "-f", "{{.Created}}", "app:epoch"]).trim(), "2023-11-14T22:13:20Z");

    // A Dockerfile from outside the context: the docker CLI adds it to the tar, which then ends
    // without padding or end blocks (as Go's tar reader allows).
    let outside = e.dir.join("outside.Dockerfile");
    std::fs::write(&outside, "FROM bb:1\nCOPY conf.ini /conf.ini\nCMD [\"cat\", \"/conf.ini\"]\n").unwrap();
    let o = docker_build(&e, &["-f", outside.to_str().unwrap(), "-t", "outside:1"], &ctx);
    assert!(o.status.success(), "{}{}", out(&o), err(&o));
    assert_eq!(e.ok(&["run", "--rm", "outside:1"]), "[app]\n");

    // Our CLI: a Dockerfile on stdin (no context), -q and --iidfile.
    let iid = e.dir.join("iid");
    let mut child = Command::new(BERTH)
        .args(["-H", e.sock.to_str().unwrap(), "build", "-q", "-t", "tiny:1", "--iidfile", iid.to_str().unwrap(), "-"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    use std::io::Write;
    child.stdin.take().unwrap().write_all(b"FROM bb:1\nRUN echo made > /made\nCMD [\"cat\", \"/made\"]\n").unwrap();
    let o = child.wait_with_output().unwrap();
    assert!(o.status.success(), "{}", err(&o));
    let id = out(&o).trim().to_string();
    assert!(id.starts_with("sha256:") && std::fs::read_to_string(&iid).unwrap() == id, "{id}");
    assert_eq!(e.ok(&["run", "--rm", "tiny:1"]), "made\n");

    // Bad input: a clear error with the line, nothing tagged, nothing mounted.
    let bad = [
        ("FROM bb:1\nFRUM x\n", "unknown instruction: FRUM"),
        ("FROM bb:1\nRUN echo visible-output; exit 3\n", "returned a non-zero code: 3"),
        ("FROM bb:1\nCOPY nothere /x\n", "file not found in build context"),
        ("FROM bb:1\nCOPY ../outside /x\n", "outside the build context"),
        ("FROM bb:1\nRUN --mount=type=ssh true\n", "type=ssh is not supported"),
        ("FROM bb:1\nRUN --mount=type=bind,source=nothere,target=/x true\n", "not found in the build context"),
        ("FROM bb:1\nRUN --mount=type=secret,id=nope,required true\n", "secret nope: not provided"),
        ("FROM bb:1\nRUN --network=host true\n", "network.host entitlement"),
        ("FROM bb:1 AS a\nFROM a AS b\nCOPY --from=c /x /y\nFROM b AS c\nCOPY --from=b /x /y\n", "circular dependency"),
    ];
    for (df, says) in bad {
        write(&ctx, "Dockerfile", df);
        let o = docker_build(&e, &["-t", "broken:1"], &ctx);
        assert!(!o.status.success(), "{df}");
        let msg = format!("{}{}", out(&o), err(&o));
        assert!(msg.contains(says), "{df}: {msg}");
        if says.contains("non-zero") {
            assert!(msg.contains("visible-output") && msg.contains("Dockerfile:2"), "{msg}");
        }
        assert_eq!(e.ok(&["images", "-q", "broken"]), "", "{df}");
    }
    assert!(e.mounts_left().is_empty(), "{:?}", e.mounts_left());
    assert!(!e.dir.join("run/build").exists() || std::fs::read_dir(e.dir.join("run/build")).unwrap().next().is_none());
}

const MOUNTS_DOCKERFILE: &str = r#"FROM bb:1 AS tools
RUN mkdir -p /opt/tool && echo tool-v1 > /opt/tool/version

FROM bb:1
ARG WHO=berth
WORKDIR /w
RUN --mount=type=bind,source=data,target=/mnt/data cat /mnt/data/in.txt > /from-bind.txt
RUN --mount=type=bind,source=data,target=/mnt/data,rw echo scratch > /mnt/data/new.txt && cat /mnt/data/new.txt > /rw.txt
RUN --mount=type=bind,from=tools,source=/opt/tool,target=/t cat /t/version > /from-stage.txt
RUN --mount=type=cache,target=/var/cache/app,id=app n=$(cat /var/cache/app/n 2>/dev/null || echo 0); echo $((n+1)) > /var/cache/app/n; cp /var/cache/app/n /cache-count
RUN --mount=type=tmpfs,target=rel-tmp,size=1m echo x > /w/rel-tmp/f && grep " /w/rel-tmp tmpfs" /proc/mounts | grep -c size=1024k > /tmpfs.txt
RUN --mount=type=secret,id=tok,required wc -c < /run/secrets/tok > /secret-len && busybox stat -c %a /run/secrets/tok > /secret-mode
RUN --mount=type=secret,id=tok,env=TOK test "$TOK" = "s3cr"3t && echo env-ok > /secret-env
RUN <<EOF
echo one > /hd1
echo two >> /hd1
EOF
RUN cat <<EOF > /hd2 && cat <<-EOT >> /hd2
hello $WHO
EOF
	tabbed
	EOT
RUN <<EOF
#!/bin/sh
echo "shebang $0" > /hd3
EOF
"#;

/// `RUN --mount` of every kind, heredocs in RUN, build secrets (our CLI), `--network host`:
/// what each mount gave is read back from the image, and no mount point, secret or scratch
/// write is left in a layer.
#[test]
fn run_mounts_heredocs_secrets_and_host_network() {
    let e = Engine::new("buildmnt");
    let ctx = e.dir.join("ctx");
    write(&ctx, "Dockerfile", MOUNTS_DOCKERFILE);
    write(&ctx, "data/in.txt", "from the context\n");
    let berth_build = |args: &[&str]| {
        Command::new(BERTH)
            .args(["-H", e.sock.to_str().unwrap(), "build"])
            .args(args)
            .arg(&ctx)
            .env("TOKV", "s3cr3t")
            .output()
            .unwrap()
    };
    let o = berth_build(&["-t", "mnt:1", "--secret", "id=tok,env=TOKV"]);
    assert!(o.status.success(), "{}{}\n{}", out(&o), err(&o), e.log());
    let cat = |img: &str, f: &str| e.ok(&["run", "--rm", img, "cat", f]);
    assert_eq!(cat("mnt:1", "/from-bind.txt"), "from the context\n");
    assert_eq!(cat("mnt:1", "/rw.txt"), "scratch\n");
    assert_eq!(cat("mnt:1", "/from-stage.txt"), "tool-v1\n");
    assert_eq!(cat("mnt:1", "/cache-count"), "1\n");
    assert_eq!(cat("mnt:1", "/tmpfs.txt"), "1\n");
    assert_eq!(cat("mnt:1", "/secret-len"), "6\n");
    assert_eq!(cat("mnt:1", "/secret-mode"), "400\n");
    assert_eq!(cat("mnt:1", "/secret-env"), "env-ok\n");
    assert_eq!(cat("mnt:1", "/hd1"), "one\ntwo\n");
    assert_eq!(cat("mnt:1", "/hd2"), "hello berth\ntabbed\n");
    assert_eq!(cat("mnt:1", "/hd3"), "shebang /dev/pipes/EOF\n");
    // Mount points made for the step are gone; /w (the WORKDIR) stays, empty.
    let ls = e.ok(&["run", "--rm", "mnt:1", "sh", "-c", "ls -a /w; ls -d /mnt /t /run /var 2>&1; true"]);
    assert!(!ls.contains("rel-tmp"), "{ls}");
    for gone in ["/mnt:", "/t:", "/run:", "/var:"] {
        assert!(ls.contains(&format!("{gone} No such file")), "{gone}: {ls}");
    }
    // The secret's value is nowhere in the store (snapshots, blobs, cache records).
    let g = Command::new("grep").args(["-rl", "s3cr3t"]).arg(e.dir.join("data")).output().unwrap();
    assert_eq!(out(&g), "", "the secret leaked into the store");

    // The cache mount outlives the build: a --no-cache rebuild counts on.
    let o = berth_build(&["-t", "mnt:2", "--no-cache", "--secret", "id=tok,env=TOKV"]);
    assert!(o.status.success(), "{}{}", out(&o), err(&o));
    assert_eq!(cat("mnt:2", "/cache-count"), "2\n");
    // Unchanged: all from the cache. A changed bind source reruns its step.
    let o = berth_build(&["-t", "mnt:3", "--secret", "id=tok,env=TOKV"]);
    assert!(o.status.success() && !out(&o).contains("Running in"), "all cached: {}", out(&o));
    write(&ctx, "data/in.txt", "changed\n");
    let o = berth_build(&["-t", "mnt:3", "--secret", "id=tok,env=TOKV"]);
    assert!(o.status.success(), "{}{}", out(&o), err(&o));
    assert_eq!(cat("mnt:3", "/from-bind.txt"), "changed\n");

    // --network host: RUN sees the host's interfaces (this daemon's bridge); the default
    // network does not.
    write(&ctx, "Dockerfile", "FROM bb:1\nRUN --network=host cat /proc/net/dev > /netdev\n");
    let o = berth_build(&["-t", "hostnet:1", "--network", "host"]);
    assert!(o.status.success(), "{}{}", out(&o), err(&o));
    assert!(cat("hostnet:1", "/netdev").contains(&e.bridge), "the host's interfaces");
    write(&ctx, "Dockerfile", "FROM bb:1\nRUN cat /proc/net/dev > /netdev\n");
    let o = berth_build(&["-t", "bridged:1"]);
    assert!(o.status.success(), "{}{}", out(&o), err(&o));
    assert!(!cat("bridged:1", "/netdev").contains(&e.bridge));
    // Bad --secret values are refused before anything is sent.
    for (bad, says) in [
        ("src=/x", "id= is required"),
        ("id=a,env=NOPE_UNSET", "NOPE_UNSET is not set"),
        ("id=a,src=/nonexistent", "reading /nonexistent"),
    ] {
        let o = berth_build(&["--secret", bad]);
        assert!(!o.status.success() && err(&o).contains(says), "{bad}: {}", err(&o));
    }
    assert!(e.mounts_left().is_empty(), "{:?}", e.mounts_left());
    assert!(!e.dir.join("run/build").exists() || std::fs::read_dir(e.dir.join("run/build")).unwrap().next().is_none());
}

/// `--cache-from`: an image built and pushed by one daemon answers the steps of the same
/// build on another daemon that has no cache of its own (its layers pulled, never rebuilt),
/// giving the same image ID; a changed source reruns from that step on.
#[test]
fn cache_from_a_pushed_image() {
    let reg = common::registry::Registry::start("cachefrom", "");
    let (e1, e2) = (Engine::new("cachefrom1"), Engine::new("cachefrom2"));
    let base = format!("{}/bb:1", reg.addr);
    let app = format!("{}/app:1", reg.addr);
    e1.ok(&["tag", "bb:1", &base]);
    e1.ok(&["push", &base]);
    let ctx = e1.dir.join("ctx");
    write(
        &ctx,
        "Dockerfile",
        &format!(
            "FROM {base}\nRUN echo one > /one\nCOPY a.txt /a.txt\nRUN cat /a.txt /one > /both\nCMD [\"cat\", \"/both\"]\n"
        ),
    );
    write(&ctx, "a.txt", "alpha\n");
    let o = docker_build(&e1, &["-t", &app], &ctx);
    assert!(o.status.success(), "{}{}", out(&o), err(&o));
    let id1 = e1.ok(&["image", "inspect", "-f", "{{.Id}}", &app]);
    e1.ok(&["push", &app]);

    // Without --cache-from, the second daemon would run both RUN steps; with it, none.
    let o = docker_build(&e2, &["-t", "app:2", "--cache-from", &app], &ctx);
    let log = out(&o);
    assert!(o.status.success(), "{log}{}", err(&o));
    assert!(!log.contains("Running in"), "{log}");
    assert_eq!(log.matches("Using cache (from").count(), 3, "{log}");
    assert_eq!(e2.ok(&["image", "inspect", "-f", "{{.Id}}", "app:2"]), id1);
    assert_eq!(e2.ok(&["run", "--rm", "app:2"]), "alpha\none\n");

    // A changed source: the first RUN still comes from the cache, the COPY and the RUN after
    // it run (our CLI this time).
    write(&ctx, "a.txt", "beta\n");
    let o = Command::new(BERTH)
        .args(["-H", e2.sock.to_str().unwrap(), "build", "-t", "app:3", "--cache-from", &app])
        .arg(&ctx)
        .output()
        .unwrap();
    let log = out(&o);
    assert!(o.status.success(), "{log}{}", err(&o));
    assert_eq!(log.matches("Using cache").count(), 1, "the first RUN, from the local cache now: {log}");
    assert_eq!(log.matches("Running in").count(), 1, "{log}");
    assert_eq!(e2.ok(&["run", "--rm", "app:3"]), "beta\none\n");
    // An image that cannot be had is a warning, not a failure.
    let o = docker_build(&e2, &["-t", "app:4", "--cache-from", "127.0.0.1:1/nothere:1"], &ctx);
    assert!(o.status.success() && out(&o).contains("WARNING: --cache-from 127.0.0.1:1/nothere:1"), "{}", out(&o));
}

/// `COPY --exclude` (patterns relative to each source) and `COPY --parents` (paths kept from
/// the context root, or from a `/./` pivot), read back as the file lists BuildKit gives.
#[test]
fn copy_exclude_and_parents() {
    let e = Engine::new("buildcopyx");
    let ctx = e.dir.join("ctx");
    write(
        &ctx,
        "Dockerfile",
        "FROM bb:1\n\
         COPY --exclude=*.log --exclude=sub/skip src/ /ex/\n\
         COPY --exclude=*.log src/x.log src/keep.txt /ex-files/\n\
         COPY --parents a/b/one.txt a/c/two.txt /par/\n\
         COPY --parents ./a/./b/one.txt /piv/\n\
         COPY --parents a/b /pd/\n\
         ADD --exclude=sub src /add-ex/\n",
    );
    for f in ["src/keep.txt", "src/x.log", "src/sub/skip/f", "src/sub/keep2.txt", "a/b/one.txt", "a/c/two.txt"] {
        write(&ctx, f, f);
    }
    let o = docker_build(&e, &["-t", "cx:1"], &ctx);
    assert!(o.status.success(), "{}{}", out(&o), err(&o));
    let files = e.ok(&[
        "run",
        "--rm",
        "cx:1",
        "busybox",
        "find",
        "/ex",
        "/ex-files",
        "/par",
        "/piv",
        "/pd",
        "/add-ex",
        "-type",
        "f",
    ]);
    let mut got: Vec<&str> = files.lines().collect();
    got.sort();
    assert_eq!(
        got,
        [
            "/add-ex/keep.txt",
            "/add-ex/x.log",
            "/ex-files/keep.txt",
            "/ex/keep.txt",
            "/ex/sub/keep2.txt",
            "/par/a/b/one.txt",
            "/par/a/c/two.txt",
            "/pd/a/b/one.txt",
            "/piv/b/one.txt"
        ]
    );
    assert_eq!(e.ok(&["run", "--rm", "cx:1", "cat", "/piv/b/one.txt"]), "a/b/one.txt");
}

/// `docker-compose build` and `up --build` (docker-compose 1.29 through docker-py's build
/// call): build args, a target (the failing stage it does not need is never built), labels;
/// an edited source is rebuilt by `up --build` and the new container runs it.
#[test]
fn compose_builds() {
    let e = Engine::new("composebuild");
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../tests/compat/compose-build");
    let dir = e.dir.join("compose-build");
    std::fs::create_dir_all(dir.join("app")).unwrap();
    for f in ["docker-compose.yml", "app/Dockerfile", "app/message.txt"] {
        std::fs::copy(src.join(f), dir.join(f)).unwrap();
    }
    let compose = |args: &[&str]| {
        let o = common::engine::compose(&e, &dir, args);
        format!("{}{}", out(&o), err(&o))
    };
    let log = compose(&["build"]);
    assert!(!log.contains("RUN false"), "the unused stage is not built: {log}");
    assert_eq!(
        e.ok(&["image", "inspect", "-f", "{{index .Config.Labels \"built.with\"}}", "bproj-app:1"]),
        "compose\n"
    );
    let logs_of = |want: &str| {
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            let logs = compose(&["logs", "--no-color"]);
            if logs.contains(want) {
                return logs;
            }
            assert!(Instant::now() < deadline, "{want}: {logs}");
            std::thread::sleep(Duration::from_millis(100));
        }
    };
    compose(&["up", "-d"]);
    let logs = logs_of("v1");
    assert!(logs.contains("hello-from-compose"), "{logs}");
    std::fs::write(dir.join("app/message.txt"), "v2\n").unwrap();
    compose(&["up", "-d", "--build"]);
    logs_of("v2");
    compose(&["down"]);
    assert_eq!(e.ok(&["ps", "-aq"]), "");
    assert!(e.mounts_left().is_empty(), "{:?}", e.mounts_left());
}
