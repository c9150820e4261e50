//! `berth build`: the context directory (minus what `.dockerignore` excludes) sent as a tar to
//! the daemon's `POST /build`, the build's output shown as it streams back.

use crate::client::{enc, Client, Fail, ReqBody, R};
use clap::Args;
use serde_json::Value;
use std::io::Read;
use std::path::{Path, PathBuf};

pub(crate) const BUILD_LONG: &str = "Build an image from a Dockerfile and a context.

The context is a directory (sent to the daemon without what .dockerignore excludes), a tar
archive on stdin (`-`), or a Dockerfile alone on stdin (`-`, no context). The daemon runs the
Dockerfile's stages with a layer cache: an unchanged step is reused (`---> Using cache`).
Image times come from SOURCE_DATE_EPOCH (a --build-arg) or the base image, so the same inputs
give the same image ID.

The image is always kept in the daemon's store; --output (-o) also exports it, as
`docker buildx build --output` does. Forms (repeatable, at most one to stdout):
  type=local,dest=DIR       the image's root filesystem written into DIR (created if missing)
  type=tar[,dest=FILE|-]    the root filesystem as a tar archive (stdout when no dest or -)
  type=docker,dest=FILE|-   a `docker save` archive of the image (docker load reads it); it is
                            also an OCI image layout. Without dest: the image stays in the store
  type=oci[,dest=FILE|-]    an OCI image layout tarball (skopeo oci-archive:, podman load)
  type=image                the default: the image stays in the store
  DIR                       short for type=local,dest=DIR
  -                         short for type=tar,dest=-
docker, oci and image take name=REF[,REF...] (quote the field for several: '\"name=a,b\"'):
the archive's image names (default: the -t tags), or the tags given to the image in the store.
The root filesystem is the image's layers flattened (no /.dockerenv, /etc/hostname or
mount points added). A file is written beside DEST and renamed into place when complete;
with stdout as the destination the build's output goes to stderr.

--progress=tty shows the build as BuildKit does on a terminal: a view on stderr redrawn in
place, one line per step (CACHED when reused) with its time and the running step's last
output lines; at the end every step with its time, and when a step failed its output. plain
prints the builder's lines as they come (`Step 2/5 : RUN make`, ` ---> Using cache`, the
commands' output). auto, the default, is tty when stderr is a terminal, plain otherwise.";

#[derive(Args, Debug)]
#[command(long_about = BUILD_LONG)]
pub struct BuildArgs {
    /// Name and optionally a tag (name:tag); may be repeated
    #[arg(short = 't', long = "tag")]
    tags: Vec<String>,
    /// Name of the Dockerfile (default: PATH/Dockerfile; `-` reads it from stdin)
    #[arg(short = 'f', long = "file")]
    file: Option<String>,
    /// Set build-time variables (KEY=VALUE, or KEY to take it from the environment)
    #[arg(long = "build-arg")]
    build_args: Vec<String>,
    /// Set the target build stage to build
    #[arg(long)]
    target: Option<String>,
    /// Do not use the cache when building the image
    #[arg(long)]
    no_cache: bool,
    /// Always attempt to pull a newer version of the base images
    #[arg(long)]
    pull: bool,
    /// Set metadata for the image (KEY=VALUE)
    #[arg(long = "label")]
    labels: Vec<String>,
    /// Write the image ID to the file
    #[arg(long)]
    iidfile: Option<PathBuf>,
    /// Suppress the build output and print the image ID on success
    #[arg(short, long)]
    quiet: bool,
    /// Networking mode for RUN instructions: default, none or host (host also allows RUN --network=host)
    #[arg(long)]
    network: Option<String>,
    /// Image to take cached layers from (built by berth; pulled when missing); may be repeated
    #[arg(long = "cache-from", value_name = "IMAGE")]
    cache_from: Vec<String>,
    /// Secret for RUN --mount=type=secret: id=ID[,src=FILE | ,env=VAR] (neither: the variable ID)
    #[arg(long = "secret", value_name = "id=ID[,src=FILE|,env=VAR]")]
    secrets: Vec<String>,
    /// Accepted for docker compatibility (intermediate containers are never kept)
    #[arg(long, default_value_t = true, action = clap::ArgAction::Set)]
    rm: bool,
    /// Accepted for docker compatibility (intermediate containers are never kept)
    #[arg(long)]
    force_rm: bool,
    /// Output destination: type=local|tar|docker|oci|image[,dest=PATH][,name=REF], DIR, or -
    #[arg(short = 'o', long = "output", value_name = "OUTPUT")]
    outputs: Vec<String>,
    /// Type of progress output: auto (tty on a terminal), plain (the builder's lines) or tty
    #[arg(long, value_name = "TYPE", default_value = "auto")]
    progress: String,
    /// Build context: a directory, or `-` for a tar archive or a Dockerfile on stdin
    path: String,
}

/// A `--secret` value (buildx's syntax): its id and its bytes.
fn secret(spec: &str) -> R<(String, Vec<u8>)> {
    let bad = |m: String| Fail(1, format!("invalid --secret {spec:?}: {m}"));
    let (mut id, mut src, mut env, mut kind) = (None, None, None, None);
    for field in spec.split(',') {
        let (k, v) = field.split_once('=').ok_or_else(|| bad(format!("{field:?} is not key=value")))?;
        match k.trim().to_ascii_lowercase().as_str() {
            "id" => id = Some(v.to_string()),
            "src" | "source" => src = Some(v.to_string()),
            "env" => env = Some(v.to_string()),
            "type" if v == "file" || v == "env" => kind = Some(v.to_string()),
            "type" => return Err(bad(format!("unknown type {v:?} (file or env)"))),
            other => return Err(bad(format!("unknown key {other:?} (id, src, env, type)"))),
        }
    }
    let id = id.filter(|i| !i.is_empty()).ok_or_else(|| bad("id= is required".into()))?;
    if let (Some(_), Some(_)) = (&src, &env) {
        return Err(bad("give src= or env=, not both".into()));
    }
    let from_env = |var: &str| {
        std::env::var_os(var)
            .map(|v| std::os::unix::ffi::OsStrExt::as_bytes(v.as_os_str()).to_vec())
            .ok_or_else(|| bad(format!("environment variable {var} is not set")))
    };
    let value = match (src, env, kind.as_deref()) {
        (Some(f), _, Some("env")) => from_env(&f)?,
        (Some(f), _, _) => std::fs::read(&f).map_err(|e| bad(format!("reading {f}: {e}")))?,
        (None, Some(v), _) => from_env(&v)?,
        (None, None, Some("file")) => std::fs::read(&id).map_err(|e| bad(format!("reading {id}: {e}")))?,
        (None, None, _) => from_env(&id)?,
    };
    Ok((id, value))
}

/// A .dockerignore matcher for `dir` (none without the file).
fn ignore_of(dir: &Path, dockerfile: &Path) -> R<Option<berth_dockerfile::PatternMatcher>> {
    let Some(f) = berth_dockerfile::ignore::find_ignore_file(dockerfile, dir) else { return Ok(None) };
    let text = std::fs::read_to_string(&f).map_err(|e| Fail(1, format!("reading {}: {e}", f.display())))?;
    berth_dockerfile::PatternMatcher::from_ignore_file(&text)
        .map(Some)
        .map_err(|e| Fail(1, format!("{}: {e:?}", f.display())))
}

/// Append `dir`'s tree to the tar (relative names, sorted), leaving out what `ignore` excludes
/// except the files the build needs (`keep`).
fn add_tree(
    tar: &mut tar::Builder<std::fs::File>,
    root: &Path,
    rel: &Path,
    ignore: Option<&berth_dockerfile::PatternMatcher>,
    keep: &[PathBuf],
) -> R<()> {
    let dir = root.join(rel);
    let mut names: Vec<_> = std::fs::read_dir(&dir)
        .map_err(|e| Fail(1, format!("reading {}: {e}", dir.display())))?
        .flatten()
        .map(|e| e.file_name())
        .collect();
    names.sort();
    for n in names {
        let r = rel.join(&n);
        let excluded = ignore.is_some_and(|m| m.matches(&r.to_string_lossy())) && !keep.contains(&r);
        let p = root.join(&r);
        let md = std::fs::symlink_metadata(&p).map_err(|e| Fail(1, format!("{}: {e}", p.display())))?;
        if md.is_dir() {
            // An excluded directory is still walked when an exception may re-include something.
            let walk = !excluded || ignore.is_some_and(|m| m.has_exclusions());
            if !excluded {
                tar.append_path_with_name(&p, &r).map_err(|e| Fail(1, format!("{}: {e}", p.display())))?;
            }
            if walk {
                add_tree(tar, root, &r, ignore, keep)?;
            }
        } else if !excluded {
            tar.append_path_with_name(&p, &r).map_err(|e| Fail(1, format!("{}: {e}", p.display())))?;
        }
    }
    Ok(())
}

fn is_tar_or_compressed(b: &[u8]) -> bool {
    let compressed = b.starts_with(&[0x1f, 0x8b]) || b.starts_with(&[0x28, 0xb5, 0x2f, 0xfd]) || b.starts_with(b"BZh");
    compressed || (b.len() >= 512 && &b[257..262] == b"ustar")
}

pub fn build(c: &Client, a: BuildArgs) -> R<i32> {
    let tmp = std::env::temp_dir().join(format!("berth-build-{}.tar", std::process::id()));
    let r = build_with(c, &a, &tmp);
    let _ = std::fs::remove_file(&tmp);
    r
}

fn build_with(c: &Client, a: &BuildArgs, tmp: &Path) -> R<i32> {
    let outputs = crate::build_output::parse_all(&a.outputs).map_err(|e| Fail(1, e))?;
    let mode = crate::build_progress::Mode::parse(&a.progress, a.quiet).map_err(|e| Fail(1, e))?;
    let data_on_stdout = outputs.iter().any(|o| o.dest == crate::build_output::Dest::Stdout);
    let mut dockerfile_name = "Dockerfile".to_string();
    let stdin_df = a.file.as_deref() == Some("-");
    let mut stdin_data: Option<Vec<u8>> = None;
    if a.path == "-" || stdin_df {
        let mut data = Vec::new();
        std::io::stdin().read_to_end(&mut data).map_err(|e| Fail(1, format!("reading stdin: {e}")))?;
        stdin_data = Some(data);
    }
    let file = std::fs::File::create(tmp).map_err(|e| Fail(1, format!("{}: {e}", tmp.display())))?;
    let mut t = tar::Builder::new(file);
    t.follow_symlinks(false);
    let add_bytes = |t: &mut tar::Builder<std::fs::File>, name: &str, data: &[u8]| -> R<()> {
        let mut h = tar::Header::new_gnu();
        h.set_size(data.len() as u64);
        h.set_mode(0o644);
        h.set_uid(0);
        h.set_gid(0);
        h.set_mtime(0);
        h.set_entry_type(tar::EntryType::Regular);
        h.set_cksum();
        t.append_data(&mut h, name, data).map_err(|e| Fail(1, e.to_string()))
    };
    if a.path == "-" {
        let data = stdin_data.take().unwrap_or_default();
        if is_tar_or_compressed(&data) {
            // A whole context on stdin: sent as it is.
            drop(t);
            std::fs::write(tmp, &data).map_err(|e| Fail(1, e.to_string()))?;
            if let Some(f) = a.file.as_deref() {
                dockerfile_name = f.to_string();
            }
        } else {
            add_bytes(&mut t, "Dockerfile", &data)?;
            t.finish().map_err(|e| Fail(1, e.to_string()))?;
        }
    } else {
        let dir = PathBuf::from(&a.path);
        if !dir.is_dir() {
            return Err(Fail(1, format!("unable to prepare context: path {:?} not found", a.path)));
        }
        let df_path = match a.file.as_deref() {
            None => dir.join("Dockerfile"),
            Some("-") => dir.join("Dockerfile"),
            Some(f) => PathBuf::from(f),
        };
        let ignore = ignore_of(&dir, &df_path)?;
        let inside = df_path.canonicalize().ok().and_then(|p| {
            let d = dir.canonicalize().ok()?;
            p.strip_prefix(&d).ok().map(Path::to_path_buf)
        });
        let mut keep = vec![PathBuf::from(".dockerignore")];
        match (&inside, stdin_df) {
            (_, true) => {
                dockerfile_name = format!(".dockerfile.{}", std::process::id());
                let data = stdin_data.take().unwrap_or_default();
                add_bytes(&mut t, &dockerfile_name, &data)?;
            }
            (Some(rel), false) => {
                dockerfile_name = rel.to_string_lossy().into_owned();
                keep.push(rel.clone());
            }
            (None, false) => {
                let data = std::fs::read(&df_path)
                    .map_err(|e| Fail(1, format!("unable to prepare context: {}: {e}", df_path.display())))?;
                dockerfile_name = format!(".dockerfile.{}", std::process::id());
                add_bytes(&mut t, &dockerfile_name, &data)?;
            }
        }
        add_tree(&mut t, &dir, Path::new(""), ignore.as_ref(), &keep)?;
        t.finish().map_err(|e| Fail(1, e.to_string()))?;
    }
    let mut q = vec![format!("dockerfile={}", enc(&dockerfile_name)), "version=1".to_string()];
    for tag in &a.tags {
        berth_image::Reference::parse(tag).map_err(|e| Fail(1, format!("invalid tag {tag:?}: {e}")))?;
        q.push(format!("t={}", enc(tag)));
    }
    let mut args = serde_json::Map::new();
    for b in &a.build_args {
        match b.split_once('=') {
            Some((k, v)) => args.insert(k.to_string(), Value::String(v.to_string())),
            None => args.insert(b.clone(), std::env::var(b).map(Value::String).unwrap_or(Value::Null)),
        };
    }
    if !args.is_empty() {
        q.push(format!("buildargs={}", enc(&Value::Object(args).to_string())));
    }
    let mut labels = serde_json::Map::new();
    for l in &a.labels {
        let (k, v) = l.split_once('=').unwrap_or((l, ""));
        labels.insert(k.to_string(), Value::String(v.to_string()));
    }
    if !labels.is_empty() {
        q.push(format!("labels={}", enc(&Value::Object(labels).to_string())));
    }
    if let Some(tg) = &a.target {
        q.push(format!("target={}", enc(tg)));
    }
    if a.no_cache {
        q.push("nocache=1".into());
    }
    if a.pull {
        q.push("pull=1".into());
    }
    if a.quiet {
        q.push("q=1".into());
    }
    if !a.cache_from.is_empty() {
        q.push(format!("cachefrom={}", enc(&serde_json::to_string(&a.cache_from).unwrap_or_default())));
    }
    if let Some(n) = &a.network {
        q.push(format!("networkmode={}", enc(n)));
    }
    let mut headers = Vec::new();
    if !a.secrets.is_empty() {
        use base64::engine::general_purpose::STANDARD as B64;
        use base64::Engine as _;
        let mut m = serde_json::Map::new();
        for s in &a.secrets {
            let (id, value) = secret(s)?;
            m.insert(id, Value::String(B64.encode(value)));
        }
        headers.push(("X-Berth-Build-Secrets", B64.encode(Value::Object(m).to_string())));
    }
    let mut f = std::fs::File::open(tmp).map_err(|e| Fail(1, e.to_string()))?;
    let mut live = (mode == crate::build_progress::Mode::Tty).then(crate::build_progress::Live::start);
    let mut id = String::new();
    let (mut out, mut err) = (std::io::stdout(), std::io::stderr());
    let shown: &mut dyn std::io::Write = if data_on_stdout { &mut err } else { &mut out };
    let result = c
        .stream_with("POST", &format!("/build?{}", q.join("&")), &headers, ReqBody::Stream("application/x-tar", &mut f))
        .map_err(Fail::from)
        .and_then(|body| {
            let text: &mut dyn std::io::Write = match live.as_mut() {
                Some(l) => l,
                None => &mut *shown,
            };
            crate::image_api::read_messages_to(
                body,
                text,
                |_| {},
                |v| {
                    if let Some(i) = v["aux"]["ID"].as_str() {
                        id = i.to_string();
                    }
                },
            )
        });
    if let Some(l) = live {
        // The view's end (the failed step's output with it) comes before the error.
        l.finish(result.is_ok() && !id.is_empty(), shown);
    }
    result?;
    if id.is_empty() {
        return Err(Fail(1, "the build ended without an image ID".into()));
    }
    if let Some(p) = &a.iidfile {
        std::fs::write(p, &id).map_err(|e| Fail(1, format!("writing {}: {e}", p.display())))?;
    }
    for o in &outputs {
        crate::build_output::export(c, o, &id, &a.tags)?;
    }
    if a.quiet && data_on_stdout {
        eprintln!("{id}");
    } else if a.quiet {
        println!("{id}");
    }
    Ok(0)
}
