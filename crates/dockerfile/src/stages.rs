//! Stages, build arguments and the build graph, mirroring BuildKit's `dockerfile2llb`
//! (`instructions.Parse`, `buildMetaArgs`, `dispatchArg`, `buildDispatchStates`,
//! `toCommand`, `validateCircularDependency`, `allReachableStages`).
//!
//! # Arguments
//!
//! - `ARG`s before the first `FROM` are *meta args*. Their defaults are expanded in order
//!   with the predefined platform args ([`predefined_args`]) and the meta args before them;
//!   a `--build-arg` replaces a declared meta arg's value. The result ([`global_args`]) is
//!   what `FROM` lines (image and `--platform`) are expanded with.
//! - Inside a stage, a global arg is visible only after `ARG name` redeclares it there
//!   (without a default). An `ARG` value is, in order of precedence: the `--build-arg`, the
//!   default expanded with the stage's variables, the global value ([`resolve_arg`]).
//! - `ARG` and `ENV` values are both visible to later expansions; all values of one `ENV`
//!   line are expanded before any is set ([`walk_stage`]).
//! - The proxy args (`HTTP_PROXY`, `http_proxy`, … [`PROXY_ARGS`]) need no `ARG`: the builder
//!   passes them to `RUN` ([`proxy_args`]) and leaves them out of the image history.
//!
//! # Stages and references
//!
//! - `FROM x` refers to an earlier stage named `x` (names are case-insensitive); otherwise
//!   to the image `x` (`scratch` is the empty image). A stage cannot be its own or a later
//!   stage's base: a later name is an image name.
//! - `COPY --from=x` and `RUN --mount=from=x` refer to the stage named `x` anywhere in the
//!   file (BuildKit allows forward references), `COPY --from=N` to stage index `N`
//!   (`invalid stage index N` when out of range); an unknown name is an image. A variable
//!   in `--from` is refused. Cycles are refused with BuildKit's message
//!   (`circular dependency detected on stage: NAME`), naming the first stage (in file
//!   order) from which a cycle is reachable, as BuildKit does.
//! - The target is the last stage unless named; [`plan`] computes the stages it needs (bases
//!   and sources, transitively) and an order that builds dependencies first.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;

use crate::expand::{Env, ExpandError, Lexer, NoEnv, Vars};
use crate::instruction::{ArgDecl, Command, From};
use crate::mount;
use crate::parser::{Dockerfile, Instruction};

/// A stage-level error: the message as BuildKit words it and the line it is about.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StageError {
    /// The line of the instruction at fault, when there is one.
    pub line: Option<usize>,
    /// The message.
    pub message: String,
}

impl StageError {
    fn at(line: usize, message: impl Into<String>) -> Self {
        Self { line: Some(line), message: message.into() }
    }
}

impl fmt::Display for StageError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.line {
            Some(line) => write!(f, "line {line}: {}", self.message),
            None => f.write_str(&self.message),
        }
    }
}

impl std::error::Error for StageError {}

impl StageError {
    fn expand(line: usize, e: ExpandError) -> Self {
        Self::at(line, e.to_string())
    }
}

/// A meta `ARG` declaration (before the first `FROM`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MetaArg {
    /// The declaration.
    pub decl: ArgDecl,
    /// Its line.
    pub line: usize,
}

/// One stage: its `FROM` and the instructions after it.
#[derive(Debug, Clone, PartialEq)]
pub struct Stage {
    /// Position in the file, from 0.
    pub index: usize,
    /// `AS name`, lower-cased.
    pub name: Option<String>,
    /// The `FROM`, unexpanded.
    pub from: From,
    /// The `FROM` line.
    pub line: usize,
    /// The instructions after `FROM`.
    pub instructions: Vec<Instruction>,
}

impl Stage {
    /// The name BuildKit shows for it: its own or `stage-N`.
    pub fn display_name(&self) -> String {
        self.name.clone().unwrap_or_else(|| format!("stage-{}", self.index))
    }
}

/// A Dockerfile split into meta args and stages.
#[derive(Debug, Clone, PartialEq)]
pub struct Stages {
    /// `ARG`s before the first `FROM`.
    pub meta_args: Vec<MetaArg>,
    /// The stages in file order.
    pub stages: Vec<Stage>,
}

impl Stages {
    /// The stage named `name` (case-insensitive).
    pub fn by_name(&self, name: &str) -> Option<&Stage> {
        self.stages.iter().find(|s| s.name.as_deref().is_some_and(|n| n.eq_ignore_ascii_case(name)))
    }
}

/// Splits a Dockerfile into stages (`instructions.Parse`).
pub fn split_stages(dockerfile: &Dockerfile) -> Result<Stages, StageError> {
    let mut meta_args = Vec::new();
    let mut stages: Vec<Stage> = Vec::new();
    for ins in &dockerfile.instructions {
        match (&ins.command, stages.last_mut()) {
            (Command::From(from), _) => stages.push(Stage {
                index: stages.len(),
                name: from.name.clone(),
                from: from.clone(),
                line: ins.line,
                instructions: Vec::new(),
            }),
            (Command::Arg(decls), None) => {
                meta_args.extend(decls.iter().map(|d| MetaArg { decl: d.clone(), line: ins.line }))
            }
            (_, None) => return Err(StageError::at(ins.line, "no build stage in current context")),
            (_, Some(stage)) => stage.instructions.push(ins.clone()),
        }
    }
    if stages.is_empty() {
        return Err(StageError { line: None, message: "dockerfile contains no stages to build".into() });
    }
    Ok(Stages { meta_args, stages })
}

/// A platform as `os/arch[/variant]`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Platform {
    /// `linux`.
    pub os: String,
    /// `amd64`, `arm64`, …
    pub architecture: String,
    /// `v7`, … or empty.
    pub variant: String,
}

impl fmt::Display for Platform {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.os, self.architecture)?;
        if !self.variant.is_empty() {
            write!(f, "/{}", self.variant)?;
        }
        Ok(())
    }
}

/// The predefined args (`BUILDPLATFORM`, `BUILDOS`, `BUILDOSVERSION`, `BUILDARCH`,
/// `BUILDVARIANT`, the `TARGET…` equivalents and `TARGETSTAGE`), with `--build-arg`
/// overrides applied (BuildKit's `defaultArgs`). `target` is the target stage's name.
pub fn predefined_args(
    build: &Platform,
    target: &Platform,
    target_stage: Option<&str>,
    build_args: &BTreeMap<String, String>,
) -> Vars {
    let values = [
        ("BUILDPLATFORM", build.to_string()),
        ("BUILDOS", build.os.clone()),
        ("BUILDOSVERSION", String::new()),
        ("BUILDARCH", build.architecture.clone()),
        ("BUILDVARIANT", build.variant.clone()),
        ("TARGETPLATFORM", target.to_string()),
        ("TARGETOS", target.os.clone()),
        ("TARGETOSVERSION", String::new()),
        ("TARGETARCH", target.architecture.clone()),
        ("TARGETVARIANT", target.variant.clone()),
        ("TARGETSTAGE", target_stage.filter(|s| !s.is_empty()).unwrap_or("default").to_string()),
    ];
    values.into_iter().map(|(k, v)| (k, build_args.get(k).cloned().unwrap_or(v))).collect()
}

/// The global args: `predefined` plus the meta args (BuildKit's `buildMetaArgs`).
pub fn global_args(
    stages: &Stages,
    predefined: &Vars,
    build_args: &BTreeMap<String, String>,
    escape: char,
) -> Result<Vars, StageError> {
    let lexer = Lexer::new(escape);
    let mut args = predefined.clone();
    for meta in &stages.meta_args {
        let value = match (build_args.get(&meta.decl.name), &meta.decl.default) {
            (Some(v), _) => Some(v.clone()),
            (None, Some(default)) => {
                Some(lexer.process_word(default, &args).map_err(|e| StageError::expand(meta.line, e))?)
            }
            (None, None) => None,
        };
        if let Some(v) = value {
            args.set(&meta.decl.name, &v);
        }
    }
    Ok(args)
}

/// The value an `ARG` declaration inside a stage gives its variable (`dispatchArg`), or
/// `None` when it stays unset.
pub fn resolve_arg(
    decl: &ArgDecl,
    build_args: &BTreeMap<String, String>,
    global: &dyn Env,
    stage_env: &dyn Env,
    escape: char,
) -> Result<Option<String>, ExpandError> {
    if let Some(v) = build_args.get(&decl.name) {
        return Ok(Some(v.clone()));
    }
    match &decl.default {
        Some(default) => Lexer::new(escape).process_word(default, stage_env).map(Some),
        None => Ok(global.get(&decl.name).map(str::to_string)),
    }
}

/// The proxy args usable without `ARG` (the classic builder's `builtinAllowedBuildArgs`).
pub const PROXY_ARGS: [&str; 10] = [
    "HTTP_PROXY",
    "http_proxy",
    "HTTPS_PROXY",
    "https_proxy",
    "FTP_PROXY",
    "ftp_proxy",
    "NO_PROXY",
    "no_proxy",
    "ALL_PROXY",
    "all_proxy",
];

/// The proxy `--build-arg`s, for `RUN`'s environment (never for the image history).
pub fn proxy_args(build_args: &BTreeMap<String, String>) -> Vars {
    PROXY_ARGS.iter().filter_map(|k| build_args.get(*k).map(|v| (*k, v.clone()))).collect()
}

/// One instruction of a stage, expanded, with the variables it was expanded with.
#[derive(Debug, Clone, PartialEq)]
pub struct Step {
    /// The instruction after [`crate::expand::expand_instruction`] (for `ARG`, defaults
    /// replaced by the resolved values).
    pub instruction: Instruction,
    /// The `ENV` and `ARG` variables in effect before it (what `RUN` would see).
    pub vars: Vars,
}

/// Walks a stage's instructions in order, tracking `ENV` and `ARG` values from `base_env`
/// (the base image's or base stage's environment), and expands each instruction as Docker
/// does before executing it.
pub fn walk_stage(
    stage: &Stage,
    base_env: &Vars,
    global: &Vars,
    build_args: &BTreeMap<String, String>,
    escape: char,
) -> Result<Vec<Step>, StageError> {
    let mut vars = base_env.clone();
    // Names ENV set (in the base image or this stage): an ARG never overrides them.
    let mut env_names: BTreeSet<String> = base_env.iter().map(|(k, _)| k.to_string()).collect();
    let mut steps = Vec::with_capacity(stage.instructions.len());
    for ins in &stage.instructions {
        let before = vars.clone();
        let mut expanded = if let Command::Arg(_) = ins.command {
            ins.clone()
        } else {
            crate::expand::expand_instruction(ins, &vars, escape).map_err(|e| StageError::expand(ins.line, e))?
        };
        match &mut expanded.command {
            Command::Env(kvs) => kvs.iter().for_each(|kv| {
                vars.set(&kv.key, &kv.value);
                env_names.insert(kv.key.clone());
            }),
            Command::Arg(decls) => {
                for decl in decls.iter_mut() {
                    let value = resolve_arg(decl, build_args, global, &vars, escape)
                        .map_err(|e| StageError::expand(ins.line, e))?;
                    if let Some(v) = value.as_ref().filter(|_| !env_names.contains(&decl.name)) {
                        vars.set(&decl.name, v);
                    }
                    decl.default = value;
                }
            }
            _ => {}
        }
        steps.push(Step { instruction: expanded, vars: before });
    }
    Ok(steps)
}

/// What a stage starts from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Base {
    /// `FROM scratch`.
    Scratch,
    /// An image reference (expanded).
    Image(String),
    /// An earlier stage, by index.
    Stage(usize),
}

/// Where `COPY --from` / `RUN --mount=from=` reads.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Source {
    /// A stage, by index.
    Stage(usize),
    /// An image reference.
    Image(String),
}

/// A `COPY --from` or `RUN --mount=from=` of a stage.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Dependency {
    /// What it reads.
    pub source: Source,
    /// The instruction's line.
    pub line: usize,
}

/// A stage with its `FROM` resolved.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ResolvedStage {
    /// The stage index.
    pub index: usize,
    /// Its name, if any.
    pub name: Option<String>,
    /// Its base.
    pub base: Base,
    /// `--platform`, expanded.
    pub platform: Option<String>,
    /// Global args the `FROM` line referred to (for the cache key).
    pub from_args: BTreeSet<String>,
    /// Other stages and images it reads from, in instruction order.
    pub dependencies: Vec<Dependency>,
}

/// What to build and in which order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BuildPlan {
    /// The global args (predefined + meta args).
    pub global_args: Vars,
    /// Every stage, resolved.
    pub stages: Vec<ResolvedStage>,
    /// The target stage's index.
    pub target: usize,
    /// The stages the target needs (itself included), dependencies first.
    pub order: Vec<usize>,
}

/// Inputs of [`plan`].
#[derive(Debug, Clone)]
pub struct PlanOptions {
    /// `--target`, if given.
    pub target: Option<String>,
    /// `--build-arg`s.
    pub build_args: BTreeMap<String, String>,
    /// The build platform.
    pub build_platform: Platform,
    /// The target platform.
    pub target_platform: Platform,
}

/// Resolves bases, sources and the target, and orders the stages the target needs.
pub fn plan(stages: &Stages, opts: &PlanOptions, escape: char) -> Result<BuildPlan, StageError> {
    let target = match &opts.target {
        Some(name) => stages
            .by_name(name)
            .map(|s| s.index)
            .ok_or_else(|| StageError { line: None, message: format!("target stage {name:?} could not be found") })?,
        None => stages.stages.len() - 1,
    };
    let target_name = stages.stages[target].name.as_deref();
    let predefined = predefined_args(&opts.build_platform, &opts.target_platform, target_name, &opts.build_args);
    let global = global_args(stages, &predefined, &opts.build_args, escape)?;
    let mut resolved = Vec::with_capacity(stages.stages.len());
    for stage in &stages.stages {
        let mut r = resolve_from(stages, stage, &global, escape)?;
        r.dependencies = dependencies(stages, stage, escape)?;
        resolved.push(r);
    }
    check_cycles(&stages.stages, &resolved)?;
    let order = build_order(&resolved, target);
    Ok(BuildPlan { global_args: global, stages: resolved, target, order })
}

fn resolve_from(stages: &Stages, stage: &Stage, global: &Vars, escape: char) -> Result<ResolvedStage, StageError> {
    let lexer = Lexer::new(escape);
    let image = lexer.process(&stage.from.image, global).map_err(|e| StageError::expand(stage.line, e))?;
    if image.result.is_empty() {
        return Err(StageError::at(stage.line, format!("base name ({}) should not be blank", stage.from.image)));
    }
    let mut from_args = image.referenced();
    let platform = match &stage.from.platform {
        Some(p) => {
            let e = lexer.process(p, global).map_err(|e| StageError::expand(stage.line, e))?;
            if e.result.is_empty() {
                return Err(StageError::at(stage.line, format!("empty platform value from expression {p}")));
            }
            from_args.extend(e.referenced());
            Some(e.result)
        }
        None => None,
    };
    let earlier = stages.stages[..stage.index]
        .iter()
        .rev()
        .find(|s| s.name.as_deref().is_some_and(|n| n.eq_ignore_ascii_case(&image.result)));
    let base = match earlier {
        Some(s) => Base::Stage(s.index),
        None if image.result == "scratch" => Base::Scratch,
        None => Base::Image(image.result),
    };
    Ok(ResolvedStage { index: stage.index, name: stage.name.clone(), base, platform, from_args, dependencies: vec![] })
}

/// The last stage named `name` (later duplicates win, as in BuildKit's name map).
fn stage_named(stages: &Stages, name: &str) -> Option<usize> {
    stages
        .stages
        .iter()
        .rev()
        .find(|s| s.name.as_deref().is_some_and(|n| n.eq_ignore_ascii_case(name)))
        .map(|s| s.index)
}

fn dependencies(stages: &Stages, stage: &Stage, escape: char) -> Result<Vec<Dependency>, StageError> {
    let mut deps = Vec::new();
    for ins in &stage.instructions {
        match &ins.command {
            Command::Copy(copy) => {
                if let Some(from) = &copy.from {
                    deps.push(Dependency { source: copy_source(stages, from, ins.line, escape)?, line: ins.line });
                }
            }
            Command::Run(run) => {
                for from in run.mounts.iter().filter_map(|m| mount::mount_from(m)).filter(|f| !f.is_empty()) {
                    let source = stage_named(stages, &from).map_or(Source::Image(from), Source::Stage);
                    deps.push(Dependency { source, line: ins.line });
                }
            }
            _ => {}
        }
    }
    Ok(deps)
}

fn copy_source(stages: &Stages, from: &str, line: usize, escape: char) -> Result<Source, StageError> {
    let unexpanded = Lexer::new(escape).process_word(from, &NoEnv).map_err(|e| StageError::expand(line, e))?;
    if unexpanded != from {
        return Err(StageError::at(
            line,
            "variable expansion is not supported for --from, define a new stage with FROM using ARG from global scope as a workaround",
        ));
    }
    if let Ok(index) = from.parse::<i64>() {
        return match usize::try_from(index).ok().filter(|&i| i < stages.stages.len()) {
            Some(i) => Ok(Source::Stage(i)),
            None => Err(StageError::at(line, format!("invalid stage index {index}"))),
        };
    }
    Ok(stage_named(stages, from).map_or_else(|| Source::Image(from.to_string()), Source::Stage))
}

fn stage_deps(stage: &ResolvedStage) -> impl Iterator<Item = (usize, usize)> + '_ {
    stage.dependencies.iter().filter_map(|d| match d.source {
        Source::Stage(i) => Some((i, d.line)),
        Source::Image(_) => None,
    })
}

/// BuildKit's `validateCircularDependency`: depth-first over `COPY --from`/mount edges.
fn check_cycles(stages: &[Stage], resolved: &[ResolvedStage]) -> Result<(), StageError> {
    let mut visited = vec![false; resolved.len()];
    for (start, stage) in stages.iter().enumerate() {
        let mut on_path = vec![false; resolved.len()];
        if let Some(line) = find_cycle(resolved, start, &mut visited, &mut on_path, None) {
            let name = stage.display_name();
            return Err(StageError::at(line, format!("circular dependency detected on stage: {name}")));
        }
    }
    Ok(())
}

/// Returns the line of the first edge on the path to a cycle.
fn find_cycle(
    resolved: &[ResolvedStage],
    at: usize,
    visited: &mut [bool],
    on_path: &mut [bool],
    first_line: Option<usize>,
) -> Option<usize> {
    if visited[at] {
        return None;
    }
    visited[at] = true;
    on_path[at] = true;
    for (dep, line) in stage_deps(&resolved[at]) {
        let first = first_line.or(Some(line));
        if on_path[dep] {
            return first;
        }
        if let Some(found) = find_cycle(resolved, dep, visited, on_path, first) {
            return Some(found);
        }
    }
    on_path[at] = false;
    None
}

/// The stages `target` needs, dependencies first, otherwise in file order (Kahn's algorithm
/// taking the lowest ready index).
fn build_order(resolved: &[ResolvedStage], target: usize) -> Vec<usize> {
    let needs = |i: usize| -> Vec<usize> {
        let base = match resolved[i].base {
            Base::Stage(b) => Some(b),
            _ => None,
        };
        base.into_iter().chain(stage_deps(&resolved[i]).map(|(d, _)| d)).collect()
    };
    let mut reachable = BTreeSet::new();
    let mut todo = vec![target];
    while let Some(i) = todo.pop() {
        if reachable.insert(i) {
            todo.extend(needs(i));
        }
    }
    let mut order = Vec::with_capacity(reachable.len());
    let mut done = BTreeSet::new();
    while done.len() < reachable.len() {
        let ready =
            reachable.iter().copied().find(|&i| !done.contains(&i) && needs(i).iter().all(|d| done.contains(d)));
        let Some(i) = ready else { break };
        done.insert(i);
        order.push(i);
    }
    order
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn env_beats_a_later_arg() {
        let df = crate::parse("FROM a\nENV X=env\nARG X=arg\nWORKDIR /$X\nARG P\nWORKDIR /$P\n").unwrap();
        let st = split_stages(&df).unwrap();
        let args: BTreeMap<String, String> = [("X".to_string(), "cli".to_string())].into();
        let base: Vars = [("P", "/base")].into_iter().collect();
        let steps = walk_stage(&st.stages[0], &base, &Vars::new(), &args, df.escape).unwrap();
        let wd = |i: usize| match &steps[i].instruction.command {
            Command::Workdir(w) => w.clone(),
            other => panic!("{other:?}"),
        };
        assert_eq!((wd(2), wd(4)), ("/env".to_string(), "//base".to_string()));
    }
}
