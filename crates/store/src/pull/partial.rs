//! A partial pull of one zstd:chunked layer.
//!
//! The TOC says what every file's chunks are; the index says which of them the store
//! already has (whole files by SHA-256, foreign chunks by SHA-256, strata's own chunks by
//! BLAKE3); the rest is fetched by range ([`super::window`]). The layer tar stream is then
//! *replayed* from the verified tar-split, each file's bytes taken from local layers or
//! from the fetched frames, every chunk verified against its TOC digest and every file
//! against its TOC digest. The replayed stream goes through the same ingestion as a full
//! pull, so the result is byte for byte what a full pull would have produced, its DiffID is
//! checked against the config, and the tar-split is recorded from what was actually built.
//!
//! Memory stays bounded whatever the chunk sizes: the stream is produced in pieces of at
//! most [`PIECE`] bytes. A fetched chunk is decompressed as it is read and its digest checked
//! at its end (a mismatch fails the pull, so bytes already passed on do not matter). A
//! local chunk is verified *before* any of it is passed on, because a mismatch there is not
//! an error: a local chunk that changed or vanished since it was indexed is fetched on the
//! spot instead. Chunks up to [`LOCAL_IN_MEMORY`] are verified in memory, larger ones by a
//! first pass over the file.

use std::fs::File;
use std::io::{self, Read};
use std::ops::Range;
use std::os::unix::fs::{FileExt, OpenOptionsExt};
use std::path::{Path, PathBuf};

use strata_index::{Index, Key};
use strata_layer::tarsplit::{Record, TarSplitError};
use strata_registry::Client;
use strata_types::{Sha256Digest, Sha256Hasher};
use strata_zstd_chunked::{ChunkPlan, LayerPlan, RangeSource};

use super::window::Fetcher;
use crate::ingest::{Ingested, LayerSource};
use crate::paths::StorePaths;
use crate::publish::NewLoc;
use crate::resolve::Resolver;
use crate::{Progress, StoreError};

/// A blob's ranges from a registry: what a partial pull fetches chunks with.
#[derive(Clone, Debug)]
pub(crate) struct RegistryRanges {
    pub client: Client,
    pub repo: String,
    pub blob: Sha256Digest,
}

impl RangeSource for RegistryRanges {
    fn read_range(&mut self, range: Range<u64>) -> io::Result<Vec<u8>> {
        self.read_ranges(std::slice::from_ref(&range)).map(|mut v| v.pop().unwrap_or_default())
    }

    fn read_ranges(&mut self, ranges: &[Range<u64>]) -> io::Result<Vec<Vec<u8>>> {
        self.client.fetch_ranges(&self.repo, &self.blob, ranges).map_err(io::Error::other)
    }
}

/// A partial pull of one zstd:chunked layer as a [`LayerSource`]: the stream replayed from
/// the tar-split, each chunk local or fetched. Its figures: "reused" is what it did not have
/// to fetch; and the producer's chunk digests are indexed too, so later pulls of related
/// blobs from the same producer find these chunks by their SHA-256.
pub(crate) struct PartialSource<'a, R> {
    plan: &'a LayerPlan,
    sources: Option<SourcePlan>,
    fetch: R,
    blob_size: u64,
    progress: &'a dyn Progress,
    stats: ReplayStats,
}

impl<'a, R: RangeSource + Clone + Send + 'static> PartialSource<'a, R> {
    pub fn new(plan: &'a LayerPlan, sources: SourcePlan, fetch: R, blob_size: u64, progress: &'a dyn Progress) -> Self {
        PartialSource { plan, sources: Some(sources), fetch, blob_size, progress, stats: ReplayStats::default() }
    }
}

impl<R: RangeSource + Clone + Send + 'static> LayerSource for PartialSource<'_, R> {
    fn run(
        &mut self,
        consume: &mut dyn FnMut(&mut dyn Read) -> Result<Ingested, StoreError>,
    ) -> Result<Ingested, StoreError> {
        let sources = self.sources.take().expect("a partial source runs once");
        let mut replay =
            Replay::new(self.plan.tar_split_records(), self.plan, sources, self.fetch.clone(), self.progress);
        let ingested = consume(&mut replay);
        self.stats = replay.stats;
        ingested
    }

    fn finish(&mut self, ingested: &mut Ingested) {
        // The bar counts the chunks' compressed bytes; the rest of the blob is metadata.
        self.progress.inc(self.blob_size.saturating_sub(self.stats.compressed));
        let bytes = &mut ingested.bytes;
        bytes.reused = self.stats.local;
        bytes.reflinked = bytes.reflinked.min(bytes.reused);
        let staged = &mut ingested.staged;
        let file_no: std::collections::HashMap<&strata_types::RelPath, u32> =
            staged.files.iter().enumerate().map(|(n, f)| (&f.entry.path, n as u32)).collect();
        let mut extra = Vec::new();
        for e in &self.plan.entries {
            let Some(&n) = file_no.get(&e.entry.path) else { continue };
            if e.chunks.len() < 2 {
                continue;
            }
            for c in e.chunks.iter().filter(|c| !c.zeros) {
                extra.push(NewLoc { key: Key::ChunkSha256(c.digest), file: n, offset: c.file_offset, len: c.len });
            }
        }
        staged.locs.extend(extra);
    }
}

/// Largest piece of the stream produced at once.
const PIECE: usize = 256 << 10;
/// Local chunks up to this size are read and verified in memory; larger ones in two passes.
const LOCAL_IN_MEMORY: u64 = 4 << 20;
/// Chunks replayed between two progress messages.
const MESSAGE_EVERY: u64 = 256;

/// Where one chunk's bytes come from.
#[derive(Clone, Debug)]
enum Source {
    Local { path: PathBuf, offset: u64 },
    Remote,
    Zeros,
}

/// For every plan entry (same index), a source per chunk.
#[derive(Debug)]
pub(crate) struct SourcePlan {
    sources: Vec<Vec<Source>>,
    /// Compressed ranges to fetch, in blob order.
    pub remote: Vec<Range<u64>>,
    /// Uncompressed bytes planned from local layers.
    pub local_bytes: u64,
}

/// Decides, with one batched index lookup, where each chunk of the layer comes from.
pub(crate) fn plan_sources(index: &Index, paths: &StorePaths, plan: &LayerPlan) -> Result<SourcePlan, StoreError> {
    // Keys per entry: the file's SHA-256 (if any), then per chunk its SHA-256 and, for
    // strata-made blobs, its BLAKE3 as a chunk and as a whole file.
    let mut keys = Vec::new();
    let mut file_key: Vec<Option<usize>> = vec![None; plan.entries.len()];
    let mut chunk_keys: Vec<Vec<Range<usize>>> = vec![Vec::new(); plan.entries.len()];
    for (i, e) in plan.entries.iter().enumerate() {
        if e.chunks.is_empty() {
            continue;
        }
        if let Some(d) = e.digest {
            file_key[i] = Some(keys.len());
            keys.push(Key::FileSha256(d));
        }
        for c in &e.chunks {
            let from = keys.len();
            if !c.zeros {
                keys.push(Key::ChunkSha256(c.digest));
                if let Some(b) = c.blake3 {
                    keys.push(Key::Chunk(b));
                    keys.push(Key::File(b));
                }
            }
            chunk_keys[i].push(from..keys.len());
        }
    }
    let found = index.lookup(&keys)?;
    let mut resolver = Resolver::new(index, paths);
    let mut sources = Vec::with_capacity(plan.entries.len());
    let mut local_bytes = 0;
    let mut remote = Vec::new();
    for (i, e) in plan.entries.iter().enumerate() {
        let mut v = Vec::with_capacity(e.chunks.len());
        let whole = file_key[i]
            .and_then(|k| found[k].iter().find_map(|l| if l.len == e.entry.size { resolver.path(l) } else { None }));
        for (c, ks) in e.chunks.iter().zip(&chunk_keys[i]) {
            let src = if c.zeros {
                Source::Zeros
            } else if let Some(p) = &whole {
                Source::Local { path: p.clone(), offset: c.file_offset }
            } else {
                found[ks.clone()]
                    .iter()
                    .flatten()
                    .filter(|l| l.len == c.len)
                    .find_map(|l| resolver.path(l).map(|path| Source::Local { path, offset: l.offset }))
                    .unwrap_or(Source::Remote)
            };
            match &src {
                Source::Local { .. } => local_bytes += c.len,
                Source::Remote => remote.push(c.blob_range.clone()),
                Source::Zeros => {}
            }
            v.push(src);
        }
        sources.push(v);
    }
    Ok(SourcePlan { sources, remote, local_bytes })
}

/// Counters of a replay.
#[derive(Clone, Copy, Debug, Default)]
pub(crate) struct ReplayStats {
    /// Uncompressed bytes taken from local layers.
    pub local: u64,
    /// Uncompressed bytes decompressed from fetched frames.
    pub fetched: u64,
    /// Local chunks that failed verification and were fetched instead.
    pub refetched: u64,
    /// Compressed bytes of the chunks replayed (for the progress bar).
    pub compressed: u64,
    /// Chunks replayed.
    pub chunks: u64,
}

/// How the bytes of the chunk being replayed are produced.
enum ChunkReader {
    /// A chunk the TOC marks as zeros: produced without fetching, and still checked against
    /// its TOC digest (a single-chunk file's digest is its chunk's: without this, a TOC could
    /// make a partial pull give a file a full pull would not).
    Zeros { left: u64, hasher: Sha256Hasher },
    /// Verified bytes in memory.
    Verified { bytes: Vec<u8>, pos: usize },
    /// A large local chunk already verified by a first pass: read it again.
    LocalStream { file: File, offset: u64, left: u64 },
    /// Fetched frames being decompressed; the digest is checked at the end.
    Decode {
        dec: zstd::stream::read::Decoder<'static, io::BufReader<io::Cursor<Vec<u8>>>>,
        left: u64,
        hasher: Sha256Hasher,
    },
}

/// The file being replayed.
struct Current {
    entry: usize,
    chunk: usize,
    reader: Option<ChunkReader>,
    produced: u64,
    /// The file's SHA-256, for files of several chunks (one chunk: its digest is the file's).
    hasher: Option<Sha256Hasher>,
}

/// The layer's tar stream, replayed from the tar-split with file bytes from local layers and
/// fetched chunks, in pieces of bounded size. Implements `Read`.
pub(crate) struct Replay<'a, I> {
    records: I,
    plan: &'a LayerPlan,
    sources: Vec<Vec<Source>>,
    /// The plan entry the next tar-split file record describes (the plan has one entry per
    /// file record, in order).
    next_entry: usize,
    fetcher: Fetcher,
    /// For a local chunk that changed or vanished since it was indexed: fetched after all.
    refetch: Box<dyn RangeSource + Send + 'a>,
    current: Option<Current>,
    /// The last local file opened (consecutive chunks mostly come from the same file).
    open: Option<(PathBuf, File)>,
    progress: &'a dyn Progress,
    buf: Vec<u8>,
    pos: usize,
    pub stats: ReplayStats,
}

fn bad(msg: String) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, msg)
}

impl<'a, I: Iterator<Item = Result<Record, TarSplitError>>> Replay<'a, I> {
    pub fn new<R: RangeSource + Clone + Send + 'static>(
        records: I,
        plan: &'a LayerPlan,
        sources: SourcePlan,
        fetch: R,
        progress: &'a dyn Progress,
    ) -> Self {
        let fetcher = Fetcher::start(fetch.clone(), sources.remote);
        Replay {
            records,
            plan,
            sources: sources.sources,
            next_entry: 0,
            fetcher,
            refetch: Box::new(fetch),
            current: None,
            open: None,
            progress,
            buf: Vec::new(),
            pos: 0,
            stats: ReplayStats::default(),
        }
    }

    fn chunk_error(&self, entry: usize, c: &ChunkPlan) -> io::Error {
        bad(format!(
            "{}: the chunk at offset {} (blob bytes {}..{}) does not have the digest {} the TOC gives it",
            self.plan.entries[entry].raw_name, c.file_offset, c.blob_range.start, c.blob_range.end, c.digest
        ))
    }

    /// The local file at `path`, reusing the last one opened.
    fn local_file(&mut self, path: &Path) -> Option<&File> {
        if self.open.as_ref().is_none_or(|(p, _)| p != path) {
            let f = File::options().read(true).custom_flags(libc::O_NOFOLLOW).open(path).ok()?;
            self.open = Some((path.to_owned(), f));
        }
        self.open.as_ref().map(|(_, f)| f)
    }

    /// A reader for a local chunk that matches its digest, or `None` (gone or changed).
    fn local_chunk(&mut self, path: &Path, offset: u64, c: &ChunkPlan) -> Option<ChunkReader> {
        let f = self.local_file(path)?;
        if c.len <= LOCAL_IN_MEMORY {
            let mut bytes = vec![0u8; c.len as usize];
            f.read_exact_at(&mut bytes, offset).ok()?;
            return (Sha256Digest::of(&bytes) == c.digest).then_some(ChunkReader::Verified { bytes, pos: 0 });
        }
        let mut h = Sha256Hasher::new();
        let mut piece = vec![0u8; PIECE];
        let mut done = 0;
        while done < c.len {
            let n = (c.len - done).min(PIECE as u64) as usize;
            f.read_exact_at(&mut piece[..n], offset + done).ok()?;
            h.update(&piece[..n]);
            done += n as u64;
        }
        let file = f.try_clone().ok()?;
        (h.finalize() == c.digest).then_some(ChunkReader::LocalStream { file, offset, left: c.len })
    }

    /// A decoder over a chunk's fetched frames.
    fn decoder(frames: Vec<u8>, c: &ChunkPlan) -> io::Result<ChunkReader> {
        let mut dec = zstd::stream::read::Decoder::new(io::Cursor::new(frames))?;
        dec.window_log_max(strata_zstd_chunked::bounded::MAX_WINDOW_LOG)?;
        Ok(ChunkReader::Decode { dec, left: c.len, hasher: Sha256Hasher::new() })
    }

    /// Opens the reader of the current file's next chunk; false when the file is complete
    /// (after checking its length and digest).
    fn next_chunk(&mut self) -> io::Result<bool> {
        let plan = self.plan;
        let cur = self.current.as_mut().expect("a file is being replayed");
        let (entry, k) = (cur.entry, cur.chunk);
        let e = &plan.entries[entry];
        let Some(c) = e.chunks.get(k) else {
            let cur = self.current.take().expect("current file");
            if cur.produced != e.entry.size {
                return Err(bad(format!(
                    "{}: chunks give {} bytes, the TOC says {}",
                    e.raw_name, cur.produced, e.entry.size
                )));
            }
            if let (Some(h), Some(d)) = (cur.hasher, e.digest)
                && h.finalize() != d
            {
                return Err(bad(format!("{}: content does not have the TOC digest {d}", e.raw_name)));
            }
            return Ok(false);
        };
        cur.chunk += 1;
        self.stats.compressed += c.blob_range.end - c.blob_range.start;
        let src = std::mem::replace(&mut self.sources[entry][k], Source::Zeros);
        let reader = match src {
            Source::Zeros => ChunkReader::Zeros { left: c.len, hasher: Sha256Hasher::new() },
            Source::Local { path, offset } => match self.local_chunk(&path, offset, c) {
                Some(r) => {
                    self.stats.local += c.len;
                    r
                }
                None => {
                    // Gone or changed since it was indexed: fetch it after all.
                    self.stats.refetched += 1;
                    self.stats.fetched += c.len;
                    let frames = self.refetch.read_range(c.blob_range.clone())?;
                    Self::decoder(frames, c)?
                }
            },
            Source::Remote => {
                self.stats.fetched += c.len;
                let frames = self.fetcher.get(&c.blob_range).map_err(io::Error::other)?;
                Self::decoder(frames, c)?
            }
        };
        self.current.as_mut().expect("current file").reader = Some(reader);
        self.stats.chunks += 1;
        if self.stats.chunks % MESSAGE_EVERY == 1 {
            self.progress.message(&format!(
                "fetched {} reused {}",
                super::short_bytes(self.stats.fetched),
                super::short_bytes(self.stats.local)
            ));
        }
        self.progress.inc(c.blob_range.end - c.blob_range.start);
        Ok(true)
    }

    /// Fills `buf` with the next piece of the current chunk; false when the chunk is done.
    fn chunk_piece(&mut self) -> io::Result<bool> {
        let cur = self.current.as_mut().expect("current file");
        let (entry, k) = (cur.entry, cur.chunk - 1);
        let Some(reader) = cur.reader.as_mut() else { return Ok(false) };
        self.buf.clear();
        let finished = match reader {
            ChunkReader::Zeros { left, hasher } => {
                let n = (*left).min(PIECE as u64) as usize;
                self.buf.resize(n, 0);
                hasher.update(&self.buf);
                *left -= n as u64;
                if n == 0 {
                    let c = &self.plan.entries[entry].chunks[k];
                    if std::mem::take(hasher).finalize() != c.digest {
                        return Err(self.chunk_error(entry, c));
                    }
                }
                n == 0
            }
            ChunkReader::Verified { bytes, pos } => {
                let n = (bytes.len() - *pos).min(PIECE);
                self.buf.extend_from_slice(&bytes[*pos..*pos + n]);
                *pos += n;
                n == 0
            }
            ChunkReader::LocalStream { file, offset, left } => {
                let n = (*left).min(PIECE as u64) as usize;
                self.buf.resize(n, 0);
                file.read_exact_at(&mut self.buf, *offset)?;
                *offset += n as u64;
                *left -= n as u64;
                n == 0
            }
            ChunkReader::Decode { dec, left, hasher } => {
                // One byte more than is due, to notice frames that inflate past the chunk.
                let want = (*left + 1).min(PIECE as u64) as usize;
                self.buf.resize(want, 0);
                let n = read_some(dec, &mut self.buf).map_err(|e| {
                    bad(format!("{}: chunk {k} does not decompress: {e}", self.plan.entries[entry].raw_name))
                })?;
                self.buf.truncate(n);
                if n as u64 > *left {
                    return Err(self.chunk_error(entry, &self.plan.entries[entry].chunks[k]));
                }
                hasher.update(&self.buf);
                *left -= n as u64;
                if n == 0 {
                    let c = &self.plan.entries[entry].chunks[k];
                    let h = std::mem::take(hasher);
                    if *left != 0 || h.finalize() != c.digest {
                        return Err(self.chunk_error(entry, c));
                    }
                }
                n == 0
            }
        };
        if finished {
            cur.reader = None;
            return Ok(false);
        }
        cur.produced += self.buf.len() as u64;
        if let Some(h) = cur.hasher.as_mut() {
            h.update(&self.buf);
        }
        Ok(true)
    }

    /// Refills `buf` with the next piece of the stream; false at the end.
    fn refill(&mut self) -> io::Result<bool> {
        self.pos = 0;
        self.buf.clear();
        loop {
            if self.current.is_none() {
                break;
            }
            if self.chunk_piece()? {
                return Ok(true);
            }
            if !self.next_chunk()? {
                break;
            }
        }
        let Some(rec) = self.records.next() else { return Ok(false) };
        match rec.map_err(|e| bad(e.to_string()))? {
            Record::Segment(b) => self.buf = b,
            Record::File { name, size, .. } => {
                let i = self.next_entry;
                self.next_entry += 1;
                let e = self.plan.entries.get(i).ok_or_else(|| {
                    bad(format!("tar-split has more entries than the TOC ({:?})", String::from_utf8_lossy(&name)))
                })?;
                if e.entry.size != size {
                    return Err(bad(format!("{}: tar-split size {size} differs from the TOC's", e.raw_name)));
                }
                if size > 0 {
                    let hasher = (e.chunks.len() > 1).then(Sha256Hasher::new);
                    self.current = Some(Current { entry: i, chunk: 0, reader: None, produced: 0, hasher });
                    if !self.next_chunk()? {
                        return Err(bad(format!("{}: no chunks for {size} bytes", e.raw_name)));
                    }
                }
            }
        }
        Ok(true)
    }
}

/// Reads until `buf` is full or the reader ends; returns the bytes read.
fn read_some(r: &mut impl Read, buf: &mut [u8]) -> io::Result<usize> {
    let mut n = 0;
    while n < buf.len() {
        match r.read(&mut buf[n..]) {
            Ok(0) => break,
            Ok(k) => n += k,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(n)
}

impl<I: Iterator<Item = Result<Record, TarSplitError>>> Read for Replay<'_, I> {
    fn read(&mut self, out: &mut [u8]) -> io::Result<usize> {
        while self.pos >= self.buf.len() {
            if !self.refill()? {
                return Ok(0);
            }
        }
        let n = out.len().min(self.buf.len() - self.pos);
        out[..n].copy_from_slice(&self.buf[self.pos..self.pos + n]);
        self.pos += n;
        Ok(n)
    }
}
