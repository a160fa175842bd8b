//! The differs against the kernel: random operation sequences on real overlay mounts (over
//! several lowers that carry whiteouts and opaque directories like store layers), then both
//! differs' layers applied onto a copy of the lowers with OCI whiteout rules must give exactly
//! the merged view (content, type, mode, uid, gid, mtime in ns, xattrs other than overlay's,
//! symlink targets, device numbers, hardlink groups).
//!
//! `STRATA_ORACLE_ROUNDS` (default 400) sets the number of sequences, `STRATA_ORACLE_SEED`
//! the first seed (default: from the clock, printed). A failure prints the seed that replays it.

mod common;

use std::io::Write;
use std::os::unix::fs::{FileExt, MetadataExt};
use std::path::{Path, PathBuf};

use common::ovl::Scenario;
use common::*;
use nix::sys::stat::SFlag;
use rand::rngs::StdRng;
use rand::{RngExt, SeedableRng};
use strata_differ::{DiffMethod, WriteOptions};

const NAMES: &[&str] = &["a", "b", "c", "dir", "f", "x y", "é", "zz"];
const MODES: &[u32] = &[0o644, 0o600, 0o755, 0o4755, 0o2750, 0o1777, 0o000, 0o444];
const IDS: &[u32] = &[0, 1, 1000, 65534, 3_000_000];

fn name(rng: &mut StdRng) -> &'static str {
    NAMES[rng.random_range(0..NAMES.len())]
}

fn bytes(rng: &mut StdRng, max: usize) -> Vec<u8> {
    let n = if rng.random_bool(0.2) { 0 } else { rng.random_range(0..max) };
    let seed: u8 = rng.random();
    (0..n).map(|i| seed.wrapping_add((i * 7 % 251) as u8)).collect()
}

/// Objects of a tree (root excluded): `(relative path, is_dir, is_regular_file)`.
fn listing(root: &Path) -> Vec<(PathBuf, bool, bool)> {
    let mut out = Vec::new();
    let mut stack = vec![root.to_path_buf()];
    while let Some(d) = stack.pop() {
        let Ok(rd) = std::fs::read_dir(&d) else { continue };
        let mut names: Vec<_> = rd.map(|e| e.unwrap().path()).collect();
        names.sort();
        for p in names {
            let Ok(md) = std::fs::symlink_metadata(&p) else { continue };
            let rel = p.strip_prefix(root).unwrap().to_path_buf();
            out.push((rel, md.is_dir(), md.is_file()));
            if md.is_dir() {
                stack.push(p);
            }
        }
    }
    out
}

fn pick(
    rng: &mut StdRng,
    l: &[(PathBuf, bool, bool)],
    want: impl Fn(&(PathBuf, bool, bool)) -> bool,
) -> Option<PathBuf> {
    let c: Vec<&PathBuf> = l.iter().filter(|e| want(e)).map(|e| &e.0).collect();
    (!c.is_empty()).then(|| c[rng.random_range(0..c.len())].clone())
}

/// A random directory of the tree (or its root) and a fresh name in it.
fn fresh(rng: &mut StdRng, root: &Path, l: &[(PathBuf, bool, bool)]) -> Option<PathBuf> {
    let dir = if rng.random_bool(0.3) { PathBuf::new() } else { pick(rng, l, |e| e.1).unwrap_or_default() };
    let p = dir.join(name(rng));
    (std::fs::symlink_metadata(root.join(&p)).is_err()).then_some(p)
}

/// Fills one lower layer like a store layer: files, links, devices, xattrs, and (when it is
/// not the bottom layer) whiteouts, opaque directories and xattr whiteouts.
fn build_lower(rng: &mut StdRng, root: &Path, below: &[PathBuf]) {
    let mut known: Vec<(PathBuf, bool, bool)> = below.iter().flat_map(|b| listing(b)).collect();
    for _ in 0..rng.random_range(3..18) {
        let l = listing(root);
        let dir = if rng.random_bool(0.4) { PathBuf::new() } else { pick(rng, &l, |e| e.1).unwrap_or_default() };
        let p = root.join(dir.join(name(rng)));
        if std::fs::symlink_metadata(&p).is_ok() {
            continue;
        }
        match rng.random_range(0..10) {
            0..=2 => write(&p, &bytes(rng, 9000)),
            3 | 4 => mkdir(&p),
            5 => symlink(&format!("../{}", name(rng)), &p),
            6 => {
                if let Some(f) = pick(rng, &l, |e| e.2) {
                    let _ = std::fs::hard_link(root.join(f), &p);
                }
            }
            7 => {
                let kinds = [SFlag::S_IFCHR, SFlag::S_IFBLK, SFlag::S_IFIFO];
                mknod(&p, kinds[rng.random_range(0..3)], rng.random_range(1..9), rng.random_range(0..9));
            }
            _ => {
                write(&p, &bytes(rng, 100));
                setxattr(&p, &format!("user.k{}", rng.random_range(0..3)), &bytes(rng, 20));
            }
        }
    }
    if !below.is_empty() {
        known.retain(|e| std::fs::symlink_metadata(root.join(&e.0)).is_err());
        for _ in 0..rng.random_range(0..4) {
            let Some(victim) = pick(rng, &known, |_| true) else { break };
            let p = root.join(&victim);
            let parent = p.parent().unwrap();
            if std::fs::create_dir_all(parent).is_err() || std::fs::symlink_metadata(&p).is_ok() {
                continue;
            }
            match rng.random_range(0..3) {
                0 => whiteout(&p),
                1 => {
                    // An xattr whiteout; its directory is marked opaque=x (not opaque). The
                    // kernel lists xattr whiteouts in directories not marked x, so never mix.
                    let parent = p.parent().unwrap();
                    match xattr::get(parent, "trusted.overlay.opaque").unwrap().as_deref() {
                        None => setxattr(parent, "trusted.overlay.opaque", b"x"),
                        Some(b"x") => {}
                        Some(_) => continue,
                    }
                    write(&p, b"");
                    setxattr(&p, "trusted.overlay.whiteout", b"");
                }
                _ => {
                    if victim.parent().is_some_and(|d| !d.as_os_str().is_empty()) {
                        let d = p.parent().unwrap();
                        if xattr::get(d, "trusted.overlay.opaque").unwrap().is_none() {
                            setxattr(d, "trusted.overlay.opaque", b"y");
                        }
                    }
                }
            }
        }
    }
    // Old times everywhere, deepest first so directories keep theirs.
    let mut all = listing(root);
    all.sort_by_key(|e| std::cmp::Reverse(e.0.components().count()));
    for (rel, _, _) in all {
        let nanos = if rng.random_bool(0.3) { 0 } else { rng.random_range(1..1_000_000_000) };
        set_mtime(&root.join(rel), rng.random_range(1_000_000_000..1_600_000_000), nanos);
    }
}

/// One random operation on the merged view; failures the kernel reports are part of the game.
fn random_op(rng: &mut StdRng, m: &Path, log: &mut Vec<String>) {
    let l = listing(m);
    let op = rng.random_range(0..18);
    let any_file = |e: &(PathBuf, bool, bool)| e.2;
    let non_dir = |e: &(PathBuf, bool, bool)| !e.1;
    let r: std::io::Result<String> = (|| {
        Ok(match op {
            0 => {
                let Some(p) = fresh(rng, m, &l) else { return Ok("noop".into()) };
                std::fs::write(m.join(&p), bytes(rng, 20_000))?;
                format!("create {p:?}")
            }
            1..=3 => {
                let Some(p) = pick(rng, &l, any_file) else { return Ok("noop".into()) };
                let f = std::fs::OpenOptions::new().write(true).append(op == 2).open(m.join(&p))?;
                let len = f.metadata()?.len();
                match op {
                    1 => f.write_all_at(&bytes(rng, len.max(1) as usize), rng.random_range(0..len.max(1)))?,
                    2 => (&f).write_all(&bytes(rng, 5000))?,
                    _ => f.set_len(rng.random_range(0..len.max(1) * 2))?,
                }
                format!("{} {p:?}", ["write", "append", "truncate"][op as usize - 1])
            }
            4 => {
                let Some(p) = pick(rng, &l, |_| true) else { return Ok("noop".into()) };
                if std::fs::symlink_metadata(m.join(&p))?.file_type().is_symlink() {
                    return Ok("noop".into());
                }
                let mode = MODES[rng.random_range(0..MODES.len())];
                chmod(&m.join(&p), mode);
                format!("chmod {mode:o} {p:?}")
            }
            5 => {
                let Some(p) = pick(rng, &l, |_| true) else { return Ok("noop".into()) };
                let (u, g) = (IDS[rng.random_range(0..IDS.len())], IDS[rng.random_range(0..IDS.len())]);
                nix::unistd::fchownat(
                    nix::fcntl::AT_FDCWD,
                    &m.join(&p),
                    Some(u.into()),
                    Some(g.into()),
                    nix::fcntl::AtFlags::AT_SYMLINK_NOFOLLOW,
                )?;
                format!("chown {u}:{g} {p:?}")
            }
            6 => {
                let Some(p) = pick(rng, &l, |e| e.1 || e.2) else { return Ok("noop".into()) };
                let ns = if rng.random_bool(0.5) { "user" } else { "trusted" };
                let k = format!("{ns}.k{}", rng.random_range(0..3));
                xattr::set(m.join(&p), &k, &bytes(rng, 40))?;
                format!("setxattr {k} {p:?}")
            }
            7 => {
                let Some(p) = fresh(rng, m, &l) else { return Ok("noop".into()) };
                std::os::unix::fs::symlink(format!("/{}", name(rng)), m.join(&p))?;
                format!("symlink {p:?}")
            }
            8 => {
                let (Some(src), Some(p)) = (pick(rng, &l, any_file), fresh(rng, m, &l)) else {
                    return Ok("noop".into());
                };
                std::fs::hard_link(m.join(&src), m.join(&p))?;
                format!("link {src:?} {p:?}")
            }
            9 => {
                let Some(p) = fresh(rng, m, &l) else { return Ok("noop".into()) };
                nix::unistd::mkfifo(&m.join(&p), nix::sys::stat::Mode::from_bits_truncate(0o600))?;
                format!("mkfifo {p:?}")
            }
            10 => {
                let Some(p) = fresh(rng, m, &l) else { return Ok("noop".into()) };
                let kind = if rng.random_bool(0.5) { SFlag::S_IFCHR } else { SFlag::S_IFBLK };
                mknod(&m.join(&p), kind, rng.random_range(1..20), rng.random_range(0..20));
                format!("mknod {p:?}")
            }
            11 => {
                let Some(p) = pick(rng, &l, non_dir) else { return Ok("noop".into()) };
                std::fs::remove_file(m.join(&p))?;
                format!("rm {p:?}")
            }
            12 | 13 => {
                let Some(p) = pick(rng, &l, |e| e.1) else { return Ok("noop".into()) };
                std::fs::remove_dir_all(m.join(&p))?;
                if op == 13 {
                    std::fs::create_dir(m.join(&p))?;
                    if rng.random_bool(0.5) {
                        std::fs::write(m.join(&p).join(name(rng)), bytes(rng, 100))?;
                    }
                    return Ok(format!("rm -r + mkdir {p:?}"));
                }
                format!("rm -r {p:?}")
            }
            14 => {
                let Some(p) = fresh(rng, m, &l) else { return Ok("noop".into()) };
                std::fs::create_dir(m.join(&p))?;
                format!("mkdir {p:?}")
            }
            15 => {
                let (Some(src), Some(dst)) = (pick(rng, &l, non_dir), fresh(rng, m, &l)) else {
                    return Ok("noop".into());
                };
                std::fs::rename(m.join(&src), m.join(&dst))?;
                format!("mv {src:?} {dst:?}")
            }
            _ => {
                let (Some(src), Some(dst)) = (pick(rng, &l, |e| e.1), fresh(rng, m, &l)) else {
                    return Ok("noop".into());
                };
                if dst.starts_with(&src) {
                    return Ok("noop".into());
                }
                match std::fs::rename(m.join(&src), m.join(&dst)) {
                    Ok(()) => format!("mv dir {src:?} {dst:?}"),
                    Err(e) if e.raw_os_error() == Some(libc::EXDEV) => {
                        // What mv(1) does without redirect_dir: copy, then remove.
                        copy_view(&m.join(&src), &m.join(&dst));
                        std::fs::remove_dir_all(m.join(&src))?;
                        format!("mv dir (EXDEV: cp -a + rm -r) {src:?} {dst:?}")
                    }
                    Err(e) => return Err(e),
                }
            }
        })
    })();
    log.push(match r {
        Ok(s) => s,
        Err(e) => format!("op {op} failed: {e}"),
    });
}

fn has_xattr_below(root: &Path, suffix: &str) -> bool {
    listing(root).iter().any(|(rel, _, _)| {
        let p = root.join(rel);
        ["trusted.overlay.", "user.overlay."]
            .iter()
            .any(|ns| xattr::get(&p, format!("{ns}{suffix}")).ok().flatten().is_some())
    })
}

fn round(seed: u64) {
    let mut rng = StdRng::seed_from_u64(seed);
    let nlowers = rng.random_range(1..4);
    let mut s = Scenario::new(nlowers);
    for i in (0..nlowers).rev() {
        let below: Vec<PathBuf> = s.lowers[i + 1..].to_vec();
        build_lower(&mut rng, &s.lowers[i].clone(), &below);
    }
    let options = match rng.random_range(0..10) {
        0..=5 => "",
        6..=8 => "redirect_dir=on",
        _ => "redirect_dir=on,metacopy=on",
    };
    let described = describe_layers(&s.lowers);
    s.mount(options);
    let r = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        run_ops_and_check(seed, &mut rng, &s, nlowers, options)
    }));
    if let Err(e) = r {
        eprintln!("lowers of seed {seed} (top-most first):\n{described}");
        std::panic::resume_unwind(e);
    }
}

/// Every object of each layer with its overlay xattrs, for failure reports.
fn describe_layers(lowers: &[PathBuf]) -> String {
    let mut out = String::new();
    for (i, l) in lowers.iter().enumerate() {
        out.push_str(&format!("layer {i}:\n"));
        for (rel, _, _) in listing(l) {
            let p = l.join(&rel);
            let md = std::fs::symlink_metadata(&p).unwrap();
            let ovl: Vec<String> = xattr::list(&p)
                .unwrap()
                .filter(|n| n.to_string_lossy().contains(".overlay."))
                .map(|n| {
                    format!(
                        "{}={:?}",
                        n.to_string_lossy(),
                        String::from_utf8_lossy(&xattr::get(&p, &n).unwrap().unwrap_or_default())
                    )
                })
                .collect();
            out.push_str(&format!("  {:?} mode {:o} size {} {}\n", rel, md.mode(), md.len(), ovl.join(" ")));
        }
    }
    out
}

fn run_ops_and_check(seed: u64, rng: &mut StdRng, s: &Scenario, nlowers: usize, options: &str) {
    let mut log = vec![format!("lowers {nlowers}, options {options:?}")];
    for _ in 0..rng.random_range(1..25) {
        random_op(rng, &s.merged, &mut log);
    }
    if std::env::var_os("STRATA_ORACLE_VERBOSE").is_some() {
        eprintln!("seed {seed}:\n  {}\n{}", log.join("\n  "), describe_layers(std::slice::from_ref(&s.upper)));
    }
    let ctx = |what: &str| format!("seed {seed} ({what}); ops:\n  {}", log.join("\n  "));
    let expected = snapshot(&s.merged);
    let base = s.base_view();

    let double = s.diff_double();
    assert_eq!(double.method, DiffMethod::DoubleWalk);
    apply_and_compare(base.path(), &layer_bytes(&double, &WriteOptions::default()), &expected, &ctx("double walk"));

    let upper = s.diff_upper();
    let redirect = has_xattr_below(&s.upper, "redirect");
    let metacopy = has_xattr_below(&s.upper, "metacopy");
    if redirect || metacopy {
        assert_eq!(upper.method, DiffMethod::DoubleWalk, "{}", ctx("redirect/metacopy must force the fallback"));
        let reason = upper.fallback_reason.clone().unwrap();
        assert!(reason.contains("redirect") || reason.contains("metacopy"), "{reason}");
    } else {
        assert_eq!(upper.method, DiffMethod::Upperdir, "{} {:?}", ctx("single walk expected"), upper.fallback_reason);
    }
    apply_and_compare(
        base.path(),
        &layer_bytes(&upper, &WriteOptions { align_data: rng.random_bool(0.5) }),
        &expected,
        &ctx(&format!("upper differ, method {}", upper.method)),
    );
}

#[test]
fn both_differs_reproduce_the_merged_view() {
    if !strata_testutil::require_root() {
        return;
    }
    let rounds: u64 = std::env::var("STRATA_ORACLE_ROUNDS").ok().and_then(|v| v.parse().ok()).unwrap_or(400);
    let first: u64 = std::env::var("STRATA_ORACLE_SEED").ok().and_then(|v| v.parse().ok()).unwrap_or_else(|| {
        std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_secs() % 1_000_000 * 1000
    });
    eprintln!("oracle: {rounds} rounds from seed {first} (STRATA_ORACLE_SEED={first} replays)");
    for seed in first..first + rounds {
        if let Err(e) = std::panic::catch_unwind(|| round(seed)) {
            eprintln!("oracle failed at seed {seed}: replay with STRATA_ORACLE_SEED={seed} STRATA_ORACLE_ROUNDS=1");
            std::panic::resume_unwind(e);
        }
    }
}

#[test]
fn renaming_a_lower_directory_with_redirect_dir_falls_back() {
    if !strata_testutil::require_root() {
        return;
    }
    let mut s = Scenario::new(2);
    write(&s.l(1, "old/deep/file"), b"from the bottom layer");
    write(&s.l(0, "old/top"), b"from the top layer");
    s.mount("redirect_dir=on");
    std::fs::rename(s.m("old"), s.m("new")).unwrap();
    assert!(xattr::get(s.upper.join("new"), "trusted.overlay.redirect").unwrap().is_some());
    let expected = snapshot(&s.merged);
    let base = s.base_view();
    let cs = s.diff_upper();
    assert_eq!(cs.method, DiffMethod::DoubleWalk);
    assert!(cs.fallback_reason.as_deref().unwrap().contains("redirect"), "{:?}", cs.fallback_reason);
    let names = tar_names(&layer_bytes(&cs, &WriteOptions::default()));
    assert_eq!(names, [".wh.old", "new/", "new/deep/", "new/deep/file", "new/top"]);
    apply_and_compare(base.path(), &layer_bytes(&cs, &WriteOptions::default()), &expected, "redirect fallback");
    // With the live mountpoint as the merged view the result is the same.
    let live = strata_differ::diff_mount(&s.merged).unwrap();
    assert_eq!(summary(&live), summary(&cs));
    let _ = std::io::stdout().flush();
    assert!(std::fs::symlink_metadata(s.upper.join("new")).unwrap().ino() > 0);
}
