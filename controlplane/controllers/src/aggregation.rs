//! ClusterRole aggregation: a ClusterRole with an `aggregationRule` holds the
//! rules of every ClusterRole its selectors match, kept so as they come, go
//! and change (how `admin`, `edit` and `view` take in the rules of roles
//! labelled `rbac.authorization.k8s.io/aggregate-to-…`).

use std::sync::Arc;

use futures::StreamExt;
use k8s_openapi::api::rbac::v1::ClusterRole;
use kube::api::{Api, Patch, PatchParams};
use kube::runtime::controller::{Action, Controller};
use kube::runtime::reflector::{ObjectRef, Store};
use kube::runtime::{WatchStreamExt, watcher};
use kube::{Client, ResourceExt};
use serde_json::json;
use tokio_util::sync::CancellationToken;
use wasmkube_rbac::{aggregate, same_rules};

use crate::runtime::{Error, drive};

/// What a reconcile reads: the API and the cache of every ClusterRole.
struct Roles {
    client: Client,
    cache: Store<ClusterRole>,
}

async fn reconcile(role: Arc<ClusterRole>, ctx: Arc<Roles>) -> Result<Action, Error> {
    let all = ctx.cache.state();
    let rules = aggregate(&role, all.iter().map(|r| r.as_ref()))
        .map_err(|e| Error::Invalid(format!("clusterrole {}: {e}", role.name_any())))?;
    let Some(rules) = rules else {
        return Ok(Action::await_change());
    };
    if !same_rules(role.rules.as_deref().unwrap_or_default(), &rules) {
        let api: Api<ClusterRole> = Api::all(ctx.client.clone());
        let patch = json!({"rules": rules});
        api.patch(
            &role.name_any(),
            &PatchParams::default(),
            &Patch::Merge(&patch),
        )
        .await?;
    }
    Ok(Action::await_change())
}

/// The controller, reconciling until `closed`: every aggregated ClusterRole
/// again whenever any ClusterRole changes.
pub fn controller(client: &Client, closed: CancellationToken) -> impl Future<Output = ()> + use<> {
    let api = Api::<ClusterRole>::all(client.clone());
    let controller = Controller::new(api.clone(), watcher::Config::default());
    let cache = controller.store();
    let aggregated = cache.clone();
    let triggers = watcher(api, watcher::Config::default())
        .touched_objects()
        .filter_map(|changed| futures::future::ready(changed.ok()))
        .flat_map(move |_| {
            let roles: Vec<ObjectRef<ClusterRole>> = aggregated
                .state()
                .iter()
                .filter(|r| r.aggregation_rule.is_some())
                .map(|r| ObjectRef::from_obj(r.as_ref()))
                .collect();
            futures::stream::iter(roles)
        });
    let context = Arc::new(Roles {
        client: client.clone(),
        cache,
    });
    drive(controller, triggers, reconcile, context, closed)
}
