//! `strata gc`: offline garbage collection under the exclusive store lock.
//!
//! Mark: every layer an image or a container uses. Sweep: layers nobody uses (records,
//! file records, index locations, directories), index locations and file records that
//! point at layers or files that no longer exist, and staging left by dead operations
//! (recovery removes those when the store is opened; gc reports them). Then the index is
//! compacted. `bytes_freed` is measured, not summed: the filesystem's free blocks after a
//! `syncfs` minus before (shared extents are only freed with their last owner). A dry run
//! estimates it with FIEMAP: the physical extents of the dead layers not shared with any
//! live one.

use std::collections::HashSet;
use std::path::Path;
use std::time::Instant;

use strata_index::LayerNum;
use strata_types::LayerId;

use crate::df::ExtentSet;
use crate::files::syncfs;
use crate::{Store, StoreError};

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

impl Store {
    pub fn gc(&self, dry_run: bool) -> Result<GcReport, StoreError> {
        self.require_write()?;
        let start = Instant::now();
        let live: HashSet<LayerId> = self.referenced_layers()?;
        let all = self.layers()?;
        let dead: Vec<LayerId> = all.iter().filter(|l| !live.contains(&l.id)).map(|l| l.id).collect();
        let live_nums: HashSet<u32> = all.iter().filter(|l| live.contains(&l.id)).map(|l| l.num).collect();
        let entries_of: std::collections::HashMap<u32, u64> = all.iter().map(|l| (l.num, l.entries)).collect();
        let mut report = GcReport { dry_run, staging_removed: self.recovered.staging, ..Default::default() };
        report.layers_removed = dead.len() as u64;

        if dry_run {
            // Locations that would go: those of dead layers, and dangling ones.
            self.index.for_each_loc(|_, locs| {
                report.index_entries_removed += locs
                    .iter()
                    .filter(|l| !live_nums.contains(&l.layer.0) || l.file as u64 >= entries_of[&l.layer.0])
                    .count() as u64;
                true
            })?;
            let mut live_set = ExtentSet::default();
            for l in all.iter().filter(|l| live.contains(&l.id)) {
                live_set.add_tree(&self.paths.layer_diff(&l.id))?;
            }
            let live_phys = live_set.physical_bytes();
            for id in &dead {
                live_set.add_tree(&self.paths.layer_diff(id))?;
            }
            report.bytes_freed = live_set.physical_bytes() - live_phys;
            report.staging_removed += crate::staging::count_stale(&self.paths)?;
            report.seconds = start.elapsed().as_secs_f64();
            return Ok(report);
        }

        let before = settled_free_bytes(self.paths.root())?;
        report.staging_removed += crate::staging::sweep(&self.paths)?;
        // Dead layers go with their own keys (exact), then a scan removes whatever else
        // points nowhere (layers removed by a crash mid-way, records lost to damage).
        let exact = self.remove_layers(&dead, |_| {})?;
        let (removed, _) = self.index.retain_locs(|_, l| {
            live_nums.contains(&l.layer.0) && entries_of.get(&l.layer.0).is_some_and(|&n| (l.file as u64) < n)
        })?;
        let mut b = self.index.batch();
        for n in self.index.layers_with_files()? {
            if !live_nums.contains(&n.0) {
                self.index.delete_files(&mut b, LayerNum(n.0));
            }
        }
        self.index.commit(b)?;
        self.index.compact();
        report.index_entries_removed = exact + removed;
        let after = settled_free_bytes(self.paths.root())?;
        report.bytes_freed = after.saturating_sub(before);
        report.seconds = start.elapsed().as_secs_f64();
        Ok(report)
    }
}

impl Store {
    /// Deletes an image record and nothing else, leaving its layers unreferenced (what a
    /// store looks like after images are dropped by hand or by a crash in another tool).
    #[doc(hidden)]
    pub fn forget_image_record_for_tests(&self, name: &strata_types::ImageName) -> Result<(), StoreError> {
        self.require_write()?;
        self.image(name)?;
        let mut b = self.index.batch();
        self.index.delete(&mut b, strata_index::Table::Images, name.as_str().as_bytes());
        self.index.commit(b)?;
        Ok(())
    }
}
