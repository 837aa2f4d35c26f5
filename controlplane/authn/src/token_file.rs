//! Static bearer tokens, read once from a CSV file in Kubernetes'
//! `--token-auth-file` format: `token,user,uid` and optionally a fourth
//! column of groups (`"group1,group2"`), one token a line.

use std::collections::HashMap;
use std::path::Path;

use futures::FutureExt;
use futures::future::BoxFuture;
use wasmkube_apiserver::access::UserInfo;
use wasmkube_apiserver::error::ApiResult;

use crate::TokenAuthenticator;

/// The users of a token file, by token.
#[derive(Default)]
pub struct TokenFile {
    users: HashMap<String, UserInfo>,
}

impl std::fmt::Debug for TokenFile {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Never the tokens.
        f.debug_struct("TokenFile")
            .field("users", &self.users.len())
            .finish()
    }
}

impl TokenFile {
    /// Reads the token file at `path`.
    pub fn read(path: &Path) -> Result<TokenFile, String> {
        let text = std::fs::read_to_string(path)
            .map_err(|e| format!("reading the token file {}: {e}", path.display()))?;
        TokenFile::parse(&text).map_err(|e| format!("{}: {e}", path.display()))
    }

    /// The tokens of a token file's text.
    pub fn parse(text: &str) -> Result<TokenFile, String> {
        let mut reader = csv::ReaderBuilder::new()
            .has_headers(false)
            .flexible(true)
            .trim(csv::Trim::All)
            .comment(Some(b'#'))
            .from_reader(text.as_bytes());
        let mut users = HashMap::new();
        for (n, record) in reader.records().enumerate() {
            let record = record.map_err(|e| format!("line {}: {e}", n + 1))?;
            let line = record.position().map_or(n as u64 + 1, |p| p.line());
            if record.len() < 3 {
                return Err(format!(
                    "line {line}: expected token,user,uid[,\"groups\"], got {} columns",
                    record.len()
                ));
            }
            let (token, name, uid) = (&record[0], &record[1], &record[2]);
            if token.is_empty() {
                return Err(format!("line {line}: the token is empty"));
            }
            let groups = record
                .get(3)
                .map(|g| {
                    g.split(',')
                        .map(str::trim)
                        .filter(|g| !g.is_empty())
                        .map(str::to_owned)
                        .collect()
                })
                .unwrap_or_default();
            let user = UserInfo {
                name: name.to_owned(),
                uid: uid.to_owned(),
                groups,
                ..UserInfo::default()
            };
            if users.insert(token.to_owned(), user).is_some() {
                return Err(format!("line {line}: the token is listed twice"));
            }
        }
        Ok(TokenFile { users })
    }
}

impl TokenAuthenticator for TokenFile {
    fn user<'a>(&'a self, token: &'a str) -> BoxFuture<'a, ApiResult<Option<UserInfo>>> {
        futures::future::ready(Ok(self.users.get(token).cloned())).boxed()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_token_file_names_users_and_their_groups() {
        let file = TokenFile::parse(
            "# operators\n\
             t0k3n,jane,1001,\"dev, ops\"\n\
             other,bob,1002\n",
        )
        .unwrap();
        let jane = file.user("t0k3n").await.unwrap().unwrap();
        assert_eq!(jane.name, "jane");
        assert_eq!(jane.uid, "1001");
        assert_eq!(jane.groups, ["dev", "ops"]);
        let bob = file.user("other").await.unwrap().unwrap();
        assert!(bob.groups.is_empty());
        assert_eq!(file.user("nope").await.unwrap(), None);
    }

    #[test]
    fn a_malformed_token_file_is_refused_with_its_line() {
        let short = TokenFile::parse("ok,jane,1\nshort,bob\n").unwrap_err();
        assert!(short.contains("line 2"), "{short}");
        let twice = TokenFile::parse("t,jane,1\nt,bob,2\n").unwrap_err();
        assert!(twice.contains("listed twice"), "{twice}");
    }
}
