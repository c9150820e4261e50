//! Image commands against real peers: Debian's docker-registry (distribution 2.8), images pushed
//! there by skopeo from an OCI layout built from busybox-static (tests/fixtures/mkimage.py), and
//! umoci's unpacking of the same image as the reference tree.

mod common;

use berth_image::ImageStore;
use common::registry::{make_layout, Registry, TokenServer};
use serde_json::Value;
use std::collections::BTreeMap;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

const BERTH: &str = env!("CARGO_BIN_EXE_berth");

struct Env {
    dir: PathBuf,
}

impl Env {
    fn new(name: &str) -> Env {
        let dir = std::env::temp_dir().join(format!("berth-img-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        Env { dir }
    }

    fn data_root(&self) -> PathBuf {
        self.dir.join("data")
    }

    fn berth(&self, args: &[&str]) -> Output {
        Command::new(BERTH)
            .arg("--data-root")
            .arg(self.data_root())
            .args(args)
            .env("DOCKER_CONFIG", self.dir.join("docker-config"))
            .stdin(Stdio::null())
            .output()
            .unwrap()
    }

    fn ok(&self, args: &[&str]) -> String {
        let o = self.berth(args);
        assert!(o.status.success(), "berth {args:?}: {}", String::from_utf8_lossy(&o.stderr));
        String::from_utf8_lossy(&o.stdout).into_owned()
    }

    fn fail(&self, args: &[&str]) -> String {
        let o = self.berth(args);
        assert!(!o.status.success(), "berth {args:?} succeeded: {}", String::from_utf8_lossy(&o.stdout));
        // Progress lines may come first; the error is the one last line.
        let all = String::from_utf8_lossy(&o.stderr).into_owned();
        let err = all.trim_end().lines().last().unwrap_or("").to_string();
        assert!(err.starts_with("berth: "), "no error line: {all}");
        err
    }

    fn store(&self) -> ImageStore {
        ImageStore::open(self.data_root().join("image")).unwrap()
    }
}

impl Drop for Env {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

fn images_json(env: &Env) -> Vec<Value> {
    env.ok(&["images", "--format", "json"]).lines().map(|l| serde_json::from_str(l).unwrap()).collect()
}

fn count_files(p: &Path) -> usize {
    std::fs::read_dir(p).map(|d| d.count()).unwrap_or(0)
}

#[test]
fn pull_by_tag_digest_and_platform_then_remove() {
    let env = Env::new("pull");
    let reg = Registry::start("pull", "");
    let layout = env.dir.join("layout");
    let d = make_layout(&layout, "t1");
    reg.push_layout(&layout, "t1", "test/bb:t1");
    let name = format!("{}/test/bb", reg.addr);

    // By tag: the host platform (amd64) out of the index.
    let out = env.ok(&["pull", &format!("{name}:t1")]);
    assert_eq!(out, format!("{name}:t1\n"));
    let imgs = images_json(&env);
    assert_eq!(imgs.len(), 1, "{imgs:?}");
    assert_eq!(imgs[0]["Repository"], name.as_str());
    assert_eq!(imgs[0]["Tag"], "t1");
    assert_eq!(imgs[0]["Digest"], d["index"]);
    let inspect: Value = serde_json::from_str(&env.ok(&["image", "inspect", &format!("{name}:t1")])).unwrap();
    assert_eq!(inspect[0]["Architecture"], "amd64");
    assert_eq!(inspect[0]["Config"]["Cmd"][0], "sh");
    assert_eq!(inspect[0]["RootFS"]["Layers"].as_array().unwrap().len(), 2);
    assert_eq!(inspect[0]["RepoDigests"][0], format!("{name}@{}", d["index"].as_str().unwrap()));

    // Again: nothing downloaded.
    let o = env.berth(&["pull", &format!("{name}:t1")]);
    assert!(String::from_utf8_lossy(&o.stderr).contains("Image is up to date"), "{o:?}");

    // By digest of the arm64 manifest, and by platform: the same image (same config).
    let arm = env.ok(&["pull", &format!("{name}@{}", d["arm64"].as_str().unwrap())]);
    assert!(arm.contains("@sha256:"), "{arm}");
    env.ok(&["pull", "--platform", "linux/arm64", &format!("{name}:t1")]);
    let inspect: Value = serde_json::from_str(&env.ok(&["image", "inspect", &format!("{name}:t1")])).unwrap();
    assert_eq!(inspect[0]["Architecture"], "arm64");
    assert_eq!(inspect[0]["Variant"], "v8");
    // Both configs share the layers: one snapshot per layer.
    assert_eq!(count_files(&env.data_root().join("image/snapshots")), 2);

    // Errors: one line, non-zero, nothing new in the store.
    let blobs_before = count_files(&env.data_root().join("image/content/blobs/sha256"));
    let err = env.fail(&["pull", "--platform", "linux/s390x", &format!("{name}:t1")]);
    assert!(err.contains("no matching manifest for linux/s390x") && err.contains("linux/arm64/v8"), "{err}");
    let err = env.fail(&["pull", &format!("{name}:nope")]);
    assert!(err.contains("manifest unknown"), "{err}");
    let err = env.fail(&["pull", "Not A Reference"]);
    assert!(err.contains("invalid reference format"), "{err}");
    let err = env.fail(&["pull", "--platform", "linux//", &format!("{name}:t1")]);
    assert!(err.contains("invalid platform"), "{err}");
    assert_eq!(count_files(&env.data_root().join("image/content/blobs/sha256")), blobs_before);

    // tag, rmi and GC: removing every image leaves no blob and no snapshot.
    env.ok(&["tag", &format!("{name}:t1"), "mine:v1"]);
    let imgs = images_json(&env);
    assert!(imgs.iter().any(|i| i["Repository"] == "mine" && i["Tag"] == "v1"), "{imgs:?}");
    let out = env.ok(&["rmi", "mine:v1"]);
    assert_eq!(out, "Untagged: mine:v1\n");
    let ids: Vec<String> = env.ok(&["images", "-q"]).lines().map(str::to_string).collect();
    assert_eq!(ids.len(), 2, "{ids:?}");
    for id in &ids {
        let out = env.ok(&["rmi", "-f", id]);
        assert!(out.contains("Deleted: sha256:"), "{out}");
    }
    assert!(env.ok(&["images", "-q"]).is_empty());
    assert_eq!(count_files(&env.data_root().join("image/content/blobs/sha256")), 0);
    assert_eq!(count_files(&env.data_root().join("image/snapshots")), 0);
    let err = env.fail(&["rmi", "mine:v1"]);
    assert!(err.contains("No such image"), "{err}");
}

/// path -> (kind, mode, uid, gid, content or link target)
fn tree(root: &Path) -> BTreeMap<String, (char, u32, u32, u32, Vec<u8>)> {
    let mut out = BTreeMap::new();
    let mut stack = vec![PathBuf::new()];
    while let Some(rel) = stack.pop() {
        for e in std::fs::read_dir(root.join(&rel)).unwrap() {
            let e = e.unwrap();
            let r = rel.join(e.file_name());
            let m = std::fs::symlink_metadata(e.path()).unwrap();
            let ft = m.file_type();
            let (kind, data) = if ft.is_symlink() {
                ('l', std::fs::read_link(e.path()).unwrap().into_os_string().into_encoded_bytes())
            } else if ft.is_dir() {
                stack.push(r.clone());
                ('d', vec![])
            } else {
                ('f', std::fs::read(e.path()).unwrap())
            };
            out.insert(r.display().to_string(), (kind, m.mode() & 0o7777, m.uid(), m.gid(), data));
        }
    }
    out
}

/// The reference tree: `skopeo copy SRC oci:<dir>/layout:t1`, then `umoci unpack`; returns the
/// bundle's rootfs.
fn skopeo_umoci(src: &str, dir: &Path) -> PathBuf {
    let layout = dir.join("layout-theirs");
    let o = Command::new("skopeo")
        .args(["copy", "--src-tls-verify=false"])
        .arg(src)
        .arg(format!("oci:{}:t1", layout.display()))
        .output()
        .expect("skopeo (scripts/deps.sh test)");
    assert!(o.status.success(), "skopeo: {}", String::from_utf8_lossy(&o.stderr));
    let bundle = dir.join("bundle");
    let o = Command::new("umoci")
        .args(["unpack", "--image"])
        .arg(format!("{}:t1", layout.display()))
        .arg(&bundle)
        .output()
        .expect("umoci (scripts/deps.sh test)");
    assert!(o.status.success(), "umoci: {}", String::from_utf8_lossy(&o.stderr));
    bundle.join("rootfs")
}

#[test]
fn unpacked_tree_equals_umoci() {
    let env = Env::new("umoci");
    let reg = Registry::start("umoci", "");
    let layout = env.dir.join("layout");
    make_layout(&layout, "t1");
    reg.push_layout(&layout, "t1", "test/bb:t1");
    let name = format!("{}/test/bb:t1", reg.addr);
    env.ok(&["pull", &name]);

    // The reference: skopeo copies the image back out of the registry, umoci unpacks it.
    let reference_root = skopeo_umoci(&format!("docker://{name}"), &env.dir);

    // Ours: the overlay of the image's snapshots.
    let store = env.store();
    let rec = store.resolve(&name).unwrap();
    let mnt = env.dir.join("mnt");
    store.mount(&rec, &env.dir.join("rw"), &mnt).unwrap();
    let ours = tree(&mnt);
    berth_image::imagestore::unmount(&mnt).unwrap();
    let reference = tree(&reference_root);
    assert_eq!(ours.len(), reference.len());
    for (path, theirs) in &reference {
        assert_eq!(ours.get(path), Some(theirs), "{path} differs");
    }

    // The same image with zstd layers (skopeo recompresses into a local layout, then pushes it
    // as is) unpacks to the same tree.
    let zlayout = env.dir.join("zlayout");
    let o = Command::new("skopeo")
        .args(["copy", "--dest-compress", "--dest-compress-format", "zstd"])
        .arg(format!("oci:{}:t1", layout.display()))
        .arg(format!("oci:{}:z", zlayout.display()))
        .output()
        .unwrap();
    assert!(o.status.success(), "skopeo zstd: {}", String::from_utf8_lossy(&o.stderr));
    let o = Command::new("skopeo")
        .args(["copy", "--dest-tls-verify=false", "--preserve-digests"])
        .arg(format!("oci:{}:z", zlayout.display()))
        .arg(format!("docker://{}/test/bb:zstd", reg.addr))
        .output()
        .unwrap();
    assert!(o.status.success(), "skopeo push zstd: {}", String::from_utf8_lossy(&o.stderr));
    let zname = format!("{}/test/bb:zstd", reg.addr);
    env.ok(&["pull", &zname]);
    let zrec = store.resolve(&zname).unwrap();
    assert!(zrec.layers.iter().all(|l| l.media_type.ends_with("+zstd")), "{:?}", zrec.layers);
    assert_eq!(zrec.diff_ids, rec.diff_ids, "zstd and gzip layers must have the same DiffIDs");
    store.mount(&zrec, &env.dir.join("rw-z"), &mnt).unwrap();
    let zstd_tree = tree(&mnt);
    berth_image::imagestore::unmount(&mnt).unwrap();
    assert_eq!(zstd_tree, ours, "zstd image tree differs");
    // What the layers say: whiteout, opaque directory, hardlink, setuid, owners, absolute link.
    assert!(!ours.contains_key("data/gone"));
    assert_eq!(ours["opq/c"].4, b"c\n");
    assert!(!ours.contains_key("opq/a"));
    assert_eq!(ours["bin/suid"].1, 0o4755);
    assert_eq!((ours["home/user/notes"].2, ours["home/user/notes"].3), (1000, 1000));
    assert_eq!(ours["usr/bin"].4, b"/bin");
    assert_eq!(ours["etc/motd"].4, b"layer two\n");
    // Nothing mounted is left.
    let mi = std::fs::read_to_string("/proc/self/mountinfo").unwrap();
    assert!(!mi.contains(mnt.to_str().unwrap()));
}

#[test]
fn corrupted_blob_is_rejected_and_nothing_is_kept() {
    let env = Env::new("corrupt");
    let reg = Registry::start("corrupt", "");
    let layout = env.dir.join("layout");
    make_layout(&layout, "t1");
    reg.push_layout(&layout, "t1", "test/bb:t1");
    // Flip a byte in the registry's copy of the big (busybox) layer: same size, wrong digest.
    let index: Value = serde_json::from_slice(&std::fs::read(layout.join("index.json")).unwrap()).unwrap();
    let idx_digest = index["manifests"][0]["digest"].as_str().unwrap().to_string();
    let blob = |d: &str| layout.join("blobs/sha256").join(d.trim_start_matches("sha256:"));
    let idx: Value = serde_json::from_slice(&std::fs::read(blob(&idx_digest)).unwrap()).unwrap();
    let m: Value =
        serde_json::from_slice(&std::fs::read(blob(idx["manifests"][0]["digest"].as_str().unwrap())).unwrap()).unwrap();
    let layer = m["layers"][0]["digest"].as_str().unwrap().to_string();
    let f = reg.blob_file(&layer);
    let mut data = std::fs::read(&f).unwrap();
    let mid = data.len() / 2;
    data[mid] ^= 0xff;
    std::fs::write(&f, &data).unwrap();

    let err = env.fail(&["pull", &format!("{}/test/bb:t1", reg.addr)]);
    assert!(err.contains(&layer[7..19]) || err.contains(&layer), "{err}");
    assert!(env.ok(&["images", "-q"]).is_empty());
    let blobs = env.data_root().join("image/content/blobs/sha256");
    assert!(!blobs.join(&layer[7..]).exists(), "a corrupt blob became visible");
    let snaps: Vec<String> = std::fs::read_dir(env.data_root().join("image/snapshots"))
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    assert!(snaps.iter().all(|s| !s.starts_with("tmp-")), "unpack leftovers: {snaps:?}");
}

#[test]
fn push_then_skopeo_reads_it_back() {
    let env = Env::new("push");
    let reg = Registry::start("push", "");
    let layout = env.dir.join("layout");
    make_layout(&layout, "t1");
    reg.push_layout(&layout, "t1", "test/bb:t1");
    let src = format!("{}/test/bb:t1", reg.addr);
    env.ok(&["pull", &src]);

    // Same registry, another repository: the layers are mounted, not uploaded.
    let dst = format!("{}/other/copy:v2", reg.addr);
    env.ok(&["tag", &src, &dst]);
    let o = env.berth(&["push", &dst]);
    let log = String::from_utf8_lossy(&o.stderr).into_owned();
    assert!(o.status.success(), "{log}");
    assert_eq!(log.matches("Mounted from test/bb").count(), 2, "{log}");
    assert!(log.contains("v2: digest: sha256:"), "{log}");

    // Pushed again: the registry has everything (HEAD), nothing is sent.
    let log = String::from_utf8_lossy(&env.berth(&["push", &dst]).stderr).into_owned();
    assert_eq!(log.matches("Layer already exists").count(), 2, "{log}");
    assert!(!log.contains("Pushed"), "{log}");

    // A registry that has nothing: everything is uploaded; skopeo reads the image back intact.
    let reg2 = Registry::start("push2", "");
    let dst2 = format!("{}/fresh/img:v3", reg2.addr);
    env.ok(&["tag", &src, &dst2]);
    let log = String::from_utf8_lossy(&env.berth(&["push", &dst2]).stderr).into_owned();
    assert_eq!(log.matches("Pushed").count(), 3, "two layers and the config: {log}");
    let o = Command::new("skopeo")
        .args(["inspect", "--tls-verify=false"])
        .arg(format!("docker://{dst2}"))
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let info: Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(info["Architecture"], "amd64");
    assert_eq!(info["Layers"].as_array().unwrap().len(), 2);
    let back = env.dir.join("back");
    let o = Command::new("skopeo")
        .args(["copy", "--src-tls-verify=false"])
        .arg(format!("docker://{dst2}"))
        .arg(format!("oci:{}:v3", back.display()))
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    // Every blob skopeo fetched (it verifies digests) is one we pushed from the original layout.
    for e in std::fs::read_dir(back.join("blobs/sha256")).unwrap() {
        let name = e.unwrap().file_name();
        if std::fs::read(back.join("blobs/sha256").join(&name)).unwrap().starts_with(b"{") {
            continue; // manifests and configs are compared above
        }
        assert!(layout.join("blobs/sha256").join(&name).exists(), "unexpected layer {name:?}");
    }
    // Pushing an image that does not exist locally is one clear error.
    let err = env.fail(&["push", &format!("{}/nothing/here:v1", reg2.addr)]);
    assert!(err.contains("does not exist locally"), "{err}");
}

/// A helper server process (a fake registry), killed on drop.
struct ServerProcess {
    child: std::process::Child,
}

impl Drop for ServerProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[test]
fn token_auth_login_pull_push_logout() {
    let env = Env::new("token");
    let ts = TokenServer::start(&env.dir, "alice", "s3cret");
    let reg = Registry::start("token", &ts.registry_config());
    let layout = env.dir.join("layout");
    make_layout(&layout, "t1");
    let o = Command::new("skopeo")
        .args(["copy", "--all", "--dest-tls-verify=false", "--dest-creds", "alice:s3cret"])
        .arg(format!("oci:{}:t1", layout.display()))
        .arg(format!("docker://{}/private/bb:t1", reg.addr))
        .output()
        .unwrap();
    assert!(o.status.success(), "skopeo through token auth: {}", String::from_utf8_lossy(&o.stderr));
    let image = format!("{}/private/bb:t1", reg.addr);

    // Anonymous: the token carries no access and the registry refuses.
    let err = env.fail(&["pull", &image]);
    assert!(
        err.contains("registry") && (err.contains("authentication required") || err.contains("UNAUTHORIZED")),
        "{err}"
    );

    // Wrong password: login fails and stores nothing.
    let login = |pw: &str| {
        let mut c = Command::new(BERTH);
        c.arg("--data-root").arg(env.data_root());
        c.args(["login", "-u", "alice", "--password-stdin", &reg.addr]);
        c.env("DOCKER_CONFIG", env.dir.join("docker-config"));
        c.stdin(Stdio::piped()).stdout(Stdio::piped()).stderr(Stdio::piped());
        let mut ch = c.spawn().unwrap();
        use std::io::Write;
        ch.stdin.take().unwrap().write_all(format!("{pw}\n").as_bytes()).unwrap();
        ch.wait_with_output().unwrap()
    };
    let o = login("wrong");
    assert!(!o.status.success());
    assert!(String::from_utf8_lossy(&o.stderr).contains("wrong username or password"), "{o:?}");
    assert!(!env.dir.join("docker-config/config.json").exists());

    let o = login("s3cret");
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    assert_eq!(String::from_utf8_lossy(&o.stdout), "Login Succeeded\n");
    let cfg: Value =
        serde_json::from_slice(&std::fs::read(env.dir.join("docker-config/config.json")).unwrap()).unwrap();
    assert!(cfg["auths"][reg.addr.as_str()]["auth"].is_string(), "{cfg}");

    // With the stored credentials: pull, then push to another repository (push scope).
    env.ok(&["pull", &image]);
    let dst = format!("{}/private/copy:v1", reg.addr);
    env.ok(&["tag", &image, &dst]);
    env.ok(&["push", &dst]);
    let o = Command::new("skopeo")
        .args(["inspect", "--tls-verify=false", "--creds", "alice:s3cret"])
        .arg(format!("docker://{dst}"))
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));

    // Logout removes the credentials; pulling fails again.
    assert!(env.ok(&["logout", &reg.addr]).contains("Removing login credentials"));
    env.ok(&["rmi", "-f", &image]);
    env.fail(&["pull", &image]);
}

#[test]
fn killed_pull_resumes_and_leaves_a_consistent_store() {
    let env = Env::new("kill");
    let reg = Registry::start("kill", "");
    let layout = env.dir.join("layout");
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../tests/fixtures/mkbig.py");
    let o = Command::new("python3").arg(script).arg(&layout).arg("96").output().unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    reg.push_layout(&layout, "big", "test/big:v1");
    let image = format!("{}/test/big:v1", reg.addr);

    let mut child = Command::new(BERTH)
        .arg("--data-root")
        .arg(env.data_root())
        .args(["pull", "-q", &image])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    // Kill it once part of the layer is on disk.
    let ingest = env.data_root().join("image/content/ingest");
    let partial = |min: u64| {
        std::fs::read_dir(&ingest)
            .ok()
            .into_iter()
            .flatten()
            .flatten()
            .any(|e| std::fs::metadata(e.path().join("data")).is_ok_and(|m| m.len() >= min))
    };
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    while !partial(4 << 20) {
        assert!(child.try_wait().unwrap().is_none(), "the pull finished before it could be interrupted");
        assert!(std::time::Instant::now() < deadline, "no download progress");
        std::thread::sleep(std::time::Duration::from_millis(1));
    }
    child.kill().unwrap(); // SIGKILL
    child.wait().unwrap();
    assert!(env.ok(&["images", "-q"]).is_empty(), "a half-pulled image is listed");

    // Pull again: it resumes the interrupted download and completes.
    let o = env.berth(&["pull", &image]);
    let log = String::from_utf8_lossy(&o.stderr).into_owned();
    assert!(o.status.success(), "{log}");
    assert!(log.contains("resumed at byte"), "{log}");
    assert_eq!(env.ok(&["images", "-q"]).lines().count(), 1);
    // Consistent: no ingest left, and the dead process's unpack directory goes with prune.
    assert_eq!(count_files(&ingest), 0);
    env.ok(&["image", "prune", "-f"]);
    let snaps: Vec<String> = std::fs::read_dir(env.data_root().join("image/snapshots"))
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    assert_eq!(snaps.len(), 1, "{snaps:?}");
    assert!(!snaps[0].starts_with("tmp-"));
    // The unpacked layer is complete: 12 chunks of 8 MiB.
    let store = env.store();
    let rec = store.resolve(&image).unwrap();
    let fs = store.snapshot_fs(&rec.chain_ids[0]);
    assert_eq!(count_files(&fs), 12);
    assert_eq!(std::fs::metadata(fs.join("chunk011")).unwrap().len(), 8 << 20);

    // The ~96 MB layer goes to an empty registry in 16 MiB chunks (PATCH with Content-Range);
    // skopeo copies it back out, which verifies the digest.
    let reg2 = Registry::start("kill2", "");
    let dst = format!("{}/copy/big:v1", reg2.addr);
    env.ok(&["tag", &image, &dst]);
    let log = String::from_utf8_lossy(&env.berth(&["push", &dst]).stderr).into_owned();
    assert_eq!(log.matches("Pushed").count(), 2, "{log}");
    let back = env.dir.join("back");
    let o = Command::new("skopeo")
        .args(["copy", "--src-tls-verify=false"])
        .arg(format!("docker://{dst}"))
        .arg(format!("oci:{}:v1", back.display()))
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    assert!(back.join("blobs/sha256").join(rec.layers[0].digest.hex()).exists());
}

/// An archive member for [`craft_tar`]: name, type ('f' file, 's' symlink, 'l' hardlink), data.
type Member<'a> = (&'a str, char, &'a [u8]);

/// Build a tar at `out` from (name, type, data) members with python's tarfile (types: f, l, s).
fn craft_tar(out: &Path, members: &[Member]) {
    let spec: Vec<Value> =
        members.iter().map(|(n, t, d)| serde_json::json!([n, t.to_string(), String::from_utf8_lossy(d)])).collect();
    let py = r#"
import io, json, sys, tarfile
with tarfile.open(sys.argv[1], "w") as t:
    for name, typ, data in json.loads(sys.argv[2]):
        ti = tarfile.TarInfo(name)
        if typ == "f":
            b = data.encode()
            ti.size = len(b)
            t.addfile(ti, io.BytesIO(b))
        else:
            ti.type = tarfile.SYMTYPE if typ == "s" else tarfile.LNKTYPE
            ti.linkname = data
            t.addfile(ti)
"#;
    let o = Command::new("python3").args(["-c", py]).arg(out).arg(Value::Array(spec).to_string()).output().unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
}

#[test]
fn load_oci_layout_and_refuse_hostile_archives() {
    let env = Env::new("load");
    // An OCI layout as a tar (what `skopeo copy ... oci-archive:` writes).
    let layout = env.dir.join("layout");
    let d = make_layout(&layout, "t1");
    let tarball = env.dir.join("oci.tar");
    let o = Command::new("tar").arg("-C").arg(&layout).arg("-cf").arg(&tarball).arg(".").output().unwrap();
    assert!(o.status.success());
    let out = env.ok(&["load", "-i", tarball.to_str().unwrap()]);
    assert!(out.starts_with("Loaded image ID: sha256:"), "{out}");
    let id = out.trim().rsplit(' ').next().unwrap().to_string();
    let inspect: Value = serde_json::from_str(&env.ok(&["image", "inspect", &id])).unwrap();
    assert_eq!(inspect[0]["Architecture"], "amd64");
    let _ = d;

    let canary = env.dir.join("canary");
    std::fs::create_dir_all(&canary).unwrap();
    let cases: Vec<(&str, Vec<Member>, &str)> = vec![
        ("dotdot", vec![("../canary/x", 'f', b"boom")], "escapes the archive"),
        ("absolute", vec![("/tmp/x", 'f', b"boom")], "escapes the archive"),
        ("symlink", vec![("manifest.json", 's', b"/etc/shadow")], "links are not allowed"),
        ("hardlink", vec![("layer.tar", 'l', b"/etc/shadow")], "links are not allowed"),
        (
            "wrong-blob",
            vec![("blobs/sha256/0000000000000000000000000000000000000000000000000000000000000000", 'f', b"x")],
            "digest",
        ),
        (
            "missing-layer",
            vec![("c.json", 'f', b"{}"), ("manifest.json", 'f', br#"[{"Config":"c.json","Layers":["l/layer.tar"]}]"#)],
            "lacks",
        ),
        ("not-an-image", vec![("hello.txt", 'f', b"hi")], "not an image archive"),
    ];
    for (name, members, want) in cases {
        let t = env.dir.join(format!("{name}.tar"));
        craft_tar(&t, &members);
        let err = env.fail(&["load", "-i", t.to_str().unwrap()]);
        assert!(err.contains(want), "{name}: {err}");
    }
    // A truncated archive, and garbage.
    let full = std::fs::read(&tarball).unwrap();
    let cut = env.dir.join("cut.tar");
    std::fs::write(&cut, &full[..full.len() / 3]).unwrap();
    env.fail(&["load", "-i", cut.to_str().unwrap()]);
    assert_eq!(count_files(&canary), 0, "something was written outside the store");
    assert_eq!(count_files(&env.data_root().join("image/content/ingest")), 0, "partial ingests left");
    assert_eq!(env.ok(&["images", "-q"]).lines().count(), 1);
}

#[test]
fn oversized_and_schema1_manifests_are_refused() {
    // A fake registry: /v2/big serves a 5 MiB manifest (no Content-Length, so the cap is enforced
    // while reading), /v2/old a schema 1 manifest.
    let env = Env::new("fake");
    let py = r#"
import sys
from http.server import BaseHTTPRequestHandler, HTTPServer
class H(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.0"
    def log_message(self, *a): pass
    def do_GET(self):
        if self.path == "/v2/":
            self.send_response(200); self.end_headers(); return
        if self.path.startswith("/v2/big/"):
            self.send_response(200)
            self.send_header("Content-Type", "application/vnd.oci.image.manifest.v1+json")
            self.end_headers()
            self.wfile.write(b'{"schemaVersion":2,"pad":"' + b"x" * (5 << 20) + b'"}')
            return
        if self.path.startswith("/v2/old/"):
            body = b'{"schemaVersion":1,"name":"old","tag":"latest","fsLayers":[]}'
            self.send_response(200)
            self.send_header("Content-Type", "application/vnd.docker.distribution.manifest.v1+prettyjws")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)
            return
        self.send_response(404); self.end_headers()
s = HTTPServer(("127.0.0.1", 0), H)
open(sys.argv[1] + ".tmp", "w").write(str(s.server_address[1]))
import os; os.rename(sys.argv[1] + ".tmp", sys.argv[1])
s.serve_forever()
"#;
    let port_file = env.dir.join("port");
    let child = Command::new("python3").args(["-c", py]).arg(&port_file).stdout(Stdio::null()).spawn().unwrap();
    let _guard = ServerProcess { child };
    let mut port = String::new();
    for _ in 0..500 {
        if let Ok(p) = std::fs::read_to_string(&port_file) {
            port = p;
            break;
        }
        std::thread::sleep(std::time::Duration::from_millis(10));
    }
    let err = env.fail(&["pull", &format!("127.0.0.1:{}/big:latest", port.trim())]);
    assert!(err.contains("4194304-byte limit"), "{err}");
    let err = env.fail(&["pull", &format!("127.0.0.1:{}/old:latest", port.trim())]);
    assert!(err.contains("schema 1"), "{err}");
    assert!(env.ok(&["images", "-q"]).is_empty());
}

#[test]
fn container_changes_become_a_layer_with_whiteouts() {
    let env = Env::new("diff");
    let reg = Registry::start("diff", "");
    let layout = env.dir.join("layout");
    make_layout(&layout, "t1");
    reg.push_layout(&layout, "t1", "test/bb:t1");
    let name = format!("{}/test/bb:t1", reg.addr);
    env.ok(&["pull", &name]);
    let store = env.store();
    let rec = store.resolve(&name).unwrap();

    // A "container": change the mounted image through overlayfs.
    let (rw, mnt) = (env.dir.join("rw"), env.dir.join("mnt"));
    store.mount(&rec, &rw, &mnt).unwrap();
    std::fs::write(mnt.join("new.txt"), "new\n").unwrap();
    std::fs::write(mnt.join("etc/motd"), "changed\n").unwrap();
    std::fs::remove_file(mnt.join("data/keep")).unwrap();
    std::fs::remove_dir_all(mnt.join("opq")).unwrap();
    std::fs::create_dir(mnt.join("opq")).unwrap();
    std::fs::write(mnt.join("opq/z"), "z\n").unwrap();
    std::fs::write(mnt.join("h1"), "linked\n").unwrap();
    std::fs::hard_link(mnt.join("h1"), mnt.join("h2")).unwrap();
    std::os::unix::fs::symlink("/etc/motd", mnt.join("sl")).unwrap();
    let expected = tree(&mnt);
    berth_image::imagestore::unmount(&mnt).unwrap();

    let mut layer = Vec::new();
    let stats = berth_image::diff::write_layer(&rw.join("upper"), &mut layer, Some(1_700_000_000)).unwrap();
    assert_eq!(stats.diff_id, berth_image::Digest::of(&layer));
    let mut again = Vec::new();
    berth_image::diff::write_layer(&rw.join("upper"), &mut again, Some(1_700_000_000)).unwrap();
    assert_eq!(layer, again, "the same changes must give the same bytes");
    let t = env.dir.join("layer.tar");
    std::fs::write(&t, &layer).unwrap();
    let o = Command::new("tar").arg("-tvf").arg(&t).output().unwrap();
    let listing = String::from_utf8_lossy(&o.stdout);
    for want in ["data/.wh.keep", "opq/.wh..wh..opq", "h2 link to h1", "sl -> /etc/motd", "new.txt"] {
        assert!(listing.contains(want), "{want} missing:\n{listing}");
    }

    // Applied on top of the image, the layer reproduces the container's tree.
    let (rw2, mnt2, base) = (env.dir.join("rw2"), env.dir.join("mnt2"), env.dir.join("base"));
    store.mount(&rec, &rw2, &mnt2).unwrap();
    let o = Command::new("cp").arg("-a").arg(format!("{}/.", mnt2.display())).arg(&base).output().unwrap();
    berth_image::imagestore::unmount(&mnt2).unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    berth_image::apply_layer(&base, layer.as_slice(), berth_image::ApplyMode::Flatten).unwrap();
    let got = tree(&base);
    assert_eq!(got.len(), expected.len());
    for (p, want) in &expected {
        assert_eq!(got.get(p), Some(want), "{p} differs");
    }
    assert!(!got.contains_key("data/keep") && !got.contains_key("opq/c"));
}

#[test]
fn save_writes_an_oci_layout_too_and_loads_back() {
    let env = Env::new("save");
    let reg = Registry::start("save", "");
    let layout = env.dir.join("layout");
    make_layout(&layout, "t1");
    reg.push_layout(&layout, "t1", "test/bb:t1");
    let name = format!("{}/test/bb:t1", reg.addr);
    env.ok(&["pull", &name]);
    let id = env.ok(&["images", "-q", "--no-trunc"]).trim().to_string();
    let saved = env.dir.join("saved.tar");
    env.ok(&["save", "-o", saved.to_str().unwrap(), &name]);

    // skopeo reads it as an OCI archive (verifying every digest), umoci unpacks the copy.
    let reference_root = skopeo_umoci(&format!("oci-archive:{}:t1", saved.display()), &env.dir);
    let store = env.store();
    let rec = store.resolve(&name).unwrap();
    let mnt = env.dir.join("mnt");
    store.mount(&rec, &env.dir.join("rw"), &mnt).unwrap();
    let ours = tree(&mnt);
    berth_image::imagestore::unmount(&mnt).unwrap();
    assert_eq!(tree(&reference_root), ours);

    // The same tar loads back into an empty store as the same image, with its name.
    let other = Env::new("save-load");
    let out = other.ok(&["load", "-i", saved.to_str().unwrap()]);
    assert!(out.contains(&format!("Loaded image: {name}")), "{out}");
    assert_eq!(other.ok(&["images", "-q", "--no-trunc"]).trim(), id);
}

#[test]
fn an_image_of_150_layers_mounts() {
    // overlayfs takes its lower dirs in one page of options: 150 full snapshot paths would not
    // fit; the store's short links do.
    let env = Env::new("deep");
    let layout = env.dir.join("layout");
    let py = r#"
import hashlib, io, json, os, sys, tarfile
out, n = sys.argv[1], int(sys.argv[2])
os.makedirs(out + "/blobs/sha256", exist_ok=True)
def blob(b):
    d = hashlib.sha256(b).hexdigest()
    open(out + "/blobs/sha256/" + d, "wb").write(b)
    return "sha256:" + d, len(b)
layers, diffs = [], []
for i in range(n):
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.PAX_FORMAT) as t:
        for name, data in ((f"l/{i}", b"%d" % i), ("top", b"%d" % i)):
            ti = tarfile.TarInfo(name); ti.size = len(data); ti.mtime = 1
            t.addfile(ti, io.BytesIO(data))
    d, size = blob(buf.getvalue())
    layers.append({"mediaType": "application/vnd.oci.image.layer.v1.tar", "digest": d, "size": size})
    diffs.append(d)
cfg = {"architecture": "amd64", "os": "linux", "config": {}, "rootfs": {"type": "layers", "diff_ids": diffs}}
cd, cs = blob(json.dumps(cfg).encode())
m = {"schemaVersion": 2, "mediaType": "application/vnd.oci.image.manifest.v1+json",
     "config": {"mediaType": "application/vnd.oci.image.config.v1+json", "digest": cd, "size": cs}, "layers": layers}
md, ms = blob(json.dumps(m).encode())
idx = {"schemaVersion": 2, "manifests": [{"mediaType": m["mediaType"], "digest": md, "size": ms,
       "annotations": {"org.opencontainers.image.ref.name": "deep"}}]}
open(out + "/index.json", "w").write(json.dumps(idx))
open(out + "/oci-layout", "w").write('{"imageLayoutVersion":"1.0.0"}')
"#;
    let o = Command::new("python3").arg("-c").arg(py).arg(&layout).arg("150").output().unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let tarball = env.dir.join("deep.tar");
    let o = Command::new("tar").arg("-C").arg(&layout).arg("-cf").arg(&tarball).arg(".").output().unwrap();
    assert!(o.status.success());
    let out = env.ok(&["load", "-i", tarball.to_str().unwrap()]);
    let id = out.trim().rsplit(' ').next().unwrap().to_string();
    let store = env.store();
    let rec = store.resolve(&id).unwrap();
    assert_eq!(rec.chain_ids.len(), 150);
    let mnt = env.dir.join("mnt");
    store.mount(&rec, &env.dir.join("rw"), &mnt).unwrap();
    let top = std::fs::read_to_string(mnt.join("top"));
    let n = count_files(&mnt.join("l"));
    berth_image::imagestore::unmount(&mnt).unwrap();
    assert_eq!(top.unwrap(), "149", "the top layer must win");
    assert_eq!(n, 150);
    // An image a container holds survives `system prune -a`; once released, it goes, and
    // leaves no snapshot and no dangling short link.
    store.hold("container-1", &rec.id).unwrap();
    env.ok(&["system", "prune", "-a", "-f"]);
    assert_eq!(env.ok(&["images", "-q"]).lines().count(), 1, "an image in use was pruned");
    store.release("container-1").unwrap();
    let out = env.ok(&["system", "prune", "-a", "-f"]);
    assert!(out.contains("deleted: sha256:"), "{out}");
    assert_eq!(env.ok(&["images", "-q"]).lines().count(), 0);
    let snaps = env.data_root().join("image/snapshots");
    assert_eq!(count_files(&snaps.join("l")), 0, "short links left");
    assert_eq!(count_files(&snaps), 1, "only l/ may remain");
}

#[test]
fn foreign_layers_come_from_their_urls_and_are_not_pushed() {
    let env = Env::new("foreign");
    let reg = Registry::start(
        "foreign",
        "validation:\n  manifests:\n    urls:\n      allow:\n        - '^http://127\\.0\\.0\\.1:'\n",
    );
    let web = env.dir.join("web");
    std::fs::create_dir_all(&web).unwrap();
    let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    // Layer 1 goes to the registry; layer 2 is non-distributable (as Windows base layers are),
    // served only from its URL. distribution accepts layer URLs only when allowed in its config.
    let py = r#"
import gzip, hashlib, io, json, sys, tarfile, urllib.request
reg, web, port = sys.argv[1], sys.argv[2], sys.argv[3]
def layer(name, data):
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as t:
        ti = tarfile.TarInfo(name); ti.size = len(data); ti.mtime = 1
        t.addfile(ti, io.BytesIO(data))
    raw = buf.getvalue()
    return gzip.compress(raw, mtime=0), "sha256:" + hashlib.sha256(raw).hexdigest()
def put(repo, data):
    d = "sha256:" + hashlib.sha256(data).hexdigest()
    r = urllib.request.urlopen(urllib.request.Request(f"http://{reg}/v2/{repo}/blobs/uploads/", data=b"", method="POST"))
    loc = r.headers["Location"]
    loc = (loc if loc.startswith("http") else f"http://{reg}{loc}") + ("&" if "?" in loc else "?") + "digest=" + d
    urllib.request.urlopen(urllib.request.Request(loc, data=data, method="PUT", headers={"Content-Type": "application/octet-stream"}))
    return d
l1, d1 = layer("base", b"base\n")
l2, d2 = layer("foreign", b"from a URL\n")
open(f"{web}/layer2", "wb").write(l2)
cfg = json.dumps({"architecture": "amd64", "os": "linux", "config": {},
                  "rootfs": {"type": "layers", "diff_ids": [d1, d2]}}).encode()
m = {"schemaVersion": 2, "mediaType": "application/vnd.oci.image.manifest.v1+json",
     "config": {"mediaType": "application/vnd.oci.image.config.v1+json", "digest": put("test/win", cfg), "size": len(cfg)},
     "layers": [{"mediaType": "application/vnd.oci.image.layer.v1.tar+gzip", "digest": put("test/win", l1), "size": len(l1)},
                {"mediaType": "application/vnd.oci.image.layer.nondistributable.v1.tar+gzip",
                 "digest": "sha256:" + hashlib.sha256(l2).hexdigest(), "size": len(l2),
                 "urls": [f"http://127.0.0.1:{port}/layer2"]}]}
try:
    urllib.request.urlopen(urllib.request.Request(f"http://{reg}/v2/test/win/manifests/v1", data=json.dumps(m).encode(),
        method="PUT", headers={"Content-Type": m["mediaType"]}))
except urllib.error.HTTPError as e:
    sys.exit(f"manifest PUT: {e}: {e.read()}")
print(m["layers"][1]["digest"])
"#;
    let o = Command::new("python3").arg("-c").arg(py).arg(&reg.addr).arg(&web).arg(port.to_string()).output().unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let foreign = String::from_utf8_lossy(&o.stdout).trim().to_string();
    let name = format!("{}/test/win:v1", reg.addr);

    // The URL's server is down: a clear error naming the layer's URL, nothing registered.
    let err = env.fail(&["pull", &name]);
    assert!(err.contains(&format!("127.0.0.1:{port}/layer2")), "{err}");
    assert_eq!(env.ok(&["images", "-q"]).lines().count(), 0);

    let server = ServerProcess {
        child: Command::new("python3")
            .args(["-m", "http.server", "--bind", "127.0.0.1", &port.to_string()])
            .current_dir(&web)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap(),
    };
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(std::time::Instant::now() < deadline, "http.server did not start");
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    env.ok(&["pull", &name]);
    let store = env.store();
    let rec = store.resolve(&name).unwrap();
    let mnt = env.dir.join("mnt");
    store.mount(&rec, &env.dir.join("rw"), &mnt).unwrap();
    let got = (std::fs::read_to_string(mnt.join("base")), std::fs::read_to_string(mnt.join("foreign")));
    berth_image::imagestore::unmount(&mnt).unwrap();
    assert_eq!((got.0.unwrap().as_str(), got.1.unwrap().as_str()), ("base\n", "from a URL\n"));

    // Push to another repository: the foreign layer is not uploaded, the manifest keeps its URL.
    let target = format!("{}/test/copy:v1", reg.addr);
    env.ok(&["tag", &name, &target]);
    let o = env.berth(&["push", &target]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let out = String::from_utf8_lossy(&o.stdout).to_string() + &String::from_utf8_lossy(&o.stderr);
    assert!(out.contains("Skipped foreign layer"), "{out}");
    assert!(!reg.blob_file(&foreign).exists(), "the registry got the foreign layer");
    let o = Command::new("skopeo")
        .args(["inspect", "--raw", "--tls-verify=false"])
        .arg(format!("docker://{target}"))
        .output()
        .unwrap();
    let raw = String::from_utf8_lossy(&o.stdout);
    assert!(raw.contains(&format!("http://127.0.0.1:{port}/layer2")), "{raw}");
    drop(server);
}
