//! The OCI layer-descriptor annotations that make a `tar+zstd` layer a zstd:chunked layer.
//!
//! Readers locate the TOC and tar-split from these annotations, never from the blob's footer:
//! the annotations are covered by the image manifest's digest, the footer is not.

use std::collections::BTreeMap;
use std::fmt;

use strata_types::Sha256Digest;

use crate::frame::MANIFEST_TYPE_CRFS;

/// sha256 of the compressed TOC bytes (`sha256:<hex>`).
pub const MANIFEST_CHECKSUM: &str = "io.github.containers.zstd-chunked.manifest-checksum";
/// `offset:length:uncompressedLength:type` of the compressed TOC.
pub const MANIFEST_POSITION: &str = "io.github.containers.zstd-chunked.manifest-position";
/// `offset:length:uncompressedLength` of the compressed tar-split.
pub const TARSPLIT_POSITION: &str = "io.github.containers.zstd-chunked.tarsplit-position";
/// Keys of the obsolete format (no tar-split; content not bound to the DiffID).
pub const LEGACY_MANIFEST_CHECKSUM: &str = "io.containers.zstd-chunked.manifest-checksum";
pub const LEGACY_MANIFEST_POSITION: &str = "io.containers.zstd-chunked.manifest-position";

/// Why the annotations could not be used.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum AnnotationError {
    #[error("annotation {key} is missing")]
    Missing { key: &'static str },
    #[error("annotation {key} has value {value:?}: {why}")]
    Malformed { key: &'static str, value: String, why: String },
    #[error("annotation {MANIFEST_POSITION} names manifest type {0}; only type 1 (CRFS) exists")]
    ManifestType(u64),
}

/// Where a compressed payload sits in the blob (after its skippable frame header).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub struct Position {
    pub offset: u64,
    pub length: u64,
    pub uncompressed_length: u64,
}

impl Position {
    /// The byte range of the compressed payload in the blob; `None` on overflow.
    pub fn range(&self) -> Option<std::ops::Range<u64>> {
        Some(self.offset..self.offset.checked_add(self.length)?)
    }
}

/// The annotations of a current zstd:chunked layer.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ChunkedAnnotations {
    /// sha256 of the compressed TOC; the identity every other check hangs from.
    pub toc_digest: Sha256Digest,
    pub toc: Position,
    /// Absent in blobs written before tar-split existed; the TOC then has no
    /// `tarSplitDigest` either, and the layer must be pulled in full.
    pub tar_split: Option<Position>,
}

/// What a layer's annotations say about its format.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum LayerFormat {
    ZstdChunked(ChunkedAnnotations),
    /// Only the obsolete `io.containers.zstd-chunked.*` keys: pull in full.
    LegacyZstdChunked,
    /// No zstd:chunked annotations at all.
    NotChunked,
}

impl fmt::Display for Position {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}:{}", self.offset, self.length, self.uncompressed_length)
    }
}

fn parse_fields<const N: usize>(key: &'static str, value: &str) -> Result<[u64; N], AnnotationError> {
    let bad = |why: String| AnnotationError::Malformed { key, value: value.to_owned(), why };
    let parts: Vec<&str> = value.split(':').collect();
    if parts.len() != N {
        return Err(bad(format!("expected {N} ':'-separated decimal numbers")));
    }
    let mut out = [0u64; N];
    for (o, p) in out.iter_mut().zip(&parts) {
        if p.is_empty() || !p.bytes().all(|b| b.is_ascii_digit()) {
            return Err(bad(format!("{p:?} is not a decimal number")));
        }
        *o = p.parse().map_err(|_| bad(format!("{p:?} does not fit 64 bits")))?;
    }
    Ok(out)
}

/// Parses `offset:length:uncompressedLength:type`.
pub fn parse_manifest_position(value: &str) -> Result<(Position, u64), AnnotationError> {
    let [offset, length, uncompressed_length, kind] = parse_fields::<4>(MANIFEST_POSITION, value)?;
    Ok((Position { offset, length, uncompressed_length }, kind))
}

/// Parses `offset:length:uncompressedLength`.
pub fn parse_tarsplit_position(value: &str) -> Result<Position, AnnotationError> {
    let [offset, length, uncompressed_length] = parse_fields::<3>(TARSPLIT_POSITION, value)?;
    Ok(Position { offset, length, uncompressed_length })
}

/// Classifies a layer by its descriptor's annotations and parses the zstd:chunked ones.
pub fn detect(annotations: &BTreeMap<String, String>) -> Result<LayerFormat, AnnotationError> {
    let Some(checksum) = annotations.get(MANIFEST_CHECKSUM) else {
        let legacy = annotations.contains_key(LEGACY_MANIFEST_CHECKSUM)
            || annotations.contains_key(LEGACY_MANIFEST_POSITION)
            || annotations.contains_key(MANIFEST_POSITION);
        return Ok(if legacy { LayerFormat::LegacyZstdChunked } else { LayerFormat::NotChunked });
    };
    let toc_digest = checksum.parse::<Sha256Digest>().map_err(|e| AnnotationError::Malformed {
        key: MANIFEST_CHECKSUM,
        value: checksum.clone(),
        why: e.to_string(),
    })?;
    let position = annotations.get(MANIFEST_POSITION).ok_or(AnnotationError::Missing { key: MANIFEST_POSITION })?;
    let (toc, kind) = parse_manifest_position(position)?;
    if kind != MANIFEST_TYPE_CRFS {
        return Err(AnnotationError::ManifestType(kind));
    }
    let tar_split = annotations.get(TARSPLIT_POSITION).map(|v| parse_tarsplit_position(v)).transpose()?;
    Ok(LayerFormat::ZstdChunked(ChunkedAnnotations { toc_digest, toc, tar_split }))
}

impl ChunkedAnnotations {
    /// The annotations to put on the layer descriptor.
    pub fn to_map(&self) -> BTreeMap<String, String> {
        let mut m = BTreeMap::new();
        m.insert(MANIFEST_CHECKSUM.to_owned(), self.toc_digest.to_string());
        m.insert(MANIFEST_POSITION.to_owned(), format!("{}:{MANIFEST_TYPE_CRFS}", self.toc));
        if let Some(ts) = &self.tar_split {
            m.insert(TARSPLIT_POSITION.to_owned(), ts.to_string());
        }
        m
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn map(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect()
    }

    const D: &str = "sha256:96cdb9aa49ebcba9d8479dee7cc90cb76b1544dd4889d5d99dd102d8298cc42a";

    #[test]
    fn parses_what_skopeo_writes_and_round_trips() {
        let m = map(&[
            (MANIFEST_CHECKSUM, D),
            (MANIFEST_POSITION, "95130555:678795:3516575:1"),
            (TARSPLIT_POSITION, "95809358:486597:16751592"),
        ]);
        let LayerFormat::ZstdChunked(a) = detect(&m).unwrap() else { panic!("not detected") };
        assert_eq!(a.toc, Position { offset: 95130555, length: 678795, uncompressed_length: 3516575 });
        assert_eq!(a.tar_split.unwrap().offset, 95809358);
        assert_eq!(a.toc_digest.to_string(), D);
        assert_eq!(a.to_map(), m);
    }

    #[test]
    fn classifies_legacy_and_plain_layers() {
        assert_eq!(detect(&map(&[(LEGACY_MANIFEST_CHECKSUM, D)])).unwrap(), LayerFormat::LegacyZstdChunked);
        assert_eq!(detect(&map(&[("org.example", "x")])).unwrap(), LayerFormat::NotChunked);
    }

    #[test]
    fn rejects_malformed_values() {
        for (pos, why) in [
            ("1:2:3", "three fields"),
            ("1:2:3:4:5", "five"),
            ("-1:2:3:1", "sign"),
            ("1: 2:3:1", "space"),
            ("99999999999999999999:1:1:1", "overflow"),
            ("1:2:3:x", "letter"),
        ] {
            let m = map(&[(MANIFEST_CHECKSUM, D), (MANIFEST_POSITION, pos)]);
            assert!(matches!(detect(&m), Err(AnnotationError::Malformed { .. })), "{why}: {pos}");
        }
        let m = map(&[(MANIFEST_CHECKSUM, D), (MANIFEST_POSITION, "1:2:3:2")]);
        assert_eq!(detect(&m), Err(AnnotationError::ManifestType(2)));
        let m = map(&[(MANIFEST_CHECKSUM, "sha256:abc"), (MANIFEST_POSITION, "1:2:3:1")]);
        assert!(matches!(detect(&m), Err(AnnotationError::Malformed { key: MANIFEST_CHECKSUM, .. })));
        assert_eq!(detect(&map(&[(MANIFEST_CHECKSUM, D)])), Err(AnnotationError::Missing { key: MANIFEST_POSITION }));
    }
}
