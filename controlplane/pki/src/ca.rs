//! The cluster certificate authority and the certificates it issues.

use std::fmt;
use std::net::IpAddr;
use std::path::Path;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use rcgen::{
    BasicConstraints, CertificateParams, CertificateSigningRequestParams, DistinguishedName,
    DnType, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyIdMethod, KeyPair, KeyUsagePurpose,
    PKCS_ECDSA_P256_SHA256, SanType, SerialNumber,
};
use ring::rand::SecureRandom as _;
use rustls::pki_types::PrivateKeyDer;
use rustls::pki_types::pem::PemObject;
use time::OffsetDateTime;
use x509_parser::certification_request::X509CertificationRequest;
use x509_parser::extensions::ParsedExtension;
use x509_parser::prelude::FromDer;

use crate::der::{self, Names};
use crate::files::{self, ensure_private_dir, write_private, write_public};
use crate::request::request_der;
use crate::x509::{certificate_der, pin_of_key, subject_of, to_pem, with_certificate};
use crate::{Error, Result};

/// How long a CA made by [`Ca::load_or_create`] is valid: ten years.
pub const CA_VALIDITY: Duration = Duration::from_secs(10 * 365 * 24 * 60 * 60);
/// How long the certificates of a [`Profile`] are valid unless it says
/// otherwise: one year.
pub const LEAF_VALIDITY: Duration = Duration::from_secs(365 * 24 * 60 * 60);
/// Certificates start a little in the past, for clocks a little behind.
const BACKDATE: Duration = Duration::from_secs(5 * 60);

/// The CA's files in its directory.
const CERT_FILE: &str = "ca.crt";
const KEY_FILE: &str = "ca.key";

/// What a certificate may be used for (its extended key usage).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Usage {
    /// Authenticating a client to a server (clientAuth).
    Client,
    /// Serving TLS under the certificate's names (serverAuth).
    Server,
}

impl Usage {
    fn purpose(self) -> ExtendedKeyUsagePurpose {
        match self {
            Usage::Client => ExtendedKeyUsagePurpose::ClientAuth,
            Usage::Server => ExtendedKeyUsagePurpose::ServerAuth,
        }
    }
}

/// A certificate to issue.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Profile {
    /// The subject's common name: a client certificate's user.
    pub common_name: String,
    /// The subject's organizations: a client certificate's groups.
    pub organizations: Vec<String>,
    /// DNS names the certificate is valid for (subject alternative names).
    pub dns_names: Vec<String>,
    /// IP addresses the certificate is valid for (subject alternative names).
    pub ip_addresses: Vec<IpAddr>,
    /// What the certificate may be used for.
    pub usage: Usage,
    /// How long it is valid, from now (never beyond the CA's own end).
    pub validity: Duration,
}

impl Profile {
    /// A client certificate for `user` in `groups`, valid for
    /// [`LEAF_VALIDITY`].
    pub fn client(user: &str, groups: &[&str]) -> Profile {
        Profile {
            common_name: user.to_owned(),
            organizations: groups.iter().map(|g| (*g).to_owned()).collect(),
            dns_names: Vec::new(),
            ip_addresses: Vec::new(),
            usage: Usage::Client,
            validity: LEAF_VALIDITY,
        }
    }

    /// A serving certificate named `common_name`, valid for
    /// [`LEAF_VALIDITY`] under `dns_names` and `ip_addresses`.
    pub fn server(common_name: &str, dns_names: &[&str], ip_addresses: &[IpAddr]) -> Profile {
        Profile {
            common_name: common_name.to_owned(),
            organizations: Vec::new(),
            dns_names: dns_names.iter().map(|n| (*n).to_owned()).collect(),
            ip_addresses: ip_addresses.to_vec(),
            usage: Usage::Server,
            validity: LEAF_VALIDITY,
        }
    }

    /// The same profile, valid for `validity`.
    pub fn with_validity(self, validity: Duration) -> Profile {
        Profile { validity, ..self }
    }

    fn alt_names(&self) -> Result<Vec<SanType>> {
        let mut names = Vec::with_capacity(self.dns_names.len() + self.ip_addresses.len());
        for name in &self.dns_names {
            let name = name
                .as_str()
                .try_into()
                .map_err(|_| Error::BadProfile(format!("{name:?} is not an ASCII DNS name")))?;
            names.push(SanType::DnsName(name));
        }
        names.extend(self.ip_addresses.iter().copied().map(SanType::IpAddress));
        Ok(names)
    }
}

/// A certificate and its new private key, both PEM.
#[derive(Clone)]
pub struct Issued {
    /// The certificate.
    pub cert_pem: String,
    /// Its private key (PKCS#8).
    pub key_pem: String,
}

impl fmt::Debug for Issued {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Issued")
            .field("cert_pem", &self.cert_pem)
            .finish_non_exhaustive()
    }
}

/// A certificate authority: a CA certificate and its key.
pub struct Ca {
    cert_pem: String,
    /// The CA certificate's subject (DER): the issuer of what it signs.
    subject: Vec<u8>,
    not_after: OffsetDateTime,
    /// Whether the CA certificate has a subject key identifier for the
    /// certificates it signs to name.
    key_identifier: bool,
    pin: String,
    issuer: Issuer<'static, KeyPair>,
}

impl fmt::Debug for Ca {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Ca")
            .field("pin", &self.pin)
            .field("not_after", &self.not_after)
            .finish_non_exhaustive()
    }
}

impl Ca {
    /// The CA in `dir` (`ca.crt` and `ca.key`), created there on first start:
    /// an ECDSA P-256 key and a self-signed certificate named
    /// `wasmkube-ca@<unix time>`, valid for [`CA_VALIDITY`]. `dir` is made
    /// mode 0700, the key is written 0600 and the certificate 0644. A key
    /// without its certificate (a first start interrupted between the two)
    /// is replaced; a certificate without its key is an error.
    pub fn load_or_create(dir: &Path) -> Result<Ca> {
        ensure_private_dir(dir)?;
        let cert_path = dir.join(CERT_FILE);
        let key_path = dir.join(KEY_FILE);
        if cert_path.exists() {
            return Ca::from_pem(&files::read(&cert_path)?, &files::read(&key_path)?);
        }
        let (cert_pem, key_pem) = self_signed()?;
        write_private(&key_path, key_pem.as_bytes())?;
        write_public(&cert_path, cert_pem.as_bytes())?;
        Ca::from_pem(&cert_pem, &key_pem)
    }

    /// A CA from its certificate (the first one of `cert_pem`) and its
    /// private key (PKCS#8, PKCS#1 RSA or SEC1 EC PEM, as kubeadm, k3s and
    /// OpenSSL write them). The certificate must be a CA certificate and the
    /// key must be its key.
    pub fn from_pem(cert_pem: &str, key_pem: &str) -> Result<Ca> {
        let key = key_pair(key_pem)?;
        let cert_der = certificate_der(cert_pem.as_bytes())?.into_owned();
        with_certificate(&cert_der, |cert| {
            let is_ca = cert
                .basic_constraints()
                .map_err(|e| Error::BadCertificate(e.to_string()))?
                .is_some_and(|constraints| constraints.value.ca);
            if !is_ca {
                return Err(Error::BadCa(
                    "the certificate is not a CA certificate (no basicConstraints cA)".into(),
                ));
            }
            if cert.public_key().subject_public_key.data.as_ref() != key.public_key_raw() {
                return Err(Error::BadCa(
                    "the private key is not the certificate's key".into(),
                ));
            }
            let key_id =
                cert.extensions()
                    .iter()
                    .find_map(|extension| match extension.parsed_extension() {
                        ParsedExtension::SubjectKeyIdentifier(id) => Some(id.0.to_vec()),
                        _ => None,
                    });
            let mut params = CertificateParams::default();
            params.key_identifier_method = match &key_id {
                Some(id) => KeyIdMethod::PreSpecified(id.clone()),
                None => KeyIdMethod::Sha256,
            };
            Ok(Ca {
                cert_pem: to_pem("CERTIFICATE", cert_der.clone()),
                subject: cert.subject().as_raw().to_vec(),
                not_after: cert.validity().not_after.to_datetime(),
                key_identifier: key_id.is_some(),
                pin: pin_of_key(cert.public_key().raw),
                issuer: Issuer::new(params, key),
            })
        })
    }

    /// The CA certificate, PEM: what clients trust.
    pub fn cert_pem(&self) -> &str {
        &self.cert_pem
    }

    /// The pin of the CA's public key (see [`pin_of`](crate::pin_of)), which
    /// a joining node checks the CA it is handed against.
    pub fn pin(&self) -> &str {
        &self.pin
    }

    /// Issues the certificate `profile` describes, for a new ECDSA P-256 key.
    pub fn issue(&self, profile: &Profile) -> Result<Issued> {
        let key = KeyPair::generate_for(&PKCS_ECDSA_P256_SHA256).map_err(Error::Generate)?;
        let params = self.leaf(profile.alt_names()?, profile.usage, profile.validity)?;
        let cert = params
            .signed_by(&key, &self.issuer)
            .map_err(Error::Generate)?;
        let subject = der::name(&profile.common_name, &profile.organizations);
        Ok(Issued {
            cert_pem: self.finish(cert.der(), &subject)?,
            key_pem: key.serialize_pem(),
        })
    }

    /// Signs a PEM PKCS#10 certificate signing request (as a node sends in a
    /// CertificateSigningRequest) once its signature verifies: the
    /// certificate keeps the request's common name, organizations and
    /// subject alternative names, and gets the `usage` and `validity` chosen
    /// here, whatever the request asked for. Returns the certificate, PEM.
    pub fn sign_csr(&self, csr_pem: &str, usage: Usage, validity: Duration) -> Result<String> {
        let der = request_der(csr_pem)?;
        let request = CertificateSigningRequestParams::from_der(&der).map_err(refused)?;
        let (_, parsed) = X509CertificationRequest::from_der(&der)
            .map_err(|e| Error::BadRequest(format!("malformed request: {e}")))?;
        let info = &parsed.certification_request_info;
        let (common_name, organizations) = subject_of(&info.subject).map_err(Error::BadRequest)?;
        let params = self.leaf(request.params.subject_alt_names, usage, validity)?;
        let cert = CertificateSigningRequestParams {
            params,
            public_key: request.public_key,
        }
        .signed_by(&self.issuer)
        .map_err(Error::Generate)?;
        let subject = der::name(&common_name, &organizations);
        let cert_pem = self.finish(cert.der(), &subject)?;
        // rcgen writes the key's algorithm as the request's signature
        // algorithm implies: a key it would misname is refused.
        let same_key = with_certificate(cert_pem.as_bytes(), |cert| {
            Ok(cert.public_key().raw == info.subject_pki.raw)
        })?;
        if !same_key {
            return Err(Error::BadRequest(
                "its key's type does not match its signature algorithm".into(),
            ));
        }
        Ok(cert_pem)
    }

    /// The parameters of a leaf certificate, all but its subject.
    fn leaf(
        &self,
        alt_names: Vec<SanType>,
        usage: Usage,
        validity: Duration,
    ) -> Result<CertificateParams> {
        let now = OffsetDateTime::now_utc();
        let mut params = CertificateParams::default();
        // rcgen marks the alternative names critical under an empty subject;
        // the real subject is put in afterwards.
        params.distinguished_name = DistinguishedName::new();
        params.distinguished_name.push(DnType::CommonName, "");
        params.not_before = now - BACKDATE;
        params.not_after = (now + validity).min(self.not_after);
        params.serial_number = Some(serial()?);
        params.subject_alt_names = alt_names;
        params.is_ca = IsCa::NoCa;
        params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
        params.extended_key_usages = vec![usage.purpose()];
        params.use_authority_key_identifier_extension = self.key_identifier;
        Ok(params)
    }

    /// Puts the CA's subject as issuer and `subject` into a certificate it
    /// signed, signs it again and encodes it as PEM.
    fn finish(&self, cert: &[u8], subject: &[u8]) -> Result<String> {
        let names = Names::Certificate {
            issuer: &self.subject,
            subject,
        };
        let der = der::rename(cert, names, self.issuer.key())?;
        Ok(to_pem("CERTIFICATE", der))
    }
}

/// A PKCS#10 certificate signing request for `profile`'s subject and
/// alternative names (its usage and validity are the signer's to choose),
/// with a new ECDSA P-256 key. Returns the request and the key, both PEM.
pub fn csr(profile: &Profile) -> Result<(String, String)> {
    let key = KeyPair::generate_for(&PKCS_ECDSA_P256_SHA256).map_err(Error::Generate)?;
    let mut params = CertificateParams::default();
    params.distinguished_name = DistinguishedName::new();
    params.distinguished_name.push(DnType::CommonName, "");
    params.subject_alt_names = profile.alt_names()?;
    let request = params.serialize_request(&key).map_err(Error::Generate)?;
    let subject = der::name(&profile.common_name, &profile.organizations);
    let der = der::rename(request.der(), Names::Request { subject: &subject }, &key)?;
    let csr_pem = to_pem("CERTIFICATE REQUEST", der);
    Ok((csr_pem, key.serialize_pem()))
}

/// A new self-signed CA certificate and its key, both PEM.
fn self_signed() -> Result<(String, String)> {
    let key = KeyPair::generate_for(&PKCS_ECDSA_P256_SHA256).map_err(Error::Generate)?;
    let now = OffsetDateTime::now_utc();
    let since_epoch = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default();
    let mut params = CertificateParams::default();
    params.distinguished_name = DistinguishedName::new();
    params.distinguished_name.push(
        DnType::CommonName,
        format!("wasmkube-ca@{}", since_epoch.as_secs()),
    );
    params.not_before = now - BACKDATE;
    params.not_after = now + CA_VALIDITY;
    params.serial_number = Some(serial()?);
    params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    params.key_usages = vec![
        KeyUsagePurpose::DigitalSignature,
        KeyUsagePurpose::KeyCertSign,
        KeyUsagePurpose::CrlSign,
    ];
    let cert = params.self_signed(&key).map_err(Error::Generate)?;
    Ok((cert.pem(), key.serialize_pem()))
}

/// A random positive 127-bit serial number.
fn serial() -> Result<SerialNumber> {
    let mut bytes = [0u8; 16];
    ring::rand::SystemRandom::new()
        .fill(&mut bytes)
        .map_err(|_| Error::Generate(rcgen::Error::RingUnspecified))?;
    // Positive, and no leading zero byte for the encoding to drop.
    bytes[0] = (bytes[0] & 0x7f) | 0x01;
    Ok(SerialNumber::from_slice(&bytes))
}

/// The key pair in PEM text, in any of the forms CAs are kept in.
fn key_pair(key_pem: &str) -> Result<KeyPair> {
    let key = PrivateKeyDer::from_pem_slice(key_pem.as_bytes())
        .map_err(|e| Error::BadKey(format!("no PEM private key: {e}")))?;
    let pkcs8 = match &key {
        PrivateKeyDer::Pkcs8(key) => key.secret_pkcs8_der().to_vec(),
        PrivateKeyDer::Pkcs1(key) => der::pkcs8_from_pkcs1(key.secret_pkcs1_der()),
        PrivateKeyDer::Sec1(key) => der::pkcs8_from_sec1(key.secret_sec1_der())?,
        _ => return Err(Error::BadKey("an unknown private key form".into())),
    };
    let pkcs8 = PrivateKeyDer::Pkcs8(pkcs8.into());
    KeyPair::try_from(&pkcs8).map_err(|e| Error::BadKey(e.to_string()))
}

/// Why a certificate signing request is refused.
pub(crate) fn refused(e: rcgen::Error) -> Error {
    let why = match e {
        rcgen::Error::CouldNotParseCertificationRequest => "malformed request".to_string(),
        rcgen::Error::InvalidCertificationRequestSignature => {
            "its signature does not verify".to_string()
        }
        rcgen::Error::UnsupportedExtension => {
            "it asks for an extension other than alternative names, key usages and basic \
             constraints"
                .to_string()
        }
        rcgen::Error::UnsupportedSignatureAlgorithm => {
            "its signature algorithm is not supported".to_string()
        }
        other => other.to_string(),
    };
    Error::BadRequest(why)
}

#[cfg(test)]
mod tests {
    use std::fs;
    use std::os::unix::fs::PermissionsExt as _;

    use x509_parser::certificate::X509Certificate;
    use x509_parser::extensions::GeneralName;

    use super::*;
    use crate::{identity, pin_of};

    const EC_CA_CERT: &str = include_str!("../testdata/ec-ca.crt");
    const EC_CA_KEY: &str = include_str!("../testdata/ec-ca.key");
    const RSA_CA_CERT: &str = include_str!("../testdata/rsa-ca.crt");
    const RSA_CA_KEY: &str = include_str!("../testdata/rsa-ca.key");
    /// A node's request made by OpenSSL: two organizations, a DNS name and an
    /// address.
    const OPENSSL_CSR: &str = include_str!("../testdata/node.csr");

    fn ca() -> Ca {
        Ca::load_or_create(tempfile::tempdir().unwrap().path()).unwrap()
    }

    fn mode(path: &Path) -> u32 {
        fs::metadata(path).unwrap().permissions().mode() & 0o777
    }

    /// How far `at` is from `validity` after now, in seconds.
    fn off_by(at: SystemTime, validity: Duration) -> u64 {
        let expected = SystemTime::now() + validity;
        let diff = match at.duration_since(expected) {
            Ok(later) => later,
            Err(e) => e.duration(),
        };
        diff.as_secs()
    }

    /// Reads the certificate in `pem` with `read`.
    fn inspect<R>(pem: &str, read: impl FnOnce(&X509Certificate<'_>) -> R) -> R {
        with_certificate(pem.as_bytes(), |cert| Ok(read(cert))).unwrap()
    }

    fn is_ca(pem: &str) -> bool {
        inspect(pem, |cert| {
            cert.basic_constraints()
                .unwrap()
                .is_some_and(|bc| bc.value.ca)
        })
    }

    /// The (client, server) extended key usages of a certificate.
    fn usages(pem: &str) -> (bool, bool) {
        inspect(pem, |cert| {
            let eku = cert.extended_key_usage().unwrap().unwrap().value;
            (eku.client_auth, eku.server_auth)
        })
    }

    fn alt_names(pem: &str) -> Vec<String> {
        inspect(pem, |cert| {
            let Some(san) = cert.subject_alternative_name().unwrap() else {
                return Vec::new();
            };
            san.value
                .general_names
                .iter()
                .map(|name| match name {
                    GeneralName::DNSName(name) => (*name).to_owned(),
                    GeneralName::IPAddress(ip) => match ip.len() {
                        4 => IpAddr::from(<[u8; 4]>::try_from(*ip).unwrap()).to_string(),
                        _ => IpAddr::from(<[u8; 16]>::try_from(*ip).unwrap()).to_string(),
                    },
                    other => format!("{other:?}"),
                })
                .collect()
        })
    }

    fn issuer_is_subject_of(cert: &str, ca: &str) -> bool {
        let issuer = inspect(cert, |cert| cert.issuer().as_raw().to_vec());
        inspect(ca, |ca| ca.subject().as_raw() == issuer)
    }

    #[test]
    fn the_ca_is_created_once_and_reloaded() {
        let root = tempfile::tempdir().unwrap();
        let dir = root.path().join("pki");
        let ca = Ca::load_or_create(&dir).unwrap();
        assert_eq!(mode(&dir), 0o700);
        assert_eq!(mode(&dir.join("ca.key")), 0o600);
        assert_eq!(mode(&dir.join("ca.crt")), 0o644);
        assert_eq!(
            fs::read_to_string(dir.join("ca.crt")).unwrap(),
            ca.cert_pem()
        );
        assert!(is_ca(ca.cert_pem()));

        let id = identity(ca.cert_pem()).unwrap();
        let unix_time = id.common_name.strip_prefix("wasmkube-ca@").unwrap();
        assert!(unix_time.parse::<u64>().unwrap() > 1_700_000_000);
        assert!(off_by(id.not_after, CA_VALIDITY) < 60);

        let again = Ca::load_or_create(&dir).unwrap();
        assert_eq!(again.cert_pem(), ca.cert_pem());
        assert_eq!(again.pin(), ca.pin());
        // What the first one issued, the second one's clients trust.
        let issued = again.issue(&Profile::client("alice", &[])).unwrap();
        assert!(issuer_is_subject_of(&issued.cert_pem, ca.cert_pem()));
    }

    #[test]
    fn a_key_without_its_certificate_is_replaced_but_not_the_reverse() {
        let root = tempfile::tempdir().unwrap();
        let dir = root.path();
        fs::write(dir.join("ca.key"), "left over").unwrap();
        let ca = Ca::load_or_create(dir).unwrap();
        assert_eq!(mode(&dir.join("ca.key")), 0o600);
        assert_eq!(Ca::load_or_create(dir).unwrap().pin(), ca.pin());

        fs::remove_file(dir.join("ca.key")).unwrap();
        let err = Ca::load_or_create(dir).unwrap_err();
        assert!(err.to_string().contains("ca.key"), "{err}");
    }

    #[test]
    fn client_certificates_name_a_user_and_its_groups() {
        let ca = ca();
        let issued = ca
            .issue(&Profile::client("alice", &["dev", "system:masters"]))
            .unwrap();
        let id = identity(&issued.cert_pem).unwrap();
        assert_eq!(id.common_name, "alice");
        assert_eq!(id.organizations, ["dev", "system:masters"]);
        assert!(off_by(id.not_after, LEAF_VALIDITY) < 60);
        assert_eq!(usages(&issued.cert_pem), (true, false));
        assert!(!is_ca(&issued.cert_pem));
        assert!(issuer_is_subject_of(&issued.cert_pem, ca.cert_pem()));
        assert!(KeyPair::from_pem(&issued.key_pem).is_ok());
        assert!(!format!("{issued:?}").contains("PRIVATE KEY"));

        let short = ca
            .issue(&Profile::client("bob", &[]).with_validity(Duration::from_secs(3600)))
            .unwrap();
        let id = identity(&short.cert_pem).unwrap();
        assert!(id.organizations.is_empty());
        assert!(off_by(id.not_after, Duration::from_secs(3600)) < 60);

        // Never beyond the CA's own end.
        let long = ca
            .issue(&Profile::client("carol", &[]).with_validity(2 * CA_VALIDITY))
            .unwrap();
        let ca_end = identity(ca.cert_pem()).unwrap().not_after;
        assert_eq!(identity(&long.cert_pem).unwrap().not_after, ca_end);
    }

    #[test]
    fn serving_certificates_carry_their_names() {
        let ca = ca();
        let ips = ["10.0.0.1".parse().unwrap(), "::1".parse().unwrap()];
        let issued = ca
            .issue(&Profile::server(
                "kube-apiserver",
                &["localhost", "api"],
                &ips,
            ))
            .unwrap();
        assert_eq!(
            alt_names(&issued.cert_pem),
            ["localhost", "api", "10.0.0.1", "::1"]
        );
        assert_eq!(usages(&issued.cert_pem), (false, true));
        assert_eq!(
            identity(&issued.cert_pem).unwrap().common_name,
            "kube-apiserver"
        );
        let err = ca
            .issue(&Profile::server("x", &["bücher.example"], &[]))
            .unwrap_err();
        assert!(matches!(err, Error::BadProfile(_)), "{err}");
    }

    #[test]
    fn certificate_requests_keep_their_subject_and_names() {
        let ca = ca();
        let profile = Profile::server("system:node:n1", &["n1"], &["10.0.0.5".parse().unwrap()]);
        let profile = Profile {
            organizations: vec!["system:nodes".into(), "extra".into()],
            ..profile
        };
        let (csr_pem, key_pem) = csr(&profile).unwrap();
        assert!(csr_pem.starts_with("-----BEGIN CERTIFICATE REQUEST-----"));
        let cert = ca
            .sign_csr(&csr_pem, Usage::Server, Duration::from_secs(86_400))
            .unwrap();
        let id = identity(&cert).unwrap();
        assert_eq!(id.common_name, "system:node:n1");
        assert_eq!(id.organizations, ["system:nodes", "extra"]);
        assert!(off_by(id.not_after, Duration::from_secs(86_400)) < 60);
        assert_eq!(alt_names(&cert), ["n1", "10.0.0.5"]);
        assert_eq!(usages(&cert), (false, true));
        assert!(issuer_is_subject_of(&cert, ca.cert_pem()));
        // The certificate is for the request's key.
        let key = KeyPair::from_pem(&key_pem).unwrap();
        let cert_key = inspect(&cert, |cert| {
            cert.public_key().subject_public_key.data.to_vec()
        });
        assert_eq!(cert_key, key.public_key_raw());

        let client = ca.sign_csr(&csr_pem, Usage::Client, LEAF_VALIDITY).unwrap();
        assert_eq!(usages(&client), (true, false));
    }

    #[test]
    fn requests_from_openssl_are_signed() {
        let cert = ca()
            .sign_csr(OPENSSL_CSR, Usage::Client, LEAF_VALIDITY)
            .unwrap();
        let id = identity(&cert).unwrap();
        assert_eq!(id.common_name, "system:node:n1");
        assert_eq!(id.organizations, ["system:nodes", "wasmkube:agents"]);
        assert_eq!(alt_names(&cert), ["n1", "10.0.0.5"]);
    }

    #[test]
    fn a_request_for_a_ca_gets_a_leaf() {
        let key = KeyPair::generate_for(&PKCS_ECDSA_P256_SHA256).unwrap();
        let mut params = CertificateParams::new(Vec::<String>::new()).unwrap();
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params.key_usages = vec![KeyUsagePurpose::KeyCertSign];
        let request = params.serialize_request(&key).unwrap().pem().unwrap();
        let cert = ca()
            .sign_csr(&request, Usage::Client, LEAF_VALIDITY)
            .unwrap();
        assert!(!is_ca(&cert));
        let can_sign = inspect(&cert, |cert| {
            cert.key_usage().unwrap().unwrap().value.key_cert_sign()
        });
        assert!(!can_sign);
    }

    #[test]
    fn tampered_and_malformed_requests_are_refused() {
        let ca = ca();
        let (csr_pem, _) = csr(&Profile::client("alice", &["dev"])).unwrap();
        let der = pem::parse(&csr_pem).unwrap().into_contents();
        let at = der.windows(5).position(|w| w == b"alice").unwrap();
        let mut tampered = der.clone();
        tampered[at..at + 5].copy_from_slice(b"admin");
        let tampered = to_pem("CERTIFICATE REQUEST", tampered);
        let err = ca
            .sign_csr(&tampered, Usage::Client, LEAF_VALIDITY)
            .unwrap_err();
        assert!(matches!(err, Error::BadRequest(_)), "{err}");
        assert!(err.to_string().contains("signature"), "{err}");

        let truncated = to_pem("CERTIFICATE REQUEST", der[..40].to_vec());
        let cert_pem = ca.issue(&Profile::client("x", &[])).unwrap().cert_pem;
        for bad in ["", "not a request", &truncated, &cert_pem] {
            let err = ca.sign_csr(bad, Usage::Client, LEAF_VALIDITY).unwrap_err();
            assert!(matches!(err, Error::BadRequest(_)), "{bad:?}: {err}");
        }
    }

    #[test]
    fn pins_are_sha256_of_the_public_key_info() {
        let ca = ca();
        let pin = ca.pin();
        let hex = pin.strip_prefix("sha256:").unwrap();
        assert_eq!(hex.len(), 64);
        assert!(
            hex.bytes()
                .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
        );
        assert_eq!(pin_of(ca.cert_pem()).unwrap(), pin);
        let der = certificate_der(ca.cert_pem().as_bytes()).unwrap();
        assert_eq!(pin_of(&der).unwrap(), pin);
        let leaf = ca.issue(&Profile::client("alice", &[])).unwrap();
        assert_ne!(pin_of(&leaf.cert_pem).unwrap(), pin);
        assert!(matches!(pin_of("junk"), Err(Error::BadCertificate(_))));
        // As `openssl x509 -pubkey | openssl pkey -pubin -outform der |
        // sha256sum` computes it.
        assert_eq!(
            pin_of(EC_CA_CERT).unwrap(),
            "sha256:9cda7e5f7afde7aea108fbdbc4c0b7b959c8cb85bc9e09da0fda42a162e854fa"
        );
        assert_eq!(
            pin_of(RSA_CA_CERT).unwrap(),
            "sha256:8d66edea5693d6c12f14083a61681ae353590ddd2451ababfc08d92b5793809a"
        );
    }

    #[test]
    fn operators_bring_ec_and_rsa_cas() {
        for (cert_pem, key_pem) in [(EC_CA_CERT, EC_CA_KEY), (RSA_CA_CERT, RSA_CA_KEY)] {
            let ca = Ca::from_pem(cert_pem, key_pem).unwrap();
            assert_eq!(ca.pin(), pin_of(cert_pem).unwrap());
            let issued = ca.issue(&Profile::client("alice", &["dev"])).unwrap();
            assert!(issuer_is_subject_of(&issued.cert_pem, cert_pem));
            assert_eq!(identity(&issued.cert_pem).unwrap().organizations, ["dev"]);
        }
    }

    #[test]
    fn unusable_cas_are_refused() {
        let err = Ca::from_pem(EC_CA_CERT, RSA_CA_KEY).unwrap_err();
        assert!(matches!(err, Error::BadCa(_)), "{err}");
        let leaf = ca().issue(&Profile::client("alice", &[])).unwrap();
        let err = Ca::from_pem(&leaf.cert_pem, &leaf.key_pem).unwrap_err();
        assert!(matches!(err, Error::BadCa(_)), "{err}");
        let err = Ca::from_pem(EC_CA_CERT, "no key").unwrap_err();
        assert!(matches!(err, Error::BadKey(_)), "{err}");
        let err = Ca::from_pem("no cert", EC_CA_KEY).unwrap_err();
        assert!(matches!(err, Error::BadCertificate(_)), "{err}");
    }
}
