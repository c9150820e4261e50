//! `berth daemon` (the Docker Engine API server) and `berth monitor` (internal: one per
//! running container, started by the daemon).

use clap::{Args, Parser};
use std::path::PathBuf;

#[derive(Parser, Debug)]
#[command(
    name = "berth daemon",
    about = "Run the Berth engine: the Docker Engine API on a unix socket",
    long_about = "Run the Berth engine: the Docker Engine API (1.24-1.50) on a unix socket, so the docker CLI, \
                  docker-py and compose work against it (DOCKER_HOST=unix:///run/berth/berth.sock). \
                  Containers run under small monitor processes and keep running when the daemon stops; \
                  a restarted daemon adopts them again."
)]
struct DaemonArgs {
    /// Socket to listen on (created mode 0600: root only)
    #[arg(short = 'H', long = "host", env = "BERTH_HOST", default_value = "/run/berth/berth.sock")]
    host: String,
    /// Root of persistent state: images, containers, logs
    #[arg(long, env = "BERTH_DATA_ROOT", default_value = "/var/lib/berth")]
    data_root: PathBuf,
    /// Root of runtime state: container bundles, monitor sockets
    #[arg(long, env = "BERTH_EXEC_ROOT", default_value = "/run/berth")]
    exec_root: PathBuf,
    /// The default bridge network's Linux bridge device
    #[arg(short = 'b', long = "bridge", env = "BERTH_BRIDGE", default_value = "berth0")]
    bridge: String,
    /// The bridge's address and prefix: its subnet is the default network's (as dockerd's --bip)
    #[arg(long, env = "BERTH_BIP", default_value = "172.29.0.1/16")]
    bip: String,
    /// Log every API request, with its duration, on stderr
    #[arg(short = 'D', long)]
    debug: bool,
}

pub fn daemon_main(args: Vec<std::ffi::OsString>) -> i32 {
    let a = match DaemonArgs::try_parse_from(args) {
        Ok(a) => a,
        Err(e) => {
            let _ = e.print();
            return if e.use_stderr() { 125 } else { 0 };
        }
    };
    // Run from a read-only mount of our binary, which the monitors inherit (CVE-2019-5736
    // guard, paid once here instead of at every container start); they seal themselves if not.
    if let Err(e) = berth_runtime::sealed::ensure_sealed() {
        eprintln!("berth daemon: warning: cannot re-exec from a read-only copy of berth: {e}");
    }
    let sock = PathBuf::from(a.host.strip_prefix("unix://").unwrap_or(&a.host));
    berth_engine::api::DEBUG.store(a.debug, std::sync::atomic::Ordering::Relaxed);
    let net = match berth_engine::network::NetConfig::parse(&a.bridge, &a.bip) {
        Ok(n) => n,
        Err(e) => {
            eprintln!("berth daemon: {e}");
            return 125;
        }
    };
    // Absolute roots: mount sources and monitor paths must not depend on a working directory.
    let abs = |p: &PathBuf| -> PathBuf {
        if p.is_absolute() {
            p.clone()
        } else {
            std::env::current_dir().map(|d| d.join(p)).unwrap_or_else(|_| p.clone())
        }
    };
    let (data_root, exec_root) = (abs(&a.data_root), abs(&a.exec_root));
    let d = match berth_engine::daemon::Daemon::open_with(&data_root, &exec_root, net) {
        Ok(d) => d,
        Err(e) => {
            eprintln!("berth daemon: {e}");
            return 1;
        }
    };
    match berth_engine::api::serve(d, &sock) {
        Ok(()) => 0,
        Err(e) => {
            eprintln!("berth daemon: {e}");
            1
        }
    }
}

#[derive(Parser, Debug)]
#[command(name = "berth monitor", about = "Internal: run one container for the daemon", hide = true)]
struct MonitorArgs {
    #[command(flatten)]
    m: MonitorFields,
}

#[derive(Args, Debug)]
struct MonitorFields {
    #[arg(long)]
    id: String,
    #[arg(long)]
    bundle: PathBuf,
    #[arg(long)]
    runtime_root: PathBuf,
    #[arg(long)]
    dir: PathBuf,
    #[arg(long)]
    log: Option<PathBuf>,
    /// Run this OCI process (JSON file) in the running container: an exec
    #[arg(long)]
    exec: Option<PathBuf>,
    /// HostConfig.LogConfig.Config as JSON
    #[arg(long, default_value = "{}")]
    log_opts: String,
    #[arg(long)]
    tty: bool,
    #[arg(long)]
    stdin: bool,
    #[arg(long)]
    stdin_once: bool,
}

pub fn monitor_main(args: Vec<std::ffi::OsString>) -> i32 {
    let a = match MonitorArgs::try_parse_from(args) {
        Ok(a) => a.m,
        Err(e) => {
            let _ = e.print();
            return 2;
        }
    };
    // Containers must never reach a writable berth binary (CVE-2019-5736).
    if let Err(e) = berth_runtime::sealed::ensure_sealed() {
        eprintln!("berth monitor: re-exec from a read-only copy of berth: {e}");
        return 1;
    }
    let cfg: serde_json::Value = serde_json::from_str(&a.log_opts).unwrap_or_default();
    let log_opts = match berth_engine::logs::LogOpts::from_config(&cfg) {
        Ok(o) => o,
        Err(e) => {
            eprintln!("berth monitor: {e}");
            return 2;
        }
    };
    berth_engine::monitor::main(berth_engine::monitor::MonitorOpts {
        id: a.id,
        bundle: a.bundle,
        runtime_root: a.runtime_root,
        dir: a.dir,
        log: a.log,
        log_opts,
        exec_process: a.exec,
        tty: a.tty,
        open_stdin: a.stdin,
        stdin_once: a.stdin_once,
    })
}
