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
//! A local chunk that fails verification (changed or deleted since it was indexed) is
//! fetched on the spot; a fetched chunk that fails verification fails the pull.

use std::collections::HashMap;
use std::fs::File;
use std::io::{self, Read};
use std::ops::Range;
use std::os::unix::fs::{FileExt, OpenOptionsExt};
use std::path::PathBuf;

use strata_index::{Index, Key};
use strata_layer::tarsplit::Record;
use strata_registry::Client;
use strata_types::{Sha256Digest, Sha256Hasher};
use strata_zstd_chunked::{ChunkPlan, LayerPlan};

use super::window::Fetcher;
use crate::paths::StorePaths;
use crate::resolve::Resolver;

/// Where one chunk's bytes come from.
#[derive(Clone, Debug)]
enum Source {
    Local { path: PathBuf, offset: u64 },
    Remote,
    Zeros,
}

/// Per file (by plan entry index): a source per chunk.
pub(crate) struct SourcePlan {
    sources: HashMap<usize, Vec<Source>>,
    /// Compressed ranges to fetch.
    pub remote: Vec<Range<u64>>,
    /// Uncompressed bytes planned from local layers.
    pub local_bytes: u64,
}

/// Decides, with one batched index lookup, where each chunk of the layer comes from.
pub(crate) fn plan_sources(index: &Index, paths: &StorePaths, plan: &LayerPlan) -> Result<SourcePlan, String> {
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
    let found = index.lookup(&keys).map_err(|e| e.to_string())?;
    let mut resolver = Resolver::new(index, paths);
    let mut sources: HashMap<usize, Vec<Source>> = HashMap::new();
    let mut local_bytes = 0;
    let mut remote = Vec::new();
    for (i, e) in plan.entries.iter().enumerate() {
        if e.chunks.is_empty() {
            continue;
        }
        let whole = file_key[i]
            .and_then(|k| found[k].iter().find_map(|l| if l.len == e.entry.size { resolver.path(l) } else { None }));
        let mut v = Vec::with_capacity(e.chunks.len());
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
        sources.insert(i, v);
    }
    Ok(SourcePlan { sources, remote, local_bytes })
}

/// Counters of a replay.
#[derive(Clone, Copy, Debug, Default)]
pub(crate) struct ReplayStats {
    /// Uncompressed bytes taken from local layers.
    pub local: u64,
    /// Local chunks that failed verification and were fetched instead.
    pub refetched: u64,
}

/// The file being replayed: its entry, its chunk sources, how far it got.
struct Current {
    entry: usize,
    sources: std::vec::IntoIter<Source>,
    chunk: usize,
    produced: u64,
    hasher: Sha256Hasher,
}

/// The layer's tar stream, replayed from the tar-split with file bytes from local layers and
/// fetched chunks, one chunk in memory at a time. Implements `Read`.
pub(crate) struct Replay<'a, I> {
    records: I,
    plan: &'a LayerPlan,
    sources: SourcePlan,
    by_name: HashMap<&'a str, usize>,
    fetcher: Fetcher,
    client: Client,
    repo: String,
    blob: Sha256Digest,
    current: Option<Current>,
    /// Bytes ready to be read.
    buf: Vec<u8>,
    pos: usize,
    pub stats: ReplayStats,
}

impl<'a, I: Iterator<Item = Result<Record, strata_layer::tarsplit::TarSplitError>>> Replay<'a, I> {
    pub fn new(
        records: I,
        plan: &'a LayerPlan,
        sources: SourcePlan,
        client: Client,
        repo: String,
        blob: Sha256Digest,
    ) -> Self {
        let fetcher = Fetcher::start(client.clone(), repo.clone(), blob, sources.remote.clone());
        let by_name = plan.entries.iter().enumerate().map(|(i, e)| (e.raw_name.as_str(), i)).collect();
        Replay {
            records,
            plan,
            sources,
            by_name,
            fetcher,
            client,
            repo,
            blob,
            current: None,
            buf: Vec::new(),
            pos: 0,
            stats: ReplayStats::default(),
        }
    }

    fn bad(msg: String) -> io::Error {
        io::Error::new(io::ErrorKind::InvalidData, msg)
    }

    /// Decompresses a chunk's frames and checks its SHA-256.
    fn decode(c: &ChunkPlan, frames: &[u8], name: &str) -> io::Result<Vec<u8>> {
        let mut out = Vec::with_capacity(c.len as usize);
        zstd::stream::read::Decoder::new(frames)?.take(c.len + 1).read_to_end(&mut out)?;
        if out.len() as u64 != c.len || Sha256Digest::of(&out) != c.digest {
            return Err(Self::bad(format!(
                "{name}: the chunk at offset {} (blob bytes {:?}) does not have the digest {} the TOC gives it",
                c.file_offset, c.blob_range, c.digest
            )));
        }
        Ok(out)
    }

    /// The bytes of the current file's next chunk, or `None` when the file is complete
    /// (after checking its length and digest).
    fn next_chunk(&mut self) -> io::Result<Option<Vec<u8>>> {
        let cur = self.current.as_mut().expect("a file is being replayed");
        let e = &self.plan.entries[cur.entry];
        let name = e.raw_name.as_str();
        let Some(src) = cur.sources.next() else {
            let cur = self.current.take().expect("current file");
            if cur.produced != e.entry.size {
                return Err(Self::bad(format!(
                    "{name}: chunks give {} bytes, the TOC says {}",
                    cur.produced, e.entry.size
                )));
            }
            if let Some(d) = e.digest
                && cur.hasher.finalize() != d
            {
                return Err(Self::bad(format!("{name}: content does not have the TOC digest {d}")));
            }
            return Ok(None);
        };
        let c = &e.chunks[cur.chunk];
        cur.chunk += 1;
        let bytes = match src {
            Source::Zeros => vec![0u8; c.len as usize],
            Source::Local { path, offset } => match read_local(&path, offset, c.len) {
                Some(b) if Sha256Digest::of(&b) == c.digest => {
                    self.stats.local += c.len;
                    b
                }
                _ => {
                    // Gone or changed since it was indexed: fetch it after all.
                    self.stats.refetched += 1;
                    let frames = self
                        .client
                        .fetch_ranges(&self.repo, &self.blob, std::slice::from_ref(&c.blob_range))
                        .map_err(io::Error::other)?
                        .pop()
                        .unwrap_or_default();
                    Self::decode(c, &frames, name)?
                }
            },
            Source::Remote => {
                let frames = self.fetcher.get(&c.blob_range).map_err(io::Error::other)?;
                Self::decode(c, &frames, name)?
            }
        };
        let cur = self.current.as_mut().expect("current file");
        cur.hasher.update(&bytes);
        cur.produced += bytes.len() as u64;
        Ok(Some(bytes))
    }

    /// Refills `buf` with the next piece of the stream; false at the end.
    fn refill(&mut self) -> io::Result<bool> {
        self.pos = 0;
        if self.current.is_some() {
            if let Some(b) = self.next_chunk()? {
                self.buf = b;
                return Ok(true);
            }
            self.buf.clear();
            return Ok(true);
        }
        let Some(rec) = self.records.next() else { return Ok(false) };
        match rec.map_err(|e| Self::bad(e.to_string()))? {
            Record::Segment(b) => self.buf = b,
            Record::File { name, size, .. } => {
                self.buf.clear();
                if size > 0 {
                    let name = String::from_utf8_lossy(&name).into_owned();
                    let &i = self
                        .by_name
                        .get(name.as_str())
                        .ok_or_else(|| Self::bad(format!("tar-split names {name:?}, which the TOC does not have")))?;
                    if self.plan.entries[i].entry.size != size {
                        return Err(Self::bad(format!("{name}: tar-split size {size} differs from the TOC's")));
                    }
                    let sources = self.sources.sources.remove(&i).unwrap_or_default();
                    self.current = Some(Current {
                        entry: i,
                        sources: sources.into_iter(),
                        chunk: 0,
                        produced: 0,
                        hasher: Sha256Hasher::new(),
                    });
                }
            }
        }
        Ok(true)
    }
}

fn read_local(path: &std::path::Path, offset: u64, len: u64) -> Option<Vec<u8>> {
    let f = File::options().read(true).custom_flags(libc::O_NOFOLLOW).open(path).ok()?;
    let mut buf = vec![0u8; len as usize];
    f.read_exact_at(&mut buf, offset).ok()?;
    Some(buf)
}

impl<I: Iterator<Item = Result<Record, strata_layer::tarsplit::TarSplitError>>> Read for Replay<'_, I> {
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
