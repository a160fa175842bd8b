//! A tar entry's headers as containers/storage's Go code sees them.
//!
//! containers/storage builds each TOC entry from the `tar.Header` that Go's `archive/tar`
//! (vbatts/tar-split's fork) returns, and when pulling it re-parses every header stored in
//! the tar-split and requires the TOC to agree field by field. So a writer whose TOC must be
//! accepted, and a reader that wants to apply the same check, need Go's interpretation of a
//! header, quirks included: the raw mode field, the raw link name, device numbers read for
//! every entry type, atime/ctime from PAX records or GNU/star header fields, xattrs from
//! `SCHILY.xattr.*` records only, GNU long names overriding PAX paths. This module computes
//! exactly that view and nothing more; strata's own tar semantics live in `strata_layer::parse`.

use std::collections::BTreeMap;

use strata_types::Timestamp;

const BLOCK: usize = 512;

/// Why a header could not be interpreted.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum GoHeaderError {
    #[error("tar header ends early: {needed} bytes needed, {available} available")]
    Truncated { needed: usize, available: usize },
    #[error("tar header block at byte {offset} has a bad checksum")]
    Checksum { offset: usize },
    #[error("tar header block at byte {offset}: field {field} is not a valid number")]
    Number { offset: usize, field: &'static str },
    #[error("PAX extended header at byte {offset} is malformed: {why}")]
    Pax { offset: usize, why: &'static str },
    #[error("extension header at byte {offset} announces {size} bytes, more than the {limit} allowed")]
    ExtensionTooLarge { offset: usize, size: i64, limit: u64 },
    #[error("PAX global header at byte {offset}: containers/storage cannot represent it in a TOC")]
    GlobalHeader { offset: usize },
    #[error("sparse tar entry at byte {offset}: not supported in zstd:chunked layers")]
    Sparse { offset: usize },
}

/// The fields of Go's `tar.Header` that containers/storage puts in a TOC entry.
#[derive(Clone, Debug, PartialEq, Eq, Default)]
pub struct GoHeader {
    /// Type flag after Go's conversion of `'\0'` to `'0'` or `'5'`.
    pub typeflag: u8,
    pub name: Vec<u8>,
    pub linkname: Vec<u8>,
    pub mode: i64,
    pub size: i64,
    pub uid: i64,
    pub gid: i64,
    pub mtime: Timestamp,
    pub atime: Option<Timestamp>,
    pub ctime: Option<Timestamp>,
    pub dev_major: i64,
    pub dev_minor: i64,
    /// `SCHILY.xattr.<name>` PAX records: name to raw value.
    pub xattrs: BTreeMap<Vec<u8>, Vec<u8>>,
}

/// What [`parse`] found at the start of its input.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum GoParsed {
    /// One entry's headers: `consumed` bytes (extension headers and the main block).
    Entry { header: GoHeader, consumed: usize },
    /// A zero block: the end-of-archive marker begins here.
    End,
}

fn c_str(b: &[u8]) -> &[u8] {
    b.iter().position(|&c| c == 0).map_or(b, |i| &b[..i])
}

/// Go's `parseNumeric`: base-256 when the high bit is set, else octal with NUL/space trim.
fn numeric(b: &[u8]) -> Option<i64> {
    if b.first().is_some_and(|c| c & 0x80 != 0) {
        let inv = if b[0] & 0x40 != 0 { 0xff } else { 0 };
        let mut x: u64 = 0;
        for (i, &c) in b.iter().enumerate() {
            let mut c = c ^ inv;
            if i == 0 {
                c &= 0x7f;
            }
            if x >> 56 > 0 {
                return None;
            }
            x = x << 8 | u64::from(c);
        }
        if x >> 63 > 0 {
            return None;
        }
        return Some(if inv == 0xff { !(x as i64) } else { x as i64 });
    }
    let start = b.iter().position(|&c| c != b' ' && c != 0).unwrap_or(b.len());
    let end = b.iter().rposition(|&c| c != b' ' && c != 0).map_or(start, |i| i + 1);
    let trimmed = c_str(&b[start..end.max(start)]);
    if trimmed.is_empty() {
        return Some(0);
    }
    let s = std::str::from_utf8(trimmed).ok()?;
    if s.starts_with('+') {
        return None;
    }
    u64::from_str_radix(s, 8).ok().map(|v| v as i64)
}

/// `time.Unix(secs, nanos)` normalized so that nanos is in `0..1e9`.
fn unix(secs: i64, nanos: i64) -> Timestamp {
    let total_secs = secs.saturating_add(nanos.div_euclid(1_000_000_000));
    Timestamp::new(total_secs, nanos.rem_euclid(1_000_000_000) as u32)
}

/// Go's `parsePAXTime`: `[-]secs[.frac]`, fraction padded or truncated to nanoseconds.
fn pax_time(v: &[u8]) -> Option<Timestamp> {
    let s = std::str::from_utf8(v).ok()?;
    let (ss, sn) = s.split_once('.').unwrap_or((s, ""));
    if ss.starts_with('+') {
        return None;
    }
    let secs: i64 = ss.parse().ok()?;
    if sn.is_empty() {
        return Some(unix(secs, 0));
    }
    if !sn.bytes().all(|c| c.is_ascii_digit()) {
        return None;
    }
    let digits: String = sn.chars().chain(std::iter::repeat('0')).take(9).collect();
    let nanos: i64 = digits.parse().ok()?;
    Some(if ss.starts_with('-') { unix(secs, -nanos) } else { unix(secs, nanos) })
}

fn pax_int(v: &[u8]) -> Option<i64> {
    let s = std::str::from_utf8(v).ok()?;
    if s.starts_with('+') {
        return None;
    }
    s.parse().ok()
}

/// Parses PAX records (`"<len> <key>=<value>\n"`); later duplicates win, as in Go's map.
fn pax_records(mut data: &[u8]) -> Result<BTreeMap<Vec<u8>, Vec<u8>>, &'static str> {
    let mut out = BTreeMap::new();
    while !data.is_empty() {
        let sp = data.iter().position(|&c| c == b' ').ok_or("record without a length")?;
        let n: usize = std::str::from_utf8(&data[..sp])
            .ok()
            .filter(|s| !s.starts_with('+'))
            .and_then(|s| s.parse().ok())
            .ok_or("record length is not a number")?;
        if n < 5 || n > data.len() || n <= sp + 1 {
            return Err("record length out of range");
        }
        let (rec, rest) = data.split_at(n);
        let body = &rec[sp + 1..n - 1];
        if rec[n - 1] != b'\n' {
            return Err("record does not end in a newline");
        }
        let eq = body.iter().position(|&c| c == b'=').ok_or("record without '='")?;
        let (k, v) = (&body[..eq], &body[eq + 1..]);
        if k.is_empty() || k.contains(&0) {
            return Err("record with an empty key or a NUL in its key");
        }
        out.insert(k.to_vec(), v.to_vec());
        data = rest;
    }
    Ok(out)
}

fn checksum_ok(block: &[u8]) -> bool {
    let Some(stored) = numeric(&block[148..156]) else { return false };
    let mut unsigned: i64 = 0;
    let mut signed: i64 = 0;
    for (i, &c) in block.iter().enumerate() {
        let c = if (148..156).contains(&i) { b' ' } else { c };
        unsigned += i64::from(c);
        signed += i64::from(c as i8);
    }
    stored == unsigned || stored == signed
}

#[derive(PartialEq, Clone, Copy)]
enum Format {
    V7,
    Ustar,
    Star,
    Gnu,
}

fn format(block: &[u8]) -> Format {
    match (&block[257..263], &block[263..265], &block[508..512]) {
        (b"ustar\0", _, b"tar\0") => Format::Star,
        (b"ustar\0", _, _) => Format::Ustar,
        (b"ustar ", b" \0", _) => Format::Gnu,
        _ => Format::V7,
    }
}

/// Interprets the headers of one entry at the start of `bytes` (which must not start with
/// the padding of a previous entry). `max_extension` bounds each extension header's payload.
pub fn parse(bytes: &[u8], max_extension: u64) -> Result<GoParsed, GoHeaderError> {
    let mut pos = 0usize;
    let mut pax: Option<BTreeMap<Vec<u8>, Vec<u8>>> = None;
    let mut long_name: Option<Vec<u8>> = None;
    let mut long_link: Option<Vec<u8>> = None;
    loop {
        let block = bytes
            .get(pos..pos + BLOCK)
            .ok_or(GoHeaderError::Truncated { needed: pos + BLOCK, available: bytes.len() })?;
        if block.iter().all(|&c| c == 0) {
            return Ok(GoParsed::End);
        }
        if !checksum_ok(block) {
            return Err(GoHeaderError::Checksum { offset: pos });
        }
        let offset = pos;
        let num = |range: std::ops::Range<usize>, field| {
            numeric(&block[range]).ok_or(GoHeaderError::Number { offset, field })
        };
        let typeflag = block[156];
        pos += BLOCK;
        if matches!(typeflag, b'x' | b'g' | b'L' | b'K') {
            if typeflag == b'g' {
                return Err(GoHeaderError::GlobalHeader { offset });
            }
            let size = num(124..136, "size")?;
            if size < 0 || size as u64 > max_extension {
                return Err(GoHeaderError::ExtensionTooLarge { offset, size, limit: max_extension });
            }
            let size = size as usize;
            let padded = size.div_ceil(BLOCK) * BLOCK;
            let data = bytes
                .get(pos..pos + size)
                .ok_or(GoHeaderError::Truncated { needed: pos + padded, available: bytes.len() })?;
            if bytes.len() < pos + padded {
                return Err(GoHeaderError::Truncated { needed: pos + padded, available: bytes.len() });
            }
            pos += padded;
            match typeflag {
                b'x' => pax = Some(pax_records(data).map_err(|why| GoHeaderError::Pax { offset, why })?),
                b'L' => long_name = Some(c_str(data).to_vec()),
                _ => long_link = Some(c_str(data).to_vec()),
            }
            continue;
        }
        let fmt = format(block);
        let mut h = GoHeader {
            typeflag,
            name: c_str(&block[0..100]).to_vec(),
            linkname: c_str(&block[157..257]).to_vec(),
            size: num(124..136, "size")?,
            mode: num(100..108, "mode")?,
            uid: num(108..116, "uid")?,
            gid: num(116..124, "gid")?,
            mtime: unix(num(136..148, "mtime")?, 0),
            ..GoHeader::default()
        };
        if fmt != Format::V7 {
            h.dev_major = num(329..337, "devmajor")?;
            h.dev_minor = num(337..345, "devminor")?;
            let prefix: &[u8] = match fmt {
                Format::Ustar => c_str(&block[345..500]),
                Format::Star => {
                    h.atime = Some(unix(num(476..488, "atime")?, 0));
                    h.ctime = Some(unix(num(488..500, "ctime")?, 0));
                    c_str(&block[345..476])
                }
                _ => {
                    let (a, c) = (&block[345..357], &block[357..369]);
                    match (a[0] == 0 || numeric(a).is_some(), c[0] == 0 || numeric(c).is_some()) {
                        (true, true) => {
                            h.atime = (a[0] != 0).then(|| unix(numeric(a).unwrap_or(0), 0));
                            h.ctime = (c[0] != 0).then(|| unix(numeric(c).unwrap_or(0), 0));
                            &[]
                        }
                        // Go before 1.8 wrote a ustar prefix into GNU headers.
                        _ => Some(c_str(&block[345..500])).filter(|p| p.is_ascii()).unwrap_or(&[]),
                    }
                }
            };
            if !prefix.is_empty() {
                h.name = [prefix, b"/", &h.name].concat();
            }
        }
        if let Some(records) = &pax {
            merge_pax(&mut h, records).map_err(|why| GoHeaderError::Pax { offset, why })?;
            if records.keys().any(|k| k.starts_with(b"GNU.sparse.")) {
                return Err(GoHeaderError::Sparse { offset });
            }
        }
        if let Some(n) = long_name.filter(|n| !n.is_empty()) {
            h.name = n;
        }
        if let Some(l) = long_link.filter(|l| !l.is_empty()) {
            h.linkname = l;
        }
        if h.typeflag == 0 {
            h.typeflag = if h.name.ends_with(b"/") { b'5' } else { b'0' };
        }
        if h.typeflag == b'S' {
            return Err(GoHeaderError::Sparse { offset });
        }
        return Ok(GoParsed::Entry { header: h, consumed: pos });
    }
}

/// Go's `mergePAX` plus containers/storage's xattr extraction (`SCHILY.xattr.*` from all
/// records, empty values included).
fn merge_pax(h: &mut GoHeader, records: &BTreeMap<Vec<u8>, Vec<u8>>) -> Result<(), &'static str> {
    for (k, v) in records {
        if let Some(name) = k.strip_prefix(b"SCHILY.xattr.".as_slice()) {
            h.xattrs.insert(name.to_vec(), v.clone());
        }
        if v.is_empty() {
            continue;
        }
        match k.as_slice() {
            b"path" => h.name = v.clone(),
            b"linkpath" => h.linkname = v.clone(),
            b"uid" => h.uid = pax_int(v).ok_or("bad uid record")?,
            b"gid" => h.gid = pax_int(v).ok_or("bad gid record")?,
            b"size" => h.size = pax_int(v).ok_or("bad size record")?,
            b"mtime" => h.mtime = pax_time(v).ok_or("bad mtime record")?,
            b"atime" => h.atime = Some(pax_time(v).ok_or("bad atime record")?),
            b"ctime" => h.ctime = Some(pax_time(v).ok_or("bad ctime record")?),
            _ => {}
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn header(name: &str, typeflag: u8, size: u64, gnu: bool) -> Vec<u8> {
        let mut h = if gnu { tar::Header::new_gnu() } else { tar::Header::new_ustar() };
        h.set_path(name).unwrap();
        h.set_size(size);
        h.set_mode(0o100644);
        h.set_uid(1000);
        h.set_gid(100);
        h.set_mtime(1_700_000_000);
        h.as_old_mut().linkflag[0] = typeflag;
        h.set_cksum();
        h.as_bytes().to_vec()
    }

    fn pax(records: &[(&str, &[u8])]) -> Vec<u8> {
        let mut data = Vec::new();
        for (k, v) in records {
            let body_len = k.len() + v.len() + 3;
            let mut n = body_len + 1;
            while n.to_string().len() + body_len != n {
                n += 1;
            }
            data.extend_from_slice(format!("{n} {k}=").as_bytes());
            data.extend_from_slice(v);
            data.push(b'\n');
        }
        let mut out = header("./PaxHeaders/x", b'x', data.len() as u64, false);
        out.extend_from_slice(&data);
        out.resize(out.len().div_ceil(512) * 512, 0);
        out
    }

    #[test]
    fn reads_raw_fields_as_go_does() {
        let mut bytes = pax(&[
            ("path", b"./a/long/name"),
            ("mtime", b"1700000000.5"),
            ("atime", b"-1.25"),
            ("SCHILY.xattr.user.k", b"v\0x"),
            ("LIBARCHIVE.xattr.user.o", b"dg=="),
        ]);
        bytes.extend(header("short", b'0', 7, false));
        let GoParsed::Entry { header: h, consumed } = parse(&bytes, 1 << 20).unwrap() else { panic!() };
        assert_eq!(consumed, bytes.len());
        assert_eq!(h.name, b"./a/long/name");
        assert_eq!(h.mode, 0o100644, "the raw mode field, type bits included");
        assert_eq!((h.uid, h.gid, h.size), (1000, 100, 7));
        assert_eq!(h.mtime, Timestamp::new(1_700_000_000, 500_000_000));
        assert_eq!(h.atime, Some(Timestamp::new(-2, 750_000_000)));
        assert_eq!(h.ctime, None);
        assert_eq!(h.xattrs.len(), 1, "only SCHILY xattrs");
        assert_eq!(h.xattrs[&b"user.k"[..]], b"v\0x");
    }

    #[test]
    fn gnu_long_names_override_and_reg_a_becomes_dir() {
        let mut bytes = header("././@LongLink", b'L', 9, true);
        let mut data = b"long/dir/".to_vec();
        data.resize(512, 0);
        bytes.extend(data);
        bytes.extend(header("trunc", 0, 0, true));
        let GoParsed::Entry { header: h, .. } = parse(&bytes, 1 << 20).unwrap() else { panic!() };
        assert_eq!((h.name.as_slice(), h.typeflag), (&b"long/dir/"[..], b'5'));
        assert_eq!(parse(&[0u8; 1024], 10).unwrap(), GoParsed::End);
    }

    #[test]
    fn rejects_damage_global_headers_and_sparse() {
        let mut h = header("a", b'0', 0, false);
        h[0] ^= 1;
        assert!(matches!(parse(&h, 10), Err(GoHeaderError::Checksum { .. })));
        let h = header("a", b'0', 0, false);
        assert!(matches!(parse(&h[..300], 10), Err(GoHeaderError::Truncated { .. })));
        let mut g = pax(&[("comment", b"x")]);
        g[156] = b'g';
        let fixed = {
            let mut th = tar::Header::from_byte_slice(&g[..512]).clone();
            th.set_cksum();
            [th.as_bytes().as_slice(), &g[512..]].concat()
        };
        assert!(matches!(parse(&fixed, 1 << 20), Err(GoHeaderError::GlobalHeader { .. })));
        let mut sp = pax(&[("GNU.sparse.major", b"1")]);
        sp.extend(header("s", b'0', 0, false));
        assert!(matches!(parse(&sp, 1 << 20), Err(GoHeaderError::Sparse { .. })));
        let big = pax(&[("comment", &[b'x'; 600])]);
        assert!(matches!(parse(&big, 100), Err(GoHeaderError::ExtensionTooLarge { .. })));
    }

    #[test]
    fn numbers_parse_like_go() {
        assert_eq!(numeric(b"0000644\0"), Some(0o644));
        assert_eq!(numeric(b"  644 \0\0"), Some(0o644));
        assert_eq!(numeric(b"\0\0\0\0"), Some(0));
        assert_eq!(numeric(b"64x\0"), None);
        assert_eq!(numeric(&[0x80, 0, 0, 0, 0, 0, 0x01, 0x00]), Some(256));
        assert_eq!(numeric(&[0xff; 8]), Some(-1));
        assert_eq!(pax_time(b"1.123456789123"), Some(Timestamp::new(1, 123_456_789)));
        assert_eq!(pax_time(b"1.x"), None);
    }
}
