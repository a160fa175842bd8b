//! Many processes on one store (`docs/locking.md`): the workers of an owner, an owner
//! handing over mid-operation, two imports that share a layer reading it once, and container
//! starts and gc running while an import runs.

mod common;

use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use common::*;
use strata_store::{OpenOptions, Store};

/// A layer tar holding one file of `mib` MiB of incompressible data (`seed`), at `path`.
fn data_layer(dir: &Path, path: &str, mib: usize, seed: u64) -> Vec<u8> {
    let (base, tree) = (dir.join(format!("empty-{seed}")), dir.join(format!("tree-{seed}")));
    fs::create_dir_all(&base).unwrap();
    fs::create_dir_all(tree.join(path).parent().unwrap()).unwrap();
    fs::write(tree.join(path), bytes(mib << 20, seed)).unwrap();
    layer_tar(&base, &tree)
}

fn spawn(root: &Path, args: &[&str]) -> Child {
    Command::new(strata_bin())
        .arg("--root")
        .arg(root)
        .args(args)
        .arg("--json")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap()
}

fn finish(child: Child, what: &str) -> serde_json::Value {
    let out = child.wait_with_output().unwrap();
    assert!(out.status.success(), "{what}: {}", String::from_utf8_lossy(&out.stderr));
    serde_json::from_slice(&out.stdout).unwrap()
}

fn layout_arg(p: &Path) -> String {
    format!("oci:{}:v1", p.display())
}

/// Waits until an operation of kind `op` has staging of its own in the store (it is mid-way).
fn wait_for_staging(root: &Path, op: &str, child: &mut Child) {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let busy = fs::read_dir(root.join("staging")).is_ok_and(|rd| {
            rd.filter_map(Result::ok)
                .any(|e| e.file_name().to_string_lossy().starts_with(&format!("{op}-")) && e.path().is_dir())
        });
        if busy {
            return;
        }
        assert!(child.try_wait().unwrap().is_none(), "{op} ended before it was seen running");
        assert!(Instant::now() < deadline, "{op} never started");
        std::thread::sleep(Duration::from_millis(5));
    }
}

fn small_image(dir: &Path) -> PathBuf {
    let t = dir.join("small-tree");
    sample_tree(&t, 3);
    let l = dir.join("small");
    image_from_trees(&l, "v1", &[&t], Compression::Gzip);
    l
}

#[test]
fn commands_are_workers_of_the_owner_and_take_over_when_it_goes() {
    let dir = tempfile::Builder::new().prefix("strata-conc-").tempdir_in("/var/tmp").unwrap();
    let root = dir.path().join("store");
    let small = small_image(dir.path());
    let big = dir.path().join("big");
    write_image(&big, "v1", &[data_layer(dir.path(), "data/blob", 160, 11)], Compression::Gzip);
    strata_json(&root, &["import", &layout_arg(&small), "--name", "base"]);

    // This test process owns the store; commands run as its workers.
    let owner = Store::open(&root, OpenOptions::default()).unwrap();
    assert!(owner.is_owner());
    assert_eq!(strata_json(&root, &["images"])["images"].as_array().unwrap().len(), 1);
    let out = strata(&root, &["container", "create", "base", "c1"]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert!(
        owner.container(&strata_types::ImageName::new("c1").unwrap()).is_ok(),
        "the owner sees the worker's container"
    );

    // An import runs as a worker; the owner goes away mid-way; the import takes over.
    let mut import = spawn(&root, &["import", &layout_arg(&big), "--name", "big"]);
    wait_for_staging(&root, "import", &mut import);
    drop(owner);
    let r = finish(import, "import across the owner's exit");
    assert_eq!(r["image"], "big");
    let names: Vec<String> = strata_json(&root, &["images"])["images"]
        .as_array()
        .unwrap()
        .iter()
        .map(|i| i["name"].as_str().unwrap().to_owned())
        .collect();
    assert_eq!(names, ["base", "big"]);
    assert_eq!(strata_json(&root, &["fsck", "--full"])["ok"], true);
}

#[test]
fn two_imports_sharing_a_layer_read_it_once() {
    let dir = tempfile::Builder::new().prefix("strata-conc-").tempdir_in("/var/tmp").unwrap();
    let root = dir.path().join("store");
    let shared = data_layer(dir.path(), "usr/lib/shared.bin", 96, 21);
    let (a, b) = (dir.path().join("a"), dir.path().join("b"));
    write_image(&a, "v1", &[shared.clone(), data_layer(dir.path(), "a.bin", 1, 22)], Compression::Gzip);
    write_image(&b, "v1", &[shared, data_layer(dir.path(), "b.bin", 1, 23)], Compression::Gzip);
    let shared_blob = {
        let d = strata_oci::layout::OciDir::open(&a).unwrap();
        let (_, m) = d.read_manifest(&d.resolve(Some("v1")).unwrap()).unwrap();
        m.layers[0].size
    };
    strata_json(&root, &["images"]);
    let (ia, ib) = (
        spawn(&root, &["import", &layout_arg(&a), "--name", "a"]),
        spawn(&root, &["import", &layout_arg(&b), "--name", "b"]),
    );
    let (ra, rb) = (finish(ia, "import a"), finish(ib, "import b"));
    let fetched = ra["bytes_fetched"].as_u64().unwrap() + rb["bytes_fetched"].as_u64().unwrap();
    assert!(
        fetched < shared_blob + shared_blob / 2,
        "the shared layer was read twice: {fetched} bytes for a {shared_blob}-byte layer"
    );
    assert_eq!(ra["layers_present"].as_u64().unwrap() + rb["layers_present"].as_u64().unwrap(), 1, "{ra} {rb}");
    assert_eq!(ra["layers"][0], rb["layers"][0]);
    assert_eq!(strata_json(&root, &["layers"])["layers"].as_array().unwrap().len(), 3);
    assert_eq!(strata_json(&root, &["fsck", "--full"])["ok"], true);
}

#[test]
fn containers_start_and_gc_runs_while_an_import_runs() {
    if !strata_testutil::require_root() {
        return;
    }
    let dir = tempfile::Builder::new().prefix("strata-conc-").tempdir_in("/var/tmp").unwrap();
    let root = dir.path().join("store");
    let small = small_image(dir.path());
    let big = dir.path().join("big");
    write_image(&big, "v1", &[data_layer(dir.path(), "data/blob", 240, 31)], Compression::Gzip);
    strata_json(&root, &["import", &layout_arg(&small), "--name", "base"]);
    // Garbage for gc to collect while the import runs: a layer whose image record is gone.
    let other = dir.path().join("other-tree");
    sample_tree(&other, 9);
    let other_layout = dir.path().join("other");
    image_from_trees(&other_layout, "v1", &[&other], Compression::Zstd);
    strata_json(&root, &["import", &layout_arg(&other_layout), "--name", "other"]);
    let name = |s: &str| strata_types::ImageName::new(s).unwrap();
    Store::open(&root, OpenOptions::default()).unwrap().forget_image_record_for_tests(&name("other")).unwrap();

    let mut import = spawn(&root, &["import", &layout_arg(&big), "--name", "big"]);
    wait_for_staging(&root, "import", &mut import);
    // A container starts, and gc collects, without waiting for the import.
    let out = strata(&root, &["container", "create", "base", "c1"]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let merged = PathBuf::from(String::from_utf8_lossy(&strata(&root, &["container", "mount", "c1"]).stdout).trim());
    assert!(merged.join("etc/hostname").is_file());
    let gc = strata_json(&root, &["gc"]);
    assert!(import.try_wait().unwrap().is_none(), "the import finished before the others ran: make it bigger");
    assert_eq!(gc["layers_removed"], 1, "{gc}");
    let r = finish(import, "import during gc");
    assert_eq!(r["image"], "big");
    assert!(strata(&root, &["container", "rm", "c1"]).status.success());
    assert_eq!(strata_json(&root, &["fsck", "--full"])["ok"], true);
    // The import's layer survived gc, and its content is what the layout holds.
    let x = dir.path().join("x");
    assert!(strata(&root, &["export", "big", &format!("oci:{}:v1", x.display()), "--format", "tar"]).status.success());
    let (t1, t2) = (dir.path().join("t1"), dir.path().join("t2"));
    extract_layout(&big, "v1", &t1);
    extract_layout(&x, "v1", &t2);
    assert_same_tree(&t1, &t2);
}
