//! Kubeconfigs the server writes: the one in its data dir, for kubectl, and
//! those its own components use, each naming the server, the CA its
//! certificate comes from and a client certificate (or a token, for a node
//! that joins).

use std::io::{self, Write};
use std::os::unix::fs::OpenOptionsExt;
use std::path::Path;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;

/// Who a kubeconfig is for: the cluster's CA, and a client certificate and
/// its key, all PEM.
#[derive(Clone)]
pub struct Credentials<'a> {
    /// The CA the server's certificate comes from.
    pub ca_pem: &'a str,
    /// The client certificate.
    pub cert_pem: &'a str,
    /// Its private key.
    pub key_pem: &'a str,
}

impl std::fmt::Debug for Credentials<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Credentials").finish_non_exhaustive()
    }
}

/// A kubeconfig for the server at `url` with `credentials`; `user` names the
/// user entry.
pub fn render(url: &str, user: &str, credentials: &Credentials<'_>) -> String {
    let user_fields = format!(
        "client-certificate-data: {}\n    client-key-data: {}",
        STANDARD.encode(credentials.cert_pem),
        STANDARD.encode(credentials.key_pem),
    );
    document(url, credentials.ca_pem, user, &user_fields)
}

/// A kubeconfig for the server at `url`, whose certificate comes from
/// `ca_pem`, as `user` with a bearer `token`.
pub fn render_token(url: &str, ca_pem: &str, user: &str, token: &str) -> String {
    document(url, ca_pem, user, &format!("token: {token}"))
}

/// The kubeconfig of one cluster, one user (whose fields are given) and the
/// context of both.
fn document(url: &str, ca_pem: &str, user: &str, user_fields: &str) -> String {
    format!(
        "apiVersion: v1
kind: Config
clusters:
- name: wasmkube
  cluster:
    server: {url}
    certificate-authority-data: {ca}
users:
- name: {user}
  user:
    {user_fields}
contexts:
- name: wasmkube
  context:
    cluster: wasmkube
    user: {user}
current-context: wasmkube
preferences: {{}}
",
        ca = STANDARD.encode(ca_pem),
    )
}

/// Writes a kubeconfig to `path`, atomically, readable by its owner only
/// (it holds a private key).
pub fn write(path: &Path, kubeconfig: &str) -> io::Result<()> {
    let tmp = path.with_extension("tmp");
    let _ = std::fs::remove_file(&tmp);
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(&tmp)?;
    file.write_all(kubeconfig.as_bytes())?;
    file.sync_all()?;
    std::fs::rename(tmp, path)
}
