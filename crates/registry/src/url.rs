//! The little URL handling the distribution API needs: resolving `Location` headers
//! (absolute, scheme-relative, absolute-path or relative), comparing origins (to decide
//! whether credentials may follow a redirect), and appending query parameters to URLs that
//! may already carry a query (upload session URLs do: `?_state=...`).

/// `scheme://authority` of an absolute http(s) URL, lowercased; `None` for anything else.
pub(crate) fn origin(url: &str) -> Option<String> {
    let (scheme, rest) = url.split_once("://")?;
    let scheme = scheme.to_ascii_lowercase();
    if scheme != "http" && scheme != "https" {
        return None;
    }
    let end = rest.find(['/', '?', '#']).unwrap_or(rest.len());
    let authority = &rest[..end];
    if authority.is_empty() || authority.contains('@') {
        return None;
    }
    Some(format!("{scheme}://{}", authority.to_ascii_lowercase()))
}

/// The host of an origin (`scheme://host[:port]`), without the port, lowercased.
pub(crate) fn host(origin: &str) -> Option<&str> {
    let authority = origin.split_once("://")?.1;
    if let Some(v6) = authority.strip_prefix('[') {
        return v6.split_once(']').map(|(h, _)| h);
    }
    Some(authority.rsplit_once(':').map_or(authority, |(h, _)| h))
}

/// Resolves `location` against the URL of the request that returned it.
pub(crate) fn resolve(base: &str, location: &str) -> Option<String> {
    let location = location.trim();
    if location.is_empty() {
        return None;
    }
    if location.contains("://") && !location.starts_with('/') && !location.starts_with('?') {
        return origin(location).map(|_| location.to_owned());
    }
    let base_origin = origin(base)?;
    if let Some(rest) = location.strip_prefix("//") {
        let scheme = &base_origin[..base_origin.find(':')?];
        let url = format!("{scheme}://{rest}");
        return origin(&url).map(|_| url);
    }
    if location.starts_with('/') {
        return Some(format!("{base_origin}{location}"));
    }
    let after_origin = &base[base_origin.len()..];
    let path_end = after_origin.find(['?', '#']).unwrap_or(after_origin.len());
    let path = &after_origin[..path_end];
    if location.starts_with('?') {
        return Some(format!("{base_origin}{}{location}", if path.is_empty() { "/" } else { path }));
    }
    let dir = match path.rfind('/') {
        Some(i) => &path[..=i],
        None => "/",
    };
    Some(format!("{base_origin}{dir}{location}"))
}

/// Appends `key=value` (value percent-encoded) with `?` or `&` as the URL requires.
pub(crate) fn append_query(url: &str, key: &str, value: &str) -> String {
    // A fragment is never sent to the server; drop it rather than append after it.
    let base = url.split('#').next().unwrap_or(url);
    let sep = if !base.contains('?') {
        "?"
    } else if base.ends_with('?') || base.ends_with('&') {
        ""
    } else {
        "&"
    };
    format!("{base}{sep}{key}={}", percent_encode(value))
}

/// Percent-encodes everything but RFC 3986 unreserved characters.
pub(crate) fn percent_encode(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || b"-._~".contains(&b) {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn origins() {
        assert_eq!(origin("http://127.0.0.1:5000/v2/x").as_deref(), Some("http://127.0.0.1:5000"));
        assert_eq!(origin("HTTPS://Reg.IO?x").as_deref(), Some("https://reg.io"));
        assert_eq!(origin("ftp://x/y"), None);
        assert_eq!(origin("/v2/x"), None);
        assert_eq!(origin("http://user@evil/"), None);
        assert_eq!(host("http://127.0.0.1:5000"), Some("127.0.0.1"));
        assert_eq!(host("https://reg.io"), Some("reg.io"));
        assert_eq!(host("http://[::1]:80"), Some("::1"));
    }

    #[test]
    fn resolves_every_location_form() {
        let base = "http://r:5000/v2/a/b/blobs/uploads/?mount=x";
        assert_eq!(resolve(base, "http://s3:9000/bucket/k?sig=1").unwrap(), "http://s3:9000/bucket/k?sig=1");
        assert_eq!(resolve(base, "//cdn:80/p").unwrap(), "http://cdn:80/p");
        assert_eq!(
            resolve(base, "/v2/a/b/blobs/uploads/uuid?_state=z").unwrap(),
            "http://r:5000/v2/a/b/blobs/uploads/uuid?_state=z"
        );
        assert_eq!(resolve(base, "uuid?_state=z").unwrap(), "http://r:5000/v2/a/b/blobs/uploads/uuid?_state=z");
        assert_eq!(resolve("http://r:5000/v2/a/blobs/x", "?q=1").unwrap(), "http://r:5000/v2/a/blobs/x?q=1");
        assert_eq!(resolve("http://r:5000", "x").unwrap(), "http://r:5000/x");
        assert!(resolve(base, "").is_none());
        assert!(resolve(base, "gopher://x/").is_none());
    }

    #[test]
    fn appends_queries() {
        assert_eq!(append_query("http://r/u", "digest", "sha256:ab"), "http://r/u?digest=sha256%3Aab");
        assert_eq!(append_query("http://r/u?_state=a%3D", "digest", "d"), "http://r/u?_state=a%3D&digest=d");
        assert_eq!(append_query("http://r/u?", "k", "v w"), "http://r/u?k=v%20w");
    }
}
