//! rustls configurations for serving and calling within the cluster, with the
//! ring provider given to each.

use std::sync::{Arc, RwLock};

use rustls::client::WebPkiServerVerifier;
use rustls::client::danger::ServerCertVerifier as _;
use rustls::crypto::CryptoProvider;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName, UnixTime};
use rustls::server::{ClientHello, ResolvesServerCert, WebPkiClientVerifier};
use rustls::sign::CertifiedKey;
use rustls::{ClientConfig, RootCertStore, ServerConfig};

use crate::{Error, Result};

/// The only application protocol served and asked for: the API and the
/// agents speak HTTP/1.1 (with upgrades for exec and port-forward).
const HTTP_1_1: &[u8] = b"http/1.1";

fn provider() -> Arc<CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

/// A server configuration presenting `cert_chain_pem` (the certificate, then
/// any intermediates) with `key_pem` (PKCS#8, PKCS#1 or SEC1), offering
/// HTTP/1.1 only. With `client_ca_pem`, client certificates are asked for and
/// verified against those CA certificates, but not required: requests with a
/// bearer token or none still connect, and a certificate that does not verify
/// fails the handshake.
pub fn server_config(
    cert_chain_pem: &str,
    key_pem: &str,
    client_ca_pem: Option<&str>,
) -> Result<Arc<ServerConfig>> {
    let certificate = ServingCertificate::new(cert_chain_pem, key_pem)?;
    server_config_with(Arc::new(certificate), client_ca_pem)
}

/// A serving certificate that can be replaced while it serves (renewed before
/// it expires): each handshake presents the one set last. A server
/// configuration presents it when made by [`server_config_with`].
#[derive(Debug)]
pub struct ServingCertificate(RwLock<Option<Arc<CertifiedKey>>>);

impl ServingCertificate {
    /// The certificate (chain) `cert_chain_pem` with its key `key_pem`, as
    /// [`server_config`] takes them.
    pub fn new(cert_chain_pem: &str, key_pem: &str) -> Result<ServingCertificate> {
        let key = certified_key(cert_chain_pem, key_pem)?;
        Ok(ServingCertificate(RwLock::new(Some(key))))
    }

    /// A certificate still to come: until one is set with
    /// [`replace`](Self::replace), handshakes fail at once (the server has
    /// nothing to present).
    pub fn pending() -> ServingCertificate {
        ServingCertificate(RwLock::new(None))
    }

    /// Presents `cert_chain_pem` with `key_pem` from the next handshake on;
    /// on an error the certificate presented so far stays.
    pub fn replace(&self, cert_chain_pem: &str, key_pem: &str) -> Result<()> {
        let key = certified_key(cert_chain_pem, key_pem)?;
        *self
            .0
            .write()
            .unwrap_or_else(|poisoned| poisoned.into_inner()) = Some(key);
        Ok(())
    }
}

impl ResolvesServerCert for ServingCertificate {
    fn resolve(&self, _: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        let current = self
            .0
            .read()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        current.clone()
    }
}

/// A certificate chain and its key, checked to belong together.
fn certified_key(cert_chain_pem: &str, key_pem: &str) -> Result<Arc<CertifiedKey>> {
    let key = CertifiedKey::from_der(
        certificates(cert_chain_pem)?,
        private_key(key_pem)?,
        &provider(),
    )
    .map_err(Error::Tls)?;
    Ok(Arc::new(key))
}

/// A server configuration as [`server_config`] makes one, presenting
/// `certificate` as it is at each handshake.
pub fn server_config_with(
    certificate: Arc<ServingCertificate>,
    client_ca_pem: Option<&str>,
) -> Result<Arc<ServerConfig>> {
    let provider = provider();
    let builder = ServerConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()
        .map_err(Error::Tls)?;
    let builder = match client_ca_pem {
        None => builder.with_no_client_auth(),
        Some(ca_pem) => {
            let verifier = WebPkiClientVerifier::builder_with_provider(roots(ca_pem)?, provider)
                .allow_unauthenticated()
                .build()
                .map_err(Error::Verifier)?;
            builder.with_client_cert_verifier(verifier)
        }
    };
    let mut config = builder.with_cert_resolver(certificate);
    config.alpn_protocols = vec![HTTP_1_1.to_vec()];
    Ok(Arc::new(config))
}

/// Checks that `cert_chain_pem` is what a client trusting only the CA
/// certificates in `ca_pem` accepts now from a server under each of `names`
/// (DNS names or IP addresses): signed by that CA, valid now, for serving,
/// and naming every one of them. [`Error::Tls`] says what is wrong.
pub fn verify_serving(ca_pem: &str, cert_chain_pem: &str, names: &[&str]) -> Result<()> {
    let verifier = WebPkiServerVerifier::builder_with_provider(roots(ca_pem)?, provider())
        .build()
        .map_err(Error::Verifier)?;
    let chain = certificates(cert_chain_pem)?;
    let (leaf, intermediates) = chain.split_first().expect("at least one certificate");
    for name in names {
        let server_name = ServerName::try_from(*name)
            .map_err(|_| Error::BadProfile(format!("{name:?} is not a DNS name or an address")))?;
        verifier
            .verify_server_cert(leaf, intermediates, &server_name, &[], UnixTime::now())
            .map_err(Error::Tls)?;
    }
    Ok(())
}

/// A client configuration trusting only the CA certificates in `ca_pem`,
/// presenting the client certificate (chain) and key of `identity` when
/// given, and asking for HTTP/1.1.
pub fn client_config(ca_pem: &str, identity: Option<(&str, &str)>) -> Result<Arc<ClientConfig>> {
    let builder = ClientConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()
        .map_err(Error::Tls)?
        .with_root_certificates(roots(ca_pem)?);
    let mut config = match identity {
        None => builder.with_no_client_auth(),
        Some((cert_pem, key_pem)) => builder
            .with_client_auth_cert(certificates(cert_pem)?, private_key(key_pem)?)
            .map_err(Error::Tls)?,
    };
    config.alpn_protocols = vec![HTTP_1_1.to_vec()];
    Ok(Arc::new(config))
}

/// The certificates in PEM text, at least one.
fn certificates(pem: &str) -> Result<Vec<CertificateDer<'static>>> {
    let certs = CertificateDer::pem_slice_iter(pem.as_bytes())
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| Error::BadCertificate(e.to_string()))?;
    if certs.is_empty() {
        return Err(Error::BadCertificate(
            "no CERTIFICATE block in the PEM text".into(),
        ));
    }
    Ok(certs)
}

/// The private key in PEM text.
fn private_key(pem: &str) -> Result<PrivateKeyDer<'static>> {
    PrivateKeyDer::from_pem_slice(pem.as_bytes())
        .map_err(|e| Error::BadKey(format!("no PEM private key: {e}")))
}

/// A store of the CA certificates in PEM text.
fn roots(ca_pem: &str) -> Result<Arc<RootCertStore>> {
    let mut roots = RootCertStore::empty();
    for cert in certificates(ca_pem)? {
        roots.add(cert).map_err(Error::Tls)?;
    }
    Ok(Arc::new(roots))
}

#[cfg(test)]
mod tests {
    use std::net::{IpAddr, Ipv4Addr};

    use rustls::pki_types::ServerName;
    use rustls::{ClientConnection, Connection, ServerConnection};

    use super::*;
    use crate::{Ca, Profile, identity};

    /// Runs a handshake in memory; the client certificates the server
    /// verified, or the first side's error.
    fn handshake(
        client: Arc<ClientConfig>,
        server: Arc<ServerConfig>,
        name: &str,
    ) -> Result<Option<Vec<CertificateDer<'static>>>, rustls::Error> {
        let name = ServerName::try_from(name.to_owned()).unwrap();
        let mut client = Connection::from(ClientConnection::new(client, name)?);
        let mut server = Connection::from(ServerConnection::new(server)?);
        for _ in 0..10 {
            pump(&mut client, &mut server)?;
            pump(&mut server, &mut client)?;
            if !client.is_handshaking() && !server.is_handshaking() {
                // TLS 1.3 clients finish before the server has read their
                // certificate: let the server read the last flight.
                pump(&mut client, &mut server)?;
                return Ok(server.peer_certificates().map(<[_]>::to_vec));
            }
        }
        panic!("the handshake did not finish");
    }

    fn pump(from: &mut Connection, to: &mut Connection) -> Result<(), rustls::Error> {
        let mut bytes = Vec::new();
        while from.wants_write() {
            from.write_tls(&mut bytes).unwrap();
        }
        let mut rest = &bytes[..];
        while !rest.is_empty() {
            to.read_tls(&mut rest).unwrap();
            to.process_new_packets()?;
        }
        Ok(())
    }

    fn ca() -> Ca {
        let dir = tempfile::tempdir().unwrap();
        Ca::load_or_create(dir.path()).unwrap()
    }

    fn serving(ca: &Ca) -> Arc<ServerConfig> {
        let profile = Profile::server(
            "apiserver",
            &["api.cluster.local", "localhost"],
            &[IpAddr::V4(Ipv4Addr::new(10, 0, 0, 1))],
        );
        let issued = ca.issue(&profile).unwrap();
        server_config(&issued.cert_pem, &issued.key_pem, Some(ca.cert_pem())).unwrap()
    }

    #[test]
    fn serving_certificates_are_valid_for_their_names_only() {
        let ca = ca();
        let server = serving(&ca);
        let client = client_config(ca.cert_pem(), None).unwrap();
        for name in ["10.0.0.1", "api.cluster.local", "localhost"] {
            assert_eq!(handshake(client.clone(), server.clone(), name), Ok(None));
        }
        for name in ["10.0.0.2", "other.example"] {
            let err = handshake(client.clone(), server.clone(), name).unwrap_err();
            assert!(
                matches!(err, rustls::Error::InvalidCertificate(_)),
                "{name}: {err}"
            );
        }
    }

    #[test]
    fn servers_of_another_ca_are_refused() {
        let (ca, other) = (ca(), ca());
        let client = client_config(other.cert_pem(), None).unwrap();
        let err = handshake(client, serving(&ca), "localhost").unwrap_err();
        assert!(matches!(err, rustls::Error::InvalidCertificate(_)), "{err}");
    }

    #[test]
    fn client_certificates_are_optional_and_verified() {
        let ca = ca();
        let server = serving(&ca);
        let alice = ca.issue(&Profile::client("alice", &["dev"])).unwrap();
        let client = client_config(ca.cert_pem(), Some((&alice.cert_pem, &alice.key_pem))).unwrap();
        let certs = handshake(client, server.clone(), "localhost")
            .unwrap()
            .unwrap();
        assert_eq!(identity(&certs[0]).unwrap().common_name, "alice");

        let stranger = ca_issued_elsewhere();
        let client =
            client_config(ca.cert_pem(), Some((&stranger.cert_pem, &stranger.key_pem))).unwrap();
        let err = handshake(client, server, "localhost").unwrap_err();
        assert!(matches!(err, rustls::Error::InvalidCertificate(_)), "{err}");
    }

    #[test]
    fn a_serving_certificate_does_not_authenticate_a_client() {
        let ca = ca();
        let server = serving(&ca);
        let node = ca.issue(&Profile::server("node", &["node"], &[])).unwrap();
        let client = client_config(ca.cert_pem(), Some((&node.cert_pem, &node.key_pem))).unwrap();
        assert!(handshake(client, server, "localhost").is_err());
    }

    #[test]
    fn alpn_is_http_1_1() {
        let ca = ca();
        let server = serving(&ca);
        assert_eq!(server.alpn_protocols, [b"http/1.1".to_vec()]);
        let mut h2_only = (*client_config(ca.cert_pem(), None).unwrap()).clone();
        h2_only.alpn_protocols = vec![b"h2".to_vec()];
        assert!(handshake(Arc::new(h2_only), server, "localhost").is_err());
    }

    #[test]
    fn keys_must_match_their_certificates() {
        let ca = ca();
        let a = ca.issue(&Profile::server("a", &["a"], &[])).unwrap();
        let b = ca.issue(&Profile::server("b", &["b"], &[])).unwrap();
        assert!(matches!(
            server_config(&a.cert_pem, &b.key_pem, None),
            Err(Error::Tls(_))
        ));
        assert!(matches!(
            server_config("not pem", &a.key_pem, None),
            Err(Error::BadCertificate(_))
        ));
        assert!(matches!(
            client_config(ca.cert_pem(), Some((&a.cert_pem, "no key"))),
            Err(Error::BadKey(_))
        ));
    }

    #[test]
    fn a_serving_certificate_is_replaced_while_it_serves() {
        let ca = ca();
        let a = ca
            .issue(&Profile::server("a", &["a.example"], &[]))
            .unwrap();
        let b = ca
            .issue(&Profile::server("b", &["b.example"], &[]))
            .unwrap();
        let certificate = Arc::new(ServingCertificate::pending());
        let server = server_config_with(certificate.clone(), None).unwrap();
        // A new client each time: one that resumed a session would not look
        // at the certificate again.
        let client = || client_config(ca.cert_pem(), None).unwrap();
        assert!(handshake(client(), server.clone(), "a.example").is_err());
        certificate.replace(&a.cert_pem, &a.key_pem).unwrap();
        assert_eq!(handshake(client(), server.clone(), "a.example"), Ok(None));
        assert!(matches!(
            certificate.replace(&b.cert_pem, &a.key_pem),
            Err(Error::Tls(_))
        ));
        assert_eq!(handshake(client(), server.clone(), "a.example"), Ok(None));
        certificate.replace(&b.cert_pem, &b.key_pem).unwrap();
        assert!(handshake(client(), server.clone(), "a.example").is_err());
        assert_eq!(handshake(client(), server, "b.example"), Ok(None));
    }

    #[test]
    fn serving_certificates_are_verified_for_every_name() {
        let ca = ca();
        let ips = [
            IpAddr::V4(Ipv4Addr::new(10, 0, 0, 5)),
            Ipv4Addr::LOCALHOST.into(),
        ];
        let node = ca.issue(&Profile::server("n", &["node-1"], &ips)).unwrap();
        verify_serving(
            ca.cert_pem(),
            &node.cert_pem,
            &["node-1", "10.0.0.5", "127.0.0.1"],
        )
        .unwrap();
        for names in [&["node-1", "10.0.0.6"][..], &["node-2"]] {
            let err = verify_serving(ca.cert_pem(), &node.cert_pem, names).unwrap_err();
            assert!(matches!(err, Error::Tls(_)), "{names:?}: {err}");
        }
        let other = self::ca();
        let err = verify_serving(other.cert_pem(), &node.cert_pem, &["node-1"]).unwrap_err();
        assert!(matches!(err, Error::Tls(_)), "{err}");
        let client = ca.issue(&Profile::client("node-1", &[])).unwrap();
        assert!(verify_serving(ca.cert_pem(), &client.cert_pem, &["node-1"]).is_err());
        assert!(matches!(
            verify_serving(ca.cert_pem(), &node.cert_pem, &["not a name"]),
            Err(Error::BadProfile(_))
        ));
    }

    fn ca_issued_elsewhere() -> crate::Issued {
        ca().issue(&Profile::client("mallory", &[])).unwrap()
    }
}
