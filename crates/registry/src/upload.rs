//! Pushing blobs: existence check, cross-repository mount, monolithic upload
//! (`POST /v2/<repo>/blobs/uploads/` then one streaming `PUT <location>&digest=...`).
//!
//! A monolithic PUT streams the blob once with a known Content-Length; docker-registry and
//! the big registries accept it, and it costs one round trip less than chunked PATCHes. A
//! failed upload is restarted from a new session (the source is reopened), because the
//! state of a half-written session is unknown.

use std::cell::Cell;
use std::io::{self, Read};
use std::rc::Rc;

use strata_types::Sha256Digest;

use crate::auth::Scope;
use crate::client::{Call, CallBody, Client, Target, header};
use crate::error::{RegistryError, Result};
use crate::url;

/// What [`Client::push_blob`] had to do.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PushOutcome {
    /// The repository already had the blob.
    Exists,
    /// Mounted from another repository of the registry, no bytes sent.
    Mounted,
    Uploaded,
}

enum Started {
    Mounted,
    Session(String),
}

impl Client {
    /// Asks the registry to link `digest` from repository `from` into `repo`: `true` when it
    /// did (201). On `false` (202: it does not have the blob there, or refuses to mount) the
    /// upload session it opened is cancelled.
    pub fn mount_blob(&self, repo: &str, digest: &Sha256Digest, from: &str) -> Result<bool> {
        match self.start_upload(repo, Some((digest, from)))? {
            Started::Mounted => Ok(true),
            Started::Session(location) => {
                // Best effort: an abandoned session only costs the registry a little state.
                let _ = self.send(Call::new("DELETE", location, Some(Scope::push(repo))));
                Ok(false)
            }
        }
    }

    /// Makes sure `repo` has the blob: nothing to do when it exists, a mount when
    /// `mount_from` has it, else an upload of `size` bytes read from `open()` (called again
    /// for each attempt). The registry verifies the digest.
    pub fn push_blob<R: Read>(
        &self,
        repo: &str,
        digest: &Sha256Digest,
        size: u64,
        mount_from: Option<&str>,
        mut open: impl FnMut() -> io::Result<R>,
    ) -> Result<PushOutcome> {
        if self.blob_exists(repo, digest)? {
            return Ok(PushOutcome::Exists);
        }
        let max_attempts = self.shared.options.max_attempts.max(1);
        let mut attempt = 1;
        loop {
            let location = match self.start_upload(repo, mount_from.map(|f| (digest, f)))? {
                Started::Mounted => return Ok(PushOutcome::Mounted),
                Started::Session(l) => l,
            };
            match self.put_blob(repo, digest, size, &location, &mut open) {
                Ok(()) => return Ok(PushOutcome::Uploaded),
                Err(RegistryError::Connection { .. } | RegistryError::ServerError { .. }) if attempt < max_attempts => {
                    std::thread::sleep(self.backoff(attempt, None));
                    attempt += 1;
                }
                Err(e) => return Err(e),
            }
        }
    }

    /// Uploads a small blob held in memory (a config); returns its digest.
    pub fn push_blob_bytes(&self, repo: &str, bytes: &[u8]) -> Result<(Sha256Digest, PushOutcome)> {
        let digest = Sha256Digest::of(bytes);
        let outcome = self.push_blob(repo, &digest, bytes.len() as u64, None, || Ok(bytes))?;
        Ok((digest, outcome))
    }

    fn start_upload(&self, repo: &str, mount: Option<(&Sha256Digest, &str)>) -> Result<Started> {
        let mut post = self.url(&format!("{repo}/blobs/uploads/"));
        let mut scope = Scope::push(repo);
        if let Some((digest, from)) = mount {
            post = url::append_query(&post, "mount", &digest.to_string());
            post = url::append_query(&post, "from", from);
            scope.mount_from = Some(from.to_owned());
        }
        let resp = self.send(Call::new("POST", post.clone(), Some(scope)).body(CallBody::Bytes(b"")))?;
        match resp.status().as_u16() {
            201 if mount.is_some() => Ok(Started::Mounted),
            202 => {
                let location = header(&resp, "location");
                location.as_deref().and_then(|l| url::resolve(&post, l)).map(Started::Session).ok_or_else(|| {
                    RegistryError::InvalidResponse {
                        url: post,
                        reason: format!("upload session with unusable Location {location:?}"),
                    }
                })
            }
            _ => Err(self.status_error("POST", &post, resp, Target::Upload { repo })),
        }
    }

    fn put_blob<R: Read>(
        &self,
        repo: &str,
        digest: &Sha256Digest,
        size: u64,
        location: &str,
        open: &mut impl FnMut() -> io::Result<R>,
    ) -> Result<()> {
        let put = url::append_query(location, "digest", &digest.to_string());
        // Set when the source ends before `size` bytes: that is the caller's error, not the network's.
        let short: Rc<Cell<Option<u64>>> = Rc::new(Cell::new(None));
        let mut opener = || -> io::Result<Box<dyn Read + '_>> {
            let r = open()?;
            Ok(Box::new(ExactLen { inner: r, remaining: size, size, short: Rc::clone(&short) }))
        };
        let call = Call { retry: false, ..Call::new("PUT", put.clone(), Some(Scope::push(repo))) }
            .header("content-type", "application/octet-stream")
            .body(CallBody::Stream { len: size, open: &mut opener });
        let result = self.send(call);
        if let Some(got) = short.get() {
            return Err(RegistryError::Io {
                what: format!("upload of blob {digest}"),
                source: io::Error::new(
                    io::ErrorKind::UnexpectedEof,
                    format!("the source ended after {got} of {size} bytes"),
                ),
            });
        }
        let resp = result?;
        if resp.status() != 201 {
            return Err(self.status_error("PUT", &put, resp, Target::Upload { repo }));
        }
        if let Some(h) = header(&resp, "docker-content-digest")
            && let Ok(claimed) = h.trim().parse::<Sha256Digest>()
            && claimed != *digest
        {
            return Err(RegistryError::DigestMismatch {
                what: format!("blob uploaded to {repo}"),
                expected: *digest,
                found: claimed,
            });
        }
        Ok(())
    }
}

/// Passes exactly `size` bytes through, recording a short source instead of sending less.
struct ExactLen<R> {
    inner: R,
    remaining: u64,
    size: u64,
    short: Rc<Cell<Option<u64>>>,
}

impl<R: Read> Read for ExactLen<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        if self.remaining == 0 {
            return Ok(0);
        }
        let cap = buf.len().min(self.remaining.min(usize::MAX as u64) as usize);
        let n = self.inner.read(&mut buf[..cap])?;
        if n == 0 {
            let got = self.size - self.remaining;
            self.short.set(Some(got));
            return Err(io::Error::new(
                io::ErrorKind::UnexpectedEof,
                format!("upload source ended after {got} of {} bytes", self.size),
            ));
        }
        self.remaining -= n as u64;
        Ok(n)
    }
}
