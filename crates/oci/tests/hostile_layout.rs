//! Hostile image layouts: nested indexes, oversized documents and blobs longer than their
//! descriptors end in a clear error, with bounded reads.

use std::fs;
use std::path::{Path, PathBuf};

use strata_oci::layout::{MAX_INDEX_DEPTH, MAX_INDEX_MANIFESTS, OciDir};
use strata_oci::media::{IMAGE_CONFIG, IMAGE_INDEX, IMAGE_MANIFEST};
use strata_oci::{Descriptor, ImageConfig, ImageIndex, ImageManifest, OciError, Platform};
use strata_types::Sha256Digest;

/// A fresh directory under the system's temporary directory, removed on drop.
struct Scratch(PathBuf);

impl Scratch {
    fn new(name: &str) -> Scratch {
        let p = std::env::temp_dir().join(format!("strata-oci-hostile-{}-{name}", std::process::id()));
        let _ = fs::remove_dir_all(&p);
        Scratch(p)
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = fs::remove_dir_all(&self.0);
    }
}

fn index_of(manifests: Vec<Descriptor>) -> ImageIndex {
    ImageIndex {
        schema_version: 2,
        media_type: Some(IMAGE_INDEX.into()),
        manifests,
        annotations: Default::default(),
        extra: Default::default(),
    }
}

/// A layout with one image manifest (config, no layers); its descriptor.
fn with_image(root: &Path) -> (OciDir, Descriptor) {
    let dir = OciDir::create(root).unwrap();
    let config = dir.write_json_blob(IMAGE_CONFIG, &ImageConfig::new(Vec::new())).unwrap();
    let manifest = ImageManifest {
        schema_version: 2,
        media_type: Some(IMAGE_MANIFEST.into()),
        config,
        layers: Vec::new(),
        annotations: Default::default(),
        extra: Default::default(),
    };
    let desc = dir.write_json_blob(IMAGE_MANIFEST, &manifest).unwrap();
    (dir, desc)
}

/// Wraps `inner` in `levels` indexes, each pointing at the one below.
fn nest(dir: &OciDir, mut inner: Descriptor, levels: usize) -> Descriptor {
    for _ in 0..levels {
        inner = dir.write_json_blob(IMAGE_INDEX, &index_of(vec![inner])).unwrap();
    }
    inner
}

fn message(r: Result<impl std::fmt::Debug, OciError>) -> String {
    let e = r.expect_err("an error");
    let msg = e.to_string();
    assert!(!msg.contains('\n'), "one line: {msg}");
    msg
}

#[test]
fn nested_indexes_are_followed_to_a_bounded_depth() {
    let s = Scratch::new("nested");
    let (dir, image) = with_image(&s.0);
    // As deep as allowed: found.
    let top = nest(&dir, image.clone(), MAX_INDEX_DEPTH);
    let (found, _) = dir.read_manifest(&top).unwrap();
    assert_eq!(found.digest, image.digest);
    // One level more: refused, naming the limit and where the chain started.
    let top = nest(&dir, image, MAX_INDEX_DEPTH + 1);
    let e = message(dir.read_manifest(&top));
    assert!(e.contains("nested more than 8 deep") && e.contains(&top.digest.to_string()), "{e}");
}

#[test]
fn indexes_listing_too_many_manifests_are_refused() {
    let s = Scratch::new("wide");
    let (dir, image) = with_image(&s.0);
    // Many entries for other platforms, the one wanted last.
    let other = |i: usize| {
        let mut d = Descriptor::new(IMAGE_MANIFEST, Sha256Digest::of(&i.to_le_bytes()), 100);
        d.platform = Some(Platform {
            architecture: format!("arch{i}"),
            os: "linux".into(),
            variant: None,
            extra: Default::default(),
        });
        d
    };
    let mut amd64 = image.clone();
    amd64.platform =
        Some(Platform { architecture: "amd64".into(), os: "linux".into(), variant: None, extra: Default::default() });
    let mut entries: Vec<Descriptor> = (0..MAX_INDEX_MANIFESTS).map(other).collect();
    entries.push(amd64.clone());
    let wide = dir.write_json_blob(IMAGE_INDEX, &index_of(entries)).unwrap();
    let e = message(dir.read_manifest(&wide));
    assert!(e.contains("more than 4096 manifests"), "{e}");
    // The count is over the whole chain: two indexes of 2100 entries each are too many too.
    let half: Vec<Descriptor> = (0..2099).map(other).collect();
    let inner = dir.write_json_blob(IMAGE_INDEX, &index_of([half.clone(), vec![amd64.clone()]].concat())).unwrap();
    let mut inner_entry = inner.clone();
    inner_entry.platform = amd64.platform.clone();
    let outer = dir.write_json_blob(IMAGE_INDEX, &index_of([half, vec![inner_entry]].concat())).unwrap();
    let e = message(dir.read_manifest(&outer));
    assert!(e.contains("more than 4096 manifests"), "{e}");
    // Within the limit: found.
    let fits = dir.write_json_blob(IMAGE_INDEX, &index_of(vec![other(1), amd64])).unwrap();
    assert_eq!(dir.read_manifest(&fits).unwrap().0.digest, image.digest);
}

#[test]
fn a_cycle_cannot_pass_digest_verification() {
    // An index naming itself needs a blob whose name is not its digest: refused as such
    // (cycle detection itself is a unit test in layout.rs, with a reader that does not
    // verify).
    let s = Scratch::new("cycle");
    let (dir, _) = with_image(&s.0);
    let name = Sha256Digest::of(b"a name");
    let doc = serde_json::to_vec(&index_of(vec![Descriptor::new(IMAGE_INDEX, name, 1000)])).unwrap();
    let mut padded = doc.clone();
    padded.resize(1000, b' ');
    fs::write(dir.blob_path(&name), &padded).unwrap();
    let e = dir.read_manifest(&Descriptor::new(IMAGE_INDEX, name, 1000)).unwrap_err();
    assert!(matches!(e, OciError::DigestMismatch { .. }), "{e:?}");
}

#[test]
fn oversized_layout_documents_are_refused() {
    let s = Scratch::new("large");
    let (dir, image) = with_image(&s.0);
    dir.set_tag("v1", &image).unwrap();
    // index.json made huge with whitespace (valid JSON): refused before it is parsed.
    let index = fs::read(s.0.join("index.json")).unwrap();
    let mut huge = vec![b' '; 17 << 20];
    huge.extend_from_slice(&index);
    fs::write(s.0.join("index.json"), &huge).unwrap();
    let e = message(dir.index());
    assert!(e.contains("index.json") && e.contains("larger than the 16777216 bytes allowed"), "{e}");
    fs::write(s.0.join("index.json"), &index).unwrap();
    assert!(dir.resolve(Some("v1")).is_ok());
    // The same for the oci-layout marker.
    let mut marker = vec![b' '; 1 << 20];
    marker.extend_from_slice(br#"{"imageLayoutVersion":"1.0.0"}"#);
    fs::write(s.0.join("oci-layout"), &marker).unwrap();
    let e = message(OciDir::open(&s.0));
    assert!(e.contains("oci-layout") && e.contains("larger than the 65536 bytes allowed"), "{e}");
}

#[test]
fn blobs_are_read_no_further_than_their_descriptors_say() {
    let s = Scratch::new("blobs");
    let (dir, image) = with_image(&s.0);
    // A manifest descriptor claiming a terabyte: refused before the blob is opened.
    let mut claim = image.clone();
    claim.size = 1 << 40;
    let e = message(dir.read_manifest(&claim));
    assert!(e.contains("more than the 4194304 allowed"), "{e}");
    // A blob without end (a link to /dev/zero) whose descriptor says 100 bytes.
    let endless = Sha256Digest::of(b"endless");
    std::os::unix::fs::symlink("/dev/zero", dir.blob_path(&endless)).unwrap();
    let desc = Descriptor::new(IMAGE_CONFIG, endless, 100);
    let e = message(dir.read_blob_bytes(&desc, strata_oci::layout::MAX_CONFIG_SIZE));
    assert!(e.contains("longer than the 100 bytes its descriptor says"), "{e}");
    let e = message(dir.read_manifest(&Descriptor::new(IMAGE_MANIFEST, endless, 100)));
    assert!(e.contains("longer than the 100 bytes its descriptor says"), "{e}");
    // index.json as a link to /dev/zero: bounded, refused.
    fs::remove_file(s.0.join("index.json")).unwrap();
    std::os::unix::fs::symlink("/dev/zero", s.0.join("index.json")).unwrap();
    let e = message(dir.index());
    assert!(e.contains("larger than the 16777216 bytes allowed"), "{e}");
}
