//! Certificates: the CertificateSigningRequests of nodes, approved and
//! signed as Kubernetes' `csrapproving` and `csrsigning` controllers do
//! (`pkg/controller/certificates/{approver,signer}`).
//!
//! Approval: a request for a kubelet's client certificate (signer
//! `kubernetes.io/kube-apiserver-client-kubelet`, subject
//! `system:node:<name>` in `system:nodes` alone, no alternative names, usages
//! digital signature and client auth, with key encipherment or not) is
//! approved when its requester may `create` `certificatesigningrequests/
//! selfnodeclient` (a node renewing its own certificate: the requester is
//! the subject) or `certificatesigningrequests/nodeclient` (a node joining
//! with a bootstrap token), as a SubjectAccessReview says. Beyond
//! Kubernetes, which leaves them to an approver of the operator's, a request
//! for a kubelet's serving certificate (`kubernetes.io/kubelet-serving`,
//! DNS names and addresses only) is approved when the node asks for its own
//! name. Other requests are left to someone else.
//!
//! Signing, when the controllers have the cluster's CA: an approved request
//! of those two signers is signed for client or server use, valid for the
//! signing duration (`--cluster-signing-duration`) or the shorter
//! `spec.expirationSeconds` it asks for (ten minutes at least); one that is
//! not what its signer signs is marked Failed.

use std::sync::Arc;
use std::time::Duration;

use k8s_openapi::ByteString;
use k8s_openapi::api::authorization::v1::{
    ResourceAttributes, SubjectAccessReview, SubjectAccessReviewSpec,
};
use k8s_openapi::api::certificates::v1::{
    CertificateSigningRequest, CertificateSigningRequestCondition,
};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use kube::api::{Api, PostParams};
use kube::runtime::controller::{Action, Controller};
use kube::runtime::watcher;
use kube::{Client, ResourceExt};
use tokio_util::sync::CancellationToken;
use wasmkube_pki::{Ca, CertificateRequest, Usage};

use crate::runtime::{Error, drive};

/// The signer of kubelets' client certificates.
pub const KUBELET_CLIENT: &str = "kubernetes.io/kube-apiserver-client-kubelet";
/// The signer of kubelets' serving certificates.
pub const KUBELET_SERVING: &str = "kubernetes.io/kubelet-serving";
/// The group of every node.
const NODES: &str = "system:nodes";
/// What a node's user name starts with.
const NODE_PREFIX: &str = "system:node:";
/// The shortest validity a request may ask for.
const MIN_VALIDITY: Duration = Duration::from_secs(600);
/// How long a request whose requester may not have it approved waits before
/// it is looked at again (its requester may be given the right meanwhile).
const NOT_ALLOWED_RETRY: Duration = Duration::from_secs(30);

/// How the cluster's signer signs: with its CA, for how long.
#[derive(Clone, Debug)]
pub struct Signing {
    /// The cluster's CA.
    pub ca: Arc<Ca>,
    /// How long a certificate is valid unless its request asks for less.
    pub duration: Duration,
}

/// What a request asks for, as the approver and the signer read it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Asked<'a> {
    /// `spec.signerName`.
    pub signer: &'a str,
    /// `spec.usages`.
    pub usages: Vec<&'a str>,
    /// `spec.username`: who created the request.
    pub requester: &'a str,
    /// `spec.groups`.
    pub groups: Vec<&'a str>,
}

impl<'a> Asked<'a> {
    fn of(csr: &'a CertificateSigningRequest) -> Asked<'a> {
        let spec = &csr.spec;
        Asked {
            signer: &spec.signer_name,
            usages: spec.usages.iter().flatten().map(String::as_str).collect(),
            requester: spec.username.as_deref().unwrap_or_default(),
            groups: spec.groups.iter().flatten().map(String::as_str).collect(),
        }
    }
}

/// Whether `usages` are exactly those of one of `allowed`, in any order.
fn usages_are(usages: &[&str], allowed: &[&[&str]]) -> bool {
    let mut given = usages.to_vec();
    given.sort_unstable();
    given.dedup();
    allowed.iter().any(|set| {
        let mut set = set.to_vec();
        set.sort_unstable();
        set == given
    })
}

/// Why `request` is not a kubelet's client certificate request, if it is not
/// (Kubernetes' `ValidateKubeletClientCSR`).
pub(crate) fn kubelet_client(request: &CertificateRequest, usages: &[&str]) -> Result<(), String> {
    if request.organizations != [NODES] {
        return Err("subject organization is not system:nodes".into());
    }
    if !request.dns_names.is_empty() {
        return Err("DNS subjectAltNames are not allowed".into());
    }
    if !request.email_addresses.is_empty() {
        return Err("Email subjectAltNames are not allowed".into());
    }
    if !request.ip_addresses.is_empty() {
        return Err("IP subjectAltNames are not allowed".into());
    }
    if !request.uris.is_empty() {
        return Err("URI subjectAltNames are not allowed".into());
    }
    if request.other_names > 0 {
        return Err("other subjectAltNames are not allowed".into());
    }
    if !request.common_name.starts_with(NODE_PREFIX) {
        return Err("subject common name does not begin with system:node:".into());
    }
    let allowed: &[&[&str]] = &[
        &["digital signature", "key encipherment", "client auth"],
        &["digital signature", "client auth"],
    ];
    if !usages_are(usages, allowed) {
        return Err("usages did not match [client auth digital signature key encipherment]".into());
    }
    Ok(())
}

/// Why `request` is not a kubelet's serving certificate request, if it is
/// not (Kubernetes' `ValidateKubeletServingCSR`).
pub(crate) fn kubelet_serving(request: &CertificateRequest, usages: &[&str]) -> Result<(), String> {
    if request.organizations != [NODES] {
        return Err("subject organization is not system:nodes".into());
    }
    if request.dns_names.is_empty() && request.ip_addresses.is_empty() {
        return Err("DNS or IP subjectAltName is required".into());
    }
    if !request.email_addresses.is_empty() {
        return Err("Email subjectAltNames are not allowed".into());
    }
    if !request.uris.is_empty() {
        return Err("URI subjectAltNames are not allowed".into());
    }
    if request.other_names > 0 {
        return Err("other subjectAltNames are not allowed".into());
    }
    let allowed: &[&[&str]] = &[
        &["digital signature", "key encipherment", "server auth"],
        &["digital signature", "server auth"],
    ];
    if !usages_are(usages, allowed) {
        return Err("usages did not match [digital signature key encipherment server auth]".into());
    }
    if !request.common_name.starts_with(NODE_PREFIX) {
        return Err("subject common name does not begin with system:node:".into());
    }
    Ok(())
}

/// What the approver does with a pending request.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum Approval {
    /// Nothing: the request is not one it knows.
    Unknown,
    /// Approve it if its requester may `create`
    /// `certificatesigningrequests/<subresource>`, trying each in order.
    IfAllowed(Vec<(&'static str, &'static str)>),
    /// Approve it, saying this.
    Approve(&'static str),
}

/// What the approver does with a pending request asking for `request`.
pub(crate) fn approval(asked: &Asked<'_>, request: &CertificateRequest) -> Approval {
    match asked.signer {
        KUBELET_CLIENT if kubelet_client(request, &asked.usages).is_ok() => {
            let mut checks = Vec::new();
            if asked.requester == request.common_name {
                checks.push((
                    "selfnodeclient",
                    "Auto approving self kubelet client certificate after SubjectAccessReview.",
                ));
            }
            checks.push((
                "nodeclient",
                "Auto approving kubelet client certificate after SubjectAccessReview.",
            ));
            Approval::IfAllowed(checks)
        }
        KUBELET_SERVING
            if kubelet_serving(request, &asked.usages).is_ok()
                && asked.requester == request.common_name
                && asked.groups.contains(&NODES) =>
        {
            Approval::Approve("Auto approving the serving certificate of the node asking for it.")
        }
        _ => Approval::Unknown,
    }
}

/// What the signer does with an approved request.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum Signature {
    /// Nothing: another signer's request.
    Ignore,
    /// Sign it for `usage`, valid for `validity`.
    Sign {
        /// Client or server.
        usage: Usage,
        /// How long the certificate is valid.
        validity: Duration,
    },
    /// Mark it failed: its signer does not sign what it asks for.
    Fail(String),
}

/// What the signer does with an approved request asking for `request`
/// (`expiration`: `spec.expirationSeconds`), signing for `duration` by
/// default.
pub(crate) fn signature(
    asked: &Asked<'_>,
    request: &CertificateRequest,
    expiration: Option<i32>,
    duration: Duration,
) -> Signature {
    let (checked, usage) = match asked.signer {
        KUBELET_CLIENT => (kubelet_client(request, &asked.usages), Usage::Client),
        KUBELET_SERVING => (kubelet_serving(request, &asked.usages), Usage::Server),
        _ => return Signature::Ignore,
    };
    match checked {
        Ok(()) => Signature::Sign {
            usage,
            validity: validity(expiration, duration),
        },
        Err(why) => Signature::Fail(why),
    }
}

/// How long a certificate is valid: `duration`, or the shorter
/// `expiration` (seconds) a request asks for, ten minutes at least.
pub(crate) fn validity(expiration: Option<i32>, duration: Duration) -> Duration {
    let Some(seconds) = expiration else {
        return duration;
    };
    let asked = Duration::from_secs(u64::try_from(seconds).unwrap_or(0));
    asked.min(duration).max(MIN_VALIDITY.min(duration))
}

/// Whether `csr` has a condition of `kind` that is true.
fn has(csr: &CertificateSigningRequest, kind: &str) -> bool {
    let status = csr.status.as_ref();
    let conditions = status.and_then(|s| s.conditions.as_ref());
    conditions
        .into_iter()
        .flatten()
        .any(|c| c.type_ == kind && c.status == "True")
}

/// A true condition of `kind`, now.
fn condition(kind: &str, reason: &str, message: &str) -> CertificateSigningRequestCondition {
    let now = Time(k8s_openapi::jiff::Timestamp::now());
    CertificateSigningRequestCondition {
        type_: kind.to_owned(),
        status: "True".into(),
        reason: Some(reason.to_owned()),
        message: Some(message.to_owned()),
        last_update_time: Some(now.clone()),
        last_transition_time: Some(now),
    }
}

/// `csr` with `condition` added to its conditions.
fn with_condition(
    csr: &CertificateSigningRequest,
    condition: CertificateSigningRequestCondition,
) -> CertificateSigningRequest {
    let mut csr = csr.clone();
    let status = csr.status.get_or_insert_with(Default::default);
    status
        .conditions
        .get_or_insert_with(Vec::new)
        .push(condition);
    csr
}

struct Certificates {
    client: Client,
    signing: Option<Signing>,
}

impl Certificates {
    /// Whether the requester of `csr` may `create`
    /// `certificatesigningrequests/<subresource>`.
    async fn allowed(
        &self,
        csr: &CertificateSigningRequest,
        subresource: &str,
    ) -> Result<bool, Error> {
        let spec = &csr.spec;
        let review = SubjectAccessReview {
            spec: SubjectAccessReviewSpec {
                user: spec.username.clone(),
                uid: spec.uid.clone(),
                groups: spec.groups.clone(),
                extra: spec.extra.clone(),
                resource_attributes: Some(ResourceAttributes {
                    group: Some("certificates.k8s.io".into()),
                    resource: Some("certificatesigningrequests".into()),
                    subresource: Some(subresource.into()),
                    verb: Some("create".into()),
                    ..ResourceAttributes::default()
                }),
                ..SubjectAccessReviewSpec::default()
            },
            ..SubjectAccessReview::default()
        };
        let reviews: Api<SubjectAccessReview> = Api::all(self.client.clone());
        let answered = reviews.create(&PostParams::default(), &review).await?;
        Ok(answered.status.is_some_and(|s| s.allowed))
    }

    /// Approves `csr` if it is a request the approver knows and its
    /// requester may have it approved.
    async fn approve(
        &self,
        csr: &CertificateSigningRequest,
        request: &CertificateRequest,
    ) -> Result<Action, Error> {
        let name = csr.name_any();
        let message = match approval(&Asked::of(csr), request) {
            Approval::Unknown => return Ok(Action::await_change()),
            Approval::Approve(message) => message,
            Approval::IfAllowed(checks) => {
                let mut approved = None;
                for (subresource, message) in &checks {
                    if self.allowed(csr, subresource).await? {
                        approved = Some(*message);
                        break;
                    }
                }
                let Some(message) = approved else {
                    let tried: Vec<&str> = checks.iter().map(|(s, _)| *s).collect();
                    tracing::info!(
                        csr = name,
                        ?tried,
                        "a certificate request's requester may not have it approved"
                    );
                    return Ok(Action::requeue(NOT_ALLOWED_RETRY));
                };
                message
            }
        };
        let approved = with_condition(csr, condition("Approved", "AutoApproved", message));
        let api: Api<CertificateSigningRequest> = Api::all(self.client.clone());
        api.replace_subresource("approval", &name, &PostParams::default(), &approved)
            .await?;
        tracing::info!(
            csr = name,
            requester = Asked::of(csr).requester,
            "approved a certificate request"
        );
        Ok(Action::await_change())
    }

    /// Signs the approved `csr` (PEM request `pem`), or marks it failed.
    async fn sign(
        &self,
        signing: &Signing,
        csr: &CertificateSigningRequest,
        pem: &str,
        request: &CertificateRequest,
    ) -> Result<Action, Error> {
        let name = csr.name_any();
        let expiration = csr.spec.expiration_seconds;
        let mut signed = csr.clone();
        match signature(&Asked::of(csr), request, expiration, signing.duration) {
            Signature::Ignore => return Ok(Action::await_change()),
            Signature::Fail(why) => {
                tracing::info!(
                    csr = name,
                    reason = why,
                    "a certificate request is not for its signer"
                );
                signed = with_condition(csr, condition("Failed", "SignerValidationFailure", &why));
            }
            Signature::Sign { usage, validity } => {
                let certificate = signing
                    .ca
                    .sign_csr(pem, usage, validity)
                    .map_err(|e| Error::Invalid(e.to_string()))?;
                let status = signed.status.get_or_insert_with(Default::default);
                status.certificate = Some(ByteString(certificate.into_bytes()));
                tracing::info!(csr = name, validity = ?validity, "signed a certificate request");
            }
        }
        let api: Api<CertificateSigningRequest> = Api::all(self.client.clone());
        api.replace_status(&name, &PostParams::default(), &signed)
            .await?;
        Ok(Action::await_change())
    }
}

async fn reconcile(
    csr: Arc<CertificateSigningRequest>,
    ctx: Arc<Certificates>,
) -> Result<Action, Error> {
    let issued = csr
        .status
        .as_ref()
        .and_then(|s| s.certificate.as_ref())
        .is_some_and(|c| !c.0.is_empty());
    if issued || has(&csr, "Denied") || has(&csr, "Failed") {
        return Ok(Action::await_change());
    }
    let pem = String::from_utf8_lossy(&csr.spec.request.0).into_owned();
    let request = wasmkube_pki::certificate_request(&pem)
        .map_err(|e| Error::Invalid(format!("unable to parse csr {:?}: {e}", csr.name_any())))?;
    if !has(&csr, "Approved") {
        return ctx.approve(&csr, &request).await;
    }
    match &ctx.signing {
        Some(signing) => ctx.sign(signing, &csr, &pem, &request).await,
        None => Ok(Action::await_change()),
    }
}

/// The controller, approving nodes' requests and, with `signing`, signing
/// approved ones, until `closed`.
pub fn controller(
    client: &Client,
    signing: Option<Signing>,
    closed: CancellationToken,
) -> impl Future<Output = ()> + use<> {
    let context = Arc::new(Certificates {
        client: client.clone(),
        signing,
    });
    let api = Api::<CertificateSigningRequest>::all(client.clone());
    let controller = Controller::new(api, watcher::Config::default());
    drive(
        controller,
        futures::stream::empty(),
        reconcile,
        context,
        closed,
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn client_request(name: &str) -> CertificateRequest {
        CertificateRequest {
            common_name: format!("system:node:{name}"),
            organizations: vec![NODES.into()],
            ..CertificateRequest::default()
        }
    }

    fn serving_request(name: &str) -> CertificateRequest {
        CertificateRequest {
            dns_names: vec![name.into()],
            ip_addresses: vec!["10.0.0.5".parse().unwrap()],
            ..client_request(name)
        }
    }

    fn asked<'a>(signer: &'a str, usages: &[&'a str], requester: &'a str) -> Asked<'a> {
        Asked {
            signer,
            usages: usages.to_vec(),
            requester,
            groups: vec!["system:authenticated"],
        }
    }

    const CLIENT: &[&str] = &["digital signature", "client auth"];
    const SERVING: &[&str] = &["key encipherment", "digital signature", "server auth"];

    #[test]
    fn a_joining_node_is_approved_if_its_token_may_ask() {
        let joining = asked(KUBELET_CLIENT, CLIENT, "system:bootstrap:abcdef");
        let Approval::IfAllowed(checks) = approval(&joining, &client_request("n1")) else {
            panic!("not recognized");
        };
        let subresources: Vec<&str> = checks.iter().map(|(s, _)| *s).collect();
        assert_eq!(subresources, ["nodeclient"]);
        // A node renewing its own certificate is checked as itself first.
        let renewing = asked(KUBELET_CLIENT, CLIENT, "system:node:n1");
        let Approval::IfAllowed(checks) = approval(&renewing, &client_request("n1")) else {
            panic!("not recognized");
        };
        let subresources: Vec<&str> = checks.iter().map(|(s, _)| *s).collect();
        assert_eq!(subresources, ["selfnodeclient", "nodeclient"]);
        let with_key_encipherment = ["client auth", "key encipherment", "digital signature"];
        let asked_rsa = asked(KUBELET_CLIENT, &with_key_encipherment, "system:node:n1");
        assert_ne!(
            approval(&asked_rsa, &client_request("n1")),
            Approval::Unknown
        );
    }

    #[test]
    fn requests_that_are_not_a_kubelets_client_certificate_are_left() {
        let joining = |usages| asked(KUBELET_CLIENT, usages, "system:bootstrap:abcdef");
        let admin = CertificateRequest {
            organizations: vec!["system:masters".into()],
            ..client_request("n1")
        };
        let named = CertificateRequest {
            dns_names: vec!["n1".into()],
            ..client_request("n1")
        };
        let user = CertificateRequest {
            common_name: "jane".into(),
            ..client_request("n1")
        };
        for request in [&admin, &named, &user] {
            assert_eq!(
                approval(&joining(CLIENT), request),
                Approval::Unknown,
                "{request:?}"
            );
        }
        let serving_usages = joining(&["digital signature", "server auth"]);
        assert_eq!(
            approval(&serving_usages, &client_request("n1")),
            Approval::Unknown
        );
        let other_signer = asked("example.com/signer", CLIENT, "system:bootstrap:abcdef");
        assert_eq!(
            approval(&other_signer, &client_request("n1")),
            Approval::Unknown
        );
    }

    #[test]
    fn a_node_is_approved_its_own_serving_certificate_only() {
        let mut own = asked(KUBELET_SERVING, SERVING, "system:node:n1");
        own.groups.push(NODES);
        assert!(matches!(
            approval(&own, &serving_request("n1")),
            Approval::Approve(_)
        ));
        assert_eq!(approval(&own, &serving_request("n2")), Approval::Unknown);
        let mut unnamed = serving_request("n1");
        unnamed.dns_names.clear();
        unnamed.ip_addresses.clear();
        assert_eq!(approval(&own, &unnamed), Approval::Unknown);
        let mut mailing = serving_request("n1");
        mailing.email_addresses.push("n1@example.com".into());
        assert_eq!(approval(&own, &mailing), Approval::Unknown);
        let not_a_node = asked(KUBELET_SERVING, SERVING, "system:node:n1");
        assert_eq!(
            approval(&not_a_node, &serving_request("n1")),
            Approval::Unknown
        );
    }

    #[test]
    fn approved_requests_are_signed_for_what_their_signer_signs() {
        let year = Duration::from_secs(365 * 24 * 3600);
        let client = asked(KUBELET_CLIENT, CLIENT, "system:bootstrap:abcdef");
        assert_eq!(
            signature(&client, &client_request("n1"), None, year),
            Signature::Sign {
                usage: Usage::Client,
                validity: year
            }
        );
        let serving = asked(KUBELET_SERVING, SERVING, "system:node:n1");
        assert_eq!(
            signature(&serving, &serving_request("n1"), Some(3600), year),
            Signature::Sign {
                usage: Usage::Server,
                validity: Duration::from_secs(3600)
            }
        );
        let Signature::Fail(why) = signature(&serving, &client_request("n1"), None, year) else {
            panic!("a serving request without names is signed");
        };
        assert_eq!(why, "DNS or IP subjectAltName is required");
        let other = asked("example.com/signer", CLIENT, "jane");
        assert_eq!(
            signature(&other, &client_request("n1"), None, year),
            Signature::Ignore
        );
    }

    #[test]
    fn validity_is_the_shorter_of_the_asked_and_the_signers_ten_minutes_at_least() {
        let day = Duration::from_secs(86_400);
        assert_eq!(validity(None, day), day);
        assert_eq!(validity(Some(3600), day), Duration::from_secs(3600));
        assert_eq!(validity(Some(2 * 86_400), day), day);
        assert_eq!(validity(Some(60), day), MIN_VALIDITY);
        // A signer told to sign for less signs for less.
        let short = Duration::from_secs(120);
        assert_eq!(validity(None, short), short);
        assert_eq!(validity(Some(3600), short), short);
    }
}
