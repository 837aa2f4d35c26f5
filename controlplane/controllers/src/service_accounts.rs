//! ServiceAccounts: every namespace has one called `default`, made again if
//! it is deleted.

use std::sync::Arc;
use std::time::Duration;

use k8s_openapi::api::core::v1::{Namespace, ServiceAccount};
use kube::api::{Api, PostParams};
use kube::runtime::controller::{Action, Controller};
use kube::runtime::reflector::ObjectRef;
use kube::runtime::watcher;
use kube::{Client, ResourceExt};
use serde_json::json;
use tokio_util::sync::CancellationToken;
use wasmkube_events::Kind;

use crate::runtime::{Context, Error, Pods, drive};

/// The ServiceAccount every namespace has.
const DEFAULT: &str = "default";

async fn reconcile(namespace: Arc<Namespace>, ctx: Arc<Context>) -> Result<Action, Error> {
    if namespace.metadata.deletion_timestamp.is_some() {
        return Ok(Action::await_change());
    }
    let name = namespace.name_any();
    let api: Api<ServiceAccount> = Api::namespaced(ctx.client.clone(), &name);
    if api.get_opt(DEFAULT).await?.is_none() {
        let account: ServiceAccount = serde_json::from_value(json!({
            "metadata": {"name": DEFAULT, "namespace": name},
        }))
        .map_err(|e| Error::Invalid(e.to_string()))?;
        match api.create(&PostParams::default(), &account).await {
            Ok(_) => ctx.event(
                namespace.as_ref(),
                Kind::Normal,
                "ServiceAccountCreated",
                format!("Created ServiceAccount {name}/{DEFAULT}"),
            ),
            Err(kube::Error::Api(e)) if e.code == 409 => {}
            Err(e) => return Err(e.into()),
        }
    }
    Ok(Action::requeue(Duration::from_secs(600)))
}

/// The controller, reconciling until `closed`.
pub fn controller(
    client: &Client,
    pods: &Pods,
    closed: CancellationToken,
) -> impl Future<Output = ()> + use<> {
    let context = Arc::new(Context::new(client, pods, "serviceaccount-controller"));
    let controller = Controller::new(
        Api::<Namespace>::all(client.clone()),
        watcher::Config::default(),
    )
    .watches(
        Api::<ServiceAccount>::all(client.clone()),
        watcher::Config::default().fields(&format!("metadata.name={DEFAULT}")),
        |account| {
            account
                .namespace()
                .map(|ns| ObjectRef::<Namespace>::new(&ns))
        },
    );
    drive(
        controller,
        futures::stream::empty(),
        reconcile,
        context,
        closed,
    )
}
