//! `strata merge`, `strata squash` and `strata diff IMAGE_A IMAGE_B` against the kernel, on
//! a real XFS loop mount. Images are built by random changes in real containers (overlay
//! mounts) and commits, on top of generated base images (one written by strata's differ,
//! one from hand-written tars that omit parent directories and whiteout-and-recreate).
//!
//! Oracles: an image's root filesystem is what overlayfs shows when its layer directories
//! are mounted; `strata diff A B` applied with OCI rules onto a copy of A's must give B's in
//! every attribute (both methods); a merge of images with disjoint changes must show each
//! image's changes; injected conflicts must be reported exactly; a squashed image must show
//! the same root filesystem and share all its data by reflink.
//!
//! `STRATA_MERGE_SEED` replays a run (printed), `STRATA_MERGE_IMAGES` sets how many images
//! are committed (default 10), `STRATA_MERGE_PAIRS` how many random pairs are diffed besides
//! every parent/child pair (default 30).

mod common;
#[path = "merge/ops.rs"]
mod ops;
#[path = "merge/tree.rs"]
mod tree;

use std::collections::{BTreeSet, HashMap};
use std::fs;
use std::io::Read;
use std::path::{Path, PathBuf};

use common::*;
use nix::sys::stat::SFlag;
use rand::RngExt;
use rand::rngs::StdRng;
use strata_differ::{DiffMethod, WriteOptions, write_layer};
use strata_layer::out_file::WriteTarOut;
use strata_store::{OpenOptions, Store};
use strata_testutil::{LoopMount, require_root, require_tool};
use strata_types::ImageName;
use tree::{Snap, apply_oci, assert_same, image_layers, mount_image, snapshot};

fn ok(root: &Path, args: &[&str]) -> String {
    let out = strata(root, args);
    assert!(out.status.success(), "strata {args:?} failed: {}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8_lossy(&out.stdout).trim().to_owned()
}

fn env_u64(name: &str) -> Option<u64> {
    std::env::var(name).ok().and_then(|v| v.parse().ok())
}

fn import(root: &Path, layout: &Path, name: &str) {
    strata_json(root, &["import", &format!("oci:{}:v1", layout.display()), "--name", name]);
}

/// A base image (one layer written by strata's differ): a sample tree plus random trees
/// confined to `etc/r` and `usr/r` (no hardlink crosses the two).
fn base_image(root: &Path, scratch: &Path, rng: &mut StdRng, name: &str) {
    let t = scratch.join(format!("tree-{name}"));
    sample_tree(&t, 7);
    ops::random_tree(rng, &t.join("etc/r"), 40);
    ops::random_tree(rng, &t.join("usr/r"), 40);
    let layout = scratch.join(format!("layout-{name}"));
    image_from_trees(&layout, "v1", &[&t], Compression::Zstd);
    import(root, &layout, name);
}

fn header(path: &str, kind: tar::EntryType, mode: u32, size: u64) -> tar::Header {
    let mut h = tar::Header::new_ustar();
    h.set_path(path).unwrap();
    h.set_entry_type(kind);
    h.set_mode(mode);
    h.set_uid(0);
    h.set_gid(0);
    h.set_mtime(1_500_000_000);
    h.set_size(size);
    h
}

/// Two images from hand-written tars: `foreign1` = [F1], `foreign2` = [F1, F2]. F1 names no
/// parent directory (extraction creates them: 0755, mtime 0) and has a hardlink and a
/// device; F2 whites out `var` and recreates it below, makes an unnamed directory opaque,
/// deletes a hardlinked file and a path that does not exist.
fn foreign_images(root: &Path, scratch: &Path) {
    let file = |b: &mut tar::Builder<Vec<u8>>, path: &str, data: &[u8], mode: u32| {
        let mut h = header(path, tar::EntryType::Regular, mode, data.len() as u64);
        h.set_cksum();
        b.append(&h, data).unwrap();
    };
    let other = |b: &mut tar::Builder<Vec<u8>>, path: &str, kind: tar::EntryType, link: Option<&str>| {
        let mut h = header(path, kind, 0o755, 0);
        if let Some(l) = link {
            h.set_link_name(l).unwrap();
        }
        if kind == tar::EntryType::Char {
            h.set_device_major(1).unwrap();
            h.set_device_minor(3).unwrap();
        }
        h.set_cksum();
        b.append(&h, std::io::empty()).unwrap();
    };
    let mut b = tar::Builder::new(Vec::new());
    file(&mut b, "opt/app/bin/tool", &bytes(70_000, 1), 0o755);
    other(&mut b, "opt/app/bin/tool-link", tar::EntryType::Link, Some("opt/app/bin/tool"));
    file(&mut b, "opt/app/etc/conf", b"x=1\n", 0o644);
    other(&mut b, "opt/app/share/", tar::EntryType::Directory, None);
    file(&mut b, "var/lib/x/y/data", &bytes(5000, 2), 0o600);
    other(&mut b, "devices/null", tar::EntryType::Char, None);
    let f1 = b.into_inner().unwrap();
    let mut b = tar::Builder::new(Vec::new());
    file(&mut b, ".wh.var", b"", 0o644);
    file(&mut b, ".wh.nonexistent", b"", 0o644);
    file(&mut b, "var/new/file", b"new\n", 0o644);
    file(&mut b, "opt/app/etc/.wh..wh..opq", b"", 0o644);
    file(&mut b, "opt/app/etc/new.conf", b"y=2\n", 0o640);
    file(&mut b, "opt/app/bin/.wh.tool", b"", 0o644);
    let f2 = b.into_inner().unwrap();
    let l1 = scratch.join("layout-foreign1");
    write_image(&l1, "v1", std::slice::from_ref(&f1), Compression::None);
    import(root, &l1, "foreign1");
    let l2 = scratch.join("layout-foreign2");
    write_image(&l2, "v1", &[f1, f2], Compression::Gzip);
    import(root, &l2, "foreign2");
}

/// Commits `ops` random changes (below `subtree` of the merged view) to a container of
/// `parent` as image `child`. Returns the operation log.
fn commit_random(root: &Path, parent: &str, child: &str, rng: &mut StdRng, ops: usize, subtree: &str) -> Vec<String> {
    let c = format!("c-{child}");
    ok(root, &["container", "create", parent, &c]);
    let merged = PathBuf::from(ok(root, &["container", "mount", &c]));
    let mut log = Vec::new();
    for _ in 0..ops {
        ops::random_op(rng, &merged.join(subtree), &mut log);
    }
    ok(root, &["container", "umount", &c]);
    let r = strata_json(root, &["commit", &c, child]);
    assert_eq!(r["diff_method"], "upperdir", "{r}");
    ok(root, &["container", "rm", &c]);
    log
}

fn seed() -> u64 {
    let s = env_u64("STRATA_MERGE_SEED").unwrap_or_else(|| {
        std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_secs() % 1_000_000
    });
    eprintln!("seed {s} (STRATA_MERGE_SEED={s} replays)");
    s
}

/// Snapshots of images' root filesystems (overlay mounts of their layers), computed once.
struct Views<'a> {
    root: &'a Path,
    snaps: HashMap<String, Snap>,
}

impl Views<'_> {
    fn of(&mut self, image: &str) -> &Snap {
        let root = self.root;
        self.snaps.entry(image.to_owned()).or_insert_with(|| snapshot(mount_image(root, image).path()))
    }
}

/// A copy of `image`'s root filesystem with `layer` applied (OCI rules).
fn apply_onto(root: &Path, scratch: &Path, image: &str, layer: &[u8]) -> Snap {
    let t = scratch.join("applied");
    if t.exists() {
        fs::remove_dir_all(&t).unwrap();
    }
    let m = mount_image(root, image);
    ops::copy_view(m.path(), &t);
    apply_oci(layer, &t);
    let s = snapshot(&t);
    fs::remove_dir_all(&t).unwrap();
    s
}

fn decompress(format: &str, blob: &[u8]) -> Vec<u8> {
    match format {
        "tar" => blob.to_vec(),
        "tar+gzip" => {
            let mut v = Vec::new();
            flate2::read::MultiGzDecoder::new(blob).read_to_end(&mut v).unwrap();
            v
        }
        _ => zstd::decode_all(blob).unwrap(),
    }
}

/// `strata diff a b` (CLI, method chosen by strata) and, when `a` is a prefix of `b`, the
/// metadata method too (library): each applied onto `a` must give `b`.
fn check_diff(root: &Path, scratch: &Path, views: &mut Views<'_>, a: &str, b: &str, format: &str) {
    let prefix = image_layers(root, b).starts_with(&image_layers(root, a));
    let out = scratch.join("diff.layer");
    let j = strata_json(root, &["diff", a, b, "-o", out.to_str().unwrap(), "--format", format]);
    assert_eq!(j["method"], if prefix { "squash" } else { "metadata" }, "{a} -> {b}: {j}");
    assert!(j["fallback_reason"].is_null());
    let blob = fs::read(&out).unwrap();
    assert_eq!(j["bytes"].as_u64().unwrap(), blob.len() as u64, "{j}");
    let tar = decompress(format, &blob);
    let names: Vec<String> = tar::Archive::new(&tar[..])
        .entries()
        .unwrap()
        .map(|e| String::from_utf8_lossy(&e.unwrap().path_bytes()).into_owned())
        .collect();
    assert_eq!(j["entries"].as_u64().unwrap(), names.len() as u64, "{j}");
    let whiteouts = names.iter().filter(|n| n.rsplit('/').next().is_some_and(|l| l.starts_with(".wh."))).count();
    assert_eq!(j["whiteouts"].as_u64().unwrap(), whiteouts as u64, "{j}");
    let expected = views.of(b);
    assert_same(expected, &apply_onto(root, scratch, a, &tar), &format!("strata diff {a} {b} ({format})"));
    if prefix {
        let store = Store::open(root, OpenOptions::default()).unwrap();
        let cs = store
            .diff_images_with(&ImageName::new(a).unwrap(), &ImageName::new(b).unwrap(), DiffMethod::Metadata)
            .unwrap();
        let mut sink = WriteTarOut::new(Vec::new());
        write_layer(&cs, &mut sink, &WriteOptions::default()).unwrap();
        drop(store);
        let tar = sink.into_inner().unwrap();
        assert_same(views.of(b), &apply_onto(root, scratch, a, &tar), &format!("metadata diff {a} {b}"));
    }
}

#[test]
fn store_diffs_and_squashes_reproduce_root_filesystems() {
    if !require_root() || !require_tool("mkfs.xfs") {
        return;
    }
    let seed = seed();
    let mut rng = ops::rng(seed);
    let m = LoopMount::xfs(3072);
    let root = m.path().join("store");
    let scratch = m.path().join("scratch");
    fs::create_dir_all(&scratch).unwrap();
    base_image(&root, &scratch, &mut rng, "base");
    foreign_images(&root, &scratch);
    let mut images: Vec<String> = vec!["base".into(), "foreign1".into(), "foreign2".into()];
    let mut parent_of: Vec<(String, String)> = vec![("foreign1".into(), "foreign2".into())];
    for i in 0..env_u64("STRATA_MERGE_IMAGES").unwrap_or(10) {
        let parent = images[rng.random_range(0..images.len())].clone();
        let child = format!("img{i}");
        let n = rng.random_range(1..25);
        let log = commit_random(&root, &parent, &child, &mut rng, n, "");
        eprintln!("{child} = {parent} + [{}]", log.join("; "));
        parent_of.push((parent, child.clone()));
        images.push(child);
    }
    let mut views = Views { root: &root, snaps: HashMap::new() };
    let formats = ["tar", "tar+zstd", "tar+gzip", "zstd:chunked"];
    let mut pairs: Vec<(String, String)> = Vec::new();
    for (p, c) in &parent_of {
        pairs.push((p.clone(), c.clone()));
        pairs.push((c.clone(), p.clone()));
    }
    for _ in 0..env_u64("STRATA_MERGE_PAIRS").unwrap_or(30) {
        let a = images[rng.random_range(0..images.len())].clone();
        let b = images[rng.random_range(0..images.len())].clone();
        pairs.push((a, b));
    }
    for (a, b) in &pairs {
        let format = formats[rng.random_range(0..formats.len())];
        check_diff(&root, &scratch, &mut views, a, b, format);
    }
    // Squash: same root filesystem, one layer, every byte cloned from the layers on XFS.
    for image in ["foreign2".to_string(), images[images.len() - 1].clone(), images[images.len() / 2].clone()] {
        let sq = format!("{image}-squashed");
        let r = strata_json(&root, &["squash", &image, &sq]);
        assert_eq!(image_layers(&root, &sq).len(), 1, "{r}");
        assert_eq!(r["bytes_written"], 0, "squash must clone, not copy: {r}");
        assert_eq!(r["bytes_reused"], r["bytes_reflinked"], "{r}");
        let expected = views.of(&image).objects.clone();
        let got = snapshot(mount_image(&root, &sq).path());
        let groups = views.of(&image).groups.clone();
        assert_same(&Snap { objects: expected, groups }, &got, &format!("squash of {image}"));
        check_diff(&root, &scratch, &mut views, &image, &sq, "tar");
    }
    assert_eq!(strata_json(&root, &["fsck", "--full"])["ok"], true);
}

/// Disjoint changes: one container changes only `etc/`, the other only `usr/`.
#[test]
fn merging_disjoint_changes_shows_all_of_them() {
    if !require_root() || !require_tool("mkfs.xfs") {
        return;
    }
    let seed = seed();
    let mut rng = ops::rng(seed);
    let m = LoopMount::xfs(1024);
    let root = m.path().join("store");
    let scratch = m.path().join("scratch");
    fs::create_dir_all(&scratch).unwrap();
    base_image(&root, &scratch, &mut rng, "base");
    for round in 0..3 {
        let (x1, x2) = (format!("x1-{round}"), format!("x2-{round}"));
        let n = rng.random_range(5..30);
        let log1 = commit_random(&root, "base", &x1, &mut rng, n, "etc");
        let log2 = commit_random(&root, "base", &x2, &mut rng, n, "usr");
        let ctx = format!("seed {seed} round {round}: x1 = [{}], x2 = [{}]", log1.join("; "), log2.join("; "));
        // Expected: x1's root filesystem with x2's usr/.
        let t = scratch.join("expected");
        ops::copy_view(mount_image(&root, &x1).path(), &t);
        fs::remove_dir_all(t.join("usr")).unwrap();
        ops::copy_view(&mount_image(&root, &x2).path().join("usr"), &t.join("usr"));
        let expected = snapshot(&t);
        fs::remove_dir_all(&t).unwrap();
        for (name, inputs) in [(format!("m-{round}"), [&x1, &x2]), (format!("r-{round}"), [&x2, &x1])] {
            let j = strata_json(&root, &["merge", &name, inputs[0], inputs[1], "--fail-on-conflict"]);
            assert_eq!(j["conflicts"], serde_json::json!([]), "{ctx}: {j}");
            let layers: Vec<_> =
                j["layers"].as_array().unwrap().iter().map(|v| v.as_str().unwrap().to_owned()).collect();
            let l1 = image_layers(&root, inputs[0]);
            assert_eq!(layers.len(), l1.len() + 1, "shared base layers appear once: {j}");
            assert_eq!(layers[..l1.len()], l1.iter().map(|l| l.to_string()).collect::<Vec<_>>()[..]);
            // A container on the merged image sees both sets of changes.
            let c = format!("c-{name}");
            ok(&root, &["container", "create", &name, &c]);
            let merged = PathBuf::from(ok(&root, &["container", "mount", &c]));
            assert_same(&expected, &snapshot(&merged), &format!("merge {name}: {ctx}"));
            ok(&root, &["container", "rm", &c]);
        }
        // Merging an image with its own base: its layers, no conflicts.
        let j = strata_json(&root, &["merge", &format!("chain-{round}"), "base", &x1]);
        assert_eq!(j["conflicts"], serde_json::json!([]), "{j}");
        assert_eq!(image_layers(&root, &format!("chain-{round}")), image_layers(&root, &x1));
    }
    // The merged config: the last input's, with the merged layers and their history.
    let out = m.path().join("export");
    strata_json(&root, &["export", "m-0", &format!("oci:{}:x", out.display()), "--format", "tar"]);
    let x = m.path().join("x");
    extract_layout(&out, "x", &x);
    assert_same(&snapshot(mount_image(&root, "m-0").path()), &snapshot(&x), "export of a merged image");
}

/// One injected change of a container: `(path, what)`.
fn inject(m: &Path, what: &str, path: &str, arg: &str) {
    let p = m.join(path);
    match what {
        "write" => fs::write(&p, arg).unwrap(),
        "chmod" => {
            fs::set_permissions(&p, std::os::unix::fs::PermissionsExt::from_mode(u32::from_str_radix(arg, 8).unwrap()))
                .unwrap()
        }
        "chown" => {
            let id: u32 = arg.parse().unwrap();
            std::os::unix::fs::lchown(&p, Some(id), Some(id)).unwrap();
        }
        "xattr" => xattr::set(&p, "user.k", arg.as_bytes()).unwrap(),
        "rm" => fs::remove_file(&p).unwrap(),
        "rm -r" => fs::remove_dir_all(&p).unwrap(),
        "mkdir" => {
            let _ = fs::remove_file(&p);
            fs::create_dir(&p).unwrap();
            fs::set_permissions(&p, std::os::unix::fs::PermissionsExt::from_mode(0o755)).unwrap();
        }
        "symlink" => {
            let _ = fs::remove_file(&p);
            std::os::unix::fs::symlink(arg, &p).unwrap();
        }
        "mknod" => {
            let _ = fs::remove_file(&p);
            ops::mknod(&p, SFlag::S_IFCHR, 1, arg.parse().unwrap());
        }
        "recreate" => {
            // rm -r and mkdir: an opaque directory in the upperdir, with one new file.
            let mode = fs::symlink_metadata(&p).unwrap().permissions();
            fs::remove_dir_all(&p).unwrap();
            fs::create_dir(&p).unwrap();
            fs::set_permissions(&p, mode).unwrap();
            fs::write(p.join(arg), "new").unwrap();
        }
        other => panic!("unknown change {other}"),
    }
}

#[test]
fn injected_conflicts_are_reported_and_only_they() {
    if !require_root() || !require_tool("mkfs.xfs") {
        return;
    }
    let m = LoopMount::xfs(1024);
    let root = m.path().join("store");
    let scratch = m.path().join("scratch");
    let t = scratch.join("tree");
    fs::create_dir_all(t.join("s")).unwrap();
    for f in ["f1", "f2", "f3", "f4", "f5", "f6", "f7", "f8", "f9", "f10", "f11", "f12"] {
        fs::write(t.join("s").join(f), format!("base {f}")).unwrap();
    }
    for d in ["d", "d2", "d3", "e1", "e2"] {
        fs::create_dir_all(t.join(d)).unwrap();
        fs::write(t.join(d).join("y"), "base y").unwrap();
    }
    let layout = scratch.join("layout");
    image_from_trees(&layout, "v1", &[&t], Compression::Gzip);
    import(&root, &layout, "base");
    // (change of input 1, change of input 2, expected conflict kind at which paths)
    type Change<'a> = (&'a str, &'a str, &'a str);
    type Expected<'a> = Vec<(&'a str, &'a str)>;
    let plan: Vec<(Change, Change, Expected)> = vec![
        (("write", "s/f1", "one"), ("write", "s/f1", "two"), vec![("s/f1", "content")]),
        (("write", "s/f2", "same"), ("write", "s/f2", "same"), vec![]),
        (("chmod", "s/f3", "600"), ("chmod", "s/f3", "640"), vec![("s/f3", "mode")]),
        (("chmod", "s/f4", "700"), ("chmod", "s/f4", "700"), vec![]),
        (("chown", "s/f5", "1"), ("chown", "s/f5", "2"), vec![("s/f5", "ownership")]),
        (("xattr", "s/f6", "a"), ("xattr", "s/f6", "b"), vec![("s/f6", "xattrs")]),
        (("mkdir", "s/f7", ""), ("write", "s/f7", "file"), vec![("s/f7", "type")]),
        (("symlink", "s/f8", "t1"), ("symlink", "s/f8", "t2"), vec![("s/f8", "link-target")]),
        (("mknod", "s/f9", "3"), ("mknod", "s/f9", "5"), vec![("s/f9", "device")]),
        (("write", "s/f10", "changed"), ("rm", "s/f10", ""), vec![("s/f10", "whiteout")]),
        (("rm", "s/f11", ""), ("write", "s/f11", "changed"), vec![("s/f11", "delete")]),
        (("rm", "s/f12", ""), ("rm", "s/f12", ""), vec![]),
        (("write", "d/new", "n"), ("rm -r", "d", ""), vec![("d", "whiteout"), ("d/new", "whiteout")]),
        (("write", "d2/y", "changed"), ("recreate", "d2", "x"), vec![("d2/y", "whiteout")]),
        (("chmod", "d3", "700"), ("write", "d3/z", "z"), vec![("d3", "mode")]),
        (("write", "e1/new", "1"), ("write", "e2/new", "2"), vec![]),
    ];
    let mut inputs = Vec::new();
    for side in 0..2 {
        let c = format!("c{side}");
        ok(&root, &["container", "create", "base", &c]);
        let merged = PathBuf::from(ok(&root, &["container", "mount", &c]));
        for (one, two, _) in &plan {
            let (what, path, arg) = if side == 0 { one } else { two };
            inject(&merged, what, path, arg);
        }
        ok(&root, &["container", "umount", &c]);
        strata_json(&root, &["commit", &c, &format!("x{side}")]);
        ok(&root, &["container", "rm", &c]);
        inputs.push(format!("x{side}"));
    }
    let expected: BTreeSet<(String, String)> =
        plan.iter().flat_map(|p| p.2.iter().map(|(p, k)| (p.to_string(), k.to_string()))).collect();
    let err = strata_fails(&root, &["merge", "m", "x0", "x1", "--fail-on-conflict"]);
    assert!(err.contains("conflicts") && err.trim().lines().count() == 1, "{err}");
    let names = strata_json(&root, &["images"])["images"]
        .as_array()
        .unwrap()
        .iter()
        .map(|i| i["name"].clone())
        .collect::<Vec<_>>();
    assert!(!names.contains(&serde_json::json!("m")), "a refused merge creates nothing: {names:?}");
    let j = strata_json(&root, &["merge", "m", "x0", "x1"]);
    let got: BTreeSet<(String, String)> = j["conflicts"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| {
            assert_eq!(c["inputs"], serde_json::json!(["x0", "x1"]), "{c}");
            (c["path"].as_str().unwrap().to_owned(), c["kind"].as_str().unwrap().to_owned())
        })
        .collect();
    assert_eq!(got, expected, "reported conflicts (left) vs injected (right)");
    // The later input wins in the merged image.
    let mounted = mount_image(&root, "m");
    assert_eq!(fs::read_to_string(mounted.path().join("s/f1")).unwrap(), "two");
    assert!(!mounted.path().join("d").exists() && mounted.path().join("s/f11").exists());
}

#[test]
fn missing_images_give_one_line_errors() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("store");
    for (args, needle) in [
        (vec!["merge", "m", "nope"], "no image named nope"),
        (vec!["squash", "nope", "s"], "no image named nope"),
        (vec!["diff", "nope", "other", "-o", "/dev/null"], "no image named nope"),
    ] {
        let err = strata_fails(&root, &args);
        assert!(err.contains(needle), "{args:?}: {err}");
        assert_eq!(err.trim().lines().count(), 1, "{args:?}: {err}");
    }
}
