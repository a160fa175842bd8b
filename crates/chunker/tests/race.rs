//! Assemblies racing the deletion of their source layer: zero wrong bytes, ever.
//!
//! One thread assembles files from chunks of a "layer" directory while another deletes
//! that directory's files at random moments and recreates them. Every assembled file must
//! equal the expected content once its missing pieces (sources deleted before they were
//! opened) are filled — never contain bytes from anywhere else.

mod common;

use std::fs::{self, File};
use std::os::unix::fs::FileExt;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use common::random_bytes;
use rand::{RngExt, SeedableRng, rngs::StdRng};
use strata_chunker::{Assembler, Expect, Fill, HashOptions, LocalRange, Piece, digest_bytes};

#[test]
fn assembly_survives_concurrent_deletion_of_sources() {
    let rounds: usize = std::env::var("STRATA_RACE_ROUNDS").ok().and_then(|s| s.parse().ok()).unwrap_or(300);
    let dir = tempfile::tempdir().unwrap();
    let layer = dir.path().join("layer");
    fs::create_dir(&layer).unwrap();
    let contents: Vec<Vec<u8>> = (0..8).map(|i| random_bytes(300_000 + i * 10_000, i as u64)).collect();
    let write_layer = || {
        for (i, c) in contents.iter().enumerate() {
            let tmp = layer.join(format!(".f{i}"));
            fs::write(&tmp, c).unwrap();
            fs::rename(&tmp, layer.join(format!("f{i}"))).unwrap();
        }
    };
    write_layer();
    let stop = Arc::new(AtomicBool::new(false));
    let deleter = {
        let stop = stop.clone();
        let layer = layer.clone();
        let contents = contents.clone();
        std::thread::spawn(move || {
            let mut rng = StdRng::seed_from_u64(42);
            while !stop.load(Ordering::Relaxed) {
                let i = rng.random_range(0..contents.len());
                let _ = fs::remove_file(layer.join(format!("f{i}")));
                std::thread::yield_now();
                if rng.random_bool(0.5) {
                    // Sometimes a different file appears under the same name: must be rejected.
                    let wrong = random_bytes(contents[i].len(), rng.random());
                    let tmp = layer.join(format!(".w{i}"));
                    fs::write(&tmp, &wrong).unwrap();
                    fs::rename(&tmp, layer.join(format!("f{i}"))).unwrap();
                } else {
                    let tmp = layer.join(format!(".r{i}"));
                    fs::write(&tmp, &contents[i]).unwrap();
                    fs::rename(&tmp, layer.join(format!("f{i}"))).unwrap();
                }
            }
        })
    };
    let digests: Vec<_> = contents.iter().map(|c| digest_bytes(c, HashOptions::default())).collect();
    let mut rng = StdRng::seed_from_u64(7);
    let mut asm = Assembler::new();
    let mut missing_total = 0;
    for round in 0..rounds {
        // A target file made of chunks drawn from random source files.
        let mut expected = Vec::new();
        let mut pieces = Vec::new();
        for _ in 0..12 {
            let i = rng.random_range(0..contents.len());
            let c = digests[i].chunks[rng.random_range(0..digests[i].chunks.len())];
            let bytes = &contents[i][c.offset as usize..][..c.len as usize];
            expected.extend_from_slice(bytes);
            pieces.push(Piece {
                len: u64::from(c.len),
                local: Some(LocalRange {
                    source: layer.join(format!("f{i}")).into(),
                    offset: c.offset,
                    len: u64::from(c.len),
                    expect: Expect::Blake3(c.digest),
                }),
                fill: Fill::Missing,
            });
        }
        let out = dir.path().join(format!("out{round}"));
        let f = File::options().read(true).write(true).create_new(true).open(&out).unwrap();
        let r = asm.assemble(&f, &pieces).unwrap();
        // "Fetch" what is missing, as a pull would.
        for &(idx, off) in &r.missing {
            let start: u64 = pieces[..idx].iter().map(|p| p.len).sum();
            assert_eq!(start, off);
            f.write_all_at(&expected[off as usize..][..pieces[idx].len as usize], off).unwrap();
        }
        missing_total += r.missing.len();
        drop(f);
        assert_eq!(fs::read(&out).unwrap(), expected, "round {round}: wrong bytes");
        fs::remove_file(&out).unwrap();
    }
    stop.store(true, Ordering::Relaxed);
    deleter.join().unwrap();
    write_layer();
    eprintln!("{rounds} rounds, {missing_total} pieces missing and refetched");
    assert!(missing_total > 0, "the deleter never won a race: the test did not exercise deletion");
}
