//! OCI image-spec types (descriptors, manifests, indexes, configs), media types, and image
//! layouts on disk ([`layout`]).
//!
//! Only the fields strata reads or writes are typed; everything else in a manifest or config
//! is preserved verbatim in `extra` so a round trip loses nothing.

pub mod layout;
pub mod media;
mod types;

pub use types::{Descriptor, History, ImageConfig, ImageIndex, ImageManifest, Platform, RootFs};

/// Errors reading or writing OCI documents and layouts.
#[derive(Debug, thiserror::Error)]
pub enum OciError {
    #[error("{path}: {source}")]
    Io { path: String, source: std::io::Error },
    #[error("{what} is not valid JSON: {source}")]
    Json { what: String, source: serde_json::Error },
    #[error("blob {expected} has digest {found}")]
    DigestMismatch { expected: strata_types::Sha256Digest, found: strata_types::Sha256Digest },
    #[error("blob {digest} is {found} bytes, its descriptor says {expected}")]
    SizeMismatch { digest: strata_types::Sha256Digest, expected: u64, found: u64 },
    /// The blob goes on past its descriptor's size (reading stopped there).
    #[error("blob {digest} is longer than the {expected} bytes its descriptor says")]
    TooLong { digest: strata_types::Sha256Digest, expected: u64 },
    #[error("{0}")]
    Invalid(String),
    #[error("image layout {layout} has no manifest tagged {tag:?}")]
    NoSuchTag { layout: String, tag: String },
    #[error("unsupported media type {0:?}")]
    UnsupportedMediaType(String),
}
