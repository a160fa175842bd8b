//! The extraction state machine behind [`super::apply`].

use std::collections::{BTreeMap, HashSet};
use std::io::{self, Read};
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::path::Path;
use std::rc::Rc;

use nix::errno::Errno;
use nix::fcntl::{AtFlags, OFlag};
use nix::sys::stat::{Mode, SFlag};
use strata_types::{Entry, EntryKind, RelPath, Timestamp};

use super::fsops::{self, leaf, os};
use super::whiteout::{Name, Standing, check_marker, classify, marker_entry};
use super::{Applied, ApplyError, ApplyOptions, ApplyStats, ContentWriter, DevicePolicy, WhiteoutMode};
use crate::TarOut;
use crate::parse::{Discard, TarReader};

/// Who put an object at a path during this extraction.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Origin {
    /// A layer entry of this kind.
    Entry(EntryKind),
    /// A missing parent directory created for a layer entry.
    Implicit,
}

/// What a directory's mode and mtime become at the end.
#[derive(Debug, Clone, Copy)]
pub(super) enum DirFinal {
    Entry {
        mode: u32,
        mtime: Timestamp,
    },
    Implicit,
    /// Not named by the layer, but its contents changed: put its mtime back.
    Restore(Timestamp),
}

pub(super) type Observer<'o, O> = &'o mut dyn FnMut(Applied<'_, O>) -> io::Result<()>;

/// Memory: per entry that creates something, one path and a 2-byte value in `layer`
/// (duplicate names are found there too, so no other set of every name is kept);
/// directories also have a `dirs` slot; markers their name in `markers`, and in overlay
/// mode their target (plus 28 bytes) or opaque directory (plus the entry) until the end.
/// Measured by `tests/apply_limits.rs`; [`ApplyOptions::max_entries`] bounds all of it.
pub(super) struct Applier<'o, O> {
    pub(super) root: OwnedFd,
    pub(super) opts: &'o ApplyOptions,
    pub(super) observer: Observer<'o, O>,
    /// Tar entries read so far (every header, markers included).
    pub(super) headers: u64,
    /// Names of the marker entries seen (`.wh.*`, AUFS metadata): duplicates are errors.
    /// Entries that create something are found again in `layer`.
    pub(super) markers: HashSet<RelPath>,
    /// Every object this extraction created, in tree order (subtrees are contiguous ranges).
    pub(super) layer: BTreeMap<RelPath, Origin>,
    pub(super) dirs: BTreeMap<RelPath, DirFinal>,
    /// Overlay mode: whiteout devices standing, by target, with the (normalized) `.wh.`
    /// entry. Reported after the last entry, because a later entry of the layer may still
    /// create the path (then the whiteout is gone, and the path is the entry's).
    pub(super) whiteouts: BTreeMap<RelPath, Standing>,
    /// Overlay mode: directories made opaque, with the marker entry that did it (an opaque
    /// marker, or a whiteout of a directory this layer creates). Reported once each, at the end.
    pub(super) opaque: BTreeMap<RelPath, Entry>,
    /// The last parent directory opened.
    pub(super) cache: Option<(RelPath, Rc<OwnedFd>)>,
    pub(super) stats: ApplyStats,
}

pub(super) fn io_err<E: Into<io::Error>>(entry: &RelPath, op: &'static str) -> impl FnOnce(E) -> ApplyError {
    move |e| ApplyError::Io { entry: entry.clone(), op, source: e.into() }
}

pub(super) fn run<R: Read, W: ContentWriter>(
    root: &Path,
    layer: R,
    opts: &ApplyOptions,
    content: &mut W,
    tap: Option<&mut dyn TarOut>,
    observer: Observer<'_, W::Outcome>,
) -> Result<ApplyStats, ApplyError> {
    let root_fd = nix::fcntl::open(root, OFlag::O_PATH | OFlag::O_DIRECTORY | OFlag::O_CLOEXEC, Mode::empty())
        .map_err(|e| ApplyError::Root { path: root.to_owned(), source: e.into() })?;
    let mut discard = Discard;
    let tap: &mut dyn TarOut = match tap {
        Some(t) => t,
        None => &mut discard,
    };
    let mut reader = TarReader::with_limits(layer, tap, opts.limits);
    let mut a = Applier {
        root: root_fd,
        opts,
        observer,
        headers: 0,
        markers: HashSet::new(),
        layer: BTreeMap::new(),
        dirs: BTreeMap::new(),
        whiteouts: BTreeMap::new(),
        opaque: BTreeMap::new(),
        cache: None,
        stats: ApplyStats::default(),
    };
    while let Some(h) = reader.next_header()? {
        a.entry(h.entry, &mut reader, content)?;
    }
    a.finish()?;
    a.report_markers()?;
    a.stats.stream_bytes = reader.offset();
    Ok(a.stats)
}

pub(super) fn is_overlay_xattr(name: &str) -> bool {
    name.starts_with("trusted.overlay.") || name.starts_with("user.overlay.")
}

impl<O> Applier<'_, O> {
    pub(super) fn observe(&mut self, entry: &RelPath, what: Applied<'_, O>) -> Result<(), ApplyError> {
        (self.observer)(what).map_err(|source| ApplyError::Observer { entry: entry.clone(), source })
    }

    fn entry<R: Read, T: TarOut, W: ContentWriter<Outcome = O>>(
        &mut self,
        entry: Entry,
        reader: &mut TarReader<R, T>,
        content: &mut W,
    ) -> Result<(), ApplyError> {
        let path = entry.path.clone();
        self.headers += 1;
        if self.headers > self.opts.max_entries {
            return Err(ApplyError::TooManyEntries { entry: path, limit: self.opts.max_entries });
        }
        if let Some(x) = entry.xattrs.keys().find(|k| is_overlay_xattr(k)) {
            return Err(ApplyError::OverlayXattr { entry: path, xattr: x.clone() });
        }
        let name = classify(&path)?;
        if !matches!(name, Name::Plain) {
            if !self.markers.insert(path.clone()) {
                return Err(ApplyError::Duplicate { entry: path });
            }
            check_marker(&entry, &name)?;
        }
        match name {
            Name::Plain => {
                let mut entry = entry;
                // Dropped xattrs stay in the tar-split (raw headers): the layer exports unchanged.
                entry.xattrs.retain(|k, _| self.opts.security_xattrs.applies(k));
                self.create(entry, reader, content)
            }
            Name::Skip => {
                self.stats.skipped += 1;
                self.observe(&path, Applied::Skipped { entry: &entry })
            }
            Name::Opaque(dir) => self.opaque(marker_entry(entry), dir),
            Name::Whiteout(target) => self.whiteout(marker_entry(entry), target),
        }
    }

    /// Overlay mode: the markers that survived the layer, once per path, opaque directories
    /// first; each set in tree order.
    fn report_markers(&mut self) -> Result<(), ApplyError> {
        let opaque = std::mem::take(&mut self.opaque);
        for (dir, entry) in &opaque {
            self.observe(&entry.path, Applied::Opaque { entry, dir })?;
        }
        let whiteouts = std::mem::take(&mut self.whiteouts);
        for (target, standing) in &whiteouts {
            let entry = standing.entry(target);
            self.observe(&entry.path, Applied::Whiteout { entry: &entry, target })?;
        }
        Ok(())
    }

    /// Records `dir`'s mtime before this extraction first changes its contents.
    pub(super) fn touch(&mut self, dir: &RelPath, fd: BorrowedFd<'_>) -> Result<(), ApplyError> {
        if !self.dirs.contains_key(dir) {
            let st = nix::sys::stat::fstat(fd).map_err(io_err(dir, "stat"))?;
            self.dirs.insert(dir.clone(), DirFinal::Restore(fsops::mtime_of(&st)));
        }
        Ok(())
    }

    pub(super) fn has_layer_at_or_below(&self, p: &RelPath) -> bool {
        self.layer.range(p.clone()..).next().is_some_and(|(k, _)| k.starts_with(p))
    }

    /// Drops bookkeeping of a removed subtree.
    pub(super) fn forget(&mut self, p: &RelPath) {
        let gone: Vec<RelPath> =
            self.dirs.range(p.clone()..).take_while(|(k, _)| k.starts_with(p)).map(|(k, _)| k.clone()).collect();
        for k in gone {
            self.dirs.remove(&k);
        }
        self.cache = None;
    }

    /// The parent directory of `entry` (an O_PATH fd), creating missing ancestors.
    pub(super) fn parent_dir(&mut self, entry: &RelPath, parent: &RelPath) -> Result<Rc<OwnedFd>, ApplyError> {
        if let Some((p, fd)) = &self.cache
            && p == parent
        {
            return Ok(fd.clone());
        }
        let fd = match fsops::open_dir_path(self.root.as_fd(), parent.as_bytes()) {
            Ok(fd) => fd,
            Err(_) => self.make_parents(entry, parent)?,
        };
        let fd = Rc::new(fd);
        self.cache = Some((parent.clone(), fd.clone()));
        Ok(fd)
    }

    /// Walks `parent` one component at a time, creating what is missing; symlinks and
    /// non-directories on the way are errors.
    fn make_parents(&mut self, entry: &RelPath, parent: &RelPath) -> Result<OwnedFd, ApplyError> {
        let mut fd = fsops::open_dir_path(self.root.as_fd(), b"").map_err(io_err(entry, "open the root"))?;
        let mut prefix = RelPath::root();
        for comp in parent.components() {
            let next = prefix.join(comp).expect("components of a RelPath are valid");
            fd = match fsops::open_dir_path(fd.as_fd(), comp) {
                Ok(child) => child,
                Err(Errno::ENOENT) => self.make_implicit(fd.as_fd(), &prefix, &next)?,
                Err(Errno::ELOOP | Errno::ENOTDIR) => {
                    let st = fsops::lstat_at(fd.as_fd(), os(comp)).map_err(io_err(entry, "lstat a parent"))?;
                    if st.as_ref().is_some_and(fsops::is_symlink) {
                        return Err(ApplyError::ThroughSymlink { entry: entry.clone(), symlink: next });
                    }
                    let Some(whiteout) = self.whiteouts.remove(&next) else {
                        return Err(ApplyError::NotADirectory { entry: entry.clone(), parent: next });
                    };
                    // Overlay: a directory whited out earlier in this layer is recreated,
                    // opaque, since everything below it in the lowers is gone.
                    self.touch(&prefix, fd.as_fd())?;
                    nix::unistd::unlinkat(fd.as_fd(), os(comp), nix::unistd::UnlinkatFlags::NoRemoveDir)
                        .map_err(io_err(entry, "remove a whiteout device"))?;
                    let d = self.make_implicit(fd.as_fd(), &prefix, &next)?;
                    self.mark_opaque(&next, whiteout.entry(&next))?;
                    d
                }
                Err(e) => return Err(io_err(entry, "open a parent directory")(e)),
            };
            prefix = next;
        }
        Ok(fd)
    }

    pub(super) fn make_implicit(
        &mut self,
        parent: BorrowedFd<'_>,
        parent_path: &RelPath,
        path: &RelPath,
    ) -> Result<OwnedFd, ApplyError> {
        self.touch(parent_path, parent)?;
        nix::sys::stat::mkdirat(parent, leaf(path), Mode::from_bits_truncate(0o755))
            .map_err(io_err(path, "create a parent directory"))?;
        self.layer.insert(path.clone(), Origin::Implicit);
        self.dirs.insert(path.clone(), DirFinal::Implicit);
        self.stats.implicit_dirs += 1;
        self.observe(path, Applied::ImplicitDir { path })?;
        fsops::open_dir_path(parent, leaf(path).as_encoded_bytes()).map_err(io_err(path, "open a parent directory"))
    }

    fn create<R: Read, T: TarOut, W: ContentWriter<Outcome = O>>(
        &mut self,
        entry: Entry,
        reader: &mut TarReader<R, T>,
        content: &mut W,
    ) -> Result<(), ApplyError> {
        let path = &entry.path;
        let kind = entry.kind;
        if matches!(kind, EntryKind::CharDevice | EntryKind::BlockDevice) {
            if self.opts.whiteouts == WhiteoutMode::Overlay
                && kind == EntryKind::CharDevice
                && (entry.dev_major, entry.dev_minor) == (0, 0)
            {
                return Err(ApplyError::WhiteoutDevice { entry: path.clone() });
            }
            if self.opts.devices == DevicePolicy::Reject {
                return Err(ApplyError::DeviceRejected { entry: path.clone() });
            }
        }
        if path.is_root() {
            return self.root_entry(&entry);
        }
        let parent_path = path.parent().unwrap_or_default();
        let parent = self.parent_dir(path, &parent_path)?;
        let pfd = parent.as_fd();
        let name = leaf(path);

        // Overlay: a whiteout device of this layer gives way to the entry; it only hid lower
        // content, which the entry hides too (a directory by being opaque).
        let whiteout = self.whiteouts.remove(path);
        if whiteout.is_some() {
            self.touch(&parent_path, pfd)?;
            nix::unistd::unlinkat(pfd, name, nix::unistd::UnlinkatFlags::NoRemoveDir)
                .map_err(io_err(path, "remove a whiteout device"))?;
        }
        // What is already there: a lower object (OCI), an implicit parent.
        let existing = fsops::lstat_at(pfd, name).map_err(io_err(path, "lstat"))?;
        let mut reuse_dir = false;
        match (self.layer.get(path).copied(), existing) {
            (Some(Origin::Entry(_)), _) => return Err(ApplyError::Duplicate { entry: path.clone() }),
            (Some(Origin::Implicit), _) if kind == EntryKind::Dir => reuse_dir = true,
            (Some(Origin::Implicit), _) => {
                return Err(ApplyError::Conflict {
                    entry: path.clone(),
                    reason: "it replaces a directory that holds earlier entries of this layer".into(),
                });
            }
            (None, Some(st)) if kind == EntryKind::Dir && fsops::is_dir(&st) => reuse_dir = true,
            (None, Some(_)) => {
                if self.has_layer_at_or_below(path) {
                    return Err(ApplyError::Conflict {
                        entry: path.clone(),
                        reason: "it replaces a directory that holds earlier entries of this layer".into(),
                    });
                }
                self.touch(&parent_path, pfd)?;
                fsops::remove_all(pfd, name).map_err(io_err(path, "remove the existing object"))?;
                self.forget(path);
            }
            (None, None) => {}
        }
        if !reuse_dir {
            self.touch(&parent_path, pfd)?;
        }

        let mut outcome = None;
        match kind {
            EntryKind::Dir => {
                self.make_dir(&entry, pfd, reuse_dir)?;
                if let Some(whiteout) = whiteout {
                    self.mark_opaque(path, whiteout.entry(path))?;
                }
            }
            EntryKind::File => {
                let file = fsops::create_file(pfd, name).map_err(io_err(path, "create"))?;
                let written = content.write(&entry, &file, &mut reader.payload()).map_err(|source| {
                    match reader.take_error() {
                        Some(e) => ApplyError::Parse(e),
                        None => ApplyError::Content { entry: path.clone(), source },
                    }
                })?;
                let left = reader.payload_remaining();
                if left > 0 {
                    return Err(ApplyError::ContentShort { entry: path.clone(), left, size: entry.size });
                }
                outcome = Some(written);
                let fd = file.as_fd();
                if self.opts.chown {
                    fsops::chown_fd(fd, entry.uid, entry.gid).map_err(io_err(path, "chown"))?;
                }
                for (k, v) in &entry.xattrs {
                    fsops::set_xattr_fd(&file, k, v).map_err(io_err(path, "set an xattr"))?;
                }
                fsops::chmod_fd(fd, entry.mode).map_err(io_err(path, "chmod"))?;
                fsops::set_times_fd(fd, entry.mtime).map_err(io_err(path, "set times"))?;
                self.stats.files += 1;
                self.stats.file_bytes += entry.size;
            }
            EntryKind::Hardlink => self.make_hardlink(&entry, pfd)?,
            EntryKind::Symlink | EntryKind::CharDevice | EntryKind::BlockDevice | EntryKind::Fifo => {
                match kind {
                    EntryKind::Symlink => {
                        let target = entry.link_target.as_deref().unwrap_or_default();
                        nix::unistd::symlinkat(os(target), pfd, name)
                    }
                    EntryKind::Fifo => fsops::make_node(pfd, name, SFlag::S_IFIFO, 0, 0),
                    EntryKind::CharDevice => {
                        fsops::make_node(pfd, name, SFlag::S_IFCHR, entry.dev_major, entry.dev_minor)
                    }
                    _ => fsops::make_node(pfd, name, SFlag::S_IFBLK, entry.dev_major, entry.dev_minor),
                }
                .map_err(io_err(path, "create"))?;
                if self.opts.chown {
                    fsops::chown_at(pfd, name, entry.uid, entry.gid).map_err(io_err(path, "chown"))?;
                }
                for (k, v) in &entry.xattrs {
                    fsops::set_xattr_at(pfd, name, k, v).map_err(io_err(path, "set an xattr"))?;
                }
                if kind != EntryKind::Symlink {
                    fsops::chmod_at(pfd, name, entry.mode).map_err(io_err(path, "chmod"))?;
                }
                fsops::set_times_at(pfd, name, entry.mtime).map_err(io_err(path, "set times"))?;
            }
        }
        self.layer.insert(path.clone(), Origin::Entry(kind));
        self.stats.entries += 1;
        self.observe(path, Applied::Entry { entry: &entry, content: outcome })
    }

    fn make_dir(&mut self, entry: &Entry, parent: BorrowedFd<'_>, reuse: bool) -> Result<(), ApplyError> {
        let path = &entry.path;
        let name = leaf(path);
        if !reuse {
            nix::sys::stat::mkdirat(parent, name, Mode::from_bits_truncate(0o700)).map_err(io_err(path, "mkdir"))?;
        }
        let dir = fsops::open_beneath(parent, name.as_encoded_bytes(), OFlag::O_RDONLY | OFlag::O_DIRECTORY)
            .map(std::fs::File::from)
            .map_err(io_err(path, "open"))?;
        self.dir_metadata(entry, &dir, reuse)
    }

    /// Owner and xattrs now; mode and mtime at the end.
    fn dir_metadata(&mut self, entry: &Entry, dir: &std::fs::File, existing: bool) -> Result<(), ApplyError> {
        let path = &entry.path;
        if self.opts.chown {
            fsops::chown_fd(dir.as_fd(), entry.uid, entry.gid).map_err(io_err(path, "chown"))?;
        }
        if existing {
            // What the layer may not set (overlay markers, host security labels) stays as is.
            let policy = self.opts.security_xattrs;
            fsops::sync_xattrs_fd(dir, &entry.xattrs, |k| is_overlay_xattr(k) || !policy.applies(k))
                .map_err(io_err(path, "set xattrs"))?;
        } else {
            for (k, v) in &entry.xattrs {
                fsops::set_xattr_fd(dir, k, v).map_err(io_err(path, "set an xattr"))?;
            }
        }
        self.dirs.insert(path.clone(), DirFinal::Entry { mode: entry.mode, mtime: entry.mtime });
        Ok(())
    }

    fn root_entry(&mut self, entry: &Entry) -> Result<(), ApplyError> {
        if entry.kind != EntryKind::Dir {
            return Err(ApplyError::Conflict {
                entry: entry.path.clone(),
                reason: "the root entry must be a directory".into(),
            });
        }
        if self.layer.contains_key(&entry.path) {
            return Err(ApplyError::Duplicate { entry: entry.path.clone() });
        }
        let dir = fsops::open_dir_rd(self.root.as_fd(), b"").map_err(io_err(&entry.path, "open the root"))?;
        self.dir_metadata(entry, &dir, true)?;
        self.layer.insert(RelPath::root(), Origin::Entry(EntryKind::Dir));
        self.stats.entries += 1;
        self.observe(&entry.path, Applied::Entry { entry, content: None })
    }

    fn make_hardlink(&mut self, entry: &Entry, parent: BorrowedFd<'_>) -> Result<(), ApplyError> {
        let path = &entry.path;
        let raw = entry.link_target.as_deref().unwrap_or_default();
        let bad = |reason| ApplyError::BadHardlink {
            entry: path.clone(),
            target: String::from_utf8_lossy(raw).into_owned(),
            reason,
        };
        let target = RelPath::new(raw).map_err(|_| bad("the target is not a valid name"))?;
        match self.layer.get(&target) {
            Some(Origin::Entry(EntryKind::Dir)) => return Err(bad("the target is a directory")),
            Some(Origin::Entry(_)) => {}
            _ => return Err(bad("the target is not an earlier entry of this layer")),
        }
        let tparent_path = target.parent().unwrap_or_default();
        let tparent = self.existing_dir(path, &tparent_path)?.ok_or_else(|| bad("the target's directory is gone"))?;
        nix::unistd::linkat(tparent.as_fd(), leaf(&target), parent, leaf(path), AtFlags::empty())
            .map_err(io_err(path, "create a hardlink"))
    }

    /// Sets the final mode and mtime of every directory, deepest first.
    fn finish(&mut self) -> Result<(), ApplyError> {
        for (path, fin) in self.dirs.iter().rev() {
            let dir = fsops::open_dir_rd(self.root.as_fd(), path.as_bytes()).map_err(io_err(path, "open"))?;
            let (mode, mtime) = match *fin {
                DirFinal::Entry { mode, mtime } => (Some(mode), mtime),
                DirFinal::Implicit => (Some(0o755), Timestamp::default()),
                DirFinal::Restore(t) => (None, t),
            };
            if let Some(mode) = mode {
                fsops::chmod_fd(dir.as_fd(), mode).map_err(io_err(path, "chmod"))?;
            }
            fsops::set_times_fd(dir.as_fd(), mtime).map_err(io_err(path, "set times"))?;
        }
        Ok(())
    }
}
