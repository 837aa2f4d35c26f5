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
//! - Node lifecycle: nodes not heard from turn Unknown and tainted, and
//!   their pods are evicted after their toleration.
//! - Endpoints and EndpointSlices: the pods behind each Service, ready or
//!   not, with its ports resolved on them.
//! - ServiceAccounts: a `default` one in every namespace.
//! - The garbage collector: background, foreground and orphan propagation
//!   over owner references.

pub mod runtime;

mod daemonsets;
mod deployments;
mod endpoints;
mod gc;
mod jobs;
mod lifecycle;
pub mod placement;
mod replicas;
mod service_accounts;
mod statefulsets;

use k8s_openapi::api::apps::v1::{DaemonSet, Deployment, ReplicaSet, StatefulSet};
use k8s_openapi::api::batch::v1::Job;
use k8s_openapi::api::core::v1::{Node, ReplicationController};
use std::time::Duration;

use k8s_openapi::api::coordination::v1::Lease;
use kube::Client;
use tokio::sync::watch;

/// How the controllers behave.
#[derive(Clone, Debug)]
pub struct Settings {
    /// How long a node may go unheard before it is marked Unknown.
    pub node_monitor_grace: Duration,
}

impl Default for Settings {
    /// Kubernetes' defaults.
    fn default() -> Settings {
        Settings {
            node_monitor_grace: Duration::from_secs(40),
        }
    }
}

/// Runs every controller against the API of `client` until `closed`.
pub async fn run(client: Client, settings: Settings, closed: watch::Receiver<bool>) {
    let mut pods = runtime::Pods::default();
    let replica_sets = replicas::controller::<ReplicaSet>(&client, &mut pods, closed.clone());
    let controllers =
        replicas::controller::<ReplicationController>(&client, &mut pods, closed.clone());
    let accounts = service_accounts::controller(&client, &pods, closed.clone());
    let endpoints = endpoints::controller(&client, &mut pods, closed.clone());
    let jobs = jobs::controller(&client, &mut pods, closed.clone());
    let stateful = statefulsets::controller(&client, &mut pods, closed.clone());
    let mut nodes = runtime::Informer::<Node>::default();
    let daemons = daemonsets::controller(&client, &mut pods, &mut nodes, closed.clone());
    let leases = runtime::Informer::<Lease>::default();
    let nodes_lifecycle = lifecycle::controller(
        &client,
        &nodes,
        &leases,
        &pods,
        settings.node_monitor_grace,
        closed.clone(),
    );
    let mut sets = runtime::Informer::<ReplicaSet>::default();
    let deployments = deployments::controller(&client, &pods, &mut sets, closed.clone());
    let mut deployment_objects = runtime::Informer::<Deployment>::default();
    let mut controller_objects = runtime::Informer::<ReplicationController>::default();
    let mut job_objects = runtime::Informer::<Job>::default();
    let mut daemon_objects = runtime::Informer::<DaemonSet>::default();
    let mut stateful_objects = runtime::Informer::<StatefulSet>::default();
    let mut kinds = gc::Kinds::new(&client);
    kinds
        .know(&mut pods, true)
        .know(&mut sets, true)
        .know(&mut job_objects, true)
        .know(&mut deployment_objects, false)
        .know(&mut controller_objects, false)
        .know(&mut daemon_objects, false)
        .know(&mut stateful_objects, false);
    let collector = gc::collector(kinds, closed.clone());
    let mut stopped = closed;
    let informing = futures::future::join3(
        nodes.run(client.clone()),
        futures::future::join5(
            pods.run(client.clone()),
            sets.run(client.clone()),
            deployment_objects.run(client.clone()),
            controller_objects.run(client.clone()),
            job_objects.run(client.clone()),
        ),
        futures::future::join3(
            daemon_objects.run(client.clone()),
            stateful_objects.run(client.clone()),
            leases.run(client),
        ),
    );
    let controlling = futures::future::join(
        futures::future::join5(
            replica_sets,
            controllers,
            deployments,
            daemons,
            nodes_lifecycle,
        ),
        futures::future::join5(accounts, endpoints, jobs, collector, stateful),
    );
    tokio::select! {
        _ = informing => {}
        _ = controlling => {}
        _ = stopped.wait_for(|c| *c) => {}
    }
}
