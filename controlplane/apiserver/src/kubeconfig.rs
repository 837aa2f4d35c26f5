//! The kubeconfig the server writes into its data dir, so kubectl can use it as is.

use std::io;
use std::path::Path;

/// A kubeconfig for a plain-HTTP server at `url`.
pub fn render(url: &str) -> String {
    format!(
        "apiVersion: v1
kind: Config
clusters:
- name: wasmkube
  cluster:
    server: {url}
users:
- name: wasmkube
  user: {{}}
contexts:
- name: wasmkube
  context:
    cluster: wasmkube
    user: wasmkube
current-context: wasmkube
preferences: {{}}
"
    )
}

/// Writes the kubeconfig for `url` to `path`, atomically.
pub fn write(path: &Path, url: &str) -> io::Result<()> {
    let tmp = path.with_extension("tmp");
    std::fs::write(&tmp, render(url))?;
    std::fs::rename(tmp, path)
}
