//! The single walk: every object in the upperdir is a change (or a whiteout); the lowers are
//! consulted only for the paths found there, to tell adds from modifies and to drop whiteouts
//! of paths no lower has.
//!
//! The walk refuses (returns [`Walk::Unprovable`]) whenever the upperdir alone cannot say
//! what the merged view shows: `overlay.redirect` (a renamed directory whose contents still
//! come from the old name), `overlay.metacopy` (an upper file without data), `overlay.nlink`
//! and multiply-linked upper files with links outside the upperdir (overlayfs's index with
//! `index=on`: other names of that inode in the lowers show the upper data). The caller then falls back to a double walk.

use std::collections::HashMap;
use std::ffi::OsStr;
use std::os::fd::{AsFd, BorrowedFd};
use std::os::unix::ffi::OsStrExt;
use std::path::PathBuf;

use nix::fcntl::OFlag;
use strata_types::{EntryKind, RelPath};

use crate::DiffError;
use crate::changeset::{Change, ChangeKind, InodeKey};
use crate::inode::{Inode, io_err, is_oci_whiteout_name, read_inode_at};
use crate::lowers::{LookupError, LowerStack};
use crate::tree::{Source, Tree, open_at_beneath, sorted_names_at};

pub(crate) enum Walk {
    Done(Vec<Change>),
    /// The single walk cannot prove its result correct; the reason says why.
    Unprovable(String),
}

/// Whether the lowers can have anything at or below a directory of the upper.
#[derive(Clone, Copy, PartialEq, Eq)]
enum LowerScope {
    /// Look paths up in the lowers.
    Lookup,
    /// Nothing below exists in the lowers (new or opaque directory, or a non-directory there).
    Hidden,
}

struct UpperWalk<'a> {
    upper: &'a Tree,
    lowers: LowerStack,
    changes: Vec<Change>,
    /// Set when some object uses the `user.overlay.` namespace (a `userxattr` mount).
    user_ns: bool,
    /// Multiply-linked upper files: link count and the names found in the upperdir.
    links: HashMap<InodeKey, (u64, Vec<PathBuf>)>,
}

/// Walks `upper` against `lowers` (top-most first). Every directory is read through a
/// descriptor opened from its parent's (see `tree.rs`): nothing the container does to the
/// upperdir meanwhile can make the walk leave it.
pub(crate) fn walk_upper(upper: &Tree, lowers: &[Tree]) -> Result<(Walk, bool), DiffError> {
    let mut w = UpperWalk {
        upper,
        lowers: LowerStack::new(lowers),
        changes: Vec::new(),
        user_ns: false,
        links: HashMap::new(),
    };
    let root_dir = upper.open_dir(&RelPath::root())?;
    let root = read_inode_at(root_dir.as_fd(), OsStr::new("."), &RelPath::root(), upper.path())?
        .filter(Inode::is_dir)
        .ok_or_else(|| DiffError::NotADirectory { path: upper.path().to_path_buf() })?;
    if root.ovl.redirect || root.ovl.metacopy {
        return Ok((
            Walk::Unprovable("the upperdir's root carries overlay.redirect/metacopy".into()),
            root.ovl.user_ns,
        ));
    }
    w.user_ns = root.ovl.user_ns;
    let scope = if root.ovl.is_opaque() {
        w.changes.push(Change::opaque(RelPath::root()));
        LowerScope::Hidden
    } else {
        LowerScope::Lookup
    };
    let result = match w.walk_dir(root_dir.as_fd(), &RelPath::root(), scope).and_then(|()| w.check_links()) {
        Ok(()) => Walk::Done(w.changes),
        Err(LookupError::Unprovable(reason)) => Walk::Unprovable(reason),
        Err(LookupError::Err(e)) => return Err(e),
    };
    Ok((result, w.user_ns))
}

impl UpperWalk<'_> {
    /// Every link of a multiply-linked upper file must be a name in the upperdir. A link
    /// elsewhere is overlayfs's index (`index=on`): then lower hardlinks of that inode show
    /// the upper data in the merged view under names the upperdir does not have.
    fn check_links(&self) -> Result<(), LookupError> {
        for (nlink, names) in self.links.values() {
            if *nlink > names.len() as u64 {
                return Err(LookupError::Unprovable(format!(
                    "{} has {nlink} links but only {} in the upperdir (index=on hardlinks)",
                    names[0].display(),
                    names.len()
                )));
            }
        }
        Ok(())
    }

    fn lower(&self, rel: &RelPath, scope: LowerScope) -> Result<Option<Inode>, LookupError> {
        match scope {
            LowerScope::Hidden => Ok(None),
            LowerScope::Lookup => self.lowers.lookup(rel),
        }
    }

    fn walk_dir(&mut self, dir_fd: BorrowedFd<'_>, dir: &RelPath, scope: LowerScope) -> Result<(), LookupError> {
        let names = sorted_names_at(dir_fd).map_err(io_err(&self.upper.display(dir)))?;
        for name in names {
            let rel = dir.join(&name).map_err(DiffError::from)?;
            let abs = self.upper.display(&rel);
            if is_oci_whiteout_name(&name) {
                return Err(DiffError::WhiteoutName { path: abs }.into());
            }
            // Vanished since readdir: the upperdir is not quiescent; nothing to record.
            let Some(up) = read_inode_at(dir_fd, OsStr::from_bytes(&name), &rel, &abs)? else { continue };
            self.user_ns |= up.ovl.user_ns;
            if up.ovl.redirect {
                return Err(LookupError::Unprovable(format!(
                    "{} has overlay.redirect (renamed directory)",
                    abs.display()
                )));
            }
            if up.ovl.metacopy {
                return Err(LookupError::Unprovable(format!(
                    "{} has overlay.metacopy (data in a lower)",
                    abs.display()
                )));
            }
            if up.ovl.nlink {
                return Err(LookupError::Unprovable(format!(
                    "{} has overlay.nlink (index=on hardlinks)",
                    abs.display()
                )));
            }
            if up.is_whiteout() {
                if self.lower(&rel, scope)?.is_some() {
                    self.changes.push(Change::delete(rel));
                }
                continue;
            }
            let Some(entry) = up.entry.clone() else {
                // A socket: not representable. If it hides a lower object, delete that.
                if self.lower(&rel, scope)?.is_some() {
                    self.changes.push(Change::delete(rel));
                }
                continue;
            };
            let lower = self.lower(&rel, scope)?;
            if let Some(key) = up.hardlink_key() {
                let seen = self.links.entry(key).or_insert((up.nlink, Vec::new()));
                seen.1.push(abs.clone());
            }
            let kind = if lower.is_some() { ChangeKind::Modify } else { ChangeKind::Add };
            let is_dir = entry.kind == EntryKind::Dir;
            let hardlink = up.hardlink_key();
            let source = Source::new(self.upper.clone(), rel.clone(), Some(up.key));
            self.changes.push(Change::object(kind, entry, source, hardlink));
            if is_dir {
                let lower_is_dir = lower.as_ref().is_some_and(Inode::is_dir);
                if up.ovl.is_opaque() && lower_is_dir {
                    self.changes.push(Change::opaque(rel.clone()));
                }
                let child_scope = if lower_is_dir && !up.ovl.is_opaque() { scope } else { LowerScope::Hidden };
                // One component, no symlink: a directory swapped for a symlink (or removed)
                // since the fstatat above is not followed; its contents are simply not seen
                // (the upperdir of a running container is not quiescent).
                let child = match open_at_beneath(dir_fd, &name, OFlag::O_RDONLY | OFlag::O_DIRECTORY) {
                    Ok(fd) => fd,
                    Err(e) if matches!(e.raw_os_error(), Some(libc::ENOENT | libc::ENOTDIR | libc::ELOOP)) => continue,
                    Err(e) => return Err(DiffError::Io { path: abs, source: e }.into()),
                };
                self.walk_dir(child.as_fd(), &rel, child_scope)?;
            }
        }
        Ok(())
    }
}
