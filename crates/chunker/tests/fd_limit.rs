//! Assembly holds one source descriptor at a time: it works under a tiny fd limit while
//! drawing chunks from thousands of source files. (Its own test binary, because the limit
//! applies to the whole process.)

mod common;

use std::fs::{self, File};

use common::random_bytes;
use nix::sys::resource::{Resource, getrlimit, setrlimit};
use strata_chunker::{Assembler, Expect, Fill, LocalRange, Piece};
use strata_types::Blake3Digest;

#[test]
fn assembles_from_thousands_of_sources_with_64_fds() {
    let dir = tempfile::tempdir().unwrap();
    let n = 3000;
    let mut expected = Vec::new();
    let mut pieces = Vec::new();
    for i in 0..n {
        let data = random_bytes(5000, i);
        let p = dir.path().join(format!("s{i}"));
        fs::write(&p, &data).unwrap();
        expected.extend_from_slice(&data[1000..5000]);
        pieces.push(Piece {
            len: 4000,
            local: Some(LocalRange {
                source: p.into(),
                offset: 1000,
                len: 4000,
                expect: Expect::Blake3(Blake3Digest::of(&data[1000..5000])),
            }),
            fill: Fill::Missing,
        });
    }
    let (_, hard) = getrlimit(Resource::RLIMIT_NOFILE).unwrap();
    setrlimit(Resource::RLIMIT_NOFILE, 64, hard).unwrap();
    let out = dir.path().join("out");
    let f = File::options().read(true).write(true).create_new(true).open(&out).unwrap();
    let r = Assembler::new().assemble(&f, &pieces).unwrap();
    drop(f);
    assert!(r.missing.is_empty(), "{} pieces missing", r.missing.len());
    assert_eq!(fs::read(&out).unwrap(), expected);
}
