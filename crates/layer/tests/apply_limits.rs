//! Resource limits against hostile layers: the entry cap, sizes declared by headers that are
//! refused before anything of that size is allocated (peak RSS from /proc/self/status), and
//! the extraction state per entry, measured (each in a fresh process of this binary: a
//! process has one peak RSS, and its allocator keeps what earlier tests freed).

mod common;

use std::io::{self, Read};
use std::process::Command;

use common::{H, TarBuilder};
use strata_layer::apply::{ApplyError, ApplyOptions, CopyContent, WhiteoutMode, apply, apply_simple};
use strata_layer::parse::ParseError;
use strata_layer::tarsplit::TarSplitRecorder;

/// A field of /proc/self/status, in bytes.
fn status_bytes(field: &str) -> u64 {
    let s = std::fs::read_to_string("/proc/self/status").unwrap();
    let line = s.lines().find(|l| l.starts_with(field)).unwrap_or_else(|| panic!("no {field} in /proc/self/status"));
    line.split_whitespace().nth(1).unwrap().parse::<u64>().unwrap() * 1024
}

/// Resets VmHWM to the current RSS (clear_refs "5", Linux 4.0+).
fn reset_peak() {
    std::fs::write("/proc/self/clear_refs", "5").unwrap();
}

/// A layer of `files` empty files, 1000 to a directory, with names of ordinary length
/// (`usr/share/doc/package-0000/file-000000.txt`), generated as it is read. With
/// `whiteouts`, the files are whiteouts (`.wh.file-000000.txt`).
struct ManyFiles {
    files: u64,
    whiteouts: bool,
    next: u64,
    block: Vec<u8>,
    pos: usize,
    ended: bool,
}

impl ManyFiles {
    fn new(files: u64) -> Self {
        ManyFiles { files, whiteouts: false, next: 0, block: Vec::new(), pos: 0, ended: false }
    }

    fn whiteouts(files: u64) -> Self {
        ManyFiles { whiteouts: true, ..Self::new(files) }
    }
}

impl Read for ManyFiles {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        if self.pos == self.block.len() {
            self.block.clear();
            self.pos = 0;
            if self.next < self.files {
                let i = self.next;
                if i.is_multiple_of(1000) {
                    self.block.extend_from_slice(&TarBuilder::header_block(&H::new(
                        format!("usr/share/doc/package-{:04}/", i / 1000),
                        b'5',
                    )));
                }
                let wh = if self.whiteouts { ".wh." } else { "" };
                let name = format!("usr/share/doc/package-{:04}/{wh}file-{i:06}.txt", i / 1000);
                self.block.extend_from_slice(&TarBuilder::header_block(&H::new(name, b'0')));
                self.next += 1;
            } else if !self.ended {
                self.block.resize(1024, 0);
                self.ended = true;
            } else {
                return Ok(0);
            }
        }
        let n = buf.len().min(self.block.len() - self.pos);
        buf[..n].copy_from_slice(&self.block[self.pos..self.pos + n]);
        self.pos += n;
        Ok(n)
    }
}

#[test]
fn a_layer_with_more_entries_than_the_cap_is_refused_naming_the_first_one_over() {
    let tar = TarBuilder::new().dir("d").file("d/a", b"a").file("d/.wh.b", b"").file("d/c", b"c").finish();
    let root = tempfile::tempdir().unwrap();
    let mut opts = ApplyOptions::new(WhiteoutMode::Oci);
    opts.max_entries = 4;
    apply_simple(root.path(), &tar[..], &opts).unwrap();

    let root = tempfile::tempdir().unwrap();
    opts.max_entries = 3;
    let err = apply_simple(root.path(), &tar[..], &opts).unwrap_err();
    assert!(matches!(&err, ApplyError::TooManyEntries { entry, limit: 3 } if entry.as_bytes() == b"d/c"), "{err:?}");
    assert!(err.to_string().contains("more than 3 entries"), "{err}");
    assert!(!root.path().join("d/c").exists());

    // Counted while streaming: the rest of a huge layer is never read.
    let root = tempfile::tempdir().unwrap();
    opts.max_entries = 1500;
    let err = apply_simple(root.path(), ManyFiles::new(u64::MAX), &opts).unwrap_err();
    assert!(matches!(err, ApplyError::TooManyEntries { limit: 1500, .. }), "{err:?}");
}

/// Extension headers (PAX, GNU long names and link names) announce their size before their
/// data; the parser refuses one over `Limits::max_extension` (1 MiB) before reading it. A
/// file's payload size is never allocated: its data is streamed.
#[test]
fn absurd_declared_sizes_are_refused_without_allocating_them() {
    reset_peak();
    let t = TarBuilder::new;
    let ext = |typeflag: u8, size: u64| {
        let mut h = H::new("././@LongLink", typeflag);
        h.size = size;
        let mut b = t();
        b.header(&h).data(&[b'a'; 4096]);
        b.finish()
    };
    for typeflag in [b'x', b'g', b'L', b'K'] {
        for size in [(1 << 20) + 1, 1 << 40, (8 << 30) - 1] {
            let root = tempfile::tempdir().unwrap();
            let err =
                apply_simple(root.path(), &ext(typeflag, size)[..], &ApplyOptions::new(WhiteoutMode::Oci)).unwrap_err();
            assert!(
                matches!(&err, ApplyError::Parse(ParseError::ExtensionTooLarge { size: s, .. }) if *s == size),
                "{} {size}: {err}",
                typeflag as char
            );
        }
    }
    // A file announcing an exabyte (PAX size) that then ends.
    let root = tempfile::tempdir().unwrap();
    let tar = t().pax(&[("size", b"1152921504606846976")]).file("big", b"only this").buf.clone();
    let err = apply_simple(root.path(), &tar[..], &ApplyOptions::new(WhiteoutMode::Oci)).unwrap_err();
    assert!(matches!(err, ApplyError::Parse(ParseError::Truncated { .. })), "{err}");
    // The largest PAX header allowed (1 MiB, a comment less the framing) still works.
    let root = tempfile::tempdir().unwrap();
    let value = vec![b'v'; (1 << 20) - 64];
    let tar = t().pax(&[("comment", &value)]).file("f", b"x").finish();
    apply_simple(root.path(), &tar[..], &ApplyOptions::new(WhiteoutMode::Oci)).unwrap();
    let peak = status_bytes("VmHWM:");
    assert!(peak < 512 << 20, "peak RSS {} MiB", peak >> 20);
}

/// Peak RSS over the RSS before while `layer` (of `entries` entries) is imported like the
/// store does (overlay mode, tar-split recorded), per entry.
fn state_per_entry(layer: ManyFiles, entries: u64) -> u64 {
    let shm = std::path::Path::new("/dev/shm");
    let root = if shm.is_dir() { tempfile::tempdir_in(shm) } else { tempfile::tempdir() }.unwrap();
    reset_peak();
    let before = status_bytes("VmRSS:");
    let mut recorder = TarSplitRecorder::new(io::sink());
    let opts = ApplyOptions::new(WhiteoutMode::Overlay);
    apply(root.path(), layer, &opts, &mut CopyContent, Some(&mut recorder), &mut |_| Ok(())).unwrap();
    let peak = status_bytes("VmHWM:");
    recorder.finish().unwrap();
    let per_entry = peak.saturating_sub(before) / entries;
    eprintln!("peak {} MiB over {} MiB before: {per_entry} bytes per entry", peak >> 20, before >> 20);
    per_entry
}

/// Runs [`measure_in_a_fresh_process`] alone in a new process of this test binary and
/// returns what it measured.
fn measured(what: &str) -> u64 {
    let exe = std::env::current_exe().unwrap();
    let out = Command::new(exe)
        .args(["--exact", "measure_in_a_fresh_process", "--nocapture", "--test-threads=1"])
        .env("STRATA_MEASURE", what)
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "measuring {what} failed:\n{stdout}\n{stderr}");
    eprint!("{stderr}");
    // The harness may print "test ... " on the same line first.
    let at = stdout.find("MEASURED ").expect("a MEASURED line") + "MEASURED ".len();
    stdout[at..].split_whitespace().next().unwrap().parse().unwrap()
}

/// Only does something when run by [`measured`].
#[test]
fn measure_in_a_fresh_process() {
    let Ok(what) = std::env::var("STRATA_MEASURE") else { return };
    const N: u64 = 100_000;
    let per_entry = match what.as_str() {
        "files" => state_per_entry(ManyFiles::new(N), N + N / 1000),
        "whiteouts" => state_per_entry(ManyFiles::whiteouts(N), N + N / 1000),
        other => panic!("nothing to measure called {other}"),
    };
    println!("MEASURED {per_entry}");
}

/// The state an import keeps per entry (apply's and the tar-split recorder's) for a layer of
/// 100,000 files (on tmpfs where there is one: only the syscalls are timed by the disk
/// otherwise). Before paths were kept once (in `layer`, and as 16-byte hashes in the
/// recorder) it was about 320 bytes.
#[test]
fn extraction_state_per_entry_is_small() {
    let per_entry = measured("files");
    assert!(per_entry < 250, "{per_entry} bytes of state per entry");
}

/// Whiteouts cost more (their names, and what is reported at the end), still bounded.
#[test]
fn extraction_state_per_whiteout_is_bounded() {
    if !strata_testutil::require_root() {
        return;
    }
    let per_entry = measured("whiteouts");
    assert!(per_entry < 400, "{per_entry} bytes of state per whiteout");
}
