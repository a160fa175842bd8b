//! Changesets computed from views, never from the files: the objects they name are written
//! later from their layer directories (`source`), and only those files are read.

use std::collections::HashSet;

use strata_differ::{Change, ChangeKind, InodeKey};
use strata_types::{EntryKind, RelPath};

use super::view::{Node, View};
use crate::StoreError;

/// A change that writes `b`'s object at `p`. Regular files with several visible names carry
/// their inode, so the writer emits one file and hardlinks to it.
fn object(b: &View, p: &RelPath, n: &Node, kind: ChangeKind) -> Change {
    let entry = b.entry(p, n);
    let file = entry.kind == EntryKind::File;
    let hardlink = (file && b.groups.contains_key(&(n.layer, n.inode))).then(|| InodeKey {
        dev: u64::from(n.layer),
        ino: match n.inode {
            super::stack::Inode::Record(r) => u64::from(r),
            super::stack::Inode::Implicit(i) => u64::from(i) | 1 << 63,
        },
    });
    Change { kind, path: p.clone(), source: file.then(|| b.source(n)), entry: Some(entry), hardlink }
}

fn add_or_modify(a: Option<&View>, p: &RelPath) -> ChangeKind {
    if a.is_some_and(|a| a.get(p).is_some()) { ChangeKind::Modify } else { ChangeKind::Add }
}

fn marker(kind: ChangeKind, p: &RelPath) -> Change {
    Change { kind, path: p.clone(), entry: None, source: None, hardlink: None }
}

/// True when the object `an` at `p` in `a` is exactly `bn` in `b`: same type, metadata,
/// content digest, link target, device, and (regular files) the same set of visible names.
fn same(a: &View, an: &Node, b: &View, bn: &Node, p: &RelPath) -> bool {
    let (ae, be) = (a.entry(p, an), b.entry(p, bn));
    if ae.kind != be.kind {
        return false;
    }
    if ae.kind == EntryKind::File && a.names(p, an) != b.names(p, bn) {
        return false;
    }
    if a.identity(an) == b.identity(bn) {
        return true;
    }
    let content = ae.kind != EntryKind::File || {
        let (ad, bd) = (a.record(an).and_then(|r| r.blake3), b.record(bn).and_then(|r| r.blake3));
        match (ad, bd) {
            (Some(x), Some(y)) => x == y,
            _ => ae.size == 0 && be.size == 0,
        }
    };
    content
        && ae.mode == be.mode
        && ae.uid == be.uid
        && ae.gid == be.gid
        && ae.mtime == be.mtime
        && ae.size == be.size
        && ae.link_target == be.link_target
        && ae.dev_major == be.dev_major
        && ae.dev_minor == be.dev_minor
        && ae.xattrs == be.xattrs
}

/// The changes that turn `a`'s root filesystem into `b`'s, from the two views alone:
/// objects that differ (added, replaced, or changed in any attribute), and a whiteout for
/// each top-most path `a` has and `b` does not.
pub(crate) fn metadata_diff(a: &View, b: &View) -> Result<Vec<Change>, StoreError> {
    let mut out = Vec::new();
    for (p, bn) in b.iter() {
        match a.get(p) {
            None => out.push(object(b, p, bn, ChangeKind::Add)),
            Some(an) if !same(a, an, b, bn, p) => out.push(object(b, p, bn, ChangeKind::Modify)),
            Some(_) => {}
        }
    }
    for (p, _) in a.iter() {
        if b.get(p).is_none() && b.has_dir(&p.parent().unwrap_or_default()) {
            out.push(marker(ChangeKind::Delete, p));
        }
    }
    complete(Some(a), b, &mut out)?;
    Ok(out)
}

/// The layers `b.stack[from..]` folded into one layer to put on `a` (whose view is
/// `b.stack[..from]`): `b`'s object at every path those layers name; an opaque marker on
/// each directory they cut off from what `a` has below it; a whiteout for each path they
/// delete that `a` has (unless an opaque parent already hides it).
pub(crate) fn squash_diff(a: &View, b: &View, from: usize) -> Result<Vec<Change>, StoreError> {
    let from = from as u32;
    let touched: HashSet<&RelPath> = b.stack[from as usize..].iter().flat_map(|l| l.touched()).collect();
    let mut out = Vec::new();
    if b.root_cut >= from && from > 0 && !a.is_empty() {
        out.push(marker(ChangeKind::Opaque, &RelPath::root()));
    }
    for p in touched {
        if p.is_root() {
            continue;
        }
        match b.get(p) {
            Some(bn) => {
                out.push(object(b, p, bn, add_or_modify(Some(a), p)));
                if b.is_dir(bn) && bn.cut >= from && a.get(p).is_some_and(|an| a.is_dir(an)) {
                    out.push(marker(ChangeKind::Opaque, p));
                }
            }
            None => {
                let parent = p.parent().unwrap_or_default();
                if a.get(p).is_some() && b.cut(&parent).is_some_and(|c| c < from) {
                    out.push(marker(ChangeKind::Delete, p));
                }
            }
        }
    }
    complete(Some(a), b, &mut out)?;
    Ok(out)
}

/// Every object of `b`: a one-layer image of the same root filesystem.
pub(crate) fn full(b: &View) -> Result<Vec<Change>, StoreError> {
    let mut out: Vec<Change> = b.iter().map(|(p, n)| object(b, p, n, ChangeKind::Add)).collect();
    complete(None, b, &mut out)?;
    Ok(out)
}

/// Adds what a layer needs besides the changes themselves: every other visible name of a
/// hardlinked file that is written (a hardlink can only name an entry of the same layer),
/// and every parent directory of a change (taken from `b`).
fn complete(a: Option<&View>, b: &View, out: &mut Vec<Change>) -> Result<(), StoreError> {
    let mut objects: HashSet<RelPath> = out.iter().filter(|c| c.entry.is_some()).map(|c| c.path.clone()).collect();
    let mut extra = Vec::new();
    for c in out.iter().filter(|c| c.hardlink.is_some()) {
        let n = b.get(&c.path).expect("objects come from b");
        for name in b.names(&c.path, n) {
            if objects.insert(name.clone()) {
                let m = b.get(name).expect("group names are visible");
                extra.push(object(b, name, m, add_or_modify(a, name)));
            }
        }
    }
    out.append(&mut extra);
    let mut parents = HashSet::new();
    for c in out.iter() {
        parents.extend(c.path.ancestors());
        if c.kind == ChangeKind::Opaque && !c.path.is_root() {
            parents.insert(c.path.clone());
        }
    }
    for p in parents {
        if objects.contains(&p) {
            continue;
        }
        let n = b
            .get(&p)
            .filter(|n| b.is_dir(n))
            .ok_or_else(|| StoreError::Corrupt(format!("{p} holds changes but is not a directory of the image")))?;
        out.push(object(b, &p, n, add_or_modify(a, &p)));
        objects.insert(p);
    }
    Ok(())
}
