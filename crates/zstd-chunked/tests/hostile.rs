//! Malicious and damaged blobs: every kind is refused with an error naming what is wrong.
//!
//! A valid blob is written by strata's writer from a small tar; its TOC and tar-split are then
//! edited and the blob re-assembled with correct digests and positions (unless the test is
//! about those), so each check is reached on its own.

mod common;

use std::collections::BTreeMap;
use std::io::Write as _;

use serde_json::{Value, json};
use strata_types::Sha256Digest;
use strata_zstd_chunked::annotations::{ChunkedAnnotations, Position};
use strata_zstd_chunked::bounded::DecompressError;
use strata_zstd_chunked::frame::{Footer, encode_skippable};
use strata_zstd_chunked::reader::FullPullReason;
use strata_zstd_chunked::toc_check::TocProblem;
use strata_zstd_chunked::{LayerPlan, Limits, ReadError, WriterOptions, open_layer};

fn pseudo_random(len: usize, seed: u64) -> Vec<u8> {
    let mut x = seed | 1;
    (0..len)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x as u8
        })
        .collect()
}

fn small_tar() -> Vec<u8> {
    let mut b = tar::Builder::new(Vec::new());
    let mut add = |name: &str, kind: tar::EntryType, data: &[u8], link: Option<&str>, xattr: Option<(&str, &[u8])>| {
        let mut h = tar::Header::new_ustar();
        h.set_entry_type(kind);
        h.set_mode(if kind == tar::EntryType::Directory { 0o755 } else { 0o644 });
        h.set_uid(1);
        h.set_gid(2);
        h.set_mtime(1_700_000_000);
        h.set_size(data.len() as u64);
        if let Some(l) = link {
            h.set_link_name(l).unwrap();
        }
        if kind == tar::EntryType::Char {
            h.set_device_major(1).unwrap();
            h.set_device_minor(3).unwrap();
        }
        if let Some((k, v)) = xattr {
            b.append_pax_extensions([(format!("SCHILY.xattr.{k}").as_str(), v)]).unwrap();
        }
        h.set_path(name).unwrap();
        h.set_cksum();
        b.append(&h, data).unwrap();
    };
    add("./", tar::EntryType::Directory, b"", None, None);
    add("etc/", tar::EntryType::Directory, b"", None, Some(("user.k", b"v")));
    add("etc/passwd", tar::EntryType::Regular, b"root:x:0:0\n", None, None);
    add("big", tar::EntryType::Regular, &pseudo_random(700 << 10, 3), None, None);
    add("link", tar::EntryType::Symlink, b"", Some("etc/passwd"), None);
    add("hard", tar::EntryType::Link, b"", Some("etc/passwd"), None);
    add("null", tar::EntryType::Char, b"", None, None);
    b.into_inner().unwrap()
}

/// A blob split into its data frames, TOC JSON and tar-split records, re-assemblable.
#[derive(Clone)]
struct Parts {
    data: Vec<u8>,
    toc: Value,
    tar_split: Vec<Value>,
}

fn decompress(b: &[u8]) -> Vec<u8> {
    zstd::stream::decode_all(b).unwrap()
}

fn split(blob: &[u8], ann: &BTreeMap<String, String>) -> Parts {
    let strata_zstd_chunked::annotations::LayerFormat::ZstdChunked(a) =
        strata_zstd_chunked::annotations::detect(ann).unwrap()
    else {
        panic!()
    };
    let ts = a.tar_split.unwrap();
    let toc = decompress(&blob[a.toc.range().unwrap().start as usize..a.toc.range().unwrap().end as usize]);
    let lines = decompress(&blob[ts.range().unwrap().start as usize..ts.range().unwrap().end as usize]);
    Parts {
        data: blob[..a.toc.offset as usize - 8].to_vec(),
        toc: serde_json::from_slice(&toc).unwrap(),
        tar_split: lines
            .split(|&b| b == b'\n')
            .filter(|l| !l.is_empty())
            .map(|l| serde_json::from_slice(l).unwrap())
            .collect(),
    }
}

/// Re-assembles a blob; the TOC's tarSplitDigest is set to the real one unless `keep_digest`.
fn assemble_raw(p: &Parts, toc_json: &[u8], keep_digest: bool) -> (Vec<u8>, BTreeMap<String, String>) {
    let mut ts = Vec::new();
    for r in &p.tar_split {
        serde_json::to_writer(&mut ts, r).unwrap();
        ts.push(b'\n');
    }
    let ts_z = zstd::bulk::compress(&ts, 3).unwrap();
    let mut toc: Value = serde_json::from_slice(toc_json).unwrap_or(Value::Null);
    let toc_bytes = if keep_digest || toc.is_null() {
        toc_json.to_vec()
    } else {
        toc["tarSplitDigest"] = json!(Sha256Digest::of(&ts_z).to_string());
        serde_json::to_vec(&toc).unwrap()
    };
    let toc_z = zstd::bulk::compress(&toc_bytes, 3).unwrap();
    let mut blob = p.data.clone();
    let toc_pos = Position {
        offset: blob.len() as u64 + 8,
        length: toc_z.len() as u64,
        uncompressed_length: toc_bytes.len() as u64,
    };
    blob.extend(encode_skippable(&toc_z).unwrap());
    let ts_pos =
        Position { offset: blob.len() as u64 + 8, length: ts_z.len() as u64, uncompressed_length: ts.len() as u64 };
    blob.extend(encode_skippable(&ts_z).unwrap());
    let footer = Footer {
        toc_offset: toc_pos.offset,
        toc_length: toc_pos.length,
        toc_uncompressed_length: toc_pos.uncompressed_length,
        manifest_type: 1,
        tar_split_offset: ts_pos.offset,
        tar_split_length: ts_pos.length,
        tar_split_uncompressed_length: ts_pos.uncompressed_length,
    };
    blob.extend(footer.encode());
    let ann =
        ChunkedAnnotations { toc_digest: Sha256Digest::of(&toc_z), toc: toc_pos, tar_split: Some(ts_pos) }.to_map();
    (blob, ann)
}

fn assemble(p: &Parts) -> (Vec<u8>, BTreeMap<String, String>) {
    assemble_raw(p, &serde_json::to_vec(&p.toc).unwrap(), false)
}

fn read(blob: &[u8], ann: &BTreeMap<String, String>) -> Result<LayerPlan, ReadError> {
    open_layer(ann, blob.len() as u64, &mut &blob[..], &Limits::default())
}

fn base() -> (Vec<u8>, BTreeMap<String, String>, Parts) {
    let (blob, result) = common::write_blob(&small_tar()[..], WriterOptions::default());
    let parts = split(&blob, &result.annotations);
    (blob, result.annotations, parts)
}

/// Index of the TOC entry named `name`.
fn entry(p: &Parts, name: &str) -> usize {
    p.toc["entries"].as_array().unwrap().iter().position(|e| e["name"] == name && e["type"] != "chunk").unwrap()
}

fn edited(f: impl FnOnce(&mut Parts)) -> ReadError {
    let (_, _, mut p) = base();
    f(&mut p);
    let (blob, ann) = assemble(&p);
    read(&blob, &ann).expect_err("tampered blob accepted")
}

#[test]
fn the_untampered_blob_and_its_reassembly_are_accepted() {
    let (blob, ann, p) = base();
    let plan = read(&blob, &ann).unwrap();
    assert_eq!(plan.entries.len(), 7);
    let (blob2, ann2) = assemble(&p);
    let plan2 = read(&blob2, &ann2).unwrap();
    assert_eq!(plan2.entries, plan.entries);
    assert!(plan.entries.iter().find(|e| e.raw_name == "big").unwrap().chunks.len() > 1);
}

#[test]
fn corrupted_toc_or_wrong_checksum_annotation() {
    let (mut blob, ann, _) = base();
    let a = match strata_zstd_chunked::annotations::detect(&ann).unwrap() {
        strata_zstd_chunked::annotations::LayerFormat::ZstdChunked(a) => a,
        _ => unreachable!(),
    };
    let mut flipped = blob.clone();
    flipped[a.toc.offset as usize + 5] ^= 0x40;
    assert!(matches!(read(&flipped, &ann), Err(ReadError::TocDigest { .. })));
    let mut wrong = ann.clone();
    wrong.insert(strata_zstd_chunked::annotations::MANIFEST_CHECKSUM.into(), Sha256Digest::of(b"x").to_string());
    assert!(matches!(read(&blob, &wrong), Err(ReadError::TocDigest { .. })));
    // A TOC that is not zstd, or not JSON, with a matching checksum.
    let (_, _, p) = base();
    let (b2, a2) = assemble_raw(&p, b"{\"version\":1,\"entries\":[", true);
    assert!(matches!(read(&b2, &a2), Err(ReadError::TocJson(_))));
    let toc = &mut blob[a.toc.offset as usize..(a.toc.offset + a.toc.length) as usize];
    toc.fill(7);
    let mut fixed = ann.clone();
    fixed.insert(strata_zstd_chunked::annotations::MANIFEST_CHECKSUM.into(), Sha256Digest::of(toc).to_string());
    assert!(matches!(read(&blob, &fixed), Err(ReadError::Decompress(DecompressError::Zstd { .. }))));
}

#[test]
fn tar_split_digest_mismatch_and_missing_tar_split() {
    let (_, _, mut p) = base();
    p.toc["tarSplitDigest"] = json!(Sha256Digest::of(b"other").to_string());
    let (blob, ann) = assemble_raw(&p, &serde_json::to_vec(&p.toc).unwrap(), true);
    assert!(matches!(read(&blob, &ann), Err(ReadError::TarSplitDigest { .. })));
    // No tarSplitDigest: an obsolete blob, to be pulled in full.
    p.toc.as_object_mut().unwrap().remove("tarSplitDigest");
    let (blob, ann) = assemble_raw(&p, &serde_json::to_vec(&p.toc).unwrap(), true);
    assert!(matches!(read(&blob, &ann), Err(ReadError::NeedsFullPull(FullPullReason::NoTarSplit))));
    // A digest in the TOC but no tarsplit-position annotation.
    let (blob, mut ann) = assemble(&base().2);
    ann.remove(strata_zstd_chunked::annotations::TARSPLIT_POSITION);
    assert!(matches!(read(&blob, &ann), Err(ReadError::MissingTarSplitPosition)));
    // Legacy annotations only.
    let legacy = BTreeMap::from([(
        strata_zstd_chunked::annotations::LEGACY_MANIFEST_CHECKSUM.to_owned(),
        "sha256:00".to_owned(),
    )]);
    assert!(matches!(read(&blob, &legacy), Err(ReadError::NeedsFullPull(FullPullReason::LegacyFormat))));
}

#[test]
fn each_kind_of_toc_tar_split_disagreement_is_named() {
    let cases: Vec<(&str, &str, Value)> = vec![
        ("etc/", "mode", json!(0o700)),
        ("etc/", "uid", json!(0)),
        ("etc/", "gid", json!(7)),
        ("etc/", "modtime", json!("2001-01-01T00:00:00Z")),
        ("etc/", "accesstime", json!("2001-01-01T00:00:00Z")),
        ("etc/", "changetime", json!("2001-01-01T00:00:00Z")),
        ("etc/", "xattrs", json!({"user.k": "dw=="})),
        ("etc/", "type", json!("fifo")),
        ("link", "linkName", json!("etc/shadow")),
        ("null", "devMajor", json!(2)),
        ("null", "devMinor", json!(9)),
        ("etc/passwd", "name", json!("etc/shadow")),
    ];
    for (name, field, value) in cases {
        let err = edited(|p| {
            let i = entry(p, name);
            p.toc["entries"][i][field] = value.clone();
        });
        match &err {
            ReadError::Mismatch(m) => assert_eq!(m.field, field, "{name}.{field}: {err}"),
            other => panic!("{name}.{field}: expected a mismatch, got {other}"),
        }
    }
    // Size: also disagree on a regular file whose chunk list was adjusted consistently.
    let err = edited(|p| {
        let i = entry(p, "etc/passwd");
        p.toc["entries"][i]["size"] = json!(10);
    });
    assert!(matches!(&err, ReadError::Mismatch(m) if m.field == "size"), "{err}");
}

#[test]
fn order_missing_and_extra_entries_are_disagreements() {
    let err = edited(|p| p.toc["entries"].as_array_mut().unwrap().swap(1, 2));
    assert!(matches!(&err, ReadError::Mismatch(m) if m.field == "type" || m.field == "name"), "{err}");
    let err = edited(|p| {
        let i = entry(p, "link");
        p.toc["entries"].as_array_mut().unwrap().remove(i);
    });
    assert!(matches!(err, ReadError::Mismatch(_) | ReadError::Disagree(_)), "{err}");
    let err = edited(|p| {
        p.toc["entries"].as_array_mut().unwrap().push(json!({"type":"dir","name":"./extra/"}));
    });
    assert!(matches!(&err, ReadError::Disagree(s) if s.contains("extra")), "{err}");
    // The tar-split gains an entry the TOC does not have: drop the TOC's last entry.
    let err = edited(|p| {
        p.toc["entries"].as_array_mut().unwrap().pop();
    });
    assert!(matches!(&err, ReadError::Disagree(s) if s.contains("beyond the end of the TOC")), "{err}");
    // A file record that does not follow its header.
    let err = edited(|p| {
        let r = p.tar_split.iter_mut().find(|r| r["type"] == 1 && r["name"] == "link").unwrap();
        r["name"] = json!("./other");
    });
    assert!(matches!(err, ReadError::TarSplit(_)), "{err}");
}

#[test]
fn duplicate_and_escaping_names_are_refused() {
    let err = edited(|p| {
        let i = entry(p, "etc/");
        let dup = p.toc["entries"][i].clone();
        p.toc["entries"].as_array_mut().unwrap().insert(i + 1, dup);
    });
    assert!(matches!(&err, ReadError::Toc(e) if matches!(e.problem, TocProblem::Duplicate { .. })), "{err}");
    let err = edited(|p| {
        let i = entry(p, "etc/passwd");
        p.toc["entries"][i]["name"] = json!("etc/../../passwd");
    });
    assert!(matches!(&err, ReadError::Toc(e) if matches!(e.problem, TocProblem::BadName(_))), "{err}");
    let err = edited(|p| {
        let i = entry(p, "hard");
        p.toc["entries"][i]["linkName"] = json!("/etc/shadow");
    });
    assert!(matches!(&err, ReadError::Toc(e) if matches!(e.problem, TocProblem::BadHardlink { .. })), "{err}");
}

#[test]
fn chunk_ranges_outside_the_data_or_inconsistent_are_refused() {
    let big = |p: &Parts| entry(p, "big");
    let err = edited(|p| {
        let i = big(p);
        p.toc["entries"][i]["endOffset"] = json!(p.data.len() + 1);
    });
    assert!(matches!(&err, ReadError::Toc(e) if matches!(e.problem, TocProblem::BlobRange { .. })), "{err}");
    let err = edited(|p| {
        let i = big(p);
        p.toc["entries"][i + 1]["offset"] = json!(1u64 << 40);
    });
    assert!(matches!(&err, ReadError::Toc(e) if matches!(e.problem, TocProblem::BlobRange { .. })), "{err}");
    let err = edited(|p| {
        let i = big(p);
        let s = p.toc["entries"][i + 1]["chunkSize"].as_u64().unwrap();
        p.toc["entries"][i + 1]["chunkSize"] = json!(s + 1);
    });
    assert!(
        matches!(&err, ReadError::Toc(e) if matches!(e.problem, TocProblem::ChunkGap { .. } | TocProblem::ChunkCoverage { .. })),
        "{err}"
    );
}

#[test]
fn positions_outside_the_blob_or_not_framed_are_refused() {
    let (blob, ann, _) = base();
    let key = strata_zstd_chunked::annotations::MANIFEST_POSITION;
    let (pos, _) = strata_zstd_chunked::annotations::parse_manifest_position(&ann[key]).unwrap();
    let with = |v: String| {
        let mut a = ann.clone();
        a.insert(key.into(), v);
        a
    };
    let past_end = with(format!("{}:{}:{}:1", blob.len() - 10, 100, pos.uncompressed_length));
    assert!(matches!(read(&blob, &past_end), Err(ReadError::OutOfBlob { .. })));
    let at_zero = with(format!("0:{}:{}:1", pos.length, pos.uncompressed_length));
    assert!(matches!(read(&blob, &at_zero), Err(ReadError::OutOfBlob { .. })));
    let shifted = with(format!("{}:{}:{}:1", pos.offset - 1, pos.length, pos.uncompressed_length));
    assert!(matches!(read(&blob, &shifted), Err(ReadError::NotSkippable { .. })));
    let ts = strata_zstd_chunked::annotations::TARSPLIT_POSITION;
    let mut overlap = ann.clone();
    overlap.insert(ts.into(), format!("{}:{}:1", pos.offset + 1, 4));
    assert!(matches!(read(&blob, &overlap), Err(ReadError::Overlap { .. })));
}

#[test]
fn oversized_and_bomb_metadata_is_refused_with_bounded_work() {
    let (blob, ann, p) = base();
    let tight = Limits { max_toc_uncompressed: 100, ..Limits::default() };
    let err = open_layer(&ann, blob.len() as u64, &mut &blob[..], &tight).unwrap_err();
    assert!(matches!(err, ReadError::Decompress(DecompressError::TooLarge { .. })), "{err}");
    let tight = Limits { max_toc_compressed: 10, ..Limits::default() };
    assert!(matches!(open_layer(&ann, blob.len() as u64, &mut &blob[..], &tight), Err(ReadError::TooLarge { .. })));
    let tight = Limits { max_entries: 3, ..Limits::default() };
    assert!(matches!(open_layer(&ann, blob.len() as u64, &mut &blob[..], &tight), Err(ReadError::TocJson(_))));

    // A TOC that inflates to 1 GiB while declaring its real JSON length.
    let json = serde_json::to_vec(&p.toc).unwrap();
    let mut enc = zstd::stream::write::Encoder::new(Vec::new(), 1).unwrap();
    enc.write_all(&json).unwrap();
    let zeros = vec![b' '; 1 << 20];
    for _ in 0..1024 {
        enc.write_all(&zeros).unwrap();
    }
    let bomb = enc.finish().unwrap();
    let mut blob2 = p.data.clone();
    let toc_pos =
        Position { offset: blob2.len() as u64 + 8, length: bomb.len() as u64, uncompressed_length: json.len() as u64 };
    blob2.extend(encode_skippable(&bomb).unwrap());
    let (_, good_ann) = assemble(&p);
    let mut a = strata_zstd_chunked::annotations::detect(&good_ann).unwrap();
    if let strata_zstd_chunked::annotations::LayerFormat::ZstdChunked(c) = &mut a {
        c.toc = toc_pos;
        c.toc_digest = Sha256Digest::of(&bomb);
        c.tar_split = Some(Position { offset: blob2.len() as u64 + 8, length: 0, uncompressed_length: 0 });
    }
    blob2.extend(encode_skippable(b"").unwrap());
    let strata_zstd_chunked::annotations::LayerFormat::ZstdChunked(c) = a else { unreachable!() };
    let t = std::time::Instant::now();
    let err = open_layer(&c.to_map(), blob2.len() as u64, &mut &blob2[..], &Limits::default()).unwrap_err();
    assert!(matches!(err, ReadError::Decompress(DecompressError::Length { .. })), "{err}");
    eprintln!("TOC bomb refused after {:?}", t.elapsed());

    // A tar-split that inflates past its declared length.
    let mut p2 = p.clone();
    let pad = json!({"type": 2, "payload": "", "position": 999});
    p2.tar_split.extend(std::iter::repeat_n(pad, 20_000));
    let (blob3, ann3) = assemble(&p2);
    let mut shrunk = ann3.clone();
    let tsk = strata_zstd_chunked::annotations::TARSPLIT_POSITION;
    let ts = strata_zstd_chunked::annotations::parse_tarsplit_position(&ann3[tsk]).unwrap();
    shrunk.insert(tsk.into(), format!("{}:{}:{}", ts.offset, ts.length, 1000));
    let err = read(&blob3, &shrunk).unwrap_err();
    assert!(matches!(err, ReadError::TarSplit(_) | ReadError::Decompress(_)), "{err}");
}

#[test]
fn fetched_chunks_are_verified_and_bounded() {
    let (blob, ann, _) = base();
    let plan = read(&blob, &ann).unwrap();
    let c = plan.entries.iter().find(|e| e.chunks.len() > 1).unwrap().chunks[1].clone();
    let range = c.blob_range.start as usize..c.blob_range.end as usize;
    assert_eq!(c.decode(&blob[range.clone()]).unwrap().len() as u64, c.len);
    // Another chunk's frames: right size class, wrong content.
    let other = &plan.entries.iter().find(|e| e.chunks.len() > 1).unwrap().chunks[0];
    let wrong = &blob[other.blob_range.start as usize..other.blob_range.end as usize];
    assert!(matches!(
        c.decode(wrong),
        Err(strata_zstd_chunked::ChunkError::Decompress { .. } | strata_zstd_chunked::ChunkError::Digest { .. })
    ));
    // A frame inflating far past the chunk's length is cut off.
    let bomb = zstd::bulk::compress(&vec![0u8; 64 << 20], 1).unwrap();
    assert!(matches!(c.decode(&bomb), Err(strata_zstd_chunked::ChunkError::Decompress { .. })));
    // The right bytes with a BLAKE3 claim that does not match them.
    let mut lying = c.clone();
    lying.blake3 = Some(strata_types::Blake3Digest::of(b"x"));
    assert!(matches!(lying.decode(&blob[range]), Err(strata_zstd_chunked::ChunkError::Blake3 { .. })));
}
