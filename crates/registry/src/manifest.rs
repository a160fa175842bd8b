//! Manifests: GET (OCI and Docker v2 manifests and indexes), digest verification, index
//! resolution to linux/amd64, and PUT.

use std::io::Read;

use strata_oci::media::{DOCKER_MANIFEST, DOCKER_MANIFEST_LIST, IMAGE_INDEX, IMAGE_MANIFEST};
use strata_oci::{ImageIndex, ImageManifest};
use strata_types::Sha256Digest;

use crate::auth::Scope;
use crate::client::{Call, CallBody, Client, Target, header};
use crate::error::{RegistryError, Result};
use crate::reference::{ManifestRef, Reference};

/// Manifests larger than this are refused (they are small JSON documents).
pub const MAX_MANIFEST_SIZE: u64 = 4 << 20;

const ACCEPT: &str = "application/vnd.oci.image.manifest.v1+json, application/vnd.oci.image.index.v1+json, \
application/vnd.docker.distribution.manifest.v2+json, application/vnd.docker.distribution.manifest.list.v2+json";

/// A manifest or index as the registry sent it, with its media type and verified digest.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Manifest {
    pub bytes: Vec<u8>,
    pub media_type: String,
    pub digest: Sha256Digest,
}

impl Manifest {
    pub fn is_index(&self) -> bool {
        self.media_type == IMAGE_INDEX || self.media_type == DOCKER_MANIFEST_LIST
    }
}

/// An image manifest found from a reference, following an index when there is one.
#[derive(Clone, Debug)]
pub struct ResolvedImage {
    /// The image manifest (never an index).
    pub manifest: Manifest,
    pub parsed: ImageManifest,
    /// The index the reference pointed at, when it pointed at one.
    pub index: Option<Manifest>,
}

impl Client {
    /// Fetches a manifest or index. By digest, the bytes must hash to it; by tag, the
    /// computed digest is returned and must equal `Docker-Content-Digest` when present.
    pub fn get_manifest(&self, repo: &str, reference: &ManifestRef) -> Result<Manifest> {
        let url = self.url(&format!("{repo}/manifests/{reference}"));
        let resp = self.send(Call::new("GET", url.clone(), Some(Scope::pull(repo))).header("accept", ACCEPT))?;
        if resp.status() != 200 {
            return Err(self.status_error("GET", &url, resp, Target::Manifest { repo, reference }));
        }
        let what = format!("manifest {repo}:{reference}");
        let too_large =
            || RegistryError::ManifestTooLarge { reference: reference.to_string(), limit: MAX_MANIFEST_SIZE };
        if header(&resp, "content-length").and_then(|v| v.parse::<u64>().ok()).is_some_and(|n| n > MAX_MANIFEST_SIZE) {
            return Err(too_large());
        }
        let content_type = header(&resp, "content-type");
        let header_digest = header(&resp, "docker-content-digest");
        let mut bytes = Vec::new();
        self.body_reader(resp)
            .take(MAX_MANIFEST_SIZE + 1)
            .read_to_end(&mut bytes)
            .map_err(|source| RegistryError::Io { what: what.clone(), source })?;
        if bytes.len() as u64 > MAX_MANIFEST_SIZE {
            return Err(too_large());
        }
        let digest = Sha256Digest::of(&bytes);
        if let ManifestRef::Digest(expected) = reference
            && *expected != digest
        {
            return Err(RegistryError::DigestMismatch { what, expected: *expected, found: digest });
        }
        if let Some(h) = header_digest
            && let Ok(claimed) = h.trim().parse::<Sha256Digest>()
            && claimed != digest
        {
            return Err(RegistryError::DigestMismatch {
                what: format!("{what} (Docker-Content-Digest)"),
                expected: claimed,
                found: digest,
            });
        }
        let media_type = media_type(content_type.as_deref(), &bytes).map_err(|media_type| {
            RegistryError::UnsupportedManifest { reference: reference.to_string(), media_type }
        })?;
        Ok(Manifest { bytes, media_type, digest })
    }

    /// Resolves a reference to its linux/amd64 image manifest (through an index if needed).
    pub fn resolve(&self, reference: &Reference) -> Result<ResolvedImage> {
        let repo = reference.repository();
        let top = self.get_manifest(repo, &reference.manifest_ref())?;
        if !top.is_index() {
            let parsed = parse_manifest(&top, reference)?;
            return Ok(ResolvedImage { manifest: top, parsed, index: None });
        }
        let index: ImageIndex = serde_json::from_slice(&top.bytes).map_err(|e| RegistryError::InvalidResponse {
            url: reference.to_string(),
            reason: format!("image index is not valid JSON: {e}"),
        })?;
        let pick = strata_oci::layout::pick_platform(&index)
            .ok_or_else(|| RegistryError::NoMatchingPlatform { reference: reference.to_string() })?;
        // The index says how large the manifest is: no need to read 4 MiB to learn it is too large.
        if pick.size > MAX_MANIFEST_SIZE {
            return Err(RegistryError::ManifestTooLarge {
                reference: format!("{} (inside index {reference})", pick.digest),
                limit: MAX_MANIFEST_SIZE,
            });
        }
        let manifest = self.get_manifest(repo, &ManifestRef::Digest(pick.digest))?;
        if manifest.bytes.len() as u64 != pick.size {
            return Err(RegistryError::InvalidResponse {
                url: reference.to_string(),
                reason: format!(
                    "manifest {} is {} bytes, the index says {}",
                    pick.digest,
                    manifest.bytes.len(),
                    pick.size
                ),
            });
        }
        if manifest.is_index() {
            return Err(RegistryError::UnsupportedManifest {
                reference: format!("{} (inside index {reference})", pick.digest),
                media_type: manifest.media_type,
            });
        }
        let parsed = parse_manifest(&manifest, reference)?;
        Ok(ResolvedImage { manifest, parsed, index: Some(top) })
    }

    /// Uploads a manifest under a tag (or under its digest, which must then match the bytes).
    /// Returns the digest of the bytes.
    pub fn put_manifest(
        &self,
        repo: &str,
        reference: &ManifestRef,
        media_type: &str,
        bytes: &[u8],
    ) -> Result<Sha256Digest> {
        let digest = Sha256Digest::of(bytes);
        if let ManifestRef::Digest(d) = reference
            && *d != digest
        {
            return Err(RegistryError::DigestMismatch {
                what: format!("manifest to push as {repo}@{d}"),
                expected: *d,
                found: digest,
            });
        }
        if bytes.len() as u64 > MAX_MANIFEST_SIZE {
            return Err(RegistryError::ManifestTooLarge { reference: reference.to_string(), limit: MAX_MANIFEST_SIZE });
        }
        let url = self.url(&format!("{repo}/manifests/{reference}"));
        let call = Call::new("PUT", url.clone(), Some(Scope::push(repo)))
            .header("content-type", media_type)
            .body(CallBody::Bytes(bytes));
        let resp = self.send(call)?;
        if resp.status() != 201 && resp.status() != 200 {
            return Err(self.status_error("PUT", &url, resp, Target::Manifest { repo, reference }));
        }
        if let Some(h) = header(&resp, "docker-content-digest")
            && let Ok(claimed) = h.trim().parse::<Sha256Digest>()
            && claimed != digest
        {
            return Err(RegistryError::DigestMismatch {
                what: format!("manifest pushed to {repo}:{reference}"),
                expected: digest,
                found: claimed,
            });
        }
        Ok(digest)
    }
}

fn parse_manifest(m: &Manifest, reference: &Reference) -> Result<ImageManifest> {
    serde_json::from_slice(&m.bytes).map_err(|e| RegistryError::InvalidResponse {
        url: reference.to_string(),
        reason: format!("manifest {} is not a valid image manifest: {e}", m.digest),
    })
}

/// The manifest's media type: the Content-Type when it names a supported one, else the
/// document's own `mediaType`, else its shape (OCI documents may omit `mediaType`).
/// Errors carry the unsupported type (Docker schema 1 among them).
fn media_type(content_type: Option<&str>, bytes: &[u8]) -> std::result::Result<String, String> {
    const SUPPORTED: [&str; 4] = [IMAGE_MANIFEST, IMAGE_INDEX, DOCKER_MANIFEST, DOCKER_MANIFEST_LIST];
    let ct = content_type.map(|c| c.split(';').next().unwrap_or("").trim().to_ascii_lowercase());
    if let Some(ct) = &ct
        && SUPPORTED.contains(&ct.as_str())
    {
        return Ok(ct.clone());
    }
    #[derive(serde::Deserialize)]
    #[serde(rename_all = "camelCase")]
    struct Shape {
        #[serde(default)]
        schema_version: Option<u32>,
        #[serde(default)]
        media_type: Option<String>,
        #[serde(default)]
        manifests: Option<serde_json::Value>,
        #[serde(default)]
        layers: Option<serde_json::Value>,
    }
    let unknown = || ct.clone().unwrap_or_else(|| "(none)".into());
    let shape: Shape = serde_json::from_slice(bytes).map_err(|_| unknown())?;
    if shape.schema_version == Some(1) {
        return Err("application/vnd.docker.distribution.manifest.v1+json (Docker schema 1)".into());
    }
    match (shape.media_type, shape.manifests, shape.layers) {
        (Some(mt), _, _) if SUPPORTED.contains(&mt.as_str()) => Ok(mt),
        (Some(mt), _, _) => Err(mt),
        (None, Some(_), None) => Ok(IMAGE_INDEX.into()),
        (None, None, Some(_)) => Ok(IMAGE_MANIFEST.into()),
        _ => Err(unknown()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn media_type_comes_from_header_then_document() {
        assert_eq!(media_type(Some("application/vnd.oci.image.index.v1+json; charset=x"), b"{}").unwrap(), IMAGE_INDEX);
        let doc = format!(r#"{{"schemaVersion":2,"mediaType":"{DOCKER_MANIFEST}","layers":[]}}"#);
        assert_eq!(media_type(Some("application/json"), doc.as_bytes()).unwrap(), DOCKER_MANIFEST);
        assert_eq!(media_type(None, br#"{"schemaVersion":2,"manifests":[]}"#).unwrap(), IMAGE_INDEX);
        assert_eq!(media_type(None, br#"{"schemaVersion":2,"config":{},"layers":[]}"#).unwrap(), IMAGE_MANIFEST);
        assert!(
            media_type(Some("text/plain"), br#"{"schemaVersion":1,"fsLayers":[]}"#).unwrap_err().contains("schema 1")
        );
        assert_eq!(media_type(Some("text/html"), b"<html>").unwrap_err(), "text/html");
        assert_eq!(media_type(None, br#"{"mediaType":"application/x-other"}"#).unwrap_err(), "application/x-other");
    }
}
