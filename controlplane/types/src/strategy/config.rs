//! Config maps and secrets: the keys of their data maps are config keys, and a
//! secret is `Opaque` unless it says what it holds; its `stringData` is
//! written into its `data`.

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use serde_json::{Value, json};

use super::{Strategy, fill};
use crate::field::FieldError;
use crate::validation::regex_error;

/// Config maps.
#[derive(Debug)]
pub(crate) struct ConfigMaps;

/// The strategy of config maps.
pub(crate) static CONFIG_MAPS: ConfigMaps = ConfigMaps;

impl Strategy for ConfigMaps {
    fn validate(&self, object: &Value) -> Vec<FieldError> {
        config_keys(object, &["data", "binaryData"])
    }
}

/// Secrets.
#[derive(Debug)]
pub(crate) struct Secrets;

/// The strategy of secrets.
pub(crate) static SECRETS: Secrets = Secrets;

impl Strategy for Secrets {
    fn apply_defaults(&self, secret: &mut Value) {
        fill(secret, "/type", json!("Opaque"));
        // As Kubernetes reads a secret: what `stringData` holds is written
        // into `data`, over what it had, and is not kept.
        let strings = secret.as_object_mut().and_then(|s| s.remove("stringData"));
        for (key, value) in strings
            .as_ref()
            .and_then(Value::as_object)
            .into_iter()
            .flatten()
        {
            let value = STANDARD.encode(value.as_str().unwrap_or_default());
            secret["data"][key] = json!(value);
        }
    }

    fn validate(&self, secret: &Value) -> Vec<FieldError> {
        config_keys(secret, &["data"])
    }
}

/// What is wrong with the keys of an object's data `maps`.
fn config_keys(object: &Value, maps: &[&str]) -> Vec<FieldError> {
    const FORMAT: &str = "[-._a-zA-Z0-9]+";
    let mut errors = Vec::new();
    for map in maps {
        for key in object[*map]
            .as_object()
            .into_iter()
            .flatten()
            .map(|(k, _)| k)
        {
            let valid = !key.is_empty()
                && key.len() <= 253
                && key
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b"-._".contains(&b));
            if !valid {
                let why = regex_error(
                    "a valid config key must consist of alphanumeric characters, '-', '_' or '.'",
                    FORMAT,
                    &["key.name", "KEY_NAME", "key-name"],
                );
                errors.push(FieldError::invalid(map.to_string(), key, why));
            }
        }
    }
    errors
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::strategy::tests::errors;

    #[test]
    fn config_keys_are_checked_and_secrets_are_opaque() {
        let config = json!({"data": {"good.key": "1", "bad key": "2"}});
        assert_eq!(errors("", "v1", "ConfigMap", config).len(), 1);
        let mut secret = json!({"stringData": {"bad key": "x"}});
        SECRETS.apply_defaults(&mut secret);
        assert_eq!(secret["type"], "Opaque");
        assert_eq!(errors("", "v1", "Secret", secret).len(), 1);
    }

    #[test]
    fn string_data_is_written_into_data() {
        let mut secret = json!({"data": {"a": "YQ==", "b": "YQ=="}, "stringData": {"b": "bee"}});
        SECRETS.apply_defaults(&mut secret);
        assert_eq!(secret["data"], json!({"a": "YQ==", "b": "YmVl"}));
        assert!(secret.get("stringData").is_none());
        let mut only = json!({"stringData": {"token-id": "abcdef"}});
        SECRETS.apply_defaults(&mut only);
        assert_eq!(only["data"], json!({"token-id": "YWJjZGVm"}));
    }
}
