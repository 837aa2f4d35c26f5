//! Reading certificate signing requests: the subject and the alternative
//! names a PKCS#10 request asks for, once its signature verifies, so that a
//! signer can tell what kind of certificate it is asked for before signing.

use std::net::IpAddr;

use rcgen::{CertificateSigningRequestParams, SanType};
use rustls::pki_types::CertificateSigningRequestDer;
use rustls::pki_types::pem::PemObject;
use x509_parser::certification_request::X509CertificationRequest;
use x509_parser::prelude::FromDer;

use crate::ca::refused;
use crate::x509::subject_of;
use crate::{Error, Result};

/// What a certificate signing request asks for.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct CertificateRequest {
    /// The subject's common name (empty when it has none).
    pub common_name: String,
    /// The subject's organizations, in the request's order.
    pub organizations: Vec<String>,
    /// The DNS names among its alternative names.
    pub dns_names: Vec<String>,
    /// The IP addresses among its alternative names.
    pub ip_addresses: Vec<IpAddr>,
    /// The e-mail addresses among its alternative names.
    pub email_addresses: Vec<String>,
    /// The URIs among its alternative names.
    pub uris: Vec<String>,
    /// How many of its alternative names are of another kind (`otherName`).
    pub other_names: usize,
}

/// The DER of the PEM `CERTIFICATE REQUEST` in `csr_pem`.
pub(crate) fn request_der(csr_pem: &str) -> Result<CertificateSigningRequestDer<'static>> {
    CertificateSigningRequestDer::from_pem_slice(csr_pem.as_bytes())
        .map_err(|e| Error::BadRequest(format!("no PEM CERTIFICATE REQUEST: {e}")))
}

/// What the PEM PKCS#10 request `csr_pem` asks for; an error
/// ([`Error::BadRequest`]) when it is malformed or its signature does not
/// verify.
pub fn certificate_request(csr_pem: &str) -> Result<CertificateRequest> {
    let der = request_der(csr_pem)?;
    let params = CertificateSigningRequestParams::from_der(&der).map_err(refused)?;
    let (_, parsed) = X509CertificationRequest::from_der(&der)
        .map_err(|e| Error::BadRequest(format!("malformed request: {e}")))?;
    let (common_name, organizations) =
        subject_of(&parsed.certification_request_info.subject).map_err(Error::BadRequest)?;
    let mut request = CertificateRequest {
        common_name,
        organizations,
        ..CertificateRequest::default()
    };
    for name in params.params.subject_alt_names {
        match name {
            SanType::DnsName(name) => request.dns_names.push(name.to_string()),
            SanType::IpAddress(ip) => request.ip_addresses.push(ip),
            SanType::Rfc822Name(email) => request.email_addresses.push(email.to_string()),
            SanType::URI(uri) => request.uris.push(uri.to_string()),
            _ => request.other_names += 1,
        }
    }
    Ok(request)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{Profile, csr};

    const OPENSSL_CSR: &str = include_str!("../testdata/node.csr");

    #[test]
    fn a_request_says_its_subject_and_names() {
        let profile = Profile::server("system:node:n1", &["n1"], &["10.0.0.5".parse().unwrap()]);
        let profile = Profile {
            organizations: vec!["system:nodes".into()],
            ..profile
        };
        let (csr_pem, _) = csr(&profile).unwrap();
        let request = certificate_request(&csr_pem).unwrap();
        assert_eq!(
            request,
            CertificateRequest {
                common_name: "system:node:n1".into(),
                organizations: vec!["system:nodes".into()],
                dns_names: vec!["n1".into()],
                ip_addresses: vec!["10.0.0.5".parse().unwrap()],
                ..CertificateRequest::default()
            }
        );
        let openssl = certificate_request(OPENSSL_CSR).unwrap();
        assert_eq!(openssl.organizations, ["system:nodes", "wasmkube:agents"]);
    }

    #[test]
    fn a_request_whose_signature_does_not_verify_is_refused() {
        let (csr_pem, _) = csr(&Profile::client("alice", &["dev"])).unwrap();
        let der = pem::parse(&csr_pem).unwrap().into_contents();
        let at = der.windows(5).position(|w| w == b"alice").unwrap();
        let mut tampered = der.clone();
        tampered[at..at + 5].copy_from_slice(b"admin");
        let tampered = crate::x509::to_pem("CERTIFICATE REQUEST", tampered);
        let err = certificate_request(&tampered).unwrap_err();
        assert!(err.to_string().contains("signature"), "{err}");
        assert!(matches!(
            certificate_request("no request"),
            Err(Error::BadRequest(_))
        ));
    }
}
