//! File system primitives relative to directory fds. Nothing here resolves a path through a
//! symlink: directories are opened with `openat2(RESOLVE_BENEATH | RESOLVE_NO_SYMLINKS)`,
//! everything else is a `*at` call on a single component with `AT_SYMLINK_NOFOLLOW` (or on
//! an object this extraction has just created and that cannot be a symlink).

use std::ffi::{OsStr, OsString};
use std::fs::File;
use std::io;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::path::PathBuf;

use nix::errno::Errno;
use nix::fcntl::{OFlag, OpenHow, ResolveFlag, openat2};
use nix::sys::stat::{FchmodatFlags, FileStat, Mode, SFlag, UtimensatFlags, fstatat, makedev, mknodat};
use nix::sys::time::TimeSpec;
use nix::unistd::{Gid, Uid, UnlinkatFlags, fchownat, unlinkat};
use strata_types::{RelPath, Timestamp};
use xattr::FileExt as _;

/// Resolution that can neither leave the root nor follow any symlink.
const RESOLVE: ResolveFlag = ResolveFlag::RESOLVE_BENEATH
    .union(ResolveFlag::RESOLVE_NO_SYMLINKS)
    .union(ResolveFlag::RESOLVE_NO_MAGICLINKS)
    .union(ResolveFlag::RESOLVE_NO_XDEV);

/// Opens `path` below `dir` (a directory fd). `flags` gets `O_NOFOLLOW | O_CLOEXEC`.
pub(super) fn open_beneath(dir: BorrowedFd<'_>, path: &[u8], flags: OFlag) -> nix::Result<OwnedFd> {
    let path: &[u8] = if path.is_empty() { b"." } else { path };
    let how = OpenHow::new().flags(flags | OFlag::O_NOFOLLOW | OFlag::O_CLOEXEC).resolve(RESOLVE);
    loop {
        match openat2(dir, OsStr::from_bytes(path), how) {
            Err(Errno::EINTR | Errno::EAGAIN) => continue,
            r => return r,
        }
    }
}

/// An `O_PATH` fd of the directory `path` below `dir`.
pub(super) fn open_dir_path(dir: BorrowedFd<'_>, path: &[u8]) -> nix::Result<OwnedFd> {
    open_beneath(dir, path, OFlag::O_PATH | OFlag::O_DIRECTORY)
}

/// A readable fd of the directory `path` below `dir` (for fchmod/futimens/xattrs/listing).
pub(super) fn open_dir_rd(dir: BorrowedFd<'_>, path: &[u8]) -> nix::Result<File> {
    open_beneath(dir, path, OFlag::O_RDONLY | OFlag::O_DIRECTORY).map(File::from)
}

pub(super) fn lstat_at(dir: BorrowedFd<'_>, name: &OsStr) -> nix::Result<Option<FileStat>> {
    match fstatat(dir, name, nix::fcntl::AtFlags::AT_SYMLINK_NOFOLLOW) {
        Ok(st) => Ok(Some(st)),
        Err(Errno::ENOENT) => Ok(None),
        Err(e) => Err(e),
    }
}

pub(super) fn is_dir(st: &FileStat) -> bool {
    st.st_mode & libc::S_IFMT == libc::S_IFDIR
}

pub(super) fn is_symlink(st: &FileStat) -> bool {
    st.st_mode & libc::S_IFMT == libc::S_IFLNK
}

pub(super) fn mtime_of(st: &FileStat) -> Timestamp {
    Timestamp::new(st.st_mtime, st.st_mtime_nsec as u32)
}

/// Creates a new regular file (never opens an existing one), read-write.
pub(super) fn create_file(dir: BorrowedFd<'_>, name: &OsStr) -> nix::Result<File> {
    let flags = OFlag::O_CREAT | OFlag::O_EXCL | OFlag::O_RDWR;
    nix::fcntl::openat(dir, name, flags | OFlag::O_NOFOLLOW | OFlag::O_CLOEXEC, Mode::from_bits_truncate(0o600))
        .map(File::from)
}

/// A device node or fifo with permissions 0600 (set the real mode afterwards).
pub(super) fn make_node(dir: BorrowedFd<'_>, name: &OsStr, kind: SFlag, major: u32, minor: u32) -> nix::Result<()> {
    mknodat(dir, name, kind, Mode::from_bits_truncate(0o600), makedev(major.into(), minor.into()))
}

/// An overlay whiteout: a 0/0 character device with mode 0000, as the kernel makes them.
pub(super) fn make_whiteout(dir: BorrowedFd<'_>, name: &OsStr) -> nix::Result<()> {
    mknodat(dir, name, SFlag::S_IFCHR, Mode::empty(), makedev(0, 0))
}

pub(super) fn chown_at(dir: BorrowedFd<'_>, name: &OsStr, uid: u32, gid: u32) -> nix::Result<()> {
    fchownat(dir, name, Some(Uid::from_raw(uid)), Some(Gid::from_raw(gid)), nix::fcntl::AtFlags::AT_SYMLINK_NOFOLLOW)
}

pub(super) fn chown_fd(fd: BorrowedFd<'_>, uid: u32, gid: u32) -> nix::Result<()> {
    nix::unistd::fchown(fd, Some(Uid::from_raw(uid)), Some(Gid::from_raw(gid)))
}

pub(super) fn chmod_fd(fd: BorrowedFd<'_>, mode: u32) -> nix::Result<()> {
    nix::sys::stat::fchmod(fd, Mode::from_bits_truncate(mode & 0o7777))
}

/// chmod of a device node or fifo without following a symlink (glibc uses fchmodat2 or an
/// O_PATH fd for `AT_SYMLINK_NOFOLLOW`).
pub(super) fn chmod_at(dir: BorrowedFd<'_>, name: &OsStr, mode: u32) -> nix::Result<()> {
    nix::sys::stat::fchmodat(dir, name, Mode::from_bits_truncate(mode & 0o7777), FchmodatFlags::NoFollowSymlink)
}

fn timespec(t: Timestamp) -> TimeSpec {
    TimeSpec::new(t.secs, i64::from(t.nanos))
}

/// Sets atime and mtime to `t`.
pub(super) fn set_times_fd(fd: BorrowedFd<'_>, t: Timestamp) -> nix::Result<()> {
    nix::sys::stat::futimens(fd, &timespec(t), &timespec(t))
}

pub(super) fn set_times_at(dir: BorrowedFd<'_>, name: &OsStr, t: Timestamp) -> nix::Result<()> {
    nix::sys::stat::utimensat(dir, name, &timespec(t), &timespec(t), UtimensatFlags::NoFollowSymlink)
}

/// The path of `name` in `dir` through procfs, for `l*xattr` calls on objects that must not
/// be opened (symlinks, devices, fifos). Only the final component is left unresolved, and the
/// directory part is the fd itself.
pub(super) fn proc_path(dir: BorrowedFd<'_>, name: &OsStr) -> PathBuf {
    let mut p = OsString::from(format!("/proc/self/fd/{}/", dir.as_raw_fd()));
    p.push(name);
    PathBuf::from(p)
}

pub(super) fn set_xattr_fd(file: &File, name: &str, value: &[u8]) -> io::Result<()> {
    file.set_xattr(name, value)
}

pub(super) fn set_xattr_at(dir: BorrowedFd<'_>, name: &OsStr, key: &str, value: &[u8]) -> io::Result<()> {
    xattr::set(proc_path(dir, name), key, value)
}

/// Makes the xattrs of an existing directory exactly `want` (besides names `keep` accepts).
pub(super) fn sync_xattrs_fd(file: &File, want: &strata_types::Xattrs, keep: impl Fn(&str) -> bool) -> io::Result<()> {
    for name in file.list_xattr()? {
        let Some(name) = name.to_str() else { continue };
        if !want.contains_key(name) && !keep(name) {
            file.remove_xattr(name)?;
        }
    }
    for (k, v) in want {
        file.set_xattr(k, v)?;
    }
    Ok(())
}

/// Removes `name` from `dir`, recursively if it is a directory, never following a symlink.
/// Directories without write (or search) permission are made accessible first when not
/// running as root (rootless stores hold the 0555 directories of images). A missing `name`
/// is not an error.
pub(super) fn remove_all(dir: BorrowedFd<'_>, name: &OsStr) -> io::Result<()> {
    match unlinkat(dir, name, UnlinkatFlags::NoRemoveDir) {
        Ok(()) | Err(Errno::ENOENT) => return Ok(()),
        Err(Errno::EISDIR) => {}
        Err(e) => return Err(e.into()),
    }
    if !nix::unistd::geteuid().is_root() {
        // A directory (unlinkat said so), so fchmodat cannot act on a symlink's target.
        let _ = chmod_at(dir, name, 0o700);
    }
    let sub = match open_beneath(dir, name.as_bytes(), OFlag::O_RDONLY | OFlag::O_DIRECTORY) {
        Ok(fd) => fd,
        Err(Errno::ENOENT) => return Ok(()),
        Err(e) => return Err(e.into()),
    };
    for child in list_dir(sub.as_fd())? {
        remove_all(sub.as_fd(), &child)?;
    }
    match unlinkat(dir, name, UnlinkatFlags::RemoveDir) {
        Ok(()) | Err(Errno::ENOENT) => Ok(()),
        Err(e) => Err(e.into()),
    }
}

/// Names in a directory (without `.` and `..`).
pub(super) fn list_dir(dir: BorrowedFd<'_>) -> io::Result<Vec<OsString>> {
    let fd = nix::fcntl::openat(dir, ".", OFlag::O_RDONLY | OFlag::O_DIRECTORY | OFlag::O_CLOEXEC, Mode::empty())?;
    let mut d = nix::dir::Dir::from_fd(fd)?;
    let mut out = Vec::new();
    for e in d.iter() {
        let e = e?;
        let n = e.file_name().to_bytes();
        if n != b"." && n != b".." {
            out.push(OsStr::from_bytes(n).to_owned());
        }
    }
    Ok(out)
}

/// The component names of `p` as `OsStr`.
pub(super) fn os(b: &[u8]) -> &OsStr {
    OsStr::from_bytes(b)
}

/// The last component of a non-root path.
pub(super) fn leaf(p: &RelPath) -> &OsStr {
    os(p.file_name().unwrap_or(b"."))
}
