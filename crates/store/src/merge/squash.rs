//! `strata squash IMAGE NAME` and the store form of `strata diff IMAGE_A IMAGE_B`.

use std::time::Instant;

use strata_differ::{Changeset, DiffMethod};
use strata_oci::History;
use strata_types::{ImageName, LayerId};

use super::stack::LayerCache;
use super::view::View;
use super::{changes, parse_config};
use crate::ingest::{ChangesetSource, Ingested, ingest};
use crate::records::{ImageRecord, LayerOrigin};
use crate::staging::Staging;
use crate::{Store, StoreError};

/// What a squash did (the `--json` figures).
#[derive(Clone, Debug, serde::Serialize)]
pub struct SquashReport {
    pub image: ImageName,
    pub layer: LayerId,
    /// Layers of the source image.
    pub squashed_layers: usize,
    /// Tar entries of the new layer.
    pub entries: u64,
    pub bytes_reused: u64,
    pub bytes_reflinked: u64,
    pub bytes_written: u64,
    pub seconds: f64,
}

impl Store {
    /// The changes that turn image `a`'s root filesystem into `b`'s, computed from the
    /// stored file records. When `a`'s layers are a prefix of `b`'s, the changeset is `b`'s
    /// extra layers squashed (`method` [`DiffMethod::Squash`]); otherwise the difference of
    /// the two views ([`DiffMethod::Metadata`]).
    ///
    /// Regular files' sources are in the store's layer directories: pin the two images
    /// ([`Store::pin_images`]) until the changeset is written (e.g. with
    /// [`strata_differ::write_layer`]), so that no gc or rmi removes those layers meanwhile.
    pub fn diff_images(&self, a: &ImageName, b: &ImageName) -> Result<Changeset, StoreError> {
        let (ia, ib) = (self.image(a)?, self.image(b)?);
        let prefix = ib.layers.starts_with(&ia.layers);
        self.diff_images_with(a, b, if prefix { DiffMethod::Squash } else { DiffMethod::Metadata })
    }

    /// [`Store::diff_images`] with the method chosen: [`DiffMethod::Metadata`] always works,
    /// [`DiffMethod::Squash`] needs `a`'s layers to be a prefix of `b`'s.
    pub fn diff_images_with(&self, a: &ImageName, b: &ImageName, method: DiffMethod) -> Result<Changeset, StoreError> {
        let (ia, ib) = (self.image(a)?, self.image(b)?);
        let mut cache = LayerCache::default();
        let va = View::build(cache.stack(self, &ia.layers)?);
        let vb = View::build(cache.stack(self, &ib.layers)?);
        let changes = match method {
            DiffMethod::Squash if ib.layers.starts_with(&ia.layers) => changes::squash_diff(&va, &vb, ia.layers.len())?,
            DiffMethod::Metadata => changes::metadata_diff(&va, &vb)?,
            other => {
                return Err(StoreError::Invalid(format!(
                    "cannot diff image {a} against {b} with method {other}: {}",
                    if other == DiffMethod::Squash {
                        "the first image's layers are not a prefix of the second's"
                    } else {
                        "images are diffed from their metadata or by squashing layers"
                    }
                )));
            }
        };
        Ok(Changeset::from_changes(method, changes))
    }

    /// Creates image `name` with one layer holding `image`'s root filesystem (same config
    /// otherwise, history replaced by one entry). File data is cloned from the layers it
    /// comes from where the filesystem has reflinks, since the index knows all of it.
    pub fn squash(&self, image: &ImageName, name: &ImageName) -> Result<SquashReport, StoreError> {
        let start = Instant::now();
        if self.has_image(name)? {
            return Err(StoreError::ImageExists(name.clone()));
        }
        let pinned = self.pin_images(&[image])?;
        let img = pinned.images()[0].clone();
        let mut cache = LayerCache::default();
        let view = View::build(cache.stack(self, &img.layers)?);
        let cs = Changeset::from_changes(DiffMethod::Squash, changes::full(&view)?);
        let staging = Staging::new(&self.paths, "squash")?;
        let layer_dir = staging.path().join("layer");
        let mut source = ChangesetSource {
            changeset: &cs,
            own: None,
            what: format!("the squashed layer of {image}"),
            stats: Default::default(),
        };
        let Ingested { staged, bytes } =
            ingest(self.index(), &self.paths, &layer_dir, LayerOrigin::Squash, &mut source)?;
        let stats = source.stats;
        let layer = staged.id;
        let mut cfg = parse_config(&img)?;
        let now = crate::time::rfc3339_now();
        cfg.rootfs.diff_ids = vec![layer.0];
        cfg.created = Some(now.clone());
        cfg.history = vec![History {
            created: Some(now),
            created_by: Some(format!("strata squash {image} {name}")),
            comment: Some(format!("{} layers of {image} squashed", img.layers.len())),
            empty_layer: None,
            extra: Default::default(),
        }];
        let config = serde_json::to_string(&cfg).expect("config serializes");
        let record = ImageRecord::new(name.clone(), vec![layer], config, format!("squash of {image}"));
        let layer_tx = staged.seal(&self.paths, &staging)?;
        let image = crate::publish::PublishImage { record: record.clone(), replace: false };
        self.tx(crate::owner::Tx::Publish(crate::publish::PublishTx {
            layers: vec![layer_tx],
            image: Some(image),
            trash: None,
        }))?;
        Ok(SquashReport {
            image: name.clone(),
            layer,
            squashed_layers: img.layers.len(),
            entries: stats.entries,
            bytes_reused: bytes.reused,
            bytes_reflinked: bytes.reflinked,
            bytes_written: bytes.written,
            seconds: start.elapsed().as_secs_f64(),
        })
    }
}
