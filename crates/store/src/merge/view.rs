//! The root filesystem of a layer stack, computed from file records with overlayfs rules.
//!
//! Layers are applied bottom up. For each layer, first what it deletes from below: a
//! whiteout removes its path and everything under it, an opaque directory everything under
//! it. Then its objects, parents first: a directory over a directory keeps what is below it
//! and takes the upper one's metadata (overlayfs shows the top-most directory's inode);
//! anything else replaces the lower object and its subtree. Implicit directories (parents a
//! tar did not name) are objects of their layer like any other: overlayfs shows them, with
//! the metadata extraction gave them. A hardlink name shows the inode it links to.
//!
//! Each directory remembers its *cut*: the lowest layer whose entries below it are visible
//! (the layer that created it, made it opaque, or recreated it after a whiteout).

use std::collections::{BTreeMap, HashMap, HashSet};
use std::ops::Bound;
use std::sync::Arc;

use strata_types::{Entry, EntryKind, LayerId, RelPath};

use super::stack::{Inode, StackLayer};
use crate::records::FileRecord;

/// One visible object.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Node {
    /// Position of its layer in the stack (0 = bottom).
    pub layer: u32,
    pub inode: Inode,
    /// Directories: the lowest layer whose entries below it are visible.
    pub cut: u32,
}

/// An inode of a view: its layer's position and what describes it. Names sharing one are
/// hardlinks of each other.
pub(crate) type InodeId = (u32, Inode);

/// A path as a map key whose byte order is tree order: `/` becomes 0, which sorts before
/// every byte a name can hold (names never contain NUL), so a directory's subtree is the
/// key range `[dir, dir + 0x01)` and comparisons are plain `memcmp`s.
pub(crate) fn tree_key(p: &RelPath) -> Box<[u8]> {
    p.as_bytes().iter().map(|&b| if b == b'/' { 0 } else { b }).collect()
}

/// Every visible object but the root, by tree key.
type Nodes = BTreeMap<Box<[u8]>, (RelPath, Node)>;
/// A layer's object under its tree-order key (so objects are visited parents first).
type SortedObject<'a> = (Box<[u8]>, &'a (RelPath, Inode));

#[derive(Debug)]
pub(crate) struct View {
    pub stack: Vec<Arc<StackLayer>>,
    nodes: Nodes,
    /// The root directory's cut.
    pub root_cut: u32,
    /// Regular files with more than one visible name: the names, in tree order.
    pub groups: HashMap<InodeId, Vec<RelPath>>,
}

fn remove_below(nodes: &mut Nodes, p: &RelPath, inclusive: bool) {
    if p.is_root() {
        nodes.clear();
        return;
    }
    let start = tree_key(p);
    let mut end = start.to_vec();
    end.push(1);
    let lower = if inclusive { Bound::Included(&start[..]) } else { Bound::Excluded(&start[..]) };
    let gone: Vec<Box<[u8]>> =
        nodes.range::<[u8], _>((lower, Bound::Excluded(&end[..]))).map(|(k, _)| k.clone()).collect();
    for k in gone {
        nodes.remove(&k);
    }
}

impl View {
    /// The view of `stack` (bottom layer first).
    pub fn build(stack: Vec<Arc<StackLayer>>) -> View {
        let mut nodes = Nodes::new();
        let mut root_cut = 0;
        for (k, layer) in stack.iter().enumerate() {
            let k = k as u32;
            for w in &layer.whiteouts {
                remove_below(&mut nodes, w, true);
            }
            for o in &layer.opaques {
                remove_below(&mut nodes, o, false);
            }
            if layer.root_opaque {
                nodes.clear();
                root_cut = k;
            }
            let fresh: HashSet<&RelPath> = layer.whiteouts.iter().chain(&layer.opaques).collect();
            let mut objects: Vec<SortedObject> = layer.objects.iter().map(|o| (tree_key(&o.0), o)).collect();
            objects.sort_unstable_by(|a, b| a.0.cmp(&b.0));
            for (key, (p, inode)) in objects {
                let is_dir = layer.inode_entry(*inode).kind == EntryKind::Dir;
                let new = Node { layer: k, inode: *inode, cut: k };
                match nodes.get_mut(&key) {
                    Some((_, old)) if is_dir && Self::is_dir_in(&stack, old) => {
                        let cut = if fresh.contains(p) { k } else { old.cut };
                        *old = Node { cut, ..new };
                    }
                    Some(_) => {
                        remove_below(&mut nodes, p, true);
                        nodes.insert(key, (p.clone(), new));
                    }
                    None => {
                        nodes.insert(key, (p.clone(), new));
                    }
                }
            }
        }
        let mut groups: HashMap<InodeId, Vec<RelPath>> = HashMap::new();
        for (p, n) in nodes.values() {
            if stack[n.layer as usize].inode_entry(n.inode).kind == EntryKind::File {
                groups.entry((n.layer, n.inode)).or_default().push(p.clone());
            }
        }
        groups.retain(|_, names| names.len() > 1);
        View { stack, nodes, root_cut, groups }
    }

    fn is_dir_in(stack: &[Arc<StackLayer>], n: &Node) -> bool {
        stack[n.layer as usize].inode_entry(n.inode).kind == EntryKind::Dir
    }

    pub fn get(&self, p: &RelPath) -> Option<&Node> {
        self.nodes.get(&tree_key(p)).map(|(_, n)| n)
    }

    /// Every visible object but the root, in tree order.
    pub fn iter(&self) -> impl Iterator<Item = (&RelPath, &Node)> {
        self.nodes.values().map(|(p, n)| (p, n))
    }

    pub fn is_empty(&self) -> bool {
        self.nodes.is_empty()
    }

    pub fn layer_of(&self, n: &Node) -> &StackLayer {
        &self.stack[n.layer as usize]
    }

    /// The entry describing a node's inode (its path is the inode's own, not the name's).
    pub fn raw_entry(&self, n: &Node) -> &Entry {
        self.layer_of(n).inode_entry(n.inode)
    }

    pub fn kind(&self, n: &Node) -> EntryKind {
        self.raw_entry(n).kind
    }

    pub fn is_dir(&self, n: &Node) -> bool {
        self.kind(n) == EntryKind::Dir
    }

    /// True when `p` is the root or a visible directory.
    pub fn has_dir(&self, p: &RelPath) -> bool {
        p.is_root() || self.get(p).is_some_and(|n| self.is_dir(n))
    }

    /// A directory's cut (the root's included).
    pub fn cut(&self, p: &RelPath) -> Option<u32> {
        if p.is_root() {
            return Some(self.root_cut);
        }
        self.get(p).filter(|n| self.is_dir(n)).map(|n| n.cut)
    }

    pub fn record(&self, n: &Node) -> Option<&FileRecord> {
        self.layer_of(n).inode_record(n.inode)
    }

    /// What the object at `p` looks like: its inode's entry under the name `p`. Symlinks
    /// report mode 0777 whatever the tar said (Linux has no symlink permissions).
    pub fn entry(&self, p: &RelPath, n: &Node) -> Entry {
        let mut e = self.raw_entry(n).clone();
        e.path = p.clone();
        if e.kind == EntryKind::Symlink {
            e.mode = 0o777;
        }
        e
    }

    /// Where a regular file's data is: its inode's path in its layer directory (opened
    /// beneath the layer directory when the layer is written).
    pub fn source(&self, n: &Node) -> strata_differ::Source {
        let l = self.layer_of(n);
        strata_differ::Source::new(l.tree.clone(), l.inode_entry(n.inode).path.clone(), None)
    }

    /// A store-wide identity of a node's inode: equal identities mean the very same
    /// record (same metadata, same content).
    pub fn identity(&self, n: &Node) -> (LayerId, Inode) {
        (self.layer_of(n).id, n.inode)
    }

    /// The visible names sharing `p`'s inode (just `p` when it has one name).
    pub fn names<'a>(&'a self, p: &'a RelPath, n: &Node) -> &'a [RelPath] {
        match self.groups.get(&(n.layer, n.inode)) {
            Some(g) => g,
            None => std::slice::from_ref(p),
        }
    }
}
