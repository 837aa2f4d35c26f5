//! The resource registry: one table of every built-in kind Wasmkube serves.
//!
//! Group, version, kind, plural and scope come from the `k8s-openapi` type of each
//! kind, so the table cannot disagree with the types it serves; the rest (short
//! names, verbs, subresources, categories, field selectors, the store key prefix)
//! is written once here, with the kind's [`Strategy`]: its defaults, validation and
//! what its writes and deletes do. Routing, discovery, store keys and the request
//! pipeline are all derived from it: adding a kind is adding a row (and, for a kind
//! with rules of its own, a strategy).

use k8s_openapi::api::{
    admissionregistration::v1 as admissionregistration, apps::v1 as apps,
    authentication::v1 as authentication, authorization::v1 as authorization,
    autoscaling::v2 as autoscaling, batch::v1 as batch, certificates::v1 as certificates,
    coordination::v1 as coordination, core::v1 as core, discovery::v1 as discovery,
    networking::v1 as networking, node::v1 as node, policy::v1 as policy, rbac::v1 as rbac,
    scheduling::v1 as scheduling, storage::v1 as storage,
};
use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1 as apiextensions;
use k8s_openapi::serde::de::DeserializeOwned;
use k8s_openapi::{ClusterResourceScope, NamespaceResourceScope, Resource};
use schemars::{JsonSchema, Schema, SchemaGenerator};
use serde_json::Value;

use crate::strategy::{self as s, Strategy};
use crate::table::{self, Column};

/// Decodes `object` as a `T`, and says which field did not decode.
fn check_as<T: DeserializeOwned>(object: &Value) -> Result<(), String> {
    match serde_path_to_error::deserialize::<_, T>(object) {
        Ok(_) => Ok(()),
        Err(e) if e.path().to_string() == "." => Err(e.inner().to_string()),
        Err(e) => Err(format!("{}: {}", e.path(), e.inner())),
    }
}

/// A verb of the Kubernetes API, as listed in discovery documents.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Verb {
    /// POST a new object.
    Create,
    /// DELETE one object.
    Delete,
    /// DELETE every object matching a selector.
    DeleteCollection,
    /// GET one object.
    Get,
    /// GET a collection.
    List,
    /// PATCH one object.
    Patch,
    /// PUT one object.
    Update,
    /// GET a collection with `watch=true`.
    Watch,
}

impl Verb {
    /// The verb as discovery documents and RBAC rules spell it.
    pub const fn as_str(self) -> &'static str {
        match self {
            Verb::Create => "create",
            Verb::Delete => "delete",
            Verb::DeleteCollection => "deletecollection",
            Verb::Get => "get",
            Verb::List => "list",
            Verb::Patch => "patch",
            Verb::Update => "update",
            Verb::Watch => "watch",
        }
    }
}

/// The verbs of an ordinary stored kind.
pub const ALL_VERBS: &[Verb] = &[
    Verb::Create,
    Verb::Delete,
    Verb::DeleteCollection,
    Verb::Get,
    Verb::List,
    Verb::Patch,
    Verb::Update,
    Verb::Watch,
];
const CREATE_ONLY: &[Verb] = &[Verb::Create];
const GET_ONLY: &[Verb] = &[Verb::Get];
const GET_PATCH_UPDATE: &[Verb] = &[Verb::Get, Verb::Patch, Verb::Update];

/// A subresource of a kind (`pods/status`, `deployments/scale`, …).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Subresource {
    /// The path segment after the object's name.
    pub name: &'static str,
    /// Group of the kind the subresource reads and writes ("" for core).
    pub group: &'static str,
    /// Version of that kind.
    pub version: &'static str,
    /// That kind (the parent's own kind for `status`).
    pub kind: &'static str,
    /// What can be done with it.
    pub verbs: &'static [Verb],
    /// For a subresource that writes a part of its parent object (`status`,
    /// a CertificateSigningRequest's `approval`): the JSON pointer of that
    /// part. A write through it changes that part alone.
    pub part: Option<&'static str>,
}

impl Subresource {
    /// `status`: the parent kind, read and written apart from its spec.
    const STATUS: Subresource = Subresource {
        name: "status",
        group: "",
        version: "",
        kind: "",
        verbs: GET_PATCH_UPDATE,
        part: Some("/status"),
    };

    /// `approval`: a CertificateSigningRequest, of which a write changes the
    /// conditions alone (approving or denying it).
    const APPROVAL: Subresource = Subresource {
        name: "approval",
        part: Some("/status/conditions"),
        ..Subresource::STATUS
    };

    const fn scale() -> Subresource {
        of_kind::<k8s_openapi::api::autoscaling::v1::Scale>("scale", GET_PATCH_UPDATE)
    }

    /// Whether the subresource reads and writes the parent kind itself.
    pub fn is_parent_kind(&self) -> bool {
        self.kind.is_empty()
    }
}

const fn of_kind<T: Resource>(name: &'static str, verbs: &'static [Verb]) -> Subresource {
    Subresource {
        name,
        group: T::GROUP,
        version: T::VERSION,
        kind: T::KIND,
        verbs,
        part: None,
    }
}

/// Maps a `k8s-openapi` scope marker to "namespaced or not".
pub trait Scope {
    /// True for namespaced kinds.
    const NAMESPACED: bool;
}

impl Scope for NamespaceResourceScope {
    const NAMESPACED: bool = true;
}

impl Scope for ClusterResourceScope {
    const NAMESPACED: bool = false;
}

/// Everything Wasmkube knows about one kind.
#[derive(Clone, Copy, Debug)]
pub struct ResourceType {
    /// API group, "" for the core group.
    pub group: &'static str,
    /// API version within the group.
    pub version: &'static str,
    /// Kind, as in the `kind` field of objects.
    pub kind: &'static str,
    /// The plural resource name used in URLs.
    pub plural: &'static str,
    /// Short names kubectl accepts (`po`, `svc`, …).
    pub short_names: &'static [&'static str],
    /// Whether objects live in namespaces.
    pub namespaced: bool,
    /// The verbs the kind supports.
    pub verbs: &'static [Verb],
    /// The subresources the kind supports.
    pub subresources: &'static [Subresource],
    /// Categories (`all` makes `kubectl get all` list the kind).
    pub categories: &'static [&'static str],
    /// Field selector labels beyond `metadata.name` and `metadata.namespace`.
    pub field_labels: &'static [&'static str],
    /// Where objects are kept under `/registry/`; `None` for kinds that are never
    /// stored (a Binding is an action on a pod).
    pub storage_prefix: Option<&'static str>,
    /// The columns of `kubectl get`.
    pub columns: &'static [Column],
    /// Checks that an object decodes as the kind's type; the error names the field.
    pub check: fn(&Value) -> Result<(), String>,
    /// The OpenAPI schema of the kind's objects (a reference into the generator's
    /// definitions, which it fills).
    pub schema: fn(&mut SchemaGenerator) -> Schema,
    /// What is particular to the kind's objects: defaults, validation, and what a
    /// create, an update or a delete does to them.
    pub strategy: &'static dyn Strategy,
    /// For a kind that is an action on another kind's objects rather than stored
    /// (`action` sets it): the plural of that kind and the subresource the action
    /// is. A Binding posted to `bindings` binds the pod it names, as one posted to
    /// `pods/<name>/binding` does.
    pub acts_on: Option<(&'static str, &'static str)>,
    /// Whether the server answers a create of the kind rather than storing it
    /// (`answered` sets it): a review of a token or of what a user may do comes
    /// back with its status filled in.
    pub answered: bool,
}

/// Kinds are the same when their group, version and kind are.
impl PartialEq for ResourceType {
    fn eq(&self, other: &Self) -> bool {
        (self.group, self.version, self.kind) == (other.group, other.version, other.kind)
    }
}

impl Eq for ResourceType {}

impl ResourceType {
    /// A stored kind with every verb and no subresource, facts taken from its type.
    pub const fn of<T>() -> ResourceType
    where
        T: Resource + DeserializeOwned + JsonSchema,
        T::Scope: Scope,
    {
        ResourceType {
            group: T::GROUP,
            version: T::VERSION,
            kind: T::KIND,
            plural: T::URL_PATH_SEGMENT,
            short_names: &[],
            namespaced: <T::Scope as Scope>::NAMESPACED,
            verbs: ALL_VERBS,
            subresources: &[],
            categories: &[],
            field_labels: &[],
            storage_prefix: Some(T::URL_PATH_SEGMENT),
            columns: table::DEFAULT,
            check: check_as::<T>,
            schema: SchemaGenerator::subschema_for::<T>,
            strategy: &s::PLAIN,
            acts_on: None,
            answered: false,
        }
    }

    /// A kind a CustomResourceDefinition defines: every verb, no field labels of its
    /// own, kept under `/registry/<group>/<plural>/`, its objects checked by the
    /// definition's schema rather than by a type. `storage_prefix` is
    /// `<group>/<plural>`.
    #[allow(clippy::too_many_arguments)]
    pub fn custom(
        group: &'static str,
        version: &'static str,
        kind: &'static str,
        plural: &'static str,
        namespaced: bool,
        short_names: &'static [&'static str],
        categories: &'static [&'static str],
        subresources: &'static [Subresource],
        storage_prefix: &'static str,
    ) -> ResourceType {
        ResourceType {
            group,
            version,
            kind,
            plural,
            short_names,
            namespaced,
            verbs: ALL_VERBS,
            subresources,
            categories,
            field_labels: &[],
            storage_prefix: Some(storage_prefix),
            columns: table::DEFAULT,
            check: |_| Ok(()),
            schema: |_| schemars::json_schema!({"type": "object"}),
            strategy: &s::CUSTOM,
            acts_on: None,
            answered: false,
        }
    }

    const fn columns(mut self, columns: &'static [Column]) -> Self {
        self.columns = columns;
        self
    }

    const fn short(mut self, names: &'static [&'static str]) -> Self {
        self.short_names = names;
        self
    }

    const fn sub(mut self, subresources: &'static [Subresource]) -> Self {
        self.subresources = subresources;
        self
    }

    const fn in_all(mut self) -> Self {
        self.categories = &["all"];
        self
    }

    const fn fields(mut self, labels: &'static [&'static str]) -> Self {
        self.field_labels = labels;
        self
    }

    const fn stored_as(mut self, prefix: &'static str) -> Self {
        self.storage_prefix = Some(prefix);
        self
    }

    /// A kind whose objects are created only to act on an object of the kind
    /// called `plural`, as its `subresource`; they are never stored.
    const fn action(mut self, plural: &'static str, subresource: &'static str) -> Self {
        self.verbs = CREATE_ONLY;
        self.storage_prefix = None;
        self.acts_on = Some((plural, subresource));
        self
    }

    /// A kind the server answers rather than stores: created only, each create
    /// answered with the object and its status.
    const fn answered(mut self) -> Self {
        self.verbs = CREATE_ONLY;
        self.storage_prefix = None;
        self.answered = true;
        self
    }

    /// The kind with `strategy`.
    pub const fn strategy(mut self, strategy: &'static dyn Strategy) -> Self {
        self.strategy = strategy;
        self
    }

    /// `group/version`, or just `version` for the core group.
    pub fn api_version(&self) -> String {
        if self.group.is_empty() {
            self.version.to_owned()
        } else {
            format!("{}/{}", self.group, self.version)
        }
    }

    /// The singular name: the kind in lower case, as Kubernetes has it for built-ins.
    pub fn singular(&self) -> String {
        self.kind.to_ascii_lowercase()
    }

    /// Whether the kind supports `verb`.
    pub fn supports(&self, verb: Verb) -> bool {
        self.verbs.contains(&verb)
    }

    /// The subresource called `name`, if the kind has it.
    pub fn subresource(&self, name: &str) -> Option<&'static Subresource> {
        self.subresources.iter().find(|s| s.name == name)
    }

    /// Whether `label` can be used in a field selector on this kind.
    pub fn supports_field_label(&self, label: &str) -> bool {
        self.selectable_fields().any(|f| f == label)
    }

    /// Every field a field selector can name on this kind: `metadata.name`,
    /// `metadata.namespace` when namespaced, and the kind's own field labels.
    pub fn selectable_fields(&self) -> impl Iterator<Item = &'static str> + '_ {
        let namespace = self.namespaced.then_some("metadata.namespace");
        std::iter::once("metadata.name")
            .chain(namespace)
            .chain(self.field_labels.iter().copied())
    }

    /// The store key prefix of every object of this kind, ending in `/`:
    /// `/registry/pods/`, `/registry/services/specs/`, … `None` for kinds never stored.
    pub fn storage_root(&self) -> Option<String> {
        self.storage_prefix.map(|p| format!("/registry/{p}/"))
    }

    /// The store key prefix of the objects in `namespace` (all of them for cluster
    /// kinds or when `namespace` is `None`), ending in `/`.
    pub fn storage_collection(&self, namespace: Option<&str>) -> Option<String> {
        let root = self.storage_root()?;
        Some(match namespace {
            Some(ns) if self.namespaced => format!("{root}{ns}/"),
            _ => root,
        })
    }

    /// The store key of one object, laid out as Kubernetes lays out etcd:
    /// `/registry/<prefix>/<namespace>/<name>` or `/registry/<prefix>/<name>`.
    pub fn storage_key(&self, namespace: Option<&str>, name: &str) -> Option<String> {
        let root = self.storage_root()?;
        Some(match namespace {
            Some(ns) if self.namespaced => format!("{root}{ns}/{name}"),
            _ => format!("{root}{name}"),
        })
    }
}

const POD_FIELDS: &[&str] = &[
    "spec.nodeName",
    "spec.restartPolicy",
    "spec.schedulerName",
    "spec.serviceAccountName",
    "spec.hostNetwork",
    "status.phase",
    "status.podIP",
    "status.podIPs",
    "status.nominatedNodeName",
];
const EVENT_FIELDS: &[&str] = &[
    "involvedObject.kind",
    "involvedObject.namespace",
    "involvedObject.name",
    "involvedObject.uid",
    "involvedObject.apiVersion",
    "involvedObject.resourceVersion",
    "involvedObject.fieldPath",
    "reason",
    "reportingComponent",
    "source",
    "type",
];
const REPLICAS_FIELDS: &[&str] = &["status.replicas"];

const POD_SUBRESOURCES: &[Subresource] = &[
    Subresource::STATUS,
    of_kind::<core::Binding>("binding", CREATE_ONLY),
    of_kind::<policy::Eviction>("eviction", CREATE_ONLY),
    // A container's log: the API server reads it from the pod's node.
    Subresource {
        name: "log",
        group: "",
        version: "",
        kind: "",
        verbs: GET_ONLY,
        part: None,
    },
];
/// The subresources of CertificateSigningRequests: `status` (where a signer
/// writes the certificate) and `approval`.
const CSR_SUBRESOURCES: &[Subresource] = &[Subresource::STATUS, Subresource::APPROVAL];
/// The `status` subresource alone.
pub const STATUS: &[Subresource] = &[Subresource::STATUS];
/// The `status` and `scale` subresources.
pub const STATUS_AND_SCALE: &[Subresource] = &[Subresource::STATUS, Subresource::scale()];

/// Every built-in kind, in the order discovery lists them.
pub static BUILTIN: &[ResourceType] = &[
    // core/v1
    ResourceType::of::<core::Pod>()
        .short(&["po"])
        .sub(POD_SUBRESOURCES)
        .in_all()
        .fields(POD_FIELDS)
        .columns(table::POD)
        .strategy(&s::PODS),
    ResourceType::of::<core::Service>()
        .short(&["svc"])
        .sub(STATUS)
        .in_all()
        .stored_as("services/specs")
        .columns(table::SERVICE)
        .strategy(&s::SERVICES),
    ResourceType::of::<core::Endpoints>()
        .short(&["ep"])
        .stored_as("services/endpoints")
        .columns(table::ENDPOINTS),
    ResourceType::of::<core::Node>()
        .short(&["no"])
        .sub(STATUS)
        .fields(&["spec.unschedulable"])
        .stored_as("minions")
        .columns(table::NODE)
        .strategy(&s::NODES),
    ResourceType::of::<core::Namespace>()
        .short(&["ns"])
        .sub(STATUS)
        .fields(&["status.phase"])
        .columns(table::NAMESPACE)
        .strategy(&s::NAMESPACES),
    ResourceType::of::<core::Secret>()
        .fields(&["type"])
        .columns(table::SECRET)
        .strategy(&s::SECRETS),
    ResourceType::of::<core::ConfigMap>()
        .short(&["cm"])
        .columns(table::CONFIG_MAP)
        .strategy(&s::CONFIG_MAPS),
    ResourceType::of::<core::ServiceAccount>()
        .short(&["sa"])
        .sub(&[of_kind::<authentication::TokenRequest>(
            "token",
            CREATE_ONLY,
        )])
        .columns(table::SERVICE_ACCOUNT),
    ResourceType::of::<core::PersistentVolume>()
        .short(&["pv"])
        .sub(STATUS)
        .columns(table::PERSISTENT_VOLUME)
        .strategy(&s::PERSISTENT_VOLUMES),
    ResourceType::of::<core::PersistentVolumeClaim>()
        .short(&["pvc"])
        .sub(STATUS)
        .columns(table::PERSISTENT_VOLUME_CLAIM)
        .strategy(&s::PERSISTENT_VOLUME_CLAIMS),
    ResourceType::of::<core::ResourceQuota>()
        .short(&["quota"])
        .sub(STATUS),
    ResourceType::of::<core::LimitRange>().short(&["limits"]),
    ResourceType::of::<core::ReplicationController>()
        .short(&["rc"])
        .sub(STATUS_AND_SCALE)
        .in_all()
        .fields(REPLICAS_FIELDS)
        .stored_as("controllers")
        .columns(table::REPLICA_SET)
        .strategy(&s::REPLICATION_CONTROLLERS),
    ResourceType::of::<core::Event>()
        .short(&["ev"])
        .fields(EVENT_FIELDS)
        .columns(table::EVENT)
        .strategy(&s::EVENTS),
    ResourceType::of::<core::Binding>().action("pods", "binding"),
    // apps/v1
    ResourceType::of::<apps::Deployment>()
        .short(&["deploy"])
        .sub(STATUS_AND_SCALE)
        .in_all()
        .columns(table::DEPLOYMENT)
        .strategy(&s::DEPLOYMENTS),
    ResourceType::of::<apps::ReplicaSet>()
        .short(&["rs"])
        .sub(STATUS_AND_SCALE)
        .in_all()
        .fields(REPLICAS_FIELDS)
        .columns(table::REPLICA_SET)
        .strategy(&s::REPLICA_SETS),
    ResourceType::of::<apps::DaemonSet>()
        .short(&["ds"])
        .sub(STATUS)
        .in_all()
        .columns(table::DAEMON_SET)
        .strategy(&s::DAEMON_SETS),
    ResourceType::of::<apps::StatefulSet>()
        .short(&["sts"])
        .sub(STATUS_AND_SCALE)
        .in_all()
        .columns(table::STATEFUL_SET)
        .strategy(&s::STATEFUL_SETS),
    ResourceType::of::<apps::ControllerRevision>(),
    // batch/v1
    ResourceType::of::<batch::Job>()
        .sub(STATUS)
        .in_all()
        .fields(&["status.successful"])
        .columns(table::JOB)
        .strategy(&s::JOBS),
    ResourceType::of::<batch::CronJob>()
        .short(&["cj"])
        .sub(STATUS)
        .in_all()
        .columns(table::CRON_JOB)
        .strategy(&s::CRON_JOBS),
    // autoscaling/v2
    ResourceType::of::<autoscaling::HorizontalPodAutoscaler>()
        .short(&["hpa"])
        .sub(STATUS)
        .in_all()
        .strategy(&s::HORIZONTAL_POD_AUTOSCALERS),
    // networking.k8s.io/v1
    ResourceType::of::<networking::Ingress>()
        .short(&["ing"])
        .sub(STATUS)
        .stored_as("ingress")
        .strategy(&s::INGRESSES),
    ResourceType::of::<networking::IngressClass>(),
    ResourceType::of::<networking::NetworkPolicy>().short(&["netpol"]),
    // discovery.k8s.io/v1
    ResourceType::of::<discovery::EndpointSlice>(),
    // authentication.k8s.io/v1
    ResourceType::of::<authentication::TokenReview>().answered(),
    ResourceType::of::<authentication::SelfSubjectReview>().answered(),
    // authorization.k8s.io/v1
    ResourceType::of::<authorization::LocalSubjectAccessReview>().answered(),
    ResourceType::of::<authorization::SelfSubjectAccessReview>().answered(),
    ResourceType::of::<authorization::SelfSubjectRulesReview>().answered(),
    ResourceType::of::<authorization::SubjectAccessReview>().answered(),
    // certificates.k8s.io/v1
    ResourceType::of::<certificates::CertificateSigningRequest>()
        .short(&["csr"])
        .sub(CSR_SUBRESOURCES)
        .fields(&["spec.signerName"])
        .columns(table::CERTIFICATE_SIGNING_REQUEST)
        .strategy(&s::CERTIFICATE_SIGNING_REQUESTS),
    // rbac.authorization.k8s.io/v1
    ResourceType::of::<rbac::Role>(),
    ResourceType::of::<rbac::RoleBinding>(),
    ResourceType::of::<rbac::ClusterRole>(),
    ResourceType::of::<rbac::ClusterRoleBinding>(),
    // storage.k8s.io/v1
    ResourceType::of::<storage::StorageClass>().short(&["sc"]),
    ResourceType::of::<storage::CSIDriver>(),
    // coordination.k8s.io/v1
    ResourceType::of::<coordination::Lease>().columns(table::LEASE),
    // scheduling.k8s.io/v1
    ResourceType::of::<scheduling::PriorityClass>().short(&["pc"]),
    // policy/v1
    ResourceType::of::<policy::PodDisruptionBudget>()
        .short(&["pdb"])
        .sub(STATUS)
        .strategy(&s::POD_DISRUPTION_BUDGETS),
    // node.k8s.io/v1
    ResourceType::of::<node::RuntimeClass>(),
    // admissionregistration.k8s.io/v1
    ResourceType::of::<admissionregistration::ValidatingAdmissionPolicy>().sub(STATUS),
    ResourceType::of::<admissionregistration::ValidatingAdmissionPolicyBinding>(),
    ResourceType::of::<admissionregistration::ValidatingWebhookConfiguration>(),
    ResourceType::of::<admissionregistration::MutatingWebhookConfiguration>(),
    // apiextensions.k8s.io/v1
    ResourceType::of::<apiextensions::CustomResourceDefinition>()
        .short(&["crd", "crds"])
        .sub(STATUS)
        .stored_as("apiextensions.k8s.io/customresourcedefinitions"),
    // wasmkube.io/v1alpha1
    ResourceType::of::<crate::plugin::Plugin>()
        .sub(STATUS)
        .stored_as("wasmkube.io/plugins")
        .columns(table::PLUGIN)
        .strategy(&s::PLUGINS),
];

/// Finds a built-in kind by group, version and plural resource name.
pub fn by_resource(group: &str, version: &str, plural: &str) -> Option<&'static ResourceType> {
    BUILTIN
        .iter()
        .find(|r| r.group == group && r.version == version && r.plural == plural)
}

/// Finds a built-in kind by group, version and kind.
pub fn by_kind(group: &str, version: &str, kind: &str) -> Option<&'static ResourceType> {
    BUILTIN
        .iter()
        .find(|r| r.group == group && r.version == version && r.kind == kind)
}

/// The group-versions served, each once, in table order.
pub fn group_versions() -> Vec<(&'static str, &'static str)> {
    let mut seen = Vec::new();
    for r in BUILTIN {
        if !seen.contains(&(r.group, r.version)) {
            seen.push((r.group, r.version));
        }
    }
    seen
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashSet;

    #[test]
    fn table_has_every_required_kind_once() {
        let kinds: Vec<_> = BUILTIN.iter().map(|r| (r.group, r.kind)).collect();
        let unique: HashSet<_> = kinds.iter().collect();
        assert_eq!(unique.len(), kinds.len(), "a kind is listed twice");
        for (group, kind) in [
            ("", "Pod"),
            ("", "Service"),
            ("", "Endpoints"),
            ("", "Node"),
            ("", "Namespace"),
            ("", "Secret"),
            ("", "ConfigMap"),
            ("", "ServiceAccount"),
            ("", "PersistentVolume"),
            ("", "PersistentVolumeClaim"),
            ("", "ResourceQuota"),
            ("", "LimitRange"),
            ("", "ReplicationController"),
            ("", "Event"),
            ("", "Binding"),
            ("apps", "Deployment"),
            ("apps", "ReplicaSet"),
            ("apps", "DaemonSet"),
            ("apps", "StatefulSet"),
            ("apps", "ControllerRevision"),
            ("batch", "Job"),
            ("batch", "CronJob"),
            ("autoscaling", "HorizontalPodAutoscaler"),
            ("networking.k8s.io", "Ingress"),
            ("networking.k8s.io", "IngressClass"),
            ("networking.k8s.io", "NetworkPolicy"),
            ("discovery.k8s.io", "EndpointSlice"),
            ("certificates.k8s.io", "CertificateSigningRequest"),
            ("rbac.authorization.k8s.io", "Role"),
            ("rbac.authorization.k8s.io", "RoleBinding"),
            ("rbac.authorization.k8s.io", "ClusterRole"),
            ("rbac.authorization.k8s.io", "ClusterRoleBinding"),
            ("storage.k8s.io", "StorageClass"),
            ("storage.k8s.io", "CSIDriver"),
            ("coordination.k8s.io", "Lease"),
            ("scheduling.k8s.io", "PriorityClass"),
            ("policy", "PodDisruptionBudget"),
            ("node.k8s.io", "RuntimeClass"),
            ("apiextensions.k8s.io", "CustomResourceDefinition"),
        ] {
            assert!(unique.contains(&(group, kind)), "{group}/{kind} missing");
        }
    }

    #[test]
    fn facts_come_from_the_types() {
        let pod = by_resource("", "v1", "pods").unwrap();
        assert_eq!(pod.kind, "Pod");
        assert!(pod.namespaced);
        assert_eq!(pod.singular(), "pod");
        assert_eq!(pod.short_names, ["po"]);
        let node = by_kind("", "v1", "Node").unwrap();
        assert!(!node.namespaced);
        let hpa = by_resource("autoscaling", "v2", "horizontalpodautoscalers").unwrap();
        assert_eq!(hpa.api_version(), "autoscaling/v2");
        let crd = by_kind("apiextensions.k8s.io", "v1", "CustomResourceDefinition").unwrap();
        assert!(!crd.namespaced);
        assert_eq!(crd.plural, "customresourcedefinitions");
    }

    #[test]
    fn scale_and_status_subresources() {
        for kind in ["Deployment", "ReplicaSet", "StatefulSet"] {
            let r = by_kind("apps", "v1", kind).unwrap();
            let scale = r.subresource("scale").unwrap();
            assert_eq!(
                (scale.group, scale.version, scale.kind),
                ("autoscaling", "v1", "Scale")
            );
            assert!(r.subresource("status").unwrap().is_parent_kind());
        }
        let rc = by_kind("", "v1", "ReplicationController").unwrap();
        assert!(rc.subresource("scale").is_some());
        let csr = by_kind("certificates.k8s.io", "v1", "CertificateSigningRequest").unwrap();
        assert_eq!(csr.subresource("status").unwrap().part, Some("/status"));
        let approval = csr.subresource("approval").unwrap();
        assert!(approval.is_parent_kind());
        assert_eq!(approval.part, Some("/status/conditions"));
        let pod = by_kind("", "v1", "Pod").unwrap();
        assert_eq!(pod.subresource("binding").unwrap().kind, "Binding");
        assert_eq!(pod.subresource("eviction").unwrap().group, "policy");
        assert!(
            by_kind("", "v1", "ConfigMap")
                .unwrap()
                .subresources
                .is_empty()
        );
    }

    #[test]
    fn storage_keys_follow_kubernetes_layout() {
        let key = |group, kind, ns, name| by_kind(group, "v1", kind).unwrap().storage_key(ns, name);
        assert_eq!(
            key("", "Pod", Some("default"), "web").as_deref(),
            Some("/registry/pods/default/web")
        );
        assert_eq!(
            key("", "Service", Some("default"), "kubernetes").as_deref(),
            Some("/registry/services/specs/default/kubernetes")
        );
        assert_eq!(
            key("", "Endpoints", Some("a"), "b").as_deref(),
            Some("/registry/services/endpoints/a/b")
        );
        assert_eq!(
            key("", "Node", None, "n1").as_deref(),
            Some("/registry/minions/n1")
        );
        // A namespace given for a cluster-scoped kind is ignored.
        assert_eq!(
            key("", "Namespace", Some("x"), "kube-system").as_deref(),
            Some("/registry/namespaces/kube-system")
        );
        assert_eq!(
            key("apps", "Deployment", Some("ns"), "d").as_deref(),
            Some("/registry/deployments/ns/d")
        );
        assert_eq!(
            key(
                "apiextensions.k8s.io",
                "CustomResourceDefinition",
                None,
                "foos.example.com"
            )
            .as_deref(),
            Some("/registry/apiextensions.k8s.io/customresourcedefinitions/foos.example.com")
        );
        assert_eq!(key("", "Binding", Some("ns"), "p"), None);
        let pods = by_kind("", "v1", "Pod").unwrap();
        assert_eq!(
            pods.storage_collection(Some("default")).as_deref(),
            Some("/registry/pods/default/")
        );
        assert_eq!(
            pods.storage_collection(None).as_deref(),
            Some("/registry/pods/")
        );
    }

    #[test]
    fn prefixes_never_nest() {
        // One kind's prefix must not be a prefix of another's, or a list of one would
        // return the other.
        let roots: Vec<_> = BUILTIN.iter().filter_map(|r| r.storage_root()).collect();
        for a in &roots {
            for b in &roots {
                assert!(a == b || !b.starts_with(a.as_str()), "{a} contains {b}");
            }
        }
    }

    #[test]
    fn binding_is_create_only_and_field_labels_are_per_kind() {
        let binding = by_kind("", "v1", "Binding").unwrap();
        assert!(binding.supports(Verb::Create));
        assert!(!binding.supports(Verb::List));
        let pod = by_kind("", "v1", "Pod").unwrap();
        assert!(pod.supports_field_label("spec.nodeName"));
        assert!(pod.supports_field_label("metadata.namespace"));
        assert!(!pod.supports_field_label("spec.containers"));
        let node = by_kind("", "v1", "Node").unwrap();
        assert!(!node.supports_field_label("metadata.namespace"));
        assert!(node.supports_field_label("metadata.name"));
    }

    #[test]
    fn group_versions_are_listed_once() {
        let gvs = group_versions();
        assert_eq!(gvs[0], ("", "v1"));
        assert!(gvs.contains(&("apps", "v1")));
        assert!(gvs.contains(&("autoscaling", "v2")));
        let unique: HashSet<_> = gvs.iter().collect();
        assert_eq!(unique.len(), gvs.len());
    }
}
