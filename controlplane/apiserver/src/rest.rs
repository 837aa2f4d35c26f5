//! The verbs on objects: one generic code path for every kind in the registry.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::extract::{Query, State};
use axum::http::request::Parts;
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde_json::{Value, json};
use wasmkube_store::{Error as StoreError, KeyValue, ListOptions, Revision, encode_continue};
use wasmkube_types::patch::{apply, definition_of, strategic};
use wasmkube_types::selector::labels::Selector;
use wasmkube_types::strategy::{Deletion, set_pointer};
use wasmkube_types::{ResourceType, Verb};

use crate::access::{Attributes, UserInfo};
use crate::admission::Operation;
use crate::cache::{Cached, Filters, Page};
use crate::crd::ScalePaths;
use crate::error::{ApiError, ApiResult, FieldError, StatusCause, StatusDetails, details};
use crate::negotiate::{Format, decode_body, respond, respond_list, response_format};
use crate::objects::{
    bump_generation, check_namespace, check_type_meta, deleting, finalizers, meta_str,
    metadata_mut, name, now,
};
use crate::path::{self, Route, Target};
use crate::table::{Columns, Include, table};
use crate::{ApiServer, allocate};
use crate::{discovery, logs, watch};

/// How many times a read-modify-write is tried against concurrent writers.
const ATTEMPTS: usize = 5;

/// The query parameters of a request.
pub(crate) type Params = HashMap<String, String>;

/// The largest request body taken (kube-apiserver's `MaxRequestBodyBytes`).
pub(crate) const MAX_BODY: usize = 3 << 20;

/// Every request under `/api` and `/apis`.
pub(crate) async fn handle(
    State(server): State<ApiServer>,
    request: Parts,
    body: Result<Bytes, BytesRejection>,
) -> Response {
    let body = match body {
        Ok(body) => body,
        Err(e) if e.status() == StatusCode::PAYLOAD_TOO_LARGE => {
            return crate::error::too_large(format!("limit is {MAX_BODY}")).into_response();
        }
        Err(e) => {
            return ApiError::bad_request(format!("reading the request body: {e}")).into_response();
        }
    };
    match dispatch(&server, &request, &body).await {
        Ok(response) => response,
        Err(e) => e.into_response(),
    }
}

async fn dispatch(server: &ApiServer, parts: &Parts, body: &[u8]) -> ApiResult<Response> {
    let (method, uri, headers) = (&parts.method, &parts.uri, &parts.headers);
    let user = crate::pipeline::user_of(parts)?;
    let route = path::parse(uri.path(), &server.kinds)?;
    let Route::Objects(target) = route else {
        server
            .authorize(&Attributes::of_path(&user, method, uri.path()))
            .await?;
        if method != Method::GET {
            return Err(not_allowed());
        }
        return Ok(discovery::serve(&route, headers, &server.kinds));
    };
    let params: Params = Query::try_from_uri(uri)
        .map(|Query(q)| q)
        .map_err(|e| ApiError::bad_request(format!("invalid query: {e}")))?;
    let watching = is_true(params.get("watch"));
    let attributes = Attributes::of_target(&user, method, uri.path(), &target, watching);
    server.authorize(&attributes).await?;
    let format = response_format(headers)?;
    let r = target.resource;
    let allow = |verb: Verb| {
        if r.supports(verb) {
            Ok(())
        } else {
            Err(not_allowed())
        }
    };
    let sub = target.subresource.as_deref();
    // The part of the object a subresource such as `status` writes.
    let part = sub.and_then(|s| r.subresource(s)).and_then(|s| s.part);
    // As Kubernetes names a manager the client did not name: by its user agent.
    let agent = headers
        .get(header::USER_AGENT)
        .and_then(|v| v.to_str().ok())
        .and_then(|ua| ua.split('/').next())
        .filter(|name| !name.is_empty())
        .unwrap_or("unknown");
    let warnings = Mutex::default();
    let request = Request {
        server,
        target: &target,
        params: &params,
        format,
        user: &user,
        manager: params.get("fieldManager").map_or(agent, String::as_str),
        warnings: &warnings,
    };
    match (method.clone(), target.name.as_deref(), sub) {
        (Method::GET, None, None) if watching => {
            allow(Verb::Watch)?;
            watch::serve(request).await
        }
        (Method::GET, None, None) => {
            allow(Verb::List)?;
            request.list().await
        }
        (Method::GET, Some(name), sub) if sub.is_none() || part.is_some() => {
            allow(Verb::Get)?;
            let (object, _) = request.read(name).await?;
            Ok(request.render(200, &object))
        }
        (Method::GET, Some(name), Some("log")) => logs::serve(&request, name).await,
        (Method::GET, Some(name), Some("scale")) => {
            let (object, _) = request.read(name).await?;
            Ok(respond(Format::Json, 200, &request.scale_of(&object)))
        }
        (Method::POST, None, None) => {
            allow(Verb::Create)?;
            let object = decode_body(headers, body)?;
            if r.answered {
                return request.answer(object).await;
            }
            let Some((plural, subresource)) = r.acts_on else {
                return request.create(object, Write::Update).await;
            };
            // An action on the object it names, as its subresource.
            let name = name(&object)
                .ok_or_else(|| ApiError::bad_request(format!("a {} needs metadata.name", r.kind)))?
                .to_owned();
            let target = Target {
                resource: server
                    .kinds
                    .all()
                    .into_iter()
                    .find(|k| k.group == r.group && k.version == r.version && k.plural == plural)
                    .ok_or_else(ApiError::no_such_path)?,
                namespace: target.namespace.clone(),
                name: Some(name.clone()),
                subresource: Some(subresource.to_owned()),
            };
            let request = Request {
                target: &target,
                ..request
            };
            request.act(&name, subresource, object).await
        }
        (Method::POST, Some(name), Some(subresource)) => {
            request
                .act(name, subresource, decode_body(headers, body)?)
                .await
        }
        (Method::PUT, Some(name), sub) if sub.is_none() || part.is_some() => {
            allow(Verb::Update)?;
            let object = decode_body(headers, body)?;
            let write = if part.is_some() {
                Write::Part
            } else {
                Write::Update
            };
            let (object, code) = request.replace(name, object, write).await?;
            Ok(request.render(code, &object))
        }
        (Method::PUT, Some(name), Some("scale")) => {
            request.scale(name, decode_body(headers, body)?).await
        }
        (Method::PATCH, Some(name), _) => {
            allow(Verb::Patch)?;
            request.patch(name, headers, body).await
        }
        (Method::DELETE, Some(name), None) => {
            allow(Verb::Delete)?;
            let options = delete_options(&params, body)?;
            let (object, code) = request.delete(name, &options).await?;
            Ok(request.render(code, &object))
        }
        (Method::DELETE, None, None) => {
            allow(Verb::DeleteCollection)?;
            request
                .delete_collection(&delete_options(&params, body)?)
                .await
        }
        _ => Err(not_allowed()),
    }
}

fn not_allowed() -> ApiError {
    ApiError::method_not_allowed("the server does not allow this method on the requested resource")
}

/// `true`, `1`: how clients say yes in a query.
pub(crate) fn is_true(value: Option<&String>) -> bool {
    value.is_some_and(|v| truthy(v))
}

/// Whether a query parameter's value says yes, as Kubernetes reads booleans.
pub(crate) fn truthy(value: &str) -> bool {
    matches!(value, "true" | "1")
}

/// The object as stored, with its resourceVersion.
pub(crate) fn decode_stored(kv: &KeyValue) -> ApiResult<Value> {
    let mut object: Value = serde_json::from_slice(&kv.value)
        .map_err(|e| ApiError::internal(format!("stored object {} is not JSON: {e}", kv.key)))?;
    set_version(&mut object, kv.mod_revision);
    Ok(object)
}

fn set_version(object: &mut Value, revision: Revision) {
    metadata_mut(object).insert("resourceVersion".into(), json!(revision.to_string()));
}

/// The object as the store keeps it: without a resourceVersion, which is the
/// store's revision.
pub(crate) fn encode(object: &mut Value) -> Bytes {
    metadata_mut(object).remove("resourceVersion");
    Bytes::from(serde_json::to_vec(object).expect("JSON values serialize"))
}

/// A request on objects of one kind.
pub(crate) struct Request<'a> {
    pub(crate) server: &'a ApiServer,
    pub(crate) target: &'a Target,
    pub(crate) params: &'a Params,
    pub(crate) format: Format,
    /// Who sent the request, as its authenticator says.
    pub(crate) user: &'a UserInfo,
    /// Who writes, for managedFields: `fieldManager`, else the client's name.
    pub(crate) manager: &'a str,
    /// Warnings for the client (`Warning` headers), such as the unknown fields a
    /// write dropped.
    pub(crate) warnings: &'a Mutex<Vec<String>>,
}

/// What a write is, for managedFields.
#[derive(Clone, Copy, PartialEq, Eq)]
pub(crate) enum Write {
    /// A create, replace or patch: the manager takes the fields it changes.
    Update,
    /// A write of a part of the object alone, through the subresource that
    /// writes it (the status, a CertificateSigningRequest's approval), which
    /// no manager owns.
    Part,
    /// A server-side apply: the object carries its managedFields already.
    Apply,
}

impl Request<'_> {
    fn resource(&self) -> &'static ResourceType {
        self.target.resource
    }

    fn namespace(&self) -> Option<&str> {
        self.target.namespace.as_deref()
    }

    /// The JSON pointer of the part of the object the target's subresource
    /// writes (`/status`), if it writes one.
    pub(crate) fn part(&self) -> Option<&'static str> {
        let sub = self.target.subresource.as_deref()?;
        self.resource().subresource(sub)?.part
    }

    fn key(&self, name: &str) -> ApiResult<String> {
        self.resource()
            .storage_key(self.namespace(), name)
            .ok_or_else(not_allowed)
    }

    /// The response for one object, as a one-row table when a table was asked for.
    pub(crate) fn render(&self, code: u16, object: &Value) -> Response {
        let mut response = if self.format == Format::Table {
            let include = Include::from_params(self.params);
            let metadata = json!({"resourceVersion": object["metadata"]["resourceVersion"]});
            let table = table(
                &Columns::of(&self.server.kinds, self.resource()),
                std::slice::from_ref(object),
                metadata,
                include,
            );
            respond(Format::Json, code, &table)
        } else {
            respond(self.format, code, object)
        };
        for warning in self.warnings.lock().expect("warnings lock").iter() {
            // RFC 7234 warn-code 299, as Kubernetes sends them.
            let text = format!("299 - {:?}", warning);
            if let Ok(value) = HeaderValue::from_str(&text) {
                response.headers_mut().append(header::WARNING, value);
            }
        }
        response
    }

    /// The stored object and its revision, or 404.
    pub(crate) async fn read(&self, name: &str) -> ApiResult<(Value, Revision)> {
        let key = self.key(name)?;
        let kv = self
            .server
            .store
            .get(&key)
            .await?
            .ok_or_else(|| ApiError::not_found(self.resource(), name))?;
        Ok((decode_stored(&kv)?, kv.mod_revision))
    }

    /// Gives the request's manager the fields it changes from `old` to `new`.
    pub(crate) fn record(&self, old: Option<&Value>, new: &mut Value) {
        let r = self.resource();
        let definition = definition_of(r.group, r.version, r.kind);
        apply::record_update(old, new, self.manager, &r.api_version(), &now(), definition);
    }

    /// Whether the request asks for a dry run, which stores nothing.
    pub(crate) fn dry_run(&self) -> bool {
        self.params.get("dryRun").is_some_and(|v| v == "All")
    }

    async fn list(&self) -> ApiResult<Response> {
        let r = self.resource();
        let filters = Filters::parse(r, self.params)?;
        let limit: usize = match self.params.get("limit").filter(|l| !l.is_empty()) {
            Some(l) => l
                .parse()
                .map_err(|_| ApiError::bad_request(format!("invalid limit {l:?}")))?,
            None => 0,
        };
        let continue_token = self
            .params
            .get("continue")
            .filter(|c| !c.is_empty())
            .cloned();
        let revision = list_revision(self.params, continue_token.is_some())?;
        let prefix = r
            .storage_collection(self.namespace())
            .ok_or_else(not_allowed)?;
        let page = match (continue_token, revision.exact) {
            (None, None) => {
                let cache = &self.server.cache;
                cache
                    .list(&prefix, &filters, limit, revision.not_older_than)
                    .await?
            }
            (continue_token, exact) => {
                let options = ListOptions {
                    limit,
                    continue_token,
                    revision: exact,
                };
                self.list_stored(&prefix, &filters, options).await?
            }
        };
        let mut metadata = json!({"resourceVersion": page.revision.to_string()});
        if let Some(token) = page.continue_token {
            metadata["continue"] = json!(token);
        }
        if let Some(n) = page.remaining {
            metadata["remainingItemCount"] = json!(n);
        }
        let kind = format!("{}List", r.kind);
        if self.format == Format::Json {
            return Ok(respond_list(
                &kind,
                &r.api_version(),
                &metadata,
                &page.items,
            ));
        }
        let items = page
            .items
            .iter()
            .map(|c| c.object())
            .collect::<ApiResult<Vec<_>>>()?;
        if self.format == Format::Table {
            let include = Include::from_params(self.params);
            return Ok(respond(
                Format::Json,
                200,
                &table(
                    &Columns::of(&self.server.kinds, r),
                    &items,
                    metadata,
                    include,
                ),
            ));
        }
        let list = json!({
            "kind": kind,
            "apiVersion": r.api_version(),
            "metadata": metadata,
            "items": items,
        });
        Ok(respond(self.format, 200, &list))
    }

    /// A page of a list read from the store: a page after the first, or one at an
    /// exact past revision, which the watch cache does not keep.
    async fn list_stored(
        &self,
        prefix: &str,
        filters: &Filters,
        mut options: ListOptions,
    ) -> ApiResult<Page> {
        let r = self.resource();
        let limit = options.limit;
        let mut items = Vec::new();
        loop {
            let page = self.server.store.list(prefix, &options).await.map_err(|e| match e {
                StoreError::Expired { .. } => ApiError::expired(
                    "The provided continue parameter is too old to display a consistent list result. You can start a new list without the continue parameter, or use the continue token in this response to retrieve the remainder of the results. Continuing with the provided token results in an inconsistent list - objects that were created, modified, or deleted between the time the first chunk was returned and now may show up in the list.",
                ),
                other => other.into(),
            })?;
            let mut last_key = None;
            for kv in &page.items {
                let object = Cached::new(kv, Some(r))?;
                if filters.matches(&object) {
                    items.push(Arc::new(object));
                    last_key = Some(&kv.key);
                    if limit > 0 && items.len() == limit {
                        break;
                    }
                }
            }
            let full = limit > 0 && items.len() == limit;
            match (&page.continue_token, full) {
                // The page was cut short of its end: resume after the last item kept.
                (_, true)
                    if last_key != page.items.last().map(|kv| &kv.key)
                        || page.continue_token.is_some() =>
                {
                    let after = &last_key.expect("a full page has a last key")[prefix.len()..];
                    return Ok(Page {
                        items,
                        revision: page.revision,
                        continue_token: Some(encode_continue(&format!("{after}\0"), page.revision)),
                        remaining: page.remaining.filter(|_| filters.is_empty()),
                    });
                }
                (Some(token), false) => {
                    options.continue_token = Some(token.clone());
                    options.limit = limit.max(500);
                }
                _ => {
                    return Ok(Page {
                        items,
                        revision: page.revision,
                        continue_token: None,
                        remaining: None,
                    });
                }
            }
        }
    }

    /// POST: creates the object, through the request pipeline.
    async fn create(&self, object: Value, write: Write) -> ApiResult<Response> {
        let r = self.resource();
        let object = self.decode_new(object)?;
        let mut object = self.admit_object(Operation::Create, object, None).await?;
        let name = name(&object).unwrap_or("").to_owned();
        if write == Write::Update {
            self.record(None, &mut object);
        }
        if let Some(ns) = self.namespace() {
            self.server.namespace_open(ns).await?;
        }
        if self.dry_run() {
            return Ok(self.render(201, &object));
        }
        let key = self.key(&name)?;
        let ttl = r.strategy.ttl();
        let store = &self.server.store;
        let claims = allocate::claim(store, r, &mut object, &Default::default()).await?;
        let kv = match store.create(&key, encode(&mut object), ttl).await {
            Ok(kv) => kv,
            Err(e) => {
                claims.release().await;
                return Err(match e {
                    StoreError::AlreadyExists { .. } => ApiError::already_exists(r, &name),
                    other => other.into(),
                });
            }
        };
        set_version(&mut object, kv.mod_revision);
        Ok(self.render(201, &object))
    }

    /// PUT: replaces the object (or only its status) through the request
    /// pipeline, returning it and the code.
    async fn replace(&self, name: &str, object: Value, write: Write) -> ApiResult<(Value, u16)> {
        let r = self.resource();
        let object = self.decode(object, Some(name), write != Write::Part)?;
        let (old, revision) = self.read(name).await?;
        let expected = match meta_str(&object, "resourceVersion") {
            Some(rv) => rv
                .parse::<Revision>()
                .map_err(|_| ApiError::bad_request(format!("invalid resourceVersion {rv:?}")))?,
            None => revision,
        };
        if expected != revision {
            return Err(ApiError::modified(r, name));
        }
        // A uid in the new object is a precondition, as in Kubernetes: a write
        // meant for an object that was deleted and made again under its name.
        if let Some(uid) = meta_str(&object, "uid").filter(|u| !u.is_empty()) {
            let preconditions = json!({"preconditions": {"uid": uid}});
            check_preconditions(r, name, &old, &preconditions)?;
        }
        let new = self.prepare_update(object, &old, write);
        let new = self
            .admit_object(Operation::Update, new, Some(&old))
            .await?;
        if self.dry_run() {
            return Ok((new, 200));
        }
        let mut new = new;
        let store = &self.server.store;
        let claims = allocate::claim(store, r, &mut new, &allocate::held(&old)).await?;
        match self.commit(name, new, expected).await {
            Ok(new) => {
                allocate::release_dropped(&**store, &old, &new).await;
                Ok((new, 200))
            }
            Err(e) => {
                claims.release().await;
                Err(e)
            }
        }
    }

    /// Writes an updated object over revision `expected`; an object being deleted
    /// whose last finalizer is gone (a namespace's own, in `spec.finalizers`,
    /// too) is deleted instead.
    async fn commit(&self, name: &str, mut object: Value, expected: Revision) -> ApiResult<Value> {
        let r = self.resource();
        let key = self.key(name)?;
        let store_error = |e| match e {
            StoreError::Conflict { .. } => ApiError::modified(r, name),
            StoreError::NotFound { .. } => ApiError::not_found(r, name),
            other => other.into(),
        };
        let held = object["spec"]["finalizers"]
            .as_array()
            .is_some_and(|f| !f.is_empty());
        if deleting(&object) && finalizers(&object).is_empty() && !held {
            let kv = self
                .server
                .store
                .delete(&key, Some(expected))
                .await
                .map_err(store_error)?;
            set_version(&mut object, kv.mod_revision);
            return Ok(object);
        }
        let ttl = r.strategy.ttl();
        let kv = self
            .server
            .store
            .update(&key, encode(&mut object), expected, ttl)
            .await
            .map_err(store_error)?;
        set_version(&mut object, kv.mod_revision);
        Ok(object)
    }

    /// Reads, changes and writes back an object, again if another writer came first.
    pub(crate) async fn modify(
        &self,
        name: &str,
        mut change: impl FnMut(&mut Value) -> ApiResult<()>,
    ) -> ApiResult<Value> {
        for attempt in 1..=ATTEMPTS {
            let (mut object, revision) = self.read(name).await?;
            change(&mut object)?;
            match self.commit(name, object, revision).await {
                Err(e) if e.reason == "Conflict" && attempt < ATTEMPTS => continue,
                result => return result,
            }
        }
        unreachable!("the last attempt returns")
    }

    async fn patch(&self, name: &str, headers: &HeaderMap, body: &[u8]) -> ApiResult<Response> {
        let content_type = headers
            .get(header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("");
        if content_type.split(';').next().map(str::trim) == Some(APPLY) {
            return self.apply(name, body).await;
        }
        let patch = Patch::decode(content_type, body)?;
        if self.target.subresource.as_deref() == Some("scale") {
            let (object, _) = self.read(name).await?;
            let scale = patch.apply(
                &self.scale_of(&object),
                definition_of("autoscaling", "v1", "Scale"),
            )?;
            return self.scale(name, scale).await;
        }
        let r = self.resource();
        let definition = definition_of(r.group, r.version, r.kind);
        let write = if self.part().is_some() {
            Write::Part
        } else {
            Write::Update
        };
        for attempt in 1..=ATTEMPTS {
            let (object, _) = self.read(name).await?;
            let object = patch.apply(&object, definition)?;
            match self.replace(name, object, write).await {
                Err(e) if e.reason == "Conflict" && !patch.pins_version() && attempt < ATTEMPTS => {
                }
                result => return result.map(|(object, code)| self.render(code, &object)),
            }
        }
        unreachable!("the last attempt returns")
    }

    /// Server-side apply: the body is the manager's whole intent for the object,
    /// created if missing.
    async fn apply(&self, name: &str, body: &[u8]) -> ApiResult<Response> {
        let r = self.resource();
        let Some(manager) = self.params.get("fieldManager").filter(|m| !m.is_empty()) else {
            return Err(ApiError::new(
                422,
                "Invalid",
                "PatchOptions.meta.k8s.io \"\" is invalid: fieldManager: Required value: is required for apply patch",
            ));
        };
        if self.target.subresource.is_some() {
            return Err(ApiError::method_not_allowed(
                "server-side apply of a subresource is not supported",
            ));
        }
        let mut config: Value = serde_yaml_ng::from_slice(body).map_err(|e| {
            ApiError::bad_request(format!("the apply configuration is not valid YAML: {e}"))
        })?;
        if !config.is_object() {
            return Err(ApiError::bad_request(
                "the apply configuration must be an object",
            ));
        }
        check_type_meta(r, &mut config)?;
        check_namespace(r, &mut config, self.namespace())?;
        match meta_str(&config, "name") {
            Some(given) if given != name => {
                return Err(ApiError::bad_request(format!(
                    "the name of the object ({given}) does not match the name on the URL ({name})"
                )));
            }
            _ => drop(metadata_mut(&mut config).insert("name".into(), json!(name))),
        }
        let time = now();
        let request = apply::Apply {
            manager,
            api_version: &r.api_version(),
            time: &time,
            force: is_true(self.params.get("force")),
            definition: definition_of(r.group, r.version, r.kind),
        };
        for attempt in 1..=ATTEMPTS {
            let live = match self.read(name).await {
                Ok((live, _)) => live,
                Err(e) if e.code == 404 => {
                    let object = apply::apply(&json!({}), &config, &request)
                        .map_err(|c| conflicts(r, name, &c))?;
                    return self.create(object, Write::Apply).await;
                }
                Err(e) => return Err(e),
            };
            let object =
                apply::apply(&live, &config, &request).map_err(|c| conflicts(r, name, &c))?;
            match self.replace(name, object, Write::Apply).await {
                Err(e) if e.reason == "Conflict" && attempt < ATTEMPTS => {}
                result => return result.map(|(object, code)| self.render(code, &object)),
            }
        }
        unreachable!("the last attempt returns")
    }

    /// A write of the scale subresource, through the request pipeline: the
    /// replicas of the Scale, once admitted, become the object's.
    async fn scale(&self, name: &str, scale: Value) -> ApiResult<Response> {
        let r = self.resource();
        let kind = r.subresource("scale").ok_or_else(not_allowed)?;
        let (current, _) = self.read(name).await?;
        let old = self.scale_of(&current);
        let valid = |scale: &Value| match scale["spec"]["replicas"].as_i64() {
            Some(replicas) if replicas < 0 => Err(ApiError::invalid_of(
                kind.group,
                kind.kind,
                name,
                &[FieldError::invalid(
                    "spec.replicas",
                    replicas.to_string(),
                    "must be greater than or equal to 0",
                )],
            )),
            _ => Ok(()),
        };
        let scale = self
            .admit(Operation::Update, Some(scale), Some(&old), valid)
            .await?
            .unwrap_or_default();
        let replicas = scale["spec"]["replicas"].as_i64().unwrap_or(0);
        let precondition =
            meta_str(&scale, "resourceVersion").and_then(|rv| rv.parse::<Revision>().ok());
        let paths = self.scale_paths();
        let object = self
            .modify(name, |object| {
                if let Some(rv) = precondition
                    && object["metadata"]["resourceVersion"] != json!(rv.to_string())
                {
                    return Err(ApiError::modified(r, name));
                }
                let old = object.clone();
                set_pointer(object, &paths.spec, json!(replicas));
                bump_generation(&old, object);
                Ok(())
            })
            .await?;
        Ok(respond(Format::Json, 200, &self.scale_of(&object)))
    }

    /// Where the kind keeps what its scale subresource shows.
    fn scale_paths(&self) -> ScalePaths {
        let custom = self.server.kinds.custom(self.resource());
        custom
            .and_then(|c| c.scale.clone())
            .unwrap_or_else(ScalePaths::builtin)
    }

    fn scale_of(&self, object: &Value) -> Value {
        scale_of(object, &self.scale_paths())
    }

    /// A POST to the subresource of an object that acts on it: a pod's binding
    /// or eviction.
    async fn act(&self, name: &str, subresource: &str, body: Value) -> ApiResult<Response> {
        match subresource {
            "binding" => self.bind(name, body).await,
            "token" => self.request_token(name, body).await,
            "eviction" => self.evict(name, body).await,
            _ => Err(not_allowed()),
        }
    }

    /// Deletes an object, or marks it for deletion while finalizers or a graceful
    /// stop remain. Returns the object and the code.
    pub(crate) async fn delete(&self, name: &str, options: &Value) -> ApiResult<(Value, u16)> {
        let r = self.resource();
        for attempt in 1..=ATTEMPTS {
            let (mut object, revision) = self.read(name).await?;
            check_preconditions(r, name, &object, options)?;
            if deleting(&object) {
                return Ok((object, 202));
            }
            let mut marks = finalizers(&object);
            match options["propagationPolicy"].as_str() {
                Some("Foreground") => marks.push("foregroundDeletion".into()),
                Some("Orphan") => marks.push("orphan".into()),
                _ => {}
            }
            // A delete through a subresource (an eviction) was admitted as that
            // subresource's write.
            if self.target.subresource.is_none() {
                self.admit(Operation::Delete, None, Some(&object), |_| Ok(()))
                    .await?;
            }
            let deletion = r
                .strategy
                .deletion(&object, options["gracePeriodSeconds"].as_i64());
            if self.dry_run() {
                return Ok((object, 200));
            }
            let result = if marks.is_empty() && deletion == Deletion::Immediate {
                let key = self.key(name)?;
                self.server
                    .store
                    .delete(&key, Some(revision))
                    .await
                    .map(|kv| {
                        set_version(&mut object, kv.mod_revision);
                        (object, 200)
                    })
            } else {
                let grace = match deletion {
                    Deletion::Graceful(grace) => grace,
                    Deletion::Immediate | Deletion::Contents => 0,
                };
                r.strategy.prepare_for_delete(&mut object);
                let meta = metadata_mut(&mut object);
                meta.insert("deletionTimestamp".into(), json!(now()));
                meta.insert("deletionGracePeriodSeconds".into(), json!(grace));
                marks.dedup();
                if !marks.is_empty() {
                    meta.insert("finalizers".into(), json!(marks));
                }
                match self.commit(name, object, revision).await {
                    Ok(object) => {
                        if deletion == Deletion::Contents {
                            self.server.finalize_namespace(name.to_owned());
                        }
                        return Ok((object, 200));
                    }
                    Err(e) if e.reason == "Conflict" && attempt < ATTEMPTS => continue,
                    Err(e) => return Err(e),
                }
            };
            match result {
                Ok(done) => return Ok(done),
                Err(StoreError::Conflict { .. }) if attempt < ATTEMPTS => continue,
                Err(StoreError::NotFound { .. }) => return Err(ApiError::not_found(r, name)),
                Err(StoreError::Conflict { .. }) => return Err(ApiError::modified(r, name)),
                Err(e) => return Err(e.into()),
            }
        }
        unreachable!("the last attempt returns")
    }

    async fn delete_collection(&self, options: &Value) -> ApiResult<Response> {
        let r = self.resource();
        let filters = Filters::parse(r, self.params)?;
        let prefix = r
            .storage_collection(self.namespace())
            .ok_or_else(not_allowed)?;
        let mut deleted = Vec::new();
        let page = self.server.cache.list(&prefix, &filters, 0, None).await?;
        for object in page.items {
            let object = object.object()?;
            let name = name(&object).unwrap_or("").to_owned();
            let target = Target {
                resource: r,
                namespace: meta_str(&object, "namespace").map(str::to_owned),
                name: Some(name.clone()),
                subresource: None,
            };
            match (Request {
                target: &target,
                ..*self
            })
            .delete(&name, options)
            .await
            {
                Ok((object, _)) => deleted.push(object),
                Err(e) if e.code == 404 => {}
                Err(e) => return Err(e),
            }
        }
        let list = json!({
            "kind": format!("{}List", r.kind),
            "apiVersion": r.api_version(),
            "metadata": {},
            "items": deleted,
        });
        Ok(respond(self.format, 200, &list))
    }
}

/// The revision a list reads at, from `resourceVersion` and `resourceVersionMatch`.
struct ListRevision {
    /// Read exactly this revision.
    exact: Option<Revision>,
    /// Read the newest, which must be at least this.
    not_older_than: Option<Revision>,
}

fn list_revision(params: &Params, continuing: bool) -> ApiResult<ListRevision> {
    let rv = params.get("resourceVersion").filter(|v| !v.is_empty());
    let mode = params.get("resourceVersionMatch").filter(|v| !v.is_empty());
    if continuing && rv.is_some_and(|v| v != "0") {
        return Err(ApiError::bad_request(
            "specifying resource version is not allowed when using continue",
        ));
    }
    let Some(rv) = rv else {
        if mode.is_some() {
            return Err(ApiError::bad_request(
                "resourceVersionMatch is forbidden unless resourceVersion is provided",
            ));
        }
        return Ok(ListRevision {
            exact: None,
            not_older_than: None,
        });
    };
    let revision: Revision = rv
        .parse()
        .map_err(|_| ApiError::bad_request(format!("invalid resourceVersion {rv:?}")))?;
    match mode.map(String::as_str) {
        Some("Exact") if revision == 0 => Err(ApiError::bad_request(
            "resourceVersionMatch \"Exact\" is forbidden for resourceVersion \"0\"",
        )),
        Some("Exact") => Ok(ListRevision {
            exact: Some(revision),
            not_older_than: None,
        }),
        None | Some("NotOlderThan") => Ok(ListRevision {
            exact: None,
            not_older_than: Some(revision),
        }),
        Some(other) => Err(ApiError::bad_request(format!(
            "resourceVersionMatch: Unsupported value: {other:?}: supported values: \"Exact\", \"NotOlderThan\""
        ))),
    }
}

/// DeleteOptions from the body (if any) and the query.
fn delete_options(params: &Params, body: &[u8]) -> ApiResult<Value> {
    let mut options = if body.iter().all(u8::is_ascii_whitespace) {
        json!({})
    } else {
        serde_json::from_slice::<Value>(body)
            .map_err(|e| ApiError::bad_request(format!("invalid DeleteOptions: {e}")))?
    };
    if let Some(grace) = params.get("gracePeriodSeconds") {
        let grace: i64 = grace
            .parse()
            .map_err(|_| ApiError::bad_request(format!("invalid gracePeriodSeconds {grace:?}")))?;
        options["gracePeriodSeconds"] = json!(grace);
    }
    if let Some(policy) = params.get("propagationPolicy") {
        options["propagationPolicy"] = json!(policy);
    }
    match options["propagationPolicy"].as_str() {
        None | Some("Foreground" | "Background" | "Orphan") => Ok(options),
        Some(other) => Err(ApiError::bad_request(format!(
            "propagationPolicy: Unsupported value: {other:?}: supported values: \"Foreground\", \"Background\", \"Orphan\""
        ))),
    }
}

pub(crate) fn check_preconditions(
    resource: &ResourceType,
    name: &str,
    object: &Value,
    options: &Value,
) -> ApiResult<()> {
    for (field, label) in [("uid", "UID"), ("resourceVersion", "ResourceVersion")] {
        if let Some(wanted) = options["preconditions"][field].as_str()
            && meta_str(object, field) != Some(wanted)
        {
            return Err(ApiError::conflict(
                resource,
                name,
                &format!(
                    "Precondition failed: {label} in precondition: {wanted}, {label} in object meta: {}",
                    meta_str(object, field).unwrap_or("")
                ),
            ));
        }
    }
    Ok(())
}

/// The autoscaling/v1 Scale of a workload.
fn scale_of(object: &Value, paths: &ScalePaths) -> Value {
    let selector = match &paths.selector {
        Some(pointer) => object
            .pointer(pointer)
            .and_then(Value::as_str)
            .map(str::to_owned),
        None => match &object["spec"]["selector"] {
            s if s.get("matchLabels").is_some() || s.get("matchExpressions").is_some() => {
                serde_json::from_value(s.clone())
                    .ok()
                    .and_then(|s| Selector::from_label_selector(&s).ok())
                    .map(|s| s.to_string())
            }
            Value::Object(map) => Some(
                map.iter()
                    .map(|(k, v)| format!("{k}={}", v.as_str().unwrap_or("")))
                    .collect::<Vec<_>>()
                    .join(","),
            ),
            _ => None,
        },
    };
    let replicas = |pointer: &str| object.pointer(pointer).and_then(Value::as_i64).unwrap_or(0);
    let meta = &object["metadata"];
    json!({
        "kind": "Scale",
        "apiVersion": "autoscaling/v1",
        "metadata": {
            "name": meta["name"], "namespace": meta["namespace"], "uid": meta["uid"],
            "resourceVersion": meta["resourceVersion"], "creationTimestamp": meta["creationTimestamp"],
        },
        "spec": {"replicas": replicas(&paths.spec)},
        "status": {
            "replicas": replicas(&paths.status),
            "selector": selector.unwrap_or_default(),
        },
    })
}

/// `target` with a JSON patch applied. The patch works on a copy, which a failed
/// operation leaves behind (the crate's own rollback can panic on some sequences).
pub(crate) fn json_patch(target: &Value, operations: &json_patch::Patch) -> Result<Value, String> {
    let mut patched = target.clone();
    json_patch::patch_unsafe(&mut patched, operations).map_err(|e| e.to_string())?;
    Ok(patched)
}

/// The media type of server-side apply.
const APPLY: &str = "application/apply-patch+yaml";

/// The patch media types, as a 415 lists them.
const PATCH_TYPES: &str = "application/json-patch+json, application/merge-patch+json, application/strategic-merge-patch+json, application/apply-patch+yaml";

/// The 409 of an apply that conflicts with other managers.
fn conflicts(resource: &ResourceType, name: &str, conflicts: &[apply::Conflict]) -> ApiError {
    let causes: Vec<StatusCause> = conflicts
        .iter()
        .map(|c| StatusCause {
            reason: "FieldManagerConflict".into(),
            message: format!("conflict with {:?} using {}", c.manager, c.api_version),
            field: apply::display(&c.path),
        })
        .collect();
    let list: Vec<String> = conflicts.iter().map(ToString::to_string).collect();
    let (count, noun) = match conflicts.len() {
        1 => (1, "conflict"),
        n => (n, "conflicts"),
    };
    let message = format!("Apply failed with {count} {noun}: {}", list.join("\n"));
    ApiError::new(409, "Conflict", message).with_details(StatusDetails {
        causes,
        ..details(resource, name)
    })
}

/// A PATCH body.
enum Patch {
    /// RFC 6902.
    Json(json_patch::Patch),
    /// RFC 7386.
    Merge(Value),
    /// Kubernetes' strategic merge patch.
    Strategic(Value),
}

impl Patch {
    fn decode(content_type: &str, body: &[u8]) -> ApiResult<Patch> {
        let json = || -> ApiResult<Value> {
            serde_json::from_slice(body)
                .map_err(|e| ApiError::bad_request(format!("the patch is not valid JSON: {e}")))
        };
        match content_type.split(';').next().unwrap_or("").trim() {
            "application/json-patch+json" => serde_json::from_value(json()?)
                .map(Patch::Json)
                .map_err(|e| ApiError::bad_request(format!("the JSON patch is not valid: {e}"))),
            "application/merge-patch+json" => Ok(Patch::Merge(json()?)),
            "application/strategic-merge-patch+json" => Ok(Patch::Strategic(json()?)),
            other => Err(ApiError::new(
                415,
                "UnsupportedMediaType",
                format!(
                    "the body of the request was in an unknown format ({other}) - accepted media types include: {PATCH_TYPES}"
                ),
            )),
        }
    }

    /// `target` patched; `definition` is its OpenAPI definition, which strategic
    /// merge patch needs.
    fn apply(&self, target: &Value, definition: Option<&'static str>) -> ApiResult<Value> {
        let unprocessable = |e: String| ApiError::new(422, "Invalid", e);
        match self {
            Patch::Json(operations) => json_patch(target, operations).map_err(unprocessable),
            Patch::Merge(patch) => {
                let mut patched = target.clone();
                json_patch::merge(&mut patched, patch);
                Ok(patched)
            }
            Patch::Strategic(patch) => {
                if definition.is_none() {
                    return Err(ApiError::new(
                        415,
                        "UnsupportedMediaType",
                        "strategic merge patch is not supported for this kind: use a merge patch (application/merge-patch+json)",
                    ));
                }
                strategic::apply(target, patch, definition)
                    .map_err(|e| unprocessable(e.to_string()))
            }
        }
    }

    /// Whether the patch sets the resourceVersion, and so must not be retried
    /// against a newer one.
    fn pins_version(&self) -> bool {
        match self {
            Patch::Merge(p) | Patch::Strategic(p) => !p["metadata"]["resourceVersion"].is_null(),
            Patch::Json(ops) => ops
                .0
                .iter()
                .any(|op| op.path().as_str() == "/metadata/resourceVersion"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn unknown_fields_are_dropped_with_a_warning_or_refused() {
        let server = crate::testing::TestServer::start().await;
        let pods = "/api/v1/namespaces/default/pods";
        let pod = |name: &str| {
            json!({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": name},
                "spec": {"containers": [{"name": "c", "image": "i", "imagePolicy": "x"}]}})
        };
        let (status, headers, created) = server.call("POST", pods, pod("warned")).await;
        assert_eq!(status, 201, "{created}");
        assert!(
            created["spec"]["containers"][0]
                .get("imagePolicy")
                .is_none()
        );
        let warning = headers.get(header::WARNING).unwrap().to_str().unwrap();
        assert_eq!(
            warning,
            r#"299 - "unknown field \"spec.containers[0].imagePolicy\"""#
        );
        let strict = format!("{pods}?fieldValidation=Strict");
        let (status, _, refused) = server.call("POST", &strict, pod("refused")).await;
        assert_eq!(status, 400);
        assert_eq!(
            refused["message"],
            r#"strict decoding error: unknown field "spec.containers[0].imagePolicy""#
        );
        let ignore = format!("{pods}?fieldValidation=Ignore");
        let (status, headers, _) = server.call("POST", &ignore, pod("quiet")).await;
        assert_eq!(status, 201);
        assert!(headers.get(header::WARNING).is_none());
    }

    #[tokio::test]
    async fn a_new_object_starts_with_the_status_of_its_kind() {
        let server = crate::testing::TestServer::start().await;
        let service = json!({"metadata": {"name": "web"},
            "spec": {"ports": [{"port": 80}]},
            "status": {"loadBalancer": {"ingress": [{"ip": "192.0.2.1"}]}}});
        let services = "/api/v1/namespaces/default/services";
        let (status, _, created) = server.call("POST", services, service).await;
        assert_eq!(status, 201, "{created}");
        assert_eq!(created["status"], json!({"loadBalancer": {}}));
        let pod = json!({"metadata": {"name": "p"}, "status": {"phase": "Running"},
            "spec": {"containers": [{"name": "c", "image": "i:1"}]}});
        let pods = "/api/v1/namespaces/default/pods";
        let (_, _, created) = server.call("POST", pods, pod).await;
        assert_eq!(created["status"], json!({"phase": "Pending"}));
        let node = json!({"metadata": {"name": "n1"}, "status": {"capacity": {"pods": "10"}}});
        let (_, _, created) = server.call("POST", "/api/v1/nodes", node).await;
        assert_eq!(
            created["status"]["capacity"]["pods"], "10",
            "a node keeps its status"
        );
        let map = json!({"metadata": {"name": "m"}});
        let maps = "/api/v1/namespaces/default/configmaps";
        let (_, _, created) = server.call("POST", maps, map).await;
        assert!(created.get("status").is_none(), "{created}");
    }

    #[tokio::test]
    async fn subresources_write_their_part_of_the_object() {
        use base64::Engine as _;
        let pem = |label: &str| {
            base64::engine::general_purpose::STANDARD.encode(format!(
                "-----BEGIN {label}-----\nAAAA\n-----END {label}-----\n"
            ))
        };
        let server = crate::testing::TestServer::start().await;
        let csrs = "/apis/certificates.k8s.io/v1/certificatesigningrequests";
        let csr = json!({"metadata": {"name": "c"}, "spec": {
            "request": pem("CERTIFICATE REQUEST"), "usages": ["client auth"],
            "signerName": "example.com/signer"},
            "status": {"conditions": [{"type": "Approved", "status": "True"}]}});
        let (status, _, created) = server.call("POST", csrs, csr).await;
        assert_eq!(status, 201, "{created}");
        assert_eq!(created["status"], json!({}), "a request starts unapproved");

        // The approval changes the conditions alone.
        let mut approval = created.clone();
        approval["spec"]["signerName"] = json!("example.com/other");
        approval["status"] = json!({"certificate": pem("CERTIFICATE"),
            "conditions": [{"type": "Approved", "status": "True", "reason": "Test"}]});
        let approve = format!("{csrs}/c/approval");
        let (status, _, approved) = server.call("PUT", &approve, approval).await;
        assert_eq!(status, 200, "{approved}");
        assert_eq!(approved["spec"]["signerName"], "example.com/signer");
        assert_eq!(approved["status"]["conditions"][0]["reason"], "Test");
        assert!(approved["status"].get("certificate").is_none());
        let (status, _, read) = server.call("GET", &approve, Value::Null).await;
        assert_eq!((status, &read["status"]), (200, &approved["status"]));

        // The status may not approve; it carries the certificate.
        let mut denial = approved.clone();
        denial["status"]["conditions"] = json!([{"type": "Approved", "status": "True",
            "reason": "Test"}, {"type": "Failed", "status": "True"}]);
        denial["status"]["certificate"] = json!(pem("CERTIFICATE"));
        let status_path = format!("{csrs}/c/status");
        let (status, _, issued) = server.call("PUT", &status_path, denial).await;
        assert_eq!(status, 200, "{issued}");
        assert_eq!(issued["status"]["certificate"], pem("CERTIFICATE"));
        let mut unapproved = issued.clone();
        unapproved["status"]["conditions"] = json!([]);
        let (status, _, refused) = server.call("PUT", &status_path, unapproved).await;
        assert_eq!(status, 422, "{refused}");
    }

    #[test]
    fn list_revisions() {
        let params = |pairs: &[(&str, &str)]| -> Params {
            pairs
                .iter()
                .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
                .collect()
        };
        let exact = list_revision(
            &params(&[("resourceVersion", "5"), ("resourceVersionMatch", "Exact")]),
            false,
        )
        .unwrap();
        assert_eq!((exact.exact, exact.not_older_than), (Some(5), None));
        let newer = list_revision(&params(&[("resourceVersion", "5")]), false).unwrap();
        assert_eq!((newer.exact, newer.not_older_than), (None, Some(5)));
        assert!(list_revision(&params(&[("resourceVersion", "x")]), false).is_err());
        assert!(list_revision(&params(&[("resourceVersion", "5")]), true).is_err());
        assert!(list_revision(&params(&[("resourceVersionMatch", "Exact")]), false).is_err());
    }

    #[test]
    fn scale_of_a_deployment() {
        let d = json!({"metadata": {"name": "d", "namespace": "n", "resourceVersion": "4"},
            "spec": {"replicas": 3, "selector": {"matchLabels": {"app": "web"}}}, "status": {"replicas": 2}});
        let scale = scale_of(&d, &ScalePaths::builtin());
        assert_eq!(scale["spec"]["replicas"], 3);
        assert_eq!(scale["status"]["selector"], "app=web");
        assert_eq!(scale["metadata"]["resourceVersion"], "4");
    }
}
