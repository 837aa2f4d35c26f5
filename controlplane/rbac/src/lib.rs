//! Role-based access control for the API server, with Kubernetes' semantics
//! (`plugin/pkg/auth/authorizer/rbac`, `pkg/registry/rbac`).
//!
//! - [`Index`]: the cluster's Roles, ClusterRoles, RoleBindings and
//!   ClusterRoleBindings, changed one object at a time, with the bindings
//!   indexed by subject so that a decision reads only the bindings of the
//!   user's name and groups. It decides ([`Index::authorize`]) and lists what
//!   a user may do in a namespace ([`Index::rules`]) as Kubernetes' RBAC
//!   authorizer does.
//! - [`Rbac`]: the API server's [`Authorizer`](wasmkube_apiserver::access::Authorizer)
//!   over a shared index; [`Rbac::follow`] loads it from the store and keeps
//!   it current by watching.
//! - [`Escalation`]: the validating admission plugin that refuses a Role,
//!   ClusterRole or binding granting what its writer does not hold, unless
//!   the writer may `escalate` or `bind`.
//! - [`aggregate`]: the rules of an aggregated ClusterRole, as the
//!   clusterrole-aggregation controller computes them.
//! - [`NodeAuthorizer`]: Kubernetes' Node authorizer, which lets a node read
//!   the Secrets, ConfigMaps, claims and volumes its pods use (a [`Graph`] of
//!   them, which [`NodeGraph::follow`] keeps current from the store) and do
//!   what the `system:node` role of the default policy allows.
//! - [`NodeRestriction`]: the admission plugin that limits a node's writes to
//!   its own Node, Lease and pods.
//! - [`bootstrap`]: the default policy (`cluster-admin`, `admin`, `edit`,
//!   `view`, the `system:` roles of components and controllers, and their
//!   bindings), and [`reconcile`], which brings a stored default object
//!   back to it at every start.
//!
//! This crate owns no HTTP and no storage format: it reads the API server's
//! interfaces (`wasmkube-apiserver`) and the store trait (`wasmkube-store`),
//! and must not depend on a store backend or on the controllers.

mod aggregation;
mod authorizer;
mod bootstrap;
mod escalation;
mod follow;
mod graph;
mod index;
mod node;
mod reconcile;
mod restriction;
mod rules;

pub use aggregation::{aggregate, same_rules};
pub use authorizer::Rbac;
pub use bootstrap::{
    AGGREGATE_TO_ADMIN, AGGREGATE_TO_EDIT, AGGREGATE_TO_VIEW, AUTOUPDATE_ANNOTATION,
    BOOTSTRAPPING_LABEL, JOINING_NODES, bootstrap,
};
pub use escalation::{Escalation, SYSTEM_MASTERS, confirm_no_escalation, covers};
pub use graph::{Graph, MIRROR_POD_ANNOTATION, NodeGraph, Vertex};
pub use index::{GROUP, Index, Kind, Unresolved, service_account_user};
pub use node::{NODE_LEASE_NAMESPACE, NODE_USER_PREFIX, NODES_GROUP, NodeAuthorizer, node_name};
pub use reconcile::reconcile;
pub use restriction::NodeRestriction;
pub use rules::{ALL, compact_string, rule_allows};

/// Why objects could not be read.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// An object is not a valid object of its kind.
    #[error("invalid {kind} {name:?}: {source}")]
    Decode {
        /// The kind it was read as.
        kind: Kind,
        /// Its name (or store key), as far as it could be read.
        name: String,
        /// What is wrong with it.
        #[source]
        source: serde_json::Error,
    },
    /// An object is none of the four RBAC kinds.
    #[error("not an RBAC object: apiVersion {api_version:?}, kind {kind:?}")]
    NotRbac {
        /// Its `apiVersion`.
        api_version: String,
        /// Its `kind`.
        kind: String,
    },
    /// The store could not be read.
    #[error("reading objects from the store: {0}")]
    Store(#[source] wasmkube_store::Error),
}

/// A result of this crate.
pub type Result<T, E = Error> = std::result::Result<T, E>;
