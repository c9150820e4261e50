//! Image archives: `save` writes a docker-archive that is also an OCI image layout (what
//! `docker save` 25+ writes; `docker load`, skopeo and podman read it); `load` reads a docker-archive or an OCI image layout tar; `import` turns a root
//! filesystem tarball into a one-layer image.
//!
//! `load` streams: every regular member that may be a layer or blob is spooled into the
//! content store as it passes (hashed on the way), small JSON members are kept in memory
//! (at most 4 MiB each), and the images are assembled at the end, because `docker save` puts
//! `manifest.json` last. Member names are never used as paths on disk. Blobs an archive
//! brought that no image ends up using are left for GC.

use crate::compression::{decompress, detect, Compression};
use crate::digest::{Digest, HashReader};
use crate::error::{quoted, Context, Error, ErrorKind, Result};
use crate::imagestore::{config_diff_ids, ImageRecord, ImageStore, LayerDesc};
use crate::reference::Reference;
use serde_json::{json, Value};
use std::collections::BTreeMap;
use std::io::{self, Read, Write};

const MAX_JSON: u64 = 4 << 20;
const DOCKER_MANIFEST: &str = "application/vnd.docker.distribution.manifest.v2+json";
const DOCKER_CONFIG: &str = "application/vnd.docker.container.image.v1+json";
const DOCKER_LAYER: &str = "application/vnd.docker.image.rootfs.diff.tar";
const DOCKER_LAYER_GZIP: &str = "application/vnd.docker.image.rootfs.diff.tar.gzip";
const OCI_MANIFEST: &str = "application/vnd.oci.image.manifest.v1+json";
const OCI_INDEX: &str = "application/vnd.oci.image.index.v1+json";
const OCI_CONFIG: &str = "application/vnd.oci.image.config.v1+json";
const OCI_LAYER: &str = "application/vnd.oci.image.layer.v1.tar";
const OCI_LAYER_GZIP: &str = "application/vnd.oci.image.layer.v1.tar+gzip";

fn bad(msg: impl Into<String>) -> Error {
    Error::new(ErrorKind::InvalidLayer, msg)
}

/// The images `save` writes for `names`, each with the tags to list: `save busybox:1` lists
/// that tag, `save <id>` none, `save busybox` every tag of that repository.
pub fn select(store: &ImageStore, names: &[String]) -> Result<Vec<(ImageRecord, Vec<Reference>)>> {
    let all = store.list()?;
    let mut images: Vec<(ImageRecord, Vec<Reference>)> = Vec::new();
    for name in names {
        let rec = store.resolve(name)?;
        let tags: Vec<Reference> = match Reference::parse(name) {
            Ok(r) if all.iter().any(|(x, n)| x.id == rec.id && n.contains(&r.to_string())) => {
                let bare = !name.contains(':') || name.rsplit('/').next().is_some_and(|l| !l.contains(':'));
                all.iter()
                    .filter(|(x, _)| x.id == rec.id)
                    .flat_map(|(_, n)| n.iter())
                    .filter_map(|n| Reference::parse(n).ok())
                    .filter(|n| n.to_string() == r.to_string() || (bare && n.name() == r.name()))
                    .collect()
            }
            _ => vec![],
        };
        match images.iter_mut().find(|(x, _)| x.id == rec.id) {
            Some((_, t)) => t.extend(tags),
            None => images.push((rec, tags)),
        }
    }
    Ok(images)
}

/// Write `images` (record + the references to list in RepoTags) as one tar that is both a
/// docker-archive (`manifest.json`, read by every `docker load`) and an OCI image layout
/// (`oci-layout`, `index.json`, read by skopeo, podman, containerd), sharing one copy of each blob under `blobs/sha256/`, as Docker 25 and later do.
/// Layers are written uncompressed (their digest is the DiffID), decompressed from the store on
/// the way out and checked against the DiffID.
pub fn save(store: &ImageStore, images: &[(ImageRecord, Vec<Reference>)], out: impl Write) -> Result<()> {
    let mut tar = tar::Builder::new(out);
    tar.mode(tar::HeaderMode::Deterministic);
    let mut manifest = Vec::new();
    let mut index = Vec::new();
    let mut written = std::collections::BTreeSet::new();
    for dir in ["blobs/", "blobs/sha256/"] {
        let mut h = tar::Header::new_gnu();
        h.set_size(0);
        h.set_mode(0o755);
        h.set_mtime(0);
        h.set_entry_type(tar::EntryType::Directory);
        tar.append_data(&mut h, dir, io::empty()).ctx(format_args!("writing {dir}"))?;
    }
    for (rec, names) in images {
        let config = store.content().read(&rec.id, 64 << 20)?;
        let cfg_name = blob_path(&rec.id);
        if written.insert(cfg_name.clone()) {
            append(&mut tar, &cfg_name, &config)?;
        }
        let mut layer_paths = Vec::new();
        let mut oci_layers = Vec::new();
        for (i, (l, chain)) in rec.layers.iter().zip(&rec.chain_ids).enumerate() {
            let diff_id = &rec.diff_ids[i];
            let path = blob_path(diff_id);
            layer_paths.push(path.clone());
            // The size comes from the snapshot, and is checked.
            let mut size = store
                .snapshot_size(chain)
                .ok_or_else(|| Error::new(ErrorKind::NotFound, format!("layer snapshot {chain} is missing")))?;
            if size % 512 != 0 || size < 1024 {
                // Not a tar's length: builds before this fix recorded the layer's file sizes
                // for its snapshot. Counted from the blob instead.
                let blob = io::BufReader::new(store.content().open(&l.digest)?);
                size = io::copy(&mut decompress(blob)?, &mut io::sink()).ctx(format_args!("reading {}", l.digest))?;
            }
            oci_layers.push(json!({"mediaType": OCI_LAYER, "digest": diff_id.to_string(), "size": size}));
            if !written.insert(path.clone()) {
                continue;
            }
            let blob = io::BufReader::new(store.content().open(&l.digest)?);
            let mut data = HashReader::new(decompress(blob)?);
            let mut h = tar::Header::new_gnu();
            h.set_size(size);
            h.set_mode(0o644);
            h.set_mtime(0);
            h.set_entry_type(tar::EntryType::Regular);
            tar.append_data(&mut h, &path, &mut data).ctx(format_args!("writing {path}"))?;
            if data.len() != size || data.digest() != *diff_id {
                return Err(bad(format!("layer {} does not decompress to its DiffID {diff_id}", l.digest)));
            }
        }
        let oci_manifest = serde_json::to_vec(&json!({
            "schemaVersion": 2,
            "mediaType": OCI_MANIFEST,
            "config": {"mediaType": OCI_CONFIG, "digest": rec.id.to_string(), "size": config.len()},
            "layers": oci_layers,
        }))
        .unwrap_or_default();
        let m_digest = Digest::of(&oci_manifest);
        if written.insert(blob_path(&m_digest)) {
            append(&mut tar, &blob_path(&m_digest), &oci_manifest)?;
        }
        let desc = json!({"mediaType": OCI_MANIFEST, "digest": m_digest.to_string(), "size": oci_manifest.len()});
        let tagged: Vec<&Reference> = names.iter().filter(|n| n.tag().is_some()).collect();
        if tagged.is_empty() {
            index.push(desc.clone());
        }
        for n in &tagged {
            let mut d = desc.clone();
            d["annotations"] = json!({
                "io.containerd.image.name": n.to_string(),
                "org.opencontainers.image.ref.name": n.tag().unwrap_or("latest"),
            });
            index.push(d);
        }
        let tags: Vec<String> = tagged.iter().map(|n| n.familiar()).collect();
        manifest.push(json!({
            "Config": cfg_name,
            "RepoTags": if tags.is_empty() { Value::Null } else { json!(tags) },
            "Layers": layer_paths,
        }));
    }
    let index = json!({"schemaVersion": 2, "mediaType": OCI_INDEX, "manifests": index});
    append(&mut tar, "index.json", index.to_string().as_bytes())?;
    append(&mut tar, "oci-layout", br#"{"imageLayoutVersion":"1.0.0"}"#)?;
    append(&mut tar, "manifest.json", Value::Array(manifest).to_string().as_bytes())?;
    tar.into_inner().ctx("finishing the archive")?.flush().ctx("writing the archive")
}

fn blob_path(d: &Digest) -> String {
    format!("blobs/sha256/{}", d.hex())
}

fn append<W: Write>(tar: &mut tar::Builder<W>, path: &str, data: &[u8]) -> Result<()> {
    let mut h = tar::Header::new_gnu();
    h.set_size(data.len() as u64);
    h.set_mode(0o644);
    h.set_mtime(0);
    h.set_entry_type(tar::EntryType::Regular);
    tar.append_data(&mut h, path, data).ctx(format_args!("writing {path}"))
}

/// One loaded image: its record and the references now pointing at it.
pub struct Loaded {
    pub image: ImageRecord,
    pub names: Vec<Reference>,
}

/// Read a docker-archive or OCI-layout tar from `input` into the store.
pub fn load(store: &ImageStore, input: impl Read) -> Result<Vec<Loaded>> {
    let mut archive = tar::Archive::new(input);
    let mut json_files: BTreeMap<String, Vec<u8>> = BTreeMap::new();
    // member path -> (blob digest, size, compression)
    let mut blobs: BTreeMap<String, (Digest, u64, Compression)> = BTreeMap::new();
    let entries = archive.entries().map_err(|e| bad(format!("reading the archive: {e}")))?;
    for entry in entries {
        let mut entry = entry.map_err(|e| bad(format!("reading the archive: {e}")))?;
        let path = entry.path().map_err(|e| bad(format!("archive member name: {e}")))?.to_string_lossy().into_owned();
        let name = path.trim_start_matches("./").to_string();
        if name.split('/').any(|c| c == "..") || name.starts_with('/') {
            return Err(bad(format!("archive member {name:?} escapes the archive")));
        }
        match entry.header().entry_type() {
            tar::EntryType::Regular | tar::EntryType::Continuous => {}
            tar::EntryType::Directory => continue,
            t if t.is_pax_global_extensions() || t.is_pax_local_extensions() => continue,
            other => {
                return Err(bad(format!(
                    "archive member {name:?} has unsupported type {other:?} (links are not allowed)"
                )))
            }
        }
        let size = entry.size();
        let is_json = name.ends_with(".json") || name == "repositories" || name == "oci-layout";
        if is_json && size <= MAX_JSON && !name.starts_with("blobs/") {
            let mut data = Vec::with_capacity(size as usize);
            entry.read_to_end(&mut data).map_err(|e| bad(format!("reading {name}: {e}")))?;
            json_files.insert(name, data);
            continue;
        }
        // Spool into the store, hashing; remember the compression from the first bytes.
        let mut head = [0u8; 512];
        let mut got = 0;
        while got < head.len() {
            let n = entry.read(&mut head[got..]).map_err(|e| bad(format!("reading {name}: {e}")))?;
            if n == 0 {
                break;
            }
            got += n;
        }
        let ingest_ref = format!("load-{}-{name}", std::process::id());
        let mut writer = store.content().writer(&ingest_ref)?;
        writer.reset()?;
        let copied = writer
            .write_all(&head[..got])
            .map_err(|e| bad(format!("storing {name}: {e}")))
            .and_then(|_| io::copy(&mut entry, &mut writer).map_err(|e| bad(format!("reading {name}: {e}"))));
        if let Err(e) = copied {
            let _ = writer.abort();
            return Err(e);
        }
        let comp = detect(&head[..got]).unwrap_or(Compression::None);
        let expected = name.strip_prefix("blobs/sha256/").map(Digest::from_hex).transpose()?;
        let digest = match writer.commit(Some(size), expected.as_ref()) {
            Ok(d) => d,
            Err(e) => {
                // A truncated member is kept by the store for resuming; an archive cannot resume.
                let _ = store.content().abort(&ingest_ref);
                return Err(Error::new(e.kind(), format!("archive member {name}: {e}")));
            }
        };
        blobs.insert(name, (digest, size, comp));
    }
    if let Some(m) = json_files.get("manifest.json") {
        load_docker(store, m, &json_files, &blobs)
    } else if json_files.contains_key("index.json") {
        load_oci(store, &json_files)
    } else {
        Err(bad("not an image archive: it has neither manifest.json (docker-archive) nor index.json (OCI layout)"))
    }
}

fn parse_json(name: &str, data: &[u8]) -> Result<Value> {
    serde_json::from_slice(data).map_err(|e| bad(format!("{name} is not valid JSON: {e}")))
}

fn load_docker(
    store: &ImageStore,
    manifest: &[u8],
    json_files: &BTreeMap<String, Vec<u8>>,
    blobs: &BTreeMap<String, (Digest, u64, Compression)>,
) -> Result<Vec<Loaded>> {
    let m = parse_json("manifest.json", manifest)?;
    let items = m.as_array().ok_or_else(|| bad("manifest.json is not a list"))?;
    let mut out = Vec::new();
    for item in items {
        let cfg_name = item["Config"].as_str().ok_or_else(|| bad("manifest.json: an entry has no Config"))?;
        let config = match json_files.get(cfg_name) {
            Some(c) => c.clone(),
            None => match blobs.get(cfg_name) {
                Some((d, _, _)) => store.content().read(d, MAX_JSON)?,
                None => return Err(bad(format!("manifest.json names config {cfg_name:?}, which the archive lacks"))),
            },
        };
        let mut layers = Vec::new();
        for l in item["Layers"].as_array().ok_or_else(|| bad("manifest.json: an entry has no Layers"))? {
            let p = l.as_str().unwrap_or("");
            let (digest, size, comp) =
                blobs.get(p).ok_or_else(|| bad(format!("manifest.json names layer {p:?}, which the archive lacks")))?;
            let media_type = match comp {
                Compression::Gzip => DOCKER_LAYER_GZIP,
                Compression::None => DOCKER_LAYER,
                Compression::Zstd => "application/vnd.oci.image.layer.v1.tar+zstd",
            };
            layers.push(LayerDesc { digest: digest.clone(), size: *size, media_type: media_type.into() });
        }
        let names: Vec<Reference> = item["RepoTags"]
            .as_array()
            .map(|a| a.iter().filter_map(|t| t.as_str()).map(Reference::parse).collect::<Result<Vec<_>>>())
            .transpose()?
            .unwrap_or_default();
        let manifest = json!({
            "schemaVersion": 2,
            "mediaType": DOCKER_MANIFEST,
            "config": {"mediaType": DOCKER_CONFIG, "size": config.len(), "digest": Digest::of(&config).to_string()},
            "layers": layers.iter().map(|l| json!({"mediaType": l.media_type, "size": l.size, "digest": l.digest.to_string()})).collect::<Vec<_>>(),
        });
        let manifest = serde_json::to_vec(&manifest).unwrap_or_default();
        let image = register_local(store, &names, &manifest, DOCKER_MANIFEST, &config, DOCKER_CONFIG, &layers)?;
        out.push(Loaded { image, names });
    }
    Ok(out)
}

fn load_oci(store: &ImageStore, json_files: &BTreeMap<String, Vec<u8>>) -> Result<Vec<Loaded>> {
    let index = parse_json("index.json", &json_files["index.json"])?;
    let mut out = Vec::new();
    for desc in index["manifests"].as_array().ok_or_else(|| bad("index.json has no manifests"))? {
        let ann = &desc["annotations"];
        let name = ann["io.containerd.image.name"]
            .as_str()
            .map(str::to_string)
            .or_else(|| ann["org.opencontainers.image.ref.name"].as_str().map(str::to_string));
        let mut digest = Digest::parse(desc["digest"].as_str().unwrap_or(""))?;
        let mut media_type = desc["mediaType"].as_str().unwrap_or(OCI_MANIFEST).to_string();
        let mut bytes = store.content().read(&digest, MAX_JSON)?;
        if media_type == OCI_INDEX || media_type == "application/vnd.docker.distribution.manifest.list.v2+json" {
            let idx = parse_json("an index", &bytes)?;
            let host = if cfg!(target_arch = "x86_64") { "amd64" } else { "arm64" };
            let pick = idx["manifests"]
                .as_array()
                .and_then(|ms| {
                    ms.iter().find(|m| m["platform"]["architecture"] == host && m["platform"]["os"] == "linux")
                })
                .ok_or_else(|| bad(format!("index {digest} has no linux/{host} image")))?;
            digest = Digest::parse(pick["digest"].as_str().unwrap_or(""))?;
            media_type = pick["mediaType"].as_str().unwrap_or(OCI_MANIFEST).to_string();
            bytes = store.content().read(&digest, MAX_JSON)?;
        }
        let m = parse_json(&format!("manifest {digest}"), &bytes)?;
        let cfg_digest = Digest::parse(m["config"]["digest"].as_str().unwrap_or(""))?;
        let config = store.content().read(&cfg_digest, 64 << 20)?;
        let mut layers = Vec::new();
        for l in m["layers"].as_array().cloned().unwrap_or_default() {
            layers.push(LayerDesc {
                digest: Digest::parse(l["digest"].as_str().unwrap_or(""))?,
                size: l["size"].as_u64().unwrap_or(0),
                media_type: l["mediaType"].as_str().unwrap_or(OCI_LAYER_GZIP).to_string(),
            });
        }
        let names = match name.as_deref() {
            // A bare ref.name is a tag ("latest"), not a repository: keep the image untagged.
            Some(n) if n.contains('/') || n.contains(':') => vec![Reference::parse(n)?],
            _ => vec![],
        };
        let cmt = m["config"]["mediaType"].as_str().unwrap_or(OCI_CONFIG).to_string();
        let image = register_local(store, &names, &bytes, &media_type, &config, &cmt, &layers)?;
        out.push(Loaded { image, names });
    }
    Ok(out)
}

/// Unpack each layer from its stored blob into a snapshot (DiffIDs checked) and register.
fn register_local(
    store: &ImageStore,
    names: &[Reference],
    manifest: &[u8],
    manifest_media_type: &str,
    config: &[u8],
    config_media_type: &str,
    layers: &[LayerDesc],
) -> Result<ImageRecord> {
    let cfg = parse_json("the image config", config)?;
    let (diff_ids, chains) = config_diff_ids(&cfg, layers.len())?;
    for (i, l) in layers.iter().enumerate() {
        let mut no_fetch = |_: u64| -> Result<Box<dyn Read + Send>> {
            Err(Error::new(ErrorKind::NotFound, format!("layer {} is not in the archive", l.digest)))
        };
        let parent = if i == 0 { None } else { Some(&chains[i - 1]) };
        store.ingest_layer(l, &diff_ids[i], &chains[i], parent, &mut no_fetch, &mut |_| {})?;
    }
    store.register(names, None, manifest, manifest_media_type, config, config_media_type, layers, None)
}

/// Settings `import` writes into the new image's config.
#[derive(Default, Clone, Debug)]
pub struct ImportOptions {
    pub os: String,
    pub architecture: String,
    pub variant: Option<String>,
    /// The image config's `config` object (Cmd, Env, ... from `--change`).
    pub config: Value,
    pub comment: Option<String>,
    /// RFC 3339 creation time.
    pub created: String,
}

impl ImportOptions {
    /// The options `berth import` and `POST /images/create?fromSrc=-` share: the platform
    /// (an arm64 image records no variant, as Docker's), each of `changes` applied in order
    /// (see [`apply_change`]), the commit message and the creation time (RFC 3339).
    pub fn new(
        os: &str,
        architecture: &str,
        variant: Option<&str>,
        changes: &[String],
        message: Option<&str>,
        created: String,
    ) -> Result<ImportOptions> {
        let mut config = json!({});
        for c in changes {
            apply_change(&mut config, c)?;
        }
        Ok(ImportOptions {
            os: os.to_string(),
            architecture: architecture.to_string(),
            variant: variant.filter(|_| architecture != "arm64").map(str::to_string),
            config,
            comment: message.filter(|m| !m.is_empty()).map(str::to_string),
            created,
        })
    }
}

/// The instructions `import` accepts as changes, as Docker names them.
pub const IMPORT_CHANGES: &str = "CMD, ENTRYPOINT, ENV, EXPOSE, LABEL, USER, WORKDIR, VOLUME, STOPSIGNAL";

/// Split `s` into words at unquoted whitespace; quotes (`"..."`, `'...'`) group and are removed,
/// a backslash escapes the next character.
fn shell_words(s: &str) -> Result<Vec<String>> {
    let mut out = Vec::new();
    let mut cur = String::new();
    let mut in_word = false;
    let mut quote: Option<char> = None;
    let mut chars = s.chars();
    while let Some(c) = chars.next() {
        match (quote, c) {
            (Some(q), c) if c == q => quote = None,
            (Some('"'), '\\') | (None, '\\') => {
                if let Some(n) = chars.next() {
                    cur.push(n);
                }
                in_word = true;
            }
            (Some(_), c) => cur.push(c),
            (None, '"' | '\'') => {
                quote = Some(c);
                in_word = true;
            }
            (None, c) if c.is_whitespace() => {
                if in_word {
                    out.push(std::mem::take(&mut cur));
                    in_word = false;
                }
            }
            (None, c) => {
                cur.push(c);
                in_word = true;
            }
        }
    }
    if quote.is_some() {
        return Err(Error::new(ErrorKind::InvalidArgument, format!("unterminated quote in {}", quoted(s))));
    }
    if in_word {
        out.push(cur);
    }
    Ok(out)
}

/// One Dockerfile instruction applied to an image config's `config` object (what `docker
/// import --change` accepts): CMD, ENTRYPOINT (JSON or shell form), ENV and LABEL
/// (`k=v ...` or `k v`), EXPOSE (`80`, `53/udp`), USER, WORKDIR, VOLUME (JSON or words),
/// STOPSIGNAL. Anything else is refused, naming the instruction.
pub fn apply_change(cfg: &mut Value, change: &str) -> Result<()> {
    let change = change.trim();
    let (instr, rest) = change.split_once(char::is_whitespace).unwrap_or((change, ""));
    let rest = rest.trim();
    let bad_arg = |why: &str| Error::new(ErrorKind::InvalidArgument, format!("change {}: {why}", quoted(change)));
    let json_list = |r: &str| serde_json::from_str::<Vec<String>>(r).ok();
    let cmd_form = |r: &str| -> Value {
        match json_list(r) {
            Some(v) => json!(v),
            None => json!(["/bin/sh", "-c", r]),
        }
    };
    let kv = |r: &str| -> Result<Vec<(String, String)>> {
        let words = shell_words(r)?;
        if words.first().is_some_and(|w| w.contains('=')) {
            words
                .iter()
                .map(|w| {
                    w.split_once('=')
                        .map(|(k, v)| (k.to_string(), v.to_string()))
                        .ok_or_else(|| bad_arg(&format!("{w:?} is not KEY=VALUE")))
                })
                .collect()
        } else {
            // The legacy form: the first word is the key, the rest of the line the value.
            let (k, v) = r.split_once(char::is_whitespace).ok_or_else(|| bad_arg("needs KEY=VALUE or KEY VALUE"))?;
            Ok(vec![(k.to_string(), v.trim().to_string())])
        }
    };
    let upper = instr.to_ascii_uppercase();
    if rest.is_empty() && !upper.is_empty() {
        return Err(bad_arg(&format!("{upper} needs an argument")));
    }
    match upper.as_str() {
        "CMD" => cfg["Cmd"] = cmd_form(rest),
        "ENTRYPOINT" => cfg["Entrypoint"] = cmd_form(rest),
        "WORKDIR" => cfg["WorkingDir"] = json!(rest),
        "USER" => cfg["User"] = json!(rest),
        "STOPSIGNAL" => cfg["StopSignal"] = json!(rest),
        "ENV" => {
            let mut env: Vec<Value> = cfg["Env"].as_array().cloned().unwrap_or_default();
            for (k, v) in kv(rest)? {
                if k.is_empty() {
                    return Err(bad_arg("an empty variable name"));
                }
                env.retain(|x| x.as_str().is_none_or(|s| !s.starts_with(&format!("{k}="))));
                env.push(json!(format!("{k}={v}")));
            }
            cfg["Env"] = json!(env);
        }
        "LABEL" => {
            for (k, v) in kv(rest)? {
                if !cfg["Labels"].is_object() {
                    cfg["Labels"] = json!({});
                }
                cfg["Labels"][k] = json!(v);
            }
        }
        "EXPOSE" => {
            for p in rest.split_whitespace() {
                let (port, proto) = p.split_once('/').unwrap_or((p, "tcp"));
                let ok_port = |x: &str| x.parse::<u16>().is_ok_and(|n| n > 0);
                let ok = match port.split_once('-') {
                    Some((a, b)) => ok_port(a) && ok_port(b),
                    None => ok_port(port),
                };
                if !ok || !matches!(proto.to_ascii_lowercase().as_str(), "tcp" | "udp" | "sctp") {
                    return Err(bad_arg(&format!("invalid port {p:?}")));
                }
                if !cfg["ExposedPorts"].is_object() {
                    cfg["ExposedPorts"] = json!({});
                }
                cfg["ExposedPorts"][format!("{port}/{}", proto.to_ascii_lowercase())] = json!({});
            }
        }
        "VOLUME" => {
            let paths = match json_list(rest) {
                Some(v) => v,
                None => shell_words(rest)?,
            };
            for p in paths {
                if !p.starts_with('/') {
                    return Err(bad_arg(&format!("volume path {p:?} is not absolute")));
                }
                if !cfg["Volumes"].is_object() {
                    cfg["Volumes"] = json!({});
                }
                cfg["Volumes"][p] = json!({});
            }
        }
        other => {
            let what = if other.is_empty() { "an empty instruction".to_string() } else { other.to_string() };
            return Err(bad_arg(&format!("{what} is not supported ({IMPORT_CHANGES})")));
        }
    }
    Ok(())
}

/// Whether a 512-byte block is a tar header: its checksum field (octal) matches the sum of its
/// bytes with that field counted as spaces (unsigned, or signed as some old tars wrote it).
fn tar_header_ok(b: &[u8]) -> bool {
    let field: String = b[148..156].iter().take_while(|c| **c != 0).map(|c| *c as char).collect();
    let Ok(want) = i64::from_str_radix(field.trim(), 8) else { return false };
    let counted = |i: usize, c: u8| if (148..156).contains(&i) { b' ' } else { c };
    let unsigned: i64 = b.iter().enumerate().map(|(i, &c)| i64::from(counted(i, c))).sum();
    let signed: i64 = b.iter().enumerate().map(|(i, &c)| i64::from(counted(i, c) as i8)).sum();
    want == unsigned || want == signed
}

/// A message from a parser that may quote raw input, as one printable line of bounded length.
fn printable(s: &str) -> String {
    let clean: String =
        s.chars().map(|c| if c.is_control() || c == char::REPLACEMENT_CHARACTER { '?' } else { c }).collect();
    match clean.char_indices().nth(200) {
        Some((i, _)) => format!("{}...", &clean[..i]),
        None => clean,
    }
}

/// A root filesystem tarball (plain, gzip or zstd) becomes a one-layer image, stored gzip-
/// compressed; the DiffID and the blob digest are computed in the same pass. Input that is
/// not a tar archive is refused and leaves nothing in the store.
pub fn import(
    store: &ImageStore,
    input: impl Read + Send,
    names: &[Reference],
    opts: &ImportOptions,
) -> Result<ImageRecord> {
    static SEQ: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
    let seq = SEQ.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let mut dec = decompress(input)?;
    // Refuse what is not a tar before anything is stored: the first block must be a header
    // whose checksum matches (or the zero block of an empty archive).
    let mut first = vec![0u8; 512];
    let mut n = 0;
    while n < first.len() {
        match dec.read(&mut first[n..]) {
            Ok(0) => break,
            Ok(k) => n += k,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(bad(format!("reading the tarball: {e}"))),
        }
    }
    first.truncate(n);
    if n == 512 && first.iter().any(|b| *b != 0) && !tar_header_ok(&first) {
        return Err(bad("the input is not a tar archive (its first block is not a tar header)"));
    }
    let mut raw = HashReader::new(io::Cursor::new(first).chain(dec));
    // One ingest per import (a daemon runs several at once); nothing here can be resumed.
    let mut writer = store.content().writer(&format!("import-{}-{seq}", std::process::id()))?;
    writer.reset()?;
    let copied = (|| {
        let mut gz = flate2::write::GzEncoder::new(&mut writer, flate2::Compression::fast());
        io::copy(&mut raw, &mut gz).map_err(|e| bad(format!("reading the tarball: {e}")))?;
        gz.finish().ctx("compressing the layer")?;
        Ok(())
    })();
    if let Err(e) = copied {
        let _ = writer.abort();
        return Err(e);
    }
    if raw.len() < 1024 {
        let _ = writer.abort();
        return Err(bad("the input is not a tar archive (shorter than one tar block)"));
    }
    let size = writer.offset();
    let diff_id = raw.digest();
    let existed = store.content().has(&writer.digest())?;
    let digest = writer.commit(Some(size), None)?;
    let layer = LayerDesc { digest: digest.clone(), size, media_type: OCI_LAYER_GZIP.into() };
    let mut config = json!({
        "architecture": opts.architecture,
        "os": opts.os,
        "created": opts.created,
        "config": opts.config,
        "rootfs": {"type": "layers", "diff_ids": [diff_id.to_string()]},
        "history": [{"created": opts.created, "created_by": "berth import", "comment": opts.comment.clone().unwrap_or_default()}],
    });
    if let Some(v) = &opts.variant {
        config["variant"] = json!(v);
    }
    if let Some(c) = &opts.comment {
        config["comment"] = json!(c); // Docker's image Comment
    }
    let config = serde_json::to_vec(&config).unwrap_or_default();
    let manifest = serde_json::to_vec(&json!({
        "schemaVersion": 2,
        "mediaType": OCI_MANIFEST,
        "config": {"mediaType": OCI_CONFIG, "size": config.len(), "digest": Digest::of(&config).to_string()},
        "layers": [{"mediaType": OCI_LAYER_GZIP, "size": size, "digest": digest.to_string()}],
    }))
    .unwrap_or_default();
    match register_local(store, names, &manifest, OCI_MANIFEST, &config, OCI_CONFIG, &[layer]) {
        Ok(rec) => Ok(rec),
        Err(e) => {
            // Not a tar after all (the unpack failed): the blob this import added goes again.
            if !existed {
                let _ = store.content().delete(&digest);
            }
            match e.kind() {
                ErrorKind::InvalidLayer => {
                    Err(bad(format!("the input is not a valid tar archive: {}", printable(&e.to_string()))))
                }
                _ => Err(e),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn import_changes() {
        let mut cfg = json!({});
        apply_change(&mut cfg, r#"CMD ["sh", "-c", "echo hi"]"#).unwrap();
        apply_change(&mut cfg, "ENTRYPOINT /init").unwrap();
        apply_change(&mut cfg, "ENV A=1 B=2").unwrap();
        apply_change(&mut cfg, r#"ENV C="x y" A=3"#).unwrap();
        apply_change(&mut cfg, "ENV LEGACY some value").unwrap();
        apply_change(&mut cfg, "EXPOSE 80 53/udp").unwrap();
        apply_change(&mut cfg, r#"LABEL a="b c" d=e"#).unwrap();
        apply_change(&mut cfg, r#"VOLUME ["/data", "/logs"]"#).unwrap();
        apply_change(&mut cfg, "volume /cache").unwrap();
        apply_change(&mut cfg, "USER nobody").unwrap();
        apply_change(&mut cfg, "WORKDIR /srv").unwrap();
        apply_change(&mut cfg, "STOPSIGNAL SIGINT").unwrap();
        assert_eq!(cfg["Cmd"], json!(["sh", "-c", "echo hi"]));
        assert_eq!(cfg["Entrypoint"], json!(["/bin/sh", "-c", "/init"]));
        assert_eq!(cfg["Env"], json!(["B=2", "C=x y", "A=3", "LEGACY=some value"]));
        assert!(cfg["ExposedPorts"]["80/tcp"].is_object() && cfg["ExposedPorts"]["53/udp"].is_object());
        assert_eq!(cfg["Labels"], json!({"a": "b c", "d": "e"}));
        assert_eq!(cfg["Volumes"], json!({"/data": {}, "/logs": {}, "/cache": {}}));
        assert_eq!((cfg["User"].as_str(), cfg["WorkingDir"].as_str()), (Some("nobody"), Some("/srv")));
        assert_eq!(cfg["StopSignal"], "SIGINT");
        for bad in ["RUN x", "", "CMD", "EXPOSE http", "VOLUME data", r#"LABEL a="x"#, "ENV A=1 B"] {
            let e = apply_change(&mut cfg, bad).unwrap_err();
            assert_eq!(e.kind(), ErrorKind::InvalidArgument, "{bad}: {e}");
        }
        assert!(apply_change(&mut cfg, "RUN x").unwrap_err().to_string().contains("RUN is not supported"));
        let mut h = tar::Header::new_gnu();
        h.set_path("bin/sh").unwrap();
        h.set_size(0);
        h.set_cksum();
        assert!(tar_header_ok(h.as_bytes()));
        let mut broken = h.as_bytes().to_vec();
        broken[0] = b'x';
        assert!(!tar_header_ok(&broken) && !tar_header_ok(&[b'z'; 512]));
        assert_eq!(printable("a\u{1}b\u{fffd}\nc"), "a?b??c");
        let o = ImportOptions::new("linux", "arm64", Some("v8"), &["USER 1".into()], Some("m"), "t".into()).unwrap();
        assert_eq!((o.variant, o.comment.as_deref(), &o.config), (None, Some("m"), &json!({"User": "1"})));
    }
}
