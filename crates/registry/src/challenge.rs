//! `WWW-Authenticate` challenges (RFC 7235): `Bearer realm="...",service="...",scope="..."`
//! and `Basic realm="..."`, possibly several in one header, with quoted strings that may
//! contain commas and backslash escapes.

use std::collections::BTreeMap;

/// One challenge: the scheme (lowercased) and its parameters (names lowercased).
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Challenge {
    pub scheme: String,
    pub params: BTreeMap<String, String>,
}

impl Challenge {
    pub fn param(&self, name: &str) -> Option<&str> {
        self.params.get(name).map(String::as_str)
    }
}

/// Parses every challenge in the given header values. Unparseable trailing garbage ends
/// the parse of that value; what was understood before it is kept.
pub(crate) fn parse_challenges<'a>(values: impl IntoIterator<Item = &'a str>) -> Vec<Challenge> {
    let mut out = Vec::new();
    for v in values {
        Parser { s: v.as_bytes(), i: 0 }.challenges(&mut out);
    }
    out
}

struct Parser<'a> {
    s: &'a [u8],
    i: usize,
}

fn is_tchar(c: u8) -> bool {
    c.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&c)
}

impl Parser<'_> {
    fn skip_ws(&mut self) {
        while self.i < self.s.len() && (self.s[self.i] == b' ' || self.s[self.i] == b'\t') {
            self.i += 1;
        }
    }

    fn skip_ws_and_commas(&mut self) {
        while self.i < self.s.len() && matches!(self.s[self.i], b' ' | b'\t' | b',') {
            self.i += 1;
        }
    }

    fn token(&mut self) -> Option<String> {
        let start = self.i;
        while self.i < self.s.len() && is_tchar(self.s[self.i]) {
            self.i += 1;
        }
        (self.i > start).then(|| String::from_utf8_lossy(&self.s[start..self.i]).into_owned())
    }

    fn quoted(&mut self) -> Option<String> {
        // At the opening quote.
        self.i += 1;
        let mut v = Vec::new();
        while self.i < self.s.len() {
            match self.s[self.i] {
                b'"' => {
                    self.i += 1;
                    return Some(String::from_utf8_lossy(&v).into_owned());
                }
                b'\\' if self.i + 1 < self.s.len() => {
                    v.push(self.s[self.i + 1]);
                    self.i += 2;
                }
                c => {
                    v.push(c);
                    self.i += 1;
                }
            }
        }
        None // unterminated
    }

    /// Looks ahead: is the next thing `token BWS "="` (a parameter) rather than a new scheme?
    fn at_param(&self) -> bool {
        let mut j = self.i;
        while j < self.s.len() && is_tchar(self.s[j]) {
            j += 1;
        }
        if j == self.i {
            return false;
        }
        while j < self.s.len() && (self.s[j] == b' ' || self.s[j] == b'\t') {
            j += 1;
        }
        // `token68` values end in '=' too ("abc=="), but then nothing but '=' / ',' / end follows.
        j < self.s.len() && self.s[j] == b'=' && {
            let mut k = j;
            while k < self.s.len() && self.s[k] == b'=' {
                k += 1;
            }
            k - j == 1
        }
    }

    fn challenges(&mut self, out: &mut Vec<Challenge>) {
        loop {
            self.skip_ws_and_commas();
            let Some(scheme) = self.token() else { return };
            let mut params = BTreeMap::new();
            self.skip_ws();
            if !self.at_param() && self.s.get(self.i).is_some_and(|&c| is_token68(c)) {
                // A token68 credential right after the scheme (`Negotiate abc==`): not used here.
                while self.s.get(self.i).is_some_and(|&c| is_token68(c) || c == b'=') {
                    self.i += 1;
                }
            } else {
                while self.at_param() {
                    let name = self.token().unwrap_or_default().to_ascii_lowercase();
                    self.skip_ws();
                    self.i += 1; // '='
                    self.skip_ws();
                    let value = if self.s.get(self.i) == Some(&b'"') { self.quoted() } else { self.token() };
                    let Some(value) = value else {
                        out.push(Challenge { scheme: scheme.to_ascii_lowercase(), params });
                        return;
                    };
                    params.insert(name, value);
                    self.skip_ws_and_commas();
                }
            }
            out.push(Challenge { scheme: scheme.to_ascii_lowercase(), params });
        }
    }
}

fn is_token68(c: u8) -> bool {
    c.is_ascii_alphanumeric() || b"-._~+/".contains(&c)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn one(s: &str) -> Challenge {
        let v = parse_challenges([s]);
        assert_eq!(v.len(), 1, "{s}: {v:?}");
        v.into_iter().next().unwrap()
    }

    #[test]
    fn parses_docker_hub_style_bearer() {
        let c = one(
            r#"Bearer realm="https://auth.docker.io/token",service="registry.docker.io",scope="repository:samalba/my-app:pull,push""#,
        );
        assert_eq!(c.scheme, "bearer");
        assert_eq!(c.param("realm"), Some("https://auth.docker.io/token"));
        assert_eq!(c.param("service"), Some("registry.docker.io"));
        assert_eq!(c.param("scope"), Some("repository:samalba/my-app:pull,push"));
    }

    #[test]
    fn tolerates_spacing_case_escapes_and_unquoted_values() {
        let c =
            one(r#"  BEARER   Realm = "http://h/t?a=1" ,  service=reg ,scope="a \"b\" c",error="insufficient_scope""#);
        assert_eq!(c.scheme, "bearer");
        assert_eq!(c.param("realm"), Some("http://h/t?a=1"));
        assert_eq!(c.param("service"), Some("reg"));
        assert_eq!(c.param("scope"), Some(r#"a "b" c"#));
        assert_eq!(c.param("error"), Some("insufficient_scope"));
    }

    #[test]
    fn several_challenges_in_one_or_more_headers() {
        let v = parse_challenges([
            r#"Basic realm="x, y", Bearer realm="http://t",service="s""#,
            "Negotiate abc==",
            "Basic",
        ]);
        let schemes: Vec<_> = v.iter().map(|c| c.scheme.as_str()).collect();
        assert_eq!(schemes, ["basic", "bearer", "negotiate", "basic"]);
        assert_eq!(v[0].param("realm"), Some("x, y"));
        assert_eq!(v[1].param("service"), Some("s"));
    }

    #[test]
    fn unterminated_quotes_keep_what_was_parsed() {
        let v = parse_challenges([r#"Bearer realm="http://t",scope="oops"#]);
        assert_eq!(v.len(), 1);
        assert_eq!(v[0].param("realm"), Some("http://t"));
        assert_eq!(v[0].param("scope"), None);
    }
}
