//! Whole blobs: HEAD (existence and size) and streaming GET verified against digest and size.
//! A download whose connection breaks is resumed with `Range: bytes=<offset>-` (a bounded
//! number of times), so a large layer is not fetched again from the start.

use std::fmt;
use std::io::{self, Read, Write};

use strata_oci::OciError;
use strata_oci::layout::VerifyingReader;
use strata_types::Sha256Digest;

use crate::auth::Scope;
use crate::client::{Call, Client, Counting, Response, Target, header};
use crate::error::{RegistryError, Result};
use crate::multipart;

/// A blob being downloaded. Read it to the end (or not), then call [`BlobReader::finish`],
/// which reads whatever is left and fails unless size and digest match: data read before
/// `finish` succeeds is unverified.
pub struct BlobReader {
    inner: VerifyingReader<ResumingBody>,
    repo: String,
    digest: Sha256Digest,
}

impl fmt::Debug for BlobReader {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("BlobReader").field("repo", &self.repo).field("digest", &self.digest).finish()
    }
}

impl Read for BlobReader {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        self.inner.read(buf)
    }
}

impl BlobReader {
    /// Bytes read so far.
    pub fn bytes_read(&self) -> u64 {
        self.inner.bytes_read()
    }

    /// Drains the rest and verifies size and digest.
    pub fn finish(self) -> Result<()> {
        let what = format!("blob {} from {}", self.digest, self.repo);
        self.inner.finish().map_err(|e| match e {
            OciError::DigestMismatch { expected, found } => RegistryError::DigestMismatch { what, expected, found },
            OciError::SizeMismatch { digest, expected, found } => {
                RegistryError::SizeMismatch { digest, expected, found }
            }
            OciError::TooLong { digest, expected } => RegistryError::BlobTooLong { digest, expected },
            OciError::Io { source, .. } => RegistryError::Io { what, source },
            other => RegistryError::Io { what, source: io::Error::other(other.to_string()) },
        })
    }
}

impl Client {
    /// `HEAD` a blob: its size when the repository has it, `None` when it does not.
    pub fn blob_size(&self, repo: &str, digest: &Sha256Digest) -> Result<Option<u64>> {
        let url = self.url(&format!("{repo}/blobs/{digest}"));
        let resp = self.send(Call::new("HEAD", url.clone(), Some(Scope::pull(repo))))?;
        match resp.status().as_u16() {
            200 => {
                let len = header(&resp, "content-length").and_then(|v| v.trim().parse::<u64>().ok());
                len.map(Some).ok_or_else(|| RegistryError::InvalidResponse {
                    url,
                    reason: "HEAD answer without a Content-Length".into(),
                })
            }
            404 => Ok(None),
            _ => Err(self.status_error("HEAD", &url, resp, Target::Blob { repo, digest })),
        }
    }

    /// Whether the repository has the blob.
    pub fn blob_exists(&self, repo: &str, digest: &Sha256Digest) -> Result<bool> {
        Ok(self.blob_size(repo, digest)?.is_some())
    }

    /// Starts downloading a blob of known size (redirects to storage are followed).
    pub fn get_blob(&self, repo: &str, digest: &Sha256Digest, size: u64) -> Result<BlobReader> {
        let url = self.url(&format!("{repo}/blobs/{digest}"));
        let resp = self.send(Call::new("GET", url.clone(), Some(Scope::pull(repo))))?;
        if resp.status() != 200 {
            return Err(self.status_error("GET", &url, resp, Target::Blob { repo, digest }));
        }
        if let Some(len) = header(&resp, "content-length").and_then(|v| v.trim().parse::<u64>().ok())
            && len != size
        {
            return Err(RegistryError::SizeMismatch { digest: *digest, expected: size, found: len });
        }
        let body = ResumingBody {
            client: self.clone(),
            url,
            repo: repo.to_owned(),
            digest: *digest,
            offset: 0,
            body: self.body_reader(resp),
            resumes_left: self.shared.options.max_attempts.saturating_sub(1),
        };
        Ok(BlobReader { inner: VerifyingReader::new(body, *digest, size), repo: repo.to_owned(), digest: *digest })
    }

    /// Downloads a blob into `out`, verified; returns its size. `out` has received
    /// unverified bytes when this fails.
    pub fn copy_blob(&self, repo: &str, digest: &Sha256Digest, size: u64, out: &mut dyn Write) -> Result<u64> {
        let mut r = self.get_blob(repo, digest, size)?;
        let n = io::copy(&mut r, out)
            .map_err(|source| RegistryError::Io { what: format!("blob {digest} from {repo}"), source })?;
        r.finish()?;
        Ok(n)
    }
}

/// A blob GET's body that, when the connection fails, asks for the rest and goes on.
struct ResumingBody {
    client: Client,
    url: String,
    repo: String,
    digest: Sha256Digest,
    offset: u64,
    body: Counting<ureq::BodyReader<'static>>,
    resumes_left: u32,
}

impl Read for ResumingBody {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        loop {
            match self.body.read(buf) {
                Ok(n) => {
                    self.offset += n as u64;
                    return Ok(n);
                }
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) if self.resumes_left > 0 => {
                    let max = self.client.shared.options.max_attempts.max(1);
                    let attempt = max - self.resumes_left;
                    self.resumes_left -= 1;
                    std::thread::sleep(self.client.backoff(attempt, None));
                    self.resume()
                        .map_err(|r| io::Error::other(format!("{e}; resuming at byte {} failed: {r}", self.offset)))?;
                }
                Err(e) => return Err(e),
            }
        }
    }
}

impl ResumingBody {
    fn resume(&mut self) -> Result<()> {
        let call = Call::new("GET", self.url.clone(), Some(Scope::pull(&self.repo)))
            .header("range", format!("bytes={}-", self.offset));
        let resp = self.client.send(call)?;
        match resp.status().as_u16() {
            206 => {
                let start = header(&resp, "content-range")
                    .and_then(|v| multipart::content_range(&v).ok())
                    .and_then(|(r, _)| r)
                    .map(|r| r.start);
                if start != Some(self.offset) {
                    return Err(RegistryError::InvalidResponse {
                        url: self.url.clone(),
                        reason: format!(
                            "asked for bytes from {}, got Content-Range starting at {start:?}",
                            self.offset
                        ),
                    });
                }
                self.body = self.client.body_reader(resp);
            }
            200 => self.skip_whole(resp)?,
            _ => {
                let target = Target::Blob { repo: &self.repo, digest: &self.digest };
                return Err(self.client.status_error("GET", &self.url, resp, target));
            }
        }
        Ok(())
    }

    /// The server ignored the Range: read past what we already have.
    fn skip_whole(&mut self, resp: Response) -> Result<()> {
        let mut body = self.client.body_reader(resp);
        let skipped = io::copy(&mut (&mut body).take(self.offset), &mut io::sink())
            .map_err(|source| RegistryError::Io { what: format!("blob {} from {}", self.digest, self.repo), source })?;
        if skipped != self.offset {
            return Err(RegistryError::SizeMismatch { digest: self.digest, expected: self.offset, found: skipped });
        }
        self.body = body;
        Ok(())
    }
}
