//! Kubeconfigs the server writes: the one in its data dir, for kubectl, and
//! those its own components use, each naming the server, the CA its
//! certificate comes from and a client certificate.

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
    let data = |pem: &str| STANDARD.encode(pem);
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
    client-certificate-data: {cert}
    client-key-data: {key}
contexts:
- name: wasmkube
  context:
    cluster: wasmkube
    user: {user}
current-context: wasmkube
preferences: {{}}
",
        ca = data(credentials.ca_pem),
        cert = data(credentials.cert_pem),
        key = data(credentials.key_pem),
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
