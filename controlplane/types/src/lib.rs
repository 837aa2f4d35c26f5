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

/// The longest wait any field or parameter in seconds turns into: ten years.
/// Larger values (up to `i64::MAX` seconds is valid API input) would overflow
/// the clock arithmetic they meet.
pub const MAX_WAIT: std::time::Duration = std::time::Duration::from_secs(10 * 365 * 24 * 3600);

/// `seconds` (a field such as `activeDeadlineSeconds`) as a wait: negative is
/// none, and no wait is longer than [`MAX_WAIT`].
pub fn seconds(seconds: i64) -> std::time::Duration {
    std::time::Duration::from_secs(u64::try_from(seconds).unwrap_or(0)).min(MAX_WAIT)
}

#[cfg(test)]
mod tests {
    #[test]
    fn seconds_are_clamped() {
        assert_eq!(super::seconds(-5).as_secs(), 0);
        assert_eq!(super::seconds(30).as_secs(), 30);
        assert_eq!(super::seconds(i64::MAX), super::MAX_WAIT);
        // The clamped wait still adds to the clock.
        let _ = std::time::Instant::now() + super::seconds(i64::MAX);
    }
}
