//! `strata df`: logical bytes (what the layers hold) vs physical bytes (the blocks really
//! allocated for them, each shared extent counted once, measured with FIEMAP).

use std::fs::{self, File};
use std::os::unix::fs::MetadataExt;
use std::path::Path;

use strata_sys::fiemap;

use crate::error::IoContext;
use crate::{Store, StoreError};

/// Space figures of a store.
#[derive(Clone, Debug, Default, PartialEq, Eq, serde::Serialize)]
pub struct DiskUsage {
    /// Sum of regular file sizes over all layers.
    pub logical_bytes: u64,
    /// Blocks allocated for layer data, shared extents counted once.
    pub physical_bytes: u64,
    /// Bytes of the index (RocksDB files).
    pub index_bytes: u64,
    pub images: u64,
    pub layers: u64,
    pub containers: u64,
    /// Index entries (estimated by RocksDB).
    pub chunks: u64,
    /// False when the filesystem has no FIEMAP: physical bytes then come from st_blocks and
    /// cannot see sharing.
    pub fiemap: bool,
}

/// Collects physical extents of every regular file under `dir`.
#[derive(Debug, Default)]
pub(crate) struct ExtentSet {
    ranges: Vec<(u64, u64)>,
    pub(crate) unmapped_bytes: u64,
    pub(crate) fiemap_ok: bool,
    pub(crate) logical: u64,
}

impl ExtentSet {
    pub(crate) fn add_tree(&mut self, dir: &Path) -> Result<(), StoreError> {
        let mut stack = vec![dir.to_path_buf()];
        while let Some(d) = stack.pop() {
            for ent in fs::read_dir(&d).at(&d)? {
                let ent = ent.at(&d)?;
                let ft = ent.file_type().at(ent.path())?;
                if ft.is_dir() {
                    stack.push(ent.path());
                } else if ft.is_file() {
                    self.add_file(&ent.path())?;
                }
            }
        }
        Ok(())
    }

    pub(crate) fn add_file(&mut self, p: &Path) -> Result<(), StoreError> {
        let f = File::open(p).at(p)?;
        let meta = f.metadata().at(p)?;
        self.logical += meta.len();
        match fiemap(&f) {
            Ok(ext) => {
                self.fiemap_ok = true;
                for e in ext {
                    if e.flags.is_inline() {
                        continue;
                    }
                    self.ranges.push((e.physical, e.physical + e.length));
                }
            }
            Err(_) => self.unmapped_bytes += meta.blocks() * 512,
        }
        Ok(())
    }

    /// Physical bytes covered, overlaps (shared extents) counted once.
    pub(crate) fn physical_bytes(&mut self) -> u64 {
        self.ranges.sort_unstable();
        let mut total = 0;
        let mut cur: Option<(u64, u64)> = None;
        for &(s, e) in &self.ranges {
            match cur {
                Some((cs, ce)) if s <= ce => cur = Some((cs, ce.max(e))),
                Some((cs, ce)) => {
                    total += ce - cs;
                    cur = Some((s, e));
                }
                None => cur = Some((s, e)),
            }
        }
        if let Some((cs, ce)) = cur {
            total += ce - cs;
        }
        total + self.unmapped_bytes
    }
}

fn dir_bytes(dir: &Path) -> u64 {
    let Ok(rd) = fs::read_dir(dir) else { return 0 };
    rd.filter_map(Result::ok).filter_map(|e| e.metadata().ok()).filter(|m| m.is_file()).map(|m| m.blocks() * 512).sum()
}

impl Store {
    pub fn df(&self) -> Result<DiskUsage, StoreError> {
        let layers = self.layers()?;
        let mut set = ExtentSet::default();
        for l in &layers {
            let d = self.paths.layer_diff(&l.id);
            if d.exists() {
                set.add_tree(&d)?;
            }
        }
        let stats = self.index().stats()?;
        Ok(DiskUsage {
            logical_bytes: layers.iter().map(|l| l.logical_bytes).sum(),
            physical_bytes: set.physical_bytes(),
            index_bytes: dir_bytes(&self.paths.index()),
            images: self.images()?.len() as u64,
            layers: layers.len() as u64,
            containers: self.containers()?.len() as u64,
            chunks: stats.loc_keys,
            fiemap: set.fiemap_ok || layers.is_empty(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn overlapping_ranges_count_once() {
        let mut s = ExtentSet { ranges: vec![(0, 10), (5, 15), (20, 30), (20, 25), (30, 31)], ..Default::default() };
        assert_eq!(s.physical_bytes(), 15 + 11);
    }
}
