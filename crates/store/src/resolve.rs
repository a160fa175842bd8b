//! Turning index locations into paths of layer files (cached: a pull resolves many chunks
//! of the same few files).

use std::collections::HashMap;
use std::path::PathBuf;

use strata_index::{Index, LayerNum, Loc, Table};
use strata_types::{LayerId, Sha256Digest};

use crate::paths::StorePaths;
use crate::records::{FileRecord, Marker};

/// Resolves `(layer, file)` of a location to the file's path in its layer directory.
#[derive(Debug)]
pub struct Resolver<'a> {
    index: &'a Index,
    paths: &'a StorePaths,
    layers: HashMap<u32, Option<PathBuf>>,
    files: HashMap<(u32, u32), Option<PathBuf>>,
}

const FILE_CACHE: usize = 65_536;

impl<'a> Resolver<'a> {
    pub fn new(index: &'a Index, paths: &'a StorePaths) -> Self {
        Resolver { index, paths, layers: HashMap::new(), files: HashMap::new() }
    }

    fn layer_dir(&mut self, num: LayerNum) -> Option<PathBuf> {
        if let Some(d) = self.layers.get(&num.0) {
            return d.clone();
        }
        let d = self
            .index
            .get(Table::LayerNums, &num.0.to_be_bytes())
            .ok()
            .flatten()
            .and_then(|b| Sha256Digest::from_slice(&b))
            .map(|d| self.paths.layer_diff(&LayerId(d)));
        self.layers.insert(num.0, d.clone());
        d
    }

    /// The path of the regular file a location points into; `None` when the layer or the
    /// file record is gone (the caller treats the bytes as missing).
    pub fn path(&mut self, loc: &Loc) -> Option<PathBuf> {
        let key = (loc.layer.0, loc.file);
        if let Some(p) = self.files.get(&key) {
            return p.clone();
        }
        let dir = self.layer_dir(loc.layer);
        let p = dir.and_then(|dir| {
            let rec = self.index.get_file(loc.layer, loc.file).ok().flatten()?;
            let rec = FileRecord::decode(&rec).ok()?;
            (rec.marker == Marker::None && rec.entry.kind == strata_types::EntryKind::File)
                .then(|| dir.join(rec.entry.path.as_path()))
        });
        if self.files.len() >= FILE_CACHE {
            self.files.clear();
        }
        self.files.insert(key, p.clone());
        p
    }
}
