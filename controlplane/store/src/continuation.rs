//! Continue tokens, in the format of the Kubernetes API server: URL-safe base64 of
//! `{"v":"meta.k8s.io/v1","rv":<revision>,"start":"<key after the prefix>"}`.

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use serde::{Deserialize, Serialize};

use crate::{Error, Result, Revision};

const TOKEN_VERSION: &str = "meta.k8s.io/v1";

#[derive(Serialize, Deserialize)]
struct Token {
    v: String,
    rv: Revision,
    start: String,
}

/// The token that resumes a list at `start` (a key relative to the list's prefix),
/// read at `revision`.
pub fn encode_continue(start: &str, revision: Revision) -> String {
    let token = Token {
        v: TOKEN_VERSION.to_owned(),
        rv: revision,
        start: start.to_owned(),
    };
    URL_SAFE_NO_PAD.encode(serde_json::to_vec(&token).expect("a token serializes"))
}

/// The start key and revision of a continue token.
pub fn decode_continue(token: &str) -> Result<(String, Revision)> {
    let invalid = |why: &str| Error::InvalidContinue(why.to_owned());
    let bytes = URL_SAFE_NO_PAD
        .decode(token.trim_end_matches('='))
        .map_err(|_| invalid("not base64"))?;
    let token: Token =
        serde_json::from_slice(&bytes).map_err(|_| invalid("not a continue token"))?;
    if token.v != TOKEN_VERSION {
        return Err(invalid("unknown token version"));
    }
    if token.rv <= 0 {
        return Err(invalid("no revision"));
    }
    if token.start.starts_with('/') || token.start.split('/').any(|part| part == "..") {
        return Err(invalid("start key is not valid"));
    }
    Ok((token.start, token.rv))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip() {
        let token = encode_continue("default/web\0", 42);
        assert_eq!(
            decode_continue(&token).unwrap(),
            ("default/web\0".to_owned(), 42)
        );
    }

    #[test]
    fn kubernetes_format() {
        let token = encode_continue("a", 7);
        let json = URL_SAFE_NO_PAD.decode(token).unwrap();
        assert_eq!(json, br#"{"v":"meta.k8s.io/v1","rv":7,"start":"a"}"#);
    }

    #[test]
    fn rejects_bad_tokens() {
        for bad in [
            "!!!".to_owned(),
            URL_SAFE_NO_PAD.encode("{}"),
            URL_SAFE_NO_PAD.encode(r#"{"v":"other","rv":1,"start":""}"#),
            URL_SAFE_NO_PAD.encode(r#"{"v":"meta.k8s.io/v1","rv":0,"start":""}"#),
            encode_continue("../secrets/x", 3),
            encode_continue("/etc", 3),
        ] {
            assert!(
                matches!(decode_continue(&bad), Err(Error::InvalidContinue(_))),
                "{bad} accepted"
            );
        }
    }
}
