//! Helpers shared by the root integration tests: run the `strata` binary, build OCI image
//! layouts from directory trees, compare trees attribute by attribute.
#![allow(dead_code)]

use std::collections::BTreeMap;
use std::fs;
use std::io::Write;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use strata_differ::{WriteOptions, diff_trees, write_layer};
use strata_layer::out_file::WriteTarOut;
use strata_oci::layout::OciDir;
use strata_oci::{Descriptor, ImageConfig, ImageManifest, media};
use strata_types::{Sha256Digest, Sha256Hasher};

pub fn strata_bin() -> &'static str {
    env!("CARGO_BIN_EXE_strata")
}

/// Runs `strata --root ROOT ARGS...`.
pub fn strata(root: &Path, args: &[&str]) -> Output {
    Command::new(strata_bin()).arg("--root").arg(root).args(args).output().expect("run strata")
}

/// Runs strata and returns its JSON output, panicking (with stderr) on failure.
pub fn strata_json(root: &Path, args: &[&str]) -> serde_json::Value {
    let mut a = args.to_vec();
    a.push("--json");
    let out = strata(root, &a);
    assert!(out.status.success(), "strata {args:?} failed: {}", String::from_utf8_lossy(&out.stderr));
    serde_json::from_slice(&out.stdout)
        .unwrap_or_else(|e| panic!("strata {args:?}: bad JSON ({e}): {}", String::from_utf8_lossy(&out.stdout)))
}

/// Runs strata expecting failure; returns stderr.
pub fn strata_fails(root: &Path, args: &[&str]) -> String {
    let out = strata(root, args);
    assert!(!out.status.success(), "strata {args:?} unexpectedly succeeded: {}", String::from_utf8_lossy(&out.stdout));
    String::from_utf8_lossy(&out.stderr).into_owned()
}

/// Compression of generated layers.
#[derive(Clone, Copy, Debug)]
pub enum Compression {
    None,
    Gzip,
    Zstd,
}

/// The layer tar that turns `base` into `target` (strata's own differ and writer).
pub fn layer_tar(base: &Path, target: &Path) -> Vec<u8> {
    let cs = diff_trees(base, target).expect("diff trees");
    let mut out = WriteTarOut::new(Vec::new());
    write_layer(&cs, &mut out, &WriteOptions::default()).expect("write layer");
    out.into_inner().expect("layer bytes")
}

fn compress(tar: &[u8], c: Compression) -> (Vec<u8>, &'static str) {
    match c {
        Compression::None => (tar.to_vec(), media::LAYER_TAR),
        Compression::Gzip => {
            let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
            e.write_all(tar).unwrap();
            (e.finish().unwrap(), media::LAYER_TAR_GZIP)
        }
        Compression::Zstd => (zstd::encode_all(tar, 3).unwrap(), media::LAYER_TAR_ZSTD),
    }
}

/// Writes an OCI image layout at `layout` tagged `tag` whose layers are the given raw tars
/// (bottom first). Returns the manifest descriptor.
pub fn write_image(layout: &Path, tag: &str, tars: &[Vec<u8>], c: Compression) -> Descriptor {
    let dir = OciDir::create(layout).unwrap();
    let mut layers = Vec::new();
    let mut diff_ids = Vec::new();
    for tar in tars {
        let mut h = Sha256Hasher::new();
        h.update(tar);
        diff_ids.push(h.finalize());
        let (blob, mt) = compress(tar, c);
        let mut w = dir.blob_writer().unwrap();
        w.write_all(&blob).unwrap();
        let (d, size) = w.finish(None).unwrap();
        layers.push(Descriptor::new(mt, d, size));
    }
    let config = dir.write_json_blob(media::IMAGE_CONFIG, &ImageConfig::new(diff_ids)).unwrap();
    let m = ImageManifest {
        schema_version: 2,
        media_type: Some(media::IMAGE_MANIFEST.into()),
        config,
        layers,
        annotations: Default::default(),
        extra: Default::default(),
    };
    let desc = dir.write_json_blob(media::IMAGE_MANIFEST, &m).unwrap();
    dir.set_tag(tag, &desc).unwrap();
    desc
}

/// An OCI layout whose image has one layer per tree (each layer = the diff from the
/// previous tree; the first from an empty tree).
pub fn image_from_trees(layout: &Path, tag: &str, trees: &[&Path], c: Compression) -> Descriptor {
    let empty = tempfile::tempdir().unwrap();
    let mut prev: &Path = empty.path();
    let mut tars = Vec::new();
    for t in trees {
        tars.push(layer_tar(prev, t));
        prev = t;
    }
    write_image(layout, tag, &tars, c)
}

/// Deterministic pseudo-random bytes.
pub fn bytes(n: usize, seed: u64) -> Vec<u8> {
    let mut x = seed.wrapping_mul(0x9E3779B97F4A7C15) | 1;
    (0..n)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x as u8
        })
        .collect()
}

/// Writes a small varied tree: text files, a large binary, a symlink, a hardlink, an empty
/// dir, a file with an xattr, an executable, nested dirs.
pub fn sample_tree(dir: &Path, seed: u64) {
    fs::create_dir_all(dir.join("etc")).unwrap();
    fs::create_dir_all(dir.join("usr/bin")).unwrap();
    fs::create_dir_all(dir.join("usr/lib/deep/er")).unwrap();
    fs::create_dir_all(dir.join("var/empty")).unwrap();
    fs::write(dir.join("etc/hostname"), format!("host-{seed}\n")).unwrap();
    fs::write(dir.join("etc/passwd"), "root:x:0:0:root:/root:/bin/sh\n").unwrap();
    fs::write(dir.join("usr/bin/tool"), bytes(300_000, seed)).unwrap();
    fs::set_permissions(dir.join("usr/bin/tool"), fs::Permissions::from_mode(0o755)).unwrap();
    fs::write(dir.join("usr/lib/libbig.so"), bytes(3 << 20, seed + 1)).unwrap();
    fs::write(dir.join("usr/lib/deep/er/data"), bytes(5000, seed + 2)).unwrap();
    std::os::unix::fs::symlink("../lib/libbig.so", dir.join("usr/bin/link")).unwrap();
    fs::hard_link(dir.join("etc/passwd"), dir.join("etc/passwd-")).unwrap();
    xattr::set(dir.join("etc/hostname"), "user.strata.test", b"v").unwrap();
}

/// Every attribute CLI.md lists, per path, for comparing trees.
pub fn snapshot(root: &Path) -> BTreeMap<String, String> {
    let mut out = BTreeMap::new();
    // Hardlink groups: paths of this tree sharing an inode (nlink alone can count names
    // outside the tree, e.g. a lower file of an overlay).
    let mut inodes: BTreeMap<(u64, u64), Vec<String>> = BTreeMap::new();
    let mut stack = vec![root.to_path_buf()];
    while let Some(d) = stack.pop() {
        let mut ents: Vec<PathBuf> = fs::read_dir(&d).unwrap().map(|e| e.unwrap().path()).collect();
        ents.sort();
        for p in ents {
            let m = fs::symlink_metadata(&p).unwrap();
            let rel = p.strip_prefix(root).unwrap().display().to_string();
            let mut xs: Vec<String> = xattr::list(&p)
                .map(|l| {
                    l.filter_map(|n| {
                        let n = n.to_string_lossy().into_owned();
                        (!n.starts_with("trusted.overlay.")
                            && !n.starts_with("user.overlay.")
                            && !n.starts_with("security.selinux"))
                        .then(|| format!("{n}={:?}", xattr::get(&p, &n).ok().flatten()))
                    })
                    .collect()
                })
                .unwrap_or_default();
            xs.sort();
            let content = if m.is_file() {
                let data = fs::read(&p).unwrap();
                let mut h = Sha256Hasher::new();
                h.update(&data);
                h.finalize().to_string()
            } else if m.file_type().is_symlink() {
                fs::read_link(&p).unwrap().display().to_string()
            } else {
                String::new()
            };
            if m.is_file() {
                inodes.entry((m.dev(), m.ino())).or_default().push(rel.clone());
            }
            out.insert(
                rel,
                format!(
                    "mode={:o} uid={} gid={} mtime={}.{} rdev={} size={} {content} xattrs=[{}]",
                    m.mode(),
                    m.uid(),
                    m.gid(),
                    m.mtime(),
                    if m.is_dir() { 0 } else { m.mtime_nsec() },
                    m.rdev(),
                    if m.is_dir() { 0 } else { m.len() },
                    xs.join(",")
                ),
            );
            if m.is_dir() {
                stack.push(p);
            }
        }
    }
    for mut group in inodes.into_values().filter(|g| g.len() > 1) {
        group.sort();
        for p in &group {
            out.get_mut(p).expect("listed").push_str(&format!(" hardlinks={}", group.join("|")));
        }
    }
    out
}

/// Asserts two trees are identical, listing the first differences.
pub fn assert_same_tree(a: &Path, b: &Path) {
    let (sa, sb) = (snapshot(a), snapshot(b));
    if sa != sb {
        let mut diffs = Vec::new();
        for (k, v) in &sa {
            match sb.get(k) {
                None => diffs.push(format!("only in {}: {k}", a.display())),
                Some(w) if w != v => diffs.push(format!("{k}:\n  {v}\n  {w}")),
                _ => {}
            }
        }
        for k in sb.keys().filter(|k| !sa.contains_key(*k)) {
            diffs.push(format!("only in {}: {k}", b.display()));
        }
        diffs.truncate(20);
        panic!("trees differ:\n{}", diffs.join("\n"));
    }
}

/// Extracts an image's root filesystem from an OCI layout into `dest` (OCI whiteout
/// semantics), with strata_layer::apply — an independent reader of what strata wrote.
pub fn extract_layout(layout: &Path, tag: &str, dest: &Path) {
    let dir = OciDir::open(layout).unwrap();
    let desc = dir.resolve(Some(tag)).unwrap();
    let (_, m) = dir.read_manifest(&desc).unwrap();
    fs::create_dir_all(dest).unwrap();
    for l in &m.layers {
        let blob = fs::File::open(dir.blob_path(&l.digest)).unwrap();
        let reader: Box<dyn std::io::Read> = match media::layer_compression(&l.media_type).unwrap() {
            media::LayerCompression::None => Box::new(blob),
            media::LayerCompression::Gzip => Box::new(flate2::read::MultiGzDecoder::new(blob)),
            media::LayerCompression::Zstd => Box::new(zstd::stream::read::Decoder::new(blob).unwrap()),
        };
        let opts = strata_layer::apply::ApplyOptions::new(strata_layer::apply::WhiteoutMode::Oci);
        strata_layer::apply::apply_simple(dest, reader, &opts).unwrap();
    }
}

/// sha256 of a file.
pub fn file_sha256(p: &Path) -> Sha256Digest {
    let mut h = Sha256Hasher::new();
    h.update(&fs::read(p).unwrap());
    h.finalize()
}
