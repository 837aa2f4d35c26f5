//! Who sends a request and whether they may do what it asks: the first two stages
//! of every request, as Kubernetes' authentication and authorization filters run
//! them. An [`Authenticator`] says who sent it (a [`UserInfo`]); an [`Authorizer`]
//! reads what it asks ([`Attributes`]: user, verb, group, resource, subresource,
//! namespace, name, or a path) and allows it, denies it or has no opinion. What
//! no authorizer allows is a 403 Forbidden, worded as Kubernetes words it.
//!
//! The server holds a [`Union`] of authenticators and one authorizer
//! ([`crate::Access`]); until they are configured, every request is anonymous
//! and allowed.

use std::collections::BTreeMap;
use std::sync::Arc;

use axum::http::Method;
use axum::http::request::Parts;
use futures::FutureExt;
use futures::future::BoxFuture;

use crate::error::{ApiError, ApiResult, StatusDetails};
use crate::path::Target;

/// Who sent a request, as Kubernetes' `user.Info` says it.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct UserInfo {
    /// The user's name: `alice`, `system:serviceaccount:default:builder`.
    pub name: String,
    /// A unique id of the user, if the authenticator knows one.
    pub uid: String,
    /// The groups the user is in: `system:authenticated`, `system:masters`.
    pub groups: Vec<String>,
    /// What else the authenticator knows, by key.
    pub extra: BTreeMap<String, Vec<String>>,
}

impl UserInfo {
    /// The user of a request no authenticator recognizes, as Kubernetes names it.
    pub fn anonymous() -> UserInfo {
        UserInfo {
            name: "system:anonymous".into(),
            groups: vec!["system:unauthenticated".into()],
            ..UserInfo::default()
        }
    }

    /// The API server itself, on what it does on its own (emptying a namespace
    /// being deleted), as Kubernetes names it.
    pub fn server() -> UserInfo {
        UserInfo {
            name: "system:apiserver".into(),
            groups: vec!["system:authenticated".into(), "system:masters".into()],
            ..UserInfo::default()
        }
    }
}

/// Says who sent a request.
pub trait Authenticator: Send + Sync {
    /// The user who sent `request` (its method, URI, headers, and the extensions
    /// where the connection's layer puts what it knows, such as a client
    /// certificate): `None` when it carries no credentials this authenticator
    /// reads; an error (a 401, [`ApiError::unauthorized`]) when it carries some
    /// that are not valid.
    fn authenticate<'a>(&'a self, request: &'a Parts)
    -> BoxFuture<'a, ApiResult<Option<UserInfo>>>;
}

/// Several authenticators, asked in order as Kubernetes' union authenticator
/// asks them: the first that knows the user wins; credentials none of them
/// accepts are a 401; a request with none is anonymous. Every user it knows is
/// in `system:authenticated`.
#[derive(Default)]
pub struct Union(pub Vec<Arc<dyn Authenticator>>);

impl std::fmt::Debug for Union {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_tuple("Union").field(&self.0.len()).finish()
    }
}

impl Union {
    /// Who sent `request`: a user, [`UserInfo::anonymous`], or a 401.
    pub async fn user(&self, request: &Parts) -> ApiResult<UserInfo> {
        let mut refused = None;
        for authenticator in &self.0 {
            match authenticator.authenticate(request).await {
                Ok(Some(mut user)) => {
                    if !user.groups.iter().any(|g| g == AUTHENTICATED) {
                        user.groups.push(AUTHENTICATED.into());
                    }
                    return Ok(user);
                }
                Ok(None) => {}
                Err(e) => refused = Some(e),
            }
        }
        match refused {
            Some(e) => Err(e),
            None => Ok(UserInfo::anonymous()),
        }
    }
}

/// The group of every user an authenticator knows.
pub const AUTHENTICATED: &str = "system:authenticated";

/// Issues the tokens of ServiceAccounts (the `token` subresource, a
/// TokenRequest).
pub trait TokenIssuer: Send + Sync {
    /// A signed token saying what `claims` says.
    fn issue(&self, claims: &TokenClaims) -> Result<String, String>;

    /// The audiences of a token whose request names none: the server's own.
    fn audiences(&self) -> Vec<String>;
}

/// What a ServiceAccount token says.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct TokenClaims {
    /// The ServiceAccount's namespace.
    pub namespace: String,
    /// The ServiceAccount: its name and uid.
    pub service_account: (String, String),
    /// Who the token is for.
    pub audiences: Vec<String>,
    /// When it expires, in seconds since the epoch.
    pub expires: i64,
    /// The pod it is bound to, if any (name and uid): it stops working when
    /// the pod goes.
    pub pod: Option<(String, String)>,
    /// The node of that pod, if known (name and uid).
    pub node: Option<(String, String)>,
}

/// Which requests without credentials go on as `system:anonymous`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum AnonymousAccess {
    /// Every one of them (a server with no authenticator configured).
    #[default]
    Everywhere,
    /// Only those for the paths anyone may read ([`PUBLIC_PATHS`]); any other
    /// is a 401, as kube-apiserver answers when anonymous access is limited to
    /// those paths.
    PublicPaths,
}

/// The paths a request without credentials may reach.
pub const PUBLIC_PATHS: [&str; 4] = ["/healthz", "/livez", "/readyz", "/version"];

/// What a request asks to do, as an authorizer reads it (Kubernetes'
/// `authorizer.Attributes`): a verb on a resource, or on a path for requests
/// that name no resource (discovery).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Attributes {
    /// Who asks.
    pub user: UserInfo,
    /// `get`, `list`, `watch`, `create`, `update`, `patch`, `delete`,
    /// `deletecollection`; for a path, the HTTP method in lower case.
    pub verb: String,
    /// The resource asked for, or `None` for a request on a path.
    pub resource: Option<ResourceAttributes>,
    /// The request's path.
    pub path: String,
}

/// The resource a request names.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ResourceAttributes {
    /// The API group, "" for the core group.
    pub group: String,
    /// The API version.
    pub version: String,
    /// The plural resource: `pods`.
    pub resource: String,
    /// The subresource, "" for none: `status`, `log`.
    pub subresource: String,
    /// The namespace, "" for a cluster-scoped request.
    pub namespace: String,
    /// The object's name, "" for a collection.
    pub name: String,
}

impl Attributes {
    /// What a request with `method` and `path` on `target` asks; `watch` when the
    /// query asks to watch.
    pub(crate) fn of_target(
        user: &UserInfo,
        method: &Method,
        path: &str,
        target: &Target,
        watch: bool,
    ) -> Attributes {
        let r = target.resource;
        let named = target.name.is_some();
        let streams = matches!(
            target.subresource.as_deref(),
            Some("portforward" | "exec" | "attach")
        );
        let verb = match *method {
            // A stream opened by a WebSocket's GET is authorized as the POST
            // that opens it over SPDY, as Kubernetes authorizes it.
            _ if streams => "create",
            Method::GET if named => "get",
            Method::GET if watch => "watch",
            Method::GET => "list",
            Method::POST => "create",
            Method::PUT => "update",
            Method::PATCH => "patch",
            Method::DELETE if named => "delete",
            Method::DELETE => "deletecollection",
            _ => return Attributes::of_path(user, method, path),
        };
        let text = |s: Option<&String>| s.cloned().unwrap_or_default();
        Attributes {
            user: user.clone(),
            verb: verb.into(),
            resource: Some(ResourceAttributes {
                group: r.group.into(),
                version: r.version.into(),
                resource: r.plural.into(),
                subresource: text(target.subresource.as_ref()),
                namespace: text(target.namespace.as_ref()),
                name: text(target.name.as_ref()),
            }),
            path: path.into(),
        }
    }

    /// What a request with `method` on a `path` that names no resource asks.
    pub(crate) fn of_path(user: &UserInfo, method: &Method, path: &str) -> Attributes {
        Attributes {
            user: user.clone(),
            verb: method.as_str().to_ascii_lowercase(),
            resource: None,
            path: path.into(),
        }
    }

    /// The 403 of a request no authorizer allows, worded as Kubernetes words it.
    pub fn forbidden(&self, reason: &str) -> ApiError {
        let user = &self.user.name;
        let verb = &self.verb;
        let Some(r) = &self.resource else {
            let path = &self.path;
            let why = with_reason(format!("User {user:?} cannot {verb} path {path:?}"), reason);
            return ApiError::forbidden(format!("forbidden: {why}"))
                .with_details(StatusDetails::default());
        };
        let mut resource = r.resource.clone();
        if !r.subresource.is_empty() {
            resource = format!("{resource}/{}", r.subresource);
        }
        let group = &r.group;
        let scope = match r.namespace.as_str() {
            "" => "at the cluster scope".to_owned(),
            namespace => format!("in the namespace {namespace:?}"),
        };
        let why = with_reason(
            format!(
                "User {user:?} cannot {verb} resource {resource:?} in API group {group:?} {scope}"
            ),
            reason,
        );
        let qualified = if group.is_empty() {
            r.resource.clone()
        } else {
            format!("{}.{group}", r.resource)
        };
        let message = match r.name.as_str() {
            "" => format!("{qualified} is forbidden: {why}"),
            name => format!("{qualified} {name:?} is forbidden: {why}"),
        };
        ApiError::forbidden(message).with_details(StatusDetails {
            name: r.name.clone(),
            group: group.clone(),
            kind: r.resource.clone(),
            causes: Vec::new(),
        })
    }
}

fn with_reason(message: String, reason: &str) -> String {
    if reason.is_empty() {
        message
    } else {
        format!("{message}: {reason}")
    }
}

/// What an authorizer says of a request.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Decision {
    /// The request may go on.
    Allow,
    /// The request is refused, for this reason.
    Deny(String),
    /// The authorizer has nothing to say (for this reason, if any); a request no
    /// authorizer allows is refused.
    NoOpinion(String),
}

/// Says whether a request may do what it asks.
pub trait Authorizer: Send + Sync {
    /// The decision on `attributes`.
    fn authorize<'a>(&'a self, attributes: &'a Attributes) -> BoxFuture<'a, Decision>;

    /// What `user` may do in `namespace` ("" for the cluster scope), as a
    /// SelfSubjectRulesReview answers; by default, nothing known, and so
    /// `incomplete`.
    fn rules(&self, _user: &UserInfo, _namespace: &str) -> Rules {
        Rules {
            incomplete: true,
            ..Rules::default()
        }
    }
}

/// What a user may do in a namespace, as a SelfSubjectRulesReview's status
/// says it (`resourceRules`, `nonResourceRules`, `incomplete`).
#[derive(Clone, Debug, Default, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Rules {
    /// The verbs allowed on resources.
    pub resource_rules: Vec<ResourceRule>,
    /// The verbs allowed on paths that name no resource.
    pub non_resource_rules: Vec<NonResourceRule>,
    /// Whether more may be allowed than these rules say (an authorizer that
    /// cannot list what it allows).
    pub incomplete: bool,
}

/// Verbs allowed on resources (Kubernetes' `authorization/v1.ResourceRule`).
#[derive(Clone, Debug, Default, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ResourceRule {
    /// The verbs, `*` for all.
    pub verbs: Vec<String>,
    /// The API groups, `*` for all.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub api_groups: Vec<String>,
    /// The resources (`pods`, `pods/log`, `*`, `*/scale`).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub resources: Vec<String>,
    /// The names the rule is limited to; empty for all.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub resource_names: Vec<String>,
}

/// Verbs allowed on paths (Kubernetes' `authorization/v1.NonResourceRule`).
#[derive(Clone, Debug, Default, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "camelCase")]
pub struct NonResourceRule {
    /// The verbs (`get`, `post`…), `*` for all.
    pub verbs: Vec<String>,
    /// The paths, each exact or a prefix ending in `*`.
    #[serde(rename = "nonResourceURLs", skip_serializing_if = "Vec::is_empty")]
    pub non_resource_urls: Vec<String>,
}

/// The authorizer of a server without one: everything is allowed.
#[derive(Debug)]
pub struct AllowAll;

impl Authorizer for AllowAll {
    fn authorize<'a>(&'a self, _attributes: &'a Attributes) -> BoxFuture<'a, Decision> {
        futures::future::ready(Decision::Allow).boxed()
    }
}

/// Several authorizers, asked in order as Kubernetes' union authorizer asks
/// them (`--authorization-mode Node,RBAC`): the first that allows or denies
/// decides; when none does, the request has no opinion, with the reasons
/// they gave, one a line.
#[derive(Default)]
pub struct InTurn(pub Vec<Arc<dyn Authorizer>>);

impl std::fmt::Debug for InTurn {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_tuple("InTurn").field(&self.0.len()).finish()
    }
}

impl Authorizer for InTurn {
    fn authorize<'a>(&'a self, attributes: &'a Attributes) -> BoxFuture<'a, Decision> {
        async move {
            let mut reasons = Vec::new();
            for authorizer in &self.0 {
                match authorizer.authorize(attributes).await {
                    Decision::NoOpinion(reason) => {
                        if !reason.is_empty() {
                            reasons.push(reason);
                        }
                    }
                    decided => return decided,
                }
            }
            Decision::NoOpinion(reasons.join("\n"))
        }
        .boxed()
    }

    /// Every authorizer's rules together; incomplete when one's are.
    fn rules(&self, user: &UserInfo, namespace: &str) -> Rules {
        let mut all = Rules::default();
        for authorizer in &self.0 {
            let rules = authorizer.rules(user, namespace);
            all.resource_rules.extend(rules.resource_rules);
            all.non_resource_rules.extend(rules.non_resource_rules);
            all.incomplete |= rules.incomplete;
        }
        all
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn attributes(
        method: Method,
        path: &str,
        namespace: Option<&str>,
        name: Option<&str>,
    ) -> Attributes {
        let resource = wasmkube_types::registry::by_kind("apps", "v1", "Deployment").unwrap();
        let target = Target {
            resource,
            namespace: namespace.map(str::to_owned),
            name: name.map(str::to_owned),
            subresource: name.map(|_| "scale".to_owned()),
        };
        let alice = UserInfo {
            name: "alice".into(),
            ..UserInfo::default()
        };
        Attributes::of_target(&alice, &method, path, &target, false)
    }

    #[test]
    fn refusals_are_worded_as_kubernetes_words_them() {
        let scale = attributes(
            Method::PUT,
            "/apis/apps/v1/namespaces/web/deployments/d/scale",
            Some("web"),
            Some("d"),
        );
        let e = scale.forbidden("");
        assert_eq!((e.code, e.reason), (403, "Forbidden"));
        assert_eq!(
            e.message,
            r#"deployments.apps "d" is forbidden: User "alice" cannot update resource "deployments/scale" in API group "apps" in the namespace "web""#
        );
        let list = attributes(Method::GET, "/apis/apps/v1/deployments", None, None);
        assert_eq!(list.verb, "list");
        assert_eq!(
            list.forbidden("no rule").message,
            r#"deployments.apps is forbidden: User "alice" cannot list resource "deployments" in API group "apps" at the cluster scope: no rule"#
        );
        let discovery = Attributes::of_path(&UserInfo::anonymous(), &Method::GET, "/apis");
        assert_eq!(
            discovery.forbidden("").message,
            r#"forbidden: User "system:anonymous" cannot get path "/apis""#
        );
    }

    /// An authorizer that always says the same.
    struct Says(Decision);

    impl Authorizer for Says {
        fn authorize<'a>(&'a self, _attributes: &'a Attributes) -> BoxFuture<'a, Decision> {
            futures::future::ready(self.0.clone()).boxed()
        }
    }

    #[tokio::test]
    async fn authorizers_in_turn_stop_at_the_first_decision() {
        let says = |decisions: Vec<Decision>| {
            InTurn(
                decisions
                    .into_iter()
                    .map(|d| Arc::new(Says(d)) as Arc<dyn Authorizer>)
                    .collect(),
            )
        };
        let get = attributes(Method::GET, "/apis/apps/v1/deployments", None, None);
        let no = |why: &str| Decision::NoOpinion(why.into());
        let denied = says(vec![no("a"), Decision::Deny("b".into()), Decision::Allow]);
        assert_eq!(denied.authorize(&get).await, Decision::Deny("b".into()));
        let allowed = says(vec![no(""), Decision::Allow, Decision::Deny("b".into())]);
        assert_eq!(allowed.authorize(&get).await, Decision::Allow);
        let undecided = says(vec![no("a"), no(""), no("c")]);
        assert_eq!(undecided.authorize(&get).await, no("a\nc"));
        assert_eq!(says(vec![]).authorize(&get).await, no(""));
    }
}
