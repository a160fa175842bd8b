//! The double walk: both trees are read in full and compared path by path.
//!
//! Equality rule for regular files (continuity's, kept deliberately): same type, mode, owner,
//! xattrs, size, link count and mtime means unchanged, *if* the mtime has a non-zero
//! nanosecond part; when it has zero nanoseconds (coarse-timestamp filesystems, trees
//! extracted from tars) the contents are compared byte by byte as well. A file rewritten with
//! the same size inside the same nanosecond-precise mtime is therefore not detected; nothing
//! short of reading every file could.
//!
//! A difference in the link count marks a file changed, so hardlink groups that were split
//! or joined are rewritten; and every name of a target inode that has one changed name is
//! emitted too, so the layer recreates the whole group.

use std::collections::{BTreeMap, HashSet};
use std::fs::File;
use std::io::Read;

use strata_types::{EntryKind, RelPath};

use crate::DiffError;
use crate::changeset::{Change, ChangeKind, InodeKey};
use crate::inode::{Inode, io_err, is_oci_whiteout_name};
use crate::tree::{Source, Tree};

struct DoubleWalk<'a> {
    base: &'a Tree,
    target: &'a Tree,
    changes: Vec<Change>,
    /// Every name of each multiply-linked target file.
    groups: BTreeMap<InodeKey, Vec<(RelPath, Inode)>>,
    changed_groups: HashSet<InodeKey>,
}

/// Compares `target` against `base`; changes bring `base` to `target`.
pub(crate) fn walk_trees(base: &Tree, target: &Tree) -> Result<Vec<Change>, DiffError> {
    for root in [base, target] {
        if !root.read_inode(&RelPath::root())?.is_some_and(|i| i.is_dir()) {
            return Err(DiffError::NotADirectory { path: root.path().to_path_buf() });
        }
    }
    let mut w =
        DoubleWalk { base, target, changes: Vec::new(), groups: BTreeMap::new(), changed_groups: HashSet::new() };
    w.compare_dir(&RelPath::root())?;
    // Complete hardlink groups that have at least one changed name.
    let emitted: HashSet<RelPath> = w.changes.iter().filter(|c| !c.is_whiteout()).map(|c| c.path.clone()).collect();
    for key in &w.changed_groups {
        for (rel, inode) in &w.groups[key] {
            if !emitted.contains(rel) {
                let kind = if base.read_inode(rel)?.is_some() { ChangeKind::Modify } else { ChangeKind::Add };
                w.changes.push(object(kind, inode, target, rel));
            }
        }
    }
    include_parents(&mut w.changes, target)?;
    Ok(w.changes)
}

fn object(kind: ChangeKind, inode: &Inode, tree: &Tree, rel: &RelPath) -> Change {
    let entry = inode.entry.clone().expect("only representable objects become changes");
    let source = Source::new(tree.clone(), rel.clone(), Some(inode.key));
    Change::object(kind, entry, source, inode.hardlink_key())
}

/// Adds a `Modify` for every ancestor directory of a change that is not itself a change,
/// so a layer never has an entry whose parent directory it does not describe.
pub(crate) fn include_parents(changes: &mut Vec<Change>, tree: &Tree) -> Result<(), DiffError> {
    let present: HashSet<RelPath> = changes.iter().filter(|c| !c.is_whiteout()).map(|c| c.path.clone()).collect();
    let mut missing: Vec<RelPath> = Vec::new();
    let mut seen = HashSet::new();
    for c in changes.iter() {
        let mut ancestors = c.path.ancestors();
        if c.kind == ChangeKind::Opaque {
            ancestors.push(c.path.clone());
        }
        for anc in ancestors {
            if !anc.is_root() && !present.contains(&anc) && seen.insert(anc.clone()) {
                missing.push(anc);
            }
        }
    }
    for anc in missing {
        let inode = tree
            .read_inode(&anc)?
            .filter(Inode::is_dir)
            .ok_or_else(|| DiffError::NotADirectory { path: tree.display(&anc) })?;
        changes.push(object(ChangeKind::Modify, &inode, tree, &anc));
    }
    Ok(())
}

impl DoubleWalk<'_> {
    /// Compares the children of `dir` (a directory in both trees). Returns whether anything
    /// below it changed.
    fn compare_dir(&mut self, dir: &RelPath) -> Result<bool, DiffError> {
        let bnames = self.base.sorted_names(dir)?;
        let tnames = self.target.sorted_names(dir)?;
        let mut names: Vec<&Vec<u8>> = bnames.iter().chain(tnames.iter()).collect();
        names.sort();
        names.dedup();
        let mut changed = false;
        for name in names {
            let rel = dir.join(name)?;
            if is_oci_whiteout_name(name) && tnames.binary_search(name).is_ok() {
                return Err(DiffError::WhiteoutName { path: self.target.display(&rel) });
            }
            // Sockets count as absent; so do names readdir lists but lookup does not find
            // (an overlay whiteout xattr in an upper layer is listed yet hidden).
            let t = self.target.read_inode(&rel)?.filter(|i| i.entry.is_some());
            let b = self.base.read_inode(&rel)?.filter(|i| i.entry.is_some());
            changed |= self.compare(&rel, b.as_ref(), t.as_ref())?;
        }
        Ok(changed)
    }

    fn compare(&mut self, rel: &RelPath, b: Option<&Inode>, t: Option<&Inode>) -> Result<bool, DiffError> {
        match (b, t) {
            (None, None) => Ok(false),
            (Some(_), None) => {
                self.changes.push(Change::delete(rel.clone()));
                Ok(true)
            }
            (None, Some(t)) => {
                self.emit(ChangeKind::Add, rel, t)?;
                if t.is_dir() {
                    self.add_subtree(rel)?;
                }
                Ok(true)
            }
            (Some(b), Some(t)) => {
                if b.kind() != t.kind() {
                    self.emit(ChangeKind::Modify, rel, t)?;
                    if t.is_dir() {
                        self.add_subtree(rel)?;
                    }
                    return Ok(true);
                }
                self.note_group(rel, t);
                if t.is_dir() {
                    let below = self.compare_dir(rel)?;
                    if below || !same_metadata(b, t) {
                        self.emit(ChangeKind::Modify, rel, t)?;
                        return Ok(true);
                    }
                    return Ok(false);
                }
                if same_metadata(b, t) && same_content(b, t, self.base, self.target, rel)? {
                    return Ok(false);
                }
                self.emit(ChangeKind::Modify, rel, t)?;
                Ok(true)
            }
        }
    }

    fn note_group(&mut self, rel: &RelPath, t: &Inode) {
        if let Some(key) = t.hardlink_key() {
            self.groups.entry(key).or_default().push((rel.clone(), t.clone()));
        }
    }

    fn emit(&mut self, kind: ChangeKind, rel: &RelPath, t: &Inode) -> Result<(), DiffError> {
        if let Some(key) = t.hardlink_key() {
            self.changed_groups.insert(key);
            let group = self.groups.entry(key).or_default();
            if !group.iter().any(|(p, _)| p == rel) {
                group.push((rel.clone(), t.clone()));
            }
        }
        self.changes.push(object(kind, t, self.target, rel));
        Ok(())
    }

    /// Everything below a new directory of the target is an add.
    fn add_subtree(&mut self, dir: &RelPath) -> Result<(), DiffError> {
        for name in self.target.sorted_names(dir)? {
            let rel = dir.join(&name)?;
            if is_oci_whiteout_name(&name) {
                return Err(DiffError::WhiteoutName { path: self.target.display(&rel) });
            }
            let Some(t) = self.target.read_inode(&rel)?.filter(|i| i.entry.is_some()) else { continue };
            self.emit(ChangeKind::Add, &rel, &t)?;
            if t.is_dir() {
                self.add_subtree(&rel)?;
            }
        }
        Ok(())
    }
}

/// Everything but the data: type, permissions, owner, xattrs, size, mtime, link target,
/// device numbers, and for regular files the link count.
fn same_metadata(b: &Inode, t: &Inode) -> bool {
    let (Some(be), Some(te)) = (&b.entry, &t.entry) else { return false };
    be.kind == te.kind
        && be.mode == te.mode
        && be.uid == te.uid
        && be.gid == te.gid
        && be.xattrs == te.xattrs
        && be.size == te.size
        && be.mtime == te.mtime
        && be.link_target == te.link_target
        && be.dev_major == te.dev_major
        && be.dev_minor == te.dev_minor
        && (te.kind != EntryKind::File || b.nlink == t.nlink)
}

/// For regular files whose metadata matched: trust a nanosecond mtime, otherwise compare.
fn same_content(b: &Inode, t: &Inode, base: &Tree, target: &Tree, rel: &RelPath) -> Result<bool, DiffError> {
    let Some(te) = &t.entry else { return Ok(false) };
    if te.kind != EntryKind::File || te.mtime.nanos != 0 || b.key == t.key {
        return Ok(true);
    }
    let (babs, tabs) = (&base.display(rel), &target.display(rel));
    let mut bf: File = base.open_file(rel).map_err(io_err(babs))?;
    let mut tf: File = target.open_file(rel).map_err(io_err(tabs))?;
    let mut bb = vec![0u8; 1 << 16];
    let mut tb = vec![0u8; 1 << 16];
    loop {
        let n = read_full(&mut bf, &mut bb).map_err(io_err(babs))?;
        let m = read_full(&mut tf, &mut tb).map_err(io_err(tabs))?;
        if n != m || bb[..n] != tb[..m] {
            return Ok(false);
        }
        if n == 0 {
            return Ok(true);
        }
    }
}

fn read_full(f: &mut File, buf: &mut [u8]) -> std::io::Result<usize> {
    let mut done = 0;
    while done < buf.len() {
        match f.read(&mut buf[done..])? {
            0 => break,
            n => done += n,
        }
    }
    Ok(done)
}
