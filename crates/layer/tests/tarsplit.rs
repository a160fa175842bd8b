//! tar-split: record real tars, regenerate them from extracted files, and check the result
//! against the original bytes (sha256), against a real tar-split written by
//! containers/storage (skopeo 1.18's zstd:chunked of the debootstrap tree a from
//! `scripts/setup-peers.sh`), and
//! against corrupted inputs.

mod common;

use std::fs::File;
use std::io::{self, BufReader, Read};
use std::path::Path;

use common::{TarBuilder, gnu_tar};
use strata_layer::Tee;
use strata_layer::apply::{ApplyOptions, CopyContent, WhiteoutMode, apply};
use strata_layer::parse::{HeaderTracker, TarReader};
use strata_layer::tarsplit::{DiffIdOut, Record, RecordReader, TarSplitError, TarSplitRecorder, regenerate};
use strata_testutil::{Peers, Rootfs};
use strata_types::{RelPath, Sha256Digest};

/// Records `tar` with the reader's tap (no extraction).
fn record(tar: impl Read) -> Vec<u8> {
    let mut reader = TarReader::with_tap(tar, TarSplitRecorder::new(Vec::new()));
    while reader.next_header().unwrap().is_some() {}
    reader.into_tap().finish().unwrap()
}

/// `open` for regenerate: files below `root` by their normalized tar name.
fn opener(root: &Path) -> impl FnMut(&[u8], u64) -> io::Result<Option<(File, u64)>> + '_ {
    move |name, _size| {
        let rel = RelPath::new(name).map_err(io::Error::other)?;
        match File::open(root.join(rel.as_path())) {
            Ok(f) => Ok(Some((f, 0))),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(e),
        }
    }
}

fn regen_digest(records: &[u8], root: &Path, verify: bool) -> Result<(Sha256Digest, u64), TarSplitError> {
    let mut out = DiffIdOut::new();
    regenerate(RecordReader::new(records), opener(root), &mut out, verify)?;
    Ok(out.finish())
}

#[test]
fn gnu_tar_with_pax_long_names_xattrs_and_hardlinks_regenerates_exactly() {
    if !strata_testutil::require_tool("tar") {
        return;
    }
    let src = tempfile::tempdir().unwrap();
    let s = src.path();
    std::fs::create_dir_all(s.join("a").join("b".repeat(120)).join("c".repeat(150))).unwrap();
    std::fs::write(s.join("a").join("b".repeat(120)).join("c".repeat(150)).join("f".repeat(200)), b"deep\n").unwrap();
    std::fs::write(s.join("a/data"), vec![0x5a; 70_001]).unwrap();
    std::fs::hard_link(s.join("a/data"), s.join("a/data-link")).unwrap();
    std::fs::write(s.join("a/empty"), b"").unwrap();
    std::os::unix::fs::symlink("data", s.join("a/sym")).unwrap();
    std::fs::write(s.join("a/<&>\"quoted\" name"), b"html-escaped in JSON").unwrap();
    xattr::set(s.join("a/data"), "user.k", b"v\0binary").unwrap();
    let tar = gnu_tar(s);

    // Record while extracting (the store's import), with the DiffID computed alongside.
    let dst = tempfile::tempdir().unwrap();
    let mut tap = Tee(TarSplitRecorder::new(Vec::new()), DiffIdOut::new());
    apply(
        dst.path(),
        &tar[..],
        &ApplyOptions::new(WhiteoutMode::Overlay),
        &mut CopyContent,
        Some(&mut tap),
        &mut |_| Ok(()),
    )
    .unwrap();
    let Tee(recorder, diffid) = tap;
    let records = recorder.finish().unwrap();
    let (digest, len) = diffid.finish();
    assert_eq!((digest, len), (Sha256Digest::of(&tar), tar.len() as u64));
    assert_eq!(records, record(&tar[..]), "recording while applying = recording while only reading");

    for verify in [true, false] {
        assert_eq!(regen_digest(&records, dst.path(), verify).unwrap(), (digest, len), "verify_crc={verify}");
    }
    // The same bytes come out of a plain Vec sink.
    let mut collected = Collect::default();
    regenerate(RecordReader::new(&records[..]), opener(dst.path()), &mut collected, true).unwrap();
    assert_eq!(collected.0, tar);
    // Segments of tar-split merge padding with the next headers: the tracker still follows.
    let mut tracker = HeaderTracker::default();
    let stats = regenerate(RecordReader::new(&records[..]), opener(dst.path()), &mut tracker, false).unwrap();
    tracker.finish().unwrap();
    assert_eq!(tracker.entries(), stats.entries);
    assert_eq!(tracker.offset(), tar.len() as u64);
}

#[test]
fn changed_or_missing_content_is_detected_and_named() {
    let tar = TarBuilder::new().dir("d").file("d/f", b"original").file("d/g", b"other").finish();
    let records = record(&tar[..]);
    let dst = tempfile::tempdir().unwrap();
    apply(dst.path(), &tar[..], &ApplyOptions::new(WhiteoutMode::Oci), &mut CopyContent, None, &mut |_| Ok(()))
        .unwrap();
    std::fs::write(dst.path().join("d/f"), b"Original").unwrap();
    let err = regen_digest(&records, dst.path(), true).unwrap_err();
    assert!(matches!(&err, TarSplitError::CrcMismatch { name, .. } if name == "d/f"), "{err}");
    // Without verification the stream is produced, and its digest is wrong.
    assert_ne!(regen_digest(&records, dst.path(), false).unwrap().0, Sha256Digest::of(&tar));

    std::fs::write(dst.path().join("d/f"), b"orig").unwrap();
    let err = regen_digest(&records, dst.path(), true).unwrap_err();
    assert!(matches!(&err, TarSplitError::ShortFile { name, size: 8, got: 4 } if name == "d/f"), "{err}");
    let err = regen_digest(&records, dst.path(), false).unwrap_err();
    assert!(matches!(&err, TarSplitError::Read { name, .. } if name == "d/f"), "{err}");

    std::fs::remove_file(dst.path().join("d/g")).unwrap();
    std::fs::write(dst.path().join("d/f"), b"original").unwrap();
    let err = regen_digest(&records, dst.path(), true).unwrap_err();
    assert!(matches!(&err, TarSplitError::MissingFile { name, size: 5 } if name == "d/g"), "{err}");
}

#[test]
fn malformed_records_are_rejected() {
    let tar = TarBuilder::new().file("f", b"x").finish();
    let good = String::from_utf8(record(&tar[..])).unwrap();
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("f"), b"x").unwrap();
    assert!(regen_digest(good.as_bytes(), dir.path(), true).is_ok());
    let bad_type = good.replacen("\"type\":1", "\"type\":7", 1);
    let bad_b64 = good.replacen("\"payload\":\"", "\"payload\":\"*", 1);
    let truncated_json = &good[..good.len() / 2];
    for (what, text) in [("bad type", bad_type.as_str()), ("bad base64", &bad_b64), ("truncated", truncated_json)] {
        let err = regen_digest(text.as_bytes(), dir.path(), true).unwrap_err();
        assert!(matches!(err, TarSplitError::BadRecord { .. }), "{what}: {err}");
    }
    let records: Vec<Record> = RecordReader::new(good.as_bytes()).collect::<Result<_, _>>().unwrap();
    assert!(matches!(&records[1], Record::File { name, size: 1, crc64: Some(_) } if name == b"f"));
}

/// The tar-split skopeo 1.18 (containers/storage) wrote into the zstd:chunked blob of the
/// OCI layout `layout` (tag `t`, one layer), decompressed, and the layer's DiffID.
fn containers_storage_tarsplit(layout: &Path) -> (Vec<u8>, Sha256Digest) {
    let blob = |d: &str| layout.join("blobs/sha256").join(d.trim_start_matches("sha256:"));
    let index: serde_json::Value = serde_json::from_slice(&std::fs::read(layout.join("index.json")).unwrap()).unwrap();
    let mdigest = index["manifests"][0]["digest"].as_str().unwrap();
    let manifest: serde_json::Value = serde_json::from_slice(&std::fs::read(blob(mdigest)).unwrap()).unwrap();
    let layer = &manifest["layers"][0];
    let pos = layer["annotations"]["io.github.containers.zstd-chunked.tarsplit-position"]
        .as_str()
        .expect("skopeo wrote zstd:chunked with a tar-split");
    let nums: Vec<u64> = pos.split(':').map(|n| n.parse().unwrap()).collect();
    let data = std::fs::read(blob(layer["digest"].as_str().unwrap())).unwrap();
    let frame = &data[nums[0] as usize..(nums[0] + nums[1]) as usize];
    let records = zstd::decode_all(frame).unwrap();
    assert_eq!(records.len() as u64, nums[2]);
    let config: serde_json::Value =
        serde_json::from_slice(&std::fs::read(blob(manifest["config"]["digest"].as_str().unwrap())).unwrap()).unwrap();
    (records, config["rootfs"]["diff_ids"][0].as_str().unwrap().parse().unwrap())
}

#[test]
fn recorder_matches_containers_storage_and_its_tarsplit_regenerates_the_diffid() {
    // The tree has files only root may read.
    if !strata_testutil::require_root() {
        return;
    }
    let Some(peers) = Peers::require() else { return };
    let tar_path = peers.tar(Rootfs::A);
    let scratch = tempfile::tempdir_in(strata_testutil::scratch_base()).unwrap();
    let (theirs, diff_id) = containers_storage_tarsplit(&peers.skopeo_zstd_chunked(Rootfs::A, scratch.path()));
    // The tar-split containers/storage wrote describes exactly rootfs-a.tar.
    let tar_file = BufReader::new(File::open(&tar_path).unwrap());
    let ours = record(tar_file);
    let theirs_lines: Vec<&[u8]> = theirs.split(|&b| b == b'\n').collect();
    let ours_lines: Vec<&[u8]> = ours.split(|&b| b == b'\n').collect();
    assert_eq!(ours_lines.len(), theirs_lines.len(), "record count");
    for (i, (a, b)) in ours_lines.iter().zip(&theirs_lines).enumerate() {
        assert!(
            a == b,
            "record {i} differs:\n ours   {}\n theirs {}",
            String::from_utf8_lossy(a),
            String::from_utf8_lossy(b)
        );
    }
    // Their records + the files of the tree the tar was made from = the DiffID.
    let (digest, _) = regen_digest(&theirs, &peers.rootfs(Rootfs::A), true).unwrap();
    assert_eq!(digest, diff_id);

    // The store's round trip: import (apply to a layer directory, recording on the way),
    // then export (regenerate from the layer directory).
    let layer = tempfile::tempdir().unwrap();
    let mut tap = Tee(TarSplitRecorder::new(Vec::new()), DiffIdOut::new());
    let tar_file = BufReader::new(File::open(&tar_path).unwrap());
    let opts = ApplyOptions::new(WhiteoutMode::Overlay);
    apply(layer.path(), tar_file, &opts, &mut CopyContent, Some(&mut tap), &mut |_| Ok(())).unwrap();
    let Tee(recorder, diffid) = tap;
    assert_eq!(diffid.finish().0, diff_id);
    let recorded = recorder.finish().unwrap();
    assert!(recorded == ours);
    for verify in [true, false] {
        assert_eq!(regen_digest(&recorded, layer.path(), verify).unwrap().0, diff_id, "verify_crc={verify}");
    }
}

#[derive(Default)]
struct Collect(Vec<u8>);

impl strata_layer::TarOut for Collect {
    fn segment(&mut self, b: &[u8]) -> io::Result<()> {
        self.0.extend_from_slice(b);
        Ok(())
    }
    fn file_begin(&mut self, _: &[u8], _: u64) -> io::Result<()> {
        Ok(())
    }
    fn file_data(&mut self, b: &[u8]) -> io::Result<()> {
        self.0.extend_from_slice(b);
        Ok(())
    }
    fn file_end(&mut self) -> io::Result<()> {
        Ok(())
    }
}
