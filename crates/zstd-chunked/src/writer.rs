//! [`ZstdChunkedWriter`]: a [`TarOut`] sink that writes a zstd:chunked blob.
//!
//! Metadata between files becomes its own frames, every regular file's content is cut at
//! strata's FastCDC boundaries and each chunk becomes one frame, compressed in parallel. The
//! TOC (built from Go's view of each header so containers/storage's consistency check passes),
//! the tar-split and the footer follow as skippable frames. See `docs/zstd-chunked.md`.

use std::collections::BTreeMap;
use std::io::{self, Write};

use strata_chunker::cdc;
use strata_layer::TarOut;
use strata_layer::parse::{HeaderTracker, Limits as TarLimits};
use strata_types::{Sha256Digest, Sha256Hasher};

use crate::annotations::{ChunkedAnnotations, Position};
use crate::consistency::{HeaderError, toc_entry_from_header};
use crate::frame::{Footer, MANIFEST_TYPE_CRFS, SKIPPABLE_HEADER_LEN, skippable_header};
use crate::goheader::{self, GoHeaderError, GoParsed};
use crate::pipeline::{ChunkDone, ChunkInput, Done, Pipeline};
use crate::tarsplit_sink::TarSplitSink;
use crate::toc::{ChunkType, TOC_VERSION, TocEntry, TocType};

/// Metadata frames are cut at this size (readers never locate them; this bounds memory).
const META_FRAME_MAX: usize = 1 << 20;
/// File content is chunked in windows of this size (plus one maximal chunk of lookahead).
const CDC_WINDOW: usize = 8 << 20;
/// Largest piece of one `file_data` call appended to the window at a time.
const FEED_PIECE: usize = 1 << 20;

/// Tuning of [`ZstdChunkedWriter`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct WriterOptions {
    /// zstd level for data, TOC and tar-split.
    pub level: i32,
    /// Uncompressed bytes of frames queued for compression before the writer waits.
    pub max_in_flight: usize,
    /// Smallest all-zero chunk written as a `zeros` chunk (containers/storage uses 1 KiB).
    pub zeros_min: usize,
}

impl Default for WriterOptions {
    fn default() -> Self {
        WriterOptions { level: 3, max_in_flight: 64 << 20, zeros_min: 1024 }
    }
}

/// What [`ZstdChunkedWriter::finish`] reports.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct WriteResult {
    /// sha256 of the whole blob: the layer descriptor's digest.
    pub blob_digest: Sha256Digest,
    pub blob_size: u64,
    /// sha256 of the uncompressed tar stream.
    pub diff_id: Sha256Digest,
    /// sha256 of the compressed TOC (the manifest-checksum annotation).
    pub toc_digest: Sha256Digest,
    /// The annotations for the layer descriptor.
    pub annotations: BTreeMap<String, String>,
    /// Length of the uncompressed tar stream.
    pub tar_size: u64,
    /// Tar entries written.
    pub entries: u64,
    /// Chunks of file content (frames holding file data).
    pub chunks: u64,
}

/// Why the writer refused its input.
#[derive(Debug, thiserror::Error)]
pub enum WriteError {
    #[error("cannot interpret the header of tar entry {name:?} as containers/storage would: {source}")]
    GoHeader { name: String, source: GoHeaderError },
    #[error(transparent)]
    Unrepresentable(#[from] HeaderError),
    #[error("tar entry {name:?}: {bytes} header bytes were left over after its header")]
    HeaderLayout { name: String, bytes: usize },
    #[error("a TOC time cannot be written: {0}")]
    Toc(#[source] serde_json::Error),
    #[error("the writer failed earlier and cannot continue")]
    Poisoned,
    #[error("finish() called in the middle of an entry")]
    Unfinished,
}

impl From<WriteError> for io::Error {
    fn from(e: WriteError) -> io::Error {
        io::Error::new(io::ErrorKind::InvalidData, e)
    }
}

/// The blob being written, hashed and counted on the way out.
struct Output<W> {
    inner: W,
    hasher: Sha256Hasher,
}

impl<W: Write> Output<W> {
    fn put(&mut self, bytes: &[u8]) -> io::Result<()> {
        self.inner.write_all(bytes)?;
        self.hasher.update(bytes);
        Ok(())
    }
    fn offset(&self) -> u64 {
        self.hasher.len()
    }
}

/// The TOC JSON streamed into a zstd encoder as entries complete.
struct TocStream {
    enc: zstd::stream::write::Encoder<'static, Vec<u8>>,
    uncompressed: u64,
    entries: u64,
}

impl TocStream {
    fn new(level: i32) -> io::Result<Self> {
        let mut t =
            TocStream { enc: zstd::stream::write::Encoder::new(Vec::new(), level)?, uncompressed: 0, entries: 0 };
        t.raw(format!("{{\"version\":{TOC_VERSION},\"entries\":[").as_bytes())?;
        Ok(t)
    }
    fn raw(&mut self, b: &[u8]) -> io::Result<()> {
        self.uncompressed += b.len() as u64;
        self.enc.write_all(b)
    }
    fn push(&mut self, e: &TocEntry) -> io::Result<()> {
        let json = serde_json::to_vec(e).map_err(WriteError::Toc)?;
        if self.entries > 0 {
            self.raw(b",")?;
        }
        self.entries += 1;
        self.raw(&json)
    }
    /// Closes the document; returns the compressed TOC and its uncompressed length.
    fn finish(mut self, tar_split_digest: &Sha256Digest) -> io::Result<(Vec<u8>, u64)> {
        self.raw(format!("],\"tarSplitDigest\":\"{tar_split_digest}\"}}").as_bytes())?;
        Ok((self.enc.finish()?, self.uncompressed))
    }
}

/// The regular file whose content is being written.
struct CurrentFile {
    meta: TocEntry,
    size: u64,
    /// Whole-file sha256, computed as the data streams by, for files larger than the
    /// chunking window. Smaller files are held whole and hashed on a worker.
    hasher: Option<Sha256Hasher>,
    /// Content not yet cut into chunks; starts at file offset `window_offset`.
    window: Vec<u8>,
    window_offset: u64,
}

/// Queued behind a file's last frame: its TOC entry, completed once the frames are out.
struct EntryMarker {
    meta: TocEntry,
    digest: Option<Sha256Digest>,
    has_data: bool,
}

/// Writes a zstd:chunked blob to `W` from a tar stream given as [`TarOut`] calls.
pub struct ZstdChunkedWriter<W: Write> {
    out: Output<W>,
    opts: WriterOptions,
    pipeline: Pipeline<EntryMarker>,
    tracker: HeaderTracker,
    tar_split: TarSplitSink,
    toc: TocStream,
    diff_id: Sha256Hasher,
    /// Metadata bytes not yet submitted as a frame.
    meta: Vec<u8>,
    /// Non-payload bytes since the last payload, for Go's view of the next header.
    hdr: Vec<u8>,
    hdr_start: u64,
    stream_offset: u64,
    cur: Option<CurrentFile>,
    /// Chunks of the file being emitted: blob offset of the frame and the chunk's facts.
    chunks: Vec<(u64, ChunkDone)>,
    /// The whole-file digest computed on a worker for the file being emitted.
    file_digest: Option<Sha256Digest>,
    chunk_count: u64,
    failed: bool,
}

impl<W: Write> std::fmt::Debug for ZstdChunkedWriter<W> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ZstdChunkedWriter")
            .field("written", &self.out.offset())
            .field("stream_offset", &self.stream_offset)
            .field("in_flight", &self.pipeline.held())
            .finish()
    }
}

impl<W: Write> ZstdChunkedWriter<W> {
    pub fn new(inner: W, opts: WriterOptions) -> io::Result<Self> {
        Ok(ZstdChunkedWriter {
            out: Output { inner, hasher: Sha256Hasher::new() },
            opts,
            pipeline: Pipeline::new(opts.level, opts.max_in_flight),
            tracker: HeaderTracker::new(TarLimits::default()),
            tar_split: TarSplitSink::new(opts.level)?,
            toc: TocStream::new(opts.level)?,
            diff_id: Sha256Hasher::new(),
            meta: Vec::new(),
            hdr: Vec::new(),
            hdr_start: 0,
            stream_offset: 0,
            cur: None,
            chunks: Vec::new(),
            file_digest: None,
            chunk_count: 0,
            failed: false,
        })
    }

    /// Runs `f`, poisoning the writer if it fails: a half-written blob is never completed.
    fn guard<T>(&mut self, f: impl FnOnce(&mut Self) -> io::Result<T>) -> io::Result<T> {
        if self.failed {
            return Err(WriteError::Poisoned.into());
        }
        let r = f(self);
        self.failed = r.is_err();
        r
    }

    fn handle(&mut self, done: Done<EntryMarker>) -> io::Result<()> {
        match done {
            Done::Frame(f) => {
                let start = self.out.offset();
                self.out.put(&f.bytes)?;
                if let Some(c) = f.chunk {
                    self.chunks.push((start, c));
                    self.chunk_count += 1;
                }
                Ok(())
            }
            Done::FileDigest(d) => {
                self.file_digest = Some(d);
                Ok(())
            }
            Done::Marker(m) => self.emit_entry(m),
        }
    }

    /// Writes finished frames; waits for the oldest while the window is full.
    fn drain(&mut self) -> io::Result<()> {
        while let Some(done) = self.pipeline.next(false) {
            self.handle(done?)?;
        }
        while self.pipeline.is_full() {
            let done = self.pipeline.next(true).expect("a full pipeline is not empty");
            self.handle(done?)?;
        }
        Ok(())
    }

    fn emit_entry(&mut self, m: EntryMarker) -> io::Result<()> {
        let mut meta = m.meta;
        if !m.has_data {
            return self.toc.push(&meta);
        }
        let chunks = std::mem::take(&mut self.chunks);
        let (first_offset, first) = chunks.first().cloned().expect("a file with data has chunks");
        let worker_digest = self.file_digest.take();
        // One chunk: the chunk's digest is the file's.
        meta.digest = Some(m.digest.or(worker_digest).unwrap_or(first.sha256));
        meta.offset = first_offset;
        meta.end_offset = self.out.offset();
        let chunk_type = |c: &ChunkDone| if c.zeros { ChunkType::Zeros } else { ChunkType::Data };
        if chunks.len() == 1 {
            meta.chunk_type = chunk_type(&first);
            meta.strata_blake3 = Some(first.blake3);
            return self.toc.push(&meta);
        }
        meta.chunk_size = first.len;
        meta.chunk_digest = Some(first.sha256);
        meta.chunk_type = chunk_type(&first);
        meta.strata_blake3 = Some(first.blake3);
        self.toc.push(&meta)?;
        for (offset, c) in &chunks[1..] {
            let e = TocEntry {
                kind: Some(TocType::Chunk),
                name: meta.name.clone(),
                offset: *offset,
                chunk_size: c.len,
                chunk_offset: c.file_offset,
                chunk_digest: Some(c.sha256),
                chunk_type: chunk_type(c),
                strata_blake3: Some(c.blake3),
                ..TocEntry::default()
            };
            self.toc.push(&e)?;
        }
        Ok(())
    }

    fn flush_meta(&mut self) -> io::Result<()> {
        if !self.meta.is_empty() {
            self.pipeline.submit_metadata(std::mem::take(&mut self.meta));
            self.drain()?;
        }
        Ok(())
    }

    /// Cuts the current file's window into chunks. Only chunks whose cut could not change
    /// with more data (start + MAX_SIZE within the window) are taken unless `last`, so the
    /// result equals `cdc::boundaries` over the whole file. The window is shared with the
    /// chunk jobs, not copied; the uncut rest starts the next window.
    fn cut(&mut self, last: bool) -> io::Result<()> {
        let Some(cur) = self.cur.as_mut() else { return Ok(()) };
        let bounds = cdc::boundaries(&cur.window);
        let keep = if last {
            bounds.len()
        } else {
            bounds.iter().take_while(|r| r.start + cdc::MAX_SIZE <= cur.window.len()).count()
        };
        let taken = bounds[..keep].last().map_or(0, |r| r.end);
        let rest = cur.window[taken..].to_vec();
        let whole_file = last && cur.window_offset == 0;
        let buffer = std::sync::Arc::new(std::mem::replace(&mut cur.window, rest));
        for r in &bounds[..keep] {
            let input = ChunkInput {
                file_offset: cur.window_offset + r.start as u64,
                buffer: buffer.clone(),
                range: r.clone(),
                zeros_min: self.opts.zeros_min,
            };
            self.pipeline.submit_chunk(input);
        }
        cur.window_offset += taken as u64;
        if whole_file && keep > 1 && cur.hasher.is_none() {
            self.pipeline.submit_file_digest(buffer);
        }
        self.drain()
    }

    fn header_toc_entry(&mut self, name: &[u8]) -> io::Result<TocEntry> {
        let header = self.tracker.current().expect("file_begin succeeded");
        let show = || String::from_utf8_lossy(name).into_owned();
        let start = usize::try_from(header.offset - self.hdr_start).expect("header bytes are buffered");
        let bytes = &self.hdr[start..];
        match goheader::parse(bytes, TarLimits::default().max_extension) {
            Ok(GoParsed::Entry { header, consumed }) if consumed == bytes.len() => {
                Ok(toc_entry_from_header(&header).map_err(WriteError::from)?)
            }
            Ok(GoParsed::Entry { consumed, .. }) => {
                Err(WriteError::HeaderLayout { name: show(), bytes: bytes.len() - consumed }.into())
            }
            Ok(GoParsed::End) => Err(WriteError::HeaderLayout { name: show(), bytes: bytes.len() }.into()),
            Err(source) => Err(WriteError::GoHeader { name: show(), source }.into()),
        }
    }

    /// Completes the blob: remaining frames, TOC, tar-split, footer. Returns the inner
    /// writer (flushed) and the blob's facts.
    pub fn finish(mut self) -> io::Result<(W, WriteResult)> {
        if self.failed {
            return Err(WriteError::Poisoned.into());
        }
        if self.cur.is_some() {
            return Err(WriteError::Unfinished.into());
        }
        self.tracker.finish()?;
        self.flush_meta()?;
        while let Some(done) = self.pipeline.next(true) {
            self.handle(done?)?;
        }
        let (tar_split, tar_split_len) = self.tar_split.finish()?;
        let tar_split_digest = Sha256Digest::of(&tar_split);
        let (toc, toc_len) = self.toc.finish(&tar_split_digest)?;
        let toc_digest = Sha256Digest::of(&toc);
        let toc_pos = Position {
            offset: self.out.offset() + SKIPPABLE_HEADER_LEN,
            length: toc.len() as u64,
            uncompressed_length: toc_len,
        };
        self.out.put(&skippable_header(toc.len()).map_err(io::Error::other)?)?;
        self.out.put(&toc)?;
        let ts_pos = Position {
            offset: self.out.offset() + SKIPPABLE_HEADER_LEN,
            length: tar_split.len() as u64,
            uncompressed_length: tar_split_len,
        };
        self.out.put(&skippable_header(tar_split.len()).map_err(io::Error::other)?)?;
        self.out.put(&tar_split)?;
        let footer = Footer {
            toc_offset: toc_pos.offset,
            toc_length: toc_pos.length,
            toc_uncompressed_length: toc_pos.uncompressed_length,
            manifest_type: MANIFEST_TYPE_CRFS,
            tar_split_offset: ts_pos.offset,
            tar_split_length: ts_pos.length,
            tar_split_uncompressed_length: ts_pos.uncompressed_length,
        };
        self.out.put(&footer.encode())?;
        self.out.inner.flush()?;
        let annotations = ChunkedAnnotations { toc_digest, toc: toc_pos, tar_split: Some(ts_pos) }.to_map();
        let result = WriteResult {
            blob_size: self.out.offset(),
            blob_digest: self.out.hasher.finalize(),
            diff_id: self.diff_id.finalize(),
            toc_digest,
            annotations,
            tar_size: self.stream_offset,
            entries: self.tracker.entries(),
            chunks: self.chunk_count,
        };
        Ok((self.out.inner, result))
    }
}

impl<W: Write> TarOut for ZstdChunkedWriter<W> {
    fn segment(&mut self, bytes: &[u8]) -> io::Result<()> {
        self.guard(|w| {
            w.tracker.segment(bytes)?;
            w.tar_split.segment(bytes)?;
            w.diff_id.update(bytes);
            w.stream_offset += bytes.len() as u64;
            if w.tracker.at_end() {
                w.hdr.clear();
            } else {
                w.hdr.extend_from_slice(bytes);
            }
            w.meta.extend_from_slice(bytes);
            if w.meta.len() >= META_FRAME_MAX {
                w.flush_meta()?;
            }
            Ok(())
        })
    }

    fn file_begin(&mut self, name: &[u8], size: u64) -> io::Result<()> {
        self.guard(|w| {
            w.tracker.file_begin(name, size)?;
            let meta = w.header_toc_entry(name)?;
            w.tar_split.file_begin(name, size)?;
            w.hdr.clear();
            if size > 0 {
                w.flush_meta()?;
            }
            let hasher = (size > CDC_WINDOW as u64).then(Sha256Hasher::new);
            w.cur = Some(CurrentFile { meta, size, hasher, window: Vec::new(), window_offset: 0 });
            Ok(())
        })
    }

    fn file_data(&mut self, bytes: &[u8]) -> io::Result<()> {
        self.guard(|w| {
            w.tracker.file_data(bytes)?;
            w.tar_split.file_data(bytes)?;
            w.diff_id.update(bytes);
            w.stream_offset += bytes.len() as u64;
            for piece in bytes.chunks(FEED_PIECE) {
                let cur = w.cur.as_mut().expect("the tracker accepted payload, so an entry is open");
                if let Some(h) = cur.hasher.as_mut() {
                    h.update(piece);
                }
                cur.window.extend_from_slice(piece);
                if cur.hasher.is_some() && cur.window.len() >= CDC_WINDOW {
                    w.cut(false)?;
                }
            }
            Ok(())
        })
    }

    fn file_end(&mut self) -> io::Result<()> {
        self.guard(|w| {
            w.tracker.file_end()?;
            w.tar_split.file_end()?;
            w.cut(true)?;
            let cur = w.cur.take().expect("the tracker accepted file_end, so an entry is open");
            let marker =
                EntryMarker { meta: cur.meta, digest: cur.hasher.map(Sha256Hasher::finalize), has_data: cur.size > 0 };
            w.pipeline.submit_marker(marker);
            w.hdr_start = w.stream_offset;
            w.drain()
        })
    }
}
