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
use crate::error::{Context, Error, ErrorKind, Result};
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

/// Write `images` (record + the references to list in RepoTags) as a docker-archive.
/// Write `images` as one tar that is both a docker-archive (`manifest.json`, read by every
/// `docker load`) and an OCI image layout (`oci-layout`, `index.json`, read by skopeo, podman,
/// containerd), sharing one copy of each blob under `blobs/sha256/`, as Docker 25 and later do.
/// Layers are written uncompressed (their digest is the DiffID), decompressed from the store on
/// the way out and checked against the DiffID.
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
            let size = store
                .snapshot_size(chain)
                .ok_or_else(|| Error::new(ErrorKind::NotFound, format!("layer snapshot {chain} is missing")))?;
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

/// A root filesystem tarball (plain, gzip or zstd) becomes a one-layer image, stored gzip-
/// compressed; the DiffID and the blob digest are computed in the same pass.
pub fn import(
    store: &ImageStore,
    input: impl Read + Send,
    names: &[Reference],
    opts: &ImportOptions,
) -> Result<ImageRecord> {
    let mut raw = HashReader::new(decompress(input)?);
    let mut writer = store.content().writer(&format!("import-{}", std::process::id()))?;
    writer.reset()?;
    {
        let mut gz = flate2::write::GzEncoder::new(&mut writer, flate2::Compression::fast());
        io::copy(&mut raw, &mut gz).map_err(|e| bad(format!("reading the tarball: {e}")))?;
        gz.finish().ctx("compressing the layer")?;
    }
    if raw.len() < 1024 {
        let _ = writer.abort();
        return Err(bad("the input is not a tar archive (shorter than one tar block)"));
    }
    let size = writer.offset();
    let diff_id = raw.digest();
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
    let config = serde_json::to_vec(&config).unwrap_or_default();
    let manifest = serde_json::to_vec(&json!({
        "schemaVersion": 2,
        "mediaType": OCI_MANIFEST,
        "config": {"mediaType": OCI_CONFIG, "size": config.len(), "digest": Digest::of(&config).to_string()},
        "layers": [{"mediaType": OCI_LAYER_GZIP, "size": size, "digest": digest.to_string()}],
    }))
    .unwrap_or_default();
    register_local(store, names, &manifest, OCI_MANIFEST, &config, OCI_CONFIG, &[layer])
}
