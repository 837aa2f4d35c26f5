//! Kubernetes' `EncryptionConfiguration` (`apiserver.config.k8s.io/v1`), read
//! from YAML or JSON and checked as the API server checks it, every error
//! naming the field it is about.
//!
//! Each item of `resources` lists resource names and the providers for them; a
//! resource's providers are those of every item naming it, in order. A store key
//! takes the providers of its resource (`secrets`), else of its group's wildcard
//! (`*.apps`, `*.` for the core group), else of `*.*`, else none: its values are
//! left as they are.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use serde::Deserialize;
use serde::de::IgnoredAny;
use wasmkube_store::Bytes;

use crate::provider::{Chain, ENCRYPTED, Key, Kind, Provider, TransformError};
use crate::resource::{self, GroupResource, Owner};

/// The `apiVersion` of the configurations read.
pub const API_VERSION: &str = "apiserver.config.k8s.io/v1";
/// The `kind` of the configurations read.
pub const KIND: &str = "EncryptionConfiguration";

/// Why an encryption configuration was refused.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The file could not be read.
    #[error("reading the encryption configuration {path}: {source}")]
    Read {
        /// The file.
        path: PathBuf,
        /// What the system said.
        #[source]
        source: std::io::Error,
    },
    /// The document is not YAML or JSON of an `EncryptionConfiguration`'s shape
    /// (a field of the wrong type, or one it does not have). The message names
    /// the field (`resources[0].providers[1]: unknown field …`) and the line.
    #[error("{0}")]
    Syntax(String),
    /// The document is of another kind or version.
    #[error("expected apiVersion {API_VERSION} and kind {KIND}, got {api_version:?} and {kind:?}")]
    Type {
        /// The document's `apiVersion`.
        api_version: String,
        /// The document's `kind`.
        kind: String,
    },
    /// A field that must be given is missing or empty.
    #[error("{field}: {what} is required")]
    Required {
        /// The field.
        field: String,
        /// What must be there.
        what: &'static str,
    },
    /// A provider item names no provider, more than one, or one not supported.
    #[error("{field}: {reason}")]
    Provider {
        /// The provider item (`resources[0].providers[1]`).
        field: String,
        /// What is wrong with it.
        reason: &'static str,
    },
    /// A key's secret is not base64.
    #[error("{field}: secrets must be base64 encoded")]
    Base64 {
        /// The secret's field.
        field: String,
    },
    /// A key's secret decodes to a length its provider does not take.
    #[error("{field}: {provider} keys are {expected} bytes long, this one is {length}")]
    KeyLength {
        /// The secret's field.
        field: String,
        /// The provider.
        provider: &'static str,
        /// The lengths it takes (`16, 24 or 32`).
        expected: String,
        /// The length of this secret.
        length: usize,
    },
    /// A resource name Kubernetes refuses, or a list whose names overlap.
    #[error("{field}: {name:?}: {reason}")]
    Resource {
        /// The name's field (`resources[0].resources[2]`).
        field: String,
        /// The name.
        name: String,
        /// Why it is refused.
        reason: &'static str,
    },
    /// A resource comes after a wildcard of an earlier item that covers it, so
    /// its providers would never be used.
    #[error("{field}: resource {resource:?} is masked by earlier rule {rule:?}")]
    Masked {
        /// The name's field.
        field: String,
        /// The name.
        resource: String,
        /// The wildcard before it.
        rule: String,
    },
}

/// The document, as written.
#[derive(Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
struct Document {
    #[serde(default)]
    api_version: String,
    #[serde(default)]
    kind: String,
    #[serde(default)]
    resources: Vec<Rule>,
}

/// One item of `resources`.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Rule {
    #[serde(default)]
    resources: Vec<String>,
    #[serde(default)]
    providers: Vec<ProviderItem>,
}

/// One item of `providers`: exactly one field is set.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ProviderItem {
    aescbc: Option<Keys>,
    aesgcm: Option<Keys>,
    secretbox: Option<Keys>,
    identity: Option<Empty>,
    kms: Option<IgnoredAny>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Keys {
    #[serde(default)]
    keys: Vec<KeyItem>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct KeyItem {
    #[serde(default)]
    name: String,
    #[serde(default)]
    secret: String,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Empty {}

/// An encryption configuration, checked and ready: which providers the values of
/// each store key are written and read with.
#[derive(Debug)]
pub struct EncryptionConfig {
    /// Every built-in storage root with its resource.
    roots: Vec<(String, GroupResource)>,
    /// The providers of each of `roots`.
    builtin: Vec<Option<Chain>>,
    /// The providers named for one resource, by group, then resource.
    exact: HashMap<String, HashMap<String, Chain>>,
    /// The providers named for every resource of a group (`*.apps`, `*.`).
    groups: HashMap<String, Chain>,
    /// The providers named for every resource (`*.*`).
    everything: Option<Chain>,
}

impl EncryptionConfig {
    /// Reads and checks the configuration in `path`.
    pub fn read(path: &Path) -> Result<EncryptionConfig, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
            path: path.to_owned(),
            source,
        })?;
        EncryptionConfig::parse(&text)
    }

    /// Checks the configuration `text` (YAML or JSON).
    pub fn parse(text: &str) -> Result<EncryptionConfig, ConfigError> {
        if text.trim().is_empty() {
            return Err(ConfigError::Required {
                field: "the document".into(),
                what: "an EncryptionConfiguration",
            });
        }
        let document: Document =
            serde_yaml_ng::from_str(text).map_err(|e| ConfigError::Syntax(e.to_string()))?;
        if document.api_version != API_VERSION || document.kind != KIND {
            return Err(ConfigError::Type {
                api_version: document.api_version,
                kind: document.kind,
            });
        }
        if document.resources.is_empty() {
            return Err(ConfigError::Required {
                field: "resources".into(),
                what: "at least one item",
            });
        }
        let mut named: HashMap<GroupResource, Chain> = HashMap::new();
        for (i, rule) in document.resources.iter().enumerate() {
            let field = format!("resources[{i}]");
            let names = check_names(&rule.resources, &field)?;
            let chain = providers(&rule.providers, &field)?;
            for (j, name) in names.into_iter().enumerate() {
                let masking = [
                    GroupResource {
                        group: name.group.clone(),
                        resource: "*".into(),
                    },
                    GroupResource::parse("*.*"),
                ];
                if let Some(rule) = masking.iter().find(|m| named.contains_key(m)) {
                    return Err(ConfigError::Masked {
                        field: format!("{field}.resources[{j}]"),
                        resource: name.to_string(),
                        rule: rule.to_string(),
                    });
                }
                if name.resource != "*"
                    && resource::is_builtin_group(&name.group)
                    && !resource::is_builtin(&name.group, &name.resource)
                {
                    tracing::warn!(
                        field = %format!("{field}.resources[{j}]"),
                        resource = %name,
                        "the encryption configuration names a resource that is not stored here; it encrypts nothing"
                    );
                }
                named
                    .entry(name)
                    .or_default()
                    .0
                    .extend(chain.0.iter().cloned());
            }
        }
        Ok(EncryptionConfig::from_named(named))
    }

    /// The tables for looking keys up, from the providers of each name.
    fn from_named(named: HashMap<GroupResource, Chain>) -> EncryptionConfig {
        let mut config = EncryptionConfig {
            roots: resource::builtin_roots(),
            builtin: Vec::new(),
            exact: HashMap::new(),
            groups: HashMap::new(),
            everything: None,
        };
        for (name, chain) in named {
            if name.is_everything() {
                config.everything = Some(chain);
            } else if name.resource == "*" {
                config.groups.insert(name.group, chain);
            } else {
                config
                    .exact
                    .entry(name.group)
                    .or_default()
                    .insert(name.resource, chain);
            }
        }
        config.builtin = config
            .roots
            .iter()
            .map(|(_, gr)| config.lookup(&gr.group, &gr.resource).cloned())
            .collect();
        config
    }

    /// The providers of `resource` in `group`.
    fn lookup(&self, group: &str, resource: &str) -> Option<&Chain> {
        self.exact
            .get(group)
            .and_then(|resources| resources.get(resource))
            .or_else(|| self.groups.get(group))
            .or(self.everything.as_ref())
    }

    /// The providers of the values stored under `key`; `None` when they are kept
    /// as they are.
    fn chain(&self, key: &str) -> Option<&Chain> {
        match resource::owner(&self.roots, key)? {
            Owner::Builtin(index) => self.builtin[index].as_ref(),
            Owner::Custom { group, resource } => self.lookup(group, resource),
            Owner::Other => self.everything.as_ref(),
        }
    }

    /// Whether values written under `key` are encrypted (its resource's first
    /// provider is not `identity`).
    pub fn encrypts(&self, key: &str) -> bool {
        self.chain(key)
            .and_then(|chain| chain.0.first())
            .is_some_and(|provider| provider.encrypts())
    }

    /// What to store for `value` written under `key`: encrypted with the first
    /// provider of its resource, or `value` itself.
    pub fn seal(&self, key: &str, value: Bytes) -> Result<Bytes, TransformError> {
        let Some(chain) = self.chain(key) else {
            return Ok(value);
        };
        Ok(chain.seal(key, &value)?.map_or(value, Bytes::from))
    }

    /// What `stored`, read from `key`, decrypts to. A value that is not
    /// encrypted is returned as it is, so values written before encryption was
    /// turned on stay readable.
    pub fn open(&self, key: &str, stored: Bytes) -> Result<Bytes, TransformError> {
        let Some(chain) = self.chain(key) else {
            if stored.starts_with(ENCRYPTED) {
                return Err(TransformError::NotConfigured {
                    key: key.to_owned(),
                });
            }
            return Ok(stored);
        };
        Ok(chain.open(key, &stored)?.map_or(stored, Bytes::from))
    }
}

/// The names of one item, checked.
fn check_names(names: &[String], field: &str) -> Result<Vec<GroupResource>, ConfigError> {
    if names.is_empty() {
        return Err(ConfigError::Required {
            field: format!("{field}.resources"),
            what: "at least one resource",
        });
    }
    let parsed: Vec<GroupResource> = names.iter().map(|n| GroupResource::parse(n)).collect();
    for (j, (name, gr)) in names.iter().zip(&parsed).enumerate() {
        if let Some(reason) = gr.refusal(name) {
            return Err(ConfigError::Resource {
                field: format!("{field}.resources[{j}]"),
                name: name.clone(),
                reason,
            });
        }
    }
    for (j, gr) in parsed.iter().enumerate() {
        for other in &parsed[..j] {
            let reason = if gr == other {
                "the same resource is named twice"
            } else if gr.overlaps(other) {
                "a wildcard in the same list covers it (as \"*.\" covers \"secrets\"), so one of them would be masked"
            } else {
                continue;
            };
            return Err(ConfigError::Resource {
                field: format!("{field}.resources[{j}]"),
                name: names[j].clone(),
                reason,
            });
        }
    }
    Ok(parsed)
}

/// The providers of one item, checked and with their keys ready.
fn providers(items: &[ProviderItem], field: &str) -> Result<Chain, ConfigError> {
    if items.is_empty() {
        return Err(ConfigError::Required {
            field: format!("{field}.providers"),
            what: "at least one provider",
        });
    }
    let mut chain = Chain::default();
    for (j, item) in items.iter().enumerate() {
        let field = format!("{field}.providers[{j}]");
        let given = [
            (Kind::Aescbc, item.aescbc.as_ref()),
            (Kind::Aesgcm, item.aesgcm.as_ref()),
            (Kind::Secretbox, item.secretbox.as_ref()),
        ];
        let set = given.iter().filter(|(_, keys)| keys.is_some()).count()
            + usize::from(item.identity.is_some())
            + usize::from(item.kms.is_some());
        if set > 1 {
            return Err(ConfigError::Provider {
                field,
                reason: "names more than one provider: give each provider its own item",
            });
        }
        if item.kms.is_some() {
            return Err(ConfigError::Provider {
                field,
                reason: "kms providers are not supported (aescbc, aesgcm, secretbox and identity are)",
            });
        }
        let provider = if item.identity.is_some() {
            Provider::identity()
        } else if let Some((kind, Some(keys))) = given.iter().find(|(_, keys)| keys.is_some()) {
            let field = format!("{field}.{}.keys", kind.name());
            Provider::new(*kind, keys_of(*kind, &keys.keys, &field)?)
        } else {
            return Err(ConfigError::Provider {
                field,
                reason: "names no provider: expected one of aescbc, aesgcm, secretbox or identity",
            });
        };
        chain.0.push(Arc::new(provider));
    }
    Ok(chain)
}

/// The keys of a provider of `kind`, checked.
fn keys_of(kind: Kind, items: &[KeyItem], field: &str) -> Result<Vec<Key>, ConfigError> {
    if items.is_empty() {
        return Err(ConfigError::Required {
            field: field.to_owned(),
            what: "at least one key",
        });
    }
    let mut keys = Vec::new();
    for (k, item) in items.iter().enumerate() {
        let field = format!("{field}[{k}]");
        if item.name.is_empty() {
            return Err(ConfigError::Required {
                field: format!("{field}.name"),
                what: "a key's name",
            });
        }
        if item.secret.is_empty() {
            return Err(ConfigError::Required {
                field: format!("{field}.secret"),
                what: "a key's secret",
            });
        }
        let secret = STANDARD
            .decode(&item.secret)
            .map_err(|_| ConfigError::Base64 {
                field: format!("{field}.secret"),
            })?;
        let key = Key::new(kind, item.name.clone(), &secret).ok_or_else(|| {
            let lengths: Vec<String> = kind.key_lengths().iter().map(|l| l.to_string()).collect();
            let expected = match lengths.split_last() {
                Some((last, [])) => last.clone(),
                Some((last, rest)) => format!("{} or {last}", rest.join(", ")),
                None => String::new(),
            };
            ConfigError::KeyLength {
                field: format!("{field}.secret"),
                provider: kind.name(),
                expected,
                length: secret.len(),
            }
        })?;
        keys.push(key);
    }
    Ok(keys)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// 32 bytes, base64.
    const KEY32: &str = "AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8=";
    /// 16 bytes, base64.
    const KEY16: &str = "ICEiIyQlJicoKSorLC0uLw==";

    fn config(resources: &str) -> String {
        format!("apiVersion: {API_VERSION}\nkind: {KIND}\nresources:\n{resources}")
    }

    fn error(resources: &str) -> String {
        EncryptionConfig::parse(&config(resources))
            .unwrap_err()
            .to_string()
    }

    #[test]
    fn reads_every_provider_from_yaml_and_json() {
        let yaml = config(&format!(
            "
  - resources: [secrets, configmaps]
    providers:
      - aescbc:
          keys:
            - name: key1
              secret: {KEY32}
      - aesgcm:
          keys:
            - name: key2
              secret: {KEY16}
      - secretbox:
          keys:
            - name: key3
              secret: {KEY32}
      - identity: {{}}
"
        ));
        let config = EncryptionConfig::parse(&yaml).unwrap();
        assert!(config.encrypts("/registry/secrets/default/db"));
        assert!(config.encrypts("/registry/configmaps/default/settings"));
        assert!(!config.encrypts("/registry/pods/default/web"));

        let json = format!(
            r#"{{"apiVersion": "{API_VERSION}", "kind": "{KIND}", "resources": [
                {{"resources": ["secrets"], "providers": [
                    {{"identity": {{}}}},
                    {{"aesgcm": {{"keys": [{{"name": "k", "secret": "{KEY32}"}}]}}}}
                ]}}
            ]}}"#
        );
        let config = EncryptionConfig::parse(&json).unwrap();
        assert!(!config.encrypts("/registry/secrets/default/db"));
    }

    #[test]
    fn errors_name_the_field() {
        let aescbc = |secret: &str| {
            format!(
                "  - resources: [secrets]\n    providers:\n      - aescbc:\n          keys:\n            - name: k\n              secret: {secret:?}\n"
            )
        };
        assert_eq!(
            error(&aescbc("not base64!")),
            "resources[0].providers[0].aescbc.keys[0].secret: secrets must be base64 encoded"
        );
        assert_eq!(
            error(&aescbc("AAECAwQFBgcICQ==")),
            "resources[0].providers[0].aescbc.keys[0].secret: \
             aescbc keys are 16, 24 or 32 bytes long, this one is 10"
        );
        assert_eq!(
            error(&format!(
                "  - resources: [secrets]\n    providers:\n      - secretbox:\n          keys:\n            - {{name: k, secret: {KEY16}}}\n"
            )),
            "resources[0].providers[0].secretbox.keys[0].secret: \
             secretbox keys are 32 bytes long, this one is 16"
        );
        let unknown = error("  - resources: [secrets]\n    providers:\n      - rot13: {}\n");
        assert!(
            unknown.starts_with("resources[0].providers[0]: unknown field `rot13`"),
            "{unknown}"
        );
        assert_eq!(
            error("  - resources: [secrets]\n    providers: []\n"),
            "resources[0].providers: at least one provider is required"
        );
        assert_eq!(
            error("  - resources: [secrets]\n    providers:\n      - aescbc: {keys: []}\n"),
            "resources[0].providers[0].aescbc.keys: at least one key is required"
        );
        assert_eq!(
            error(&format!(
                "  - resources: [secrets]\n    providers:\n      - aescbc:\n          keys:\n            - {{secret: {KEY32}}}\n"
            )),
            "resources[0].providers[0].aescbc.keys[0].name: a key's name is required"
        );
        assert_eq!(
            error(
                "  - resources: [secrets]\n    providers:\n      - {identity: {}, aescbc: {keys: []}}\n"
            ),
            "resources[0].providers[0]: names more than one provider: give each provider its own item"
        );
        assert!(
            error("  - resources: [secrets]\n    providers:\n      - kms: {name: x, endpoint: unix:///k.sock}\n")
                .contains("kms providers are not supported")
        );
        assert_eq!(
            error("  - resources: []\n    providers:\n      - identity: {}\n"),
            "resources[0].resources: at least one resource is required"
        );
        let wrong_type = error("    secrets");
        assert!(
            wrong_type.starts_with("resources: invalid type"),
            "{wrong_type}"
        );
        assert_eq!(
            EncryptionConfig::parse("apiVersion: v1\nkind: Secret\n")
                .unwrap_err()
                .to_string(),
            format!("expected apiVersion {API_VERSION} and kind {KIND}, got \"v1\" and \"Secret\"")
        );
    }

    #[test]
    fn resource_names_are_checked_as_kubernetes_checks_them() {
        let rule = |names: &str| {
            format!("  - resources: {names}\n    providers:\n      - identity: {{}}\n")
        };
        assert_eq!(
            error(&rule("[Secrets]")),
            "resources[0].resources[0]: \"Secrets\": resource names are lower case"
        );
        assert!(
            error(&rule("[secrets, \"*.\"]"))
                .starts_with("resources[0].resources[1]: \"*.\": a wildcard")
        );
        assert!(error(&rule("[secrets, secrets]")).contains("named twice"));
        assert_eq!(
            error(&format!("{}{}", rule("[\"*.\"]"), rule("[secrets]"))),
            "resources[1].resources[0]: resource \"secrets\" is masked by earlier rule \"*.\""
        );
        assert_eq!(
            error(&format!(
                "{}{}",
                rule("[\"*.*\"]"),
                rule("[deployments.apps]")
            )),
            "resources[1].resources[0]: resource \"deployments.apps\" is masked by earlier rule \"*.*\""
        );
    }

    #[test]
    fn keys_take_the_providers_of_their_resource_then_group_then_everything() {
        let yaml = config(&format!(
            "
  - resources: [secrets, deployments.apps, widgets.example.com]
    providers:
      - identity: {{}}
  - resources: [\"*.\", \"*.example.com\"]
    providers:
      - aesgcm:
          keys: [{{name: k, secret: {KEY32}}}]
  - resources: [\"*.*\"]
    providers:
      - secretbox:
          keys: [{{name: k, secret: {KEY32}}}]
"
        ));
        let config = EncryptionConfig::parse(&yaml).unwrap();
        let sealed = |key: &str| {
            let value = config.seal(key, Bytes::from_static(b"{}")).unwrap();
            let prefix = value
                .split(|b| *b == b':')
                .take(3)
                .collect::<Vec<_>>()
                .join(&b':');
            String::from_utf8_lossy(&prefix).into_owned()
        };
        assert_eq!(sealed("/registry/secrets/default/db"), "{}");
        assert_eq!(sealed("/registry/deployments/default/web"), "{}");
        assert_eq!(sealed("/registry/example.com/widgets/default/w"), "{}");
        assert_eq!(sealed("/registry/configmaps/default/c"), "k8s:enc:aesgcm");
        assert_eq!(
            sealed("/registry/services/specs/default/s"),
            "k8s:enc:aesgcm"
        );
        assert_eq!(
            sealed("/registry/example.com/gadgets/default/g"),
            "k8s:enc:aesgcm"
        );
        assert_eq!(
            sealed("/registry/replicasets/default/r"),
            "k8s:enc:secretbox"
        );
        assert_eq!(sealed("/registry/other.org/things/t"), "k8s:enc:secretbox");
        assert_eq!(
            sealed("/registry/services/nodeports/30001"),
            "k8s:enc:secretbox"
        );
        assert_eq!(sealed("/elsewhere"), "{}");
    }

    #[test]
    fn a_resource_named_twice_reads_with_the_providers_of_both_items() {
        let one = |name: &str, secret: &str| {
            format!(
                "  - resources: [secrets]\n    providers:\n      - aescbc:\n          keys: [{{name: {name}, secret: {secret}}}]\n"
            )
        };
        let old = EncryptionConfig::parse(&config(&one("old", KEY16))).unwrap();
        let both = EncryptionConfig::parse(&config(&format!(
            "{}{}",
            one("new", KEY32),
            one("old", KEY16)
        )))
        .unwrap();
        let key = "/registry/secrets/default/db";
        let sealed = old.seal(key, Bytes::from_static(b"{\"a\":1}")).unwrap();
        assert_eq!(both.open(key, sealed).unwrap(), &b"{\"a\":1}"[..]);
        let resealed = both.seal(key, Bytes::from_static(b"{}")).unwrap();
        assert!(resealed.starts_with(b"k8s:enc:aescbc:v1:new:"));
    }

    #[test]
    fn encrypted_values_of_resources_not_configured_are_errors() {
        let config = EncryptionConfig::parse(&config(
            "  - resources: [secrets]\n    providers:\n      - identity: {}\n",
        ))
        .unwrap();
        let key = "/registry/configmaps/default/c";
        assert_eq!(
            config.open(key, Bytes::from_static(b"{}")).unwrap(),
            &b"{}"[..]
        );
        let err = config
            .open(key, Bytes::from_static(b"k8s:enc:aescbc:v1:k:0123"))
            .unwrap_err();
        assert!(matches!(err, TransformError::NotConfigured { .. }), "{err}");
    }
}
