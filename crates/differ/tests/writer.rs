//! The layer writer: determinism, alignment, what is never written, and that GNU tar reads
//! the result back to the same tree.

mod common;

use std::os::unix::fs::{MetadataExt, chown};
use std::path::Path;
use std::process::Command;

use common::*;
use nix::sys::stat::SFlag;
use strata_differ::{ChangeKind, DiffError, WriteOptions, diff_overlay, diff_trees};

/// A tree with one of everything a layer can carry, built the same way every time.
fn rich_tree(root: &Path) {
    mkdir(&root.join("etc/ssl"));
    write(&root.join("etc/hosts"), b"127.0.0.1 localhost\n");
    write(&root.join("etc/empty"), b"");
    write(&root.join("etc/ssl/block"), &vec![7u8; 4096]);
    write(&root.join("etc/ssl/odd"), &(0..10_001u32).map(|i| (i % 253) as u8).collect::<Vec<_>>());
    write(&root.join("big"), &(0..(1u32 << 20) + 17).map(|i| (i * 31 % 255) as u8).collect::<Vec<_>>());
    let long = "d".repeat(90);
    write(&root.join(format!("{long}/{}", "f".repeat(60))), b"long name");
    symlink("../etc/hosts", &root.join("etc/link"));
    symlink(&"t".repeat(150), &root.join("longlink"));
    write(&root.join("hl/one"), b"shared inode");
    std::fs::hard_link(root.join("hl/one"), root.join("hl/two")).unwrap();
    std::fs::hard_link(root.join("hl/one"), root.join("etc/three")).unwrap();
    mknod(&root.join("dev-null"), SFlag::S_IFCHR, 1, 3);
    mknod(&root.join("dev-loop"), SFlag::S_IFBLK, 7, 0);
    nix::unistd::mkfifo(&root.join("fifo"), nix::sys::stat::Mode::from_bits_truncate(0o640)).unwrap();
    setxattr(&root.join("etc/hosts"), "user.comment", b"hello");
    setxattr(&root.join("etc/hosts"), "trusted.strata", b"\x00\x01binary\xff");
    setxattr(&root.join("etc/ssl"), "user.dir", b"x");
    chmod(&root.join("etc/ssl/odd"), 0o4755);
    chmod(&root.join("etc/ssl"), 0o1777);
    chown(root.join("etc/hosts"), Some(4_000_000), Some(1234)).unwrap();
    nix::unistd::fchownat(
        nix::fcntl::AT_FDCWD,
        &root.join("etc/link"),
        Some(5.into()),
        Some(6.into()),
        nix::fcntl::AtFlags::AT_SYMLINK_NOFOLLOW,
    )
    .unwrap();
    // Times last, deepest first, so directory mtimes stick.
    for (i, rel) in
        ["etc/hosts", "etc/empty", "etc/ssl/block", "etc/ssl/odd", "big", "hl/one", "dev-null", "dev-loop", "fifo"]
            .iter()
            .enumerate()
    {
        set_mtime(&root.join(rel), 1_600_000_000 + i as i64, (i as i64) * 111_111_111 % 1_000_000_000);
    }
    set_mtime(&root.join("etc/link"), 1_500_000_000, 5);
    set_mtime(&root.join("longlink"), 1_500_000_001, 0);
    for d in ["etc/ssl", "etc", "hl", &format!("{long}/{}", "f".repeat(60)), &long] {
        set_mtime(&root.join(d), 1_400_000_000, 123_456_789);
    }
}

fn all_adds(tree: &Path) -> strata_differ::Changeset {
    let empty = scratch("strata-empty-");
    diff_trees(empty.path(), tree).unwrap()
}

#[test]
fn same_input_gives_identical_bytes_even_from_separately_built_trees() {
    if !strata_testutil::require_root() {
        return;
    }
    let (a, b) = (scratch("strata-det-a-"), scratch("strata-det-b-"));
    rich_tree(a.path());
    rich_tree(b.path());
    let opts = WriteOptions::default();
    let first = layer_bytes(&all_adds(a.path()), &opts);
    let again = layer_bytes(&all_adds(a.path()), &opts);
    let other = layer_bytes(&all_adds(b.path()), &opts);
    assert_eq!(first, again, "same tree written twice");
    assert_eq!(first, other, "identical trees built separately (other inode numbers, other times of creation)");
    // The bytes depend on the content: one changed byte changes the stream.
    write(&b.path().join("etc/ssl/odd"), &(0..10_001u32).map(|i| (i % 251) as u8).collect::<Vec<_>>());
    set_mtime(&b.path().join("etc/ssl/odd"), 1_600_000_003, 333_333_333);
    assert_ne!(first, layer_bytes(&all_adds(b.path()), &opts));
}

#[test]
fn every_file_payload_starts_on_a_4096_byte_boundary() {
    if !strata_testutil::require_root() {
        return;
    }
    let t = scratch("strata-align-");
    rich_tree(t.path());
    let cs = all_adds(t.path());
    let aligned = layer_bytes(&cs, &WriteOptions::default());
    let entries = tar_entries(&aligned);
    let files: Vec<_> = entries.iter().filter(|e| e.typeflag == b'0' && e.size > 0).collect();
    assert_eq!(files.len(), 6, "{entries:#?}");
    for e in &files {
        assert_eq!(e.data_offset % 4096, 0, "{} starts at {}", e.name, e.data_offset);
    }
    // The option off: plain 512-byte tar, smaller, some payloads unaligned.
    let plain = layer_bytes(&cs, &WriteOptions { align_data: false });
    assert!(plain.len() < aligned.len());
    let plain_entries = tar_entries(&plain);
    assert!(plain_entries.iter().any(|e| e.typeflag == b'0' && e.size > 0 && e.data_offset % 4096 != 0));
    // Same entries either way, only padding differs.
    let strip = |v: Vec<TarEntry>| v.into_iter().map(|e| (e.name, e.typeflag, e.size, e.link)).collect::<Vec<_>>();
    assert_eq!(strip(entries), strip(plain_entries));
}

#[test]
fn gnu_tar_extracts_the_layer_to_the_same_tree_and_lists_it() {
    if !strata_testutil::require_root() || !strata_testutil::require_tool("tar") {
        return;
    }
    let t = scratch("strata-gnutar-src-");
    rich_tree(t.path());
    let cs = all_adds(t.path());
    let bytes = layer_bytes(&cs, &WriteOptions::default());
    let work = scratch("strata-gnutar-");
    let tarfile = work.path().join("layer.tar");
    std::fs::write(&tarfile, &bytes).unwrap();
    let out = work.path().join("out");
    mkdir(&out);
    strata_testutil::run(
        Command::new("tar")
            .args(["--xattrs", "--xattrs-include=*", "--numeric-owner", "-p", "-x", "-f"])
            .arg(&tarfile)
            .arg("-C")
            .arg(&out),
    );
    // GNU tar restores directory mtimes after their contents; compare everything.
    assert_same(&snapshot(t.path()), &snapshot(&out), "GNU tar extraction");
    let listing = strata_testutil::run(Command::new("tar").args(["--numeric-owner", "-tvf"]).arg(&tarfile));
    for c in cs.iter() {
        assert!(listing.contains(&c.path.to_string()), "tar -tvf does not list {}:\n{listing}", c.path);
    }
    assert!(listing.contains("4000000/1234"), "{listing}");
    assert!(listing.contains("link to hl/one") || listing.contains("link to etc/three"), "{listing}");
    assert!(listing.contains("-> ../etc/hosts"), "{listing}");
}

#[test]
fn names_beginning_with_wh_are_rejected() {
    let t = scratch("strata-wh-");
    write(&t.path().join("dir/.wh.sneaky"), b"x");
    let empty = scratch("strata-empty-");
    let err = diff_trees(empty.path(), t.path()).unwrap_err();
    assert!(matches!(&err, DiffError::WhiteoutName { path } if path.ends_with("dir/.wh.sneaky")), "{err}");
    assert!(err.to_string().contains(".wh."), "{err}");
    // Also in a directory that exists on both sides, and in an upperdir.
    let base = scratch("strata-wh-base-");
    mkdir(&base.path().join("dir"));
    assert!(matches!(diff_trees(base.path(), t.path()), Err(DiffError::WhiteoutName { .. })));
    assert!(matches!(diff_overlay(t.path(), &[base.path().to_path_buf()], None), Err(DiffError::WhiteoutName { .. })));
    write(&t.path().join(".wh..wh..opq"), b"");
    std::fs::remove_file(t.path().join("dir/.wh.sneaky")).unwrap();
    assert!(matches!(diff_trees(base.path(), t.path()), Err(DiffError::WhiteoutName { .. })));
}

#[test]
fn overlay_xattrs_never_reach_the_layer() {
    if !strata_testutil::require_root() {
        return;
    }
    let t = scratch("strata-ovlx-");
    write(&t.path().join("a/file"), b"data");
    setxattr(&t.path().join("a/file"), "trusted.overlay.redirect", b"/etc/shadow");
    setxattr(&t.path().join("a/file"), "user.overlay.origin", b"x");
    setxattr(&t.path().join("a/file"), "user.keep", b"kept");
    setxattr(&t.path().join("a"), "trusted.overlay.impure", b"y");
    setxattr(&t.path().join("a"), "trusted.keep", b"kept too");
    let bytes = layer_bytes(&all_adds(t.path()), &WriteOptions::default());
    let keys: Vec<String> = tar_entries(&bytes).into_iter().flat_map(|e| e.pax.into_iter().map(|(k, _)| k)).collect();
    assert!(keys.iter().any(|k| k == "SCHILY.xattr.user.keep"), "{keys:?}");
    assert!(keys.iter().any(|k| k == "SCHILY.xattr.trusted.keep"), "{keys:?}");
    assert!(!keys.iter().any(|k| k.contains(".overlay.")), "{keys:?}");
    assert!(!bytes.windows(8).any(|w| w == b"overlay."), "no overlay xattr name anywhere in the stream");
}

#[test]
fn sockets_are_skipped() {
    let t = scratch("strata-sock-");
    write(&t.path().join("run/keep"), b"k");
    let _l = std::os::unix::net::UnixListener::bind(t.path().join("run/app.sock")).unwrap();
    assert_eq!(std::fs::symlink_metadata(t.path().join("run/app.sock")).unwrap().mode() & 0o170000, 0o140000);
    let cs = all_adds(t.path());
    assert_eq!(summary(&cs), [(ChangeKind::Add, "run".to_string()), (ChangeKind::Add, "run/keep".to_string())]);
    assert_eq!(tar_names(&layer_bytes(&cs, &WriteOptions::default())), ["run/", "run/keep"]);
}

#[test]
fn tar_zstd_output_decompresses_to_the_same_layer() {
    use strata_layer::out_file::WriteTarOut;
    use strata_layer::par_compress::{Codec, ParallelWriter};
    let t = scratch("strata-zst-");
    for i in 0..20 {
        write(&t.path().join(format!("d/f{i}")), &vec![i as u8; 30_000 + i * 1000]);
    }
    let cs = all_adds(t.path());
    let plain = layer_bytes(&cs, &WriteOptions::default());
    let mut out = WriteTarOut::new(ParallelWriter::with_block_size(Vec::new(), Codec::Zstd(3), 64 << 10, 4));
    let stats = strata_differ::write_layer(&cs, &mut out, &WriteOptions::default()).unwrap();
    let compressed = out.into_inner().unwrap().finish().unwrap();
    assert_eq!(stats.bytes, plain.len() as u64);
    assert!(compressed.len() < plain.len() / 10, "{} compressed bytes for {}", compressed.len(), plain.len());
    assert_eq!(zstd::stream::decode_all(&compressed[..]).unwrap(), plain);
}
