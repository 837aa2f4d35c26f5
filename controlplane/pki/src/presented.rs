//! What a TLS server presents before it is trusted: the certificates of its
//! handshake, read without verifying them, so that a node joining a cluster
//! can find the cluster CA among them and check it against the pin it was
//! given before it trusts the server with anything; and connecting to a
//! server once it is trusted.

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::{CryptoProvider, verify_tls12_signature, verify_tls13_signature};
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::{ClientConfig, DigitallySignedStruct, SignatureScheme};
use tokio::net::TcpStream;
use tokio_rustls::TlsConnector;

use crate::x509::to_pem;
use crate::{Error, Result};

/// How long the connection and the handshake may take.
const TIMEOUT: Duration = Duration::from_secs(10);

/// A TLS connection to `address` (`host:port`) with `config`, the server's
/// certificate checked for `server_name` as `config` checks it.
pub async fn connect(
    address: &str,
    server_name: &str,
    config: Arc<ClientConfig>,
) -> Result<ClientStream> {
    let refused = |why: String| Error::Handshake {
        address: address.to_owned(),
        why,
    };
    let name = ServerName::try_from(server_name.to_owned())
        .map_err(|e| refused(format!("{server_name:?} is no server name: {e}")))?;
    let handshake = async {
        let stream = TcpStream::connect(address)
            .await
            .map_err(|e| refused(e.to_string()))?;
        TlsConnector::from(config)
            .connect(name, stream)
            .await
            .map_err(|e| refused(e.to_string()))
    };
    tokio::time::timeout(TIMEOUT, handshake)
        .await
        .map_err(|_| refused(format!("no handshake within {}s", TIMEOUT.as_secs())))?
}

/// A TLS connection this crate opened.
pub type ClientStream = tokio_rustls::client::TlsStream<TcpStream>;

/// The certificates the TLS server at `address` (`host:port`) presents for
/// `server_name`, PEM, its own first: read, not trusted. Only the handshake
/// takes place; nothing is sent after it. The server's signature of the
/// handshake is still checked against the key of its certificate.
pub async fn presented_chain(address: &str, server_name: &str) -> Result<Vec<String>> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let config = ClientConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()
        .map_err(Error::Tls)?
        .dangerous()
        .with_custom_certificate_verifier(Arc::new(Unverified(provider)))
        .with_no_client_auth();
    let stream = connect(address, server_name, Arc::new(config)).await?;
    let refused = |why: String| Error::Handshake {
        address: address.to_owned(),
        why,
    };
    let (_, connection) = stream.get_ref();
    let chain = connection
        .peer_certificates()
        .ok_or_else(|| refused("the server presented no certificate".into()))?;
    Ok(chain
        .iter()
        .map(|cert| to_pem("CERTIFICATE", cert.to_vec()))
        .collect())
}

/// Accepts any certificate, checking only that the handshake is signed by
/// its key.
struct Unverified(Arc<CryptoProvider>);

impl fmt::Debug for Unverified {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Unverified").finish_non_exhaustive()
    }
}

impl ServerCertVerifier for Unverified {
    fn verify_server_cert(
        &self,
        _end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        verify_tls12_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        verify_tls13_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.0.signature_verification_algorithms.supported_schemes()
    }
}

#[cfg(test)]
mod tests {
    use std::net::{IpAddr, Ipv4Addr};

    use tokio::net::TcpListener;
    use tokio_rustls::TlsAcceptor;

    use super::*;
    use crate::{Ca, Profile, pin_of, server_config};

    #[tokio::test]
    async fn the_presented_chain_is_read_untrusted() {
        let dir = tempfile::tempdir().unwrap();
        let ca = Ca::load_or_create(dir.path()).unwrap();
        let loopback = IpAddr::V4(Ipv4Addr::LOCALHOST);
        let serving = ca
            .issue(&Profile::server("apiserver", &[], &[loopback]))
            .unwrap();
        let chain = format!("{}{}", serving.cert_pem, ca.cert_pem());
        let config = server_config(&chain, &serving.key_pem, None).unwrap();
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let address = listener.local_addr().unwrap().to_string();
        tokio::spawn(async move {
            let (stream, _) = listener.accept().await.unwrap();
            let _ = TlsAcceptor::from(config).accept(stream).await;
        });
        let presented = presented_chain(&address, "127.0.0.1").await.unwrap();
        assert_eq!(presented.len(), 2);
        assert_eq!(pin_of(&presented[1]).unwrap(), ca.pin());
        assert_eq!(presented[0], serving.cert_pem);

        let closed = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let nobody = closed.local_addr().unwrap().to_string();
        drop(closed);
        let err = presented_chain(&nobody, "127.0.0.1").await.unwrap_err();
        assert!(matches!(err, Error::Handshake { .. }), "{err}");
    }
}
