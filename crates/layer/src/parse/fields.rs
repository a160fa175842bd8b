//! Pure decoding of tar header fields and PAX extended records.
//!
//! Numeric fields follow what Go's `archive/tar` (the reader behind containerd, podman and
//! tar-split) accepts: octal text padded with spaces/NULs on either side, or GNU base-256
//! (high bit of the first byte set; `0xff` starts a negative two's-complement number).

use base64::Engine as _;
use strata_types::Timestamp;

/// Why a numeric header field could not be decoded.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum NumError {
    /// Not octal digits (after trimming spaces and NULs).
    Syntax,
    /// Does not fit in an i64.
    Overflow,
}

/// Decodes an octal or base-256 numeric field. An empty field (only spaces/NULs) is 0.
pub(crate) fn parse_numeric(field: &[u8]) -> Result<i64, NumError> {
    if field.first().is_some_and(|b| b & 0x80 != 0) {
        return parse_base256(field);
    }
    let trimmed = trim_spaces_nuls(field);
    if trimmed.is_empty() {
        return Ok(0);
    }
    let mut v: u64 = 0;
    for &c in trimmed {
        if !(b'0'..=b'7').contains(&c) {
            return Err(NumError::Syntax);
        }
        if v >> 61 != 0 {
            return Err(NumError::Overflow);
        }
        v = (v << 3) | u64::from(c - b'0');
    }
    i64::try_from(v).map_err(|_| NumError::Overflow)
}

fn parse_base256(field: &[u8]) -> Result<i64, NumError> {
    // Negative numbers are stored inverted: -a-1 == !a.
    let inv = if field[0] & 0x40 != 0 { 0xff } else { 0x00 };
    let mut x: u64 = 0;
    for (i, &c) in field.iter().enumerate() {
        let mut c = c ^ inv;
        if i == 0 {
            c &= 0x7f;
        }
        if x >> 56 != 0 {
            return Err(NumError::Overflow);
        }
        x = (x << 8) | u64::from(c);
    }
    if x >> 63 != 0 {
        return Err(NumError::Overflow);
    }
    let x = x as i64;
    Ok(if inv == 0xff { !x } else { x })
}

fn trim_spaces_nuls(mut b: &[u8]) -> &[u8] {
    while let [b' ' | 0, rest @ ..] = b {
        b = rest;
    }
    while let [rest @ .., b' ' | 0] = b {
        b = rest;
    }
    b
}

/// A NUL-terminated string field: everything before the first NUL.
pub(crate) fn c_string(field: &[u8]) -> &[u8] {
    match field.iter().position(|&b| b == 0) {
        Some(i) => &field[..i],
        None => field,
    }
}

/// The header checksum: the sum of all bytes with the checksum field read as spaces, both
/// unsigned (POSIX) and signed (historic Sun tar); a header is valid if either matches.
pub(crate) fn checksums(block: &[u8; 512]) -> (u64, u64) {
    let mut unsigned = 0u64;
    let mut signed = 0i64;
    for (i, &b) in block.iter().enumerate() {
        let b = if (148..156).contains(&i) { b' ' } else { b };
        unsigned += u64::from(b);
        signed += i64::from(b as i8);
    }
    (unsigned, signed as u64)
}

/// Extended attributes and overrides collected from one PAX `x` header.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub(crate) struct PaxOverrides {
    pub path: Option<Vec<u8>>,
    pub linkpath: Option<Vec<u8>>,
    pub size: Option<u64>,
    pub uid: Option<u64>,
    pub gid: Option<u64>,
    pub mtime: Option<Timestamp>,
    pub dev_major: Option<u64>,
    pub dev_minor: Option<u64>,
    pub xattrs: Vec<(String, Vec<u8>)>,
    /// A `GNU.sparse.*` record was present (the entry is a sparse file).
    pub sparse: bool,
}

/// Why a PAX extended header was rejected (the caller adds the stream offset).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum PaxError {
    /// The record framing (`"<len> <key>=<value>\n"`) is broken.
    Framing(String),
    /// A known key has a value that does not parse.
    Value { key: String, value: String },
    /// An xattr record whose name is empty or not UTF-8.
    XattrName(String),
}

/// One PAX record: key and value.
pub(crate) type PaxRecord<'a> = (&'a [u8], &'a [u8]);

/// Splits PAX extended header data into `(key, value)` records, checking the framing.
pub(crate) fn pax_records(mut data: &[u8]) -> Result<Vec<PaxRecord<'_>>, PaxError> {
    let mut out = Vec::new();
    let framing = |s: String| PaxError::Framing(s);
    while !data.is_empty() {
        let sp = data
            .iter()
            .position(|&b| b == b' ')
            .ok_or_else(|| framing(format!("record {:?} has no length", lossy_prefix(data))))?;
        let len_text = &data[..sp];
        if len_text.is_empty() || len_text.len() > 20 || !len_text.iter().all(u8::is_ascii_digit) {
            return Err(framing(format!("record length {:?} is not a decimal number", lossy_prefix(len_text))));
        }
        let len: usize = std::str::from_utf8(len_text)
            .ok()
            .and_then(|s| s.parse().ok())
            .ok_or_else(|| framing(format!("record length {:?} is too large", lossy_prefix(len_text))))?;
        if len <= sp + 1 || len > data.len() {
            return Err(framing(format!("record length {len} does not fit the {} bytes left", data.len())));
        }
        let record = &data[sp + 1..len];
        let Some((&b'\n', body)) = record.split_last() else {
            return Err(framing(format!("record {:?} does not end with a newline", lossy_prefix(record))));
        };
        let eq = body
            .iter()
            .position(|&b| b == b'=')
            .ok_or_else(|| framing(format!("record {:?} has no '='", lossy_prefix(body))))?;
        let (key, value) = (&body[..eq], &body[eq + 1..]);
        if key.is_empty() || key.contains(&0) {
            return Err(framing(format!("record {:?} has an empty or NUL-containing key", lossy_prefix(body))));
        }
        out.push((key, value));
        data = &data[len..];
    }
    Ok(out)
}

/// Interprets the records of a PAX `x` header. Unknown keys (atime, ctime, uname, gname,
/// comment, charset, ...) are ignored; later records win over earlier ones, as POSIX says.
pub(crate) fn pax_overrides(data: &[u8]) -> Result<PaxOverrides, PaxError> {
    let mut o = PaxOverrides::default();
    for (key, value) in pax_records(data)? {
        let bad = || PaxError::Value { key: lossy(key), value: lossy_prefix(value) };
        let no_nul = |v: &[u8]| if v.contains(&0) { Err(bad()) } else { Ok(v.to_vec()) };
        match key {
            // An empty value removes the override (POSIX: "delete any header block field").
            b"path" => o.path = if value.is_empty() { None } else { Some(no_nul(value)?) },
            b"linkpath" => o.linkpath = if value.is_empty() { None } else { Some(no_nul(value)?) },
            b"size" => o.size = Some(parse_decimal(value).ok_or_else(bad)?),
            b"uid" => o.uid = Some(parse_decimal(value).ok_or_else(bad)?),
            b"gid" => o.gid = Some(parse_decimal(value).ok_or_else(bad)?),
            b"mtime" => o.mtime = Some(parse_pax_time(value).ok_or_else(bad)?),
            b"SCHILY.devmajor" => o.dev_major = Some(parse_decimal(value).ok_or_else(bad)?),
            b"SCHILY.devminor" => o.dev_minor = Some(parse_decimal(value).ok_or_else(bad)?),
            k if k.starts_with(b"GNU.sparse.") => o.sparse = true,
            k if k.starts_with(b"SCHILY.xattr.") => {
                let name = xattr_name(&k[b"SCHILY.xattr.".len()..])?;
                set_xattr(&mut o.xattrs, name, value.to_vec());
            }
            k if k.starts_with(b"LIBARCHIVE.xattr.") => {
                let name = xattr_name(&percent_decode(&k[b"LIBARCHIVE.xattr.".len()..]).ok_or_else(bad)?)?;
                let value = BASE64_LENIENT.decode(value).map_err(|_| bad())?;
                set_xattr(&mut o.xattrs, name, value);
            }
            _ => {}
        }
    }
    Ok(o)
}

const BASE64_LENIENT: base64::engine::GeneralPurpose = base64::engine::general_purpose::STANDARD_PAD_INDIFFERENT;

fn set_xattr(xattrs: &mut Vec<(String, Vec<u8>)>, name: String, value: Vec<u8>) {
    match xattrs.iter_mut().find(|(n, _)| *n == name) {
        Some(slot) => slot.1 = value,
        None => xattrs.push((name, value)),
    }
}

fn xattr_name(raw: &[u8]) -> Result<String, PaxError> {
    match std::str::from_utf8(raw) {
        Ok(s) if !s.is_empty() && !s.contains('\0') => Ok(s.to_owned()),
        _ => Err(PaxError::XattrName(lossy(raw))),
    }
}

/// Decodes `%XX` escapes (libarchive URL-encodes xattr names).
fn percent_decode(raw: &[u8]) -> Option<Vec<u8>> {
    let mut out = Vec::with_capacity(raw.len());
    let mut i = 0;
    while i < raw.len() {
        if raw[i] == b'%' {
            let hex = raw.get(i + 1..i + 3)?;
            let hex = std::str::from_utf8(hex).ok()?;
            out.push(u8::from_str_radix(hex, 16).ok()?);
            i += 3;
        } else {
            out.push(raw[i]);
            i += 1;
        }
    }
    Some(out)
}

fn parse_decimal(v: &[u8]) -> Option<u64> {
    if v.is_empty() || v.len() > 20 || !v.iter().all(u8::is_ascii_digit) {
        return None;
    }
    std::str::from_utf8(v).ok()?.parse().ok()
}

/// PAX time: `[-]seconds[.fraction]`; digits beyond nanoseconds are truncated.
pub(crate) fn parse_pax_time(v: &[u8]) -> Option<Timestamp> {
    let (negative, v) = match v.split_first() {
        Some((b'-', rest)) => (true, rest),
        _ => (false, v),
    };
    let (secs_text, frac_text) = match v.iter().position(|&b| b == b'.') {
        Some(i) => (&v[..i], &v[i + 1..]),
        None => (v, &b""[..]),
    };
    if !frac_text.iter().all(u8::is_ascii_digit) || (secs_text.is_empty() && frac_text.is_empty()) {
        return None;
    }
    let secs: i64 = if secs_text.is_empty() { 0 } else { i64::try_from(parse_decimal(secs_text)?).ok()? };
    let mut nanos: u32 = 0;
    for i in 0..9 {
        nanos = nanos * 10 + frac_text.get(i).map_or(0, |d| u32::from(d - b'0'));
    }
    Some(match (negative, nanos) {
        (false, _) => Timestamp::new(secs, nanos),
        (true, 0) => Timestamp::new(-secs, 0),
        (true, n) => Timestamp::new(-secs - 1, 1_000_000_000 - n),
    })
}

pub(crate) fn lossy(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

/// At most 200 bytes of `b`, for error messages about possibly huge values.
pub(crate) fn lossy_prefix(b: &[u8]) -> String {
    if b.len() <= 200 { lossy(b) } else { format!("{}... ({} bytes)", lossy(&b[..200]), b.len()) }
}

/// Encodes one PAX record (`"<len> <key>=<value>\n"`, the length counting itself).
#[cfg(test)]
pub(crate) fn pax_record(key: &str, value: &[u8]) -> Vec<u8> {
    let body = [key.as_bytes(), b"=", value, b"\n"].concat();
    let mut len = body.len() + 2;
    while body.len() + 1 + len.to_string().len() != len {
        len = body.len() + 1 + len.to_string().len();
    }
    [format!("{len} ").as_bytes(), &body].concat()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn octal_fields_accept_go_padding_and_reject_garbage() {
        assert_eq!(parse_numeric(b"0000644\0"), Ok(0o644));
        assert_eq!(parse_numeric(b"  755 \0"), Ok(0o755));
        assert_eq!(parse_numeric(b"\0\0\0\0"), Ok(0));
        assert_eq!(parse_numeric(b"00008\0"), Err(NumError::Syntax));
        assert_eq!(parse_numeric(b"12 34\0"), Err(NumError::Syntax));
        assert_eq!(parse_numeric(b"7777777777777777777777"), Err(NumError::Overflow));
    }

    #[test]
    fn base256_fields() {
        let mut f = [0u8; 12];
        f[0] = 0x80;
        f[4..].copy_from_slice(&(1u64 << 40).to_be_bytes());
        assert_eq!(parse_numeric(&f), Ok(1 << 40));
        // -1 in base-256 is all 0xff.
        assert_eq!(parse_numeric(&[0xff; 12]), Ok(-1));
        let mut big = [0u8; 12];
        big[0] = 0x80;
        big[3] = 1; // 2^64 and above do not fit
        assert_eq!(parse_numeric(&big), Err(NumError::Overflow));
    }

    #[test]
    fn pax_time_with_fraction_and_sign() {
        assert_eq!(parse_pax_time(b"1700000000.123456789"), Some(Timestamp::new(1700000000, 123456789)));
        assert_eq!(parse_pax_time(b"1.5"), Some(Timestamp::new(1, 500_000_000)));
        assert_eq!(parse_pax_time(b"1.1234567891"), Some(Timestamp::new(1, 123456789)));
        assert_eq!(parse_pax_time(b"-1.25"), Some(Timestamp::new(-2, 750_000_000)));
        assert_eq!(parse_pax_time(b"-3"), Some(Timestamp::new(-3, 0)));
        assert_eq!(parse_pax_time(b"1.2x"), None);
        assert_eq!(parse_pax_time(b""), None);
    }

    #[test]
    fn pax_records_framing() {
        let data = &[pax_record("path", b"abcd"), pax_record("SCHILY.xattr.a", b"")].concat();
        assert_eq!(&data[..13], b"13 path=abcd\n");
        let r = pax_records(data).unwrap();
        assert_eq!(r, vec![(&b"path"[..], &b"abcd"[..]), (&b"SCHILY.xattr.a"[..], &b""[..])]);
        assert!(pax_records(b"12 path=abcd\n").is_err(), "length one short");
        assert!(pax_records(b"99 path=abcd\n").is_err(), "length past the end");
        assert!(pax_records(b"9 pathab\n").is_err(), "no '='");
        assert!(pax_records(b"x path=a\n").is_err());
    }

    #[test]
    fn pax_overrides_xattrs_and_sparse() {
        let rec = |k: &str, v: &[u8]| pax_record(k, v);
        let data = [
            rec("SCHILY.xattr.security.capability", &[1, 0, 0, 2]),
            rec("LIBARCHIVE.xattr.user.a%3Db", b"aGk"),
            rec("uid", b"70000"),
        ]
        .concat();
        let o = pax_overrides(&data).unwrap();
        assert_eq!(o.uid, Some(70000));
        assert_eq!(o.xattrs[0], ("security.capability".to_owned(), vec![1, 0, 0, 2]));
        assert_eq!(o.xattrs[1], ("user.a=b".to_owned(), b"hi".to_vec()));
        assert!(pax_overrides(&rec("GNU.sparse.map", b"0,1")).unwrap().sparse);
        assert!(matches!(pax_overrides(&rec("size", b"-1")), Err(PaxError::Value { .. })));
    }
}
