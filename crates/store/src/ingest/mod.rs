//! Ingestion: the one way a layer enters the store. Whatever the source — an image
//! layout's blob, a registry's blob or its ranges (a partial pull), a changeset (commit,
//! squash), containerd's content store (the snapshotter's Apply) — it yields the layer's tar
//! stream ([`LayerSource`]), and [`ingest`] turns that stream into a layer directory in
//! staging: applied with overlay whiteouts (`strata_layer::apply`, relative to a root no
//! entry can escape), each regular file deduplicated against the whole store as it is
//! written ([`dedup`]), the stream's DiffID computed and its tar-split recorded on the way,
//! and one file record and the index entries of every entry collected.
//!
//! Because every way in goes through the same stream, every layer's DiffID is recomputed
//! from the bytes that built it, and the caller checks it (against the image config for
//! import and pull).

mod dedup;
mod sources;

use std::fs::File;
use std::io::Read;
use std::path::Path;

use strata_index::{Index, Key};
use strata_layer::apply::{Applied, ApplyOptions, WhiteoutMode, apply};
use strata_layer::tarsplit::DiffIdOut;
use strata_types::{EntryKind, LayerId};

pub use dedup::Bytes;
pub(crate) use dedup::OwnSource;
use dedup::{DedupWriter, FileOutcome};
pub(crate) use sources::{BlobSource, ChangesetSource};

use crate::StoreError;
use crate::error::IoContext;
use crate::paths::{LAYER_DIFF, LAYER_TAR_SPLIT, StorePaths};
use crate::publish::{NewLoc, StagedLayer};
use crate::records::{FileRecord, LayerOrigin, LayerRecord, Marker};
use crate::store::now_secs;

/// Where a layer's tar stream comes from.
pub(crate) trait LayerSource {
    /// Runs `consume` on the layer's uncompressed tar stream, and checks what was read once
    /// the stream ended (a blob's digest and size). When both fail, the source's error is
    /// returned: a blob that is not what its descriptor says is the better explanation.
    fn run(
        &mut self,
        consume: &mut dyn FnMut(&mut dyn Read) -> Result<Ingested, StoreError>,
    ) -> Result<Ingested, StoreError>;

    /// Where files' bytes already exist outside the store (a commit's upper files); asked
    /// once, before the stream runs.
    fn own_files(&mut self) -> Option<OwnSource<'static>> {
        None
    }

    /// Adjusts what ingestion counted: a partial pull's "reused" is what it did not fetch,
    /// and it knows index entries a producer's TOC names (its chunk digests).
    fn finish(&mut self, _ingested: &mut Ingested) {}
}

/// A layer built in staging, and how its bytes got there.
#[derive(Debug)]
pub(crate) struct Ingested {
    pub staged: StagedLayer,
    pub bytes: Bytes,
}

/// Turns `source`'s stream into a layer in `dir` (its `diff/`, its tar-split, its records and
/// index entries), deduplicated against the store `index` and `paths` describe.
pub(crate) fn ingest(
    index: &Index,
    paths: &StorePaths,
    dir: &Path,
    origin: LayerOrigin,
    source: &mut dyn LayerSource,
) -> Result<Ingested, StoreError> {
    let mut own = source.own_files();
    let mut consume = |tar: &mut dyn Read| ingest_tar(index, paths, dir, tar, origin, own.take());
    let mut ingested = source.run(&mut consume)?;
    source.finish(&mut ingested);
    Ok(ingested)
}

/// Records and index entries collected while a layer is applied.
#[derive(Debug, Default)]
pub(crate) struct Collected {
    pub files: Vec<FileRecord>,
    pub locs: Vec<NewLoc>,
    pub logical: u64,
}

impl Collected {
    pub fn observe(&mut self, a: Applied<'_, FileOutcome>) {
        let n = self.files.len() as u32;
        match a {
            Applied::Entry { entry, content } => {
                let mut rec = FileRecord { entry: entry.clone(), marker: Marker::None, blake3: None, sha256: None };
                if let Some(o) = content {
                    let d = &o.digests;
                    rec.blake3 = Some(d.blake3);
                    rec.sha256 = d.sha256;
                    self.logical += d.size;
                    if d.size > 0 {
                        let whole = |key| NewLoc { key, file: n, offset: 0, len: d.size };
                        self.locs.push(whole(Key::File(d.blake3)));
                        if let Some(s) = d.sha256 {
                            self.locs.push(whole(Key::FileSha256(s)));
                        }
                        if d.chunks.len() > 1 {
                            for c in d.chunks.iter().filter(|c| !c.zero) {
                                self.locs.push(NewLoc {
                                    key: Key::Chunk(c.digest),
                                    file: n,
                                    offset: c.offset,
                                    len: u64::from(c.len),
                                });
                            }
                        }
                    }
                }
                self.files.push(rec);
            }
            Applied::Whiteout { entry, target } => {
                let mut e = entry.clone();
                e.path = target.clone();
                self.files.push(FileRecord { entry: e, marker: Marker::Whiteout, blake3: None, sha256: None });
            }
            Applied::Opaque { entry, dir } => {
                let mut e = entry.clone();
                e.path = dir.clone();
                e.kind = EntryKind::Dir;
                self.files.push(FileRecord { entry: e, marker: Marker::Opaque, blake3: None, sha256: None });
            }
            Applied::ImplicitDir { .. } | Applied::Skipped { .. } => {}
        }
    }
}

/// Applies the layer stream `tar` into `dir/diff` (overlay whiteouts), deduplicating, and
/// records its tar-split in `dir`. Returns the staged layer; the caller checks its DiffID.
fn ingest_tar(
    index: &Index,
    paths: &StorePaths,
    dir: &Path,
    tar: &mut dyn Read,
    origin: LayerOrigin,
    own_source: Option<OwnSource<'_>>,
) -> Result<Ingested, StoreError> {
    let diff = dir.join(LAYER_DIFF);
    // The layer's `/`: 0755 whatever the umask (a container's root must look normal), unless
    // the tar names `./` itself.
    std::fs::create_dir_all(&diff).at(&diff)?;
    std::fs::set_permissions(&diff, std::os::unix::fs::PermissionsExt::from_mode(0o755)).at(&diff)?;
    let ts_path = dir.join(LAYER_TAR_SPLIT);
    let ts_file = File::create(&ts_path).at(&ts_path)?;
    let ts_enc = zstd::Encoder::new(ts_file, 3).at(&ts_path)?;
    let mut recorder = strata_layer::tarsplit::TarSplitRecorder::new(ts_enc);
    let mut diff_id = DiffIdOut::default();
    let mut writer = DedupWriter::new(index, paths, dir.to_path_buf(), own_source);
    let mut collected = Collected::default();
    let opts = ApplyOptions::new(WhiteoutMode::Overlay);
    let stats = {
        let mut tap = strata_layer::Tee(&mut diff_id, &mut recorder);
        apply(&diff, tar, &opts, &mut writer, Some(&mut tap), &mut |a| {
            collected.observe(a);
            Ok(())
        })?
    };
    let enc = recorder.finish().at(&ts_path)?;
    enc.finish().at(&ts_path)?;
    let (diff_id, tar_bytes) = diff_id.finish();
    let id = LayerId(diff_id);
    let record = LayerRecord {
        id,
        num: 0,
        created: now_secs(),
        origin,
        entries: collected.files.len() as u64,
        logical_bytes: collected.logical,
        tar_bytes,
    };
    debug_assert_eq!(tar_bytes, stats.stream_bytes);
    let bytes = writer.bytes;
    let staged = StagedLayer { id, dir: dir.to_path_buf(), files: collected.files, locs: collected.locs, record };
    Ok(Ingested { staged, bytes })
}
