//! The store's own filesystem operations: private directories, removal of trees that neither
//! follows symlinks nor trips over read-only directories, and durability.
//!
//! Privacy: every directory strata creates at the top of a store (`layers/`, `staging/`,
//! `containers/`, `index/`, ...) is 0700 whatever the umask, and so is the root when strata
//! creates it, as containerd's and containers/storage's are. Layer trees below them keep the
//! modes of their images (a container's `/` must look normal, setuid binaries stay setuid),
//! so the 0700 parents are what keeps every other local user away from them (containerd's
//! CVE-2021-41103). Files strata creates at the root (`lock`, `lock.owner`) are 0600.

use std::fs::{self, File};
use std::io;
use std::os::fd::AsFd;
use std::os::unix::fs::{DirBuilderExt, PermissionsExt};
use std::path::Path;

use crate::StoreError;
use crate::error::IoContext;

/// Mode of the store's own directories.
pub(crate) const PRIVATE_DIR: u32 = 0o700;
/// Mode of the store's own files at its root (lock files).
pub(crate) const PRIVATE_FILE: u32 = 0o600;

/// Creates `dir` (and missing parents: those get the umask's mode) as 0700, or makes an
/// existing one 0700 (stores made by earlier versions had 0755 directories).
pub(crate) fn private_dir(dir: &Path) -> Result<(), StoreError> {
    match fs::DirBuilder::new().recursive(true).mode(PRIVATE_DIR).create(dir) {
        Ok(()) => {}
        Err(e) => return Err(StoreError::io(dir, e)),
    }
    let meta = fs::symlink_metadata(dir).at(dir)?;
    if !meta.is_dir() {
        return Err(StoreError::io(dir, io::Error::other("exists and is not a directory")));
    }
    // The umask may have taken bits away but never adds any; an old store may have more.
    if meta.permissions().mode() & 0o7777 != PRIVATE_DIR {
        fs::set_permissions(dir, fs::Permissions::from_mode(PRIVATE_DIR)).at(dir)?;
    }
    Ok(())
}

/// Removes a tree without following symlinks; read-only directories (rootless stores) are
/// made writable on the way. A missing path is not an error.
pub(crate) fn remove_tree(path: &Path) -> Result<(), StoreError> {
    strata_layer::apply::remove_tree(path).at(path)
}

/// Flushes all dirty data of the filesystem holding `dir` (one call instead of an fsync
/// per file of every layer).
pub(crate) fn syncfs(dir: &Path) -> Result<(), StoreError> {
    let f = File::open(dir).at(dir)?;
    nix::unistd::syncfs(f.as_fd()).map_err(|e| StoreError::io(dir, e.into()))
}

/// Makes the entries of `dir` (renames into it, new names) durable.
pub(crate) fn fsync_dir(dir: &Path) -> Result<(), StoreError> {
    File::open(dir).and_then(|f| f.sync_all()).at(dir)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn private_dirs_are_0700_and_old_ones_are_fixed() {
        // (Under a umask of 0: tests/security.rs runs the CLI that way.)
        let t = tempfile::tempdir().unwrap();
        let d = t.path().join("a/b");
        private_dir(&d).unwrap();
        assert_eq!(fs::metadata(&d).unwrap().permissions().mode() & 0o7777, 0o700);
        fs::set_permissions(&d, fs::Permissions::from_mode(0o755)).unwrap();
        private_dir(&d).unwrap();
        assert_eq!(fs::metadata(&d).unwrap().permissions().mode() & 0o7777, 0o700);
        fs::write(t.path().join("f"), b"").unwrap();
        assert!(private_dir(&t.path().join("f")).is_err());
    }
}
