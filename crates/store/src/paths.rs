//! Where things live under a store root (documented in `docs/on-disk-format.md`).
//!
//! ```text
//! ROOT/
//!   lock                     flock: shared for readers, exclusive for writers
//!   lock.owner               PID and command of the current exclusive holder (informational)
//!   index/                   RocksDB: chunk/file locations, file records, store records
//!   layers/<diffid-hex>/     one directory per layer, complete before it is renamed here
//!     diff/                  the layer's tree, usable as an overlay lowerdir
//!     tar-split.json.zst     how to rebuild the layer's exact tar stream from diff/
//!     records.bin            its file records (what the index holds for it)
//!     locs.bin               the index locations it added (for exact removal)
//!   containers/<hex(name)>/{upper,work,merged}
//!   staging/<op-id>/         work in progress; <op-id>.lock is held while it runs
//!   pins/<op-id>.pin         layers a live operation is about to use (flock held)
//!   claims/<diffid-hex>      flock held by the operation fetching that layer
//!   owner.sock               the owner's socket (transactions of the other processes)
//! ```

use std::path::{Path, PathBuf};

use strata_types::{ImageName, LayerId};

/// Paths of one store root.
#[derive(Clone, Debug)]
pub struct StorePaths {
    root: PathBuf,
}

impl StorePaths {
    pub fn new(root: impl Into<PathBuf>) -> Self {
        StorePaths { root: root.into() }
    }
    pub fn root(&self) -> &Path {
        &self.root
    }
    pub fn lock(&self) -> PathBuf {
        self.root.join("lock")
    }
    pub fn lock_owner(&self) -> PathBuf {
        self.root.join("lock.owner")
    }
    pub fn index(&self) -> PathBuf {
        self.root.join("index")
    }
    pub fn layers(&self) -> PathBuf {
        self.root.join("layers")
    }
    pub fn layer(&self, id: &LayerId) -> PathBuf {
        self.layers().join(id.dir_name())
    }
    pub fn layer_diff(&self, id: &LayerId) -> PathBuf {
        self.layer(id).join(LAYER_DIFF)
    }
    pub fn containers(&self) -> PathBuf {
        self.root.join("containers")
    }
    /// Container directories are named by a hex encoding of the name, since names may
    /// contain `/` and `:`.
    pub fn container(&self, name: &ImageName) -> PathBuf {
        self.containers().join(hex_name(name.as_str()))
    }
    pub fn staging(&self) -> PathBuf {
        self.root.join("staging")
    }
    pub fn pins(&self) -> PathBuf {
        self.root.join("pins")
    }
    pub fn claims(&self) -> PathBuf {
        self.root.join("claims")
    }
}

/// File and directory names inside a layer directory.
pub const LAYER_DIFF: &str = "diff";
pub const LAYER_TAR_SPLIT: &str = "tar-split.json.zst";
/// The layer's file records, as the index holds them (one per tar entry, in stream order).
pub const LAYER_RECORDS: &str = "records.bin";
/// The index locations the layer added (for its publication and exact removal).
pub const LAYER_LOCS: &str = "locs.bin";
/// The index keys a layer added, in stores made by earlier versions (`locs.bin` now).
pub const LAYER_INDEX_KEYS: &str = "index-keys";

fn hex_name(s: &str) -> String {
    s.bytes().map(|b| format!("{b:02x}")).collect()
}
