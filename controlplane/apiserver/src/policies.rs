//! Admission policies in Wasm (`wasmkube:admission`, `wit/admission`): the
//! built-in ones and those that Plugin objects of extension `Admission`
//! declare, each called for the writes its rules match, as Kubernetes calls
//! its admission webhooks: `mutate` before the kind's validation (its JSON
//! Patch applied at once, so the next policy and the validation see it),
//! `validate` after every mutation.
//!
//! - A policy's lookups are served by the watch cache, and by the store when
//!   the cache has not seen the object yet (as Kubernetes' NamespaceLifecycle
//!   looks up live what its informer lacks): at most 64 a call, lists of at
//!   most 1,000 objects and [`MAX_LISTED_BYTES`].
//! - A call that fails (a trap, its time or memory exceeded) refuses the write
//!   when the policy's failure policy is `Fail` (the default) and lets it go on
//!   with a warning when it is `Ignore`; either way the Plugin's status counts
//!   it, and an Event on the Plugin says what happened.
//! - A Plugin is loaded when it is written: from a file under the plugin
//!   directory, its settings checked by the policy itself. Its `Loaded`
//!   condition says whether it runs, and why not.

use std::collections::{BTreeMap, HashMap};
use std::path::PathBuf;
use std::sync::{Arc, RwLock};
use std::time::Duration;

use futures::FutureExt;
use futures::future::BoxFuture;
use serde_json::{Value, json};
use sha2::{Digest as _, Sha256};
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;
use wasmkube_plugin_host::{
    AdmissionPolicy, Component, Limits, Lookup, Operation as WitOperation, Phase, PluginHost,
    Request as PolicyRequest, User, Verdict, read_declared,
};
use wasmkube_store::{EventType, Store};
use wasmkube_types::k8s_openapi::api::admissionregistration::v1::RuleWithOperations;
use wasmkube_types::plugin::{AdmissionPlacement, Extension, FailurePolicy, Plugin};
use wasmkube_types::registry::{ResourceType, by_kind, by_resource};
use wasmkube_types::selector::labels::Selector;

use crate::admission::{AdmissionRequest, MutatingAdmission, Operation, ValidatingAdmission};
use crate::cache::WatchCache;
use crate::crd::Kinds;
use crate::error::{ApiError, ApiResult};
use crate::objects::labels;
use crate::rest::{decode_stored, encode};

/// The most bytes one list hands a policy.
pub const MAX_LISTED_BYTES: usize = 16 << 20;

/// How long an Event about a policy is kept, as Kubernetes keeps events.
const EVENT_TTL: Duration = Duration::from_secs(3600);

/// What the API server runs admission policies with.
pub struct PolicyHost {
    /// Loads and runs the policies.
    pub plugins: PluginHost,
    /// Where the files Plugin objects name must be.
    pub plugin_dir: PathBuf,
    /// The policies every write passes, in order, before those of Plugins.
    pub builtin: Vec<BuiltinPolicy>,
}

impl std::fmt::Debug for PolicyHost {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PolicyHost")
            .field("plugin_dir", &self.plugin_dir)
            .field("builtin", &self.builtin.len())
            .finish_non_exhaustive()
    }
}

/// A policy built into the server.
pub struct BuiltinPolicy {
    /// Its name (`PodSecurity`).
    pub name: String,
    /// Its component.
    pub component: Component,
    /// The writes it is called for.
    pub placement: AdmissionPlacement,
    /// Its settings.
    pub settings: Value,
}

impl std::fmt::Debug for BuiltinPolicy {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("BuiltinPolicy")
            .field("name", &self.name)
            .finish_non_exhaustive()
    }
}

/// A policy in force.
struct Active {
    name: String,
    /// Whether a Plugin object declared it (whose status counts its failures).
    declared: bool,
    policy: Arc<AdmissionPolicy>,
    rules: Vec<RuleWithOperations>,
    namespaces: Option<Selector>,
    objects: Option<Selector>,
    ignore_failures: bool,
    mutating: bool,
}

/// A failed call, for the Plugin's status and an Event.
struct Failure {
    plugin: String,
    message: String,
}

/// The policies in force, in the order they are called.
pub(crate) struct Policies {
    active: RwLock<Arc<Vec<Arc<Active>>>>,
    cache: Arc<WatchCache>,
    failures: mpsc::UnboundedSender<Failure>,
}

impl std::fmt::Debug for Policies {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let active = self.active.read().expect("policies lock");
        let names: Vec<&str> = active.iter().map(|a| a.name.as_str()).collect();
        f.debug_struct("Policies").field("active", &names).finish()
    }
}

/// The lookups of policies: the watch cache, and the store for what it lacks.
struct Lookups {
    cache: Arc<WatchCache>,
    store: Arc<dyn Store>,
    kinds: Arc<Kinds>,
}

impl Lookups {
    /// The kind `resource` (plural) of `api_version`.
    fn kind(&self, api_version: &str, resource: &str) -> Result<&'static ResourceType, String> {
        let (group, version) = api_version.split_once('/').unwrap_or(("", api_version));
        by_resource(group, version, resource)
            .or_else(|| {
                self.kinds
                    .all()
                    .into_iter()
                    .find(|r| r.group == group && r.version == version && r.plural == resource)
            })
            .ok_or_else(|| format!("the server does not serve {resource} in {api_version}"))
    }
}

fn in_namespace(namespace: &str) -> Option<&str> {
    (!namespace.is_empty()).then_some(namespace)
}

impl Lookup for Lookups {
    fn get<'a>(
        &'a self,
        api_version: &'a str,
        resource: &'a str,
        namespace: &'a str,
        name: &'a str,
    ) -> BoxFuture<'a, Result<Option<String>, String>> {
        async move {
            let kind = self.kind(api_version, resource)?;
            let key = kind
                .storage_key(in_namespace(namespace), name)
                .ok_or_else(|| format!("{resource} are not stored"))?;
            if let Some(json) = self.cache.get_now(&key) {
                return Ok(Some(String::from_utf8_lossy(&json).into_owned()));
            }
            match self.store.get(&key).await.map_err(|e| e.to_string())? {
                Some(kv) => {
                    let object = decode_stored(&kv).map_err(|e| e.message)?;
                    Ok(Some(object.to_string()))
                }
                None => Ok(None),
            }
        }
        .boxed()
    }

    fn list(
        &self,
        api_version: &str,
        resource: &str,
        namespace: &str,
        selector: &str,
        limit: usize,
    ) -> Result<Vec<String>, String> {
        let kind = self.kind(api_version, resource)?;
        let prefix = kind
            .storage_collection(in_namespace(namespace))
            .ok_or_else(|| format!("{resource} are not stored"))?;
        let labels = Selector::parse(selector).map_err(|e| e.to_string())?;
        let found = self
            .cache
            .list_now(&prefix, &labels, limit, MAX_LISTED_BYTES)?;
        Ok(found
            .iter()
            .map(|json| String::from_utf8_lossy(json).into_owned())
            .collect())
    }
}

/// A policy of `component` with `placement` and `settings`.
async fn activate(
    host: &PluginHost,
    name: &str,
    declared: bool,
    component: &Component,
    placement: &AdmissionPlacement,
    settings: &Value,
    lookup: Arc<dyn Lookup>,
) -> Result<Active, String> {
    let selector = |s: &Option<_>, field: &str| {
        s.as_ref()
            .map(Selector::from_label_selector)
            .transpose()
            .map_err(|e| format!("{field}: {e}"))
    };
    let limits = Limits {
        call_time: Duration::from_millis(placement.timeout_milliseconds.unwrap_or(100).into()),
        ..Limits::default()
    };
    let policy = AdmissionPolicy::new(host, name, component, &settings.to_string(), limits, lookup)
        .await
        .map_err(|e| e.to_string())?;
    Ok(Active {
        name: name.to_owned(),
        declared,
        policy: Arc::new(policy),
        rules: placement.rules.clone(),
        namespaces: selector(&placement.namespace_selector, "namespaceSelector")?,
        objects: selector(&placement.object_selector, "objectSelector")?,
        ignore_failures: placement.failure_policy == Some(FailurePolicy::Ignore),
        mutating: placement.mutating,
    })
}

impl Policies {
    /// The built-in policies of `host` in force, then those Plugin objects
    /// declare as they come and go, until `closing`.
    pub(crate) async fn start(
        host: PolicyHost,
        cache: Arc<WatchCache>,
        store: Arc<dyn Store>,
        kinds: Arc<Kinds>,
        closing: CancellationToken,
    ) -> ApiResult<Arc<Policies>> {
        let lookup: Arc<dyn Lookup> = Arc::new(Lookups {
            cache: cache.clone(),
            store: store.clone(),
            kinds,
        });
        let mut builtin = Vec::new();
        for policy in host.builtin {
            let active = activate(
                &host.plugins,
                &policy.name,
                false,
                &policy.component,
                &policy.placement,
                &policy.settings,
                lookup.clone(),
            )
            .await
            .map_err(|e| ApiError::internal(format!("a built-in admission policy: {e}")))?;
            builtin.push(Arc::new(active));
        }
        let (failures, reported) = mpsc::unbounded_channel();
        let policies = Arc::new(Policies {
            active: RwLock::new(Arc::new(builtin.clone())),
            cache: cache.clone(),
            failures,
        });
        tokio::spawn(report(store.clone(), reported));
        let plugins = by_kind("wasmkube.io", "v1alpha1", "Plugin")
            .and_then(ResourceType::storage_root)
            .expect("plugins are stored");
        let (changes, declared) = mpsc::unbounded_channel();
        let current = cache
            .follow(plugins, closing, move |change| {
                let object = change.object.object().ok();
                let sent = match change.kind {
                    EventType::Added | EventType::Modified => object,
                    EventType::Deleted => object
                        .and_then(|o| o["metadata"]["name"].as_str().map(str::to_owned))
                        .map(|name| json!({"deleted": name})),
                };
                if let Some(object) = sent {
                    let _ = changes.send(object);
                }
                async {}
            })
            .await?;
        let loader = Loader {
            host: host.plugins,
            plugin_dir: host.plugin_dir,
            lookup,
            store,
            builtin,
            declared: BTreeMap::new(),
            policies: policies.clone(),
        };
        let current: Vec<Value> = current.iter().filter_map(|c| c.object().ok()).collect();
        tokio::spawn(loader.run(current, declared));
        Ok(policies)
    }

    /// The policies in force now.
    fn now(&self) -> Arc<Vec<Arc<Active>>> {
        self.active.read().expect("policies lock").clone()
    }

    /// Whether `active` is called for `request`.
    fn matches(&self, active: &Active, request: &AdmissionRequest<'_>) -> bool {
        if !active
            .rules
            .iter()
            .any(|rule| rule_with_operations_matches(rule, request))
        {
            return false;
        }
        selected(
            &self.cache,
            active.namespaces.as_ref(),
            active.objects.as_ref(),
            request,
        )
    }

    /// Calls `phase` of every policy in force that matches `request`, in order,
    /// with `object` as the object written; their warnings go to `warnings`.
    /// A mutation's patch is applied before the next policy is called: the
    /// policy let its handle go when its call ended, so the object is changed
    /// in place. Returns the object as the policies left it.
    async fn run(
        &self,
        phase: Phase,
        request: &AdmissionRequest<'_>,
        mut object: Option<Arc<Value>>,
        warnings: &mut Vec<String>,
    ) -> ApiResult<Option<Arc<Value>>> {
        // One uid for the request, whichever policy it is shown to.
        let uid = uuid::Uuid::new_v4().to_string();
        for active in self.now().iter() {
            if (phase == Phase::Mutate && !active.mutating) || !self.matches(active, request) {
                continue;
            }
            let asked = policy_request(&uid, request, object.clone());
            let verdict = match active.policy.call(phase, asked).await {
                Ok(verdict) => verdict,
                Err(e) => {
                    let message = e.to_string();
                    let _ = self.failures.send(Failure {
                        plugin: if active.declared {
                            active.name.clone()
                        } else {
                            String::new()
                        },
                        message: message.clone(),
                    });
                    if active.ignore_failures {
                        warnings.push(format!(
                            "admission policy {:?} failed and was ignored: {message}",
                            active.name
                        ));
                        continue;
                    }
                    return Err(ApiError::internal(format!(
                        "Internal error occurred: failed calling admission policy {:?}: {message}",
                        active.name
                    )));
                }
            };
            warnings.extend(verdict.warnings.iter().cloned());
            if !verdict.allowed {
                return Err(refusal(&active.name, verdict));
            }
            if let (Some(patch), Some(object), Phase::Mutate) =
                (&verdict.patch, object.as_mut(), phase)
            {
                apply_patch(&active.name, patch, Arc::make_mut(object))?;
            }
        }
        Ok(object)
    }
}

/// Whether the write of `request` passes a webhook's `namespaces` and
/// `objects` selectors (none: any): the labels of its namespace (of a
/// Namespace, its own; a cluster-scoped object is in no namespace and always
/// passes), and those of its object, new or old.
pub(crate) fn selected(
    cache: &WatchCache,
    namespaces: Option<&Selector>,
    objects: Option<&Selector>,
    request: &AdmissionRequest<'_>,
) -> bool {
    let labelled = [request.object.as_ref(), request.old_object];
    let object_labels = || labelled.iter().flatten().map(|o| labels(o));
    if let Some(selector) = namespaces {
        let own = request.resource.kind == "Namespace" && request.resource.group.is_empty();
        let passes = match (own, request.namespace) {
            (true, _) => object_labels().any(|l| selector.matches(&l)),
            (false, Some(ns)) => selector.matches(&cache.namespace_labels(ns)),
            (false, None) => true,
        };
        if !passes {
            return false;
        }
    }
    objects.is_none_or(|selector| object_labels().any(|l| selector.matches(&l)))
}

/// Whether the rule of `operations`, API groups, versions, `resources`
/// (`pods`, `pods/status`, `*`, `*/*`, `pods/*`) and `scope` names the write
/// of `request`, as a webhook's rule does.
pub(crate) fn rule_matches(
    operations: &Option<Vec<String>>,
    groups: &Option<Vec<String>>,
    versions: &Option<Vec<String>>,
    resources: &Option<Vec<String>>,
    scope: Option<&str>,
    request: &AdmissionRequest<'_>,
) -> bool {
    let any = |list: &Option<Vec<String>>, value: &str| {
        list.iter().flatten().any(|v| v == "*" || v == value)
    };
    let r = request.resource;
    if !any(operations, request.operation.as_str())
        || !any(groups, r.group)
        || !any(versions, r.version)
    {
        return false;
    }
    let scope_fits = match scope {
        Some("Cluster") => !r.namespaced,
        Some("Namespaced") => r.namespaced,
        _ => true,
    };
    let sub = request.subresource.unwrap_or("");
    scope_fits
        && resources.iter().flatten().any(|named| {
            let (resource, subresource) = named.split_once('/').unwrap_or((named, ""));
            (resource == "*" || resource == r.plural) && (subresource == "*" || subresource == sub)
        })
}

/// Whether a webhook-like `rule` names the write of `request`.
pub(crate) fn rule_with_operations_matches(
    rule: &RuleWithOperations,
    request: &AdmissionRequest<'_>,
) -> bool {
    rule_matches(
        &rule.operations,
        &rule.api_groups,
        &rule.api_versions,
        &rule.resources,
        rule.scope.as_deref(),
        request,
    )
}

/// `request` as a policy gets it, named `uid`, with `object` as the object
/// written.
fn policy_request(
    uid: &str,
    request: &AdmissionRequest<'_>,
    object: Option<Arc<Value>>,
) -> PolicyRequest {
    let user = request.user;
    PolicyRequest {
        uid: uid.to_owned(),
        kind: (
            request.group.to_owned(),
            request.version.to_owned(),
            request.kind.to_owned(),
        ),
        resource: (
            request.resource.group.to_owned(),
            request.resource.version.to_owned(),
            request.resource.plural.to_owned(),
        ),
        sub_resource: request.subresource.unwrap_or("").to_owned(),
        name: request.name.to_owned(),
        namespace: request.namespace.unwrap_or("").to_owned(),
        operation: match request.operation {
            Operation::Create => WitOperation::Create,
            Operation::Update => WitOperation::Update,
            Operation::Delete => WitOperation::Delete,
        },
        user: User {
            name: user.name.clone(),
            uid: user.uid.clone(),
            groups: user.groups.clone(),
            extra: user.extra.clone().into_iter().collect(),
        },
        object,
        old_object: request.old_object.map(|o| Arc::new(o.clone())),
        dry_run: request.dry_run,
        options: "{}".to_owned(),
    }
}

/// The Status a refusal of `policy` answers with: its own words, 403
/// Forbidden unless it says otherwise.
fn refusal(policy: &str, verdict: Verdict) -> ApiError {
    let (code, reason, message) = verdict.status.unwrap_or_default();
    let message = if message.is_empty() {
        format!("admission policy {policy:?} denied the request")
    } else {
        message
    };
    let code = if (400..600).contains(&code) {
        code
    } else {
        403
    };
    ApiError::new(code, known_reason(&reason, code), message)
}

/// `reason` as a Status reason the API knows, or the one of `code`.
fn known_reason(reason: &str, code: u16) -> &'static str {
    const REASONS: [(&str, u16); 10] = [
        ("BadRequest", 400),
        ("Unauthorized", 401),
        ("Forbidden", 403),
        ("NotFound", 404),
        ("AlreadyExists", 409),
        ("Conflict", 409),
        ("Invalid", 422),
        ("TooManyRequests", 429),
        ("InternalError", 500),
        ("ServiceUnavailable", 503),
    ];
    REASONS
        .iter()
        .find(|(known, _)| *known == reason)
        .or_else(|| REASONS.iter().find(|(_, c)| *c == code))
        .map_or("Forbidden", |(known, _)| known)
}

/// Applies the JSON Patch `patch` of `policy` to `object`.
fn apply_patch(policy: &str, patch: &str, object: &mut Value) -> ApiResult<()> {
    let invalid = |e: String| {
        ApiError::internal(format!(
            "Internal error occurred: admission policy {policy:?} returned an invalid patch: {e}"
        ))
    };
    let patch: json_patch::Patch =
        serde_json::from_str(patch).map_err(|e| invalid(e.to_string()))?;
    json_patch::patch(object, &patch).map_err(|e| invalid(e.to_string()))
}

impl MutatingAdmission for Policies {
    fn admit<'a>(&'a self, request: &'a mut AdmissionRequest<'_>) -> BoxFuture<'a, ApiResult<()>> {
        async move {
            let mut warnings = Vec::new();
            let object = request.object.take().map(Arc::new);
            let outcome = self
                .run(Phase::Mutate, request, object, &mut warnings)
                .await;
            request.warn(warnings);
            let object = outcome?;
            request.object = object.map(|o| Arc::try_unwrap(o).unwrap_or_else(|o| (*o).clone()));
            Ok(())
        }
        .boxed()
    }
}

impl ValidatingAdmission for Policies {
    fn validate<'a>(&'a self, request: &'a AdmissionRequest<'_>) -> BoxFuture<'a, ApiResult<()>> {
        async move {
            // Most writes (status updates) concern no policy: the object is
            // copied for the policies only when one is called.
            if !self
                .now()
                .iter()
                .any(|active| self.matches(active, request))
            {
                return Ok(());
            }
            let mut warnings = Vec::new();
            let object = request.object.clone().map(Arc::new);
            let outcome = self
                .run(Phase::Validate, request, object, &mut warnings)
                .await;
            request.warn(warnings);
            outcome.map(drop)
        }
        .boxed()
    }
}

/// Loads what Plugin objects declare, and keeps the policies in force.
struct Loader {
    host: PluginHost,
    plugin_dir: PathBuf,
    lookup: Arc<dyn Lookup>,
    store: Arc<dyn Store>,
    builtin: Vec<Arc<Active>>,
    /// The policies of Plugins, by name, with the spec they were loaded from.
    declared: BTreeMap<String, (Value, Arc<Active>)>,
    policies: Arc<Policies>,
}

impl Loader {
    async fn run(mut self, current: Vec<Value>, mut changes: mpsc::UnboundedReceiver<Value>) {
        for plugin in current {
            self.apply(plugin).await;
        }
        while let Some(change) = changes.recv().await {
            match change["deleted"].as_str() {
                Some(name) => {
                    if self.declared.remove(name).is_some() {
                        self.publish();
                    }
                }
                None => self.apply(change).await,
            }
        }
    }

    /// Puts in force the policy `object` declares, if its spec changed.
    async fn apply(&mut self, object: Value) {
        let Ok(plugin) = serde_json::from_value::<Plugin>(object.clone()) else {
            return;
        };
        let name = plugin.name().to_owned();
        let spec = object["spec"].clone();
        if plugin.spec.extension != Extension::Admission {
            if self.declared.remove(&name).is_some() {
                self.publish();
            }
            return;
        }
        if self.declared.get(&name).is_some_and(|(s, _)| *s == spec) {
            return;
        }
        let loaded = self.load(&plugin).await;
        let generation = plugin.metadata.generation.unwrap_or(0);
        let condition = match &loaded {
            Ok((_, digest)) => {
                tracing::info!(plugin = %name, digest, "admission policy loaded");
                json!({"type": "Loaded", "status": "True", "reason": "Loaded",
                    "message": format!("called for {}", describe(&plugin))})
            }
            Err(e) => {
                tracing::warn!(plugin = %name, error = %e, "admission policy not loaded");
                json!({"type": "Loaded", "status": "False", "reason": "LoadFailed", "message": e})
            }
        };
        let digest = loaded.as_ref().ok().map(|(_, d)| d.clone());
        match loaded {
            Ok((active, _)) => {
                self.declared.insert(name.clone(), (spec, Arc::new(active)));
            }
            Err(_) => {
                self.declared.remove(&name);
            }
        }
        self.publish();
        write_status(&self.store, &name, |status| {
            status["observedGeneration"] = json!(generation);
            status["digest"] = json!(digest);
            set_condition(status, condition.clone());
        })
        .await;
    }

    /// The policy of `plugin`, and its component's digest.
    async fn load(&self, plugin: &Plugin) -> Result<(Active, String), String> {
        let Some(path) = plugin.spec.source.path.clone() else {
            return Err(
                "the API server loads admission policies from files (spec.source.path) only".into(),
            );
        };
        let placement = plugin.spec.admission.clone().unwrap_or_default();
        let settings = plugin.spec.args.clone().unwrap_or_else(|| json!({}));
        let (host, dir) = (self.host.clone(), self.plugin_dir.clone());
        let name = plugin.name().to_owned();
        let (bytes, component) = tokio::task::spawn_blocking(move || {
            let bytes =
                read_declared(std::path::Path::new(&path), &dir).map_err(|e| e.to_string())?;
            let component = host.compile(&name, &bytes).map_err(|e| e.to_string())?;
            Ok::<_, String>((bytes, component))
        })
        .await
        .map_err(|e| e.to_string())??;
        let active = activate(
            &self.host,
            plugin.name(),
            true,
            &component,
            &placement,
            &settings,
            self.lookup.clone(),
        )
        .await?;
        Ok((active, format!("sha256:{:x}", Sha256::digest(&bytes))))
    }

    /// Puts the built-in policies, then the declared ones (by name), in force.
    fn publish(&self) {
        let active: Vec<Arc<Active>> = self
            .builtin
            .iter()
            .cloned()
            .chain(self.declared.values().map(|(_, a)| a.clone()))
            .collect();
        *self.policies.active.write().expect("policies lock") = Arc::new(active);
    }
}

/// What a Plugin's rules call it for, for a person: `CREATE,UPDATE pods`.
fn describe(plugin: &Plugin) -> String {
    let rules = plugin.spec.admission.iter().flat_map(|a| &a.rules);
    let described: Vec<String> = rules
        .map(|rule| {
            let join = |list: &Option<Vec<String>>| list.clone().unwrap_or_default().join(",");
            format!("{} {}", join(&rule.operations), join(&rule.resources))
        })
        .collect();
    described.join("; ")
}

/// Sets `condition` in `status.conditions`, keeping its transition time
/// unless its status changed.
fn set_condition(status: &mut Value, mut condition: Value) {
    if !status["conditions"].is_array() {
        status["conditions"] = json!([]);
    }
    let conditions = status["conditions"].as_array_mut().expect("an array");
    let kind = condition["type"].clone();
    let now = crate::objects::now();
    match conditions.iter_mut().find(|c| c["type"] == kind) {
        Some(old) if old["status"] == condition["status"] => {
            condition["lastTransitionTime"] = old["lastTransitionTime"].clone();
            *old = condition;
        }
        Some(old) => {
            condition["lastTransitionTime"] = json!(now);
            *old = condition;
        }
        None => {
            condition["lastTransitionTime"] = json!(now);
            conditions.push(condition);
        }
    }
}

/// Changes the status of the Plugin `name` by `change`, written with the
/// revision it was read at (read again after a conflict).
async fn write_status(store: &Arc<dyn Store>, name: &str, change: impl Fn(&mut Value)) {
    let key = by_kind("wasmkube.io", "v1alpha1", "Plugin")
        .and_then(|r| r.storage_key(None, name))
        .expect("plugins are stored");
    for _ in 0..10 {
        let Ok(Some(kv)) = store.get(&key).await else {
            return;
        };
        let Ok(mut plugin) = decode_stored(&kv) else {
            return;
        };
        if !plugin["status"].is_object() {
            plugin["status"] = json!({});
        }
        change(&mut plugin["status"]);
        match store
            .update(&key, encode(&mut plugin), kv.mod_revision, None)
            .await
        {
            Ok(_) => return,
            Err(wasmkube_store::Error::Conflict { .. }) => continue,
            Err(e) => {
                tracing::warn!(plugin = name, error = %e, "writing a Plugin's status");
                return;
            }
        }
    }
}

/// Counts each failed call in its Plugin's status and says it in an Event
/// (a policy built in has no Plugin: its failures are logged).
async fn report(store: Arc<dyn Store>, mut failures: mpsc::UnboundedReceiver<Failure>) {
    // Events of one Plugin are counted, as Kubernetes' recorder counts repeats.
    let mut counts: HashMap<String, (String, u64)> = HashMap::new();
    while let Some(failure) = failures.recv().await {
        tracing::warn!(plugin = %failure.plugin, error = %failure.message, "an admission policy failed");
        if failure.plugin.is_empty() {
            continue;
        }
        let now = crate::objects::now();
        write_status(&store, &failure.plugin, |status| {
            let failures = status["failures"].as_i64().unwrap_or(0);
            status["failures"] = json!(failures + 1);
            status["lastFailure"] = json!(failure.message);
            status["lastFailureTime"] = json!(now);
        })
        .await;
        let (event, count) = counts.entry(failure.plugin.clone()).or_insert_with(|| {
            (
                format!("{}.{}", failure.plugin, uuid::Uuid::new_v4().simple()),
                0,
            )
        });
        *count += 1;
        let Some(key) =
            by_kind("", "v1", "Event").and_then(|r| r.storage_key(Some("default"), event))
        else {
            continue;
        };
        let mut object = json!({
            "apiVersion": "v1", "kind": "Event",
            "metadata": {"name": event, "namespace": "default", "uid": uuid::Uuid::new_v4().to_string(),
                "creationTimestamp": now},
            "involvedObject": {"apiVersion": "wasmkube.io/v1alpha1", "kind": "Plugin", "name": failure.plugin},
            "reason": "PolicyFailed", "type": "Warning", "message": failure.message,
            "source": {"component": "wasmkube-apiserver"},
            "reportingComponent": "wasmkube-apiserver",
            "firstTimestamp": now, "lastTimestamp": now, "count": *count,
        });
        let value = encode(&mut object);
        let written = match store.get(&key).await {
            Ok(Some(kv)) => {
                let mut stored = decode_stored(&kv).unwrap_or(object);
                stored["count"] = json!(*count);
                stored["lastTimestamp"] = json!(now);
                stored["message"] = json!(failure.message);
                store
                    .update(&key, encode(&mut stored), kv.mod_revision, Some(EVENT_TTL))
                    .await
            }
            _ => store.create(&key, value, Some(EVENT_TTL)).await,
        };
        if let Err(e) = written {
            tracing::debug!(plugin = %failure.plugin, error = %e, "an Event was not written");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rules_match_as_webhook_rules_do() {
        let pods = by_kind("", "v1", "Pod").unwrap();
        let user = crate::access::UserInfo::anonymous();
        let request = |operation, subresource| AdmissionRequest {
            group: "",
            version: "v1",
            kind: "Pod",
            resource: pods,
            subresource,
            name: "p",
            namespace: Some("default"),
            operation,
            user: &user,
            object: None,
            old_object: None,
            dry_run: false,
            warnings: Default::default(),
        };
        let rule =
            |resources: &[&str], operations: &[&str], scope: Option<&str>| RuleWithOperations {
                api_groups: Some(vec!["".into()]),
                api_versions: Some(vec!["*".into()]),
                operations: Some(operations.iter().map(|s| s.to_string()).collect()),
                resources: Some(resources.iter().map(|s| s.to_string()).collect()),
                scope: scope.map(str::to_owned),
            };
        let create = request(Operation::Create, None);
        let status = request(Operation::Update, Some("status"));
        assert!(rule_with_operations_matches(
            &rule(&["pods"], &["CREATE"], None),
            &create
        ));
        assert!(!rule_with_operations_matches(
            &rule(&["pods"], &["UPDATE"], None),
            &create
        ));
        assert!(!rule_with_operations_matches(
            &rule(&["pods"], &["*"], None),
            &status
        ));
        assert!(rule_with_operations_matches(
            &rule(&["pods/status"], &["*"], None),
            &status
        ));
        assert!(rule_with_operations_matches(
            &rule(&["*/*"], &["*"], None),
            &status
        ));
        assert!(rule_with_operations_matches(
            &rule(&["pods/*"], &["*"], None),
            &status
        ));
        assert!(!rule_with_operations_matches(
            &rule(&["*"], &["*"], None),
            &status
        ));
        assert!(rule_with_operations_matches(
            &rule(&["*"], &["*"], Some("Namespaced")),
            &create
        ));
        assert!(!rule_with_operations_matches(
            &rule(&["*"], &["*"], Some("Cluster")),
            &create
        ));
        assert!(!rule_with_operations_matches(
            &rule(&["services"], &["*"], None),
            &create
        ));
    }

    #[test]
    fn refusals_keep_the_policys_words_and_a_known_reason() {
        let verdict = |code, reason: &str, message: &str| Verdict {
            allowed: false,
            status: Some((code, reason.into(), message.into())),
            ..Verdict::default()
        };
        let e = refusal("p", verdict(0, "", ""));
        assert_eq!((e.code, e.reason), (403, "Forbidden"));
        assert_eq!(e.message, "admission policy \"p\" denied the request");
        let e = refusal("p", verdict(422, "Invalid", "bad"));
        assert_eq!(
            (e.code, e.reason, e.message.as_str()),
            (422, "Invalid", "bad")
        );
        let e = refusal("p", verdict(409, "Made up", "no"));
        assert_eq!((e.code, e.reason), (409, "AlreadyExists"));
    }
}
