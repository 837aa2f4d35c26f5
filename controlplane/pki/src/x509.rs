//! Reading certificates: who a certificate names and the pin of its key.

use std::borrow::Cow;
use std::fmt::Write as _;
use std::time::SystemTime;

use rustls::pki_types::CertificateDer;
use rustls::pki_types::pem::PemObject;
use x509_parser::certificate::X509Certificate;
use x509_parser::x509::X509Name;

use crate::{Error, Result};

/// Who a certificate names, as the API server reads a client certificate:
/// the user is the common name and the groups are the organizations.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Identity {
    /// The subject's common name (empty when it has none).
    pub common_name: String,
    /// The subject's organizations, in the certificate's order.
    pub organizations: Vec<String>,
    /// The start of the certificate's validity.
    pub not_before: SystemTime,
    /// The end of the certificate's validity.
    pub not_after: SystemTime,
}

/// The identity in a certificate, given as PEM (the first certificate of a
/// chain) or DER.
pub fn identity(cert: impl AsRef<[u8]>) -> Result<Identity> {
    with_certificate(cert.as_ref(), |cert| {
        let (common_name, organizations) = subject_of(cert.subject()).map_err(bad_certificate)?;
        Ok(Identity {
            common_name,
            organizations,
            not_before: cert.validity().not_before.to_datetime().into(),
            not_after: cert.validity().not_after.to_datetime().into(),
        })
    })
}

/// The pin of a certificate's public key: `sha256:` and the hex SHA-256 of its
/// SubjectPublicKeyInfo, the form of kubeadm's
/// `--discovery-token-ca-cert-hash`. The certificate is PEM (the first
/// certificate of a chain) or DER.
pub fn pin_of(cert: impl AsRef<[u8]>) -> Result<String> {
    with_certificate(cert.as_ref(), |cert| Ok(pin_of_key(cert.public_key().raw)))
}

/// The pin of a DER SubjectPublicKeyInfo.
pub(crate) fn pin_of_key(spki: &[u8]) -> String {
    let digest = ring::digest::digest(&ring::digest::SHA256, spki);
    let mut pin = String::from("sha256:");
    for byte in digest.as_ref() {
        let _ = write!(pin, "{byte:02x}");
    }
    pin
}

/// PEM text of certificates given as DER (as a kubeconfig's CA is read):
/// one block each, what [`server_config`](crate::server_config) and the other
/// configurations take.
pub fn certificates_pem<I: AsRef<[u8]>>(ders: impl IntoIterator<Item = I>) -> String {
    ders.into_iter()
        .map(|der| to_pem("CERTIFICATE", der.as_ref().to_vec()))
        .collect()
}

/// The common name and the organizations of a name.
pub(crate) fn subject_of(name: &X509Name<'_>) -> Result<(String, Vec<String>), String> {
    let text = |value: &x509_parser::x509::AttributeTypeAndValue<'_>| {
        value
            .as_str()
            .map(str::to_owned)
            .map_err(|e| format!("a subject attribute is not text: {e}"))
    };
    let common_name = match name.iter_common_name().next() {
        Some(cn) => text(cn)?,
        None => String::new(),
    };
    let organizations = name
        .iter_organization()
        .map(text)
        .collect::<Result<_, _>>()?;
    Ok((common_name, organizations))
}

/// The DER of the first certificate in PEM text, or `input` itself when it is
/// not PEM.
pub(crate) fn certificate_der(input: &[u8]) -> Result<Cow<'_, [u8]>> {
    if !input.trim_ascii_start().starts_with(b"-----BEGIN") {
        return Ok(Cow::Borrowed(input));
    }
    match CertificateDer::pem_slice_iter(input).next() {
        Some(Ok(der)) => Ok(Cow::Owned(der.to_vec())),
        Some(Err(e)) => Err(bad_certificate(e)),
        None => Err(bad_certificate("no CERTIFICATE block in the PEM text")),
    }
}

/// Parses the certificate in `input` (see [`certificate_der`]) and reads it
/// with `read`.
pub(crate) fn with_certificate<R>(
    input: &[u8],
    read: impl FnOnce(&X509Certificate<'_>) -> Result<R>,
) -> Result<R> {
    let der = certificate_der(input)?;
    let (_, cert) = x509_parser::parse_x509_certificate(&der).map_err(bad_certificate)?;
    read(&cert)
}

/// PEM text of one DER structure, lines ending in LF.
pub(crate) fn to_pem(label: &str, der: Vec<u8>) -> String {
    let config = pem::EncodeConfig::new().set_line_ending(pem::LineEnding::LF);
    pem::encode_config(&pem::Pem::new(label, der), config)
}

fn bad_certificate(e: impl ToString) -> Error {
    Error::BadCertificate(e.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{Ca, Profile};

    #[test]
    fn der_certificates_become_pem_blocks() {
        let dir = tempfile::tempdir().unwrap();
        let ca = Ca::load_or_create(dir.path()).unwrap();
        let alice = ca.issue(&Profile::client("alice", &[])).unwrap();
        let ders: Vec<Vec<u8>> = [ca.cert_pem(), alice.cert_pem.as_str()]
            .map(|pem| certificate_der(pem.as_bytes()).unwrap().into_owned())
            .to_vec();
        let pem = certificates_pem(&ders);
        assert_eq!(pem, format!("{}{}", ca.cert_pem(), alice.cert_pem));
        assert_eq!(certificates_pem(Vec::<Vec<u8>>::new()), "");
    }
}
