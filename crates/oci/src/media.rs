//! Media types strata reads and writes.

pub const IMAGE_MANIFEST: &str = "application/vnd.oci.image.manifest.v1+json";
pub const IMAGE_INDEX: &str = "application/vnd.oci.image.index.v1+json";
pub const IMAGE_CONFIG: &str = "application/vnd.oci.image.config.v1+json";
pub const LAYER_TAR: &str = "application/vnd.oci.image.layer.v1.tar";
pub const LAYER_TAR_GZIP: &str = "application/vnd.oci.image.layer.v1.tar+gzip";
pub const LAYER_TAR_ZSTD: &str = "application/vnd.oci.image.layer.v1.tar+zstd";
pub const DOCKER_MANIFEST: &str = "application/vnd.docker.distribution.manifest.v2+json";
pub const DOCKER_MANIFEST_LIST: &str = "application/vnd.docker.distribution.manifest.list.v2+json";
pub const DOCKER_CONFIG: &str = "application/vnd.docker.container.image.v1+json";
pub const DOCKER_LAYER_GZIP: &str = "application/vnd.docker.image.rootfs.diff.tar.gzip";
pub const DOCKER_LAYER_TAR: &str = "application/vnd.docker.image.rootfs.diff.tar";

/// How a layer blob is compressed, from its media type. zstd:chunked layers have the
/// `tar+zstd` media type plus annotations; see `strata-zstd-chunked`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum LayerCompression {
    None,
    Gzip,
    Zstd,
}

pub fn layer_compression(media_type: &str) -> Option<LayerCompression> {
    match media_type {
        LAYER_TAR | DOCKER_LAYER_TAR | "application/vnd.oci.image.layer.nondistributable.v1.tar" => {
            Some(LayerCompression::None)
        }
        LAYER_TAR_GZIP | DOCKER_LAYER_GZIP | "application/vnd.oci.image.layer.nondistributable.v1.tar+gzip" => {
            Some(LayerCompression::Gzip)
        }
        LAYER_TAR_ZSTD | "application/vnd.oci.image.layer.nondistributable.v1.tar+zstd" => Some(LayerCompression::Zstd),
        _ => None,
    }
}

/// Annotation keys of containers/storage's zstd:chunked format (the current ones; the older
/// `io.containers.zstd-chunked.*` blobs carry no tar-split and are pulled in full).
pub mod zstd_chunked {
    pub const MANIFEST_CHECKSUM: &str = "io.github.containers.zstd-chunked.manifest-checksum";
    pub const MANIFEST_POSITION: &str = "io.github.containers.zstd-chunked.manifest-position";
    pub const TARSPLIT_POSITION: &str = "io.github.containers.zstd-chunked.tarsplit-position";
    pub const LEGACY_MANIFEST_CHECKSUM: &str = "io.containers.zstd-chunked.manifest-checksum";
    pub const LEGACY_MANIFEST_POSITION: &str = "io.containers.zstd-chunked.manifest-position";
}
