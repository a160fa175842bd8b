//! TOC entries versus tar headers, by containers/storage's rules.
//!
//! A TOC entry's metadata must be what containers/storage's `NewFileMetadata` derives from
//! the entry's tar header (as Go parses it, see [`crate::goheader`]): the writer builds TOC
//! entries with [`toc_entry_from_header`], and the reader requires every TOC entry to match
//! the header stored for it in the tar-split with [`check_matches`] — the same comparison
//! containers/storage makes before a partial pull, field by field.

use strata_types::Timestamp;

use crate::goheader::GoHeader;
use crate::toc::{TocEntry, TocType};

/// Go's `time.Time{}` (year 1) in Unix seconds: `IsZero` times are omitted from a TOC.
const GO_ZERO_TIME_SECS: i64 = -62135596800;

/// A header that cannot become a TOC entry.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum HeaderError {
    #[error("tar entry {name:?}: type flag {typeflag:?} has no zstd:chunked TOC type")]
    UnsupportedType { name: String, typeflag: char },
    #[error("tar entry {name:?}: {field} is not UTF-8, which a JSON TOC cannot carry faithfully")]
    NotUtf8 { name: String, field: &'static str },
    #[error("tar entry {name:?}: {field} is negative ({value})")]
    Negative { name: String, field: &'static str, value: i64 },
}

/// A TOC entry that disagrees with its tar header.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[error("TOC entry {name:?} disagrees with the tar-split header on {field}: TOC {toc}, tar {tar}")]
pub struct Mismatch {
    pub name: String,
    pub field: &'static str,
    pub toc: String,
    pub tar: String,
}

/// The TOC type of a (Go-normalized) tar type flag, as containers/storage maps them.
pub fn toc_type_of(typeflag: u8) -> Option<TocType> {
    Some(match typeflag {
        b'0' => TocType::Reg,
        b'1' => TocType::Hardlink,
        b'2' => TocType::Symlink,
        b'3' => TocType::Char,
        b'4' => TocType::Block,
        b'5' => TocType::Dir,
        b'6' => TocType::Fifo,
        _ => return None,
    })
}

fn lossy(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

fn time_if_not_zero(t: Option<Timestamp>) -> Option<Timestamp> {
    t.filter(|t| *t != Timestamp::new(GO_ZERO_TIME_SECS, 0))
}

/// The metadata part of the TOC entry containers/storage writes for `h` (no digest,
/// offsets or chunk fields: those come from the data).
pub fn toc_entry_from_header(h: &GoHeader) -> Result<TocEntry, HeaderError> {
    let name = lossy(&h.name);
    let kind = toc_type_of(h.typeflag)
        .ok_or_else(|| HeaderError::UnsupportedType { name: name.clone(), typeflag: h.typeflag as char })?;
    let utf8 =
        |b: &[u8], field| String::from_utf8(b.to_vec()).map_err(|_| HeaderError::NotUtf8 { name: name.clone(), field });
    let unsigned =
        |v: i64, field| u64::try_from(v).map_err(|_| HeaderError::Negative { name: name.clone(), field, value: v });
    let mut xattrs = strata_types::Xattrs::new();
    for (k, v) in &h.xattrs {
        xattrs.insert(utf8(k, "an xattr name")?, v.clone());
    }
    Ok(TocEntry {
        kind: Some(kind),
        name: utf8(&h.name, "the name")?,
        link_name: utf8(&h.linkname, "the link name")?,
        mode: unsigned(h.mode, "mode")?,
        size: unsigned(h.size, "size")?,
        uid: unsigned(h.uid, "uid")?,
        gid: unsigned(h.gid, "gid")?,
        mod_time: time_if_not_zero(Some(h.mtime)),
        access_time: time_if_not_zero(h.atime),
        change_time: time_if_not_zero(h.ctime),
        dev_major: unsigned(h.dev_major, "devmajor")?,
        dev_minor: unsigned(h.dev_minor, "devminor")?,
        xattrs,
        ..TocEntry::default()
    })
}

/// containers/storage's time comparison: absent, Go's zero time and the Unix epoch are all
/// "no time"; anything else must be the same instant.
fn same_time(a: Option<Timestamp>, b: Option<Timestamp>) -> bool {
    let norm =
        |t: Option<Timestamp>| t.filter(|t| *t != Timestamp::new(GO_ZERO_TIME_SECS, 0) && *t != Timestamp::default());
    norm(a) == norm(b)
}

/// Checks that `toc` has exactly the metadata containers/storage derives from `h`.
pub fn check_matches(toc: &TocEntry, h: &GoHeader) -> Result<(), Mismatch> {
    let fail =
        |field, toc_value: String, tar: String| Err(Mismatch { name: toc.name.clone(), field, toc: toc_value, tar });
    let kind = toc_type_of(h.typeflag);
    if toc.kind != kind {
        return fail("type", format!("{:?}", toc.kind.map(TocType::as_str)), format!("{:?}", h.typeflag as char));
    }
    if toc.name.as_bytes() != h.name {
        return fail("name", format!("{:?}", toc.name), format!("{:?}", lossy(&h.name)));
    }
    if toc.link_name.as_bytes() != h.linkname {
        return fail("linkName", format!("{:?}", toc.link_name), format!("{:?}", lossy(&h.linkname)));
    }
    let nums = [
        ("mode", toc.mode, h.mode),
        ("size", toc.size, h.size),
        ("uid", toc.uid, h.uid),
        ("gid", toc.gid, h.gid),
        ("devMajor", toc.dev_major, h.dev_major),
        ("devMinor", toc.dev_minor, h.dev_minor),
    ];
    for (field, t, a) in nums {
        if i64::try_from(t) != Ok(a) {
            return fail(field, t.to_string(), a.to_string());
        }
    }
    let times = [
        ("modtime", toc.mod_time, Some(h.mtime)),
        ("accesstime", toc.access_time, h.atime),
        ("changetime", toc.change_time, h.ctime),
    ];
    for (field, t, a) in times {
        if !same_time(t, a) {
            return fail(field, format!("{t:?}"), format!("{a:?}"));
        }
    }
    let same_xattrs = toc.xattrs.len() == h.xattrs.len()
        && toc.xattrs.iter().zip(&h.xattrs).all(|((tk, tv), (hk, hv))| tk.as_bytes() == hk.as_slice() && tv == hv);
    if !same_xattrs {
        let names = |it: Vec<String>| it.join(",");
        return fail(
            "xattrs",
            names(toc.xattrs.keys().cloned().collect()),
            names(h.xattrs.keys().map(|k| lossy(k)).collect()),
        );
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::BTreeMap;

    fn header() -> GoHeader {
        GoHeader {
            typeflag: b'0',
            name: b"./etc/passwd".to_vec(),
            mode: 0o644,
            size: 10,
            uid: 1,
            gid: 2,
            mtime: Timestamp::new(1_700_000_000, 5),
            atime: Some(Timestamp::new(1_700_000_001, 0)),
            xattrs: BTreeMap::from([(b"user.a".to_vec(), b"1".to_vec())]),
            ..GoHeader::default()
        }
    }

    #[test]
    fn entries_built_from_headers_match_them() {
        let h = header();
        let t = toc_entry_from_header(&h).unwrap();
        assert_eq!((t.kind, t.name.as_str(), t.size, t.change_time), (Some(TocType::Reg), "./etc/passwd", 10, None));
        check_matches(&t, &h).unwrap();
    }

    #[test]
    fn every_field_disagreement_is_caught() {
        let h = header();
        let base = toc_entry_from_header(&h).unwrap();
        type Edit = Box<dyn Fn(&mut TocEntry)>;
        let muts: Vec<(&str, Edit)> = vec![
            ("type", Box::new(|t| t.kind = Some(TocType::Dir))),
            ("name", Box::new(|t| t.name = "etc/passwd".into())),
            ("linkName", Box::new(|t| t.link_name = "x".into())),
            ("mode", Box::new(|t| t.mode = 0o755)),
            ("size", Box::new(|t| t.size = 11)),
            ("uid", Box::new(|t| t.uid = 0)),
            ("gid", Box::new(|t| t.gid = 0)),
            ("devMajor", Box::new(|t| t.dev_major = 1)),
            ("devMinor", Box::new(|t| t.dev_minor = 1)),
            ("modtime", Box::new(|t| t.mod_time = Some(Timestamp::new(1_700_000_000, 6)))),
            ("accesstime", Box::new(|t| t.access_time = None)),
            ("changetime", Box::new(|t| t.change_time = Some(Timestamp::new(5, 0)))),
            (
                "xattrs",
                Box::new(|t| {
                    t.xattrs.insert("user.a".into(), b"2".to_vec());
                }),
            ),
            ("xattrs", Box::new(|t| t.xattrs.clear())),
        ];
        for (field, m) in muts {
            let mut t = base.clone();
            m(&mut t);
            assert_eq!(check_matches(&t, &h).unwrap_err().field, field);
        }
    }

    #[test]
    fn epoch_and_absent_times_are_equal_like_containers_storage() {
        let mut h = header();
        h.ctime = Some(Timestamp::new(0, 0));
        check_matches(&toc_entry_from_header(&header()).unwrap(), &h).unwrap();
    }

    #[test]
    fn unrepresentable_headers_are_refused() {
        let mut h = header();
        h.typeflag = b'7';
        assert!(matches!(toc_entry_from_header(&h), Err(HeaderError::UnsupportedType { .. })));
        let mut h = header();
        h.name = b"caf\xe9".to_vec();
        assert!(matches!(toc_entry_from_header(&h), Err(HeaderError::NotUtf8 { .. })));
        let mut h = header();
        h.uid = -1;
        assert!(matches!(toc_entry_from_header(&h), Err(HeaderError::Negative { .. })));
    }
}
