//! OCI image layouts (`oci-layout`, `index.json`, `blobs/sha256/...`).
//!
//! Blobs are written through [`BlobWriter`], which hashes while it writes into a temporary
//! file and only moves the blob to its final name once the digest is known (or verified),
//! so a layout never holds a blob under a wrong name. Reads go through [`VerifyingReader`].
//!
//! A layout may come from anywhere, so every read is bounded by the limits below, never by
//! what the layout declares: documents read into memory have a size limit, a blob is read
//! no further than one byte past its descriptor's size, and a chain of indexes is followed
//! to a bounded depth over a bounded number of entries.

use std::fs::{self, File};
use std::io::{self, Read, Write};
use std::path::{Path, PathBuf};

use strata_types::{Sha256Digest, Sha256Hasher};

use crate::media::{IMAGE_INDEX, IMAGE_MANIFEST};
use crate::{Descriptor, ImageIndex, ImageManifest, OciError};

const REF_NAME: &str = "org.opencontainers.image.ref.name";

/// Largest manifest or index blob read (the limit registries apply to manifests, too).
pub const MAX_MANIFEST_SIZE: u64 = 4 << 20;
/// Largest image config blob to read (real ones are a few KiB; long histories add some).
pub const MAX_CONFIG_SIZE: u64 = 16 << 20;
/// Largest `index.json` (it lists every image of the layout, so it may outgrow one index).
pub const MAX_INDEX_JSON_SIZE: u64 = 16 << 20;
/// Largest `oci-layout` marker (it holds one short JSON object).
const MAX_MARKER_SIZE: u64 = 64 << 10;
/// Most image indexes followed from a descriptor to its image manifest. skopeo and friends
/// write one (index.json → index → manifest); nesting deeper than this is not an image.
pub const MAX_INDEX_DEPTH: usize = 8;
/// Most index entries looked at while following one chain of indexes (multi-platform
/// indexes list tens).
pub const MAX_INDEX_MANIFESTS: usize = 4096;

fn io_err(path: &Path) -> impl FnOnce(io::Error) -> OciError + '_ {
    move |source| OciError::Io { path: path.display().to_string(), source }
}

/// Reads a whole file of at most `limit` bytes. One byte more is read to tell a file that
/// is too large (or endless: a link to a device) from one that just fits.
fn read_limited(path: &Path, limit: u64) -> Result<Vec<u8>, OciError> {
    let f = File::open(path).map_err(io_err(path))?;
    let mut v = Vec::new();
    f.take(limit + 1).read_to_end(&mut v).map_err(io_err(path))?;
    if v.len() as u64 > limit {
        return Err(OciError::Invalid(format!("{} is larger than the {limit} bytes allowed", path.display())));
    }
    Ok(v)
}

fn is_index(media_type: &str) -> bool {
    media_type == IMAGE_INDEX || media_type == crate::media::DOCKER_MANIFEST_LIST
}

/// A reference to an image in a layout: `oci:PATH[:TAG]`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LayoutRef {
    pub path: PathBuf,
    pub tag: Option<String>,
}

impl LayoutRef {
    /// Parses `oci:PATH[:TAG]`. A `:` after the last `/` starts the tag.
    pub fn parse(s: &str) -> Result<LayoutRef, OciError> {
        let rest = s
            .strip_prefix("oci:")
            .ok_or_else(|| OciError::Invalid(format!("{s:?} is not of the form oci:PATH[:TAG]")))?;
        let last_slash = rest.rfind('/').map(|i| i + 1).unwrap_or(0);
        let (path, tag) = match rest[last_slash..].find(':') {
            Some(i) => (&rest[..last_slash + i], Some(rest[last_slash + i + 1..].to_owned())),
            None => (rest, None),
        };
        if path.is_empty() {
            return Err(OciError::Invalid(format!("{s:?} names no directory")));
        }
        if tag.as_deref() == Some("") {
            return Err(OciError::Invalid(format!("{s:?} has an empty tag")));
        }
        Ok(LayoutRef { path: PathBuf::from(path), tag })
    }
}

/// An OCI image layout directory.
#[derive(Debug)]
pub struct OciDir {
    root: PathBuf,
}

impl OciDir {
    /// Opens an existing layout (requires `oci-layout` and `index.json`).
    pub fn open(root: impl Into<PathBuf>) -> Result<OciDir, OciError> {
        let root = root.into();
        let marker = root.join("oci-layout");
        let text = read_limited(&marker, MAX_MARKER_SIZE)?;
        let v: serde_json::Value = serde_json::from_slice(&text)
            .map_err(|source| OciError::Json { what: marker.display().to_string(), source })?;
        if v.get("imageLayoutVersion").and_then(|v| v.as_str()) != Some("1.0.0") {
            return Err(OciError::Invalid(format!("{}: unsupported imageLayoutVersion", marker.display())));
        }
        Ok(OciDir { root })
    }

    /// Opens the layout at `root`, creating an empty one when nothing is there.
    pub fn create(root: impl Into<PathBuf>) -> Result<OciDir, OciError> {
        let root = root.into();
        if root.join("oci-layout").exists() {
            return Self::open(root);
        }
        let blobs = root.join("blobs").join("sha256");
        fs::create_dir_all(&blobs).map_err(io_err(&blobs))?;
        let dir = OciDir { root };
        dir.write_atomic("oci-layout", br#"{"imageLayoutVersion":"1.0.0"}"#)?;
        let empty = ImageIndex {
            schema_version: 2,
            media_type: Some(IMAGE_INDEX.into()),
            manifests: vec![],
            annotations: Default::default(),
            extra: Default::default(),
        };
        dir.write_index(&empty)?;
        Ok(dir)
    }

    pub fn path(&self) -> &Path {
        &self.root
    }

    pub fn blob_path(&self, digest: &Sha256Digest) -> PathBuf {
        self.root.join("blobs").join("sha256").join(digest.to_hex())
    }

    pub fn has_blob(&self, digest: &Sha256Digest) -> bool {
        self.blob_path(digest).is_file()
    }

    pub fn index(&self) -> Result<ImageIndex, OciError> {
        let p = self.root.join("index.json");
        let bytes = read_limited(&p, MAX_INDEX_JSON_SIZE)?;
        serde_json::from_slice(&bytes).map_err(|source| OciError::Json { what: p.display().to_string(), source })
    }

    fn write_index(&self, index: &ImageIndex) -> Result<(), OciError> {
        let bytes = serde_json::to_vec(index).map_err(|source| OciError::Json { what: "index.json".into(), source })?;
        self.write_atomic("index.json", &bytes)
    }

    fn write_atomic(&self, name: &str, bytes: &[u8]) -> Result<(), OciError> {
        let tmp = self.root.join(format!(".{name}.tmp"));
        let dst = self.root.join(name);
        let mut f = File::create(&tmp).map_err(io_err(&tmp))?;
        f.write_all(bytes).and_then(|_| f.sync_all()).map_err(io_err(&tmp))?;
        fs::rename(&tmp, &dst).map_err(io_err(&dst))
    }

    /// Finds the manifest descriptor for `tag`; without a tag, the layout must hold exactly one.
    pub fn resolve(&self, tag: Option<&str>) -> Result<Descriptor, OciError> {
        let index = self.index()?;
        let layout = self.root.display().to_string();
        match tag {
            Some(tag) => index
                .manifests
                .into_iter()
                .find(|d| d.annotations.get(REF_NAME).map(String::as_str) == Some(tag))
                .ok_or(OciError::NoSuchTag { layout, tag: tag.to_owned() }),
            None => {
                let n = index.manifests.len();
                let mut it = index.manifests.into_iter();
                match (it.next(), n) {
                    (Some(d), 1) => Ok(d),
                    (_, 0) => Err(OciError::Invalid(format!("image layout {layout} holds no image"))),
                    _ => Err(OciError::Invalid(format!(
                        "image layout {layout} holds {n} images: name one with oci:PATH:TAG"
                    ))),
                }
            }
        }
    }

    /// Reads a manifest blob; an index (as skopeo may write) is followed to its linux/amd64
    /// (or only) manifest, through at most [`MAX_INDEX_DEPTH`] indexes listing at most
    /// [`MAX_INDEX_MANIFESTS`] entries in all. Returns the manifest's descriptor and the
    /// parsed manifest.
    pub fn read_manifest(&self, desc: &Descriptor) -> Result<(Descriptor, ImageManifest), OciError> {
        follow_indexes(desc, |d| self.read_blob_bytes(d, MAX_MANIFEST_SIZE))
    }

    /// Reads a whole small blob (manifest, config) into memory, verifying size and digest.
    pub fn read_blob_bytes(&self, desc: &Descriptor, max: u64) -> Result<Vec<u8>, OciError> {
        if desc.size > max {
            return Err(OciError::Invalid(format!(
                "blob {} is {} bytes, more than the {max} allowed",
                desc.digest, desc.size
            )));
        }
        let mut r = self.open_blob(desc)?;
        let mut v = Vec::with_capacity(desc.size as usize);
        r.read_to_end(&mut v).map_err(io_err(&self.blob_path(&desc.digest)))?;
        r.finish()?;
        Ok(v)
    }

    /// Opens a blob for streaming; call [`VerifyingReader::finish`] after reading to the end.
    pub fn open_blob(&self, desc: &Descriptor) -> Result<VerifyingReader<File>, OciError> {
        let p = self.blob_path(&desc.digest);
        let f = File::open(&p).map_err(io_err(&p))?;
        Ok(VerifyingReader::new(f, desc.digest, desc.size))
    }

    /// Starts writing a blob whose digest will be computed.
    pub fn blob_writer(&self) -> Result<BlobWriter, OciError> {
        BlobWriter::new(self.root.join("blobs").join("sha256"))
    }

    /// Writes a JSON document as a blob and returns its descriptor.
    pub fn write_json_blob<T: serde::Serialize>(&self, media_type: &str, value: &T) -> Result<Descriptor, OciError> {
        let bytes = serde_json::to_vec(value).map_err(|source| OciError::Json { what: media_type.into(), source })?;
        let mut w = self.blob_writer()?;
        w.write_all(&bytes).map_err(io_err(self.path()))?;
        let (digest, size) = w.finish(None)?;
        Ok(Descriptor::new(media_type, digest, size))
    }

    /// Points `tag` at `manifest` in index.json (replacing an older entry with that tag).
    pub fn set_tag(&self, tag: &str, manifest: &Descriptor) -> Result<(), OciError> {
        let mut index = self.index()?;
        index.manifests.retain(|d| d.annotations.get(REF_NAME).map(String::as_str) != Some(tag));
        let mut d = manifest.clone();
        d.media_type = if d.media_type.is_empty() { IMAGE_MANIFEST.into() } else { d.media_type };
        d.annotations.insert(REF_NAME.into(), tag.into());
        index.manifests.push(d);
        self.write_index(&index)
    }
}

/// Follows `top` through image indexes to an image manifest, reading blobs with `read`.
/// Bounded in depth and in entries looked at; a digest met twice is a cycle (digests make
/// one impossible among verified blobs, but this does not rely on `read` verifying).
fn follow_indexes(
    top: &Descriptor,
    mut read: impl FnMut(&Descriptor) -> Result<Vec<u8>, OciError>,
) -> Result<(Descriptor, ImageManifest), OciError> {
    let mut chain: Vec<Sha256Digest> = Vec::new();
    let mut entries = 0usize;
    let mut desc = top.clone();
    loop {
        if chain.contains(&desc.digest) {
            return Err(OciError::Invalid(format!(
                "image index {} leads back to {} (a cycle of indexes)",
                chain.last().map_or(top.digest, |d| *d),
                desc.digest
            )));
        }
        if !is_index(&desc.media_type) {
            let bytes = read(&desc)?;
            let m: ImageManifest = serde_json::from_slice(&bytes)
                .map_err(|source| OciError::Json { what: format!("manifest {}", desc.digest), source })?;
            return Ok((desc, m));
        }
        // Refused before the next index is even read.
        if chain.len() == MAX_INDEX_DEPTH {
            return Err(OciError::Invalid(format!(
                "image index {} is nested more than {MAX_INDEX_DEPTH} deep (at {})",
                top.digest, desc.digest
            )));
        }
        let bytes = read(&desc)?;
        let index: ImageIndex = serde_json::from_slice(&bytes)
            .map_err(|source| OciError::Json { what: format!("index {}", desc.digest), source })?;
        entries += index.manifests.len();
        if entries > MAX_INDEX_MANIFESTS {
            return Err(OciError::Invalid(format!(
                "image index {} lists more than {MAX_INDEX_MANIFESTS} manifests (counted through {} nested indexes)",
                top.digest,
                chain.len() + 1
            )));
        }
        let pick = pick_platform(&index)
            .ok_or_else(|| OciError::Invalid(format!("index {} has no linux/amd64 manifest", desc.digest)))?;
        chain.push(desc.digest);
        desc = pick;
    }
}

/// Picks linux/amd64 from an index (or its only entry when platforms are not given).
pub fn pick_platform(index: &ImageIndex) -> Option<Descriptor> {
    let amd64 = index
        .manifests
        .iter()
        .find(|d| d.platform.as_ref().is_some_and(|p| p.os == "linux" && p.architecture == "amd64"));
    amd64.cloned().or_else(|| {
        (index.manifests.len() == 1 && index.manifests[0].platform.is_none()).then(|| index.manifests[0].clone())
    })
}

/// Writes a blob to a temporary file while hashing; [`BlobWriter::finish`] renames it to
/// `blobs/sha256/<digest>` after checking the expected digest, if one was given.
#[derive(Debug)]
pub struct BlobWriter {
    dir: PathBuf,
    tmp: tempfile_lite::TempPath,
    file: io::BufWriter<File>,
    hasher: Sha256Hasher,
}

impl BlobWriter {
    fn new(dir: PathBuf) -> Result<Self, OciError> {
        let tmp = tempfile_lite::TempPath::new(&dir).map_err(io_err(&dir))?;
        let file = File::options().write(true).create_new(true).open(tmp.path()).map_err(io_err(tmp.path()))?;
        Ok(BlobWriter { dir, tmp, file: io::BufWriter::with_capacity(1 << 20, file), hasher: Sha256Hasher::new() })
    }

    /// Completes the blob: flush, sync, verify against `expected`, rename into place.
    pub fn finish(mut self, expected: Option<&Sha256Digest>) -> Result<(Sha256Digest, u64), OciError> {
        self.file.flush().map_err(io_err(self.tmp.path()))?;
        self.file.get_ref().sync_all().map_err(io_err(self.tmp.path()))?;
        let size = self.hasher.len();
        let digest = self.hasher.finalize();
        if let Some(exp) = expected
            && *exp != digest
        {
            return Err(OciError::DigestMismatch { expected: *exp, found: digest });
        }
        let dst = self.dir.join(digest.to_hex());
        fs::rename(self.tmp.path(), &dst).map_err(io_err(&dst))?;
        self.tmp.disarm();
        Ok((digest, size))
    }
}

impl Write for BlobWriter {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let n = self.file.write(buf)?;
        self.hasher.update(&buf[..n]);
        Ok(n)
    }
    fn flush(&mut self) -> io::Result<()> {
        self.file.flush()
    }
}

/// Reads a blob while hashing it; [`VerifyingReader::finish`] checks size and digest.
#[derive(Debug)]
pub struct VerifyingReader<R> {
    inner: R,
    hasher: Sha256Hasher,
    expected: Sha256Digest,
    expected_size: u64,
}

impl<R: Read> VerifyingReader<R> {
    pub fn new(inner: R, expected: Sha256Digest, expected_size: u64) -> Self {
        VerifyingReader { inner, hasher: Sha256Hasher::new(), expected, expected_size }
    }

    /// Bytes read so far.
    pub fn bytes_read(&self) -> u64 {
        self.hasher.len()
    }

    /// Drains what is left and verifies. Call after the consumer is done.
    pub fn finish(mut self) -> Result<(), OciError> {
        io::copy(&mut self, &mut io::sink())
            .map_err(|source| OciError::Io { path: format!("blob {}", self.expected), source })?;
        let found_size = self.hasher.len();
        // `read` stops one byte past the declared size: all that says is "longer".
        if found_size > self.expected_size {
            return Err(OciError::TooLong { digest: self.expected, expected: self.expected_size });
        }
        if found_size != self.expected_size {
            return Err(OciError::SizeMismatch {
                digest: self.expected,
                expected: self.expected_size,
                found: found_size,
            });
        }
        let found = self.hasher.finalize();
        if found != self.expected {
            return Err(OciError::DigestMismatch { expected: self.expected, found });
        }
        Ok(())
    }
}

impl<R: Read> Read for VerifyingReader<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        // Never read past the declared size: a blob that is longer is as wrong as one
        // with a different digest, and this keeps a hostile source from streaming forever.
        let left = (self.expected_size + 1).saturating_sub(self.hasher.len());
        let cap = buf.len().min(left.min(usize::MAX as u64) as usize);
        let n = self.inner.read(&mut buf[..cap])?;
        self.hasher.update(&buf[..n]);
        Ok(n)
    }
}

mod tempfile_lite {
    //! A temporary path in a directory that is removed on drop unless disarmed.
    use std::path::{Path, PathBuf};
    use std::sync::atomic::{AtomicU64, Ordering};

    static COUNTER: AtomicU64 = AtomicU64::new(0);

    #[derive(Debug)]
    pub struct TempPath(Option<PathBuf>);

    impl TempPath {
        pub fn new(dir: &Path) -> std::io::Result<Self> {
            std::fs::create_dir_all(dir)?;
            let n = COUNTER.fetch_add(1, Ordering::Relaxed);
            let nanos = std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map(|d| d.subsec_nanos())
                .unwrap_or(0);
            Ok(TempPath(Some(dir.join(format!(".tmp-{}-{n}-{nanos}", std::process::id())))))
        }
        pub fn path(&self) -> &Path {
            self.0.as_deref().expect("temp path used after disarm")
        }
        pub fn disarm(&mut self) {
            self.0 = None;
        }
    }

    impl Drop for TempPath {
        fn drop(&mut self) {
            if let Some(p) = &self.0 {
                let _ = std::fs::remove_file(p);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_layout_refs() {
        assert_eq!(LayoutRef::parse("oci:/a/b:v1").unwrap(), LayoutRef { path: "/a/b".into(), tag: Some("v1".into()) });
        assert_eq!(LayoutRef::parse("oci:/a:x/b").unwrap(), LayoutRef { path: "/a:x/b".into(), tag: None });
        assert!(LayoutRef::parse("docker://x").is_err());
        assert!(LayoutRef::parse("oci:/a:").is_err());
    }

    #[test]
    fn cycles_of_indexes_are_found() {
        // Two indexes pointing at each other (only a reader that does not verify digests
        // can serve them) and one pointing at itself.
        let (a, b) = (Sha256Digest::of(b"a"), Sha256Digest::of(b"b"));
        let index_to = |d: Sha256Digest| {
            let index = ImageIndex {
                schema_version: 2,
                media_type: Some(IMAGE_INDEX.into()),
                manifests: vec![Descriptor::new(IMAGE_INDEX, d, 1)],
                annotations: Default::default(),
                extra: Default::default(),
            };
            serde_json::to_vec(&index).unwrap()
        };
        let mut reads = 0;
        let e = follow_indexes(&Descriptor::new(IMAGE_INDEX, a, 1), |d| {
            reads += 1;
            Ok(index_to(if d.digest == a { b } else { a }))
        })
        .unwrap_err()
        .to_string();
        assert!(e.contains(&format!("image index {b} leads back to {a}")), "{e}");
        assert_eq!(reads, 2);
        let e = follow_indexes(&Descriptor::new(IMAGE_INDEX, a, 1), |_| Ok(index_to(a))).unwrap_err().to_string();
        assert!(e.contains(&format!("image index {a} leads back to {a}")), "{e}");
    }

    #[test]
    fn blobs_are_verified_on_write_and_read() {
        let d = std::env::temp_dir().join(format!("strata-oci-test-{}", std::process::id()));
        let _ = fs::remove_dir_all(&d);
        let dir = OciDir::create(&d).unwrap();
        let mut w = dir.blob_writer().unwrap();
        w.write_all(b"hello").unwrap();
        let (digest, size) = w.finish(None).unwrap();
        assert_eq!(digest, Sha256Digest::of(b"hello"));
        let desc = Descriptor::new("x", digest, size);
        assert_eq!(dir.read_blob_bytes(&desc, 100).unwrap(), b"hello");
        // A wrong expected digest leaves nothing behind.
        let mut w = dir.blob_writer().unwrap();
        w.write_all(b"other").unwrap();
        assert!(matches!(w.finish(Some(&digest)), Err(OciError::DigestMismatch { .. })));
        assert_eq!(fs::read_dir(d.join("blobs/sha256")).unwrap().count(), 1);
        // Corrupt the blob on disk: reading reports the mismatch.
        fs::write(dir.blob_path(&digest), b"hellO").unwrap();
        assert!(matches!(dir.read_blob_bytes(&desc, 100), Err(OciError::DigestMismatch { .. })));
        fs::write(dir.blob_path(&digest), b"hello!").unwrap();
        assert!(matches!(dir.read_blob_bytes(&desc, 100), Err(OciError::TooLong { expected: 5, .. })));
        fs::write(dir.blob_path(&digest), b"hell").unwrap();
        assert!(matches!(dir.read_blob_bytes(&desc, 100), Err(OciError::SizeMismatch { found: 4, .. })));
        let _ = fs::remove_dir_all(&d);
    }
}
