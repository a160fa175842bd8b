//! The store's owner: the one process that has the index open read-write and runs every
//! transaction of every process, one at a time (see `docs/locking.md`).
//!
//! A transaction ([`Tx`]) is short: a few renames and one synced index batch, never I/O
//! proportional to data. Workers build everything in staging first and name it in the
//! transaction by a path relative to the store root ([`RootPath`]); the owner checks those
//! paths before touching them. The owner of a store serves [`Tx`]s to the other processes
//! of that store over `ROOT/owner.sock` ([`server`]); in-process callers apply them directly.

mod client;
mod server;
mod wire;

use std::path::{Path, PathBuf};
use std::sync::{Mutex, MutexGuard};

use strata_index::{Index, OpenMode};

use crate::StoreError;
use crate::files;
use crate::lock::StoreLock;
use crate::paths::StorePaths;
use crate::recover::{self, Recovered};

pub(crate) use client::{CallError, Connection};
pub(crate) use server::Server;
pub(crate) use wire::{Tx, TxOk};

/// A path inside the store root, as transactions carry it: relative, normalized, and under
/// one of the directories a worker may hand to the owner (`staging/`, `pins/`).
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(try_from = "String", into = "String")]
pub(crate) struct RootPath(String);

impl RootPath {
    /// `path` (which must be inside `root`) relative to `root`.
    pub(crate) fn of(root: &Path, path: &Path) -> Result<RootPath, StoreError> {
        let rel = path
            .strip_prefix(root)
            .map_err(|_| StoreError::Corrupt(format!("{} is outside the store", path.display())))?;
        let s = rel.to_str().ok_or_else(|| StoreError::Corrupt(format!("{} is not UTF-8", rel.display())))?;
        RootPath::try_from(s.to_owned()).map_err(StoreError::Corrupt)
    }

    pub(crate) fn resolve(&self, root: &Path) -> PathBuf {
        root.join(&self.0)
    }
}

impl TryFrom<String> for RootPath {
    type Error = String;
    fn try_from(s: String) -> Result<RootPath, String> {
        let mut parts = s.split('/');
        let top = parts.next().unwrap_or_default();
        let ok = matches!(top, "staging" | "pins")
            && s.split('/').all(|c| !c.is_empty() && c != "." && c != "..")
            && s.split('/').count() >= 2;
        if ok { Ok(RootPath(s)) } else { Err(format!("{s:?} is not a staging or pin path of the store")) }
    }
}

impl From<RootPath> for String {
    fn from(p: RootPath) -> String {
        p.0
    }
}

/// The error for an answer of the wrong kind (owner and worker of different versions).
pub(crate) fn unexpected(ok: TxOk) -> StoreError {
    StoreError::Corrupt(format!("the store's owner answered a transaction with {ok:?}"))
}

/// The owner of a store.
#[derive(Debug)]
pub(crate) struct Owner {
    pub(crate) paths: StorePaths,
    pub(crate) index: Index,
    /// One transaction at a time.
    mutex: Mutex<()>,
    /// What crash recovery removed when this process became the owner.
    pub(crate) recovered: Recovered,
    // Declared last: released after the index is closed.
    _lock: StoreLock,
}

impl Owner {
    /// Becomes the owner of the store at `paths` if no other process is: takes the owner
    /// lock without waiting, creates the store's directories, opens the index read-write
    /// and runs crash recovery. `None` when another process owns the store.
    pub(crate) fn try_acquire(paths: &StorePaths) -> Result<Option<Owner>, StoreError> {
        let lock = match StoreLock::acquire(&paths.lock(), &paths.lock_owner()) {
            Ok(l) => l,
            Err(StoreError::Locked { .. }) => return Ok(None),
            Err(e) => return Err(e),
        };
        for d in [paths.layers(), paths.containers(), paths.staging(), paths.index(), paths.pins(), paths.claims()] {
            files::private_dir(&d)?;
        }
        let index = Index::open(&paths.index(), OpenMode::ReadWrite)?;
        let mut owner =
            Owner { paths: paths.clone(), index, mutex: Mutex::new(()), recovered: Recovered::default(), _lock: lock };
        owner.recovered = recover::recover(&owner)?;
        Ok(Some(owner))
    }

    /// The transaction mutex (held for the duration of one transaction).
    pub(crate) fn serialize(&self) -> MutexGuard<'_, ()> {
        self.mutex.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Runs one transaction (under the mutex, unless it needs none).
    pub(crate) fn apply(&self, tx: Tx) -> Result<TxOk, StoreError> {
        let _g = tx.serialized().then(|| self.serialize());
        wire::dispatch(self, tx)
    }
}
