//! The controller manager of Wasmkube: controllers that turn declared state
//! into pods and keep it so. Each is a level-triggered reconcile: it reads
//! the current state from caches fed by watches, acts on the difference, and
//! can be stopped at any moment; started again, it lists everything and
//! carries on.
//!
//! - [`runtime`]: shared informers (pods, ReplicaSets), expectations, Events, and
//!   kube-runtime's controller loop (work queue, requeue, back-off).
//! - ReplicaSets and ReplicationControllers (one reconcile for both).
//! - Deployments: a ReplicaSet per template, rolled by their strategy, with
//!   revisions, rollback and the status `kubectl rollout` reads.
//! - DaemonSets: a pod on every node that should run one, rolled node by
//!   node.
//! - StatefulSets: pods with stable names and claims, in order.
//! - Jobs: pods until enough succeed, within parallelism, a backoff limit
//!   and a deadline.
//! - CronJobs: a Job at each time of a schedule, in a time zone, with a
//!   concurrency policy and history limits.
//! - Node lifecycle: nodes not heard from turn Unknown and tainted, and
//!   their pods are evicted after their toleration.
//! - Node IPAM: every node a subnet of the cluster's pod range.
//! - PodDisruptionBudgets: how many pods may be disrupted now.
//! - ResourceQuotas: what each quota's namespace uses of what it limits.
//! - Endpoints and EndpointSlices: the pods behind each Service, ready or
//!   not, with its ports resolved on them.
//! - ServiceAccounts: a `default` one in every namespace, and the ConfigMap
//!   `kube-root-ca.crt` of the cluster's CA.
//! - The garbage collector: background, foreground and orphan propagation
//!   over owner references.
//! - ClusterRole aggregation: roles with an `aggregationRule` hold the rules
//!   of the roles their selectors match.
//! - Certificates: nodes' CertificateSigningRequests approved as their
//!   requesters may have them, and signed with the cluster's CA.

pub mod runtime;

mod aggregation;
mod certificates;
mod cronjobs;
mod daemonsets;
mod deployments;
mod disruption;
mod endpoints;
#[cfg(test)]
mod fixtures;
mod gc;
mod jobs;
mod lifecycle;
mod node_ipam;
mod quota;
pub use certificates::{KUBELET_CLIENT, KUBELET_SERVING, Signing};
pub use node_ipam::PodRanges;
mod replicas;
mod revisions;
mod service_accounts;
mod statefulsets;

use futures::FutureExt;
use k8s_openapi::api::apps::v1::{DaemonSet, Deployment, ReplicaSet, StatefulSet};
use k8s_openapi::api::batch::v1::{CronJob, Job};
use k8s_openapi::api::core::v1::{Endpoints, Node, ReplicationController, Service};
use k8s_openapi::api::discovery::v1::EndpointSlice;
use std::time::Duration;

use k8s_openapi::api::coordination::v1::Lease;
use kube::Client;
use tokio_util::sync::CancellationToken;

/// How the controllers behave.
#[derive(Clone, Debug)]
pub struct Settings {
    /// How long a node may go unheard before it is marked Unknown.
    pub node_monitor_grace: Duration,
    /// The pod range nodes get their subnets from (none: nodes are given
    /// none).
    pub pod_ranges: Option<PodRanges>,
    /// The cluster's signer, which signs approved CertificateSigningRequests
    /// of kubelets (none: they are approved, not signed).
    pub signing: Option<Signing>,
    /// The CA that signed the API server's certificate (PEM), published in
    /// every namespace as the ConfigMap `kube-root-ca.crt` (none: not
    /// published).
    pub root_ca: Option<String>,
}

impl Default for Settings {
    /// Kubernetes' defaults.
    fn default() -> Settings {
        Settings {
            node_monitor_grace: Duration::from_secs(40),
            pod_ranges: Some(PodRanges::default()),
            signing: None,
            root_ca: None,
        }
    }
}

/// Runs every controller against the API of `client` until `closed`.
pub async fn run(client: Client, settings: Settings, closed: CancellationToken) {
    let mut pods = runtime::Pods::default();
    let mut nodes = runtime::Informer::<Node>::default();
    let leases = runtime::Informer::<Lease>::default();
    let mut sets = runtime::Informer::<ReplicaSet>::default();
    let mut jobs = runtime::Informer::<Job>::default();
    let c = &client;
    let mut controllers = vec![
        replicas::controller::<ReplicaSet>(c, &mut pods, closed.clone()).boxed(),
        replicas::controller::<ReplicationController>(c, &mut pods, closed.clone()).boxed(),
        service_accounts::controller(c, &pods, settings.root_ca.clone(), closed.clone()).boxed(),
        endpoints::controller(c, &mut pods, closed.clone()).boxed(),
        jobs::controller(c, &mut pods, closed.clone()).boxed(),
        statefulsets::controller(c, &mut pods, closed.clone()).boxed(),
        daemonsets::controller(c, &mut pods, &mut nodes, closed.clone()).boxed(),
        lifecycle::controller(
            c,
            &nodes,
            &leases,
            &pods,
            settings.node_monitor_grace,
            closed.clone(),
        )
        .boxed(),
        deployments::controller(c, &pods, &mut sets, closed.clone()).boxed(),
        cronjobs::controller(c, &pods, &mut jobs, closed.clone()).boxed(),
        disruption::controller(c, &mut pods, closed.clone()).boxed(),
        quota::controller(c, &mut pods, closed.clone()).boxed(),
        aggregation::controller(c, closed.clone()).boxed(),
        certificates::controller(c, settings.signing.clone(), closed.clone()).boxed(),
    ];
    if let Some(ranges) = settings.pod_ranges {
        controllers.push(node_ipam::controller(c, &pods, ranges, closed.clone()).boxed());
    }
    // The collector knows every kind the controllers make or own.
    let mut deployments = runtime::Informer::<Deployment>::default();
    let mut replication = runtime::Informer::<ReplicationController>::default();
    let mut daemons = runtime::Informer::<DaemonSet>::default();
    let mut stateful = runtime::Informer::<StatefulSet>::default();
    let mut crons = runtime::Informer::<CronJob>::default();
    let mut services = runtime::Informer::<Service>::default();
    let mut endpoints = runtime::Informer::<Endpoints>::default();
    let mut slices = runtime::Informer::<EndpointSlice>::default();
    let mut kinds = gc::Kinds::new(c);
    kinds
        .know(&mut pods, true)
        .know(&mut sets, true)
        .know(&mut jobs, true)
        .know(&mut deployments, false)
        .know(&mut replication, false)
        .know(&mut daemons, false)
        .know(&mut stateful, false)
        .know(&mut crons, false)
        .know(&mut services, false)
        .know(&mut endpoints, true)
        .know(&mut slices, true);
    let collector = gc::collector(kinds, closed.clone());
    let informers = vec![
        pods.run(client.clone()).boxed(),
        nodes.run(client.clone()).boxed(),
        leases.run(client.clone()).boxed(),
        sets.run(client.clone()).boxed(),
        jobs.run(client.clone()).boxed(),
        deployments.run(client.clone()).boxed(),
        replication.run(client.clone()).boxed(),
        daemons.run(client.clone()).boxed(),
        stateful.run(client.clone()).boxed(),
        crons.run(client.clone()).boxed(),
        services.run(client.clone()).boxed(),
        endpoints.run(client.clone()).boxed(),
        slices.run(client.clone()).boxed(),
    ];
    tokio::select! {
        _ = futures::future::join_all(informers) => {}
        _ = futures::future::join_all(controllers) => {}
        _ = collector => {}
        () = closed.cancelled() => {}
    }
}
