//! Random changes to a container's merged view (the differ oracle's generator, confined to a
//! subtree so that two containers can be given disjoint changes).

use std::io::Write;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};

use nix::sys::stat::{Mode, SFlag};
use rand::rngs::StdRng;
use rand::{RngExt, SeedableRng};

const NAMES: &[&str] = &["a", "b", "c", "dir", "f", "x y", "é", "zz"];
const MODES: &[u32] = &[0o644, 0o600, 0o755, 0o4755, 0o2750, 0o1777, 0o000, 0o444];
const IDS: &[u32] = &[0, 1, 1000, 65534, 3_000_000];

pub fn rng(seed: u64) -> StdRng {
    StdRng::seed_from_u64(seed)
}

fn name(rng: &mut StdRng) -> &'static str {
    NAMES[rng.random_range(0..NAMES.len())]
}

pub fn bytes(rng: &mut StdRng, max: usize) -> Vec<u8> {
    let n = if rng.random_bool(0.2) { 0 } else { rng.random_range(0..max) };
    let seed: u8 = rng.random();
    (0..n).map(|i| seed.wrapping_add((i * 7 % 251) as u8)).collect()
}

/// Objects below `root`: `(relative path, is_dir, is_regular_file)`.
pub fn listing(root: &Path) -> Vec<(PathBuf, bool, bool)> {
    let mut out = Vec::new();
    let mut stack = vec![root.to_path_buf()];
    while let Some(d) = stack.pop() {
        let Ok(rd) = std::fs::read_dir(&d) else { continue };
        let mut names: Vec<_> = rd.map(|e| e.unwrap().path()).collect();
        names.sort();
        for p in names {
            let Ok(md) = std::fs::symlink_metadata(&p) else { continue };
            out.push((p.strip_prefix(root).unwrap().to_path_buf(), md.is_dir(), md.is_file()));
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

/// A random directory below `root` (or `root`) and a fresh name in it.
fn fresh(rng: &mut StdRng, root: &Path, l: &[(PathBuf, bool, bool)]) -> Option<PathBuf> {
    let dir = if rng.random_bool(0.3) { PathBuf::new() } else { pick(rng, l, |e| e.1).unwrap_or_default() };
    let p = dir.join(name(rng));
    std::fs::symlink_metadata(root.join(&p)).is_err().then_some(p)
}

pub fn mknod(p: &Path, kind: SFlag, major: u64, minor: u64) {
    nix::sys::stat::mknod(p, kind, Mode::from_bits_truncate(0o644), nix::sys::stat::makedev(major, minor)).unwrap();
}

/// `cp -a`; names an overlay lists but cannot find (whiteouts of unmerged directories) are
/// the view's true content and are not errors.
pub fn copy_view(from: &Path, to: &Path) {
    let out = std::process::Command::new("cp").arg("-a").arg("--").arg(from).arg(to).output().unwrap();
    if !out.status.success() {
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(
            err.lines().all(|l| l.contains("cannot stat") && l.ends_with("No such file or directory")),
            "cp -a {from:?} failed: {err}"
        );
    }
}

/// One random operation below `m`; failures the kernel reports are part of the game.
pub fn random_op(rng: &mut StdRng, m: &Path, log: &mut Vec<String>) {
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
                std::fs::set_permissions(m.join(&p), std::os::unix::fs::PermissionsExt::from_mode(mode))?;
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
                nix::unistd::mkfifo(&m.join(&p), Mode::from_bits_truncate(0o600))?;
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
                    Err(e) if e.raw_os_error() == Some(libc_exdev()) => {
                        // What mv(1) does without redirect_dir: copy, then remove.
                        copy_view(&m.join(&src), &m.join(&dst));
                        std::fs::remove_dir_all(m.join(&src))?;
                        format!("mv dir (cp -a + rm -r) {src:?} {dst:?}")
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

fn libc_exdev() -> i32 {
    nix::errno::Errno::EXDEV as i32
}

/// Fills `root` with a random tree: files (some large, some with xattrs), directories,
/// symlinks, hardlinks, fifos and devices, random modes and owners, old mtimes with and
/// without nanoseconds.
pub fn random_tree(rng: &mut StdRng, root: &Path, objects: usize) {
    std::fs::create_dir_all(root).unwrap();
    for _ in 0..objects {
        let l = listing(root);
        let dir = if rng.random_bool(0.3) { PathBuf::new() } else { pick(rng, &l, |e| e.1).unwrap_or_default() };
        let p = root.join(dir.join(name(rng)));
        if std::fs::symlink_metadata(&p).is_ok() {
            continue;
        }
        match rng.random_range(0..12) {
            0..=3 => {
                let max = if rng.random_bool(0.1) { 300_000 } else { 9000 };
                std::fs::write(&p, bytes(rng, max)).unwrap()
            }
            4..=6 => std::fs::create_dir(&p).unwrap(),
            7 => std::os::unix::fs::symlink(format!("../{}", name(rng)), &p).unwrap(),
            8 => {
                if let Some(f) = pick(rng, &l, |e| e.2) {
                    std::fs::hard_link(root.join(f), &p).unwrap();
                }
            }
            9 => {
                let kinds = [SFlag::S_IFCHR, SFlag::S_IFBLK, SFlag::S_IFIFO];
                mknod(&p, kinds[rng.random_range(0..3)], rng.random_range(1..9), rng.random_range(0..9));
            }
            _ => {
                std::fs::write(&p, bytes(rng, 100)).unwrap();
                xattr::set(&p, format!("user.k{}", rng.random_range(0..3)), &bytes(rng, 20)).unwrap();
            }
        }
        if rng.random_bool(0.3) && !std::fs::symlink_metadata(&p).is_ok_and(|m| m.file_type().is_symlink()) {
            let mode = [0o644, 0o600, 0o755, 0o4755, 0o700][rng.random_range(0..5)];
            let _ = std::fs::set_permissions(&p, std::os::unix::fs::PermissionsExt::from_mode(mode));
            let id = IDS[rng.random_range(0..IDS.len())];
            let _ = nix::unistd::fchownat(
                nix::fcntl::AT_FDCWD,
                &p,
                Some(id.into()),
                Some(id.into()),
                nix::fcntl::AtFlags::AT_SYMLINK_NOFOLLOW,
            );
        }
    }
    let mut all = listing(root);
    all.sort_by_key(|e| std::cmp::Reverse(e.0.components().count()));
    for (rel, _, _) in all {
        let nanos = if rng.random_bool(0.3) { 0 } else { rng.random_range(1..1_000_000_000) };
        let t = nix::sys::time::TimeSpec::new(rng.random_range(1_000_000_000..1_600_000_000), nanos);
        nix::sys::stat::utimensat(
            nix::fcntl::AT_FDCWD,
            &root.join(rel),
            &t,
            &t,
            nix::sys::stat::UtimensatFlags::NoFollowSymlink,
        )
        .unwrap();
    }
}
