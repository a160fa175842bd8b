//! Writes the seed corpora of every target under `corpus/<target>/` (or the directory given
//! as the first argument). Not a fuzz target. Run from `fuzz/`: `cargo run --release --bin
//! seeds`, or run the binary `cargo fuzz build` leaves next to the targets (that is what
//! `scripts/fuzz-smoke.sh` does). Seeds are generated, never committed.

mod layer;
mod other;
mod zchunked;

use std::path::PathBuf;

fn main() {
    let corpus = PathBuf::from(std::env::args().nth(1).unwrap_or_else(|| "corpus".into()));
    let put = |target: &str, name: &str, bytes: &[u8]| {
        let dir = corpus.join(target);
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(dir.join(name), bytes).unwrap();
    };
    zchunked::write(&put);
    layer::write(&put);
    other::write(&put);
    eprintln!("seeds written under {}", corpus.display());
}
