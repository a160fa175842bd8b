//! `strata gc`: garbage collection while the node works (see `docs/locking.md`).
//!
//! Mark and record sweep in one owner transaction: the live layers are those of every image,
//! container and containerd snapshot, and every layer a live operation pinned; every other
//! layer's records, file records and index locations go in one batch, and its directory is
//! renamed into gc's staging. Then, outside the owner's mutex: the directories are deleted,
//! staging of dead operations is swept, dangling index locations are pruned a bounded key
//! range per transaction, and the index is compacted. `bytes_freed` is measured, not summed:
//! the filesystem's free blocks after minus before (shared extents are only freed with their
//! last owner; other work on the filesystem meanwhile counts too). A dry run estimates it
//! with FIEMAP: the physical extents of the dead layers not shared with any live one.

use std::collections::{HashMap, HashSet};
use std::path::Path;
use std::time::Instant;

use serde::{Deserialize, Serialize};
use strata_index::LayerNum;
use strata_types::LayerId;

use crate::df::ExtentSet;
use crate::files::syncfs;
use crate::owner::{Owner, RootPath, Tx, TxOk};
use crate::staging::Staging;
use crate::{Store, StoreError};

/// Index keys visited per pruning transaction: each holds the owner's mutex for a few
/// milliseconds, so publishes and container starts go on between them.
const PRUNE_KEYS: u64 = 20_000;

/// What gc did (or, with `dry_run`, would do). The `--json` figures.
#[derive(Clone, Debug, Default, serde::Serialize)]
pub struct GcReport {
    pub dry_run: bool,
    pub layers_removed: u64,
    pub index_entries_removed: u64,
    pub staging_removed: u64,
    pub bytes_freed: u64,
    pub seconds: f64,
}

/// What the mark transaction removed.
#[derive(Debug, Serialize, Deserialize)]
pub(crate) struct GcMarked {
    pub layers_removed: u64,
    pub index_entries_removed: u64,
}

/// What one pruning transaction removed, and where the next one starts.
#[derive(Debug, Serialize, Deserialize)]
pub(crate) struct GcPruned {
    pub removed: u64,
    /// The last key visited (hex) when there is more to visit.
    pub next: Option<String>,
}

fn free_bytes(path: &Path) -> Result<u64, StoreError> {
    let st = nix::sys::statvfs::statvfs(path).map_err(|e| StoreError::io(path, e.into()))?;
    Ok(st.blocks_free() * st.fragment_size())
}

/// Free bytes once the filesystem has caught up with what was deleted. XFS frees the blocks
/// of unlinked inodes in a background worker (inodegc) that neither `syncfs` nor `statfs`
/// waits for, so a single reading right after the deletes can miss all of it: read until two
/// readings 50 ms apart agree (at most ~5 s).
fn settled_free_bytes(path: &Path) -> Result<u64, StoreError> {
    syncfs(path)?;
    let mut last = free_bytes(path)?;
    for _ in 0..100 {
        std::thread::sleep(std::time::Duration::from_millis(50));
        syncfs(path)?;
        let now = free_bytes(path)?;
        if now == last {
            break;
        }
        last = now;
    }
    Ok(last)
}

/// Layer numbers and their entry counts, to tell dangling index locations.
fn layer_entries(layers: &[crate::records::LayerRecord]) -> HashMap<u32, u64> {
    layers.iter().map(|l| (l.num, l.entries)).collect()
}

fn dangling(entries: &HashMap<u32, u64>, l: &strata_index::Loc) -> bool {
    entries.get(&l.layer.0).is_none_or(|&n| u64::from(l.file) >= n)
}

impl Store {
    pub fn gc(&self, dry_run: bool) -> Result<GcReport, StoreError> {
        let start = Instant::now();
        if dry_run {
            return self.gc_dry_run(start);
        }
        let mut report = GcReport { staging_removed: self.recovered.staging, ..Default::default() };
        let before = settled_free_bytes(self.paths.root())?;
        {
            let trash = Staging::new(&self.paths, "gc")?;
            match self.tx(Tx::GcMark { trash: trash.root_path()? })? {
                TxOk::GcMarked(m) => {
                    report.layers_removed = m.layers_removed;
                    report.index_entries_removed = m.index_entries_removed;
                }
                other => return Err(crate::owner::unexpected(other)),
            }
            // The dead layers' directories are deleted here, with no lock held.
        }
        report.staging_removed += crate::staging::sweep(&self.paths)?;
        let mut after = None;
        loop {
            match self.tx(Tx::GcPrune { after, max_keys: PRUNE_KEYS })? {
                TxOk::GcPruned(p) => {
                    report.index_entries_removed += p.removed;
                    match p.next {
                        Some(n) => after = Some(n),
                        None => break,
                    }
                }
                other => return Err(crate::owner::unexpected(other)),
            }
        }
        self.tx(Tx::Compact)?;
        report.bytes_freed = settled_free_bytes(self.paths.root())?.saturating_sub(before);
        report.seconds = start.elapsed().as_secs_f64();
        Ok(report)
    }

    fn gc_dry_run(&self, start: Instant) -> Result<GcReport, StoreError> {
        let mut live: HashSet<LayerId> = crate::pins::pinned(&self.paths, None)?;
        for img in self.images()? {
            live.extend(img.layers);
        }
        for c in self.containers()? {
            live.extend(c.layers);
        }
        let all = self.layers()?;
        let live_recs: Vec<_> = all.iter().filter(|l| live.contains(&l.id)).cloned().collect();
        let entries = layer_entries(&live_recs);
        let mut report = GcReport { dry_run: true, ..Default::default() };
        report.layers_removed = (all.len() - live_recs.len()) as u64;
        self.index().for_each_loc(|_, locs| {
            report.index_entries_removed += locs.iter().filter(|l| dangling(&entries, l)).count() as u64;
            true
        })?;
        let mut set = ExtentSet::default();
        for l in &live_recs {
            set.add_tree(&self.paths.layer_diff(&l.id))?;
        }
        let live_phys = set.physical_bytes();
        for l in all.iter().filter(|l| !live.contains(&l.id)) {
            set.add_tree(&self.paths.layer_diff(&l.id))?;
        }
        report.bytes_freed = set.physical_bytes() - live_phys;
        report.staging_removed = crate::staging::count_stale(&self.paths)?;
        report.seconds = start.elapsed().as_secs_f64();
        Ok(report)
    }
}

impl Owner {
    /// The `gc_mark` transaction: every layer nothing references nor pins is removed
    /// (records and locations in one batch, directories into `trash`), and so are file
    /// records of layers that have no record (left by damage or an older crash).
    pub(crate) fn gc_mark(&self, trash: &RootPath) -> Result<GcMarked, StoreError> {
        let live = self.live_layers(None, None)?;
        let all = crate::store::layers(&self.index)?;
        let dead: Vec<LayerId> = all.iter().filter(|l| !live.contains(&l.id)).map(|l| l.id).collect();
        let with_record: HashSet<u32> = all.iter().map(|l| l.num).collect();
        let orphans: Vec<LayerNum> =
            self.index.layers_with_files()?.into_iter().filter(|n| !with_record.contains(&n.0)).collect();
        let removed = self.remove_layers(&dead, trash, |b| {
            for n in orphans {
                self.index.delete_files(b, n);
            }
        })?;
        Ok(GcMarked { layers_removed: dead.len() as u64, index_entries_removed: removed })
    }

    /// The `gc_prune` transaction: up to `max_keys` index keys after `after` (hex), their
    /// locations of layers (or files) that no longer exist removed.
    pub(crate) fn gc_prune(&self, after: Option<&str>, max_keys: u64) -> Result<GcPruned, StoreError> {
        let entries = layer_entries(&crate::store::layers(&self.index)?);
        let after = after
            .map(hex::decode)
            .transpose()
            .map_err(|e| StoreError::Invalid(format!("gc_prune: bad start key: {e}")))?;
        let (removed, _, next) = self.index.retain_locs(after.as_deref(), max_keys, |_, l| !dangling(&entries, l))?;
        Ok(GcPruned { removed, next: next.map(hex::encode) })
    }
}
