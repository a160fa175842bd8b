//! tar-split records: everything of a layer tar except file contents, so the exact tar (and
//! its DiffID) can be rebuilt from the files on disk.
//!
//! The format is vbatts/tar-split's, as containers/storage embeds it in zstd:chunked blobs:
//! JSON lines, one record per line. Type 2 ("segment") carries raw stream bytes in
//! `payload` (base64); type 1 ("file") stands for one tar entry's payload: `name` (or
//! `name_raw`, base64, when the name is not UTF-8), `size` (omitted when 0) and `payload`
//! = the CRC-64 of the content (Go's `crc64.ISO` table: reflected polynomial
//! 0xD800000000000000, init and final xor all ones), 8 bytes big-endian, `null` for empty
//! entries. `position` numbers the records from 0. There is a file record for *every*
//! entry (directories and links too, with size 0). Like tar-split's packer, a segment
//! holds the padding of the previous entry and all the headers of the next one, so a
//! segment parses as exactly one entry's headers (containers/storage relies on that to
//! compare tar-split with the TOC); after the last entry come the padding plus the two
//! zero blocks, then whatever follows in 1 MiB records.
//!
//! - [`TarSplitRecorder`]: a [`TarOut`] producing the records (uncompressed JSON lines).
//! - [`RecordReader`]: a streaming, bounded reader of records.
//! - [`regenerate`]: rebuilds the stream from records and file contents into a [`TarOut`].
//! - [`DiffIdOut`]: a [`TarOut`] that computes the DiffID (sha256) and length of a stream.

mod json;

use std::collections::HashSet;
use std::fs::File;
use std::hash::{BuildHasher, RandomState};
use std::io::{self, BufRead, Write};
use std::os::unix::fs::FileExt;

use strata_types::{RelPath, Sha256Digest, Sha256Hasher};

use crate::TarOut;
use crate::parse::padding;

static CRC64: crc::Crc<u64, crc::Table<16>> = crc::Crc::<u64, crc::Table<16>>::new(&crc::CRC_64_GO_ISO);

/// CRC-64 as tar-split records it (Go `crc64.Checksum(data, crc64.MakeTable(crc64.ISO))`).
pub fn crc64(data: &[u8]) -> u64 {
    CRC64.checksum(data)
}

/// One tar-split record.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Record {
    /// Raw stream bytes (headers, padding, trailer).
    Segment(Vec<u8>),
    /// One entry's payload: its name as the archive spells it, its size, and the CRC-64 of
    /// the content (`None` for size 0).
    File { name: Vec<u8>, size: u64, crc64: Option<u64> },
}

/// Bad tar-split data, or a file that does not match it.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum TarSplitError {
    #[error("reading tar-split records: {0}")]
    Io(#[source] io::Error),
    #[error("tar-split record on line {line}: {reason}")]
    BadRecord { line: u64, reason: String },
    #[error("tar-split record on line {line} is longer than the limit of {limit} bytes")]
    RecordTooLarge { line: u64, limit: usize },
    #[error("tar-split lists {name:?} twice")]
    Duplicate { name: String },
    #[error("no file to read for {name:?} ({size} bytes)")]
    MissingFile { name: String, size: u64 },
    #[error("opening the file for {name:?}: {source}")]
    Open {
        name: String,
        #[source]
        source: io::Error,
    },
    #[error("reading the file for {name:?}: {source}")]
    Read {
        name: String,
        #[source]
        source: io::Error,
    },
    #[error("the file for {name:?} has only {got} of its {size} bytes")]
    ShortFile { name: String, size: u64, got: u64 },
    #[error("the content of {name:?} does not match the layer: crc64 {found:016x}, tar-split says {expected:016x}")]
    CrcMismatch { name: String, expected: u64, found: u64 },
    #[error("writing the regenerated tar stream: {0}")]
    Sink(#[source] io::Error),
}

fn lossy(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

/// The key tar-split uses to detect duplicates (Go's `filepath.Clean` of the name; our
/// normalization agrees on every name a layer may contain).
fn dedup_key(name: &[u8]) -> Vec<u8> {
    RelPath::new(name).map(|p| p.as_bytes().to_vec()).unwrap_or_else(|_| name.to_vec())
}

/// The names seen, for duplicate detection, in 16 bytes (plus the set's slot) per name
/// whatever its length: a 128-bit hash of the normalized name, from two SipHash instances
/// with random keys. A layer cannot be made to collide without the keys; by chance, two of
/// 4 million names collide with a probability below 2^-80 (and would only be refused).
#[derive(Debug, Default)]
struct NameSet {
    keys: (RandomState, RandomState),
    seen: HashSet<u128>,
}

impl NameSet {
    /// False if `name` (normalized) was inserted before.
    fn insert(&mut self, name: &[u8]) -> bool {
        let key = dedup_key(name);
        let (a, b) = (self.keys.0.hash_one(&key), self.keys.1.hash_one(&key));
        self.seen.insert(u128::from(a) << 64 | u128::from(b))
    }
}

/// Largest segment kept in memory before it is written out as a record of its own (only
/// reached by data after the end-of-archive marker; headers are bounded by parse limits).
const MAX_PENDING: usize = 4 << 20;
/// tar-split writes what follows the end-of-archive marker in records of this size.
const TRAILER_CHUNK: usize = 1 << 20;

/// The entry whose payload a [`TarSplitRecorder`] is receiving.
struct OpenFile {
    name: Vec<u8>,
    size: u64,
    done: u64,
    crc: crc::Digest<'static, u64, crc::Table<16>>,
}

/// A [`TarOut`] that writes tar-split records (JSON lines, uncompressed) to `W`. Call
/// [`finish`](Self::finish) after the last byte of the stream.
pub struct TarSplitRecorder<W: Write> {
    out: W,
    line: Vec<u8>,
    position: u64,
    pending: Vec<u8>,
    file: Option<OpenFile>,
    last_padding: u64,
    seen: NameSet,
    bytes: u64,
}

impl<W: Write> std::fmt::Debug for TarSplitRecorder<W> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TarSplitRecorder").field("position", &self.position).field("bytes", &self.bytes).finish()
    }
}

impl<W: Write> TarSplitRecorder<W> {
    pub fn new(out: W) -> Self {
        TarSplitRecorder {
            out,
            line: Vec::new(),
            position: 0,
            pending: Vec::new(),
            file: None,
            last_padding: 0,
            seen: NameSet::default(),
            bytes: 0,
        }
    }

    /// Uncompressed bytes of JSON written so far.
    pub fn bytes_written(&self) -> u64 {
        self.bytes
    }

    fn emit(&mut self, record: &Record) -> io::Result<()> {
        self.line.clear();
        json::encode(record, self.position, &mut self.line);
        self.out.write_all(&self.line)?;
        self.bytes += self.line.len() as u64;
        self.position += 1;
        Ok(())
    }

    fn flush_pending(&mut self) -> io::Result<()> {
        if !self.pending.is_empty() {
            let seg = Record::Segment(std::mem::take(&mut self.pending));
            self.emit(&seg)?;
        }
        Ok(())
    }

    /// Writes the trailing segments and returns the writer (not flushed).
    pub fn finish(mut self) -> io::Result<W> {
        if self.file.is_some() {
            return Err(io::Error::new(io::ErrorKind::InvalidInput, "tar-split: stream ended inside a file"));
        }
        let rest = std::mem::take(&mut self.pending);
        let first = rest.len().min(self.last_padding as usize + 1024);
        for seg in std::iter::once(&rest[..first]).chain(rest[first..].chunks(TRAILER_CHUNK)) {
            if !seg.is_empty() {
                self.emit(&Record::Segment(seg.to_vec()))?;
            }
        }
        Ok(self.out)
    }
}

impl<W: Write> TarOut for TarSplitRecorder<W> {
    fn segment(&mut self, bytes: &[u8]) -> io::Result<()> {
        if self.file.is_some() {
            return Err(io::Error::new(io::ErrorKind::InvalidInput, "tar-split: segment inside a file's payload"));
        }
        self.pending.extend_from_slice(bytes);
        if self.pending.len() > MAX_PENDING {
            self.flush_pending()?;
        }
        Ok(())
    }

    fn file_begin(&mut self, name: &[u8], size: u64) -> io::Result<()> {
        if self.file.is_some() {
            return Err(io::Error::new(io::ErrorKind::InvalidInput, "tar-split: file_begin inside a file"));
        }
        if !self.seen.insert(name) {
            return Err(io::Error::new(io::ErrorKind::InvalidData, TarSplitError::Duplicate { name: lossy(name) }));
        }
        self.flush_pending()?;
        self.file = Some(OpenFile { name: name.to_vec(), size, done: 0, crc: CRC64.digest() });
        Ok(())
    }

    fn file_data(&mut self, bytes: &[u8]) -> io::Result<()> {
        let Some(OpenFile { done, crc, .. }) = &mut self.file else {
            return Err(io::Error::new(io::ErrorKind::InvalidInput, "tar-split: file_data outside a file"));
        };
        crc.update(bytes);
        *done += bytes.len() as u64;
        Ok(())
    }

    fn file_end(&mut self) -> io::Result<()> {
        let Some(OpenFile { name, size, done, crc }) = self.file.take() else {
            return Err(io::Error::new(io::ErrorKind::InvalidInput, "tar-split: file_end outside a file"));
        };
        if done != size {
            return Err(io::Error::new(
                io::ErrorKind::InvalidData,
                format!("tar-split: {:?} announced {size} bytes but had {done}", lossy(&name)),
            ));
        }
        let crc64 = (size > 0).then(|| crc.finalize());
        self.last_padding = padding(size);
        self.emit(&Record::File { name, size, crc64 })
    }
}

/// Reads tar-split records one line at a time, in bounded memory (a line longer than the
/// limit is an error). Duplicate file names are errors, as in tar-split's own reader (this
/// keeps a 16-byte hash of each file's normalized name in memory).
#[derive(Debug)]
pub struct RecordReader<R> {
    r: R,
    line: u64,
    max_record: usize,
    buf: Vec<u8>,
    seen: NameSet,
    done: bool,
}

impl<R: BufRead> RecordReader<R> {
    /// A reader with a 16 MiB limit per record.
    pub fn new(r: R) -> Self {
        Self::with_max_record(r, 16 << 20)
    }

    pub fn with_max_record(r: R, max_record: usize) -> Self {
        RecordReader { r, line: 0, max_record, buf: Vec::new(), seen: NameSet::default(), done: false }
    }

    /// Reads the next line into `buf` (without its newline); false at EOF.
    fn next_line(&mut self) -> Result<bool, TarSplitError> {
        self.buf.clear();
        loop {
            let avail = match self.r.fill_buf() {
                Ok(a) => a,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(TarSplitError::Io(e)),
            };
            if avail.is_empty() {
                return Ok(!self.buf.is_empty());
            }
            let (take, end) = match avail.iter().position(|&b| b == b'\n') {
                Some(i) => (i + 1, true),
                None => (avail.len(), false),
            };
            if self.buf.len() + take > self.max_record + 1 {
                return Err(TarSplitError::RecordTooLarge { line: self.line + 1, limit: self.max_record });
            }
            self.buf.extend_from_slice(&avail[..take]);
            self.r.consume(take);
            if end {
                self.buf.pop();
                return Ok(true);
            }
        }
    }

    fn next_record(&mut self) -> Result<Option<Record>, TarSplitError> {
        loop {
            if !self.next_line()? {
                return Ok(None);
            }
            self.line += 1;
            if self.buf.iter().all(u8::is_ascii_whitespace) {
                continue;
            }
            let record =
                json::decode(&self.buf).map_err(|reason| TarSplitError::BadRecord { line: self.line, reason })?;
            if let Record::File { name, .. } = &record
                && !self.seen.insert(name)
            {
                return Err(TarSplitError::Duplicate { name: lossy(name) });
            }
            return Ok(Some(record));
        }
    }
}

impl<R: BufRead> Iterator for RecordReader<R> {
    type Item = Result<Record, TarSplitError>;
    fn next(&mut self) -> Option<Self::Item> {
        if self.done {
            return None;
        }
        let r = self.next_record().transpose();
        if !matches!(r, Some(Ok(_))) {
            self.done = true;
        }
        r
    }
}

/// What [`regenerate`] produced.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct RegenStats {
    /// File records (entries) replayed.
    pub entries: u64,
    /// Payload bytes read from files.
    pub file_bytes: u64,
    /// Total stream length.
    pub stream_bytes: u64,
}

/// Rebuilds a tar stream from tar-split `records` into `out`, reading each non-empty
/// entry's content from `open(name, size)` = `(file, offset)` (`Ok(None)`: there is no such
/// file). With `verify_crc` the content is read and checked against the recorded CRC-64
/// (a mismatch is an error naming the file); without it, it is passed with
/// [`TarOut::file_from`] so zero-copy sinks can move it without reading.
pub fn regenerate<I, F>(
    records: I,
    mut open: F,
    out: &mut dyn TarOut,
    verify_crc: bool,
) -> Result<RegenStats, TarSplitError>
where
    I: IntoIterator<Item = Result<Record, TarSplitError>>,
    F: FnMut(&[u8], u64) -> io::Result<Option<(File, u64)>>,
{
    let mut stats = RegenStats::default();
    let mut buf = Vec::new();
    for record in records {
        match record? {
            Record::Segment(bytes) => {
                out.segment(&bytes).map_err(TarSplitError::Sink)?;
                stats.stream_bytes += bytes.len() as u64;
            }
            Record::File { name, size, crc64 } => {
                out.file_begin(&name, size).map_err(TarSplitError::Sink)?;
                if size > 0 {
                    let (file, offset) = open(&name, size)
                        .map_err(|source| TarSplitError::Open { name: lossy(&name), source })?
                        .ok_or_else(|| TarSplitError::MissingFile { name: lossy(&name), size })?;
                    if verify_crc {
                        let found = copy_checked(&file, offset, size, &name, out, &mut buf)?;
                        let expected = crc64.unwrap_or_default();
                        if found != expected {
                            return Err(TarSplitError::CrcMismatch { name: lossy(&name), expected, found });
                        }
                    } else {
                        out.file_from(&file, offset, size).map_err(|e| match e.kind() {
                            io::ErrorKind::UnexpectedEof => TarSplitError::Read { name: lossy(&name), source: e },
                            _ => TarSplitError::Sink(e),
                        })?;
                    }
                    stats.file_bytes += size;
                    stats.stream_bytes += size;
                }
                out.file_end().map_err(TarSplitError::Sink)?;
                stats.entries += 1;
            }
        }
    }
    Ok(stats)
}

/// Reads `size` bytes of `file` at `offset` into `out`, returning their CRC-64.
fn copy_checked(
    file: &File,
    offset: u64,
    size: u64,
    name: &[u8],
    out: &mut dyn TarOut,
    buf: &mut Vec<u8>,
) -> Result<u64, TarSplitError> {
    buf.resize(size.min(1 << 20) as usize, 0);
    let mut crc = CRC64.digest();
    let mut done = 0u64;
    while done < size {
        let want = (size - done).min(buf.len() as u64) as usize;
        let n = match file.read_at(&mut buf[..want], offset + done) {
            Ok(0) => return Err(TarSplitError::ShortFile { name: lossy(name), size, got: done }),
            Ok(n) => n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(source) => return Err(TarSplitError::Read { name: lossy(name), source }),
        };
        crc.update(&buf[..n]);
        out.file_data(&buf[..n]).map_err(TarSplitError::Sink)?;
        done += n as u64;
    }
    Ok(crc.finalize())
}

/// A [`TarOut`] that computes a stream's DiffID (SHA-256 of the uncompressed tar) and length.
#[derive(Debug, Default, Clone)]
pub struct DiffIdOut {
    hasher: Sha256Hasher,
}

impl DiffIdOut {
    pub fn new() -> Self {
        Self::default()
    }

    /// Bytes hashed so far.
    pub fn len(&self) -> u64 {
        self.hasher.len()
    }

    pub fn is_empty(&self) -> bool {
        self.hasher.is_empty()
    }

    /// The DiffID and the stream length.
    pub fn finish(self) -> (Sha256Digest, u64) {
        let len = self.hasher.len();
        (self.hasher.finalize(), len)
    }
}

impl TarOut for DiffIdOut {
    fn segment(&mut self, bytes: &[u8]) -> io::Result<()> {
        self.hasher.update(bytes);
        Ok(())
    }
    fn file_begin(&mut self, _: &[u8], _: u64) -> io::Result<()> {
        Ok(())
    }
    fn file_data(&mut self, bytes: &[u8]) -> io::Result<()> {
        self.hasher.update(bytes);
        Ok(())
    }
    fn file_end(&mut self) -> io::Result<()> {
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn crc64_is_go_iso() {
        // crc64.Checksum([]byte("123456789"), crc64.MakeTable(crc64.ISO)) in Go.
        assert_eq!(crc64(b"123456789"), 0xb90956c775a41001);
    }

    #[test]
    fn record_reader_limits_and_duplicates() {
        let long = format!("{{\"type\":2,\"payload\":\"{}\",\"position\":0}}\n", "A".repeat(400));
        let err = RecordReader::with_max_record(long.as_bytes(), 100).next().unwrap().unwrap_err();
        assert!(matches!(err, TarSplitError::RecordTooLarge { line: 1, limit: 100 }), "{err}");
        let dup = "{\"type\":1,\"name\":\"./a\",\"payload\":null,\"position\":0}\n{\"type\":1,\"name\":\"a/\",\"payload\":null,\"position\":1}\n";
        let mut r = RecordReader::new(dup.as_bytes());
        assert!(r.next().unwrap().is_ok());
        assert!(matches!(r.next().unwrap(), Err(TarSplitError::Duplicate { .. })));
        assert!(r.next().is_none(), "the reader stops after an error");
    }
}
