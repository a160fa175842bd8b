//! Merge conflicts: paths where the order of the inputs matters.
//!
//! Each input *owns* the layers no other input has (layers several inputs share are their
//! common base). An input *touches* a path when one of its own layers names it (an object,
//! an implicit directory, a whiteout, an opaque directory) or deletes it (the path lies
//! below one of its whiteouts or opaque directories). A path touched by two or more inputs
//! is a conflict when their root filesystems disagree about it: one has it and another does
//! not, or both have it with a different type, content digest, link target, device number,
//! mode, owner or xattrs. Modification times are not compared (two inputs that both add a
//! file to `/usr/bin` both change its mtime; the later input's wins and nobody minds).

use std::collections::HashSet;

use serde::Serialize;
use strata_types::{Blake3Digest, Entry, EntryKind, ImageName, RelPath};

use super::view::{View, tree_key};

/// How two inputs disagree about a path, most serious first.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum ConflictKind {
    /// A later input deletes (whiteout or opaque directory) what an earlier one has.
    Whiteout,
    /// An earlier input deletes what a later one has (the later object is in the result).
    Delete,
    /// Different types (file, directory, symlink...).
    Type,
    /// Regular files with different content.
    Content,
    LinkTarget,
    Device,
    Mode,
    /// uid or gid.
    Ownership,
    Xattrs,
}

/// One conflicting path.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Conflict {
    #[serde(serialize_with = "lossy")]
    pub path: RelPath,
    /// The inputs touching the path, in merge order.
    pub inputs: Vec<ImageName>,
    /// The most serious disagreement between the last of them and each other one.
    pub kind: ConflictKind,
}

fn lossy<S: serde::Serializer>(p: &RelPath, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_str(&p.to_string())
}

/// One input: its name, its root filesystem, and which of its layers it owns (positions in
/// its own stack).
#[derive(Debug)]
pub(crate) struct Input<'a> {
    pub name: &'a ImageName,
    pub view: &'a View,
    pub own: Vec<usize>,
}

/// What an input's own layers touch.
struct Touches {
    exact: HashSet<RelPath>,
    /// Whiteout targets: the path and everything below it.
    deleted: HashSet<RelPath>,
    /// Opaque directories: everything below them.
    emptied: HashSet<RelPath>,
}

impl Touches {
    fn of(input: &Input<'_>) -> Touches {
        let mut t = Touches { exact: HashSet::new(), deleted: HashSet::new(), emptied: HashSet::new() };
        for &i in &input.own {
            let l = &input.view.stack[i];
            t.exact.extend(l.touched().cloned());
            t.deleted.extend(l.whiteouts.iter().cloned());
            t.emptied.extend(l.opaques.iter().cloned());
            if l.root_opaque {
                t.emptied.insert(RelPath::root());
            }
        }
        t
    }

    fn touches(&self, p: &RelPath) -> bool {
        if self.exact.contains(p) || self.emptied.contains(&RelPath::root()) {
            return true;
        }
        let ancestors = p.ancestors();
        ancestors.iter().any(|a| self.deleted.contains(a) || self.emptied.contains(a))
    }
}

/// What an input's root filesystem has at a path, as far as conflicts go.
#[derive(PartialEq, Eq)]
struct Seen {
    entry: Entry,
    digest: Option<Blake3Digest>,
}

fn seen(view: &View, p: &RelPath) -> Option<Seen> {
    let n = view.get(p)?;
    Some(Seen { entry: view.entry(p, n), digest: view.record(n).and_then(|r| r.blake3) })
}

/// `None` when `earlier` and `later` agree.
fn classify(earlier: &Option<Seen>, later: &Option<Seen>) -> Option<ConflictKind> {
    let (e, l) = match (earlier, later) {
        (None, None) => return None,
        (Some(_), None) => return Some(ConflictKind::Whiteout),
        (None, Some(_)) => return Some(ConflictKind::Delete),
        (Some(e), Some(l)) => (e, l),
    };
    let (ee, le) = (&e.entry, &l.entry);
    Some(if ee.kind != le.kind {
        ConflictKind::Type
    } else if ee.kind == EntryKind::File && (ee.size != le.size || e.digest != l.digest) {
        ConflictKind::Content
    } else if ee.link_target != le.link_target {
        ConflictKind::LinkTarget
    } else if (ee.dev_major, ee.dev_minor) != (le.dev_major, le.dev_minor) {
        ConflictKind::Device
    } else if ee.mode != le.mode {
        ConflictKind::Mode
    } else if (ee.uid, ee.gid) != (le.uid, le.gid) {
        ConflictKind::Ownership
    } else if ee.xattrs != le.xattrs {
        ConflictKind::Xattrs
    } else {
        return None;
    })
}

/// The conflicts between `inputs` (in merge order), in tree order of their paths.
pub(crate) fn find(inputs: &[Input<'_>]) -> Vec<Conflict> {
    let touches: Vec<Touches> = inputs.iter().map(Touches::of).collect();
    let candidates: HashSet<&RelPath> = touches.iter().flat_map(|t| &t.exact).filter(|p| !p.is_root()).collect();
    let mut candidates: Vec<&RelPath> = candidates.into_iter().collect();
    candidates.sort_by_cached_key(|p| tree_key(p));
    let mut out = Vec::new();
    for p in candidates {
        let who: Vec<usize> = (0..inputs.len()).filter(|&i| touches[i].touches(p)).collect();
        if who.len() < 2 {
            continue;
        }
        let states: Vec<Option<Seen>> = who.iter().map(|&i| seen(inputs[i].view, p)).collect();
        let last = states.last().expect("two or more");
        let kind = states[..states.len() - 1].iter().filter_map(|s| classify(s, last)).min();
        if let Some(kind) = kind {
            out.push(Conflict { path: p.clone(), inputs: who.iter().map(|&i| inputs[i].name.clone()).collect(), kind });
        }
    }
    out
}
