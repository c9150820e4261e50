//! `berth build --output` (`-o`): the built image exported as `docker buildx build --output`
//! does, besides the copy the daemon keeps in its store. Everything goes through the Engine API:
//!
//! - `local` and `tar` (the image's root filesystem): a container is created from the image
//!   (never started), its `GET /containers/{id}/export` read, and the container removed with its
//!   anonymous volumes. A never-started container's root filesystem is the image's layers
//!   flattened: no `/.dockerenv`, `/etc/hostname`, `/etc/hosts` or `/etc/resolv.conf` and no
//!   `/proc`, `/sys`, `/dev` mount points are added (the daemon makes those when a container
//!   starts). `local` unpacks the tar with [`berth_image::apply_layer`] (`Flatten`), so no entry
//!   is written outside the directory.
//! - `docker` and `oci`: `GET /images/get`, whose archive is both a docker-archive
//!   (`manifest.json`) and an OCI image layout (`oci-layout`, `index.json`, `blobs/sha256/`),
//!   with the names (`name=`, else the `-t` tags) written into `manifest.json`'s RepoTags and
//!   `index.json`'s annotations.
//! - `image`, and `docker` without `dest`: the image stays in the store, tagged with `name=`.
//!
//! A file destination is written to a temporary file next to it and renamed into place once
//! complete: a failure leaves no partial file.

use crate::client::{enc, Client, Fail, R};
use berth_image::Reference;
use serde_json::{json, Value};
use std::io::{BufWriter, IsTerminal, Read, Write};
use std::path::{Path, PathBuf};

/// The exporter of one `--output`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// Keep the image in the daemon's store (the default).
    Image,
    /// The root filesystem into a directory.
    Local,
    /// The root filesystem as a tar archive.
    Tar,
    /// A `docker save` archive (docker-archive that is also an OCI layout).
    Docker,
    /// An OCI image layout tarball.
    Oci,
}

impl Kind {
    fn name(self) -> &'static str {
        match self {
            Kind::Image => "image",
            Kind::Local => "local",
            Kind::Tar => "tar",
            Kind::Docker => "docker",
            Kind::Oci => "oci",
        }
    }
}

/// Where an output is written.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Dest {
    /// Nowhere outside the store (`image`, `docker` without `dest`).
    Store,
    /// Standard output (`dest=-`).
    Stdout,
    Path(PathBuf),
}

/// One parsed `--output` value.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Output {
    pub kind: Kind,
    pub dest: Dest,
    /// References from `name=` (checked).
    pub names: Vec<String>,
}

/// Split a CSV record as Go's `encoding/csv` (which buildx uses) does for one line: fields
/// separated by commas, a field in double quotes may hold commas, `""` inside quotes is a quote.
fn csv_fields(s: &str) -> Result<Vec<String>, String> {
    let mut out = Vec::new();
    let mut cur = String::new();
    let mut chars = s.chars().peekable();
    let mut quoted = false;
    let mut at_start = true;
    while let Some(c) = chars.next() {
        match c {
            '"' if quoted && chars.peek() == Some(&'"') => {
                chars.next();
                cur.push('"');
            }
            '"' if quoted => quoted = false,
            '"' if at_start => quoted = true,
            ',' if !quoted => {
                out.push(std::mem::take(&mut cur));
                at_start = true;
                continue;
            }
            c => cur.push(c),
        }
        at_start = false;
    }
    if quoted {
        return Err(format!("invalid --output {s:?}: unterminated quote"));
    }
    out.push(cur);
    Ok(out)
}

/// Parse an `--output` value: `type=<t>[,dest=<path>][,name=<ref>[,<ref>...]]`, or a bare path
/// (`type=local,dest=<path>`), or `-` (`type=tar,dest=-`).
pub fn parse(s: &str) -> Result<Output, String> {
    if s.is_empty() {
        return Err("invalid --output \"\": give type=<type>[,dest=<path>], a directory, or -".into());
    }
    let fields = csv_fields(s)?;
    if fields.len() == 1 && fields[0] == s && !s.starts_with("type=") {
        return Ok(match s {
            "-" => Output { kind: Kind::Tar, dest: Dest::Stdout, names: vec![] },
            p => Output { kind: Kind::Local, dest: Dest::Path(PathBuf::from(p)), names: vec![] },
        });
    }
    let (mut kind, mut dest, mut names) = (None, None, Vec::new());
    for f in &fields {
        let (k, v) = f.split_once('=').ok_or_else(|| format!("invalid --output {s:?}: {f:?} is not key=value"))?;
        match k.trim().to_ascii_lowercase().as_str() {
            "type" => kind = Some(v.to_string()),
            "dest" => dest = Some(v.to_string()),
            "name" => names.extend(v.split(',').filter(|n| !n.is_empty()).map(str::to_string)),
            other => return Err(format!("invalid --output {s:?}: unsupported option {other:?}")),
        }
    }
    let kind = match kind.as_deref() {
        None => return Err(format!("invalid --output {s:?}: type is required")),
        Some("image") => Kind::Image,
        Some("local") => Kind::Local,
        Some("tar") => Kind::Tar,
        Some("docker") => Kind::Docker,
        Some("oci") => Kind::Oci,
        Some(t) => return Err(format!("unsupported --output type {t:?} (supported: local, tar, docker, oci, image)")),
    };
    let t = kind.name();
    let dest = match (kind, dest.as_deref()) {
        (Kind::Image, None) | (Kind::Docker, None) => Dest::Store,
        (Kind::Image, Some(_)) => return Err("--output type=image takes no dest".into()),
        (Kind::Local, None | Some("")) => return Err("--output type=local needs dest=<directory>".into()),
        (Kind::Local, Some("-")) => return Err("--output type=local cannot write to stdout: give a directory".into()),
        (_, None | Some("-")) => Dest::Stdout,
        (_, Some("")) => return Err(format!("--output type={t}: dest is empty")),
        (_, Some(p)) => Dest::Path(PathBuf::from(p)),
    };
    if !names.is_empty() && matches!(kind, Kind::Local | Kind::Tar) {
        return Err(format!("--output type={t} takes no name (only image, docker and oci do)"));
    }
    for n in &names {
        Reference::parse(n).map_err(|e| format!("--output name {n:?}: {e}"))?;
    }
    Ok(Output { kind, dest, names })
}

/// Parse every `--output` and check them together: at most one goes to stdout, and stdout is not
/// a terminal then. Nothing is sent to the daemon before this passes.
pub fn parse_all(values: &[String]) -> Result<Vec<Output>, String> {
    let outs = values.iter().map(|v| parse(v)).collect::<Result<Vec<_>, _>>()?;
    let to_stdout: Vec<&Output> = outs.iter().filter(|o| o.dest == Dest::Stdout).collect();
    if to_stdout.len() > 1 {
        return Err("only one --output can be written to stdout".into());
    }
    if let Some(o) = to_stdout.first() {
        if std::io::stdout().is_terminal() {
            return Err(format!(
                "refusing to write the {} output to a terminal: give dest=<file> or redirect stdout",
                o.kind.name()
            ));
        }
    }
    Ok(outs)
}

/// Export the built image `id` to `o`. `tags` are the build's `-t` names, the names of a
/// `docker`/`oci` archive when the output gives none.
pub fn export(c: &Client, o: &Output, id: &str, tags: &[String]) -> R<()> {
    let names = if o.names.is_empty() { tags } else { &o.names[..] };
    match (o.kind, &o.dest) {
        (Kind::Image | Kind::Docker, Dest::Store) => tag(c, id, &o.names),
        (Kind::Local, Dest::Path(dir)) => local(c, id, dir),
        (Kind::Local, _) | (Kind::Image, _) => Err(Fail(1, "--output: internal error: bad destination".into())),
        (Kind::Tar, dest) => write_to(dest, |w| {
            with_rootfs(c, id, |body| {
                std::io::copy(body, w).map(|_| ()).map_err(|e| Fail(1, format!("exporting the root filesystem: {e}")))
            })
        }),
        (Kind::Docker | Kind::Oci, dest) => write_to(dest, |w| image_archive(c, id, names, w)),
    }
}

/// Tag the image with each of `names` (`POST /images/{id}/tag`).
fn tag(c: &Client, id: &str, names: &[String]) -> R<()> {
    for n in names {
        let r = Reference::parse(n).map_err(|e| Fail(1, format!("--output name {n:?}: {e}")))?;
        let t = r.tag().unwrap_or("latest");
        c.call("POST", &format!("/images/{id}/tag?repo={}&tag={}", enc(&r.familiar_name()), enc(t)), None)?;
    }
    Ok(())
}

/// Run `f` on the image's root filesystem as a tar (`GET /containers/{id}/export` of a container
/// created for it and never started), then remove that container and its anonymous volumes.
fn with_rootfs(c: &Client, id: &str, f: impl FnOnce(&mut dyn Read) -> R<()>) -> R<()> {
    let v = c.call("POST", "/containers/create", Some(&json!({"Image": id, "Cmd": ["true"]})))?.json()?;
    let cid = v["Id"].as_str().unwrap_or_default().to_string();
    if cid.is_empty() {
        return Err(Fail(1, "creating a container to export the image: the daemon gave no ID".into()));
    }
    let r = c
        .stream("GET", &format!("/containers/{cid}/export"), None)
        .map_err(Fail::from)
        .and_then(|mut body| f(&mut body));
    if let Err(e) = c.call("DELETE", &format!("/containers/{cid}?force=1&v=1"), None) {
        eprintln!("berth: removing the container {cid} made for the export: {e}");
    }
    r
}

/// `type=local`: the root filesystem unpacked into `dir` (created if missing).
fn local(c: &Client, id: &str, dir: &Path) -> R<()> {
    std::fs::create_dir_all(dir)
        .map_err(|e| Fail(1, format!("creating the output directory {}: {e}", dir.display())))?;
    with_rootfs(c, id, |body| {
        berth_image::apply_layer(dir, body, berth_image::ApplyMode::Flatten)
            .map(|_| ())
            .map_err(|e| Fail(1, format!("writing the output to {}: {e}", dir.display())))
    })
}

/// Write through `f` to stdout, or to a temporary file beside `dest` renamed to `dest` once
/// complete (removed on failure).
fn write_to(dest: &Dest, f: impl FnOnce(&mut dyn Write) -> R<()>) -> R<()> {
    let path = match dest {
        Dest::Path(p) => p,
        _ => {
            let mut out = BufWriter::with_capacity(256 << 10, std::io::stdout().lock());
            f(&mut out)?;
            return out.flush().map_err(|e| Fail(1, format!("writing the output to stdout: {e}")));
        }
    };
    let name = path
        .file_name()
        .ok_or_else(|| Fail(1, format!("--output dest {}: not a file name", path.display())))?
        .to_string_lossy();
    let dir = path.parent().filter(|p| !p.as_os_str().is_empty()).unwrap_or(Path::new("."));
    let tmp = dir.join(format!(".{name}.berth-partial-{}", std::process::id()));
    let file = std::fs::File::options()
        .write(true)
        .create_new(true)
        .open(&tmp)
        .map_err(|e| Fail(1, format!("writing the output {}: {e}", path.display())))?;
    let mut w = BufWriter::with_capacity(256 << 10, file);
    let failed = |e: std::io::Error| Fail(1, format!("writing the output {}: {e}", path.display()));
    let r = f(&mut w).and_then(|()| {
        let file = w.into_inner().map_err(|e| failed(e.into_error()))?;
        file.sync_all().map_err(failed)?;
        std::fs::rename(&tmp, path).map_err(failed)
    });
    if r.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    r
}

/// `type=docker|oci`: the daemon's image archive of `id`, named `names` when there are any.
fn image_archive(c: &Client, id: &str, names: &[String], w: &mut dyn Write) -> R<()> {
    let mut body = c.stream("GET", &format!("/images/get?names={}", enc(id)), None)?;
    let failed = |e: std::io::Error| Fail(1, format!("saving the image: {e}"));
    if names.is_empty() {
        return std::io::copy(&mut body, w).map(|_| ()).map_err(failed);
    }
    let refs: Vec<Reference> =
        names.iter().map(|n| Reference::parse(n).map_err(|e| Fail(1, format!("name {n:?}: {e}")))).collect::<R<_>>()?;
    rename_archive(&mut body, w, &refs).map_err(failed)
}

/// Copy an image archive of one image, naming it `names`: `manifest.json`'s RepoTags and one
/// `index.json` descriptor per name (annotated as `docker save` does); other members as they are.
fn rename_archive(input: &mut dyn Read, out: &mut dyn Write, names: &[Reference]) -> std::io::Result<()> {
    let bad = |m: &str| std::io::Error::new(std::io::ErrorKind::InvalidData, m.to_string());
    let mut ar = tar::Archive::new(input);
    let mut b = tar::Builder::new(out);
    for e in ar.entries()? {
        let mut e = e?;
        let path = e.path()?.to_string_lossy().into_owned();
        let mut h = e.header().clone();
        if path != "index.json" && path != "manifest.json" {
            b.append_data(&mut h, &path, &mut e)?;
            continue;
        }
        let mut data = Vec::new();
        e.by_ref().take(16 << 20).read_to_end(&mut data)?;
        let mut v: Value = serde_json::from_slice(&data).map_err(|_| bad("the daemon's archive has bad JSON"))?;
        if path == "index.json" {
            let first = v["manifests"].get(0).cloned().ok_or_else(|| bad("the daemon's index.json lists nothing"))?;
            let list: Vec<Value> = names
                .iter()
                .map(|n| {
                    let mut d = first.clone();
                    d["annotations"] = json!({
                        "io.containerd.image.name": n.to_string(),
                        "org.opencontainers.image.ref.name": n.tag().unwrap_or("latest"),
                    });
                    d
                })
                .collect();
            v["manifests"] = Value::Array(list);
        } else {
            let item = v.get_mut(0).ok_or_else(|| bad("the daemon's manifest.json lists nothing"))?;
            item["RepoTags"] = json!(names.iter().map(Reference::familiar).collect::<Vec<_>>());
        }
        let data = v.to_string().into_bytes();
        h.set_size(data.len() as u64);
        b.append_data(&mut h, &path, &data[..])?;
    }
    b.into_inner()?.flush()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn forms() {
        let p = |s: &str| parse(s).unwrap();
        assert_eq!(p("out").kind, Kind::Local);
        assert_eq!(p("out").dest, Dest::Path("out".into()));
        assert_eq!(p("a=b").dest, Dest::Path("a=b".into()));
        assert_eq!(p("dest=x").kind, Kind::Local);
        assert_eq!((p("-").kind, p("-").dest), (Kind::Tar, Dest::Stdout));
        assert_eq!(p("type=tar").dest, Dest::Stdout);
        assert_eq!(p("type=docker").dest, Dest::Store);
        assert_eq!(p("type=oci,dest=x.tar").dest, Dest::Path("x.tar".into()));
        assert_eq!(p("type=docker,dest=-,\"name=a:1,b\"").names, vec!["a:1", "b"]);
        assert_eq!(p("type=image,name=x").names, vec!["x"]);
        for bad in
            ["", "type=nope", "type=local", "type=local,dest=-", "dest=x,name=y", "type=tar,name=x", "type=tar,foo=1"]
        {
            assert!(parse(bad).is_err(), "{bad}");
        }
        assert!(parse("type=nope").unwrap_err().contains("\"nope\""));
        assert!(parse("type=docker,name=UPPER").is_err());
    }
}
