//! `strata import oci:PATH[:TAG]`: an image from an OCI image layout.
//!
//! Every blob is verified (digest and size) as it is read; every layer's DiffID is
//! recomputed from its stream and compared with the config. Layers the store already has
//! (same DiffID) are not read at all. Layers are applied into staging in parallel and
//! published together with the image record in one index batch.

use std::io::Read;
use std::path::Path;
use std::time::Instant;

use strata_oci::layout::{LayoutRef, OciDir};
use strata_oci::media::{self, LayerCompression};
use strata_oci::{Descriptor, ImageConfig};
use strata_types::{ImageName, LayerId};

use crate::ingest::ingest_tar;
use crate::owner::Tx;
use crate::pins::Pins;
use crate::publish::{PublishImage, PublishTx};
use crate::records::{ImageRecord, LayerOrigin};
use crate::staging::Staging;
use crate::{Progress, Store, StoreError};

/// What an import or pull did (the `--json` figures).
#[derive(Clone, Debug, serde::Serialize)]
pub struct IngestReport {
    pub image: ImageName,
    pub layers: Vec<LayerId>,
    /// Compressed bytes read from the source.
    pub bytes_fetched: u64,
    pub bytes_reused: u64,
    pub bytes_reflinked: u64,
    pub bytes_written: u64,
    /// True when at least one layer was pulled by chunks.
    pub partial: bool,
    pub seconds: f64,
    /// Layers that were already in the store.
    pub layers_present: usize,
}

/// Opens a decompressor for a layer blob.
pub(crate) fn decompress<'a, R: Read + 'a>(media_type: &str, r: R) -> Result<Box<dyn Read + 'a>, StoreError> {
    match media::layer_compression(media_type) {
        Some(LayerCompression::None) => Ok(Box::new(r)),
        Some(LayerCompression::Gzip) => Ok(Box::new(flate2::read::MultiGzDecoder::new(r))),
        Some(LayerCompression::Zstd) => {
            let mut d = zstd::stream::read::Decoder::new(r).map_err(|e| StoreError::Invalid(format!("zstd: {e}")))?;
            // The decoder allocates the window a frame declares: cap it at 128 MiB (what
            // `zstd --long` writes; zstd:chunked chunks are capped the same), so a frame
            // header cannot make strata allocate gigabytes.
            d.window_log_max(strata_zstd_chunked::bounded::MAX_WINDOW_LOG)
                .map_err(|e| StoreError::Invalid(format!("zstd: {e}")))?;
            Ok(Box::new(d))
        }
        None => Err(StoreError::Oci(strata_oci::OciError::UnsupportedMediaType(media_type.to_owned()))),
    }
}

/// Parses and checks an image config against its manifest.
pub(crate) fn parse_config(bytes: &[u8], layers: usize) -> Result<ImageConfig, StoreError> {
    let cfg: ImageConfig = serde_json::from_slice(bytes).map_err(|e| StoreError::BadConfig(e.to_string()))?;
    if cfg.rootfs.kind != "layers" {
        return Err(StoreError::BadConfig(format!("rootfs type {:?} (expected \"layers\")", cfg.rootfs.kind)));
    }
    if cfg.rootfs.diff_ids.len() != layers {
        return Err(StoreError::BadConfig(format!(
            "{} diff_ids for {} layers in the manifest",
            cfg.rootfs.diff_ids.len(),
            layers
        )));
    }
    if cfg.os != "linux" {
        return Err(StoreError::BadConfig(format!("os {:?}: strata runs linux images", cfg.os)));
    }
    std::str::from_utf8(bytes).map_err(|_| StoreError::BadConfig("not UTF-8".into()))?;
    Ok(cfg)
}

impl Store {
    pub fn import_oci(
        &self,
        source: &str,
        name: Option<ImageName>,
        progress: &dyn Progress,
    ) -> Result<IngestReport, StoreError> {
        let start = Instant::now();
        let r = LayoutRef::parse(source)?;
        let dir = OciDir::open(&r.path)?;
        let desc = dir.resolve(r.tag.as_deref())?;
        let (_, manifest) = dir.read_manifest(&desc)?;
        let name = match name {
            Some(n) => n,
            None => default_name(&r.path, r.tag.as_deref())?,
        };
        if self.has_image(&name)? {
            return Err(StoreError::ImageExists(name));
        }
        let config_bytes = dir.read_blob_bytes(&manifest.config, 16 << 20)?;
        let config = parse_config(&config_bytes, manifest.layers.len())?;
        let diff_ids = config.rootfs.diff_ids.clone();
        let fetched = std::sync::atomic::AtomicU64::new(0);
        let total: u64 = manifest.layers.iter().map(|l| l.size).sum();
        progress.start("importing", Some(total));
        let staging = Staging::new(&self.paths, "import")?;
        let pins = Pins::new(&self.paths, "import")?;
        let got = self.acquire_layers(&staging, &pins, &diff_ids, progress, |i, layer_dir| {
            let d: &Descriptor = &manifest.layers[i];
            let bad = |message: String| StoreError::BadLayer {
                source_name: source.to_owned(),
                index: i,
                digest: d.digest,
                message,
            };
            let blob = dir.open_blob(d)?;
            let (result, verified) = ingest_decompressed(d, blob, &fetched, progress, |tar| {
                ingest_tar(self.index(), &self.paths, layer_dir, tar, LayerOrigin::Import, None)
            })?;
            // A corrupt blob is the better error than whatever applying it said.
            verified.map_err(|e| bad(e.to_string()))?;
            result.map_err(|e| bad(e.to_string()))
        })?;
        progress.finish();
        let record = ImageRecord::new(
            name.clone(),
            diff_ids.iter().map(|d| LayerId(*d)).collect(),
            String::from_utf8(config_bytes.clone()).expect("checked UTF-8"),
            source.to_owned(),
        );
        debug_assert_eq!(record.config_digest, manifest.config.digest);
        let image = PublishImage { record: record.clone(), replace: false };
        if let Err(e) = self.tx(Tx::Publish(PublishTx { layers: Vec::new(), image: Some(image), trash: None })) {
            self.discard(&pins, &got.added);
            return Err(e);
        }
        let bytes = got.bytes;
        let present = got.present;
        Ok(IngestReport {
            image: name,
            layers: record.layers.clone(),
            bytes_fetched: fetched.into_inner(),
            bytes_reused: bytes.reused,
            bytes_reflinked: bytes.reflinked,
            bytes_written: bytes.written,
            partial: false,
            seconds: start.elapsed().as_secs_f64(),
            layers_present: present,
        })
    }
}

/// What `consume` returned, and whether the blob verified (digest and size).
pub(crate) type ConsumedAndVerified<T> = (Result<T, StoreError>, Result<(), StoreError>);

/// Decompresses `blob` on a thread of its own, feeding `consume` through a pipe, so that
/// decompression and blob hashing overlap with applying the layer. Returns what `consume`
/// returned and the blob's verification (its digest and size, checked after reading it all).
pub(crate) fn ingest_decompressed<B, T>(
    d: &Descriptor,
    mut blob: B,
    fetched: &std::sync::atomic::AtomicU64,
    progress: &dyn Progress,
    consume: impl FnOnce(std::io::PipeReader) -> Result<T, StoreError>,
) -> Result<ConsumedAndVerified<T>, StoreError>
where
    B: Read + Send + FinishBlob,
{
    let (reader, writer) = std::io::pipe().map_err(|e| StoreError::io("pipe", e))?;
    let _ = nix::fcntl::fcntl(&writer, nix::fcntl::FcntlArg::F_SETPIPE_SZ(1 << 20));
    std::thread::scope(|s| {
        let producer = s.spawn(move || -> Result<(), StoreError> {
            let mut w = std::io::BufWriter::with_capacity(1 << 20, writer);
            let copied = {
                let counted = CountingReader { inner: &mut blob, counter: fetched, progress };
                decompress(&d.media_type, counted).and_then(|mut tar| match std::io::copy(&mut tar, &mut w) {
                    Ok(_) => Ok(()),
                    // The consumer stopped reading: its own error says why.
                    Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => Ok(()),
                    Err(e) => Err(StoreError::Invalid(format!("decompressing: {e}"))),
                })
            };
            drop(w);
            // Verify even when decompression failed: a wrong blob is the better error.
            blob.finish_blob()?;
            copied
        });
        let consumed = consume(reader);
        let produced = producer.join().map_err(|_| StoreError::Invalid("the decompressor panicked".into()))?;
        Ok((consumed, produced))
    })
}

/// Blob readers that verify digest and size once read.
pub(crate) trait FinishBlob {
    fn finish_blob(self) -> Result<(), StoreError>;
}

impl<R: Read> FinishBlob for strata_oci::layout::VerifyingReader<R> {
    fn finish_blob(self) -> Result<(), StoreError> {
        self.finish().map_err(StoreError::from)
    }
}

/// `NAME:TAG` from a layout path: the directory's name and the tag (or `latest`).
fn default_name(path: &Path, tag: Option<&str>) -> Result<ImageName, StoreError> {
    let base = path.file_name().and_then(|s| s.to_str()).unwrap_or("image");
    let base: String =
        base.chars().map(|c| if c.is_ascii_alphanumeric() || "._-".contains(c) { c } else { '-' }).collect();
    ImageName::new(format!("{}:{}", base.trim_start_matches(['.', '_', '-']), tag.unwrap_or("latest")))
        .map_err(|e| StoreError::Invalid(format!("{e}; name the image with --name")))
}

/// Counts bytes read (the compressed bytes of a blob).
pub(crate) struct CountingReader<'a, R> {
    pub inner: R,
    pub counter: &'a std::sync::atomic::AtomicU64,
    pub progress: &'a dyn Progress,
}

impl<R: Read> Read for CountingReader<'_, R> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.counter.fetch_add(n as u64, std::sync::atomic::Ordering::Relaxed);
        self.progress.inc(n as u64);
        Ok(n)
    }
}
