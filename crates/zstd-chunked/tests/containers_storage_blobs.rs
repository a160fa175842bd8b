//! strata reads what containers/storage writes: the zstd:chunked images skopeo 1.18 pushed to
//! the peers' registry validate, every chunk decompresses alone to its digest, and the tar
//! rebuilt from the tar-split and the chunks has the DiffID of the image config.

mod common;

use strata_oci::{ImageConfig, ImageManifest, media};
use strata_types::Sha256Digest;
use strata_zstd_chunked::{Limits, open_layer};

fn check_image(repo: &str) {
    let manifest: ImageManifest =
        serde_json::from_slice(&common::registry_get(&format!("{repo}/manifests/zstd-chunked"), media::IMAGE_MANIFEST))
            .unwrap();
    let config_bytes = common::registry_get(&format!("{repo}/blobs/{}", manifest.config.digest), "*/*");
    assert_eq!(Sha256Digest::of(&config_bytes), manifest.config.digest);
    let config: ImageConfig = serde_json::from_slice(&config_bytes).unwrap();
    assert_eq!(manifest.layers.len(), config.rootfs.diff_ids.len());
    for (layer, diff_id) in manifest.layers.iter().zip(&config.rootfs.diff_ids) {
        let blob = common::registry_get(&format!("{repo}/blobs/{}", layer.digest), "*/*");
        assert_eq!(Sha256Digest::of(&blob), layer.digest);
        let plan = open_layer(&layer.annotations, blob.len() as u64, &mut &blob[..], &Limits::default()).unwrap();
        assert!(plan.entries.len() > 1000, "{repo}: {} entries", plan.entries.len());
        let chunked = plan.entries.iter().filter(|e| e.chunks.len() > 1).count();
        let zeros = plan.entries.iter().flat_map(|e| &e.chunks).filter(|c| c.zeros).count();
        assert!(chunked > 100 && zeros > 0, "{repo}: {chunked} multi-chunk files, {zeros} zeros chunks");
        let tar = common::rebuild_tar(&plan, &blob);
        assert_eq!(Sha256Digest::of(&tar), *diff_id, "{repo}: rebuilt tar vs DiffID");
        // The same bytes a full pull gives.
        assert!(zstd::stream::decode_all(&blob[..]).unwrap() == tar);
    }
}

#[test]
fn skopeo_rootfs_a_layer_reads_and_rebuilds_to_its_diff_id() {
    if common::require_peer_registry() {
        check_image("v2/rootfs-a");
    }
}

#[test]
fn skopeo_rootfs_b_layer_reads_and_rebuilds_to_its_diff_id() {
    if common::require_peer_registry() {
        check_image("v2/rootfs-b");
    }
}
