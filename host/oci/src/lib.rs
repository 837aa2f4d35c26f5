//! Wasm components as OCI artifacts: the node's image store and the registry
//! side of it.
//!
//! - [`ImageStore`] keeps components by digest under a data dir, with tags
//!   naming them (`wasmkube image import`).
//! - [`ImageStore::pull`] fetches a reference from an OCI registry: a
//!   component into the store, an OCI container image recognised as one (for
//!   a CRI runtime); [`push`] publishes a component.
//! - [`push_via`] and [`ImageStore::pull_via`] do the same with the cluster's
//!   own registry, through a client of its API server (`kube::Client`), which
//!   holds the caller's identity; [`same_registry`] tells which references
//!   name it.
//!
//! It compiles and runs nothing: the runtime and the scheduler hand what it
//! stores to the engine.

mod cluster;
mod images;
mod registry;

use sha2::{Digest as _, Sha256};

pub use cluster::{push_via, same_registry};
pub use images::{Image, ImageError, ImageStore, normalize};
pub use registry::{Credentials, PullError, Pulled, names_a_registry, push, registry_of};

/// The largest Wasm layer pulled: a manifest declaring more is refused before
/// any byte is fetched, and no registry is read past what its manifest
/// declared.
pub const MAX_LAYER: u64 = 256 << 20;

/// The digest of `bytes`, as OCI spells it: `sha256:<hex>`.
pub fn digest(bytes: &[u8]) -> String {
    format!("sha256:{:x}", Sha256::digest(bytes))
}
