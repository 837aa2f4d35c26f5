//! Kubernetes' scheduling semantics, in one place: which taints a pod
//! tolerates ([`taints`]), which nodes its node name, node selector and node
//! affinity select and how its preferred terms weigh them
//! ([`node_affinity`]), which pods a label selector selects
//! ([`label_selector`]), and what a pod requests and whether it fits what a
//! node has left ([`resources`]). Each follows the upstream code it is named
//! after (`k8s.io/component-helpers/scheduling/corev1`, `nodeaffinity`,
//! `component-helpers/resource`, the NodeResourcesFit plugin), with the
//! reasons kube-scheduler gives.
//!
//! The controllers (DaemonSets, node lifecycle) use it natively and the
//! default scheduler plugins use it inside Wasm guests, so both sides judge
//! a pod the same way. It must stay dependency-light: k8s-openapi (without
//! schemars) and `wasmkube-quantity`, no IO, no runtime (no tokio, kube or
//! wasmtime), nothing that does not build for `wasm32-wasip2`.

pub mod label_selector;
pub mod node_affinity;
mod requirement;
pub mod resources;
pub mod taints;

pub use requirement::Error;
