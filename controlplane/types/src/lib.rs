//! The Kubernetes object model as Wasmkube serves it.
//!
//! This crate owns the API types (re-exported from `k8s-openapi`, Kubernetes 1.33),
//! the [`registry`] of every built-in kind with the facts that routing, discovery and
//! store keys are derived from, label and field [`selector`]s, the name and label
//! [`validation`] rules of Kubernetes, [`cron`] schedules, IPv4 [`cidr`] ranges, the [`patch`] metadata of every kind with
//! the strategic merge patch that reads it, Wasmkube's own kind, the
//! [`plugin::Plugin`], and the [`strategy`] of every kind: its defaults, its
//! validation (reported as [`field`] errors) and what its writes and deletes do,
//! and the [`status::Status`] of an API call as Kubernetes writes it.
//!
//! It does no I/O and depends on no runtime (no tokio, axum, etcd or wasmtime): every
//! other crate can use it, and it can be used from anywhere.

pub mod cidr;
pub mod cron;
pub mod field;
pub mod patch;
pub mod plugin;
pub mod registry;
pub mod selector;
pub mod status;
pub mod strategy;
pub mod table;
pub mod validation;

pub use k8s_openapi;
pub use registry::{ResourceType, Subresource, Verb};

/// The Kubernetes minor version whose API Wasmkube serves.
pub const KUBERNETES_VERSION: (u32, u32) = (1, 33);

/// Where a node's agent dials home: a `GET` the API server upgrades to
/// [`TUNNEL_PROTOCOL`] and keeps, to reach that agent through it.
pub const TUNNEL_PATH: &str = "/wasmkube/v1/connect";
/// The protocol a connection home is upgraded to.
pub const TUNNEL_PROTOCOL: &str = "wasmkube-tunnel";
