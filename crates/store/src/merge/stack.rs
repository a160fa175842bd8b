//! One stored layer as overlayfs reads its directory, rebuilt from the layer's file records:
//! the objects it holds, what it deletes from the layers below, and the directories that
//! extraction created for entries the tar named without their parents.

use std::collections::{HashMap, HashSet};
use std::os::unix::fs::MetadataExt;
use std::path::PathBuf;
use std::sync::Arc;

use strata_types::{Entry, EntryKind, LayerId, RelPath, Timestamp};

use crate::records::{FileRecord, Marker};
use crate::{Store, StoreError};

/// What describes a visible object's inode.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub(crate) enum Inode {
    /// A file record of the layer (for a hardlink name: the record of the object it links to).
    Record(u32),
    /// A directory the extraction created (an index into [`StackLayer::implicit`]).
    Implicit(u32),
}

/// A layer's records, grouped for building views.
#[derive(Debug)]
pub(crate) struct StackLayer {
    pub id: LayerId,
    /// The layer directory's tree (`ROOT/layers/<id>/diff`), opened when a file's data is
    /// first read from it.
    pub tree: strata_differ::Tree,
    pub records: Vec<FileRecord>,
    /// Every object the layer directory holds, root excluded: path and inode.
    pub objects: Vec<(RelPath, Inode)>,
    /// `.wh.NAME` targets: deleted from the layers below.
    pub whiteouts: Vec<RelPath>,
    /// Directories marked opaque: everything below them in the layers below is hidden.
    pub opaques: Vec<RelPath>,
    /// Whether the root directory itself is opaque (`.wh..wh..opq` at the top level).
    pub root_opaque: bool,
    /// Directories no record names (parents of named entries), as the layer directory has them.
    pub implicit: Vec<Entry>,
}

impl StackLayer {
    pub fn load(store: &Store, id: &LayerId) -> Result<StackLayer, StoreError> {
        let rec = store.layer_required(id)?;
        let records = store.layer_files(&rec)?;
        StackLayer::from_records(*id, store.paths().layer_diff(id), records)
    }

    /// Groups `records` (in stream order). Implicit directories' metadata is read from
    /// `diff` with lstat: they are rare (tars that omit parent entries) and no record has it.
    pub fn from_records(id: LayerId, diff: PathBuf, records: Vec<FileRecord>) -> Result<StackLayer, StoreError> {
        let corrupt = |what: String| StoreError::Corrupt(format!("layer {id}: {what}"));
        let mut by_path: HashMap<&RelPath, u32> = HashMap::new();
        for (i, r) in records.iter().enumerate() {
            if r.marker == Marker::None && by_path.insert(&r.entry.path, i as u32).is_some() {
                return Err(corrupt(format!("two file records for {}", r.entry.path)));
            }
        }
        let mut objects = Vec::new();
        let (mut whiteouts, mut opaques, mut root_opaque) = (Vec::new(), Vec::new(), false);
        // Directories holding a record's path that no record names: walk up from each
        // record's parent (an opaque marker's own directory) until a named or known one.
        let mut missing: HashSet<RelPath> = HashSet::new();
        for (i, r) in records.iter().enumerate() {
            let path = &r.entry.path;
            match r.marker {
                Marker::None if path.is_root() => {}
                Marker::None => objects.push((path.clone(), Inode::Record(resolve(&records, &by_path, i, &corrupt)?))),
                Marker::Whiteout => whiteouts.push(path.clone()),
                Marker::Opaque if path.is_root() => root_opaque = true,
                Marker::Opaque => opaques.push(path.clone()),
            }
            let mut dir = if r.marker == Marker::Opaque { Some(path.clone()) } else { path.parent() };
            while let Some(d) = dir.filter(|d| !d.is_root() && !by_path.contains_key(d)) {
                dir = d.parent();
                if !missing.insert(d) {
                    break;
                }
            }
        }
        let mut missing: Vec<RelPath> = missing.into_iter().collect();
        missing.sort();
        let mut implicit = Vec::new();
        for p in missing {
            objects.push((p.clone(), Inode::Implicit(implicit.len() as u32)));
            implicit.push(read_implicit(&diff, p).map_err(corrupt)?);
        }
        let tree = strata_differ::Tree::lazy(&diff);
        Ok(StackLayer { id, tree, records, objects, whiteouts, opaques, root_opaque, implicit })
    }

    /// The entry describing `inode` (its own path: the record's or the implicit directory's).
    pub fn inode_entry(&self, inode: Inode) -> &Entry {
        match inode {
            Inode::Record(r) => &self.records[r as usize].entry,
            Inode::Implicit(i) => &self.implicit[i as usize],
        }
    }

    pub fn inode_record(&self, inode: Inode) -> Option<&FileRecord> {
        match inode {
            Inode::Record(r) => Some(&self.records[r as usize]),
            Inode::Implicit(_) => None,
        }
    }

    /// Every path this layer decides in the layers stacked below it: objects (implicit
    /// directories included), whiteout targets and opaque directories.
    pub fn touched(&self) -> impl Iterator<Item = &RelPath> {
        self.objects.iter().map(|(p, _)| p).chain(&self.whiteouts).chain(&self.opaques)
    }
}

/// The record describing record `i`'s inode: itself, or what a hardlink names.
fn resolve(
    records: &[FileRecord],
    by_path: &HashMap<&RelPath, u32>,
    i: usize,
    corrupt: &dyn Fn(String) -> StoreError,
) -> Result<u32, StoreError> {
    let mut cur = i;
    let mut seen = HashSet::new();
    while records[cur].entry.kind == EntryKind::Hardlink {
        if !seen.insert(cur) {
            return Err(corrupt(format!("hardlink loop at {}", records[i].entry.path)));
        }
        let e = &records[cur].entry;
        let target = RelPath::new(e.link_target.as_deref().unwrap_or_default())
            .map_err(|_| corrupt(format!("hardlink {} has a bad target", e.path)))?;
        cur = *by_path
            .get(&target)
            .ok_or_else(|| corrupt(format!("hardlink {} names {target}, which the layer does not have", e.path)))?
            as usize;
    }
    if cur != i && records[cur].entry.kind == EntryKind::Dir {
        return Err(corrupt(format!("hardlink {} names a directory", records[i].entry.path)));
    }
    Ok(cur as u32)
}

fn read_implicit(diff: &std::path::Path, p: RelPath) -> Result<Entry, String> {
    let abs = diff.join(p.as_path());
    let md = std::fs::symlink_metadata(&abs).map_err(|e| format!("implicit directory {p}: {e}"))?;
    if !md.is_dir() {
        return Err(format!("{p} holds entries of the layer but is not a directory"));
    }
    let mut e = Entry::new(p, EntryKind::Dir);
    e.mode = md.mode() & 0o7777;
    e.uid = md.uid();
    e.gid = md.gid();
    e.mtime = Timestamp::new(md.mtime(), md.mtime_nsec() as u32);
    for name in xattr::list(&abs).map_err(|err| format!("listing xattrs of {}: {err}", e.path))? {
        let name = name.to_string_lossy().into_owned();
        if strata_differ::is_overlay_xattr(&name) {
            continue;
        }
        if let Some(v) = xattr::get(&abs, &name).map_err(|err| format!("xattr {name} of {}: {err}", e.path))? {
            e.xattrs.insert(name, v);
        }
    }
    Ok(e)
}

/// Layers loaded once per command, shared by the views of several images.
#[derive(Debug, Default)]
pub(crate) struct LayerCache {
    layers: HashMap<LayerId, Arc<StackLayer>>,
}

impl LayerCache {
    pub fn get(&mut self, store: &Store, id: &LayerId) -> Result<Arc<StackLayer>, StoreError> {
        if let Some(l) = self.layers.get(id) {
            return Ok(l.clone());
        }
        let l = Arc::new(StackLayer::load(store, id)?);
        self.layers.insert(*id, l.clone());
        Ok(l)
    }

    pub fn stack(&mut self, store: &Store, ids: &[LayerId]) -> Result<Vec<Arc<StackLayer>>, StoreError> {
        ids.iter().map(|id| self.get(store, id)).collect()
    }
}
