//! The cluster's certificates and TLS serving.
//!
//! This crate owns the cluster certificate authority ([`Ca`]: created on first
//! start or brought by the operator), the certificates it issues (client
//! certificates whose common name is a user and whose organizations are its
//! groups, serving certificates for names and addresses, and certificates for
//! PKCS#10 requests such as the ones nodes send through
//! CertificateSigningRequests), reading an [`Identity`] back from a
//! certificate and what a request asks for ([`certificate_request`]),
//! writing keys to disk, and the TLS side of serving and calling:
//! [`server_config`], [`client_config`] and [`serve`], an accept loop for an
//! axum router that hands every request the client's verified certificates
//! ([`PeerCertificates`]), and what a server presents before it is trusted
//! ([`presented_chain`]).
//!
//! It knows certificates and connections, not who may hold them: deciding
//! which requests to approve and what a user may do belongs to the API server
//! and its authorizers. It must not depend on the API types, the store, the
//! runtime or the agent.
//!
//! Only the ring crypto provider is linked (two providers make rustls panic
//! when it picks a default), and every rustls configuration here is built with
//! that provider explicitly, so nothing depends on a process-wide default.

mod ca;
mod der;
mod files;
mod keys;
mod presented;
mod request;
mod serve;
mod tls;
mod x509;

use std::io;
use std::path::PathBuf;

pub use ca::{CA_VALIDITY, Ca, Issued, LEAF_VALIDITY, Profile, Usage, csr};
pub use files::{ensure_private_dir, write_private};
pub use keys::{KeyPem, key_pair_load_or_create, key_pair_of};
pub use presented::{ClientStream, connect, presented_chain};
pub use request::{CertificateRequest, certificate_request};
pub use rustls::ClientConfig;
pub use serve::{HANDSHAKE_TIMEOUT, PeerCertificates, serve};
pub use tls::{
    ServingCertificate, client_config, server_config, server_config_with, verify_serving,
};
pub use x509::{Identity, certificates_pem, identity, pin_of};

/// What can go wrong with certificates, keys and TLS configurations.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A file or directory could not be read or written.
    #[error("{}: {source}", path.display())]
    Io {
        /// The file or directory.
        path: PathBuf,
        /// What the system said.
        #[source]
        source: io::Error,
    },
    /// Text or bytes that should hold a certificate do not.
    #[error("not a usable certificate: {0}")]
    BadCertificate(String),
    /// Text that should hold a private key does not.
    #[error("not a usable private key: {0}")]
    BadKey(String),
    /// A certificate and key cannot serve as the certificate authority.
    #[error("not a usable certificate authority: {0}")]
    BadCa(String),
    /// A certificate signing request is malformed, its signature does not
    /// verify, or it asks for something that cannot be issued.
    #[error("certificate signing request refused: {0}")]
    BadRequest(String),
    /// A profile names something a certificate cannot carry.
    #[error("cannot issue a certificate: {0}")]
    BadProfile(String),
    /// Generating a key, a certificate or a request failed.
    #[error("generating a certificate: {0}")]
    Generate(#[source] rcgen::Error),
    /// A structure this crate just generated could not be taken apart again.
    #[error("malformed DER in a generated {0}")]
    Malformed(&'static str),
    /// rustls refused a configuration (a certificate or key it cannot use, or
    /// a key that does not belong to its certificate).
    #[error("TLS configuration: {0}")]
    Tls(#[source] rustls::Error),
    /// A TLS server could not be reached, or its handshake failed.
    #[error("TLS handshake with {address}: {why}")]
    Handshake {
        /// The server's `host:port`.
        address: String,
        /// What went wrong.
        why: String,
    },
    /// A verifier of certificates could not be built.
    #[error("certificate verifier: {0}")]
    Verifier(#[source] rustls::server::VerifierBuilderError),
}

/// The result of this crate's operations.
pub type Result<T, E = Error> = std::result::Result<T, E>;
