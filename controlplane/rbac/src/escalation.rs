//! Escalation prevention: nobody grants through RBAC what they do not hold
//! (Kubernetes' `pkg/registry/rbac/validation` and the policy-based storage of
//! the four kinds).
//!
//! - A Role or ClusterRole may be created or changed by a member of
//!   `system:masters`, by a user allowed to `escalate` it, or by a user who
//!   holds every rule it has (in its namespace, for a Role). A ClusterRole with
//!   an aggregation rule (or losing one) needs every permission (`*` on `*`,
//!   and on every path).
//! - A RoleBinding or ClusterRoleBinding may be created or changed by a member
//!   of `system:masters`, by a user allowed to `bind` the role it refers to
//!   (by name, in the binding's namespace), or by a user who holds every rule
//!   of that role.
//! - A change of only what the garbage collector changes (owner references,
//!   finalizers) is never refused.

use std::collections::{BTreeSet, HashMap};
use std::sync::Arc;

use futures::FutureExt;
use futures::future::BoxFuture;
use k8s_openapi::api::rbac::v1::{ClusterRole, PolicyRule, Role, RoleRef};
use serde::Deserialize;
use serde_json::Value;
use wasmkube_apiserver::access::{Attributes, Authorizer, Decision, ResourceAttributes, UserInfo};
use wasmkube_apiserver::admission::{AdmissionRequest, Operation, ValidatingAdmission};
use wasmkube_apiserver::error::{ApiError, ApiResult, StatusDetails};

use crate::authorizer::Rbac;
use crate::index::{GROUP, Index, aggregate};
use crate::rules::{ALL, compact_string, go_quote, go_quote_list, url_prefix_matches};

/// The group whose members may do anything, as the API server's own requests.
pub const SYSTEM_MASTERS: &str = "system:masters";

/// Whether the rules `owner` holds allow everything `servant` rules allow
/// (Kubernetes' `Covers`), and the rules they do not: each servant rule
/// broken down to one group, resource, verb and name (or one path and verb).
pub fn covers(owner: &[PolicyRule], servant: &[PolicyRule]) -> (bool, Vec<PolicyRule>) {
    let uncovered: Vec<PolicyRule> = servant
        .iter()
        .flat_map(breakdown)
        .filter(|sub| !owner.iter().any(|o| rule_covers(o, sub)))
        .collect();
    (uncovered.is_empty(), uncovered)
}

fn list(values: &Option<Vec<String>>) -> &[String] {
    values.as_deref().unwrap_or_default()
}

fn one(value: &str) -> Option<Vec<String>> {
    Some(vec![value.to_owned()])
}

/// `rule` as rules of one group, resource, verb and name each; then one per
/// path and verb.
fn breakdown(rule: &PolicyRule) -> Vec<PolicyRule> {
    let mut subrules = Vec::new();
    for group in list(&rule.api_groups) {
        for resource in list(&rule.resources) {
            for verb in &rule.verbs {
                let sub = PolicyRule {
                    api_groups: one(group),
                    resources: one(resource),
                    verbs: vec![verb.clone()],
                    ..PolicyRule::default()
                };
                let names = list(&rule.resource_names);
                if names.is_empty() {
                    subrules.push(sub);
                } else {
                    for name in names {
                        subrules.push(PolicyRule {
                            resource_names: one(name),
                            ..sub.clone()
                        });
                    }
                }
            }
        }
    }
    for url in list(&rule.non_resource_urls) {
        for verb in &rule.verbs {
            subrules.push(PolicyRule {
                non_resource_urls: one(url),
                verbs: vec![verb.clone()],
                ..PolicyRule::default()
            });
        }
    }
    subrules
}

fn has(set: &[String], value: &str) -> bool {
    set.iter().any(|s| s == value)
}

fn has_all(set: &[String], values: &[String]) -> bool {
    values.iter().all(|v| has(set, v))
}

fn resources_cover(owner: &[String], resources: &[String]) -> bool {
    if has(owner, ALL) || has_all(owner, resources) {
        return true;
    }
    resources.iter().all(|r| {
        has(owner, r)
            || r.split_once('/')
                .is_some_and(|(_, sub)| has(owner, &format!("*/{sub}")))
    })
}

fn urls_cover(owner: &[String], urls: &[String]) -> bool {
    urls.iter()
        .all(|u| owner.iter().any(|o| o == u || url_prefix_matches(o, u)))
}

/// Whether the `owner` rule allows all that `sub`, a broken-down rule, allows.
fn rule_covers(owner: &PolicyRule, sub: &PolicyRule) -> bool {
    let verbs = has(&owner.verbs, ALL) || has_all(&owner.verbs, &sub.verbs);
    let groups = has(list(&owner.api_groups), ALL)
        || has_all(list(&owner.api_groups), list(&sub.api_groups));
    let resources = resources_cover(list(&owner.resources), list(&sub.resources));
    let urls = urls_cover(list(&owner.non_resource_urls), list(&sub.non_resource_urls));
    let owner_names = list(&owner.resource_names);
    let names = owner_names.is_empty()
        || (!list(&sub.resource_names).is_empty()
            && has_all(owner_names, list(&sub.resource_names)));
    verbs && groups && resources && names && urls
}

/// The rules of one group and resource that differ only by verb, made one
/// (Kubernetes' `CompactRules`).
fn compact(rules: Vec<PolicyRule>) -> Vec<PolicyRule> {
    let mut compacted = Vec::new();
    let mut simple: Vec<PolicyRule> = Vec::new();
    let mut by_resource: HashMap<(String, String), usize> = HashMap::new();
    for rule in rules {
        let groups = list(&rule.api_groups);
        let resources = list(&rule.resources);
        let is_simple = list(&rule.resource_names).is_empty()
            && list(&rule.non_resource_urls).is_empty()
            && groups.len() == 1
            && resources.len() == 1;
        if !is_simple {
            compacted.push(rule);
            continue;
        }
        let key = (groups[0].clone(), resources[0].clone());
        match by_resource.get(&key) {
            Some(&i) => simple[i].verbs.extend(rule.verbs),
            None => {
                by_resource.insert(key, simple.len());
                simple.push(rule);
            }
        }
    }
    compacted.extend(simple);
    compacted
}

/// Refuses rules `user` does not hold in `namespace` (Kubernetes'
/// `ConfirmNoEscalation`): the reason, naming the missing rules as
/// Kubernetes words them.
pub fn confirm_no_escalation(
    index: &Index,
    user: &UserInfo,
    namespace: &str,
    rules: &[PolicyRule],
) -> Result<(), String> {
    let (owner, errors) = index.rules_for(user, namespace);
    let (covered, missing) = covers(&owner, rules);
    if covered {
        return Ok(());
    }
    let missing: BTreeSet<String> = compact(missing).iter().map(compact_string).collect();
    let mut message = format!(
        "user {} (groups={}) is attempting to grant RBAC permissions not currently held:\n{}",
        go_quote(&user.name),
        go_quote_list(&user.groups),
        missing.into_iter().collect::<Vec<_>>().join("\n"),
    );
    if !errors.is_empty() {
        let errors: Vec<String> = errors.iter().map(|e| e.storage_message()).collect();
        message.push_str(&format!("; resolution errors: [{}]", aggregate(&errors)));
    }
    Err(message)
}

/// Everything: what the aggregation rule of a ClusterRole needs.
fn full_authority() -> Vec<PolicyRule> {
    let all = || Some(vec![ALL.to_owned()]);
    vec![
        PolicyRule {
            verbs: vec![ALL.to_owned()],
            api_groups: all(),
            resources: all(),
            ..PolicyRule::default()
        },
        PolicyRule {
            verbs: vec![ALL.to_owned()],
            non_resource_urls: all(),
            ..PolicyRule::default()
        },
    ]
}

/// Whether `new`, replacing `old`, changes only what the garbage collector
/// changes: owner references and finalizers (and what the server keeps on
/// every write: the resource version, managed fields, generation).
fn only_gc_fields(new: &Value, old: &Value) -> bool {
    let strip = |object: &Value| {
        let mut object = object.clone();
        if let Some(metadata) = object["metadata"].as_object_mut() {
            for field in [
                "ownerReferences",
                "finalizers",
                "selfLink",
                "managedFields",
                "resourceVersion",
                "generation",
            ] {
                metadata.remove(field);
            }
        }
        object
    };
    strip(new) == strip(old)
}

fn has_aggregation_rule(role: &ClusterRole) -> bool {
    role.aggregation_rule
        .as_ref()
        .and_then(|a| a.cluster_role_selectors.as_ref())
        .is_some_and(|selectors| !selectors.is_empty())
}

/// The admission plugin that refuses writes of Roles, ClusterRoles and their
/// bindings that would grant what the writer does not hold.
pub struct Escalation {
    rbac: Rbac,
    authorizer: Arc<dyn Authorizer>,
}

impl std::fmt::Debug for Escalation {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Escalation").finish_non_exhaustive()
    }
}

/// The 403 Kubernetes returns for `resource` (a plural of the RBAC group)
/// `name`, forbidden for `why`.
fn forbidden(resource: &str, name: &str, why: &str) -> ApiError {
    let qualified = format!("{resource}.{GROUP}");
    let message = if name.is_empty() {
        format!("{qualified} is forbidden: {why}")
    } else {
        format!("{qualified} {} is forbidden: {why}", go_quote(name))
    };
    ApiError::forbidden(message).with_details(StatusDetails {
        name: name.to_owned(),
        group: GROUP.to_owned(),
        kind: resource.to_owned(),
        causes: Vec::new(),
    })
}

fn decoded<'a, T: Deserialize<'a>>(object: &'a Value) -> ApiResult<T> {
    T::deserialize(object).map_err(|e| ApiError::bad_request(e.to_string()))
}

/// A resource request of `user` to `verb` an object of the RBAC group.
fn asks(user: &UserInfo, verb: &str, resource: &str, namespace: &str, name: &str) -> Attributes {
    Attributes {
        user: user.clone(),
        verb: verb.to_owned(),
        resource: Some(ResourceAttributes {
            group: GROUP.to_owned(),
            version: ALL.to_owned(),
            resource: resource.to_owned(),
            subresource: String::new(),
            namespace: namespace.to_owned(),
            name: name.to_owned(),
        }),
        path: String::new(),
    }
}

impl Escalation {
    /// The plugin, checking rules against the index of `rbac`, and asking
    /// `authorizer` (usually the server's) whether a user may `escalate` a role
    /// or `bind` one.
    pub fn new(rbac: &Rbac, authorizer: Arc<dyn Authorizer>) -> Escalation {
        Escalation {
            rbac: rbac.clone(),
            authorizer,
        }
    }

    async fn allowed(&self, attributes: &Attributes) -> bool {
        self.authorizer.authorize(attributes).await == Decision::Allow
    }

    /// A write of a Role or ClusterRole (`resource` names which).
    async fn check_role(
        &self,
        request: &AdmissionRequest<'_>,
        resource: &str,
        object: &Value,
    ) -> ApiResult<()> {
        let namespace = request.namespace.unwrap_or("");
        // As the request names it: a create names no object.
        let name = match request.operation {
            Operation::Create => "",
            _ => request.name,
        };
        if self
            .allowed(&asks(request.user, "escalate", resource, namespace, name))
            .await
        {
            return Ok(());
        }
        if let Some(old) = request.old_object
            && only_gc_fields(object, old)
        {
            return Ok(());
        }
        let (rules, aggregated, name) = if resource == "roles" {
            let role: Role = decoded(object)?;
            (role.rules.unwrap_or_default(), false, role.metadata.name)
        } else {
            let role: ClusterRole = decoded(object)?;
            let old: Option<ClusterRole> = request.old_object.map(decoded).transpose()?;
            let aggregated =
                has_aggregation_rule(&role) || old.as_ref().is_some_and(has_aggregation_rule);
            (
                role.rules.unwrap_or_default(),
                aggregated,
                role.metadata.name,
            )
        };
        let name = name.unwrap_or_default();
        let index = self.rbac.read();
        confirm_no_escalation(&index, request.user, namespace, &rules)
            .map_err(|why| forbidden(resource, &name, &why))?;
        if aggregated {
            confirm_no_escalation(&index, request.user, namespace, &full_authority()).map_err(
                |_| {
                    forbidden(
                        resource,
                        &name,
                        "must have cluster-admin privileges to use the aggregationRule",
                    )
                },
            )?;
        }
        Ok(())
    }

    /// A write of a RoleBinding or ClusterRoleBinding (`resource` names which).
    async fn check_binding(
        &self,
        request: &AdmissionRequest<'_>,
        resource: &str,
        object: &Value,
    ) -> ApiResult<()> {
        let namespace = request.namespace.unwrap_or("");
        if let Some(old) = request.old_object
            && only_gc_fields(object, old)
        {
            return Ok(());
        }
        let role_ref: RoleRef = decoded(&object["roleRef"])?;
        let name = object["metadata"]["name"].as_str().unwrap_or("").to_owned();
        let bound = match role_ref.kind.as_str() {
            "ClusterRole" => Some("clusterroles"),
            "Role" => Some("roles"),
            _ => None,
        };
        if let Some(bound) = bound {
            let mut bind = asks(request.user, "bind", bound, namespace, &role_ref.name);
            if let Some(r) = bind.resource.as_mut() {
                r.group = role_ref.api_group.clone();
            }
            if self.allowed(&bind).await {
                return Ok(());
            }
        }
        let index = self.rbac.read();
        let rules = index
            .role_ref_rules(&role_ref, namespace)
            .map_err(|e| match bound {
                Some(plural) => ApiError::new(404, "NotFound", e.storage_message()).with_details(
                    StatusDetails {
                        name: role_ref.name.clone(),
                        group: GROUP.to_owned(),
                        kind: plural.to_owned(),
                        causes: Vec::new(),
                    },
                ),
                None => ApiError::internal(e.to_string()),
            })?;
        confirm_no_escalation(&index, request.user, namespace, rules)
            .map_err(|why| forbidden(resource, &name, &why))
    }
}

impl ValidatingAdmission for Escalation {
    fn validate<'a>(&'a self, request: &'a AdmissionRequest<'_>) -> BoxFuture<'a, ApiResult<()>> {
        async move {
            let resource = request.resource.plural;
            let ours = request.resource.group == GROUP
                && request.subresource.is_none()
                && matches!(request.operation, Operation::Create | Operation::Update);
            let Some(object) = request.object.as_ref().filter(|_| ours) else {
                return Ok(());
            };
            if request.user.groups.iter().any(|g| g == SYSTEM_MASTERS) {
                return Ok(());
            }
            match resource {
                "roles" | "clusterroles" => self.check_role(request, resource, object).await,
                "rolebindings" | "clusterrolebindings" => {
                    self.check_binding(request, resource, object).await
                }
                _ => Ok(()),
            }
        }
        .boxed()
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;
    use wasmkube_types::registry::by_kind;

    use super::*;
    use crate::index::Kind;

    fn strings(values: &[&str]) -> Option<Vec<String>> {
        Some(values.iter().map(|v| v.to_string()).collect())
    }

    fn rule(verbs: &[&str], groups: &[&str], resources: &[&str]) -> PolicyRule {
        PolicyRule {
            verbs: strings(verbs).unwrap(),
            api_groups: strings(groups),
            resources: strings(resources),
            ..PolicyRule::default()
        }
    }

    fn jane() -> UserInfo {
        UserInfo {
            name: "jane".into(),
            groups: vec!["system:authenticated".into()],
            ..UserInfo::default()
        }
    }

    fn masters() -> UserInfo {
        UserInfo {
            name: "root".into(),
            groups: vec![SYSTEM_MASTERS.into()],
            ..UserInfo::default()
        }
    }

    /// A cluster where `jane` may read pods in `web` and may bind the
    /// ClusterRole `bindable`, and `admin` is bound to `cluster-admin`.
    fn cluster() -> Escalation {
        let rbac_group = "rbac.authorization.k8s.io";
        let objects = [
            json!({"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "ClusterRole",
                "metadata": {"name": "pod-reader"},
                "rules": [{"apiGroups": [""], "resources": ["pods", "pods/log"], "verbs": ["get", "list"]}]}),
            json!({"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "ClusterRole",
                "metadata": {"name": "secrets"},
                "rules": [{"apiGroups": [""], "resources": ["secrets"], "verbs": ["*"]}]}),
            json!({"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "ClusterRole",
                "metadata": {"name": "binder"},
                "rules": [{"apiGroups": [rbac_group], "resources": ["clusterroles"], "verbs": ["bind"], "resourceNames": ["secrets"]}]}),
            json!({"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "ClusterRole",
                "metadata": {"name": "escalator"},
                "rules": [{"apiGroups": [rbac_group], "resources": ["roles"], "verbs": ["escalate"]}]}),
            json!({"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "ClusterRole",
                "metadata": {"name": "cluster-admin"},
                "rules": [{"apiGroups": ["*"], "resources": ["*"], "verbs": ["*"]},
                          {"nonResourceURLs": ["*"], "verbs": ["*"]}]}),
            json!({"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "RoleBinding",
                "metadata": {"name": "jane", "namespace": "web"},
                "roleRef": {"apiGroup": rbac_group, "kind": "ClusterRole", "name": "pod-reader"},
                "subjects": [{"kind": "User", "name": "jane"}]}),
            json!({"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "RoleBinding",
                "metadata": {"name": "binder", "namespace": "web"},
                "roleRef": {"apiGroup": rbac_group, "kind": "ClusterRole", "name": "binder"},
                "subjects": [{"kind": "User", "name": "jane"}]}),
            json!({"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "RoleBinding",
                "metadata": {"name": "escalator", "namespace": "ops"},
                "roleRef": {"apiGroup": rbac_group, "kind": "ClusterRole", "name": "escalator"},
                "subjects": [{"kind": "User", "name": "jane"}]}),
            json!({"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "ClusterRoleBinding",
                "metadata": {"name": "admin"},
                "roleRef": {"apiGroup": rbac_group, "kind": "ClusterRole", "name": "cluster-admin"},
                "subjects": [{"kind": "User", "name": "admin"}]}),
        ];
        let rbac = Rbac::new(Index::load(&objects).unwrap());
        Escalation::new(&rbac, Arc::new(rbac.clone()))
    }

    fn request<'a>(
        kind: Kind,
        user: &'a UserInfo,
        namespace: Option<&'a str>,
        object: Value,
        old: Option<&'a Value>,
    ) -> AdmissionRequest<'a> {
        let resource = by_kind(GROUP, "v1", kind.name()).unwrap();
        AdmissionRequest {
            group: GROUP,
            version: "v1",
            kind: kind.name(),
            resource,
            subresource: None,
            name: "x",
            namespace,
            operation: if old.is_some() {
                Operation::Update
            } else {
                Operation::Create
            },
            user,
            object: Some(object),
            old_object: old,
            dry_run: false,
            warnings: Default::default(),
        }
    }

    fn role(namespace: &str, rules: Value) -> Value {
        json!({"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "Role",
            "metadata": {"name": "x", "namespace": namespace}, "rules": rules})
    }

    fn role_binding(namespace: &str, role_kind: &str, role: &str) -> Value {
        json!({"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "RoleBinding",
            "metadata": {"name": "x", "namespace": namespace},
            "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": role_kind, "name": role},
            "subjects": [{"kind": "User", "name": "joe"}]})
    }

    #[test]
    fn covering_breaks_rules_down() {
        let owner = vec![
            rule(&["get", "list"], &[""], &["pods"]),
            rule(&["get"], &["apps"], &["*/scale"]),
            PolicyRule {
                resource_names: strings(&["a", "b"]),
                ..rule(&["update"], &[""], &["configmaps"])
            },
            PolicyRule {
                verbs: vec!["get".into()],
                non_resource_urls: strings(&["/healthz", "/logs/*"]),
                ..PolicyRule::default()
            },
        ];
        let ok = |servant: Vec<PolicyRule>| covers(&owner, &servant).0;
        assert!(ok(vec![rule(&["list"], &[""], &["pods"])]));
        assert!(!ok(vec![rule(&["watch"], &[""], &["pods"])]));
        assert!(ok(vec![rule(
            &["get"],
            &["apps"],
            &["deployments/scale", "replicasets/scale"]
        )]));
        assert!(!ok(vec![rule(&["get"], &["apps"], &["deployments"])]));
        // Owning only some names covers those names, never all of them.
        let named = |names: &[&str]| PolicyRule {
            resource_names: strings(names),
            ..rule(&["update"], &[""], &["configmaps"])
        };
        assert!(ok(vec![named(&["a"])]));
        assert!(!ok(vec![named(&["a", "c"])]));
        assert!(!ok(vec![rule(&["update"], &[""], &["configmaps"])]));
        let path = |url: &str| PolicyRule {
            verbs: vec!["get".into()],
            non_resource_urls: strings(&[url]),
            ..PolicyRule::default()
        };
        assert!(ok(vec![path("/healthz"), path("/logs/x"), path("/logs/*")]));
        assert!(!ok(vec![path("/logs")]));
        // A star is covered only by a star.
        assert!(!ok(vec![rule(&["get"], &[""], &["*"])]));
        let (covered, missing) =
            covers(&owner, &[rule(&["get", "watch"], &["", "apps"], &["pods"])]);
        assert!(!covered);
        assert_eq!(
            missing.iter().map(compact_string).collect::<Vec<_>>(),
            vec![
                r#"{APIGroups:[""], Resources:["pods"], Verbs:["watch"]}"#,
                r#"{APIGroups:["apps"], Resources:["pods"], Verbs:["get"]}"#,
                r#"{APIGroups:["apps"], Resources:["pods"], Verbs:["watch"]}"#,
            ]
        );
        assert_eq!(
            compact(missing)
                .iter()
                .map(compact_string)
                .collect::<Vec<_>>(),
            vec![
                r#"{APIGroups:[""], Resources:["pods"], Verbs:["watch"]}"#,
                r#"{APIGroups:["apps"], Resources:["pods"], Verbs:["get" "watch"]}"#,
            ]
        );
    }

    #[tokio::test]
    async fn roles_may_grant_only_what_their_writer_holds() {
        let plugin = cluster();
        let jane = jane();
        let held = role(
            "web",
            json!([{"apiGroups": [""], "resources": ["pods"], "verbs": ["get"]}]),
        );
        plugin
            .validate(&request(Kind::Role, &jane, Some("web"), held.clone(), None))
            .await
            .unwrap();
        // Held in web, not in db.
        let elsewhere = role("db", held["rules"].clone());
        let refused = plugin
            .validate(&request(Kind::Role, &jane, Some("db"), elsewhere, None))
            .await
            .unwrap_err();
        assert_eq!((refused.code, refused.reason), (403, "Forbidden"));
        let more = role(
            "web",
            json!([
                {"apiGroups": [""], "resources": ["pods"], "verbs": ["get", "delete", "watch"]},
                {"apiGroups": [""], "resources": ["secrets"], "verbs": ["get"], "resourceNames": ["s"]},
            ]),
        );
        let refused = plugin
            .validate(&request(Kind::Role, &jane, Some("web"), more.clone(), None))
            .await
            .unwrap_err();
        assert_eq!(
            refused.message,
            "roles.rbac.authorization.k8s.io \"x\" is forbidden: user \"jane\" (groups=[\"system:authenticated\"]) \
             is attempting to grant RBAC permissions not currently held:\n\
             {APIGroups:[\"\"], Resources:[\"pods\"], Verbs:[\"delete\" \"watch\"]}\n\
             {APIGroups:[\"\"], Resources:[\"secrets\"], ResourceNames:[\"s\"], Verbs:[\"get\"]}"
        );
        let details = refused.details.unwrap();
        assert_eq!(
            (details.group.as_str(), details.kind.as_str()),
            (GROUP, "roles")
        );
        // Masters and those holding everything may grant it all.
        let root = masters();
        plugin
            .validate(&request(Kind::Role, &root, Some("web"), more.clone(), None))
            .await
            .unwrap();
        let admin = UserInfo {
            name: "admin".into(),
            ..UserInfo::default()
        };
        plugin
            .validate(&request(
                Kind::Role,
                &admin,
                Some("web"),
                more.clone(),
                None,
            ))
            .await
            .unwrap();
        // `escalate` on roles in ops lets jane write any Role there.
        let in_ops = role("ops", more["rules"].clone());
        plugin
            .validate(&request(Kind::Role, &jane, Some("ops"), in_ops, None))
            .await
            .unwrap();
    }

    #[tokio::test]
    async fn only_gc_changes_pass_unchecked() {
        let plugin = cluster();
        let jane = jane();
        let old = role(
            "db",
            json!([{"apiGroups": ["*"], "resources": ["*"], "verbs": ["*"]}]),
        );
        let mut new = old.clone();
        new["metadata"]["finalizers"] = json!(["example.com/keep"]);
        new["metadata"]["resourceVersion"] = json!("12");
        plugin
            .validate(&request(
                Kind::Role,
                &jane,
                Some("db"),
                new.clone(),
                Some(&old),
            ))
            .await
            .unwrap();
        new["metadata"]["labels"] = json!({"a": "b"});
        plugin
            .validate(&request(Kind::Role, &jane, Some("db"), new, Some(&old)))
            .await
            .unwrap_err();
    }

    #[tokio::test]
    async fn aggregation_rules_need_every_permission() {
        let plugin = cluster();
        let role = json!({"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "ClusterRole",
            "metadata": {"name": "agg"},
            "aggregationRule": {"clusterRoleSelectors": [{"matchLabels": {"a": "b"}}]}});
        let jane = jane();
        let refused = plugin
            .validate(&request(Kind::ClusterRole, &jane, None, role.clone(), None))
            .await
            .unwrap_err();
        assert_eq!(
            refused.message,
            r#"clusterroles.rbac.authorization.k8s.io "agg" is forbidden: must have cluster-admin privileges to use the aggregationRule"#
        );
        let admin = UserInfo {
            name: "admin".into(),
            ..UserInfo::default()
        };
        plugin
            .validate(&request(Kind::ClusterRole, &admin, None, role, None))
            .await
            .unwrap();
    }

    #[tokio::test]
    async fn bindings_need_the_rules_or_bind() {
        let plugin = cluster();
        let jane = jane();
        // jane holds pod-reader's rules in web, so she may bind it there.
        plugin
            .validate(&request(
                Kind::RoleBinding,
                &jane,
                Some("web"),
                role_binding("web", "ClusterRole", "pod-reader"),
                None,
            ))
            .await
            .unwrap();
        let refused = plugin
            .validate(&request(
                Kind::RoleBinding,
                &jane,
                Some("db"),
                role_binding("db", "ClusterRole", "pod-reader"),
                None,
            ))
            .await
            .unwrap_err();
        assert!(
            refused.message.starts_with(
                "rolebindings.rbac.authorization.k8s.io \"x\" is forbidden: user \"jane\" (groups=[\"system:authenticated\"]) is attempting to grant RBAC permissions not currently held:\n{APIGroups:[\"\"], Resources:[\"pods\"], Verbs:[\"get\" \"list\"]}"
            ),
            "{}",
            refused.message
        );
        // She does not hold `secrets`, but may bind it, by name, in web only.
        plugin
            .validate(&request(
                Kind::RoleBinding,
                &jane,
                Some("web"),
                role_binding("web", "ClusterRole", "secrets"),
                None,
            ))
            .await
            .unwrap();
        plugin
            .validate(&request(
                Kind::RoleBinding,
                &jane,
                Some("db"),
                role_binding("db", "ClusterRole", "secrets"),
                None,
            ))
            .await
            .unwrap_err();
        plugin
            .validate(&request(
                Kind::RoleBinding,
                &jane,
                Some("web"),
                role_binding("web", "ClusterRole", "cluster-admin"),
                None,
            ))
            .await
            .unwrap_err();
        // A role that does not exist is not found.
        let missing = plugin
            .validate(&request(
                Kind::RoleBinding,
                &jane,
                Some("web"),
                role_binding("web", "Role", "nothing"),
                None,
            ))
            .await
            .unwrap_err();
        assert_eq!(missing.code, 404);
        assert_eq!(
            missing.message,
            r#"roles.rbac.authorization.k8s.io "nothing" not found"#
        );
        // ClusterRoleBindings are checked against cluster-wide rules only.
        let crb = json!({"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "ClusterRoleBinding",
            "metadata": {"name": "y"},
            "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": "pod-reader"},
            "subjects": [{"kind": "User", "name": "joe"}]});
        let refused = plugin
            .validate(&request(
                Kind::ClusterRoleBinding,
                &jane,
                None,
                crb.clone(),
                None,
            ))
            .await
            .unwrap_err();
        assert!(
            refused
                .message
                .starts_with("clusterrolebindings.rbac.authorization.k8s.io \"y\" is forbidden")
        );
        let root = masters();
        plugin
            .validate(&request(Kind::ClusterRoleBinding, &root, None, crb, None))
            .await
            .unwrap();
    }

    #[test]
    fn resolution_errors_are_named_after_the_missing_rules() {
        let index = Index::load(&[json!({
            "apiVersion": "rbac.authorization.k8s.io/v1", "kind": "ClusterRoleBinding",
            "metadata": {"name": "dangling"},
            "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": "gone"},
            "subjects": [{"kind": "User", "name": "jane"}]})])
        .unwrap();
        let why = confirm_no_escalation(&index, &jane(), "", &[rule(&["get"], &[""], &["pods"])])
            .unwrap_err();
        assert_eq!(
            why,
            "user \"jane\" (groups=[\"system:authenticated\"]) is attempting to grant RBAC permissions not currently held:\n\
             {APIGroups:[\"\"], Resources:[\"pods\"], Verbs:[\"get\"]}; \
             resolution errors: [clusterroles.rbac.authorization.k8s.io \"gone\" not found]"
        );
    }
}
