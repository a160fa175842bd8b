//! Assembly on real filesystems: XFS with reflinks (shared extents where the block phase
//! allows, none where it does not), ext4 (copies), and rejection of wrong sources.

mod common;

use std::fs::{self, File};
use std::path::Path;

use common::{random_bytes, shared_bytes};
use strata_chunker::{Assembler, Expect, Fill, HashOptions, LocalRange, Method, Piece, digest_bytes};
use strata_testutil::{LoopMount, require_root, require_tool};
use strata_types::Blake3Digest;

/// Pieces for `new`, taking every chunk that also occurs in `old_path` (whose content is
/// `old`) from there, and the rest from `new` itself.
fn pieces_from<'a>(old_path: &Path, old: &[u8], new: &'a [u8]) -> Vec<Piece<'a>> {
    let old_chunks = digest_bytes(old, HashOptions::default()).chunks;
    let by_digest: std::collections::HashMap<Blake3Digest, u64> =
        old_chunks.iter().map(|c| (c.digest, c.offset)).collect();
    digest_bytes(new, HashOptions::default())
        .chunks
        .iter()
        .map(|c| {
            let bytes = &new[c.offset as usize..][..c.len as usize];
            let local = by_digest.get(&c.digest).map(|&off| LocalRange {
                source: old_path.to_owned().into(),
                offset: off,
                len: u64::from(c.len),
                expect: Expect::Blake3(c.digest),
            });
            Piece { len: u64::from(c.len), local, fill: Fill::Bytes(bytes) }
        })
        .collect()
}

fn assemble_to(
    dir: &Path,
    name: &str,
    pieces: &[Piece<'_>],
    asm: &mut Assembler,
) -> (std::path::PathBuf, strata_chunker::Assembled) {
    let p = dir.join(name);
    let f = File::options().read(true).write(true).create_new(true).open(&p).unwrap();
    let r = asm.assemble(&f, pieces).unwrap();
    f.sync_all().unwrap();
    (p, r)
}

fn check_fs(fs_dir: &Path, expect_reflinks: bool) {
    let old = random_bytes(4 << 20, 1);
    let old_path = fs_dir.join("old");
    fs::write(&old_path, &old).unwrap();
    File::open(&old_path).unwrap().sync_all().unwrap();

    // Same phase: an in-place change in the middle keeps every other chunk at its offset.
    let mut same_phase = old.clone();
    same_phase[2_000_000..2_000_100].copy_from_slice(&[0xAB; 100]);
    let mut asm = Assembler::new();
    let (p1, r1) = assemble_to(fs_dir, "same-phase", &pieces_from(&old_path, &old, &same_phase), &mut asm);
    assert_eq!(fs::read(&p1).unwrap(), same_phase);
    assert!(r1.reused() > 3 << 20, "{r1:?}");

    // Shifted phase: 100 bytes inserted at the front move every chunk off the 4 KiB grid.
    let mut shifted = random_bytes(100, 2);
    shifted.extend_from_slice(&old);
    let (p2, r2) = assemble_to(fs_dir, "shifted", &pieces_from(&old_path, &old, &shifted), &mut asm);
    assert_eq!(fs::read(&p2).unwrap(), shifted);
    assert!(r2.reused() > 3 << 20, "chunks are still found after a shift: {r2:?}");
    assert_eq!(r2.reflinked, 0, "no block can be shared when the phase differs");
    assert_eq!(shared_bytes(&p2), 0);

    if expect_reflinks {
        assert!(asm.reflinks_work());
        assert_eq!(r1.method(), Method::PartialReflink);
        assert!(r1.reflinked > 3 << 20, "{r1:?}");
        let shared = shared_bytes(&p1);
        assert!(
            shared >= r1.reflinked - 64 * 4096 && shared <= r1.reflinked,
            "FIEMAP shared {shared}, reflinked {}",
            r1.reflinked
        );
    } else {
        assert!(!asm.reflinks_work());
        assert_eq!(r1.reflinked, 0);
        assert_eq!(r1.method(), Method::Copy);
        assert_eq!(shared_bytes(&p1), 0);
    }

    // Whole-file reuse: FICLONE where possible, a copy otherwise; verified either way.
    let whole = fs_dir.join("whole");
    let f = File::create_new(&whole).unwrap();
    let src = LocalRange {
        source: old_path.clone().into(),
        offset: 0,
        len: old.len() as u64,
        expect: Expect::Blake3(Blake3Digest::of(&old)),
    };
    let r = asm.reuse_whole(&f, &src).unwrap().expect("source verifies");
    drop(f);
    assert_eq!(fs::read(&whole).unwrap(), old);
    if expect_reflinks {
        assert_eq!(r.reflinked, old.len() as u64);
        assert_eq!(shared_bytes(&whole), old.len() as u64);
    } else {
        assert_eq!(r.copied, old.len() as u64);
    }
}

#[test]
fn xfs_shares_blocks_where_the_phase_allows() {
    if !require_root() || !require_tool("mkfs.xfs") {
        return;
    }
    let m = LoopMount::xfs(512);
    check_fs(m.path(), true);
}

#[test]
fn ext4_falls_back_to_copies() {
    if !require_root() || !require_tool("mkfs.ext4") {
        return;
    }
    let m = LoopMount::ext4(256);
    check_fs(m.path(), false);
}

#[test]
fn btrfs_shares_blocks_too() {
    if !require_root() || !require_tool("mkfs.btrfs") {
        return;
    }
    let m = LoopMount::btrfs(256);
    check_fs(m.path(), true);
}

#[test]
fn wrong_or_missing_sources_are_never_used() {
    let dir = tempfile::tempdir().unwrap();
    let old = random_bytes(1 << 20, 5);
    let src = dir.path().join("src");
    fs::write(&src, &old).unwrap();
    let new = old.clone();
    let pieces = pieces_from(&src, &old, &new);
    assert!(pieces.iter().all(|p| p.local.is_some()));
    // The source changes after indexing: every chunk fails verification.
    let mut corrupted = old.clone();
    for b in corrupted.iter_mut().step_by(4096) {
        *b ^= 0xff;
    }
    fs::write(&src, &corrupted).unwrap();
    let mut asm = Assembler::new();
    let (p, r) = assemble_to(dir.path(), "a", &pieces, &mut asm);
    assert_eq!(fs::read(&p).unwrap(), new, "bytes at hand replace rejected chunks");
    assert_eq!(r.rejected_local, pieces.len());
    assert_eq!(r.written, new.len() as u64);
    // With nothing at hand, the pieces are reported missing instead.
    let missing: Vec<Piece<'_>> = pieces.iter().map(|p| Piece { fill: Fill::Missing, ..p.clone() }).collect();
    let (_, r) = assemble_to(dir.path(), "b", &missing, &mut asm);
    assert_eq!(r.missing.len(), pieces.len());
    // A deleted source: missing too.
    fs::remove_file(&src).unwrap();
    let (_, r) = assemble_to(dir.path(), "c", &missing, &mut asm);
    assert_eq!(r.missing.len(), pieces.len());
    let whole = File::create_new(dir.path().join("d")).unwrap();
    let lr = LocalRange {
        source: src.into(),
        offset: 0,
        len: old.len() as u64,
        expect: Expect::Blake3(Blake3Digest::of(&old)),
    };
    assert!(asm.reuse_whole(&whole, &lr).unwrap().is_none());
    assert_eq!(whole.metadata().unwrap().len(), 0);
}

#[test]
fn holes_stay_holes() {
    let dir = tempfile::tempdir().unwrap();
    let data = random_bytes(8192, 9);
    let pieces = [
        Piece { len: 8192, local: None, fill: Fill::Bytes(&data) },
        Piece { len: 64 << 20, local: None, fill: Fill::Zeros },
        Piece { len: 8192, local: None, fill: Fill::Bytes(&data) },
        Piece { len: 1 << 20, local: None, fill: Fill::Zeros },
    ];
    let mut asm = Assembler::new();
    let (p, r) = assemble_to(dir.path(), "sparse", &pieces, &mut asm);
    let meta = fs::metadata(&p).unwrap();
    assert_eq!(meta.len(), 8192 * 2 + (65 << 20));
    assert_eq!(r.holes, 65 << 20);
    use std::os::unix::fs::MetadataExt;
    assert!(meta.blocks() * 512 < 1 << 20, "{} bytes allocated for a sparse file", meta.blocks() * 512);
    let back = fs::read(&p).unwrap();
    assert_eq!(&back[..8192], &data[..]);
    assert!(back[8192..8192 + (64 << 20)].iter().all(|&b| b == 0));
}
