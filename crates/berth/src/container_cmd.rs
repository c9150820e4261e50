//! Container verbs (`run create start stop kill restart rm ps logs exec inspect wait top
//! pause unpause rename port`), `volume ...` and `info`: Docker's flags, spoken to the daemon
//! over the Engine API (so they behave as `docker` does against Berth).

use crate::client::{demux, enc, filters_json, ApiErr, Client, Fail, R};
use crate::table::{ago, trunc_id};
use crate::template::{align, plain, print_formatted, Template};
use clap::{Args, Parser, Subcommand};
use serde_json::{json, Map, Value};
use std::ffi::OsString;
use std::io::{Read, Write};

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
    /// Create and run a new container from an image
    #[command(disable_help_flag = true)]
    Run(RunArgs),
    /// Create a new container (without starting it)
    #[command(disable_help_flag = true)]
    Create(RunArgs),
    /// Start one or more stopped containers
    Start {
        /// Attach stdout/stderr and wait for the container's exit
        #[arg(short, long)]
        attach: bool,
        #[arg(required = true)]
        containers: Vec<String>,
    },
    /// Stop one or more running containers (the stop signal, then SIGKILL after the timeout)
    Stop(StopArgs),
    /// Restart one or more containers
    Restart(StopArgs),
    /// Kill one or more running containers
    Kill {
        /// Signal to send (name or number)
        #[arg(short, long, default_value = "KILL")]
        signal: String,
        #[arg(required = true)]
        containers: Vec<String>,
    },
    /// Remove one or more containers
    Rm {
        /// Kill and remove a running container
        #[arg(short, long)]
        force: bool,
        /// Remove the container's anonymous volumes too
        #[arg(short, long)]
        volumes: bool,
        #[arg(required = true)]
        containers: Vec<String>,
    },
    /// List containers
    Ps(PsArgs),
    /// Fetch the logs of a container
    Logs(LogsArgs),
    /// Run a command in a running container
    Exec(ExecArgs),
    /// Display detailed information on containers, images or volumes
    Inspect {
        /// Go-template subset (e.g. '{{.State.Status}}') or 'json'
        #[arg(short, long)]
        format: Option<String>,
        #[arg(required = true)]
        names: Vec<String>,
    },
    /// Attach local standard input, output, and error to a running container
    Attach {
        /// Do not attach STDIN
        #[arg(long)]
        no_stdin: bool,
        container: String,
    },
    /// Block until containers stop, then print their exit codes
    Wait {
        #[arg(required = true)]
        containers: Vec<String>,
    },
    /// Display the running processes of a container
    Top {
        container: String,
        /// ps options (default -ef)
        #[arg(trailing_var_arg = true, allow_hyphen_values = true)]
        ps_args: Vec<String>,
    },
    /// Pause all processes within one or more containers
    Pause {
        #[arg(required = true)]
        containers: Vec<String>,
    },
    /// Unpause all processes within one or more containers
    Unpause {
        #[arg(required = true)]
        containers: Vec<String>,
    },
    /// Rename a container
    Rename { container: String, new_name: String },
    /// List port mappings of a container, or the host addresses of one port
    Port {
        container: String,
        /// PRIVATE_PORT[/PROTO] (tcp if omitted)
        port: Option<String>,
    },
    /// Manage volumes
    #[command(subcommand)]
    Volume(VolumeCmd),
    /// Manage networks (the built-in bridge, host and none; user-defined ones are not done yet)
    #[command(subcommand)]
    Network(NetworkCmd),
    /// Display a live view of containers' resource usage (--no-stream: one reading)
    Stats {
        /// Show one reading and exit instead of the live view
        #[arg(long)]
        no_stream: bool,
        /// Show all containers (default shows just running)
        #[arg(short, long)]
        all: bool,
        /// Format: table, json, or a Go-template subset
        #[arg(long)]
        format: Option<String>,
        containers: Vec<String>,
    },
    /// Get real-time events from the daemon
    Events {
        /// Show events created since this time (RFC 3339, unix seconds, or a duration like 10m)
        #[arg(long)]
        since: Option<String>,
        /// Stream events until this time
        #[arg(long)]
        until: Option<String>,
        /// Filter output (type=, event=, container=, image=, volume=, label=)
        #[arg(short, long)]
        filter: Vec<String>,
        /// Format: json, or a Go-template subset
        #[arg(long)]
        format: Option<String>,
    },
    /// Copy files between a container and the local filesystem (CONTAINER:PATH and a local path)
    Cp {
        /// Archive mode: keep uid/gid of the files copied in
        #[arg(short, long)]
        archive: bool,
        src: String,
        dst: String,
    },
    /// Create a new image from a container's changes
    #[command(long_about = COMMIT_LONG)]
    Commit(CommitArgs),
    /// Display system-wide information from the daemon
    Info {
        #[arg(short, long)]
        format: Option<String>,
    },
}

const COMMIT_LONG: &str = "Create a new image from a container's changes; prints its ID.\n\n\
    The image is the container's image with one more layer (what the container changed in its \
    root filesystem; volumes and other mounts are not included) and the container's config. \
    --change applies a Dockerfile instruction to that config: CMD, ENTRYPOINT, ENV, EXPOSE, LABEL, \
    ONBUILD, STOPSIGNAL, USER, VOLUME, WORKDIR (e.g. -c 'CMD [\"sh\"]'). A running container is \
    paused while its changes are read unless --pause=false.";

#[derive(Args, Debug)]
struct CommitArgs {
    /// Author (e.g. "John Hannibal Smith <hannibal@a-team.com>")
    #[arg(short, long)]
    author: Option<String>,
    /// Apply Dockerfile instruction to the created image (repeatable)
    #[arg(short, long = "change")]
    changes: Vec<String>,
    /// Commit message
    #[arg(short, long)]
    message: Option<String>,
    /// Pause container during commit (--pause=false to not)
    #[arg(short, long, default_value_t = true, action = clap::ArgAction::Set, num_args = 0..=1,
          require_equals = true, default_missing_value = "true")]
    pause: bool,
    /// The container (name or ID)
    container: String,
    /// REPOSITORY[:TAG] to give the image
    reference: Option<String>,
}

#[derive(Args, Debug)]
struct StopArgs {
    /// Seconds to wait before killing the container
    #[arg(short = 't', long = "time", alias = "timeout")]
    time: Option<i64>,
    /// Signal to send instead of the container's stop signal
    #[arg(short, long)]
    signal: Option<String>,
    #[arg(required = true)]
    containers: Vec<String>,
}

#[derive(Args, Debug)]
struct PsArgs {
    /// Show all containers (default shows just running)
    #[arg(short, long)]
    all: bool,
    /// Only display container IDs
    #[arg(short, long)]
    quiet: bool,
    /// Filter output (label=, name=, id=, status=, ancestor=, exited=)
    #[arg(short, long)]
    filter: Vec<String>,
    /// Format: table, json, or a Go-template subset ('table {{.Names}}\t{{.Status}}')
    #[arg(long)]
    format: Option<String>,
    /// Show n last created containers
    #[arg(short = 'n', long)]
    last: Option<usize>,
    /// Show the latest created container
    #[arg(short, long)]
    latest: bool,
    /// Don't truncate output
    #[arg(long)]
    no_trunc: bool,
}

#[derive(Args, Debug)]
struct LogsArgs {
    /// Follow log output
    #[arg(short, long)]
    follow: bool,
    /// Number of lines to show from the end of the logs ("all" for every line)
    #[arg(short = 'n', long, default_value = "all")]
    tail: String,
    /// Show logs since a time (RFC 3339, unix seconds, or a duration like 10m)
    #[arg(long)]
    since: Option<String>,
    /// Show logs before a time (as --since)
    #[arg(long)]
    until: Option<String>,
    /// Show timestamps
    #[arg(short, long)]
    timestamps: bool,
    container: String,
}

#[derive(Args, Debug)]
struct ExecArgs {
    /// Detached mode: run the command in the background
    #[arg(short, long)]
    detach: bool,
    /// Keep STDIN open
    #[arg(short, long)]
    interactive: bool,
    /// Allocate a pseudo-TTY
    #[arg(short, long)]
    tty: bool,
    /// Set environment variables
    #[arg(short, long)]
    env: Vec<String>,
    /// Username or UID (format: <name|uid>[:<group|gid>])
    #[arg(short, long)]
    user: Option<String>,
    /// Working directory inside the container
    #[arg(short, long)]
    workdir: Option<String>,
    container: String,
    #[arg(required = true, trailing_var_arg = true, allow_hyphen_values = true)]
    command: Vec<String>,
}

#[derive(Args, Debug)]
struct RunArgs {
    /// Print help
    #[arg(long, action = clap::ArgAction::Help)]
    help: Option<bool>,
    /// Run in the background and print the container ID
    #[arg(short, long)]
    detach: bool,
    /// Keep STDIN open
    #[arg(short, long)]
    interactive: bool,
    /// Allocate a pseudo-TTY
    #[arg(short, long)]
    tty: bool,
    /// Remove the container (and its anonymous volumes) when it exits
    #[arg(long)]
    rm: bool,
    /// Assign a name to the container
    #[arg(long)]
    name: Option<String>,
    /// Set environment variables (KEY=VALUE, or KEY to pass this shell's value)
    #[arg(short, long)]
    env: Vec<String>,
    /// Read environment variables from a file (KEY=VALUE lines, # comments)
    #[arg(long)]
    env_file: Vec<String>,
    /// Bind mount or volume: SRC:DST[:OPTS] (SRC a host path or volume name), or DST for an anonymous volume
    #[arg(short, long)]
    volume: Vec<String>,
    /// Attach a filesystem mount: type=bind|volume|tmpfs,source=...,target=...[,readonly]...
    #[arg(long)]
    mount: Vec<String>,
    /// Mount a tmpfs directory: DST[:OPTS]
    #[arg(long)]
    tmpfs: Vec<String>,
    /// Publish a container's port: [ip:][hostPort:]containerPort[/proto]
    #[arg(short, long)]
    publish: Vec<String>,
    /// Publish every exposed port to a random host port
    #[arg(short = 'P', long)]
    publish_all: bool,
    /// Connect the container to a network (bridge, host, none, or one made by `network create`)
    #[arg(long, alias = "net")]
    network: Option<String>,
    /// A name the container answers to on its (user-defined) network
    #[arg(long, alias = "net-alias")]
    network_alias: Vec<String>,
    /// Set a custom DNS server
    #[arg(long)]
    dns: Vec<String>,
    /// Set a DNS search domain
    #[arg(long)]
    dns_search: Vec<String>,
    /// Set a DNS option
    #[arg(long, alias = "dns-opt")]
    dns_option: Vec<String>,
    /// Add a custom host-to-IP mapping (host:ip; host-gateway: the network's gateway)
    #[arg(long)]
    add_host: Vec<String>,
    /// Working directory inside the container
    #[arg(short, long)]
    workdir: Option<String>,
    /// Username or UID (format: <name|uid>[:<group|gid>])
    #[arg(short, long)]
    user: Option<String>,
    /// Overwrite the image's entrypoint
    #[arg(long)]
    entrypoint: Option<String>,
    /// Memory limit (e.g. 64m, 1g)
    #[arg(short, long)]
    memory: Option<String>,
    /// Number of CPUs (e.g. 1.5)
    #[arg(long)]
    cpus: Option<f64>,
    /// CPU shares (relative weight)
    #[arg(short = 'c', long)]
    cpu_shares: Option<i64>,
    /// Tune the container's pids limit
    #[arg(long)]
    pids_limit: Option<i64>,
    /// Restart policy: no, always, unless-stopped, on-failure[:max-retries]
    #[arg(long)]
    restart: Option<String>,
    /// Set metadata (KEY=VALUE)
    #[arg(short, long)]
    label: Vec<String>,
    /// Container host name
    #[arg(short = 'h', long)]
    hostname: Option<String>,
    /// Mount the container's root filesystem as read only
    #[arg(long)]
    read_only: bool,
    /// Run a minimal init as pid 1 (reaps orphans, forwards signals)
    #[arg(long)]
    init: bool,
    /// Give extended privileges: every capability held, no seccomp, host devices
    #[arg(long)]
    privileged: bool,
    /// Ulimit options: NAME=SOFT[:HARD] (e.g. nofile=1024:2048)
    #[arg(long)]
    ulimit: Vec<String>,
    /// Add a host device: HOST[:CONTAINER][:PERMISSIONS]
    #[arg(long)]
    device: Vec<String>,
    /// Add Linux capabilities
    #[arg(long)]
    cap_add: Vec<String>,
    /// Drop Linux capabilities
    #[arg(long)]
    cap_drop: Vec<String>,
    /// Signal to stop the container
    #[arg(long)]
    stop_signal: Option<String>,
    /// Timeout (in seconds) to stop a container
    #[arg(long)]
    stop_timeout: Option<i64>,
    /// Log driver options (max-size, max-file)
    #[arg(long)]
    log_opt: Vec<String>,
    /// Command to run to check health
    #[arg(long)]
    health_cmd: Option<String>,
    /// Time between running the check (e.g. 30s)
    #[arg(long)]
    health_interval: Option<String>,
    /// Consecutive failures needed to report unhealthy
    #[arg(long)]
    health_retries: Option<i64>,
    /// Maximum time to allow one check to run (e.g. 30s)
    #[arg(long)]
    health_timeout: Option<String>,
    /// Disable any container-specified HEALTHCHECK
    #[arg(long)]
    no_healthcheck: bool,
    /// Pull image before running: missing, always, never
    #[arg(long, default_value = "missing")]
    pull: String,
    image: String,
    #[arg(trailing_var_arg = true, allow_hyphen_values = true)]
    command: Vec<String>,
}

#[derive(Subcommand, Debug)]
enum NetworkCmd {
    /// List networks
    #[command(alias = "list")]
    Ls {
        /// Only display network IDs
        #[arg(short, long)]
        quiet: bool,
        /// Do not truncate the output
        #[arg(long)]
        no_trunc: bool,
        /// Format: table, json, or a Go-template subset
        #[arg(long)]
        format: Option<String>,
    },
    /// Display detailed information on networks
    Inspect {
        #[arg(short, long)]
        format: Option<String>,
        #[arg(required = true)]
        names: Vec<String>,
    },
    /// Create a bridge network
    Create {
        name: String,
        #[arg(short, long, default_value = "bridge")]
        driver: String,
        #[arg(long)]
        subnet: Option<String>,
        #[arg(long)]
        gateway: Option<String>,
        #[arg(long)]
        internal: bool,
        #[arg(long)]
        label: Vec<String>,
    },
    /// Remove networks
    #[command(alias = "remove")]
    Rm {
        #[arg(required = true)]
        names: Vec<String>,
    },
    /// Connect a container to a network (now if it runs, else when it starts)
    Connect {
        /// Add a network-scoped alias for the container
        #[arg(long = "alias")]
        aliases: Vec<String>,
        network: String,
        container: String,
    },
    /// Disconnect a container from a network
    Disconnect {
        /// Accepted for docker compatibility (disconnecting never needs forcing here)
        #[arg(short, long)]
        force: bool,
        network: String,
        container: String,
    },
    /// Remove all networks no container uses
    Prune {
        /// Do not prompt for confirmation
        #[arg(short, long)]
        force: bool,
    },
}

#[derive(Subcommand, Debug)]
enum VolumeCmd {
    /// Create a volume
    Create {
        /// Volume name (random if omitted)
        name: Option<String>,
        /// Volume driver
        #[arg(short, long, default_value = "local")]
        driver: String,
        /// Set metadata (KEY=VALUE)
        #[arg(long)]
        label: Vec<String>,
        /// Driver options
        #[arg(short, long)]
        opt: Vec<String>,
    },
    /// List volumes
    #[command(alias = "list")]
    Ls {
        /// Only display volume names
        #[arg(short, long)]
        quiet: bool,
        /// Filter output (name=, label=, dangling=)
        #[arg(short, long)]
        filter: Vec<String>,
        /// Format: table, json, or a Go-template subset
        #[arg(long)]
        format: Option<String>,
    },
    /// Display detailed information on volumes
    Inspect {
        #[arg(short, long)]
        format: Option<String>,
        #[arg(required = true)]
        names: Vec<String>,
    },
    /// Remove volumes
    #[command(alias = "remove")]
    Rm {
        /// Ignored (as Docker's)
        #[arg(short, long)]
        force: bool,
        #[arg(required = true)]
        names: Vec<String>,
    },
    /// Remove unused volumes (anonymous ones; named too with --all)
    Prune {
        /// Remove all unused volumes, not just anonymous ones
        #[arg(short, long)]
        all: bool,
        /// Do not prompt for confirmation
        #[arg(short, long)]
        force: bool,
        #[arg(long)]
        filter: Vec<String>,
    },
}

pub fn main(args: Vec<OsString>) -> i32 {
    let cli = match Cli::try_parse_from(args) {
        Ok(c) => c,
        Err(e) => {
            let _ = e.print();
            return if e.use_stderr() { 125 } else { 0 };
        }
    };
    let client = Client::new(cli.host.as_deref());
    match dispatch(&client, cli.cmd) {
        Ok(code) => code,
        Err(Fail(code, msg)) => {
            if !msg.is_empty() {
                eprintln!("berth: {msg}");
            }
            code
        }
    }
}

fn dispatch(c: &Client, cmd: Cmd) -> R<i32> {
    match cmd {
        Cmd::Run(a) => run(c, a),
        Cmd::Create(a) => {
            let id = create(c, &a).map_err(|e| Fail(125, e.1))?;
            println!("{id}");
            Ok(0)
        }
        Cmd::Start { attach, containers } => {
            if attach {
                let [one] = containers.as_slice() else {
                    return Err(Fail(1, "you cannot start and attach multiple containers at once".into()));
                };
                return start_attached(c, one);
            }
            each(&containers, |n| c.call("POST", &format!("/containers/{}/start", enc(n)), None).map(|_| ()))
        }
        Cmd::Stop(a) => stop_like(c, "stop", a),
        Cmd::Restart(a) => stop_like(c, "restart", a),
        Cmd::Kill { signal, containers } => each(&containers, |n| {
            c.call("POST", &format!("/containers/{}/kill?signal={}", enc(n), enc(&signal)), None).map(|_| ())
        }),
        Cmd::Rm { force, volumes, containers } => each(&containers, |n| {
            c.call("DELETE", &format!("/containers/{}?force={force}&v={volumes}", enc(n)), None).map(|_| ())
        }),
        Cmd::Pause { containers } => {
            each(&containers, |n| c.call("POST", &format!("/containers/{}/pause", enc(n)), None).map(|_| ()))
        }
        Cmd::Unpause { containers } => {
            each(&containers, |n| c.call("POST", &format!("/containers/{}/unpause", enc(n)), None).map(|_| ()))
        }
        Cmd::Rename { container, new_name } => {
            c.call("POST", &format!("/containers/{}/rename?name={}", enc(&container), enc(&new_name)), None)?;
            Ok(0)
        }
        Cmd::Ps(a) => ps(c, a),
        Cmd::Commit(a) => commit(c, a),
        Cmd::Attach { no_stdin, container } => attach(c, no_stdin, &container),
        Cmd::Logs(a) => logs(c, a),
        Cmd::Exec(a) => exec(c, a),
        Cmd::Inspect { format, names } => inspect(c, format, &names),
        Cmd::Wait { containers } => {
            let mut code = 0;
            for n in &containers {
                match wait(c, n, "not-running") {
                    Ok(s) => println!("{s}"),
                    Err(e) => {
                        eprintln!("berth: {}", e.1);
                        code = 1;
                    }
                }
            }
            Ok(code)
        }
        Cmd::Top { container, ps_args } => {
            let q = if ps_args.is_empty() { String::new() } else { format!("?ps_args={}", enc(&ps_args.join(" "))) };
            let v = c.get(&format!("/containers/{}/top{q}", enc(&container)))?;
            let mut rows = vec![v["Titles"]
                .as_array()
                .map(|t| t.iter().map(plain).collect::<Vec<_>>().join("\t"))
                .unwrap_or_default()];
            for p in v["Processes"].as_array().cloned().unwrap_or_default() {
                rows.push(p.as_array().map(|r| r.iter().map(plain).collect::<Vec<_>>().join("\t")).unwrap_or_default());
            }
            print!("{}", align(&rows));
            Ok(0)
        }
        Cmd::Port { container, port } => {
            let v = c.get(&format!("/containers/{}/json", enc(&container)))?;
            let want = port.map(|p| if p.contains('/') { p } else { format!("{p}/tcp") });
            let mut found = false;
            if let Some(ports) = v["NetworkSettings"]["Ports"].as_object() {
                for (p, binds) in ports {
                    for b in binds.as_array().cloned().unwrap_or_default() {
                        match &want {
                            Some(w) if w == p => println!("{}:{}", plain(&b["HostIp"]), plain(&b["HostPort"])),
                            Some(_) => continue,
                            None => println!("{p} -> {}:{}", plain(&b["HostIp"]), plain(&b["HostPort"])),
                        }
                        found = true;
                    }
                }
            }
            match want {
                Some(w) if !found => Err(Fail(1, format!("no public port '{w}' published for {container}"))),
                _ => Ok(0),
            }
        }
        Cmd::Volume(v) => volume(c, v),
        Cmd::Network(n) => network(c, n),
        Cmd::Stats { no_stream, all, format, containers } => stats(c, no_stream, all, format, containers),
        Cmd::Events { since, until, filter, format } => events(c, since, until, filter, format),
        Cmd::Cp { archive, src, dst } => cp(c, archive, &src, &dst),
        Cmd::Info { format } => {
            let v = c.get("/info")?;
            if let Some(f) = format {
                print_formatted(&f, &[v], None)?;
                return Ok(0);
            }
            println!("Server:");
            for (k, label) in [
                ("ServerVersion", "Server Version"),
                ("Containers", "Containers"),
                ("ContainersRunning", " Running"),
                ("ContainersPaused", " Paused"),
                ("ContainersStopped", " Stopped"),
                ("Images", "Images"),
                ("Driver", "Storage Driver"),
                ("LoggingDriver", "Logging Driver"),
                ("CgroupDriver", "Cgroup Driver"),
                ("CgroupVersion", "Cgroup Version"),
                ("KernelVersion", "Kernel Version"),
                ("OperatingSystem", "Operating System"),
                ("Architecture", "Architecture"),
                ("NCPU", "CPUs"),
                ("MemTotal", "Total Memory"),
                ("DockerRootDir", "Root Dir"),
            ] {
                println!(" {label}: {}", plain(&v[k]));
            }
            Ok(0)
        }
    }
}

/// Apply `f` to each name; print the name on success, the error otherwise (exit 1 if any).
fn each(names: &[String], f: impl Fn(&str) -> Result<(), ApiErr>) -> R<i32> {
    let mut code = 0;
    for n in names {
        match f(n) {
            Ok(()) => println!("{n}"),
            Err(e) => {
                eprintln!("berth: {e}");
                code = 1;
            }
        }
    }
    Ok(code)
}

fn stop_like(c: &Client, verb: &str, a: StopArgs) -> R<i32> {
    let mut q = Vec::new();
    if let Some(t) = a.time {
        q.push(format!("t={t}"));
    }
    if let Some(s) = &a.signal {
        q.push(format!("signal={}", enc(s)));
    }
    let q = if q.is_empty() { String::new() } else { format!("?{}", q.join("&")) };
    each(&a.containers, |n| c.call("POST", &format!("/containers/{}/{verb}{q}", enc(n)), None).map(|_| ()))
}

/// Docker's byte sizes for flags: 64m, 1g, 512k, 100 (bytes).
fn parse_bytes(s: &str) -> Result<i64, String> {
    let t = s.trim().to_ascii_lowercase();
    let t = t.trim_end_matches('b');
    let (num, mult) = match t.chars().last() {
        Some('k') => (&t[..t.len() - 1], 1i64 << 10),
        Some('m') => (&t[..t.len() - 1], 1 << 20),
        Some('g') => (&t[..t.len() - 1], 1 << 30),
        Some('t') => (&t[..t.len() - 1], 1 << 40),
        _ => (t, 1),
    };
    let n: f64 = num.parse().map_err(|_| format!("invalid size: {s:?}"))?;
    if n < 0.0 {
        return Err(format!("invalid size: {s:?}"));
    }
    Ok((n * mult as f64) as i64)
}

/// Go durations as Docker's flags take them: 30s, 1m30s, 500ms, 2h.
fn parse_duration_ns(s: &str) -> Result<i64, String> {
    let mut total = 0f64;
    let mut num = String::new();
    let mut chars = s.chars().peekable();
    let mut any = false;
    while let Some(ch) = chars.next() {
        if ch.is_ascii_digit() || ch == '.' {
            num.push(ch);
            continue;
        }
        let mut unit = ch.to_string();
        while let Some(&n) = chars.peek() {
            if n.is_ascii_alphabetic() {
                unit.push(n);
                chars.next();
            } else {
                break;
            }
        }
        let v: f64 = num.parse().map_err(|_| format!("invalid duration {s:?}"))?;
        let mult = match unit.as_str() {
            "ns" => 1.0,
            "us" | "µs" => 1e3,
            "ms" => 1e6,
            "s" => 1e9,
            "m" => 60e9,
            "h" => 3600e9,
            _ => return Err(format!("invalid duration {s:?}: unknown unit {unit:?}")),
        };
        total += v * mult;
        num.clear();
        any = true;
    }
    if !num.is_empty() || !any {
        return Err(format!("invalid duration {s:?}: missing unit"));
    }
    Ok(total as i64)
}

fn kv_map(items: &[String]) -> Map<String, Value> {
    let mut m = Map::new();
    for l in items {
        let (k, v) = l.split_once('=').unwrap_or((l.as_str(), ""));
        m.insert(k.to_string(), json!(v));
    }
    m
}

/// The create request Docker's CLI would send for these flags.
fn create_body(a: &RunArgs) -> Result<Value, String> {
    let mut env = Vec::new();
    for f in &a.env_file {
        let text = std::fs::read_to_string(f).map_err(|e| format!("open {f}: {e}"))?;
        for l in text.lines() {
            let l = l.trim_start();
            if l.is_empty() || l.starts_with('#') {
                continue;
            }
            env.push(l.to_string());
        }
    }
    env.extend(a.env.iter().cloned());
    let env: Vec<String> = env
        .into_iter()
        .filter_map(|e| if e.contains('=') { Some(e) } else { std::env::var(&e).ok().map(|v| format!("{e}={v}")) })
        .collect();
    let mut host = json!({
        "Binds": [], "AutoRemove": a.rm, "ReadonlyRootfs": a.read_only,
        "NetworkMode": a.network.clone().unwrap_or_else(|| "default".into()),
        "RestartPolicy": {"Name": "no", "MaximumRetryCount": 0},
        "LogConfig": {"Type": "", "Config": kv_map(&a.log_opt)},
    });
    let mut volumes = Map::new();
    let mut binds = Vec::new();
    for v in &a.volume {
        if v.contains(':') {
            binds.push(json!(v));
        } else {
            volumes.insert(v.clone(), json!({}));
        }
    }
    host["Binds"] = json!(binds);
    let mut mounts = Vec::new();
    for m in &a.mount {
        let mut o = json!({"Type": "volume"});
        for kv in m.split(',') {
            let (k, v) = kv.split_once('=').unwrap_or((kv, ""));
            match k {
                "type" => o["Type"] = json!(v),
                "source" | "src" => o["Source"] = json!(v),
                "target" | "destination" | "dst" => o["Target"] = json!(v),
                "readonly" | "ro" => o["ReadOnly"] = json!(v.is_empty() || v == "true" || v == "1"),
                "bind-propagation" => o["BindOptions"]["Propagation"] = json!(v),
                "volume-nocopy" => o["VolumeOptions"]["NoCopy"] = json!(v.is_empty() || v == "true"),
                "tmpfs-size" => o["TmpfsOptions"]["SizeBytes"] = json!(parse_bytes(v)?),
                "tmpfs-mode" => {
                    o["TmpfsOptions"]["Mode"] =
                        json!(u32::from_str_radix(v, 8).map_err(|_| format!("invalid tmpfs-mode {v:?}"))?)
                }
                other => {
                    return Err(format!("invalid argument \"{m}\" for \"--mount\" flag: unexpected key '{other}'"))
                }
            }
        }
        if o["Target"].is_null() {
            return Err(format!("invalid argument \"{m}\" for \"--mount\" flag: target is required"));
        }
        mounts.push(o);
    }
    if !mounts.is_empty() {
        host["Mounts"] = json!(mounts);
    }
    if !a.tmpfs.is_empty() {
        let mut t = Map::new();
        for x in &a.tmpfs {
            let (d, o) = x.split_once(':').unwrap_or((x.as_str(), ""));
            t.insert(d.to_string(), json!(o));
        }
        host["Tmpfs"] = Value::Object(t);
    }
    let mut exposed = Map::new();
    if !a.publish.is_empty() {
        let mut pb = Map::new();
        for p in &a.publish {
            let (spec, proto) = p.rsplit_once('/').unwrap_or((p.as_str(), "tcp"));
            let parts: Vec<&str> = spec.split(':').collect();
            let (ip, hp, cp) = match parts.as_slice() {
                [c] => ("", "", *c),
                [h, c] => ("", *h, *c),
                [i, h, c] => (*i, *h, *c),
                _ => return Err(format!("invalid port specification: {p:?}")),
            };
            if cp.parse::<u16>().is_err() {
                return Err(format!("invalid containerPort: {cp}"));
            }
            let key = format!("{cp}/{proto}");
            exposed.insert(key.clone(), json!({}));
            let e = pb.entry(key).or_insert_with(|| json!([]));
            e.as_array_mut().expect("array").push(json!({"HostIp": ip, "HostPort": hp}));
        }
        host["PortBindings"] = Value::Object(pb);
    }
    if a.publish_all {
        host["PublishAllPorts"] = json!(true);
    }
    for (k, v) in
        [("Dns", &a.dns), ("DnsSearch", &a.dns_search), ("DnsOptions", &a.dns_option), ("ExtraHosts", &a.add_host)]
    {
        if !v.is_empty() {
            host[k] = json!(v);
        }
    }
    if let Some(m) = &a.memory {
        host["Memory"] = json!(parse_bytes(m)?);
    }
    if let Some(n) = a.cpus {
        host["NanoCpus"] = json!((n * 1e9) as i64);
    }
    if let Some(s) = a.cpu_shares {
        host["CpuShares"] = json!(s);
    }
    if let Some(p) = a.pids_limit {
        host["PidsLimit"] = json!(p);
    }
    if let Some(r) = &a.restart {
        let (name, max) = r.split_once(':').unwrap_or((r.as_str(), "0"));
        let max: i64 = max.parse().map_err(|_| format!("invalid restart policy format: {r:?}"))?;
        host["RestartPolicy"] = json!({"Name": name, "MaximumRetryCount": max});
    }
    if !a.cap_add.is_empty() {
        host["CapAdd"] = json!(a.cap_add);
    }
    if a.init {
        host["Init"] = json!(true);
    }
    if a.privileged {
        host["Privileged"] = json!(true);
    }
    if !a.ulimit.is_empty() {
        let mut u = Vec::new();
        for x in &a.ulimit {
            let (name, lim) = x.split_once('=').ok_or_else(|| format!("invalid ulimit argument: {x}"))?;
            let (soft, hard) = lim.split_once(':').unwrap_or((lim, lim));
            let n = |v: &str| v.parse::<i64>().map_err(|_| format!("invalid ulimit argument: {x}"));
            u.push(json!({"Name": name, "Soft": n(soft)?, "Hard": n(hard)?}));
        }
        host["Ulimits"] = json!(u);
    }
    if !a.device.is_empty() {
        let mut d = Vec::new();
        for x in &a.device {
            let p: Vec<&str> = x.split(':').collect();
            let (h, c, perm) = match p.as_slice() {
                [h] => (*h, *h, "rwm"),
                [h, c] if c.chars().all(|ch| matches!(ch, 'r' | 'w' | 'm')) => (*h, *h, *c),
                [h, c] => (*h, *c, "rwm"),
                [h, c, perm] => (*h, *c, *perm),
                _ => return Err(format!("invalid device specification: {x}")),
            };
            d.push(json!({"PathOnHost": h, "PathInContainer": c, "CgroupPermissions": perm}));
        }
        host["Devices"] = json!(d);
    }
    if !a.cap_drop.is_empty() {
        host["CapDrop"] = json!(a.cap_drop);
    }
    if a.tty {
        if let Some((h, w)) = term_size() {
            host["ConsoleSize"] = json!([h, w]);
        }
    }
    let mut body = json!({
        "Image": a.image, "Env": env, "Labels": kv_map(&a.label),
        "Tty": a.tty, "OpenStdin": a.interactive, "StdinOnce": a.interactive && !a.detach,
        "AttachStdin": a.interactive && !a.detach, "AttachStdout": !a.detach, "AttachStderr": !a.detach,
        "HostConfig": host,
    });
    if !a.command.is_empty() {
        body["Cmd"] = json!(a.command);
    }
    if !a.network_alias.is_empty() {
        let net = a.network.clone().unwrap_or_else(|| "bridge".into());
        body["NetworkingConfig"] = json!({"EndpointsConfig": {net: {"Aliases": a.network_alias}}});
    }
    if let Some(ep) = &a.entrypoint {
        body["Entrypoint"] = if ep.is_empty() { json!([]) } else { json!([ep]) };
    }
    if !volumes.is_empty() {
        body["Volumes"] = Value::Object(volumes);
    }
    if !exposed.is_empty() {
        body["ExposedPorts"] = Value::Object(exposed);
    }
    for (k, v) in
        [("WorkingDir", &a.workdir), ("User", &a.user), ("Hostname", &a.hostname), ("StopSignal", &a.stop_signal)]
    {
        if let Some(v) = v {
            body[k] = json!(v);
        }
    }
    if let Some(t) = a.stop_timeout {
        body["StopTimeout"] = json!(t);
    }
    if a.no_healthcheck {
        body["Healthcheck"] = json!({"Test": ["NONE"]});
    } else if a.health_cmd.is_some()
        || a.health_interval.is_some()
        || a.health_retries.is_some()
        || a.health_timeout.is_some()
    {
        let mut h = json!({});
        if let Some(cmd) = &a.health_cmd {
            h["Test"] = json!(["CMD-SHELL", cmd]);
        }
        if let Some(i) = &a.health_interval {
            h["Interval"] = json!(parse_duration_ns(i)?);
        }
        if let Some(t) = &a.health_timeout {
            h["Timeout"] = json!(parse_duration_ns(t)?);
        }
        if let Some(r) = a.health_retries {
            h["Retries"] = json!(r);
        }
        body["Healthcheck"] = h;
    }
    Ok(body)
}

/// Pull `image` through the daemon (`run`/`create` of a missing image, `--pull always`):
/// the image verbs' pull, its progress on stderr.
fn pull(c: &Client, image: &str) -> R<()> {
    crate::image_api::pull_image(c, image, None, false).map(|_| ())
}

fn create(c: &Client, a: &RunArgs) -> R<String> {
    let body = create_body(a).map_err(|e| Fail(125, e))?;
    let path = match &a.name {
        Some(n) => format!("/containers/create?name={}", enc(n)),
        None => "/containers/create".to_string(),
    };
    if a.pull == "always" {
        pull(c, &a.image).map_err(|Fail(_, m)| Fail(125, m))?;
    } else if !matches!(a.pull.as_str(), "missing" | "never") {
        return Err(Fail(
            125,
            format!("invalid pull option: {:?}: must be one of \"always\", \"missing\" or \"never\"", a.pull),
        ));
    }
    let r = match c.call("POST", &path, Some(&body)) {
        Err(e) if e.status == 404 && e.message.starts_with("No such image") && a.pull == "missing" => {
            eprintln!("Unable to find image '{}' locally", a.image);
            pull(c, &a.image).map_err(|Fail(_, m)| Fail(125, m))?;
            c.call("POST", &path, Some(&body))
        }
        r => r,
    };
    let v = r.map_err(|e| Fail(125, e.to_string()))?.json().map_err(|e| Fail(125, e.to_string()))?;
    for w in v["Warnings"].as_array().cloned().unwrap_or_default() {
        eprintln!("WARNING: {}", plain(&w));
    }
    Ok(v["Id"].as_str().unwrap_or("").to_string())
}

fn term_size() -> Option<(u16, u16)> {
    // SAFETY: TIOCGWINSZ writes a winsize into a valid local.
    unsafe {
        let mut ws: libc::winsize = std::mem::zeroed();
        for fd in [1, 0, 2] {
            if libc::ioctl(fd, libc::TIOCGWINSZ, &mut ws) == 0 && ws.ws_row > 0 {
                return Some((ws.ws_row, ws.ws_col));
            }
        }
    }
    None
}

/// The local terminal in raw mode while a tty session runs; restored on drop.
struct RawMode(Option<libc::termios>);

impl RawMode {
    fn enter(tty: bool) -> RawMode {
        // SAFETY: isatty/tcgetattr/tcsetattr on fd 0 with valid termios pointers.
        unsafe {
            if !tty || libc::isatty(0) != 1 {
                return RawMode(None);
            }
            let mut t: libc::termios = std::mem::zeroed();
            if libc::tcgetattr(0, &mut t) != 0 {
                return RawMode(None);
            }
            let saved = t;
            libc::cfmakeraw(&mut t);
            libc::tcsetattr(0, libc::TCSANOW, &t);
            RawMode(Some(saved))
        }
    }
}

impl Drop for RawMode {
    fn drop(&mut self) {
        if let Some(t) = self.0 {
            // SAFETY: restoring the saved attributes of fd 0.
            unsafe { libc::tcsetattr(0, libc::TCSANOW, &t) };
        }
    }
}

/// Send stdin to a hijacked stream, then half-close it.
fn pump_stdin(mut w: std::os::unix::net::UnixStream) {
    std::thread::spawn(move || {
        let mut buf = [0u8; 32 << 10];
        let mut stdin = std::io::stdin();
        loop {
            match stdin.read(&mut buf) {
                Ok(0) | Err(_) => break,
                Ok(n) => {
                    if w.write_all(&buf[..n]).is_err() {
                        break;
                    }
                }
            }
        }
        let _ = w.shutdown(std::net::Shutdown::Write);
    });
}

/// Start waiting (headers received) on a second connection; the thread yields the code.
fn wait_thread(c: &Client, id: &str, condition: &str) -> R<std::thread::JoinHandle<Result<i32, String>>> {
    let body = c.stream("POST", &format!("/containers/{}/wait?condition={condition}", enc(id)), None)?;
    Ok(std::thread::spawn(move || {
        let mut body = body;
        let mut text = String::new();
        body.read_to_string(&mut text).map_err(|e| e.to_string())?;
        let v: Value = serde_json::from_str(text.trim()).map_err(|e| format!("wait: {e}"))?;
        if let Some(m) = v["Error"]["Message"].as_str().filter(|m| !m.is_empty()) {
            return Err(m.to_string());
        }
        Ok(v["StatusCode"].as_i64().unwrap_or(0) as i32)
    }))
}

fn wait(c: &Client, id: &str, condition: &str) -> R<i32> {
    wait_thread(c, id, condition)?.join().map_err(|_| Fail(1, "wait failed".into()))?.map_err(|e| Fail(1, e))
}

fn run(c: &Client, a: RunArgs) -> R<i32> {
    if a.detach && a.rm && a.restart.as_deref().is_some_and(|r| r != "no") {
        return Err(Fail(125, "Conflicting options: --restart and --rm".into()));
    }
    let id = create(c, &a)?;
    if a.detach {
        c.call("POST", &format!("/containers/{id}/start"), None).map_err(|e| Fail(start_code(&e), e.to_string()))?;
        println!("{id}");
        return Ok(0);
    }
    let q = format!("stream=1&stdout=1&stderr=1{}", if a.interactive { "&stdin=1" } else { "" });
    let (mut r, w) = c.hijack(&format!("/containers/{id}/attach?{q}"), None).map_err(|e| Fail(125, e.to_string()))?;
    let waiter = wait_thread(c, &id, if a.rm { "removed" } else { "next-exit" }).map_err(|Fail(_, m)| Fail(125, m))?;
    let raw = RawMode::enter(a.tty && a.interactive);
    if let Err(e) = c.call("POST", &format!("/containers/{id}/start"), None) {
        drop(raw);
        return Err(Fail(start_code(&e), e.to_string()));
    }
    if a.tty {
        if let Some((h, w)) = term_size() {
            let _ = c.call("POST", &format!("/containers/{id}/resize?h={h}&w={w}"), None);
        }
    }
    if a.interactive {
        pump_stdin(w);
    }
    let _ = demux(&mut r, a.tty);
    drop(raw);
    let code = waiter.join().map_err(|_| Fail(125, "wait failed".into()))?.map_err(|e| Fail(125, e))?;
    Ok(code)
}

/// Docker's exit codes for a failed start: 127 not found, 126 not executable, else 125.
fn start_code(e: &ApiErr) -> i32 {
    if e.message.contains("not found") || e.message.contains("No such file") {
        127
    } else if e.message.contains("permission denied") || e.message.contains("Permission denied") {
        126
    } else {
        125
    }
}

fn start_attached(c: &Client, name: &str) -> R<i32> {
    let v = c.get(&format!("/containers/{}/json", enc(name)))?;
    let tty = v["Config"]["Tty"].as_bool().unwrap_or(false);
    let id = v["Id"].as_str().unwrap_or(name).to_string();
    let (mut r, _w) = c.hijack(&format!("/containers/{id}/attach?stream=1&stdout=1&stderr=1"), None)?;
    let waiter = wait_thread(c, &id, "next-exit")?;
    c.call("POST", &format!("/containers/{id}/start"), None)?;
    let _ = demux(&mut r, tty);
    waiter.join().map_err(|_| Fail(1, "wait failed".into()))?.map_err(|e| Fail(1, e))
}

fn exec(c: &Client, a: ExecArgs) -> R<i32> {
    let mut body = json!({
        "AttachStdin": a.interactive && !a.detach, "AttachStdout": !a.detach, "AttachStderr": !a.detach,
        "Tty": a.tty, "Cmd": a.command, "Env": a.env, "Detach": a.detach,
    });
    if let Some(u) = &a.user {
        body["User"] = json!(u);
    }
    if let Some(w) = &a.workdir {
        body["WorkingDir"] = json!(w);
    }
    if a.tty {
        if let Some((h, w)) = term_size() {
            body["ConsoleSize"] = json!([h, w]);
        }
    }
    let v = c.call("POST", &format!("/containers/{}/exec", enc(&a.container)), Some(&body))?.json()?;
    let eid = v["Id"].as_str().unwrap_or("").to_string();
    if a.detach {
        c.call("POST", &format!("/exec/{eid}/start"), Some(&json!({"Detach": true, "Tty": a.tty})))?;
        return Ok(0);
    }
    let (mut r, w) = c.hijack(&format!("/exec/{eid}/start"), Some(&json!({"Detach": false, "Tty": a.tty})))?;
    let raw = RawMode::enter(a.tty && a.interactive);
    if a.interactive {
        pump_stdin(w);
    }
    let _ = demux(&mut r, a.tty);
    drop(raw);
    let v = c.get(&format!("/exec/{eid}/json"))?;
    Ok(v["ExitCode"].as_i64().unwrap_or(0) as i32)
}

/// `--since`/`--until`: RFC 3339, unix seconds, or a duration before now.
fn time_arg(s: &str) -> R<String> {
    if s.chars().all(|c| c.is_ascii_digit() || c == '.') {
        return Ok(s.to_string());
    }
    if let Some(t) = berth_runtime::state::parse_rfc3339(s) {
        return Ok(t.to_string());
    }
    let ns = parse_duration_ns(s).map_err(|e| Fail(1, format!("invalid time {s:?}: {e}")))?;
    let now =
        std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_secs_f64()).unwrap_or(0.0);
    Ok(format!("{:.9}", now - ns as f64 / 1e9))
}

fn logs(c: &Client, a: LogsArgs) -> R<i32> {
    let v = c.get(&format!("/containers/{}/json", enc(&a.container)))?;
    let tty = v["Config"]["Tty"].as_bool().unwrap_or(false);
    let mut q = format!("stdout=1&stderr=1&tail={}", enc(&a.tail));
    if a.follow {
        q.push_str("&follow=1");
    }
    if a.timestamps {
        q.push_str("&timestamps=1");
    }
    if let Some(s) = &a.since {
        q.push_str(&format!("&since={}", time_arg(s)?));
    }
    if let Some(s) = &a.until {
        q.push_str(&format!("&until={}", time_arg(s)?));
    }
    let id = v["Id"].as_str().unwrap_or("");
    let mut body = c.stream("GET", &format!("/containers/{id}/logs?{q}"), None)?;
    demux(&mut body, tty).map_err(|e| Fail(1, format!("reading logs: {e}")))?;
    Ok(0)
}

/// The fields `ps --format` offers (Docker's names), from one `/containers/json` entry.
fn ps_fields(v: &Value, no_trunc: bool) -> Value {
    let mut cmd = plain(&v["Command"]);
    if !no_trunc && cmd.chars().count() > 20 {
        cmd = cmd.chars().take(19).collect::<String>() + "…";
    }
    let names: Vec<String> = v["Names"]
        .as_array()
        .map(|a| a.iter().map(|n| plain(n).trim_start_matches('/').to_string()).collect())
        .unwrap_or_default();
    let labels = v["Labels"]
        .as_object()
        .map(|o| o.iter().map(|(k, v)| format!("{k}={}", plain(v))).collect::<Vec<_>>().join(","));
    let ports: Vec<String> = v["Ports"]
        .as_array()
        .map(|a| {
            a.iter()
                .map(|p| match p["PublicPort"].as_u64() {
                    Some(pp) => format!("{}:{pp}->{}/{}", plain(&p["IP"]), plain(&p["PrivatePort"]), plain(&p["Type"])),
                    None => format!("{}/{}", plain(&p["PrivatePort"]), plain(&p["Type"])),
                })
                .collect()
        })
        .unwrap_or_default();
    let mounts: Vec<String> = v["Mounts"]
        .as_array()
        .map(|a| {
            a.iter().map(|m| if m["Name"].is_string() { plain(&m["Name"]) } else { plain(&m["Source"]) }).collect()
        })
        .unwrap_or_default();
    let created = v["Created"].as_i64().unwrap_or(0);
    json!({
        "ID": trunc_id(v["Id"].as_str().unwrap_or(""), no_trunc),
        "Image": v["Image"],
        "Command": format!("\"{cmd}\""),
        "CreatedAt": berth_runtime::state::rfc3339(std::time::UNIX_EPOCH + std::time::Duration::from_secs(created.max(0) as u64)),
        "RunningFor": ago(created),
        "Ports": ports.join(", "),
        "State": v["State"],
        "Status": v["Status"],
        "Size": "",
        "Names": names.join(","),
        "Labels": labels.unwrap_or_default(),
        "Mounts": mounts.join(","),
        "Networks": v["HostConfig"]["NetworkMode"],
    })
}

fn ps_header(f: &str) -> String {
    match f {
        "ID" => "CONTAINER ID".into(),
        "RunningFor" => "CREATED".into(),
        "CreatedAt" => "CREATED AT".into(),
        other => other.to_uppercase(),
    }
}

fn ps(c: &Client, a: PsArgs) -> R<i32> {
    let mut q = format!("all={}", a.all || a.last.is_some() || a.latest);
    if !a.filter.is_empty() {
        q.push_str(&format!("&filters={}", enc(&filters_json(&a.filter)?)));
    }
    let limit = if a.latest { Some(1) } else { a.last };
    if let Some(n) = limit {
        q.push_str(&format!("&limit={n}"));
    }
    let v = c.get(&format!("/containers/json?{q}"))?;
    let list = v.as_array().cloned().unwrap_or_default();
    if a.quiet {
        for c in &list {
            println!("{}", trunc_id(c["Id"].as_str().unwrap_or(""), a.no_trunc));
        }
        return Ok(0);
    }
    let items: Vec<Value> = list.iter().map(|c| ps_fields(c, a.no_trunc)).collect();
    let format = a.format.unwrap_or_else(|| "table".into());
    let format = if format == "table" {
        "table {{.ID}}\t{{.Image}}\t{{.Command}}\t{{.RunningFor}}\t{{.Status}}\t{{.Ports}}\t{{.Names}}".to_string()
    } else {
        format
    };
    print_formatted(&format, &items, Some(&ps_header))?;
    Ok(0)
}

fn inspect(c: &Client, format: Option<String>, names: &[String]) -> R<i32> {
    let get = |n: &str| {
        c.get(&format!("/containers/{}/json", enc(n)))
            .or_else(|_| c.get(&format!("/images/{n}/json")))
            .or_else(|_| c.get(&format!("/volumes/{}", enc(n))))
            .or_else(|_| c.get(&format!("/networks/{}", enc(n))))
    };
    crate::client::inspect_each(names, format.as_deref(), get, |n, _| Some(format!("Error: No such object: {n}")))
}

fn network(c: &Client, n: NetworkCmd) -> R<i32> {
    match n {
        NetworkCmd::Ls { quiet, no_trunc, format } => {
            let list = c.get("/networks")?.as_array().cloned().unwrap_or_default();
            let id = |v: &Value| {
                let s = plain(&v["Id"]);
                if no_trunc {
                    s
                } else {
                    s.chars().take(12).collect()
                }
            };
            if quiet {
                for x in &list {
                    println!("{}", id(x));
                }
                return Ok(0);
            }
            let items: Vec<Value> = list
                .iter()
                .map(|x| {
                    let mut o = x.clone();
                    o["ID"] = json!(id(x));
                    o
                })
                .collect();
            let format = match format.as_deref() {
                None | Some("table") => "table {{.ID}}\t{{.Name}}\t{{.Driver}}\t{{.Scope}}".to_string(),
                Some(f) => f.to_string(),
            };
            let header = |f: &str| if f == "ID" { "NETWORK ID".to_string() } else { f.to_uppercase() };
            print_formatted(&format, &items, Some(&header))?;
            Ok(0)
        }
        NetworkCmd::Inspect { format, names } => crate::client::inspect_each(
            &names,
            format.as_deref(),
            |n| c.get(&format!("/networks/{}", enc(n))),
            |_, e| Some(e.to_string()),
        ),
        NetworkCmd::Create { name, driver, subnet, gateway, internal, label } => {
            let mut cfg = json!({});
            if let Some(s) = subnet {
                cfg["Subnet"] = json!(s);
            }
            if let Some(g) = gateway {
                cfg["Gateway"] = json!(g);
            }
            let body = json!({"Name": name, "Driver": driver, "Internal": internal, "Labels": kv_map(&label),
                              "IPAM": {"Driver": "default", "Config": [cfg]}});
            let v = c.call("POST", "/networks/create", Some(&body))?.json()?;
            println!("{}", plain(&v["Id"]));
            Ok(0)
        }
        NetworkCmd::Rm { names } => {
            each(&names, |n| c.call("DELETE", &format!("/networks/{}", enc(n)), None).map(|_| ()))
        }
        NetworkCmd::Connect { aliases, network, container } => {
            let body = json!({"Container": container, "EndpointConfig": {"Aliases": aliases}});
            c.call("POST", &format!("/networks/{}/connect", enc(&network)), Some(&body))?;
            Ok(0)
        }
        NetworkCmd::Disconnect { force, network, container } => {
            let body = json!({"Container": container, "Force": force});
            c.call("POST", &format!("/networks/{}/disconnect", enc(&network)), Some(&body))?;
            Ok(0)
        }
        NetworkCmd::Prune { force } => {
            if !force
                && !crate::image_api::confirm(
                    "WARNING! This will remove all custom networks not used by at least one container.",
                )
            {
                return Ok(1);
            }
            let v = c.call("POST", "/networks/prune", None)?.json()?;
            let gone = v["NetworksDeleted"].as_array().cloned().unwrap_or_default();
            if !gone.is_empty() {
                println!("Deleted Networks:");
                for n in gone {
                    println!("{}", plain(&n));
                }
            }
            Ok(0)
        }
    }
}

fn volume(c: &Client, v: VolumeCmd) -> R<i32> {
    match v {
        VolumeCmd::Create { name, driver, label, opt } => {
            let body = json!({"Name": name.unwrap_or_default(), "Driver": driver, "Labels": kv_map(&label), "DriverOpts": kv_map(&opt)});
            let v = c.call("POST", "/volumes/create", Some(&body))?.json()?;
            println!("{}", plain(&v["Name"]));
            Ok(0)
        }
        VolumeCmd::Ls { quiet, filter, format } => {
            let q =
                if filter.is_empty() { String::new() } else { format!("?filters={}", enc(&filters_json(&filter)?)) };
            let v = c.get(&format!("/volumes{q}"))?;
            let list = v["Volumes"].as_array().cloned().unwrap_or_default();
            if quiet {
                for x in &list {
                    println!("{}", plain(&x["Name"]));
                }
                return Ok(0);
            }
            let items: Vec<Value> = list
                .iter()
                .map(|x| {
                    let mut o = x.clone();
                    o["Labels"] = json!(x["Labels"]
                        .as_object()
                        .map(|m| m.iter().map(|(k, v)| format!("{k}={}", plain(v))).collect::<Vec<_>>().join(","))
                        .unwrap_or_default());
                    o
                })
                .collect();
            let format = match format.as_deref() {
                None | Some("table") => "table {{.Driver}}\t{{.Name}}".to_string(),
                Some(f) => f.to_string(),
            };
            let header = |f: &str| if f == "Name" { "VOLUME NAME".to_string() } else { f.to_uppercase() };
            print_formatted(&format, &items, Some(&header))?;
            Ok(0)
        }
        VolumeCmd::Inspect { format, names } => crate::client::inspect_each(
            &names,
            format.as_deref(),
            |n| c.get(&format!("/volumes/{}", enc(n))),
            |_, e| Some(e.to_string()),
        ),
        VolumeCmd::Rm { force, names } => {
            each(&names, |n| c.call("DELETE", &format!("/volumes/{}?force={force}", enc(n)), None).map(|_| ()))
        }
        VolumeCmd::Prune { all, force, filter } => {
            if !force {
                return Err(Fail(1, "volume prune removes data: confirm with --force (-f)".into()));
            }
            let mut f = filter;
            if all {
                f.push("all=true".into());
            }
            let q = if f.is_empty() { String::new() } else { format!("?filters={}", enc(&filters_json(&f)?)) };
            let v = c.call("POST", &format!("/volumes/prune{q}"), None)?.json()?;
            let deleted = v["VolumesDeleted"].as_array().cloned().unwrap_or_default();
            if !deleted.is_empty() {
                println!("Deleted Volumes:");
                for d in deleted {
                    println!("{}", plain(&d));
                }
                println!();
            }
            println!("Total reclaimed space: {}B", v["SpaceReclaimed"].as_u64().unwrap_or(0));
            Ok(0)
        }
    }
}

fn stats(c: &Client, no_stream: bool, all: bool, format: Option<String>, names: Vec<String>) -> R<i32> {
    let format = match format.as_deref() {
        None | Some("table") => {
            "table {{.ID}}\t{{.Name}}\t{{.CPUPerc}}\t{{.MemUsage}}\t{{.MemPerc}}\t{{.NetIO}}\t{{.BlockIO}}\t{{.PIDs}}"
                .to_string()
        }
        Some(f) => f.to_string(),
    };
    let header = |f: &str| match f {
        "ID" => "CONTAINER ID".to_string(),
        "CPUPerc" => "CPU %".into(),
        "MemUsage" => "MEM USAGE / LIMIT".into(),
        "MemPerc" => "MEM %".into(),
        "NetIO" => "NET I/O".into(),
        "BlockIO" => "BLOCK I/O".into(),
        other => other.to_uppercase(),
    };
    let listed = names.is_empty();
    let list = |names: &[String]| -> R<Vec<String>> {
        if !listed {
            return Ok(names.to_vec());
        }
        let v = c.get(&format!("/containers/json?all={all}"))?;
        Ok(v.as_array().cloned().unwrap_or_default().iter().map(|x| plain(&x["Id"])).collect())
    };
    if no_stream {
        let items = stats_items(c, &list(&names)?, true)?;
        print_formatted(&format, &items, Some(&header))?;
        return Ok(0);
    }
    // The live view: the table redrawn about every second (each reading samples CPU over a
    // short interval), until interrupted. Containers listed by name that stop stay out.
    let tty = std::io::IsTerminal::is_terminal(&std::io::stdout());
    loop {
        let items = stats_items(c, &list(&names)?, false)?;
        if tty {
            print!("\x1b[2J\x1b[H");
        }
        print_formatted(&format, &items, Some(&header))?;
        let _ = std::io::Write::flush(&mut std::io::stdout());
        std::thread::sleep(std::time::Duration::from_millis(500));
    }
}

/// One reading of each container's stats (`strict`: a failure is an error, else skipped).
fn stats_items(c: &Client, names: &[String], strict: bool) -> R<Vec<Value>> {
    let mut items = Vec::new();
    for n in names {
        let body = c.stream("GET", &format!("/containers/{}/stats?stream=0", enc(n)), None);
        let mut body = match body {
            Ok(b) => b,
            Err(_) if !strict => continue,
            Err(e) => return Err(e.into()),
        };
        let mut text = String::new();
        body.read_to_string(&mut text).map_err(|e| Fail(1, format!("reading stats: {e}")))?;
        let v: Value = serde_json::from_str(text.trim()).map_err(|e| Fail(1, format!("stats: {e}")))?;
        let cpu = v["cpu_stats"]["cpu_usage"]["total_usage"].as_f64().unwrap_or(0.0)
            - v["precpu_stats"]["cpu_usage"]["total_usage"].as_f64().unwrap_or(0.0);
        let sys = v["cpu_stats"]["system_cpu_usage"].as_f64().unwrap_or(0.0)
            - v["precpu_stats"]["system_cpu_usage"].as_f64().unwrap_or(0.0);
        let ncpu = v["cpu_stats"]["online_cpus"].as_f64().unwrap_or(1.0);
        let cpu_pct = if sys > 0.0 && cpu > 0.0 { cpu / sys * ncpu * 100.0 } else { 0.0 };
        let m = &v["memory_stats"];
        let cache = m["stats"]["total_inactive_file"].as_u64().or(m["stats"]["inactive_file"].as_u64()).unwrap_or(0);
        let used = m["usage"].as_u64().unwrap_or(0).saturating_sub(cache);
        let limit = m["limit"].as_u64().unwrap_or(0);
        let mib = |b: u64| {
            let b = b as f64;
            if b >= (1u64 << 30) as f64 {
                format!("{:.2}GiB", b / (1u64 << 30) as f64)
            } else if b >= (1u64 << 20) as f64 {
                format!("{:.2}MiB", b / (1u64 << 20) as f64)
            } else {
                format!("{:.2}KiB", b / 1024.0)
            }
        };
        let id = plain(&v["id"]);
        items.push(json!({
            "ID": trunc_id(&id, false), "Container": n, "Name": plain(&v["name"]).trim_start_matches('/'),
            "CPUPerc": format!("{cpu_pct:.2}%"),
            "MemUsage": format!("{} / {}", mib(used), mib(limit)),
            "MemPerc": format!("{:.2}%", if limit > 0 { used as f64 / limit as f64 * 100.0 } else { 0.0 }),
            "NetIO": net_io(&v["networks"]), "BlockIO": "0B / 0B",
            "PIDs": v["pids_stats"]["current"].as_u64().unwrap_or(0),
        }));
    }
    Ok(items)
}

/// Docker's NET I/O column: received / sent over all interfaces, in decimal units.
fn net_io(networks: &Value) -> String {
    let (mut rx, mut tx) = (0u64, 0u64);
    for n in networks.as_object().map(|o| o.values().collect::<Vec<_>>()).unwrap_or_default() {
        rx += n["rx_bytes"].as_u64().unwrap_or(0);
        tx += n["tx_bytes"].as_u64().unwrap_or(0);
    }
    let h = |b: u64| {
        let b = b as f64;
        if b >= 1e9 {
            format!("{:.3}GB", b / 1e9)
        } else if b >= 1e6 {
            format!("{:.3}MB", b / 1e6)
        } else if b >= 1e3 {
            format!("{:.3}kB", b / 1e3)
        } else {
            format!("{b}B")
        }
    };
    format!("{} / {}", h(rx), h(tx))
}

fn events(
    c: &Client,
    since: Option<String>,
    until: Option<String>,
    filter: Vec<String>,
    format: Option<String>,
) -> R<i32> {
    let mut q = Vec::new();
    if let Some(s) = &since {
        q.push(format!("since={}", time_arg(s)?));
    }
    if let Some(u) = &until {
        q.push(format!("until={}", time_arg(u)?));
    }
    if !filter.is_empty() {
        q.push(format!("filters={}", enc(&filters_json(&filter)?)));
    }
    let mut body = c.stream("GET", &format!("/events?{}", q.join("&")), None)?;
    let t = match format.as_deref() {
        None | Some("json") => None,
        Some(f) => Some(Template::parse(f).map_err(|e| Fail(1, e))?),
    };
    let mut buf = Vec::new();
    let mut chunk = [0u8; 8192];
    let out = std::io::stdout();
    loop {
        let n = body.read(&mut chunk).map_err(|e| Fail(1, format!("reading events: {e}")))?;
        if n == 0 {
            return Ok(0);
        }
        buf.extend_from_slice(&chunk[..n]);
        while let Some(i) = buf.iter().position(|b| *b == b'\n') {
            let line: Vec<u8> = buf.drain(..=i).collect();
            let Ok(v) = serde_json::from_slice::<Value>(&line) else { continue };
            let text = match (&t, format.as_deref()) {
                (Some(t), _) => t.render(&v).map_err(|e| Fail(1, e))?,
                (None, Some("json")) => v.to_string(),
                (None, _) => {
                    let nanos = v["timeNano"].as_u64().unwrap_or(0);
                    let when =
                        berth_runtime::state::rfc3339(std::time::UNIX_EPOCH + std::time::Duration::from_nanos(nanos));
                    let attrs = v["Actor"]["Attributes"]
                        .as_object()
                        .map(|o| o.iter().map(|(k, x)| format!("{k}={}", plain(x))).collect::<Vec<_>>().join(", "))
                        .unwrap_or_default();
                    format!(
                        "{when} {} {} {} ({attrs})",
                        plain(&v["Type"]),
                        plain(&v["Action"]),
                        plain(&v["Actor"]["ID"])
                    )
                }
            };
            let mut o = out.lock();
            let _ = writeln!(o, "{text}");
            let _ = o.flush();
        }
    }
}

/// `cp CONTAINER:SRC DST` (a tar from the daemon unpacked here) or `cp SRC CONTAINER:DST`
/// (a tar made here, unpacked by the daemon inside the container's root).
fn cp(c: &Client, archive: bool, src: &str, dst: &str) -> R<i32> {
    let split = |s: &str| -> Option<(String, String)> {
        if s.starts_with('/') || s.starts_with('.') {
            return None;
        }
        s.split_once(':').map(|(a, b)| (a.to_string(), b.to_string()))
    };
    let io = |what: &str, e: &dyn std::fmt::Display| Fail(1, format!("{what}: {e}"));
    match (split(src), split(dst)) {
        (Some((ctr, path)), None) => {
            let mut body = c.stream("GET", &format!("/containers/{}/archive?path={}", enc(&ctr), enc(&path)), None)?;
            let dest = std::path::Path::new(dst);
            let unpack = |body: &mut crate::client::Body, into: &std::path::Path| -> R<()> {
                let mut ar = tar::Archive::new(body);
                ar.set_preserve_permissions(true);
                ar.set_overwrite(true);
                // unpack_in refuses entries that would land outside `into`.
                for entry in ar.entries().map_err(|e| io("reading the archive", &e))? {
                    let mut entry = entry.map_err(|e| io("reading the archive", &e))?;
                    if !entry.unpack_in(into).map_err(|e| io("writing", &e))? {
                        return Err(Fail(1, format!("refusing an archive entry outside {}", into.display())));
                    }
                }
                Ok(())
            };
            if dest.is_dir() && !path.ends_with("/.") {
                return unpack(&mut body, dest).map(|_| 0);
            }
            // A new name (or a directory's contents): unpack beside it, then move into place.
            let parent = dest.parent().filter(|p| !p.as_os_str().is_empty()).unwrap_or(std::path::Path::new("."));
            if !parent.is_dir() {
                return Err(Fail(1, format!("destination directory {} does not exist", parent.display())));
            }
            let tmp = parent.join(format!(".berth-cp-{}", std::process::id()));
            std::fs::create_dir(&tmp).map_err(|e| io(&tmp.display().to_string(), &e))?;
            let r = (|| -> R<()> {
                unpack(&mut body, &tmp)?;
                let mut top: Vec<std::path::PathBuf> =
                    std::fs::read_dir(&tmp).map_err(|e| io("reading", &e))?.flatten().map(|e| e.path()).collect();
                if path.ends_with("/.") {
                    // The contents of a directory: into dst (made if missing).
                    std::fs::create_dir_all(dest).map_err(|e| io(dst, &e))?;
                    for t in top.drain(..) {
                        let to = dest.join(t.file_name().unwrap_or_default());
                        std::fs::rename(&t, &to).map_err(|e| io(&to.display().to_string(), &e))?;
                    }
                    return Ok(());
                }
                let [one] = top.as_slice() else { return Err(Fail(1, "the archive has no single top entry".into())) };
                if dest.is_dir() {
                    let _ = std::fs::remove_dir(dest);
                }
                std::fs::rename(one, dest).map_err(|e| io(dst, &e))
            })();
            let _ = std::fs::remove_dir_all(&tmp);
            r.map(|_| 0)
        }
        (None, Some((ctr, path))) => {
            let source = std::path::Path::new(src);
            let meta = std::fs::symlink_metadata(source).map_err(|e| io(src, &e))?;
            let name = source
                .file_name()
                .map(|n| n.to_os_string())
                .ok_or_else(|| Fail(1, format!("{src}: cannot copy a path without a name")))?;
            // Into an existing directory of the container, or as a new name in its parent.
            let dir_exists = c
                .call(
                    "HEAD",
                    &format!("/containers/{}/archive?path={}/.", enc(&ctr), enc(path.trim_end_matches('/'))),
                    None,
                )
                .is_ok();
            let (dir, entry_name) = if dir_exists {
                (path.clone(), name)
            } else {
                let p = std::path::Path::new(&path);
                let parent = p.parent().map(|x| x.to_string_lossy().into_owned()).filter(|x| !x.is_empty());
                (parent.unwrap_or_else(|| "/".into()), p.file_name().map(|n| n.to_os_string()).unwrap_or(name))
            };
            let mut data = Vec::new();
            {
                let mut b = tar::Builder::new(&mut data);
                b.follow_symlinks(false);
                let r = if meta.is_dir() {
                    b.append_dir_all(&entry_name, source)
                } else {
                    b.append_path_with_name(source, &entry_name)
                };
                r.map_err(|e| io(&format!("archiving {src}"), &e))?;
                b.finish().map_err(|e| io(&format!("archiving {src}"), &e))?;
            }
            let q = format!(
                "path={}&noOverwriteDirNonDir=true{}",
                enc(&dir),
                if archive { "&copyUIDGID=true" } else { "" }
            );
            c.call_raw("PUT", &format!("/containers/{}/archive?{q}", enc(&ctr)), "application/x-tar", &data)?;
            Ok(0)
        }
        _ => Err(Fail(
            1,
            "copying between containers is not supported: one side must be CONTAINER:PATH, the other a local path"
                .into(),
        )),
    }
}

/// `attach`: the container's output here (and our stdin there) until it ends; its exit code.
fn attach(c: &Client, no_stdin: bool, name: &str) -> R<i32> {
    let v = c.get(&format!("/containers/{}/json", enc(name)))?;
    if !v["State"]["Running"].as_bool().unwrap_or(false) {
        return Err(Fail(1, "You cannot attach to a stopped container, start it first".into()));
    }
    let tty = v["Config"]["Tty"].as_bool().unwrap_or(false);
    let stdin = !no_stdin && v["Config"]["OpenStdin"].as_bool().unwrap_or(false);
    let id = v["Id"].as_str().unwrap_or(name).to_string();
    let q = format!("stream=1&stdout=1&stderr=1{}", if stdin { "&stdin=1" } else { "" });
    let (mut r, w) = c.hijack(&format!("/containers/{id}/attach?{q}"), None)?;
    let waiter = wait_thread(c, &id, "not-running")?;
    let raw = RawMode::enter(tty && stdin);
    if tty {
        if let Some((h, wd)) = term_size() {
            let _ = c.call("POST", &format!("/containers/{id}/resize?h={h}&w={wd}"), None);
        }
    }
    if stdin {
        pump_stdin(w);
    }
    let _ = demux(&mut r, tty);
    drop(raw);
    waiter.join().map_err(|_| Fail(1, "wait failed".into()))?.map_err(|e| Fail(1, e))
}

/// `commit`: `POST /commit?container=&repo=&tag=&comment=&author=&pause=&changes=...`, as the
/// docker CLI sends it; prints the new image's ID.
fn commit(c: &Client, a: CommitArgs) -> R<i32> {
    let mut q = vec![format!("container={}", enc(&a.container))];
    if let Some(r) = &a.reference {
        let parsed = berth_image::Reference::parse(r).map_err(|e| Fail(1, e.to_string()))?;
        if parsed.digest().is_some() {
            return Err(Fail(1, format!("refusing to create a tag with a digest reference: {r}")));
        }
        q.push(format!("repo={}", enc(&parsed.familiar_name())));
        q.push(format!("tag={}", enc(parsed.tag().unwrap_or("latest"))));
    }
    if let Some(m) = &a.message {
        q.push(format!("comment={}", enc(m)));
    }
    if let Some(au) = &a.author {
        q.push(format!("author={}", enc(au)));
    }
    if !a.pause {
        q.push("pause=0".into());
    }
    for ch in &a.changes {
        q.push(format!("changes={}", enc(ch)));
    }
    let v = c.call("POST", &format!("/commit?{}", q.join("&")), None)?.json()?;
    let id = v["Id"].as_str().unwrap_or("");
    if id.is_empty() {
        return Err(Fail(1, "the daemon did not say which image it made".into()));
    }
    println!("{id}");
    Ok(0)
}
#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_and_durations() {
        assert_eq!(parse_bytes("64m").unwrap(), 64 << 20);
        assert_eq!(parse_bytes("1g").unwrap(), 1 << 30);
        assert_eq!(parse_bytes("512").unwrap(), 512);
        assert!(parse_bytes("lots").is_err());
        assert_eq!(parse_duration_ns("1m30s").unwrap(), 90_000_000_000);
        assert_eq!(parse_duration_ns("500ms").unwrap(), 500_000_000);
        assert!(parse_duration_ns("10").is_err());
    }

    #[test]
    fn run_flags_become_docker_create_bodies() {
        let a = Cli::try_parse_from([
            "berth",
            "run",
            "-d",
            "--name",
            "x",
            "-e",
            "A=1",
            "-v",
            "vol:/data:ro",
            "-v",
            "/anon",
            "--mount",
            "type=tmpfs,target=/t,tmpfs-size=1m",
            "-m",
            "64m",
            "--cpus",
            "1.5",
            "--restart",
            "on-failure:3",
            "-l",
            "k=v",
            "-h",
            "hn",
            "-p",
            "127.0.0.1:8080:80",
            "img",
            "sh",
            "-c",
            "echo hi",
        ])
        .unwrap();
        let Cmd::Run(r) = a.cmd else { panic!() };
        let b = create_body(&r).unwrap();
        assert_eq!(b["Cmd"], json!(["sh", "-c", "echo hi"]));
        assert_eq!(b["Env"], json!(["A=1"]));
        assert_eq!(b["Hostname"], "hn");
        assert_eq!(b["Volumes"], json!({"/anon": {}}));
        assert_eq!(b["HostConfig"]["Binds"], json!(["vol:/data:ro"]));
        assert_eq!(b["HostConfig"]["Mounts"][0]["TmpfsOptions"]["SizeBytes"], 1 << 20);
        assert_eq!(b["HostConfig"]["Memory"], 64 << 20);
        assert_eq!(b["HostConfig"]["NanoCpus"], 1_500_000_000i64);
        assert_eq!(b["HostConfig"]["RestartPolicy"], json!({"Name": "on-failure", "MaximumRetryCount": 3}));
        assert_eq!(b["HostConfig"]["PortBindings"]["80/tcp"], json!([{"HostIp": "127.0.0.1", "HostPort": "8080"}]));
        assert_eq!(b["Labels"], json!({"k": "v"}));
    }
}
