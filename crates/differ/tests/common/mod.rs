//! Helpers shared by the differ's integration tests: building trees, snapshotting every
//! attribute a layer must carry, and reading tars back.
#![allow(dead_code)]

use std::collections::{BTreeMap, BTreeSet};
use std::ffi::OsStr;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process::Command;

use nix::sys::stat::{Mode, SFlag, UtimensatFlags};
use nix::sys::time::TimeSpec;
use strata_differ::{Change, ChangeKind, Changeset, WriteOptions, write_layer};
use strata_layer::out_file::WriteTarOut;

pub fn scratch(prefix: &str) -> tempfile::TempDir {
    tempfile::Builder::new().prefix(prefix).tempdir_in(strata_testutil::scratch_base()).unwrap()
}

pub fn write(p: &Path, data: &[u8]) {
    if let Some(d) = p.parent() {
        std::fs::create_dir_all(d).unwrap();
    }
    std::fs::write(p, data).unwrap();
}

pub fn mkdir(p: &Path) {
    std::fs::create_dir_all(p).unwrap();
}

pub fn chmod(p: &Path, mode: u32) {
    std::fs::set_permissions(p, std::fs::Permissions::from_mode(mode)).unwrap();
}

pub fn symlink(target: &str, p: &Path) {
    std::os::unix::fs::symlink(target, p).unwrap();
}

pub fn mknod(p: &Path, kind: SFlag, major: u64, minor: u64) {
    nix::sys::stat::mknod(p, kind, Mode::from_bits_truncate(0o644), nix::sys::stat::makedev(major, minor)).unwrap();
}

pub fn whiteout(p: &Path) {
    mknod(p, SFlag::S_IFCHR, 0, 0);
}

/// Sets atime and mtime (without following symlinks).
pub fn set_mtime(p: &Path, secs: i64, nanos: i64) {
    let t = TimeSpec::new(secs, nanos);
    nix::sys::stat::utimensat(nix::fcntl::AT_FDCWD, p, &t, &t, UtimensatFlags::NoFollowSymlink).unwrap();
}

pub fn setxattr(p: &Path, name: &str, value: &[u8]) {
    xattr::set(p, name, value).unwrap();
}

/// Every attribute of one object that a layer must reproduce.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Attrs {
    pub kind: &'static str,
    pub mode: u32,
    pub uid: u32,
    pub gid: u32,
    pub mtime: (i64, i64),
    pub xattrs: BTreeMap<String, Vec<u8>>,
    pub link: Option<Vec<u8>>,
    pub rdev: (u64, u64),
    pub content: Option<Vec<u8>>,
}

/// A tree as a layer sees it: attributes by path, plus the partition of regular files into
/// hardlink groups (groups of one omitted).
#[derive(Debug, PartialEq, Eq)]
pub struct Snapshot {
    pub objects: BTreeMap<Vec<u8>, Attrs>,
    pub links: BTreeSet<Vec<Vec<u8>>>,
}

/// Snapshots `root` (root directory itself excluded). Sockets are skipped; names that
/// readdir lists but lstat cannot find are skipped too (overlay xattr whiteouts in an upper).
/// `with_dir_mtime`: compare directory mtimes (false where the reference is not meant to
/// reproduce them).
pub fn snapshot(root: &Path) -> Snapshot {
    let mut objects = BTreeMap::new();
    let mut inodes: BTreeMap<(u64, u64), Vec<Vec<u8>>> = BTreeMap::new();
    walk(root, root, &mut objects, &mut inodes);
    let links = inodes.into_values().filter(|v| v.len() > 1).collect();
    Snapshot { objects, links }
}

fn walk(root: &Path, dir: &Path, out: &mut BTreeMap<Vec<u8>, Attrs>, inodes: &mut BTreeMap<(u64, u64), Vec<Vec<u8>>>) {
    let mut names: Vec<_> = std::fs::read_dir(dir).unwrap().map(|e| e.unwrap().file_name()).collect();
    names.sort();
    for name in names {
        let p = dir.join(&name);
        let Ok(md) = std::fs::symlink_metadata(&p) else { continue };
        let rel = p.strip_prefix(root).unwrap().as_os_str().as_bytes().to_vec();
        let ft = md.mode() & 0o170000;
        let kind = match ft {
            0o100000 => "file",
            0o040000 => "dir",
            0o120000 => "symlink",
            0o020000 => "char",
            0o060000 => "block",
            0o010000 => "fifo",
            _ => continue,
        };
        let mut xattrs = BTreeMap::new();
        for n in xattr::list(&p).unwrap() {
            let s = n.to_string_lossy().into_owned();
            if s.starts_with("trusted.overlay.") || s.starts_with("user.overlay.") {
                continue;
            }
            xattrs.insert(s, xattr::get(&p, &n).unwrap().unwrap_or_default());
        }
        let attrs = Attrs {
            kind,
            mode: md.mode() & 0o7777,
            uid: md.uid(),
            gid: md.gid(),
            mtime: (md.mtime(), md.mtime_nsec()),
            xattrs,
            link: (kind == "symlink").then(|| std::fs::read_link(&p).unwrap().as_os_str().as_bytes().to_vec()),
            rdev: if matches!(kind, "char" | "block") {
                (nix::sys::stat::major(md.rdev()), nix::sys::stat::minor(md.rdev()))
            } else {
                (0, 0)
            },
            content: (kind == "file").then(|| std::fs::read(&p).unwrap()),
        };
        // Same inode with one link is overlayfs showing one lower file at two paths (a
        // redirect's origin left visible), not a hardlink.
        if kind == "file" && md.nlink() > 1 {
            inodes.entry((md.dev(), md.ino())).or_default().push(rel.clone());
        }
        out.insert(rel, attrs);
        if kind == "dir" {
            walk(root, &p, out, inodes);
        }
    }
}

/// Asserts two snapshots are equal, printing the differing paths readably.
pub fn assert_same(expected: &Snapshot, got: &Snapshot, context: &str) {
    if expected == got {
        return;
    }
    let mut msg = String::new();
    let keys: BTreeSet<&Vec<u8>> = expected.objects.keys().chain(got.objects.keys()).collect();
    for k in keys {
        let (e, g) = (expected.objects.get(k), got.objects.get(k));
        if e != g {
            let show = |a: Option<&Attrs>| match a {
                None => "absent".to_string(),
                Some(a) => {
                    let mut a = a.clone();
                    let len = a.content.as_ref().map(|c| c.len());
                    a.content = None;
                    format!("{a:?} content_len={len:?}")
                }
            };
            msg.push_str(&format!(
                "  {}:\n    expected {}\n    got      {}\n",
                String::from_utf8_lossy(k),
                show(e),
                show(g)
            ));
            if let (Some(e), Some(g)) = (e, g)
                && e.content != g.content
            {
                msg.push_str("    (content differs)\n");
            }
        }
    }
    if expected.links != got.links {
        msg.push_str(&format!(
            "  hardlink groups:\n    expected {:?}\n    got      {:?}\n",
            show_links(&expected.links),
            show_links(&got.links)
        ));
    }
    panic!("{context}: trees differ\n{msg}");
}

fn show_links(l: &BTreeSet<Vec<Vec<u8>>>) -> Vec<Vec<String>> {
    l.iter().map(|g| g.iter().map(|p| String::from_utf8_lossy(p).into_owned()).collect()).collect()
}

/// The layer tar of a changeset.
pub fn layer_bytes(cs: &Changeset, opts: &WriteOptions) -> Vec<u8> {
    let mut out = WriteTarOut::new(Vec::new());
    let stats = write_layer(cs, &mut out, opts).unwrap();
    let bytes = out.into_inner().unwrap();
    assert_eq!(stats.bytes, bytes.len() as u64);
    bytes
}

/// `(kind, path)` of each change, for assertions.
pub fn summary(cs: &Changeset) -> Vec<(ChangeKind, String)> {
    cs.iter().map(|c: &Change| (c.kind, c.path.to_string())).collect()
}

/// One tar entry as read back with the `tar` crate (PAX applied).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TarEntry {
    pub name: String,
    pub typeflag: u8,
    pub size: u64,
    pub data_offset: u64,
    pub link: Option<String>,
    pub pax: Vec<(String, Vec<u8>)>,
}

pub fn tar_entries(bytes: &[u8]) -> Vec<TarEntry> {
    let mut a = tar::Archive::new(bytes);
    let mut out = Vec::new();
    for e in a.entries().unwrap() {
        let mut e = e.unwrap();
        let pax = match e.pax_extensions().unwrap() {
            Some(exts) => exts
                .map(|x| {
                    let x = x.unwrap();
                    (x.key().unwrap().to_owned(), x.value_bytes().to_vec())
                })
                .collect(),
            None => Vec::new(),
        };
        out.push(TarEntry {
            name: String::from_utf8_lossy(&e.path_bytes()).into_owned(),
            typeflag: e.header().entry_type().as_byte(),
            size: e.size(),
            data_offset: e.raw_file_position(),
            link: e.link_name_bytes().map(|l| String::from_utf8_lossy(&l).into_owned()),
            pax,
        });
    }
    out
}

pub fn tar_names(bytes: &[u8]) -> Vec<String> {
    tar_entries(bytes).into_iter().map(|e| e.name).collect()
}

/// `cp -a` (keeps hardlinks, xattrs, times, devices).
pub fn copy_tree(from: &Path, to: &Path) {
    strata_testutil::run(Command::new("cp").arg("-a").arg("--").arg(from).arg(to));
}

pub fn path(p: &Path, rel: &str) -> PathBuf {
    p.join(OsStr::new(rel))
}

pub mod ovl {
    //! Real overlay mounts for scenario and oracle tests.

    use std::path::{Path, PathBuf};

    use strata_differ::{Changeset, TempOverlay, diff_overlay, diff_trees};
    use strata_testutil::OverlayMount;

    pub struct Scenario {
        /// Declared first: fields drop in order, and the mount must go before the directory.
        mount: Option<OverlayMount>,
        pub dir: tempfile::TempDir,
        /// Top-most first.
        pub lowers: Vec<PathBuf>,
        pub upper: PathBuf,
        pub work: PathBuf,
        pub merged: PathBuf,
    }

    impl Drop for Scenario {
        fn drop(&mut self) {
            if self.mount.is_some() {
                self.unmount();
            }
        }
    }

    impl Scenario {
        pub fn new(nlowers: usize) -> Scenario {
            let dir = super::scratch("strata-ovl-");
            let lowers: Vec<PathBuf> = (0..nlowers).map(|i| dir.path().join(format!("l{i}"))).collect();
            for l in &lowers {
                std::fs::create_dir(l).unwrap();
            }
            let (upper, work, merged) = (dir.path().join("upper"), dir.path().join("work"), dir.path().join("merged"));
            for d in [&upper, &work, &merged] {
                std::fs::create_dir(d).unwrap();
            }
            Scenario { mount: None, dir, lowers, upper, work, merged }
        }

        pub fn l(&self, i: usize, rel: &str) -> PathBuf {
            self.lowers[i].join(rel)
        }

        pub fn m(&self, rel: &str) -> PathBuf {
            self.merged.join(rel)
        }

        pub fn mount(&mut self, options: &str) {
            let lowers: Vec<&Path> = self.lowers.iter().map(PathBuf::as_path).collect();
            self.mount = Some(OverlayMount::new(&lowers, &self.upper, &self.work, &self.merged, options));
        }

        pub fn unmount(&mut self) {
            self.mount = None;
            // Parallel tests fork children that briefly hold inherited fds: if the plain
            // unmount found the mount busy, detach it so the directory can go.
            let mounts = std::fs::read_to_string("/proc/self/mounts").unwrap_or_default();
            if mounts.lines().any(|l| l.split(' ').nth(1) == Some(&*self.merged.to_string_lossy())) {
                let _ = nix::mount::umount2(&self.merged, nix::mount::MntFlags::MNT_DETACH);
            }
        }

        /// The lowers composed as overlayfs does (whiteouts and opaque dirs applied).
        pub fn base_view(&self) -> TempOverlay {
            TempOverlay::mount(&self.lowers, &[]).unwrap()
        }

        /// The single walk of the upperdir (falling back through a private mount if needed).
        pub fn diff_upper(&self) -> Changeset {
            diff_overlay(&self.upper, &self.lowers, None).unwrap()
        }

        /// The double walk of the base view against the merged mount (must be mounted).
        pub fn diff_double(&self) -> Changeset {
            assert!(self.mount.is_some(), "diff_double needs the overlay mounted");
            let base = self.base_view();
            diff_trees(base.path(), &self.merged).unwrap()
        }
    }
}

/// Applies a layer tar onto `root` with OCI whiteout rules (`strata_layer::apply`).
pub fn apply_oci(tar_bytes: &[u8], root: &Path) {
    use strata_layer::apply::{ApplyOptions, WhiteoutMode, apply_simple};
    if let Err(e) = apply_simple(root, tar_bytes, &ApplyOptions::new(WhiteoutMode::Oci)) {
        panic!("strata_layer::apply failed: {e}");
    }
}

/// Sets every object below `root` to an old mtime (deepest first), `nanos` as given.
pub fn settle(root: &Path, secs: i64, nanos: i64) {
    let mut all = Vec::new();
    let mut stack = vec![root.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).unwrap() {
            let p = e.unwrap().path();
            if std::fs::symlink_metadata(&p).unwrap().is_dir() {
                stack.push(p.clone());
            }
            all.push(p);
        }
    }
    all.sort_by_key(|p| std::cmp::Reverse(p.components().count()));
    for p in all {
        set_mtime(&p, secs, nanos);
    }
}

/// `cp -a` of an overlay view. overlayfs lists whiteouts of directories that are not merged
/// (e.g. a whiteout in a layer whose target a middle layer already blocks) yet finds no such
/// name: `cp` reports those as missing, which is the view's true content.
pub fn copy_view(from: &Path, to: &Path) {
    let out = Command::new("cp").arg("-a").arg("--").arg(from).arg(to).output().unwrap();
    if !out.status.success() {
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(
            err.lines().all(|l| l.contains("cannot stat") && l.ends_with("No such file or directory")),
            "cp -a {from:?} failed: {err}"
        );
    }
}

/// Applies a layer onto a copy of `base` and asserts the result equals `expected`.
pub fn apply_and_compare(base: &Path, tar: &[u8], expected: &Snapshot, what: &str) {
    let dir = scratch("strata-apply-");
    let target = dir.path().join("t");
    copy_view(base, &target);
    apply_oci(tar, &target);
    assert_same(expected, &snapshot(&target), what);
}

/// Both differs on a mounted scenario; each layer applied onto the lowers must give the
/// merged view. Returns (single-walk changeset, double-walk changeset).
pub fn check_both(s: &ovl::Scenario) -> (Changeset, Changeset) {
    let expected = snapshot(&s.merged);
    let base = s.base_view();
    let double = s.diff_double();
    apply_and_compare(base.path(), &layer_bytes(&double, &WriteOptions::default()), &expected, "double walk");
    let upper = s.diff_upper();
    apply_and_compare(base.path(), &layer_bytes(&upper, &WriteOptions::default()), &expected, "single walk");
    (upper, double)
}

/// Tar names of a changeset's layer.
pub fn names_of(cs: &Changeset) -> Vec<String> {
    tar_names(&layer_bytes(cs, &WriteOptions::default()))
}
