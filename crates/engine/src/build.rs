//! `POST /build`: Docker's legacy builder protocol (`version=1`) over [`berth_build`].
//!
//! The request body is the build context as a tar (plain or compressed), unpacked under
//! `<exec-root>/build/<id>/context` with the layer unpacker's safety rules. The answer is a
//! JSON stream: `{"stream": ...}` lines as `docker build` prints them, then
//! `{"aux":{"ID":"sha256:..."}}`, or `{"error": ..., "errorDetail": ...}` (the status is
//! already 200 by then, as with dockerd). Nothing of a failed build is tagged.
//!
//! `RUN` steps run as containers of the runtime (this binary, `berth runtime run`, spawned
//! from the daemon), each on its own network namespace: on the default bridge, or with only
//! `lo` for `RUN --network=none` / `--network none`.

use crate::daemon::Daemon;
use crate::http::{ApiError, ApiResult, Conn, Request};
use berth_build::{Options, RunStep, Runner};
use berth_dockerfile::instruction::Network;
use serde_json::{json, Value};
use std::collections::BTreeMap;
use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::Arc;

fn io(e: std::io::Error) -> ApiError {
    ApiError::internal(e.to_string())
}

/// A `{"k": "v"}` query parameter (`buildargs`, `labels`); null values are left out.
fn json_map(req: &Request, name: &str) -> ApiResult<BTreeMap<String, String>> {
    let Some(raw) = req.q(name).filter(|s| !s.is_empty()) else { return Ok(BTreeMap::new()) };
    let v: Value = serde_json::from_str(raw).map_err(|e| ApiError::bad(format!("{name}: not a JSON object: {e}")))?;
    let o = v.as_object().ok_or_else(|| ApiError::bad(format!("{name}: not a JSON object")))?;
    Ok(o.iter().filter_map(|(k, v)| v.as_str().map(|s| (k.clone(), s.to_string()))).collect())
}

/// Build secrets (berth's extension, for `berth build --secret`): the header
/// `X-Berth-Build-Secrets`, base64 of a JSON object `{"id": "<base64 of the value>"}`. A
/// header keeps them out of URLs and logs; the legacy protocol has no other place for them.
fn secrets(req: &Request) -> ApiResult<berth_build::Secrets> {
    use base64::engine::general_purpose::STANDARD as B64;
    use base64::Engine as _;
    let Some(h) = req.header("x-berth-build-secrets").filter(|h| !h.is_empty()) else {
        return Ok(Default::default());
    };
    let bad = |m: &str| ApiError::bad(format!("X-Berth-Build-Secrets: {m}"));
    let raw = B64.decode(h.trim()).ok().ok_or_else(|| bad("not base64"))?;
    let v: BTreeMap<String, String> = serde_json::from_slice(&raw).map_err(|_| bad("not a JSON object of strings"))?;
    let mut out = BTreeMap::new();
    for (id, b64) in v {
        let value = B64.decode(&b64).ok().ok_or_else(|| bad(&format!("secret {id}: not base64")))?;
        out.insert(id, value);
    }
    Ok(berth_build::Secrets(out))
}

/// Everything is checked before the body is read.
fn options(req: &Request) -> ApiResult<(Options, String, Network)> {
    if req.q("remote").is_some_and(|r| !r.is_empty()) {
        return Err(ApiError::bad(
            "building from a remote context (URL or git) is not supported: send the context as a tar",
        ));
    }
    if let Some(v) = req.q("version").filter(|v| !v.is_empty() && *v != "1") {
        return Err(ApiError::bad(format!(
            "builder version {v} is not supported: berth has the legacy builder (version 1)"
        )));
    }
    if let Some(p) = req.q("platform").filter(|p| !p.is_empty()) {
        let host = berth_build::host_platform();
        if p != host.to_string() && p != host.os {
            return Err(ApiError::bad(format!("building for platform {p} is not supported: only {host}")));
        }
    }
    for limit in ["memory", "memswap", "cpushares", "cpuquota", "cpuperiod", "shmsize"] {
        if req.q(limit).is_some_and(|v| !matches!(v, "" | "0")) {
            return Err(ApiError::bad(format!("build resource limits ({limit}) are not supported yet")));
        }
    }
    let network = match req.q("networkmode").unwrap_or("") {
        "" | "default" | "bridge" => Network::Default,
        "none" => Network::None,
        "host" => Network::Host,
        m => {
            return Err(ApiError::bad(format!("build network mode {m:?} is not supported: use default, none or host")))
        }
    };
    let mut tags = Vec::new();
    for t in req.q_all("t").into_iter().filter(|t| !t.is_empty()) {
        let r = berth_image::Reference::parse(t)
            .map_err(|e| ApiError::bad(format!("invalid reference format: {t}: {e}")))?;
        if r.digest().is_some() {
            return Err(ApiError::bad(format!("invalid tag {t}: a tag cannot hold a digest")));
        }
        tags.push(r);
    }
    let epoch = match json_map(req, "buildargs")?.get("SOURCE_DATE_EPOCH") {
        Some(v) => {
            Some(v.parse().map_err(|_| ApiError::bad(format!("SOURCE_DATE_EPOCH={v}: not a number of seconds")))?)
        }
        None => None,
    };
    let opts = Options {
        dockerfile: String::new(),
        tags,
        build_args: json_map(req, "buildargs")?,
        target: req.q("target").filter(|t| !t.is_empty()).map(str::to_string),
        no_cache: req.flag("nocache"),
        labels: json_map(req, "labels")?,
        epoch,
        pull: req.flag("pull"),
        secrets: secrets(req)?,
        cache_from: match req.q("cachefrom").filter(|c| !c.is_empty()) {
            None => vec![],
            Some(c) => serde_json::from_str::<Option<Vec<String>>>(c)
                .map_err(|e| ApiError::bad(format!("cachefrom: not a JSON array of image names: {e}")))?
                .unwrap_or_default(),
        },
        host_network: network == Network::Host,
    };
    let dockerfile = req.q("dockerfile").filter(|d| !d.is_empty()).unwrap_or("Dockerfile").to_string();
    Ok((opts, dockerfile, network))
}

pub fn handle(d: &Arc<Daemon>, conn: &mut Conn, req: &Request) -> ApiResult<()> {
    let (mut opts, dockerfile, network) = match options(req) {
        Ok(o) => o,
        Err(e) => {
            let _ = std::io::copy(&mut conn.body_reader(), &mut std::io::sink());
            return Err(e);
        }
    };
    let id = crate::daemon::random_id();
    let t0 = std::time::Instant::now();
    let work = d.exec_root.join("build").join(&id[..16]);
    let context = work.join("context");
    let unpacked = (|| {
        std::fs::create_dir_all(&context)
            .map_err(|e| ApiError::internal(format!("creating {}: {e}", context.display())))?;
        let mut body = std::io::BufReader::with_capacity(256 << 10, conn.body_reader());
        let r = berth_image::compression::decompress(&mut body)
            .map_err(|e| ApiError::bad(format!("reading the build context: {e}")))
            .and_then(|dec| {
                berth_image::apply_layer(&context, PadToBlock::new(dec), berth_image::ApplyMode::Flatten)
                    .map_err(|e| ApiError::bad(format!("the build context is not a valid tar archive: {e}")))
            });
        let _ = std::io::copy(&mut body, &mut std::io::sink());
        r
    })();
    // Steps work next to the snapshots (their upper dirs are moved in); the context on the
    // exec root (tmpfs on most hosts: many small files are written fast there).
    let steps = d.images.root().join("build-tmp").join(&id[..16]);
    let cleanup = |work: &Path| {
        remove_dir_with_mounts(&steps);
        remove_dir_with_mounts(work);
    };
    if let Err(e) = unpacked {
        cleanup(&work);
        return Err(e);
    }
    crate::daemon::trace(&id, "build: context unpacked", t0);
    let df_path = berth_build::copy::resolve_in_root(&context, &dockerfile, true).unwrap_or_else(|_| context.join("x"));
    opts.dockerfile = match std::fs::read_to_string(&df_path) {
        Ok(t) => t,
        Err(e) => {
            cleanup(&work);
            return Err(ApiError::bad(format!("Cannot locate specified Dockerfile: {dockerfile} ({e})")));
        }
    };
    let quiet = req.flag("q");
    let mut out = conn.chunked(200, "application/json").map_err(io)?;
    let runner =
        EngineRunner { d: d.clone(), work: work.clone(), network, client: crate::api::registry_client(req).ok() };
    let result = {
        // A client that went away does not stop the build (its result is still tagged).
        let mut send = |s: &str| {
            if !quiet {
                let _ = out.json_line(&json!({"stream": s}));
            }
        };
        // No layer GC until the image that reaches the new layers is registered.
        let _lease = d.images.lease();
        berth_build::build(&d.images, &context, &steps, &opts, &runner, &mut send)
    };
    crate::daemon::trace(&id, "build: built", t0);
    cleanup(&work);
    crate::daemon::trace(&id, "build: cleaned up", t0);
    match result {
        Ok(b) => {
            let id = b.image.id.to_string();
            out.json_line(&json!({"aux": {"ID": id}})).map_err(io)?;
            if !quiet {
                out.json_line(&json!({"stream": format!("Successfully built {}\n", &b.image.id.hex()[..12])}))
                    .map_err(io)?;
                for t in &opts.tags {
                    out.json_line(&json!({"stream": format!("Successfully tagged {}\n", t.familiar())})).map_err(io)?;
                }
            }
            for t in &opts.tags {
                d.events.emit("image", "tag", &id, json!({"name": t.familiar()}));
            }
        }
        Err(e) => {
            let m = e.to_string();
            out.json_line(&json!({"errorDetail": {"message": m}, "error": m})).map_err(io)?;
        }
    }
    out.finish().map_err(io)
}

/// The docker CLI's context tar when it adds a Dockerfile from outside the context ends right
/// after that file's data: no padding to the 512-byte block, no end-of-archive blocks (Go's
/// reader accepts that). This completes the last block at EOF, and nothing more: a stream cut
/// inside an entry's data still fails as truncated.
struct PadToBlock<R> {
    inner: R,
    read: u64,
    pad: Option<usize>,
}

impl<R: Read> PadToBlock<R> {
    fn new(inner: R) -> Self {
        PadToBlock { inner, read: 0, pad: None }
    }
}

impl<R: Read> Read for PadToBlock<R> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        if let Some(left) = self.pad.as_mut() {
            let n = (*left).min(buf.len());
            buf[..n].fill(0);
            *left -= n;
            return Ok(n);
        }
        let n = self.inner.read(buf)?;
        if n == 0 && !buf.is_empty() {
            let left = ((512 - self.read % 512) % 512) as usize;
            self.pad = Some(left);
            return if left == 0 { Ok(0) } else { self.read(buf) };
        }
        self.read += n as u64;
        Ok(n)
    }
}

/// Remove `dir`, unmounting what is mounted under it first (deepest first).
pub(crate) fn remove_dir_with_mounts(dir: &Path) {
    if !dir.exists() {
        return;
    }
    let mounts = std::fs::read_to_string("/proc/self/mountinfo").unwrap_or_default();
    let w = dir.display().to_string();
    let mut ours: Vec<&str> = mounts
        .lines()
        .filter_map(|l| l.split(' ').nth(4))
        .filter(|m| m.starts_with(&w) && (m.len() == w.len() || m.as_bytes()[w.len()] == b'/'))
        .collect();
    ours.sort_by_key(|m| std::cmp::Reverse(m.len()));
    for m in ours {
        let _ = berth_image::imagestore::unmount(Path::new(m));
    }
    let _ = std::fs::remove_dir_all(dir);
}

struct EngineRunner {
    d: Arc<Daemon>,
    work: PathBuf,
    network: Network,
    client: Option<berth_registry::Client>,
}

impl Runner for EngineRunner {
    fn run(&self, step: &RunStep, out: &mut dyn FnMut(&[u8])) -> Result<i32, String> {
        let d = &self.d;
        let id = step.id.as_str();
        let dir = self.work.join("run").join(&id[..16]);
        let etc = dir.join("etc");
        std::fs::create_dir_all(&etc).map_err(|e| format!("creating {}: {e}", etc.display()))?;
        let network = if step.network == Network::Default { self.network } else { step.network };
        let host_net = network == Network::Host;
        let nets: Vec<String> = if network == Network::Default { vec!["bridge".into()] } else { vec![] };
        let attached =
            if host_net { vec![] } else { d.net.setup(id, &nets, &json!({}), &json!({})).map_err(|e| e.message)? };
        let r = (|| {
            let hostname = &id[..12];
            let me = attached.first().map(|a| a.ip.as_str()).unwrap_or("127.0.1.1");
            let hosts = if host_net {
                std::fs::read_to_string("/etc/hosts").unwrap_or_default()
            } else {
                format!("127.0.0.1\tlocalhost\n::1\tlocalhost ip6-localhost ip6-loopback\n{me}\t{hostname}\n")
            };
            let files = [
                ("hostname", format!("{hostname}\n")),
                ("hosts", hosts),
                ("resolv.conf", crate::spec::resolv_conf(&json!({}), host_net, None)),
            ];
            for (f, data) in files {
                std::fs::write(etc.join(f), data).map_err(|e| format!("writing /etc/{f}: {e}"))?;
            }
            let cfg = json!({"Entrypoint": [], "Cmd": step.args, "Env": step.env, "User": step.user,
                             "WorkingDir": step.workdir, "Hostname": hostname});
            let mode = match network {
                Network::None => "none",
                Network::Host => "host",
                Network::Default => "default",
            };
            let host = json!({"NetworkMode": mode});
            let ns = d.net.netns_path(id);
            let mounts: Vec<crate::spec::MountPoint> = step
                .mounts
                .iter()
                .map(|m| {
                    let (kind, source, tmpfs_options) = match &m.source {
                        berth_build::MountSource::Bind(p) => ("bind", p.display().to_string(), vec![]),
                        berth_build::MountSource::Tmpfs { size } => {
                            ("tmpfs", String::new(), size.map(|s| vec![format!("size={s}")]).unwrap_or_default())
                        }
                    };
                    crate::spec::MountPoint {
                        kind: kind.into(),
                        name: String::new(),
                        source,
                        destination: m.target.clone(),
                        driver: String::new(),
                        mode: String::new(),
                        rw: !m.read_only,
                        propagation: String::new(),
                        tmpfs_options,
                        no_copy: false,
                        anonymous: false,
                        create_source: false,
                    }
                })
                .collect();
            let spec = crate::spec::build(&crate::spec::SpecInput {
                id,
                cfg: &cfg,
                host: &host,
                image_cfg: &json!({}),
                rootfs: step.rootfs,
                files_dir: &etc,
                mounts: &mounts,
                netns: if host_net { None } else { Some(&ns) },
                host_net,
            })
            .map_err(|e| e.message)?;
            std::fs::write(dir.join("config.json"), serde_json::to_vec_pretty(&spec).unwrap_or_default())
                .map_err(|e| format!("writing the bundle: {e}"))?;
            let (mut reader, writer) = std::io::pipe().map_err(|e| format!("pipe: {e}"))?;
            let mut child = Command::new(&d.exe)
                .arg("runtime")
                .arg("--root")
                .arg(d.exec_root.join("build-runtime"))
                .arg("run")
                .arg("--bundle")
                .arg(&dir)
                .arg(id)
                .stdin(Stdio::null())
                .stdout(writer.try_clone().map_err(|e| e.to_string())?)
                .stderr(writer)
                .spawn()
                .map_err(|e| format!("starting the runtime: {e}"))?;
            let mut buf = [0u8; 16 * 1024];
            loop {
                match reader.read(&mut buf) {
                    Ok(0) => break,
                    Ok(n) => out(&buf[..n]),
                    Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
                    Err(_) => break,
                }
            }
            let status = child.wait().map_err(|e| e.to_string())?;
            Ok(status.code().unwrap_or(128 + std::os::unix::process::ExitStatusExt::signal(&status).unwrap_or(0)))
        })();
        if !host_net {
            d.net.teardown(id);
        }
        let _ = std::fs::remove_dir_all(&dir);
        r
    }

    fn pull(&self, reference: &str, out: &mut dyn FnMut(&str)) -> Result<(), String> {
        let r = berth_image::Reference::parse(reference).map_err(|e| e.to_string())?;
        let fallback;
        let client = match &self.client {
            Some(c) => c,
            None => {
                fallback = berth_registry::Client::new(berth_registry::ClientOptions::from_env());
                &fallback
            }
        };
        out(&format!("Pulling {}\n", r.familiar()));
        let o = berth_registry::pull::pull(
            client,
            &self.d.images,
            &r,
            &berth_registry::Platform::host(),
            &berth_registry::pull::NoProgress,
        )
        .map_err(|e| format!("pulling {}: {e}", r.familiar()))?;
        out(&format!("Digest: {}\n", o.digest));
        Ok(())
    }
}
