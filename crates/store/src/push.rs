//! `strata push IMAGE REF --format F`: an image to an OCI registry.
//!
//! The store is only read (shared lock): each layer's tar stream is rebuilt from its
//! tar-split and files (verified against its DiffID, see [`crate::export`]) and compressed
//! into a blob in a staging directory, then uploaded. Compression (all cores, one layer at a
//! time, in every format) overlaps with the uploads of earlier layers:
//! compressors hand finished blobs to uploaders through a bounded queue, so at most a few
//! compressed blobs wait on disk at a time, and each is deleted once uploaded.
//!
//! Nothing the registry already has is sent: a layer blob found by `HEAD` in the target
//! repository is not uploaded, and when the image was pulled from another repository of the
//! same registry, its blobs that already are in the requested format are mounted from
//! there (no compression, no upload) when the registry allows it. The manifest goes last, so
//! a failed push leaves no tag pointing at missing blobs.

use std::fs::File;
use std::io::BufReader;
use std::path::PathBuf;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc::sync_channel;
use std::time::{Duration, Instant};

use strata_oci::layout::OciDir;
use strata_oci::media::{self, LayerCompression};
use strata_oci::{Descriptor, ImageManifest};
use strata_registry::{Client, ClientOptions, ManifestRef, PushOutcome, Reference};
use strata_types::{ImageName, LayerId, Sha256Digest};
use strata_zstd_chunked::annotations::{LayerFormat as Chunkedness, detect};

use crate::records::ImageRecord;
use crate::staging::Staging;
use crate::{LayerFormat, Progress, Store, StoreError};

/// Options of a push.
#[derive(Clone, Debug)]
pub struct PushOptions {
    pub format: LayerFormat,
    pub plain_http: bool,
    pub auth_file: Option<PathBuf>,
    /// Blobs uploaded at once.
    pub uploads: usize,
}

impl Default for PushOptions {
    fn default() -> Self {
        PushOptions { format: LayerFormat::ZstdChunked, plain_http: false, auth_file: None, uploads: 3 }
    }
}

/// How a layer got into the target repository.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum LayerOutcome {
    /// Compressed here and uploaded.
    Uploaded,
    /// The repository had the blob already (found after compressing it).
    Exists,
    /// Mounted from the repository the image was pulled from: nothing compressed or sent.
    Mounted,
    /// The repository already had the blob the image was pulled as: nothing compressed.
    Present,
}

/// One pushed layer.
#[derive(Clone, Debug, serde::Serialize)]
pub struct PushedLayer {
    pub diff_id: Sha256Digest,
    pub digest: Sha256Digest,
    pub media_type: String,
    pub size: u64,
    pub outcome: LayerOutcome,
}

/// What a push did (the `--json` figures).
#[derive(Clone, Debug, serde::Serialize)]
pub struct PushReport {
    pub image: ImageName,
    /// The pushed manifest, by digest.
    pub reference: String,
    pub manifest: Sha256Digest,
    pub layers: Vec<PushedLayer>,
    /// Request body bytes sent (blobs, config, manifest).
    pub bytes_uploaded: u64,
    pub seconds: f64,
}

/// Whether a blob of media type `media_type` with `annotations` is in format `f`.
fn is_format(d: &Descriptor, f: LayerFormat) -> bool {
    let chunked = matches!(detect(&d.annotations), Ok(Chunkedness::ZstdChunked(_)));
    match (media::layer_compression(&d.media_type), f) {
        (Some(LayerCompression::None), LayerFormat::Tar) => true,
        (Some(LayerCompression::Gzip), LayerFormat::TarGzip) => true,
        (Some(LayerCompression::Zstd), LayerFormat::TarZstd) => !chunked,
        (Some(LayerCompression::Zstd), LayerFormat::ZstdChunked) => chunked,
        _ => false,
    }
}

/// The layer blobs of the repository an image was pulled from, when that is a repository of
/// `client`'s registry still holding the very same image (same config) in format `f`:
/// per layer, the source descriptor to mount (`None` where the blob is in another format).
fn mountable(client: &Client, img: &ImageRecord, f: LayerFormat) -> Option<(String, Vec<Option<Descriptor>>)> {
    let src = Reference::parse(&img.source).ok()?;
    if src.registry() != client.registry() {
        return None;
    }
    // Any failure here (tag moved, repository gone, no access) only means no mounts.
    let resolved = client.resolve(&src).ok()?;
    let m = resolved.parsed;
    if m.config.digest != img.config_digest || m.layers.len() != img.layers.len() {
        return None;
    }
    let descs = m
        .layers
        .into_iter()
        .map(|d| {
            is_format(&d, f).then(|| {
                let mut out = Descriptor::new(f.media_type(), d.digest, d.size);
                if f == LayerFormat::ZstdChunked {
                    out.annotations = d.annotations;
                }
                out
            })
        })
        .collect();
    Some((src.repository().to_owned(), descs))
}

/// A compressed blob waiting for upload.
struct Ready {
    layer: usize,
    desc: Descriptor,
    path: PathBuf,
}

impl Store {
    pub fn push(
        &self,
        image: &ImageName,
        reference: &str,
        opts: &PushOptions,
        progress: &dyn Progress,
    ) -> Result<PushReport, StoreError> {
        let start = Instant::now();
        let pinned = self.pin_images(&[image])?;
        let img = pinned.images()[0].clone();
        let r = Reference::parse(reference)?;
        if r.digest().is_some() {
            return Err(StoreError::Invalid(format!(
                "{reference}: push to a tag (the manifest's digest is only known once it is written)"
            )));
        }
        let copts = ClientOptions {
            plain_http: opts.plain_http,
            auth_file: opts.auth_file.clone(),
            ..ClientOptions::default()
        };
        let client = Client::for_reference(&r, copts)?;
        let repo = r.repository().to_owned();
        progress.start("pushing", None);

        // 1. Layers the source repository has in this format: HEAD, then mount.
        let mut done: Vec<Option<(Descriptor, LayerOutcome)>> = vec![None; img.layers.len()];
        if let Some((from, descs)) = mountable(&client, &img, opts.format) {
            for (i, d) in descs.into_iter().enumerate() {
                let Some(d) = d else { continue };
                let outcome = if client.blob_exists(&repo, &d.digest)? {
                    LayerOutcome::Present
                } else if from != repo && client.mount_blob(&repo, &d.digest, &from)? {
                    LayerOutcome::Mounted
                } else {
                    continue;
                };
                done[i] = Some((d, outcome));
            }
        }

        // 2. The others: compress into staging, upload, delete.
        let todo: Vec<usize> = (0..img.layers.len()).filter(|&i| done[i].is_none()).collect();
        let staging = Staging::new(&self.paths, "push")?;
        let dir = OciDir::create(staging.path().join("blobs"))?;
        for (i, d, outcome) in self.compress_and_upload(&client, &repo, &img.layers, &todo, &dir, opts, progress)? {
            done[i] = Some((d, outcome));
        }

        // 3. Config, then the manifest.
        let (config_digest, _) = client.push_blob_bytes(&repo, img.config.as_bytes())?;
        if config_digest != img.config_digest {
            return Err(StoreError::Corrupt(format!(
                "image {image}: its config hashes to {config_digest}, its record says {}",
                img.config_digest
            )));
        }
        let mut layers = Vec::with_capacity(done.len());
        let mut descs = Vec::with_capacity(done.len());
        for (i, d) in done.into_iter().enumerate() {
            let (d, outcome) = d.expect("every layer was pushed");
            layers.push(PushedLayer {
                diff_id: img.layers[i].0,
                digest: d.digest,
                media_type: d.media_type.clone(),
                size: d.size,
                outcome,
            });
            descs.push(d);
        }
        let manifest = ImageManifest {
            schema_version: 2,
            media_type: Some(media::IMAGE_MANIFEST.into()),
            config: Descriptor::new(media::IMAGE_CONFIG, img.config_digest, img.config.len() as u64),
            layers: descs,
            annotations: Default::default(),
            extra: Default::default(),
        };
        let bytes = serde_json::to_vec(&manifest).expect("manifest serializes");
        let tag = r.tag().unwrap_or("latest").to_owned();
        let digest = client.put_manifest(&repo, &ManifestRef::Tag(tag), media::IMAGE_MANIFEST, &bytes)?;
        progress.finish();
        Ok(PushReport {
            image: image.clone(),
            reference: r.with_digest(digest).to_string(),
            manifest: digest,
            layers,
            bytes_uploaded: client.progress().uploaded(),
            seconds: start.elapsed().as_secs_f64(),
        })
    }

    /// Compresses the layers `todo` (indexes into `ids`) into `dir` on compressor threads
    /// and uploads them on `opts.uploads` threads as they become ready. Returns, per layer
    /// pushed, its index, descriptor and what the registry needed.
    #[allow(clippy::too_many_arguments)]
    fn compress_and_upload(
        &self,
        client: &Client,
        repo: &str,
        ids: &[LayerId],
        todo: &[usize],
        dir: &OciDir,
        opts: &PushOptions,
        progress: &dyn Progress,
    ) -> Result<Vec<(usize, Descriptor, LayerOutcome)>, StoreError> {
        if todo.is_empty() {
            return Ok(Vec::new());
        }
        let results = Mutex::new(Vec::with_capacity(todo.len()));
        // Every format compresses one layer on every core, so one layer at a time.
        let compressors = 1;
        let uploaders = opts.uploads.clamp(1, todo.len());
        let next = AtomicU64::new(0);
        let first_error: Mutex<Option<StoreError>> = Mutex::new(None);
        let failed = || first_error.lock().unwrap_or_else(|e| e.into_inner()).is_some();
        let fail = |e: StoreError| {
            let mut g = first_error.lock().unwrap_or_else(|e| e.into_inner());
            if g.is_none() {
                *g = Some(e);
            }
        };
        let uploaded_before = client.progress().uploaded();
        let (tx, rx) = sync_channel::<Ready>(1);
        let rx = Mutex::new(rx);
        std::thread::scope(|s| {
            for _ in 0..compressors {
                let tx = tx.clone();
                s.spawn(|| {
                    let tx = tx;
                    loop {
                        let k = next.fetch_add(1, Ordering::Relaxed) as usize;
                        let Some(&i) = todo.get(k) else { break };
                        if failed() {
                            break;
                        }
                        progress.message(&format!("compressing layer {}/{}", i + 1, ids.len()));
                        match self.export_layer(dir, &ids[i], opts.format) {
                            Ok(desc) => {
                                let path = dir.blob_path(&desc.digest);
                                if tx.send(Ready { layer: i, desc, path }).is_err() {
                                    break;
                                }
                            }
                            Err(e) => fail(e),
                        }
                    }
                });
            }
            drop(tx);
            for _ in 0..uploaders {
                s.spawn(|| {
                    loop {
                        let ready = rx.lock().unwrap_or_else(|e| e.into_inner()).recv();
                        let Ok(Ready { layer, desc, path }) = ready else { break };
                        if failed() {
                            let _ = std::fs::remove_file(&path);
                            continue;
                        }
                        let open = || File::open(&path).map(|f| BufReader::with_capacity(1 << 20, f));
                        let r = client.push_blob(repo, &desc.digest, desc.size, None, open);
                        let _ = std::fs::remove_file(&path);
                        match r {
                            Ok(o) => {
                                let outcome = match o {
                                    PushOutcome::Exists => LayerOutcome::Exists,
                                    PushOutcome::Mounted => LayerOutcome::Mounted,
                                    PushOutcome::Uploaded => LayerOutcome::Uploaded,
                                };
                                results.lock().unwrap_or_else(|e| e.into_inner()).push((layer, desc, outcome));
                            }
                            Err(e) => fail(StoreError::Invalid(format!("uploading layer {}: {e}", layer + 1))),
                        }
                    }
                });
            }
            // Report upload progress while the workers run.
            s.spawn(|| {
                let mut last = uploaded_before;
                loop {
                    let now = client.progress().uploaded();
                    progress.inc(now.saturating_sub(last));
                    last = now;
                    let finished = results.lock().unwrap_or_else(|e| e.into_inner()).len() == todo.len();
                    if finished || failed() {
                        break;
                    }
                    std::thread::sleep(Duration::from_millis(100));
                }
            });
        });
        match first_error.into_inner().unwrap_or_else(|e| e.into_inner()) {
            Some(e) => Err(e),
            None => Ok(results.into_inner().unwrap_or_else(|e| e.into_inner())),
        }
    }
}
