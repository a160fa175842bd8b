//! Store diff, merge and squash of two related large images (issue 8's benchmark).
//!
//! Data: `$STRATA_PEERS/oci/rootfs-a` and `rootfs-b` (debootstrap minbase bookworm, and the same
//! plus python3, from `scripts/setup-peers.sh`) imported into a store on XFS (`STRATA_BENCH_XFS`, default `$STRATA_PEERS/xfs`;
//! the store is kept between runs in `strata-bench-merge/`). Run as root:
//!
//!     cargo bench --bench merge
//!
//! 1. Per-layer metadata: file records, their encoded bytes per file, and the index's SST
//!    bytes per file (files and records column families, flushed and compacted).
//! 2. `strata diff a b` (and b a) from the store's metadata, vs the double walk of the two
//!    root filesystems (strata_differ::diff_trees) on the images mounted read-only with
//!    overlayfs, and on the plain debootstrap trees `$STRATA_PEERS/rootfs-{a,b}`. Warm caches;
//!    median of several runs; the layer is written to a file on the same XFS.
//! 3. `strata merge` of the two images (metadata only), and `strata squash` of b.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use strata_differ::{TempOverlay, WriteOptions, diff_trees, write_layer};
use strata_layer::out_file::FileTarOut;
use strata_store::{NoProgress, OpenOptions, Store};
use strata_types::ImageName;

fn median(mut v: Vec<Duration>) -> Duration {
    v.sort();
    v[v.len() / 2]
}

fn ms(d: Duration) -> String {
    format!("{:.1}", d.as_secs_f64() * 1e3)
}

fn times(n: usize, mut f: impl FnMut()) -> Duration {
    median(
        (0..n)
            .map(|_| {
                let t = Instant::now();
                f();
                t.elapsed()
            })
            .collect(),
    )
}

fn strata(root: &Path, args: &[&str]) -> String {
    let out = Command::new(env!("CARGO_BIN_EXE_strata")).arg("--root").arg(root).args(args).output().unwrap();
    assert!(out.status.success(), "strata {args:?}: {}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn name(s: &str) -> ImageName {
    ImageName::new(s).unwrap()
}

fn open(root: &Path) -> Store {
    Store::open(root, OpenOptions::default()).unwrap()
}

/// Writes a changeset as an uncompressed tar to `out`; returns its size.
fn write(cs: &strata_differ::Changeset, out: &Path) -> u64 {
    let f = std::fs::File::create(out).unwrap();
    let mut sink = FileTarOut::new(f).unwrap();
    write_layer(cs, &mut sink, &WriteOptions::default()).unwrap();
    sink.into_inner().unwrap().metadata().unwrap().len()
}

fn metadata_table(root: &Path) {
    let store = open(root);
    let (mut files, mut encoded) = (0u64, 0u64);
    for img in ["a", "b"] {
        for id in &store.image(&name(img)).unwrap().layers {
            let rec = store.layer_required(id).unwrap();
            for f in store.layer_files(&rec).unwrap() {
                files += 1;
                encoded += f.encode().len() as u64 + 8;
            }
        }
    }
    store.index().flush().unwrap();
    store.index().compact();
    let stats = store.index().stats().unwrap();
    let sst = stats.sst_bytes - stats.loc_sst_bytes;
    println!("## Per-layer metadata (rootfs-a + rootfs-b, {files} file records)\n");
    println!("| | bytes | bytes per file |");
    println!("|---|---:|---:|");
    println!("| encoded records + keys | {encoded} | {:.1} |", encoded as f64 / files as f64);
    println!("| SST files (files + records CFs, lz4, compacted) | {sst} | {:.1} |", sst as f64 / files as f64);
    println!();
}

fn diff_table(root: &Path, out_dir: &Path) {
    println!("## Store diff vs double walk (warm caches, median)\n");
    println!("| diff | method | entries written | compute (ms) | compute + write layer (ms) |");
    println!("|---|---|---:|---:|---:|");
    let out = out_dir.join("layer.tar");
    let mut meta_ab = Duration::ZERO;
    for (a, b) in [("a", "b"), ("b", "a")] {
        let store = open(root);
        let mut cs = None;
        let compute = times(7, || cs = Some(store.diff_images(&name(a), &name(b)).unwrap()));
        let cs = cs.unwrap();
        let total = times(5, || {
            let cs = store.diff_images(&name(a), &name(b)).unwrap();
            write(&cs, &out);
        });
        drop(store);
        let cli = times(5, || {
            strata(root, &["diff", a, b, "-o", out.to_str().unwrap()]);
        });
        if a == "a" {
            meta_ab = total;
        }
        println!(
            "| store {a} -> {b} | {} | {} | {} | {} (CLI process: {}) |",
            cs.method,
            cs.len(),
            ms(compute),
            ms(total),
            ms(cli)
        );
    }
    let paths = strata_store::paths::StorePaths::new(root);
    let store = open(root);
    let lowers = |img: &str| -> Vec<PathBuf> {
        store.image(&name(img)).unwrap().layers.iter().rev().map(|l| paths.layer_diff(l)).collect()
    };
    let (ma, mb) = (TempOverlay::mount(&lowers("a"), &[]).unwrap(), TempOverlay::mount(&lowers("b"), &[]).unwrap());
    drop(store);
    let mut n = 0;
    let compute = times(3, || n = diff_trees(ma.path(), mb.path()).unwrap().len());
    let total = times(3, || {
        let cs = diff_trees(ma.path(), mb.path()).unwrap();
        write(&cs, &out);
    });
    println!("| double walk of the mounted images a -> b | double-walk | {n} | {} | {} |", ms(compute), ms(total));
    let ratio = total.as_secs_f64() / meta_ab.as_secs_f64();
    let peers = strata_testutil::peers_dir();
    let (ra, rb) = (peers.join("rootfs-a"), peers.join("rootfs-b"));
    let (ra, rb) = (ra.as_path(), rb.as_path());
    if ra.is_dir() && rb.is_dir() {
        let compute = times(3, || n = diff_trees(ra, rb).unwrap().len());
        println!("| double walk of rootfs-a -> rootfs-b | double-walk | {n} | {} | |", ms(compute));
    }
    println!("\nDouble walk / store diff (a -> b, compute + write): {ratio:.1}x\n");
}

fn merge_table(root: &Path) {
    println!("## Merge and squash\n");
    println!("| operation | ms (median) |");
    println!("|---|---:|");
    let mut i = 0;
    let lib = times(7, || {
        let store = open(root);
        let m = name(&format!("bench-merge-{i}"));
        let r = store.merge(&m, &[name("a"), name("b")], false).unwrap();
        assert!(r.created);
        store.rmi(&m).unwrap();
        i += 1;
    });
    let store = open(root);
    let conflicts = times(7, || {
        store.merge_conflicts(&[name("a"), name("b")]).unwrap();
    });
    let n = store.merge_conflicts(&[name("a"), name("b")]).unwrap().len();
    drop(store);
    let cli = times(5, || {
        strata(root, &["merge", "bench-merge-cli", "a", "b"]);
        strata(root, &["rmi", "bench-merge-cli"]);
    });
    let images = times(5, || {
        strata(root, &["images"]);
    });
    println!("| conflicts of a, b ({n} found; records loaded, views built) | {} |", ms(conflicts));
    println!("| Store::merge a b (open for writing, conflicts, image record, rmi) | {} |", ms(lib));
    println!("| `strata merge m a b` + `strata rmi m` (two processes) | {} |", ms(cli));
    println!("| `strata images` (one process, for scale) | {} |", ms(images));
    let t = Instant::now();
    let out = strata(root, &["squash", "b", "bench-squashed", "--json"]);
    let squash = t.elapsed();
    strata(root, &["rmi", "bench-squashed"]);
    println!("| `strata squash b` (XFS, reflinks) | {} |", ms(squash));
    println!("\nsquash report: {}", out.trim());
}

fn main() {
    if !nix::unistd::geteuid().is_root() {
        eprintln!("skipped: the merge benchmark needs root (overlay mounts)");
        return;
    }
    let xfs = std::env::var_os("STRATA_BENCH_XFS")
        .map(PathBuf::from)
        .unwrap_or_else(|| strata_testutil::peers_dir().join("xfs"));
    let dir = xfs.join("strata-bench-merge");
    let root = dir.join("store");
    std::fs::create_dir_all(&dir).unwrap();
    {
        let store = open(&root);
        for img in ["a", "b"] {
            if !store.has_image(&name(img)).unwrap() {
                eprintln!("importing rootfs-{img}...");
                store
                    .import_oci(
                        &format!("oci:{}/oci/rootfs-{img}", strata_testutil::peers_dir().display()),
                        Some(name(img)),
                        &NoProgress,
                    )
                    .unwrap();
            }
        }
    }
    metadata_table(&root);
    diff_table(&root, &dir);
    merge_table(&root);
}
