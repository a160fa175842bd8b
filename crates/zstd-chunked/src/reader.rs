//! Reading and validating a zstd:chunked layer's metadata: from the descriptor's annotations
//! and byte ranges of the blob to a [`LayerPlan`].
//!
//! Only the TOC and the tar-split are fetched. Everything that can be checked without the
//! file contents is checked here (see `docs/zstd-chunked.md` §5); the caller verifies each
//! chunk it fetches or reuses against its sha256 and the regenerated tar against the DiffID.

use std::collections::BTreeMap;
use std::fs::File;
use std::io::{self, BufReader, Read};
use std::ops::Range;
use std::os::unix::fs::FileExt;

use strata_layer::parse::{HeaderParser, Limits as TarLimits, Parsed, padding};
use strata_layer::tarsplit::{Record, RecordReader, TarSplitError};
use strata_types::Sha256Digest;

use crate::annotations::{AnnotationError, ChunkedAnnotations, LayerFormat, Position, detect};
use crate::bounded::{self, DecompressError};
use crate::consistency::{Mismatch, check_matches};
use crate::frame::{SKIPPABLE_HEADER_LEN, decode_skippable};
use crate::goheader::{self, GoHeaderError, GoParsed};
use crate::plan::{Limits, PlanEntry};
use crate::toc::{TOC_VERSION, Toc};
use crate::toc_check::{TocError, TocFile, check_entries};

/// Random access to a blob's bytes: a local file, a registry (HTTP range requests), ...
pub trait RangeSource {
    /// Exactly the bytes of `range`; a short answer is an error.
    fn read_range(&mut self, range: Range<u64>) -> io::Result<Vec<u8>>;

    /// Several ranges at once (a registry client sends one multi-range request).
    fn read_ranges(&mut self, ranges: &[Range<u64>]) -> io::Result<Vec<Vec<u8>>> {
        ranges.iter().map(|r| self.read_range(r.clone())).collect()
    }
}

impl RangeSource for File {
    fn read_range(&mut self, range: Range<u64>) -> io::Result<Vec<u8>> {
        let len = usize::try_from(range.end.saturating_sub(range.start)).map_err(io::Error::other)?;
        let mut buf = vec![0u8; len];
        self.read_exact_at(&mut buf, range.start)?;
        Ok(buf)
    }
}

impl RangeSource for &[u8] {
    fn read_range(&mut self, range: Range<u64>) -> io::Result<Vec<u8>> {
        let (s, e) = (usize::try_from(range.start), usize::try_from(range.end));
        match (s, e) {
            (Ok(s), Ok(e)) if s <= e && e <= self.len() => Ok(self[s..e].to_vec()),
            _ => Err(io::Error::new(
                io::ErrorKind::UnexpectedEof,
                format!("range {range:?} outside {} bytes", self.len()),
            )),
        }
    }
}

/// Why a layer must be pulled in full rather than by chunks.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FullPullReason {
    /// No zstd:chunked annotations.
    NotChunked,
    /// Only the obsolete `io.containers.zstd-chunked.*` annotations.
    LegacyFormat,
    /// The TOC has no `tarSplitDigest`: nothing binds it to the DiffID.
    NoTarSplit,
}

/// Why a layer's metadata was refused.
#[derive(Debug, thiserror::Error)]
pub enum ReadError {
    #[error("layer cannot be pulled by chunks ({0:?}); pull it in full")]
    NeedsFullPull(FullPullReason),
    #[error(transparent)]
    Annotations(#[from] AnnotationError),
    #[error("reading {what} (bytes {range:?}) of the blob: {source}")]
    Io { what: &'static str, range: Range<u64>, source: io::Error },
    #[error("{what} at {position} does not lie inside the {blob_size}-byte blob after a skippable frame header")]
    OutOfBlob { what: &'static str, position: Position, blob_size: u64 },
    #[error("TOC and tar-split positions overlap ({toc} and {tar_split})")]
    Overlap { toc: Position, tar_split: Position },
    #[error("{what} is {size} bytes compressed; the limit is {limit}")]
    TooLarge { what: &'static str, size: u64, limit: u64 },
    #[error("{what} is not inside a skippable frame of exactly its length: {why}")]
    NotSkippable { what: &'static str, why: String },
    #[error("TOC digest is {found}, the manifest-checksum annotation says {expected}")]
    TocDigest { expected: Sha256Digest, found: Sha256Digest },
    #[error(transparent)]
    Decompress(#[from] DecompressError),
    #[error("TOC is not valid: {0}")]
    TocJson(#[source] serde_json::Error),
    #[error("TOC version is {0}; only version 1 exists")]
    TocVersion(u64),
    #[error("the TOC names a tar-split but the tarsplit-position annotation is missing")]
    MissingTarSplitPosition,
    #[error("tar-split digest is {found}, the TOC says {expected}")]
    TarSplitDigest { expected: Sha256Digest, found: Sha256Digest },
    #[error(transparent)]
    Toc(#[from] TocError),
    #[error("tar-split is not valid: {0}")]
    TarSplit(String),
    #[error("tar-split header #{index} cannot be interpreted: {source}")]
    TarSplitHeader { index: usize, source: GoHeaderError },
    #[error("TOC and tar-split disagree: {0}")]
    Disagree(String),
    #[error(transparent)]
    Mismatch(#[from] Mismatch),
}

/// A validated layer: its entries, their data's location, and the verified tar-split.
#[derive(Debug)]
pub struct LayerPlan {
    /// The TOC digest (the manifest-checksum annotation).
    pub toc_digest: Sha256Digest,
    /// Every tar entry in tar order.
    pub entries: Vec<PlanEntry>,
    /// Length of the layer tar that the tar-split and the files rebuild.
    pub tar_size: u64,
    tar_split: Vec<u8>,
    tar_split_len: u64,
    max_record: usize,
}

impl LayerPlan {
    /// The verified compressed tar-split (its sha256 is the TOC's `tarSplitDigest`).
    pub fn compressed_tar_split(&self) -> &[u8] {
        &self.tar_split
    }

    /// The tar-split's JSON lines, decompressed as a stream (bounded to the verified length).
    pub fn tar_split_json(&self) -> impl Read + '_ {
        bounded::decoder(&self.tar_split, "tar-split", self.tar_split_len)
            .expect("the tar-split was decompressed once already")
    }

    /// The tar-split's records in order, read as a stream: feed them to
    /// `strata_layer::tarsplit::regenerate` to rebuild the layer tar.
    pub fn tar_split_records(&self) -> RecordReader<BufReader<impl Read + '_>> {
        RecordReader::with_max_record(BufReader::with_capacity(1 << 16, self.tar_split_json()), self.max_record)
    }

    /// Uncompressed length of the tar-split JSON.
    pub fn tar_split_len(&self) -> u64 {
        self.tar_split_len
    }

    /// Sum of the sizes of all regular files.
    pub fn content_size(&self) -> u64 {
        self.entries.iter().map(|e| e.entry.size).sum()
    }
}

/// Reads a layer from its descriptor's annotations. Layers that are not (current)
/// zstd:chunked give [`ReadError::NeedsFullPull`].
pub fn open_layer<S: RangeSource + ?Sized>(
    annotations: &BTreeMap<String, String>,
    blob_size: u64,
    src: &mut S,
    limits: &Limits,
) -> Result<LayerPlan, ReadError> {
    match detect(annotations)? {
        LayerFormat::ZstdChunked(a) => open_chunked(&a, blob_size, src, limits),
        LayerFormat::LegacyZstdChunked => Err(ReadError::NeedsFullPull(FullPullReason::LegacyFormat)),
        LayerFormat::NotChunked => Err(ReadError::NeedsFullPull(FullPullReason::NotChunked)),
    }
}

/// The blob range of a payload's skippable frame (header included), checked against the blob.
fn frame_range(what: &'static str, p: Position, blob_size: u64) -> Result<Range<u64>, ReadError> {
    let out = || ReadError::OutOfBlob { what, position: p, blob_size };
    let start = p.offset.checked_sub(SKIPPABLE_HEADER_LEN).ok_or_else(out)?;
    let end = p.offset.checked_add(p.length).filter(|&e| e <= blob_size).ok_or_else(out)?;
    Ok(start..end)
}

/// The payload of a fetched skippable frame, which must announce exactly `len` bytes.
fn frame_payload(what: &'static str, frame: &[u8], len: u64) -> Result<(), ReadError> {
    match decode_skippable(frame) {
        Ok((payload, n)) if n == frame.len() && payload.len() as u64 == len => Ok(()),
        Ok((payload, _)) => Err(ReadError::NotSkippable {
            what,
            why: format!("the frame holds {} bytes, the annotation says {len}", payload.len()),
        }),
        Err(e) => Err(ReadError::NotSkippable { what, why: e.to_string() }),
    }
}

/// Reads a layer whose annotations were already parsed.
pub fn open_chunked<S: RangeSource + ?Sized>(
    ann: &ChunkedAnnotations,
    blob_size: u64,
    src: &mut S,
    limits: &Limits,
) -> Result<LayerPlan, ReadError> {
    let toc_pos = ann.toc;
    let toc_range = frame_range("TOC", toc_pos, blob_size)?;
    if toc_pos.length > limits.max_toc_compressed {
        return Err(ReadError::TooLarge { what: "TOC", size: toc_pos.length, limit: limits.max_toc_compressed });
    }
    let mut ranges = vec![toc_range.clone()];
    if let Some(ts) = ann.tar_split {
        let ts_range = frame_range("tar-split", ts, blob_size)?;
        if ts_range.start < toc_range.end && toc_range.start < ts_range.end {
            return Err(ReadError::Overlap { toc: toc_pos, tar_split: ts });
        }
        if ts.length > limits.max_tar_split_compressed {
            return Err(ReadError::TooLarge {
                what: "tar-split",
                size: ts.length,
                limit: limits.max_tar_split_compressed,
            });
        }
        ranges.push(ts_range);
    }
    let mut fetched = src.read_ranges(&ranges).map_err(|source| ReadError::Io {
        what: "TOC and tar-split",
        range: ranges[0].clone(),
        source,
    })?;
    if fetched.len() != ranges.len() || fetched.iter().zip(&ranges).any(|(b, r)| b.len() as u64 != r.end - r.start) {
        let source = io::Error::new(io::ErrorKind::UnexpectedEof, "the source returned fewer bytes than asked");
        return Err(ReadError::Io { what: "TOC and tar-split", range: ranges[0].clone(), source });
    }
    let ts_frame = (fetched.len() == 2).then(|| fetched.pop().expect("two ranges"));
    let toc_frame = fetched.pop().expect("one range");

    frame_payload("TOC", &toc_frame, toc_pos.length)?;
    let toc_bytes = &toc_frame[SKIPPABLE_HEADER_LEN as usize..];
    let found = Sha256Digest::of(toc_bytes);
    if found != ann.toc_digest {
        return Err(ReadError::TocDigest { expected: ann.toc_digest, found });
    }
    let json = bounded::decompress_exact(toc_bytes, toc_pos.uncompressed_length, limits.max_toc_uncompressed, "TOC")?;
    let toc = Toc::from_json(&json, limits.max_entries).map_err(ReadError::TocJson)?;
    drop(json);
    if toc.version != TOC_VERSION {
        return Err(ReadError::TocVersion(toc.version));
    }
    let Some(expected_ts) = toc.tar_split_digest else {
        return Err(ReadError::NeedsFullPull(FullPullReason::NoTarSplit));
    };
    let (Some(ts_pos), Some(ts_frame)) = (ann.tar_split, ts_frame) else {
        return Err(ReadError::MissingTarSplitPosition);
    };
    frame_payload("tar-split", &ts_frame, ts_pos.length)?;
    let mut tar_split = ts_frame;
    tar_split.drain(..SKIPPABLE_HEADER_LEN as usize);
    let found = Sha256Digest::of(&tar_split);
    if found != expected_ts {
        return Err(ReadError::TarSplitDigest { expected: expected_ts, found });
    }
    if ts_pos.uncompressed_length > limits.max_tar_split_uncompressed {
        return Err(DecompressError::TooLarge {
            what: "tar-split".into(),
            declared: ts_pos.uncompressed_length,
            limit: limits.max_tar_split_uncompressed,
        }
        .into());
    }

    let data_end = toc_pos.offset.min(ts_pos.offset) - SKIPPABLE_HEADER_LEN;
    let files = check_entries(toc.entries, data_end)?;
    let (entries, tar_size) = pair_with_tar_split(files, &tar_split, ts_pos.uncompressed_length, limits)?;
    Ok(LayerPlan {
        toc_digest: ann.toc_digest,
        entries,
        tar_size,
        tar_split,
        tar_split_len: ts_pos.uncompressed_length,
        max_record: max_record(limits),
    })
}

/// Walks the tar-split alongside the TOC: each entry's header segment must be the next TOC
/// entry by containers/storage's comparison, parse with strata's tar parser (whose `Entry`
/// the plan keeps), and be followed by its file record.
fn pair_with_tar_split(
    files: Vec<TocFile>,
    tar_split: &[u8],
    declared_len: u64,
    limits: &Limits,
) -> Result<(Vec<PlanEntry>, u64), ReadError> {
    let ts_err = |e: TarSplitError| ReadError::TarSplit(e.to_string());
    let dec = bounded::decoder(tar_split, "tar-split", declared_len)?;
    let mut counted = Counted { inner: dec, count: 0 };
    let mut records =
        RecordReader::with_max_record(BufReader::with_capacity(1 << 16, &mut counted), max_record(limits));
    let mut parser = HeaderParser::new(TarLimits { max_extension: limits.max_extension });
    let mut files = files.into_iter();
    let mut out = Vec::with_capacity(files.len());
    let mut pending_pad = 0u64;
    let mut expect_file: Option<(strata_layer::parse::Header, TocFile)> = None;
    let mut tar_size = 0u64;
    let mut headers_seen = 0usize;
    for rec in &mut records {
        let rec = rec.map_err(ts_err)?;
        match rec {
            Record::Segment(bytes) => {
                if let Some((h, _)) = &expect_file {
                    return Err(ReadError::TarSplit(format!(
                        "entry {:?} has no file record before the next segment",
                        String::from_utf8_lossy(&h.raw_name)
                    )));
                }
                tar_size += bytes.len() as u64;
                let skip = usize::try_from(pending_pad).expect("padding < 512");
                let rest = bytes.get(skip..).ok_or_else(|| {
                    ReadError::TarSplit(format!(
                        "a segment of {} bytes cannot hold the {skip} bytes of padding due",
                        bytes.len()
                    ))
                })?;
                pending_pad = 0;
                let mut headers = Vec::new();
                let mut feed = &bytes[..];
                while !feed.is_empty() {
                    let (used, parsed) = parser.feed(feed).map_err(|e| ReadError::TarSplit(e.to_string()))?;
                    feed = &feed[used..];
                    if let Some(Parsed::Header(h)) = parsed {
                        headers.push(h);
                    }
                }
                let go = if rest.is_empty() {
                    None
                } else {
                    match goheader::parse(rest, limits.max_extension) {
                        Ok(GoParsed::End) => None,
                        Ok(GoParsed::Entry { header, consumed }) if consumed == rest.len() => Some(header),
                        Ok(GoParsed::Entry { .. }) => {
                            return Err(ReadError::TarSplit(format!(
                                "segment #{headers_seen} holds more than one entry's headers"
                            )));
                        }
                        Err(source) => return Err(ReadError::TarSplitHeader { index: headers_seen, source }),
                    }
                };
                match (go, headers.pop(), headers.is_empty()) {
                    (None, None, true) => {}
                    (Some(go), Some(h), true) => {
                        headers_seen += 1;
                        let f = files.next().ok_or_else(|| {
                            ReadError::Disagree(format!(
                                "tar-split entry {:?} is beyond the end of the TOC",
                                String::from_utf8_lossy(&h.raw_name)
                            ))
                        })?;
                        check_matches(&f.meta, &go)?;
                        if h.entry.path != f.path {
                            return Err(ReadError::Disagree(format!(
                                "TOC entry {:?} is path {} but strata reads the tar header as {}",
                                f.meta.name, f.path, h.entry.path
                            )));
                        }
                        expect_file = Some((h, f));
                    }
                    _ => {
                        return Err(ReadError::TarSplit(format!(
                            "segment after entry #{headers_seen} does not hold exactly one complete header"
                        )));
                    }
                }
            }
            Record::File { name, size, .. } => {
                let (h, f) = expect_file.take().ok_or_else(|| {
                    ReadError::TarSplit(format!(
                        "file record {:?} without a header before it",
                        String::from_utf8_lossy(&name)
                    ))
                })?;
                if name != h.raw_name || size != h.entry.size {
                    return Err(ReadError::TarSplit(format!(
                        "file record {:?} ({size} bytes) follows the header of {:?} ({} bytes)",
                        String::from_utf8_lossy(&name),
                        String::from_utf8_lossy(&h.raw_name),
                        h.entry.size
                    )));
                }
                parser.payload(size).map_err(|e| ReadError::TarSplit(e.to_string()))?;
                tar_size += size;
                pending_pad = padding(size);
                out.push(PlanEntry { entry: h.entry, raw_name: f.meta.name, digest: f.digest, chunks: f.chunks });
            }
        }
    }
    drop(records);
    if counted.count != declared_len {
        return Err(DecompressError::Length {
            what: "tar-split".into(),
            declared: declared_len,
            found: counted.count.to_string(),
        }
        .into());
    }
    if let Some((h, _)) = expect_file {
        return Err(ReadError::TarSplit(format!(
            "entry {:?} has no file record",
            String::from_utf8_lossy(&h.raw_name)
        )));
    }
    if let Some(f) = files.next() {
        return Err(ReadError::Disagree(format!("TOC entry {:?} is missing from the tar-split", f.meta.name)));
    }
    if !parser.at_end() {
        return Err(ReadError::TarSplit("the tar stream it describes has no end-of-archive marker".into()));
    }
    Ok((out, tar_size))
}

/// Longest tar-split record accepted: one entry's headers (three extension headers at most)
/// in base64, or a 1 MiB trailer record.
fn max_record(limits: &Limits) -> usize {
    usize::try_from(limits.max_extension).unwrap_or(usize::MAX).saturating_mul(4).saturating_add(4 << 20)
}

/// Counts bytes read through it.
struct Counted<R> {
    inner: R,
    count: u64,
}

impl<R: Read> Read for Counted<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.count += n as u64;
        Ok(n)
    }
}
