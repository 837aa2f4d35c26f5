//! Bootstrap tokens, as Kubernetes has them (`k8s.io/cluster-bootstrap`,
//! `plugin/pkg/auth/authenticator/token/bootstrap`): a token
//! `<token-id>.<token-secret>` (6 and 16 characters of `[a-z0-9]`) is the
//! Secret `kube-system/bootstrap-token-<token-id>` of type
//! `bootstrap.kubernetes.io/token`, whose data holds the same `token-id` and
//! `token-secret`, `usage-bootstrap-authentication: "true"`, and optionally an
//! `expiration` (RFC 3339) and `auth-extra-groups` (a comma list of
//! `system:bootstrappers:*` groups). Such a token, while its Secret is not
//! expired nor being deleted, is the user `system:bootstrap:<token-id>` in
//! `system:bootstrappers` and the extra groups: what a node joining the
//! cluster uses to ask for its own credentials.

use std::fmt;
use std::sync::Arc;
use std::time::SystemTime;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use futures::FutureExt;
use futures::future::BoxFuture;
use serde_json::{Value, json};
use wasmkube_apiserver::access::UserInfo;
use wasmkube_apiserver::error::ApiResult;
use wasmkube_store::Store;
use wasmkube_types::registry::by_kind;

use crate::TokenAuthenticator;

/// The type of the Secrets that hold bootstrap tokens.
pub const SECRET_TYPE: &str = "bootstrap.kubernetes.io/token";
/// What the name of a token's Secret starts with; its token id follows.
pub const SECRET_PREFIX: &str = "bootstrap-token-";
/// The namespace of the tokens' Secrets.
pub const NAMESPACE: &str = "kube-system";
/// The group of every bootstrap token's user.
pub const BOOTSTRAPPERS: &str = "system:bootstrappers";
/// What the name of a bootstrap token's user starts with; its token id
/// follows.
pub const USER_PREFIX: &str = "system:bootstrap:";

/// The length of a token id.
const ID_LEN: usize = 6;
/// The length of a token secret.
const SECRET_LEN: usize = 16;

/// A bootstrap token: its public id and its secret.
#[derive(Clone, PartialEq, Eq)]
pub struct BootstrapToken {
    /// The token id, which names its Secret and its user.
    pub id: String,
    /// The token secret.
    pub secret: String,
}

impl fmt::Debug for BootstrapToken {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // Never the secret.
        f.debug_struct("BootstrapToken")
            .field("id", &self.id)
            .finish_non_exhaustive()
    }
}

/// `<token-id>.<token-secret>`, as the token is sent.
impl fmt::Display for BootstrapToken {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}.{}", self.id, self.secret)
    }
}

impl BootstrapToken {
    /// A new token, from the system's secure random source.
    pub fn generate() -> BootstrapToken {
        const ALPHABET: &[u8] = b"abcdefghijklmnopqrstuvwxyz0123456789";
        let mut text = String::with_capacity(ID_LEN + SECRET_LEN);
        while text.len() < ID_LEN + SECRET_LEN {
            // 256 is not a multiple of 36: bytes past the last whole multiple
            // are dropped, so every character is as likely.
            for byte in uuid::Uuid::new_v4().into_bytes() {
                if byte < 252 && text.len() < ID_LEN + SECRET_LEN {
                    text.push(char::from(ALPHABET[usize::from(byte % 36)]));
                }
            }
        }
        let (id, secret) = text.split_at(ID_LEN);
        BootstrapToken {
            id: id.to_owned(),
            secret: secret.to_owned(),
        }
    }

    /// The token `<token-id>.<token-secret>` in `text`, if it is one.
    pub fn parse(text: &str) -> Option<BootstrapToken> {
        let (id, secret) = text.split_once('.')?;
        let valid = |part: &str, len: usize| {
            part.len() == len
                && part
                    .bytes()
                    .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit())
        };
        (valid(id, ID_LEN) && valid(secret, SECRET_LEN)).then(|| BootstrapToken {
            id: id.to_owned(),
            secret: secret.to_owned(),
        })
    }

    /// The name of the token's Secret: `bootstrap-token-<token-id>`.
    pub fn secret_name(&self) -> String {
        format!("{SECRET_PREFIX}{}", self.id)
    }

    /// The token's Secret, as `kubeadm token create` writes it: valid until
    /// `expiration` (forever without one), for `usages` (`authentication`,
    /// `signing`: each `usage-bootstrap-<usage>: "true"`), its user in
    /// `groups` besides `system:bootstrappers`, described by `description`.
    pub fn secret(
        &self,
        expiration: Option<SystemTime>,
        usages: &[&str],
        groups: &[&str],
        description: Option<&str>,
    ) -> Value {
        let mut data = serde_json::Map::new();
        let mut put = |key: String, value: &str| {
            data.insert(key, json!(STANDARD.encode(value)));
        };
        put("token-id".into(), &self.id);
        put("token-secret".into(), &self.secret);
        if let Some(expiration) = expiration {
            let at = jiff::Timestamp::try_from(expiration).unwrap_or(jiff::Timestamp::MAX);
            put(
                "expiration".into(),
                &at.strftime("%Y-%m-%dT%H:%M:%SZ").to_string(),
            );
        }
        for usage in usages {
            put(format!("usage-bootstrap-{usage}"), "true");
        }
        if !groups.is_empty() {
            put("auth-extra-groups".into(), &groups.join(","));
        }
        if let Some(description) = description {
            put("description".into(), description);
        }
        json!({
            "apiVersion": "v1",
            "kind": "Secret",
            "metadata": {"name": self.secret_name(), "namespace": NAMESPACE},
            "type": SECRET_TYPE,
            "data": data,
        })
    }
}

/// The authenticator of bootstrap tokens, reading their Secrets from the
/// store.
pub struct BootstrapTokens {
    store: Arc<dyn Store>,
}

impl fmt::Debug for BootstrapTokens {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("BootstrapTokens").finish_non_exhaustive()
    }
}

impl BootstrapTokens {
    /// Bootstrap tokens whose Secrets are in `store`.
    pub fn new(store: Arc<dyn Store>) -> BootstrapTokens {
        BootstrapTokens { store }
    }

    async fn check(&self, token: &str) -> ApiResult<Option<UserInfo>> {
        let Some(token) = BootstrapToken::parse(token) else {
            return Ok(None);
        };
        let secrets = by_kind("", "v1", "Secret").expect("a core kind");
        let Some(key) = secrets.storage_key(Some(NAMESPACE), &token.secret_name()) else {
            return Ok(None);
        };
        let Some(kv) = self.store.get(&key).await? else {
            tracing::debug!(id = token.id, "no secret for a bootstrap token");
            return Ok(None);
        };
        let Ok(secret) = serde_json::from_slice::<Value>(&kv.value) else {
            return Ok(None);
        };
        match user_of(&secret, &token, SystemTime::now()) {
            Ok(user) => Ok(Some(user)),
            Err(why) => {
                tracing::debug!(id = token.id, reason = why, "a bootstrap token is refused");
                Ok(None)
            }
        }
    }
}

impl TokenAuthenticator for BootstrapTokens {
    fn user<'a>(&'a self, token: &'a str) -> BoxFuture<'a, ApiResult<Option<UserInfo>>> {
        self.check(token).boxed()
    }
}

/// The user `token` is, given its Secret `secret` at time `now`; why not,
/// when it is none.
fn user_of(secret: &Value, token: &BootstrapToken, now: SystemTime) -> Result<UserInfo, String> {
    if !secret["metadata"]["deletionTimestamp"].is_null() {
        return Err("its secret is being deleted".into());
    }
    if secret["type"] != SECRET_TYPE {
        return Err(format!("its secret is not of type {SECRET_TYPE}"));
    }
    let data = |key: &str| -> String {
        secret["data"][key]
            .as_str()
            .and_then(|value| STANDARD.decode(value).ok())
            .and_then(|bytes| String::from_utf8(bytes).ok())
            .unwrap_or_default()
    };
    if !constant_time_eq(data("token-secret").as_bytes(), token.secret.as_bytes()) {
        return Err("its secret does not match".into());
    }
    if data("token-id") != token.id {
        return Err("its secret names another token id".into());
    }
    let expiration = data("expiration");
    if !expiration.is_empty() {
        // An expiration that cannot be read is taken as passed.
        let at = expiration
            .parse::<jiff::Timestamp>()
            .map_err(|_| format!("its expiration {expiration:?} cannot be read"))?;
        if SystemTime::from(at) <= now {
            return Err(format!("it expired at {expiration}"));
        }
    }
    if data("usage-bootstrap-authentication") != "true" {
        return Err("it is not for authentication".into());
    }
    let mut groups = vec![BOOTSTRAPPERS.to_owned()];
    let extra = data("auth-extra-groups");
    for group in extra.split(',').filter(|_| !extra.is_empty()) {
        if !is_bootstrap_group(group) {
            return Err(format!(
                "its extra group {group:?} is not a bootstrap group"
            ));
        }
        groups.push(group.to_owned());
    }
    groups.sort();
    groups.dedup();
    Ok(UserInfo {
        name: format!("{USER_PREFIX}{}", token.id),
        groups,
        ..UserInfo::default()
    })
}

/// Whether `group` may be given to a bootstrap token's user:
/// `system:bootstrappers:` and `[a-z0-9:-]`, ending in `[a-z0-9]`, 256
/// characters at most after the prefix.
fn is_bootstrap_group(group: &str) -> bool {
    let Some(rest) = group.strip_prefix("system:bootstrappers:") else {
        return false;
    };
    let allowed = |b: u8| b.is_ascii_lowercase() || b.is_ascii_digit();
    (1..=256).contains(&rest.len())
        && rest.bytes().all(|b| allowed(b) || b == b':' || b == b'-')
        && rest.bytes().last().is_some_and(allowed)
}

/// Whether `a` and `b` are equal, in a time that depends on their lengths
/// only.
fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |diff, (x, y)| diff | (x ^ y)) == 0
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use wasmkube_store::Bytes;
    use wasmkube_store_embedded::{EmbeddedStore, Options};

    use super::*;

    fn token() -> BootstrapToken {
        BootstrapToken::parse("abcdef.0123456789abcdef").unwrap()
    }

    fn secret(expiration: Option<SystemTime>, groups: &[&str]) -> Value {
        token().secret(expiration, &["authentication", "signing"], groups, None)
    }

    #[test]
    fn tokens_are_six_and_sixteen_lowercase_characters() {
        let generated = BootstrapToken::generate();
        assert_eq!(
            BootstrapToken::parse(&generated.to_string()),
            Some(generated.clone())
        );
        assert_ne!(BootstrapToken::generate(), generated);
        assert_eq!(
            generated.secret_name(),
            format!("bootstrap-token-{}", generated.id)
        );
        assert!(!format!("{generated:?}").contains(&generated.secret));
        for bad in [
            "abcdef0123456789abcdef",
            "abcde.0123456789abcdef",
            "ABCDEF.0123456789abcdef",
            "abcdef.0123456789abcdeg.",
            "abcdef.0123456789abcdeF",
        ] {
            assert_eq!(BootstrapToken::parse(bad), None, "{bad}");
        }
    }

    #[test]
    fn a_token_is_its_secrets_user_while_valid() {
        let now = SystemTime::now();
        let later = now + Duration::from_secs(3600);
        let groups = ["system:bootstrappers:kubeadm:default-node-token"];
        let user = user_of(&secret(Some(later), &groups), &token(), now).unwrap();
        assert_eq!(user.name, "system:bootstrap:abcdef");
        assert_eq!(
            user.groups,
            [
                "system:bootstrappers",
                "system:bootstrappers:kubeadm:default-node-token"
            ]
        );
        assert!(user_of(&secret(None, &[]), &token(), now).is_ok());

        let refused = |secret: Value| user_of(&secret, &token(), now).unwrap_err();
        assert!(refused(secret(Some(now), &[])).contains("expired"));
        let mut deleting = secret(None, &[]);
        deleting["metadata"]["deletionTimestamp"] = json!("2026-01-01T00:00:00Z");
        assert!(refused(deleting).contains("deleted"));
        let mut opaque = secret(None, &[]);
        opaque["type"] = json!("Opaque");
        assert!(refused(opaque).contains("type"));
        let signing_only = token().secret(None, &["signing"], &[], None);
        assert!(refused(signing_only).contains("authentication"));
        assert!(refused(secret(None, &["system:masters"])).contains("bootstrap group"));
        let mut unreadable = secret(None, &[]);
        unreadable["data"]["expiration"] = json!(STANDARD.encode("tomorrow"));
        assert!(refused(unreadable).contains("cannot be read"));
        let other = BootstrapToken::parse("abcdef.fedcba9876543210").unwrap();
        assert!(user_of(&secret(None, &[]), &other, now).is_err());
    }

    #[test]
    fn bootstrap_groups_are_checked() {
        assert!(is_bootstrap_group(
            "system:bootstrappers:kubeadm:default-node-token"
        ));
        assert!(is_bootstrap_group("system:bootstrappers:a"));
        for bad in [
            "system:bootstrappers",
            "system:bootstrappers:",
            "system:bootstrappers:a-",
            "system:bootstrappers:A",
            "system:nodes",
        ] {
            assert!(!is_bootstrap_group(bad), "{bad}");
        }
    }

    #[tokio::test]
    async fn tokens_are_looked_up_in_the_store() {
        let dir = tempfile::tempdir().unwrap();
        let store = EmbeddedStore::open(dir.path().join("store.db"), Options::default()).unwrap();
        let store: Arc<dyn Store> = Arc::new(store);
        let tokens = BootstrapTokens::new(store.clone());
        let text = token().to_string();
        assert_eq!(tokens.user(&text).await.unwrap(), None);
        let key = "/registry/secrets/kube-system/bootstrap-token-abcdef";
        let secret = secret(None, &[]);
        store
            .create(key, Bytes::from(secret.to_string()), None)
            .await
            .unwrap();
        let user = tokens.user(&text).await.unwrap().unwrap();
        assert_eq!(user.name, "system:bootstrap:abcdef");
        assert_eq!(tokens.user("abcdef.fedcba9876543210").await.unwrap(), None);
        assert_eq!(tokens.user("not-a-bootstrap-token").await.unwrap(), None);
    }
}
