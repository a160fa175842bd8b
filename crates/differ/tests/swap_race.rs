//! A container that swaps directories and files of its upperdir for symlinks to the host
//! while it is being committed never gets a byte of the host into the layer: the differ walks
//! and opens beneath the upperdir without following any symlink.
//!
//! The attacker thread plays the container: it keeps replacing `d` (a directory with a file)
//! and `d/f` by symlinks to a host directory and file holding a secret, and putting them
//! back. Each round diffs the upperdir and writes the layer; the layer must never contain
//! the secret, and every regular file in it must have content the container wrote.
//! `STRATA_RACE_ROUNDS` sets the rounds (default 400; run long by hand).

use std::fs;
use std::os::unix::fs::symlink;
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use strata_differ::{WriteOptions, diff_overlay, write_layer};
use strata_layer::out_file::WriteTarOut;

const SECRET: &[u8] = b"host-secret-5b1c9e0f-never-in-a-layer";
const MINE: &[u8] = b"the container's own data";

fn rounds() -> usize {
    std::env::var("STRATA_RACE_ROUNDS").ok().and_then(|v| v.parse().ok()).unwrap_or(400)
}

/// One attacker step: swap `d` for a symlink to the host directory, then `d/f` (put back)
/// for a symlink to the host file, then restore everything.
fn attack(upper: &Path, host: &Path) {
    let d = upper.join("d");
    let saved = upper.join("d.saved");
    if fs::rename(&d, &saved).is_ok() {
        let _ = symlink(host, &d);
        std::thread::yield_now();
        let _ = fs::remove_file(&d);
        let _ = fs::rename(&saved, &d);
    }
    let f = d.join("f");
    let fsaved = d.join("f.saved");
    if fs::rename(&f, &fsaved).is_ok() {
        let _ = symlink(host.join("f"), &f);
        std::thread::yield_now();
        let _ = fs::remove_file(&f);
        let _ = fs::rename(&fsaved, &f);
    }
}

#[test]
fn swapping_directories_for_symlinks_never_leaks_host_files() {
    let host = tempfile::tempdir().unwrap();
    fs::write(host.path().join("f"), SECRET).unwrap();
    fs::create_dir(host.path().join("sub")).unwrap();
    fs::write(host.path().join("sub/g"), SECRET).unwrap();
    let upper = tempfile::tempdir().unwrap();
    fs::create_dir(upper.path().join("d")).unwrap();
    fs::write(upper.path().join("d/f"), MINE).unwrap();
    fs::create_dir(upper.path().join("d/sub")).unwrap();
    fs::write(upper.path().join("d/sub/g"), MINE).unwrap();

    let stop = Arc::new(AtomicBool::new(false));
    let attacker = {
        let (stop, upper, host) = (Arc::clone(&stop), upper.path().to_owned(), host.path().to_owned());
        std::thread::spawn(move || {
            let mut n = 0u64;
            while !stop.load(Ordering::Relaxed) {
                attack(&upper, &host);
                n += 1;
            }
            n
        })
    };
    let (mut written, mut failed) = (0, 0);
    for round in 0..rounds() {
        // A commit of a running container may fail (a file it diffed was replaced before it
        // was read); it must never succeed with host data.
        let Ok(cs) = diff_overlay(upper.path(), &[], None) else {
            failed += 1;
            continue;
        };
        let mut out = WriteTarOut::new(Vec::new());
        if write_layer(&cs, &mut out, &WriteOptions::default()).is_err() {
            failed += 1;
            continue;
        }
        let tar = out.into_inner().unwrap();
        assert!(!tar.windows(SECRET.len()).any(|w| w == SECRET), "round {round}: the layer holds the host's secret");
        let mut a = tar::Archive::new(&tar[..]);
        for e in a.entries().unwrap() {
            let mut e = e.unwrap();
            if e.header().entry_type().is_file() && e.size() > 0 {
                let mut data = Vec::new();
                std::io::Read::read_to_end(&mut e, &mut data).unwrap();
                assert_eq!(data, MINE, "round {round}: {:?} has content the container never wrote", e.path());
            }
        }
        written += 1;
    }
    stop.store(true, Ordering::Relaxed);
    let swaps = attacker.join().unwrap();
    eprintln!("{written} layers written, {failed} diffs refused, {swaps} attacker swaps");
    assert!(written > 0, "no layer was ever written");
}
