//! The error type of the client, and the registry's own error documents
//! (`{"errors":[{"code","message","detail"}]}`), which are carried into our errors.

use std::fmt;
use std::ops::Range;

use strata_types::Sha256Digest;

/// What a 401 answer means for the user: were credentials found, and were they sent?
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum CredentialState {
    /// No auth file had an entry for the registry; the list names the files searched.
    NotFound { searched: Vec<String> },
    /// Credentials from `source` were sent and refused.
    Rejected { source: String },
}

impl fmt::Display for CredentialState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            CredentialState::NotFound { searched } if searched.is_empty() => {
                write!(f, "no credentials were found (no auth file exists)")
            }
            CredentialState::NotFound { searched } => {
                write!(f, "no credentials were found (searched {})", searched.join(", "))
            }
            CredentialState::Rejected { source } => write!(f, "the credentials from {source} were rejected"),
        }
    }
}

/// The `errors` array of a registry's error answer (or the start of a non-JSON body).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ErrorDetail(pub Vec<String>);

impl ErrorDetail {
    /// Parses an error body. JSON `errors[]` become `CODE: message (detail)`; other text is
    /// kept (shortened) so the user sees what the server said.
    pub fn parse(body: &[u8]) -> ErrorDetail {
        #[derive(serde::Deserialize)]
        struct Doc {
            errors: Vec<Item>,
        }
        #[derive(serde::Deserialize)]
        struct Item {
            #[serde(default)]
            code: String,
            #[serde(default)]
            message: String,
            #[serde(default)]
            detail: serde_json::Value,
        }
        if let Ok(doc) = serde_json::from_slice::<Doc>(body) {
            return ErrorDetail(
                doc.errors
                    .into_iter()
                    .map(|e| {
                        let mut s = format!("{}: {}", e.code, e.message);
                        if !e.detail.is_null() {
                            let d = e.detail.to_string();
                            s.push_str(&format!(" ({})", shorten(&d, 200)));
                        }
                        s
                    })
                    .collect(),
            );
        }
        let text = String::from_utf8_lossy(body);
        let text = text.trim();
        if text.is_empty() { ErrorDetail::default() } else { ErrorDetail(vec![shorten(text, 300)]) }
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

fn shorten(s: &str, max: usize) -> String {
    if s.len() <= max {
        return s.to_owned();
    }
    let mut end = max;
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}...", &s[..end])
}

impl fmt::Display for ErrorDetail {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.0.is_empty() {
            return Ok(());
        }
        write!(f, "; registry said: {}", self.0.join("; "))
    }
}

/// Everything that can go wrong talking to a registry.
#[derive(Debug, thiserror::Error)]
pub enum RegistryError {
    #[error("invalid image reference {input:?}: {reason}")]
    InvalidReference { input: String, reason: String },
    #[error("auth file {path}: {reason}")]
    AuthFile { path: String, reason: String },
    #[error("registry {registry} requires authentication for {what}: {credentials}{detail}")]
    Unauthorized { registry: String, what: String, credentials: CredentialState, detail: ErrorDetail },
    #[error("token server {realm} refused to issue a token for registry {registry}: {credentials}{detail}")]
    TokenRefused { registry: String, realm: String, credentials: CredentialState, detail: ErrorDetail },
    #[error("registry {registry} denied access to {what} (403 Forbidden){detail}")]
    Denied { registry: String, what: String, detail: ErrorDetail },
    #[error("manifest {repository}:{reference} not found on {registry}{detail}")]
    ManifestUnknown { registry: String, repository: String, reference: String, detail: ErrorDetail },
    #[error("blob {digest} not found in {registry}/{repository}{detail}")]
    BlobUnknown { registry: String, repository: String, digest: Sha256Digest, detail: ErrorDetail },
    #[error("{method} {url}: unexpected HTTP status {status}{detail}")]
    Status { method: String, url: String, status: u16, detail: ErrorDetail },
    #[error("{method} {url}: HTTP status {status} after {attempts} attempts{detail}")]
    ServerError { method: String, url: String, status: u16, attempts: u32, detail: ErrorDetail },
    #[error("{method} {url}: {source} (after {attempts} attempts)")]
    Connection {
        method: String,
        url: String,
        attempts: u32,
        #[source]
        source: Box<ureq::Error>,
    },
    #[error("{what}: the registry sent content with digest {found}, expected {expected}")]
    DigestMismatch { what: String, expected: Sha256Digest, found: Sha256Digest },
    #[error("blob {digest}: the registry sent {found} bytes, expected {expected}")]
    SizeMismatch { digest: Sha256Digest, expected: u64, found: u64 },
    /// The body went on past the expected size (reading stopped there).
    #[error("blob {digest}: the registry sent more than the {expected} bytes expected")]
    BlobTooLong { digest: Sha256Digest, expected: u64 },
    #[error("manifest {reference} is larger than the {limit} bytes allowed")]
    ManifestTooLarge { reference: String, limit: u64 },
    #[error("manifest {reference} has unsupported media type {media_type:?}")]
    UnsupportedManifest { reference: String, media_type: String },
    #[error("image index {reference} has no linux/amd64 manifest")]
    NoMatchingPlatform { reference: String },
    #[error("blob {digest}: range {}..{} cannot be requested: {reason}", range.start, range.end)]
    InvalidRange { digest: Sha256Digest, range: Range<u64>, reason: String },
    #[error("blob {digest}: the registry cannot satisfy range {}..{} (blob size {})", range.start, range.end,
        blob_size.map_or("unknown".to_owned(), |s| s.to_string()))]
    RangeNotSatisfiable { digest: Sha256Digest, range: Range<u64>, blob_size: Option<u64> },
    #[error("{url}: invalid response: {reason}")]
    InvalidResponse { url: String, reason: String },
    #[error("{what}: {source}")]
    Io {
        what: String,
        #[source]
        source: std::io::Error,
    },
}

pub type Result<T, E = RegistryError> = std::result::Result<T, E>;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn error_documents_are_summarised() {
        let d = ErrorDetail::parse(
            br#"{"errors":[{"code":"MANIFEST_UNKNOWN","message":"manifest unknown","detail":{"Tag":"nope"}}]}"#,
        );
        assert_eq!(d.0, vec![r#"MANIFEST_UNKNOWN: manifest unknown ({"Tag":"nope"})"#.to_owned()]);
        assert_eq!(ErrorDetail::parse(b"404 page not found\n").0, vec!["404 page not found".to_owned()]);
        assert!(ErrorDetail::parse(b"  ").is_empty());
        let long = "x".repeat(1000);
        assert!(ErrorDetail::parse(long.as_bytes()).0[0].len() < 400);
    }
}
