//! Crash recovery, run whenever the store is opened for writing.
//!
//! The publication order (see `docs/on-disk-format.md`) makes every crash leave one of a
//! few harmless states, each repaired here:
//! - staging directories of dead operations: removed;
//! - a layer directory renamed into `layers/` whose index batch never committed (or whose
//!   removal committed but whose directory was not yet deleted): no layer record, removed;
//! - a container directory without a record (crash during `container create` or `rm`):
//!   unmounted if needed, removed.

use std::fs;

use strata_types::{LayerId, Sha256Digest};

use crate::error::IoContext;
use crate::{Store, StoreError, container, staging};

/// What recovery removed.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, serde::Serialize)]
pub struct Recovered {
    pub staging: u64,
    pub orphan_layers: u64,
    pub orphan_containers: u64,
}

pub fn recover(store: &Store) -> Result<Recovered, StoreError> {
    let mut r = Recovered { staging: staging::sweep(&store.paths)?, ..Default::default() };
    let layers = store.paths.layers();
    for ent in fs::read_dir(&layers).at(&layers)? {
        let ent = ent.at(&layers)?;
        let name = ent.file_name();
        let id = name.to_str().and_then(|s| Sha256Digest::from_hex(s).ok()).map(LayerId);
        let known = match id {
            Some(id) => store.layer(&id)?.is_some(),
            None => false,
        };
        if !known {
            let p = ent.path();
            if p.is_dir() {
                crate::files::remove_tree(&p)?
            } else {
                fs::remove_file(&p).at(&p)?
            }
            r.orphan_layers += 1;
        }
    }
    let known: std::collections::HashSet<_> =
        store.containers()?.into_iter().map(|c| store.paths.container(&c.name)).collect();
    let cdir = store.paths.containers();
    for ent in fs::read_dir(&cdir).at(&cdir)? {
        let p = ent.at(&cdir)?.path();
        if !known.contains(&p) {
            container::unmount_if_mounted(&p.join("merged"))?;
            crate::files::remove_tree(&p)?;
            r.orphan_containers += 1;
        }
    }
    Ok(r)
}
