//! Write a Wasmkube scheduler plugin in Rust.
//!
//! A plugin is a type implementing [`Plugin`] (its name and args) and a trait
//! per extension point it takes part in ([`PreFilter`], [`Filter`],
//! [`Score`], [`Reserve`], [`Permit`]), exported with [`export!`] naming
//! those traits, and built for `wasm32-wasip2` as a `cdylib`. The SDK keeps
//! the plugin's snapshot of the nodes (fed by the scheduler with what changed)
//! and runs `filter` and `score` over each batch of nodes inside the guest, so
//! a scheduling cycle crosses into the plugin a handful of times, not once per
//! node. Objects are the Kubernetes types of `k8s-openapi`.
//!
//! A complete plugin, which prefers nodes labelled `tier=edge`:
//!
//! ```ignore
//! use wasmkube_sdk::{NodeInfo, Plugin, Pod, Score, export};
//!
//! #[derive(Default)]
//! pub struct PreferEdge;
//!
//! impl Plugin for PreferEdge {
//!     const NAME: &'static str = "PreferEdge";
//! }
//!
//! impl Score for PreferEdge {
//!     fn score(&mut self, _pod: &Pod, node: &NodeInfo) -> Option<i64> {
//!         Some(if node.label("tier") == Some("edge") { 100 } else { 0 })
//!     }
//! }
//!
//! export!(PreferEdge: Score);
//! ```
//!
//! with `crate-type = ["cdylib"]` in its `Cargo.toml`, then
//! `cargo build --release --target wasm32-wasip2`.

pub use k8s_openapi::api::core::v1::{Container, Node, Pod};
/// Kubernetes' scheduling semantics (taints, node affinity, label selectors,
/// requests and fit), as the default plugins and the controllers use them.
pub use wasmkube_scheduling as scheduling;
pub use wasmkube_scheduling::resources::{Resources, requests};

/// The Kubernetes types plugins read: the core group's, and label selectors.
pub mod k8s {
    pub use k8s_openapi::api::core::v1::*;
    pub use k8s_openapi::apimachinery::pkg::apis::meta::v1::{
        LabelSelector, LabelSelectorRequirement,
    };
}

#[doc(hidden)]
pub mod __private {
    wit_bindgen::generate!({
        path: "../wit/scheduler",
        world: "scheduler-plugin",
        pub_export_macro: true,
        export_macro_name: "export_plugin",
        default_bindings_module: "wasmkube_sdk::__private",
    });
    pub use self::exports::wasmkube::scheduler::plugin::Guest;
    pub use self::wasmkube::scheduler::types;
}

use __private::types::{Code, NodeChange, Rejection, Status as WitStatus};
use wasmkube_scheduling::resources::allocatable;

/// A node as the plugin sees it: the Node object, the pods bound or assumed on
/// it, and what it can give and what those pods request, counted once when
/// the node changes (as kube-scheduler's NodeInfo does).
#[derive(Debug, Default)]
pub struct NodeInfo {
    /// The Node.
    pub node: Node,
    /// Its pods.
    pub pods: Vec<Pod>,
    /// The node's allocatable.
    pub allocatable: Resources,
    /// The sum of its pods' requests.
    pub requested: Resources,
    /// A number no other NodeInfo of this plugin has: a node that changes is
    /// a new NodeInfo, so what a plugin computes from a node can be kept
    /// under its generation.
    pub generation: u64,
}

/// A number no NodeInfo had before.
fn next_generation() -> u64 {
    static GENERATIONS: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(1);
    GENERATIONS.fetch_add(1, std::sync::atomic::Ordering::Relaxed)
}

impl NodeInfo {
    /// A node and its pods, with their totals counted.
    pub fn new(node: Node, pods: Vec<Pod>) -> NodeInfo {
        let mut requested = Resources::default();
        for pod in &pods {
            requested += &requests(pod);
        }
        NodeInfo {
            allocatable: allocatable(&node),
            node,
            pods,
            requested,
            generation: next_generation(),
        }
    }

    /// The same pods on a changed Node.
    pub fn set_node(&mut self, node: Node) {
        self.allocatable = allocatable(&node);
        self.node = node;
        self.generation = next_generation();
    }

    /// A pod now on the node (replacing one with its uid).
    pub fn add_pod(&mut self, pod: Pod) {
        if let Some(uid) = pod.metadata.uid.clone() {
            self.remove_pod(&uid);
        }
        self.requested += &requests(&pod);
        self.pods.push(pod);
        self.generation = next_generation();
    }

    /// The pod with `uid` left the node.
    pub fn remove_pod(&mut self, uid: &str) {
        let Some(at) = self
            .pods
            .iter()
            .position(|p| p.metadata.uid.as_deref() == Some(uid))
        else {
            return;
        };
        self.requested -= &requests(&self.pods.swap_remove(at));
        self.generation = next_generation();
    }

    /// The node's name.
    pub fn name(&self) -> &str {
        self.node.metadata.name.as_deref().unwrap_or_default()
    }

    /// The value of one of the node's labels.
    pub fn label(&self, key: &str) -> Option<&str> {
        self.node
            .metadata
            .labels
            .as_ref()?
            .get(key)
            .map(String::as_str)
    }
}

/// Every node the plugin knows, for a cycle's `pre_filter`.
#[derive(Clone, Copy, Debug)]
pub struct Nodes<'a>(&'a [Option<NodeInfo>]);

impl<'a> Nodes<'a> {
    /// The nodes in `slots` (a native host's, or a test's).
    pub fn new(slots: &'a [Option<NodeInfo>]) -> Nodes<'a> {
        Nodes(slots)
    }

    /// The nodes, in no particular order.
    pub fn iter(&self) -> impl Iterator<Item = &'a NodeInfo> + 'a {
        self.0.iter().flatten()
    }

    /// The nodes with their numbers (dense from 0), in order of number.
    pub fn numbered(&self) -> impl Iterator<Item = (usize, &'a NodeInfo)> + 'a {
        let slots = self.0.iter().enumerate();
        slots.filter_map(|(i, n)| n.as_ref().map(|n| (i, n)))
    }
}

/// The highest score a node gets from one plugin.
pub const MAX_SCORE: i64 = 100;

/// Scales `scores` so that the highest is [`MAX_SCORE`] (and, with `reverse`,
/// the highest becomes 0 and 0 becomes the highest): the framework's
/// default normalization.
pub fn normalize_scores(scores: &mut [i64], reverse: bool) {
    let top = scores.iter().copied().max().unwrap_or(0);
    for s in scores.iter_mut() {
        let scaled = if top > 0 { *s * MAX_SCORE / top } else { 0 };
        *s = if reverse { MAX_SCORE - scaled } else { scaled };
    }
}

/// The outcome of an extension point: a code and a reason a person can read.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Status {
    /// What happened.
    pub code: StatusCode,
    /// Why, when it is not success ("node(s) had untolerated taint {…}");
    /// several reasons go one to a line, and the scheduler counts each.
    pub reason: String,
}

/// The framework's status codes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum StatusCode {
    /// It passes.
    Success,
    /// It does not fit; preemption might help.
    Unschedulable,
    /// It does not fit, and preemption would not help.
    UnschedulableAndUnresolvable,
    /// The plugin failed.
    Error,
    /// Nothing to do here.
    Skip,
}

impl Status {
    /// It passes.
    pub fn success() -> Status {
        Status {
            code: StatusCode::Success,
            reason: String::new(),
        }
    }

    /// Nothing to do here.
    pub fn skip() -> Status {
        Status {
            code: StatusCode::Skip,
            reason: String::new(),
        }
    }

    /// It does not fit, for `reason`.
    pub fn unschedulable(reason: impl Into<String>) -> Status {
        Status {
            code: StatusCode::Unschedulable,
            reason: reason.into(),
        }
    }

    /// It does not fit, and preemption would not help, for `reason`.
    pub fn unresolvable(reason: impl Into<String>) -> Status {
        Status {
            code: StatusCode::UnschedulableAndUnresolvable,
            reason: reason.into(),
        }
    }

    /// The plugin failed, for `reason`: the pod's cycle fails.
    pub fn error(reason: impl Into<String>) -> Status {
        Status {
            code: StatusCode::Error,
            reason: reason.into(),
        }
    }

    /// Whether the node passes (success or skip).
    pub fn passes(&self) -> bool {
        matches!(self.code, StatusCode::Success | StatusCode::Skip)
    }
}

/// A scheduler plugin: its name and its args. The extension points it takes
/// part in are traits of their own ([`PreFilter`], [`Filter`], [`Score`],
/// [`Reserve`], [`Permit`]), named again in [`export!`].
pub trait Plugin: Default + 'static {
    /// The name profiles know it by.
    const NAME: &'static str;

    /// Takes the plugin's args from its profile (`{}` when none).
    fn configure(&mut self, args: serde_json::Value) -> Result<(), String> {
        let _ = args;
        Ok(())
    }
}

/// Pre-filter: a cycle starts for a pod.
pub trait PreFilter: Plugin {
    /// Starts a cycle for `pod`, before any filter; `nodes` are all the nodes,
    /// for plugins that count across them (topology spread). A skip leaves
    /// the plugin's filter out of this cycle (a plugin without a pre-filter
    /// always filters).
    fn pre_filter(&mut self, pod: &Pod, nodes: Nodes<'_>) -> Status;
}

/// Filter: whether a pod fits a node.
pub trait Filter: Plugin {
    /// Whether `pod` fits on `node`.
    fn filter(&mut self, pod: &Pod, node: &NodeInfo) -> Status;
}

/// Score: how well a pod suits each node that passed the filters.
pub trait Score: Plugin {
    /// How well `pod` suits `node` (higher is better); `None` when the plugin
    /// has nothing to say about this pod.
    fn score(&mut self, pod: &Pod, node: &NodeInfo) -> Option<i64>;

    /// Brings the scores into 0..=100; by default scores over 100 are scaled
    /// down so that the highest is 100 (see [`normalize_scores`]).
    fn normalize(&mut self, scores: &mut [i64]) {
        if scores.iter().any(|s| *s > MAX_SCORE) {
            normalize_scores(scores, false);
        }
    }
}

/// Reserve: the pod is about to be bound to a node.
pub trait Reserve: Plugin {
    /// Reserves on `node` what `pod` takes.
    fn reserve(&mut self, pod: &Pod, node: &NodeInfo) -> Status;

    /// The binding failed or was refused: undo `reserve`.
    fn unreserve(&mut self, pod: &Pod, node: &NodeInfo) {
        let _ = (pod, node);
    }
}

/// Permit: whether the pod may be bound now.
pub trait Permit: Plugin {
    /// Whether `pod` may be bound to `node` now.
    fn permit(&mut self, pod: &Pod, node: &NodeInfo) -> Status;
}

/// A call at one node.
type AtNode<P, T> = fn(&mut P, &Pod, &NodeInfo) -> T;

/// The extension points a plugin takes part in: built by [`points!`] from
/// the traits it names. A point it does not take part in passes (or, for
/// scores, says nothing) without running any of its code.
pub struct Points<P> {
    pre_filter: Option<fn(&mut P, &Pod, Nodes<'_>) -> Status>,
    filter: Option<AtNode<P, Status>>,
    score: Option<(AtNode<P, Option<i64>>, fn(&mut P, &mut [i64]))>,
    reserve: Option<(AtNode<P, Status>, AtNode<P, ()>)>,
    permit: Option<AtNode<P, Status>>,
}

impl<P: Plugin> Default for Points<P> {
    fn default() -> Self {
        Points {
            pre_filter: None,
            filter: None,
            score: None,
            reserve: None,
            permit: None,
        }
    }
}

impl<P: Plugin> Points<P> {
    /// With pre-filter.
    pub fn pre_filter(mut self) -> Self
    where
        P: PreFilter,
    {
        self.pre_filter = Some(<P as PreFilter>::pre_filter);
        self
    }

    /// With filter.
    pub fn filter(mut self) -> Self
    where
        P: Filter,
    {
        self.filter = Some(<P as Filter>::filter);
        self
    }

    /// With score (and normalize).
    pub fn score(mut self) -> Self
    where
        P: Score,
    {
        self.score = Some((<P as Score>::score, <P as Score>::normalize));
        self
    }

    /// With reserve (and unreserve).
    pub fn reserve(mut self) -> Self
    where
        P: Reserve,
    {
        self.reserve = Some((<P as Reserve>::reserve, <P as Reserve>::unreserve));
        self
    }

    /// With permit.
    pub fn permit(mut self) -> Self
    where
        P: Permit,
    {
        self.permit = Some(<P as Permit>::permit);
        self
    }
}

/// The [`Points`] of a plugin type and the extension points it implements:
/// `points!(MyPlugin: PreFilter, Filter, Score)`.
#[macro_export]
macro_rules! points {
    ($plugin:ty $(: $($point:ident),* $(,)?)?) => {
        $crate::__points!(<$crate::Points<$plugin> as ::std::default::Default>::default(); $($($point),*)?)
    };
}

#[doc(hidden)]
#[macro_export]
macro_rules! __points {
    ($points:expr;) => { $points };
    ($points:expr; PreFilter $(, $rest:ident)*) => { $crate::__points!($points.pre_filter(); $($rest),*) };
    ($points:expr; Filter $(, $rest:ident)*) => { $crate::__points!($points.filter(); $($rest),*) };
    ($points:expr; Score $(, $rest:ident)*) => { $crate::__points!($points.score(); $($rest),*) };
    ($points:expr; Reserve $(, $rest:ident)*) => { $crate::__points!($points.reserve(); $($rest),*) };
    ($points:expr; Permit $(, $rest:ident)*) => { $crate::__points!($points.permit(); $($rest),*) };
}

fn to_wit(status: Status) -> WitStatus {
    WitStatus {
        code: match status.code {
            StatusCode::Success => Code::Success,
            StatusCode::Unschedulable => Code::Unschedulable,
            StatusCode::UnschedulableAndUnresolvable => Code::UnschedulableAndUnresolvable,
            StatusCode::Error => Code::Error,
            StatusCode::Skip => Code::Skip,
        },
        reason: status.reason,
    }
}

/// What the SDK keeps for a plugin: the plugin, its extension points, the
/// nodes, the cycle's pod.
#[doc(hidden)]
pub struct Host<P> {
    plugin: P,
    points: Points<P>,
    /// The nodes by number: the host numbers them densely from 0, so a vector
    /// indexed by number is the fastest map.
    nodes: Vec<Option<NodeInfo>>,
    pod: Pod,
}

impl<P: Plugin> Host<P> {
    #[doc(hidden)]
    pub fn new(points: Points<P>) -> Host<P> {
        Host {
            plugin: P::default(),
            points,
            nodes: Vec::new(),
            pod: Pod::default(),
        }
    }

    #[doc(hidden)]
    pub fn configure(&mut self, args: &str) -> Result<(), String> {
        let args = serde_json::from_str(args).map_err(|e| format!("args: {e}"))?;
        self.plugin.configure(args)
    }

    #[doc(hidden)]
    pub fn update_nodes(&mut self, changes: Vec<NodeChange>) {
        for change in changes {
            match change {
                NodeChange::Set((id, json)) => {
                    let node: Node = serde_json::from_str(&json).unwrap_or_default();
                    let slot = id as usize;
                    if self.nodes.len() <= slot {
                        self.nodes.resize_with(slot + 1, || None);
                    }
                    match &mut self.nodes[slot] {
                        Some(known) => known.set_node(node),
                        empty => *empty = Some(NodeInfo::new(node, Vec::new())),
                    }
                }
                NodeChange::Removed(id) => {
                    if let Some(slot) = self.nodes.get_mut(id as usize) {
                        *slot = None;
                    }
                }
                NodeChange::PodAdded((id, uid, json)) => {
                    if let Some(Some(node)) = self.nodes.get_mut(id as usize) {
                        let mut pod: Pod = serde_json::from_str(&json).unwrap_or_default();
                        pod.metadata.uid = Some(uid);
                        node.add_pod(pod);
                    }
                }
                NodeChange::PodRemoved((id, uid)) => {
                    if let Some(Some(node)) = self.nodes.get_mut(id as usize) {
                        node.remove_pod(&uid);
                    }
                }
            }
        }
    }

    #[doc(hidden)]
    pub fn pre_filter(&mut self, pod: &str) -> WitStatus {
        match serde_json::from_str(pod) {
            Ok(pod) => self.pod = pod,
            Err(e) => {
                return to_wit(Status {
                    code: StatusCode::Error,
                    reason: format!("the pod: {e}"),
                });
            }
        }
        // A plugin without a pre-filter has nothing to say here: its filter,
        // if it has one, runs.
        let status = match self.points.pre_filter {
            Some(pre_filter) => pre_filter(&mut self.plugin, &self.pod, Nodes(&self.nodes)),
            None => Status::success(),
        };
        to_wit(status)
    }

    #[doc(hidden)]
    pub fn filter(&mut self, ids: Vec<u32>) -> Vec<Rejection> {
        let Some(filter) = self.points.filter else {
            return Vec::new();
        };
        let mut rejected = Vec::new();
        for id in ids {
            let status = match self.nodes.get(id as usize).and_then(Option::as_ref) {
                Some(node) => filter(&mut self.plugin, &self.pod, node),
                None => Status::unresolvable("node not known to the plugin"),
            };
            if !status.passes() {
                rejected.push(Rejection {
                    node: id,
                    status: to_wit(status),
                });
            }
        }
        rejected
    }

    #[doc(hidden)]
    pub fn score(&mut self, ids: Vec<u32>) -> Result<Vec<i64>, WitStatus> {
        let Some((score, _)) = self.points.score else {
            return Err(to_wit(Status::skip()));
        };
        let mut scores = Vec::with_capacity(ids.len());
        for id in ids {
            let Some(node) = self.nodes.get(id as usize).and_then(Option::as_ref) else {
                scores.push(0);
                continue;
            };
            match score(&mut self.plugin, &self.pod, node) {
                Some(score) => scores.push(score),
                None => return Err(to_wit(Status::skip())),
            }
        }
        Ok(scores)
    }

    #[doc(hidden)]
    pub fn normalize(&mut self, mut scores: Vec<i64>) -> Vec<i64> {
        if let Some((_, normalize)) = self.points.score {
            normalize(&mut self.plugin, &mut scores);
        }
        scores
    }

    /// Runs `call` at node `id`; success when the plugin does not take part.
    fn at_node<T>(&mut self, id: u32, call: Option<AtNode<P, T>>) -> Option<T> {
        let call = call?;
        let node = self.nodes.get(id as usize).and_then(Option::as_ref)?;
        Some(call(&mut self.plugin, &self.pod, node))
    }

    #[doc(hidden)]
    pub fn reserve(&mut self, id: u32) -> WitStatus {
        let reserve = self.points.reserve.map(|(reserve, _)| reserve);
        to_wit(self.at_node(id, reserve).unwrap_or_else(Status::success))
    }

    #[doc(hidden)]
    pub fn unreserve(&mut self, id: u32) {
        let unreserve = self.points.reserve.map(|(_, unreserve)| unreserve);
        self.at_node(id, unreserve);
    }

    #[doc(hidden)]
    pub fn permit(&mut self, id: u32) -> WitStatus {
        let permit = self.points.permit;
        to_wit(self.at_node(id, permit).unwrap_or_else(Status::success))
    }
}

/// Exports a [`Plugin`] type, with the extension points it implements, as
/// the component's `wasmkube:scheduler/plugin`: `export!(MyPlugin: Filter,
/// Score)` (when built for Wasm; a native build, for the plugin's own tests,
/// exports nothing).
#[macro_export]
macro_rules! export {
    ($plugin:ty $(: $($point:ident),* $(,)?)?) => {
        #[cfg(target_arch = "wasm32")]
        const _: () = {
            struct __WasmkubePlugin;

            thread_local! {
                static __WASMKUBE_HOST: ::std::cell::RefCell<$crate::Host<$plugin>> =
                    ::std::cell::RefCell::new($crate::Host::new($crate::points!($plugin $(: $($point),*)?)));
            }

            impl $crate::__private::Guest for __WasmkubePlugin {
                fn name() -> String {
                    <$plugin as $crate::Plugin>::NAME.into()
                }
                fn configure(args: String) -> Result<(), String> {
                    __WASMKUBE_HOST.with(|h| h.borrow_mut().configure(&args))
                }
                fn update_nodes(changes: Vec<$crate::__private::types::NodeChange>) {
                    __WASMKUBE_HOST.with(|h| h.borrow_mut().update_nodes(changes))
                }
                fn pre_filter(pod: String) -> $crate::__private::types::Status {
                    __WASMKUBE_HOST.with(|h| h.borrow_mut().pre_filter(&pod))
                }
                fn filter(nodes: Vec<u32>) -> Vec<$crate::__private::types::Rejection> {
                    __WASMKUBE_HOST.with(|h| h.borrow_mut().filter(nodes))
                }
                fn post_filter(_: Vec<$crate::__private::types::Rejection>) -> Option<u32> {
                    None
                }
                fn pre_score(_: Vec<u32>) -> $crate::__private::types::Status {
                    $crate::__private::types::Status {
                        code: $crate::__private::types::Code::Success,
                        reason: String::new(),
                    }
                }
                fn score(nodes: Vec<u32>) -> Result<Vec<i64>, $crate::__private::types::Status> {
                    __WASMKUBE_HOST.with(|h| h.borrow_mut().score(nodes))
                }
                fn normalize_score(scores: Vec<i64>) -> Vec<i64> {
                    __WASMKUBE_HOST.with(|h| h.borrow_mut().normalize(scores))
                }
                fn reserve(node: u32) -> $crate::__private::types::Status {
                    __WASMKUBE_HOST.with(|h| h.borrow_mut().reserve(node))
                }
                fn unreserve(node: u32) {
                    __WASMKUBE_HOST.with(|h| h.borrow_mut().unreserve(node))
                }
                fn permit(node: u32) -> $crate::__private::types::Status {
                    __WASMKUBE_HOST.with(|h| h.borrow_mut().permit(node))
                }
            }

            $crate::__private::export_plugin!(__WasmkubePlugin with_types_in $crate::__private);
        };
    };
}
