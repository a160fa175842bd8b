//! A store of an unprivileged user, holding images with read-only directories (Fedora's and
//! UBI's `/root` is 0550): everything a non-root store does — import, images, export, pull,
//! push, rmi, gc, fsck — works, and removing such layers leaves nothing behind.

mod common;

use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::process::{Command, Output};

use common::*;
use strata_testutil::{Registry, require_root, require_tool, run};

const NOBODY: u32 = 65534;

/// Runs `strata --root ROOT ARGS...` as the user nobody.
fn as_nobody(root: &Path, home: &Path, args: &[&str]) -> Output {
    Command::new("setpriv")
        .args(["--reuid=65534", "--regid=65534", "--clear-groups", "--"])
        .arg(strata_bin())
        .arg("--root")
        .arg(root)
        .args(args)
        .env("HOME", home)
        .env_remove("XDG_RUNTIME_DIR")
        .output()
        .unwrap()
}

fn ok(root: &Path, home: &Path, args: &[&str]) -> serde_json::Value {
    let mut a = args.to_vec();
    a.push("--json");
    let out = as_nobody(root, home, &a);
    assert!(out.status.success(), "strata {args:?} as nobody: {}", String::from_utf8_lossy(&out.stderr));
    serde_json::from_slice(&out.stdout).unwrap()
}

#[test]
fn a_users_store_handles_read_only_directories() {
    if !require_root() || !require_tool("setpriv") || !require_tool("docker-registry") {
        return;
    }
    let dir = tempfile::Builder::new().prefix("strata-rootless-").tempdir_in("/var/tmp").unwrap();
    fs::set_permissions(dir.path(), fs::Permissions::from_mode(0o755)).unwrap();
    let t = dir.path().join("tree");
    sample_tree(&t, 4);
    fs::create_dir_all(t.join("root/.config")).unwrap();
    fs::write(t.join("root/.config/settings"), b"secret=1\n").unwrap();
    fs::write(t.join("usr/lib/deep/er/readonly"), b"ro\n").unwrap();
    fs::set_permissions(t.join("usr/lib/deep/er/readonly"), fs::Permissions::from_mode(0o444)).unwrap();
    fs::set_permissions(t.join("usr/lib/deep/er"), fs::Permissions::from_mode(0o555)).unwrap();
    fs::set_permissions(t.join("root/.config"), fs::Permissions::from_mode(0o500)).unwrap();
    fs::set_permissions(t.join("root"), fs::Permissions::from_mode(0o550)).unwrap();
    let layout = dir.path().join("layout");
    image_from_trees(&layout, "v1", &[&t], Compression::Zstd);
    let home = dir.path().join("home");
    fs::create_dir(&home).unwrap();
    run(Command::new("chown").arg("-R").arg(format!("{NOBODY}:{NOBODY}")).arg(&layout).arg(&home));
    let root = home.join("store");
    let src = format!("oci:{}:v1", layout.display());

    let r = ok(&root, &home, &["import", &src, "--name", "img"]);
    let layer = r["layers"][0].as_str().unwrap().trim_start_matches("sha256:").to_owned();
    let diff = root.join("layers").join(&layer).join("diff");
    assert_eq!(fs::metadata(diff.join("root")).unwrap().permissions().mode() & 0o777, 0o550);
    assert_eq!(ok(&root, &home, &["fsck", "--full"])["ok"], true);
    let x = home.join("x");
    ok(&root, &home, &["export", "img", &format!("oci:{}:v1", x.display()), "--format", "tar"]);
    let reg = Registry::start();
    let target = format!("{}/rootless/img:v1", reg.addr());
    ok(&root, &home, &["push", "img", &target, "--plain-http"]);
    ok(&root, &home, &["pull", &target, "--name", "pulled", "--plain-http"]);

    // Removing both images removes the layer, read-only directories and all.
    ok(&root, &home, &["rmi", "img"]);
    ok(&root, &home, &["rmi", "pulled"]);
    assert!(!root.join("layers").join(&layer).exists(), "the layer directory is still there");
    let g = ok(&root, &home, &["gc"]);
    assert_eq!(g["layers_removed"], 0, "{g}");
    assert_eq!(fs::read_dir(root.join("layers")).unwrap().count(), 0);
    assert_eq!(ok(&root, &home, &["fsck", "--full"])["ok"], true);
    // And the store still works afterwards (recovery did not trip over anything).
    ok(&root, &home, &["import", &src, "--name", "again"]);
    assert_eq!(ok(&root, &home, &["fsck"])["ok"], true);
    // The exported image is the tree, as nobody could read it.
    let got = dir.path().join("got");
    extract_layout(&x, "v1", &got);
    let strip_owners = |m: std::collections::BTreeMap<String, String>| {
        m.into_iter()
            .map(|(k, v)| {
                (
                    k,
                    v.split(' ')
                        .filter(|f| !f.starts_with("uid=") && !f.starts_with("gid="))
                        .collect::<Vec<_>>()
                        .join(" "),
                )
            })
            .collect::<std::collections::BTreeMap<_, _>>()
    };
    assert_eq!(strip_owners(snapshot(&got)), strip_owners(snapshot(&t)));
}
