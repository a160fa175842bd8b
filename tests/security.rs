//! What strata promises other users of the machine (`docs/security.md`): nothing in a store
//! is reachable by them, whatever the umask, while layer trees keep their images' modes
//! (setuid binaries stay setuid, a container's `/` stays 0755).

mod common;

use std::fs;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::Path;
use std::process::Command;

use common::*;
use strata_testutil::{require_root, require_tool};

fn mode(p: &Path) -> u32 {
    fs::symlink_metadata(p).unwrap_or_else(|e| panic!("{}: {e}", p.display())).mode() & 0o7777
}

/// Runs `strata` with umask 000, so only strata's own choice of modes protects the store.
fn strata_umask0(root: &Path, args: &[&str]) -> serde_json::Value {
    let mut cmd = vec![strata_bin().to_owned(), "--root".into(), root.display().to_string()];
    cmd.extend(args.iter().map(|s| s.to_string()));
    cmd.push("--json".into());
    let script = "umask 000; exec \"$@\"";
    let out = Command::new("sh").args(["-c", script, "sh"]).args(&cmd).output().unwrap();
    assert!(out.status.success(), "strata {args:?}: {}", String::from_utf8_lossy(&out.stderr));
    serde_json::from_slice(&out.stdout).unwrap()
}

/// Runs a command as the unprivileged user `nobody`; true when it succeeds.
fn as_nobody(cmd: &[&str]) -> bool {
    let out = Command::new("setpriv")
        .args(["--reuid=65534", "--regid=65534", "--clear-groups", "--"])
        .args(cmd)
        .output()
        .unwrap();
    out.status.success()
}

/// True when `nobody` can `stat` `path`.
fn nobody_can_stat(path: &Path) -> bool {
    as_nobody(&["stat", "-c", "%n", &path.display().to_string()])
}

/// An image whose tree holds what must not be reachable: a setuid-root binary and a
/// world-writable device node.
fn dangerous_image(dir: &Path) -> std::path::PathBuf {
    let t = dir.join("tree");
    fs::create_dir_all(t.join("bin")).unwrap();
    fs::create_dir_all(t.join("dev")).unwrap();
    fs::write(t.join("bin/su"), b"#!/bin/sh\necho root\n").unwrap();
    fs::set_permissions(t.join("bin/su"), fs::Permissions::from_mode(0o4755)).unwrap();
    strata_testutil::run(Command::new("mknod").arg(t.join("dev/null")).args(["c", "1", "3"]));
    fs::set_permissions(t.join("dev/null"), fs::Permissions::from_mode(0o666)).unwrap();
    fs::set_permissions(&t, fs::Permissions::from_mode(0o755)).unwrap();
    let layout = dir.join("layout");
    image_from_trees(&layout, "v1", &[&t], Compression::Gzip);
    layout
}

#[test]
fn the_store_is_private_whatever_the_umask_and_layers_keep_their_modes() {
    if !require_root() || !require_tool("setpriv") {
        return;
    }
    // Below a world-traversable directory, as /var/lib is.
    let dir = tempfile::Builder::new().prefix("strata-sec-").tempdir_in("/var/tmp").unwrap();
    fs::set_permissions(dir.path(), fs::Permissions::from_mode(0o755)).unwrap();
    let layout = dangerous_image(dir.path());
    let root = dir.path().join("store");
    let r = strata_umask0(&root, &["import", &format!("oci:{}:v1", layout.display()), "--name", "x"]);
    let layer = r["layers"][0].as_str().unwrap().trim_start_matches("sha256:").to_owned();
    strata_umask0(&root, &["container", "create", "x", "c"]);
    let out = Command::new(strata_bin()).arg("--root").arg(&root).args(["container", "mount", "c"]).output().unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let merged = std::path::PathBuf::from(String::from_utf8_lossy(&out.stdout).trim());

    assert_eq!(mode(&root), 0o700, "a root strata creates is private");
    for d in ["layers", "staging", "containers", "index"] {
        assert_eq!(mode(&root.join(d)), 0o700, "{d}/");
    }
    assert_eq!(mode(&root.join("lock")), 0o600, "lock");
    // The layer tree itself looks like the image: / 0755, setuid kept, the device as given.
    let diff = root.join("layers").join(&layer).join("diff");
    assert_eq!(mode(&diff), 0o755);
    assert_eq!(mode(&diff.join("bin/su")), 0o4755);
    assert_eq!(mode(&diff.join("dev/null")), 0o666);
    assert_eq!(mode(&merged.join("bin/su")), 0o4755, "the container's setuid binary");
    // ... and nobody else gets there, not even with the root made world-traversable.
    fs::set_permissions(&root, fs::Permissions::from_mode(0o755)).unwrap();
    assert!(nobody_can_stat(&root), "the check itself works");
    for p in [diff.join("bin/su"), diff.join("dev/null"), merged.join("bin/su")] {
        assert!(!nobody_can_stat(&p), "{} is reachable by other users", p.display());
    }
    // A shared flock needs only a read-only descriptor: others must not open the lock.
    assert!(nobody_can_stat(&root.join("lock")));
    assert!(!as_nobody(&["cat", &root.join("lock").display().to_string()]), "others can open the store lock");

    // A store made by an earlier version (0755 directories) is made private when opened.
    for d in ["layers", "staging", "containers"] {
        fs::set_permissions(root.join(d), fs::Permissions::from_mode(0o755)).unwrap();
    }
    strata_umask0(&root, &["container", "create", "x", "c2"]);
    for d in ["layers", "staging", "containers"] {
        assert_eq!(mode(&root.join(d)), 0o700, "{d}/ after reopening");
    }
    let out = Command::new(strata_bin()).arg("--root").arg(&root).args(["container", "rm", "c"]).output().unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
}
