//! ServiceAccount: every pod runs as a ServiceAccount of its namespace
//! (`default` when it names none), gets that account's image pull secrets
//! when it has none of its own, and, unless the pod or the account turns
//! automounting off, a projected volume with a token for the account, the
//! cluster's CA and its namespace, mounted read-only in every container at
//! `/var/run/secrets/kubernetes.io/serviceaccount`: what in-cluster clients
//! read.

use serde_json::{Value, json};
use wasmkube_admission_sdk::{Cluster, Operation, Policy, Request, Verdict};

/// The account a pod naming none runs as.
const DEFAULT_ACCOUNT: &str = "default";

/// Where the token volume is mounted.
const MOUNT_PATH: &str = "/var/run/secrets/kubernetes.io/serviceaccount";

/// The token volume's name before its random suffix.
const VOLUME_PREFIX: &str = "kube-api-access-";

/// How long a projected token lives, as Kubernetes asks (an hour and seven
/// seconds, which its token issuer recognises).
const TOKEN_SECONDS: u64 = 3607;

/// The letters of generated names, as Kubernetes' (no vowels, no look-alikes).
const ALPHABET: &[u8] = b"bcdfghjklmnpqrstvwxz2456789";

/// The ServiceAccount admission policy.
#[derive(Debug)]
pub struct ServiceAccount;

/// The account the pod of `request` runs as: `spec.serviceAccountName`, the
/// deprecated `spec.serviceAccount`, or `default`.
fn account_name(request: &Request) -> String {
    ["/spec/serviceAccountName", "/spec/serviceAccount"]
        .iter()
        .filter_map(|p| request.field(p))
        .filter_map(|v| v.as_str().map(str::to_owned))
        .find(|name| !name.is_empty())
        .unwrap_or_else(|| DEFAULT_ACCOUNT.to_owned())
}

/// The account `name` of the request's namespace: `Ok(None)` when the
/// `default` one is not there (its controller makes it moments after the
/// namespace, where Kubernetes waits for it and a policy call cannot; or the
/// cluster runs no controllers), refused when any other is missing.
fn account(request: &Request, cluster: &dyn Cluster, name: &str) -> Result<Option<Value>, Verdict> {
    let namespace = &request.namespace;
    let refuse = |why: String| {
        request.forbid(format!(
            "error looking up service account {namespace}/{name}: {why}"
        ))
    };
    match cluster.get("v1", "serviceaccounts", namespace, name) {
        Ok(Some(account)) => Ok(Some(account)),
        Ok(None) if name == DEFAULT_ACCOUNT => Ok(None),
        Ok(None) => Err(refuse(format!("serviceaccount {name:?} not found"))),
        Err(e) => Err(refuse(e)),
    }
}

/// Whether the policy has a say: a pod created in a namespace, not one a
/// node mirrors.
fn applies(request: &Request) -> bool {
    request.is("", "pods")
        && request.operation == Operation::Create
        && !request.namespace.is_empty()
        && request
            .field("/metadata/annotations/kubernetes.io~1config.mirror")
            .is_none()
}

/// A name of five letters of [`ALPHABET`] drawn from `seed` (the request's
/// uid, which is unique): the token volume's suffix.
fn suffix(seed: &str) -> String {
    // FNV-1a, then the hash's digits in base 27.
    let mut hash = seed.bytes().fold(0xcbf2_9ce4_8422_2325_u64, |h, b| {
        (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3)
    });
    (0..5)
        .map(|_| {
            let letter = ALPHABET[(hash % ALPHABET.len() as u64) as usize];
            hash /= ALPHABET.len() as u64;
            char::from(letter)
        })
        .collect()
}

/// The projected volume of a ServiceAccount token, as Kubernetes writes it.
fn token_volume(name: &str) -> Value {
    json!({"name": name, "projected": {"defaultMode": 0o644, "sources": [
        {"serviceAccountToken": {"expirationSeconds": TOKEN_SECONDS, "path": "token"}},
        {"configMap": {"name": "kube-root-ca.crt", "items": [{"key": "ca.crt", "path": "ca.crt"}]}},
        {"downwardAPI": {"items": [{"path": "namespace",
            "fieldRef": {"apiVersion": "v1", "fieldPath": "metadata.namespace"}}]}},
    ]}})
}

/// `verdict` with the token volume mounted in every container that mounts
/// nothing at its path, and the volume added if one of them needs it.
fn mount_token(request: &Request, mut verdict: Verdict) -> Verdict {
    let volumes = request.field("/spec/volumes");
    let existing = volumes
        .iter()
        .flat_map(|v| v.as_array().into_iter().flatten())
        .filter_map(|v| v["name"].as_str())
        .find(|n| n.starts_with(VOLUME_PREFIX))
        .map(str::to_owned);
    let name = existing
        .clone()
        .unwrap_or_else(|| format!("{VOLUME_PREFIX}{}", suffix(&request.uid)));
    let mount = json!({"name": name, "readOnly": true, "mountPath": MOUNT_PATH});
    let mut needed = false;
    for list in ["initContainers", "containers"] {
        let Some(Value::Array(containers)) = request.field(&format!("/spec/{list}")) else {
            continue;
        };
        for (i, container) in containers.iter().enumerate() {
            let mounts = container["volumeMounts"].as_array();
            if mounts
                .into_iter()
                .flatten()
                .any(|m| m["mountPath"] == MOUNT_PATH)
            {
                continue;
            }
            needed = true;
            verdict = match mounts {
                Some(_) => {
                    let path = format!("/spec/{list}/{i}/volumeMounts/-");
                    verdict.patch("add", &path, Some(mount.clone()))
                }
                None => {
                    let path = format!("/spec/{list}/{i}/volumeMounts");
                    verdict.patch("add", &path, Some(json!([mount])))
                }
            };
        }
    }
    if !needed || existing.is_some() {
        return verdict;
    }
    match volumes {
        Some(Value::Array(_)) => verdict.patch("add", "/spec/volumes/-", Some(token_volume(&name))),
        _ => verdict.patch("add", "/spec/volumes", Some(json!([token_volume(&name)]))),
    }
}

impl Policy for ServiceAccount {
    fn new(_settings: Value) -> Result<Self, String> {
        Ok(ServiceAccount)
    }

    fn mutate(&self, request: &Request, cluster: &dyn Cluster) -> Verdict {
        if !applies(request) {
            return Verdict::allow();
        }
        let name = account_name(request);
        let mut verdict = Verdict::allow();
        if request.field("/spec/serviceAccountName") != Some(json!(name)) {
            verdict = verdict.patch("add", "/spec/serviceAccountName", Some(json!(name)));
        }
        // Without its account (a cluster running no controllers, or a
        // namespace made a moment ago) a pod has no token to mount.
        let account = match account(request, cluster, &name) {
            Ok(Some(account)) => account,
            Ok(None) => return verdict,
            Err(refused) => return refused,
        };
        let automount = request
            .field("/spec/automountServiceAccountToken")
            .and_then(|v| v.as_bool())
            .or(account["automountServiceAccountToken"].as_bool())
            .unwrap_or(true);
        if automount {
            verdict = mount_token(request, verdict);
        }
        let own = request.field("/spec/imagePullSecrets");
        let inherited = account["imagePullSecrets"].as_array();
        let has_own = own
            .as_ref()
            .and_then(Value::as_array)
            .is_some_and(|s| !s.is_empty());
        if let Some(secrets) = inherited.filter(|s| !s.is_empty() && !has_own) {
            verdict = verdict.patch("add", "/spec/imagePullSecrets", Some(json!(secrets)));
        }
        verdict
    }

    fn validate(&self, request: &Request, cluster: &dyn Cluster) -> Verdict {
        if !applies(request) {
            return Verdict::allow();
        }
        match account(request, cluster, &account_name(request)) {
            Ok(_) => Verdict::allow(),
            Err(refused) => refused,
        }
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;
    use crate::testing::{Objects, pod_in_shop};

    fn patch(verdict: &Verdict) -> Value {
        Value::Array(verdict.patch.clone())
    }

    fn shop_account(extra: Value) -> Objects {
        let mut account = json!({"metadata": {"name": "default", "namespace": "shop"}});
        account
            .as_object_mut()
            .unwrap()
            .extend(extra.as_object().unwrap().clone());
        Objects(vec![("serviceaccounts", "shop", account)])
    }

    #[test]
    fn a_pod_runs_as_default_with_its_token_mounted_in_every_container() {
        let request = pod_in_shop(json!({
            "initContainers": [{"name": "init", "image": "i"}],
            "containers": [
                {"name": "a", "image": "a", "volumeMounts": [{"name": "d", "mountPath": "/d"}]},
                {"name": "b", "image": "b"},
            ],
            "volumes": [{"name": "d", "emptyDir": {}}],
        }));
        let verdict = ServiceAccount.mutate(&request, &shop_account(json!({})));
        assert!(verdict.allowed);
        let name = format!("{VOLUME_PREFIX}{}", suffix(""));
        let mount = json!({"name": name, "readOnly": true, "mountPath": MOUNT_PATH});
        assert_eq!(
            patch(&verdict),
            json!([
                {"op": "add", "path": "/spec/serviceAccountName", "value": "default"},
                {"op": "add", "path": "/spec/initContainers/0/volumeMounts", "value": [mount]},
                {"op": "add", "path": "/spec/containers/0/volumeMounts/-", "value": mount},
                {"op": "add", "path": "/spec/containers/1/volumeMounts", "value": [mount]},
                {"op": "add", "path": "/spec/volumes/-", "value": token_volume(&name)},
            ])
        );
        assert_eq!(name.len(), VOLUME_PREFIX.len() + 5);
        assert_ne!(suffix("one request"), suffix("another request"));
    }

    #[test]
    fn automounting_is_the_pods_choice_then_the_accounts() {
        let spec = |automount: Value| {
            json!({"automountServiceAccountToken": automount,
                   "containers": [{"name": "a", "image": "a"}]})
        };
        let off = shop_account(json!({"automountServiceAccountToken": false}));
        let on = shop_account(json!({}));
        let mounts = |request: &Request, cluster: &Objects| {
            patch(&ServiceAccount.mutate(request, cluster))
                .as_array()
                .unwrap()
                .iter()
                .any(|op| op["path"] == "/spec/volumes")
        };
        assert!(!mounts(&pod_in_shop(spec(Value::Null)), &off));
        assert!(mounts(&pod_in_shop(spec(json!(true))), &off));
        assert!(!mounts(&pod_in_shop(spec(json!(false))), &on));
        assert!(mounts(&pod_in_shop(spec(Value::Null)), &on));
    }

    #[test]
    fn a_container_mounting_the_path_itself_keeps_its_mount() {
        let request = pod_in_shop(json!({
            "serviceAccountName": "default",
            "containers": [{"name": "a", "image": "a",
                "volumeMounts": [{"name": "mine", "mountPath": MOUNT_PATH}]}],
        }));
        let verdict = ServiceAccount.mutate(&request, &shop_account(json!({})));
        assert_eq!(patch(&verdict), json!([]));
    }

    #[test]
    fn the_accounts_pull_secrets_go_to_pods_without_their_own() {
        let cluster = shop_account(json!({"imagePullSecrets": [{"name": "registry"}]}));
        let with = |secrets: Value| {
            let request = pod_in_shop(json!({"automountServiceAccountToken": false,
                "imagePullSecrets": secrets, "containers": [{"name": "a", "image": "a"}]}));
            patch(&ServiceAccount.mutate(&request, &cluster))
        };
        assert_eq!(
            with(Value::Null),
            json!([
                {"op": "add", "path": "/spec/serviceAccountName", "value": "default"},
                {"op": "add", "path": "/spec/imagePullSecrets", "value": [{"name": "registry"}]},
            ])
        );
        assert_eq!(
            with(json!([{"name": "own"}])),
            json!([{"op": "add", "path": "/spec/serviceAccountName", "value": "default"}])
        );
    }

    #[test]
    fn a_missing_account_refuses_the_pod_but_default_is_not_awaited() {
        let request = pod_in_shop(json!({"serviceAccountName": "robot",
            "containers": [{"name": "a", "image": "a"}]}));
        let refused = ServiceAccount.validate(&request, &Objects::default());
        assert_eq!(
            refused.status.unwrap().message,
            "pods \"p\" is forbidden: error looking up service account shop/robot: serviceaccount \"robot\" not found"
        );
        assert!(!ServiceAccount.mutate(&request, &Objects::default()).allowed);
        let default = pod_in_shop(json!({"containers": [{"name": "a", "image": "a"}]}));
        assert!(
            ServiceAccount
                .validate(&default, &Objects::default())
                .allowed
        );
        assert!(ServiceAccount.mutate(&default, &Objects::default()).allowed);
    }
}
