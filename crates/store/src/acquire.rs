//! Getting an image's layers into the store, for `import` and `pull`.
//!
//! For each layer of the image (each DiffID once): a layer the store already has is pinned
//! and reused, not read at all; one that another operation is fetching is waited for (its
//! claim) and then reused; the rest are ingested, two at a time, each into its own staging
//! directory, checked against the DiffID the config names, and published as soon as it is
//! complete (pinned until the image that uses it is published). See `docs/locking.md`.

use std::path::Path;

use strata_types::{LayerId, Sha256Digest};

use crate::claims::Claim;
use crate::ingest::{Bytes, Ingested};
use crate::owner::{Tx, TxOk};
use crate::pins::Pins;
use crate::publish::PublishTx;
use crate::staging::Staging;
use crate::{Progress, Store, StoreError};

/// Layers pinned for a reader ([`Store::pin_images`]); unpinned on drop.
#[derive(Debug)]
pub struct Pinned {
    _pins: Pins,
    images: Vec<crate::records::ImageRecord>,
}

impl Pinned {
    /// The images' records as the owner saw them when it pinned their layers (fresher than
    /// a worker's view): read these layers.
    pub fn images(&self) -> &[crate::records::ImageRecord] {
        &self.images
    }
}

/// What getting the layers did.
#[derive(Debug, Default)]
pub(crate) struct Acquired {
    pub bytes: Bytes,
    /// Layers that were in the store already (or came from another operation meanwhile).
    pub present: usize,
    /// Layers this operation published (to discard again if it fails later).
    pub added: Vec<LayerId>,
}

impl Store {
    /// Removes again the layers a failed operation published (best effort: what stays is
    /// unreferenced, and the next gc takes it).
    pub(crate) fn discard(&self, pins: &Pins, added: &[LayerId]) {
        if added.is_empty() {
            return;
        }
        let Ok(trash) = Staging::new(&self.paths, "discard") else { return };
        let Ok(trash_path) = trash.root_path() else { return };
        let _ = self.tx(Tx::Discard { layers: added.to_vec(), pins: pins.rel().clone(), trash: trash_path });
    }

    /// Pins the layers of `images` for as long as the returned guard lives (readers:
    /// export, push, diff): no gc or rmi removes them meanwhile. An error when a layer is
    /// missing.
    pub fn pin_images(&self, images: &[&strata_types::ImageName]) -> Result<Pinned, StoreError> {
        let pins = Pins::new(&self.paths, "read")?;
        let images = images.iter().map(|&n| n.clone()).collect();
        match self.tx(Tx::PinImages { file: pins.rel().clone(), images })? {
            TxOk::Images(images) => Ok(Pinned { _pins: pins, images }),
            other => Err(crate::owner::unexpected(other)),
        }
    }

    /// Pins `layers` for the operation owning `pins`; true for each that exists (and is
    /// therefore kept until the pins go).
    pub(crate) fn pin(&self, pins: &Pins, layers: &[LayerId]) -> Result<Vec<bool>, StoreError> {
        match self.tx(Tx::Pin { file: pins.rel().clone(), layers: layers.to_vec() })? {
            TxOk::Present(v) => Ok(v),
            other => Err(crate::owner::unexpected(other)),
        }
    }

    /// Makes sure every layer of `diff_ids` is in the store: reused, waited for, or
    /// `ingest`ed (with its layer number `i` and a fresh directory in `staging`) and
    /// published. All of them stay pinned by `pins`.
    pub(crate) fn acquire_layers<F>(
        &self,
        staging: &Staging,
        pins: &Pins,
        diff_ids: &[Sha256Digest],
        progress: &dyn Progress,
        ingest: F,
    ) -> Result<Acquired, StoreError>
    where
        F: Fn(usize, &Path) -> Result<Ingested, StoreError> + Sync,
    {
        let ids: Vec<LayerId> = diff_ids.iter().map(|d| LayerId(*d)).collect();
        let present = self.pin(pins, &ids)?;
        let mut todo = Vec::new();
        let mut out = Acquired::default();
        for (i, id) in ids.iter().enumerate() {
            if present[i] || ids[..i].contains(id) {
                out.present += 1;
            } else {
                todo.push(i);
            }
        }
        let added = std::sync::Mutex::new(Vec::new());
        let results = crate::parallel::map_threads(&todo, 2, |&i| {
            let id = ids[i];
            let _claim = Claim::acquire(&self.paths, &id, || {
                progress.message(&format!("waiting for another pull of layer {}", &id.0.to_hex()[..12]))
            })?;
            // Another operation may have published it while we waited for its claim.
            if self.pin(pins, &[id])?[0] {
                return Ok(None);
            }
            let dir = staging.path().join(format!("layer-{i}"));
            let Ingested { staged, bytes } = ingest(i, &dir)?;
            if staged.id.0 != diff_ids[i] {
                return Err(StoreError::DiffIdMismatch { layer: i, expected: diff_ids[i], found: staged.id.0 });
            }
            let layer = staged.seal(&self.paths, staging)?;
            self.tx(Tx::Publish(PublishTx { layers: vec![layer], image: None, trash: None }))?;
            added.lock().unwrap_or_else(|p| p.into_inner()).push(id);
            Ok(Some(bytes))
            // The claim goes here, after the publish: a waiter finds the layer.
        });
        out.added = added.into_inner().unwrap_or_else(|p| p.into_inner());
        let results = match results {
            Ok(r) => r,
            Err(e) => {
                self.discard(pins, &out.added);
                return Err(e);
            }
        };
        for r in results {
            match r {
                Some(b) => out.bytes.add(&b),
                None => out.present += 1,
            }
        }
        Ok(out)
    }
}
