//! Running out of space: an import or a commit that hits ENOSPC fails with a clear error,
//! leaves nothing half-visible, and the store works again once space is freed.

mod common;

use std::fs;
use std::path::Path;

use common::*;
use strata_testutil::{LoopMount, require_root, require_tool};

fn free_bytes(p: &Path) -> u64 {
    let st = nix::sys::statvfs::statvfs(p).unwrap();
    st.blocks_available() * st.fragment_size()
}

/// Fills the filesystem of `dir` until at most `leave` bytes are free.
fn fill(dir: &Path, leave: u64, name: &str) -> std::path::PathBuf {
    let p = dir.join(name);
    let mut f = fs::File::create(&p).unwrap();
    let chunk = vec![0x5au8; 1 << 20];
    use std::io::Write;
    while free_bytes(dir) > leave + (1 << 20) {
        if f.write_all(&chunk).is_err() {
            break;
        }
    }
    let _ = f.sync_all();
    p
}

fn records(root: &Path) -> (serde_json::Value, serde_json::Value) {
    (strata_json(root, &["images"]), strata_json(root, &["layers"]))
}

#[test]
fn enospc_fails_cleanly_and_the_store_recovers() {
    if !require_root() || !require_tool("mkfs.xfs") {
        return;
    }
    let m = LoopMount::xfs(320);
    let root = m.path().join("store");
    let work = tempfile::tempdir().unwrap(); // images live outside the small filesystem
    let t = work.path().join("t");
    sample_tree(&t, 5);
    let base = work.path().join("base");
    image_from_trees(&base, "v1", &[&t], Compression::Gzip);
    strata_json(&root, &["import", &format!("oci:{}:v1", base.display()), "--name", "base"]);

    // An image with 64 MiB of incompressible data, into a filesystem with ~16 MiB free.
    let big = work.path().join("big");
    fs::create_dir_all(&big).unwrap();
    for i in 0..16 {
        fs::write(big.join(format!("blob{i}")), bytes(4 << 20, 1000 + i)).unwrap();
    }
    let big_layout = work.path().join("big-layout");
    image_from_trees(&big_layout, "v1", &[&big], Compression::Gzip);
    let filler = fill(m.path(), 16 << 20, "filler1");
    let before = records(&root);
    let err = strata_fails(&root, &["import", &format!("oci:{}:v1", big_layout.display()), "--name", "big"]);
    assert!(err.contains("No space left on device"), "{err}");
    assert_eq!(err.trim().lines().count(), 1, "{err}");
    assert_eq!(records(&root), before, "a failed import changed the store");
    let staging: Vec<_> = fs::read_dir(root.join("staging")).unwrap().collect();
    assert!(staging.is_empty(), "staging left behind: {staging:?}");

    // A commit on a completely full filesystem fails the same way.
    assert!(strata(&root, &["container", "create", "base", "c"]).status.success());
    let merged = String::from_utf8(strata(&root, &["container", "mount", "c"]).stdout).unwrap();
    let merged = Path::new(merged.trim());
    let _ = fs::write(merged.join("etc/new"), bytes(1 << 20, 3));
    let filler2 = fill(m.path(), 0, "filler2");
    let before = records(&root);
    let out = strata(&root, &["commit", "c", "committed"]);
    if out.status.success() {
        // Reflinks can make a commit need almost no space; then it must be complete.
        assert_eq!(strata_json(&root, &["fsck", "--full"])["ok"], true);
    } else {
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(err.contains("No space left on device"), "{err}");
        assert_eq!(records(&root), before, "a failed commit changed the store");
    }

    // Space back: everything works, nothing half-done remains.
    fs::remove_file(&filler).unwrap();
    fs::remove_file(&filler2).unwrap();
    strata_json(&root, &["import", &format!("oci:{}:v1", big_layout.display()), "--name", "big"]);
    let _ = strata(&root, &["commit", "c", "committed-2"]);
    assert_eq!(strata_json(&root, &["fsck", "--full"])["ok"], true);
    assert!(strata(&root, &["container", "rm", "c"]).status.success());
}
