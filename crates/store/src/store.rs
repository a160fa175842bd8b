//! Opening a store: directories, the lock, the index, crash recovery.

use std::path::Path;
use std::time::{SystemTime, UNIX_EPOCH};

use strata_index::{Index, LayerNum, OpenMode, Table};
use strata_types::{ImageName, LayerId};

use crate::lock::{LockKind, StoreLock, Wait};
use crate::paths::StorePaths;
use crate::records::{ContainerRecord, ImageRecord, LayerRecord};
use crate::{StoreError, recover};

/// Whether a command reads or changes the store.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Access {
    /// Shared lock, read-only index: any number at once, while no writer runs.
    Read,
    /// Exclusive lock, writable index, crash recovery on open.
    Write,
}

/// How to open a store.
#[derive(Clone, Copy, Debug)]
pub struct OpenOptions {
    pub wait: Wait,
}

impl Default for OpenOptions {
    fn default() -> Self {
        OpenOptions { wait: Wait::Block }
    }
}

/// An open store, holding its lock until dropped.
#[derive(Debug)]
pub struct Store {
    pub(crate) paths: StorePaths,
    pub(crate) index: Index,
    access: Access,
    /// What recovery cleaned up when this handle was opened.
    pub(crate) recovered: recover::Recovered,
    // Declared last: dropped after the index is closed.
    _lock: StoreLock,
}

pub(crate) fn now_secs() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_secs()).unwrap_or(0)
}

// Here rather than in `records.rs`, which stays pure (the fuzz targets compile it alone).
impl crate::records::ImageRecord {
    /// A record created now, its config digest computed from the config's bytes.
    pub(crate) fn new(
        name: strata_types::ImageName,
        layers: Vec<strata_types::LayerId>,
        config: String,
        source: String,
    ) -> Self {
        let config_digest = strata_types::Sha256Digest::of(config.as_bytes());
        Self { name, layers, config, config_digest, created: now_secs(), source }
    }
}

impl Store {
    /// Opens the store at `root`, creating it when it does not exist.
    pub fn open(root: &Path, access: Access, opts: OpenOptions) -> Result<Store, StoreError> {
        let paths = StorePaths::new(root);
        if !root.exists() {
            // A root strata creates is private; one the operator made keeps its mode (the
            // directories inside are private either way).
            crate::files::private_dir(root)?;
        }
        let fresh = !paths.index().join("CURRENT").exists();
        let kind = if access == Access::Write || fresh { LockKind::Exclusive } else { LockKind::Shared };
        let lock = StoreLock::acquire(&paths.lock(), &paths.lock_owner(), kind, opts.wait)?;
        if kind == LockKind::Exclusive {
            for d in [paths.layers(), paths.containers(), paths.staging(), paths.index()] {
                crate::files::private_dir(&d)?;
            }
        }
        let mode = if kind == LockKind::Exclusive { OpenMode::ReadWrite } else { OpenMode::ReadOnly };
        let index = Index::open(&paths.index(), mode)?;
        let mut store = Store { paths, index, access, recovered: recover::Recovered::default(), _lock: lock };
        if kind == LockKind::Exclusive {
            store.recovered = recover::recover(&store)?;
        }
        Ok(store)
    }

    pub fn root(&self) -> &Path {
        self.paths.root()
    }

    pub fn paths(&self) -> &StorePaths {
        &self.paths
    }

    pub fn index(&self) -> &Index {
        &self.index
    }

    pub fn access(&self) -> Access {
        self.access
    }

    /// What crash recovery removed when the store was opened for writing.
    pub fn recovered(&self) -> recover::Recovered {
        self.recovered
    }

    pub(crate) fn require_write(&self) -> Result<(), StoreError> {
        if self.access != Access::Write {
            return Err(StoreError::Invalid("internal: a read-only store handle was asked to change the store".into()));
        }
        Ok(())
    }

    // ---- records ----

    fn decode<T: serde::de::DeserializeOwned>(what: &str, bytes: &[u8]) -> Result<T, StoreError> {
        serde_json::from_slice(bytes).map_err(|e| StoreError::Corrupt(format!("{what} record: {e}")))
    }

    pub fn image(&self, name: &ImageName) -> Result<ImageRecord, StoreError> {
        match self.index.get(Table::Images, name.as_str().as_bytes())? {
            Some(b) => Self::decode("image", &b),
            None => Err(StoreError::NoSuchImage(name.clone())),
        }
    }

    pub fn has_image(&self, name: &ImageName) -> Result<bool, StoreError> {
        Ok(self.index.get(Table::Images, name.as_str().as_bytes())?.is_some())
    }

    pub fn images(&self) -> Result<Vec<ImageRecord>, StoreError> {
        self.index.scan(Table::Images)?.iter().map(|(_, v)| Self::decode("image", v)).collect()
    }

    pub fn layer(&self, id: &LayerId) -> Result<Option<LayerRecord>, StoreError> {
        match self.index.get(Table::Layers, id.0.as_bytes())? {
            Some(b) => Self::decode("layer", &b).map(Some),
            None => Ok(None),
        }
    }

    pub fn layer_required(&self, id: &LayerId) -> Result<LayerRecord, StoreError> {
        self.layer(id)?.ok_or(StoreError::MissingLayer(*id))
    }

    pub fn layers(&self) -> Result<Vec<LayerRecord>, StoreError> {
        self.index.scan(Table::Layers)?.iter().map(|(_, v)| Self::decode("layer", v)).collect()
    }

    pub fn layer_id_of(&self, num: LayerNum) -> Result<Option<LayerId>, StoreError> {
        match self.index.get(Table::LayerNums, &num.0.to_be_bytes())? {
            Some(b) => {
                let d = strata_types::Sha256Digest::from_slice(&b)
                    .ok_or_else(|| StoreError::Corrupt(format!("layer number {num} maps to {} bytes", b.len())))?;
                Ok(Some(LayerId(d)))
            }
            None => Ok(None),
        }
    }

    pub fn container(&self, name: &ImageName) -> Result<ContainerRecord, StoreError> {
        match self.index.get(Table::Containers, name.as_str().as_bytes())? {
            Some(b) => Self::decode("container", &b),
            None => Err(StoreError::NoSuchContainer(name.clone())),
        }
    }

    pub fn containers(&self) -> Result<Vec<ContainerRecord>, StoreError> {
        self.index.scan(Table::Containers)?.iter().map(|(_, v)| Self::decode("container", v)).collect()
    }
}
