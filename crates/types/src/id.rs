//! Identifiers for store objects.

use std::fmt;
use std::str::FromStr;

use crate::Sha256Digest;

/// A layer is identified by its DiffID: the SHA-256 of its uncompressed tar stream. A layer
/// directory holds exactly that tar's content, independent of the layers below it, so the
/// same DiffID is the same layer in every image that uses it.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, serde::Serialize, serde::Deserialize)]
#[serde(transparent)]
pub struct LayerId(pub Sha256Digest);

impl LayerId {
    pub fn diff_id(&self) -> Sha256Digest {
        self.0
    }
    /// Directory name for this layer (hex of the DiffID).
    pub fn dir_name(&self) -> String {
        self.0.to_hex()
    }
}

impl fmt::Display for LayerId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(&self.0, f)
    }
}

impl fmt::Debug for LayerId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "LayerId({})", self.0)
    }
}

impl FromStr for LayerId {
    type Err = crate::DigestError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        s.parse().map(LayerId)
    }
}

/// Why a name is not acceptable for an image or container.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum IdError {
    #[error("name {0:?} is empty or longer than 255 bytes")]
    Length(String),
    #[error("name {0:?} may only contain letters, digits and . _ - : / @, and must start with a letter or digit")]
    Characters(String),
}

/// The name of an image or container in the store. Names become keys and, for containers,
/// directory names, so the alphabet is restricted and `/` never produces a `..` component.
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord, serde::Serialize, serde::Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct ImageName(String);

impl ImageName {
    pub fn new(s: impl Into<String>) -> Result<Self, IdError> {
        let s = s.into();
        if s.is_empty() || s.len() > 255 {
            return Err(IdError::Length(s));
        }
        let ok_char = |c: char| c.is_ascii_alphanumeric() || "._-:/@".contains(c);
        let first_ok = s.chars().next().is_some_and(|c| c.is_ascii_alphanumeric());
        let no_dot_component = s.split('/').all(|c| !c.is_empty() && c != "." && c != "..");
        if !first_ok || !s.chars().all(ok_char) || !no_dot_component {
            return Err(IdError::Characters(s));
        }
        Ok(ImageName(s))
    }
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl TryFrom<String> for ImageName {
    type Error = IdError;
    fn try_from(s: String) -> Result<Self, IdError> {
        ImageName::new(s)
    }
}

impl From<ImageName> for String {
    fn from(n: ImageName) -> String {
        n.0
    }
}

impl FromStr for ImageName {
    type Err = IdError;
    fn from_str(s: &str) -> Result<Self, IdError> {
        ImageName::new(s)
    }
}

impl fmt::Display for ImageName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl fmt::Debug for ImageName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:?}", self.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn image_names() {
        assert!(ImageName::new("debian:bookworm").is_ok());
        assert!(ImageName::new("127.0.0.1:5000/v2/rootfs-a@sha256:abc").is_ok());
        for bad in ["", "../x", "a/../b", "-x", "a b", "a//b", "a/./b"] {
            assert!(ImageName::new(bad).is_err(), "{bad} accepted");
        }
    }
}
