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

use strata_oci::Descriptor;
use strata_registry::{Client, ClientOptions, Reference};
use strata_types::{ImageName, LayerId};
use strata_zstd_chunked::{Limits, ReadError};

use crate::import::{IngestReport, parse_config};
use crate::ingest::{BlobSource, Ingested, ingest};
use crate::owner::Tx;
use crate::pins::Pins;
use crate::publish::{PublishImage, PublishTx};
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

impl Store {
    pub fn pull(
        &self,
        reference: &str,
        name: Option<ImageName>,
        opts: &PullOptions,
        progress: &dyn Progress,
    ) -> Result<IngestReport, StoreError> {
        let start = Instant::now();
        let r = Reference::parse(reference)?;
        let copts = ClientOptions {
            plain_http: opts.plain_http,
            auth_file: opts.auth_file.clone(),
            ..ClientOptions::default()
        };
        let client = Client::for_reference(&r, copts)?;
        let repo = r.repository().to_owned();
        let resolved = client.resolve(&r)?;
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
        let mut blob = client.get_blob(&repo, &manifest.config.digest, manifest.config.size)?;
        (&mut blob)
            .take(MAX_CONFIG)
            .read_to_end(&mut config_bytes)
            .map_err(|e| StoreError::Invalid(format!("config: {e}")))?;
        blob.finish()?;
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
            let (ingested, partial) = self.pull_layer(&client, &repo, d, dir, opts, progress).map_err(|e| match e {
                StoreError::BadLayer { .. } => e,
                other => bad(other.to_string()),
            })?;
            if partial {
                partial_any.store(true, Ordering::Relaxed);
            }
            Ok(ingested)
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
    ) -> Result<(Ingested, bool), StoreError> {
        if !opts.no_partial {
            let mut src = Ranges(client.blob_ranges(repo, &d.digest));
            match strata_zstd_chunked::open_layer(&d.annotations, d.size, &mut src, &Limits::default()) {
                Ok(plan) => {
                    let sources = partial::plan_sources(self.index(), &self.paths, &plan)?;
                    let remote: u64 = sources.remote.iter().map(|r| r.end - r.start).sum();
                    progress.message(&format!(
                        "reusing {} fetching {}",
                        short_bytes(sources.local_bytes),
                        short_bytes(remote)
                    ));
                    let fetch =
                        partial::RegistryRanges { client: client.clone(), repo: repo.to_owned(), blob: d.digest };
                    let mut source = partial::PartialSource::new(&plan, sources, fetch, d.size, progress);
                    let ingested = ingest(self.index(), &self.paths, dir, LayerOrigin::Pull, &mut source)?;
                    return Ok((ingested, true));
                }
                Err(ReadError::NeedsFullPull(_)) => {}
                Err(e) => return Err(StoreError::Invalid(format!("zstd:chunked metadata: {e}"))),
            }
        }
        let fetched = AtomicU64::new(0);
        let blob = client.get_blob(repo, &d.digest, d.size)?;
        let mut source = BlobSource { media_type: &d.media_type, blob: Some(blob), fetched: &fetched, progress };
        Ok((ingest(self.index(), &self.paths, dir, LayerOrigin::Pull, &mut source)?, false))
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
