//! The kill harness: every mutating command is SIGKILLed at random moments; afterwards the
//! store must be consistent (fsck --full, which runs recovery first), every image committed
//! before the kill intact, and the interrupted operation either complete or absent.
//!
//! The commands: import, commit, rmi, gc, and pull (a partial zstd:chunked pull from a real
//! `docker-registry`, reusing chunks of the store's base image). `STRATA_KILL_TRIALS` sets
//! the number of trials per command (default 40: ~200 in all).

mod common;

use std::collections::BTreeMap;
use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::*;
use rand::{RngExt, SeedableRng, rngs::StdRng};

fn trials() -> usize {
    std::env::var("STRATA_KILL_TRIALS").ok().and_then(|s| s.parse().ok()).unwrap_or(40)
}

/// Image name → config digest, for every image in the store.
fn images(root: &Path) -> BTreeMap<String, String> {
    strata_json(root, &["images"])["images"]
        .as_array()
        .unwrap()
        .iter()
        .map(|i| (i["name"].as_str().unwrap().to_owned(), i["config_digest"].as_str().unwrap().to_owned()))
        .collect()
}

/// Runs `strata args` and SIGKILLs it after `delay` (if it is still running). Returns
/// whether it was killed.
fn run_and_kill(root: &Path, args: &[&str], delay: Duration) -> bool {
    let mut child = Command::new(strata_bin())
        .arg("--root")
        .arg(root)
        .args(args)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let deadline = Instant::now() + delay;
    loop {
        if let Some(_status) = child.try_wait().unwrap() {
            return false;
        }
        if Instant::now() >= deadline {
            let _ = child.kill(); // SIGKILL
            child.wait().unwrap();
            return true;
        }
        std::thread::sleep(Duration::from_micros(200));
    }
}

/// After a kill: recovery + fsck clean, old images intact, the new one all or nothing.
fn check(root: &Path, before: &BTreeMap<String, String>, op: &str, target: Option<&str>) -> BTreeMap<String, String> {
    let f = strata_json(root, &["fsck", "--full"]);
    assert_eq!(f["ok"], true, "after killing {op}: {f}");
    let after = images(root);
    for (name, digest) in before {
        if Some(name.as_str()) == target && op == "rmi" {
            continue; // rmi's image may be gone or still there
        }
        assert_eq!(after.get(name), Some(digest), "after killing {op}: image {name} changed or vanished");
    }
    for name in after.keys() {
        assert!(
            before.contains_key(name) || Some(name.as_str()) == target,
            "after killing {op}: unexpected image {name}"
        );
    }
    after
}

/// Typical duration of a command, to spread kills over its whole run.
fn duration_of(root: &Path, args: &[&str]) -> Duration {
    let t = Instant::now();
    let out = strata(root, args);
    assert!(out.status.success(), "{args:?}: {}", String::from_utf8_lossy(&out.stderr));
    t.elapsed()
}

fn layouts(dir: &Path) -> Vec<PathBuf> {
    (0..4u64)
        .map(|i| {
            let t = dir.join(format!("tree{i}"));
            sample_tree(&t, 100 + i);
            for j in 0..20 {
                fs::write(t.join(format!("usr/lib/f{j}")), bytes(200_000, i * 100 + j)).unwrap();
            }
            let l = dir.join(format!("layout{i}"));
            image_from_trees(&l, "v1", &[&t], Compression::Gzip);
            l
        })
        .collect()
}

#[test]
fn sigkill_at_any_moment_leaves_a_consistent_store() {
    if !strata_testutil::require_root() || !strata_testutil::require_tool("docker-registry") {
        return;
    }
    let dir = tempfile::Builder::new().prefix("strata-crash-").tempdir_in(strata_testutil::scratch_base()).unwrap();
    let root = dir.path().join("store");
    let ls = layouts(dir.path());
    let src = |i: usize| format!("oci:{}:v1", ls[i].display());
    strata_json(&root, &["import", &src(0), "--name", "base"]);
    // The image to pull: layout 3 pushed as zstd:chunked from a separate store.
    let reg = strata_testutil::Registry::start();
    let remote = format!("{}/crash/p:v1", reg.addr());
    let producer = dir.path().join("producer");
    strata_json(&producer, &["import", &src(3), "--name", "p"]);
    strata_json(&producer, &["push", "p", &remote, "--format", "zstd:chunked", "--plain-http"]);
    let mut rng =
        StdRng::seed_from_u64(std::env::var("STRATA_KILL_SEED").ok().and_then(|s| s.parse().ok()).unwrap_or(1));
    let n = trials();

    // Measure each operation once (then undo it) to know how long to let it run.
    let t_import = duration_of(&root, &["import", &src(1), "--name", "probe"]);
    strata(&root, &["rmi", "probe"]);
    let t_gc = duration_of(&root, &["gc"]);
    let pull = |name: &str| -> Vec<String> {
        ["pull", &remote, "--name", name, "--plain-http"].iter().map(|s| s.to_string()).collect()
    };
    let t_pull = duration_of(&root, &pull("probe").iter().map(String::as_str).collect::<Vec<_>>());
    strata(&root, &["rmi", "probe"]);
    let (mut killed, mut killed_pulls) = (0, 0);
    let mut current = images(&root);
    for trial in 0..n {
        // import
        let name = format!("imp{trial}");
        let delay = t_import.mul_f64(rng.random_range(0.0..1.3));
        killed += run_and_kill(&root, &["import", &src(1 + trial % 2), "--name", &name], delay) as usize;
        current = check(&root, &current, "import", Some(&name));

        // commit of a container with changes
        let c = format!("c{trial}");
        assert!(strata(&root, &["container", "create", "base", &c]).status.success());
        let merged = String::from_utf8(strata(&root, &["container", "mount", &c]).stdout).unwrap();
        let merged = Path::new(merged.trim());
        fs::write(merged.join("etc/changed"), bytes(1 << 20, trial as u64)).unwrap();
        fs::remove_file(merged.join("etc/hostname")).unwrap();
        let img = format!("com{trial}");
        let t_commit = Duration::from_millis(300);
        killed += run_and_kill(&root, &["commit", &c, &img], t_commit.mul_f64(rng.random_range(0.0..1.3))) as usize;
        current = check(&root, &current, "commit", Some(&img));
        assert!(strata(&root, &["container", "rm", &c]).status.success());

        // rmi of something that exists (not base)
        if let Some(victim) = current.keys().find(|k| k.as_str() != "base").cloned() {
            killed += run_and_kill(&root, &["rmi", &victim], Duration::from_millis(rng.random_range(0..80))) as usize;
            current = check(&root, &current, "rmi", Some(&victim));
        }

        // gc
        killed += run_and_kill(&root, &["gc"], t_gc.mul_f64(rng.random_range(0.0..1.3))) as usize;
        current = check(&root, &current, "gc", None);

        // pull (then drop what it pulled, so that the next pull has work to do again)
        let name = format!("pul{trial}");
        let args = pull(&name);
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        let k = run_and_kill(&root, &args, t_pull.mul_f64(rng.random_range(0.0..1.3))) as usize;
        (killed, killed_pulls) = (killed + k, killed_pulls + k);
        current = check(&root, &current, "pull", Some(&name));
        if current.contains_key(&name) {
            verify_image_reads(&root, &name);
            assert!(strata(&root, &["rmi", &name]).status.success());
            current = images(&root);
        }

        // Keep the store small: drop everything but base now and then.
        if current.len() > 6 {
            for k in current.keys().filter(|k| k.as_str() != "base") {
                assert!(strata(&root, &["rmi", k]).status.success());
            }
            current = images(&root);
        }
    }
    eprintln!("{} trials, {killed} processes killed mid-way ({killed_pulls} pulls)", n * 5);
    assert!(killed > n, "too few kills landed mid-operation ({killed}): the harness is not exercising crashes");
}

/// A pulled image's files read back through a container and match the producer's tree
/// (layout 3's tree, kept beside the layouts).
fn verify_image_reads(root: &Path, image: &str) {
    let c = format!("v-{image}");
    assert!(strata(root, &["container", "create", image, &c]).status.success());
    let merged = String::from_utf8(strata(root, &["container", "mount", &c]).stdout).unwrap();
    let merged = Path::new(merged.trim());
    let tree = root.parent().unwrap().join("tree3");
    assert_same_tree(&tree, merged);
    assert!(strata(root, &["container", "rm", &c]).status.success());
}
