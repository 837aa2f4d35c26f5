//! `Plugin` (`wasmkube.io/v1alpha1`): a Wasm plugin the cluster loads,
//! declared as an API object. Cluster-scoped and served like a built-in kind.
//!
//! ```yaml
//! apiVersion: wasmkube.io/v1alpha1
//! kind: Plugin
//! metadata: {name: prefer-edge}
//! spec:
//!   extension: Scheduler
//!   source: {image: registry.example:5000/plugins/prefer-edge:1}
//!   args: {tier: edge}
//!   scheduler: {extensionPoints: [Score], weight: 5}
//! ```
//!
//! The component that loads it reports in `status`: whether it is loaded
//! (the `Loaded` condition, with why not), the digest it runs, and how many of
//! its calls failed.

use k8s_openapi::api::admissionregistration::v1::RuleWithOperations;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, LabelSelector, ObjectMeta, Time};
use k8s_openapi::{ClusterResourceScope, Metadata, Resource};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// A Wasm plugin the cluster loads.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
#[schemars(rename = "io.wasmkube.v1alpha1.Plugin")]
pub struct Plugin {
    /// `wasmkube.io/v1alpha1`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub api_version: Option<String>,
    /// `Plugin`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub kind: Option<String>,
    /// Standard object's metadata.
    #[serde(default)]
    pub metadata: ObjectMeta,
    /// What the plugin is and where it comes from.
    pub spec: PluginSpec,
    /// What the component that loads it observed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub status: Option<PluginStatus>,
}

/// What a plugin is and where it comes from.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct PluginSpec {
    /// The kind of extension: which component loads it and the WIT world it
    /// implements.
    pub extension: Extension,
    /// Where the component comes from.
    pub source: PluginSource,
    /// Given to the plugin's `configure` (as JSON).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(schema_with = "any_object")]
    pub args: Option<serde_json::Value>,
    /// For scheduler plugins: where in the scheduling cycle it runs.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub scheduler: Option<SchedulerPlacement>,
    /// For admission plugins: which writes it is called for, and what a
    /// failed call means.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub admission: Option<AdmissionPlacement>,
}

/// The kinds of extension.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub enum Extension {
    /// A scheduler plugin (`wasmkube:scheduler`).
    #[default]
    Scheduler,
    /// An admission plugin.
    Admission,
    /// A network (CNI) plugin.
    Network,
    /// A storage (CSI) plugin.
    Storage,
}

/// Where a plugin's component comes from: exactly one of `image` and `path`.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct PluginSource {
    /// An OCI reference (`REGISTRY/NAME:TAG` or `…@sha256:…`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub image: Option<String>,
    /// A `.wasm` file on the host of the component that loads it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub path: Option<String>,
}

/// A scheduler plugin's place in the scheduling cycle.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct SchedulerPlacement {
    /// The profiles (`schedulerName`s) it joins; empty: every profile.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub profiles: Vec<String>,
    /// Where it runs: `Filter` (after the profile's filters), `Score`, or both.
    /// Pre-filter, reserve and permit are called on every plugin.
    #[serde(default = "filter_and_score")]
    pub extension_points: Vec<ExtensionPoint>,
    /// Its weight at score (default 1).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub weight: Option<i64>,
}

fn filter_and_score() -> Vec<ExtensionPoint> {
    vec![ExtensionPoint::Filter, ExtensionPoint::Score]
}

/// An extension point a scheduler plugin can be placed at.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub enum ExtensionPoint {
    /// Decides which nodes the pod fits.
    Filter,
    /// Ranks the nodes that fit.
    Score,
}

/// Which writes an admission plugin is called for, as a webhook
/// configuration says it.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct AdmissionPlacement {
    /// The writes it is called for: operations, API groups, versions,
    /// resources (`pods`, `pods/status`, `*`, `*/*`) and scope, as in a
    /// webhook's rules. A write any rule matches is sent to it.
    pub rules: Vec<RuleWithOperations>,
    /// Only writes in namespaces whose labels match (of a namespace itself:
    /// its own labels); none: every namespace.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub namespace_selector: Option<LabelSelector>,
    /// Only objects whose labels (new or old) match; none: every object.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub object_selector: Option<LabelSelector>,
    /// What a call that fails (traps, runs out of time or memory) means:
    /// `Fail` (the default) refuses the write, `Ignore` lets it go on.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub failure_policy: Option<FailurePolicy>,
    /// Whether its `mutate` is called, before the object is validated; its
    /// `validate` is always called, after.
    #[serde(default)]
    pub mutating: bool,
    /// The longest one call may run, in milliseconds (default 100, at most
    /// 10,000).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub timeout_milliseconds: Option<u32>,
}

/// What a failed call of an admission plugin means.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub enum FailurePolicy {
    /// The write is refused.
    #[default]
    Fail,
    /// The write goes on.
    Ignore,
}

/// What the component that loads a plugin observed.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct PluginStatus {
    /// The generation of the spec this status is about.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,
    /// `Loaded`: whether the plugin runs, and if not, why.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub conditions: Vec<Condition>,
    /// The digest of the component that runs (`sha256:…`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub digest: Option<String>,
    /// Calls of the loaded plugin that failed (trapped, ran out of time or
    /// memory).
    #[serde(default)]
    pub failures: i64,
    /// The last failure.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_failure: Option<String>,
    /// When it happened.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_failure_time: Option<Time>,
}

/// `args` is any JSON object.
fn any_object(_: &mut schemars::SchemaGenerator) -> schemars::Schema {
    schemars::json_schema!({
        "type": "object",
        "x-kubernetes-preserve-unknown-fields": true,
    })
}

impl Resource for Plugin {
    const API_VERSION: &'static str = "wasmkube.io/v1alpha1";
    const GROUP: &'static str = "wasmkube.io";
    const KIND: &'static str = "Plugin";
    const VERSION: &'static str = "v1alpha1";
    const URL_PATH_SEGMENT: &'static str = "plugins";
    type Scope = ClusterResourceScope;
}

impl Metadata for Plugin {
    type Ty = ObjectMeta;

    fn metadata(&self) -> &ObjectMeta {
        &self.metadata
    }

    fn metadata_mut(&mut self) -> &mut ObjectMeta {
        &mut self.metadata
    }
}

impl Plugin {
    /// The object's name.
    pub fn name(&self) -> &str {
        self.metadata.name.as_deref().unwrap_or_default()
    }
}
