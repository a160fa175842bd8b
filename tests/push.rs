//! `strata push` against a real `docker-registry`: every format round-trips through
//! `strata pull` into a fresh store with identical layers; blobs the registry has are not
//! sent again; blobs of the repository an image came from are mounted; skopeo 1.18 and
//! podman 5.4 read what strata pushes.

mod common;
#[path = "common/registry.rs"]
mod registry;

use std::path::Path;

use common::*;
use registry::*;
use strata_testutil::{LoopMount, Registry, require_root, require_tool};

fn layout_ref(p: &Path) -> String {
    format!("oci:{}:v1", p.display())
}

/// A store on `m` holding images a, b and c (see `related_trees`).
fn source_store(m: &LoopMount) -> std::path::PathBuf {
    let t = related_trees(m.path());
    let (la, lb, lc) = related_layouts(m.path(), &t);
    let root = m.path().join("src-store");
    for (l, n) in [(la, "a"), (lb, "b"), (lc, "c")] {
        strata_json(&root, &["import", &layout_ref(&l), "--name", n]);
    }
    root
}

fn outcomes(push: &serde_json::Value) -> Vec<String> {
    push["layers"].as_array().unwrap().iter().map(|l| l["outcome"].as_str().unwrap().to_owned()).collect()
}

#[test]
fn push_then_pull_gives_the_same_layers_in_every_format() {
    if !require_root() || !require_tool("mkfs.xfs") || !require_tool("docker-registry") {
        return;
    }
    let m = LoopMount::xfs(2048);
    let src = source_store(&m);
    let reg = Registry::start();
    for (format, media, chunked) in [
        ("zstd:chunked", "application/vnd.oci.image.layer.v1.tar+zstd", true),
        ("tar+zstd", "application/vnd.oci.image.layer.v1.tar+zstd", false),
        ("tar+gzip", "application/vnd.oci.image.layer.v1.tar+gzip", false),
    ] {
        let repo = format!("fmt-{}/c", format.replace([':', '+'], "-"));
        let target = format!("{}/{repo}:v1", reg.addr());
        let p = strata_json(&src, &["push", "c", &target, "--format", format, "--plain-http"]);
        for key in ["image", "layers", "bytes_uploaded", "seconds"] {
            assert!(!p[key].is_null(), "{format}: push JSON lacks {key}: {p}");
        }
        assert_eq!(p["image"], "c");
        assert_eq!(outcomes(&p), ["uploaded", "uploaded"], "{format}: {p}");
        let sizes: u64 = p["layers"].as_array().unwrap().iter().map(|l| l["size"].as_u64().unwrap()).sum();
        assert!(p["bytes_uploaded"].as_u64().unwrap() >= sizes, "{format}: {p}");
        // The registry holds what was described, in the format asked for.
        let man = manifest(reg.addr(), &repo, "v1");
        assert_eq!(man.layers.len(), 2);
        for (l, pl) in man.layers.iter().zip(p["layers"].as_array().unwrap()) {
            assert_eq!(l.media_type, media, "{format}");
            assert_eq!(l.digest.to_string(), pl["digest"].as_str().unwrap());
            let has_toc = l.annotations.contains_key("io.github.containers.zstd-chunked.manifest-checksum");
            assert_eq!(has_toc, chunked, "{format}: {:?}", l.annotations);
            assert_eq!(blob(reg.addr(), &repo, &l.digest.to_string()).len() as u64, l.size);
        }

        // A fresh store pulls it back to identical layers (every DiffID checked on the way).
        let dst = m.path().join(format!("dst-{}", format.replace([':', '+'], "-")));
        let r = strata_json(&dst, &["pull", &target, "--name", "c", "--plain-http"]);
        assert_eq!(r["partial"], chunked, "{format}: {r}");
        assert_same_image(&src, &dst, "c", "c");
        assert_eq!(strata_json(&dst, &["fsck", "--full"])["ok"], true);

        // Pushing again sends no layer: the registry has them all.
        let again = strata_json(&src, &["push", "c", &target, "--format", format, "--plain-http"]);
        assert_eq!(outcomes(&again), ["exists", "exists"], "{format}: {again}");
        assert!(again["bytes_uploaded"].as_u64().unwrap() < 4096, "{format}: {again}");
    }

    // An image pulled from one repository and pushed to another of the same registry in the
    // same format: its blobs are mounted, nothing is compressed or sent but the manifest.
    let dst = m.path().join("dst-zstd-chunked");
    let target = format!("{}/copies/c:v2", reg.addr());
    let p = strata_json(&dst, &["push", "c", &target, "--format", "zstd:chunked", "--plain-http"]);
    assert_eq!(outcomes(&p), ["mounted", "mounted"], "{p}");
    assert!(p["bytes_uploaded"].as_u64().unwrap() < 4096, "{p}");
    let again = m.path().join("dst-copies");
    strata_json(&again, &["pull", &target, "--name", "c", "--plain-http"]);
    assert_same_image(&src, &again, "c", "c");
    // In another format, the layers are compressed and uploaded.
    let target = format!("{}/copies-gz/c:v1", reg.addr());
    let p = strata_json(&dst, &["push", "c", &target, "--format", "tar+gzip", "--plain-http"]);
    assert_eq!(outcomes(&p), ["uploaded", "uploaded"], "{p}");

    // Bad input: a clear one-line error, nothing pushed.
    let err = strata_fails(&src, &["push", "nope", &format!("{}/x/y:z", reg.addr()), "--plain-http"]);
    assert!(err.contains("no image named nope") && err.trim().lines().count() == 1, "{err}");
    let err = strata_fails(&src, &["push", "c", "no-registry-here", "--plain-http"]);
    assert!(err.contains("no-registry-here") && err.trim().lines().count() == 1, "{err}");
}

/// skopeo 1.18 copies what strata pushed (verifying every blob) to a layout whose tree is
/// the image's, and podman 5.4 pulls it with containers/storage's zstd:chunked reader.
#[test]
fn skopeo_and_podman_read_what_strata_pushes() {
    if !require_peers() || !require_tool("mkfs.xfs") || !require_tool("docker-registry") {
        return;
    }
    let m = LoopMount::xfs(2048);
    let src = source_store(&m);
    let reg = Registry::start();
    let target = format!("{}/interop/c:v1", reg.addr());
    strata_json(&src, &["push", "c", &target, "--format", "zstd:chunked", "--plain-http"]);
    let data = m.path().join("data");
    std::fs::create_dir_all(&data).unwrap();
    skopeo(&data, &["copy", "--src-tls-verify=false", &format!("docker://{target}"), "oci:/data/copied:v1"]);
    let (x_skopeo, x_strata) = (m.path().join("x-skopeo"), m.path().join("x-strata"));
    extract_layout(&data.join("copied"), "v1", &x_skopeo);
    let exported = m.path().join("exported");
    strata_json(&src, &["export", "c", &format!("oci:{}:v1", exported.display()), "--format", "tar"]);
    extract_layout(&exported, "v1", &x_strata);
    assert_same_tree(&x_strata, &x_skopeo);

    // podman with partial pulls enabled: it reads the TOC and tar-split, checks them against
    // each other and assembles the files from chunks ("Retrieved partial blob"; a blob it
    // refused would be pulled in full instead). Its mount exists only in the chroot's mount
    // namespace, so the tree is copied out (cp -a keeps modes, owners, times, xattrs, links).
    let log = podman_sh(
        &data,
        &format!(
            "podman --log-level=debug pull --tls-verify=false {target} 2>&1 && p=$(podman image mount {target}) && \
             cp -a \"$p\" /data/podman-copy && podman image unmount {target} >/dev/null"
        ),
    );
    assert!(log.contains("Retrieved partial blob"), "podman did not pull by chunks:\n{log}");
    // containers/storage's partial pull leaves directories and symlinks with the time it
    // created them (its own skopeo-made blobs too): their mtimes are not compared.
    let (want, got) = (without_dir_times(snapshot(&x_strata)), without_dir_times(snapshot(&data.join("podman-copy"))));
    assert_eq!(want.len(), got.len());
    for (k, v) in &want {
        assert_eq!(Some(v), got.get(k), "{k} differs in podman's tree");
    }
}

/// A snapshot with the mtimes of directories and symlinks blanked.
fn without_dir_times(s: std::collections::BTreeMap<String, String>) -> std::collections::BTreeMap<String, String> {
    s.into_iter()
        .map(|(k, v)| {
            if v.starts_with("mode=40") || v.starts_with("mode=120") {
                let (a, b) = v.split_once(" mtime=").unwrap();
                let rest = b.split_once(' ').unwrap().1;
                (k, format!("{a} {rest}"))
            } else {
                (k, v)
            }
        })
        .collect()
}

/// Runs `sh -c SCRIPT` in the trixie chroot (podman 5.4) with podman's storage in
/// `data/podman` and partial pulls enabled.
fn podman_sh(data: &Path, script: &str) -> String {
    std::fs::write(
        data.join("storage.conf"),
        "[storage]\ndriver = \"overlay\"\ngraphroot = \"/data/podman\"\nrunroot = \"/data/podman-run\"\n\
         [storage.options]\npull_options = {enable_partial_images = \"true\", use_hard_links = \"false\"}\n",
    )
    .unwrap();
    let script_path = concat!(env!("CARGO_MANIFEST_DIR"), "/scripts/trixie-run.sh");
    strata_testutil::run(
        std::process::Command::new(script_path)
            .arg(data)
            .args(["env", "CONTAINERS_STORAGE_CONF=/data/storage.conf", "PODMAN_IGNORE_CGROUPSV1_WARNING=1"])
            .args(["sh", "-c", script]),
    )
}

/// The export path, as containers/storage's tools see it: `strata export --format
/// zstd:chunked` to a layout, skopeo 1.18 copies it (verifying every blob) into a real
/// registry and back into another layout, and strata imports that copy (verifying blob
/// digests and DiffIDs) into a fresh store: the same root filesystem as the source image.
#[test]
fn skopeo_copies_a_zstd_chunked_export_through_a_registry_and_strata_reimports_it() {
    if !require_peers() || !require_tool("mkfs.xfs") || !require_tool("docker-registry") {
        return;
    }
    let m = LoopMount::xfs(2048);
    let src = source_store(&m);
    let reg = Registry::start();
    let data = m.path().join("data");
    std::fs::create_dir_all(&data).unwrap();
    strata_json(
        &src,
        &["export", "c", &format!("oci:{}:v1", data.join("exported").display()), "--format", "zstd:chunked"],
    );
    let target = format!("docker://{}/export/c:v1", reg.addr());
    skopeo(&data, &["copy", "--dest-tls-verify=false", "oci:/data/exported:v1", &target]);
    skopeo(&data, &["copy", "--src-tls-verify=false", &target, "oci:/data/back:v1"]);
    // skopeo kept strata's zstd:chunked layers as they were (same digests, TOC annotations).
    let (out, back) = (read_manifest(&data.join("exported")), read_manifest(&data.join("back")));
    assert_eq!(
        out.layers.iter().map(|l| &l.digest).collect::<Vec<_>>(),
        back.layers.iter().map(|l| &l.digest).collect::<Vec<_>>()
    );
    assert!(
        back.layers.iter().all(|l| l.annotations.contains_key("io.github.containers.zstd-chunked.manifest-checksum"))
    );
    let fresh = m.path().join("fresh");
    strata_json(&fresh, &["import", &format!("oci:{}:v1", data.join("back").display()), "--name", "c"]);
    let (x_src, x_fresh) = (m.path().join("x-src"), m.path().join("x-fresh"));
    let tar_out = |root: &Path, dir: &Path| {
        let l = m.path().join(format!("tar-{}", dir.file_name().unwrap().to_str().unwrap()));
        strata_json(root, &["export", "c", &format!("oci:{}:v1", l.display()), "--format", "tar"]);
        extract_layout(&l, "v1", dir);
    };
    tar_out(&src, &x_src);
    tar_out(&fresh, &x_fresh);
    assert_same_tree(&x_src, &x_fresh);
}

fn read_manifest(layout: &Path) -> strata_oci::ImageManifest {
    let dir = strata_oci::layout::OciDir::open(layout).unwrap();
    let desc = dir.resolve(Some("v1")).unwrap();
    dir.read_manifest(&desc).unwrap().1
}
