//! Image commands in the direct (offline) mode, `berth --data-root DIR <verb>`: `pull`, `push`,
//! `images`, `tag`, `rmi`, `image inspect|history|prune`, `save`, `load`, `import`, `login`,
//! `logout`, `system prune`, acting on the image store under DIR without a daemon. Without
//! `--data-root` the same verbs go through the daemon (`image_api`).

use clap::{Args, Parser, Subcommand, ValueEnum};
use std::path::PathBuf;

/// Docker's verbs for images, on berth's local store.
#[derive(Parser, Debug)]
#[command(name = "berth", version, disable_help_subcommand = true)]
pub struct ImageCli {
    /// Root of berth's persistent data (images, snapshots)
    #[arg(long, global = true, env = "BERTH_DATA_ROOT", default_value = "/var/lib/berth", value_name = "DIR")]
    pub data_root: PathBuf,
    #[command(subcommand)]
    pub cmd: Cmd,
}

#[derive(Subcommand, Debug)]
pub enum Cmd {
    /// Download an image from a registry
    Pull(PullArgs),
    /// Upload an image to a registry
    Push(PushArgs),
    /// List images
    Images(ImagesArgs),
    /// Create a tag TARGET_IMAGE that refers to SOURCE_IMAGE
    Tag { source: String, target: String },
    /// Remove one or more images
    Rmi(RmiArgs),
    /// Save images to a tar that is both a docker-archive and an OCI layout (stdout by default)
    Save(SaveArgs),
    /// Load images from a docker-archive or OCI-layout tar, or stdin
    Load(LoadArgs),
    /// Import the contents from a tarball to create a filesystem image
    Import(ImportArgs),
    /// Show the history of an image
    History(HistoryArgs),
    /// Log in to a registry
    Login(LoginArgs),
    /// Log out from a registry
    Logout { server: Option<String> },
    /// Manage images
    Image {
        #[command(subcommand)]
        cmd: ImageSub,
    },
    /// Manage Berth (prune)
    System {
        #[command(subcommand)]
        cmd: SystemSub,
    },
}

#[derive(Subcommand, Debug)]
pub enum SystemSub {
    /// Remove unused data: dangling images (all unused ones with --all), their layers and blobs
    Prune(PruneArgs),
}

#[derive(Subcommand, Debug)]
pub enum ImageSub {
    /// Download an image from a registry
    Pull(PullArgs),
    /// Upload an image to a registry
    Push(PushArgs),
    /// List images
    #[command(alias = "list")]
    Ls(ImagesArgs),
    /// Create a tag TARGET_IMAGE that refers to SOURCE_IMAGE
    Tag { source: String, target: String },
    /// Remove one or more images
    #[command(alias = "remove")]
    Rm(RmiArgs),
    /// Display detailed information on one or more images
    Inspect(InspectArgs),
    /// Show the history of an image
    History(HistoryArgs),
    /// Remove unused images
    Prune(PruneArgs),
    /// Save one or more images to a tar archive
    Save(SaveArgs),
    /// Load an image from a tar archive or stdin
    Load(LoadArgs),
    /// Import the contents from a tarball to create a filesystem image
    Import(ImportArgs),
}

#[derive(Args, Debug)]
pub struct PullArgs {
    /// Image reference: NAME[:TAG|@DIGEST]
    pub image: String,
    /// Platform to select from a multi-platform image: os/arch[/variant]
    #[arg(long)]
    pub platform: Option<String>,
    /// Suppress verbose output (print only the image reference)
    #[arg(short, long)]
    pub quiet: bool,
    /// Download all tagged images in the repository (not supported)
    #[arg(short = 'a', long)]
    pub all_tags: bool,
}

#[derive(Args, Debug)]
pub struct PushArgs {
    /// Image reference: NAME[:TAG]
    pub image: String,
    /// Suppress verbose output
    #[arg(short, long)]
    pub quiet: bool,
    /// Push all tags of the repository (not supported)
    #[arg(short = 'a', long)]
    pub all_tags: bool,
}

#[derive(Clone, Copy, Debug, ValueEnum, PartialEq)]
pub enum Format {
    Table,
    Json,
}

#[derive(Args, Debug)]
pub struct ImagesArgs {
    /// Only images whose repository matches (REPOSITORY[:TAG])
    pub repository: Option<String>,
    /// Show all images (the default already does; accepted for compatibility)
    #[arg(short, long)]
    pub all: bool,
    /// Only show image IDs
    #[arg(short, long)]
    pub quiet: bool,
    /// Don't truncate output
    #[arg(long)]
    pub no_trunc: bool,
    /// Show digests
    #[arg(long)]
    pub digests: bool,
    /// Output format: table or json (one JSON object per line, like docker's `--format json`)
    #[arg(long, value_enum, default_value_t = Format::Table)]
    pub format: Format,
}

#[derive(Args, Debug)]
pub struct RmiArgs {
    /// Images to remove (reference or ID)
    #[arg(required = true)]
    pub images: Vec<String>,
    /// Remove the image even if several references point to it
    #[arg(short, long)]
    pub force: bool,
}

#[derive(Args, Debug)]
pub struct InspectArgs {
    #[arg(required = true)]
    pub images: Vec<String>,
}

#[derive(Args, Debug)]
pub struct HistoryArgs {
    pub image: String,
    /// Don't truncate output
    #[arg(long)]
    pub no_trunc: bool,
    /// Only show image IDs
    #[arg(short, long)]
    pub quiet: bool,
    /// Output format: table or json
    #[arg(long, value_enum, default_value_t = Format::Table)]
    pub format: Format,
}

#[derive(Args, Debug)]
pub struct PruneArgs {
    /// Remove all images without a container, not just dangling ones
    #[arg(short, long)]
    pub all: bool,
    /// Do not prompt for confirmation
    #[arg(short, long)]
    pub force: bool,
}

#[derive(Args, Debug)]
pub struct SaveArgs {
    #[arg(required = true)]
    pub images: Vec<String>,
    /// Write to a file instead of stdout
    #[arg(short, long)]
    pub output: Option<PathBuf>,
}

#[derive(Args, Debug)]
pub struct LoadArgs {
    /// Read from a tar archive file instead of stdin
    #[arg(short, long)]
    pub input: Option<PathBuf>,
    /// Suppress the load output
    #[arg(short, long)]
    pub quiet: bool,
}

#[derive(Args, Debug)]
pub struct ImportArgs {
    /// A root filesystem tarball (plain, gzip or zstd), or - for stdin
    pub file: String,
    /// REPOSITORY[:TAG] to give the image
    pub reference: Option<String>,
    /// Apply a Dockerfile instruction to the image config (CMD, ENTRYPOINT, ENV, WORKDIR, USER, LABEL, EXPOSE)
    #[arg(short, long = "change")]
    pub changes: Vec<String>,
    /// Set the commit message
    #[arg(short, long)]
    pub message: Option<String>,
    /// Platform of the image: os/arch[/variant]
    #[arg(long)]
    pub platform: Option<String>,
}

#[derive(Args, Debug)]
pub struct LoginArgs {
    /// Registry server (default Docker Hub)
    pub server: Option<String>,
    #[arg(short, long)]
    pub username: Option<String>,
    /// Password (prefer --password-stdin)
    #[arg(short, long)]
    pub password: Option<String>,
    /// Read the password from stdin
    #[arg(long)]
    pub password_stdin: bool,
}

// ---------------------------------------------------------------------------------------------

use crate::progress::{Item, Progress};
use crate::table::human_size;
use berth_image::{ImageRecord, ImageStore, Reference};
use berth_registry::auth::{self, Credentials};
use berth_registry::pull::{self, PullProgress};
use berth_registry::{Client, ClientOptions, Platform};
use serde_json::{json, Value};
use std::collections::HashMap;
use std::io::{IsTerminal, Read, Write};
use std::sync::Mutex;

type Result<T> = std::result::Result<T, String>;

fn e<E: std::fmt::Display>(err: E) -> String {
    err.to_string()
}

/// Entry point for the image verbs; returns the exit code (125 on error, like docker).
pub fn main(args: Vec<std::ffi::OsString>) -> i32 {
    let cli = match ImageCli::try_parse_from(args) {
        Ok(c) => c,
        Err(err) => {
            let code = if err.use_stderr() { 125 } else { 0 };
            let _ = err.print();
            return code;
        }
    };
    match dispatch(&cli) {
        Ok(code) => code,
        Err(msg) => {
            eprintln!("berth: {msg}");
            1
        }
    }
}

fn open_store(cli: &ImageCli) -> Result<ImageStore> {
    ImageStore::open(cli.data_root.join("image")).map_err(e)
}

fn client() -> Client {
    Client::new(ClientOptions::from_env())
}

fn dispatch(cli: &ImageCli) -> Result<i32> {
    match &cli.cmd {
        Cmd::Pull(a) | Cmd::Image { cmd: ImageSub::Pull(a) } => cmd_pull(cli, a),
        Cmd::Push(a) | Cmd::Image { cmd: ImageSub::Push(a) } => cmd_push(cli, a),
        Cmd::Images(a) | Cmd::Image { cmd: ImageSub::Ls(a) } => cmd_images(cli, a),
        Cmd::Tag { source, target } | Cmd::Image { cmd: ImageSub::Tag { source, target } } => {
            let store = open_store(cli)?;
            let t = Reference::parse(target).map_err(e)?;
            store.tag(source, &t).map_err(e)?;
            Ok(0)
        }
        Cmd::Rmi(a) | Cmd::Image { cmd: ImageSub::Rm(a) } => {
            let store = open_store(cli)?;
            let mut code = 0;
            for i in &a.images {
                match store.remove(i, a.force) {
                    Ok(lines) => lines.iter().for_each(|l| println!("{l}")),
                    Err(err) => {
                        eprintln!("berth: {err}");
                        code = 1;
                    }
                }
            }
            Ok(code)
        }
        Cmd::Image { cmd: ImageSub::Inspect(a) } => cmd_inspect(cli, a),
        Cmd::History(a) | Cmd::Image { cmd: ImageSub::History(a) } => cmd_history(cli, a),
        Cmd::Image { cmd: ImageSub::Prune(a) } => cmd_prune(cli, a, false),
        Cmd::System { cmd: SystemSub::Prune(a) } => cmd_prune(cli, a, true),
        Cmd::Save(a) | Cmd::Image { cmd: ImageSub::Save(a) } => cmd_save(cli, a),
        Cmd::Load(a) | Cmd::Image { cmd: ImageSub::Load(a) } => cmd_load(cli, a),
        Cmd::Import(a) | Cmd::Image { cmd: ImageSub::Import(a) } => cmd_import(cli, a),
        Cmd::Login(a) => cmd_login(a),
        Cmd::Logout { server } => logout(server.as_deref()),
    }
}

/// `logout`: the credentials for the server leave Docker's config.json (client-side only, in
/// both modes, as Docker's).
pub fn logout(server: Option<&str>) -> Result<i32> {
    let domain = auth::server_domain(server);
    let path = auth::default_config_path().ok_or("cannot find Docker's config.json: set HOME or DOCKER_CONFIG")?;
    if auth::remove(&path, &domain).map_err(e)? {
        println!("Removing login credentials for {}", auth::display_server(&domain));
    } else {
        println!("Not logged in to {}", auth::display_server(&domain));
    }
    Ok(0)
}

fn cmd_login(a: &LoginArgs) -> Result<i32> {
    let domain = auth::server_domain(a.server.as_deref());
    let username = match &a.username {
        Some(u) => u.clone(),
        None => return Err("--username is required (interactive login is not supported)".into()),
    };
    let password = match (&a.password, a.password_stdin) {
        (Some(_), true) => return Err("--password and --password-stdin are mutually exclusive".into()),
        (Some(p), false) => {
            eprintln!("WARNING! Using --password via the CLI is insecure. Use --password-stdin.");
            p.clone()
        }
        (None, true) => {
            let mut s = String::new();
            std::io::stdin().read_to_string(&mut s).map_err(|err| format!("read password from stdin: {err}"))?;
            s.trim_end_matches(['\n', '\r']).to_string()
        }
        (None, false) => return Err("a password is required: use --password-stdin".into()),
    };
    if password.is_empty() {
        return Err("the password is empty".into());
    }
    let creds = Credentials { username, password };
    let c = Client::new(ClientOptions { credentials: Some(creds.clone()), ..Default::default() });
    c.ping(&domain).map_err(e)?;
    let path = auth::default_config_path().ok_or("cannot find Docker's config.json: set HOME or DOCKER_CONFIG")?;
    auth::store(&path, &domain, &creds).map_err(e)?;
    println!("Login Succeeded");
    Ok(0)
}

/// Pull progress on the terminal (bars) or as plain lines.
struct CliProgress {
    p: Progress,
    items: Mutex<HashMap<String, Item>>,
}

impl PullProgress for CliProgress {
    fn layer(&self, id: &str, size: u64) {
        let it = self.p.item(id, size, "Pulling fs layer");
        self.items.lock().unwrap_or_else(|x| x.into_inner()).insert(id.to_string(), it);
    }
    fn downloading(&self, id: &str, done: u64, _size: u64) {
        if let Some(it) = self.items.lock().unwrap_or_else(|x| x.into_inner()).get(id) {
            it.set_position(done);
        }
    }
    fn finished(&self, id: &str, state: &str) {
        if let Some(it) = self.items.lock().unwrap_or_else(|x| x.into_inner()).get(id) {
            it.finish(state);
        }
    }
}

fn cmd_pull(cli: &ImageCli, a: &PullArgs) -> Result<i32> {
    if a.all_tags {
        return Err("--all-tags is not supported: pull one tag at a time".into());
    }
    let r = Reference::parse(&a.image).map_err(e)?;
    let platform = match &a.platform {
        Some(p) => Platform::parse(p).map_err(e)?,
        None => Platform::host(),
    };
    let store = open_store(cli)?;
    let c = client();
    let progress = CliProgress { p: Progress::new(a.quiet), items: Mutex::new(HashMap::new()) };
    if !a.quiet {
        let what = match (r.tag(), r.digest()) {
            (_, Some(d)) => d.to_string(),
            (Some(t), None) => t.to_string(),
            _ => "latest".into(),
        };
        progress.p.line(&format!("{what}: Pulling from {}", r.familiar_name()));
    }
    let out = pull::pull(&c, &store, &r, &platform, &progress).map_err(e)?;
    if !a.quiet {
        progress.p.line(&format!("Digest: {}", out.digest));
        progress.p.line(&format!(
            "Status: {} for {}",
            if out.downloaded { "Downloaded newer image" } else { "Image is up to date" },
            r.familiar()
        ));
    }
    println!("{r}");
    Ok(0)
}

/// Push progress on the terminal: one bar per blob being uploaded.
struct TermPush {
    p: Progress,
    items: std::sync::Mutex<std::collections::BTreeMap<String, crate::progress::Item>>,
}

impl berth_registry::push::PushProgress for TermPush {
    fn line(&self, msg: &str) {
        self.p.line(msg);
    }
    fn uploading(&self, id: &str, done: u64, size: u64) {
        let mut items = self.items.lock().unwrap_or_else(|e| e.into_inner());
        let item = items.entry(id.to_string()).or_insert_with(|| self.p.item(id, size, "Pushing"));
        item.set_position(done);
    }
    fn finished(&self, id: &str, state: &str) {
        if let Some(item) = self.items.lock().unwrap_or_else(|e| e.into_inner()).remove(id) {
            item.finish(state);
        }
    }
}

fn cmd_push(cli: &ImageCli, a: &PushArgs) -> Result<i32> {
    if a.all_tags {
        return Err("--all-tags is not supported: push one tag at a time".into());
    }
    let r = Reference::parse(&a.image).map_err(e)?;
    let store = open_store(cli)?;
    let c = client();
    let p = TermPush { p: Progress::new(a.quiet), items: Default::default() };
    let out = berth_registry::push::push(&c, &store, &r, &p).map_err(e)?;
    p.p.line(&format!("{}: digest: {} size: {}", out.tag, out.digest, out.size));
    Ok(0)
}

use berth_runtime::state::parse_rfc3339;

/// Docker's "2 years ago" style.
pub fn ago(created: Option<&str>) -> String {
    let Some(t) = created.and_then(parse_rfc3339) else { return "N/A".into() };
    format!("{} ago", berth_runtime::state::human_duration(berth_runtime::state::unix_now() - t))
}

fn split_name(full: &str) -> (String, String, Option<Reference>) {
    match Reference::parse(full) {
        Ok(r) => (r.familiar_name(), r.tag().unwrap_or("<none>").to_string(), Some(r)),
        Err(_) => (full.to_string(), "<none>".into(), None),
    }
}

fn cmd_images(cli: &ImageCli, a: &ImagesArgs) -> Result<i32> {
    let store = open_store(cli)?;
    let filter = match &a.repository {
        Some(f) => Some(Reference::parse(f).map_err(e)?),
        None => None,
    };
    let explicit_tag = a.repository.as_deref().is_some_and(|r| r.rsplit('/').next().is_some_and(|l| l.contains(':')));
    let mut rows: Vec<(String, String, Option<String>, ImageRecord)> = Vec::new();
    for (rec, names) in store.list().map_err(e)? {
        if names.is_empty() {
            if filter.is_none() {
                rows.push(("<none>".into(), "<none>".into(), None, rec.clone()));
            }
            continue;
        }
        for n in names {
            let (repo, tag, parsed) = split_name(&n);
            if let (Some(f), Some(p)) = (&filter, &parsed) {
                if f.name() != p.name() || (explicit_tag && f.tag() != p.tag()) {
                    continue;
                }
            }
            let digest = parsed.as_ref().and_then(|p| {
                rec.repo_digests.iter().find_map(|d| d.strip_prefix(&format!("{}@", p.name())).map(str::to_string))
            });
            rows.push((repo, tag, digest, rec.clone()));
        }
    }
    rows.sort_by(|x, y| y.3.created.cmp(&x.3.created).then(x.0.cmp(&y.0)).then(x.1.cmp(&y.1)));
    let id = |r: &ImageRecord| if a.no_trunc { r.id.to_string() } else { r.id.hex()[..12].to_string() };
    if a.quiet {
        let mut seen = std::collections::HashSet::new();
        for (_, _, _, r) in &rows {
            if seen.insert(r.id.clone()) {
                println!("{}", id(r));
            }
        }
        return Ok(0);
    }
    match a.format {
        Format::Json => {
            for (repo, tag, digest, r) in &rows {
                println!(
                    "{}",
                    json!({
                        "Containers": "N/A",
                        "CreatedAt": r.created.clone().unwrap_or_default(),
                        "CreatedSince": ago(r.created.as_deref()),
                        "Digest": digest.clone().unwrap_or_else(|| "<none>".into()),
                        "ID": id(r),
                        "Repository": repo,
                        "SharedSize": "N/A",
                        "Size": human_size(r.size),
                        "Tag": tag,
                        "UniqueSize": "N/A",
                        "VirtualSize": human_size(r.size),
                    })
                );
            }
        }
        Format::Table if a.digests => {
            let t: Vec<[String; 6]> = rows
                .iter()
                .map(|(repo, tag, digest, r)| {
                    [
                        repo.clone(),
                        tag.clone(),
                        digest.clone().unwrap_or_else(|| "<none>".into()),
                        id(r),
                        ago(r.created.as_deref()),
                        human_size(r.size),
                    ]
                })
                .collect();
            crate::table::print(&["REPOSITORY", "TAG", "DIGEST", "IMAGE ID", "CREATED", "SIZE"], &t);
        }
        Format::Table => {
            let t: Vec<[String; 5]> = rows
                .iter()
                .map(|(repo, tag, _, r)| {
                    [repo.clone(), tag.clone(), id(r), ago(r.created.as_deref()), human_size(r.size)]
                })
                .collect();
            crate::table::print(&["REPOSITORY", "TAG", "IMAGE ID", "CREATED", "SIZE"], &t);
        }
    }
    Ok(0)
}

fn inspect_json(store: &ImageStore, rec: &ImageRecord, names: &[String]) -> Result<Value> {
    store.docker_inspect(rec, names).map_err(e)
}

fn cmd_inspect(cli: &ImageCli, a: &InspectArgs) -> Result<i32> {
    let store = open_store(cli)?;
    let all = store.list().map_err(e)?;
    let mut out = Vec::new();
    let mut code = 0;
    for i in &a.images {
        match store.resolve(i) {
            Ok(rec) => {
                let names = all.iter().find(|(r, _)| r.id == rec.id).map(|(_, n)| n.clone()).unwrap_or_default();
                out.push(inspect_json(&store, &rec, &names)?);
            }
            Err(err) => {
                eprintln!("Error: {err}");
                code = 1;
            }
        }
    }
    println!("{}", serde_json::to_string_pretty(&Value::Array(out)).unwrap_or_default());
    Ok(code)
}

fn cmd_history(cli: &ImageCli, a: &HistoryArgs) -> Result<i32> {
    let store = open_store(cli)?;
    let rec = store.resolve(&a.image).map_err(e)?;
    let cfg = store.config(&rec).map_err(e)?;
    let hist = cfg["history"].as_array().cloned().unwrap_or_default();
    let mut layer = rec.chain_ids.len();
    let mut rows = Vec::new();
    for (i, h) in hist.iter().enumerate().rev() {
        let empty = h["empty_layer"].as_bool().unwrap_or(false);
        let size = if empty || layer == 0 {
            0
        } else {
            layer -= 1;
            store.snapshot_size(&rec.chain_ids[layer]).unwrap_or(0)
        };
        let id = if i == hist.len() - 1 {
            if a.no_trunc {
                rec.id.to_string()
            } else {
                rec.id.hex()[..12].to_string()
            }
        } else {
            "<missing>".to_string()
        };
        let mut by = h["created_by"].as_str().unwrap_or("").to_string();
        if !a.no_trunc && by.chars().count() > 45 {
            by = by.chars().take(44).collect::<String>() + "…";
        }
        rows.push((
            id,
            h["created"].as_str().map(str::to_string),
            by,
            size,
            h["comment"].as_str().unwrap_or("").to_string(),
        ));
    }
    if a.quiet {
        rows.iter().for_each(|r| println!("{}", r.0));
        return Ok(0);
    }
    match a.format {
        Format::Json => {
            for r in &rows {
                println!(
                    "{}",
                    json!({"ID": r.0, "CreatedAt": r.1.clone().unwrap_or_default(), "CreatedSince": ago(r.1.as_deref()),
                           "CreatedBy": r.2, "Size": human_size(r.3), "Comment": r.4})
                );
            }
        }
        Format::Table => {
            let t: Vec<[String; 5]> = rows
                .iter()
                .map(|r| [r.0.clone(), ago(r.1.as_deref()), r.2.clone(), human_size(r.3), r.4.clone()])
                .collect();
            crate::table::print(&["IMAGE", "CREATED", "CREATED BY", "SIZE", "COMMENT"], &t);
        }
    }
    Ok(0)
}

/// `image prune` and `system prune` (which, until the engine keeps containers, networks and a
/// build cache, has only images, layers and blobs to remove).
fn cmd_prune(cli: &ImageCli, a: &PruneArgs, system: bool) -> Result<i32> {
    if !a.force {
        if !std::io::stdin().is_terminal() {
            return Err("refusing to prune without confirmation: pass --force".into());
        }
        let what = if a.all { "images without at least one container associated to them" } else { "dangling images" };
        if system {
            eprint!("WARNING! This will remove:\n  - all {what}\n  - unreferenced layers and blobs\n");
        } else {
            eprintln!("WARNING! This will remove all {what}.");
        }
        eprint!("Are you sure you want to continue? [y/N] ");
        let _ = std::io::stderr().flush();
        let mut s = String::new();
        let _ = std::io::stdin().read_line(&mut s);
        if !matches!(s.trim(), "y" | "Y" | "yes") {
            return Ok(0);
        }
    }
    let store = open_store(cli)?;
    let mut deleted = Vec::new();
    for (rec, names) in store.list().map_err(e)? {
        if (names.is_empty() || a.all) && !store.in_use(&rec.id).map_err(e)? {
            match store.remove(rec.id.as_str(), true) {
                Ok(lines) => deleted.extend(lines),
                Err(err) if a.all => eprintln!("berth: {err}"),
                Err(err) => return Err(e(err)),
            }
        }
    }
    let report = store.gc().map_err(e)?;
    if !deleted.is_empty() {
        println!("Deleted Images:");
        for l in &deleted {
            // Docker's prune output is lower-case: "untagged: ...", "deleted: ...".
            let mut c = l.chars();
            let first = c.next().map(|f| f.to_ascii_lowercase()).unwrap_or_default();
            println!("{first}{}", c.as_str());
        }
        println!();
    }
    println!("Total reclaimed space: {}", human_size(report.bytes));
    Ok(0)
}

fn cmd_save(cli: &ImageCli, a: &SaveArgs) -> Result<i32> {
    let store = open_store(cli)?;
    let images = berth_image::docker_archive::select(&store, &a.images).map_err(e)?;
    match &a.output {
        Some(path) => {
            let tmp = path.with_extension("berth-partial");
            let f = std::fs::File::create(&tmp).map_err(|err| format!("create {}: {err}", tmp.display()))?;
            let res = berth_image::docker_archive::save(&store, &images, std::io::BufWriter::new(f)).map_err(e);
            match res
                .and_then(|_| std::fs::rename(&tmp, path).map_err(|err| format!("write {}: {err}", path.display())))
            {
                Ok(()) => Ok(0),
                Err(err) => {
                    let _ = std::fs::remove_file(&tmp);
                    Err(err)
                }
            }
        }
        None => {
            if std::io::stdout().is_terminal() {
                return Err("cowardly refusing to save to a terminal. Use the -o flag or redirect".into());
            }
            berth_image::docker_archive::save(&store, &images, std::io::BufWriter::new(std::io::stdout().lock()))
                .map_err(e)?;
            Ok(0)
        }
    }
}

fn cmd_load(cli: &ImageCli, a: &LoadArgs) -> Result<i32> {
    let store = open_store(cli)?;
    let loaded = match &a.input {
        Some(p) => {
            let f = std::fs::File::open(p).map_err(|err| format!("open {}: {err}", p.display()))?;
            berth_image::docker_archive::load(&store, std::io::BufReader::new(f))
        }
        None => {
            if std::io::stdin().is_terminal() {
                return Err("requested load from stdin, but stdin is empty".into());
            }
            berth_image::docker_archive::load(&store, std::io::stdin().lock())
        }
    }
    .map_err(e)?;
    if !a.quiet {
        for l in &loaded {
            if l.names.is_empty() {
                println!("Loaded image ID: {}", l.image.id);
            }
            for n in &l.names {
                println!("Loaded image: {}", n.familiar());
            }
        }
    }
    Ok(0)
}

fn cmd_import(cli: &ImageCli, a: &ImportArgs) -> Result<i32> {
    let platform = match &a.platform {
        Some(p) => Platform::parse(p).map_err(e)?,
        None => Platform::host(),
    };
    let names = match &a.reference {
        Some(r) => vec![Reference::parse(r).map_err(e)?],
        None => vec![],
    };
    let opts = berth_image::docker_archive::ImportOptions::new(
        &platform.os,
        &platform.architecture,
        platform.variant.as_deref(),
        &a.changes,
        a.message.as_deref(),
        berth_runtime::state::now_rfc3339(),
    )
    .map_err(e)?;
    let store = open_store(cli)?;
    let rec = if a.file == "-" {
        berth_image::docker_archive::import(&store, std::io::stdin(), &names, &opts)
    } else {
        let f = std::fs::File::open(&a.file).map_err(|err| format!("open {}: {err}", a.file))?;
        berth_image::docker_archive::import(&store, std::io::BufReader::new(f), &names, &opts)
    }
    .map_err(e)?;
    println!("{}", rec.id);
    Ok(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn times() {
        assert_eq!(parse_rfc3339("1970-01-01T00:00:00Z"), Some(0));
        assert_eq!(parse_rfc3339("2023-11-14T22:13:20Z"), Some(1_700_000_000));
        assert_eq!(parse_rfc3339("2023-11-14T23:13:20.5+01:00"), Some(1_700_000_000));
        assert_eq!(parse_rfc3339("yesterday"), None);
        assert_eq!(parse_rfc3339(&berth_runtime::state::now_rfc3339()).map(|t| t > 1_700_000_000), Some(true));
    }
}
