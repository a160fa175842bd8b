//! Whiteouts: how `.wh.` names are read, and what they do in each [`WhiteoutMode`].

use std::os::fd::{AsFd, BorrowedFd, OwnedFd};

use nix::errno::Errno;
use strata_types::{Entry, EntryKind, RelPath};

use super::engine::{Applier, Origin, io_err};
use super::fsops::{self, leaf, os};
use super::{Applied, ApplyError, WhiteoutMode};

/// How a layer entry's name is interpreted.
pub(super) enum Name {
    Plain,
    Whiteout(RelPath),
    Opaque(RelPath),
    Skip,
}

pub(super) fn classify(path: &RelPath) -> Result<Name, ApplyError> {
    let comps: Vec<&[u8]> = path.components().collect();
    let bad = |reason| Err(ApplyError::BadWhiteout { entry: path.clone(), reason });
    for (i, c) in comps.iter().enumerate() {
        let last = i + 1 == comps.len();
        let parent = || path.parent().unwrap_or_default();
        if c.starts_with(b".wh..wh.") {
            if last && *c == b".wh..wh..opq" {
                return Ok(Name::Opaque(parent()));
            }
            return Ok(Name::Skip);
        }
        if let Some(target) = c.strip_prefix(b".wh.") {
            if !last {
                return bad("a whiteout name is used as a directory");
            }
            if target.is_empty() || target == b"." || target == b".." {
                return bad("it names no file (empty, '.' or '..')");
            }
            return match parent().join(target) {
                Ok(t) => Ok(Name::Whiteout(t)),
                Err(_) => bad("its target is not a valid name"),
            };
        }
    }
    Ok(Name::Plain)
}

impl<O> Applier<'_, O> {
    /// An existing directory, `None` when it (or a parent) is missing or not a directory.
    /// A symlink on the way is an error: whiteouts never act through symlinks.
    pub(super) fn existing_dir(&mut self, entry: &RelPath, dir: &RelPath) -> Result<Option<OwnedFd>, ApplyError> {
        match fsops::open_dir_path(self.root.as_fd(), dir.as_bytes()) {
            Ok(fd) => Ok(Some(fd)),
            Err(Errno::ENOENT) => Ok(None),
            Err(e @ (Errno::ENOTDIR | Errno::ELOOP)) => match self.find_symlink(dir) {
                Some(symlink) => Err(ApplyError::ThroughSymlink { entry: entry.clone(), symlink }),
                None if e == Errno::ENOTDIR => Ok(None),
                None => Err(io_err(entry, "open a directory")(e)),
            },
            Err(e) => Err(io_err(entry, "open a directory")(e)),
        }
    }

    /// The first symlink on `dir`'s path, if any (`dir` included).
    pub(super) fn find_symlink(&self, dir: &RelPath) -> Option<RelPath> {
        let mut prefix = RelPath::root();
        for comp in dir.components() {
            let next = prefix.join(comp).expect("valid component");
            let parent = fsops::open_dir_path(self.root.as_fd(), prefix.as_bytes()).ok()?;
            let st = fsops::lstat_at(parent.as_fd(), os(comp)).ok().flatten()?;
            if fsops::is_symlink(&st) {
                return Some(next);
            }
            if !fsops::is_dir(&st) {
                return None;
            }
            prefix = next;
        }
        None
    }

    pub(super) fn set_opaque(&mut self, dir: &RelPath) -> Result<(), ApplyError> {
        let f =
            fsops::open_dir_rd(self.root.as_fd(), dir.as_bytes()).map_err(io_err(dir, "open for the opaque xattr"))?;
        fsops::set_xattr_fd(&f, self.opts.overlay_xattrs.opaque_name(), b"y")
            .map_err(io_err(dir, "set the opaque xattr"))
    }

    /// OCI: removes `target` below `parent`, except what this layer created there.
    pub(super) fn remove_lower(
        &mut self,
        parent: BorrowedFd<'_>,
        parent_path: &RelPath,
        target: &RelPath,
    ) -> Result<(), ApplyError> {
        let name = leaf(target);
        let Some(st) = fsops::lstat_at(parent, name).map_err(io_err(target, "lstat"))? else {
            return Ok(());
        };
        if !self.has_layer_at_or_below(target) {
            self.touch(parent_path, parent)?;
            fsops::remove_all(parent, name).map_err(io_err(target, "remove"))?;
            self.forget(target);
            return Ok(());
        }
        if fsops::is_dir(&st) {
            let dir = fsops::open_dir_path(parent, name.as_encoded_bytes()).map_err(io_err(target, "open"))?;
            for child in fsops::list_dir(dir.as_fd()).map_err(io_err(target, "list"))? {
                let child = target.join(child.as_encoded_bytes()).expect("directory entries are valid names");
                self.remove_lower(dir.as_fd(), target, &child)?;
            }
        }
        Ok(())
    }

    pub(super) fn whiteout(&mut self, entry: &Entry, target: RelPath) -> Result<(), ApplyError> {
        let parent_path = target.parent().unwrap_or_default();
        match self.opts.whiteouts {
            WhiteoutMode::Oci => {
                if let Some(parent) = self.existing_dir(&entry.path, &parent_path)? {
                    self.remove_lower(parent.as_fd(), &parent_path, &target)?;
                }
            }
            WhiteoutMode::Overlay => match self.layer.get(&target) {
                Some(Origin::Entry(EntryKind::Dir) | Origin::Implicit) => self.set_opaque(&target)?,
                Some(_) => {}
                None => {
                    let parent = self.parent_dir(&entry.path, &parent_path)?;
                    let name = leaf(&target);
                    self.touch(&parent_path, parent.as_fd())?;
                    if fsops::lstat_at(parent.as_fd(), name).map_err(io_err(&entry.path, "lstat"))?.is_some() {
                        fsops::remove_all(parent.as_fd(), name).map_err(io_err(&target, "remove"))?;
                        self.forget(&target);
                    }
                    fsops::make_whiteout(parent.as_fd(), name)
                        .map_err(io_err(&entry.path, "create a whiteout device"))?;
                    if self.opts.chown {
                        fsops::chown_at(parent.as_fd(), name, entry.uid, entry.gid)
                            .map_err(io_err(&entry.path, "chown"))?;
                    }
                    fsops::set_times_at(parent.as_fd(), name, entry.mtime).map_err(io_err(&entry.path, "set times"))?;
                    self.layer.insert(target.clone(), Origin::Whiteout);
                }
            },
        }
        self.stats.whiteouts += 1;
        self.observe(&entry.path, Applied::Whiteout { entry, target: &target })
    }

    pub(super) fn opaque(&mut self, entry: &Entry, dir: RelPath) -> Result<(), ApplyError> {
        match self.opts.whiteouts {
            WhiteoutMode::Oci => {
                if let Some(fd) = self.existing_dir(&entry.path, &dir)? {
                    for child in fsops::list_dir(fd.as_fd()).map_err(io_err(&dir, "list"))? {
                        let child = dir.join(child.as_encoded_bytes()).expect("directory entries are valid names");
                        self.remove_lower(fd.as_fd(), &dir, &child)?;
                    }
                }
            }
            WhiteoutMode::Overlay => {
                self.parent_dir(&entry.path, &dir)?;
                self.set_opaque(&dir)?;
            }
        }
        self.stats.opaque_dirs += 1;
        self.observe(&entry.path, Applied::Opaque { entry, dir: &dir })
    }
}
