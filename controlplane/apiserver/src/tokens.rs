//! The `token` subresource of a ServiceAccount: a TokenRequest answered with a
//! token the server's [`TokenIssuer`](crate::access::TokenIssuer) signs, for the
//! audiences and the time asked, bound to a pod if the request names one (the
//! token stops working when that pod goes).

use axum::response::Response;
use serde_json::{Value, json};
use wasmkube_types::field::FieldError;
use wasmkube_types::k8s_openapi::jiff::Timestamp;
use wasmkube_types::registry::by_kind;

use crate::access::TokenClaims;
use crate::admission::Operation;
use crate::error::{ApiError, ApiResult};
use crate::objects::{meta_str, now, now_seconds};
use crate::rest::{Request, decode_stored};

/// How long a token lives when its request does not say, as Kubernetes has it.
const DEFAULT_SECONDS: i64 = 3600;
/// The shortest life a token may be asked for.
const MIN_SECONDS: i64 = 600;
/// The longest.
const MAX_SECONDS: i64 = 1 << 32;

impl Request<'_> {
    /// Answers a TokenRequest for the ServiceAccount `account`.
    pub(crate) async fn request_token(&self, account: &str, body: Value) -> ApiResult<Response> {
        let Some(issuer) = self.server.access.tokens.clone() else {
            return Err(ApiError::new(
                404,
                "NotFound",
                "the server issues no service account tokens (it has no signing key)",
            ));
        };
        let (service_account, _) = self.read(account).await?;
        let kind = self
            .target
            .resource
            .subresource("token")
            .ok_or_else(ApiError::no_such_path)?;
        let invalid =
            |errors: &[FieldError]| ApiError::invalid_of(kind.group, kind.kind, account, errors);
        let request = self
            .admit(Operation::Create, Some(body), None, |request| {
                let seconds = request["spec"]["expirationSeconds"].as_i64();
                match seconds {
                    Some(s) if s < MIN_SECONDS => Err(invalid(&[FieldError::invalid(
                        "spec.expirationSeconds",
                        s.to_string(),
                        "may not specify a duration less than 10 minutes",
                    )])),
                    Some(s) if s > MAX_SECONDS => Err(invalid(&[FieldError::invalid(
                        "spec.expirationSeconds",
                        s.to_string(),
                        "may not specify a duration larger than 2^32 seconds",
                    )])),
                    _ => Ok(()),
                }
            })
            .await?
            .unwrap_or_default();
        let mut spec = request["spec"].clone();
        if !spec.is_object() {
            spec = json!({});
        }
        let seconds = spec["expirationSeconds"]
            .as_i64()
            .unwrap_or(DEFAULT_SECONDS);
        let audiences: Vec<String> = match spec["audiences"].as_array() {
            Some(given) if !given.is_empty() => given
                .iter()
                .filter_map(|a| a.as_str().map(str::to_owned))
                .collect(),
            _ => issuer.audiences(),
        };
        let namespace = self.target.namespace.clone().unwrap_or_default();
        let (pod, node) = match spec.get("boundObjectRef").filter(|r| !r.is_null()) {
            None => (None, None),
            Some(bound) => self.bound_pod(&namespace, bound, &invalid).await?,
        };
        let expires = now_seconds() + seconds;
        let claims = TokenClaims {
            namespace: namespace.clone(),
            service_account: (
                account.to_owned(),
                meta_str(&service_account, "uid").unwrap_or("").to_owned(),
            ),
            audiences: audiences.clone(),
            expires,
            pod,
            node,
        };
        let token = issuer.issue(&claims).map_err(ApiError::internal)?;
        spec["audiences"] = json!(audiences);
        spec["expirationSeconds"] = json!(seconds);
        let expiration = Timestamp::from_second(expires)
            .map(|t| t.to_string())
            .unwrap_or_default();
        let answer = json!({
            "apiVersion": "authentication.k8s.io/v1",
            "kind": "TokenRequest",
            "metadata": {"name": account, "namespace": namespace, "creationTimestamp": now()},
            "spec": spec,
            "status": {"token": token, "expirationTimestamp": expiration},
        });
        Ok(self.render(201, &answer))
    }

    /// The pod a token is bound to (name and uid), and its node: only a pod
    /// of the account's namespace, that exists with the uid named, if one is.
    async fn bound_pod(
        &self,
        namespace: &str,
        bound: &Value,
        invalid: &(dyn Fn(&[FieldError]) -> ApiError + Sync),
    ) -> ApiResult<(Option<(String, String)>, Option<(String, String)>)> {
        let kind = bound["kind"].as_str().unwrap_or("");
        if kind != "Pod" {
            return Err(invalid(&[FieldError::not_supported(
                "spec.boundObjectRef.kind",
                kind,
                &["Pod"],
            )]));
        }
        let name = bound["name"].as_str().unwrap_or("");
        let pods = by_kind("", "v1", "Pod").expect("pods are served");
        let key = pods
            .storage_key(Some(namespace), name)
            .expect("pods are stored");
        let Some(kv) = self.server.store.get(&key).await? else {
            return Err(ApiError::not_found(pods, name));
        };
        let pod = decode_stored(&kv)?;
        let uid = meta_str(&pod, "uid").unwrap_or("").to_owned();
        if let Some(asked) = bound["uid"].as_str().filter(|u| !u.is_empty())
            && asked != uid
        {
            return Err(ApiError::conflict(
                pods,
                name,
                &format!(
                    "the UID in the bound object reference ({asked}) does not match the UID in \
                     record. The object might have been deleted and then recreated"
                ),
            ));
        }
        let node = match pod["spec"]["nodeName"].as_str().filter(|n| !n.is_empty()) {
            None => None,
            Some(node) => {
                let nodes = by_kind("", "v1", "Node").expect("nodes are served");
                let key = nodes.storage_key(None, node).expect("nodes are stored");
                let uid = match self.server.store.get(&key).await? {
                    Some(kv) => meta_str(&decode_stored(&kv)?, "uid")
                        .unwrap_or("")
                        .to_owned(),
                    None => String::new(),
                };
                Some((node.to_owned(), uid))
            }
        };
        Ok((Some((name.to_owned(), uid)), node))
    }
}
