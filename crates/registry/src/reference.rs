//! Image references: `host[:port]/repo[/more][:tag][@sha256:digest]`.
//!
//! The grammar follows the docker/distribution reference rules: a registry host is the first
//! component when it contains a `.` or a `:` or is `localhost`; repository components are
//! lowercase alphanumerics joined by `.`, `_`, `__` or runs of `-`; tags are up to 128 word
//! characters, `.` and `-`, not starting with `.` or `-`. strata only talks to explicit
//! registries, so a reference without a host (`ubuntu`, `library/ubuntu`) is an error
//! rather than an implicit Docker Hub.

use std::fmt;
use std::str::FromStr;

use strata_types::Sha256Digest;

use crate::error::RegistryError;

/// A manifest is named by tag or by digest.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum ManifestRef {
    Tag(String),
    Digest(Sha256Digest),
}

impl fmt::Display for ManifestRef {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ManifestRef::Tag(t) => f.write_str(t),
            ManifestRef::Digest(d) => write!(f, "{d}"),
        }
    }
}

/// A parsed image reference. When neither tag nor digest is given the tag is `latest`.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct Reference {
    registry: String,
    repository: String,
    tag: Option<String>,
    digest: Option<Sha256Digest>,
}

const MAX_REPOSITORY_LEN: usize = 255;
const MAX_TAG_LEN: usize = 128;

impl Reference {
    /// Parses a reference; errors name the offending part.
    pub fn parse(input: &str) -> Result<Reference, RegistryError> {
        let bad = |reason: String| RegistryError::InvalidReference { input: input.to_owned(), reason };
        let (name_tag, digest) = match input.split_once('@') {
            Some((n, d)) => {
                let digest = d.parse::<Sha256Digest>().map_err(|e| bad(format!("bad digest: {e}")))?;
                (n, Some(digest))
            }
            None => (input, None),
        };
        let (host, path_tag) = name_tag.split_once('/').ok_or_else(|| {
            bad("no registry host: expected host[:port]/repository (strata only uses explicit registries)".into())
        })?;
        if !looks_like_host(host) {
            return Err(bad(format!(
                "{host:?} is not a registry host (a host contains '.' or ':' or is 'localhost'); \
                 strata only uses explicit registries"
            )));
        }
        validate_host(host).map_err(bad)?;
        let (repository, tag) = match path_tag.split_once(':') {
            Some((p, t)) => (p, Some(t)),
            None => (path_tag, None),
        };
        validate_repository(repository).map_err(bad)?;
        if let Some(t) = tag {
            validate_tag(t).map_err(bad)?;
        }
        let tag = match (tag, &digest) {
            (Some(t), _) => Some(t.to_owned()),
            (None, None) => Some("latest".to_owned()),
            (None, Some(_)) => None,
        };
        Ok(Reference { registry: host.to_owned(), repository: repository.to_owned(), tag, digest })
    }

    /// A reference built from parts, validated like [`Reference::parse`].
    pub fn new(registry: &str, repository: &str, manifest: ManifestRef) -> Result<Reference, RegistryError> {
        Reference::parse(&format!(
            "{registry}/{repository}{}{manifest}",
            if matches!(manifest, ManifestRef::Tag(_)) { ":" } else { "@" }
        ))
    }

    /// `host[:port]` as written.
    pub fn registry(&self) -> &str {
        &self.registry
    }

    /// The repository path (`library/ubuntu`).
    pub fn repository(&self) -> &str {
        &self.repository
    }

    pub fn tag(&self) -> Option<&str> {
        self.tag.as_deref()
    }

    pub fn digest(&self) -> Option<&Sha256Digest> {
        self.digest.as_ref()
    }

    /// What to ask the registry for: the digest when there is one (it pins the content), else the tag.
    pub fn manifest_ref(&self) -> ManifestRef {
        match (&self.digest, &self.tag) {
            (Some(d), _) => ManifestRef::Digest(*d),
            (None, Some(t)) => ManifestRef::Tag(t.clone()),
            (None, None) => unreachable!("a reference always has a tag or a digest"),
        }
    }

    /// The same repository pinned to `digest` (the tag is kept for display).
    pub fn with_digest(&self, digest: Sha256Digest) -> Reference {
        Reference { digest: Some(digest), ..self.clone() }
    }
}

impl fmt::Display for Reference {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.registry, self.repository)?;
        if let Some(t) = &self.tag {
            write!(f, ":{t}")?;
        }
        if let Some(d) = &self.digest {
            write!(f, "@{d}")?;
        }
        Ok(())
    }
}

impl FromStr for Reference {
    type Err = RegistryError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Reference::parse(s)
    }
}

fn looks_like_host(s: &str) -> bool {
    s.contains('.') || s.contains(':') || s == "localhost" || s.starts_with('[')
}

fn validate_host(host: &str) -> Result<(), String> {
    let (name, port) = if let Some(rest) = host.strip_prefix('[') {
        // IPv6 literal: [addr]:port
        let (addr, after) = rest.split_once(']').ok_or_else(|| format!("host {host:?} has an unclosed '['"))?;
        if addr.is_empty() || !addr.chars().all(|c| c.is_ascii_hexdigit() || c == ':' || c == '.') {
            return Err(format!("host {host:?} is not a valid IPv6 literal"));
        }
        let port = match after {
            "" => None,
            p => Some(p.strip_prefix(':').ok_or_else(|| format!("unexpected {p:?} after IPv6 literal in {host:?}"))?),
        };
        (None, port)
    } else {
        match host.split_once(':') {
            Some((n, p)) => (Some(n), Some(p)),
            None => (Some(host), None),
        }
    };
    if let Some(name) = name {
        for comp in name.split('.') {
            let ok = !comp.is_empty()
                && comp.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-')
                && !comp.starts_with('-')
                && !comp.ends_with('-');
            if !ok {
                return Err(format!("host {host:?} has an invalid name component {comp:?}"));
            }
        }
    }
    if let Some(p) = port {
        let valid = !p.is_empty()
            && p.len() <= 5
            && p.bytes().all(|b| b.is_ascii_digit())
            && p.parse::<u32>().is_ok_and(|n| n <= 65535);
        if !valid {
            return Err(format!("host {host:?} has an invalid port {p:?}"));
        }
    }
    Ok(())
}

fn validate_repository(repo: &str) -> Result<(), String> {
    if repo.is_empty() {
        return Err("the repository name is empty".into());
    }
    if repo.len() > MAX_REPOSITORY_LEN {
        return Err(format!("the repository name is longer than {MAX_REPOSITORY_LEN} characters"));
    }
    for comp in repo.split('/') {
        validate_path_component(comp).map_err(|why| format!("repository component {comp:?} {why}"))?;
    }
    Ok(())
}

/// `[a-z0-9]+ ((\.|_|__|-+) [a-z0-9]+)*`
fn validate_path_component(comp: &str) -> Result<(), &'static str> {
    if comp.is_empty() {
        return Err("is empty");
    }
    if comp.bytes().any(|b| b.is_ascii_uppercase()) {
        return Err("must be lowercase");
    }
    let b = comp.as_bytes();
    let alnum = |c: u8| c.is_ascii_lowercase() || c.is_ascii_digit();
    if !alnum(b[0]) || !alnum(b[b.len() - 1]) {
        return Err("must start and end with a lowercase letter or digit");
    }
    let mut i = 0;
    while i < b.len() {
        if alnum(b[i]) {
            i += 1;
            continue;
        }
        let start = i;
        while i < b.len() && !alnum(b[i]) {
            i += 1;
        }
        let sep = &comp[start..i];
        let ok = sep == "." || sep == "_" || sep == "__" || sep.bytes().all(|c| c == b'-');
        if !ok {
            return Err(
                "contains an invalid character or separator (allowed: a-z 0-9 and single '.', '_', '__', '-'...)",
            );
        }
    }
    Ok(())
}

fn validate_tag(tag: &str) -> Result<(), String> {
    let word = |c: u8| c.is_ascii_alphanumeric() || c == b'_';
    let b = tag.as_bytes();
    if b.is_empty() {
        return Err("the tag is empty".into());
    }
    if b.len() > MAX_TAG_LEN {
        return Err(format!("the tag is longer than {MAX_TAG_LEN} characters"));
    }
    if !word(b[0]) {
        return Err(format!("tag {tag:?} must start with a letter, digit or '_'"));
    }
    if !b.iter().all(|&c| word(c) || c == b'.' || c == b'-') {
        return Err(format!("tag {tag:?} contains characters other than letters, digits, '_', '.', '-'"));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    const HEX: &str = "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad";

    fn parts(s: &str) -> (String, String, Option<String>, Option<String>) {
        let r = Reference::parse(s).unwrap_or_else(|e| panic!("{s}: {e}"));
        (r.registry().into(), r.repository().into(), r.tag().map(Into::into), r.digest().map(|d| d.to_string()))
    }

    fn err(s: &str) -> String {
        match Reference::parse(s) {
            Err(e @ RegistryError::InvalidReference { .. }) => e.to_string(),
            other => panic!("{s}: expected an invalid reference, got {other:?}"),
        }
    }

    #[test]
    fn parses_hosts_ports_nested_repos_tags_and_digests() {
        let d = format!("sha256:{HEX}");
        assert_eq!(parts("127.0.0.1:5000/a"), ("127.0.0.1:5000".into(), "a".into(), Some("latest".into()), None));
        assert_eq!(
            parts("localhost/a/b/c:v1.2-rc_3"),
            ("localhost".into(), "a/b/c".into(), Some("v1.2-rc_3".into()), None)
        );
        assert_eq!(
            parts(&format!("reg.example.com/x@{d}")),
            ("reg.example.com".into(), "x".into(), None, Some(d.clone()))
        );
        assert_eq!(
            parts(&format!("localhost:80/x/y:t@{d}")),
            ("localhost:80".into(), "x/y".into(), Some("t".into()), Some(d.clone()))
        );
        assert_eq!(
            parts("[::1]:5000/a__b.c-d---e"),
            ("[::1]:5000".into(), "a__b.c-d---e".into(), Some("latest".into()), None)
        );
        assert_eq!(parts("my-reg.io/a:_x"), ("my-reg.io".into(), "a".into(), Some("_x".into()), None));
    }

    #[test]
    fn display_round_trips() {
        let d = format!("sha256:{HEX}");
        for s in ["127.0.0.1:5000/a:latest", "localhost/a/b:v1", &format!("h.io/x@{d}"), &format!("h.io:1/x:t@{d}")] {
            let r = Reference::parse(s).unwrap();
            assert_eq!(r.to_string(), s);
            assert_eq!(Reference::parse(&r.to_string()).unwrap(), r);
        }
        // The default tag is made explicit.
        assert_eq!(Reference::parse("h.io/x").unwrap().to_string(), "h.io/x:latest");
    }

    #[test]
    fn manifest_ref_prefers_the_digest() {
        let d: Sha256Digest = format!("sha256:{HEX}").parse().unwrap();
        let r = Reference::parse(&format!("h.io/x:t@{d}")).unwrap();
        assert_eq!(r.manifest_ref(), ManifestRef::Digest(d));
        assert_eq!(Reference::parse("h.io/x:t").unwrap().manifest_ref(), ManifestRef::Tag("t".into()));
        let built = Reference::new("h.io:5", "a/b", ManifestRef::Digest(d)).unwrap();
        assert_eq!(built.to_string(), format!("h.io:5/a/b@{d}"));
        assert_eq!(Reference::parse("h.io/x:t").unwrap().with_digest(d).manifest_ref(), ManifestRef::Digest(d));
    }

    #[test]
    fn rejects_bad_references_with_reasons() {
        assert!(err("ubuntu").contains("no registry host"));
        assert!(err("library/ubuntu:22.04").contains("not a registry host"));
        assert!(err("h.io/Upper").contains("must be lowercase"));
        assert!(err("h.io/a//b").contains("is empty"));
        assert!(err("h.io/").contains("empty"));
        assert!(err("h.io/a/").contains("is empty"));
        assert!(err("h.io/a..b").contains("invalid character"));
        assert!(err("h.io/a___b").contains("invalid character"));
        assert!(err("h.io/a$b").contains("invalid character"));
        assert!(err("h.io/-a").contains("must start"));
        assert!(err("h.io/a:").contains("tag is empty"));
        assert!(err("h.io/a:.x").contains("must start"));
        assert!(err("h.io/a:x/y").contains("contains characters"));
        assert!(err("h.io/a:b:c").contains("contains characters"));
        assert!(err(&format!("h.io/a:{}", "t".repeat(129))).contains("longer than 128"));
        assert!(err(&format!("h.io/{}", "a".repeat(256))).contains("longer than 255"));
        assert!(err("h.io:99999/a").contains("invalid port"));
        assert!(err("h.io:/a").contains("invalid port"));
        assert!(err("h.io:5x/a").contains("invalid port"));
        assert!(err("bad_host.io/a").contains("invalid name component"));
        assert!(err("[zz]:5/a").contains("IPv6"));
        assert!(err("h.io/a@sha256:abc").contains("bad digest"));
        assert!(err(&format!("h.io/a@sha512:{HEX}")).contains("bad digest"));
    }
}
