//! The Roles, ClusterRoles, RoleBindings and ClusterRoleBindings of a cluster,
//! kept so that a decision reads only the bindings of the user who asks.
//!
//! Bindings are indexed by subject: a `User` subject by its name, a `Group`
//! subject by its group, a `ServiceAccount` subject by the user name its
//! tokens authenticate as (`system:serviceaccount:NS:NAME`, the namespace
//! being the binding's own when the subject names none; a ClusterRoleBinding's
//! ServiceAccount without a namespace matches no one, as in Kubernetes).
//! Roles are looked up by the bindings when a decision is made, so a changed
//! role takes effect at once, and a binding to a role that does not exist
//! grants nothing but says so.

use std::collections::{BTreeSet, HashMap};
use std::fmt;

use k8s_openapi::api::rbac::v1::{
    ClusterRole, ClusterRoleBinding, PolicyRule, Role, RoleBinding, RoleRef, Subject,
};
use serde::Deserialize;
use serde_json::Value;
use wasmkube_apiserver::access::{
    Attributes, Decision, NonResourceRule, ResourceRule, Rules, UserInfo,
};
use wasmkube_types::ResourceType;
use wasmkube_types::registry::by_kind;

use crate::rules::{go_quote, rule_allows};
use crate::{Error, Result};

/// The API group of the RBAC kinds.
pub const GROUP: &str = "rbac.authorization.k8s.io";

/// What user name the tokens of a ServiceAccount authenticate as.
pub fn service_account_user(namespace: &str, name: &str) -> String {
    format!("system:serviceaccount:{namespace}:{name}")
}

/// The four kinds the index holds.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Kind {
    /// A namespaced set of rules.
    Role,
    /// A cluster-wide set of rules.
    ClusterRole,
    /// Grants a Role's or a ClusterRole's rules in the binding's namespace.
    RoleBinding,
    /// Grants a ClusterRole's rules everywhere.
    ClusterRoleBinding,
}

impl Kind {
    /// Every kind.
    pub const ALL: [Kind; 4] = [
        Kind::Role,
        Kind::ClusterRole,
        Kind::RoleBinding,
        Kind::ClusterRoleBinding,
    ];

    /// The kind's name, as in objects' `kind`.
    pub const fn name(self) -> &'static str {
        match self {
            Kind::Role => "Role",
            Kind::ClusterRole => "ClusterRole",
            Kind::RoleBinding => "RoleBinding",
            Kind::ClusterRoleBinding => "ClusterRoleBinding",
        }
    }

    /// The kind's row in the resource registry (its plural, its storage).
    pub fn resource(self) -> &'static ResourceType {
        by_kind(GROUP, "v1", self.name()).expect("the RBAC kinds are registered")
    }

    /// The kind of an object, from its `apiVersion` and `kind`.
    pub fn of(object: &Value) -> Option<Kind> {
        if object["apiVersion"] != format!("{GROUP}/v1").as_str() {
            return None;
        }
        Kind::ALL.into_iter().find(|k| object["kind"] == k.name())
    }

    fn namespaced(self) -> bool {
        matches!(self, Kind::Role | Kind::RoleBinding)
    }
}

impl fmt::Display for Kind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// Why a binding's role could not be read (Kubernetes' resolution errors).
/// Such a binding grants nothing; the errors are the reason of a decision that
/// has no opinion.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Unresolved {
    /// The Role a RoleBinding names is not in its namespace.
    RoleNotFound {
        /// The Role's name.
        name: String,
    },
    /// The ClusterRole a binding names does not exist.
    ClusterRoleNotFound {
        /// The ClusterRole's name.
        name: String,
    },
    /// The binding's `roleRef.kind` is neither `Role` nor `ClusterRole`.
    UnsupportedKind {
        /// The kind named.
        kind: String,
    },
}

impl Unresolved {
    /// The error as the API server's storage words it (`roles.rbac…` rather
    /// than the authorizer's cache's `role.rbac…`): how escalation checks,
    /// which read roles from storage in Kubernetes, report it.
    pub fn storage_message(&self) -> String {
        match self {
            Unresolved::RoleNotFound { name } => {
                format!("roles.{GROUP} {} not found", go_quote(name))
            }
            Unresolved::ClusterRoleNotFound { name } => {
                format!("clusterroles.{GROUP} {} not found", go_quote(name))
            }
            Unresolved::UnsupportedKind { .. } => self.to_string(),
        }
    }
}

impl fmt::Display for Unresolved {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Unresolved::RoleNotFound { name } => {
                write!(f, "role.{GROUP} {} not found", go_quote(name))
            }
            Unresolved::ClusterRoleNotFound { name } => {
                write!(f, "clusterrole.{GROUP} {} not found", go_quote(name))
            }
            Unresolved::UnsupportedKind { kind } => {
                write!(f, "unsupported role reference kind: {}", go_quote(kind))
            }
        }
    }
}

impl std::error::Error for Unresolved {}

/// Several errors as Kubernetes' `utilerrors.NewAggregate` writes them: one
/// alone, several (each message once) in brackets.
pub(crate) fn aggregate(errors: &[String]) -> String {
    let mut seen = Vec::new();
    for e in errors {
        if !seen.contains(&e) {
            seen.push(e);
        }
    }
    match seen.as_slice() {
        [] => String::new(),
        [one] => (*one).clone(),
        many => {
            let all: Vec<&str> = many.iter().map(|s| s.as_str()).collect();
            format!("[{}]", all.join(", "))
        }
    }
}

/// A binding as the index keeps it: what it grants and to whom.
#[derive(Clone, Debug)]
struct Binding {
    role_ref: RoleRef,
    subjects: Vec<Subject>,
}

/// Binding names by the users and groups their subjects name.
#[derive(Clone, Debug, Default)]
struct BySubject {
    users: HashMap<String, BTreeSet<String>>,
    groups: HashMap<String, BTreeSet<String>>,
}

/// The key a subject is indexed under, if it can match anyone: a user name or
/// a group. `namespace` is the binding's ("" for a ClusterRoleBinding).
fn subject_key(subject: &Subject, namespace: &str) -> Option<(bool, String)> {
    match subject.kind.as_str() {
        "User" => Some((true, subject.name.clone())),
        "Group" => Some((false, subject.name.clone())),
        "ServiceAccount" => {
            let ns = match subject.namespace.as_deref() {
                Some(ns) if !ns.is_empty() => ns,
                _ => namespace,
            };
            (!ns.is_empty()).then(|| (true, service_account_user(ns, &subject.name)))
        }
        _ => None,
    }
}

impl BySubject {
    fn add(&mut self, name: &str, binding: &Binding, namespace: &str) {
        for subject in &binding.subjects {
            if let Some((user, key)) = subject_key(subject, namespace) {
                let map = if user {
                    &mut self.users
                } else {
                    &mut self.groups
                };
                map.entry(key).or_default().insert(name.to_owned());
            }
        }
    }

    fn remove(&mut self, name: &str, binding: &Binding, namespace: &str) {
        for subject in &binding.subjects {
            if let Some((user, key)) = subject_key(subject, namespace) {
                let map = if user {
                    &mut self.users
                } else {
                    &mut self.groups
                };
                if let Some(names) = map.get_mut(&key) {
                    names.remove(name);
                    if names.is_empty() {
                        map.remove(&key);
                    }
                }
            }
        }
    }

    /// The names of the bindings with a subject `user` is, in name order.
    fn of<'a>(&'a self, user: &UserInfo) -> BTreeSet<&'a str> {
        let mut names: BTreeSet<&str> = BTreeSet::new();
        let mut add = |set: Option<&'a BTreeSet<String>>| {
            names.extend(set.into_iter().flatten().map(String::as_str));
        };
        add(self.users.get(&user.name));
        for group in &user.groups {
            add(self.groups.get(group));
        }
        names
    }

    fn is_empty(&self) -> bool {
        self.users.is_empty() && self.groups.is_empty()
    }
}

/// The bindings of one scope (the cluster, or one namespace) and their index.
#[derive(Clone, Debug, Default)]
struct Bindings {
    by_name: HashMap<String, Binding>,
    by_subject: BySubject,
}

impl Bindings {
    fn insert(&mut self, name: &str, binding: Binding, namespace: &str) {
        self.remove(name, namespace);
        self.by_subject.add(name, &binding, namespace);
        self.by_name.insert(name.to_owned(), binding);
    }

    fn remove(&mut self, name: &str, namespace: &str) -> bool {
        let Some(old) = self.by_name.remove(name) else {
            return false;
        };
        self.by_subject.remove(name, &old, namespace);
        true
    }

    fn is_empty(&self) -> bool {
        self.by_name.is_empty() && self.by_subject.is_empty()
    }
}

/// The RBAC objects of a cluster, updated one object at a time, and the
/// decisions and rules Kubernetes' RBAC authorizer derives from them.
#[derive(Clone, Debug, Default)]
pub struct Index {
    /// Role rules by namespace and name.
    roles: HashMap<String, HashMap<String, Vec<PolicyRule>>>,
    /// ClusterRole rules by name.
    cluster_roles: HashMap<String, Vec<PolicyRule>>,
    /// RoleBindings by namespace.
    role_bindings: HashMap<String, Bindings>,
    cluster_role_bindings: Bindings,
}

fn decode<'a, T: Deserialize<'a>>(kind: Kind, object: &'a Value) -> Result<T> {
    T::deserialize(object).map_err(|source| Error::Decode {
        kind,
        name: object["metadata"]["name"].as_str().unwrap_or("").to_owned(),
        source,
    })
}

impl Index {
    /// An empty index.
    pub fn new() -> Index {
        Index::default()
    }

    /// An index of `objects` (each an RBAC object of any of the four kinds).
    pub fn load<'a>(objects: impl IntoIterator<Item = &'a Value>) -> Result<Index> {
        let mut index = Index::new();
        for object in objects {
            let kind = Kind::of(object).ok_or_else(|| Error::NotRbac {
                api_version: object["apiVersion"].as_str().unwrap_or("").to_owned(),
                kind: object["kind"].as_str().unwrap_or("").to_owned(),
            })?;
            index.apply(kind, object)?;
        }
        Ok(index)
    }

    /// Adds `object`, of `kind`, or replaces the object of that kind with its
    /// namespace and name.
    pub fn apply(&mut self, kind: Kind, object: &Value) -> Result<()> {
        match kind {
            Kind::Role => self.insert_role(decode(kind, object)?),
            Kind::ClusterRole => self.insert_cluster_role(decode(kind, object)?),
            Kind::RoleBinding => self.insert_role_binding(decode(kind, object)?),
            Kind::ClusterRoleBinding => self.insert_cluster_role_binding(decode(kind, object)?),
        }
        Ok(())
    }

    /// Adds or replaces a Role.
    pub fn insert_role(&mut self, role: Role) {
        let namespace = role.metadata.namespace.unwrap_or_default();
        let name = role.metadata.name.unwrap_or_default();
        let rules = role.rules.unwrap_or_default();
        self.roles.entry(namespace).or_default().insert(name, rules);
    }

    /// Adds or replaces a ClusterRole.
    pub fn insert_cluster_role(&mut self, role: ClusterRole) {
        let name = role.metadata.name.unwrap_or_default();
        self.cluster_roles
            .insert(name, role.rules.unwrap_or_default());
    }

    /// Adds or replaces a RoleBinding.
    pub fn insert_role_binding(&mut self, binding: RoleBinding) {
        let namespace = binding.metadata.namespace.unwrap_or_default();
        let name = binding.metadata.name.unwrap_or_default();
        let b = Binding {
            role_ref: binding.role_ref,
            subjects: binding.subjects.unwrap_or_default(),
        };
        self.role_bindings
            .entry(namespace.clone())
            .or_default()
            .insert(&name, b, &namespace);
    }

    /// Adds or replaces a ClusterRoleBinding.
    pub fn insert_cluster_role_binding(&mut self, binding: ClusterRoleBinding) {
        let name = binding.metadata.name.unwrap_or_default();
        let b = Binding {
            role_ref: binding.role_ref,
            subjects: binding.subjects.unwrap_or_default(),
        };
        self.cluster_role_bindings.insert(&name, b, "");
    }

    /// Removes the object of `kind` called `name` (in `namespace`, for the
    /// namespaced kinds); whether there was one.
    pub fn remove(&mut self, kind: Kind, namespace: &str, name: &str) -> bool {
        let namespace = if kind.namespaced() { namespace } else { "" };
        match kind {
            Kind::Role => {
                let Some(roles) = self.roles.get_mut(namespace) else {
                    return false;
                };
                let removed = roles.remove(name).is_some();
                if roles.is_empty() {
                    self.roles.remove(namespace);
                }
                removed
            }
            Kind::ClusterRole => self.cluster_roles.remove(name).is_some(),
            Kind::RoleBinding => {
                let Some(bindings) = self.role_bindings.get_mut(namespace) else {
                    return false;
                };
                let removed = bindings.remove(name, namespace);
                if bindings.is_empty() {
                    self.role_bindings.remove(namespace);
                }
                removed
            }
            Kind::ClusterRoleBinding => self.cluster_role_bindings.remove(name, ""),
        }
    }

    /// The namespaces and names of the objects of `kind` the index holds
    /// (namespace "" for the cluster kinds).
    pub fn names(&self, kind: Kind) -> Vec<(String, String)> {
        let mut out = Vec::new();
        let cluster = |name: &String| (String::new(), name.clone());
        match kind {
            Kind::Role => {
                for (namespace, roles) in &self.roles {
                    out.extend(roles.keys().map(|n| (namespace.clone(), n.clone())));
                }
            }
            Kind::RoleBinding => {
                for (namespace, bindings) in &self.role_bindings {
                    out.extend(
                        bindings
                            .by_name
                            .keys()
                            .map(|n| (namespace.clone(), n.clone())),
                    );
                }
            }
            Kind::ClusterRole => out.extend(self.cluster_roles.keys().map(cluster)),
            Kind::ClusterRoleBinding => {
                out.extend(self.cluster_role_bindings.by_name.keys().map(cluster))
            }
        }
        out
    }

    /// The rules a binding's `roleRef` grants (Kubernetes'
    /// `GetRoleReferenceRules`): a Role in the binding's `namespace` ("" for
    /// a ClusterRoleBinding, where no Role is found), or a ClusterRole.
    pub fn role_ref_rules(
        &self,
        role_ref: &RoleRef,
        namespace: &str,
    ) -> Result<&[PolicyRule], Unresolved> {
        let name = &role_ref.name;
        match role_ref.kind.as_str() {
            "Role" => self
                .roles
                .get(namespace)
                .filter(|_| !namespace.is_empty())
                .and_then(|roles| roles.get(name))
                .map(Vec::as_slice)
                .ok_or_else(|| Unresolved::RoleNotFound { name: name.clone() }),
            "ClusterRole" => self
                .cluster_roles
                .get(name)
                .map(Vec::as_slice)
                .ok_or_else(|| Unresolved::ClusterRoleNotFound { name: name.clone() }),
            kind => Err(Unresolved::UnsupportedKind {
                kind: kind.to_owned(),
            }),
        }
    }

    /// Calls `visit` with the rules of every binding that applies to `user` in
    /// `namespace` (the ClusterRoleBindings, then for a namespace its
    /// RoleBindings, each in name order), or the reason a binding's role could
    /// not be read; stops when `visit` returns false.
    fn visit(
        &self,
        user: &UserInfo,
        namespace: &str,
        mut visit: impl FnMut(Result<&[PolicyRule], Unresolved>) -> bool,
    ) {
        let scopes = [
            Some(("", &self.cluster_role_bindings)),
            (!namespace.is_empty())
                .then(|| self.role_bindings.get(namespace).map(|b| (namespace, b)))
                .flatten(),
        ];
        for (ns, bindings) in scopes.into_iter().flatten() {
            for name in bindings.by_subject.of(user) {
                let binding = &bindings.by_name[name];
                if !visit(self.role_ref_rules(&binding.role_ref, ns)) {
                    return;
                }
            }
        }
    }

    /// What `user` may do in `namespace` ("" for the cluster scope): the rules
    /// of every binding that applies, and why the rules of some could not be
    /// read (Kubernetes' `RulesFor`).
    pub fn rules_for(
        &self,
        user: &UserInfo,
        namespace: &str,
    ) -> (Vec<PolicyRule>, Vec<Unresolved>) {
        let mut rules = Vec::new();
        let mut errors = Vec::new();
        self.visit(user, namespace, |found| {
            match found {
                Ok(r) => rules.extend_from_slice(r),
                Err(e) => errors.push(e),
            }
            true
        });
        (rules, errors)
    }

    /// The decision of Kubernetes' RBAC authorizer on `attributes`: allowed
    /// when a rule of a binding that applies allows it; otherwise no opinion,
    /// with the reasons bindings' roles could not be read (`RBAC: …`), if any.
    pub fn authorize(&self, attributes: &Attributes) -> Decision {
        let namespace = attributes
            .resource
            .as_ref()
            .map_or("", |r| r.namespace.as_str());
        let mut allowed = false;
        let mut errors = Vec::new();
        // Many bindings name the same role (a group bound to `view` in every
        // team's binding): its rules, the same slice of the index, are read
        // once.
        let mut read: Vec<*const PolicyRule> = Vec::new();
        self.visit(&attributes.user, namespace, |found| match found {
            Ok(rules) if read.contains(&rules.as_ptr()) => true,
            Ok(rules) => {
                read.push(rules.as_ptr());
                allowed = rules.iter().any(|r| rule_allows(attributes, r));
                !allowed
            }
            Err(e) => {
                errors.push(e.to_string());
                true
            }
        });
        if allowed {
            return Decision::Allow;
        }
        if errors.is_empty() {
            Decision::NoOpinion(String::new())
        } else {
            Decision::NoOpinion(format!("RBAC: {}", aggregate(&errors)))
        }
    }

    /// What `user` may do in `namespace`, as a SelfSubjectRulesReview reports
    /// it: each rule with resources as a resource rule, each with paths as a
    /// non-resource rule.
    pub fn rules(&self, user: &UserInfo, namespace: &str) -> Rules {
        let (rules, _) = self.rules_for(user, namespace);
        let mut out = Rules::default();
        for rule in rules {
            let resources = rule.resources.unwrap_or_default();
            if !resources.is_empty() {
                out.resource_rules.push(ResourceRule {
                    verbs: rule.verbs.clone(),
                    api_groups: rule.api_groups.unwrap_or_default(),
                    resources,
                    resource_names: rule.resource_names.unwrap_or_default(),
                });
            }
            let urls = rule.non_resource_urls.unwrap_or_default();
            if !urls.is_empty() {
                out.non_resource_rules.push(NonResourceRule {
                    verbs: rule.verbs,
                    non_resource_urls: urls,
                });
            }
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;
    use wasmkube_apiserver::access::ResourceAttributes;

    fn user(name: &str, groups: &[&str]) -> UserInfo {
        UserInfo {
            name: name.into(),
            groups: groups.iter().map(|g| g.to_string()).collect(),
            ..UserInfo::default()
        }
    }

    fn ask(user: &UserInfo, verb: &str, resource: &str, namespace: &str, name: &str) -> Attributes {
        Attributes {
            user: user.clone(),
            verb: verb.into(),
            resource: Some(ResourceAttributes {
                group: String::new(),
                version: "v1".into(),
                resource: resource.into(),
                subresource: String::new(),
                namespace: namespace.into(),
                name: name.into(),
            }),
            path: String::new(),
        }
    }

    fn cluster_role(name: &str, verbs: &[&str], resources: &[&str]) -> Value {
        json!({
            "apiVersion": "rbac.authorization.k8s.io/v1", "kind": "ClusterRole",
            "metadata": {"name": name},
            "rules": [{"apiGroups": [""], "resources": resources, "verbs": verbs}],
        })
    }

    fn role(namespace: &str, name: &str, verbs: &[&str], resources: &[&str]) -> Value {
        json!({
            "apiVersion": "rbac.authorization.k8s.io/v1", "kind": "Role",
            "metadata": {"name": name, "namespace": namespace},
            "rules": [{"apiGroups": [""], "resources": resources, "verbs": verbs}],
        })
    }

    fn binding(namespace: Option<&str>, name: &str, role: (&str, &str), subjects: Value) -> Value {
        let kind = if namespace.is_some() {
            "RoleBinding"
        } else {
            "ClusterRoleBinding"
        };
        json!({
            "apiVersion": "rbac.authorization.k8s.io/v1", "kind": kind,
            "metadata": {"name": name, "namespace": namespace},
            "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": role.0, "name": role.1},
            "subjects": subjects,
        })
    }

    #[test]
    fn subjects_match_users_groups_and_service_accounts() {
        let index = Index::load(&[
            cluster_role("reader", &["get"], &["pods"]),
            binding(
                None,
                "readers",
                ("ClusterRole", "reader"),
                json!([
                    {"kind": "User", "name": "alice", "apiGroup": "rbac.authorization.k8s.io"},
                    {"kind": "Group", "name": "team"},
                    {"kind": "ServiceAccount", "name": "bot", "namespace": "ci"},
                    {"kind": "ServiceAccount", "name": "nobody"},
                    {"kind": "Robot", "name": "r2"},
                ]),
            ),
            binding(
                Some("web"),
                "local",
                ("ClusterRole", "reader"),
                json!([{"kind": "ServiceAccount", "name": "deployer"}]),
            ),
        ])
        .unwrap();
        let get = |u: &UserInfo, ns: &str| index.authorize(&ask(u, "get", "pods", ns, "p"));
        let allowed = Decision::Allow;
        let none = Decision::NoOpinion(String::new());
        assert_eq!(get(&user("alice", &[]), "x"), allowed);
        assert_eq!(get(&user("alicia", &[]), "x"), none);
        assert_eq!(get(&user("carol", &["team"]), ""), allowed);
        assert_eq!(get(&user("team", &[]), ""), none, "a user is not a group");
        assert_eq!(
            get(&user("alice-group", &["alice"]), ""),
            none,
            "a group is not a user"
        );
        assert_eq!(
            get(&user("system:serviceaccount:ci:bot", &[]), "x"),
            allowed
        );
        assert_eq!(get(&user("system:serviceaccount:x:bot", &[]), "x"), none);
        // A ServiceAccount without a namespace in a ClusterRoleBinding is no one.
        assert_eq!(get(&user("system:serviceaccount::nobody", &[]), ""), none);
        assert_eq!(get(&user("nobody", &[]), ""), none);
        assert_eq!(get(&user("r2", &[]), ""), none);
        // In a RoleBinding it is the binding's namespace's.
        let deployer = user("system:serviceaccount:web:deployer", &[]);
        assert_eq!(get(&deployer, "web"), allowed);
        assert_eq!(get(&deployer, "other"), none);
        assert_eq!(get(&deployer, ""), none);
    }

    #[test]
    fn a_role_many_bindings_name_is_read_once_and_the_others_still_count() {
        let group = json!([{"kind": "Group", "name": "team"}]);
        let mut objects = vec![
            cluster_role("reader", &["get"], &["pods"]),
            cluster_role("writer", &["create"], &["pods"]),
            role("web", "deleter", &["delete"], &["pods"]),
            binding(Some("web"), "delete", ("Role", "deleter"), group.clone()),
            binding(
                Some("web"),
                "write",
                ("ClusterRole", "writer"),
                group.clone(),
            ),
            binding(
                Some("web"),
                "gone",
                ("ClusterRole", "missing"),
                group.clone(),
            ),
        ];
        for n in 0..20 {
            let name = format!("read-{n}");
            objects.push(binding(
                None,
                &name,
                ("ClusterRole", "reader"),
                group.clone(),
            ));
            objects.push(binding(
                Some("web"),
                &name,
                ("ClusterRole", "reader"),
                group.clone(),
            ));
        }
        let index = Index::load(&objects).unwrap();
        let member = user("carol", &["team"]);
        for verb in ["get", "create", "delete"] {
            let asked = index.authorize(&ask(&member, verb, "pods", "web", "p"));
            assert_eq!(asked, Decision::Allow, "{verb}");
        }
        let refused = index.authorize(&ask(&member, "patch", "pods", "web", "p"));
        let reason = "RBAC: clusterrole.rbac.authorization.k8s.io \"missing\" not found";
        assert_eq!(refused, Decision::NoOpinion(reason.into()));
    }

    #[test]
    fn role_bindings_grant_only_in_their_namespace() {
        let mut index = Index::load(&[
            cluster_role("editor", &["get", "create"], &["pods"]),
            role("web", "viewer", &["get"], &["services"]),
            binding(
                Some("web"),
                "edit",
                ("ClusterRole", "editor"),
                json!([{"kind": "User", "name": "bob"}]),
            ),
            binding(
                Some("web"),
                "view",
                ("Role", "viewer"),
                json!([{"kind": "User", "name": "bob"}]),
            ),
        ])
        .unwrap();
        let bob = user("bob", &[]);
        assert_eq!(
            index.authorize(&ask(&bob, "create", "pods", "web", "")),
            Decision::Allow
        );
        assert_eq!(
            index.authorize(&ask(&bob, "get", "services", "web", "s")),
            Decision::Allow
        );
        let none = Decision::NoOpinion(String::new());
        assert_eq!(
            index.authorize(&ask(&bob, "create", "pods", "db", "")),
            none
        );
        assert_eq!(index.authorize(&ask(&bob, "list", "pods", "", "")), none);
        // A Role of the same name elsewhere is not the one bound.
        index
            .apply(Kind::Role, &role("db", "viewer", &["*"], &["*"]))
            .unwrap();
        assert_eq!(
            index.authorize(&ask(&bob, "delete", "pods", "web", "p")),
            none
        );
        // Changing a role changes what its bindings grant.
        index
            .apply(Kind::Role, &role("web", "viewer", &["*"], &["*"]))
            .unwrap();
        assert_eq!(
            index.authorize(&ask(&bob, "delete", "pods", "web", "p")),
            Decision::Allow
        );
        // Removing the binding takes it back.
        assert!(index.remove(Kind::RoleBinding, "web", "view"));
        assert!(!index.remove(Kind::RoleBinding, "web", "view"));
        assert_eq!(
            index.authorize(&ask(&bob, "delete", "pods", "web", "p")),
            none
        );
        assert_eq!(
            index.authorize(&ask(&bob, "get", "pods", "web", "p")),
            Decision::Allow
        );
    }

    #[test]
    fn missing_roles_are_the_reason_of_no_opinion() {
        let mut index = Index::load(&[
            binding(
                None,
                "gone",
                ("ClusterRole", "x"),
                json!([{"kind": "User", "name": "eve"}]),
            ),
            binding(
                None,
                "odd",
                ("Robot", "y"),
                json!([{"kind": "Group", "name": "g"}]),
            ),
            binding(
                None,
                "namespaced",
                ("Role", "z"),
                json!([{"kind": "User", "name": "eve"}]),
            ),
            binding(
                Some("web"),
                "local",
                ("Role", "r"),
                json!([{"kind": "User", "name": "eve"}]),
            ),
        ])
        .unwrap();
        let eve = user("eve", &[]);
        assert_eq!(
            index.authorize(&ask(&eve, "get", "pods", "", "p")),
            Decision::NoOpinion(
                r#"RBAC: [clusterrole.rbac.authorization.k8s.io "x" not found, role.rbac.authorization.k8s.io "z" not found]"#
                    .into()
            )
        );
        index.remove(Kind::ClusterRoleBinding, "", "namespaced");
        assert_eq!(
            index.authorize(&ask(&eve, "get", "pods", "", "p")),
            Decision::NoOpinion(
                r#"RBAC: clusterrole.rbac.authorization.k8s.io "x" not found"#.into()
            )
        );
        assert_eq!(
            index.authorize(&ask(&user("u", &["g"]), "get", "pods", "", "p")),
            Decision::NoOpinion(r#"RBAC: unsupported role reference kind: "Robot""#.into())
        );
        assert_eq!(
            index.authorize(&ask(&eve, "get", "pods", "web", "p")),
            Decision::NoOpinion(
                r#"RBAC: [clusterrole.rbac.authorization.k8s.io "x" not found, role.rbac.authorization.k8s.io "r" not found]"#
                    .into()
            )
        );
        // A binding that allows wins over another that cannot be read.
        index
            .apply(Kind::ClusterRole, &cluster_role("x", &["get"], &["pods"]))
            .unwrap();
        assert_eq!(
            index.authorize(&ask(&eve, "get", "pods", "web", "p")),
            Decision::Allow
        );
        let (rules, errors) = index.rules_for(&eve, "web");
        assert_eq!(rules.len(), 1);
        assert_eq!(errors, vec![Unresolved::RoleNotFound { name: "r".into() }]);
        assert_eq!(
            errors[0].storage_message(),
            r#"roles.rbac.authorization.k8s.io "r" not found"#
        );
    }

    #[test]
    fn replacing_a_binding_reindexes_its_subjects() {
        let mut index = Index::load(&[
            cluster_role("reader", &["get"], &["pods"]),
            binding(
                None,
                "b",
                ("ClusterRole", "reader"),
                json!([{"kind": "User", "name": "alice"}]),
            ),
        ])
        .unwrap();
        index
            .apply(
                Kind::ClusterRoleBinding,
                &binding(
                    None,
                    "b",
                    ("ClusterRole", "reader"),
                    json!([{"kind": "User", "name": "bob"}]),
                ),
            )
            .unwrap();
        let get = |name: &str| index.authorize(&ask(&user(name, &[]), "get", "pods", "", "p"));
        assert_eq!(get("alice"), Decision::NoOpinion(String::new()));
        assert_eq!(get("bob"), Decision::Allow);
        assert_eq!(
            index.names(Kind::ClusterRoleBinding),
            vec![(String::new(), "b".into())]
        );
        assert!(index.remove(Kind::ClusterRoleBinding, "", "b"));
        assert!(index.cluster_role_bindings.is_empty());
    }

    #[test]
    fn rules_list_what_the_user_holds_in_a_namespace() {
        let index = Index::load(&[
            json!({
                "apiVersion": "rbac.authorization.k8s.io/v1", "kind": "ClusterRole",
                "metadata": {"name": "mixed"},
                "rules": [
                    {"apiGroups": ["apps"], "resources": ["deployments"], "resourceNames": ["d"], "verbs": ["get"]},
                    {"nonResourceURLs": ["/healthz"], "verbs": ["get"]},
                ],
            }),
            role("web", "pods", &["list"], &["pods"]),
            binding(
                None,
                "all",
                ("ClusterRole", "mixed"),
                json!([{"kind": "Group", "name": "system:authenticated"}]),
            ),
            binding(
                Some("web"),
                "pods",
                ("Role", "pods"),
                json!([{"kind": "User", "name": "alice"}]),
            ),
        ])
        .unwrap();
        let alice = user("alice", &["system:authenticated"]);
        let web = index.rules(&alice, "web");
        assert_eq!(
            web.resource_rules,
            vec![
                ResourceRule {
                    verbs: vec!["get".into()],
                    api_groups: vec!["apps".into()],
                    resources: vec!["deployments".into()],
                    resource_names: vec!["d".into()],
                },
                ResourceRule {
                    verbs: vec!["list".into()],
                    api_groups: vec!["".into()],
                    resources: vec!["pods".into()],
                    resource_names: vec![],
                },
            ]
        );
        assert_eq!(
            web.non_resource_rules,
            vec![NonResourceRule {
                verbs: vec!["get".into()],
                non_resource_urls: vec!["/healthz".into()],
            }]
        );
        assert!(!web.incomplete);
        assert_eq!(index.rules(&alice, "").resource_rules.len(), 1);
        assert_eq!(index.rules(&alice, "db").resource_rules.len(), 1);
        assert_eq!(index.rules(&user("bob", &[]), "web"), Rules::default());
    }

    #[test]
    fn objects_of_other_kinds_are_refused() {
        let pod = json!({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "p"}});
        assert!(matches!(Index::load([&pod]), Err(Error::NotRbac { .. })));
        let bad = json!({
            "apiVersion": "rbac.authorization.k8s.io/v1", "kind": "Role",
            "metadata": {"name": "r"}, "rules": "everything",
        });
        assert!(matches!(
            Index::load([&bad]),
            Err(Error::Decode {
                kind: Kind::Role,
                ..
            })
        ));
    }

    #[test]
    fn errors_are_aggregated_as_kubernetes_does() {
        assert_eq!(aggregate(&[]), "");
        assert_eq!(aggregate(&["a".into()]), "a");
        assert_eq!(aggregate(&["a".into(), "a".into()]), "a");
        assert_eq!(aggregate(&["a".into(), "b".into(), "a".into()]), "[a, b]");
    }
}
