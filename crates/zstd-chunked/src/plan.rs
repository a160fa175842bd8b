//! What a validated zstd:chunked layer tells a puller: every entry, and for every regular
//! file its digest and the chunks that make it up, each locatable and verifiable alone.

use std::ops::Range;

use strata_types::{Blake3Digest, Entry, Sha256Digest};

/// One chunk of a regular file.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ChunkPlan {
    /// Where the chunk starts in the file's content.
    pub file_offset: u64,
    /// Uncompressed length.
    pub len: u64,
    /// sha256 of the chunk's uncompressed bytes. For `zeros` chunks this is the producer's
    /// claim only; the file digest covers it.
    pub digest: Sha256Digest,
    /// The blob bytes (one or more complete zstd frames) that decompress to this chunk.
    pub blob_range: Range<u64>,
    /// The chunk is all zeros (`chunkType: "zeros"`): it can be made without fetching.
    pub zeros: bool,
    /// strata's BLAKE3 chunk digest, when the blob was written by strata. Unverified until
    /// the chunk's bytes are checked against `digest` (or the file against its digest).
    pub blake3: Option<Blake3Digest>,
}

/// One tar entry of the layer.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PlanEntry {
    /// The entry as strata's tar parser reads its header from the tar-split (so a partial
    /// pull produces exactly what a full pull of the same layer would).
    pub entry: Entry,
    /// The name as the tar header and TOC spell it (e.g. `./etc/`).
    pub raw_name: String,
    /// sha256 of the file's content: regular files with data only.
    pub digest: Option<Sha256Digest>,
    /// The file's chunks in order, covering `0..entry.size` exactly; empty for everything
    /// but regular files with data.
    pub chunks: Vec<ChunkPlan>,
}

/// Resource limits for reading a layer's metadata.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Limits {
    /// Compressed TOC bytes fetched and held.
    pub max_toc_compressed: u64,
    /// Uncompressed TOC JSON held in memory while parsing.
    pub max_toc_uncompressed: u64,
    /// TOC entries (files plus chunk entries); each costs a few hundred bytes parsed.
    pub max_entries: usize,
    /// Compressed tar-split bytes fetched and held (it is decompressed as a stream).
    pub max_tar_split_compressed: u64,
    /// Uncompressed tar-split bytes: bounds the work of each pass over it.
    pub max_tar_split_uncompressed: u64,
    /// Largest PAX/GNU extension header of one entry.
    pub max_extension: u64,
}

impl Default for Limits {
    /// Generous but bounded: containers/storage refuses TOCs above 150 MiB; a real TOC entry
    /// takes ~270 bytes of JSON, so 256 MiB is about a million files. Worst-case memory while
    /// parsing is the JSON plus `max_entries` parsed entries.
    fn default() -> Self {
        Limits {
            max_toc_compressed: 64 << 20,
            max_toc_uncompressed: 256 << 20,
            max_entries: 2 << 20,
            max_tar_split_compressed: 256 << 20,
            max_tar_split_uncompressed: 8 << 30,
            max_extension: 1 << 20,
        }
    }
}

/// A fetched chunk that is not what the TOC says.
#[derive(Debug, thiserror::Error)]
pub enum ChunkError {
    #[error("chunk at file offset {file_offset}: {source}")]
    Decompress { file_offset: u64, source: crate::bounded::DecompressError },
    #[error("chunk at file offset {file_offset} has sha256 {found}, the TOC says {expected}")]
    Digest { file_offset: u64, expected: Sha256Digest, found: Sha256Digest },
    #[error("chunk at file offset {file_offset} has BLAKE3 {found}, the TOC's strataBlake3 says {expected}")]
    Blake3 { file_offset: u64, expected: Blake3Digest, found: Blake3Digest },
}

impl ChunkPlan {
    /// Decompresses this chunk's frames (`compressed` = the blob bytes of `blob_range`) and
    /// verifies length, sha256 and, when present, strata's BLAKE3. Decompression stops past
    /// `len` bytes, so a hostile range cannot inflate further.
    pub fn decode(&self, compressed: &[u8]) -> Result<Vec<u8>, ChunkError> {
        let file_offset = self.file_offset;
        let data = crate::bounded::decompress_exact(compressed, self.len, self.len, "chunk")
            .map_err(|source| ChunkError::Decompress { file_offset, source })?;
        self.verify(&data)?;
        Ok(data)
    }

    /// Verifies uncompressed chunk bytes (e.g. found in the local store) against the TOC.
    pub fn verify(&self, data: &[u8]) -> Result<(), ChunkError> {
        let file_offset = self.file_offset;
        let found = Sha256Digest::of(data);
        if data.len() as u64 != self.len || found != self.digest {
            return Err(ChunkError::Digest { file_offset, expected: self.digest, found });
        }
        if let Some(expected) = self.blake3 {
            let found = Blake3Digest::of(data);
            if found != expected {
                return Err(ChunkError::Blake3 { file_offset, expected, found });
            }
        }
        Ok(())
    }
}
