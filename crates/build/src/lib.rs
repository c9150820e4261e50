//! The Dockerfile executor behind `berth build` and the daemon's `POST /build`.
//!
//! [`build`] takes a context directory, a Dockerfile and [`Options`]; it parses and plans
//! with `berth-dockerfile`, then builds the stages the target needs, dependencies first:
//!
//! - A stage starts from an image of the store (pulled through the [`Runner`] when missing),
//!   `scratch`, or an earlier stage's result. The base image's `ONBUILD` triggers run first.
//! - Metadata instructions (ENV, LABEL, CMD, ...) change the config only; each gets a history
//!   entry marked `empty_layer`, as Docker's.
//! - `RUN` mounts the stage's layers (overlayfs) with a fresh upper directory and asks the
//!   [`Runner`] (the engine: a container of the runtime, on the build network) to run the
//!   command there; the upper directory, whiteouts included, becomes the new layer.
//! - `COPY`/`ADD` write through the same kind of mount, without a container ([`copy`]).
//!   ADD's URLs and git repositories are fetched by the daemon into the work directory first
//!   ([`remote`]): a download is a file (mode 0600, never unpacked), a repository's tree is
//!   copied without its `.git` unless `--keep-git-dir`; `--checksum` pins either.
//!
//! # Cache
//! Every step has a key: sha256 of the parent's key, the expanded instruction, the variables
//! in effect, the platform and, for COPY/ADD, a hash of the selected sources (path, mode,
//! content, link target; never mtime) or, for ADD's remote sources, of what was fetched (a
//! download's digest, name and `Last-Modified`; a repository's commit): a build with a remote
//! source fetches it every time, as the legacy builder does. The state after the step
//! (layers, config, history) is kept under `<image store>/build-cache/<key>.json`; a later
//! build with the same key whose layers are still in the store reuses it (`---> Using cache`).
//! A no-op rebuild therefore only hashes the context (and fetches ADD's remote sources).
//!
//! # Reproducibility
//! Times come from `SOURCE_DATE_EPOCH` ([`Options::epoch`]) or else from the base image's
//! `created` (the epoch for `scratch`): the image's and the history's `created`, and every
//! layer mtime is clamped to it. Layer tars are sorted, gzip headers carry no name or time,
//! and the config holds nothing of the build host, so equal inputs give equal image ids.

pub mod copy;
pub mod mountpoints;
pub mod remote;
pub mod runmount;

pub use runmount::{MountSource, RunMount};

use berth_dockerfile::instruction::{CmdLine, Command, Healthcheck, Network};
use berth_dockerfile::stages::{walk_stage, Base, BuildPlan, PlanOptions, Platform, Stage};
use berth_dockerfile::{Instruction, Vars};
use berth_image::imagestore::unmount;
use berth_image::{Digest, ImageRecord, ImageStore, LayerDesc, Reference};
use serde_json::{json, Value};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

/// What to build.
#[derive(Clone, Debug, Default)]
pub struct Options {
    /// The Dockerfile's text.
    pub dockerfile: String,
    /// Names to tag the result with.
    pub tags: Vec<Reference>,
    pub build_args: BTreeMap<String, String>,
    /// `--target`.
    pub target: Option<String>,
    /// `--no-cache`.
    pub no_cache: bool,
    /// `--label`s, set on the final image.
    pub labels: BTreeMap<String, String>,
    /// `SOURCE_DATE_EPOCH`: the time written into the image and the bound of layer mtimes.
    pub epoch: Option<u64>,
    /// `--pull`: pull every base image, even one the store has.
    pub pull: bool,
    /// `--cache-from`: images whose layers answer steps with the same cache key (pulled
    /// when missing; one that cannot be had is skipped with a warning, as BuildKit does).
    pub cache_from: Vec<String>,
    /// `--secret`s by id, for `RUN --mount=type=secret`.
    pub secrets: Secrets,
    /// The build runs on the host's network (`--network host`): `RUN --network=host` is
    /// allowed (BuildKit's `network.host` entitlement).
    pub host_network: bool,
}

/// Build secrets by id; their values never show in `Debug` output.
#[derive(Clone, Default)]
pub struct Secrets(pub BTreeMap<String, Vec<u8>>);

impl Secrets {
    pub fn get(&self, id: &str) -> Option<&Vec<u8>> {
        self.0.get(id)
    }
}

impl std::fmt::Debug for Secrets {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_set().entries(self.0.keys()).finish()
    }
}

/// A command to run for `RUN`.
pub struct RunStep<'a> {
    /// A step-unique id (64 hex).
    pub id: String,
    /// The mounted root filesystem the command runs in (its changes become the layer).
    pub rootfs: &'a Path,
    pub args: Vec<String>,
    /// The environment: the config's Env, then the build args in effect.
    pub env: Vec<String>,
    pub user: String,
    pub workdir: String,
    pub network: Network,
    /// `RUN --mount`s (and a heredoc script), resolved on the host.
    pub mounts: Vec<RunMount>,
}

/// What the builder needs from its host: running commands, and images it lacks.
pub trait Runner {
    /// Run `step`, its output (stdout and stderr, in order) given to `out`; the exit code.
    fn run(&self, step: &RunStep, out: &mut dyn FnMut(&[u8])) -> Result<i32, String>;
    /// Bring image `reference` into the store (a pull), showing progress through `out`.
    fn pull(&self, reference: &str, out: &mut dyn FnMut(&str)) -> Result<(), String>;
}

/// A build failure: the message, and the Dockerfile line it is about.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BuildError {
    pub line: Option<usize>,
    pub message: String,
}

impl std::fmt::Display for BuildError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self.line {
            Some(l) => write!(f, "Dockerfile:{l}: {}", self.message),
            None => f.write_str(&self.message),
        }
    }
}

impl std::error::Error for BuildError {}

fn err(line: usize, m: impl Into<String>) -> BuildError {
    BuildError { line: Some(line), message: m.into() }
}

fn plain(m: impl Into<String>) -> BuildError {
    BuildError { line: None, message: m.into() }
}

/// The state of a stage after a step: what the next step builds on (and what the cache keeps).
#[derive(Clone, Debug)]
struct State {
    key: Digest,
    layers: Vec<LayerDesc>,
    diff_ids: Vec<Digest>,
    chains: Vec<Digest>,
    /// The whole image config (`config`, `history`, `os`, ...).
    image: Value,
    /// CMD was set in this stage (ENTRYPOINT then keeps it).
    cmd_set: bool,
    /// For each layer, the key of the step of this build that made it ("" for a base's).
    layer_keys: Vec<String>,
}

impl State {
    fn to_json(&self) -> Value {
        json!({
            "layers": self.layers.iter().map(|l| json!({"digest": l.digest.to_string(), "size": l.size, "mediaType": l.media_type})).collect::<Vec<_>>(),
            "diff_ids": self.diff_ids.iter().map(|d| d.to_string()).collect::<Vec<_>>(),
            "chains": self.chains.iter().map(|d| d.to_string()).collect::<Vec<_>>(),
            "image": self.image,
            "cmd_set": self.cmd_set,
            "layer_keys": self.layer_keys,
        })
    }

    fn from_json(key: &Digest, v: &Value) -> Option<State> {
        let digests = |k: &str| -> Option<Vec<Digest>> {
            v[k].as_array()?.iter().map(|d| d.as_str().and_then(|s| Digest::parse(s).ok())).collect()
        };
        let layers = v["layers"]
            .as_array()?
            .iter()
            .map(|l| {
                Some(LayerDesc {
                    digest: Digest::parse(l["digest"].as_str()?).ok()?,
                    size: l["size"].as_u64()?,
                    media_type: l["mediaType"].as_str()?.to_string(),
                })
            })
            .collect::<Option<Vec<_>>>()?;
        Some(State {
            key: key.clone(),
            layers,
            diff_ids: digests("diff_ids")?,
            chains: digests("chains")?,
            image: v["image"].clone(),
            cmd_set: v["cmd_set"].as_bool().unwrap_or(false),
            layer_keys: v["layer_keys"]
                .as_array()
                .map(|a| a.iter().map(|k| k.as_str().unwrap_or("").to_string()).collect())
                .unwrap_or_default(),
        })
        .map(|mut st| {
            st.layer_keys.resize(st.layers.len(), String::new());
            st
        })
    }

    fn config(&mut self) -> &mut Value {
        if !self.image["config"].is_object() {
            self.image["config"] = json!({});
        }
        &mut self.image["config"]
    }

    fn env(&self) -> Vars {
        let mut v = Vars::new();
        for e in self.image["config"]["Env"].as_array().into_iter().flatten().filter_map(|e| e.as_str()) {
            let (k, val) = e.split_once('=').unwrap_or((e, ""));
            v.set(k, val);
        }
        v
    }
}

/// The image config field that holds, for each layer, the key of the build step that made it
/// (empty for a base image's layers): what `--cache-from` matches steps against. Like
/// BuildKit's inline cache (`moby.buildkit.cache.v0`), and always written.
pub const INLINE_CACHE: &str = "berth.build.cache.v0";

/// The PATH a stage gets when its base sets none (moby's `system.DefaultPathEnv` on Linux).
pub const DEFAULT_PATH: &str = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";

/// The build host's platform (the only one built for).
pub fn host_platform() -> Platform {
    let architecture = match std::env::consts::ARCH {
        "x86_64" => "amd64",
        "aarch64" => "arm64",
        "arm" => "arm",
        other => other,
    };
    Platform { os: "linux".into(), architecture: architecture.into(), variant: String::new() }
}

fn rfc3339(t: u64) -> String {
    let days = (t / 86400) as i64;
    let secs = t % 86400;
    // Civil from days (Howard Hinnant's algorithm).
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    format!("{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}Z", secs / 3600, secs % 3600 / 60, secs % 60)
}

/// Seconds since the epoch of an RFC 3339 time (`2024-01-02T03:04:05[.frac](Z|±hh:mm)`).
fn parse_rfc3339(s: &str) -> Option<u64> {
    let b = s.as_bytes();
    if b.len() < 19 {
        return None;
    }
    let n = |r: std::ops::Range<usize>| s.get(r)?.parse::<i64>().ok();
    let (y, mo, d, h, mi, se) = (n(0..4)?, n(5..7)?, n(8..10)?, n(11..13)?, n(14..16)?, n(17..19)?);
    let (y2, m2) = if mo <= 2 { (y - 1, mo + 9) } else { (y, mo - 3) };
    let era = y2.div_euclid(400);
    let yoe = y2 - era * 400;
    let doy = (153 * m2 + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    let days = era * 146_097 + doe - 719_468;
    let mut t = days * 86400 + h * 3600 + mi * 60 + se;
    let rest = s[19..].trim_start_matches(|c: char| c == '.' || c.is_ascii_digit());
    if let Some(off) = rest.strip_prefix('+').or_else(|| rest.strip_prefix('-')) {
        let sign = if rest.starts_with('+') { 1 } else { -1 };
        let oh: i64 = off.get(0..2)?.parse().ok()?;
        let om: i64 = off.get(3..5)?.parse().ok()?;
        t -= sign * (oh * 3600 + om * 60);
    }
    u64::try_from(t).ok()
}

/// The result of a build.
pub struct Built {
    pub image: ImageRecord,
    /// Steps answered from the cache, and steps executed.
    pub cached: usize,
    pub executed: usize,
}

struct Builder<'a> {
    store: &'a ImageStore,
    context: &'a Path,
    opts: &'a Options,
    runner: &'a dyn Runner,
    out: &'a mut dyn FnMut(&str),
    /// A directory of this build's own (mounts, upper directories).
    work: PathBuf,
    escape: char,
    plan: BuildPlan,
    /// Finished stages, by index.
    done: BTreeMap<usize, State>,
    step: usize,
    steps: usize,
    cached: usize,
    executed: usize,
    seq: u64,
    ignore: Option<berth_dockerfile::PatternMatcher>,
    /// `--cache-from` images: name, record, and the step key of each layer.
    cache_from: Vec<(String, ImageRecord, Vec<String>)>,
    /// The current ADD's remote sources, fetched: by source text, with what the cache key
    /// takes of them.
    fetched: BTreeMap<String, (copy::Fetched, String)>,
}

/// Build `opts.dockerfile` in `context`; `work` is a scratch directory of this build's own
/// (removed by the caller). Progress lines go to `out`, as `docker build` prints them.
pub fn build(
    store: &ImageStore,
    context: &Path,
    work: &Path,
    opts: &Options,
    runner: &dyn Runner,
    out: &mut dyn FnMut(&str),
) -> Result<Built, BuildError> {
    let df =
        berth_dockerfile::parse(&opts.dockerfile).map_err(|e| BuildError { line: None, message: e.to_string() })?;
    let stages = berth_dockerfile::split_stages(&df).map_err(|e| BuildError { line: e.line, message: e.message })?;
    let platform = host_platform();
    let popts = PlanOptions {
        target: opts.target.clone(),
        build_args: opts.build_args.clone(),
        build_platform: platform.clone(),
        target_platform: platform,
    };
    let plan = berth_dockerfile::plan(&stages, &popts, df.escape)
        .map_err(|e| BuildError { line: e.line, message: e.message })?;
    // Docker refuses --build-args no ARG declares (a warning with the legacy builder: kept so).
    let steps = plan.order.iter().map(|i| 1 + stages.stages[*i].instructions.len()).sum();
    let ignore = match std::fs::read_to_string(context.join(".dockerignore")) {
        Ok(t) => Some(
            berth_dockerfile::PatternMatcher::from_ignore_file(&t)
                .map_err(|e| plain(format!("error reading .dockerignore: {e:?}")))?,
        ),
        Err(_) => None,
    };
    std::fs::create_dir_all(work).map_err(|e| plain(format!("creating {}: {e}", work.display())))?;
    let mut b = Builder {
        store,
        context,
        opts,
        runner,
        out,
        work: work.to_path_buf(),
        escape: df.escape,
        plan,
        done: BTreeMap::new(),
        step: 0,
        steps,
        cached: 0,
        executed: 0,
        seq: 0,
        ignore,
        cache_from: Vec::new(),
        fetched: BTreeMap::new(),
    };
    b.load_cache_from()?;
    for i in b.plan.order.clone() {
        let st = b.stage(&stages.stages[i])?;
        b.done.insert(i, st);
    }
    let mut fin = b.done.remove(&b.plan.target).expect("the target was built");
    if !opts.labels.is_empty() {
        let cfg = fin.config();
        if !cfg["Labels"].is_object() {
            cfg["Labels"] = json!({});
        }
        for (k, v) in &opts.labels {
            cfg["Labels"][k] = json!(v);
        }
    }
    if fin.layer_keys.iter().any(|k| !k.is_empty()) {
        fin.image[INLINE_CACHE] = json!(fin.layer_keys);
    }
    fin.image["rootfs"] =
        json!({"type": "layers", "diff_ids": fin.diff_ids.iter().map(|d| d.to_string()).collect::<Vec<_>>()});
    let bytes = serde_json::to_vec(&fin.image).map_err(|e| plain(e.to_string()))?;
    let rec =
        store.register_built(&opts.tags, &bytes, &fin.layers).map_err(|e| plain(format!("saving the image: {e}")))?;
    let (cached, executed) = (b.cached, b.executed);
    Ok(Built { image: rec, cached, executed })
}

impl Builder<'_> {
    fn say(&mut self, s: &str) {
        (self.out)(s);
    }

    /// Resolve (or pull) the `--cache-from` images and read their step keys.
    fn load_cache_from(&mut self) -> Result<(), BuildError> {
        for name in self.opts.cache_from.clone() {
            let rec = match self.store.resolve(&name) {
                Ok(r) => Ok(r),
                Err(_) => {
                    let runner = self.runner;
                    runner
                        .pull(&name, &mut *self.out)
                        .and_then(|_| self.store.resolve(&name).map_err(|e| e.to_string()))
                }
            };
            let rec = match rec {
                Ok(r) => r,
                Err(e) => {
                    self.say(&format!("WARNING: --cache-from {name}: {e}: not used\n"));
                    continue;
                }
            };
            let cfg = self.store.config(&rec).map_err(|e| plain(format!("--cache-from {name}: {e}")))?;
            let keys: Vec<String> = cfg[INLINE_CACHE]
                .as_array()
                .map(|a| a.iter().map(|k| k.as_str().unwrap_or("").to_string()).collect())
                .unwrap_or_default();
            if keys.len() != rec.layers.len() {
                self.say(&format!("WARNING: --cache-from {name}: the image holds no berth build cache record\n"));
                continue;
            }
            self.cache_from.push((name, rec, keys));
        }
        Ok(())
    }

    fn next_id(&mut self) -> String {
        self.seq += 1;
        Digest::of(format!("{} {} {}", self.work.display(), std::process::id(), self.seq).as_bytes()).hex().to_string()
    }

    fn epoch_of(&self, st: &State) -> u64 {
        self.opts.epoch.or_else(|| st.image["created"].as_str().and_then(parse_rfc3339)).unwrap_or(0)
    }

    /// The base state of a stage.
    fn base(&mut self, stage: &Stage) -> Result<State, BuildError> {
        let r = &self.plan.stages[stage.index];
        let platform = host_platform();
        match r.base.clone() {
            Base::Scratch => Ok(State {
                key: Digest::of(b"scratch"),
                layers: vec![],
                diff_ids: vec![],
                chains: vec![],
                image: json!({"architecture": platform.architecture, "os": platform.os, "config": {}, "history": []}),
                cmd_set: false,
                layer_keys: vec![],
            }),
            Base::Stage(i) => {
                let mut st = self.done.get(&i).cloned().ok_or_else(|| err(stage.line, "base stage not built"))?;
                st.cmd_set = false;
                Ok(st)
            }
            Base::Image(name) => {
                if self.opts.pull {
                    let runner = self.runner;
                    runner.pull(&name, &mut *self.out).map_err(|e| err(stage.line, e))?;
                }
                let rec = self.image(&name, stage.line)?;
                let image = self.store.config(&rec).map_err(|e| err(stage.line, e.to_string()))?;
                let mut image = image;
                if image["config"].is_null() {
                    image["config"] = json!({});
                }
                if let Some(o) = image.as_object_mut() {
                    o.remove(INLINE_CACHE);
                }
                Ok(State {
                    key: Digest::of(format!("image {}", rec.id).as_bytes()),
                    layers: rec.layers.clone(),
                    diff_ids: rec.diff_ids.clone(),
                    chains: rec.chain_ids.clone(),
                    image,
                    cmd_set: false,
                    layer_keys: vec![String::new(); rec.layers.len()],
                })
            }
        }
    }

    /// An image of the store, pulled when missing.
    fn image(&mut self, name: &str, line: usize) -> Result<ImageRecord, BuildError> {
        if let Ok(r) = self.store.resolve(name) {
            return Ok(r);
        }
        let reference = Reference::parse(name).map_err(|e| err(line, format!("invalid reference {name:?}: {e}")))?;
        let runner = self.runner;
        runner.pull(&reference.to_string(), &mut *self.out).map_err(|e| err(line, e))?;
        self.store.resolve(name).map_err(|e| err(line, e.to_string()))
    }

    fn stage(&mut self, stage: &Stage) -> Result<State, BuildError> {
        self.step += 1;
        let (step, steps) = (self.step, self.steps);
        self.say(&format!("Step {step}/{steps} : {}\n", stage_from_text(stage)));
        let mut st = self.base(stage)?;
        self.say(&format!(" ---> {}\n", &st.key.hex()[..12]));
        // The base's ONBUILD triggers run first, and are not inherited. A base stage's too:
        // as if it had been built into an image first (BuildKit since v0.17.1, and the legacy
        // builder, though that one runs them only for the first stage built on it).
        let mut instructions: Vec<Instruction> = Vec::new();
        for t in st.image["config"]["OnBuild"].as_array().cloned().unwrap_or_default() {
            let text = t.as_str().unwrap_or("");
            let df =
                berth_dockerfile::parse(text).map_err(|e| err(stage.line, format!("ONBUILD trigger {text:?}: {e}")))?;
            for mut ins in df.instructions {
                ins.line = stage.line;
                instructions.push(ins);
            }
        }
        if st.image["config"]["OnBuild"].is_array() {
            st.config()["OnBuild"] = Value::Null;
        }
        // A stage without PATH gets the default one (as dockerd and BuildKit do).
        let env = st.env();
        if env.get_value("PATH").is_none() {
            let mut list = st.image["config"]["Env"].as_array().cloned().unwrap_or_default();
            list.push(json!(format!("PATH={DEFAULT_PATH}")));
            st.config()["Env"] = json!(list);
        }
        self.steps += instructions.len();
        instructions.extend(stage.instructions.iter().cloned());
        let mut stage2 = stage.clone();
        stage2.instructions = instructions;
        let global = self.plan.global_args.clone();
        let walked = walk_stage(&stage2, &st.env(), &global, &self.opts.build_args, self.escape)
            .map_err(|e| BuildError { line: e.line, message: e.message })?;
        for s in walked {
            self.step += 1;
            let (step, steps) = (self.step, self.steps);
            let shown = s.instruction.original.trim().to_string();
            self.say(&format!("Step {step}/{steps} : {shown}\n"));
            st = self.instruction(st, &s.instruction, &s.vars)?;
        }
        Ok(st)
    }

    fn history(&self, st: &mut State, created_by: String, empty: bool) {
        let created = rfc3339(self.epoch_of(st));
        let mut h = json!({"created": created, "created_by": created_by});
        if empty {
            h["empty_layer"] = json!(true);
        }
        if !st.image["history"].is_array() {
            st.image["history"] = json!([]);
        }
        st.image["history"].as_array_mut().expect("array").push(h);
        st.image["created"] = json!(created);
    }

    fn shell(st: &State) -> Vec<String> {
        let s: Vec<String> = st.image["config"]["Shell"]
            .as_array()
            .map(|a| a.iter().filter_map(|v| v.as_str().map(str::to_string)).collect())
            .unwrap_or_default();
        if s.is_empty() {
            vec!["/bin/sh".into(), "-c".into()]
        } else {
            s
        }
    }

    fn cmdline(st: &State, c: &CmdLine) -> Vec<String> {
        if c.prepend_shell {
            let mut v = Self::shell(st);
            v.push(c.args.join(" "));
            v
        } else {
            c.args.clone()
        }
    }

    /// One instruction: from the cache when its key is known, else executed. What an ADD
    /// fetched is removed afterwards, whatever the outcome.
    fn instruction(&mut self, st: State, ins: &Instruction, vars: &Vars) -> Result<State, BuildError> {
        let r = self.instruction_fetched(st, ins, vars);
        let dirs: Vec<PathBuf> = std::mem::take(&mut self.fetched)
            .into_values()
            .map(|(f, _)| match f {
                copy::Fetched::File { dir, .. } => dir,
                copy::Fetched::Tree(t) => t,
            })
            .collect();
        for d in dirs {
            // A tree may be a subdirectory of the checkout: remove from the work dir's child.
            let top = d.strip_prefix(&self.work).ok().and_then(|r| r.components().next()).map(|c| self.work.join(c));
            if let Some(t) = top {
                let _ = std::fs::remove_dir_all(t);
            }
        }
        r
    }

    /// ADD's remote sources, fetched into the work directory (before the cache key, which
    /// covers their content); COPY's refused.
    fn fetch(&mut self, command: &Command, line: usize) -> Result<(), BuildError> {
        let a = match command {
            Command::Copy(c) => {
                for s in &c.files.sources {
                    match remote::classify(s) {
                        Ok(remote::Source::Git(_)) => return Err(err(line, "source can't be a git ref for COPY")),
                        Ok(remote::Source::Http(_)) => return Err(err(line, "source can't be a URL for COPY")),
                        _ => {}
                    }
                }
                return Ok(());
            }
            Command::Add(a) => a,
            _ => return Ok(()),
        };
        let kinds: Vec<remote::Source> =
            a.files.sources.iter().map(|s| remote::classify(s).map_err(|e| err(line, e))).collect::<Result<_, _>>()?;
        let want = match &a.checksum {
            None => None,
            Some(c) => {
                if a.files.sources.len() + a.files.contents.len() != 1 {
                    return Err(err(line, "checksum can't be specified for multiple sources"));
                }
                match &kinds[0] {
                    remote::Source::Local => {
                        return Err(err(line, "checksum can't be specified for non-HTTP(S) and non-git sources"))
                    }
                    remote::Source::Http(_) => Some(remote::parse_checksum(c).map_err(|e| err(line, e))?),
                    remote::Source::Git(_) => None,
                }
            }
        };
        for (src, kind) in a.files.sources.iter().zip(kinds) {
            if self.fetched.contains_key(src) {
                continue;
            }
            let id = self.next_id();
            let dir = self.work.join(format!("fetch-{}", &id[..12]));
            let fetched = match kind {
                remote::Source::Local => continue,
                remote::Source::Http(url) => {
                    // Registered before the download so that a failure's leftovers go too.
                    self.fetched.insert(src.clone(), (copy::Fetched::Tree(dir.clone()), String::new()));
                    let d = remote::download(&url, &dir, want.as_ref()).map_err(|e| err(line, e))?;
                    let key = format!("url {url} {} {} {:?}", d.digest, d.name, d.mtime);
                    (copy::Fetched::File { dir, name: d.name }, key)
                }
                remote::Source::Git(g) => {
                    self.fetched.insert(src.clone(), (copy::Fetched::Tree(dir.clone()), String::new()));
                    let keep = a.keep_git_dir.unwrap_or(false);
                    let c = remote::checkout(&g, &dir, keep, a.checksum.as_deref()).map_err(|e| err(line, e))?;
                    let key = format!("git {} {} {:?} keep={keep}", g.remote, c.commit, g.subdir);
                    (copy::Fetched::Tree(c.tree), key)
                }
            };
            self.fetched.insert(src.clone(), fetched);
        }
        Ok(())
    }

    fn instruction_fetched(&mut self, mut st: State, ins: &Instruction, vars: &Vars) -> Result<State, BuildError> {
        let line = ins.line;
        self.fetch(&ins.command, line)?;
        let content = match &ins.command {
            Command::Copy(c) => Some(self.source_hash(&c.files.sources, c.from.as_deref(), line)?),
            Command::Add(a) => Some(self.source_hash(&a.files.sources, None, line)?),
            Command::Run(r) if !r.mounts.is_empty() => {
                let mounts = self.parse_mounts(&st, r, vars, line)?;
                Some(self.mounts_key(&mounts, line)?)
            }
            _ => None,
        };
        let mut keyed = format!("{}\n{:?}\n", st.key, ins.command);
        for (k, v) in vars.iter() {
            keyed.push_str(&format!("{k}={v}\n"));
        }
        if let Some(c) = &content {
            keyed.push_str(&format!("content {c}\n"));
        }
        if let Some(e) = self.opts.epoch {
            keyed.push_str(&format!("epoch {e}\n"));
        }
        keyed.push_str(&host_platform().to_string());
        let key = Digest::of(keyed.as_bytes());
        // WORKDIR makes its directory (a layer) when the stage lacks it, as the legacy builder.
        let new_workdir = match &ins.command {
            Command::Workdir(w) => Some(self.workdir_path(&st, w)).filter(|p| !self.exists_in(&st, p)),
            _ => None,
        };
        let makes_layer =
            matches!(ins.command, Command::Run(_) | Command::Copy(_) | Command::Add(_)) || new_workdir.is_some();
        if makes_layer && !self.opts.no_cache {
            if let Some(hit) = self.cache_get(&key) {
                self.say(" ---> Using cache\n");
                self.say(&format!(" ---> {}\n", &key.hex()[..12]));
                self.cached += 1;
                return Ok(hit);
            }
        }
        st.key = key.clone();
        let cached_before = self.cached;
        let nop = |s: &str| format!("/bin/sh -c #(nop)  {s}");
        match &ins.command {
            Command::From(_) => return Err(err(line, "FROM inside a stage")),
            Command::Env(kvs) => {
                let mut env: Vec<String> = st.image["config"]["Env"]
                    .as_array()
                    .map(|a| a.iter().filter_map(|v| v.as_str().map(str::to_string)).collect())
                    .unwrap_or_default();
                for kv in kvs {
                    env.retain(|e| e.split('=').next() != Some(kv.key.as_str()));
                    env.push(format!("{}={}", kv.key, kv.value));
                }
                st.config()["Env"] = json!(env);
                let shown: Vec<String> = kvs.iter().map(|kv| format!("{}={}", kv.key, kv.value)).collect();
                self.history(&mut st, nop(&format!("ENV {}", shown.join(" "))), true);
            }
            Command::Label(kvs) => {
                if !st.config()["Labels"].is_object() {
                    st.config()["Labels"] = json!({});
                }
                for kv in kvs {
                    st.config()["Labels"][&kv.key] = json!(kv.value);
                }
                let shown: Vec<String> = kvs.iter().map(|kv| format!("{}={}", kv.key, kv.value)).collect();
                self.history(&mut st, nop(&format!("LABEL {}", shown.join(" "))), true);
            }
            Command::Expose(ports) => {
                if !st.config()["ExposedPorts"].is_object() {
                    st.config()["ExposedPorts"] = json!({});
                }
                for p in ports {
                    let p = if p.contains('/') { p.to_ascii_lowercase() } else { format!("{p}/tcp") };
                    let (num, proto) = p.split_once('/').unwrap_or((&p, "tcp"));
                    // A range is each of its ports (moby's nat.ParsePortSpecs).
                    let (lo, hi) = num.split_once('-').unwrap_or((num, num));
                    let range = match (lo.parse::<u16>(), hi.parse::<u16>()) {
                        (Ok(lo), Ok(hi)) if lo <= hi => lo..=hi,
                        _ => return Err(err(line, format!("invalid containerPort: {p}"))),
                    };
                    if !matches!(proto, "tcp" | "udp" | "sctp") {
                        return Err(err(line, format!("invalid containerPort: {p}")));
                    }
                    for n in range {
                        st.config()["ExposedPorts"][&format!("{n}/{proto}")] = json!({});
                    }
                }
                self.history(&mut st, nop(&format!("EXPOSE {}", ports.join(" "))), true);
            }
            Command::Cmd(c) => {
                let v = Self::cmdline(&st, c);
                st.config()["Cmd"] = json!(v);
                st.cmd_set = true;
                self.history(&mut st, nop(&format!("CMD {}", serde_json::to_string(&v).unwrap_or_default())), true);
            }
            Command::Entrypoint(c) => {
                let v = Self::cmdline(&st, c);
                st.config()["Entrypoint"] = if c.args.is_empty() { Value::Null } else { json!(v) };
                if !st.cmd_set {
                    st.config()["Cmd"] = Value::Null;
                }
                self.history(
                    &mut st,
                    nop(&format!("ENTRYPOINT {}", serde_json::to_string(&v).unwrap_or_default())),
                    true,
                );
            }
            Command::Shell(s) => {
                st.config()["Shell"] = json!(s);
                self.history(&mut st, nop(&format!("SHELL {}", serde_json::to_string(s).unwrap_or_default())), true);
            }
            Command::Volume(vs) => {
                if !st.config()["Volumes"].is_object() {
                    st.config()["Volumes"] = json!({});
                }
                for v in vs {
                    if v.trim().is_empty() {
                        return Err(err(line, "VOLUME specified can not be an empty string"));
                    }
                    st.config()["Volumes"][v] = json!({});
                }
                self.history(&mut st, nop(&format!("VOLUME {}", serde_json::to_string(vs).unwrap_or_default())), true);
            }
            Command::User(u) => {
                st.config()["User"] = json!(u);
                self.history(&mut st, nop(&format!("USER {u}")), true);
            }
            Command::Workdir(w) => {
                let path = self.workdir_path(&st, w);
                if let Some(dir) = &new_workdir {
                    // Root's, 0755, whatever USER says (moby's SetupWorkingDirectory).
                    let dir = dir.clone();
                    st = self.with_layer(st, line, |_, root| {
                        let host = copy::resolve_in_root(root, &dir, true).map_err(|e| err(line, e))?;
                        std::fs::create_dir_all(&host).map_err(|e| err(line, format!("creating {dir}: {e}")))?;
                        std::os::unix::fs::chown(&host, Some(0), Some(0)).map_err(|e| err(line, e.to_string()))
                    })?;
                }
                st.config()["WorkingDir"] = json!(path);
                self.history(&mut st, nop(&format!("WORKDIR {path}")), new_workdir.is_none());
            }
            Command::Arg(decls) => {
                let shown: Vec<String> = decls
                    .iter()
                    .map(|d| match &d.default {
                        Some(v) => format!("{}={v}", d.name),
                        None => d.name.clone(),
                    })
                    .collect();
                self.history(&mut st, nop(&format!("ARG {}", shown.join(" "))), true);
            }
            Command::Onbuild(o) => {
                let mut list = st.image["config"]["OnBuild"].as_array().cloned().unwrap_or_default();
                list.push(json!(o.expression));
                st.config()["OnBuild"] = json!(list);
                self.history(&mut st, nop(&format!("ONBUILD {}", o.expression)), true);
            }
            Command::StopSignal(s) => {
                st.config()["StopSignal"] = json!(s);
                self.history(&mut st, nop(&format!("STOPSIGNAL {s}")), true);
            }
            Command::Healthcheck(h) => {
                let v = match h {
                    Healthcheck::None => json!({"Test": ["NONE"]}),
                    Healthcheck::Cmd(c) => {
                        let ns = |d: std::time::Duration| d.as_nanos() as u64;
                        let mut v = json!({"Test": c.test});
                        for (k, d) in [
                            ("Interval", c.interval),
                            ("Timeout", c.timeout),
                            ("StartPeriod", c.start_period),
                            ("StartInterval", c.start_interval),
                        ] {
                            if !d.is_zero() {
                                v[k] = json!(ns(d));
                            }
                        }
                        if c.retries > 0 {
                            v["Retries"] = json!(c.retries);
                        }
                        v
                    }
                };
                st.config()["Healthcheck"] = v.clone();
                self.history(&mut st, nop(&format!("HEALTHCHECK {}", ins.original.trim()[11..].trim())), true);
            }
            Command::Maintainer(m) => {
                st.image["author"] = json!(m);
                self.history(&mut st, nop(&format!("MAINTAINER {m}")), true);
            }
            Command::Run(r) => {
                st = self.run(st, r, vars, line)?;
            }
            Command::Copy(c) => {
                st = self.copy(st, c, line)?;
            }
            Command::Add(a) => {
                st = self.add(st, a, line)?;
            }
        }
        if makes_layer {
            if self.cached == cached_before {
                self.executed += 1;
            }
            self.cache_put(&st);
        }
        self.say(&format!(" ---> {}\n", &st.key.hex()[..12]));
        Ok(st)
    }

    /// The absolute WORKDIR `w` gives in state `st`.
    fn workdir_path(&self, st: &State, w: &str) -> String {
        let cur = st.image["config"]["WorkingDir"].as_str().unwrap_or("/").to_string();
        clean(&if w.starts_with('/') { w.to_string() } else { format!("{}/{w}", cur.trim_end_matches('/')) })
    }

    /// Whether container path `p` exists in `st`'s layers (the topmost entry decides; a
    /// whiteout means gone).
    fn exists_in(&self, st: &State, p: &str) -> bool {
        let rel = Path::new(p.trim_start_matches('/'));
        if rel.as_os_str().is_empty() {
            return true;
        }
        let lower: Vec<PathBuf> = st.chains.iter().map(|c| self.store.snapshot_fs(c)).collect();
        mountpoints::in_image(&lower, rel).is_some()
    }

    /// The layer an image of `--cache-from` has for the step `st.key` names, on exactly
    /// `st`'s layers: its descriptor, diff id, chain id, and the image's name.
    fn layer_of_cache_images(&self, st: &State) -> Option<(LayerDesc, Digest, Digest, String)> {
        if self.opts.no_cache {
            return None;
        }
        let key = st.key.hex();
        let n = st.layers.len();
        for (name, rec, keys) in &self.cache_from {
            if keys.get(n).map(String::as_str) != Some(key) || rec.diff_ids.get(..n) != Some(&st.diff_ids[..]) {
                continue;
            }
            let chain = rec.chain_ids.get(n)?.clone();
            if self.store.has_snapshot(&chain) && self.store.content().has(&rec.layers[n].digest).unwrap_or(false) {
                return Some((rec.layers[n].clone(), rec.diff_ids[n].clone(), chain, name.clone()));
            }
        }
        None
    }

    fn cache_dir(&self) -> PathBuf {
        self.store.root().join("build-cache")
    }

    fn cache_get(&self, key: &Digest) -> Option<State> {
        let path = self.cache_dir().join(format!("{}.json", key.hex()));
        let data = std::fs::read(&path).ok()?;
        let v: Value = serde_json::from_slice(&data).ok()?;
        let st = State::from_json(key, &v)?;
        let whole = st.chains.iter().all(|c| self.store.has_snapshot(c))
            && st.layers.iter().all(|l| self.store.content().has(&l.digest).unwrap_or(false));
        // A hit is a use: the record's mtime is its last use (`builder prune`, `system df`).
        let _ =
            whole.then(|| std::fs::File::options().write(true).open(&path)?.set_modified(std::time::SystemTime::now()));
        whole.then_some(st)
    }

    fn cache_put(&self, st: &State) {
        let dir = self.cache_dir();
        let _ = std::fs::create_dir_all(&dir);
        let p = dir.join(format!("{}.json", st.key.hex()));
        let tmp = p.with_extension(format!("tmp{}", std::process::id()));
        if std::fs::write(&tmp, serde_json::to_vec(&st.to_json()).unwrap_or_default()).is_ok() {
            let _ = std::fs::rename(&tmp, &p);
        }
    }

    /// Mount `st`'s layers with a fresh upper directory; `f` works in the root; the upper
    /// directory then becomes a new layer on `st`.
    fn with_layer(
        &mut self,
        mut st: State,
        line: usize,
        f: impl FnOnce(&mut Self, &Path) -> Result<(), BuildError>,
    ) -> Result<State, BuildError> {
        if let Some((desc, diff_id, chain, from)) = self.layer_of_cache_images(&st) {
            self.say(&format!(" ---> Using cache (from {from})\n"));
            self.cached += 1;
            st.layers.push(desc);
            st.diff_ids.push(diff_id);
            st.chains.push(chain);
            st.layer_keys.push(st.key.hex().to_string());
            return Ok(st);
        }
        let id = self.next_id();
        let dir = self.work.join(&id[..16]);
        let (rw, root) = (dir.join("rw"), dir.join("rootfs"));
        self.store.mount_chain(&st.chains, &rw, &root).map_err(|e| err(line, format!("mounting the layers: {e}")))?;
        let r = f(self, &root);
        let u = unmount(&root);
        r?;
        u.map_err(|e| err(line, e.to_string()))?;
        // The runtime's mount points (RUN) are not part of the layer, as with dockerd.
        let lower: Vec<PathBuf> = st.chains.iter().map(|c| self.store.snapshot_fs(c)).collect();
        mountpoints::prune(&rw.join("upper"), &lower);
        let epoch = self.epoch_of(&st);
        let layer = self
            .store
            .add_layer(&rw.join("upper"), st.chains.last(), Some(epoch), true)
            .map_err(|e| err(line, format!("making the layer: {e}")))?;
        let _ = std::fs::remove_dir_all(&dir);
        st.layers.push(layer.desc);
        st.diff_ids.push(layer.diff_id);
        st.chains.push(layer.chain);
        st.layer_keys.push(st.key.hex().to_string());
        Ok(st)
    }

    fn run(
        &mut self,
        st: State,
        r: &berth_dockerfile::instruction::Run,
        vars: &Vars,
        line: usize,
    ) -> Result<State, BuildError> {
        if !r.devices.is_empty() {
            return Err(err(line, "RUN --device is not supported"));
        }
        if r.network == Network::Host && !self.opts.host_network {
            return Err(err(
                line,
                "RUN --network=host needs the network.host entitlement: build with --network host to grant it",
            ));
        }
        if r.security == berth_dockerfile::instruction::Security::Insecure {
            return Err(err(line, "RUN --security=insecure is not supported: berth grants no security.insecure"));
        }
        let mounts = self.parse_mounts(&st, r, vars, line)?;
        // Heredocs as BuildKit runs them: `RUN <<EOF` alone is the script (a file run as
        // such when it starts with `#!`); otherwise the bodies go back into the shell's text.
        let mut script: Option<(String, String)> = None;
        let args = match (r.cmd.heredocs.as_slice(), r.cmd.prepend_shell) {
            ([], _) => Self::cmdline(&st, &r.cmd),
            (_, false) => return Err(err(line, "a heredoc needs RUN's shell form")),
            ([h], true)
                if berth_dockerfile::parser::parse_heredoc(r.cmd.args.join(" ").trim()).ok().flatten().is_some() =>
            {
                let body = h.text();
                if body.starts_with("#!") {
                    script = Some((h.name.clone(), body));
                    vec![format!("/dev/pipes/{}", h.name)]
                } else {
                    let mut v = Self::shell(&st);
                    v.push(body);
                    v
                }
            }
            (docs, true) => {
                let mut full = r.cmd.args.join(" ");
                for h in docs {
                    full.push('\n');
                    full.push_str(&h.content);
                    full.push_str(&h.name);
                }
                let mut v = Self::shell(&st);
                v.push(full);
                v
            }
        };
        // The config's Env, then the build args in effect (ARG values only RUN sees).
        let mut env: Vec<String> = st.image["config"]["Env"]
            .as_array()
            .map(|a| a.iter().filter_map(|v| v.as_str().map(str::to_string)).collect())
            .unwrap_or_default();
        let image_env = st.env();
        for (k, v) in vars.iter() {
            if image_env.get_value(k).is_none() {
                env.push(format!("{k}={v}"));
            }
        }
        for (k, v) in berth_dockerfile::stages::proxy_args(&self.opts.build_args).iter() {
            env.push(format!("{k}={v}"));
        }
        let user = st.image["config"]["User"].as_str().unwrap_or("").to_string();
        let workdir = st.image["config"]["WorkingDir"].as_str().filter(|w| !w.is_empty()).unwrap_or("/").to_string();
        let shown = match &script {
            Some(_) => format!("{} {}", Self::shell(&st).join(" "), r.cmd.args.join(" ")),
            None => args.join(" "),
        };
        let network = r.network;
        let mut st = self.with_layer(st, line, |b, root| {
            if !workdir.is_empty() && workdir != "/" {
                let _ = std::fs::create_dir_all(root.join(workdir.trim_start_matches('/')));
            }
            let id = b.next_id();
            let prepared = b.prepare_mounts(
                &mounts,
                script.as_ref().map(|(n, t)| (n.as_str(), t.as_str())),
                &b.work.join(format!("mounts-{}", &id[..12])),
                line,
            )?;
            env.extend(prepared.env.iter().cloned());
            let stubs = runmount::stubs(root, &prepared.mounts);
            b.say(&format!(" ---> Running in {}\n", &id[..12]));
            let step = RunStep {
                id,
                rootfs: root,
                args: args.clone(),
                env,
                user,
                workdir,
                network,
                mounts: prepared.mounts.clone(),
            };
            let runner = b.runner;
            let out = &mut *b.out;
            let code = runner.run(&step, &mut |bytes: &[u8]| out(&String::from_utf8_lossy(bytes)));
            runmount::remove_stubs(&stubs);
            drop(prepared);
            let code = code.map_err(|e| err(line, e))?;
            if code != 0 {
                return Err(err(line, format!("The command '{shown}' returned a non-zero code: {code}")));
            }
            Ok(())
        })?;
        self.history(&mut st, shown, false);
        Ok(st)
    }

    /// A hash of what COPY/ADD would read: the context paths it names (or the stage it reads).
    fn source_hash(&self, sources: &[String], from: Option<&str>, line: usize) -> Result<String, BuildError> {
        if let Some(f) = from {
            return Ok(match self.source_stage(f) {
                Some(i) => self.done.get(&i).map(|s| s.key.to_string()).unwrap_or_default(),
                None => format!("image {f}"),
            });
        }
        let mut h = berth_image::Hasher::new();
        for s in sources {
            if let Some((_, fetched)) = self.fetched.get(s) {
                h.update(fetched.as_bytes());
                h.update(b"\n");
                continue;
            }
            for p in copy::matches(self.context, s).map_err(|e| err(line, e))? {
                copy::hash_tree(self.context, &p, self.ignore.as_ref(), &mut h).map_err(|e| err(line, e))?;
            }
        }
        Ok(h.digest().to_string())
    }

    fn source_stage(&self, from: &str) -> Option<usize> {
        if let Ok(i) = from.parse::<usize>() {
            return Some(i);
        }
        self.plan
            .stages
            .iter()
            .find(|s| s.name.as_deref().is_some_and(|n| n.eq_ignore_ascii_case(from)))
            .map(|s| s.index)
    }

    /// The layers (chain ids) of `from`: a built stage (by name or index), or else an image
    /// (pulled when missing).
    fn chains_of(&mut self, from: &str, line: usize) -> Result<Vec<Digest>, BuildError> {
        match self.source_stage(from) {
            Some(i) => self
                .done
                .get(&i)
                .map(|s| s.chains.clone())
                .ok_or_else(|| err(line, format!("stage {from} is not built"))),
            None => Ok(self.image(from, line)?.chain_ids),
        }
    }

    fn copy(&mut self, st: State, c: &berth_dockerfile::instruction::Copy, line: usize) -> Result<State, BuildError> {
        // The source tree: the context, a stage's root, or an image's.
        let mut mounted: Option<PathBuf> = None;
        let src_root: PathBuf = match c.from.as_deref() {
            None => self.context.to_path_buf(),
            Some(f) => {
                let chains = self.chains_of(f, line)?;
                let id = self.next_id();
                let dir = self.work.join(format!("from-{}", &id[..12]));
                let root = dir.join("rootfs");
                self.store.mount_chain(&chains, &dir.join("rw"), &root).map_err(|e| err(line, e.to_string()))?;
                mounted = Some(root.clone());
                root
            }
        };
        let ignore = if c.from.is_none() { self.ignore.clone() } else { None };
        let workdir = st.image["config"]["WorkingDir"].as_str().unwrap_or("/").to_string();
        let spec = copy::Spec {
            sources: c.files.sources.clone(),
            contents: c.files.contents.iter().map(|s| (s.path.clone(), s.data.clone())).collect(),
            dest: c.files.dest.clone(),
            workdir,
            chown: c.chown.clone(),
            chmod: c.chmod.clone(),
            unpack: false,
            excludes: c.excludes.clone(),
            parents: c.parents,
            fetched: BTreeMap::new(),
        };
        let shown = format!("COPY {}", ins_tail(&c.files.sources, &c.files.dest));
        let r = self.with_layer(st, line, |_, root| {
            copy::copy(&src_root, ignore.as_ref(), root, &spec).map_err(|e| err(line, e))
        });
        if let Some(m) = mounted {
            let _ = unmount(&m);
            if let Some(p) = m.parent() {
                let _ = std::fs::remove_dir_all(p);
            }
        }
        let mut st = r?;
        let created_by = format!("/bin/sh -c #(nop) {shown}");
        self.history(&mut st, created_by, false);
        Ok(st)
    }

    fn add(&mut self, st: State, a: &berth_dockerfile::instruction::Add, line: usize) -> Result<State, BuildError> {
        let workdir = st.image["config"]["WorkingDir"].as_str().unwrap_or("/").to_string();
        let spec = copy::Spec {
            sources: a.files.sources.clone(),
            contents: a.files.contents.iter().map(|s| (s.path.clone(), s.data.clone())).collect(),
            dest: a.files.dest.clone(),
            workdir,
            chown: a.chown.clone(),
            chmod: a.chmod.clone(),
            unpack: a.unpack.unwrap_or(true),
            excludes: a.excludes.clone(),
            parents: false,
            fetched: self.fetched.iter().map(|(s, (f, _))| (s.clone(), f.clone())).collect(),
        };
        let ctx = self.context.to_path_buf();
        let ignore = self.ignore.clone();
        let mut st = self
            .with_layer(st, line, |_, root| copy::copy(&ctx, ignore.as_ref(), root, &spec).map_err(|e| err(line, e)))?;
        let created_by = format!("/bin/sh -c #(nop) ADD {}", ins_tail(&a.files.sources, &a.files.dest));
        self.history(&mut st, created_by, false);
        Ok(st)
    }
}

fn ins_tail(sources: &[String], dest: &str) -> String {
    format!("{} in {dest} ", sources.join(" "))
}

fn stage_from_text(stage: &Stage) -> String {
    let mut s = format!("FROM {}", stage.from.image);
    if let Some(n) = &stage.name {
        s.push_str(&format!(" AS {n}"));
    }
    s
}

/// `path.Clean` for absolute container paths.
pub fn clean(p: &str) -> String {
    let mut out: Vec<&str> = Vec::new();
    for c in p.split('/') {
        match c {
            "" | "." => {}
            ".." => {
                out.pop();
            }
            c => out.push(c),
        }
    }
    format!("/{}", out.join("/"))
}

trait VarsExt {
    fn get_value(&self, k: &str) -> Option<String>;
}

impl VarsExt for Vars {
    fn get_value(&self, k: &str) -> Option<String> {
        self.iter().find(|(n, _)| *n == k).map(|(_, v)| v.to_string())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn times_round_trip() {
        for t in [0u64, 86399, 951_782_400, 1_700_000_000, 4_102_444_800] {
            assert_eq!(parse_rfc3339(&rfc3339(t)), Some(t), "{}", rfc3339(t));
        }
        assert_eq!(rfc3339(1_700_000_000), "2023-11-14T22:13:20Z");
        assert_eq!(parse_rfc3339("2023-11-14T23:13:20.123+01:00"), Some(1_700_000_000));
    }

    #[test]
    fn clean_paths() {
        assert_eq!(clean("/a/./b/../c/"), "/a/c");
        assert_eq!(clean("/../x"), "/x");
        assert_eq!(clean("/"), "/");
    }
}
