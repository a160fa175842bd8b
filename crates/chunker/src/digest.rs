//! Chunking and hashing of whole files: FastCDC boundaries, a BLAKE3 digest per chunk and
//! per file, optionally SHA-256 per file (what zstd:chunked TOCs and partial pulls match on).

use std::fs::File;
use std::io::{self, Read};
use std::path::Path;

use rayon::prelude::*;
use strata_types::{Blake3Digest, Sha256Digest};

use crate::cdc;

/// Files at least this large are mapped rather than read, and hashed with rayon.
const MMAP_THRESHOLD: u64 = 4 << 20;

/// One content-defined chunk of a file.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Chunk {
    /// Offset of the chunk in the file.
    pub offset: u64,
    pub len: u32,
    pub digest: Blake3Digest,
    /// Every byte is zero: stored as a hole, never indexed as a reusable chunk.
    pub zero: bool,
}

/// The identity of a file's content.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FileDigests {
    pub size: u64,
    /// BLAKE3 of the whole content.
    pub blake3: Blake3Digest,
    /// SHA-256 of the whole content, when asked for.
    pub sha256: Option<Sha256Digest>,
    pub chunks: Vec<Chunk>,
}

/// What to compute besides chunks and the BLAKE3 file digest.
#[derive(Clone, Copy, Debug, Default)]
pub struct HashOptions {
    pub sha256: bool,
}

fn is_zero(data: &[u8]) -> bool {
    // Word-wise compare; the compiler vectorizes this loop.
    let (words, tail) = data.split_at(data.len() / 8 * 8);
    words.chunks_exact(8).all(|w| u64::from_ne_bytes(w.try_into().expect("8 bytes")) == 0)
        && tail.iter().all(|&b| b == 0)
}

fn hash_chunk(data: &[u8], offset: usize) -> Chunk {
    Chunk { offset: offset as u64, len: data.len() as u32, digest: Blake3Digest::of(data), zero: is_zero(data) }
}

/// Chunks and hashes `data`, a file's whole content. Large inputs use all cores.
pub fn digest_bytes(data: &[u8], opts: HashOptions) -> FileDigests {
    let bounds = cdc::boundaries(data);
    let parallel = data.len() as u64 >= MMAP_THRESHOLD;
    let chunks_of = || -> Vec<Chunk> {
        if parallel {
            bounds.par_iter().map(|r| hash_chunk(&data[r.clone()], r.start)).collect()
        } else {
            bounds.iter().map(|r| hash_chunk(&data[r.clone()], r.start)).collect()
        }
    };
    let file_blake3 = || {
        let mut h = blake3::Hasher::new();
        if parallel {
            h.update_rayon(data);
        } else {
            h.update(data);
        }
        Blake3Digest::from_bytes(*h.finalize().as_bytes())
    };
    let sha = || opts.sha256.then(|| Sha256Digest::of(data));
    let (chunks, (blake3, sha256)) = if parallel {
        rayon::join(chunks_of, || rayon::join(file_blake3, sha))
    } else if bounds.len() == 1 {
        // One chunk covering the file: its digest is the file's (the same BLAKE3 of the
        // same bytes), so the file is hashed once. Most files of a root filesystem are this.
        let chunks = chunks_of();
        let blake3 = chunks[0].digest;
        (chunks, (blake3, sha()))
    } else {
        (chunks_of(), (file_blake3(), sha()))
    };
    FileDigests { size: data.len() as u64, blake3, sha256, chunks }
}

/// Chunks and hashes an open file (mapped when large).
pub fn digest_file(file: &File, opts: HashOptions) -> io::Result<FileDigests> {
    let size = file.metadata()?.len();
    if size == 0 {
        return Ok(digest_bytes(&[], opts));
    }
    if size >= MMAP_THRESHOLD {
        let map = strata_sys::map_readonly(file)?;
        if map.len() as u64 != size {
            return Err(io::Error::other("file changed size while being hashed"));
        }
        return Ok(digest_bytes(&map, opts));
    }
    let mut buf = Vec::with_capacity(size as usize);
    Read::take(file, size).read_to_end(&mut buf)?;
    Ok(digest_bytes(&buf, opts))
}

/// Chunks and hashes a stream of `size` bytes without keeping it: the same chunks and
/// digests as [`digest_bytes`] over the whole content, in bounded memory. Fails if the
/// stream ends early.
pub fn digest_stream(data: impl Read, size: u64, opts: HashOptions) -> io::Result<FileDigests> {
    let mut file_b3 = blake3::Hasher::new();
    let mut sha = opts.sha256.then(strata_types::Sha256Hasher::new);
    let mut chunks = Vec::new();
    let cdc = fastcdc::v2020::StreamCDC::new(data.take(size), cdc::MIN_SIZE, cdc::AVG_SIZE, cdc::MAX_SIZE);
    let mut total = 0u64;
    for c in cdc {
        let c = c.map_err(|e| match e {
            fastcdc::v2020::Error::IoError(e) => e,
            other => io::Error::other(other.to_string()),
        })?;
        file_b3.update(&c.data);
        if let Some(h) = sha.as_mut() {
            h.update(&c.data);
        }
        chunks.push(hash_chunk(&c.data, c.offset as usize));
        total += c.data.len() as u64;
    }
    if total != size {
        return Err(io::Error::new(
            io::ErrorKind::UnexpectedEof,
            format!("stream ended after {total} of {size} bytes"),
        ));
    }
    Ok(FileDigests {
        size,
        blake3: Blake3Digest::from_bytes(*file_b3.finalize().as_bytes()),
        sha256: sha.map(|h| h.finalize()),
        chunks,
    })
}

/// Chunks and hashes the file at `path`.
pub fn digest_path(path: &Path, opts: HashOptions) -> io::Result<FileDigests> {
    digest_file(&File::open(path)?, opts)
}

/// Chunks and hashes many files on all cores; results in input order.
pub fn digest_paths<P: AsRef<Path> + Sync>(paths: &[P], opts: HashOptions) -> Vec<io::Result<FileDigests>> {
    paths.par_iter().map(|p| digest_path(p.as_ref(), opts)).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pseudo_random(n: usize, seed: u32) -> Vec<u8> {
        let mut x = seed.wrapping_mul(2654435761) | 1;
        (0..n)
            .map(|_| {
                x ^= x << 13;
                x ^= x >> 17;
                x ^= x << 5;
                x as u8
            })
            .collect()
    }

    #[test]
    fn file_digests_are_of_the_whole_content_at_every_size() {
        // Empty, one chunk (below the minimum, and a one-chunk file above it), several
        // chunks in memory, and the mapped/parallel size.
        for len in [0usize, 1, 4095, 16 << 10, 40 << 10, 300 << 10, 5 << 20] {
            let data = pseudo_random(len, len as u32 + 3);
            let d = digest_bytes(&data, HashOptions { sha256: true });
            assert_eq!(d.blake3, Blake3Digest::of(&data), "length {len}");
            assert_eq!(d.sha256, Some(Sha256Digest::of(&data)), "length {len}");
            let streamed = digest_stream(&data[..], len as u64, HashOptions { sha256: true }).unwrap();
            assert_eq!(streamed.blake3, d.blake3, "length {len}");
            assert_eq!(streamed.chunks, d.chunks, "length {len}");
        }
    }

    #[test]
    fn chunks_cover_file_and_digests_match_content() {
        let data = pseudo_random(5 << 20, 7);
        let d = digest_bytes(&data, HashOptions { sha256: true });
        assert_eq!(d.size, data.len() as u64);
        assert_eq!(d.blake3, Blake3Digest::of(&data));
        assert_eq!(d.sha256, Some(Sha256Digest::of(&data)));
        let mut off = 0;
        for c in &d.chunks {
            assert_eq!(c.offset, off);
            assert_eq!(c.digest, Blake3Digest::of(&data[off as usize..off as usize + c.len as usize]));
            assert!(!c.zero);
            off += c.len as u64;
        }
        assert_eq!(off, data.len() as u64);
    }

    #[test]
    fn an_insertion_only_changes_nearby_chunks() {
        let a = pseudo_random(4 << 20, 3);
        let mut b = a.clone();
        b.splice(1_000_000..1_000_000, pseudo_random(777, 9));
        let da = digest_bytes(&a, HashOptions::default());
        let db = digest_bytes(&b, HashOptions::default());
        let set: std::collections::HashSet<_> = da.chunks.iter().map(|c| c.digest).collect();
        let shared = db.chunks.iter().filter(|c| set.contains(&c.digest)).count();
        assert!(shared + 3 >= db.chunks.len(), "only {shared} of {} chunks shared", db.chunks.len());
    }

    #[test]
    fn streaming_digest_equals_in_memory_digest() {
        let data = pseudo_random(3 << 20, 11);
        let a = digest_bytes(&data, HashOptions { sha256: true });
        let b = digest_stream(&data[..], data.len() as u64, HashOptions { sha256: true }).unwrap();
        assert_eq!(a, b);
        assert!(digest_stream(&data[..1000], 2000, HashOptions::default()).is_err());
    }

    #[test]
    fn zero_runs_are_marked() {
        let mut data = pseudo_random(100_000, 1);
        data.extend(std::iter::repeat_n(0u8, 2 << 20));
        data.extend(pseudo_random(100_000, 2));
        let d = digest_bytes(&data, HashOptions::default());
        let zero_bytes: u64 = d.chunks.iter().filter(|c| c.zero).map(|c| c.len as u64).sum();
        assert!(zero_bytes >= (2 << 20) - 2 * cdc::MAX_SIZE as u64, "{zero_bytes}");
        for c in d.chunks.iter().filter(|c| c.zero) {
            assert!(data[c.offset as usize..][..c.len as usize].iter().all(|&b| b == 0));
        }
    }
}
