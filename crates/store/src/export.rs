//! `strata export IMAGE oci:PATH[:TAG] --format F`: an image as an OCI image layout.
//!
//! Each layer's tar stream is rebuilt byte for byte from its tar-split and its files, so
//! the DiffID of every exported layer is the one in the image config, whatever the format.
//! The stream is verified against the DiffID while it is written, blobs are hashed as they
//! are written and only named once complete. Layers are exported in parallel; tar+zstd, tar+gzip and
//! zstd:chunked compress on all cores.

use std::collections::BTreeMap;
use std::fs::File;
use std::io::{self, BufReader, BufWriter, Write};
use std::os::unix::fs::OpenOptionsExt;
use std::path::Path;
use std::time::Instant;

use strata_layer::out_file::{FileTarOut, WriteTarOut};
use strata_layer::par_compress::{Codec, ParallelWriter};
use strata_layer::tarsplit::{DiffIdOut, RecordReader};
use strata_layer::{TarOut, Tee};
use strata_oci::layout::{LayoutRef, OciDir};
use strata_oci::{Descriptor, ImageManifest, media};
use strata_types::{ImageName, LayerId, RelPath, Sha256Digest};

use crate::paths::LAYER_TAR_SPLIT;
use crate::{Store, StoreError};

/// Layer formats strata writes.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize)]
pub enum LayerFormat {
    Tar,
    TarGzip,
    TarZstd,
    ZstdChunked,
}

impl LayerFormat {
    pub fn media_type(self) -> &'static str {
        match self {
            LayerFormat::Tar => media::LAYER_TAR,
            LayerFormat::TarGzip => media::LAYER_TAR_GZIP,
            LayerFormat::TarZstd | LayerFormat::ZstdChunked => media::LAYER_TAR_ZSTD,
        }
    }
}

/// One exported layer.
#[derive(Clone, Debug, serde::Serialize)]
pub struct ExportedLayer {
    pub digest: Sha256Digest,
    pub media_type: String,
    pub size: u64,
}

/// What an export did (the `--json` figures).
#[derive(Clone, Debug, serde::Serialize)]
pub struct ExportReport {
    pub image: ImageName,
    pub layers: Vec<ExportedLayer>,
    pub manifest: Sha256Digest,
    pub seconds: f64,
}

/// Rebuilds the exact tar stream of a stored layer into `out`, verifying file CRCs and the
/// DiffID. Returns the stream length.
pub(crate) fn regenerate_layer(layer_root: &Path, id: &LayerId, out: &mut dyn TarOut) -> Result<u64, StoreError> {
    let diff = layer_root.join(crate::paths::LAYER_DIFF);
    let ts_path = layer_root.join(LAYER_TAR_SPLIT);
    let ts = File::open(&ts_path).map_err(|e| StoreError::io(&ts_path, e))?;
    let records = BufReader::new(zstd::stream::read::Decoder::new(ts).map_err(|e| StoreError::io(&ts_path, e))?);
    let mut diff_id = DiffIdOut::default();
    let open = |name: &[u8], _size: u64| -> io::Result<Option<(File, u64)>> {
        let rel = RelPath::new(name).map_err(|e| io::Error::new(io::ErrorKind::InvalidData, e))?;
        let f = File::options().read(true).custom_flags(libc::O_NOFOLLOW).open(diff.join(rel.as_path()))?;
        Ok(Some((f, 0)))
    };
    {
        let mut tee = Tee(&mut *out, &mut diff_id);
        // The DiffID check below covers every byte, so payloads need no CRC pass of their
        // own and zero-copy sinks can move them with copy_file_range.
        strata_layer::tarsplit::regenerate(RecordReader::new(records), open, &mut tee, false)
            .map_err(|e| StoreError::Corrupt(format!("layer {id}: rebuilding its tar stream: {e}")))?;
    }
    let (found, len) = diff_id.finish();
    if found != id.0 {
        return Err(StoreError::Corrupt(format!("layer {id}: its files rebuild a stream with DiffID {found}")));
    }
    Ok(len)
}

impl Store {
    /// Writes one layer as a blob of `dir` in `format`; returns its descriptor.
    pub(crate) fn export_layer(
        &self,
        dir: &OciDir,
        id: &LayerId,
        format: LayerFormat,
    ) -> Result<Descriptor, StoreError> {
        let root = self.paths.layer(id);
        let blobs = dir.path().join("blobs").join("sha256");
        let err = |e: io::Error| StoreError::io(&blobs, e);
        let mut annotations = BTreeMap::new();
        let (digest, size) = match format {
            LayerFormat::Tar => {
                // Uncompressed: the blob is the stream, its digest the DiffID, and payloads
                // move by copy_file_range (reflinks on XFS/btrfs: layer data is 4 KiB aligned
                // in streams strata writes).
                let tmp = blobs.join(format!(".export-{}-{}", std::process::id(), id.0.to_hex()));
                let f = File::options().read(true).write(true).create(true).truncate(true).open(&tmp).map_err(err)?;
                let mut sink = FileTarOut::new(f).map_err(err)?;
                let r = regenerate_layer(&root, id, &mut sink);
                let f = sink.into_inner().map_err(err)?;
                if let Err(e) = r {
                    let _ = std::fs::remove_file(&tmp);
                    return Err(e);
                }
                f.sync_all().map_err(err)?;
                let size = f.metadata().map_err(err)?.len();
                std::fs::rename(&tmp, dir.blob_path(&id.0)).map_err(err)?;
                (id.0, size)
            }
            LayerFormat::TarZstd => {
                let w = dir.blob_writer()?;
                let mut sink =
                    WriteTarOut::new(ParallelWriter::new(BufWriter::with_capacity(1 << 20, w), Codec::Zstd(3)));
                regenerate_layer(&root, id, &mut sink)?;
                let w = sink.into_inner().map_err(err)?.finish().map_err(err)?;
                w.into_inner().map_err(|e| err(e.into_error()))?.finish(None)?
            }
            LayerFormat::TarGzip => {
                let w = dir.blob_writer()?;
                // Independent gzip members compressed on every core (one gzip file).
                let gz = ParallelWriter::new(BufWriter::with_capacity(1 << 20, w), Codec::Gzip(6));
                let mut sink = WriteTarOut::new(gz);
                regenerate_layer(&root, id, &mut sink)?;
                let w = sink.into_inner().map_err(err)?.finish().map_err(err)?;
                w.into_inner().map_err(|e| err(e.into_error()))?.finish(None)?
            }
            LayerFormat::ZstdChunked => {
                let w = dir.blob_writer()?;
                let opts = strata_zstd_chunked::WriterOptions::default();
                let mut sink = strata_zstd_chunked::ZstdChunkedWriter::new(BufWriter::with_capacity(1 << 20, w), opts)
                    .map_err(err)?;
                regenerate_layer(&root, id, &mut sink)?;
                let (w, info) = sink.finish().map_err(err)?;
                if info.diff_id != id.0 {
                    return Err(StoreError::Corrupt(format!(
                        "layer {id}: the zstd:chunked writer saw DiffID {}",
                        info.diff_id
                    )));
                }
                annotations = info.annotations;
                w.into_inner().map_err(|e| err(e.into_error()))?.finish(None)?
            }
        };
        let mut d = Descriptor::new(format.media_type(), digest, size);
        d.annotations = annotations;
        Ok(d)
    }

    pub fn export(&self, image: &ImageName, dest: &str, format: LayerFormat) -> Result<ExportReport, StoreError> {
        let start = Instant::now();
        let pinned = self.pin_images(&[image])?;
        let img = &pinned.images()[0];
        let r = LayoutRef::parse(dest)?;
        let dir = OciDir::create(&r.path)?;
        let layers = crate::parallel::map_threads(&img.layers, 2, |id| self.export_layer(&dir, id, format))?;
        let mut w = dir.blob_writer()?;
        w.write_all(img.config.as_bytes()).map_err(|e| StoreError::io(dir.path(), e))?;
        let (config_digest, config_size) = w.finish(Some(&img.config_digest))?;
        let manifest = ImageManifest {
            schema_version: 2,
            media_type: Some(media::IMAGE_MANIFEST.into()),
            config: Descriptor::new(media::IMAGE_CONFIG, config_digest, config_size),
            layers: layers.clone(),
            annotations: Default::default(),
            extra: Default::default(),
        };
        let mdesc = dir.write_json_blob(media::IMAGE_MANIFEST, &manifest)?;
        let tag = r.tag.clone().unwrap_or_else(|| {
            image.as_str().rsplit_once(':').map(|(_, t)| t.to_owned()).unwrap_or_else(|| "latest".into())
        });
        dir.set_tag(&tag, &mdesc)?;
        Ok(ExportReport {
            image: image.clone(),
            layers: layers
                .iter()
                .map(|d| ExportedLayer { digest: d.digest, media_type: d.media_type.clone(), size: d.size })
                .collect(),
            manifest: mdesc.digest,
            seconds: start.elapsed().as_secs_f64(),
        })
    }
}
