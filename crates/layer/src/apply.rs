//! Extraction of a layer tar stream into a directory that no entry can escape.
//!
//! [`apply`] reads a layer with [`TarReader`](crate::parse::TarReader) (so an optional [`TarOut`] tap sees the exact
//! stream: the store computes the DiffID and records tar-split while importing) and creates
//! every entry relative to the root directory's fd:
//!
//! - Parent directories are opened with `openat2(RESOLVE_BENEATH | RESOLVE_NO_SYMLINKS |
//!   RESOLVE_NO_MAGICLINKS | RESOLVE_NO_XDEV)`; objects are created with `mkdirat`,
//!   `openat(O_CREAT|O_EXCL|O_NOFOLLOW)`, `symlinkat`, `mknodat`, `linkat` (no follow) on one
//!   component; metadata with `fchown`/`fchmod`/`futimens` on fds or `fchownat`/`fchmodat`/
//!   `utimensat` with `AT_SYMLINK_NOFOLLOW`; xattrs of objects that are not opened (symlinks,
//!   devices, fifos) with `lsetxattr` on `/proc/self/fd/<parent fd>/<name>`.
//! - Names are [`strata_types::RelPath`]s: absolute names and `..` are parse errors.
//! - **An entry below a symlink is an error** ([`ApplyError::ThroughSymlink`]), whether the
//!   symlink comes from this layer or (OCI mode) from a lower one. containerd resolves such
//!   names inside the root instead; strata refuses them, so that every entry of a layer lives
//!   at its own path (tar-split regeneration and the overlay layer directory depend on it) and
//!   because no tar writer that walks a real tree produces them.
//! - A parent missing from the layer is created as a directory 0755, mtime 0, owned by the
//!   extracting user (0:0 as root) ([`Applied::ImplicitDir`]); in an overlay layer directory
//!   it hides the lower directory's metadata, as in every layer store. A parent that exists
//!   and is not a directory is an error.
//! - Duplicate entries (the same normalized path twice) are errors, directories included:
//!   GNU tar, Go's archive/tar and the rootfs tars we tested never repeat one.
//! - More than [`ApplyOptions::max_entries`] entries (default [`DEFAULT_MAX_ENTRIES`]) are
//!   an error: a path is kept per entry until the end of the layer (about 150 bytes).
//! - Hardlinks must name an earlier non-directory entry of the same layer.
//! - Whiteouts, see [`WhiteoutMode`]. `.wh.` names that are not a valid whiteout (`.wh.`,
//!   `.wh..`, `.wh...`, a `.wh.` component used as a directory) are errors; other
//!   `.wh..wh.` names (AUFS metadata such as `.wh..wh.plnk`) are skipped, as containerd and
//!   containers/storage do. A whiteout or opaque marker must be an empty regular file ("an
//!   empty file", the OCI image spec says) or a hardlink (AUFS-era Docker wrote whiteouts
//!   so); no marker, skipped AUFS metadata included, may carry data
//!   ([`ApplyError::MarkerData`]): nothing is created to keep it, so the layer could not be
//!   exported again from its tar-split. A marker's xattrs are not applied.
//! - **A layer may white out a path and create it too**, in either order: the OCI image spec
//!   says whiteouts "MUST only apply to resources in lower/parent layers" (the layer's own
//!   entries stay) and asks writers to put whiteouts before sibling entries (`.wh.opt`,
//!   then `opt/`). The path ends up as the layer's object, without what lower layers had
//!   there. OCI mode deletes only lower
//!   content; overlay mode writes the object and, if it is a directory, makes it opaque,
//!   and reports the object (and [`Applied::Opaque`]), never [`Applied::Whiteout`].
//! - xattrs in the `trusted.overlay.` / `user.overlay.` namespaces are errors (a redirect
//!   would point anywhere). `security.*` xattrs other than `security.capability` (SELinux
//!   labels, IMA/EVM) are not applied by default ([`SecurityXattrs`]); entries are reported
//!   with the xattrs that were applied, and the tar-split keeps the raw headers, so the
//!   layer still exports byte for byte. In overlay mode a `0/0` character device is an
//!   error (it would read as a whiteout); other devices follow [`DevicePolicy`].
//! - uid and gid 4294967295 (`(uid_t)-1`, "no change" to chown) are parse errors: no file
//!   can be given that owner, so the entry could never match its file.
//! - Ownership is set when [`ApplyOptions::chown`] (default: running as root); then xattrs
//!   (after chown, which clears `security.capability`), then the mode (after chown, which
//!   clears setuid/setgid), then atime = mtime with nanoseconds. Hardlink entries share their
//!   target's inode and set nothing.
//! - Directory modes and mtimes are set at the very end, deepest first; directories this
//!   layer did not name but changed (a child created or deleted) get their previous mtime back.
//!
//! Any error stops the extraction and leaves the directory half-written: callers extract into
//! a staging directory and throw it away on error.

mod engine;
mod fsops;
mod whiteout;

use std::fs::File;
use std::io::{self, Read};
use std::path::{Path, PathBuf};

use strata_types::{Entry, RelPath};

use crate::TarOut;
use crate::parse::{Limits, ParseError};

/// How whiteout entries (`.wh.NAME`, `.wh..wh..opq`) are applied.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WhiteoutMode {
    /// OCI semantics onto an existing tree (e.g. a copy of the lower layers): `.wh.NAME`
    /// deletes NAME recursively, `.wh..wh..opq` empties its directory. Both apply only to
    /// what came from below: entries this layer creates stay, whatever the order in the tar.
    Oci,
    /// The result is an overlayfs lower directory (a store layer directory; start empty):
    /// `.wh.NAME` becomes a `0/0` character device NAME, `.wh..wh..opq` becomes the xattr
    /// `<prefix>opaque=y` on its directory, nothing is deleted. A whiteout of a path this
    /// layer also creates (before or after the whiteout) leaves the layer's object there:
    /// a directory becomes opaque, a non-directory hides the lower one by itself. Markers
    /// are reported after the last entry, once per path, as they ended up: see [`Applied`].
    Overlay,
}

/// What to do with character and block device entries.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DevicePolicy {
    Allow,
    /// Fail with [`ApplyError::DeviceRejected`].
    Reject,
}

/// The xattr namespace overlayfs reads opaque markers from (the mount's `userxattr` option).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OverlayXattrs {
    /// `trusted.overlay.opaque` (needs CAP_SYS_ADMIN).
    Trusted,
    /// `user.overlay.opaque` (rootless overlay mounts with `userxattr`).
    User,
}

impl OverlayXattrs {
    pub fn opaque_name(self) -> &'static str {
        match self {
            OverlayXattrs::Trusted => "trusted.overlay.opaque",
            OverlayXattrs::User => "user.overlay.opaque",
        }
    }
}

/// Which `security.*` xattrs of a layer are applied. The namespace belongs to the host's
/// security modules; only file capabilities are image content.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SecurityXattrs {
    /// The default: `security.capability` is applied, every other `security.*` xattr is not:
    /// SELinux (and SMACK) labels come from the runtime and the host's policy, as in
    /// containers/storage, which ignores an image's `security.selinux`; `security.ima` and
    /// `security.evm` are appraised against the host's keys and policy, where an image's
    /// values can only deny access or claim a measurement the host did not make. Xattrs of
    /// other namespaces are not affected.
    CapabilityOnly,
    /// Every `security.*` xattr as the layer gives it (a trusted source, or a host where
    /// the image's labels are wanted).
    All,
}

impl SecurityXattrs {
    /// Whether xattr `name` of a layer entry is applied.
    pub fn applies(self, name: &str) -> bool {
        match self {
            SecurityXattrs::All => true,
            SecurityXattrs::CapabilityOnly => !name.starts_with("security.") || name == "security.capability",
        }
    }
}

/// Default of [`ApplyOptions::max_entries`]: far more than real layers have, and about
/// 0.6 GiB of extraction state at the ~150 bytes per entry measured for paths of ordinary
/// length (`tests/apply_limits.rs`; more for whiteouts, about 300).
pub const DEFAULT_MAX_ENTRIES: u64 = 4_000_000;

/// Options of [`apply`].
#[derive(Debug, Clone)]
pub struct ApplyOptions {
    pub whiteouts: WhiteoutMode,
    pub devices: DevicePolicy,
    /// Set numeric uid/gid from the layer. [`ApplyOptions::new`] sets it when running as root.
    pub chown: bool,
    /// Namespace of the opaque xattr written in [`WhiteoutMode::Overlay`].
    pub overlay_xattrs: OverlayXattrs,
    /// Which `security.*` xattrs are applied. Entries are reported with the xattrs that
    /// were applied; the tar-split keeps the raw headers, so the layer exports unchanged.
    pub security_xattrs: SecurityXattrs,
    /// Most tar entries (every header: files, directories, links, markers) one layer may
    /// have ([`ApplyError::TooManyEntries`]). `apply` keeps a path per entry until the end
    /// (duplicates, hardlink targets, what a whiteout may delete), so this bounds its memory.
    pub max_entries: u64,
    pub limits: Limits,
}

impl ApplyOptions {
    /// Devices allowed, chown when root, trusted overlay xattrs, only `security.capability`
    /// of the `security.*` xattrs, [`DEFAULT_MAX_ENTRIES`], default limits.
    pub fn new(whiteouts: WhiteoutMode) -> Self {
        ApplyOptions {
            whiteouts,
            devices: DevicePolicy::Allow,
            chown: nix::unistd::geteuid().is_root(),
            overlay_xattrs: OverlayXattrs::Trusted,
            security_xattrs: SecurityXattrs::CapabilityOnly,
            max_entries: DEFAULT_MAX_ENTRIES,
            limits: Limits::default(),
        }
    }
}

/// Writes the content of regular files. The store deduplicates here (reflinks from chunks
/// it already has); [`CopyContent`] just copies.
pub trait ContentWriter {
    /// What the writer reports per file (passed on in [`Applied::Entry`]).
    type Outcome;

    /// Fills `dst` (a new, empty file opened read-write, not yet chowned or chmodded) with
    /// the `entry.size` bytes of `data`, which must be read to its end (EOF). The file's
    /// metadata is set after this returns.
    fn write(&mut self, entry: &Entry, dst: &File, data: &mut dyn Read) -> io::Result<Self::Outcome>;
}

/// A [`ContentWriter`] that copies the data; its outcome is the number of bytes written.
#[derive(Debug, Default, Clone, Copy)]
pub struct CopyContent;

impl ContentWriter for CopyContent {
    type Outcome = u64;
    fn write(&mut self, _entry: &Entry, mut dst: &File, data: &mut dyn Read) -> io::Result<u64> {
        io::copy(data, &mut dst)
    }
}

/// What [`apply`] did, reported to the observer: entries as they are created, in stream
/// order; in [`WhiteoutMode::Overlay`] the markers after the last entry (a later entry may
/// still replace a whiteout), so that every path is reported once as what it ended up as:
/// at most one `Entry` (an `ImplicitDir` before it if the directory was needed earlier),
/// at most one `Opaque`, and a `Whiteout` only where the layer has no object.
///
/// Marker entries (`entry` of `Whiteout` and `Opaque`) are reported normalized, as the
/// empty regular files the spec says they are (kind file, no link target, no xattrs).
#[derive(Debug)]
pub enum Applied<'a, O> {
    /// A layer entry was created with this final metadata (for files, with what the content
    /// writer returned; xattrs as applied, see [`SecurityXattrs`]). Directory modes and
    /// mtimes are only set at the end of the layer.
    Entry { entry: &'a Entry, content: Option<O> },
    /// `.wh.NAME` (the whiteout entry itself is `entry`): `target` was deleted (OCI mode, as
    /// it happens; a no-op if it did not exist) or is a whiteout device (overlay, at the
    /// end; never for a path this layer also creates).
    Whiteout { entry: &'a Entry, target: &'a RelPath },
    /// `dir` was emptied of lower content (OCI, as it happens: `entry` is `.wh..wh..opq`)
    /// or is opaque (overlay, at the end, once per directory: `entry` is the
    /// `.wh..wh..opq` or the `.wh.NAME` of a directory this layer also creates).
    Opaque { entry: &'a Entry, dir: &'a RelPath },
    /// A parent directory the layer does not contain was created (0755, mtime 0).
    ImplicitDir { path: &'a RelPath },
    /// An AUFS metadata entry (`.wh..wh.*`, or below one) was skipped.
    Skipped { entry: &'a Entry },
}

/// Counts of what [`apply`] did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ApplyStats {
    /// Layer entries created (files, dirs, links, devices, fifos; the root entry included).
    pub entries: u64,
    pub files: u64,
    pub file_bytes: u64,
    /// `.wh.NAME` entries.
    pub whiteouts: u64,
    /// `.wh..wh..opq` entries.
    pub opaque_dirs: u64,
    pub implicit_dirs: u64,
    pub skipped: u64,
    /// Length of the tar stream (the tap received exactly this many bytes).
    pub stream_bytes: u64,
}

/// Why a layer could not be applied. `entry` is the entry's normalized path.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ApplyError {
    #[error(transparent)]
    Parse(#[from] ParseError),
    #[error("cannot open the extraction root {path}: {source}")]
    Root {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("layer entry {entry:?}: {op} failed: {source}")]
    Io {
        entry: RelPath,
        op: &'static str,
        #[source]
        source: io::Error,
    },
    #[error("layer entry {entry:?} lies below {symlink:?}, a symlink: layers never act through symlinks")]
    ThroughSymlink { entry: RelPath, symlink: RelPath },
    #[error("layer entry {entry:?}: {parent:?} exists and is not a directory")]
    NotADirectory { entry: RelPath, parent: RelPath },
    #[error("layer entry {entry:?} appears more than once in the layer")]
    Duplicate { entry: RelPath },
    #[error("layer entry {entry:?}: {reason}")]
    Conflict { entry: RelPath, reason: String },
    #[error("hardlink {entry:?} -> {target:?}: {reason}")]
    BadHardlink { entry: RelPath, target: String, reason: &'static str },
    #[error("layer entry {entry:?} is a device node, and devices are not allowed here")]
    DeviceRejected { entry: RelPath },
    #[error("layer entry {entry:?} is a 0/0 character device, which an overlay layer directory reads as a whiteout")]
    WhiteoutDevice { entry: RelPath },
    #[error("layer entry {entry:?} carries xattr {xattr:?}: overlayfs xattrs are never accepted from a layer")]
    OverlayXattr { entry: RelPath, xattr: String },
    #[error("layer entry {entry:?} is not a valid whiteout: {reason}")]
    BadWhiteout { entry: RelPath, reason: &'static str },
    #[error(
        "layer entry {entry:?} is {what} with {size} bytes of data: markers must be empty (nothing keeps their data, so the layer could not be exported again)"
    )]
    MarkerData { entry: RelPath, what: &'static str, size: u64 },
    #[error("layer entry {entry:?}: the layer has more than {limit} entries")]
    TooManyEntries { entry: RelPath, limit: u64 },
    #[error("layer entry {entry:?}: the content writer failed: {source}")]
    Content {
        entry: RelPath,
        #[source]
        source: io::Error,
    },
    #[error("layer entry {entry:?}: the content writer left {left} of {size} bytes unread")]
    ContentShort { entry: RelPath, left: u64, size: u64 },
    #[error("layer entry {entry:?}: the observer failed: {source}")]
    Observer {
        entry: RelPath,
        #[source]
        source: io::Error,
    },
}

/// Extracts the layer tar `layer` into the directory `root`; see the module docs.
///
/// `content` writes regular files' data; `tap` (optional) receives the exact stream;
/// `observer` is called for everything applied, in the order [`Applied`] describes (return
/// an error to stop).
pub fn apply<R: Read, W: ContentWriter>(
    root: &Path,
    layer: R,
    options: &ApplyOptions,
    content: &mut W,
    tap: Option<&mut dyn TarOut>,
    observer: &mut dyn FnMut(Applied<'_, W::Outcome>) -> io::Result<()>,
) -> Result<ApplyStats, ApplyError> {
    engine::run(root, layer, options, content, tap, observer)
}

/// Removes `path` and everything below it without following any symlink (a symlink is
/// removed, not its target). Directories without write permission are made writable first
/// when not running as root, so rootless stores can delete the read-only directories images
/// carry (`/root` is 0550 in some). A missing `path` is not an error.
pub fn remove_tree(path: &Path) -> io::Result<()> {
    let (Some(parent), Some(name)) = (path.parent(), path.file_name()) else {
        return Err(io::Error::new(io::ErrorKind::InvalidInput, format!("{}: not a removable path", path.display())));
    };
    let parent = if parent.as_os_str().is_empty() { Path::new(".") } else { parent };
    let dir = match File::open(parent) {
        Ok(d) => d,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(()),
        Err(e) => return Err(e),
    };
    fsops::remove_all(std::os::fd::AsFd::as_fd(&dir), name)
}

/// [`apply`] with [`CopyContent`], no tap and no observer.
pub fn apply_simple<R: Read>(root: &Path, layer: R, options: &ApplyOptions) -> Result<ApplyStats, ApplyError> {
    apply(root, layer, options, &mut CopyContent, None, &mut |_| Ok(()))
}
