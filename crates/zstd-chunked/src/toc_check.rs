//! Structural validation of a parsed TOC: names, duplicates, and for every regular file a
//! chunk list that covers its content exactly and points inside the blob's data region.

use std::collections::HashSet;
use std::ops::Range;

use strata_types::{RelPath, RelPathError, Sha256Digest};

use crate::plan::ChunkPlan;
use crate::toc::{ChunkType, TocEntry, TocType};

/// What is wrong with one TOC entry.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum TocProblem {
    #[error("a chunk entry that does not follow a regular file")]
    OrphanChunk,
    #[error("a chunk entry named differently from its file {file:?}")]
    ChunkName { file: String },
    #[error("name is not acceptable: {0}")]
    BadName(RelPathError),
    #[error("the root directory can only be a directory")]
    RootNotDir,
    #[error("a second entry for the same path (first at TOC entry #{first})")]
    Duplicate { first: usize },
    #[error("hardlink target {target:?} is not acceptable: {why}")]
    BadHardlink { target: String, why: String },
    #[error("symlink has an empty target")]
    EmptySymlink,
    #[error("a {kind} with size {size}: only regular files carry data")]
    DataOnNonFile { kind: &'static str, size: u64 },
    #[error("regular file with data has no digest")]
    MissingDigest,
    #[error("empty file has digest {0}, not the digest of no bytes")]
    EmptyFileDigest(Sha256Digest),
    #[error("chunk starts at file offset {found}, expected {expected} (chunks must be contiguous from 0)")]
    ChunkGap { expected: u64, found: u64 },
    #[error("chunk has size 0")]
    EmptyChunk,
    #[error("chunks cover {covered} bytes of a {size}-byte file")]
    ChunkCoverage { covered: u64, size: u64 },
    #[error("chunk has no chunkDigest")]
    MissingChunkDigest,
    #[error("single-chunk file's chunkDigest {chunk} differs from its digest {file}")]
    SingleChunkDigest { chunk: Sha256Digest, file: Sha256Digest },
    #[error("{what} {value} is not an owner a file can have (4294967295 means \"unchanged\" to chown)")]
    BadOwner { what: &'static str, value: u64 },
    #[error("compressed range {range:?} is empty, reversed or outside the blob's data (0..{data_end})")]
    BlobRange { range: Range<u64>, data_end: u64 },
}

/// A TOC entry that failed validation.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[error("TOC entry #{index} ({name:?}): {problem}")]
pub struct TocError {
    pub index: usize,
    pub name: String,
    pub problem: TocProblem,
}

/// A validated non-chunk TOC entry with its chunks.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TocFile {
    /// Index of the entry in the TOC.
    pub index: usize,
    pub meta: TocEntry,
    pub path: RelPath,
    pub digest: Option<Sha256Digest>,
    pub chunks: Vec<ChunkPlan>,
}

fn kind_name(k: TocType) -> &'static str {
    k.as_str()
}

/// Validates `entries` and groups chunk entries with their files. `data_end` is where the
/// blob's data frames end (the first metadata skippable frame).
pub fn check_entries(entries: Vec<TocEntry>, data_end: u64) -> Result<Vec<TocFile>, TocError> {
    let mut files: Vec<TocFile> = Vec::new();
    let mut chunk_entries: Vec<(usize, TocEntry)> = Vec::new();
    let mut seen: HashSet<RelPath> = HashSet::new();
    let mut first_index: std::collections::HashMap<RelPath, usize> = std::collections::HashMap::new();
    let mut iter = entries.into_iter().enumerate().peekable();
    while let Some((index, e)) = iter.next() {
        let err = |problem| TocError { index, name: e.name.clone(), problem };
        let kind = e.kind.expect("the TOC parser requires a type");
        if kind == TocType::Chunk {
            return Err(err(TocProblem::OrphanChunk));
        }
        chunk_entries.clear();
        while let Some((ci, c)) = iter.next_if(|(_, c)| c.kind == Some(TocType::Chunk)) {
            if kind != TocType::Reg {
                return Err(TocError { index: ci, name: c.name.clone(), problem: TocProblem::OrphanChunk });
            }
            if c.name != e.name {
                return Err(TocError {
                    index: ci,
                    name: c.name.clone(),
                    problem: TocProblem::ChunkName { file: e.name.clone() },
                });
            }
            chunk_entries.push((ci, c));
        }
        let path = RelPath::new(&e.name).map_err(|x| err(TocProblem::BadName(x)))?;
        if path.is_root() && kind != TocType::Dir {
            return Err(err(TocProblem::RootNotDir));
        }
        if !seen.insert(path.clone()) {
            return Err(err(TocProblem::Duplicate { first: first_index[&path] }));
        }
        first_index.insert(path.clone(), index);
        match kind {
            TocType::Hardlink => {
                let target = RelPath::new(&e.link_name)
                    .map_err(|x| err(TocProblem::BadHardlink { target: e.link_name.clone(), why: x.to_string() }))?;
                if target.is_root() {
                    return Err(err(TocProblem::BadHardlink {
                        target: e.link_name.clone(),
                        why: "it is the root".into(),
                    }));
                }
            }
            TocType::Symlink if e.link_name.is_empty() => return Err(err(TocProblem::EmptySymlink)),
            _ => {}
        }
        for (what, value) in [("uid", e.uid), ("gid", e.gid)] {
            if value >= u64::from(u32::MAX) {
                return Err(err(TocProblem::BadOwner { what, value }));
            }
        }
        if kind != TocType::Reg && e.size != 0 {
            return Err(err(TocProblem::DataOnNonFile { kind: kind_name(kind), size: e.size }));
        }
        let (digest, chunks) = if kind == TocType::Reg {
            file_chunks(&e, &chunk_entries, data_end).map_err(|(i, problem)| TocError {
                index: i.unwrap_or(index),
                name: e.name.clone(),
                problem,
            })?
        } else {
            (None, Vec::new())
        };
        files.push(TocFile { index, meta: e, path, digest, chunks });
    }
    Ok(files)
}

type ChunkResult = Result<(Option<Sha256Digest>, Vec<ChunkPlan>), (Option<usize>, TocProblem)>;

fn file_chunks(file: &TocEntry, later: &[(usize, TocEntry)], data_end: u64) -> ChunkResult {
    let empty = Sha256Digest::of(b"");
    if file.size == 0 {
        if !later.is_empty() {
            return Err((Some(later[0].0), TocProblem::ChunkCoverage { covered: later[0].1.chunk_size, size: 0 }));
        }
        return match file.digest {
            Some(d) if d != empty => Err((None, TocProblem::EmptyFileDigest(d))),
            _ => Ok((None, Vec::new())),
        };
    }
    let digest = file.digest.ok_or((None, TocProblem::MissingDigest))?;
    let check_range = |i: Option<usize>, range: Range<u64>| {
        if range.start >= range.end || range.end > data_end {
            Err((i, TocProblem::BlobRange { range, data_end }))
        } else {
            Ok(range)
        }
    };
    if later.is_empty() && (file.chunk_size == 0 || file.chunk_size == file.size) {
        // One chunk: the whole file, in the frames between offset and endOffset.
        if let Some(cd) = file.chunk_digest.filter(|cd| *cd != digest) {
            return Err((None, TocProblem::SingleChunkDigest { chunk: cd, file: digest }));
        }
        let chunk = ChunkPlan {
            file_offset: 0,
            len: file.size,
            digest,
            blob_range: check_range(None, file.offset..file.end_offset)?,
            zeros: file.chunk_type == ChunkType::Zeros,
            blake3: file.strata_blake3,
        };
        return Ok((Some(digest), vec![chunk]));
    }
    // Several chunks: the file entry is chunk 0; chunk i ends where chunk i+1 starts, the
    // last at the file's endOffset.
    let all: Vec<(Option<usize>, &TocEntry)> =
        std::iter::once((None, file)).chain(later.iter().map(|(i, c)| (Some(*i), c))).collect();
    let mut chunks = Vec::with_capacity(all.len());
    let mut covered = 0u64;
    for (n, (i, c)) in all.iter().enumerate() {
        if c.chunk_offset != covered {
            return Err((*i, TocProblem::ChunkGap { expected: covered, found: c.chunk_offset }));
        }
        if c.chunk_size == 0 {
            return Err((*i, TocProblem::EmptyChunk));
        }
        covered = covered.checked_add(c.chunk_size).filter(|&v| v <= file.size).ok_or((
            *i,
            TocProblem::ChunkCoverage { covered: covered.saturating_add(c.chunk_size), size: file.size },
        ))?;
        let end = all.get(n + 1).map_or(file.end_offset, |(_, next)| next.offset);
        chunks.push(ChunkPlan {
            file_offset: c.chunk_offset,
            len: c.chunk_size,
            digest: c.chunk_digest.ok_or((*i, TocProblem::MissingChunkDigest))?,
            blob_range: check_range(*i, c.offset..end)?,
            zeros: c.chunk_type == ChunkType::Zeros,
            blake3: c.strata_blake3,
        });
    }
    if covered != file.size {
        return Err((all.last().and_then(|(i, _)| *i), TocProblem::ChunkCoverage { covered, size: file.size }));
    }
    Ok((Some(digest), chunks))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn d(n: u8) -> Sha256Digest {
        Sha256Digest::from_bytes([n; 32])
    }

    fn reg(name: &str, size: u64, offset: u64, end: u64) -> TocEntry {
        TocEntry {
            kind: Some(TocType::Reg),
            name: name.into(),
            size,
            digest: Some(d(1)),
            offset,
            end_offset: end,
            ..Default::default()
        }
    }

    fn chunk(name: &str, chunk_offset: u64, size: u64, offset: u64) -> TocEntry {
        TocEntry {
            kind: Some(TocType::Chunk),
            name: name.into(),
            chunk_offset,
            chunk_size: size,
            offset,
            chunk_digest: Some(d(3)),
            ..Default::default()
        }
    }

    fn multi() -> Vec<TocEntry> {
        let mut f = reg("./f", 30, 100, 400);
        f.chunk_size = 10;
        f.chunk_digest = Some(d(2));
        vec![
            TocEntry { kind: Some(TocType::Dir), name: "./".into(), ..Default::default() },
            f,
            chunk("./f", 10, 15, 200),
            chunk("./f", 25, 5, 300),
        ]
    }

    fn problem(entries: Vec<TocEntry>) -> TocProblem {
        check_entries(entries, 1000).unwrap_err().problem
    }

    #[test]
    fn groups_chunks_with_their_file() {
        let files = check_entries(multi(), 1000).unwrap();
        assert_eq!(files.len(), 2);
        assert!(files[0].path.is_root());
        let c = &files[1].chunks;
        assert_eq!(
            c.iter().map(|c| (c.file_offset, c.len, c.blob_range.clone())).collect::<Vec<_>>(),
            vec![(0, 10, 100..200), (10, 15, 200..300), (25, 5, 300..400)]
        );
        assert_eq!(c[0].digest, d(2));
        let single = check_entries(vec![reg("a", 7, 10, 20)], 1000).unwrap();
        assert_eq!(single[0].chunks[0].blob_range, 10..20);
        assert_eq!(single[0].chunks[0].digest, d(1));
    }

    #[test]
    fn owner_minus_one_is_refused_and_minus_two_accepted() {
        let mut e = multi();
        e[1].uid = u64::from(u32::MAX);
        assert_eq!(problem(e), TocProblem::BadOwner { what: "uid", value: 4294967295 });
        let mut e = multi();
        e[0].gid = 1 << 40;
        assert!(matches!(problem(e), TocProblem::BadOwner { what: "gid", .. }));
        let mut e = multi();
        (e[1].uid, e[1].gid) = (4294967294, 4294967294);
        assert!(check_entries(e, 1000).is_ok());
    }

    #[test]
    fn every_structural_problem_is_named() {
        let mut e = multi();
        e[2].chunk_offset = 11;
        assert!(matches!(problem(e), TocProblem::ChunkGap { expected: 10, found: 11 }));
        let mut e = multi();
        e[3].chunk_size = 6;
        assert!(matches!(problem(e), TocProblem::ChunkCoverage { .. }));
        let mut e = multi();
        e[3].chunk_size = 4;
        assert!(matches!(problem(e), TocProblem::ChunkCoverage { covered: 29, size: 30 }));
        let mut e = multi();
        e[3].offset = 150;
        e[2].offset = 300;
        assert!(matches!(problem(e), TocProblem::BlobRange { .. }), "chunk offsets must increase");
        let mut e = multi();
        e[1].end_offset = 2000;
        assert!(matches!(problem(e), TocProblem::BlobRange { .. }), "past the data region");
        let mut e = multi();
        e[2].name = "./g".into();
        assert!(matches!(problem(e), TocProblem::ChunkName { .. }));
        let mut e = multi();
        e[2].chunk_digest = None;
        assert_eq!(problem(e), TocProblem::MissingChunkDigest);
        let mut e = multi();
        e[1].digest = None;
        assert_eq!(problem(e), TocProblem::MissingDigest);
        let mut e = multi();
        e.swap(0, 2);
        assert_eq!(problem(e), TocProblem::OrphanChunk);
        let mut e = multi();
        e.push(TocEntry { kind: Some(TocType::Dir), name: "f/".into(), ..Default::default() });
        assert_eq!(problem(e), TocProblem::Duplicate { first: 1 });
        assert!(matches!(problem(vec![reg("../x", 1, 1, 2)]), TocProblem::BadName(RelPathError::DotDot(_))));
        assert!(matches!(problem(vec![reg("/etc/x", 1, 1, 2)]), TocProblem::BadName(RelPathError::Absolute(_))));
        let link = TocEntry {
            kind: Some(TocType::Hardlink),
            name: "l".into(),
            link_name: "../x".into(),
            ..Default::default()
        };
        assert!(matches!(problem(vec![link]), TocProblem::BadHardlink { .. }));
        let dir = TocEntry { kind: Some(TocType::Dir), name: "d".into(), size: 5, ..Default::default() };
        assert!(matches!(problem(vec![dir]), TocProblem::DataOnNonFile { .. }));
        assert!(matches!(problem(vec![reg("./", 1, 1, 2)]), TocProblem::RootNotDir));
        let mut empty = reg("e", 0, 0, 0);
        empty.digest = Some(d(9));
        assert!(matches!(problem(vec![empty]), TocProblem::EmptyFileDigest(_)));
        let mut single = reg("s", 5, 1, 2);
        single.chunk_digest = Some(d(4));
        assert!(matches!(problem(vec![single]), TocProblem::SingleChunkDigest { .. }));
    }
}
