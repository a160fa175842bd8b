//! Helpers shared by the chunker's integration tests.
#![allow(dead_code)]

use std::fs::File;
use std::path::Path;

use rand::{Rng, SeedableRng, rngs::StdRng};

pub fn random_bytes(n: usize, seed: u64) -> Vec<u8> {
    let mut rng = StdRng::seed_from_u64(seed);
    let mut v = vec![0u8; n];
    rng.fill_bytes(&mut v);
    v
}

/// Bytes of `path` whose extents FIEMAP reports as shared.
pub fn shared_bytes(path: &Path) -> u64 {
    let f = File::open(path).unwrap();
    strata_sys::fiemap(&f).unwrap().iter().filter(|e| e.flags.is_shared()).map(|e| e.length).sum()
}
