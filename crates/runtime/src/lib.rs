//! berth-runtime: an OCI runtime-spec (1.2) bundle turned into an isolated process.
//!
//! The entry points are in [`container`] (create, start, run, exec, kill, delete, ...);
//! [`defaults`] writes Docker-equivalent specs; [`sealed`] guards the binary against
//! CVE-2019-5736. See ARCHITECTURE.md for the process tree and the invariants.

pub mod caps;
pub mod channel;
pub mod container;
pub mod defaults;
pub mod error;
pub mod hooks;
pub mod process;
pub mod rootfs;
pub mod sealed;
pub mod spec;
pub mod state;
pub mod sys;
pub mod tty;

pub use error::{Error, Result};
