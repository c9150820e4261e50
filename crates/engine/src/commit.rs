//! `POST /commit?container=&repo=&tag=&comment=&author=&pause=&changes=...` (`docker commit`):
//! a new image from a container's changes, as dockerd's `daemon/commit.go` makes it.
//!
//! - The config: the body (a container Config; none or `{}` = the container's), the `changes`
//!   (Dockerfile instructions: CMD, ENTRYPOINT, ENV, EXPOSE, LABEL, ONBUILD, STOPSIGNAL, USER,
//!   VOLUME, WORKDIR) applied to it, then the container's config merged in where it says
//!   nothing (moby's `merge`). The container's config is its record's, with the image's
//!   defaults its record lacks (User, WorkingDir, ExposedPorts, Volumes, ...).
//! - The layer: the container's `rw/upper` as a gzip layer on top of its image's layers
//!   ([`berth_image::ImageStore::add_layer_filtered`]; the upper dir stays the container's).
//!   Left out, as dockerd keeps them in the init layer that commits never see: the empty
//!   files and directories the runtime makes in the rw layer as mount points of its own
//!   mounts (`/etc/hostname`, `/etc/hosts`, `/etc/resolv.conf`, `/dev`, `/proc`, `/sys`, and
//!   `/etc` when only they are in it), and sockets (not tar-able; dockerd skips them too).
//!   Mount points of volumes, binds and tmpfs stay (empty; their content is elsewhere), as in
//!   dockerd. No change at all gives no layer, only a history entry (`empty_layer`).
//! - A running container is paused (freezer) while its upper dir is read, unless `pause=0`,
//!   and unpaused afterwards, also on errors.
//! - Everything is checked (container, reference, changes, body) before anything is made; a
//!   failure after the layer was stored removes what this commit added that no image uses.

use crate::daemon::{Container, Daemon};
use crate::http::{ApiError, ApiResult, Conn, Request};
use berth_build::mountpoints::skipped;
use berth_image::Reference;
use serde_json::{json, Value};
use std::fs;
use std::path::{Path, PathBuf};

/// The instructions a commit's `changes` may use (moby's `validCommitCommands`).
const COMMIT_CHANGES: &str = "CMD, ENTRYPOINT, ENV, EXPOSE, LABEL, ONBUILD, STOPSIGNAL, USER, VOLUME, WORKDIR";

/// The `repo`/`tag` query as a reference (none without `repo`), as moby's `RepoTagReference`.
fn reference(repo: Option<&str>, tag: Option<&str>) -> ApiResult<Vec<Reference>> {
    let Some(repo) = repo.filter(|r| !r.is_empty()) else { return Ok(Vec::new()) };
    let bad = |e: berth_image::Error| ApiError::bad(e.to_string());
    let mut r = Reference::parse(repo).map_err(bad)?;
    if r.digest().is_some() {
        return Err(ApiError::bad(format!("refusing to create a tag with a digest reference: {repo}")));
    }
    if let Some(t) = tag.filter(|t| !t.is_empty()) {
        r = r.with_tag(t).map_err(bad)?;
    }
    Ok(vec![r])
}

fn strings(v: &Value) -> Vec<String> {
    v.as_array().map(|a| a.iter().filter_map(|x| x.as_str().map(str::to_string)).collect()).unwrap_or_default()
}

fn empty(v: &Value) -> bool {
    match v {
        Value::Null => true,
        Value::String(s) => s.is_empty(),
        Value::Array(a) => a.is_empty(),
        Value::Object(o) => o.is_empty(),
        _ => false,
    }
}

/// moby's `merge(userConf, imageConf)`: `base` fills in what `user` leaves unset.
fn merge(user: &mut Value, base: &Value) {
    if !user.is_object() {
        *user = json!({});
    }
    for k in ["User", "WorkingDir", "StopSignal"] {
        if empty(&user[k]) && !base[k].is_null() {
            user[k] = base[k].clone();
        }
    }
    for k in ["ExposedPorts", "Volumes"] {
        if empty(&user[k]) {
            if !base[k].is_null() {
                user[k] = base[k].clone();
            }
        } else if let Some(b) = base[k].as_object() {
            for (p, v) in b {
                if user[k].get(p).is_none() {
                    user[k][p] = v.clone();
                }
            }
        }
    }
    if empty(&user["Env"]) {
        if !base["Env"].is_null() {
            user["Env"] = base["Env"].clone();
        }
    } else {
        let mut env = strings(&user["Env"]);
        for e in strings(&base["Env"]) {
            let key = e.split('=').next().unwrap_or("");
            if !env.iter().any(|u| u.split('=').next() == Some(key)) {
                env.push(e);
            }
        }
        user["Env"] = json!(env);
    }
    if !user["Labels"].is_object() {
        user["Labels"] = json!({});
    }
    if let Some(b) = base["Labels"].as_object() {
        for (k, v) in b {
            if user["Labels"].get(k).is_none() {
                user["Labels"][k] = v.clone();
            }
        }
    }
    if empty(&user["Entrypoint"]) {
        if empty(&user["Cmd"]) {
            user["Cmd"] = base["Cmd"].clone();
            if !base["Shell"].is_null() {
                user["Shell"] = base["Shell"].clone();
            }
        }
        if user["Entrypoint"].is_null() {
            user["Entrypoint"] = base["Entrypoint"].clone();
        }
    }
    if let Some(h) = base["Healthcheck"].as_object() {
        if !user["Healthcheck"].is_object() {
            user["Healthcheck"] = json!({});
        }
        for (k, v) in h {
            if empty(&user["Healthcheck"][k]) || user["Healthcheck"][k].as_i64() == Some(0) {
                user["Healthcheck"][k] = v.clone();
            }
        }
    }
    for k in ["OnBuild"] {
        if user[k].is_null() && !base[k].is_null() {
            user[k] = base[k].clone();
        }
    }
}

/// The changes applied in order to `cfg`, as the classic builder's dispatch does them
/// (ENTRYPOINT drops the Cmd unless a CMD came before it); a bad line is a 400 naming it.
fn apply_changes(cfg: &mut Value, changes: &[&str]) -> ApiResult<()> {
    let mut cmd_set = false;
    for change in changes {
        let line = change.trim();
        if line.is_empty() {
            continue;
        }
        let (instr, rest) = line.split_once(char::is_whitespace).unwrap_or((line, ""));
        let upper = instr.to_ascii_uppercase();
        if !COMMIT_CHANGES.split(", ").any(|c| c == upper) {
            return Err(ApiError::bad(format!(
                "invalid change {line:?}: {upper} is not a valid change command ({COMMIT_CHANGES})"
            )));
        }
        match upper.as_str() {
            "ONBUILD" => {
                let trigger = rest.trim();
                let t = trigger.split_whitespace().next().unwrap_or("").to_ascii_uppercase();
                match t.as_str() {
                    "" => return Err(ApiError::bad(format!("invalid change {line:?}: ONBUILD needs an instruction"))),
                    "ONBUILD" => {
                        return Err(ApiError::bad(format!(
                            "invalid change {line:?}: chaining ONBUILD via `ONBUILD ONBUILD` isn't allowed"
                        )))
                    }
                    "FROM" | "MAINTAINER" => {
                        return Err(ApiError::bad(format!(
                            "invalid change {line:?}: {t} isn't allowed as an ONBUILD trigger"
                        )))
                    }
                    _ => {}
                }
                let mut list = cfg["OnBuild"].as_array().cloned().unwrap_or_default();
                list.push(json!(trigger));
                cfg["OnBuild"] = json!(list);
            }
            _ => {
                berth_image::docker_archive::apply_change(cfg, line)
                    .map_err(|e| ApiError::bad(format!("invalid {}", e.message())))?;
                match upper.as_str() {
                    "CMD" => cmd_set = true,
                    "ENTRYPOINT" if !cmd_set => cfg["Cmd"] = Value::Null,
                    _ => {}
                }
            }
        }
    }
    Ok(())
}

/// Whether the upper dir holds anything the layer would carry.
fn has_changes(upper: &Path, layers: &[PathBuf]) -> ApiResult<bool> {
    let rd = match fs::read_dir(upper) {
        Ok(rd) => rd,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(false),
        Err(e) => return Err(ApiError::internal(format!("reading {}: {e}", upper.display()))),
    };
    for e in rd {
        let e = e.map_err(|e| ApiError::internal(format!("reading {}: {e}", upper.display())))?;
        let rel = PathBuf::from(e.file_name());
        let md = fs::symlink_metadata(upper.join(&rel))
            .map_err(|e| ApiError::internal(format!("reading {}: {e}", upper.display())))?;
        if !skipped(upper, layers, &rel, &md) {
            return Ok(true);
        }
    }
    Ok(false)
}

/// Unpauses the container it paused when dropped (the commit's every way out).
struct Paused<'a> {
    d: &'a Daemon,
    id: Option<String>,
}

impl Drop for Paused<'_> {
    fn drop(&mut self) {
        if let Some(id) = self.id.take() {
            if let Err(e) = self.d.unpause(&id) {
                eprintln!("berth: commit: unpausing {id}: {}", e.message);
            }
        }
    }
}

/// The container's effective config as dockerd keeps it: the record's (command, env and
/// labels already merged at create) with the image's defaults it lacks.
fn container_config(c: &Container, image_cfg: &Value) -> Value {
    let mut cfg = c.config.clone();
    merge(&mut cfg, &image_cfg["config"]);
    cfg
}

/// What a commit stored that no image uses (after a failure): its blob and snapshot go.
fn forget_layer(d: &Daemon, layer: &berth_image::imagestore::NewLayer) {
    let Ok(images) = d.images.list() else { return };
    if !images.iter().any(|(r, _)| r.layers.iter().any(|l| l.digest == layer.desc.digest)) {
        let _ = d.images.content().delete(&layer.desc.digest);
    }
    if !images.iter().any(|(r, _)| r.chain_ids.contains(&layer.chain)) {
        if let Some(dir) = d.images.snapshot_fs(&layer.chain).parent() {
            let _ = fs::remove_dir_all(dir);
        }
    }
}

/// `POST /commit`: answers 201 `{"Id": "sha256:..."}`.
pub fn commit(d: &Daemon, conn: &mut Conn, req: &Request) -> ApiResult<()> {
    let _lease = d.images.lease();
    let body = conn.json_body(req)?;
    let key = req.q("container").unwrap_or("");
    if key.is_empty() {
        return Err(ApiError::bad("give the container to commit (container=)"));
    }
    let c = d.find(key)?;
    let names = reference(req.q("repo"), req.q("tag"))?;
    let pause = req.q("pause").is_none_or(|_| req.flag("pause"));
    let changes = req.q_all("changes");
    let author = req.q("author").unwrap_or("").to_string();
    let comment = req.q("comment").unwrap_or("").to_string();

    let base = d.images.resolve(&c.image_id).map_err(|e| ApiError::internal(format!("the container's image: {e}")))?;
    let base_cfg = d.images.config(&base).map_err(|e| ApiError::internal(e.to_string()))?;
    let ccfg = container_config(&c, &base_cfg);
    let mut cfg = match &body {
        Value::Null => ccfg.clone(),
        Value::Object(o) if o.is_empty() => ccfg.clone(),
        Value::Object(o) => {
            let mut o = o.clone();
            o.remove("HostConfig");
            o.remove("NetworkingConfig");
            Value::Object(o)
        }
        _ => return Err(ApiError::bad("the request body must be a container config (a JSON object)")),
    };
    apply_changes(&mut cfg, &changes)?;
    merge(&mut cfg, &ccfg);

    // The layer, read while the container is paused.
    let layers_dirs = d.images.rootfs_layers(&base);
    let upper = d.dir(&c.id).join("rw").join("upper");
    let new_layer = {
        let mut paused = Paused { d, id: None };
        if pause && c.state.status == "running" {
            match d.pause(&c.id) {
                Ok(()) => paused.id = Some(c.id.clone()),
                // Stopped meanwhile: nothing to pause.
                Err(_) if !d.find(&c.id).is_ok_and(|c| c.state.status == "running") => {}
                Err(e) => return Err(e),
            }
        }
        if has_changes(&upper, &layers_dirs)? {
            let skip = |rel: &Path, md: &fs::Metadata| skipped(&upper, &layers_dirs, rel, md);
            let l = d
                .images
                .add_layer_filtered(&upper, base.chain_ids.last(), None, &skip)
                .map_err(|e| ApiError::internal(format!("committing {}: {e}", c.id)))?;
            Some(l)
        } else {
            None
        }
    };

    let created = berth_runtime::state::now_rfc3339();
    let mut image = base_cfg.clone();
    let Some(obj) = image.as_object_mut() else {
        return Err(ApiError::internal(format!("the image config of {} is not an object", base.id)));
    };
    for k in ["docker_version", "author", "comment", "container", "container_config"] {
        obj.remove(k);
    }
    let mut diff_ids: Vec<Value> = base.diff_ids.iter().map(|d| json!(d.to_string())).collect();
    let mut layers = base.layers.clone();
    if let Some(l) = &new_layer {
        diff_ids.push(json!(l.diff_id.to_string()));
        layers.push(l.desc.clone());
    }
    let mut hist = json!({"created": created, "created_by": strings(&ccfg["Cmd"]).join(" ")});
    if !author.is_empty() {
        image["author"] = json!(author);
        hist["author"] = json!(author);
    }
    if !comment.is_empty() {
        image["comment"] = json!(comment);
        hist["comment"] = json!(comment);
    }
    if new_layer.is_none() {
        hist["empty_layer"] = json!(true);
    }
    let mut history = base_cfg["history"].as_array().cloned().unwrap_or_default();
    history.push(hist);
    image["created"] = json!(created);
    image["config"] = cfg;
    image["container"] = json!(c.id);
    image["container_config"] = ccfg;
    image["rootfs"] = json!({"type": "layers", "diff_ids": diff_ids});
    image["history"] = json!(history);
    let bytes = serde_json::to_vec(&image).map_err(|e| ApiError::internal(e.to_string()))?;
    let rec = match d.images.register_built(&names, &bytes, &layers) {
        Ok(r) => r,
        Err(e) => {
            if let Some(l) = &new_layer {
                forget_layer(d, l);
            }
            return Err(ApiError::internal(format!("committing {}: {e}", c.id)));
        }
    };
    let id = rec.id.to_string();
    let image_ref = names.first().map(|n| n.familiar()).unwrap_or_default();
    d.container_event(&c, "commit", json!({"comment": comment, "imageID": id, "imageRef": image_ref}));
    if !image_ref.is_empty() {
        d.events.emit("image", "tag", &id, json!({"name": image_ref}));
    }
    conn.json(201, &json!({"Id": id})).map_err(|e| ApiError::internal(format!("writing the response: {e}")))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn changes_and_merge() {
        let container = json!({"Cmd": ["sh"], "Env": ["PATH=/bin", "A=0"], "Labels": {"x": "1"}, "User": "1"});
        let mut cfg = container.clone();
        apply_changes(&mut cfg, &["ENTRYPOINT [\"/init\"]", "ENV A=1", "ONBUILD RUN true"]).unwrap();
        merge(&mut cfg, &container);
        assert_eq!(cfg["Entrypoint"], json!(["/init"]));
        assert!(cfg["Cmd"].is_null(), "ENTRYPOINT without CMD drops the Cmd: {cfg}");
        assert_eq!(cfg["Env"], json!(["PATH=/bin", "A=1"]));
        assert_eq!(cfg["OnBuild"], json!(["RUN true"]));
        assert_eq!((cfg["User"].as_str(), &cfg["Labels"]), (Some("1"), &json!({"x": "1"})));
        let mut cfg = container.clone();
        apply_changes(&mut cfg, &["CMD [\"a\"]", "ENTRYPOINT b"]).unwrap();
        assert_eq!((&cfg["Cmd"], &cfg["Entrypoint"]), (&json!(["a"]), &json!(["/bin/sh", "-c", "b"])));
        let e = apply_changes(&mut cfg, &["RUN x"]).unwrap_err();
        assert_eq!(e.status, 400);
        assert!(e.message.contains("RUN is not a valid change command"), "{}", e.message);
        for bad in ["ONBUILD ONBUILD CMD x", "ONBUILD FROM x", "EXPOSE http", "CMD"] {
            assert_eq!(apply_changes(&mut cfg, &[bad]).unwrap_err().status, 400, "{bad}");
        }
        // A body config keeps its own values; the container's fill in the rest.
        let mut user = json!({"Cmd": ["x"], "Env": ["B=2"]});
        merge(&mut user, &container);
        assert_eq!((&user["Cmd"], &user["Env"]), (&json!(["x"]), &json!(["B=2", "PATH=/bin", "A=0"])));
        assert!(reference(Some("Bad"), None).is_err() && reference(Some("a"), Some("b c")).is_err());
        assert_eq!(reference(Some("img"), Some("2")).unwrap()[0].familiar(), "img:2");
        assert!(reference(None, Some("2")).unwrap().is_empty());
    }
}
