//! The request pipeline: the one place where requests pass the stages of
//! Kubernetes' API server, in its order.
//!
//! ```text
//! authenticate → authorize → decode with defaults → mutating admission
//!              → validation by the kind's strategy → validating admission → store
//! ```
//!
//! Every request is authenticated and authorized, reads too. Every write (create,
//! replace, patches of every type, server-side apply, status and scale writes,
//! bindings, evictions, deletes) is then decoded here and admitted here; the verbs
//! in `rest` call these stages and store what comes out. What differs between kinds
//! is in their strategies, on their registry rows; who may do what is in the
//! server's [`Access`], which the verbs never look at.

use std::sync::Arc;

use axum::extract::{Request as HttpRequest, State};
use axum::http::request::Parts;
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use serde_json::{Value, json};
use wasmkube_types::strategy::set_pointer;

use crate::access::{
    AllowAll, AnonymousAccess, Attributes, Authorizer, Decision, PUBLIC_PATHS, TokenIssuer, Union,
    UserInfo,
};
use crate::admission::{Admission, AdmissionRequest, Operation};
use crate::error::{ApiError, ApiResult};
use crate::objects::{
    bump_generation, check_decodes, check_namespace, check_type_meta, generate_name,
    keep_server_fields, meta_str, metadata_mut, prepare_new, validate_metadata,
};
use crate::rest::{Request, Write};
use crate::{ApiServer, openapi};

/// Who may do what on a server: its authenticators, its authorizer and its
/// admission chain. The default knows no one and lets everyone (as
/// `system:anonymous`) do everything, with no admission plugin.
#[derive(Clone)]
pub struct Access {
    /// Say who sent each request.
    pub authenticator: Arc<Union>,
    /// Which requests without credentials go on.
    pub anonymous: AnonymousAccess,
    /// Says whether they may do what it asks.
    pub authorizer: Arc<dyn Authorizer>,
    /// The plugins every write passes.
    pub admission: Admission,
    /// Issues ServiceAccount tokens; without one, TokenRequests are refused.
    pub tokens: Option<Arc<dyn TokenIssuer>>,
}

impl Default for Access {
    fn default() -> Access {
        Access {
            authenticator: Arc::new(Union::default()),
            anonymous: AnonymousAccess::Everywhere,
            authorizer: Arc::new(AllowAll),
            admission: Admission::default(),
            tokens: None,
        }
    }
}

impl std::fmt::Debug for Access {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Access")
            .field("authenticator", &self.authenticator)
            .field("anonymous", &self.anonymous)
            .field("admission", &self.admission)
            .finish_non_exhaustive()
    }
}

/// The first stage of every request, before it is routed: who sent it (put
/// in its extensions for the stages after), a 401 for credentials no
/// authenticator accepts or for an anonymous request where anonymous ones may
/// not go, and the authorization of requests for paths outside `/api` and
/// `/apis`, which name no resource (the OpenAPI documents, `/version`, the
/// health checks, the built-in registry's `/v2/…`).
pub(crate) async fn authenticate(
    State(server): State<ApiServer>,
    request: HttpRequest,
    next: Next,
) -> Response {
    let (mut parts, body) = request.into_parts();
    let access = &server.access;
    let user = match access.authenticator.user(&parts).await {
        Ok(user) => user,
        Err(e) => return unauthorized(&parts, e),
    };
    let user = match server.impersonated(user, &parts).await {
        Ok(user) => user,
        Err(e) => return e.into_response(),
    };
    let path = parts.uri.path();
    if access.anonymous == AnonymousAccess::PublicPaths
        && user == UserInfo::anonymous()
        && !PUBLIC_PATHS.contains(&path)
    {
        return unauthorized(&parts, ApiError::unauthorized());
    }
    let api = ["/api", "/apis"].iter().any(|root| {
        path.strip_prefix(root)
            .is_some_and(|rest| rest.is_empty() || rest.starts_with('/'))
    });
    if !api
        && let Err(e) = server
            .authorize(&Attributes::of_path(&user, &parts.method, path))
            .await
    {
        return e.into_response();
    }
    let _in_flight = match server.gates.admit(&user, &parts) {
        Ok(permit) => permit,
        Err(refused) => return refused.into_response(),
    };
    parts.extensions.insert(user);
    next.run(HttpRequest::from_parts(parts, body)).await
}

/// A 401; for the registry's paths with the challenge OCI clients answer by
/// sending credentials (a token as the password of basic auth).
fn unauthorized(parts: &Parts, error: ApiError) -> Response {
    let mut response = error.into_response();
    if parts.uri.path().starts_with("/v2") {
        response.headers_mut().insert(
            axum::http::header::WWW_AUTHENTICATE,
            axum::http::HeaderValue::from_static("Basic realm=\"wasmkube\""),
        );
    }
    response
}

/// The headers a client impersonates another user with, as Kubernetes names them.
const IMPERSONATE_USER: &str = "impersonate-user";
const IMPERSONATE_GROUP: &str = "impersonate-group";
const IMPERSONATE_UID: &str = "impersonate-uid";
const IMPERSONATE_EXTRA: &str = "impersonate-extra-";

impl ApiServer {
    /// The user a request acts as: the one who sent it, or the one it
    /// impersonates (`kubectl --as`, `--as-group`) if they may, each asked of
    /// the authorizer as Kubernetes asks: `impersonate` on `users`,
    /// `serviceaccounts`, `groups`, `uids` or `userextras/<key>`.
    async fn impersonated(&self, user: UserInfo, parts: &Parts) -> ApiResult<UserInfo> {
        let headers = &parts.headers;
        let values = |name: &str| -> Vec<String> {
            headers
                .get_all(name)
                .iter()
                .filter_map(|v| v.to_str().ok().map(str::to_owned))
                .collect()
        };
        let name = values(IMPERSONATE_USER).into_iter().next();
        let groups = values(IMPERSONATE_GROUP);
        let uid = values(IMPERSONATE_UID).into_iter().next();
        let mut extra = std::collections::BTreeMap::<String, Vec<String>>::new();
        for (header, value) in headers {
            if let Some(key) = header.as_str().strip_prefix(IMPERSONATE_EXTRA)
                && let Ok(value) = value.to_str()
            {
                let key = percent_decode(key);
                extra.entry(key).or_default().push(value.to_owned());
            }
        }
        let Some(name) = name else {
            if groups.is_empty() && uid.is_none() && extra.is_empty() {
                return Ok(user);
            }
            return Err(ApiError::bad_request(
                "requested [Impersonate-Group and Impersonate-Extra] without impersonating a user",
            ));
        };
        let ask = |group: &str, resource: &str, namespace: &str, name: &str| Attributes {
            user: user.clone(),
            verb: "impersonate".into(),
            resource: Some(crate::access::ResourceAttributes {
                group: group.into(),
                version: String::new(),
                resource: resource.into(),
                subresource: String::new(),
                namespace: namespace.into(),
                name: name.into(),
            }),
            path: parts.uri.path().into(),
        };
        let mut asks = Vec::new();
        let mut as_user = UserInfo {
            name: name.clone(),
            uid: uid.clone().unwrap_or_default(),
            groups: groups.clone(),
            extra: extra.clone(),
        };
        match name
            .strip_prefix("system:serviceaccount:")
            .and_then(|rest| rest.split_once(':'))
        {
            Some((namespace, account)) => {
                asks.push(ask("", "serviceaccounts", namespace, account));
                for group in [
                    "system:serviceaccounts".to_owned(),
                    format!("system:serviceaccounts:{namespace}"),
                ] {
                    if !as_user.groups.contains(&group) {
                        as_user.groups.push(group);
                    }
                }
            }
            None => asks.push(ask("", "users", "", &name)),
        }
        for group in &groups {
            asks.push(ask("", "groups", "", group));
        }
        if let Some(uid) = &uid {
            asks.push(ask("authentication.k8s.io", "uids", "", uid));
        }
        for (key, values) in &extra {
            for value in values {
                asks.push(ask(
                    "authentication.k8s.io",
                    &format!("userextras/{key}"),
                    "",
                    value,
                ));
            }
        }
        for attributes in &asks {
            self.authorize(attributes).await?;
        }
        let joined = if name == UserInfo::anonymous().name {
            "system:unauthenticated"
        } else {
            crate::access::AUTHENTICATED
        };
        if !as_user.groups.iter().any(|g| g == joined) {
            as_user.groups.push(joined.into());
        }
        Ok(as_user)
    }
}

/// A header name's percent-encoded part, decoded (extra keys may hold any
/// character).
fn percent_decode(text: &str) -> String {
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%'
            && let Some(byte) = text
                .get(i + 1..i + 3)
                .and_then(|hex| u8::from_str_radix(hex, 16).ok())
        {
            out.push(byte);
            i += 3;
            continue;
        }
        out.push(bytes[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// The user the first stage found for a request.
pub(crate) fn user_of(parts: &Parts) -> ApiResult<UserInfo> {
    parts
        .extensions
        .get::<UserInfo>()
        .cloned()
        .ok_or_else(ApiError::unauthorized)
}

impl ApiServer {
    /// Refuses what no authorizer allows, with a 403 worded as Kubernetes words it.
    pub(crate) async fn authorize(&self, attributes: &Attributes) -> ApiResult<()> {
        match self.access.authorizer.authorize(attributes).await {
            Decision::Allow => Ok(()),
            Decision::Deny(reason) | Decision::NoOpinion(reason) => {
                Err(attributes.forbidden(&reason))
            }
        }
    }
}

impl Request<'_> {
    /// Decodes the body of a create with its defaults: its type, namespace and
    /// fields checked ([`Request::decode`]), then made a new object (its kind's
    /// defaults, what the server owns in its metadata, the status its kind starts
    /// with, what its kind derives from its name and uid).
    pub(crate) fn decode_new(&self, object: Value) -> ApiResult<Value> {
        let mut object = self.decode(object, None, true)?;
        prepare_new(self.target.resource, &mut object);
        Ok(object)
    }

    /// Decodes the body of a write: its type and namespace from the URL, its name
    /// (`name`, the URL's, which the body may not contradict; for a create, one
    /// generated from `generateName` if it has none), its kind's type, and, with
    /// `fields`, its kind's schema ([`Request::check_fields`]).
    pub(crate) fn decode(
        &self,
        mut object: Value,
        name: Option<&str>,
        fields: bool,
    ) -> ApiResult<Value> {
        let r = self.target.resource;
        check_type_meta(r, &mut object)?;
        check_namespace(r, &mut object, self.target.namespace.as_deref())?;
        match (name, meta_str(&object, "name")) {
            (None, _) => generate_name(&mut object),
            (Some(name), None) => {
                drop(metadata_mut(&mut object).insert("name".into(), json!(name)))
            }
            (Some(name), Some(given)) if given != name => {
                return Err(ApiError::bad_request(format!(
                    "the name of the object ({given}) does not match the name on the URL ({name})"
                )));
            }
            (Some(_), Some(_)) => {}
        }
        check_decodes(r, &object)?;
        if fields {
            self.check_fields(&mut object)?;
        }
        Ok(object)
    }

    /// Checks the fields of an object against its kind's schema: the fields the
    /// schema lacks are dropped, as Kubernetes drops them, and named in warnings
    /// (`fieldValidation=Warn`, the default), or not (`Ignore`), or refused
    /// (`Strict`). A custom object also gets its defaults, and a 422 for values its
    /// schema refuses.
    fn check_fields(&self, object: &mut Value) -> ApiResult<()> {
        let r = self.target.resource;
        let unknown = match self.server.kinds.custom(r) {
            Some(custom) => {
                let (errors, unknown) = custom.admit(object);
                if !errors.is_empty() {
                    let name = meta_str(object, "name").unwrap_or("").to_owned();
                    return Err(ApiError::invalid(r, &name, &errors));
                }
                unknown
            }
            None => openapi::prune_unknown(r, object),
        };
        let fields = unknown.iter().map(|f| format!("unknown field {f:?}"));
        match self.params.get("fieldValidation").map(String::as_str) {
            Some("Strict") if !unknown.is_empty() => Err(ApiError::bad_request(format!(
                "strict decoding error: {}",
                fields.collect::<Vec<_>>().join(", ")
            ))),
            Some("Ignore") | Some("Strict") => Ok(()),
            // Warn, the default: the fields go, and the client hears of it.
            _ => {
                self.warnings.lock().expect("warnings lock").extend(fields);
                Ok(())
            }
        }
    }

    /// A decoded replacement of `old` made its successor. A write through a
    /// subresource that writes a part of the object (a status write) is `old`
    /// with the new part. Any other keeps `old`'s status (when the status has a
    /// subresource of its own) and the metadata the server owns, gets its kind's
    /// defaults and what its kind carries over, the next generation if its spec
    /// changed, and (for an update) the fields its manager changed.
    pub(crate) fn prepare_update(&self, mut object: Value, old: &Value, write: Write) -> Value {
        if write == Write::Part {
            let part = self.part().unwrap_or("/status");
            let mut new = old.clone();
            let value = object.pointer_mut(part).map_or(Value::Null, Value::take);
            set_pointer(&mut new, part, value);
            return new;
        }
        let r = self.target.resource;
        if r.subresource("status").is_some() {
            object["status"] = old["status"].clone();
        }
        keep_server_fields(old, &mut object);
        r.strategy.apply_defaults(&mut object);
        r.strategy.prepare_for_update(&mut object, old);
        bump_generation(old, &mut object);
        if write == Write::Update {
            self.record(Some(old), &mut object);
        }
        object
    }

    /// Mutating admission, validation by the kind's strategy, validating
    /// admission: what a write of the object itself (or of its status) passes
    /// between decoding and the store. `old` is the object it replaces. Returns
    /// the object as admitted.
    pub(crate) async fn admit_object(
        &self,
        operation: Operation,
        object: Value,
        old: Option<&Value>,
    ) -> ApiResult<Value> {
        let admitted = self
            .admit(operation, Some(object), old, |object| {
                self.validate(object, old)
            })
            .await?;
        admitted.ok_or_else(|| ApiError::internal("an admission plugin dropped the object"))
    }

    /// Mutating admission, `validate`, validating admission: what every write
    /// passes between decoding and the store, in Kubernetes' order. `object` is
    /// what is written (none for a delete), of the kind the target names (a
    /// subresource's, such as a Scale, or the resource's own); `old` is what it
    /// replaces or deletes. Returns the object as admitted.
    pub(crate) async fn admit(
        &self,
        operation: Operation,
        object: Option<Value>,
        old: Option<&Value>,
        validate: impl FnOnce(&Value) -> ApiResult<()>,
    ) -> ApiResult<Option<Value>> {
        let r = self.target.resource;
        let subresource = self.target.subresource.as_deref();
        let (group, version, kind) = match subresource.and_then(|s| r.subresource(s)) {
            Some(sub) if !sub.is_parent_kind() => (sub.group, sub.version, sub.kind),
            _ => (r.group, r.version, r.kind),
        };
        let name = self
            .target
            .name
            .clone()
            .or_else(|| {
                object
                    .as_ref()
                    .and_then(|o| meta_str(o, "name"))
                    .map(str::to_owned)
            })
            .unwrap_or_default();
        let mut request = AdmissionRequest {
            group,
            version,
            kind,
            resource: r,
            subresource,
            name: &name,
            namespace: self.target.namespace.as_deref(),
            operation,
            user: self.user,
            object,
            old_object: old,
            dry_run: self.dry_run(),
            warnings: Default::default(),
        };
        let admission = &self.server.access.admission;
        // The client hears the plugins' warnings whether the write goes on or not.
        let outcome = async {
            for plugin in &admission.mutating {
                plugin.admit(&mut request).await?;
            }
            if let Some(object) = &request.object {
                validate(object)?;
            }
            for plugin in &admission.validating {
                plugin.validate(&request).await?;
            }
            Ok(())
        }
        .await;
        let warnings = std::mem::take(&mut *request.warnings.lock().expect("warnings lock"));
        self.warnings
            .lock()
            .expect("warnings lock")
            .extend(warnings);
        outcome.map(|()| request.object)
    }

    /// What the kind's strategy finds wrong with `object` (replacing `old`, if it
    /// does), and what is wrong with its metadata: a 422 naming the fields.
    fn validate(&self, object: &Value, old: Option<&Value>) -> ApiResult<()> {
        let r = self.target.resource;
        let mut errors = validate_metadata(r, object);
        errors.extend(r.strategy.validate(object));
        if let Some(old) = old {
            let subresource = self.target.subresource.as_deref();
            errors.extend(r.strategy.validate_update_via(subresource, object, old));
        }
        if errors.is_empty() {
            return Ok(());
        }
        let name = meta_str(object, "name").unwrap_or("");
        Err(ApiError::invalid(r, name, &errors))
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Mutex;

    use futures::FutureExt;
    use futures::future::{BoxFuture, ready};
    use serde_json::json;
    use wasmkube_types::ResourceType;
    use wasmkube_types::field::FieldError;
    use wasmkube_types::k8s_openapi::api::core::v1::ConfigMap;
    use wasmkube_types::registry::BUILTIN;
    use wasmkube_types::strategy::{Strategy, fill};

    use super::*;
    use crate::Config;
    use crate::access::Authenticator;
    use crate::admission::{MutatingAdmission, ValidatingAdmission};
    use crate::testing::TestServer;

    const PODS: &str = "/api/v1/namespaces/default/pods";

    fn pod(name: &str, image: &str) -> Value {
        json!({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": name},
            "spec": {"containers": [{"name": "c", "image": image}]}})
    }

    /// Gadgets: a kind made for this test, whose rules are one strategy.
    #[derive(Debug)]
    struct Gadgets;

    impl Strategy for Gadgets {
        fn apply_defaults(&self, gadget: &mut Value) {
            fill(gadget, "/data/colour", json!("red"));
        }

        fn validate(&self, gadget: &Value) -> Vec<FieldError> {
            let size = gadget["data"]["size"].as_str().unwrap_or("");
            if size.parse::<u32>().is_ok() {
                return Vec::new();
            }
            vec![FieldError::invalid(
                "data.size",
                size,
                "must be a whole number",
            )]
        }
    }

    /// The one row that serves gadgets.
    static GADGETS: ResourceType = ResourceType {
        group: "example.test",
        version: "v1",
        kind: "Gadget",
        plural: "gadgets",
        storage_prefix: Some("example.test/gadgets"),
        check: |_| Ok(()),
        strategy: &Gadgets,
        ..ResourceType::of::<ConfigMap>()
    };

    #[tokio::test]
    async fn a_new_kind_is_one_row_and_one_strategy() {
        let kinds = Vec::leak([BUILTIN, std::slice::from_ref(&GADGETS)].concat());
        let server = TestServer::start_with(Config {
            kinds,
            ..Config::default()
        })
        .await;
        let gadgets = "/apis/example.test/v1/namespaces/default/gadgets";
        let gadget = |name: &str, size: &str| {
            json!({"apiVersion": "example.test/v1", "kind": "Gadget",
                "metadata": {"name": name}, "data": {"size": size}})
        };
        let (status, _, created) = server.call("POST", gadgets, gadget("g", "3")).await;
        assert_eq!(status, 201, "{created}");
        assert_eq!(created["data"]["colour"], "red", "the default is filled in");
        let (status, _, refused) = server.call("POST", gadgets, gadget("h", "big")).await;
        assert_eq!(status, 422, "{refused}");
        assert_eq!(refused["details"]["causes"][0]["field"], "data.size");
        assert!(
            refused["message"].as_str().unwrap().ends_with(
                r#""h" is invalid: data.size: Invalid value: "big": must be a whole number"#
            ),
            "{refused}"
        );
        let (_, _, resources) = server
            .call("GET", "/apis/example.test/v1", Value::Null)
            .await;
        assert_eq!(resources["resources"][0]["name"], "gadgets");
    }

    /// Knows users by the `X-Remote-User` header, as Kubernetes' request-header
    /// authenticator does; refuses requests without one.
    struct RemoteUser;

    impl Authenticator for RemoteUser {
        fn authenticate<'a>(
            &'a self,
            request: &'a Parts,
        ) -> BoxFuture<'a, ApiResult<Option<UserInfo>>> {
            let user = request
                .headers
                .get("x-remote-user")
                .and_then(|v| v.to_str().ok());
            let user = user.map(|name| UserInfo {
                name: name.to_owned(),
                ..UserInfo::default()
            });
            ready(Ok(user)).boxed()
        }
    }

    /// Lets everyone read; lets only `admin` write; says nothing of paths.
    struct ReadOnly;

    impl Authorizer for ReadOnly {
        fn authorize<'a>(&'a self, attributes: &'a Attributes) -> BoxFuture<'a, Decision> {
            let decision = match (&attributes.resource, attributes.verb.as_str()) {
                (None, _) => Decision::NoOpinion(String::new()),
                (Some(_), "get" | "list" | "watch") => Decision::Allow,
                (Some(_), _) if attributes.user.name == "admin" => Decision::Allow,
                (Some(_), _) => Decision::Deny("only admin writes".into()),
            };
            ready(decision).boxed()
        }
    }

    #[tokio::test]
    async fn requests_are_authenticated_then_authorized() {
        let server = TestServer::start_with(Config {
            access: Access {
                authenticator: Arc::new(Union(vec![Arc::new(RemoteUser)])),
                anonymous: AnonymousAccess::PublicPaths,
                authorizer: Arc::new(ReadOnly),
                ..Access::default()
            },
            ..Config::default()
        })
        .await;
        let (status, _, body) = server.call("GET", PODS, Value::Null).await;
        assert_eq!(
            (status, &body["reason"]),
            (401, &json!("Unauthorized")),
            "{body}"
        );
        let as_user = |name| [("x-remote-user", name)];
        let (status, _, _) = server
            .call_with("GET", PODS, &as_user("bob"), Value::Null)
            .await;
        assert_eq!(status, 200);
        let (status, _, body) = server
            .call_with("POST", PODS, &as_user("bob"), pod("web", "i:1"))
            .await;
        assert_eq!(status, 403);
        assert_eq!(
            body["message"],
            r#"pods is forbidden: User "bob" cannot create resource "pods" in API group "" in the namespace "default": only admin writes"#
        );
        assert_eq!(body["details"]["kind"], "pods");
        let (status, _, _) = server
            .call_with("POST", PODS, &as_user("admin"), pod("web", "i:1"))
            .await;
        assert_eq!(status, 201);
        let status_path = format!("{PODS}/web/status");
        let (status, _, body) = server
            .call_with("PUT", &status_path, &as_user("bob"), pod("web", "i:1"))
            .await;
        assert_eq!(status, 403);
        assert_eq!(
            body["message"],
            r#"pods "web" is forbidden: User "bob" cannot update resource "pods/status" in API group "" in the namespace "default": only admin writes"#
        );
        let (status, _, body) = server
            .call_with("GET", "/apis", &as_user("bob"), Value::Null)
            .await;
        assert_eq!(status, 403);
        assert_eq!(
            body["message"],
            r#"forbidden: User "bob" cannot get path "/apis""#
        );
    }

    /// Gives containers without an image one, labels what it admits, and
    /// records each write it sees.
    #[derive(Default)]
    struct Mutator(Mutex<Vec<String>>);

    impl MutatingAdmission for Mutator {
        fn admit<'a>(
            &'a self,
            request: &'a mut AdmissionRequest<'_>,
        ) -> BoxFuture<'a, ApiResult<()>> {
            let sub = request
                .subresource
                .map(|s| format!("/{s}"))
                .unwrap_or_default();
            let seen = format!(
                "{} {}{sub} {} by {}",
                request.operation.as_str(),
                request.resource.plural,
                request.kind,
                request.user.name
            );
            self.0.lock().unwrap().push(seen);
            if let Some(pod) = request.object.as_mut().filter(|o| o["kind"] == "Pod") {
                for c in pod["spec"]["containers"]
                    .as_array_mut()
                    .into_iter()
                    .flatten()
                {
                    fill(c, "/image", json!("default:1"));
                }
                fill(pod, "/metadata/labels/admitted", json!("yes"));
            }
            ready(Ok(())).boxed()
        }
    }

    /// Refuses pods that run an image by its `latest` tag, and anything the
    /// mutating plugin did not label.
    struct NoLatest;

    impl ValidatingAdmission for NoLatest {
        fn validate<'a>(
            &'a self,
            request: &'a AdmissionRequest<'_>,
        ) -> BoxFuture<'a, ApiResult<()>> {
            let Some(pod) = request.object.as_ref().filter(|o| o["kind"] == "Pod") else {
                return ready(Ok(())).boxed();
            };
            let latest = pod["spec"]["containers"]
                .as_array()
                .into_iter()
                .flatten()
                .any(|c| c["image"].as_str().is_some_and(|i| i.ends_with(":latest")));
            let result = if latest || pod["metadata"]["labels"]["admitted"] != "yes" {
                Err(ApiError::forbidden(format!(
                    "pods {:?} is forbidden: no latest images",
                    request.name
                )))
            } else {
                Ok(())
            };
            ready(result).boxed()
        }
    }

    #[tokio::test]
    async fn writes_pass_mutating_admission_validation_then_validating_admission() {
        let mutator = Arc::new(Mutator::default());
        let server = TestServer::start_with(Config {
            access: Access {
                admission: Admission {
                    mutating: vec![mutator.clone()],
                    validating: vec![Arc::new(NoLatest)],
                },
                ..Access::default()
            },
            ..Config::default()
        })
        .await;
        // The mutating plugin gives the image that validation requires.
        let mut imageless = pod("web", "");
        imageless["spec"]["containers"][0] = json!({"name": "c"});
        let (status, _, created) = server.call("POST", PODS, imageless).await;
        assert_eq!(status, 201, "{created}");
        assert_eq!(created["spec"]["containers"][0]["image"], "default:1");
        assert_eq!(created["metadata"]["labels"]["admitted"], "yes");
        let (status, _, refused) = server.call("POST", PODS, pod("old", "i:latest")).await;
        assert_eq!(
            (status, &refused["message"]),
            (403, &json!(r#"pods "old" is forbidden: no latest images"#))
        );
        let web = format!("{PODS}/web");
        let (status, _, _) = server
            .call_with(
                "PATCH",
                &web,
                &[("content-type", "application/merge-patch+json")],
                json!({"metadata": {"labels": {"tier": "front"}}}),
            )
            .await;
        assert_eq!(status, 200);
        let status_write = json!({"status": {"phase": "Running"}});
        let (status, _, _) = server
            .call_with(
                "PATCH",
                &format!("{web}/status"),
                &[("content-type", "application/merge-patch+json")],
                status_write,
            )
            .await;
        assert_eq!(status, 200);
        let binding = json!({"apiVersion": "v1", "kind": "Binding",
            "metadata": {"name": "web"}, "target": {"kind": "Node", "name": "n1"}});
        let (status, _, body) = server
            .call("POST", &format!("{web}/binding"), binding)
            .await;
        assert_eq!(status, 201, "{body}");
        let (status, _, _) = server.call("DELETE", &web, Value::Null).await;
        assert_eq!(status, 200);
        let deployments = "/apis/apps/v1/namespaces/default/deployments";
        let deployment = json!({"metadata": {"name": "d"}, "spec": {
            "selector": {"matchLabels": {"app": "d"}},
            "template": {"metadata": {"labels": {"app": "d"}}, "spec": pod("p", "i:1")["spec"]}}});
        let (status, _, body) = server.call("POST", deployments, deployment).await;
        assert_eq!(status, 201, "{body}");
        let scale = json!({"metadata": {"name": "d"}, "spec": {"replicas": -1}});
        let scale_path = format!("{deployments}/d/scale");
        let (status, _, body) = server.call("PUT", &scale_path, scale).await;
        assert_eq!(
            (status, &body["details"]["kind"]),
            (422, &json!("Scale")),
            "{body}"
        );
        assert_eq!(
            *mutator.0.lock().unwrap(),
            [
                "CREATE pods Pod by system:anonymous",
                "CREATE pods Pod by system:anonymous",
                "UPDATE pods Pod by system:anonymous",
                "UPDATE pods/status Pod by system:anonymous",
                "CREATE pods/binding Binding by system:anonymous",
                "DELETE pods Pod by system:anonymous",
                "CREATE deployments Deployment by system:anonymous",
                "UPDATE deployments/scale Scale by system:anonymous",
            ]
        );
    }
}
