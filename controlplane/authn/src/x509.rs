//! Client certificates: the user of a request whose connection presented a
//! certificate the server verified against its client CA is the certificate's
//! common name, in the groups its organizations name, as Kubernetes reads
//! client certificates.

use axum::http::request::Parts;
use futures::FutureExt;
use futures::future::BoxFuture;
use wasmkube_apiserver::access::{Authenticator, UserInfo};
use wasmkube_apiserver::error::{ApiError, ApiResult};
use wasmkube_pki::PeerCertificates;

/// The authenticator of client certificates.
#[derive(Debug, Default)]
pub struct ClientCertificates;

impl Authenticator for ClientCertificates {
    fn authenticate<'a>(
        &'a self,
        request: &'a Parts,
    ) -> BoxFuture<'a, ApiResult<Option<UserInfo>>> {
        let user = request
            .extensions
            .get::<PeerCertificates>()
            .and_then(PeerCertificates::leaf)
            .map(|leaf| {
                let identity = wasmkube_pki::identity(leaf).map_err(|e| {
                    tracing::debug!(error = %e, "an unreadable client certificate");
                    ApiError::unauthorized()
                })?;
                if identity.common_name.is_empty() {
                    return Err(ApiError::unauthorized());
                }
                Ok(UserInfo {
                    name: identity.common_name,
                    groups: identity.organizations,
                    ..UserInfo::default()
                })
            })
            .transpose();
        futures::future::ready(user).boxed()
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use axum::http::Request;
    use rustls::pki_types::CertificateDer;
    use rustls::pki_types::pem::PemObject;

    use super::*;

    #[tokio::test]
    async fn a_certificate_names_its_user_and_groups() {
        let dir = tempfile::tempdir().unwrap();
        let ca = wasmkube_pki::Ca::load_or_create(dir.path()).unwrap();
        let issued = ca
            .issue(&wasmkube_pki::Profile::client("jane", &["dev", "ops"]))
            .unwrap();
        let der = CertificateDer::from_pem_slice(issued.cert_pem.as_bytes()).unwrap();
        let mut parts = Request::new(()).into_parts().0;
        assert_eq!(ClientCertificates.authenticate(&parts).await.unwrap(), None);
        parts
            .extensions
            .insert(PeerCertificates(Arc::from(vec![der.into_owned()])));
        let jane = ClientCertificates
            .authenticate(&parts)
            .await
            .unwrap()
            .unwrap();
        assert_eq!(jane.name, "jane");
        assert_eq!(jane.groups, ["dev", "ops"]);
    }
}
