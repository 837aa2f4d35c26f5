//! ServiceAccounts and the cluster's CA: every namespace has a ServiceAccount
//! called `default` and the ConfigMap `kube-root-ca.crt` with the CA that
//! signed the API server's certificate (`ca.crt`, what pods' token volumes
//! project), each made again if it is deleted and the ConfigMap set back if
//! it is changed.

use std::sync::Arc;
use std::time::Duration;

use k8s_openapi::api::core::v1::{ConfigMap, Namespace, ServiceAccount};
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

/// The ConfigMap of the cluster's CA every namespace has.
const ROOT_CA: &str = "kube-root-ca.crt";

/// Makes `namespace`'s ConfigMap of the CA `pem`, or sets its data back.
async fn publish(namespace: &str, pem: &str, ctx: &Context) -> Result<(), Error> {
    let api: Api<ConfigMap> = Api::namespaced(ctx.client.clone(), namespace);
    let data: std::collections::BTreeMap<String, String> =
        [("ca.crt".to_owned(), pem.to_owned())].into();
    match api.get_opt(ROOT_CA).await? {
        Some(map) if map.data.as_ref() == Some(&data) => Ok(()),
        Some(mut map) => {
            map.data = Some(data);
            api.replace(ROOT_CA, &PostParams::default(), &map).await?;
            Ok(())
        }
        None => {
            let map: ConfigMap = serde_json::from_value(json!({
                "metadata": {"name": ROOT_CA, "namespace": namespace,
                    "annotations": {"kubernetes.io/description": "Contains a CA bundle that can be used to verify the kube-apiserver when using internal endpoints such as the internal service IP or kubernetes.default.svc. No other usage is guaranteed across distributions of Kubernetes clusters."}},
                "data": data,
            }))
            .map_err(|e| Error::Invalid(e.to_string()))?;
            match api.create(&PostParams::default(), &map).await {
                Err(kube::Error::Api(e)) if e.code == 409 => Ok(()),
                made => made.map(drop).map_err(Error::from),
            }
        }
    }
}

async fn reconcile(
    namespace: Arc<Namespace>,
    ctx: Arc<Context>,
    root_ca: Option<Arc<str>>,
) -> Result<Action, Error> {
    if namespace.metadata.deletion_timestamp.is_some() {
        return Ok(Action::await_change());
    }
    let name = namespace.name_any();
    // The CA first: a pod that finds the account mounts it.
    if let Some(pem) = &root_ca {
        publish(&name, pem, &ctx).await?;
    }
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

/// The controller, reconciling until `closed`; with `root_ca` (PEM), it
/// publishes that CA in every namespace.
pub fn controller(
    client: &Client,
    pods: &Pods,
    root_ca: Option<String>,
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
    )
    .watches(
        Api::<ConfigMap>::all(client.clone()),
        watcher::Config::default().fields(&format!("metadata.name={ROOT_CA}")),
        |map| map.namespace().map(|ns| ObjectRef::<Namespace>::new(&ns)),
    );
    let root_ca: Option<Arc<str>> = root_ca.map(Arc::from);
    drive(
        controller,
        futures::stream::empty(),
        move |namespace, ctx| reconcile(namespace, ctx, root_ca.clone()),
        context,
        closed,
    )
}
