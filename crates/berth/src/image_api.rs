//! Image verbs through the daemon, as the docker CLI speaks them to the Engine API: `pull`,
//! `push`, `images`, `tag`, `rmi`, `image inspect|history|prune`, `save`, `load`, `import`,
//! `system df|prune|info`, `builder prune|du`, `login`, `logout` and `version`. (`berth --data-root DIR <verb>` acts
//! on a store directly instead: `image_cmd`.)

use crate::client::{enc, filters_json, Client, Fail, ReqBody, R};
use crate::progress::{show_json_stream, stream_error, Progress};
use crate::table::{ago, human_size, human_size_prec};
use crate::template::{plain, print_formatted};
use berth_image::Reference;
use berth_registry::auth::{self, Credentials};
use clap::{ArgAction, Args, Parser, Subcommand};
use serde_json::{json, Value};
use std::ffi::OsString;
use std::io::{BufRead, IsTerminal, Read, Write};
use std::path::PathBuf;

// The long help (`--help`) of the verbs.
const PULL_LONG: &str = "Download an image from a registry through the daemon.\n\n\
    NAME[:TAG|@DIGEST] is normalised as Docker does (busybox = docker.io/library/busybox:latest). \
    Credentials for the registry come from Docker's config.json (berth login / docker login). \
    Progress is shown per layer (bars on a terminal, lines otherwise); the reference pulled is \
    printed on stdout.";
const PUSH_LONG: &str = "Upload an image to a registry through the daemon.\n\n\
    The image NAME[:TAG] must exist locally (berth tag it first). Credentials for the registry \
    come from Docker's config.json; layers the registry has already are not sent again.";
const IMAGES_LONG: &str = "List images.\n\n\
    Columns: REPOSITORY TAG IMAGE ID CREATED SIZE (DIGEST with --digests). Filters: \
    reference=PATTERN (glob over NAME[:TAG]), dangling=true|false, label=KEY[=VALUE], \
    before=IMAGE, since=IMAGE, until=TIME. --format takes 'table', 'json' (one object per line) \
    or a Go template over .ID .Repository .Tag .Digest .CreatedSince .CreatedAt .Size \
    .Containers, e.g. '{{.Repository}}:{{.Tag}}'.";
const RMI_LONG: &str = "Remove one or more images.\n\n\
    A reference is untagged; when no reference is left (or an ID is given) the image is deleted, \
    with the layers nothing else uses. An image several repositories refer to needs --force to \
    be removed by ID; an image a container uses cannot be removed.";
const HISTORY_LONG: &str = "Show the history of an image, newest first: IMAGE CREATED CREATED BY SIZE \
    COMMENT. --format takes 'table', 'json' or a Go template over .ID .CreatedSince .CreatedAt \
    .CreatedBy .Size .Comment.";
const PRUNE_LONG: &str = "Remove unused images: dangling ones (no tag), or with --all every image \
    no container uses. Filters: until=TIME (created before), label=KEY[=VALUE], label!=KEY[=VALUE]. \
    Asks for confirmation unless --force.";
const SAVE_LONG: &str = "Save one or more images to a tar archive that is both a docker-archive \
    (docker load reads it) and an OCI image layout (skopeo, podman). Written to stdout unless -o; \
    a tar is never written to a terminal.";
const LOAD_LONG: &str = "Load images from a tar archive (docker-archive or OCI layout, as docker \
    save or skopeo write them) read from a file or stdin; prints the images loaded.";
const IMPORT_LONG: &str = "Import the contents from a tarball (plain, gzip or zstd) to create a \
    one-layer filesystem image; prints its ID.\n\n\
    FILE is a path, or - for stdin. --change applies a Dockerfile instruction to the image's \
    config: CMD, ENTRYPOINT, ENV, EXPOSE, LABEL, USER, WORKDIR, VOLUME, STOPSIGNAL \
    (e.g. --change 'CMD [\"sh\"]'). Importing from a URL is not supported.";
const LOGIN_LONG: &str = "Authenticate to a registry (Docker Hub if no server is given).\n\n\
    The daemon checks the credentials against the registry; on success they are stored in \
    Docker's config.json ($DOCKER_CONFIG/config.json, else ~/.docker/config.json), shared with \
    the docker CLI. Without -u/-p, stored credentials are tried first; on a terminal the missing \
    ones are asked for.";
const BUILDER_PRUNE_LONG: &str = "Remove build cache.\n\n\
    Without --all, only dangling cache: step records whose layers are gone or in no tagged image \
    (builder stages, superseded builds) and RUN --mount=type=cache directories unused for 48 \
    hours. With --all, every record and every cache mount no running build uses; the next build \
    runs every step again. --filter until=DURATION keeps what was used more recently; \
    --keep-storage BYTES removes the least recently used first, only until the cache fits. \
    Layers only the removed records kept are freed; images are never touched. Asks for \
    confirmation unless --force.";
const DF_LONG: &str = "Show Berth disk usage: TYPE TOTAL ACTIVE SIZE RECLAIMABLE for images, \
    containers, local volumes and the build cache. --format takes 'table', \
    'json' or a Go template over .Type .TotalCount .Active .Size .Reclaimable.";

#[derive(Parser, Debug)]
#[command(name = "berth", disable_help_subcommand = true, disable_version_flag = true)]
struct Cli {
    /// Daemon socket to connect to (unix:///path or a path; default $BERTH_HOST, then
    /// /run/berth/berth.sock)
    #[arg(short = 'H', long = "host", global = true)]
    host: Option<String>,
    #[command(subcommand)]
    cmd: Cmd,
}

#[derive(Subcommand, Debug)]
enum Cmd {
    /// Download an image from a registry
    #[command(long_about = PULL_LONG)]
    Pull(PullArgs),
    /// Upload an image to a registry
    #[command(long_about = PUSH_LONG)]
    Push(PushArgs),
    /// List images
    #[command(long_about = IMAGES_LONG)]
    Images(ImagesArgs),
    /// Create a tag TARGET_IMAGE that refers to SOURCE_IMAGE
    Tag(TagArgs),
    /// Remove one or more images
    #[command(long_about = RMI_LONG)]
    Rmi(RmiArgs),
    /// Save one or more images to a tar archive (streamed to stdout by default)
    #[command(long_about = SAVE_LONG)]
    Save(SaveArgs),
    /// Load images from a tar archive or stdin
    #[command(long_about = LOAD_LONG)]
    Load(LoadArgs),
    /// Import the contents from a tarball to create a filesystem image
    #[command(long_about = IMPORT_LONG)]
    Import(ImportArgs),
    /// Build an image from a Dockerfile
    #[command(long_about = crate::build_cmd::BUILD_LONG)]
    Build(crate::build_cmd::BuildArgs),
    /// Show the history of an image
    #[command(long_about = HISTORY_LONG)]
    History(HistoryArgs),
    /// Authenticate to a registry
    #[command(long_about = LOGIN_LONG)]
    Login(LoginArgs),
    /// Log out from a registry
    Logout(LogoutArgs),
    /// Manage images
    Image {
        #[command(subcommand)]
        cmd: ImageSub,
    },
    /// Manage builds: the build cache
    Builder {
        #[command(subcommand)]
        cmd: BuilderSub,
    },
    /// Manage Berth: disk usage, pruning, information
    System {
        #[command(subcommand)]
        cmd: SystemSub,
    },
    /// Show the Berth version information (client, and the daemon's when it answers)
    Version(VersionArgs),
}

#[derive(Subcommand, Debug)]
enum ImageSub {
    /// Download an image from a registry
    #[command(long_about = PULL_LONG)]
    Pull(PullArgs),
    /// Upload an image to a registry
    #[command(long_about = PUSH_LONG)]
    Push(PushArgs),
    /// List images
    #[command(long_about = IMAGES_LONG)]
    #[command(alias = "list")]
    Ls(ImagesArgs),
    /// Create a tag TARGET_IMAGE that refers to SOURCE_IMAGE
    Tag(TagArgs),
    /// Remove one or more images
    #[command(long_about = RMI_LONG)]
    #[command(alias = "remove")]
    Rm(RmiArgs),
    /// Display detailed information on one or more images
    Inspect(InspectArgs),
    /// Show the history of an image
    #[command(long_about = HISTORY_LONG)]
    History(HistoryArgs),
    /// Remove unused images
    #[command(long_about = PRUNE_LONG)]
    Prune(PruneArgs),
    /// Save one or more images to a tar archive (streamed to stdout by default)
    #[command(long_about = SAVE_LONG)]
    Save(SaveArgs),
    /// Load images from a tar archive or stdin
    #[command(long_about = LOAD_LONG)]
    Load(LoadArgs),
    /// Import the contents from a tarball to create a filesystem image
    #[command(long_about = IMPORT_LONG)]
    Import(ImportArgs),
}

#[derive(Subcommand, Debug)]
enum BuilderSub {
    /// Remove build cache
    #[command(long_about = BUILDER_PRUNE_LONG)]
    Prune(BuilderPruneArgs),
    /// Show the build cache's disk usage
    Du(BuilderDuArgs),
}

#[derive(Args, Debug)]
struct BuilderPruneArgs {
    /// Remove all unused build cache, not just dangling ones
    #[arg(short, long)]
    all: bool,
    /// Do not prompt for confirmation
    #[arg(short, long)]
    force: bool,
    /// Provide filter values (e.g. 'until=24h')
    #[arg(long)]
    filter: Vec<String>,
    /// Amount of disk space to keep for cache (bytes, or with a unit: 512m, 2g)
    #[arg(long, value_parser = parse_bytes)]
    keep_storage: Option<u64>,
}

#[derive(Args, Debug)]
struct BuilderDuArgs {
    /// Show every record and cache mount
    #[arg(long)]
    verbose: bool,
}

#[derive(Subcommand, Debug)]
enum SystemSub {
    /// Show Berth disk usage: images, containers, local volumes, build cache
    #[command(long_about = DF_LONG)]
    Df(DfArgs),
    /// Remove unused data: stopped containers, dangling (or all unused) images, and with
    /// --volumes anonymous volumes no container uses
    Prune(SystemPruneArgs),
    /// Display system-wide information (as `berth info`)
    Info {
        /// Format the output using a Go-template subset, or 'json'
        #[arg(short, long)]
        format: Option<String>,
    },
}

#[derive(Args, Debug)]
struct PullArgs {
    /// Image reference: NAME[:TAG|@DIGEST]
    image: String,
    /// Platform to select from a multi-platform image: os/arch[/variant] (default: the host's)
    #[arg(long)]
    platform: Option<String>,
    /// Suppress verbose output (print only the image reference)
    #[arg(short, long)]
    quiet: bool,
    /// Download all tagged images in the repository (not supported)
    #[arg(short = 'a', long)]
    all_tags: bool,
}

#[derive(Args, Debug)]
struct PushArgs {
    /// Image reference: NAME[:TAG]
    image: String,
    /// Suppress verbose output
    #[arg(short, long)]
    quiet: bool,
    /// Push all tags of the repository (not supported)
    #[arg(short = 'a', long)]
    all_tags: bool,
}

#[derive(Args, Debug)]
struct ImagesArgs {
    /// Only images whose reference matches REPOSITORY[:TAG] (a glob pattern)
    repository: Option<String>,
    /// Show all images (intermediate ones too; berth keeps none, so the same list)
    #[arg(short, long)]
    all: bool,
    /// Only show image IDs
    #[arg(short, long)]
    quiet: bool,
    /// Show digests
    #[arg(long)]
    digests: bool,
    /// Don't truncate output
    #[arg(long)]
    no_trunc: bool,
    /// Filter output based on conditions provided (reference=, dangling=, label=, before=, since=, until=)
    #[arg(short, long)]
    filter: Vec<String>,
    /// Format output: table, json, or a Go-template subset ('table {{.Repository}}\t{{.Tag}}')
    #[arg(long)]
    format: Option<String>,
}

#[derive(Args, Debug)]
struct TagArgs {
    /// The image to tag: a reference or an ID
    source: String,
    /// The new reference: NAME[:TAG] (TAG defaults to latest)
    target: String,
}

#[derive(Args, Debug)]
struct RmiArgs {
    /// Images to remove: references or IDs
    #[arg(required = true)]
    images: Vec<String>,
    /// Force removal of the image
    #[arg(short, long)]
    force: bool,
    /// Do not delete untagged parents
    #[arg(long)]
    no_prune: bool,
}

#[derive(Args, Debug)]
struct InspectArgs {
    /// Images: references or IDs
    #[arg(required = true)]
    images: Vec<String>,
    /// Format the output using a Go-template subset (e.g. '{{json .Config.Cmd}}'), or 'json'
    #[arg(short, long)]
    format: Option<String>,
}

#[derive(Args, Debug)]
struct HistoryArgs {
    /// The image: a reference or an ID
    image: String,
    /// Print sizes and dates in human readable format (--human=false: bytes and RFC 3339)
    #[arg(long, default_value_t = true, action = ArgAction::Set, value_name = "BOOL")]
    human: bool,
    /// Don't truncate output
    #[arg(long)]
    no_trunc: bool,
    /// Only show image IDs
    #[arg(short, long)]
    quiet: bool,
    /// Format output: table, json, or a Go-template subset
    #[arg(long)]
    format: Option<String>,
}

#[derive(Args, Debug)]
struct PruneArgs {
    /// Remove all unused images, not just dangling ones
    #[arg(short, long)]
    all: bool,
    /// Do not prompt for confirmation
    #[arg(short, long)]
    force: bool,
    /// Provide filter values (e.g. 'until=24h', 'label=k=v')
    #[arg(long)]
    filter: Vec<String>,
}

#[derive(Args, Debug)]
struct SaveArgs {
    /// Images: references (NAME saves every tag of the repository) or IDs
    #[arg(required = true)]
    images: Vec<String>,
    /// Write to a file, instead of STDOUT
    #[arg(short, long)]
    output: Option<PathBuf>,
}

#[derive(Args, Debug)]
struct LoadArgs {
    /// Read from tar archive file, instead of STDIN
    #[arg(short, long)]
    input: Option<PathBuf>,
    /// Suppress the load progress
    #[arg(short, long)]
    quiet: bool,
}

#[derive(Args, Debug)]
struct ImportArgs {
    /// A root filesystem tarball, or - for stdin
    file: String,
    /// REPOSITORY[:TAG] to give the image
    reference: Option<String>,
    /// Apply Dockerfile instruction to the created image (repeatable)
    #[arg(short, long = "change")]
    changes: Vec<String>,
    /// Set commit message for imported image
    #[arg(short, long)]
    message: Option<String>,
    /// Set platform if server is multi-platform capable: os/arch[/variant]
    #[arg(long)]
    platform: Option<String>,
}

#[derive(Args, Debug)]
struct LoginArgs {
    /// Registry server (default Docker Hub)
    server: Option<String>,
    /// Username
    #[arg(short, long)]
    username: Option<String>,
    /// Password or personal access token (prefer --password-stdin)
    #[arg(short, long)]
    password: Option<String>,
    /// Take the password from stdin
    #[arg(long)]
    password_stdin: bool,
}

#[derive(Args, Debug)]
struct LogoutArgs {
    /// Registry server (default Docker Hub)
    server: Option<String>,
}

#[derive(Args, Debug)]
struct DfArgs {
    /// Show detailed information on space usage
    #[arg(short, long)]
    verbose: bool,
    /// Format output: table, json, or a Go-template subset
    #[arg(long)]
    format: Option<String>,
}

#[derive(Args, Debug)]
struct SystemPruneArgs {
    /// Remove all unused images, not just dangling ones
    #[arg(short, long)]
    all: bool,
    /// Do not prompt for confirmation
    #[arg(short, long)]
    force: bool,
    /// Prune anonymous volumes
    #[arg(long)]
    volumes: bool,
    /// Provide filter values (e.g. 'label=k=v', 'until=24h')
    #[arg(long)]
    filter: Vec<String>,
}

#[derive(Args, Debug)]
struct VersionArgs {
    /// Format the output using a Go-template subset ('{{.Server.Version}}'), or 'json'
    #[arg(short, long)]
    format: Option<String>,
}

/// Entry point for the image verbs through the daemon; the exit code.
pub fn main(args: Vec<OsString>) -> i32 {
    let cli = match Cli::try_parse_from(args) {
        Ok(c) => c,
        Err(e) => {
            let _ = e.print();
            return if e.use_stderr() { 125 } else { 0 };
        }
    };
    let client = Client::new(cli.host.as_deref());
    match dispatch(&client, cli.host.as_deref(), cli.cmd) {
        Ok(code) => code,
        Err(Fail(code, msg)) => {
            if !msg.is_empty() {
                eprintln!("berth: {msg}");
            }
            code
        }
    }
}

fn dispatch(c: &Client, host: Option<&str>, cmd: Cmd) -> R<i32> {
    match cmd {
        Cmd::Pull(a) | Cmd::Image { cmd: ImageSub::Pull(a) } => pull(c, a),
        Cmd::Push(a) | Cmd::Image { cmd: ImageSub::Push(a) } => push(c, a),
        Cmd::Images(a) | Cmd::Image { cmd: ImageSub::Ls(a) } => images(c, a),
        Cmd::Tag(a) | Cmd::Image { cmd: ImageSub::Tag(a) } => tag(c, a),
        Cmd::Rmi(a) | Cmd::Image { cmd: ImageSub::Rm(a) } => rmi(c, a),
        Cmd::Save(a) | Cmd::Image { cmd: ImageSub::Save(a) } => save(c, a),
        Cmd::Load(a) | Cmd::Image { cmd: ImageSub::Load(a) } => load(c, a),
        Cmd::Import(a) | Cmd::Image { cmd: ImageSub::Import(a) } => import(c, a),
        Cmd::Build(a) => crate::build_cmd::build(c, a),
        Cmd::Image { cmd: ImageSub::Inspect(a) } => inspect(c, a),
        Cmd::History(a) | Cmd::Image { cmd: ImageSub::History(a) } => history(c, a),
        Cmd::Image { cmd: ImageSub::Prune(a) } => prune(c, a),
        Cmd::Login(a) => login(c, a),
        Cmd::Logout(a) => Ok(crate::image_cmd::logout(a.server.as_deref())?),
        Cmd::Builder { cmd: BuilderSub::Prune(a) } => builder_prune(c, a),
        Cmd::Builder { cmd: BuilderSub::Du(a) } => builder_du(c, a),
        Cmd::System { cmd: SystemSub::Df(a) } => df(c, a),
        Cmd::System { cmd: SystemSub::Prune(a) } => system_prune(c, a),
        Cmd::System { cmd: SystemSub::Info { format } } => {
            // `info` is the container verbs' business.
            let mut args: Vec<OsString> = vec!["berth".into()];
            if let Some(h) = host {
                args.extend(["-H".into(), h.into()]);
            }
            args.push("info".into());
            if let Some(f) = format {
                args.extend(["--format".into(), f.into()]);
            }
            Ok(crate::container_cmd::main(args))
        }
        Cmd::Version(a) => version(c, a),
    }
}

fn parse_ref(s: &str) -> R<Reference> {
    Reference::parse(s).map_err(|e| Fail(1, e.to_string()))
}

/// `X-Registry-Auth` for the registry of `r`, from Docker's config.json (as `docker` sends it).
fn registry_auth(r: &Reference) -> R<Vec<(&'static str, String)>> {
    let Some(path) = auth::default_config_path() else { return Ok(Vec::new()) };
    Ok(match auth::lookup(&path, r.domain()).map_err(|e| Fail(1, e.to_string()))? {
        Some(creds) => vec![("X-Registry-Auth", auth::registry_auth_header(&creds, r.domain()))],
        None => Vec::new(),
    })
}

fn pull(c: &Client, a: PullArgs) -> R<i32> {
    if a.all_tags {
        return Err(Fail(1, "--all-tags is not supported: pull one tag at a time".into()));
    }
    let r = pull_image(c, &a.image, a.platform.as_deref(), a.quiet)?;
    println!("{r}");
    Ok(0)
}

/// Pull through the daemon (`POST /images/create?fromImage=&tag=`) with the registry's
/// credentials from config.json, the progress on stderr (bars on a terminal); `run` uses it too.
pub fn pull_image(c: &Client, image: &str, platform: Option<&str>, quiet: bool) -> R<Reference> {
    let r = parse_ref(image)?;
    let tag = match (r.digest(), r.tag()) {
        (Some(d), _) => d.to_string(),
        (None, Some(t)) => t.to_string(),
        (None, None) => "latest".into(),
    };
    let mut path = format!("/images/create?fromImage={}&tag={}", enc(&r.name()), enc(&tag));
    if let Some(p) = platform {
        path.push_str(&format!("&platform={}", enc(p)));
    }
    let body = c.stream_with("POST", &path, &registry_auth(&r)?, ReqBody::None)?;
    show_json_stream(body, &Progress::new(quiet), |_| {})?;
    Ok(r)
}

fn push(c: &Client, a: PushArgs) -> R<i32> {
    if a.all_tags {
        return Err(Fail(1, "--all-tags is not supported: push one tag at a time".into()));
    }
    let r = parse_ref(&a.image)?;
    let Some(tag) = r.tag() else {
        return Err(Fail(1, format!("cannot push a digest reference ({}): push a tag", a.image)));
    };
    let path = format!("/images/{}/push?tag={}", enc(&r.name()), enc(tag));
    let body = c.stream_with("POST", &path, &registry_auth(&r)?, ReqBody::None)?;
    show_json_stream(body, &Progress::new(a.quiet), |_| {})?;
    Ok(0)
}

/// An image ID as `images` and `history` show it: 12 hex digits, or all of `sha256:...`.
fn image_id(id: &str, no_trunc: bool) -> String {
    if no_trunc {
        id.to_string()
    } else {
        id.trim_start_matches("sha256:").chars().take(12).collect()
    }
}

/// Docker's `CreatedAt`: Go's default time layout, in UTC.
fn created_at(unix: i64) -> String {
    let t = berth_runtime::state::rfc3339(std::time::UNIX_EPOCH + std::time::Duration::from_secs(unix.max(0) as u64));
    format!("{} {} +0000 UTC", &t[..10], &t[11..19])
}

/// A familiar `name:tag` (or `name@digest`) split into its repository and the rest.
fn split_familiar(s: &str, sep: char) -> (String, String) {
    let cut = if sep == '@' { s.split_once('@') } else { s.rsplit_once(':').filter(|(_, t)| !t.contains('/')) };
    match cut {
        Some((n, t)) => (n.to_string(), t.to_string()),
        None => (s.to_string(), "<none>".to_string()),
    }
}

/// The rows `images` shows for one `/images/json` entry: one per tag; an untagged image once
/// per digest, or as `<none>`.
fn image_rows(img: &Value, no_trunc: bool) -> Vec<Value> {
    let strings = |v: &Value| -> Vec<String> {
        v.as_array().map(|a| a.iter().filter_map(|x| x.as_str().map(String::from)).collect()).unwrap_or_default()
    };
    let (tags, digests) = (strings(&img["RepoTags"]), strings(&img["RepoDigests"]));
    let digest_of =
        |repo: &str| digests.iter().map(|d| split_familiar(d, '@')).find(|(n, _)| n == repo).map(|(_, d)| d);
    let mut names: Vec<(String, String, String)> = tags
        .iter()
        .map(|t| {
            let (repo, tag) = split_familiar(t, ':');
            let d = digest_of(&repo).unwrap_or_else(|| "<none>".into());
            (repo, tag, d)
        })
        .collect();
    if names.is_empty() {
        names = digests
            .iter()
            .map(|d| {
                let (repo, dg) = split_familiar(d, '@');
                (repo, "<none>".into(), dg)
            })
            .collect();
    }
    if names.is_empty() {
        names.push(("<none>".into(), "<none>".into(), "<none>".into()));
    }
    let created = img["Created"].as_i64().unwrap_or(0);
    let size = human_size(img["Size"].as_u64().unwrap_or(0));
    let na = |v: &Value| match v.as_i64() {
        Some(n) if n >= 0 => json!(n),
        _ => json!("N/A"),
    };
    names
        .into_iter()
        .map(|(repo, tag, digest)| {
            json!({
                "Containers": na(&img["Containers"]),
                "CreatedAt": created_at(created),
                "CreatedSince": ago(created),
                "Digest": digest,
                "ID": image_id(img["Id"].as_str().unwrap_or(""), no_trunc),
                "Repository": repo,
                "SharedSize": match img["SharedSize"].as_i64() {
                    Some(n) if n >= 0 => json!(human_size(n as u64)),
                    _ => json!("N/A"),
                },
                "Size": size,
                "Tag": tag,
                "UniqueSize": "N/A",
                "VirtualSize": size,
            })
        })
        .collect()
}

fn image_header(f: &str) -> String {
    match f {
        "ID" => "IMAGE ID".into(),
        "CreatedSince" => "CREATED".into(),
        "CreatedAt" => "CREATED AT".into(),
        "SharedSize" => "SHARED SIZE".into(),
        "UniqueSize" => "UNIQUE SIZE".into(),
        other => other.to_uppercase(),
    }
}

fn images(c: &Client, a: ImagesArgs) -> R<i32> {
    let mut filters = a.filter.clone();
    if let Some(r) = &a.repository {
        filters.push(format!("reference={r}"));
    }
    let mut q = format!("all={}&digests={}", a.all, a.digests);
    if !filters.is_empty() {
        q.push_str(&format!("&filters={}", enc(&filters_json(&filters)?)));
    }
    let mut list = c.get(&format!("/images/json?{q}"))?.as_array().cloned().unwrap_or_default();
    list.sort_by_key(|i| std::cmp::Reverse(i["Created"].as_i64().unwrap_or(0)));
    if a.quiet {
        let mut seen = std::collections::HashSet::new();
        for i in &list {
            let id = image_id(i["Id"].as_str().unwrap_or(""), a.no_trunc);
            if seen.insert(id.clone()) {
                println!("{id}");
            }
        }
        return Ok(0);
    }
    let rows: Vec<Value> = list.iter().flat_map(|i| image_rows(i, a.no_trunc)).collect();
    let format = match a.format.as_deref() {
        None | Some("table") if a.digests => {
            "table {{.Repository}}\t{{.Tag}}\t{{.Digest}}\t{{.ID}}\t{{.CreatedSince}}\t{{.Size}}".to_string()
        }
        None | Some("table") => "table {{.Repository}}\t{{.Tag}}\t{{.ID}}\t{{.CreatedSince}}\t{{.Size}}".to_string(),
        Some(f) => f.to_string(),
    };
    print_formatted(&format, &rows, Some(&image_header))?;
    Ok(0)
}

fn tag(c: &Client, a: TagArgs) -> R<i32> {
    let t = parse_ref(&a.target)?;
    let Some(tag) = t.tag() else {
        return Err(Fail(1, format!("refusing to create a tag with a digest reference: {}", a.target)));
    };
    c.call("POST", &format!("/images/{}/tag?repo={}&tag={}", enc(&a.source), enc(&t.name()), enc(tag)), None)?;
    Ok(0)
}

/// `Untagged: ...` / `Deleted: ...` lines from a removal's JSON (`[{"Untagged": ...}, ...]`).
fn removal_lines(v: &Value) -> Vec<(String, String)> {
    v.as_array()
        .map(|a| {
            a.iter().filter_map(|o| o.as_object()).flat_map(|o| o.iter().map(|(k, v)| (k.clone(), plain(v)))).collect()
        })
        .unwrap_or_default()
}

fn rmi(c: &Client, a: RmiArgs) -> R<i32> {
    let mut code = 0;
    for i in &a.images {
        let path = format!("/images/{}?force={}&noprune={}", enc(i), a.force, a.no_prune);
        match c.call("DELETE", &path, None).and_then(|r| r.json()) {
            Ok(v) => removal_lines(&v).iter().for_each(|(k, v)| println!("{k}: {v}")),
            Err(e) => {
                eprintln!("berth: {e}");
                code = 1;
            }
        }
    }
    Ok(code)
}

fn inspect(c: &Client, a: InspectArgs) -> R<i32> {
    crate::client::inspect_each(
        &a.images,
        a.format.as_deref(),
        |n| c.get(&format!("/images/{}/json", enc(n))),
        |n, e| (e.status == 404).then(|| format!("Error: No such image: {n}")),
    )
}

fn history(c: &Client, a: HistoryArgs) -> R<i32> {
    let v = c.get(&format!("/images/{}/history", enc(&a.image)))?;
    let list = v.as_array().cloned().unwrap_or_default();
    let id = |h: &Value| match h["Id"].as_str().unwrap_or("") {
        "<missing>" | "" => "<missing>".to_string(),
        full => image_id(full, a.no_trunc),
    };
    if a.quiet {
        list.iter().for_each(|h| println!("{}", id(h)));
        return Ok(0);
    }
    let rows: Vec<Value> = list
        .iter()
        .map(|h| {
            let created = h["Created"].as_i64().unwrap_or(0);
            let mut by = plain(&h["CreatedBy"]).replace(['\t', '\n'], " ");
            if !a.no_trunc && by.chars().count() > 45 {
                by = by.chars().take(44).collect::<String>() + "…";
            }
            let size = h["Size"].as_u64().unwrap_or(0);
            let rfc = berth_runtime::state::rfc3339(
                std::time::UNIX_EPOCH + std::time::Duration::from_secs(created.max(0) as u64),
            )[..19]
                .to_string()
                + "Z";
            json!({
                "ID": id(h),
                "CreatedSince": if a.human { ago(created) } else { rfc.clone() },
                "CreatedAt": rfc,
                "CreatedBy": by,
                "Size": if a.human { human_size(size) } else { size.to_string() },
                "Comment": plain(&h["Comment"]),
            })
        })
        .collect();
    let format = match a.format.as_deref() {
        None | Some("table") => "table {{.ID}}\t{{.CreatedSince}}\t{{.CreatedBy}}\t{{.Size}}\t{{.Comment}}".to_string(),
        Some(f) => f.to_string(),
    };
    let header = |f: &str| match f {
        "ID" => "IMAGE".to_string(),
        "CreatedSince" => "CREATED".into(),
        "CreatedAt" => "CREATED AT".into(),
        "CreatedBy" => "CREATED BY".into(),
        other => other.to_uppercase(),
    };
    print_formatted(&format, &rows, Some(&header))?;
    Ok(0)
}

/// Docker's confirmation prompt: the warning, `[y/N]`, an answer read from stdin.
pub(crate) fn confirm(warning: &str) -> bool {
    eprint!("{warning}\nAre you sure you want to continue? [y/N] ");
    let _ = std::io::stderr().flush();
    let mut s = String::new();
    let _ = std::io::stdin().lock().read_line(&mut s);
    matches!(s.trim(), "y" | "Y" | "yes" | "Yes")
}

fn prune_filters(dangling: bool, filters: &[String]) -> R<String> {
    let mut f = filters.to_vec();
    f.push(format!("dangling={dangling}"));
    filters_json(&f)
}

/// The lines a prune printed for its deleted images, lower-case as Docker's.
fn print_deleted_images(v: &Value) {
    let lines = removal_lines(&v["ImagesDeleted"]);
    if lines.is_empty() {
        return;
    }
    println!("Deleted Images:");
    for (k, v) in lines {
        println!("{}: {v}", k.to_lowercase());
    }
    println!();
}

fn prune(c: &Client, a: PruneArgs) -> R<i32> {
    if !a.force {
        let what =
            if a.all { "all images without at least one container associated to them" } else { "all dangling images" };
        if !confirm(&format!("WARNING! This will remove {what}.")) {
            return Err(Fail(1, "image prune has been cancelled".into()));
        }
    }
    let v =
        c.call("POST", &format!("/images/prune?filters={}", enc(&prune_filters(!a.all, &a.filter)?)), None)?.json()?;
    print_deleted_images(&v);
    println!("Total reclaimed space: {}", human_size(v["SpaceReclaimed"].as_u64().unwrap_or(0)));
    Ok(0)
}

/// `--keep-storage`: bytes, or a number with a binary unit as Docker's (`512m`, `2GB`).
fn parse_bytes(s: &str) -> Result<u64, String> {
    let t = s.trim().to_ascii_lowercase();
    let split = t.find(|c: char| !(c.is_ascii_digit() || c == '.')).unwrap_or(t.len());
    let (n, unit) = t.split_at(split);
    let n: f64 = n.parse().map_err(|_| format!("invalid size: {s:?}"))?;
    let mult: u64 = match unit.trim_end_matches('b').trim_end_matches('i') {
        "" => 1,
        "k" => 1 << 10,
        "m" => 1 << 20,
        "g" => 1 << 30,
        "t" => 1 << 40,
        _ => return Err(format!("invalid size: {s:?}")),
    };
    Ok((n * mult as f64) as u64)
}

fn builder_prune(c: &Client, a: BuilderPruneArgs) -> R<i32> {
    if !a.force {
        let what = if a.all { "all build cache" } else { "all dangling build cache" };
        if !confirm(&format!("WARNING! This will remove {what}.")) {
            return Err(Fail(1, "builder prune has been cancelled".into()));
        }
    }
    let mut q = format!("/build/prune?filters={}", enc(&filters_json(&a.filter)?));
    if a.all {
        q.push_str("&all=1");
    }
    if let Some(k) = a.keep_storage.filter(|k| *k > 0) {
        q.push_str(&format!("&keep-storage={k}"));
    }
    let v = c.call("POST", &q, None)?.json()?;
    let ids = v["CachesDeleted"].as_array().cloned().unwrap_or_default();
    if !ids.is_empty() {
        println!("Deleted build cache objects:");
        for id in ids {
            println!("{}", id.as_str().unwrap_or_default());
        }
        println!();
    }
    println!("Total reclaimed space: {}", human_size(v["SpaceReclaimed"].as_u64().unwrap_or(0)));
    Ok(0)
}

/// `builder du`: the build cache's records and mounts, as `docker buildx du` shows them.
fn builder_du(c: &Client, a: BuilderDuArgs) -> R<i32> {
    let v = c.get("/system/df")?;
    let cache = v["BuildCache"].as_array().cloned().unwrap_or_default();
    let size = |x: &Value| x["Size"].as_u64().unwrap_or(0);
    if a.verbose {
        for x in &cache {
            println!("ID:\t\t{}", plain(&x["ID"]));
            println!("Type:\t\t{}", plain(&x["Type"]));
            println!("Description:\t{}", plain(&x["Description"]));
            println!("Created at:\t{}", plain(&x["CreatedAt"]));
            println!("Last used:\t{}", plain(&x["LastUsedAt"]));
            println!("Shared:\t\t{}", x["Shared"].as_bool().unwrap_or(false));
            println!("In use:\t\t{}", x["InUse"].as_bool().unwrap_or(false));
            println!("Size:\t\t{}\n", human_size(size(x)));
        }
    } else {
        let rows: Vec<Value> = cache
            .iter()
            .map(|x| {
                let id = plain(&x["ID"]);
                let mark = if x["InUse"] == true { "*" } else { "" };
                json!({"ID": format!("{}{mark}", &id[..id.len().min(25)]), "Reclaimable": x["InUse"] != true && x["Shared"] != true,
                       "Size": human_size(size(x)), "LastAccessed": ago(berth_runtime::state::parse_rfc3339(&plain(&x["LastUsedAt"])).unwrap_or(0))})
            })
            .collect();
        let header = |f: &str| match f {
            "LastAccessed" => "LAST ACCESSED".to_string(),
            other => other.to_uppercase(),
        };
        print_formatted("table {{.ID}}\t{{.Reclaimable}}\t{{.Size}}\t{{.LastAccessed}}", &rows, Some(&header))?;
    }
    let total: u64 = cache.iter().filter(|x| x["Shared"] != true).map(size).sum();
    let shared: u64 = cache.iter().filter(|x| x["Shared"] == true).map(size).sum();
    let reclaimable: u64 = cache.iter().filter(|x| x["Shared"] != true && x["InUse"] != true).map(size).sum();
    if shared > 0 {
        println!("Shared:\t\t{}", human_size(shared));
    }
    println!("Reclaimable:\t{}", human_size(reclaimable));
    println!("Total:\t\t{}", human_size(total));
    Ok(0)
}

fn save(c: &Client, a: SaveArgs) -> R<i32> {
    if a.output.is_none() && std::io::stdout().is_terminal() {
        return Err(Fail(1, "cowardly refusing to save to a terminal. Use the -o flag or redirect".into()));
    }
    let q: Vec<String> = a.images.iter().map(|n| format!("names={}", enc(n))).collect();
    let mut body = c.stream("GET", &format!("/images/get?{}", q.join("&")), None)?;
    let failed = |e: std::io::Error| Fail(1, format!("saving the images: {e}"));
    match &a.output {
        Some(path) => {
            let tmp = path.with_extension("berth-partial");
            let f = std::fs::File::create(&tmp).map_err(|e| Fail(1, format!("create {}: {e}", tmp.display())))?;
            let mut w = std::io::BufWriter::new(f);
            let res = std::io::copy(&mut body, &mut w).and_then(|_| w.flush()).map_err(failed).and_then(|_| {
                std::fs::rename(&tmp, path).map_err(|e| Fail(1, format!("write {}: {e}", path.display())))
            });
            if res.is_err() {
                let _ = std::fs::remove_file(&tmp);
            }
            res.map(|_| 0)
        }
        None => {
            let mut out = std::io::stdout().lock();
            std::io::copy(&mut body, &mut out).and_then(|_| out.flush()).map_err(failed)?;
            Ok(0)
        }
    }
}

/// Read a response's JSON message stream to its end: `stream` text to stdout, `status` lines
/// through `status`; an error message fails.
fn read_messages(body: impl Read, status: impl FnMut(&str)) -> R<()> {
    read_messages_with(body, status, |_| {})
}

/// [`read_messages`], also showing every message to `each` (for `aux`).
pub(crate) fn read_messages_with(body: impl Read, status: impl FnMut(&str), each: impl FnMut(&Value)) -> R<()> {
    read_messages_to(body, &mut std::io::stdout(), status, each)
}

/// [`read_messages_with`], the `stream` text written to `stdout` (stderr when the command's
/// stdout carries data, as `berth build -o -` does).
pub(crate) fn read_messages_to(
    body: impl Read,
    stdout: &mut dyn Write,
    mut status: impl FnMut(&str),
    mut each: impl FnMut(&Value),
) -> R<()> {
    for line in std::io::BufReader::new(body).lines() {
        let line = line.map_err(|e| Fail(1, format!("reading from the daemon: {e}")))?;
        let Ok(v) = serde_json::from_str::<Value>(&line) else { continue };
        if let Some(m) = stream_error(&v) {
            return Err(Fail(1, m));
        }
        if let Some(s) = v["stream"].as_str() {
            let _ = stdout.write_all(s.as_bytes());
            let _ = stdout.flush();
        } else if let Some(s) = v["status"].as_str() {
            status(s);
        }
        each(&v);
    }
    Ok(())
}

/// The tarball to send: a file, or stdin (never a terminal).
fn input(path: Option<&str>, what: &str) -> R<Box<dyn Read>> {
    match path {
        None | Some("-") => {
            if std::io::stdin().is_terminal() {
                return Err(Fail(1, format!("requested {what} from stdin, but stdin is empty")));
            }
            Ok(Box::new(std::io::stdin()))
        }
        Some(p) => {
            let f = std::fs::File::open(p).map_err(|e| Fail(1, format!("open {p}: {e}")))?;
            Ok(Box::new(f))
        }
    }
}

fn load(c: &Client, a: LoadArgs) -> R<i32> {
    let path = a.input.as_ref().map(|p| p.to_string_lossy().into_owned());
    let mut r = input(path.as_deref(), "load")?;
    let body = c.stream_with(
        "POST",
        &format!("/images/load?quiet={}", a.quiet),
        &[],
        ReqBody::Stream("application/x-tar", &mut r),
    )?;
    read_messages(body, |s| eprintln!("{s}"))?;
    Ok(0)
}

fn import(c: &Client, a: ImportArgs) -> R<i32> {
    let mut q = Vec::new();
    if let Some(r) = &a.reference {
        let parsed = parse_ref(r)?;
        if parsed.digest().is_some() {
            return Err(Fail(1, format!("cannot import to a reference with a digest: {r}")));
        }
        q.push(format!("repo={}", enc(r)));
    }
    if let Some(m) = &a.message {
        q.push(format!("message={}", enc(m)));
    }
    if let Some(p) = &a.platform {
        q.push(format!("platform={}", enc(p)));
    }
    for ch in &a.changes {
        q.push(format!("changes={}", enc(ch)));
    }
    let is_url = a.file.starts_with("http://") || a.file.starts_with("https://");
    q.insert(0, format!("fromSrc={}", if is_url { enc(&a.file) } else { "-".into() }));
    let path = format!("/images/create?{}", q.join("&"));
    let body = if is_url {
        c.stream_with("POST", &path, &[], ReqBody::None)?
    } else {
        let mut r = input(Some(&a.file), "import")?;
        c.stream_with("POST", &path, &[], ReqBody::Stream("application/x-tar", &mut r))?
    };
    let mut last = String::new();
    read_messages(body, |s| last = s.to_string())?;
    if last.is_empty() {
        return Err(Fail(1, "the daemon did not say which image it imported".into()));
    }
    println!("{last}");
    Ok(0)
}

/// A line typed on the terminal; without echo for secrets.
fn prompt(label: &str, secret: bool) -> R<String> {
    print!("{label}");
    let _ = std::io::stdout().flush();
    // SAFETY: tcgetattr fills a zeroed termios for fd 0; the copy is restored below.
    let mut t: libc::termios = unsafe { std::mem::zeroed() };
    let saved = (secret && unsafe { libc::tcgetattr(0, &mut t) } == 0).then_some(t);
    if let Some(mut quiet) = saved {
        quiet.c_lflag &= !libc::ECHO;
        // SAFETY: a termios read from this terminal, with echo off.
        unsafe { libc::tcsetattr(0, libc::TCSANOW, &quiet) };
    }
    let mut s = String::new();
    let r = std::io::stdin().lock().read_line(&mut s);
    if let Some(orig) = saved {
        // SAFETY: restoring the terminal's settings as they were.
        unsafe { libc::tcsetattr(0, libc::TCSANOW, &orig) };
        println!();
    }
    r.map_err(|e| Fail(1, format!("reading from the terminal: {e}")))?;
    Ok(s.trim_end_matches(['\n', '\r']).to_string())
}

/// `POST /auth`: the daemon checks the credentials with the registry; its status line.
fn authenticate(c: &Client, creds: &Credentials, server: &str) -> R<String> {
    let body = json!({"username": creds.username, "password": creds.password, "serveraddress": server});
    let v = c.call("POST", "/auth", Some(&body))?.json()?;
    Ok(v["Status"].as_str().filter(|s| !s.is_empty()).unwrap_or("Login Succeeded").to_string())
}

fn login(c: &Client, a: LoginArgs) -> R<i32> {
    let mut password = a.password.clone();
    if password.is_some() {
        eprintln!("WARNING! Using --password via the CLI is insecure. Use --password-stdin.");
        if a.password_stdin {
            return Err(Fail(1, "--password and --password-stdin are mutually exclusive".into()));
        }
    }
    if a.password_stdin {
        if a.username.is_none() {
            return Err(Fail(1, "Must provide --username with --password-stdin".into()));
        }
        let mut s = String::new();
        std::io::stdin()
            .read_to_string(&mut s)
            .map_err(|e| Fail(1, format!("reading the password from stdin: {e}")))?;
        password = Some(s.trim_end_matches('\n').trim_end_matches('\r').to_string());
    }
    let domain = auth::server_domain(a.server.as_deref());
    let server = match a.server.as_deref() {
        Some(s) if auth::server_domain(Some(s)) != "docker.io" => s.to_string(),
        _ => auth::DOCKER_HUB_AUTH_KEY.to_string(),
    };
    let path = auth::default_config_path()
        .ok_or_else(|| Fail(1, "cannot find Docker's config.json: set HOME or DOCKER_CONFIG".into()))?;
    // Stored credentials first, when none are given (as docker does).
    if a.username.is_none() && password.is_none() {
        if let Some(stored) = auth::lookup(&path, &domain).map_err(|e| Fail(1, e.to_string()))? {
            println!(
                "Authenticating with existing credentials... [Username: {}]\n\
                 To login with a different account, run 'berth logout' followed by 'berth login'\n",
                stored.username
            );
            match authenticate(c, &stored, &server) {
                Ok(status) => {
                    println!("{status}");
                    return Ok(0);
                }
                Err(Fail(_, m)) => eprintln!("Login did not succeed, error: {m}"),
            }
        }
    }
    let (username, password) = match (a.username, password) {
        (Some(u), Some(p)) => (u, p),
        (u, p) => {
            if !std::io::stdin().is_terminal() {
                return Err(Fail(1, "Error: Cannot perform an interactive login from a non TTY device".into()));
            }
            let u = match u {
                Some(u) => u,
                None => prompt("Username: ", false)?,
            };
            let p = match p {
                Some(p) => p,
                None => prompt("Password: ", true)?,
            };
            (u, p)
        }
    };
    if username.trim().is_empty() {
        return Err(Fail(1, "Error: Non-null Username Required".into()));
    }
    if password.is_empty() {
        return Err(Fail(1, "Error: Password Required".into()));
    }
    let creds = Credentials { username: username.trim().to_string(), password };
    let status = authenticate(c, &creds, &server)?;
    auth::store(&path, &domain, &creds).map_err(|e| Fail(1, format!("Error saving credentials: {e}")))?;
    println!("{status}");
    Ok(0)
}

/// `N (P%)` as Docker's reclaimable column.
fn reclaimable(part: u64, total: u64) -> String {
    match (part * 100).checked_div(total) {
        Some(pct) => format!("{} ({pct}%)", human_size_prec(part, 4)),
        None => human_size_prec(part, 4),
    }
}

fn df(c: &Client, a: DfArgs) -> R<i32> {
    let v = c.get("/system/df")?;
    let list = |k: &str| v[k].as_array().cloned().unwrap_or_default();
    let (imgs, cs, vols) = (list("Images"), list("Containers"), list("Volumes"));
    let size = |x: &Value, k: &str| x[k].as_i64().unwrap_or(0).max(0) as u64;
    let img_total = v["LayersSize"].as_u64().unwrap_or_else(|| imgs.iter().map(|i| size(i, "Size")).sum());
    let img_used: u64 = imgs
        .iter()
        .filter(|i| i["Containers"].as_i64().unwrap_or(0) > 0)
        .map(|i| size(i, "Size").saturating_sub(size(i, "SharedSize")))
        .sum();
    let c_total: u64 = cs.iter().map(|x| size(x, "SizeRw")).sum();
    let c_idle: u64 = cs.iter().filter(|x| x["State"] != "running").map(|x| size(x, "SizeRw")).sum();
    let vsize = |x: &Value| size(&x["UsageData"], "Size");
    let v_total: u64 = vols.iter().map(vsize).sum();
    let v_idle: u64 = vols.iter().filter(|x| x["UsageData"]["RefCount"].as_i64().unwrap_or(0) == 0).map(vsize).sum();
    let row = |t: &str, n: usize, active: usize, total: u64, rec: String| json!({"Type": t, "TotalCount": n, "Active": active, "Size": human_size_prec(total, 4), "Reclaimable": rec});
    let rows = vec![
        row(
            "Images",
            imgs.len(),
            imgs.iter().filter(|i| i["Containers"].as_i64().unwrap_or(0) > 0).count(),
            img_total,
            reclaimable(img_total.saturating_sub(img_used), img_total),
        ),
        row(
            "Containers",
            cs.len(),
            cs.iter().filter(|x| x["State"] == "running").count(),
            c_total,
            reclaimable(c_idle, c_total),
        ),
        row(
            "Local Volumes",
            vols.len(),
            vols.iter().filter(|x| x["UsageData"]["RefCount"].as_i64().unwrap_or(0) > 0).count(),
            v_total,
            reclaimable(v_idle, v_total),
        ),
        {
            let bc = list("BuildCache");
            let own: Vec<&Value> = bc.iter().filter(|x| x["Shared"] != true).collect();
            let total: u64 = own.iter().map(|x| size(x, "Size")).sum();
            let idle: u64 = own.iter().filter(|x| x["InUse"] != true).map(|x| size(x, "Size")).sum();
            let active = bc.iter().filter(|x| x["InUse"] == true).count();
            row("Build Cache", bc.len(), active, total, reclaimable(idle, total))
        },
    ];
    if !a.verbose {
        let format = match a.format.as_deref() {
            None | Some("table") => "table {{.Type}}\t{{.TotalCount}}\t{{.Active}}\t{{.Size}}\t{{.Reclaimable}}",
            Some(f) => f,
        };
        let header = |f: &str| match f {
            "TotalCount" => "TOTAL".to_string(),
            other => other.to_uppercase(),
        };
        print_formatted(format, &rows, Some(&header))?;
        return Ok(0);
    }
    println!("Images space usage:\n");
    let mut img_rows = Vec::new();
    for i in &imgs {
        for mut r in image_rows(i, false) {
            r["SharedSize"] = json!(human_size(size(i, "SharedSize")));
            r["UniqueSize"] = json!(human_size(size(i, "Size").saturating_sub(size(i, "SharedSize"))));
            img_rows.push(r);
        }
    }
    print_formatted(
        "table {{.Repository}}\t{{.Tag}}\t{{.ID}}\t{{.CreatedSince}}\t{{.Size}}\t{{.SharedSize}}\t{{.UniqueSize}}\t{{.Containers}}",
        &img_rows,
        Some(&image_header),
    )?;
    println!("\nContainers space usage:\n");
    let c_rows: Vec<Value> = cs
        .iter()
        .map(|x| {
            let mut cmd = plain(&x["Command"]);
            if cmd.chars().count() > 20 {
                cmd = cmd.chars().take(19).collect::<String>() + "…";
            }
            let names: Vec<String> = x["Names"]
                .as_array()
                .map(|a| a.iter().map(|n| plain(n).trim_start_matches('/').to_string()).collect())
                .unwrap_or_default();
            json!({
                "ID": image_id(x["Id"].as_str().unwrap_or(""), false),
                "Image": x["Image"],
                "Command": format!("\"{cmd}\""),
                "LocalVolumes": x["Mounts"].as_array().map(|m| m.iter().filter(|m| m["Type"] == "volume").count()).unwrap_or(0),
                "Size": human_size(size(x, "SizeRw")),
                "RunningFor": ago(x["Created"].as_i64().unwrap_or(0)),
                "Status": x["Status"],
                "Names": names.join(","),
            })
        })
        .collect();
    let c_header = |f: &str| match f {
        "ID" => "CONTAINER ID".to_string(),
        "LocalVolumes" => "LOCAL VOLUMES".into(),
        "RunningFor" => "CREATED".into(),
        other => other.to_uppercase(),
    };
    print_formatted(
        "table {{.ID}}\t{{.Image}}\t{{.Command}}\t{{.LocalVolumes}}\t{{.Size}}\t{{.RunningFor}}\t{{.Status}}\t{{.Names}}",
        &c_rows,
        Some(&c_header),
    )?;
    println!("\nLocal Volumes space usage:\n");
    let v_rows: Vec<Value> = vols
        .iter()
        .map(|x| json!({"Name": x["Name"], "Links": x["UsageData"]["RefCount"], "Size": human_size(vsize(x))}))
        .collect();
    let v_header = |f: &str| match f {
        "Name" => "VOLUME NAME".to_string(),
        other => other.to_uppercase(),
    };
    print_formatted("table {{.Name}}\t{{.Links}}\t{{.Size}}", &v_rows, Some(&v_header))?;
    println!("\nBuild cache usage: 0B");
    Ok(0)
}

fn system_prune(c: &Client, a: SystemPruneArgs) -> R<i32> {
    if !a.force {
        let mut w = String::from("WARNING! This will remove:\n  - all stopped containers\n");
        if a.volumes {
            w.push_str("  - all anonymous volumes not used by at least one container\n");
        }
        w.push_str(if a.all {
            "  - all images without at least one container associated to them\n"
        } else {
            "  - all dangling images\n"
        });
        w.push_str(if a.all { "  - all build cache\n" } else { "  - unused build cache\n" });
        if !confirm(&w) {
            return Err(Fail(1, "system prune has been cancelled".into()));
        }
    }
    let filters =
        if a.filter.is_empty() { String::new() } else { format!("?filters={}", enc(&filters_json(&a.filter)?)) };
    let mut space = 0u64;
    let v = c.call("POST", &format!("/containers/prune{filters}"), None)?.json()?;
    space += v["SpaceReclaimed"].as_u64().unwrap_or(0);
    let ids: Vec<String> = v["ContainersDeleted"].as_array().map(|a| a.iter().map(plain).collect()).unwrap_or_default();
    if !ids.is_empty() {
        println!("Deleted Containers:\n{}\n", ids.join("\n"));
    }
    if a.volumes {
        let v = c.call("POST", &format!("/volumes/prune{filters}"), None)?.json()?;
        space += v["SpaceReclaimed"].as_u64().unwrap_or(0);
        let names: Vec<String> =
            v["VolumesDeleted"].as_array().map(|a| a.iter().map(plain).collect()).unwrap_or_default();
        if !names.is_empty() {
            println!("Deleted Volumes:\n{}\n", names.join("\n"));
        }
    }
    let v =
        c.call("POST", &format!("/images/prune?filters={}", enc(&prune_filters(!a.all, &a.filter)?)), None)?.json()?;
    space += v["SpaceReclaimed"].as_u64().unwrap_or(0);
    print_deleted_images(&v);
    println!("Total reclaimed space: {}", human_size(space));
    Ok(0)
}

fn arch() -> &'static str {
    match std::env::consts::ARCH {
        "x86_64" => "amd64",
        "aarch64" => "arm64",
        other => other,
    }
}

/// Label/value lines as Docker's `version` prints them (values aligned at column 21).
fn kv_lines(indent: &str, rows: &[(&str, String)]) {
    for (k, v) in rows {
        let label = format!("{indent}{k}:");
        println!("{label:<20}{v}");
    }
}

fn version(c: &Client, a: VersionArgs) -> R<i32> {
    let client = json!({
        "Platform": {"Name": "Berth"},
        "Version": env!("CARGO_PKG_VERSION"),
        "ApiVersion": crate::client::API_VERSION,
        "Os": "linux",
        "Arch": arch(),
    });
    let server = c.get("/version");
    if let Some(f) = &a.format {
        let doc = json!({"Client": client, "Server": server.as_ref().ok()});
        print_formatted(f, &[doc], None)?;
        return match server {
            Ok(_) => Ok(0),
            Err(e) => Err(e.into()),
        };
    }
    println!("Client: Berth");
    kv_lines(
        " ",
        &[
            ("Version", plain(&client["Version"])),
            ("API version", plain(&client["ApiVersion"])),
            ("OS/Arch", format!("linux/{}", arch())),
        ],
    );
    let s = match server {
        Ok(s) => s,
        Err(e) => {
            println!();
            return Err(e.into());
        }
    };
    let platform =
        s["Platform"]["Name"].as_str().filter(|n| !n.is_empty()).map(|n| format!(" {n}")).unwrap_or_default();
    println!("\nServer:{platform}\n Engine:");
    kv_lines(
        "  ",
        &[
            ("Version", plain(&s["Version"])),
            ("API version", format!("{} (minimum version {})", plain(&s["ApiVersion"]), plain(&s["MinAPIVersion"]))),
            ("OS/Arch", format!("{}/{}", plain(&s["Os"]), plain(&s["Arch"]))),
            ("Kernel Version", plain(&s["KernelVersion"])),
        ],
    );
    Ok(0)
}
