//! Index keys and locations.

use std::fmt;

use strata_types::{Blake3Digest, Sha256Digest};

/// A layer's compact number inside the index (assigned when the layer is added; the
/// layer's identity elsewhere is its DiffID).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct LayerNum(pub u32);

impl fmt::Display for LayerNum {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "L{}", self.0)
    }
}

/// What a digest in the index identifies.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
#[repr(u8)]
pub enum KeyKind {
    /// strata's FastCDC chunk, BLAKE3.
    Chunk = 1,
    /// A whole file's content, BLAKE3.
    File = 2,
    /// A whole file's content, SHA-256 (zstd:chunked TOC `digest`).
    FileSha256 = 3,
    /// A chunk seen in a foreign zstd:chunked TOC (`chunkDigest`, SHA-256).
    ChunkSha256 = 4,
}

/// A lookup key: a digest and what it is a digest of.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Key {
    Chunk(Blake3Digest),
    File(Blake3Digest),
    FileSha256(Sha256Digest),
    ChunkSha256(Sha256Digest),
}

impl Key {
    pub const LEN: usize = 33;

    pub fn kind(&self) -> KeyKind {
        match self {
            Key::Chunk(_) => KeyKind::Chunk,
            Key::File(_) => KeyKind::File,
            Key::FileSha256(_) => KeyKind::FileSha256,
            Key::ChunkSha256(_) => KeyKind::ChunkSha256,
        }
    }

    fn digest_bytes(&self) -> &[u8; 32] {
        match self {
            Key::Chunk(d) | Key::File(d) => d.as_bytes(),
            Key::FileSha256(d) | Key::ChunkSha256(d) => d.as_bytes(),
        }
    }

    pub fn encode(&self) -> [u8; Self::LEN] {
        let mut k = [0u8; Self::LEN];
        k[0] = self.kind() as u8;
        k[1..].copy_from_slice(self.digest_bytes());
        k
    }

    pub fn decode(b: &[u8]) -> Option<Key> {
        if b.len() != Self::LEN {
            return None;
        }
        let d: [u8; 32] = b[1..].try_into().ok()?;
        Some(match b[0] {
            1 => Key::Chunk(Blake3Digest::from_bytes(d)),
            2 => Key::File(Blake3Digest::from_bytes(d)),
            3 => Key::FileSha256(Sha256Digest::from_bytes(d)),
            4 => Key::ChunkSha256(Sha256Digest::from_bytes(d)),
            _ => return None,
        })
    }
}

/// Where bytes with a given digest live: `len` bytes at `offset` of file `file` of `layer`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Loc {
    pub layer: LayerNum,
    pub file: u32,
    pub offset: u64,
    pub len: u64,
}

/// Locations kept per key. More copies of a chunk than this add nothing to a lookup; when
/// a layer holding one goes away, the others still answer (and gc re-indexes survivors).
pub const MAX_LOCS: usize = 4;
