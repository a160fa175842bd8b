//! The whole reader on hostile blobs. Two shapes of input (first byte):
//! - even: a raw blob; the annotations come from its footer, with the TOC digest computed
//!   from the blob, so the fuzzer gets past the checksum;
//! - odd: `toc JSON`, 0xFF 0xFE, `tar-split JSON lines`, 0xFF 0xFE, `data frames`: the
//!   harness compresses and assembles them into a blob with correct digests and positions
//!   (`TSDIGEST` in the TOC is replaced by the tar-split's digest), so the fuzzer works on
//!   the validation logic rather than on zstd.
//!
//! Oracles for accepted plans: chunks cover each file exactly, ranges lie in the data, and
//! the tar-split replays to the reported tar size.
#![no_main]

use libfuzzer_sys::fuzz_target;
use strata_layer::tarsplit::Record;
use strata_types::Sha256Digest;
use strata_zstd_chunked::annotations::{ChunkedAnnotations, Position};
use strata_zstd_chunked::frame::{Footer, encode_skippable};
use strata_zstd_chunked::{Limits, open_chunked};

const LIMITS: Limits = Limits {
    max_toc_compressed: 1 << 20,
    max_toc_uncompressed: 4 << 20,
    max_entries: 1 << 14,
    max_tar_split_compressed: 1 << 20,
    max_tar_split_uncompressed: 16 << 20,
    max_extension: 1 << 16,
};

fn check(blob: &[u8], ann: &ChunkedAnnotations) {
    let Ok(plan) = open_chunked(ann, blob.len() as u64, &mut &blob[..], &LIMITS) else { return };
    let data_end = ann.toc.offset.min(ann.tar_split.unwrap().offset) - 8;
    for e in &plan.entries {
        let mut next = 0;
        for c in &e.chunks {
            assert_eq!(c.file_offset, next);
            assert!(c.blob_range.start < c.blob_range.end && c.blob_range.end <= data_end);
            next += c.len;
        }
        assert_eq!(next, e.entry.size);
        for c in &e.chunks {
            // Hostile frames: decoding may fail, but only with an error, and bounded.
            let _ = c.decode(&blob[c.blob_range.start as usize..c.blob_range.end as usize]);
        }
        assert_eq!(e.digest.is_some(), e.entry.size > 0);
    }
    let mut replayed = 0u64;
    for r in plan.tar_split_records() {
        match r.expect("a validated tar-split replays") {
            Record::Segment(b) => replayed += b.len() as u64,
            Record::File { size, .. } => replayed += size,
        }
    }
    assert_eq!(replayed, plan.tar_size);
}

fn raw(blob: &[u8]) {
    let Some(tail) = blob.len().checked_sub(72).map(|i| &blob[i..]) else { return };
    let Ok(f) = Footer::decode(tail) else { return };
    let toc = Position { offset: f.toc_offset, length: f.toc_length, uncompressed_length: f.toc_uncompressed_length };
    let ts = Position {
        offset: f.tar_split_offset,
        length: f.tar_split_length,
        uncompressed_length: f.tar_split_uncompressed_length,
    };
    let Some(toc_bytes) = toc.range().and_then(|r| blob.get(r.start as usize..r.end as usize)) else { return };
    let ann = ChunkedAnnotations { toc_digest: Sha256Digest::of(toc_bytes), toc, tar_split: Some(ts) };
    check(blob, &ann);
}

fn assembled(input: &[u8]) {
    let mut parts = split3(input).into_iter();
    let (Some(toc_json), Some(ts_json), Some(data)) = (parts.next(), parts.next(), parts.next()) else { return };
    let ts_z = zstd::bulk::compress(ts_json, 1).unwrap();
    let digest = Sha256Digest::of(&ts_z).to_string();
    let toc_json = String::from_utf8_lossy(toc_json).replace("TSDIGEST", &digest);
    let toc_z = zstd::bulk::compress(toc_json.as_bytes(), 1).unwrap();
    let mut blob = data.to_vec();
    let toc = Position {
        offset: blob.len() as u64 + 8,
        length: toc_z.len() as u64,
        uncompressed_length: toc_json.len() as u64,
    };
    blob.extend(encode_skippable(&toc_z).unwrap());
    let ts = Position {
        offset: blob.len() as u64 + 8,
        length: ts_z.len() as u64,
        uncompressed_length: ts_json.len() as u64,
    };
    blob.extend(encode_skippable(&ts_z).unwrap());
    check(&blob, &ChunkedAnnotations { toc_digest: Sha256Digest::of(&toc_z), toc, tar_split: Some(ts) });
}

/// Splits on the first two `FF FE` separators.
fn split3(input: &[u8]) -> Vec<&[u8]> {
    let mut out = Vec::new();
    let mut rest = input;
    while out.len() < 2 {
        let Some(i) = rest.windows(2).position(|w| w == [0xff, 0xfe]) else { return out };
        out.push(&rest[..i]);
        rest = &rest[i + 2..];
    }
    out.push(rest);
    out
}

fuzz_target!(|data: &[u8]| {
    match data.split_first() {
        Some((k, rest)) if k % 2 == 0 => raw(rest),
        Some((_, rest)) => assembled(rest),
        None => {}
    }
});
