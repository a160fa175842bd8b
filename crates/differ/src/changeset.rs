//! [`Changeset`]: what a differ found, in the order a layer is written.

use std::cmp::Ordering;
use std::fmt;
use std::sync::Arc;

use strata_types::{Entry, EntryKind, RelPath};

use crate::mount::TempOverlay;
use crate::tree::Source;

/// How a changeset was computed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DiffMethod {
    /// One walk of the overlay upperdir, lowers consulted only for the paths found there.
    Upperdir,
    /// A walk of two whole trees (the base view and the target or merged view).
    DoubleWalk,
    /// Computed from a store's per-layer file records (two images' views compared), no walk.
    Metadata,
    /// A store's per-layer file records of the layers one image has on top of another,
    /// folded into one layer.
    Squash,
}

impl DiffMethod {
    /// The name used in `--json` output: `"upperdir"`, `"double-walk"`, `"metadata"`, `"squash"`.
    pub fn as_str(self) -> &'static str {
        match self {
            DiffMethod::Upperdir => "upperdir",
            DiffMethod::DoubleWalk => "double-walk",
            DiffMethod::Metadata => "metadata",
            DiffMethod::Squash => "squash",
        }
    }
}

impl fmt::Display for DiffMethod {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// What a change does to the path it names.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum ChangeKind {
    /// The path does not exist in the base: a new object.
    Add,
    /// The path exists in the base and is replaced (content, metadata or type changed; for
    /// directories also: something below it changed).
    Modify,
    /// The path is deleted: a whiteout `.wh.NAME` in the layer.
    Delete,
    /// Everything below this directory in the base is hidden: `DIR/.wh..wh..opq` in the layer.
    /// The directory itself is a separate `Add`/`Modify` change.
    Opaque,
}

/// Identity of an inode (`st_dev`, `st_ino`) in the tree a change was read from: changes that
/// share one are hardlinks of each other.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct InodeKey {
    pub dev: u64,
    pub ino: u64,
}

/// One change of a changeset.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Change {
    pub kind: ChangeKind,
    /// The path changed: the new object, the deleted path, or the opaque directory.
    pub path: RelPath,
    /// The new object (for `Add` and `Modify`); `None` for `Delete` and `Opaque`.
    pub entry: Option<Entry>,
    /// The object the entry was read from (in the upperdir, target or merged view, reached
    /// beneath that tree's root); for regular files this is where the data is read when the
    /// layer is written.
    pub source: Option<Source>,
    /// For regular files with more than one link: the inode, so the writer can emit one
    /// regular entry and hardlinks (typeflag 1) for the other names of the same inode.
    pub hardlink: Option<InodeKey>,
}

impl Change {
    pub(crate) fn object(kind: ChangeKind, entry: Entry, source: Source, hardlink: Option<InodeKey>) -> Change {
        Change { kind, path: entry.path.clone(), entry: Some(entry), source: Some(source), hardlink }
    }

    pub(crate) fn delete(path: RelPath) -> Change {
        Change { kind: ChangeKind::Delete, path, entry: None, source: None, hardlink: None }
    }

    pub(crate) fn opaque(path: RelPath) -> Change {
        Change { kind: ChangeKind::Opaque, path, entry: None, source: None, hardlink: None }
    }

    /// True for whiteouts (deletions and opaque markers).
    pub fn is_whiteout(&self) -> bool {
        matches!(self.kind, ChangeKind::Delete | ChangeKind::Opaque)
    }

    /// The entry's kind, for `Add`/`Modify`.
    pub fn entry_kind(&self) -> Option<EntryKind> {
        self.entry.as_ref().map(|e| e.kind)
    }

    /// The name this change has in the layer tar (without a trailing `/`): the path itself,
    /// `PARENT/.wh.NAME` for a deletion, `DIR/.wh..wh..opq` for an opaque directory.
    pub fn tar_path(&self) -> Vec<u8> {
        let join = |dir: &RelPath, name: &[u8]| {
            let mut v = dir.as_bytes().to_vec();
            if !v.is_empty() {
                v.push(b'/');
            }
            v.extend_from_slice(name);
            v
        };
        match self.kind {
            ChangeKind::Add | ChangeKind::Modify => self.path.as_bytes().to_vec(),
            ChangeKind::Delete => {
                let parent = self.path.parent().unwrap_or_default();
                let name = self.path.file_name().unwrap_or_default();
                join(&parent, &[b".wh.", name].concat())
            }
            ChangeKind::Opaque => join(&self.path, b".wh..wh..opq"),
        }
    }

    /// Layer order: tree order (a directory right before what is below it), and inside each
    /// directory the opaque marker first, then whiteouts, then the other entries, each group
    /// sorted by name bytes. The OCI spec asks for whiteouts before their siblings.
    pub fn layer_order(&self, other: &Change) -> Ordering {
        order_key(self).cmp(&order_key(other))
    }
}

/// Sort key of [`Change::layer_order`]: per component of the tar name, a rank (opaque marker
/// 0, whiteout 1, anything else 2) and the bytes.
fn order_key(c: &Change) -> Vec<(u8, Vec<u8>)> {
    let mut key: Vec<(u8, Vec<u8>)> = c.path.components().map(|n| (2, n.to_vec())).collect();
    match c.kind {
        ChangeKind::Add | ChangeKind::Modify => {}
        ChangeKind::Delete => {
            if let Some(last) = key.last_mut() {
                last.0 = 1;
            }
        }
        ChangeKind::Opaque => key.push((0, Vec::new())),
    }
    key
}

/// The result of a differ: changes in layer order, plus how they were computed.
///
/// When the changes were read through temporary overlay mounts (the double-walk fallback of
/// [`crate::diff_overlay`]), the changeset keeps those mounts alive: the `source` paths stay
/// readable until the changeset is dropped.
#[derive(Clone, Debug)]
pub struct Changeset {
    pub method: DiffMethod,
    /// Why the single walk was not used (`None` for the single walk and for `diff_trees`).
    pub fallback_reason: Option<String>,
    /// In [`Change::layer_order`]; at most one change per tar name.
    pub changes: Vec<Change>,
    pub(crate) _mounts: Vec<Arc<TempOverlay>>,
}

impl Changeset {
    pub(crate) fn new(method: DiffMethod, mut changes: Vec<Change>) -> Changeset {
        changes.sort_by_cached_key(order_key);
        changes.dedup_by(|a, b| a.tar_path() == b.tar_path());
        Changeset { method, fallback_reason: None, changes, _mounts: Vec::new() }
    }

    /// A changeset from changes computed elsewhere (a store's file records): sorted into
    /// [`Change::layer_order`], one change kept per tar name. [`crate::write_layer`] checks
    /// the rest (every change's parent directory present, sources of non-empty files).
    pub fn from_changes(method: DiffMethod, changes: Vec<Change>) -> Changeset {
        Changeset::new(method, changes)
    }

    pub fn iter(&self) -> std::slice::Iter<'_, Change> {
        self.changes.iter()
    }

    pub fn len(&self) -> usize {
        self.changes.len()
    }

    pub fn is_empty(&self) -> bool {
        self.changes.is_empty()
    }
}

impl<'a> IntoIterator for &'a Changeset {
    type Item = &'a Change;
    type IntoIter = std::slice::Iter<'a, Change>;
    fn into_iter(self) -> Self::IntoIter {
        self.changes.iter()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn p(s: &str) -> RelPath {
        RelPath::new(s).unwrap()
    }

    #[test]
    fn whiteouts_come_before_siblings_and_subtrees_follow_their_directory() {
        let file = |s: &str| {
            let e = Entry::new(p(s), EntryKind::File);
            let src = Source::new(crate::Tree::lazy("/x"), p(s), None);
            Change::object(ChangeKind::Add, e, src, None)
        };
        let mut v = [
            file("a/b"),
            Change::delete(p("a/z")),
            file("a"),
            Change::opaque(p("a")),
            file("a/a/c"),
            file("a/a"),
            Change::delete(p("0")),
            file("a.b"),
        ];
        v.sort_by(Change::layer_order);
        let names: Vec<String> = v.iter().map(|c| String::from_utf8(c.tar_path()).unwrap()).collect();
        assert_eq!(names, [".wh.0", "a", "a/.wh..wh..opq", "a/.wh.z", "a/a", "a/a/c", "a/b", "a.b"]);
    }
}
