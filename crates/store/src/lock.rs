//! The store lock (see `docs/locking.md`).
//!
//! One `flock` on `ROOT/lock`: exclusive for commands that change the store, shared for
//! commands that only read it. `flock` locks belong to the open file description, so a
//! process killed with SIGKILL releases its lock the instant it dies: there are no stale
//! locks to break. The holder's PID and command are written to `lock.owner` only so that
//! a waiting process can say who it waits for.

use std::fs::{self, File};
use std::io::{self, Write};
use std::os::fd::AsFd;
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::time::Duration;

use nix::fcntl::{Flock, FlockArg};

use crate::StoreError;

/// How a command waits for the lock.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Wait {
    /// Block until the lock is free, printing once who holds it.
    Block,
    /// Fail at once with [`StoreError::Locked`].
    NoWait,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum LockKind {
    Shared,
    Exclusive,
}

/// A held lock; released on drop.
#[derive(Debug)]
pub struct StoreLock {
    _flock: Flock<File>,
    kind: LockKind,
    owner_file: PathBuf,
}

impl StoreLock {
    pub fn acquire(lock_path: &Path, owner_path: &Path, kind: LockKind, wait: Wait) -> Result<StoreLock, StoreError> {
        // 0600: another user who could open the lock could hold it (a shared flock needs
        // only a read-only descriptor) and stop every writer.
        let open = || {
            File::options()
                .read(true)
                .write(true)
                .create(true)
                .truncate(false)
                .mode(crate::files::PRIVATE_FILE)
                .open(lock_path)
                .map_err(|e| StoreError::io(lock_path, e))
        };
        let arg_nb = match kind {
            LockKind::Shared => FlockArg::LockSharedNonblock,
            LockKind::Exclusive => FlockArg::LockExclusiveNonblock,
        };
        let file = open()?;
        // A lock file made by an earlier version may be 0644.
        if let Ok(m) = file.metadata()
            && m.permissions().mode() & 0o077 != 0
        {
            let _ = file.set_permissions(std::fs::Permissions::from_mode(crate::files::PRIVATE_FILE));
        }
        let flock = match Flock::lock(file, arg_nb) {
            Ok(l) => l,
            Err((file, errno)) if errno == nix::errno::Errno::EWOULDBLOCK => {
                let holder = read_owner(owner_path);
                if wait == Wait::NoWait {
                    return Err(StoreError::Locked { root: parent(lock_path), holder });
                }
                eprintln!("strata: waiting for the store lock on {} ({holder})", parent(lock_path));
                let arg = match kind {
                    LockKind::Shared => FlockArg::LockShared,
                    LockKind::Exclusive => FlockArg::LockExclusive,
                };
                Flock::lock(file, arg).map_err(|(_, e)| StoreError::io(lock_path, io::Error::from(e)))?
            }
            Err((_, errno)) => return Err(StoreError::io(lock_path, io::Error::from(errno))),
        };
        if kind == LockKind::Exclusive {
            let cmd: Vec<String> = std::env::args().collect();
            let text = format!("{} {}\n", std::process::id(), cmd.join(" "));
            let _ = File::options()
                .write(true)
                .create(true)
                .truncate(true)
                .mode(crate::files::PRIVATE_FILE)
                .open(owner_path)
                .and_then(|mut f| f.write_all(text.as_bytes()));
        }
        let _ = flock.as_fd();
        Ok(StoreLock { _flock: flock, kind, owner_file: owner_path.to_owned() })
    }

    pub fn kind(&self) -> LockKind {
        self.kind
    }
}

impl Drop for StoreLock {
    fn drop(&mut self) {
        if self.kind == LockKind::Exclusive {
            let _ = fs::remove_file(&self.owner_file);
        }
    }
}

fn parent(p: &Path) -> String {
    p.parent().unwrap_or(p).display().to_string()
}

/// "held by PID 123 (strata pull ...)" from the owner file, when there is one.
fn read_owner(owner_path: &Path) -> String {
    match fs::read_to_string(owner_path) {
        Ok(s) => {
            let s = s.trim();
            match s.split_once(' ') {
                Some((pid, cmd)) => format!("held by PID {pid}: {cmd}"),
                None if !s.is_empty() => format!("held by PID {s}"),
                None => "held by another strata process".into(),
            }
        }
        Err(_) => "held by other strata processes reading it".into(),
    }
}

/// Polls a non-blocking lock for up to `timeout` (tests and the kill harness use it).
pub fn try_for(
    lock_path: &Path,
    owner_path: &Path,
    kind: LockKind,
    timeout: Duration,
) -> Result<StoreLock, StoreError> {
    let deadline = std::time::Instant::now() + timeout;
    loop {
        match StoreLock::acquire(lock_path, owner_path, kind, Wait::NoWait) {
            Err(StoreError::Locked { .. }) if std::time::Instant::now() < deadline => {
                std::thread::sleep(Duration::from_millis(20))
            }
            r => return r,
        }
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
        let f = File::options()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .mode(crate::files::PRIVATE_FILE)
            .open(path)
            .map_err(|e| StoreError::io(path, e))?;
        let flock = Flock::lock(f, FlockArg::LockExclusiveNonblock)
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
