//! Nodes: a node registers with its status, which a create keeps, as
//! Kubernetes keeps it.

use serde_json::Value;

use super::Strategy;

/// Nodes.
#[derive(Debug)]
pub(crate) struct Nodes;

/// The strategy of nodes.
pub(crate) static NODES: Nodes = Nodes;

impl Strategy for Nodes {
    fn reset_status(&self, _node: &mut Value) {}
}
