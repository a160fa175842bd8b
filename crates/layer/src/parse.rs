//! Streaming tar parsing that keeps every byte.
//!
//! Three layers, pick the one that fits:
//!
//! - [`HeaderParser`]: pure and incremental. Feed it the bytes of a tar stream that are
//!   *not* file payload (headers, extension headers, padding, trailer) with
//!   [`HeaderParser::feed`], and account for payload bytes with [`HeaderParser::payload`]
//!   without showing them. It returns one [`Header`] per entry and [`Parsed::End`] at the
//!   end-of-archive marker. It never allocates more than [`Limits::max_extension`] per entry.
//! - [`HeaderTracker`]: a [`TarOut`](crate::TarOut) that runs a `HeaderParser` over a `TarOut` call stream
//!   (segments = non-payload bytes, file_data = payload) and exposes the [`Header`] of the
//!   entry whose payload is being written. Use it to learn entry metadata from a stream
//!   someone else produces (e.g. a zstd:chunked writer building its TOC): forward every
//!   `TarOut` call to it, and after `file_begin` read [`HeaderTracker::current`].
//! - [`TarReader`]: reads a tar from any `impl Read`, passes the exact byte stream to a
//!   [`TarOut`](crate::TarOut) tap (segments, `file_begin`/`file_data`/`file_end` for every entry, padding,
//!   trailer and anything after the trailer), and hands out entries and their payload.
//!
//! # What is accepted
//!
//! ustar, GNU and PAX headers (and V7, as Go's `archive/tar` does), checksums signed or
//! unsigned, octal or base-256 numbers, PAX `path`/`linkpath`/`size`/`uid`/`gid`/`mtime`
//! (nanoseconds)/`SCHILY.devmajor`/`SCHILY.devminor`, xattrs from `SCHILY.xattr.*` (raw
//! values) and `LIBARCHIVE.xattr.*` (URL-encoded names, base64 values), GNU long names (`L`)
//! and long links (`K`), the ustar prefix (and star's shorter one). Typeflags `0`, `\0`
//! (a directory if the name ends in `/`), `7` (contiguous file = regular file, as POSIX
//! says), `1`..`6`.
//!
//! # What is rejected, with a [`ParseError`] naming the byte offset and the entry
//!
//! Bad checksums, non-numeric or overflowing numbers, uid/gid/device numbers beyond u32,
//! uid/gid 4294967295 (`(uid_t)-1`, "no change" to chown: no file can be given it),
//! names that are absolute or contain `..` ([`strata_types::RelPath`]), hardlink targets
//! likewise, GNU sparse files (`S` and `GNU.sparse.*`), every other typeflag (POSIX would
//! read unknown types as regular files; a layer that relies on that is not one we can
//! reproduce faithfully), data on entries that cannot have any (links, directories, devices),
//! extension headers larger than [`Limits::max_extension`], two extension headers of the
//! same kind for one entry, an extension header followed by the end of the archive, a zero
//! block followed by a non-zero block, and a stream that ends before the end-of-archive
//! marker (two zero blocks) — Go accepts a missing marker, strata calls it truncated.
//!
//! PAX global headers (`g`) are validated and otherwise ignored, exactly like Go's
//! `archive/tar` (so the same layer extracts the same here as in containerd and podman);
//! their bytes belong to the header segment of the entry that follows.
//! Bytes after the end-of-archive marker (record padding) are passed on untouched.

mod fields;
mod header;
mod reader;
mod tracker;

use std::io;

use strata_types::{Entry, RelPathError};

use fields::{PaxError, PaxOverrides, c_string};
use header::{RawHeader, build_header};
pub use reader::{Discard, Payload, TarReader};
pub use tracker::HeaderTracker;

/// Size of a tar block.
pub const BLOCK_SIZE: usize = 512;

/// Bytes of padding that follow `size` bytes of payload.
pub fn padding(size: u64) -> u64 {
    (BLOCK_SIZE as u64 - size % BLOCK_SIZE as u64) % BLOCK_SIZE as u64
}

/// Resource limits against hostile archives.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// Largest payload of one extension header (PAX `x`/`g`, GNU `L`/`K`) held in memory.
    pub max_extension: u64,
}

impl Default for Limits {
    fn default() -> Self {
        Limits { max_extension: 1 << 20 }
    }
}

/// One entry's headers, interpreted.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Header {
    /// The entry. `entry.size` is the number of payload bytes that follow the header (only
    /// regular files have any). For hardlinks `link_target` is the normalized target path.
    pub entry: Entry,
    /// The name exactly as the archive spells it (GNU long name, else PAX `path`, else ustar
    /// prefix + `/` + name), before normalization: what tar-split records and what
    /// [`TarReader`] passes to [`crate::TarOut::file_begin`].
    pub raw_name: Vec<u8>,
    /// Stream offset of the first byte of this entry's headers (its first extension header,
    /// if any).
    pub offset: u64,
}

/// What [`HeaderParser::feed`] found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Parsed {
    /// An entry's headers are complete; `entry.size` payload bytes follow.
    Header(Header),
    /// The end-of-archive marker (two zero blocks) is complete.
    End,
}

/// A tar stream that cannot be read. Offsets are byte offsets of the header block concerned.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ParseError {
    #[error("reading the tar stream at byte {offset}: {source}")]
    Io {
        offset: u64,
        #[source]
        source: io::Error,
    },
    #[error("the tar stream is truncated: it ends at byte {offset}, inside {what}")]
    Truncated { offset: u64, what: String },
    #[error(
        "tar header at byte {offset} (name {name:?}): checksum field says {stored}, the header's bytes sum to {computed}"
    )]
    BadChecksum { offset: u64, name: String, stored: u64, computed: u64 },
    #[error("tar header at byte {offset} (name {name:?}): field {field} is not a valid number: {raw:?}")]
    BadNumber { offset: u64, name: String, field: &'static str, raw: String },
    #[error("tar header at byte {offset} (name {name:?}): {field} {value} is out of range")]
    OutOfRange { offset: u64, name: String, field: &'static str, value: String },
    #[error(
        "tar entry {name:?} at byte {offset}: {field} 4294967295 is (uid_t)-1, which chown reads as \"leave unchanged\": no file can have that owner"
    )]
    UnsetOwner { offset: u64, name: String, field: &'static str },
    #[error("extension header '{typeflag}' at byte {offset} announces {size} bytes; the limit is {limit}")]
    ExtensionTooLarge { offset: u64, typeflag: char, size: u64, limit: u64 },
    #[error("two '{typeflag}' extension headers for the same entry (the second at byte {offset})")]
    RepeatedExtension { offset: u64, typeflag: char },
    #[error("extension header at byte {offset} is followed by the end of the archive instead of an entry")]
    DanglingExtension { offset: u64 },
    #[error("PAX header at byte {offset}: {reason}")]
    BadPaxRecord { offset: u64, reason: String },
    #[error("PAX header at byte {offset}: record {key}={value:?} has an invalid value")]
    BadPaxValue { offset: u64, key: String, value: String },
    #[error("PAX header at byte {offset}: xattr name {xattr:?} is empty or not UTF-8")]
    BadXattrName { offset: u64, xattr: String },
    #[error("tar entry at byte {offset}: name {name:?} is not acceptable: {source}")]
    BadName {
        offset: u64,
        name: String,
        #[source]
        source: RelPathError,
    },
    #[error("tar entry {name:?} at byte {offset}: link target {target:?} is not acceptable: {reason}")]
    BadLinkTarget { offset: u64, name: String, target: String, reason: String },
    #[error("tar entry {name:?} at byte {offset}: GNU sparse files are not supported in layers")]
    Sparse { offset: u64, name: String },
    #[error("tar entry {name:?} at byte {offset}: unsupported entry type {typeflag:?}")]
    UnsupportedType { offset: u64, name: String, typeflag: char },
    #[error("tar entry {name:?} at byte {offset}: a {kind} cannot carry data, but its size is {size}")]
    UnexpectedData { offset: u64, name: String, kind: &'static str, size: u64 },
    #[error("block at byte {offset} follows a zero block but is not zero: damaged archive or a lone zero block")]
    LoneZeroBlock { offset: u64 },
    #[error("the sink of the tar stream failed: {0}")]
    Sink(#[source] io::Error),
    #[error("tar parser used out of protocol: {0}")]
    Protocol(String),
}

impl From<ParseError> for io::Error {
    fn from(e: ParseError) -> io::Error {
        match e {
            ParseError::Io { source, .. } | ParseError::Sink(source) => source,
            e => io::Error::new(io::ErrorKind::InvalidData, e),
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    /// Collecting a header block (`fill` bytes of `block` so far).
    Header,
    /// Collecting the payload of an extension header, then its padding.
    Extension { typeflag: u8, offset: u64, remaining: u64, pad: u64 },
    /// An entry's payload (the caller reports it with `payload`), then its padding.
    Payload { remaining: u64, pad: u64 },
    /// One zero block seen; the next must be zero too.
    ZeroBlock,
    /// After the end-of-archive marker: everything is trailing bytes.
    End,
}

/// Extension headers seen for the entry being parsed.
#[derive(Debug, Default)]
struct Pending {
    /// Offset of the first header block of this entry.
    start: Option<u64>,
    pax: Option<PaxOverrides>,
    long_name: Option<Vec<u8>>,
    long_link: Option<Vec<u8>>,
    seen_global: bool,
}

/// Incremental tar header parser (pure: no I/O). See the module docs.
///
/// Protocol: call [`feed`](Self::feed) with consecutive non-payload bytes; it consumes bytes
/// up to the end of the next complete item and returns it with the count consumed, so call
/// it again with the rest. After a [`Parsed::Header`] with `entry.size == n > 0`, report
/// exactly `n` payload bytes with [`payload`](Self::payload) (feeding bytes before that is an
/// error), then keep feeding: the padding after the payload comes next. After
/// [`Parsed::End`], everything fed is accepted as trailing bytes.
///
/// A stream that just stops is not an error for the parser itself (it cannot know): check
/// [`at_end`](Self::at_end) when the input is over.
///
/// ```
/// use strata_layer::parse::{HeaderParser, Parsed};
///
/// let mut b = tar::Builder::new(Vec::new());
/// let mut h = tar::Header::new_ustar();
/// h.set_size(5);
/// h.set_mode(0o644);
/// b.append_data(&mut h, "etc/motd", &b"hello"[..]).unwrap();
/// let tar = b.into_inner().unwrap();
///
/// let mut parser = HeaderParser::default();
/// let (mut rest, mut names) = (&tar[..], Vec::new());
/// while !rest.is_empty() {
///     let due = parser.payload_remaining();
///     if due > 0 {
///         parser.payload(due).unwrap(); // payload is accounted for, not fed
///         rest = &rest[due as usize..];
///         continue;
///     }
///     let (used, parsed) = parser.feed(rest).unwrap();
///     rest = &rest[used..];
///     if let Some(Parsed::Header(h)) = parsed {
///         names.push((h.entry.path.to_string(), h.entry.size));
///     }
/// }
/// assert!(parser.at_end());
/// assert_eq!(names, [("etc/motd".to_owned(), 5)]);
/// ```
#[derive(Debug)]
pub struct HeaderParser {
    limits: Limits,
    state: State,
    block: Box<[u8; BLOCK_SIZE]>,
    fill: usize,
    ext_data: Vec<u8>,
    pending: Pending,
    offset: u64,
}

impl Default for HeaderParser {
    fn default() -> Self {
        Self::new(Limits::default())
    }
}

impl HeaderParser {
    pub fn new(limits: Limits) -> Self {
        HeaderParser {
            limits,
            state: State::Header,
            block: Box::new([0; BLOCK_SIZE]),
            fill: 0,
            ext_data: Vec::new(),
            pending: Pending::default(),
            offset: 0,
        }
    }

    /// Stream offset of the next byte expected (payload included).
    pub fn offset(&self) -> u64 {
        self.offset
    }

    /// Payload bytes of the current entry not yet reported with [`payload`](Self::payload).
    pub fn payload_remaining(&self) -> u64 {
        match self.state {
            State::Payload { remaining, .. } => remaining,
            _ => 0,
        }
    }

    /// Non-payload bytes the parser needs before it can make progress: the rest of the
    /// current padding, block or extension data. 0 after the end-of-archive marker and
    /// while payload is due. Readers use it to read exactly one item's bytes at a time.
    pub fn wants(&self) -> u64 {
        match self.state {
            State::Header | State::ZeroBlock => (BLOCK_SIZE - self.fill) as u64,
            State::Extension { remaining, pad, .. } => remaining + pad,
            State::Payload { remaining: 0, pad } if pad > 0 => pad,
            State::Payload { remaining: 0, .. } => BLOCK_SIZE as u64,
            State::Payload { .. } | State::End => 0,
        }
    }

    /// True once the end-of-archive marker has been parsed.
    pub fn at_end(&self) -> bool {
        self.state == State::End
    }

    /// What the parser is in the middle of, for "truncated inside ..." messages.
    pub(crate) fn expecting(&self) -> &'static str {
        match self.state {
            State::Header if self.fill == 0 && self.pending.start.is_none() => {
                "the entry list (no end-of-archive marker)"
            }
            State::Header => "a tar header",
            State::ZeroBlock => "the end-of-archive marker",
            State::Extension { .. } => "the data of an extension header",
            State::Payload { remaining: 0, .. } => "the padding after an entry's data",
            State::Payload { .. } => "an entry's data",
            State::End => "the bytes after the end-of-archive marker",
        }
    }

    /// Accounts for `n` payload bytes of the current entry (not shown to the parser).
    pub fn payload(&mut self, n: u64) -> Result<(), ParseError> {
        match &mut self.state {
            State::Payload { remaining, .. } if *remaining >= n => {
                *remaining -= n;
                self.offset += n;
                Ok(())
            }
            State::Payload { remaining, .. } => {
                Err(ParseError::Protocol(format!("{n} payload bytes reported but only {remaining} are due")))
            }
            _ if n == 0 => Ok(()),
            _ => Err(ParseError::Protocol(format!("{n} payload bytes reported outside an entry's payload"))),
        }
    }

    /// Consumes non-payload bytes; see the type docs for the protocol.
    pub fn feed(&mut self, bytes: &[u8]) -> Result<(usize, Option<Parsed>), ParseError> {
        let mut used = 0;
        while used < bytes.len() {
            let rest = &bytes[used..];
            match self.state {
                State::End => {
                    used = bytes.len();
                    self.offset += rest.len() as u64;
                }
                State::Payload { remaining: r, .. } if r > 0 => {
                    return Err(ParseError::Protocol(format!(
                        "non-payload bytes fed while {r} payload bytes are due at byte {}",
                        self.offset
                    )));
                }
                State::Payload { pad, .. } => {
                    let n = pad.min(rest.len() as u64);
                    used += n as usize;
                    self.offset += n;
                    self.state = if pad == n { State::Header } else { State::Payload { remaining: 0, pad: pad - n } };
                }
                State::Extension { typeflag, offset, remaining, pad } => {
                    let n = (remaining + pad).min(rest.len() as u64);
                    let data_n = remaining.min(n) as usize;
                    self.ext_data.extend_from_slice(&rest[..data_n]);
                    used += n as usize;
                    self.offset += n;
                    let (remaining, pad) = (remaining - data_n as u64, pad - (n - data_n as u64));
                    if remaining == 0 && pad == 0 {
                        self.state = State::Header;
                        self.finish_extension(typeflag, offset)?;
                    } else {
                        self.state = State::Extension { typeflag, offset, remaining, pad };
                    }
                }
                State::Header | State::ZeroBlock => {
                    let n = (BLOCK_SIZE - self.fill).min(rest.len());
                    self.block[self.fill..self.fill + n].copy_from_slice(&rest[..n]);
                    self.fill += n;
                    used += n;
                    self.offset += n as u64;
                    if self.fill == BLOCK_SIZE {
                        self.fill = 0;
                        let block_offset = self.offset - BLOCK_SIZE as u64;
                        if let Some(parsed) = self.block_done(block_offset)? {
                            return Ok((used, Some(parsed)));
                        }
                    }
                }
            }
        }
        Ok((used, None))
    }

    fn block_done(&mut self, offset: u64) -> Result<Option<Parsed>, ParseError> {
        let is_zero = self.block.iter().all(|&b| b == 0);
        if self.state == State::ZeroBlock {
            if !is_zero {
                return Err(ParseError::LoneZeroBlock { offset });
            }
            self.state = State::End;
            return Ok(Some(Parsed::End));
        }
        if is_zero {
            if let Some(start) = self.pending.start {
                return Err(ParseError::DanglingExtension { offset: start });
            }
            self.state = State::ZeroBlock;
            return Ok(None);
        }
        self.pending.start.get_or_insert(offset);
        let block = *self.block;
        let fields = RawHeader::new(&block);
        fields.verify_checksum(offset)?;
        let typeflag = fields.typeflag();
        match typeflag {
            b'x' | b'g' | b'L' | b'K' => {
                let already = match typeflag {
                    b'x' => self.pending.pax.is_some(),
                    b'g' => self.pending.seen_global,
                    b'L' => self.pending.long_name.is_some(),
                    _ => self.pending.long_link.is_some(),
                };
                if already {
                    return Err(ParseError::RepeatedExtension { offset, typeflag: typeflag as char });
                }
                let size = fields.number(offset, "size", fields.size_field())?;
                let size = u64::try_from(size).map_err(|_| fields.out_of_range(offset, "size", size))?;
                if size > self.limits.max_extension {
                    return Err(ParseError::ExtensionTooLarge {
                        offset,
                        typeflag: typeflag as char,
                        size,
                        limit: self.limits.max_extension,
                    });
                }
                self.ext_data.clear();
                self.ext_data.reserve(size as usize);
                self.state = State::Extension { typeflag, offset, remaining: size, pad: padding(size) };
                if size == 0 {
                    self.state = State::Header;
                    self.finish_extension(typeflag, offset)?;
                }
                Ok(None)
            }
            _ => {
                let pending = std::mem::take(&mut self.pending);
                let header = build_header(&fields, offset, pending)?;
                self.state = State::Payload { remaining: header.entry.size, pad: padding(header.entry.size) };
                Ok(Some(Parsed::Header(header)))
            }
        }
    }

    fn finish_extension(&mut self, typeflag: u8, offset: u64) -> Result<(), ParseError> {
        let data = std::mem::take(&mut self.ext_data);
        let pax_err = |e: PaxError| match e {
            PaxError::Framing(reason) => ParseError::BadPaxRecord { offset, reason },
            PaxError::Value { key, value } => ParseError::BadPaxValue { offset, key, value },
            PaxError::XattrName(xattr) => ParseError::BadXattrName { offset, xattr },
        };
        match typeflag {
            b'x' => self.pending.pax = Some(fields::pax_overrides(&data).map_err(pax_err)?),
            b'g' => {
                fields::pax_records(&data).map_err(pax_err)?;
                self.pending.seen_global = true;
            }
            b'L' => self.pending.long_name = Some(c_string(&data).to_vec()),
            _ => self.pending.long_link = Some(c_string(&data).to_vec()),
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests;
