//! Authentication: which `Authorization` header a request carries, and what to do on 401.
//!
//! - `WWW-Authenticate: Basic` → send the auth file's credentials as Basic from then on.
//! - `WWW-Authenticate: Bearer realm=..,service=..,scope=..` → GET a token from the realm
//!   (with Basic credentials when the auth file has some, anonymously otherwise), cache it
//!   per scope, retry with `Authorization: Bearer`.
//!
//! A second 401 within one request means the credentials (or their absence) are the
//! problem, and the error says which registry and whether credentials were found.

use std::collections::HashMap;
use std::io::Read;

use crate::authfile::Credentials;
use crate::challenge::parse_challenges;
use crate::client::{Call, Client, OriginCredentials, Response, read_detail};
use crate::error::{CredentialState, RegistryError, Result};
use crate::url;

/// The access a request needs: `repository:<repo>:pull[,push]`, plus `pull` on the source
/// repository of a cross-repository mount. `repo` is empty for registry-level requests.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Scope {
    pub repo: String,
    pub push: bool,
    pub mount_from: Option<String>,
}

impl Scope {
    pub fn pull(repo: &str) -> Scope {
        Scope { repo: repo.to_owned(), push: false, mount_from: None }
    }
    pub fn push(repo: &str) -> Scope {
        Scope { repo: repo.to_owned(), push: true, mount_from: None }
    }
    pub fn registry() -> Scope {
        Scope { repo: String::new(), push: false, mount_from: None }
    }

    /// The scope strings of a token request.
    fn strings(&self) -> Vec<String> {
        let mut v = Vec::new();
        if !self.repo.is_empty() {
            v.push(format!("repository:{}:{}", self.repo, if self.push { "pull,push" } else { "pull" }));
        }
        if let Some(from) = &self.mount_from {
            v.push(format!("repository:{from}:pull"));
        }
        v
    }

    fn key(&self) -> String {
        self.strings().join(" ")
    }

    fn describe(&self) -> String {
        if self.repo.is_empty() {
            return "the registry".into();
        }
        format!("repository {} ({})", self.repo, if self.push { "push" } else { "pull" })
    }
}

/// Tokens by scope key, and whether the registry asked for Basic auth.
#[derive(Debug, Default)]
pub(crate) struct AuthCache {
    tokens: HashMap<String, String>,
    basic: bool,
}

/// Token answers are small JSON documents (a JWT is a few KiB).
const MAX_TOKEN_RESPONSE: u64 = 1 << 20;

impl Client {
    fn credentials(&self, scope: &Scope) -> Option<(Credentials, String)> {
        self.shared.auth_files.lookup(&self.shared.registry, &scope.repo)
    }

    fn credential_state(&self, scope: &Scope) -> CredentialState {
        match self.credentials(scope) {
            Some((_, source)) => CredentialState::Rejected { source },
            None => CredentialState::NotFound { searched: self.shared.auth_files.searched() },
        }
    }

    /// The origin of a Bearer realm, if credentials may be sent there: an http(s) URL, and
    /// plain http only where --plain-http named the registry, and only to its own host (the
    /// token request carries the user's credentials).
    pub(crate) fn realm_origin(&self, realm: &str) -> Result<String> {
        let Some(origin) = url::origin(realm) else {
            return Err(RegistryError::InvalidResponse {
                url: self.shared.base.clone(),
                reason: format!("Bearer realm {realm:?} is not an http(s) URL"),
            });
        };
        if origin.starts_with("http://") && !self.plain_http_allowed(&origin) {
            return Err(RegistryError::InvalidResponse {
                url: self.shared.base.clone(),
                reason: format!(
                    "Bearer realm {realm} is plain http; credentials go over http only to the host of a registry named with --plain-http"
                ),
            });
        }
        Ok(origin)
    }

    /// True when plain http to `origin` (`http://host[:port]`) was allowed by the user:
    /// the registry was named with `--plain-http` and `origin` is on the registry's host
    /// (a token server on another port of a loopback test registry, say).
    fn plain_http_allowed(&self, origin: &str) -> bool {
        self.shared.options.plain_http
            && url::origin(&self.shared.base).as_deref().and_then(url::host) == url::host(origin)
    }

    /// The `Authorization` value for a request to the registry with `scope`, if any is known.
    pub(crate) fn auth_header(&self, scope: &Scope) -> Option<String> {
        let cache = self.shared.auth.lock().unwrap_or_else(|e| e.into_inner());
        if cache.basic {
            return self.credentials(scope).map(|(c, _)| c.basic_header());
        }
        if let Some(t) = cache.tokens.get(&scope.key()) {
            return Some(format!("Bearer {t}"));
        }
        if !scope.push && scope.mount_from.is_none() {
            // A push token for the repository also allows pulling.
            if let Some(t) = cache.tokens.get(&Scope::push(&scope.repo).key()) {
                return Some(format!("Bearer {t}"));
            }
        }
        None
    }

    /// Handles a first 401: sets up Basic or fetches a token so the request can be retried.
    pub(crate) fn authenticate(&self, scope: &Scope, resp: Response, sent_auth: bool) -> Result<()> {
        let values: Vec<String> = resp
            .headers()
            .get_all("www-authenticate")
            .iter()
            .filter_map(|v| v.to_str().ok().map(str::to_owned))
            .collect();
        let challenges = parse_challenges(values.iter().map(String::as_str));
        if let Some(bearer) = challenges.iter().find(|c| c.scheme == "bearer") {
            drop(resp);
            let realm = bearer.param("realm").ok_or_else(|| RegistryError::InvalidResponse {
                url: self.shared.base.clone(),
                reason: "Bearer challenge without a realm".into(),
            })?;
            let mut scopes: Vec<String> =
                bearer.param("scope").map(|s| s.split(' ').map(str::to_owned).collect()).unwrap_or_default();
            for s in scope.strings() {
                if !scopes.contains(&s) {
                    scopes.push(s);
                }
            }
            scopes.retain(|s| !s.is_empty());
            let token = self.fetch_token(realm, bearer.param("service"), &scopes, scope)?;
            let mut cache = self.shared.auth.lock().unwrap_or_else(|e| e.into_inner());
            cache.tokens.insert(scope.key(), token);
            return Ok(());
        }
        if challenges.iter().any(|c| c.scheme == "basic") {
            let mut cache = self.shared.auth.lock().unwrap_or_else(|e| e.into_inner());
            if self.credentials(scope).is_some() && !(sent_auth && cache.basic) {
                cache.basic = true;
                return Ok(());
            }
            drop(cache);
            return Err(self.unauthorized(scope, resp));
        }
        Err(self.unauthorized(scope, resp))
    }

    /// The error for a 401 that authentication did not cure.
    pub(crate) fn unauthorized(&self, scope: &Scope, resp: Response) -> RegistryError {
        RegistryError::Unauthorized {
            registry: self.shared.registry.clone(),
            what: scope.describe(),
            credentials: self.credential_state(scope),
            detail: read_detail(resp),
        }
    }

    fn fetch_token(&self, realm: &str, service: Option<&str>, scopes: &[String], scope: &Scope) -> Result<String> {
        let realm_origin = self.realm_origin(realm)?;
        let mut token_url = realm.to_owned();
        if let Some(s) = service {
            token_url = url::append_query(&token_url, "service", s);
        }
        for s in scopes {
            token_url = url::append_query(&token_url, "scope", s);
        }
        let mut call = Call::new("GET", token_url.clone(), None);
        if let Some((creds, _)) = self.credentials(scope) {
            call.credentials = Some(OriginCredentials { origin: realm_origin, authorization: creds.basic_header() });
        }
        let resp = self.send(call)?;
        match resp.status().as_u16() {
            200 => {}
            401 | 403 => {
                return Err(RegistryError::TokenRefused {
                    registry: self.shared.registry.clone(),
                    realm: realm.to_owned(),
                    credentials: self.credential_state(scope),
                    detail: read_detail(resp),
                });
            }
            _ => return Err(self.status_error("GET", &token_url, resp, crate::client::Target::Registry)),
        }
        #[derive(serde::Deserialize)]
        struct TokenResponse {
            #[serde(default)]
            token: Option<String>,
            #[serde(default)]
            access_token: Option<String>,
        }
        let mut body = Vec::new();
        // One byte past the limit tells a body that is too long (or endless) from one that
        // just fits, so the error can say so instead of "not JSON".
        resp.into_body()
            .into_reader()
            .take(MAX_TOKEN_RESPONSE + 1)
            .read_to_end(&mut body)
            .map_err(|source| RegistryError::Io { what: format!("token from {realm}"), source })?;
        if body.len() as u64 > MAX_TOKEN_RESPONSE {
            return Err(RegistryError::InvalidResponse {
                url: realm.to_owned(),
                reason: format!("token response is larger than the {MAX_TOKEN_RESPONSE} bytes allowed"),
            });
        }
        let parsed: TokenResponse = serde_json::from_slice(&body).map_err(|e| RegistryError::InvalidResponse {
            url: realm.to_owned(),
            reason: format!("token response is not JSON: {e}"),
        })?;
        parsed.token.or(parsed.access_token).filter(|t| !t.is_empty()).ok_or_else(|| RegistryError::InvalidResponse {
            url: realm.to_owned(),
            reason: "token response has neither \"token\" nor \"access_token\"".into(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plain_http_realms_only_for_the_plain_http_registry_host() {
        let dir = tempfile::tempdir().unwrap();
        let auth = dir.path().join("auth.json");
        std::fs::write(&auth, "{}").unwrap();
        let opts =
            |plain_http| crate::ClientOptions { plain_http, auth_file: Some(auth.clone()), ..Default::default() };
        let https = Client::new("reg.example:443", opts(false)).unwrap();
        assert!(https.realm_origin("https://auth.example/token").is_ok());
        let e = https.realm_origin("http://reg.example/token").unwrap_err().to_string();
        assert!(e.contains("plain http"), "{e}");
        let plain = Client::new("127.0.0.1:5000", opts(true)).unwrap();
        assert_eq!(plain.realm_origin("http://127.0.0.1:5001/token").unwrap(), "http://127.0.0.1:5001");
        assert!(plain.realm_origin("http://127.0.0.2/token").is_err());
        assert!(plain.realm_origin("https://127.0.0.2/token").is_ok());
        assert!(plain.realm_origin("file:///etc/passwd").is_err());
    }

    #[test]
    fn scopes_name_the_access_needed() {
        assert_eq!(Scope::pull("a/b").strings(), ["repository:a/b:pull"]);
        let mut s = Scope::push("a");
        s.mount_from = Some("b".into());
        assert_eq!(s.strings(), ["repository:a:pull,push", "repository:b:pull"]);
        assert!(Scope::registry().strings().is_empty());
        assert_ne!(Scope::pull("a").key(), Scope::push("a").key());
    }
}
