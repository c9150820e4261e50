//! The typed form of each instruction and its checks, mirroring BuildKit's
//! `frontend/dockerfile/instructions` (`parse.go`, `bflag.go`, the `commands_run*.go` hooks).
//!
//! Arguments are kept as written (quotes included) wherever Docker expands them later: the
//! builder runs them through [`crate::expand::expand_instruction`] with the environment of
//! the moment. Flags are checked per instruction:
//!
//! | instruction | flags |
//! | --- | --- |
//! | `FROM` | `--platform` |
//! | `RUN` | `--mount` (repeatable), `--network` (`default`/`none`/`host`), `--security` (`sandbox`/`insecure`), `--device` (repeatable) |
//! | `COPY` | `--from`, `--chown`, `--chmod`, `--link`, `--parents`, `--exclude` (repeatable) |
//! | `ADD` | `--chown`, `--chmod`, `--checksum`, `--link`, `--keep-git-dir`, `--unpack`, `--exclude` (repeatable) |
//! | `HEALTHCHECK CMD` | `--interval`, `--timeout`, `--start-period`, `--start-interval`, `--retries` |
//!
//! Any other flag is an error, except that — exactly as in Docker — the flags of `ARG`,
//! `STOPSIGNAL` and `HEALTHCHECK NONE` are not looked at at all.

use std::time::Duration;

use crate::mount;
use crate::parser::{self, go_quote, Flag, Heredoc, Instruction, Node};

/// What an instruction says.
#[derive(Debug, Clone, PartialEq)]
pub enum Command {
    /// `FROM [--platform=p] image [AS name]`.
    From(From),
    /// `RUN [flags] command` or `RUN ["exec", "form"]`.
    Run(Run),
    /// `CMD command` or `CMD ["exec", "form"]`.
    Cmd(CmdLine),
    /// `ENTRYPOINT command` or `ENTRYPOINT ["exec", "form"]`.
    Entrypoint(CmdLine),
    /// `SHELL ["executable", "parameters"]` (JSON form only).
    Shell(Vec<String>),
    /// `LABEL k=v ...` or the legacy `LABEL k v`.
    Label(Vec<KeyValue>),
    /// `ENV k=v ...` or the legacy `ENV k v`.
    Env(Vec<KeyValue>),
    /// `EXPOSE port[/proto] ...`, sorted as Docker sorts them (as strings).
    Expose(Vec<String>),
    /// `ADD [flags] src... dest`.
    Add(Add),
    /// `COPY [flags] src... dest`.
    Copy(Copy),
    /// `VOLUME path ...` or `VOLUME ["path", ...]`.
    Volume(Vec<String>),
    /// `USER user[:group]`.
    User(String),
    /// `WORKDIR path`.
    Workdir(String),
    /// `ARG name[=default] ...`.
    Arg(Vec<ArgDecl>),
    /// `ONBUILD instruction`.
    Onbuild(Onbuild),
    /// `STOPSIGNAL signal`.
    StopSignal(String),
    /// `HEALTHCHECK NONE` or `HEALTHCHECK [flags] CMD command`.
    Healthcheck(Healthcheck),
    /// `MAINTAINER name` (deprecated, still accepted).
    Maintainer(String),
}

impl Command {
    /// The upper-case keyword (`RUN`).
    pub fn keyword(&self) -> &'static str {
        match self {
            Command::From(_) => "FROM",
            Command::Run(_) => "RUN",
            Command::Cmd(_) => "CMD",
            Command::Entrypoint(_) => "ENTRYPOINT",
            Command::Shell(_) => "SHELL",
            Command::Label(_) => "LABEL",
            Command::Env(_) => "ENV",
            Command::Expose(_) => "EXPOSE",
            Command::Add(_) => "ADD",
            Command::Copy(_) => "COPY",
            Command::Volume(_) => "VOLUME",
            Command::User(_) => "USER",
            Command::Workdir(_) => "WORKDIR",
            Command::Arg(_) => "ARG",
            Command::Onbuild(_) => "ONBUILD",
            Command::StopSignal(_) => "STOPSIGNAL",
            Command::Healthcheck(_) => "HEALTHCHECK",
            Command::Maintainer(_) => "MAINTAINER",
        }
    }
}

/// `FROM`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct From {
    /// The image or earlier stage, unexpanded (may hold `$ARG`s from before the first `FROM`).
    pub image: String,
    /// The stage name from `AS name`, lower-cased.
    pub name: Option<String>,
    /// `--platform`, unexpanded.
    pub platform: Option<String>,
}

/// A command line for `RUN`, `CMD`, `ENTRYPOINT` (BuildKit's `ShellDependantCmdLine`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CmdLine {
    /// Exec form: the JSON array. Shell form: one element, the text (empty when none).
    pub args: Vec<String>,
    /// Shell form: the stage's `SHELL` (default `/bin/sh -c`) goes in front.
    pub prepend_shell: bool,
    /// Heredocs opened on the line (`RUN <<EOF`).
    pub heredocs: Vec<Heredoc>,
}

/// `RUN --network`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Network {
    /// The build's default network.
    #[default]
    Default,
    /// No network.
    None,
    /// The host's network.
    Host,
}

/// `RUN --security`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Security {
    /// The normal sandbox.
    #[default]
    Sandbox,
    /// Privileged (needs the `security.insecure` entitlement).
    Insecure,
}

/// `RUN`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Run {
    /// The command.
    pub cmd: CmdLine,
    /// `--mount` specs as written; [`mount::parse_mount`] reads them once expanded.
    pub mounts: Vec<String>,
    /// `--network`.
    pub network: Network,
    /// `--security`.
    pub security: Security,
    /// `--device` specs as written.
    pub devices: Vec<String>,
}

/// A `key=value` of `ENV` or `LABEL`, unexpanded.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeyValue {
    /// The key as written.
    pub key: String,
    /// The value as written (quotes included; expansion removes them).
    pub value: String,
    /// Written in the legacy `KEY value` form.
    pub legacy: bool,
}

/// An `ARG` declaration, unexpanded.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ArgDecl {
    /// The name.
    pub name: String,
    /// The default after `=`, if any (`ARG a=` gives `Some("")`).
    pub default: Option<String>,
}

/// A heredoc used as a `COPY`/`ADD` source.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SourceContent {
    /// The file name (the delimiter word).
    pub path: String,
    /// The body (tabs stripped for `<<-`).
    pub data: String,
    /// Whether the body is to be expanded ([`crate::expand::expand_heredoc`]).
    pub expand: bool,
}

/// Sources and destination of `COPY`/`ADD`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Files {
    /// Source paths (or URLs for `ADD`), unexpanded.
    pub sources: Vec<String>,
    /// Heredoc sources.
    pub contents: Vec<SourceContent>,
    /// The destination, unexpanded.
    pub dest: String,
    /// Given as a JSON array.
    pub json: bool,
}

/// `COPY`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Copy {
    /// What goes where.
    pub files: Files,
    /// `--from`: a stage name, a stage index or an image.
    pub from: Option<String>,
    /// `--chown`.
    pub chown: Option<String>,
    /// `--chmod`.
    pub chmod: Option<String>,
    /// `--link`.
    pub link: bool,
    /// `--parents`.
    pub parents: bool,
    /// `--exclude` patterns.
    pub excludes: Vec<String>,
}

/// `ADD`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Add {
    /// What goes where.
    pub files: Files,
    /// `--chown`.
    pub chown: Option<String>,
    /// `--chmod`.
    pub chmod: Option<String>,
    /// `--checksum`.
    pub checksum: Option<String>,
    /// `--link`.
    pub link: bool,
    /// `--keep-git-dir`, when given.
    pub keep_git_dir: Option<bool>,
    /// `--unpack`, when given.
    pub unpack: Option<bool>,
    /// `--exclude` patterns.
    pub excludes: Vec<String>,
}

/// `ONBUILD`.
#[derive(Debug, Clone, PartialEq)]
pub struct Onbuild {
    /// The trigger's text as stored in the image config (`RUN make`), heredocs appended.
    pub expression: String,
    /// The trigger, parsed.
    pub trigger: Box<Instruction>,
}

/// `HEALTHCHECK`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Healthcheck {
    /// `HEALTHCHECK NONE`: disable the base image's check.
    None,
    /// `HEALTHCHECK CMD ...`.
    Cmd(HealthConfig),
}

/// The check, as it goes into the image config. Zero durations mean "not set".
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HealthConfig {
    /// `["CMD", args...]` (exec form) or `["CMD-SHELL", command]`.
    pub test: Vec<String>,
    /// `--interval`.
    pub interval: Duration,
    /// `--timeout`.
    pub timeout: Duration,
    /// `--start-period`.
    pub start_period: Duration,
    /// `--start-interval`.
    pub start_interval: Duration,
    /// `--retries`.
    pub retries: u32,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    Bool,
    Str,
    Strings,
}

/// Flag values after `BFlags.Parse`.
#[derive(Default)]
struct Flags {
    bools: Vec<(&'static str, bool)>,
    strs: Vec<(&'static str, String)>,
    lists: Vec<(&'static str, Vec<String>)>,
}

impl Flags {
    fn bool(&self, name: &str) -> Option<bool> {
        self.bools.iter().find(|(n, _)| *n == name).map(|(_, v)| *v)
    }

    fn string(&self, name: &str) -> Option<String> {
        self.strs.iter().find(|(n, _)| *n == name).map(|(_, v)| v.clone())
    }

    /// A string flag where empty means unset (as Docker treats them).
    fn non_empty(&self, name: &str) -> Option<String> {
        self.string(name).filter(|v| !v.is_empty())
    }

    fn list(&self, name: &str) -> Vec<String> {
        self.lists.iter().find(|(n, _)| *n == name).map(|(_, v)| v.clone()).unwrap_or_default()
    }
}

/// Checks `raw` flags against what the instruction accepts.
fn parse_flags(raw: &[String], specs: &[(&'static str, Kind)]) -> Result<Flags, String> {
    let mut flags = Flags::default();
    let mut used: Vec<&str> = Vec::new();
    for arg in raw {
        if arg == "--" {
            break;
        }
        let Some(stripped) = arg.strip_prefix("--") else {
            return Err(format!("arg should start with -- : {arg}"));
        };
        let (name, value) = match stripped.split_once('=') {
            Some((n, v)) => (n, Some(v)),
            None => (stripped, None),
        };
        let shown = format!("--{name}");
        let Some(&(name, kind)) = specs.iter().find(|(n, _)| *n == name) else {
            return Err(format!("unknown flag: {shown}"));
        };
        if used.contains(&name) && kind != Kind::Strings {
            return Err(format!("duplicate flag specified: {shown}"));
        }
        used.push(name);
        match (kind, value) {
            (Kind::Bool, Some("")) | (Kind::Str | Kind::Strings, None) => {
                return Err(format!("missing a value on flag: {shown}"))
            }
            (Kind::Bool, v) => {
                let b = match v.map(str::to_ascii_lowercase).as_deref() {
                    None | Some("true") => true,
                    Some("false") => false,
                    Some(_) => {
                        return Err(format!("expecting boolean value for flag {shown}, not: {}", v.unwrap_or("")))
                    }
                };
                flags.bools.push((name, b));
            }
            (Kind::Str, Some(v)) => flags.strs.push((name, v.to_string())),
            (Kind::Strings, Some(v)) => match flags.lists.iter_mut().find(|(n, _)| *n == name) {
                Some((_, list)) => list.push(v.to_string()),
                None => flags.lists.push((name, vec![v.to_string()])),
            },
        }
    }
    Ok(flags)
}

fn public_flags(raw: &[String]) -> Vec<Flag> {
    raw.iter()
        .map(|f| {
            let f = f.strip_prefix("--").unwrap_or(f);
            match f.split_once('=') {
                Some((n, v)) => Flag { name: n.to_string(), value: Some(v.to_string()) },
                None => Flag { name: f.to_string(), value: None },
            }
        })
        .collect()
}

/// Types one parser node (`ParseInstruction`).
pub(crate) fn from_node(node: &Node) -> Result<Instruction, String> {
    let command = command_from_node(node)?;
    Ok(Instruction {
        keyword: node.keyword.clone(),
        line: node.start_line,
        end_line: node.end_line,
        original: node.original.clone(),
        flags: public_flags(&node.flags),
        command,
    })
}

fn no_flags(node: &Node) -> Result<Flags, String> {
    parse_flags(&node.flags, &[])
}

fn command_from_node(node: &Node) -> Result<Command, String> {
    let args = &node.args;
    Ok(match node.keyword.to_ascii_lowercase().as_str() {
        "env" => {
            no_flags(node)?;
            Command::Env(key_values(args, "ENV")?)
        }
        "maintainer" => {
            exactly_one(args, "MAINTAINER")?;
            no_flags(node)?;
            Command::Maintainer(args[0].clone())
        }
        "label" => {
            no_flags(node)?;
            Command::Label(key_values(args, "LABEL")?)
        }
        "add" => Command::Add(parse_add(node)?),
        "copy" => Command::Copy(parse_copy(node)?),
        "from" => Command::From(parse_from(node)?),
        "onbuild" => Command::Onbuild(parse_onbuild(node)?),
        "workdir" => {
            exactly_one(args, "WORKDIR")?;
            no_flags(node)?;
            Command::Workdir(args[0].clone())
        }
        "run" => Command::Run(parse_run(node)?),
        "cmd" => {
            no_flags(node)?;
            Command::Cmd(cmd_line(node))
        }
        "entrypoint" => {
            no_flags(node)?;
            Command::Entrypoint(cmd_line(node))
        }
        "healthcheck" => Command::Healthcheck(parse_healthcheck(node)?),
        "expose" => {
            at_least_one(args, "EXPOSE")?;
            no_flags(node)?;
            let mut ports = args.clone();
            ports.sort();
            Command::Expose(ports)
        }
        "user" => {
            exactly_one(args, "USER")?;
            no_flags(node)?;
            Command::User(args[0].clone())
        }
        "volume" => Command::Volume(parse_volume(node)?),
        "stopsignal" => {
            exactly_one(args, "STOPSIGNAL")?;
            Command::StopSignal(args[0].clone())
        }
        "arg" => Command::Arg(parse_arg(args)?),
        "shell" => Command::Shell(parse_shell(node)?),
        _ => return Err(format!("unknown instruction: {}", node.keyword)),
    })
}

fn at_least_one(args: &[String], keyword: &str) -> Result<(), String> {
    if args.is_empty() {
        return Err(format!("{keyword} requires at least one argument"));
    }
    Ok(())
}

fn exactly_one(args: &[String], keyword: &str) -> Result<(), String> {
    if args.len() != 1 {
        return Err(format!("{keyword} requires exactly one argument"));
    }
    Ok(())
}

fn key_values(args: &[String], keyword: &str) -> Result<Vec<KeyValue>, String> {
    at_least_one(args, keyword)?;
    if !args.len().is_multiple_of(3) {
        return Err(format!("Bad input to {keyword}, too many arguments"));
    }
    args.chunks(3)
        .map(|kv| {
            if kv[0].is_empty() {
                return Err(format!("{keyword} names can not be blank"));
            }
            Ok(KeyValue { key: kv[0].clone(), value: kv[1].clone(), legacy: kv[2].is_empty() })
        })
        .collect()
}

fn cmd_line(node: &Node) -> CmdLine {
    let args = match (node.args.is_empty(), node.json) {
        (true, _) => vec![],
        (false, true) => node.args.clone(),
        (false, false) => vec![node.args.join(" ")],
    };
    CmdLine { args, prepend_shell: !node.json, heredocs: node.heredocs.clone() }
}

fn parse_files(node: &Node, keyword: &str) -> Result<Files, String> {
    let (dest, sources) = node.args.split_last().ok_or_else(|| no_destination(keyword))?;
    if parser::parse_heredoc(dest).ok().flatten().is_some() {
        return Err(format!("{keyword} cannot accept a heredoc as a destination"));
    }
    let mut files = Files { sources: vec![], contents: vec![], dest: dest.clone(), json: node.json };
    for src in sources {
        match parser::parse_heredoc(src).ok().flatten() {
            Some(doc) => {
                let body = node.heredocs.iter().rev().find(|d| d.name == doc.name);
                let data = body.map(|d| Heredoc { chomp: doc.chomp, ..d.clone() }.text()).unwrap_or_default();
                files.contents.push(SourceContent { path: doc.name, data, expand: doc.expand });
            }
            None => files.sources.push(src.clone()),
        }
    }
    Ok(files)
}

fn no_destination(keyword: &str) -> String {
    format!("{keyword} requires at least two arguments, but only one was provided. Destination could not be determined")
}

fn parse_add(node: &Node) -> Result<Add, String> {
    if node.args.len() < 2 {
        return Err(no_destination("ADD"));
    }
    let flags = parse_flags(
        &node.flags,
        &[
            ("chown", Kind::Str),
            ("chmod", Kind::Str),
            ("link", Kind::Bool),
            ("keep-git-dir", Kind::Bool),
            ("checksum", Kind::Str),
            ("unpack", Kind::Bool),
            ("exclude", Kind::Strings),
        ],
    )?;
    Ok(Add {
        files: parse_files(node, "ADD")?,
        chown: flags.non_empty("chown"),
        chmod: flags.non_empty("chmod"),
        checksum: flags.non_empty("checksum"),
        link: flags.bool("link").unwrap_or(false),
        keep_git_dir: flags.bool("keep-git-dir"),
        unpack: flags.bool("unpack"),
        excludes: flags.list("exclude"),
    })
}

fn parse_copy(node: &Node) -> Result<Copy, String> {
    if node.args.len() < 2 {
        return Err(no_destination("COPY"));
    }
    let flags = parse_flags(
        &node.flags,
        &[
            ("chown", Kind::Str),
            ("from", Kind::Str),
            ("chmod", Kind::Str),
            ("link", Kind::Bool),
            ("exclude", Kind::Strings),
            ("parents", Kind::Bool),
        ],
    )?;
    Ok(Copy {
        files: parse_files(node, "COPY")?,
        from: flags.non_empty("from"),
        chown: flags.non_empty("chown"),
        chmod: flags.non_empty("chmod"),
        link: flags.bool("link").unwrap_or(false),
        parents: flags.bool("parents").unwrap_or(false),
        excludes: flags.list("exclude"),
    })
}

/// Whether `name` is a valid stage name: `^[a-z][a-z0-9-_.]*$` (after lower-casing).
pub fn is_valid_stage_name(name: &str) -> bool {
    let mut chars = name.chars();
    chars.next().is_some_and(|c| c.is_ascii_lowercase())
        && chars.all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || matches!(c, '-' | '_' | '.'))
}

fn parse_from(node: &Node) -> Result<From, String> {
    let args = &node.args;
    let name = match args.len() {
        3 if args[1].eq_ignore_ascii_case("as") => {
            let name = args[2].to_lowercase();
            if !is_valid_stage_name(&name) {
                return Err(format!(
                    "invalid name for build stage: {}, name can't start with a number or contain symbols",
                    go_quote(&args[2])
                ));
            }
            Some(name)
        }
        1 => None,
        _ => return Err("FROM requires either one or three arguments".into()),
    };
    let flags = parse_flags(&node.flags, &[("platform", Kind::Str)])?;
    Ok(From { image: args[0].clone(), name, platform: flags.non_empty("platform") })
}

fn parse_onbuild(node: &Node) -> Result<Onbuild, String> {
    let first = node.args.first().ok_or("ONBUILD requires at least one argument")?;
    no_flags(node)?;
    let trigger = first.trim().to_uppercase();
    match trigger.as_str() {
        "ONBUILD" => return Err("Chaining ONBUILD via `ONBUILD ONBUILD` isn't allowed".into()),
        "MAINTAINER" | "FROM" => return Err(format!("{trigger} isn't allowed as an ONBUILD trigger")),
        _ => {}
    }
    let child = node.child.as_deref().ok_or("ONBUILD requires at least one argument")?;
    let mut expression = strip_onbuild_prefix(&node.original).to_string();
    for doc in &node.heredocs {
        expression.push('\n');
        expression.push_str(&doc.content);
        expression.push_str(&doc.name);
    }
    Ok(Onbuild { expression, trigger: Box::new(from_node(child)?) })
}

/// `(?i)^\s*ONBUILD\s*` removed.
fn strip_onbuild_prefix(original: &str) -> &str {
    const SPACE: [char; 5] = [' ', '\t', '\n', '\x0c', '\r'];
    let s = original.trim_start_matches(SPACE);
    match s.get(..7) {
        Some(k) if k.eq_ignore_ascii_case("onbuild") => s[7..].trim_start_matches(SPACE),
        _ => original,
    }
}

fn parse_run(node: &Node) -> Result<Run, String> {
    let flags = parse_flags(
        &node.flags,
        &[("device", Kind::Strings), ("mount", Kind::Strings), ("network", Kind::Str), ("security", Kind::Str)],
    )?;
    let mounts = flags.list("mount");
    for spec in &mounts {
        mount::check_unexpanded(spec)?;
    }
    let network = match flags.string("network").as_deref().unwrap_or("default") {
        "default" => Network::Default,
        "none" => Network::None,
        "host" => Network::Host,
        other => return Err(format!("invalid network mode {}", go_quote(other))),
    };
    let security = match flags.string("security").as_deref().unwrap_or("sandbox") {
        "sandbox" => Security::Sandbox,
        "insecure" => Security::Insecure,
        other => return Err(format!("security {} is not valid", go_quote(other))),
    };
    Ok(Run { cmd: cmd_line(node), mounts, network, security, devices: flags.list("device") })
}

fn parse_healthcheck(node: &Node) -> Result<Healthcheck, String> {
    let (typ, rest) = node.args.split_first().ok_or("HEALTHCHECK requires at least one argument")?;
    let typ = typ.to_uppercase();
    if typ == "NONE" {
        if !rest.is_empty() {
            return Err("HEALTHCHECK NONE takes no arguments".into());
        }
        return Ok(Healthcheck::None);
    }
    let flags = parse_flags(
        &node.flags,
        &[
            ("interval", Kind::Str),
            ("timeout", Kind::Str),
            ("start-period", Kind::Str),
            ("start-interval", Kind::Str),
            ("retries", Kind::Str),
        ],
    )?;
    if typ != "CMD" {
        return Err(format!("Unknown type {} in HEALTHCHECK (try CMD)", go_quote(&typ)));
    }
    let cmd = match (rest.is_empty(), node.json) {
        (true, _) => return Err("Missing command after HEALTHCHECK CMD".into()),
        (false, true) => rest.to_vec(),
        (false, false) => vec![rest.join(" ")],
    };
    let kind = if node.json { "CMD" } else { "CMD-SHELL" };
    let interval = |name: &str| opt_interval(name, flags.string(name).as_deref().unwrap_or(""));
    Ok(Healthcheck::Cmd(HealthConfig {
        test: std::iter::once(kind.to_string()).chain(cmd).collect(),
        interval: interval("interval")?,
        timeout: interval("timeout")?,
        start_period: interval("start-period")?,
        start_interval: interval("start-interval")?,
        retries: parse_retries(flags.string("retries").as_deref().unwrap_or(""))?,
    }))
}

fn opt_interval(name: &str, value: &str) -> Result<Duration, String> {
    if value.is_empty() {
        return Ok(Duration::ZERO);
    }
    let nanos = parse_go_duration(value)?;
    if nanos == 0 {
        return Ok(Duration::ZERO);
    }
    if nanos < 1_000_000 {
        return Err(format!("Interval {} cannot be less than 1ms", go_quote(name)));
    }
    Ok(Duration::from_nanos(u64::try_from(nanos).unwrap_or(u64::MAX)))
}

fn parse_retries(value: &str) -> Result<u32, String> {
    if value.is_empty() {
        return Ok(0);
    }
    let n: i32 = value.parse().map_err(|_| {
        let why = if value.trim_start_matches(['+', '-']).chars().all(|c| c.is_ascii_digit()) && value.len() > 1 {
            "value out of range"
        } else {
            "invalid syntax"
        };
        format!("strconv.ParseInt: parsing {}: {why}", go_quote(value))
    })?;
    u32::try_from(n).map_err(|_| format!("--retries cannot be negative ({n})"))
}

/// Parses a duration the way Go's `time.ParseDuration` does (`1h30m`, `1.5s`, `300ms`,
/// `-2s`), in nanoseconds.
pub fn parse_go_duration(text: &str) -> Result<i128, String> {
    let invalid = || format!("time: invalid duration {}", go_quote(text));
    let (neg, mut s) = match text.as_bytes().first() {
        Some(b'-') => (true, &text[1..]),
        Some(b'+') => (false, &text[1..]),
        _ => (false, text),
    };
    if s == "0" {
        return Ok(0);
    }
    if s.is_empty() {
        return Err(invalid());
    }
    let mut total: i128 = 0;
    while !s.is_empty() {
        let int_len = s.find(|c: char| !c.is_ascii_digit()).unwrap_or(s.len());
        let whole: i128 = if int_len > 0 { s[..int_len].parse().map_err(|_| invalid())? } else { 0 };
        s = &s[int_len..];
        let (mut frac, mut scale, mut frac_len) = (0i128, 1i128, 0);
        if let Some(rest) = s.strip_prefix('.') {
            frac_len = rest.find(|c: char| !c.is_ascii_digit()).unwrap_or(rest.len());
            for d in rest[..frac_len].bytes().take(18) {
                frac = frac * 10 + i128::from(d - b'0');
                scale *= 10;
            }
            s = &rest[frac_len..];
        }
        if int_len == 0 && frac_len == 0 {
            return Err(invalid());
        }
        let unit_len = s.find(|c: char| c == '.' || c.is_ascii_digit()).unwrap_or(s.len());
        let unit = &s[..unit_len];
        if unit.is_empty() {
            return Err(format!("time: missing unit in duration {}", go_quote(text)));
        }
        let factor: i128 = match unit {
            "ns" => 1,
            "us" | "µs" | "μs" => 1_000,
            "ms" => 1_000_000,
            "s" => 1_000_000_000,
            "m" => 60_000_000_000,
            "h" => 3_600_000_000_000,
            _ => return Err(format!("time: unknown unit {} in duration {}", go_quote(unit), go_quote(text))),
        };
        total += whole * factor + frac * factor / scale;
        if total > i128::from(i64::MAX) {
            return Err(invalid());
        }
        s = &s[unit_len..];
    }
    Ok(if neg { -total } else { total })
}

fn parse_volume(node: &Node) -> Result<Vec<String>, String> {
    at_least_one(&node.args, "VOLUME")?;
    no_flags(node)?;
    node.args
        .iter()
        .map(|v| {
            let v = v.trim();
            if v.is_empty() {
                return Err("VOLUME specified can not be an empty string".to_string());
            }
            Ok(v.to_string())
        })
        .collect()
}

fn parse_arg(args: &[String]) -> Result<Vec<ArgDecl>, String> {
    at_least_one(args, "ARG")?;
    args.iter()
        .map(|arg| match arg.split_once('=') {
            Some(("", _)) => Err("ARG names can not be blank".to_string()),
            Some((name, value)) => Ok(ArgDecl { name: name.to_string(), default: Some(value.to_string()) }),
            None => Ok(ArgDecl { name: arg.clone(), default: None }),
        })
        .collect()
}

fn parse_shell(node: &Node) -> Result<Vec<String>, String> {
    no_flags(node)?;
    if node.args.is_empty() {
        return Err("SHELL requires at least one argument".into());
    }
    if !node.json {
        return Err("SHELL requires the arguments to be in JSON form".into());
    }
    Ok(node.args.clone())
}
