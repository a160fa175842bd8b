//! Trees read without following any path the tree controls.
//!
//! A tree (an upperdir, a lower layer, a target tree, a merged view) may belong to a running
//! container that swaps a directory for a symlink to `/` while it is read. So its root is
//! opened once (the operator's path, trusted), and everything inside is reached from that
//! descriptor: directories with `openat2(RESOLVE_BENEATH | RESOLVE_NO_SYMLINKS |
//! RESOLVE_NO_MAGICLINKS)` (a symlink or `..` anywhere in the path is an error, never a way
//! out), objects with `fstatat(AT_SYMLINK_NOFOLLOW)`, `readlinkat` and `l*xattr` on
//! `/proc/self/fd/<dir fd>/<name>` relative to the directory's descriptor. A walk holds the
//! descriptor of the directory it reads, so a directory renamed or replaced mid-walk is read
//! as the inode it was, and nothing outside the tree is ever reached.

use std::ffi::{OsStr, OsString};
use std::fs::File;
use std::io;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::sync::{Arc, OnceLock};

use nix::errno::Errno;
use nix::fcntl::{OFlag, OpenHow, ResolveFlag, openat2};
use nix::sys::stat::Mode;
use strata_types::RelPath;

use crate::DiffError;
use crate::changeset::InodeKey;

const RESOLVE: ResolveFlag =
    ResolveFlag::RESOLVE_BENEATH.union(ResolveFlag::RESOLVE_NO_SYMLINKS).union(ResolveFlag::RESOLVE_NO_MAGICLINKS);

/// A directory tree whose contents are only ever reached beneath its root descriptor.
/// Cheap to clone (shared descriptor).
#[derive(Clone)]
pub struct Tree {
    inner: Arc<TreeInner>,
}

struct TreeInner {
    path: PathBuf,
    /// Opened at once ([`Tree::open`]) or on first use ([`Tree::lazy`]).
    fd: OnceLock<OwnedFd>,
}

impl std::fmt::Debug for Tree {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_tuple("Tree").field(&self.inner.path).finish()
    }
}

impl PartialEq for Tree {
    fn eq(&self, other: &Tree) -> bool {
        Arc::ptr_eq(&self.inner, &other.inner) || self.inner.path == other.inner.path
    }
}

impl Eq for Tree {}

fn open_root(path: &Path) -> io::Result<OwnedFd> {
    use std::os::unix::fs::OpenOptionsExt;
    File::options().read(true).custom_flags(libc::O_DIRECTORY | libc::O_CLOEXEC).open(path).map(OwnedFd::from)
}

impl Tree {
    /// Opens the tree at `path` now (an error when it is not a directory).
    pub fn open(path: &Path) -> Result<Tree, DiffError> {
        let fd = open_root(path).map_err(|e| match e.raw_os_error() {
            Some(libc::ENOTDIR) => DiffError::NotADirectory { path: path.to_path_buf() },
            _ => DiffError::Io { path: path.to_path_buf(), source: e },
        })?;
        let cell = OnceLock::new();
        let _ = cell.set(fd);
        Ok(Tree { inner: Arc::new(TreeInner { path: path.to_path_buf(), fd: cell }) })
    }

    /// A tree opened when first used (a store layer that a changeset may or may not read).
    pub fn lazy(path: impl Into<PathBuf>) -> Tree {
        Tree { inner: Arc::new(TreeInner { path: path.into(), fd: OnceLock::new() }) }
    }

    /// The path the tree was opened at (for messages).
    pub fn path(&self) -> &Path {
        &self.inner.path
    }

    /// `rel` under the tree's path, for messages only: never opened by that name.
    pub fn display(&self, rel: &RelPath) -> PathBuf {
        self.inner.path.join(rel.as_path())
    }

    fn root(&self) -> io::Result<BorrowedFd<'_>> {
        if let Some(fd) = self.inner.fd.get() {
            return Ok(fd.as_fd());
        }
        let fd = open_root(&self.inner.path)?;
        // Another thread may have won the race; either descriptor names the same directory.
        let _ = self.inner.fd.set(fd);
        Ok(self.inner.fd.get().expect("just set").as_fd())
    }

    /// Opens `rel` beneath the root with `flags` (`O_NOFOLLOW | O_CLOEXEC` added).
    fn open_beneath(&self, rel: &[u8], flags: OFlag) -> io::Result<OwnedFd> {
        let root = self.root()?;
        open_at_beneath(root, rel, flags)
    }

    /// A readable descriptor of the directory `rel`.
    pub(crate) fn open_dir(&self, rel: &RelPath) -> Result<OwnedFd, DiffError> {
        self.open_beneath(rel.as_bytes(), OFlag::O_RDONLY | OFlag::O_DIRECTORY)
            .map_err(|source| DiffError::Io { path: self.display(rel), source })
    }

    /// The directory holding `rel` and `rel`'s last component; `None` when a component of
    /// the parent is missing or not a directory (then `rel` does not exist either).
    pub(crate) fn parent_of(&self, rel: &RelPath) -> Result<Option<(OwnedFd, OsString)>, DiffError> {
        let parent = rel.parent().unwrap_or_default();
        let name = OsStr::from_bytes(rel.file_name().unwrap_or(b".")).to_owned();
        match self.open_beneath(parent.as_bytes(), OFlag::O_RDONLY | OFlag::O_DIRECTORY) {
            Ok(fd) => Ok(Some((fd, name))),
            Err(e) if matches!(e.raw_os_error(), Some(libc::ENOENT | libc::ENOTDIR)) => Ok(None),
            // A symlink where a directory should be: for this walk, the path does not exist
            // below it (overlayfs does not follow it either).
            Err(e) if e.raw_os_error() == Some(libc::ELOOP) => Ok(None),
            Err(source) => Err(DiffError::Io { path: self.display(&parent), source }),
        }
    }

    /// Opens the regular file `rel` for reading, beneath the root, without following a
    /// symlink anywhere in its path.
    pub fn open_file(&self, rel: &RelPath) -> io::Result<File> {
        self.open_beneath(rel.as_bytes(), OFlag::O_RDONLY).map(File::from)
    }
}

/// `openat2(dir, rel)` that can neither leave `dir` nor follow a symlink; `rel` empty is
/// `dir` itself.
pub(crate) fn open_at_beneath(dir: BorrowedFd<'_>, rel: &[u8], flags: OFlag) -> io::Result<OwnedFd> {
    let rel: &[u8] = if rel.is_empty() { b"." } else { rel };
    let how = OpenHow::new().flags(flags | OFlag::O_NOFOLLOW | OFlag::O_CLOEXEC).resolve(RESOLVE);
    loop {
        match openat2(dir, OsStr::from_bytes(rel), how) {
            Err(Errno::EINTR | Errno::EAGAIN) => continue,
            r => return r.map_err(io::Error::from),
        }
    }
}

/// The path of `name` in the directory `dir` through procfs, for `l*xattr` calls: the
/// directory part is the descriptor itself, only the last component is looked up (and not
/// followed).
pub(crate) fn proc_path(dir: BorrowedFd<'_>, name: &OsStr) -> PathBuf {
    let mut p = OsString::from(format!("/proc/self/fd/{}/", dir.as_raw_fd()));
    p.push(name);
    PathBuf::from(p)
}

/// Sorted names of the children of the directory `dir` (byte order).
pub(crate) fn sorted_names_at(dir: BorrowedFd<'_>) -> io::Result<Vec<Vec<u8>>> {
    let fd = nix::fcntl::openat(dir, ".", OFlag::O_RDONLY | OFlag::O_DIRECTORY | OFlag::O_CLOEXEC, Mode::empty())?;
    let mut d = nix::dir::Dir::from_fd(fd)?;
    let mut names = Vec::new();
    for e in d.iter() {
        let n = e?.file_name().to_bytes().to_vec();
        if n != b"." && n != b".." {
            names.push(n);
        }
    }
    names.sort();
    Ok(names)
}

/// Where a regular file's data is read when a layer is written: a file of a tree, reached
/// beneath its root, and (for trees that may change, like a running container's upperdir)
/// checked to still be the inode the differ saw.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Source {
    tree: Tree,
    rel: RelPath,
    inode: Option<InodeKey>,
}

impl Source {
    /// The file `rel` of `tree`; when `inode` is given, opening checks the file is still it.
    pub fn new(tree: Tree, rel: RelPath, inode: Option<InodeKey>) -> Source {
        Source { tree, rel, inode }
    }

    pub fn tree(&self) -> &Tree {
        &self.tree
    }

    pub fn rel(&self) -> &RelPath {
        &self.rel
    }

    /// The path, for messages only.
    pub fn display(&self) -> PathBuf {
        self.tree.display(&self.rel)
    }

    /// Opens the file for reading: beneath its tree, no symlink followed, a regular file, and
    /// the inode the differ saw (when it recorded one).
    pub fn open(&self) -> io::Result<File> {
        let f = self.tree.open_file(&self.rel)?;
        let md = f.metadata()?;
        if !md.is_file() {
            return Err(io::Error::new(io::ErrorKind::InvalidData, "is no longer a regular file"));
        }
        if let Some(k) = self.inode
            && (md.dev() != k.dev || md.ino() != k.ino)
        {
            return Err(io::Error::new(io::ErrorKind::InvalidData, "was replaced since it was diffed"));
        }
        Ok(f)
    }
}
