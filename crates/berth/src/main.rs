//! `berth`: one binary for the container runtime (and, later, images, engine and build).
//!
//! Invoked as `runc` or `berth-runc` (a symlink), it behaves exactly like `berth runtime`,
//! which is how dockerd, containerd and podman call an OCI runtime.

mod build_cmd;
mod build_output;
mod build_progress;
mod client;
mod container_cmd;
mod daemon_cmd;
mod image_api;
mod image_cmd;
mod progress;
mod runtime_cmd;
mod table;
mod template;

use std::ffi::OsString;
use std::path::Path;

const USAGE: &str = "berth: a container engine in one binary

Usage: berth [-H SOCKET] <COMMAND> [ARGS...]
       berth --data-root DIR <IMAGE COMMAND> [ARGS...]

Containers and images go through the daemon: -H/--host SOCKET (unix:///path or a path), else
$BERTH_HOST, else /run/berth/berth.sock.

Containers:
  run        Create and run a new container from an image
  create     Create a new container
  start      Start one or more stopped containers
  stop       Stop one or more running containers
  restart    Restart one or more containers
  kill       Kill one or more running containers
  rm         Remove one or more containers
  ps         List containers
  logs       Fetch the logs of a container
  exec       Run a command in a running container
  attach     Attach to a running container's input and output
  inspect    Display detailed information on containers, images or volumes
  wait       Block until containers stop, then print their exit codes
  top        Display the running processes of a container
  pause      Pause all processes within one or more containers
  unpause    Unpause all processes within one or more containers
  rename     Rename a container
  port       List port mappings of a container
  cp         Copy files between a container and the local filesystem
  commit     Create a new image from a container's changes
  stats      Display a live view of containers' resource usage
  events     Get real-time events from the daemon
  volume     Manage volumes (create, ls, inspect, rm, prune)
  network    Manage networks (ls, inspect; bridge, host and none)
  info       Display system-wide information from the daemon

Images:
  pull       Download an image from a registry
  push       Upload an image to a registry
  images     List images
  tag        Create a tag that refers to an image
  rmi        Remove images
  image      Manage images (ls, pull, push, tag, rm, inspect, history, prune, save, load, import)
  save       Save images to a tar archive (docker-archive and OCI layout in one)
  load       Load images from a tar archive (docker-archive or OCI layout)
  import     Create an image from a root filesystem tarball
  history    Show the history of an image
  login      Log in to a registry (credentials in Docker's config.json)
  logout     Log out from a registry

  With --data-root DIR before the command, the image commands (and system prune) work offline:
  directly on the image store under DIR, without a daemon.

System:
  system     Manage Berth (df, prune, info)
  builder    Manage the build cache (prune, du)
  version    Show the client's version and the daemon's
  daemon     Run the engine: the Docker Engine API on /run/berth/berth.sock
  runtime    Run containers from OCI bundles (runc-compatible; see `berth runtime --help`)
  help       Print this help

Symlink berth as `berth-runc` to use it as an OCI runtime binary for dockerd or podman.";

fn main() {
    let args: Vec<OsString> = std::env::args_os().collect();
    let argv0 = args
        .first()
        .and_then(|a| Path::new(a).file_name())
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let code = if argv0 == "runc" || argv0.starts_with("berth-runc") {
        runtime_cmd::main(args)
    } else {
        // The first word that is not the global --data-root option names the command.
        let mut i = 1;
        while let Some(a) = args.get(i).and_then(|a| a.to_str()) {
            match a {
                "--data-root" | "-H" | "--host" => i += 2,
                _ if a.starts_with("--data-root=") || a.starts_with("--host=") => i += 1,
                _ => break,
            }
        }
        match args.get(i).and_then(|a| a.to_str()) {
            Some("runtime") => {
                let mut rest = vec![OsString::from("berth runtime")];
                rest.extend(args.into_iter().skip(i + 1));
                runtime_cmd::main(rest)
            }
            Some("system") if args.get(i + 1).and_then(|a| a.to_str()) == Some("info") => {
                // `system info` is `info`, the container verbs' business.
                let mut v = args.clone();
                v.remove(i);
                container_cmd::main(without_global(&v, i, "--data-root"))
            }
            Some(
                "pull" | "push" | "images" | "tag" | "rmi" | "image" | "save" | "load" | "import" | "build" | "history"
                | "login" | "logout" | "system",
            ) => {
                // --data-root before the verb: today's offline mode on that store, no daemon.
                let direct = args[1..i]
                    .iter()
                    .any(|a| a.to_str().is_some_and(|a| a == "--data-root" || a.starts_with("--data-root=")));
                if direct {
                    image_cmd::main(without_global(&args, i, "--host"))
                } else {
                    image_api::main(without_global(&args, i, "--data-root"))
                }
            }
            Some(
                "run" | "create" | "start" | "stop" | "restart" | "kill" | "rm" | "ps" | "logs" | "exec" | "attach"
                | "inspect" | "wait" | "top" | "pause" | "unpause" | "rename" | "port" | "volume" | "network" | "info"
                | "stats" | "events" | "cp" | "commit",
            ) => {
                // Global options before the verb: -H passes on, --data-root is the daemon's business.
                container_cmd::main(without_global(&args, i, "--data-root"))
            }
            Some("version" | "builder") => image_api::main(without_global(&args, i, "--data-root")),
            Some("daemon") => {
                let mut rest = vec![OsString::from("berth daemon")];
                rest.extend(args.into_iter().skip(i + 1));
                daemon_cmd::daemon_main(rest)
            }
            Some("monitor") => {
                let mut rest = vec![OsString::from("berth monitor")];
                rest.extend(args.into_iter().skip(i + 1));
                daemon_cmd::monitor_main(rest)
            }
            Some("--version") | Some("-V") => {
                println!("berth version {}", env!("CARGO_PKG_VERSION"));
                0
            }
            Some("help") | Some("--help") | Some("-h") | None => {
                println!("{USAGE}");
                0
            }
            Some(other) => {
                eprintln!("berth: unknown command {other:?}; see `berth help`");
                125
            }
        }
    };
    std::process::exit(code);
}

/// `args` without the global option `drop` (`--data-root` or `--host`/`-H`, with its value)
/// where it appears before the verb at `verb`.
fn without_global(args: &[OsString], verb: usize, drop: &str) -> Vec<OsString> {
    let names: &[&str] = if drop == "--host" { &["--host", "-H"] } else { &[drop] };
    let mut rest = vec![OsString::from("berth")];
    let mut j = 1;
    while j < args.len() {
        match args[j].to_str() {
            Some(a) if j < verb && names.contains(&a) => j += 2,
            Some(a) if j < verb && a.starts_with(&format!("{drop}=")) => j += 1,
            _ => {
                rest.push(args[j].clone());
                j += 1;
            }
        }
    }
    rest
}
