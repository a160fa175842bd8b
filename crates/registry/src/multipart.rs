//! `multipart/byteranges` bodies (RFC 9110 §14.6, RFC 2046 §5.1) and `Content-Range`.
//!
//! Each part's length is taken from its `Content-Range`, and the part must then be followed
//! by the boundary: a server whose `Content-Range` lies about the length is caught there,
//! and data is never scanned for the boundary. Line ends may be CRLF or bare LF; boundary
//! lines may carry trailing whitespace ("transport padding"); header names are
//! case-insensitive; a preamble before the first boundary is skipped.
//!
//! Everything read is bounded before it is read: lines, preamble and header counts here,
//! each part by the caller's check of its `Content-Range` (see [`Multipart::next_part_checked`]).

use std::io::{self, BufRead, Read};
use std::ops::Range;

use crate::range_plan::buffer_for;

const MAX_LINE: u64 = 16 << 10;
const MAX_PREAMBLE_LINES: usize = 64;
const MAX_PART_HEADERS: usize = 32;

/// A part: the byte range of the blob it holds, and those bytes.
pub(crate) type Part = (Range<u64>, Vec<u8>);

/// Why a multipart body could not be read.
#[derive(Debug)]
pub(crate) enum MultipartError {
    Io(io::Error),
    Format(String),
    /// A well-formed part that the caller's check refused (not what was requested).
    Refused(String),
}

fn bad<T>(msg: impl Into<String>) -> Result<T, MultipartError> {
    Err(MultipartError::Format(msg.into()))
}

/// The `boundary` parameter of a `multipart/byteranges` content type.
pub(crate) fn boundary(content_type: &str) -> Option<String> {
    let mut it = content_type.split(';');
    let mime = it.next()?.trim();
    if !mime.eq_ignore_ascii_case("multipart/byteranges") {
        return None;
    }
    for param in it {
        let (k, v) = param.split_once('=')?;
        if k.trim().eq_ignore_ascii_case("boundary") {
            let v = v.trim();
            let v = v.strip_prefix('"').and_then(|v| v.strip_suffix('"')).unwrap_or(v);
            return (!v.is_empty() && v.len() <= 200).then(|| v.to_owned());
        }
    }
    None
}

/// Parses `bytes FIRST-LAST/COMPLETE` (COMPLETE may be `*`) into a half-open range and the
/// complete length. `bytes */COMPLETE` (as sent with 416) gives `None` for the range.
pub(crate) fn content_range(value: &str) -> Result<(Option<Range<u64>>, Option<u64>), String> {
    let bad = || format!("malformed Content-Range {value:?}");
    let rest = value.trim();
    let rest = rest.strip_prefix("bytes").filter(|r| r.starts_with([' ', '\t'])).ok_or_else(bad)?.trim_start();
    let (range, complete) = rest.split_once('/').ok_or_else(bad)?;
    let num = |s: &str| -> Result<u64, String> {
        let s = s.trim();
        if s.is_empty() || !s.bytes().all(|b| b.is_ascii_digit()) {
            return Err(bad());
        }
        s.parse().map_err(|_| bad())
    };
    let complete = match complete.trim() {
        "*" => None,
        c => Some(num(c)?),
    };
    if range.trim() == "*" {
        return Ok((None, complete));
    }
    let (first, last) = range.split_once('-').ok_or_else(bad)?;
    let (first, last) = (num(first)?, num(last)?);
    if last < first || last == u64::MAX || complete.is_some_and(|c| last >= c) {
        return Err(bad());
    }
    Ok((Some(first..last + 1), complete))
}

/// Reads parts one by one from a `multipart/byteranges` body.
#[derive(Debug)]
pub(crate) struct Multipart<R> {
    r: R,
    delimiter: Vec<u8>,
    state: State,
}

#[derive(Debug, PartialEq, Eq)]
enum State {
    Preamble,
    Parts,
    Done,
}

enum Delimiter {
    Next,
    Last,
}

impl<R: BufRead> Multipart<R> {
    pub(crate) fn new(r: R, boundary: &str) -> Self {
        Multipart { r, delimiter: format!("--{boundary}").into_bytes(), state: State::Preamble }
    }

    /// The next part's range and bytes; `None` after the closing delimiter. A part longer
    /// than `max_part` bytes is refused before it is read.
    pub(crate) fn next_part(&mut self, max_part: u64) -> Result<Option<Part>, MultipartError> {
        self.next_part_checked(|range| {
            if range.end - range.start > max_part {
                return Err(format!("part bytes {}-{} is larger than anything requested", range.start, range.end - 1));
            }
            Ok(())
        })
    }

    /// The next part's range and bytes, once `check` accepted the range from the part's
    /// headers: a part is refused (`Refused`, with the check's reason) before any of its
    /// bytes is read or memory reserved for it, so the range a server claims costs nothing
    /// unless the caller asked for it.
    pub(crate) fn next_part_checked(
        &mut self,
        check: impl FnOnce(&Range<u64>) -> Result<(), String>,
    ) -> Result<Option<Part>, MultipartError> {
        if self.state == State::Preamble {
            self.skip_preamble()?;
        }
        if self.state == State::Done {
            return Ok(None);
        }
        let range = self.part_headers()?;
        check(&range).map_err(MultipartError::Refused)?;
        let len = range.end - range.start;
        let mut data = buffer_for(len);
        (&mut self.r).take(len).read_to_end(&mut data).map_err(MultipartError::Io)?;
        if data.len() as u64 != len {
            return bad(format!("body ends inside part bytes {}-{}", range.start, range.end - 1));
        }
        match self.delimiter_after_part(&range)? {
            Delimiter::Next => {}
            Delimiter::Last => self.state = State::Done,
        }
        Ok(Some((range, data)))
    }

    fn line(&mut self) -> Result<Option<Vec<u8>>, MultipartError> {
        let mut line = Vec::new();
        let n = (&mut self.r).take(MAX_LINE).read_until(b'\n', &mut line).map_err(MultipartError::Io)?;
        if n == 0 {
            return Ok(None);
        }
        if !line.ends_with(b"\n") && n as u64 == MAX_LINE {
            return bad("line too long");
        }
        while line.last().is_some_and(|c| matches!(c, b'\r' | b'\n' | b' ' | b'\t')) {
            line.pop();
        }
        Ok(Some(line))
    }

    fn classify(&self, line: &[u8]) -> Option<Delimiter> {
        let rest = line.strip_prefix(self.delimiter.as_slice())?;
        match rest {
            b"" => Some(Delimiter::Next),
            b"--" => Some(Delimiter::Last),
            _ => None,
        }
    }

    fn skip_preamble(&mut self) -> Result<(), MultipartError> {
        for _ in 0..MAX_PREAMBLE_LINES {
            let Some(line) = self.line()? else { return bad("body ends before the first boundary") };
            match self.classify(&line) {
                Some(Delimiter::Next) => {
                    self.state = State::Parts;
                    return Ok(());
                }
                Some(Delimiter::Last) => {
                    self.state = State::Done;
                    return Ok(());
                }
                None => {}
            }
        }
        bad("no boundary found at the start of the body")
    }

    fn part_headers(&mut self) -> Result<Range<u64>, MultipartError> {
        let mut range = None;
        for _ in 0..MAX_PART_HEADERS {
            let Some(line) = self.line()? else { return bad("body ends inside part headers") };
            if line.is_empty() {
                return range.ok_or_else(|| MultipartError::Format("a part has no Content-Range".into()));
            }
            let line = String::from_utf8_lossy(&line);
            let Some((name, value)) = line.split_once(':') else {
                return bad(format!("malformed part header {line:?}"));
            };
            if name.trim().eq_ignore_ascii_case("content-range") {
                let (r, _) = content_range(value).map_err(MultipartError::Format)?;
                range = Some(r.ok_or_else(|| MultipartError::Format(format!("part has Content-Range {value:?}")))?);
            }
        }
        bad("too many part headers")
    }

    fn delimiter_after_part(&mut self, range: &Range<u64>) -> Result<Delimiter, MultipartError> {
        // The CRLF before the delimiter belongs to it, so one empty line is expected first;
        // a few more are tolerated.
        for _ in 0..3 {
            let Some(line) = self.line()? else { break };
            if line.is_empty() {
                continue;
            }
            if let Some(d) = self.classify(&line) {
                return Ok(d);
            }
            break;
        }
        bad(format!(
            "part bytes {}-{} is not followed by the boundary (its Content-Range does not match its length)",
            range.start,
            range.end - 1
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn body(boundary: &str, eol: &str, parts: &[(u64, &[u8])], total: u64) -> Vec<u8> {
        let mut v = Vec::new();
        for (start, data) in parts {
            v.extend_from_slice(format!("{eol}--{boundary}{eol}").as_bytes());
            v.extend_from_slice(format!("Content-Type: application/octet-stream{eol}").as_bytes());
            let end = start + data.len() as u64 - 1;
            v.extend_from_slice(format!("Content-Range: bytes {start}-{end}/{total}{eol}{eol}").as_bytes());
            v.extend_from_slice(data);
        }
        v.extend_from_slice(format!("{eol}--{boundary}--{eol}").as_bytes());
        v
    }

    fn all(body: &[u8], boundary: &str) -> Result<Vec<Part>, String> {
        let mut m = Multipart::new(body, boundary);
        let mut out = Vec::new();
        loop {
            match m.next_part(1 << 20) {
                Ok(Some(p)) => out.push(p),
                Ok(None) => return Ok(out),
                Err(MultipartError::Format(s) | MultipartError::Refused(s)) => return Err(s),
                Err(MultipartError::Io(e)) => return Err(e.to_string()),
            }
        }
    }

    #[test]
    fn reads_parts_with_crlf_and_bare_lf() {
        // Data that contains line ends and something that looks like a boundary.
        let parts: &[(u64, &[u8])] = &[(0, b"ab\r\n--xyz\r\n"), (100, b"\n"), (7, b"q")];
        for eol in ["\r\n", "\n"] {
            let got = all(&body("xyz", eol, parts, 200), "xyz").unwrap();
            let want: Vec<_> = parts.iter().map(|(s, d)| (*s..s + d.len() as u64, d.to_vec())).collect();
            assert_eq!(got, want, "eol {eol:?}");
        }
    }

    #[test]
    fn tolerates_preamble_padding_and_header_case() {
        let b = b"preamble text\r\n--B \t\r\ncontent-RANGE:   bytes 5-7/*  \r\n\r\nxyz\r\n--B--  \r\nepilogue";
        assert_eq!(all(b, "B").unwrap(), vec![(5..8, b"xyz".to_vec())]);
    }

    #[test]
    fn rejects_lying_lengths_truncation_and_missing_ranges() {
        let wrong_len = b"--B\r\nContent-Range: bytes 0-1/10\r\n\r\nabc\r\n--B--\r\n";
        assert!(all(wrong_len, "B").unwrap_err().contains("not followed by the boundary"));
        let truncated = b"--B\r\nContent-Range: bytes 0-9/10\r\n\r\nabc";
        assert!(all(truncated, "B").unwrap_err().contains("ends inside part"));
        let no_range = b"--B\r\nContent-Type: x\r\n\r\nabc\r\n--B--\r\n";
        assert!(all(no_range, "B").unwrap_err().contains("no Content-Range"));
        let other_boundary = body("C", "\r\n", &[(0, b"a")], 1);
        assert!(all(&other_boundary, "B").is_err());
        let mut m = Multipart::new(&b"--B\r\nContent-Range: bytes 0-99/100\r\n\r\n"[..], "B");
        assert!(matches!(m.next_part(10), Err(MultipartError::Refused(s)) if s.contains("larger")));
    }

    #[test]
    fn refused_parts_are_not_read() {
        // A part claiming ten terabytes, then bytes without end: the check sees the claim
        // first, and nothing after the headers is read.
        struct Endless(u64);
        impl Read for Endless {
            fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
                buf.fill(0);
                self.0 += buf.len() as u64;
                Ok(buf.len())
            }
        }
        let head = &b"--B\r\nContent-Range: bytes 0-9999999999999/*\r\n\r\n"[..];
        let mut endless = Endless(0);
        let mut m = Multipart::new(io::BufReader::with_capacity(64, head.chain(&mut endless)), "B");
        let mut claimed = None;
        let r = m.next_part_checked(|r| {
            claimed = Some(r.clone());
            Err("too large".into())
        });
        assert!(matches!(r, Err(MultipartError::Refused(s)) if s == "too large"));
        assert_eq!(claimed, Some(0..10_000_000_000_000));
        drop(m);
        assert!(endless.0 <= 64, "{} bytes of the part were read", endless.0);
    }

    #[test]
    fn parses_boundaries_and_content_ranges() {
        assert_eq!(boundary("multipart/byteranges; boundary=abc").as_deref(), Some("abc"));
        assert_eq!(boundary("Multipart/ByteRanges;charset=x; BOUNDARY=\"a b\"").as_deref(), Some("a b"));
        assert_eq!(boundary("application/octet-stream"), None);
        assert_eq!(boundary("multipart/byteranges"), None);
        assert_eq!(content_range("bytes 0-9/1000").unwrap(), (Some(0..10), Some(1000)));
        assert_eq!(content_range(" bytes  5-5/*").unwrap(), (Some(5..6), None));
        assert_eq!(content_range("bytes */1000").unwrap(), (None, Some(1000)));
        for bad in
            ["bytes 9-0/10", "bytes 0-10/10", "items 0-1/2", "bytes 0-1", "bytes a-b/3", "bytes -1-2/5", "bytes0-1/2"]
        {
            assert!(content_range(bad).is_err(), "{bad}");
        }
    }
}
