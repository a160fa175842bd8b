//! Helpers shared by the integration tests.
#![allow(dead_code)]

use std::io::Read;

use strata_layer::parse::TarReader;
use strata_zstd_chunked::{WriteResult, WriterOptions, ZstdChunkedWriter};

/// Writes `tar` (a complete tar stream) as a zstd:chunked blob.
pub fn write_blob(tar: impl Read, opts: WriterOptions) -> (Vec<u8>, WriteResult) {
    let w = ZstdChunkedWriter::new(Vec::new(), opts).unwrap();
    let mut r = TarReader::with_tap(tar, w);
    while r.next_header().unwrap().is_some() {}
    let (blob, result) = r.into_tap().finish().unwrap();
    (blob, result)
}

/// The layer tar of the debootstrap tree a (`scripts/setup-peers.sh`), or `None` when the
/// fixtures are missing (skipped, or a failure under STRATA_TEST_PRIVILEGED=1).
pub fn rootfs_a_tar() -> Option<std::path::PathBuf> {
    strata_testutil::Peers::require().map(|p| p.tar(strata_testutil::Rootfs::A))
}

use strata_layer::tarsplit::Record;
use strata_types::Sha256Digest;
use strata_zstd_chunked::LayerPlan;

/// Decompresses one chunk's blob range alone and checks it against the chunk's length and
/// sha256; returns its bytes.
pub fn fetch_chunk(blob: &[u8], c: &strata_zstd_chunked::ChunkPlan) -> Vec<u8> {
    let range = c.blob_range.start as usize..c.blob_range.end as usize;
    let data = c.decode(&blob[range.clone()]).expect("a chunk range decompresses alone to its digests");
    // Independent oracle: the zstd library's own decoder, and the digests recomputed here.
    assert_eq!(zstd::stream::decode_all(&blob[range]).unwrap(), data);
    assert_eq!(data.len() as u64, c.len, "chunk length");
    assert_eq!(Sha256Digest::of(&data), c.digest, "chunk digest");
    if c.zeros {
        assert!(data.iter().all(|&b| b == 0), "zeros chunk with data");
    }
    if let Some(b3) = c.blake3 {
        assert_eq!(strata_types::Blake3Digest::of(&data), b3, "strata BLAKE3 chunk digest");
    }
    data
}

/// Rebuilds the layer tar from the plan's tar-split and file contents taken chunk by chunk
/// from the blob (every chunk and file digest verified on the way).
pub fn rebuild_tar(plan: &LayerPlan, blob: &[u8]) -> Vec<u8> {
    let mut files = std::collections::HashMap::new();
    for e in &plan.entries {
        if e.chunks.is_empty() {
            continue;
        }
        let content: Vec<u8> = e.chunks.iter().flat_map(|c| fetch_chunk(blob, c)).collect();
        assert_eq!(Some(Sha256Digest::of(&content)), e.digest, "file digest of {}", e.raw_name);
        files.insert(e.raw_name.as_bytes().to_vec(), content);
    }
    let mut tar = Vec::with_capacity(plan.tar_size as usize);
    for r in plan.tar_split_records() {
        match r.unwrap() {
            Record::Segment(b) => tar.extend_from_slice(&b),
            Record::File { name, size, .. } if size > 0 => {
                let content = &files[&name];
                assert_eq!(content.len() as u64, size);
                tar.extend_from_slice(content);
            }
            Record::File { .. } => {}
        }
    }
    assert_eq!(tar.len() as u64, plan.tar_size);
    tar
}

/// GET `http://ADDR/v2/<path>` with curl.
pub fn registry_get(addr: &str, path: &str, accept: &str) -> Vec<u8> {
    let out = std::process::Command::new("curl")
        .args(["-sSf", "-H", &format!("Accept: {accept}"), &format!("http://{addr}/v2/{path}")])
        .output()
        .unwrap();
    assert!(out.status.success(), "curl {path}: {}", String::from_utf8_lossy(&out.stderr));
    out.stdout
}
