//! Round trips through GNU tar: a varied tree is archived with `tar --xattrs --numeric-owner
//! --format=pax`, applied in both whiteout modes, and compared with the source attribute by
//! attribute (type, mode incl. setuid/setgid/sticky, owner, mtime with nanoseconds, content,
//! symlink target, device numbers, xattrs incl. security.capability, hardlink identity,
//! directory mtimes). Also the real debootstrap tree of `scripts/setup-peers.sh`.

mod common;

use std::ffi::OsStr;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{PermissionsExt, symlink};
use std::path::Path;

use common::{FULL, assert_same, gnu_tar, snapshot};
use nix::sys::stat::{Mode, SFlag, UtimensatFlags, makedev, mknod, utimensat};
use nix::sys::time::TimeSpec;
use strata_layer::apply::{Applied, ApplyOptions, CopyContent, WhiteoutMode, apply, apply_simple};

fn set_mtime(p: &Path, secs: i64, nanos: i64) {
    let t = TimeSpec::new(secs, nanos);
    utimensat(nix::fcntl::AT_FDCWD, p, &t, &t, UtimensatFlags::NoFollowSymlink).unwrap();
}

fn chown(p: &Path, uid: u32, gid: u32) {
    std::os::unix::fs::lchown(p, Some(uid), Some(gid)).unwrap();
}

/// A tree with every kind of object and attribute a layer can carry.
fn varied_tree(root: &Path) {
    let w = |rel: &str, data: &[u8], mode: u32| {
        let p = root.join(rel);
        std::fs::write(&p, data).unwrap();
        std::fs::set_permissions(&p, std::fs::Permissions::from_mode(mode)).unwrap();
    };
    for d in ["etc", "bin", "ro", "tmp", "sgid", "owned", "deep"] {
        std::fs::create_dir(root.join(d)).unwrap();
    }
    w("etc/empty", b"", 0o644);
    w("etc/small", b"hello\n", 0o600);
    let big: Vec<u8> = (0..(1 << 20) + 123).map(|i: u32| (i.wrapping_mul(2654435761) >> 13) as u8).collect();
    w("etc/big", &big, 0o644);
    w("bin/suid", b"#!/bin/sh\n", 0o4755);
    w("bin/sgid", b"#!/bin/sh\n", 0o2711);
    w("bin/capped", b"\x7fELF", 0o755);
    // security.capability v2: cap_net_bind_service (bit 10) permitted + effective.
    let cap = [0x01, 0, 0, 0x02, 0x00, 0x04, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0];
    xattr::set(root.join("bin/capped"), "security.capability", &cap).unwrap();
    xattr::set(root.join("etc/small"), "user.comment", b"binary\0\xff value").unwrap();
    xattr::set(root.join("etc/small"), "trusted.md5", b"x").unwrap();
    xattr::set(root.join("etc"), "user.dir", b"d").unwrap();
    w("ro/file", b"read only dir", 0o444);
    std::fs::set_permissions(root.join("sgid"), std::fs::Permissions::from_mode(0o2775)).unwrap();
    std::fs::set_permissions(root.join("tmp"), std::fs::Permissions::from_mode(0o1777)).unwrap();
    std::fs::hard_link(root.join("etc/big"), root.join("bin/big-link")).unwrap();
    std::fs::hard_link(root.join("etc/big"), root.join("owned/big-link2")).unwrap();
    symlink("../etc/small", root.join("bin/rel")).unwrap();
    symlink("/etc/passwd", root.join("bin/abs")).unwrap();
    symlink("does/not/exist", root.join("bin/dangling")).unwrap();
    symlink("x".repeat(300), root.join("bin/longtarget")).unwrap();
    xattr::set(root.join("bin/rel"), "trusted.onlink", b"l").unwrap();
    nix::unistd::mkfifo(&root.join("tmp/fifo"), Mode::from_bits_truncate(0o620)).unwrap();
    mknod(&root.join("etc/null"), SFlag::S_IFCHR, Mode::from_bits_truncate(0o666), makedev(1, 3)).unwrap();
    mknod(&root.join("etc/loop9"), SFlag::S_IFBLK, Mode::from_bits_truncate(0o660), makedev(7, 9)).unwrap();
    w("owned/user", b"u", 0o640);
    chown(&root.join("owned/user"), 1000, 1000);
    w("owned/bigids", b"ids", 0o644);
    chown(&root.join("owned/bigids"), 3_000_000, 4_000_000); // beyond the octal fields: PAX
    chown(&root.join("owned"), 12345, 54321);
    chown(&root.join("bin/rel"), 7, 8);
    // Names longer than 100 and 255 bytes, a component of 255 bytes, non-UTF-8 bytes.
    let mut deep = root.join("deep");
    for i in 0..6 {
        deep = deep.join(format!("level-{i}-{}", "n".repeat(40)));
        std::fs::create_dir(&deep).unwrap();
    }
    std::fs::write(deep.join("f".repeat(255)), b"long name").unwrap();
    std::fs::write(root.join("deep").join(OsStr::from_bytes(b"caf\xe9 \n name")), b"latin1").unwrap();
    // Nanosecond mtimes everywhere; one before 1970 and one beyond the octal field's range.
    set_mtime(&root.join("etc/big"), 1_700_000_000, 123_456_789);
    set_mtime(&root.join("etc/small"), -1000, 500_000_000);
    set_mtime(&root.join("owned/user"), 10_000_000_000, 1);
    set_mtime(&root.join("bin/rel"), 1_500_000_000, 999_999_999);
    set_mtime(&root.join("tmp/fifo"), 1_400_000_000, 42);
    for d in ["etc", "bin", "tmp", "sgid", "owned", "deep", "."] {
        set_mtime(&root.join(d), 1_650_000_000, 777);
    }
    std::fs::set_permissions(root.join("ro"), std::fs::Permissions::from_mode(0o555)).unwrap();
    set_mtime(&root.join("ro"), 1_600_000_000, 5);
}

#[test]
fn gnu_tar_round_trips_in_both_modes() {
    if !strata_testutil::require_root() || !strata_testutil::require_tool("tar") {
        return;
    }
    let src = tempfile::tempdir().unwrap();
    varied_tree(src.path());
    let tar = gnu_tar(src.path());
    let expected = snapshot(src.path(), FULL);
    assert!(expected.len() > 30, "the tree has {} objects", expected.len());
    for mode in [WhiteoutMode::Oci, WhiteoutMode::Overlay] {
        let dst = tempfile::tempdir().unwrap();
        let stats = apply_simple(dst.path(), &tar[..], &ApplyOptions::new(mode)).unwrap();
        assert_eq!(stats.stream_bytes, tar.len() as u64);
        assert_eq!(stats.implicit_dirs, 0);
        assert_same(&expected, &snapshot(dst.path(), FULL), &format!("GNU tar round trip, {mode:?} mode"));
    }
}

#[test]
fn observer_and_tap_see_every_entry_and_every_byte() {
    if !strata_testutil::require_root() || !strata_testutil::require_tool("tar") {
        return;
    }
    let src = tempfile::tempdir().unwrap();
    varied_tree(src.path());
    let tar = gnu_tar(src.path());
    let dst = tempfile::tempdir().unwrap();
    let mut tap = Collect::default();
    let mut seen = Vec::new();
    let mut copied = 0;
    apply(
        dst.path(),
        &tar[..],
        &ApplyOptions::new(WhiteoutMode::Overlay),
        &mut CopyContent,
        Some(&mut tap),
        &mut |a| {
            if let Applied::Entry { entry, content } = a {
                seen.push(entry.path.clone());
                copied += content.unwrap_or(0);
            }
            Ok(())
        },
    )
    .unwrap();
    assert_eq!(tap.bytes, tar, "the tap received the exact stream");
    assert_eq!(tap.begins, seen.len());
    // Every object of the source but the hardlinks' second names appears once.
    let objects = snapshot(src.path(), FULL).len();
    assert_eq!(seen.len(), objects);
    assert_eq!(copied, 6 + ((1 << 20) + 123) + 10 + 10 + 4 + 13 + 1 + 3 + 9 + 6);
}

/// A tap collecting the stream.
#[derive(Default)]
struct Collect {
    bytes: Vec<u8>,
    begins: usize,
}

impl strata_layer::TarOut for Collect {
    fn segment(&mut self, b: &[u8]) -> std::io::Result<()> {
        self.bytes.extend_from_slice(b);
        Ok(())
    }
    fn file_begin(&mut self, _: &[u8], _: u64) -> std::io::Result<()> {
        self.begins += 1;
        Ok(())
    }
    fn file_data(&mut self, b: &[u8]) -> std::io::Result<()> {
        self.bytes.extend_from_slice(b);
        Ok(())
    }
    fn file_end(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

#[test]
fn debootstrap_rootfs_tar_applies_to_an_identical_tree() {
    if !strata_testutil::require_root() {
        return;
    }
    let Some(peers) = strata_testutil::Peers::require() else { return };
    let tar_path = peers.tar(strata_testutil::Rootfs::A);
    let mut expected = snapshot(&peers.rootfs(strata_testutil::Rootfs::A), FULL);
    // The tar was made with --exclude='./dev/*'.
    expected.retain(|k, _| !k.starts_with("dev/"));
    for mode in [WhiteoutMode::Oci, WhiteoutMode::Overlay] {
        let dst = tempfile::tempdir_in("/work").unwrap();
        let file = std::fs::File::open(&tar_path).unwrap();
        apply_simple(dst.path(), file, &ApplyOptions::new(mode)).unwrap();
        assert_same(&expected, &snapshot(dst.path(), FULL), "rootfs-a.tar applied");
    }
}
