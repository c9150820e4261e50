//! berth-registry: a client for the OCI distribution spec / Docker Registry HTTP API v2.
//!
//! - [`Client`]: one per command; resolves manifests (with platform selection from an index),
//!   streams blobs (with `Range` resume), pushes blobs and manifests.
//! - [`auth`]: the `WWW-Authenticate` challenge (Bearer token flow as Docker Hub does it, and
//!   Basic), and credentials in Docker's `config.json` (`login`/`logout`).
//! - [`platform`]: `os/arch[/variant]` and matching against an index.
//!
//! Plain HTTP is used only for registries on loopback and for those listed as insecure; for
//! those, HTTPS is tried first and HTTP is the fallback (like dockerd). Every error is one line
//! naming the registry, the repository and the cause, including the registry's own error code.
//! The client is blocking (ureq): callers download layers concurrently on threads.

pub mod auth;
mod client;
mod error;
pub mod platform;
pub mod pull;
pub mod push;

pub use client::{Client, ClientOptions, Descriptor, ImageManifest, PulledManifest, MAX_MANIFEST_SIZE};
pub use error::{Error, Result};
pub use platform::Platform;

/// Media types this client understands.
pub mod media {
    pub const OCI_INDEX: &str = "application/vnd.oci.image.index.v1+json";
    pub const OCI_MANIFEST: &str = "application/vnd.oci.image.manifest.v1+json";
    pub const DOCKER_LIST: &str = "application/vnd.docker.distribution.manifest.list.v2+json";
    pub const DOCKER_MANIFEST: &str = "application/vnd.docker.distribution.manifest.v2+json";
    pub const DOCKER_SCHEMA1: &str = "application/vnd.docker.distribution.manifest.v1+json";
    pub const DOCKER_SCHEMA1_SIGNED: &str = "application/vnd.docker.distribution.manifest.v1+prettyjws";
    pub const DOCKER_CONFIG: &str = "application/vnd.docker.container.image.v1+json";
    pub const OCI_CONFIG: &str = "application/vnd.oci.image.config.v1+json";

    /// True for layers a registry need not serve (foreign / non-distributable): pull falls back
    /// to their descriptor's `urls`, push does not upload them (OCI image spec, layer.md).
    pub fn is_foreign_layer(media_type: &str) -> bool {
        media_type == "application/vnd.docker.image.rootfs.foreign.diff.tar.gzip"
            || media_type.starts_with("application/vnd.oci.image.layer.nondistributable.")
    }
}
