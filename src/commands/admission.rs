//! The built-in admission policies a server runs (Wasm components shipped in
//! the executable), in Kubernetes' order, each with the writes it is called
//! for and its settings: those an `AdmissionConfiguration` file gives, as
//! Kubernetes' `--admission-control-config-file` does.
//!
//! ```yaml
//! apiVersion: apiserver.config.k8s.io/v1
//! kind: AdmissionConfiguration
//! plugins:
//! - name: PodSecurity
//!   configuration:
//!     apiVersion: pod-security.admission.config.k8s.io/v1
//!     kind: PodSecurityConfiguration
//!     defaults: {enforce: baseline, warn: restricted}
//!     exemptions: {namespaces: [kube-system]}
//! ```

use std::path::Path;

use anyhow::{Context, Result, bail};
use serde_json::{Value, json};
use wasmkube_apiserver::{AdmissionPlacement, BuiltinPolicy};
use wasmkube_plugin_host::{PluginHost, builtin};

/// The writes each built-in policy is called for, and whether it mutates.
fn placement(name: &str) -> Value {
    let pods = json!([{"operations": ["CREATE"], "apiGroups": [""], "apiVersions": ["v1"], "resources": ["pods"]}]);
    match name {
        "NamespaceLifecycle" => json!({"rules": [{"operations": ["CREATE", "DELETE"],
            "apiGroups": ["*"], "apiVersions": ["*"], "resources": ["*"]}]}),
        "LimitRanger" | "ServiceAccount" => json!({"rules": pods, "mutating": true}),
        "ResourceQuota" => json!({"rules": [{"operations": ["CREATE"], "apiGroups": ["*"],
            "apiVersions": ["*"], "resources": ["*"], "scope": "Namespaced"}]}),
        _ => json!({"rules": [
            {"operations": ["CREATE"], "apiGroups": [""], "apiVersions": ["v1"],
             "resources": ["pods", "replicationcontrollers", "podtemplates"]},
            {"operations": ["CREATE"], "apiGroups": ["apps"], "apiVersions": ["v1"],
             "resources": ["deployments", "replicasets", "statefulsets", "daemonsets"]},
            {"operations": ["CREATE"], "apiGroups": ["batch"], "apiVersions": ["v1"],
             "resources": ["jobs", "cronjobs"]},
        ]}),
    }
}

/// The built-in policies on `plugins`' engine, with the settings of the
/// AdmissionConfiguration in `config`, if any.
pub fn builtin(plugins: &PluginHost, config: Option<&Path>) -> Result<Vec<BuiltinPolicy>> {
    let settings = match config {
        Some(file) => configurations(file)?,
        None => Vec::new(),
    };
    builtin::ADMISSION
        .iter()
        .map(|policy| {
            let component = plugins
                .builtin(policy)
                .with_context(|| format!("loading the admission policy {}", policy.name))?;
            let placement: AdmissionPlacement = serde_json::from_value(placement(policy.name))
                .expect("the built-in placements decode");
            let settings = settings
                .iter()
                .find(|(name, _)| name == policy.name)
                .map_or_else(|| json!({}), |(_, s)| s.clone());
            Ok(BuiltinPolicy {
                name: policy.name.to_owned(),
                component,
                placement,
                settings,
            })
        })
        .collect()
}

/// Each plugin's `configuration` in the AdmissionConfiguration `file`.
fn configurations(file: &Path) -> Result<Vec<(String, Value)>> {
    let text =
        std::fs::read_to_string(file).with_context(|| format!("reading {}", file.display()))?;
    let config: Value = serde_yaml_ng::from_str(&text)
        .with_context(|| format!("{} is not YAML", file.display()))?;
    if config["kind"] != "AdmissionConfiguration" {
        bail!("{}: kind must be AdmissionConfiguration", file.display());
    }
    let mut found = Vec::new();
    for plugin in config["plugins"].as_array().into_iter().flatten() {
        let Some(name) = plugin["name"].as_str() else {
            bail!("{}: each plugin needs a name", file.display());
        };
        if !builtin::ADMISSION.iter().any(|p| p.name == name) {
            bail!(
                "{}: {name} is not a built-in admission policy",
                file.display()
            );
        }
        found.push((name.to_owned(), plugin["configuration"].clone()));
    }
    Ok(found)
}
