//! Layer sources that are streams: a compressed blob (an image layout's, a registry's,
//! containerd's content store's), and a changeset written as a tar. (A partial pull's
//! replayed stream is in `pull/partial.rs`.)

use std::collections::HashMap;
use std::io::{self, Read};
use std::sync::atomic::{AtomicU64, Ordering};

use strata_oci::media::{self, LayerCompression};
use strata_types::RelPath;

use super::{Ingested, LayerSource, OwnSource};
use crate::{Progress, StoreError};

/// Opens a decompressor for a layer blob of `media_type`.
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

/// Blob readers that verify digest and size once read.
pub(crate) trait FinishBlob {
    fn finish_blob(self) -> Result<(), StoreError>;
}

impl<R: Read> FinishBlob for strata_oci::layout::VerifyingReader<R> {
    fn finish_blob(self) -> Result<(), StoreError> {
        self.finish().map_err(StoreError::from)
    }
}

impl FinishBlob for strata_registry::BlobReader {
    fn finish_blob(self) -> Result<(), StoreError> {
        Ok(self.finish()?)
    }
}

/// Counts bytes read (the compressed bytes of a blob).
struct CountingReader<'a, R> {
    inner: R,
    counter: &'a AtomicU64,
    progress: &'a dyn Progress,
}

impl<R: Read> Read for CountingReader<'_, R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.counter.fetch_add(n as u64, Ordering::Relaxed);
        self.progress.inc(n as u64);
        Ok(n)
    }
}

/// A compressed layer blob. It is decompressed on a thread of its own, feeding the
/// ingestion through a pipe, so that reading, decompression and blob hashing overlap with
/// applying the layer; its digest and size are checked once it is read.
pub(crate) struct BlobSource<'a, B> {
    pub media_type: &'a str,
    /// Taken when the stream runs.
    pub blob: Option<B>,
    /// Compressed bytes read (the `bytes_fetched` figure).
    pub fetched: &'a AtomicU64,
    pub progress: &'a dyn Progress,
}

impl<B: Read + Send + FinishBlob> LayerSource for BlobSource<'_, B> {
    fn run(
        &mut self,
        consume: &mut dyn FnMut(&mut dyn Read) -> Result<Ingested, StoreError>,
    ) -> Result<Ingested, StoreError> {
        let mut blob = self.blob.take().expect("a blob source runs once");
        let (media_type, fetched, progress) = (self.media_type, self.fetched, self.progress);
        let (mut reader, writer) = io::pipe().map_err(|e| StoreError::io("pipe", e))?;
        let _ = nix::fcntl::fcntl(&writer, nix::fcntl::FcntlArg::F_SETPIPE_SZ(1 << 20));
        std::thread::scope(|s| {
            let producer = s.spawn(move || -> Result<(), StoreError> {
                let mut w = io::BufWriter::with_capacity(1 << 20, writer);
                let copied = {
                    let counted = CountingReader { inner: &mut blob, counter: fetched, progress };
                    decompress(media_type, counted).and_then(|mut tar| match io::copy(&mut tar, &mut w) {
                        Ok(_) => Ok(()),
                        // The consumer stopped reading: its own error says why.
                        Err(e) if e.kind() == io::ErrorKind::BrokenPipe => Ok(()),
                        Err(e) => Err(StoreError::Invalid(format!("decompressing: {e}"))),
                    })
                };
                drop(w);
                // Verify even when decompression failed: a wrong blob is the better error.
                blob.finish_blob()?;
                copied
            });
            let consumed = consume(&mut reader);
            drop(reader);
            let produced = producer.join().map_err(|_| StoreError::Invalid("the decompressor panicked".into()))?;
            produced?;
            consumed
        })
    }
}

/// A changeset (a container's changes, a squash), written as a layer tar on a thread of its
/// own and ingested through a pipe: a layer from a changeset without its tar ever on disk.
/// Regular files' bytes can be cloned from where the changeset read them (`own`).
pub(crate) struct ChangesetSource<'a> {
    pub changeset: &'a strata_differ::Changeset,
    /// Files whose bytes exist outside the store (a commit's upper files), by path.
    pub own: Option<HashMap<RelPath, strata_differ::Source>>,
    /// Names the layer in errors ("the layer of c").
    pub what: String,
    /// What the writer wrote, once it ran.
    pub stats: strata_differ::WriteStats,
}

impl LayerSource for ChangesetSource<'_> {
    fn own_files(&mut self) -> Option<OwnSource<'static>> {
        let own = self.own.take()?;
        Some(Box::new(move |e| own.get(&e.path).cloned()))
    }

    fn run(
        &mut self,
        consume: &mut dyn FnMut(&mut dyn Read) -> Result<Ingested, StoreError>,
    ) -> Result<Ingested, StoreError> {
        let (mut reader, writer) = io::pipe().map_err(|e| StoreError::io("pipe", e))?;
        let cs = self.changeset;
        std::thread::scope(|s| {
            let producer = s.spawn(move || {
                let mut out = strata_layer::out_file::WriteTarOut::new(writer);
                let r = strata_differ::write_layer(cs, &mut out, &strata_differ::WriteOptions::default());
                drop(out); // closes the pipe: the reader sees EOF
                r
            });
            let ingested = consume(&mut reader);
            drop(reader);
            let written = producer.join().map_err(|_| StoreError::Invalid("the layer writer panicked".into()))?;
            // When ingestion fails (a full disk, say), it stops reading and the writer sees
            // a broken pipe: the ingestion's error is the one that says what was wrong.
            let ingested = ingested?;
            self.stats =
                written.map_err(|source| StoreError::Diff { context: format!("writing {}", self.what), source })?;
            Ok(ingested)
        })
    }
}
