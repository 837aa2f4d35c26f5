//! The admission of CertificateSigningRequests (certificates.k8s.io/v1):
//! what Kubernetes' API server does to them beyond storing them, with the
//! request's user and the server's authorizer at hand.
//!
//! - [`Requester`] (mutating): a new request names who created it. Its
//!   `spec.username`, `uid`, `groups` and `extra` are the user's, whatever
//!   the client sent, as Kubernetes' CSR strategy sets them; approvers judge
//!   that requester.
//! - [`RequestSignature`] (validating): the PKCS#10 request of a new
//!   CertificateSigningRequest must verify, as Kubernetes' validation has it.
//! - [`SignerPermission`] (validating, Kubernetes' `CertificateApproval` and
//!   `CertificateSigning` plugins): a write through `approval` needs the verb
//!   `approve`, and a change of the certificate or the conditions through
//!   `status` the verb `sign`, on the resource `signers` named by the
//!   request's signer (`kubernetes.io/kubelet-serving`) or by its domain
//!   (`kubernetes.io/*`).
//!
//! This crate holds admission only: it depends on the API server's
//! interfaces and on the cluster's certificates (to read a request), never
//! on a store, the controllers that approve and sign, or the agent.

use std::sync::Arc;

use futures::FutureExt;
use futures::future::BoxFuture;
use serde_json::{Value, json};
use wasmkube_apiserver::access::{Attributes, Authorizer, Decision, ResourceAttributes};
use wasmkube_apiserver::admission::{
    AdmissionRequest, MutatingAdmission, Operation, ValidatingAdmission,
};
use wasmkube_apiserver::error::{ApiError, ApiResult, details, qualified};
use wasmkube_types::field::FieldError;

/// The API group of CertificateSigningRequests.
pub const GROUP: &str = "certificates.k8s.io";
/// The resource of CertificateSigningRequests.
const RESOURCE: &str = "certificatesigningrequests";

/// Whether `request` writes a CertificateSigningRequest.
fn is_csr(request: &AdmissionRequest<'_>) -> bool {
    request.resource.group == GROUP && request.resource.plural == RESOURCE
}

/// Sets who asked for a new CertificateSigningRequest.
#[derive(Debug, Default)]
pub struct Requester;

impl MutatingAdmission for Requester {
    fn admit<'a>(&'a self, request: &'a mut AdmissionRequest<'_>) -> BoxFuture<'a, ApiResult<()>> {
        let creates = is_csr(request)
            && request.operation == Operation::Create
            && request.subresource.is_none();
        if creates && let Some(csr) = request.object.as_mut() {
            set_requester(csr, request.user);
        }
        futures::future::ready(Ok(())).boxed()
    }
}

/// Writes `user` into `csr` as its requester, over what the client sent.
fn set_requester(csr: &mut Value, user: &wasmkube_apiserver::access::UserInfo) {
    let Some(spec) = csr.get_mut("spec").and_then(Value::as_object_mut) else {
        return;
    };
    for field in ["username", "uid", "groups", "extra"] {
        spec.remove(field);
    }
    spec.insert("username".into(), json!(user.name));
    if !user.uid.is_empty() {
        spec.insert("uid".into(), json!(user.uid));
    }
    if !user.groups.is_empty() {
        spec.insert("groups".into(), json!(user.groups));
    }
    if !user.extra.is_empty() {
        spec.insert("extra".into(), json!(user.extra));
    }
}

/// Refuses a new CertificateSigningRequest whose PKCS#10 request does not
/// verify.
#[derive(Debug, Default)]
pub struct RequestSignature;

impl ValidatingAdmission for RequestSignature {
    fn validate<'a>(&'a self, request: &'a AdmissionRequest<'_>) -> BoxFuture<'a, ApiResult<()>> {
        let creates = is_csr(request)
            && request.operation == Operation::Create
            && request.subresource.is_none();
        let result = match request.object.as_ref().filter(|_| creates) {
            Some(csr) => check_signature(request, csr),
            None => Ok(()),
        };
        futures::future::ready(result).boxed()
    }
}

/// A 422 when the request of `csr` does not verify.
fn check_signature(request: &AdmissionRequest<'_>, csr: &Value) -> ApiResult<()> {
    let field = &csr["spec"]["request"];
    let pem = field
        .as_str()
        .and_then(|b| {
            use base64::Engine as _;
            base64::engine::general_purpose::STANDARD.decode(b).ok()
        })
        .and_then(|bytes| String::from_utf8(bytes).ok())
        .unwrap_or_default();
    match wasmkube_pki::certificate_request(&pem) {
        Ok(_) => Ok(()),
        Err(e) => {
            let why = match e {
                wasmkube_pki::Error::BadRequest(why) => why,
                other => other.to_string(),
            };
            let error = FieldError::invalid("spec.request", field.as_str().unwrap_or(""), why);
            Err(ApiError::invalid(request.resource, request.name, &[error]))
        }
    }
}

/// Refuses approvals and certificates from users the authorizer does not
/// allow to approve or sign for the request's signer.
pub struct SignerPermission {
    authorizer: Arc<dyn Authorizer>,
}

impl std::fmt::Debug for SignerPermission {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SignerPermission").finish_non_exhaustive()
    }
}

impl SignerPermission {
    /// The plugin, asking `authorizer`.
    pub fn new(authorizer: Arc<dyn Authorizer>) -> SignerPermission {
        SignerPermission { authorizer }
    }

    /// Whether `request`'s user may `verb` for `signer`: on the signer's
    /// name, else on its domain's wildcard (`kubernetes.io/*`).
    async fn may(&self, request: &AdmissionRequest<'_>, verb: &str, signer: &str) -> bool {
        let domain = signer.split('/').next().unwrap_or_default();
        for name in [signer.to_owned(), format!("{domain}/*")] {
            let attributes = Attributes {
                user: request.user.clone(),
                verb: verb.into(),
                resource: Some(ResourceAttributes {
                    group: GROUP.into(),
                    version: "*".into(),
                    resource: "signers".into(),
                    subresource: String::new(),
                    namespace: String::new(),
                    name,
                }),
                path: String::new(),
            };
            if matches!(
                self.authorizer.authorize(&attributes).await,
                Decision::Allow
            ) {
                return true;
            }
        }
        false
    }
}

impl ValidatingAdmission for SignerPermission {
    fn validate<'a>(&'a self, request: &'a AdmissionRequest<'_>) -> BoxFuture<'a, ApiResult<()>> {
        async move {
            if !is_csr(request) || request.operation != Operation::Update {
                return Ok(());
            }
            let (Some(old), Some(new)) = (request.old_object, request.object.as_ref()) else {
                return Ok(());
            };
            let verb = match request.subresource {
                Some("approval") => "approve",
                // Only a change of what a signer writes needs a signer.
                Some("status")
                    if old["status"]["certificate"] != new["status"]["certificate"]
                        || old["status"]["conditions"] != new["status"]["conditions"] =>
                {
                    "sign"
                }
                _ => return Ok(()),
            };
            // The old signer: a write may not change it to get through.
            let signer = old["spec"]["signerName"].as_str().unwrap_or_default();
            if self.may(request, verb, signer).await {
                return Ok(());
            }
            let message = format!(
                "{} \"{}\" is forbidden: user not permitted to {verb} requests with signerName \
                 \"{signer}\"",
                qualified(request.resource),
                request.name
            );
            Err(ApiError::forbidden(message).with_details(details(request.resource, request.name)))
        }
        .boxed()
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Mutex;

    use wasmkube_apiserver::access::UserInfo;
    use wasmkube_pki::{Profile, csr};
    use wasmkube_types::registry::by_resource;

    use super::*;

    fn user(name: &str) -> UserInfo {
        UserInfo {
            name: name.into(),
            uid: "u-1".into(),
            groups: vec!["system:bootstrappers".into(), "system:authenticated".into()],
            ..UserInfo::default()
        }
    }

    fn request<'a>(
        user: &'a UserInfo,
        operation: Operation,
        subresource: Option<&'a str>,
        object: Value,
        old: Option<&'a Value>,
    ) -> AdmissionRequest<'a> {
        AdmissionRequest {
            group: GROUP,
            version: "v1",
            kind: "CertificateSigningRequest",
            resource: by_resource(GROUP, "v1", RESOURCE).unwrap(),
            subresource,
            name: "node-csr-1",
            namespace: None,
            operation,
            user,
            object: Some(object),
            old_object: old,
            dry_run: false,
            warnings: Default::default(),
        }
    }

    fn encoded(pem: &str) -> String {
        use base64::Engine as _;
        base64::engine::general_purpose::STANDARD.encode(pem)
    }

    /// `pem` with the last byte of its signature changed.
    fn tamper(pem: &str) -> String {
        use base64::Engine as _;
        let engine = base64::engine::general_purpose::STANDARD;
        let body: String = pem.lines().filter(|l| !l.starts_with("-----")).collect();
        let mut der = engine.decode(body).unwrap();
        *der.last_mut().unwrap() ^= 1;
        format!(
            "-----BEGIN CERTIFICATE REQUEST-----\n{}\n-----END CERTIFICATE REQUEST-----\n",
            engine.encode(der)
        )
    }

    fn csr_object(pem: &str) -> Value {
        json!({"spec": {"request": encoded(pem), "username": "system:masters-pretender",
            "groups": ["system:masters"], "signerName": "kubernetes.io/kubelet-serving",
            "usages": ["client auth"]}})
    }

    #[tokio::test]
    async fn the_requester_is_who_created_the_request() {
        let jane = user("system:bootstrap:abcdef");
        let mut created = request(&jane, Operation::Create, None, csr_object(""), None);
        Requester.admit(&mut created).await.unwrap();
        let spec = &created.object.unwrap()["spec"];
        assert_eq!(spec["username"], "system:bootstrap:abcdef");
        assert_eq!(spec["uid"], "u-1");
        assert_eq!(
            spec["groups"],
            json!(["system:bootstrappers", "system:authenticated"])
        );
        assert!(spec.get("extra").is_none());
        // Later writes keep what was recorded.
        let old = csr_object("");
        let mut approved = request(
            &jane,
            Operation::Update,
            Some("approval"),
            csr_object(""),
            Some(&old),
        );
        Requester.admit(&mut approved).await.unwrap();
        assert_eq!(
            approved.object.unwrap()["spec"]["username"],
            "system:masters-pretender"
        );
    }

    #[tokio::test]
    async fn a_request_must_verify() {
        let jane = user("jane");
        let (pem, _) = csr(&Profile::client("system:node:n1", &["system:nodes"])).unwrap();
        let good = request(&jane, Operation::Create, None, csr_object(&pem), None);
        RequestSignature.validate(&good).await.unwrap();
        let tampered = tamper(&pem);
        let bad = request(&jane, Operation::Create, None, csr_object(&tampered), None);
        let refused = RequestSignature.validate(&bad).await.unwrap_err();
        assert_eq!(refused.code, 422, "{}", refused.message);
        assert!(
            refused.message.contains("spec.request"),
            "{}",
            refused.message
        );
    }

    /// Allows what its list names (`verb name`), and records what it is asked.
    #[derive(Default)]
    struct Allowing(Vec<&'static str>, Mutex<Vec<String>>);

    impl Authorizer for Allowing {
        fn authorize<'a>(&'a self, attributes: &'a Attributes) -> BoxFuture<'a, Decision> {
            let resource = attributes.resource.as_ref().unwrap();
            let asked = format!("{} {}", attributes.verb, resource.name);
            self.1.lock().unwrap().push(asked.clone());
            let decision = if self.0.contains(&asked.as_str()) {
                Decision::Allow
            } else {
                Decision::NoOpinion(String::new())
            };
            futures::future::ready(decision).boxed()
        }
    }

    #[tokio::test]
    async fn approving_and_signing_need_the_signer() {
        let jane = user("jane");
        let old = csr_object("");
        let mut approved = csr_object("");
        approved["status"] = json!({"conditions": [{"type": "Approved", "status": "True"}]});
        let mut issued = approved.clone();
        issued["status"]["certificate"] = json!("LS0t");
        let authorizer = Arc::new(Allowing(vec!["approve kubernetes.io/*"], Mutex::default()));
        let plugin = SignerPermission::new(authorizer.clone());

        let approval = request(
            &jane,
            Operation::Update,
            Some("approval"),
            approved.clone(),
            Some(&old),
        );
        plugin.validate(&approval).await.unwrap();
        assert_eq!(
            *authorizer.1.lock().unwrap(),
            [
                "approve kubernetes.io/kubelet-serving",
                "approve kubernetes.io/*"
            ]
        );
        let signing = request(
            &jane,
            Operation::Update,
            Some("status"),
            issued,
            Some(&approved),
        );
        let refused = plugin.validate(&signing).await.unwrap_err();
        assert_eq!(refused.code, 403);
        assert_eq!(
            refused.message,
            "certificatesigningrequests.certificates.k8s.io \"node-csr-1\" is forbidden: user \
             not permitted to sign requests with signerName \"kubernetes.io/kubelet-serving\""
        );
        // A status write that changes nothing a signer writes needs nothing.
        let same = request(
            &jane,
            Operation::Update,
            Some("status"),
            approved.clone(),
            Some(&approved),
        );
        plugin.validate(&same).await.unwrap();
        let plain = request(&jane, Operation::Update, None, approved.clone(), Some(&old));
        plugin.validate(&plain).await.unwrap();
    }
}
