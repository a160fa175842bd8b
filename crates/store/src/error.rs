//! The store's error type: every variant names what was wrong.

use std::path::Path;

use strata_types::{ImageName, LayerId, Sha256Digest};

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("store {root} is locked ({holder})")]
    Locked { root: String, holder: String },
    #[error("{path}: {source}")]
    Io { path: String, source: std::io::Error },
    #[error(transparent)]
    Index(#[from] strata_index::IndexError),
    #[error(transparent)]
    Oci(#[from] strata_oci::OciError),
    #[error(transparent)]
    Registry(#[from] strata_registry::RegistryError),
    #[error("no image named {0}")]
    NoSuchImage(ImageName),
    #[error("an image named {0} already exists")]
    ImageExists(ImageName),
    #[error("no container named {0}")]
    NoSuchContainer(ImageName),
    #[error("a container named {0} already exists")]
    ContainerExists(ImageName),
    #[error("image {image} is used by container {container}: remove the container first")]
    ImageInUse { image: ImageName, container: ImageName },
    #[error("container {0} is not mounted")]
    NotMounted(ImageName),
    #[error("layer {layer}: its tar stream has DiffID {found}, the image config says {expected}")]
    DiffIdMismatch { layer: usize, expected: Sha256Digest, found: Sha256Digest },
    #[error("layer {index} of {source_name} ({digest}): {message}")]
    BadLayer { source_name: String, index: usize, digest: Sha256Digest, message: String },
    #[error("layer {0} is missing from the store")]
    MissingLayer(LayerId),
    #[error("image config: {0}")]
    BadConfig(String),
    #[error(transparent)]
    Apply(#[from] strata_layer::apply::ApplyError),
    #[error("{context}: {source}")]
    Diff { context: String, source: strata_differ::DiffError },
    #[error("{0}")]
    Invalid(String),
    /// An error the store's owner (another process) reported, with its message.
    #[error("{0}")]
    Owner(String),
    #[error("the store's owner stopped while running a transaction (it may or may not have been applied): {source}")]
    OwnerLost { source: std::io::Error },
    #[error("store is inconsistent: {0}")]
    Corrupt(String),
}

impl StoreError {
    pub fn io(path: impl AsRef<Path>, source: std::io::Error) -> StoreError {
        StoreError::Io { path: path.as_ref().display().to_string(), source }
    }
}

/// `map_err` helper: attach a path to an io error.
pub(crate) trait IoContext<T> {
    fn at(self, path: impl AsRef<Path>) -> Result<T, StoreError>;
}

impl<T> IoContext<T> for std::io::Result<T> {
    fn at(self, path: impl AsRef<Path>) -> Result<T, StoreError> {
        self.map_err(|e| StoreError::io(path, e))
    }
}
