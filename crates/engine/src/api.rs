//! The Docker Engine API: routes (unversioned and under `/v{version}`) and Docker's JSON shapes.

use crate::daemon::{Container, Daemon};
use crate::http::{ApiError, ApiResult, Conn, Request};
use crate::logs::{self, ReadOpts};
use serde_json::{json, Value};
use std::os::unix::net::UnixListener;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

/// Log every request with its duration on stderr (`berth daemon --debug`).
pub static DEBUG: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);

/// Serve the API on `sock` (mode 0600: root only) until the process ends.
pub fn serve(d: Arc<Daemon>, sock: &Path) -> Result<(), String> {
    if let Some(dir) = sock.parent() {
        std::fs::create_dir_all(dir).map_err(|e| format!("creating {}: {e}", dir.display()))?;
    }
    if std::os::unix::net::UnixStream::connect(sock).is_ok() {
        return Err(format!("{} is in use: is another daemon running?", sock.display()));
    }
    let _ = std::fs::remove_file(sock);
    // SAFETY: umask only changes this process's file-creation mask; the socket is born 0600.
    let old = unsafe { libc::umask(0o177) };
    let listener = UnixListener::bind(sock);
    // SAFETY: as above, restoring the previous mask.
    unsafe { libc::umask(old) };
    let listener = listener.map_err(|e| format!("listening on {}: {e}", sock.display()))?;
    eprintln!("berth daemon: API listening on {}", sock.display());
    for conn in listener.incoming() {
        let Ok(conn) = conn else { continue };
        let d = d.clone();
        std::thread::spawn(move || {
            if let Ok(mut c) = Conn::new(conn) {
                handle_conn(&d, &mut c);
            }
        });
    }
    Ok(())
}

fn handle_conn(d: &Arc<Daemon>, conn: &mut Conn) {
    while !conn.closed {
        let req = match conn.next_request() {
            Ok(Some(r)) => r,
            Ok(None) => return,
            Err(e) => {
                let _ = conn.error(&ApiError::bad(e.to_string()));
                return;
            }
        };
        if req.header("connection").is_some_and(|c| c.eq_ignore_ascii_case("close")) {
            conn.closed = true; // served, then the connection ends
        }
        if let Some(v) = &req.version {
            if version_lt(v, crate::MIN_API_VERSION) {
                let _ = conn.error(&ApiError::bad(format!(
                    "client version {v} is too old. Minimum supported API version is {}, please upgrade your client to a newer version",
                    crate::MIN_API_VERSION
                )));
                continue;
            }
            if version_lt(crate::API_VERSION, v) {
                let _ = conn.error(&ApiError::bad(format!(
                    "client version {v} is too new. Maximum supported API version is {}",
                    crate::API_VERSION
                )));
                continue;
            }
        }
        conn.api_version = req.version.clone().unwrap_or_else(|| crate::API_VERSION.to_string());
        let close = conn.closed;
        conn.closed = false;
        let t0 = std::time::Instant::now();
        let result = route(d, conn, &req);
        if DEBUG.load(std::sync::atomic::Ordering::Relaxed) {
            let status = match &result {
                Ok(()) => "ok".to_string(),
                Err(e) => e.status.to_string(),
            };
            eprintln!(
                "berth daemon: {} {} {}: {status} in {:.1} ms",
                berth_runtime::state::now_rfc3339(),
                req.method,
                req.path,
                t0.elapsed().as_secs_f64() * 1000.0
            );
        }
        if let Err(e) = result {
            if conn.closed {
                return;
            }
            if conn.error(&e).is_err() {
                return;
            }
        }
        if close {
            return;
        }
    }
}

fn version_lt(a: &str, b: &str) -> bool {
    let p = |s: &str| s.split('.').map(|x| x.parse::<u32>().unwrap_or(0)).collect::<Vec<_>>();
    p(a) < p(b)
}

fn io(e: std::io::Error) -> ApiError {
    ApiError::internal(format!("writing the response: {e}"))
}

fn route(d: &Arc<Daemon>, conn: &mut Conn, req: &Request) -> ApiResult<()> {
    let parts: Vec<&str> = req.path.trim_start_matches('/').split('/').collect();
    let m = req.method.as_str();
    match (m, parts.as_slice()) {
        ("GET" | "HEAD", ["_ping"]) => {
            let body = if m == "HEAD" { &b""[..] } else { &b"OK"[..] };
            conn.respond(200, "text/plain; charset=utf-8", body).map_err(io)?;
        }
        ("GET", ["version"]) => conn.json(200, &version()).map_err(io)?,
        ("POST", ["build"]) => crate::build::handle(d, conn, req)?,
        ("POST", ["build", "prune"]) => crate::build_prune::handle(d, conn, req)?,
        ("GET", ["info"]) => conn.json(200, &info(d)).map_err(io)?,
        ("GET", ["networks"]) => {
            let filters = parse_filters(req.q("filters"))?;
            let mut list = networks(d);
            for (k, vals) in &filters {
                list.retain(|n| {
                    vals.iter().any(|v| match k.as_str() {
                        "name" => n["Name"].as_str().is_some_and(|x| x.contains(v.as_str())),
                        "id" => n["Id"].as_str().is_some_and(|x| x.starts_with(v.as_str())),
                        "driver" => n["Driver"] == *v,
                        "type" => {
                            (v == "custom") == (n["Name"] != "bridge" && n["Name"] != "host" && n["Name"] != "none")
                        }
                        "label" => label_matches(&n["Labels"], v),
                        _ => true,
                    })
                });
            }
            conn.json(200, &Value::Array(list)).map_err(io)?
        }
        ("GET", ["networks", key]) => {
            let n = find_network(d, key)?;
            conn.json(200, &n).map_err(io)?
        }
        ("POST", ["networks", "create"]) => {
            let b = conn.json_body(req)?;
            let name = b["Name"].as_str().unwrap_or("");
            let driver = b["Driver"].as_str().unwrap_or("");
            if !matches!(driver, "" | "bridge") {
                return Err(ApiError::bad(format!("network driver {driver:?} is not supported: use bridge")));
            }
            let cfg = b["IPAM"]["Config"].as_array().and_then(|a| a.first()).cloned().unwrap_or(json!({}));
            let def = d.net.create(
                name,
                cfg["Subnet"].as_str().filter(|s| !s.is_empty()),
                cfg["Gateway"].as_str().filter(|s| !s.is_empty()),
                b["Internal"].as_bool().unwrap_or(false),
                b["Labels"].clone(),
                b["Options"].clone(),
            )?;
            d.events.emit("network", "create", &def.id, json!({"name": def.name, "type": "bridge"}));
            conn.json(201, &json!({"Id": def.id, "Warning": ""})).map_err(io)?
        }
        ("DELETE", ["networks", key]) => {
            let def = d.net.find(key).ok_or_else(|| ApiError::not_found(format!("network {key} not found")))?;
            if d.list().iter().any(|c| c.attached.iter().any(|a| a.network == def.name)) {
                return Err(ApiError::forbidden(format!(
                    "error while removing network: network {} id {} has active endpoints",
                    def.name, def.id
                )));
            }
            d.net.remove(&def)?;
            d.events.emit("network", "destroy", &def.id, json!({"name": def.name, "type": "bridge"}));
            conn.empty(204).map_err(io)?
        }
        ("POST", ["networks", "prune"]) => {
            let used: std::collections::BTreeSet<String> = d.list().iter().flat_map(|c| c.networks()).collect();
            let mut deleted = Vec::new();
            for def in d.net.list().into_iter().filter(|n| !n.builtin && !used.contains(&n.name)) {
                if d.net.remove(&def).is_ok() {
                    d.events.emit("network", "destroy", &def.id, json!({"name": def.name, "type": "bridge"}));
                    deleted.push(def.name);
                }
            }
            conn.json(200, &json!({"NetworksDeleted": deleted})).map_err(io)?
        }
        ("POST", ["networks", key, "connect"]) => {
            let def = d.net.find(key).ok_or_else(|| ApiError::not_found(format!("network {key} not found")))?;
            let b = conn.json_body(req)?;
            let c = d.find(b["Container"].as_str().unwrap_or(""))?;
            let aliases = crate::spec::strings(&b["EndpointConfig"]["Aliases"]);
            d.connect(&c.id, &def.name, aliases)?;
            d.events.emit(
                "network",
                "connect",
                &def.id,
                json!({"name": def.name, "type": "bridge", "container": c.id}),
            );
            conn.empty(200).map_err(io)?
        }
        ("POST", ["networks", key, "disconnect"]) => {
            let def = d.net.find(key).ok_or_else(|| ApiError::not_found(format!("network {key} not found")))?;
            let b = conn.json_body(req)?;
            let c = d.find(b["Container"].as_str().unwrap_or(""))?;
            d.disconnect(&c.id, &def.name)?;
            d.events.emit(
                "network",
                "disconnect",
                &def.id,
                json!({"name": def.name, "type": "bridge", "container": c.id}),
            );
            conn.empty(200).map_err(io)?
        }
        ("GET", ["containers", "json"]) => {
            let v = list_containers(d, req)?;
            conn.json(200, &v).map_err(io)?
        }
        ("POST", ["containers", "create"]) => {
            let body = conn.json_body(req)?;
            let c = d.create(req.q("name"), &body)?;
            conn.json(201, &json!({"Id": c.id, "Warnings": []})).map_err(io)?;
        }
        ("GET", ["containers", id, "json"]) => {
            let c = d.find(id)?;
            conn.json(200, &inspect(d, &c)).map_err(io)?
        }
        ("POST", ["containers", id, "start"]) => {
            let _ = conn.body(req)?;
            if d.start(id)? {
                conn.empty(204).map_err(io)?
            } else {
                conn.empty(304).map_err(io)?
            }
        }
        ("POST", ["containers", id, "stop"]) => {
            let t = req.q("t").or(req.q("timeout")).map(|t| t.parse::<i64>()).transpose();
            let t = t.map_err(|_| ApiError::bad("invalid value for t: not an integer"))?;
            if d.stop(id, t, req.q("signal").filter(|s| !s.is_empty()))? {
                conn.empty(204).map_err(io)?
            } else {
                conn.empty(304).map_err(io)?
            }
        }
        ("POST", ["containers", id, "restart"]) => {
            let t = req.q("t").and_then(|t| t.parse::<i64>().ok());
            d.stop(id, t, None)?;
            d.start(id)?;
            if let Ok(c) = d.find(id) {
                d.container_event(&c, "restart", json!({}));
            }
            conn.empty(204).map_err(io)?
        }
        ("POST", ["containers", id, "kill"]) => {
            let sig = req.q("signal").filter(|s| !s.is_empty()).unwrap_or("SIGKILL");
            let sig = berth_runtime::container::parse_signal(sig).map_err(|e| ApiError::bad(e.to_string()))?;
            let c = d.find(id)?;
            if sig == libc::SIGWINCH && !c.running() {
                return conn.empty(204).map_err(io);
            }
            d.kill(id, sig)?;
            conn.empty(204).map_err(io)?
        }
        ("DELETE", ["containers", id]) => {
            d.remove_with(id, req.flag("force"), req.flag("v"))?;
            conn.empty(204).map_err(io)?
        }
        ("POST", ["containers", id, "wait"]) => wait(d, conn, req, id)?,
        ("POST", ["containers", id, "attach"]) => {
            let c = d.find(id)?;
            let ct =
                if c.tty() { "application/vnd.docker.raw-stream" } else { "application/vnd.docker.multiplexed-stream" };
            let (stream, early) = conn.hijack(req, ct).map_err(io)?;
            d.attach(&c, stream, early, req.flag("stdin"), req.flag("stdout"), req.flag("stderr"));
        }
        ("POST", ["containers", id, "resize"]) => {
            let c = d.find(id)?;
            let h = req.q("h").and_then(|v| v.parse().ok()).unwrap_or(24);
            let w = req.q("w").and_then(|v| v.parse().ok()).unwrap_or(80);
            if c.running() {
                d.resize(&c, h, w);
            }
            conn.empty(200).map_err(io)?
        }
        ("GET", ["containers", id, "logs"]) => container_logs(d, conn, req, id)?,
        ("GET", ["events"]) => events(d, conn, req)?,
        ("GET", ["containers", id, "stats"]) => stats(d, conn, req, id)?,
        ("GET" | "HEAD", ["containers", id, "archive"]) => crate::archive::get_archive(d, conn, req, id, m == "HEAD")?,
        ("PUT", ["containers", id, "archive"]) => crate::archive::put_archive(d, conn, req, id)?,
        ("GET", ["containers", id, "export"]) => crate::archive::export(d, conn, id)?,
        ("GET", ["containers", id, "changes"]) => crate::archive::changes(d, conn, id)?,
        ("POST", ["volumes", "create"]) => {
            let b = conn.json_body(req)?;
            let v = d.volumes.create(
                b["Name"].as_str().unwrap_or(""),
                b["Driver"].as_str().unwrap_or(""),
                &b["Labels"],
                &b["DriverOpts"],
                false,
            )?;
            d.events.emit("volume", "create", &v.name, json!({"driver": "local"}));
            conn.json(201, &v.json()).map_err(io)?
        }
        ("GET", ["volumes"]) => {
            let v = list_volumes(d, req)?;
            conn.json(200, &v).map_err(io)?
        }
        ("POST", ["volumes", "prune"]) => {
            let v = prune_volumes(d, req)?;
            conn.json(200, &v).map_err(io)?
        }
        ("GET", ["volumes", name]) => {
            let v = d.volumes.get(name)?;
            conn.json(200, &v.json()).map_err(io)?
        }
        ("DELETE", ["volumes", name]) => {
            d.volumes.get(name)?;
            let users: Vec<String> = d
                .list()
                .into_iter()
                .filter(|c| c.mounts.iter().any(|m| m.kind == "volume" && m.name == *name))
                .map(|c| c.id)
                .collect();
            if !users.is_empty() {
                return Err(ApiError::conflict(format!("remove {name}: volume is in use - [{}]", users.join(", "))));
            }
            d.volumes.remove(name)?;
            d.events.emit("volume", "destroy", name, json!({"driver": "local"}));
            conn.empty(204).map_err(io)?
        }
        ("POST", ["containers", id, "pause"]) => {
            d.pause(id)?;
            conn.empty(204).map_err(io)?
        }
        ("POST", ["containers", id, "unpause"]) => {
            d.unpause(id)?;
            conn.empty(204).map_err(io)?
        }
        ("POST", ["containers", id, "rename"]) => {
            let name = req.q("name").unwrap_or("");
            d.rename(id, name)?;
            conn.empty(204).map_err(io)?
        }
        ("POST", ["containers", id, "update"]) => {
            let body = conn.json_body(req)?;
            d.update_resources(id, &body)?;
            conn.json(200, &json!({"Warnings": []})).map_err(io)?
        }
        ("POST", ["containers", "prune"]) => {
            let _ = conn.body(req)?;
            let filters = parse_filters(req.q("filters"))?;
            let mut deleted = Vec::new();
            let mut space = 0u64;
            for c in d.list() {
                if c.running()
                    || !filters
                        .iter()
                        .all(|(k, v)| k == "label" && v.iter().all(|l| label_matches(&c.config["Labels"], l)))
                {
                    continue;
                }
                let size = crate::volumes::du(&d.dir(&c.id).join("rw"));
                if d.remove(&c.id, false).is_ok() {
                    space += size;
                    deleted.push(c.id);
                }
            }
            conn.json(200, &json!({"ContainersDeleted": deleted, "SpaceReclaimed": space})).map_err(io)?
        }
        ("GET", ["system", "df"]) => {
            let v = system_df(d)?;
            conn.json(200, &v).map_err(io)?
        }
        ("GET", ["containers", id, "top"]) => {
            let v = top(d, id, req.q("ps_args").unwrap_or(""))?;
            conn.json(200, &v).map_err(io)?
        }
        ("POST", ["containers", id, "exec"]) => {
            let body = conn.json_body(req)?;
            let e = d.exec_create(id, &body)?;
            conn.json(201, &json!({"Id": e.id})).map_err(io)?
        }
        ("POST", ["exec", id, "start"]) => {
            let body = conn.json_body(req).unwrap_or(Value::Null);
            let e = d.exec_find(id)?;
            if body["Detach"].as_bool().unwrap_or(false) {
                d.exec_start(&e.id, None)?;
                conn.respond(200, "application/json", b"").map_err(io)?
            } else {
                let ct = if e.tty() {
                    "application/vnd.docker.raw-stream"
                } else {
                    "application/vnd.docker.multiplexed-stream"
                };
                let (stream, early) = conn.hijack(req, ct).map_err(io)?;
                d.exec_start(&e.id, Some((stream, early)))?;
            }
        }
        ("GET", ["exec", id, "json"]) => {
            let v = d.exec_inspect(id)?;
            conn.json(200, &v).map_err(io)?
        }
        ("POST", ["exec", id, "resize"]) => {
            let h = req.q("h").and_then(|v| v.parse().ok()).unwrap_or(24);
            let w = req.q("w").and_then(|v| v.parse().ok()).unwrap_or(80);
            d.exec_resize(id, h, w)?;
            conn.empty(200).map_err(io)?
        }
        ("POST", ["commit"]) => crate::commit::commit(d, conn, req)?,
        ("POST", ["images", "create"]) => pull(d, conn, req)?,
        ("POST", ["auth"]) => crate::images_api::auth(conn, req)?,
        ("POST", ["images", rest @ .., "tag"]) if !rest.is_empty() => {
            let name = rest.join("/");
            let repo = req.q("repo").unwrap_or("");
            let tag = req.q("tag").filter(|t| !t.is_empty()).unwrap_or("latest");
            let target =
                berth_image::Reference::parse(&format!("{repo}:{tag}")).map_err(|e| ApiError::bad(e.to_string()))?;
            d.images.tag(&name, &target).map_err(|e| ApiError::not_found(e.to_string()))?;
            conn.empty(201).map_err(io)?
        }
        ("DELETE", ["images", rest @ ..]) if !rest.is_empty() => {
            let name = rest.join("/");
            let lines = d.images.remove(&name, req.flag("force")).map_err(|e| {
                if e.to_string().contains("conflict") {
                    ApiError::conflict(e.to_string())
                } else {
                    ApiError::not_found(e.to_string())
                }
            })?;
            let out: Vec<Value> =
                lines.iter().filter_map(|l| l.split_once(": ")).map(|(k, v)| json!({ k: v })).collect();
            conn.json(200, &Value::Array(out)).map_err(io)?
        }
        ("POST", ["images", rest @ .., "push"]) if !rest.is_empty() => push(d, conn, req, &rest.join("/"))?,
        ("GET", ["images", "get"]) => {
            let names: Vec<String> = req.q_all("names").iter().map(|s| s.to_string()).collect();
            save(d, conn, &names)?
        }
        ("GET", ["images", rest @ .., "get"]) if !rest.is_empty() => save(d, conn, &[rest.join("/")])?,
        ("POST", ["images", "load"]) => load(d, conn, req)?,
        ("POST", ["images", "prune"]) => crate::images_api::prune(d, conn, req)?,
        ("GET", ["images", rest @ .., "history"]) if !rest.is_empty() => {
            let v = history(d, &rest.join("/"))?;
            conn.json(200, &v).map_err(io)?
        }
        ("GET", ["images", "json"]) => {
            let v = crate::images_api::list(d, req)?;
            conn.json(200, &v).map_err(io)?
        }
        ("GET", ["images", rest @ .., "json"]) if !rest.is_empty() => {
            let name = rest.join("/");
            let rec = d.images.resolve(&name).map_err(|_| ApiError::not_found(format!("No such image: {name}")))?;
            let names = image_names(d, rec.id.as_ref());
            let mut v = d.images.docker_inspect(&rec, &names).map_err(|e| ApiError::internal(e.to_string()))?;
            // ContainerConfig (the config of the container that made the last layer) left the
            // API in 1.45, but docker-compose 1.29 negotiates the newest version and still reads
            // its Volumes when it recreates a container (a KeyError on Docker 25+): kept.
            {
                let cfg = d.images.config(&rec).unwrap_or(Value::Null);
                v["Container"] = json!("");
                v["ContainerConfig"] = match &cfg["container_config"] {
                    Value::Object(o) => Value::Object(o.clone()),
                    _ => v["Config"].clone(),
                };
            }
            conn.json(200, &v).map_err(io)?
        }
        _ => {
            return Err(ApiError::not_found(format!("page not found: {} {}", req.method, req.path)));
        }
    }
    Ok(())
}

fn version() -> Value {
    json!({
        "Platform": {"Name": "Berth"},
        "Components": [{"Name": "Engine", "Version": crate::DOCKER_VERSION, "Details": {"ApiVersion": crate::API_VERSION, "MinAPIVersion": crate::MIN_API_VERSION, "Os": "linux", "Arch": "amd64"}}],
        "Version": crate::DOCKER_VERSION,
        "ApiVersion": crate::API_VERSION,
        "MinAPIVersion": crate::MIN_API_VERSION,
        "GitCommit": "",
        "GoVersion": "",
        "Os": "linux",
        "Arch": arch(),
        "KernelVersion": kernel(),
        "BuildTime": "",
    })
}

fn arch() -> &'static str {
    match std::env::consts::ARCH {
        "x86_64" => "amd64",
        "aarch64" => "arm64",
        other => other,
    }
}

fn kernel() -> String {
    std::fs::read_to_string("/proc/sys/kernel/osrelease").unwrap_or_default().trim().to_string()
}

/// A network by name or id, as `GET /networks/{id}` shows it.
fn find_network(d: &Daemon, key: &str) -> ApiResult<Value> {
    let all = networks(d);
    all.iter()
        .find(|n| n["Name"] == *key || n["Id"] == *key)
        .or_else(|| {
            let m: Vec<&Value> = all
                .iter()
                .filter(|n| n["Id"].as_str().is_some_and(|i| !key.is_empty() && i.starts_with(key)))
                .collect();
            if m.len() == 1 {
                Some(m[0])
            } else {
                None
            }
        })
        .cloned()
        .ok_or_else(|| ApiError::not_found(format!("network {key} not found")))
}

/// Every network, as `GET /networks` shows them, with the containers running on each.
fn networks(d: &Daemon) -> Vec<Value> {
    let containers = d.list();
    let net = |name: &str,
               id: &str,
               driver: &str,
               created: &str,
               internal: bool,
               ipam: Value,
               opts: &Value,
               labels: &Value| {
        let mut on = serde_json::Map::new();
        for c in &containers {
            if let Some(a) = c.attached.iter().find(|a| a.network == name) {
                on.insert(
                    c.id.clone(),
                    json!({"Name": c.name, "EndpointID": c.id, "MacAddress": a.mac,
                           "IPv4Address": format!("{}/{}", a.ip, a.prefix), "IPv6Address": ""}),
                );
            }
        }
        json!({"Name": name, "Id": id, "Created": created, "Scope": "local",
               "Driver": driver, "EnableIPv6": false, "IPAM": {"Driver": "default", "Options": null, "Config": ipam},
               "Internal": internal, "Attachable": false, "Ingress": false, "ConfigFrom": {"Network": ""},
               "ConfigOnly": false, "Containers": on, "Options": opts, "Labels": labels})
    };
    let mut out: Vec<Value> = d
        .net
        .list()
        .iter()
        .map(|n| {
            net(
                &n.name,
                &n.id,
                "bridge",
                &n.created,
                n.internal,
                json!([{"Subnet": n.subnet, "Gateway": n.gateway}]),
                &n.options,
                &n.labels,
            )
        })
        .collect();
    let (none, empty) = (json!({}), json!([]));
    out.insert(1, net("host", &network_id("host"), "host", "0001-01-01T00:00:00Z", false, empty.clone(), &none, &none));
    out.insert(2, net("none", &network_id("none"), "null", "0001-01-01T00:00:00Z", false, empty, &none, &none));
    out
}

fn info(d: &Daemon) -> Value {
    let cs = d.list();
    let count = |s: &str| cs.iter().filter(|c| c.state.status == s).count();
    let images = d.images.list().map(|l| l.len()).unwrap_or(0);
    let mem = crate::stats::host_memory();
    json!({
        "ID": "berth",
        "Containers": cs.len(),
        "ContainersRunning": count("running"),
        "ContainersPaused": count("paused"),
        "ContainersStopped": cs.len() - count("running") - count("paused"),
        "Images": images,
        "Driver": "overlay2",
        "DriverStatus": [["Backing Filesystem", "overlayfs"]],
        "Plugins": {"Volume": ["local"], "Network": ["host", "null"], "Log": ["json-file"]},
        "MemoryLimit": true, "SwapLimit": true, "CpuCfsPeriod": true, "CpuCfsQuota": true, "CPUShares": true, "PidsLimit": true,
        "IPv4Forwarding": false,
        "Debug": false,
        "NFd": 0, "NGoroutines": 0,
        "SystemTime": berth_runtime::state::now_rfc3339(),
        "LoggingDriver": "json-file",
        "CgroupDriver": "cgroupfs",
        "CgroupVersion": if Path::new("/sys/fs/cgroup/cgroup.controllers").exists() { "2" } else { "1" },
        "KernelVersion": kernel(),
        "OperatingSystem": "Berth",
        "OSType": "linux",
        "Architecture": std::env::consts::ARCH,
        "NCPU": std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1),
        "MemTotal": mem,
        "DockerRootDir": d.data_root,
        "Name": std::fs::read_to_string("/proc/sys/kernel/hostname").unwrap_or_default().trim(),
        "Labels": [],
        "ExperimentalBuild": false,
        "ServerVersion": crate::DOCKER_VERSION,
        "Runtimes": {"berth": {"path": "berth-runc"}},
        "DefaultRuntime": "berth",
        "Swarm": {"LocalNodeState": "inactive", "ControlAvailable": false, "NodeID": "", "NodeAddr": ""},
        "LiveRestoreEnabled": true,
        "Isolation": "",
        "InitBinary": "",
        "SecurityOptions": ["name=seccomp,profile=builtin"],
        "Warnings": [],
    })
}

/// Both filter shapes: `{"label":{"a=b":true}}` (CLI) and `{"label":["a=b"]}` (docker-py).
pub fn parse_filters(s: Option<&str>) -> ApiResult<Vec<(String, Vec<String>)>> {
    let Some(s) = s.filter(|s| !s.is_empty()) else { return Ok(Vec::new()) };
    let v: Value = serde_json::from_str(s).map_err(|e| ApiError::bad(format!("invalid filter: {e}")))?;
    let obj = v.as_object().ok_or_else(|| ApiError::bad("invalid filter: not an object"))?;
    let mut out = Vec::new();
    for (k, vals) in obj {
        let list = match vals {
            Value::Array(a) => a.iter().filter_map(|x| x.as_str().map(String::from)).collect(),
            Value::Object(o) => o.iter().filter(|(_, b)| b.as_bool().unwrap_or(true)).map(|(k, _)| k.clone()).collect(),
            Value::String(s) => vec![s.clone()],
            _ => return Err(ApiError::bad(format!("invalid filter {k:?}"))),
        };
        out.push((k.clone(), list));
    }
    Ok(out)
}

pub(crate) fn label_matches(labels: &Value, want: &str) -> bool {
    match want.split_once('=') {
        Some((k, v)) => labels[k].as_str() == Some(v),
        None => labels.get(want).is_some(),
    }
}

fn health_suffix(c: &Container) -> String {
    match c.health.as_ref().map(|h| h.status.as_str()) {
        Some("starting") => " (health: starting)".into(),
        Some(s @ ("healthy" | "unhealthy")) => format!(" ({s})"),
        _ => String::new(),
    }
}

fn status_text(c: &Container) -> String {
    match c.state.status.as_str() {
        "running" => format!("Up {}{}", since(&c.state.started_at), health_suffix(c)),
        "paused" => format!("Up {} (Paused)", since(&c.state.started_at)),
        "restarting" => format!("Restarting ({}) {} ago", c.state.exit_code, since(&c.state.finished_at)),
        "exited" => format!("Exited ({}) {} ago", c.state.exit_code, since(&c.state.finished_at)),
        "created" => "Created".into(),
        other => other.to_string(),
    }
}

/// Unix seconds of an RFC 3339 time (0 when unparsable).
pub fn unix_of(t: &str) -> i64 {
    berth_runtime::state::parse_rfc3339(t).unwrap_or(0)
}

fn since(t: &str) -> String {
    berth_runtime::state::human_duration(berth_runtime::state::unix_now() - unix_of(t))
}

fn command_line(c: &Container) -> String {
    std::iter::once(c.path.clone()).chain(c.args.iter().cloned()).collect::<Vec<_>>().join(" ")
}

fn list_containers(d: &Daemon, req: &Request) -> ApiResult<Value> {
    let filters = parse_filters(req.q("filters"))?;
    let all = req.flag("all");
    let limit = req.q("limit").and_then(|l| l.parse::<usize>().ok()).filter(|l| *l > 0);
    let mut out = Vec::new();
    for c in d.list() {
        let status_filtered = filters.iter().any(|(k, _)| k == "status");
        if !all && !c.running() && !status_filtered {
            continue;
        }
        let mut keep = true;
        for (k, vals) in &filters {
            let ok = match k.as_str() {
                "label" => vals.iter().all(|v| label_matches(&c.config["Labels"], v)),
                "name" => vals.iter().any(|v| c.name.contains(v.trim_start_matches('/'))),
                "id" => vals.iter().any(|v| c.id.starts_with(v.as_str())),
                "status" => vals.contains(&c.state.status),
                "ancestor" => vals.iter().any(|v| {
                    c.image == *v
                        || c.image_id == *v
                        || d.images.resolve(v).map(|r| r.id.to_string() == c.image_id).unwrap_or(false)
                }),
                "exited" => {
                    vals.iter().any(|v| c.state.status == "exited" && v.parse::<i32>().ok() == Some(c.state.exit_code))
                }
                "health" => vals.iter().any(|v| {
                    let h = c.health.as_ref().filter(|_| c.running()).map(|h| h.status.as_str()).unwrap_or("none");
                    h == v
                }),
                other => return Err(ApiError::bad(format!("invalid filter '{other}'"))),
            };
            keep &= ok;
        }
        if !keep {
            continue;
        }
        out.push(json!({
            "Id": c.id,
            "Names": [format!("/{}", c.name)],
            "Image": c.image,
            "ImageID": c.image_id,
            "Command": command_line(&c),
            "Created": unix_of(&c.created),
            "Ports": crate::network::ports_list(c.primary(), &c.config["ExposedPorts"]),
            "Labels": c.config["Labels"],
            "State": c.state.status,
            "Status": status_text(&c),
            "HostConfig": {"NetworkMode": c.host_config["NetworkMode"]},
            "NetworkSettings": {"Networks": networks_json(d, &c)},
            "Mounts": mounts_json(&c),
        }));
        if limit.is_some_and(|l| out.len() >= l) {
            break;
        }
    }
    Ok(Value::Array(out))
}

fn mounts_json(c: &Container) -> Value {
    Value::Array(c.mounts.iter().map(|m| m.docker_json()).collect())
}

fn inspect(d: &Daemon, c: &Container) -> Value {
    let s = &c.state;
    let dir = d.dir(&c.id);
    json!({
        "Id": c.id,
        "Created": c.created,
        "Path": c.path,
        "Args": c.args,
        "State": {
            "Status": s.status,
            "Running": c.running() && s.status != "restarting",
            "Paused": s.status == "paused",
            "Restarting": s.status == "restarting",
            "OOMKilled": s.oom_killed,
            "Dead": false,
            "Pid": s.pid,
            "ExitCode": s.exit_code,
            "Error": s.error,
            "StartedAt": if s.started_at.is_empty() { "0001-01-01T00:00:00Z" } else { &s.started_at },
            "FinishedAt": if s.finished_at.is_empty() { "0001-01-01T00:00:00Z" } else { &s.finished_at },
            "Health": c.health,
        },
        "Image": c.image_id,
        "ResolvConfPath": dir.join("etc/resolv.conf"),
        "HostnamePath": dir.join("etc/hostname"),
        "HostsPath": dir.join("etc/hosts"),
        "LogPath": d.log_path(&c.id),
        "Name": format!("/{}", c.name),
        "RestartCount": c.restart_count,
        "Driver": "overlay2",
        "Platform": "linux",
        "MountLabel": "",
        "ProcessLabel": "",
        "AppArmorProfile": "",
        "ExecIDs": Some(d.exec_ids(&c.id)).filter(|v| !v.is_empty()),
        "HostConfig": c.host_config,
        "GraphDriver": {"Name": "overlay2", "Data": {"MergedDir": dir.join("rootfs")}},
        "Mounts": mounts_json(c),
        "Config": c.config,
        "NetworkSettings": network_settings(d, c),
    })
}

/// `NetworkSettings.Networks`: the networks the container is on (by its mode, or its
/// extra networks) and, while it runs, its endpoint on each.
fn networks_json(d: &Daemon, c: &Container) -> Value {
    let mode = c.host_config["NetworkMode"].as_str().unwrap_or("default");
    let mut names = c.networks();
    if names.is_empty() && matches!(mode, "host" | "none") {
        names.push(mode.to_string());
    }
    let mut out = serde_json::Map::new();
    for name in names {
        let a = c.attached.iter().find(|a| a.network == name);
        let s = |f: fn(&crate::network::Attached) -> String| a.map(f).unwrap_or_default();
        let id = d.net.find(&name).map(|n| n.id).unwrap_or_else(|| network_id(&name));
        let aliases = c.aliases_on(&name);
        out.insert(
            name.clone(),
            json!({
                "IPAMConfig": null, "Links": null,
                "Aliases": if aliases.is_empty() { Value::Null } else { json!(aliases) },
                "NetworkID": id,
                "EndpointID": if a.is_some() { c.id.clone() } else { String::new() },
                "Gateway": s(|a| a.gateway.clone()),
                "IPAddress": s(|a| a.ip.clone()),
                "IPPrefixLen": a.map(|a| a.prefix).unwrap_or(0),
                "IPv6Gateway": "", "GlobalIPv6Address": "", "GlobalIPv6PrefixLen": 0,
                "MacAddress": s(|a| a.mac.clone()),
                "DriverOpts": null,
            }),
        );
    }
    Value::Object(out)
}

/// The fixed ids of the built-in networks (sha256 of their names, as stable 64-hex ids).
pub(crate) fn network_id(name: &str) -> String {
    berth_image::digest::Digest::of(format!("berth network {name}").as_bytes()).hex().to_string()
}

fn network_settings(d: &Daemon, c: &Container) -> Value {
    let a = c.primary();
    let s = |f: fn(&crate::network::Attached) -> String| a.map(f).unwrap_or_default();
    json!({
        "Bridge": "",
        "SandboxID": if a.is_some() { c.id.clone() } else { String::new() },
        "SandboxKey": a.map(|_| d.net.netns_path(&c.id).display().to_string()).unwrap_or_default(),
        "HairpinMode": false,
        "LinkLocalIPv6Address": "", "LinkLocalIPv6PrefixLen": 0,
        "Ports": crate::network::ports_json(a, &c.config["ExposedPorts"]),
        "SecondaryIPAddresses": null, "SecondaryIPv6Addresses": null,
        "EndpointID": if a.is_some() { c.id.clone() } else { String::new() },
        "Gateway": s(|a| a.gateway.clone()),
        "GlobalIPv6Address": "", "GlobalIPv6PrefixLen": 0,
        "IPAddress": s(|a| a.ip.clone()),
        "IPPrefixLen": a.map(|a| a.prefix).unwrap_or(0),
        "IPv6Gateway": "",
        "MacAddress": s(|a| a.mac.clone()),
        "Networks": networks_json(d, c),
    })
}

fn volume_filter_matches(
    d: &Daemon,
    v: &crate::volumes::Volume,
    filters: &[(String, Vec<String>)],
    used: &std::collections::BTreeSet<String>,
) -> ApiResult<bool> {
    let _ = d;
    for (k, vals) in filters {
        let ok = match k.as_str() {
            "name" => vals.iter().any(|x| v.name.contains(x.as_str())),
            "driver" => vals.iter().any(|x| x == "local"),
            "label" => vals.iter().all(|x| label_matches(&Value::Object(v.meta.labels.clone()), x)),
            "dangling" => vals.iter().any(|x| {
                let want = matches!(x.as_str(), "true" | "1");
                want != used.contains(&v.name)
            }),
            "all" => true,
            other => return Err(ApiError::bad(format!("invalid filter '{other}'"))),
        };
        if !ok {
            return Ok(false);
        }
    }
    Ok(true)
}

fn list_volumes(d: &Daemon, req: &Request) -> ApiResult<Value> {
    let filters = parse_filters(req.q("filters"))?;
    let used = d.volumes_in_use();
    let mut out = Vec::new();
    for v in d.volumes.list() {
        if volume_filter_matches(d, &v, &filters, &used)? {
            out.push(v.json());
        }
    }
    Ok(json!({"Volumes": out, "Warnings": []}))
}

/// `POST /volumes/prune`: unused volumes; only anonymous ones unless `all=true` (API >= 1.42).
fn prune_volumes(d: &Daemon, req: &Request) -> ApiResult<Value> {
    let filters = parse_filters(req.q("filters"))?;
    let all = filters.iter().any(|(k, v)| k == "all" && v.iter().any(|x| matches!(x.as_str(), "true" | "1")))
        || version_lt(&req.version.clone().unwrap_or_else(|| crate::API_VERSION.into()), "1.42");
    let used = d.volumes_in_use();
    let mut deleted = Vec::new();
    let mut space = 0u64;
    for v in d.volumes.list() {
        if used.contains(&v.name) || (!all && !v.meta.anonymous) {
            continue;
        }
        if !volume_filter_matches(d, &v, &filters, &used)? {
            continue;
        }
        let size = crate::volumes::du(&v.mountpoint);
        if d.volumes.remove(&v.name).is_ok() {
            space += size;
            deleted.push(v.name);
        }
    }
    Ok(json!({"VolumesDeleted": deleted, "SpaceReclaimed": space}))
}

/// `GET /events`: headers at once, then one JSON object per event.
fn events(d: &Arc<Daemon>, conn: &mut Conn, req: &Request) -> ApiResult<()> {
    let filters = parse_filters(req.q("filters"))?;
    let t = |name: &str| -> ApiResult<Option<f64>> {
        match req.q(name) {
            None | Some("") => Ok(None),
            Some(v) => v
                .parse::<f64>()
                .ok()
                .or_else(|| berth_runtime::state::parse_rfc3339(v).map(|x| x as f64))
                .map(Some)
                .ok_or_else(|| ApiError::bad(format!("invalid {name} value {v:?}"))),
        }
    };
    let (since, until) = (t("since")?, t("until")?);
    let mut out = conn.chunked(200, "application/json").map_err(io)?;
    d.events.follow(since, until, &filters, |e| out.json_line(e).is_ok());
    let _ = out.finish();
    conn.closed = true;
    Ok(())
}

/// `GET /containers/{id}/stats`: one document (`stream=0`), or one a second.
fn stats(d: &Arc<Daemon>, conn: &mut Conn, req: &Request, key: &str) -> ApiResult<()> {
    let c = d.find(key)?;
    let stream = req.q("stream").is_none_or(|v| matches!(v, "1" | "true" | "True"));
    let one_shot = req.flag("one-shot");
    let empty = || crate::stats::Sample { cpu: json!({}), memory: json!({}), pids: json!({}), blkio: json!({}) };
    let take = |c: &Container| d.cgroup_dirs(c).map(|dirs| crate::stats::sample(&dirs)).unwrap_or_else(empty);
    let mut out = conn.chunked(200, "application/json").map_err(io)?;
    let mut pre: Option<crate::stats::Sample> = None;
    if !stream && !one_shot && c.running() {
        // As dockerd: a second sample a moment later, so that CPU use can be computed.
        pre = Some(take(&c));
        std::thread::sleep(Duration::from_millis(500));
    }
    loop {
        let c = d.find(&c.id)?;
        let now = take(&c);
        let mut doc = crate::stats::document(&c.id, &c.name, &now, pre.as_ref());
        if !c.attached.is_empty() {
            let ifs: Vec<(String, String)> = c
                .attached
                .iter()
                .map(|a| (if a.ifname.is_empty() { "eth0".into() } else { a.ifname.clone() }, a.host_if(&c.id)))
                .collect();
            doc["networks"] = crate::stats::veth_counters(&ifs);
        }
        if out.json_line(&doc).is_err() {
            conn.closed = true;
            return Ok(());
        }
        if !stream || !c.running() {
            break;
        }
        pre = Some(now);
        std::thread::sleep(Duration::from_secs(1));
    }
    out.finish().map_err(io)
}

/// `GET /system/df`: images, containers (their writable layers), volumes and the build cache
/// ([`crate::build_prune::df`]), with sizes.
fn system_df(d: &Daemon) -> ApiResult<Value> {
    let images = list_images(d)?;
    let cs: Vec<Value> = d
        .list()
        .iter()
        .map(|c| {
            json!({"Id": c.id, "Names": [format!("/{}", c.name)], "Image": c.image, "ImageID": c.image_id,
                   "Command": command_line(c), "Created": unix_of(&c.created), "State": c.state.status,
                   "Status": status_text(c), "SizeRw": crate::volumes::du(&d.dir(&c.id).join("rw/upper")),
                   "SizeRootFs": 0, "Labels": c.config["Labels"], "Mounts": mounts_json(c)})
        })
        .collect();
    let used = d.volumes_in_use();
    let vols: Vec<Value> = d
        .volumes
        .list()
        .iter()
        .map(|v| {
            let mut j = v.json();
            j["UsageData"] =
                json!({"Size": crate::volumes::du(&v.mountpoint), "RefCount": i64::from(used.contains(&v.name))});
            j
        })
        .collect();
    let layers: u64 = images.as_array().map(|a| a.iter().filter_map(|i| i["Size"].as_u64()).sum()).unwrap_or(0);
    let cache = crate::build_prune::df(d);
    let builder: u64 = cache.iter().filter(|c| c["Shared"] != true).filter_map(|c| c["Size"].as_u64()).sum();
    Ok(json!({"LayersSize": layers, "Images": images, "Containers": cs, "Volumes": vols, "BuildCache": cache,
              "BuilderSize": builder}))
}

/// `top`: the host's `ps` (with `ps_args`, default `-ef`), rows of the container's processes.
fn top(d: &Daemon, key: &str, ps_args: &str) -> ApiResult<Value> {
    let c = d.find(key)?;
    if !c.running() || c.state.status == "restarting" {
        return Err(ApiError::conflict(format!("Container {} is not running", c.id)));
    }
    let pids = d.pids(&c);
    let args: Vec<&str> = if ps_args.trim().is_empty() { vec!["-ef"] } else { ps_args.split_whitespace().collect() };
    let o = std::process::Command::new("ps")
        .args(&args)
        .output()
        .map_err(|e| ApiError::internal(format!("running ps: {e}")))?;
    if !o.status.success() {
        return Err(ApiError::internal(format!(
            "ps: {}",
            String::from_utf8_lossy(&o.stderr).lines().next().unwrap_or("failed")
        )));
    }
    let text = String::from_utf8_lossy(&o.stdout);
    let mut lines = text.lines();
    let header = lines.next().unwrap_or("");
    let titles: Vec<String> = header.split_whitespace().map(String::from).collect();
    let pid_col = titles
        .iter()
        .position(|t| t == "PID")
        .ok_or_else(|| ApiError::internal("Couldn't find PID field in ps output"))?;
    let mut procs = Vec::new();
    for l in lines {
        let f: Vec<&str> = l.split_whitespace().collect();
        if f.len() < titles.len() {
            continue;
        }
        let Some(pid) = f[pid_col].parse::<i32>().ok() else { continue };
        if !pids.contains(&pid) {
            continue;
        }
        // The last column keeps its spaces (the command line).
        let mut row: Vec<String> = f[..titles.len() - 1].iter().map(|s| s.to_string()).collect();
        row.push(f[titles.len() - 1..].join(" "));
        procs.push(row);
    }
    Ok(json!({"Titles": titles, "Processes": procs}))
}

fn wait(d: &Arc<Daemon>, conn: &mut Conn, req: &Request, key: &str) -> ApiResult<()> {
    let c = d.find(key)?;
    let cond = req.q("condition").unwrap_or("not-running").to_string();
    if !matches!(cond.as_str(), "" | "not-running" | "next-exit" | "removed") {
        return Err(ApiError::bad(format!("invalid condition: {cond:?}")));
    }
    let exits = c.state.exits;
    // Headers now: the CLI starts the container only once they arrived.
    let out = conn.chunked(200, "application/json").map_err(io)?;
    let done = match cond.as_str() {
        "next-exit" => d.wait_until(&c.id, None, |c| c.state.exits > exits && c.state.status != "restarting"),
        "removed" => {
            let last = d.wait_until(&c.id, None, |c| c.state.exits > exits && !c.running());
            // Gone before this thread saw it exit (a quick auto-remove): its recorded code.
            let code = last.as_ref().map(|c| c.state.exit_code).or_else(|| d.removed_exit(&c.id));
            d.wait_until(&c.id, None, |_| false);
            return finish_wait(out, code.unwrap_or(0));
        }
        _ => d.wait_until(&c.id, None, |c| !c.running()),
    };
    let code = done.map(|c| c.state.exit_code).or_else(|| d.removed_exit(&c.id)).unwrap_or(0);
    finish_wait(out, code)
}

fn finish_wait(mut out: crate::http::Chunked<'_>, code: i32) -> ApiResult<()> {
    out.json_line(&json!({"StatusCode": code, "Error": null})).map_err(io)?;
    out.finish().map_err(io)
}

fn container_logs(d: &Arc<Daemon>, conn: &mut Conn, req: &Request, key: &str) -> ApiResult<()> {
    let c = d.find(key)?;
    let (stdout, stderr) = (req.flag("stdout"), req.flag("stderr"));
    if !stdout && !stderr {
        return Err(ApiError::bad("you must choose at least one stream"));
    }
    let tail = match req.q("tail").unwrap_or("all") {
        "all" | "" => None,
        n => Some(n.parse::<usize>().map_err(|_| ApiError::bad(format!("invalid tail value {n:?}")))?),
    };
    let since = time_q(req, "since")?;
    let until = time_q(req, "until")?;
    let opts = ReadOpts { stdout, stderr, tail, since, until };
    let (timestamps, follow, tty) = (req.flag("timestamps"), req.flag("follow"), c.tty());
    let ct = if tty { "application/vnd.docker.raw-stream" } else { "application/vnd.docker.multiplexed-stream" };
    let path = d.log_path(&c.id);
    let mut out = conn.chunked(200, ct).map_err(io)?;
    let send = |out: &mut crate::http::Chunked<'_>, recs: Vec<logs::Record>| -> std::io::Result<()> {
        let mut buf = Vec::new();
        for r in recs {
            let mut line = Vec::new();
            if timestamps {
                line.extend_from_slice(r.time.as_bytes());
                line.push(b' ');
            }
            line.extend_from_slice(&r.log);
            if tty {
                buf.extend_from_slice(&line);
            } else {
                buf.extend_from_slice(&crate::monitor::frame(r.stream, &line));
            }
        }
        out.write_all(&buf)
    };
    let (recs, mut offset) = logs::read(&path, &opts);
    send(&mut out, recs).map_err(io)?;
    if follow && until.is_none() {
        loop {
            let running = d.find(&c.id).map(|c| c.running()).unwrap_or(false);
            let (recs, off) = logs::read_from(&path, offset, &opts);
            offset = off;
            let empty = recs.is_empty();
            if send(&mut out, recs).is_err() {
                conn.closed = true;
                return Ok(());
            }
            if !running && empty {
                break;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }
    out.finish().map_err(io)
}

/// `since`/`until`: unix seconds (with a fraction); empty or 0 means unset.
fn time_q(req: &Request, name: &str) -> ApiResult<Option<std::time::SystemTime>> {
    match req.q(name) {
        None | Some("") | Some("0") => Ok(None),
        Some(s) => logs::parse_unix(s).map(Some).ok_or_else(|| ApiError::bad(format!("invalid {name} value {s:?}"))),
    }
}

fn image_names(d: &Daemon, id: &str) -> Vec<String> {
    d.images
        .list()
        .ok()
        .and_then(|l| l.into_iter().find(|(r, _)| r.id.to_string() == id).map(|(_, n)| n))
        .unwrap_or_default()
}

pub(crate) fn list_images(d: &Daemon) -> ApiResult<Value> {
    let mut out = Vec::new();
    let users: Vec<String> = d.list().into_iter().map(|c| c.image_id).collect();
    for (rec, names) in d.images.list().map_err(|e| ApiError::internal(e.to_string()))? {
        let (tags, digests) = berth_image::imagestore::docker_names(&rec, &names);
        let cfg = d.images.config(&rec).unwrap_or(Value::Null);
        let id = rec.id.to_string();
        out.push(json!({
            "Id": id,
            "ParentId": "",
            "RepoTags": tags,
            "RepoDigests": digests,
            "Created": rec.created.as_deref().map(unix_of).unwrap_or(0),
            "Size": rec.size,
            "SharedSize": -1,
            "VirtualSize": rec.size,
            "Labels": cfg["config"]["Labels"].clone(),
            "Containers": users.iter().filter(|u| **u == id).count(),
        }));
    }
    Ok(Value::Array(out))
}

struct StreamProgress<'a> {
    out: std::sync::Mutex<crate::http::Chunked<'a>>,
}

impl StreamProgress<'_> {
    fn send(&self, v: Value) {
        let _ = self.out.lock().unwrap_or_else(|e| e.into_inner()).json_line(&v);
    }
}

impl berth_registry::pull::PullProgress for StreamProgress<'_> {
    fn layer(&self, id: &str, _size: u64) {
        self.send(json!({"status": "Pulling fs layer", "progressDetail": {}, "id": id}));
    }
    fn downloading(&self, id: &str, done: u64, size: u64) {
        self.send(json!({"status": "Downloading", "progressDetail": {"current": done, "total": size}, "id": id}));
    }
    fn finished(&self, id: &str, state: &str) {
        self.send(json!({"status": state, "progressDetail": {}, "id": id}));
    }
}

/// `POST /images/create?fromImage=&tag=&platform=`: a pull, reported as Docker's JSON stream
/// (`fromSrc=` instead: an import, in `images_api`).
fn pull(d: &Arc<Daemon>, conn: &mut Conn, req: &Request) -> ApiResult<()> {
    let from = req.q("fromImage").unwrap_or("");
    if from.is_empty() {
        return crate::images_api::import(d, conn, req);
    }
    let _ = conn.body(req)?;
    let tag = req.q("tag").unwrap_or("");
    let full = if tag.is_empty() {
        from.to_string()
    } else if tag.starts_with("sha256:") {
        format!("{from}@{tag}")
    } else {
        format!("{from}:{tag}")
    };
    let r = berth_image::Reference::parse(&full).map_err(|e| ApiError::bad(e.to_string()))?;
    let platform = match req.q("platform").filter(|p| !p.is_empty()) {
        Some(p) => berth_registry::Platform::parse(p).map_err(|e| ApiError::bad(e.to_string()))?,
        None => berth_registry::Platform::host(),
    };
    let client = registry_client(req)?;
    let out = conn.chunked(200, "application/json").map_err(io)?;
    let p = StreamProgress { out: std::sync::Mutex::new(out) };
    let shown = r.tag().map(|t| t.to_string()).unwrap_or_else(|| r.digest().map(|d| d.to_string()).unwrap_or_default());
    p.send(json!({"status": format!("Pulling from {}", r.familiar_name()), "id": shown}));
    let lease = d.images.lease();
    let pulled = berth_registry::pull::pull(&client, &d.images, &r, &platform, &p);
    drop(lease);
    match pulled {
        Ok(o) => {
            p.send(json!({"status": format!("Digest: {}", o.digest)}));
            let what = if o.downloaded { "Downloaded newer image for" } else { "Image is up to date for" };
            p.send(json!({"status": format!("Status: {what} {}", r.familiar())}));
        }
        Err(e) => {
            let m = e.to_string();
            p.send(json!({"errorDetail": {"message": m}, "error": m}));
        }
    }
    let out = p.out.into_inner().unwrap_or_else(|e| e.into_inner());
    out.finish().map_err(io)
}

/// A registry client with the request's `X-Registry-Auth` credentials (base64url JSON of
/// username/password), else the daemon's own config.json.
pub(crate) fn registry_client(req: &Request) -> ApiResult<berth_registry::Client> {
    use base64::Engine;
    let mut o = berth_registry::ClientOptions::from_env();
    if let Some(h) = req.header("x-registry-auth").map(str::trim).filter(|h| !h.is_empty()) {
        let raw = base64::engine::general_purpose::URL_SAFE_NO_PAD
            .decode(h.trim_end_matches('='))
            .or_else(|_| base64::engine::general_purpose::STANDARD.decode(h))
            .map_err(|_| ApiError::bad("X-Registry-Auth: not base64"))?;
        let v: Value = serde_json::from_slice(&raw).map_err(|_| ApiError::bad("X-Registry-Auth: not JSON"))?;
        let (u, p) = (v["username"].as_str().unwrap_or(""), v["password"].as_str().unwrap_or(""));
        if !u.is_empty() {
            o.credentials = Some(berth_registry::auth::Credentials { username: u.into(), password: p.into() });
        }
    }
    Ok(berth_registry::Client::new(o))
}

struct PushStream<'a> {
    out: std::sync::Mutex<crate::http::Chunked<'a>>,
}

impl PushStream<'_> {
    fn send(&self, v: Value) {
        let _ = self.out.lock().unwrap_or_else(|e| e.into_inner()).json_line(&v);
    }
}

impl berth_registry::push::PushProgress for PushStream<'_> {
    fn line(&self, msg: &str) {
        match msg.split_once(": ") {
            Some((id, rest)) if id.len() == 12 && id.bytes().all(|b| b.is_ascii_hexdigit()) => {
                self.send(json!({"status": rest, "progressDetail": {}, "id": id}))
            }
            _ => self.send(json!({"status": msg})),
        }
    }
    fn uploading(&self, id: &str, done: u64, size: u64) {
        self.send(json!({"status": "Pushing", "progressDetail": {"current": done, "total": size}, "id": id}));
    }
    fn finished(&self, id: &str, state: &str) {
        self.send(json!({"status": state, "progressDetail": {}, "id": id}));
    }
}

/// `POST /images/{name}/push?tag=`: Docker's JSON stream, ending with the digest (`aux`).
fn push(d: &Arc<Daemon>, conn: &mut Conn, req: &Request, name: &str) -> ApiResult<()> {
    let _ = conn.body(req)?;
    let full = match req.q("tag").filter(|t| !t.is_empty()) {
        Some(t) => format!("{name}:{t}"),
        None => name.to_string(),
    };
    let r = berth_image::Reference::parse(&full).map_err(|e| ApiError::bad(e.to_string()))?;
    if d.images.resolve(&r.to_string()).is_err() {
        return Err(ApiError::not_found(format!("An image does not exist locally with the tag: {}", r.familiar())));
    }
    let client = registry_client(req)?;
    let out = conn.chunked(200, "application/json").map_err(io)?;
    let p = PushStream { out: std::sync::Mutex::new(out) };
    match berth_registry::push::push(&client, &d.images, &r, &p) {
        Ok(o) => {
            p.send(json!({"status": format!("{}: digest: {} size: {}", o.tag, o.digest, o.size)}));
            p.send(
                json!({"progressDetail": {}, "aux": {"Tag": o.tag, "Digest": o.digest.to_string(), "Size": o.size}}),
            );
        }
        Err(e) => {
            let m = e.to_string();
            p.send(json!({"errorDetail": {"message": m}, "error": m}));
        }
    }
    let out = p.out.into_inner().unwrap_or_else(|e| e.into_inner());
    out.finish().map_err(io)
}

/// `GET /images/get?names=...`: a tar (docker-archive + OCI layout) streamed out.
fn save(d: &Arc<Daemon>, conn: &mut Conn, names: &[String]) -> ApiResult<()> {
    if names.is_empty() {
        return Err(ApiError::bad("no images to save: give names"));
    }
    let images =
        berth_image::docker_archive::select(&d.images, names).map_err(|e| ApiError::not_found(e.to_string()))?;
    let out = conn.chunked(200, "application/x-tar").map_err(io)?;
    let mut w = std::io::BufWriter::with_capacity(256 << 10, crate::http::ChunkedWriter(out));
    if let Err(e) = berth_image::docker_archive::save(&d.images, &images, &mut w) {
        // Mid-stream: the client sees a truncated tar; the connection ends (left open, a
        // kept-alive client would wait for the next chunk forever).
        eprintln!("berth daemon: save: {e}");
        drop(w);
        let _ = conn.stream.shutdown(std::net::Shutdown::Both);
        conn.closed = true;
        return Ok(());
    }
    match w.into_inner() {
        Ok(cw) => cw.0.finish().map_err(io),
        Err(_) => Ok(()),
    }
}

/// `POST /images/load`: the request body is a tar; answers Docker's JSON stream.
fn load(d: &Arc<Daemon>, conn: &mut Conn, req: &Request) -> ApiResult<()> {
    let _ = req; // `quiet` only silences progress, which load does not send
    let result = {
        let mut body = std::io::BufReader::with_capacity(256 << 10, conn.body_reader());
        let lease = d.images.lease();
        let r = berth_image::docker_archive::load(&d.images, &mut body);
        drop(lease);
        // Whatever the loader left unread (tar padding) is drained: the connection stays in step.
        let _ = std::io::copy(&mut body, &mut std::io::sink());
        r
    };
    let mut out = conn.chunked(200, "application/json").map_err(io)?;
    match result {
        Ok(loaded) => {
            for l in &loaded {
                let lines: Vec<String> = if l.names.is_empty() {
                    vec![format!("Loaded image ID: {}", l.image.id)]
                } else {
                    l.names.iter().map(|n| format!("Loaded image: {}", n.familiar())).collect()
                };
                for line in lines {
                    out.json_line(&json!({"stream": format!("{line}\n")})).map_err(io)?;
                }
            }
        }
        Err(e) => {
            let m = e.to_string();
            out.json_line(&json!({"errorDetail": {"message": m}, "error": m})).map_err(io)?;
        }
    }
    out.finish().map_err(io)
}

/// `GET /images/{name}/history`: newest first, as Docker lists it.
fn history(d: &Daemon, name: &str) -> ApiResult<Value> {
    let rec = d.images.resolve(name).map_err(|_| ApiError::not_found(format!("No such image: {name}")))?;
    let cfg = d.images.config(&rec).map_err(|e| ApiError::internal(e.to_string()))?;
    let hist = cfg["history"].as_array().cloned().unwrap_or_default();
    let names = image_names(d, rec.id.as_ref());
    let (tags, _) = berth_image::imagestore::docker_names(&rec, &names);
    let mut layer = rec.chain_ids.len();
    let mut out = Vec::new();
    for (i, h) in hist.iter().enumerate().rev() {
        let empty = h["empty_layer"].as_bool().unwrap_or(false);
        let size = if empty || layer == 0 {
            0
        } else {
            layer -= 1;
            d.images.snapshot_size(&rec.chain_ids[layer]).unwrap_or(0)
        };
        let last = i == hist.len() - 1;
        out.push(json!({
            "Id": if last { rec.id.to_string() } else { "<missing>".to_string() },
            "Created": h["created"].as_str().map(unix_of).unwrap_or(0),
            "CreatedBy": h["created_by"].as_str().unwrap_or(""),
            "Tags": if last { json!(tags) } else { Value::Null },
            "Size": size,
            "Comment": h["comment"].as_str().unwrap_or(""),
        }));
    }
    Ok(Value::Array(out))
}
