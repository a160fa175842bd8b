//! The file entry model: one file system object with the attributes a layer carries.

use std::collections::BTreeMap;

use crate::RelPath;

/// Extended attributes by name. Values are raw bytes. Ordered, so serializations of the same
/// entry are identical.
pub type Xattrs = BTreeMap<String, Vec<u8>>;

/// Seconds and nanoseconds since the epoch (the precision of `lstat` and PAX `mtime`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Timestamp {
    pub secs: i64,
    pub nanos: u32,
}

impl Timestamp {
    pub const fn new(secs: i64, nanos: u32) -> Self {
        Timestamp { secs, nanos }
    }
}

/// What kind of object an entry is. `Hardlink` only appears in layer streams (tar typeflag 1,
/// TOC `hardlink`), naming another entry of the same layer in `link_target`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum EntryKind {
    File,
    Dir,
    Symlink,
    Hardlink,
    CharDevice,
    BlockDevice,
    Fifo,
}

impl EntryKind {
    /// The `S_IFMT` bits for this kind (hardlinks report a regular file).
    pub fn file_type_bits(self) -> u32 {
        match self {
            EntryKind::File | EntryKind::Hardlink => 0o100000,
            EntryKind::Dir => 0o040000,
            EntryKind::Symlink => 0o120000,
            EntryKind::CharDevice => 0o020000,
            EntryKind::BlockDevice => 0o060000,
            EntryKind::Fifo => 0o010000,
        }
    }

    /// From the `S_IFMT` bits of `st_mode`; `None` for sockets and unknown types.
    pub fn from_mode(st_mode: u32) -> Option<EntryKind> {
        Some(match st_mode & 0o170000 {
            0o100000 => EntryKind::File,
            0o040000 => EntryKind::Dir,
            0o120000 => EntryKind::Symlink,
            0o020000 => EntryKind::CharDevice,
            0o060000 => EntryKind::BlockDevice,
            0o010000 => EntryKind::Fifo,
            _ => return None,
        })
    }
}

/// One object of a layer or root filesystem.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct Entry {
    pub path: RelPath,
    pub kind: EntryKind,
    /// Permission bits including setuid/setgid/sticky (`mode & 0o7777`), no type bits.
    pub mode: u32,
    pub uid: u32,
    pub gid: u32,
    pub mtime: Timestamp,
    /// Data length for regular files; 0 for everything else.
    pub size: u64,
    /// Symlink target (raw bytes, may be absolute or contain `..`: it is data, not a path
    /// strata follows) or, for hardlinks, the normalized path of the linked entry.
    pub link_target: Option<Vec<u8>>,
    pub dev_major: u32,
    pub dev_minor: u32,
    pub xattrs: Xattrs,
}

impl Entry {
    /// A bare entry of `kind` with mode 0, root ownership, epoch mtime and no data.
    pub fn new(path: RelPath, kind: EntryKind) -> Self {
        Entry {
            path,
            kind,
            mode: 0,
            uid: 0,
            gid: 0,
            mtime: Timestamp::default(),
            size: 0,
            link_target: None,
            dev_major: 0,
            dev_minor: 0,
            xattrs: Xattrs::new(),
        }
    }

    /// `st_mode` as `lstat` would report it: type bits plus permission bits.
    pub fn st_mode(&self) -> u32 {
        self.kind.file_type_bits() | (self.mode & 0o7777)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mode_bits_round_trip() {
        for k in [
            EntryKind::File,
            EntryKind::Dir,
            EntryKind::Symlink,
            EntryKind::CharDevice,
            EntryKind::BlockDevice,
            EntryKind::Fifo,
        ] {
            let mut e = Entry::new(RelPath::new("x").unwrap(), k);
            e.mode = 0o4755;
            assert_eq!(EntryKind::from_mode(e.st_mode()), Some(k));
            assert_eq!(e.st_mode() & 0o7777, 0o4755);
        }
        assert_eq!(EntryKind::from_mode(0o140000), None, "sockets have no entry kind");
    }
}
