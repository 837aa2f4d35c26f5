//! ServiceAccount tokens: JWTs signed by the server's key, with Kubernetes'
//! claims (`iss`, `sub`, `aud`, `exp`, `iat`, `nbf`, `jti`, and
//! `kubernetes.io` naming the namespace, the ServiceAccount and the pod and
//! node the token is bound to). A token is good while it has not expired, is
//! for one of the server's audiences, its ServiceAccount exists with the uid
//! it names and, if bound to a pod, that pod exists with its uid and is not
//! being deleted.

use std::sync::Arc;

use futures::FutureExt;
use futures::future::BoxFuture;
use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Header, Validation};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use sha2::{Digest, Sha256};
use wasmkube_apiserver::access::{TokenClaims, TokenIssuer, UserInfo};
use wasmkube_apiserver::error::{ApiError, ApiResult};
use wasmkube_store::Store;
use wasmkube_types::registry::by_kind;

use crate::TokenAuthenticator;

/// The issuer Kubernetes clusters name by default.
pub const DEFAULT_ISSUER: &str = "https://kubernetes.default.svc.cluster.local";

/// The ServiceAccount tokens of a server: the key that signs them (if it
/// issues any), the keys that verify them, whom they are for.
pub struct ServiceAccounts {
    issuer: String,
    audiences: Vec<String>,
    signing: Option<(EncodingKey, Algorithm, String)>,
    verifying: Vec<(DecodingKey, Algorithm)>,
    store: Arc<dyn Store>,
}

impl std::fmt::Debug for ServiceAccounts {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ServiceAccounts")
            .field("issuer", &self.issuer)
            .field("audiences", &self.audiences)
            .field("keys", &self.verifying.len())
            .finish_non_exhaustive()
    }
}

/// A public key as `--service-account-key-file` takes them: PEM, ECDSA P-256
/// or RSA.
fn decoding_key(pem: &str) -> Result<(DecodingKey, Algorithm), String> {
    DecodingKey::from_ec_pem(pem.as_bytes())
        .map(|key| (key, Algorithm::ES256))
        .or_else(|_| DecodingKey::from_rsa_pem(pem.as_bytes()).map(|key| (key, Algorithm::RS256)))
        .map_err(|e| format!("a service account key: {e}"))
}

/// A private key as `--service-account-signing-key-file` takes it.
fn encoding_key(pem: &str) -> Result<(EncodingKey, Algorithm), String> {
    EncodingKey::from_ec_pem(pem.as_bytes())
        .map(|key| (key, Algorithm::ES256))
        .or_else(|_| EncodingKey::from_rsa_pem(pem.as_bytes()).map(|key| (key, Algorithm::RS256)))
        .map_err(|e| format!("the service account signing key: {e}"))
}

impl ServiceAccounts {
    /// Tokens of `issuer` for `audiences` (the issuer alone when empty),
    /// verified with the public keys of `public_pems` and, with `signing_pem`
    /// (a private key), signed by it. ServiceAccounts and pods are looked up in
    /// `store`.
    pub fn new(
        issuer: &str,
        audiences: Vec<String>,
        signing_pem: Option<&str>,
        public_pems: &[String],
        store: Arc<dyn Store>,
    ) -> Result<ServiceAccounts, String> {
        let verifying = public_pems
            .iter()
            .map(|pem| decoding_key(pem))
            .collect::<Result<Vec<_>, _>>()?;
        // The signing key's id is that of the first public key, its own.
        let key_id = public_pems
            .first()
            .map(|pem| key_id_of(pem))
            .unwrap_or_default();
        let signing = match signing_pem {
            None => None,
            Some(pem) => {
                let (key, algorithm) = encoding_key(pem)?;
                Some((key, algorithm, key_id))
            }
        };
        let audiences = if audiences.is_empty() {
            vec![issuer.to_owned()]
        } else {
            audiences
        };
        Ok(ServiceAccounts {
            issuer: issuer.to_owned(),
            audiences,
            signing,
            verifying,
            store,
        })
    }

    /// The object stored for `kind` at `namespace`/`name`, if there is one.
    async fn stored(&self, kind: &str, namespace: &str, name: &str) -> ApiResult<Option<Value>> {
        let resource = by_kind("", "v1", kind).expect("a core kind");
        let Some(key) = resource.storage_key(Some(namespace), name) else {
            return Ok(None);
        };
        let Some(kv) = self.store.get(&key).await? else {
            return Ok(None);
        };
        Ok(serde_json::from_slice(&kv.value).ok())
    }

    async fn check(&self, token: &str) -> ApiResult<Option<UserInfo>> {
        // Only JWTs of this issuer are for this authenticator.
        let Ok(header) = jsonwebtoken::decode_header(token) else {
            return Ok(None);
        };
        let Some(unverified) = unverified_claims(token) else {
            return Ok(None);
        };
        if unverified.iss != self.issuer {
            return Ok(None);
        }
        let refused = |why: &str| {
            tracing::debug!(reason = why, "a service account token is refused");
            ApiError::unauthorized()
        };
        let mut verified = None;
        for (key, algorithm) in &self.verifying {
            if *algorithm != header.alg {
                continue;
            }
            let mut validation = Validation::new(*algorithm);
            validation.set_issuer(&[&self.issuer]);
            validation.set_audience(&self.audiences);
            validation.set_required_spec_claims(&["exp", "iss", "aud", "sub"]);
            validation.leeway = 60;
            if let Ok(data) = jsonwebtoken::decode::<Claims>(token, key, &validation) {
                verified = Some(data.claims);
                break;
            }
        }
        let claims = verified.ok_or_else(|| refused("signature, audience or expiry"))?;
        let k8s = &claims.kubernetes;
        let account = self
            .stored("ServiceAccount", &k8s.namespace, &k8s.serviceaccount.name)
            .await?
            .ok_or_else(|| refused("the service account is gone"))?;
        if account["metadata"]["uid"].as_str() != Some(&k8s.serviceaccount.uid) {
            return Err(refused("the service account was recreated"));
        }
        let mut user = UserInfo {
            name: format!(
                "system:serviceaccount:{}:{}",
                k8s.namespace, k8s.serviceaccount.name
            ),
            uid: k8s.serviceaccount.uid.clone(),
            groups: vec![
                "system:serviceaccounts".into(),
                format!("system:serviceaccounts:{}", k8s.namespace),
            ],
            ..UserInfo::default()
        };
        if let Some(pod) = &k8s.pod {
            let stored = self.stored("Pod", &k8s.namespace, &pod.name).await?;
            let alive = stored.is_some_and(|p| {
                p["metadata"]["uid"].as_str() == Some(&pod.uid)
                    && p["metadata"]["deletionTimestamp"].is_null()
            });
            if !alive {
                return Err(refused("the pod it is bound to is gone"));
            }
            let extra = &mut user.extra;
            extra.insert(EXTRA_POD_NAME.into(), vec![pod.name.clone()]);
            extra.insert(EXTRA_POD_UID.into(), vec![pod.uid.clone()]);
        }
        if let Some(node) = &k8s.node {
            user.extra
                .insert(EXTRA_NODE_NAME.into(), vec![node.name.clone()]);
            user.extra
                .insert(EXTRA_NODE_UID.into(), vec![node.uid.clone()]);
        }
        if !claims.jti.is_empty() {
            user.extra.insert(
                EXTRA_CREDENTIAL_ID.into(),
                vec![format!("JTI={}", claims.jti)],
            );
        }
        Ok(Some(user))
    }
}

/// The keys of a user's `extra` that a bound token sets, as Kubernetes names them.
const EXTRA_POD_NAME: &str = "authentication.kubernetes.io/pod-name";
const EXTRA_POD_UID: &str = "authentication.kubernetes.io/pod-uid";
const EXTRA_NODE_NAME: &str = "authentication.kubernetes.io/node-name";
const EXTRA_NODE_UID: &str = "authentication.kubernetes.io/node-uid";
const EXTRA_CREDENTIAL_ID: &str = "authentication.kubernetes.io/credential-id";

/// The key id Kubernetes gives a public key: the URL-safe base64 of the
/// SHA-256 of its DER.
fn key_id_of(public_pem: &str) -> String {
    use base64::Engine as _;
    let body: String = public_pem
        .lines()
        .filter(|l| !l.starts_with("-----"))
        .collect();
    let der = base64::engine::general_purpose::STANDARD
        .decode(body)
        .unwrap_or_default();
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(Sha256::digest(der))
}

/// The claims of a token, read without checking its signature: only to see
/// whether it is this issuer's.
fn unverified_claims(token: &str) -> Option<Claims> {
    use base64::Engine as _;
    let payload = token.split('.').nth(1)?;
    let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(payload)
        .ok()?;
    serde_json::from_slice(&bytes).ok()
}

/// A ServiceAccount token's claims, as Kubernetes writes them.
#[derive(Debug, Serialize, Deserialize)]
struct Claims {
    iss: String,
    sub: String,
    aud: Vec<String>,
    exp: i64,
    #[serde(default)]
    iat: i64,
    #[serde(default)]
    nbf: i64,
    #[serde(default)]
    jti: String,
    #[serde(rename = "kubernetes.io")]
    kubernetes: Kubernetes,
}

#[derive(Debug, Serialize, Deserialize)]
struct Kubernetes {
    namespace: String,
    serviceaccount: Reference,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pod: Option<Reference>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    node: Option<Reference>,
}

#[derive(Debug, Serialize, Deserialize)]
struct Reference {
    name: String,
    uid: String,
}

fn reference((name, uid): &(String, String)) -> Reference {
    Reference {
        name: name.clone(),
        uid: uid.clone(),
    }
}

impl TokenIssuer for ServiceAccounts {
    fn issue(&self, claims: &TokenClaims) -> Result<String, String> {
        let (key, algorithm, key_id) = self
            .signing
            .as_ref()
            .ok_or("the server has no service account signing key")?;
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_secs() as i64);
        let (account, _) = &claims.service_account;
        let token = Claims {
            iss: self.issuer.clone(),
            sub: format!("system:serviceaccount:{}:{account}", claims.namespace),
            aud: claims.audiences.clone(),
            exp: claims.expires,
            iat: now,
            nbf: now,
            jti: uuid::Uuid::new_v4().to_string(),
            kubernetes: Kubernetes {
                namespace: claims.namespace.clone(),
                serviceaccount: reference(&claims.service_account),
                pod: claims.pod.as_ref().map(reference),
                node: claims.node.as_ref().map(reference),
            },
        };
        let mut header = Header::new(*algorithm);
        if !key_id.is_empty() {
            header.kid = Some(key_id.clone());
        }
        jsonwebtoken::encode(&header, &token, key).map_err(|e| e.to_string())
    }

    fn audiences(&self) -> Vec<String> {
        self.audiences.clone()
    }
}

impl TokenAuthenticator for ServiceAccounts {
    fn user<'a>(&'a self, token: &'a str) -> BoxFuture<'a, ApiResult<Option<UserInfo>>> {
        self.check(token).boxed()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use wasmkube_store::Bytes;
    use wasmkube_store_embedded::{EmbeddedStore, Options};

    struct Cluster {
        store: Arc<dyn Store>,
        _dir: tempfile::TempDir,
    }

    impl Cluster {
        fn new() -> Cluster {
            let dir = tempfile::tempdir().unwrap();
            let store =
                EmbeddedStore::open(dir.path().join("store.db"), Options::default()).unwrap();
            Cluster {
                store: Arc::new(store),
                _dir: dir,
            }
        }

        async fn put(&self, kind: &str, name: &str, uid: &str) {
            let key = by_kind("", "v1", kind)
                .unwrap()
                .storage_key(Some("web"), name)
                .unwrap();
            let object =
                serde_json::json!({"metadata": {"name": name, "namespace": "web", "uid": uid}});
            let _ = self.store.delete(&key, None).await;
            self.store
                .create(&key, Bytes::from(object.to_string()), None)
                .await
                .unwrap();
        }

        async fn remove(&self, kind: &str, name: &str) {
            let key = by_kind("", "v1", kind)
                .unwrap()
                .storage_key(Some("web"), name)
                .unwrap();
            self.store.delete(&key, None).await.unwrap();
        }
    }

    fn keys() -> (String, String) {
        let pair = rcgen::KeyPair::generate().unwrap();
        (pair.serialize_pem(), pair.public_key_pem())
    }

    fn claims(expires: i64, pod: Option<(&str, &str)>) -> TokenClaims {
        TokenClaims {
            namespace: "web".into(),
            service_account: ("builder".into(), "sa-1".into()),
            audiences: vec![DEFAULT_ISSUER.into()],
            expires,
            pod: pod.map(|(n, u)| (n.into(), u.into())),
            node: None,
        }
    }

    fn in_an_hour() -> i64 {
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_secs() as i64
            + 3600
    }

    #[tokio::test]
    async fn a_bound_token_works_while_its_pod_and_account_do() {
        let cluster = Cluster::new();
        let (private, public) = keys();
        let accounts = ServiceAccounts::new(
            DEFAULT_ISSUER,
            vec![],
            Some(&private),
            &[public],
            cluster.store.clone(),
        )
        .unwrap();
        cluster.put("ServiceAccount", "builder", "sa-1").await;
        cluster.put("Pod", "runner", "pod-1").await;
        let token = accounts
            .issue(&claims(in_an_hour(), Some(("runner", "pod-1"))))
            .unwrap();
        let user = accounts.user(&token).await.unwrap().unwrap();
        assert_eq!(user.name, "system:serviceaccount:web:builder");
        assert_eq!(user.uid, "sa-1");
        assert_eq!(
            user.groups,
            ["system:serviceaccounts", "system:serviceaccounts:web"]
        );
        assert_eq!(user.extra[EXTRA_POD_NAME], ["runner"]);
        assert!(user.extra[EXTRA_CREDENTIAL_ID][0].starts_with("JTI="));

        // The pod goes: so does the token. A pod of the same name is another.
        cluster.remove("Pod", "runner").await;
        assert_eq!(accounts.user(&token).await.unwrap_err().code, 401);
        cluster.put("Pod", "runner", "pod-2").await;
        assert_eq!(accounts.user(&token).await.unwrap_err().code, 401);

        // An unbound token lives as long as its account.
        let unbound = accounts.issue(&claims(in_an_hour(), None)).unwrap();
        assert!(accounts.user(&unbound).await.unwrap().is_some());
        cluster.put("ServiceAccount", "builder", "sa-2").await;
        assert_eq!(accounts.user(&unbound).await.unwrap_err().code, 401);
    }

    #[tokio::test]
    async fn expired_foreign_and_forged_tokens_are_not_users() {
        let cluster = Cluster::new();
        let (private, public) = keys();
        let accounts = ServiceAccounts::new(
            DEFAULT_ISSUER,
            vec![],
            Some(&private),
            std::slice::from_ref(&public),
            cluster.store.clone(),
        )
        .unwrap();
        cluster.put("ServiceAccount", "builder", "sa-1").await;
        let expired = accounts.issue(&claims(in_an_hour() - 7200, None)).unwrap();
        assert_eq!(accounts.user(&expired).await.unwrap_err().code, 401);
        let mut elsewhere = claims(in_an_hour(), None);
        elsewhere.audiences = vec!["vault".into()];
        let elsewhere = accounts.issue(&elsewhere).unwrap();
        assert_eq!(accounts.user(&elsewhere).await.unwrap_err().code, 401);
        // Another issuer's tokens are for another authenticator.
        let (other_private, other_public) = keys();
        let other = ServiceAccounts::new(
            "https://other.example",
            vec![],
            Some(&other_private),
            &[other_public],
            cluster.store.clone(),
        )
        .unwrap();
        let foreign = other.issue(&claims(in_an_hour(), None)).unwrap();
        assert_eq!(accounts.user(&foreign).await.unwrap(), None);
        // The same issuer's name with another key is a forgery.
        let forger = ServiceAccounts::new(
            DEFAULT_ISSUER,
            vec![],
            Some(&other_private),
            &[public],
            cluster.store.clone(),
        )
        .unwrap();
        let forged = forger.issue(&claims(in_an_hour(), None)).unwrap();
        assert_eq!(accounts.user(&forged).await.unwrap_err().code, 401);
        assert_eq!(accounts.user("not-a-jwt").await.unwrap(), None);
    }
}
