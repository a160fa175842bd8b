//! The store end to end, through the `strata` binary, on a real XFS loop mount: import,
//! containers on overlay, commit with dedup, export in every format, re-import.

mod common;

use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;

use common::*;
use strata_testutil::{LoopMount, require_root, require_tool};

fn ok(root: &Path, args: &[&str]) -> String {
    let out = strata(root, args);
    assert!(out.status.success(), "strata {args:?} failed: {}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8_lossy(&out.stdout).trim().to_owned()
}

/// Two related images: A = tree, B = tree plus a second layer with more files.
fn two_images(dir: &Path) -> (std::path::PathBuf, std::path::PathBuf) {
    let t1 = dir.join("t1");
    let t2 = dir.join("t2");
    sample_tree(&t1, 1);
    common_copy(&t1, &t2);
    fs::write(t2.join("usr/bin/newtool"), bytes(2 << 20, 9)).unwrap();
    fs::remove_file(t2.join("etc/hostname")).unwrap();
    let a = dir.join("layout-a");
    let b = dir.join("layout-b");
    image_from_trees(&a, "v1", &[&t1], Compression::Gzip);
    image_from_trees(&b, "v1", &[&t1, &t2], Compression::Zstd);
    (a, b)
}

fn common_copy(from: &Path, to: &Path) {
    strata_testutil::run(std::process::Command::new("cp").arg("-a").arg(from).arg(to));
}

#[test]
fn import_container_commit_export_reimport_on_xfs() {
    if !require_root() || !require_tool("mkfs.xfs") {
        return;
    }
    let m = LoopMount::xfs(2048);
    let root = m.path().join("store");
    let (a, b) = two_images(m.path());
    let ra = strata_json(&root, &["import", &format!("oci:{}:v1", a.display()), "--name", "a"]);
    assert_eq!(ra["layers"].as_array().unwrap().len(), 1);
    let rb = strata_json(&root, &["import", &format!("oci:{}:v1", b.display()), "--name", "b"]);
    // B's first layer is A's layer (same DiffID): not read at all.
    assert_eq!(rb["layers"][0], ra["layers"][0]);
    assert_eq!(rb["layers_present"], 1);

    ok(&root, &["container", "create", "b", "c1"]);
    let merged = std::path::PathBuf::from(ok(&root, &["container", "mount", "c1"]));
    assert!(merged.join("usr/bin/newtool").is_file());
    assert!(!merged.join("etc/hostname").exists(), "B's whiteout hides A's file");
    // Changes: new file, append to a big file, chmod, delete, rename a dir, symlink.
    fs::write(merged.join("etc/new.conf"), "x=1\n").unwrap();
    let mut big = fs::read(merged.join("usr/lib/libbig.so")).unwrap();
    big.extend(bytes(100_000, 77));
    fs::write(merged.join("usr/lib/libbig.so"), &big).unwrap();
    fs::set_permissions(merged.join("usr/bin/tool"), fs::Permissions::from_mode(0o700)).unwrap();
    fs::remove_file(merged.join("etc/passwd-")).unwrap();
    // redirect_dir=off: rename(2) of a lower directory is EXDEV; mv copies and deletes.
    strata_testutil::run(
        std::process::Command::new("mv").arg(merged.join("usr/lib/deep")).arg(merged.join("usr/lib/moved")),
    );
    std::os::unix::fs::symlink("/etc/new.conf", merged.join("etc/link")).unwrap();

    let c = strata_json(&root, &["commit", "c1", "b2"]);
    assert_eq!(c["diff_method"], "upperdir");
    assert!(c["bytes_reflinked"].as_u64().unwrap() >= 3 << 20, "the appended file's unchanged chunks are shared: {c}");
    assert!(c["bytes_written"].as_u64().unwrap() < 1 << 20, "{c}");

    for format in ["zstd:chunked", "tar+zstd", "tar+gzip", "tar"] {
        let out = m.path().join(format!("export-{}", format.replace([':', '+'], "-")));
        let e = strata_json(&root, &["export", "b2", &format!("oci:{}:x", out.display()), "--format", format]);
        assert_eq!(e["layers"].as_array().unwrap().len(), 3, "{e}");
        // An independent reader (strata_layer::apply, OCI semantics) sees the container's tree.
        let x = m.path().join(format!("x-{}", format.replace([':', '+'], "-")));
        extract_layout(&out, "x", &x);
        assert_same_tree(&merged, &x);
        // A fresh store imports it (verifying every DiffID against the config) to the same tree.
        let root2 = m.path().join(format!("store2-{}", format.replace([':', '+'], "-")));
        strata_json(&root2, &["import", &format!("oci:{}:x", out.display()), "--name", "b2"]);
        ok(&root2, &["container", "create", "b2", "c"]);
        let merged2 = std::path::PathBuf::from(ok(&root2, &["container", "mount", "c"]));
        assert_same_tree(&merged, &merged2);
        ok(&root2, &["container", "rm", "c"]);
        assert_eq!(strata_json(&root2, &["fsck", "--full"])["ok"], true);
    }
    ok(&root, &["container", "umount", "c1"]);
    assert_eq!(strata_json(&root, &["fsck", "--full"])["ok"], true);
}

#[test]
fn committed_layers_share_blocks_with_their_parents() {
    if !require_root() || !require_tool("mkfs.xfs") {
        return;
    }
    let m = LoopMount::xfs(1024);
    let root = m.path().join("store");
    let t = m.path().join("t");
    fs::create_dir_all(&t).unwrap();
    for i in 0..8 {
        fs::write(t.join(format!("blob{i}")), bytes(4 << 20, i)).unwrap();
    }
    let l = m.path().join("layout");
    image_from_trees(&l, "v1", &[&t], Compression::Gzip);
    strata_json(&root, &["import", &format!("oci:{}:v1", l.display()), "--name", "base"]);
    let before = strata_json(&root, &["df"]);
    ok(&root, &["container", "create", "base", "c"]);
    let merged = std::path::PathBuf::from(ok(&root, &["container", "mount", "c"]));
    // Metadata-only changes copy whole files up (32 MiB), all content unchanged.
    for i in 0..8 {
        fs::set_permissions(merged.join(format!("blob{i}")), fs::Permissions::from_mode(0o600)).unwrap();
    }
    let c = strata_json(&root, &["commit", "c", "next"]);
    assert_eq!(c["bytes_reflinked"].as_u64().unwrap(), 32 << 20, "{c}");
    ok(&root, &["container", "rm", "c"]);
    let after = strata_json(&root, &["df"]);
    let logical = after["logical_bytes"].as_u64().unwrap() - before["logical_bytes"].as_u64().unwrap();
    let physical = after["physical_bytes"].as_u64().unwrap() as i64 - before["physical_bytes"].as_u64().unwrap() as i64;
    assert_eq!(logical, 32 << 20);
    assert!(physical < 1 << 20, "the committed layer added {physical} physical bytes for {logical} logical");
}

#[test]
fn a_second_process_waits_or_fails_fast() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("store");
    ok(&root, &["images"]);
    // Hold the owner lock without serving the socket: an owner that is starting or stopping.
    let f = fs::File::options().read(true).write(true).open(root.join("lock")).unwrap();
    let lock = nix::fcntl::Flock::lock(f, nix::fcntl::FlockArg::LockExclusive).map_err(|(_, e)| e).unwrap();
    fs::write(root.join("lock.owner"), "4242 strata pull example\n").unwrap();
    let err = strata_fails(&root, &["--no-wait", "rmi", "x"]);
    assert!(err.contains("locked") && err.contains("4242"), "{err}");
    assert_eq!(err.trim().lines().count(), 1, "one-line error: {err}");
    let child = std::process::Command::new(strata_bin())
        .args(["--root", root.to_str().unwrap(), "images", "--json"])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    std::thread::sleep(std::time::Duration::from_millis(2500));
    drop(lock);
    let out = child.wait_with_output().unwrap();
    assert!(out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("waiting for the owner") && stderr.contains("4242"), "{stderr}");
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert!(v["images"].as_array().unwrap().is_empty());
}

#[test]
fn names_and_missing_things_give_one_line_errors() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("store");
    for (args, needle) in [
        (vec!["rmi", "nope"], "no image named nope"),
        (vec!["container", "create", "nope", "c"], "no image named nope"),
        (vec!["container", "mount", "nope"], "no container named nope"),
        (vec!["commit", "nope", "x"], "no container named nope"),
        (vec!["export", "nope", "oci:/tmp/x"], "no image named nope"),
        (vec!["import", "oci:/nonexistent/layout"], "/nonexistent/layout"),
        (vec!["rmi", "../bad"], "may only contain"),
    ] {
        let err = strata_fails(&root, &args);
        assert!(err.contains(needle), "{args:?}: {err}");
        assert_eq!(err.trim().lines().count(), 1, "{args:?}: {err}");
    }
}
