//! The `berth` CLI's image verbs through `berth daemon` (a daemon of the test's own): import
//! from a busybox-static rootfs tarball, images/inspect/history/tag, push to and pull from
//! Debian's docker-registry, save/load, prune, system df, version, and login (our CLI and the
//! real docker CLI against the daemon, with a token-auth registry for wrong credentials).

mod common;

use common::engine::{err, out, Engine, BERTH};
use common::registry::{Registry, TokenServer};
use serde_json::Value;
use std::io::Write;
use std::path::Path;
use std::process::{Command, Output, Stdio};

/// Our CLI against the test's daemon; Docker's config (credentials) in a directory of the test.
fn berth(e: &Engine, args: &[&str], input: Option<&[u8]>) -> Output {
    let mut c = Command::new(BERTH)
        .arg("-H")
        .arg(&e.sock)
        .args(args)
        .env("DOCKER_CONFIG", e.dir.join("berth-config"))
        .env("HOME", e.dir.join("home"))
        .stdin(if input.is_some() { Stdio::piped() } else { Stdio::null() })
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    if let Some(i) = input {
        c.stdin.take().unwrap().write_all(i).unwrap();
    }
    c.wait_with_output().unwrap()
}

fn ok(e: &Engine, args: &[&str]) -> String {
    let o = berth(e, args, None);
    assert!(o.status.success(), "berth {args:?}: {}{}\n{}", out(&o), err(&o), e.log());
    out(&o)
}

/// A failing command: non-zero, and its error is one `berth: ...` line (the last one).
fn fail(e: &Engine, args: &[&str]) -> String {
    let o = berth(e, args, None);
    assert!(!o.status.success(), "berth {args:?} succeeded: {}{}", out(&o), err(&o));
    let all = err(&o);
    let last = all.trim_end().lines().last().unwrap_or("").to_string();
    assert!(last.starts_with("berth: "), "no error line: {all:?}");
    last
}

/// Table cells: columns are separated by three or more spaces.
fn cells(line: &str) -> Vec<String> {
    line.split("   ").map(str::trim).filter(|c| !c.is_empty()).map(String::from).collect()
}

fn count_files(p: &Path) -> usize {
    std::fs::read_dir(p).map(|d| d.count()).unwrap_or(0)
}

fn config_json(dir: &Path) -> Value {
    serde_json::from_slice(&std::fs::read(dir.join("config.json")).unwrap()).unwrap()
}

#[test]
fn image_verbs_through_the_daemon() {
    let e = Engine::new("img");
    let reg = Registry::start("engimg", "");
    let tar = e.dir.join("bb.tar");
    let tar = tar.to_str().unwrap();

    // import: the rootfs tarball with a CMD and an ENV change and a message; the ID is printed.
    let id = ok(&e, &["import", "--change", r#"CMD ["sh"]"#, "-c", "ENV A=1", "-m", "from the test", tar, "test/bb:1"]);
    let id = id.trim().to_string();
    assert!(id.starts_with("sha256:") && id.len() == 71, "{id:?}");
    let short = &id[7..19];

    // images: Docker's columns; the new image's row; templates, json, filters, -q.
    let table = ok(&e, &["images"]);
    let mut lines = table.lines();
    assert_eq!(cells(lines.next().unwrap()), ["REPOSITORY", "TAG", "IMAGE ID", "CREATED", "SIZE"], "{table}");
    let row = lines.map(cells).find(|c| c[0] == "test/bb").unwrap_or_else(|| panic!("{table}"));
    assert_eq!((row[1].as_str(), row[2].as_str()), ("1", short), "{table}");
    assert!(row[3].ends_with(" ago") && row[4].ends_with("MB"), "{row:?}");
    let names = ok(&e, &["images", "--format", "{{.Repository}}:{{.Tag}}"]);
    let mut names: Vec<&str> = names.lines().collect();
    names.sort();
    assert_eq!(names, ["bb:1", "test/bb:1"]);
    assert_eq!(ok(&e, &["images", "-q", "--no-trunc", "test/bb"]).trim(), id);
    assert_eq!(
        ok(&e, &["images", "--filter", "reference=test/*", "--format", "{{.ID}} {{.Tag}}"]),
        format!("{short} 1\n")
    );
    assert_eq!(ok(&e, &["image", "ls", "--filter", "dangling=true", "-q"]), "");
    let j: Value = serde_json::from_str(ok(&e, &["images", "--format", "json", "test/bb:1"]).trim()).unwrap();
    assert_eq!(
        (j["Repository"].as_str(), j["Tag"].as_str(), j["ID"].as_str()),
        (Some("test/bb"), Some("1"), Some(short))
    );
    assert!(fail(&e, &["images", "--filter", "colour=blue"]).contains("invalid filter 'colour'"));

    // inspect shows the changes; history one row for the imported layer.
    assert_eq!(ok(&e, &["image", "inspect", "--format", "{{json .Config.Cmd}}", "test/bb:1"]), "[\"sh\"]\n");
    assert_eq!(
        ok(&e, &["image", "inspect", "-f", "{{json .Config.Env}} {{.Comment}}", "test/bb:1"]),
        "[\"A=1\"] from the test\n"
    );
    let full: Value = serde_json::from_str(&ok(&e, &["image", "inspect", "test/bb:1"])).unwrap();
    assert_eq!(full[0]["Id"], id.as_str());
    let o = berth(&e, &["image", "inspect", "nosuch:1"], None);
    assert!(!o.status.success() && err(&o).contains("No such image: nosuch:1"), "{}", err(&o));
    let hist = ok(&e, &["image", "history", "test/bb:1"]);
    let hl: Vec<&str> = hist.lines().collect();
    assert_eq!(hl.len(), 2, "{hist}");
    assert_eq!(cells(hl[0]), ["IMAGE", "CREATED", "CREATED BY", "SIZE", "COMMENT"]);
    let hr = cells(hl[1]);
    assert_eq!((hr[0].as_str(), hr[2].as_str(), hr[4].as_str()), (short, "berth import", "from the test"), "{hist}");
    assert_eq!(ok(&e, &["history", "-q", "test/bb:1"]), format!("{short}\n"));

    // system df: Docker's table with the two images.
    let df = ok(&e, &["system", "df"]);
    let dl: Vec<Vec<String>> = df.lines().map(cells).collect();
    assert_eq!(dl[0], ["TYPE", "TOTAL", "ACTIVE", "SIZE", "RECLAIMABLE"], "{df}");
    assert_eq!(
        dl.iter().skip(1).map(|r| r[0].as_str()).collect::<Vec<_>>(),
        ["Images", "Containers", "Local Volumes", "Build Cache"]
    );
    assert_eq!((dl[1][1].as_str(), dl[1][2].as_str()), ("2", "0"), "{df}");
    assert!(dl[1][4].ends_with("(100%)"), "{df}");

    // tag, then push to the registry.
    let remote = format!("{}/test/bb:1", reg.addr);
    assert_eq!(ok(&e, &["tag", "test/bb:1", &remote]), "");
    assert_eq!(ok(&e, &["images", "-q", &remote]), format!("{short}\n"));
    let o = berth(&e, &["push", &remote], None);
    assert!(o.status.success(), "push: {}", err(&o));
    assert!(err(&o).contains("1: digest: sha256:"), "{}", err(&o));
    assert!(reg.dir.join("data/docker/registry/v2/repositories/test/bb/_manifests/tags/1").exists(), "not pushed");

    // rmi both names: Untagged/Deleted, and images no longer lists them.
    let rm = ok(&e, &["rmi", "test/bb:1", &remote]);
    assert_eq!(rm, format!("Untagged: test/bb:1\nUntagged: {remote}\nDeleted: {id}\n"));
    assert_eq!(ok(&e, &["images", "--format", "{{.Repository}}:{{.Tag}}"]), "bb:1\n");
    assert!(fail(&e, &["rmi", "test/bb:1"]).contains("Error response from daemon"));

    // pull it back: the same image ID; the reference on stdout, the status on stderr.
    let o = berth(&e, &["pull", &remote], None);
    assert!(o.status.success(), "pull: {}{}", err(&o), e.log());
    assert_eq!(out(&o), format!("{remote}\n"));
    let progress = err(&o);
    assert!(progress.contains("Digest: sha256:") && progress.contains("Status: Downloaded newer image"), "{progress}");
    assert_eq!(ok(&e, &["images", "-q", "--no-trunc", &remote]).trim(), id);
    let o = berth(&e, &["pull", &remote], None);
    assert!(err(&o).contains("Status: Image is up to date"), "{}", err(&o));

    // save -o, rmi, load -i: the same ID again.
    let saved = e.dir.join("saved.tar");
    assert_eq!(ok(&e, &["save", "-o", saved.to_str().unwrap(), &remote]), "");
    let listing = Command::new("tar").arg("-tf").arg(&saved).output().unwrap();
    assert!(out(&listing).lines().any(|l| l == "manifest.json"), "{}", out(&listing));
    ok(&e, &["rmi", &remote]);
    assert_eq!(ok(&e, &["images", "-q", &remote]), "");
    assert_eq!(ok(&e, &["load", "-i", saved.to_str().unwrap()]), format!("Loaded image: {remote}\n"));
    assert_eq!(ok(&e, &["image", "inspect", "-f", "{{.Id}}", &remote]), format!("{id}\n"));
    // load from stdin too.
    let o = berth(&e, &["load"], Some(&std::fs::read(&saved).unwrap()));
    assert!(o.status.success() && out(&o) == format!("Loaded image: {remote}\n"), "{}{}", out(&o), err(&o));

    // save refuses to write a tar to a terminal (`script` gives it one).
    let cmd = format!("{BERTH} -H {} save {remote}", e.sock.display());
    let o = Command::new("script").args(["-qefc", &cmd, "/dev/null"]).stdin(Stdio::null()).output().unwrap();
    assert!(!o.status.success(), "saved to a terminal");
    assert!(out(&o).contains("cowardly refusing to save to a terminal"), "{}", out(&o));

    // Bad input: one line, non-zero, nothing changed.
    let images_before = ok(&e, &["images", "-q", "--no-trunc"]);
    let blobs = e.dir.join("data/image/content/blobs/sha256");
    let blobs_before = count_files(&blobs);
    assert!(fail(&e, &["pull", "bad::ref"]).contains("invalid reference format"));
    let junk = e.dir.join("junk.bin");
    std::fs::write(&junk, (0..20_000u32).map(|i| (i.wrapping_mul(2_654_435_761) >> 13) as u8).collect::<Vec<u8>>())
        .unwrap();
    let m = fail(&e, &["import", junk.to_str().unwrap(), "junk:1"]);
    assert!(m.contains("not a tar archive"), "{m}");
    std::fs::write(&junk, "not a tarball\n").unwrap();
    assert!(fail(&e, &["import", junk.to_str().unwrap(), "junk:1"]).contains("not a tar archive"));
    assert!(fail(&e, &["import", "--change", "RUN rm -rf /", tar, "junk:1"]).contains("RUN is not supported"));
    assert!(fail(&e, &["import", "http://example.invalid/rootfs.tar"]).contains("not supported"));
    assert!(fail(&e, &["import", "/nonexistent.tar"]).contains("/nonexistent.tar"));
    assert_eq!(ok(&e, &["images", "-q", "--no-trunc"]), images_before);
    assert_eq!(count_files(&blobs), blobs_before, "a failed import left blobs");
    assert_eq!(count_files(&e.dir.join("data/image/content/ingest")), 0, "a failed import left an ingest");

    // An image from stdin, untagged: dangling until prune.
    let dangling = berth(&e, &["import", "-"], Some(&std::fs::read(tar).unwrap()));
    assert!(dangling.status.success(), "{}", err(&dangling));
    let did = out(&dangling).trim().to_string();
    assert_eq!(ok(&e, &["images", "--filter", "dangling=true", "-q", "--no-trunc"]).trim(), did);
    let pr = ok(&e, &["image", "prune", "-f"]);
    assert!(pr.contains(&format!("deleted: {did}")) && pr.contains("Total reclaimed space:"), "{pr}");
    assert_eq!(ok(&e, &["images", "-q"]).lines().count(), 2);

    // prune -a -f: every image no container uses goes.
    let pr = ok(&e, &["image", "prune", "-a", "-f"]);
    assert!(pr.starts_with("Deleted Images:\n"), "{pr}");
    assert!(pr.contains(&format!("untagged: {remote}")) && pr.contains(&format!("deleted: {id}")), "{pr}");
    assert!(
        pr.contains("untagged: bb:1") && pr.trim_end().lines().last().unwrap().starts_with("Total reclaimed space: "),
        "{pr}"
    );
    assert_eq!(ok(&e, &["images", "-q"]), "");
    let snaps: Vec<String> = std::fs::read_dir(e.dir.join("data/image/snapshots"))
        .unwrap()
        .map(|d| d.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| n != "l")
        .collect();
    assert!(snaps.is_empty(), "snapshots left: {snaps:?}");

    // version: the client, and the server when it answers.
    let v = ok(&e, &["version"]);
    assert!(v.starts_with("Client: Berth\n") && v.contains("\nServer: Berth\n") && v.contains("API version:"), "{v}");
    assert_eq!(ok(&e, &["version", "--format", "{{.Server.ApiVersion}}"]), "1.50\n");
    let o = Command::new(BERTH).args(["-H", "/nonexistent/berth.sock", "version"]).output().unwrap();
    assert_eq!(o.status.code(), Some(1));
    assert!(out(&o).starts_with("Client: Berth\n") && !out(&o).contains("Server:"), "{}", out(&o));
    assert!(err(&o).contains("Cannot connect to the Berth daemon at unix:///nonexistent/berth.sock"), "{}", err(&o));
    // Image verbs without a daemon: the same one-line error.
    let o = Command::new(BERTH).args(["-H", "/nonexistent/berth.sock", "images"]).output().unwrap();
    assert_eq!(o.status.code(), Some(1));
    assert_eq!(err(&o).lines().count(), 1, "{}", err(&o));
    assert!(err(&o).starts_with("berth: Cannot connect to the Berth daemon"), "{}", err(&o));
}

fn docker_login(e: &Engine, addr: &str, password: &str) -> Output {
    e.docker_in(&["login", "-u", "alice", "--password-stdin", addr], Some(&format!("{password}\n")))
}

#[test]
fn login_through_the_daemon() {
    let e = Engine::new("login");
    let ours = e.dir.join("berth-config");
    let theirs = e.dir.join("docker-config");

    // A registry without auth: /v2/ answers 200, any credentials do.
    let reg = Registry::start("login", "");
    let o = berth(&e, &["login", "-u", "me", "--password-stdin", &reg.addr], Some(b"pw\n"));
    assert!(o.status.success(), "{}{}", err(&o), e.log());
    assert_eq!(out(&o), "Login Succeeded\n");
    assert_eq!(config_json(&ours)["auths"][reg.addr.as_str()]["auth"], "bWU6cHc=", "base64 of me:pw");
    let o = docker_login(&e, &reg.addr, "pw");
    assert!(o.status.success(), "docker login: {}{}", err(&o), e.log());
    assert!(out(&o).contains("Login Succeeded"), "{}", out(&o));
    assert!(config_json(&theirs)["auths"][reg.addr.as_str()]["auth"].is_string());
    // No TTY and no credentials: Docker's refusal.
    assert!(fail(&e, &["login", "-u", "me", "127.0.0.1:9"]).contains("Cannot perform an interactive login"));
    assert!(fail(&e, &["login", "--password-stdin", &reg.addr]).contains("--username"));

    // A registry with token auth: wrong credentials are the daemon's 401, nothing stored.
    let ts = TokenServer::start(&e.dir.join("token"), "alice", "s3cret");
    let treg = Registry::start("login-token", &ts.registry_config());
    let o = berth(&e, &["login", "-u", "alice", "--password-stdin", &treg.addr], Some(b"wrong\n"));
    assert_eq!(o.status.code(), Some(1));
    let m = err(&o);
    assert!(m.starts_with("berth: Error response from daemon: login attempt to ") && m.contains("401"), "{m}");
    assert!(m.contains("wrong username or password"), "{m}");
    assert!(config_json(&ours)["auths"].get(treg.addr.as_str()).is_none());
    let o = docker_login(&e, &treg.addr, "wrong");
    assert!(!o.status.success());
    assert!(err(&o).contains("Error response from daemon") && err(&o).contains("401"), "{}", err(&o));

    // Right credentials: both CLIs; then our pushes carry them (X-Registry-Auth).
    let o = docker_login(&e, &treg.addr, "s3cret");
    assert!(o.status.success(), "docker login: {}{}", err(&o), e.log());
    assert!(config_json(&theirs)["auths"][treg.addr.as_str()]["auth"].is_string());
    let o = berth(&e, &["login", "-u", "alice", "--password-stdin", &treg.addr], Some(b"s3cret\n"));
    assert!(o.status.success(), "{}", err(&o));
    assert_eq!(out(&o), "Login Succeeded\n");
    // Stored credentials are tried when none are given.
    let again = ok(&e, &["login", &treg.addr]);
    assert!(again.starts_with("Authenticating with existing credentials... [Username: alice]"), "{again}");
    let private = format!("{}/private/bb:1", treg.addr);
    ok(&e, &["tag", "bb:1", &private]);
    let o = berth(&e, &["push", &private], None);
    assert!(o.status.success(), "push with stored credentials: {}{}", err(&o), e.log());
    ok(&e, &["rmi", &private]);
    let o = berth(&e, &["pull", &private], None);
    assert!(o.status.success(), "pull with stored credentials: {}", err(&o));

    // logout is client-side: the credentials leave config.json; the pull is refused again.
    assert_eq!(ok(&e, &["logout", &treg.addr]), format!("Removing login credentials for {}\n", treg.addr));
    assert!(config_json(&ours)["auths"].get(treg.addr.as_str()).is_none());
    ok(&e, &["rmi", &private]);
    let m = fail(&e, &["pull", &private]);
    assert!(m.contains("authentication required") || m.contains("UNAUTHORIZED"), "{m}");
}
