//! Staging directories: where an operation builds what it will publish.
//!
//! Each operation gets `staging/<op>-<pid>-<n>/` and holds `staging/<op>-<pid>-<n>.lock`
//! while it runs. Whatever a killed operation leaves behind has no held lock, and recovery
//! (or gc) removes it; a live operation's staging is never touched.

use std::fs;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

use crate::StoreError;
use crate::error::IoContext;
use crate::lock::StagingLock;
use crate::paths::StorePaths;

static SEQ: AtomicU64 = AtomicU64::new(0);

/// A staging directory, removed on drop.
#[derive(Debug)]
pub struct Staging {
    dir: PathBuf,
    lock_path: PathBuf,
    /// Opened when the staging directory was made, before anything was written: `syncfs`
    /// reports the writeback errors of the filesystem since its descriptor was opened, so
    /// one opened just before syncing would miss an error from earlier writes.
    sync_fd: std::fs::File,
    _lock: StagingLock,
}

impl Staging {
    pub fn new(paths: &StorePaths, op: &str) -> Result<Staging, StoreError> {
        let n = SEQ.fetch_add(1, Ordering::Relaxed);
        let name = format!("{op}-{}-{n}", std::process::id());
        let dir = paths.staging().join(&name);
        let lock_path = paths.staging().join(format!("{name}.lock"));
        let lock = StagingLock::acquire(&lock_path)?;
        if dir.exists() {
            crate::files::remove_tree(&dir)?;
        }
        fs::create_dir_all(&dir).at(&dir)?;
        let sync_fd = std::fs::File::open(&dir).at(&dir)?;
        Ok(Staging { dir, lock_path, sync_fd, _lock: lock })
    }

    pub fn path(&self) -> &Path {
        &self.dir
    }

    /// Makes everything written since this staging directory was made durable (one `syncfs`
    /// of the store's filesystem), reporting any writeback error since then.
    pub(crate) fn sync(&self) -> Result<(), StoreError> {
        nix::unistd::syncfs(std::os::fd::AsFd::as_fd(&self.sync_fd)).map_err(|e| StoreError::io(&self.dir, e.into()))
    }

    /// The directory as transactions name it (relative to the store root).
    pub(crate) fn root_path(&self) -> Result<crate::owner::RootPath, StoreError> {
        let root = self.dir.parent().and_then(Path::parent).unwrap_or(Path::new("/"));
        crate::owner::RootPath::of(root, &self.dir)
    }
}

impl Drop for Staging {
    fn drop(&mut self) {
        let _ = crate::files::remove_tree(&self.dir);
        let _ = fs::remove_file(&self.lock_path);
    }
}

/// Removes staging directories whose operation is gone. Returns how many were removed.
pub fn sweep(paths: &StorePaths) -> Result<u64, StoreError> {
    let dir = paths.staging();
    let mut removed = 0;
    let Ok(rd) = fs::read_dir(&dir) else { return Ok(0) };
    for ent in rd {
        let ent = ent.at(&dir)?;
        let name = ent.file_name();
        let name = name.to_string_lossy();
        if name.ends_with(".lock") {
            let stem = name.trim_end_matches(".lock");
            if !StagingLock::is_held(&ent.path()) && !dir.join(stem).exists() {
                let _ = fs::remove_file(ent.path());
            }
            continue;
        }
        let lock = dir.join(format!("{name}.lock"));
        if StagingLock::is_held(&lock) {
            continue;
        }
        let p = ent.path();
        if ent.file_type().at(&p)?.is_dir() {
            crate::files::remove_tree(&p)?;
        } else {
            fs::remove_file(&p).at(&p)?;
        }
        let _ = fs::remove_file(&lock);
        removed += 1;
    }
    Ok(removed)
}

/// Staging directories a sweep would remove (dry runs).
pub fn count_stale(paths: &StorePaths) -> Result<u64, StoreError> {
    let dir = paths.staging();
    let Ok(rd) = fs::read_dir(&dir) else { return Ok(0) };
    let mut n = 0;
    for ent in rd {
        let ent = ent.at(&dir)?;
        let name = ent.file_name();
        let name = name.to_string_lossy();
        if !name.ends_with(".lock") && !StagingLock::is_held(&dir.join(format!("{name}.lock"))) {
            n += 1;
        }
    }
    Ok(n)
}
