//! One header block's fields, and the [`Header`] built from them plus the extension
//! headers that preceded it.

use strata_types::{Entry, EntryKind, RelPath, Timestamp};

use super::fields::{NumError, c_string, checksums, lossy, lossy_prefix, parse_numeric};
use super::{BLOCK_SIZE, Header, ParseError, Pending};

/// Field access on one header block (via the `tar` crate's layouts).
pub(super) struct RawHeader<'a> {
    h: &'a tar::Header,
    format: Format,
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Format {
    V7,
    Ustar,
    Star,
    Gnu,
}

impl<'a> RawHeader<'a> {
    pub(super) fn new(block: &'a [u8; BLOCK_SIZE]) -> Self {
        let h = tar::Header::from_byte_slice(block);
        let format = match (&block[257..263], &block[263..265], &block[508..512]) {
            (b"ustar\0", _, b"tar\0") => Format::Star,
            (b"ustar\0", _, _) => Format::Ustar,
            (b"ustar ", b" \0", _) => Format::Gnu,
            _ => Format::V7,
        };
        RawHeader { h, format }
    }

    fn name_field(&self) -> &[u8] {
        c_string(&self.h.as_old().name)
    }

    pub(super) fn size_field(&self) -> &[u8] {
        &self.h.as_old().size
    }

    pub(super) fn typeflag(&self) -> u8 {
        self.h.as_old().linkflag[0]
    }

    pub(super) fn verify_checksum(&self, offset: u64) -> Result<(), ParseError> {
        let stored = self.number(offset, "chksum", &self.h.as_old().cksum)? as u64;
        let (unsigned, signed) = checksums(self.h.as_bytes());
        if stored != unsigned && stored != signed {
            return Err(ParseError::BadChecksum { offset, name: lossy(self.name_field()), stored, computed: unsigned });
        }
        Ok(())
    }

    pub(super) fn number(&self, offset: u64, field: &'static str, raw: &[u8]) -> Result<i64, ParseError> {
        parse_numeric(raw).map_err(|e| match e {
            NumError::Syntax => {
                ParseError::BadNumber { offset, name: lossy(self.name_field()), field, raw: lossy(raw) }
            }
            NumError::Overflow => self.out_of_range(offset, field, format!("{raw:02x?}")),
        })
    }

    pub(super) fn out_of_range(&self, offset: u64, field: &'static str, value: impl ToString) -> ParseError {
        ParseError::OutOfRange { offset, name: lossy(self.name_field()), field, value: value.to_string() }
    }

    /// The name as the header block spells it, with the ustar/star prefix.
    fn full_name(&self) -> Vec<u8> {
        let name = self.name_field();
        let prefix: &[u8] = match self.format {
            Format::Ustar => c_string(&self.h.as_bytes()[345..500]),
            Format::Star => c_string(&self.h.as_bytes()[345..476]),
            Format::Gnu => self.buggy_go_prefix(),
            Format::V7 => &[],
        };
        if prefix.is_empty() { name.to_vec() } else { [prefix, b"/", name].concat() }
    }

    /// Go before 1.8 wrote a ustar prefix into GNU headers; Go's reader (and so every
    /// container runtime) reads it back when the atime/ctime fields there do not parse.
    fn buggy_go_prefix(&self) -> &[u8] {
        let b = self.h.as_bytes();
        let (atime, ctime) = (&b[345..357], &b[357..369]);
        let time_ok = |f: &[u8]| f[0] == 0 || parse_numeric(f).is_ok();
        if time_ok(atime) && time_ok(ctime) {
            return &[];
        }
        let prefix = c_string(&b[345..500]);
        if prefix.is_ascii() { prefix } else { &[] }
    }

    fn dev_fields(&self) -> Option<(&[u8], &[u8])> {
        match self.format {
            Format::V7 => None,
            _ => Some((&self.h.as_bytes()[329..337], &self.h.as_bytes()[337..345])),
        }
    }
}

fn to_u32(v: u64, fields: &RawHeader<'_>, offset: u64, field: &'static str) -> Result<u32, ParseError> {
    u32::try_from(v).map_err(|_| fields.out_of_range(offset, field, v))
}

/// A uid or gid: a u32 other than `u32::MAX`, which is `(uid_t)-1`: chown reads it as "leave
/// unchanged" and the kernel never gives it to a file, so an entry owned by it could never
/// be extracted as it says (the extracted file would keep the extracting user, and every
/// later comparison of the file with its entry would fail).
fn owner_id(v: u64, fields: &RawHeader<'_>, offset: u64, field: &'static str, name: &str) -> Result<u32, ParseError> {
    match to_u32(v, fields, offset, field)? {
        u32::MAX => Err(ParseError::UnsetOwner { offset, name: name.to_owned(), field }),
        id => Ok(id),
    }
}

pub(super) fn build_header(fields: &RawHeader<'_>, offset: u64, pending: Pending) -> Result<Header, ParseError> {
    let start = pending.start.unwrap_or(offset);
    let pax = pending.pax.unwrap_or_default();
    let raw_name = match (pending.long_name, pax.path) {
        (Some(n), _) if !n.is_empty() => n,
        (_, Some(p)) => p,
        _ => fields.full_name(),
    };
    let name = lossy(&raw_name);
    let link = match (pending.long_link, pax.linkpath) {
        (Some(l), _) if !l.is_empty() => l,
        (_, Some(l)) => l,
        _ => c_string(&fields.h.as_old().linkname).to_vec(),
    };
    let typeflag = fields.typeflag();
    if pax.sparse {
        return Err(ParseError::Sparse { offset, name });
    }
    let kind = match typeflag {
        b'0' | b'7' => EntryKind::File,
        0 if raw_name.ends_with(b"/") => EntryKind::Dir,
        0 => EntryKind::File,
        b'1' => EntryKind::Hardlink,
        b'2' => EntryKind::Symlink,
        b'3' => EntryKind::CharDevice,
        b'4' => EntryKind::BlockDevice,
        b'5' => EntryKind::Dir,
        b'6' => EntryKind::Fifo,
        b'S' => return Err(ParseError::Sparse { offset, name }),
        t => return Err(ParseError::UnsupportedType { offset, name, typeflag: t as char }),
    };
    let path = RelPath::new(&raw_name).map_err(|source| ParseError::BadName { offset, name: name.clone(), source })?;

    let number = |field: &'static str, raw: &[u8]| fields.number(offset, field, raw);
    let non_negative =
        |field: &'static str, v: i64| u64::try_from(v).map_err(|_| fields.out_of_range(offset, field, v));
    let old = fields.h.as_old();
    let size = match pax.size {
        Some(s) => s,
        None => non_negative("size", number("size", &old.size)?)?,
    };
    let uid = match pax.uid {
        Some(u) => u,
        None => non_negative("uid", number("uid", &old.uid)?)?,
    };
    let gid = match pax.gid {
        Some(g) => g,
        None => non_negative("gid", number("gid", &old.gid)?)?,
    };
    let mtime = match pax.mtime {
        Some(t) => t,
        None => Timestamp::new(number("mtime", &old.mtime)?, 0),
    };
    let mode = non_negative("mode", number("mode", &old.mode)?)? as u32 & 0o7777;

    let mut entry = Entry::new(path, kind);
    entry.mode = mode;
    entry.uid = owner_id(uid, fields, offset, "uid", &name)?;
    entry.gid = owner_id(gid, fields, offset, "gid", &name)?;
    entry.mtime = mtime;
    entry.xattrs = pax.xattrs.into_iter().collect();

    let bad_link = |reason: &str| ParseError::BadLinkTarget {
        offset,
        name: name.clone(),
        target: lossy_prefix(&link),
        reason: reason.to_owned(),
    };
    match kind {
        EntryKind::File => entry.size = size,
        _ if size != 0 => {
            let kind = match kind {
                EntryKind::Dir => "directory",
                EntryKind::Symlink => "symlink",
                EntryKind::Hardlink => "hardlink",
                EntryKind::Fifo => "fifo",
                _ => "device",
            };
            return Err(ParseError::UnexpectedData { offset, name, kind, size });
        }
        EntryKind::Symlink => {
            if link.is_empty() || link.contains(&0) {
                return Err(bad_link("a symlink needs a non-empty target without NUL bytes"));
            }
            entry.link_target = Some(link.clone());
        }
        EntryKind::Hardlink => {
            let target = RelPath::new(&link).map_err(|e| bad_link(&e.to_string()))?;
            if target.is_root() {
                return Err(bad_link("a hardlink cannot point to the root directory"));
            }
            entry.link_target = Some(target.as_bytes().to_vec());
        }
        EntryKind::CharDevice | EntryKind::BlockDevice => {
            let (maj_raw, min_raw) = fields.dev_fields().unwrap_or((&[], &[]));
            let major = match pax.dev_major {
                Some(m) => m,
                None => non_negative("devmajor", number("devmajor", maj_raw)?)?,
            };
            let minor = match pax.dev_minor {
                Some(m) => m,
                None => non_negative("devminor", number("devminor", min_raw)?)?,
            };
            entry.dev_major = to_u32(major, fields, offset, "devmajor")?;
            entry.dev_minor = to_u32(minor, fields, offset, "devminor")?;
        }
        EntryKind::Dir | EntryKind::Fifo => {}
    }
    Ok(Header { entry, raw_name, offset: start })
}
