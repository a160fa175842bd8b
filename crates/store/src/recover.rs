//! Crash recovery, run whenever a process becomes the store's owner (before it serves any
//! transaction, so nothing is being published meanwhile).
//!
//! The publication order (see `docs/on-disk-format.md`) makes every crash leave one of a
//! few harmless states, each repaired here:
//! - staging directories of dead operations (lock not held): removed;
//! - a layer directory renamed into `layers/` whose index batch never committed: no layer
//!   record, removed;
//! - a container directory without a record (a crash during `container create` or `rm`):
//!   unmounted if needed, removed;
//! - pin files and claims of dead operations: removed.

use std::fs;

use strata_types::{LayerId, Sha256Digest};

use crate::error::IoContext;
use crate::owner::Owner;
use crate::{StoreError, container, files, staging};

/// What recovery removed.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, serde::Serialize)]
pub struct Recovered {
    pub staging: u64,
    pub orphan_layers: u64,
    pub orphan_containers: u64,
}

pub(crate) fn recover(owner: &Owner) -> Result<Recovered, StoreError> {
    let paths = &owner.paths;
    let mut r = Recovered { staging: staging::sweep(paths)?, ..Default::default() };
    let layers = paths.layers();
    for ent in fs::read_dir(&layers).at(&layers)? {
        let ent = ent.at(&layers)?;
        let name = ent.file_name();
        let id = name.to_str().and_then(|s| Sha256Digest::from_hex(s).ok()).map(LayerId);
        let known = match id {
            Some(id) => owner.layer(&id)?.is_some(),
            None => false,
        };
        if !known {
            let p = ent.path();
            if p.is_dir() {
                files::remove_tree(&p)?
            } else {
                fs::remove_file(&p).at(&p)?
            }
            r.orphan_layers += 1;
        }
    }
    let known: std::collections::HashSet<_> =
        crate::store::containers(&owner.index)?.into_iter().map(|c| paths.container(&c.name)).collect();
    let cdir = paths.containers();
    for ent in fs::read_dir(&cdir).at(&cdir)? {
        let p = ent.at(&cdir)?.path();
        if p.extension().is_some_and(|e| e == "lock") {
            continue;
        }
        if !known.contains(&p) {
            container::unmount_if_mounted(&p.join("merged"))?;
            files::remove_tree(&p)?;
            r.orphan_containers += 1;
        }
    }
    // Dead operations' pins are dropped by reading them; claims of dead operations are
    // free locks, removed by the next claimant or here.
    crate::pins::pinned(paths, None)?;
    Ok(r)
}
