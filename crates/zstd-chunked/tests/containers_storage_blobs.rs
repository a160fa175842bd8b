//! strata reads what containers/storage writes: the debootstrap layers, pushed as zstd:chunked
//! by skopeo 1.18 to a real registry the test starts, validate, every chunk decompresses alone
//! to its digest, and the tar rebuilt from the tar-split and the chunks has the DiffID of the
//! image config.
//!
//! Needs root, `docker-registry`, `curl`, the peers' trixie chroot (skopeo 1.18) and their
//! layer tars (`/work/shared/peers/setup.sh`).

mod common;

use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::process::Command;

use strata_oci::layout::OciDir;
use strata_oci::{Descriptor, ImageConfig, ImageManifest, media};
use strata_testutil::{Registry, require_root, require_tool};
use strata_types::Sha256Digest;
use strata_zstd_chunked::{Limits, open_layer};

const TRIXIE: &str = "/tmp/peers/trixie-run.sh";

/// A scratch directory under /tmp/peers/oci (the chroot's /peers), removed on drop.
struct Scratch {
    name: String,
    host: PathBuf,
}

impl Scratch {
    fn new(what: &str) -> Scratch {
        let name = format!("cs-blobs-{what}-{}", std::process::id());
        let host = Path::new("/tmp/peers/oci").join(&name);
        let _ = std::fs::remove_dir_all(&host);
        std::fs::create_dir_all(&host).unwrap();
        Scratch { name, host }
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.host);
    }
}

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
fn check_skopeo_push(which: &str) {
    let tar = format!("/tmp/peers/tars/{which}.tar");
    if !require_root() || !require_tool("docker-registry") || !require_tool("curl") || !common::have(TRIXIE) {
        return;
    }
    if !common::have(&tar) {
        return;
    }
    let scratch = Scratch::new(which);
    tar_layout(&scratch.host.join("layout"), Path::new(&tar));
    let reg = Registry::start();
    let repo = format!("cs/{which}");
    let script = format!(
        "mkdir -p /var/lib/containers && mount -t tmpfs tmpfs /var/lib/containers && \
         skopeo copy --quiet --dest-tls-verify=false --dest-compress-format zstd:chunked \
         oci:/peers/{}/layout:t docker://{}/{repo}:zstd-chunked",
        scratch.name,
        reg.addr()
    );
    let out = Command::new(TRIXIE).args(["sh", "-c", &script]).output().unwrap();
    assert!(out.status.success(), "skopeo copy: {}", String::from_utf8_lossy(&out.stderr));

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
    check_skopeo_push("rootfs-a");
}

#[test]
fn skopeo_rootfs_b_layer_reads_and_rebuilds_to_its_diff_id() {
    check_skopeo_push("rootfs-b");
}
