//! Admission: the plugins every write passes once decoded, as Kubernetes' admission
//! chain runs them. Mutating plugins run first and may change the object; the
//! kind's strategy validates it; then validating plugins, which may only refuse.
//! Each sees an [`AdmissionRequest`]: what is written (kind, resource, subresource,
//! operation), by whom, the object and the object it replaces, and whether it is a
//! dry run.
//!
//! The server holds the chain ([`crate::Access`]); until plugins are configured it
//! is empty, and a write is only validated.

use std::sync::Arc;

use futures::future::BoxFuture;
use serde_json::Value;
use wasmkube_types::ResourceType;

use crate::access::UserInfo;
use crate::error::ApiResult;

/// What a write does, as admission names it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Operation {
    /// A new object (or a subresource posted to: a binding, an eviction).
    Create,
    /// A changed object: a replace, a patch, an apply, a status or scale write.
    Update,
    /// An object deleted.
    Delete,
}

impl Operation {
    /// The operation as an AdmissionReview spells it: `CREATE`, `UPDATE`, `DELETE`.
    pub const fn as_str(self) -> &'static str {
        match self {
            Operation::Create => "CREATE",
            Operation::Update => "UPDATE",
            Operation::Delete => "DELETE",
        }
    }
}

/// One write as admission plugins see it (the fields of Kubernetes'
/// `AdmissionRequest`).
#[derive(Debug)]
pub struct AdmissionRequest<'a> {
    /// Group of the object written ("" for core).
    pub group: &'a str,
    /// Version of the object written.
    pub version: &'a str,
    /// Kind of the object written: the resource's, or the subresource's (`Scale`,
    /// `Binding`).
    pub kind: &'a str,
    /// The resource written to.
    pub resource: &'static ResourceType,
    /// The subresource written to, if any: `status`, `scale`, `binding`.
    pub subresource: Option<&'a str>,
    /// The object's name.
    pub name: &'a str,
    /// The object's namespace, if its kind is namespaced.
    pub namespace: Option<&'a str>,
    /// What the write does.
    pub operation: Operation,
    /// Who writes.
    pub user: &'a UserInfo,
    /// The object as it will be stored; `None` for a delete. Mutating plugins may
    /// change it.
    pub object: Option<Value>,
    /// The object it replaces or deletes; `None` for a create.
    pub old_object: Option<&'a Value>,
    /// Whether the write is a dry run, which stores nothing.
    pub dry_run: bool,
    /// What the plugins warn the client of.
    pub warnings: std::sync::Mutex<Vec<String>>,
}

impl AdmissionRequest<'_> {
    /// Adds `warnings` to those the client gets.
    pub fn warn(&self, warnings: impl IntoIterator<Item = String>) {
        let mut held = self.warnings.lock().expect("warnings lock");
        held.extend(warnings);
    }
}

/// An admission plugin that may change what is written.
pub trait MutatingAdmission: Send + Sync {
    /// Changes `request.object` as the plugin wants it; an error (a Status with
    /// its code, usually 403 or 422) refuses the write.
    fn admit<'a>(&'a self, request: &'a mut AdmissionRequest<'_>) -> BoxFuture<'a, ApiResult<()>>;
}

/// An admission plugin that may refuse what is written, once it is validated.
pub trait ValidatingAdmission: Send + Sync {
    /// `Ok` to let the write go on; an error (a Status with its code) refuses it.
    fn validate<'a>(&'a self, request: &'a AdmissionRequest<'_>) -> BoxFuture<'a, ApiResult<()>>;
}

/// The admission chain: every mutating plugin, then (after validation) every
/// validating one, each in order.
#[derive(Clone, Default)]
pub struct Admission {
    /// The plugins that may change what is written.
    pub mutating: Vec<Arc<dyn MutatingAdmission>>,
    /// The plugins that may refuse it.
    pub validating: Vec<Arc<dyn ValidatingAdmission>>,
}

impl std::fmt::Debug for Admission {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Admission")
            .field("mutating", &self.mutating.len())
            .field("validating", &self.validating.len())
            .finish()
    }
}
