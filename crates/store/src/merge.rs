//! `strata merge`, `strata squash` and the store form of `strata diff`, answered from the
//! per-layer file records the index keeps (see `docs/merge.md`).
//!
//! - [`Store::merge`]: a new image whose layers are the inputs' layers in order, each layer
//!   once (layers are shared: only an image record is written), with its conflicts.
//! - [`Store::diff_images`]: the changeset that turns one image's root filesystem into
//!   another's: the extra layers squashed when the first image's layers are a prefix of the
//!   second's, else the difference of the two views. No file is read to compute it.
//! - [`Store::squash`]: a one-layer image of the same root filesystem, ingested like any
//!   layer (file data cloned from the layers it comes from where the filesystem can).
//!
//! Views follow overlayfs exactly (`view.rs`): what `container mount` would show.

mod changes;
mod conflicts;
mod squash;
mod stack;
mod view;

use std::collections::HashMap;
use std::time::Instant;

use strata_oci::{History, ImageConfig};
use strata_types::{ImageName, LayerId};

pub use conflicts::{Conflict, ConflictKind};
pub use squash::SquashReport;

use crate::records::ImageRecord;
use crate::{Store, StoreError};
use stack::LayerCache;
use view::View;

/// What a merge did (the `--json` figures).
#[derive(Clone, Debug, serde::Serialize)]
pub struct MergeReport {
    pub image: ImageName,
    /// The merged image's layers, bottom first.
    pub layers: Vec<LayerId>,
    pub conflicts: Vec<Conflict>,
    /// False when `fail_on_conflict` refused to create the image.
    pub created: bool,
    pub seconds: f64,
}

/// The layer stack of a merge: every input's layers in order, each layer once (where it
/// first appears). Also returns, per input, the positions in its own stack of the layers it
/// owns (those no other input has).
fn stack_of(inputs: &[ImageRecord]) -> (Vec<LayerId>, Vec<Vec<usize>>) {
    let mut stack: Vec<LayerId> = Vec::new();
    let mut holders: HashMap<LayerId, Vec<usize>> = HashMap::new();
    for (i, img) in inputs.iter().enumerate() {
        for l in &img.layers {
            if !stack.contains(l) {
                stack.push(*l);
            }
            let h = holders.entry(*l).or_default();
            if !h.contains(&i) {
                h.push(i);
            }
        }
    }
    let own = inputs
        .iter()
        .enumerate()
        .map(|(i, img)| (0..img.layers.len()).filter(|&k| holders[&img.layers[k]] == [i]).collect())
        .collect();
    (stack, own)
}

fn parse_config(img: &ImageRecord) -> Result<ImageConfig, StoreError> {
    serde_json::from_str(&img.config).map_err(|e| StoreError::BadConfig(format!("image {}: {e}", img.name)))
}

/// The merged image's config: the last input's (environment, command, platform...) with
/// `rootfs.diff_ids` the merged stack and a history that keeps each kept layer's entry from
/// the input it came from, the last input's empty-layer entries, and one entry for the merge.
fn merged_config(inputs: &[ImageRecord], stack: &[LayerId], command: &str) -> Result<String, StoreError> {
    let configs: Vec<ImageConfig> = inputs.iter().map(parse_config).collect::<Result<_, _>>()?;
    let last = configs.last().ok_or_else(|| StoreError::Invalid("merge needs at least one image".into()))?;
    for (img, c) in inputs.iter().zip(&configs) {
        if (&c.os, &c.architecture) != (&last.os, &last.architecture) {
            return Err(StoreError::Invalid(format!(
                "image {} is {}/{} and {} is {}/{}: merged images must share a platform",
                img.name,
                c.os,
                c.architecture,
                inputs.last().expect("non-empty").name,
                last.os,
                last.architecture
            )));
        }
    }
    let mut placed: Vec<LayerId> = Vec::new();
    let mut history = Vec::new();
    for (n, (img, cfg)) in inputs.iter().zip(&configs).enumerate() {
        let is_last = n + 1 == inputs.len();
        let with_layer = cfg.history.iter().filter(|h| h.empty_layer != Some(true)).count();
        let usable = with_layer == img.layers.len();
        let mut layers = img.layers.iter();
        for h in &cfg.history {
            if h.empty_layer == Some(true) {
                if is_last && usable {
                    history.push(h.clone());
                }
                continue;
            }
            let Some(l) = layers.next() else { break };
            if usable && !placed.contains(l) {
                placed.push(*l);
                history.push(h.clone());
            }
        }
        for l in &img.layers {
            if !placed.contains(l) {
                placed.push(*l);
                history.push(History {
                    created: None,
                    created_by: Some(format!("layer {} of {}", l.0.to_hex(), img.name)),
                    comment: None,
                    empty_layer: None,
                    extra: Default::default(),
                });
            }
        }
    }
    debug_assert_eq!(placed, stack);
    let now = crate::time::rfc3339_now();
    history.push(History {
        created: Some(now.clone()),
        created_by: Some(command.to_owned()),
        comment: None,
        empty_layer: Some(true),
        extra: Default::default(),
    });
    let mut cfg = last.clone();
    cfg.rootfs.diff_ids = stack.iter().map(|l| l.0).collect();
    cfg.history = history;
    cfg.created = Some(now);
    Ok(serde_json::to_string(&cfg).expect("config serializes"))
}

impl Store {
    fn images_of(&self, names: &[ImageName]) -> Result<Vec<ImageRecord>, StoreError> {
        names.iter().map(|n| self.image(n)).collect()
    }

    /// The conflicts a merge of `inputs` (in order) would report.
    pub fn merge_conflicts(&self, inputs: &[ImageName]) -> Result<Vec<Conflict>, StoreError> {
        let imgs = self.images_of(inputs)?;
        let (_, own) = stack_of(&imgs);
        let mut cache = LayerCache::default();
        let views: Vec<View> =
            imgs.iter().map(|i| Ok(View::build(cache.stack(self, &i.layers)?))).collect::<Result<_, StoreError>>()?;
        let list: Vec<conflicts::Input<'_>> = imgs
            .iter()
            .zip(&views)
            .zip(own)
            .map(|((img, view), own)| conflicts::Input { name: &img.name, view, own })
            .collect();
        Ok(conflicts::find(&list))
    }

    /// Creates image `name` whose layers are the layers of `inputs` in order (each layer
    /// once, where it first appears) and reports the conflicts between the inputs. With
    /// `fail_on_conflict`, an image is only created when there are none (`created` says).
    pub fn merge(
        &self,
        name: &ImageName,
        inputs: &[ImageName],
        fail_on_conflict: bool,
    ) -> Result<MergeReport, StoreError> {
        let start = Instant::now();
        if inputs.is_empty() {
            return Err(StoreError::Invalid("merge needs at least one image".into()));
        }
        if self.has_image(name)? {
            return Err(StoreError::ImageExists(name.clone()));
        }
        let imgs = self.images_of(inputs)?;
        let (stack, _) = stack_of(&imgs);
        for l in &stack {
            self.layer_required(l)?;
        }
        let conflicts = self.merge_conflicts(inputs)?;
        let names: Vec<&str> = inputs.iter().map(ImageName::as_str).collect();
        let command = format!("strata merge {name} {}", names.join(" "));
        let config = merged_config(&imgs, &stack, &command)?;
        let created = !fail_on_conflict || conflicts.is_empty();
        if created {
            let record =
                ImageRecord::new(name.clone(), stack.clone(), config, format!("merge of {}", names.join(", ")));
            let image = crate::publish::PublishImage { record: record.clone(), replace: false };
            self.tx(crate::owner::Tx::Publish(crate::publish::PublishTx {
                layers: Vec::new(),
                image: Some(image),
                trash: None,
            }))?;
        }
        Ok(MergeReport {
            image: name.clone(),
            layers: stack,
            conflicts,
            created,
            seconds: start.elapsed().as_secs_f64(),
        })
    }
}

#[cfg(test)]
mod tests;
