//! Who sends a request to the API server, as Kubernetes' authenticators say it.
//! Each is a [`wasmkube_apiserver::access::Authenticator`]; the server asks them
//! in order ([`wasmkube_apiserver::access::Union`]):
//!
//! - [`ClientCertificates`]: the certificate a client presented on its TLS
//!   connection, verified against the client CA: its common name is the user,
//!   its organizations the groups.
//! - [`Tokens`]: bearer tokens, each asked of [`TokenAuthenticator`]s in turn:
//!   [`TokenFile`], static tokens from a CSV file, Kubernetes'
//!   `--token-auth-file` format; [`ServiceAccounts`], the signed tokens of
//!   ServiceAccounts (which it also issues); [`BootstrapTokens`], the tokens
//!   of Secrets of type `bootstrap.kubernetes.io/token`, with which nodes
//!   join. A token none of them knows is a 401, on every path.
//!
//! A bearer token comes in an `Authorization: Bearer` header, or as the
//! password of basic auth (`Authorization: Basic`), which is how OCI clients
//! (`skopeo --creds`, `docker login`) send a token to the built-in registry.

pub mod bootstrap;
mod service_account;
mod token_file;
mod x509;

pub use bootstrap::{BootstrapToken, BootstrapTokens};
pub use service_account::{DEFAULT_ISSUER, ServiceAccounts};
pub use token_file::TokenFile;
pub use x509::ClientCertificates;

use std::sync::Arc;

use axum::http::header::AUTHORIZATION;
use axum::http::request::Parts;
use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use futures::FutureExt;
use futures::future::BoxFuture;
use wasmkube_apiserver::access::{Authenticator, UserInfo};
use wasmkube_apiserver::error::{ApiError, ApiResult};

/// Knows the users of some bearer tokens.
pub trait TokenAuthenticator: Send + Sync {
    /// The user of `token`, `None` if this authenticator does not know it.
    fn user<'a>(&'a self, token: &'a str) -> BoxFuture<'a, ApiResult<Option<UserInfo>>>;
}

/// The authenticator of bearer tokens: the user of a request's token, asked of
/// each [`TokenAuthenticator`] in order; a token none knows is a 401.
#[derive(Default)]
pub struct Tokens(pub Vec<Arc<dyn TokenAuthenticator>>);

impl std::fmt::Debug for Tokens {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_tuple("Tokens").field(&self.0.len()).finish()
    }
}

impl Authenticator for Tokens {
    fn authenticate<'a>(
        &'a self,
        request: &'a Parts,
    ) -> BoxFuture<'a, ApiResult<Option<UserInfo>>> {
        async move {
            let Some(token) = bearer_token(request) else {
                return Ok(None);
            };
            for authenticator in &self.0 {
                if let Some(user) = authenticator.user(&token).await? {
                    return Ok(Some(user));
                }
            }
            Err(ApiError::unauthorized())
        }
        .boxed()
    }
}

/// The bearer token a request carries: an `Authorization: Bearer` header's,
/// or the password of its basic auth.
pub fn bearer_token(request: &Parts) -> Option<String> {
    let value = request.headers.get(AUTHORIZATION)?.to_str().ok()?;
    let (scheme, rest) = value.split_once(' ')?;
    let rest = rest.trim();
    if scheme.eq_ignore_ascii_case("bearer") {
        return Some(rest.to_owned()).filter(|t| !t.is_empty());
    }
    if scheme.eq_ignore_ascii_case("basic") {
        let decoded = String::from_utf8(STANDARD.decode(rest).ok()?).ok()?;
        let (_, password) = decoded.split_once(':')?;
        return Some(password.to_owned()).filter(|t| !t.is_empty());
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::http::Request;

    fn parts(authorization: &str) -> Parts {
        Request::builder()
            .header(AUTHORIZATION, authorization)
            .body(())
            .unwrap()
            .into_parts()
            .0
    }

    #[tokio::test]
    async fn a_token_no_authenticator_knows_is_refused() {
        let file = TokenFile::parse("t0k3n,jane,1\n").unwrap();
        let tokens = Tokens(vec![Arc::new(file)]);
        let jane = tokens.authenticate(&parts("Bearer t0k3n")).await.unwrap();
        assert_eq!(jane.unwrap().name, "jane");
        let refused = tokens
            .authenticate(&parts("Bearer nope"))
            .await
            .unwrap_err();
        assert_eq!(refused.code, 401);
        let none = Request::builder().body(()).unwrap().into_parts().0;
        assert_eq!(tokens.authenticate(&none).await.unwrap(), None);
    }

    #[test]
    fn tokens_come_as_bearer_or_as_the_password_of_basic_auth() {
        assert_eq!(bearer_token(&parts("Bearer abc")).as_deref(), Some("abc"));
        assert_eq!(bearer_token(&parts("bearer  abc ")).as_deref(), Some("abc"));
        let basic = format!("Basic {}", STANDARD.encode("jane:s3cret"));
        assert_eq!(bearer_token(&parts(&basic)).as_deref(), Some("s3cret"));
        assert_eq!(bearer_token(&parts("Bearer ")), None);
        assert_eq!(bearer_token(&parts("Basic !!!")), None);
        assert_eq!(bearer_token(&parts("Digest abc")), None);
    }
}
