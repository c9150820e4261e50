//! `docker builder prune` / `berth builder prune` (`POST /build/prune`) and the build cache in
//! `docker system df`: a default prune removes only dangling cache (a builder stage's step, in
//! no tagged image) and frees its layer; `until=` and `--keep-storage` keep recent or small
//! caches; bad filters are refused; `-a` removes every record and cache mount, after which a
//! build runs every step again. Tagged images run after every prune.

mod common;

use common::engine::{docker_build, err, out, Engine, BERTH};
use std::process::Command;

const DOCKERFILE: &str = r#"FROM bb:1 AS builder
RUN dd if=/dev/urandom of=/big bs=1024 count=300 2>/dev/null && echo built > /small

FROM bb:1
RUN echo one > /one
RUN --mount=type=cache,target=/c echo x > /c/f
COPY --from=builder /small /small
RUN echo two > /two
CMD ["cat", "/one", "/two", "/small"]
"#;

/// The `.json` records and the cache-mount entries on disk.
fn on_disk(e: &Engine) -> (Vec<String>, Vec<String>) {
    let ls = |d: &str| -> Vec<String> {
        let mut v: Vec<String> = std::fs::read_dir(e.dir.join("data/image").join(d))
            .map(|rd| rd.flatten().map(|x| x.file_name().to_string_lossy().into_owned()).collect())
            .unwrap_or_default();
        v.sort();
        v
    };
    (ls("build-cache"), ls("build-cache-mounts"))
}

/// `docker system df`'s Build Cache row: (total count, size column).
fn df_build_cache(e: &Engine) -> (usize, String) {
    let o = e.ok(&["system", "df"]);
    let line = o.lines().find(|l| l.starts_with("Build Cache")).unwrap_or_else(|| panic!("{o}")).to_string();
    let f: Vec<&str> = line.split_whitespace().collect();
    (f[2].parse().unwrap(), f[4].to_string())
}

fn reclaimed(o: &str) -> String {
    o.lines().find_map(|l| l.strip_prefix("Total reclaimed space: ")).unwrap_or_else(|| panic!("{o}")).to_string()
}

#[test]
fn builder_prune_dangling_until_keep_storage_and_all() {
    let e = Engine::new("bprune");
    let ctx = e.dir.join("ctx");
    std::fs::create_dir_all(&ctx).unwrap();
    std::fs::write(ctx.join("Dockerfile"), DOCKERFILE).unwrap();
    let run_app = || assert_eq!(e.ok(&["run", "--rm", "app:1"]), "one\ntwo\nbuilt\n");

    let o = docker_build(&e, &["-t", "app:1"], &ctx);
    assert!(o.status.success(), "{}{}\n{}", out(&o), err(&o), e.log());
    run_app();
    let (recs, mounts) = on_disk(&e);
    assert_eq!(recs.len(), 5, "one record per layer step: {recs:?}");
    assert_eq!(mounts.len(), 2, "a cache mount and its lock: {mounts:?}");

    // system df: 5 records and a cache mount; the builder stage's 300 kB are the cache's own.
    let (n, size) = df_build_cache(&e);
    assert_eq!(n, 6, "{size}");
    assert!(size.ends_with("kB") && size.trim_end_matches("kB").parse::<f64>().unwrap() > 300.0, "{size}");
    let v = e.ok(&["system", "df", "-v"]);
    assert!(v.contains("Build cache usage: ") && v.contains("exec.cachemount") && v.contains("regular"), "{v}");

    // A bad filter and unsupported space limits: 400s that say why.
    let o = e.docker(&["builder", "prune", "-f", "--filter", "type=regular"]);
    assert!(!o.status.success() && err(&o).contains("invalid filter 'type'"), "{}{}", out(&o), err(&o));
    let (status, body) = e.raw("POST", "/build/prune?filters=%7B%22id%22%3A%7B%22x%22%3Atrue%7D%7D", "");
    assert_eq!(status, 400, "{body}");
    assert!(body.contains("invalid filter 'id'"), "{body}");
    let (status, body) = e.raw("POST", "/build/prune?max-used-space=10", "");
    assert_eq!(status, 400, "{body}");
    assert!(body.contains("max-used-space is not supported"), "{body}");
    let (status, body) = e.raw("POST", "/build/prune?keep-storage=lots", "");
    assert_eq!(status, 400, "{body}");
    assert_eq!(on_disk(&e).0.len(), 5);

    // until=1h and a large keep-storage keep everything, even with --all.
    let o = e.ok(&["builder", "prune", "-af", "--filter", "until=1h"]);
    assert!(!o.contains("Deleted build cache objects"), "{o}");
    assert_eq!(reclaimed(&o), "0B");
    let o = e.ok(&["builder", "prune", "-af", "--keep-storage", "100000000"]);
    assert!(!o.contains("Deleted build cache objects"), "{o}");
    assert_eq!(on_disk(&e), (recs.clone(), mounts.clone()));

    // Default: only the builder stage's record (its layer is in no tagged image) goes, with
    // its layer; the cache mount was used just now and stays.
    let o = e.ok(&["builder", "prune", "-f"]);
    let ids: Vec<&str> =
        o.lines().skip_while(|l| *l != "Deleted build cache objects:").skip(1).take_while(|l| !l.is_empty()).collect();
    assert_eq!(ids.len(), 1, "{o}");
    let r = reclaimed(&o);
    assert!(r.ends_with("kB") && r.trim_end_matches("kB").parse::<f64>().unwrap() > 300.0, "{o}");
    let (left, m) = on_disk(&e);
    assert_eq!(left.len(), 4, "{left:?}");
    assert!(!left.contains(&format!("{}.json", ids[0])), "{left:?}");
    assert_eq!(m, mounts);
    run_app();
    // Nothing dangling is left.
    let o = e.ok(&["builder", "prune", "-f"]);
    assert!(!o.contains("Deleted build cache objects"), "{o}");
    run_app();

    // A rebuild runs the builder stage again, the rest from cache.
    let o = docker_build(&e, &["-t", "app:1"], &ctx);
    assert!(o.status.success(), "{}{}\n{}", out(&o), err(&o), e.log());
    assert_eq!(out(&o).matches("Using cache").count(), 4, "{}", out(&o));
    run_app();

    // berth's own CLI, --all: every record and the cache mount go; the image stays.
    let o =
        Command::new(BERTH).args(["-H", e.sock.to_str().unwrap(), "builder", "prune", "-a", "-f"]).output().unwrap();
    assert!(o.status.success(), "{}{}", out(&o), err(&o));
    let text = out(&o);
    assert!(text.starts_with("Deleted build cache objects:\n"), "{text}");
    assert_eq!(text.lines().filter(|l| l.len() == 64 || l.len() == 32).count(), 6, "{text}");
    let r = reclaimed(&text);
    assert!(r.ends_with("kB") && r.trim_end_matches("kB").parse::<f64>().unwrap() > 300.0, "{text}");
    assert_eq!(on_disk(&e), (vec![], vec![]), "the cache directories are empty");
    assert_eq!(df_build_cache(&e), (0, "0B".to_string()));
    run_app();

    // The next build runs every step again, the cache mount made anew.
    let o = docker_build(&e, &["-t", "app:1"], &ctx);
    assert!(o.status.success(), "{}{}\n{}", out(&o), err(&o), e.log());
    assert!(!out(&o).contains("Using cache"), "{}", out(&o));
    run_app();
    let (recs, mounts) = on_disk(&e);
    assert_eq!((recs.len(), mounts.len()), (5, 2));
    assert!(e.mounts_left().iter().all(|m| !m.contains("build-tmp")), "{:?}", e.mounts_left());
}

/// Image removal while a build runs: the layers the build has made but not yet registered are
/// not collected (the GC waits for the build's lease); and the build cache outlives `rmi`
/// (the GC keeps the records' layers, which only `builder prune` drops).
#[test]
fn image_gc_during_a_build_and_cache_after_rmi() {
    let e = Engine::new("gcbuild");
    let ctx = e.dir.join("ctx");
    std::fs::create_dir_all(&ctx).unwrap();
    std::fs::write(ctx.join("Dockerfile"), "FROM bb:1\nRUN echo junk > /junk\n").unwrap();
    let o = docker_build(&e, &["-t", "junk:1"], &ctx);
    assert!(o.status.success(), "{}{}", out(&o), err(&o));
    let slow = e.dir.join("slow");
    std::fs::create_dir_all(&slow).unwrap();
    std::fs::write(slow.join("Dockerfile"), "FROM bb:1\nRUN echo a > /a\nRUN sleep 3\nRUN cat /a > /b\n").unwrap();
    let build = {
        let (sock, slow) = (e.sock.clone(), slow.clone());
        std::thread::spawn(move || {
            Command::new("docker")
                .env("DOCKER_HOST", format!("unix://{}", sock.display()))
                .env("DOCKER_BUILDKIT", "0")
                .args(["build", "-t", "slow:1"])
                .arg(&slow)
                .output()
                .unwrap()
        })
    };
    // During the sleep: an image removal and a prune, each of which collects garbage.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
    // (junk:1 left one cache record; the slow build's first RUN makes the second.)
    while !std::fs::read_dir(e.dir.join("data/image/build-cache")).is_ok_and(|d| d.count() >= 2) {
        assert!(std::time::Instant::now() < deadline, "the build did not start");
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    std::thread::sleep(std::time::Duration::from_millis(300));
    e.ok(&["rmi", "junk:1"]);
    e.ok(&["image", "prune", "-f"]);
    let o = build.join().unwrap();
    assert!(o.status.success(), "{}{}\n{}", out(&o), err(&o), e.log());
    assert_eq!(e.ok(&["run", "--rm", "slow:1", "cat", "/b"]), "a\n");
    // junk:1's layer outlived rmi as build cache: the same build is a cache hit.
    let o = docker_build(&e, &["-t", "junk:2"], &ctx);
    assert!(o.status.success() && out(&o).contains("Using cache"), "{}{}", out(&o), err(&o));
    assert_eq!(e.ok(&["run", "--rm", "junk:2", "cat", "/junk"]), "junk\n");
}
