//! Hostile images: each import fails with an error naming what was wrong, nothing escapes
//! the store, and the store is exactly as it was before (records, layers, directories).

mod common;

use std::collections::BTreeSet;
use std::fs;
use std::path::Path;

use common::*;

/// One raw tar entry, written without any of the tar crate's path checks.
struct Raw {
    name: Vec<u8>,
    typeflag: u8,
    link: Vec<u8>,
    data: Vec<u8>,
    dev: (u32, u32),
    pax: Vec<(String, Vec<u8>)>,
}

fn file(name: &str, data: &[u8]) -> Raw {
    Raw { name: name.into(), typeflag: b'0', link: vec![], data: data.to_vec(), dev: (0, 0), pax: vec![] }
}
fn dir(name: &str) -> Raw {
    Raw { typeflag: b'5', ..file(name, b"") }
}
fn symlink(name: &str, target: &str) -> Raw {
    Raw { typeflag: b'2', link: target.into(), ..file(name, b"") }
}
fn hardlink(name: &str, target: &str) -> Raw {
    Raw { typeflag: b'1', link: target.into(), ..file(name, b"") }
}
fn chardev(name: &str, major: u32, minor: u32) -> Raw {
    Raw { typeflag: b'3', dev: (major, minor), ..file(name, b"") }
}

fn header(name: &[u8], typeflag: u8, link: &[u8], size: u64, dev: (u32, u32)) -> [u8; 512] {
    let mut h = tar::Header::new_ustar();
    {
        let u = h.as_ustar_mut().expect("ustar");
        u.name[..name.len()].copy_from_slice(name);
        u.linkname[..link.len()].copy_from_slice(link);
    }
    h.set_mode(0o644);
    h.set_size(size);
    h.set_mtime(1_700_000_000);
    h.set_entry_type(tar::EntryType::new(typeflag));
    if typeflag == b'3' || typeflag == b'4' {
        h.set_device_major(dev.0).unwrap();
        h.set_device_minor(dev.1).unwrap();
    }
    h.set_cksum();
    let mut out = [0u8; 512];
    out.copy_from_slice(h.as_bytes());
    out
}

fn pad(v: &mut Vec<u8>) {
    while !v.len().is_multiple_of(512) {
        v.push(0);
    }
}

fn tar_of(entries: &[Raw]) -> Vec<u8> {
    let mut out = Vec::new();
    for e in entries {
        if !e.pax.is_empty() {
            let mut recs = Vec::new();
            for (k, v) in &e.pax {
                let body_len = k.len() + v.len() + 3;
                let mut n = body_len + 1;
                while n.to_string().len() + body_len != n {
                    n += 1;
                }
                recs.extend_from_slice(format!("{n} {k}=").as_bytes());
                recs.extend_from_slice(v);
                recs.push(b'\n');
            }
            out.extend_from_slice(&header(b"PaxHeaders/x", b'x', b"", recs.len() as u64, (0, 0)));
            out.extend_from_slice(&recs);
            pad(&mut out);
        }
        out.extend_from_slice(&header(&e.name, e.typeflag, &e.link, e.data.len() as u64, e.dev));
        out.extend_from_slice(&e.data);
        pad(&mut out);
    }
    out.extend_from_slice(&[0u8; 1024]);
    out
}

/// Everything that describes the store's state: records and the files under its root
/// (RocksDB's own files excepted: they change on every open without changing content).
fn state(root: &Path) -> (serde_json::Value, serde_json::Value, BTreeSet<String>) {
    let images = strata_json(root, &["images"]);
    let layers = strata_json(root, &["layers"]);
    let mut files = BTreeSet::new();
    let mut stack = vec![root.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in fs::read_dir(&d).unwrap() {
            let p = e.unwrap().path();
            let rel = p.strip_prefix(root).unwrap().display().to_string();
            if rel.starts_with("index") || rel == "lock" || rel == "lock.owner" {
                continue;
            }
            if p.is_dir() && !p.is_symlink() {
                stack.push(p.clone());
            }
            files.insert(rel);
        }
    }
    (images, layers, files)
}

fn listing(dir: &Path) -> BTreeSet<String> {
    let out = std::process::Command::new("find").arg(dir).output().unwrap();
    String::from_utf8_lossy(&out.stdout).lines().map(str::to_owned).collect()
}

/// Imports a layout expected to be rejected; checks the error and that nothing changed.
fn rejected(work: &Path, root: &Path, layout: &Path, needle: &str) {
    let before = state(root);
    let outside_before = listing(work);
    let err = strata_fails(root, &["import", &format!("oci:{}:bad", layout.display()), "--name", "bad"]);
    assert!(err.to_lowercase().contains(&needle.to_lowercase()), "expected {needle:?} in: {err}");
    assert_eq!(err.trim().lines().count(), 1, "{err}");
    assert_eq!(before, state(root), "store changed after rejecting {}", layout.display());
    let outside_after = listing(work);
    let new: Vec<_> = outside_after.difference(&outside_before).filter(|p| !p.contains("/store/")).collect();
    assert!(new.is_empty(), "files appeared outside the store: {new:?}");
    assert_eq!(strata_json(root, &["fsck"])["ok"], true);
}

#[test]
fn hostile_layers_are_rejected_and_change_nothing() {
    if !strata_testutil::require_root() {
        return;
    }
    let work = tempfile::tempdir().unwrap();
    let work = work.path();
    let root = work.join("store");
    // A store with an image in it, so "unchanged" means something.
    let good = work.join("good");
    image_from_trees(
        &good,
        "v1",
        &[&{
            let t = work.join("t");
            sample_tree(&t, 3);
            t
        }],
        Compression::Gzip,
    );
    strata_json(&root, &["import", &format!("oci:{}:v1", good.display()), "--name", "good"]);

    let ok_layer = tar_of(&[dir("etc/"), file("etc/ok", b"fine")]);
    let cases: Vec<(&str, Vec<Raw>, &str)> = vec![
        ("dotdot", vec![file("../escape", b"x")], ".."),
        ("dotdot-inner", vec![dir("a/"), file("a/../../escape", b"x")], ".."),
        ("absolute", vec![file("/abs-escape", b"x")], "absolute"),
        ("symlink-root", vec![symlink("link", "/"), file("link/tmp/escape", b"x")], "symlink"),
        ("symlink-up", vec![symlink("link", "../../../../.."), file("link/escape", b"x")], "symlink"),
        ("hardlink-up", vec![hardlink("h", "../outside")], ".."),
        ("hardlink-abs", vec![hardlink("h", "/etc/passwd")], "hardlink"),
        ("hardlink-through-symlink", vec![symlink("s", "/etc"), hardlink("h", "s/passwd")], "symlink"),
        ("whiteout-dotdot", vec![dir("d/"), file("d/.wh..", b"")], "whiteout"),
        ("whiteout-dots", vec![file(".wh...", b"")], "whiteout"),
        ("whiteout-device", vec![chardev("x", 0, 0)], "whiteout"),
        ("duplicate", vec![file("a", b"1"), file("a", b"2")], "twice"),
        (
            "overlay-xattr",
            vec![Raw { pax: vec![("SCHILY.xattr.trusted.overlay.redirect".into(), b"/etc".to_vec())], ..dir("d/") }],
            "overlay",
        ),
    ];
    for (name, entries, needle) in cases {
        let layout = work.join(format!("bad-{name}"));
        // A good first layer: a failure in the second must not leave the first behind.
        write_image(&layout, "bad", &[ok_layer.clone(), tar_of(&entries)], Compression::Gzip);
        rejected(work, &root, &layout, needle);
    }

    // Truncated tar (the gzip stream is valid, the tar inside ends early).
    let mut t = tar_of(&[file("big", &bytes(100_000, 1))]);
    t.truncate(50_000);
    let layout = work.join("bad-truncated-tar");
    write_image(&layout, "bad", &[t], Compression::Gzip);
    rejected(work, &root, &layout, "truncated");

    // Blobs that do not match their descriptors.
    let layout = work.join("bad-corrupt-blob");
    let d = write_image(&layout, "bad", &[tar_of(&[file("f", &bytes(50_000, 2))])], Compression::Gzip);
    let dir = strata_oci::layout::OciDir::open(&layout).unwrap();
    let (_, m) = dir.read_manifest(&d).unwrap();
    let blob = dir.blob_path(&m.layers[0].digest);
    let mut data = fs::read(&blob).unwrap();
    let mid = data.len() / 2;
    data[mid] ^= 0x55;
    fs::write(&blob, &data).unwrap();
    rejected(work, &root, &layout, "digest");
    data.truncate(mid);
    fs::write(&blob, &data).unwrap();
    rejected(work, &root, &layout, "bytes");

    // A config whose DiffID does not match the layer.
    let layout = work.join("bad-diffid");
    let other = tar_of(&[file("g", b"other")]);
    write_image(&layout, "bad", &[tar_of(&[file("f", b"x")])], Compression::None);
    let dir = strata_oci::layout::OciDir::open(&layout).unwrap();
    let desc = dir.resolve(Some("bad")).unwrap();
    let (_, mut m) = dir.read_manifest(&desc).unwrap();
    let cfg = strata_oci::ImageConfig::new(vec![strata_types::Sha256Digest::of(&other)]);
    m.config = dir.write_json_blob(strata_oci::media::IMAGE_CONFIG, &cfg).unwrap();
    let md = dir.write_json_blob(strata_oci::media::IMAGE_MANIFEST, &m).unwrap();
    dir.set_tag("bad", &md).unwrap();
    rejected(work, &root, &layout, "DiffID");
}
