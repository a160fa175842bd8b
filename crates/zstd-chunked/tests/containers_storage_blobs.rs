//! strata reads what containers/storage writes: the debootstrap layers, pushed as zstd:chunked
//! by skopeo 1.18 to a real registry the test starts, validate, every chunk decompresses alone
//! to its digest, and the tar rebuilt from the tar-split and the chunks has the DiffID of the
//! image config.
//!
//! Needs root, `docker-registry`, `curl`, and the fixtures of `scripts/setup-peers.sh` (the
//! trixie chroot with skopeo 1.18 and the debootstrap layer tars).

mod common;

use std::io::Write as _;
use std::path::Path;

use strata_oci::layout::OciDir;
use strata_oci::{Descriptor, ImageConfig, ImageManifest, media};
use strata_testutil::{Peers, Registry, Rootfs, require_root, require_tool};
use strata_types::Sha256Digest;
use strata_zstd_chunked::{Limits, open_layer};

/// An OCI layout holding `tar` as one uncompressed layer, tagged `t`.
fn tar_layout(layout: &Path, tar: &Path) {
    let dir = OciDir::create(layout).unwrap();
    let mut w = dir.blob_writer().unwrap();
    w.write_all(&std::fs::read(tar).unwrap()).unwrap();
    let (digest, size) = w.finish(None).unwrap();
    let config = dir.write_json_blob(media::IMAGE_CONFIG, &ImageConfig::new(vec![digest])).unwrap();
    let manifest = ImageManifest {
        schema_version: 2,
        media_type: Some(media::IMAGE_MANIFEST.into()),
        config,
        layers: vec![Descriptor::new(media::LAYER_TAR, digest, size)],
        annotations: Default::default(),
        extra: Default::default(),
    };
    let desc = dir.write_json_blob(media::IMAGE_MANIFEST, &manifest).unwrap();
    dir.set_tag("t", &desc).unwrap();
}

/// skopeo 1.18 (containers/storage's compressor) pushes the layer tar `which` as zstd:chunked
/// to a fresh registry; every layer of the result is checked.
fn check_skopeo_push(which: Rootfs) {
    if !require_root() || !require_tool("docker-registry") || !require_tool("curl") {
        return;
    }
    let Some(peers) = Peers::require() else { return };
    let tar = peers.tar(which);
    let which = which.name();
    let scratch = tempfile::Builder::new().prefix("cs-blobs-").tempdir_in(strata_testutil::scratch_base()).unwrap();
    tar_layout(&scratch.path().join("layout"), &tar);
    let reg = Registry::start();
    let repo = format!("cs/{which}");
    peers.trixie_ok(
        scratch.path(),
        &format!(
            "mkdir -p /var/lib/containers && mount -t tmpfs tmpfs /var/lib/containers && \
             skopeo copy --quiet --dest-tls-verify=false --dest-compress-format zstd:chunked \
             oci:/data/layout:t docker://{}/{repo}:zstd-chunked",
            reg.addr()
        ),
    );

    let addr = reg.addr();
    let manifest: ImageManifest = serde_json::from_slice(&common::registry_get(
        addr,
        &format!("{repo}/manifests/zstd-chunked"),
        media::IMAGE_MANIFEST,
    ))
    .unwrap();
    let config_bytes = common::registry_get(addr, &format!("{repo}/blobs/{}", manifest.config.digest), "*/*");
    assert_eq!(Sha256Digest::of(&config_bytes), manifest.config.digest);
    let config: ImageConfig = serde_json::from_slice(&config_bytes).unwrap();
    assert_eq!(manifest.layers.len(), config.rootfs.diff_ids.len());
    for (layer, diff_id) in manifest.layers.iter().zip(&config.rootfs.diff_ids) {
        assert!(
            layer.annotations.keys().any(|k| k.contains("zstd-chunked")),
            "skopeo did not write zstd:chunked: {:?}",
            layer.annotations
        );
        let blob = common::registry_get(addr, &format!("{repo}/blobs/{}", layer.digest), "*/*");
        assert_eq!(Sha256Digest::of(&blob), layer.digest);
        let plan = open_layer(&layer.annotations, blob.len() as u64, &mut &blob[..], &Limits::default()).unwrap();
        assert!(plan.entries.len() > 1000, "{which}: {} entries", plan.entries.len());
        let chunked = plan.entries.iter().filter(|e| e.chunks.len() > 1).count();
        let zeros = plan.entries.iter().flat_map(|e| &e.chunks).filter(|c| c.zeros).count();
        assert!(chunked > 100 && zeros > 0, "{which}: {chunked} multi-chunk files, {zeros} zeros chunks");
        let rebuilt = common::rebuild_tar(&plan, &blob);
        assert_eq!(Sha256Digest::of(&rebuilt), *diff_id, "{which}: rebuilt tar vs DiffID");
        // The same bytes a full pull gives, and the tar skopeo was given.
        assert!(zstd::stream::decode_all(&blob[..]).unwrap() == rebuilt);
        assert_eq!(Sha256Digest::of(&std::fs::read(&tar).unwrap()), *diff_id);
    }
}

#[test]
fn skopeo_rootfs_a_layer_reads_and_rebuilds_to_its_diff_id() {
    check_skopeo_push(Rootfs::A);
}

#[test]
fn skopeo_rootfs_b_layer_reads_and_rebuilds_to_its_diff_id() {
    check_skopeo_push(Rootfs::B);
}
