//! Reading one object with `fstatat(AT_SYMLINK_NOFOLLOW)` relative to its directory's
//! descriptor (never `stat`: symlinks are objects, not paths to follow; see `tree.rs`) and its
//! extended attributes, separating overlayfs's private xattrs from the object's own.

use std::ffi::OsStr;
use std::io;
use std::os::fd::{AsFd, BorrowedFd};
use std::os::unix::ffi::OsStrExt;
use std::path::Path;

use nix::errno::Errno;
use nix::fcntl::AtFlags;
use nix::sys::stat::fstatat;
use strata_types::{Entry, EntryKind, RelPath, Timestamp, Xattrs};

use crate::DiffError;
use crate::changeset::InodeKey;
use crate::tree::{Tree, proc_path, sorted_names_at};

/// The two namespaces overlayfs keeps its private xattrs in (`userxattr` mounts use `user.`).
pub const OVERLAY_XATTR_PREFIXES: [&str; 2] = ["trusted.overlay.", "user.overlay."];

/// True for overlayfs's own xattrs, which never belong in a layer.
pub fn is_overlay_xattr(name: &str) -> bool {
    OVERLAY_XATTR_PREFIXES.iter().any(|p| name.starts_with(p))
}

/// overlayfs's private xattrs found on an object (from either namespace).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub(crate) struct OverlayAttrs {
    pub opaque: Option<Vec<u8>>,
    pub whiteout: bool,
    pub redirect: bool,
    pub metacopy: bool,
    pub origin: bool,
    pub nlink: bool,
    /// Seen in the `user.overlay.` namespace.
    pub user_ns: bool,
}

impl OverlayAttrs {
    /// `overlay.opaque=y`: the directory hides the lowers' contents. (`x` only marks a merge
    /// directory that contains xattr whiteouts: it is *not* opaque.)
    pub fn is_opaque(&self) -> bool {
        self.opaque.as_deref() == Some(b"y")
    }
}

/// One object as read from a tree.
#[derive(Clone, Debug)]
pub(crate) struct Inode {
    /// `None` for sockets (and unknown types): they have no place in a layer.
    pub entry: Option<Entry>,
    pub key: InodeKey,
    pub nlink: u64,
    pub rdev: u64,
    pub ovl: OverlayAttrs,
}

impl Inode {
    pub fn kind(&self) -> Option<EntryKind> {
        self.entry.as_ref().map(|e| e.kind)
    }

    pub fn is_dir(&self) -> bool {
        self.kind() == Some(EntryKind::Dir)
    }

    /// A whiteout as overlayfs understands it: a 0/0 character device, or a zero-size
    /// regular file with `overlay.whiteout` (the kernel honours those on lookup).
    pub fn is_whiteout(&self) -> bool {
        match self.kind() {
            Some(EntryKind::CharDevice) => self.rdev == 0,
            Some(EntryKind::File) => self.ovl.whiteout && self.entry.as_ref().is_some_and(|e| e.size == 0),
            _ => false,
        }
    }

    /// Hardlink identity for regular files with more than one link.
    pub fn hardlink_key(&self) -> Option<InodeKey> {
        (self.kind() == Some(EntryKind::File) && self.nlink > 1).then_some(self.key)
    }
}

pub(crate) fn io_err(path: &Path) -> impl FnOnce(io::Error) -> DiffError + '_ {
    move |source| DiffError::Io { path: path.to_path_buf(), source }
}

impl Tree {
    /// Reads the object `rel` of the tree (`lstat` and xattrs, never following a symlink).
    /// `Ok(None)` when it does not exist (or a component of its parent is not a directory).
    pub(crate) fn read_inode(&self, rel: &RelPath) -> Result<Option<Inode>, DiffError> {
        if rel.is_root() {
            let dir = self.open_dir(rel)?;
            return read_inode_at(dir.as_fd(), OsStr::new("."), rel, &self.display(rel));
        }
        let Some((dir, name)) = self.parent_of(rel)? else { return Ok(None) };
        read_inode_at(dir.as_fd(), &name, rel, &self.display(rel))
    }

    /// Sorted names of the children of the directory `rel` (byte order).
    pub(crate) fn sorted_names(&self, rel: &RelPath) -> Result<Vec<Vec<u8>>, DiffError> {
        let dir = self.open_dir(rel)?;
        sorted_names_at(dir.as_fd()).map_err(io_err(&self.display(rel)))
    }
}

/// Reads the object `name` of the directory `dir` (which is `rel`'s parent; `display` names
/// it in errors). `Ok(None)` when it does not exist.
pub(crate) fn read_inode_at(
    dir: BorrowedFd<'_>,
    name: &OsStr,
    rel: &RelPath,
    display: &Path,
) -> Result<Option<Inode>, DiffError> {
    let st = match fstatat(dir, name, AtFlags::AT_SYMLINK_NOFOLLOW) {
        Ok(st) => st,
        Err(Errno::ENOENT | Errno::ENOTDIR) => return Ok(None),
        Err(e) => return Err(io_err(display)(e.into())),
    };
    let st_mode = st.st_mode;
    let kind = EntryKind::from_mode(st_mode);
    let mut ovl = OverlayAttrs::default();
    let xattrs = read_xattrs(&proc_path(dir, name), display, &mut ovl)?;
    let entry = match kind {
        None => None,
        Some(kind) => {
            let mut e = Entry::new(rel.clone(), kind);
            e.mode = st_mode & 0o7777;
            e.uid = st.st_uid;
            e.gid = st.st_gid;
            e.mtime = Timestamp::new(st.st_mtime, st.st_mtime_nsec as u32);
            e.xattrs = xattrs;
            match kind {
                EntryKind::File => e.size = st.st_size as u64,
                EntryKind::Symlink => {
                    let target = nix::fcntl::readlinkat(dir, name).map_err(|e| io_err(display)(e.into()))?;
                    e.link_target = Some(target.as_bytes().to_vec());
                }
                EntryKind::CharDevice | EntryKind::BlockDevice => {
                    e.dev_major = nix::sys::stat::major(st.st_rdev) as u32;
                    e.dev_minor = nix::sys::stat::minor(st.st_rdev) as u32;
                }
                _ => {}
            }
            Some(e)
        }
    };
    Ok(Some(Inode {
        entry,
        key: InodeKey { dev: st.st_dev, ino: st.st_ino },
        nlink: st.st_nlink,
        rdev: st.st_rdev,
        ovl,
    }))
}

/// The object's own xattrs (sorted); overlayfs's private ones go to `ovl` instead. `at` is
/// a `/proc/self/fd` path (see [`proc_path`]); `display` names the object in errors.
fn read_xattrs(at: &Path, display: &Path, ovl: &mut OverlayAttrs) -> Result<Xattrs, DiffError> {
    let mut out = Xattrs::new();
    let names = match xattr::list(at) {
        Ok(names) => names,
        // Filesystems without xattr support (or the object vanished between calls).
        Err(e) if matches!(e.raw_os_error(), Some(libc::ENOTSUP) | Some(libc::ENOENT)) => return Ok(out),
        Err(e) => return Err(io_err(display)(e)),
    };
    for name in names {
        let Some(name_str) = name.to_str() else {
            return Err(DiffError::XattrName {
                path: display.to_path_buf(),
                name: String::from_utf8_lossy(name.as_bytes()).into_owned(),
            });
        };
        let value = match xattr::get(at, &name) {
            Ok(Some(v)) => v,
            Ok(None) => continue,
            Err(e) if matches!(e.raw_os_error(), Some(libc::ENODATA) | Some(libc::ENOENT)) => continue,
            Err(e) => return Err(io_err(display)(e)),
        };
        if let Some(prefix) = OVERLAY_XATTR_PREFIXES.iter().find(|p| name_str.starts_with(*p)) {
            ovl.user_ns |= prefix.starts_with("user.");
            match &name_str[prefix.len()..] {
                "opaque" => ovl.opaque = Some(value),
                "whiteout" => ovl.whiteout = true,
                "redirect" => ovl.redirect = true,
                "metacopy" => ovl.metacopy = true,
                "origin" => ovl.origin = true,
                "nlink" => ovl.nlink = true,
                _ => {}
            }
            continue;
        }
        if name_str.contains('=') || name_str.is_empty() {
            return Err(DiffError::XattrName { path: display.to_path_buf(), name: name_str.to_owned() });
        }
        out.insert(name_str.to_owned(), value);
    }
    Ok(out)
}

/// True for names that are OCI whiteout markers, which cannot be represented in a layer.
pub(crate) fn is_oci_whiteout_name(name: &[u8]) -> bool {
    name.starts_with(b".wh.")
}
