//! Differ benchmarks (run as root: `cargo bench --bench differ`). Prints markdown tables.
//!
//! 1. Single walk of the upperdir vs double walk, trees of 1k, 10k and 100k files with 10
//!    changed files (warm caches; median of several runs).
//! 2. A 1 GiB upperdir on an XFS loop mount written as an uncompressed layer tar
//!    (copy_file_range, 4096-aligned payloads) vs `tar -cf` of the same files: wall time
//!    including fsync of the output, and the filesystem's newly allocated bytes for each.
//!
//! `STRATA_BENCH_TMP` chooses the scratch directory (default: the system temp dir);
//! `STRATA_BENCH_SIZES` overrides the tree sizes (comma-separated, e.g. `1000,10000`).

use std::fs::File;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use strata_differ::{DiffMethod, WriteOptions, diff_overlay, diff_trees, write_layer};
use strata_layer::out_file::FileTarOut;

fn run(cmd: &mut Command) {
    let out = cmd.output().unwrap_or_else(|e| panic!("cannot run {cmd:?}: {e}"));
    assert!(out.status.success(), "{cmd:?} failed: {}", String::from_utf8_lossy(&out.stderr));
}

fn median(mut v: Vec<Duration>) -> Duration {
    v.sort();
    v[v.len() / 2]
}

fn ms(d: Duration) -> String {
    format!("{:.2}", d.as_secs_f64() * 1e3)
}

/// A lower tree of `n` small files, 100 per directory.
fn build_tree(root: &Path, n: usize) {
    for i in 0..n {
        let dir = root.join(format!("d{:04}", i / 100));
        if i % 100 == 0 {
            std::fs::create_dir_all(&dir).unwrap();
        }
        std::fs::write(dir.join(format!("f{:03}", i % 100)), format!("file {i} of the lower layer\n")).unwrap();
    }
}

struct Overlay {
    merged: PathBuf,
}

impl Overlay {
    fn mount(lower: &Path, upper: &Path, work: &Path, merged: &Path) -> Overlay {
        let opts = format!("lowerdir={},upperdir={},workdir={}", lower.display(), upper.display(), work.display());
        run(Command::new("mount").args(["-t", "overlay", "overlay", "-o", &opts]).arg(merged));
        Overlay { merged: merged.to_path_buf() }
    }
}

impl Drop for Overlay {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg(&self.merged).status();
    }
}

fn walk_table(scratch: &Path, sizes: &[usize]) {
    println!("## Upperdir single walk vs double walk (10 changed files, warm caches)\n");
    println!("| files in lower | upperdir walk (ms) | double walk (ms) | double / upperdir |");
    println!("|---:|---:|---:|---:|");
    let mut upper_times = Vec::new();
    for &n in sizes {
        let base = scratch.join(format!("walk-{n}"));
        let (lower, upper, work, merged) =
            (base.join("lower"), base.join("upper"), base.join("work"), base.join("merged"));
        for d in [&lower, &upper, &work, &merged] {
            std::fs::create_dir_all(d).unwrap();
        }
        build_tree(&lower, n);
        let ovl = Overlay::mount(&lower, &upper, &work, &merged);
        for k in 0..10 {
            let i = k * n / 10;
            std::fs::write(merged.join(format!("d{:04}/f{:03}", i / 100, i % 100)), format!("changed {k}\n")).unwrap();
        }
        let mut t_upper = Vec::new();
        for _ in 0..51 {
            let t = Instant::now();
            let cs = diff_overlay(&upper, std::slice::from_ref(&lower), None).unwrap();
            t_upper.push(t.elapsed());
            assert_eq!(cs.method, DiffMethod::Upperdir);
            assert_eq!(cs.iter().filter(|c| c.entry.as_ref().is_some_and(|e| e.size > 0)).count(), 10);
        }
        let mut t_double = Vec::new();
        for _ in 0..3 {
            let t = Instant::now();
            let cs = diff_trees(&lower, &ovl.merged).unwrap();
            t_double.push(t.elapsed());
            assert_eq!(cs.iter().filter(|c| c.entry.as_ref().is_some_and(|e| e.size > 0)).count(), 10);
        }
        let (u, d) = (median(t_upper), median(t_double));
        upper_times.push(u);
        println!("| {n} | {} | {} | {:.0}x |", ms(u), ms(d), d.as_secs_f64() / u.as_secs_f64());
        drop(ovl);
        std::fs::remove_dir_all(&base).unwrap();
    }
    if upper_times.len() > 1 {
        let ratio = upper_times.last().unwrap().as_secs_f64() / upper_times[0].as_secs_f64();
        println!("\nUpperdir walk, largest tree vs smallest: {ratio:.2}x\n");
    }
}

fn used_bytes(p: &Path) -> u64 {
    nix::unistd::sync();
    let s = nix::sys::statvfs::statvfs(p).unwrap();
    (s.blocks() - s.blocks_free()) * s.fragment_size()
}

fn tar_table(scratch: &Path) {
    let img = scratch.join("xfs.img");
    let mnt = scratch.join("xfs");
    std::fs::create_dir_all(&mnt).unwrap();
    File::create(&img).unwrap().set_len(4 << 30).unwrap();
    run(Command::new("mkfs.xfs").args(["-q", "-f", "-m", "reflink=1"]).arg(&img));
    run(Command::new("mount").arg("-o").arg("loop").arg(&img).arg(&mnt));
    let (lower, upper) = (mnt.join("lower"), mnt.join("upper"));
    std::fs::create_dir_all(&lower).unwrap();
    let files = 256usize;
    let size = 4usize << 20;
    let mut x = 0x243f6a8885a308d3u64;
    for i in 0..files {
        let dir = upper.join(format!("d{}", i / 32));
        std::fs::create_dir_all(&dir).unwrap();
        let data: Vec<u8> = (0..size / 8)
            .flat_map(|_| {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                x.to_le_bytes()
            })
            .collect();
        std::fs::write(dir.join(format!("f{i}")), data).unwrap();
    }
    let payload = (files * size) as u64;

    let before = used_bytes(&mnt);
    let t = Instant::now();
    let cs = diff_overlay(&upper, std::slice::from_ref(&lower), None).unwrap();
    let f = File::create(mnt.join("strata.tar")).unwrap();
    let mut out = FileTarOut::new(f).unwrap();
    let stats = write_layer(&cs, &mut out, &WriteOptions::default()).unwrap();
    let f = out.into_inner().unwrap();
    f.sync_all().unwrap();
    let t_strata = t.elapsed();
    drop(f);
    drop(cs);
    let alloc_strata = used_bytes(&mnt) - before;

    let before = used_bytes(&mnt);
    let t = Instant::now();
    run(Command::new("tar").arg("-cf").arg(mnt.join("gnu.tar")).arg("-C").arg(&upper).arg("."));
    File::open(mnt.join("gnu.tar")).unwrap().sync_all().unwrap();
    let t_tar = t.elapsed();
    let alloc_tar = used_bytes(&mnt) - before;
    let tar_size = std::fs::metadata(mnt.join("gnu.tar")).unwrap().len();

    println!("## 1 GiB upperdir to an uncompressed layer tar on XFS (reflink=1), output fsynced\n");
    println!("| writer | time (s) | tar bytes | newly allocated on the filesystem |");
    println!("|---|---:|---:|---:|");
    println!(
        "| strata diff (copy_file_range, aligned) | {:.3} | {} | {:.1} MiB |",
        t_strata.as_secs_f64(),
        stats.bytes,
        alloc_strata as f64 / 1048576.0
    );
    println!("| GNU tar -cf | {:.3} | {} | {:.1} MiB |", t_tar.as_secs_f64(), tar_size, alloc_tar as f64 / 1048576.0);
    println!(
        "\n{} files, {:.0} MiB of payload: strata {:.1}x faster than GNU tar, allocating {:.2}% of the payload.\n",
        files,
        payload as f64 / 1048576.0,
        t_tar.as_secs_f64() / t_strata.as_secs_f64(),
        alloc_strata as f64 * 100.0 / payload as f64
    );
    let _ = Command::new("umount").arg(&mnt).status();
    let _ = std::fs::remove_file(&img);
}

fn main() {
    if std::env::args().any(|a| a == "--list") {
        return;
    }
    if !nix::unistd::geteuid().is_root() {
        eprintln!("the differ benchmark mounts overlays and an XFS loop device: run it as root");
        return;
    }
    let base = std::env::var_os("STRATA_BENCH_TMP").map(PathBuf::from).unwrap_or_else(std::env::temp_dir);
    let scratch = tempfile::Builder::new().prefix("strata-bench-differ-").tempdir_in(base).unwrap();
    let sizes: Vec<usize> = std::env::var("STRATA_BENCH_SIZES")
        .ok()
        .map(|s| s.split(',').filter_map(|x| x.trim().parse().ok()).collect())
        .unwrap_or_else(|| vec![1_000, 10_000, 100_000]);
    walk_table(scratch.path(), &sizes);
    tar_table(scratch.path());
}
