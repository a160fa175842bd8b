//! The owner lock and staging locks (see `docs/locking.md`).
//!
//! `ROOT/lock` is held (an exclusive `flock`) by the store's owner for as long as it owns
//! the store. `flock` locks belong to the open file description, so a process killed with
//! SIGKILL releases its lock the instant it dies: there are no stale locks to break. The
//! holder's PID and command are written to `lock.owner` only so that others can say who owns
//! the store.

use std::fs::File;
use std::io::{self, Write};
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

use nix::fcntl::{Flock, FlockArg};

use crate::StoreError;
use crate::files::PRIVATE_FILE;

/// How a command waits for a store whose owner cannot answer yet.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Wait {
    /// Wait until the owner answers or this process can take over, printing once who owns it.
    Block,
    /// Fail with [`StoreError::Locked`] when no owner answers within half a second.
    NoWait,
}

/// The owner lock, held; released on drop.
#[derive(Debug)]
pub struct StoreLock {
    _flock: Flock<File>,
    owner_file: PathBuf,
}

/// Opens (creating) a lock file, 0600: another user who could open it could hold it (a
/// shared flock needs only a read-only descriptor) and stop the store.
fn open_lock_file(path: &Path) -> Result<File, StoreError> {
    let f = File::options()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .mode(PRIVATE_FILE)
        .open(path)
        .map_err(|e| StoreError::io(path, e))?;
    // A lock file made by an earlier version may be 0644.
    if let Ok(m) = f.metadata()
        && m.permissions().mode() & 0o077 != 0
    {
        let _ = f.set_permissions(std::fs::Permissions::from_mode(PRIVATE_FILE));
    }
    Ok(f)
}

impl StoreLock {
    /// Takes the owner lock without waiting: [`StoreError::Locked`] when another process
    /// holds it.
    pub fn acquire(lock_path: &Path, owner_path: &Path) -> Result<StoreLock, StoreError> {
        let flock = match Flock::lock(open_lock_file(lock_path)?, FlockArg::LockExclusiveNonblock) {
            Ok(l) => l,
            Err((_, errno)) if errno == nix::errno::Errno::EWOULDBLOCK => {
                return Err(StoreError::Locked { root: parent(lock_path), holder: holder(owner_path) });
            }
            Err((_, errno)) => return Err(StoreError::io(lock_path, io::Error::from(errno))),
        };
        let cmd: Vec<String> = std::env::args().collect();
        let text = format!("{} {}\n", std::process::id(), cmd.join(" "));
        let _ = File::options()
            .write(true)
            .create(true)
            .truncate(true)
            .mode(PRIVATE_FILE)
            .open(owner_path)
            .and_then(|mut f| f.write_all(text.as_bytes()));
        Ok(StoreLock { _flock: flock, owner_file: owner_path.to_owned() })
    }
}

impl Drop for StoreLock {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.owner_file);
    }
}

fn parent(p: &Path) -> String {
    p.parent().unwrap_or(p).display().to_string()
}

/// "held by PID 123: strata pull ..." from the owner file, when there is one.
pub(crate) fn holder(owner_path: &Path) -> String {
    match std::fs::read_to_string(owner_path) {
        Ok(s) => {
            let s = s.trim();
            match s.split_once(' ') {
                Some((pid, cmd)) => format!("held by PID {pid}: {cmd}"),
                None if !s.is_empty() => format!("held by PID {s}"),
                None => "held by another strata process".into(),
            }
        }
        Err(_) => "held by another strata process".into(),
    }
}

/// A lock on one staging directory, held for as long as the operation using it runs, so
/// recovery and gc can tell a live operation's staging from a crashed one's.
#[derive(Debug)]
pub struct StagingLock {
    _flock: Flock<File>,
}

impl StagingLock {
    pub fn acquire(path: &Path) -> Result<StagingLock, StoreError> {
        let flock = Flock::lock(open_lock_file(path)?, FlockArg::LockExclusiveNonblock)
            .map_err(|(_, e)| StoreError::io(path, io::Error::from(e)))?;
        Ok(StagingLock { _flock: flock })
    }

    /// True when some live process holds the staging lock at `path`.
    pub fn is_held(path: &Path) -> bool {
        let Ok(f) = File::options().read(true).write(true).open(path) else { return false };
        match Flock::lock(f, FlockArg::LockExclusiveNonblock) {
            Ok(_) => false,
            Err((_, e)) => e == nix::errno::Errno::EWOULDBLOCK,
        }
    }
}
