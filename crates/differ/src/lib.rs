//! Changesets between file trees, and OCI layer tars written from them.
//!
//! - [`diff_overlay`]: one walk of an overlayfs upperdir, the lowers consulted only for the
//!   paths found there (O(changes), not O(rootfs)). When the upperdir alone cannot prove the
//!   result (`overlay.redirect`, `overlay.metacopy`, index=on hardlinks), it falls back to a
//!   double walk of the merged view against the lowers and says why in the result.
//! - [`diff_trees`]: the double walk of two plain trees.
//! - [`overlay_dirs_from_mount`]: an overlay mount's upper and lower dirs, from mountinfo.
//! - [`write_layer`]: a [`Changeset`] as a deterministic PAX tar into a
//!   [`strata_layer::TarOut`], file data aligned to 4096 bytes for zero-copy sinks.
//!
//! Overlay rules applied (Documentation/filesystems/overlayfs.rst): whiteouts are 0/0
//! character devices or zero-size regular files with `overlay.whiteout`; a directory is
//! opaque when `overlay.opaque` is `y` (`x` only marks a directory that contains xattr
//! whiteouts and is not opaque); both the `trusted.` and `user.` namespaces are recognised,
//! and overlay's own xattrs are never copied into a change.
//!
//! Policies worth knowing:
//! - Objects are read beneath each tree's root descriptor (`openat2(RESOLVE_BENEATH |
//!   RESOLVE_NO_SYMLINKS)`, `fstatat(AT_SYMLINK_NOFOLLOW)`, `l*xattr` through
//!   `/proc/self/fd`): no symlink is ever followed, and a tree changing while it is read (a
//!   running container's upperdir) cannot lead the walk outside it. See [`Tree`].
//! - Names beginning with `.wh.` in an upperdir or target tree are an error
//!   ([`DiffError::WhiteoutName`]): a layer cannot carry them.
//! - Sockets are skipped; one that replaces a lower object becomes a deletion of it.
//! - A whiteout for a path no lower shows (absent, whited out or under an opaque directory in
//!   a higher lower) is dropped. Lowers may be store layer directories with whiteouts and
//!   opaque directories of their own.
//! - A type change (directory to file and back) is a `Modify` of the path without a
//!   whiteout: OCI extractors replace the old object. A directory recreated after `rm -r`
//!   is opaque in the single walk and a set of whiteouts in the double walk.
//! - Every change's parent directories are changes too (as `Modify` when they exist in the
//!   base), so a layer never relies on implicit directories. The root itself is not written.
//! - The double walk's equality rule is documented in `double.rs`: nanosecond mtimes are
//!   trusted, zero-nanosecond mtimes trigger a content comparison.

mod changeset;
mod double;
mod inode;
mod lowers;
mod mount;
mod mountinfo;
pub mod tar_header;
mod tree;
mod upper;
mod write;

use std::path::{Path, PathBuf};
use std::sync::Arc;

pub use changeset::{Change, ChangeKind, Changeset, DiffMethod, InodeKey};
pub use inode::{OVERLAY_XATTR_PREFIXES, is_overlay_xattr};
pub use mount::{MAX_MOUNT_DATA, TempOverlay, overlay_options};
pub use mountinfo::{OverlayDirs, find_overlay, parse_overlay_options, split_lowerdir, unescape_octal};
pub use tree::{Source, Tree};
pub use write::{WriteOptions, WriteStats, write_layer};

/// Everything that can go wrong while diffing or writing a layer.
#[derive(Debug, thiserror::Error)]
pub enum DiffError {
    #[error("{path}: {source}")]
    Io { path: PathBuf, source: std::io::Error },
    #[error("writing the layer stream: {0}")]
    Output(std::io::Error),
    #[error("{path}: names beginning with .wh. are OCI whiteout markers and cannot be stored in a layer")]
    WhiteoutName { path: PathBuf },
    #[error("{path}: extended attribute {name:?} cannot be written to a layer (not UTF-8, empty or contains '=')")]
    XattrName { path: PathBuf, name: String },
    #[error("{path} is not a directory")]
    NotADirectory { path: PathBuf },
    #[error("mountinfo: {reason}")]
    MountInfo { reason: String },
    #[error("{path} is not a mountpoint")]
    NotAMountpoint { path: PathBuf },
    #[error("{path} is a {fstype} mount, not overlay")]
    NotOverlay { path: PathBuf, fstype: String },
    #[error("mounting a private overlay ({options}) failed: {errno}")]
    Mount { options: String, errno: nix::Error },
    #[error("{layers} layers make overlay options of {bytes} bytes, over the kernel's {max}", max = mount::MAX_MOUNT_DATA)]
    MountOptionsTooLong { layers: usize, bytes: usize },
    #[error(transparent)]
    Path(#[from] strata_types::RelPathError),
    #[error("changeset has two entries named {path}")]
    DuplicatePath { path: String },
    #[error("changeset entry {path} has no entry for its parent directory {parent}")]
    MissingParent { path: String, parent: String },
    #[error("changeset entry {path} is a non-empty regular file without a source")]
    NoSource { path: String },
    #[error("{path} changed since it was diffed: expected a regular file of {expected} bytes, found {found}")]
    SourceChanged { path: PathBuf, expected: u64, found: u64 },
}

/// Diffs an overlay upperdir against its lowers (top-most first, as in `lowerdir=`).
///
/// The single walk is used whenever it can be proven correct. Otherwise the result is a
/// double walk of the merged view against the lowers composed with overlay semantics, with
/// `method == DoubleWalk` and the reason in `fallback_reason`. The merged view is `merged`
/// (a live mountpoint) or, when `None`, a private read-only overlay of `upper` over `lowers`
/// (`redirect_dir=follow,metacopy=on`, so the kernel resolves redirects and metacopy files),
/// which needs `CAP_SYS_ADMIN`.
///
/// The upperdir and the lowers are read beneath their roots without following any symlink
/// (see [`Tree`]): a container changing its upperdir meanwhile cannot make the walk read
/// anything outside them.
pub fn diff_overlay(upper: &Path, lowers: &[PathBuf], merged: Option<&Path>) -> Result<Changeset, DiffError> {
    let upper_tree = Tree::open(upper)?;
    let lower_trees = lowers.iter().map(|l| Tree::open(l)).collect::<Result<Vec<_>, _>>()?;
    let (walk, user_ns) = upper::walk_upper(&upper_tree, &lower_trees)?;
    match walk {
        upper::Walk::Done(mut changes) => {
            double::include_parents(&mut changes, &upper_tree)?;
            Ok(Changeset::new(DiffMethod::Upperdir, changes))
        }
        upper::Walk::Unprovable(reason) => double_walk_fallback(upper, lowers, merged, reason, user_ns),
    }
}

fn double_walk_fallback(
    upper: &Path,
    lowers: &[PathBuf],
    merged: Option<&Path>,
    reason: String,
    user_ns: bool,
) -> Result<Changeset, DiffError> {
    let mut opts = vec!["redirect_dir=follow", "metacopy=on"];
    if user_ns {
        opts.push("userxattr");
    }
    let mut mounts = Vec::new();
    let merged_path = match merged {
        Some(m) => m.to_path_buf(),
        None => {
            let mut layers = vec![upper.to_path_buf()];
            layers.extend_from_slice(lowers);
            let m = Arc::new(TempOverlay::mount(&layers, &opts)?);
            let p = m.path().to_path_buf();
            mounts.push(m);
            p
        }
    };
    let empty;
    let base_path = if lowers.is_empty() {
        empty = tempfile::tempdir().map_err(|source| DiffError::Io { path: std::env::temp_dir(), source })?;
        empty.path().to_path_buf()
    } else {
        let b = Arc::new(TempOverlay::mount(lowers, &opts)?);
        let p = b.path().to_path_buf();
        mounts.push(b);
        p
    };
    let changes = double::walk_trees(&Tree::open(&base_path)?, &Tree::open(&merged_path)?)?;
    let mut cs = Changeset::new(DiffMethod::DoubleWalk, changes);
    cs.fallback_reason = Some(reason);
    cs._mounts = mounts;
    Ok(cs)
}

/// Diffs two plain trees: the changes that turn `base` into `target`.
pub fn diff_trees(base: &Path, target: &Path) -> Result<Changeset, DiffError> {
    Ok(Changeset::new(DiffMethod::DoubleWalk, double::walk_trees(&Tree::open(base)?, &Tree::open(target)?)?))
}

/// The upper, lower and work directories of the overlay mounted at `mountpoint`, read from
/// `/proc/self/mountinfo`.
pub fn overlay_dirs_from_mount(mountpoint: &Path) -> Result<OverlayDirs, DiffError> {
    let canon = std::fs::canonicalize(mountpoint).map_err(inode::io_err(mountpoint))?;
    let info =
        std::fs::read_to_string("/proc/self/mountinfo").map_err(inode::io_err(Path::new("/proc/self/mountinfo")))?;
    find_overlay(&info, &canon)
}

/// [`diff_overlay`] for a live overlay mount: dirs from mountinfo, the mountpoint as the
/// merged view if a fallback is needed.
pub fn diff_mount(mountpoint: &Path) -> Result<Changeset, DiffError> {
    let dirs = overlay_dirs_from_mount(mountpoint)?;
    diff_overlay(&dirs.upper, &dirs.lowers, Some(mountpoint))
}
