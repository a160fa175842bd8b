//! Zero-copy output on XFS: the layer's file data shares extents with the source files
//! (copy_file_range at 4096-aligned offsets reflinks), and the stream is byte-identical to
//! the one written through plain writes.

mod common;

use std::process::Command;

use common::*;
use strata_differ::{WriteOptions, diff_trees, write_layer};
use strata_layer::out_file::FileTarOut;
use strata_testutil::LoopMount;

/// `(first block, last block, flags)` of each extent `filefrag -v` reports for `file`.
fn extents(file: &std::path::Path) -> Vec<(u64, u64, String)> {
    let out = strata_testutil::run(Command::new("filefrag").arg("-v").arg("-b4096").arg(file));
    let mut v = Vec::new();
    for line in out.lines() {
        let parts: Vec<&str> = line.split(':').collect();
        if parts.len() < 5 || parts[0].trim().parse::<u64>().is_err() {
            continue;
        }
        let Some((a, b)) = parts[1].split_once("..") else { continue };
        v.push((a.trim().parse().unwrap(), b.trim().parse().unwrap(), parts.last().unwrap().trim().to_string()));
    }
    v
}

fn used_bytes(p: &std::path::Path) -> u64 {
    nix::unistd::sync();
    let s = nix::sys::statvfs::statvfs(p).unwrap();
    (s.blocks() - s.blocks_free()) * s.fragment_size()
}

#[test]
fn layer_data_shares_extents_with_the_source_on_xfs() {
    if !strata_testutil::require_root()
        || !strata_testutil::require_tool("mkfs.xfs")
        || !strata_testutil::require_tool("filefrag")
    {
        return;
    }
    let fs = LoopMount::xfs(512);
    let src = fs.path().join("src");
    let sizes = [4096usize, 65_536, 1 << 20, (1 << 20) + 17, 3 * (1 << 20) + 4095, 100];
    for (i, n) in sizes.iter().enumerate() {
        let data: Vec<u8> = (0..*n).map(|j| ((j * (i + 3)) % 251) as u8).collect();
        write(&src.join(format!("d{}/file{i}", i % 2)), &data);
    }
    let empty = fs.path().join("empty");
    mkdir(&empty);
    let cs = diff_trees(&empty, &src).unwrap();
    let payload: u64 = sizes.iter().map(|&n| n as u64).sum();

    let before = used_bytes(fs.path());
    let tar_path = fs.path().join("layer.tar");
    let mut out = FileTarOut::new(std::fs::File::create(&tar_path).unwrap()).unwrap();
    let stats = write_layer(&cs, &mut out, &WriteOptions::default()).unwrap();
    assert_eq!(out.bytes_copy_range, payload, "every payload byte moved by copy_file_range");
    assert_eq!(out.bytes_read_write, 0);
    drop(out.into_inner().unwrap());
    let grew = used_bytes(fs.path()) - before;
    assert!(grew < payload / 4, "the {} byte tar allocated {grew} new bytes for {payload} payload bytes", stats.bytes);

    // Identical to the stream written by plain writes.
    let bytes = std::fs::read(&tar_path).unwrap();
    assert_eq!(bytes, layer_bytes(&cs, &WriteOptions::default()));

    // Every whole block of each payload lies in an extent flagged shared.
    let ext = extents(&tar_path);
    let mut checked = 0;
    for e in tar_entries(&bytes).iter().filter(|e| e.typeflag == b'0' && e.size >= 4096) {
        for block in e.data_offset / 4096..(e.data_offset + e.size) / 4096 {
            let x = ext
                .iter()
                .find(|(a, b, _)| *a <= block && block <= *b)
                .unwrap_or_else(|| panic!("block {block} unmapped: {ext:?}"));
            assert!(x.2.contains("shared"), "{} block {block} not shared: {ext:?}", e.name);
            checked += 1;
        }
    }
    let whole_blocks: u64 = sizes.iter().map(|&n| n as u64 / 4096).sum();
    assert_eq!(checked, whole_blocks);

    // Without alignment nothing can be shared: the control experiment.
    let plain_path = fs.path().join("plain.tar");
    let mut out = FileTarOut::new(std::fs::File::create(&plain_path).unwrap()).unwrap();
    write_layer(&cs, &mut out, &WriteOptions { align_data: false }).unwrap();
    drop(out);
    let shared_blocks: u64 =
        extents(&plain_path).iter().filter(|x| x.2.contains("shared")).map(|x| x.1 - x.0 + 1).sum();
    assert!(shared_blocks < 10, "unaligned stream shares {shared_blocks} blocks");
}
