//! zstd:chunked writer and reader throughput (`cargo bench -p strata-zstd-chunked --bench write`).
//! Prints a markdown table.
//!
//! - strata's `ZstdChunkedWriter` fed by strata's tar parser, the tar in memory, output
//!   discarded (FastCDC, per-chunk sha256 + BLAKE3, file sha256, DiffID, TOC, tar-split);
//! - `zstd -T<cores> -3` of the same tar file (page cache warm), output discarded: what a
//!   plain `tar+zstd` layer costs on this machine;
//! - reading and validating the written blob's metadata (`open_layer`), from memory.
//!
//! `STRATA_BENCH_TAR` chooses the input (default `/tmp/peers/tars/rootfs-a.tar`),
//! `STRATA_BENCH_RUNS` the number of runs (median reported, default 3).

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use strata_layer::parse::TarReader;
use strata_zstd_chunked::{Limits, WriterOptions, ZstdChunkedWriter, open_layer};

fn median(mut v: Vec<Duration>) -> Duration {
    v.sort();
    v[v.len() / 2]
}

fn mbps(bytes: usize, d: Duration) -> f64 {
    bytes as f64 / 1e6 / d.as_secs_f64()
}

fn main() {
    let path = std::env::var("STRATA_BENCH_TAR").unwrap_or_else(|_| "/tmp/peers/tars/rootfs-a.tar".into());
    let runs: usize = std::env::var("STRATA_BENCH_RUNS").ok().and_then(|v| v.parse().ok()).unwrap_or(3);
    let Ok(tar) = std::fs::read(&path) else {
        eprintln!("skipped: {path} is missing (run /work/shared/peers/setup.sh)");
        return;
    };
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());

    let mut times = Vec::new();
    let mut last = None;
    for _ in 0..runs {
        let t = Instant::now();
        let w = ZstdChunkedWriter::new(Vec::with_capacity(tar.len() / 2), WriterOptions::default()).unwrap();
        let mut r = TarReader::with_tap(&tar[..], w);
        while r.next_header().unwrap().is_some() {}
        let (blob, result) = r.into_tap().finish().unwrap();
        times.push(t.elapsed());
        last = Some((blob, result));
    }
    let (blob, result) = last.unwrap();
    let ours = median(times);

    let mut times = Vec::new();
    let mut zstd_size = 0usize;
    for _ in 0..runs {
        let t = Instant::now();
        let out = Command::new("zstd")
            .args([format!("-T{cores}").as_str(), "-3", "-q", "-c", &path])
            .stderr(Stdio::inherit())
            .output()
            .expect("zstd is installed");
        times.push(t.elapsed());
        zstd_size = out.stdout.len();
    }
    let zstd_t = median(times);

    let mut times = Vec::new();
    for _ in 0..runs {
        let t = Instant::now();
        let plan = open_layer(&result.annotations, blob.len() as u64, &mut &blob[..], &Limits::default()).unwrap();
        times.push(t.elapsed());
        assert_eq!(plan.entries.len() as u64, result.entries);
    }
    let read_t = median(times);

    println!("input: {path}, {} bytes, {} entries, {cores} cores, median of {runs}", tar.len(), result.entries);
    println!();
    println!("| what | time (s) | MB/s of tar | output bytes |");
    println!("|---|---|---|---|");
    println!(
        "| strata zstd:chunked writer (level 3) | {:.2} | {:.0} | {} ({} chunks) |",
        ours.as_secs_f64(),
        mbps(tar.len(), ours),
        blob.len(),
        result.chunks
    );
    println!("| `zstd -T{cores} -3` | {:.2} | {:.0} | {} |", zstd_t.as_secs_f64(), mbps(tar.len(), zstd_t), zstd_size);
    println!(
        "| open_layer (TOC + tar-split validation) | {:.3} | {:.0} | - |",
        read_t.as_secs_f64(),
        mbps(tar.len(), read_t)
    );
}
