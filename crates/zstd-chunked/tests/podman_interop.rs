//! containers/storage reads what strata writes: a blob from strata's writer, pushed with
//! skopeo 1.18 to a real registry and pulled by podman 5.4 with partial pulls (zstd:chunked
//! differ, TOC/tar-split consistency check, DiffID recomputation), gives the original files.

mod common;

use std::collections::BTreeMap;
use std::io::Write as _;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::Path;
use std::process::Command;

use strata_oci::layout::OciDir;
use strata_oci::{Descriptor, ImageConfig, ImageManifest, media};
use strata_testutil::{Peers, Registry, require_root, require_tool, run};
use strata_zstd_chunked::WriterOptions;

fn pseudo_random(len: usize, seed: u64) -> Vec<u8> {
    let mut x = seed | 1;
    (0..len)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x as u8
        })
        .collect()
}

/// A tree with what a layer can hold: multi-chunk files, zero runs, empty files, links,
/// a fifo, a device, xattrs, odd modes, a long path.
fn build_tree(root: &Path) {
    let p = |s: &str| root.join(s);
    std::fs::create_dir_all(p(
        "usr/lib/deep/a-very-long-directory-name-that-goes-on-and-on/and-on-further-still-past-one-hundred-bytes",
    ))
    .unwrap();
    std::fs::create_dir_all(p("etc")).unwrap();
    std::fs::write(p("usr/lib/big.bin"), pseudo_random(3 << 20, 7)).unwrap();
    let mut holes = pseudo_random(64 << 10, 9);
    holes.extend(vec![0u8; 700 << 10]);
    holes.extend(pseudo_random(64 << 10, 10));
    std::fs::write(p("usr/lib/holes.bin"), holes).unwrap();
    std::fs::write(p("usr/lib/zeros-small"), vec![0u8; 4096]).unwrap();
    std::fs::write(p("etc/empty"), b"").unwrap();
    std::fs::write(p("etc/hostname"), b"strata\n").unwrap();
    std::fs::write(
        p("usr/lib/deep/a-very-long-directory-name-that-goes-on-and-on/and-on-further-still-past-one-hundred-bytes/file with spaces é"),
        b"long\n",
    )
    .unwrap();
    std::fs::hard_link(p("usr/lib/big.bin"), p("usr/lib/big-link.bin")).unwrap();
    std::os::unix::fs::symlink("../usr/lib/big.bin", p("etc/rel-link")).unwrap();
    std::os::unix::fs::symlink("/etc/hostname", p("etc/abs-link")).unwrap();
    std::fs::write(p("usr/lib/setuid"), b"#!/bin/sh\n").unwrap();
    std::fs::set_permissions(p("usr/lib/setuid"), std::fs::Permissions::from_mode(0o4755)).unwrap();
    std::fs::set_permissions(p("etc/hostname"), std::fs::Permissions::from_mode(0o600)).unwrap();
    run(Command::new("mkfifo").arg(p("etc/fifo")));
    run(Command::new("mknod").arg(p("etc/null")).args(["c", "1", "3"]));
    run(Command::new("setfattr").args(["-n", "user.strata", "-v", "hello"]).arg(p("etc/hostname")));
    run(Command::new("setfattr").args(["-n", "user.dir", "-v", "0x00ff10"]).arg(p("usr/lib")));
    run(Command::new("chown").args(["-h", "1000:1001"]).arg(p("etc/rel-link")));
    run(Command::new("chown").arg("123:456").arg(p("usr/lib/holes.bin")));
}

/// What a layer must preserve about each path (hardlink groups by first path), limited to
/// what containers/storage's partial pull restores: it does not create fifos or device
/// nodes, nor set directory mtimes or symlink owners and times. Regular files: everything.
fn listing(root: &Path) -> BTreeMap<String, String> {
    let mut out = BTreeMap::new();
    let mut inodes: BTreeMap<u64, String> = BTreeMap::new();
    let mut stack = vec![root.to_path_buf()];
    while let Some(dir) = stack.pop() {
        let mut names: Vec<_> = std::fs::read_dir(&dir).unwrap().map(|e| e.unwrap().path()).collect();
        names.sort();
        for path in names {
            let rel = path.strip_prefix(root).unwrap().to_string_lossy().into_owned();
            let md = std::fs::symlink_metadata(&path).unwrap();
            let ft = md.file_type();
            let mut desc = format!("mode={:o}", md.mode());
            if ft.is_file() || ft.is_dir() {
                desc += &format!(" uid={} gid={}", md.uid(), md.gid());
            }
            if ft.is_symlink() {
                desc += &format!(" -> {}", std::fs::read_link(&path).unwrap().display());
            } else if ft.is_file() {
                desc += &format!(" mtime={}.{:09}", md.mtime(), md.mtime_nsec());
                let data = std::fs::read(&path).unwrap();
                desc += &format!(" size={} sha256={}", data.len(), strata_types::Sha256Digest::of(&data));
                if md.nlink() > 1 {
                    let first = inodes.entry(md.ino()).or_insert_with(|| rel.clone());
                    desc += &format!(" links-with={first}");
                }
            } else if ft.is_dir() {
                stack.push(path.clone());
            } else {
                continue;
            }
            let xattrs =
                Command::new("getfattr").args(["-h", "-d", "-e", "hex", "-m", "^user\\."]).arg(&path).output().unwrap();
            let xattrs: Vec<String> = String::from_utf8_lossy(&xattrs.stdout)
                .lines()
                .filter(|l| l.starts_with("user."))
                .map(str::to_owned)
                .collect();
            desc += &format!(" xattrs=[{}]", xattrs.join(","));
            out.insert(rel, desc);
        }
    }
    out
}

fn write_layout(layout: &Path, blob: &[u8], result: &strata_zstd_chunked::WriteResult) {
    let dir = OciDir::create(layout).unwrap();
    let mut w = dir.blob_writer().unwrap();
    w.write_all(blob).unwrap();
    let (digest, size) = w.finish(Some(&result.blob_digest)).unwrap();
    let mut layer = Descriptor::new(media::LAYER_TAR_ZSTD, digest, size);
    layer.annotations = result.annotations.clone();
    let config = dir.write_json_blob(media::IMAGE_CONFIG, &ImageConfig::new(vec![result.diff_id])).unwrap();
    let manifest = ImageManifest {
        schema_version: 2,
        media_type: Some(media::IMAGE_MANIFEST.into()),
        config,
        layers: vec![layer],
        annotations: BTreeMap::new(),
        extra: BTreeMap::new(),
    };
    let desc = dir.write_json_blob(media::IMAGE_MANIFEST, &manifest).unwrap();
    dir.set_tag("t", &desc).unwrap();
}

#[test]
fn podman_partially_pulls_a_strata_blob_and_gets_the_same_files() {
    if !require_root() || !require_tool("docker-registry") || !require_tool("setfattr") || !require_tool("getfattr") {
        return;
    }
    let Some(peers) = Peers::require() else { return };
    // The scratch directory is the chroot's /data: the layout, podman's storage, the copy.
    let scratch =
        tempfile::Builder::new().prefix("zchunked-podman-").tempdir_in(strata_testutil::scratch_base()).unwrap();
    let host = scratch.path();
    let tree = host.join("tree");
    std::fs::create_dir(&tree).unwrap();
    build_tree(&tree);
    let tar = Command::new("tar")
        .args(["--format=pax", "--xattrs", "--xattrs-include=user.*", "--numeric-owner", "-C"])
        .arg(&tree)
        .args(["-cf", "-", "."])
        .output()
        .unwrap();
    assert!(tar.status.success());
    let (blob, result) = common::write_blob(&tar.stdout[..], WriterOptions::default());
    assert!(result.chunks > 20, "the tree should give multi-chunk files, got {} chunks", result.chunks);
    write_layout(&host.join("layout"), &blob, &result);

    let reg = Registry::start();
    let image = format!("{}/strata/zchunked:t", reg.addr());
    std::fs::write(
        host.join("storage.conf"),
        "[storage]\ndriver = \"overlay\"\nrunroot = \"/data/run\"\ngraphroot = \"/data/root\"\n\
         [storage.options]\npull_options = {enable_partial_images = \"true\", use_hard_links = \"false\", ostree_repos = \"\"}\n",
    )
    .unwrap();
    std::fs::write(
        host.join("registries.conf"),
        format!("unqualified-search-registries = []\n[[registry]]\nlocation = \"{}\"\ninsecure = true\n", reg.addr()),
    )
    .unwrap();
    let script = format!(
        "set -e\n\
         mkdir -p /data/tmp\n\
         export CONTAINERS_STORAGE_CONF=/data/storage.conf CONTAINERS_REGISTRIES_CONF=/data/registries.conf TMPDIR=/data/tmp\n\
         skopeo copy --quiet --preserve-digests --dest-tls-verify=false oci:/data/layout:t docker://{image}\n\
         podman --log-level=debug pull -q {image} 2> /data/pull.log\n\
         m=$(podman image mount {image})\n\
         cp -a \"$m\" /data/pulled\n\
         podman image umount {image} >/dev/null\n\
         podman rmi -f {image} >/dev/null\n"
    );
    let out = peers.trixie_sh(host, &script);
    let log = std::fs::read_to_string(host.join("pull.log")).unwrap_or_default();
    assert!(
        out.status.success(),
        "chroot script failed: {}\n{}\npull log tail:\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr),
        tail(&log)
    );
    assert!(log.contains("Created zstd:chunked differ"), "podman did not use the zstd:chunked differ:\n{}", tail(&log));
    assert!(!log.contains("Could not create zstd:chunked differ"), "{}", tail(&log));
    let want = listing(&tree);
    let got = listing(&host.join("pulled"));
    assert_eq!(got, want);
}

fn tail(s: &str) -> String {
    let lines: Vec<&str> = s.lines().collect();
    lines[lines.len().saturating_sub(30)..].join("\n")
}
