#![allow(dead_code)] // each test file uses a different part of these helpers
//! A real registry for tests: Debian's `docker-registry` (distribution 2.8) on a free loopback
//! port, with its own config and storage in a temporary directory, stopped on drop.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

pub struct Registry {
    pub dir: PathBuf,
    pub addr: String,
    child: Child,
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

impl Registry {
    /// Start a registry; `extra` is appended to its YAML config (e.g. an `auth:` section).
    pub fn start(name: &str, extra: &str) -> Registry {
        let bin = Path::new("/usr/bin/docker-registry");
        assert!(bin.exists(), "docker-registry is missing: run scripts/deps.sh test");
        let dir = std::env::temp_dir().join(format!("berth-reg-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(dir.join("data")).unwrap();
        let port = free_port();
        let addr = format!("127.0.0.1:{port}");
        let config = format!(
            "version: 0.1\nlog:\n  level: error\nstorage:\n  filesystem:\n    rootdirectory: {}\n  delete:\n    enabled: true\nhttp:\n  addr: {addr}\n{extra}",
            dir.join("data").display()
        );
        std::fs::write(dir.join("config.yml"), config).unwrap();
        let child = Command::new(bin)
            .arg("serve")
            .arg(dir.join("config.yml"))
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(dir.join("log")).unwrap())
            .spawn()
            .unwrap();
        let r = Registry { dir, addr, child };
        let deadline = Instant::now() + Duration::from_secs(20);
        while std::net::TcpStream::connect(&r.addr).is_err() {
            assert!(Instant::now() < deadline, "registry did not start: {}", r.log());
            std::thread::sleep(Duration::from_millis(20));
        }
        r
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.join("log")).unwrap_or_default()
    }

    /// Push an OCI layout (all platforms) with skopeo.
    pub fn push_layout(&self, layout: &Path, tag: &str, repo_tag: &str) {
        let o = Command::new("skopeo")
            .args(["copy", "--all", "--dest-tls-verify=false"])
            .arg(format!("oci:{}:{tag}", layout.display()))
            .arg(format!("docker://{}/{repo_tag}", self.addr))
            .output()
            .expect("skopeo (scripts/deps.sh test)");
        assert!(o.status.success(), "skopeo copy: {}", String::from_utf8_lossy(&o.stderr));
    }

    /// Path of a blob in the registry's storage (distribution's filesystem layout).
    pub fn blob_file(&self, digest: &str) -> PathBuf {
        let hex = digest.trim_start_matches("sha256:");
        self.dir.join("data/docker/registry/v2/blobs/sha256").join(&hex[..2]).join(hex).join("data")
    }
}

impl Drop for Registry {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// Write the test image (tests/fixtures/mkimage.py) into `out` as an OCI layout tagged `tag`;
/// returns the digests {"index", "amd64", "arm64"}.
pub fn make_layout(out: &Path, tag: &str) -> serde_json::Value {
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../tests/fixtures/mkimage.py");
    let o = Command::new("python3").arg(script).arg(out).arg(tag).output().unwrap();
    assert!(o.status.success(), "mkimage.py: {}", String::from_utf8_lossy(&o.stderr));
    serde_json::from_slice(&o.stdout).unwrap()
}

/// A Bearer token server for a registry (tests/fixtures/token_server.py, the flow Docker Hub
/// uses): tokens for `user`/`password`, a 401 for wrong credentials; killed on drop.
pub struct TokenServer {
    child: Child,
    pub port: u16,
    cert: PathBuf,
}

impl TokenServer {
    pub fn start(dir: &Path, user: &str, password: &str) -> TokenServer {
        std::fs::create_dir_all(dir).unwrap();
        let (key, cert) = (dir.join("token-key.pem"), dir.join("token-cert.pem"));
        let o = Command::new("openssl")
            .args(["req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1", "-subj", "/CN=berth-test-token"])
            .arg("-keyout")
            .arg(&key)
            .arg("-out")
            .arg(&cert)
            .output()
            .expect("openssl (scripts/deps.sh test)");
        assert!(o.status.success(), "openssl: {}", String::from_utf8_lossy(&o.stderr));
        let port_file = dir.join("token-port");
        let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../tests/fixtures/token_server.py");
        let child = Command::new("python3")
            .arg(script)
            .arg(&port_file)
            .arg(&key)
            .arg(&cert)
            .args(["berth-test-issuer", user, password])
            .stdout(Stdio::null())
            .spawn()
            .unwrap();
        let mut ts = TokenServer { child, port: 0, cert };
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            if let Some(p) = std::fs::read_to_string(&port_file).ok().and_then(|p| p.trim().parse().ok()) {
                ts.port = p;
                return ts;
            }
            assert!(Instant::now() < deadline, "token server did not start");
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    /// The `auth:` section of a registry config that trusts this server.
    pub fn registry_config(&self) -> String {
        format!(
            "auth:\n  token:\n    realm: http://127.0.0.1:{}/token\n    service: berth-test-registry\n    issuer: berth-test-issuer\n    rootcertbundle: {}\n",
            self.port,
            self.cert.display()
        )
    }
}

impl Drop for TokenServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
