//! Containers: an upper and a work directory over an image's layers, mounted with overlayfs.
//!
//! Mounts use `index=off,redirect_dir=off,metacopy=off` so the upperdir alone describes
//! every change and `commit` can use the single-walk differ (a directory rename becomes a
//! copy plus a whiteout instead of a redirect).
//!
//! A container's record and directories are created and removed in owner transactions;
//! mounting happens in the calling process (its mount namespace), serialized per container
//! by a lock on `containers/<hex>.lock`, so two processes never mount one container twice.

use std::fs;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

use nix::mount::{MntFlags, MsFlags};
use strata_index::Table;
use strata_types::ImageName;

use crate::error::IoContext;
use crate::lock::StagingLock;
use crate::owner::{Owner, RootPath, Tx, TxOk};
use crate::records::ContainerRecord;
use crate::staging::Staging;
use crate::store::now_secs;
use crate::{Store, StoreError};

/// Overlay options strata always mounts containers with.
pub const MOUNT_OPTIONS: &str = "index=off,redirect_dir=off,metacopy=off";

/// Directories of one container.
#[derive(Clone, Debug)]
pub struct ContainerDirs {
    pub upper: PathBuf,
    pub work: PathBuf,
    pub merged: PathBuf,
}

/// True when something is mounted at `path` (its device differs from its parent's).
pub fn is_mounted(path: &Path) -> bool {
    let (Ok(a), Some(parent)) = (fs::symlink_metadata(path), path.parent()) else { return false };
    let Ok(b) = fs::symlink_metadata(parent) else { return false };
    a.dev() != b.dev()
}

pub(crate) fn unmount_if_mounted(merged: &Path) -> Result<(), StoreError> {
    while is_mounted(merged) {
        nix::mount::umount2(merged, MntFlags::empty()).map_err(|e| StoreError::io(merged, e.into()))?;
    }
    Ok(())
}

impl Store {
    pub fn container_dirs(&self, name: &ImageName) -> ContainerDirs {
        let d = self.paths.container(name);
        ContainerDirs { upper: d.join("upper"), work: d.join("work"), merged: d.join("merged") }
    }

    /// Lower directories of a container, top-most first (overlay's `lowerdir=` order).
    pub fn container_lowers(&self, rec: &ContainerRecord) -> Vec<PathBuf> {
        rec.layers.iter().rev().map(|l| self.paths.layer_diff(l)).collect()
    }

    /// Holds the container's lock while `f` runs (mount, unmount, remove, commit).
    fn with_container_lock<T>(
        &self,
        name: &ImageName,
        f: impl FnOnce() -> Result<T, StoreError>,
    ) -> Result<T, StoreError> {
        let path = self.paths.container(name).with_extension("lock");
        let _lock = loop {
            match StagingLock::acquire(&path) {
                Ok(l) => break l,
                Err(StoreError::Io { source, .. }) if source.raw_os_error() == Some(libc::EWOULDBLOCK) => {
                    std::thread::sleep(std::time::Duration::from_millis(10))
                }
                Err(e) => return Err(e),
            }
        };
        f()
    }

    pub fn container_create(&self, image: &ImageName, name: &ImageName) -> Result<ContainerRecord, StoreError> {
        let tx = Tx::ContainerCreate { image: image.clone(), name: name.clone(), created: now_secs() };
        match self.tx(tx)? {
            TxOk::Container(rec) => Ok(rec),
            other => Err(crate::owner::unexpected(other)),
        }
    }

    /// Mounts the container (if it is not mounted yet) and returns the merged directory.
    pub fn container_mount(&self, name: &ImageName) -> Result<PathBuf, StoreError> {
        let rec = self.container(name)?;
        let dirs = self.container_dirs(name);
        self.with_container_lock(name, || {
            if is_mounted(&dirs.merged) {
                return Ok(());
            }
            for l in &rec.layers {
                if !self.paths.layer_diff(l).is_dir() {
                    return Err(StoreError::MissingLayer(*l));
                }
            }
            let lowers = self.container_lowers(&rec);
            let opts: Vec<&str> = MOUNT_OPTIONS.split(',').collect();
            let data = strata_differ::overlay_options(&lowers, Some((&dirs.upper, &dirs.work)), &opts)
                .map_err(|source| StoreError::Diff { context: format!("mounting container {name}"), source })?;
            let data = std::ffi::OsStr::from_bytes(&data);
            nix::mount::mount(Some("overlay"), &dirs.merged, Some("overlay"), MsFlags::empty(), Some(data))
                .map_err(|e| StoreError::io(&dirs.merged, std::io::Error::other(format!("mount overlay: {e}"))))
        })?;
        Ok(dirs.merged)
    }

    pub fn container_umount(&self, name: &ImageName) -> Result<(), StoreError> {
        self.container(name)?;
        let dirs = self.container_dirs(name);
        self.with_container_lock(name, || {
            if !is_mounted(&dirs.merged) {
                return Err(StoreError::NotMounted(name.clone()));
            }
            unmount_if_mounted(&dirs.merged)
        })
    }

    /// Unmounts and removes a container and its changes.
    pub fn container_rm(&self, name: &ImageName) -> Result<(), StoreError> {
        self.container(name)?;
        let dirs = self.container_dirs(name);
        let trash = Staging::new(&self.paths, "container-rm")?;
        self.with_container_lock(name, || {
            unmount_if_mounted(&dirs.merged)?;
            self.tx(Tx::ContainerRemove { name: name.clone(), trash: trash.root_path()? }).map(|_| ())
        })?;
        let _ = fs::remove_file(self.paths.container(name).with_extension("lock"));
        Ok(())
        // `trash` (the container's directory) is deleted on drop.
    }
}

impl Owner {
    /// The `container_create` transaction: directories first, record second (a crash in
    /// between leaves an orphan directory that recovery removes).
    pub(crate) fn container_create(
        &self,
        image: &ImageName,
        name: &ImageName,
        created: u64,
    ) -> Result<ContainerRecord, StoreError> {
        let img = crate::store::image(&self.index, image)?;
        match crate::store::container(&self.index, name) {
            // This very request, sent again after its owner died.
            Ok(rec) if rec.image == *image && rec.created == created && rec.layers == img.layers => return Ok(rec),
            Ok(_) => return Err(StoreError::ContainerExists(name.clone())),
            Err(StoreError::NoSuchContainer(_)) => {}
            Err(e) => return Err(e),
        }
        if img.layers.is_empty() {
            return Err(StoreError::Invalid(format!("image {image} has no layers to run a container on")));
        }
        let base = self.paths.container(name);
        if base.exists() {
            crate::files::remove_tree(&base)?;
        }
        for d in ["upper", "work", "merged"] {
            let d = base.join(d);
            fs::create_dir_all(&d).at(&d)?;
        }
        let rec = ContainerRecord { name: name.clone(), image: image.clone(), layers: img.layers.clone(), created };
        let mut b = self.index.batch();
        let json = serde_json::to_vec(&rec).expect("container record serializes");
        self.index.put(&mut b, Table::Containers, name.as_str().as_bytes(), &json);
        self.index.commit(b)?;
        Ok(rec)
    }

    /// The `container_remove` transaction: record first (a crash after it leaves an orphan
    /// directory for recovery), then the directory goes into `trash`.
    pub(crate) fn container_remove(&self, name: &ImageName, trash: &RootPath) -> Result<(), StoreError> {
        crate::store::container(&self.index, name)?;
        let mut b = self.index.batch();
        self.index.delete(&mut b, Table::Containers, name.as_str().as_bytes());
        self.index.commit(b)?;
        let base = self.paths.container(name);
        let to = trash.resolve(self.paths.root()).join("container");
        fs::rename(&base, &to).at(&to)
    }
}
