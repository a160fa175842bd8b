//! Whiteouts: how `.wh.` names are read, what a marker entry may be, and what markers do in
//! each [`WhiteoutMode`].

use std::os::fd::{AsFd, BorrowedFd, OwnedFd};

use nix::errno::Errno;
use strata_types::{Entry, EntryKind, RelPath, Timestamp};

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

/// Refuses marker entries that cannot be stored as they are. Whiteouts and opaque markers
/// are "an empty file" (OCI image spec); hardlinks are accepted too because AUFS-era Docker
/// wrote them so (every AUFS whiteout is a hardlink of one inode, and its exporter wrote all
/// but the first as hardlinks; containerd and containers/storage read them by name). Other
/// types are content to some tools (umoci) and whiteouts to others: refused. No marker may
/// carry data: nothing is created to keep it in, so its tar-split record would name bytes
/// no file holds and the layer could not be exported again. AUFS metadata that is skipped
/// may be of any type (`.wh..wh.plnk/` is a directory) but carries no data either: its only
/// use was as hardlink targets, which strata refuses anyway (they are not entries).
pub(super) fn check_marker(entry: &Entry, name: &Name) -> Result<(), ApplyError> {
    let what = match name {
        Name::Whiteout(_) => "a whiteout",
        Name::Opaque(_) => "an opaque marker",
        Name::Skip | Name::Plain => "AUFS metadata",
    };
    if entry.size > 0 {
        return Err(ApplyError::MarkerData { entry: entry.path.clone(), what, size: entry.size });
    }
    if matches!(name, Name::Whiteout(_) | Name::Opaque(_)) {
        let reason = match entry.kind {
            EntryKind::File | EntryKind::Hardlink => return Ok(()),
            EntryKind::Dir => "it is a directory, not an empty regular file",
            EntryKind::Symlink => "it is a symlink, not an empty regular file",
            EntryKind::Fifo => "it is a fifo, not an empty regular file",
            EntryKind::CharDevice | EntryKind::BlockDevice => "it is a device, not an empty regular file",
        };
        return Err(ApplyError::BadWhiteout { entry: entry.path.clone(), reason });
    }
    Ok(())
}

/// A whiteout or opaque marker as it is reported: an empty regular file (what the spec says
/// markers are) with the entry's mode, owner and mtime. Its xattrs and a hardlink target
/// mean nothing and are applied nowhere.
pub(super) fn marker_entry(mut entry: Entry) -> Entry {
    entry.kind = EntryKind::File;
    entry.link_target = None;
    entry.xattrs.clear();
    entry
}

/// An overlay whiteout device that stands (so far), kept until the end of the layer in 28
/// bytes: the `.wh.` entry's metadata; its name follows from the target.
#[derive(Debug, Clone, Copy)]
pub(super) struct Standing {
    mode: u32,
    uid: u32,
    gid: u32,
    mtime: Timestamp,
}

impl Standing {
    fn of(entry: &Entry) -> Self {
        Standing { mode: entry.mode, uid: entry.uid, gid: entry.gid, mtime: entry.mtime }
    }

    /// The (normalized) `.wh.` entry that whited out `target`.
    pub(super) fn entry(self, target: &RelPath) -> Entry {
        let name = [&b".wh."[..], target.file_name().unwrap_or_default()].concat();
        let path = target.parent().unwrap_or_default().join(&name).expect("the name of an entry read from the layer");
        let mut entry = Entry::new(path, EntryKind::File);
        (entry.mode, entry.uid, entry.gid, entry.mtime) = (self.mode, self.uid, self.gid, self.mtime);
        entry
    }
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

    /// Overlay: makes `dir` (a directory of this layer) opaque, once; `marker` is reported
    /// for it at the end.
    pub(super) fn mark_opaque(&mut self, dir: &RelPath, marker: Entry) -> Result<(), ApplyError> {
        if self.opaque.contains_key(dir) {
            return Ok(());
        }
        let f =
            fsops::open_dir_rd(self.root.as_fd(), dir.as_bytes()).map_err(io_err(dir, "open for the opaque xattr"))?;
        fsops::set_xattr_fd(&f, self.opts.overlay_xattrs.opaque_name(), b"y")
            .map_err(io_err(dir, "set the opaque xattr"))?;
        self.opaque.insert(dir.clone(), marker);
        Ok(())
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

    /// `.wh.NAME` (`entry`, normalized) for `target`.
    pub(super) fn whiteout(&mut self, entry: Entry, target: RelPath) -> Result<(), ApplyError> {
        let parent_path = target.parent().unwrap_or_default();
        self.stats.whiteouts += 1;
        match self.opts.whiteouts {
            WhiteoutMode::Oci => {
                if let Some(parent) = self.existing_dir(&entry.path, &parent_path)? {
                    self.remove_lower(parent.as_fd(), &parent_path, &target)?;
                }
                self.observe(&entry.path, Applied::Whiteout { entry: &entry, target: &target })
            }
            // The whiteout only hides what the lowers have at `target`. If this layer has
            // an object there, that object hides it already, a directory by being opaque;
            // the path is then reported as the object (and opaque), never as a whiteout.
            WhiteoutMode::Overlay => match self.layer.get(&target) {
                Some(Origin::Entry(EntryKind::Dir) | Origin::Implicit) => self.mark_opaque(&target, entry),
                Some(Origin::Entry(_)) => Ok(()),
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
                    // Reported at the end, unless a later entry creates `target`.
                    self.whiteouts.insert(target, Standing::of(&entry));
                    Ok(())
                }
            },
        }
    }

    /// `.wh..wh..opq` (`entry`, normalized) in `dir`.
    pub(super) fn opaque(&mut self, entry: Entry, dir: RelPath) -> Result<(), ApplyError> {
        self.stats.opaque_dirs += 1;
        match self.opts.whiteouts {
            WhiteoutMode::Oci => {
                if let Some(fd) = self.existing_dir(&entry.path, &dir)? {
                    for child in fsops::list_dir(fd.as_fd()).map_err(io_err(&dir, "list"))? {
                        let child = dir.join(child.as_encoded_bytes()).expect("directory entries are valid names");
                        self.remove_lower(fd.as_fd(), &dir, &child)?;
                    }
                }
                self.observe(&entry.path, Applied::Opaque { entry: &entry, dir: &dir })
            }
            WhiteoutMode::Overlay => {
                self.parent_dir(&entry.path, &dir)?;
                self.mark_opaque(&dir, entry)
            }
        }
    }
}
