//! Whiteout semantics. OCI mode is checked directly and against the kernel: the same layers
//! applied in overlay mode into separate directories and mounted as overlay lowerdirs must
//! show exactly the tree OCI mode builds in one directory.

mod common;

use std::os::unix::fs::{FileTypeExt, MetadataExt};
use std::path::{Path, PathBuf};
use std::process::Command;

use common::{Event, FULL, H, TarBuilder, assert_consistent, assert_same, import, snapshot};
use strata_layer::apply::{Applied, ApplyOptions, CopyContent, WhiteoutMode, apply, apply_simple};

fn dir(b: &mut TarBuilder, name: &str, mtime: u64) {
    let mut h = H::new(name, b'5');
    h.mtime = mtime;
    b.header(&h);
}

fn file(b: &mut TarBuilder, name: &str, data: &[u8], uid: u64) {
    let mut h = H::new(name, b'0');
    h.size = data.len() as u64;
    h.uid = uid;
    h.mtime = 1_600_000_100;
    b.header(&h).data(data);
}

/// Three layers that exercise every whiteout case; each layer includes the parents of its
/// entries, as real layer writers do.
fn layers() -> Vec<Vec<u8>> {
    let mut l1 = TarBuilder::new();
    for d in [
        "etc",
        "usr",
        "usr/lib",
        "usr/share",
        "usr/share/doc",
        "var",
        "var/cache",
        "var/cache/x",
        "var/cache/x/y",
        "opt",
        "opt/tool",
    ] {
        dir(&mut l1, d, 1_500_000_000);
    }
    file(&mut l1, "etc/conf", b"conf", 0);
    file(&mut l1, "etc/keep", b"keep", 0);
    file(&mut l1, "usr/lib/a.so", b"a", 0);
    file(&mut l1, "usr/lib/b.so", b"b", 0);
    l1.symlink("usr/lib/link", "a.so").hardlink("usr/lib/a-hard.so", "usr/lib/a.so");
    file(&mut l1, "usr/share/doc/a", b"doc a", 0);
    file(&mut l1, "usr/share/doc/b", b"doc b", 0);
    file(&mut l1, "var/cache/x/y/z", b"deep", 5);
    file(&mut l1, "opt/tool/bin", b"tool", 0);

    let mut l2 = TarBuilder::new();
    dir(&mut l2, "etc", 1_600_000_000);
    file(&mut l2, "etc/.wh.conf", b"", 0); // a file only in a lower
    file(&mut l2, "etc/new", b"new file", 0);
    dir(&mut l2, "var", 1_600_000_001);
    file(&mut l2, "var/.wh.cache", b"", 0); // a whole lower tree
    dir(&mut l2, "usr", 1_600_000_002);
    let mut lib = H::new("usr/lib", b'5');
    lib.mode = 0o750;
    lib.mtime = 1_600_000_003;
    l2.header(&lib);
    file(&mut l2, "usr/lib/.wh..wh..opq", b"", 0);
    file(&mut l2, "usr/lib/c.so", b"c", 1000); // added by the opaque layer: stays
    file(&mut l2, ".wh.notthere", b"", 0); // nothing to delete anywhere

    let mut l3 = TarBuilder::new();
    dir(&mut l3, "etc", 1_700_000_000);
    file(&mut l3, "etc/.wh.new", b"", 0); // a file replaced by a directory
    dir(&mut l3, "etc/new", 1_700_000_001);
    file(&mut l3, "etc/new/inner", b"inner", 0);
    dir(&mut l3, "usr", 1_700_000_002);
    dir(&mut l3, "usr/lib", 1_700_000_003);
    file(&mut l3, "usr/lib/c.so", b"c v2", 0);
    file(&mut l3, "usr/lib/zz", b"zz", 0);
    file(&mut l3, "usr/lib/.wh.zz", b"", 0); // after the entry: only lower content goes
    dir(&mut l3, "usr/share", 1_700_000_004);
    dir(&mut l3, "usr/share/doc", 1_700_000_005);
    file(&mut l3, "usr/share/doc/c", b"doc c", 0);
    file(&mut l3, "usr/share/doc/.wh..wh..opq", b"", 0); // opaque after an entry of its layer
    file(&mut l3, ".wh.opt", b"", 0); // a directory replaced by a new one
    dir(&mut l3, "opt", 1_700_000_006);
    file(&mut l3, "opt/fresh", b"fresh", 0);
    vec![l1.finish(), l2.finish(), l3.finish()]
}

fn oci_tree(layers: &[Vec<u8>], root: &Path) {
    for l in layers {
        apply_simple(root, &l[..], &ApplyOptions::new(WhiteoutMode::Oci)).unwrap();
    }
}

#[test]
fn oci_whiteouts_delete_only_lower_content() {
    let root = tempfile::tempdir().unwrap();
    let layers = layers();
    oci_tree(&layers[..2], root.path());
    let r = root.path();
    assert!(!r.join("etc/conf").exists(), "a whiteout deletes a lower file");
    assert_eq!(std::fs::read(r.join("etc/keep")).unwrap(), b"keep");
    assert!(!r.join("var/cache").exists(), "a whiteout deletes a lower tree");
    let mut lib: Vec<_> = std::fs::read_dir(r.join("usr/lib")).unwrap().map(|e| e.unwrap().file_name()).collect();
    lib.sort();
    assert_eq!(lib, ["c.so"], "opaque keeps only what its layer added");
    assert!(!r.join("notthere").exists());
    assert_eq!(std::fs::metadata(r.join("usr/lib")).unwrap().mode() & 0o7777, 0o750);

    apply_simple(r, &layers[2][..], &ApplyOptions::new(WhiteoutMode::Oci)).unwrap();
    assert_eq!(std::fs::read(r.join("etc/new/inner")).unwrap(), b"inner");
    assert_eq!(std::fs::read(r.join("usr/lib/zz")).unwrap(), b"zz", "a later whiteout spares its own layer");
    let mut doc: Vec<_> = std::fs::read_dir(r.join("usr/share/doc")).unwrap().map(|e| e.unwrap().file_name()).collect();
    doc.sort();
    assert_eq!(doc, ["c"]);
    let mut opt: Vec<_> = std::fs::read_dir(r.join("opt")).unwrap().map(|e| e.unwrap().file_name()).collect();
    opt.sort();
    assert_eq!(opt, ["fresh"]);
    // The directory a whiteout deleted from gets its layer's mtime, not "now".
    assert_eq!(std::fs::metadata(r.join("var")).unwrap().mtime(), 1_600_000_001);
}

#[test]
fn oci_whiteout_restores_the_mtime_of_a_directory_the_layer_does_not_name() {
    let root = tempfile::tempdir().unwrap();
    let mut l1 = TarBuilder::new();
    dir(&mut l1, "d", 1_234_567_890);
    file(&mut l1, "d/f", b"f", 0);
    file(&mut l1, "d/g", b"g", 0);
    apply_simple(root.path(), &l1.finish()[..], &ApplyOptions::new(WhiteoutMode::Oci)).unwrap();
    // A layer without the parent entry (some writers omit parents).
    let l2 = TarBuilder::new().file("d/.wh.f", b"").file("d/new", b"n").finish();
    apply_simple(root.path(), &l2[..], &ApplyOptions::new(WhiteoutMode::Oci)).unwrap();
    let md = std::fs::metadata(root.path().join("d")).unwrap();
    assert_eq!((md.mtime(), md.mtime_nsec()), (1_234_567_890, 0));
    assert!(!root.path().join("d/f").exists());
}

#[test]
fn overlay_mode_writes_whiteout_devices_and_opaque_xattrs() {
    if !strata_testutil::require_root() {
        return;
    }
    let layers = layers();
    let l2 = tempfile::tempdir().unwrap();
    let mut events = Vec::new();
    apply(l2.path(), &layers[1][..], &ApplyOptions::new(WhiteoutMode::Overlay), &mut CopyContent, None, &mut |a| {
        events.push(match a {
            Applied::Whiteout { target, .. } => format!("whiteout {target}"),
            Applied::Opaque { dir, .. } => format!("opaque {dir}"),
            Applied::Entry { entry, .. } => format!("entry {}", entry.path),
            other => format!("{other:?}"),
        });
        Ok(())
    })
    .unwrap();
    assert!(events.contains(&"whiteout etc/conf".to_owned()) && events.contains(&"opaque usr/lib".to_owned()));
    for w in ["etc/conf", "var/cache", "notthere"] {
        let md = std::fs::symlink_metadata(l2.path().join(w)).unwrap();
        assert!(md.file_type().is_char_device() && md.rdev() == 0, "{w} is a whiteout device");
    }
    assert_eq!(xattr::get(l2.path().join("usr/lib"), "trusted.overlay.opaque").unwrap().as_deref(), Some(&b"y"[..]));
    assert!(xattr::get(l2.path().join("etc"), "trusted.overlay.opaque").unwrap().is_none());

    let l3 = tempfile::tempdir().unwrap();
    apply_simple(l3.path(), &layers[2][..], &ApplyOptions::new(WhiteoutMode::Overlay)).unwrap();
    for d in ["opt", "etc/new", "usr/share/doc"] {
        assert_eq!(xattr::get(l3.path().join(d), "trusted.overlay.opaque").unwrap().as_deref(), Some(&b"y"[..]), "{d}");
    }
    assert!(std::fs::symlink_metadata(l3.path().join("usr/lib/zz")).unwrap().is_file());
}

/// Mounts `lowers` (top-most first) read-only, without an upper directory.
struct Mount(PathBuf);

impl Mount {
    fn new(lowers: &[&Path], at: &Path) -> Mount {
        let lower = lowers.iter().map(|p| p.display().to_string()).collect::<Vec<_>>().join(":");
        strata_testutil::run(
            Command::new("mount").args(["-t", "overlay", "overlay", "-o"]).arg(format!("lowerdir={lower}")).arg(at),
        );
        Mount(at.to_owned())
    }
}

impl Drop for Mount {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg(&self.0).status();
    }
}

#[test]
fn overlay_mount_of_overlay_mode_layers_equals_oci_mode_extraction() {
    if !strata_testutil::require_root() {
        return;
    }
    let layers = layers();
    let oci = tempfile::tempdir().unwrap();
    oci_tree(&layers, oci.path());
    let dirs: Vec<tempfile::TempDir> = layers
        .iter()
        .map(|l| {
            let d = tempfile::tempdir().unwrap();
            apply_simple(d.path(), &l[..], &ApplyOptions::new(WhiteoutMode::Overlay)).unwrap();
            d
        })
        .collect();
    let merged = tempfile::tempdir().unwrap();
    let lowers: Vec<&Path> = dirs.iter().rev().map(|d| d.path()).collect();
    let m = Mount::new(&lowers, merged.path());
    let mut expected = snapshot(oci.path(), FULL);
    let mut actual = snapshot(merged.path(), FULL);
    // The root directory is whatever the top layer directory is; layers here have no "./".
    expected.remove(".");
    actual.remove(".");
    assert_same(&expected, &actual, "overlay mount of overlay-mode layers vs OCI-mode extraction");
    drop(m);
}

/// Layers that white out a path and create it too, in either order. OCI: a whiteout applies
/// only to what lower layers had there, so the path ends up as the layer's entry (a
/// directory without the lower directory's children). Overlay mode must report that one
/// state: the entry, plus an opaque marker if it is a directory; never a whiteout.
fn same_layer_cases() -> Vec<(&'static str, Vec<u8>, Vec<Event>)> {
    let t = TarBuilder::new;
    let entry = |p: &str| Event::Entry(p.to_owned());
    let implicit = |p: &str| Event::Implicit(p.to_owned());
    let opaque = |p: &str| Event::Opaque(p.to_owned());
    vec![
        ("whiteout, then file", t().file(".wh.f", b"").file("f", b"new").finish(), vec![entry("f")]),
        ("file, then whiteout", t().file("f", b"new").file(".wh.f", b"").finish(), vec![entry("f")]),
        ("whiteout, then symlink", t().file(".wh.l", b"").symlink("l", "f").finish(), vec![entry("l")]),
        (
            "hardlink, then whiteout",
            t().file("f", b"x").hardlink("h", "f").file(".wh.h", b"").finish(),
            vec![entry("f"), entry("h")],
        ),
        (
            "whiteout, then directory",
            t().file(".wh.d", b"").dir("d").file("d/new", b"n").finish(),
            vec![entry("d"), entry("d/new"), opaque("d")],
        ),
        (
            "directory, then whiteout",
            t().dir("d").file("d/new", b"n").file(".wh.d", b"").finish(),
            vec![entry("d"), entry("d/new"), opaque("d")],
        ),
        (
            "whiteout, then a parent made for an entry",
            t().file(".wh.d", b"").file("d/new", b"n").finish(),
            vec![implicit("d"), entry("d/new"), opaque("d")],
        ),
        (
            "a parent made for an entry, then whiteout",
            t().file("d/new", b"n").file(".wh.d", b"").finish(),
            vec![implicit("d"), entry("d/new"), opaque("d")],
        ),
        (
            "whiteout, directory and opaque marker",
            t().file(".wh.d", b"").dir("d").file("d/.wh..wh..opq", b"").finish(),
            vec![entry("d"), opaque("d")],
        ),
        (
            "whiteout of a path the layer does not create",
            t().file(".wh.gone", b"").file("x", b"x").finish(),
            vec![Event::Whiteout("gone".to_owned()), entry("x")],
        ),
    ]
}

#[test]
fn a_path_whited_out_and_created_in_one_layer_is_reported_as_what_survives() {
    if !strata_testutil::require_root() {
        return;
    }
    for (name, tar, mut expected) in same_layer_cases() {
        let d = tempfile::tempdir().unwrap();
        let imported = import(d.path(), &tar, &ApplyOptions::new(WhiteoutMode::Overlay))
            .unwrap_or_else(|e| panic!("{name}: rejected: {e}"));
        let mut events = imported.events.clone();
        events.sort();
        expected.sort();
        assert_eq!(events, expected, "{name}");
        assert_consistent(d.path(), &tar, &imported);
    }
}

#[test]
fn overlay_mount_of_same_layer_whiteouts_equals_oci_mode_extraction() {
    if !strata_testutil::require_root() {
        return;
    }
    let mut l1 = TarBuilder::new();
    for d in ["d", "e", "s", "t"] {
        dir(&mut l1, d, 1_500_000_000);
        file(&mut l1, &format!("{d}/old"), b"old", 0);
    }
    for f in ["f", "l", "g"] {
        file(&mut l1, f, b"lower", 0);
    }
    let mut l2 = TarBuilder::new();
    file(&mut l2, ".wh.f", b"", 0);
    file(&mut l2, "f", b"new f", 0);
    dir(&mut l2, "d", 1_600_000_000);
    file(&mut l2, "d/new", b"new", 0);
    file(&mut l2, ".wh.d", b"", 0);
    file(&mut l2, ".wh.e", b"", 0);
    dir(&mut l2, "e", 1_600_000_001);
    file(&mut l2, "e/new", b"new", 0);
    file(&mut l2, ".wh.s", b"", 0);
    file(&mut l2, "s/new", b"new", 0);
    dir(&mut l2, "s", 1_600_000_002);
    dir(&mut l2, "t", 1_600_000_003);
    file(&mut l2, "t/new", b"new", 0);
    file(&mut l2, "t/.wh..wh..opq", b"", 0);
    file(&mut l2, ".wh.t", b"", 0);
    l2.symlink("l", "f");
    file(&mut l2, ".wh.l", b"", 0);
    file(&mut l2, ".wh.g", b"", 0);
    let layers = [l1.finish(), l2.finish()];

    let oci = tempfile::tempdir().unwrap();
    oci_tree(&layers, oci.path());
    let dirs: Vec<tempfile::TempDir> = layers
        .iter()
        .map(|l| {
            let d = tempfile::tempdir().unwrap();
            let imported = import(d.path(), l, &ApplyOptions::new(WhiteoutMode::Overlay)).unwrap();
            assert_consistent(d.path(), l, &imported);
            d
        })
        .collect();
    let merged = tempfile::tempdir().unwrap();
    let lowers: Vec<&Path> = dirs.iter().rev().map(|d| d.path()).collect();
    let m = Mount::new(&lowers, merged.path());
    let mut expected = snapshot(oci.path(), FULL);
    let mut actual = snapshot(merged.path(), FULL);
    expected.remove(".");
    actual.remove(".");
    assert!(!expected.contains_key("d/old") && !expected.contains_key("g") && expected.contains_key("t/new"));
    assert_same(&expected, &actual, "overlay mount vs OCI-mode extraction, same-layer whiteouts");
    drop(m);
}
