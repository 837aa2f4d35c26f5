//! Encryption at rest, as the Kubernetes API server does it.
//!
//! [`EncryptionConfig`] reads Kubernetes' `EncryptionConfiguration` file (the
//! API server's `--encryption-provider-config`): which resources are encrypted,
//! with which providers (`aescbc`, `aesgcm`, `secretbox`, `identity`) and keys.
//! [`Encrypted`] wraps any [`Store`](wasmkube_store::Store), the embedded one or
//! etcd, and keeps the values of those resources encrypted in it, in the API
//! server's own layout (`k8s:enc:aescbc:v1:<key name>:…`), so an etcd written by
//! one can be read by the other with the same configuration.
//!
//! Keys are rotated as in Kubernetes: list the new key first and the old one
//! after it; values are read with whichever key wrote them, and each rewrite
//! encrypts with the new one. One departure: a value that is not encrypted at
//! all is read as it is even when `identity` is not listed, so turning
//! encryption on loses nothing written before.
//!
//! This crate owns the configuration format, the ciphers and the wrapper; it
//! depends on the store trait and the resource registry (to find which resource
//! a store key belongs to), never on a store backend or a runtime.

mod config;
mod provider;
mod resource;
mod store;

pub use config::{API_VERSION, ConfigError, EncryptionConfig, KIND};
pub use provider::TransformError;
pub use store::Encrypted;
