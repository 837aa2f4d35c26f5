//! The controller manager of Wasmkube: controllers that turn declared state
//! into pods and keep it so. Each is a level-triggered reconcile: it reads
//! the current state from caches fed by watches, acts on the difference, and
//! can be stopped at any moment; started again, it lists everything and
//! carries on.
//!
//! - [`runtime`]: the shared pod informer, expectations, Events, and
//!   kube-runtime's controller loop (work queue, requeue, back-off).
//! - ReplicaSets and ReplicationControllers (one reconcile for both).
//! - ServiceAccounts: a `default` one in every namespace.

pub mod runtime;

mod replicas;
mod service_accounts;

use k8s_openapi::api::apps::v1::ReplicaSet;
use k8s_openapi::api::core::v1::ReplicationController;
use kube::Client;
use tokio::sync::watch;

/// Runs every controller against the API of `client` until `closed`.
pub async fn run(client: Client, closed: watch::Receiver<bool>) {
    let mut pods = runtime::Pods::default();
    let replica_sets = replicas::controller::<ReplicaSet>(&client, &mut pods, closed.clone());
    let controllers =
        replicas::controller::<ReplicationController>(&client, &mut pods, closed.clone());
    let accounts = service_accounts::controller(&client, &pods, closed.clone());
    let mut stopped = closed;
    tokio::select! {
        _ = pods.run(client) => {}
        _ = futures::future::join3(replica_sets, controllers, accounts) => {}
        _ = stopped.wait_for(|c| *c) => {}
    }
}
