//! Containers: an upper and a work directory over an image's layers, mounted with overlayfs.
//!
//! Mounts use `index=off,redirect_dir=off,metacopy=off` so the upperdir alone describes
//! every change and `commit` can use the single-walk differ (a directory rename becomes a
//! copy plus a whiteout instead of a redirect).

use std::fs;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

use nix::mount::{MntFlags, MsFlags};
use strata_index::Table;
use strata_types::ImageName;

use crate::error::IoContext;
use crate::records::ContainerRecord;
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

/// Escapes a path for overlay's comma/colon separated options.
fn escape_opt(p: &Path) -> String {
    let s = p.to_string_lossy();
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        if matches!(c, ',' | ':' | '\\') {
            out.push('\\');
        }
        out.push(c);
    }
    out
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

    pub fn container_create(&self, image: &ImageName, name: &ImageName) -> Result<ContainerRecord, StoreError> {
        self.require_write()?;
        let img = self.image(image)?;
        if self.index.get(Table::Containers, name.as_str().as_bytes())?.is_some() {
            return Err(StoreError::ContainerExists(name.clone()));
        }
        if img.layers.is_empty() {
            return Err(StoreError::Invalid(format!("image {image} has no layers to run a container on")));
        }
        // Directories first, record second: a crash in between leaves an orphan directory
        // that recovery removes.
        let dirs = self.container_dirs(name);
        let base = self.paths.container(name);
        if base.exists() {
            crate::files::remove_tree(&base)?;
        }
        for d in [&dirs.upper, &dirs.work, &dirs.merged] {
            fs::create_dir_all(d).at(d)?;
        }
        let rec = ContainerRecord {
            name: name.clone(),
            image: image.clone(),
            layers: img.layers.clone(),
            created: now_secs(),
        };
        let mut b = self.index.batch();
        let json = serde_json::to_vec(&rec).expect("container record serializes");
        self.index.put(&mut b, Table::Containers, name.as_str().as_bytes(), &json);
        self.index.commit(b)?;
        Ok(rec)
    }

    /// Mounts the container (if it is not mounted yet) and returns the merged directory.
    pub fn container_mount(&self, name: &ImageName) -> Result<PathBuf, StoreError> {
        let rec = self.container(name)?;
        let dirs = self.container_dirs(name);
        if is_mounted(&dirs.merged) {
            return Ok(dirs.merged);
        }
        for l in &rec.layers {
            if !self.paths.layer_diff(l).is_dir() {
                return Err(StoreError::MissingLayer(*l));
            }
        }
        let lowers: Vec<String> = self.container_lowers(&rec).iter().map(|p| escape_opt(p)).collect();
        let data = format!(
            "lowerdir={},upperdir={},workdir={},{MOUNT_OPTIONS}",
            lowers.join(":"),
            escape_opt(&dirs.upper),
            escape_opt(&dirs.work)
        );
        if data.len() >= 4096 {
            return Err(StoreError::Invalid(format!(
                "container {name}: {} layers make overlay options of {} bytes, over the kernel's 4095",
                rec.layers.len(),
                data.len()
            )));
        }
        nix::mount::mount(Some("overlay"), &dirs.merged, Some("overlay"), MsFlags::empty(), Some(data.as_str()))
            .map_err(|e| StoreError::io(&dirs.merged, std::io::Error::other(format!("mount overlay: {e}"))))?;
        Ok(dirs.merged)
    }

    pub fn container_umount(&self, name: &ImageName) -> Result<(), StoreError> {
        self.container(name)?;
        let dirs = self.container_dirs(name);
        if !is_mounted(&dirs.merged) {
            return Err(StoreError::NotMounted(name.clone()));
        }
        unmount_if_mounted(&dirs.merged)
    }

    /// Unmounts and removes a container and its changes.
    pub fn container_rm(&self, name: &ImageName) -> Result<(), StoreError> {
        self.require_write()?;
        self.container(name)?;
        let dirs = self.container_dirs(name);
        unmount_if_mounted(&dirs.merged)?;
        // Record first: a crash after it leaves an orphan directory for recovery.
        let mut b = self.index.batch();
        self.index.delete(&mut b, Table::Containers, name.as_str().as_bytes());
        self.index.commit(b)?;
        let base = self.paths.container(name);
        crate::files::remove_tree(&base)
    }
}
