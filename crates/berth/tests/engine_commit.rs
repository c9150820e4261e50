//! `docker commit` (and `berth commit`) against `berth daemon`: a stopped container's changes
//! (a new file, a deleted image file, a new directory) become one more layer holding exactly
//! them (not the runtime's mount points for /etc/hosts & co.), `--change`/`-m`/`-a` land in
//! the image config, a running container is paused for the commit and keeps running, an
//! unchanged container gives the same layer again, a never-started one an empty history entry;
//! bad changes, references and containers are refused leaving nothing behind; the images can
//! be removed and no mount is left.

mod common;

use common::engine::{err, out, Engine, BERTH};
use serde_json::Value;
use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

fn inspect(e: &Engine, what: &str, fmt: &str) -> String {
    e.ok(&["inspect", "-f", fmt, what]).trim().to_string()
}

fn layers(e: &Engine, img: &str) -> Vec<String> {
    serde_json::from_str(&inspect(e, img, "{{json .RootFS.Layers}}")).unwrap()
}

/// The entry names of the top layer of `img` (from `docker save`).
fn top_layer_entries(e: &Engine, img: &str) -> Vec<String> {
    let dir = e.dir.join(format!("save-{}", img.replace([':', '/'], "_")));
    std::fs::create_dir_all(&dir).unwrap();
    let tar = dir.join("img.tar");
    e.ok(&["save", "-o", tar.to_str().unwrap(), img]);
    let o = Command::new("tar").arg("-xf").arg(&tar).arg("-C").arg(&dir).output().unwrap();
    assert!(o.status.success(), "{}", err(&o));
    let manifest: Value = serde_json::from_slice(&std::fs::read(dir.join("manifest.json")).unwrap()).unwrap();
    let top = manifest[0]["Layers"].as_array().unwrap().last().unwrap().as_str().unwrap().to_string();
    let o = Command::new("tar").arg("-tf").arg(dir.join(top)).output().unwrap();
    assert!(o.status.success(), "{}", err(&o));
    let mut v: Vec<String> =
        out(&o).lines().map(|l| l.trim_start_matches("./").trim_end_matches('/').to_string()).collect();
    v.sort();
    v
}

fn image_count(e: &Engine) -> usize {
    e.ok(&["images", "-aq", "--no-trunc"]).lines().count()
}

fn ingests_left(e: &Engine) -> usize {
    std::fs::read_dir(e.dir.join("data/image/content/ingest")).map(|d| d.count()).unwrap_or(0)
}

fn berth(e: &Engine, args: &[&str]) -> std::process::Output {
    Command::new(BERTH).arg("-H").arg(&e.sock).args(args).output().unwrap()
}

#[test]
fn commit_a_stopped_container() {
    let e = Engine::new("commit");
    e.ok(&[
        "run",
        "--name",
        "c1",
        "bb:1",
        "sh",
        "-c",
        "echo hello-commit > /hello && rm /etc/group && mkdir -p /newdir/sub",
    ]);
    let id =
        e.ok(&["commit", "-c", r#"CMD ["cat","/hello"]"#, "-c", "ENV A=1", "-m", "msg", "-a", "me", "c1", "img:2"]);
    let id = id.trim();
    assert!(id.starts_with("sha256:") && id.len() == 71, "{id}");
    assert_eq!(inspect(&e, "img:2", "{{.Id}}"), id);

    // The image runs its new command, sees the file, not the deleted one, and has the ENV.
    assert_eq!(e.ok(&["run", "--rm", "img:2"]), "hello-commit\n");
    let check = "test ! -e /etc/group && test -d /newdir/sub && test -f /etc/passwd && echo A=$A";
    assert_eq!(e.ok(&["run", "--rm", "img:2", "sh", "-c", check]), "A=1\n");

    // Config, author, comment, container; one more layer and one more history entry.
    assert_eq!(inspect(&e, "img:2", "{{.Author}}|{{.Comment}}|{{json .Config.Cmd}}"), r#"me|msg|["cat","/hello"]"#);
    assert!(inspect(&e, "img:2", "{{json .Config.Env}}").contains("\"A=1\""));
    let base = layers(&e, "bb:1");
    let new = layers(&e, "img:2");
    assert_eq!(new.len(), base.len() + 1);
    assert_eq!(new[..base.len()], base[..]);
    let hist = |img: &str| e.ok(&["history", "-q", img]).lines().count();
    assert_eq!(hist("img:2"), hist("bb:1") + 1);
    let top = e.ok(&["history", "--no-trunc", "--format", "{{.CreatedBy}}|{{.Comment}}", "img:2"]);
    assert!(
        top.lines().next().unwrap().starts_with("sh -c echo hello-commit > /hello") && top.contains("|msg"),
        "{top}"
    );

    // The rw layer has the runtime's mount points (the image has none of them) ...
    let cid = inspect(&e, "c1", "{{.Id}}");
    let upper = e.dir.join("data/containers").join(&cid).join("rw/upper");
    for p in ["etc/hostname", "etc/hosts", "etc/resolv.conf", "proc", "sys", "dev"] {
        assert!(upper.join(p).symlink_metadata().is_ok(), "{p} not in {}", upper.display());
    }
    // ... but the layer holds the changes and nothing of the runtime's mount points (/etc/hosts,
    // /etc/hostname, /etc/resolv.conf, /proc, /sys, /dev the image lacks).
    assert_eq!(top_layer_entries(&e, "img:2"), ["etc", "etc/.wh.group", "hello", "newdir", "newdir/sub"]);

    // The same unchanged container again: the same layer (a deterministic tar), another image.
    let a = e.ok(&["commit", "c1"]).trim().to_string();
    let b = e.ok(&["commit", "c1"]).trim().to_string();
    assert_ne!(a, b);
    assert_eq!(layers(&e, &a), layers(&e, &b));
    assert_eq!(layers(&e, &a).last(), new.last());
    // Without changes the image keeps the container's command.
    assert_eq!(inspect(&e, &a, "{{.Author}}|{{.Comment}}"), "|");
    assert!(inspect(&e, &a, "{{json .Config.Cmd}}").contains("echo hello-commit"));

    // A never-started container: no layer, one more history entry.
    e.ok(&["create", "--name", "n1", "-e", "X=y", "bb:1", "true"]);
    e.ok(&["commit", "n1", "empty:1"]);
    assert_eq!(layers(&e, "empty:1"), base);
    assert_eq!(hist("empty:1"), hist("bb:1") + 1);
    assert_eq!(e.ok(&["run", "--rm", "empty:1", "sh", "-c", "echo $X"]), "y\n");

    // Refusals: nothing registered, no ingest left.
    let before = image_count(&e);
    let o = e.docker(&["commit", "-c", "RUN x", "c1", "bad:1"]);
    assert!(!o.status.success());
    assert!(err(&o).contains("RUN is not a valid change command"), "{}", err(&o));
    let o = e.docker(&["commit", "-c", "EXPOSE http", "c1", "bad:1"]);
    assert!(!o.status.success() && err(&o).contains("EXPOSE http"), "{}", err(&o));
    let o = e.docker(&["commit", "nosuch", "bad:1"]);
    assert!(!o.status.success() && err(&o).contains("No such container: nosuch"), "{}", err(&o));
    let (status, body) = e.raw("POST", "/commit?container=c1&repo=Bad", "");
    assert_eq!(status, 400, "{body}");
    let (status, body) = e.raw("POST", "/commit?container=c1&repo=x&tag=a%20b", "");
    assert_eq!(status, 400, "{body}");
    let (status, body) = e.raw("POST", "/commit?container=nosuch", "");
    assert_eq!(status, 404, "{body}");
    assert!(e.docker(&["image", "inspect", "bad:1"]).status.code() != Some(0));
    assert_eq!(image_count(&e), before);
    assert_eq!(ingests_left(&e), 0);

    // A body config (the API's) is merged with the container's.
    let (status, body) = e.raw("POST", "/commit?container=c1&repo=withbody&tag=1", r#"{"Env":["B=2"]}"#);
    assert_eq!(status, 201, "{body}");
    assert!(body.contains("\"Id\":\"sha256:"), "{body}");
    assert_eq!(e.ok(&["run", "--rm", "withbody:1", "sh", "-c", "echo $B; cat /hello"]), "2\nhello-commit\n");

    // Removal: the images go, containers too, and no mount is left.
    e.ok(&["rm", "c1", "n1"]);
    for img in ["img:2", "empty:1", "withbody:1", &a, &b] {
        e.ok(&["rmi", img]);
    }
    assert_eq!(image_count(&e), 1, "{}", e.ok(&["images", "-a"]));
    assert!(e.mounts_left().is_empty(), "{:?}", e.mounts_left());
}

#[test]
fn commit_a_running_container_and_berth_cli() {
    let e = Engine::new("commitrun");
    e.ok(&["run", "-d", "--name", "r1", "bb:1", "sh", "-c", "echo live > /live; exec sleep 1000"]);
    let deadline = Instant::now() + Duration::from_secs(10);
    while e.docker(&["exec", "r1", "cat", "/live"]).status.code() != Some(0) {
        assert!(Instant::now() < deadline, "the container did not write /live");
        std::thread::sleep(Duration::from_millis(50));
    }
    // Paused (the default) during the commit; running afterwards.
    e.ok(&["commit", "r1", "live:1"]);
    assert_eq!(inspect(&e, "r1", "{{.State.Status}}"), "running");
    assert_eq!(e.ok(&["run", "--rm", "live:1", "cat", "/live"]), "live\n");
    let until = (std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_secs() + 1).to_string();
    let ev =
        e.ok(&["events", "--since", "0", "--until", &until, "--filter", "container=r1", "--format", "{{.Action}}"]);
    let ev: Vec<&str> = ev.lines().collect();
    let at = ev.iter().position(|a| *a == "commit").unwrap_or_else(|| panic!("no commit event: {ev:?}"));
    assert_eq!(ev[at - 2..at], ["pause", "unpause"], "{ev:?}");
    // Without pausing.
    e.ok(&["commit", "--pause=false", "r1", "live:2"]);
    assert_eq!(inspect(&e, "r1", "{{.State.Status}}"), "running");
    // A paused container stays paused.
    e.ok(&["pause", "r1"]);
    e.ok(&["commit", "r1", "live:3"]);
    assert_eq!(inspect(&e, "r1", "{{.State.Status}}"), "paused");
    e.ok(&["unpause", "r1"]);

    // Our CLI: the same query as docker's; prints the ID.
    let o = berth(
        &e,
        &["commit", "-a", "berth", "-m", "from berth", "-c", "ENV B=2", "-c", "WORKDIR /etc", "r1", "bimg:1"],
    );
    assert!(o.status.success(), "{}", err(&o));
    let id = out(&o).trim().to_string();
    assert!(id.starts_with("sha256:"), "{id}");
    assert_eq!(inspect(&e, "bimg:1", "{{.Id}}|{{.Author}}|{{.Comment}}"), format!("{id}|berth|from berth"));
    assert_eq!(e.ok(&["run", "--rm", "bimg:1", "sh", "-c", "echo $B; pwd; cat /live"]), "2\n/etc\nlive\n");
    let o = berth(&e, &["commit", "--pause=false", "r1"]);
    assert!(o.status.success(), "{}", err(&o));
    let untagged = out(&o).trim().to_string();
    assert_eq!(inspect(&e, &untagged, "{{json .RepoTags}}"), "[]");
    let o = berth(&e, &["commit", "-c", "RUN x", "r1", "bad:1"]);
    assert!(!o.status.success() && err(&o).contains("RUN is not a valid change command"), "{}", err(&o));
    let o = berth(&e, &["commit", "nosuch"]);
    assert!(!o.status.success() && err(&o).contains("No such container"), "{}", err(&o));
    assert_eq!(inspect(&e, "r1", "{{.State.Status}}"), "running");

    e.ok(&["rm", "-f", "r1"]);
    for img in ["live:1", "live:2", "live:3", "bimg:1", &untagged] {
        e.ok(&["rmi", img]);
    }
    assert!(e.mounts_left().is_empty(), "{:?}", e.mounts_left());
    assert!(!Path::new(&e.dir.join("data/image/content/ingest")).exists() || ingests_left(&e) == 0);
}
