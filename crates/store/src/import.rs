//! `strata import oci:PATH[:TAG]`: an image from an OCI image layout.
//!
//! Every blob is verified (digest and size) as it is read; every layer's DiffID is
//! recomputed from its stream and compared with the config. Layers the store already has
//! (same DiffID) are not read at all. Layers are applied into staging in parallel and
//! published together with the image record in one index batch.

use std::path::Path;
use std::time::Instant;

use strata_oci::layout::{LayoutRef, OciDir};
use strata_oci::{Descriptor, ImageConfig};
use strata_types::{ImageName, LayerId};

use crate::ingest::{BlobSource, ingest};
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
            let mut source = BlobSource { media_type: &d.media_type, blob: Some(blob), fetched: &fetched, progress };
            ingest(self.index(), &self.paths, layer_dir, LayerOrigin::Import, &mut source)
                .map_err(|e| bad(e.to_string()))
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

/// `NAME:TAG` from a layout path: the directory's name and the tag (or `latest`).
fn default_name(path: &Path, tag: Option<&str>) -> Result<ImageName, StoreError> {
    let base = path.file_name().and_then(|s| s.to_str()).unwrap_or("image");
    let base: String =
        base.chars().map(|c| if c.is_ascii_alphanumeric() || "._-".contains(c) { c } else { '-' }).collect();
    ImageName::new(format!("{}:{}", base.trim_start_matches(['.', '_', '-']), tag.unwrap_or("latest")))
        .map_err(|e| StoreError::Invalid(format!("{e}; name the image with --name")))
}
