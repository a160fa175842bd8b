//! An OCI distribution client (blocking, on `ureq`): what `strata pull` and `strata push`
//! need from a registry.
//!
//! - [`Reference`]: `host[:port]/repo[:tag|@sha256:digest]`, explicit registries only.
//! - [`Client`]: one per registry; cheap to clone, `Send + Sync`. Retries connection errors,
//!   429 and 5xx with bounded exponential backoff; authenticates with Basic or with
//!   Bearer tokens (credentials from docker/containers auth files, see [`ClientOptions`]);
//!   follows redirects for GET/HEAD, keeping `Range` and dropping `Authorization` when
//!   the redirect leaves the registry's origin; counts bytes in [`Progress`].
//! - Manifests: [`Client::get_manifest`] (digest-verified), [`Client::resolve`] (index →
//!   linux/amd64 manifest), [`Client::put_manifest`].
//! - Blobs: [`Client::blob_size`], [`Client::blob_exists`], [`Client::get_blob`]
//!   (streaming, verified on [`BlobReader::finish`], resumed with a `Range` request when
//!   the connection breaks), [`Client::copy_blob`].
//! - Ranges: [`Client::get_ranges`] (many ranges per request, parallel requests, multipart,
//!   single-range and whole-blob answers, automatic splitting when a server refuses long
//!   `Range` headers), [`Client::fetch_ranges`], [`BlobRanges::read_range`].
//! - Push: [`Client::push_blob`] (exists → mount → monolithic upload),
//!   [`Client::mount_blob`], [`Client::push_blob_bytes`].
//! - Hostile servers: what is read into memory has a limit (manifests 4 MiB, tokens 1 MiB,
//!   error bodies 64 KiB), blobs are read one byte past their size at most, range answers
//!   are checked against the request before their bytes are read or memory reserved for
//!   them, redirects (5) and `Retry-After` (`retry_max_delay`) are bounded.
//!
//! Measured against docker-registry 2.8.2 (distribution, Go 1.19) on loopback:
//! - a multi-range request is answered 206 `multipart/byteranges`, one part per range in the
//!   order asked (overlapping and adjacent ranges are not merged);
//! - there is no limit on the number of ranges, only on the request header size (Go's
//!   1 MiB): 75,000 short ranges (a 1,032,908-byte header) pass, 80,000 get 431. This
//!   client stays far below: at most `max_ranges_per_request` ranges (default 100) and
//!   60 KiB of `Range` value per request;
//! - the server spends about 0.25 ms per range (1,000 ranges: 0.27 s, 16,000: 4.6 s), so
//!   callers should merge nearby ranges;
//! - ranges whose total exceeds the blob size get a 200 with the whole blob; ranges past the
//!   end are dropped from the answer (416 when none is left, with a `Content-Length` it
//!   never sends).

mod auth;
mod authfile;
mod blob;
mod challenge;
mod client;
mod error;
mod manifest;
mod multipart;
mod range_plan;
mod ranges;
mod reference;
mod upload;
mod url;

pub use blob::BlobReader;
pub use client::{Client, ClientOptions, Progress};
pub use error::{CredentialState, ErrorDetail, RegistryError, Result};
pub use manifest::{MAX_MANIFEST_SIZE, Manifest, ResolvedImage};
pub use ranges::{BlobRanges, RangeStats};
pub use reference::{ManifestRef, Reference};
pub use upload::PushOutcome;

/// Entry points for the fuzz targets in `fuzz/` (the parsers behind them are private).
/// Not part of the API.
#[doc(hidden)]
pub mod fuzzing {
    use std::ops::Range;

    /// The `boundary` of a `multipart/byteranges` content type.
    pub fn boundary(content_type: &str) -> Option<String> {
        crate::multipart::boundary(content_type)
    }

    /// A `Content-Range` value: the range (half-open) and the complete length.
    pub fn content_range(value: &str) -> Result<(Option<Range<u64>>, Option<u64>), String> {
        crate::multipart::content_range(value)
    }

    /// One part of a `multipart/byteranges` body: its range in the blob and its bytes.
    pub type Part = (Range<u64>, Vec<u8>);

    /// Every part of a `multipart/byteranges` body, or the first error as text.
    pub fn multipart_parts(body: &[u8], boundary: &str, max_part: u64) -> Result<Vec<Part>, String> {
        let mut parts = crate::multipart::Multipart::new(body, boundary);
        let mut out = Vec::new();
        loop {
            match parts.next_part(max_part) {
                Ok(Some(p)) => out.push(p),
                Ok(None) => return Ok(out),
                Err(e) => return Err(format!("{e:?}")),
            }
        }
    }
}
