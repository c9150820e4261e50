#![recursion_limit = "256"]
//! berth-engine: `berth daemon`, the Docker Engine API on a unix socket, and the per-container
//! monitor processes it starts.
//!
//! - [`http`]: the HTTP/1.1 server (thread per connection, hijacking for attach).
//! - [`api`]: routes → handlers; version negotiation; Docker's JSON shapes.
//! - [`daemon`]: containers (records on disk, start/stop/wait/remove, re-adoption after a
//!   daemon restart) and the image store.
//! - [`exec`]: processes started in running containers (`docker exec`), each under a monitor.
//! - [`events`]: the in-memory event log behind `/events`.
//! - [`stats`]: `/containers/{id}/stats` from the container's cgroups.
//! - [`health`]: healthchecks, probed as execs.
//! - [`spec`]: Docker's container config → OCI runtime spec.
//! - [`volumes`]: named and anonymous volumes of the local driver.
//! - [`network`]: the default bridge network: namespaces, veths, addresses, published ports.
//! - [`commit`]: `POST /commit`, a new image from a container's changes.
//! - [`images_api`]: image import, registry login, image list filters and prune.
//! - [`monitor`]: the process that runs one container and outlives the daemon.
//! - [`logs`]: json-file logs (write, rotate, read, follow).
//! - [`failpoint`]: named crash points for the crash-safety tests (`BERTH_FAILPOINT`).

pub mod api;
pub mod archive;
pub mod build;
pub mod build_prune;
pub mod commit;
pub mod daemon;
pub mod events;
pub mod exec;
pub mod failpoint;
pub mod health;
pub mod http;
pub mod images_api;
pub mod logs;
pub mod monitor;
pub mod network;
pub mod spec;
pub mod stats;
pub mod volumes;

/// The newest Engine API version served (docker CLI 28 speaks up to 1.50).
pub const API_VERSION: &str = "1.50";
/// The oldest one accepted.
pub const MIN_API_VERSION: &str = "1.24";
/// What `/version` reports as the engine version.
pub const DOCKER_VERSION: &str = env!("CARGO_PKG_VERSION");
