//! The content writer of ingestion: each regular file of the stream is placed in the new
//! layer deduplicated against the whole store.
//!
//! Every regular file is chunked (FastCDC) and hashed (BLAKE3 per chunk and file, SHA-256
//! per file). A file whose content the store already has is cloned whole (FICLONE, after
//! verifying the source); otherwise every chunk found in the index at the same 4 KiB phase
//! is cloned (FICLONERANGE of the aligned part), the rest written. On filesystems without
//! reflinks the bytes are simply written: copying them from another layer would cost the
//! same and share nothing.

use std::fs::File;
use std::io::{self, Read, Write};
use std::path::PathBuf;

use strata_chunker::{
    Assembler, Expect, FileDigests, Fill, HashOptions, LocalRange, Piece, SourceFile, digest_bytes, digest_stream,
};
use strata_index::{Index, Key};
use strata_layer::apply::ContentWriter;
use strata_types::Entry;

use crate::paths::StorePaths;
use crate::resolve::Resolver;

/// Files up to this size are chunked in memory; larger ones go through a staging file.
const IN_MEMORY_MAX: u64 = 64 << 20;
const BLOCK: u64 = 4096;

/// Bytes accounting of an ingestion (the `import`/`pull`/`commit` JSON figures).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, serde::Serialize)]
pub struct Bytes {
    /// Taken from layers already in the store (reflinked or copied).
    pub reused: u64,
    /// The part of `reused` that shares blocks.
    pub reflinked: u64,
    /// Written without reflink.
    pub written: u64,
}

impl Bytes {
    pub fn add(&mut self, o: &Bytes) {
        self.reused += o.reused;
        self.reflinked += o.reflinked;
        self.written += o.written;
    }
}

/// What the dedup writer learned about one file.
#[derive(Debug)]
pub struct FileOutcome {
    pub digests: FileDigests,
    pub bytes: Bytes,
}

/// The [`ContentWriter`] that deduplicates against the store.
pub(crate) struct DedupWriter<'a> {
    index: &'a Index,
    resolver: Resolver<'a>,
    assembler: Assembler,
    buf: Vec<u8>,
    spill_dir: PathBuf,
    own_source: Option<OwnSource<'a>>,
    pub bytes: Bytes,
}

/// Where a file's content already exists outside the store (commit: the upper file, opened
/// beneath the upperdir).
pub(crate) type OwnSource<'a> = Box<dyn Fn(&Entry) -> Option<strata_differ::Source> + Send + 'a>;

impl<'a> DedupWriter<'a> {
    pub fn new(index: &'a Index, paths: &'a StorePaths, spill_dir: PathBuf, own_source: Option<OwnSource<'a>>) -> Self {
        DedupWriter {
            index,
            resolver: Resolver::new(index, paths),
            assembler: Assembler::new(),
            buf: Vec::new(),
            spill_dir,
            own_source,
            bytes: Bytes::default(),
        }
    }

    /// Writes a file with content `data` (or, when `data` is `None`, only known by its
    /// digests and present in `own`) into `dst`. `own` is a file holding this very content
    /// (a spill file, or the container's upper file on commit): bytes cloned from it are
    /// this layer's own data, so they count as written, not reused.
    fn place(
        &mut self,
        dst: &File,
        digests: FileDigests,
        data: Option<&[u8]>,
        own: Option<&SourceFile>,
    ) -> io::Result<FileOutcome> {
        let mut out = Bytes::default();
        if digests.size == 0 {
            return Ok(FileOutcome { digests, bytes: out });
        }
        let clones = self.assembler.may_reflink();
        let multi = digests.chunks.len() > 1;
        let mut keys = vec![Key::File(digests.blake3)];
        if clones && multi {
            keys.extend(digests.chunks.iter().map(|c| Key::Chunk(c.digest)));
        }
        let found = if clones || data.is_none() {
            self.index.lookup(&keys).map_err(io::Error::other)?
        } else {
            vec![Vec::new(); keys.len()]
        };
        // 1. The whole file is in the store.
        for loc in &found[0] {
            let Some(src) = self.resolver.path(loc) else { continue };
            let lr =
                LocalRange { source: src.into(), offset: 0, len: digests.size, expect: Expect::Blake3(digests.blake3) };
            if let Some(a) = self.assembler.reuse_whole(dst, &lr)? {
                out.reused = a.reused();
                out.reflinked = a.reflinked;
                return Ok(FileOutcome { digests, bytes: out });
            }
        }
        // 2. Chunks of it are, at the same block phase.
        let mut pieces = Vec::with_capacity(digests.chunks.len());
        let mut store_hits = 0;
        for (i, c) in digests.chunks.iter().enumerate() {
            let len = u64::from(c.len);
            let fill = match data {
                Some(d) => Fill::Bytes(&d[c.offset as usize..][..c.len as usize]),
                None => Fill::Missing,
            };
            if c.zero {
                pieces.push(Piece { len, local: None, fill: Fill::Zeros });
                continue;
            }
            let head = (BLOCK - c.offset % BLOCK) % BLOCK;
            let clonable = clones && len >= head + BLOCK;
            let mut local = None;
            if clonable && multi {
                for loc in &found[i + 1] {
                    if loc.offset % BLOCK != c.offset % BLOCK {
                        continue;
                    }
                    if let Some(src) = self.resolver.path(loc) {
                        local = Some(LocalRange {
                            source: src.into(),
                            offset: loc.offset,
                            len,
                            expect: Expect::Blake3(c.digest),
                        });
                        store_hits += 1;
                        break;
                    }
                }
            }
            if local.is_none()
                && let Some(own) = own
                && (clonable || data.is_none())
            {
                local =
                    Some(LocalRange { source: own.clone(), offset: c.offset, len, expect: Expect::Blake3(c.digest) });
            }
            pieces.push(Piece { len, local, fill });
        }
        // 3. Nothing in the store: clone the whole of our own copy when there is one.
        if store_hits == 0
            && clones
            && let Some(own) = own
        {
            let lr = LocalRange {
                source: own.clone(),
                offset: 0,
                len: digests.size,
                expect: Expect::Blake3(digests.blake3),
            };
            if let Some(a) = self.assembler.reuse_whole(dst, &lr)? {
                out.written = a.reused();
                return Ok(FileOutcome { digests, bytes: out });
            }
        }
        let a = self.assembler.assemble(dst, &pieces)?;
        if !a.missing.is_empty() {
            return Err(io::Error::other(
                "the file changed while it was being read (its bytes no longer match the stream)",
            ));
        }
        let is_own = |p: &Piece<'_>| p.local.as_ref().is_some_and(|l| Some(&l.source) == own);
        let own_bytes: u64 = pieces.iter().filter(|p| is_own(p)).map(|p| p.len).sum();
        let own_cloned = own_bytes.min(a.reflinked + a.copied);
        // Own-source bytes placed by clone or copy are this file's own data: written.
        out.reused = a.reused() - own_cloned;
        out.reflinked = a.reflinked.saturating_sub(own_cloned);
        out.written = a.written + own_cloned;
        Ok(FileOutcome { digests, bytes: out })
    }
}

impl std::fmt::Debug for DedupWriter<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DedupWriter").field("bytes", &self.bytes).finish()
    }
}

impl ContentWriter for DedupWriter<'_> {
    type Outcome = FileOutcome;

    fn write(&mut self, entry: &Entry, dst: &File, data: &mut dyn Read) -> io::Result<FileOutcome> {
        // Opened beneath its tree, and checked to be the inode the differ saw; one that was
        // replaced meanwhile is simply not used (the stream has the bytes).
        let own = self
            .own_source
            .as_ref()
            .and_then(|f| f(entry))
            .and_then(|s| s.open().ok())
            .map(|f| SourceFile::Open(std::sync::Arc::new(f)));
        let outcome = if entry.size <= IN_MEMORY_MAX {
            let mut buf = std::mem::take(&mut self.buf);
            buf.clear();
            data.take(entry.size).read_to_end(&mut buf)?;
            let digests = digest_bytes(&buf, HashOptions { sha256: true });
            let r = self.place(dst, digests, Some(&buf), own.as_ref());
            self.buf = buf;
            r?
        } else if let Some(own) = own {
            // A large file we have a copy of: hash the stream, clone from the copy (checked
            // after cloning: the copy may change).
            let digests = digest_stream(data, entry.size, HashOptions { sha256: true })?;
            self.place(dst, digests, None, Some(&own))?
        } else {
            let spill = self.spill_dir.join(format!("spill-{}", std::process::id()));
            let mut f = File::options().read(true).write(true).create(true).truncate(true).open(&spill)?;
            io::copy(&mut data.take(entry.size), &mut f)?;
            f.flush()?;
            let map = strata_sys::map_readonly(&f)?;
            let digests = digest_bytes(&map, HashOptions { sha256: true });
            let r = self.place(dst, digests, Some(&map), Some(&SourceFile::Path(spill.clone())));
            drop(map);
            let _ = std::fs::remove_file(&spill);
            r?
        };
        self.bytes.add(&outcome.bytes);
        Ok(outcome)
    }
}
