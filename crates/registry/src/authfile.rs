//! Credentials from docker-style `config.json` / containers `auth.json` files:
//! `{"auths": {"host:port": {"auth": base64("user:pass")}}}`.
//!
//! Which files: the path given in the options; else `$REGISTRY_AUTH_FILE`; else
//! `$XDG_RUNTIME_DIR/containers/auth.json` and then `~/.docker/config.json` (the first file
//! with an entry for the registry wins). Keys may also name a namespace
//! (`host/org` or `host/org/repo`, as containers' auth.json allows): the most specific key
//! that matches the repository wins. Keys written as URLs (`https://host/v1/`) count for
//! their host.

use std::collections::BTreeMap;
use std::fmt;
use std::path::{Path, PathBuf};

use base64::Engine as _;

use crate::error::RegistryError;

/// A user name and password. `Debug` does not show the password.
#[derive(Clone, PartialEq, Eq)]
pub(crate) struct Credentials {
    pub username: String,
    pub password: String,
}

impl fmt::Debug for Credentials {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Credentials").field("username", &self.username).field("password", &"<redacted>").finish()
    }
}

impl Credentials {
    /// The value of an `Authorization: Basic` header.
    pub(crate) fn basic_header(&self) -> String {
        let raw = format!("{}:{}", self.username, self.password);
        format!("Basic {}", base64::engine::general_purpose::STANDARD.encode(raw))
    }
}

/// One auth file: where it is and what it holds (`None` when it does not exist).
#[derive(Debug)]
struct AuthSource {
    path: PathBuf,
    entries: Option<BTreeMap<String, Credentials>>,
}

/// The auth files that apply to a client, loaded once.
#[derive(Debug, Default)]
pub(crate) struct AuthFiles {
    sources: Vec<AuthSource>,
}

impl AuthFiles {
    /// Loads the files named by `candidate_paths`. A file given explicitly (option or
    /// `$REGISTRY_AUTH_FILE`) must exist; default locations may be absent. Malformed files
    /// are errors naming the file.
    pub(crate) fn load(explicit: Option<&Path>) -> Result<AuthFiles, RegistryError> {
        let env = |k: &str| std::env::var_os(k).filter(|v| !v.is_empty()).map(PathBuf::from);
        let (paths, required) =
            candidate_paths(explicit, env("REGISTRY_AUTH_FILE"), env("XDG_RUNTIME_DIR"), env("HOME"));
        let mut sources = Vec::new();
        for path in paths {
            let entries = match std::fs::read(&path) {
                Ok(bytes) => Some(
                    parse_auth_file(&bytes)
                        .map_err(|reason| RegistryError::AuthFile { path: path.display().to_string(), reason })?,
                ),
                Err(e) if e.kind() == std::io::ErrorKind::NotFound && !required => None,
                Err(e) => {
                    return Err(RegistryError::AuthFile { path: path.display().to_string(), reason: e.to_string() });
                }
            };
            sources.push(AuthSource { path, entries });
        }
        Ok(AuthFiles { sources })
    }

    /// Credentials for `repository` on `host`, with the file they came from.
    pub(crate) fn lookup(&self, host: &str, repository: &str) -> Option<(Credentials, String)> {
        self.sources.iter().find_map(|s| {
            let entries = s.entries.as_ref()?;
            best_match(entries, host, repository).map(|c| (c.clone(), s.path.display().to_string()))
        })
    }

    /// The files searched, for error messages (absent ones marked).
    pub(crate) fn searched(&self) -> Vec<String> {
        self.sources
            .iter()
            .map(|s| {
                let p = s.path.display().to_string();
                if s.entries.is_some() { p } else { format!("{p} (absent)") }
            })
            .collect()
    }
}

/// The files to read, in order, and whether they are required (named explicitly).
fn candidate_paths(
    explicit: Option<&Path>,
    registry_auth_file: Option<PathBuf>,
    xdg_runtime_dir: Option<PathBuf>,
    home: Option<PathBuf>,
) -> (Vec<PathBuf>, bool) {
    if let Some(p) = explicit {
        return (vec![p.to_path_buf()], true);
    }
    if let Some(p) = registry_auth_file {
        return (vec![p], true);
    }
    let mut v = Vec::new();
    if let Some(x) = xdg_runtime_dir {
        v.push(x.join("containers").join("auth.json"));
    }
    if let Some(h) = home {
        v.push(h.join(".docker").join("config.json"));
    }
    (v, false)
}

/// Parses the `auths` map; keys are normalized (URL keys reduced to their host).
fn parse_auth_file(bytes: &[u8]) -> Result<BTreeMap<String, Credentials>, String> {
    #[derive(serde::Deserialize)]
    struct File {
        #[serde(default)]
        auths: BTreeMap<String, Entry>,
    }
    #[derive(serde::Deserialize)]
    struct Entry {
        #[serde(default)]
        auth: Option<String>,
        #[serde(default)]
        username: Option<String>,
        #[serde(default)]
        password: Option<String>,
    }
    let file: File = serde_json::from_slice(bytes).map_err(|e| format!("not valid JSON: {e}"))?;
    let mut out = BTreeMap::new();
    for (key, entry) in file.auths {
        let creds = match (entry.auth.as_deref().filter(|a| !a.is_empty()), entry.username, entry.password) {
            (Some(auth), _, _) => {
                let raw = base64::engine::general_purpose::STANDARD_PAD_INDIFFERENT
                    .decode(auth.trim())
                    .map_err(|e| format!("entry {key:?}: \"auth\" is not base64: {e}"))?;
                let raw = String::from_utf8(raw).map_err(|_| format!("entry {key:?}: \"auth\" is not UTF-8"))?;
                let (u, p) = raw
                    .split_once(':')
                    .ok_or_else(|| format!("entry {key:?}: \"auth\" does not decode to user:password"))?;
                Credentials { username: u.to_owned(), password: p.to_owned() }
            }
            (None, Some(u), Some(p)) => Credentials { username: u, password: p },
            // Entries with only an identity token or a helper are not usable here.
            _ => continue,
        };
        out.insert(normalize_key(&key), creds);
    }
    Ok(out)
}

fn normalize_key(key: &str) -> String {
    match key.split_once("://") {
        Some((_, rest)) => rest.split('/').next().unwrap_or("").to_owned(),
        None => key.trim_end_matches('/').to_owned(),
    }
}

/// The most specific key among `host`, `host/a`, `host/a/b`, ... for repository `a/b/...`.
fn best_match<'a>(entries: &'a BTreeMap<String, Credentials>, host: &str, repository: &str) -> Option<&'a Credentials> {
    let comps: Vec<&str> = repository.split('/').collect();
    (0..=comps.len()).rev().find_map(|n| {
        let key = if n == 0 { host.to_owned() } else { format!("{host}/{}", comps[..n].join("/")) };
        entries.get(&key)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn b64(s: &str) -> String {
        base64::engine::general_purpose::STANDARD.encode(s)
    }

    #[test]
    fn parses_auth_and_username_password_entries() {
        let json = format!(
            r#"{{"auths":{{"127.0.0.1:5000":{{"auth":"{}"}},"https://index.docker.io/v1/":{{"auth":"{}"}},
               "reg.io":{{"username":"u","password":"p:w"}},"helper.io":{{"identitytoken":"x"}}}},"credHelpers":{{}}}}"#,
            b64("alice:s3:cret"),
            b64("bob:pw")
        );
        let m = parse_auth_file(json.as_bytes()).unwrap();
        assert_eq!(m["127.0.0.1:5000"], Credentials { username: "alice".into(), password: "s3:cret".into() });
        assert_eq!(m["index.docker.io"].username, "bob");
        assert_eq!(m["reg.io"].password, "p:w");
        assert!(!m.contains_key("helper.io"));
    }

    #[test]
    fn malformed_entries_are_named() {
        let e = parse_auth_file(br#"{"auths":{"h":{"auth":"!!!"}}}"#).unwrap_err();
        assert!(e.contains("\"h\"") && e.contains("base64"), "{e}");
        let e =
            parse_auth_file(format!(r#"{{"auths":{{"h":{{"auth":"{}"}}}}}}"#, b64("nocolon")).as_bytes()).unwrap_err();
        assert!(e.contains("user:password"), "{e}");
        assert!(parse_auth_file(b"{").unwrap_err().contains("JSON"));
    }

    #[test]
    fn the_most_specific_namespace_wins() {
        let c = |u: &str| Credentials { username: u.into(), password: "x".into() };
        let m: BTreeMap<_, _> =
            [("h:1".to_owned(), c("host")), ("h:1/org".to_owned(), c("org")), ("h:1/org/app".to_owned(), c("app"))]
                .into();
        assert_eq!(best_match(&m, "h:1", "org/app").unwrap().username, "app");
        assert_eq!(best_match(&m, "h:1", "org/other").unwrap().username, "org");
        assert_eq!(best_match(&m, "h:1", "organic").unwrap().username, "host");
        assert!(best_match(&m, "h:2", "org").is_none());
    }

    #[test]
    fn search_order_follows_options_then_environment() {
        let p = |s: &str| PathBuf::from(s);
        assert_eq!(candidate_paths(Some(&p("/o.json")), Some(p("/e.json")), None, None), (vec![p("/o.json")], true));
        assert_eq!(candidate_paths(None, Some(p("/e.json")), Some(p("/run")), None), (vec![p("/e.json")], true));
        assert_eq!(
            candidate_paths(None, None, Some(p("/run/user/0")), Some(p("/root"))),
            (vec![p("/run/user/0/containers/auth.json"), p("/root/.docker/config.json")], false)
        );
    }

    #[test]
    fn basic_header_encodes_user_and_password() {
        let c = Credentials { username: "alice".into(), password: "s3cret".into() };
        assert_eq!(c.basic_header(), format!("Basic {}", b64("alice:s3cret")));
        assert!(!format!("{c:?}").contains("s3cret"));
    }
}
