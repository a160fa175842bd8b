//! "Accepted means consistent": whatever `apply` accepts can be exported again byte for byte
//! from the tar-split and the files, and the observer's reports agree with the directory;
//! everything else is refused with an error that names the entry and what is wrong.

mod common;

use std::os::unix::fs::MetadataExt;

use common::{Event, H, TarBuilder, assert_consistent, import};
use strata_layer::apply::{ApplyOptions, SecurityXattrs, WhiteoutMode, apply_simple};

fn both_modes() -> [ApplyOptions; 2] {
    [ApplyOptions::new(WhiteoutMode::Oci), ApplyOptions::new(WhiteoutMode::Overlay)]
}

/// Whiteouts, opaque markers and AUFS metadata are never created as files, so data they
/// carry would be in the tar-split with no file to export it from.
#[test]
fn markers_with_data_are_rejected_naming_the_entry() {
    let t = TarBuilder::new;
    let cases = [
        ("whiteout", t().file(".wh.f", b"data").finish(), ".wh.f"),
        ("opaque marker", t().dir("d").file("d/.wh..wh..opq", b"data").finish(), "d/.wh..wh..opq"),
        ("AUFS hardlink store", t().file(".wh..wh.plnk/1234.56", b"data").finish(), ".wh..wh.plnk/1234.56"),
        ("AUFS metadata", t().file("x/.wh..wh.aufs", b"data").finish(), "x/.wh..wh.aufs"),
    ];
    for (name, tar, entry) in cases {
        for opts in both_modes() {
            let root = tempfile::tempdir().unwrap();
            let err = match apply_simple(root.path(), &tar[..], &opts) {
                Ok(_) => panic!("{name} ({:?}): accepted", opts.whiteouts),
                Err(e) => e.to_string(),
            };
            assert!(err.contains(entry) && err.contains("4 bytes"), "{name}: {err}");
        }
    }
}

/// A whiteout is "an empty file" (OCI image spec); AUFS-era Docker wrote some as hardlinks
/// to another whiteout (every AUFS whiteout is a hardlink), and those stay accepted. Other
/// types are read as content by some tools and as whiteouts by others: refused.
#[test]
fn markers_that_are_not_empty_files_are_rejected() {
    let t = TarBuilder::new;
    let mut fifo = H::new("d/.wh..wh..opq", b'6');
    fifo.mode = 0o644;
    let cases = [
        ("directory whiteout", t().dir(".wh.d").finish(), ".wh.d", "directory"),
        ("symlink whiteout", t().symlink(".wh.s", "x").finish(), ".wh.s", "symlink"),
        ("device whiteout", t().chardev(".wh.c", 1, 3).finish(), ".wh.c", "device"),
        ("fifo opaque marker", t().dir("d").header(&fifo).finish(), "d/.wh..wh..opq", "fifo"),
    ];
    for (name, tar, entry, kind) in cases {
        for opts in both_modes() {
            let root = tempfile::tempdir().unwrap();
            let err = match apply_simple(root.path(), &tar[..], &opts) {
                Ok(_) => panic!("{name} ({:?}): accepted", opts.whiteouts),
                Err(e) => e.to_string(),
            };
            assert!(err.contains(entry) && err.contains(kind), "{name}: {err}");
        }
    }
}

#[test]
fn accepted_markers_export_again_and_are_reported_consistently() {
    if !strata_testutil::require_root() {
        return;
    }
    let tar = TarBuilder::new()
        .dir("a")
        .file("a/.wh.x", b"")
        .dir("b")
        .hardlink("b/.wh.y", "a/.wh.x") // AUFS-era Docker: whiteouts are hardlinks of one inode
        .file(".wh..wh.aufs", b"")
        .dir(".wh..wh.plnk")
        .dir(".wh..wh.orph")
        .file("b/.wh..wh..opq", b"")
        .finish();
    let root = tempfile::tempdir().unwrap();
    let imported = import(root.path(), &tar, &ApplyOptions::new(WhiteoutMode::Overlay)).unwrap();
    assert_consistent(root.path(), &tar, &imported);
    let mut events = imported.events.clone();
    events.sort();
    let w = |p: &str| Event::Whiteout(p.to_owned());
    let e = |p: &str| Event::Entry(p.to_owned());
    let s = |p: &str| Event::Skipped(p.to_owned());
    let mut expected = vec![
        e("a"),
        w("a/x"),
        e("b"),
        w("b/y"),
        Event::Opaque("b".to_owned()),
        s(".wh..wh.aufs"),
        s(".wh..wh.plnk"),
        s(".wh..wh.orph"),
    ];
    expected.sort();
    assert_eq!(events, expected);
    assert!(!root.path().join(".wh..wh.plnk").exists());
}

/// (uid_t)-1 is "leave unchanged" for chown: a file can never be given it, so a record that
/// says so could never match the file. (uid_t)-2 is an ordinary id.
#[test]
fn owner_minus_one_is_rejected_and_minus_two_is_applied() {
    for key in ["uid", "gid"] {
        let tar = TarBuilder::new().pax(&[(key, b"4294967295")]).file("f", b"x").finish();
        for opts in both_modes() {
            let root = tempfile::tempdir().unwrap();
            let err = match apply_simple(root.path(), &tar[..], &opts) {
                Ok(_) => panic!("{key} 4294967295 accepted"),
                Err(e) => e.to_string(),
            };
            assert!(err.contains(key) && err.contains("4294967295") && err.contains("\"f\""), "{err}");
        }
    }
    // The same in a base-256 header field.
    let mut h = TarBuilder::header_block(&H::new("g", b'0'));
    h[108..116].copy_from_slice(&[0x80, 0, 0, 0, 0xff, 0xff, 0xff, 0xff]);
    let mut hh = tar::Header::from_byte_slice(&h).clone();
    hh.set_cksum();
    let tar = [hh.as_bytes(), &[0u8; 1024][..]].concat();
    let root = tempfile::tempdir().unwrap();
    let err = apply_simple(root.path(), &tar[..], &ApplyOptions::new(WhiteoutMode::Oci)).unwrap_err().to_string();
    assert!(err.contains("uid") && err.contains("4294967295"), "{err}");

    if !strata_testutil::require_root() {
        return;
    }
    let tar = TarBuilder::new().pax(&[("uid", b"4294967294"), ("gid", b"4294967294")]).file("f", b"x").finish();
    let root = tempfile::tempdir().unwrap();
    let imported = import(root.path(), &tar, &ApplyOptions::new(WhiteoutMode::Overlay)).unwrap();
    assert_consistent(root.path(), &tar, &imported);
    let md = std::fs::metadata(root.path().join("f")).unwrap();
    assert_eq!((md.uid(), md.gid()), (4294967294, 4294967294));
}

const CAP: &[u8] = &[0x01, 0, 0, 0x02, 0x00, 0x04, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0];
const LABEL: &[u8] = b"system_u:object_r:shadow_t:s0\0";
const IMA: &[u8] = &[0x03, 0x02, 0x04, 0xde, 0xad, 0xbe, 0xef];

fn labelled_layer() -> Vec<u8> {
    let host: &[(&str, &[u8])] = &[
        ("SCHILY.xattr.security.selinux", LABEL),
        ("SCHILY.xattr.security.ima", IMA),
        ("SCHILY.xattr.security.evm", b"\x05evm"),
        ("SCHILY.xattr.security.capability", CAP),
        ("SCHILY.xattr.user.keep", b"k"),
    ];
    TarBuilder::new().pax(&host[..1]).dir("etc").pax(host).file("etc/tool", b"#!/bin/sh\n").finish()
}

/// SELinux labels come from the runtime (containers/storage ignores the image's), IMA/EVM
/// signatures are appraised against the host's keys: neither is applied from a layer by
/// default. File capabilities are part of the image and are applied. The tar-split keeps
/// the raw headers, so the layer still exports byte for byte with the dropped xattrs.
#[test]
fn host_security_xattrs_are_not_applied_by_default_and_still_export() {
    if !strata_testutil::require_root() {
        return;
    }
    let tar = labelled_layer();
    let root = tempfile::tempdir().unwrap();
    let imported = import(root.path(), &tar, &ApplyOptions::new(WhiteoutMode::Overlay)).unwrap();
    assert_consistent(root.path(), &tar, &imported);
    let tool = root.path().join("etc/tool");
    let get = |p: &std::path::Path, k: &str| xattr::get(p, k).unwrap();
    assert_eq!(get(&tool, "security.capability").as_deref(), Some(CAP));
    assert_eq!(get(&tool, "user.keep").as_deref(), Some(&b"k"[..]));
    assert_ne!(get(&tool, "security.selinux").as_deref(), Some(LABEL), "the layer's label is not applied");
    assert_ne!(get(&root.path().join("etc"), "security.selinux").as_deref(), Some(LABEL));
    assert!(get(&tool, "security.ima").is_none() && get(&tool, "security.evm").is_none());
    let reported = imported.entries.iter().find(|e| e.path.as_bytes() == b"etc/tool").unwrap();
    let names: Vec<&str> = reported.xattrs.keys().map(String::as_str).collect();
    assert_eq!(names, ["security.capability", "user.keep"], "the observer sees what was applied");
    let rebuilt = common::regenerate_from(root.path(), &imported.tarsplit).unwrap();
    assert!(rebuilt.windows(29).any(|w| w == b"SCHILY.xattr.security.selinux"));
    assert_eq!(rebuilt, tar);
}

#[test]
fn host_security_xattrs_are_applied_when_asked() {
    if !strata_testutil::require_root() {
        return;
    }
    let tar = labelled_layer();
    let root = tempfile::tempdir().unwrap();
    let mut opts = ApplyOptions::new(WhiteoutMode::Overlay);
    opts.security_xattrs = SecurityXattrs::All;
    let imported = import(root.path(), &tar, &opts).unwrap();
    assert_consistent(root.path(), &tar, &imported);
    let tool = root.path().join("etc/tool");
    for (k, v) in [("security.selinux", LABEL), ("security.ima", IMA), ("security.capability", CAP)] {
        assert_eq!(xattr::get(&tool, k).unwrap().as_deref(), Some(v), "{k}");
    }
    assert_eq!(xattr::get(root.path().join("etc"), "security.selinux").unwrap().as_deref(), Some(LABEL));
}

/// An existing directory (OCI mode, or the store's layer root named `./` by the layer)
/// keeps the xattrs the layer may not set: the host's label is not removed either.
#[test]
fn an_existing_directory_keeps_its_host_label() {
    if !strata_testutil::require_root() {
        return;
    }
    let root = tempfile::tempdir().unwrap();
    std::fs::create_dir(root.path().join("etc")).unwrap();
    xattr::set(root.path().join("etc"), "security.selinux", b"host_label\0").unwrap();
    xattr::set(root.path().join("etc"), "user.old", b"o").unwrap();
    let tar = TarBuilder::new().pax(&[("SCHILY.xattr.security.selinux", LABEL)]).dir("etc").finish();
    apply_simple(root.path(), &tar[..], &ApplyOptions::new(WhiteoutMode::Oci)).unwrap();
    let etc = root.path().join("etc");
    assert_eq!(xattr::get(&etc, "security.selinux").unwrap().as_deref(), Some(&b"host_label\0"[..]));
    assert!(xattr::get(&etc, "user.old").unwrap().is_none(), "the layer decides the other xattrs");
}
