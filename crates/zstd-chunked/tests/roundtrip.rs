//! Blobs written by strata decompress to exactly the tar they were written from.

mod common;

use std::io::Read;

use common::{rootfs_a_tar, write_blob};
use strata_types::Sha256Digest;
use strata_zstd_chunked::WriterOptions;

#[test]
fn rootfs_a_round_trips_through_zstd_cli() {
    let Some(tar) = rootfs_a_tar() else { return };
    if !strata_testutil::require_tool("zstd") {
        return;
    }
    let tar = std::fs::read(tar).unwrap();
    let t = std::time::Instant::now();
    let (blob, result) = write_blob(&tar[..], WriterOptions::default());
    eprintln!("wrote {} -> {} bytes in {:?}", tar.len(), blob.len(), t.elapsed());
    assert_eq!(result.diff_id, Sha256Digest::of(&tar));
    assert_eq!(result.blob_digest, Sha256Digest::of(&blob));
    assert_eq!(result.tar_size, tar.len() as u64);
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("blob.zst");
    std::fs::write(&path, &blob).unwrap();
    let mut child = std::process::Command::new("zstd")
        .args(["-d", "-c", "-q"])
        .arg(&path)
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let mut out = Vec::new();
    child.stdout.take().unwrap().read_to_end(&mut out).unwrap();
    assert!(child.wait().unwrap().success());
    assert!(out == tar, "zstd -d of the blob differs from the tar");
}

#[test]
fn rootfs_a_blob_validates_and_every_chunk_stands_alone() {
    let Some(tar) = rootfs_a_tar() else { return };
    let tar = std::fs::read(tar).unwrap();
    let (blob, result) = write_blob(&tar[..], WriterOptions::default());
    let plan = strata_zstd_chunked::open_layer(
        &result.annotations,
        blob.len() as u64,
        &mut &blob[..],
        &strata_zstd_chunked::Limits::default(),
    )
    .unwrap();
    assert_eq!(plan.toc_digest, result.toc_digest);
    assert_eq!(plan.entries.len() as u64, result.entries);
    let chunks: usize = plan.entries.iter().map(|e| e.chunks.len()).sum();
    assert_eq!(chunks as u64, result.chunks);
    assert!(plan.entries.iter().flat_map(|e| &e.chunks).all(|c| c.blake3.is_some()));
    // Chunks are strata's FastCDC chunks of each file.
    for e in plan.entries.iter().filter(|e| e.entry.size > 0).take(400) {
        let content: Vec<u8> = e.chunks.iter().flat_map(|c| common::fetch_chunk(&blob, c)).collect();
        let cuts: Vec<_> =
            strata_chunker::cdc::boundaries(&content).into_iter().map(|r| (r.start as u64, r.len() as u64)).collect();
        let ours: Vec<_> = e.chunks.iter().map(|c| (c.file_offset, c.len)).collect();
        assert_eq!(ours, cuts, "{}", e.raw_name);
    }
    let rebuilt = common::rebuild_tar(&plan, &blob);
    assert!(rebuilt == tar, "tar rebuilt from tar-split and chunks differs");
}

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

fn tar_of(files: &[(&str, &[u8])]) -> Vec<u8> {
    let mut b = tar::Builder::new(Vec::new());
    for (name, data) in files {
        let mut h = tar::Header::new_gnu();
        h.set_mode(0o644);
        h.set_size(data.len() as u64);
        h.set_mtime(1_600_000_000);
        b.append_data(&mut h, name, *data).unwrap();
    }
    b.into_inner().unwrap()
}

#[test]
fn large_files_are_cut_exactly_like_whole_file_fastcdc_and_zero_runs_are_marked() {
    // 20 MiB spans several 8 MiB chunking windows; the zero run spans several max-size chunks.
    let big = pseudo_random(20 << 20, 42);
    let mut sparse = pseudo_random(100 << 10, 5);
    sparse.extend(vec![0u8; 2 << 20]);
    sparse.extend(pseudo_random(100 << 10, 6));
    let tar = tar_of(&[("big", &big), ("sparse", &sparse), ("small", b"hello")]);
    let (blob, result) = write_blob(&tar[..], WriterOptions { max_in_flight: 1 << 20, ..WriterOptions::default() });
    assert_eq!(result.diff_id, Sha256Digest::of(&tar));
    let plan =
        strata_zstd_chunked::open_layer(&result.annotations, blob.len() as u64, &mut &blob[..], &Default::default())
            .unwrap();
    for (e, content) in plan.entries.iter().zip([&big, &sparse]) {
        let want: Vec<_> =
            strata_chunker::cdc::boundaries(content).into_iter().map(|r| (r.start as u64, r.len() as u64)).collect();
        let got: Vec<_> = e.chunks.iter().map(|c| (c.file_offset, c.len)).collect();
        assert_eq!(got, want, "{}", e.raw_name);
        for c in &e.chunks {
            let data = common::fetch_chunk(&blob, c);
            assert_eq!(c.zeros, data.iter().all(|&b| b == 0), "zeros flag of {}@{}", e.raw_name, c.file_offset);
        }
    }
    let zeros = plan.entries[1].chunks.iter().filter(|c| c.zeros).count();
    assert!(zeros >= 4, "a 2 MiB zero run should give several zeros chunks, got {zeros}");
    assert_eq!(plan.entries[2].chunks.len(), 1);
    assert_eq!(common::rebuild_tar(&plan, &blob), tar);
}

#[test]
fn headers_containers_storage_cannot_represent_are_refused() {
    use strata_layer::TarOut;
    // A non-UTF-8 name: JSON would mangle it and podman's TOC/tar-split check would fail.
    let mut b = tar::Builder::new(Vec::new());
    let mut h = tar::Header::new_ustar();
    h.as_ustar_mut().unwrap().name[..4].copy_from_slice(b"caf\xe9");
    h.set_size(0);
    h.set_mode(0o644);
    h.set_cksum();
    b.append(&h, &[][..]).unwrap();
    let tar = b.into_inner().unwrap();
    let w = strata_zstd_chunked::ZstdChunkedWriter::new(Vec::new(), WriterOptions::default()).unwrap();
    let mut r = strata_layer::parse::TarReader::with_tap(&tar[..], w);
    let err = loop {
        match r.next_header() {
            Ok(Some(_)) => continue,
            Ok(None) => panic!("non-UTF-8 name accepted"),
            Err(e) => break e.to_string(),
        }
    };
    assert!(err.contains("not UTF-8"), "{err}");
    // Once failed, the writer stays failed.
    let mut w = r.into_tap();
    assert!(w.segment(&[0; 512]).unwrap_err().to_string().contains("failed earlier"));
    assert!(w.finish().is_err());
}
