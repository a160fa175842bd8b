//! Claims: one operation at a time fetches a given layer (see `docs/locking.md`).
//!
//! A claim is an exclusive `flock` on `ROOT/claims/<diffid-hex>`. The holder publishes the
//! layer before it lets go, so a waiter that gets the claim next finds the layer in the
//! store; if the holder failed or died, the waiter fetches the layer itself. The file is
//! removed (while still locked) when a claim ends; a waiter that then finds its descriptor
//! no longer names the file (another process created a new one) tries again, so two
//! operations never hold the claim of one layer at once.

use std::fs::File;
use std::os::unix::fs::{MetadataExt, OpenOptionsExt};
use std::path::PathBuf;

use nix::fcntl::{Flock, FlockArg};
use strata_types::LayerId;

use crate::paths::StorePaths;
use crate::{StoreError, files};

/// A held claim; released (and its file removed) on drop.
#[derive(Debug)]
pub(crate) struct Claim {
    path: PathBuf,
    _lock: Flock<File>,
}

impl Claim {
    /// Claims layer `id`, waiting while another operation holds its claim. `waiting` is
    /// called once, before waiting, so the caller can say what it waits for.
    pub(crate) fn acquire(paths: &StorePaths, id: &LayerId, waiting: impl FnOnce()) -> Result<Claim, StoreError> {
        let path = paths.claims().join(id.dir_name());
        let mut waiting = Some(waiting);
        loop {
            let f = File::options()
                .read(true)
                .write(true)
                .create(true)
                .truncate(false)
                .mode(files::PRIVATE_FILE)
                .open(&path)
                .map_err(|e| StoreError::io(&path, e))?;
            let lock = match Flock::lock(f, FlockArg::LockExclusiveNonblock) {
                Ok(l) => l,
                Err((f, nix::errno::Errno::EWOULDBLOCK)) => {
                    if let Some(w) = waiting.take() {
                        w();
                    }
                    Flock::lock(f, FlockArg::LockExclusive)
                        .map_err(|(_, e)| StoreError::io(&path, std::io::Error::from(e)))?
                }
                Err((_, e)) => return Err(StoreError::io(&path, std::io::Error::from(e))),
            };
            // Still the file at `path`? (The previous holder removes it when it is done.)
            let held = lock.metadata().map_err(|e| StoreError::io(&path, e))?;
            match std::fs::metadata(&path) {
                Ok(m) if m.ino() == held.ino() && m.dev() == held.dev() => return Ok(Claim { path, _lock: lock }),
                _ => continue,
            }
        }
    }
}

impl Drop for Claim {
    fn drop(&mut self) {
        // Removed while locked: a waiter on this file sees it gone and tries again.
        let _ = std::fs::remove_file(&self.path);
    }
}
