//! `strata commit CONTAINER NAME`: a container's changes as a new layer and image.
//!
//! The upperdir differ finds the changes (one walk of the upperdir; the lowers are only
//! consulted for the paths found there), its writer streams them as the layer tar, and
//! ingestion builds the layer directory from that stream: content the store already has is
//! cloned from the store's layers, the rest is cloned from the container's upper files, so
//! on XFS/btrfs a commit allocates no new data blocks and costs what changed.

use std::collections::HashMap;
use std::time::Instant;

use strata_differ::{DiffMethod, diff_overlay};
use strata_oci::ImageConfig;
use strata_types::{ImageName, LayerId, RelPath, Sha256Digest};

use crate::container::is_mounted;
use crate::ingest::{ChangesetSource, Ingested, ingest};
use crate::owner::Tx;
use crate::publish::{PublishImage, PublishTx};
use crate::records::{ImageRecord, LayerOrigin};
use crate::staging::Staging;
use crate::{Store, StoreError};

/// What a commit did (the `--json` figures).
#[derive(Clone, Debug, serde::Serialize)]
pub struct CommitReport {
    pub image: ImageName,
    pub layer: LayerId,
    pub diff_method: &'static str,
    pub fallback_reason: Option<String>,
    /// Tar entries of the new layer (whiteouts included).
    pub entries: u64,
    pub bytes_reused: u64,
    pub bytes_reflinked: u64,
    pub bytes_written: u64,
    pub seconds: f64,
}

/// The image config of `base` with one more layer on top.
pub(crate) fn config_with_layer(base: &str, diff_id: Sha256Digest, created_by: &str) -> Result<String, StoreError> {
    let mut cfg: ImageConfig = serde_json::from_str(base).map_err(|e| StoreError::BadConfig(e.to_string()))?;
    cfg.rootfs.diff_ids.push(diff_id);
    let now = crate::time::rfc3339_now();
    cfg.created = Some(now.clone());
    cfg.history.push(strata_oci::History {
        created: Some(now),
        created_by: Some(created_by.to_owned()),
        comment: None,
        empty_layer: None,
        extra: Default::default(),
    });
    Ok(serde_json::to_string(&cfg).expect("config serializes"))
}

impl Store {
    pub fn commit(&self, container: &ImageName, name: &ImageName) -> Result<CommitReport, StoreError> {
        let start = Instant::now();
        let rec = self.container(container)?;
        if self.has_image(name)? {
            return Err(StoreError::ImageExists(name.clone()));
        }
        let base = self.image(&rec.image)?;
        let dirs = self.container_dirs(container);
        let lowers = self.container_lowers(&rec);
        let merged = is_mounted(&dirs.merged).then_some(dirs.merged.as_path());
        let cs = diff_overlay(&dirs.upper, &lowers, merged)
            .map_err(|source| StoreError::Diff { context: format!("diffing container {container}"), source })?;
        // Regular files can be cloned from where the differ read them, when that is the
        // upperdir (same filesystem as the store); a fallback reads the merged overlay view.
        let own: HashMap<RelPath, strata_differ::Source> = if cs.method == DiffMethod::Upperdir {
            cs.iter().filter_map(|c| Some((c.path.clone(), c.source.clone()?))).collect()
        } else {
            HashMap::new()
        };
        let staging = Staging::new(&self.paths, "commit")?;
        let layer_dir = staging.path().join("layer");
        let mut source = ChangesetSource {
            changeset: &cs,
            own: Some(own),
            what: format!("the layer of {container}"),
            stats: Default::default(),
        };
        let Ingested { staged, bytes } =
            ingest(self.index(), &self.paths, &layer_dir, LayerOrigin::Commit, &mut source)?;
        let stats = source.stats;
        let layer = staged.id;
        let config = config_with_layer(&base.config, layer.0, &format!("strata commit {container}"))?;
        let mut layers = rec.layers.clone();
        layers.push(layer);
        let image = ImageRecord::new(name.clone(), layers, config, format!("commit of container {container}"));
        let layer_tx = staged.seal(&self.paths, &staging)?;
        let image = PublishImage { record: image, replace: false };
        self.tx(Tx::Publish(PublishTx { layers: vec![layer_tx], image: Some(image), trash: None }))?;
        Ok(CommitReport {
            image: name.clone(),
            layer,
            diff_method: cs.method.as_str(),
            fallback_reason: cs.fallback_reason.clone(),
            entries: stats.entries,
            bytes_reused: bytes.reused,
            bytes_reflinked: bytes.reflinked,
            bytes_written: bytes.written,
            seconds: start.elapsed().as_secs_f64(),
        })
    }
}
