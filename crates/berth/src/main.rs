//! `berth`: one binary for the container runtime (and, later, images, engine and build).
//!
//! Invoked as `runc` or `berth-runc` (a symlink), it behaves exactly like `berth runtime`,
//! which is how dockerd, containerd and podman call an OCI runtime.

mod runtime_cmd;
mod table;

use std::ffi::OsString;
use std::path::Path;

const USAGE: &str = "berth: a container engine in one binary

Usage: berth <COMMAND> [ARGS...]

Commands:
  runtime    Run containers from OCI bundles (runc-compatible; see `berth runtime --help`)
  version    Print the version
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
        match args.get(1).and_then(|a| a.to_str()) {
            Some("runtime") => {
                let mut rest = vec![OsString::from("berth runtime")];
                rest.extend(args.into_iter().skip(2));
                runtime_cmd::main(rest)
            }
            Some("version") | Some("--version") | Some("-V") => {
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
