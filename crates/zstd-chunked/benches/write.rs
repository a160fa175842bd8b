//! zstd:chunked writer and reader throughput (`cargo bench -p strata-zstd-chunked --bench write`).
//! Prints a markdown table.
//!
//! - strata's `ZstdChunkedWriter` fed by strata's tar parser, the tar in memory, output
//!   discarded (FastCDC, per-chunk sha256 + BLAKE3, file sha256, DiffID, TOC, tar-split);
//! - `zstd -T<cores> -3` of the same tar file (page cache warm), output discarded: what a
//!   plain `tar+zstd` layer costs on this machine;
//! - reading and validating the written blob's metadata (`open_layer`), from memory;
//! - first, before anything else is loaded: a generated 1 GiB tar (one incompressible 1 GiB
//!   file and 2000 small ones) streamed through a pipe into the writer, output discarded,
//!   to show the writer's peak memory (VmHWM) does not grow with the layer.
//!
//! `STRATA_BENCH_TAR` chooses the input (default `$STRATA_PEERS/tars/rootfs-a.tar`, from
//! `scripts/setup-peers.sh`),
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

/// CPU seconds used so far by this process (`self`) and by its waited-for children, from
/// /proc/self/stat: a measure that other load on the machine does not inflate.
fn cpu_seconds() -> (f64, f64) {
    let stat = std::fs::read_to_string("/proc/self/stat").unwrap();
    let fields: Vec<&str> = stat.rsplit_once(") ").unwrap().1.split(' ').collect();
    let tick = |i: usize| fields[i].parse::<f64>().unwrap();
    let hz: f64 = String::from_utf8(Command::new("getconf").arg("CLK_TCK").output().unwrap().stdout)
        .unwrap()
        .trim()
        .parse()
        .unwrap();
    // Fields 14-17 of stat (utime, stime, cutime, cstime) are indexes 11-14 after the name.
    ((tick(11) + tick(12)) / hz, (tick(13) + tick(14)) / hz)
}

/// Incompressible bytes generated on the fly.
struct Noise {
    left: u64,
    x: u64,
}

impl std::io::Read for Noise {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let n = buf.len().min(self.left as usize);
        for b in &mut buf[..n] {
            self.x ^= self.x << 13;
            self.x ^= self.x >> 7;
            self.x ^= self.x << 17;
            *b = self.x as u8;
        }
        self.left -= n as u64;
        Ok(n)
    }
}

fn vm_hwm_mib() -> f64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap();
    let kb: f64 = status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .unwrap()
        .trim()
        .trim_end_matches(" kB")
        .trim()
        .parse()
        .unwrap();
    kb / 1024.0
}

/// Streams a generated 1 GiB tar into the writer; returns (seconds, peak RSS MiB before, after).
fn streaming_memory() -> (f64, f64, f64) {
    let before = vm_hwm_mib();
    let (rx, tx) = std::io::pipe().unwrap();
    let producer = std::thread::spawn(move || {
        let mut b = tar::Builder::new(tx);
        for i in 0..2000u64 {
            let mut h = tar::Header::new_gnu();
            h.set_size(1000);
            h.set_mode(0o644);
            b.append_data(&mut h, format!("small/{i}"), Noise { left: 1000, x: i + 1 }).unwrap();
        }
        let mut h = tar::Header::new_gnu();
        h.set_size(1 << 30);
        h.set_mode(0o644);
        b.append_data(&mut h, "big", Noise { left: 1 << 30, x: 99 }).unwrap();
        b.finish().unwrap();
    });
    let t = Instant::now();
    let w = ZstdChunkedWriter::new(std::io::sink(), WriterOptions::default()).unwrap();
    let mut r = TarReader::with_tap(rx, w);
    while r.next_header().unwrap().is_some() {}
    let (_, result) = r.into_tap().finish().unwrap();
    producer.join().unwrap();
    assert!(result.tar_size > 1 << 30);
    (t.elapsed().as_secs_f64(), before, vm_hwm_mib())
}

fn main() {
    let (stream_secs, hwm_before, hwm_after) = streaming_memory();
    let path = std::env::var("STRATA_BENCH_TAR")
        .unwrap_or_else(|_| strata_testutil::peers_dir().join("tars/rootfs-a.tar").display().to_string());
    let runs: usize = std::env::var("STRATA_BENCH_RUNS").ok().and_then(|v| v.parse().ok()).unwrap_or(3);
    let Ok(tar) = std::fs::read(&path) else {
        eprintln!("skipped: {path} is missing (run scripts/setup-peers.sh)");
        return;
    };
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());

    let mut times = Vec::new();
    let mut last = None;
    let (cpu0, _) = cpu_seconds();
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
    let ours_cpu = (cpu_seconds().0 - cpu0) / runs as f64;

    let mut times = Vec::new();
    let mut zstd_size = 0usize;
    let (_, child0) = cpu_seconds();
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
    let zstd_cpu = (cpu_seconds().1 - child0) / runs as f64;

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
    let load = std::fs::read_to_string("/proc/loadavg").unwrap_or_default();
    println!("load average at the end: {}", load.split(' ').take(3).collect::<Vec<_>>().join(" "));
    println!();
    println!("| what | wall (s) | MB/s of tar | CPU (s) | MB per CPU-second | output bytes |");
    println!("|---|---|---|---|---|---|");
    let row = |what: &str, wall: Duration, cpu: f64, out: String| {
        let mb = tar.len() as f64 / 1e6;
        println!(
            "| {what} | {:.2} | {:.0} | {cpu:.2} | {:.0} | {out} |",
            wall.as_secs_f64(),
            mb / wall.as_secs_f64(),
            mb / cpu
        );
    };
    row("strata zstd:chunked writer (level 3)", ours, ours_cpu, format!("{} ({} chunks)", blob.len(), result.chunks));
    row(&format!("`zstd -T{cores} -3`"), zstd_t, zstd_cpu, zstd_size.to_string());
    println!(
        "| open_layer (TOC + tar-split validation) | {:.3} | {:.0} | - | - | - |",
        read_t.as_secs_f64(),
        mbps(tar.len(), read_t)
    );
    println!();
    println!(
        "1 GiB generated tar streamed through the writer: {stream_secs:.1} s, peak RSS {hwm_before:.0} MiB before, {hwm_after:.0} MiB after"
    );
}
