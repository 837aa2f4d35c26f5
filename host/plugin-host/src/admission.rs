//! An admission policy: the world `wasmkube:admission/admission-policy` of
//! `wit/admission`.
//!
//! A policy is pre-instantiated once; a call takes an idle instance (one whose
//! earlier calls all ended cleanly) or a fresh one, so a busy API server pays
//! instantiation only when its concurrency grows, and an instance that trapped
//! is never entered again. Calls are async, on the caller's task: a policy
//! runs on a fiber of the thread that asked, bounded in time (epochs) and
//! memory, and a lookup the embedder must wait for (a store read) suspends
//! it rather than a thread. The objects of a request stay in the host as
//! resources (`object.get` hands a policy the one field it reads); lookups of
//! other objects go to a [`Lookup`] the embedder gives, at most
//! [`MAX_LOOKUPS`] per call and [`MAX_LISTED`] objects per list.

use std::sync::{Arc, Mutex};

use futures::future::BoxFuture;
use serde_json::Value;
use wasmtime::Store;
use wasmtime::component::{Component, HasData, Linker, Resource};

use crate::sandbox::{self, State};
use crate::{Limits, PluginError, PluginHost};

mod bindings {
    wasmtime::component::bindgen!({
        path: "../../wit/admission",
        world: "admission-policy",
        imports: { "wasmkube:admission/host.get": async },
        exports: { default: async },
        with: { "wasmkube:admission/types.object": super::Object },
    });
}

use bindings::AdmissionPolicyPre;
use bindings::wasmkube::admission::types as wit;
pub use wit::Operation;

/// The interface an admission policy exports, with its version.
pub const ADMISSION_WIT_PACKAGE: &str = "wasmkube:admission/policy@0.1.0";

/// Lookups one call may make.
pub const MAX_LOOKUPS: u32 = 64;

/// Objects one list hands a policy, at most.
pub const MAX_LISTED: u32 = 1000;

/// Idle instances kept per policy for the next calls, at most: as many as
/// a busy server calls at once...
const IDLE_INSTANCES: usize = 32;

/// ...while they hold no more than this memory together (a Python policy's
/// instance holds tens of MiB, a Rust one's a few hundred KiB).
const IDLE_MEMORY: usize = 128 << 20;

/// Where a policy's lookups go: the API server's caches.
pub trait Lookup: Send + Sync {
    /// The object `name` of `resource` (`api_version` as objects name it) in
    /// `namespace` ("" for a cluster-scoped one), as JSON; waited for when it
    /// must be read from further away than a cache.
    fn get<'a>(
        &'a self,
        api_version: &'a str,
        resource: &'a str,
        namespace: &'a str,
        name: &'a str,
    ) -> BoxFuture<'a, Result<Option<String>, String>>;

    /// The objects of `resource` in `namespace` ("": all) whose labels match
    /// `selector`, at most `limit`, as JSON.
    fn list(
        &self,
        api_version: &str,
        resource: &str,
        namespace: &str,
        selector: &str,
        limit: usize,
    ) -> Result<Vec<String>, String>;
}

/// The type of a request's objects as a policy holds them: handles to the
/// objects the host keeps for the call.
#[derive(Debug)]
pub enum Object {}

/// Which of a policy's calls.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Phase {
    /// `mutate`: may change the object.
    Mutate,
    /// `validate`: may only refuse.
    Validate,
}

impl Phase {
    fn call(self) -> &'static str {
        match self {
            Phase::Mutate => "mutate",
            Phase::Validate => "validate",
        }
    }
}

/// One write, as a policy sees it.
#[derive(Clone, Debug)]
pub struct Request {
    /// Names the request.
    pub uid: String,
    /// Group, version and kind of the object.
    pub kind: (String, String, String),
    /// Group, version and resource written to.
    pub resource: (String, String, String),
    /// The subresource, or "".
    pub sub_resource: String,
    /// The object's name.
    pub name: String,
    /// Its namespace, or "".
    pub namespace: String,
    /// What the write does.
    pub operation: Operation,
    /// Who writes.
    pub user: User,
    /// The object as it will be stored.
    pub object: Option<Arc<Value>>,
    /// The object it replaces or deletes.
    pub old_object: Option<Arc<Value>>,
    /// Whether it is a dry run.
    pub dry_run: bool,
    /// The request's options, as JSON.
    pub options: String,
}

/// Who writes, as a policy sees them.
#[derive(Clone, Debug, Default)]
pub struct User {
    /// Their name.
    pub name: String,
    /// Their uid, if the authenticator knows one.
    pub uid: String,
    /// Their groups.
    pub groups: Vec<String>,
    /// What else the authenticator knows, by key.
    pub extra: Vec<(String, Vec<String>)>,
}

/// A policy's answer.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Verdict {
    /// Whether the write may go on.
    pub allowed: bool,
    /// When refused: the code (403 when 0), reason and message.
    pub status: Option<(u16, String, String)>,
    /// Warnings for the client.
    pub warnings: Vec<String>,
    /// A JSON Patch of the object, from `mutate`.
    pub patch: Option<String>,
}

/// What the host keeps for one instance: its settings, where its lookups go,
/// and the objects of the call in progress.
pub(crate) struct Call {
    settings: Arc<str>,
    lookup: Arc<dyn Lookup>,
    /// The call's objects, by handle.
    objects: Vec<Option<Arc<Value>>>,
    lookups: u32,
}

impl Call {
    fn lend(&mut self, object: Arc<Value>) -> Resource<Object> {
        self.objects.push(Some(object));
        Resource::new_own((self.objects.len() - 1) as u32)
    }

    fn object(&self, handle: &Resource<Object>) -> &Value {
        const NONE: &Value = &Value::Null;
        let held = self.objects.get(handle.rep() as usize);
        held.and_then(Option::as_deref).unwrap_or(NONE)
    }

    fn count_lookup(&mut self) -> Result<(), String> {
        self.lookups += 1;
        if self.lookups > MAX_LOOKUPS {
            return Err(format!("more than {MAX_LOOKUPS} lookups in one call"));
        }
        Ok(())
    }
}

impl wit::HostObject for Call {
    fn json(&mut self, handle: Resource<Object>) -> String {
        self.object(&handle).to_string()
    }

    fn get(&mut self, handle: Resource<Object>, pointer: String) -> Option<String> {
        self.object(&handle).pointer(&pointer).map(Value::to_string)
    }

    fn select(&mut self, handle: Resource<Object>, pattern: String) -> Vec<String> {
        let mut found = Vec::new();
        let segments: Vec<String> = pattern
            .split('/')
            .skip(1)
            .map(|s| s.replace("~1", "/").replace("~0", "~"))
            .collect();
        select(self.object(&handle), &segments, &mut found);
        found
    }

    fn drop(&mut self, handle: Resource<Object>) -> wasmtime::Result<()> {
        if let Some(held) = self.objects.get_mut(handle.rep() as usize) {
            *held = None;
        }
        Ok(())
    }
}

/// Adds to `found` the JSON of each value of `value` that `segments` (`*`:
/// every element or member) reach.
fn select(value: &Value, segments: &[String], found: &mut Vec<String>) {
    let Some((first, rest)) = segments.split_first() else {
        found.push(value.to_string());
        return;
    };
    match (first.as_str(), value) {
        ("*", Value::Array(items)) => items.iter().for_each(|v| select(v, rest, found)),
        ("*", Value::Object(members)) => members.values().for_each(|v| select(v, rest, found)),
        (key, Value::Object(members)) => {
            if let Some(v) = members.get(key) {
                select(v, rest, found);
            }
        }
        (index, Value::Array(items)) => {
            if let Some(v) = index.parse::<usize>().ok().and_then(|i| items.get(i)) {
                select(v, rest, found);
            }
        }
        _ => {}
    }
}

impl wit::Host for Call {}

impl bindings::wasmkube::admission::host::Host for Call {
    fn settings(&mut self) -> String {
        self.settings.to_string()
    }

    async fn get(
        &mut self,
        api_version: String,
        resource: String,
        namespace: String,
        name: String,
    ) -> Result<Option<String>, String> {
        self.count_lookup()?;
        let lookup = self.lookup.clone();
        lookup.get(&api_version, &resource, &namespace, &name).await
    }

    fn list(
        &mut self,
        api_version: String,
        resource: String,
        namespace: String,
        selector: String,
        limit: u32,
    ) -> Result<Vec<String>, String> {
        self.count_lookup()?;
        let limit = limit.min(MAX_LISTED) as usize;
        self.lookup
            .list(&api_version, &resource, &namespace, &selector, limit)
    }
}

struct HostField;

impl HasData for HostField {
    type Data<'a> = &'a mut Call;
}

/// A live instance and its store.
struct Live {
    store: Store<State<Call>>,
    policy: bindings::AdmissionPolicy,
}

/// A loaded admission policy.
pub struct AdmissionPolicy {
    name: String,
    pre: AdmissionPolicyPre<State<Call>>,
    /// The host, whose engine's ticker bounds the calls while it lives.
    host: PluginHost,
    limits: Limits,
    settings: Arc<str>,
    lookup: Arc<dyn Lookup>,
    idle: Mutex<Vec<Live>>,
}

impl std::fmt::Debug for AdmissionPolicy {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AdmissionPolicy")
            .field("name", &self.name)
            .finish_non_exhaustive()
    }
}

impl AdmissionPolicy {
    /// The policy of a compiled `component` (called `name` in errors): checks
    /// the interface version it was built for, and has it check `settings`
    /// (JSON), which refuses the policy if it says no.
    pub async fn new(
        host: &PluginHost,
        name: &str,
        component: &Component,
        settings: &str,
        limits: Limits,
        lookup: Arc<dyn Lookup>,
    ) -> Result<AdmissionPolicy, PluginError> {
        let engine = host.engine();
        sandbox::check_version(engine, component, name, ADMISSION_WIT_PACKAGE)?;
        let load = |message: String| PluginError::Load {
            plugin: name.to_owned(),
            message,
        };
        let mut linker: Linker<State<Call>> = Linker::new(engine);
        wasmtime_wasi::p2::add_to_linker_async(&mut linker).map_err(|e| load(e.to_string()))?;
        bindings::AdmissionPolicy::add_to_linker::<_, HostField>(&mut linker, |state| {
            &mut state.host
        })
        .map_err(|e| load(e.to_string()))?;
        let pre = linker
            .instantiate_pre(component)
            .and_then(AdmissionPolicyPre::new)
            .map_err(|e| load(format!("{e:#}")))?;
        let policy = AdmissionPolicy {
            name: name.to_owned(),
            pre,
            host: host.clone(),
            limits,
            settings: settings.into(),
            lookup,
            idle: Mutex::new(Vec::new()),
        };
        let mut live = policy.start("validate-settings").await?;
        let exports = live.policy.wasmkube_admission_policy();
        let settings = policy.settings.clone();
        let checked = sandbox::bounded_async(
            &mut live.store,
            limits,
            name,
            "validate-settings",
            async |store| exports.call_validate_settings(store, &settings).await,
        )
        .await?;
        if let Err(message) = checked {
            return Err(PluginError::Config {
                plugin: name.to_owned(),
                message,
            });
        }
        policy.idle.lock().expect("idle lock").push(live);
        Ok(policy)
    }

    /// The policy's name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// A fresh instance.
    async fn start(&self, call: &'static str) -> Result<Live, PluginError> {
        let state = Call {
            settings: self.settings.clone(),
            lookup: self.lookup.clone(),
            objects: Vec::new(),
            lookups: 0,
        };
        let mut store = sandbox::store(self.host.engine(), self.limits, state);
        let policy =
            self.pre
                .instantiate_async(&mut store)
                .await
                .map_err(|e| PluginError::Call {
                    plugin: self.name.clone(),
                    call,
                    message: format!("{e:#}"),
                })?;
        Ok(Live { store, policy })
    }

    /// Calls the policy's `mutate` or `validate` with `request`, bounded by
    /// its limits.
    pub async fn call(&self, phase: Phase, request: Request) -> Result<Verdict, PluginError> {
        let idle = self.idle.lock().expect("idle lock").pop();
        let mut live = match idle {
            Some(live) => live,
            None => self.start(phase.call()).await?,
        };
        let data = &mut live.store.data_mut().host;
        data.objects.clear();
        data.lookups = 0;
        let object = request.object.map(|o| data.lend(o));
        let old_object = request.old_object.map(|o| data.lend(o));
        let user = request.user;
        let wit_request = wit::Request {
            uid: request.uid,
            kind: wit::GroupVersionKind {
                group: request.kind.0,
                version: request.kind.1,
                kind: request.kind.2,
            },
            resource: wit::GroupVersionResource {
                group: request.resource.0,
                version: request.resource.1,
                resource: request.resource.2,
            },
            sub_resource: request.sub_resource,
            name: request.name,
            namespace: request.namespace,
            operation: request.operation,
            user_info: wit::UserInfo {
                username: user.name,
                uid: user.uid,
                groups: user.groups,
                extra: user.extra,
            },
            object,
            old_object,
            dry_run: request.dry_run,
            options: request.options,
        };
        let exports = live.policy.wasmkube_admission_policy();
        let answer = sandbox::bounded_async(
            &mut live.store,
            self.limits,
            &self.name,
            phase.call(),
            async |store| match phase {
                Phase::Mutate => exports.call_mutate(store, &wit_request).await,
                Phase::Validate => exports.call_validate(store, &wit_request).await,
            },
        )
        .await?;
        live.store.data_mut().host.objects.clear();
        let mut idle = self.idle.lock().expect("idle lock");
        let held: usize = idle.iter().map(|l| l.store.data().memory()).sum();
        if idle.len() < IDLE_INSTANCES && held + live.store.data().memory() <= IDLE_MEMORY {
            idle.push(live);
        }
        Ok(Verdict {
            allowed: answer.allowed,
            status: answer.status.map(|s| (s.code, s.reason, s.message)),
            warnings: answer.warnings,
            patch: answer.patch,
        })
    }
}
