//! `strata pull REF`: an image from an OCI registry.
//!
//! zstd:chunked layers are pulled by chunks ([`partial`]): only what the store lacks is
//! fetched. Other layers (and zstd:chunked blobs without a tar-split, which nothing binds to
//! their DiffID) are fetched in full and deduplicated on disk as they are applied. Layers the
//! store already has (same DiffID) are not fetched at all. Every layer's DiffID is
//! recomputed from the stream that built it and checked against the config; the image
//! appears in one index batch with all its new layers.

mod partial;
pub mod window;

use std::io::Read;
use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Instant;

use strata_index::Key;
use strata_oci::Descriptor;
use strata_registry::{Client, ClientOptions, Reference};
use strata_types::{ImageName, LayerId};
use strata_zstd_chunked::{LayerPlan, Limits, ReadError};

use crate::import::{CountingReader, IngestReport, decompress, parse_config};
use crate::ingest::{Bytes, ingest_tar};
use crate::owner::Tx;
use crate::pins::Pins;
use crate::publish::{NewLoc, PublishImage, PublishTx, StagedLayer};
use crate::records::{ImageRecord, LayerOrigin};
use crate::staging::Staging;
use crate::{Progress, Store, StoreError};

/// Largest image config accepted (real ones are a few KiB; history can make them longer).
const MAX_CONFIG: u64 = 16 << 20;

/// Options of a pull.
#[derive(Clone, Debug, Default)]
pub struct PullOptions {
    pub plain_http: bool,
    pub auth_file: Option<std::path::PathBuf>,
    /// Pull zstd:chunked layers in full anyway (for measuring).
    pub no_partial: bool,
}

/// Adapts the registry's ranged reads to the zstd:chunked reader.
struct Ranges(strata_registry::BlobRanges);

impl strata_zstd_chunked::RangeSource for Ranges {
    fn read_range(&mut self, range: std::ops::Range<u64>) -> std::io::Result<Vec<u8>> {
        self.0.read_range(range)
    }
    fn read_ranges(&mut self, ranges: &[std::ops::Range<u64>]) -> std::io::Result<Vec<Vec<u8>>> {
        self.0.read_ranges(ranges).map_err(std::io::Error::other)
    }
}

fn registry_err(e: strata_registry::RegistryError) -> StoreError {
    StoreError::Invalid(e.to_string())
}

/// What one layer's pull did.
struct LayerPull {
    staged: StagedLayer,
    bytes: Bytes,
    partial: bool,
}

impl Store {
    pub fn pull(
        &self,
        reference: &str,
        name: Option<ImageName>,
        opts: &PullOptions,
        progress: &dyn Progress,
    ) -> Result<IngestReport, StoreError> {
        let start = Instant::now();
        let r = Reference::parse(reference).map_err(registry_err)?;
        let copts = ClientOptions {
            plain_http: opts.plain_http,
            auth_file: opts.auth_file.clone(),
            ..ClientOptions::default()
        };
        let client = Client::for_reference(&r, copts).map_err(registry_err)?;
        let repo = r.repository().to_owned();
        let resolved = client.resolve(&r).map_err(registry_err)?;
        let manifest = resolved.parsed;
        let name = match name {
            Some(n) => n,
            None => ImageName::new(reference)
                .map_err(|e| StoreError::Invalid(format!("{e}; name the image with --name")))?,
        };
        if manifest.config.size > MAX_CONFIG {
            return Err(StoreError::BadConfig(format!(
                "the manifest declares a {}-byte config; configs are at most {MAX_CONFIG} bytes",
                manifest.config.size
            )));
        }
        let mut config_bytes = Vec::new();
        let mut blob = client.get_blob(&repo, &manifest.config.digest, manifest.config.size).map_err(registry_err)?;
        (&mut blob)
            .take(MAX_CONFIG)
            .read_to_end(&mut config_bytes)
            .map_err(|e| StoreError::Invalid(format!("config: {e}")))?;
        blob.finish().map_err(registry_err)?;
        let config = parse_config(&config_bytes, manifest.layers.len())?;
        let diff_ids = config.rootfs.diff_ids.clone();
        let total: u64 = manifest.layers.iter().map(|l| l.size).sum();
        progress.start("pulling", Some(total));
        let partial_any = std::sync::atomic::AtomicBool::new(false);
        let staging = Staging::new(&self.paths, "pull")?;
        let pins = Pins::new(&self.paths, "pull")?;
        let got = self.acquire_layers(&staging, &pins, &diff_ids, progress, |i, dir| {
            let d = &manifest.layers[i];
            let bad = |message: String| StoreError::BadLayer {
                source_name: reference.to_owned(),
                index: i,
                digest: d.digest,
                message,
            };
            let lp = self.pull_layer(&client, &repo, d, dir, opts, progress).map_err(|e| match e {
                StoreError::BadLayer { .. } => e,
                other => bad(other.to_string()),
            })?;
            if lp.partial {
                partial_any.store(true, Ordering::Relaxed);
            }
            Ok((lp.staged, lp.bytes))
        })?;
        progress.finish();
        let record = ImageRecord::new(
            name.clone(),
            diff_ids.iter().map(|d| LayerId(*d)).collect(),
            String::from_utf8(config_bytes).expect("checked UTF-8"),
            reference.to_owned(),
        );
        debug_assert_eq!(record.config_digest, manifest.config.digest);
        // Pulling a name again moves it to the new image; layers only the old one used go.
        let trash = Staging::new(&self.paths, "pull-replaced")?;
        let image = PublishImage { record: record.clone(), replace: true };
        let tx = PublishTx { layers: Vec::new(), image: Some(image), trash: Some(trash.root_path()?) };
        if let Err(e) = self.tx(Tx::Publish(tx)) {
            self.discard(&pins, &got.added);
            return Err(e);
        }
        let (bytes, present) = (got.bytes, got.present);
        Ok(IngestReport {
            image: name,
            layers: record.layers,
            bytes_fetched: client.progress().downloaded(),
            bytes_reused: bytes.reused,
            bytes_reflinked: bytes.reflinked,
            bytes_written: bytes.written,
            partial: partial_any.into_inner(),
            seconds: start.elapsed().as_secs_f64(),
            layers_present: present,
        })
    }

    fn pull_layer(
        &self,
        client: &Client,
        repo: &str,
        d: &Descriptor,
        dir: &Path,
        opts: &PullOptions,
        progress: &dyn Progress,
    ) -> Result<LayerPull, StoreError> {
        if !opts.no_partial {
            let mut src = Ranges(client.blob_ranges(repo, &d.digest));
            match strata_zstd_chunked::open_layer(&d.annotations, d.size, &mut src, &Limits::default()) {
                Ok(plan) => return self.pull_partial(client, repo, d, dir, &plan, progress),
                Err(ReadError::NeedsFullPull(_)) => {}
                Err(e) => return Err(StoreError::Invalid(format!("zstd:chunked metadata: {e}"))),
            }
        }
        let fetched = AtomicU64::new(0);
        let mut blob = client.get_blob(repo, &d.digest, d.size).map_err(registry_err)?;
        let result = {
            let counted = CountingReader { inner: &mut blob, counter: &fetched, progress };
            let tar = decompress(&d.media_type, counted)?;
            ingest_tar(self.index(), &self.paths, dir, tar, LayerOrigin::Pull, None)
        };
        blob.finish().map_err(registry_err)?;
        let (staged, bytes) = result?;
        Ok(LayerPull { staged, bytes, partial: false })
    }

    fn pull_partial(
        &self,
        client: &Client,
        repo: &str,
        d: &Descriptor,
        dir: &Path,
        plan: &LayerPlan,
        progress: &dyn Progress,
    ) -> Result<LayerPull, StoreError> {
        let sources = partial::plan_sources(self.index(), &self.paths, plan).map_err(StoreError::Invalid)?;
        let remote: u64 = sources.remote.iter().map(|r| r.end - r.start).sum();
        progress.message(&format!("reusing {} fetching {}", short_bytes(sources.local_bytes), short_bytes(remote)));
        let mut replay = partial::Replay::new(
            plan.tar_split_records(),
            plan,
            sources,
            client.clone(),
            repo.to_owned(),
            d.digest,
            progress,
        );
        let (mut staged, mut bytes) = ingest_tar(self.index(), &self.paths, dir, &mut replay, LayerOrigin::Pull, None)?;
        let s = replay.stats;
        drop(replay);
        // The bar counts the chunks' compressed bytes; the rest of the blob is metadata.
        progress.inc(d.size.saturating_sub(s.compressed));
        // For a pull, "reused" is what did not have to be fetched.
        bytes.reused = s.local;
        bytes.reflinked = bytes.reflinked.min(bytes.reused);
        // Index the producer's chunk digests too, so later pulls of related blobs from the
        // same producer find these chunks by their SHA-256.
        let file_no: std::collections::HashMap<&strata_types::RelPath, u32> =
            staged.files.iter().enumerate().map(|(n, f)| (&f.entry.path, n as u32)).collect();
        let mut extra = Vec::new();
        for e in &plan.entries {
            let Some(&n) = file_no.get(&e.entry.path) else { continue };
            if e.chunks.len() < 2 {
                continue;
            }
            for c in e.chunks.iter().filter(|c| !c.zeros) {
                extra.push(NewLoc { key: Key::ChunkSha256(c.digest), file: n, offset: c.file_offset, len: c.len });
            }
        }
        staged.locs.extend(extra);
        Ok(LayerPull { staged, bytes, partial: true })
    }
}

/// `12.3M`: a short byte count for progress messages.
pub(crate) fn short_bytes(n: u64) -> String {
    match n {
        0..1_000_000 => format!("{:.0}k", n as f64 / 1e3),
        1_000_000..1_000_000_000 => format!("{:.1}M", n as f64 / 1e6),
        _ => format!("{:.2}G", n as f64 / 1e9),
    }
}
