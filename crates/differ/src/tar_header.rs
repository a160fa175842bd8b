//! Byte-level tar headers: ustar blocks and PAX extended headers, including the padding
//! record that puts a file's data on a 4096-byte boundary of the stream.

/// Tar block size.
pub const BLOCK: u64 = 512;

/// The alignment of file data in the stream that lets copy_file_range share extents.
pub const DATA_ALIGN: u64 = 4096;

pub fn round_up(n: u64, to: u64) -> u64 {
    n.div_ceil(to) * to
}

fn digits(mut n: usize) -> usize {
    let mut d = 1;
    while n >= 10 {
        n /= 10;
        d += 1;
    }
    d
}

/// One PAX record `"LEN KEY=VALUE\n"`, where LEN counts the whole record including itself.
pub fn pax_record(key: &str, value: &[u8]) -> Vec<u8> {
    let body = 1 + key.len() + 1 + value.len() + 1; // ' ' KEY '=' VALUE '\n'
    let mut len = body + digits(body);
    if digits(len) != len - body {
        len = body + digits(len);
    }
    let mut out = Vec::with_capacity(len);
    out.extend_from_slice(len.to_string().as_bytes());
    out.push(b' ');
    out.extend_from_slice(key.as_bytes());
    out.push(b'=');
    out.extend_from_slice(value);
    out.push(b'\n');
    debug_assert_eq!(out.len(), len);
    out
}

/// A `comment` record of exactly `len` bytes (`len >= 12`); readers ignore comments, so this
/// is how the writer pads an extended header to a chosen size.
pub fn pax_comment_of_len(len: usize) -> Vec<u8> {
    assert!(len >= MIN_COMMENT, "a comment record needs at least {MIN_COMMENT} bytes");
    // digits + ' ' + "comment=" + value + '\n' == len; the digit count is that of len itself.
    // Built directly: at a digit boundary (e.g. 100) two lengths are self-consistent for the
    // same value, and `pax_record` would pick the shorter one.
    let value_len = len - digits(len) - 10;
    let mut rec = format!("{len} comment=").into_bytes();
    rec.resize(rec.len() + value_len, b'0');
    rec.push(b'\n');
    debug_assert_eq!(rec.len(), len);
    rec
}

/// The shortest comment record: `"12 comment=\n"`.
pub const MIN_COMMENT: usize = 12;

/// PAX `mtime` value: seconds with up to 9 fractional digits, negative times as `-S.F`.
pub fn pax_time(secs: i64, nanos: u32) -> Vec<u8> {
    let total = secs as i128 * 1_000_000_000 + nanos as i128;
    let sign = if total < 0 { "-" } else { "" };
    let abs = total.unsigned_abs();
    let (s, f) = (abs / 1_000_000_000, abs % 1_000_000_000);
    if f == 0 {
        return format!("{sign}{s}").into_bytes();
    }
    let frac = format!("{f:09}");
    format!("{sign}{s}.{}", frac.trim_end_matches('0')).into_bytes()
}

/// Writes `value` as zero-padded octal with a NUL terminator into `field`; `false` when it
/// does not fit.
fn put_octal(field: &mut [u8], value: u64) -> bool {
    let width = field.len() - 1;
    let s = format!("{value:0width$o}");
    if s.len() > width {
        return false;
    }
    field[..width].copy_from_slice(s.as_bytes());
    field[width] = 0;
    true
}

/// Numeric field: octal when it fits, else GNU base-256 (a set high bit, big-endian).
fn put_number(field: &mut [u8], value: u64) {
    if !put_octal(field, value) {
        field.fill(0);
        let n = field.len();
        field[n - 8..].copy_from_slice(&value.to_be_bytes());
        field[0] |= 0x80;
    }
}

/// The fields of one ustar header.
#[derive(Debug, Clone, Default)]
pub struct Ustar<'a> {
    pub name: &'a [u8],
    pub mode: u32,
    pub uid: u64,
    pub gid: u64,
    pub size: u64,
    pub mtime: u64,
    pub typeflag: u8,
    pub linkname: &'a [u8],
    pub dev_major: u64,
    pub dev_minor: u64,
}

/// Largest value of a 12-byte octal field (size, mtime) and of an 8-byte one (uid, gid).
pub const MAX_OCTAL_12: u64 = 0o77777777777;
pub const MAX_OCTAL_8: u64 = 0o7777777;

impl Ustar<'_> {
    /// The 512-byte header. Names and link names longer than the fields are truncated here;
    /// the caller carries the full value in a PAX record. Values too large for octal fields
    /// (size, mtime, uid, gid) are written as 0 and carried in PAX records too.
    pub fn to_block(&self) -> [u8; 512] {
        let mut h = [0u8; 512];
        let n = self.name.len().min(100);
        h[..n].copy_from_slice(&self.name[..n]);
        put_octal(&mut h[100..108], u64::from(self.mode & 0o7777));
        if !put_octal(&mut h[108..116], self.uid) {
            put_octal(&mut h[108..116], 0);
        }
        if !put_octal(&mut h[116..124], self.gid) {
            put_octal(&mut h[116..124], 0);
        }
        if !put_octal(&mut h[124..136], self.size) {
            put_octal(&mut h[124..136], 0);
        }
        if !put_octal(&mut h[136..148], self.mtime) {
            put_octal(&mut h[136..148], 0);
        }
        h[156] = self.typeflag;
        let l = self.linkname.len().min(100);
        h[157..157 + l].copy_from_slice(&self.linkname[..l]);
        h[257..263].copy_from_slice(b"ustar\0");
        h[263..265].copy_from_slice(b"00");
        put_number(&mut h[329..337], self.dev_major);
        put_number(&mut h[337..345], self.dev_minor);
        h[148..156].fill(b' ');
        let sum: u32 = h.iter().map(|&b| u32::from(b)).sum();
        let s = format!("{sum:06o}\0 ");
        h[148..156].copy_from_slice(s.as_bytes());
        h
    }
}

/// Builds the extended-header part of an entry: `records` (already formatted) plus, when
/// `align_from` is `Some(pos)`, padding such that an entry starting at stream offset `pos`
/// has its data start on a [`DATA_ALIGN`] boundary. Returns the PAX data (unpadded) or `None`
/// when no extended header is needed at all.
pub fn pax_data(records: Vec<u8>, align_from: Option<u64>) -> Option<Vec<u8>> {
    let Some(pos) = align_from else {
        return (!records.is_empty()).then_some(records);
    };
    // Without any extended header the data would start at pos + 512.
    if records.is_empty() && (pos + BLOCK).is_multiple_of(DATA_ALIGN) {
        return None;
    }
    // With one: pos + 512 (x header) + T (PAX data, padded) + 512 (ustar) must be aligned.
    let want = (DATA_ALIGN - (pos + 2 * BLOCK) % DATA_ALIGN) % DATA_ALIGN; // T mod 4096
    let base = records.len() as u64;
    if !records.is_empty() && round_up(base, BLOCK) % DATA_ALIGN == want {
        return Some(records);
    }
    let mut t = want;
    while t < base + MIN_COMMENT as u64 || t == 0 {
        t += DATA_ALIGN;
    }
    let mut out = records;
    out.extend(pax_comment_of_len((t - base) as usize));
    debug_assert_eq!(out.len() as u64, t);
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn records_count_their_own_length_across_digit_boundaries() {
        for vlen in 0..2000 {
            let r = pax_record("path", &vec![b'a'; vlen]);
            let (len, _) = std::str::from_utf8(&r).unwrap().split_once(' ').unwrap();
            assert_eq!(len.parse::<usize>().unwrap(), r.len(), "value length {vlen}");
        }
        for len in MIN_COMMENT..20_000 {
            assert_eq!(pax_comment_of_len(len).len(), len);
        }
    }

    #[test]
    fn padding_aligns_data_for_every_start_offset_and_record_size() {
        for pos in (0..2 * DATA_ALIGN).step_by(BLOCK as usize) {
            for rec_len in [0usize, 20, 400, 499, 500, 511, 512, 513, 3000, 5000] {
                let records = if rec_len == 0 { Vec::new() } else { pax_comment_of_len(rec_len.max(12)) };
                let data_start = match pax_data(records, Some(pos)) {
                    None => pos + BLOCK,
                    Some(d) => pos + BLOCK + round_up(d.len() as u64, BLOCK) + BLOCK,
                };
                assert_eq!(data_start % DATA_ALIGN, 0, "pos {pos} records {rec_len}");
            }
        }
    }

    #[test]
    fn times_keep_nanoseconds_and_sign() {
        assert_eq!(pax_time(5, 0), b"5");
        assert_eq!(pax_time(5, 500_000_000), b"5.5");
        assert_eq!(pax_time(1, 1), b"1.000000001");
        assert_eq!(pax_time(-2, 500_000_000), b"-1.5");
    }

    #[test]
    fn header_checksum_and_octal_fields() {
        let h = Ustar { name: b"a/b", mode: 0o755, size: 10, typeflag: b'0', ..Default::default() }.to_block();
        let stored = u32::from_str_radix(std::str::from_utf8(&h[148..154]).unwrap(), 8).unwrap();
        let mut copy = h;
        copy[148..156].fill(b' ');
        assert_eq!(stored, copy.iter().map(|&b| u32::from(b)).sum::<u32>());
        assert_eq!(&h[124..136], b"00000000012\0");
        let big = Ustar { dev_major: 1 << 40, ..Default::default() }.to_block();
        assert_eq!(big[329] & 0x80, 0x80);
    }
}
