//! Admission webhooks (admissionregistration.k8s.io/v1
//! MutatingWebhookConfiguration and ValidatingWebhookConfiguration), called
//! as Kubernetes calls them, so existing policy engines (Kyverno,
//! Gatekeeper, Kubewarden's server) can be pointed at Wasmkube.
//!
//! Each webhook of a configuration names its writes (`rules`,
//! `namespaceSelector`, `objectSelector`) and where it is served: a `url`,
//! or a Service (`service: {namespace, name, path, port}`), reached at an
//! address of its Endpoints and verified as `NAME.NAMESPACE.svc`. It gets an
//! AdmissionReview v1 over HTTPS, verified against its `caBundle`, within
//! `timeoutSeconds` (10 by default, at most 30). Mutating webhooks run in
//! order before the kind's validation, their JSON Patch applied to the
//! object; validating ones after. A refusal reads `admission webhook "NAME"
//! denied the request: …` with the webhook's Status code (400 at least); a
//! webhook that cannot be called refuses the write (`failurePolicy: Fail`, the
//! default) or is passed over (`Ignore`).

use std::collections::BTreeMap;
use std::sync::{Arc, RwLock};
use std::time::Duration;

use base64::Engine as _;
use bytes::Bytes;
use futures::FutureExt;
use futures::future::BoxFuture;
use http_body_util::{BodyExt, Full, Limited};
use hyper::client::conn::http1;
use hyper_util::rt::TokioIo;
use rustls::pki_types::ServerName;
use serde_json::{Value, json};
use tokio::net::TcpStream;
use tokio_rustls::TlsConnector;
use tokio_util::sync::CancellationToken;
use wasmkube_types::k8s_openapi::api::admissionregistration::v1::{
    RuleWithOperations, WebhookClientConfig,
};
use wasmkube_types::selector::labels::Selector;

use crate::admission::{AdmissionRequest, MutatingAdmission, ValidatingAdmission};
use crate::cache::WatchCache;
use crate::error::{ApiError, ApiResult};
use crate::validating_policies::ADMISSION_API;

/// The largest answer a webhook may give.
const MAX_REVIEW: usize = 16 << 20;

/// One webhook of a configuration.
struct Hook {
    name: String,
    client: WebhookClientConfig,
    rules: Vec<RuleWithOperations>,
    namespaces: Option<Selector>,
    objects: Option<Selector>,
    ignore_failures: bool,
    timeout: Duration,
}

impl Hook {
    /// The webhooks of a configuration (its `webhooks`, as JSON).
    fn all(webhooks: &Value) -> Vec<Arc<Hook>> {
        let selector = |s: &Value| {
            serde_json::from_value(s.clone())
                .ok()
                .and_then(|s| Selector::from_label_selector(&s).ok())
        };
        webhooks
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|hook| {
                Some(Arc::new(Hook {
                    name: hook["name"].as_str()?.to_owned(),
                    client: serde_json::from_value(hook["clientConfig"].clone()).ok()?,
                    rules: serde_json::from_value(hook["rules"].clone()).unwrap_or_default(),
                    namespaces: selector(&hook["namespaceSelector"]),
                    objects: selector(&hook["objectSelector"]),
                    ignore_failures: hook["failurePolicy"] == "Ignore",
                    timeout: Duration::from_secs(
                        hook["timeoutSeconds"].as_u64().unwrap_or(10).clamp(1, 30),
                    ),
                }))
            })
            .collect()
    }
}

/// The webhooks in force, by configuration.
#[derive(Default)]
struct Known {
    mutating: BTreeMap<String, Vec<Arc<Hook>>>,
    validating: BTreeMap<String, Vec<Arc<Hook>>>,
}

/// The admission webhooks of a server.
pub(crate) struct Webhooks {
    known: RwLock<Known>,
    cache: Arc<WatchCache>,
}

impl std::fmt::Debug for Webhooks {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let known = self.known.read().expect("webhooks lock");
        f.debug_struct("Webhooks")
            .field("mutating", &known.mutating.len())
            .field("validating", &known.validating.len())
            .finish()
    }
}

impl Webhooks {
    /// The webhook configurations the cache holds, kept current until
    /// `closing`.
    pub(crate) async fn start(
        cache: Arc<WatchCache>,
        closing: CancellationToken,
    ) -> ApiResult<Arc<Webhooks>> {
        let webhooks = Arc::new(Webhooks {
            known: RwLock::default(),
            cache: cache.clone(),
        });
        let following = webhooks.clone();
        let kinds = [
            "MutatingWebhookConfiguration",
            "ValidatingWebhookConfiguration",
        ];
        cache
            .follow_kinds(ADMISSION_API, &kinds, &closing, move |object, deleted| {
                following.learn(object, deleted)
            })
            .await?;
        Ok(webhooks)
    }

    /// Takes in a configuration written (or deleted).
    fn learn(&self, object: &Value, deleted: bool) {
        let name = object["metadata"]["name"].as_str().unwrap_or("").to_owned();
        let mut known = self.known.write().expect("webhooks lock");
        let hooks = match object["kind"].as_str() {
            Some("MutatingWebhookConfiguration") => &mut known.mutating,
            Some("ValidatingWebhookConfiguration") => &mut known.validating,
            _ => return,
        };
        if deleted {
            hooks.remove(&name);
        } else {
            hooks.insert(name, Hook::all(&object["webhooks"]));
        }
    }

    /// The webhooks of one kind that `request` goes to, in order.
    fn for_request(&self, mutating: bool, request: &AdmissionRequest<'_>) -> Vec<Arc<Hook>> {
        let known = self.known.read().expect("webhooks lock");
        let hooks = if mutating {
            &known.mutating
        } else {
            &known.validating
        };
        hooks
            .values()
            .flatten()
            .filter(|hook| self.matches(hook, request))
            .cloned()
            .collect()
    }

    fn matches(&self, hook: &Hook, request: &AdmissionRequest<'_>) -> bool {
        let ruled = hook
            .rules
            .iter()
            .any(|rule| crate::policies::rule_with_operations_matches(rule, request));
        ruled
            && crate::policies::selected(
                &self.cache,
                hook.namespaces.as_ref(),
                hook.objects.as_ref(),
                request,
            )
    }

    /// Where the Service `namespace/name` serves `port`: an address of its
    /// Endpoints and the target port.
    fn service_address(&self, namespace: &str, name: &str, port: i32) -> Result<String, String> {
        let read = |kind: &str| self.cache.object_now("v1", kind, Some(namespace), name);
        let service =
            read("Service").ok_or_else(|| format!("service \"{namespace}/{name}\" not found"))?;
        let ports = service["spec"]["ports"]
            .as_array()
            .cloned()
            .unwrap_or_default();
        let served = ports
            .iter()
            .find(|p| p["port"] == port)
            .ok_or_else(|| format!("service \"{namespace}/{name}\" has no port {port}"))?;
        let endpoints = read("Endpoints").unwrap_or_default();
        let subset = endpoints["subsets"]
            .as_array()
            .and_then(|s| s.first())
            .cloned()
            .unwrap_or_default();
        let ip = subset["addresses"][0]["ip"]
            .as_str()
            .ok_or_else(|| format!("service \"{namespace}/{name}\" has no ready endpoint"))?;
        let target = subset["ports"]
            .as_array()
            .into_iter()
            .flatten()
            .find(|p| p["name"] == served["name"] || p["name"].is_null())
            .and_then(|p| p["port"].as_i64())
            .unwrap_or(i64::from(port));
        Ok(format!("{ip}:{target}"))
    }

    /// Posts `review` to `hook`: its answer.
    async fn call(&self, hook: &Hook, review: &Value) -> Result<Value, String> {
        let client = &hook.client;
        let (host, address, path) = match (&client.url, &client.service) {
            (Some(url), _) => {
                let uri: hyper::Uri = url.parse().map_err(|e| format!("url {url:?}: {e}"))?;
                if uri.scheme_str() != Some("https") {
                    return Err(format!("url {url:?}: webhooks are called over https"));
                }
                let host = uri.host().unwrap_or("").trim_matches(['[', ']']).to_owned();
                let port = uri.port_u16().unwrap_or(443);
                let address = if host.contains(':') {
                    format!("[{host}]:{port}")
                } else {
                    format!("{host}:{port}")
                };
                let path = uri.path_and_query().map_or("/", |p| p.as_str()).to_owned();
                (host, address, path)
            }
            (None, Some(service)) => {
                let port = service.port.unwrap_or(443);
                let address = self.service_address(&service.namespace, &service.name, port)?;
                let host = format!("{}.{}.svc", service.name, service.namespace);
                (
                    host,
                    address,
                    service.path.clone().unwrap_or_else(|| "/".into()),
                )
            }
            (None, None) => return Err("clientConfig names neither a url nor a service".into()),
        };
        let tls = tls_for(client.ca_bundle.as_ref().map(|b| b.0.as_slice()))?;
        let name = ServerName::try_from(host.clone()).map_err(|e| e.to_string())?;
        let body = Bytes::from(serde_json::to_vec(review).expect("JSON values serialize"));
        let post = async {
            let stream = TcpStream::connect(&address)
                .await
                .map_err(|e| e.to_string())?;
            let stream = TlsConnector::from(tls)
                .connect(name, stream)
                .await
                .map_err(|e| e.to_string())?;
            let (mut sender, connection) = http1::handshake(TokioIo::new(stream))
                .await
                .map_err(|e| e.to_string())?;
            tokio::spawn(connection);
            let request = hyper::Request::post(&path)
                .header(hyper::header::HOST, &host)
                .header(hyper::header::CONTENT_TYPE, "application/json")
                .header(hyper::header::ACCEPT, "application/json")
                .body(Full::new(body))
                .map_err(|e| e.to_string())?;
            let response = sender
                .send_request(request)
                .await
                .map_err(|e| e.to_string())?;
            let status = response.status();
            let answer = Limited::new(response.into_body(), MAX_REVIEW)
                .collect()
                .await
                .map_err(|e| e.to_string())?
                .to_bytes();
            if !status.is_success() {
                return Err(format!("the webhook answered {status}"));
            }
            serde_json::from_slice(&answer)
                .map_err(|e| format!("the answer is not an AdmissionReview: {e}"))
        };
        match tokio::time::timeout(hook.timeout, post).await {
            Ok(answer) => answer,
            Err(_) => Err(format!("no answer within {}s", hook.timeout.as_secs())),
        }
    }

    /// Sends `request` to `hook`: its response when it allows the write (its
    /// warnings passed on), none when a failure is ignored, an error when it
    /// refuses or fails.
    async fn ask(&self, hook: &Hook, request: &AdmissionRequest<'_>) -> ApiResult<Option<Value>> {
        let uid = uuid::Uuid::new_v4().to_string();
        let answer = match self.call(hook, &review(&uid, request)).await {
            Ok(answer) => answer,
            Err(_) if hook.ignore_failures => return Ok(None),
            Err(e) => {
                return Err(ApiError::internal(format!(
                    "Internal error occurred: failed calling webhook {:?}: {e}",
                    hook.name
                )));
            }
        };
        let response = &answer["response"];
        if response["uid"] != uid.as_str() {
            if hook.ignore_failures {
                return Ok(None);
            }
            return Err(ApiError::internal(format!(
                "Internal error occurred: failed calling webhook {:?}: expected response.uid={uid:?}, got {}",
                hook.name, response["uid"]
            )));
        }
        let warnings = response["warnings"].as_array().into_iter().flatten();
        request.warn(warnings.filter_map(|w| w.as_str().map(str::to_owned)));
        if response["allowed"] != true {
            return Err(denied(&hook.name, &response["status"]));
        }
        Ok(Some(response.clone()))
    }
}

/// The AdmissionReview v1 of `request`, named `uid`.
fn review(uid: &str, request: &AdmissionRequest<'_>) -> Value {
    let r = request.resource;
    let user = request.user;
    let kind = json!({"group": request.group, "version": request.version, "kind": request.kind});
    let resource = json!({"group": r.group, "version": r.version, "resource": r.plural});
    let mut body = json!({
        "uid": uid,
        "kind": kind, "resource": resource,
        "requestKind": kind, "requestResource": resource,
        "name": request.name,
        "operation": request.operation.as_str(),
        "userInfo": {"username": user.name, "uid": user.uid, "groups": user.groups, "extra": user.extra},
        "object": request.object,
        "oldObject": request.old_object,
        "dryRun": request.dry_run,
    });
    if let Some(namespace) = request.namespace {
        body["namespace"] = json!(namespace);
    }
    if let Some(sub) = request.subresource {
        body["subResource"] = json!(sub);
        body["requestSubResource"] = json!(sub);
    }
    json!({"apiVersion": "admission.k8s.io/v1", "kind": "AdmissionReview", "request": body})
}

/// The refusal of webhook `name`, worded as Kubernetes words it.
fn denied(name: &str, status: &Value) -> ApiError {
    let by = format!("admission webhook {name:?} denied the request");
    let code = status["code"].as_u64().unwrap_or(0).clamp(400, 599) as u16;
    let message = match (status["message"].as_str(), status["reason"].as_str()) {
        (Some(m), _) if !m.is_empty() => format!("{by}: {m}"),
        (_, Some(r)) if !r.is_empty() => format!("{by}: {r}"),
        _ => format!("{by} without explanation"),
    };
    let reason = match code {
        400 => "BadRequest",
        401 => "Unauthorized",
        404 => "NotFound",
        409 => "Conflict",
        422 => "Invalid",
        429 => "TooManyRequests",
        500..=599 => "InternalError",
        _ => "Forbidden",
    };
    ApiError::new(code, reason, message)
}

/// Applies the base64 JSON Patch of webhook `name` to `object`.
fn apply(name: &str, patch: &str, object: &mut Value) -> ApiResult<()> {
    let invalid = |e: String| {
        ApiError::internal(format!(
            "Internal error occurred: webhook {name:?} returned an invalid patch: {e}"
        ))
    };
    let bytes = base64::engine::general_purpose::STANDARD
        .decode(patch)
        .map_err(|e| invalid(e.to_string()))?;
    let patch: json_patch::Patch =
        serde_json::from_slice(&bytes).map_err(|e| invalid(e.to_string()))?;
    json_patch::patch(object, &patch).map_err(|e| invalid(e.to_string()))
}

/// A TLS client trusting the certificates of `bundle` (PEM).
fn tls_for(bundle: Option<&[u8]>) -> Result<Arc<rustls::ClientConfig>, String> {
    let mut roots = rustls::RootCertStore::empty();
    let bundle = bundle
        .filter(|b| !b.is_empty())
        .ok_or("clientConfig has no caBundle")?;
    let mut reader = std::io::BufReader::new(bundle);
    for certificate in rustls_pemfile_certs(&mut reader)? {
        roots
            .add(certificate)
            .map_err(|e| format!("caBundle: {e}"))?;
    }
    Ok(Arc::new(
        rustls::ClientConfig::builder()
            .with_root_certificates(roots)
            .with_no_client_auth(),
    ))
}

/// The certificates of a PEM bundle.
fn rustls_pemfile_certs(
    reader: &mut dyn std::io::BufRead,
) -> Result<Vec<rustls::pki_types::CertificateDer<'static>>, String> {
    use rustls::pki_types::pem::PemObject as _;
    let mut text = Vec::new();
    reader.read_to_end(&mut text).map_err(|e| e.to_string())?;
    rustls::pki_types::CertificateDer::pem_slice_iter(&text)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| format!("caBundle: {e}"))
}

impl MutatingAdmission for Webhooks {
    /// Each mutating webhook in order, its JSON Patch applied before the next.
    fn admit<'a>(&'a self, request: &'a mut AdmissionRequest<'_>) -> BoxFuture<'a, ApiResult<()>> {
        async move {
            for hook in self.for_request(true, request) {
                let Some(response) = self.ask(&hook, request).await? else {
                    continue;
                };
                if let (Some(patch), Some(object)) =
                    (response["patch"].as_str(), request.object.as_mut())
                {
                    apply(&hook.name, patch, object)?;
                }
            }
            Ok(())
        }
        .boxed()
    }
}

impl ValidatingAdmission for Webhooks {
    fn validate<'a>(&'a self, request: &'a AdmissionRequest<'_>) -> BoxFuture<'a, ApiResult<()>> {
        async move {
            for hook in self.for_request(false, request) {
                self.ask(&hook, request).await?;
            }
            Ok(())
        }
        .boxed()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_refusal_reads_as_kubernetes_words_it() {
        let e = denied(
            "policy.example.com",
            &json!({"code": 403, "message": "no latest tags"}),
        );
        assert_eq!(e.code, 403);
        assert_eq!(
            e.message,
            "admission webhook \"policy.example.com\" denied the request: no latest tags"
        );
        let e = denied("w", &json!({}));
        assert_eq!(
            (e.code, e.message.as_str()),
            (
                400,
                "admission webhook \"w\" denied the request without explanation"
            )
        );
    }
}
