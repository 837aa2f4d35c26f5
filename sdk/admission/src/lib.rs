//! Write a Wasmkube admission policy in Rust.
//!
//! A policy is a type implementing [`Policy`]: made from its settings (the
//! Plugin's `spec.args`, checked when the API server loads it), it answers
//! `mutate` (a [`Verdict`] with a JSON Patch) and `validate` (allow or refuse,
//! with warnings). It is exported with [`export_policy!`] and built for
//! `wasm32-wasip2` as a `cdylib`. The objects of a request stay in the API
//! server: [`Request::field`] fetches one field, [`Request::object`] the
//! whole object. Other objects come from the server's caches through the
//! [`Cluster`] a call is given, which tests replace with their own.
//!
//! A complete policy, which refuses pods without an `app` label:
//!
//! ```ignore
//! use wasmkube_admission_sdk::{Cluster, Policy, Request, Verdict, export_policy};
//!
//! pub struct NeedsApp;
//!
//! impl Policy for NeedsApp {
//!     fn new(_settings: serde_json::Value) -> Result<Self, String> {
//!         Ok(NeedsApp)
//!     }
//!
//!     fn validate(&self, request: &Request, _cluster: &dyn Cluster) -> Verdict {
//!         match request.field("/metadata/labels/app") {
//!             Some(_) => Verdict::allow(),
//!             None => Verdict::deny("pods need an app label"),
//!         }
//!     }
//! }
//!
//! export_policy!(NeedsApp);
//! ```

use serde::de::DeserializeOwned;
pub use serde_json;
use serde_json::{Value, json};

#[doc(hidden)]
pub mod __private {
    wit_bindgen::generate!({
        path: "../../wit/admission",
        world: "admission-policy",
        pub_export_macro: true,
        export_macro_name: "export_admission_policy",
        default_bindings_module: "wasmkube_admission_sdk::__private",
    });
    pub use self::exports::wasmkube::admission::policy::Guest;
    pub use self::wasmkube::admission::{host, types};
}

use __private::types as wit;

/// What a write does.
pub use __private::types::Operation;

/// A policy: made from its settings, asked about each write it is called for.
pub trait Policy: Sized {
    /// The policy with `settings` (JSON; `{}` when the Plugin has none), or
    /// why they are wrong: the API server then refuses to load it.
    fn new(settings: Value) -> Result<Self, String>;

    /// Changes the object of `request`: a verdict with a patch. Allows it
    /// unchanged unless the policy says otherwise.
    fn mutate(&self, _request: &Request, _cluster: &dyn Cluster) -> Verdict {
        Verdict::allow()
    }

    /// Allows or refuses `request`. Allows it unless the policy says otherwise.
    fn validate(&self, _request: &Request, _cluster: &dyn Cluster) -> Verdict {
        Verdict::allow()
    }
}

/// Other objects of the cluster, as the API server's caches hold them.
pub trait Cluster {
    /// The object `name` of `resource` (`api_version` as objects name it:
    /// `v1`, `apps/v1`; `resource` plural: `namespaces`) in `namespace` (""
    /// for a cluster-scoped one).
    fn get(
        &self,
        api_version: &str,
        resource: &str,
        namespace: &str,
        name: &str,
    ) -> Result<Option<Value>, String>;

    /// The objects of `resource` in `namespace` ("": all) whose labels match
    /// `selector` (`app=web`, "" for all), at most `limit`.
    fn list(
        &self,
        api_version: &str,
        resource: &str,
        namespace: &str,
        selector: &str,
        limit: u32,
    ) -> Result<Vec<Value>, String>;
}

/// An object of a request: a handle to the one the API server keeps, or
/// (in a policy's own tests) the object itself.
enum Held {
    Handle(wit::Object),
    Here(Value),
}

impl Held {
    fn field(&self, pointer: &str) -> Option<Value> {
        match self {
            Held::Handle(handle) => handle
                .get(pointer)
                .and_then(|json| serde_json::from_str(&json).ok()),
            Held::Here(object) => object.pointer(pointer).cloned(),
        }
    }

    fn select(&self, pattern: &str) -> Vec<Value> {
        match self {
            Held::Handle(handle) => handle
                .select(pattern)
                .iter()
                .filter_map(|json| serde_json::from_str(json).ok())
                .collect(),
            Held::Here(object) => {
                let mut found = Vec::new();
                let segments: Vec<String> = pattern
                    .split('/')
                    .skip(1)
                    .map(|s| s.replace("~1", "/").replace("~0", "~"))
                    .collect();
                reach(object, &segments, &mut found);
                found
            }
        }
    }

    fn whole(&self) -> Value {
        match self {
            Held::Handle(handle) => serde_json::from_str(&handle.json()).unwrap_or(Value::Null),
            Held::Here(object) => object.clone(),
        }
    }
}

/// Adds to `found` each value of `value` that `segments` reach, `*` being
/// every element or member (as the host selects them).
fn reach(value: &Value, segments: &[String], found: &mut Vec<Value>) {
    let Some((first, rest)) = segments.split_first() else {
        found.push(value.clone());
        return;
    };
    let next: Vec<&Value> = match (first.as_str(), value) {
        ("*", Value::Array(items)) => items.iter().collect(),
        ("*", Value::Object(members)) => members.values().collect(),
        (key, Value::Object(members)) => members.get(key).into_iter().collect(),
        (index, Value::Array(items)) => index
            .parse::<usize>()
            .ok()
            .and_then(|i| items.get(i))
            .into_iter()
            .collect(),
        _ => Vec::new(),
    };
    for value in next {
        reach(value, rest, found);
    }
}

/// One write, as a policy sees it (the fields of Kubernetes'
/// AdmissionRequest).
pub struct Request {
    /// Names the request.
    pub uid: String,
    /// Group, version and kind of the object (`""`, `v1`, `Pod`).
    pub kind: (String, String, String),
    /// Group, version and resource written to (`apps`, `v1`, `deployments`).
    pub resource: (String, String, String),
    /// The subresource written to (`status`), or "".
    pub sub_resource: String,
    /// The object's name ("" while the server is to generate it).
    pub name: String,
    /// Its namespace ("" for a cluster-scoped object).
    pub namespace: String,
    /// What the write does.
    pub operation: Operation,
    /// Who writes: their name.
    pub username: String,
    /// Their groups.
    pub groups: Vec<String>,
    /// Whether it is a dry run: a policy must not act on it elsewhere.
    pub dry_run: bool,
    /// The request's options, as JSON.
    pub options: String,
    object: Option<Held>,
    old_object: Option<Held>,
}

impl Request {
    /// A request for a policy's own tests: `operation` on the object
    /// `object` (and `old` for an update) of `resource` (group, version,
    /// plural) and `kind`, in `namespace`.
    pub fn new(
        operation: Operation,
        resource: (&str, &str, &str),
        kind: &str,
        namespace: &str,
        object: Option<Value>,
        old: Option<Value>,
    ) -> Request {
        let (group, version, plural) = resource;
        let name = object
            .as_ref()
            .or(old.as_ref())
            .and_then(|o| o["metadata"]["name"].as_str())
            .unwrap_or_default()
            .to_owned();
        Request {
            uid: String::new(),
            kind: (group.into(), version.into(), kind.into()),
            resource: (group.into(), version.into(), plural.into()),
            sub_resource: String::new(),
            name,
            namespace: namespace.into(),
            operation,
            username: String::new(),
            groups: Vec::new(),
            dry_run: false,
            options: "{}".into(),
            object: object.map(Held::Here),
            old_object: old.map(Held::Here),
        }
    }

    /// Whether it writes the resource `plural` of `group` itself (not a
    /// subresource of it).
    pub fn is(&self, group: &str, plural: &str) -> bool {
        self.resource.0 == group && self.resource.2 == plural && self.sub_resource.is_empty()
    }

    /// Refuses the request as Kubernetes' admission plugins do: 403
    /// Forbidden, `pods "web" is forbidden: WHY`.
    pub fn forbid(&self, why: impl std::fmt::Display) -> Verdict {
        let (group, _, plural) = &self.resource;
        let resource = if group.is_empty() {
            plural.clone()
        } else {
            format!("{plural}.{group}")
        };
        Verdict::deny(format!("{resource} {:?} is forbidden: {why}", self.name))
    }

    /// The value at `pointer` (`/spec/containers`) in the object written.
    pub fn field(&self, pointer: &str) -> Option<Value> {
        self.object.as_ref()?.field(pointer)
    }

    /// Each value of the object written that `pattern` reaches: a JSON
    /// pointer whose segments may be `*` (every element or member), as
    /// `/spec/containers/*/image`. Only those values cross from the host.
    pub fn select(&self, pattern: &str) -> Vec<Value> {
        self.object
            .as_ref()
            .map_or_else(Vec::new, |held| held.select(pattern))
    }

    /// The value at `pointer` in the object replaced or deleted.
    pub fn old_field(&self, pointer: &str) -> Option<Value> {
        self.old_object.as_ref()?.field(pointer)
    }

    /// The object written, whole.
    pub fn object(&self) -> Option<Value> {
        self.object.as_ref().map(Held::whole)
    }

    /// The object written, as a type of its own (`k8s_openapi`'s `Pod`).
    pub fn decode<T: DeserializeOwned>(&self) -> Option<T> {
        serde_json::from_value(self.object()?).ok()
    }

    /// The object replaced or deleted, whole.
    pub fn old_object(&self) -> Option<Value> {
        self.old_object.as_ref().map(Held::whole)
    }
}

impl From<wit::Request> for Request {
    fn from(r: wit::Request) -> Request {
        Request {
            uid: r.uid,
            kind: (r.kind.group, r.kind.version, r.kind.kind),
            resource: (r.resource.group, r.resource.version, r.resource.resource),
            sub_resource: r.sub_resource,
            name: r.name,
            namespace: r.namespace,
            operation: r.operation,
            username: r.user_info.username,
            groups: r.user_info.groups,
            dry_run: r.dry_run,
            options: r.options,
            object: r.object.map(Held::Handle),
            old_object: r.old_object.map(Held::Handle),
        }
    }
}

/// A refusal, as a metav1 Status says it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Status {
    /// The HTTP code.
    pub code: u16,
    /// `Forbidden`, `Invalid`, …
    pub reason: String,
    /// What a person reads.
    pub message: String,
}

/// A policy's answer: allowed or refused, with warnings and (from `mutate`)
/// the operations of a JSON Patch.
#[derive(Clone, Debug, PartialEq)]
pub struct Verdict {
    /// Whether the write may go on.
    pub allowed: bool,
    /// Why not.
    pub status: Option<Status>,
    /// Warnings for the client.
    pub warnings: Vec<String>,
    /// JSON Patch operations on the object.
    pub patch: Vec<Value>,
}

impl Verdict {
    /// The write may go on.
    pub fn allow() -> Verdict {
        Verdict {
            allowed: true,
            status: None,
            warnings: Vec::new(),
            patch: Vec::new(),
        }
    }

    /// The write is refused (403 Forbidden), saying `message`.
    pub fn deny(message: impl Into<String>) -> Verdict {
        Verdict::refuse(403, "Forbidden", message)
    }

    /// The write is refused with `code` and `reason` (`422`, `Invalid`).
    pub fn refuse(code: u16, reason: &str, message: impl Into<String>) -> Verdict {
        Verdict {
            allowed: false,
            status: Some(Status {
                code,
                reason: reason.into(),
                message: message.into(),
            }),
            ..Verdict::allow()
        }
    }

    /// The same verdict, with a warning for the client.
    pub fn warn(mut self, warning: impl Into<String>) -> Verdict {
        self.warnings.push(warning.into());
        self
    }

    /// The same verdict, with the JSON Patch operation `op` (`add`,
    /// `replace`, `remove`) at `path` (with `value`, but for `remove`).
    pub fn patch(mut self, op: &str, path: &str, value: Option<Value>) -> Verdict {
        let mut operation = json!({"op": op, "path": path});
        if let Some(value) = value {
            operation["value"] = value;
        }
        self.patch.push(operation);
        self
    }
}

impl From<Verdict> for wit::Verdict {
    fn from(v: Verdict) -> wit::Verdict {
        wit::Verdict {
            allowed: v.allowed,
            status: v.status.map(|s| wit::Status {
                code: s.code,
                reason: s.reason,
                message: s.message,
            }),
            warnings: v.warnings,
            patch: (!v.patch.is_empty()).then(|| Value::Array(v.patch).to_string()),
        }
    }
}

/// The API server's caches, through the host.
#[doc(hidden)]
#[derive(Debug)]
pub struct Host;

impl Cluster for Host {
    fn get(
        &self,
        api_version: &str,
        resource: &str,
        namespace: &str,
        name: &str,
    ) -> Result<Option<Value>, String> {
        let found = __private::host::get(api_version, resource, namespace, name)?;
        found
            .map(|json| serde_json::from_str(&json).map_err(|e| e.to_string()))
            .transpose()
    }

    fn list(
        &self,
        api_version: &str,
        resource: &str,
        namespace: &str,
        selector: &str,
        limit: u32,
    ) -> Result<Vec<Value>, String> {
        let found = __private::host::list(api_version, resource, namespace, selector, limit)?;
        found
            .iter()
            .map(|json| serde_json::from_str(json).map_err(|e| e.to_string()))
            .collect()
    }
}

/// The policy `P` made from the host's settings, once per instance.
#[doc(hidden)]
pub fn __policy<P: Policy>(made: &std::cell::OnceCell<Result<P, String>>) -> Result<&P, Verdict> {
    let made = made.get_or_init(|| {
        let settings = serde_json::from_str(&__private::host::settings())
            .map_err(|e| format!("settings: {e}"))?;
        P::new(settings)
    });
    made.as_ref()
        .map_err(|e| Verdict::refuse(500, "InternalError", e.clone()))
}

/// Exports a [`Policy`] type as the component's `wasmkube:admission/policy`:
/// `export_policy!(MyPolicy)` (when built for Wasm; a native build, for the
/// policy's own tests, exports nothing).
#[macro_export]
macro_rules! export_policy {
    ($policy:ty) => {
        #[cfg(target_arch = "wasm32")]
        const _: () = {
            use $crate::__private::types as wit;

            struct __WasmkubePolicy;

            thread_local! {
                static __POLICY: ::std::cell::OnceCell<Result<$policy, String>> =
                    const { ::std::cell::OnceCell::new() };
            }

            fn __answer(
                request: wit::Request,
                call: fn(&$policy, &$crate::Request, &dyn $crate::Cluster) -> $crate::Verdict,
            ) -> wit::Verdict {
                let request = $crate::Request::from(request);
                __POLICY.with(|made| match $crate::__policy::<$policy>(made) {
                    Ok(policy) => call(policy, &request, &$crate::Host).into(),
                    Err(refused) => refused.into(),
                })
            }

            impl $crate::__private::Guest for __WasmkubePolicy {
                fn validate_settings(settings: String) -> Result<(), String> {
                    let settings = $crate::serde_json::from_str(&settings)
                        .map_err(|e| format!("settings: {e}"))?;
                    <$policy as $crate::Policy>::new(settings).map(|_| ())
                }
                fn mutate(request: wit::Request) -> wit::Verdict {
                    __answer(request, <$policy as $crate::Policy>::mutate)
                }
                fn validate(request: wit::Request) -> wit::Verdict {
                    __answer(request, <$policy as $crate::Policy>::validate)
                }
            }

            $crate::__private::export_admission_policy!(__WasmkubePolicy with_types_in $crate::__private);
        };
    };
}
