//! Index benchmarks (`cargo bench --bench index`). Prints markdown tables.
//!
//! For a fresh index of 1M and 10M chunk keys (random BLAKE3 digests, one location each):
//! 1. insert throughput: `Index::commit` of batches of 100k keys (synced WAL, as the store
//!    commits a layer);
//! 2. size on disk after `Index::flush` + `Index::compact`: SST bytes per key (the location
//!    column family, and every file of the index directory);
//! 3. lookups per second with `Index::lookup` (batched `multi_get`, 65,536 keys per call,
//!    random order), hits and misses, cold-ish (the index just reopened with its files
//!    dropped from the page cache, so every block comes from the disk) and warm (the same
//!    keys again), on one thread and on two.
//!
//! Every answer is checked (a hit returns exactly its location, a miss nothing), so a broken
//! index cannot produce a figure.
//!
//! `STRATA_BENCH_TMP` chooses the scratch parent directory (default `/var/tmp`, ext4 here);
//! `STRATA_BENCH_INDEX_SIZES` overrides the key counts (comma-separated, e.g. `1000000`);
//! `STRATA_BENCH_KEEP` keeps the indexes (for a look with RocksDB's tools).

use std::fs::File;
use std::path::Path;
use std::time::{Duration, Instant};

use nix::fcntl::{PosixFadviseAdvice, posix_fadvise};
use strata_index::{Index, Key, LayerNum, Loc, OpenMode};
use strata_types::Blake3Digest;

/// Keys per committed batch.
const COMMIT_BATCH: u64 = 100_000;
/// Keys per `Index::lookup` call (a large pull asks about this many chunks at once).
const LOOKUP_CALL: usize = 65_536;
/// Lookups per measurement.
const LOOKUPS: u64 = 1_000_000;
/// Keys of absent chunks are numbered from here (never inserted).
const MISS_BASE: u64 = 1 << 48;

/// The `i`th chunk key: a BLAKE3 digest, so keys are uniformly spread like real ones.
fn chunk_key(i: u64) -> Key {
    Key::Chunk(Blake3Digest::of(&i.to_le_bytes()))
}

/// The location stored for key `i`: 64 KiB chunks, 16 per file, 100k chunks per layer.
fn loc_of(i: u64) -> Loc {
    Loc {
        layer: LayerNum((i / COMMIT_BATCH) as u32 + 1),
        file: (i % COMMIT_BATCH / 16) as u32,
        offset: (i % 16) * 65_536,
        len: 65_536,
    }
}

/// A fixed pseudo-random sequence of `count` numbers below `n` (xorshift; no dependency).
fn sample(n: u64, count: u64, seed: u64) -> Vec<u64> {
    let mut x = seed | 1;
    (0..count)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x % n
        })
        .collect()
}

fn dir_bytes(dir: &Path) -> u64 {
    std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().metadata().unwrap())
        .filter(|m| m.is_file())
        .map(|m| m.len())
        .sum()
}

/// Drops the index's files from the page cache (the index must be closed).
fn drop_cached(dir: &Path) {
    for e in std::fs::read_dir(dir).unwrap() {
        let f = File::open(e.unwrap().path()).unwrap();
        posix_fadvise(&f, 0, 0, PosixFadviseAdvice::POSIX_FADV_DONTNEED).unwrap();
    }
}

struct Inserted {
    keys: u64,
    insert: Duration,
    last_batch: Duration,
    compact: Duration,
    loc_sst_bytes: u64,
    dir_bytes: u64,
}

fn insert(dir: &Path, n: u64) -> Inserted {
    let index = Index::open(dir, OpenMode::ReadWrite).unwrap();
    let mut insert = Duration::ZERO;
    let mut last_batch = Duration::ZERO;
    let mut start = 0;
    while start < n {
        let end = (start + COMMIT_BATCH).min(n);
        let keys: Vec<(Key, Loc)> = (start..end).map(|i| (chunk_key(i), loc_of(i))).collect();
        let t = Instant::now();
        let mut batch = index.batch();
        for (k, l) in keys {
            batch.add_loc(k, l);
        }
        index.commit(batch).unwrap();
        last_batch = t.elapsed();
        insert += last_batch;
        start = end;
    }
    let t = Instant::now();
    index.flush().unwrap();
    index.compact();
    let compact = t.elapsed();
    let stats = index.stats().unwrap();
    drop(index);
    Inserted { keys: n, insert, last_batch, compact, loc_sst_bytes: stats.loc_sst_bytes, dir_bytes: dir_bytes(dir) }
}

/// Looks up `ids` (key numbers) on `threads` threads; checks every answer. Returns lookups/s.
fn lookups(index: &Index, ids: &[u64], hits: bool, threads: usize) -> f64 {
    let keys: Vec<Key> = ids.iter().map(|&i| chunk_key(i)).collect();
    let t = Instant::now();
    std::thread::scope(|s| {
        for (part_keys, part_ids) in
            keys.chunks(keys.len().div_ceil(threads)).zip(ids.chunks(keys.len().div_ceil(threads)))
        {
            s.spawn(move || {
                for (call_keys, call_ids) in part_keys.chunks(LOOKUP_CALL).zip(part_ids.chunks(LOOKUP_CALL)) {
                    let found = index.lookup(call_keys).unwrap();
                    for (locs, &i) in found.iter().zip(call_ids) {
                        if hits {
                            assert_eq!(locs.as_slice(), &[loc_of(i)], "wrong answer for key {i}");
                        } else {
                            assert!(locs.is_empty(), "an absent key {i} was found");
                        }
                    }
                }
            });
        }
    });
    ids.len() as f64 / t.elapsed().as_secs_f64()
}

struct LookupRow {
    hits: bool,
    cold: f64,
    warm: f64,
    warm2: f64,
}

fn measure_lookups(dir: &Path, n: u64, hits: bool) -> LookupRow {
    let ids: Vec<u64> = if hits {
        sample(n, LOOKUPS, 0x9e37_79b9_7f4a_7c15)
    } else {
        sample(n, LOOKUPS, 0x2545_f491_4f6c_dd1d).into_iter().map(|i| MISS_BASE + i).collect()
    };
    drop_cached(dir);
    let index = Index::open(dir, OpenMode::ReadWrite).unwrap();
    let cold = lookups(&index, &ids, hits, 1);
    let warm = lookups(&index, &ids, hits, 1);
    let warm2 = lookups(&index, &ids, hits, 2);
    LookupRow { hits, cold, warm, warm2 }
}

fn human(n: u64) -> String {
    if n >= 1_000_000 && n.is_multiple_of(1_000_000) {
        format!("{}M", n / 1_000_000)
    } else if n >= 1000 && n.is_multiple_of(1000) {
        format!("{}k", n / 1000)
    } else {
        n.to_string()
    }
}

fn per_sec(v: f64) -> String {
    format!("{:.2}M", v / 1e6)
}

fn main() {
    let base = std::env::var_os("STRATA_BENCH_TMP").map(std::path::PathBuf::from).unwrap_or_else(|| "/var/tmp".into());
    let sizes: Vec<u64> = std::env::var("STRATA_BENCH_INDEX_SIZES")
        .map(|s| s.split(',').map(|x| x.trim().parse().expect("STRATA_BENCH_INDEX_SIZES: numbers")).collect())
        .unwrap_or_else(|_| vec![1_000_000, 10_000_000]);
    println!("scratch: {} (one fresh index per size)\n", base.display());

    let mut size_rows = Vec::new();
    let mut lookup_rows = Vec::new();
    for &n in &sizes {
        let scratch = tempfile::Builder::new().prefix("strata-bench-index-").tempdir_in(&base).unwrap();
        let dir = scratch.path().join("index");
        eprintln!("inserting {n} keys ...");
        let ins = insert(&dir, n);
        eprintln!("looking up ...");
        let rows = [measure_lookups(&dir, n, true), measure_lookups(&dir, n, false)];
        size_rows.push(ins);
        lookup_rows.push((n, rows));
        if std::env::var_os("STRATA_BENCH_KEEP").is_some() {
            eprintln!("kept {}", scratch.keep().display());
        }
    }

    println!("### Index size and insert throughput\n");
    println!(
        "| chunk keys | insert (keys/s, commits of 100k) | last commit (ms) | flush + compact (s) | `locs` SST bytes/key | index dir bytes/key |"
    );
    println!("|---:|---:|---:|---:|---:|---:|");
    for r in &size_rows {
        println!(
            "| {} | {} | {:.0} | {:.1} | {:.1} | {:.1} |",
            human(r.keys),
            per_sec(r.keys as f64 / r.insert.as_secs_f64()),
            r.last_batch.as_secs_f64() * 1e3,
            r.compact.as_secs_f64(),
            r.loc_sst_bytes as f64 / r.keys as f64,
            r.dir_bytes as f64 / r.keys as f64,
        );
    }
    println!("\n### Batched lookups (`Index::lookup`, {LOOKUPS} random keys, {LOOKUP_CALL} per call)\n");
    println!("| chunk keys | kind | cold-ish, 1 thread (lookups/s) | warm, 1 thread | warm, 2 threads |");
    println!("|---:|---|---:|---:|---:|");
    for (n, rows) in &lookup_rows {
        for r in rows {
            println!(
                "| {} | {} | {} | {} | {} |",
                human(*n),
                if r.hits { "hits" } else { "misses" },
                per_sec(r.cold),
                per_sec(r.warm),
                per_sec(r.warm2)
            );
        }
    }
}
