//! berth-image: the image side of Berth, below the registry client and the commands.
//!
//! - [`reference`](mod@reference): Docker-compatible image references (`alpine` = `docker.io/library/alpine:latest`).
//! - [`digest`]: sha256 digests and streaming hashers.
//! - [`store`]: the content-addressed blob store with verified, atomic, resumable ingest.
//! - [`unpack`]: applying a layer tar to a snapshot directory (overlay or flattened), safely,
//!   returning its DiffID; [`compression`] sniffs and decompresses gzip/zstd layers.
//!
//! Each module documents its invariants. Errors are [`Error`]: one line, with an [`ErrorKind`].

pub mod compression;
pub mod diff;
pub mod digest;
pub mod docker_archive;
pub mod error;
pub mod imagestore;
pub mod reference;
pub mod safepath;
pub mod store;
mod sys;
pub mod unpack;

pub use digest::{Digest, HashReader, Hasher};
pub use error::{Error, ErrorKind, Result};
pub use imagestore::{ImageRecord, ImageStore, LayerDesc};
pub use reference::Reference;
pub use store::Store;
pub use unpack::{apply_layer, ApplyMode, LayerStats};
