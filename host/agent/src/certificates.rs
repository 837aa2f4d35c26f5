//! Certificates asked of the cluster: a CertificateSigningRequest
//! (certificates.k8s.io/v1) is created for a PKCS#10 request and its signer,
//! and the certificate is taken from its status once a signer has written it,
//! as the kubelet asks for its client and serving certificates.

use std::pin::pin;
use std::time::Duration;

use futures::StreamExt;
use k8s_openapi::ByteString;
use k8s_openapi::api::certificates::v1::{
    CertificateSigningRequest, CertificateSigningRequestSpec,
};
use kube::api::{Api, ObjectMeta, PostParams};
use kube::runtime::WatchStreamExt;
use kube::runtime::watcher::watch_object;
use kube::{Client, ResourceExt};

/// How long [`request`] waits for a signer's certificate.
pub const WAIT_LIMIT: Duration = Duration::from_secs(5 * 60);

/// Why no certificate came back.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The API server refused to create the CertificateSigningRequest or
    /// could not be reached.
    #[error("creating a CertificateSigningRequest for {signer}: {source}")]
    Create {
        /// The signer asked.
        signer: String,
        /// What the API server said.
        #[source]
        source: kube::Error,
    },
    /// The request was denied (by an approver) or failed (its signer would
    /// not sign it).
    #[error("CertificateSigningRequest {name} was {condition}: {reason}: {message}")]
    Refused {
        /// The CertificateSigningRequest.
        name: String,
        /// `Denied` or `Failed`.
        condition: String,
        /// The condition's reason.
        reason: String,
        /// The condition's message.
        message: String,
    },
    /// The request was deleted before it had a certificate.
    #[error("CertificateSigningRequest {name} was deleted before it was signed")]
    Deleted {
        /// The CertificateSigningRequest.
        name: String,
    },
    /// No certificate within [`WAIT_LIMIT`].
    #[error(
        "CertificateSigningRequest {name} has no certificate after {}s: nothing approved it, \
         or no controller signs for {signer}",
        WAIT_LIMIT.as_secs()
    )]
    TimedOut {
        /// The CertificateSigningRequest.
        name: String,
        /// Its signer.
        signer: String,
    },
    /// The signer wrote something that is not PEM text.
    #[error("CertificateSigningRequest {name} holds a certificate that is not PEM text")]
    NotPem {
        /// The CertificateSigningRequest.
        name: String,
    },
}

/// Asks the cluster for a certificate: creates a CertificateSigningRequest
/// (named `csr-` and a random suffix) for the PEM PKCS#10 request `csr_pem`,
/// to be signed by `signer` (`kubernetes.io/kubelet-serving`,
/// `kubernetes.io/kube-apiserver-client-kubelet`, …) for `usages` (as
/// Kubernetes names them: `digital signature`, `server auth`, …) and, when
/// given, for `expiration`; then waits, for [`WAIT_LIMIT`] at most, until it
/// is signed. Returns the certificate (PEM, as the signer wrote it).
///
/// The caller's identity is the requester approvers judge. Watch errors are
/// retried while the wait lasts; a request denied, failed or deleted ends it.
pub async fn request(
    client: &Client,
    csr_pem: &str,
    signer: &str,
    usages: &[&str],
    expiration: Option<Duration>,
) -> Result<String, Error> {
    let requests: Api<CertificateSigningRequest> = Api::all(client.clone());
    let asked = CertificateSigningRequest {
        metadata: ObjectMeta {
            generate_name: Some("csr-".into()),
            ..ObjectMeta::default()
        },
        spec: CertificateSigningRequestSpec {
            request: ByteString(csr_pem.as_bytes().to_vec()),
            signer_name: signer.to_owned(),
            usages: Some(usages.iter().map(|u| (*u).to_owned()).collect()),
            expiration_seconds: expiration.map(|e| i32::try_from(e.as_secs()).unwrap_or(i32::MAX)),
            ..CertificateSigningRequestSpec::default()
        },
        status: None,
    };
    let created = requests
        .create(&PostParams::default(), &asked)
        .await
        .map_err(|source| Error::Create {
            signer: signer.to_owned(),
            source,
        })?;
    let name = created.name_any();
    tracing::info!(%name, signer, "asked the cluster for a certificate");
    let signed = async {
        let mut changes = pin!(watch_object(requests, &name).default_backoff());
        let mut seen = false;
        while let Some(change) = changes.next().await {
            match change {
                Ok(Some(request)) => {
                    seen = true;
                    if let Some(outcome) = outcome(&request) {
                        return outcome;
                    }
                }
                // Not listed yet (the list may lag the create), or deleted.
                Ok(None) if seen => return Err(Error::Deleted { name: name.clone() }),
                Ok(None) => {}
                Err(e) => tracing::debug!(%name, error = %e, "watching a certificate request"),
            }
        }
        unreachable!("a watch with a backoff never ends")
    };
    match tokio::time::timeout(WAIT_LIMIT, signed).await {
        Ok(outcome) => outcome,
        Err(_) => Err(Error::TimedOut {
            name,
            signer: signer.to_owned(),
        }),
    }
}

/// What a CertificateSigningRequest has come to: its certificate, a refusal,
/// or nothing yet.
fn outcome(request: &CertificateSigningRequest) -> Option<Result<String, Error>> {
    let name = request.name_any();
    let status = request.status.as_ref()?;
    let refusal = status
        .conditions
        .iter()
        .flatten()
        .find(|c| matches!(c.type_.as_str(), "Denied" | "Failed") && c.status == "True");
    if let Some(refusal) = refusal {
        return Some(Err(Error::Refused {
            name,
            condition: refusal.type_.clone(),
            reason: refusal.reason.clone().unwrap_or_default(),
            message: refusal.message.clone().unwrap_or_default(),
        }));
    }
    let certificate = status.certificate.as_ref().filter(|c| !c.0.is_empty())?;
    Some(String::from_utf8(certificate.0.clone()).map_err(|_| Error::NotPem { name }))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn with_status(status: serde_json::Value) -> CertificateSigningRequest {
        serde_json::from_value(serde_json::json!({
            "metadata": {"name": "csr-1"},
            "spec": {"request": "", "signerName": "kubernetes.io/kubelet-serving"},
            "status": status,
        }))
        .unwrap()
    }

    #[test]
    fn a_signed_request_gives_its_certificate() {
        let pem = "-----BEGIN CERTIFICATE-----\n…";
        let approved = with_status(serde_json::json!({
            "conditions": [{"type": "Approved", "status": "True"}],
        }));
        assert!(outcome(&approved).is_none());
        let signed = with_status(serde_json::json!({
            "conditions": [{"type": "Approved", "status": "True"}],
            "certificate": base64_of(pem),
        }));
        assert_eq!(outcome(&signed).unwrap().unwrap(), pem);
    }

    #[test]
    fn a_denied_or_failed_request_says_why() {
        for condition in ["Denied", "Failed"] {
            let refused = with_status(serde_json::json!({
                "conditions": [{
                    "type": condition, "status": "True",
                    "reason": "NotMine", "message": "names another node",
                }],
            }));
            let err = outcome(&refused).unwrap().unwrap_err().to_string();
            assert_eq!(
                err,
                format!(
                    "CertificateSigningRequest csr-1 was {condition}: NotMine: names another node"
                )
            );
        }
    }

    fn base64_of(text: &str) -> String {
        use base64::Engine as _;
        base64::engine::general_purpose::STANDARD.encode(text)
    }
}
