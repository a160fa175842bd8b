//! Root filesystems as the kernel shows them: an image's layers mounted read-only with
//! overlayfs, snapshots of every attribute a layer carries, and layers applied with OCI rules.

use std::collections::{BTreeMap, BTreeSet};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

use strata_differ::TempOverlay;
use strata_store::paths::StorePaths;
use strata_store::{OpenOptions, Store};
use strata_types::{ImageName, LayerId, Sha256Hasher};

/// Every attribute of each object below a root (root excluded), plus hardlink groups.
#[derive(Debug, PartialEq, Eq)]
pub struct Snap {
    pub objects: BTreeMap<Vec<u8>, String>,
    pub groups: BTreeSet<Vec<Vec<u8>>>,
}

/// Snapshots `root`: type, mode, uid, gid, mtime (ns, directories too), size, content
/// digest, symlink target, device numbers, xattrs other than overlay's; regular files that
/// share an inode form a group. Names lstat cannot find (an overlay lists whiteouts of
/// unmerged directories) are not objects.
pub fn snapshot(root: &Path) -> Snap {
    let mut objects = BTreeMap::new();
    let mut inodes: BTreeMap<(u64, u64), Vec<Vec<u8>>> = BTreeMap::new();
    let mut stack = vec![root.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).unwrap() {
            let p = e.unwrap().path();
            let Ok(m) = std::fs::symlink_metadata(&p) else { continue };
            let rel = p.strip_prefix(root).unwrap().as_os_str().as_bytes().to_vec();
            let mut xs: Vec<String> = xattr::list(&p)
                .unwrap()
                .map(|n| n.to_string_lossy().into_owned())
                .filter(|n| !n.starts_with("trusted.overlay.") && !n.starts_with("user.overlay."))
                .map(|n| format!("{n}={:?}", xattr::get(&p, &n).unwrap().unwrap_or_default()))
                .collect();
            xs.sort();
            let extra = if m.is_file() {
                let mut h = Sha256Hasher::new();
                h.update(&std::fs::read(&p).unwrap());
                inodes.entry((m.dev(), m.ino())).or_default().push(rel.clone());
                format!("size={} sha256={}", m.len(), h.finalize())
            } else if m.file_type().is_symlink() {
                format!("-> {:?}", std::fs::read_link(&p).unwrap())
            } else {
                format!("rdev={}", m.rdev())
            };
            let mode = if m.file_type().is_symlink() { m.mode() & 0o170000 } else { m.mode() };
            objects.insert(
                rel,
                format!(
                    "mode={mode:o} uid={} gid={} mtime={}.{:09} {extra} xattrs=[{}]",
                    m.uid(),
                    m.gid(),
                    m.mtime(),
                    m.mtime_nsec(),
                    xs.join(",")
                ),
            );
            if m.is_dir() {
                stack.push(p);
            }
        }
    }
    let groups = inodes.into_values().filter(|g| g.len() > 1).map(|mut g| {
        g.sort();
        g
    });
    Snap { objects, groups: groups.collect() }
}

/// Asserts `got` equals `expected`, listing the differing paths.
pub fn assert_same(expected: &Snap, got: &Snap, context: &str) {
    if expected == got {
        return;
    }
    let mut msg = Vec::new();
    let keys: BTreeSet<&Vec<u8>> = expected.objects.keys().chain(got.objects.keys()).collect();
    for k in keys {
        let (e, g) = (expected.objects.get(k), got.objects.get(k));
        if e != g {
            msg.push(format!("  {}:\n    expected {e:?}\n    got      {g:?}", String::from_utf8_lossy(k)));
        }
    }
    if expected.groups != got.groups {
        let show = |s: &BTreeSet<Vec<Vec<u8>>>| {
            s.iter()
                .map(|g| g.iter().map(|p| String::from_utf8_lossy(p).into_owned()).collect())
                .collect::<Vec<Vec<_>>>()
        };
        msg.push(format!(
            "  hardlink groups:\n    expected {:?}\n    got      {:?}",
            show(&expected.groups),
            show(&got.groups)
        ));
    }
    msg.truncate(30);
    panic!("{context}: trees differ\n{}", msg.join("\n"));
}

/// An image's layers, bottom first (the store is opened only for this).
pub fn image_layers(root: &Path, image: &str) -> Vec<LayerId> {
    let store = Store::open(root, OpenOptions::default()).unwrap();
    store.image(&ImageName::new(image).unwrap()).unwrap().layers
}

/// The image's root filesystem as overlayfs composes its layer directories.
pub fn mount_image(root: &Path, image: &str) -> TempOverlay {
    let paths = StorePaths::new(root);
    let lowers: Vec<PathBuf> = image_layers(root, image).iter().rev().map(|l| paths.layer_diff(l)).collect();
    TempOverlay::mount(&lowers, &[]).unwrap()
}

/// Applies a layer tar onto `root` with OCI whiteout rules.
pub fn apply_oci(tar: impl std::io::Read, root: &Path) {
    use strata_layer::apply::{ApplyOptions, WhiteoutMode, apply_simple};
    if let Err(e) = apply_simple(root, tar, &ApplyOptions::new(WhiteoutMode::Oci)) {
        panic!("strata_layer::apply failed: {e}");
    }
}
