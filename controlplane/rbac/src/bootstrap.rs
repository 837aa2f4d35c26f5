//! The default policy: the ClusterRoles, ClusterRoleBindings, Roles and
//! RoleBindings a Kubernetes 1.33 API server creates with its default feature
//! gates (`plugin/pkg/auth/authorizer/rbac/bootstrappolicy`), for the
//! components and controllers this project runs.
//!
//! One departure, on bindings: this project's controller manager
//! authenticates as the one user `system:kube-controller-manager`, so each
//! `system:controller:*` ClusterRoleBinding names that user besides the
//! controller's ServiceAccount. As in Kubernetes, the `system:node` binding
//! has no subjects: the Node authorizer ([`crate::NodeAuthorizer`]) grants
//! nodes the rules of `system:node` itself, and what their pods use.

use std::collections::BTreeMap;

use k8s_openapi::api::rbac::v1::{
    AggregationRule, ClusterRole, ClusterRoleBinding, PolicyRule, Role, RoleBinding, RoleRef,
    Subject,
};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{LabelSelector, ObjectMeta};
use serde_json::Value;

use crate::aggregation::{aggregate, same_rules};
use crate::index::GROUP;

/// The label every default object carries.
pub const BOOTSTRAPPING_LABEL: (&str, &str) = ("kubernetes.io/bootstrapping", "rbac-defaults");

/// The annotation that lets the API server bring a default object back to its
/// default when it starts.
pub const AUTOUPDATE_ANNOTATION: (&str, &str) =
    ("rbac.authorization.kubernetes.io/autoupdate", "true");

/// The label by which `admin` aggregates a ClusterRole.
pub const AGGREGATE_TO_ADMIN: &str = "rbac.authorization.k8s.io/aggregate-to-admin";
/// The label by which `edit` aggregates a ClusterRole.
pub const AGGREGATE_TO_EDIT: &str = "rbac.authorization.k8s.io/aggregate-to-edit";
/// The label by which `view` aggregates a ClusterRole.
pub const AGGREGATE_TO_VIEW: &str = "rbac.authorization.k8s.io/aggregate-to-view";

const CONTROLLER_PREFIX: &str = "system:controller:";
const KUBE_SYSTEM: &str = "kube-system";
const KUBE_PUBLIC: &str = "kube-public";
const CONTROLLER_MANAGER: &str = "system:kube-controller-manager";
/// The group of the bootstrap tokens nodes join with (`wasmkube token
/// create`), as kubeadm names it.
pub const JOINING_NODES: &str = "system:bootstrappers:kubeadm:default-node-token";
const KUBELET_CLIENT_SIGNER: &str = "kubernetes.io/kube-apiserver-client-kubelet";
const KUBELET_SERVING_SIGNER: &str = "kubernetes.io/kubelet-serving";
const SCHEDULER: &str = "system:kube-scheduler";

const READ: &[&str] = &["get", "list", "watch"];
const WRITE: &[&str] = &["create", "update", "patch", "delete", "deletecollection"];
const READ_WRITE: &[&str] = &[
    "get",
    "list",
    "watch",
    "create",
    "update",
    "patch",
    "delete",
    "deletecollection",
];
const READ_UPDATE: &[&str] = &["get", "list", "watch", "update", "patch"];

const CORE: &str = "";
const APPS: &str = "apps";
const AUTHN: &str = "authentication.k8s.io";
const AUTHZ: &str = "authorization.k8s.io";
const AUTOSCALING: &str = "autoscaling";
const BATCH: &str = "batch";
const CERTIFICATES: &str = "certificates.k8s.io";
const COORDINATION: &str = "coordination.k8s.io";
const DISCOVERY: &str = "discovery.k8s.io";
const EVENTS: &str = "events.k8s.io";
const EXTENSIONS: &str = "extensions";
const NETWORKING: &str = "networking.k8s.io";
const NODE: &str = "node.k8s.io";
const POLICY: &str = "policy";
const STORAGE: &str = "storage.k8s.io";

fn strings(values: &[&str]) -> Vec<String> {
    values.iter().map(|v| v.to_string()).collect()
}

fn sorted(values: &[&str]) -> Vec<String> {
    let mut v = strings(values);
    v.sort();
    v
}

/// `verbs` on `resources` of `groups`, its lists sorted as Kubernetes' rule
/// builder sorts them (all but the groups).
fn rule(verbs: &[&str], groups: &[&str], resources: &[&str]) -> PolicyRule {
    PolicyRule {
        verbs: sorted(verbs),
        api_groups: Some(strings(groups)),
        resources: Some(sorted(resources)),
        ..PolicyRule::default()
    }
}

/// The rule, only on objects called `names`.
fn named(verbs: &[&str], groups: &[&str], resources: &[&str], names: &[&str]) -> PolicyRule {
    PolicyRule {
        resource_names: Some(sorted(names)),
        ..rule(verbs, groups, resources)
    }
}

/// `verbs` on the paths `urls`.
fn urls(verbs: &[&str], urls: &[&str]) -> PolicyRule {
    PolicyRule {
        verbs: sorted(verbs),
        non_resource_urls: Some(sorted(urls)),
        ..PolicyRule::default()
    }
}

/// Writing Events, in both groups that serve them.
fn events() -> PolicyRule {
    rule(&["create", "update", "patch"], &[CORE, EVENTS], &["events"])
}

fn metadata(name: &str, namespace: Option<&str>, labels: &[(&str, &str)]) -> ObjectMeta {
    let mut all: BTreeMap<String, String> = BTreeMap::new();
    for (k, v) in labels.iter().chain([&BOOTSTRAPPING_LABEL]) {
        all.insert(k.to_string(), v.to_string());
    }
    let (key, value) = AUTOUPDATE_ANNOTATION;
    ObjectMeta {
        name: Some(name.to_owned()),
        namespace: namespace.map(str::to_owned),
        labels: Some(all),
        annotations: Some(BTreeMap::from([(key.to_owned(), value.to_owned())])),
        ..ObjectMeta::default()
    }
}

fn cluster_role(name: &str, rules: Vec<PolicyRule>) -> ClusterRole {
    ClusterRole {
        metadata: metadata(name, None, &[]),
        rules: Some(rules),
        aggregation_rule: None,
    }
}

/// A ClusterRole carrying `labels` (an aggregation label), with `rules`.
fn labeled(name: &str, label: &str, rules: Vec<PolicyRule>) -> ClusterRole {
    ClusterRole {
        metadata: metadata(name, None, &[(label, "true")]),
        ..cluster_role(name, rules)
    }
}

/// A ClusterRole holding the rules of those labelled `aggregates` (and itself
/// labelled `label`, if any).
fn aggregated(name: &str, label: Option<&str>, aggregates: &str) -> ClusterRole {
    let labels: Vec<(&str, &str)> = label.into_iter().map(|l| (l, "true")).collect();
    ClusterRole {
        metadata: metadata(name, None, &labels),
        rules: None,
        aggregation_rule: Some(AggregationRule {
            cluster_role_selectors: Some(vec![LabelSelector {
                match_labels: Some(BTreeMap::from([(aggregates.to_owned(), "true".to_owned())])),
                match_expressions: None,
            }]),
        }),
    }
}

/// Who a binding names.
enum Who<'a> {
    User(&'a str),
    Group(&'a str),
    ServiceAccount(&'a str, &'a str),
}

fn subjects(who: &[Who<'_>]) -> Vec<Subject> {
    who.iter()
        .map(|w| match *w {
            Who::User(name) => Subject {
                api_group: Some(GROUP.to_owned()),
                kind: "User".into(),
                name: name.into(),
                namespace: None,
            },
            Who::Group(name) => Subject {
                api_group: Some(GROUP.to_owned()),
                kind: "Group".into(),
                name: name.into(),
                namespace: None,
            },
            Who::ServiceAccount(namespace, name) => Subject {
                api_group: None,
                kind: "ServiceAccount".into(),
                name: name.into(),
                namespace: Some(namespace.into()),
            },
        })
        .collect()
}

fn role_ref(kind: &str, name: &str) -> RoleRef {
    RoleRef {
        api_group: GROUP.to_owned(),
        kind: kind.to_owned(),
        name: name.to_owned(),
    }
}

/// A ClusterRoleBinding named as the ClusterRole it binds.
fn cluster_binding(role: &str, who: &[Who<'_>]) -> ClusterRoleBinding {
    ClusterRoleBinding {
        metadata: metadata(role, None, &[]),
        role_ref: role_ref("ClusterRole", role),
        subjects: Some(subjects(who)),
    }
}

/// The rules of a node's kubelet (the `system:node` ClusterRole), which the
/// Node authorizer grants every node.
pub(crate) fn node_rules() -> Vec<PolicyRule> {
    vec![
        rule(&["create"], &[AUTHN], &["tokenreviews"]),
        rule(
            &["create"],
            &[AUTHZ],
            &["subjectaccessreviews", "localsubjectaccessreviews"],
        ),
        rule(READ, &[CORE], &["services"]),
        rule(&["create", "get", "list", "watch"], &[CORE], &["nodes"]),
        rule(&["update", "patch"], &[CORE], &["nodes/status"]),
        rule(&["update", "patch"], &[CORE], &["nodes"]),
        rule(&["create", "update", "patch"], &[CORE], &["events"]),
        rule(READ, &[CORE], &["pods"]),
        rule(&["create", "delete"], &[CORE], &["pods"]),
        rule(&["update", "patch"], &[CORE], &["pods/status"]),
        rule(&["create"], &[CORE], &["pods/eviction"]),
        rule(READ, &[CORE], &["secrets", "configmaps"]),
        rule(
            &["get"],
            &[CORE],
            &["persistentvolumeclaims", "persistentvolumes"],
        ),
        rule(&["get"], &[CORE], &["endpoints"]),
        rule(
            &["create", "get", "list", "watch"],
            &[CERTIFICATES],
            &["certificatesigningrequests"],
        ),
        rule(
            &["get", "create", "update", "patch", "delete"],
            &[COORDINATION],
            &["leases"],
        ),
        rule(&["get"], &[STORAGE], &["volumeattachments"]),
        rule(&["create"], &[CORE], &["serviceaccounts/token"]),
        rule(
            &["get", "update", "patch"],
            &[CORE],
            &["persistentvolumeclaims/status"],
        ),
        rule(READ, &[STORAGE], &["csidrivers"]),
        rule(
            &["get", "create", "update", "patch", "delete"],
            &[STORAGE],
            &["csinodes"],
        ),
        rule(READ, &[NODE], &["runtimeclasses"]),
    ]
}

fn aggregate_to_edit() -> Vec<PolicyRule> {
    vec![
        rule(
            READ,
            &[CORE],
            &[
                "pods/attach",
                "pods/proxy",
                "pods/exec",
                "pods/portforward",
                "secrets",
                "services/proxy",
            ],
        ),
        rule(&["impersonate"], &[CORE], &["serviceaccounts"]),
        rule(
            WRITE,
            &[CORE],
            &[
                "pods",
                "pods/attach",
                "pods/proxy",
                "pods/exec",
                "pods/portforward",
            ],
        ),
        rule(&["create"], &[CORE], &["pods/eviction"]),
        rule(
            WRITE,
            &[CORE],
            &[
                "replicationcontrollers",
                "replicationcontrollers/scale",
                "serviceaccounts",
                "services",
                "services/proxy",
                "persistentvolumeclaims",
                "configmaps",
                "secrets",
                "events",
            ],
        ),
        rule(&["create"], &[CORE], &["serviceaccounts/token"]),
        rule(
            WRITE,
            &[APPS],
            &[
                "statefulsets",
                "statefulsets/scale",
                "daemonsets",
                "deployments",
                "deployments/scale",
                "deployments/rollback",
                "replicasets",
                "replicasets/scale",
            ],
        ),
        rule(WRITE, &[AUTOSCALING], &["horizontalpodautoscalers"]),
        rule(WRITE, &[BATCH], &["jobs", "cronjobs"]),
        rule(
            WRITE,
            &[EXTENSIONS],
            &[
                "daemonsets",
                "deployments",
                "deployments/scale",
                "deployments/rollback",
                "ingresses",
                "replicasets",
                "replicasets/scale",
                "replicationcontrollers/scale",
                "networkpolicies",
            ],
        ),
        rule(WRITE, &[POLICY], &["poddisruptionbudgets"]),
        rule(WRITE, &[NETWORKING], &["networkpolicies", "ingresses"]),
        rule(READ_WRITE, &[COORDINATION], &["leases"]),
    ]
}

fn aggregate_to_view() -> Vec<PolicyRule> {
    vec![
        rule(
            READ,
            &[CORE],
            &[
                "pods",
                "replicationcontrollers",
                "replicationcontrollers/scale",
                "serviceaccounts",
                "services",
                "services/status",
                "endpoints",
                "persistentvolumeclaims",
                "persistentvolumeclaims/status",
                "configmaps",
            ],
        ),
        rule(
            READ,
            &[CORE],
            &[
                "limitranges",
                "resourcequotas",
                "bindings",
                "events",
                "pods/status",
                "resourcequotas/status",
                "namespaces/status",
                "replicationcontrollers/status",
                "pods/log",
            ],
        ),
        rule(READ, &[CORE], &["namespaces"]),
        rule(READ, &[DISCOVERY], &["endpointslices"]),
        rule(
            READ,
            &[APPS],
            &[
                "controllerrevisions",
                "statefulsets",
                "statefulsets/status",
                "statefulsets/scale",
                "daemonsets",
                "daemonsets/status",
                "deployments",
                "deployments/status",
                "deployments/scale",
                "replicasets",
                "replicasets/status",
                "replicasets/scale",
            ],
        ),
        rule(
            READ,
            &[AUTOSCALING],
            &[
                "horizontalpodautoscalers",
                "horizontalpodautoscalers/status",
            ],
        ),
        rule(
            READ,
            &[BATCH],
            &["jobs", "cronjobs", "cronjobs/status", "jobs/status"],
        ),
        rule(
            READ,
            &[EXTENSIONS],
            &[
                "daemonsets",
                "daemonsets/status",
                "deployments",
                "deployments/scale",
                "deployments/status",
                "ingresses",
                "ingresses/status",
                "replicasets",
                "replicasets/scale",
                "replicasets/status",
                "replicationcontrollers/scale",
                "networkpolicies",
            ],
        ),
        rule(
            READ,
            &[POLICY],
            &["poddisruptionbudgets", "poddisruptionbudgets/status"],
        ),
        rule(
            READ,
            &[NETWORKING],
            &["networkpolicies", "ingresses", "ingresses/status"],
        ),
    ]
}

fn kube_scheduler() -> Vec<PolicyRule> {
    vec![
        events(),
        rule(&["create"], &[COORDINATION], &["leases"]),
        named(
            &["get", "update", "list", "watch"],
            &[COORDINATION],
            &["leases"],
            &["kube-scheduler"],
        ),
        rule(READ_WRITE, &[COORDINATION], &["leasecandidates"]),
        rule(READ, &[CORE], &["nodes"]),
        rule(&["get", "list", "watch", "delete"], &[CORE], &["pods"]),
        rule(&["create"], &[CORE], &["pods/binding", "bindings"]),
        rule(&["patch", "update"], &[CORE], &["pods/status"]),
        rule(READ, &[CORE], &["services", "replicationcontrollers"]),
        rule(READ, &[APPS, EXTENSIONS], &["replicasets"]),
        rule(READ, &[APPS], &["statefulsets"]),
        rule(READ, &[POLICY], &["poddisruptionbudgets"]),
        rule(
            READ,
            &[CORE],
            &["persistentvolumeclaims", "persistentvolumes"],
        ),
        rule(&["create"], &[AUTHN], &["tokenreviews"]),
        rule(&["create"], &[AUTHZ], &["subjectaccessreviews"]),
        rule(READ, &[STORAGE], &["csinodes"]),
        rule(READ, &[STORAGE], &["volumeattachments"]),
        rule(READ, &[CORE], &["namespaces"]),
        rule(READ, &[STORAGE], &["csidrivers"]),
        rule(READ, &[STORAGE], &["csistoragecapacities"]),
    ]
}

fn kube_controller_manager() -> Vec<PolicyRule> {
    vec![
        events(),
        rule(&["create"], &[COORDINATION], &["leases"]),
        named(
            &["get", "update"],
            &[COORDINATION],
            &["leases"],
            &["kube-controller-manager"],
        ),
        rule(&["create"], &[CORE], &["secrets", "serviceaccounts"]),
        rule(&["delete"], &[CORE], &["secrets"]),
        rule(
            &["get"],
            &[CORE],
            &["namespaces", "secrets", "serviceaccounts", "configmaps"],
        ),
        rule(&["update"], &[CORE], &["secrets", "serviceaccounts"]),
        rule(&["create"], &[AUTHN], &["tokenreviews"]),
        rule(&["create"], &[AUTHZ], &["subjectaccessreviews"]),
        rule(&["list", "watch"], &["*"], &["*"]),
        rule(&["create"], &[CORE], &["serviceaccounts/token"]),
    ]
}

fn signer_approver(name: &str, signer: &str) -> ClusterRole {
    cluster_role(
        name,
        vec![named(
            &["approve"],
            &[CERTIFICATES],
            &["signers"],
            &[signer],
        )],
    )
}

/// The ClusterRoles of the API server's own policy, aggregated ones without
/// their rules yet.
fn cluster_roles() -> Vec<ClusterRole> {
    vec![
        cluster_role(
            "cluster-admin",
            vec![rule(&["*"], &["*"], &["*"]), urls(&["*"], &["*"])],
        ),
        cluster_role(
            "system:discovery",
            vec![urls(
                &["get"],
                &[
                    "/livez",
                    "/readyz",
                    "/healthz",
                    "/version",
                    "/version/",
                    "/openapi",
                    "/openapi/*",
                    "/api",
                    "/api/*",
                    "/apis",
                    "/apis/*",
                ],
            )],
        ),
        cluster_role(
            "system:monitoring",
            vec![urls(
                &["get"],
                &[
                    "/metrics",
                    "/metrics/slis",
                    "/livez",
                    "/readyz",
                    "/healthz",
                    "/livez/*",
                    "/readyz/*",
                    "/healthz/*",
                ],
            )],
        ),
        cluster_role(
            "system:basic-user",
            vec![
                rule(
                    &["create"],
                    &[AUTHZ],
                    &["selfsubjectaccessreviews", "selfsubjectrulesreviews"],
                ),
                rule(&["create"], &[AUTHN], &["selfsubjectreviews"]),
            ],
        ),
        cluster_role(
            "system:public-info-viewer",
            vec![urls(
                &["get"],
                &["/livez", "/readyz", "/healthz", "/version", "/version/"],
            )],
        ),
        aggregated("admin", None, AGGREGATE_TO_ADMIN),
        aggregated("edit", Some(AGGREGATE_TO_ADMIN), AGGREGATE_TO_EDIT),
        aggregated("view", Some(AGGREGATE_TO_EDIT), AGGREGATE_TO_VIEW),
        labeled(
            "system:aggregate-to-admin",
            AGGREGATE_TO_ADMIN,
            vec![
                rule(&["create"], &[AUTHZ], &["localsubjectaccessreviews"]),
                rule(READ_WRITE, &[GROUP], &["roles", "rolebindings"]),
            ],
        ),
        labeled(
            "system:aggregate-to-edit",
            AGGREGATE_TO_EDIT,
            aggregate_to_edit(),
        ),
        labeled(
            "system:aggregate-to-view",
            AGGREGATE_TO_VIEW,
            aggregate_to_view(),
        ),
        cluster_role(
            "system:heapster",
            vec![
                rule(READ, &[CORE], &["events", "pods", "nodes", "namespaces"]),
                rule(READ, &[EXTENSIONS], &["deployments"]),
            ],
        ),
        cluster_role("system:node", node_rules()),
        cluster_role(
            "system:node-problem-detector",
            vec![
                rule(&["get"], &[CORE], &["nodes"]),
                rule(&["patch"], &[CORE], &["nodes/status"]),
                events(),
            ],
        ),
        cluster_role(
            "system:node-bootstrapper",
            vec![rule(
                &["create", "get", "list", "watch"],
                &[CERTIFICATES],
                &["certificatesigningrequests"],
            )],
        ),
        cluster_role(
            "system:auth-delegator",
            vec![
                rule(&["create"], &[AUTHN], &["tokenreviews"]),
                rule(&["create"], &[AUTHZ], &["subjectaccessreviews"]),
            ],
        ),
        cluster_role(
            "system:kube-aggregator",
            vec![rule(READ, &[CORE], &["services", "endpoints"])],
        ),
        cluster_role(CONTROLLER_MANAGER, kube_controller_manager()),
        cluster_role(
            "system:kube-dns",
            vec![rule(
                &["list", "watch"],
                &[CORE],
                &["endpoints", "services"],
            )],
        ),
        cluster_role(
            "system:persistent-volume-provisioner",
            vec![
                rule(
                    &["get", "list", "watch", "create", "delete"],
                    &[CORE],
                    &["persistentvolumes"],
                ),
                rule(
                    &["get", "list", "watch", "update"],
                    &[CORE],
                    &["persistentvolumeclaims"],
                ),
                rule(READ, &[STORAGE], &["storageclasses"]),
                rule(&["watch"], &[CORE], &["events"]),
                events(),
            ],
        ),
        cluster_role(
            "system:certificates.k8s.io:certificatesigningrequests:nodeclient",
            vec![rule(
                &["create"],
                &[CERTIFICATES],
                &["certificatesigningrequests/nodeclient"],
            )],
        ),
        cluster_role(
            "system:certificates.k8s.io:certificatesigningrequests:selfnodeclient",
            vec![rule(
                &["create"],
                &[CERTIFICATES],
                &["certificatesigningrequests/selfnodeclient"],
            )],
        ),
        cluster_role(
            "system:volume-scheduler",
            vec![
                rule(READ_UPDATE, &[CORE], &["persistentvolumes"]),
                rule(READ, &[STORAGE], &["storageclasses"]),
                rule(READ_UPDATE, &[CORE], &["persistentvolumeclaims"]),
            ],
        ),
        signer_approver(
            "system:certificates.k8s.io:legacy-unknown-approver",
            "kubernetes.io/legacy-unknown",
        ),
        signer_approver(
            "system:certificates.k8s.io:kubelet-serving-approver",
            "kubernetes.io/kubelet-serving",
        ),
        signer_approver(
            "system:certificates.k8s.io:kube-apiserver-client-approver",
            "kubernetes.io/kube-apiserver-client",
        ),
        signer_approver(
            "system:certificates.k8s.io:kube-apiserver-client-kubelet-approver",
            "kubernetes.io/kube-apiserver-client-kubelet",
        ),
        cluster_role(
            "system:service-account-issuer-discovery",
            vec![urls(
                &["get"],
                &[
                    "/.well-known/openid-configuration",
                    "/.well-known/openid-configuration/",
                    "/openid/v1/jwks",
                    "/openid/v1/jwks/",
                ],
            )],
        ),
        cluster_role(
            "system:kubelet-api-admin",
            vec![
                rule(&["get", "list", "watch"], &[CORE], &["nodes"]),
                rule(&["proxy"], &[CORE], &["nodes"]),
                rule(
                    &["*"],
                    &[CORE],
                    &["nodes/proxy", "nodes/metrics", "nodes/stats", "nodes/log"],
                ),
                rule(
                    &["*"],
                    &[CORE],
                    &["nodes/pods", "nodes/healthz", "nodes/configz"],
                ),
            ],
        ),
        cluster_role(
            "system:node-proxier",
            vec![
                rule(&["list", "watch"], &[CORE], &["services", "endpoints"]),
                rule(&["get", "list", "watch"], &[CORE], &["nodes"]),
                events(),
                rule(&["list", "watch"], &[NETWORKING], &["servicecidrs"]),
                rule(&["list", "watch"], &[DISCOVERY], &["endpointslices"]),
            ],
        ),
        cluster_role(SCHEDULER, kube_scheduler()),
    ]
}

/// The ClusterRoleBindings of the API server's own policy.
fn cluster_role_bindings() -> Vec<ClusterRoleBinding> {
    use Who::*;
    vec![
        cluster_binding("cluster-admin", &[Group("system:masters")]),
        cluster_binding("system:monitoring", &[Group("system:monitoring")]),
        cluster_binding("system:discovery", &[Group("system:authenticated")]),
        cluster_binding("system:basic-user", &[Group("system:authenticated")]),
        cluster_binding(
            "system:public-info-viewer",
            &[
                Group("system:authenticated"),
                Group("system:unauthenticated"),
            ],
        ),
        cluster_binding("system:node-proxier", &[User("system:kube-proxy")]),
        cluster_binding(CONTROLLER_MANAGER, &[User(CONTROLLER_MANAGER)]),
        cluster_binding(
            "system:kube-dns",
            &[ServiceAccount(KUBE_SYSTEM, "kube-dns")],
        ),
        cluster_binding(SCHEDULER, &[User(SCHEDULER)]),
        cluster_binding("system:volume-scheduler", &[User(SCHEDULER)]),
        // Kept without subjects, as Kubernetes keeps it since its Node
        // authorizer decides what a node may do.
        ClusterRoleBinding {
            subjects: None,
            ..cluster_binding("system:node", &[])
        },
        cluster_binding(
            "system:service-account-issuer-discovery",
            &[Group("system:serviceaccounts")],
        ),
    ]
}

/// The paths of the built-in OCI registry, which serves on the API server's
/// listener.
const REGISTRY: &[&str] = &["/v2", "/v2/*"];
/// Pulling from it: the distribution API's reads.
const PULL: &[&str] = &["get", "head"];

/// What Wasmkube's own components need beyond Kubernetes' roles: the
/// scheduler reads its Wasm plugins (and writes their status) and the
/// PriorityClasses it orders pods by; a node's agent is also its service
/// proxy, DNS server and ingress, and dials home; every identity of the cluster may pull from
/// the built-in registry, and `wasmkube:registry-pusher` (bound to no one by
/// default; cluster-admin holds it through `*`) may push and delete; the
/// controller manager approves the serving certificates nodes ask for
/// (Kubernetes leaves those to an approver of the operator's).
fn wasmkube_roles() -> Vec<ClusterRole> {
    vec![
        cluster_role(
            "wasmkube:kube-scheduler",
            vec![
                rule(READ, &["wasmkube.io"], &["plugins"]),
                rule(&["update", "patch"], &["wasmkube.io"], &["plugins/status"]),
                rule(READ, &["scheduling.k8s.io"], &["priorityclasses"]),
            ],
        ),
        cluster_role(
            "wasmkube:node",
            vec![
                rule(READ, &[NETWORKING], &["ingresses"]),
                // NetworkPolicies are enforced by the agent, which needs the
                // namespaces' labels for their selectors.
                rule(READ, &[NETWORKING], &["networkpolicies"]),
                rule(READ, &[""], &["namespaces"]),
                rule(
                    &["get", "list", "watch", "create"],
                    &[NETWORKING],
                    &["ingressclasses"],
                ),
                rule(&["update", "patch"], &[NETWORKING], &["ingresses/status"]),
                // Dialing home: the server keeps the connection for the
                // node its certificate names, and for no other.
                urls(&["get"], &[wasmkube_apiserver::CONNECT_PATH]),
            ],
        ),
        cluster_role("wasmkube:registry-puller", vec![urls(PULL, REGISTRY)]),
        cluster_role(
            "wasmkube:kubelet-serving-approver",
            vec![named(
                &["approve"],
                &[CERTIFICATES],
                &["signers"],
                &[KUBELET_SERVING_SIGNER],
            )],
        ),
        cluster_role(
            "wasmkube:registry-pusher",
            vec![urls(
                &["get", "head", "post", "put", "patch", "delete"],
                REGISTRY,
            )],
        ),
    ]
}

/// The bindings of Wasmkube's own roles, and those with which nodes join
/// (their bootstrap tokens' group may ask for a client certificate, which is
/// approved) and renew their client certificates, as kubeadm binds them.
fn wasmkube_role_bindings() -> Vec<ClusterRoleBinding> {
    use Who::*;
    let mut node_proxier = cluster_binding("system:node-proxier", &[Group("system:nodes")]);
    node_proxier.metadata.name = Some("wasmkube:node-proxier".into());
    let named_binding = |name: &str, role: &str, who: &[Who<'_>]| {
        let mut binding = cluster_binding(role, who);
        binding.metadata.name = Some(name.into());
        binding
    };
    let joining = [Group(JOINING_NODES)];
    vec![
        cluster_binding("wasmkube:kube-scheduler", &[User(SCHEDULER)]),
        cluster_binding("wasmkube:node", &[Group("system:nodes")]),
        node_proxier,
        cluster_binding("wasmkube:registry-puller", &[Group("system:authenticated")]),
        named_binding(
            "wasmkube:kubelet-bootstrap",
            "system:node-bootstrapper",
            &joining,
        ),
        named_binding(
            "wasmkube:node-autoapprove-bootstrap",
            "system:certificates.k8s.io:certificatesigningrequests:nodeclient",
            &joining,
        ),
        named_binding(
            "wasmkube:node-autoapprove-certificate-rotation",
            "system:certificates.k8s.io:certificatesigningrequests:selfnodeclient",
            &[Group("system:nodes")],
        ),
        cluster_binding(
            "wasmkube:kubelet-serving-approver",
            &[User(CONTROLLER_MANAGER)],
        ),
    ]
}

/// The roles of the controllers this project runs, each named
/// `system:controller:<its ServiceAccount>`.
fn controller_roles() -> Vec<ClusterRole> {
    let controller = |name: &str, rules: Vec<PolicyRule>| {
        cluster_role(&format!("{CONTROLLER_PREFIX}{name}"), rules)
    };
    let apps = &[APPS, EXTENSIONS];
    vec![
        controller(
            "certificate-controller",
            vec![
                rule(
                    &["get", "list", "watch", "delete"],
                    &[CERTIFICATES],
                    &["certificatesigningrequests"],
                ),
                rule(
                    &["update"],
                    &[CERTIFICATES],
                    &[
                        "certificatesigningrequests/status",
                        "certificatesigningrequests/approval",
                    ],
                ),
                named(
                    &["approve"],
                    &[CERTIFICATES],
                    &["signers"],
                    &[KUBELET_CLIENT_SIGNER],
                ),
                named(
                    &["sign"],
                    &[CERTIFICATES],
                    &["signers"],
                    &[
                        "kubernetes.io/legacy-unknown",
                        "kubernetes.io/kube-apiserver-client",
                        KUBELET_CLIENT_SIGNER,
                        KUBELET_SERVING_SIGNER,
                    ],
                ),
                rule(&["create"], &[AUTHZ], &["subjectaccessreviews"]),
                events(),
            ],
        ),
        controller(
            "clusterrole-aggregation-controller",
            vec![rule(
                &["escalate", "get", "list", "watch", "update", "patch"],
                &[GROUP],
                &["clusterroles"],
            )],
        ),
        controller(
            "cronjob-controller",
            vec![
                rule(&["get", "list", "watch", "update"], &[BATCH], &["cronjobs"]),
                rule(
                    &[
                        "get", "list", "watch", "create", "update", "delete", "patch",
                    ],
                    &[BATCH],
                    &["jobs"],
                ),
                rule(&["update"], &[BATCH], &["cronjobs/status"]),
                rule(&["update"], &[BATCH], &["cronjobs/finalizers"]),
                rule(&["list", "watch", "delete"], &[CORE], &["pods"]),
                events(),
            ],
        ),
        controller(
            "daemon-set-controller",
            vec![
                rule(READ, apps, &["daemonsets"]),
                rule(&["update"], apps, &["daemonsets/status"]),
                rule(&["update"], apps, &["daemonsets/finalizers"]),
                rule(&["list", "watch"], &[CORE], &["nodes"]),
                rule(
                    &["list", "watch", "create", "delete", "patch"],
                    &[CORE],
                    &["pods"],
                ),
                rule(&["create"], &[CORE], &["pods/binding"]),
                rule(
                    &[
                        "get", "list", "watch", "create", "delete", "update", "patch",
                    ],
                    &[APPS],
                    &["controllerrevisions"],
                ),
                events(),
            ],
        ),
        controller(
            "deployment-controller",
            vec![
                rule(&["get", "list", "watch", "update"], apps, &["deployments"]),
                rule(&["update"], apps, &["deployments/status"]),
                rule(&["update"], apps, &["deployments/finalizers"]),
                rule(
                    &[
                        "get", "list", "watch", "create", "update", "patch", "delete",
                    ],
                    apps,
                    &["replicasets"],
                ),
                rule(&["get", "list", "watch", "update"], &[CORE], &["pods"]),
                events(),
            ],
        ),
        controller(
            "disruption-controller",
            vec![
                rule(READ, apps, &["deployments"]),
                rule(READ, apps, &["replicasets"]),
                rule(READ, &[CORE], &["replicationcontrollers"]),
                rule(READ, &[POLICY], &["poddisruptionbudgets"]),
                rule(READ, &[APPS], &["statefulsets"]),
                rule(&["update"], &[POLICY], &["poddisruptionbudgets/status"]),
                rule(&["patch", "update"], &[CORE], &["pods/status"]),
                rule(&["get"], &["*"], &["*/scale"]),
                events(),
            ],
        ),
        controller(
            "endpoint-controller",
            vec![
                rule(READ, &[CORE], &["services", "pods"]),
                rule(
                    &["get", "list", "watch", "create", "update", "delete"],
                    &[CORE],
                    &["endpoints"],
                ),
                rule(&["create"], &[CORE], &["endpoints/restricted"]),
                events(),
            ],
        ),
        controller(
            "endpointslice-controller",
            vec![
                rule(READ, &[CORE], &["services", "pods", "nodes"]),
                rule(&["update"], &[CORE], &["services/finalizers"]),
                rule(
                    &["get", "list", "watch", "create", "update", "delete"],
                    &[DISCOVERY],
                    &["endpointslices"],
                ),
                events(),
            ],
        ),
        controller(
            "generic-garbage-collector",
            vec![
                rule(
                    &["get", "list", "watch", "patch", "update", "delete"],
                    &["*"],
                    &["*"],
                ),
                events(),
            ],
        ),
        controller(
            "job-controller",
            vec![
                rule(
                    &["get", "list", "watch", "update", "patch"],
                    &[BATCH],
                    &["jobs"],
                ),
                rule(&["update"], &[BATCH], &["jobs/status"]),
                rule(&["update"], &[BATCH], &["jobs/finalizers"]),
                rule(
                    &["list", "watch", "create", "delete", "patch"],
                    &[CORE],
                    &["pods"],
                ),
                events(),
            ],
        ),
        controller(
            "node-controller",
            vec![
                rule(
                    &["get", "list", "watch", "update", "delete", "patch"],
                    &[CORE],
                    &["nodes"],
                ),
                rule(&["patch", "update"], &[CORE], &["nodes/status"]),
                rule(&["patch", "update"], &[CORE], &["pods/status"]),
                rule(&["list", "watch", "get", "delete"], &[CORE], &["pods"]),
                events(),
            ],
        ),
        controller(
            "replicaset-controller",
            vec![
                rule(&["get", "list", "watch", "update"], apps, &["replicasets"]),
                rule(&["update"], apps, &["replicasets/status"]),
                rule(&["update"], apps, &["replicasets/finalizers"]),
                rule(
                    &["list", "watch", "patch", "create", "delete"],
                    &[CORE],
                    &["pods"],
                ),
                events(),
            ],
        ),
        controller(
            "replication-controller",
            vec![
                rule(
                    &["get", "list", "watch", "update"],
                    &[CORE],
                    &["replicationcontrollers"],
                ),
                rule(&["update"], &[CORE], &["replicationcontrollers/status"]),
                rule(&["update"], &[CORE], &["replicationcontrollers/finalizers"]),
                rule(
                    &["list", "watch", "patch", "create", "delete"],
                    &[CORE],
                    &["pods"],
                ),
                events(),
            ],
        ),
        controller(
            "resourcequota-controller",
            vec![
                rule(&["list", "watch"], &["*"], &["*"]),
                rule(&["update"], &[CORE], &["resourcequotas/status"]),
                events(),
            ],
        ),
        controller(
            "root-ca-cert-publisher",
            vec![
                rule(&["create", "update"], &[CORE], &["configmaps"]),
                events(),
            ],
        ),
        controller(
            "service-account-controller",
            vec![rule(&["create"], &[CORE], &["serviceaccounts"]), events()],
        ),
        controller(
            "statefulset-controller",
            vec![
                rule(&["list", "watch"], &[CORE], &["pods"]),
                rule(READ, &[APPS], &["statefulsets"]),
                rule(&["update"], &[APPS], &["statefulsets/status"]),
                rule(&["update"], &[APPS], &["statefulsets/finalizers"]),
                rule(
                    &["get", "create", "delete", "update", "patch"],
                    &[CORE],
                    &["pods"],
                ),
                rule(
                    &[
                        "get", "list", "watch", "create", "delete", "update", "patch",
                    ],
                    &[APPS],
                    &["controllerrevisions"],
                ),
                rule(
                    &["get", "create", "list", "watch"],
                    &[CORE],
                    &["persistentvolumeclaims"],
                ),
                rule(&["update", "delete"], &[CORE], &["persistentvolumeclaims"]),
                rule(&["update"], &[CORE], &["pods/finalizers"]),
                events(),
            ],
        ),
        controller(
            "ttl-after-finished-controller",
            vec![
                rule(&["get", "list", "watch", "delete"], &[BATCH], &["jobs"]),
                events(),
            ],
        ),
    ]
}

/// Each controller's ClusterRoleBinding: its ServiceAccount in `kube-system`,
/// as Kubernetes names it, and the controller manager's user.
fn controller_role_bindings(roles: &[ClusterRole]) -> Vec<ClusterRoleBinding> {
    roles
        .iter()
        .filter_map(|r| r.metadata.name.as_deref())
        .map(|role| {
            let account = role.strip_prefix(CONTROLLER_PREFIX).unwrap_or(role);
            cluster_binding(
                role,
                &[
                    Who::ServiceAccount(KUBE_SYSTEM, account),
                    Who::User(CONTROLLER_MANAGER),
                ],
            )
        })
        .collect()
}

fn role(namespace: &str, name: &str, rules: Vec<PolicyRule>) -> Role {
    Role {
        metadata: metadata(name, Some(namespace), &[]),
        rules: Some(rules),
    }
}

fn role_binding(namespace: &str, name: &str, role: &str, who: &[Who<'_>]) -> RoleBinding {
    RoleBinding {
        metadata: metadata(name, Some(namespace), &[]),
        role_ref: role_ref("Role", role),
        subjects: Some(subjects(who)),
    }
}

/// The Roles of `kube-system` and `kube-public`.
fn namespace_roles() -> Vec<Role> {
    let leader_locking = || {
        vec![
            rule(
                &["watch", "get", "list", "create", "update"],
                &[COORDINATION],
                &["leases"],
            ),
            rule(
                &["watch", "get", "list", "create", "update"],
                &[COORDINATION],
                &["leasecandidates"],
            ),
        ]
    };
    vec![
        role(
            KUBE_SYSTEM,
            "extension-apiserver-authentication-reader",
            vec![named(
                READ,
                &[CORE],
                &["configmaps"],
                &["extension-apiserver-authentication"],
            )],
        ),
        role(
            KUBE_SYSTEM,
            "system:controller:bootstrap-signer",
            vec![rule(READ, &[CORE], &["secrets"])],
        ),
        role(
            KUBE_SYSTEM,
            "system:controller:cloud-provider",
            vec![rule(
                &["create", "get", "list", "watch"],
                &[CORE],
                &["configmaps"],
            )],
        ),
        role(
            KUBE_SYSTEM,
            "system:controller:token-cleaner",
            vec![
                rule(&["delete", "get", "list", "watch"], &[CORE], &["secrets"]),
                events(),
            ],
        ),
        role(
            KUBE_SYSTEM,
            "system::leader-locking-kube-controller-manager",
            leader_locking(),
        ),
        role(
            KUBE_SYSTEM,
            "system::leader-locking-kube-scheduler",
            leader_locking(),
        ),
        role(
            KUBE_PUBLIC,
            "system:controller:bootstrap-signer",
            vec![
                rule(READ, &[CORE], &["configmaps"]),
                named(&["update"], &[CORE], &["configmaps"], &["cluster-info"]),
                events(),
            ],
        ),
    ]
}

/// The RoleBindings of `kube-system` and `kube-public`.
fn namespace_role_bindings() -> Vec<RoleBinding> {
    use Who::*;
    vec![
        role_binding(
            KUBE_SYSTEM,
            "system::extension-apiserver-authentication-reader",
            "extension-apiserver-authentication-reader",
            &[User(CONTROLLER_MANAGER), User(SCHEDULER)],
        ),
        role_binding(
            KUBE_SYSTEM,
            "system::leader-locking-kube-controller-manager",
            "system::leader-locking-kube-controller-manager",
            &[
                User(CONTROLLER_MANAGER),
                ServiceAccount(KUBE_SYSTEM, "kube-controller-manager"),
                ServiceAccount(KUBE_SYSTEM, "leader-election-controller"),
            ],
        ),
        role_binding(
            KUBE_SYSTEM,
            "system::leader-locking-kube-scheduler",
            "system::leader-locking-kube-scheduler",
            &[
                User(SCHEDULER),
                ServiceAccount(KUBE_SYSTEM, "kube-scheduler"),
            ],
        ),
        role_binding(
            KUBE_SYSTEM,
            "system:controller:bootstrap-signer",
            "system:controller:bootstrap-signer",
            &[ServiceAccount(KUBE_SYSTEM, "bootstrap-signer")],
        ),
        role_binding(
            KUBE_SYSTEM,
            "system:controller:cloud-provider",
            "system:controller:cloud-provider",
            &[ServiceAccount(KUBE_SYSTEM, "cloud-provider")],
        ),
        role_binding(
            KUBE_SYSTEM,
            "system:controller:token-cleaner",
            "system:controller:token-cleaner",
            &[ServiceAccount(KUBE_SYSTEM, "token-cleaner")],
        ),
        role_binding(
            KUBE_PUBLIC,
            "system:controller:bootstrap-signer",
            "system:controller:bootstrap-signer",
            &[ServiceAccount(KUBE_SYSTEM, "bootstrap-signer")],
        ),
    ]
}

/// Fills in the rules of the aggregated ClusterRoles among `roles`, as the
/// aggregation controller would once settled (an aggregated role may itself be
/// aggregated, as `edit` is into `admin`).
fn settle(roles: &mut [ClusterRole]) {
    for _ in 0..roles.len() {
        let mut changed = false;
        for i in 0..roles.len() {
            let Ok(Some(rules)) = aggregate(&roles[i], roles.iter()) else {
                continue;
            };
            if !same_rules(&rules, roles[i].rules.as_deref().unwrap_or_default()) {
                roles[i].rules = Some(rules);
                changed = true;
            }
        }
        if !changed {
            return;
        }
    }
}

fn to_value<T: serde::Serialize>(object: T) -> Value {
    serde_json::to_value(object).expect("RBAC objects serialize")
}

/// The default policy as objects to create: every ClusterRole (the
/// aggregated ones with their rules filled in), every ClusterRoleBinding,
/// then the Roles and RoleBindings of `kube-system` and `kube-public`.
pub fn bootstrap() -> Vec<Value> {
    let mut roles = cluster_roles();
    roles.extend(wasmkube_roles());
    let controllers = controller_roles();
    let mut bindings = cluster_role_bindings();
    bindings.extend(wasmkube_role_bindings());
    bindings.extend(controller_role_bindings(&controllers));
    roles.extend(controllers);
    settle(&mut roles);
    let mut objects: Vec<Value> = roles.into_iter().map(to_value).collect();
    objects.extend(bindings.into_iter().map(to_value));
    objects.extend(namespace_roles().into_iter().map(to_value));
    objects.extend(namespace_role_bindings().into_iter().map(to_value));
    objects
}

#[cfg(test)]
mod tests {
    use wasmkube_apiserver::access::{Attributes, Decision, ResourceAttributes, UserInfo};

    use super::*;
    use crate::index::{Index, Kind};

    fn user(name: &str, groups: &[&str]) -> UserInfo {
        UserInfo {
            name: name.into(),
            groups: groups.iter().map(|g| g.to_string()).collect(),
            ..UserInfo::default()
        }
    }

    /// A user bound to the ClusterRole `role` in namespace `web`.
    fn bound_in_web(role: &str) -> (Index, UserInfo) {
        let mut index = Index::load(&bootstrap()).unwrap();
        index.insert_role_binding(RoleBinding {
            metadata: ObjectMeta {
                name: Some("b".into()),
                namespace: Some("web".into()),
                ..ObjectMeta::default()
            },
            role_ref: role_ref("ClusterRole", role),
            subjects: Some(subjects(&[Who::User("jane")])),
        });
        (index, user("jane", &["system:authenticated"]))
    }

    fn may(
        index: &Index,
        user: &UserInfo,
        verb: &str,
        group: &str,
        resource: &str,
        namespace: &str,
    ) -> bool {
        let (resource, subresource) = resource.split_once('/').unwrap_or((resource, ""));
        let attributes = Attributes {
            user: user.clone(),
            verb: verb.into(),
            resource: Some(ResourceAttributes {
                group: group.into(),
                version: "v1".into(),
                resource: resource.into(),
                subresource: subresource.into(),
                namespace: namespace.into(),
                name: "x".into(),
            }),
            path: String::new(),
        };
        index.authorize(&attributes) == Decision::Allow
    }

    fn may_get_path(index: &Index, user: &UserInfo, path: &str) -> bool {
        let attributes = Attributes {
            user: user.clone(),
            verb: "get".into(),
            resource: None,
            path: path.into(),
        };
        index.authorize(&attributes) == Decision::Allow
    }

    #[test]
    fn objects_are_labelled_annotated_and_bound_to_existing_roles() {
        let objects = bootstrap();
        for object in &objects {
            let metadata = &object["metadata"];
            assert_eq!(
                metadata["labels"]["kubernetes.io/bootstrapping"],
                "rbac-defaults"
            );
            assert_eq!(
                metadata["annotations"]["rbac.authorization.kubernetes.io/autoupdate"],
                "true"
            );
            assert!(Kind::of(object).is_some(), "{object}");
        }
        let index = Index::load(&objects).unwrap();
        // No binding names a role that is missing.
        let someone = |group: &str| user("u", &[group]);
        for object in &objects {
            if let Some(subjects) = object["subjects"].as_array() {
                for s in subjects {
                    let who = match s["kind"].as_str().unwrap() {
                        "User" => user(s["name"].as_str().unwrap(), &[]),
                        "Group" => someone(s["name"].as_str().unwrap()),
                        _ => user(
                            &crate::service_account_user(
                                s["namespace"].as_str().unwrap(),
                                s["name"].as_str().unwrap(),
                            ),
                            &[],
                        ),
                    };
                    let ns = object["metadata"]["namespace"].as_str().unwrap_or("");
                    let (rules, errors) = index.rules_for(&who, ns);
                    assert!(errors.is_empty(), "{object}: {errors:?}");
                    assert!(!rules.is_empty());
                }
            }
        }
        let names: Vec<&str> = objects
            .iter()
            .filter(|o| o["kind"] == "ClusterRole")
            .map(|o| o["metadata"]["name"].as_str().unwrap())
            .collect();
        for required in [
            "cluster-admin",
            "admin",
            "edit",
            "view",
            "system:basic-user",
            "system:discovery",
            "system:public-info-viewer",
            "system:node",
            "system:node-proxier",
            "system:kube-scheduler",
            "system:volume-scheduler",
            "system:kube-controller-manager",
            "system:kube-dns",
            "system:auth-delegator",
            "system:heapster",
            "system:monitoring",
            "system:node-bootstrapper",
            "system:certificates.k8s.io:certificatesigningrequests:nodeclient",
            "system:certificates.k8s.io:certificatesigningrequests:selfnodeclient",
            "system:certificates.k8s.io:kube-apiserver-client-approver",
            "system:certificates.k8s.io:kube-apiserver-client-kubelet-approver",
            "system:controller:deployment-controller",
            "system:controller:generic-garbage-collector",
        ] {
            assert!(names.contains(&required), "{required}");
        }
    }

    #[test]
    fn nodes_join_with_a_token_and_the_controller_manager_approves_and_signs() {
        let index = Index::load(&bootstrap()).unwrap();
        let groups = ["system:bootstrappers", JOINING_NODES];
        let token = user("system:bootstrap:abcdef", &groups);
        let csrs = "certificatesigningrequests";
        assert!(may(&index, &token, "create", CERTIFICATES, csrs, ""));
        assert!(may(&index, &token, "watch", CERTIFICATES, csrs, ""));
        let client = "certificatesigningrequests/nodeclient";
        assert!(may(&index, &token, "create", CERTIFICATES, client, ""));
        let other = user("system:bootstrap:ghijkl", &["system:bootstrappers"]);
        assert!(!may(&index, &other, "create", CERTIFICATES, client, ""));
        let node = user("system:node:n1", &["system:nodes"]);
        let own = "certificatesigningrequests/selfnodeclient";
        assert!(may(&index, &node, "create", CERTIFICATES, own, ""));
        assert!(!may(&index, &node, "create", CERTIFICATES, client, ""));

        let manager = user(CONTROLLER_MANAGER, &[]);
        let on_signer = |verb: &str, signer: &str| {
            let attributes = Attributes {
                user: manager.clone(),
                verb: verb.into(),
                resource: Some(ResourceAttributes {
                    group: CERTIFICATES.into(),
                    version: "*".into(),
                    resource: "signers".into(),
                    subresource: String::new(),
                    namespace: String::new(),
                    name: signer.into(),
                }),
                path: String::new(),
            };
            index.authorize(&attributes) == Decision::Allow
        };
        for signer in [KUBELET_CLIENT_SIGNER, KUBELET_SERVING_SIGNER] {
            assert!(on_signer("approve", signer), "{signer}");
            assert!(on_signer("sign", signer), "{signer}");
        }
        assert!(!on_signer("approve", "kubernetes.io/kube-apiserver-client"));
        let approval = "certificatesigningrequests/approval";
        assert!(may(&index, &manager, "update", CERTIFICATES, approval, ""));
    }

    #[test]
    fn aggregated_roles_have_their_rules() {
        let objects = bootstrap();
        let role = |name: &str| -> ClusterRole {
            let o = objects
                .iter()
                .find(|o| o["kind"] == "ClusterRole" && o["metadata"]["name"] == name)
                .unwrap();
            serde_json::from_value(o.clone()).unwrap()
        };
        let view = role("view").rules.unwrap();
        assert!(same_rules(&view, &aggregate_to_view()));
        let edit = role("edit").rules.unwrap();
        let mut expected = aggregate_to_edit();
        expected.extend(aggregate_to_view());
        assert!(same_rules(&edit, &expected));
        let admin = role("admin").rules.unwrap();
        assert_eq!(admin.len(), edit.len() + 2);
        assert!(role("admin").aggregation_rule.is_some());
    }

    #[test]
    fn view_edit_and_admin_grant_what_kubernetes_grants() {
        let (view, jane) = bound_in_web("view");
        assert!(may(&view, &jane, "list", "", "pods", "web"));
        assert!(may(&view, &jane, "get", "", "pods/log", "web"));
        assert!(may(&view, &jane, "watch", "apps", "deployments", "web"));
        assert!(!may(&view, &jane, "get", "", "secrets", "web"));
        assert!(!may(&view, &jane, "create", "", "pods", "web"));
        assert!(!may(&view, &jane, "list", "", "pods", "db"));
        assert!(!may(&view, &jane, "get", "", "pods/exec", "web"));
        let (edit, jane) = bound_in_web("edit");
        assert!(may(&edit, &jane, "get", "", "secrets", "web"));
        assert!(may(&edit, &jane, "create", "", "pods/exec", "web"));
        assert!(may(
            &edit,
            &jane,
            "update",
            "apps",
            "deployments/scale",
            "web"
        ));
        assert!(!may(&edit, &jane, "create", GROUP, "rolebindings", "web"));
        assert!(!may(&edit, &jane, "update", "", "endpoints", "web"));
        let (admin, jane) = bound_in_web("admin");
        assert!(may(&admin, &jane, "create", GROUP, "rolebindings", "web"));
        assert!(may(&admin, &jane, "delete", "", "secrets", "web"));
        assert!(!may(&admin, &jane, "delete", "", "namespaces", ""));
        assert!(!may(&admin, &jane, "create", "", "resourcequotas", "web"));
    }

    #[test]
    fn components_hold_their_roles() {
        let index = Index::load(&bootstrap()).unwrap();
        let anonymous = UserInfo::anonymous();
        assert!(may_get_path(&index, &anonymous, "/healthz"));
        assert!(may_get_path(&index, &anonymous, "/version"));
        assert!(!may_get_path(&index, &anonymous, "/apis"));
        assert!(!may_get_path(&index, &anonymous, "/healthz/etcd"));
        assert!(!may(
            &index,
            &anonymous,
            "create",
            AUTHZ,
            "selfsubjectaccessreviews",
            ""
        ));
        let jane = user("jane", &["system:authenticated"]);
        assert!(may_get_path(&index, &jane, "/apis/apps/v1"));
        assert!(may(
            &index,
            &jane,
            "create",
            AUTHZ,
            "selfsubjectaccessreviews",
            ""
        ));
        assert!(may(
            &index,
            &jane,
            "create",
            AUTHZ,
            "selfsubjectrulesreviews",
            "web"
        ));
        assert!(!may(&index, &jane, "list", "", "pods", "web"));
        let root = user("root", &["system:masters"]);
        assert!(may(&index, &root, "escalate", GROUP, "clusterroles", ""));
        assert!(may_get_path(&index, &root, "/metrics"));
        let scheduler = user(SCHEDULER, &["system:authenticated"]);
        assert!(may(
            &index,
            &scheduler,
            "create",
            CORE,
            "pods/binding",
            "web"
        ));
        assert!(may(
            &index,
            &scheduler,
            "update",
            CORE,
            "persistentvolumeclaims",
            "web"
        ));
        assert!(!may(&index, &scheduler, "delete", CORE, "nodes", ""));
        let kcm = user(CONTROLLER_MANAGER, &["system:authenticated"]);
        assert!(may(&index, &kcm, "create", CORE, "pods", "web"));
        assert!(may(
            &index,
            &kcm,
            "update",
            APPS,
            "deployments/status",
            "web"
        ));
        assert!(may(&index, &kcm, "delete", BATCH, "jobs", "web"));
        assert!(may(&index, &kcm, "escalate", GROUP, "clusterroles", ""));
        let gc = user(
            "system:serviceaccount:kube-system:generic-garbage-collector",
            &[],
        );
        assert!(may(&index, &gc, "patch", APPS, "replicasets", "web"));
        assert!(!may(&index, &gc, "create", APPS, "replicasets", "web"));
        // A node holds through RBAC only what Wasmkube's agent needs beyond
        // a kubelet; the Node authorizer grants it the rules of system:node.
        let node = user("system:node:n1", &["system:nodes", "system:authenticated"]);
        assert!(!may(&index, &node, "patch", CORE, "nodes/status", ""));
        assert!(!may(&index, &node, "get", CORE, "secrets", "web"));
        assert!(may(&index, &node, "watch", DISCOVERY, "endpointslices", ""));
        assert!(may(&index, &node, "list", NETWORKING, "ingresses", ""));
        let proxy = user("system:kube-proxy", &["system:authenticated"]);
        assert!(may(
            &index,
            &proxy,
            "watch",
            DISCOVERY,
            "endpointslices",
            ""
        ));
        // Leader election: the named lease, in any namespace; the leases of
        // kube-system through the leader-locking Role.
        assert!(may(
            &index,
            &kcm,
            "update",
            COORDINATION,
            "leases",
            "kube-system"
        ));
        assert!(may(
            &index,
            &scheduler,
            "get",
            COORDINATION,
            "leases",
            "kube-system"
        ));
    }
}
