//! `berth runtime ...`: runc's command line, so dockerd/containerd and podman can use berth
//! as their OCI runtime (`berth-runc` symlink, or `--add-runtime berth=/path/to/berth-runc`).

use berth_runtime::container::{self, CreateOpts, ExecOpts};
use berth_runtime::state::Status;
use berth_runtime::{bail, defaults, sealed, Error, Result};
use clap::{Args, Parser, Subcommand, ValueEnum};
use std::io::Write;
use std::path::{Path, PathBuf};

/// berth's OCI runtime, command-line compatible with runc.
#[derive(Parser, Debug)]
#[command(
    name = "berth runtime",
    version,
    about = "Run containers from OCI bundles (runc-compatible command line)",
    long_about = "Run containers from OCI runtime-spec bundles.\n\n\
        The command line follows runc's, so dockerd (--add-runtime), containerd and podman \
        (--runtime) can drive berth as their OCI runtime. Container state lives under --root \
        (default /run/berth), one directory per container."
)]
pub struct RuntimeCli {
    /// Directory for container state
    #[arg(long, global = true, default_value = "/run/berth", value_name = "DIR")]
    root: PathBuf,
    /// Also write errors to this file (runc's --log)
    #[arg(long, global = true, value_name = "FILE")]
    log: Option<PathBuf>,
    /// Format of --log lines
    #[arg(long, global = true, value_enum, default_value_t = LogFormat::Text)]
    log_format: LogFormat,
    /// Log more (accepted for runc compatibility)
    #[arg(long, global = true)]
    debug: bool,
    /// Use systemd to manage cgroups (not supported: refused)
    #[arg(long, global = true)]
    systemd_cgroup: bool,
    /// Accepted for runc compatibility; must be empty
    #[arg(long, global = true, hide = true)]
    criu: Option<String>,
    /// Accepted for runc compatibility (rootless detection is automatic): only "auto" or "false"
    #[arg(long, global = true, hide = true)]
    rootless: Option<String>,
    #[command(subcommand)]
    cmd: Cmd,
}

#[derive(Clone, Copy, Debug, ValueEnum, PartialEq)]
enum LogFormat {
    Text,
    Json,
}

#[derive(Subcommand, Debug)]
enum Cmd {
    /// Create a container from a bundle; its process waits for `start`
    Create(CreateArgs),
    /// Start the user process of a created container
    Start { id: String },
    /// Create and start a container, then wait for it (unless --detach)
    Run {
        #[command(flatten)]
        c: CreateArgs,
        /// Return once the process has started
        #[arg(short, long)]
        detach: bool,
        /// Keep the container after it exits (default: delete it)
        #[arg(long)]
        keep: bool,
    },
    /// Print the OCI state of a container as JSON
    State { id: String },
    /// Send a signal (default SIGTERM) to a container's init, or to all its processes
    Kill {
        /// Signal every process in the container's cgroup
        #[arg(short, long)]
        all: bool,
        id: String,
        #[arg(default_value = "SIGTERM")]
        signal: String,
    },
    /// Delete a stopped container (--force: any container)
    Delete {
        #[arg(short, long)]
        force: bool,
        id: String,
    },
    /// Run a new process inside a running container
    Exec(ExecArgs),
    /// List the processes of a container
    Ps {
        #[arg(short, long, value_enum, default_value_t = ListFormat::Table)]
        format: ListFormat,
        id: String,
        /// Arguments passed to ps(1) in table format
        #[arg(trailing_var_arg = true, allow_hyphen_values = true)]
        ps_args: Vec<String>,
    },
    /// List containers
    List {
        #[arg(short, long, value_enum, default_value_t = ListFormat::Table)]
        format: ListFormat,
        /// Print only ids
        #[arg(short, long)]
        quiet: bool,
    },
    /// Freeze every process of a container
    Pause { id: String },
    /// Thaw a paused container
    Resume { id: String },
    /// Change a container's cgroup resources
    Update(UpdateArgs),
    /// Print what this runtime supports (runtime-spec features.md)
    Features,
    /// Write a config.json with Docker-equivalent defaults
    Spec {
        /// Bundle directory to write config.json into
        #[arg(short, long, default_value = ".")]
        bundle: PathBuf,
        /// The process to run
        #[arg(trailing_var_arg = true)]
        args: Vec<String>,
    },
}

#[derive(Clone, Copy, Debug, ValueEnum, PartialEq)]
enum ListFormat {
    Table,
    Json,
}

#[derive(Args, Debug)]
struct CreateArgs {
    /// Bundle directory (holds config.json)
    #[arg(short, long, default_value = ".")]
    bundle: PathBuf,
    /// Write the container's host pid here
    #[arg(long)]
    pid_file: Option<PathBuf>,
    /// Unix socket that receives the pty master (process.terminal)
    #[arg(long)]
    console_socket: Option<PathBuf>,
    /// Pass this many extra fds (from 3 on) into the container
    #[arg(long, default_value_t = 0)]
    preserve_fds: u32,
    /// Use MS_MOVE + chroot instead of pivot_root (for ramfs roots)
    #[arg(long)]
    no_pivot: bool,
    /// Do not create a session keyring (berth never creates one)
    #[arg(long)]
    no_new_keyring: bool,
    id: String,
}

#[derive(Args, Debug)]
struct ExecArgs {
    /// A process.json (runtime-spec Process); replaces the arguments
    #[arg(short, long)]
    process: Option<PathBuf>,
    /// Allocate a pty (needs --console-socket)
    #[arg(short, long)]
    tty: bool,
    /// Return once the process has started
    #[arg(short, long)]
    detach: bool,
    #[arg(long)]
    pid_file: Option<PathBuf>,
    #[arg(long)]
    console_socket: Option<PathBuf>,
    /// Add an environment variable (KEY=VALUE)
    #[arg(short, long)]
    env: Vec<String>,
    /// Working directory inside the container
    #[arg(long)]
    cwd: Option<PathBuf>,
    /// UID[:GID]
    #[arg(short, long)]
    user: Option<String>,
    /// Additional group ids
    #[arg(short = 'g', long)]
    additional_gids: Vec<u32>,
    /// Add a capability
    #[arg(short, long)]
    cap: Vec<String>,
    /// Set no_new_privs
    #[arg(long)]
    no_new_privs: bool,
    #[arg(long, default_value_t = 0)]
    preserve_fds: u32,
    /// Ignored (AppArmor is not used by berth)
    #[arg(long, hide = true)]
    apparmor: Option<String>,
    /// Ignored (SELinux is not used by berth)
    #[arg(long, hide = true)]
    process_label: Option<String>,
    id: String,
    #[arg(trailing_var_arg = true, allow_hyphen_values = true)]
    args: Vec<String>,
}

#[derive(Args, Debug)]
struct UpdateArgs {
    /// A LinuxResources JSON file, or - for stdin
    #[arg(short, long)]
    resources: Option<PathBuf>,
    #[arg(long)]
    memory: Option<String>,
    #[arg(long)]
    memory_reservation: Option<String>,
    #[arg(long)]
    memory_swap: Option<String>,
    #[arg(long)]
    cpu_shares: Option<u64>,
    #[arg(long)]
    cpu_quota: Option<i64>,
    #[arg(long)]
    cpu_period: Option<u64>,
    #[arg(long)]
    cpuset_cpus: Option<String>,
    #[arg(long)]
    cpuset_mems: Option<String>,
    #[arg(long)]
    pids_limit: Option<i64>,
    #[arg(long)]
    blkio_weight: Option<u16>,
    id: String,
}

/// Entry point: parse, run, report errors runc-style (stderr and --log). Returns the exit code.
pub fn main(args: Vec<std::ffi::OsString>) -> i32 {
    let cli = match RuntimeCli::try_parse_from(args) {
        Ok(c) => c,
        Err(e) => {
            let code = if e.use_stderr() { 2 } else { 0 };
            let _ = e.print();
            return code;
        }
    };
    match dispatch(&cli) {
        Ok(code) => code,
        Err(e) => {
            report(&cli, &e);
            1
        }
    }
}

fn report(cli: &RuntimeCli, e: &Error) {
    eprintln!("berth: {e}");
    if let Some(log) = &cli.log {
        let line = match cli.log_format {
            LogFormat::Json => serde_json::json!({
                "level": "error",
                "msg": e.to_string(),
                "time": berth_runtime::state::now_rfc3339(),
            })
            .to_string(),
            LogFormat::Text => {
                format!("time=\"{}\" level=error msg={:?}", berth_runtime::state::now_rfc3339(), e.to_string())
            }
        };
        if let Ok(mut f) = std::fs::OpenOptions::new().create(true).append(true).open(log) {
            let _ = writeln!(f, "{line}");
        }
    }
}

fn dispatch(cli: &RuntimeCli) -> Result<i32> {
    if cli.systemd_cgroup {
        bail!("--systemd-cgroup is not supported: berth manages cgroups directly (cgroupfs); drop the flag");
    }
    if cli.criu.as_deref().is_some_and(|c| !c.is_empty()) {
        bail!("--criu is not supported: berth has no checkpoint/restore");
    }
    if let Some(r) = cli.rootless.as_deref() {
        if r != "auto" && r != "false" {
            bail!("--rootless={r} is not supported: berth runs as root");
        }
    }
    let root = &cli.root;
    match &cli.cmd {
        Cmd::Create(c) => {
            seal()?;
            container::create(&create_opts(root, c))?;
            Ok(0)
        }
        Cmd::Run { c, detach, keep } => {
            seal()?;
            if *keep && !*detach {
                bail!("--keep is only meaningful without --detach; not supported yet");
            }
            let mut o = create_opts(root, c);
            o.detach = *detach;
            container::run(&o)
        }
        Cmd::Start { id } => container::start(root, id).map(|_| 0),
        Cmd::State { id } => {
            let (sd, st) = container::load(root, id)?;
            let s = st.status(&sd);
            println!("{}", serde_json::to_string_pretty(&st.oci_json(s)).unwrap_or_default());
            Ok(0)
        }
        Cmd::Kill { all, id, signal } => {
            let sig = container::parse_signal(signal)?;
            container::kill(root, id, sig, *all).map(|_| 0)
        }
        Cmd::Delete { force, id } => container::delete(root, id, *force).map(|_| 0),
        Cmd::Exec(e) => {
            seal()?;
            exec(root, e)
        }
        Cmd::Ps { format, id, ps_args } => ps(root, id, *format, ps_args),
        Cmd::List { format, quiet } => list(root, *format, *quiet),
        Cmd::Pause { id } => container::pause(root, id).map(|_| 0),
        Cmd::Resume { id } => container::resume(root, id).map(|_| 0),
        Cmd::Update(u) => update(root, u),
        Cmd::Features => {
            println!("{}", serde_json::to_string_pretty(&defaults::features()).unwrap_or_default());
            Ok(0)
        }
        Cmd::Spec { bundle, args } => {
            let path = bundle.join("config.json");
            if path.exists() {
                bail!("{} already exists; remove it first", path.display());
            }
            let args = if args.is_empty() { vec!["sh".to_string()] } else { args.clone() };
            let v = defaults::default_spec(&args);
            std::fs::write(&path, serde_json::to_string_pretty(&v).unwrap_or_default() + "\n")
                .map_err(|e| Error::os(format!("write {}", path.display()), e))?;
            Ok(0)
        }
    }
}

fn seal() -> Result<()> {
    sealed::ensure_sealed().map_err(|e| Error::os("re-exec from a read-only copy of berth (CVE-2019-5736 guard)", e))
}

fn create_opts(root: &Path, c: &CreateArgs) -> CreateOpts {
    let _ = c.no_new_keyring;
    CreateOpts {
        root: root.to_path_buf(),
        id: c.id.clone(),
        bundle: c.bundle.clone(),
        pid_file: c.pid_file.clone(),
        console_socket: c.console_socket.clone(),
        preserve_fds: c.preserve_fds,
        no_pivot: c.no_pivot,
        detach: false,
        notify_started: None,
    }
}

fn exec(root: &Path, e: &ExecArgs) -> Result<i32> {
    let process: oci_spec::runtime::Process = match &e.process {
        Some(p) => {
            let data = std::fs::read(p).map_err(|err| Error::os(format!("read {}", p.display()), err))?;
            serde_json::from_slice(&data)
                .map_err(|err| Error::new(format!("{}: invalid process: {err}", p.display())))?
        }
        None => {
            if e.args.is_empty() {
                bail!("exec: give a command or --process");
            }
            let (sd, _) = container::load(root, &e.id)?;
            let spec = berth_runtime::spec::parse(
                &std::fs::read(sd.config()).map_err(|err| Error::os("read saved config.json", err))?,
            )?;
            let mut p = spec.process().clone().unwrap_or_default();
            p.set_args(Some(e.args.clone()));
            p.set_terminal(Some(e.tty));
            let mut env = p.env().clone().unwrap_or_default();
            env.extend(e.env.iter().cloned());
            p.set_env(Some(env));
            if let Some(c) = &e.cwd {
                p.set_cwd(c.clone());
            }
            if let Some(u) = &e.user {
                let (uid, gid) = match u.split_once(':') {
                    Some((a, b)) => (a, Some(b)),
                    None => (u.as_str(), None),
                };
                let uid: u32 = uid.parse().map_err(|_| Error::new(format!("--user {u:?}: want UID[:GID]")))?;
                p.user_mut().set_uid(uid);
                if let Some(g) = gid {
                    let gid: u32 = g.parse().map_err(|_| Error::new(format!("--user {u:?}: want UID[:GID]")))?;
                    p.user_mut().set_gid(gid);
                }
            }
            if !e.additional_gids.is_empty() {
                p.user_mut().set_additional_gids(Some(e.additional_gids.clone()));
            }
            if !e.cap.is_empty() {
                let mut caps = p.capabilities().clone().unwrap_or_default();
                for c in &e.cap {
                    let cap: oci_spec::runtime::Capability =
                        serde_json::from_value(serde_json::Value::String(c.clone()))
                            .map_err(|_| Error::new(format!("--cap {c:?}: unknown capability")))?;
                    for set in [caps.bounding(), caps.effective(), caps.permitted()] {
                        let _ = set;
                    }
                    let add = |s: &Option<oci_spec::runtime::Capabilities>| {
                        let mut s = s.clone().unwrap_or_default();
                        s.insert(cap);
                        Some(s)
                    };
                    let (b, ef, pe) = (add(caps.bounding()), add(caps.effective()), add(caps.permitted()));
                    caps.set_bounding(b);
                    caps.set_effective(ef);
                    caps.set_permitted(pe);
                }
                p.set_capabilities(Some(caps));
            }
            if e.no_new_privs {
                p.set_no_new_privileges(Some(true));
            }
            p
        }
    };
    let mut process = process;
    if e.tty {
        process.set_terminal(Some(true));
    }
    container::exec(&ExecOpts {
        root: root.to_path_buf(),
        id: e.id.clone(),
        process,
        console_socket: e.console_socket.clone(),
        pid_file: e.pid_file.clone(),
        detach: e.detach,
        preserve_fds: e.preserve_fds,
        notify_started: None,
    })
}

fn ps(root: &Path, id: &str, format: ListFormat, ps_args: &[String]) -> Result<i32> {
    let (_, st) = container::load(root, id)?;
    let pids = berth_cgroups::Manager::from_state(st.cgroup.clone()).pids()?;
    if format == ListFormat::Json {
        println!("{}", serde_json::to_string(&pids).unwrap_or_default());
        return Ok(0);
    }
    let args = if ps_args.is_empty() { vec!["-ef".to_string()] } else { ps_args.to_vec() };
    let out = std::process::Command::new("ps").args(&args).output().map_err(|e| Error::os("run ps", e))?;
    if !out.status.success() {
        bail!("ps {}: {}", args.join(" "), String::from_utf8_lossy(&out.stderr).trim());
    }
    let text = String::from_utf8_lossy(&out.stdout);
    let mut lines = text.lines();
    let header = lines.next().unwrap_or_default();
    let col = header.split_whitespace().position(|h| h == "PID");
    let Some(col) = col else {
        bail!("ps output has no PID column");
    };
    println!("{header}");
    for l in lines {
        if let Some(p) = l.split_whitespace().nth(col).and_then(|p| p.parse::<i32>().ok()) {
            if pids.contains(&p) {
                println!("{l}");
            }
        }
    }
    Ok(0)
}

fn list(root: &Path, format: ListFormat, quiet: bool) -> Result<i32> {
    let all = container::list(root)?;
    if quiet {
        for (st, _) in &all {
            println!("{}", st.id);
        }
        return Ok(0);
    }
    if format == ListFormat::Json {
        let v: Vec<_> = all.iter().map(|(st, s)| st.oci_json(*s)).collect();
        println!("{}", serde_json::to_string(&v).unwrap_or_default());
        return Ok(0);
    }
    let rows: Vec<[String; 6]> = all
        .iter()
        .map(|(st, s)| {
            [
                st.id.clone(),
                if *s == Status::Stopped { "0".into() } else { st.pid.to_string() },
                s.as_str().to_string(),
                st.bundle.display().to_string(),
                st.created.clone(),
                if st.owner.is_empty() { "root".into() } else { st.owner.clone() },
            ]
        })
        .collect();
    crate::table::print(&["ID", "PID", "STATUS", "BUNDLE", "CREATED", "OWNER"], &rows);
    Ok(0)
}

fn parse_bytes(s: &str) -> Result<i64> {
    if s == "-1" {
        return Ok(-1);
    }
    let t = s.trim().to_ascii_lowercase();
    let (num, mult) = match t.trim_end_matches('b').chars().last() {
        Some('k') => (&t[..t.trim_end_matches('b').len() - 1], 1i64 << 10),
        Some('m') => (&t[..t.trim_end_matches('b').len() - 1], 1 << 20),
        Some('g') => (&t[..t.trim_end_matches('b').len() - 1], 1 << 30),
        _ => (t.trim_end_matches('b'), 1),
    };
    num.parse::<i64>().map(|n| n * mult).map_err(|_| Error::new(format!("invalid size {s:?}")))
}

fn update(root: &Path, u: &UpdateArgs) -> Result<i32> {
    use oci_spec::runtime::{LinuxBlockIo, LinuxCpu, LinuxPids, LinuxResources};
    let (sd, st) = container::load(root, &u.id)?;
    if st.status(&sd) == Status::Stopped {
        bail!("container {:?} is stopped", u.id);
    }
    let mut r: LinuxResources = match &u.resources {
        Some(p) => {
            let data = if p.as_os_str() == "-" {
                let mut v = Vec::new();
                std::io::Read::read_to_end(&mut std::io::stdin(), &mut v).map_err(|e| Error::os("read stdin", e))?;
                v
            } else {
                std::fs::read(p).map_err(|e| Error::os(format!("read {}", p.display()), e))?
            };
            serde_json::from_slice(&data).map_err(|e| Error::new(format!("--resources: invalid JSON: {e}")))?
        }
        None => LinuxResources::default(),
    };
    if u.memory.is_some() || u.memory_reservation.is_some() || u.memory_swap.is_some() {
        let mut m = r.memory().unwrap_or_default();
        if let Some(v) = &u.memory {
            m.set_limit(Some(parse_bytes(v)?));
        }
        if let Some(v) = &u.memory_reservation {
            m.set_reservation(Some(parse_bytes(v)?));
        }
        if let Some(v) = &u.memory_swap {
            m.set_swap(Some(parse_bytes(v)?));
        }
        r.set_memory(Some(m));
    }
    if u.cpu_shares.is_some()
        || u.cpu_quota.is_some()
        || u.cpu_period.is_some()
        || u.cpuset_cpus.is_some()
        || u.cpuset_mems.is_some()
    {
        let mut c: LinuxCpu = r.cpu().clone().unwrap_or_default();
        if let Some(v) = u.cpu_shares {
            c.set_shares(Some(v));
        }
        if let Some(v) = u.cpu_quota {
            c.set_quota(Some(v));
        }
        if let Some(v) = u.cpu_period {
            c.set_period(Some(v));
        }
        if let Some(v) = &u.cpuset_cpus {
            c.set_cpus(Some(v.clone()));
        }
        if let Some(v) = &u.cpuset_mems {
            c.set_mems(Some(v.clone()));
        }
        r.set_cpu(Some(c));
    }
    if let Some(p) = u.pids_limit {
        let mut pids = LinuxPids::default();
        pids.set_limit(p);
        r.set_pids(Some(pids));
    }
    if let Some(w) = u.blkio_weight {
        let mut b: LinuxBlockIo = r.block_io().clone().unwrap_or_default();
        b.set_weight(Some(w));
        r.set_block_io(Some(b));
    }
    let mgr = berth_cgroups::Manager::from_state(st.cgroup.clone());
    mgr.validate(&r)?;
    mgr.apply(&r)?;
    Ok(0)
}
