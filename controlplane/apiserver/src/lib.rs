//! The API server: serves the Kubernetes API over HTTP from a [`Store`].
//!
//! Every kind in the registry of `wasmkube-types` is served by one generic code
//! path: the path names a kind (and namespace, name, subresource), the verb picks
//! the operation, and the kind's row in the registry supplies everything specific
//! (scope, verbs, subresources, store key, table columns, and its strategy:
//! defaults, validation, what writes and deletes do). Every request passes one
//! pipeline, in Kubernetes' order: authentication and authorization ([`access`]),
//! then for writes decoding with defaults, mutating [`admission`], validation by
//! the kind's strategy, validating admission, and the store. Errors are metav1
//! Status objects; bodies are JSON or YAML; `kubectl get` gets Tables.
//!
//! Nodes' agents are reached directly or through the connections they keep
//! open to the server ([`CONNECT_PATH`]), for those behind NAT.
//!
//! It owns routing, the wire format and what users see; objects live in the store
//! it is given (embedded or etcd). It depends on no runtime but tokio and axum.

pub mod access;
pub mod admission;
mod agents;
mod allocate;
mod cache;
mod cluster_services;
mod crd;
mod discovery;
pub mod error;
#[cfg(test)]
mod fuzz;
mod health;
pub mod kubeconfig;
mod limits;
mod logs;
mod negotiate;
mod objects;
mod openapi;
mod openapi_v2;
mod path;
mod pipeline;
mod pods;
mod policies;
mod portforward;
mod protobuf;
mod rest;
mod review;
mod table;
#[cfg(test)]
mod testing;
mod tokens;
mod tunnels;
mod validating_policies;
mod watch;
mod webhooks;

use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::extract::DefaultBodyLimit;
use axum::routing::{any, get};
use serde_json::json;
use tokio_util::sync::CancellationToken;
use wasmkube_store::{Bytes, Error as StoreError, ListOptions, Store};
use wasmkube_types::ResourceType;
use wasmkube_types::registry::{BUILTIN, by_kind};

use crate::access::UserInfo;
use crate::cache::WatchCache;
pub use crate::cluster_services::{create_cluster_services, dns_service_ip, kubernetes_service_ip};
use crate::crd::Kinds;
use crate::error::{ApiError, ApiResult, StatusCause, StatusDetails};
pub use crate::limits::Limits;
pub use crate::pipeline::Access;
pub use crate::policies::{BuiltinPolicy, MAX_LISTED_BYTES, PolicyHost};
pub use crate::tunnels::{CONNECT_PATH, PROTOCOL};
pub use wasmkube_types::plugin::AdmissionPlacement;

/// The namespaces every cluster has.
pub const SYSTEM_NAMESPACES: [&str; 4] =
    ["default", "kube-system", "kube-public", "kube-node-lease"];

/// What every handler can reach.
#[derive(Clone)]
pub struct ApiServer {
    store: Arc<dyn Store>,
    /// Lists and watches are served from here.
    cache: Arc<WatchCache>,
    /// The kinds served: the built-in ones and those of the CRDs.
    kinds: Arc<Kinds>,
    /// Set when the server shuts down: long-running requests (watches) end.
    closing: CancellationToken,
    /// Who may do what: the authenticator, authorizer and admission chain every
    /// request passes.
    access: Arc<Access>,
    /// How the server reaches nodes' agents over TLS.
    kubelet_client: Option<Arc<rustls::ClientConfig>>,
    /// The connections agents that dial home keep open to it.
    tunnels: tunnels::Tunnels,
    /// The budgets of requests in flight and of watches.
    gates: Arc<limits::Gates>,
}

/// What a server serves and who may reach it, beyond its store.
#[derive(Debug)]
pub struct Config {
    /// The built-in kinds served, in the order discovery lists them: each a row
    /// with its strategy (those of the CRDs come on top).
    pub kinds: &'static [ResourceType],
    /// Who may do what.
    pub access: Access,
    /// How to reach nodes' agents (logs, port-forward): over TLS with this
    /// client, which trusts the CA of the agents' serving certificates and
    /// presents the server's own; in the clear without one.
    pub kubelet_client: Option<Arc<rustls::ClientConfig>>,
    /// How much the server takes at once.
    pub limits: Limits,
    /// The admission policies in Wasm: the built-in ones and those Plugin
    /// objects declare, called after the plugins of `access`. None: no
    /// policies.
    pub policies: Option<PolicyHost>,
}

impl Default for Config {
    /// The registry's kinds, open to everyone, with Kubernetes' budgets.
    fn default() -> Config {
        Config {
            kinds: BUILTIN,
            access: Access::default(),
            kubelet_client: None,
            limits: Limits::default(),
            policies: None,
        }
    }
}

/// The served kind of `object`, by its `apiVersion` and `kind`.
fn resource_of(object: &serde_json::Value) -> Option<&'static ResourceType> {
    let api_version = object["apiVersion"].as_str().unwrap_or("");
    let (group, version) = api_version.split_once('/').unwrap_or(("", api_version));
    by_kind(group, version, object["kind"].as_str().unwrap_or(""))
}

/// What becomes of a default object that is already stored, given the
/// default and the stored object.
#[derive(Debug, Clone, PartialEq)]
pub enum Reconciled {
    /// It stays as it is.
    Keep,
    /// It is rewritten as this object (the stored one, changed).
    Update(serde_json::Value),
    /// It is deleted and created again as this object (a change the kind
    /// does not allow in an update, as a binding's `roleRef`).
    Recreate(serde_json::Value),
}

/// Creates those of `objects` (each with its `apiVersion`, `kind` and name)
/// that are not stored yet, as the server creates what every cluster has (its
/// system namespaces, the default roles): with the metadata a create gives.
/// An object of a kind that is not built in is an error; a Service whose
/// address or ports cannot be claimed is not created (and said so).
pub async fn create_missing(
    store: &Arc<dyn Store>,
    objects: &[serde_json::Value],
) -> Result<(), StoreError> {
    ensure_defaults(store, objects, |_, _| Reconciled::Keep).await
}

/// [`create_missing`], and those already stored are brought back to their
/// defaults as far as `reconcile` (given the default and the stored object)
/// says. A write that loses a race with another server's is left to it: both
/// write the same defaults.
pub async fn ensure_defaults(
    store: &Arc<dyn Store>,
    objects: &[serde_json::Value],
    reconcile: impl Fn(&serde_json::Value, &serde_json::Value) -> Reconciled,
) -> Result<(), StoreError> {
    for object in objects {
        let kind = object["kind"].as_str().unwrap_or("");
        let resource = resource_of(object).ok_or_else(|| {
            let api_version = object["apiVersion"].as_str().unwrap_or("");
            StoreError::Unavailable(format!("{api_version} {kind} is not served"))
        })?;
        let name = objects::name(object).unwrap_or("").to_owned();
        let namespace = objects::meta_str(object, "namespace").map(str::to_owned);
        let Some(key) = resource.storage_key(namespace.as_deref(), &name) else {
            continue;
        };
        let mut new = object.clone();
        if let Some(kv) = store.get(&key).await? {
            let Ok(stored) = serde_json::from_slice::<serde_json::Value>(&kv.value) else {
                tracing::warn!(key, "a stored default object cannot be read; left as it is");
                continue;
            };
            let (written, recreate) = match reconcile(object, &stored) {
                Reconciled::Keep => continue,
                Reconciled::Update(changed) => {
                    tracing::info!(kind, name, "bringing back to its default");
                    let value = Bytes::from(changed.to_string());
                    (
                        store.update(&key, value, kv.mod_revision, None).await,
                        false,
                    )
                }
                Reconciled::Recreate(changed) => {
                    tracing::info!(kind, name, "recreating as its default");
                    new = changed;
                    (store.delete(&key, Some(kv.mod_revision)).await, true)
                }
            };
            match written {
                Ok(_) if recreate => {}
                Ok(_) | Err(StoreError::Conflict { .. } | StoreError::NotFound { .. }) => continue,
                Err(e) => return Err(e),
            }
        }
        objects::prepare_new(resource, &mut new);
        // A Service's address and ports are claimed as for any other.
        let claims = match allocate::claim(store, resource, &mut new, &Default::default()).await {
            Ok(claims) => claims,
            Err(e) => {
                tracing::warn!(kind, name, error = %e.message, "not created");
                continue;
            }
        };
        match store.create(&key, Bytes::from(new.to_string()), None).await {
            Ok(_) => {}
            Err(StoreError::AlreadyExists { .. }) => claims.release().await,
            Err(e) => {
                claims.release().await;
                return Err(e);
            }
        }
    }
    Ok(())
}

impl std::fmt::Debug for ApiServer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ApiServer").finish_non_exhaustive()
    }
}

impl ApiServer {
    /// An API server over `store` serving the registry's kinds, open to everyone,
    /// with the system namespaces in place and namespaces left terminating by an
    /// earlier run finished.
    pub async fn start(store: Arc<dyn Store>) -> Result<ApiServer, StoreError> {
        ApiServer::start_with(store, Config::default()).await
    }

    /// An API server over `store` as `config` says, with the system namespaces in
    /// place and namespaces left terminating by an earlier run finished.
    pub async fn start_with(
        store: Arc<dyn Store>,
        config: Config,
    ) -> Result<ApiServer, StoreError> {
        let namespaces = SYSTEM_NAMESPACES.map(|name| {
            json!({
                "apiVersion": "v1", "kind": "Namespace",
                "metadata": {"name": name, "labels": {"kubernetes.io/metadata.name": name}},
            })
        });
        create_missing(&store, &namespaces).await?;
        let closing = CancellationToken::new();
        let cache = WatchCache::start(store.clone(), closing.clone()).await?;
        let kinds = Arc::new(Kinds::new(config.kinds));
        let mut access = config.access;
        if let Some(host) = config.policies {
            let policies = policies::Policies::start(
                host,
                cache.clone(),
                store.clone(),
                kinds.clone(),
                closing.clone(),
            )
            .await
            .map_err(|e| StoreError::Unavailable(e.message))?;
            access.admission.mutating.push(policies.clone());
            access.admission.validating.push(policies);
        }
        let expressions =
            validating_policies::ValidatingPolicies::start(cache.clone(), closing.clone())
                .await
                .map_err(|e| StoreError::Unavailable(e.message))?;
        access.admission.validating.push(expressions);
        let webhooks = webhooks::Webhooks::start(cache.clone(), closing.clone())
            .await
            .map_err(|e| StoreError::Unavailable(e.message))?;
        access.admission.mutating.push(webhooks.clone());
        access.admission.validating.push(webhooks);
        let server = ApiServer {
            cache,
            kinds,
            store,
            closing,
            access: Arc::new(access),
            kubelet_client: config.kubelet_client,
            tunnels: tunnels::Tunnels::default(),
            gates: limits::Gates::new(config.limits),
        };
        let services = by_kind("", "v1", "Service").expect("services are served");
        allocate::reclaim(
            server.store.clone(),
            server.cache.clone(),
            services,
            server.closing.clone(),
        )
        .await
        .map_err(|e| StoreError::Unavailable(e.message))?;
        crd::follow(server.clone(), server.closing.clone())
            .await
            .map_err(|e| StoreError::Unavailable(e.message))?;
        let root = by_kind("", "v1", "Namespace")
            .and_then(|r| r.storage_root())
            .expect("namespaces are stored");
        for kv in server
            .store
            .list(&root, &ListOptions::default())
            .await?
            .items
        {
            if let Ok(ns) = rest::decode_stored(&kv)
                && objects::deleting(&ns)
                && let Some(name) = objects::name(&ns)
            {
                server.finalize_namespace(name.to_owned());
            }
        }
        Ok(server)
    }

    /// Ends the watches being served, so that a graceful shutdown does not wait for
    /// them to time out.
    pub fn close(&self) {
        self.closing.cancel();
    }

    /// The HTTP routes, each behind the first stage of the pipeline.
    pub fn router(&self) -> Router {
        self.router_with(Router::new())
    }

    /// The HTTP routes and `more` (the built-in registry's), all behind the
    /// first stage of the pipeline: who sent a request, and whether they may
    /// reach a path that names no resource.
    pub fn router_with(&self, more: Router) -> Router {
        self.routes()
            .merge(more)
            .layer(axum::middleware::from_fn_with_state(
                self.clone(),
                pipeline::authenticate,
            ))
    }

    fn routes(&self) -> Router {
        Router::new()
            .route("/version", get(health::version))
            .route("/version/", get(health::version))
            .route("/healthz", get(health::live))
            .route("/livez", get(health::live))
            .route("/readyz", get(health::ready))
            .route("/openapi/v2", get(openapi_v2::serve))
            .route("/openapi/v3", get(openapi::index))
            .route("/openapi/v3/", get(openapi::index))
            .route("/openapi/v3/{*path}", get(openapi::group_version))
            .route(
                "/api/v1/namespaces/{namespace}/pods/{name}/portforward",
                any(portforward::serve),
            )
            .route(CONNECT_PATH, get(tunnels::connect))
            .route("/api", any(rest::handle))
            .route("/api/", any(rest::handle))
            .route("/api/{*rest}", any(rest::handle))
            .route("/apis", any(rest::handle))
            .route("/apis/", any(rest::handle))
            .route("/apis/{*rest}", any(rest::handle))
            .layer(DefaultBodyLimit::max(rest::MAX_BODY))
            .with_state(self.clone())
    }

    /// Every object stored under `prefix`.
    async fn objects(&self, prefix: &str) -> ApiResult<Vec<serde_json::Value>> {
        let list = self.store.list(prefix, &ListOptions::default()).await?;
        list.items.iter().map(rest::decode_stored).collect()
    }

    /// Refuses to create in a namespace that does not exist or is being deleted.
    async fn namespace_open(&self, namespace: &str) -> ApiResult<()> {
        let namespaces = by_kind("", "v1", "Namespace").expect("namespaces are served");
        let key = namespaces
            .storage_key(None, namespace)
            .expect("namespaces are stored");
        let Some(kv) = self.store.get(&key).await? else {
            return Err(ApiError::not_found(namespaces, namespace));
        };
        let object = rest::decode_stored(&kv)?;
        if objects::deleting(&object) {
            let cause = StatusCause {
                reason: "NamespaceTerminating".into(),
                message: format!("namespace {namespace} is being terminated"),
                field: "metadata.namespace".into(),
            };
            let message = format!(
                "unable to create new content in namespace {namespace} because it is being terminated"
            );
            return Err(ApiError::forbidden(message).with_details(StatusDetails {
                name: namespace.into(),
                kind: "namespaces".into(),
                causes: vec![cause],
                ..StatusDetails::default()
            }));
        }
        Ok(())
    }

    /// Deletes everything in a terminating namespace, then the namespace's own
    /// finalizer (`kubernetes`), in the background: the namespace goes once its
    /// other finalizers are gone too.
    fn finalize_namespace(&self, namespace: String) {
        let server = self.clone();
        tokio::spawn(async move {
            loop {
                match server.empty_namespace(&namespace).await {
                    Ok(true) => break,
                    Ok(false) => {}
                    Err(e) => tracing::warn!(namespace, error = %e.message, "emptying namespace"),
                }
                tokio::time::sleep(Duration::from_millis(500)).await;
            }
            let namespaces = by_kind("", "v1", "Namespace").expect("namespaces are served");
            let key = namespaces
                .storage_key(None, &namespace)
                .expect("namespaces are stored");
            loop {
                match server.release_namespace(&key).await {
                    Ok(done) => {
                        tracing::info!(namespace, done, "namespace emptied");
                        return;
                    }
                    Err(StoreError::Conflict { .. }) => continue,
                    Err(e) => {
                        tracing::warn!(namespace, error = %e, "releasing namespace");
                        return;
                    }
                }
            }
        });
    }

    /// Takes the namespace's own finalizer off the namespace stored at `key`,
    /// and deletes it unless other finalizers hold it: whether it is gone.
    async fn release_namespace(&self, key: &str) -> Result<bool, StoreError> {
        let Some(kv) = self.store.get(key).await? else {
            return Ok(true);
        };
        let mut namespace =
            rest::decode_stored(&kv).map_err(|e| StoreError::Unavailable(e.message))?;
        if objects::finalizers(&namespace).is_empty() {
            self.store.delete(key, Some(kv.mod_revision)).await?;
            return Ok(true);
        }
        namespace["spec"]["finalizers"] = json!([]);
        let value = rest::encode(&mut namespace);
        self.store.update(key, value, kv.mod_revision, None).await?;
        Ok(false)
    }

    /// Asks every object in `namespace` to go; true once none is left.
    async fn empty_namespace(&self, namespace: &str) -> ApiResult<bool> {
        let mut empty = true;
        for resource in self.kinds.all().into_iter().filter(|r| r.namespaced) {
            let Some(prefix) = resource.storage_collection(Some(namespace)) else {
                continue;
            };
            for object in self.objects(&prefix).await? {
                empty = false;
                if objects::deleting(&object) {
                    continue;
                }
                let name = objects::name(&object).unwrap_or("").to_owned();
                let target = path::Target {
                    resource,
                    namespace: Some(namespace.to_owned()),
                    name: Some(name.clone()),
                    subresource: None,
                };
                let params = rest::Params::new();
                let warnings = std::sync::Mutex::default();
                let request = rest::Request {
                    server: self,
                    target: &target,
                    params: &params,
                    format: negotiate::Format::Json,
                    user: &UserInfo::server(),
                    manager: "wasmkube-apiserver",
                    warnings: &warnings,
                };
                match request
                    .delete(&name, &json!({"gracePeriodSeconds": 0}))
                    .await
                {
                    Ok(_) => {}
                    Err(e) if e.code == 404 => {}
                    Err(e) => return Err(e),
                }
            }
        }
        Ok(empty)
    }
}

#[cfg(test)]
mod tests {
    use serde_json::Value;
    use wasmkube_store_embedded::{EmbeddedStore, Options};

    use super::*;

    async fn stored(store: &Arc<dyn Store>) -> Value {
        let config_maps = by_kind("", "v1", "ConfigMap").unwrap();
        let key = config_maps.storage_key(Some("kube-system"), "defaults");
        let kv = store.get(&key.unwrap()).await.unwrap().expect("stored");
        serde_json::from_slice(&kv.value).unwrap()
    }

    #[tokio::test]
    async fn defaults_are_created_then_updated_or_recreated_as_reconcile_says() {
        let dir = tempfile::tempdir().unwrap();
        let store = EmbeddedStore::open(dir.path().join("store.db"), Options::default()).unwrap();
        let store: Arc<dyn Store> = Arc::new(store);
        let default = |value: &str| {
            json!({"apiVersion": "v1", "kind": "ConfigMap",
                "metadata": {"name": "defaults", "namespace": "kube-system"},
                "data": {"a": value}})
        };
        // The stored value wins unless reconcile says otherwise.
        let keep = |_: &Value, _: &Value| Reconciled::Keep;
        let update = |wanted: &Value, stored: &Value| {
            let mut changed = stored.clone();
            changed["data"] = wanted["data"].clone();
            Reconciled::Update(changed)
        };
        let recreate = |wanted: &Value, _: &Value| Reconciled::Recreate(wanted.clone());

        ensure_defaults(&store, &[default("1")], keep)
            .await
            .unwrap();
        let first = stored(&store).await;
        assert_eq!(first["data"]["a"], "1");
        let uid = first["metadata"]["uid"].clone();
        assert!(uid.is_string(), "{first}");

        ensure_defaults(&store, &[default("2")], keep)
            .await
            .unwrap();
        assert_eq!(stored(&store).await, first);

        ensure_defaults(&store, &[default("3")], update)
            .await
            .unwrap();
        let updated = stored(&store).await;
        assert_eq!(updated["data"]["a"], "3");
        assert_eq!(updated["metadata"]["uid"], uid);

        ensure_defaults(&store, &[default("4")], recreate)
            .await
            .unwrap();
        let recreated = stored(&store).await;
        assert_eq!(recreated["data"]["a"], "4");
        assert!(recreated["metadata"]["uid"].is_string());
        assert_ne!(recreated["metadata"]["uid"], uid);
    }
}
